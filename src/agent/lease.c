/* lease.c: the host's registration in etcd and its lease, and fencing.
 *
 * The host record and every VM owner record this host holds are bound to
 * one lease. The lease thread renews it every quarter TTL; if no renewal
 * succeeded for 3/4 of the TTL, the host kills its VMs before etcd can
 * expire the lease (which is when the controller may restart them
 * elsewhere): a host cut off from etcd never runs a VM another host may
 * be starting. The margin (1/4 TTL) covers clock rate differences and a
 * kill that takes time. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/store.h"
#include "cluster/etcd.h"
#include "util/log.h"

static json_t *host_record(const struct agent *a)
{
	char lease[32];
	snprintf(lease, sizeof(lease), "%lld", (long long)a->lease);
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:i}", "name", a->cfg.name,
			 "site", a->cfg.site, "ip", a->cfg.ip, "api", a->cfg.tcp,
			 "cpu_milli", (json_int_t)a->cfg.cpu_milli,
			 "mem_bytes", (json_int_t)a->cfg.mem_bytes, "lease", lease,
			 "lease_ttl_s", (int)a->cfg.lease_ttl_s);
}

/* A new lease, and the host record under it; refused if another live
 * agent has registered this name. */
int agent_register(struct agent *a, struct error *err)
{
	int64_t t0 = agent_now_ns(), granted = 0;
	int rc = etcd_lease_grant(a->etcd, a->cfg.lease_ttl_s, &a->lease, &granted, err);
	if (rc)
		return error_wrap(err, "granting the host lease");
	char key[256];
	agent_key(a, key, sizeof(key), "hosts/%s", a->cfg.name);
	json_t *rec = host_record(a);
	int64_t rev;
	rc = rec ? store_create(a->etcd, key, rec, a->lease, NULL, &rev, err) : -ENOMEM;
	json_decref(rec);
	if (rc == -EEXIST) {
		struct error e2 = { 0 };
		etcd_lease_revoke(a->etcd, a->lease, &e2);
		a->lease = 0;
		return error_set(err, EEXIST, "host %s is already registered in etcd by a live "
				 "agent (its lease has not expired)", a->cfg.name);
	}
	if (rc)
		return error_wrap(err, "registering host %s", a->cfg.name);
	pthread_mutex_lock(&a->lock);
	a->lease_ok_ns = t0;
	a->fenced = false;
	pthread_mutex_unlock(&a->lock);
	log_info("ternd %s: registered under lease %lld (%lld s)", a->cfg.name,
		 (long long)a->lease, (long long)granted);
	return 0;
}

static void fence(struct agent *a, const char *why)
{
	pthread_mutex_lock(&a->lock);
	bool already = a->fenced;
	a->fenced = true;
	pthread_mutex_unlock(&a->lock);
	if (already)
		return;
	log_error("ternd %s: %s: fencing: every VM here is killed, as the controller may "
		  "restart them elsewhere", a->cfg.name, why);
	agent_kill_all_vms(a, "fenced");
}

/* Samples every local VMM (outside the lock: each answers within a
 * second) and publishes the host's load for the controller. */
static void publish_load(struct agent *a)
{
	struct vmproc procs[AGENT_MAX_VMS];
	unsigned n = 0;
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++)
		if (a->vms[i].used && a->vms[i].proc.pid && !a->vms[i].incoming &&
		    !a->vms[i].replica)
			procs[n++] = a->vms[i].proc;
	pthread_mutex_unlock(&a->lock);
	int64_t now = agent_now_ns();
	for (unsigned i = 0; i < n; i++)
		vmproc_sample_load(&procs[i], now);

	json_t *vms = json_object();
	uint64_t used_cpu = 0, used_mem = 0;
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < n; i++) {
		struct agent_vm *v = agent_find_vm(a, procs[i].name);
		if (!v || v->proc.pid != procs[i].pid)
			continue;
		v->proc.last = procs[i].last;
		v->proc.cpu_milli = procs[i].cpu_milli;
		v->proc.dirty_bytes_s = procs[i].dirty_bytes_s;
		v->proc.disk_bytes_s = procs[i].disk_bytes_s;
		v->proc.net_bytes_s = procs[i].net_bytes_s;
		used_cpu += v->proc.cpu_milli;
		used_mem += (uint64_t)v->spec.memory_mib << 20;
		json_object_set_new(vms, v->spec.name, json_pack("{s:I, s:I, s:I, s:I}",
			"cpu_milli", (json_int_t)v->proc.cpu_milli,
			"dirty_bytes_s", (json_int_t)v->proc.dirty_bytes_s,
			"disk_bytes_s", (json_int_t)v->proc.disk_bytes_s,
			"net_bytes_s", (json_int_t)v->proc.net_bytes_s));
	}
	pthread_mutex_unlock(&a->lock);
	json_t *load = json_pack("{s:I, s:I, s:o}", "cpu_milli", (json_int_t)used_cpu,
				 "mem_bytes", (json_int_t)used_mem, "vms", vms);
	char key[256];
	agent_key(a, key, sizeof(key), "load/%s", a->cfg.name);
	struct error err = { 0 };
	if (load && store_put(a->etcd, key, load, a->lease, &err) < 0)
		log_debug("ternd: publishing the load: %s", err.msg);
	json_decref(load);
}

void *agent_lease_main(void *arg)
{
	struct agent *a = arg;
	const int64_t ttl_ns = (int64_t)a->cfg.lease_ttl_s * 1000000000;
	const int64_t period_ns = ttl_ns / 4;
	int64_t next = agent_now_ns();
	while (!a->stop) {
		int64_t now = agent_now_ns();
		if (now < next) {
			usleep(20000);
			continue;
		}
		next = now + period_ns;
		pthread_mutex_lock(&a->lock);
		bool fenced = a->fenced;
		int64_t ok_ns = a->lease_ok_ns;
		pthread_mutex_unlock(&a->lock);
		struct error err = { 0 };
		if (fenced) {
			/* Back in touch with etcd: a new lease, a fresh start. */
			if (agent_register(a, &err) == 0)
				log_info("ternd %s: registered again after fencing", a->cfg.name);
			continue;
		}
		int64_t ttl = 0;
		int rc = etcd_lease_keepalive(a->etcd, a->lease, &ttl, &err);
		if (rc == 0) {
			pthread_mutex_lock(&a->lock);
			if (!a->fenced)
				a->lease_ok_ns = now;
			pthread_mutex_unlock(&a->lock);
			publish_load(a);
			continue;
		}
		if (rc == -ENOENT) {
			fence(a, "the host lease expired");
			continue;
		}
		log_warn("ternd %s: cannot renew the host lease (%s); fencing in %.1f s unless a "
			 "renewal succeeds", a->cfg.name, err.msg,
			 (double)(ok_ns + ttl_ns * 3 / 4 - agent_now_ns()) / 1e9);
		next = agent_now_ns() + period_ns / 4;
	}
	return NULL;
}

/* No I/O here: a renewal blocked on an unreachable etcd must not delay
 * the fencing. */
void *agent_watchdog_main(void *arg)
{
	struct agent *a = arg;
	const int64_t deadline_ns = (int64_t)a->cfg.lease_ttl_s * 1000000000 * 3 / 4;
	while (!a->stop) {
		usleep(50000);
		pthread_mutex_lock(&a->lock);
		bool late = !a->fenced && agent_now_ns() - a->lease_ok_ns > deadline_ns;
		pthread_mutex_unlock(&a->lock);
		if (late)
			fence(a, "the host lease could not be renewed for 3/4 of its TTL");
	}
	return NULL;
}
