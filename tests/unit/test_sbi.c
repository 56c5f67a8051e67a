/* test_sbi.c: tern's SBI firmware (src/machine/sbi.c) against the RISC-V
 * SBI specification 2.0: Base, Timer, IPI, RFENCE (to the calling hart and
 * to stopped harts), HSM, System Reset and Debug Console, plus one path
 * through the interpreter's ecall hook.
 *
 * The VM is assembled by hand: RAM, three interpreter harts (hart 0
 * started, 1 and 2 stopped), the lock and conditions, no devices and no
 * hart threads. Calls go straight to sbi_handle_ecall() with a0..a7 in the
 * calling hart's registers, as the ecall hook does. A remote fence to a
 * running hart other than the caller waits for that hart's thread; that
 * case belongs to the integration tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "machine/console.h"
#include "machine/vm.h"
#include "rv_harness.h"
#include "util/log.h"

/* Extension IDs (SBI 2.0, chapters 4-12) */
#define EXT_BASE   0x10
#define EXT_TIME   0x54494d45
#define EXT_IPI    0x735049
#define EXT_RFENCE 0x52464e43
#define EXT_HSM    0x48534d
#define EXT_SRST   0x53525354
#define EXT_DBCN   0x4442434e
#define EXT_PMU    0x504d55
#define EXT_SUSP   0x53555350
#define EXT_CPPC   0x43505043

/* Error codes (SBI 2.0, table 1) */
#define ERR_NOT_SUPPORTED     (-2)
#define ERR_INVALID_PARAM     (-3)
#define ERR_INVALID_ADDRESS   (-5)
#define ERR_ALREADY_AVAILABLE (-6)

#define HARTS 3
#define RAM_SIZE (1ull << 20)

static uint64_t fake_time;

static uint64_t test_time_now(void *opaque)
{
	(void)opaque;
	return fake_time;
}

struct fixture {
	struct vm *vm;
	char console_path[64];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct vm *vm = calloc(1, sizeof(*vm));
	struct error err = { 0 };
	if (!fx || !vm)
		return -1;
	fx->vm = vm;
	vm->num_harts = HARTS;
	vm->state = VM_RUNNING;
	vm->exit_status = -1;             /* so that a change is visible */
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->changed, NULL);
	if (guest_ram_init(&vm->ram, MEMMAP_RAM_BASE, RAM_SIZE, &err) < 0)
		return -1;
	vm->cpu_env = (struct cpu_env){
		.ram = &vm->ram,
		.opaque = vm,
		.sbi_call = sbi_handle_ecall,
		.time_now = test_time_now,
	};
	for (unsigned i = 0; i < HARTS; i++) {
		struct hart *h = &vm->harts[i];
		h->vm = vm;
		h->id = i;
		h->cpu = rv64_interp_create(&vm->cpu_env, i);
		if (!h->cpu)
			return -1;
		pthread_cond_init(&h->wake, NULL);
		h->hsm = i == 0 ? HSM_STARTED : HSM_STOPPED;
	}
	fake_time = 0;
	log_set_level(LOG_WARN);          /* "guest requested shutdown" is expected here */
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = fx->vm;
	for (unsigned i = 0; i < HARTS; i++) {
		cpu_destroy(vm->harts[i].cpu);
		pthread_cond_destroy(&vm->harts[i].wake);
	}
	if (vm->console[0])
		console_close(vm->console[0]);
	if (fx->console_path[0])
		unlink(fx->console_path);
	guest_ram_destroy(&vm->ram);
	pthread_cond_destroy(&vm->changed);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
	free(fx);
	return 0;
}

struct ret {
	int64_t error;
	uint64_t value;
	bool leave;
};

/* An SBI call from `hart` with a7 = ext, a6 = fid, a0..a2 = args. */
static struct ret sbi(struct vm *vm, unsigned hart, uint64_t ext, uint64_t fid, uint64_t a0,
		      uint64_t a1, uint64_t a2)
{
	struct cpu *cpu = vm->harts[hart].cpu;
	const uint64_t args[6] = { a0, a1, a2, 0, 0, 0 };
	for (unsigned i = 0; i < 6; i++)
		cpu_set_reg(cpu, A0 + i, args[i]);
	cpu_set_reg(cpu, A6, fid);
	cpu_set_reg(cpu, A7, ext);
	bool leave = sbi_handle_ecall(vm, cpu);
	return (struct ret){ (int64_t)cpu_get_reg(cpu, A0), cpu_get_reg(cpu, A1), leave };
}

static uint64_t mip_of(struct vm *vm, unsigned hart)
{
	struct rv_state s;
	cpu_get_state(vm->harts[hart].cpu, &s);
	return s.mip;
}

static struct vm *vm_of(void **state)
{
	return ((struct fixture *)*state)->vm;
}

/* ---- Base ------------------------------------------------------------------ */

static void test_base(void **state)
{
	struct vm *vm = vm_of(state);
	struct ret r = sbi(vm, 0, EXT_BASE, 0, 0, 0, 0);       /* get_spec_version */
	assert_int_equal(r.error, 0);
	assert_int_equal(r.value, 0x02000000);                 /* 2.0: major << 24 | minor */
	assert_false(r.leave);
	for (uint64_t fid = 1; fid <= 2; fid++)                /* impl id, impl version */
		assert_int_equal(sbi(vm, 0, EXT_BASE, fid, 0, 0, 0).error, 0);
	/* mvendorid, marchid, mimpid: the values of the CSRs, which are 0 */
	for (uint64_t fid = 4; fid <= 6; fid++) {
		r = sbi(vm, 0, EXT_BASE, fid, 0, 0, 0);
		assert_int_equal(r.error, 0);
		assert_int_equal(r.value, 0);
	}
	assert_int_equal(sbi(vm, 0, EXT_BASE, 7, 0, 0, 0).error, ERR_NOT_SUPPORTED);
}

static void test_probe_extension(void **state)
{
	struct vm *vm = vm_of(state);
	const uint64_t supported[] = { EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST,
				       EXT_DBCN };
	const uint64_t unsupported[] = { 0x01, 0x08, EXT_PMU, EXT_SUSP, EXT_CPPC, 0x12345678,
					 0x0a000000 };
	for (size_t i = 0; i < sizeof(supported) / sizeof(supported[0]); i++) {
		struct ret r = sbi(vm, 0, EXT_BASE, 3, supported[i], 0, 0);
		assert_int_equal(r.error, 0);
		assert_int_not_equal(r.value, 0);
	}
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		struct ret r = sbi(vm, 0, EXT_BASE, 3, unsupported[i], 0, 0);
		assert_int_equal(r.error, 0);
		assert_int_equal(r.value, 0);
	}
}

static void test_unknown_extensions(void **state)
{
	struct vm *vm = vm_of(state);
	const uint64_t exts[] = { 0x12345678, EXT_PMU, EXT_SUSP,
				  0x01,   /* legacy console_putchar */
				  0x08 }; /* legacy shutdown: must not stop the VM */
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		struct ret r = sbi(vm, 0, exts[i], 0, 'x', 0, 0);
		assert_int_equal(r.error, ERR_NOT_SUPPORTED);
		assert_false(r.leave);
	}
	assert_int_equal(vm->state, VM_RUNNING);
}

/* ---- Timer, IPI ---------------------------------------------------------------- */

static void test_set_timer(void **state)
{
	struct vm *vm = vm_of(state);
	struct rv_state s;
	fake_time = 1000;
	struct ret r = sbi(vm, 1, EXT_TIME, 0, 5000, 0, 0);
	assert_int_equal(r.error, 0);
	cpu_get_state(vm->harts[1].cpu, &s);
	assert_int_equal(s.stimecmp, 5000);
	assert_int_equal(cpu_timer_deadline(vm->harts[1].cpu), 5000);
	assert_int_equal(s.mip & RV_MIP_STIP, 0);
	cpu_get_state(vm->harts[0].cpu, &s);
	assert_int_equal(s.stimecmp, ~0ull);            /* only the caller's timer */

	/* A deadline in the past is pending at once; a far one clears it. */
	sbi(vm, 1, EXT_TIME, 0, 999, 0, 0);
	assert_true(mip_of(vm, 1) & RV_MIP_STIP);
	sbi(vm, 1, EXT_TIME, 0, ~0ull, 0, 0);
	assert_int_equal(mip_of(vm, 1) & RV_MIP_STIP, 0);
	assert_int_equal(sbi(vm, 1, EXT_TIME, 1, 0, 0, 0).error, ERR_NOT_SUPPORTED);
}

static void clear_ssip(struct vm *vm)
{
	for (unsigned i = 0; i < HARTS; i++)
		cpu_set_irq(vm->harts[i].cpu, RV_MIP_SSIP, false);
}

static void check_ssip(struct vm *vm, unsigned mask)
{
	for (unsigned i = 0; i < HARTS; i++)
		assert_int_equal(mip_of(vm, i) & RV_MIP_SSIP, (mask >> i) & 1 ? RV_MIP_SSIP : 0);
}

static void test_send_ipi(void **state)
{
	struct vm *vm = vm_of(state);
	/* send_ipi(hart_mask, hart_mask_base): bit i means hart base + i */
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0x4, 0, 0).error, 0);
	check_ssip(vm, 0x4);
	clear_ssip(vm);
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0x1, 1, 0).error, 0);
	check_ssip(vm, 0x2);
	clear_ssip(vm);
	assert_int_equal(sbi(vm, 2, EXT_IPI, 0, 0x3, 1, 0).error, 0);   /* to itself too */
	check_ssip(vm, 0x6);
	clear_ssip(vm);
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0, ~0ull, 0).error, 0);   /* base -1: all harts */
	check_ssip(vm, 0x7);
	clear_ssip(vm);
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0, 0, 0).error, 0);        /* empty mask */
	check_ssip(vm, 0);

	/* A hart id that does not exist: SBI_ERR_INVALID_PARAM */
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0x1, HARTS, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0x9, 0, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_IPI, 0, 0x1, 0xfffffffffffffff0ull, 0).error,
			 ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_IPI, 1, 0x1, 0, 0).error, ERR_NOT_SUPPORTED);
}

/* ---- HSM ---------------------------------------------------------------------- */

static void test_hsm_get_status(void **state)
{
	struct vm *vm = vm_of(state);
	struct ret r = sbi(vm, 0, EXT_HSM, 2, 0, 0, 0);
	assert_int_equal(r.error, 0);
	assert_int_equal(r.value, 0);                    /* STARTED */
	r = sbi(vm, 0, EXT_HSM, 2, 1, 0, 0);
	assert_int_equal(r.error, 0);
	assert_int_equal(r.value, 1);                    /* STOPPED */
	vm->harts[2].hsm = HSM_SUSPENDED;
	assert_int_equal(sbi(vm, 0, EXT_HSM, 2, 2, 0, 0).value, 4);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 2, HARTS, 0, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 2, ~0ull, 0, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 9, 0, 0, 0).error, ERR_NOT_SUPPORTED);
}

static void test_hsm_start(void **state)
{
	struct vm *vm = vm_of(state);
	const uint64_t entry = MEMMAP_RAM_BASE + 0x2000;
	assert_int_equal(sbi(vm, 1, EXT_HSM, 0, 0, entry, 0).error, ERR_ALREADY_AVAILABLE);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 0, 0, entry, 0).error, ERR_ALREADY_AVAILABLE);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 0, HARTS, entry, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 0, 1, 0x1000, 0).error, ERR_INVALID_ADDRESS);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 0, 1, MEMMAP_RAM_BASE + RAM_SIZE, 0).error,
			 ERR_INVALID_ADDRESS);
	assert_int_equal(vm->harts[1].hsm, HSM_STOPPED);

	struct ret r = sbi(vm, 0, EXT_HSM, 0, 1, entry, 0xabcdef);
	assert_int_equal(r.error, 0);
	assert_false(r.leave);
	assert_int_equal(vm->harts[1].hsm, HSM_START_PENDING);
	assert_int_equal(vm->harts[1].start_addr, entry);
	assert_int_equal(vm->harts[1].start_arg, 0xabcdef);
	assert_int_equal(sbi(vm, 0, EXT_HSM, 2, 1, 0, 0).value, 2);     /* START_PENDING */
	assert_true(sbi(vm, 0, EXT_HSM, 0, 1, entry, 0).error < 0);     /* not twice */
	assert_int_equal(vm->harts[2].hsm, HSM_STOPPED);
}

static void test_hsm_stop(void **state)
{
	struct vm *vm = vm_of(state);
	struct ret r = sbi(vm, 0, EXT_HSM, 1, 0, 0, 0);
	assert_true(r.leave);                           /* the hart leaves its run loop */
	assert_int_equal(vm->harts[0].hsm, HSM_STOPPED);
	assert_int_equal(sbi(vm, 1, EXT_HSM, 2, 0, 0, 0).value, 1);
	/* and a stopped hart can be started again */
	assert_int_equal(sbi(vm, 1, EXT_HSM, 0, 0, MEMMAP_RAM_BASE, 7).error, 0);
	assert_int_equal(vm->harts[0].hsm, HSM_START_PENDING);
}

static void test_hsm_suspend(void **state)
{
	struct vm *vm = vm_of(state);
	/* Reserved and non-retentive types are errors that do not suspend. */
	const uint64_t other[] = { 1, 0x80000000, 0x0fffffff };
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		struct ret r = sbi(vm, 0, EXT_HSM, 3, other[i], MEMMAP_RAM_BASE, 0);
		assert_true(r.error < 0);
		assert_false(r.leave);
		assert_false(vm->harts[0].in_wfi);
	}
	/* Default retentive suspend: like WFI, returning success. */
	struct ret r = sbi(vm, 0, EXT_HSM, 3, 0, 0, 0);
	assert_int_equal(r.error, 0);
	assert_true(r.leave);
	assert_true(vm->harts[0].in_wfi);
}

/* ---- System Reset ------------------------------------------------------------------ */

static void test_system_reset_shutdown(void **state)
{
	struct vm *vm = vm_of(state);
	struct ret r = sbi(vm, 0, EXT_SRST, 0, 0, 0, 0);    /* shutdown, no reason */
	assert_true(r.leave);
	assert_int_equal(vm->state, VM_STOPPING);
	assert_int_equal(vm->exit_status, VM_EXIT_POWEROFF);
	/* Every hart was told to leave its run loop. */
	for (unsigned i = 0; i < HARTS; i++)
		assert_int_equal(cpu_run(vm->harts[i].cpu), CPU_EXIT_KICKED);
	/* A second request does not change the outcome. */
	sbi(vm, 1, EXT_SRST, 0, 1, 0, 0);
	assert_int_equal(vm->exit_status, VM_EXIT_POWEROFF);
}

static void test_system_reset_kinds(void **state)
{
	struct vm *vm = vm_of(state);
	const struct { uint64_t type, reason; int status; } cases[] = {
		{ 1, 0, VM_EXIT_REBOOT },            /* cold reboot */
		{ 2, 0, VM_EXIT_REBOOT },            /* warm reboot */
		{ 0, 1, VM_EXIT_GUEST_FAILURE },     /* shutdown after a system failure */
		{ 1, 1, VM_EXIT_GUEST_FAILURE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vm->state = VM_RUNNING;
		vm->exit_status = -1;
		struct ret r = sbi(vm, 0, EXT_SRST, 0, cases[i].type, cases[i].reason, 0);
		assert_int_equal(r.error, 0);
		assert_true(r.leave);
		assert_int_equal(vm->state, VM_STOPPING);
		assert_int_equal(vm->exit_status, cases[i].status);
	}
}

static void test_system_reset_invalid(void **state)
{
	struct vm *vm = vm_of(state);
	const uint64_t bad[][2] = { { 3, 0 }, { 0xf0000000, 0 }, { 0, 2 }, { 0, 0xe0000000 } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ret r = sbi(vm, 0, EXT_SRST, 0, bad[i][0], bad[i][1], 0);
		assert_int_equal(r.error, ERR_INVALID_PARAM);
		assert_false(r.leave);
	}
	assert_int_equal(sbi(vm, 0, EXT_SRST, 1, 0, 0, 0).error, ERR_NOT_SUPPORTED);
	assert_int_equal(vm->state, VM_RUNNING);
	assert_int_equal(vm->exit_status, -1);
}

/* ---- RFENCE -------------------------------------------------------------------------- */

/* Runs hart 0 in M-mode at RAM base until WFI and returns a0. */
static uint64_t run_hart0(struct vm *vm)
{
	struct cpu *cpu = vm->harts[0].cpu;
	cpu_set_pc(cpu, MEMMAP_RAM_BASE);
	assert_int_equal(cpu_run(cpu), CPU_EXIT_WFI);
	return cpu_get_reg(cpu, A0);
}

static void put32(struct vm *vm, uint64_t addr, uint32_t insn)
{
	assert_int_equal(guest_ram_write(&vm->ram, addr, &insn, 4), 0);
}

static void test_rfence_i_self(void **state)
{
	struct vm *vm = vm_of(state);
	put32(vm, MEMMAP_RAM_BASE, ADDI(A0, ZERO, 1));
	put32(vm, MEMMAP_RAM_BASE + 4, WFI());
	assert_int_equal(run_hart0(vm), 1);
	put32(vm, MEMMAP_RAM_BASE, ADDI(A0, ZERO, 2));
	assert_int_equal(run_hart0(vm), 1);            /* decoded copy, as the ISA allows */
	/* remote_fence_i to hart 0 (the caller) and the stopped harts 1, 2:
	 * the caller flushes now, stopped harts need nothing. */
	struct ret r = sbi(vm, 0, EXT_RFENCE, 0, 0x7, 0, 0);
	assert_int_equal(r.error, 0);
	assert_false(r.leave);
	assert_int_equal(run_hart0(vm), 2);
}

static void test_rfence_sfence_self(void **state)
{
	struct vm *vm = vm_of(state);
	/* sfence.vma (fid 1) and sfence.vma.asid (fid 2) with address ranges:
	 * tern widens them to a full flush; to self and stopped harts they
	 * complete without a hart thread. */
	assert_int_equal(sbi(vm, 0, EXT_RFENCE, 1, 0x1, 0, 0).error, 0);
	assert_int_equal(sbi(vm, 0, EXT_RFENCE, 2, 0x6, 0, 0).error, 0);
	assert_int_equal(sbi(vm, 0, EXT_RFENCE, 1, 0, ~0ull, 0).error, 0);   /* all harts */
}

static void test_rfence_errors(void **state)
{
	struct vm *vm = vm_of(state);
	assert_int_equal(sbi(vm, 0, EXT_RFENCE, 0, 0x8, 0, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_RFENCE, 1, 0x1, HARTS, 0).error, ERR_INVALID_PARAM);
	for (uint64_t fid = 3; fid <= 7; fid++)    /* hypervisor fences: no H */
		assert_int_equal(sbi(vm, 0, EXT_RFENCE, fid, 0x1, 0, 0).error, ERR_NOT_SUPPORTED);
}

/* ---- Debug Console --------------------------------------------------------------------- */

static void read_console(struct fixture *fx, char *buf, size_t size)
{
	FILE *f = fopen(fx->console_path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = 0;
	fclose(f);
}

static void test_debug_console(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = fx->vm;
	struct error err = { 0 };
	char spec[80];
	strcpy(fx->console_path, "/tmp/tern-test-sbi-XXXXXX");
	int fd = mkstemp(fx->console_path);
	assert_true(fd >= 0);
	close(fd);
	snprintf(spec, sizeof(spec), "file:%s", fx->console_path);
	assert_int_equal(console_open(&vm->console[0], spec, "console", &err), 0);

	const uint64_t buf = MEMMAP_RAM_BASE + 0x100;
	assert_int_equal(guest_ram_write(&vm->ram, buf, "hello", 5), 0);
	struct ret r = sbi(vm, 0, EXT_DBCN, 0, 5, buf, 0);      /* console_write */
	assert_int_equal(r.error, 0);
	assert_int_equal(r.value, 5);
	r = sbi(vm, 0, EXT_DBCN, 2, 0x100 | '!', 0, 0);         /* console_write_byte: low 8 bits */
	assert_int_equal(r.error, 0);
	/* bad buffers: beyond 32/64 bits, outside RAM, running past its end */
	assert_int_equal(sbi(vm, 0, EXT_DBCN, 0, 5, buf, 1).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_DBCN, 0, 5, 0x1000, 0).error, ERR_INVALID_PARAM);
	assert_int_equal(sbi(vm, 0, EXT_DBCN, 0, 16, MEMMAP_RAM_BASE + RAM_SIZE - 8, 0).error,
			 ERR_INVALID_PARAM);
	/* console_read: input belongs to the UART, so nothing is ever read */
	r = sbi(vm, 0, EXT_DBCN, 1, 16, buf, 0);
	assert_int_equal(r.error, 0);
	assert_int_equal(r.value, 0);
	assert_int_equal(sbi(vm, 0, EXT_DBCN, 3, 0, 0, 0).error, ERR_NOT_SUPPORTED);

	char out[64];
	read_console(fx, out, sizeof(out));
	assert_string_equal(out, "hello!");
}

/* ---- through the interpreter ------------------------------------------------------------- */

static void test_ecall_from_s_mode(void **state)
{
	struct vm *vm = vm_of(state);
	struct cpu *cpu = vm->harts[0].cpu;
	const uint64_t code = MEMMAP_RAM_BASE + 0x1000;
	put32(vm, code, ECALL());
	put32(vm, code + 4, ADDI(A2, A1, 0));
	put32(vm, code + 8, WFI());
	put32(vm, code + 12, ECALL());
	put32(vm, code + 16, WFI());
	struct rv_state s;
	cpu_get_state(cpu, &s);
	s.priv = RV_PRIV_S;
	s.pc = code;
	s.x[A7] = EXT_BASE;
	s.x[A6] = 0;
	cpu_set_state(cpu, &s);
	assert_int_equal(cpu_run(cpu), CPU_EXIT_WFI);
	cpu_get_state(cpu, &s);
	assert_int_equal(s.pc, code + 12);
	assert_int_equal(s.x[A0], 0);
	assert_int_equal(s.x[A2], 0x02000000);
	assert_int_equal(s.priv, RV_PRIV_S);
	assert_int_equal(s.mcause, 0);                   /* no trap */

	/* System reset through ecall: run() returns right after the ecall. */
	s.x[A7] = EXT_SRST;
	s.x[A6] = 0;
	s.x[A0] = 0;
	s.x[A1] = 0;
	cpu_set_state(cpu, &s);
	assert_int_equal(cpu_run(cpu), CPU_EXIT_KICKED);
	cpu_get_state(cpu, &s);
	assert_int_equal(s.pc, code + 16);
	assert_int_equal(vm->state, VM_STOPPING);
	assert_int_equal(vm->exit_status, VM_EXIT_POWEROFF);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_base),
		T(test_probe_extension),
		T(test_unknown_extensions),
		T(test_set_timer),
		T(test_send_ipi),
		T(test_hsm_get_status),
		T(test_hsm_start),
		T(test_hsm_stop),
		T(test_hsm_suspend),
		T(test_system_reset_shutdown),
		T(test_system_reset_kinds),
		T(test_system_reset_invalid),
		T(test_rfence_i_self),
		T(test_rfence_sfence_self),
		T(test_rfence_errors),
		T(test_debug_console),
		T(test_ecall_from_s_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
