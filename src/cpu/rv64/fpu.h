/* fpu.h: RISC-V F and D arithmetic on raw register bits.
 *
 * The interpreter decodes an OP-FP / FMADD-family instruction to one
 * enum fpu_op, reads the source registers as raw 64-bit values and calls
 * fpu_exec(). This module owns every IEEE-754 rule of the F and D
 * extensions (ISA manual, chapters "F" and "D", version 20191213):
 * NaN boxing of single values in 64-bit registers, the canonical NaN,
 * fmin/fmax with signaling NaNs and signed zeros, saturating conversions,
 * all five rounding modes including RMM, and the five exception flags.
 * It knows nothing of harts, CSRs or mstatus.FS. */
#ifndef TERN_CPU_RV64_FPU_H
#define TERN_CPU_RV64_FPU_H

#include <stdbool.h>
#include <stdint.h>

/* Rounding modes (frm and the rm field). */
enum fpu_rm { FPU_RNE = 0, FPU_RTZ = 1, FPU_RDN = 2, FPU_RUP = 3, FPU_RMM = 4, FPU_DYN = 7 };

/* fflags bits */
#define FPU_NX 0x01u   /* inexact */
#define FPU_UF 0x02u   /* underflow */
#define FPU_OF 0x04u   /* overflow */
#define FPU_DZ 0x08u   /* divide by zero */
#define FPU_NV 0x10u   /* invalid */

#define FPU_OPS(X) \
	X(ADD_S) X(SUB_S) X(MUL_S) X(DIV_S) X(SQRT_S) \
	X(SGNJ_S) X(SGNJN_S) X(SGNJX_S) X(MIN_S) X(MAX_S) \
	X(MADD_S) X(MSUB_S) X(NMSUB_S) X(NMADD_S) \
	X(EQ_S) X(LT_S) X(LE_S) X(CLASS_S) \
	X(CVT_W_S) X(CVT_WU_S) X(CVT_L_S) X(CVT_LU_S) \
	X(CVT_S_W) X(CVT_S_WU) X(CVT_S_L) X(CVT_S_LU) \
	X(MV_X_W) X(MV_W_X) \
	X(ADD_D) X(SUB_D) X(MUL_D) X(DIV_D) X(SQRT_D) \
	X(SGNJ_D) X(SGNJN_D) X(SGNJX_D) X(MIN_D) X(MAX_D) \
	X(MADD_D) X(MSUB_D) X(NMSUB_D) X(NMADD_D) \
	X(EQ_D) X(LT_D) X(LE_D) X(CLASS_D) \
	X(CVT_W_D) X(CVT_WU_D) X(CVT_L_D) X(CVT_LU_D) \
	X(CVT_D_W) X(CVT_D_WU) X(CVT_D_L) X(CVT_D_LU) \
	X(MV_X_D) X(MV_D_X) \
	X(CVT_S_D) X(CVT_D_S)

enum fpu_op {
#define FPU_ENUM(name) FPU_##name,
	FPU_OPS(FPU_ENUM)
#undef FPU_ENUM
	FPU_OP_COUNT
};

/* Where an op's operands come from and where its result goes. */
struct fpu_op_info {
	const char *name;       /* "fadd.s" */
	uint8_t sources;        /* how many of a, b, c are used: 1, 2 or 3 */
	bool src_int;           /* a is an integer register (cvt from int, fmv to fp) */
	bool dst_int;           /* result goes to an integer register */
	bool uses_rm;           /* the rm field matters (else any rm is accepted) */
};
extern const struct fpu_op_info fpu_op_info[FPU_OP_COUNT];

/* Executes op on raw register values a, b, c (unused ones are ignored).
 * rm is a resolved rounding mode 0..4 (the caller turns DYN into frm and
 * raises an illegal instruction for 5, 6, or DYN with frm > 4).
 * Returns the raw value to write to the destination register:
 *  - an FP destination of a single op gets the NaN-boxed value
 *    (upper 32 bits all ones); a double op gets the 64-bit pattern;
 *  - an integer destination gets the value as RV64 defines it: 32-bit
 *    results (fcvt.w*, fmv.x.w) sign-extended to 64 bits, comparisons 0/1,
 *    fclass the 10-bit mask.
 * Single-precision inputs that are not properly NaN-boxed are read as the
 * canonical NaN. Exception flags raised are ORed into *fflags. */
uint64_t fpu_exec(enum fpu_op op, uint64_t a, uint64_t b, uint64_t c, unsigned rm,
		  uint32_t *fflags);

/* The canonical NaNs */
#define FPU_CANONICAL_NAN_S 0x7fc00000u
#define FPU_CANONICAL_NAN_D 0x7ff8000000000000ull
#define FPU_BOX_S(bits32) (0xffffffff00000000ull | (uint32_t)(bits32))

#endif
