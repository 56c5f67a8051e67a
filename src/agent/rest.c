/* rest.c: see rest.h. One libmicrohttpd daemon per listener (the unix
 * socket, and TCP if asked), both dispatching to one route table. */
#include "agent/rest.h"
#include "agent/rest_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/unix_listen.h"
#include "util/log.h"

unsigned rest_status_of_errno(int code)
{
	switch (code) {
	case EINVAL: case E2BIG: case ENAMETOOLONG: return 400;
	case EACCES: case EPERM: return 401;
	case ENOENT: case ESRCH: return 404;
	case EBUSY: case EEXIST: case ENOSPC: case EALREADY: return 409;
	case ETIMEDOUT: return 504;
	case EAGAIN: case ECONNREFUSED: case EHOSTUNREACH: return 503;
	default: return 500;
	}
}

/* Whether path matches pattern, collecting the "{}" segments. */
static bool match(const char *pattern, const char *path, struct rest_request *req)
{
	req->n_params = 0;
	static __thread char segs[REST_MAX_PARAMS][REST_SEGMENT_MAX];
	while (*pattern && *path) {
		if (*pattern != '/' || *path != '/')
			return false;
		pattern++;
		path++;
		const char *pe = strchrnul(pattern, '/'), *se = strchrnul(path, '/');
		size_t plen = (size_t)(pe - pattern), slen = (size_t)(se - path);
		if (plen == 2 && !memcmp(pattern, "{}", 2)) {
			if (!slen || slen >= REST_SEGMENT_MAX || req->n_params == REST_MAX_PARAMS)
				return false;
			memcpy(segs[req->n_params], path, slen);
			segs[req->n_params][slen] = 0;
			req->params[req->n_params] = segs[req->n_params];
			req->n_params++;
		} else if (plen != slen || memcmp(pattern, path, plen)) {
			return false;
		}
		pattern = pe;
		path = se;
	}
	return !*pattern && !*path;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return MHD_NO;
	size_t len = strlen(text);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ok = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ok;
}

enum MHD_Result rest_send_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
	json_t *body = json_pack("{s:s}", "error", msg);
	if (!body)
		return MHD_NO;
	enum MHD_Result ok = send_json(c, status, body);
	json_decref(body);
	return ok;
}

static bool authorized(struct rest_server *srv, struct MHD_Connection *c, bool over_tcp)
{
	if (!over_tcp)
		return true;    /* the socket file's permissions decided */
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	static const char bearer[] = "Bearer ";
	if (!h || strncmp(h, bearer, sizeof(bearer) - 1))
		return false;
	h += sizeof(bearer) - 1;
	size_t len = strlen(srv->token);
	return strlen(h) == len && CRYPTO_memcmp(h, srv->token, len) == 0;
}

static enum MHD_Result dispatch(struct rest_server *srv, struct MHD_Connection *c,
				const char *url, const char *method, struct rest_upload *up)
{
	if (up->too_big)
		return rest_send_error(c, 413, "the request body is larger than 256 KiB");
	struct rest_request req = { .method = method, .path = url };
	if (up->len) {
		json_error_t jerr;
		req.body = json_loadb(up->data, up->len, JSON_REJECT_DUPLICATES, &jerr);
		if (!req.body) {
			char msg[300];
			snprintf(msg, sizeof(msg), "the body is not JSON: %s (at byte %d)", jerr.text,
				 jerr.position);
			return rest_send_error(c, 400, msg);
		}
	}
	req.query_dry_run = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "dry_run");
	const struct rest_route *found = NULL;
	bool path_known = false;
	for (unsigned i = 0; i < srv->n_routes && !found; i++) {
		if (!match(srv->routes[i].pattern, url, &req))
			continue;
		path_known = true;
		if (!strcmp(srv->routes[i].method, method))
			found = &srv->routes[i];
	}
	enum MHD_Result ok;
	if (!found) {
		char msg[400];
		snprintf(msg, sizeof(msg), path_known ? "%s is not allowed on %s" :
			 "no such resource: %s %s", method, url);
		ok = rest_send_error(c, path_known ? 405 : 404, msg);
	} else {
		/* match() again: the loop may have gone on past a path match. */
		match(found->pattern, url, &req);
		json_t *reply = NULL;
		struct error err = { 0 };
		int rc = found->fn(found->opaque, &req, &reply, &err);
		if (rc < 0) {
			int code = err.code ? err.code : -rc;
			ok = rest_send_error(c, rest_status_of_errno(code),
					err.msg[0] ? err.msg : strerror(code));
		} else {
			if (!reply)
				reply = json_object();
			ok = reply ? send_json(c, 200, reply) : MHD_NO;
		}
		json_decref(reply);
	}
	json_decref(req.body);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **con_cls,
				  bool over_tcp)
{
	struct rest_server *srv = cls;
	struct rest_upload *up = *con_cls;
	if (!up) {
		up = calloc(1, sizeof(*up));
		if (!up)
			return MHD_NO;
		*con_cls = up;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!up->too_big && up->len + *upload_size <= REST_MAX_BODY) {
			char *more = realloc(up->data, up->len + *upload_size);
			if (!more)
				return MHD_NO;
			memcpy(more + up->len, upload_data, *upload_size);
			up->data = more;
			up->len += *upload_size;
		} else {
			up->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	enum MHD_Result result;
	if (!strcmp(method, "GET") && rest_static_request(srv, c, url, &result))
		return result;
	if (!authorized(srv, c, over_tcp))
		return rest_send_error(c, 401, "this API needs \"Authorization: Bearer TOKEN\" over TCP "
				  "(the cluster's token file)");
	const struct rest_stream_route *stream = strcmp(method, "GET") ? NULL :
						 rest_find_stream(srv, url);
	if (stream)
		return rest_send_stream(srv, c, stream);
	return dispatch(srv, c, url, method, up);
}

static enum MHD_Result on_unix_request(void *cls, struct MHD_Connection *c, const char *url,
				       const char *method, const char *version,
				       const char *upload_data, size_t *upload_size, void **con_cls)
{
	return on_request(cls, c, url, method, version, upload_data, upload_size, con_cls, false);
}

static enum MHD_Result on_tcp_request(void *cls, struct MHD_Connection *c, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_size, void **con_cls)
{
	return on_request(cls, c, url, method, version, upload_data, upload_size, con_cls, true);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct rest_upload *up = *con_cls;
	if (up) {
		free(up->data);
		free(up);
	}
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	log_warn("rest: %s", msg);
}

static int parse_tcp(const char *text, struct sockaddr_in *sa, struct error *err)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return error_set(err, EINVAL, "\"%s\" is not IP:PORT", text);
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 1 || port > 65535)
		return error_set(err, EINVAL, "\"%s\": the port must be 1 to 65535", text);
	*sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return error_set(err, EINVAL, "\"%s\": \"%s\" is not an IPv4 address", text, host);
	return 0;
}

struct rest_server *rest_server_create(const char *unix_path, const char *tcp_addr,
				       const char *token, struct error *err)
{
	struct rest_server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		error_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	srv->sock.fd = -1;
	if (tcp_addr) {
		if (!token || strlen(token) < 16 || strlen(token) >= sizeof(srv->token)) {
			error_set(err, EINVAL, "a REST API on TCP needs a token of 16 to %zu "
				  "characters", sizeof(srv->token) - 1);
			goto fail;
		}
		snprintf(srv->token, sizeof(srv->token), "%s", token);
		if (parse_tcp(tcp_addr, &srv->tcp_addr, err) < 0)
			goto fail;
		srv->tcp = true;
	}
	if (unix_listen(&srv->sock, unix_path, REST_BACKLOG, true, err) < 0)
		goto fail;
	return srv;
fail:
	rest_server_destroy(srv);
	return NULL;
}

int rest_route(struct rest_server *srv, const char *method, const char *pattern,
	       rest_handler_fn fn, void *opaque)
{
	if (srv->n_routes == REST_MAX_ROUTES || strlen(method) >= sizeof(srv->routes[0].method) ||
	    strlen(pattern) >= sizeof(srv->routes[0].pattern))
		return -ENOSPC;
	struct rest_route *r = &srv->routes[srv->n_routes++];
	snprintf(r->method, sizeof(r->method), "%s", method);
	snprintf(r->pattern, sizeof(r->pattern), "%s", pattern);
	r->fn = fn;
	r->opaque = opaque;
	return 0;
}

int rest_server_start(struct rest_server *srv, struct error *err)
{
	const unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			       MHD_USE_POLL | MHD_USE_ERROR_LOG;
	srv->unix_daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_unix_request, srv,
					    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
					    MHD_OPTION_LISTEN_SOCKET, srv->sock.fd,
					    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
					    MHD_OPTION_CONNECTION_TIMEOUT,
					    (unsigned)REST_CONNECTION_TIMEOUT_S,
					    MHD_OPTION_END);
	if (!srv->unix_daemon)
		return error_set(err, EIO, "cannot serve the REST API on %s (libmicrohttpd "
				 "refused; see the log)", srv->sock.path);
	if (!srv->tcp)
		return 0;
	srv->tcp_daemon = MHD_start_daemon(flags, ntohs(srv->tcp_addr.sin_port), NULL, NULL,
					   on_tcp_request, srv,
					   MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
					    MHD_OPTION_SOCK_ADDR, &srv->tcp_addr,
					   MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
					   MHD_OPTION_CONNECTION_TIMEOUT,
					   (unsigned)REST_CONNECTION_TIMEOUT_S,
					   MHD_OPTION_END);
	if (!srv->tcp_daemon) {
		char addr[INET_ADDRSTRLEN] = "?";
		inet_ntop(AF_INET, &srv->tcp_addr.sin_addr, addr, sizeof(addr));
		return error_set(err, EADDRINUSE, "cannot serve the REST API on %s:%u (in use, "
				 "or not an address of this host)", addr,
				 ntohs(srv->tcp_addr.sin_port));
	}
	return 0;
}

void rest_server_destroy(struct rest_server *srv)
{
	if (!srv)
		return;
	srv->stopping = true;
	if (srv->tcp_daemon)
		MHD_stop_daemon(srv->tcp_daemon);
	if (srv->unix_daemon) {
		/* The daemon owns the listening socket from here: it closes it. */
		MHD_stop_daemon(srv->unix_daemon);
		srv->sock.fd = -1;
	}
	unix_listen_close(&srv->sock);
	free(srv);
}
