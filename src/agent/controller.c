/* controller.c: the cluster's controller, run by whichever agent holds
 * the controller key (created if absent, bound to its host lease: when
 * that host dies the key goes with the lease and another agent takes it
 * within a lease TTL). Every write the controller makes is guarded by its
 * key's create revision, so a controller that lost the key without
 * noticing cannot write.
 *
 * Each round it reads the cluster (hosts, their load and cordons, VMs and
 * owners) into a struct cl_state and places every VM without an owner
 * record: new VMs, and those of a host whose lease expired (its agent
 * fenced itself before that), which is HA restart; a compare-and-swap
 * on the owner record's absence makes each placement happen once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cluster_view.h"
#include "agent/store.h"
#include "cluster/balance.h"
#include "cluster/placement.h"
#include "util/log.h"

#define CONTROLLER_MS 500
/* Balancing looks at the load this often (the agents publish it every
 * quarter lease TTL). */
#define BALANCE_EVERY_ROUNDS 10

int agent_call(struct agent *a, const char *api, const char *method, const char *path,
	       json_t *body, int timeout_ms, json_t **reply, struct error *err);

json_t *agent_owner_record(const struct agent *a, const char *host, const char *state);

/* Decisions kept in etcd for operators (GET /v1/cluster/decisions). */
#define DECISIONS_KEPT 200

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Logged, and written under decisions/ (oldest dropped beyond
 * DECISIONS_KEPT), so that any agent can show them. */
static void log_decision(struct agent *a, const char *what, const char *reason)
{
	log_info("controller %s: %s: %s", a->cfg.name, what, reason);
	char prefix[128];
	agent_key(a, prefix, sizeof(prefix), "decisions/");
	json_t *rec = json_pack("{s:I, s:s, s:s, s:s}", "at_ms", (json_int_t)wall_ms(),
				"controller", a->cfg.name, "what", what, "reason", reason);
	struct error err = { 0 };
	if (rec && store_append(a->etcd, prefix, rec, DECISIONS_KEPT, &err) < 0)
		log_debug("controller %s: recording a decision: %s", a->cfg.name, err.msg);
	json_decref(rec);
}

/* The operator's switch for automatic balancing (PUT /v1/cluster/config),
 * else ternd's --no-balance. */
static bool balance_enabled(struct agent *a)
{
	char key[256];
	agent_key(a, key, sizeof(key), "config");
	json_t *config = NULL;
	struct error err = { 0 };
	bool on = a->cfg.balance;
	if (store_get(a->etcd, key, &config, NULL, &err) == 0) {
		json_t *v = json_object_get(config, "balance");
		if (json_is_boolean(v))
			on = json_is_true(v);
		json_decref(config);
	}
	return on;
}

/* Takes the controller key if free; checks it is still ours if held. */
static void elect(struct agent *a)
{
	char key[256];
	agent_key(a, key, sizeof(key), "controller");
	struct error err = { 0 };
	if (a->is_controller) {
		struct store_list l;
		if (store_list(a->etcd, key, &l, &err) < 0)
			return;         /* can't tell: the guard protects the writes */
		const struct store_item *it = store_find(&l, key);
		bool still = it && it->create_rev == a->controller_rev;
		store_list_free(&l);
		if (!still) {
			log_warn("controller %s: lost the controller key", a->cfg.name);
			a->is_controller = false;
		}
		return;
	}
	json_t *rec = json_pack("{s:s}", "host", a->cfg.name);
	int64_t rev = 0;
	int rc = rec ? store_create(a->etcd, key, rec, a->lease, NULL, &rev, &err) : -ENOMEM;
	json_decref(rec);
	if (rc == 0) {
		a->is_controller = true;
		a->controller_rev = rev;
		log_info("controller %s: this agent is the controller now (revision %lld)",
			 a->cfg.name, (long long)rev);
	}
}

static void place_unowned(struct agent *a, struct cluster_view *cv)
{
	struct cl_policy pol;
	cl_policy_default(&pol);
	char guard_key[256];
	agent_key(a, guard_key, sizeof(guard_key), "controller");
	struct store_guard guard = { guard_key, a->controller_rev };
	for (size_t i = 0; i < cv->st.n_vms; i++) {
		if (cv->st.vms[i].host >= 0 || cv->vm_owned[i])
			continue;
		struct cl_decision d;
		struct error err = { 0 };
		/* A protected VM may have failed over to its standby's site. */
		int may = agent_dr_may_place(a, cv->st.vms[i].name, &err);
		if (may <= 0) {
			if (err.code == EEXIST || a->controller_round % 20 == 1)
				log_decision(a, cv->st.vms[i].name, err.msg);
			continue;
		}
		if (cl_place(&cv->st, &pol, (int)i, &d, &err) < 0) {
			if (a->controller_round % 20 == 1)
				log_decision(a, cv->st.vms[i].name, err.msg);
			continue;
		}
		const char *host = cv->st.hosts[d.to].name;
		char key[300];
		agent_key(a, key, sizeof(key), "vms/%s/owner", cv->st.vms[i].name);
		json_t *rec = agent_owner_record(a, host, "start");
		int64_t rev = 0;
		int rc = rec ? store_create(a->etcd, key, rec, cv->host_lease[d.to], &guard, &rev,
					    &err) : -ENOMEM;
		json_decref(rec);
		if (rc < 0) {
			log_warn("controller %s: placing %s on %s: %s", a->cfg.name,
				 cv->st.vms[i].name, host, err.msg);
			continue;
		}
		char what[160];
		snprintf(what, sizeof(what), "place %s on %s (owner revision %lld)",
			 cv->st.vms[i].name, host, (long long)rev);
		log_decision(a, what, d.reason);
		/* The next VM sees this one where it goes. */
		cv->st.vms[i].host = d.to;
	}
}

/* Orders the owner of a VM to migrate it (cluster_view.h). */
int agent_order_move(struct agent *a, struct cluster_view *cv, const struct cl_decision *d,
		     const char *why)
{
	const struct cl_vm *vm = &cv->st.vms[d->vm];
	const char *to = cv->st.hosts[d->to].name;
	char path[200], reason[400];
	snprintf(path, sizeof(path), "/v1/vms/%s/migrate", vm->name);
	snprintf(reason, sizeof(reason), "%s: %s", why, d->reason);
	json_t *body = json_pack("{s:s, s:s}", "to", to, "reason", reason);
	json_t *reply = NULL;
	struct error err = { 0 };
	int rc = body ? agent_call(a, cv->host_api[vm->host], "POST", path, body, 30000, &reply,
				   &err) : -ENOMEM;
	json_decref(body);
	json_decref(reply);
	char what[3 * CL_NAME_MAX + 32];
	snprintf(what, sizeof(what), "move %s from %s to %s", vm->name,
		 cv->st.hosts[vm->host].name, to);
	if (rc < 0)
		log_warn("controller %s: %s failed: %s", a->cfg.name, what, err.msg);
	else
		log_decision(a, what, reason);
	return rc;
}

/* Drained hosts: their VMs go, max_concurrent at a time. */
static void drain_cordoned(struct agent *a, struct cluster_view *cv, const struct cl_policy *pol)
{
	unsigned slots = pol->max_concurrent > cv->st.migrations_in_flight ?
			 pol->max_concurrent - cv->st.migrations_in_flight : 0;
	for (size_t h = 0; h < cv->st.n_hosts && slots; h++) {
		if (cv->st.hosts[h].schedulable)
			continue;
		bool any = false;
		for (size_t v = 0; v < cv->st.n_vms; v++)
			any |= cv->st.vms[v].host == (int)h && !cv->vm_migrating[v];
		if (!any)
			continue;
		struct cl_plan plan = { 0 };
		struct error err = { 0 };
		if (cl_drain_plan(&cv->st, pol, (int)h, &plan, &err) < 0) {
			if (a->controller_round % 20 == 1)
				log_warn("controller %s: draining %s: %s", a->cfg.name,
					 cv->st.hosts[h].name, err.msg);
			continue;
		}
		for (size_t i = 0; i < plan.n && slots; i++) {
			if (plan.d[i].kind != CL_MOVE || cv->vm_migrating[plan.d[i].vm])
				continue;
			char why[120];
			snprintf(why, sizeof(why), "draining %s", cv->st.hosts[h].name);
			if (agent_order_move(a, cv, &plan.d[i], why) == 0) {
				cv->vm_migrating[plan.d[i].vm] = true;
				slots--;
			}
		}
		cl_plan_free(&plan);
	}
}

/* A VM that breaks a rule where it runs (a rule made after it was
 * placed) goes where cl_place, which keeps every rule, puts it: one move
 * a round, within the concurrency cap. */
static void enforce_rules(struct agent *a, struct cluster_view *cv, const struct cl_policy *pol)
{
	if (!cv->st.n_rules || cv->st.migrations_in_flight >= pol->max_concurrent)
		return;
	struct cl_layout l;
	struct error err = { 0 };
	if (cl_layout_init(&l, &cv->st, &err) < 0)
		return;
	for (size_t v = 0; v < cv->st.n_vms; v++) {
		int h = cv->st.vms[v].host;
		char why[200];
		if (h < 0 || cv->vm_migrating[v] ||
		    cl_layout_check(&l, pol, (int)v, h, CL_CHECK_SEPARATION | CL_CHECK_AFFINITY, why,
				    sizeof(why)))
			continue;
		struct cl_decision d;
		if (cl_place(&cv->st, pol, (int)v, &d, &err) < 0 || d.to == h) {
			if (a->controller_round % 20 == 1)
				log_decision(a, cv->st.vms[v].name, why);
			continue;
		}
		d.kind = CL_MOVE;
		d.from = h;
		char reason[300];
		snprintf(reason, sizeof(reason), "a rule is broken on %s (%s)", cv->st.hosts[h].name,
			 why);
		agent_order_move(a, cv, &d, reason);
		break;
	}
	cl_layout_free(&l);
}

static void balance(struct agent *a, struct cluster_view *cv, const struct cl_policy *pol)
{
	struct cl_plan plan = { 0 };
	struct error err = { 0 };
	if (cl_balance_plan(&cv->st, pol, &plan, &err) < 0) {
		log_warn("controller %s: balancing: %s", a->cfg.name, err.msg);
		return;
	}
	if (plan.n)
		log_decision(a, "balance", plan.summary);
	for (size_t i = 0; i < plan.n; i++)
		if (plan.d[i].kind == CL_MOVE && !cv->vm_migrating[plan.d[i].vm])
			agent_order_move(a, cv, &plan.d[i], "balancing");
	cl_plan_free(&plan);
}

void *agent_controller_main(void *arg)
{
	struct agent *a = arg;
	while (!a->stop) {
		pthread_mutex_lock(&a->lock);
		bool fenced = a->fenced;
		pthread_mutex_unlock(&a->lock);
		if (fenced) {
			a->is_controller = false;
		} else {
			elect(a);
			if (a->is_controller) {
				a->controller_round++;
				struct cluster_view cv;
				struct error err = { 0 };
				if (cluster_view_read(a, &cv, &err) == 0) {
					struct cl_policy pol;
					cl_policy_default(&pol);
					place_unowned(a, &cv);
					drain_cordoned(a, &cv, &pol);
					enforce_rules(a, &cv, &pol);
					if (a->controller_round % BALANCE_EVERY_ROUNDS == 0 &&
					    balance_enabled(a))
						balance(a, &cv, &pol);
					cluster_view_free(&cv);
				} else {
					log_warn("controller %s: reading the cluster: %s", a->cfg.name,
						 err.msg);
				}
			}
		}
		for (int i = 0; i < CONTROLLER_MS / 20 && !a->stop; i++)
			usleep(20000);
	}
	return NULL;
}
