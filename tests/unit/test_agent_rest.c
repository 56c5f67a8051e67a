/* Unit tests for the agent's REST server (agent/rest.c) through its real
 * sockets, with the agent's HTTP client (agent/http_client.c), and for
 * the VM spec and rule checks the API applies to bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/http_client.h"
#include "agent/rest.h"
#include "agent/rules.h"
#include "agent/vmproc.h"

#define TOKEN "0123456789abcdef0123"

struct fixture {
	char dir[64];
	char sock[128];
	char where[160];
	char tcp[64];
	struct rest_server *srv;
	int calls;
};

/* Echoes what it was given: method, the {} segments, the body. */
static int echo(void *opaque, const struct rest_request *req, json_t **reply, struct error *err)
{
	struct fixture *f = opaque;
	f->calls++;
	json_t *params = json_array();
	for (unsigned i = 0; i < req->n_params; i++)
		json_array_append_new(params, json_string(req->params[i]));
	*reply = json_pack("{s:s, s:o, s:O?, s:s?}", "method", req->method, "params", params,
			   "body", req->body, "dry_run", req->query_dry_run);
	return 0;
}

static int refuse(void *opaque, const struct rest_request *req, json_t **reply, struct error *err)
{
	return error_set(err, EBUSY, "busy doing %s", req->params[0]);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-rest-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
	snprintf(f->where, sizeof(f->where), "unix:%s", f->sock);
	snprintf(f->tcp, sizeof(f->tcp), "127.0.0.1:%d", free_port());
	struct error err = { 0 };
	f->srv = rest_server_create(f->sock, f->tcp, TOKEN, &err);
	assert_non_null(f->srv);
	assert_int_equal(rest_route(f->srv, "GET", "/v1/things", echo, f), 0);
	assert_int_equal(rest_route(f->srv, "POST", "/v1/things", echo, f), 0);
	assert_int_equal(rest_route(f->srv, "POST", "/v1/things/{}/move/{}", echo, f), 0);
	assert_int_equal(rest_route(f->srv, "DELETE", "/v1/things/{}", refuse, f), 0);
	assert_int_equal(rest_server_start(f->srv, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	rest_server_destroy(f->srv);
	/* The server removed its socket; the directory is empty again. */
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static void test_routes_params_and_body(void **state)
{
	struct fixture *f = *state;
	json_t *r = NULL;
	struct error err = { 0 };
	json_t *body = json_pack("{s:i}", "n", 7);
	assert_int_equal(http_json(f->where, NULL, "POST", "/v1/things/a1/move/b-2", body, 5000,
				   &r, &err), 0);
	json_decref(body);
	assert_string_equal(json_string_value(json_object_get(r, "method")), "POST");
	json_t *p = json_object_get(r, "params");
	assert_int_equal(json_array_size(p), 2);
	assert_string_equal(json_string_value(json_array_get(p, 0)), "a1");
	assert_string_equal(json_string_value(json_array_get(p, 1)), "b-2");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "body"), "n")), 7);
	json_decref(r);
	assert_int_equal(http_json(f->where, NULL, "GET", "/v1/things?dry_run=1", NULL, 5000, &r,
				   &err), 0);
	assert_string_equal(json_string_value(json_object_get(r, "dry_run")), "1");
	json_decref(r);
}

static void test_errors_become_statuses(void **state)
{
	struct fixture *f = *state;
	json_t *r = NULL;
	struct error err = { 0 };
	int calls = f->calls;
	/* A handler's error: its errno's status, its message. */
	assert_int_equal(http_json(f->where, NULL, "DELETE", "/v1/things/x", NULL, 5000, &r, &err),
			 -EBUSY);
	assert_string_equal(err.msg, "busy doing x");
	/* No such path; a path without that method. */
	assert_int_equal(http_json(f->where, NULL, "GET", "/v1/nothing", NULL, 5000, &r, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "no such resource"));
	assert_int_equal(http_json(f->where, NULL, "PUT", "/v1/things", NULL, 5000, &r, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "not allowed"));
	/* Segments must not be empty, nor the pattern partly matched. */
	assert_int_equal(http_json(f->where, NULL, "POST", "/v1/things//move/b", NULL, 5000, &r,
				   &err), -ENOENT);
	assert_int_equal(http_json(f->where, NULL, "POST", "/v1/things/a/move/b/c", NULL, 5000,
				   &r, &err), -ENOENT);
	assert_int_equal(f->calls, calls);
}

static void test_bad_bodies_never_reach_handlers(void **state)
{
	struct fixture *f = *state;
	int calls = f->calls;
	char cmd[512];
	/* Not JSON; larger than the limit. */
	snprintf(cmd, sizeof(cmd), "curl -s --unix-socket %s -X POST -d '{nope' "
		 "http://x/v1/things | grep -q 'not JSON'", f->sock);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "head -c 300000 /dev/zero | tr '\\\\0' ' ' | curl -s "
		 "--unix-socket %s -X POST --data-binary @- http://x/v1/things | "
		 "grep -q 'larger than'", f->sock);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(f->calls, calls);
}

static void test_tcp_needs_the_token(void **state)
{
	struct fixture *f = *state;
	char where[96];
	snprintf(where, sizeof(where), "http://%s", f->tcp);
	json_t *r = NULL;
	struct error err = { 0 };
	int calls = f->calls;
	assert_int_equal(http_json(where, NULL, "GET", "/v1/things", NULL, 5000, &r, &err), -EACCES);
	assert_non_null(strstr(err.msg, "Bearer"));
	assert_int_equal(http_json(where, "0123456789abcdef0124", "GET", "/v1/things", NULL, 5000,
				   &r, &err), -EACCES);
	assert_int_equal(http_json(where, "0123", "GET", "/v1/things", NULL, 5000, &r, &err),
			 -EACCES);
	assert_int_equal(f->calls, calls);
	assert_int_equal(http_json(where, TOKEN, "GET", "/v1/things", NULL, 5000, &r, &err), 0);
	json_decref(r);
	assert_int_equal(f->calls, calls + 1);
}

static void test_server_refuses_bad_setups(void **state)
{
	struct fixture *f = *state;
	struct error err = { 0 };
	/* A live socket is not taken over. */
	assert_null(rest_server_create(f->sock, NULL, NULL, &err));
	assert_int_equal(err.code, EADDRINUSE);
	char other[128];
	snprintf(other, sizeof(other), "%s/other.sock", f->dir);
	assert_null(rest_server_create(other, "127.0.0.1:1", "short", &err));
	assert_non_null(strstr(err.msg, "token"));
	assert_null(rest_server_create(other, "localhost:80", TOKEN, &err));
	assert_non_null(strstr(err.msg, "IPv4"));
	assert_null(rest_server_create(other, "127.0.0.1:99999", TOKEN, &err));
	assert_int_equal(access(other, F_OK), -1);
	/* Nobody there: the client names the address and why. */
	assert_int_equal(http_json("unix:/nonexistent/api.sock", NULL, "GET", "/v1/x", NULL, 2000,
				   &(json_t *){ NULL }, &err), -ECONNREFUSED);
	assert_non_null(strstr(err.msg, "/nonexistent/api.sock"));
	assert_int_equal(http_json("ftp://x", NULL, "GET", "/", NULL, 2000, &(json_t *){ NULL },
				   &err), -EINVAL);
}

static json_t *spec(const char *extra_key, json_t *extra_val)
{
	json_t *j = json_pack("{s:s, s:s, s:i}", "name", "web-1", "kernel", "/boot/Image",
			      "memory_mib", 256);
	if (extra_key)
		json_object_set_new(j, extra_key, extra_val);
	return j;
}

static void test_vm_specs(void **state)
{
	struct vm_spec s;
	struct error err = { 0 };
	json_t *j = spec("cmdline", json_string("console=ttyS0"));
	assert_int_equal(vm_spec_from_json(j, &s, &err), 0);
	assert_string_equal(s.name, "web-1");
	assert_int_equal(s.memory_mib, 256);
	assert_int_equal(s.cpus, 1);
	json_t *back = vm_spec_to_json(&s);
	json_t *want = json_pack("{s:s, s:i, s:i, s:s, s:s}", "name", "web-1", "memory_mib", 256,
				 "cpus", 1, "kernel", "/boot/Image", "cmdline", "console=ttyS0");
	assert_true(json_equal(back, want));
	json_decref(back);
	json_decref(want);
	json_decref(j);
	const struct { const char *key; json_t *val; const char *words; } bad[] = {
		{ "colour", json_string("red"), "unknown field" },
		{ "name", json_string("Web"), "not a VM name" },
		{ "name", json_string("-x"), "not a VM name" },
		{ "kernel", json_string("Image"), "absolute" },
		{ "disk", json_string("disk.img"), "absolute" },
		{ "memory_mib", json_integer(0), "memory_mib" },
		{ "memory_mib", json_string("256"), "memory_mib" },
		{ "cpus", json_integer(99), "cpus" },
		{ "cmdline", json_integer(1), "cmdline" },
		{ "tap", json_string("a-name-longer-than-tap-names-may-be"), "tap" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = spec(bad[i].key, bad[i].val);
		assert_int_equal(vm_spec_from_json(j, &s, &err), -EINVAL);
		if (!strstr(err.msg, bad[i].words))
			fail_msg("%s: \"%s\" does not say %s", bad[i].key, err.msg, bad[i].words);
		json_decref(j);
	}
	json_t *list = json_array();
	assert_int_equal(vm_spec_from_json(list, &s, &err), -EINVAL);
	json_decref(list);
	j = json_pack("{s:s}", "name", "a");
	assert_int_equal(vm_spec_from_json(j, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "kernel"));
	json_decref(j);
}

static void test_rules(void **state)
{
	enum cl_rule_kind k;
	struct error err = { 0 };
	json_t *j = json_pack("{s:s, s:s, s:[s,s]}", "name", "apart", "kind", "anti-affinity",
			      "vms", "a", "b");
	assert_int_equal(rule_check_json(j, &k, &err), 0);
	assert_int_equal(k, CL_VM_ANTI_AFFINITY);
	json_decref(j);
	j = json_pack("{s:s, s:s, s:[s], s:[s]}", "name", "pin", "kind", "host-affinity", "vms",
		      "a", "hosts", "h1");
	assert_int_equal(rule_check_json(j, &k, &err), 0);
	assert_int_equal(k, CL_HOST_AFFINITY);
	assert_string_equal(rule_kind_name(k), "host-affinity");
	json_decref(j);
	const char *bad[] = {
		"{\"name\": \"x\", \"kind\": \"affinity\", \"vms\": [\"a\"]}",
		"{\"name\": \"x\", \"kind\": \"affinity\", \"vms\": [\"a\", \"b\"], \"hosts\": [\"h\"]}",
		"{\"name\": \"x\", \"kind\": \"host-affinity\", \"vms\": [\"a\"]}",
		"{\"name\": \"x\", \"kind\": \"sideways\", \"vms\": [\"a\", \"b\"]}",
		"{\"name\": \"X!\", \"kind\": \"affinity\", \"vms\": [\"a\", \"b\"]}",
		"{\"name\": \"x\", \"kind\": \"affinity\", \"vms\": [\"a\", 7]}",
		"{\"name\": \"x\", \"kind\": \"affinity\", \"vms\": \"a,b\"}",
		"{\"name\": \"x\", \"kind\": \"affinity\", \"vms\": [\"a\", \"b\"], \"why\": 1}",
		"[]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = json_loads(bad[i], 0, NULL);
		assert_non_null(j);
		if (rule_check_json(j, &k, &err) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		json_decref(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_routes_params_and_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_become_statuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_bodies_never_reach_handlers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_needs_the_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_refuses_bad_setups, setup, teardown),
		cmocka_unit_test(test_vm_specs),
		cmocka_unit_test(test_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
