/* rules.c: affinity and anti-affinity rules as the cluster stores them
 * (rules/NAME: {"name", "kind", "vms": [...], "hosts": [...]}), turned
 * into the struct cl_rule of src/cluster/model.h. A rule may name VMs and
 * hosts that do not exist (yet): they are left out until they do. */
#include "agent/rules.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cluster_view.h"
#include "agent/vmproc.h"

static const char *const kind_names[] = {
	[CL_VM_AFFINITY] = "affinity",
	[CL_VM_ANTI_AFFINITY] = "anti-affinity",
	[CL_HOST_AFFINITY] = "host-affinity",
	[CL_HOST_ANTI_AFFINITY] = "host-anti-affinity",
};

const char *rule_kind_name(enum cl_rule_kind k)
{
	return (unsigned)k < 4 ? kind_names[k] : "?";
}

static int names_of(json_t *r, const char *field, size_t max, struct error *err)
{
	json_t *list = json_object_get(r, field);
	if (!list)
		return 0;
	if (!json_is_array(list) || json_array_size(list) > max)
		return error_set(err, EINVAL, "a rule's \"%s\" is a list of at most %zu names",
				 field, max);
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		if (!json_is_string(v) || !vm_name_valid(json_string_value(v)))
			return error_set(err, EINVAL, "a rule's \"%s\" holds something that is not "
					 "a name (a-z, 0-9, -)", field);
	}
	return (int)json_array_size(list);
}

int rule_check_json(json_t *r, enum cl_rule_kind *kind, struct error *err)
{
	if (!json_is_object(r))
		return error_set(err, EINVAL, "a rule is a JSON object");
	const char *key;
	json_t *v;
	json_object_foreach(r, key, v) {
		if (strcmp(key, "name") && strcmp(key, "kind") && strcmp(key, "vms") &&
		    strcmp(key, "hosts"))
			return error_set(err, EINVAL, "a rule has no field \"%s\" (name, kind, vms, "
					 "hosts)", key);
	}
	const char *name = json_string_value(json_object_get(r, "name"));
	if (!name || !vm_name_valid(name))
		return error_set(err, EINVAL, "a rule needs a \"name\" (a-z, 0-9, -)");
	const char *k = json_string_value(json_object_get(r, "kind"));
	int found = -1;
	for (int i = 0; k && i < 4; i++)
		if (!strcmp(k, kind_names[i]))
			found = i;
	if (found < 0)
		return error_set(err, EINVAL, "rule %s: \"kind\" must be affinity, anti-affinity, "
				 "host-affinity or host-anti-affinity", name);
	*kind = (enum cl_rule_kind)found;
	int n_vms = names_of(r, "vms", CL_RULE_MAX_MEMBERS, err);
	if (n_vms < 0)
		return n_vms;
	int n_hosts = names_of(r, "hosts", CL_RULE_MAX_MEMBERS, err);
	if (n_hosts < 0)
		return n_hosts;
	bool host_rule = *kind == CL_HOST_AFFINITY || *kind == CL_HOST_ANTI_AFFINITY;
	if (host_rule ? (n_vms < 1 || n_hosts < 1) : (n_vms < 2 || n_hosts > 0))
		return error_set(err, EINVAL, "rule %s (%s) needs %s", name, k,
				 host_rule ? "\"vms\" and \"hosts\", one name at least each" :
				 "two \"vms\" at least, and no \"hosts\"");
	return 0;
}

int rules_load(struct cluster_view *cv, const struct store_list *rules, const char *prefix)
{
	cv->st.rules = calloc(rules->n ? rules->n : 1, sizeof(*cv->st.rules));
	if (!cv->st.rules)
		return -ENOMEM;
	for (size_t i = 0; i < rules->n; i++) {
		json_t *j = rules->items[i].value;
		enum cl_rule_kind kind;
		struct error err = { 0 };
		if (strncmp(rules->items[i].key, prefix, strlen(prefix)) ||
		    rule_check_json(j, &kind, &err) < 0)
			continue;       /* refused when written; not ours to judge here */
		struct cl_rule *r = &cv->st.rules[cv->st.n_rules];
		memset(r, 0, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%s", json_string_value(json_object_get(j, "name")));
		r->kind = kind;
		size_t k;
		json_t *v;
		json_array_foreach(json_object_get(j, "vms"), k, v) {
			int idx = cluster_view_find_vm(cv, json_string_value(v));
			if (idx >= 0)
				r->vms[r->n_vms++] = idx;
		}
		json_array_foreach(json_object_get(j, "hosts"), k, v) {
			int idx = -1;
			for (size_t h = 0; h < cv->st.n_hosts && idx < 0; h++)
				if (!strcmp(cv->st.hosts[h].name, json_string_value(v)))
					idx = (int)h;
			if (idx >= 0)
				r->hosts[r->n_hosts++] = idx;
		}
		bool host_rule = kind == CL_HOST_AFFINITY || kind == CL_HOST_ANTI_AFFINITY;
		/* A VM rule with one member left binds nothing; a host rule
		 * whose hosts are all gone keeps them out of every host, which
		 * cl_check_rules reports. */
		if (host_rule ? r->n_vms >= 1 : r->n_vms >= 2)
			cv->st.n_rules++;
	}
	return 0;
}
