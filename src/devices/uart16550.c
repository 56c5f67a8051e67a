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

#include "state/state.h"

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

/* With FIFOs off the part behaves as a 16450: a single holding register.
 * Takes the FCR value so restore can check a saved one. */
static unsigned rx_capacity_for(uint8_t fcr)
{
	return (fcr & FCR_ENABLE) ? FIFO_SIZE : 1;
}

static unsigned rx_capacity(const struct uart16550 *u)
{
	return rx_capacity_for(u->fcr);
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
 * (MCR bit 4: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD). Takes the MCR
 * value so restore can check a saved one. */
static uint8_t modem_inputs_for(uint8_t mcr)
{
	if (!(mcr & MCR_LOOP))
		return MSR_CTS | MSR_DSR | MSR_DCD;
	uint8_t in = 0;
	if (mcr & MCR_DTR)
		in |= MSR_DSR;
	if (mcr & MCR_RTS)
		in |= MSR_CTS;
	if (mcr & MCR_OUT1)
		in |= MSR_RI;
	if (mcr & MCR_OUT2)
		in |= MSR_DCD;
	return in;
}

static uint8_t modem_inputs(const struct uart16550 *u)
{
	return modem_inputs_for(u->mcr);
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

/* ---- save / restore ------------------------------------------------------ */

/* Field ids of the saved UART record (see uart_save); never reuse one. */
enum {
	US_VERSION = 0,
	US_IER = 1,
	US_FCR = 2,
	US_LCR = 3,
	US_MCR = 4,
	US_SCR = 5,
	US_DLL = 6,
	US_DLM = 7,
	US_LSR_ERRORS = 8,
	US_MSR_INPUTS = 9,
	US_MSR_DELTAS = 10,
	US_THRE_PENDING = 11,
	US_RX_FIFO = 12,
};
#define UART_STATE_VERSION 1u

/* The saved record, field by field:
 *
 *   id  type        contents
 *    0  u32         record version (1)
 *    1  u8          IER (bits 0-3)
 *    2  u8          FCR as programmed: ENABLE, DMA mode, trigger (0 when
 *                   FIFOs are off; the self-clearing bits are never kept)
 *    3  u8          LCR, DLAB included
 *    4  u8          MCR (bits 0-4; bit 4 is loopback)
 *    5  u8          SCR
 *    6  u8          DLL
 *    7  u8          DLM
 *    8  u8          LSR error bits OE/PE/FE/BI not yet read by the driver
 *    9  u8          MSR inputs CTS/DSR/RI/DCD as the driver last could see
 *                   them (the base for the next delta)
 *   10  u8          MSR delta bits DCTS/DDSR/TERI/DDCD not yet read
 *   11  bool        THRE indication pending (an event IIR reads withdraw)
 *   12  bytes[0-16] receive FIFO, oldest byte first
 *
 * DR, THRE and TEMT in LSR, IIR and the interrupt line all follow from
 * these, so they are recomputed on restore rather than carried. */
static int uart_save(struct device *dev, struct state_writer *w, struct error *err)
{
	struct uart16550 *u = to_uart(dev);
	uint8_t fifo[FIFO_SIZE];

	lock(u);
	for (unsigned i = 0; i < u->rx_count; i++)
		fifo[i] = u->rx_fifo[(u->rx_head + i) % FIFO_SIZE];
	state_put_u32(w, US_VERSION, UART_STATE_VERSION);
	state_put_u8(w, US_IER, u->ier);
	state_put_u8(w, US_FCR, u->fcr);
	state_put_u8(w, US_LCR, u->lcr);
	state_put_u8(w, US_MCR, u->mcr);
	state_put_u8(w, US_SCR, u->scr);
	state_put_u8(w, US_DLL, u->dll);
	state_put_u8(w, US_DLM, u->dlm);
	state_put_u8(w, US_LSR_ERRORS, u->lsr_errors);
	state_put_u8(w, US_MSR_INPUTS, u->msr_inputs);
	state_put_u8(w, US_MSR_DELTAS, u->msr_deltas);
	state_put_bool(w, US_THRE_PENDING, u->thre_pending);
	state_put_bytes(w, US_RX_FIFO, fifo, u->rx_count);
	unlock(u);
	return state_writer_status(w, err);
}

/* What restore decodes and checks before any of it reaches the device;
 * each member means what its namesake in struct uart16550 does. */
struct uart_saved {
	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
	uint8_t lsr_errors, msr_inputs, msr_deltas;
	bool thre_pending;
	uint8_t rx_fifo[FIFO_SIZE];
	unsigned rx_count;
};

static int read_saved(struct uart16550 *u, struct state_reader *in, struct uart_saved *s,
		      struct error *err)
{
	static const uint16_t known[] = {
		US_VERSION, US_IER, US_FCR, US_LCR, US_MCR, US_SCR, US_DLL, US_DLM,
		US_LSR_ERRORS, US_MSR_INPUTS, US_MSR_DELTAS, US_THRE_PENDING, US_RX_FIFO,
	};
	const char *id = u->dev.id;
	struct state_reader r;
	uint32_t version;
	const void *fifo;
	size_t fifo_len;
	int rc;

	/* The transport checked the framing without our list of ids: check
	 * again with it, so a required field we do not know is refused. */
	if ((rc = state_reader_init(&r, in->data, in->len, id, known,
				    sizeof(known) / sizeof(known[0]), err)))
		return rc;
	if ((rc = state_get_u32(&r, US_VERSION, &version, err)))
		return rc;
	if (version != UART_STATE_VERSION)
		return error_set(err, EINVAL, "%s: saved ns16550a state has version %u, this "
				 "tern reads %u", id, version, UART_STATE_VERSION);
	if ((rc = state_get_u8(&r, US_IER, &s->ier, err)) ||
	    (rc = state_get_u8(&r, US_FCR, &s->fcr, err)) ||
	    (rc = state_get_u8(&r, US_LCR, &s->lcr, err)) ||
	    (rc = state_get_u8(&r, US_MCR, &s->mcr, err)) ||
	    (rc = state_get_u8(&r, US_SCR, &s->scr, err)) ||
	    (rc = state_get_u8(&r, US_DLL, &s->dll, err)) ||
	    (rc = state_get_u8(&r, US_DLM, &s->dlm, err)) ||
	    (rc = state_get_u8(&r, US_LSR_ERRORS, &s->lsr_errors, err)) ||
	    (rc = state_get_u8(&r, US_MSR_INPUTS, &s->msr_inputs, err)) ||
	    (rc = state_get_u8(&r, US_MSR_DELTAS, &s->msr_deltas, err)) ||
	    (rc = state_get_bool(&r, US_THRE_PENDING, &s->thre_pending, err)) ||
	    (rc = state_get_blob(&r, US_RX_FIFO, &fifo, &fifo_len, err)))
		return rc;

	/* Values the registers cannot hold would otherwise leak back to the
	 * driver on its next read. */
	if (s->ier & ~IER_MASK)
		return error_set(err, EINVAL, "%s: saved IER 0x%02x has bits above bit 3", id,
				 s->ier);
	if (s->fcr & ~(FCR_ENABLE | FCR_DMA_MODE | FCR_TRIGGER))
		return error_set(err, EINVAL, "%s: saved FCR 0x%02x has self-clearing or "
				 "reserved bits", id, s->fcr);
	if (s->fcr && !(s->fcr & FCR_ENABLE))
		return error_set(err, EINVAL, "%s: saved FCR 0x%02x programs the FIFOs without "
				 "enabling them", id, s->fcr);
	if (s->mcr & ~MCR_MASK)
		return error_set(err, EINVAL, "%s: saved MCR 0x%02x has bits above bit 4", id,
				 s->mcr);
	if (s->lsr_errors & ~LSR_ERRORS)
		return error_set(err, EINVAL, "%s: saved LSR error bits 0x%02x include bits that "
				 "are not errors", id, s->lsr_errors);
	if (s->msr_deltas & ~(MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD))
		return error_set(err, EINVAL, "%s: saved MSR delta bits 0x%02x include bits "
				 "that are not deltas", id, s->msr_deltas);
	/* The inputs are a function of MCR here (a ready peer, or the
	 * loopback wiring); others would raise phantom deltas on the next
	 * MCR write. */
	if (s->msr_inputs != modem_inputs_for(s->mcr))
		return error_set(err, EINVAL, "%s: saved MSR inputs 0x%02x are not the 0x%02x "
				 "that MCR 0x%02x gives", id, s->msr_inputs,
				 modem_inputs_for(s->mcr), s->mcr);
	/* write_ier and transmit never leave THRE pending with ETBEI off. */
	if (s->thre_pending && !(s->ier & IER_ETBEI))
		return error_set(err, EINVAL, "%s: saved state has a THRE interrupt pending with "
				 "ETBEI off (IER 0x%02x)", id, s->ier);
	if (fifo_len > rx_capacity_for(s->fcr))
		return error_set(err, EINVAL, "%s: saved receive FIFO holds %zu bytes, more than "
				 "the %u it can hold with FCR 0x%02x", id, fifo_len,
				 rx_capacity_for(s->fcr), s->fcr);
	memcpy(s->rx_fifo, fifo, fifo_len);
	s->rx_count = (unsigned)fifo_len;
	return 0;
}

static int uart_restore(struct device *dev, struct state_reader *in, struct error *err)
{
	struct uart16550 *u = to_uart(dev);
	struct uart_saved s;
	int rc = read_saved(u, in, &s, err);
	if (rc)
		return rc;

	lock(u);
	u->ier = s.ier;
	u->fcr = s.fcr;
	u->lcr = s.lcr;
	u->mcr = s.mcr;
	u->scr = s.scr;
	u->dll = s.dll;
	u->dlm = s.dlm;
	u->lsr_errors = s.lsr_errors;
	u->msr_inputs = s.msr_inputs;
	u->msr_deltas = s.msr_deltas;
	u->thre_pending = s.thre_pending;
	memcpy(u->rx_fifo, s.rx_fifo, s.rx_count);
	u->rx_head = 0;
	u->rx_count = s.rx_count;
	/* The console thread may be waiting for room that now exists (or
	 * that loopback now denies): let it look again. */
	wake_rx_waiters(u);
	/* Driven whatever the previous level: the controller behind the
	 * line may itself be fresh, and setting a level twice is harmless. */
	u->irq_level = pending_interrupt(u) != IIR_NONE;
	irq_line_set(&u->irq, u->irq_level);
	unlock(u);
	return 0;
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
	.save = uart_save,
	.restore = uart_restore,
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
