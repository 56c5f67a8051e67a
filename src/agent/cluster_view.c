/* cluster_view.c: see cluster_view.h. */
#include "agent/cluster_view.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/rules.h"
#include "agent/vmproc.h"

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *tail_after(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(key, prefix, n) ? NULL : key + n;
}

static int64_t json_int64(json_t *o, const char *field)
{
	json_t *v = json_object_get(o, field);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

int cluster_view_find_vm(const struct cluster_view *cv, const char *name)
{
	for (size_t i = 0; i < cv->st.n_vms; i++)
		if (!strcmp(cv->st.vms[i].name, name))
			return (int)i;
	return -1;
}

static int find_host(const struct cluster_view *cv, const char *name)
{
	for (size_t i = 0; name && i < cv->st.n_hosts; i++)
		if (!strcmp(cv->st.hosts[i].name, name))
			return (int)i;
	return -1;
}

static int read_list(struct agent *a, const char *what, struct store_list *l, struct error *err)
{
	char prefix[256];
	agent_key(a, prefix, sizeof(prefix), "%s/", what);
	return store_list(a->etcd, prefix, l, err);
}

int cluster_view_read(struct agent *a, struct cluster_view *cv, struct error *err)
{
	memset(cv, 0, sizeof(*cv));
	int rc;
	if ((rc = read_list(a, "hosts", &cv->hosts, err)) ||
	    (rc = read_list(a, "load", &cv->load, err)) ||
	    (rc = read_list(a, "cordon", &cv->cordons, err)) ||
	    (rc = read_list(a, "vms", &cv->vms, err)) ||
	    (rc = read_list(a, "migrations", &cv->migrations, err)) ||
	    (rc = read_list(a, "rules", &cv->rules, err))) {
		cluster_view_free(cv);
		return rc;
	}
	size_t nh = cv->hosts.n, nv = 0;
	for (size_t i = 0; i < cv->vms.n; i++) {
		const char *slash = strrchr(cv->vms.items[i].key, '/');
		nv += slash && !strcmp(slash, "/spec");
	}
	cv->st.hosts = calloc(nh ? nh : 1, sizeof(*cv->st.hosts));
	cv->host_lease = calloc(nh ? nh : 1, sizeof(*cv->host_lease));
	cv->host_api = calloc(nh ? nh : 1, sizeof(*cv->host_api));
	cv->host_ip = calloc(nh ? nh : 1, sizeof(*cv->host_ip));
	cv->st.vms = calloc(nv ? nv : 1, sizeof(*cv->st.vms));
	cv->vm_owned = calloc(nv ? nv : 1, sizeof(*cv->vm_owned));
	cv->vm_owner_rev = calloc(nv ? nv : 1, sizeof(*cv->vm_owner_rev));
	cv->vm_owner_state = calloc(nv ? nv : 1, sizeof(*cv->vm_owner_state));
	cv->vm_migrating = calloc(nv ? nv : 1, sizeof(*cv->vm_migrating));
	cv->vm_disk_bytes_s = calloc(nv ? nv : 1, sizeof(*cv->vm_disk_bytes_s));
	cv->vm_net_bytes_s = calloc(nv ? nv : 1, sizeof(*cv->vm_net_bytes_s));
	if (!cv->st.hosts || !cv->host_lease || !cv->host_api || !cv->host_ip || !cv->st.vms ||
	    !cv->vm_owned || !cv->vm_owner_rev || !cv->vm_owner_state || !cv->vm_migrating ||
	    !cv->vm_disk_bytes_s || !cv->vm_net_bytes_s) {
		cluster_view_free(cv);
		return error_set(err, ENOMEM, "out of memory");
	}
	char prefix[128], key[300];
	agent_key(a, prefix, sizeof(prefix), "hosts/");
	for (size_t i = 0; i < nh; i++) {
		const struct store_item *it = &cv->hosts.items[i];
		const char *name = tail_after(it->key, prefix);
		if (!name || strchr(name, '/') || !it->value)
			continue;
		struct cl_host *h = &cv->st.hosts[cv->st.n_hosts];
		snprintf(h->name, sizeof(h->name), "%s", name);
		h->cpu_milli = (uint32_t)json_int64(it->value, "cpu_milli");
		h->mem_bytes = (uint64_t)json_int64(it->value, "mem_bytes");
		/* Loopback or a lab bridge; a real deployment would measure it. */
		h->link_bytes_s = 1000ull << 20;
		h->alive = true;
		agent_key(a, key, sizeof(key), "cordon/%s", name);
		h->schedulable = !store_find(&cv->cordons, key);
		cv->host_lease[cv->st.n_hosts] = it->lease;
		snprintf(cv->host_api[cv->st.n_hosts], sizeof(cv->host_api[0]), "%s",
			 json_string_value(json_object_get(it->value, "api")) ?: "");
		snprintf(cv->host_ip[cv->st.n_hosts], sizeof(cv->host_ip[0]), "%s",
			 json_string_value(json_object_get(it->value, "ip")) ?: "");
		cv->st.n_hosts++;
	}
	agent_key(a, prefix, sizeof(prefix), "vms/");
	for (size_t i = 0; i < cv->vms.n; i++) {
		const struct store_item *it = &cv->vms.items[i];
		const char *rest = tail_after(it->key, prefix);
		const char *slash = rest ? strchr(rest, '/') : NULL;
		if (!slash || strcmp(slash, "/spec") || !it->value)
			continue;
		size_t v = cv->st.n_vms;
		struct cl_vm *vm = &cv->st.vms[v];
		snprintf(vm->name, sizeof(vm->name), "%.*s", (int)(slash - rest), rest);
		vm->vcpus = (uint32_t)json_int64(it->value, "cpus");
		vm->mem_bytes = (uint64_t)json_int64(it->value, "memory_mib") << 20;
		vm->host = -1;
		snprintf(key, sizeof(key), "%s%s/owner", prefix, vm->name);
		const struct store_item *owner = store_find(&cv->vms, key);
		if (owner) {
			cv->vm_owned[v] = true;
			cv->vm_owner_rev[v] = owner->mod_rev;
			snprintf(cv->vm_owner_state[v], sizeof(cv->vm_owner_state[0]), "%s",
				 json_string_value(json_object_get(owner->value, "state")) ?: "");
			vm->host = find_host(cv, json_string_value(json_object_get(owner->value,
										  "host")));
			vm->last_moved_ms = json_int64(owner->value, "moved_ms");
		}
		agent_key(a, key, sizeof(key), "migrations/%s", vm->name);
		cv->vm_migrating[v] = store_find(&cv->migrations, key) != NULL;
		cv->st.n_vms++;
	}
	/* Measured load, per VM, as the owners' agents publish it. */
	for (size_t h = 0; h < cv->st.n_hosts; h++) {
		agent_key(a, key, sizeof(key), "load/%s", cv->st.hosts[h].name);
		const struct store_item *it = store_find(&cv->load, key);
		json_t *vms = it ? json_object_get(it->value, "vms") : NULL;
		const char *name;
		json_t *val;
		json_object_foreach(vms, name, val) {
			int v = cluster_view_find_vm(cv, name);
			if (v < 0 || cv->st.vms[v].host != (int)h)
				continue;
			cv->st.vms[v].cpu_milli = (uint32_t)json_int64(val, "cpu_milli");
			cv->st.vms[v].dirty_bytes_s = (uint64_t)json_int64(val, "dirty_bytes_s");
			cv->vm_disk_bytes_s[v] = (uint64_t)json_int64(val, "disk_bytes_s");
			cv->vm_net_bytes_s[v] = (uint64_t)json_int64(val, "net_bytes_s");
		}
	}
	agent_key(a, prefix, sizeof(prefix), "rules/");
	if (rules_load(cv, &cv->rules, prefix) < 0) {
		cluster_view_free(cv);
		return error_set(err, ENOMEM, "out of memory");
	}
	cv->st.now_ms = wall_ms();
	for (size_t v = 0; v < cv->st.n_vms; v++) {
		cv->st.migrations_in_flight += cv->vm_migrating[v];
		/* The planners' mark of a migration under way. */
		if (cv->vm_migrating[v])
			cv->st.vms[v].last_moved_ms = cv->st.now_ms + 1;
	}
	return 0;
}

void cluster_view_free(struct cluster_view *cv)
{
	free(cv->st.hosts);
	free(cv->st.vms);
	free(cv->st.rules);
	free(cv->host_lease);
	free(cv->host_api);
	free(cv->host_ip);
	free(cv->vm_owned);
	free(cv->vm_owner_rev);
	free(cv->vm_owner_state);
	free(cv->vm_migrating);
	free(cv->vm_disk_bytes_s);
	free(cv->vm_net_bytes_s);
	store_list_free(&cv->hosts);
	store_list_free(&cv->load);
	store_list_free(&cv->cordons);
	store_list_free(&cv->vms);
	store_list_free(&cv->migrations);
	store_list_free(&cv->rules);
	memset(cv, 0, sizeof(*cv));
}

int agent_find_owner(struct agent *a, const char *vm, char *host, char *api, struct error *err)
{
	struct cluster_view cv;
	int rc = cluster_view_read(a, &cv, err);
	if (rc < 0)
		return rc;
	int v = cluster_view_find_vm(&cv, vm);
	int h = v >= 0 ? cv.st.vms[v].host : -1;
	if (h >= 0) {
		snprintf(host, CL_NAME_MAX, "%s", cv.st.hosts[h].name);
		snprintf(api, 64, "%s", cv.host_api[h]);
	}
	cluster_view_free(&cv);
	if (v < 0)
		return error_set(err, ENOENT, "no VM %s at site %s", vm, a->cfg.site);
	if (h < 0)
		return error_set(err, EBUSY, "VM %s runs nowhere at site %s yet", vm, a->cfg.site);
	return 0;
}
