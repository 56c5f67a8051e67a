/* balance.h: plans that move many VMs: balancing, draining a host,
 * consolidation, HA restarts; the checks of the rules; and the yardsticks
 * the simulator measures the balancing against (a greedy baseline, lower
 * bounds).
 *
 * A planner only reads the state: it works on a struct cl_layout of its
 * own and returns the decisions in the order they are to be carried out,
 * each with its reason, plus the imbalance it predicts at the end. On
 * failure it returns a negative errno with the reason in err and an empty
 * plan: never half of one. */
#ifndef TERN_CLUSTER_BALANCE_H
#define TERN_CLUSTER_BALANCE_H

#include <stddef.h>

#include "cluster/model.h"
#include "cluster/placement.h"
#include "util/error.h"

/* Balancing starts above the threshold and, once started, goes on down to
 * threshold * CL_HYSTERESIS, so that a cluster it has just balanced sits
 * below the trigger by a margin that noise in the measurements does not
 * cross. */
#define CL_HYSTERESIS 0.8

/* Up to this many usable hosts the balancer tries every VM on every host;
 * above it, VMs on the CL_SOURCE_HOSTS most loaded hosts towards the
 * CL_DEST_HOSTS least loaded: the moves that cut a standard deviation most
 * are between the extremes, and it keeps a step O(VMs + hosts log hosts)
 * on a cluster of thousands. */
#define CL_FULL_SEARCH_HOSTS 64
#define CL_SOURCE_HOSTS 16
#define CL_DEST_HOSTS 48

/* What any migration costs besides moving its memory: a VMM started on
 * the destination, the handshakes, the controller's writes, a slot of
 * max_concurrent and of max_moves held. An estimate, not a measurement;
 * without it gain / cost prefers a string of tiny moves that each cut the
 * imbalance a little and spend the round's budget of moves (tern-sim:
 * docs/cluster-sim.md). Only the ranking uses it; decisions report the
 * pre-copy prediction alone. */
#define CL_MOVE_OVERHEAD_S 5.0

struct cl_plan {
	struct cl_decision *d;
	size_t n, cap;
	double imbalance_before, imbalance_after;
	char summary[256];              /* what the plan does, or why it does nothing */
};

void cl_plan_free(struct cl_plan *p);

/* The index of the host called name, -1 if none. */
int cl_host_find(const struct cl_state *st, const char *name);

/* DRS-style balancing. Nothing when the imbalance is within the threshold.
 * Otherwise, step by step, the move that fits and cuts the imbalance most
 * per predicted migration second (cl_migration_cost_s + CL_MOVE_OVERHEAD_S;
 * the cut at least min_gain), never a VM
 * moved within cooldown_ms or one already moved in this plan, until the
 * imbalance is under threshold * CL_HYSTERESIS, or max_moves moves, or
 * max_concurrent - migrations_in_flight moves (they are to run at once),
 * or no move cuts enough. A last_moved_ms after now_ms means a migration
 * still under way. */
int cl_balance_plan(const struct cl_state *st, const struct cl_policy *pol,
		    struct cl_plan *out, struct error *err);

/* The yardstick: above the threshold, move the largest-CPU VM of the most
 * loaded host that fits the least loaded host (capacity only: rules and
 * cost ignored) while that lowers the imbalance, down to the threshold,
 * within the same limits on the number of moves as cl_balance_plan. VMs
 * still migrating (last_moved_ms after now_ms) stay; cooldown is ignored. */
int cl_greedy_baseline_plan(const struct cl_state *st, const struct cl_policy *pol,
			    struct cl_plan *out, struct error *err);

/* Every VM of host to the best other host, largest first, host treated as
 * unschedulable; cooldown does not hold a VM back. Refused with no
 * decisions if host is unknown or dead, is the last alive schedulable
 * host, or any of its VMs has nowhere to go (named, with why). The moves
 * are to run at most max_concurrent at a time, in order. */
int cl_drain_plan(const struct cl_state *st, const struct cl_policy *pol, int host,
		  struct cl_plan *out, struct error *err);

/* Packs the VMs of the alive schedulable hosts onto as few of them as
 * fit with headroom, rules kept: first-fit decreasing (VMs by memory then
 * CPU, hosts largest first, a VM stays where it is when its host is in
 * use anyway). CL_MOVE decisions in an order in which every intermediate
 * state keeps capacity and separation rules, then CL_POWER_OFF for every
 * such host left empty. Refused (-ENOSPC) rather than a plan that breaks a
 * rule or a capacity, e.g. when the moves could only be ordered with a
 * spare host. */
int cl_consolidate_plan(const struct cl_state *st, const struct cl_policy *pol,
			struct cl_plan *out, struct error *err);

/* dead_host's lease expired: its VMs restarted on alive hosts, largest
 * first (CL_PLACE, from = dead_host); the ones that fit nowhere as
 * CL_UNPLACED with why, the others still placed. Refused if dead_host is
 * unknown or still alive: restarting a VM that still runs is split brain. */
int cl_ha_plan(const struct cl_state *st, const struct cl_policy *pol, int dead_host,
	       struct cl_plan *out, struct error *err);

/* Whether the rules can be kept at all in this cluster: member indexes in
 * range; an affinity group that some alive schedulable host holds with
 * headroom; no more anti-affinity members than alive schedulable hosts; a
 * host affinity listing an alive schedulable host; a host anti-affinity
 * leaving one; no two VMs both bound together and kept apart. -EINVAL and
 * the first rule that fails, by name. */
int cl_check_rules(const struct cl_state *st, const struct cl_policy *pol, struct error *err);

/* Lower bounds for the balancing, over the alive schedulable hosts.
 * A move changes the load of two hosts only, so after k moves at least
 * n - 2k hosts keep their utilisation, and the standard deviation over all
 * n is at least sqrt(S / n), S the least sum of squared deviations from
 * their own mean that any n - 2k of the current utilisations have (the
 * best such set is a run of consecutive ones in sorted order). Any moves
 * at all, of any VMs, by any planner: the bounds are loose, never wrong. */
struct cl_bound {
	unsigned hosts;              /* alive schedulable hosts */
	unsigned min_moves;          /* fewest moves that could bring the imbalance to the threshold */
	double best_after_budget;    /* the least imbalance `budget` moves could leave */
	/* With VMs divisible, every host could be at the mean: 0. Kept to say
	 * so in the reports: integrality and the move budget are what bound. */
	double fractional;
};

int cl_balance_lower_bound(const struct cl_state *st, const struct cl_policy *pol, unsigned budget,
			   struct cl_bound *out, struct error *err);

/* The fewest alive schedulable hosts whose capacity with headroom, largest
 * first, adds up to the memory (*by_mem) and the CPU (*by_cpu) of the VMs
 * on such hosts; returns the larger. No packing needs fewer. */
unsigned cl_consolidate_lower_bound(const struct cl_state *st, const struct cl_policy *pol,
				    unsigned *by_mem, unsigned *by_cpu);

#endif
