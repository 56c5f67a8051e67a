/* rules.h: the cluster's placement rules (docs/cluster.md, "Rules"). */
#ifndef TERN_AGENT_RULES_H
#define TERN_AGENT_RULES_H

#include <jansson.h>

#include "agent/store.h"
#include "cluster/model.h"
#include "util/error.h"

struct cluster_view;

const char *rule_kind_name(enum cl_rule_kind k);
/* Checks a rule's JSON (fields, name, kind, members) and gives its kind. */
int rule_check_json(json_t *rule, enum cl_rule_kind *kind, struct error *err);
/* Fills cv->st.rules from the rules/ records (keys under prefix), with the
 * VMs and hosts that exist; -ENOMEM only. */
int rules_load(struct cluster_view *cv, const struct store_list *rules, const char *prefix);

#endif
