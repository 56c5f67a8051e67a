/* cluster_view.h: the cluster as read from etcd in one go, turned into
 * the struct cl_state the placement and balancing code works on, with what
 * the controller needs besides (host leases, owner records). */
#ifndef TERN_AGENT_CLUSTER_VIEW_H
#define TERN_AGENT_CLUSTER_VIEW_H

#include <stdbool.h>

#include "agent/store.h"
#include "cluster/model.h"

struct agent;

struct cluster_view {
	struct cl_state st;
	int64_t *host_lease;          /* per host */
	char (*host_api)[64];         /* per host: its REST API "IP:PORT" */
	char (*host_ip)[48];
	bool *vm_owned;               /* per VM: an owner record exists */
	int64_t *vm_owner_rev;        /* its mod revision */
	char (*vm_owner_state)[16];
	bool *vm_migrating;           /* a migration record exists */
	uint64_t *vm_disk_bytes_s, *vm_net_bytes_s;   /* measured by its agent */
	struct store_list hosts, load, cordons, vms, migrations, rules;
};

/* Hosts registered (alive by definition: their record lives on their
 * lease) and the VMs with a spec; a VM's host is its owner's, -1 if it
 * has none or its owner is not registered. */
int cluster_view_read(struct agent *a, struct cluster_view *cv, struct error *err);
void cluster_view_free(struct cluster_view *cv);
int cluster_view_find_vm(const struct cluster_view *cv, const char *name);

struct cl_decision;
/* Orders the agent owning d->vm to migrate it to d->to (controller.c). */
int agent_order_move(struct agent *a, struct cluster_view *cv, const struct cl_decision *d,
		     const char *why);

#endif
