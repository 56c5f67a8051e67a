/* error.h: the one way tern reports a failure up the call chain.
 *
 * A failing function fills a caller-owned struct error with a readable
 * message and returns a negative errno; only main() decides to exit. */
#ifndef TERN_UTIL_ERROR_H
#define TERN_UTIL_ERROR_H

#include <stddef.h>

struct error {
	int code;          /* positive errno, 0 when no error is recorded */
	char msg[512];
};

/* Records the message and returns -code, so callers can write
 * `return error_set(e, EINVAL, "...")`. e may be NULL. */
int error_set(struct error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like error_set, with ": strerror(code)" appended. */
int error_errno(struct error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes context to an existing message ("loading kernel: <old>"). */
int error_wrap(struct error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
