/* exec.c: the interpreter's run loop.
 *
 * One function, threaded dispatch through a table of label addresses
 * (a GNU extension), so that each operation ends in its own indirect jump
 * and the host's branch predictor learns per-operation successors.
 * Instructions are executed from the per-page decoded slots; a slot still
 * marked RV_OP_DECODE is decoded on first use.
 *
 * Every `budget` instructions the loop reaches a checkpoint, where it
 * updates the timer, takes pending interrupts and honours kick(). An
 * instruction that may unmask an interrupt (a CSR write, xRET, an SBI call)
 * forces a checkpoint right after itself. */
#include "cpu/rv64/interp.h"
#include "cpu/rv64/fpu.h"

#include <string.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define RUN_BUDGET 4096

#define DEFINE_LOAD(name, type)                                                            \
	static inline __attribute__((always_inline)) bool name(struct rv_interp *h,       \
								uint64_t va, type *out)    \
	{                                                                                  \
		const struct tlb_entry *e = &h->data_ctx->read[(va >> 12) & (TLB_ENTRIES - 1)]; \
		if (likely(e->vpage == (va & ~0xfffull) && (va & 0xfff) <= 4096 - sizeof(type))) { \
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
		if (likely(e->vpage == (va & ~0xfffull) && (va & 0xfff) <= 4096 - sizeof(type))) { \
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

/* The instruction bits for mtval of an illegal-instruction trap. */
static uint64_t raw_bits(const struct rv_interp *h, uint64_t pc, const struct insn *in)
{
	if (in->op == RV_OP_ILLEGAL)
		return (uint32_t)in->imm;
	uint64_t off = pc - h->fetch_vbase;
	if (off >= 4096 || (in->len == 4 && off > 4092))
		return 0;
	uint32_t raw = 0;
	memcpy(&raw, h->fetch_host + off, in->len);
	return raw;
}

/* Without cross-jumping GCC keeps the per-operation dispatch copies apart. */
__attribute__((optimize("no-crossjumping", "no-gcse")))
enum cpu_exit rv_run(struct rv_interp *h)
{
	static const void *const dispatch[RV_OP_COUNT] = {
#define RV_OP_LABEL(name) [RV_OP_##name] = &&op_##name,
		RV_OPS(RV_OP_LABEL)
#undef RV_OP_LABEL
	};
	uint64_t *const x = h->x;
	uint64_t *const f = h->s.f;
	uint64_t pc = h->s.pc;
	int64_t budget = 0, budget_start = 0;
	struct insn *insn;
	struct insn crossing;   /* an instruction straddling two pages: never cached */

	/* Each operation ends in its own copy of the dispatch, so that the
	 * host predicts each indirect jump from the operation it follows. */
#define DISPATCH()                                                      \
	do {                                                            \
		uint64_t off_ = pc - h->fetch_vbase;                    \
		if (unlikely(off_ >= 4096))                             \
			goto fetch;                                     \
		insn = &h->fetch_slots[off_ >> 1];                      \
		goto *dispatch[insn->op];                               \
	} while (0)
#define NEXT_AT(newpc)                          \
	do {                                    \
		pc = (newpc);                   \
		if (unlikely(--budget <= 0))    \
			goto checkpoint;        \
		DISPATCH();                     \
	} while (0)
#define NEXT NEXT_AT(pc + insn->len)
	/* Retire the instructions so far, then make the next NEXT a checkpoint. */
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
#define ILLEGAL() RAISE(EXC_ILLEGAL, raw_bits(h, pc, insn))
#define REQUIRE_FP()                                           \
	do {                                                   \
		if (unlikely(!(h->s.mstatus & MSTATUS_FS)))    \
			ILLEGAL();                             \
	} while (0)
#define FP_DIRTY() (h->s.mstatus |= MSTATUS_FS | MSTATUS_SD)

	goto checkpoint;

fetch: {
	uint64_t off = pc - h->fetch_vbase;
	if (unlikely(off >= 4096)) {
		if (!rv_fetch_page(h, pc))
			goto exception;
		off = pc - h->fetch_vbase;
	}
	insn = &h->fetch_slots[off >> 1];
	goto *dispatch[insn->op];
}

op_DECODE: {
	uint64_t off = pc - h->fetch_vbase;
	uint16_t lo;
	memcpy(&lo, h->fetch_host + off, 2);
	if ((lo & 3) == 3) {
		uint16_t hi;
		if (unlikely(off == 4094)) {
			if (!rv_fetch_halfword(h, pc + 2, &hi))
				goto exception;
			rv_decode((uint32_t)hi << 16 | lo, &crossing);
			insn = &crossing;
			goto *dispatch[insn->op];
		}
		memcpy(&hi, h->fetch_host + off + 2, 2);
		rv_decode((uint32_t)hi << 16 | lo, insn);
	} else {
		rv_decode(lo, insn);
	}
	goto *dispatch[insn->op];
}

checkpoint:
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
	budget = budget_start = RUN_BUDGET;
	goto fetch;

exception:
	/* The faulting instruction does not retire, but it still uses up
	 * budget so that a trap loop cannot starve checkpoints. */
	h->s.minstret--;
	h->s.pc = pc;
	rv_take_trap(h, h->trap_cause, h->trap_tval, false);
	pc = h->s.pc;
	if (--budget <= 0)
		goto checkpoint;
	goto fetch;

op_ILLEGAL:
	RAISE(EXC_ILLEGAL, (uint32_t)insn->imm);

op_LUI:
	x[insn->rd] = (uint64_t)(int64_t)insn->imm;
	NEXT;
op_AUIPC:
	x[insn->rd] = pc + (int64_t)insn->imm;
	NEXT;
op_JAL: {
	uint64_t link = pc + insn->len;
	x[insn->rd] = link;
	NEXT_AT(pc + (int64_t)insn->imm);
}
op_JALR: {
	uint64_t target = (x[insn->rs1] + (int64_t)insn->imm) & ~1ull;
	x[insn->rd] = pc + insn->len;
	NEXT_AT(target);
}
op_BEQ:
	NEXT_AT(x[insn->rs1] == x[insn->rs2] ? pc + (int64_t)insn->imm : pc + insn->len);
op_BNE:
	NEXT_AT(x[insn->rs1] != x[insn->rs2] ? pc + (int64_t)insn->imm : pc + insn->len);
op_BLT:
	NEXT_AT((int64_t)x[insn->rs1] < (int64_t)x[insn->rs2] ? pc + (int64_t)insn->imm : pc + insn->len);
op_BGE:
	NEXT_AT((int64_t)x[insn->rs1] >= (int64_t)x[insn->rs2] ? pc + (int64_t)insn->imm : pc + insn->len);
op_BLTU:
	NEXT_AT(x[insn->rs1] < x[insn->rs2] ? pc + (int64_t)insn->imm : pc + insn->len);
op_BGEU:
	NEXT_AT(x[insn->rs1] >= x[insn->rs2] ? pc + (int64_t)insn->imm : pc + insn->len);

op_LB: {
	uint8_t v;
	if (!load_u8(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = (uint64_t)(int64_t)(int8_t)v;
	NEXT;
}
op_LH: {
	uint16_t v;
	if (!load_u16(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = (uint64_t)(int64_t)(int16_t)v;
	NEXT;
}
op_LW: {
	uint32_t v;
	if (!load_u32(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = sx32(v);
	NEXT;
}
op_LD: {
	uint64_t v;
	if (!load_u64(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = v;
	NEXT;
}
op_LBU: {
	uint8_t v;
	if (!load_u8(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = v;
	NEXT;
}
op_LHU: {
	uint16_t v;
	if (!load_u16(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = v;
	NEXT;
}
op_LWU: {
	uint32_t v;
	if (!load_u32(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	x[insn->rd] = v;
	NEXT;
}
op_SB:
	if (!store_u8(h, x[insn->rs1] + (int64_t)insn->imm, (uint8_t)x[insn->rs2]))
		goto exception;
	NEXT;
op_SH:
	if (!store_u16(h, x[insn->rs1] + (int64_t)insn->imm, (uint16_t)x[insn->rs2]))
		goto exception;
	NEXT;
op_SW:
	if (!store_u32(h, x[insn->rs1] + (int64_t)insn->imm, (uint32_t)x[insn->rs2]))
		goto exception;
	NEXT;
op_SD:
	if (!store_u64(h, x[insn->rs1] + (int64_t)insn->imm, x[insn->rs2]))
		goto exception;
	NEXT;

op_ADDI:
	x[insn->rd] = x[insn->rs1] + (int64_t)insn->imm;
	NEXT;
op_SLTI:
	x[insn->rd] = (int64_t)x[insn->rs1] < (int64_t)insn->imm;
	NEXT;
op_SLTIU:
	x[insn->rd] = x[insn->rs1] < (uint64_t)(int64_t)insn->imm;
	NEXT;
op_XORI:
	x[insn->rd] = x[insn->rs1] ^ (uint64_t)(int64_t)insn->imm;
	NEXT;
op_ORI:
	x[insn->rd] = x[insn->rs1] | (uint64_t)(int64_t)insn->imm;
	NEXT;
op_ANDI:
	x[insn->rd] = x[insn->rs1] & (uint64_t)(int64_t)insn->imm;
	NEXT;
op_SLLI:
	x[insn->rd] = x[insn->rs1] << insn->imm;
	NEXT;
op_SRLI:
	x[insn->rd] = x[insn->rs1] >> insn->imm;
	NEXT;
op_SRAI:
	x[insn->rd] = (uint64_t)((int64_t)x[insn->rs1] >> insn->imm);
	NEXT;
op_ADD:
	x[insn->rd] = x[insn->rs1] + x[insn->rs2];
	NEXT;
op_SUB:
	x[insn->rd] = x[insn->rs1] - x[insn->rs2];
	NEXT;
op_SLL:
	x[insn->rd] = x[insn->rs1] << (x[insn->rs2] & 63);
	NEXT;
op_SLT:
	x[insn->rd] = (int64_t)x[insn->rs1] < (int64_t)x[insn->rs2];
	NEXT;
op_SLTU:
	x[insn->rd] = x[insn->rs1] < x[insn->rs2];
	NEXT;
op_XOR:
	x[insn->rd] = x[insn->rs1] ^ x[insn->rs2];
	NEXT;
op_SRL:
	x[insn->rd] = x[insn->rs1] >> (x[insn->rs2] & 63);
	NEXT;
op_SRA:
	x[insn->rd] = (uint64_t)((int64_t)x[insn->rs1] >> (x[insn->rs2] & 63));
	NEXT;
op_OR:
	x[insn->rd] = x[insn->rs1] | x[insn->rs2];
	NEXT;
op_AND:
	x[insn->rd] = x[insn->rs1] & x[insn->rs2];
	NEXT;
op_ADDIW:
	x[insn->rd] = sx32(x[insn->rs1] + (int64_t)insn->imm);
	NEXT;
op_SLLIW:
	x[insn->rd] = sx32((uint32_t)x[insn->rs1] << insn->imm);
	NEXT;
op_SRLIW:
	x[insn->rd] = sx32((uint32_t)x[insn->rs1] >> insn->imm);
	NEXT;
op_SRAIW:
	x[insn->rd] = (uint64_t)(int64_t)((int32_t)x[insn->rs1] >> insn->imm);
	NEXT;
op_ADDW:
	x[insn->rd] = sx32(x[insn->rs1] + x[insn->rs2]);
	NEXT;
op_SUBW:
	x[insn->rd] = sx32(x[insn->rs1] - x[insn->rs2]);
	NEXT;
op_SLLW:
	x[insn->rd] = sx32((uint32_t)x[insn->rs1] << (x[insn->rs2] & 31));
	NEXT;
op_SRLW:
	x[insn->rd] = sx32((uint32_t)x[insn->rs1] >> (x[insn->rs2] & 31));
	NEXT;
op_SRAW:
	x[insn->rd] = (uint64_t)(int64_t)((int32_t)x[insn->rs1] >> (x[insn->rs2] & 31));
	NEXT;

op_MUL:
	x[insn->rd] = x[insn->rs1] * x[insn->rs2];
	NEXT;
op_MULH:
	x[insn->rd] = (uint64_t)(((__int128)(int64_t)x[insn->rs1] * (int64_t)x[insn->rs2]) >> 64);
	NEXT;
op_MULHSU:
	x[insn->rd] = mulhsu((int64_t)x[insn->rs1], x[insn->rs2]);
	NEXT;
op_MULHU:
	x[insn->rd] = (uint64_t)(((unsigned __int128)x[insn->rs1] * x[insn->rs2]) >> 64);
	NEXT;
op_DIV:
	x[insn->rd] = (uint64_t)div64((int64_t)x[insn->rs1], (int64_t)x[insn->rs2]);
	NEXT;
op_DIVU:
	x[insn->rd] = x[insn->rs2] ? x[insn->rs1] / x[insn->rs2] : ~0ull;
	NEXT;
op_REM:
	x[insn->rd] = (uint64_t)rem64((int64_t)x[insn->rs1], (int64_t)x[insn->rs2]);
	NEXT;
op_REMU:
	x[insn->rd] = x[insn->rs2] ? x[insn->rs1] % x[insn->rs2] : x[insn->rs1];
	NEXT;
op_MULW:
	x[insn->rd] = sx32((uint32_t)x[insn->rs1] * (uint32_t)x[insn->rs2]);
	NEXT;
op_DIVW:
	x[insn->rd] = (uint64_t)(int64_t)div32((int32_t)x[insn->rs1], (int32_t)x[insn->rs2]);
	NEXT;
op_DIVUW: {
	uint32_t a = (uint32_t)x[insn->rs1], b = (uint32_t)x[insn->rs2];
	x[insn->rd] = sx32(b ? a / b : ~0u);
	NEXT;
}
op_REMW:
	x[insn->rd] = (uint64_t)(int64_t)rem32((int32_t)x[insn->rs1], (int32_t)x[insn->rs2]);
	NEXT;
op_REMUW: {
	uint32_t a = (uint32_t)x[insn->rs1], b = (uint32_t)x[insn->rs2];
	x[insn->rd] = sx32(b ? a % b : a);
	NEXT;
}

	/* A: host atomics on the host address give atomicity across harts. */
op_LR_W: {
	uint64_t va = x[insn->rs1];
	int32_t *p = rv_amo_addr(h, va, 4, true);
	if (!p)
		goto exception;
	int32_t v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
	h->s.reservation_valid = 1;
	h->s.reservation_addr = va;
	h->s.reservation_value = (uint32_t)v;
	x[insn->rd] = (uint64_t)(int64_t)v;
	NEXT;
}
op_LR_D: {
	uint64_t va = x[insn->rs1];
	uint64_t *p = rv_amo_addr(h, va, 8, true);
	if (!p)
		goto exception;
	uint64_t v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
	h->s.reservation_valid = 1;
	h->s.reservation_addr = va;
	h->s.reservation_value = v;
	x[insn->rd] = v;
	NEXT;
}
	/* SC succeeds if the word still holds what LR read: a compare-and-swap.
	 * That admits the ABA case, which RVWMO's constrained LR/SC loops
	 * cannot tell apart from a real reservation. */
op_SC_W: {
	uint64_t va = x[insn->rs1];
	uint32_t *p = rv_amo_addr(h, va, 4, false);
	if (!p)
		goto exception;
	bool ok = false;
	if (h->s.reservation_valid && h->s.reservation_addr == va) {
		uint32_t expected = (uint32_t)h->s.reservation_value;
		ok = __atomic_compare_exchange_n(p, &expected, (uint32_t)x[insn->rs2], false,
						 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	h->s.reservation_valid = 0;
	x[insn->rd] = !ok;
	NEXT;
}
op_SC_D: {
	uint64_t va = x[insn->rs1];
	uint64_t *p = rv_amo_addr(h, va, 8, false);
	if (!p)
		goto exception;
	bool ok = false;
	if (h->s.reservation_valid && h->s.reservation_addr == va) {
		uint64_t expected = h->s.reservation_value;
		ok = __atomic_compare_exchange_n(p, &expected, x[insn->rs2], false,
						 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	h->s.reservation_valid = 0;
	x[insn->rd] = !ok;
	NEXT;
}

#define AMO_FETCH(label, type, builtin)                                              \
label: {                                                                             \
	type *p = rv_amo_addr(h, x[insn->rs1], sizeof(type), false);                 \
	if (!p)                                                                      \
		goto exception;                                                      \
	type old = builtin(p, (type)x[insn->rs2], __ATOMIC_SEQ_CST);                 \
	x[insn->rd] = sizeof(type) == 4 ? sx32((uint64_t)old) : (uint64_t)old;       \
	NEXT;                                                                        \
}
#define AMO_CAS(label, type, pick)                                                   \
label: {                                                                             \
	type *p = rv_amo_addr(h, x[insn->rs1], sizeof(type), false);                 \
	if (!p)                                                                      \
		goto exception;                                                      \
	type b = (type)x[insn->rs2];                                                 \
	type old = __atomic_load_n(p, __ATOMIC_RELAXED);                             \
	while (!__atomic_compare_exchange_n(p, &old, pick(old, b), true,             \
					    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))     \
		;                                                                    \
	x[insn->rd] = sizeof(type) == 4 ? sx32((uint64_t)old) : (uint64_t)old;       \
	NEXT;                                                                        \
}
#define PICK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PICK_MAX(a, b) ((a) > (b) ? (a) : (b))

	AMO_FETCH(op_AMOSWAP_W, uint32_t, __atomic_exchange_n)
	AMO_FETCH(op_AMOADD_W, uint32_t, __atomic_fetch_add)
	AMO_FETCH(op_AMOXOR_W, uint32_t, __atomic_fetch_xor)
	AMO_FETCH(op_AMOAND_W, uint32_t, __atomic_fetch_and)
	AMO_FETCH(op_AMOOR_W, uint32_t, __atomic_fetch_or)
	AMO_CAS(op_AMOMIN_W, int32_t, PICK_MIN)
	AMO_CAS(op_AMOMAX_W, int32_t, PICK_MAX)
	AMO_CAS(op_AMOMINU_W, uint32_t, PICK_MIN)
	AMO_CAS(op_AMOMAXU_W, uint32_t, PICK_MAX)
	AMO_FETCH(op_AMOSWAP_D, uint64_t, __atomic_exchange_n)
	AMO_FETCH(op_AMOADD_D, uint64_t, __atomic_fetch_add)
	AMO_FETCH(op_AMOXOR_D, uint64_t, __atomic_fetch_xor)
	AMO_FETCH(op_AMOAND_D, uint64_t, __atomic_fetch_and)
	AMO_FETCH(op_AMOOR_D, uint64_t, __atomic_fetch_or)
	AMO_CAS(op_AMOMIN_D, int64_t, PICK_MIN)
	AMO_CAS(op_AMOMAX_D, int64_t, PICK_MAX)
	AMO_CAS(op_AMOMINU_D, uint64_t, PICK_MIN)
	AMO_CAS(op_AMOMAXU_D, uint64_t, PICK_MAX)

op_FENCE:
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	NEXT;
op_FENCE_I:
	rv_dcache_flush(h);
	NEXT;

op_ECALL:
	if (h->s.priv == RV_PRIV_S && h->cpu.env->sbi_call) {
		SYNC_INSTRET();
		h->s.pc = pc;
		bool leave = h->cpu.env->sbi_call(h->cpu.env->opaque, &h->cpu);
		/* The call may have programmed the timer or sent this hart an IPI. */
		FORCE_CHECKPOINT();
		pc += 4;
		if (leave) {
			h->s.minstret++;
			h->s.pc = pc;
			return CPU_EXIT_KICKED;
		}
		NEXT_AT(pc);
	}
	RAISE(h->s.priv == RV_PRIV_U ? EXC_ECALL_U : h->s.priv == RV_PRIV_S ? EXC_ECALL_S : EXC_ECALL_M, 0);
op_EBREAK:
	RAISE(EXC_BREAKPOINT, pc);
op_SRET:
	h->s.pc = pc;
	if (!rv_sret(h))
		ILLEGAL();
	FORCE_CHECKPOINT();
	NEXT_AT(h->s.pc);
op_MRET:
	h->s.pc = pc;
	if (!rv_mret(h))
		ILLEGAL();
	FORCE_CHECKPOINT();
	NEXT_AT(h->s.pc);
op_WFI:
	if (h->s.priv == RV_PRIV_U || (h->s.priv == RV_PRIV_S && (h->s.mstatus & MSTATUS_TW)))
		ILLEGAL();
	pc += 4;
	h->s.pc = pc;
	rv_update_timer(h);
	if (!(__atomic_load_n(&h->s.mip, __ATOMIC_ACQUIRE) & h->s.mie)) {
		SYNC_INSTRET();
		h->s.minstret++;
		return CPU_EXIT_WFI;
	}
	FORCE_CHECKPOINT();
	NEXT_AT(pc);
op_SFENCE_VMA:
	if (h->s.priv == RV_PRIV_U || (h->s.priv == RV_PRIV_S && (h->s.mstatus & MSTATUS_TVM)))
		ILLEGAL();
	if (insn->rs1 == 0)
		rv_tlb_flush_all(h);
	else
		rv_tlb_flush_page(h, x[insn->rs1]);
	NEXT;

	/* Zicsr. rs3 holds the architectural rd: a CSRRW with rd = x0 does not
	 * read, a CSRRS/C with rs1 = x0 (or uimm 0) does not write. */
#define CSR_OP(label, is_imm, compute)                                              \
label: {                                                                            \
	unsigned csr = (unsigned)insn->imm;                                         \
	uint64_t src = is_imm ? insn->rs1 : x[insn->rs1];                           \
	bool do_write = compute != 0 ? insn->rs1 != 0 : true;                       \
	bool do_read = compute != 0 || insn->rs3 != 0;                              \
	uint64_t old = 0;                                                           \
	SYNC_INSTRET();                                                             \
	if (!rv_csr_access_ok(h, csr, do_write))                                    \
		ILLEGAL();                                                          \
	if (do_read && !rv_csr_read(h, csr, &old))                                  \
		ILLEGAL();                                                          \
	if (do_write) {                                                             \
		uint64_t val = compute == 0 ? src : compute == 1 ? old | src : old & ~src; \
		if (!rv_csr_write(h, csr, val))                                     \
			ILLEGAL();                                                  \
		FORCE_CHECKPOINT();                                                 \
	}                                                                           \
	x[insn->rd] = old;                                                          \
	NEXT;                                                                       \
}
	CSR_OP(op_CSRRW, 0, 0)
	CSR_OP(op_CSRRS, 0, 1)
	CSR_OP(op_CSRRC, 0, 2)
	CSR_OP(op_CSRRWI, 1, 0)
	CSR_OP(op_CSRRSI, 1, 1)
	CSR_OP(op_CSRRCI, 1, 2)

op_FLW: {
	REQUIRE_FP();
	uint32_t v;
	if (!load_u32(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	f[insn->rd] = FPU_BOX_S(v);
	FP_DIRTY();
	NEXT;
}
op_FLD: {
	REQUIRE_FP();
	uint64_t v;
	if (!load_u64(h, x[insn->rs1] + (int64_t)insn->imm, &v))
		goto exception;
	f[insn->rd] = v;
	FP_DIRTY();
	NEXT;
}
op_FSW:
	REQUIRE_FP();
	if (!store_u32(h, x[insn->rs1] + (int64_t)insn->imm, (uint32_t)f[insn->rs2]))
		goto exception;
	NEXT;
op_FSD:
	REQUIRE_FP();
	if (!store_u64(h, x[insn->rs1] + (int64_t)insn->imm, f[insn->rs2]))
		goto exception;
	NEXT;
op_FP: {
	REQUIRE_FP();
	enum fpu_op op = (enum fpu_op)insn->imm;
	const struct fpu_op_info *info = &fpu_op_info[op];
	unsigned rm = insn->rm;
	if (rm == FPU_DYN)
		rm = (h->s.fcsr >> 5) & 7;
	if (info->uses_rm && rm > FPU_RMM)
		ILLEGAL();
	uint32_t flags = 0;
	uint64_t a = info->src_int ? x[insn->rs1] : f[insn->rs1];
	uint64_t r = fpu_exec(op, a, f[insn->rs2], f[insn->rs3], rm, &flags);
	if (info->dst_int)
		x[insn->rd] = r;
	else
		f[insn->rd] = r;
	h->s.fcsr |= flags;
	FP_DIRTY();
	NEXT;
}
}
