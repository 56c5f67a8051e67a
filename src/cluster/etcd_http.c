/* etcd_http.c: the etcd client's transport: endpoints, curl handles,
 * failover, and the translation of every failure into one message.
 *
 * Each request is a POST of a JSON body to the JSON gateway of one member.
 * Requests start on the endpoint that answered last and move on to the
 * next one on anything that another member might answer better: no
 * connection, a timeout, HTTP 5xx, or etcd saying it has no leader or is
 * unavailable (etcd.h). Answers that settle the matter (a 4xx from etcd: bad
 * request, no such lease, compacted revision) are returned at once.
 *
 * Idle curl handles wait in a small pool guarded by a mutex; a request takes
 * one, uses it without any lock, and gives it back, so threads never wait
 * for each other's requests and connections are reused. */
#include "cluster/etcd_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Pause before going around the endpoints a second time, when a member
 * answered that it was between leaders. */
#define ETCD_ROUND_PAUSE_MS 200

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- endpoints ------------------------------------------------------------- */

static void endpoint_free(struct etcd_endpoint *ep)
{
	free(ep->name);
	free(ep->unix_path);
	free(ep->base_url);
}

/* Parses one entry of the list: "unix:/path", "unix:///path", "http://host:port". */
static int endpoint_parse(const char *s, size_t len, struct etcd_endpoint *ep, struct error *err)
{
	memset(ep, 0, sizeof(*ep));
	ep->name = strndup(s, len);
	if (!ep->name)
		return error_set(err, ENOMEM, "out of memory");
	const char *name = ep->name;
	if (strncmp(name, "unix:", 5) == 0) {
		const char *path = name + 5;
		if (strncmp(path, "//", 2) == 0)
			path += 2;
		if (path[0] != '/')
			return error_set(err, EINVAL, "etcd endpoint \"%s\": the socket path must be "
					 "absolute (unix:/path/to/socket)", name);
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return error_set(err, EINVAL, "etcd endpoint \"%s\": socket path longer than "
					 "%zu bytes", name,
					 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		ep->unix_path = strdup(path);
		ep->base_url = strdup("http://localhost");
	} else if (strncmp(name, "http://", 7) == 0) {
		size_t n = strlen(name);
		while (n > 7 && name[n - 1] == '/')
			n--;
		if (n == 7 || memchr(name + 7, '/', n - 7))
			return error_set(err, EINVAL, "etcd endpoint \"%s\" is not http://HOST:PORT",
					 name);
		ep->base_url = strndup(name, n);
	} else if (strncmp(name, "https://", 8) == 0) {
		return error_set(err, EINVAL, "etcd endpoint \"%s\": TLS is not supported; use "
				 "http://HOST:PORT or unix:/PATH", name);
	} else {
		return error_set(err, EINVAL, "etcd endpoint \"%s\" is neither unix:/PATH nor "
				 "http://HOST:PORT", name);
	}
	if (!ep->base_url || (strncmp(name, "unix:", 5) == 0 && !ep->unix_path))
		return error_set(err, ENOMEM, "out of memory");
	return 0;
}

static int parse_endpoints(struct etcd *e, const char *list, struct error *err)
{
	size_t cap = 1;
	for (const char *p = list; *p; p++)
		cap += *p == ',';
	e->ep = calloc(cap, sizeof(*e->ep));
	if (!e->ep)
		return error_set(err, ENOMEM, "out of memory");
	for (const char *p = list;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		while (len && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len) {
			int rc = endpoint_parse(p, len, &e->ep[e->n_ep], err);
			e->n_ep++;
			if (rc < 0)
				return rc;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	if (!e->n_ep)
		return error_set(err, EINVAL, "no etcd endpoint given in \"%s\"", list);
	return 0;
}

struct etcd *etcd_open(const char *endpoints, struct error *err)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		error_set(err, EIO, "cannot initialise libcurl: %s", curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	if (!endpoints) {
		error_set(err, EINVAL, "no etcd endpoints given");
		return NULL;
	}
	struct etcd *e = calloc(1, sizeof(*e));
	if (!e) {
		error_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	atomic_init(&e->current, 0);
	atomic_init(&e->timeout_ms, ETCD_DEFAULT_TIMEOUT_MS);
	int rc = pthread_mutex_init(&e->lock, NULL);
	if (rc) {
		free(e);
		error_errno(err, rc, "etcd client");
		return NULL;
	}
	if (parse_endpoints(e, endpoints, err) < 0) {
		etcd_close(e);
		return NULL;
	}
	/* "Expect:" stops curl from waiting for "100 Continue" on large bodies.
	 * Grpc-Metadata-* headers become gRPC metadata, and "hasleader" makes
	 * a member without a leader say so at once ("etcdserver: no leader",
	 * and the request moves on) instead of holding a write until its own
	 * 5 s timeout or leaving a watch silent while the others go on. */
	static const char *const lines[] = {
		"Content-Type: application/json", "Expect:", "Grpc-Metadata-hasleader: true",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct curl_slist *h = curl_slist_append(e->headers, lines[i]);
		if (!h)
			goto oom;
		e->headers = h;
		if (i == 2)
			break;   /* a status must answer with or without a leader */
		h = curl_slist_append(e->status_headers, lines[i]);
		if (!h)
			goto oom;
		e->status_headers = h;
	}
	return e;
oom:
	etcd_close(e);
	error_set(err, ENOMEM, "out of memory");
	return NULL;
}

void etcd_close(struct etcd *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n_pool; i++)
		curl_easy_cleanup(e->pool[i]);
	for (size_t i = 0; i < e->n_ep; i++)
		endpoint_free(&e->ep[i]);
	free(e->ep);
	curl_slist_free_all(e->headers);
	curl_slist_free_all(e->status_headers);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

void etcd_set_timeout_ms(struct etcd *e, int timeout_ms)
{
	atomic_store(&e->timeout_ms, timeout_ms > 0 ? timeout_ms : 1);
}

size_t etcd_endpoint_count(const struct etcd *e)
{
	return e->n_ep;
}

const char *etcd_endpoint_name(const struct etcd *e, size_t i)
{
	return i < e->n_ep ? e->ep[i].name : NULL;
}

size_t etcd_current_endpoint(const struct etcd *e)
{
	return atomic_load(&e->current);
}

/* ---- curl handles ------------------------------------------------------------ */

static CURL *handle_take(struct etcd *e)
{
	CURL *h = NULL;
	pthread_mutex_lock(&e->lock);
	if (e->n_pool)
		h = e->pool[--e->n_pool];
	pthread_mutex_unlock(&e->lock);
	return h ? h : curl_easy_init();
}

static void handle_give(struct etcd *e, CURL *h)
{
	/* Forget the options (they point into the finished request's stack),
	 * keep the connections. */
	curl_easy_reset(h);
	pthread_mutex_lock(&e->lock);
	if (e->n_pool < ETCD_POOL_MAX) {
		e->pool[e->n_pool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&e->lock);
	if (h)
		curl_easy_cleanup(h);
}

static size_t reply_write(char *data, size_t size, size_t nmemb, void *opaque)
{
	struct etcd_buf *b = opaque;
	return etcd_buf_add(b, data, size * nmemb) ? size * nmemb : 0;
}

CURLcode etcd_http_prepare(CURL *h, const struct etcd_endpoint *ep, const char *path,
			   const char *body, struct curl_slist *headers, char *errbuf)
{
	char url[1024];
	int n = snprintf(url, sizeof(url), "%s%s", ep->base_url, path);
	if (n < 0 || (size_t)n >= sizeof(url))
		return CURLE_URL_MALFORMAT;
	errbuf[0] = '\0';
	CURLcode rc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http");
	if (ep->unix_path)
		SET(CURLOPT_UNIX_SOCKET_PATH, ep->unix_path);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_POSTFIELDS, body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
#undef SET
	return rc;
}

/* ---- errors ------------------------------------------------------------------ */

/* gRPC status codes (grpc/codes) as errnos. */
static int grpc_errno(long code, const char *msg)
{
	switch (code) {
	case 1:  return ECANCELED;
	case 3:  return EINVAL;     /* invalid argument */
	case 4:  return ETIMEDOUT;  /* deadline exceeded */
	case 5:  return ENOENT;     /* not found (lease) */
	case 6:  return EEXIST;
	case 7:  return EACCES;     /* permission denied */
	case 8:  return ENOSPC;     /* resource exhausted: quota, too many requests */
	case 9:  return EINVAL;     /* failed precondition */
	case 11: return ERANGE;     /* out of range: compacted or future revision */
	case 12: return ENOTSUP;
	case 14: return EAGAIN;     /* unavailable: no leader, leader changed, timed out */
	case 16: return EACCES;     /* unauthenticated */
	default:
		if (msg && (strstr(msg, "deadline exceeded") || strstr(msg, "timed out")))
			return ETIMEDOUT;
		return EIO;
	}
}

/* Whether the message is one of etcd's "ask another member" errors. */
static bool transient_message(const char *msg)
{
	static const char *const words[] = {
		"no leader", "leader changed", "not capable", "unavailable", "timed out",
		"deadline exceeded", "stopped", "too many requests",
	};
	for (size_t i = 0; msg && i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(msg, words[i]))
			return true;
	return false;
}

int etcd_http_etcd_error(const struct etcd_endpoint *ep, long status, const json_t *reply,
			 bool *retry, struct error *err)
{
	const json_t *eo = json_object_get(reply, "error");
	const char *msg = NULL;
	json_int_t code = -1;
	if (json_is_object(eo)) {            /* a stream's error */
		msg = json_string_value(json_object_get(eo, "message"));
		const json_t *c = json_object_get(eo, "grpc_code");
		if (json_is_integer(c))
			code = json_integer_value(c);
		const json_t *hc = json_object_get(eo, "http_code");
		if (json_is_integer(hc))
			status = (long)json_integer_value(hc);
	} else {                             /* a unary call's error */
		msg = json_string_value(json_object_get(reply, "message"));
		if (!msg)
			msg = json_string_value(eo);
		const json_t *c = json_object_get(reply, "code");
		if (json_is_integer(c))
			code = json_integer_value(c);
	}
	if (!msg)
		msg = "(no message)";
	*retry = status >= 500 || code == 14 || code == 4 || transient_message(msg);
	int errnum = grpc_errno((long)code, msg);
	if (code < 0 && status == 404)
		errnum = ENOENT;
	if (code >= 0)
		return error_set(err, errnum, "%s: HTTP %ld: %s (gRPC code %lld)", ep->name, status,
				 msg, (long long)code);
	return error_set(err, errnum, "%s: HTTP %ld: %s", ep->name, status, msg);
}

int etcd_http_status_error(const struct etcd_endpoint *ep, long status, const char *body,
			   size_t len, bool *retry, struct error *err)
{
	json_t *reply = len ? json_loadb(body, len, 0, NULL) : NULL;
	if (json_is_object(reply) && json_object_get(reply, "error")) {
		int rc = etcd_http_etcd_error(ep, status, reply, retry, err);
		json_decref(reply);
		return rc;
	}
	json_decref(reply);
	/* Not etcd's JSON (a proxy, the wrong server): quote the start of it. */
	char text[160];
	size_t n = 0;
	for (size_t i = 0; i < len && n + 1 < sizeof(text); i++)
		text[n++] = isprint((unsigned char)body[i]) ? body[i] : ' ';
	while (n && text[n - 1] == ' ')
		n--;
	text[n] = '\0';
	*retry = status >= 500;
	int errnum = status == 404 ? ENOENT : status >= 500 ? EAGAIN : EIO;
	return error_set(err, errnum, "%s: HTTP %ld%s%s", ep->name, status, n ? ": " : "", text);
}

int etcd_http_curl_error(CURL *h, const struct etcd_endpoint *ep, CURLcode rc,
			 const char *errbuf, int timeout_ms, bool *retry, struct error *err)
{
	const char *what = curl_easy_strerror(rc);
	const char *detail = errbuf && errbuf[0] ? errbuf : what;
	long oserr = 0;
	if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr) != CURLE_OK)
		oserr = 0;
	*retry = true;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		if (oserr > 0)
			return error_set(err, ECONNREFUSED, "%s: cannot connect: %s (curl: %s)",
					 ep->name, strerror((int)oserr), detail);
		return error_set(err, ECONNREFUSED, "%s: cannot connect (curl: %s)", ep->name, detail);
	case CURLE_OPERATION_TIMEDOUT:
		return error_set(err, ETIMEDOUT, "%s: no answer within %d ms (curl: %s)", ep->name,
				 timeout_ms, detail);
	case CURLE_OUT_OF_MEMORY:
		*retry = false;
		return error_set(err, ENOMEM, "%s: curl: %s", ep->name, detail);
	case CURLE_ABORTED_BY_CALLBACK:
		*retry = false;
		return error_set(err, ECANCELED, "%s: curl: %s", ep->name, detail);
	default:
		return error_set(err, EIO, "%s: curl: %s%s%s", ep->name, what,
				 strcmp(detail, what) ? ": " : "", strcmp(detail, what) ? detail : "");
	}
}

/* ---- requests -------------------------------------------------------------- */

/* POSTs body to path on endpoint i only; *retry says whether another
 * endpoint might do better, *answered whether the member answered in HTTP. */
static int call_one(struct etcd *e, size_t i, const char *path, const char *body,
		    struct curl_slist *headers, json_t **reply, bool *retry, bool *answered,
		    struct error *err)
{
	const struct etcd_endpoint *ep = &e->ep[i];
	int timeout_ms = atomic_load(&e->timeout_ms);
	char errbuf[CURL_ERROR_SIZE];
	struct etcd_buf buf = { 0 };
	int rc;

	*reply = NULL;
	*retry = false;
	*answered = false;
	CURL *h = handle_take(e);
	if (!h)
		return error_set(err, ENOMEM, "%s: cannot create a curl handle", ep->name);
	CURLcode crc = etcd_http_prepare(h, ep, path, body, headers, errbuf);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, reply_write);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	if (crc != CURLE_OK) {
		rc = error_set(err, EIO, "%s: cannot set up the request: %s", ep->name,
			       curl_easy_strerror(crc));
		goto out;
	}
	crc = curl_easy_perform(h);
	if (crc == CURLE_WRITE_ERROR && buf.too_big) {
		rc = error_set(err, EFBIG, "%s: the reply to %s is larger than %u MiB", ep->name,
			       path, ETCD_REPLY_MAX >> 20);
		goto out;
	}
	if (crc == CURLE_WRITE_ERROR) {
		rc = error_set(err, ENOMEM, "%s: out of memory for the reply to %s", ep->name, path);
		goto out;
	}
	if (crc != CURLE_OK) {
		rc = etcd_http_curl_error(h, ep, crc, errbuf, timeout_ms, retry, err);
		goto out;
	}
	long status = 0;
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	*answered = true;
	if (status != 200) {
		rc = etcd_http_status_error(ep, status, buf.p, buf.len, retry, err);
		goto out;
	}
	json_error_t jerr;
	json_t *j = json_loadb(buf.p ? buf.p : "", buf.len, 0, &jerr);
	if (!j) {
		rc = error_set(err, EPROTO, "%s: the reply to %s is not JSON: %s", ep->name, path,
			       jerr.text);
		goto out;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		rc = error_set(err, EPROTO, "%s: the reply to %s is not a JSON object", ep->name,
			       path);
		goto out;
	}
	/* Streams (lease keepalive) report errors inside a 200 reply. An empty
	 * "error" string is how a unary reply says "none". */
	const json_t *eo = json_object_get(j, "error");
	if (eo && !(json_is_string(eo) && json_string_length(eo) == 0)) {
		rc = etcd_http_etcd_error(ep, status, j, retry, err);
		json_decref(j);
		goto out;
	}
	*reply = j;
	rc = 0;
out:
	handle_give(e, h);
	etcd_buf_free(&buf);
	return rc;
}

void etcd_note_failure(char *all, size_t size, const char *msg)
{
	size_t used = strnlen(all, size - 1);
	const char *parts[] = { used ? "; " : "", msg };
	for (unsigned i = 0; i < 2; i++) {
		size_t n = strnlen(parts[i], size - 1 - used);
		memcpy(all + used, parts[i], n);
		used += n;
	}
	all[used] = '\0';
}

int etcd_call(struct etcd *e, const char *path, json_t *body, json_t **reply,
	      struct error *err)
{
	char *text = json_dumps(body, JSON_COMPACT);
	if (!text)
		return error_set(err, ENOMEM, "cannot encode the request to %s", path);
	char all[sizeof(err->msg)] = "";
	struct error one = { 0 };
	size_t start = atomic_load(&e->current), tries = 0;
	/* The code to report: what a member said beats "could not reach it". */
	int code = EIO;
	bool member_said = false;

	for (int round = 0; round < 2; round++) {
		bool answered_any = false;
		if (round)
			etcd_sleep_ms(ETCD_ROUND_PAUSE_MS);
		all[0] = '\0';              /* the message tells the last round */
		for (size_t k = 0; k < e->n_ep; k++) {
			size_t i = (start + k) % e->n_ep;
			bool retry, answered;
			one.code = 0;
			one.msg[0] = '\0';
			int rc = call_one(e, i, path, text, e->headers, reply, &retry, &answered, &one);
			tries++;
			if (rc == 0 || !retry) {
				/* A member answered for the cluster: ask it first next time. */
				if (answered)
					atomic_store(&e->current, i);
				free(text);
				if (rc < 0 && err)
					*err = one;
				return rc;
			}
			etcd_note_failure(all, sizeof(all), one.msg);
			if (answered || !member_said)
				code = one.code ? one.code : EIO;
			member_said |= answered;
			answered_any |= answered;
		}
		if (!answered_any)
			break;
	}
	free(text);
	if (tries == 1)
		return error_set(err, code, "%s", all);
	return error_set(err, code, "every etcd endpoint failed (%zu tries): %s", tries, all);
}

int etcd_endpoint_status(struct etcd *e, size_t i, struct etcd_status *st, struct error *err)
{
	memset(st, 0, sizeof(*st));
	if (i >= e->n_ep)
		return error_set(err, EINVAL, "etcd status: no endpoint %zu (there are %zu)", i,
				 e->n_ep);
	json_t *reply;
	bool retry, answered;
	int rc = call_one(e, i, "/v3/maintenance/status", "{}", e->status_headers, &reply, &retry,
			  &answered, err);
	if (rc < 0)
		return error_wrap(err, "etcd status");
	const char *version = json_string_value(json_object_get(reply, "version"));
	if (etcd_json_u64(json_object_get(reply, "header"), "member_id", &st->member_id) < 0 ||
	    etcd_json_u64(reply, "leader", &st->leader_id) < 0 ||
	    etcd_json_i64(reply, "raftTerm", &st->raft_term) < 0) {
		json_decref(reply);
		return error_set(err, EPROTO, "etcd status of %s: malformed reply", e->ep[i].name);
	}
	st->revision = etcd_header_revision(reply);
	snprintf(st->version, sizeof(st->version), "%s", version ? version : "");
	json_decref(reply);
	return 0;
}
