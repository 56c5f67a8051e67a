/* etcd.h: a client of etcd's v3 API, for the cluster layer.
 *
 * It speaks the JSON gateway that every etcd 3.4 member serves next to
 * gRPC (POST /v3/kv/range, /v3/kv/txn, /v3/lease/grant, /v3/watch, ...),
 * with libcurl for HTTP and jansson for JSON. Keys are C strings; values
 * are bytes (any length, NULs allowed). All revisions, lease ids and TTLs
 * are int64_t: lease ids use 63 bits and must never pass through a double.
 *
 * Endpoints: etcd_open() takes a comma-separated list, each entry
 * "unix:/abs/path/to/socket" (also "unix:///abs/path", etcdctl's form) or
 * "http://host:port". A request goes to the endpoint that answered last;
 * when that one cannot be reached, times out, answers HTTP 5xx or says it
 * has no leader / the leader changed / it is unavailable, the request is
 * sent to the next endpoint, and so on once around the list (twice when a
 * member did answer but was between leaders). The endpoint that answers
 * becomes the first choice of later requests. Every request asks etcd for
 * a member with a leader (gRPC metadata "hasleader"), so a member cut off
 * from the quorum refuses at once instead of holding the request. A write
 * that a follower forwarded to a leader that has just died is lost inside
 * etcd without an answer: that attempt ends by the timeout (measured with
 * three members and the default timeout: the first write after the leader
 * died took 2 s, the ones after it milliseconds).
 *
 * A retried write may have been applied by the member that timed out: a put
 * is then simply written twice, but a transaction can find its own earlier
 * write and take its failure branch. Read the key in the failure branch
 * (etcd_txn_get) to tell "someone else owns it" from "I already own it".
 *
 * Threads: one struct etcd may be used by any number of threads at once.
 * Each request borrows its own curl handle from a small pool (taken and
 * returned under a mutex), so requests run concurrently and keep their
 * connections open between calls. etcd_close() must not race with use.
 *
 * Errors: every function returns 0 (or a count, where said) on success and
 * a negative errno on failure, with err naming the operation and key, the
 * endpoint, and what went wrong there: curl's reason, the HTTP status, and
 * etcd's own message and gRPC code from the reply body. Codes: ECONNREFUSED
 * (no endpoint could be reached), ETIMEDOUT, EAGAIN (no leader, unavailable),
 * EINVAL (etcd or this library refused the request), ENOENT (no such lease,
 * lease expired), ERANGE (revision compacted or in the future), EPROTO (a
 * reply this library does not understand), ENOMEM, EIO (anything else). */
#ifndef TERN_CLUSTER_ETCD_H
#define TERN_CLUSTER_ETCD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define ETCD_DEFAULT_TIMEOUT_MS 2000
/* etcd's default --max-txn-ops: per list (compares, success ops, failure ops). */
#define ETCD_TXN_MAX_OPS 128

struct etcd;

/* ---- connection -------------------------------------------------------- */

/* Parses the endpoint list; connects lazily (nothing is sent here). NULL on
 * a malformed list, with err saying which entry and why. */
struct etcd *etcd_open(const char *endpoints, struct error *err);
void etcd_close(struct etcd *e);

/* How long one attempt on one endpoint may take, connection included
 * (default ETCD_DEFAULT_TIMEOUT_MS). A request that fails over may take up
 * to this times the number of endpoints (times two, see above). */
void etcd_set_timeout_ms(struct etcd *e, int timeout_ms);

size_t etcd_endpoint_count(const struct etcd *e);
/* The i-th endpoint as it was given; NULL past the end. */
const char *etcd_endpoint_name(const struct etcd *e, size_t i);
/* Index of the endpoint that the next request tries first. */
size_t etcd_current_endpoint(const struct etcd *e);

/* What /v3/maintenance/status says about one member. */
struct etcd_status {
	uint64_t member_id;      /* the member that answered */
	uint64_t leader_id;      /* 0: it knows no leader */
	int64_t raft_term;
	int64_t revision;
	char version[32];        /* etcd's version, "3.4.23" */
};

/* Asks endpoint i only (no failover; answered with or without a leader):
 * for health checks and for finding the leader (leader_id == member_id). */
int etcd_endpoint_status(struct etcd *e, size_t i, struct etcd_status *st, struct error *err);

/* ---- keys and values ----------------------------------------------------- */

struct etcd_kv {
	char *key;               /* NUL-terminated */
	char *value;             /* value_len bytes, then a NUL that is not counted */
	size_t value_len;
	int64_t create_revision; /* revision of the put that created the key */
	int64_t mod_revision;    /* revision of its last change */
	int64_t version;         /* puts since it was created, 1 for the first */
	int64_t lease;           /* 0: none */
};

/* Frees what kv points to (not kv itself) and zeroes it. */
void etcd_kv_free(struct etcd_kv *kv);
/* Frees n kvs and the array. */
void etcd_kvs_free(struct etcd_kv *kvs, size_t n);

/* Writes key = val (len bytes), attached to lease (0: none). *revision (may
 * be NULL) receives the revision of the write. */
int etcd_put(struct etcd *e, const char *key, const void *val, size_t len, int64_t lease,
	     int64_t *revision, struct error *err);

/* Reads one key. *found false (and *out zeroed) when absent; otherwise *out
 * is the caller's to etcd_kv_free(). */
int etcd_get(struct etcd *e, const char *key, struct etcd_kv *out, bool *found,
	     struct error *err);

/* Reads every key starting with prefix ("" = all keys), sorted by key, as one
 * consistent snapshot (pages are read at one revision). *kvs (NULL when n is
 * 0) is the caller's to etcd_kvs_free(). *header_revision (may be NULL) is
 * the store's revision at that snapshot: watch from header_revision + 1 to
 * see every later change. */
int etcd_range_prefix(struct etcd *e, const char *prefix, struct etcd_kv **kvs, size_t *n,
		      int64_t *header_revision, struct error *err);

/* Delete one key / every key under prefix. Return how many keys went (0 if
 * none matched; capped at INT_MAX), or a negative errno. */
int etcd_delete(struct etcd *e, const char *key, struct error *err);
int etcd_delete_prefix(struct etcd *e, const char *prefix, struct error *err);

/* ---- transactions ------------------------------------------------------ */

/* If every compare holds, the success ops run, otherwise the failure ops;
 * atomically, at one revision. Build, commit, free:
 *
 *	struct etcd_txn *t = etcd_txn_new();
 *	etcd_txn_cmp_create(t, key, ETCD_CMP_EQUAL, 0);       // key absent
 *	etcd_txn_put(t, ETCD_ON_SUCCESS, key, me, strlen(me), lease);
 *	etcd_txn_get(t, ETCD_ON_FAILURE, key);                 // who has it
 *	rc = etcd_txn_commit(e, t, &ok, &rev, &res, err);
 *	... etcd_txn_result_kv(&res, 0) is the current owner when !ok ...
 *	etcd_txn_result_free(&res);
 *	etcd_txn_free(t);
 *
 * Builder calls return 0 or a negative errno, and an error also sticks to
 * the txn: etcd_txn_commit() then refuses it with the first error, so the
 * builder calls may go unchecked. etcd_txn_commit() checks etcd's limits
 * before sending anything, with EINVAL: at most ETCD_TXN_MAX_OPS compares,
 * and as many ops per branch; within one branch no key may be put twice nor
 * be both put and deleted (etcd's "duplicate key given in txn request").
 * Reads may name any key; the two branches are independent. */

enum etcd_cmp {
	ETCD_CMP_EQUAL,
	ETCD_CMP_NOT_EQUAL,
	ETCD_CMP_GREATER,        /* the key's field > the given value */
	ETCD_CMP_LESS,
};

enum etcd_branch {
	ETCD_ON_SUCCESS,
	ETCD_ON_FAILURE,
};

struct etcd_txn;

struct etcd_txn *etcd_txn_new(void);    /* NULL only when out of memory */
void etcd_txn_free(struct etcd_txn *txn);

/* Compares of one key's fields. An absent key has create_revision,
 * mod_revision, version and lease 0: cmp_create(key, EQUAL, 0) means "key
 * absent". A value compare with an absent key is false. */
int etcd_txn_cmp_mod(struct etcd_txn *txn, const char *key, enum etcd_cmp op, int64_t rev);
int etcd_txn_cmp_create(struct etcd_txn *txn, const char *key, enum etcd_cmp op, int64_t rev);
int etcd_txn_cmp_version(struct etcd_txn *txn, const char *key, enum etcd_cmp op,
			 int64_t version);
int etcd_txn_cmp_value(struct etcd_txn *txn, const char *key, enum etcd_cmp op,
		       const void *val, size_t len);
int etcd_txn_cmp_lease(struct etcd_txn *txn, const char *key, enum etcd_cmp op, int64_t lease);

/* Operations of one branch, run in the order added. */
int etcd_txn_put(struct etcd_txn *txn, enum etcd_branch b, const char *key, const void *val,
		 size_t len, int64_t lease);
int etcd_txn_delete(struct etcd_txn *txn, enum etcd_branch b, const char *key);
int etcd_txn_delete_prefix(struct etcd_txn *txn, enum etcd_branch b, const char *prefix);
int etcd_txn_get(struct etcd_txn *txn, enum etcd_branch b, const char *key);
int etcd_txn_range_prefix(struct etcd_txn *txn, enum etcd_branch b, const char *prefix);

enum etcd_op_kind {
	ETCD_OP_RANGE,
	ETCD_OP_PUT,
	ETCD_OP_DELETE,
};

/* What one op of the branch that ran produced. */
struct etcd_txn_response {
	enum etcd_op_kind kind;
	struct etcd_kv *kvs;     /* RANGE: the keys read, sorted (NULL when none) */
	size_t n_kvs;
	int64_t deleted;         /* DELETE: how many keys went */
};

struct etcd_txn_result {
	struct etcd_txn_response *responses;  /* one per op of the branch that ran */
	size_t n;
};

void etcd_txn_result_free(struct etcd_txn_result *res);
/* The first kv that op i read (a get's key), or NULL: not a read, or the
 * key was absent. */
const struct etcd_kv *etcd_txn_result_kv(const struct etcd_txn_result *res, size_t i);

/* Sends the txn. *succeeded: the compares held (the success branch ran).
 * *revision: the store's revision after it. res (may be NULL) receives the
 * branch's responses, the caller's to etcd_txn_result_free(); it is left
 * empty on failure. The txn is not consumed and may be committed again. */
int etcd_txn_commit(struct etcd *e, struct etcd_txn *txn, bool *succeeded, int64_t *revision,
		    struct etcd_txn_result *res, struct error *err);

/* ---- leases ------------------------------------------------------------ */

/* Grants a lease of ttl_s seconds (etcd raises a very short TTL to its
 * minimum, about 1.5 election timeouts, at least 1 s). */
int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
		     struct error *err);
/* Renews a lease once; *ttl (may be NULL) is the TTL it has again. An
 * expired or revoked lease: -ENOENT ("lease ... expired"); etcd itself
 * answers such a keepalive with HTTP 200 and no TTL. */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl, struct error *err);
/* Revokes a lease: the keys attached to it are deleted. -ENOENT if etcd
 * knows no such lease. */
int etcd_lease_revoke(struct etcd *e, int64_t id, struct error *err);
/* Seconds left (*ttl, rounded down: 0 in the last second) and as granted
 * (*granted_ttl; either may be NULL); -ENOENT once expired or revoked. */
int etcd_lease_ttl(struct etcd *e, int64_t id, int64_t *ttl, int64_t *granted_ttl,
		   struct error *err);

/* ---- watching -------------------------------------------------------------- */

enum etcd_event_type {
	ETCD_EVENT_PUT,
	ETCD_EVENT_DELETE,
};

struct etcd_event {
	enum etcd_event_type type;
	/* PUT: the key as written. DELETE: key and mod_revision only (the
	 * revision of the delete); value empty. */
	struct etcd_kv kv;
	int64_t revision;        /* of the change: kv.mod_revision */
};

/* Called once per event, in revision order; ev is valid during the call
 * only. Return 0 to go on watching, > 0 to stop (the watch returns 0), < 0
 * to stop with that value as the watch's result. */
typedef int (*etcd_watch_fn)(const struct etcd_event *ev, void *ctx);

/* Watches every key under prefix and calls fn for each change from
 * start_revision on (0: changes after now). Blocks in the calling thread
 * until fn asks to stop or *stop (may be NULL) becomes true, noticed within
 * about 100 ms; returns 0 then. A stream that breaks (member gone, no
 * leader) is resumed on the next endpoint after the last delivered
 * revision, so no event is lost or repeated; when no endpoint takes the
 * watch, it fails. A start_revision older than etcd's compaction fails with
 * -ERANGE, the message naming the compacted revision: re-read with
 * etcd_range_prefix() and watch from its header_revision + 1. */
int etcd_watch_prefix(struct etcd *e, const char *prefix, int64_t start_revision,
		      etcd_watch_fn fn, void *ctx, const atomic_bool *stop, struct error *err);

/* Waits until some key under prefix changes at a revision > after_revision
 * (changes already made count at once). Returns 1 with *revision (may be
 * NULL) set to the first such change's revision, 0 after timeout_ms without
 * one (timeout_ms < 0: no limit), or a negative errno. */
int etcd_wait_change(struct etcd *e, const char *prefix, int64_t after_revision,
		     int timeout_ms, int64_t *revision, struct error *err);

#endif
