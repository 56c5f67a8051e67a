/* exec.c: the interpreter's run loop.
 *
 * One function, threaded dispatch with computed goto (a GNU extension), so
 * that each operation ends in its own indirect jump and the host's branch
 * predictor learns per-operation successors. Instructions are executed from
 * the per-page decoded slots, each holding the address of its handler; a
 * slot is decoded on first use.
 *
 * The loop walks slot pointers, not the pc. Every operation exists twice,
 * once per instruction length (exec_ops.inc, included below with L = 2 and
 * L = 4), so the next sequential slot is `insn + L / 2`: no load stands
 * between one instruction and the next. The pc is derived only where it is
 * needed (auipc, links, traps, CSRs) from the page's virtual address and the
 * slot's page offset. Branches and jal whose target lies in the same page
 * get handlers that step straight to the target slot; the others, and jalr,
 * look the target up (same page: an index; another page: the fetch TLB).
 *
 * Every instruction uses up one unit of a budget; once it is gone, the next
 * control transfer or page end is a checkpoint, where the loop updates the
 * timer, takes pending interrupts and honours kick(). Straight-line code
 * cannot run past the end of its page, so sequential instructions need no
 * check: a budget of RUN_BUDGET less a page of instructions keeps
 * checkpoints at most RUN_BUDGET instructions apart. An instruction that
 * may unmask an interrupt (a CSR write, xRET, an SBI call) forces a
 * checkpoint right after itself. Instructions that may change translation
 * or drop decoded pages (sfence.vma, fence.i, CSR writes, xRET, ecall,
 * traps) continue through `fetch`, which re-reads the fetch page. */
#include "cpu/rv64/interp.h"
#include "cpu/rv64/fpu.h"

#include <string.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define RUN_BUDGET 4096

_Static_assert(sizeof(struct insn) == 16, "slot addresses are page offset * 8");
_Static_assert(RV_OP_COUNT <= 256, "struct insn keeps the operation in a byte");
_Static_assert(FPU_OP_COUNT <= 256, "RV_FP_IMM keeps the fpu operation in a byte");

/* The fast paths of loads and stores. The tag is compared with the page of
 * the access's last byte, which also sends accesses that straddle two pages
 * (the entry is indexed by the first) to the slow path. */
#define DEFINE_LOAD(name, type)                                                            \
	static inline __attribute__((always_inline)) bool name(struct rv_interp *h,       \
								uint64_t va, type *out)    \
	{                                                                                  \
		const struct tlb_entry *e = &h->data_ctx->read[(va >> 12) & (TLB_ENTRIES - 1)]; \
		if (likely(e->vpage == ((va + sizeof(type) - 1) & ~0xfffull))) {          \
			memcpy(out, (const void *)(uintptr_t)(va + e->addend), sizeof(type)); \
			return true;                                                       \
		}                                                                          \
		uint64_t v;                                                                \
		if (!rv_load_slow(h, va, sizeof(type), &v))                                \
			return false;                                                      \
		*out = (type)v;                                                            \
		return true;                                                               \
	}

#define DEFINE_STORE(name, type)                                                           \
	static inline __attribute__((always_inline)) bool name(struct rv_interp *h,       \
								uint64_t va, type val)     \
	{                                                                                  \
		const struct tlb_entry *e = &h->data_ctx->write[(va >> 12) & (TLB_ENTRIES - 1)]; \
		if (likely(e->vpage == ((va + sizeof(type) - 1) & ~0xfffull))) {          \
			memcpy((void *)(uintptr_t)(va + e->addend), &val, sizeof(type));  \
			return true;                                                       \
		}                                                                          \
		return rv_store_slow(h, va, sizeof(type), (uint64_t)val);                  \
	}

DEFINE_LOAD(load_u8, uint8_t)
DEFINE_LOAD(load_u16, uint16_t)
DEFINE_LOAD(load_u32, uint32_t)
DEFINE_LOAD(load_u64, uint64_t)
DEFINE_STORE(store_u8, uint8_t)
DEFINE_STORE(store_u16, uint16_t)
DEFINE_STORE(store_u32, uint32_t)
DEFINE_STORE(store_u64, uint64_t)

static inline uint64_t sx32(uint64_t v)
{
	return (uint64_t)(int64_t)(int32_t)v;
}

static int64_t div64(int64_t a, int64_t b)
{
	if (b == 0)
		return -1;
	if (a == INT64_MIN && b == -1)
		return a;
	return a / b;
}

static int64_t rem64(int64_t a, int64_t b)
{
	if (b == 0)
		return a;
	if (a == INT64_MIN && b == -1)
		return 0;
	return a % b;
}

static int32_t div32(int32_t a, int32_t b)
{
	if (b == 0)
		return -1;
	if (a == INT32_MIN && b == -1)
		return a;
	return a / b;
}

static int32_t rem32(int32_t a, int32_t b)
{
	if (b == 0)
		return a;
	if (a == INT32_MIN && b == -1)
		return 0;
	return a % b;
}

static uint64_t mulhsu(int64_t a, uint64_t b)
{
	return (uint64_t)(((__int128)a * (unsigned __int128)b) >> 64);
}

/* The instruction bits for mtval of an illegal-instruction trap: those the
 * slot was decoded from, at page offset off. */
static uint64_t raw_bits(const struct rv_interp *h, uint64_t off, unsigned len)
{
	if (off + len > 4096)
		return 0;       /* straddles two pages */
	uint32_t raw = 0;
	memcpy(&raw, h->fetch_host + off, len);
	return raw;
}

/* Control transfers whose target is a fixed offset from the instruction:
 * they have a second handler for targets outside the instruction's page. */
#define RV_FAR_OPS(X) X(JAL) X(BEQ) X(BNE) X(BLT) X(BGE) X(BLTU) X(BGEU)

/* Without cross-jumping GCC keeps the per-operation dispatch copies apart. */
__attribute__((optimize("no-crossjumping", "no-gcse")))
enum cpu_exit rv_run(struct rv_interp *h)
{
	/* [0] for 2-byte, [1] for 4-byte encodings. */
#define RV_HANDLER(name, len) [RV_OP_##name] = &&op_##name##_##len,
#define RV_HANDLER_2(name) RV_HANDLER(name, 2)
#define RV_HANDLER_4(name) RV_HANDLER(name, 4)
#define RV_FAR_HANDLER_2(name) RV_HANDLER(name, FAR_2)
#define RV_FAR_HANDLER_4(name) RV_HANDLER(name, FAR_4)
	static const void *const handlers[2][RV_OP_COUNT] = {
		{ RV_OPS(RV_HANDLER_2) },
		{ RV_OPS(RV_HANDLER_4) },
	};
	static const void *const far_handlers[2][RV_OP_COUNT] = {
		{ RV_FAR_OPS(RV_FAR_HANDLER_2) },
		{ RV_FAR_OPS(RV_FAR_HANDLER_4) },
	};
	/* x[rd] = x[rs2], for ADD and ADDI that only move a register */
	static const void *const mv_handlers[2] = { &&op_MV_2, &&op_MV_4 };
#undef RV_HANDLER
#undef RV_HANDLER_2
#undef RV_HANDLER_4
#undef RV_FAR_HANDLER_2
#undef RV_FAR_HANDLER_4
	uint64_t *const x = h->x;
	uint64_t *const f = h->s.f;
	uint64_t pc = h->s.pc;  /* valid only where set: derive it with PC() */
	int64_t budget = 0, budget_start = 0;
	/* The page being executed, as of the last `fetch`: its virtual address
	 * and the host address of its slot 0. They stay right for PC() even
	 * when an instruction has invalidated h->fetch_vbase, since such
	 * instructions go on through `fetch`. */
	uint64_t vbase = TLB_INVALID;
	uintptr_t sbase = 0;
	struct insn *insn = NULL;
	/* An instruction straddling two pages is never cached: it runs from
	 * [0], with sbase set as if [0] were slot 2047 of the page, and [2],
	 * where its sequential successor lands, is an undecoded slot at page
	 * offset 4098 like the end-of-page slot is at 4096. */
	struct insn crossing[3] = { [2] = { .handler = &&decode } };

	h->decode_handler = &&decode;

#define PC() (vbase + (((uintptr_t)insn - sbase) >> 3))
#define DISPATCH() goto *insn->handler
	/* To the next instruction in sequence. Only control transfers and the
	 * end of a page look at the budget. */
#define NEXT                                            \
	do {                                            \
		insn += L / 2;                          \
		budget--;                               \
		DISPATCH();                             \
	} while (0)
	/* To the next instruction in sequence, through a checkpoint. */
#define NEXT_CHECKPOINT                                 \
	do {                                            \
		insn += L / 2;                          \
		budget--;                               \
		goto checkpoint;                        \
	} while (0)
	/* To a target in the same page, known from decoding. */
#define NEXT_NEAR(taken)                                                          \
	do {                                                                      \
		insn = (taken) ? (struct insn *)((char *)insn +                   \
						 (int64_t)insn->imm * (int64_t)(sizeof(*insn) / 2)) \
			       : insn + L / 2;                                    \
		if (unlikely(--budget <= 0))                                      \
			goto checkpoint;                                          \
		DISPATCH();                                                       \
	} while (0)
	/* To any address, when nothing has invalidated the fetch page. The
	 * slots come from h, not sbase, which is not the page's own while a
	 * straddling instruction runs. */
#define NEXT_AT(newpc)                                  \
	do {                                            \
		pc = (newpc);                           \
		if (unlikely(--budget <= 0))            \
			goto checkpoint_at;             \
		uint64_t off_ = pc - vbase;             \
		if (unlikely(off_ >= 4096))             \
			goto fetch;                     \
		insn = h->fetch_slots + (off_ >> 1);    \
		sbase = (uintptr_t)h->fetch_slots;      \
		DISPATCH();                             \
	} while (0)
	/* To any address, re-reading the fetch page. */
#define NEXT_FETCH(newpc)                               \
	do {                                            \
		pc = (newpc);                           \
		if (unlikely(--budget <= 0))            \
			goto checkpoint_at;             \
		goto fetch;                             \
	} while (0)
	/* Retire the instructions so far, then make the next check a checkpoint. */
#define FORCE_CHECKPOINT()                                   \
	do {                                                 \
		h->s.minstret += budget_start - budget;      \
		budget_start = budget = 0;                   \
	} while (0)
#define SYNC_INSTRET()                                       \
	do {                                                 \
		h->s.minstret += budget_start - budget;      \
		budget_start = budget;                       \
	} while (0)
#define RAISE(cause, tval)                      \
	do {                                    \
		h->trap_cause = (cause);        \
		h->trap_tval = (tval);          \
		goto exception;                 \
	} while (0)
#define ILLEGAL() RAISE(EXC_ILLEGAL, raw_bits(h, PC() - vbase, L))
#define REQUIRE_FP()                                           \
	do {                                                   \
		if (unlikely(!(h->s.mstatus & MSTATUS_FS)))    \
			ILLEGAL();                             \
	} while (0)
#define FP_DIRTY() (h->s.mstatus |= MSTATUS_FS | MSTATUS_SD)

	goto checkpoint_at;

	/* An undecoded slot, or one past the end of a page. */
decode: {
	uint64_t off = PC() - vbase;
	if (unlikely(off >= 4096)) {
		pc = vbase + off;
		if (budget <= 0)
			goto checkpoint_at;
		goto fetch;
	}
	const uint8_t *host = h->fetch_host;
	struct insn *dst = insn;
	uint16_t lo;
	memcpy(&lo, host + off, 2);
	uint32_t raw = lo;
	unsigned big = (lo & 3) == 3;
	bool near_ok = true;
	if (big) {
		uint16_t hi;
		if (unlikely(off == 4094)) {
			if (!rv_fetch_halfword(h, vbase + 4096, &hi))
				goto exception;
			dst = &crossing[0];
			sbase = (uintptr_t)crossing - (RV_PAGE_SLOTS - 1) * sizeof(struct insn);
			near_ok = false;        /* its slot pointer is not in the page */
		} else {
			memcpy(&hi, host + off + 2, 2);
		}
		raw |= (uint32_t)hi << 16;
	}
	rv_decode(raw, dst);
	const void *far = far_handlers[big][dst->op];
	int64_t target = (int64_t)off + dst->imm;
	if (far && (!near_ok || target < 0 || target >= 4096))
		dst->handler = far;
	else
		dst->handler = handlers[big][dst->op];
	/* Register moves and constants (mv, li, c.mv, c.li) are the most
	 * frequent instructions: give them handlers that read one register
	 * less, or none. */
	if (dst->op == RV_OP_ADDI && dst->rs1 == 0) {
		dst->handler = handlers[big][RV_OP_LUI];
	} else if (dst->op == RV_OP_ADDI && dst->imm == 0) {
		dst->rs2 = dst->rs1;
		dst->handler = mv_handlers[big];
	} else if (dst->op == RV_OP_ADD && (dst->rs1 == 0 || dst->rs2 == 0)) {
		dst->rs2 = dst->rs1 | dst->rs2;
		dst->handler = mv_handlers[big];
	}
	insn = dst;
	DISPATCH();
}

fetch: {
	uint64_t off = pc - h->fetch_vbase;
	if (unlikely(off >= 4096)) {
		/* The fetch TLB hit of rv_fetch_page(), inline. */
		const struct tlb_fetch_entry *e =
			&h->fetch_ctx->fetch[(pc >> 12) & (TLB_ENTRIES - 1)];
		if (likely(e->vpage == (pc & ~0xfffull) && e->gen == h->dcache_gen)) {
			h->fetch_vbase = e->vpage;
			h->fetch_slots = e->dp->slots;
			h->fetch_host = e->dp->raw;
		} else if (!rv_fetch_page(h, pc)) {
			goto trap;
		}
		off = pc - h->fetch_vbase;
	}
	vbase = h->fetch_vbase;
	sbase = (uintptr_t)h->fetch_slots;
	insn = h->fetch_slots + (off >> 1);
	DISPATCH();
}

checkpoint:
	pc = PC();
checkpoint_at:
	h->s.minstret += budget_start - budget;
	h->s.pc = pc;
	if (__atomic_load_n(&h->kick_pending, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&h->kick_pending, 0, __ATOMIC_RELAXED);
		return CPU_EXIT_KICKED;
	}
	rv_update_timer(h);
	{
		int irq = rv_pending_interrupt(h);
		if (irq >= 0) {
			rv_take_trap(h, (uint64_t)irq, 0, true);
			pc = h->s.pc;
		}
	}
	budget = budget_start = RUN_BUDGET - RV_PAGE_SLOTS;
	goto fetch;

exception:
	pc = PC();
trap:
	/* The faulting instruction does not retire, but it still uses up
	 * budget so that a trap loop cannot starve checkpoints. */
	h->s.minstret--;
	h->s.pc = pc;
	rv_take_trap(h, h->trap_cause, h->trap_tval, false);
	pc = h->s.pc;
	if (--budget <= 0)
		goto checkpoint_at;
	goto fetch;

#define L 2
#include "cpu/rv64/exec_ops.inc"
#undef L
#define L 4
#include "cpu/rv64/exec_ops.inc"
#undef L
}
