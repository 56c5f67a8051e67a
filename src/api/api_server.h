/* api_server.h: the control API, JSON over a unix stream socket
 * (protocol in docs/api.md). One request per line, one reply per line.
 *
 * The server owns the socket, framing, JSON parsing and validation of the
 * envelope; commands are registered by whoever implements them (the VM). */
#ifndef TERN_API_API_SERVER_H
#define TERN_API_API_SERVER_H

#include <jansson.h>

#include "util/error.h"

#define API_MAX_REQUEST_BYTES (64 * 1024)

struct api_server;

/* A command handler. `args` is the request's "args" object (never NULL: an
 * empty object when absent). On success it sets *result (a new reference,
 * or NULL for none) and returns 0; on failure it returns a negative errno
 * with err filled, which becomes the error reply. */
typedef int (*api_handler_fn)(void *opaque, json_t *args, json_t **result, struct error *err);

/* Creates the socket at path (owner-only permissions; a stale socket file
 * left by a dead process is replaced, a live one is refused). */
struct api_server *api_server_create(const char *path, struct error *err);
int api_server_register(struct api_server *srv, const char *command, api_handler_fn fn,
			void *opaque);
/* Serves in a background thread until api_server_destroy(); once started,
 * later calls do nothing. */
int api_server_start(struct api_server *srv, struct error *err);
void api_server_destroy(struct api_server *srv);

/* Turns one request line into one reply line (no trailing newline; caller
 * frees). The transport-independent core, also what unit tests drive. */
char *api_server_handle_line(struct api_server *srv, const char *line, size_t len);

#endif
