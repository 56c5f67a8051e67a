/* test_cpu_priv.c: the interpreter's privileged architecture: traps and
 * delegation, xRET, interrupts and WFI, CSR access rules and WARL fields,
 * counters, Sv39 translation and its faults, the TLB and sfence.vma,
 * fence.i and the decoded-instruction cache, misaligned accesses under
 * translation.
 *
 * Expected values come from the privileged ISA manual (20211203) and the
 * Sstc extension; comments name the rule. Where the ISA leaves a choice,
 * the comment says what tern does and why the test pins it down. */
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
#define INT  RVT_INTERRUPT

/* Exception causes */
enum {
	C_INSN_ACCESS = 1, C_ILLEGAL = 2, C_BREAK = 3, C_LOAD_MISALIGNED = 4, C_LOAD_ACCESS = 5,
	C_STORE_ACCESS = 7, C_ECALL_U = 8, C_ECALL_S = 9, C_ECALL_M = 11,
	C_INSN_PF = 12, C_LOAD_PF = 13, C_STORE_PF = 15,
};

#define MPP(p) ((uint64_t)(p) << 11)
#define FS(v)  ((uint64_t)(v) << 13)

static uint64_t mpp_of(uint64_t mstatus) { return (mstatus >> 11) & 3; }

/* Puts the hart in priv at RVT_CODE with the given CSRs ORed in. */
static void enter(struct rvt *t, enum rv_priv priv, uint64_t mstatus_bits)
{
	struct rv_state s = rvt_state(t);
	s.priv = priv;
	s.pc = CODE;
	s.mstatus |= mstatus_bits;
	rvt_put_state(t, &s);
}

/* ---- ecall, ebreak, trap entry ----------------------------------------------- */

static void test_ecall_causes(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, NOP(), ECALL(), WFI());
	RVT_SET(t, mtval, 0x1234);
	rvt_go_trap_m(t, C_ECALL_M, CODE + 4, 0);
	assert_int_equal(mpp_of(RVT_GET(t, mstatus)), RV_PRIV_M);

	enter(t, RV_PRIV_S, 0);
	rvt_go_trap_m(t, C_ECALL_S, CODE + 4, 0);
	assert_int_equal(mpp_of(RVT_GET(t, mstatus)), RV_PRIV_S);

	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_m(t, C_ECALL_U, CODE + 4, 0);
	assert_int_equal(mpp_of(RVT_GET(t, mstatus)), RV_PRIV_U);
}

static void test_ecall_sbi_hook(void **state)
{
	struct rvt *t = *state;
	rvt_enable_sbi(t, true);
	t->sbi_ret = 0x77;
	rvt_set_x(t, A0, 5);
	rvt_set_x(t, A6, 3);
	rvt_set_x(t, A7, 0x10);
	RVT_SET(t, mcause, 0);
	RVT_ASM(t, CODE, ECALL(), ADDI(A1, A0, 1), WFI());
	enter(t, RV_PRIV_S, 0);
	rvt_go(t);
	assert_int_equal(t->sbi_count, 1);
	assert_int_equal(t->sbi_a0, 5);
	assert_int_equal(t->sbi_a6, 3);
	assert_int_equal(t->sbi_a7, 0x10);
	assert_int_equal(t->sbi_pc, CODE);       /* the hook sees the ecall's own pc */
	assert_int_equal(t->sbi_priv, RV_PRIV_S);
	assert_int_equal(rvt_x(t, A0), 0x77);
	assert_int_equal(rvt_x(t, A1), 0x78);    /* execution continued at pc + 4 */
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_S);
	assert_int_equal(s.mcause, 0);           /* no trap */

	/* A hook asking to leave: run() returns KICKED after the ecall. */
	t->sbi_leave = true;
	enter(t, RV_PRIV_S, 0);
	assert_int_equal(rvt_run(t), CPU_EXIT_KICKED);
	assert_int_equal(RVT_GET(t, pc), CODE + 4);
	assert_int_equal(t->sbi_count, 2);
	t->sbi_leave = false;
	rvt_run_from(t, CODE + 4, CODE + 12);

	/* ecall from U or M still traps; the hook is only for S. */
	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_m(t, C_ECALL_U, CODE, 0);
	enter(t, RV_PRIV_M, 0);
	rvt_go_trap_m(t, C_ECALL_M, CODE, 0);
	assert_int_equal(t->sbi_count, 2);
}

static void test_ebreak(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, NOP(), EBREAK(), WFI());
	rvt_go_trap_m(t, C_BREAK, CODE + 4, CODE + 4);
	/* delegated from S */
	RVT_SET(t, medeleg, 1u << C_BREAK);
	enter(t, RV_PRIV_S, 0);
	rvt_go_trap_s(t, C_BREAK, CODE + 4, CODE + 4);
}

static void test_trap_entry_status(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, ECALL(), WFI());
	/* To M from S with MIE set: MPIE = 1, MIE = 0, MPP = S; SIE untouched. */
	enter(t, RV_PRIV_S, MSTATUS_MIE | MSTATUS_SIE);
	rvt_go_trap_m(t, C_ECALL_S, CODE, 0);
	uint64_t st = RVT_GET(t, mstatus);
	assert_true(st & MSTATUS_MPIE);
	assert_false(st & MSTATUS_MIE);
	assert_true(st & MSTATUS_SIE);
	assert_int_equal(mpp_of(st), RV_PRIV_S);

	/* To M from M with MIE clear: MPIE = 0 */
	RVT_SET(t, mstatus, MSTATUS_MPIE);
	enter(t, RV_PRIV_M, 0);
	rvt_go_trap_m(t, C_ECALL_M, CODE, 0);
	st = RVT_GET(t, mstatus);
	assert_false(st & MSTATUS_MPIE);
	assert_int_equal(mpp_of(st), RV_PRIV_M);

	/* To S from U with SIE set: SPIE = 1, SIE = 0, SPP = U */
	RVT_SET(t, medeleg, (1u << C_ECALL_U) | (1u << C_ECALL_S));
	RVT_SET(t, mstatus, MSTATUS_SPP);
	enter(t, RV_PRIV_U, MSTATUS_SIE);
	rvt_go_trap_s(t, C_ECALL_U, CODE, 0);
	st = RVT_GET(t, mstatus);
	assert_true(st & MSTATUS_SPIE);
	assert_false(st & MSTATUS_SIE);
	assert_false(st & MSTATUS_SPP);

	/* To S from S with SIE clear: SPIE = 0, SPP = S */
	RVT_SET(t, mstatus, MSTATUS_SPIE);
	enter(t, RV_PRIV_S, 0);
	rvt_go_trap_s(t, C_ECALL_S, CODE, 0);
	st = RVT_GET(t, mstatus);
	assert_false(st & MSTATUS_SPIE);
	assert_true(st & MSTATUS_SPP);
}

static void test_delegation(void **state)
{
	struct rvt *t = *state;
	RVT_SET(t, medeleg, (1u << C_ECALL_U) | (1u << C_ILLEGAL));
	RVT_SET(t, mcause, 0x55);
	RVT_ASM(t, CODE, NOP(), ECALL(), WFI());
	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_s(t, C_ECALL_U, CODE + 4, 0);
	assert_int_equal(RVT_GET(t, mcause), 0x55);       /* M saw nothing */
	assert_int_equal(RVT_GET(t, pc), RVT_TRAP_S_STOP);

	/* An illegal instruction in S goes to S with the bits in stval ... */
	RVT_ASM(t, CODE, 0x0000000b, WFI());
	enter(t, RV_PRIV_S, 0);
	rvt_go_trap_s(t, C_ILLEGAL, CODE, 0x0000000b);
	/* ... but traps in M are never delegated down. */
	enter(t, RV_PRIV_M, 0);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x0000000b);

	/* medeleg[11] (ecall from M) is read-only zero; the exceptions that
	 * can happen below M are all delegable. */
	rvt_set_x(t, A1, ~0ull);
	RVT_ASM(t, CODE, CSRW(CSR_MEDELEG, A1), CSRR(A0, CSR_MEDELEG), CSRW(CSR_MIDELEG, A1),
		CSRR(A2, CSR_MIDELEG), WFI());
	enter(t, RV_PRIV_M, 0);
	rvt_go(t);
	uint64_t medeleg = rvt_x(t, A0);
	assert_int_equal(medeleg & (1u << 11), 0);
	assert_int_equal(medeleg & 0xb3ff, 0xb3ff);
	assert_int_equal(rvt_x(t, A2) & 0x222, 0x222);
}

/* ---- xRET ----------------------------------------------------------------------- */

static void test_mret(void **state)
{
	struct rvt *t = *state;
	const uint64_t target = CODE + 0x100;
	RVT_ASM(t, target, WFI());
	RVT_ASM(t, CODE, MRET());
	/* to S: MIE = MPIE, MPIE = 1, MPP = U (the least-privileged mode) */
	struct rv_state s = rvt_state(t);
	s.mstatus = (s.mstatus & ~(MSTATUS_MIE | MSTATUS_MPP)) | MSTATUS_MPIE | MPP(RV_PRIV_S) |
		    MSTATUS_MPRV;
	s.mepc = target;
	s.priv = RV_PRIV_M;
	rvt_put_state(t, &s);
	rvt_run_from(t, CODE, target + 4);
	s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_S);
	assert_true(s.mstatus & MSTATUS_MIE);
	assert_true(s.mstatus & MSTATUS_MPIE);
	assert_int_equal(mpp_of(s.mstatus), RV_PRIV_U);
	assert_false(s.mstatus & MSTATUS_MPRV);    /* leaving M clears MPRV */

	/* to U: prove the privilege with an ecall */
	RVT_ASM(t, target, ECALL());
	s.mstatus = (s.mstatus & ~(MSTATUS_MPP | MSTATUS_MPIE)) | MPP(RV_PRIV_U);
	s.priv = RV_PRIV_M;
	s.mepc = target;
	rvt_put_state(t, &s);
	rvt_go_trap_m(t, C_ECALL_U, target, 0);

	/* to M with MPRV: MPRV stays */
	RVT_ASM(t, target, WFI());
	s = rvt_state(t);
	s.mstatus |= MPP(RV_PRIV_M) | MSTATUS_MPRV;
	s.mepc = target;
	rvt_put_state(t, &s);
	rvt_run_from(t, CODE, target + 4);
	s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_M);
	assert_true(s.mstatus & MSTATUS_MPRV);
	assert_false(s.mstatus & MSTATUS_MIE);   /* MPIE was 0 */
}

static void test_sret(void **state)
{
	struct rvt *t = *state;
	const uint64_t target = CODE + 0x100;
	RVT_ASM(t, CODE, SRET());
	RVT_ASM(t, target, ECALL());
	/* S -> U: SIE = SPIE, SPIE = 1, SPP = U */
	struct rv_state s = rvt_state(t);
	s.mstatus = (s.mstatus & ~(MSTATUS_SIE | MSTATUS_SPP)) | MSTATUS_SPIE;
	s.sepc = target;
	s.priv = RV_PRIV_S;
	s.pc = CODE;
	rvt_put_state(t, &s);
	rvt_go_trap_m(t, C_ECALL_U, target, 0);
	s = rvt_state(t);
	assert_true(s.mstatus & MSTATUS_SIE);
	assert_true(s.mstatus & MSTATUS_SPIE);
	assert_false(s.mstatus & MSTATUS_SPP);

	/* S -> S with SPIE = 0 */
	RVT_ASM(t, target, WFI());
	s.mstatus = (s.mstatus & ~MSTATUS_SPIE) | MSTATUS_SPP | MSTATUS_SIE;
	s.priv = RV_PRIV_S;
	rvt_put_state(t, &s);
	rvt_run_from(t, CODE, target + 4);
	s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_S);
	assert_false(s.mstatus & MSTATUS_SIE);
	assert_true(s.mstatus & MSTATUS_SPIE);
	assert_false(s.mstatus & MSTATUS_SPP);

	/* sret is legal in M (it returns per SPP) and clears MPRV */
	s.mstatus |= MSTATUS_SPP | MSTATUS_MPRV;
	s.priv = RV_PRIV_M;
	rvt_put_state(t, &s);
	rvt_run_from(t, CODE, target + 4);
	s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_S);
	assert_false(s.mstatus & MSTATUS_MPRV);
}

static void test_xret_illegal(void **state)
{
	struct rvt *t = *state;
	RVT_SET(t, sepc, CODE + 0x100);
	RVT_SET(t, mepc, CODE + 0x100);
	RVT_ASM(t, CODE, SRET(), WFI());
	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x10200073);
	RVT_ASM(t, CODE, MRET(), WFI());
	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x30200073);
	enter(t, RV_PRIV_S, 0);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x30200073);

	/* TSR: sret in S is illegal, in M it is not */
	RVT_ASM(t, CODE, SRET(), WFI());
	enter(t, RV_PRIV_S, MSTATUS_TSR | MSTATUS_SPP);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x10200073);
	RVT_ASM(t, CODE + 0x100, WFI());
	enter(t, RV_PRIV_M, MSTATUS_TSR | MSTATUS_SPP);
	rvt_run_from(t, CODE, CODE + 0x104);
	assert_int_equal(RVT_GET(t, priv), RV_PRIV_S);
}

/* ---- TW, TVM --------------------------------------------------------------------- */

static void test_wfi_traps(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, WFI());
	enter(t, RV_PRIV_S, 0);
	rvt_go(t);                                         /* legal in S */
	enter(t, RV_PRIV_S, MSTATUS_TW);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x10500073);
	enter(t, RV_PRIV_M, MSTATUS_TW);                   /* TW does not apply to M */
	rvt_go(t);
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) & ~MSTATUS_TW);
	enter(t, RV_PRIV_U, 0);                            /* never legal in U */
	rvt_go_trap_m(t, C_ILLEGAL, CODE, 0x10500073);
}

static void test_tvm(void **state)
{
	struct rvt *t = *state;
	const uint32_t insns[] = { CSRR(A0, CSR_SATP), CSRW(CSR_SATP, ZERO), SFENCE_VMA(0, 0),
				   SFENCE_VMA(A1, 0) };
	for (size_t i = 0; i < sizeof(insns) / sizeof(insns[0]); i++) {
		RVT_ASM(t, CODE, insns[i], WFI());
		enter(t, RV_PRIV_S, 0);
		rvt_go(t);
		enter(t, RV_PRIV_S, MSTATUS_TVM);
		rvt_go_trap_m(t, C_ILLEGAL, CODE, insns[i]);
		enter(t, RV_PRIV_M, MSTATUS_TVM);
		rvt_go(t);
		RVT_SET(t, mstatus, RVT_GET(t, mstatus) & ~MSTATUS_TVM);
	}
	/* sfence.vma is illegal in U */
	RVT_ASM(t, CODE, SFENCE_VMA(0, 0), WFI());
	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, SFENCE_VMA(0, 0));
}

/* ---- interrupts -------------------------------------------------------------------- */

/* S-mode interrupts delegated and enabled in mie, as Linux sets them up. */
static void setup_s_irqs(struct rvt *t, enum rv_priv priv, uint64_t mstatus_bits)
{
	struct rv_state s = rvt_state(t);
	s.mideleg = RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP;
	s.mie = RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP;
	s.mstatus |= mstatus_bits;
	s.priv = priv;
	s.pc = CODE;
	s.menvcfg = MENVCFG_STCE;
	s.mcounteren = 7;
	rvt_put_state(t, &s);
}

static void test_irq_timer(void **state)
{
	struct rvt *t = *state;
	setup_s_irqs(t, RV_PRIV_S, MSTATUS_SIE);
	RVT_SET(t, stimecmp, 100);
	t->time = 50;
	rvt_set_x(t, A0, 0);
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), WFI(), ADDI(A0, A0, 1), WFI());
	rvt_run_from(t, CODE, CODE + 8);             /* not yet: WFI returns */
	assert_false(cpu_wake_pending(t->cpu));
	assert_int_equal(RVT_GET(t, mip) & RV_MIP_STIP, 0);
	assert_int_equal(cpu_timer_deadline(t->cpu), 100);

	t->time = 100;                               /* time >= stimecmp: STIP */
	assert_true(cpu_wake_pending(t->cpu));
	rvt_run_trap_s(t, CODE + 8, INT | RV_IRQ_STI, CODE + 8, 0);
	assert_int_equal(rvt_x(t, A0), 1);
	assert_true(RVT_GET(t, mip) & RV_MIP_STIP);
	assert_true(RVT_GET(t, mstatus) & MSTATUS_SPIE);
	assert_true(RVT_GET(t, mstatus) & MSTATUS_SPP);

	/* Moving stimecmp into the future clears STIP. */
	cpu_set_timer(t->cpu, 1000);
	assert_int_equal(RVT_GET(t, mip) & RV_MIP_STIP, 0);
	assert_int_equal(cpu_timer_deadline(t->cpu), 1000);
	cpu_set_timer(t->cpu, 100);
	assert_true(RVT_GET(t, mip) & RV_MIP_STIP);
}

static void test_irq_timer_while_running(void **state)
{
	struct rvt *t = *state;
	/* The clock passes stimecmp during a loop: the interrupt is taken at
	 * a checkpoint, with sepc somewhere in the loop. */
	setup_s_irqs(t, RV_PRIV_S, MSTATUS_SIE);
	RVT_SET(t, stimecmp, 100);
	t->time = 0;
	t->time_step = 1;          /* every reading of the clock advances it */
	rvt_set_x(t, A0, 0);
	rvt_set_x(t, A1, 0);
	RVT_ASM(t, CODE, ADDI(A0, A0, 1), CSRR(A1, CSR_TIME), J(-8));
	rvt_run_from(t, CODE, RVT_TRAP_S_STOP);
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.scause, INT | RV_IRQ_STI);
	assert_true(s.sepc >= CODE && s.sepc < CODE + 12);
	assert_true(rvt_x(t, A1) >= 99);         /* the loop saw the clock pass stimecmp */
	assert_true(rvt_x(t, A0) >= 99);
}

static void test_irq_software(void **state)
{
	struct rvt *t = *state;
	/* Setting SSIP through sip takes the interrupt right after the csr
	 * instruction. */
	setup_s_irqs(t, RV_PRIV_S, MSTATUS_SIE);
	rvt_set_x(t, A0, 0);
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), CSRRSI(ZERO, CSR_SIP, 2), ADDI(A0, ZERO, 2), WFI());
	rvt_go_trap_s(t, INT | RV_IRQ_SSI, CODE + 8, 0);
	assert_int_equal(rvt_x(t, A0), 1);
	assert_true(RVT_GET(t, mip) & RV_MIP_SSIP);
	assert_int_equal(rvt_x(t, T5), RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP);   /* sie seen by the handler */
}

static void test_irq_external(void **state)
{
	struct rvt *t = *state;
	setup_s_irqs(t, RV_PRIV_S, MSTATUS_SIE);
	RVT_ASM(t, CODE, NOP(), WFI());
	cpu_set_irq(t->cpu, RV_MIP_SEIP, true);
	assert_true(RVT_GET(t, mip) & RV_MIP_SEIP);
	rvt_go_trap_s(t, INT | RV_IRQ_SEI, CODE, 0);   /* taken before the first instruction */
	cpu_set_irq(t->cpu, RV_MIP_SEIP, false);
	assert_int_equal(RVT_GET(t, mip) & RV_MIP_SEIP, 0);
	/* Without a pending interrupt the same program just runs. */
	setup_s_irqs(t, RV_PRIV_S, MSTATUS_SIE);
	rvt_go(t);
}

static void test_irq_enable_rules(void **state)
{
	struct rvt *t = *state;
	/* S-mode with SIE = 0: a pending delegated interrupt waits. The
	 * program clears sie before its WFI, else WFI would not stop. */
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, mip, RV_MIP_SSIP);
	RVT_SET(t, scause, 0);
	rvt_set_x(t, A0, 0);
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), ADDI(A0, A0, 1), CSRW(CSR_SIE, ZERO), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 2);
	assert_int_equal(RVT_GET(t, scause), 0);

	/* Setting SIE takes it right after the csr write. */
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), CSRRSI(ZERO, CSR_SSTATUS, 2), ADDI(A0, ZERO, 2), WFI());
	rvt_go_trap_s(t, INT | RV_IRQ_SSI, CODE + 8, 0);
	assert_int_equal(rvt_x(t, A0), 1);
	assert_true(RVT_GET(t, mstatus) & MSTATUS_SPIE);

	/* In U-mode, S interrupts are taken whatever SIE says. */
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) & ~(MSTATUS_SIE | MSTATUS_SPIE));
	setup_s_irqs(t, RV_PRIV_U, 0);
	rvt_go_trap_s(t, INT | RV_IRQ_SSI, CODE, 0);
	assert_false(RVT_GET(t, mstatus) & MSTATUS_SPP);
	assert_false(RVT_GET(t, mstatus) & MSTATUS_SPIE);

	/* In M-mode, delegated interrupts are never taken, even with MIE. */
	setup_s_irqs(t, RV_PRIV_M, MSTATUS_MIE | MSTATUS_SIE);
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 7), CSRW(CSR_MIE, ZERO), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 7);

	/* Not delegated: it goes to M, from S even with SIE = 0 (M-level
	 * interrupts are always enabled below M) ... */
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, mideleg, 0);
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) & ~(MSTATUS_MIE | MSTATUS_SIE));
	rvt_go_trap_m(t, INT | RV_IRQ_SSI, CODE, 0);
	assert_int_equal(mpp_of(RVT_GET(t, mstatus)), RV_PRIV_S);
	/* ... and in M only with MIE. */
	setup_s_irqs(t, RV_PRIV_M, 0);
	RVT_SET(t, mideleg, 0);
	rvt_go(t);
	setup_s_irqs(t, RV_PRIV_M, MSTATUS_MIE);
	RVT_SET(t, mideleg, 0);
	rvt_go_trap_m(t, INT | RV_IRQ_SSI, CODE, 0);
	assert_true(RVT_GET(t, mstatus) & MSTATUS_MPIE);

	/* A pending interrupt disabled in mie is never taken. */
	setup_s_irqs(t, RV_PRIV_U, 0);
	RVT_SET(t, mie, RV_MIP_STIP);
	RVT_ASM(t, CODE, ECALL());
	rvt_go_trap_m(t, C_ECALL_U, CODE, 0);
}

static void test_irq_priority(void **state)
{
	struct rvt *t = *state;
	/* Among S-level interrupts: SEI, then SSI, then STI (4.1.3). */
	RVT_ASM(t, CODE, ECALL());
	setup_s_irqs(t, RV_PRIV_U, 0);
	RVT_SET(t, stimecmp, 0);
	RVT_SET(t, mip, RV_MIP_SSIP);
	cpu_set_irq(t->cpu, RV_MIP_SEIP, true);
	rvt_go_trap_s(t, INT | RV_IRQ_SEI, CODE, 0);
	cpu_set_irq(t->cpu, RV_MIP_SEIP, false);
	setup_s_irqs(t, RV_PRIV_U, 0);
	rvt_go_trap_s(t, INT | RV_IRQ_SSI, CODE, 0);
	setup_s_irqs(t, RV_PRIV_U, 0);
	RVT_SET(t, mip, 0);
	rvt_go_trap_s(t, INT | RV_IRQ_STI, CODE, 0);
}

static void test_irq_m_level_first(void **state)
{
	struct rvt *t = *state;
	/* An interrupt for M is serviced before one for S (3.1.9: "interrupts
	 * for higher-privilege modes must be serviced before interrupts for
	 * lower-privilege modes"), whatever their numbers: here STI (not
	 * delegated, traps to M) and SEI (delegated to S) are both pending. */
	RVT_ASM(t, CODE, ECALL());
	setup_s_irqs(t, RV_PRIV_U, 0);
	RVT_SET(t, mideleg, RV_MIP_SEIP);
	RVT_SET(t, stimecmp, 0);
	cpu_set_irq(t->cpu, RV_MIP_SEIP, true);
	rvt_go_trap_m(t, INT | RV_IRQ_STI, CODE, 0);
}

static void test_irq_vectored(void **state)
{
	struct rvt *t = *state;
	rvt_install_vectors(t);
	RVT_SET(t, stvec, RVT_VEC_S | 1);
	assert_int_equal(RVT_GET(t, stvec), RVT_VEC_S | 1);
	/* interrupts go to base + 4 * cause */
	const struct { uint64_t bit; unsigned cause; } irqs[] = {
		{ RV_MIP_SSIP, RV_IRQ_SSI }, { RV_MIP_STIP, RV_IRQ_STI }, { RV_MIP_SEIP, RV_IRQ_SEI },
	};
	RVT_ASM(t, CODE, NOP(), WFI());
	for (size_t i = 0; i < 3; i++) {
		setup_s_irqs(t, RV_PRIV_S, MSTATUS_SIE);
		RVT_SET(t, mie, irqs[i].bit);
		RVT_SET(t, stimecmp, irqs[i].bit == RV_MIP_STIP ? 0 : ~0ull);
		RVT_SET(t, mip, 0);
		cpu_set_irq(t->cpu, irqs[i].bit & ~RV_MIP_STIP, true);
		rvt_go_trap_s(t, INT | irqs[i].cause, CODE, 0);
		assert_int_equal(rvt_x(t, T4), RVT_VEC_S + 4 * irqs[i].cause + 4);
		cpu_set_irq(t->cpu, irqs[i].bit & ~RV_MIP_STIP, false);
	}
	/* exceptions go to base */
	RVT_SET(t, medeleg, 1u << C_ECALL_U);
	RVT_ASM(t, CODE, ECALL());
	enter(t, RV_PRIV_U, 0);
	rvt_go_trap_s(t, C_ECALL_U, CODE, 0);
	assert_int_equal(rvt_x(t, T4), RVT_VEC_S + 4);

	/* mtvec in vectored mode, for an interrupt that goes to M */
	const uint64_t vec_m = RVT_VEC_S + 0x100;
	rvt_org(t, vec_m);
	for (unsigned n = 0; n < 16; n++)
		rvt_i(t, JAL(T4, (int32_t)(RVT_TRAP_M - (vec_m + 4 * n))));
	RVT_SET(t, mtvec, vec_m | 1);
	RVT_ASM(t, CODE, NOP(), WFI());
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, mideleg, 0);
	RVT_SET(t, mie, RV_MIP_STIP);
	RVT_SET(t, stimecmp, 0);
	rvt_go_trap_m(t, INT | RV_IRQ_STI, CODE, 0);
	assert_int_equal(rvt_x(t, T4), vec_m + 4 * RV_IRQ_STI + 4);
	/* reserved modes 2, 3 are not kept */
	rvt_set_x(t, A1, RVT_VEC_S | 2);
	rvt_set_x(t, A2, RVT_VEC_S | 3);
	RVT_ASM(t, CODE, CSRW(CSR_STVEC, A1), CSRR(A0, CSR_STVEC), CSRW(CSR_STVEC, A2), CSRR(A3, CSR_STVEC),
		CSRW(CSR_MTVEC, A1), CSRR(A4, CSR_MTVEC), CSRW(CSR_MTVEC, A2), CSRR(A5, CSR_MTVEC),
		CSRW(CSR_MTVEC, A6), WFI());
	rvt_set_x(t, A6, RVT_TRAP_M);
	RVT_SET(t, mtvec, RVT_TRAP_M);
	enter(t, RV_PRIV_M, 0);
	rvt_go(t);
	assert_true((rvt_x(t, A0) & 3) < 2);
	assert_true((rvt_x(t, A3) & 3) < 2);
	assert_true((rvt_x(t, A4) & 3) < 2);
	assert_true((rvt_x(t, A5) & 3) < 2);
}

static void test_wfi_wake_rules(void **state)
{
	struct rvt *t = *state;
	/* Nothing pending: WFI returns to the caller. */
	RVT_ASM(t, CODE, WFI(), ADDI(A0, ZERO, 7), CSRW(CSR_MIE, ZERO), WFI());
	rvt_run_from(t, CODE, CODE + 4);
	assert_false(cpu_wake_pending(t->cpu));

	/* Pending but not enabled in mie: WFI still returns. */
	RVT_SET(t, mip, RV_MIP_SSIP);
	RVT_SET(t, mie, RV_MIP_STIP);
	rvt_run_from(t, CODE, CODE + 4);
	assert_false(cpu_wake_pending(t->cpu));

	/* Pending and enabled in mie, though globally disabled (M, MIE = 0):
	 * WFI wakes at once and execution goes on past it. */
	RVT_SET(t, mie, RV_MIP_SSIP);
	assert_true(cpu_wake_pending(t->cpu));
	rvt_set_x(t, A0, 0);
	rvt_run_from(t, CODE, CODE + 16);
	assert_int_equal(rvt_x(t, A0), 7);
	assert_int_equal(RVT_GET(t, mcause), 0);

	/* The timer counts as pending from time_now(), before any checkpoint. */
	RVT_SET(t, mip, 0);
	RVT_SET(t, mie, RV_MIP_STIP);
	RVT_SET(t, stimecmp, 500);
	t->time = 499;
	assert_false(cpu_wake_pending(t->cpu));
	t->time = 500;
	assert_true(cpu_wake_pending(t->cpu));
}

static void test_stimecmp_csr(void **state)
{
	struct rvt *t = *state;
	/* Sstc: S-mode access needs menvcfg.STCE and mcounteren.TM. */
	rvt_set_x(t, A1, 1000);
	RVT_ASM(t, CODE, CSRW(CSR_STIMECMP, A1), CSRR(A0, CSR_SIP), WFI());
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, menvcfg, 0);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, CSRW(CSR_STIMECMP, A1));
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, mcounteren, 5);
	rvt_go_trap_m(t, C_ILLEGAL, CODE, CSRW(CSR_STIMECMP, A1));

	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, mie, 0);                      /* so that WFI returns */
	t->time = 10;
	rvt_go(t);
	assert_int_equal(RVT_GET(t, stimecmp), 1000);
	assert_int_equal(rvt_x(t, A0) & RV_MIP_STIP, 0);
	rvt_set_x(t, A1, 10);                    /* now <= time: STIP at once */
	setup_s_irqs(t, RV_PRIV_S, 0);
	RVT_SET(t, mie, 0);
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0) & RV_MIP_STIP, RV_MIP_STIP);

	/* STIP is not writable through mip (it follows stimecmp); SSIP is. */
	RVT_SET(t, stimecmp, ~0ull);
	rvt_set_x(t, A1, RV_MIP_STIP | RV_MIP_SSIP);
	RVT_ASM(t, CODE, CSRRS(ZERO, CSR_MIP, A1), CSRR(A0, CSR_MIP), WFI());
	enter(t, RV_PRIV_M, 0);
	RVT_SET(t, mie, 0);
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0) & (RV_MIP_STIP | RV_MIP_SSIP), RV_MIP_SSIP);
}

static void test_kick(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), WFI());
	rvt_set_x(t, A0, 0);
	RVT_SET(t, minstret, 0);
	cpu_kick(t->cpu);
	assert_int_equal(rvt_run(t), CPU_EXIT_KICKED);
	assert_int_equal(RVT_GET(t, pc), CODE);
	assert_int_equal(rvt_x(t, A0), 0);
	assert_int_equal(RVT_GET(t, minstret), 0);
	rvt_go(t);                               /* the kick was consumed */
	assert_int_equal(rvt_x(t, A0), 1);
}

/* ---- CSRs ----------------------------------------------------------------------------- */

static void test_mstatus_warl(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, MPP(2));
	rvt_set_x(t, A2, MPP(1));
	rvt_set_x(t, A3, MPP(3) | FS(3));
	rvt_set_x(t, A4, FS(1) | MSTATUS_SD);
	rvt_set_x(t, A5, 0);
	RVT_ASM(t, CODE,
		CSRW(CSR_MSTATUS, A1), CSRR(S2, CSR_MSTATUS),
		CSRW(CSR_MSTATUS, A2), CSRR(S3, CSR_MSTATUS),
		CSRW(CSR_MSTATUS, A3), CSRR(S4, CSR_MSTATUS), CSRR(S5, CSR_SSTATUS),
		CSRW(CSR_MSTATUS, A4), CSRR(S6, CSR_MSTATUS),
		CSRW(CSR_MSTATUS, A5), CSRR(S7, CSR_MSTATUS),
		WFI());
	rvt_go(t);
	assert_int_not_equal(mpp_of(rvt_x(t, S2)), 2);   /* 2 is reserved (no H) */
	assert_int_equal(mpp_of(rvt_x(t, S3)), 1);
	assert_int_equal(mpp_of(rvt_x(t, S4)), 3);
	/* SD = (FS == 3) (no VS, no XS), in mstatus and sstatus alike */
	assert_true(rvt_x(t, S4) & MSTATUS_SD);
	assert_true(rvt_x(t, S5) & MSTATUS_SD);
	assert_false(rvt_x(t, S6) & MSTATUS_SD);          /* SD is read-only */
	assert_int_equal(rvt_x(t, S6) & MSTATUS_FS, FS(1));
	/* UXL = SXL = 2 (64-bit), read-only */
	assert_int_equal(rvt_x(t, S7) & (MSTATUS_UXL | MSTATUS_SXL), MSTATUS_UXL_64 | MSTATUS_SXL_64);
	assert_int_equal(rvt_x(t, S7) & ~(MSTATUS_UXL | MSTATUS_SXL), 0);
}

static void test_sstatus_view(void **state)
{
	struct rvt *t = *state;
	const uint64_t m_only = MSTATUS_MIE | MSTATUS_MPIE | MPP(3) | MSTATUS_MPRV | MSTATUS_TVM |
				MSTATUS_TW | MSTATUS_TSR;
	const uint64_t s_bits = MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR |
				FS(1);
	RVT_SET(t, mstatus, MSTATUS_UXL_64 | MSTATUS_SXL_64 | m_only | s_bits);
	rvt_set_x(t, A1, ~0ull);
	RVT_ASM(t, CODE, CSRR(S2, CSR_SSTATUS), CSRW(CSR_SSTATUS, ZERO), CSRR(S3, CSR_MSTATUS),
		CSRW(CSR_SSTATUS, A1), CSRR(S4, CSR_MSTATUS), CSRR(S5, CSR_SSTATUS), WFI());
	rvt_go(t);
	/* sstatus shows SD, UXL, MXR, SUM, FS, SPP, SPIE, SIE (and the
	 * absent UBE, VS, XS) and none of the M fields. */
	assert_int_equal(rvt_x(t, S2), s_bits | MSTATUS_UXL_64);
	/* writing it changes only the S fields of mstatus */
	assert_int_equal(rvt_x(t, S3), MSTATUS_UXL_64 | MSTATUS_SXL_64 | m_only);
	assert_int_equal(rvt_x(t, S4) & m_only, m_only);
	assert_int_equal(rvt_x(t, S4) & (s_bits | MSTATUS_FS),
			 s_bits | MSTATUS_FS);
	assert_int_equal(rvt_x(t, S4) & (MSTATUS_UXL | MSTATUS_SXL), MSTATUS_UXL_64 | MSTATUS_SXL_64);
	assert_int_equal(rvt_x(t, S5), s_bits | MSTATUS_FS | MSTATUS_SD | MSTATUS_UXL_64);
}

static void test_sie_sip_follow_mideleg(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, ~0ull);
	rvt_set_x(t, A2, RV_MIP_SSIP | RV_MIP_STIP);
	RVT_ASM(t, CODE, CSRW(CSR_SIE, A1), CSRR(S2, CSR_SIE), CSRR(S3, CSR_MIE),
		CSRRS(ZERO, CSR_SIP, A2), CSRR(S4, CSR_SIP), CSRR(S5, CSR_MIP), CSRW(CSR_MIE, ZERO),
		WFI());
	/* Nothing delegated: sie and sip are all zero and read-only. */
	struct rv_state s = rvt_state(t);
	s.mideleg = 0;
	s.mie = RV_MIP_MTIP;
	s.mip = 0;
	rvt_put_state(t, &s);
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0);
	assert_int_equal(rvt_x(t, S3), RV_MIP_MTIP);
	assert_int_equal(rvt_x(t, S4), 0);
	assert_int_equal(rvt_x(t, S5), 0);

	/* Delegated: sie is mie & mideleg; SSIP is writable through sip,
	 * STIP is not. */
	s = rvt_state(t);
	s.mideleg = RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP;
	s.mie = RV_MIP_MTIP;
	s.mip = 0;
	rvt_put_state(t, &s);
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP);
	assert_int_equal(rvt_x(t, S3), RV_MIP_MTIP | RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP);
	assert_int_equal(rvt_x(t, S4), RV_MIP_SSIP);
	assert_int_equal(rvt_x(t, S5), RV_MIP_SSIP);
}

static void test_misa_mhartid(void **state)
{
	struct rvt *t = *state;
	/* MXL = 2 (RV64); extensions A C D F I M S U */
	const uint64_t misa = 2ull << 62 | 1u << ('A' - 'A') | 1u << ('C' - 'A') | 1u << ('D' - 'A') |
			      1u << ('F' - 'A') | 1u << ('I' - 'A') | 1u << ('M' - 'A') |
			      1u << ('S' - 'A') | 1u << ('U' - 'A');
	RVT_ASM(t, CODE, CSRR(A0, CSR_MISA), CSRW(CSR_MISA, ZERO), CSRR(A1, CSR_MISA),
		CSRR(A2, CSR_MHARTID), CSRR(A3, CSR_MVENDORID), CSRR(A4, CSR_MARCHID),
		CSRR(A5, CSR_MIMPID), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), misa);
	assert_int_equal(rvt_x(t, A1), misa);   /* writes are ignored */
	assert_int_equal(rvt_x(t, A2), 0);
	assert_int_equal(rvt_x(t, A3), 0);

	struct rvt *t5 = rvt_new(5);
	assert_non_null(t5);
	RVT_ASM(t5, CODE, CSRR(A2, CSR_MHARTID), WFI());
	rvt_go(t5);
	assert_int_equal(rvt_x(t5, A2), 5);
	assert_int_equal(RVT_GET(t5, mhartid), 5);
	rvt_free(t5);
}

static void test_minstret(void **state)
{
	struct rvt *t = *state;
	/* 1 + 2 * 100 + 1 instructions, WFI included (it retires). */
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 100), ADDI(A0, A0, -1), BNE(A0, ZERO, -4), WFI());
	RVT_SET(t, minstret, 0);
	rvt_go(t);
	assert_int_equal(RVT_GET(t, minstret), 202);
	assert_int_equal(RVT_GET(t, mcycle), RVT_GET(t, minstret));

	/* A csr read sees the instructions before it. */
	RVT_ASM(t, CODE, NOP(), NOP(), NOP(), CSRR(A0, CSR_MINSTRET), CSRR(A1, CSR_INSTRET), WFI());
	RVT_SET(t, minstret, 1000);
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 1003);
	assert_int_equal(rvt_x(t, A1), 1004);
	assert_int_equal(RVT_GET(t, minstret), 1006);

	/* More than one run-loop budget (4096): counting survives checkpoints. */
	RVT_ASM(t, CODE, LUI(A0, 3), ADDI(A0, A0, -1), BNE(A0, ZERO, -4), WFI());   /* 12288 loops */
	RVT_SET(t, minstret, 0);
	rvt_go(t);
	assert_int_equal(RVT_GET(t, minstret), 1 + 2 * 12288 + 1);

	/* ECALL and EBREAK do not retire (unprivileged manual, 2.8), nor does a
	 * faulting instruction: only the handler's two instructions count. */
	const uint32_t traps[] = { ECALL(), EBREAK(), 0x0000000b, LD(A0, 0, ZERO) };
	for (size_t i = 0; i < sizeof(traps) / sizeof(traps[0]); i++) {
		RVT_ASM(t, CODE, traps[i], WFI());
		RVT_SET(t, minstret, 0);
		rvt_run_from(t, CODE, RVT_TRAP_M_STOP);
		assert_int_equal(RVT_GET(t, minstret), 2);
	}
}

static void test_minstret_write(void **state)
{
	struct rvt *t = *state;
	/* "If a CSR access instruction writes such a CSR, the write is done
	 * instead of the increment" (unprivileged manual, Zicsr, 9.1): the
	 * csrw itself adds nothing, the csrr right after reads the value. */
	rvt_set_x(t, A1, 100);
	RVT_ASM(t, CODE, CSRW(CSR_MINSTRET, A1), CSRR(A0, CSR_MINSTRET), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 100);
}

static void test_counter_access(void **state)
{
	struct rvt *t = *state;
	t->time = 12345;
	RVT_ASM(t, CODE, CSRR(A0, CSR_TIME), CSRR(A1, CSR_CYCLE), CSRR(A2, CSR_INSTRET), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 12345);

	/* S needs mcounteren; U needs mcounteren and scounteren, per counter
	 * (CY = bit 0, TM = 1, IR = 2). */
	const struct { uint16_t csr; unsigned bit; } ctr[] = {
		{ CSR_CYCLE, 0 }, { CSR_TIME, 1 }, { CSR_INSTRET, 2 },
	};
	for (size_t i = 0; i < 3; i++) {
		const uint32_t insn = CSRR(A0, ctr[i].csr);
		const uint64_t bit = 1u << ctr[i].bit, others = 7 & ~bit;
		RVT_ASM(t, CODE, insn, WFI());

		RVT_SET(t, mcounteren, others);
		RVT_SET(t, scounteren, 7);
		enter(t, RV_PRIV_S, 0);
		rvt_go_trap_m(t, C_ILLEGAL, CODE, insn);
		RVT_SET(t, mcounteren, bit);
		RVT_SET(t, scounteren, 0);
		enter(t, RV_PRIV_S, 0);
		rvt_go(t);

		RVT_ASM(t, CODE, insn, ECALL());
		RVT_SET(t, mcounteren, 7);
		RVT_SET(t, scounteren, others);
		enter(t, RV_PRIV_U, 0);
		rvt_go_trap_m(t, C_ILLEGAL, CODE, insn);
		RVT_SET(t, mcounteren, others);
		RVT_SET(t, scounteren, 7);
		enter(t, RV_PRIV_U, 0);
		rvt_go_trap_m(t, C_ILLEGAL, CODE, insn);
		RVT_SET(t, mcounteren, bit);
		RVT_SET(t, scounteren, bit);
		enter(t, RV_PRIV_U, 0);
		rvt_go_trap_m(t, C_ECALL_U, CODE + 4, 0);
	}
	/* the last loop read instret in U: csrr, (ecall), csrrw, wfi followed */
	assert_int_equal(rvt_x(t, A0), RVT_GET(t, minstret) - 3);
}

static void test_csr_privilege(void **state)
{
	struct rvt *t = *state;
	const struct { uint32_t insn; enum rv_priv priv; bool legal; } cases[] = {
		{ CSRR(A0, CSR_MSTATUS), RV_PRIV_S, false },
		{ CSRW(CSR_MSCRATCH, A1), RV_PRIV_S, false },
		{ CSRR(A0, CSR_MHARTID), RV_PRIV_S, false },
		{ CSRR(A0, CSR_MEPC), RV_PRIV_S, false },
		{ CSRR(A0, CSR_SSTATUS), RV_PRIV_U, false },
		{ CSRW(CSR_SSCRATCH, A1), RV_PRIV_U, false },
		{ CSRR(A0, CSR_SATP), RV_PRIV_U, false },
		{ CSRR(A0, CSR_SSTATUS), RV_PRIV_S, true },
		{ CSRW(CSR_SSCRATCH, A1), RV_PRIV_S, true },
		{ CSRR(A0, CSR_SIP), RV_PRIV_S, true },
		{ CSRR(A0, CSR_SSCRATCH), RV_PRIV_M, true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		RVT_ASM(t, CODE, cases[i].insn, EBREAK());
		enter(t, cases[i].priv, 0);
		rvt_run_from(t, CODE, RVT_TRAP_M_STOP);
		struct rv_state s = rvt_state(t);
		assert_int_equal(s.mcause, cases[i].legal ? C_BREAK : C_ILLEGAL);
		assert_int_equal(s.mepc, cases[i].legal ? CODE + 4 : CODE);
		if (!cases[i].legal)
			assert_int_equal(s.mtval, cases[i].insn);
	}
}

static void test_unknown_csr(void **state)
{
	struct rvt *t = *state;
	const uint32_t bad[] = {
		CSRR(A0, 0x7b0),        /* dcsr: debug mode only */
		CSRR(A0, 0x5c0),        /* custom S read/write: none here */
		CSRW(0x800, A1),        /* custom U */
		CSRR(A0, 0x15d),        /* stimecmph: RV32 only */
		CSRR(A0, 0xc80),        /* cycleh: RV32 only */
		CSRR(A0, 0x200),        /* hypervisor-level: no H */
		CSRR(A0, 0x000),
		CSRRW(ZERO, 0x7b0, A1), /* also when only written (rd = x0) */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		RVT_ASM(t, CODE, bad[i], WFI());
		enter(t, RV_PRIV_M, FS(1));
		rvt_go_trap_m(t, C_ILLEGAL, CODE, bad[i]);
	}
}

static void test_pmp_csrs(void **state)
{
	struct rvt *t = *state;
	/* No PMP: the registers may read as zero and ignore writes. */
	rvt_set_x(t, A1, ~0ull);
	RVT_ASM(t, CODE, CSRW(CSR_PMPCFG0, A1), CSRR(A0, CSR_PMPCFG0), CSRW(CSR_PMPADDR0, A1),
		CSRR(A2, CSR_PMPADDR0), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0);
	assert_int_equal(rvt_x(t, A2), 0);
}

static void test_pmpcfg_odd_is_illegal_on_rv64(void **state)
{
	struct rvt *t = *state;
	/* Privileged manual 3.7.1: "For RV64, the odd-numbered configuration
	 * registers, pmpcfg1, pmpcfg3, ..., pmpcfg15, are illegal." */
	RVT_ASM(t, CODE, CSRR(A0, CSR_PMPCFG0 + 1), WFI());
	rvt_go_trap_m(t, C_ILLEGAL, CODE, CSRR(A0, CSR_PMPCFG0 + 1));
}

static void test_epc_and_counteren_warl(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, CODE + 3);
	rvt_set_x(t, A2, ~0ull);
	RVT_ASM(t, CODE, CSRW(CSR_MEPC, A1), CSRR(S2, CSR_MEPC), CSRW(CSR_SEPC, A1), CSRR(S3, CSR_SEPC),
		CSRW(CSR_MCOUNTEREN, A2), CSRR(S4, CSR_MCOUNTEREN), CSRW(CSR_SCOUNTEREN, A2),
		CSRR(S5, CSR_SCOUNTEREN), CSRW(CSR_MENVCFG, A2), CSRR(S6, CSR_MENVCFG), WFI());
	rvt_go(t);
	/* With C, xepc[0] is zero and xepc[1] is kept. */
	assert_int_equal(rvt_x(t, S2), CODE + 2);
	assert_int_equal(rvt_x(t, S3), CODE + 2);
	assert_int_equal(rvt_x(t, S4) & 7, 7);
	assert_int_equal(rvt_x(t, S5) & 7, 7);
	assert_true(rvt_x(t, S6) & MENVCFG_STCE);
}

static void test_satp_writes(void **state)
{
	struct rvt *t = *state;
	const uint64_t sv39 = SATP_SV39(RVT_PT);
	rvt_set_x(t, A1, sv39 | (0xffffull << 44));       /* with an ASID */
	rvt_set_x(t, A2, (10ull << 60) | 0x1234);         /* Sv57 */
	rvt_set_x(t, A3, (9ull << 60) | 0x1234);          /* Sv48 (off by default) */
	rvt_set_x(t, A4, (1ull << 60) | 0x1234);          /* reserved mode */
	RVT_ASM(t, CODE, CSRW(CSR_SATP, A1), CSRR(S2, CSR_SATP), CSRW(CSR_SATP, A2), CSRR(S3, CSR_SATP),
		CSRW(CSR_SATP, A3), CSRR(S4, CSR_SATP), CSRW(CSR_SATP, A4), CSRR(S5, CSR_SATP),
		CSRW(CSR_SATP, ZERO), CSRR(S6, CSR_SATP), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), sv39);             /* ASIDLEN = 0: reads back 0 */
	assert_int_equal(rvt_x(t, S3), sv39);             /* unsupported mode: no effect */
	assert_int_equal(rvt_x(t, S4), sv39);
	assert_int_equal(rvt_x(t, S5), sv39);
	assert_int_equal(rvt_x(t, S6), 0);                /* Bare */
}

static void test_state_roundtrip(void **state)
{
	struct rvt *t = *state;
	struct rv_state s = rvt_state(t), r;
	for (unsigned i = 1; i < 32; i++) {
		s.x[i] = 0x1000 + i;
		s.f[i] = 0x2000 + i;
	}
	s.pc = CODE + 0x40;
	s.priv = RV_PRIV_S;
	s.fcsr = 0x65;
	s.mepc = 0x1234;
	s.sscratch = 0x5678;
	s.stimecmp = 0x9999;
	s.satp = SATP_SV39(RVT_PT);
	s.minstret = 777;
	rvt_put_state(t, &s);
	r = rvt_state(t);
	for (unsigned i = 1; i < 32; i++) {
		assert_int_equal(r.x[i], 0x1000 + i);
		assert_int_equal(r.f[i], 0x2000 + i);
		assert_int_equal(rvt_x(t, i), 0x1000 + i);
	}
	assert_int_equal(r.x[0], 0);
	assert_int_equal(r.pc, CODE + 0x40);
	assert_int_equal(r.priv, RV_PRIV_S);
	assert_int_equal(r.fcsr, 0x65);
	assert_int_equal(r.mepc, 0x1234);
	assert_int_equal(r.sscratch, 0x5678);
	assert_int_equal(r.stimecmp, 0x9999);
	assert_int_equal(r.satp, SATP_SV39(RVT_PT));
	assert_int_equal(r.minstret, 777);
	assert_int_equal(cpu_timer_deadline(t->cpu), 0x9999);
}

/* ---- Sv39 ------------------------------------------------------------------------------ */

#define VA     0x40000000ull          /* root index 1: away from the identity map */
#define VA_U   0x40100000ull          /* U-mode code */
#define PA_U   0x80004000ull

static uint64_t paging_s(struct rvt *t)
{
	uint64_t root = rvt_paging_identity(t);
	rvt_set_priv(t, RV_PRIV_S);
	return root;
}

static uint64_t pte_at(struct rvt *t, uint64_t root, uint64_t va, int level)
{
	return rvt_r64(t, rvt_pte_addr(t, root, va, level));
}

static struct rv_interp *interp(struct rvt *t)
{
	return to_interp(t->cpu);
}

static void test_sv39_4k(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	rvt_map(t, root, VA, DATA, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x1000, DATA + 0x3000, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_w64(t, DATA, 0x1111);
	rvt_w64(t, DATA + 0x3ff8, 0x2222);
	rvt_set_x(t, A1, VA);
	rvt_set_x(t, A2, 0xabcdef);
	rvt_w64(t, DATA + 0x37f8, 0x3333);
	RVT_ASM(t, CODE, LD(A0, 0, A1), SD(A2, 8, A1), LUI(T0, 1), ADD(T0, T0, A1), LD(A4, 0x7f8, T0),
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0x1111);
	assert_int_equal(rvt_r64(t, DATA + 8), 0xabcdef);
	assert_int_equal(rvt_x(t, A4), 0x3333);         /* VA + 0x17f8 -> DATA + 0x37f8 */
	uint64_t pa = 0;
	assert_true(rv_translate(interp(t), VA + 0x1ff8, ACCESS_READ, &pa));
	assert_int_equal(pa, DATA + 0x3ff8);
	assert_true(rv_translate(interp(t), VA + 0x123, ACCESS_WRITE, &pa));
	assert_int_equal(pa, DATA + 0x123);
	assert_false(rv_translate(interp(t), VA + 0x123, ACCESS_FETCH, &pa));
	assert_false(rv_translate(interp(t), VA + 0x2000, ACCESS_READ, &pa));
}

static void test_sv39_ad_bits(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	rvt_map(t, root, VA, DATA, 0, PTE_R | PTE_W);           /* A = D = 0 */
	rvt_map(t, root, VA_U, PA_U, 0, PTE_R | PTE_X | PTE_U); /* code page, A = 0 */
	rvt_set_x(t, A1, VA);
	RVT_ASM(t, CODE, LD(A0, 0, A1), WFI(), SD(A0, 8, A1), WFI());
	rvt_run_from(t, CODE, CODE + 8);
	uint64_t pte = pte_at(t, root, VA, 0);
	assert_true(pte & PTE_A);                /* set by the load */
	assert_false(pte & PTE_D);
	guest_ram_clear_dirty(&t->ram);
	rvt_run_from(t, CODE + 8, CODE + 16);
	pte = pte_at(t, root, VA, 0);
	assert_true(pte & PTE_A);
	assert_true(pte & PTE_D);                /* set by the store */
	/* Both the data page and the page-table page count as written. */
	assert_true(guest_ram_page_dirty(&t->ram, DATA));
	assert_true(guest_ram_page_dirty(&t->ram, rvt_pte_addr(t, root, VA, 0)));

	/* A store through a page whose read translation is cached still sets D. */
	rvt_map(t, root, VA, DATA, 0, PTE_R | PTE_W | PTE_A);
	RVT_ASM(t, CODE, SFENCE_VMA(0, 0), LD(A0, 0, A1), SD(A0, 16, A1), WFI());
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go(t);
	assert_true(pte_at(t, root, VA, 0) & PTE_D);

	/* An instruction fetch sets A on the code page (and never D). */
	RVT_ASM(t, PA_U, ECALL());
	rvt_set_priv(t, RV_PRIV_U);
	rvt_run_trap_m(t, VA_U, C_ECALL_U, VA_U, 0);
	pte = pte_at(t, root, VA_U, 0);
	assert_true(pte & PTE_A);
	assert_false(pte & PTE_D);
}

enum acc { LOAD, STORE, FETCH };

/* One access at va from priv (S runs at CODE, U at VA_U, which the test
 * must have mapped). Returns 0 if it completed, else the exception cause,
 * after checking mepc and mtval. A FETCH target must hold an ECALL. */
static uint64_t try_access(struct rvt *t, enum rv_priv priv, enum acc a, uint64_t va)
{
	const uint64_t code = priv == RV_PRIV_U ? VA_U : CODE;
	const uint64_t code_pa = priv == RV_PRIV_U ? PA_U : CODE;
	const uint32_t insn = a == LOAD ? LD(A0, 0, A1) : a == STORE ? SD(A2, 0, A1) : JALR(ZERO, A1, 0);
	RVT_ASM(t, code_pa, insn, ECALL());
	rvt_set_x(t, A1, va);
	struct rv_state s = rvt_state(t);
	s.priv = priv;
	rvt_put_state(t, &s);
	rvt_run_from(t, code, RVT_TRAP_M_STOP);    /* ends in M: the ecall or a fault */
	s = rvt_state(t);
	if (s.mcause == (priv == RV_PRIV_U ? C_ECALL_U : C_ECALL_S)) {
		assert_int_equal(s.mepc, a == FETCH ? va : code + 4);
		return 0;
	}
	if (s.mepc != (a == FETCH ? va : code) || s.mtval != va)
		rvt_dump(t);
	assert_int_equal(s.mepc, a == FETCH ? va : code);
	assert_int_equal(s.mtval, va);
	return s.mcause;
}

static void test_sv39_superpages(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	const uint64_t mega = VA + 0x200000, giga = 0xc0000000ull;
	rvt_map(t, root, mega, RVT_RAM_BASE + 0x200000, 1, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, giga, RVT_RAM_BASE, 2, PTE_R | PTE_A);                /* read-only */
	rvt_map(t, root, VA + 0x400000, RVT_RAM_BASE + 0x200000, 1, PTE_R);   /* A = 0 */
	rvt_w64(t, RVT_RAM_BASE + 0x201238, 0x202020);
	rvt_w64(t, RVT_RAM_BASE + 0x3ffff8, 0x3f3f3f);
	rvt_w64(t, DATA + 0x10, 0xc0c0c0);
	rvt_set_x(t, A1, mega + 0x1238);
	rvt_set_x(t, A2, mega + 0x1ffff8);
	rvt_set_x(t, A3, giga + (DATA - RVT_RAM_BASE) + 0x10);
	rvt_set_x(t, A4, 0x5555);
	rvt_set_x(t, A5, VA + 0x400000 + 0x1238);
	RVT_ASM(t, CODE, LD(S2, 0, A1), LD(S3, 0, A2), LD(S4, 0, A3), SD(A4, 8, A1), LD(S5, 0, A5),
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0x202020);
	assert_int_equal(rvt_x(t, S3), 0x3f3f3f);
	assert_int_equal(rvt_x(t, S4), 0xc0c0c0);
	assert_int_equal(rvt_r64(t, RVT_RAM_BASE + 0x201240), 0x5555);
	assert_int_equal(rvt_x(t, S5), 0x202020);
	assert_true(pte_at(t, root, VA + 0x400000, 1) & PTE_A);
	assert_false(pte_at(t, root, VA + 0x400000, 1) & PTE_D);

	uint64_t pa = 0;
	assert_true(rv_translate(interp(t), mega + 0x1abcde, ACCESS_READ, &pa));
	assert_int_equal(pa, RVT_RAM_BASE + 0x3abcde);
	assert_true(rv_translate(interp(t), giga + 0x123456, ACCESS_READ, &pa));
	assert_int_equal(pa, RVT_RAM_BASE + 0x123456);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, giga + 0x10000), C_STORE_PF);
}

static void test_sv39_misaligned_superpage(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	/* A superpage whose PPN has nonzero low bits is a page fault. */
	rvt_map(t, root, VA + 0x200000, RVT_RAM_BASE + 0x201000, 1, PTE_RWX | PTE_A | PTE_D);
	rvt_map(t, root, 0xc0000000ull, RVT_RAM_BASE + 0x200000, 2, PTE_RWX | PTE_A | PTE_D);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 0x200008), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 0x200008), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA + 0x200008), C_INSN_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, 0xc0000000ull), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, 0xc0001000ull), C_STORE_PF);
}

static void test_sv39_bad_ptes(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	const uint64_t pte_pa = rvt_pte_addr(t, root, VA, 0);
	const uint64_t good = PTE_LEAF(DATA, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_w64(t, pte_pa, good);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 8), 0);

	const uint64_t bad[] = {
		good & ~PTE_V,                                         /* invalid */
		PTE_LEAF(DATA, PTE_V | PTE_W | PTE_A | PTE_D),         /* W without R */
		PTE_LEAF(DATA, PTE_V | PTE_W | PTE_X | PTE_A | PTE_D), /* W without R */
		good | 1ull << 54,                                     /* reserved bits 63:54 */
		good | 1ull << 61,                                     /* PBMT: no Svpbmt */
		good | 1ull << 63,                                     /* N: no Svnapot */
		PTE_LEAF(DATA, PTE_V),                                 /* a pointer at level 0 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rvt_w64(t, pte_pa, bad[i]);
		assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 8), C_LOAD_PF);
		assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 8), C_STORE_PF);
		assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA + 8), C_INSN_PF);
	}
	rvt_w64(t, pte_pa, good);

	/* D, A and U are reserved in non-leaf PTEs. */
	const uint64_t l1_pa = rvt_pte_addr(t, root, VA, 1);
	const uint64_t l1 = rvt_r64(t, l1_pa);
	const uint64_t nonleaf_bits[] = { PTE_A, PTE_D, PTE_U };
	for (size_t i = 0; i < 3; i++) {
		rvt_w64(t, l1_pa, l1 | nonleaf_bits[i]);
		assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 8), C_LOAD_PF);
	}
	rvt_w64(t, l1_pa, l1);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 8), 0);

	/* A valid leaf that points where there is no memory: access fault. */
	rvt_w64(t, pte_pa, PTE_LEAF(RVT_NO_DEVICE, PTE_V | PTE_RWX | PTE_A | PTE_D));
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 8), C_LOAD_ACCESS);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 8), C_STORE_ACCESS);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA + 8), C_INSN_ACCESS);
}

static void test_sv39_permissions(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	rvt_map(t, root, VA, DATA, 0, PTE_R | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x1000, DATA + 0x1000, 0, PTE_X | PTE_A);
	rvt_map(t, root, VA + 0x2000, DATA + 0x2000, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x3000, DATA + 0x3000, 0, PTE_R | PTE_X | PTE_A);
	rvt_w32(t, DATA + 0x1000, ECALL());
	rvt_w32(t, DATA + 0x3000, ECALL());

	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA), 0);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA), C_INSN_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 0x1000), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 0x1000), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA + 0x1000), 0);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 0x2000), 0);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA + 0x2000), C_INSN_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 0x3000), 0);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 0x3000), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA + 0x3000), 0);

	/* MXR makes execute-only pages readable, not writable. */
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) | MSTATUS_MXR);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA + 0x1000), 0);
	assert_int_equal(rvt_x(t, A0), ECALL());
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA + 0x1000), C_STORE_PF);
	/* and clearing it again (through sstatus, from S) takes effect at once */
	RVT_ASM(t, CODE, LD(A0, 0, A1), CSRRC(ZERO, CSR_SSTATUS, A3), LD(A0, 0, A1), WFI());
	rvt_set_x(t, A1, VA + 0x1000);
	rvt_set_x(t, A3, MSTATUS_MXR);
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go_trap_m(t, C_LOAD_PF, CODE + 8, VA + 0x1000);
}

static void test_sv39_user_pages(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	rvt_map(t, root, VA, DATA, 0, PTE_U | PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x1000, DATA + 0x1000, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA_U, PA_U, 0, PTE_U | PTE_R | PTE_X | PTE_A);

	/* S touching a U page: a fault unless SUM; S never executes U pages. */
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA_U), C_INSN_PF);
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) | MSTATUS_SUM);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, VA), 0);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, VA), 0);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, VA_U), C_INSN_PF);

	/* U: its own pages yes, S pages never (SUM does not matter). */
	assert_int_equal(try_access(t, RV_PRIV_U, LOAD, VA), 0);
	assert_int_equal(try_access(t, RV_PRIV_U, STORE, VA), 0);
	assert_int_equal(try_access(t, RV_PRIV_U, LOAD, VA + 0x1000), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_U, STORE, VA + 0x1000), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_U, FETCH, CODE), C_INSN_PF);   /* RWX, not U */
	RVT_SET(t, mstatus, RVT_GET(t, mstatus) & ~MSTATUS_SUM);
	assert_int_equal(try_access(t, RV_PRIV_U, LOAD, VA + 0x1000), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_U, LOAD, VA), 0);

	/* SUM set by S-mode code itself applies to the next access. */
	RVT_ASM(t, CODE, CSRRS(ZERO, CSR_SSTATUS, A3), LD(A0, 0, A1), CSRRC(ZERO, CSR_SSTATUS, A3),
		LD(A0, 0, A1), WFI());
	rvt_set_x(t, A1, VA);
	rvt_set_x(t, A3, MSTATUS_SUM);
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go_trap_m(t, C_LOAD_PF, CODE + 12, VA);
}

static void test_sv39_noncanonical(void **state)
{
	struct rvt *t = *state;
	paging_s(t);
	/* Sv39: bits 63:39 must all equal bit 38. */
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, 0x0000004000000000ull), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, 0x0000008000000000ull), C_LOAD_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, STORE, 0x8000000000000000ull), C_STORE_PF);
	assert_int_equal(try_access(t, RV_PRIV_S, FETCH, 0xffff800000000000ull), C_INSN_PF);
	/* canonical but unmapped, for comparison */
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, 0xffffffc000000000ull), C_LOAD_PF);
	/* and the identity-mapped RAM works (canonical, bit 38 = 0) */
	rvt_w64(t, DATA, 0x77);
	assert_int_equal(try_access(t, RV_PRIV_S, LOAD, DATA), 0);
	assert_int_equal(rvt_x(t, A0), 0x77);
}

/* M-mode at CODE with MPRV and MPP set exactly. */
static void enter_mprv(struct rvt *t, bool mprv, enum rv_priv mpp)
{
	struct rv_state s = rvt_state(t);
	s.mstatus = (s.mstatus & ~(MSTATUS_MPRV | MSTATUS_MPP)) | (mprv ? MSTATUS_MPRV : 0) | MPP(mpp);
	s.priv = RV_PRIV_M;
	s.pc = CODE;
	rvt_put_state(t, &s);
}

static void test_mprv(void **state)
{
	struct rvt *t = *state;
	uint64_t root = rvt_paging_identity(t);
	rvt_map(t, root, VA, DATA, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_w64(t, DATA, 0x4242);
	rvt_set_x(t, A1, VA);
	RVT_ASM(t, CODE, LD(A0, 0, A1), WFI());
	/* M-mode loads and stores with MPRV use MPP's privilege and
	 * translation; instruction fetch stays M (CODE runs untranslated). */
	enter_mprv(t, true, RV_PRIV_S);
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 0x4242);
	enter_mprv(t, true, RV_PRIV_U);
	rvt_go_trap_m(t, C_LOAD_PF, CODE, VA);          /* not a U page */
	/* MPRV with MPP = M, or MPRV clear: physical, where VA is no memory */
	enter_mprv(t, true, RV_PRIV_M);
	rvt_go_trap_m(t, C_LOAD_ACCESS, CODE, VA);
	enter_mprv(t, false, RV_PRIV_S);
	rvt_go_trap_m(t, C_LOAD_ACCESS, CODE, VA);

	/* A page table that is not in memory: access fault of the access type */
	RVT_SET(t, satp, SATP_SV39(RVT_NO_DEVICE));
	RVT_ASM(t, CODE, LD(A0, 0, A1), WFI());
	enter_mprv(t, true, RV_PRIV_S);
	rvt_go_trap_m(t, C_LOAD_ACCESS, CODE, VA);
	RVT_ASM(t, CODE, SD(A0, 0, A1), WFI());
	enter_mprv(t, true, RV_PRIV_S);
	rvt_go_trap_m(t, C_STORE_ACCESS, CODE, VA);
}

static void test_sv39_faults_delegated(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	rvt_map(t, root, VA_U, PA_U, 0, PTE_U | PTE_R | PTE_X | PTE_A);
	RVT_SET(t, medeleg, (1u << C_INSN_PF) | (1u << C_LOAD_PF) | (1u << C_STORE_PF));
	rvt_set_x(t, A1, VA + 0x10);
	RVT_ASM(t, CODE, NOP(), LD(A0, 0, A1), WFI());
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go_trap_s(t, C_LOAD_PF, CODE + 4, VA + 0x10);
	RVT_ASM(t, CODE, SW(A0, 0, A1), WFI());
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go_trap_s(t, C_STORE_PF, CODE, VA + 0x10);
	RVT_ASM(t, CODE, JALR(ZERO, A1, 0));
	rvt_set_priv(t, RV_PRIV_S);
	rvt_go_trap_s(t, C_INSN_PF, VA + 0x10, VA + 0x10);
	/* from U */
	RVT_ASM(t, PA_U, LD(A0, 0, A1), ECALL());
	rvt_set_priv(t, RV_PRIV_U);
	rvt_run_trap_s(t, VA_U, C_LOAD_PF, VA_U, VA + 0x10);
	assert_false(RVT_GET(t, mstatus) & MSTATUS_SPP);
}

/* ---- TLB and sfence.vma ------------------------------------------------------------- */

static void check_sfence(struct rvt *t, uint32_t sfence)
{
	uint64_t root = paging_s(t);
	const uint64_t pte_pa = rvt_pte_addr(t, root, VA, 0);
	rvt_w64(t, pte_pa, PTE_LEAF(DATA, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
	rvt_w64(t, DATA, 0x1111);
	rvt_w64(t, DATA + 8, 0);
	rvt_w64(t, DATA + 0x1000, 0x2222);
	rvt_w64(t, DATA + 0x1008, 0);
	rvt_set_x(t, A1, VA);
	rvt_set_x(t, A2, 0x3333);
	rvt_set_x(t, A4, 0);          /* ASID 0, the current one */
	RVT_ASM(t, CODE,
		LD(S2, 0, A1), SD(ZERO, 16, A1), WFI(),      /* fills the read and write TLB */
		LD(S3, 0, A1), sfence, LD(S4, 0, A1), SD(A2, 8, A1), WFI());
	rvt_run_from(t, CODE, CODE + 12);
	assert_int_equal(rvt_x(t, S2), 0x1111);

	/* Point the PTE elsewhere, without telling the hart. */
	rvt_w64(t, pte_pa, PTE_LEAF(DATA + 0x1000, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
	rvt_run_from(t, CODE + 12, CODE + 32);
	/* Until sfence.vma the old translation may be used, and tern's TLB
	 * does use it: this shows that the sfence below is what matters. */
	assert_int_equal(rvt_x(t, S3), 0x1111);
	assert_int_equal(rvt_x(t, S4), 0x2222);
	assert_int_equal(rvt_r64(t, DATA + 0x1008), 0x3333);
	assert_int_equal(rvt_r64(t, DATA + 8), 0);

	/* An invalidated PTE faults after the sfence. */
	rvt_set_x(t, S3, 0);
	RVT_ASM(t, CODE + 12, LD(S3, 0, A1), sfence, LD(S4, 0, A1), SD(A2, 8, A1), WFI());
	rvt_run_from(t, CODE, CODE + 12);
	rvt_w64(t, pte_pa, 0);
	rvt_run_trap_m(t, CODE + 12, C_LOAD_PF, CODE + 20, VA);
	assert_int_equal(rvt_x(t, S3), 0x2222);
}

static void test_sfence_all(void **state)
{
	check_sfence(*state, SFENCE_VMA(ZERO, ZERO));
}

static void test_sfence_address(void **state)
{
	check_sfence(*state, SFENCE_VMA(A1, ZERO));
}

static void test_sfence_address_asid(void **state)
{
	check_sfence(*state, SFENCE_VMA(A1, A4));
}

static void test_sfence_address_in_superpage(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	/* A 2 MiB page; the flush names another 4 KiB piece of it than the
	 * one accessed, which must still be dropped: sfence.vma with an
	 * address flushes the leaf PTE that maps it, i.e. the whole superpage. */
	const uint64_t mega = VA + 0x200000;
	const uint64_t pte_pa = rvt_pte_addr(t, root, mega, 1);
	rvt_w64(t, pte_pa, PTE_LEAF(RVT_RAM_BASE, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
	rvt_w64(t, DATA, 0x1111);
	rvt_w64(t, DATA + 0x200000, 0x2222);
	rvt_set_x(t, A1, mega + (DATA - RVT_RAM_BASE));
	rvt_set_x(t, A3, mega + 0x1000);
	RVT_ASM(t, CODE, LD(S2, 0, A1), WFI(), SFENCE_VMA(A3, ZERO), LD(S4, 0, A1), WFI());
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, S2), 0x1111);
	rvt_w64(t, pte_pa, PTE_LEAF(RVT_RAM_BASE + 0x200000, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
	rvt_run_from(t, CODE + 8, CODE + 20);
	assert_int_equal(rvt_x(t, S4), 0x2222);
}

static void test_host_tlb_flush(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	const uint64_t pte_pa = rvt_pte_addr(t, root, VA, 0);
	rvt_w64(t, pte_pa, PTE_LEAF(DATA, PTE_V | PTE_R | PTE_A));
	rvt_w64(t, DATA, 0x1111);
	rvt_w64(t, DATA + 0x1000, 0x2222);
	rvt_set_x(t, A1, VA);
	RVT_ASM(t, CODE, LD(S2, 0, A1), WFI(), LD(S3, 0, A1), WFI());
	rvt_run_from(t, CODE, CODE + 8);
	rvt_w64(t, pte_pa, PTE_LEAF(DATA + 0x1000, PTE_V | PTE_R | PTE_A));
	cpu_flush(t->cpu, CPU_FLUSH_TLB);         /* what an SBI remote sfence does */
	rvt_run_from(t, CODE + 8, CODE + 16);
	assert_int_equal(rvt_x(t, S3), 0x2222);
}

/* ---- fence.i and the decoded-instruction cache --------------------------------------- */

static void test_fence_i(void **state)
{
	struct rvt *t = *state;
	const uint64_t func = CODE + 0x40;
	/* A loop calls func three times; after the first call it patches func's
	 * first instruction with a store, and before the third it runs fence.i. */
	RVT_ASM(t, CODE,
		ADDI(S1, ZERO, 0),                /* 0: iteration */
		JAL(RA, (int32_t)(func - (CODE + 4))),     /* 4: loop: a0 = func() */
		SLLI(T2, S1, 3), ADD(T2, T2, S0), SD(A0, 0, T2),   /* 8..16: results[s1] = a0 */
		SW(T0, 0, T1),                    /* 20: patch func */
		ADDI(S1, S1, 1),                  /* 24 */
		ADDI(T2, ZERO, 2),                /* 28 */
		BNE(S1, T2, 8),                   /* 32: before the third call: */
		FENCE_I(),                        /* 36 */
		ADDI(T2, ZERO, 3),                /* 40 */
		BNE(S1, T2, -40),                 /* 44: -> 4 */
		WFI());                           /* 48 */
	RVT_ASM(t, func, ADDI(A0, ZERO, 1), JALR(ZERO, RA, 0));
	rvt_set_x(t, S0, DATA);
	rvt_set_x(t, T0, ADDI(A0, ZERO, 2));
	rvt_set_x(t, T1, func);
	rvt_run_from(t, CODE, CODE + 52);
	assert_int_equal(rvt_r32(t, func), ADDI(A0, ZERO, 2));
	assert_int_equal(rvt_r64(t, DATA), 1);
	/* Without fence.i the old instruction may still run; tern's decoded
	 * cache keeps it, which shows that fence.i below is what matters. */
	assert_int_equal(rvt_r64(t, DATA + 8), 1);
	assert_int_equal(rvt_r64(t, DATA + 16), 2);
}

static void test_icache_flush_from_host(void **state)
{
	struct rvt *t = *state;
	RVT_ASM(t, CODE, ADDI(A0, ZERO, 1), WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, A0), 1);
	rvt_w32(t, CODE, ADDI(A0, ZERO, 2));     /* behind the hart's back */
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, A0), 1);      /* stale, as the ISA allows */
	cpu_flush(t->cpu, CPU_FLUSH_ICACHE);    /* what SBI remote fence.i does */
	rvt_run_from(t, CODE, CODE + 8);
	assert_int_equal(rvt_x(t, A0), 2);
}

/* ---- misaligned accesses and fetches under translation ----------------------------- */

static void test_misaligned_paged(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	/* Two virtually adjacent pages that are not physically adjacent. */
	rvt_map(t, root, VA + 0x1000, DATA + 0x3000, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x2000, DATA, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x4000, DATA + 0x4000, 0, PTE_R | PTE_W | PTE_A | PTE_D);
	rvt_map(t, root, VA + 0x5000, DATA + 0x5000, 0, PTE_R | PTE_A);
	for (unsigned i = 0; i < 4; i++) {
		rvt_w8(t, DATA + 0x3ffc + i, (uint8_t)(1 + i));
		rvt_w8(t, DATA + i, (uint8_t)(5 + i));
	}
	rvt_set_x(t, A1, VA + 0x1ffc);
	rvt_set_x(t, A2, 0x1122334455667788ull);
	rvt_set_x(t, A3, VA + 0x1ffa);
	RVT_ASM(t, CODE, LD(S2, 0, A1), LW(S3, 2, A1), LHU(S4, 3, A1), SD(A2, 0, A3), LD(S5, 0, A3),
		WFI());
	rvt_go(t);
	assert_int_equal(rvt_x(t, S2), 0x0807060504030201ull);
	assert_int_equal(rvt_x(t, S3), 0x06050403);
	assert_int_equal(rvt_x(t, S4), 0x0504);
	assert_int_equal(rvt_x(t, S5), 0x1122334455667788ull);
	assert_int_equal(rvt_r16(t, DATA + 0x3ffa), 0x7788);
	assert_int_equal(rvt_r32(t, DATA + 0x3ffc), 0x33445566);
	assert_int_equal(rvt_r16(t, DATA), 0x1122);
	assert_int_equal(rvt_r8(t, DATA + 2), 7);

	/* Into an unmapped page: a page fault whose tval is in the part that
	 * faulted ("the virtual address of the portion of the access that
	 * caused the fault"), epc the instruction. */
	rvt_set_x(t, A1, VA + 0x2ffc);
	RVT_ASM(t, CODE, LD(A0, 0, A1), WFI());
	rvt_set_priv(t, RV_PRIV_S);
	rvt_run_from(t, CODE, RVT_TRAP_M_STOP);
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.mcause, C_LOAD_PF);
	assert_int_equal(s.mepc, CODE);
	assert_true(s.mtval >= VA + 0x3000 && s.mtval < VA + 0x3004);

	/* A store whose second half is read-only: a store page fault, and
	 * nothing written to the first half. */
	rvt_w64(t, DATA + 0x4ff8, 0);
	rvt_set_x(t, A1, VA + 0x4ffc);
	RVT_ASM(t, CODE, SD(A2, 0, A1), WFI());
	rvt_set_priv(t, RV_PRIV_S);
	rvt_run_from(t, CODE, RVT_TRAP_M_STOP);
	s = rvt_state(t);
	assert_int_equal(s.mcause, C_STORE_PF);
	assert_true(s.mtval >= VA + 0x5000 && s.mtval < VA + 0x5004);
	assert_int_equal(rvt_r64(t, DATA + 0x4ff8), 0);
}

static void test_fetch_across_pages(void **state)
{
	struct rvt *t = *state;
	uint64_t root = paging_s(t);
	const uint64_t va = 0x40400000ull, pa1 = 0x80005000ull, pa2 = 0x80007000ull;
	rvt_map(t, root, va, pa1, 0, PTE_R | PTE_X | PTE_A);
	rvt_map(t, root, va + 0x1000, pa2, 0, PTE_R | PTE_X | PTE_A);
	const uint32_t insn = ADDI(A0, ZERO, 42);
	RVT_ASM(t, pa1, J(0xffe));
	rvt_w16(t, pa1 + 0xffe, (uint16_t)insn);
	rvt_w16(t, pa2, (uint16_t)(insn >> 16));
	RVT_ASM(t, pa2 + 2, WFI());
	rvt_set_x(t, A0, 0);
	rvt_run_from(t, va, va + 0x1006);
	assert_int_equal(rvt_x(t, A0), 42);

	/* The second page unmapped: an instruction page fault with epc at the
	 * instruction and tval at the part that faulted. */
	rvt_w64(t, rvt_pte_addr(t, root, va + 0x1000, 0), 0);
	rvt_set_priv(t, RV_PRIV_S);
	rvt_run_trap_m(t, va, C_INSN_PF, va + 0xffe, va + 0x1000);

	/* Same at the end of RAM, without paging: an access fault at the
	 * first address past RAM. */
	const uint64_t last = RVT_RAM_BASE + RVT_RAM_SIZE - 2;
	rvt_w16(t, last, (uint16_t)insn);
	RVT_SET(t, satp, 0);
	rvt_set_priv(t, RV_PRIV_M);
	rvt_run_trap_m(t, last, C_INSN_ACCESS, last, last + 2);
}

static void test_insn_access_fault(void **state)
{
	struct rvt *t = *state;
	rvt_set_x(t, A1, RVT_NO_DEVICE);
	RVT_ASM(t, CODE, JALR(RA, A1, 0x10), WFI());
	rvt_go_trap_m(t, C_INSN_ACCESS, RVT_NO_DEVICE + 0x10, RVT_NO_DEVICE + 0x10);
	assert_int_equal(rvt_x(t, RA), CODE + 4);
	rvt_set_x(t, A1, RVT_MMIO_BASE);          /* devices are not executable */
	rvt_go_trap_m(t, C_INSN_ACCESS, RVT_MMIO_BASE + 0x10, RVT_MMIO_BASE + 0x10);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, rvt_setup, rvt_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ecall_causes),
		T(test_ecall_sbi_hook),
		T(test_ebreak),
		T(test_trap_entry_status),
		T(test_delegation),
		T(test_mret),
		T(test_sret),
		T(test_xret_illegal),
		T(test_wfi_traps),
		T(test_tvm),
		T(test_irq_timer),
		T(test_irq_timer_while_running),
		T(test_irq_software),
		T(test_irq_external),
		T(test_irq_enable_rules),
		T(test_irq_priority),
		T(test_irq_m_level_first),
		T(test_irq_vectored),
		T(test_wfi_wake_rules),
		T(test_stimecmp_csr),
		T(test_kick),
		T(test_mstatus_warl),
		T(test_sstatus_view),
		T(test_sie_sip_follow_mideleg),
		T(test_misa_mhartid),
		T(test_minstret),
		T(test_minstret_write),
		T(test_counter_access),
		T(test_csr_privilege),
		T(test_unknown_csr),
		T(test_pmp_csrs),
		T(test_pmpcfg_odd_is_illegal_on_rv64),
		T(test_epc_and_counteren_warl),
		T(test_satp_writes),
		T(test_state_roundtrip),
		T(test_sv39_4k),
		T(test_sv39_ad_bits),
		T(test_sv39_superpages),
		T(test_sv39_misaligned_superpage),
		T(test_sv39_bad_ptes),
		T(test_sv39_permissions),
		T(test_sv39_user_pages),
		T(test_sv39_noncanonical),
		T(test_mprv),
		T(test_sv39_faults_delegated),
		T(test_sfence_all),
		T(test_sfence_address),
		T(test_sfence_address_asid),
		T(test_sfence_address_in_superpage),
		T(test_host_tlb_flush),
		T(test_fence_i),
		T(test_icache_flush_from_host),
		T(test_misaligned_paged),
		T(test_fetch_across_pages),
		T(test_insn_access_fault),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
