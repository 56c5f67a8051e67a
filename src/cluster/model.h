/* model.h: the cluster as the placement and balancing code sees it.
 *
 * One plain, self-contained description of hosts, VMs and rules, filled by
 * the controller from etcd and the agents' measurements, or by the
 * simulator from synthetic traces: the same decision code runs on both.
 * Everything here is data; the decisions live in placement.h and balance.h. */
#ifndef TERN_CLUSTER_MODEL_H
#define TERN_CLUSTER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CL_NAME_MAX 64
/* CPU is counted in milli-cores: one hart busy all the time is 1000. */
#define CL_MILLI 1000u

struct cl_host {
	char name[CL_NAME_MAX];
	uint32_t cpu_milli;          /* capacity for guests' harts */
	uint64_t mem_bytes;          /* capacity for guests' memory */
	uint64_t link_bytes_s;       /* what a migration to or from it moves per second */
	bool schedulable;            /* false once drained (tern host drain) */
	bool alive;                  /* its lease is held */
};

struct cl_vm {
	char name[CL_NAME_MAX];
	int host;                    /* index into cl_state.hosts; -1: not placed */
	uint32_t vcpus;
	uint64_t mem_bytes;
	uint32_t cpu_milli;          /* measured: CPU time of its hart threads per second */
	uint64_t dirty_bytes_s;      /* measured: memory it dirties per second */
	int64_t last_moved_ms;       /* when a migration last moved it; 0: never */
};

enum cl_rule_kind {
	CL_VM_AFFINITY,              /* the VMs run on one host */
	CL_VM_ANTI_AFFINITY,         /* no two of the VMs share a host */
	CL_HOST_AFFINITY,            /* the VMs run only on the hosts listed */
	CL_HOST_ANTI_AFFINITY,       /* the VMs never run on the hosts listed */
};

#define CL_RULE_MAX_MEMBERS 32

struct cl_rule {
	char name[CL_NAME_MAX];
	enum cl_rule_kind kind;
	unsigned n_vms;
	int vms[CL_RULE_MAX_MEMBERS];    /* indexes into cl_state.vms */
	unsigned n_hosts;
	int hosts[CL_RULE_MAX_MEMBERS];  /* indexes into cl_state.hosts (host rules) */
};

/* Knobs of the decisions, with defaults from cl_policy_default(). */
struct cl_policy {
	double headroom;             /* fraction of a host's CPU and memory kept free (0.1) */
	double imbalance_threshold;  /* act when the imbalance exceeds this (0.10) */
	double min_gain;             /* a move must cut the imbalance by at least this (0.01) */
	unsigned max_concurrent;     /* migrations in flight at once (2) */
	unsigned max_moves;          /* migrations one balancing round may plan (8) */
	int64_t cooldown_ms;         /* a VM moved this recently stays (300000) */
	uint64_t downtime_ms;        /* the migrations' downtime limit, for their cost (30) */
};

struct cl_state {
	struct cl_host *hosts;
	size_t n_hosts;
	struct cl_vm *vms;
	size_t n_vms;
	struct cl_rule *rules;
	size_t n_rules;
	int64_t now_ms;              /* the clock cooldowns are measured on */
	unsigned migrations_in_flight;
};

#endif
