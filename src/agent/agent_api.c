/* agent_api.c: the REST API every agent serves (docs/cluster.md, "REST
 * API"). Reads come from etcd, so any agent answers for the whole
 * cluster; an order for a VM goes to the agent of the host that owns it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cluster_view.h"
#include "agent/rest.h"
#include "agent/rules.h"
#include "agent/store.h"
#include "cluster/etcd.h"
#include "cluster/balance.h"
#include "cluster/placement.h"
#include "util/log.h"

#define INCOMING_START_MS 30000

int agent_call(struct agent *a, const char *api, const char *method, const char *path,
	       json_t *body, int timeout_ms, json_t **reply, struct error *err);
int agent_migrate_start(struct agent *a, const char *vm, const char *to, const char *reason,
			struct error *err);

static json_t *host_json(const struct cluster_view *cv, size_t h)
{
	const struct cl_host *host = &cv->st.hosts[h];
	uint64_t mem = 0;
	uint32_t cpu = 0;
	json_t *vms = json_array();
	for (size_t v = 0; v < cv->st.n_vms; v++) {
		if (cv->st.vms[v].host != (int)h)
			continue;
		mem += cv->st.vms[v].mem_bytes;
		cpu += cv->st.vms[v].cpu_milli;
		json_array_append_new(vms, json_string(cv->st.vms[v].name));
	}
	return json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:f, s:o}", "name", host->name,
			 "ip", cv->host_ip[h], "api", cv->host_api[h], "schedulable",
			 host->schedulable, "cpu_milli", (json_int_t)host->cpu_milli,
			 "mem_bytes", (json_int_t)host->mem_bytes, "cpu_used_milli", (json_int_t)cpu,
			 "mem_used_bytes", (json_int_t)mem,
			 "cpu_util", cl_host_cpu_util(&cv->st, (int)h), "vms", vms);
}

static json_t *vm_json(const struct cluster_view *cv, size_t v)
{
	const struct cl_vm *vm = &cv->st.vms[v];
	const char *state = !cv->vm_owned[v] ? "pending" : cv->vm_migrating[v] ? "migrating" :
			    !strcmp(cv->vm_owner_state[v], "start") ? "starting" : "running";
	return json_pack("{s:s, s:s?, s:s, s:I, s:i, s:I, s:I, s:I, s:I, s:I}", "name", vm->name,
			 "host", vm->host >= 0 ? cv->st.hosts[vm->host].name : NULL,
			 "state", state, "mem_bytes", (json_int_t)vm->mem_bytes,
			 "cpus", (int)vm->vcpus, "cpu_milli", (json_int_t)vm->cpu_milli,
			 "dirty_bytes_s", (json_int_t)vm->dirty_bytes_s,
			 "disk_bytes_s", (json_int_t)cv->vm_disk_bytes_s[v],
			 "net_bytes_s", (json_int_t)cv->vm_net_bytes_s[v],
			 "owner_revision", (json_int_t)cv->vm_owner_rev[v]);
}

static int get_host(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct agent *a = opaque;
	json_t *vms = json_array();
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++) {
		struct agent_vm *v = &a->vms[i];
		if (v->used)
			json_array_append_new(vms, json_pack("{s:s, s:i, s:b, s:b, s:I, s:I}",
				"name", v->spec.name, "pid", (int)v->proc.pid, "incoming", v->incoming,
				"migrating", v->migrating, "cpu_milli", (json_int_t)v->proc.cpu_milli,
				"owner_revision", (json_int_t)v->owner_rev));
	}
	char lease[32];
	snprintf(lease, sizeof(lease), "%lld", (long long)a->lease);
	*reply = json_pack("{s:s, s:s, s:s, s:b, s:b, s:o}", "name", a->cfg.name, "ip", a->cfg.ip,
			   "lease", lease, "fenced", a->fenced, "controller", a->is_controller,
			   "vms", vms);
	pthread_mutex_unlock(&a->lock);
	return *reply ? 0 : error_set(err, ENOMEM, "out of memory");
}

static int get_hosts(void *opaque, const struct rest_request *req, json_t **reply,
		     struct error *err)
{
	struct cluster_view cv;
	int rc = cluster_view_read(opaque, &cv, err);
	if (rc < 0)
		return rc;
	json_t *list = json_array();
	for (size_t h = 0; h < cv.st.n_hosts; h++)
		json_array_append_new(list, host_json(&cv, h));
	*reply = json_pack("{s:o, s:f}", "hosts", list, "imbalance", cl_imbalance(&cv.st));
	cluster_view_free(&cv);
	return 0;
}

static int get_vms(void *opaque, const struct rest_request *req, json_t **reply,
		   struct error *err)
{
	struct cluster_view cv;
	int rc = cluster_view_read(opaque, &cv, err);
	if (rc < 0)
		return rc;
	json_t *list = json_array();
	for (size_t v = 0; v < cv.st.n_vms; v++)
		json_array_append_new(list, vm_json(&cv, v));
	*reply = json_pack("{s:o}", "vms", list);
	cluster_view_free(&cv);
	return 0;
}

int agent_cluster_json(struct agent *a, json_t **out, struct error *err)
{
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	json_t *hosts = json_array(), *vms = json_array();
	for (size_t h = 0; h < cv.st.n_hosts; h++)
		json_array_append_new(hosts, host_json(&cv, h));
	for (size_t v = 0; v < cv.st.n_vms; v++)
		json_array_append_new(vms, vm_json(&cv, v));
	*out = json_pack("{s:o, s:f, s:o}", "hosts", hosts, "imbalance", cl_imbalance(&cv.st),
			 "vms", vms);
	cluster_view_free(&cv);
	return *out ? 0 : error_set(err, ENOMEM, "out of memory");
}

static int get_vm(void *opaque, const struct rest_request *req, json_t **reply,
		  struct error *err)
{
	struct cluster_view cv;
	int rc = cluster_view_read(opaque, &cv, err);
	if (rc < 0)
		return rc;
	int v = cluster_view_find_vm(&cv, req->params[0]);
	if (v < 0)
		rc = error_set(err, ENOENT, "no VM %s in the cluster", req->params[0]);
	else
		*reply = vm_json(&cv, (size_t)v);
	cluster_view_free(&cv);
	return rc;
}

static int create_vm(void *opaque, const struct rest_request *req, json_t **reply,
		     struct error *err)
{
	struct agent *a = opaque;
	struct vm_spec spec;
	int rc = vm_spec_from_json(req->body, &spec, err);
	if (rc < 0)
		return rc;
	if (access(spec.kernel, R_OK) < 0 || (spec.initrd[0] && access(spec.initrd, R_OK) < 0))
		return error_set(err, EINVAL, "VM %s: the kernel or initrd cannot be read here "
				 "(%s)", spec.name, strerror(errno));
	char key[300];
	agent_key(a, key, sizeof(key), "vms/%s/spec", spec.name);
	json_t *j = vm_spec_to_json(&spec);
	int64_t rev = 0;
	rc = j ? store_create(a->etcd, key, j, 0, NULL, &rev, err) : -ENOMEM;
	json_decref(j);
	if (rc == -EEXIST)
		return error_set(err, EEXIST, "a VM called %s exists already", spec.name);
	if (rc < 0)
		return rc;
	log_info("ternd %s: VM %s created (revision %lld); the controller places it", a->cfg.name,
		 spec.name, (long long)rev);
	*reply = json_pack("{s:s, s:s}", "name", spec.name, "state", "pending");
	return 0;
}

static int delete_vm(void *opaque, const struct rest_request *req, json_t **reply,
		     struct error *err)
{
	struct agent *a = opaque;
	char key[300];
	agent_key(a, key, sizeof(key), "vms/%s/spec", req->params[0]);
	int rc = etcd_delete(a->etcd, key, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return error_set(err, ENOENT, "no VM %s in the cluster", req->params[0]);
	log_info("ternd %s: VM %s deleted: its host stops it", a->cfg.name, req->params[0]);
	*reply = json_pack("{s:s, s:s}", "name", req->params[0], "state", "stopping");
	return 0;
}

/* The owner's agent runs the migration (agent_migrate_start checks the
 * destination); others pass the order on. */
static int migrate_vm(void *opaque, const struct rest_request *req, json_t **reply,
		      struct error *err)
{
	struct agent *a = opaque;
	const char *vm = req->params[0];
	const char *to = json_string_value(json_object_get(req->body, "to"));
	if (!to)
		return error_set(err, EINVAL, "migrate needs {\"to\": \"HOST\"}");
	char host[CL_NAME_MAX], api[64];
	int rc = agent_find_owner(a, vm, host, api, err);
	if (rc < 0)
		return rc;
	if (strcmp(host, a->cfg.name)) {
		char path[200];
		snprintf(path, sizeof(path), "/v1/vms/%s/migrate", vm);
		return agent_call(a, api, "POST", path, req->body, 30000, reply, err);
	}
	const char *reason = json_string_value(json_object_get(req->body, "reason"));
	rc = agent_migrate_start(a, vm, to, reason ? reason : "operator's order", err);
	if (rc < 0)
		return rc;
	*reply = json_pack("{s:s, s:s, s:s, s:s}", "name", vm, "from", a->cfg.name, "to", to,
			   "state", "migrating");
	return 0;
}

/* A free TCP port on ip, as the kernel picks one. */
static int free_port(const char *ip, struct error *err)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_errno(err, errno, "cannot create a socket");
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int rc = 0;
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		rc = error_set(err, EINVAL, "%s is not an IPv4 address", ip);
	else if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		 getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		rc = error_errno(err, errno, "cannot find a free port on %s", ip);
	close(fd);
	return rc < 0 ? rc : ntohs(sa.sin_port);
}

int agent_start_waiting_vmm(struct agent *a, const struct vm_spec *spec, bool replica,
			    char *uri, size_t uri_size, struct error *err)
{
	/* The table slot is taken before the VMM starts (which takes a
	 * while), so a second request for the same VM meanwhile is refused
	 * instead of starting a second VMM. */
	pthread_mutex_lock(&a->lock);
	bool busy = a->fenced || agent_find_vm(a, spec->name);
	struct agent_vm *v = busy ? NULL : agent_new_vm(a);
	if (v) {
		v->spec = *spec;
		v->starting = true;
		v->replica = replica;
		v->incoming = !replica;
	}
	pthread_mutex_unlock(&a->lock);
	if (busy)
		return error_set(err, EBUSY, "host %s cannot take %s now (fenced, or it has a VMM "
				 "for it already)", a->cfg.name, spec->name);
	if (!v)
		return error_set(err, ENOSPC, "host %s runs %d VMMs already", a->cfg.name,
				 AGENT_MAX_VMS);
	struct vmproc proc;
	int port = free_port(a->cfg.ip, err);
	int rc = port;
	if (port >= 0) {
		snprintf(uri, uri_size, "tcp:%s:%d", a->cfg.ip, port);
		struct vmproc_env env;
		char run_dir[300];
		agent_vmproc_env(a, &env, run_dir, sizeof(run_dir));
		rc = replica ? vmproc_start_replica(&proc, &env, spec, uri, INCOMING_START_MS, err)
			     : vmproc_start(&proc, &env, spec, uri, INCOMING_START_MS, err);
	}
	pthread_mutex_lock(&a->lock);
	/* The host may have fenced itself meanwhile, which frees every slot. */
	bool kept = v->used && v->starting && !a->fenced && !strcmp(v->spec.name, spec->name);
	if (kept && rc >= 0) {
		v->proc = proc;
		v->starting = false;
		v->incoming_since_ns = agent_now_ns();
	} else if (kept) {
		v->used = false;
	}
	pthread_mutex_unlock(&a->lock);
	if (rc >= 0 && !kept) {
		vmproc_kill(&proc);
		rc = error_set(err, EBUSY, "host %s fenced itself while %s's VMM started",
			       a->cfg.name, spec->name);
	}
	return rc < 0 ? rc : 0;
}

/* POST /v1/internal/incoming-cancel {vm}: the source gave up before its
 * migration began; the VMM waiting for it goes (only one still waiting:
 * never a VM already handed over). */
static int incoming_cancel(void *opaque, const struct rest_request *req, json_t **reply,
			   struct error *err)
{
	struct agent *a = opaque;
	const char *vm = json_string_value(json_object_get(req->body, "vm"));
	if (!vm)
		return error_set(err, EINVAL, "incoming-cancel needs \"vm\"");
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	bool waiting = v && v->incoming && !v->starting;
	if (waiting) {
		log_info("ternd %s: the migration of %s to here was given up: stopping its "
			 "incoming VMM", a->cfg.name, vm);
		vmproc_kill(&v->proc);
		v->used = false;
	}
	pthread_mutex_unlock(&a->lock);
	*reply = json_pack("{s:b}", "stopped", waiting);
	return 0;
}

static int incoming(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct vm_spec spec;
	char uri[96];
	int rc = vm_spec_from_json(json_object_get(req->body, "spec"), &spec, err);
	if (rc < 0 || (rc = agent_start_waiting_vmm(opaque, &spec, false, uri, sizeof(uri),
						    err)) < 0)
		return rc;
	*reply = json_pack("{s:s}", "uri", uri);
	return 0;
}

static int drain(void *opaque, const struct rest_request *req, json_t **reply,
		 struct error *err)
{
	struct agent *a = opaque;
	const char *host = req->params[0];
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	int h = cl_host_find(&cv.st, host);
	struct cl_policy pol;
	cl_policy_default(&pol);
	struct cl_plan plan = { 0 };
	if (h < 0)
		rc = error_set(err, ENOENT, "no host %s in the cluster", host);
	else if (!cv.st.hosts[h].schedulable)
		rc = error_set(err, EALREADY, "host %s is drained already", host);
	else
		rc = cl_drain_plan(&cv.st, &pol, h, &plan, err);
	json_t *moves = json_array();
	for (size_t i = 0; rc == 0 && i < plan.n; i++)
		json_array_append_new(moves, json_pack("{s:s, s:s, s:s}", "vm",
			cv.st.vms[plan.d[i].vm].name, "to", cv.st.hosts[plan.d[i].to].name,
			"reason", plan.d[i].reason));
	cl_plan_free(&plan);
	cluster_view_free(&cv);
	if (rc == 0) {
		char key[300];
		agent_key(a, key, sizeof(key), "cordon/%s", host);
		json_t *rec = json_pack("{s:s, s:b}", "by", a->cfg.name, "drain", 1);
		rc = rec ? store_put(a->etcd, key, rec, 0, err) : -ENOMEM;
		json_decref(rec);
	}
	if (rc < 0) {
		json_decref(moves);
		return rc;
	}
	log_info("ternd %s: host %s drained: unschedulable; the controller moves its %zu VMs",
		 a->cfg.name, host, json_array_size(moves));
	*reply = json_pack("{s:s, s:b, s:o}", "host", host, "schedulable", 0, "planned", moves);
	return 0;
}

static int undrain(void *opaque, const struct rest_request *req, json_t **reply,
		   struct error *err)
{
	struct agent *a = opaque;
	char key[300];
	agent_key(a, key, sizeof(key), "cordon/%s", req->params[0]);
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	bool known = cl_host_find(&cv.st, req->params[0]) >= 0;
	cluster_view_free(&cv);
	if (!known)
		return error_set(err, ENOENT, "no host %s in the cluster", req->params[0]);
	rc = etcd_delete(a->etcd, key, err);
	if (rc < 0)
		return rc;
	*reply = json_pack("{s:s, s:b}", "host", req->params[0], "schedulable", 1);
	return 0;
}

/* GET: the plan only; POST: the plan, carried out. */
static int balance_now(void *opaque, const struct rest_request *req, json_t **reply,
		       struct error *err)
{
	struct agent *a = opaque;
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	struct cl_policy pol;
	cl_policy_default(&pol);
	struct cl_plan plan = { 0 };
	rc = cl_balance_plan(&cv.st, &pol, &plan, err);
	json_t *moves = json_array();
	bool run = !strcmp(req->method, "POST");
	for (size_t i = 0; rc == 0 && i < plan.n; i++) {
		const struct cl_decision *d = &plan.d[i];
		if (d->kind != CL_MOVE)
			continue;
		json_t *m = json_pack("{s:s, s:s, s:s, s:f, s:f, s:s}", "vm", cv.st.vms[d->vm].name,
				      "from", cv.st.hosts[d->from].name, "to", cv.st.hosts[d->to].name,
				      "gain", d->gain, "cost_s", d->cost_s, "reason", d->reason);
		if (run && agent_order_move(a, &cv, d, "balancing on request") < 0)
			json_object_set_new(m, "ordered", json_false());
		json_array_append_new(moves, m);
	}
	if (rc == 0)
		*reply = json_pack("{s:s, s:f, s:f, s:o, s:b}", "summary", plan.summary,
				   "imbalance_before", plan.imbalance_before, "imbalance_after",
				   plan.imbalance_after, "moves", moves, "dry_run", !run);
	else
		json_decref(moves);
	cl_plan_free(&plan);
	cluster_view_free(&cv);
	return rc;
}

/* Moves carried out one after the other: the consolidation plan orders
 * them so that every state in between keeps capacity and rules, which
 * running them at once would not. */
struct move_sequence {
	struct agent *a;
	size_t n;
	struct { char vm[CL_NAME_MAX], to[CL_NAME_MAX], reason[256]; } m[];
};

static void *run_sequence(void *arg)
{
	struct move_sequence *seq = arg;
	struct agent *a = seq->a;
	for (size_t i = 0; i < seq->n && !a->stop; i++) {
		struct cluster_view cv;
		struct error err = { 0 };
		if (cluster_view_read(a, &cv, &err) < 0)
			break;
		int v = cluster_view_find_vm(&cv, seq->m[i].vm);
		int to = cl_host_find(&cv.st, seq->m[i].to);
		if (v >= 0 && to >= 0 && cv.st.vms[v].host >= 0 && cv.st.vms[v].host != to) {
			struct cl_decision d = { .kind = CL_MOVE, .vm = v, .from = cv.st.vms[v].host,
						 .to = to };
			snprintf(d.reason, sizeof(d.reason), "%s", seq->m[i].reason);
			agent_order_move(a, &cv, &d, "consolidating");
		}
		cluster_view_free(&cv);
		/* Until it runs there (or 10 min: a failed move does not stop the rest). */
		for (int t = 0; t < 6000 && !a->stop; t++) {
			usleep(100000);
			if (cluster_view_read(a, &cv, &err) < 0)
				continue;
			v = cluster_view_find_vm(&cv, seq->m[i].vm);
			to = cl_host_find(&cv.st, seq->m[i].to);
			bool there = v < 0 || (cv.st.vms[v].host == to && !cv.vm_migrating[v]);
			bool failed = v >= 0 && !cv.vm_migrating[v] && t > 50 && cv.st.vms[v].host != to;
			cluster_view_free(&cv);
			if (there || failed)
				break;
		}
	}
	free(seq);
	return NULL;
}

/* GET: the plan; POST: the plan, carried out in order. */
static int consolidate(void *opaque, const struct rest_request *req, json_t **reply,
		       struct error *err)
{
	struct agent *a = opaque;
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	struct cl_policy pol;
	cl_policy_default(&pol);
	struct cl_plan plan = { 0 };
	rc = cl_consolidate_plan(&cv.st, &pol, &plan, err);
	json_t *moves = json_array(), *off = json_array();
	size_t n_moves = 0, before = 0;
	for (size_t h = 0; h < cv.st.n_hosts; h++) {
		bool used = false;
		for (size_t v = 0; v < cv.st.n_vms; v++)
			used |= cv.st.vms[v].host == (int)h;
		before += used;
	}
	struct move_sequence *seq = NULL;
	if (rc == 0 && !strcmp(req->method, "POST")) {
		seq = calloc(1, sizeof(*seq) + plan.n * sizeof(seq->m[0]));
		if (!seq)
			rc = error_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; rc == 0 && i < plan.n; i++) {
		const struct cl_decision *d = &plan.d[i];
		if (d->kind == CL_POWER_OFF) {
			json_array_append_new(off, json_string(cv.st.hosts[d->from].name));
			continue;
		}
		if (d->kind != CL_MOVE)
			continue;
		json_array_append_new(moves, json_pack("{s:s, s:s, s:s, s:s}", "vm",
			cv.st.vms[d->vm].name, "from", cv.st.hosts[d->from].name, "to",
			cv.st.hosts[d->to].name, "reason", d->reason));
		if (seq) {
			snprintf(seq->m[n_moves].vm, CL_NAME_MAX, "%s", cv.st.vms[d->vm].name);
			snprintf(seq->m[n_moves].to, CL_NAME_MAX, "%s", cv.st.hosts[d->to].name);
			snprintf(seq->m[n_moves].reason, 256, "%s", d->reason);
		}
		n_moves++;
	}
	if (rc == 0)
		*reply = json_pack("{s:s, s:I, s:I, s:O, s:O, s:b}", "summary", plan.summary,
				   "hosts_before", (json_int_t)before,
				   "hosts_after", (json_int_t)(before - json_array_size(off)),
				   "moves", moves, "power_off", off, "dry_run", seq == NULL);
	json_decref(moves);
	json_decref(off);
	cl_plan_free(&plan);
	cluster_view_free(&cv);
	if (seq && rc == 0 && n_moves) {
		seq->a = a;
		seq->n = n_moves;
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		int e = pthread_create(&t, &attr, run_sequence, seq);
		pthread_attr_destroy(&attr);
		if (e) {
			free(seq);
			json_decref(*reply);
			*reply = NULL;
			return error_errno(err, e, "cannot start the consolidation");
		}
	} else {
		free(seq);
	}
	return rc;
}

int agent_list_records(struct agent *a, const char *what, json_t **array, struct error *err)
{
	char prefix[128];
	agent_key(a, prefix, sizeof(prefix), "%s/", what);
	struct store_list l;
	int rc = store_list(a->etcd, prefix, &l, err);
	if (rc < 0)
		return rc;
	*array = json_array();
	for (size_t i = 0; i < l.n; i++)
		if (l.items[i].value)
			json_array_append(*array, l.items[i].value);
	store_list_free(&l);
	return *array ? 0 : error_set(err, ENOMEM, "out of memory");
}

/* {field: [the records under what/]} */
static int list_records(struct agent *a, const char *what, const char *field, json_t **reply,
			struct error *err)
{
	json_t *list;
	int rc = agent_list_records(a, what, &list, err);
	if (rc < 0)
		return rc;
	*reply = json_pack("{s:o}", field, list);
	return *reply ? 0 : error_set(err, ENOMEM, "out of memory");
}

static int get_rules(void *opaque, const struct rest_request *req, json_t **reply,
		     struct error *err)
{
	return list_records(opaque, "rules", "rules", reply, err);
}

/* Creates or replaces a rule, if the cluster can keep it (cl_check_rules
 * on the cluster as it is, with the rule): a rule no placement can keep
 * is refused, naming why. VMs that break it now are moved by the
 * controller. */
static int put_rule(void *opaque, const struct rest_request *req, json_t **reply,
		    struct error *err)
{
	struct agent *a = opaque;
	enum cl_rule_kind kind;
	int rc = rule_check_json(req->body, &kind, err);
	if (rc < 0)
		return rc;
	const char *name = json_string_value(json_object_get(req->body, "name"));
	struct cluster_view cv;
	if ((rc = cluster_view_read(a, &cv, err)) < 0)
		return rc;
	/* The view with this rule in place of any of the same name. */
	char key[300], prefix[128];
	agent_key(a, key, sizeof(key), "rules/%s", name);
	agent_key(a, prefix, sizeof(prefix), "rules/");
	struct store_item *items = calloc(cv.rules.n + 1, sizeof(*items));
	struct store_list with = { .items = items };
	if (items) {
		for (size_t i = 0; i < cv.rules.n; i++)
			if (strcmp(cv.rules.items[i].key, key))
				items[with.n++] = cv.rules.items[i];      /* borrowed */
		items[with.n++] = (struct store_item){ .key = key, .value = req->body };
		free(cv.st.rules);
		cv.st.rules = NULL;
		cv.st.n_rules = 0;
	}
	if (!items || rules_load(&cv, &with, prefix) < 0) {
		free(items);
		cluster_view_free(&cv);
		return error_set(err, ENOMEM, "out of memory");
	}
	free(items);
	/* Counted by name too: members not created yet need hosts as well. */
	unsigned usable = 0;
	for (size_t h = 0; h < cv.st.n_hosts; h++)
		usable += cv.st.hosts[h].alive && cv.st.hosts[h].schedulable;
	size_t named = json_array_size(json_object_get(req->body, "vms"));
	struct cl_policy pol;
	cl_policy_default(&pol);
	if (kind == CL_VM_ANTI_AFFINITY && named > usable)
		rc = error_set(err, EINVAL, "rule '%s' (anti-affinity): %zu VMs must run on different "
			       "hosts, but only %u hosts are alive and schedulable", name, named,
			       usable);
	else
		rc = cl_check_rules(&cv.st, &pol, err);
	cluster_view_free(&cv);
	if (rc < 0)
		return rc;
	json_t *rec = json_deep_copy(req->body);
	rc = rec ? store_put(a->etcd, key, rec, 0, err) : -ENOMEM;
	json_decref(rec);
	if (rc < 0)
		return rc;
	log_info("ternd %s: rule %s (%s) set", a->cfg.name, name, rule_kind_name(kind));
	*reply = json_deep_copy(req->body);
	return 0;
}

static int delete_rule(void *opaque, const struct rest_request *req, json_t **reply,
		       struct error *err)
{
	struct agent *a = opaque;
	char key[300];
	agent_key(a, key, sizeof(key), "rules/%s", req->params[0]);
	int rc = etcd_delete(a->etcd, key, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return error_set(err, ENOENT, "no rule %s", req->params[0]);
	*reply = json_pack("{s:s}", "deleted", req->params[0]);
	return 0;
}

static int get_decisions(void *opaque, const struct rest_request *req, json_t **reply,
			 struct error *err)
{
	return list_records(opaque, "decisions", "decisions", reply, err);
}

static int config(void *opaque, const struct rest_request *req, json_t **reply,
		  struct error *err)
{
	struct agent *a = opaque;
	char key[256];
	agent_key(a, key, sizeof(key), "config");
	if (!strcmp(req->method, "PUT")) {
		json_t *b = json_object_get(req->body, "balance");
		if (!json_is_boolean(b) || json_object_size(req->body) != 1)
			return error_set(err, EINVAL, "config takes {\"balance\": true|false}");
		json_t *rec = json_pack("{s:O}", "balance", b);
		int rc = rec ? store_put(a->etcd, key, rec, 0, err) : -ENOMEM;
		json_decref(rec);
		if (rc < 0)
			return rc;
		log_info("ternd %s: automatic balancing %s", a->cfg.name,
			 json_is_true(b) ? "on" : "off");
	}
	struct store_list l;
	int rc = store_list(a->etcd, key, &l, err);
	if (rc < 0)
		return rc;
	const struct store_item *it = store_find(&l, key);
	json_t *b = it ? json_object_get(it->value, "balance") : NULL;
	*reply = json_pack("{s:b}", "balance", b ? json_is_true(b) : a->cfg.balance);
	store_list_free(&l);
	return 0;
}

int agent_api_register(struct agent *a, struct error *err)
{
	static const struct {
		const char *method, *pattern;
		rest_handler_fn fn;
	} routes[] = {
		{ "GET", "/v1/host", get_host },
		{ "GET", "/v1/hosts", get_hosts },
		{ "POST", "/v1/hosts/{}/drain", drain },
		{ "POST", "/v1/hosts/{}/undrain", undrain },
		{ "GET", "/v1/vms", get_vms },
		{ "POST", "/v1/vms", create_vm },
		{ "GET", "/v1/vms/{}", get_vm },
		{ "DELETE", "/v1/vms/{}", delete_vm },
		{ "POST", "/v1/vms/{}/migrate", migrate_vm },
		{ "POST", "/v1/internal/incoming", incoming },
		{ "POST", "/v1/internal/incoming-cancel", incoming_cancel },
		{ "GET", "/v1/cluster/balance", balance_now },
		{ "POST", "/v1/cluster/balance", balance_now },
		{ "GET", "/v1/cluster/decisions", get_decisions },
		{ "GET", "/v1/rules", get_rules },
		{ "POST", "/v1/rules", put_rule },
		{ "DELETE", "/v1/rules/{}", delete_rule },
		{ "GET", "/v1/cluster/consolidate", consolidate },
		{ "POST", "/v1/cluster/consolidate", consolidate },
		{ "GET", "/v1/cluster/config", config },
		{ "PUT", "/v1/cluster/config", config },
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (rest_route(a->rest, routes[i].method, routes[i].pattern, routes[i].fn, a) < 0)
			return error_set(err, ENOSPC, "too many REST routes");
	return 0;
}
