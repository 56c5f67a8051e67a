/* test_uart16550.c: the ns16550A seen from a guest driver. Every test goes
 * through device_ops read/write with the register offsets a driver uses,
 * and watches the two things outside the UART: the bytes reaching the
 * sink and the level of the interrupt line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devices/uart16550.h"
#include "state/state.h"

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4,
       LSR = 5, MSR = 6, SCR = 7 };

struct fixture {
	struct uart16550 *uart;
	struct device *dev;
	uint8_t out[256];
	size_t out_len;
	bool level;
	unsigned level_calls;
	unsigned last_irq;
};

static void sink_write(void *opaque, const uint8_t *buf, size_t len)
{
	struct fixture *f = opaque;
	assert_true(f->out_len + len <= sizeof(f->out));
	memcpy(f->out + f->out_len, buf, len);
	f->out_len += len;
}

static void line_set(void *controller, unsigned irq, bool level)
{
	struct fixture *f = controller;
	f->level = level;
	f->level_calls++;
	f->last_irq = irq;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	struct error err = { 0 };
	struct irq_line irq = { .set_level = line_set, .controller = f, .irq = 10 };
	struct char_sink sink = { .write = sink_write, .opaque = f };
	f->uart = uart16550_create("uart@10000000", 0x10000000, irq, sink, &err);
	if (!f->uart)
		fail_msg("uart16550_create: %s", err.msg);
	f->dev = uart16550_device(f->uart);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	f->dev->ops->destroy(f->dev);
	free(f);
	return 0;
}

static uint8_t rd(struct fixture *f, unsigned reg)
{
	uint64_t v = f->dev->ops->read(f->dev, reg, 1);
	assert_true(v <= 0xff);
	return (uint8_t)v;
}

static void wr(struct fixture *f, unsigned reg, uint8_t value)
{
	f->dev->ops->write(f->dev, reg, value, 1);
}

static void feed(struct fixture *f, const char *s)
{
	size_t n = strlen(s);
	assert_int_equal(uart16550_receive(f->uart, (const uint8_t *)s, n), n);
}

static void test_identity(void **state)
{
	struct fixture *f = *state;
	assert_string_equal(f->dev->ops->type, "ns16550a");
	assert_string_equal(f->dev->id, "uart@10000000");
	assert_int_equal(f->dev->base, 0x10000000);
	assert_int_equal(f->dev->size, UART16550_WINDOW);
	assert_non_null(f->dev->ops->save);
	assert_non_null(f->dev->ops->restore);
}

static void test_bad_create(void **state)
{
	struct error err = { 0 };
	char longname[100];
	memset(longname, 'u', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_null(uart16550_create(longname, 0, (struct irq_line){ 0 }, (struct char_sink){ 0 },
				     &err));
	assert_int_equal(err.code, EINVAL);
	err.code = 0;
	assert_null(uart16550_create(NULL, 0, (struct irq_line){ 0 }, (struct char_sink){ 0 },
				     &err));
	assert_int_equal(err.code, EINVAL);
}

static void test_reset_values(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(rd(f, IER), 0);
	assert_int_equal(rd(f, IIR), 0x01);
	assert_int_equal(rd(f, LCR), 0);
	assert_int_equal(rd(f, MCR), 0);
	assert_int_equal(rd(f, LSR), 0x60);
	assert_int_equal(rd(f, MSR), 0xb0);      /* CTS, DSR, DCD: a ready peer */
	assert_false(f->level);
	assert_int_equal(f->level_calls, 0);
}

static void test_thr_reaches_sink(void **state)
{
	struct fixture *f = *state;
	const char *msg = "hello\n";
	for (const char *p = msg; *p; p++) {
		assert_int_equal(rd(f, LSR) & 0x60, 0x60);
		wr(f, THR, (uint8_t)*p);
	}
	assert_int_equal(f->out_len, strlen(msg));
	assert_memory_equal(f->out, msg, strlen(msg));
	assert_int_equal(rd(f, LSR), 0x60);
	/* Nothing was enabled: no interrupt from transmitting. */
	assert_int_equal(f->level_calls, 0);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;
	wr(f, IER, 0x05);
	wr(f, LCR, 0x83);
	wr(f, DLL, 0x02);
	wr(f, DLM, 0x01);
	assert_int_equal(rd(f, DLL), 0x02);
	assert_int_equal(rd(f, DLM), 0x01);
	assert_int_equal(rd(f, LCR), 0x83);
	assert_int_equal(f->out_len, 0);         /* DLL writes are not output */
	wr(f, LCR, 0x03);
	assert_int_equal(rd(f, IER), 0x05);      /* IER untouched by DLM writes */
	assert_int_equal(rd(f, LCR), 0x03);
	wr(f, THR, 'x');
	assert_int_equal(f->out_len, 1);
	/* The latch survives leaving DLAB mode. */
	wr(f, LCR, 0x80);
	assert_int_equal(rd(f, DLL), 0x02);
	assert_int_equal(rd(f, DLM), 0x01);
}

static void test_scratch(void **state)
{
	struct fixture *f = *state;
	for (unsigned v = 0; v < 256; v += 0x55) {
		wr(f, SCR, (uint8_t)v);
		assert_int_equal(rd(f, SCR), v);
	}
}

static void test_out_of_range_offsets(void **state)
{
	struct fixture *f = *state;
	for (unsigned off = 8; off < UART16550_WINDOW; off++) {
		f->dev->ops->write(f->dev, off, 0xff, 1);
		assert_int_equal(f->dev->ops->read(f->dev, off, 1), 0);
	}
	assert_int_equal(rd(f, LCR), 0);
	assert_int_equal(rd(f, SCR), 0);
	assert_int_equal(f->out_len, 0);
	/* A wider access addresses the byte register at its offset. */
	f->dev->ops->write(f->dev, SCR, 0x1234, 4);
	assert_int_equal(f->dev->ops->read(f->dev, SCR, 4), 0x34);
}

static void test_rx_fifo(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x07);
	assert_int_equal(rd(f, LSR) & 0x01, 0);
	feed(f, "abc");
	assert_int_equal(rd(f, LSR), 0x61);
	assert_int_equal(rd(f, RBR), 'a');
	assert_int_equal(rd(f, RBR), 'b');
	assert_int_equal(rd(f, LSR) & 0x01, 0x01);
	assert_int_equal(rd(f, RBR), 'c');
	assert_int_equal(rd(f, LSR), 0x60);
	assert_int_equal(rd(f, RBR), 0);         /* empty FIFO */
	/* Data does not interrupt while ERBFI is off. */
	assert_int_equal(f->level_calls, 0);
}

static void test_rx_fifo_full(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	uint8_t buf[20];
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)('A' + i);
	assert_int_equal(uart16550_receive(f->uart, buf, sizeof(buf)), 16);
	assert_int_equal(uart16550_receive(f->uart, buf + 16, 4), 0);
	assert_false(uart16550_wait_rx_space(f->uart, 0));
	assert_int_equal(rd(f, RBR), 'A');
	assert_true(uart16550_wait_rx_space(f->uart, 0));
	assert_int_equal(uart16550_receive(f->uart, buf + 16, 4), 1);
	for (unsigned i = 1; i < 17; i++)
		assert_int_equal(rd(f, RBR), 'A' + i);
	assert_int_equal(rd(f, LSR), 0x60);      /* no overrun: input waited */
	/* FCR bit 1 empties the receive FIFO. */
	feed(f, "xyz");
	wr(f, FCR, 0x03);
	assert_int_equal(rd(f, LSR) & 0x01, 0);
}

static void test_rx_without_fifo(void **state)
{
	struct fixture *f = *state;
	/* 16450 mode: one holding register. */
	uint8_t two[2] = { '1', '2' };
	assert_int_equal(uart16550_receive(f->uart, two, 2), 1);
	assert_int_equal(rd(f, IIR) & 0xc0, 0);
	assert_int_equal(rd(f, RBR), '1');
	/* Switching FIFO mode on or off empties the FIFO. */
	feed(f, "2");
	wr(f, FCR, 0x01);
	assert_int_equal(rd(f, LSR) & 0x01, 0);
	feed(f, "345");
	wr(f, FCR, 0x00);
	assert_int_equal(rd(f, LSR) & 0x01, 0);
	assert_int_equal(rd(f, IIR), 0x01);
}

static void test_rx_interrupt(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	wr(f, IER, 0x01);
	assert_false(f->level);
	assert_int_equal(rd(f, IIR), 0xc1);
	feed(f, "k");
	assert_true(f->level);
	assert_int_equal(f->last_irq, 10);
	assert_int_equal(rd(f, IIR), 0xc4);
	assert_int_equal(rd(f, IIR), 0xc4);      /* reading IIR does not clear it */
	assert_int_equal(rd(f, RBR), 'k');
	assert_false(f->level);
	assert_int_equal(rd(f, IIR), 0xc1);
	/* Disabling ERBFI drops the line with data still waiting. */
	feed(f, "j");
	assert_true(f->level);
	wr(f, IER, 0x00);
	assert_false(f->level);
	wr(f, IER, 0x01);
	assert_true(f->level);
	/* The line moved only on edges. */
	assert_int_equal(f->level_calls, 5);
}

static void test_rx_trigger_and_timeout(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x81);               /* trigger at 8 bytes */
	wr(f, IER, 0x01);
	feed(f, "abc");
	/* Below the trigger: the character timeout indication. */
	assert_true(f->level);
	assert_int_equal(rd(f, IIR), 0xcc);
	feed(f, "defgh");
	assert_int_equal(rd(f, IIR), 0xc4);
	assert_int_equal(rd(f, RBR), 'a');
	assert_int_equal(rd(f, IIR), 0xcc);
	wr(f, FCR, 0xc1);               /* trigger at 14 */
	assert_int_equal(rd(f, IIR), 0xcc);
	wr(f, FCR, 0x41);               /* trigger at 4 */
	assert_int_equal(rd(f, IIR), 0xc4);
	for (unsigned i = 0; i < 7; i++)
		rd(f, RBR);
	assert_int_equal(rd(f, IIR), 0xc1);
	assert_false(f->level);
}

static void test_thre_interrupt(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	/* Enabling ETBEI with THR empty raises THRE at once. */
	wr(f, IER, 0x02);
	assert_true(f->level);
	assert_int_equal(rd(f, IIR), 0xc2);
	/* The IIR read that reported THRE withdrew it. */
	assert_false(f->level);
	assert_int_equal(rd(f, IIR), 0xc1);
	/* A THR write empties again at once: THRE is back. */
	wr(f, THR, 'z');
	assert_true(f->level);
	assert_int_equal(f->out_len, 1);
	/* Turning ETBEI off withdraws it, turning it on raises it again. */
	wr(f, IER, 0x00);
	assert_false(f->level);
	wr(f, IER, 0x02);
	assert_true(f->level);
	/* Rewriting IER with ETBEI already on is not a new event. */
	assert_int_equal(rd(f, IIR), 0xc2);
	wr(f, IER, 0x02);
	assert_false(f->level);
	assert_int_equal(rd(f, IIR), 0xc1);
}

/* Linux's 8250 startup: THRE must show when THRI is turned on and again
 * after THRI was turned off and on, or the driver marks the port buggy. */
static void test_linux_thre_test(void **state)
{
	struct fixture *f = *state;
	wr(f, IER, 0x02);
	uint8_t iir1 = rd(f, IIR);
	wr(f, IER, 0x00);
	wr(f, IER, 0x02);
	uint8_t iir = rd(f, IIR);
	wr(f, IER, 0x00);
	assert_int_equal(iir1 & 0x01, 0);
	assert_int_equal(iir & 0x01, 0);
	/* And the TXEN test: LSR.TEMT with an interrupt reported. */
	wr(f, IER, 0x02);
	assert_int_equal(rd(f, LSR) & 0x40, 0x40);
	assert_int_equal(rd(f, IIR) & 0x01, 0);
	wr(f, IER, 0x00);
	assert_false(f->level);
}

static void test_interrupt_priority(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	wr(f, IER, 0x0f);
	/* THRE is raised by enabling ETBEI; data outranks it. */
	feed(f, "q");
	assert_int_equal(rd(f, IIR), 0xc4);
	assert_int_equal(rd(f, RBR), 'q');
	assert_true(f->level);
	assert_int_equal(rd(f, IIR), 0xc2);
	assert_false(f->level);
	/* Receiver line status outranks data: overrun it in loopback. */
	wr(f, MCR, 0x10);
	assert_int_equal(rd(f, MSR) & 0x0f, 0x0b);     /* DCTS, DDSR, DDCD */
	for (unsigned i = 0; i < 17; i++)
		wr(f, THR, (uint8_t)i);
	assert_true(f->level);
	assert_int_equal(rd(f, IIR), 0xc6);
	assert_int_equal(rd(f, LSR), 0x63);      /* OE | DR | THRE | TEMT */
	assert_int_equal(rd(f, LSR), 0x61);      /* reading LSR cleared OE */
	assert_int_equal(rd(f, IIR), 0xc4);
	/* The FIFO kept the first 16 bytes; the 17th was lost. */
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(rd(f, RBR), i);
	/* That last THR write left THRE pending; reading IIR takes it. */
	assert_int_equal(rd(f, IIR), 0xc2);
	/* Lowest: modem status, from a loopback MCR change. */
	wr(f, MCR, 0x11);                        /* DTR -> DSR */
	assert_true(f->level);
	assert_int_equal(rd(f, IIR), 0xc0);
	assert_int_equal(rd(f, MSR), 0x22);      /* DSR | DDSR */
	assert_false(f->level);
	assert_int_equal(rd(f, IIR), 0xc1);
	assert_int_equal(f->out_len, 0);         /* loopback output is internal */
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	/* Linux's autoconfig loopback check: RTS|OUT2 must show as CTS|DCD. */
	wr(f, MCR, 0x1a);
	assert_int_equal(rd(f, MSR) & 0xf0, 0x90);
	wr(f, MCR, 0x15);                        /* DTR | OUT1 */
	assert_int_equal(rd(f, MSR), 0x6b);      /* DSR|RI, DCTS|DDSR|DDCD */
	wr(f, MCR, 0x10);
	assert_int_equal(rd(f, MSR), 0x06);      /* RI's trailing edge: TERI */
	assert_int_equal(rd(f, MSR), 0x00);

	wr(f, THR, 'L');
	wr(f, THR, 'B');
	assert_int_equal(f->out_len, 0);
	assert_int_equal(rd(f, LSR) & 0x01, 0x01);
	assert_int_equal(rd(f, RBR), 'L');
	assert_int_equal(rd(f, RBR), 'B');

	/* The serial input is disconnected in loopback. */
	uint8_t c = 'x';
	assert_int_equal(uart16550_receive(f->uart, &c, 1), 0);
	assert_false(uart16550_wait_rx_space(f->uart, 0));

	wr(f, MCR, 0x03);
	assert_int_equal(rd(f, MSR), 0xbb);      /* a ready peer again, with deltas */
	assert_int_equal(rd(f, MSR), 0xb0);
	assert_int_equal(uart16550_receive(f->uart, &c, 1), 1);
	wr(f, THR, 'o');
	assert_int_equal(f->out_len, 1);
	assert_int_equal(f->out[0], 'o');
	assert_int_equal(rd(f, RBR), 'x');
}

/* The probing of Linux's 8250 autoconfig() and autoconfig_16550a(): the
 * answers that make it settle on a plain 16550A with a working FIFO. */
static void test_linux_autoconfig(void **state)
{
	struct fixture *f = *state;
	/* IER holds its low four bits and nothing else. */
	wr(f, IER, 0x00);
	assert_int_equal(rd(f, IER) & 0x0f, 0x00);
	wr(f, IER, 0x0f);
	assert_int_equal(rd(f, IER) & 0x0f, 0x0f);
	wr(f, IER, 0x00);
	wr(f, IER, 0x40);                        /* XScale UUE must not stick */
	assert_int_equal(rd(f, IER), 0x00);
	/* Loopback test. */
	uint8_t save_mcr = rd(f, MCR);
	wr(f, MCR, 0x1a);
	assert_int_equal(rd(f, MSR) & 0xf0, 0x90);
	wr(f, MCR, save_mcr);
	/* FIFO detection: IIR bits 7:6 both set once FIFOs are on. */
	wr(f, LCR, 0x00);
	wr(f, FCR, 0x01);
	assert_int_equal(rd(f, IIR) >> 6, 3);
	/* No EFR behind IIR in either configuration mode. */
	wr(f, LCR, 0x80);
	assert_int_not_equal(rd(f, IIR), 0);
	wr(f, LCR, 0xbf);
	assert_int_not_equal(rd(f, IIR), 0);
	/* Not a 16750: IIR bit 5 stays clear with FCR bit 5, DLAB or not. */
	wr(f, LCR, 0x00);
	wr(f, FCR, 0x21);
	assert_int_equal(rd(f, IIR) & 0xe0, 0xc0);
	wr(f, LCR, 0x80);
	wr(f, FCR, 0x21);
	assert_int_equal(rd(f, IIR) & 0xe0, 0xc0);
	wr(f, LCR, 0x00);
	/* No NS SuperIO: EXCR1 (IIR under LCR 0xe0) does not follow MCR.LOOP. */
	wr(f, LCR, 0xe0);
	uint8_t excr1 = rd(f, IIR);
	wr(f, LCR, 0x00);
	wr(f, MCR, 0x10);
	wr(f, LCR, 0xe0);
	assert_int_equal(rd(f, IIR) & 0x10, excr1 & 0x10);
	wr(f, LCR, 0x00);
	wr(f, MCR, 0x00);
	assert_int_not_equal(rd(f, LSR), 0xff);
	assert_false(f->level);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	wr(f, IER, 0x03);
	wr(f, LCR, 0x83);
	wr(f, MCR, 0x0b);
	wr(f, SCR, 0x5a);
	feed(f, "data");
	assert_true(f->level);
	f->dev->ops->reset(f->dev);
	assert_false(f->level);
	assert_int_equal(rd(f, LCR), 0);
	assert_int_equal(rd(f, IER), 0);
	assert_int_equal(rd(f, MCR), 0);
	assert_int_equal(rd(f, SCR), 0);
	assert_int_equal(rd(f, IIR), 0x01);
	assert_int_equal(rd(f, LSR), 0x60);
	assert_int_equal(rd(f, MSR), 0xb0);
}

struct reader {
	struct fixture *f;
	int delay_ms;
};

static void *read_later(void *arg)
{
	struct reader *r = arg;
	usleep((useconds_t)r->delay_ms * 1000);
	rd(r->f, RBR);
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_wait_rx_space(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	assert_true(uart16550_wait_rx_space(f->uart, 1000));
	uint8_t buf[16] = { 0 };
	assert_int_equal(uart16550_receive(f->uart, buf, sizeof(buf)), 16);

	int64_t t0 = now_ms();
	assert_false(uart16550_wait_rx_space(f->uart, 30));
	assert_true(now_ms() - t0 >= 25);

	/* A guest read of RBR wakes the waiter well before its timeout. */
	struct reader r = { f, 20 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, read_later, &r), 0);
	t0 = now_ms();
	assert_true(uart16550_wait_rx_space(f->uart, 10000));
	assert_true(now_ms() - t0 < 5000);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(uart16550_receive(f->uart, buf, 2), 1);
}

struct typist {
	struct uart16550 *uart;
	unsigned count;
};

static void *type_bytes(void *arg)
{
	struct typist *t = arg;
	for (unsigned i = 0; i < t->count;) {
		uint8_t c = (uint8_t)i;
		if (uart16550_receive(t->uart, &c, 1) == 1)
			i++;
		else
			uart16550_wait_rx_space(t->uart, 100);
	}
	return NULL;
}

/* The console thread and a driver polling LSR: every byte arrives once,
 * in order, with the FIFO as the only buffer between them. */
static void test_concurrent_receive(void **state)
{
	struct fixture *f = *state;
	wr(f, FCR, 0x01);
	struct typist t = { f->uart, 5000 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, type_bytes, &t), 0);
	for (unsigned i = 0; i < t.count;) {
		if (rd(f, LSR) & 0x01) {
			assert_int_equal(rd(f, RBR), (uint8_t)i);
			i++;
		}
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rd(f, LSR), 0x60);
}

/* ---- save / restore ------------------------------------------------------ */

static void save_dev(struct fixture *f, struct state_writer *w)
{
	struct error err = { 0 };
	state_writer_init(w);
	if (f->dev->ops->save(f->dev, w, &err))
		fail_msg("save: %s", err.msg);
}

/* The record handed to restore in a buffer of exactly its size, so ASan
 * sees any read past it. The reader is not checked here: the device's own
 * checks must refuse what the transport's would. */
static int restore_dev(struct fixture *f, const void *data, size_t len, struct error *err)
{
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	if (len)
		memcpy(copy, data, len);
	struct state_reader r = { .data = copy, .len = len, .what = "uart@10000000" };
	int rc = f->dev->ops->restore(f->dev, &r, err);
	free(copy);
	return rc;
}

static struct fixture *fresh(void)
{
	void *t;
	setup(&t);
	return t;
}

static void destroy(struct fixture *f)
{
	void *t = f;
	teardown(&t);
}

/* `rec` re-encoded with field `id` replaced by `len` bytes of `value`, or
 * left out when value is NULL. The UART's record is flat and unflagged. */
static void rewrite(const struct state_writer *rec, uint16_t id, const void *value, size_t len,
		    struct state_writer *out)
{
	state_writer_init(out);
	for (size_t pos = 0; pos < rec->len;) {
		const uint8_t *h = rec->buf + pos;
		uint16_t fid = (uint16_t)(h[0] | h[1] << 8);
		uint16_t flags = (uint16_t)(h[2] | h[3] << 8);
		uint32_t flen = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
				(uint32_t)h[7] << 24;
		assert_int_equal(flags, 0);
		if (fid != id)
			state_put_bytes(out, fid, h + 8, flen);
		else if (value)
			state_put_bytes(out, fid, value, len);
		pos += 8 + flen;
	}
	assert_false(out->failed);
}

static void rewrite_u8(const struct state_writer *rec, uint16_t id, uint8_t v,
		       struct state_writer *out)
{
	rewrite(rec, id, &v, 1, out);
}

/* The guest's view of a busy console: divisor programmed, 8E1, FIFOs on
 * with an 8-byte trigger, an overrun not yet seen, modem deltas from
 * leaving loopback, a partly full receive FIFO that wraps around the end
 * of the ring, scratch written, every interrupt enabled and several
 * pending (RLS on top, THRE behind it). */
static void make_busy(struct fixture *f)
{
	wr(f, LCR, 0x83);
	wr(f, DLL, 0x0c);
	wr(f, DLM, 0x01);
	wr(f, LCR, 0x1b);
	wr(f, FCR, 0x87);
	wr(f, MCR, 0x10);
	for (unsigned i = 0; i < 17; i++)
		wr(f, THR, (uint8_t)i);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(rd(f, RBR), i);
	wr(f, MCR, 0x0b);
	feed(f, "0123456789ABCD");
	for (unsigned i = 0; i < 12; i++)
		rd(f, RBR);
	feed(f, "efghij");
	wr(f, SCR, 0xa5);
	wr(f, IER, 0x0f);
	assert_true(f->level);
	assert_int_equal(f->out_len, 0);
}

/* The same guest reads (and a few writes) on both UARTs give the same
 * answers and the same interrupt line, step by step. */
static void expect_same_behaviour(struct fixture *a, struct fixture *b)
{
	static const struct {
		bool write;
		unsigned reg;
		uint8_t value;
	} script[] = {
		{ false, IIR, 0 }, { false, LSR, 0 }, { false, IIR, 0 }, { false, LSR, 0 },
		{ false, MSR, 0 }, { false, MSR, 0 }, { false, LCR, 0 }, { false, IER, 0 },
		{ false, SCR, 0 }, { false, MCR, 0 }, { false, RBR, 0 }, { false, IIR, 0 },
		{ false, RBR, 0 }, { false, RBR, 0 }, { false, IIR, 0 }, { false, RBR, 0 },
		{ false, RBR, 0 }, { false, RBR, 0 }, { false, RBR, 0 }, { false, LSR, 0 },
		{ false, IIR, 0 }, { false, RBR, 0 }, { false, LSR, 0 }, { false, IIR, 0 },
		{ false, IIR, 0 }, { false, RBR, 0 }, { true, THR, 'w' }, { false, IIR, 0 },
		{ false, IIR, 0 }, { true, LCR, 0x9b }, { false, DLL, 0 }, { false, DLM, 0 },
		{ true, LCR, 0x1b }, { true, MCR, 0x1f }, { false, MSR, 0 }, { false, IIR, 0 },
		{ true, THR, 'L' }, { false, LSR, 0 }, { false, RBR, 0 }, { false, LSR, 0 },
	};
	assert_int_equal(a->level, b->level);
	for (unsigned i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		if (script[i].write) {
			wr(a, script[i].reg, script[i].value);
			wr(b, script[i].reg, script[i].value);
		} else {
			uint8_t va = rd(a, script[i].reg), vb = rd(b, script[i].reg);
			if (va != vb)
				fail_msg("step %u: register %u reads 0x%02x, restored 0x%02x", i,
					 script[i].reg, va, vb);
		}
		if (a->level != b->level)
			fail_msg("step %u: line %d, restored %d", i, a->level, b->level);
	}
	assert_int_equal(a->out_len, b->out_len);
	assert_memory_equal(a->out, b->out, a->out_len);
}

static void test_save_restore_round_trip(void **state)
{
	struct fixture *f = *state;
	make_busy(f);
	struct state_writer a, b;
	save_dev(f, &a);

	struct fixture *t = fresh();
	struct error err = { 0 };
	if (restore_dev(t, a.buf, a.len, &err))
		fail_msg("restore: %s", err.msg);
	/* The line was driven high at once, on the UART's own irq. */
	assert_true(t->level);
	assert_int_equal(t->level_calls, 1);
	assert_int_equal(t->last_irq, 10);
	save_dev(t, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	/* Nothing reached the target's sink by restoring. */
	assert_int_equal(t->out_len, 0);

	/* The FIFO comes back oldest first, wrap-around and all. */
	expect_same_behaviour(f, t);
	state_writer_free(&a);
	state_writer_free(&b);
	destroy(t);
}

static void test_save_restore_fresh(void **state)
{
	struct fixture *f = *state;
	struct state_writer a, b;
	save_dev(f, &a);
	struct fixture *t = fresh();
	wr(t, SCR, 0x77);               /* not fresh: restore replaces everything */
	wr(t, FCR, 0x01);
	wr(t, IER, 0x01);
	feed(t, "zz");
	assert_true(t->level);
	struct error err = { 0 };
	assert_int_equal(restore_dev(t, a.buf, a.len, &err), 0);
	assert_false(t->level);
	save_dev(t, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	assert_int_equal(rd(t, LSR), 0x60);
	assert_int_equal(rd(t, MSR), 0xb0);
	assert_int_equal(rd(t, IIR), 0x01);
	state_writer_free(&a);
	state_writer_free(&b);
	destroy(t);
}

/* Loopback and the 16450 holding register survive: console input stays
 * shut out, THR still loops back, one byte is all the FIFO holds. */
static void test_save_restore_loopback(void **state)
{
	struct fixture *f = *state;
	wr(f, MCR, 0x15);
	wr(f, THR, 'q');
	wr(f, IER, 0x01);
	assert_true(f->level);
	struct state_writer a, b;
	save_dev(f, &a);
	struct fixture *t = fresh();
	struct error err = { 0 };
	if (restore_dev(t, a.buf, a.len, &err))
		fail_msg("restore: %s", err.msg);
	save_dev(t, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	assert_true(t->level);
	uint8_t c = 'x';
	assert_int_equal(uart16550_receive(t->uart, &c, 1), 0);
	assert_false(uart16550_wait_rx_space(t->uart, 0));
	/* DSR|RI, with DCTS and DDCD from CTS and DCD dropping. */
	assert_int_equal(rd(t, MSR), 0x69);
	assert_int_equal(rd(f, MSR), 0x69);
	assert_int_equal(rd(t, RBR), 'q');
	assert_false(t->level);
	wr(t, THR, 'r');
	assert_int_equal(rd(t, RBR), 'r');
	assert_int_equal(t->out_len, 0);
	/* Out of loopback the console gets its one byte of room back. */
	wr(t, MCR, 0x00);
	assert_true(uart16550_wait_rx_space(t->uart, 0));
	uint8_t two[2] = { '1', '2' };
	assert_int_equal(uart16550_receive(t->uart, two, 2), 1);
	state_writer_free(&a);
	state_writer_free(&b);
	destroy(t);
}

/* A target with state of its own, which a refused restore must leave
 * exactly as it was: registers, FIFO and line. */
static void expect_refused(const void *data, size_t len, const char *needle)
{
	struct fixture *t = fresh();
	wr(t, FCR, 0x41);
	wr(t, IER, 0x03);
	wr(t, SCR, 0x3c);
	feed(t, "tgt");
	assert_true(t->level);
	unsigned calls = t->level_calls;
	struct state_writer before, after;
	save_dev(t, &before);

	struct error err = { 0 };
	int rc = restore_dev(t, data, len, &err);
	if (rc == 0)
		fail_msg("restore of %zu bytes was accepted", len);
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(err.code, EINVAL);
	assert_true(err.msg[0] != '\0');
	if (needle && !strstr(err.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);

	save_dev(t, &after);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.buf, after.buf, before.len);
	assert_true(t->level);
	assert_int_equal(t->level_calls, calls);
	assert_int_equal(rd(t, RBR), 't');
	state_writer_free(&before);
	state_writer_free(&after);
	destroy(t);
}

static void test_restore_refuses_truncated(void **state)
{
	struct fixture *f = *state;
	make_busy(f);
	struct state_writer a;
	save_dev(f, &a);
	for (size_t len = 0; len < a.len; len++)
		expect_refused(a.buf, len, NULL);
	state_writer_free(&a);
}

static void test_restore_refuses_bad_fields(void **state)
{
	struct fixture *f = *state;
	make_busy(f);
	struct state_writer a, w;
	save_dev(f, &a);

	/* Sanity: rewriting a field with its own value changes nothing. */
	rewrite_u8(&a, 5, 0xa5, &w);
	assert_int_equal(w.len, a.len);
	assert_memory_equal(w.buf, a.buf, a.len);
	state_writer_free(&w);

	const uint8_t v2[4] = { 2, 0, 0, 0 };
	rewrite(&a, 0, v2, 4, &w);
	expect_refused(w.buf, w.len, "version 2");
	state_writer_free(&w);

	/* Wrong widths. */
	rewrite_u8(&a, 0, 1, &w);
	expect_refused(w.buf, w.len, "field 0 is 1 bytes wide");
	state_writer_free(&w);
	const uint8_t wide[2] = { 0x0f, 0 };
	rewrite(&a, 1, wide, 2, &w);
	expect_refused(w.buf, w.len, "field 1 is 2 bytes wide");
	state_writer_free(&w);
	rewrite(&a, 11, wide, 2, &w);
	expect_refused(w.buf, w.len, "field 11 is 2 bytes wide");
	state_writer_free(&w);
	rewrite(&a, 6, NULL, 0, &w);
	state_put_u16(&w, 6, 0x0c);
	expect_refused(w.buf, w.len, "field 6 is 2 bytes wide");
	state_writer_free(&w);

	/* Fields missing. */
	for (uint16_t id = 0; id <= 12; id++) {
		rewrite(&a, id, NULL, 0, &w);
		expect_refused(w.buf, w.len, "missing");
		state_writer_free(&w);
	}

	/* Values the registers cannot hold. */
	static const struct {
		uint16_t id;
		uint8_t value;
		const char *needle;
	} bad[] = {
		{ 1, 0x1f, "IER 0x1f" },
		{ 2, 0x83, "FCR 0x83" },
		{ 2, 0x8f, "FCR 0x8f" },
		{ 2, 0x80, "without enabling" },
		{ 4, 0x2b, "MCR 0x2b" },
		{ 8, 0x03, "LSR error bits 0x03" },
		{ 8, 0x22, "LSR error bits 0x22" },
		{ 9, 0x00, "MSR inputs 0x00" },
		{ 9, 0xf0, "MSR inputs 0xf0" },
		{ 10, 0x1b, "MSR delta bits 0x1b" },
		{ 11, 2, "not 0 or 1" },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rewrite_u8(&a, bad[i].id, bad[i].value, &w);
		expect_refused(w.buf, w.len, bad[i].needle);
		state_writer_free(&w);
	}

	/* THRE pending with ETBEI off: a state the UART never reaches. */
	struct state_writer w2;
	rewrite_u8(&a, 1, 0x0d, &w2);
	expect_refused(w2.buf, w2.len, "ETBEI off");
	rewrite_u8(&w2, 11, 0, &w);
	struct fixture *t = fresh();
	struct error err = { 0 };
	if (restore_dev(t, w.buf, w.len, &err))
		fail_msg("restore without THRE: %s", err.msg);
	destroy(t);
	state_writer_free(&w);
	state_writer_free(&w2);

	/* A FIFO longer than 16 bytes, or than the 16450's one. */
	uint8_t fifo[17];
	memset(fifo, 'F', sizeof(fifo));
	rewrite(&a, 12, fifo, 17, &w);
	expect_refused(w.buf, w.len, "FIFO holds 17 bytes");
	state_writer_free(&w);
	rewrite(&a, 12, fifo, 16, &w);
	t = fresh();
	if (restore_dev(t, w.buf, w.len, &err))
		fail_msg("restore of a full FIFO: %s", err.msg);
	assert_int_equal(uart16550_receive(t->uart, fifo, 1), 0);
	destroy(t);
	state_writer_free(&w);
	rewrite_u8(&a, 2, 0x00, &w2);
	rewrite(&w2, 12, fifo, 2, &w);
	expect_refused(w.buf, w.len, "more than the 1 it can hold");
	state_writer_free(&w);
	state_writer_free(&w2);

	/* A field from a newer tern that must not be ignored. */
	rewrite(&a, 0xffff, NULL, 0, &w);
	state_put_u64_required(&w, 99, 1);
	expect_refused(w.buf, w.len, "field 99 is required but unknown");
	state_writer_free(&w);
	/* One that may be: accepted, and dropped again on the next save. */
	rewrite(&a, 0xffff, NULL, 0, &w);
	state_put_u64(&w, 99, 1);
	t = fresh();
	if (restore_dev(t, w.buf, w.len, &err))
		fail_msg("restore with an optional unknown field: %s", err.msg);
	state_writer_free(&w);
	save_dev(t, &w);
	assert_int_equal(w.len, a.len);
	assert_memory_equal(w.buf, a.buf, a.len);
	destroy(t);
	state_writer_free(&w);

	/* Bad framing inside the record. */
	rewrite(&a, 0xffff, NULL, 0, &w);
	state_put_u8(&w, 3, 0);         /* LCR twice */
	expect_refused(w.buf, w.len, "appears twice");
	state_writer_free(&w);
	state_writer_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test(test_bad_create),
		cmocka_unit_test_setup_teardown(test_reset_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thr_reaches_sink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scratch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_fifo_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_without_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_trigger_and_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_thre_test, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_autoconfig, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_rx_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_receive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_fresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_bad_fields, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
