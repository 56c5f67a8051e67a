/* error.c: formatting of struct error messages. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* dst = a + ": " + b, cut to fit: a long message loses its tail, not the call. */
static void join(char *dst, size_t size, const char *a, const char *b)
{
	size_t used = 0;
	const char *parts[] = { a, ": ", b };
	for (unsigned i = 0; i < 3 && used + 1 < size; i++) {
		size_t n = strnlen(parts[i], size - 1 - used);
		memmove(dst + used, parts[i], n);
		used += n;
	}
	dst[used] = '\0';
}

int error_set(struct error *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return -code;
}

int error_errno(struct error *e, int code, const char *fmt, ...)
{
	if (e) {
		char head[sizeof(e->msg)];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(head, sizeof(head), fmt, ap);
		va_end(ap);
		join(e->msg, sizeof(e->msg), head, strerror(code));
		e->code = code;
	}
	return -code;
}

int error_wrap(struct error *e, const char *fmt, ...)
{
	if (!e)
		return -1;
	char head[sizeof(e->msg)], old[sizeof(e->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	join(e->msg, sizeof(e->msg), head, old);
	return -(e->code ? e->code : 1);
}
