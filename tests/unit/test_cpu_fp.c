/* test_cpu_fp.c: the F and D extensions as the interpreter sees them:
 * FP loads and stores (32- and 16-bit forms), NaN boxing by flw and fmv,
 * mstatus.FS (off = illegal, any write = dirty, SD), the fcsr/frm/fflags
 * CSRs, rounding-mode resolution (dynamic, static, invalid = illegal),
 * flag accumulation, and the R4 and FP-to-integer register paths.
 *
 * The IEEE arithmetic itself is fpu.c's and has its own tests; the
 * operations used here are ones whose results are exact or obvious.
 * Rules: unprivileged manual (20191213), chapters 11 (F), 12 (D), 16 (C);
 * privileged manual (20211203), 3.1.6.6 (FS and SD). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "rv_harness.h"
#include "cpu/rv64/interp.h"

#define CODE RVT_CODE
#define DATA RVT_DATA

#define FS_OFF     0ull
#define FS_INITIAL 1ull
#define FS_CLEAN   2ull
#define FS_DIRTY   3ull

#define BOX(x)   (0xffffffff00000000ull | (uint32_t)(x))
#define ONE_S    0x3f800000u                /* 1.0f */
#define TWO_S    0x40000000u
#define THREE_S  0x40400000u
#define TINY_S   0x30800000u                /* 2^-30: 1 + 2^-30 is inexact in single */
#define ONE_D    0x3ff0000000000000ull
#define TWO_D    0x4000000000000000ull
#define THREE_D  0x4008000000000000ull

#define NX 0x01u
#define DZ 0x08u

static void set_fs(struct rvt *t, uint64_t fs)
{
	RVT_SET(t, mstatus, (RVT_GET(t, mstatus) & ~MSTATUS_FS) | fs << MSTATUS_FS_SHIFT);
}

static uint64_t fs_of(uint64_t mstatus)
{
	return (mstatus & MSTATUS_FS) >> MSTATUS_FS_SHIFT;
}

static void set_f(struct rvt *t, unsigned reg, uint64_t value)
{
	struct rv_state s = rvt_state(t);
	s.f[reg] = value;
	rvt_put_state(t, &s);
}

static uint64_t get_f(struct rvt *t, unsigned reg)
{
	return rvt_state(t).f[reg];
}

static void set_frm(struct rvt *t, unsigned frm, unsigned fflags)
{
	RVT_SET(t, fcsr, frm << 5 | fflags);
}

/* ---- mstatus.FS ------------------------------------------------------------ */

static void test_fs_off_is_illegal(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, SP, DATA);
	rvt_w64(t, DATA, 0x1122334455667788ull);
	set_f(t, 1, BOX(ONE_S));
	const uint32_t insns[] = {
		FLW(1, 0, A1), FLD(1, 0, A1), FSW(1, 8, A1), FSD(1, 8, A1),
		FADD_S(2, 1, 1, RM_RNE), FADD_D(2, 1, 1, RM_DYN), FSGNJ_D(2, 1, 1),
		FMV_X_W(A0, 1), FMV_W_X(2, A1), FMV_X_D(A0, 1), FMADD_D(2, 1, 1, 1, RM_RNE),
		FCVT_W_S(A0, 1, RM_RTZ),
		CSRR(A0, CSR_FCSR), CSRR(A0, CSR_FRM), CSRR(A0, CSR_FFLAGS),
		CSRW(CSR_FCSR, ZERO), CSRRWI(ZERO, CSR_FRM, 1), CSRRSI(A0, CSR_FFLAGS, 0),
	};
	assert_int_equal(fs_of(RVT_GET(t, mstatus)), FS_OFF);   /* the reset value */
	rvt_set_x(t, A0, 0x5a);
	for (size_t i = 0; i < sizeof(insns) / sizeof(insns[0]); i++) {
		RVT_ASM(t, CODE, insns[i], WFI());
		rvt_go_trap_m(t, 2, CODE, insns[i]);
	}
	const uint16_t cinsns[] = { C_FLD(S0, 8, A1), C_FSD(S0, 8, A1), C_FLDSP(1, 8), C_FSDSP(1, 8) };
	for (size_t i = 0; i < sizeof(cinsns) / sizeof(cinsns[0]); i++) {
		rvt_org(t, CODE);
		rvt_c(t, cinsns[i]);
		rvt_c(t, C_NOP());
		rvt_i(t, WFI());
		rvt_go_trap_m(t, 2, CODE, cinsns[i]);
	}
	/* nothing happened: no register, memory or fcsr change, FS still off */
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.f[1], BOX(ONE_S));
	assert_int_equal(s.f[2], 0);
	assert_int_equal(s.f[S0], 0);
	assert_int_equal(s.fcsr, 0);
	assert_int_equal(rvt_x(t, A0), 0x5a);
	assert_int_equal(rvt_r64(t, DATA + 8), 0);
	assert_int_equal(fs_of(s.mstatus), FS_OFF);
	assert_false(s.mstatus & MSTATUS_SD);
}

static void test_fs_becomes_dirty(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, DATA);
	rvt_w32(t, DATA, ONE_S);
	set_f(t, 1, BOX(ONE_S));
	const uint32_t writers[] = {
		FLW(2, 0, A1), FLD(2, 0, A1), FADD_S(2, 1, 1, RM_RNE), FMV_W_X(2, A1),
		FMADD_S(2, 1, 1, 1, RM_RNE), CSRW(CSR_FFLAGS, ZERO), CSRRWI(ZERO, CSR_FRM, 1),
		CSRW(CSR_FCSR, ZERO),
	};
	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++) {
		for (uint64_t from = FS_INITIAL; from <= FS_CLEAN; from++) {
			set_fs(t, from);
			RVT_ASM(t, CODE, writers[i], CSRR(A0, CSR_MSTATUS), CSRR(A2, CSR_SSTATUS), WFI());
			rvt_go(t);
			assert_int_equal(fs_of(rvt_x(t, A0)), FS_DIRTY);
			/* SD summarizes FS == dirty, in both views */
			assert_true(rvt_x(t, A0) & MSTATUS_SD);
			assert_true(rvt_x(t, A2) & MSTATUS_SD);
			assert_int_equal(fs_of(RVT_GET(t, mstatus)), FS_DIRTY);
		}
	}
	/* Initial and Clean both allow FP instructions; SD stays clear. */
	set_fs(t, FS_CLEAN);
	RVT_ASM(t, CODE, CSRR(A0, CSR_MSTATUS), FSW(1, 8, A1), WFI());
	rvt_go(t);
	assert_false(rvt_x(t, A0) & MSTATUS_SD);
	assert_int_equal(rvt_r32(t, DATA + 8), ONE_S);
}

static void test_fs_from_s_and_u(void **state)
{
	struct rvt *t = *state;
	/* S turns FP on through sstatus.FS; FS then governs U as well. */
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, A3, 1ull << MSTATUS_FS_SHIFT);
	rvt_w32(t, DATA, THREE_S);
	RVT_ASM(t, CODE, CSRRS(ZERO, CSR_SSTATUS, A3), FLW(4, 0, A1), WFI());
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go(t);
	assert_int_equal(get_f(t, 4), BOX(THREE_S));
	assert_int_equal(fs_of(RVT_GET(t, mstatus)), FS_DIRTY);

	RVT_ASM(t, CODE, FLD(5, 0, A1), ECALL());
	rvt_set_priv(t, RV_PRIV_U);
	rvt_go_trap_m(t, 8, CODE + 4, 0);
	assert_int_equal(get_f(t, 5), rvt_r64(t, DATA));
	set_fs(t, FS_OFF);
	rvt_set_priv(t, RV_PRIV_U);
	rvt_go_trap_m(t, 2, CODE, FLD(5, 0, A1));
}

/* ---- loads, stores and NaN boxing ------------------------------------------------ */

static void test_fp_loads_stores(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	memset(rvt_host(t, DATA, 64), 0xee, 64);
	rvt_w32(t, DATA, ONE_S);
	rvt_w64(t, DATA + 8, 0x123456789abcdef0ull);
	rvt_set_x(t, A1, DATA);
	RVT_ASM(t, CODE,
		FLW(1, 0, A1),        /* boxed: upper 32 bits all ones */
		FLD(2, 8, A1),
		FLW(0, 8, A1),        /* f0 is an ordinary register */
		FSW(2, 16, A1),       /* the low 32 bits, whatever the upper ones */
		FSD(1, 24, A1),
		FSW(0, 36, A1),
		FLW(3, -4, A1),       /* negative offset: DATA - 4 */
		WFI());
	rvt_w32(t, DATA - 4, TWO_S);
	rvt_go(t);
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.f[1], BOX(ONE_S));
	assert_int_equal(s.f[2], 0x123456789abcdef0ull);
	assert_int_equal(s.f[0], BOX(0x9abcdef0));
	assert_int_equal(s.f[3], BOX(TWO_S));
	assert_int_equal(rvt_r32(t, DATA + 16), 0x9abcdef0);
	assert_int_equal(rvt_r32(t, DATA + 20), 0xeeeeeeee);
	assert_int_equal(rvt_r64(t, DATA + 24), BOX(ONE_S));
	assert_int_equal(rvt_r32(t, DATA + 36), 0x9abcdef0);
	assert_int_equal(rvt_r32(t, DATA + 40), 0xeeeeeeee);
}

static void test_fp_misaligned(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	const uint64_t end = DATA + 0x1000;          /* a page boundary */
	rvt_w64(t, end - 4, 0x0807060504030201ull);
	rvt_set_x(t, A1, end);
	set_f(t, 6, 0xa1a2a3a4a5a6a7a8ull);
	RVT_ASM(t, CODE, FLD(1, -4, A1), FLW(2, -2, A1), FLW(3, -3, A1), FSD(6, 9, A1),
		FSD(6, -3, A1), FSW(6, -10, A1), WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 1), 0x0807060504030201ull);   /* across the boundary */
	assert_int_equal(get_f(t, 2), BOX(0x06050403));
	assert_int_equal(get_f(t, 3), BOX(0x05040302));
	assert_int_equal(rvt_r64(t, end + 9), 0xa1a2a3a4a5a6a7a8ull);   /* within a page */
	assert_int_equal(rvt_r64(t, end - 3), 0xa1a2a3a4a5a6a7a8ull);   /* across */
	assert_int_equal(rvt_r32(t, end - 10), 0xa5a6a7a8);
}

static void test_fmv_boxing(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	rvt_set_x(t, A1, 0x1234567887654321ull);
	rvt_set_x(t, A2, 0x00000000c0000000ull);
	set_f(t, 4, 0x000000003f800000ull);      /* not boxed */
	set_f(t, 5, 0x7ff0000012345678ull);
	RVT_ASM(t, CODE,
		FMV_W_X(3, A1),        /* f3 = box(0x87654321) */
		FMV_X_W(S2, 3),        /* sign-extended */
		FMV_X_W(S3, 4),        /* the low 32 bits, even when not boxed */
		FMV_W_X(6, A2), FMV_X_W(S4, 6),
		FMV_D_X(7, A1), FMV_X_D(S5, 7), FMV_X_D(S6, 5),
		FMV_X_W(ZERO, 3),      /* x0 stays zero */
		WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 3), BOX(0x87654321));
	assert_int_equal(rvt_x(t, S2), 0xffffffff87654321ull);
	assert_int_equal(rvt_x(t, S3), 0x3f800000);
	assert_int_equal(get_f(t, 6), BOX(0xc0000000));
	assert_int_equal(rvt_x(t, S4), 0xffffffffc0000000ull);
	assert_int_equal(get_f(t, 7), 0x1234567887654321ull);
	assert_int_equal(rvt_x(t, S5), 0x1234567887654321ull);
	assert_int_equal(rvt_x(t, S6), 0x7ff0000012345678ull);
	assert_int_equal(rvt_x(t, ZERO), 0);
}

static void test_unboxed_single_reads_as_nan(void **state)
{
	struct rvt *t = *state;
	/* A single-precision operand that is not NaN-boxed is the canonical
	 * NaN (D extension, 12.2); flw's result is boxed and reads fine. */
	set_fs(t, FS_INITIAL);
	set_f(t, 1, 0x000000003f800000ull);      /* 1.0f, unboxed */
	set_f(t, 2, BOX(ONE_S));
	rvt_set_x(t, A1, DATA);
	rvt_w32(t, DATA, TWO_S);
	RVT_ASM(t, CODE, FADD_S(3, 1, 2, RM_RNE), FLW(4, 0, A1), FADD_S(5, 4, 2, RM_RNE), WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 3), BOX(0x7fc00000));
	assert_int_equal(get_f(t, 5), BOX(THREE_S));
}

static void test_c_fp_loads_stores(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	memset(rvt_host(t, DATA, 512), 0, 512);
	rvt_w64(t, DATA + 248, ONE_D);
	rvt_w64(t, DATA + 504, TWO_D);
	rvt_set_x(t, A1, DATA);
	rvt_set_x(t, SP, DATA);
	rvt_org(t, CODE);
	rvt_c(t, C_FLD(S0, 248, A1));      /* f8 */
	rvt_c(t, C_FLDSP(20, 504));
	rvt_c(t, C_FSD(S0, 136, A1));
	rvt_c(t, C_FSDSP(20, 64));
	rvt_i(t, WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 8), ONE_D);
	assert_int_equal(get_f(t, 20), TWO_D);
	assert_int_equal(rvt_r64(t, DATA + 136), ONE_D);
	assert_int_equal(rvt_r64(t, DATA + 64), TWO_D);
}

/* ---- fcsr, frm, fflags ---------------------------------------------------------------- */

static void test_fcsr_csrs(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	rvt_set_x(t, A1, 0xff);
	rvt_set_x(t, A2, 0xfff);
	rvt_set_x(t, A3, 0x3f);
	RVT_ASM(t, CODE,
		CSRW(CSR_FCSR, A1), CSRR(S2, CSR_FCSR), CSRR(S3, CSR_FRM), CSRR(S4, CSR_FFLAGS),
		CSRW(CSR_FCSR, A2), CSRR(S5, CSR_FCSR),          /* bits 31:8 read as zero */
		CSRRWI(S6, CSR_FRM, 2), CSRR(S7, CSR_FCSR),       /* frm = fcsr[7:5] */
		CSRW(CSR_FFLAGS, ZERO), CSRR(S8, CSR_FCSR),       /* fflags = fcsr[4:0] */
		CSRW(CSR_FFLAGS, A3), CSRR(S9, CSR_FFLAGS),       /* 5 bits */
		CSRRCI(S10, CSR_FFLAGS, 0x11), CSRR(S11, CSR_FCSR),
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0xff);
	assert_int_equal(rvt_x(t, S3), 7);
	assert_int_equal(rvt_x(t, S4), 0x1f);
	assert_int_equal(rvt_x(t, S5), 0xff);
	assert_int_equal(rvt_x(t, S6), 7);
	assert_int_equal(rvt_x(t, S7), 2 << 5 | 0x1f);
	assert_int_equal(rvt_x(t, S8), 2 << 5);
	assert_int_equal(rvt_x(t, S9), 0x1f);
	assert_int_equal(rvt_x(t, S10), 0x1f);
	assert_int_equal(rvt_x(t, S11), 2 << 5 | 0x0e);
	assert_int_equal(RVT_GET(t, fcsr), 2 << 5 | 0x0e);

	/* The state keeps only frm and fflags (what a snapshot carries). */
	RVT_ASM(t, CODE, CSRW(CSR_FCSR, A2), WFI());
	rvt_go(t);
	assert_int_equal(RVT_GET(t, fcsr), 0xff);
}

static void test_rounding_modes(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	set_f(t, 1, BOX(ONE_S));
	set_f(t, 2, BOX(TINY_S));
	const struct { unsigned frm, rm; uint32_t want; } cases[] = {
		{ RM_RUP, RM_DYN, 0x3f800001 },    /* dynamic: frm decides */
		{ RM_RTZ, RM_DYN, 0x3f800000 },
		{ RM_RNE, RM_DYN, 0x3f800000 },
		{ RM_RDN, RM_DYN, 0x3f800000 },
		{ RM_RMM, RM_DYN, 0x3f800000 },
		{ RM_RNE, RM_RUP, 0x3f800001 },    /* static: frm is ignored */
		{ RM_RUP, RM_RTZ, 0x3f800000 },
		{ 7, RM_RUP, 0x3f800001 },         /* even an invalid frm */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		set_frm(t, cases[i].frm, 0);
		RVT_ASM(t, CODE, FADD_S(3, 1, 2, cases[i].rm), WFI());
		rvt_go(t);
		assert_int_equal(get_f(t, 3), BOX(cases[i].want));
		assert_int_equal(RVT_GET(t, fcsr), cases[i].frm << 5 | NX);
	}
}

static void test_invalid_rounding_mode(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	set_f(t, 1, BOX(ONE_S));
	set_f(t, 2, BOX(TINY_S));
	set_f(t, 3, 0x1234);
	/* DYN with frm 5, 6 or 7 is illegal; so are static rm 5 and 6. */
	for (unsigned frm = 5; frm <= 7; frm++) {
		set_frm(t, frm, 0);
		const uint32_t insns[] = { FADD_S(3, 1, 2, RM_DYN), FADD_D(3, 1, 2, RM_DYN),
					   FMADD_S(3, 1, 2, 2, RM_DYN), FCVT_W_S(A0, 1, RM_DYN) };
		for (size_t i = 0; i < sizeof(insns) / sizeof(insns[0]); i++) {
			RVT_ASM(t, CODE, insns[i], WFI());
			rvt_go_trap_m(t, 2, CODE, insns[i]);
		}
	}
	set_frm(t, RM_RNE, 0);
	for (unsigned rm = 5; rm <= 6; rm++) {
		const uint32_t insn = FADD_S(3, 1, 2, rm);
		RVT_ASM(t, CODE, insn, WFI());
		rvt_go_trap_m(t, 2, CODE, insn);
	}
	assert_int_equal(get_f(t, 3), 0x1234);
	assert_int_equal(RVT_GET(t, fcsr), 0);          /* no flags from the illegal ones */

	/* Instructions without a rounding mode do not care about frm. */
	set_frm(t, 7, 0);
	rvt_set_x(t, A1, 5);
	RVT_ASM(t, CODE, FSGNJ_S(4, 1, 1), FMV_X_W(A0, 1), FMV_W_X(5, A1), WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 4), BOX(ONE_S));
	assert_int_equal(rvt_x(t, A0), ONE_S);
}

static void test_fflags_accumulate(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	set_frm(t, RM_RNE, NX);
	set_f(t, 1, BOX(ONE_S));
	set_f(t, 2, BOX(0));
	set_f(t, 3, ONE_D);
	set_f(t, 4, TWO_D);
	RVT_ASM(t, CODE, FDIV_S(5, 1, 2, RM_DYN), CSRR(A0, CSR_FFLAGS), FADD_D(6, 3, 4, RM_DYN),
		CSRR(A1, CSR_FFLAGS), WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 5), BOX(0x7f800000));     /* +inf */
	assert_int_equal(rvt_x(t, A0), NX | DZ);            /* ORed into what was there */
	assert_int_equal(get_f(t, 6), THREE_D);
	assert_int_equal(rvt_x(t, A1), NX | DZ);            /* an exact op adds nothing */
	assert_int_equal(RVT_GET(t, fcsr), NX | DZ);
}

/* ---- other operand paths ------------------------------------------------------------ */

static void test_fused_and_conversions(void **state)
{
	struct rvt *t = *state;
	set_fs(t, FS_INITIAL);
	set_f(t, 1, BOX(TWO_S));
	set_f(t, 2, BOX(THREE_S));
	set_f(t, 3, BOX(ONE_S));
	set_f(t, 11, TWO_D);
	set_f(t, 12, THREE_D);
	set_f(t, 13, ONE_D);
	rvt_set_x(t, A0, 0x77);
	RVT_ASM(t, CODE,
		FMADD_S(4, 1, 2, 3, RM_RNE),         /* 2 * 3 + 1 */
		FMADD_D(14, 11, 12, 13, RM_DYN),
		FNMSUB_D(15, 11, 12, 13, RM_RNE),    /* -(2 * 3) + 1 */
		FCVT_W_S(A1, 2, RM_RTZ),
		FCVT_W_S(ZERO, 2, RM_RTZ),
		FCVT_D_S(16, 2, RM_RNE),
		WFI());
	rvt_go(t);
	assert_int_equal(get_f(t, 4), BOX(0x40e00000));          /* 7.0f */
	assert_int_equal(get_f(t, 14), 0x401c000000000000ull);   /* 7.0 */
	assert_int_equal(get_f(t, 15), 0xc014000000000000ull);   /* -5.0 */
	assert_int_equal(rvt_x(t, A1), 3);
	assert_int_equal(rvt_x(t, ZERO), 0);
	assert_int_equal(get_f(t, 16), THREE_D);
	assert_int_equal(RVT_GET(t, fcsr), 0);

	/* fcvt.w.s of a negative value: the 32-bit result is sign-extended */
	set_f(t, 2, BOX(0xc0400000));      /* -3.0f */
	RVT_ASM(t, CODE, FCVT_W_S(A1, 2, RM_RTZ), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A1), (uint64_t)-3);
}

static void test_fp_state_roundtrip(void **state)
{
	struct rvt *t = *state;
	struct rv_state s = rvt_state(t);
	for (unsigned i = 0; i < 32; i++)
		s.f[i] = 0x4000000000000000ull + i;
	s.fcsr = 3 << 5 | 0x11;
	s.mstatus |= FS_CLEAN << MSTATUS_FS_SHIFT;
	rvt_put_state(t, &s);
	RVT_ASM(t, CODE, FMV_X_D(A0, 31), FMV_X_D(A1, 0), CSRR(A2, CSR_FCSR), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0x4000000000000000ull + 31);
	assert_int_equal(rvt_x(t, A1), 0x4000000000000000ull);
	assert_int_equal(rvt_x(t, A2), 3 << 5 | 0x11);
	s = rvt_state(t);
	for (unsigned i = 0; i < 32; i++)
		assert_int_equal(s.f[i], 0x4000000000000000ull + i);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, rvt_setup, rvt_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_fs_off_is_illegal),
		T(test_fs_becomes_dirty),
		T(test_fs_from_s_and_u),
		T(test_fp_loads_stores),
		T(test_fp_misaligned),
		T(test_fmv_boxing),
		T(test_unboxed_single_reads_as_nan),
		T(test_c_fp_loads_stores),
		T(test_fcsr_csrs),
		T(test_rounding_modes),
		T(test_invalid_rounding_mode),
		T(test_fflags_accumulate),
		T(test_fused_and_conversions),
		T(test_fp_state_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
