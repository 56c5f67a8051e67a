/* interp.h: internals of the RV64GC interpreter, shared by its files.
 *
 * Speed comes from three caches, none of which is architectural state:
 *  - a software TLB per privilege context (U, S, S with SUM, M), separate
 *    for reads, writes and fetches, holding host-address offsets for RAM
 *    pages; MMIO never enters it, so every device access takes the slow path;
 *  - decoded instructions per physical page (one slot per halfword), owned
 *    by this hart and decoded from a copy of the page taken when the slots
 *    were reset. The ISA only promises that stores become visible to
 *    instruction fetch after a FENCE.I on the fetching hart, so FENCE.I
 *    marks every page stale, and a stale page is used again only after its
 *    copy was found equal to guest memory (else it is reset). Linux runs
 *    FENCE.I whenever it maps an executable page, so most stale pages are
 *    in fact unchanged;
 *  - the page currently being executed (fetch_vbase/fetch_slots).
 * A page enters the write TLB only after it was marked dirty in guest RAM's
 * bitmap, so every guest store is seen by dirty tracking. */
#ifndef TERN_CPU_RV64_INTERP_H
#define TERN_CPU_RV64_INTERP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpu/cpu.h"
#include "cpu/rv64/ops.h"
#include "mem/guest_ram.h"

/* One decoded instruction, 16 bytes. Neither its length nor its address is
 * stored: exec.c has a copy of each operation per length (handler points
 * at the right one), so that stepping to the next slot does not wait for a
 * load, and the pc follows from the slot's place in its page. */
struct insn {
	const void *handler;    /* exec.c's code for it; h->decode_handler if undecoded */
	int32_t imm;            /* immediate; see RV_FP_* and RV_CSR_* for those ops */
	uint8_t op;             /* enum rv_op */
	uint8_t rd;             /* 32 = the discard slot, when rd is x0 */
	uint8_t rs1, rs2;
};

/* RV_OP_FP: imm = fpu_op | rm << 8 | rs3 << 11. */
#define RV_FP_IMM(fop, rm, rs3) ((int32_t)((fop) | (rm) << 8 | (rs3) << 11))
#define RV_FP_OP(imm) ((unsigned)(imm) & 0xff)
#define RV_FP_RM(imm) (((unsigned)(imm) >> 8) & 7)
#define RV_FP_RS3(imm) (((unsigned)(imm) >> 11) & 31)
/* CSR ops: imm = csr | architectural rd << 12 (rd = 0 tells a CSRRW not to read). */
#define RV_CSR_IMM(csr, rd) ((int32_t)((csr) | (rd) << 12))
#define RV_CSR_NUM(imm) ((unsigned)(imm) & 0xfff)
#define RV_CSR_RD(imm) ((unsigned)(imm) >> 12)

#define RV_PAGE_SLOTS 2048      /* 4 KiB / 2-byte halfwords */

struct dpage {
	uint64_t ppage;         /* guest physical page address */
	uint64_t gen;           /* valid while equal to the hart's dcache_gen */
	/* One more slot than halfwords: running off the end of the page lands
	 * on an undecoded slot at offset 4096, which the decoder turns into a
	 * fetch from the next page; sequential steps need no bounds check. */
	struct insn slots[RV_PAGE_SLOTS + 1];
	uint8_t raw[4096];      /* the bytes the slots are decoded from */
};

#define TLB_ENTRIES 1024
#define TLB_INVALID (~0ull)

struct tlb_entry {
	uint64_t vpage;         /* virtual page address, TLB_INVALID if empty */
	intptr_t addend;        /* host address = guest virtual + addend */
};

struct tlb_fetch_entry {
	uint64_t vpage;
	uint64_t gen;           /* dcache_gen when dp was last known valid */
	struct dpage *dp;
};

/* Translation contexts: permissions checked at fill time depend on them. */
enum { TLB_CTX_U, TLB_CTX_S, TLB_CTX_S_SUM, TLB_CTX_M, TLB_CTX_COUNT };

enum { TLB_READ, TLB_WRITE, TLB_FETCH, TLB_KINDS };

struct tlb_ctx {
	struct tlb_entry read[TLB_ENTRIES];
	struct tlb_entry write[TLB_ENTRIES];
	struct tlb_fetch_entry fetch[TLB_ENTRIES];
	/* Entries filled since the last flush, per kind: a flush visits only
	 * those (Linux flushes everything on every context switch). */
	uint64_t filled[TLB_KINDS][TLB_ENTRIES / 64];
};

#define DCACHE_SETS 4096

enum access_type { ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH };

/* Exception causes (privileged spec, mcause values) */
enum {
	EXC_INSN_MISALIGNED = 0, EXC_INSN_ACCESS = 1, EXC_ILLEGAL = 2, EXC_BREAKPOINT = 3,
	EXC_LOAD_MISALIGNED = 4, EXC_LOAD_ACCESS = 5, EXC_STORE_MISALIGNED = 6,
	EXC_STORE_ACCESS = 7, EXC_ECALL_U = 8, EXC_ECALL_S = 9, EXC_ECALL_M = 11,
	EXC_INSN_PAGE_FAULT = 12, EXC_LOAD_PAGE_FAULT = 13, EXC_STORE_PAGE_FAULT = 15,
};

struct rv_interp {
	struct cpu cpu;
	/* Integer registers live here, not in s.x: slot 32 absorbs writes to
	 * x0 so that no operation needs a branch for it. */
	uint64_t x[33];
	struct rv_state s;
	struct guest_ram *ram;

	bool sv48;                      /* satp accepts Sv48 as well as Sv39 */

	/* Set by other threads; the run loop looks at them at checkpoints. */
	uint32_t kick_pending;

	/* Pending trap, filled by the slow paths. */
	uint64_t trap_cause, trap_tval;

	/* TLB */
	struct tlb_ctx *tlb;            /* [TLB_CTX_COUNT], heap */
	struct tlb_ctx *data_ctx;       /* context for loads and stores */
	struct tlb_ctx *fetch_ctx;      /* context for instruction fetch */
	/* Virtual addresses covered by the superpages that entries were filled
	 * from: a per-address sfence.vma in there must flush everything. */
	uint64_t tlb_super_lo, tlb_super_hi;
	bool tlb_mxr;                   /* mstatus.MXR when the entries were filled */

	/* decoded instructions */
	struct dpage *dcache[DCACHE_SETS];
	struct dpage *dcache_fallback;  /* used only when malloc fails */
	uint64_t dcache_gen;
	uint64_t fetch_vbase;           /* virtual page being executed, or TLB_INVALID */
	struct insn *fetch_slots;
	const uint8_t *fetch_host;      /* its bytes: the dpage's raw copy */
	const void *decode_handler;     /* exec.c's code for an undecoded slot */

	/* instret accounting: the run loop's budget, published for CSR reads */
	int64_t budget_start, budget_left;

	uint64_t stat_tlb_misses, stat_dpage_evictions;
};

static inline struct rv_interp *to_interp(struct cpu *c)
{
	return (struct rv_interp *)c;
}

/* decode.c */
void rv_decode(uint32_t raw, struct insn *out);

/* mmu.c */
void rv_tlb_flush_all(struct rv_interp *h);
void rv_tlb_flush_writes(struct rv_interp *h);
void rv_tlb_flush_page(struct rv_interp *h, uint64_t vaddr);
void rv_update_contexts(struct rv_interp *h);
void rv_dcache_flush(struct rv_interp *h);
void rv_dcache_free(struct rv_interp *h);
bool rv_fetch_page(struct rv_interp *h, uint64_t pc);
bool rv_load_slow(struct rv_interp *h, uint64_t vaddr, unsigned size, uint64_t *value);
bool rv_store_slow(struct rv_interp *h, uint64_t vaddr, unsigned size, uint64_t value);
/* Host address of an aligned RAM word for an atomic access (AMO, LR, SC). */
void *rv_amo_addr(struct rv_interp *h, uint64_t vaddr, unsigned size, bool is_load_only);
bool rv_fetch_halfword(struct rv_interp *h, uint64_t vaddr, uint16_t *out);
/* Translation without side effects on the TLB; for unit tests and tools. */
bool rv_translate(struct rv_interp *h, uint64_t vaddr, enum access_type type, uint64_t *paddr);

/* csr.c: false = illegal instruction */
bool rv_csr_read(struct rv_interp *h, unsigned csr, uint64_t *value);
bool rv_csr_write(struct rv_interp *h, unsigned csr, uint64_t value);
bool rv_csr_access_ok(struct rv_interp *h, unsigned csr, bool write);
void rv_update_timer(struct rv_interp *h);

/* trap.c */
void rv_take_trap(struct rv_interp *h, uint64_t cause, uint64_t tval, bool interrupt);
/* The interrupt to take now, or -1. */
int rv_pending_interrupt(struct rv_interp *h);
bool rv_sret(struct rv_interp *h);
bool rv_mret(struct rv_interp *h);

/* exec.c */
enum cpu_exit rv_run(struct rv_interp *h);

#define MSTATUS_SIE  (1ull << 1)
#define MSTATUS_MIE  (1ull << 3)
#define MSTATUS_SPIE (1ull << 5)
#define MSTATUS_UBE  (1ull << 6)
#define MSTATUS_MPIE (1ull << 7)
#define MSTATUS_SPP  (1ull << 8)
#define MSTATUS_VS   (3ull << 9)
#define MSTATUS_MPP  (3ull << 11)
#define MSTATUS_FS   (3ull << 13)
#define MSTATUS_XS   (3ull << 15)
#define MSTATUS_MPRV (1ull << 17)
#define MSTATUS_SUM  (1ull << 18)
#define MSTATUS_MXR  (1ull << 19)
#define MSTATUS_TVM  (1ull << 20)
#define MSTATUS_TW   (1ull << 21)
#define MSTATUS_TSR  (1ull << 22)
#define MSTATUS_UXL  (3ull << 32)
#define MSTATUS_SXL  (3ull << 34)
#define MSTATUS_SD   (1ull << 63)
#define MSTATUS_UXL_64 (2ull << 32)
#define MSTATUS_SXL_64 (2ull << 34)
#define MSTATUS_FS_SHIFT 13
#define MSTATUS_MPP_SHIFT 11

#define MENVCFG_STCE (1ull << 63)

#endif
