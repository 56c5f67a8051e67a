/* fpu.c: the F and D extensions on raw register bits (unprivileged ISA
 * manual 20191213, chapters 11 "F" and 12 "D"): arithmetic, fused
 * multiply-add, square root, conversions, comparisons, fmin/fmax, sign
 * injection, classification and moves, with NaN boxing, the canonical NaN,
 * all five rounding modes and the five exception flags. fpu.h is the
 * contract with the interpreter.
 *
 * Rounded arithmetic has two implementations. The integer ("soft") one
 * below is exact for every rounding mode; it is the only one for RMM, which
 * no host FPU offers, and for hosts other than x86-64 (AArch64, for one,
 * detects tininess before rounding and would report underflow wrongly).
 * On x86-64 the other four modes run on SSE and FMA3 instructions: their
 * IEEE semantics match RISC-V's, tininess included (detected after
 * rounding), once NaN results are replaced by the canonical NaN. Those
 * ops leave the host thread's MXCSR at its default value (round to
 * nearest, exceptions masked, flags clear) whatever it was before.
 * Everything else is bit manipulation and shares one path. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cpu/rv64/fpu.h"

typedef unsigned __int128 u128;

/* ---- formats ------------------------------------------------------------ */

struct fmt {
	int p;          /* significand precision, implicit bit included */
	int ebits;      /* exponent field width */
	int bias;
	uint64_t qnan;  /* the canonical NaN */
};

static const struct fmt fmt_s = { 24, 8, 127, FPU_CANONICAL_NAN_S };
static const struct fmt fmt_d = { 53, 11, 1023, FPU_CANONICAL_NAN_D };

static inline uint64_t sign_bit(const struct fmt *f)
{
	return 1ull << (f->p - 1 + f->ebits);
}

static inline uint64_t frac_mask(const struct fmt *f)
{
	return (1ull << (f->p - 1)) - 1;
}

static inline uint64_t exp_all_ones(const struct fmt *f)
{
	return (1ull << f->ebits) - 1;
}

static inline uint64_t inf_bits(const struct fmt *f, bool sign)
{
	return (sign ? sign_bit(f) : 0) | exp_all_ones(f) << (f->p - 1);
}

static inline uint64_t zero_bits(const struct fmt *f, bool sign)
{
	return sign ? sign_bit(f) : 0;
}

static inline bool is_nan(const struct fmt *f, uint64_t v)
{
	return (v & (sign_bit(f) - 1)) > inf_bits(f, false);
}

static inline bool is_snan(const struct fmt *f, uint64_t v)
{
	return is_nan(f, v) && !(v & (1ull << (f->p - 2)));
}

/* A single value in a 64-bit register counts only if NaN-boxed. */
static inline uint64_t unbox(uint64_t v)
{
	return (v >> 32) == 0xffffffffu ? (uint32_t)v : FPU_CANONICAL_NAN_S;
}

static inline uint64_t box(uint64_t v)
{
	return FPU_BOX_S(v);
}

enum kind { K_ZERO, K_FINITE, K_INF, K_QNAN, K_SNAN };

struct unp {
	enum kind kind;
	bool sign;
	int exp;        /* K_FINITE: value is man * 2^exp ... */
	uint64_t man;   /* ... with man in [2^(p-1), 2^p), subnormals too */
};

static struct unp unpack(const struct fmt *f, uint64_t v)
{
	struct unp u = { .sign = (v & sign_bit(f)) != 0 };
	uint64_t e = (v >> (f->p - 1)) & exp_all_ones(f);
	uint64_t m = v & frac_mask(f);

	if (e == exp_all_ones(f)) {
		if (!m)
			u.kind = K_INF;
		else
			u.kind = (m >> (f->p - 2)) & 1 ? K_QNAN : K_SNAN;
	} else if (e == 0) {
		if (!m) {
			u.kind = K_ZERO;
		} else {
			int shift = f->p - (64 - __builtin_clzll(m));

			u.kind = K_FINITE;
			u.man = m << shift;
			u.exp = 1 - f->bias - (f->p - 1) - shift;
		}
	} else {
		u.kind = K_FINITE;
		u.man = m | (1ull << (f->p - 1));
		u.exp = (int)e - f->bias - (f->p - 1);
	}
	return u;
}

static inline bool unp_nan(const struct unp *u)
{
	return u->kind == K_QNAN || u->kind == K_SNAN;
}

/* ---- rounding ----------------------------------------------------------- */

static int bitlen128(u128 m)
{
	uint64_t hi = (uint64_t)(m >> 64), lo = (uint64_t)m;

	if (hi)
		return 128 - __builtin_clzll(hi);
	return lo ? 64 - __builtin_clzll(lo) : 0;
}

/* Rounds (m + sticky fraction) / 2^shift to an integer in mode rm, the
 * value having sign `sign`. `sticky` says nonzero bits lie below m's lsb;
 * it may only be set when shift >= 2, so that the true value can never sit
 * on a rounding boundary. */
static u128 round_shift(u128 m, int shift, bool sticky, bool sign, unsigned rm, bool *inexact)
{
	u128 kept;
	bool rbit, sbit, inc;

	if (shift <= 0) {
		*inexact = sticky;
		return m << -shift;
	}
	if (shift > 128) {
		kept = 0;
		rbit = false;
		sbit = m != 0 || sticky;
	} else {
		kept = shift == 128 ? 0 : m >> shift;
		rbit = (m >> (shift - 1)) & 1;
		sbit = sticky || (m & (((u128)1 << (shift - 1)) - 1)) != 0;
	}
	*inexact = rbit || sbit;
	switch (rm) {
	case FPU_RTZ:
		inc = false;
		break;
	case FPU_RDN:
		inc = sign && *inexact;
		break;
	case FPU_RUP:
		inc = !sign && *inexact;
		break;
	case FPU_RMM:
		inc = rbit;
		break;
	default:
		inc = rbit && (sbit || (kept & 1));
		break;
	}
	return kept + inc;
}

/* Rounds the nonzero value (-1)^sign * m * 2^exp (plus a sticky fraction,
 * see round_shift) to format f, raising NX, UF, OF as IEEE 754 does with
 * tininess detected after rounding. The callers keep at least p + 2
 * significant bits in m whenever the value is not exact. */
static uint64_t round_pack(const struct fmt *f, bool sign, int exp, u128 m, bool sticky,
			   unsigned rm, uint32_t *fl)
{
	const int p = f->p, emin = 1 - f->bias;
	int n = bitlen128(m);
	int lead = exp + n - 1;         /* weight of m's top bit */
	int q = lead - (p - 1);         /* weight of the result's lsb */
	bool inexact, tiny = false;
	u128 k;

	if (q < emin - (p - 1))
		q = emin - (p - 1);     /* subnormal: fixed lsb */
	k = round_shift(m, q - exp, sticky, sign, rm, &inexact);
	if (k >> p) {
		k >>= 1;
		q++;
	}
	if (q + p - 1 > f->bias) {
		bool to_inf = rm == FPU_RNE || rm == FPU_RMM || (rm == FPU_RDN && sign) ||
			      (rm == FPU_RUP && !sign);

		*fl |= FPU_OF | FPU_NX;
		if (to_inf)
			return inf_bits(f, sign);
		return zero_bits(f, sign) | (exp_all_ones(f) - 1) << (p - 1) | frac_mask(f);
	}
	if (lead < emin - 1) {
		tiny = true;
	} else if (lead == emin - 1) {
		/* Tiny unless rounding to p bits, exponent unbounded, reaches
		 * 2^emin. */
		bool dummy;

		tiny = !(round_shift(m, n - p, sticky, sign, rm, &dummy) >> p);
	}
	if (inexact) {
		*fl |= FPU_NX;
		if (tiny)
			*fl |= FPU_UF;
	}
	if (k >> (p - 1))
		return zero_bits(f, sign) | (uint64_t)(q + p - 1 + f->bias) << (p - 1) |
		       ((uint64_t)k & frac_mask(f));
	return zero_bits(f, sign) | (uint64_t)k;
}

/* ---- soft arithmetic ---------------------------------------------------- */

/* NaN in, canonical NaN out; only signaling NaNs are invalid. */
static uint64_t nan_result(const struct fmt *f, bool invalid, uint32_t *fl)
{
	if (invalid)
		*fl |= FPU_NV;
	return f->qnan;
}

/* An exact zero sum of operands of opposite signs is +0, but -0 in RDN. */
static inline bool zero_sum_sign(unsigned rm)
{
	return rm == FPU_RDN;
}

static uint64_t sf_add(const struct fmt *f, uint64_t a, uint64_t b, unsigned rm, uint32_t *fl)
{
	struct unp x = unpack(f, a), y = unpack(f, b);
	u128 mx, my, m;
	bool sign;
	int d;

	if (unp_nan(&x) || unp_nan(&y))
		return nan_result(f, x.kind == K_SNAN || y.kind == K_SNAN, fl);
	if (x.kind == K_INF) {
		if (y.kind == K_INF && x.sign != y.sign)
			return nan_result(f, true, fl);
		return a;
	}
	if (y.kind == K_INF)
		return b;
	if (x.kind == K_ZERO && y.kind == K_ZERO)
		return zero_bits(f, x.sign == y.sign ? x.sign : zero_sum_sign(rm));
	if (x.kind == K_ZERO)
		return b;
	if (y.kind == K_ZERO)
		return a;

	if (x.exp < y.exp) {
		struct unp t = x;

		x = y;
		y = t;
	}
	d = x.exp - y.exp;
	if (d > 70) {
		/* y lies wholly below x's three extra low bits: it only
		 * nudges the value off the grid, upward or downward. */
		m = (u128)x.man << 3;
		if (x.sign != y.sign)
			m -= 1;
		return round_pack(f, x.sign, x.exp - 3, m, true, rm, fl);
	}
	mx = (u128)x.man << d;
	my = y.man;
	if (x.sign == y.sign) {
		m = mx + my;
		sign = x.sign;
	} else if (mx > my) {
		m = mx - my;
		sign = x.sign;
	} else if (my > mx) {
		m = my - mx;
		sign = y.sign;
	} else {
		return zero_bits(f, zero_sum_sign(rm));
	}
	return round_pack(f, sign, y.exp, m, false, rm, fl);
}

static uint64_t sf_mul(const struct fmt *f, uint64_t a, uint64_t b, unsigned rm, uint32_t *fl)
{
	struct unp x = unpack(f, a), y = unpack(f, b);
	bool sign = x.sign ^ y.sign;

	if (unp_nan(&x) || unp_nan(&y))
		return nan_result(f, x.kind == K_SNAN || y.kind == K_SNAN, fl);
	if ((x.kind == K_INF && y.kind == K_ZERO) || (x.kind == K_ZERO && y.kind == K_INF))
		return nan_result(f, true, fl);
	if (x.kind == K_INF || y.kind == K_INF)
		return inf_bits(f, sign);
	if (x.kind == K_ZERO || y.kind == K_ZERO)
		return zero_bits(f, sign);
	return round_pack(f, sign, x.exp + y.exp, (u128)x.man * y.man, false, rm, fl);
}

static uint64_t sf_div(const struct fmt *f, uint64_t a, uint64_t b, unsigned rm, uint32_t *fl)
{
	struct unp x = unpack(f, a), y = unpack(f, b);
	bool sign = x.sign ^ y.sign;
	u128 n, q;

	if (unp_nan(&x) || unp_nan(&y))
		return nan_result(f, x.kind == K_SNAN || y.kind == K_SNAN, fl);
	if ((x.kind == K_INF && y.kind == K_INF) || (x.kind == K_ZERO && y.kind == K_ZERO))
		return nan_result(f, true, fl);
	if (x.kind == K_INF)
		return inf_bits(f, sign);
	if (y.kind == K_INF || x.kind == K_ZERO)
		return zero_bits(f, sign);
	if (y.kind == K_ZERO) {
		*fl |= FPU_DZ;
		return inf_bits(f, sign);
	}
	/* Both significands are in [2^(p-1), 2^p), so the quotient has 70 or
	 * 71 bits: plenty for rounding, the remainder being the sticky bit. */
	n = (u128)x.man << 70;
	q = n / y.man;
	return round_pack(f, sign, x.exp - y.exp - 70, q, n % y.man != 0, rm, fl);
}

static u128 isqrt128(u128 n, bool *inexact)
{
	u128 r = 0, bit = (u128)1 << 126;

	while (bit > n)
		bit >>= 2;
	while (bit) {
		if (n >= r + bit) {
			n -= r + bit;
			r = (r >> 1) + bit;
		} else {
			r >>= 1;
		}
		bit >>= 2;
	}
	*inexact = n != 0;
	return r;
}

static uint64_t sf_sqrt(const struct fmt *f, uint64_t a, unsigned rm, uint32_t *fl)
{
	struct unp x = unpack(f, a);
	uint64_t m = x.man;
	int e = x.exp;
	bool inexact;
	u128 r;

	if (unp_nan(&x))
		return nan_result(f, x.kind == K_SNAN, fl);
	if (x.kind == K_ZERO)
		return a;       /* sqrt(-0) is -0 */
	if (x.sign)
		return nan_result(f, true, fl);
	if (x.kind == K_INF)
		return a;
	if (e & 1) {
		m <<= 1;
		e -= 1;
	}
	/* m < 2^54, so m * 2^70 < 2^124 and its root has at least 61 bits. */
	r = isqrt128((u128)m << 70, &inexact);
	return round_pack(f, false, (e - 70) / 2, r, inexact, rm, fl);
}

static u128 shift_right_jam(u128 v, int d)
{
	if (d == 0)
		return v;
	if (d >= 128)
		return v != 0;
	return (v >> d) | ((v & (((u128)1 << d) - 1)) != 0);
}

/* a * b + c with a single rounding. The callers negate inputs for the
 * other three forms, which is what the ISA defines (fnmadd is
 * -(a*b) - c, not -(a*b + c): they differ in the sign of zero). */
static uint64_t sf_fma(const struct fmt *f, uint64_t a, uint64_t b, uint64_t c, unsigned rm,
		       uint32_t *fl)
{
	struct unp x = unpack(f, a), y = unpack(f, b), z = unpack(f, c);
	bool inf_times_zero = (x.kind == K_INF && y.kind == K_ZERO) ||
			      (x.kind == K_ZERO && y.kind == K_INF);
	bool psign = x.sign ^ y.sign, sign;
	u128 mp, mc, m;
	int ep, ec, e, sh;

	/* The ISA requires NV for inf * 0 even when c is a quiet NaN. */
	if (unp_nan(&x) || unp_nan(&y) || unp_nan(&z) || inf_times_zero)
		return nan_result(f, inf_times_zero || x.kind == K_SNAN || y.kind == K_SNAN ||
					     z.kind == K_SNAN, fl);
	if (x.kind == K_INF || y.kind == K_INF) {
		if (z.kind == K_INF && z.sign != psign)
			return nan_result(f, true, fl);
		return inf_bits(f, psign);
	}
	if (z.kind == K_INF)
		return c;
	if (x.kind == K_ZERO || y.kind == K_ZERO) {
		if (z.kind == K_ZERO)
			return zero_bits(f, psign == z.sign ? psign : zero_sum_sign(rm));
		return c;
	}
	mp = (u128)x.man * y.man;
	ep = x.exp + y.exp;
	if (z.kind == K_ZERO)
		return round_pack(f, psign, ep, mp, false, rm, fl);

	/* Put both top bits at bit 124, shift the smaller operand right
	 * keeping a sticky lsb, then add. Both keep at least 19 zero low bits
	 * when unshifted, and a sticky lsb only appears when the exponents are
	 * far apart, so cancellation then costs at most one of 124 bits. */
	sh = 124 - (bitlen128(mp) - 1);
	mp <<= sh;
	ep -= sh;
	sh = 124 - (bitlen128(z.man) - 1);
	mc = (u128)z.man << sh;
	ec = z.exp - sh;
	if (ep >= ec) {
		mc = shift_right_jam(mc, ep - ec);
		e = ep;
	} else {
		mp = shift_right_jam(mp, ec - ep);
		e = ec;
	}
	if (psign == z.sign) {
		m = mp + mc;
		sign = psign;
	} else if (mp > mc) {
		m = mp - mc;
		sign = psign;
	} else if (mc > mp) {
		m = mc - mp;
		sign = z.sign;
	} else {
		return zero_bits(f, zero_sum_sign(rm));
	}
	return round_pack(f, sign, e, m, false, rm, fl);
}

/* ---- arithmetic dispatch ------------------------------------------------ */

enum arith { AR_ADD, AR_SUB, AR_MUL, AR_DIV, AR_SQRT, AR_MADD, AR_MSUB, AR_NMSUB, AR_NMADD };

static uint64_t soft_arith(const struct fmt *f, enum arith k, uint64_t a, uint64_t b, uint64_t c,
			   unsigned rm, uint32_t *fl)
{
	uint64_t sb = sign_bit(f);

	switch (k) {
	case AR_ADD:
		return sf_add(f, a, b, rm, fl);
	case AR_SUB:
		return sf_add(f, a, b ^ sb, rm, fl);
	case AR_MUL:
		return sf_mul(f, a, b, rm, fl);
	case AR_DIV:
		return sf_div(f, a, b, rm, fl);
	case AR_SQRT:
		return sf_sqrt(f, a, rm, fl);
	case AR_MADD:
		return sf_fma(f, a, b, c, rm, fl);
	case AR_MSUB:
		return sf_fma(f, a, b, c ^ sb, rm, fl);
	case AR_NMSUB:
		return sf_fma(f, a ^ sb, b, c, rm, fl);
	case AR_NMADD:
		return sf_fma(f, a ^ sb, b, c ^ sb, rm, fl);
	}
	return f->qnan;
}

#if defined(__x86_64__)
#define HOST_SSE 1

/* MXCSR with every exception masked, FTZ and DAZ off, and the rounding
 * control (bits 14:13) for each RISC-V mode but RMM. The first is the
 * x86-64 ABI's initial value, which the host thread is assumed to keep. */
#define MXCSR_DEFAULT 0x1f80u
static const uint32_t sse_mxcsr[4] = {
	[FPU_RNE] = MXCSR_DEFAULT, [FPU_RTZ] = 0x7f80, [FPU_RDN] = 0x3f80, [FPU_RUP] = 0x5f80,
};

static inline uint32_t sse_flags(uint32_t st)
{
	/* MXCSR IE, ZE, OE, UE, PE (bits 0, 2, 3, 4, 5) to NV, DZ, OF, UF,
	 * NX; DE (bit 1) has no RISC-V counterpart. */
	return (st & 0x01) << 4 | (st & 0x04) << 1 | (st & 0x08) >> 1 | (st & 0x10) >> 3 |
	       (st & 0x20) >> 5;
}

/* One asm statement does it all, so the compiler can neither move the
 * arithmetic outside the rounding mode nor fold it. Loading the control
 * word clears stale sticky flags first, so none leak in from the host or
 * an earlier op; the default control word goes back afterwards. Saving
 * and restoring the host's own MXCSR instead would cost a second stmxcsr,
 * which waits for the FPU and doubles the price of an op. */
#define SSE_OP(insn)                                                          \
	asm volatile("ldmxcsr %[ctl]\n\t"                                      \
		     insn "\n\t"                                               \
		     "stmxcsr %[st]\n\t"                                       \
		     "ldmxcsr %[dflt]"                                         \
		     : [x] "+x"(x), [st] "=m"(st)                              \
		     : [y] "x"(y), [z] "x"(z), [ctl] "m"(ctl), [dflt] "m"(dflt))

static bool host_has_fma(void)
{
	static int have = -1;
	int h = __atomic_load_n(&have, __ATOMIC_RELAXED);

	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("fma") ? 1 : 0;
		__atomic_store_n(&have, h, __ATOMIC_RELAXED);
	}
	return h;
}

/* The fused forms negate operands up front, exactly as soft_arith does,
 * and all run as vfmadd. inf * 0 is checked here rather than trusting the
 * host with a quiet NaN addend. */
static uint64_t sse_arith_d(enum arith k, uint64_t a, uint64_t b, uint64_t c, unsigned rm,
			    uint32_t *fl)
{
	const uint64_t sb = 1ull << 63;
	uint32_t ctl = sse_mxcsr[rm], dflt = MXCSR_DEFAULT, st;
	double x, y, z;
	uint64_t r;

	if (k == AR_MSUB || k == AR_NMADD)
		c ^= sb;
	if (k == AR_NMSUB || k == AR_NMADD)
		a ^= sb;
	memcpy(&x, &a, 8);
	memcpy(&y, &b, 8);
	memcpy(&z, &c, 8);
	switch (k) {
	case AR_ADD:
		SSE_OP("addsd %[y], %[x]");
		break;
	case AR_SUB:
		SSE_OP("subsd %[y], %[x]");
		break;
	case AR_MUL:
		SSE_OP("mulsd %[y], %[x]");
		break;
	case AR_DIV:
		SSE_OP("divsd %[y], %[x]");
		break;
	case AR_SQRT:
		SSE_OP("sqrtsd %[x], %[x]");
		break;
	default:
		SSE_OP("vfmadd213sd %[z], %[y], %[x]");
		break;
	}
	*fl |= sse_flags(st);
	memcpy(&r, &x, 8);
	if (is_nan(&fmt_d, r)) {
		if (k >= AR_MADD && ((a << 1 == 0 && b << 1 == 0xffeull << 52) ||
				     (b << 1 == 0 && a << 1 == 0xffeull << 52)))
			*fl |= FPU_NV;
		r = FPU_CANONICAL_NAN_D;
	}
	return r;
}

static uint64_t sse_arith_s(enum arith k, uint64_t a64, uint64_t b64, uint64_t c64, unsigned rm,
			    uint32_t *fl)
{
	const uint32_t sb = 1u << 31;
	uint32_t a = (uint32_t)a64, b = (uint32_t)b64, c = (uint32_t)c64;
	uint32_t ctl = sse_mxcsr[rm], dflt = MXCSR_DEFAULT, st, r;
	float x, y, z;

	if (k == AR_MSUB || k == AR_NMADD)
		c ^= sb;
	if (k == AR_NMSUB || k == AR_NMADD)
		a ^= sb;
	memcpy(&x, &a, 4);
	memcpy(&y, &b, 4);
	memcpy(&z, &c, 4);
	switch (k) {
	case AR_ADD:
		SSE_OP("addss %[y], %[x]");
		break;
	case AR_SUB:
		SSE_OP("subss %[y], %[x]");
		break;
	case AR_MUL:
		SSE_OP("mulss %[y], %[x]");
		break;
	case AR_DIV:
		SSE_OP("divss %[y], %[x]");
		break;
	case AR_SQRT:
		SSE_OP("sqrtss %[x], %[x]");
		break;
	default:
		SSE_OP("vfmadd213ss %[z], %[y], %[x]");
		break;
	}
	*fl |= sse_flags(st);
	memcpy(&r, &x, 4);
	if (is_nan(&fmt_s, r)) {
		if (k >= AR_MADD && ((a << 1 == 0 && b << 1 == 0xff000000u) ||
				     (b << 1 == 0 && a << 1 == 0xff000000u)))
			*fl |= FPU_NV;
		r = FPU_CANONICAL_NAN_S;
	}
	return r;
}
#endif

/* Single operands arrive unboxed in the low 32 bits; the result likewise. */
static uint64_t arith(const struct fmt *f, enum arith k, uint64_t a, uint64_t b, uint64_t c,
		      unsigned rm, uint32_t *fl)
{
#ifdef HOST_SSE
	if (rm < FPU_RMM && (k < AR_MADD || host_has_fma()))
		return f == &fmt_s ? sse_arith_s(k, a, b, c, rm, fl) : sse_arith_d(k, a, b, c, rm, fl);
#endif
	return soft_arith(f, k, a, b, c, rm, fl);
}

/* ---- conversions -------------------------------------------------------- */

/* To a `width`-bit integer; 32-bit results come back sign-extended, as RV64
 * writes them. Out-of-range results saturate and raise NV alone. */
static uint64_t to_int(const struct fmt *f, uint64_t v, bool is_signed, int width, unsigned rm,
		       uint32_t *fl)
{
	struct unp x = unpack(f, v);
	u128 umax = ((u128)1 << width) - 1, smax = ((u128)1 << (width - 1)) - 1;
	u128 r, limit, sat;
	bool inexact = false;
	uint64_t out;

	if (is_signed) {
		limit = x.sign ? smax + 1 : smax;
		sat = x.sign ? -(smax + 1) : smax;   /* two's complement, truncated below */
	} else {
		limit = x.sign ? 0 : umax;
		sat = x.sign ? 0 : umax;
	}
	switch (x.kind) {
	case K_QNAN:
	case K_SNAN:
		*fl |= FPU_NV;
		out = (uint64_t)(is_signed ? smax : umax);
		goto done;
	case K_INF:
		*fl |= FPU_NV;
		out = (uint64_t)sat;
		goto done;
	case K_ZERO:
		return 0;
	case K_FINITE:
		break;
	}
	if (x.exp >= 0) {
		if (x.exp > 64) {
			*fl |= FPU_NV;
			out = (uint64_t)sat;
			goto done;
		}
		r = (u128)x.man << x.exp;
	} else {
		r = round_shift(x.man, -x.exp, false, x.sign, rm, &inexact);
	}
	if (r > limit) {
		*fl |= FPU_NV;
		out = (uint64_t)sat;
		goto done;
	}
	if (inexact)
		*fl |= FPU_NX;
	out = x.sign ? -(uint64_t)r : (uint64_t)r;
done:
	if (width == 32)
		out = (uint64_t)(int64_t)(int32_t)(uint32_t)out;
	return out;
}

static uint64_t from_int(const struct fmt *f, uint64_t v, bool is_signed, int width, unsigned rm,
			 uint32_t *fl)
{
	bool sign;

	if (width == 32)
		v = is_signed ? (uint64_t)(int64_t)(int32_t)(uint32_t)v : (uint32_t)v;
	sign = is_signed && (int64_t)v < 0;
	if (sign)
		v = -v;
	if (!v)
		return 0;
	return round_pack(f, sign, 0, v, false, rm, fl);
}

static uint64_t convert_fp(const struct fmt *from, const struct fmt *to, uint64_t v, unsigned rm,
			   uint32_t *fl)
{
	struct unp x = unpack(from, v);

	switch (x.kind) {
	case K_QNAN:
	case K_SNAN:
		return nan_result(to, x.kind == K_SNAN, fl);
	case K_INF:
		return inf_bits(to, x.sign);
	case K_ZERO:
		return zero_bits(to, x.sign);
	case K_FINITE:
		break;
	}
	return round_pack(to, x.sign, x.exp, x.man, false, rm, fl);
}

/* ---- comparisons, min/max, sign injection, class ------------------------ */

/* Orders non-NaN values as signed integers; -0 and +0 compare equal. */
static int64_t cmp_key(const struct fmt *f, uint64_t v)
{
	uint64_t mag = v & (sign_bit(f) - 1);

	return (v & sign_bit(f)) ? -(int64_t)mag : (int64_t)mag;
}

enum cmp { CMP_EQ, CMP_LT, CMP_LE };

static uint64_t compare(const struct fmt *f, enum cmp k, uint64_t a, uint64_t b, uint32_t *fl)
{
	if (is_nan(f, a) || is_nan(f, b)) {
		/* feq is quiet; flt and fle signal on any NaN. */
		if (k != CMP_EQ || is_snan(f, a) || is_snan(f, b))
			*fl |= FPU_NV;
		return 0;
	}
	switch (k) {
	case CMP_EQ:
		return cmp_key(f, a) == cmp_key(f, b);
	case CMP_LT:
		return cmp_key(f, a) < cmp_key(f, b);
	default:
		return cmp_key(f, a) <= cmp_key(f, b);
	}
}

/* IEEE 754-2019 minimumNumber / maximumNumber, with -0 below +0. */
static uint64_t minmax(const struct fmt *f, bool max, uint64_t a, uint64_t b, uint32_t *fl)
{
	bool na = is_nan(f, a), nb = is_nan(f, b);
	uint64_t sb = sign_bit(f);
	int64_t ka, kb;

	if (is_snan(f, a) || is_snan(f, b))
		*fl |= FPU_NV;
	if (na && nb)
		return f->qnan;
	if (na)
		return b;
	if (nb)
		return a;
	ka = (a & sb) ? -(int64_t)(a & (sb - 1)) - 1 : (int64_t)a;
	kb = (b & sb) ? -(int64_t)(b & (sb - 1)) - 1 : (int64_t)b;
	return (max ? ka > kb : ka < kb) ? a : b;
}

enum sgnj { SGNJ, SGNJN, SGNJX };

static uint64_t sign_inject(const struct fmt *f, enum sgnj k, uint64_t a, uint64_t b)
{
	uint64_t sb = sign_bit(f);

	switch (k) {
	case SGNJ:
		return (a & ~sb) | (b & sb);
	case SGNJN:
		return (a & ~sb) | (~b & sb);
	default:
		return a ^ (b & sb);
	}
}

static uint64_t classify(const struct fmt *f, uint64_t v)
{
	struct unp x = unpack(f, v);
	bool subnormal = ((v >> (f->p - 1)) & exp_all_ones(f)) == 0;

	switch (x.kind) {
	case K_INF:
		return x.sign ? 1u << 0 : 1u << 7;
	case K_FINITE:
		if (subnormal)
			return x.sign ? 1u << 2 : 1u << 5;
		return x.sign ? 1u << 1 : 1u << 6;
	case K_ZERO:
		return x.sign ? 1u << 3 : 1u << 4;
	case K_SNAN:
		return 1u << 8;
	default:
		return 1u << 9;
	}
}

/* ---- the interface ------------------------------------------------------ */

#define OP_ARITH(n, src) { n, src, false, false, true }
#define OP_FTOF(n, src)  { n, src, false, false, false }
#define OP_FTOX(n, rm)   { n, 1, false, true, rm }
#define OP_XTOF(n, rm)   { n, 1, true, false, rm }

const struct fpu_op_info fpu_op_info[FPU_OP_COUNT] = {
	[FPU_ADD_S] = OP_ARITH("fadd.s", 2),
	[FPU_SUB_S] = OP_ARITH("fsub.s", 2),
	[FPU_MUL_S] = OP_ARITH("fmul.s", 2),
	[FPU_DIV_S] = OP_ARITH("fdiv.s", 2),
	[FPU_SQRT_S] = OP_ARITH("fsqrt.s", 1),
	[FPU_SGNJ_S] = OP_FTOF("fsgnj.s", 2),
	[FPU_SGNJN_S] = OP_FTOF("fsgnjn.s", 2),
	[FPU_SGNJX_S] = OP_FTOF("fsgnjx.s", 2),
	[FPU_MIN_S] = OP_FTOF("fmin.s", 2),
	[FPU_MAX_S] = OP_FTOF("fmax.s", 2),
	[FPU_MADD_S] = OP_ARITH("fmadd.s", 3),
	[FPU_MSUB_S] = OP_ARITH("fmsub.s", 3),
	[FPU_NMSUB_S] = OP_ARITH("fnmsub.s", 3),
	[FPU_NMADD_S] = OP_ARITH("fnmadd.s", 3),
	[FPU_EQ_S] = { "feq.s", 2, false, true, false },
	[FPU_LT_S] = { "flt.s", 2, false, true, false },
	[FPU_LE_S] = { "fle.s", 2, false, true, false },
	[FPU_CLASS_S] = OP_FTOX("fclass.s", false),
	[FPU_CVT_W_S] = OP_FTOX("fcvt.w.s", true),
	[FPU_CVT_WU_S] = OP_FTOX("fcvt.wu.s", true),
	[FPU_CVT_L_S] = OP_FTOX("fcvt.l.s", true),
	[FPU_CVT_LU_S] = OP_FTOX("fcvt.lu.s", true),
	[FPU_CVT_S_W] = OP_XTOF("fcvt.s.w", true),
	[FPU_CVT_S_WU] = OP_XTOF("fcvt.s.wu", true),
	[FPU_CVT_S_L] = OP_XTOF("fcvt.s.l", true),
	[FPU_CVT_S_LU] = OP_XTOF("fcvt.s.lu", true),
	[FPU_MV_X_W] = OP_FTOX("fmv.x.w", false),
	[FPU_MV_W_X] = OP_XTOF("fmv.w.x", false),
	[FPU_ADD_D] = OP_ARITH("fadd.d", 2),
	[FPU_SUB_D] = OP_ARITH("fsub.d", 2),
	[FPU_MUL_D] = OP_ARITH("fmul.d", 2),
	[FPU_DIV_D] = OP_ARITH("fdiv.d", 2),
	[FPU_SQRT_D] = OP_ARITH("fsqrt.d", 1),
	[FPU_SGNJ_D] = OP_FTOF("fsgnj.d", 2),
	[FPU_SGNJN_D] = OP_FTOF("fsgnjn.d", 2),
	[FPU_SGNJX_D] = OP_FTOF("fsgnjx.d", 2),
	[FPU_MIN_D] = OP_FTOF("fmin.d", 2),
	[FPU_MAX_D] = OP_FTOF("fmax.d", 2),
	[FPU_MADD_D] = OP_ARITH("fmadd.d", 3),
	[FPU_MSUB_D] = OP_ARITH("fmsub.d", 3),
	[FPU_NMSUB_D] = OP_ARITH("fnmsub.d", 3),
	[FPU_NMADD_D] = OP_ARITH("fnmadd.d", 3),
	[FPU_EQ_D] = { "feq.d", 2, false, true, false },
	[FPU_LT_D] = { "flt.d", 2, false, true, false },
	[FPU_LE_D] = { "fle.d", 2, false, true, false },
	[FPU_CLASS_D] = OP_FTOX("fclass.d", false),
	[FPU_CVT_W_D] = OP_FTOX("fcvt.w.d", true),
	[FPU_CVT_WU_D] = OP_FTOX("fcvt.wu.d", true),
	[FPU_CVT_L_D] = OP_FTOX("fcvt.l.d", true),
	[FPU_CVT_LU_D] = OP_FTOX("fcvt.lu.d", true),
	/* Exact, but the rm field exists and an invalid one is illegal. */
	[FPU_CVT_D_W] = OP_XTOF("fcvt.d.w", true),
	[FPU_CVT_D_WU] = OP_XTOF("fcvt.d.wu", true),
	[FPU_CVT_D_L] = OP_XTOF("fcvt.d.l", true),
	[FPU_CVT_D_LU] = OP_XTOF("fcvt.d.lu", true),
	[FPU_MV_X_D] = OP_FTOX("fmv.x.d", false),
	[FPU_MV_D_X] = OP_XTOF("fmv.d.x", false),
	[FPU_CVT_S_D] = { "fcvt.s.d", 1, false, false, true },
	[FPU_CVT_D_S] = { "fcvt.d.s", 1, false, false, true },
};

uint64_t fpu_exec(enum fpu_op op, uint64_t a, uint64_t b, uint64_t c, unsigned rm,
		  uint32_t *fflags)
{
	const struct fmt *S = &fmt_s, *D = &fmt_d;
	uint32_t fl = 0;
	uint64_t r;

	/* Only ops that ignore rm can see 5..7 here; keep the paths total. */
	if (rm > FPU_RMM)
		rm = FPU_RNE;

	switch (op) {
	case FPU_ADD_S:    r = box(arith(S, AR_ADD, unbox(a), unbox(b), 0, rm, &fl)); break;
	case FPU_SUB_S:    r = box(arith(S, AR_SUB, unbox(a), unbox(b), 0, rm, &fl)); break;
	case FPU_MUL_S:    r = box(arith(S, AR_MUL, unbox(a), unbox(b), 0, rm, &fl)); break;
	case FPU_DIV_S:    r = box(arith(S, AR_DIV, unbox(a), unbox(b), 0, rm, &fl)); break;
	case FPU_SQRT_S:   r = box(arith(S, AR_SQRT, unbox(a), 0, 0, rm, &fl)); break;
	case FPU_MADD_S:   r = box(arith(S, AR_MADD, unbox(a), unbox(b), unbox(c), rm, &fl)); break;
	case FPU_MSUB_S:   r = box(arith(S, AR_MSUB, unbox(a), unbox(b), unbox(c), rm, &fl)); break;
	case FPU_NMSUB_S:  r = box(arith(S, AR_NMSUB, unbox(a), unbox(b), unbox(c), rm, &fl)); break;
	case FPU_NMADD_S:  r = box(arith(S, AR_NMADD, unbox(a), unbox(b), unbox(c), rm, &fl)); break;
	case FPU_SGNJ_S:   r = box(sign_inject(S, SGNJ, unbox(a), unbox(b))); break;
	case FPU_SGNJN_S:  r = box(sign_inject(S, SGNJN, unbox(a), unbox(b))); break;
	case FPU_SGNJX_S:  r = box(sign_inject(S, SGNJX, unbox(a), unbox(b))); break;
	case FPU_MIN_S:    r = box(minmax(S, false, unbox(a), unbox(b), &fl)); break;
	case FPU_MAX_S:    r = box(minmax(S, true, unbox(a), unbox(b), &fl)); break;
	case FPU_EQ_S:     r = compare(S, CMP_EQ, unbox(a), unbox(b), &fl); break;
	case FPU_LT_S:     r = compare(S, CMP_LT, unbox(a), unbox(b), &fl); break;
	case FPU_LE_S:     r = compare(S, CMP_LE, unbox(a), unbox(b), &fl); break;
	case FPU_CLASS_S:  r = classify(S, unbox(a)); break;
	case FPU_CVT_W_S:  r = to_int(S, unbox(a), true, 32, rm, &fl); break;
	case FPU_CVT_WU_S: r = to_int(S, unbox(a), false, 32, rm, &fl); break;
	case FPU_CVT_L_S:  r = to_int(S, unbox(a), true, 64, rm, &fl); break;
	case FPU_CVT_LU_S: r = to_int(S, unbox(a), false, 64, rm, &fl); break;
	case FPU_CVT_S_W:  r = box(from_int(S, a, true, 32, rm, &fl)); break;
	case FPU_CVT_S_WU: r = box(from_int(S, a, false, 32, rm, &fl)); break;
	case FPU_CVT_S_L:  r = box(from_int(S, a, true, 64, rm, &fl)); break;
	case FPU_CVT_S_LU: r = box(from_int(S, a, false, 64, rm, &fl)); break;
	/* fmv moves bits: no unboxing on the way out. */
	case FPU_MV_X_W:   r = (uint64_t)(int64_t)(int32_t)(uint32_t)a; break;
	case FPU_MV_W_X:   r = box((uint32_t)a); break;

	case FPU_ADD_D:    r = arith(D, AR_ADD, a, b, 0, rm, &fl); break;
	case FPU_SUB_D:    r = arith(D, AR_SUB, a, b, 0, rm, &fl); break;
	case FPU_MUL_D:    r = arith(D, AR_MUL, a, b, 0, rm, &fl); break;
	case FPU_DIV_D:    r = arith(D, AR_DIV, a, b, 0, rm, &fl); break;
	case FPU_SQRT_D:   r = arith(D, AR_SQRT, a, 0, 0, rm, &fl); break;
	case FPU_MADD_D:   r = arith(D, AR_MADD, a, b, c, rm, &fl); break;
	case FPU_MSUB_D:   r = arith(D, AR_MSUB, a, b, c, rm, &fl); break;
	case FPU_NMSUB_D:  r = arith(D, AR_NMSUB, a, b, c, rm, &fl); break;
	case FPU_NMADD_D:  r = arith(D, AR_NMADD, a, b, c, rm, &fl); break;
	case FPU_SGNJ_D:   r = sign_inject(D, SGNJ, a, b); break;
	case FPU_SGNJN_D:  r = sign_inject(D, SGNJN, a, b); break;
	case FPU_SGNJX_D:  r = sign_inject(D, SGNJX, a, b); break;
	case FPU_MIN_D:    r = minmax(D, false, a, b, &fl); break;
	case FPU_MAX_D:    r = minmax(D, true, a, b, &fl); break;
	case FPU_EQ_D:     r = compare(D, CMP_EQ, a, b, &fl); break;
	case FPU_LT_D:     r = compare(D, CMP_LT, a, b, &fl); break;
	case FPU_LE_D:     r = compare(D, CMP_LE, a, b, &fl); break;
	case FPU_CLASS_D:  r = classify(D, a); break;
	case FPU_CVT_W_D:  r = to_int(D, a, true, 32, rm, &fl); break;
	case FPU_CVT_WU_D: r = to_int(D, a, false, 32, rm, &fl); break;
	case FPU_CVT_L_D:  r = to_int(D, a, true, 64, rm, &fl); break;
	case FPU_CVT_LU_D: r = to_int(D, a, false, 64, rm, &fl); break;
	case FPU_CVT_D_W:  r = from_int(D, a, true, 32, rm, &fl); break;
	case FPU_CVT_D_WU: r = from_int(D, a, false, 32, rm, &fl); break;
	case FPU_CVT_D_L:  r = from_int(D, a, true, 64, rm, &fl); break;
	case FPU_CVT_D_LU: r = from_int(D, a, false, 64, rm, &fl); break;
	case FPU_MV_X_D:
	case FPU_MV_D_X:   r = a; break;

	case FPU_CVT_S_D:  r = box(convert_fp(D, S, a, rm, &fl)); break;
	case FPU_CVT_D_S:  r = convert_fp(S, D, unbox(a), rm, &fl); break;
	default:           r = 0; break;
	}
	*fflags |= fl;
	return r;
}
