/* console.h: the host side of a serial port: where the guest's output goes
 * and where its input comes from.
 *   stdio      the terminal (raw mode while tern runs) or pipes
 *   file:PATH  output appended to a file, no input
 *   unix:PATH  a listening unix socket; one client at a time, both ways
 *   none       output dropped, no input */
#ifndef TERN_MACHINE_CONSOLE_H
#define TERN_MACHINE_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "devices/char_sink.h"
#include "util/error.h"

struct console;
struct uart16550;

int console_open(struct console **out, const char *spec, const char *what, struct error *err);
struct char_sink console_sink(struct console *con);
void console_write(struct console *con, const uint8_t *buf, size_t len);
/* Starts feeding input into uart (a thread); harmless for output-only kinds. */
int console_start_input(struct console *con, struct uart16550 *uart, struct error *err);
void console_close(struct console *con);

#endif
