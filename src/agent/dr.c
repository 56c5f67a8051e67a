/* dr.c: disaster recovery across sites (docs/replication.md, "Sites").
 *
 * A site is a cluster (its own etcd and agents); each knows the others by
 * an agent address (sites/NAME). Protecting a VM asks the other site's
 * agent for a standby (`tern vm run --replica`, recorded there under
 * replicas/V on that agent's lease), then has the VM's VMM replicate to it
 * (recorded here under dr/V). Failing over, at the standby's site, first
 * makes sure the VM's own site no longer runs it (its agent says so, or
 * cannot be reached and the operator forces it), then runs the replica
 * and makes it an ordinary VM of this site (spec and owner record, by
 * compare-and-swap). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cluster_view.h"
#include "agent/http_client.h"
#include "agent/rest.h"
#include "agent/store.h"
#include "cluster/balance.h"
#include "cluster/etcd.h"
#include "util/log.h"

#define PEER_TIMEOUT_MS 5000

int agent_call(struct agent *a, const char *api, const char *method, const char *path,
	       json_t *body, int timeout_ms, json_t **reply, struct error *err);
json_t *agent_owner_record(const struct agent *a, const char *host, const char *state);

/* The agent address ("http://IP:PORT") of site `name`. */
static int site_api(struct agent *a, const char *name, char *out, size_t size,
		    struct error *err)
{
	char key[300];
	agent_key(a, key, sizeof(key), "sites/%s", name);
	json_t *rec;
	int rc = store_get(a->etcd, key, &rec, NULL, err);
	if (rc < 0)
		return rc;
	const char *api = json_string_value(json_object_get(rec, "api"));
	if (api)
		snprintf(out, size, "%s", api);
	json_decref(rec);
	return api ? 0 : error_set(err, ENOENT, "no site %s (tern site add %s --agent URL)", name,
				   name);
}

static int site_call(struct agent *a, const char *api, const char *method, const char *path,
		     json_t *body, int timeout_ms, json_t **reply, struct error *err)
{
	return http_json(api, a->token[0] ? a->token : NULL, method, path, body, timeout_ms, reply,
			 err);
}

/* Whether site runs vm, asking its agent: 1 yes (where: "HOST, STATE"),
 * 0 no (it has no such VM, or has not placed it), negative if it cannot
 * tell (an unknown site, or its agent cannot be reached; err says). */
static int site_runs_vm(struct agent *a, const char *site, const char *vm, char *where,
			size_t where_size, struct error *err)
{
	char api[300], path[200];
	json_t *there = NULL;
	int rc = site_api(a, site, api, sizeof(api), err);
	if (rc < 0)
		return rc == -ENOENT ? -ENXIO : rc;     /* an unknown site, not an absent VM */
	snprintf(path, sizeof(path), "/v1/vms/%s", vm);
	rc = site_call(a, api, "GET", path, NULL, PEER_TIMEOUT_MS, &there, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	const char *state = json_string_value(json_object_get(there, "state"));
	int runs = state && strcmp(state, "pending") ? 1 : 0;
	if (where)
		snprintf(where, where_size, "%s, %s",
			 json_string_value(json_object_get(there, "host")) ?: "?", state ? state : "?");
	json_decref(there);
	return runs;
}

static int put_site(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct agent *a = opaque;
	const char *api = json_string_value(json_object_get(req->body, "api"));
	if (!api || strncmp(api, "http://", 7) || json_object_size(req->body) != 1)
		return error_set(err, EINVAL, "a site is {\"api\": \"http://IP:PORT\"} (one of its "
				 "agents)");
	if (!vm_name_valid(req->params[0]))
		return error_set(err, EINVAL, "\"%s\" is not a site name (a-z, 0-9, -)",
				 req->params[0]);
	if (!strcmp(req->params[0], a->cfg.site))
		return error_set(err, EINVAL, "%s is this site", req->params[0]);
	char key[300];
	agent_key(a, key, sizeof(key), "sites/%s", req->params[0]);
	json_t *rec = json_pack("{s:s, s:s}", "name", req->params[0], "api", api);
	int rc = rec ? store_put(a->etcd, key, rec, 0, err) : -ENOMEM;
	json_decref(rec);
	if (rc < 0)
		return rc;
	*reply = json_pack("{s:s, s:s}", "name", req->params[0], "api", api);
	return 0;
}

static int get_sites(void *opaque, const struct rest_request *req, json_t **reply,
		     struct error *err)
{
	json_t *list;
	int rc = agent_list_records(opaque, "sites", &list, err);
	if (rc < 0)
		return rc;
	*reply = json_pack("{s:s, s:o}", "site", ((struct agent *)opaque)->cfg.site, "sites", list);
	return 0;
}

/* Protects vm, which runs here, by a standby at site; knobs holds the
 * replication's epoch_ms, rpo_ms and sync, if given. */
static int protect_here(struct agent *a, const char *vm, const char *site, json_t *knobs_in,
			json_t **reply, struct error *err)
{
	char remote[300];
	int rc = site_api(a, site, remote, sizeof(remote), err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	struct vm_spec spec;
	struct vmproc proc;
	bool ok = v && v->proc.pid && !v->incoming && !v->replica;
	if (ok) {
		spec = v->spec;
		proc = v->proc;
	}
	pthread_mutex_unlock(&a->lock);
	if (!ok)
		return error_set(err, ENOENT, "VM %s does not run on %s", vm, a->cfg.name);
	json_t *body = json_pack("{s:o, s:s}", "spec", vm_spec_to_json(&spec), "from_site",
				 a->cfg.site);
	json_t *standby = NULL;
	rc = body ? site_call(a, remote, "POST", "/v1/internal/replica", body, 60000, &standby,
			      err) : -ENOMEM;
	json_decref(body);
	if (rc < 0)
		return error_wrap(err, "asking site %s for a standby", site);
	const char *uri = json_string_value(json_object_get(standby, "uri"));
	const char *shost = json_string_value(json_object_get(standby, "host"));
	json_t *args = json_pack("{s:s, s:b}", "to", uri ? uri : "", "copy_storage",
				 spec.disk[0] != 0);
	static const char *const knobs[] = { "epoch_ms", "rpo_ms", "sync", "compress" };
	for (unsigned i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		json_t *k = json_object_get(knobs_in, knobs[i]);
		if (k)
			json_object_set(args, knobs[i], k);
	}
	json_t *st = NULL;
	rc = args && uri ? vmproc_call(&proc, "replicate", args, 10000, &st, err) : -EPROTO;
	json_decref(args);
	if (rc < 0) {
		json_decref(standby);
		return error_wrap(err, "starting the replication of %s", vm);
	}
	char key[300];
	agent_key(a, key, sizeof(key), "dr/%s", vm);
	json_t *rec = json_pack("{s:s, s:s, s:s, s:s}", "vm", vm, "site", site, "host",
				shost ? shost : "?", "uri", uri);
	store_put(a->etcd, key, rec, 0, err);
	json_decref(rec);
	log_info("ternd %s: VM %s protected by a standby at site %s on %s (%s)", a->cfg.name, vm,
		 site, shost ? shost : "?", uri);
	*reply = json_pack("{s:s, s:s, s:s?, s:s, s:O}", "vm", vm, "site", site, "host", shost,
			   "uri", uri, "replication", st);
	json_decref(st);
	json_decref(standby);
	return 0;
}

/* Forwards a request about V to the agent of V's host, unless that is
 * this one (then 1). */
static int at_owner(struct agent *a, const char *vm, const char *what,
		    const struct rest_request *req, int timeout_ms, json_t **reply,
		    struct error *err)
{
	char host[CL_NAME_MAX], api[64];
	int rc = agent_find_owner(a, vm, host, api, err);
	if (rc < 0)
		return rc;
	if (!strcmp(host, a->cfg.name))
		return 1;
	char path[200];
	snprintf(path, sizeof(path), "/v1/vms/%s/%s", vm, what);
	return agent_call(a, api, "POST", path, req->body, timeout_ms, reply, err);
}

/* POST /v1/vms/V/protect {site, epoch_ms, rpo_ms, sync, compress}: at V's agent. */
static int protect(void *opaque, const struct rest_request *req, json_t **reply,
		   struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	const char *site = json_string_value(json_object_get(req->body, "site"));
	if (!site)
		return error_set(err, EINVAL, "protect needs {\"site\": NAME}");
	int rc = at_owner(a, vm, "protect", req, 60000, reply, err);
	return rc != 1 ? rc : protect_here(a, vm, site, req->body, reply, err);
}

/* vm, once this site's, runs at site `at` now (it failed over there):
 * this site's records of it go, unless this site runs it (then EBUSY). */
static int forget_moved_vm(struct agent *a, const char *vm, const char *at, struct error *err)
{
	char prefix[300], spec_key[300], owner_key[300], dr_key[300];
	agent_key(a, prefix, sizeof(prefix), "vms/%s/", vm);
	agent_key(a, spec_key, sizeof(spec_key), "vms/%s/spec", vm);
	agent_key(a, owner_key, sizeof(owner_key), "vms/%s/owner", vm);
	agent_key(a, dr_key, sizeof(dr_key), "dr/%s", vm);
	struct store_list l;
	int rc = store_list(a->etcd, prefix, &l, err);
	if (rc < 0)
		return rc;
	bool owned = store_find(&l, owner_key) != NULL;
	const struct store_item *spec = store_find(&l, spec_key);
	int64_t spec_rev = spec ? spec->mod_rev : 0;
	store_list_free(&l);
	if (owned)
		return error_set(err, EBUSY, "VM %s runs at site %s: it cannot be another site's",
				 vm, a->cfg.site);
	if (spec_rev && (rc = store_cas_delete(a->etcd, spec_key, spec_rev, err)) < 0)
		return rc;
	struct error e2 = { 0 };
	store_delete(a->etcd, dr_key, &e2);
	if (spec_rev)
		log_info("ternd %s: VM %s is site %s's now (it failed over there): this site "
			 "forgets it", a->cfg.name, vm, at);
	return 0;
}

int agent_dr_may_place(struct agent *a, const char *vm, struct error *err)
{
	char key[300];
	agent_key(a, key, sizeof(key), "dr/%s", vm);
	json_t *rec;
	int rc = store_get(a->etcd, key, &rec, NULL, err);
	if (rc < 0)
		return rc;
	char site[CL_NAME_MAX];
	snprintf(site, sizeof(site), "%s", json_string_value(json_object_get(rec, "site")) ?: "");
	json_decref(rec);
	if (!site[0])
		return 1;
	struct error e2 = { 0 };
	rc = site_runs_vm(a, site, vm, NULL, 0, &e2);
	if (rc == 0)
		return 1;       /* not failed over: restarted here, as any VM */
	if (rc == 1) {
		if ((rc = forget_moved_vm(a, vm, site, err)) < 0)
			return rc;
		error_set(err, EEXIST, "runs at site %s (failed over there): no longer this site's",
			  site);
		return 0;
	}
	error_set(err, EHOSTUNREACH, "protected by site %s, which cannot say whether it failed "
		  "%s over (%s): not restarted here until it can", site, vm, e2.msg);
	return 0;
}

/* POST /v1/internal/replica {spec, from_site}: a standby here. */
static int start_standby(void *opaque, const struct rest_request *req, json_t **reply,
			 struct error *err)
{
	struct agent *a = opaque;
	struct vm_spec spec;
	int rc = vm_spec_from_json(json_object_get(req->body, "spec"), &spec, err);
	const char *from = json_string_value(json_object_get(req->body, "from_site"));
	if (rc < 0)
		return rc;
	if (!from)
		return error_set(err, EINVAL, "a standby needs \"from_site\"");
	if ((rc = forget_moved_vm(a, spec.name, from, err)) < 0)
		return rc;
	/* The replica's disk lives here, under the agent's directory. */
	if (spec.disk[0] && (size_t)snprintf(spec.disk, sizeof(spec.disk), "%.150s/vms/%s/replica.img",
					     a->cfg.state_dir, spec.name) >= sizeof(spec.disk))
		return error_set(err, ENAMETOOLONG, "the state directory's path is too long");
	char uri[96];
	if ((rc = agent_start_waiting_vmm(a, &spec, true, uri, sizeof(uri), err)) < 0)
		return rc;
	char key[300];
	agent_key(a, key, sizeof(key), "replicas/%s", spec.name);
	json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:o}", "vm", spec.name, "from_site", from,
				"host", a->cfg.name, "uri", uri, "spec", vm_spec_to_json(&spec));
	rc = rec ? store_put(a->etcd, key, rec, a->lease, err) : -ENOMEM;
	json_decref(rec);
	if (rc < 0)
		return rc;
	log_info("ternd %s: standby for %s of site %s waits on %s", a->cfg.name, spec.name, from,
		 uri);
	*reply = json_pack("{s:s, s:s}", "uri", uri, "host", a->cfg.name);
	return 0;
}

/* GET /v1/internal/dr/V: the VMM's own view (replicate-status or
 * replica-status). */
static int local_dr_status(void *opaque, const struct rest_request *req, json_t **reply,
			   struct error *err)
{
	struct agent *a = opaque;
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, req->params[0]);
	struct vmproc proc;
	bool found = v && v->proc.pid;
	bool replica = found && v->replica;
	if (found)
		proc = v->proc;
	pthread_mutex_unlock(&a->lock);
	if (!found)
		return error_set(err, ENOENT, "no VMM for %s on %s", req->params[0], a->cfg.name);
	return vmproc_call(&proc, replica ? "replica-status" : "replicate-status", NULL, 5000,
			   reply, err);
}

/* GET /v1/dr: what this site protects, and the standbys it keeps. */
static int dr_status(void *opaque, const struct rest_request *req, json_t **reply,
		     struct error *err)
{
	return agent_dr_status(opaque, reply, err);
}

int agent_dr_status(struct agent *a, json_t **reply, struct error *err)
{
	json_t *prot, *reps;
	int rc = agent_list_records(a, "dr", &prot, err);
	if (rc < 0)
		return rc;
	if ((rc = agent_list_records(a, "replicas", &reps, err)) < 0) {
		json_decref(prot);
		return rc;
	}
	struct cluster_view cv;
	if ((rc = cluster_view_read(a, &cv, err)) < 0) {
		json_decref(prot);
		json_decref(reps);
		return rc;
	}
	json_t *lists[2] = { prot, reps };
	for (unsigned k = 0; k < 2; k++) {
		size_t i;
		json_t *rec;
		json_array_foreach(lists[k], i, rec) {
			const char *vm = json_string_value(json_object_get(rec, "vm"));
			const char *host = k ? json_string_value(json_object_get(rec, "host")) : NULL;
			int v = vm ? cluster_view_find_vm(&cv, vm) : -1;
			if (!k && v >= 0 && cv.st.vms[v].host >= 0)
				host = cv.st.hosts[cv.st.vms[v].host].name;
			int h = host ? cl_host_find(&cv.st, host) : -1;
			char path[200];
			snprintf(path, sizeof(path), "/v1/internal/dr/%s", vm ? vm : "-");
			json_t *st = NULL;
			struct error e2 = { 0 };
			if (h >= 0 && agent_call(a, cv.host_api[h], "GET", path, NULL, 5000, &st,
						 &e2) == 0)
				json_object_set_new(rec, "status", st);
			else
				json_object_set_new(rec, "status_error", json_string(h < 0 ?
					"its host is not in the cluster" : e2.msg));
		}
	}
	cluster_view_free(&cv);
	*reply = json_pack("{s:s, s:o, s:o}", "site", a->cfg.site, "protected", prot, "standbys",
			   reps);
	return 0;
}

/* The standby record of vm at this site (*rec, *rev) if this host holds
 * the standby: then 1. Else the request goes to the host that does, as
 * POST /v1/replicas/V/<what>, and its answer is returned. */
static int at_standby(struct agent *a, const char *vm, const char *what,
		      const struct rest_request *req, json_t **rec, int64_t *rev, json_t **reply,
		      struct error *err)
{
	char key[300];
	agent_key(a, key, sizeof(key), "replicas/%s", vm);
	int rc = store_get(a->etcd, key, rec, rev, err);
	if (rc < 0)
		return rc;
	if (!*rec)
		return error_set(err, ENOENT, "no standby for %s at site %s", vm, a->cfg.site);
	const char *holder = json_string_value(json_object_get(*rec, "host"));
	if (!holder || !strcmp(holder, a->cfg.name))
		return 1;
	struct cluster_view cv;
	if ((rc = cluster_view_read(a, &cv, err)) == 0) {
		int h = cl_host_find(&cv.st, holder);
		char api[64], path[200];
		snprintf(api, sizeof(api), "%s", h >= 0 ? cv.host_api[h] : "");
		cluster_view_free(&cv);
		snprintf(path, sizeof(path), "/v1/replicas/%s/%s", vm, what);
		rc = h < 0 ? error_set(err, EHOSTUNREACH, "the standby's host %s is gone", holder)
			   : agent_call(a, api, "POST", path, req->body, 60000, reply, err);
	}
	json_decref(*rec);
	*rec = NULL;
	return rc;
}

/* Kills this host's VMM of vm (only a standby's if replica_only). */
static void kill_local(struct agent *a, const char *vm, bool replica_only)
{
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	if (v && (v->replica || !replica_only)) {
		vmproc_kill(&v->proc);
		v->used = false;
	}
	pthread_mutex_unlock(&a->lock);
}

/* Makes the VMM here for spec an ordinary VM of this site: its spec and
 * this host as its owner, both created only if absent. If someone at this
 * site owns a VM of that name already, the VMM here is killed: never two. */
static int own_here(struct agent *a, const struct vm_spec *spec, struct error *err)
{
	char skey[300], okey[300];
	agent_key(a, skey, sizeof(skey), "vms/%s/spec", spec->name);
	agent_key(a, okey, sizeof(okey), "vms/%s/owner", spec->name);
	json_t *sj = vm_spec_to_json(spec);
	json_t *oj = agent_owner_record(a, a->cfg.name, "running");
	int64_t owner_rev = 0;
	struct error e2 = { 0 };
	int src = sj ? store_create(a->etcd, skey, sj, 0, NULL, NULL, &e2) : -ENOMEM;
	int orc = oj ? store_create(a->etcd, okey, oj, a->lease, NULL, &owner_rev, err) : -ENOMEM;
	json_decref(sj);
	json_decref(oj);
	if (src < 0 && src != -EEXIST)
		log_warn("ternd %s: recording %s's spec: %s", a->cfg.name, spec->name, e2.msg);
	if (orc < 0) {
		log_error("ternd %s: %s cannot be owned here (%s): killing it", a->cfg.name,
			  spec->name, err->msg);
		kill_local(a, spec->name, false);
		return orc;
	}
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, spec->name);
	if (v) {
		v->replica = false;
		v->owner_rev = owner_rev;
	}
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* POST /v1/replicas/V/drop: the standby goes (a fail-back that did not
 * happen); it leaves no file. */
static int drop_standby(void *opaque, const struct rest_request *req, json_t **reply,
			struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	json_t *rec = NULL;
	int64_t rev = 0;
	int rc = at_standby(a, vm, "drop", req, &rec, &rev, reply, err);
	if (rc != 1)
		return rc;
	json_decref(rec);
	kill_local(a, vm, true);
	char key[300];
	agent_key(a, key, sizeof(key), "replicas/%s", vm);
	if ((rc = store_cas_delete(a->etcd, key, rev, err)) < 0)
		return rc;
	log_info("ternd %s: the standby for %s was dropped", a->cfg.name, vm);
	*reply = json_pack("{s:s, s:b}", "vm", vm, "dropped", 1);
	return 0;
}

/* POST /v1/replicas/V/failover {force}: at the standby's site. */
static int failover(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	char key[300];
	agent_key(a, key, sizeof(key), "replicas/%s", vm);
	json_t *rec = NULL;
	int64_t rec_rev = 0;
	int rc = at_standby(a, vm, "failover", req, &rec, &rec_rev, reply, err);
	if (rc != 1)
		return rc;
	/* Fencing: the VM's own site must not run it any more. */
	const char *from = json_string_value(json_object_get(rec, "from_site"));
	bool force = json_is_true(json_object_get(req->body, "force"));
	struct error e2 = { 0 };
	char where[120] = "";
	int seen = site_runs_vm(a, from ? from : "?", vm, where, sizeof(where), &e2);
	if (seen == 1) {
		rc = error_set(err, EBUSY, "VM %s still runs at site %s (on %s): fail over only "
			       "when that site is lost", vm, from, where);
		goto out;
	}
	if (seen < 0 && !force) {
		rc = error_set(err, EHOSTUNREACH, "cannot reach site %s to see %s fenced (%s): "
			       "--force if that site is known to be lost", from, vm, e2.msg);
		goto out;
	}
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	struct vmproc proc;
	bool ok = v && v->replica && v->proc.pid;
	if (ok)
		proc = v->proc;
	pthread_mutex_unlock(&a->lock);
	if (!ok) {
		rc = error_set(err, ENOENT, "the standby for %s no longer runs here", vm);
		goto out;
	}
	json_t *r = NULL;
	if ((rc = vmproc_call(&proc, "failover", NULL, 10000, &r, err)) < 0)
		goto out;
	uint64_t epoch = (uint64_t)json_integer_value(json_object_get(r, "epoch"));
	json_decref(r);
	struct vm_spec spec;
	struct error e3 = { 0 };
	vm_spec_from_json(json_object_get(rec, "spec"), &spec, &e3);
	if ((rc = own_here(a, &spec, err)) < 0)
		goto out;
	store_cas_delete(a->etcd, key, rec_rev, &e3);
	/* Where it came from: the way home (failback). */
	char origin_key[300];
	agent_key(a, origin_key, sizeof(origin_key), "origins/%s", vm);
	json_t *origin = json_pack("{s:s, s:s}", "vm", vm, "site", from ? from : "?");
	if (!origin || store_put(a->etcd, origin_key, origin, 0, &e3) < 0)
		log_warn("ternd %s: recording where %s came from: %s", a->cfg.name, vm, e3.msg);
	json_decref(origin);
	log_info("ternd %s: %s failed over from site %s%s: it runs here from epoch %llu",
		 a->cfg.name, vm, from ? from : "?", force ? " (forced)" : "",
		 (unsigned long long)epoch);
	*reply = json_pack("{s:s, s:s, s:I, s:b}", "vm", vm, "host", a->cfg.name, "epoch",
			   (json_int_t)epoch, "forced", force);
	rc = 0;
out:
	json_decref(rec);
	return rc;
}

/* How long the way home may take to get in step (the bulk copy). */
#define FAILBACK_SYNC_MS 300000

/* The home site's standby goes; the protection record here too. */
static void undo_protection(struct agent *a, const char *vm, const char *home_api,
			    const struct vmproc *proc)
{
	struct error e2 = { 0 };
	json_t *ignored = NULL, *body = json_object();
	char path[200], key[300];
	vmproc_call(proc, "replicate-stop", NULL, 10000, NULL, &e2);
	snprintf(path, sizeof(path), "/v1/replicas/%s/drop", vm);
	if (site_call(a, home_api, "POST", path, body, PEER_TIMEOUT_MS * 4, &ignored, &e2) < 0)
		log_warn("ternd %s: dropping the standby of %s at home: %s", a->cfg.name, vm,
			 e2.msg);
	json_decref(body);
	json_decref(ignored);
	agent_key(a, key, sizeof(key), "dr/%s", vm);
	store_delete(a->etcd, key, &e2);
}

/* POST /v1/vms/V/failback {site}: at the agent of V's host, for a VM that
 * failed over to this site. The replication is reversed (a standby at
 * home, as `dr protect`), and once it is in step the VM is handed over
 * home: one last epoch with the guest paused (replicate-stop final), this
 * site gives the VM up in its etcd (owner by compare-and-swap, then the
 * spec), and the home site fails its standby over, which it does only
 * because this site no longer runs the VM. Any failure before home runs
 * it gives the VM back here, running, intact. */
static int failback(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	int rc = at_owner(a, vm, "failback", req, FAILBACK_SYNC_MS + 120000, reply, err);
	if (rc != 1)
		return rc;
	json_t *site_arg = json_object_get(req->body, "site");
	if (site_arg && !json_is_string(site_arg))
		return error_set(err, EINVAL, "failback: \"site\" is a site's name");
	char home[CL_NAME_MAX] = "", origin_key[300], okey[300], skey[300], dkey[300];
	agent_key(a, origin_key, sizeof(origin_key), "origins/%s", vm);
	agent_key(a, okey, sizeof(okey), "vms/%s/owner", vm);
	agent_key(a, skey, sizeof(skey), "vms/%s/spec", vm);
	agent_key(a, dkey, sizeof(dkey), "dr/%s", vm);
	if (site_arg) {
		snprintf(home, sizeof(home), "%s", json_string_value(site_arg));
	} else {
		json_t *origin;
		if ((rc = store_get(a->etcd, origin_key, &origin, NULL, err)) < 0)
			return rc;
		snprintf(home, sizeof(home), "%s",
			 json_string_value(json_object_get(origin, "site")) ?: "");
		json_decref(origin);
		if (!home[0])
			return error_set(err, EINVAL, "VM %s did not fail over to site %s: name the "
					 "site to move it to ({\"site\": NAME})", vm, a->cfg.site);
	}
	if (!strcmp(home, a->cfg.site))
		return error_set(err, EINVAL, "VM %s is at site %s already", vm, home);
	char home_api[300];
	if ((rc = site_api(a, home, home_api, sizeof(home_api), err)) < 0)
		return rc;

	/* Nothing else moves this VM meanwhile. */
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	bool ok = v && v->proc.pid && !v->incoming && !v->replica && !v->migrating;
	struct vm_spec spec;
	struct vmproc proc;
	int64_t owner_rev = 0;
	if (ok) {
		v->migrating = true;
		spec = v->spec;
		proc = v->proc;
		owner_rev = v->owner_rev;
	}
	pthread_mutex_unlock(&a->lock);
	if (!ok)
		return error_set(err, EBUSY, "VM %s does not run on %s, or is moving", vm,
				 a->cfg.name);
	int64_t t0 = agent_now_ns();

	/* 1. The replication reversed. */
	json_t *knobs = json_pack("{s:i}", "epoch_ms", 200), *prot = NULL;
	rc = knobs ? protect_here(a, vm, home, knobs, &prot, err) : -ENOMEM;
	json_decref(knobs);
	json_decref(prot);
	if (rc < 0) {
		agent_set_migrating(a, vm, false);
		return error_wrap(err, "protecting %s at site %s", vm, home);
	}

	/* 2. In step: the bulk copy done and an epoch after it. */
	int64_t deadline = agent_now_ns() + (int64_t)FAILBACK_SYNC_MS * 1000000;
	for (;;) {
		json_t *st = NULL;
		struct error e2 = { 0 };
		rc = vmproc_call(&proc, "replicate-status", NULL, 5000, &st, &e2);
		const char *phase = json_string_value(json_object_get(st, "phase"));
		bool in_step = rc == 0 && phase && !strcmp(phase, "protecting") &&
			       json_integer_value(json_object_get(st, "epoch")) >= 2;
		bool failed = rc == 0 && phase && strcmp(phase, "protecting") &&
			      strcmp(phase, "bulk");
		if (failed)
			rc = error_set(err, EIO, "the replication home ended (%s): %s", phase,
				       json_string_value(json_object_get(st, "error")) ?: "");
		else if (rc < 0)
			rc = error_set(err, e2.code, "%s", e2.msg);
		json_decref(st);
		if (in_step)
			break;
		if (rc == 0 && agent_now_ns() > deadline)
			rc = error_set(err, ETIMEDOUT, "the replication home was not in step after "
				       "%d s", FAILBACK_SYNC_MS / 1000);
		if (rc < 0) {
			undo_protection(a, vm, home_api, &proc);
			agent_set_migrating(a, vm, false);
			return error_wrap(err, "failing %s back to %s", vm, home);
		}
		usleep(100000);
	}
	int64_t t_sync = agent_now_ns();

	/* 3. The last epoch: the guest stays paused once home has it. */
	json_t *final = json_pack("{s:b}", "final", 1), *last = NULL;
	rc = final ? vmproc_call(&proc, "replicate-stop", final, 120000, &last, err) : -ENOMEM;
	json_decref(final);
	uint64_t epoch = (uint64_t)json_integer_value(json_object_get(last, "epoch"));
	json_decref(last);
	if (rc < 0) {
		undo_protection(a, vm, home_api, &proc);
		agent_set_migrating(a, vm, false);
		return error_wrap(err, "handing %s over to %s", vm, home);
	}

	/* 4. This site gives it up: the owner record (the fencing token),
	 * then the spec, so that home can see it gone. */
	struct error e2 = { 0 };
	rc = store_cas_delete(a->etcd, okey, owner_rev, err);
	if (rc == 0)
		store_delete(a->etcd, skey, &e2);

	/* 5. Home runs it. */
	json_t *fo_reply = NULL;
	if (rc == 0) {
		char path[200];
		json_t *body = json_object();
		snprintf(path, sizeof(path), "/v1/replicas/%s/failover", vm);
		rc = body ? site_call(a, home_api, "POST", path, body, 60000, &fo_reply, err)
			  : -ENOMEM;
		json_decref(body);
		struct error e4 = { 0 };
		if (rc < 0 && site_runs_vm(a, home, vm, NULL, 0, &e4) != 0) {
			/* Home may run it (the answer was lost) or cannot say:
			 * never two, so it stays paused here for the operator. */
			error_wrap(err, "site %s did not answer whether it took %s over: the VM is "
				   "left paused on %s (resume it there only if %s does not run it)",
				   home, vm, a->cfg.name, home);
			agent_set_migrating(a, vm, false);
			json_decref(fo_reply);
			return rc;
		}
		if (rc < 0) {
			error_wrap(err, "site %s did not take %s over", home, vm);
			/* Ours again, as it was, and running. */
			struct error e3 = { 0 };
			own_here(a, &spec, &e3);
		}
	}
	if (rc < 0) {
		vmproc_call(&proc, "resume", NULL, 5000, NULL, &e2);
		undo_protection(a, vm, home_api, &proc);
		agent_set_migrating(a, vm, false);
		return rc;
	}
	/* Home runs it: the paused VMM here goes, with this site's records. */
	kill_local(a, vm, false);
	store_delete(a->etcd, dkey, &e2);
	store_delete(a->etcd, origin_key, &e2);
	const char *home_host = json_string_value(json_object_get(fo_reply, "host"));
	double sync_s = (double)(t_sync - t0) / 1e9, total_s = (double)(agent_now_ns() - t0) / 1e9;
	log_info("ternd %s: %s failed back to site %s (%s) at epoch %llu in %.2f s (in step "
		 "after %.2f s)", a->cfg.name, vm, home, home_host ? home_host : "?",
		 (unsigned long long)epoch, total_s, sync_s);
	*reply = json_pack("{s:s, s:s, s:s?, s:I, s:f, s:f}", "vm", vm, "site", home, "host",
			   home_host, "epoch", (json_int_t)epoch, "seconds", total_s,
			   "sync_seconds", sync_s);
	json_decref(fo_reply);
	return 0;
}

int agent_dr_register(struct agent *a, struct error *err)
{
	static const struct {
		const char *method, *pattern;
		rest_handler_fn fn;
	} routes[] = {
		{ "GET", "/v1/sites", get_sites },
		{ "PUT", "/v1/sites/{}", put_site },
		{ "POST", "/v1/vms/{}/protect", protect },
		{ "POST", "/v1/internal/replica", start_standby },
		{ "GET", "/v1/internal/dr/{}", local_dr_status },
		{ "GET", "/v1/dr", dr_status },
		{ "POST", "/v1/replicas/{}/failover", failover },
		{ "POST", "/v1/replicas/{}/drop", drop_standby },
		{ "POST", "/v1/vms/{}/failback", failback },
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (rest_route(a->rest, routes[i].method, routes[i].pattern, routes[i].fn, a) < 0)
			return error_set(err, ENOSPC, "too many REST routes");
	return 0;
}
