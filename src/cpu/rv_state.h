/* rv_state.h: the architectural state of one RV64 hart.
 *
 * This is what a snapshot or a migration carries for a hart, whatever CPU
 * implementation runs it (interpreter today; a JIT or hardware later).
 * Derived caches (TLB, decoded instructions) are never part of it. */
#ifndef TERN_CPU_RV_STATE_H
#define TERN_CPU_RV_STATE_H

#include <stdint.h>

enum rv_priv { RV_PRIV_U = 0, RV_PRIV_S = 1, RV_PRIV_M = 3 };

struct rv_state {
	uint64_t x[32];
	uint64_t f[32];
	uint64_t pc;
	uint64_t priv;          /* enum rv_priv */
	uint64_t fcsr;          /* frm << 5 | fflags */

	/* machine level (tern is the firmware, but the CSRs exist) */
	uint64_t mstatus;       /* sstatus is a view of it */
	uint64_t misa;
	uint64_t medeleg, mideleg;
	uint64_t mie;
	uint64_t mip;           /* software-writable and device-driven bits */
	uint64_t mtvec, mepc, mcause, mtval, mscratch;
	uint64_t mcounteren, menvcfg;
	uint64_t mhartid;

	/* supervisor level */
	uint64_t stvec, sepc, scause, stval, sscratch;
	uint64_t satp, scounteren, senvcfg;
	uint64_t stimecmp;      /* Sstc; also what SBI set_timer programs */

	/* counters */
	uint64_t mcycle, minstret;

	/* LR/SC reservation */
	uint64_t reservation_valid, reservation_addr, reservation_value;
};

/* mip / mie bits */
#define RV_IRQ_SSI 1
#define RV_IRQ_MSI 3
#define RV_IRQ_STI 5
#define RV_IRQ_MTI 7
#define RV_IRQ_SEI 9
#define RV_IRQ_MEI 11
#define RV_MIP_SSIP (1ull << RV_IRQ_SSI)
#define RV_MIP_MSIP (1ull << RV_IRQ_MSI)
#define RV_MIP_STIP (1ull << RV_IRQ_STI)
#define RV_MIP_MTIP (1ull << RV_IRQ_MTI)
#define RV_MIP_SEIP (1ull << RV_IRQ_SEI)
#define RV_MIP_MEIP (1ull << RV_IRQ_MEI)

#endif
