/* sbi.c: tern is the guest's firmware. An ECALL from S-mode lands here
 * and is answered per the RISC-V Supervisor Binary Interface 2.0:
 * Base, Timer, IPI, RFENCE, Hart State Management, System Reset and
 * Debug Console. Legacy (0.1) calls and other extensions return
 * SBI_ERR_NOT_SUPPORTED, which Linux handles by not using them. */
#include "machine/vm.h"

#include "machine/console.h"
#include "util/log.h"

enum {
	SBI_EXT_BASE = 0x10,
	SBI_EXT_TIME = 0x54494d45,
	SBI_EXT_IPI = 0x735049,
	SBI_EXT_RFENCE = 0x52464e43,
	SBI_EXT_HSM = 0x48534d,
	SBI_EXT_SRST = 0x53525354,
	SBI_EXT_DBCN = 0x4442434e,
};

enum {
	SBI_SUCCESS = 0,
	SBI_ERR_FAILED = -1,
	SBI_ERR_NOT_SUPPORTED = -2,
	SBI_ERR_INVALID_PARAM = -3,
	SBI_ERR_DENIED = -4,
	SBI_ERR_INVALID_ADDRESS = -5,
	SBI_ERR_ALREADY_AVAILABLE = -6,
};

#define SBI_SPEC_VERSION   0x02000000   /* 2.0 */
#define SBI_IMPL_ID_TERN   0x74726e     /* "trn"; not in the SBI registry */
#define SBI_IMPL_VERSION   1

struct sbi_ret {
	int64_t error;
	uint64_t value;
};

static struct sbi_ret ret_error(int64_t error)
{
	return (struct sbi_ret){ .error = error };
}

static struct sbi_ret ret_value(uint64_t value)
{
	return (struct sbi_ret){ .error = SBI_SUCCESS, .value = value };
}

/* Expands (hart_mask, hart_mask_base) to a per-hart flag array. */
static bool decode_hart_mask(struct vm *vm, uint64_t mask, uint64_t base, bool *out)
{
	for (unsigned i = 0; i < vm->num_harts; i++)
		out[i] = false;
	if (base == ~0ull) {
		for (unsigned i = 0; i < vm->num_harts; i++)
			out[i] = true;
		return true;
	}
	for (unsigned bit = 0; bit < 64; bit++) {
		if (!((mask >> bit) & 1))
			continue;
		uint64_t id = base + bit;
		if (id < base || id >= vm->num_harts)
			return false;
		out[id] = true;
	}
	return true;
}

static bool ext_supported(uint64_t ext)
{
	switch (ext) {
	case SBI_EXT_BASE: case SBI_EXT_TIME: case SBI_EXT_IPI: case SBI_EXT_RFENCE:
	case SBI_EXT_HSM: case SBI_EXT_SRST: case SBI_EXT_DBCN:
		return true;
	}
	return false;
}

static struct sbi_ret sbi_base(uint64_t fid, uint64_t a0)
{
	switch (fid) {
	case 0: return ret_value(SBI_SPEC_VERSION);
	case 1: return ret_value(SBI_IMPL_ID_TERN);
	case 2: return ret_value(SBI_IMPL_VERSION);
	case 3: return ret_value(ext_supported(a0) ? 1 : 0);
	case 4: case 5: case 6: return ret_value(0);   /* mvendorid, marchid, mimpid */
	}
	return ret_error(SBI_ERR_NOT_SUPPORTED);
}

static struct sbi_ret sbi_hsm(struct vm *vm, struct hart *self, uint64_t fid, const uint64_t *a,
			      bool *leave)
{
	switch (fid) {
	case 0: { /* hart_start(hartid, start_addr, opaque) */
		if (a[0] >= vm->num_harts)
			return ret_error(SBI_ERR_INVALID_PARAM);
		if (!guest_ram_contains(&vm->ram, a[1]))
			return ret_error(SBI_ERR_INVALID_ADDRESS);
		struct hart *t = &vm->harts[a[0]];
		struct sbi_ret r = ret_value(0);
		pthread_mutex_lock(&vm->lock);
		if (t->hsm != HSM_STOPPED) {
			r = ret_error(SBI_ERR_ALREADY_AVAILABLE);
		} else {
			t->start_addr = a[1];
			t->start_arg = a[2];
			t->hsm = HSM_START_PENDING;
			pthread_cond_signal(&t->wake);
		}
		pthread_mutex_unlock(&vm->lock);
		return r;
	}
	case 1: /* hart_stop */
		pthread_mutex_lock(&vm->lock);
		self->hsm = HSM_STOPPED;
		pthread_mutex_unlock(&vm->lock);
		*leave = true;
		return ret_value(0);
	case 2: { /* hart_get_status(hartid) */
		if (a[0] >= vm->num_harts)
			return ret_error(SBI_ERR_INVALID_PARAM);
		pthread_mutex_lock(&vm->lock);
		enum hart_hsm st = vm->harts[a[0]].hsm;
		pthread_mutex_unlock(&vm->lock);
		return ret_value(st);
	}
	case 3: /* hart_suspend(type, resume_addr, opaque): retentive only */
		if (a[0] != 0)
			return ret_error(SBI_ERR_NOT_SUPPORTED);
		/* Retentive suspend is a WFI that returns success. */
		pthread_mutex_lock(&vm->lock);
		self->in_wfi = true;
		pthread_mutex_unlock(&vm->lock);
		*leave = true;
		return ret_value(0);
	}
	return ret_error(SBI_ERR_NOT_SUPPORTED);
}

static struct sbi_ret sbi_srst(struct vm *vm, uint64_t fid, const uint64_t *a, bool *leave)
{
	if (fid != 0)
		return ret_error(SBI_ERR_NOT_SUPPORTED);
	uint64_t type = a[0], reason = a[1];
	if (type > 2 || reason > 1)
		return ret_error(SBI_ERR_INVALID_PARAM);
	int status = type == 0 ? VM_EXIT_POWEROFF : VM_EXIT_REBOOT;
	if (reason == 1)
		status = VM_EXIT_GUEST_FAILURE;
	log_info("guest requested %s%s", type == 0 ? "shutdown" : "reboot",
		 reason == 1 ? " after a system failure" : "");
	vm_request_stop(vm, status);
	*leave = true;
	return ret_value(0);
}

static struct sbi_ret sbi_dbcn(struct vm *vm, uint64_t fid, const uint64_t *a)
{
	switch (fid) {
	case 0: { /* console_write(num_bytes, base_lo, base_hi) */
		const uint8_t *p = guest_ram_ptr(&vm->ram, a[1], a[0]);
		if (a[2] != 0 || !p)
			return ret_error(SBI_ERR_INVALID_PARAM);
		if (vm->console[0])
			console_write(vm->console[0], p, a[0]);
		return ret_value(a[0]);
	}
	case 1: /* console_read: input belongs to the UART */
		return ret_value(0);
	case 2: { /* console_write_byte */
		uint8_t byte = (uint8_t)a[0];
		if (vm->console[0])
			console_write(vm->console[0], &byte, 1);
		return ret_value(0);
	}
	}
	return ret_error(SBI_ERR_NOT_SUPPORTED);
}

bool sbi_handle_ecall(void *opaque, struct cpu *cpu)
{
	struct vm *vm = opaque;
	struct hart *self = &vm->harts[cpu->hart_id];
	uint64_t a[6];
	for (unsigned i = 0; i < 6; i++)
		a[i] = cpu_get_reg(cpu, 10 + i);
	uint64_t fid = cpu_get_reg(cpu, 16), ext = cpu_get_reg(cpu, 17);
	bool leave = false;
	bool targets[VM_MAX_CPUS];
	struct sbi_ret r;

	switch (ext) {
	case SBI_EXT_BASE:
		r = sbi_base(fid, a[0]);
		break;
	case SBI_EXT_TIME:
		if (fid != 0) {
			r = ret_error(SBI_ERR_NOT_SUPPORTED);
			break;
		}
		cpu_set_timer(cpu, a[0]);
		r = ret_value(0);
		break;
	case SBI_EXT_IPI:
		if (fid != 0) {
			r = ret_error(SBI_ERR_NOT_SUPPORTED);
			break;
		}
		if (!decode_hart_mask(vm, a[0], a[1], targets)) {
			r = ret_error(SBI_ERR_INVALID_PARAM);
			break;
		}
		for (unsigned i = 0; i < vm->num_harts; i++)
			if (targets[i])
				hart_set_irq(&vm->harts[i], RV_MIP_SSIP, true);
		r = ret_value(0);
		break;
	case SBI_EXT_RFENCE:
		/* 0 fence.i; 1 sfence.vma; 2 sfence.vma.asid. The hypervisor
		 * fences (3-6) need the H extension. Ranges and ASIDs are
		 * widened to "everything": correct, if not the cheapest. */
		if (fid > 2) {
			r = ret_error(SBI_ERR_NOT_SUPPORTED);
			break;
		}
		if (!decode_hart_mask(vm, a[0], a[1], targets)) {
			r = ret_error(SBI_ERR_INVALID_PARAM);
			break;
		}
		harts_remote_flush(vm, self, targets, fid == 0 ? CPU_FLUSH_ICACHE : CPU_FLUSH_TLB);
		r = ret_value(0);
		break;
	case SBI_EXT_HSM:
		r = sbi_hsm(vm, self, fid, a, &leave);
		break;
	case SBI_EXT_SRST:
		r = sbi_srst(vm, fid, a, &leave);
		break;
	case SBI_EXT_DBCN:
		r = sbi_dbcn(vm, fid, a);
		break;
	default:
		r = ret_error(SBI_ERR_NOT_SUPPORTED);
		break;
	}
	cpu_set_reg(cpu, 10, (uint64_t)r.error);
	if (r.error == SBI_SUCCESS)
		cpu_set_reg(cpu, 11, r.value);
	return leave;
}
