/* rest.h: the agent's REST API server, JSON over HTTP (libmicrohttpd), on
 * a unix socket and optionally on TCP (docs/cluster.md, "REST API").
 *
 * Routes are a method and a path pattern whose "{}" segments match one
 * path segment each ("/v1/vms/{}/migrate"). The unix socket is trusted by
 * its file permissions; TCP requests need "Authorization: Bearer TOKEN". */
#ifndef TERN_AGENT_REST_H
#define TERN_AGENT_REST_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

#define REST_MAX_BODY (256 * 1024)
#define REST_MAX_PARAMS 4

struct rest_request {
	const char *method;
	const char *path;
	const char *params[REST_MAX_PARAMS];   /* the "{}" segments, in order */
	unsigned n_params;
	json_t *body;                           /* the JSON body, or NULL */
	const char *query_dry_run;              /* ?dry_run=..., or NULL */
};

/* Fills *reply (a new reference; NULL for an empty object) and returns 0
 * (200), or returns a negative errno with err set: the reply is then
 * {"error": message} with the HTTP status rest_status_of_errno gives. */
typedef int (*rest_handler_fn)(void *opaque, const struct rest_request *req, json_t **reply,
			       struct error *err);

struct rest_server;

/* unix_path: where to create the socket (a stale one is replaced, a live
 * one refused); tcp_addr: "IP:PORT" or NULL; token: the bearer token TCP
 * clients must send (required if tcp_addr is set). */
struct rest_server *rest_server_create(const char *unix_path, const char *tcp_addr,
				       const char *token, struct error *err);
int rest_route(struct rest_server *srv, const char *method, const char *pattern,
	       rest_handler_fn fn, void *opaque);

/* A server-sent event stream on GET pattern: fn is called for the first
 * event at once, then every interval_ms, for as long as the client stays;
 * each *event (a new reference) goes out as one "data: JSON" event. An
 * error ends the stream with an "event: error" carrying its message. */
typedef int (*rest_event_fn)(void *opaque, json_t **event, struct error *err);
int rest_stream(struct rest_server *srv, const char *pattern, rest_event_fn fn, void *opaque,
		unsigned interval_ms);

/* Serves the files of dir (not its subdirectories) on GET /ui/NAME, and
 * dir/index.html on GET /, without the token: the page is public, the
 * data it asks for needs the token. */
int rest_static(struct rest_server *srv, const char *dir, struct error *err);
/* Starts serving (a thread per connection, so a slow handler holds up
 * only its own client). */
int rest_server_start(struct rest_server *srv, struct error *err);
void rest_server_destroy(struct rest_server *srv);

/* 400 for EINVAL, 404 ENOENT, 409 EBUSY/EEXIST/ENOSPC, 401 EACCES, 504
 * ETIMEDOUT, 503 EAGAIN/ECONNREFUSED, 500 otherwise. */
unsigned rest_status_of_errno(int code);

#endif
