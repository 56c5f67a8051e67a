/* http_client.h: JSON requests to an agent's REST API (libcurl), from the
 * CLI and from one agent to another. */
#ifndef TERN_AGENT_HTTP_CLIENT_H
#define TERN_AGENT_HTTP_CLIENT_H

#include <jansson.h>

#include "util/error.h"

/* Sends method path (with body, if not NULL) to `where`: "unix:/PATH" or
 * "http://IP:PORT"; token is the bearer token (TCP) or NULL. On a 2xx
 * reply returns 0 with *reply set (new reference). Otherwise a negative
 * errno, with err holding the agent's {"error": ...} message, or what
 * failed on the way (the address and curl's reason). */
int http_json(const char *where, const char *token, const char *method, const char *path,
	      json_t *body, int timeout_ms, json_t **reply, struct error *err);

#endif
