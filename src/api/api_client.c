/* api_client.c: one control API call from the CLI (protocol in docs/api.md):
 * connect, send one request line, read one reply line, all within one
 * deadline, and turn the reply into a result or a struct error. */
#include "api/api_client.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Replies are small (a status object); this bounds a misbehaving server. */
#define API_MAX_REPLY_BYTES (4 * 1024 * 1024)
#define API_CLIENT_ID 1

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before the deadline as a poll() timeout; -1 (forever)
 * without a deadline. */
static int remaining_ms(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ms();
	return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for events on fd until the deadline. 0, or a negative errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, remaining_ms(deadline));
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Maps a symbolic errno name from the wire back to this system's number. */
static int errno_from_name(const char *name)
{
	if (!name)
		return 0;
	for (int e = 1; e < 4096; e++) {
		const char *n = strerrorname_np(e);
		if (n && strcmp(n, name) == 0)
			return e;
	}
	return 0;
}

static int connect_to(const char *path, int64_t deadline, int timeout_ms, struct error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if (len >= sizeof(addr.sun_path))
		return error_set(err, ENAMETOOLONG, "API socket path %s is too long (%zu bytes; "
				 "a unix socket path is at most %zu)", path, len,
				 sizeof(addr.sun_path) - 1);
	memcpy(addr.sun_path, path, len + 1);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return error_errno(err, errno, "cannot create a socket");
	for (;;) {
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		int e = errno;
		if (e == EINTR)
			continue;
		/* A unix socket answers EAGAIN while the server's backlog is
		 * full: it is alive but busy, so retry until the deadline. */
		if (e == EAGAIN && remaining_ms(deadline) != 0) {
			poll(NULL, 0, 10);      /* a sleep; nothing to fail */
			continue;
		}
		close(fd);
		if (e == EAGAIN)
			return error_set(err, ETIMEDOUT, "the API server at %s accepted no "
					 "connection within %d ms", path, timeout_ms);
		return error_errno(err, e, "cannot connect to the API socket %s", path);
	}
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline,
		    const char *path, int timeout_ms, struct error *err)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return error_errno(err, errno, "sending the request to %s", path);
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == -ETIMEDOUT)
			return error_set(err, ETIMEDOUT, "the API server at %s took no request "
					 "within %d ms", path, timeout_ms);
		if (rc)
			return error_errno(err, -rc, "waiting to send to %s", path);
	}
	return 0;
}

/* Reads up to and excluding the first '\n'; *line is NUL-terminated. */
static int read_line(int fd, char **line, size_t *line_len, int64_t deadline,
		     const char *path, int timeout_ms, struct error *err)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return error_set(err, ENOMEM, "out of memory");
	int rc;
	for (;;) {
		char *nl = memchr(buf, '\n', len);
		if (nl) {
			*nl = '\0';
			*line = buf;
			*line_len = (size_t)(nl - buf);
			return 0;
		}
		if (len == cap) {
			if (cap >= API_MAX_REPLY_BYTES) {
				rc = error_set(err, EMSGSIZE, "the reply from %s exceeds %d bytes",
					       path, API_MAX_REPLY_BYTES);
				goto fail;
			}
			char *grown = realloc(buf, cap * 2);
			if (!grown) {
				rc = error_set(err, ENOMEM, "out of memory");
				goto fail;
			}
			buf = grown;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + len, cap - len, 0);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0) {
			rc = error_set(err, EPROTO, len ? "the API server at %s closed the connection "
				       "in the middle of its reply" : "the API server at %s closed "
				       "the connection without replying", path);
			goto fail;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			rc = error_errno(err, errno, "reading the reply from %s", path);
			goto fail;
		}
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc == -ETIMEDOUT) {
			rc = error_set(err, ETIMEDOUT, "no reply from the API server at %s within "
				       "%d ms", path, timeout_ms);
			goto fail;
		}
		if (rc) {
			rc = error_errno(err, -rc, "waiting for the reply from %s", path);
			goto fail;
		}
	}
fail:
	free(buf);
	return rc;
}

/* Turns a reply line into the call's outcome. */
static int parse_reply(const char *line, size_t len, const char *path, json_t **result,
		       struct error *err)
{
	json_error_t jerr;
	json_t *reply = json_loadb(line, len, 0, &jerr);
	if (!reply)
		return error_set(err, EPROTO, "malformed reply from %s: %s", path, jerr.text);
	int rc;
	json_t *ok = json_object_get(reply, "ok");
	json_t *id = json_object_get(reply, "id");
	if (!json_is_boolean(ok)) {
		rc = error_set(err, EPROTO, "malformed reply from %s: no \"ok\"", path);
		goto out;
	}
	/* An error about the envelope may carry a null id; anything else must
	 * answer our request. */
	if (id && !json_is_null(id) &&
	    !(json_is_integer(id) && json_integer_value(id) == API_CLIENT_ID)) {
		rc = error_set(err, EPROTO, "the reply from %s answers another request", path);
		goto out;
	}
	if (json_is_true(ok)) {
		json_t *value = json_object_get(reply, "result");
		if (result && value && !json_is_null(value))
			*result = json_incref(value);
		rc = 0;
		goto out;
	}
	json_t *error = json_object_get(reply, "error");
	const char *code = json_string_value(json_object_get(error, "code"));
	const char *message = json_string_value(json_object_get(error, "message"));
	int e = errno_from_name(code);
	rc = error_set(err, e ? e : EPROTO, "%s", message ? message :
		       code ? code : "the API server reported an unspecified error");
out:
	json_decref(reply);
	return rc;
}

int api_call(const char *path, const char *command, json_t *args, int timeout_ms,
	     json_t **result, struct error *err)
{
	if (result)
		*result = NULL;
	if (!path || !command)
		return error_set(err, EINVAL, "api_call needs a socket path and a command");
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;

	json_t *req = json_pack("{s:i, s:s}", "id", API_CLIENT_ID, "command", command);
	if (req && args && json_object_set(req, "args", args) < 0) {
		json_decref(req);
		req = NULL;
	}
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!text)
		return error_set(err, EINVAL, "cannot encode the request for \"%s\"", command);
	size_t len = strlen(text);
	char *line = realloc(text, len + 2);
	if (!line) {
		free(text);
		return error_set(err, ENOMEM, "out of memory");
	}
	line[len++] = '\n';
	line[len] = '\0';

	int fd = connect_to(path, deadline, timeout_ms, err);
	if (fd < 0) {
		free(line);
		return fd;
	}
	int rc = send_all(fd, line, len, deadline, path, timeout_ms, err);
	free(line);
	if (rc == 0) {
		char *reply = NULL;
		size_t reply_len = 0;
		rc = read_line(fd, &reply, &reply_len, deadline, path, timeout_ms, err);
		if (rc == 0) {
			rc = parse_reply(reply, reply_len, path, result, err);
			free(reply);
		}
	}
	/* The reply is in hand: a failing close() cannot change the outcome. */
	close(fd);
	if (rc && result && *result) {
		json_decref(*result);
		*result = NULL;
	}
	return rc;
}
