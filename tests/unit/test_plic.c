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

#define NUM_CONTEXTS 2

struct fixture {
	struct plic *plic;
	struct device *dev;
	bool level[NUM_CONTEXTS];
	unsigned calls[NUM_CONTEXTS];
};

static void notify(void *opaque, unsigned ctx, bool level)
{
	struct fixture *f = opaque;
	assert_true(ctx < NUM_CONTEXTS);
	/* Only changes are reported. */
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
