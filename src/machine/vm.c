/* vm.c: assembling a VM from its configuration, running it, and its life
 * cycle (pause, resume, stop). Guest time stands still while the VM is
 * paused, as QEMU's virtual clock does, so that a pause is invisible to
 * the guest's timers apart from wall-clock time. */
#include "machine/vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_server.h"
#include "devices/plic.h"
#include "devices/uart16550.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "devices/virtio/virtio.h"
#include "machine/console.h"
#include "migration/outgoing.h"
#include "migration/replica.h"
#include "util/log.h"

int64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t vm_time_now(const struct vm *vm)
{
	int64_t paused_at = __atomic_load_n(&vm->paused_at_ns, __ATOMIC_ACQUIRE);
	int64_t base = __atomic_load_n(&vm->clock_base_ns, __ATOMIC_ACQUIRE);
	int64_t ns = (paused_at ? paused_at : monotonic_ns()) - base;
	return ns > 0 ? (uint64_t)ns / (1000000000ull / TIMEBASE_HZ) : 0;
}

void vm_set_guest_time(struct vm *vm, uint64_t ticks)
{
	int64_t now = monotonic_ns();
	int64_t ns = (int64_t)(ticks * (1000000000ull / TIMEBASE_HZ));
	pthread_mutex_lock(&vm->lock);
	if (vm->paused_at_ns)
		vm->paused_at_ns = now;
	__atomic_store_n(&vm->clock_base_ns, now - ns, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
}

/* A burst the pacing lets through before it starts to wait, and the longest
 * one wait: pause and kick requests are served only after it. */
#define DIRTY_BURST_NS 10000000
#define DIRTY_MAX_WAIT_NS 10000000

static void env_page_dirtied(void *opaque, struct cpu *cpu)
{
	struct vm *vm = opaque;
	uint64_t limit = __atomic_load_n(&vm->dirty_limit_pps, __ATOMIC_RELAXED);
	if (!limit)
		return;
	struct hart *h = &vm->harts[cpu->hart_id];
	int64_t share = (int64_t)(limit / vm->num_harts);
	int64_t interval = 1000000000 / (share > 0 ? share : 1);
	int64_t now = monotonic_ns();
	if (h->dirty_next_ns < now - DIRTY_BURST_NS)
		h->dirty_next_ns = now - DIRTY_BURST_NS;
	h->dirty_next_ns += interval;
	int64_t wait = h->dirty_next_ns - now;
	if (wait <= 0)
		return;
	if (wait > DIRTY_MAX_WAIT_NS)
		wait = DIRTY_MAX_WAIT_NS;
	struct timespec ts = { wait / 1000000000, wait % 1000000000 };
	nanosleep(&ts, NULL);
	__atomic_fetch_add(&vm->dirty_stall_ns, (uint64_t)(monotonic_ns() - now), __ATOMIC_RELAXED);
}

static uint64_t env_time_now(void *opaque)
{
	return vm_time_now(opaque);
}

static bool env_mmio_read(void *opaque, uint64_t paddr, unsigned size, uint64_t *value)
{
	struct vm *vm = opaque;
	return bus_read(&vm->bus, paddr, size, value);
}

static bool env_mmio_write(void *opaque, uint64_t paddr, unsigned size, uint64_t value)
{
	struct vm *vm = opaque;
	return bus_write(&vm->bus, paddr, size, value);
}

static void plic_notify(void *opaque, unsigned context, bool level)
{
	struct vm *vm = opaque;
	if (context < vm->num_harts)
		hart_set_irq(&vm->harts[context], RV_MIP_SEIP, level);
}

uint64_t vm_sync_dirty(struct vm *vm, uint64_t *bitmap)
{
	uint64_t count = guest_ram_collect_dirty(&vm->ram, bitmap);
	bool all[VM_MAX_CPUS];
	for (unsigned i = 0; i < vm->num_harts; i++)
		all[i] = true;
	harts_remote_flush(vm, NULL, all, CPU_FLUSH_WRITES);
	return count;
}

struct disk_image *vm_disk_image(struct vm *vm, unsigned i)
{
	if (i >= vm->config.num_disks || i >= vm->num_virtio)
		return NULL;
	return virtio_blk_image(vm->virtio[i]);
}

int vm_disks_lock(struct vm *vm, struct error *err)
{
	for (unsigned i = 0; i < vm->config.num_disks && i < vm->num_virtio; i++) {
		int rc = virtio_blk_lock(vm->virtio[i], err);
		if (rc) {
			while (i--)
				virtio_blk_unlock(vm->virtio[i]);
			return rc;
		}
	}
	return 0;
}

void vm_disks_unlock(struct vm *vm)
{
	for (unsigned i = 0; i < vm->config.num_disks && i < vm->num_virtio; i++)
		virtio_blk_unlock(vm->virtio[i]);
}

void vm_net_hold(struct vm *vm, bool on)
{
	for (unsigned i = vm->config.num_disks; i < vm->num_virtio; i++)
		virtio_net_hold(vm->virtio[i], on);
}

uint64_t vm_net_barrier(struct vm *vm)
{
	uint64_t b = 0;
	for (unsigned i = vm->config.num_disks; i < vm->num_virtio; i++)
		b = virtio_net_hold_barrier(vm->virtio[i]);
	return b;
}

void vm_net_release(struct vm *vm, uint64_t barrier)
{
	for (unsigned i = vm->config.num_disks; i < vm->num_virtio; i++)
		virtio_net_hold_release(vm->virtio[i], barrier);
}

void vm_announce(struct vm *vm)
{
	for (unsigned i = vm->config.num_disks; i < vm->num_virtio; i++) {
		int rc = virtio_net_self_announce(vm->virtio[i]);
		if (rc < 0)
			log_warn("announcing the guest's MAC: %s", strerror(-rc));
		virtio_net_announce(vm->virtio[i]);
	}
}

const char *vm_state_name(enum vm_state state)
{
	switch (state) {
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	case VM_STOPPING: return "stopping";
	}
	return "unknown";
}

static int create_devices(struct vm *vm, struct error *err)
{
	vm->plic = plic_create("plic@c000000", MEMMAP_PLIC_BASE, PLIC_SOURCES, vm->num_harts,
			       plic_notify, vm, err);
	if (!vm->plic)
		return -(err->code ? err->code : EINVAL);
	int rc = bus_add(&vm->bus, plic_device(vm->plic), err);
	if (rc)
		return rc;

	static const struct {
		uint64_t base;
		unsigned irq;
		const char *id, *what;
	} uarts[2] = {
		{ MEMMAP_UART0_BASE, IRQ_UART0, "uart@10000000", "console (ttyS0)" },
		{ MEMMAP_UART1_BASE, IRQ_UART1, "uart@10000100", "serial port ttyS1" },
	};
	const char *specs[2] = { vm->config.console ? vm->config.console : "stdio",
				 vm->config.serial1 ? vm->config.serial1 : "none" };
	for (unsigned i = 0; i < 2; i++) {
		rc = console_open(&vm->console[i], specs[i], uarts[i].what, err);
		if (rc)
			return rc;
		vm->uart[i] = uart16550_create(uarts[i].id, uarts[i].base,
					       plic_irq_line(vm->plic, uarts[i].irq),
					       console_sink(vm->console[i]), err);
		if (!vm->uart[i])
			return -(err->code ? err->code : EINVAL);
		rc = bus_add(&vm->bus, uart16550_device(vm->uart[i]), err);
		if (rc)
			return rc;
	}
	return 0;
}

/* virtio-mmio slot n: window MEMMAP_VIRTIO_BASE + n * stride, PLIC source
 * IRQ_VIRTIO_FIRST + n. Disks take the first slots, in command-line order,
 * so that the guest names them vda, vdb, ... in that order. */
static int create_virtio_devices(struct vm *vm, struct error *err)
{
	const struct vm_config *cfg = &vm->config;
	if (cfg->num_disks + cfg->num_nets > MEMMAP_VIRTIO_COUNT)
		return error_set(err, EINVAL, "too many virtio devices: at most %d disks and "
				 "network cards together", MEMMAP_VIRTIO_COUNT);
	for (unsigned i = 0; i < cfg->num_disks + cfg->num_nets; i++) {
		unsigned slot = vm->num_virtio;
		uint64_t base = MEMMAP_VIRTIO_BASE + slot * MEMMAP_VIRTIO_STRIDE;
		struct irq_line irq = plic_irq_line(vm->plic, IRQ_VIRTIO_FIRST + slot);
		char id[64];
		struct virtio_mmio *t;
		if (i < cfg->num_disks) {
			const struct vm_disk_config *d = &cfg->disks[i];
			snprintf(id, sizeof(id), "virtio-blk@%llx", (unsigned long long)base);
			t = (cfg->incoming ? virtio_blk_create_unlocked : virtio_blk_create)(
				id, base, irq, &vm->ram, d->path, d->read_only, err);
		} else {
			const struct vm_net_config *n = &cfg->nets[i - cfg->num_disks];
			snprintf(id, sizeof(id), "virtio-net@%llx", (unsigned long long)base);
			t = virtio_net_create(id, base, irq, &vm->ram, n->tap, n->create,
					      n->mac_set ? n->mac : NULL, err);
		}
		if (!t)
			return -(err->code ? err->code : EINVAL);
		vm->virtio[vm->num_virtio++] = t;
		int rc = bus_add(&vm->bus, virtio_mmio_device(t), err);
		if (rc)
			return rc;
	}
	return 0;
}

int vm_create(struct vm **out, const struct vm_config *config, struct error *err)
{
	*out = NULL;
	if (config->cpus == 0 || config->cpus > VM_MAX_CPUS)
		return error_set(err, EINVAL, "--cpus %u is out of range: tern supports 1 to %d harts",
				 config->cpus, VM_MAX_CPUS);

	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return error_set(err, ENOMEM, "cannot allocate the VM");
	vm->config = *config;
	vm->num_harts = config->cpus;
	vm->exit_status = VM_EXIT_POWEROFF;
	vm->state = VM_RUNNING;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->changed, NULL);
	vm->clock_base_ns = monotonic_ns();
	vm->started_ns = vm->clock_base_ns;

	int rc = guest_ram_init(&vm->ram, MEMMAP_RAM_BASE, config->memory, err);
	if (rc)
		goto fail;

	vm->cpu_env = (struct cpu_env){
		.ram = &vm->ram,
		.opaque = vm,
		.mmio_read = env_mmio_read,
		.mmio_write = env_mmio_write,
		.sbi_call = sbi_handle_ecall,
		.time_now = env_time_now,
		.page_dirtied = env_page_dirtied,
	};
	for (unsigned i = 0; i < vm->num_harts; i++) {
		struct hart *h = &vm->harts[i];
		h->vm = vm;
		h->id = i;
		h->cpu = rv64_interp_create(&vm->cpu_env, i);
		if (!h->cpu) {
			rc = error_set(err, ENOMEM, "cannot create hart %u", i);
			goto fail;
		}
	}

	rc = create_devices(vm, err);
	if (rc)
		goto fail;
	rc = create_virtio_devices(vm, err);
	if (rc)
		goto fail;
	if (config->kernel) {
		rc = vm_load_boot_images(vm, err);
		if (rc)
			goto fail;
	}
	if (config->api_socket) {
		rc = vm_api_start(vm, config->api_socket, err);
		if (rc)
			goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return rc;
}

void vm_request_stop(struct vm *vm, int exit_status)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STOPPING) {
		vm->state = VM_STOPPING;
		vm->exit_status = exit_status;
	}
	for (unsigned i = 0; i < vm->num_harts; i++) {
		if (vm->harts[i].cpu)
			cpu_kick(vm->harts[i].cpu);
		if (vm->harts[i].thread_started)
			pthread_cond_signal(&vm->harts[i].wake);
	}
	pthread_cond_broadcast(&vm->changed);
	pthread_mutex_unlock(&vm->lock);
}

int vm_pause(struct vm *vm, struct error *err)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_RUNNING) {
		enum vm_state st = vm->state;
		pthread_mutex_unlock(&vm->lock);
		return error_set(err, EBUSY, "the VM is %s, not running", vm_state_name(st));
	}
	vm->pause_requested = true;
	for (unsigned i = 0; i < vm->num_harts; i++) {
		cpu_kick(vm->harts[i].cpu);
		pthread_cond_signal(&vm->harts[i].wake);
	}
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < vm->num_harts; i++)
			all &= vm->harts[i].paused;
		if (all || vm->state == VM_STOPPING)
			break;
		pthread_cond_wait(&vm->changed, &vm->lock);
	}
	if (vm->state == VM_STOPPING) {
		pthread_mutex_unlock(&vm->lock);
		return error_set(err, ECANCELED, "the VM stopped while pausing");
	}
	vm->state = VM_PAUSED;
	__atomic_store_n(&vm->paused_at_ns, monotonic_ns(), __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
	/* With the harts parked, stop the devices too: after this nothing
	 * writes guest memory until resume. */
	for (unsigned i = 0; i < vm->num_virtio; i++)
		virtio_mmio_pause(vm->virtio[i]);
	return 0;
}

void vm_set_dirty_limit(struct vm *vm, uint64_t pages_per_s)
{
	__atomic_store_n(&vm->dirty_limit_pps, pages_per_s, __ATOMIC_RELAXED);
}

uint64_t vm_dirty_stall_ns(const struct vm *vm)
{
	return __atomic_load_n(&vm->dirty_stall_ns, __ATOMIC_RELAXED);
}

void vm_hold_devices(struct vm *vm, bool hold)
{
	for (unsigned i = 0; i < vm->num_virtio; i++) {
		if (hold)
			virtio_mmio_pause(vm->virtio[i]);
		else
			virtio_mmio_resume(vm->virtio[i]);
	}
}

void vm_freeze(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_RUNNING) {
		vm->pause_requested = true;
		vm->state = VM_PAUSED;
		__atomic_store_n(&vm->paused_at_ns, monotonic_ns(), __ATOMIC_RELEASE);
		for (unsigned i = 0; i < vm->num_harts; i++)
			cpu_kick(vm->harts[i].cpu);
	}
	pthread_mutex_unlock(&vm->lock);
}

bool vm_is_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	bool paused = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	return paused;
}

void vm_start_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = true;
	vm->state = VM_PAUSED;
	__atomic_store_n(&vm->paused_at_ns, monotonic_ns(), __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->num_virtio; i++)
		virtio_mmio_pause(vm->virtio[i]);
}

int vm_resume(struct vm *vm, struct error *err)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_state st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (st != VM_PAUSED)
		return error_set(err, EBUSY, "the VM is %s, not paused", vm_state_name(st));

	/* Devices first, outside vm->lock: a resumed device may interrupt a
	 * hart at once, and raising an interrupt takes that lock. */
	for (unsigned i = 0; i < vm->num_virtio; i++)
		virtio_mmio_resume(vm->virtio[i]);

	pthread_mutex_lock(&vm->lock);
	/* Move the clock's origin forward by the time spent paused. */
	int64_t paused_for = monotonic_ns() - vm->paused_at_ns;
	__atomic_store_n(&vm->clock_base_ns, vm->clock_base_ns + paused_for, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->paused_at_ns, 0, __ATOMIC_RELEASE);
	vm->pause_requested = false;
	vm->state = VM_RUNNING;
	for (unsigned i = 0; i < vm->num_harts; i++)
		pthread_cond_signal(&vm->harts[i].wake);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* Turns SIGINT/SIGTERM/SIGHUP into an orderly stop. */
static void *signal_thread(void *arg)
{
	struct vm *vm = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	int sig = 0;
	if (sigwait(&set, &sig) == 0 && sig != SIGUSR1) {
		log_info("stopping on signal %d", sig);
		vm_request_stop(vm, VM_EXIT_SIGNAL_BASE + sig);
	}
	return NULL;
}

/* Until something asked the VM to stop; its exit status. */
static int wait_for_stop(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_STOPPING)
		pthread_cond_wait(&vm->changed, &vm->lock);
	int status = vm->exit_status;
	pthread_mutex_unlock(&vm->lock);
	return status;
}

static void join_harts(struct vm *vm)
{
	for (unsigned i = 0; i < vm->num_harts; i++) {
		if (vm->harts[i].thread_started) {
			pthread_join(vm->harts[i].thread, NULL);
			vm->harts[i].thread_started = false;
			pthread_cond_destroy(&vm->harts[i].wake);
		}
	}
}

/* The signals the signal thread turns into a stop: every other thread
 * blocks them, or one could take the process down. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
}

int vm_start_harts(struct vm *vm, struct error *err)
{
	sigset_t set, old;
	stop_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int rc = 0;
	for (unsigned i = 0; i < vm->num_harts && !rc; i++)
		if (!vm->harts[i].thread_started)
			rc = hart_start_thread(&vm->harts[i], err);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int vm_run(struct vm *vm)
{
	struct error err = { 0 };
	sigset_t set, old;
	stop_signals(&set);
	/* Every thread created from here on inherits the mask, so only the
	 * signal thread receives them. */
	pthread_sigmask(SIG_BLOCK, &set, &old);
	/* The harts first (unless vm_start_harts did): after a migration
	 * every thread started before them is downtime (each start took 1-4
	 * ms here, the guest waiting). */
	if (vm_start_harts(vm, &err) < 0) {
		log_error("%s", err.msg);
		vm_request_stop(vm, VM_EXIT_ERROR);
	}
	pthread_t sig_thread;
	int rc = pthread_create(&sig_thread, NULL, signal_thread, vm);
	if (rc) {
		log_error("cannot start the signal thread: %s", strerror(rc));
		vm_request_stop(vm, VM_EXIT_ERROR);
		wait_for_stop(vm);
		join_harts(vm);
		return VM_EXIT_ERROR;
	}

	for (unsigned i = 0; i < 2; i++) {
		if (console_start_input(vm->console[i], vm->uart[i], &err) < 0) {
			log_error("%s", err.msg);
			vm_request_stop(vm, VM_EXIT_ERROR);
		}
	}
	/* Served only now: a restored VM is loaded by this point, so "running"
	 * on the API means running. */
	if (vm->api && api_server_start(vm->api, &err) < 0) {
		log_error("%s", err.msg);
		vm_request_stop(vm, VM_EXIT_ERROR);
	}

	int status = wait_for_stop(vm);
	join_harts(vm);
	pthread_kill(sig_thread, SIGUSR1);
	pthread_join(sig_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return status;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	/* Harts started ahead of vm_run (an incoming VM's) that never ran. */
	bool started = false;
	for (unsigned i = 0; i < vm->num_harts; i++)
		started |= vm->harts[i].thread_started;
	if (started) {
		vm_request_stop(vm, VM_EXIT_ERROR);
		join_harts(vm);
	}
	migration_destroy(vm);
	replica_destroy(vm);
	if (vm->api)
		api_server_destroy(vm->api);
	for (unsigned i = 0; i < 2; i++) {
		if (vm->console[i])
			console_close(vm->console[i]);
	}
	for (unsigned i = 0; i < vm->bus.count; i++) {
		struct device *dev = vm->bus.devices[i];
		if (dev->ops->destroy)
			dev->ops->destroy(dev);
	}
	for (unsigned i = 0; i < vm->num_harts; i++)
		if (vm->harts[i].cpu)
			cpu_destroy(vm->harts[i].cpu);
	guest_ram_destroy(&vm->ram);
	pthread_cond_destroy(&vm->changed);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}
