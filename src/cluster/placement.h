/* placement.h: where a VM may run and where it runs best.
 *
 * The load metrics, the feasibility test (capacity with headroom, host
 * state, rules), the choice of a host for one VM and the predicted cost of
 * live-migrating a VM. Pure functions of a struct cl_state: no I/O, no
 * clock, the same code in the controller and in tern-sim.
 *
 * The metric the balancing works on is CPU utilisation: a host's is the sum
 * of its VMs' measured cpu_milli over its cpu_milli, and the cluster's
 * imbalance is the population standard deviation of that utilisation over
 * the alive, schedulable hosts. A standard deviation rather than max - min:
 * every host's distance from the mean counts, so a move that helps two
 * middling hosts is seen, and one outlier host cannot hide the rest; and
 * it is in the units of utilisation ("0.12" is twelve points), which is
 * what an operator reads a threshold in. Memory is a capacity, not a load:
 * a VM's memory is reserved whether it is touched or not. */
#ifndef TERN_CLUSTER_PLACEMENT_H
#define TERN_CLUSTER_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/model.h"
#include "util/error.h"

/* One decision of a planner, with the numbers it was taken on. */
enum cl_decision_kind {
	CL_MOVE,        /* live-migrate vm from `from` to `to` */
	CL_PLACE,       /* start vm on `to`: a new VM, or a restart after its host died */
	CL_POWER_OFF,   /* host `from` holds no VM once the plan is done */
	CL_UNPLACED,    /* vm fits nowhere; the reason says why */
};

struct cl_decision {
	enum cl_decision_kind kind;
	int vm, from, to;               /* -1 where they do not apply */
	double imbalance_before, imbalance_after;
	double gain;                    /* imbalance_before - imbalance_after */
	double cost_s;                  /* predicted migration time; 0 unless CL_MOVE */
	char reason[256];
};

/* When the guest dirties memory as fast as the link carries it, pre-copy
 * passes stop shrinking and the migration ends in auto-converge or
 * post-copy; its time is then about this many times one copy of memory.
 * tern's `auto` strategy measured 8.5 s for 256 MiB over a 50 MiB/s link
 * with a dirtier faster than the link (docs/migration-strategies.md), 1.7
 * copies; 2 leaves room for a guest that dirties harder than that one. */
#define CL_NONCONVERGE_PENALTY 2.0
/* As MIG_DEFAULT_MAX_PASSES: after this many passes tern switches over. */
#define CL_COST_MAX_PASSES 30

void cl_policy_default(struct cl_policy *p);

/* Utilisation of one host from the VMs the state places on it (0 for a
 * host with no capacity), and the imbalance as described above (0 with no
 * alive schedulable host). O(VMs) (the imbalance O(hosts + VMs)): for a
 * single look, not for a loop; planners use struct cl_layout. */
double cl_host_cpu_util(const struct cl_state *st, int host);
double cl_host_mem_util(const struct cl_state *st, int host);
double cl_imbalance(const struct cl_state *st);

/* Whether vm may run on host, the VMs already there counted (vm itself not
 * twice if it is there already): the host alive and schedulable, its memory
 * and CPU within (1 - headroom) of capacity, every rule naming vm kept. A
 * VM affinity rule sends vm where another member already runs; with none
 * placed yet, the host must have room for all the members still to come.
 * On false, why (if not NULL) says which test failed. */
bool cl_fits(const struct cl_state *st, const struct cl_policy *pol, int vm, int host,
	     char *why, size_t why_size);

/* The host vm would best start on: of the hosts it fits, the one that
 * leaves the lowest imbalance; ties go to the most free memory, then to
 * the first name. A VM already placed is placed afresh (its current host
 * is a candidate like any other). Fills *out with a CL_PLACE decision, or
 * fails with -ENOSPC and a message counting the hosts by why they do not
 * fit; nothing in st changes either way. */
int cl_place(const struct cl_state *st, const struct cl_policy *pol, int vm,
	     struct cl_decision *out, struct error *err);

/* Predicted seconds to live-migrate vm over a link of link_bytes_s with a
 * downtime limit of downtime_ms, as tern's pre-copy does it: pass 1 sends
 * all memory; each next pass sends what the guest dirtied during the one
 * before (dirty rate x that pass's time, at most all memory), so passes
 * shrink by dirty/link each; the pass that fits within the downtime limit
 * is the stop-and-copy, and after CL_COST_MAX_PASSES passes the rest goes
 * as one anyway. When dirty >= link the passes never shrink: tern then
 * throttles the dirtying (auto-converge) or switches to post-copy, and the
 * cost is mem / link * CL_NONCONVERGE_PENALTY; and as tern's auto strategy
 * switches to those as soon as passes stop halving, no migration is
 * predicted to cost more than that. A zero link costs HUGE_VAL: that
 * migration is never worth it. */
double cl_migration_cost_s(const struct cl_vm *vm, uint64_t link_bytes_s, uint64_t downtime_ms);

/* ---- the working copy the planners move VMs around in ------------------ */

/* A placement under consideration: the state's hosts, VMs and rules with
 * the VMs at `at` instead of their host fields, and the sums the metrics
 * need, kept up to date move by move so that the imbalance after a
 * candidate move costs O(1), not O(hosts + VMs). The state is only read. */
struct cl_layout {
	const struct cl_state *st;
	int *at;                  /* per VM: its host here, -1 none */
	uint64_t *cpu;            /* per host: cpu_milli of the VMs at it */
	uint64_t *mem;            /* per host: mem_bytes of the VMs at it */
	bool *usable;             /* per host: alive, schedulable, with CPU, not excluded */
	unsigned n_usable;
	double sum_u, sum_u2;     /* over usable hosts: utilisations and their squares */
	unsigned *rule_first;     /* per VM + 1: its rules are */
	unsigned *rule_of;        /*   rule_of[rule_first[v] .. rule_first[v + 1]) */
};

/* Which tests cl_layout_check applies. */
enum {
	CL_CHECK_CAPACITY = 1u << 0,    /* host state, memory, CPU */
	CL_CHECK_SEPARATION = 1u << 1,  /* anti-affinity and both host rules */
	CL_CHECK_AFFINITY = 1u << 2,    /* VM affinity */
	CL_CHECK_ALL = CL_CHECK_CAPACITY | CL_CHECK_SEPARATION | CL_CHECK_AFFINITY,
};

/* Copies the state's placement. Fails (-EINVAL, naming the VM or the rule)
 * on indexes out of range, so that nothing past it trusts them blindly. */
int cl_layout_init(struct cl_layout *l, const struct cl_state *st, struct error *err);
void cl_layout_free(struct cl_layout *l);

/* Puts vm on host (-1: nowhere). No test: the caller has made them. */
void cl_layout_move(struct cl_layout *l, int vm, int host);
/* Treats host as unschedulable from now on (the host being drained). */
void cl_layout_exclude(struct cl_layout *l, int host);

double cl_layout_cpu_util(const struct cl_layout *l, int host);
double cl_layout_imbalance(const struct cl_layout *l);
/* The imbalance if vm were on host instead, in O(1). */
double cl_layout_imbalance_if(const struct cl_layout *l, int vm, int host);

/* cl_fits against the layout, limited to the tests in `what`. */
bool cl_layout_check(const struct cl_layout *l, const struct cl_policy *pol, int vm, int host,
		     unsigned what, char *why, size_t why_size);

/* cl_place within the layout, and the VM put there on success. A VM
 * placed in the layout is taken off its host first (and put back if no
 * host fits). Decisions are CL_PLACE with `from` the VM's host before. */
int cl_layout_place(struct cl_layout *l, const struct cl_policy *pol, int vm,
		    struct cl_decision *out, struct error *err);

#endif
