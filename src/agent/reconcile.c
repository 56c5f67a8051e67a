/* reconcile.c: makes what runs on this host match what etcd says it owns.
 *
 * Every RECONCILE_MS: a VM whose owner record names this host in state
 * "start" is booted, and the record set to "running" by compare-and-swap
 * on the revision the controller wrote (if that fails, someone changed
 * it meanwhile, and the new VMM is killed); a VMM whose record is gone or
 * names another host is killed, unless it is a migration's destination
 * still waiting for the handover or the source of a migration under way;
 * a VM deleted by the operator is stopped; a VMM that exited gives its
 * record up (compare-and-swap delete), so the controller places it again.
 * Nothing happens while the host is fenced. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/store.h"
#include "util/log.h"

#define RECONCILE_MS 300
#define BOOT_TIMEOUT_MS 30000
/* A destination VMM whose migration never handed the VM over. */
#define INCOMING_MAX_S 600

struct agent_vm *agent_find_vm(struct agent *a, const char *name)
{
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++)
		if (a->vms[i].used && !strcmp(a->vms[i].spec.name, name))
			return &a->vms[i];
	return NULL;
}

void agent_set_migrating(struct agent *a, const char *vm, bool on)
{
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_find_vm(a, vm);
	if (v)
		v->migrating = on;
	pthread_mutex_unlock(&a->lock);
}

struct agent_vm *agent_new_vm(struct agent *a)
{
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++)
		if (!a->vms[i].used) {
			memset(&a->vms[i], 0, sizeof(a->vms[i]));
			a->vms[i].used = true;
			return &a->vms[i];
		}
	return NULL;
}

void agent_vmproc_env(const struct agent *a, struct vmproc_env *env, char *run_dir, size_t size)
{
	snprintf(run_dir, size, "%s/vms", a->cfg.state_dir);
	env->tern_binary = a->cfg.tern_binary;
	env->run_dir = run_dir;
	env->tls_dir = a->cfg.tls_dir[0] ? a->cfg.tls_dir : NULL;
	env->bridge = a->cfg.bridge[0] ? a->cfg.bridge : NULL;
}

void agent_kill_all_vms(struct agent *a, const char *why)
{
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++) {
		struct agent_vm *v = &a->vms[i];
		if (!v->used)
			continue;
		if (v->proc.pid)
			log_warn("ternd %s: killing VM %s (pid %d): %s", a->cfg.name, v->spec.name,
				 (int)v->proc.pid, why);
		vmproc_kill(&v->proc);
		v->used = false;
	}
	pthread_mutex_unlock(&a->lock);
}

static const char *owner_host(const struct store_item *owner)
{
	return owner ? json_string_value(json_object_get(owner->value, "host")) : NULL;
}

static const char *owner_state(const struct store_item *owner)
{
	const char *s = owner ? json_string_value(json_object_get(owner->value, "state")) : NULL;
	return s ? s : "";
}

json_t *agent_owner_record(const struct agent *a, const char *host, const char *state);

json_t *agent_owner_record(const struct agent *a, const char *host, const char *state)
{
	return json_pack("{s:s, s:s, s:s}", "host", host, "state", state, "by", a->cfg.name);
}

/* Boots the VM etcd just gave this host. Called without a->lock. */
static void boot(struct agent *a, const struct vm_spec *spec, const struct store_item *owner,
		 const char *owner_key)
{
	struct vmproc_env env;
	char run_dir[300];
	agent_vmproc_env(a, &env, run_dir, sizeof(run_dir));
	struct vmproc proc;
	struct error err = { 0 };
	log_info("ternd %s: starting VM %s (owner record revision %lld)", a->cfg.name, spec->name,
		 (long long)owner->mod_rev);
	if (vmproc_start(&proc, &env, spec, NULL, BOOT_TIMEOUT_MS, &err) < 0) {
		log_error("ternd %s: cannot start VM %s: %s; giving it back", a->cfg.name,
			  spec->name, err.msg);
		struct error e2 = { 0 };
		if (store_cas_delete(a->etcd, owner_key, owner->mod_rev, &e2) < 0)
			log_warn("ternd %s: giving VM %s back: %s", a->cfg.name, spec->name, e2.msg);
		return;
	}
	json_t *rec = agent_owner_record(a, a->cfg.name, "running");
	int64_t rev = 0;
	int rc = rec ? store_cas_put(a->etcd, owner_key, rec, a->lease, owner->mod_rev, NULL, &rev,
				     &err) : -ENOMEM;
	json_decref(rec);
	if (rc < 0) {
		log_error("ternd %s: VM %s: the owner record changed while it started (%s): "
			  "killing it here", a->cfg.name, spec->name, err.msg);
		vmproc_kill(&proc);
		return;
	}
	pthread_mutex_lock(&a->lock);
	struct agent_vm *v = agent_new_vm(a);
	if (v) {
		v->spec = *spec;
		v->proc = proc;
		v->owner_rev = rev;
	}
	pthread_mutex_unlock(&a->lock);
	if (!v) {
		log_error("ternd %s: more than %d VMs: killing %s", a->cfg.name, AGENT_MAX_VMS,
			  spec->name);
		vmproc_kill(&proc);
		store_cas_delete(a->etcd, owner_key, rev, &err);
		return;
	}
	log_info("ternd %s: VM %s runs (pid %d, owner revision %lld)", a->cfg.name, spec->name,
		 (int)proc.pid, (long long)rev);
}

static void reconcile_once(struct agent *a)
{
	char prefix[128], key[300];
	agent_key(a, prefix, sizeof(prefix), "vms/");
	struct store_list l;
	struct error err = { 0 };
	if (store_list(a->etcd, prefix, &l, &err) < 0) {
		log_debug("ternd %s: reading the VMs: %s", a->cfg.name, err.msg);
		return;
	}
	/* VMs this host should boot, collected under the lock, booted after. */
	struct { struct vm_spec spec; struct store_item owner; char key[300]; } to_boot[8];
	unsigned n_to_boot = 0;
	int64_t now = agent_now_ns();

	pthread_mutex_lock(&a->lock);
	if (a->fenced) {
		pthread_mutex_unlock(&a->lock);
		store_list_free(&l);
		return;
	}
	/* Every local VMM against its records. */
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++) {
		struct agent_vm *v = &a->vms[i];
		if (!v->used || v->starting)
			continue;
		snprintf(key, sizeof(key), "%s%s/spec", prefix, v->spec.name);
		const struct store_item *spec = store_find(&l, key);
		snprintf(key, sizeof(key), "%s%s/owner", prefix, v->spec.name);
		const struct store_item *owner = store_find(&l, key);
		const char *host = owner_host(owner);
		bool ours = host && !strcmp(host, a->cfg.name);
		bool gone = vmproc_reap(&v->proc);
		if (v->replica) {
			if (gone) {
				log_warn("ternd %s: the standby for %s exited (status %d)", a->cfg.name,
					 v->spec.name, v->proc.exit_status);
				v->used = false;
			}
			continue;       /* another site's VM: dr.c adopts it at failover */
		}
		if (v->incoming) {
			if (gone) {
				log_info("ternd %s: the incoming VMM for %s exited (status %d): the "
					 "migration did not hand it over", a->cfg.name, v->spec.name,
					 v->proc.exit_status);
				v->used = false;
			} else if (ours) {
				log_info("ternd %s: VM %s handed over to this host (owner revision "
					 "%lld)", a->cfg.name, v->spec.name, (long long)owner->mod_rev);
				v->incoming = false;
				v->owner_rev = owner->mod_rev;
			} else if (now - v->incoming_since_ns > (int64_t)INCOMING_MAX_S * 1000000000) {
				log_warn("ternd %s: the incoming VMM for %s waited %d s: killing it",
					 a->cfg.name, v->spec.name, INCOMING_MAX_S);
				vmproc_kill(&v->proc);
				v->used = false;
			}
			continue;
		}
		if (v->migrating)
			continue;       /* the migration job decides */
		if (gone) {
			log_warn("ternd %s: VM %s exited (status %d); giving it back to the "
				 "controller", a->cfg.name, v->spec.name, v->proc.exit_status);
			if (ours && store_cas_delete(a->etcd, key, owner->mod_rev, &err) < 0)
				log_warn("ternd %s: %s", a->cfg.name, err.msg);
			v->used = false;
			continue;
		}
		if (!spec) {
			log_info("ternd %s: VM %s was deleted: stopping it", a->cfg.name, v->spec.name);
			vmproc_stop(&v->proc, 5000);
			if (ours && store_cas_delete(a->etcd, key, owner->mod_rev, &err) < 0)
				log_warn("ternd %s: %s", a->cfg.name, err.msg);
			v->used = false;
			continue;
		}
		if (!ours) {
			log_error("ternd %s: VM %s runs here but etcd says %s%s owns it: killing it",
				  a->cfg.name, v->spec.name, host ? "host " : "nobody",
				  host ? host : "");
			vmproc_kill(&v->proc);
			v->used = false;
			continue;
		}
		v->owner_rev = owner->mod_rev;
	}
	/* Records naming this host with no VMM here. */
	for (size_t i = 0; i < l.n; i++) {
		const struct store_item *owner = &l.items[i];
		const char *rest = owner->key + strlen(prefix);
		const char *slash = strchr(rest, '/');
		if (!slash || strcmp(slash, "/owner"))
			continue;
		const char *host = owner_host(owner);
		if (!host || strcmp(host, a->cfg.name))
			continue;
		char name[CL_NAME_MAX];
		snprintf(name, sizeof(name), "%.*s", (int)(slash - rest), rest);
		if (agent_find_vm(a, name))
			continue;
		snprintf(key, sizeof(key), "%s%s/spec", prefix, name);
		const struct store_item *spec = store_find(&l, key);
		if (!strcmp(owner_state(owner), "start") && spec && n_to_boot < 8) {
			struct error e2 = { 0 };
			if (vm_spec_from_json(spec->value, &to_boot[n_to_boot].spec, &e2) < 0) {
				log_error("ternd %s: VM %s: bad spec in etcd: %s", a->cfg.name, name,
					  e2.msg);
				continue;
			}
			to_boot[n_to_boot].owner = *owner;
			snprintf(to_boot[n_to_boot].key, sizeof(to_boot[n_to_boot].key), "%s", owner->key);
			n_to_boot++;
			continue;
		}
		/* Running here by the record, but not here: lost (the agent
		 * restarted, or a migration failed after the handover). */
		log_warn("ternd %s: etcd says VM %s runs here, but it does not: giving it back",
			 a->cfg.name, name);
		if (store_cas_delete(a->etcd, owner->key, owner->mod_rev, &err) < 0)
			log_warn("ternd %s: %s", a->cfg.name, err.msg);
	}
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < n_to_boot; i++)
		boot(a, &to_boot[i].spec, &to_boot[i].owner, to_boot[i].key);
	store_list_free(&l);
}

void *agent_reconcile_main(void *arg)
{
	struct agent *a = arg;
	while (!a->stop) {
		reconcile_once(a);
		for (int i = 0; i < RECONCILE_MS / 20 && !a->stop; i++)
			usleep(20000);
	}
	return NULL;
}
