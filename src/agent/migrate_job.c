/* migrate_job.c: live-migrates a VM of this host to another host, handing
 * its ownership over in etcd at the switch-over (docs/cluster.md):
 *
 *  1. a migration record (on this host's lease) marks the VM as moving
 *     (one job per VM: a second one fails here);
 *  2. the destination's agent starts `tern vm run --incoming` for the VM
 *     (POST /v1/internal/incoming) and answers with its address; if the
 *     migration cannot start, that VMM is stopped again (incoming-cancel);
 *  3. the local VMM migrates with the switch-over gate; at the gate, with
 *     the guest paused and the destination ready, the owner record is
 *     rewritten to the destination (compare-and-swap on the revision this
 *     host holds, bound to the destination's lease): if that succeeds the
 *     switch-over goes on (migrate-continue), else it is cancelled and the
 *     guest resumes here;
 *  4. if the migration fails after the handover (the destination died
 *     after GO), the record is swapped back, or, if that fails, the VM
 *     here is killed: it never runs on two hosts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cluster_view.h"
#include "agent/http_client.h"
#include "agent/migrate_progress.h"
#include "agent/store.h"
#include "util/log.h"

#define INCOMING_TIMEOUT_MS 30000
#define MIGRATION_TIMEOUT_S 600

json_t *agent_owner_record(const struct agent *a, const char *host, const char *state);

struct job {
	struct agent *a;
	char vm[CL_NAME_MAX];
	char to[CL_NAME_MAX];
	char to_api[64];
	int64_t to_lease;
	char reason[256];
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The agent at api ("IP:PORT"), with the cluster token. */
int agent_call(struct agent *a, const char *api, const char *method, const char *path,
	       json_t *body, int timeout_ms, json_t **reply, struct error *err);

int agent_call(struct agent *a, const char *api, const char *method, const char *path,
	       json_t *body, int timeout_ms, json_t **reply, struct error *err)
{
	if (!api[0])
		return error_set(err, EHOSTUNREACH, "that host's agent serves no TCP API");
	char where[80];
	snprintf(where, sizeof(where), "http://%s", api);
	return http_json(where, a->token, method, path, body, timeout_ms, reply, err);
}

static const char *status_phase(json_t *st)
{
	const char *p = json_string_value(json_object_get(st, "phase"));
	return p ? p : "?";
}

/* Runs the migration; 0 when the VM runs on the destination. */
static int run_job(struct job *j, struct error *err)
{
	struct agent *a = j->a;
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, j->vm);
	struct vm_spec spec;
	struct vmproc proc;
	int64_t owner_rev = 0;
	bool ok = v && !v->incoming && v->proc.pid;
	if (ok) {
		spec = v->spec;
		proc = v->proc;
		owner_rev = v->owner_rev;
	}
	pthread_mutex_unlock(&a->lock);
	if (!ok)
		return error_set(err, ENOENT, "VM %s does not run on %s", j->vm, a->cfg.name);

	char owner_key[300], mig_key[300];
	agent_key(a, owner_key, sizeof(owner_key), "vms/%s/owner", j->vm);
	agent_key(a, mig_key, sizeof(mig_key), "migrations/%s", j->vm);

	/* 1. The migration record: a second job for this VM stops here. */
	json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:s}", "vm", j->vm, "from", a->cfg.name,
				"to", j->to, "started_ms", (json_int_t)wall_ms(), "reason", j->reason);
	int64_t rev;
	int rc = rec ? store_create(a->etcd, mig_key, rec, a->lease, NULL, &rev, err) : -ENOMEM;
	if (rc < 0) {
		json_decref(rec);
		return rc == -EEXIST ? error_set(err, EBUSY, "VM %s is already migrating", j->vm)
				     : rc;
	}
	struct mig_progress prog;
	mig_progress_init(&prog, rec, mig_key);

	/* 2. The destination VMM. */
	json_t *body = json_pack("{s:o}", "spec", vm_spec_to_json(&spec));
	json_t *reply = NULL;
	rc = body ? agent_call(a, j->to_api, "POST", "/v1/internal/incoming", body,
			       INCOMING_TIMEOUT_MS, &reply, err) : -ENOMEM;
	json_decref(body);
	char uri[128] = "";
	if (rc == 0)
		snprintf(uri, sizeof(uri), "%s",
			 json_string_value(json_object_get(reply, "uri")) ?: "");
	json_decref(reply);
	if (rc == 0 && !uri[0])
		rc = error_set(err, EPROTO, "%s answered no incoming address", j->to);
	if (rc < 0) {
		struct error e2 = { 0 };
		store_delete(a->etcd, mig_key, &e2);
		mig_progress_free(&prog);
		return error_wrap(err, "preparing %s to receive %s", j->to, j->vm);
	}

	/* 3. The migration, through the gate. */
	json_t *args = json_pack("{s:s, s:b}", "to", uri, "switchover_gate", 1);
	json_t *st = NULL;
	rc = args ? vmproc_call(&proc, "migrate", args, 10000, &st, err) : -ENOMEM;
	json_decref(args);
	json_decref(st);
	st = NULL;
	if (rc < 0) {
		/* Never started: the destination's VMM would wait in vain. */
		json_t *cancel = json_pack("{s:s}", "vm", j->vm), *ignored = NULL;
		struct error e2 = { 0 };
		if (!cancel || agent_call(a, j->to_api, "POST", "/v1/internal/incoming-cancel",
					  cancel, 5000, &ignored, &e2) < 0)
			log_warn("ternd %s: telling %s to drop its VMM for %s: %s", a->cfg.name,
				 j->to, j->vm, cancel ? e2.msg : "out of memory");
		json_decref(cancel);
		json_decref(ignored);
	}
	bool handed_over = false;
	int64_t handover_rev = 0;
	char phase[32] = "failed";
	char last_error[512] = "";
	int64_t deadline = agent_now_ns() + (int64_t)MIGRATION_TIMEOUT_S * 1000000000;
	while (rc == 0) {
		struct error e2 = { 0 };
		json_decref(st);
		st = NULL;
		if (vmproc_call(&proc, "migrate-status", NULL, 5000, &st, &e2) < 0) {
			/* The source VMM exits about a second after completing. */
			snprintf(phase, sizeof(phase), "%s", handed_over ? "completed?" : "failed");
			snprintf(last_error, sizeof(last_error), "%s", e2.msg);
			break;
		}
		snprintf(phase, sizeof(phase), "%s", status_phase(st));
		mig_progress_update(a, &prog, st);
		if (!strcmp(phase, "switchover") && !handed_over) {
			json_t *owner = agent_owner_record(a, j->to, "running");
			if (owner)
				json_object_set_new(owner, "moved_ms", json_integer(wall_ms()));
			int hc = owner ? store_cas_put(a->etcd, owner_key, owner, j->to_lease, owner_rev,
						       NULL, &handover_rev, &e2) : -ENOMEM;
			json_decref(owner);
			if (hc == 0) {
				handed_over = true;
				log_info("ternd %s: VM %s handed over to %s (owner revision %lld -> "
					 "%lld)", a->cfg.name, j->vm, j->to, (long long)owner_rev,
					 (long long)handover_rev);
				vmproc_call(&proc, "migrate-continue", NULL, 5000, NULL, &e2);
			} else {
				log_error("ternd %s: VM %s: the handover to %s failed (%s): "
					  "cancelling the migration", a->cfg.name, j->vm, j->to, e2.msg);
				snprintf(last_error, sizeof(last_error), "the handover in etcd failed: %.400s",
					 e2.msg);
				vmproc_call(&proc, "migrate-cancel", NULL, 5000, NULL, &e2);
			}
		}
		if (!strcmp(phase, "completed") || !strcmp(phase, "failed") ||
		    !strcmp(phase, "cancelled") || !strcmp(phase, "unknown")) {
			const char *e = json_string_value(json_object_get(st, "error"));
			if (e && !last_error[0])
				snprintf(last_error, sizeof(last_error), "%s", e);
			break;
		}
		if (agent_now_ns() > deadline) {
			vmproc_call(&proc, "migrate-cancel", NULL, 5000, NULL, &e2);
			snprintf(last_error, sizeof(last_error), "not done after %d s: cancelled",
				 MIGRATION_TIMEOUT_S);
		}
		usleep(20000);
	}
	json_decref(st);
	bool done = handed_over && (!strcmp(phase, "completed") || !strcmp(phase, "completed?"));

	/* 4. Afterwards. */
	struct error e3 = { 0 };
	if (done) {
		/* The source VMM exits by itself; reap it and forget the VM. */
		for (int i = 0; i < 100 && !vmproc_reap(&proc); i++)
			usleep(50000);
		if (proc.pid)
			vmproc_kill(&proc);
		pthread_mutex_lock(&a->lock);
		struct agent_vm *left = agent_find_vm(a, j->vm);
		if (left)
			left->used = false;
		pthread_mutex_unlock(&a->lock);
	} else if (handed_over) {
		/* The guest resumed here (or is paused, outcome unknown), but
		 * etcd says the destination owns it: take it back, or kill it. */
		json_t *owner = agent_owner_record(a, a->cfg.name, "running");
		int64_t back_rev = 0;
		bool back = owner && !strcmp(phase, "failed") &&
			    store_cas_put(a->etcd, owner_key, owner, a->lease, handover_rev, NULL,
					  &back_rev, &e3) == 0;
		json_decref(owner);
		pthread_mutex_lock(&a->lock);
		struct agent_vm *left = agent_find_vm(a, j->vm);
		if (left && back) {
			left->owner_rev = back_rev;
		} else if (left) {
			log_error("ternd %s: VM %s: migration %s after the handover and the owner "
				  "record could not be taken back: killing it here", a->cfg.name,
				  j->vm, phase);
			vmproc_kill(&left->proc);
			left->used = false;
		}
		pthread_mutex_unlock(&a->lock);
	}
	store_delete(a->etcd, mig_key, &e3);
	char result[600] = "completed";
	if (!done)
		snprintf(result, sizeof(result), "%s: %s", phase,
			 last_error[0] ? last_error : rc < 0 ? err->msg : "(no reason given)");
	mig_progress_finish(a, &prog, result);
	mig_progress_free(&prog);
	if (done)
		return 0;
	if (rc < 0)
		return rc;
	return error_set(err, EIO, "migrating %s to %s ended %s: %s", j->vm, j->to, phase,
			 last_error[0] ? last_error : "(no reason given)");
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct error err = { 0 };
	int64_t t0 = agent_now_ns();
	int rc = run_job(j, &err);
	agent_set_migrating(j->a, j->vm, false);
	if (rc == 0)
		log_info("ternd %s: migrated %s to %s in %.2f s (%s)", j->a->cfg.name, j->vm, j->to,
			 (double)(agent_now_ns() - t0) / 1e9, j->reason);
	else
		log_error("ternd %s: %s", j->a->cfg.name, err.msg);
	free(j);
	return NULL;
}

/* Starts migrating vm (running here) to host `to`, in a thread of its
 * own; checks first what can be checked at once. */
int agent_migrate_start(struct agent *a, const char *vm, const char *to, const char *reason,
			struct error *err);

int agent_migrate_start(struct agent *a, const char *vm, const char *to, const char *reason,
			struct error *err)
{
	if (!strcmp(to, a->cfg.name))
		return error_set(err, EINVAL, "VM %s already runs on %s", vm, to);
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	struct job *j = calloc(1, sizeof(*j));
	int h = -1;
	for (size_t i = 0; i < cv.st.n_hosts; i++)
		if (!strcmp(cv.st.hosts[i].name, to))
			h = (int)i;
	if (!j)
		rc = error_set(err, ENOMEM, "out of memory");
	else if (h < 0)
		rc = error_set(err, ENOENT, "no host %s in the cluster", to);
	else if (!cv.st.hosts[h].schedulable)
		rc = error_set(err, EBUSY, "host %s is drained (unschedulable)", to);
	if (rc == 0) {
		j->a = a;
		snprintf(j->vm, sizeof(j->vm), "%s", vm);
		snprintf(j->to, sizeof(j->to), "%s", to);
		snprintf(j->to_api, sizeof(j->to_api), "%s", cv.host_api[h]);
		snprintf(j->reason, sizeof(j->reason), "%s", reason);
		j->to_lease = cv.host_lease[h];
	}
	cluster_view_free(&cv);
	if (rc < 0) {
		free(j);
		return rc;
	}
	/* Marked at once, under the lock: the controller asks again each
	 * round until the VM has moved, and one job per VM is enough. */
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	bool here = v && !v->incoming && !v->replica && v->proc.pid;
	bool busy = v && v->migrating;
	if (here && !busy)
		v->migrating = true;
	pthread_mutex_unlock(&a->lock);
	if (!here || busy) {
		free(j);
		return here ? error_set(err, EBUSY, "VM %s is already migrating", vm)
			    : error_set(err, ENOENT, "VM %s does not run on %s", vm, a->cfg.name);
	}
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (rc) {
		agent_set_migrating(a, vm, false);
		free(j);
		return error_errno(err, rc, "cannot start a migration thread");
	}
	log_info("ternd %s: migrating %s to %s (%s)", a->cfg.name, vm, to, reason);
	return 0;
}
