/* interp.c: the interpreter as a struct cpu: creation, reset state, the
 * thread-safe entry points (kick, set_irq) and architectural state access. */
#include "cpu/rv64/interp.h"

#include <stdlib.h>
#include <string.h>

/* misa: RV64 (MXL 2) with A, C, D, F, I, M, S, U */
#define MISA_VALUE ((2ull << 62) | (1u << 0) | (1u << 2) | (1u << 3) | (1u << 5) | \
		    (1u << 8) | (1u << 12) | (1u << 18) | (1u << 20))

static enum cpu_exit interp_run(struct cpu *c)
{
	return rv_run(to_interp(c));
}

static void interp_kick(struct cpu *c)
{
	__atomic_store_n(&to_interp(c)->kick_pending, 1, __ATOMIC_RELEASE);
}

static void interp_set_irq(struct cpu *c, uint64_t bits, bool level)
{
	struct rv_interp *h = to_interp(c);
	if (level)
		__atomic_fetch_or(&h->s.mip, bits, __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&h->s.mip, ~bits, __ATOMIC_RELEASE);
}

static bool interp_wake_pending(struct cpu *c)
{
	struct rv_interp *h = to_interp(c);
	rv_update_timer(h);
	return (__atomic_load_n(&h->s.mip, __ATOMIC_ACQUIRE) & h->s.mie) != 0;
}

static uint64_t interp_timer_deadline(struct cpu *c)
{
	return to_interp(c)->s.stimecmp;
}

static void interp_set_timer(struct cpu *c, uint64_t deadline)
{
	struct rv_interp *h = to_interp(c);
	h->s.stimecmp = deadline;
	rv_update_timer(h);
}

static void interp_flush(struct cpu *c, unsigned what)
{
	struct rv_interp *h = to_interp(c);
	if (what & CPU_FLUSH_TLB)
		rv_tlb_flush_all(h);
	else if (what & CPU_FLUSH_WRITES)
		rv_tlb_flush_writes(h);
	if (what & CPU_FLUSH_ICACHE)
		rv_dcache_flush(h);
}

static void interp_get_state(struct cpu *c, struct rv_state *out)
{
	struct rv_interp *h = to_interp(c);
	*out = h->s;
	out->mip = __atomic_load_n(&h->s.mip, __ATOMIC_ACQUIRE);
	memcpy(out->x, h->x, sizeof(out->x));
	out->x[0] = 0;
	out->mcycle = h->s.minstret;
}

static void interp_set_state(struct cpu *c, const struct rv_state *in)
{
	struct rv_interp *h = to_interp(c);
	h->s = *in;
	memcpy(h->x, in->x, sizeof(in->x));
	h->x[0] = 0;
	h->x[32] = 0;
	rv_tlb_flush_all(h);
	rv_dcache_flush(h);
	rv_update_contexts(h);
}

static void interp_set_reg(struct cpu *c, unsigned reg, uint64_t value)
{
	if (reg > 0 && reg < 32)
		to_interp(c)->x[reg] = value;
}

static uint64_t interp_get_reg(struct cpu *c, unsigned reg)
{
	return reg < 32 ? to_interp(c)->x[reg] : 0;
}

static void interp_set_pc(struct cpu *c, uint64_t pc)
{
	to_interp(c)->s.pc = pc;
}

static void interp_destroy(struct cpu *c)
{
	struct rv_interp *h = to_interp(c);
	rv_dcache_free(h);
	free(h->tlb);
	free(h);
}

static const struct cpu_ops interp_ops = {
	.name = "rv64-interpreter",
	.run = interp_run,
	.kick = interp_kick,
	.set_irq = interp_set_irq,
	.wake_pending = interp_wake_pending,
	.timer_deadline = interp_timer_deadline,
	.set_timer = interp_set_timer,
	.flush = interp_flush,
	.get_state = interp_get_state,
	.set_state = interp_set_state,
	.set_reg = interp_set_reg,
	.get_reg = interp_get_reg,
	.set_pc = interp_set_pc,
	.destroy = interp_destroy,
};

struct cpu *rv64_interp_create(const struct cpu_env *env, unsigned hart_id)
{
	struct rv_interp *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->tlb = calloc(TLB_CTX_COUNT, sizeof(*h->tlb));
	h->dcache_fallback = malloc(sizeof(*h->dcache_fallback));
	if (!h->tlb || !h->dcache_fallback) {
		free(h->tlb);
		free(h->dcache_fallback);
		free(h);
		return NULL;
	}
	h->cpu.ops = &interp_ops;
	h->cpu.env = env;
	h->cpu.hart_id = hart_id;
	h->ram = env->ram;

	h->s.priv = RV_PRIV_M;
	h->s.misa = MISA_VALUE;
	h->s.mstatus = MSTATUS_UXL_64 | MSTATUS_SXL_64;
	h->s.mhartid = hart_id;
	h->s.stimecmp = ~0ull;
	h->dcache_gen = 1;
	h->fetch_ctx = NULL;
	/* calloc'ed entries look valid for page 0: have the flush visit all. */
	for (unsigned c = 0; c < TLB_CTX_COUNT; c++)
		memset(h->tlb[c].filled, 0xff, sizeof(h->tlb[c].filled));
	rv_tlb_flush_all(h);
	rv_update_contexts(h);
	return &h->cpu;
}
