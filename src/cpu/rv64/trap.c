/* trap.c: trap entry, interrupt selection and xRET (privileged ISA manual
 * 20211203, sections 3.1.6.1, 3.1.9, 3.3.2 and 4.1). */
#include "cpu/rv64/interp.h"

void rv_take_trap(struct rv_interp *h, uint64_t cause, uint64_t tval, bool interrupt)
{
	struct rv_state *s = &h->s;
	uint64_t priv = s->priv;
	uint64_t deleg = interrupt ? s->mideleg : s->medeleg;
	uint64_t cause_reg = cause | (interrupt ? 1ull << 63 : 0);

	if (priv <= RV_PRIV_S && ((deleg >> cause) & 1)) {
		s->scause = cause_reg;
		s->sepc = s->pc;
		s->stval = tval;
		uint64_t st = s->mstatus & ~(MSTATUS_SPIE | MSTATUS_SIE | MSTATUS_SPP);
		if (s->mstatus & MSTATUS_SIE)
			st |= MSTATUS_SPIE;
		if (priv == RV_PRIV_S)
			st |= MSTATUS_SPP;
		s->mstatus = st;
		s->priv = RV_PRIV_S;
		s->pc = (s->stvec & ~3ull) + (interrupt && (s->stvec & 1) ? 4 * cause : 0);
	} else {
		s->mcause = cause_reg;
		s->mepc = s->pc;
		s->mtval = tval;
		uint64_t st = s->mstatus & ~(MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP);
		if (s->mstatus & MSTATUS_MIE)
			st |= MSTATUS_MPIE;
		st |= priv << MSTATUS_MPP_SHIFT;
		s->mstatus = st;
		s->priv = RV_PRIV_M;
		s->pc = (s->mtvec & ~3ull) + (interrupt && (s->mtvec & 1) ? 4 * cause : 0);
	}
	rv_update_contexts(h);
}

int rv_pending_interrupt(struct rv_interp *h)
{
	const struct rv_state *s = &h->s;
	uint64_t pending = __atomic_load_n(&s->mip, __ATOMIC_ACQUIRE) & s->mie;
	if (!pending)
		return -1;

	uint64_t m_enabled = s->priv < RV_PRIV_M || (s->mstatus & MSTATUS_MIE) ? ~0ull : 0;
	/* Interrupts delegated to S are never taken while in M. */
	uint64_t s_enabled = s->priv < RV_PRIV_S ||
			     (s->priv == RV_PRIV_S && (s->mstatus & MSTATUS_SIE)) ? ~0ull : 0;
	/* Interrupts for M-mode come before any for S-mode (3.1.9). */
	uint64_t takeable = pending & ~s->mideleg & m_enabled;
	if (!takeable)
		takeable = pending & s->mideleg & s_enabled;
	if (!takeable)
		return -1;

	/* Within a level, the order of section 3.1.9: MEI, MSI, MTI, SEI, SSI, STI. */
	static const int order[] = { RV_IRQ_MEI, RV_IRQ_MSI, RV_IRQ_MTI,
				     RV_IRQ_SEI, RV_IRQ_SSI, RV_IRQ_STI };
	for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (takeable & (1ull << order[i]))
			return order[i];
	return -1;
}

bool rv_sret(struct rv_interp *h)
{
	struct rv_state *s = &h->s;
	if (s->priv == RV_PRIV_U || (s->priv == RV_PRIV_S && (s->mstatus & MSTATUS_TSR)))
		return false;
	uint64_t next = (s->mstatus & MSTATUS_SPP) ? RV_PRIV_S : RV_PRIV_U;
	uint64_t st = s->mstatus & ~(MSTATUS_SIE | MSTATUS_SPP);
	if (s->mstatus & MSTATUS_SPIE)
		st |= MSTATUS_SIE;
	st |= MSTATUS_SPIE;
	st &= ~MSTATUS_MPRV;    /* returning below M clears MPRV */
	s->mstatus = st;
	s->priv = next;
	s->pc = s->sepc;
	rv_update_contexts(h);
	return true;
}

bool rv_mret(struct rv_interp *h)
{
	struct rv_state *s = &h->s;
	if (s->priv != RV_PRIV_M)
		return false;
	uint64_t next = (s->mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT;
	uint64_t st = s->mstatus & ~(MSTATUS_MIE | MSTATUS_MPP);
	if (s->mstatus & MSTATUS_MPIE)
		st |= MSTATUS_MIE;
	st |= MSTATUS_MPIE;
	if (next != RV_PRIV_M)
		st &= ~MSTATUS_MPRV;
	s->mstatus = st;
	s->priv = next;
	s->pc = s->mepc;
	rv_update_contexts(h);
	return true;
}
