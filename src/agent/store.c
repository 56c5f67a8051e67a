/* store.c: see store.h. */
#include "agent/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/etcd.h"

int store_list(struct etcd *e, const char *prefix, struct store_list *out, struct error *err)
{
	memset(out, 0, sizeof(*out));
	struct etcd_kv *kvs = NULL;
	size_t n = 0;
	int rc = etcd_range_prefix(e, prefix, &kvs, &n, &out->revision, err);
	if (rc < 0)
		return rc;
	out->items = calloc(n ? n : 1, sizeof(*out->items));
	if (!out->items) {
		etcd_kvs_free(kvs, n);
		return error_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		struct store_item *it = &out->items[i];
		it->key = kvs[i].key;
		kvs[i].key = NULL;
		it->value = json_loadb(kvs[i].value, kvs[i].value_len, 0, NULL);
		it->create_rev = kvs[i].create_revision;
		it->mod_rev = kvs[i].mod_revision;
		it->lease = kvs[i].lease;
	}
	out->n = n;
	etcd_kvs_free(kvs, n);
	return 0;
}

int store_get(struct etcd *e, const char *key, json_t **value, int64_t *mod_rev,
	      struct error *err)
{
	*value = NULL;
	struct etcd_kv kv;
	bool found = false;
	int rc = etcd_get(e, key, &kv, &found, err);
	if (rc < 0)
		return rc;
	if (found) {
		*value = json_loadb(kv.value, kv.value_len, 0, NULL);
		if (mod_rev)
			*mod_rev = kv.mod_revision;
		etcd_kv_free(&kv);
	}
	return 0;
}

void store_list_free(struct store_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].key);
		json_decref(l->items[i].value);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

const struct store_item *store_find(const struct store_list *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->items[i].key, key))
			return &l->items[i];
	return NULL;
}

/* Runs a put (or delete, value NULL) of key under the compare the caller
 * added, plus the guard; -ESTALE when the compares fail. */
static int conditional(struct etcd *e, struct etcd_txn *t, const char *key, json_t *value,
		       int64_t lease, const struct store_guard *guard, int64_t *rev,
		       int stale_code, struct error *err)
{
	char *text = NULL;
	if (guard && guard->key)
		etcd_txn_cmp_create(t, guard->key, ETCD_CMP_EQUAL, guard->create_rev);
	if (value) {
		text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
		if (!text) {
			etcd_txn_free(t);
			return error_set(err, ENOMEM, "out of memory");
		}
		etcd_txn_put(t, ETCD_ON_SUCCESS, key, text, strlen(text), lease);
	} else {
		etcd_txn_delete(t, ETCD_ON_SUCCESS, key);
	}
	bool ok = false;
	int64_t r = 0;
	int rc = etcd_txn_commit(e, t, &ok, &r, NULL, err);
	free(text);
	etcd_txn_free(t);
	if (rc < 0)
		return rc;
	if (!ok) {
		if (guard && guard->key)
			return error_set(err, stale_code, "%s changed meanwhile, or %s is no longer "
					 "held (revision %lld)", key, guard->key,
					 (long long)guard->create_rev);
		return error_set(err, stale_code, "%s changed meanwhile", key);
	}
	if (rev)
		*rev = r;
	return 0;
}

int store_create(struct etcd *e, const char *key, json_t *value, int64_t lease,
		 const struct store_guard *guard, int64_t *rev, struct error *err)
{
	struct etcd_txn *t = etcd_txn_new();
	if (!t)
		return error_set(err, ENOMEM, "out of memory");
	etcd_txn_cmp_create(t, key, ETCD_CMP_EQUAL, 0);
	return conditional(e, t, key, value, lease, guard, rev, EEXIST, err);
}

int store_cas_put(struct etcd *e, const char *key, json_t *value, int64_t lease,
		  int64_t expect_mod, const struct store_guard *guard, int64_t *rev,
		  struct error *err)
{
	struct etcd_txn *t = etcd_txn_new();
	if (!t)
		return error_set(err, ENOMEM, "out of memory");
	etcd_txn_cmp_mod(t, key, ETCD_CMP_EQUAL, expect_mod);
	return conditional(e, t, key, value, lease, guard, rev, ESTALE, err);
}

int store_cas_delete(struct etcd *e, const char *key, int64_t expect_mod, struct error *err)
{
	struct etcd_txn *t = etcd_txn_new();
	if (!t)
		return error_set(err, ENOMEM, "out of memory");
	etcd_txn_cmp_mod(t, key, ETCD_CMP_EQUAL, expect_mod);
	return conditional(e, t, key, NULL, 0, NULL, NULL, ESTALE, err);
}

int store_put(struct etcd *e, const char *key, json_t *value, int64_t lease, struct error *err)
{
	char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return error_set(err, ENOMEM, "out of memory");
	int rc = etcd_put(e, key, text, strlen(text), lease, NULL, err);
	free(text);
	return rc;
}

int store_delete(struct etcd *e, const char *key, struct error *err)
{
	int rc = etcd_delete(e, key, err);
	return rc < 0 ? rc : 0;
}

int store_append(struct etcd *e, const char *prefix, json_t *value, size_t keep,
		 struct error *err)
{
	static unsigned seq;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char key[400];
	snprintf(key, sizeof(key), "%s%013lld-%08u", prefix,
		 (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
		 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
	int rc = store_put(e, key, value, 0, err);
	if (rc < 0)
		return rc;
	struct store_list l;
	if (store_list(e, prefix, &l, err) == 0) {
		/* Keys sort by time: the first ones are the oldest. */
		for (size_t i = 0; i + keep < l.n; i++)
			store_delete(e, l.items[i].key, err);
		store_list_free(&l);
	}
	return 0;
}
