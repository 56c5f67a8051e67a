/* csr.c: the control and status registers of RV64 with M, S and U modes,
 * F/D, Zicntr and Sstc (privileged ISA manual 20211203, chapters 2, 3, 4;
 * Sstc 1.0). Registers that tern's machine does not have (PMP entries,
 * hardware performance counters) read as zero where the spec allows it.
 * Unknown CSRs raise an illegal-instruction trap in the caller. */
#include "cpu/rv64/interp.h"

enum {
	CSR_FFLAGS = 0x001, CSR_FRM = 0x002, CSR_FCSR = 0x003,
	CSR_CYCLE = 0xc00, CSR_TIME = 0xc01, CSR_INSTRET = 0xc02,
	CSR_SSTATUS = 0x100, CSR_SIE = 0x104, CSR_STVEC = 0x105, CSR_SCOUNTEREN = 0x106,
	CSR_SENVCFG = 0x10a, CSR_SSCRATCH = 0x140, CSR_SEPC = 0x141, CSR_SCAUSE = 0x142,
	CSR_STVAL = 0x143, CSR_SIP = 0x144, CSR_STIMECMP = 0x14d, CSR_SATP = 0x180,
	CSR_MSTATUS = 0x300, CSR_MISA = 0x301, CSR_MEDELEG = 0x302, CSR_MIDELEG = 0x303,
	CSR_MIE = 0x304, CSR_MTVEC = 0x305, CSR_MCOUNTEREN = 0x306, CSR_MENVCFG = 0x30a,
	CSR_MCOUNTINHIBIT = 0x320, CSR_MSCRATCH = 0x340, CSR_MEPC = 0x341, CSR_MCAUSE = 0x342,
	CSR_MTVAL = 0x343, CSR_MIP = 0x344,
	CSR_MCYCLE = 0xb00, CSR_MINSTRET = 0xb02,
	CSR_MVENDORID = 0xf11, CSR_MARCHID = 0xf12, CSR_MIMPID = 0xf13, CSR_MHARTID = 0xf14,
	CSR_MCONFIGPTR = 0xf15,
};

#define SSTATUS_READ_MASK (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_UBE | MSTATUS_SPP | \
			   MSTATUS_VS | MSTATUS_FS | MSTATUS_XS | MSTATUS_SUM | \
			   MSTATUS_MXR | MSTATUS_UXL | MSTATUS_SD)
#define SSTATUS_WRITE_MASK (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | \
			    MSTATUS_SUM | MSTATUS_MXR)
#define MSTATUS_WRITE_MASK (SSTATUS_WRITE_MASK | MSTATUS_MIE | MSTATUS_MPIE | \
			    MSTATUS_MPP | MSTATUS_MPRV | MSTATUS_TVM | MSTATUS_TW | \
			    MSTATUS_TSR)
#define IRQ_MASK_ALL (RV_MIP_SSIP | RV_MIP_MSIP | RV_MIP_STIP | RV_MIP_MTIP | \
		      RV_MIP_SEIP | RV_MIP_MEIP)
#define MIDELEG_MASK (RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP)
/* Exceptions 10, 14 are reserved; 11 (ecall from M) cannot be delegated. */
#define MEDELEG_MASK 0xb3ffull
#define COUNTEREN_MASK 0x7ull     /* CY, TM, IR: no hpmcounters */

/* CSRs that exist but hold nothing on this machine: no PMP entries (only
 * the even pmpcfg registers exist on RV64, 3.7.1), no event counters. */
static bool is_zero_csr(unsigned csr)
{
	if (csr >= 0x3a0 && csr <= 0x3af)
		return (csr & 1) == 0;
	return (csr >= 0x3b0 && csr <= 0x3ef) || (csr >= 0xb03 && csr <= 0xb1f) ||
	       (csr >= 0x323 && csr <= 0x33f);
}

static uint64_t with_sd(uint64_t mstatus)
{
	if ((mstatus & MSTATUS_FS) == MSTATUS_FS)
		return mstatus | MSTATUS_SD;
	return mstatus & ~MSTATUS_SD;
}

void rv_update_timer(struct rv_interp *h)
{
	uint64_t now = h->cpu.env->time_now(h->cpu.env->opaque);
	if (now >= h->s.stimecmp)
		__atomic_fetch_or(&h->s.mip, RV_MIP_STIP, __ATOMIC_RELAXED);
	else
		__atomic_fetch_and(&h->s.mip, ~RV_MIP_STIP, __ATOMIC_RELAXED);
}

bool rv_csr_access_ok(struct rv_interp *h, unsigned csr, bool write)
{
	unsigned priv = (unsigned)h->s.priv;
	if (priv < ((csr >> 8) & 3))
		return false;
	if (write && (csr >> 10) == 3)
		return false;
	if (csr >= CSR_CYCLE && csr <= CSR_CYCLE + 31) {
		uint64_t bit = 1ull << (csr - CSR_CYCLE);
		if (priv < RV_PRIV_M && !(h->s.mcounteren & bit))
			return false;
		if (priv < RV_PRIV_S && !(h->s.scounteren & bit))
			return false;
	}
	if (csr == CSR_SATP && priv == RV_PRIV_S && (h->s.mstatus & MSTATUS_TVM))
		return false;
	if (csr == CSR_STIMECMP && priv == RV_PRIV_S &&
	    (!(h->s.menvcfg & MENVCFG_STCE) || !(h->s.mcounteren & 2)))
		return false;
	if (csr <= CSR_FCSR && !(h->s.mstatus & MSTATUS_FS))
		return false;
	return true;
}

bool rv_csr_read(struct rv_interp *h, unsigned csr, uint64_t *value)
{
	struct rv_state *s = &h->s;
	uint64_t mip = __atomic_load_n(&s->mip, __ATOMIC_RELAXED);

	switch (csr) {
	case CSR_FFLAGS: *value = s->fcsr & 0x1f; return true;
	case CSR_FRM: *value = (s->fcsr >> 5) & 7; return true;
	case CSR_FCSR: *value = s->fcsr & 0xff; return true;
	/* One instruction per cycle: cycle and instret are the same count. */
	case CSR_CYCLE: case CSR_INSTRET: case CSR_MCYCLE: case CSR_MINSTRET:
		*value = s->minstret;
		return true;
	case CSR_TIME: *value = h->cpu.env->time_now(h->cpu.env->opaque); return true;
	case CSR_SSTATUS: *value = with_sd(s->mstatus) & SSTATUS_READ_MASK; return true;
	case CSR_SIE: *value = s->mie & s->mideleg; return true;
	case CSR_STVEC: *value = s->stvec; return true;
	case CSR_SCOUNTEREN: *value = s->scounteren; return true;
	case CSR_SENVCFG: *value = s->senvcfg; return true;
	case CSR_SSCRATCH: *value = s->sscratch; return true;
	case CSR_SEPC: *value = s->sepc; return true;
	case CSR_SCAUSE: *value = s->scause; return true;
	case CSR_STVAL: *value = s->stval; return true;
	case CSR_SIP: *value = mip & s->mideleg; return true;
	case CSR_STIMECMP: *value = s->stimecmp; return true;
	case CSR_SATP: *value = s->satp; return true;
	case CSR_MSTATUS: *value = with_sd(s->mstatus); return true;
	case CSR_MISA: *value = s->misa; return true;
	case CSR_MEDELEG: *value = s->medeleg; return true;
	case CSR_MIDELEG: *value = s->mideleg; return true;
	case CSR_MIE: *value = s->mie; return true;
	case CSR_MTVEC: *value = s->mtvec; return true;
	case CSR_MCOUNTEREN: *value = s->mcounteren; return true;
	case CSR_MENVCFG: *value = s->menvcfg; return true;
	case CSR_MSCRATCH: *value = s->mscratch; return true;
	case CSR_MEPC: *value = s->mepc; return true;
	case CSR_MCAUSE: *value = s->mcause; return true;
	case CSR_MTVAL: *value = s->mtval; return true;
	case CSR_MIP: *value = mip; return true;
	case CSR_MHARTID: *value = s->mhartid; return true;
	case CSR_MVENDORID: case CSR_MARCHID: case CSR_MIMPID: case CSR_MCONFIGPTR:
	case CSR_MCOUNTINHIBIT:
		*value = 0;
		return true;
	}
	if (is_zero_csr(csr)) {
		*value = 0;
		return true;
	}
	return false;
}

static uint64_t tvec_legal(uint64_t v)
{
	/* Modes 2 and 3 are reserved: keep direct or vectored only. */
	return (v & 3) >= 2 ? v & ~3ull : v;
}

static void set_mip_bits(struct rv_interp *h, uint64_t mask, uint64_t value)
{
	__atomic_fetch_and(&h->s.mip, ~(mask & ~value), __ATOMIC_RELAXED);
	__atomic_fetch_or(&h->s.mip, mask & value, __ATOMIC_RELAXED);
}

bool rv_csr_write(struct rv_interp *h, unsigned csr, uint64_t v)
{
	struct rv_state *s = &h->s;

	switch (csr) {
	case CSR_FFLAGS: s->fcsr = (s->fcsr & ~0x1full) | (v & 0x1f); break;
	case CSR_FRM: s->fcsr = (s->fcsr & 0x1f) | ((v & 7) << 5); break;
	case CSR_FCSR: s->fcsr = v & 0xff; break;
	case CSR_SSTATUS:
		s->mstatus = with_sd((s->mstatus & ~SSTATUS_WRITE_MASK) | (v & SSTATUS_WRITE_MASK));
		rv_update_contexts(h);
		return true;
	case CSR_MSTATUS: {
		uint64_t next = (s->mstatus & ~MSTATUS_WRITE_MASK) | (v & MSTATUS_WRITE_MASK);
		if (((next & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT) == 2)  /* H mode: not legal */
			next &= ~MSTATUS_MPP;
		s->mstatus = with_sd(next);
		rv_update_contexts(h);
		return true;
	}
	case CSR_SIE: s->mie = (s->mie & ~s->mideleg) | (v & s->mideleg); return true;
	case CSR_STVEC: s->stvec = tvec_legal(v); return true;
	case CSR_SCOUNTEREN: s->scounteren = v & COUNTEREN_MASK; return true;
	case CSR_SENVCFG: s->senvcfg = v & 1; return true;   /* FIOM only */
	case CSR_SSCRATCH: s->sscratch = v; return true;
	case CSR_SEPC: s->sepc = v & ~1ull; return true;
	case CSR_SCAUSE: s->scause = v; return true;
	case CSR_STVAL: s->stval = v; return true;
	case CSR_SIP: set_mip_bits(h, RV_MIP_SSIP & s->mideleg, v); return true;
	case CSR_STIMECMP: s->stimecmp = v; rv_update_timer(h); return true;
	case CSR_SATP: {
		unsigned mode = (unsigned)(v >> 60);
		/* An unsupported mode makes the whole write have no effect,
		 * which is how Linux probes for Sv57 and Sv48 (4.1.11). */
		if (mode != 0 && mode != 8 && !(mode == 9 && h->sv48))
			return true;
		/* ASIDLEN = 0: the ASID field is read-only zero. */
		s->satp = v & (0xfull << 60 | ((1ull << 44) - 1));
		rv_tlb_flush_all(h);
		return true;
	}
	case CSR_MISA: return true;    /* fixed */
	case CSR_MEDELEG: s->medeleg = v & MEDELEG_MASK; return true;
	case CSR_MIDELEG: s->mideleg = v & MIDELEG_MASK; return true;
	case CSR_MIE: s->mie = v & IRQ_MASK_ALL; return true;
	case CSR_MTVEC: s->mtvec = tvec_legal(v); return true;
	case CSR_MCOUNTEREN: s->mcounteren = v & COUNTEREN_MASK; return true;
	case CSR_MENVCFG: s->menvcfg = v & (MENVCFG_STCE | 1); return true;
	case CSR_MSCRATCH: s->mscratch = v; return true;
	case CSR_MEPC: s->mepc = v & ~1ull; return true;
	case CSR_MCAUSE: s->mcause = v; return true;
	case CSR_MTVAL: s->mtval = v; return true;
	/* STIP follows stimecmp (Sstc with STCE set): not writable here. */
	case CSR_MIP: set_mip_bits(h, RV_MIP_SSIP | RV_MIP_SEIP, v); return true;
	/* The written value replaces this instruction's own increment, which
	 * the run loop adds when the csrw retires (Zicsr, "instret"). */
	case CSR_MINSTRET: s->minstret = v - 1; return true;
	case CSR_MCYCLE: case CSR_MCOUNTINHIBIT: return true;
	default:
		return is_zero_csr(csr);
	}
	/* fflags, frm, fcsr: FP state changed. */
	s->mstatus = with_sd(s->mstatus | MSTATUS_FS);
	return true;
}
