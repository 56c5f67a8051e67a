/* rest_priv.h: the REST server's insides, shared by rest.c (JSON routes),
 * rest_stream.c (event streams) and rest_static.c (the dashboard's files). */
#ifndef TERN_AGENT_REST_PRIV_H
#define TERN_AGENT_REST_PRIV_H

#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>

#include "agent/rest.h"
#include "api/unix_listen.h"

#define REST_MAX_ROUTES 64
#define REST_MAX_STREAMS 4
#define REST_BACKLOG 64
#define REST_CONNECTION_TIMEOUT_S 120
#define REST_SEGMENT_MAX 128

struct rest_route {
	char method[8];
	char pattern[96];
	rest_handler_fn fn;
	void *opaque;
};

struct rest_stream_route {
	char path[96];
	rest_event_fn fn;
	void *opaque;
	unsigned interval_ms;
};

struct rest_server {
	struct unix_listener sock;
	struct MHD_Daemon *unix_daemon, *tcp_daemon;
	struct sockaddr_in tcp_addr;
	bool tcp;
	char token[128];
	struct rest_route routes[REST_MAX_ROUTES];
	unsigned n_routes;
	struct rest_stream_route streams[REST_MAX_STREAMS];
	unsigned n_streams;
	char static_dir[256];           /* "" : no dashboard */
	volatile bool stopping;         /* ends the event streams */
};

/* Per request: the body as it arrives. */
struct rest_upload {
	char *data;
	size_t len;
	bool too_big;
};

enum MHD_Result rest_send_error(struct MHD_Connection *c, unsigned status, const char *msg);
/* The stream route for a GET of url, or NULL. */
const struct rest_stream_route *rest_find_stream(const struct rest_server *srv, const char *url);
enum MHD_Result rest_send_stream(struct rest_server *srv, struct MHD_Connection *c,
				 const struct rest_stream_route *route);
/* Whether url is one of the dashboard's files (answered, then, true). */
bool rest_static_request(struct rest_server *srv, struct MHD_Connection *c, const char *url,
			 enum MHD_Result *result);

#endif
