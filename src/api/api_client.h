/* api_client.h: the CLI's side of the control API. */
#ifndef TERN_API_API_CLIENT_H
#define TERN_API_API_CLIENT_H

#include <jansson.h>

#include "util/error.h"

/* Sends {"command": command, "args": args} to the socket at path and waits
 * up to timeout_ms for the reply. On an "ok" reply returns 0 and sets
 * *result (new reference, maybe NULL); on an error reply or a transport
 * failure returns a negative errno with err filled from the reply's message. */
int api_call(const char *path, const char *command, json_t *args, int timeout_ms,
	     json_t **result, struct error *err);

#endif
