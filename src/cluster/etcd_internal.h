/* etcd_internal.h: what the parts of the etcd client share; not for users
 * of etcd.h.
 *
 * etcd_http.c owns the endpoints, the curl handles and failover;
 * etcd_codec.c the JSON and base64 encoding of etcd's messages; etcd_kv.c,
 * etcd_txn.c, etcd_lease.c and etcd_watch.c one part of the API each. */
#ifndef TERN_CLUSTER_ETCD_INTERNAL_H
#define TERN_CLUSTER_ETCD_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/etcd.h"

/* Idle curl handles kept for reuse (each keeps its connections open). */
#define ETCD_POOL_MAX 8
/* A reply larger than this is refused rather than buffered. */
#define ETCD_REPLY_MAX (256u << 20)

struct etcd_endpoint {
	char *name;              /* as given, for messages */
	char *unix_path;         /* NULL: TCP */
	char *base_url;          /* "http://localhost" (unix) or "http://host:port" */
};

struct etcd {
	struct etcd_endpoint *ep;
	size_t n_ep;
	atomic_size_t current;   /* the endpoint tried first */
	atomic_int timeout_ms;
	struct curl_slist *headers;        /* of every request and watch */
	struct curl_slist *status_headers; /* of a status: no "require a leader" */
	pthread_mutex_t lock;              /* guards pool */
	CURL *pool[ETCD_POOL_MAX];
	size_t n_pool;
};

/* A growing byte buffer for replies. */
struct etcd_buf {
	char *p;
	size_t len, cap;
	bool too_big;            /* the reply outgrew ETCD_REPLY_MAX */
};

/* Appends n bytes (keeps a NUL after them); false when out of room. */
bool etcd_buf_add(struct etcd_buf *b, const void *data, size_t n);
void etcd_buf_free(struct etcd_buf *b);

/* ---- etcd_http.c ----------------------------------------------------------- */

/* POSTs body (JSON) to path ("/v3/kv/put") with failover (etcd.h). On
 * success *reply is the reply object (new reference). On failure err says
 * what each endpoint tried said, or the one answer that settles it. */
int etcd_call(struct etcd *e, const char *path, json_t *body, json_t **reply,
	      struct error *err);

/* Appends "; msg" (just msg when all is empty) to all, cut to size. */
void etcd_note_failure(char *all, size_t size, const char *msg);

/* Sets up h (fresh or reset) to POST body to path on ep: URL, socket,
 * headers, errbuf (CURL_ERROR_SIZE), no signals, HTTP only. The caller sets
 * the write callback and timeouts. */
CURLcode etcd_http_prepare(CURL *h, const struct etcd_endpoint *ep, const char *path,
			   const char *body, struct curl_slist *headers, char *errbuf);

/* Turns a failed transfer on ep into an error; *retry as above. */
int etcd_http_curl_error(CURL *h, const struct etcd_endpoint *ep, CURLcode rc,
			 const char *errbuf, int timeout_ms, bool *retry, struct error *err);

/* Turns a non-200 answer (body as received) into an error. */
int etcd_http_status_error(const struct etcd_endpoint *ep, long status, const char *body,
			   size_t len, bool *retry, struct error *err);

/* Turns etcd's error object into an error: either the gateway's reply to a
 * unary call ({"error": "...", "message": "...", "code": N}, with the HTTP
 * status) or a stream's ({"error": {"grpc_code": N, "http_code": S,
 * "message": "..."}}, status 200). */
int etcd_http_etcd_error(const struct etcd_endpoint *ep, long status, const json_t *reply,
			 bool *retry, struct error *err);

/* ---- etcd_codec.c ---------------------------------------------------------- */

/* Base64 of n bytes, NUL-terminated, malloc'ed; NULL when out of memory. */
char *etcd_b64_encode(const void *p, size_t n);
/* Decodes len base64 characters into a malloc'ed buffer with a NUL after
 * the *out_len bytes. -EINVAL on bad base64, -ENOMEM. */
int etcd_b64_decode(const char *s, size_t len, char **out, size_t *out_len);

/* obj[name] = base64(p, n). 0 or -ENOMEM. */
int etcd_json_set_bytes(json_t *obj, const char *name, const void *p, size_t n);
/* obj[name] = v (a JSON integer: exact for all of int64). 0 or -ENOMEM. */
int etcd_json_set_i64(json_t *obj, const char *name, int64_t v);
/* obj["key"] (and "range_end") for one key, or all keys under the prefix
 * when prefix is true. 0 or -ENOMEM. */
int etcd_json_set_range(json_t *obj, const char *key, bool prefix);

/* Reads an int64 that etcd sends as a string (or a number); a missing
 * field is 0, as etcd leaves zero values out. -EPROTO if malformed. */
int etcd_json_i64(const json_t *obj, const char *name, int64_t *out);
int etcd_json_u64(const json_t *obj, const char *name, uint64_t *out);
/* Reads a base64 field (missing: empty). -EPROTO or -ENOMEM. */
int etcd_json_bytes(const json_t *obj, const char *name, char **out, size_t *len);
/* A true boolean field (missing: false). */
bool etcd_json_true(const json_t *obj, const char *name);
/* reply["header"]["revision"], 0 if absent or malformed. */
int64_t etcd_header_revision(const json_t *reply);

/* Parses one mvccpb.KeyValue. err names the field that is wrong. */
int etcd_kv_from_json(const json_t *j, struct etcd_kv *kv, struct error *err);
/* Appends the kvs of a JSON array to *kvs (n of them). */
int etcd_kvs_append_json(const json_t *arr, struct etcd_kv **kvs, size_t *n,
			 struct error *err);

/* The range end that makes [key, end) cover every key under prefix (plen
 * bytes): prefix with its last byte below 0xff incremented and what
 * follows dropped; "\0" (to the end of the keyspace) when there is none.
 * out has room for max(plen, 1) bytes; returns the length. */
size_t etcd_prefix_end(const char *prefix, size_t plen, char *out);

/* Sleeps ms milliseconds. */
void etcd_sleep_ms(int ms);
int64_t etcd_now_ms(void);

#endif
