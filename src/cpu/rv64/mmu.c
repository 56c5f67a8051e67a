/* mmu.c: address translation (Sv39, Sv48), the software TLB, the slow
 * paths of loads, stores and fetches, and the decoded-page cache.
 *
 * Page tables follow the privileged ISA manual (20211203), section 4.3.2
 * "Virtual Address Translation Process". A and D bits are set by the
 * walker itself with a compare-and-swap on the PTE (the behaviour the
 * Svadu extension later named), which Linux accepts whether or not the
 * hardware does it. Permissions are checked when an entry is filled, which
 * is why the TLB is split by translation context (U, S, S+SUM, M). */
#include "cpu/rv64/interp.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define PTE_V (1ull << 0)
#define PTE_R (1ull << 1)
#define PTE_W (1ull << 2)
#define PTE_X (1ull << 3)
#define PTE_U (1ull << 4)
#define PTE_G (1ull << 5)
#define PTE_A (1ull << 6)
#define PTE_D (1ull << 7)
#define PTE_PPN_MASK ((1ull << 44) - 1)

#define SATP_MODE_BARE 0
#define SATP_MODE_SV39 8
#define SATP_MODE_SV48 9

static uint64_t page_fault_cause(enum access_type type)
{
	return type == ACCESS_FETCH ? EXC_INSN_PAGE_FAULT :
	       type == ACCESS_READ ? EXC_LOAD_PAGE_FAULT : EXC_STORE_PAGE_FAULT;
}

static uint64_t access_fault_cause(enum access_type type)
{
	return type == ACCESS_FETCH ? EXC_INSN_ACCESS :
	       type == ACCESS_READ ? EXC_LOAD_ACCESS : EXC_STORE_ACCESS;
}

static bool fault(struct rv_interp *h, uint64_t cause, uint64_t vaddr)
{
	h->trap_cause = cause;
	h->trap_tval = vaddr;
	return false;
}

static unsigned effective_priv(const struct rv_interp *h, enum access_type type)
{
	unsigned priv = (unsigned)h->s.priv;
	if (type != ACCESS_FETCH && priv == RV_PRIV_M && (h->s.mstatus & MSTATUS_MPRV))
		priv = (unsigned)((h->s.mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
	return priv;
}

/* Walks the page table for vaddr. On success *paddr is the physical address
 * and *span the offset mask of the leaf's page (0xfff for a 4 KiB page, more
 * for a superpage). */
static bool walk(struct rv_interp *h, uint64_t vaddr, enum access_type type, uint64_t *paddr,
		 uint64_t *span)
{
	unsigned priv = effective_priv(h, type);
	uint64_t satp = h->s.satp;
	unsigned mode = (unsigned)(satp >> 60);

	*span = 0xfff;
	if (priv == RV_PRIV_M || mode == SATP_MODE_BARE) {
		*paddr = vaddr;
		return true;
	}
	int levels = mode == SATP_MODE_SV48 ? 4 : 3;
	unsigned va_bits = 12 + 9 * (unsigned)levels;
	if ((uint64_t)((int64_t)(vaddr << (64 - va_bits)) >> (64 - va_bits)) != vaddr)
		return fault(h, page_fault_cause(type), vaddr);

retry:;
	uint64_t table = (satp & PTE_PPN_MASK) << 12;
	for (int level = levels - 1; level >= 0; level--) {
		uint64_t pte_addr = table + ((vaddr >> (12 + 9 * level)) & 511) * 8;
		uint64_t *pte_p = guest_ram_ptr(h->ram, pte_addr, 8);
		if (!pte_p)
			return fault(h, access_fault_cause(type), vaddr);
		uint64_t pte = __atomic_load_n(pte_p, __ATOMIC_ACQUIRE);

		/* Bits 63:54 hold N and PBMT, extensions tern does not offer. */
		if (!(pte & PTE_V) || (!(pte & PTE_R) && (pte & PTE_W)) || (pte >> 54))
			return fault(h, page_fault_cause(type), vaddr);
		if (!(pte & (PTE_R | PTE_X))) {
			if (level == 0 || (pte & (PTE_A | PTE_D | PTE_U)))
				return fault(h, page_fault_cause(type), vaddr);
			table = ((pte >> 10) & PTE_PPN_MASK) << 12;
			continue;
		}

		/* A leaf: check permissions for this context. */
		if (pte & PTE_U) {
			if (priv == RV_PRIV_S &&
			    (type == ACCESS_FETCH || !(h->s.mstatus & MSTATUS_SUM)))
				return fault(h, page_fault_cause(type), vaddr);
		} else if (priv == RV_PRIV_U) {
			return fault(h, page_fault_cause(type), vaddr);
		}
		bool allowed;
		if (type == ACCESS_FETCH)
			allowed = pte & PTE_X;
		else if (type == ACCESS_READ)
			allowed = (pte & PTE_R) || ((h->s.mstatus & MSTATUS_MXR) && (pte & PTE_X));
		else
			allowed = pte & PTE_W;
		if (!allowed)
			return fault(h, page_fault_cause(type), vaddr);

		uint64_t ppn = (pte >> 10) & PTE_PPN_MASK;
		uint64_t span_mask = (1ull << (9 * level)) - 1;   /* in pages */
		if (ppn & span_mask)
			return fault(h, page_fault_cause(type), vaddr);

		uint64_t want = PTE_A | (type == ACCESS_WRITE ? PTE_D : 0);
		if ((pte & want) != want) {
			if (!__atomic_compare_exchange_n(pte_p, &pte, pte | want, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				goto retry;   /* another hart changed the PTE meanwhile */
			guest_ram_mark_dirty(h->ram, pte_addr, 8);
		}
		uint64_t offset_mask = (1ull << (12 + 9 * level)) - 1;
		*paddr = ((ppn << 12) & ~offset_mask) | (vaddr & offset_mask);
		*span = offset_mask;
		return true;
	}
	return fault(h, page_fault_cause(type), vaddr);
}

bool rv_translate(struct rv_interp *h, uint64_t vaddr, enum access_type type, uint64_t *paddr)
{
	uint64_t span;
	return walk(h, vaddr, type, paddr, &span);
}

/* Bookkeeping for an entry of `kind` at index idx, filled from a page with
 * offset mask span. */
static void note_fill(struct rv_interp *h, struct tlb_ctx *ctx, unsigned kind, unsigned idx,
		      uint64_t vaddr, uint64_t span)
{
	ctx->filled[kind][idx / 64] |= 1ull << (idx % 64);
	if (span > 0xfff) {
		uint64_t lo = vaddr & ~span;
		if (lo < h->tlb_super_lo)
			h->tlb_super_lo = lo;
		if (lo + span > h->tlb_super_hi)
			h->tlb_super_hi = lo + span;
	}
}

static void flush_kind(struct tlb_ctx *ctx, unsigned kind)
{
	for (unsigned w = 0; w < TLB_ENTRIES / 64; w++) {
		uint64_t bits = ctx->filled[kind][w];
		ctx->filled[kind][w] = 0;
		while (bits) {
			unsigned i = w * 64 + (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (kind == TLB_FETCH)
				ctx->fetch[i].vpage = TLB_INVALID;
			else if (kind == TLB_READ)
				ctx->read[i].vpage = TLB_INVALID;
			else
				ctx->write[i].vpage = TLB_INVALID;
		}
	}
}

void rv_tlb_flush_all(struct rv_interp *h)
{
	for (unsigned c = 0; c < TLB_CTX_COUNT; c++)
		for (unsigned k = 0; k < TLB_KINDS; k++)
			flush_kind(&h->tlb[c], k);
	h->tlb_super_lo = ~0ull;
	h->tlb_super_hi = 0;
	h->fetch_vbase = TLB_INVALID;
}

void rv_tlb_flush_writes(struct rv_interp *h)
{
	for (unsigned c = 0; c < TLB_CTX_COUNT; c++)
		flush_kind(&h->tlb[c], TLB_WRITE);
}

void rv_tlb_flush_page(struct rv_interp *h, uint64_t vaddr)
{
	/* An entry filled from a superpage covers one 4 KiB piece of it, so a
	 * flush naming any address of the superpage must drop all pieces. */
	if (vaddr >= h->tlb_super_lo && vaddr <= h->tlb_super_hi) {
		rv_tlb_flush_all(h);
		return;
	}
	uint64_t vpage = vaddr & ~0xfffull;
	unsigned idx = (vaddr >> 12) & (TLB_ENTRIES - 1);
	for (unsigned c = 0; c < TLB_CTX_COUNT; c++) {
		struct tlb_ctx *ctx = &h->tlb[c];
		if (ctx->read[idx].vpage == vpage)
			ctx->read[idx].vpage = TLB_INVALID;
		if (ctx->write[idx].vpage == vpage)
			ctx->write[idx].vpage = TLB_INVALID;
		if (ctx->fetch[idx].vpage == vpage)
			ctx->fetch[idx].vpage = TLB_INVALID;
	}
	if (h->fetch_vbase == vpage)
		h->fetch_vbase = TLB_INVALID;
}

static struct tlb_ctx *ctx_for(struct rv_interp *h, unsigned priv, bool sum)
{
	if (priv == RV_PRIV_M)
		return &h->tlb[TLB_CTX_M];
	if (priv == RV_PRIV_U)
		return &h->tlb[TLB_CTX_U];
	return &h->tlb[sum ? TLB_CTX_S_SUM : TLB_CTX_S];
}

void rv_update_contexts(struct rv_interp *h)
{
	bool mxr = h->s.mstatus & MSTATUS_MXR;
	if (mxr != h->tlb_mxr) {
		/* MXR widens what reads may do; entries filled without it are
		 * merely too strict, but ones filled with it are too lax. */
		rv_tlb_flush_all(h);
		h->tlb_mxr = mxr;
	}
	h->data_ctx = ctx_for(h, effective_priv(h, ACCESS_READ), h->s.mstatus & MSTATUS_SUM);
	struct tlb_ctx *fetch = ctx_for(h, (unsigned)h->s.priv, false);
	if (fetch != h->fetch_ctx) {
		h->fetch_ctx = fetch;
		h->fetch_vbase = TLB_INVALID;
	}
}

static void *ram_page(struct rv_interp *h, uint64_t paddr)
{
	return guest_ram_ptr(h->ram, paddr & ~0xfffull, 4096);
}

/* Translates and, for RAM, fills the read or write TLB of the data context.
 * Returns the host address of vaddr in RAM; NULL with *faulted set when
 * translation trapped; NULL with *paddr set for an address outside RAM. */
static void *data_page(struct rv_interp *h, uint64_t vaddr, enum access_type type,
		       uint64_t *paddr, bool *faulted)
{
	uint64_t span;
	*faulted = !walk(h, vaddr, type, paddr, &span);
	if (*faulted)
		return NULL;
	uint8_t *host = ram_page(h, *paddr);
	if (!host)
		return NULL;
	if (type == ACCESS_WRITE && guest_ram_mark_page_dirty(h->ram, *paddr) &&
	    h->cpu.env->page_dirtied)
		h->cpu.env->page_dirtied(h->cpu.env->opaque, &h->cpu);
	unsigned idx = (vaddr >> 12) & (TLB_ENTRIES - 1);
	struct tlb_entry *e = (type == ACCESS_WRITE ? h->data_ctx->write : h->data_ctx->read) + idx;
	e->vpage = vaddr & ~0xfffull;
	e->addend = (intptr_t)host - (intptr_t)e->vpage;
	note_fill(h, h->data_ctx, type == ACCESS_WRITE ? TLB_WRITE : TLB_READ, idx, vaddr, span);
	h->stat_tlb_misses++;
	return host + (vaddr & 0xfff);
}

bool rv_load_slow(struct rv_interp *h, uint64_t vaddr, unsigned size, uint64_t *value)
{
	if ((vaddr & 0xfff) + size > 4096) {
		/* Straddles two pages: assemble it byte by byte, little-endian. */
		uint64_t v = 0;
		for (unsigned i = 0; i < size; i++) {
			uint64_t b;
			if (!rv_load_slow(h, vaddr + i, 1, &b))
				return false;
			v |= b << (8 * i);
		}
		*value = v;
		return true;
	}
	uint64_t paddr;
	bool faulted;
	void *p = data_page(h, vaddr, ACCESS_READ, &paddr, &faulted);
	if (p) {
		uint64_t v = 0;
		memcpy(&v, p, size);
		*value = v;
		return true;
	}
	if (faulted)
		return false;
	if ((vaddr & (size - 1)) == 0 && h->cpu.env->mmio_read &&
	    h->cpu.env->mmio_read(h->cpu.env->opaque, paddr, size, value))
		return true;
	return fault(h, EXC_LOAD_ACCESS, vaddr);
}

bool rv_store_slow(struct rv_interp *h, uint64_t vaddr, unsigned size, uint64_t value)
{
	if ((vaddr & 0xfff) + size > 4096) {
		/* Check both pages before writing either, so a fault on the
		 * second leaves memory untouched. */
		uint64_t pa, span;
		if (!walk(h, vaddr, ACCESS_WRITE, &pa, &span) ||
		    !walk(h, vaddr + size - 1, ACCESS_WRITE, &pa, &span))
			return false;
		for (unsigned i = 0; i < size; i++)
			if (!rv_store_slow(h, vaddr + i, 1, value >> (8 * i)))
				return false;
		return true;
	}
	uint64_t paddr;
	bool faulted;
	void *p = data_page(h, vaddr, ACCESS_WRITE, &paddr, &faulted);
	if (p) {
		memcpy(p, &value, size);
		return true;
	}
	if (faulted)
		return false;
	if ((vaddr & (size - 1)) == 0 && h->cpu.env->mmio_write &&
	    h->cpu.env->mmio_write(h->cpu.env->opaque, paddr, size, value))
		return true;
	return fault(h, EXC_STORE_ACCESS, vaddr);
}

void *rv_amo_addr(struct rv_interp *h, uint64_t vaddr, unsigned size, bool is_load_only)
{
	enum access_type type = is_load_only ? ACCESS_READ : ACCESS_WRITE;
	if (vaddr & (size - 1)) {
		fault(h, is_load_only ? EXC_LOAD_MISALIGNED : EXC_STORE_MISALIGNED, vaddr);
		return NULL;
	}
	const struct tlb_entry *e = (is_load_only ? h->data_ctx->read : h->data_ctx->write) +
				    ((vaddr >> 12) & (TLB_ENTRIES - 1));
	if (e->vpage == (vaddr & ~0xfffull))
		return (void *)(uintptr_t)(vaddr + e->addend);
	uint64_t paddr;
	bool faulted;
	void *p = data_page(h, vaddr, type, &paddr, &faulted);
	if (!p && !faulted)
		fault(h, access_fault_cause(type), vaddr);   /* atomics on MMIO */
	return p;
}

/* ---- decoded pages --------------------------------------------------- */

static void flush_fetch_entries(struct rv_interp *h)
{
	for (unsigned c = 0; c < TLB_CTX_COUNT; c++)
		flush_kind(&h->tlb[c], TLB_FETCH);
	h->fetch_vbase = TLB_INVALID;
}

/* Fetch TLB entries stay: they turn stale with the generation, and the next
 * fetch through one revalidates its page without a page walk. */
void rv_dcache_flush(struct rv_interp *h)
{
	h->dcache_gen++;
	h->fetch_vbase = TLB_INVALID;
}

void rv_dcache_free(struct rv_interp *h)
{
	for (unsigned i = 0; i < DCACHE_SETS; i++) {
		if (h->dcache[i] != h->dcache_fallback)
			free(h->dcache[i]);
		h->dcache[i] = NULL;
	}
	free(h->dcache_fallback);
	h->dcache_fallback = NULL;
}

static void dpage_reset(struct rv_interp *h, struct dpage *dp, uint64_t ppage, const uint8_t *host)
{
	dp->ppage = ppage;
	dp->gen = h->dcache_gen;
	memcpy(dp->raw, host, sizeof(dp->raw));
	/* dpages are reset only from within rv_run, which sets decode_handler. */
	for (unsigned i = 0; i <= RV_PAGE_SLOTS; i++)
		dp->slots[i] = (struct insn){ .handler = h->decode_handler };
}

/* A stale page whose bytes did not change is as good as a fresh one. */
static void dpage_revalidate(struct rv_interp *h, struct dpage *dp, const uint8_t *host)
{
	if (dp->gen == h->dcache_gen)
		return;
	if (memcmp(dp->raw, host, sizeof(dp->raw)) == 0)
		dp->gen = h->dcache_gen;
	else
		dpage_reset(h, dp, dp->ppage, host);
}

static struct dpage *dcache_lookup(struct rv_interp *h, uint64_t ppage, const uint8_t *host)
{
	unsigned set = (unsigned)(ppage >> 12) % DCACHE_SETS;
	struct dpage *dp = h->dcache[set];
	if (!dp) {
		dp = malloc(sizeof(*dp));
		if (!dp) {
			/* Out of memory: share the one spare page, evicting as we go. */
			dp = h->dcache_fallback;
			for (unsigned i = 0; i < DCACHE_SETS; i++)
				if (h->dcache[i] == dp)
					h->dcache[i] = NULL;
			flush_fetch_entries(h);
		}
		h->dcache[set] = dp;
		dpage_reset(h, dp, ppage, host);
		return dp;
	}
	if (dp->ppage != ppage) {
		/* Fetch TLB entries may point at this page: drop them all. */
		flush_fetch_entries(h);
		h->stat_dpage_evictions++;
		dpage_reset(h, dp, ppage, host);
	} else {
		dpage_revalidate(h, dp, host);
	}
	return dp;
}

bool rv_fetch_page(struct rv_interp *h, uint64_t pc)
{
	uint64_t vpage = pc & ~0xfffull;
	unsigned idx = (pc >> 12) & (TLB_ENTRIES - 1);
	struct tlb_fetch_entry *e = &h->fetch_ctx->fetch[idx];
	if (e->vpage != vpage) {
		uint64_t paddr, span;
		if (!walk(h, pc, ACCESS_FETCH, &paddr, &span))
			return false;
		uint8_t *host = ram_page(h, paddr);
		if (!host)
			return fault(h, EXC_INSN_ACCESS, pc);
		struct dpage *dp = dcache_lookup(h, paddr & ~0xfffull, host);
		/* dcache_lookup may have flushed fetch entries; e is still ours. */
		e->vpage = vpage;
		e->dp = dp;
		note_fill(h, h->fetch_ctx, TLB_FETCH, idx, pc, span);
	} else if (e->gen != h->dcache_gen) {
		/* The translation is still right (a flush would have dropped e);
		 * the page's decoded slots may not be. */
		dpage_revalidate(h, e->dp, ram_page(h, e->dp->ppage));
	}
	e->gen = h->dcache_gen;
	h->fetch_vbase = vpage;
	h->fetch_slots = e->dp->slots;
	h->fetch_host = e->dp->raw;
	return true;
}

bool rv_fetch_halfword(struct rv_interp *h, uint64_t vaddr, uint16_t *out)
{
	uint64_t paddr, span;
	if (!walk(h, vaddr, ACCESS_FETCH, &paddr, &span))
		return false;
	const void *p = guest_ram_ptr(h->ram, paddr, 2);
	if (!p)
		return fault(h, EXC_INSN_ACCESS, vaddr);
	memcpy(out, p, 2);
	return true;
}
