/* rest_stream.c: server-sent event streams (rest.h, rest_stream). Each
 * client has its own connection thread (libmicrohttpd's thread per
 * connection), which waits in the content callback until the next event
 * is due: no shared timer, and a slow client holds up only itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/rest_priv.h"

struct stream_state {
	struct rest_server *srv;
	const struct rest_stream_route *route;
	char *pending;                  /* the event being written */
	size_t len, off;
	int64_t next_ns;                /* when the next event is due */
	bool ended;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int rest_stream(struct rest_server *srv, const char *pattern, rest_event_fn fn, void *opaque,
		unsigned interval_ms)
{
	if (srv->n_streams == REST_MAX_STREAMS || strlen(pattern) >= sizeof(srv->streams[0].path))
		return -ENOSPC;
	struct rest_stream_route *r = &srv->streams[srv->n_streams++];
	snprintf(r->path, sizeof(r->path), "%s", pattern);
	r->fn = fn;
	r->opaque = opaque;
	r->interval_ms = interval_ms ? interval_ms : 1000;
	return 0;
}

const struct rest_stream_route *rest_find_stream(const struct rest_server *srv, const char *url)
{
	for (unsigned i = 0; i < srv->n_streams; i++)
		if (!strcmp(srv->streams[i].path, url))
			return &srv->streams[i];
	return NULL;
}

/* The next event as text: "data: JSON\n\n", or an error event. */
static char *next_event(struct stream_state *st, size_t *len)
{
	json_t *event = NULL;
	struct error err = { 0 };
	int rc = st->route->fn(st->route->opaque, &event, &err);
	char *text = NULL;
	if (rc == 0 && event) {
		char *json = json_dumps(event, JSON_COMPACT);
		if (json && asprintf(&text, "data: %s\n\n", json) < 0)
			text = NULL;
		free(json);
	} else {
		json_t *e = json_pack("{s:s}", "error", err.msg[0] ? err.msg : strerror(-rc));
		char *json = e ? json_dumps(e, JSON_COMPACT) : NULL;
		if (json && asprintf(&text, "event: error\ndata: %s\n\n", json) < 0)
			text = NULL;
		free(json);
		json_decref(e);
		st->ended = true;
	}
	json_decref(event);
	*len = text ? strlen(text) : 0;
	return text;
}

static ssize_t produce(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stream_state *st = cls;
	while (!st->pending) {
		if (st->ended || st->srv->stopping)
			return MHD_CONTENT_READER_END_OF_STREAM;
		int64_t wait = st->next_ns - now_ns();
		if (wait > 0) {
			/* In small steps: the server's stop must not wait long. */
			usleep((useconds_t)(wait > 50000000 ? 50000 : wait / 1000 + 1));
			continue;
		}
		st->next_ns = now_ns() + (int64_t)st->route->interval_ms * 1000000;
		st->pending = next_event(st, &st->len);
		st->off = 0;
		if (!st->pending)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	size_t n = st->len - st->off < max ? st->len - st->off : max;
	memcpy(buf, st->pending + st->off, n);
	st->off += n;
	if (st->off == st->len) {
		free(st->pending);
		st->pending = NULL;
	}
	return (ssize_t)n;
}

static void finish(void *cls)
{
	struct stream_state *st = cls;
	free(st->pending);
	free(st);
}

enum MHD_Result rest_send_stream(struct rest_server *srv, struct MHD_Connection *c,
				 const struct rest_stream_route *route)
{
	struct stream_state *st = calloc(1, sizeof(*st));
	if (!st)
		return MHD_NO;
	st->srv = srv;
	st->route = route;
	st->next_ns = now_ns();
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
								    produce, st, finish);
	if (!r) {
		free(st);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/event-stream");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	enum MHD_Result ok = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ok;
}
