/* etcd_lease.c: leases (/v3/lease/grant, /v3/lease/keepalive,
 * /v3/lease/revoke, /v3/kv/lease/timetolive).
 *
 * Lease ids are 63-bit: they go out as JSON integers (jansson's are 64-bit)
 * and come back as decimal strings, never through a double. The keepalive
 * endpoint is a gRPC stream behind the gateway: one request gives one
 * {"result": ...} line, HTTP 200 even for a lease that no longer exists,
 * which then simply has no TTL. */
#include "cluster/etcd_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* POSTs {"ID": id} (plus TTL when ttl > 0) to path. */
static int lease_call(struct etcd *e, const char *path, int64_t id, int64_t ttl,
		      json_t **reply, struct error *err)
{
	json_t *body = json_object();
	int rc = body ? 0 : -ENOMEM;
	if (!rc && id)
		rc = etcd_json_set_i64(body, "ID", id);
	if (!rc && ttl)
		rc = etcd_json_set_i64(body, "TTL", ttl);
	if (rc) {
		json_decref(body);
		return error_set(err, ENOMEM, "out of memory");
	}
	rc = etcd_call(e, path, body, reply, err);
	json_decref(body);
	return rc;
}

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
		     struct error *err)
{
	json_t *reply;
	*id = 0;
	if (granted_ttl)
		*granted_ttl = 0;
	if (ttl_s <= 0)
		return error_set(err, EINVAL, "etcd lease grant: TTL %" PRId64 " s is not positive",
				 ttl_s);
	int rc = lease_call(e, "/v3/lease/grant", 0, ttl_s, &reply, err);
	if (rc < 0)
		return error_wrap(err, "etcd lease grant (TTL %" PRId64 " s)", ttl_s);
	int64_t got_id, got_ttl;
	if (etcd_json_i64(reply, "ID", &got_id) < 0 || etcd_json_i64(reply, "TTL", &got_ttl) < 0 ||
	    got_id <= 0 || got_ttl <= 0) {
		json_decref(reply);
		return error_set(err, EPROTO, "etcd lease grant (TTL %" PRId64 " s): the reply has "
				 "no valid ID and TTL", ttl_s);
	}
	json_decref(reply);
	*id = got_id;
	if (granted_ttl)
		*granted_ttl = got_ttl;
	return 0;
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl, struct error *err)
{
	json_t *reply;
	if (ttl)
		*ttl = 0;
	int rc = lease_call(e, "/v3/lease/keepalive", id, 0, &reply, err);
	if (rc < 0)
		return error_wrap(err, "etcd lease keepalive %" PRId64, id);
	const json_t *result = json_object_get(reply, "result");
	int64_t got_id, got_ttl;
	if (!json_is_object(result) || etcd_json_i64(result, "ID", &got_id) < 0 ||
	    etcd_json_i64(result, "TTL", &got_ttl) < 0) {
		json_decref(reply);
		return error_set(err, EPROTO, "etcd lease keepalive %" PRId64 ": malformed reply", id);
	}
	json_decref(reply);
	if (got_ttl <= 0)
		return error_set(err, ENOENT, "etcd lease keepalive: lease %" PRId64 " (%#" PRIx64
				 ") expired or was revoked", id, (uint64_t)id);
	if (got_id != id)
		return error_set(err, EPROTO, "etcd lease keepalive %" PRId64 ": the reply is about "
				 "lease %" PRId64, id, got_id);
	if (ttl)
		*ttl = got_ttl;
	return 0;
}

int etcd_lease_revoke(struct etcd *e, int64_t id, struct error *err)
{
	json_t *reply;
	int rc = lease_call(e, "/v3/lease/revoke", id, 0, &reply, err);
	if (rc < 0)
		return error_wrap(err, "etcd lease revoke %" PRId64, id);
	json_decref(reply);
	return 0;
}

int etcd_lease_ttl(struct etcd *e, int64_t id, int64_t *ttl, int64_t *granted_ttl,
		   struct error *err)
{
	json_t *reply;
	if (ttl)
		*ttl = 0;
	if (granted_ttl)
		*granted_ttl = 0;
	int rc = lease_call(e, "/v3/kv/lease/timetolive", id, 0, &reply, err);
	if (rc < 0)
		return error_wrap(err, "etcd lease ttl %" PRId64, id);
	int64_t left, granted;
	if (etcd_json_i64(reply, "TTL", &left) < 0 || etcd_json_i64(reply, "grantedTTL", &granted) < 0) {
		json_decref(reply);
		return error_set(err, EPROTO, "etcd lease ttl %" PRId64 ": malformed reply", id);
	}
	json_decref(reply);
	/* An unknown (expired, revoked) lease: TTL -1. etcd rounds the time
	 * left down, so a lease in its last second says 0. */
	if (left < 0)
		return error_set(err, ENOENT, "etcd lease ttl: lease %" PRId64 " (%#" PRIx64 ") "
				 "expired or was revoked", id, (uint64_t)id);
	if (ttl)
		*ttl = left;
	if (granted_ttl)
		*granted_ttl = granted;
	return 0;
}
