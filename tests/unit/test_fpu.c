/* test_fpu.c: fpu_exec() against the F and D chapters of the RISC-V
 * unprivileged ISA (20191213) and IEEE 754 rounding. Every expected value
 * and flag set was worked out by hand from the spec, written as raw bits or
 * as exactly representable hex-float literals; none was produced by running
 * the code under test. Each check compares both the result and the exact
 * set of flags raised. */
#include <fenv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/rv64/fpu.h"

#define NX FPU_NX
#define UF FPU_UF
#define OF FPU_OF
#define DZ FPU_DZ
#define NV FPU_NV

#define RNE FPU_RNE
#define RTZ FPU_RTZ
#define RDN FPU_RDN
#define RUP FPU_RUP
#define RMM FPU_RMM

/* Boxed single from raw bits. */
#define SB(bits) FPU_BOX_S(bits)

#define S_QNAN SB(0x7fc00000u)
#define S_SNAN SB(0x7f800001u)
#define S_INF SB(0x7f800000u)
#define S_NINF SB(0xff800000u)
#define S_MAX SB(0x7f7fffffu)
#define S_PZERO SB(0x00000000u)
#define S_NZERO SB(0x80000000u)

#define D_QNAN 0x7ff8000000000000ull
#define D_SNAN 0x7ff0000000000001ull
#define D_INF 0x7ff0000000000000ull
#define D_NINF 0xfff0000000000000ull
#define D_MAX 0x7fefffffffffffffull
#define D_PZERO 0x0000000000000000ull
#define D_NZERO 0x8000000000000000ull

/* Single 1.0 in a register whose upper half is not all ones. */
#define UNBOXED_ONE 0x000000003f800000ull

/* Boxed single of an exactly representable literal. */
static uint64_t S(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return FPU_BOX_S(u);
}

static uint64_t D(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

#define T3(op, rm, a, b, c, want, wfl)                                                     \
	do {                                                                               \
		uint32_t fl_ = 0;                                                          \
		uint64_t got_ = fpu_exec(FPU_##op, (a), (b), (c), (rm), &fl_);             \
		if (got_ != (uint64_t)(want) || fl_ != (uint32_t)(wfl))                    \
			print_error("line %d %s rm=%u: got %#llx flags %#x, want %#llx flags %#x\n", \
				    __LINE__, #op, (unsigned)(rm), (unsigned long long)got_, fl_, \
				    (unsigned long long)(want), (unsigned)(wfl));          \
		assert_int_equal(got_, (uint64_t)(want));                                  \
		assert_int_equal(fl_, (uint32_t)(wfl));                                    \
	} while (0)
#define T2(op, rm, a, b, want, wfl) T3(op, rm, a, b, 0, want, wfl)
#define T1(op, rm, a, want, wfl) T3(op, rm, a, 0, 0, want, wfl)

static void test_op_info(void **state)
{
	for (int op = 0; op < FPU_OP_COUNT; op++) {
		assert_non_null(fpu_op_info[op].name);
		assert_true(fpu_op_info[op].sources >= 1 && fpu_op_info[op].sources <= 3);
	}
	assert_string_equal(fpu_op_info[FPU_ADD_S].name, "fadd.s");
	assert_string_equal(fpu_op_info[FPU_NMADD_D].name, "fnmadd.d");
	assert_string_equal(fpu_op_info[FPU_CVT_S_D].name, "fcvt.s.d");
	assert_int_equal(fpu_op_info[FPU_MADD_D].sources, 3);
	assert_int_equal(fpu_op_info[FPU_SQRT_S].sources, 1);
	assert_true(fpu_op_info[FPU_ADD_D].uses_rm);
	assert_true(fpu_op_info[FPU_CVT_D_W].uses_rm);
	assert_true(fpu_op_info[FPU_CVT_D_S].uses_rm);
	assert_false(fpu_op_info[FPU_SGNJ_S].uses_rm);
	assert_false(fpu_op_info[FPU_MIN_D].uses_rm);
	assert_false(fpu_op_info[FPU_EQ_S].uses_rm);
	assert_true(fpu_op_info[FPU_CVT_S_LU].src_int);
	assert_true(fpu_op_info[FPU_MV_D_X].src_int);
	assert_false(fpu_op_info[FPU_MV_X_D].src_int);
	assert_true(fpu_op_info[FPU_MV_X_W].dst_int);
	assert_true(fpu_op_info[FPU_CLASS_D].dst_int);
	assert_true(fpu_op_info[FPU_LE_D].dst_int);
	assert_true(fpu_op_info[FPU_CVT_WU_S].dst_int);
	assert_false(fpu_op_info[FPU_CVT_D_S].dst_int);
}

static void test_add_sub(void **state)
{
	T2(ADD_S, RNE, S(1.5f), S(2.25f), S(3.75f), 0);
	T2(ADD_D, RNE, D(1.5), D(2.25), D(3.75), 0);
	T2(SUB_D, RNE, D(1.5), D(2.25), D(-0.75), 0);

	/* 2^24 + 1 is a tie between 2^24 (even) and 2^24 + 2. */
	T2(ADD_S, RNE, S(0x1p24f), S(1.0f), SB(0x4b800000u), NX);
	T2(ADD_S, RMM, S(0x1p24f), S(1.0f), SB(0x4b800001u), NX);
	T2(ADD_S, RTZ, S(0x1p24f), S(1.0f), SB(0x4b800000u), NX);
	T2(ADD_S, RDN, S(0x1p24f), S(1.0f), SB(0x4b800000u), NX);
	T2(ADD_S, RUP, S(0x1p24f), S(1.0f), SB(0x4b800001u), NX);
	/* 2^24 + 3: between 2^24 + 2 (odd) and 2^24 + 4 (even): RNE = RMM */
	T2(ADD_S, RNE, S(0x1p24f), S(3.0f), SB(0x4b800002u), NX);
	T2(ADD_S, RMM, S(0x1p24f), S(3.0f), SB(0x4b800002u), NX);
	T2(ADD_S, RTZ, S(0x1p24f), S(3.0f), SB(0x4b800001u), NX);
	/* -2^24 - 1: away from zero is downward */
	T2(SUB_S, RNE, S(-0x1p24f), S(1.0f), SB(0xcb800000u), NX);
	T2(SUB_S, RMM, S(-0x1p24f), S(1.0f), SB(0xcb800001u), NX);
	T2(SUB_S, RDN, S(-0x1p24f), S(1.0f), SB(0xcb800001u), NX);
	T2(SUB_S, RUP, S(-0x1p24f), S(1.0f), SB(0xcb800000u), NX);
	/* 2^53 + 1 in double */
	T2(ADD_D, RNE, D(0x1p53), D(1.0), 0x4340000000000000ull, NX);
	T2(ADD_D, RMM, D(0x1p53), D(1.0), 0x4340000000000001ull, NX);
	T2(ADD_D, RUP, D(0x1p53), D(1.0), 0x4340000000000001ull, NX);
	T2(ADD_D, RTZ, D(0x1p53), D(1.0), 0x4340000000000000ull, NX);
	T2(ADD_D, RNE, D(0x1p53), D(1.5), 0x4340000000000001ull, NX);

	/* exact zero sums: +0 except in RDN */
	T2(ADD_D, RNE, D(1.0), D(-1.0), D_PZERO, 0);
	T2(ADD_D, RDN, D(1.0), D(-1.0), D_NZERO, 0);
	T2(ADD_D, RUP, D(1.0), D(-1.0), D_PZERO, 0);
	T2(ADD_D, RMM, D(1.0), D(-1.0), D_PZERO, 0);
	T2(SUB_S, RNE, S(1.0f), S(1.0f), S_PZERO, 0);
	T2(SUB_S, RDN, S(1.0f), S(1.0f), S_NZERO, 0);
	T2(ADD_D, RNE, D_PZERO, D_NZERO, D_PZERO, 0);
	T2(ADD_D, RDN, D_PZERO, D_NZERO, D_NZERO, 0);
	T2(ADD_D, RNE, D_NZERO, D_NZERO, D_NZERO, 0);
	T2(SUB_D, RNE, D_NZERO, D_PZERO, D_NZERO, 0);
	T2(SUB_D, RDN, D_PZERO, D_PZERO, D_NZERO, 0);
	T2(SUB_D, RDN, D_PZERO, D_NZERO, D_PZERO, 0);
	T2(ADD_D, RNE, 0x1ull, D_NZERO, 0x1ull, 0);

	/* a tiny addend only nudges */
	T2(ADD_D, RNE, D(1.0), D(0x1p-60), D(1.0), NX);
	T2(ADD_D, RUP, D(1.0), D(0x1p-60), 0x3ff0000000000001ull, NX);
	T2(SUB_D, RNE, D(1.0), D(0x1p-60), D(1.0), NX);
	T2(SUB_D, RTZ, D(1.0), D(0x1p-60), 0x3fefffffffffffffull, NX);
	T2(SUB_D, RDN, D(1.0), D(0x1p-60), 0x3fefffffffffffffull, NX);
	T2(SUB_D, RMM, D(1.0), D(0x1p-60), D(1.0), NX);
	T2(ADD_D, RUP, D(1.0), D(0x1p-1000), 0x3ff0000000000001ull, NX);
	T2(ADD_D, RMM, D(-1.0), D(-0x1p-1000), D(-1.0), NX);

	/* infinities */
	T2(ADD_D, RNE, D_INF, D_NINF, D_QNAN, NV);
	T2(SUB_S, RNE, S_INF, S_INF, S_QNAN, NV);
	T2(ADD_D, RNE, D_INF, D_INF, D_INF, 0);
	T2(ADD_D, RNE, D_INF, D(1.0), D_INF, 0);
	T2(SUB_D, RNE, D(1.0), D_INF, D_NINF, 0);

	/* overflow, which depends on the rounding direction */
	T2(ADD_D, RNE, D_MAX, D_MAX, D_INF, OF | NX);
	T2(ADD_D, RTZ, D_MAX, D_MAX, D_MAX, OF | NX);
	T2(ADD_D, RNE, D_MAX, D(1.0), D_MAX, NX);
	T2(ADD_D, RUP, D_MAX, D(1.0), D_INF, OF | NX);
	/* FLT_MAX + half an ulp: a tie that RNE sends to 2^128 */
	T2(ADD_S, RNE, S_MAX, S(0x1p103f), S_INF, OF | NX);
	T2(ADD_S, RMM, S_MAX, S(0x1p103f), S_INF, OF | NX);
	T2(ADD_S, RUP, S_MAX, S(0x1p103f), S_INF, OF | NX);
	T2(ADD_S, RTZ, S_MAX, S(0x1p103f), S_MAX, NX);
	T2(ADD_S, RDN, S_MAX, S(0x1p103f), S_MAX, NX);
}

static void test_mul(void **state)
{
	T2(MUL_S, RNE, S(1.5f), S(2.5f), S(3.75f), 0);
	T2(MUL_D, RNE, D(-1.5), D(2.5), D(-3.75), 0);

	/* (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: a tie, even below */
	T2(MUL_S, RNE, SB(0x3f800800u), SB(0x3f800800u), SB(0x3f801000u), NX);
	T2(MUL_S, RMM, SB(0x3f800800u), SB(0x3f800800u), SB(0x3f801001u), NX);
	T2(MUL_S, RUP, SB(0x3f800800u), SB(0x3f800800u), SB(0x3f801001u), NX);
	T2(MUL_S, RTZ, SB(0x3f800800u), SB(0x3f800800u), SB(0x3f801000u), NX);
	T2(MUL_S, RNE, SB(0xbf800800u), SB(0x3f800800u), SB(0xbf801000u), NX);
	T2(MUL_S, RMM, SB(0xbf800800u), SB(0x3f800800u), SB(0xbf801001u), NX);
	T2(MUL_S, RDN, SB(0xbf800800u), SB(0x3f800800u), SB(0xbf801001u), NX);
	T2(MUL_S, RUP, SB(0xbf800800u), SB(0x3f800800u), SB(0xbf801000u), NX);
	/* (1 + 2^-26)(1 + 2^-27) = 1 + 2^-26 + 2^-27 + 2^-53 */
	T2(MUL_D, RNE, 0x3ff0000004000000ull, 0x3ff0000002000000ull, 0x3ff0000006000000ull, NX);
	T2(MUL_D, RMM, 0x3ff0000004000000ull, 0x3ff0000002000000ull, 0x3ff0000006000001ull, NX);
	T2(MUL_D, RTZ, 0x3ff0000004000000ull, 0x3ff0000002000000ull, 0x3ff0000006000000ull, NX);
	T2(MUL_D, RUP, 0x3ff0000004000000ull, 0x3ff0000002000000ull, 0x3ff0000006000001ull, NX);

	/* overflow */
	T2(MUL_S, RNE, S_MAX, S(2.0f), S_INF, OF | NX);
	T2(MUL_S, RTZ, S_MAX, S(2.0f), S_MAX, OF | NX);
	T2(MUL_S, RDN, S_MAX, S(2.0f), S_MAX, OF | NX);
	T2(MUL_S, RUP, S_MAX, S(2.0f), S_INF, OF | NX);
	T2(MUL_S, RMM, S_MAX, S(2.0f), S_INF, OF | NX);
	T2(MUL_S, RDN, S_MAX, S(-2.0f), S_NINF, OF | NX);
	T2(MUL_S, RUP, S_MAX, S(-2.0f), SB(0xff7fffffu), OF | NX);
	T2(MUL_S, RTZ, S_MAX, S(-2.0f), SB(0xff7fffffu), OF | NX);
	T2(MUL_D, RNE, D_MAX, D(2.0), D_INF, OF | NX);
	T2(MUL_D, RTZ, D_MAX, D(2.0), D_MAX, OF | NX);

	/* exact subnormal results raise nothing */
	T2(MUL_S, RNE, S(0x1p-126f), S(0.5f), SB(0x00400000u), 0);
	T2(MUL_D, RNE, D(0x1p-1022), D(0.5), 0x0008000000000000ull, 0);
	/* 2^-150: a tie between 0 and the smallest subnormal */
	T2(MUL_S, RNE, SB(0x00000001u), S(0.5f), S_PZERO, UF | NX);
	T2(MUL_S, RMM, SB(0x00000001u), S(0.5f), SB(0x00000001u), UF | NX);
	T2(MUL_S, RUP, SB(0x00000001u), S(0.5f), SB(0x00000001u), UF | NX);
	T2(MUL_S, RDN, SB(0x00000001u), S(0.5f), S_PZERO, UF | NX);
	T2(MUL_S, RNE, SB(0x80000001u), S(0.5f), S_NZERO, UF | NX);
	T2(MUL_S, RDN, SB(0x80000001u), S(0.5f), SB(0x80000001u), UF | NX);
	T2(MUL_S, RNE, SB(0x00000001u), S(0.75f), SB(0x00000001u), UF | NX);
	T2(MUL_S, RTZ, SB(0x00000001u), S(0.75f), S_PZERO, UF | NX);
	T2(MUL_D, RNE, 0x1ull, D(0.5), D_PZERO, UF | NX);
	T2(MUL_D, RUP, 0x1ull, D(0.5), 0x1ull, UF | NX);

	/* Tininess after rounding: 2^-126 - 2^-172 rounds (unbounded
	 * exponent, 24 bits) to 2^-126, so it is not tiny: NX alone. */
	T2(MUL_S, RNE, SB(0x3f7ffffeu), SB(0x00800001u), SB(0x00800000u), NX);
	T2(MUL_S, RUP, SB(0x3f7ffffeu), SB(0x00800001u), SB(0x00800000u), NX);
	T2(MUL_S, RMM, SB(0x3f7ffffeu), SB(0x00800001u), SB(0x00800000u), NX);
	T2(MUL_S, RTZ, SB(0x3f7ffffeu), SB(0x00800001u), SB(0x007fffffu), UF | NX);
	T2(MUL_D, RNE, 0x3feffffffffffffeull, 0x0010000000000001ull, 0x0010000000000000ull, NX);
	T2(MUL_D, RTZ, 0x3feffffffffffffeull, 0x0010000000000001ull, 0x000fffffffffffffull, UF | NX);
	/* 2^-126 - 2^-150 has 24 bits: tiny, yet rounds to 2^-126 */
	T2(MUL_S, RNE, SB(0x3f7fffffu), SB(0x00800000u), SB(0x00800000u), UF | NX);
	T2(MUL_S, RTZ, SB(0x3f7fffffu), SB(0x00800000u), SB(0x007fffffu), UF | NX);

	/* invalid and signs */
	T2(MUL_D, RNE, D_INF, D_PZERO, D_QNAN, NV);
	T2(MUL_D, RNE, D_NZERO, D_INF, D_QNAN, NV);
	T2(MUL_D, RNE, D_INF, D(-2.0), D_NINF, 0);
	T2(MUL_D, RNE, D_NZERO, D(5.0), D_NZERO, 0);
}

static void test_div(void **state)
{
	T2(DIV_S, RNE, S(1.0f), S(3.0f), SB(0x3eaaaaabu), NX);
	T2(DIV_S, RTZ, S(1.0f), S(3.0f), SB(0x3eaaaaaau), NX);
	T2(DIV_S, RDN, S(1.0f), S(3.0f), SB(0x3eaaaaaau), NX);
	T2(DIV_S, RUP, S(1.0f), S(3.0f), SB(0x3eaaaaabu), NX);
	T2(DIV_S, RMM, S(1.0f), S(3.0f), SB(0x3eaaaaabu), NX);
	T2(DIV_S, RDN, S(-1.0f), S(3.0f), SB(0xbeaaaaabu), NX);
	T2(DIV_S, RUP, S(-1.0f), S(3.0f), SB(0xbeaaaaaau), NX);
	T2(DIV_D, RNE, D(1.0), D(3.0), 0x3fd5555555555555ull, NX);
	T2(DIV_D, RUP, D(1.0), D(3.0), 0x3fd5555555555556ull, NX);
	T2(DIV_D, RMM, D(1.0), D(3.0), 0x3fd5555555555555ull, NX);
	T2(DIV_D, RNE, D(2.0), D(3.0), 0x3fe5555555555555ull, NX);
	T2(DIV_D, RUP, D(2.0), D(3.0), 0x3fe5555555555556ull, NX);
	T2(DIV_D, RNE, D(1.0), D(4.0), D(0.25), 0);

	T2(DIV_D, RNE, D(1.0), D_PZERO, D_INF, DZ);
	T2(DIV_D, RNE, D(-1.0), D_PZERO, D_NINF, DZ);
	T2(DIV_D, RNE, D(1.0), D_NZERO, D_NINF, DZ);
	T2(DIV_S, RNE, S(1.0f), S_PZERO, S_INF, DZ);
	T2(DIV_D, RNE, D_PZERO, D_PZERO, D_QNAN, NV);
	T2(DIV_D, RNE, D_INF, D_INF, D_QNAN, NV);
	T2(DIV_D, RNE, D_INF, D_PZERO, D_INF, 0);
	T2(DIV_D, RNE, D_PZERO, D_INF, D_PZERO, 0);
	T2(DIV_D, RNE, D(-1.0), D_INF, D_NZERO, 0);

	/* 5 * 2^-149 / 2: a tie in the subnormal range */
	T2(DIV_S, RNE, SB(0x00000005u), S(2.0f), SB(0x00000002u), UF | NX);
	T2(DIV_S, RMM, SB(0x00000005u), S(2.0f), SB(0x00000003u), UF | NX);
	T2(DIV_S, RUP, SB(0x00000005u), S(2.0f), SB(0x00000003u), UF | NX);
	T2(DIV_S, RTZ, SB(0x00000005u), S(2.0f), SB(0x00000002u), UF | NX);
	T2(DIV_D, RNE, D_MAX, D(0.5), D_INF, OF | NX);
	T2(DIV_D, RNE, D(0x1p-1022), D(0x1p52), 0x1ull, 0);
	/* 2^-1022 / 3 = (2^52 / 3) * 2^-1074, 2^52 / 3 = 0x5555555555555.55 */
	T2(DIV_D, RNE, D(0x1p-1022), D(3.0), 0x0005555555555555ull, UF | NX);
	T2(DIV_D, RUP, D(0x1p-1022), D(3.0), 0x0005555555555556ull, UF | NX);
}

static void test_sqrt(void **state)
{
	T1(SQRT_S, RNE, S(4.0f), S(2.0f), 0);
	T1(SQRT_D, RNE, D(4.0), D(2.0), 0);
	T1(SQRT_D, RNE, D(2.0), 0x3ff6a09e667f3bcdull, NX);
	T1(SQRT_D, RMM, D(2.0), 0x3ff6a09e667f3bcdull, NX);
	T1(SQRT_D, RUP, D(2.0), 0x3ff6a09e667f3bcdull, NX);
	T1(SQRT_D, RTZ, D(2.0), 0x3ff6a09e667f3bccull, NX);
	T1(SQRT_D, RDN, D(2.0), 0x3ff6a09e667f3bccull, NX);
	T1(SQRT_S, RNE, S(2.0f), SB(0x3fb504f3u), NX);
	T1(SQRT_S, RTZ, S(2.0f), SB(0x3fb504f3u), NX);
	T1(SQRT_S, RUP, S(2.0f), SB(0x3fb504f4u), NX);
	T1(SQRT_S, RMM, S(2.0f), SB(0x3fb504f3u), NX);
	T1(SQRT_D, RNE, D_NZERO, D_NZERO, 0);
	T1(SQRT_S, RNE, S_NZERO, S_NZERO, 0);
	T1(SQRT_D, RNE, D(-1.0), D_QNAN, NV);
	T1(SQRT_D, RNE, D_NINF, D_QNAN, NV);
	T1(SQRT_S, RNE, SB(0x80000001u), S_QNAN, NV);
	T1(SQRT_D, RNE, D_INF, D_INF, 0);
	T1(SQRT_D, RNE, 0x7ff8000000000001ull, D_QNAN, 0);
	T1(SQRT_D, RNE, D_SNAN, D_QNAN, NV);
	T1(SQRT_D, RNE, 0x1ull, D(0x1p-537), 0);
	T1(SQRT_S, RNE, SB(0x00000002u), S(0x1p-74f), 0);
	/* sqrt(DBL_MAX) = 2^511 * (2 - 2^-53 - tiny): just under the tie */
	T1(SQRT_D, RNE, D_MAX, 0x5fefffffffffffffull, NX);
}

static void test_fma(void **state)
{
	T3(MADD_S, RNE, S(2.0f), S(3.0f), S(4.0f), S(10.0f), 0);
	T3(MSUB_S, RNE, S(2.0f), S(3.0f), S(4.0f), S(2.0f), 0);
	T3(NMSUB_S, RNE, S(2.0f), S(3.0f), S(4.0f), S(-2.0f), 0);
	T3(NMADD_S, RNE, S(2.0f), S(3.0f), S(4.0f), S(-10.0f), 0);
	T3(MADD_D, RNE, D(2.0), D(3.0), D(4.0), D(10.0), 0);
	T3(MSUB_D, RNE, D(2.0), D(3.0), D(4.0), D(2.0), 0);
	T3(NMSUB_D, RNE, D(2.0), D(3.0), D(4.0), D(-2.0), 0);
	T3(NMADD_D, RNE, D(2.0), D(3.0), D(4.0), D(-10.0), 0);

	/* inf * 0 is invalid even with a quiet NaN addend */
	T3(MADD_D, RNE, D_INF, D_PZERO, D_QNAN, D_QNAN, NV);
	T3(MADD_D, RNE, D_PZERO, D_NINF, D_QNAN, D_QNAN, NV);
	T3(NMADD_D, RNE, D_INF, D_PZERO, D_QNAN, D_QNAN, NV);
	T3(MADD_S, RNE, S_INF, S_PZERO, S_QNAN, S_QNAN, NV);
	T3(MSUB_S, RNE, S_PZERO, S_INF, S_QNAN, S_QNAN, NV);
	T3(MADD_S, RMM, S_INF, S_PZERO, S_QNAN, S_QNAN, NV);
	T3(MADD_D, RNE, D_INF, D_PZERO, D(1.0), D_QNAN, NV);
	T3(MADD_D, RNE, D_QNAN, D(1.0), D(1.0), D_QNAN, 0);
	T3(MADD_D, RNE, D_SNAN, D(1.0), D(1.0), D_QNAN, NV);
	T3(MADD_D, RNE, D(1.0), D(1.0), D_SNAN, D_QNAN, NV);
	T3(MADD_D, RNE, D(1.0), D(1.0), D_QNAN, D_QNAN, 0);
	T3(MADD_D, RNE, D_INF, D(1.0), D_NINF, D_QNAN, NV);
	T3(MSUB_D, RNE, D_INF, D(1.0), D_INF, D_QNAN, NV);
	T3(MADD_D, RNE, D_INF, D(1.0), D_INF, D_INF, 0);
	T3(NMADD_D, RNE, D_INF, D(1.0), D_INF, D_NINF, 0);
	T3(MADD_D, RNE, D(2.0), D(3.0), D_NINF, D_NINF, 0);

	/* exact zeros: x*y + (-x*y) is +0, but -0 in RDN */
	T3(MADD_D, RNE, D(2.0), D(3.0), D(-6.0), D_PZERO, 0);
	T3(MADD_D, RDN, D(2.0), D(3.0), D(-6.0), D_NZERO, 0);
	T3(MADD_D, RUP, D(2.0), D(3.0), D(-6.0), D_PZERO, 0);
	T3(MADD_D, RMM, D(2.0), D(3.0), D(-6.0), D_PZERO, 0);
	T3(MADD_S, RDN, S(2.0f), S(3.0f), S(-6.0f), S_NZERO, 0);
	T3(NMSUB_D, RNE, D(2.0), D(3.0), D(6.0), D_PZERO, 0);
	T3(NMSUB_D, RDN, D(2.0), D(3.0), D(6.0), D_NZERO, 0);
	T3(MADD_D, RNE, D_PZERO, D(5.0), D_NZERO, D_PZERO, 0);
	T3(MADD_D, RDN, D_PZERO, D(5.0), D_NZERO, D_NZERO, 0);
	T3(MADD_D, RNE, D_NZERO, D(5.0), D_NZERO, D_NZERO, 0);
	/* fnmadd is -(a*b) - c: -0 - (+0) = -0; fnmsub -0 + +0 = +0 */
	T3(NMADD_D, RNE, D_PZERO, D(5.0), D_PZERO, D_NZERO, 0);
	T3(NMSUB_D, RNE, D_PZERO, D(5.0), D_PZERO, D_PZERO, 0);
	T3(NMSUB_D, RDN, D_PZERO, D(5.0), D_PZERO, D_NZERO, 0);
	T3(MSUB_D, RNE, D_PZERO, D(5.0), D_PZERO, D_PZERO, 0);
	T3(MSUB_D, RDN, D_PZERO, D(5.0), D_NZERO, D_PZERO, 0);
	T3(NMADD_S, RNE, S_PZERO, S(5.0f), S_PZERO, S_NZERO, 0);

	/* one rounding: (1 + 2^-52)(1 - 2^-52) - 1 = -2^-104 exactly */
	T3(MADD_D, RNE, 0x3ff0000000000001ull, 0x3feffffffffffffeull, D(-1.0), D(-0x1p-104), 0);
	T3(MADD_S, RNE, SB(0x3f800001u), SB(0x3f7ffffeu), S(-1.0f), S(-0x1p-46f), 0);
	/* 2^24 + 1 and 2^53 + 1 ties through the fused path */
	T3(MADD_S, RNE, S(0x1p24f), S(1.0f), S(1.0f), SB(0x4b800000u), NX);
	T3(MADD_S, RMM, S(0x1p24f), S(1.0f), S(1.0f), SB(0x4b800001u), NX);
	T3(MADD_D, RNE, D(0x1p53), D(1.0), D(1.0), 0x4340000000000000ull, NX);
	T3(MADD_D, RMM, D(0x1p53), D(1.0), D(1.0), 0x4340000000000001ull, NX);
	/* 1 + 2^-52 + 2^-53: tie between odd 1 + 2^-52 and even 1 + 2^-51 */
	T3(MADD_D, RNE, 0x3ff0000000000001ull, D(1.0), D(0x1p-53), 0x3ff0000000000002ull, NX);
	T3(MADD_D, RTZ, 0x3ff0000000000001ull, D(1.0), D(0x1p-53), 0x3ff0000000000001ull, NX);
	/* no intermediate overflow */
	T3(MADD_D, RNE, D_MAX, D(2.0), 0xffefffffffffffffull, D_MAX, 0);
	T3(MADD_D, RNE, D_MAX, D(2.0), D_PZERO, D_INF, OF | NX);
	T3(MADD_D, RNE, D_MAX, D(1.0), D_MAX, D_INF, OF | NX);
	T3(MADD_D, RTZ, D_MAX, D(1.0), D_MAX, D_MAX, OF | NX);
	/* underflow: 2^-150 */
	T3(MADD_S, RNE, S(0x1p-100f), S(0x1p-50f), S_PZERO, S_PZERO, UF | NX);
	T3(MADD_S, RMM, S(0x1p-100f), S(0x1p-50f), S_PZERO, SB(0x00000001u), UF | NX);
	/* far-apart operands */
	T3(MADD_D, RNE, D(1.0), D(1.0), D(0x1p-200), D(1.0), NX);
	T3(MADD_D, RUP, D(1.0), D(1.0), D(0x1p-200), 0x3ff0000000000001ull, NX);
	T3(MADD_D, RTZ, D(1.0), D(1.0), D(0x1p-200), D(1.0), NX);
	T3(MADD_D, RNE, D(1.0), D(1.0), D(-0x1p-200), D(1.0), NX);
	T3(MADD_D, RTZ, D(1.0), D(1.0), D(-0x1p-200), 0x3fefffffffffffffull, NX);
	T3(MADD_D, RDN, D(1.0), D(1.0), D(-0x1p-200), 0x3fefffffffffffffull, NX);
	T3(MADD_D, RMM, D(1.0), D(1.0), D(-0x1p-200), D(1.0), NX);
	T3(MADD_D, RNE, D(0x1p-600), D(0x1p-600), D(1.0), D(1.0), NX);
	T3(MADD_D, RUP, D(0x1p-600), D(0x1p-600), D(1.0), 0x3ff0000000000001ull, NX);
	T3(MSUB_D, RNE, D(0x1p-600), D(0x1p-600), D(1.0), D(-1.0), NX);
	T3(MSUB_D, RUP, D(0x1p-600), D(0x1p-600), D(1.0), 0xbfefffffffffffffull, NX);
	T3(MSUB_D, RDN, D(0x1p-600), D(0x1p-600), D(1.0), 0xbff0000000000000ull, NX);
	T3(MSUB_D, RTZ, D(0x1p-600), D(0x1p-600), D(1.0), 0xbfefffffffffffffull, NX);
}

static void test_nan_boxing(void **state)
{
	T2(ADD_S, RNE, S(1.0f), S(1.0f), 0xffffffff40000000ull, 0);
	T2(ADD_S, RNE, UNBOXED_ONE, S(1.0f), S_QNAN, 0);
	T2(ADD_S, RNE, 0xfffffffe3f800000ull, S(1.0f), S_QNAN, 0);
	T2(MUL_S, RNE, S(2.0f), 0x7fffffff40400000ull, S_QNAN, 0);
	T1(SQRT_S, RNE, 0x0000000040800000ull, S_QNAN, 0);
	T3(MADD_S, RNE, S(1.0f), S(1.0f), UNBOXED_ONE, S_QNAN, 0);
	T3(MADD_S, RNE, S_INF, S_PZERO, UNBOXED_ONE, S_QNAN, NV);
	T1(CVT_D_S, RNE, UNBOXED_ONE, D_QNAN, 0);
	T1(CVT_W_S, RNE, UNBOXED_ONE, 0x7fffffffull, NV);
	T1(CLASS_S, RNE, UNBOXED_ONE, 0x200, 0);
	T2(EQ_S, RNE, UNBOXED_ONE, UNBOXED_ONE, 0, 0);
	T2(LT_S, RNE, UNBOXED_ONE, S(1.0f), 0, NV);
	T2(MIN_S, RNE, UNBOXED_ONE, S(2.0f), S(2.0f), 0);
	T2(MAX_S, RNE, S(-2.0f), UNBOXED_ONE, S(-2.0f), 0);

	/* sign injection reads an unboxed operand as the canonical NaN */
	T2(SGNJ_S, RNE, UNBOXED_ONE, S(-1.0f), SB(0xffc00000u), 0);
	T2(SGNJ_S, RNE, S(1.0f), UNBOXED_ONE, S(1.0f), 0);
	T2(SGNJN_S, RNE, S(1.0f), UNBOXED_ONE, S(-1.0f), 0);
	T2(SGNJX_S, RNE, S(-1.0f), UNBOXED_ONE, S(-1.0f), 0);

	/* fmv moves bits: no unboxing check, sign-extends, boxes */
	T1(MV_X_W, RNE, 0x0000000080000000ull, 0xffffffff80000000ull, 0);
	T1(MV_X_W, RNE, 0x123456787fffffffull, 0x000000007fffffffull, 0);
	T1(MV_X_W, RNE, 0xffffffff3f800000ull, 0x000000003f800000ull, 0);
	T1(MV_X_W, RNE, S_SNAN, 0x000000007f800001ull, 0);
	T1(MV_W_X, RNE, 0x1234567880000000ull, 0xffffffff80000000ull, 0);
	T1(MV_W_X, RNE, 0x000000003f800000ull, S(1.0f), 0);
	T1(MV_X_D, RNE, D_SNAN, D_SNAN, 0);
	T1(MV_D_X, RNE, 0xfff0000000000123ull, 0xfff0000000000123ull, 0);

	/* every single result written to an FP register is boxed */
	T1(CVT_S_W, RNE, 1, S(1.0f), 0);
	T1(CVT_S_D, RNE, D(-0.0), S_NZERO, 0);
	T2(MIN_S, RNE, S(-0.0f), S(0.0f), S_NZERO, 0);
}

static void test_canonical_nan(void **state)
{
	T2(ADD_D, RNE, 0x7ff8000000000123ull, D(1.0), D_QNAN, 0);
	T2(ADD_D, RNE, 0xfff8000000000000ull, D(1.0), D_QNAN, 0);
	T2(MUL_D, RNE, D_SNAN, D(1.0), D_QNAN, NV);
	T2(MUL_D, RNE, D(1.0), 0xfff4000000000000ull, D_QNAN, NV);
	T2(DIV_D, RNE, D_PZERO, D_PZERO, D_QNAN, NV);
	T2(DIV_D, RMM, D_PZERO, D_PZERO, D_QNAN, NV);
	T2(DIV_S, RNE, S_PZERO, S_PZERO, S_QNAN, NV);
	T1(SQRT_S, RNE, S(-1.0f), S_QNAN, NV);
	T2(ADD_S, RNE, SB(0xffc00001u), S(1.0f), S_QNAN, 0);
	T2(SUB_S, RUP, SB(0x7f800001u), S(1.0f), S_QNAN, NV);
	T3(NMADD_S, RNE, SB(0xffc00000u), S(1.0f), S(1.0f), S_QNAN, 0);
	T3(MADD_D, RDN, 0xfff8000000000001ull, D(1.0), D(1.0), D_QNAN, 0);
	T2(MIN_D, RNE, 0x7ff8000000000123ull, 0xfff8000000000000ull, D_QNAN, 0);

	/* sign injection is not arithmetic: payloads survive */
	T2(SGNJ_D, RNE, 0x7ff8000000000123ull, D(-1.0), 0xfff8000000000123ull, 0);
	T2(SGNJN_D, RNE, D_SNAN, D_SNAN, 0xfff0000000000001ull, 0);
	T2(SGNJX_D, RNE, 0xfff0000000000001ull, D(-1.0), D_SNAN, 0);
	T2(SGNJ_S, RNE, SB(0x7fc00123u), S(-1.0f), SB(0xffc00123u), 0);
	T2(SGNJX_S, RNE, S(-2.0f), S(-3.0f), S(2.0f), 0);
	T2(SGNJN_S, RNE, S(-2.0f), S(-3.0f), S(2.0f), 0);
	T2(SGNJ_D, RNE, D(2.0), D_NZERO, D(-2.0), 0);
}

static void test_compare(void **state)
{
	T2(EQ_S, RNE, S(1.0f), S(1.0f), 1, 0);
	T2(EQ_S, RNE, S(1.0f), S(2.0f), 0, 0);
	T2(EQ_S, RNE, S_PZERO, S_NZERO, 1, 0);
	T2(LT_S, RNE, S_NZERO, S_PZERO, 0, 0);
	T2(LE_S, RNE, S_NZERO, S_PZERO, 1, 0);
	T2(LT_S, RNE, S(1.0f), S(2.0f), 1, 0);
	T2(LT_S, RNE, S(2.0f), S(1.0f), 0, 0);
	T2(LE_S, RNE, S(2.0f), S(2.0f), 1, 0);
	T2(LT_S, RNE, S_NINF, S_INF, 1, 0);
	T2(LT_S, RNE, S(-2.0f), S(-1.0f), 1, 0);
	T2(LT_S, RNE, S(-1.0f), S(-2.0f), 0, 0);
	T2(LE_S, RNE, SB(0x80000001u), S_PZERO, 1, 0);

	/* feq is quiet, flt/fle signal on any NaN */
	T2(EQ_S, RNE, S_QNAN, S(1.0f), 0, 0);
	T2(EQ_S, RNE, S(1.0f), S_QNAN, 0, 0);
	T2(EQ_S, RNE, S_QNAN, S_QNAN, 0, 0);
	T2(EQ_S, RNE, S_SNAN, S(1.0f), 0, NV);
	T2(LT_S, RNE, S_QNAN, S(1.0f), 0, NV);
	T2(LT_S, RNE, S(1.0f), S_QNAN, 0, NV);
	T2(LE_S, RNE, S_QNAN, S_QNAN, 0, NV);
	T2(LE_S, RNE, S_SNAN, S(1.0f), 0, NV);

	T2(EQ_D, RNE, D_SNAN, D_SNAN, 0, NV);
	T2(EQ_D, RNE, D_QNAN, D(1.0), 0, 0);
	T2(EQ_D, RNE, D_NZERO, D_PZERO, 1, 0);
	T2(LT_D, RNE, D(1.0), D_QNAN, 0, NV);
	T2(LE_D, RNE, D_QNAN, D(1.0), 0, NV);
	T2(LE_D, RNE, D_NZERO, D_PZERO, 1, 0);
	T2(LT_D, RNE, 0x1ull, 0x0010000000000000ull, 1, 0);
	T2(LT_D, RNE, D(-1.0), D_NZERO, 1, 0);
	T2(LE_D, RNE, D_INF, D_INF, 1, 0);
	T2(LT_D, RNE, D_INF, D_INF, 0, 0);
	T2(LT_D, RNE, D(-3.0), D(-2.5), 1, 0);
}

static void test_minmax(void **state)
{
	T2(MIN_S, RNE, S(1.0f), S(2.0f), S(1.0f), 0);
	T2(MAX_S, RNE, S(1.0f), S(2.0f), S(2.0f), 0);
	T2(MIN_S, RNE, S(-1.0f), S(2.0f), S(-1.0f), 0);
	T2(MAX_S, RNE, S_NINF, S(-1.0f), S(-1.0f), 0);
	T2(MIN_S, RNE, S_QNAN, S(1.0f), S(1.0f), 0);
	T2(MIN_S, RNE, S(1.0f), S_QNAN, S(1.0f), 0);
	T2(MAX_S, RNE, S_QNAN, S(-1.0f), S(-1.0f), 0);
	T2(MIN_S, RNE, S_SNAN, S(1.0f), S(1.0f), NV);
	T2(MAX_S, RNE, S(1.0f), S_SNAN, S(1.0f), NV);
	T2(MIN_S, RNE, S_QNAN, S_QNAN, S_QNAN, 0);
	T2(MIN_S, RNE, S_SNAN, S_QNAN, S_QNAN, NV);
	T2(MAX_S, RNE, SB(0xffc00001u), S_QNAN, S_QNAN, 0);
	T2(MIN_S, RNE, S_NZERO, S_PZERO, S_NZERO, 0);
	T2(MIN_S, RNE, S_PZERO, S_NZERO, S_NZERO, 0);
	T2(MAX_S, RNE, S_NZERO, S_PZERO, S_PZERO, 0);
	T2(MAX_S, RNE, S_PZERO, S_NZERO, S_PZERO, 0);
	T2(MIN_S, RNE, S_NZERO, S_NZERO, S_NZERO, 0);

	T2(MIN_D, RNE, D_NZERO, D_PZERO, D_NZERO, 0);
	T2(MAX_D, RNE, D_PZERO, D_NZERO, D_PZERO, 0);
	T2(MIN_D, RNE, D_SNAN, D(3.0), D(3.0), NV);
	T2(MAX_D, RNE, D_QNAN, D_QNAN, D_QNAN, 0);
	T2(MAX_D, RNE, D_SNAN, D_SNAN, D_QNAN, NV);
	T2(MAX_D, RNE, 0x8000000000000001ull, D_NZERO, D_NZERO, 0);
	T2(MIN_D, RNE, 0x8000000000000001ull, D_NZERO, 0x8000000000000001ull, 0);
	T2(MAX_D, RNE, D_INF, D_MAX, D_INF, 0);
	T2(MIN_D, RNE, D_NINF, D_QNAN, D_NINF, 0);
	T2(MIN_D, RNE, 0x7ff8000000000123ull, D(1.0), D(1.0), 0);
	T2(MAX_D, RNE, D(-2.0), D(-3.0), D(-2.0), 0);
}

static void test_fclass(void **state)
{
	T1(CLASS_S, RNE, S_NINF, 0x001, 0);
	T1(CLASS_S, RNE, S(-1.0f), 0x002, 0);
	T1(CLASS_S, RNE, SB(0xff7fffffu), 0x002, 0);
	T1(CLASS_S, RNE, SB(0x80000001u), 0x004, 0);
	T1(CLASS_S, RNE, SB(0x807fffffu), 0x004, 0);
	T1(CLASS_S, RNE, S_NZERO, 0x008, 0);
	T1(CLASS_S, RNE, S_PZERO, 0x010, 0);
	T1(CLASS_S, RNE, SB(0x00000001u), 0x020, 0);
	T1(CLASS_S, RNE, SB(0x007fffffu), 0x020, 0);
	T1(CLASS_S, RNE, SB(0x00800000u), 0x040, 0);
	T1(CLASS_S, RNE, S_MAX, 0x040, 0);
	T1(CLASS_S, RNE, S_INF, 0x080, 0);
	T1(CLASS_S, RNE, S_SNAN, 0x100, 0);
	T1(CLASS_S, RNE, SB(0x7fbfffffu), 0x100, 0);
	T1(CLASS_S, RNE, SB(0xff800001u), 0x100, 0);
	T1(CLASS_S, RNE, S_QNAN, 0x200, 0);
	T1(CLASS_S, RNE, SB(0xffc00000u), 0x200, 0);

	T1(CLASS_D, RNE, D_NINF, 0x001, 0);
	T1(CLASS_D, RNE, D(-1.0), 0x002, 0);
	T1(CLASS_D, RNE, 0x8000000000000001ull, 0x004, 0);
	T1(CLASS_D, RNE, 0x800fffffffffffffull, 0x004, 0);
	T1(CLASS_D, RNE, D_NZERO, 0x008, 0);
	T1(CLASS_D, RNE, D_PZERO, 0x010, 0);
	T1(CLASS_D, RNE, 0x000fffffffffffffull, 0x020, 0);
	T1(CLASS_D, RNE, 0x0010000000000000ull, 0x040, 0);
	T1(CLASS_D, RNE, D_INF, 0x080, 0);
	T1(CLASS_D, RNE, D_SNAN, 0x100, 0);
	T1(CLASS_D, RNE, 0x7ff7ffffffffffffull, 0x100, 0);
	T1(CLASS_D, RNE, D_QNAN, 0x200, 0);
	T1(CLASS_D, RNE, 0xffffffffffffffffull, 0x200, 0);
}

static void test_cvt_to_int(void **state)
{
	const uint64_t W_MAX = 0x7fffffffull, W_MIN = 0xffffffff80000000ull;
	const uint64_t L_MAX = 0x7fffffffffffffffull, L_MIN = 0x8000000000000000ull;
	const uint64_t ONES = 0xffffffffffffffffull;

	T1(CVT_W_S, RNE, S(1.5f), 2, NX);
	T1(CVT_W_S, RTZ, S(1.5f), 1, NX);
	T1(CVT_W_S, RDN, S(1.5f), 1, NX);
	T1(CVT_W_S, RUP, S(1.5f), 2, NX);
	T1(CVT_W_S, RMM, S(1.5f), 2, NX);
	T1(CVT_W_S, RNE, S(2.5f), 2, NX);
	T1(CVT_W_S, RMM, S(2.5f), 3, NX);
	T1(CVT_W_S, RUP, S(2.5f), 3, NX);
	T1(CVT_W_S, RNE, S(-2.5f), (uint64_t)-2, NX);
	T1(CVT_W_S, RMM, S(-2.5f), (uint64_t)-3, NX);
	T1(CVT_W_S, RDN, S(-2.5f), (uint64_t)-3, NX);
	T1(CVT_W_S, RUP, S(-2.5f), (uint64_t)-2, NX);
	T1(CVT_W_S, RTZ, S(-2.5f), (uint64_t)-2, NX);
	T1(CVT_W_S, RNE, S(0.5f), 0, NX);
	T1(CVT_W_S, RMM, S(0.5f), 1, NX);
	T1(CVT_W_S, RNE, S(-0.5f), 0, NX);
	T1(CVT_W_S, RMM, S(-0.5f), (uint64_t)-1, NX);
	T1(CVT_W_S, RNE, S_QNAN, W_MAX, NV);
	T1(CVT_W_S, RNE, S_SNAN, W_MAX, NV);
	T1(CVT_W_S, RNE, SB(0xffc00000u), W_MAX, NV);
	T1(CVT_W_S, RNE, S_INF, W_MAX, NV);
	T1(CVT_W_S, RNE, S_NINF, W_MIN, NV);
	T1(CVT_W_S, RNE, S(0x1p31f), W_MAX, NV);
	T1(CVT_W_S, RNE, S(-0x1p31f), W_MIN, 0);
	T1(CVT_W_S, RNE, SB(0x4effffffu), 0x7fffff80ull, 0);
	T1(CVT_W_S, RNE, SB(0xcf000001u), W_MIN, NV);
	T1(CVT_W_S, RNE, S(1e10f), W_MAX, NV);
	T1(CVT_W_S, RNE, S_NZERO, 0, 0);
	T1(CVT_W_S, RNE, SB(0x00000001u), 0, NX);
	T1(CVT_W_S, RUP, SB(0x00000001u), 1, NX);
	T1(CVT_W_S, RDN, SB(0x80000001u), (uint64_t)-1, NX);
	T1(CVT_W_S, RTZ, SB(0x80000001u), 0, NX);

	/* -2^31 - 0.5 and 2^31 - 0.5: in range or not depending on rm */
	T1(CVT_W_D, RNE, D(-0x1.00000001p31), W_MIN, NX);
	T1(CVT_W_D, RUP, D(-0x1.00000001p31), W_MIN, NX);
	T1(CVT_W_D, RTZ, D(-0x1.00000001p31), W_MIN, NX);
	T1(CVT_W_D, RMM, D(-0x1.00000001p31), W_MIN, NV);
	T1(CVT_W_D, RDN, D(-0x1.00000001p31), W_MIN, NV);
	T1(CVT_W_D, RNE, D(0x1.fffffffep30), W_MAX, NV);
	T1(CVT_W_D, RTZ, D(0x1.fffffffep30), W_MAX, NX);
	T1(CVT_W_D, RDN, D(0x1.fffffffep30), W_MAX, NX);
	T1(CVT_W_D, RUP, D(0x1.fffffffep30), W_MAX, NV);
	T1(CVT_W_D, RNE, D(2147483647.0), W_MAX, 0);
	T1(CVT_W_D, RNE, D(-2147483649.0), W_MIN, NV);
	T1(CVT_W_D, RNE, D_QNAN, W_MAX, NV);
	T1(CVT_W_D, RNE, D(-7.0), (uint64_t)-7, 0);

	/* unsigned: a negative value is invalid only if it rounds below 0 */
	T1(CVT_WU_D, RTZ, D(-0.3), 0, NX);
	T1(CVT_WU_D, RNE, D(-0.3), 0, NX);
	T1(CVT_WU_D, RUP, D(-0.3), 0, NX);
	T1(CVT_WU_D, RMM, D(-0.3), 0, NX);
	T1(CVT_WU_D, RDN, D(-0.3), 0, NV);
	T1(CVT_WU_D, RNE, D(-0.5), 0, NX);
	T1(CVT_WU_D, RMM, D(-0.5), 0, NV);
	T1(CVT_WU_D, RNE, D(-1.0), 0, NV);
	T1(CVT_WU_D, RNE, D_NZERO, 0, 0);
	/* 32-bit results are sign-extended, unsigned ones too */
	T1(CVT_WU_D, RNE, D(3e9), 0xffffffffb2d05e00ull, 0);
	T1(CVT_WU_D, RNE, D(4294967295.0), ONES, 0);
	T1(CVT_WU_D, RNE, D(0x1p32), ONES, NV);
	T1(CVT_WU_D, RNE, D(0x1.ffffffffp31), ONES, NV);
	T1(CVT_WU_D, RTZ, D(0x1.ffffffffp31), ONES, NX);
	T1(CVT_WU_S, RNE, S_QNAN, ONES, NV);
	T1(CVT_WU_S, RNE, S_INF, ONES, NV);
	T1(CVT_WU_S, RNE, S_NINF, 0, NV);
	T1(CVT_WU_S, RNE, S(0x1p32f), ONES, NV);
	T1(CVT_WU_S, RNE, SB(0x4f7fffffu), 0xffffffffffffff00ull, 0);
	T1(CVT_WU_S, RNE, S(0x1p31f), 0xffffffff80000000ull, 0);
	T1(CVT_WU_S, RNE, S(7.0f), 7, 0);

	T1(CVT_L_D, RNE, D(0x1p63), L_MAX, NV);
	T1(CVT_L_D, RNE, D(-0x1p63), L_MIN, 0);
	T1(CVT_L_D, RNE, 0x43dfffffffffffffull, 0x7ffffffffffffc00ull, 0);
	T1(CVT_L_D, RNE, 0xc3e0000000000001ull, L_MIN, NV);
	T1(CVT_L_D, RNE, D_QNAN, L_MAX, NV);
	T1(CVT_L_D, RNE, D_INF, L_MAX, NV);
	T1(CVT_L_D, RNE, D_NINF, L_MIN, NV);
	T1(CVT_L_D, RNE, D(1e300), L_MAX, NV);
	T1(CVT_L_D, RNE, D(-1.5), (uint64_t)-2, NX);
	T1(CVT_L_D, RTZ, D(-1.5), (uint64_t)-1, NX);
	T1(CVT_L_D, RUP, D(0.1), 1, NX);
	T1(CVT_L_D, RUP, 0x1ull, 1, NX);
	T1(CVT_L_D, RDN, 0x8000000000000001ull, ONES, NX);
	T1(CVT_L_D, RNE, D(0x1.0000000000001p62), 0x4000000000000400ull, 0);

	T1(CVT_LU_D, RNE, D(0x1p64), ONES, NV);
	T1(CVT_LU_D, RNE, 0x43efffffffffffffull, 0xfffffffffffff800ull, 0);
	T1(CVT_LU_D, RNE, D(0x1p63), 0x8000000000000000ull, 0);
	T1(CVT_LU_D, RNE, D(-1.0), 0, NV);
	T1(CVT_LU_D, RTZ, D(-0.3), 0, NX);
	T1(CVT_LU_D, RNE, D_QNAN, ONES, NV);
	T1(CVT_LU_D, RNE, D_NINF, 0, NV);
	T1(CVT_LU_D, RNE, D_INF, ONES, NV);
	T1(CVT_LU_D, RNE, D(0.5), 0, NX);
	T1(CVT_LU_D, RNE, D(1.5), 2, NX);

	T1(CVT_L_S, RNE, S(0x1p63f), L_MAX, NV);
	T1(CVT_L_S, RNE, S(-0x1p63f), L_MIN, 0);
	T1(CVT_L_S, RNE, SB(0x5effffffu), 0x7fffff8000000000ull, 0);
	T1(CVT_L_S, RNE, S_SNAN, L_MAX, NV);
	T1(CVT_LU_S, RNE, S(0x1p64f), ONES, NV);
	T1(CVT_LU_S, RNE, SB(0x5f7fffffu), 0xffffff0000000000ull, 0);
	T1(CVT_LU_S, RNE, S(-1.0f), 0, NV);
	T1(CVT_LU_S, RNE, S_QNAN, ONES, NV);
}

static void test_cvt_from_int(void **state)
{
	T1(CVT_S_W, RNE, 16777217, SB(0x4b800000u), NX);
	T1(CVT_S_W, RMM, 16777217, SB(0x4b800001u), NX);
	T1(CVT_S_W, RUP, 16777217, SB(0x4b800001u), NX);
	T1(CVT_S_W, RTZ, 16777217, SB(0x4b800000u), NX);
	T1(CVT_S_W, RDN, 16777217, SB(0x4b800000u), NX);
	T1(CVT_S_W, RNE, (uint64_t)-16777217, SB(0xcb800000u), NX);
	T1(CVT_S_W, RDN, (uint64_t)-16777217, SB(0xcb800001u), NX);
	T1(CVT_S_W, RUP, (uint64_t)-16777217, SB(0xcb800000u), NX);
	T1(CVT_S_W, RMM, (uint64_t)-16777217, SB(0xcb800001u), NX);
	/* only bits 31:0 of the source count */
	T1(CVT_S_W, RNE, 0x0000000080000000ull, SB(0xcf000000u), 0);
	T1(CVT_S_W, RNE, 0x1234567800000001ull, S(1.0f), 0);
	T1(CVT_S_W, RNE, 0, S_PZERO, 0);
	T1(CVT_S_W, RNE, (uint64_t)-1, S(-1.0f), 0);
	T1(CVT_S_WU, RNE, 0xffffffffull, SB(0x4f800000u), NX);
	T1(CVT_S_WU, RTZ, 0xffffffffull, SB(0x4f7fffffu), NX);
	T1(CVT_S_WU, RUP, 0xffffffffull, SB(0x4f800000u), NX);
	T1(CVT_S_WU, RNE, 0xffffffffffffffffull, SB(0x4f800000u), NX);
	T1(CVT_S_L, RNE, 0x8000000000000000ull, SB(0xdf000000u), 0);
	T1(CVT_S_L, RNE, 0x7fffffffffffffffull, SB(0x5f000000u), NX);
	T1(CVT_S_L, RTZ, 0x7fffffffffffffffull, SB(0x5effffffu), NX);
	T1(CVT_S_L, RNE, (uint64_t)-1, S(-1.0f), 0);
	T1(CVT_S_LU, RNE, 0xffffffffffffffffull, SB(0x5f800000u), NX);
	T1(CVT_S_LU, RTZ, 0xffffffffffffffffull, SB(0x5f7fffffu), NX);
	T1(CVT_S_LU, RNE, 0x8000000000000000ull, SB(0x5f000000u), 0);

	T1(CVT_D_W, RNE, 0xffffffffull, D(-1.0), 0);
	T1(CVT_D_W, RNE, 0x80000000ull, D(-0x1p31), 0);
	T1(CVT_D_W, RNE, 0, D_PZERO, 0);
	T1(CVT_D_WU, RNE, 0xffffffffull, 0x41efffffffe00000ull, 0);
	T1(CVT_D_WU, RNE, 0xffffffff00000000ull, D_PZERO, 0);
	T1(CVT_D_L, RNE, (1ull << 53) + 1, 0x4340000000000000ull, NX);
	T1(CVT_D_L, RMM, (1ull << 53) + 1, 0x4340000000000001ull, NX);
	T1(CVT_D_L, RUP, (1ull << 53) + 1, 0x4340000000000001ull, NX);
	T1(CVT_D_L, RDN, (1ull << 53) + 1, 0x4340000000000000ull, NX);
	T1(CVT_D_L, RDN, -((1ull << 53) + 1), 0xc340000000000001ull, NX);
	T1(CVT_D_L, RNE, 0x8000000000000000ull, 0xc3e0000000000000ull, 0);
	T1(CVT_D_L, RNE, 0x7fffffffffffffffull, 0x43e0000000000000ull, NX);
	T1(CVT_D_L, RTZ, 0x7fffffffffffffffull, 0x43dfffffffffffffull, NX);
	T1(CVT_D_LU, RNE, 0xffffffffffffffffull, 0x43f0000000000000ull, NX);
	T1(CVT_D_LU, RTZ, 0xffffffffffffffffull, 0x43efffffffffffffull, NX);
	T1(CVT_D_LU, RNE, 0x8000000000000000ull, 0x43e0000000000000ull, 0);
	/* 2^53 + 3: between 2^53 + 2 (odd) and 2^53 + 4 (even) */
	T1(CVT_D_LU, RNE, (1ull << 53) + 3, 0x4340000000000002ull, NX);
	T1(CVT_D_LU, RMM, (1ull << 53) + 3, 0x4340000000000002ull, NX);
	T1(CVT_D_LU, RTZ, (1ull << 53) + 3, 0x4340000000000001ull, NX);
}

static void test_cvt_fp(void **state)
{
	T1(CVT_S_D, RNE, 0x3fd5555555555555ull, SB(0x3eaaaaabu), NX);
	T1(CVT_S_D, RTZ, 0x3fd5555555555555ull, SB(0x3eaaaaaau), NX);
	T1(CVT_S_D, RUP, 0x3fd5555555555555ull, SB(0x3eaaaaabu), NX);
	/* 1 + 2^-24: a tie */
	T1(CVT_S_D, RNE, D(0x1.000001p0), S(1.0f), NX);
	T1(CVT_S_D, RMM, D(0x1.000001p0), SB(0x3f800001u), NX);
	T1(CVT_S_D, RUP, D(0x1.000001p0), SB(0x3f800001u), NX);
	T1(CVT_S_D, RDN, D(0x1.000001p0), S(1.0f), NX);
	T1(CVT_S_D, RNE, D(0x1.000003p0), SB(0x3f800002u), NX);
	T1(CVT_S_D, RMM, D(0x1.000003p0), SB(0x3f800002u), NX);
	T1(CVT_S_D, RTZ, D(0x1.000003p0), SB(0x3f800001u), NX);
	/* overflow */
	T1(CVT_S_D, RNE, D_MAX, S_INF, OF | NX);
	T1(CVT_S_D, RTZ, D_MAX, S_MAX, OF | NX);
	T1(CVT_S_D, RDN, D_MAX, S_MAX, OF | NX);
	T1(CVT_S_D, RUP, D_MAX, S_INF, OF | NX);
	T1(CVT_S_D, RDN, 0xffefffffffffffffull, S_NINF, OF | NX);
	T1(CVT_S_D, RNE, D(0x1.fffffep127), S_MAX, 0);
	/* FLT_MAX + half an ulp */
	T1(CVT_S_D, RNE, D(0x1.ffffffp127), S_INF, OF | NX);
	T1(CVT_S_D, RMM, D(0x1.ffffffp127), S_INF, OF | NX);
	T1(CVT_S_D, RTZ, D(0x1.ffffffp127), S_MAX, NX);
	/* underflow */
	T1(CVT_S_D, RNE, D(0x1p-166), S_PZERO, UF | NX);
	T1(CVT_S_D, RUP, D(0x1p-166), SB(0x00000001u), UF | NX);
	T1(CVT_S_D, RDN, D(-0x1p-166), SB(0x80000001u), UF | NX);
	T1(CVT_S_D, RNE, D(0x1p-149), SB(0x00000001u), 0);
	T1(CVT_S_D, RNE, D(0x1p-126), SB(0x00800000u), 0);
	T1(CVT_S_D, RNE, D(0x1.8p-149), SB(0x00000002u), UF | NX);
	T1(CVT_S_D, RMM, D(0x1.8p-149), SB(0x00000002u), UF | NX);
	T1(CVT_S_D, RTZ, D(0x1.8p-149), SB(0x00000001u), UF | NX);
	T1(CVT_S_D, RNE, D(0x1.4p-148), SB(0x00000002u), UF | NX);
	T1(CVT_S_D, RMM, D(0x1.4p-148), SB(0x00000003u), UF | NX);
	T1(CVT_S_D, RNE, D(0x1.fffffep-127), SB(0x00800000u), UF | NX);
	/* specials */
	T1(CVT_S_D, RNE, D_NZERO, S_NZERO, 0);
	T1(CVT_S_D, RNE, D_INF, S_INF, 0);
	T1(CVT_S_D, RNE, D_NINF, S_NINF, 0);
	T1(CVT_S_D, RNE, D_SNAN, S_QNAN, NV);
	T1(CVT_S_D, RNE, 0x7ff8000000000123ull, S_QNAN, 0);
	T1(CVT_S_D, RNE, 0xfff8000000000000ull, S_QNAN, 0);

	T1(CVT_D_S, RNE, SB(0x00000001u), D(0x1p-149), 0);
	T1(CVT_D_S, RNE, SB(0x3eaaaaabu), 0x3fd5555560000000ull, 0);
	T1(CVT_D_S, RNE, S_MAX, D(0x1.fffffep127), 0);
	T1(CVT_D_S, RNE, SB(0x807fffffu), D(-0x1.fffffcp-127), 0);
	T1(CVT_D_S, RNE, S_NZERO, D_NZERO, 0);
	T1(CVT_D_S, RNE, S_NINF, D_NINF, 0);
	T1(CVT_D_S, RNE, S_SNAN, D_QNAN, NV);
	T1(CVT_D_S, RNE, SB(0xffc00123u), D_QNAN, 0);
}

#if defined(__x86_64__)
/* The rounding control and exception masks of the host's MXCSR. */
static unsigned host_mxcsr_control(void)
{
	return __builtin_ia32_stmxcsr() & ~0x3fu;
}
#endif

/* Flags accumulate into *fflags; the host's rounding mode and sticky
 * flags do not leak into guest results, and every op leaves the host in
 * round-to-nearest. */
static void test_flags_and_host_state(void **state)
{
	uint32_t fl = NX | DZ;
	uint64_t r;

	r = fpu_exec(FPU_DIV_D, D_PZERO, D_PZERO, 0, RNE, &fl);
	assert_int_equal(r, D_QNAN);
	assert_int_equal(fl, NX | DZ | NV);
	r = fpu_exec(FPU_ADD_D, D(1.0), D(1.0), 0, RNE, &fl);
	assert_int_equal(r, D(2.0));
	assert_int_equal(fl, NX | DZ | NV);

	assert_int_equal(fesetround(FE_TONEAREST), 0);
	T2(DIV_D, RUP, D(1.0), D_PZERO, D_INF, DZ);
	T2(MUL_D, RTZ, D_MAX, D(2.0), D_MAX, OF | NX);
	T2(MUL_S, RDN, SB(0x00000001u), S(0.5f), S_PZERO, UF | NX);
	T3(MADD_D, RUP, D(1.0), D(1.0), D(0x1p-200), 0x3ff0000000000001ull, NX);
	T2(ADD_S, RMM, S(0x1p24f), S(1.0f), SB(0x4b800001u), NX);
	assert_int_equal(fegetround(), FE_TONEAREST);
#if defined(__x86_64__)
	assert_int_equal(host_mxcsr_control(), 0x1f80);
#endif

	/* a host in another mode still gets RNE results when asking for RNE */
	assert_int_equal(fesetround(FE_UPWARD), 0);
	T2(ADD_D, RNE, D(1.0), D(0x1p-60), D(1.0), NX);
	T2(DIV_S, RNE, S(1.0f), S(3.0f), SB(0x3eaaaaabu), NX);
	T3(MADD_S, RNE, S(1.0f), S(0x1p-30f), S(1.0f), S(1.0f), NX);
	assert_int_equal(fesetround(FE_TONEAREST), 0);

	/* stale host flags are not reported as guest flags */
	feraiseexcept(FE_INEXACT | FE_INVALID | FE_OVERFLOW);
	T2(ADD_D, RNE, D(1.0), D(2.0), D(3.0), 0);
	feraiseexcept(FE_INEXACT | FE_INVALID | FE_OVERFLOW);
	T2(MUL_S, RUP, S(1.5f), S(2.0f), S(3.0f), 0);
	feraiseexcept(FE_DIVBYZERO | FE_UNDERFLOW);
	T1(SQRT_D, RTZ, D(4.0), D(2.0), 0);
#if defined(__x86_64__)
	assert_int_equal(host_mxcsr_control(), 0x1f80);
#endif
	feclearexcept(FE_ALL_EXCEPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_op_info),
		cmocka_unit_test(test_add_sub),
		cmocka_unit_test(test_mul),
		cmocka_unit_test(test_div),
		cmocka_unit_test(test_sqrt),
		cmocka_unit_test(test_fma),
		cmocka_unit_test(test_nan_boxing),
		cmocka_unit_test(test_canonical_nan),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_minmax),
		cmocka_unit_test(test_fclass),
		cmocka_unit_test(test_cvt_to_int),
		cmocka_unit_test(test_cvt_from_int),
		cmocka_unit_test(test_cvt_fp),
		cmocka_unit_test(test_flags_and_host_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
