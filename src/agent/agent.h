/* agent.h: ternd, the host agent (docs/cluster.md). One per host: it
 * registers the host in etcd under a lease it keeps alive, fences itself
 * when it cannot, runs the VMs etcd says it owns, measures load, serves
 * the REST API, and takes its turn as the cluster's controller. */
#ifndef TERN_AGENT_AGENT_H
#define TERN_AGENT_AGENT_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/vmproc.h"
#include "cluster/model.h"

struct etcd;
struct rest_server;

#define AGENT_MAX_VMS 64
#define AGENT_PREFIX_MAX 64

struct agent_config {
	char name[CL_NAME_MAX];      /* this host's name */
	char site[CL_NAME_MAX];      /* this cluster's site name (DR, dr.c) */
	char etcd[512];              /* etcd endpoints (etcd_open) */
	char prefix[AGENT_PREFIX_MAX]; /* key prefix, "/tern" */
	char state_dir[200];         /* api.sock, vms/NAME/... */
	char tcp[64];                /* REST on TCP: "IP:PORT", "" for none */
	char token_file[256];        /* the bearer token for TCP */
	char ip[48];                 /* where migrations reach this host */
	char tern_binary[256];
	char tls_dir[256];           /* "" for --no-tls VMMs */
	char bridge[16];             /* VMs' TAPs join it; "" none */
	char web_dir[256];           /* the dashboard's files; "" none */
	uint32_t cpu_milli;          /* capacity offered to guests */
	uint64_t mem_bytes;
	uint32_t lease_ttl_s;        /* the host lease; it fences at 3/4 of it */
	bool balance;                /* as controller, balance the load by itself */
};

/* A VM whose process runs here. */
struct agent_vm {
	bool used;
	struct vm_spec spec;
	struct vmproc proc;
	int64_t owner_rev;           /* mod_revision of our owner record: the fencing token */
	bool incoming;               /* a migration's destination, not ours until handed over */
	bool replica;                /* a DR standby for another site's VM (dr.c) */
	bool migrating;              /* a migration away from here is under way */
	bool starting;               /* slot taken, its VMM not started yet (proc.pid 0) */
	int64_t incoming_since_ns;
};

struct agent {
	struct agent_config cfg;
	struct etcd *etcd;
	struct rest_server *rest;
	char token[128];
	int64_t lease;               /* this host's lease id */
	int64_t lease_ok_ns;         /* when the last successful keepalive was sent */
	bool fenced;                 /* lost etcd for too long: VMs killed, no new work */
	volatile bool stop;

	pthread_mutex_t lock;        /* vms, and the flags above after start */
	struct agent_vm vms[AGENT_MAX_VMS];

	bool is_controller;
	int64_t controller_rev;      /* create_revision of our controller key */
	unsigned controller_round;
	pthread_t lease_thread, reconcile_thread, controller_thread, watchdog_thread;
	unsigned threads_started;    /* bits: lease, reconcile, controller, watchdog */
};

/* Keys, under cfg.prefix. */
int agent_key(const struct agent *a, char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

int agent_start(struct agent *a, struct error *err);
/* Stops the threads and the REST server; the VMs are stopped too unless
 * keep_vms (never used: a VM outliving its agent could run twice). */
void agent_stop(struct agent *a);

/* lease.c: registration and keeping alive; fencing. */
int agent_register(struct agent *a, struct error *err);
void *agent_lease_main(void *arg);
void *agent_watchdog_main(void *arg);
/* reconcile.c: runs what etcd says this host owns, and nothing else. */
void *agent_reconcile_main(void *arg);
void agent_kill_all_vms(struct agent *a, const char *why);
/* The local VM called name, or NULL; with a->lock held. */
struct agent_vm *agent_find_vm(struct agent *a, const char *name);
struct agent_vm *agent_new_vm(struct agent *a);
/* Marks vm (if this host has it) as moving away, or not; takes a->lock. */
void agent_set_migrating(struct agent *a, const char *vm, bool on);
/* vmproc_env for this agent's VMMs. */
void agent_vmproc_env(const struct agent *a, struct vmproc_env *env, char *run_dir, size_t size);
/* controller.c */
void *agent_controller_main(void *arg);
/* agent_api.c */
int agent_api_register(struct agent *a, struct error *err);
/* Starts a VMM here that waits on a free port of this host for a
 * migration (replica false) or a replication (true): *uri says where. */
int agent_start_waiting_vmm(struct agent *a, const struct vm_spec *spec, bool replica,
			    char *uri, size_t uri_size, struct error *err);
/* The JSON records under what/, in key order, as a new array. */
int agent_list_records(struct agent *a, const char *what, json_t **array, struct error *err);
/* cluster_view.c: the host running vm in this site (host: CL_NAME_MAX
 * bytes) and its agent's address (api: 64 bytes); -ENOENT, -EBUSY. */
int agent_find_owner(struct agent *a, const char *vm, char *host, char *api, struct error *err);
/* dr.c: sites, protection, standbys, fail-over */
int agent_dr_register(struct agent *a, struct error *err);
/* Whether the controller may place (HA-restart) vm here: 1 yes; 0 no,
 * err says why: it is protected, and its standby's site runs it (this
 * site forgets it, EEXIST) or cannot be asked; negative on etcd errors. */
int agent_dr_may_place(struct agent *a, const char *vm, struct error *err);
/* GET /v1/dr's reply: this site's protected VMs and standbys, with the
 * replication status their agents report. */
int agent_dr_status(struct agent *a, json_t **reply, struct error *err);
/* {hosts, imbalance, vms}: GET /v1/hosts and /v1/vms from one reading. */
int agent_cluster_json(struct agent *a, json_t **out, struct error *err);
/* events.c: the dashboard's feed (GET /v1/events, /v1/migrations). */
int agent_events_register(struct agent *a, struct error *err);

int64_t agent_now_ns(void);

#endif
