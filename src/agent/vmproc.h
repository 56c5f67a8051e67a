/* vmproc.h: one VMM process (`tern vm run`) the agent started and
 * supervises: how it is started from a VM spec, its control socket, its
 * exit, and the CPU time it uses. */
#ifndef TERN_AGENT_VMPROC_H
#define TERN_AGENT_VMPROC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cluster/model.h"
#include "util/error.h"

/* A VM as the cluster stores it (/tern/vms/NAME/spec, docs/cluster.md). */
struct vm_spec {
	char name[CL_NAME_MAX];
	uint32_t memory_mib;
	uint32_t cpus;
	char kernel[256];
	char initrd[256];
	char cmdline[512];
	char disk[256];         /* shared storage; "" for none */
	char tap[32];           /* tap device on its host, created by the agent; "" none */
	char mac[18];
};

/* Reads and checks a spec (unknown fields, bad sizes, a name that is not
 * [a-z0-9-] of 1-63 characters: refused naming the field). */
int vm_spec_from_json(json_t *j, struct vm_spec *out, struct error *err);
json_t *vm_spec_to_json(const struct vm_spec *s);
bool vm_name_valid(const char *name);

struct vmproc {
	char name[CL_NAME_MAX];
	pid_t pid;              /* 0 once reaped */
	int exit_status;        /* as waitpid reports it, once reaped */
	char dir[256];          /* its run directory: api.sock, console.sock, tern.log */
	char api_path[300];
	/* Load: the rates between the last two samples of the VMM's stats
	 * (its harts' CPU time, pages the guest wrote, disk and NIC bytes). */
	struct vm_load {
		uint64_t cpu_ns, dirty_pages, disk_bytes, net_bytes;
		int64_t at_ns;
	} last;
	uint32_t cpu_milli;
	uint64_t dirty_bytes_s, disk_bytes_s, net_bytes_s;
	char tap[32];           /* the TAP made for it on the bridge, to remove after */
};

/* What every VMM the agent starts is given. */
struct vmproc_env {
	const char *tern_binary;
	const char *run_dir;      /* per VM: run_dir/NAME/ */
	const char *tls_dir;      /* NULL: --no-tls */
	const char *bridge;       /* the host bridge a VM's TAP joins; NULL: none */
};

/* Starts `tern vm run` for spec (incoming: NULL, or "tcp:IP:PORT" to wait
 * for a migration instead of booting) and waits until its control socket
 * answers (up to timeout_ms). */
int vmproc_start(struct vmproc *p, const struct vmproc_env *env, const struct vm_spec *spec,
		 const char *incoming, int timeout_ms, struct error *err);
/* Removes the TAP made for it, once it is gone. */
void vmproc_release(struct vmproc *p);
/* The same as a replication standby (`tern vm run --replica uri`). */
int vmproc_start_replica(struct vmproc *p, const struct vmproc_env *env,
			 const struct vm_spec *spec, const char *uri, int timeout_ms,
			 struct error *err);
/* Reaps it if it exited (non-blocking); true if it is gone. */
bool vmproc_reap(struct vmproc *p);
/* SIGKILL and reap. */
void vmproc_kill(struct vmproc *p);
/* Asks the VMM to stop (API "stop"), then kills it after timeout_ms. */
void vmproc_stop(struct vmproc *p, int timeout_ms);
/* Asks the VMM for its stats and updates the rates; false if it did not
 * answer. Blocks up to a second: not under the agent's lock. */
bool vmproc_sample_load(struct vmproc *p, int64_t now_ns);
/* One request to its control API (api_call). */
int vmproc_call(const struct vmproc *p, const char *command, json_t *args, int timeout_ms,
		json_t **result, struct error *err);

#endif
