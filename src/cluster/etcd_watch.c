/* etcd_watch.c: watching a prefix (POST /v3/watch).
 *
 * The gateway turns the gRPC watch stream into one long HTTP reply of
 * newline-separated JSON messages: {"result": {"created": true, ...}} when
 * the watch starts, then {"result": {"events": [...]}} per batch of
 * changes, or {"error": {...}} / {"result": {"canceled": true, ...}} when
 * etcd ends it. The transfer runs on a curl multi handle polled in 100 ms
 * steps, so a stop flag is noticed quickly; the write callback only cuts
 * the bytes into messages, and the events are handed to the caller's
 * callback between polls, outside curl.
 *
 * When a stream breaks, the watch starts again on the next endpoint from
 * the revision after the last batch delivered: etcd never splits one
 * revision's events over two batches, so nothing is lost or repeated. */
#include "cluster/etcd_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_POLL_MS 100
/* Pause before taking a broken watch elsewhere, or after every endpoint
 * refused it once. */
#define WATCH_RETRY_PAUSE_MS 200
/* The part of a non-200 answer kept for the message. */
#define WATCH_ERROR_BODY_MAX 4096

enum outcome {
	W_STOP,          /* the caller's callback, stop flag or deadline ended it */
	W_RETRY,         /* the stream failed; another endpoint may do better */
	W_FATAL,         /* it failed for good */
};

struct watch {
	struct etcd *e;
	const char *prefix;
	etcd_watch_fn fn;
	void *ctx;
	int64_t next_rev;        /* where a new stream starts; 0: now */
	int stop_rc;             /* what the callback returned to stop */
	bool stopped;

	/* Per stream: */
	CURL *h;
	const struct etcd_endpoint *ep;
	long status;             /* HTTP status, once the headers are in */
	struct etcd_buf line;    /* bytes after the last newline */
	struct etcd_buf body;    /* the start of a non-200 answer */
	json_t *pending;         /* messages cut but not yet handled */
	bool created;            /* etcd accepted this stream */
	int fail;                /* a failure seen in the stream (negative errno) */
	bool fail_retry;
	struct error ferr;
};

__attribute__((format(printf, 4, 5)))
static void watch_fail(struct watch *w, int code, bool retry, const char *fmt, ...)
{
	if (w->fail)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->ferr.msg, sizeof(w->ferr.msg), fmt, ap);
	va_end(ap);
	w->ferr.code = code;
	w->fail = -code;
	w->fail_retry = retry;
}

/* Parses one message and queues it for handle_pending(). */
static void queue_message(struct watch *w, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *j = json_loadb(text, len, 0, &jerr);
	if (!j) {
		watch_fail(w, EPROTO, false, "%s: a watch message is not JSON: %s", w->ep->name,
			   jerr.text);
		return;
	}
	if (json_array_append_new(w->pending, j) < 0)
		watch_fail(w, ENOMEM, false, "out of memory for a watch message");
}

static size_t watch_write(char *data, size_t size, size_t nmemb, void *opaque)
{
	struct watch *w = opaque;
	size_t n = size * nmemb;
	if (!w->status && curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status) != CURLE_OK)
		w->status = 0;
	if (w->status != 200) {
		size_t room = WATCH_ERROR_BODY_MAX - (w->body.len < WATCH_ERROR_BODY_MAX
						      ? w->body.len : WATCH_ERROR_BODY_MAX);
		if (room && !etcd_buf_add(&w->body, data, n < room ? n : room))
			return 0;
		return n;
	}
	if (!etcd_buf_add(&w->line, data, n)) {
		watch_fail(w, w->line.too_big ? EFBIG : ENOMEM, false,
			   "%s: a watch message is too large", w->ep->name);
		return 0;
	}
	char *start = w->line.p;
	size_t left = w->line.len;
	for (char *nl; !w->fail && (nl = memchr(start, '\n', left));) {
		size_t len = (size_t)(nl - start);
		if (len)
			queue_message(w, start, len);
		start = nl + 1;
		left -= len + 1;
	}
	memmove(w->line.p, start, left);
	w->line.len = left;
	w->line.p[left] = '\0';
	return w->fail ? 0 : n;
}

/* Hands the events of one message to the callback; false once the watch
 * must end (w->stopped or w->fail). */
static bool handle_message(struct watch *w, const json_t *j)
{
	if (json_object_get(j, "error")) {
		bool retry;
		struct error one = { 0 };
		etcd_http_etcd_error(w->ep, 200, j, &retry, &one);
		watch_fail(w, one.code, retry, "%s", one.msg);
		return false;
	}
	const json_t *r = json_object_get(j, "result");
	if (!json_is_object(r)) {
		watch_fail(w, EPROTO, false, "%s: a watch message has no \"result\"", w->ep->name);
		return false;
	}
	if (etcd_json_true(r, "created")) {
		w->created = true;
		if (!w->next_rev)
			w->next_rev = etcd_header_revision(r) + 1;
	}
	if (etcd_json_true(r, "canceled")) {
		int64_t compact;
		const char *reason = json_string_value(json_object_get(r, "cancel_reason"));
		if (etcd_json_i64(r, "compact_revision", &compact) == 0 && compact > 0)
			watch_fail(w, ERANGE, false, "%s: revision %" PRId64 " is compacted (etcd "
				   "keeps revisions from %" PRId64 " on)", w->ep->name, w->next_rev,
				   compact);
		else
			watch_fail(w, EAGAIN, true, "%s: etcd cancelled the watch: %s", w->ep->name,
				   reason && reason[0] ? reason : "no reason given");
		return false;
	}
	const json_t *events = json_object_get(r, "events");
	int64_t last = 0;
	for (size_t i = 0; i < json_array_size(events); i++) {
		const json_t *ev = json_array_get(events, i);
		const char *type = json_string_value(json_object_get(ev, "type"));
		struct etcd_event event = { .type = ETCD_EVENT_PUT };
		if (type && strcmp(type, "DELETE") == 0)
			event.type = ETCD_EVENT_DELETE;
		else if (type && strcmp(type, "PUT") != 0)
			continue;    /* a kind this client does not know */
		struct error one = { 0 };
		if (etcd_kv_from_json(json_object_get(ev, "kv"), &event.kv, &one) < 0) {
			watch_fail(w, one.code, false, "%s: a watch event: %s", w->ep->name, one.msg);
			return false;
		}
		event.revision = event.kv.mod_revision;
		/* Already delivered before the stream was resumed: skip. */
		if (event.revision < w->next_rev) {
			etcd_kv_free(&event.kv);
			continue;
		}
		int rc = w->fn(&event, w->ctx);
		etcd_kv_free(&event.kv);
		if (event.revision > last)
			last = event.revision;
		if (rc) {
			w->stop_rc = rc < 0 ? rc : 0;
			w->stopped = true;
			return false;
		}
	}
	if (last >= w->next_rev)
		w->next_rev = last + 1;
	return true;
}

static bool handle_pending(struct watch *w)
{
	bool go_on = !w->fail;
	while (go_on && json_array_size(w->pending)) {
		go_on = handle_message(w, json_array_get(w->pending, 0));
		if (json_array_remove(w->pending, 0) < 0)
			go_on = false;
	}
	json_array_clear(w->pending);
	return go_on && !w->fail;
}

static json_t *watch_request(const struct watch *w)
{
	json_t *req = json_object(), *body = json_object();
	int rc = req && body ? 0 : -ENOMEM;
	if (!rc)
		rc = etcd_json_set_range(req, w->prefix, true);
	if (!rc && w->next_rev)
		rc = etcd_json_set_i64(req, "start_revision", w->next_rev);
	if (!rc) {
		rc = json_object_set_new(body, "create_request", req) < 0 ? -ENOMEM : 0;
		req = NULL;
	}
	json_decref(req);
	if (rc) {
		json_decref(body);
		return NULL;
	}
	return body;
}

/* One stream on endpoint w->ep, until it ends or the watch must. */
static enum outcome watch_stream(struct watch *w, CURLM *m, const atomic_bool *stop,
				 int64_t deadline, struct error *one)
{
	struct etcd *e = w->e;
	int timeout_ms = atomic_load(&e->timeout_ms);
	char errbuf[CURL_ERROR_SIZE];
	enum outcome out = W_RETRY;

	w->status = 0;
	w->line.len = 0;
	w->body.len = 0;
	w->created = false;
	w->fail = 0;
	memset(&w->ferr, 0, sizeof(w->ferr));

	json_t *req = watch_request(w);
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!text) {
		error_set(one, ENOMEM, "out of memory");
		return W_FATAL;
	}
	curl_easy_reset(w->h);
	CURLcode crc = etcd_http_prepare(w->h, w->ep, "/v3/watch", text, e->headers, errbuf);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, watch_write);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w);
	if (crc == CURLE_OK)
		crc = curl_easy_setopt(w->h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	if (crc != CURLE_OK) {
		free(text);
		error_set(one, EIO, "%s: cannot set up the watch: %s", w->ep->name,
			  curl_easy_strerror(crc));
		return W_FATAL;
	}
	CURLMcode mc = curl_multi_add_handle(m, w->h);
	if (mc != CURLM_OK) {
		free(text);
		error_set(one, EIO, "%s: cannot start the watch: %s", w->ep->name,
			  curl_multi_strerror(mc));
		return W_FATAL;
	}

	int64_t started = etcd_now_ms();
	int running = 1;
	for (;;) {
		mc = curl_multi_perform(m, &running);
		if (mc != CURLM_OK) {
			error_set(one, EIO, "%s: watching: %s", w->ep->name, curl_multi_strerror(mc));
			out = W_FATAL;
			goto done;
		}
		if (!handle_pending(w) || !running)
			break;
		if (stop && atomic_load(stop)) {
			w->stopped = true;
			break;
		}
		int64_t now = etcd_now_ms();
		if (deadline >= 0 && now >= deadline) {
			w->stopped = true;
			break;
		}
		if (!w->created && now - started > timeout_ms) {
			error_set(one, ETIMEDOUT, "%s: the watch was not accepted within %d ms",
				  w->ep->name, timeout_ms);
			goto done;
		}
		mc = curl_multi_poll(m, NULL, 0, WATCH_POLL_MS, NULL);
		if (mc != CURLM_OK) {
			error_set(one, EIO, "%s: watching: %s", w->ep->name, curl_multi_strerror(mc));
			out = W_FATAL;
			goto done;
		}
	}
	if (w->stopped) {
		out = W_STOP;
		goto done;
	}
	CURLcode res = CURLE_OK;
	CURLMsg *msg;
	int queued;
	while ((msg = curl_multi_info_read(m, &queued)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == w->h)
			res = msg->data.result;
	if (!w->status && curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status) != CURLE_OK)
		w->status = 0;
	/* A last message without its newline. */
	if (!w->fail && !running && w->status == 200 && w->line.len) {
		queue_message(w, w->line.p, w->line.len);
		w->line.len = 0;
		handle_pending(w);
		if (w->stopped) {
			out = W_STOP;
			goto done;
		}
	}
	if (w->fail) {
		*one = w->ferr;
		out = w->fail_retry ? W_RETRY : W_FATAL;
		goto done;
	}
	bool retry = true;
	if (res != CURLE_OK)
		etcd_http_curl_error(w->h, w->ep, res, errbuf, timeout_ms, &retry, one);
	else if (w->status != 200)
		etcd_http_status_error(w->ep, w->status, w->body.p, w->body.len, &retry, one);
	else
		error_set(one, EAGAIN, "%s: etcd ended the watch stream", w->ep->name);
	out = retry ? W_RETRY : W_FATAL;
done:
	mc = curl_multi_remove_handle(m, w->h);
	if (mc != CURLM_OK && out != W_FATAL) {
		error_set(one, EIO, "%s: ending the watch: %s", w->ep->name, curl_multi_strerror(mc));
		out = W_FATAL;
	}
	free(text);
	return out;
}

static void pause_ms(int ms, const atomic_bool *stop, int64_t deadline)
{
	int64_t until = etcd_now_ms() + ms;
	if (deadline >= 0 && deadline < until)
		until = deadline;
	while (etcd_now_ms() < until && !(stop && atomic_load(stop)))
		etcd_sleep_ms(WATCH_POLL_MS / 2);
}

/* The watch, until fn stops it, *stop is set, or deadline (etcd_now_ms()
 * time; < 0: none) passes: all three return 0. */
static int watch_run(struct etcd *e, const char *prefix, int64_t start_rev, etcd_watch_fn fn,
		     void *ctx, const atomic_bool *stop, int64_t deadline, struct error *err)
{
	struct watch w = {
		.e = e, .prefix = prefix, .fn = fn, .ctx = ctx,
		.next_rev = start_rev > 0 ? start_rev : 0,
	};
	char all[sizeof(err->msg)] = "";
	CURLM *m = curl_multi_init();
	w.h = curl_easy_init();
	w.pending = json_array();
	if (!m || !w.h || !w.pending) {
		if (w.h)
			curl_easy_cleanup(w.h);
		if (m)
			curl_multi_cleanup(m);
		json_decref(w.pending);
		return error_set(err, ENOMEM, "etcd watch \"%s\": out of memory", prefix);
	}
	size_t i = atomic_load(&e->current) % e->n_ep;
	unsigned failures = 0;
	int rc = 0;
	for (;;) {
		struct error one = { 0 };
		w.ep = &e->ep[i];
		enum outcome out = watch_stream(&w, m, stop, deadline, &one);
		if (w.created)
			atomic_store(&e->current, i);
		if (out == W_STOP) {
			rc = w.stop_rc;
			if (rc < 0)
				error_set(err, -rc, "etcd watch \"%s\": the callback stopped it with "
					  "error %d", prefix, rc);
			break;
		}
		if (out == W_FATAL) {
			rc = error_set(err, one.code ? one.code : EIO, "etcd watch \"%s\": %s", prefix,
				       one.msg);
			break;
		}
		if (w.created) {          /* a working stream broke: a new streak */
			failures = 0;
			all[0] = '\0';
		}
		etcd_note_failure(all, sizeof(all), one.msg);
		if (!w.created && ++failures >= 2 * e->n_ep) {
			rc = error_set(err, one.code ? one.code : EIO, "etcd watch \"%s\": no endpoint "
				       "takes the watch: %s", prefix, all);
			break;
		}
		i = (i + 1) % e->n_ep;
		if (w.created || failures % e->n_ep == 0)
			pause_ms(WATCH_RETRY_PAUSE_MS, stop, deadline);
		if ((stop && atomic_load(stop)) || (deadline >= 0 && etcd_now_ms() >= deadline))
			break;
	}
	curl_easy_cleanup(w.h);
	curl_multi_cleanup(m);
	json_decref(w.pending);
	etcd_buf_free(&w.line);
	etcd_buf_free(&w.body);
	return rc;
}

int etcd_watch_prefix(struct etcd *e, const char *prefix, int64_t start_revision,
		      etcd_watch_fn fn, void *ctx, const atomic_bool *stop, struct error *err)
{
	if (!fn)
		return error_set(err, EINVAL, "etcd watch \"%s\": no callback", prefix);
	return watch_run(e, prefix, start_revision, fn, ctx, stop, -1, err);
}

struct first_change {
	int64_t revision;
};

static int take_first(const struct etcd_event *ev, void *ctx)
{
	struct first_change *f = ctx;
	f->revision = ev->revision;
	return 1;
}

int etcd_wait_change(struct etcd *e, const char *prefix, int64_t after_revision,
		     int timeout_ms, int64_t *revision, struct error *err)
{
	struct first_change f = { 0 };
	if (revision)
		*revision = 0;
	int64_t deadline = timeout_ms < 0 ? -1 : etcd_now_ms() + timeout_ms;
	int rc = watch_run(e, prefix, after_revision >= 0 ? after_revision + 1 : 0, take_first, &f,
			   NULL, deadline, err);
	if (rc < 0)
		return rc;
	if (!f.revision)
		return 0;
	if (revision)
		*revision = f.revision;
	return 1;
}
