/* test_api.c: the control API. The first half drives api_server_handle_line
 * (the envelope rules, no transport); the second runs a real server on a
 * socket in a fresh /tmp directory and talks to it with api_call and with
 * raw sockets for what api_call would never send. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/api_client.h"
#include "api/api_server.h"
#include "util/log.h"

/* ---- handlers ------------------------------------------------------- */

static int h_echo(void *opaque, json_t *args, json_t **result, struct error *err)
{
	*result = json_deep_copy(args);
	return 0;
}

static int h_none(void *opaque, json_t *args, json_t **result, struct error *err)
{
	return 0;
}

static int h_busy(void *opaque, json_t *args, json_t **result, struct error *err)
{
	return error_set(err, EBUSY, "the VM is busy: %s", (const char *)opaque);
}

static int h_bare_error(void *opaque, json_t *args, json_t **result, struct error *err)
{
	return -EPERM;
}

/* Fails after producing a result: the result must not leak. */
static int h_leaky(void *opaque, json_t *args, json_t **result, struct error *err)
{
	*result = json_string("half done");
	return error_set(err, EIO, "failed late");
}

/* A message that is not valid UTF-8 (a message cut mid-character, say). */
static int h_bad_utf8(void *opaque, json_t *args, json_t **result, struct error *err)
{
	return error_set(err, EINVAL, "bad \xc3 byte \xff end");
}

static int h_sleep(void *opaque, json_t *args, json_t **result, struct error *err)
{
	json_int_t ms = json_integer_value(json_object_get(args, "ms"));
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	*result = json_integer(ms);
	return 0;
}

/* ---- fixture: a server per test in its own directory ----------------- */

struct fixture {
	char dir[48];
	char path[96];
	struct api_server *srv;
};

static void register_all(struct api_server *srv)
{
	assert_int_equal(api_server_register(srv, "echo", h_echo, NULL), 0);
	assert_int_equal(api_server_register(srv, "none", h_none, NULL), 0);
	assert_int_equal(api_server_register(srv, "busy", h_busy, "pausing"), 0);
	assert_int_equal(api_server_register(srv, "bare", h_bare_error, NULL), 0);
	assert_int_equal(api_server_register(srv, "leaky", h_leaky, NULL), 0);
	assert_int_equal(api_server_register(srv, "badutf8", h_bad_utf8, NULL), 0);
	assert_int_equal(api_server_register(srv, "sleep", h_sleep, NULL), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-api-test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	struct error err = { 0 };
	f->srv = api_server_create(f->path, &err);
	if (!f->srv)
		fail_msg("api_server_create: %s", err.msg);
	register_all(f->srv);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	api_server_destroy(f->srv);
	char extra[160];
	snprintf(extra, sizeof(extra), "%s/not-a-socket", f->dir);
	unlink(extra);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void start(struct fixture *f)
{
	struct error err = { 0 };
	if (api_server_start(f->srv, &err) < 0)
		fail_msg("api_server_start: %s", err.msg);
}

/* ---- reply checks ----------------------------------------------------- */

static json_t *handle(struct fixture *f, const char *line)
{
	char *text = api_server_handle_line(f->srv, line, strlen(line));
	assert_non_null(text);
	assert_null(strchr(text, '\n'));
	json_error_t jerr;
	json_t *reply = json_loads(text, 0, &jerr);
	if (!reply)
		fail_msg("reply is not JSON (%s): %s", jerr.text, text);
	free(text);
	assert_true(json_is_object(reply));
	assert_non_null(json_object_get(reply, "id"));
	return reply;
}

static json_t *expect_ok(json_t *reply)
{
	assert_true(json_is_true(json_object_get(reply, "ok")));
	assert_null(json_object_get(reply, "error"));
	json_t *result = json_object_get(reply, "result");
	assert_non_null(result);
	return result;
}

/* Asserts an error reply with that code whose message contains needle. */
static void expect_error(json_t *reply, const char *code, const char *needle)
{
	assert_true(json_is_false(json_object_get(reply, "ok")));
	json_t *error = json_object_get(reply, "error");
	assert_true(json_is_object(error));
	assert_string_equal(json_string_value(json_object_get(error, "code")), code);
	const char *msg = json_string_value(json_object_get(error, "message"));
	assert_non_null(msg);
	if (needle && !strstr(msg, needle))
		fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

static void check_error(struct fixture *f, const char *line, const char *code,
			const char *needle)
{
	json_t *reply = handle(f, line);
	expect_error(reply, code, needle);
	json_decref(reply);
}

/* ---- the envelope ----------------------------------------------------- */

static void test_valid_request(void **state)
{
	struct fixture *f = *state;
	json_t *reply = handle(f, "{\"id\": 7, \"command\": \"echo\", \"args\": {\"x\": [1, \"two\"]}}");
	assert_int_equal(json_integer_value(json_object_get(reply, "id")), 7);
	json_t *want = json_loads("{\"x\": [1, \"two\"]}", 0, NULL);
	assert_true(json_equal(expect_ok(reply), want));
	json_decref(want);
	json_decref(reply);

	reply = handle(f, "{\"command\": \"echo\", \"id\": \"req-\\u00e9\"}");
	assert_string_equal(json_string_value(json_object_get(reply, "id")), "req-\xc3\xa9");
	/* No args: the handler sees an empty object. */
	json_t *result = expect_ok(reply);
	assert_true(json_is_object(result));
	assert_int_equal(json_object_size(result), 0);
	json_decref(reply);

	/* Without an id the reply's id is null; no result is null. */
	reply = handle(f, "{\"command\": \"none\"}\r\n");
	assert_true(json_is_null(json_object_get(reply, "id")));
	assert_true(json_is_null(expect_ok(reply)));
	json_decref(reply);

	reply = handle(f, "{\"id\": 2.5, \"command\": \"none\"}");
	assert_true(json_real_value(json_object_get(reply, "id")) == 2.5);
	json_decref(reply);
}

static void test_envelope_errors(void **state)
{
	struct fixture *f = *state;
	check_error(f, "{\"id\": 1, \"args\": {}}", "EINVAL", "no \"command\"");
	check_error(f, "{\"command\": 42}", "EINVAL", "\"command\" must be a string");
	check_error(f, "{\"command\": \"echo\", \"args\": [1]}", "EINVAL", "\"args\" must be an object");
	check_error(f, "{\"command\": \"echo\", \"args\": null}", "EINVAL", "\"args\" must be an object");
	check_error(f, "{\"command\": \"echo\", \"extra\": 1}", "EINVAL", "unknown field \"extra\"");
	check_error(f, "[1, 2]", "EINVAL", "must be a JSON object");
	check_error(f, "\"echo\"", "EINVAL", "invalid JSON");
	check_error(f, "{\"id\": {}, \"command\": \"echo\"}", "EINVAL", "\"id\" must be");
	check_error(f, "{\"command\": \"echo\", \"command\": \"none\"}", "EINVAL", "duplicate");
	check_error(f, "{\"command\": \"echo\"} {}", "EINVAL", "invalid JSON");

	/* The id still comes back when only the rest is wrong. */
	json_t *reply = handle(f, "{\"id\": \"abc\", \"command\": 1}");
	assert_string_equal(json_string_value(json_object_get(reply, "id")), "abc");
	json_decref(reply);
}

static void test_unknown_command(void **state)
{
	struct fixture *f = *state;
	json_t *reply = handle(f, "{\"id\": 3, \"command\": \"reboot\"}");
	expect_error(reply, "ENOSYS", "unknown command \"reboot\"");
	const char *msg = json_string_value(json_object_get(json_object_get(reply, "error"),
							    "message"));
	assert_non_null(strstr(msg, "busy, echo, help, leaky"));
	assert_int_equal(json_integer_value(json_object_get(reply, "id")), 3);
	json_decref(reply);
}

static void test_invalid_json(void **state)
{
	struct fixture *f = *state;
	check_error(f, "{\"command\": \"echo\",", "EINVAL", "line 1, column");
	check_error(f, "{\"command\": ech}", "EINVAL", "invalid JSON at line 1, column 15: invalid token");
	check_error(f, "{\"command\": \"\xff\"}", "EINVAL", "invalid JSON");
	/* An embedded NUL ends nothing early and is refused. */
	char *text = api_server_handle_line(f->srv, "{\"command\"\0: \"none\"}", 20);
	assert_non_null(strstr(text, "\"ok\":false"));
	free(text);
}

static void test_empty_line(void **state)
{
	struct fixture *f = *state;
	check_error(f, "", "EINVAL", "empty request");
	check_error(f, "  \t ", "EINVAL", "empty request");
	check_error(f, "\n", "EINVAL", "empty request");
}

static char *nested(unsigned levels)
{
	/* {"command":"echo","args":{"a":{"a":...{}...}}} with `levels` in all */
	size_t cap = 64 + levels * 8;
	char *s = malloc(cap);
	assert_non_null(s);
	size_t n = (size_t)sprintf(s, "{\"command\":\"echo\",\"args\":");
	for (unsigned i = 2; i < levels; i++)
		n += (size_t)sprintf(s + n, "{\"a\":");
	n += (size_t)sprintf(s + n, "{}");
	for (unsigned i = 2; i < levels; i++)
		s[n++] = '}';
	s[n++] = '}';
	s[n] = '\0';
	return s;
}

static void test_deep_nesting(void **state)
{
	struct fixture *f = *state;
	char *deep = nested(100);
	check_error(f, deep, "EINVAL", "deeper than 32");
	free(deep);

	char *limit = nested(32);
	json_t *reply = handle(f, limit);
	expect_ok(reply);
	json_decref(reply);
	free(limit);

	limit = nested(33);
	check_error(f, limit, "EINVAL", "deeper than 32");
	free(limit);

	/* Brackets inside strings are text, not nesting. */
	char line[256];
	snprintf(line, sizeof(line), "{\"command\":\"echo\",\"args\":{\"s\":\"%s\\\"[[[\"}}",
		 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
	reply = handle(f, line);
	expect_ok(reply);
	json_decref(reply);

	/* A bare 100-deep array is refused before parsing too. */
	char arr[256];
	memset(arr, '[', 100);
	memset(arr + 100, ']', 100);
	arr[200] = '\0';
	check_error(f, arr, "EINVAL", "deeper than 32");
}

static void test_handler_errors(void **state)
{
	struct fixture *f = *state;
	json_t *reply = handle(f, "{\"id\": 9, \"command\": \"busy\"}");
	expect_error(reply, "EBUSY", "the VM is busy: pausing");
	assert_int_equal(json_integer_value(json_object_get(reply, "id")), 9);
	json_decref(reply);

	/* No message from the handler: strerror of its return value. */
	check_error(f, "{\"command\": \"bare\"}", "EPERM", strerror(EPERM));
	check_error(f, "{\"command\": \"leaky\"}", "EIO", "failed late");
	check_error(f, "{\"command\": \"badutf8\"}", "EINVAL", "bad ? byte ? end");
}

static void test_help_and_register(void **state)
{
	struct fixture *f = *state;
	json_t *reply = handle(f, "{\"command\": \"help\"}");
	json_t *cmds = json_object_get(expect_ok(reply), "commands");
	assert_true(json_is_array(cmds));
	assert_int_equal(json_array_size(cmds), 8);
	assert_string_equal(json_string_value(json_array_get(cmds, 0)), "badutf8");
	assert_string_equal(json_string_value(json_array_get(cmds, 4)), "help");
	json_decref(reply);

	assert_int_equal(api_server_register(f->srv, "echo", h_echo, NULL), -EEXIST);
	assert_int_equal(api_server_register(f->srv, "help", h_echo, NULL), -EINVAL);
	assert_int_equal(api_server_register(f->srv, "", h_echo, NULL), -EINVAL);
	assert_int_equal(api_server_register(f->srv, "x", NULL, NULL), -EINVAL);
}

static void test_too_large_line(void **state)
{
	struct fixture *f = *state;
	size_t len = API_MAX_REQUEST_BYTES + 10;
	char *big = malloc(len);
	memset(big, ' ', len);
	char *text = api_server_handle_line(f->srv, big, len);
	assert_non_null(strstr(text, "request too large"));
	assert_non_null(strstr(text, "EMSGSIZE"));
	free(text);
	free(big);
}

/* ---- over a real socket -------------------------------------------- */

static int raw_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* Reads one line (without '\n') within 5 s; NULL at EOF before any byte. */
static char *raw_line(int fd)
{
	static char buf[1 << 16];
	size_t len = 0;
	while (len < sizeof(buf) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		assert_int_equal(poll(&p, 1, 5000), 1);
		ssize_t n = recv(fd, buf + len, 1, 0);
		assert_true(n >= 0);
		if (n == 0) {
			assert_int_equal(len, 0);
			return NULL;
		}
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return buf;
		}
		len++;
	}
	fail_msg("reply line too long");
	return NULL;
}

/* True when the peer closed: recv sees EOF within 5 s. */
static bool raw_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		return false;
	char c;
	return recv(fd, &c, 1, 0) == 0;
}

static void test_e2e_call(void **state)
{
	struct fixture *f = *state;
	start(f);

	struct stat st;
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	struct error err = { 0 };
	json_t *args = json_pack("{s:i, s:s}", "n", 5, "s", "hi");
	json_t *result = NULL;
	if (api_call(f->path, "echo", args, 5000, &result, &err) < 0)
		fail_msg("api_call: %s", err.msg);
	assert_true(json_equal(result, args));
	json_decref(result);
	json_decref(args);

	result = (json_t *)1;
	assert_int_equal(api_call(f->path, "none", NULL, 5000, &result, &err), 0);
	assert_null(result);

	memset(&err, 0, sizeof(err));
	assert_int_equal(api_call(f->path, "busy", NULL, 5000, &result, &err), -EBUSY);
	assert_int_equal(err.code, EBUSY);
	assert_string_equal(err.msg, "the VM is busy: pausing");
	assert_null(result);

	assert_int_equal(api_call(f->path, "nosuch", NULL, 5000, &result, &err), -ENOSYS);
	assert_non_null(strstr(err.msg, "unknown command \"nosuch\""));

	/* A handler slower than the timeout. */
	args = json_pack("{s:i}", "ms", 300);
	assert_int_equal(api_call(f->path, "sleep", args, 50, &result, &err), -ETIMEDOUT);
	json_decref(args);
	/* The server is still there afterwards. */
	assert_int_equal(api_call(f->path, "none", NULL, 5000, &result, &err), 0);

	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nothing.sock", f->dir);
	assert_int_equal(api_call(missing, "none", NULL, 1000, &result, &err), -ENOENT);
	assert_non_null(strstr(err.msg, missing));
}

static void test_e2e_connection_reuse(void **state)
{
	struct fixture *f = *state;
	start(f);
	int a = raw_connect(f->path);
	int b = raw_connect(f->path);

	/* Two requests in one write, and one split over two writes. */
	const char *two = "{\"id\":1,\"command\":\"none\"}\n{\"id\":2,\"command\":\"nosuch\"}\n";
	raw_send(a, two, strlen(two));
	raw_send(b, "{\"id\":\"b\",\"comm", 15);
	char *line = raw_line(a);
	assert_non_null(strstr(line, "\"id\":1,\"ok\":true"));
	line = raw_line(a);
	assert_non_null(strstr(line, "\"id\":2,\"ok\":false"));
	raw_send(b, "and\":\"none\"}\n", 13);
	line = raw_line(b);
	assert_non_null(strstr(line, "\"id\":\"b\",\"ok\":true"));

	/* Bad input keeps the connection open. */
	raw_send(a, "garbage\n\n", 9);
	assert_non_null(strstr(raw_line(a), "invalid JSON"));
	assert_non_null(strstr(raw_line(a), "empty request"));
	raw_send(a, "{\"command\":\"none\"}\n", 19);
	assert_non_null(strstr(raw_line(a), "\"ok\":true"));

	/* A last request without newline is answered at EOF. */
	raw_send(b, "{\"id\":5,\"command\":\"none\"}", 25);
	assert_int_equal(shutdown(b, SHUT_WR), 0);
	assert_non_null(strstr(raw_line(b), "\"id\":5,\"ok\":true"));
	assert_true(raw_eof(b));
	close(a);
	close(b);
}

static void test_e2e_oversized(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = raw_connect(f->path);
	size_t len = API_MAX_REQUEST_BYTES + 4096;
	char *big = malloc(len);
	memset(big, 'x', len);
	big[len - 1] = '\n';
	raw_send(fd, big, len);
	char *line = raw_line(fd);
	assert_non_null(line);
	assert_non_null(strstr(line, "request too large"));
	assert_true(raw_eof(fd));
	close(fd);

	/* Exactly API_MAX_REQUEST_BYTES is still a request (of spaces and a
	 * JSON object at the end). */
	fd = raw_connect(f->path);
	const char *req = "{\"command\":\"none\"}";
	memset(big, ' ', API_MAX_REQUEST_BYTES);
	memcpy(big + API_MAX_REQUEST_BYTES - strlen(req), req, strlen(req));
	big[API_MAX_REQUEST_BYTES] = '\n';
	raw_send(fd, big, API_MAX_REQUEST_BYTES + 1);
	assert_non_null(strstr(raw_line(fd), "\"ok\":true"));
	close(fd);
	free(big);

	struct error err = { 0 };
	json_t *result;
	assert_int_equal(api_call(f->path, "none", NULL, 5000, &result, &err), 0);
}

/* Clients vanishing at any point must not hurt the server (nor SIGPIPE it). */
static void test_e2e_disconnects(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = raw_connect(f->path);
	raw_send(fd, "{\"command\":\"ec", 14);
	close(fd);

	/* Gone before the reply is written: the reply meets EPIPE. */
	fd = raw_connect(f->path);
	const char *slow = "{\"command\":\"sleep\",\"args\":{\"ms\":100}}\n";
	raw_send(fd, slow, strlen(slow));
	close(fd);

	/* Never reads its replies: the server stops reading it, no more. */
	fd = raw_connect(f->path);
	char *many = malloc(200000);
	size_t n = 0;
	while (n + 32 < 200000)
		n += (size_t)sprintf(many + n, "{\"command\":\"help\"}\n");
	ssize_t sent = send(fd, many, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	assert_true(sent > 0);
	free(many);

	struct error err = { 0 };
	json_t *result = NULL;
	if (api_call(f->path, "help", NULL, 5000, &result, &err) < 0)
		fail_msg("api_call: %s", err.msg);
	json_decref(result);
	close(fd);
	assert_int_equal(api_call(f->path, "none", NULL, 5000, &result, &err), 0);
}

static void test_e2e_socket_file(void **state)
{
	struct fixture *f = *state;
	struct error err = { 0 };
	start(f);

	/* A live socket is refused, and left working. */
	struct api_server *two = api_server_create(f->path, &err);
	assert_null(two);
	assert_int_equal(err.code, EADDRINUSE);
	assert_non_null(strstr(err.msg, "another process serves"));
	json_t *result;
	assert_int_equal(api_call(f->path, "none", NULL, 5000, &result, &err), 0);

	/* destroy removes the file... */
	api_server_destroy(f->srv);
	f->srv = NULL;
	struct stat st;
	assert_int_equal(lstat(f->path, &st), -1);
	assert_int_equal(errno, ENOENT);

	/* ...and a stale one (bound, then its owner died) is replaced. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 1), 0);
	close(fd);
	assert_int_equal(lstat(f->path, &st), 0);
	f->srv = api_server_create(f->path, &err);
	if (!f->srv)
		fail_msg("stale socket not replaced: %s", err.msg);
	register_all(f->srv);
	start(f);
	assert_int_equal(api_call(f->path, "none", NULL, 5000, &result, &err), 0);

	/* Not a socket: refused, untouched. */
	char other[160];
	snprintf(other, sizeof(other), "%s/not-a-socket", f->dir);
	FILE *file = fopen(other, "w");
	assert_non_null(file);
	fputs("keep me", file);
	fclose(file);
	assert_null(api_server_create(other, &err));
	assert_int_equal(err.code, EEXIST);
	assert_non_null(strstr(err.msg, "not a socket"));
	assert_int_equal(lstat(other, &st), 0);
	assert_int_equal(st.st_size, 7);

	/* Too long for sun_path. */
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_null(api_server_create(longpath, &err));
	assert_int_equal(err.code, ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "too long"));
	assert_int_equal(api_call(longpath, "none", NULL, 100, &result, &err), -ENAMETOOLONG);

	/* No such directory. */
	char nodir[160];
	snprintf(nodir, sizeof(nodir), "%s/no/such/dir.sock", f->dir);
	assert_null(api_server_create(nodir, &err));
	assert_int_equal(err.code, ENOENT);
}

/* The mode does not depend on a permissive umask. */
static void test_e2e_umask(void **state)
{
	struct fixture *f = *state;
	api_server_destroy(f->srv);
	mode_t old = umask(0);
	struct error err = { 0 };
	f->srv = api_server_create(f->path, &err);
	umask(old);
	assert_non_null(f->srv);
	struct stat st;
	assert_int_equal(lstat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
}

/* Destroying a server that was never started, or with clients connected. */
static void test_e2e_destroy(void **state)
{
	struct fixture *f = *state;
	start(f);
	int a = raw_connect(f->path);
	raw_send(a, "{\"command\"", 10);
	int b = raw_connect(f->path);
	/* Let the server accept both before it is told to stop. */
	raw_send(b, "{\"command\":\"none\"}\n", 19);
	assert_non_null(raw_line(b));

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	api_server_destroy(f->srv);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	f->srv = NULL;
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_true(raw_eof(a));
	assert_true(raw_eof(b));
	close(a);
	close(b);

	struct error err = { 0 };
	struct api_server *idle = api_server_create(f->path, &err);
	assert_non_null(idle);
	api_server_destroy(idle);
	struct stat st;
	assert_int_equal(lstat(f->path, &st), -1);
}

int main(void)
{
	/* Expected refusals log at info level; keep the test output readable. */
	log_set_level(LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_valid_request),
		T(test_envelope_errors),
		T(test_unknown_command),
		T(test_invalid_json),
		T(test_empty_line),
		T(test_deep_nesting),
		T(test_handler_errors),
		T(test_help_and_register),
		T(test_too_large_line),
		T(test_e2e_call),
		T(test_e2e_connection_reuse),
		T(test_e2e_oversized),
		T(test_e2e_disconnects),
		T(test_e2e_socket_file),
		T(test_e2e_umask),
		T(test_e2e_destroy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
