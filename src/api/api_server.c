/* api_server.c: the control API server (protocol in docs/api.md).
 *
 * It owns the unix socket (creation with owner-only permissions, stale
 * socket replacement, removal), the serving thread, the line framing and the
 * validation of the request envelope. Commands are registered by whoever
 * implements them; their handlers run on the serving thread, one at a time.
 *
 * One thread serves every connection with a poll() loop and handles one
 * request at a time. That keeps handlers from ever running concurrently
 * (so they need no locking among themselves) at the price that a slow
 * handler delays other clients; handlers are expected to return within
 * milliseconds to seconds (pause waits for the harts to park). */
#include "api/api_server.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/unix_listen.h"
#include "util/log.h"

#define API_MAX_DEPTH 32
#define API_MAX_CLIENTS 32
#define API_BACKLOG 16
/* After an oversized request the rest of it is read and thrown away, so the
 * client gets to read the error reply instead of a reset; but only this much. */
#define API_DRAIN_LIMIT (16 * API_MAX_REQUEST_BYTES)
/* After accept() runs out of descriptors, the listening socket is left alone
 * this long, or poll() would report it readable in a busy loop. */
#define API_ACCEPT_BACKOFF_MS 100

struct api_command {
	char *name;
	api_handler_fn fn;
	void *opaque;
};

enum client_state {
	CLIENT_SERVING,
	CLIENT_CLOSING,         /* close once the queued reply is sent */
	CLIENT_DRAINING,        /* reply, shut down writing, discard input until EOF */
};

struct api_client {
	int fd;
	enum client_state state;
	bool eof;               /* the peer will send nothing more */
	bool shut_wr;
	char *in;               /* API_MAX_REQUEST_BYTES + 1: a full line and its '\n' */
	size_t in_len;
	char *out;              /* the one reply being sent, '\n' included */
	size_t out_len, out_off;
	size_t drained;
};

struct api_server {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct unix_listener sock;
	int wake_fd;            /* eventfd: api_server_destroy() wakes the thread */
	bool started;
	pthread_t thread;

	pthread_mutex_t lock;   /* guards commands, which may grow while serving */
	struct api_command *commands;
	size_t num_commands;

	/* Only the serving thread touches the clients. */
	struct api_client *clients[API_MAX_CLIENTS];
	unsigned num_clients;
};

/* ---- replies --------------------------------------------------------- */

/* The symbolic name of an errno ("EINVAL"), which is what travels on the
 * wire: numbers differ between systems, names do not. */
static const char *errno_name(int code)
{
	const char *name = code > 0 ? strerrorname_np(code) : NULL;
	return name ? name : "EIO";
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
 * Rejects what jansson rejects: overlong forms, surrogates, > U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A JSON string for a message that may hold anything (a file name, a
 * message cut mid-character by a fixed buffer): bad bytes become '?', as
 * jansson would refuse the whole string otherwise. */
static json_t *message_string(const char *msg)
{
	size_t n = strlen(msg);
	char *copy = malloc(n + 1);
	if (!copy)
		return NULL;
	const unsigned char *s = (const unsigned char *)msg;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq(s + i, n - i);
		if (l == 0) {
			copy[i++] = '?';
		} else {
			memcpy(copy + i, s + i, l);
			i += l;
		}
	}
	copy[n] = '\0';
	json_t *str = json_string(copy);
	free(copy);
	return str;
}

/* Turns a reply object into a line; on allocation failure, a fixed one. */
static char *dump_reply(json_t *reply)
{
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (!text)
		text = strdup("{\"id\":null,\"ok\":false,\"error\":{\"code\":\"ENOMEM\","
			      "\"message\":\"out of memory while building the reply\"}}");
	return text;
}

/* Takes the reference to result. */
static char *reply_ok(json_t *id, json_t *result)
{
	json_t *reply = json_object();
	if (reply) {
		json_object_set_new(reply, "id", id ? json_incref(id) : json_null());
		json_object_set_new(reply, "ok", json_true());
		json_object_set_new(reply, "result", result ? result : json_null());
	} else {
		json_decref(result);
	}
	return dump_reply(reply);
}

static char *reply_error(json_t *id, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static char *reply_error(json_t *id, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	json_t *error = json_object();
	json_t *reply = json_object();
	if (!error || !reply) {
		json_decref(error);
		json_decref(reply);
		return dump_reply(NULL);
	}
	json_object_set_new(error, "code", json_string(errno_name(code)));
	json_object_set_new(error, "message", message_string(msg));
	json_object_set_new(reply, "id", id ? json_incref(id) : json_null());
	json_object_set_new(reply, "ok", json_false());
	json_object_set_new(reply, "error", error);
	return dump_reply(reply);
}

/* ---- the request envelope -------------------------------------------- */

/* The deepest nesting of arrays and objects in the text, counted without
 * parsing so that a hostile request never reaches the recursive parser. */
static unsigned json_depth(const char *s, size_t len)
{
	unsigned depth = 0, max = 0;
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				max = depth;
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return max;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The registered commands and "help", sorted, as a JSON array; or, with
 * text set, as "a, b, c" for messages. Called with srv->lock held. */
static json_t *command_list_locked(struct api_server *srv)
{
	const char **names = malloc((srv->num_commands + 1) * sizeof(*names));
	json_t *list = json_array();
	if (!names || !list) {
		free(names);
		json_decref(list);
		return NULL;
	}
	names[0] = "help";
	for (size_t i = 0; i < srv->num_commands; i++)
		names[i + 1] = srv->commands[i].name;
	qsort(names, srv->num_commands + 1, sizeof(*names), cmp_names);
	for (size_t i = 0; i <= srv->num_commands; i++)
		json_array_append_new(list, json_string(names[i]));
	free(names);
	return list;
}

static void join_names(json_t *list, char *buf, size_t size)
{
	size_t used = 0;
	size_t i;
	json_t *name;
	buf[0] = '\0';
	json_array_foreach(list, i, name) {
		int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
				 json_string_value(name));
		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
}

char *api_server_handle_line(struct api_server *srv, const char *line, size_t len)
{
	/* Callers may hand over the terminator; it is not part of the request. */
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len > API_MAX_REQUEST_BYTES)
		return reply_error(NULL, EMSGSIZE, "request too large (more than %d bytes)",
				   API_MAX_REQUEST_BYTES);
	size_t blank = 0;
	while (blank < len && (line[blank] == ' ' || line[blank] == '\t'))
		blank++;
	if (blank == len)
		return reply_error(NULL, EINVAL, "empty request: expected a JSON object "
				   "with a \"command\"");
	if (json_depth(line, len) > API_MAX_DEPTH)
		return reply_error(NULL, EINVAL, "request nests deeper than %d levels",
				   API_MAX_DEPTH);

	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req)
		return reply_error(NULL, EINVAL, "invalid JSON at line %d, column %d: %s",
				   jerr.line, jerr.column, jerr.text);

	char *reply = NULL;
	json_t *id = NULL;
	if (!json_is_object(req)) {
		reply = reply_error(NULL, EINVAL, "the request must be a JSON object");
		goto out;
	}
	id = json_object_get(req, "id");
	if (id && (json_is_object(id) || json_is_array(id))) {
		id = NULL;
		reply = reply_error(NULL, EINVAL, "\"id\" must be a string, number, boolean or null");
		goto out;
	}
	const char *key;
	json_t *value;
	json_object_foreach(req, key, value) {
		if (strcmp(key, "id") && strcmp(key, "command") && strcmp(key, "args")) {
			reply = reply_error(id, EINVAL, "unknown field \"%.64s\" in the request "
					    "(expected \"id\", \"command\", \"args\")", key);
			goto out;
		}
	}
	json_t *command = json_object_get(req, "command");
	if (!command) {
		reply = reply_error(id, EINVAL, "the request has no \"command\"");
		goto out;
	}
	if (!json_is_string(command)) {
		reply = reply_error(id, EINVAL, "\"command\" must be a string");
		goto out;
	}
	json_t *args = json_object_get(req, "args");
	if (args && !json_is_object(args)) {
		reply = reply_error(id, EINVAL, "\"args\" must be an object");
		goto out;
	}
	const char *name = json_string_value(command);

	api_handler_fn fn = NULL;
	void *opaque = NULL;
	json_t *known = NULL;
	pthread_mutex_lock(&srv->lock);
	for (size_t i = 0; i < srv->num_commands; i++) {
		if (strcmp(srv->commands[i].name, name) == 0) {
			fn = srv->commands[i].fn;
			opaque = srv->commands[i].opaque;
			break;
		}
	}
	if (!fn)
		known = command_list_locked(srv);
	pthread_mutex_unlock(&srv->lock);

	if (!fn && strcmp(name, "help") == 0) {
		json_t *result = known ? json_pack("{s:o}", "commands", known) : NULL;
		reply = result ? reply_ok(id, result)
			       : reply_error(id, ENOMEM, "cannot list the commands");
		goto out;
	}
	if (!fn) {
		char names[512] = "";
		if (known)
			join_names(known, names, sizeof(names));
		json_decref(known);
		reply = reply_error(id, ENOSYS, "unknown command \"%.64s\"; known commands: %s",
				    name, names);
		goto out;
	}

	json_t *own_args = args ? json_incref(args) : json_object();
	json_t *result = NULL;
	struct error err = { 0 };
	int rc = own_args ? fn(opaque, own_args, &result, &err) : -ENOMEM;
	json_decref(own_args);
	if (rc == 0) {
		reply = reply_ok(id, result);
	} else {
		json_decref(result);
		int code = err.code > 0 ? err.code : rc < 0 ? -rc : EIO;
		reply = reply_error(id, code, "%s", err.msg[0] ? err.msg : strerror(code));
	}
out:
	/* id points into req: replies are built before it is released. */
	json_decref(req);
	return reply;
}

/* ---- commands ------------------------------------------------------- */

int api_server_register(struct api_server *srv, const char *command, api_handler_fn fn,
			void *opaque)
{
	if (!srv || !command || !command[0] || !fn || strcmp(command, "help") == 0)
		return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&srv->lock);
	for (size_t i = 0; i < srv->num_commands; i++) {
		if (strcmp(srv->commands[i].name, command) == 0) {
			rc = -EEXIST;
			goto out;
		}
	}
	struct api_command *grown = realloc(srv->commands,
					    (srv->num_commands + 1) * sizeof(*grown));
	char *name = strdup(command);
	if (!grown || !name) {
		if (grown)
			srv->commands = grown;
		free(name);
		rc = -ENOMEM;
		goto out;
	}
	srv->commands = grown;
	srv->commands[srv->num_commands++] = (struct api_command){ name, fn, opaque };
out:
	pthread_mutex_unlock(&srv->lock);
	return rc;
}

/* ---- the socket ----------------------------------------------------- */

static int open_socket(struct api_server *srv, struct error *err)
{
	int rc = unix_listen(&srv->sock, srv->path, API_BACKLOG, true, err);
	if (rc)
		return rc;
	srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->wake_fd < 0)
		return error_errno(err, errno, "cannot create the API server's eventfd");
	return 0;
}

struct api_server *api_server_create(const char *path, struct error *err)
{
	if (!path || !path[0]) {
		error_set(err, EINVAL, "no path for the API socket");
		return NULL;
	}
	size_t len = strlen(path);
	if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		error_set(err, ENAMETOOLONG, "API socket path %s is too long (%zu bytes; a unix "
			  "socket path is at most %zu)", path, len,
			  sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return NULL;
	}
	struct api_server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		error_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	memcpy(srv->path, path, len + 1);
	srv->sock.fd = -1;
	srv->wake_fd = -1;
	int rc = pthread_mutex_init(&srv->lock, NULL);
	if (rc) {
		error_errno(err, rc, "cannot create the API server's lock");
		free(srv);
		return NULL;
	}
	if (open_socket(srv, err) < 0) {
		api_server_destroy(srv);
		return NULL;
	}
	return srv;
}

/* ---- connections ---------------------------------------------------- */

static void client_close(struct api_client *c)
{
	if (close(c->fd) < 0)
		log_debug("api: closing a connection: %s", strerror(errno));
	free(c->in);
	free(c->out);
	free(c);
}

/* Sends what it can of the queued reply. 0: sent or would block; <0: the
 * connection is gone. */
static int client_flush(struct api_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			log_debug("api: sending a reply: %s", strerror(errno));
			return -1;
		}
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return 0;
}

/* Queues a reply line (taking it) and starts sending it. */
static int client_queue(struct api_client *c, char *reply)
{
	if (!reply)
		return -1;
	size_t n = strlen(reply);
	char *line = realloc(reply, n + 2);
	if (!line) {
		free(reply);
		return -1;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	c->out = line;
	c->out_len = n + 1;
	c->out_off = 0;
	return client_flush(c);
}

static int client_read(struct api_client *c)
{
	if (c->state == CLIENT_DRAINING) {
		char sink[4096];
		ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (n == 0)
			c->eof = true;
		c->drained += (size_t)n;
		return c->drained > API_DRAIN_LIMIT ? -1 : 0;
	}
	/* Never full here: a full buffer without '\n' was answered already. */
	size_t room = API_MAX_REQUEST_BYTES + 1 - c->in_len;
	ssize_t n = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		log_debug("api: reading a request: %s", strerror(errno));
		return -1;
	}
	if (n == 0)
		c->eof = true;
	c->in_len += (size_t)n;
	return 0;
}

/* Serves whatever complete requests are buffered, one reply in flight at a
 * time so a client that does not read cannot make us buffer without bound.
 * Returns <0 when the connection is finished. */
static int client_progress(struct api_server *srv, struct api_client *c)
{
	for (;;) {
		if (c->out_off < c->out_len)
			return 0;               /* wait for POLLOUT */
		if (c->state == CLIENT_CLOSING)
			return -1;
		if (c->state == CLIENT_DRAINING) {
			/* The client sees EOF after the reply, then we read
			 * until it hangs up. */
			if (!c->shut_wr && shutdown(c->fd, SHUT_WR) < 0)
				return -1;
			c->shut_wr = true;
			return c->eof ? -1 : 0;
		}

		char *nl = memchr(c->in, '\n', c->in_len);
		if (nl) {
			size_t len = (size_t)(nl - c->in);
			char *reply = api_server_handle_line(srv, c->in, len);
			c->in_len -= len + 1;
			memmove(c->in, nl + 1, c->in_len);
			if (client_queue(c, reply) < 0)
				return -1;
			continue;
		}
		if (c->in_len > API_MAX_REQUEST_BYTES) {
			c->state = CLIENT_DRAINING;
			c->in_len = 0;
			if (client_queue(c, reply_error(NULL, EMSGSIZE, "request too large (more "
							"than %d bytes); closing the connection",
							API_MAX_REQUEST_BYTES)) < 0)
				return -1;
			continue;
		}
		if (c->eof) {
			if (c->in_len == 0)
				return -1;
			/* A last request without its newline is still a request. */
			c->state = CLIENT_CLOSING;
			char *reply = api_server_handle_line(srv, c->in, c->in_len);
			c->in_len = 0;
			if (client_queue(c, reply) < 0)
				return -1;
			continue;
		}
		return 0;
	}
}

static short client_events(const struct api_client *c)
{
	if (c->out_off < c->out_len)
		return POLLOUT;
	return c->eof ? 0 : POLLIN;
}

/* Returns false when accept() ran out of descriptors and should rest. */
static bool accept_clients(struct api_server *srv)
{
	for (;;) {
		int fd = accept4(srv->sock.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN)
				return true;
			log_warn("api: cannot accept a connection: %s", strerror(errno));
			return false;
		}
		struct api_client *c = NULL;
		if (srv->num_clients < API_MAX_CLIENTS) {
			c = calloc(1, sizeof(*c));
			if (c && !(c->in = malloc(API_MAX_REQUEST_BYTES + 1))) {
				free(c);
				c = NULL;
			}
		}
		if (!c) {
			/* Tell the client why rather than leave it guessing. */
			char *reply = srv->num_clients < API_MAX_CLIENTS
				? reply_error(NULL, ENOMEM, "out of memory")
				: reply_error(NULL, EBUSY, "too many connections (at most %d)",
					      API_MAX_CLIENTS);
			if (reply) {
				size_t n = strlen(reply);
				reply[n] = '\n';
				if (send(fd, reply, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
					log_debug("api: refusing a connection: %s", strerror(errno));
				free(reply);
			}
			close(fd);
			continue;
		}
		c->fd = fd;
		srv->clients[srv->num_clients++] = c;
	}
}

static void *serve(void *arg)
{
	struct api_server *srv = arg;
	struct pollfd pfd[2 + API_MAX_CLIENTS];
	bool accepting = true;

	for (;;) {
		pfd[0] = (struct pollfd){ .fd = srv->wake_fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = accepting ? srv->sock.fd : -1, .events = POLLIN };
		unsigned n = srv->num_clients;
		for (unsigned i = 0; i < n; i++)
			pfd[2 + i] = (struct pollfd){ .fd = srv->clients[i]->fd,
						      .events = client_events(srv->clients[i]) };
		int ready = poll(pfd, 2 + n, accepting ? -1 : API_ACCEPT_BACKOFF_MS);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			/* Only ENOMEM is possible here; wait and retry. */
			log_warn("api: poll: %s", strerror(errno));
			poll(NULL, 0, API_ACCEPT_BACKOFF_MS);   /* a sleep */
			continue;
		}
		if (pfd[0].revents)
			break;
		accepting = true;

		unsigned kept = 0;
		for (unsigned i = 0; i < n; i++) {
			struct api_client *c = srv->clients[i];
			short rev = pfd[2 + i].revents;
			int rc = 0;
			if (rev & POLLNVAL)
				rc = -1;
			else if ((rev & POLLOUT) || (c->out_off < c->out_len && rev))
				rc = client_flush(c);
			else if (rev)
				rc = client_read(c);
			if (rc == 0 && rev)
				rc = client_progress(srv, c);
			if (rc < 0)
				client_close(c);
			else
				srv->clients[kept++] = c;
		}
		/* Clients accepted below are appended after the survivors. */
		srv->num_clients = kept;
		if (pfd[1].revents & POLLIN)
			accepting = accept_clients(srv);
	}

	for (unsigned i = 0; i < srv->num_clients; i++)
		client_close(srv->clients[i]);
	srv->num_clients = 0;
	return NULL;
}

int api_server_start(struct api_server *srv, struct error *err)
{
	if (srv->started)
		return 0;       /* a replica serves before its VM runs (replica.h) */
	/* The serving thread takes no signals: they belong to the thread the
	 * VM dedicates to them, and would only interrupt poll() here. */
	sigset_t all, old;
	sigfillset(&all);
	int rc = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (rc)
		return error_errno(err, rc, "cannot mask signals for the API thread");
	rc = pthread_create(&srv->thread, NULL, serve, srv);
	int rc2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		return error_errno(err, rc, "cannot start the API server thread");
	srv->started = true;
	if (rc2)
		log_warn("api: cannot restore the signal mask: %s", strerror(rc2));
	/* Only a name for debuggers and top; failing to set it is harmless. */
	rc = pthread_setname_np(srv->thread, "tern-api");
	if (rc)
		log_debug("api: cannot name the server thread: %s", strerror(rc));
	return 0;
}

void api_server_destroy(struct api_server *srv)
{
	if (!srv)
		return;
	if (srv->started) {
		uint64_t one = 1;
		/* Can only fail if the counter would overflow, which a single
		 * wake-up cannot cause. */
		if (write(srv->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			log_error("api: cannot wake the server thread: %s", strerror(errno));
		int rc = pthread_join(srv->thread, NULL);
		if (rc)
			log_error("api: cannot join the server thread: %s", strerror(rc));
		srv->started = false;
	}
	unix_listen_close(&srv->sock);
	if (srv->wake_fd >= 0)
		close(srv->wake_fd);
	for (size_t i = 0; i < srv->num_commands; i++)
		free(srv->commands[i].name);
	free(srv->commands);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}
