/* hart.c: one host thread per hart, and everything that crosses between
 * harts: pausing at an instruction boundary, sleeping in WFI until an
 * interrupt or the timer, SBI hart start/stop, and remote fences.
 *
 * Locking: vm->lock guards the fields of struct hart marked so and the VM
 * state. A hart never holds it while executing guest code. Interrupt bits
 * are set in the CPU without the lock (they are atomic) and the lock is
 * taken only to signal a sleeping hart, after the bit is set, so a wake-up
 * cannot be lost between "check for interrupts" and "sleep". */
#include "machine/vm.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

static void timespec_from_ns(struct timespec *ts, int64_t ns)
{
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

/* Host monotonic time at which the hart's timer fires, or -1 for never. */
static int64_t timer_deadline_ns(struct hart *h)
{
	uint64_t ticks = cpu_timer_deadline(h->cpu);
	const uint64_t ns_per_tick = 1000000000ull / TIMEBASE_HZ;
	if (ticks > (uint64_t)INT64_MAX / ns_per_tick)
		return -1;
	int64_t base = __atomic_load_n(&h->vm->clock_base_ns, __ATOMIC_ACQUIRE);
	return base + (int64_t)(ticks * ns_per_tick);
}

static void service_flush(struct hart *h)
{
	if (h->flush_posted == h->flush_done)
		return;
	cpu_flush(h->cpu, h->flush_request);
	h->flush_request = 0;
	h->flush_done = h->flush_posted;
	pthread_cond_broadcast(&h->vm->changed);
}

/* Puts a hart that SBI started into the state the SBI spec promises the
 * kernel: S-mode, MMU off, a0 = hart id, a1 = the opaque argument. */
static void enter_started(struct hart *h)
{
	struct rv_state s;
	cpu_get_state(h->cpu, &s);
	s.priv = RV_PRIV_S;
	s.pc = h->start_addr;
	s.x[10] = h->id;
	s.x[11] = h->start_arg;
	s.satp = 0;
	s.mstatus &= ~(1ull << 1);   /* SIE */
	cpu_set_state(h->cpu, &s);
	h->hsm = HSM_STARTED;
}

static void *hart_main(void *arg)
{
	struct hart *h = arg;
	struct vm *vm = h->vm;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		service_flush(h);
		if (vm->state == VM_STOPPING)
			break;
		if (vm->pause_requested) {
			if (!h->paused) {
				h->paused = true;
				pthread_cond_broadcast(&vm->changed);
			}
			pthread_cond_wait(&h->wake, &vm->lock);
			continue;
		}
		h->paused = false;
		if (h->hsm == HSM_STOPPED) {
			pthread_cond_wait(&h->wake, &vm->lock);
			continue;
		}
		if (h->hsm == HSM_START_PENDING)
			enter_started(h);
		if (h->in_wfi) {
			if (!cpu_wake_pending(h->cpu)) {
				int64_t deadline = timer_deadline_ns(h);
				if (deadline < 0) {
					pthread_cond_wait(&h->wake, &vm->lock);
				} else {
					struct timespec ts;
					timespec_from_ns(&ts, deadline);
					pthread_cond_timedwait(&h->wake, &vm->lock, &ts);
				}
				continue;
			}
			h->in_wfi = false;
		}
		pthread_mutex_unlock(&vm->lock);
		if (!h->ran) {
			/* Its time stamp ends a migration's downtime as the
			 * guest sees it (bench/migrate). */
			log_debug("vm: hart %u runs", h->id);
			h->ran = true;
		}

		enum cpu_exit why = cpu_run(h->cpu);

		pthread_mutex_lock(&vm->lock);
		if (why == CPU_EXIT_WFI)
			h->in_wfi = true;
	}
	h->paused = true;
	pthread_cond_broadcast(&vm->changed);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int hart_start_thread(struct hart *h, struct error *err)
{
	pthread_condattr_t attr;
	int rc = pthread_condattr_init(&attr);
	if (!rc)
		rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(&h->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (rc)
		return error_errno(err, rc, "cannot set up the wait condition of hart %u", h->id);
	rc = pthread_create(&h->thread, NULL, hart_main, h);
	if (rc) {
		pthread_cond_destroy(&h->wake);
		return error_errno(err, rc, "cannot start the thread of hart %u", h->id);
	}
	h->thread_started = true;
	return 0;
}

void hart_set_irq(struct hart *h, uint64_t mip_bits, bool level)
{
	cpu_set_irq(h->cpu, mip_bits, level);
	if (level) {
		pthread_mutex_lock(&h->vm->lock);
		pthread_cond_signal(&h->wake);
		pthread_mutex_unlock(&h->vm->lock);
	}
}

void harts_remote_flush(struct vm *vm, struct hart *self, const bool *targets, unsigned what)
{
	uint64_t wait_for[VM_MAX_CPUS] = { 0 };

	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->num_harts; i++) {
		struct hart *t = &vm->harts[i];
		if (!targets[i])
			continue;
		if (t == self) {
			/* On our own thread: flush now. The run loop re-reads its
			 * fetch page after the ecall returns. */
			cpu_flush(t->cpu, what);
			continue;
		}
		/* A stopped hart starts with its caches flushed (set_state). */
		if (t->hsm == HSM_STOPPED)
			continue;
		t->flush_request |= what;
		wait_for[i] = ++t->flush_posted;
		cpu_kick(t->cpu);
		pthread_cond_signal(&t->wake);
	}
	/* A target that is itself waiting in here sleeps on vm->changed. */
	pthread_cond_broadcast(&vm->changed);
	for (unsigned i = 0; i < vm->num_harts; i++) {
		struct hart *t = &vm->harts[i];
		while (wait_for[i] && t->flush_done < wait_for[i] && vm->state != VM_STOPPING &&
		       t->hsm != HSM_STOPPED) {
			/* Two harts fencing each other must not wait forever: serve
			 * requests aimed at us while we wait for theirs. */
			if (self)
				service_flush(self);
			pthread_cond_wait(&vm->changed, &vm->lock);
		}
	}
	pthread_mutex_unlock(&vm->lock);
}
