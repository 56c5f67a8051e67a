/* Edge cases of the slot-walking run loop: straddling instructions that
 * transfer control, pc derivation after them, near branches at page edges,
 * instret across page ends and checkpoints, FENCE.I revalidation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "rv_harness.h"

#define CODE RVT_CODE
#define CSR_MINSTRET 0xb02
#define CSR_MSCRATCH 0x340

/* A 32-bit instruction at page_end - 2 (straddling), jumping back into the
 * first page, where auipc must see the right pc. */
static void straddle_then_auipc(struct rvt *t, uint32_t jump, int kind)
{
	const uint64_t pe = CODE + 0x2000;     /* page end */
	const uint64_t back = pe - 0x800;      /* in the first page */
	rvt_set_x(t, A0, 0);
	rvt_set_x(t, A1, 0);
	rvt_set_x(t, RA, 0);
	rvt_set_x(t, T0, back);
	rvt_org(t, pe - 2);
	rvt_i(t, jump);
	rvt_i(t, ADDI(A1, ZERO, 7));         /* fall-through at pe + 2 */
	rvt_i(t, WFI());
	rvt_org(t, back);
	rvt_i(t, AUIPC(A0, 0));
	rvt_i(t, AUIPC(A2, 0));
	rvt_i(t, WFI());
	for (int round = 0; round < 3; round++) {
		if (kind == 0) {
			rvt_run_from(t, pe - 2, back + 12);
			assert_int_equal(rvt_x(t, A0), back);
			assert_int_equal(rvt_x(t, A2), back + 4);
		} else {
			rvt_run_from(t, pe - 2, pe + 10);
			assert_int_equal(rvt_x(t, A1), 7);
		}
	}
}

static void test_straddle_jal(void **state)
{
	struct rvt *t = *state;
	straddle_then_auipc(t, JAL(RA, -0x7fe), 0);
	assert_int_equal(rvt_x(t, RA), CODE + 0x2002);
}

static void test_straddle_jalr(void **state)
{
	struct rvt *t = *state;
	straddle_then_auipc(t, JALR(RA, T0, 0), 0);
	assert_int_equal(rvt_x(t, RA), CODE + 0x2002);
}

static void test_straddle_branch(void **state)
{
	struct rvt *t = *state;
	straddle_then_auipc(t, BEQ(ZERO, ZERO, -0x7fe), 0);
	straddle_then_auipc(t, BNE(ZERO, ZERO, -0x7fe), 1);
	/* forward, into the second page */
	const uint64_t pe = CODE + 0x2000;
	rvt_org(t, pe - 2);
	rvt_i(t, BEQ(ZERO, ZERO, 0x102));
	rvt_org(t, pe + 0x100);
	rvt_i(t, AUIPC(A0, 0));
	rvt_i(t, WFI());
	rvt_run_from(t, pe - 2, pe + 0x108);
	assert_int_equal(rvt_x(t, A0), pe + 0x100);
}

static void test_straddle_auipc(void **state)
{
	struct rvt *t = *state;
	const uint64_t pe = CODE + 0x2000;
	rvt_org(t, pe - 2);
	rvt_i(t, AUIPC(A0, 1));
	rvt_i(t, AUIPC(A1, 0));
	rvt_i(t, WFI());
	for (int round = 0; round < 2; round++) {
		rvt_run_from(t, pe - 2, pe + 10);
		assert_int_equal(rvt_x(t, A0), pe - 2 + 0x1000);
		assert_int_equal(rvt_x(t, A1), pe + 2);
	}
}

static void test_straddle_trap_epc(void **state)
{
	struct rvt *t = *state;
	const uint64_t pe = CODE + 0x2000;
	rvt_set_x(t, A1, 0x12345);      /* not RAM: access fault */
	rvt_org(t, pe - 2);
	rvt_i(t, LD(A0, 0, A1));
	rvt_i(t, WFI());
	rvt_run_trap_m(t, pe - 2, 5, pe - 2, 0x12345);
	rvt_run_trap_m(t, pe - 2, 5, pe - 2, 0x12345);
}

/* Near branches to the first and last halfword of a page, then auipc. */
static void test_near_edges(void **state)
{
	struct rvt *t = *state;
	const uint64_t pg = CODE + 0x3000;
	rvt_org(t, pg + 0x800);
	rvt_i(t, BEQ(ZERO, ZERO, -0x800));           /* to pg + 0 */
	rvt_org(t, pg);
	rvt_i(t, AUIPC(A0, 0));
	rvt_i(t, JAL(ZERO, 0xffe - 4));                 /* to pg + 0xffe */
	rvt_org(t, pg + 0xffe);
	rvt_c(t, C_LI(A1, 3));                          /* then off the end */
	rvt_i(t, AUIPC(A2, 0));                         /* pg + 0x1000 */
	rvt_i(t, WFI());
	for (int round = 0; round < 2; round++) {
		rvt_run_from(t, pg + 0x800, pg + 0x1008);
		assert_int_equal(rvt_x(t, A0), pg);
		assert_int_equal(rvt_x(t, A1), 3);
		assert_int_equal(rvt_x(t, A2), pg + 0x1000);
	}
}

/* instret stays exact with straddling instructions, page ends, jumps and
 * CSR writes in a loop long enough to put checkpoints at every phase. */
static void test_instret_exact(void **state)
{
	struct rvt *t = *state;
	const uint64_t pe = CODE + 0x2000;
	const unsigned n = 5001;
	rvt_set_x(t, A0, n);
	rvt_set_x(t, A1, 0);
	rvt_org(t, pe - 6);                       /* loop: */
	rvt_c(t, C_ADDI(A1, 1));                  /* pe - 6 */
	rvt_i(t, CSRW(CSR_MSCRATCH, A1));         /* pe - 4 */
	rvt_i(t, ADDI(A0, A0, -1));               /* pe - 0: straddle? no: at pe */
	rvt_i(t, BNE(A0, ZERO, -10));             /* pe + 4 */
	rvt_i(t, CSRR(A2, CSR_MINSTRET));         /* pe + 8 */
	rvt_i(t, WFI());
	RVT_SET(t, minstret, 0);
	rvt_run_from(t, pe - 6, pe + 16);
	assert_int_equal(rvt_x(t, A1), n);
	assert_int_equal(rvt_x(t, A2), 4ull * n);
	assert_int_equal(RVT_GET(t, minstret), 4ull * n + 2);

	/* the same with the addi straddling the page end */
	rvt_set_x(t, A0, n);
	rvt_set_x(t, A1, 0);
	rvt_org(t, pe - 8);
	rvt_c(t, C_ADDI(A1, 1));                  /* pe - 8 */
	rvt_i(t, CSRR(A3, CSR_MSCRATCH));         /* pe - 6 */
	rvt_i(t, ADDI(A0, A0, -1));               /* pe - 2: straddles */
	rvt_i(t, BNE(A0, ZERO, -10));             /* pe + 2 */
	rvt_i(t, CSRR(A2, CSR_MINSTRET));
	rvt_i(t, WFI());
	RVT_SET(t, minstret, 0);
	rvt_run_from(t, pe - 8, pe + 14);
	assert_int_equal(rvt_x(t, A1), n);
	assert_int_equal(rvt_x(t, A2), 4ull * n);
}

/* FENCE.I: a changed page is decoded again, an unchanged one is kept. */
static void test_fence_i_revalidate(void **state)
{
	struct rvt *t = *state;
	const uint64_t pg = CODE + 0x4000;
	/* code: store a2 (a new instruction) at patch, fence.i, jump there */
	rvt_org(t, pg);
	rvt_i(t, JAL(RA, 0x100));                       /* pg: call patch */
	rvt_i(t, SW(A2, 0, A3));                        /* pg+4: patch it */
	rvt_i(t, FENCE_I());
	rvt_i(t, JAL(RA, 0x100 - 12));                  /* pg+12: call patch again */
	rvt_i(t, WFI());
	rvt_org(t, pg + 0x100);
	rvt_i(t, ADDI(A0, ZERO, 1));                    /* patch */
	rvt_i(t, JALR(ZERO, RA, 0));
	rvt_set_x(t, A3, pg + 0x100);
	rvt_set_x(t, A2, ADDI(A0, ZERO, 2));
	rvt_run_from(t, pg, pg + 20);
	assert_int_equal(rvt_x(t, A0), 2);
	/* the same store of an identical instruction: still right */
	rvt_set_x(t, A2, ADDI(A0, ZERO, 2));
	rvt_run_from(t, pg, pg + 20);
	assert_int_equal(rvt_x(t, A0), 2);
	/* and back */
	rvt_set_x(t, A2, ADDI(A0, ZERO, 5));
	rvt_run_from(t, pg, pg + 20);
	assert_int_equal(rvt_x(t, A0), 5);
}

/* A straddling instruction whose illegal-instruction trap reports its pc. */
static void test_straddle_illegal(void **state)
{
	struct rvt *t = *state;
	const uint64_t pe = CODE + 0x2000;
	rvt_org(t, pe - 2);
	rvt_i(t, 0x0000000b);           /* custom-0 */
	rvt_run_trap_m(t, pe - 2, 2, pe - 2, 0xb);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, rvt_setup, rvt_teardown)
int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_straddle_jal), T(test_straddle_jalr), T(test_straddle_branch),
		T(test_straddle_auipc), T(test_straddle_trap_epc), T(test_near_edges),
		T(test_instret_exact), T(test_fence_i_revalidate), T(test_straddle_illegal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
