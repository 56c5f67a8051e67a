/* test_plic.c: the PLIC seen from a hart's interrupt handler and from the
 * devices behind it. Registers are reached only through device_ops with
 * the offsets of the PLIC specification's memory map; source lines are
 * driven through plic_set_level, the irq_line callback devices use; the
 * context outputs are observed through notify. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/plic.h"
#include "state/state.h"

#define NUM_CONTEXTS 2

struct fixture {
	struct plic *plic;
	struct device *dev;
	bool level[NUM_CONTEXTS];
	unsigned calls[NUM_CONTEXTS];
	bool repeats_ok;        /* a restore reports every level, changed or not */
};

static void notify(void *opaque, unsigned ctx, bool level)
{
	struct fixture *f = opaque;
	assert_true(ctx < NUM_CONTEXTS);
	/* Only changes are reported. */
	if (!f->repeats_ok)
		assert_true(level != f->level[ctx]);
	f->level[ctx] = level;
	f->calls[ctx]++;
}

static int setup_sources(void **state, unsigned num_sources)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	struct error err = { 0 };
	f->plic = plic_create("plic@c000000", 0x0c000000, num_sources, NUM_CONTEXTS, notify, f,
			      &err);
	if (!f->plic)
		fail_msg("plic_create: %s", err.msg);
	f->dev = plic_device(f->plic);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_sources(state, 32);
}

static int setup_wide(void **state)
{
	return setup_sources(state, 40);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	f->dev->ops->destroy(f->dev);
	free(f);
	return 0;
}

static uint32_t rd(struct fixture *f, uint64_t off)
{
	uint64_t v = f->dev->ops->read(f->dev, off, 4);
	assert_true(v <= 0xffffffffu);
	return (uint32_t)v;
}

static void wr(struct fixture *f, uint64_t off, uint32_t value)
{
	f->dev->ops->write(f->dev, off, value, 4);
}

static uint64_t priority(unsigned src) { return 4 * src; }
static uint64_t pending(unsigned word) { return 0x1000 + 4 * word; }
static uint64_t enable(unsigned ctx, unsigned word) { return 0x2000 + 0x80 * ctx + 4 * word; }
static uint64_t threshold(unsigned ctx) { return 0x200000 + 0x1000 * ctx; }
static uint64_t claim(unsigned ctx) { return 0x200004 + 0x1000 * ctx; }

static void line(struct fixture *f, unsigned src, bool level)
{
	plic_set_level(f->plic, src, level);
}

/* Priority p, enabled for ctx. */
static void route(struct fixture *f, unsigned src, uint32_t prio, unsigned ctx)
{
	wr(f, priority(src), prio);
	wr(f, enable(ctx, src / 32), rd(f, enable(ctx, src / 32)) | 1u << (src % 32));
}

static void test_identity(void **state)
{
	struct fixture *f = *state;
	assert_string_equal(f->dev->id, "plic@c000000");
	assert_int_equal(f->dev->base, 0x0c000000);
	assert_int_equal(f->dev->size, PLIC_WINDOW);
	struct irq_line l = plic_irq_line(f->plic, 10);
	assert_ptr_equal(l.controller, f->plic);
	assert_int_equal(l.irq, 10);
	irq_line_set(&l, true);
	assert_int_equal(rd(f, pending(0)), 1u << 10);
}

static void test_bad_create(void **state)
{
	struct error err = { 0 };
	assert_null(plic_create("p", 0, 1, 1, NULL, NULL, &err));
	assert_int_equal(err.code, EINVAL);
	err.code = 0;
	assert_null(plic_create("p", 0, PLIC_MAX_SOURCES + 1, 1, NULL, NULL, &err));
	assert_int_equal(err.code, EINVAL);
	err.code = 0;
	assert_null(plic_create("p", 0, 32, 0, NULL, NULL, &err));
	assert_int_equal(err.code, EINVAL);
	err.code = 0;
	assert_null(plic_create("p", 0, 32, PLIC_MAX_CONTEXTS + 1, NULL, NULL, &err));
	assert_int_equal(err.code, EINVAL);
	err.code = 0;
	assert_null(plic_create(NULL, 0, 32, 1, NULL, NULL, &err));
	assert_int_equal(err.code, EINVAL);

	/* The largest configuration works, with every source usable. */
	struct plic *p = plic_create("p", 0, PLIC_MAX_SOURCES, PLIC_MAX_CONTEXTS, NULL, NULL, &err);
	assert_non_null(p);
	struct device *dev = plic_device(p);
	unsigned last = PLIC_MAX_SOURCES - 1, ctx = PLIC_MAX_CONTEXTS - 1;
	dev->ops->write(dev, 4 * last, 1, 4);
	dev->ops->write(dev, 0x2000 + 0x80 * ctx + 4 * (last / 32), 0xffffffff, 4);
	plic_set_level(p, last, true);
	assert_int_equal(dev->ops->read(dev, 0x200004 + 0x1000 * ctx, 4), last);
	dev->ops->destroy(dev);
}

static void test_priorities(void **state)
{
	struct fixture *f = *state;
	for (unsigned src = 1; src < 32; src++)
		assert_int_equal(rd(f, priority(src)), 0);
	wr(f, priority(1), 5);
	assert_int_equal(rd(f, priority(1)), 5);
	wr(f, priority(31), 0xffffffff);         /* WARL: 3 bits */
	assert_int_equal(rd(f, priority(31)), 7);
	wr(f, priority(0), 7);                   /* source 0 does not exist */
	assert_int_equal(rd(f, priority(0)), 0);
	wr(f, priority(32), 7);                  /* nor do sources past the last */
	assert_int_equal(rd(f, priority(32)), 0);
	assert_int_equal(rd(f, priority(1023)), 0);
}

static void test_enables(void **state)
{
	struct fixture *f = *state;
	wr(f, enable(0, 0), 0xffffffff);
	assert_int_equal(rd(f, enable(0, 0)), 0xfffffffe);      /* no source 0 */
	wr(f, enable(0, 1), 0xffffffff);
	assert_int_equal(rd(f, enable(0, 1)), 0);               /* no source 32+ */
	assert_int_equal(rd(f, enable(1, 0)), 0);               /* per context */
	wr(f, enable(1, 0), 0x00000400);
	assert_int_equal(rd(f, enable(1, 0)), 0x400);
	assert_int_equal(rd(f, enable(0, 0)), 0xfffffffe);
}

static void test_enables_wide(void **state)
{
	struct fixture *f = *state;
	wr(f, enable(1, 1), 0xffffffff);
	assert_int_equal(rd(f, enable(1, 1)), 0xff);            /* sources 32..39 */
	assert_int_equal(rd(f, enable(1, 0)), 0);
	route(f, 39, 2, 1);
	line(f, 39, true);
	assert_int_equal(rd(f, pending(1)), 1u << 7);
	assert_true(f->level[1]);
	assert_int_equal(rd(f, claim(1)), 39);
	assert_int_equal(rd(f, pending(1)), 0);
}

static void test_pending_bits(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(rd(f, pending(0)), 0);
	line(f, 3, true);
	line(f, 31, true);
	assert_int_equal(rd(f, pending(0)), (1u << 3) | (1u << 31));
	/* Pending is set whatever the priority and enables: it is the
	 * gateway's request, waiting. But it reaches no context. */
	assert_int_equal(f->calls[0] + f->calls[1], 0);
	wr(f, pending(0), 0);                    /* read-only */
	assert_int_equal(rd(f, pending(0)), (1u << 3) | (1u << 31));
	assert_int_equal(rd(f, pending(1)), 0);
	/* The request stays even when the line drops before a claim. */
	line(f, 3, false);
	assert_int_equal(rd(f, pending(0)), (1u << 3) | (1u << 31));
	route(f, 3, 1, 0);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 3);
	assert_int_equal(rd(f, pending(0)), 1u << 31);
	assert_false(f->level[0]);
}

static void test_threshold_masks(void **state)
{
	struct fixture *f = *state;
	wr(f, threshold(0), 3);
	assert_int_equal(rd(f, threshold(0)), 3);
	wr(f, threshold(1), 0xffffffff);
	assert_int_equal(rd(f, threshold(1)), 7);
	route(f, 5, 3, 0);
	line(f, 5, true);
	/* Priority must exceed the threshold, not equal it. */
	assert_false(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 0);
	assert_int_equal(rd(f, pending(0)), 1u << 5);
	wr(f, threshold(0), 2);
	assert_true(f->level[0]);
	wr(f, threshold(0), 3);
	assert_false(f->level[0]);
	wr(f, priority(5), 4);
	assert_true(f->level[0]);
	/* Priority 0 never interrupts, whatever the threshold. */
	wr(f, threshold(0), 0);
	wr(f, priority(5), 0);
	assert_false(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 0);
	wr(f, priority(5), 1);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 5);
	assert_false(f->level[0]);
}

static void test_claim_order(void **state)
{
	struct fixture *f = *state;
	route(f, 2, 1, 0);
	route(f, 4, 3, 0);
	route(f, 6, 3, 0);
	route(f, 9, 2, 0);
	line(f, 9, true);
	line(f, 6, true);
	line(f, 2, true);
	line(f, 4, true);
	assert_true(f->level[0]);
	assert_int_equal(f->calls[0], 1);
	/* Highest priority first; equal priorities by lowest id. */
	assert_int_equal(rd(f, claim(0)), 4);
	assert_int_equal(rd(f, claim(0)), 6);
	assert_int_equal(rd(f, claim(0)), 9);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 2);
	assert_false(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 0);
	assert_int_equal(f->calls[0], 2);
	/* Disabled sources are not claimed even when pending. */
	line(f, 12, true);
	wr(f, priority(12), 7);
	assert_int_equal(rd(f, claim(0)), 0);
	assert_int_equal(f->calls[1], 0);
}

static void test_complete_repends_high_line(void **state)
{
	struct fixture *f = *state;
	route(f, 10, 1, 0);
	line(f, 10, true);
	assert_int_equal(rd(f, claim(0)), 10);
	assert_false(f->level[0]);
	/* In service: the gateway holds further requests back. */
	line(f, 10, true);
	line(f, 10, false);
	line(f, 10, true);
	assert_int_equal(rd(f, pending(0)), 0);
	assert_false(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 0);
	/* Completing with the line still high is a new request. */
	wr(f, claim(0), 10);
	assert_int_equal(rd(f, pending(0)), 1u << 10);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 10);
	/* Until completion, setting it high again changes nothing. */
	assert_false(f->level[0]);
	assert_int_equal(f->calls[0], 4);
}

static void test_no_repend_after_drop(void **state)
{
	struct fixture *f = *state;
	route(f, 10, 1, 0);
	line(f, 10, true);
	assert_int_equal(rd(f, claim(0)), 10);
	line(f, 10, false);         /* the driver serviced the device */
	wr(f, claim(0), 10);
	assert_int_equal(rd(f, pending(0)), 0);
	assert_false(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 0);
	/* And the next assertion is a fresh request. */
	line(f, 10, true);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 10);
}

static void test_complete_ignored(void **state)
{
	struct fixture *f = *state;
	route(f, 10, 1, 0);
	route(f, 11, 1, 0);
	line(f, 10, true);
	line(f, 11, true);
	assert_int_equal(rd(f, claim(0)), 10);
	/* Context 1 does not have source 10 enabled: ignored. */
	wr(f, claim(1), 10);
	assert_int_equal(rd(f, pending(0)), 1u << 11);
	/* Source 11 is not in service: completing it does nothing. */
	wr(f, claim(0), 11);
	assert_int_equal(rd(f, pending(0)), 1u << 11);
	/* Bogus ids. */
	wr(f, claim(0), 0);
	wr(f, claim(0), 32);
	wr(f, claim(0), 0xffffffff);
	assert_int_equal(rd(f, pending(0)), 1u << 11);
	/* The real completion. */
	wr(f, claim(0), 10);
	assert_int_equal(rd(f, pending(0)), (1u << 10) | (1u << 11));
	/* Completing twice does not make a second request. */
	assert_int_equal(rd(f, claim(0)), 10);
	line(f, 10, false);
	wr(f, claim(0), 10);
	wr(f, claim(0), 10);
	assert_int_equal(rd(f, pending(0)), 1u << 11);
}

static void test_notify_per_context(void **state)
{
	struct fixture *f = *state;
	route(f, 10, 1, 1);
	line(f, 10, true);
	assert_true(f->level[1]);
	assert_int_equal(f->calls[1], 1);
	assert_false(f->level[0]);
	assert_int_equal(f->calls[0], 0);
	/* Both contexts enabled: both see it, either may claim. */
	route(f, 10, 1, 0);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 10);
	assert_false(f->level[0]);
	assert_false(f->level[1]);
	assert_int_equal(rd(f, claim(1)), 0);
	/* Each context has its own threshold. */
	route(f, 11, 2, 0);
	route(f, 11, 2, 1);
	wr(f, threshold(1), 2);
	line(f, 11, true);
	assert_true(f->level[0]);
	assert_false(f->level[1]);
	/* Disabling drops the line of that context only. */
	route(f, 12, 5, 1);
	line(f, 12, true);
	assert_true(f->level[1]);
	wr(f, enable(1, 0), 0);
	assert_false(f->level[1]);
	assert_true(f->level[0]);
	assert_int_equal(f->calls[0], 3);
	assert_int_equal(f->calls[1], 4);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;
	route(f, 10, 1, 0);
	line(f, 10, true);
	const struct device_ops *ops = f->dev->ops;
	/* Contexts that do not exist: reads 0, writes ignored, no claims. */
	assert_int_equal(rd(f, enable(NUM_CONTEXTS, 0)), 0);
	wr(f, enable(NUM_CONTEXTS, 0), 0xffffffff);
	assert_int_equal(rd(f, claim(NUM_CONTEXTS)), 0);
	assert_int_equal(rd(f, claim(15871)), 0);
	wr(f, claim(15871), 10);
	wr(f, threshold(NUM_CONTEXTS), 7);
	assert_int_equal(rd(f, threshold(NUM_CONTEXTS)), 0);
	/* Holes between the blocks. */
	assert_int_equal(rd(f, 0x1080), 0);
	assert_int_equal(rd(f, 0x1ffc), 0);
	assert_int_equal(rd(f, enable(0, 31)), 0);
	assert_int_equal(rd(f, 0x1f2000), 0);
	assert_int_equal(rd(f, 0x200008), 0);
	assert_int_equal(rd(f, 0x200ffc), 0);
	wr(f, 0x200008, 0xffffffff);
	/* Sizes and alignments the registers do not have. */
	assert_int_equal(ops->read(f->dev, claim(0), 1), 0);
	assert_int_equal(ops->read(f->dev, claim(0), 2), 0);
	assert_int_equal(ops->read(f->dev, claim(0) + 1, 4), 0);
	ops->write(f->dev, threshold(0), 7, 1);
	ops->write(f->dev, threshold(0) + 2, 7, 4);
	assert_int_equal(rd(f, threshold(0)), 0);
	/* The very end of the window. */
	assert_int_equal(ops->read(f->dev, PLIC_WINDOW - 4, 4), 0);
	assert_int_equal(ops->read(f->dev, PLIC_WINDOW - 4, 8), 0);
	ops->write(f->dev, PLIC_WINDOW - 4, ~0ull, 8);
	assert_int_equal(ops->read(f->dev, PLIC_WINDOW, 4), 0);
	assert_int_equal(ops->read(f->dev, ~0ull - 3, 4), 0);
	/* Lines that do not exist. */
	line(f, 0, true);
	line(f, 32, true);
	line(f, 1000, true);
	assert_int_equal(rd(f, pending(0)), 1u << 10);
	assert_int_equal(rd(f, pending(1)), 0);
	/* Nothing above disturbed the one real request. */
	assert_true(f->level[0]);
	assert_false(f->level[1]);
	assert_int_equal(rd(f, claim(0)), 10);
}

static void test_wide_access(void **state)
{
	struct fixture *f = *state;
	const struct device_ops *ops = f->dev->ops;
	/* An 8-byte access is two 32-bit ones, the lower address first. */
	ops->write(f->dev, priority(2), 0x0000000600000003ull, 8);
	assert_int_equal(rd(f, priority(2)), 3);
	assert_int_equal(rd(f, priority(3)), 6);
	assert_int_equal(ops->read(f->dev, priority(2), 8), 0x0000000600000003ull);
	ops->write(f->dev, enable(0, 0), 0xffffffffffffffffull, 8);
	assert_int_equal(ops->read(f->dev, enable(0, 0), 8), 0xfffffffeull);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	route(f, 10, 1, 0);
	route(f, 11, 1, 1);
	wr(f, threshold(1), 4);
	line(f, 10, true);
	line(f, 11, true);
	assert_int_equal(rd(f, claim(0)), 10);
	line(f, 11, false);
	f->dev->ops->reset(f->dev);
	assert_false(f->level[0]);
	assert_false(f->level[1]);
	assert_int_equal(rd(f, priority(10)), 0);
	assert_int_equal(rd(f, enable(0, 0)), 0);
	assert_int_equal(rd(f, threshold(1)), 0);
	/* Line 10 is still high: after reset that is a request again. */
	assert_int_equal(rd(f, pending(0)), 1u << 10);
	route(f, 10, 1, 0);
	assert_true(f->level[0]);
	assert_int_equal(rd(f, claim(0)), 10);
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
	struct state_reader r = { .data = copy, .len = len, .what = "plic@c000000" };
	int rc = f->dev->ops->restore(f->dev, &r, err);
	free(copy);
	return rc;
}

/* A migration target: a second PLIC of `num_sources` and `num_contexts`. */
static struct fixture *target(unsigned num_sources, unsigned num_contexts)
{
	struct fixture *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	struct error err = { 0 };
	assert_true(num_contexts <= NUM_CONTEXTS);
	t->plic = plic_create("plic@c000000", 0x0c000000, num_sources, num_contexts, notify, t,
			      &err);
	if (!t->plic)
		fail_msg("plic_create: %s", err.msg);
	t->dev = plic_device(t->plic);
	t->repeats_ok = true;
	return t;
}

static void destroy(struct fixture *f)
{
	void *t = f;
	teardown(&t);
}

/* `rec` re-encoded with field `id` replaced by `len` bytes of `value`, or
 * left out when value is NULL. The PLIC's record is flat and unflagged. */
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

/* The value of field `id` of `rec`, copied into buf (at most cap bytes). */
static size_t field_value(const struct state_writer *rec, uint16_t id, uint8_t *buf, size_t cap)
{
	struct state_reader r;
	struct error err = { 0 };
	const void *v;
	size_t len;
	assert_int_equal(state_reader_init(&r, rec->buf, rec->len, "test", NULL, 0, &err), 0);
	assert_int_equal(state_get_blob(&r, id, &v, &len, &err), 0);
	assert_true(len <= cap);
	memcpy(buf, v, len);
	return len;
}

static void rewrite_u64(const struct state_writer *rec, uint16_t id, uint64_t v,
			struct state_writer *out)
{
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	rewrite(rec, id, b, 8, out);
}

/* Sources and contexts in the middle of their lives:
 *   priorities 3:2 5:5 7:1 9:7 12:3 31:4
 *   context 0: enables 3 5 7 9, threshold 1
 *   context 1: enables 5 12 31, threshold 3
 *   9 claimed by context 0, its line still high
 *   31 claimed by context 1, its line since dropped
 *   5 pending with its line high (both outputs high for it)
 *   7 pending with its line dropped (masked by context 0's threshold)
 *   12 pending with its line high (masked by context 1's threshold) */
static void make_busy(struct fixture *f)
{
	static const uint32_t prio[][2] = { { 3, 2 }, { 5, 5 }, { 7, 1 }, { 9, 7 }, { 12, 3 },
					    { 31, 4 } };
	for (unsigned i = 0; i < 6; i++)
		wr(f, priority(prio[i][0]), prio[i][1]);
	wr(f, enable(0, 0), 1u << 3 | 1u << 5 | 1u << 7 | 1u << 9);
	wr(f, enable(1, 0), 1u << 5 | 1u << 12 | 1u << 31);
	wr(f, threshold(0), 1);
	wr(f, threshold(1), 3);
	line(f, 9, true);
	assert_int_equal(rd(f, claim(0)), 9);
	line(f, 31, true);
	assert_int_equal(rd(f, claim(1)), 31);
	line(f, 31, false);
	line(f, 5, true);
	line(f, 7, true);
	line(f, 7, false);
	line(f, 12, true);
	assert_int_equal(rd(f, pending(0)), 1u << 5 | 1u << 7 | 1u << 12);
	assert_true(f->level[0]);
	assert_true(f->level[1]);
}

/* Every register a hart can read, on both PLICs. Claim is left out: it
 * changes state, and the script below exercises it. */
static void expect_same_registers(struct fixture *a, struct fixture *b, unsigned step)
{
	for (unsigned src = 0; src < 32; src++)
		if (rd(a, priority(src)) != rd(b, priority(src)))
			fail_msg("step %u: priority %u differs", step, src);
	for (unsigned w = 0; w < 2; w++)
		if (rd(a, pending(w)) != rd(b, pending(w)))
			fail_msg("step %u: pending word %u 0x%x, restored 0x%x", step, w,
				 rd(a, pending(w)), rd(b, pending(w)));
	for (unsigned ctx = 0; ctx < NUM_CONTEXTS; ctx++) {
		if (rd(a, enable(ctx, 0)) != rd(b, enable(ctx, 0)) ||
		    rd(a, enable(ctx, 1)) != rd(b, enable(ctx, 1)))
			fail_msg("step %u: enables of context %u differ", step, ctx);
		if (rd(a, threshold(ctx)) != rd(b, threshold(ctx)))
			fail_msg("step %u: threshold of context %u differs", step, ctx);
		if (a->level[ctx] != b->level[ctx])
			fail_msg("step %u: context %u output %d, restored %d", step, ctx,
				 a->level[ctx], b->level[ctx]);
	}
}

/* The same claims, completions and line changes on both PLICs give the
 * same answers and outputs, step by step. */
static void expect_same_behaviour(struct fixture *a, struct fixture *b)
{
	enum { CLAIM, COMPLETE, LINE, WRITE };
	static const struct {
		int op;
		uint64_t arg;
		uint32_t value;
	} script[] = {
		{ CLAIM, 0, 0 },        /* 5 */
		{ CLAIM, 0, 0 },        /* nothing: 7 is at the threshold */
		{ CLAIM, 1, 0 },        /* nothing: 12 is at the threshold */
		{ COMPLETE, 0, 9 },     /* line 9 still high: a new request */
		{ CLAIM, 0, 0 },        /* 9 */
		{ COMPLETE, 1, 31 },    /* line 31 low: no new request */
		{ CLAIM, 1, 0 },
		{ LINE, 31, 1 },
		{ CLAIM, 1, 0 },        /* 31 */
		{ LINE, 9, 0 },
		{ COMPLETE, 0, 9 },
		{ WRITE, 0x200000, 0 }, /* context 0 threshold 0: 7 shows */
		{ CLAIM, 0, 0 },        /* 7 */
		{ WRITE, 0x201000, 2 }, /* context 1 threshold 2: 12 shows */
		{ CLAIM, 1, 0 },        /* 12 */
		{ COMPLETE, 0, 5 },     /* line 5 still high */
		{ CLAIM, 1, 0 },        /* 5, on the other context */
		{ CLAIM, 0, 0 },
		{ LINE, 3, 1 },
		{ CLAIM, 0, 0 },        /* 3 */
	};
	expect_same_registers(a, b, 0);
	for (unsigned i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		switch (script[i].op) {
		case CLAIM: {
			uint32_t ca = rd(a, claim((unsigned)script[i].arg));
			uint32_t cb = rd(b, claim((unsigned)script[i].arg));
			if (ca != cb)
				fail_msg("step %u: context %u claims %u, restored %u", i + 1,
					 (unsigned)script[i].arg, ca, cb);
			break;
		}
		case COMPLETE:
			wr(a, claim((unsigned)script[i].arg), script[i].value);
			wr(b, claim((unsigned)script[i].arg), script[i].value);
			break;
		case LINE:
			line(a, (unsigned)script[i].arg, script[i].value);
			line(b, (unsigned)script[i].arg, script[i].value);
			break;
		case WRITE:
			wr(a, script[i].arg, script[i].value);
			wr(b, script[i].arg, script[i].value);
			break;
		}
		expect_same_registers(a, b, i + 1);
	}
}

static void test_save_restore_round_trip(void **state)
{
	struct fixture *f = *state;
	make_busy(f);
	struct state_writer a, b;
	save_dev(f, &a);

	struct fixture *t = target(32, NUM_CONTEXTS);
	struct error err = { 0 };
	if (restore_dev(t, a.buf, a.len, &err))
		fail_msg("restore: %s", err.msg);
	/* Every context was told its level, once. */
	for (unsigned ctx = 0; ctx < NUM_CONTEXTS; ctx++) {
		assert_int_equal(t->calls[ctx], 1);
		assert_true(t->level[ctx]);
	}
	save_dev(t, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	state_writer_free(&b);

	/* From here on the target reports changes only, like the source. */
	t->repeats_ok = false;
	expect_same_behaviour(f, t);
	/* And they end in the same state. */
	struct state_writer c;
	save_dev(f, &b);
	save_dev(t, &c);
	assert_int_equal(b.len, c.len);
	assert_memory_equal(b.buf, c.buf, b.len);
	state_writer_free(&a);
	state_writer_free(&b);
	state_writer_free(&c);
	destroy(t);
}

/* Low outputs are reported too: the harts start with SEIP clear, but a
 * PLIC that was busy before the restore may have told them otherwise. */
static void test_save_restore_quiet(void **state)
{
	struct fixture *f = *state;
	route(f, 4, 2, 1);
	line(f, 4, true);
	assert_int_equal(rd(f, claim(1)), 4);
	/* Line 4 stays high while in service; nothing is pending. */
	struct state_writer a, b;
	save_dev(f, &a);

	struct fixture *t = target(32, NUM_CONTEXTS);
	route(t, 6, 1, 0);
	line(t, 6, true);
	assert_true(t->level[0]);
	memset(t->calls, 0, sizeof(t->calls));
	struct error err = { 0 };
	if (restore_dev(t, a.buf, a.len, &err))
		fail_msg("restore: %s", err.msg);
	for (unsigned ctx = 0; ctx < NUM_CONTEXTS; ctx++) {
		assert_int_equal(t->calls[ctx], 1);
		assert_false(t->level[ctx]);
	}
	save_dev(t, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	/* The level survived: completing re-pends the still-high line. */
	wr(t, claim(1), 4);
	assert_true(t->level[1]);
	assert_int_equal(rd(t, claim(1)), 4);
	/* And source 6's old line is gone with the old state. */
	assert_int_equal(rd(t, pending(0)), 0);
	state_writer_free(&a);
	state_writer_free(&b);
	destroy(t);
}

/* The widest PLIC: sources past 32 and the last context survive. */
static void test_save_restore_largest(void **state)
{
	struct error err = { 0 };
	struct plic *p = plic_create("p", 0, PLIC_MAX_SOURCES, PLIC_MAX_CONTEXTS, NULL, NULL, &err);
	struct plic *q = plic_create("p", 0, PLIC_MAX_SOURCES, PLIC_MAX_CONTEXTS, NULL, NULL, &err);
	assert_non_null(p);
	assert_non_null(q);
	struct device *dp = plic_device(p), *dq = plic_device(q);
	unsigned last = PLIC_MAX_SOURCES - 1, ctx = PLIC_MAX_CONTEXTS - 1;
	dp->ops->write(dp, 4 * last, 6, 4);
	dp->ops->write(dp, 0x2000 + 0x80 * ctx + 4, 0x80000001u, 4);
	dp->ops->write(dp, 0x200000 + 0x1000 * ctx, 5, 4);
	plic_set_level(p, last, true);
	plic_set_level(p, 33, true);
	struct state_writer a, b;
	state_writer_init(&a);
	state_writer_init(&b);
	assert_int_equal(dp->ops->save(dp, &a, &err), 0);
	struct state_reader r = { .data = a.buf, .len = a.len, .what = "p" };
	if (dq->ops->restore(dq, &r, &err))
		fail_msg("restore: %s", err.msg);
	assert_int_equal(dq->ops->save(dq, &b, &err), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	assert_int_equal(dq->ops->read(dq, 0x1004, 4), 0x80000002u);
	assert_int_equal(dq->ops->read(dq, 0x200004 + 0x1000 * ctx, 4), last);
	state_writer_free(&a);
	state_writer_free(&b);
	dp->ops->destroy(dp);
	dq->ops->destroy(dq);
}

/* A target with state of its own (priority, enable, a high line, an
 * output up), which a refused restore must leave exactly as it was. */
static void expect_refused_into(unsigned num_sources, unsigned num_contexts, const void *data,
				size_t len, const char *needle)
{
	struct fixture *t = target(num_sources, num_contexts);
	t->repeats_ok = false;
	route(t, 2, 6, 0);
	line(t, 2, true);
	assert_true(t->level[0]);
	unsigned calls[NUM_CONTEXTS];
	memcpy(calls, t->calls, sizeof(calls));
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
	assert_memory_equal(calls, t->calls, sizeof(calls));
	assert_true(t->level[0]);
	assert_int_equal(rd(t, claim(0)), 2);
	state_writer_free(&before);
	state_writer_free(&after);
	destroy(t);
}

static void expect_refused(const void *data, size_t len, const char *needle)
{
	expect_refused_into(32, NUM_CONTEXTS, data, len, needle);
}

static void test_restore_refuses_other_shapes(void **state)
{
	struct fixture *f = *state;
	make_busy(f);
	struct state_writer a;
	save_dev(f, &a);
	expect_refused_into(40, NUM_CONTEXTS, a.buf, a.len,
			    "saved PLIC has 32 sources and 2 contexts, this one 40 and 2");
	expect_refused_into(31, NUM_CONTEXTS, a.buf, a.len, "this one 31 and 2");
	expect_refused_into(32, 1, a.buf, a.len, "this one 32 and 1");
	state_writer_free(&a);
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
	struct state_writer a, w, w2;
	save_dev(f, &a);
	uint8_t buf[8 * NUM_CONTEXTS];

	/* Sanity: rewriting a field with its own value changes nothing. */
	size_t n = field_value(&a, 4, buf, sizeof(buf));
	rewrite(&a, 4, buf, n, &w);
	assert_int_equal(w.len, a.len);
	assert_memory_equal(w.buf, a.buf, a.len);
	state_writer_free(&w);

	const uint8_t v2[8] = { 2, 0, 0, 0, 0, 0, 0, 0 };
	rewrite(&a, 0, v2, 4, &w);
	expect_refused(w.buf, w.len, "version 2");
	state_writer_free(&w);

	/* Wrong widths and lengths. */
	rewrite(&a, 0, v2, 2, &w);
	expect_refused(w.buf, w.len, "field 0 is 2 bytes wide");
	state_writer_free(&w);
	rewrite(&a, 1, v2, 8, &w);
	expect_refused(w.buf, w.len, "field 1 is 8 bytes wide");
	state_writer_free(&w);
	rewrite(&a, 4, v2, 4, &w);
	expect_refused(w.buf, w.len, "field 4 is 4 bytes wide");
	state_writer_free(&w);
	uint8_t prio[33];
	n = field_value(&a, 3, prio, sizeof(prio));
	assert_int_equal(n, 32);
	rewrite(&a, 3, prio, 31, &w);
	expect_refused(w.buf, w.len, "field 3 is 31 bytes long, expected 32");
	state_writer_free(&w);
	prio[32] = 0;
	rewrite(&a, 3, prio, 33, &w);
	expect_refused(w.buf, w.len, "field 3 is 33 bytes long, expected 32");
	state_writer_free(&w);
	n = field_value(&a, 7, buf, sizeof(buf));
	assert_int_equal(n, 16);
	rewrite(&a, 7, buf, 8, &w);
	expect_refused(w.buf, w.len, "field 7 is 8 bytes long, expected 16");
	state_writer_free(&w);
	rewrite(&a, 8, buf, 3, &w);
	expect_refused(w.buf, w.len, "field 8 is 3 bytes long, expected 2");
	state_writer_free(&w);

	/* Fields missing. */
	for (uint16_t id = 0; id <= 8; id++) {
		rewrite(&a, id, NULL, 0, &w);
		expect_refused(w.buf, w.len, "missing");
		state_writer_free(&w);
	}

	/* Priorities over 7, and one for the source that does not exist. */
	field_value(&a, 3, prio, sizeof(prio));
	prio[5] = 9;
	rewrite(&a, 3, prio, 32, &w);
	expect_refused(w.buf, w.len, "priority 9 of source 5");
	state_writer_free(&w);
	prio[5] = 5;
	prio[31] = 8;
	rewrite(&a, 3, prio, 32, &w);
	expect_refused(w.buf, w.len, "priority 8 of source 31");
	state_writer_free(&w);
	prio[31] = 4;
	prio[0] = 1;
	rewrite(&a, 3, prio, 32, &w);
	expect_refused(w.buf, w.len, "source 0");
	state_writer_free(&w);

	/* Thresholds over 7. */
	const uint8_t thr[2] = { 1, 8 };
	rewrite(&a, 8, thr, 2, &w);
	expect_refused(w.buf, w.len, "threshold 8 of context 1");
	state_writer_free(&w);

	/* Bitmaps naming sources that do not exist: 0, 32, 63. */
	static const uint64_t stray[] = { 1ull << 0, 1ull << 32, 1ull << 63 };
	static const struct {
		uint16_t id;
		const char *needle;
	} maps[] = { { 4, "pending bits" }, { 5, "in-service bits" }, { 6, "line level bits" } };
	for (unsigned m = 0; m < 3; m++) {
		n = field_value(&a, maps[m].id, buf, 8);
		uint64_t v = 0;
		for (unsigned i = 0; i < 8; i++)
			v |= (uint64_t)buf[i] << (8 * i);
		for (unsigned i = 0; i < 3; i++) {
			rewrite_u64(&a, maps[m].id, v | stray[i], &w);
			expect_refused(w.buf, w.len, maps[m].needle);
			state_writer_free(&w);
		}
	}
	for (unsigned i = 0; i < 3; i++) {
		n = field_value(&a, 7, buf, sizeof(buf));
		for (unsigned b = 0; b < 8; b++)
			buf[8 + b] |= (uint8_t)(stray[i] >> (8 * b));
		rewrite(&a, 7, buf, 16, &w);
		expect_refused(w.buf, w.len, "enable bits");
		expect_refused(w.buf, w.len, "of context 1");
		state_writer_free(&w);
	}

	/* States the gateways never reach: 5 pending and in service; 12's
	 * line high with no request in either place. */
	rewrite_u64(&a, 5, 1ull << 9 | 1ull << 31 | 1ull << 5, &w);
	expect_refused(w.buf, w.len, "0x20 are both pending and in service");
	state_writer_free(&w);
	rewrite_u64(&a, 4, 1ull << 5 | 1ull << 7, &w);
	expect_refused(w.buf, w.len, "lines 0x1000 are high but neither");
	state_writer_free(&w);
	/* ...while a pending source with its line low is normal (7). */
	rewrite_u64(&a, 6, 1ull << 9 | 1ull << 12, &w);
	struct fixture *t = target(32, NUM_CONTEXTS);
	struct error err = { 0 };
	if (restore_dev(t, w.buf, w.len, &err))
		fail_msg("restore with line 5 low: %s", err.msg);
	destroy(t);
	state_writer_free(&w);

	/* A field from a newer tern that must not be ignored. */
	rewrite(&a, 0xffff, NULL, 0, &w);
	state_put_u64_required(&w, 99, 1);
	expect_refused(w.buf, w.len, "field 99 is required but unknown");
	state_writer_free(&w);
	/* One that may be: accepted, and dropped again on the next save. */
	rewrite(&a, 0xffff, NULL, 0, &w);
	state_put_u64(&w, 99, 1);
	t = target(32, NUM_CONTEXTS);
	if (restore_dev(t, w.buf, w.len, &err))
		fail_msg("restore with an optional unknown field: %s", err.msg);
	save_dev(t, &w2);
	assert_int_equal(w2.len, a.len);
	assert_memory_equal(w2.buf, a.buf, a.len);
	destroy(t);
	state_writer_free(&w);
	state_writer_free(&w2);

	/* Bad framing inside the record. */
	rewrite(&a, 0xffff, NULL, 0, &w);
	state_put_u32(&w, 2, NUM_CONTEXTS);
	expect_refused(w.buf, w.len, "appears twice");
	state_writer_free(&w);
	state_writer_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test(test_bad_create),
		cmocka_unit_test_setup_teardown(test_priorities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enables_wide, setup_wide, teardown),
		cmocka_unit_test_setup_teardown(test_pending_bits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threshold_masks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_repends_high_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_repend_after_drop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_per_context, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wide_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_quiet, setup, teardown),
		cmocka_unit_test(test_save_restore_largest),
		cmocka_unit_test_setup_teardown(test_restore_refuses_other_shapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_bad_fields, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
