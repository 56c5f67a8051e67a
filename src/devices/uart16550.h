/* uart16550.h: an ns16550A UART (the "ns16550a" Linux binds with the 8250
 * driver), registers one byte apart (reg-shift 0), 16-byte FIFOs. */
#ifndef TERN_DEVICES_UART16550_H
#define TERN_DEVICES_UART16550_H

#include <stdbool.h>
#include <stddef.h>

#include "devices/char_sink.h"
#include "devices/device.h"

#define UART16550_WINDOW 0x100
#define UART16550_CLOCK_HZ 3686400

struct uart16550;

/* Creates the UART at `base`; transmitted bytes go to `sink`, the
 * interrupt to `irq`. `id` names the instance ("uart@10000000"). */
struct uart16550 *uart16550_create(const char *id, uint64_t base, struct irq_line irq,
				   struct char_sink sink, struct error *err);
struct device *uart16550_device(struct uart16550 *uart);

/* Bytes typed on the console. Queues as many as fit in the receive FIFO and
 * returns that count; never blocks. Thread-safe. */
size_t uart16550_receive(struct uart16550 *uart, const uint8_t *buf, size_t len);

/* Blocks until the receive FIFO has room or timeout_ms passes; true if room. */
bool uart16550_wait_rx_space(struct uart16550 *uart, int timeout_ms);

#endif
