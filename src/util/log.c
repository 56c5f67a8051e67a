/* log.c: one line per message, prefixed so it cannot be mistaken for guest output. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;

void log_set_level(enum log_level level)
{
	current_level = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	if (level > current_level)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (level == LOG_DEBUG) {
		/* Debug lines of two processes (a migration's source and
		 * destination) line up by their monotonic time. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		fprintf(stderr, "tern: debug: [%lld.%06ld] %s\n", (long long)ts.tv_sec,
			ts.tv_nsec / 1000, line);
		return;
	}
	fprintf(stderr, "tern: %s: %s\n", names[level], line);
}
