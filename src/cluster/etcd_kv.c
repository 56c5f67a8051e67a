/* etcd_kv.c: single-key and prefix reads, writes and deletes
 * (/v3/kv/put, /v3/kv/range, /v3/kv/deleterange). */
#include "cluster/etcd_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Keys per page of a prefix read: bounds one reply, not the whole read. */
#define ETCD_RANGE_PAGE 1000

int etcd_put(struct etcd *e, const char *key, const void *val, size_t len, int64_t lease,
	     int64_t *revision, struct error *err)
{
	json_t *body = json_object(), *reply;
	int rc = body ? etcd_json_set_range(body, key, false) : -ENOMEM;
	if (!rc)
		rc = etcd_json_set_bytes(body, "value", val, len);
	if (!rc && lease)
		rc = etcd_json_set_i64(body, "lease", lease);
	if (rc) {
		json_decref(body);
		return error_set(err, ENOMEM, "etcd put \"%s\": out of memory for %zu bytes", key, len);
	}
	rc = etcd_call(e, "/v3/kv/put", body, &reply, err);
	json_decref(body);
	if (rc < 0)
		return error_wrap(err, "etcd put \"%s\"", key);
	if (revision)
		*revision = etcd_header_revision(reply);
	json_decref(reply);
	return 0;
}

int etcd_get(struct etcd *e, const char *key, struct etcd_kv *out, bool *found,
	     struct error *err)
{
	memset(out, 0, sizeof(*out));
	*found = false;
	json_t *body = json_object(), *reply;
	if (!body || etcd_json_set_range(body, key, false)) {
		json_decref(body);
		return error_set(err, ENOMEM, "etcd get \"%s\": out of memory", key);
	}
	int rc = etcd_call(e, "/v3/kv/range", body, &reply, err);
	json_decref(body);
	if (rc < 0)
		return error_wrap(err, "etcd get \"%s\"", key);
	const json_t *kvs = json_object_get(reply, "kvs");
	if (json_array_size(kvs) > 0) {
		rc = etcd_kv_from_json(json_array_get(kvs, 0), out, err);
		if (rc < 0) {
			json_decref(reply);
			return error_wrap(err, "etcd get \"%s\": reply", key);
		}
		*found = true;
	}
	json_decref(reply);
	return 0;
}

/* Reads one page of [key, end) at revision rev (0: now). */
static int range_page(struct etcd *e, const char *key, size_t klen, const char *end,
		      size_t elen, int64_t rev, json_t **reply, struct error *err)
{
	json_t *body = json_object();
	int rc = body ? 0 : -ENOMEM;
	if (!rc)
		rc = etcd_json_set_bytes(body, "key", key, klen);
	if (!rc)
		rc = etcd_json_set_bytes(body, "range_end", end, elen);
	if (!rc)
		rc = etcd_json_set_i64(body, "limit", ETCD_RANGE_PAGE);
	if (!rc && rev)
		rc = etcd_json_set_i64(body, "revision", rev);
	if (rc) {
		json_decref(body);
		return error_set(err, ENOMEM, "out of memory");
	}
	rc = etcd_call(e, "/v3/kv/range", body, reply, err);
	json_decref(body);
	return rc;
}

int etcd_range_prefix(struct etcd *e, const char *prefix, struct etcd_kv **kvs, size_t *n,
		      int64_t *header_revision, struct error *err)
{
	size_t plen = strlen(prefix);
	/* The next page starts at the last key read plus a NUL byte. */
	char *key = NULL, *end = malloc(plen ? plen : 1);
	size_t klen, elen;
	int64_t rev = 0;
	int rc = 0;

	*kvs = NULL;
	*n = 0;
	if (header_revision)
		*header_revision = 0;
	if (!end)
		return error_set(err, ENOMEM, "etcd range \"%s\": out of memory", prefix);
	if (plen) {
		key = strdup(prefix);
		klen = plen;
		elen = etcd_prefix_end(prefix, plen, end);
	} else {                    /* everything: from "\0" to "\0" */
		key = calloc(1, 1);
		klen = 1;
		end[0] = '\0';
		elen = 1;
	}
	if (!key) {
		free(end);
		return error_set(err, ENOMEM, "etcd range \"%s\": out of memory", prefix);
	}
	for (;;) {
		json_t *reply;
		rc = range_page(e, key, klen, end, elen, rev, &reply, err);
		if (rc < 0)
			break;
		if (!rev)
			rev = etcd_header_revision(reply);   /* the snapshot the pages share */
		const json_t *arr = json_object_get(reply, "kvs");
		rc = etcd_kvs_append_json(arr, kvs, n, err);
		bool more = etcd_json_true(reply, "more") && json_array_size(arr) > 0;
		if (!rc && more) {
			/* Raw bytes of the last key, in case it holds a NUL. */
			const json_t *last = json_object_get(json_array_get(arr, json_array_size(arr) - 1),
							     "key");
			char *raw;
			size_t rlen;
			rc = etcd_b64_decode(json_string_value(last) ? json_string_value(last) : "",
					     json_string_length(last), &raw, &rlen);
			if (!rc) {
				char *next = realloc(raw, rlen + 1);
				if (!next) {
					free(raw);
					rc = -ENOMEM;
				} else {
					next[rlen] = '\0';
					free(key);
					key = next;
					klen = rlen + 1;
				}
			}
			if (rc)
				rc = error_set(err, -rc, "cannot continue after the last key of a page");
		}
		json_decref(reply);
		if (rc < 0 || !more)
			break;
	}
	free(key);
	free(end);
	if (rc < 0) {
		etcd_kvs_free(*kvs, *n);
		*kvs = NULL;
		*n = 0;
		return error_wrap(err, "etcd range \"%s\"", prefix);
	}
	if (header_revision)
		*header_revision = rev;
	return 0;
}

static int delete_range(struct etcd *e, const char *key, bool prefix, struct error *err)
{
	const char *what = prefix ? "etcd delete prefix" : "etcd delete";
	json_t *body = json_object(), *reply;
	if (!body || etcd_json_set_range(body, key, prefix)) {
		json_decref(body);
		return error_set(err, ENOMEM, "%s \"%s\": out of memory", what, key);
	}
	int rc = etcd_call(e, "/v3/kv/deleterange", body, &reply, err);
	json_decref(body);
	if (rc < 0)
		return error_wrap(err, "%s \"%s\"", what, key);
	int64_t deleted;
	rc = etcd_json_i64(reply, "deleted", &deleted);
	json_decref(reply);
	if (rc < 0 || deleted < 0)
		return error_set(err, EPROTO, "%s \"%s\": malformed \"deleted\" in the reply", what,
				 key);
	return deleted > INT_MAX ? INT_MAX : (int)deleted;
}

int etcd_delete(struct etcd *e, const char *key, struct error *err)
{
	return delete_range(e, key, false, err);
}

int etcd_delete_prefix(struct etcd *e, const char *prefix, struct error *err)
{
	return delete_range(e, prefix, true, err);
}
