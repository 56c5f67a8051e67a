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
	struct store_list l;
	int rc = store_list(a->etcd, key, &l, err);
	if (rc < 0)
		return rc;
	const struct store_item *it = store_find(&l, key);
	const char *api = it ? json_string_value(json_object_get(it->value, "api")) : NULL;
	if (api)
		snprintf(out, size, "%s", api);
	store_list_free(&l);
	return api ? 0 : error_set(err, ENOENT, "no site %s (tern site add %s --agent URL)", name,
				   name);
}

static int site_call(struct agent *a, const char *api, const char *method, const char *path,
		     json_t *body, int timeout_ms, json_t **reply, struct error *err)
{
	return http_json(api, a->token[0] ? a->token : NULL, method, path, body, timeout_ms, reply,
			 err);
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

/* POST /v1/vms/V/protect {site, epoch_ms, rpo_ms, sync}: at V's agent. */
static int protect(void *opaque, const struct rest_request *req, json_t **reply,
		   struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	const char *site = json_string_value(json_object_get(req->body, "site"));
	if (!site)
		return error_set(err, EINVAL, "protect needs {\"site\": NAME}");
	char host[CL_NAME_MAX], api[64], remote[300];
	int rc = agent_find_owner(a, vm, host, api, err);
	if (rc < 0)
		return rc;
	if (strcmp(host, a->cfg.name)) {
		char path[200];
		snprintf(path, sizeof(path), "/v1/vms/%s/protect", vm);
		return agent_call(a, api, "POST", path, req->body, 60000, reply, err);
	}
	if ((rc = site_api(a, site, remote, sizeof(remote), err)) < 0)
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
	static const char *const knobs[] = { "epoch_ms", "rpo_ms", "sync" };
	for (unsigned i = 0; i < 3; i++) {
		json_t *k = json_object_get(req->body, knobs[i]);
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
	struct agent *a = opaque;
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

/* POST /v1/replicas/V/failover {force}: at the standby's site. */
static int failover(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	char key[300];
	agent_key(a, key, sizeof(key), "replicas/%s", vm);
	struct store_list l;
	int rc = store_list(a->etcd, key, &l, err);
	if (rc < 0)
		return rc;
	const struct store_item *it = store_find(&l, key);
	json_t *rec = it ? json_deep_copy(it->value) : NULL;
	int64_t rec_rev = it ? it->mod_rev : 0;
	store_list_free(&l);
	if (!rec)
		return error_set(err, ENOENT, "no standby for %s at site %s", vm, a->cfg.site);
	const char *holder = json_string_value(json_object_get(rec, "host"));
	if (holder && strcmp(holder, a->cfg.name)) {
		struct cluster_view cv;
		if ((rc = cluster_view_read(a, &cv, err)) < 0)
			goto out;
		int h = cl_host_find(&cv.st, holder);
		char api[64];
		snprintf(api, sizeof(api), "%s", h >= 0 ? cv.host_api[h] : "");
		cluster_view_free(&cv);
		char path[200];
		snprintf(path, sizeof(path), "/v1/replicas/%s/failover", vm);
		rc = h < 0 ? error_set(err, EHOSTUNREACH, "the standby's host %s is gone", holder)
			   : agent_call(a, api, "POST", path, req->body, 60000, reply, err);
		goto out;
	}
	/* Fencing: the VM's own site must not run it any more. */
	const char *from = json_string_value(json_object_get(rec, "from_site"));
	bool force = json_is_true(json_object_get(req->body, "force"));
	char remote[300];
	struct error e2 = { 0 };
	json_t *there = NULL;
	char path[200];
	snprintf(path, sizeof(path), "/v1/vms/%s", vm);
	int seen = site_api(a, from ? from : "?", remote, sizeof(remote), &e2);
	if (seen == 0)
		seen = site_call(a, remote, "GET", path, NULL, PEER_TIMEOUT_MS, &there, &e2);
	const char *state = json_string_value(json_object_get(there, "state"));
	if (seen == 0 && state && strcmp(state, "pending")) {
		rc = error_set(err, EBUSY, "VM %s still runs at site %s (on %s, %s): fail over only "
			       "when that site is lost", vm, from,
			       json_string_value(json_object_get(there, "host")) ?: "?", state);
		json_decref(there);
		goto out;
	}
	json_decref(there);
	if (seen < 0 && seen != -ENOENT && !force) {
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
	/* An ordinary VM of this site from now on: its spec, and this host
	 * as its owner, both created only if absent. */
	struct vm_spec spec;
	vm_spec_from_json(json_object_get(rec, "spec"), &spec, &e2);
	char skey[300], okey[300];
	agent_key(a, skey, sizeof(skey), "vms/%s/spec", vm);
	agent_key(a, okey, sizeof(okey), "vms/%s/owner", vm);
	json_t *sj = vm_spec_to_json(&spec);
	json_t *oj = agent_owner_record(a, a->cfg.name, "running");
	int64_t spec_rev = 0, owner_rev = 0;
	struct error e3 = { 0 };
	int src = sj ? store_create(a->etcd, skey, sj, 0, NULL, &spec_rev, &e3) : -ENOMEM;
	int orc = oj ? store_create(a->etcd, okey, oj, a->lease, NULL, &owner_rev, err) : -ENOMEM;
	json_decref(sj);
	json_decref(oj);
	if (src < 0 && src != -EEXIST)
		log_warn("ternd %s: recording %s's spec: %s", a->cfg.name, vm, e3.msg);
	pthread_mutex_lock(&a->lock);
	v = agent_find_vm(a, vm);
	if (v && orc == 0) {
		v->replica = false;
		v->owner_rev = owner_rev;
	}
	pthread_mutex_unlock(&a->lock);
	if (orc < 0) {
		/* Someone at this site owns a VM of that name: never two. */
		log_error("ternd %s: %s failed over but cannot be owned here (%s): killing it",
			  a->cfg.name, vm, err->msg);
		pthread_mutex_lock(&a->lock);
		v = agent_find_vm(a, vm);
		if (v) {
			vmproc_kill(&v->proc);
			v->used = false;
		}
		pthread_mutex_unlock(&a->lock);
		rc = orc;
		goto out;
	}
	store_cas_delete(a->etcd, key, rec_rev, &e3);
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
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (rest_route(a->rest, routes[i].method, routes[i].pattern, routes[i].fn, a) < 0)
			return error_set(err, ENOSPC, "too many REST routes");
	return 0;
}
