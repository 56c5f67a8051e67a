/* char_sink.h: where a character device's output goes (a console backend). */
#ifndef TERN_DEVICES_CHAR_SINK_H
#define TERN_DEVICES_CHAR_SINK_H

#include <stddef.h>
#include <stdint.h>

struct char_sink {
	void (*write)(void *opaque, const uint8_t *buf, size_t len);
	void *opaque;
};

#endif
