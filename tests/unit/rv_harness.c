/* rv_harness.c: the test machine of rv_harness.h.
 *
 * Linked into every unit test binary (the Makefile links every non-test_
 * file of tests/unit), so it holds no main() and no test cases. */
#include "rv_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* A program stuck in a loop (a test that found a bug) must still end:
 * time_now() is called at every run-loop checkpoint (at least every 4096
 * instructions), so counting the calls bounds the instructions executed. */
#define RVT_WATCHDOG_CALLS 20000

static bool in_mmio(uint64_t paddr, unsigned size)
{
	return paddr >= RVT_MMIO_BASE && paddr - RVT_MMIO_BASE + size <= RVT_MMIO_SIZE;
}

static void log_mmio(struct rvt *t, bool write, uint64_t addr, unsigned size, uint64_t value)
{
	if (t->mmio_count < sizeof(t->mmio_log) / sizeof(t->mmio_log[0]))
		t->mmio_log[t->mmio_count] = (struct rvt_mmio_access){ write, addr, size, value };
	t->mmio_count++;
}

static bool fake_mmio_read(void *opaque, uint64_t paddr, unsigned size, uint64_t *value)
{
	struct rvt *t = opaque;
	if (!in_mmio(paddr, size))
		return false;
	uint64_t v = 0;
	memcpy(&v, t->mmio + (paddr - RVT_MMIO_BASE), size);   /* little-endian host */
	*value = v;
	log_mmio(t, false, paddr, size, v);
	return true;
}

static bool fake_mmio_write(void *opaque, uint64_t paddr, unsigned size, uint64_t value)
{
	struct rvt *t = opaque;
	if (!in_mmio(paddr, size))
		return false;
	memcpy(t->mmio + (paddr - RVT_MMIO_BASE), &value, size);
	log_mmio(t, true, paddr, size, value);
	return true;
}

static uint64_t fake_time_now(void *opaque)
{
	struct rvt *t = opaque;
	if (++t->time_calls == t->watchdog)
		cpu_kick(t->cpu);
	uint64_t now = t->time;
	t->time += t->time_step;
	return now;
}

static bool fake_sbi_call(void *opaque, struct cpu *cpu)
{
	struct rvt *t = opaque;
	struct rv_state s;
	cpu_get_state(cpu, &s);
	t->sbi_count++;
	t->sbi_a0 = cpu_get_reg(cpu, A0);
	t->sbi_a6 = cpu_get_reg(cpu, A6);
	t->sbi_a7 = cpu_get_reg(cpu, A7);
	t->sbi_pc = s.pc;
	t->sbi_priv = s.priv;
	cpu_set_reg(cpu, A0, t->sbi_ret);
	return t->sbi_leave;
}

void rvt_enable_sbi(struct rvt *t, bool on)
{
	t->env.sbi_call = on ? fake_sbi_call : NULL;
}

static void install_handlers(struct rvt *t)
{
	/* The M handler saves and clears mie before its WFI: an interrupt
	 * that is still pending would otherwise make WFI a no-op forever. */
	RVT_ASM(t, RVT_TRAP_M, CSRRW(T6, CSR_MIE, ZERO), WFI(), J(-4));
	RVT_ASM(t, RVT_TRAP_S, CSRRW(T5, CSR_SIE, ZERO), WFI(), J(-4));
}

void rvt_install_vectors(struct rvt *t)
{
	rvt_org(t, RVT_VEC_S);
	for (unsigned n = 0; n < 16; n++)
		rvt_i(t, JAL(T4, (int32_t)(RVT_TRAP_S - (RVT_VEC_S + 4 * n))));
	cpu_flush(t->cpu, CPU_FLUSH_ICACHE);
}

struct rvt *rvt_new(unsigned hart_id)
{
	struct rvt *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	struct error err = { 0 };
	if (guest_ram_init(&t->ram, RVT_RAM_BASE, RVT_RAM_SIZE, &err) < 0) {
		fprintf(stderr, "rvt: %s\n", err.msg);
		free(t);
		return NULL;
	}
	t->env = (struct cpu_env){
		.ram = &t->ram,
		.opaque = t,
		.mmio_read = fake_mmio_read,
		.mmio_write = fake_mmio_write,
		.sbi_call = NULL,
		.time_now = fake_time_now,
	};
	t->watchdog = RVT_WATCHDOG_CALLS;
	t->pt_next = RVT_PT;
	t->cpu = rv64_interp_create(&t->env, hart_id);
	if (!t->cpu) {
		guest_ram_destroy(&t->ram);
		free(t);
		return NULL;
	}
	install_handlers(t);

	/* M-mode at RVT_CODE, traps to the handlers, mie = 0 (reset value). */
	struct rv_state s = rvt_state(t);
	s.pc = RVT_CODE;
	s.mtvec = RVT_TRAP_M;
	s.stvec = RVT_TRAP_S;
	rvt_put_state(t, &s);
	t->cursor = RVT_CODE;
	return t;
}

void rvt_free(struct rvt *t)
{
	if (!t)
		return;
	cpu_destroy(t->cpu);
	guest_ram_destroy(&t->ram);
	free(t);
}

int rvt_setup(void **state)
{
	struct rvt *t = rvt_new(0);
	if (!t)
		return -1;
	*state = t;
	return 0;
}

int rvt_teardown(void **state)
{
	rvt_free(*state);
	*state = NULL;
	return 0;
}

/* ---- running ------------------------------------------------------------ */

enum cpu_exit rvt_run(struct rvt *t)
{
	t->time_calls = 0;
	return cpu_run(t->cpu);
}

void rvt_dump(struct rvt *t)
{
	struct rv_state s = rvt_state(t);
	fprintf(stderr,
		"rvt: pc %#llx priv %llu mstatus %#llx\n"
		"rvt: mcause %#llx mepc %#llx mtval %#llx\n"
		"rvt: scause %#llx sepc %#llx stval %#llx\n",
		(unsigned long long)s.pc, (unsigned long long)s.priv,
		(unsigned long long)s.mstatus, (unsigned long long)s.mcause,
		(unsigned long long)s.mepc, (unsigned long long)s.mtval,
		(unsigned long long)s.scause, (unsigned long long)s.sepc,
		(unsigned long long)s.stval);
}

void rvt_run_from(struct rvt *t, uint64_t pc, uint64_t stop)
{
	cpu_set_pc(t->cpu, pc);
	enum cpu_exit why = rvt_run(t);
	uint64_t at = RVT_GET(t, pc);
	if (why != CPU_EXIT_WFI || at != stop) {
		fprintf(stderr, "rvt: expected to stop in WFI at %#llx, exit %d\n",
			(unsigned long long)stop, (int)why);
		rvt_dump(t);
	}
	assert_int_equal(why, CPU_EXIT_WFI);
	assert_int_equal(at, stop);
}

void rvt_go(struct rvt *t)
{
	rvt_run_from(t, RVT_CODE, t->cursor);
}

void rvt_run_trap_m(struct rvt *t, uint64_t pc, uint64_t cause, uint64_t epc, uint64_t tval)
{
	rvt_run_from(t, pc, RVT_TRAP_M_STOP);
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_M);
	assert_int_equal(s.mcause, cause);
	assert_int_equal(s.mepc, epc);
	assert_int_equal(s.mtval, tval);
}

void rvt_run_trap_s(struct rvt *t, uint64_t pc, uint64_t cause, uint64_t epc, uint64_t tval)
{
	rvt_run_from(t, pc, RVT_TRAP_S_STOP);
	struct rv_state s = rvt_state(t);
	assert_int_equal(s.priv, RV_PRIV_S);
	assert_int_equal(s.scause, cause);
	assert_int_equal(s.sepc, epc);
	assert_int_equal(s.stval, tval);
}

void rvt_go_trap_m(struct rvt *t, uint64_t cause, uint64_t epc, uint64_t tval)
{
	rvt_run_trap_m(t, RVT_CODE, cause, epc, tval);
}

void rvt_go_trap_s(struct rvt *t, uint64_t cause, uint64_t epc, uint64_t tval)
{
	rvt_run_trap_s(t, RVT_CODE, cause, epc, tval);
}

/* ---- programs ------------------------------------------------------------- */

void rvt_org(struct rvt *t, uint64_t addr)
{
	t->cursor = addr;
}

void rvt_i(struct rvt *t, uint32_t insn)
{
	assert_int_equal(guest_ram_write(&t->ram, t->cursor, &insn, 4), 0);
	t->cursor += 4;
	cpu_flush(t->cpu, CPU_FLUSH_ICACHE);
}

void rvt_c(struct rvt *t, uint16_t insn)
{
	assert_int_equal(guest_ram_write(&t->ram, t->cursor, &insn, 2), 0);
	t->cursor += 2;
	cpu_flush(t->cpu, CPU_FLUSH_ICACHE);
}

void rvt_code(struct rvt *t, uint64_t addr, const uint32_t *insns, size_t n)
{
	rvt_org(t, addr);
	for (size_t i = 0; i < n; i++)
		rvt_i(t, insns[i]);
}

/* ---- state ------------------------------------------------------------------ */

struct rv_state rvt_state(struct rvt *t)
{
	struct rv_state s;
	cpu_get_state(t->cpu, &s);
	return s;
}

void rvt_put_state(struct rvt *t, const struct rv_state *s)
{
	cpu_set_state(t->cpu, s);
}

uint64_t rvt_x(struct rvt *t, unsigned reg)
{
	return cpu_get_reg(t->cpu, reg);
}

void rvt_set_x(struct rvt *t, unsigned reg, uint64_t value)
{
	cpu_set_reg(t->cpu, reg, value);
}

void rvt_set_priv(struct rvt *t, enum rv_priv priv)
{
	RVT_SET(t, priv, priv);
}

/* ---- memory ------------------------------------------------------------------ */

void *rvt_host(struct rvt *t, uint64_t paddr, uint64_t len)
{
	void *p = guest_ram_ptr(&t->ram, paddr, len);
	assert_non_null(p);
	return p;
}

#define RVT_RW(bits)                                                               \
	uint##bits##_t rvt_r##bits(struct rvt *t, uint64_t paddr)                  \
	{                                                                          \
		uint##bits##_t v;                                                  \
		memcpy(&v, rvt_host(t, paddr, sizeof(v)), sizeof(v));             \
		return v;                                                          \
	}                                                                          \
	void rvt_w##bits(struct rvt *t, uint64_t paddr, uint##bits##_t v)          \
	{                                                                          \
		memcpy(rvt_host(t, paddr, sizeof(v)), &v, sizeof(v));              \
	}
RVT_RW(8)
RVT_RW(16)
RVT_RW(32)
RVT_RW(64)

/* ---- page tables --------------------------------------------------------------- */

uint64_t rvt_pt_alloc(struct rvt *t)
{
	assert_true(t->pt_next < RVT_PT_END);
	uint64_t pa = t->pt_next;
	t->pt_next += 4096;
	memset(rvt_host(t, pa, 4096), 0, 4096);
	return pa;
}

uint64_t rvt_pte_addr(struct rvt *t, uint64_t root, uint64_t va, int level)
{
	uint64_t table = root;
	for (int l = 2; l > level; l--) {
		uint64_t pte_pa = table + ((va >> (12 + 9 * l)) & 511) * 8;
		uint64_t pte = rvt_r64(t, pte_pa);
		if (!(pte & PTE_V)) {
			uint64_t next = rvt_pt_alloc(t);
			pte = PTE_LEAF(next, PTE_V);   /* a pointer: V only */
			rvt_w64(t, pte_pa, pte);
		}
		assert_int_equal(pte & (PTE_R | PTE_W | PTE_X), 0);
		table = (pte >> 10) << 12;
	}
	return table + ((va >> (12 + 9 * level)) & 511) * 8;
}

void rvt_map(struct rvt *t, uint64_t root, uint64_t va, uint64_t pa, int level, uint64_t flags)
{
	rvt_w64(t, rvt_pte_addr(t, root, va, level), PTE_LEAF(pa, flags | PTE_V));
}

uint64_t rvt_paging_identity(struct rvt *t)
{
	uint64_t root = rvt_pt_alloc(t);
	for (uint64_t pa = RVT_RAM_BASE; pa < RVT_RAM_BASE + (1u << 20); pa += 4096)
		rvt_map(t, root, pa, pa, 0, PTE_RWX | PTE_A | PTE_D);
	RVT_SET(t, satp, SATP_SV39(root));
	return root;
}
