/* vm.h: one virtual machine: its RAM, devices, harts and life cycle.
 *
 * States: RUNNING <-> PAUSED -> STOPPING. A VM stops when the guest asks
 * (SBI system reset), when the API says stop, or on a signal; vm_run()
 * then returns the process exit status (see docs/api.md, "Exit status"). */
#ifndef TERN_MACHINE_VM_H
#define TERN_MACHINE_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpu/cpu.h"
#include "devices/bus.h"
#include "machine/memmap.h"
#include "mem/guest_ram.h"
#include "util/error.h"

struct console;
struct plic;
struct uart16550;
struct api_server;
struct virtio_mmio;

/* Process exit statuses of `tern vm run`. */
enum vm_exit_status {
	VM_EXIT_POWEROFF = 0,      /* guest shut down, or stopped through the API */
	VM_EXIT_ERROR = 1,         /* tern failed */
	VM_EXIT_USAGE = 2,         /* bad command line */
	VM_EXIT_REBOOT = 3,        /* guest asked for a reboot */
	VM_EXIT_GUEST_FAILURE = 4, /* guest reported a system failure on reset */
	VM_EXIT_SIGNAL_BASE = 128, /* + signal number, like a shell */
};

#define VM_MAX_DISKS 4
#define VM_MAX_NETS 4

struct vm_disk_config {
	const char *path;
	bool read_only;
};

struct vm_net_config {
	const char *tap;             /* TAP interface name */
	bool create;                 /* create it (else it must exist) */
	bool mac_set;
	uint8_t mac[6];
};

struct vm_config {
	const char *kernel;          /* NULL when restoring: nothing is loaded */
	const char *initrd;          /* may be NULL */
	const char *cmdline;         /* may be NULL */
	uint64_t memory;             /* bytes */
	unsigned cpus;
	const char *console;         /* ttyS0: "stdio", "file:PATH", "unix:PATH", "none" */
	const char *serial1;         /* ttyS1, same forms; NULL = "none" */
	const char *api_socket;      /* may be NULL */
	bool incoming;               /* a migration destination: disks opened unlocked */
	struct vm_disk_config disks[VM_MAX_DISKS];
	unsigned num_disks;          /* vda, vdb, ... in this order */
	struct vm_net_config nets[VM_MAX_NETS];
	unsigned num_nets;
};

/* SBI hart state management states (SBI spec 2.0, chapter 9). */
enum hart_hsm {
	HSM_STARTED = 0,
	HSM_STOPPED = 1,
	HSM_START_PENDING = 2,
	HSM_STOP_PENDING = 3,
	HSM_SUSPENDED = 4,
};

enum vm_state { VM_RUNNING, VM_PAUSED, VM_STOPPING };

struct hart {
	struct vm *vm;
	struct cpu *cpu;
	unsigned id;
	pthread_t thread;
	bool thread_started;
	pthread_cond_t wake;         /* signalled on interrupts and requests */

	/* All below are guarded by vm->lock. */
	enum hart_hsm hsm;
	uint64_t start_addr, start_arg;
	bool in_wfi;                 /* waiting for an interrupt */
	bool ran;                    /* has entered the guest once */
	bool paused;                 /* parked at an instruction boundary */
	unsigned flush_request;      /* CPU_FLUSH_* bits posted by other harts */
	uint64_t flush_posted, flush_done;
	/* Auto-converge's pacing of newly dirtied pages; hart thread only. */
	int64_t dirty_next_ns;
};

struct vm {
	struct vm_config config;
	struct guest_ram ram;
	struct bus bus;
	struct plic *plic;
	struct uart16550 *uart[2];
	struct console *console[2];
	struct api_server *api;
	struct virtio_mmio *virtio[MEMMAP_VIRTIO_COUNT];
	unsigned num_virtio;         /* disks first, then network cards */
	struct migration *migration; /* outgoing migration, if one was started */
	struct replication *replication; /* disaster-recovery replication (replica.h) */
	struct cpu_env cpu_env;
	struct hart harts[VM_MAX_CPUS];
	unsigned num_harts;

	pthread_mutex_t lock;
	pthread_cond_t changed;      /* state, pause acknowledgements, flush completions */
	enum vm_state state;
	bool pause_requested;
	int exit_status;
	/* Pages per second the guest may newly dirty (0: no limit), read by
	 * the harts without the lock; auto-converge sets it. */
	uint64_t dirty_limit_pps;
	/* Nanoseconds harts have waited under that limit, summed over harts,
	 * since the VM started: what the throttle cost the guest. */
	uint64_t dirty_stall_ns;

	/* Guest time: monotonic host time minus the time spent paused. */
	int64_t clock_base_ns;       /* read by harts without the lock */
	int64_t paused_at_ns;        /* non-zero while paused: guest time stands still */

	uint64_t kernel_entry, fdt_addr, initrd_start, initrd_end;
	int64_t started_ns;
};

int vm_create(struct vm **out, const struct vm_config *config, struct error *err);
/* Runs until the VM stops; returns the exit status. */
int vm_run(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Life cycle, callable from any thread but a hart's. */
int vm_pause(struct vm *vm, struct error *err);
int vm_resume(struct vm *vm, struct error *err);
void vm_request_stop(struct vm *vm, int exit_status);
const char *vm_state_name(enum vm_state state);

/* Guest time in timebase ticks; frozen while the VM is paused. */
uint64_t vm_time_now(const struct vm *vm);
/* Makes guest time continue from `ticks` (a restored or migrated VM). */
void vm_set_guest_time(struct vm *vm, uint64_t ticks);
int64_t monotonic_ns(void);

/* hart.c */
int hart_start_thread(struct hart *h, struct error *err);
void hart_set_irq(struct hart *h, uint64_t mip_bits, bool level);
/* Makes the harts in mask run `what` flushes, and waits until they have. */
void harts_remote_flush(struct vm *vm, struct hart *self, const bool *targets, unsigned what);

/* sbi.c: the cpu_env.sbi_call hook */
bool sbi_handle_ecall(void *opaque, struct cpu *cpu);

/* boot.c: loads kernel, initrd and device tree, sets up the boot hart. */
int vm_load_boot_images(struct vm *vm, struct error *err);

/* Migration support. */
/* Moves the dirty pages into `bitmap` (ORed in), then makes every hart drop its
 * writable translations, so that each page written from now on is marked
 * again: read pages only after this returns. Returns the pages set in `bitmap`. */
uint64_t vm_sync_dirty(struct vm *vm, uint64_t *bitmap);
int vm_disks_lock(struct vm *vm, struct error *err);
/* Disk i's image (vda = 0), NULL if there is none. */
struct disk_image *vm_disk_image(struct vm *vm, unsigned i);
void vm_disks_unlock(struct vm *vm);
/* Caps how fast the guest may dirty pages it has not dirtied since the
 * last sync, in pages per second for the whole VM (0: no cap): a hart whose
 * store would dirty a clean page beyond its share waits first. This is
 * auto-converge's throttle: it slows exactly what keeps a migration from
 * converging, the dirtying, and leaves a guest that reads or computes
 * alone. Guest time runs on. */
void vm_set_dirty_limit(struct vm *vm, uint64_t pages_per_s);
/* The harts' time spent waiting under that limit so far (ns, all harts). */
uint64_t vm_dirty_stall_ns(const struct vm *vm);
/* Holds the devices (they process no queue, write no guest memory) or lets
 * them go. An incoming VM holds them from creation to GO: until then its
 * guest memory is not final and the guest still runs on the source. */
void vm_hold_devices(struct vm *vm, bool hold);
/* Pauses without waiting for anything: harts park when they next can
 * (one waiting for a post-copy page parks once it has it), devices carry
 * on, guest time stands still. For a post-copy destination that lost its
 * source; vm_resume undoes it. */
void vm_freeze(struct vm *vm);
/* Paused (by vm_pause, vm_freeze or vm_start_paused, not yet resumed). */
bool vm_is_paused(struct vm *vm);
/* Before vm_run: the VM starts paused (harts parked, devices quiet) and
 * waits for a resume; for a VM that was paused where it came from. */
void vm_start_paused(struct vm *vm);
/* Starts the hart threads now, ahead of vm_run (which then leaves them
 * be): after vm_start_paused they park, so that a resume only wakes them.
 * An incoming VM does this before GO, where thread starts cost nothing. */
int vm_start_harts(struct vm *vm, struct error *err);
/* After the VM arrived: RARP from each TAP and the guest's own announce. */
/* Replication's synchronous mode: hold what the guest's NICs send; a
 * barrier per epoch (every NIC counts alike); release up to one. */
void vm_net_hold(struct vm *vm, bool on);
uint64_t vm_net_barrier(struct vm *vm);
void vm_net_release(struct vm *vm, uint64_t barrier);
void vm_announce(struct vm *vm);
struct migration;
struct replication;

/* vm_api.c: creates the API socket and registers the VM's commands;
 * vm_run() starts serving it once the VM runs. */
int vm_api_start(struct vm *vm, const char *path, struct error *err);

#endif
