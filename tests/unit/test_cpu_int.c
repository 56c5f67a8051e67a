/* test_cpu_int.c: the interpreter's unprivileged integer ISA: RV64I, M, A,
 * C and Zicsr, run as small M-mode programs on the rv_harness machine.
 *
 * Expected values come from the unprivileged ISA manual (20191213), not from
 * running the interpreter: chapter 2 and 5 (RV32I/RV64I), 7 (M), 8 (A),
 * 9 (Zicsr), 16 (C). Where the ISA leaves a choice to the implementation,
 * the comment says what tern chose and the assertion accepts only that. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "rv_harness.h"

#define CODE RVT_CODE
#define DATA RVT_DATA

/* Runs `insn; wfi` with a1 = a, a2 = b and returns a0. */
static uint64_t op2(struct rvt *t, uint32_t insn, uint64_t a, uint64_t b)
{
	rvt_set_x(t, A0, 0x5a5a5a5a5a5a5a5aull);
	rvt_set_x(t, A1, a);
	rvt_set_x(t, A2, b);
	RVT_ASM(t, CODE, insn, WFI());
	rvt_go(t);
	return rvt_x(t, A0);
}

static uint64_t op1(struct rvt *t, uint32_t insn, uint64_t a)
{
	return op2(t, insn, a, 0);
}

/* ---- RV64I arithmetic ---------------------------------------------------- */

static void test_add_sub(void **state)
{
	struct rvt *t = *state;
	assert_int_equal(op2(t, ADD(A0, A1, A2), 1, 2), 3);
	assert_int_equal(op2(t, ADD(A0, A1, A2), ~0ull, 1), 0);
	assert_int_equal(op2(t, ADD(A0, A1, A2), 0x7fffffffffffffffull, 1), 0x8000000000000000ull);
	assert_int_equal(op2(t, SUB(A0, A1, A2), 0, 1), ~0ull);
	assert_int_equal(op2(t, SUB(A0, A1, A2), 0x8000000000000000ull, 1), 0x7fffffffffffffffull);
	assert_int_equal(op2(t, SUB(A0, A1, A2), 5, 5), 0);
	assert_int_equal(op1(t, ADDI(A0, A1, -5), 5), 0);
	assert_int_equal(op1(t, ADDI(A0, A1, -2048), 0), 0xfffffffffffff800ull);
	assert_int_equal(op1(t, ADDI(A0, A1, 2047), 0), 0x7ff);
	assert_int_equal(op1(t, ADDI(A0, A1, 1), ~0ull), 0);
}

static void test_logic(void **state)
{
	struct rvt *t = *state;
	const uint64_t a = 0xff00ff00ff00ff00ull, b = 0x0ff00ff00ff00ff0ull;
	assert_int_equal(op2(t, XOR(A0, A1, A2), a, b), 0xf0f0f0f0f0f0f0f0ull);
	assert_int_equal(op2(t, OR(A0, A1, A2), a, b), 0xfff0fff0fff0fff0ull);
	assert_int_equal(op2(t, AND(A0, A1, A2), a, b), 0x0f000f000f000f00ull);
	/* I-type immediates are sign-extended to 64 bits first. */
	assert_int_equal(op1(t, XORI(A0, A1, -1), 0x123456789abcdef0ull), 0xedcba9876543210full);
	assert_int_equal(op1(t, ORI(A0, A1, -2048), 5), 0xfffffffffffff805ull);
	assert_int_equal(op1(t, ANDI(A0, A1, -256), 0x123456789abcdef0ull), 0x123456789abcde00ull);
	assert_int_equal(op1(t, ANDI(A0, A1, 0x7ff), 0x123456789abcdef0ull), 0x6f0);
	assert_int_equal(op1(t, XORI(A0, A1, 0x555), 0xfff), 0xaaa);
}

static void test_slt(void **state)
{
	struct rvt *t = *state;
	const uint64_t m1 = ~0ull;
	assert_int_equal(op2(t, SLT(A0, A1, A2), m1, 1), 1);
	assert_int_equal(op2(t, SLT(A0, A1, A2), 1, m1), 0);
	assert_int_equal(op2(t, SLT(A0, A1, A2), 0x8000000000000000ull, 0x7fffffffffffffffull), 1);
	assert_int_equal(op2(t, SLT(A0, A1, A2), 7, 7), 0);
	assert_int_equal(op2(t, SLTU(A0, A1, A2), m1, 1), 0);
	assert_int_equal(op2(t, SLTU(A0, A1, A2), 1, m1), 1);
	assert_int_equal(op2(t, SLTU(A0, A1, A2), 0, 0), 0);
	/* snez: sltu rd, x0, rs */
	assert_int_equal(op2(t, SLTU(A0, ZERO, A2), 0, 9), 1);
	assert_int_equal(op1(t, SLTI(A0, A1, -4), (uint64_t)-5), 1);
	assert_int_equal(op1(t, SLTI(A0, A1, -5), (uint64_t)-4), 0);
	assert_int_equal(op1(t, SLTI(A0, A1, -1), 0), 0);
	assert_int_equal(op1(t, SLTI(A0, A1, 0), 0x8000000000000000ull), 1);
	/* sltiu compares against the sign-extended immediate, unsigned */
	assert_int_equal(op1(t, SLTIU(A0, A1, 1), 0), 1);          /* seqz */
	assert_int_equal(op1(t, SLTIU(A0, A1, 1), 5), 0);
	assert_int_equal(op1(t, SLTIU(A0, A1, -1), 0xfffffffffffffffeull), 1);
	assert_int_equal(op1(t, SLTIU(A0, A1, -1), m1), 0);
	assert_int_equal(op1(t, SLTIU(A0, A1, 2047), 0x800), 0);
}

static void test_shifts(void **state)
{
	struct rvt *t = *state;
	const uint64_t top = 0x8000000000000000ull;
	assert_int_equal(op2(t, SLL(A0, A1, A2), 1, 63), top);
	assert_int_equal(op2(t, SLL(A0, A1, A2), 1, 64), 1);       /* only rs2[5:0] counts */
	assert_int_equal(op2(t, SLL(A0, A1, A2), 1, 65), 2);
	assert_int_equal(op2(t, SLL(A0, A1, A2), 1, 0xffffffffffffffc1ull), 2);
	assert_int_equal(op2(t, SRL(A0, A1, A2), top, 63), 1);
	assert_int_equal(op2(t, SRL(A0, A1, A2), top, 64), top);
	assert_int_equal(op2(t, SRL(A0, A1, A2), top, 65), 0x4000000000000000ull);
	assert_int_equal(op2(t, SRA(A0, A1, A2), top, 63), ~0ull);
	assert_int_equal(op2(t, SRA(A0, A1, A2), top, 1), 0xc000000000000000ull);
	assert_int_equal(op2(t, SRA(A0, A1, A2), top, 128), top);
	assert_int_equal(op2(t, SRA(A0, A1, A2), 0x4000000000000000ull, 62), 1);
	assert_int_equal(op1(t, SLLI(A0, A1, 63), 1), top);
	assert_int_equal(op1(t, SLLI(A0, A1, 0), 0x1234), 0x1234);
	assert_int_equal(op1(t, SRLI(A0, A1, 63), top), 1);
	assert_int_equal(op1(t, SRLI(A0, A1, 32), 0xffffffff00000000ull), 0xffffffff);
	assert_int_equal(op1(t, SRAI(A0, A1, 63), top), ~0ull);
	assert_int_equal(op1(t, SRAI(A0, A1, 4), 0xf000000000000000ull), 0xff00000000000000ull);
	assert_int_equal(op1(t, SRAI(A0, A1, 4), 0x7000000000000000ull), 0x0700000000000000ull);
}

static void test_word_ops(void **state)
{
	struct rvt *t = *state;
	/* 32-bit results are sign-extended to 64 bits; upper source bits are ignored. */
	assert_int_equal(op2(t, ADDW(A0, A1, A2), 0x7fffffff, 1), 0xffffffff80000000ull);
	assert_int_equal(op2(t, ADDW(A0, A1, A2), 0xffffffff, 1), 0);
	assert_int_equal(op2(t, ADDW(A0, A1, A2), 0x1234567800000001ull, 2), 3);
	assert_int_equal(op2(t, SUBW(A0, A1, A2), 0, 1), ~0ull);
	assert_int_equal(op2(t, SUBW(A0, A1, A2), 0x80000000, 1), 0x7fffffff);
	assert_int_equal(op2(t, SUBW(A0, A1, A2), 0xffffffff80000000ull, 1), 0x7fffffff);
	assert_int_equal(op1(t, ADDIW(A0, A1, 1), 0x7fffffff), 0xffffffff80000000ull);
	assert_int_equal(op1(t, ADDIW(A0, A1, 0), 0x80000000), 0xffffffff80000000ull);   /* sext.w */
	assert_int_equal(op1(t, ADDIW(A0, A1, 0), 0xffffffff7fffffffull), 0x7fffffff);
	assert_int_equal(op1(t, ADDIW(A0, A1, -1), 0), ~0ull);
	assert_int_equal(op2(t, SLLW(A0, A1, A2), 1, 31), 0xffffffff80000000ull);
	assert_int_equal(op2(t, SLLW(A0, A1, A2), 1, 32), 1);      /* only rs2[4:0] counts */
	assert_int_equal(op2(t, SLLW(A0, A1, A2), 1, 33), 2);
	assert_int_equal(op2(t, SLLW(A0, A1, A2), 0xffffffff00000001ull, 1), 2);
	assert_int_equal(op2(t, SRLW(A0, A1, A2), 0x80000000, 31), 1);
	assert_int_equal(op2(t, SRLW(A0, A1, A2), 0x80000000, 0), 0xffffffff80000000ull);
	assert_int_equal(op2(t, SRLW(A0, A1, A2), 0xffffffff80000000ull, 32), 0xffffffff80000000ull);
	assert_int_equal(op2(t, SRLW(A0, A1, A2), 0x100000000ull, 1), 0);
	assert_int_equal(op2(t, SRLW(A0, A1, A2), 0xffffffff, 4), 0x0fffffff);
	assert_int_equal(op2(t, SRAW(A0, A1, A2), 0x80000000, 31), ~0ull);
	assert_int_equal(op2(t, SRAW(A0, A1, A2), 0x7fffffff, 30), 1);
	assert_int_equal(op2(t, SRAW(A0, A1, A2), 0x80000000, 4), 0xfffffffff8000000ull);
	assert_int_equal(op2(t, SRAW(A0, A1, A2), 0x80000000, 36), 0xfffffffff8000000ull);
	assert_int_equal(op1(t, SLLIW(A0, A1, 31), 1), 0xffffffff80000000ull);
	assert_int_equal(op1(t, SLLIW(A0, A1, 4), 0x0fffffff0ull), 0xffffffffffffff00ull);
	assert_int_equal(op1(t, SRLIW(A0, A1, 0), 0x80000000), 0xffffffff80000000ull);
	assert_int_equal(op1(t, SRLIW(A0, A1, 1), 0x80000000), 0x40000000);
	assert_int_equal(op1(t, SRLIW(A0, A1, 31), 0xffffffffffffffffull), 1);
	assert_int_equal(op1(t, SRAIW(A0, A1, 31), 0x80000000), ~0ull);
	assert_int_equal(op1(t, SRAIW(A0, A1, 1), 0x180000000ull), 0xffffffffc0000000ull);
	assert_int_equal(op1(t, SRAIW(A0, A1, 1), 0xffffffff7ffffffeull), 0x3fffffff);
}

static void test_lui_auipc(void **state)
{
	struct rvt *t = *state;
	assert_int_equal(op1(t, LUI(A0, 0x80000), 0), 0xffffffff80000000ull);
	assert_int_equal(op1(t, LUI(A0, 0x7ffff), 0), 0x7ffff000);
	assert_int_equal(op1(t, LUI(A0, 0xfffff), 0), 0xfffffffffffff000ull);
	assert_int_equal(op1(t, LUI(A0, 0), 0), 0);
	RVT_ASM(t, CODE, AUIPC(A0, 0), AUIPC(A1, 0xfffff), AUIPC(A2, 0x80000), AUIPC(A3, 1),
		AUIPC(A4, 0x7ffff), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), CODE);
	assert_int_equal(rvt_x(t, A1), CODE + 4 - 0x1000);
	/* 0x80001008 + sext(0x80000000) wraps to 0x1008 */
	assert_int_equal(rvt_x(t, A2), 0x1008);
	assert_int_equal(rvt_x(t, A3), CODE + 12 + 0x1000);
	assert_int_equal(rvt_x(t, A4), CODE + 16 + 0x7ffff000ull);
}

/* ---- control transfer ------------------------------------------------------ */

typedef uint32_t (*branch_fn)(unsigned, unsigned, int32_t);

struct branch_case {
	const char *name;
	branch_fn fn;
	uint64_t a, b;
	bool taken;
};

/* Forward: `b a1, a2, +12; li a0, 1; wfi; li a0, 2; wfi`.
 * Backward: `j +12; li a0, 2; wfi; b a1, a2, -8; li a0, 1; wfi`. */
static void check_branch(struct rvt *t, const struct branch_case *c, bool backward)
{
	rvt_set_x(t, A0, 0);
	rvt_set_x(t, A1, c->a);
	rvt_set_x(t, A2, c->b);
	uint64_t stop;
	if (!backward) {
		RVT_ASM(t, CODE, c->fn(A1, A2, 12), ADDI(A0, ZERO, 1), WFI(), ADDI(A0, ZERO, 2), WFI());
		stop = c->taken ? CODE + 20 : CODE + 12;
	} else {
		RVT_ASM(t, CODE, J(12), ADDI(A0, ZERO, 2), WFI(), c->fn(A1, A2, -8), ADDI(A0, ZERO, 1),
			WFI());
		stop = c->taken ? CODE + 12 : CODE + 24;
	}
	rvt_run_from(t, CODE, stop);
	if (rvt_x(t, A0) != (c->taken ? 2u : 1u))
		fprintf(stderr, "branch %s (%s) went the wrong way\n", c->name,
			backward ? "backward" : "forward");
	assert_int_equal(rvt_x(t, A0), c->taken ? 2 : 1);
}

static void test_branches(void **state)
{
	struct rvt *t = *state;
	const uint64_t m1 = ~0ull;
	const struct branch_case cases[] = {
		{ "beq", BEQ, 5, 5, true },      { "beq", BEQ, 5, 6, false },
		{ "beq", BEQ, m1, 0xffffffff, false },
		{ "bne", BNE, 5, 6, true },      { "bne", BNE, 5, 5, false },
		{ "blt", BLT, m1, 1, true },     { "blt", BLT, 1, m1, false },
		{ "blt", BLT, 1, 1, false },
		{ "blt", BLT, 0x8000000000000000ull, 0x7fffffffffffffffull, true },
		{ "bge", BGE, 1, m1, true },     { "bge", BGE, m1, 1, false },
		{ "bge", BGE, 1, 1, true },
		{ "bltu", BLTU, 1, m1, true },   { "bltu", BLTU, m1, 1, false },
		{ "bltu", BLTU, 3, 3, false },
		{ "bgeu", BGEU, m1, 1, true },   { "bgeu", BGEU, 1, m1, false },
		{ "bgeu", BGEU, 3, 3, true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		check_branch(t, &cases[i], false);
		check_branch(t, &cases[i], true);
	}
}

static void test_jal_jalr(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A0, 0);
	RVT_ASM(t, CODE,
		JAL(RA, 12),              /* 0: -> 12, ra = 4 */
		ADDI(A0, ZERO, 1),        /* 4: skipped */
		WFI(),                    /* 8 */
		ADDI(A1, ZERO, 2),        /* 12 */
		JALR(T0, RA, 4));         /* 16: -> ra + 4 = 8, t0 = 20 */
	rvt_run_from(t, CODE, CODE + 12);
	assert_int_equal(rvt_x(t, RA), CODE + 4);
	assert_int_equal(rvt_x(t, A0), 0);
	assert_int_equal(rvt_x(t, A1), 2);
	assert_int_equal(rvt_x(t, T0), CODE + 20);

	/* Backward jal: 0: j 12; 4: wfi; 8: nop; 12: jal ra, -8 -> 4 */
	RVT_ASM(t, CODE, J(12), WFI(), NOP(), JAL(RA, -8), WFI());
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, RA), CODE + 16);

	/* jalr with a negative offset */
	rvt_set_x(t, A1, CODE + 16);
	RVT_ASM(t, CODE, JALR(RA, A1, -8), NOP(), WFI(), WFI(), WFI());
	rvt_run_from(t, CODE, CODE + 12);
	assert_int_equal(rvt_x(t, RA), CODE + 4);
}

static void test_jalr_clears_bit0(void **state)
{
	struct rvt *t = *state;
	/* target = (rs1 + imm) & ~1 */
	rvt_set_x(t, A1, CODE + 12 + 1);
	RVT_ASM(t, CODE, JALR(RA, A1, 0), WFI(), WFI(), WFI(), WFI());
	rvt_run_from(t, CODE, CODE + 16);
	rvt_set_x(t, A1, CODE + 8);
	RVT_ASM(t, CODE, JALR(RA, A1, 1), WFI(), WFI(), WFI());
	rvt_run_from(t, CODE, CODE + 12);
	assert_int_equal(rvt_x(t, RA), CODE + 4);

	/* rd == rs1: the target uses the old value. */
	rvt_set_x(t, A1, CODE + 8);
	RVT_ASM(t, CODE, JALR(A1, A1, 0), WFI(), WFI());
	rvt_run_from(t, CODE, CODE + 12);
	assert_int_equal(rvt_x(t, A1), CODE + 4);
}

static void test_x0_is_zero(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, DATA);
	rvt_w64(t, DATA, 0x1122334455667788ull);
	RVT_ASM(t, CODE,
		ADDI(ZERO, ZERO, 5), LUI(ZERO, 0x12345), AUIPC(ZERO, 1), JAL(ZERO, 4),
		LD(ZERO, 0, A1), MUL(ZERO, A1, A1), CSRRS(ZERO, CSR_MHARTID, ZERO),
		AMO_D(AMO_ADD, ZERO, A1, A1), LR_D(ZERO, A1), SC_D(ZERO, A1, A1),
		ADD(A0, ZERO, ZERO), ADDI(A2, ZERO, 7), OR(A3, ZERO, A2), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, ZERO), 0);
	assert_int_equal(RVT_GET(t, x[0]), 0);
	assert_int_equal(rvt_x(t, A0), 0);
	assert_int_equal(rvt_x(t, A2), 7);
	assert_int_equal(rvt_x(t, A3), 7);
	/* The SC (after the AMO and the LR) still stored a1. */
	assert_int_equal(rvt_r64(t, DATA), DATA);

	/* cpu_set_reg and set_state cannot make x0 nonzero either. */
	rvt_set_x(t, ZERO, 99);
	RVT_SET(t, x[0], 99);
	RVT_ASM(t, CODE, ADD(A0, ZERO, ZERO), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0);
	assert_int_equal(rvt_x(t, ZERO), 0);
}

/* ---- loads and stores ---------------------------------------------------------- */

static void test_loads(void **state)
{
	struct rvt *t = *state;
	rvt_w64(t, DATA, 0xf0e0d0c0b0a09080ull);
	rvt_w64(t, DATA + 8, 0x0102030405060708ull);
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, DATA + 16);
	RVT_ASM(t, CODE,
		LB(S2, 0, A1), LBU(S3, 0, A1), LH(S4, 0, A1), LHU(S5, 0, A1),
		LW(S6, 0, A1), LWU(S7, 0, A1), LD(S8, 0, A1),
		LB(S9, 8, A1), LH(S10, 8, A1), LW(S11, 8, A1), LD(T3, -8, A2), LBU(T4, -9, A2),
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0xffffffffffffff80ull);
	assert_int_equal(rvt_x(t, S3), 0x80);
	assert_int_equal(rvt_x(t, S4), 0xffffffffffff9080ull);
	assert_int_equal(rvt_x(t, S5), 0x9080);
	assert_int_equal(rvt_x(t, S6), 0xffffffffb0a09080ull);
	assert_int_equal(rvt_x(t, S7), 0xb0a09080);
	assert_int_equal(rvt_x(t, S8), 0xf0e0d0c0b0a09080ull);
	assert_int_equal(rvt_x(t, S9), 0x08);
	assert_int_equal(rvt_x(t, S10), 0x0708);
	assert_int_equal(rvt_x(t, S11), 0x05060708);
	assert_int_equal(rvt_x(t, T3), 0x0102030405060708ull);
	assert_int_equal(rvt_x(t, T4), 0xf0);
}

static void test_stores(void **state)
{
	struct rvt *t = *state;
	for (unsigned i = 0; i < 4; i++)
		rvt_w64(t, DATA + 8 * i, ~0ull);
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, 0x1122334455667788ull);
	rvt_set_x(t, A3, DATA + 40);
	RVT_ASM(t, CODE, SB(A2, 0, A1), SH(A2, 8, A1), SW(A2, 16, A1), SD(A2, 24, A1),
		SD(A2, -8, A3), WFI());
	rvt_go(t);
	assert_int_equal(rvt_r64(t, DATA), 0xffffffffffffff88ull);
	assert_int_equal(rvt_r64(t, DATA + 8), 0xffffffffffff7788ull);
	assert_int_equal(rvt_r64(t, DATA + 16), 0xffffffff55667788ull);
	assert_int_equal(rvt_r64(t, DATA + 24), 0x1122334455667788ull);
	assert_int_equal(rvt_r64(t, DATA + 32), 0x1122334455667788ull);
}

static void test_misaligned_within_page(void **state)
{
	struct rvt *t = *state;
	memset(rvt_host(t, DATA, 64), 0, 64);
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, 0xdeadbeef);
	rvt_set_x(t, A3, 0x0807060504030201ull);
	RVT_ASM(t, CODE,
		SW(A2, 1, A1), SD(A3, 13, A1), SH(A2, 31, A1),
		LW(S2, 1, A1), LWU(S3, 1, A1), LD(S4, 13, A1), LH(S5, 31, A1), LHU(S6, 31, A1),
		LD(S7, 3, A1), WFI());
	rvt_go(t);
	/* little-endian bytes */
	const uint8_t *m = rvt_host(t, DATA, 64);
	assert_int_equal(m[0], 0);
	assert_int_equal(m[1], 0xef);
	assert_int_equal(m[2], 0xbe);
	assert_int_equal(m[3], 0xad);
	assert_int_equal(m[4], 0xde);
	assert_int_equal(m[5], 0);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(m[13 + i], i + 1);
	assert_int_equal(m[31], 0xef);
	assert_int_equal(m[32], 0xbe);
	assert_int_equal(rvt_x(t, S2), 0xffffffffdeadbeefull);
	assert_int_equal(rvt_x(t, S3), 0xdeadbeef);
	assert_int_equal(rvt_x(t, S4), 0x0807060504030201ull);
	assert_int_equal(rvt_x(t, S5), 0xffffffffffffbeefull);
	assert_int_equal(rvt_x(t, S6), 0xbeef);
	assert_int_equal(rvt_x(t, S7), 0xdead);   /* ad de 00 00 00 00 00 00 */
}

static void test_misaligned_across_page(void **state)
{
	struct rvt *t = *state;
	const uint64_t end = DATA + 0x1000;     /* a page boundary */
	memset(rvt_host(t, end - 16, 32), 0xee, 32);
	rvt_set_x(t, A1, end);
	rvt_set_x(t, A3, 0x0807060504030201ull);
	rvt_set_x(t, A2, 0xa1b2c3d4);
	RVT_ASM(t, CODE,
		SD(A3, -3, A1),                                   /* end-3 .. end+4 = 01..08 */
		LD(S2, -3, A1), LW(S3, -2, A1), LH(S4, -1, A1), LHU(S5, -1, A1),
		SW(A2, -1, A1),                                   /* end-1 .. end+2 = d4 c3 b2 a1 */
		LW(S6, -1, A1), LWU(S7, -1, A1), LD(S8, -5, A1),
		SH(A2, -3, A1), LH(S9, -3, A1),                   /* within the page */
		SH(A2, -1, A1), LH(S10, -1, A1),                  /* across again */
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0x0807060504030201ull);
	assert_int_equal(rvt_x(t, S3), 0x05040302);
	assert_int_equal(rvt_x(t, S4), 0x0403);
	assert_int_equal(rvt_x(t, S5), 0x0403);
	assert_int_equal(rvt_x(t, S6), 0xffffffffa1b2c3d4ull);
	assert_int_equal(rvt_x(t, S7), 0xa1b2c3d4);
	/* end-5 .. end+2: ee ee 01 02 d4 c3 b2 a1 */
	assert_int_equal(rvt_x(t, S8), 0xa1b2c3d40201eeeeull);
	assert_int_equal(rvt_x(t, S9), 0xffffffffffffc3d4ull);
	assert_int_equal(rvt_x(t, S10), 0xffffffffffffc3d4ull);
	const uint8_t *m = rvt_host(t, end - 16, 32);   /* m[16] is the first byte of the next page */
	const uint8_t want[] = { 0xee, 0xee, 0xd4, 0xc3, 0xd4, 0xc3, 0xb2, 0xa1, 0x07, 0x08, 0xee };
	for (unsigned i = 0; i < sizeof(want); i++)
		assert_int_equal(m[11 + i], want[i]);
}

/* ---- MMIO ------------------------------------------------------------------------ */

static void test_mmio(void **state)
{
	struct rvt *t = *state;
	for (unsigned i = 0; i < 16; i++)
		t->mmio[i] = (uint8_t)(0x80 + i);
	rvt_set_x(t, A1, RVT_MMIO_BASE);
	rvt_set_x(t, A2, 0x1122334455667788ull);
	RVT_ASM(t, CODE, LW(S2, 4, A1), LB(S3, 0, A1), LHU(S4, 2, A1), LD(S5, 8, A1),
		SD(A2, 16, A1), SH(A2, 32, A1), SB(A2, 33, A1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0xffffffff87868584ull);
	assert_int_equal(rvt_x(t, S3), 0xffffffffffffff80ull);
	assert_int_equal(rvt_x(t, S4), 0x8382);
	assert_int_equal(rvt_x(t, S5), 0x8f8e8d8c8b8a8988ull);
	assert_int_equal(t->mmio_count, 7);
	assert_false(t->mmio_log[0].write);
	assert_int_equal(t->mmio_log[0].addr, RVT_MMIO_BASE + 4);
	assert_int_equal(t->mmio_log[0].size, 4);
	assert_int_equal(t->mmio_log[3].size, 8);
	assert_true(t->mmio_log[4].write);
	assert_int_equal(t->mmio_log[4].addr, RVT_MMIO_BASE + 16);
	assert_int_equal(t->mmio_log[4].size, 8);
	assert_int_equal(t->mmio_log[4].value, 0x1122334455667788ull);
	assert_int_equal(t->mmio_log[5].size, 2);
	assert_int_equal(t->mmio_log[5].value & 0xffff, 0x7788);
	assert_int_equal(t->mmio_log[6].size, 1);
	assert_int_equal(t->mmio_log[6].value & 0xff, 0x88);
	assert_int_equal(t->mmio[32], 0x88);
	assert_int_equal(t->mmio[33], 0x88);
	assert_int_equal(t->mmio[16], 0x88);
	assert_int_equal(t->mmio[23], 0x11);

	/* Repeating the load reads the device again: MMIO never enters the TLB. */
	t->mmio[4] = 0x01;
	RVT_ASM(t, CODE, LW(S2, 4, A1), LW(S3, 4, A1), WFI());
	t->mmio_count = 0;
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0xffffffff87868501ull);
	assert_int_equal(t->mmio_count, 2);
}

static void test_access_fault(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, RVT_NO_DEVICE);
	RVT_ASM(t, CODE, LW(A0, 8, A1), WFI());
	rvt_go_trap_m(t, 5, CODE, RVT_NO_DEVICE + 8);
	RVT_ASM(t, CODE, NOP(), SD(A0, 16, A1), WFI());
	rvt_go_trap_m(t, 7, CODE + 4, RVT_NO_DEVICE + 16);
	/* Past the end of RAM */
	rvt_set_x(t, A1, RVT_RAM_BASE + RVT_RAM_SIZE);
	RVT_ASM(t, CODE, LBU(A0, 0, A1), WFI());
	rvt_go_trap_m(t, 5, CODE, RVT_RAM_BASE + RVT_RAM_SIZE);
	/* A misaligned MMIO access may raise a misaligned or an access fault,
	 * but must not reach the device. */
	rvt_set_x(t, A1, RVT_MMIO_BASE);
	t->mmio_count = 0;
	RVT_ASM(t, CODE, LW(A0, 1, A1), WFI());
	rvt_run_from(t, CODE, RVT_TRAP_M_STOP);
	uint64_t cause = RVT_GET(t, mcause);
	assert_true(cause == 4 || cause == 5);
	assert_int_equal(RVT_GET(t, mtval), RVT_MMIO_BASE + 1);
	assert_int_equal(t->mmio_count, 0);
}

/* ---- M ------------------------------------------------------------------------------ */

#define I64_MIN 0x8000000000000000ull
#define I64_MAX 0x7fffffffffffffffull

static void test_mul(void **state)
{
	struct rvt *t = *state;
	const uint64_t m1 = ~0ull;
	assert_int_equal(op2(t, MUL(A0, A1, A2), 0x100000000ull, 0x100000000ull), 0);
	assert_int_equal(op2(t, MUL(A0, A1, A2), (uint64_t)-3, 5), (uint64_t)-15);
	assert_int_equal(op2(t, MUL(A0, A1, A2), I64_MAX, 2), 0xfffffffffffffffeull);
	assert_int_equal(op2(t, MULH(A0, A1, A2), m1, m1), 0);
	assert_int_equal(op2(t, MULH(A0, A1, A2), I64_MIN, I64_MIN), 0x4000000000000000ull);
	assert_int_equal(op2(t, MULH(A0, A1, A2), (uint64_t)-2, 3), m1);
	assert_int_equal(op2(t, MULH(A0, A1, A2), I64_MAX, I64_MAX), 0x3fffffffffffffffull);
	assert_int_equal(op2(t, MULH(A0, A1, A2), I64_MIN, m1), 0);
	assert_int_equal(op2(t, MULHU(A0, A1, A2), m1, m1), 0xfffffffffffffffeull);
	assert_int_equal(op2(t, MULHU(A0, A1, A2), I64_MIN, 2), 1);
	assert_int_equal(op2(t, MULHU(A0, A1, A2), (uint64_t)-2, 3), 2);
	/* mulhsu: rs1 signed, rs2 unsigned */
	assert_int_equal(op2(t, MULHSU(A0, A1, A2), m1, m1), m1);
	assert_int_equal(op2(t, MULHSU(A0, A1, A2), 2, m1), 1);
	assert_int_equal(op2(t, MULHSU(A0, A1, A2), (uint64_t)-2, 1), m1);
	assert_int_equal(op2(t, MULHSU(A0, A1, A2), I64_MIN, m1), I64_MIN);
	assert_int_equal(op2(t, MULHSU(A0, A1, A2), 3, 5), 0);
	assert_int_equal(op2(t, MULW(A0, A1, A2), 0x7fffffff, 2), 0xfffffffffffffffeull);
	assert_int_equal(op2(t, MULW(A0, A1, A2), 0x100000003ull, 0x100000005ull), 15);
	assert_int_equal(op2(t, MULW(A0, A1, A2), 0x10000, 0x10000), 0);
	assert_int_equal(op2(t, MULW(A0, A1, A2), 0x10000, 0x8000), 0xffffffff80000000ull);
}

static void test_div_rem(void **state)
{
	struct rvt *t = *state;
	const uint64_t m1 = ~0ull;
	assert_int_equal(op2(t, DIV(A0, A1, A2), (uint64_t)-7, 2), (uint64_t)-3);   /* toward zero */
	assert_int_equal(op2(t, DIV(A0, A1, A2), 7, (uint64_t)-2), (uint64_t)-3);
	assert_int_equal(op2(t, DIV(A0, A1, A2), (uint64_t)-7, (uint64_t)-2), 3);
	assert_int_equal(op2(t, DIV(A0, A1, A2), 1234, 0), m1);
	assert_int_equal(op2(t, DIV(A0, A1, A2), I64_MIN, m1), I64_MIN);
	assert_int_equal(op2(t, DIVU(A0, A1, A2), m1, 2), I64_MAX);
	assert_int_equal(op2(t, DIVU(A0, A1, A2), 1234, 0), m1);
	assert_int_equal(op2(t, DIVU(A0, A1, A2), I64_MIN, m1), 0);
	assert_int_equal(op2(t, REM(A0, A1, A2), (uint64_t)-7, 2), m1);
	assert_int_equal(op2(t, REM(A0, A1, A2), 7, (uint64_t)-2), 1);
	assert_int_equal(op2(t, REM(A0, A1, A2), (uint64_t)-7, 0), (uint64_t)-7);
	assert_int_equal(op2(t, REM(A0, A1, A2), I64_MIN, m1), 0);
	assert_int_equal(op2(t, REMU(A0, A1, A2), m1, 10), 5);
	assert_int_equal(op2(t, REMU(A0, A1, A2), m1, 0), m1);
	assert_int_equal(op2(t, REMU(A0, A1, A2), 7, 0), 7);
}

static void test_div_rem_word(void **state)
{
	struct rvt *t = *state;
	const uint64_t m1 = ~0ull;
	assert_int_equal(op2(t, DIVW(A0, A1, A2), 0xffffffff80000000ull, m1), 0xffffffff80000000ull);
	assert_int_equal(op2(t, DIVW(A0, A1, A2), 0x80000000, 0xffffffff), 0xffffffff80000000ull);
	assert_int_equal(op2(t, DIVW(A0, A1, A2), 1234, 0), m1);
	assert_int_equal(op2(t, DIVW(A0, A1, A2), 1234, 0x100000000ull), m1);   /* low word is 0 */
	assert_int_equal(op2(t, DIVW(A0, A1, A2), (uint64_t)-7, 2), (uint64_t)-3);
	assert_int_equal(op2(t, DIVW(A0, A1, A2), 0x100000006ull, 3), 2);
	assert_int_equal(op2(t, DIVUW(A0, A1, A2), 1234, 0), m1);
	assert_int_equal(op2(t, DIVUW(A0, A1, A2), 0xffffffff, 1), m1);
	assert_int_equal(op2(t, DIVUW(A0, A1, A2), 0xfffffffe, 2), 0x7fffffff);
	assert_int_equal(op2(t, DIVUW(A0, A1, A2), 0x80000000, 1), 0xffffffff80000000ull);
	assert_int_equal(op2(t, DIVUW(A0, A1, A2), 0x1fffffffeull, 0x100000002ull), 0x7fffffff);
	assert_int_equal(op2(t, REMW(A0, A1, A2), 0xffffffff80000000ull, m1), 0);
	assert_int_equal(op2(t, REMW(A0, A1, A2), 0x80000001, 0), 0xffffffff80000001ull);
	assert_int_equal(op2(t, REMW(A0, A1, A2), (uint64_t)-7, 2), m1);
	assert_int_equal(op2(t, REMW(A0, A1, A2), 0x500000007ull, 0x100000004ull), 3);
	assert_int_equal(op2(t, REMUW(A0, A1, A2), 0x80000001, 0), 0xffffffff80000001ull);
	assert_int_equal(op2(t, REMUW(A0, A1, A2), 0x1234500000005ull, 0), 5);
	assert_int_equal(op2(t, REMUW(A0, A1, A2), 0xffffffff, 10), 5);
}

/* ---- A ----------------------------------------------------------------------------- */

static void test_lr_sc(void **state)
{
	struct rvt *t = *state;
	rvt_w64(t, DATA, 0x1111111180000001ull);
	rvt_w64(t, DATA + 8, 0x8000000000000002ull);
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, DATA + 8);
	rvt_set_x(t, A3, 0xabcdef0012345678ull);
	RVT_ASM(t, CODE, LR_W(S2, A1), SC_W(S3, A3, A1), LR_D(S4, A2), SC_D(S5, A3, A2), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0xffffffff80000001ull);
	assert_int_equal(rvt_x(t, S3), 0);
	assert_int_equal(rvt_r64(t, DATA), 0x1111111112345678ull);   /* only the word */
	assert_int_equal(rvt_x(t, S4), 0x8000000000000002ull);
	assert_int_equal(rvt_x(t, S5), 0);
	assert_int_equal(rvt_r64(t, DATA + 8), 0xabcdef0012345678ull);
	/* With aq/rl bits set it is the same instruction. */
	RVT_ASM(t, CODE, AMO(AMO_LR, 3, S2, 0, A1, 1, 1), AMO(AMO_SC, 3, S3, A2, A1, 1, 1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0x1111111112345678ull);
	assert_int_equal(rvt_x(t, S3), 0);
	assert_int_equal(rvt_r64(t, DATA), DATA + 8);
}

static void test_sc_failures(void **state)
{
	struct rvt *t = *state;
	rvt_w64(t, DATA, 5);
	rvt_w64(t, DATA + 8, 6);
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, DATA + 8);
	rvt_set_x(t, A3, 77);

	/* sc without a preceding lr (a fresh hart has no reservation) */
	RVT_ASM(t, CODE, SC_D(S2, A3, A1), SC_W(S3, A3, A1), WFI());
	rvt_go(t);
	assert_int_not_equal(rvt_x(t, S2), 0);
	assert_int_not_equal(rvt_x(t, S3), 0);
	assert_int_equal(rvt_r64(t, DATA), 5);

	/* sc to an address other than the lr's (holding the same value, so
	 * only the address can make it fail); the failed sc also ends the
	 * reservation, so a following sc to the right address fails too. */
	rvt_w64(t, DATA + 8, 5);
	RVT_ASM(t, CODE, LR_D(S2, A1), SC_D(S3, A3, A2), SC_D(S4, A3, A1), LR_W(S5, A1),
		SC_W(S6, A3, A2), SC_W(S7, A3, A1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 5);
	assert_int_not_equal(rvt_x(t, S3), 0);
	assert_int_not_equal(rvt_x(t, S4), 0);
	assert_int_not_equal(rvt_x(t, S6), 0);
	assert_int_not_equal(rvt_x(t, S7), 0);
	assert_int_equal(rvt_r64(t, DATA), 5);
	assert_int_equal(rvt_r64(t, DATA + 8), 5);

	/* A second sc after a successful one has no reservation left. */
	RVT_ASM(t, CODE, LR_D(S2, A1), SC_D(S3, A3, A1), ADDI(A4, ZERO, 99), SC_D(S4, A4, A1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S3), 0);
	assert_int_not_equal(rvt_x(t, S4), 0);
	assert_int_equal(rvt_r64(t, DATA), 77);

	/* An intervening store that changes the value: tern's SC is a
	 * compare-and-swap against what LR read (docs/architecture.md), so it
	 * fails. (The ISA would also allow success for a same-hart store.) */
	rvt_w64(t, DATA, 5);
	RVT_ASM(t, CODE, LR_W(S2, A1), ADDI(A4, ZERO, 9), SW(A4, 0, A1), SC_W(S3, A3, A1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 5);
	assert_int_not_equal(rvt_x(t, S3), 0);
	assert_int_equal(rvt_r64(t, DATA), 9);
}

struct amo_case {
	uint32_t f5;
	uint64_t new_mem;
};

static void test_amo_word(void **state)
{
	struct rvt *t = *state;
	/* memory 0x80000001 (negative as a word), rs2 low word 3 */
	const struct amo_case cases[] = {
		{ AMO_SWAP, 3 },           { AMO_ADD, 0x80000004 },   { AMO_XOR, 0x80000002 },
		{ AMO_AND, 0x00000001 },   { AMO_OR, 0x80000003 },    { AMO_MIN, 0x80000001 },
		{ AMO_MAX, 3 },            { AMO_MINU, 3 },           { AMO_MAXU, 0x80000001 },
	};
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, 0xffffffff00000003ull);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rvt_w32(t, DATA, 0x80000001);
		rvt_w32(t, DATA + 4, 0xaaaaaaaa);
		rvt_set_x(t, A0, 0);
		RVT_ASM(t, CODE, AMO_W(cases[i].f5, A0, A2, A1), WFI());
		rvt_go(t);
		assert_int_equal(rvt_x(t, A0), 0xffffffff80000001ull);   /* sign-extended old */
		assert_int_equal(rvt_r32(t, DATA), cases[i].new_mem);
		assert_int_equal(rvt_r32(t, DATA + 4), 0xaaaaaaaa);
	}
}

static void test_amo_double(void **state)
{
	struct rvt *t = *state;
	const uint64_t m = 0x8000000000000001ull;
	const struct amo_case cases[] = {
		{ AMO_SWAP, 3 },                       { AMO_ADD, 0x8000000000000004ull },
		{ AMO_XOR, 0x8000000000000002ull },    { AMO_AND, 1 },
		{ AMO_OR, 0x8000000000000003ull },     { AMO_MIN, m },
		{ AMO_MAX, 3 },                        { AMO_MINU, 3 },
		{ AMO_MAXU, m },
	};
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, 3);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rvt_w64(t, DATA, m);
		rvt_set_x(t, A0, 0);
		RVT_ASM(t, CODE, AMO(cases[i].f5, 3, A0, A2, A1, i & 1, i & 2), WFI());
		rvt_go(t);
		assert_int_equal(rvt_x(t, A0), m);
		assert_int_equal(rvt_r64(t, DATA), cases[i].new_mem);
	}
}

static void test_amo_min_max_signedness(void **state)
{
	struct rvt *t = *state;
	const struct { uint32_t f5; unsigned width; uint64_t want; } cases[] = {
		{ AMO_MIN, 2, 0xffffffff },  { AMO_MINU, 2, 1 },
		{ AMO_MAX, 2, 1 },           { AMO_MAXU, 2, 0xffffffff },
		{ AMO_MIN, 3, ~0ull },       { AMO_MINU, 3, 1 },
		{ AMO_MAX, 3, 1 },           { AMO_MAXU, 3, ~0ull },
	};
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A2, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rvt_w64(t, DATA, cases[i].width == 2 ? 0xffffffff : ~0ull);   /* -1 */
		RVT_ASM(t, CODE, AMO(cases[i].f5, cases[i].width, A0, A2, A1, 0, 0), WFI());
		rvt_go(t);
		assert_int_equal(rvt_x(t, A0), ~0ull);
		assert_int_equal(rvt_r64(t, DATA), cases[i].want);
	}
	/* rd == rs2: the value stored is the old register value */
	rvt_w64(t, DATA, 40);
	rvt_set_x(t, A0, 2);
	RVT_ASM(t, CODE, AMO_D(AMO_ADD, A0, A0, A1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 40);
	assert_int_equal(rvt_r64(t, DATA), 42);
}

static void test_amo_misaligned(void **state)
{
	struct rvt *t = *state;
	rvt_w64(t, DATA, 0);
	rvt_set_x(t, A1, DATA + 2);
	RVT_ASM(t, CODE, AMO_W(AMO_ADD, A0, A2, A1), WFI());
	rvt_go_trap_m(t, 6, CODE, DATA + 2);
	rvt_set_x(t, A1, DATA + 4);
	RVT_ASM(t, CODE, AMO_D(AMO_SWAP, A0, A2, A1), WFI());
	rvt_go_trap_m(t, 6, CODE, DATA + 4);
	RVT_ASM(t, CODE, SC_D(A0, A2, A1), WFI());
	rvt_go_trap_m(t, 6, CODE, DATA + 4);
	/* LR is a load: load address misaligned */
	rvt_set_x(t, A1, DATA + 1);
	RVT_ASM(t, CODE, LR_W(A0, A1), WFI());
	rvt_go_trap_m(t, 4, CODE, DATA + 1);
	assert_int_equal(rvt_r64(t, DATA), 0);
}

static void test_amo_mmio(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, RVT_MMIO_BASE + 8);
	t->mmio_count = 0;
	RVT_ASM(t, CODE, AMO_W(AMO_ADD, A0, A2, A1), WFI());
	rvt_go_trap_m(t, 7, CODE, RVT_MMIO_BASE + 8);
	RVT_ASM(t, CODE, AMO_D(AMO_OR, A0, A2, A1), WFI());
	rvt_go_trap_m(t, 7, CODE, RVT_MMIO_BASE + 8);
	RVT_ASM(t, CODE, LR_D(A0, A1), WFI());
	rvt_go_trap_m(t, 5, CODE, RVT_MMIO_BASE + 8);
	assert_int_equal(t->mmio_count, 0);
	rvt_set_x(t, A1, RVT_NO_DEVICE);
	RVT_ASM(t, CODE, AMO_W(AMO_SWAP, A0, A2, A1), WFI());
	rvt_go_trap_m(t, 7, CODE, RVT_NO_DEVICE);
}

/* ---- C ------------------------------------------------------------------------------- */

static void end_c(struct rvt *t)
{
	rvt_i(t, WFI());
	rvt_go(t);
}

static void test_c_stack_and_loads(void **state)
{
	struct rvt *t = *state;
	memset(rvt_host(t, DATA, 1024), 0, 1024);
	rvt_w32(t, DATA + 124, 0x80000000);
	rvt_w64(t, DATA + 248, 0x1122334455667788ull);
	rvt_w32(t, DATA + 128, 0x90000001);
	rvt_w64(t, DATA + 504, 0xa5a5a5a5a5a5a5a5ull);
	rvt_set_x(t, SP, DATA);
	rvt_set_x(t, S0, DATA);
	rvt_set_x(t, A2, 0xcafef00d12345678ull);
	rvt_set_x(t, A3, 0x0102030405060708ull);
	rvt_org(t, CODE);
	rvt_c(t, C_ADDI4SPN(A0, 1020));
	rvt_c(t, C_LW(A1, 124, S0));
	rvt_c(t, C_LD(A4, 248, S0));
	rvt_c(t, C_SW(A2, 64, S0));
	rvt_c(t, C_SD(A3, 200, S0));
	rvt_c(t, C_LWSP(S2, 128));
	rvt_c(t, C_LDSP(RA, 504));
	rvt_c(t, C_SWSP(A2, 72));
	rvt_c(t, C_SDSP(A3, 8));
	end_c(t);
	assert_int_equal(rvt_x(t, A0), DATA + 1020);
	assert_int_equal(rvt_x(t, A1), 0xffffffff80000000ull);
	assert_int_equal(rvt_x(t, A4), 0x1122334455667788ull);
	assert_int_equal(rvt_r64(t, DATA + 64), 0x0000000012345678ull);
	assert_int_equal(rvt_r64(t, DATA + 200), 0x0102030405060708ull);
	assert_int_equal(rvt_x(t, S2), 0xffffffff90000001ull);
	assert_int_equal(rvt_x(t, RA), 0xa5a5a5a5a5a5a5a5ull);
	assert_int_equal(rvt_r32(t, DATA + 72), 0x12345678);
	assert_int_equal(rvt_r64(t, DATA + 8), 0x0102030405060708ull);
}

static void test_c_immediates(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A0, 10);
	rvt_set_x(t, A1, 0x7fffffff);
	rvt_set_x(t, A2, 0x180000000ull);
	rvt_set_x(t, SP, DATA + 0x400);
	rvt_set_x(t, S3, 0);
	rvt_org(t, CODE);
	rvt_c(t, C_ADDI(A0, -32));
	rvt_c(t, C_ADDIW(A1, 1));
	rvt_c(t, C_ADDIW(A2, 0));       /* sext.w */
	rvt_c(t, C_LI(A3, -17));
	rvt_c(t, C_LI(A4, 31));
	rvt_c(t, C_LUI(A5, -32));
	rvt_c(t, C_LUI(S2, 31));
	rvt_c(t, C_LUI(T0, 1));
	rvt_c(t, C_ADDI16SP(-512));
	rvt_c(t, C_MV(S3, SP));
	rvt_c(t, C_ADDI16SP(496));
	rvt_c(t, C_NOP());
	end_c(t);
	assert_int_equal(rvt_x(t, A0), (uint64_t)-22);
	assert_int_equal(rvt_x(t, A1), 0xffffffff80000000ull);
	assert_int_equal(rvt_x(t, A2), 0xffffffff80000000ull);
	assert_int_equal(rvt_x(t, A3), 0xffffffffffffffefull);
	assert_int_equal(rvt_x(t, A4), 31);
	assert_int_equal(rvt_x(t, A5), 0xfffffffffffe0000ull);
	assert_int_equal(rvt_x(t, S2), 0x1f000);
	assert_int_equal(rvt_x(t, T0), 0x1000);
	assert_int_equal(rvt_x(t, S3), DATA + 0x200);
	assert_int_equal(rvt_x(t, SP), DATA + 0x3f0);
}

static void test_c_alu(void **state)
{
	struct rvt *t = *state;
	const uint64_t a = 0xff00ff00ff00ff00ull, b = 0x0ff00ff00ff00ff0ull;
	rvt_set_x(t, A0, 0x8000000000000000ull);
	rvt_set_x(t, S1, 0x8000000000000000ull);
	rvt_set_x(t, A5, 0x1234);
	rvt_set_x(t, S0, 0x8000000000000000ull);
	rvt_org(t, CODE);
	rvt_c(t, C_SRLI(A0, 63));
	rvt_c(t, C_SRAI(S1, 1));
	rvt_c(t, C_ANDI(A5, -32));
	rvt_c(t, C_SRAI(S0, 63));
	end_c(t);
	assert_int_equal(rvt_x(t, A0), 1);
	assert_int_equal(rvt_x(t, S1), 0xc000000000000000ull);
	assert_int_equal(rvt_x(t, A5), 0x1220);
	assert_int_equal(rvt_x(t, S0), ~0ull);

	const struct { uint16_t (*fn)(unsigned, unsigned); uint64_t a, b, want; } cases[] = {
		{ C_SUB, 0, 1, ~0ull },
		{ C_XOR, a, b, 0xf0f0f0f0f0f0f0f0ull },
		{ C_OR, a, b, 0xfff0fff0fff0fff0ull },
		{ C_AND, a, b, 0x0f000f000f000f00ull },
		{ C_SUBW, 0x80000000, 1, 0x7fffffff },
		{ C_SUBW, 0, 1, ~0ull },
		{ C_ADDW, 0x7fffffff, 1, 0xffffffff80000000ull },
		{ C_ADDW, 0x1ffffffffull, 0x100000001ull, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rvt_set_x(t, A3, cases[i].a);
		rvt_set_x(t, A4, cases[i].b);
		rvt_org(t, CODE);
		rvt_c(t, cases[i].fn(A3, A4));
		end_c(t);
		assert_int_equal(rvt_x(t, A3), cases[i].want);
		assert_int_equal(rvt_x(t, A4), cases[i].b);
	}

	rvt_set_x(t, A0, 1);
	rvt_set_x(t, T1, 0x40);
	rvt_set_x(t, T2, 5);
	rvt_org(t, CODE);
	rvt_c(t, C_SLLI(A0, 63));
	rvt_c(t, C_MV(S4, T1));
	rvt_c(t, C_ADD(T1, T2));
	end_c(t);
	assert_int_equal(rvt_x(t, A0), 0x8000000000000000ull);
	assert_int_equal(rvt_x(t, S4), 0x40);
	assert_int_equal(rvt_x(t, T1), 0x45);
}

static void test_c_jumps(void **state)
{
	struct rvt *t = *state;
	/* 0: c.j +6 -> 6; 2: c.li a0,1; 4: c.j +8 -> 12 (from 4); 6: c.li a1,2;
	 * 8: c.j -6 -> 2; 10: c.nop; 12: wfi */
	rvt_set_x(t, A0, 0);
	rvt_set_x(t, A1, 0);
	rvt_org(t, CODE);
	rvt_c(t, C_J(6));
	rvt_c(t, C_LI(A0, 1));
	rvt_c(t, C_J(8));
	rvt_c(t, C_LI(A1, 2));
	rvt_c(t, C_J(-6));
	rvt_c(t, C_NOP());
	end_c(t);
	assert_int_equal(rvt_x(t, A0), 1);
	assert_int_equal(rvt_x(t, A1), 2);

	/* c.beqz / c.bnez both ways: each test adds to a2 only if it falls through */
	rvt_set_x(t, A2, 0);
	rvt_set_x(t, S0, 0);
	rvt_set_x(t, S1, 7);
	rvt_org(t, CODE);
	rvt_c(t, C_BEQZ(S0, 4));      /* 0: taken -> 4 */
	rvt_c(t, C_ADDI(A2, 1));      /* 2: skipped */
	rvt_c(t, C_BNEZ(S0, 4));      /* 4: not taken */
	rvt_c(t, C_ADDI(A2, 2));      /* 6 */
	rvt_c(t, C_BEQZ(S1, 4));      /* 8: not taken */
	rvt_c(t, C_ADDI(A2, 4));      /* 10 */
	rvt_c(t, C_BNEZ(S1, 4));      /* 12: taken -> 16 */
	rvt_c(t, C_ADDI(A2, 8));      /* 14: skipped */
	rvt_c(t, C_NOP());            /* 16 */
	end_c(t);
	assert_int_equal(rvt_x(t, A2), 6);

	/* backward: 0: c.j +6; 2: c.li a3,5; 4: wfi(32) ...; 8: c.bnez s1, -6 -> 2 */
	rvt_set_x(t, A3, 0);
	rvt_org(t, CODE);
	rvt_c(t, C_J(8));             /* 0 -> 8 */
	rvt_c(t, C_LI(A3, 5));        /* 2 */
	rvt_i(t, WFI());              /* 4 */
	rvt_c(t, C_BNEZ(S1, -6));     /* 8 -> 2 */
	rvt_c(t, C_LI(A3, 9));
	rvt_i(t, WFI());
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, A3), 5);
	/* taken backward c.beqz; then a c.bnez falling through */
	rvt_set_x(t, S0, 0);
	rvt_set_x(t, A3, 0);
	rvt_org(t, CODE + 8);
	rvt_c(t, C_BEQZ(S0, -6));
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, A3), 5);
	rvt_org(t, CODE + 8);
	rvt_c(t, C_BNEZ(S0, -6));
	rvt_run_from(t, CODE, CODE + 16);
	assert_int_equal(rvt_x(t, A3), 9);
}

static void test_c_jr_jalr(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A0, CODE + 8);
	rvt_set_x(t, RA, 0);
	rvt_org(t, CODE);
	rvt_c(t, C_JR(A0));           /* 0 -> 8 */
	rvt_c(t, C_NOP());            /* 2 */
	rvt_i(t, WFI());              /* 4 */
	rvt_set_x(t, T0, CODE + 4);
	rvt_c(t, C_JALR(T0));         /* 8 -> 4, ra = 10 */
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, RA), CODE + 10);

	/* c.jalr ra: jumps to the old ra, links pc + 2 */
	rvt_set_x(t, RA, CODE + 4);
	rvt_org(t, CODE);
	rvt_c(t, C_JALR(RA));         /* 0 -> 4 */
	rvt_c(t, C_NOP());
	rvt_i(t, WFI());
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, RA), CODE + 2);
}

static void test_c_ebreak(void **state)
{
	struct rvt *t = *state;
	rvt_org(t, CODE);
	rvt_c(t, C_NOP());
	rvt_c(t, C_EBREAK());
	rvt_c(t, C_NOP());
	rvt_go_trap_m(t, 3, CODE + 2, CODE + 2);
}

static void test_c_reserved(void **state)
{
	struct rvt *t = *state;
	const uint16_t bad[] = {
		0x0000,     /* all zeros: defined illegal */
		0x6501,     /* c.lui a0, 0 */
		0x6101,     /* c.addi16sp sp, 0 */
		0x4002,     /* c.lwsp x0 */
		0x6002,     /* c.ldsp x0 */
		0x8002,     /* c.jr x0 */
		0x2001,     /* c.addiw x0 */
		0x8000,     /* quadrant 0, funct3 4 */
		0x9c41,     /* CA with bit 12 set, funct2 2 */
		0x9c61,     /* CA with bit 12 set, funct2 3 */
		0x0010,     /* c.addi4spn a2, sp, 0 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rvt_org(t, CODE);
		rvt_c(t, bad[i]);
		rvt_c(t, C_NOP());   /* the next halfword must not leak into mtval */
		rvt_i(t, WFI());
		rvt_go_trap_m(t, 2, CODE, bad[i]);
	}
}

static void test_c_mixed_and_straddling(void **state)
{
	struct rvt *t = *state;
	/* A 32-bit instruction at a 2-byte boundary, then one straddling the
	 * page boundary at CODE + 0x1000. */
	const uint64_t page_end = CODE + 0x1000;
	rvt_set_x(t, A0, 0);
	rvt_org(t, CODE);
	rvt_c(t, C_LI(A0, 1));
	rvt_i(t, ADDI(A0, A0, 2));            /* at CODE + 2 */
	rvt_i(t, JAL(ZERO, (int32_t)(page_end - 8 - (CODE + 6))));
	rvt_org(t, page_end - 8);
	rvt_i(t, ADDI(A0, A0, 4));
	rvt_c(t, C_NOP());
	rvt_i(t, ADDI(A0, A0, 8));            /* page_end - 2 .. page_end + 2 */
	rvt_i(t, WFI());
	for (int round = 0; round < 2; round++) {   /* the second time from decoded pages */
		rvt_run_from(t, CODE, page_end + 6);
		assert_int_equal(rvt_x(t, A0), 15);
	}
}

/* ---- illegal instructions --------------------------------------------------------- */

static void test_illegal_encodings(void **state)
{
	struct rvt *t = *state;
	const uint32_t bad[] = {
		0x0000000b,                               /* custom-0 */
		rv_r(0x02, A2, A1, 0, A0, 0x33),          /* OP with funct7 2 */
		rv_r(0x20, A2, A1, 1, A0, 0x33),          /* "sub" funct7 with sll */
		rv_i(0x400 | 1, A1, 1, A0, 0x13),         /* slli with funct6 0x10 */
		rv_i(0x800 | 1, A1, 5, A0, 0x13),         /* srli/srai funct6 0x20 */
		rv_i(0x020 | 1, A1, 5, A0, 0x1b),         /* srliw with shamt[5] */
		rv_i(0x020 | 1, A1, 1, A0, 0x1b),         /* slliw with shamt[5] */
		rv_i(0, A1, 7, A0, 0x03),                 /* load funct3 7 */
		rv_s(0, A0, A1, 4, 0x23),                 /* store funct3 4 */
		rv_b(8, A0, A1, 2),                       /* branch funct3 2 */
		rv_i(0, A1, 1, A0, 0x67),                 /* jalr funct3 1 */
		rv_r(0x01, A2, A1, 1, A0, 0x3b),          /* OP-32 M funct3 1 */
		rv_r(0x00, A2, A1, 2, A0, 0x3b),          /* OP-32 funct3 2 */
		AMO(AMO_LR, 2, A0, A2, A1, 0, 0),         /* lr.w with rs2 != 0 */
		AMO(0x05, 2, A0, A2, A1, 0, 0),           /* unassigned AMO funct5 */
		AMO(AMO_ADD, 4, A0, A2, A1, 0, 0),        /* AMO width 4 */
		0x00000573,                               /* ecall with rd = a0 */
		0x00200073,                               /* uret: no N extension */
		0x7b200073,                               /* dret: not in debug mode */
		rv_i(0x300, A1, 4, A0, 0x73),             /* SYSTEM funct3 4 */
		rv_i(0, 0, 2, 0, 0x0f),                   /* MISC-MEM funct3 2 */
		rv_r(0x03, 2, 1, 0, 1, 0x53),             /* fadd.q: no Q extension */
		rv_r(0x02, 2, 1, 0, 1, 0x53),             /* fadd.h: no Zfh */
		rv_r(0x2c, 1, 1, 0, 1, 0x53),             /* fsqrt.s with rs2 != 0 */
		rv_r(0x10, 2, 1, 3, 1, 0x53),             /* fsgnj.s funct3 3 */
		rv_i(0, A1, 4, 1, 0x07),                  /* flq */
	};
	/* FS on, so that the FP encodings are illegal for what they are. */
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) | (1ull << 13));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		RVT_ASM(t, CODE, bad[i], WFI());
		rvt_go_trap_m(t, 2, CODE, bad[i]);
	}
}

/* ---- Zicsr ------------------------------------------------------------------------ */

static void test_csr_ops(void **state)
{
	struct rvt *t = *state;
	RVT_SET(t, mscratch, 0xf0);
	rvt_set_x(t, A1, 0x0f);
	rvt_set_x(t, A2, 0x300);
	rvt_set_x(t, A3, 0x00f);
	RVT_ASM(t, CODE,
		CSRRW(S2, CSR_MSCRATCH, A1),     /* s2 = f0, csr = 0f */
		CSRRS(S3, CSR_MSCRATCH, A2),     /* s3 = 0f, csr = 30f */
		CSRRC(S4, CSR_MSCRATCH, A3),     /* s4 = 30f, csr = 300 */
		CSRRWI(S5, CSR_MSCRATCH, 31),    /* s5 = 300, csr = 31 */
		CSRRSI(S6, CSR_MSCRATCH, 0),     /* s6 = 31, no write */
		CSRRCI(S7, CSR_MSCRATCH, 1),     /* s7 = 31, csr = 30 */
		CSRRSI(S8, CSR_MSCRATCH, 0x10 | 1), /* s8 = 30, csr = 31 */
		CSRR(S9, CSR_MSCRATCH),
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0xf0);
	assert_int_equal(rvt_x(t, S3), 0x0f);
	assert_int_equal(rvt_x(t, S4), 0x30f);
	assert_int_equal(rvt_x(t, S5), 0x300);
	assert_int_equal(rvt_x(t, S6), 31);
	assert_int_equal(rvt_x(t, S7), 31);
	assert_int_equal(rvt_x(t, S8), 30);
	assert_int_equal(rvt_x(t, S9), 31);
	assert_int_equal(RVT_GET(t, mscratch), 31);

	/* rd == rs1: a swap */
	rvt_set_x(t, A1, 0x1234);
	RVT_ASM(t, CODE, CSRRW(A1, CSR_MSCRATCH, A1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A1), 31);
	assert_int_equal(RVT_GET(t, mscratch), 0x1234);
	/* all 64 bits */
	rvt_set_x(t, A1, 0xfedcba9876543210ull);
	RVT_ASM(t, CODE, CSRW(CSR_MSCRATCH, A1), CSRR(A0, CSR_MSCRATCH), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0xfedcba9876543210ull);
}

static void test_csr_read_only(void **state)
{
	struct rvt *t = *state;
	/* csrrs/csrrc with rs1 = x0 and the immediate forms with 0 do not
	 * write, so they are legal on read-only CSRs. */
	RVT_ASM(t, CODE, CSRRS(A0, CSR_MHARTID, ZERO), CSRRC(A1, CSR_MVENDORID, ZERO),
		CSRRSI(A2, CSR_MARCHID, 0), CSRRCI(A3, CSR_MIMPID, 0), CSRR(A4, CSR_CYCLE), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0);
	/* Any write attempt is illegal, even of the current value: rs1 != x0
	 * counts as a write whatever the register holds. */
	rvt_set_x(t, A1, 0);
	const uint32_t writes[] = {
		CSRRW(ZERO, CSR_MHARTID, A1),
		CSRRS(A0, CSR_MHARTID, A1),
		CSRRC(A0, CSR_MVENDORID, A1),
		CSRRSI(A0, CSR_MHARTID, 1),
		CSRRWI(A0, CSR_MIMPID, 0),
		CSRRW(ZERO, CSR_CYCLE, A1),
		CSRRS(A0, CSR_TIME, A1),
		CSRRWI(A0, CSR_INSTRET, 0),
	};
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		RVT_ASM(t, CODE, writes[i], WFI());
		rvt_go_trap_m(t, 2, CODE, writes[i]);
	}
}

static void test_fence_is_nop(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), FENCE(), 0x8330000f /* fence.tso */, ADDI(A0, A0, 1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, rvt_setup, rvt_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_add_sub),
		T(test_logic),
		T(test_slt),
		T(test_shifts),
		T(test_word_ops),
		T(test_lui_auipc),
		T(test_branches),
		T(test_jal_jalr),
		T(test_jalr_clears_bit0),
		T(test_x0_is_zero),
		T(test_loads),
		T(test_stores),
		T(test_misaligned_within_page),
		T(test_misaligned_across_page),
		T(test_mmio),
		T(test_access_fault),
		T(test_mul),
		T(test_div_rem),
		T(test_div_rem_word),
		T(test_lr_sc),
		T(test_sc_failures),
		T(test_amo_word),
		T(test_amo_double),
		T(test_amo_min_max_signedness),
		T(test_amo_misaligned),
		T(test_amo_mmio),
		T(test_c_stack_and_loads),
		T(test_c_immediates),
		T(test_c_alu),
		T(test_c_jumps),
		T(test_c_jr_jalr),
		T(test_c_ebreak),
		T(test_c_reserved),
		T(test_c_mixed_and_straddling),
		T(test_illegal_encodings),
		T(test_csr_ops),
		T(test_csr_read_only),
		T(test_fence_is_nop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
