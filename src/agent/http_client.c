/* http_client.c: see http_client.h. */
#include "agent/http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MAX_REPLY (8u << 20)

struct buffer {
	char *data;
	size_t len;
	bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx)
{
	struct buffer *b = ctx;
	size_t n = size * nmemb;
	if (b->len + n > HTTP_MAX_REPLY) {
		b->too_big = true;
		return 0;
	}
	char *more = realloc(b->data, b->len + n + 1);
	if (!more)
		return 0;
	memcpy(more + b->len, ptr, n);
	b->data = more;
	b->len += n;
	b->data[b->len] = 0;
	return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int errno_of_status(long status)
{
	switch (status) {
	case 400: case 405: case 413: return EINVAL;
	case 401: case 403: return EACCES;
	case 404: return ENOENT;
	case 409: return EBUSY;
	case 503: return EAGAIN;
	case 504: return ETIMEDOUT;
	default: return EIO;
	}
}

int http_json(const char *where, const char *token, const char *method, const char *path,
	      json_t *body, int timeout_ms, json_t **reply, struct error *err)
{
	*reply = NULL;
	pthread_once(&curl_once, curl_init_once);
	char url[512];
	const char *unix_path = NULL;
	if (!strncmp(where, "unix:", 5)) {
		unix_path = where + 5;
		snprintf(url, sizeof(url), "http://localhost%s", path);
	} else if (!strncmp(where, "http://", 7)) {
		snprintf(url, sizeof(url), "%s%s", where, path);
	} else {
		return error_set(err, EINVAL, "\"%s\" is not an agent address (unix:/PATH or "
				 "http://IP:PORT)", where);
	}
	CURL *c = curl_easy_init();
	if (!c)
		return error_set(err, ENOMEM, "cannot create a curl handle");
	struct buffer in = { 0 };
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	char auth[200];
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		struct curl_slist *h = curl_slist_append(headers, auth);
		if (h)
			headers = h;
	}
	int rc = 0;
	if ((body && !text) || !headers) {
		rc = error_set(err, ENOMEM, "out of memory");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (unix_path)
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &in);
	if (text)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	else if (!strcmp(method, "POST"))
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		int code = cc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT :
			   cc == CURLE_COULDNT_CONNECT ? ECONNREFUSED : EIO;
		rc = error_set(err, code, "%s %s on %s: %s", method, path, where,
			       in.too_big ? "the reply is too large" : curl_easy_strerror(cc));
		goto out;
	}
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	json_error_t jerr;
	json_t *j = in.len ? json_loadb(in.data, in.len, 0, &jerr) : json_object();
	if (status / 100 != 2) {
		const char *msg = json_string_value(json_object_get(j, "error"));
		rc = error_set(err, errno_of_status(status), "%s", msg ? msg : "");
		if (!msg)
			error_set(err, errno_of_status(status), "%s %s on %s: HTTP %ld", method, path,
				  where, status);
		json_decref(j);
		goto out;
	}
	if (!j) {
		rc = error_set(err, EPROTO, "%s %s on %s: the reply is not JSON: %s", method, path,
			       where, jerr.text);
		goto out;
	}
	*reply = j;
out:
	curl_slist_free_all(headers);
	free(text);
	free(in.data);
	curl_easy_cleanup(c);
	return rc;
}
