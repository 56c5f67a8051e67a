/* etcd_txn.c: transactions (/v3/kv/txn): the builder, etcd's limits checked
 * before sending, and the responses of the branch that ran.
 *
 * The builder keeps raw bytes (keys, range ends, values) so the limits can
 * be checked as etcd checks them (etcdserver/api/v3rpc/key.go): per list at
 * most --max-txn-ops (128) entries; within one branch, every key put at
 * most once and never inside a range that the same branch deletes. Reads
 * and compares may repeat keys, and each branch is checked alone. */
#include "cluster/etcd_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum cmp_target { TARGET_VERSION, TARGET_CREATE, TARGET_MOD, TARGET_VALUE, TARGET_LEASE };

struct txn_cmp {
	enum cmp_target target;
	enum etcd_cmp op;
	char *key;
	int64_t num;             /* the revision, version or lease compared with */
	char *val;               /* TARGET_VALUE */
	size_t val_len;
};

struct txn_op {
	enum etcd_op_kind kind;
	char *key;
	size_t key_len;
	char *end;               /* range end; NULL: the key alone */
	size_t end_len;
	char *val;               /* PUT */
	size_t val_len;
	int64_t lease;
};

struct txn_list {
	struct txn_op *ops;
	size_t n, cap;
};

struct etcd_txn {
	struct txn_cmp *cmps;
	size_t n_cmps, cap_cmps;
	struct txn_list branch[2];
	int failed;              /* the first builder error, as a negative errno */
	char failed_msg[256];
};

static const char *const branch_names[] = { "success", "failure" };

struct etcd_txn *etcd_txn_new(void)
{
	return calloc(1, sizeof(struct etcd_txn));
}

void etcd_txn_free(struct etcd_txn *txn)
{
	if (!txn)
		return;
	for (size_t i = 0; i < txn->n_cmps; i++) {
		free(txn->cmps[i].key);
		free(txn->cmps[i].val);
	}
	free(txn->cmps);
	for (int b = 0; b < 2; b++) {
		for (size_t i = 0; i < txn->branch[b].n; i++) {
			struct txn_op *op = &txn->branch[b].ops[i];
			free(op->key);
			free(op->end);
			free(op->val);
		}
		free(txn->branch[b].ops);
	}
	free(txn);
}

/* Records the first builder error; returns -code. */
__attribute__((format(printf, 3, 4)))
static int txn_fail(struct etcd_txn *txn, int code, const char *fmt, ...)
{
	if (!txn->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(txn->failed_msg, sizeof(txn->failed_msg), fmt, ap);
		va_end(ap);
		txn->failed = -code;
	}
	return -code;
}

/* A copy of n bytes with a NUL after them, so that "" is never NULL. */
static char *dup_bytes(const void *p, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		if (n)
			memcpy(d, p, n);
		d[n] = '\0';
	}
	return d;
}

static int add_cmp(struct etcd_txn *txn, const char *key, enum cmp_target target,
		   enum etcd_cmp op, int64_t num, const void *val, size_t len)
{
	if (!txn)
		return -EINVAL;
	if (!key)
		return txn_fail(txn, EINVAL, "a compare without a key");
	if ((unsigned)op > ETCD_CMP_LESS || (len && !val))
		return txn_fail(txn, EINVAL, "invalid compare of \"%s\"", key);
	if (txn->n_cmps == ETCD_TXN_MAX_OPS)
		return txn_fail(txn, EINVAL, "more than %d compares (at \"%s\")", ETCD_TXN_MAX_OPS,
				key);
	if (txn->n_cmps == txn->cap_cmps) {
		size_t cap = txn->cap_cmps ? txn->cap_cmps * 2 : 4;
		struct txn_cmp *c = realloc(txn->cmps, cap * sizeof(*c));
		if (!c)
			return txn_fail(txn, ENOMEM, "out of memory at the compare of \"%s\"", key);
		txn->cmps = c;
		txn->cap_cmps = cap;
	}
	struct txn_cmp *c = &txn->cmps[txn->n_cmps];
	memset(c, 0, sizeof(*c));
	c->target = target;
	c->op = op;
	c->num = num;
	c->key = strdup(key);
	if (target == TARGET_VALUE) {
		c->val = dup_bytes(val, len);
		c->val_len = len;
	}
	if (!c->key || (target == TARGET_VALUE && !c->val)) {
		free(c->key);
		free(c->val);
		return txn_fail(txn, ENOMEM, "out of memory at the compare of \"%s\"", key);
	}
	txn->n_cmps++;
	return 0;
}

int etcd_txn_cmp_mod(struct etcd_txn *txn, const char *key, enum etcd_cmp op, int64_t rev)
{
	return add_cmp(txn, key, TARGET_MOD, op, rev, NULL, 0);
}

int etcd_txn_cmp_create(struct etcd_txn *txn, const char *key, enum etcd_cmp op, int64_t rev)
{
	return add_cmp(txn, key, TARGET_CREATE, op, rev, NULL, 0);
}

int etcd_txn_cmp_version(struct etcd_txn *txn, const char *key, enum etcd_cmp op,
			 int64_t version)
{
	return add_cmp(txn, key, TARGET_VERSION, op, version, NULL, 0);
}

int etcd_txn_cmp_value(struct etcd_txn *txn, const char *key, enum etcd_cmp op,
		       const void *val, size_t len)
{
	return add_cmp(txn, key, TARGET_VALUE, op, 0, val, len);
}

int etcd_txn_cmp_lease(struct etcd_txn *txn, const char *key, enum etcd_cmp op, int64_t lease)
{
	return add_cmp(txn, key, TARGET_LEASE, op, lease, NULL, 0);
}

static int add_op(struct etcd_txn *txn, enum etcd_branch b, enum etcd_op_kind kind,
		  const char *key, bool prefix, const void *val, size_t len, int64_t lease)
{
	if (!txn)
		return -EINVAL;
	if (!key)
		return txn_fail(txn, EINVAL, "an operation without a key");
	if ((b != ETCD_ON_SUCCESS && b != ETCD_ON_FAILURE) || (len && !val))
		return txn_fail(txn, EINVAL, "invalid operation on \"%s\"", key);
	struct txn_list *l = &txn->branch[b];
	if (l->n == ETCD_TXN_MAX_OPS)
		return txn_fail(txn, EINVAL, "more than %d operations in the %s branch (at \"%s\")",
				ETCD_TXN_MAX_OPS, branch_names[b], key);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct txn_op *ops = realloc(l->ops, cap * sizeof(*ops));
		if (!ops)
			return txn_fail(txn, ENOMEM, "out of memory at the operation on \"%s\"", key);
		l->ops = ops;
		l->cap = cap;
	}
	struct txn_op *op = &l->ops[l->n];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->lease = lease;
	size_t klen = strlen(key);
	bool ok = true;
	if (prefix && klen == 0) {        /* everything: "\0" to "\0" */
		op->key = dup_bytes("", 1);
		op->key_len = 1;
		op->end = dup_bytes("", 1);
		op->end_len = 1;
		ok = op->key && op->end;
	} else {
		op->key = dup_bytes(key, klen);
		op->key_len = klen;
		ok = op->key != NULL;
		if (ok && prefix) {
			op->end = malloc(klen);
			ok = op->end != NULL;
			if (ok)
				op->end_len = etcd_prefix_end(key, klen, op->end);
		}
	}
	if (ok && kind == ETCD_OP_PUT) {
		op->val = dup_bytes(val, len);
		op->val_len = len;
		ok = op->val != NULL;
	}
	if (!ok) {
		free(op->key);
		free(op->end);
		free(op->val);
		return txn_fail(txn, ENOMEM, "out of memory at the operation on \"%s\"", key);
	}
	l->n++;
	return 0;
}

int etcd_txn_put(struct etcd_txn *txn, enum etcd_branch b, const char *key, const void *val,
		 size_t len, int64_t lease)
{
	return add_op(txn, b, ETCD_OP_PUT, key, false, val, len, lease);
}

int etcd_txn_delete(struct etcd_txn *txn, enum etcd_branch b, const char *key)
{
	return add_op(txn, b, ETCD_OP_DELETE, key, false, NULL, 0, 0);
}

int etcd_txn_delete_prefix(struct etcd_txn *txn, enum etcd_branch b, const char *prefix)
{
	return add_op(txn, b, ETCD_OP_DELETE, prefix, true, NULL, 0, 0);
}

int etcd_txn_get(struct etcd_txn *txn, enum etcd_branch b, const char *key)
{
	return add_op(txn, b, ETCD_OP_RANGE, key, false, NULL, 0, 0);
}

int etcd_txn_range_prefix(struct etcd_txn *txn, enum etcd_branch b, const char *prefix)
{
	return add_op(txn, b, ETCD_OP_RANGE, prefix, true, NULL, 0, 0);
}

/* ---- etcd's limits ------------------------------------------------------------ */

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* Whether the op (a delete) covers key k. */
static bool op_covers(const struct txn_op *d, const char *k, size_t klen)
{
	if (!d->end)
		return bytes_cmp(k, klen, d->key, d->key_len) == 0;
	if (bytes_cmp(k, klen, d->key, d->key_len) < 0)
		return false;
	if (d->end_len == 1 && d->end[0] == '\0')     /* to the end of the keyspace */
		return true;
	return bytes_cmp(k, klen, d->end, d->end_len) < 0;
}

static int check_branch(const struct txn_list *l, const char *name, struct error *err)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct txn_op *p = &l->ops[i];
		if (p->kind != ETCD_OP_PUT)
			continue;
		for (size_t j = 0; j < l->n; j++) {
			const struct txn_op *o = &l->ops[j];
			if (j == i || o->kind == ETCD_OP_RANGE)
				continue;
			if (o->kind == ETCD_OP_PUT && j < i &&
			    bytes_cmp(p->key, p->key_len, o->key, o->key_len) == 0)
				return error_set(err, EINVAL, "the %s branch puts \"%s\" twice (etcd "
						 "refuses a key named twice)", name, p->key);
			if (o->kind == ETCD_OP_DELETE && op_covers(o, p->key, p->key_len))
				return error_set(err, EINVAL, "the %s branch both puts and deletes \"%s\" "
						 "(etcd refuses a key named twice)", name, p->key);
		}
	}
	return 0;
}

static int txn_check(const struct etcd_txn *txn, struct error *err)
{
	if (txn->failed)
		return error_set(err, -txn->failed, "%s", txn->failed_msg);
	for (int b = 0; b < 2; b++) {
		int rc = check_branch(&txn->branch[b], branch_names[b], err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- encoding ------------------------------------------------------------- */

static json_t *encode_cmp(const struct txn_cmp *c)
{
	static const char *const targets[] = {
		[TARGET_VERSION] = "VERSION", [TARGET_CREATE] = "CREATE", [TARGET_MOD] = "MOD",
		[TARGET_VALUE] = "VALUE", [TARGET_LEASE] = "LEASE",
	};
	static const char *const fields[] = {
		[TARGET_VERSION] = "version", [TARGET_CREATE] = "create_revision",
		[TARGET_MOD] = "mod_revision", [TARGET_LEASE] = "lease",
	};
	static const char *const results[] = {
		[ETCD_CMP_EQUAL] = "EQUAL", [ETCD_CMP_NOT_EQUAL] = "NOT_EQUAL",
		[ETCD_CMP_GREATER] = "GREATER", [ETCD_CMP_LESS] = "LESS",
	};
	json_t *j = json_object();
	if (!j)
		return NULL;
	int rc = etcd_json_set_bytes(j, "key", c->key, strlen(c->key));
	if (!rc && json_object_set_new(j, "target", json_string(targets[c->target])) < 0)
		rc = -ENOMEM;
	if (!rc && json_object_set_new(j, "result", json_string(results[c->op])) < 0)
		rc = -ENOMEM;
	if (!rc && c->target == TARGET_VALUE)
		rc = etcd_json_set_bytes(j, "value", c->val, c->val_len);
	else if (!rc)
		rc = etcd_json_set_i64(j, fields[c->target], c->num);
	if (rc) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static json_t *encode_op(const struct txn_op *op)
{
	static const char *const names[] = {
		[ETCD_OP_RANGE] = "request_range", [ETCD_OP_PUT] = "request_put",
		[ETCD_OP_DELETE] = "request_delete_range",
	};
	json_t *req = json_object(), *wrap = json_object();
	int rc = req && wrap ? 0 : -ENOMEM;
	if (!rc)
		rc = etcd_json_set_bytes(req, "key", op->key, op->key_len);
	if (!rc && op->end)
		rc = etcd_json_set_bytes(req, "range_end", op->end, op->end_len);
	if (!rc && op->kind == ETCD_OP_PUT)
		rc = etcd_json_set_bytes(req, "value", op->val, op->val_len);
	if (!rc && op->kind == ETCD_OP_PUT && op->lease)
		rc = etcd_json_set_i64(req, "lease", op->lease);
	if (!rc) {
		rc = json_object_set_new(wrap, names[op->kind], req) < 0 ? -ENOMEM : 0;
		req = NULL;          /* taken, even on failure */
	}
	json_decref(req);
	if (rc) {
		json_decref(wrap);
		return NULL;
	}
	return wrap;
}

static json_t *encode_txn(const struct etcd_txn *txn)
{
	json_t *body = json_object(), *cmps = json_array();
	json_t *lists[2] = { json_array(), json_array() };
	bool ok = body && cmps && lists[0] && lists[1];
	for (size_t i = 0; ok && i < txn->n_cmps; i++)
		ok = json_array_append_new(cmps, encode_cmp(&txn->cmps[i])) == 0;
	for (int b = 0; b < 2; b++)
		for (size_t i = 0; ok && i < txn->branch[b].n; i++)
			ok = json_array_append_new(lists[b], encode_op(&txn->branch[b].ops[i])) == 0;
	if (ok && json_object_set(body, "compare", cmps) < 0)
		ok = false;
	if (ok && json_object_set(body, "success", lists[0]) < 0)
		ok = false;
	if (ok && json_object_set(body, "failure", lists[1]) < 0)
		ok = false;
	json_decref(cmps);
	json_decref(lists[0]);
	json_decref(lists[1]);
	if (!ok) {
		json_decref(body);
		return NULL;
	}
	return body;
}

/* ---- results ---------------------------------------------------------------- */

void etcd_txn_result_free(struct etcd_txn_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n; i++)
		etcd_kvs_free(res->responses[i].kvs, res->responses[i].n_kvs);
	free(res->responses);
	res->responses = NULL;
	res->n = 0;
}

const struct etcd_kv *etcd_txn_result_kv(const struct etcd_txn_result *res, size_t i)
{
	if (!res || i >= res->n || res->responses[i].kind != ETCD_OP_RANGE ||
	    !res->responses[i].n_kvs)
		return NULL;
	return &res->responses[i].kvs[0];
}

static int decode_responses(const json_t *arr, const struct txn_list *ran,
			    struct etcd_txn_result *res, struct error *err)
{
	size_t n = json_array_size(arr);
	if (arr && !json_is_array(arr))
		return error_set(err, EPROTO, "\"responses\" is not a list");
	if (n != ran->n)
		return error_set(err, EPROTO, "%zu responses to %zu operations", n, ran->n);
	if (!n)
		return 0;
	res->responses = calloc(n, sizeof(*res->responses));
	if (!res->responses)
		return error_set(err, ENOMEM, "out of memory");
	res->n = n;
	for (size_t i = 0; i < n; i++) {
		struct etcd_txn_response *r = &res->responses[i];
		const json_t *j = json_array_get(arr, i), *v;
		r->kind = ran->ops[i].kind;
		if ((v = json_object_get(j, "response_range"))) {
			r->kind = ETCD_OP_RANGE;
			int rc = etcd_kvs_append_json(json_object_get(v, "kvs"), &r->kvs, &r->n_kvs, err);
			if (rc < 0)
				return error_wrap(err, "response %zu", i);
		} else if ((v = json_object_get(j, "response_delete_range"))) {
			r->kind = ETCD_OP_DELETE;
			if (etcd_json_i64(v, "deleted", &r->deleted) < 0)
				return error_set(err, EPROTO, "response %zu: malformed \"deleted\"", i);
		} else if ((v = json_object_get(j, "response_put"))) {
			r->kind = ETCD_OP_PUT;
		}
	}
	return 0;
}

int etcd_txn_commit(struct etcd *e, struct etcd_txn *txn, bool *succeeded, int64_t *revision,
		    struct etcd_txn_result *res, struct error *err)
{
	*succeeded = false;
	if (revision)
		*revision = 0;
	if (res)
		memset(res, 0, sizeof(*res));
	if (!txn)
		return error_set(err, EINVAL, "etcd txn: no transaction (out of memory?)");
	int rc = txn_check(txn, err);
	if (rc < 0)
		return error_wrap(err, "etcd txn");
	json_t *body = encode_txn(txn), *reply;
	if (!body)
		return error_set(err, ENOMEM, "etcd txn: out of memory encoding it");
	rc = etcd_call(e, "/v3/kv/txn", body, &reply, err);
	json_decref(body);
	if (rc < 0)
		return error_wrap(err, "etcd txn");
	/* A failed txn has no "succeeded" at all: false is left out. */
	bool ok = etcd_json_true(reply, "succeeded");
	if (res) {
		rc = decode_responses(json_object_get(reply, "responses"),
				      &txn->branch[ok ? ETCD_ON_SUCCESS : ETCD_ON_FAILURE], res, err);
		if (rc < 0) {
			etcd_txn_result_free(res);
			json_decref(reply);
			return error_wrap(err, "etcd txn: reply");
		}
	}
	*succeeded = ok;
	if (revision)
		*revision = etcd_header_revision(reply);
	json_decref(reply);
	return 0;
}
