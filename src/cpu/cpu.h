/* cpu.h: the interface between a hart implementation and the machine.
 *
 * The machine (hart threads, SBI firmware, devices, migration) sees a CPU
 * only through these operations, so the interpreter in cpu/rv64/ can be
 * replaced by a JIT or a hardware-virtualization backend. A struct cpu is
 * driven by exactly one thread (its hart thread); only kick() and set_irq()
 * may be called from other threads. */
#ifndef TERN_CPU_CPU_H
#define TERN_CPU_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "cpu/rv_state.h"

struct cpu;
struct guest_ram;

/* Why run() returned. */
enum cpu_exit {
	CPU_EXIT_KICKED,        /* kick() was called, or an ecall handler asked to leave */
	CPU_EXIT_WFI,           /* the hart executed WFI with no interrupt pending */
};

/* What the machine provides to the CPU. */
struct cpu_env {
	struct guest_ram *ram;
	void *opaque;
	/* Physical accesses outside RAM. False = no device: access fault. */
	bool (*mmio_read)(void *opaque, uint64_t paddr, unsigned size, uint64_t *value);
	bool (*mmio_write)(void *opaque, uint64_t paddr, unsigned size, uint64_t value);
	/* ECALL from S-mode: the SBI, implemented by the machine. It reads and
	 * writes a0..a7 through cpu_get_state/cpu_set_reg. Returns true if run()
	 * should return CPU_EXIT_KICKED after the call (hart stop, reset). */
	bool (*sbi_call)(void *opaque, struct cpu *cpu);
	/* The time CSR: ticks of the timebase since the VM started. */
	uint64_t (*time_now)(void *opaque);
	/* A store dirtied a page that was clean since the last dirty sync.
	 * May stall the hart (auto-converge's dirty limit). Optional. */
	void (*page_dirtied)(void *opaque, struct cpu *cpu);
};

/* Requests another thread may post; the CPU acts on them on its own thread. */
#define CPU_FLUSH_TLB    1u   /* sfence.vma of all addresses */
#define CPU_FLUSH_ICACHE 2u   /* fence.i: drop decoded instructions */
/* Drop writable translations only: the next store to every page takes the
 * slow path again and marks the page dirty (migration's dirty sync). */
#define CPU_FLUSH_WRITES 4u

struct cpu_ops {
	const char *name;
	enum cpu_exit (*run)(struct cpu *cpu);
	void (*kick)(struct cpu *cpu);
	/* Sets or clears device-driven bits of mip (SEIP, SSIP). Thread-safe. */
	void (*set_irq)(struct cpu *cpu, uint64_t mip_bits, bool level);
	/* True when an enabled interrupt is pending (mip & mie), the WFI wake
	 * condition; it includes the timer against time_now(). */
	bool (*wake_pending)(struct cpu *cpu);
	/* The time (in timebase ticks) at which the timer interrupt fires. */
	uint64_t (*timer_deadline)(struct cpu *cpu);
	/* Programs the supervisor timer (stimecmp), as SBI set_timer does. */
	void (*set_timer)(struct cpu *cpu, uint64_t deadline);
	void (*flush)(struct cpu *cpu, unsigned what);
	void (*get_state)(struct cpu *cpu, struct rv_state *out);
	void (*set_state)(struct cpu *cpu, const struct rv_state *in);
	void (*set_reg)(struct cpu *cpu, unsigned reg, uint64_t value);
	uint64_t (*get_reg)(struct cpu *cpu, unsigned reg);
	void (*set_pc)(struct cpu *cpu, uint64_t pc);
	void (*destroy)(struct cpu *cpu);
};

struct cpu {
	const struct cpu_ops *ops;
	const struct cpu_env *env;
	unsigned hart_id;
};

static inline enum cpu_exit cpu_run(struct cpu *c) { return c->ops->run(c); }
static inline void cpu_kick(struct cpu *c) { c->ops->kick(c); }
static inline void cpu_set_irq(struct cpu *c, uint64_t bits, bool level) { c->ops->set_irq(c, bits, level); }
static inline bool cpu_wake_pending(struct cpu *c) { return c->ops->wake_pending(c); }
static inline uint64_t cpu_timer_deadline(struct cpu *c) { return c->ops->timer_deadline(c); }
static inline void cpu_set_timer(struct cpu *c, uint64_t t) { c->ops->set_timer(c, t); }
static inline void cpu_flush(struct cpu *c, unsigned what) { c->ops->flush(c, what); }
static inline void cpu_get_state(struct cpu *c, struct rv_state *s) { c->ops->get_state(c, s); }
static inline void cpu_set_state(struct cpu *c, const struct rv_state *s) { c->ops->set_state(c, s); }
static inline uint64_t cpu_get_reg(struct cpu *c, unsigned r) { return c->ops->get_reg(c, r); }
static inline void cpu_set_reg(struct cpu *c, unsigned r, uint64_t v) { c->ops->set_reg(c, r, v); }
static inline void cpu_set_pc(struct cpu *c, uint64_t pc) { c->ops->set_pc(c, pc); }
static inline void cpu_destroy(struct cpu *c) { c->ops->destroy(c); }

/* The interpreter: creates hart `hart_id` in reset state (M-mode, pc 0). */
struct cpu *rv64_interp_create(const struct cpu_env *env, unsigned hart_id);

/* The ISA the interpreter implements, as the device tree names it. */
#define RV64_ISA_STRING "rv64imafdc_zicntr_zicsr_zifencei_sstc"

#endif
