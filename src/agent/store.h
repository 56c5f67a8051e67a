/* store.h: the cluster's records in etcd as the agent uses them: JSON
 * values, listed by prefix, written by compare-and-swap on revisions
 * (docs/cluster.md). A thin layer over cluster/etcd.h. */
#ifndef TERN_AGENT_STORE_H
#define TERN_AGENT_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct etcd;

struct store_item {
	char *key;
	json_t *value;          /* NULL if the value is not JSON */
	int64_t create_rev, mod_rev, lease;
};

struct store_list {
	struct store_item *items;
	size_t n;
	int64_t revision;       /* of the read */
};

int store_list(struct etcd *e, const char *prefix, struct store_list *out, struct error *err);
void store_list_free(struct store_list *l);
const struct store_item *store_find(const struct store_list *l, const char *key);
/* One key's JSON value (*value NULL if absent or not JSON; else the
 * caller's reference) and its mod revision (mod_rev may be NULL). */
int store_get(struct etcd *e, const char *key, json_t **value, int64_t *mod_rev,
	      struct error *err);

/* A condition every write may carry: guard_key's create revision is
 * guard_create_rev (a controller's writes need it still to be the
 * controller). guard_key NULL: none. */
struct store_guard {
	const char *key;
	int64_t create_rev;
};

/* Creates key if absent: -EEXIST if it exists (or the guard failed:
 * -ESTALE). *rev: the revision written. */
int store_create(struct etcd *e, const char *key, json_t *value, int64_t lease,
		 const struct store_guard *guard, int64_t *rev, struct error *err);
/* Replaces key if its mod revision is expect_mod: -ESTALE if not (or the
 * guard failed). */
int store_cas_put(struct etcd *e, const char *key, json_t *value, int64_t lease,
		  int64_t expect_mod, const struct store_guard *guard, int64_t *rev,
		  struct error *err);
/* Deletes key if its mod revision is expect_mod: -ESTALE if not. */
int store_cas_delete(struct etcd *e, const char *key, int64_t expect_mod, struct error *err);
int store_put(struct etcd *e, const char *key, json_t *value, int64_t lease, struct error *err);
/* Adds value under prefix as a new key that sorts after the ones before
 * it (the wall clock in ms, then a counter), and drops the oldest beyond
 * keep: a log any agent can read. */
int store_append(struct etcd *e, const char *prefix, json_t *value, size_t keep,
		 struct error *err);
int store_delete(struct etcd *e, const char *key, struct error *err);

#endif
