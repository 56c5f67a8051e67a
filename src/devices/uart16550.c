/* uart16550.c: the ns16550A UART, as described by the National
 * Semiconductor / TI PC16550D datasheet (SNLS378): the register summary
 * (RBR/THR/DLL, IER/DLM, IIR/FCR, LCR, MCR, LSR, MSR, SCR), the interrupt
 * priorities of the "Interrupt Control Functions" table (IIR), the FIFO
 * Control Register section (FCR) and the Modem Control Register section's
 * local loopback diagnostic (MCR bit 4).
 *
 * What is simplified, and why it is invisible to a driver:
 * - The transmitter is infinitely fast: a THR write reaches the sink before
 *   the write returns, so THRE and TEMT always read as set and there is no
 *   transmit FIFO to model.
 * - There is no bit timing, so the character timeout indication (IIR 0xC)
 *   is reported as soon as fewer bytes than the trigger level wait in the
 *   receive FIFO. Linux's 8250 driver treats timeout and "data available"
 *   alike: it drains while LSR.DR is set.
 * - Outside loopback the modem inputs are those of a connected, ready peer:
 *   CTS, DSR and DCD asserted, RI not.
 *
 * Locking: one mutex per UART guards every register. The interrupt line is
 * driven with that mutex held, so the controller behind the line must never
 * call back into the UART (the PLIC does not). The sink is also called with
 * the mutex held, which keeps bytes from different harts in THR-write order. */
#include "devices/uart16550.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIFO_SIZE 16

/* Register offsets (reg-shift 0). */
enum {
	REG_RBR_THR_DLL = 0,
	REG_IER_DLM = 1,
	REG_IIR_FCR = 2,
	REG_LCR = 3,
	REG_MCR = 4,
	REG_LSR = 5,
	REG_MSR = 6,
	REG_SCR = 7,
};

#define IER_ERBFI 0x01          /* received data available */
#define IER_ETBEI 0x02          /* transmitter holding register empty */
#define IER_ELSI 0x04           /* receiver line status */
#define IER_EDSSI 0x08          /* modem status */
#define IER_MASK 0x0f

#define IIR_NONE 0x01
#define IIR_MODEM 0x00
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_RLS 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFOS_ON 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
#define FCR_DMA_MODE 0x08
#define FCR_TRIGGER 0xc0

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_PE 0x04
#define LSR_FE 0x08
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct uart16550 {
	struct device dev;
	pthread_mutex_t lock;
	pthread_cond_t rx_space;        /* signalled when the FIFO may accept input */
	struct irq_line irq;
	struct char_sink sink;
	bool irq_level;                 /* what the line was last driven to */

	uint8_t rx_fifo[FIFO_SIZE];
	unsigned rx_head, rx_count;

	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
	uint8_t lsr_errors;             /* OE/PE/FE/BI, cleared by reading LSR */
	uint8_t msr_inputs;             /* CTS/DSR/RI/DCD as currently seen */
	uint8_t msr_deltas;             /* DCTS/DDSR/TERI/DDCD, cleared by reading MSR */
	/* The THRE interrupt is an event, not a level: it is raised when the
	 * holding register becomes empty or ETBEI is turned on, and a read of
	 * IIR that reports it withdraws it (Interrupt Control Functions). */
	bool thre_pending;
};

/* A default mutex only fails here on a corrupted object: continuing would
 * let two harts race on the registers, so stop loudly instead. */
static void lock(struct uart16550 *u)
{
	int rc = pthread_mutex_lock(&u->lock);
	if (rc) {
		fprintf(stderr, "tern: %s: pthread_mutex_lock: %s\n", u->dev.id, strerror(rc));
		abort();
	}
}

static void unlock(struct uart16550 *u)
{
	int rc = pthread_mutex_unlock(&u->lock);
	if (rc) {
		fprintf(stderr, "tern: %s: pthread_mutex_unlock: %s\n", u->dev.id, strerror(rc));
		abort();
	}
}

static void wake_rx_waiters(struct uart16550 *u)
{
	int rc = pthread_cond_broadcast(&u->rx_space);
	if (rc) {
		fprintf(stderr, "tern: %s: pthread_cond_broadcast: %s\n", u->dev.id, strerror(rc));
		abort();
	}
}

static bool fifos_enabled(const struct uart16550 *u)
{
	return u->fcr & FCR_ENABLE;
}

/* With FIFOs off the part behaves as a 16450: a single holding register. */
static unsigned rx_capacity(const struct uart16550 *u)
{
	return fifos_enabled(u) ? FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct uart16550 *u)
{
	static const unsigned levels[4] = { 1, 4, 8, 14 };
	return fifos_enabled(u) ? levels[u->fcr >> 6] : 1;
}

/* In loopback the receiver is cut off from the serial input. */
static bool rx_accepts_input(const struct uart16550 *u)
{
	return !(u->mcr & MCR_LOOP) && u->rx_count < rx_capacity(u);
}

static void rx_clear(struct uart16550 *u)
{
	u->rx_head = 0;
	u->rx_count = 0;
	wake_rx_waiters(u);
}

static bool rx_push(struct uart16550 *u, uint8_t byte)
{
	if (u->rx_count >= rx_capacity(u))
		return false;
	u->rx_fifo[(u->rx_head + u->rx_count) % FIFO_SIZE] = byte;
	u->rx_count++;
	return true;
}

static uint8_t rx_pop(struct uart16550 *u)
{
	if (u->rx_count == 0)
		return 0;
	uint8_t byte = u->rx_fifo[u->rx_head];
	u->rx_head = (u->rx_head + 1) % FIFO_SIZE;
	u->rx_count--;
	wake_rx_waiters(u);
	return byte;
}

/* Interrupt identification in the datasheet's priority order. */
static uint8_t pending_interrupt(const struct uart16550 *u)
{
	if ((u->ier & IER_ELSI) && (u->lsr_errors & LSR_ERRORS))
		return IIR_RLS;
	if ((u->ier & IER_ERBFI) && u->rx_count)
		return u->rx_count >= rx_trigger(u) ? IIR_RDA : IIR_TIMEOUT;
	if ((u->ier & IER_ETBEI) && u->thre_pending)
		return IIR_THRE;
	if ((u->ier & IER_EDSSI) && u->msr_deltas)
		return IIR_MODEM;
	return IIR_NONE;
}

/* Called after every state change, with the lock held. Only edges reach
 * the controller: it keeps the level, and every call costs its lock. */
static void update_irq(struct uart16550 *u)
{
	bool level = pending_interrupt(u) != IIR_NONE;
	if (level != u->irq_level) {
		u->irq_level = level;
		irq_line_set(&u->irq, level);
	}
}

/* The modem inputs: in loopback they are wired to the modem outputs
 * (MCR bit 4: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD). */
static uint8_t modem_inputs(const struct uart16550 *u)
{
	if (!(u->mcr & MCR_LOOP))
		return MSR_CTS | MSR_DSR | MSR_DCD;
	uint8_t in = 0;
	if (u->mcr & MCR_DTR)
		in |= MSR_DSR;
	if (u->mcr & MCR_RTS)
		in |= MSR_CTS;
	if (u->mcr & MCR_OUT1)
		in |= MSR_RI;
	if (u->mcr & MCR_OUT2)
		in |= MSR_DCD;
	return in;
}

static void update_modem_inputs(struct uart16550 *u)
{
	uint8_t now = modem_inputs(u), changed = now ^ u->msr_inputs;
	if (changed & MSR_CTS)
		u->msr_deltas |= MSR_DCTS;
	if (changed & MSR_DSR)
		u->msr_deltas |= MSR_DDSR;
	if (changed & MSR_DCD)
		u->msr_deltas |= MSR_DDCD;
	/* RI reports only its trailing edge. */
	if ((changed & MSR_RI) && !(now & MSR_RI))
		u->msr_deltas |= MSR_TERI;
	u->msr_inputs = now;
}

static void transmit(struct uart16550 *u, uint8_t byte)
{
	if (u->mcr & MCR_LOOP) {
		/* The shift register overwrites nothing in the FIFO: the
		 * new character is the one lost (datasheet, LSR bit 1). */
		if (!rx_push(u, byte))
			u->lsr_errors |= LSR_OE;
	} else if (u->sink.write) {
		u->sink.write(u->sink.opaque, &byte, 1);
	}
	/* The byte left THR at once, so THR is empty again. */
	u->thre_pending = u->ier & IER_ETBEI;
}

static void write_ier(struct uart16550 *u, uint8_t value)
{
	uint8_t old = u->ier;
	u->ier = value & IER_MASK;
	/* Turning ETBEI on while THR is empty raises THRE: drivers (Linux's
	 * 8250 start_tx, its THRE test at startup) depend on it. */
	if ((u->ier & IER_ETBEI) && !(old & IER_ETBEI))
		u->thre_pending = true;
	else if (!(u->ier & IER_ETBEI))
		u->thre_pending = false;
}

static void write_fcr(struct uart16550 *u, uint8_t value)
{
	/* Switching between 16450 and FIFO mode empties the FIFOs, and
	 * without bit 0 the other bits are not programmed (datasheet, FCR bit 0). */
	if (!(value & FCR_ENABLE)) {
		if (fifos_enabled(u))
			rx_clear(u);
		u->fcr = 0;
		return;
	}
	if (!fifos_enabled(u) || (value & FCR_CLEAR_RX))
		rx_clear(u);
	/* FCR_CLEAR_TX: the transmit FIFO is always empty already. */
	u->fcr = value & (FCR_ENABLE | FCR_DMA_MODE | FCR_TRIGGER);
}

static uint8_t read_reg(struct uart16550 *u, unsigned reg)
{
	uint8_t value = 0;
	switch (reg) {
	case REG_RBR_THR_DLL:
		value = (u->lcr & LCR_DLAB) ? u->dll : rx_pop(u);
		break;
	case REG_IER_DLM:
		value = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
		break;
	case REG_IIR_FCR: {
		uint8_t id = pending_interrupt(u);
		if (id == IIR_THRE)
			u->thre_pending = false;
		value = id | (fifos_enabled(u) ? IIR_FIFOS_ON : 0);
		break;
	}
	case REG_LCR:
		value = u->lcr;
		break;
	case REG_MCR:
		value = u->mcr;
		break;
	case REG_LSR:
		value = LSR_THRE | LSR_TEMT | u->lsr_errors | (u->rx_count ? LSR_DR : 0);
		u->lsr_errors = 0;
		break;
	case REG_MSR:
		value = u->msr_inputs | u->msr_deltas;
		u->msr_deltas = 0;
		break;
	case REG_SCR:
		value = u->scr;
		break;
	}
	return value;
}

static void write_reg(struct uart16550 *u, unsigned reg, uint8_t value)
{
	switch (reg) {
	case REG_RBR_THR_DLL:
		if (u->lcr & LCR_DLAB)
			u->dll = value;
		else
			transmit(u, value);
		break;
	case REG_IER_DLM:
		if (u->lcr & LCR_DLAB)
			u->dlm = value;
		else
			write_ier(u, value);
		break;
	case REG_IIR_FCR:
		write_fcr(u, value);
		break;
	case REG_LCR:
		u->lcr = value;
		break;
	case REG_MCR:
		if ((u->mcr ^ value) & MCR_LOOP)
			wake_rx_waiters(u);
		u->mcr = value & MCR_MASK;
		update_modem_inputs(u);
		break;
	case REG_LSR:           /* factory test only: writes are not defined */
	case REG_MSR:
		break;
	case REG_SCR:
		u->scr = value;
		break;
	}
}

static struct uart16550 *to_uart(struct device *dev)
{
	return (struct uart16550 *)((char *)dev - offsetof(struct uart16550, dev));
}

/* reg-io-width is 1: a wider access addresses the byte register at its
 * offset (reading it once) and the upper bytes read as 0. */
static uint64_t uart_read(struct device *dev, uint64_t offset, unsigned size)
{
	struct uart16550 *u = to_uart(dev);
	if (offset > REG_SCR)
		return 0;
	lock(u);
	uint8_t value = read_reg(u, (unsigned)offset);
	update_irq(u);
	unlock(u);
	return value;
}

static void uart_write(struct device *dev, uint64_t offset, uint64_t value, unsigned size)
{
	struct uart16550 *u = to_uart(dev);
	if (offset > REG_SCR)
		return;
	lock(u);
	write_reg(u, (unsigned)offset, (uint8_t)value);
	update_irq(u);
	unlock(u);
}

/* Master reset values (datasheet, "UART Reset Functions"). The part does
 * not reset the divisor latch or the scratch register, but a fresh machine
 * has no business seeing what the previous run left there. */
static void reset_locked(struct uart16550 *u)
{
	u->ier = 0;
	u->fcr = 0;
	u->lcr = 0;
	u->mcr = 0;
	u->scr = 0;
	u->dll = 0;
	u->dlm = 0;
	u->lsr_errors = 0;
	u->thre_pending = false;
	rx_clear(u);
	u->msr_inputs = modem_inputs(u);
	u->msr_deltas = 0;
}

static void uart_reset(struct device *dev)
{
	struct uart16550 *u = to_uart(dev);
	lock(u);
	reset_locked(u);
	update_irq(u);
	unlock(u);
}

static void uart_destroy(struct device *dev)
{
	struct uart16550 *u = to_uart(dev);
	pthread_cond_destroy(&u->rx_space);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static const struct device_ops uart_ops = {
	.type = "ns16550a",
	.read = uart_read,
	.write = uart_write,
	.reset = uart_reset,
	.save = NULL,
	.restore = NULL,
	.destroy = uart_destroy,
};

struct uart16550 *uart16550_create(const char *id, uint64_t base, struct irq_line irq,
				   struct char_sink sink, struct error *err)
{
	if (!id || !*id || strlen(id) >= sizeof(((struct device *)0)->id)) {
		error_set(err, EINVAL, "UART instance name \"%s\" is empty or too long",
			  id ? id : "");
		return NULL;
	}
	struct uart16550 *u = calloc(1, sizeof(*u));
	if (!u) {
		error_set(err, ENOMEM, "cannot allocate UART %s", id);
		return NULL;
	}
	int rc = pthread_mutex_init(&u->lock, NULL);
	if (rc) {
		error_errno(err, rc, "cannot create the lock of UART %s", id);
		free(u);
		return NULL;
	}
	/* wait_rx_space takes a relative timeout: measure it on a clock
	 * that wall-clock adjustments cannot move. */
	pthread_condattr_t attr;
	rc = pthread_condattr_init(&attr);
	if (!rc) {
		rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		if (!rc)
			rc = pthread_cond_init(&u->rx_space, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (rc) {
		error_errno(err, rc, "cannot create the condition variable of UART %s", id);
		pthread_mutex_destroy(&u->lock);
		free(u);
		return NULL;
	}

	u->dev.ops = &uart_ops;
	strcpy(u->dev.id, id);
	u->dev.base = base;
	u->dev.size = UART16550_WINDOW;
	u->irq = irq;
	u->sink = sink;
	reset_locked(u);
	return u;
}

struct device *uart16550_device(struct uart16550 *uart)
{
	return &uart->dev;
}

size_t uart16550_receive(struct uart16550 *uart, const uint8_t *buf, size_t len)
{
	size_t n = 0;
	lock(uart);
	while (n < len && rx_accepts_input(uart))
		rx_push(uart, buf[n++]);
	if (n)
		update_irq(uart);
	unlock(uart);
	return n;
}

/* A negative timeout waits for as long as it takes; 0 only looks. "Room"
 * means room for console input, which loopback mode shuts out: a caller
 * that retries receive() after a true return must not spin. */
bool uart16550_wait_rx_space(struct uart16550 *uart, int timeout_ms)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms > 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}

	lock(uart);
	while (!rx_accepts_input(uart)) {
		int rc = timeout_ms < 0 ? pthread_cond_wait(&uart->rx_space, &uart->lock)
					: pthread_cond_timedwait(&uart->rx_space, &uart->lock,
								 &deadline);
		if (rc == ETIMEDOUT)
			break;
		if (rc) {
			fprintf(stderr, "tern: %s: waiting for receive space: %s\n", uart->dev.id,
				strerror(rc));
			abort();
		}
	}
	bool room = rx_accepts_input(uart);
	unlock(uart);
	return room;
}
