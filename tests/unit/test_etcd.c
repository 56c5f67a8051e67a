/* test_etcd.c: the etcd client (src/cluster/etcd.h) against a real etcd.
 *
 * The group setup starts one etcd member (/usr/bin/etcd, Debian's 3.4) in a
 * fresh directory under /tmp, serving clients and peers on unix sockets, so
 * no port is taken; one test starts a three-member cluster of its own and
 * kills its leader. Every member gets PR_SET_PDEATHSIG, so none outlives a
 * crashed test, and teardown kills them by pid and removes the directory.
 * A missing etcd fails the run: these tests are never skipped.
 *
 * Covered: binary values (NULs, every base64 padding), prefix reads across
 * pages, deletes; transactions (compare-and-swap on mod_revision,
 * create-if-absent, the other compares, the limits refused before
 * sending); leases (63-bit ids checked against etcdctl, keepalive, revoke,
 * expiry); endpoint errors and failover (missing socket, refused port,
 * silent member); threads sharing one client; watches (history, live,
 * stop flag, wait_change, compaction); a leader killed under puts and a
 * watch. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/etcd.h"

#define ETCD_BIN "/usr/bin/etcd"
#define ETCDCTL_BIN "/usr/bin/etcdctl"
#define MAX_MEMBERS 3
#define READY_TIMEOUT_MS 15000

/* ---- etcd processes ------------------------------------------------------- */

struct member {
	pid_t pid;
	char dir[128];
	char sock[160];          /* its client socket */
};

struct cluster {
	char root[64];
	unsigned n;
	struct member m[MAX_MEMBERS];
	char endpoints[3 * 170]; /* "unix:/...,unix:/..." */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Starts etcd in m->dir: clients on unix://client:1, peers on unix://pN:1
 * (names relative to the working directory; each member's directory holds
 * symlinks to the others' peer sockets). */
static int member_spawn(struct cluster *c, unsigned i)
{
	struct member *m = &c->m[i];
	char name[8], peer[32], initial[128] = "";
	snprintf(name, sizeof(name), "m%u", i + 1);
	snprintf(peer, sizeof(peer), "unix://p%u:1", i + 1);
	for (unsigned j = 0; j < c->n; j++) {
		size_t used = strlen(initial);
		snprintf(initial + used, sizeof(initial) - used, "%sm%u=unix://p%u:1", j ? "," : "",
			 j + 1, j + 1);
	}
	char *const argv[] = {
		ETCD_BIN, "--name", name, "--data-dir", "data",
		"--listen-client-urls", "unix://client:1",
		"--advertise-client-urls", "unix://client:1",
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", initial, "--initial-cluster-state", "new",
		"--heartbeat-interval", "10", "--election-timeout", "100",
		NULL,
	};
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* Never outlive the test, even when it crashes. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		if (chdir(m->dir) < 0)
			_exit(127);
		int log = open("etcd.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int null = open("/dev/null", O_RDONLY);
		if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(127);
		execv(ETCD_BIN, argv);
		_exit(127);
	}
	m->pid = pid;
	return 0;
}

static void print_log_tail(const struct member *m)
{
	char path[200], line[512];
	snprintf(path, sizeof(path), "%s/etcd.log", m->dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char lines[8][512] = { { 0 } };
	unsigned n = 0;
	while (fgets(line, sizeof(line), f))
		snprintf(lines[n++ % 8], sizeof(lines[0]), "%s", line);
	fclose(f);
	fprintf(stderr, "---- last lines of %s:\n", path);
	for (unsigned k = n > 8 ? n - 8 : 0; k < n; k++)
		fputs(lines[k % 8], stderr);
}

/* Waits until member i answers and knows a leader. */
static int member_wait(struct cluster *c, unsigned i)
{
	struct member *m = &c->m[i];
	char ep[170];
	struct error err = { 0 };
	snprintf(ep, sizeof(ep), "unix:%s", m->sock);
	struct etcd *e = etcd_open(ep, &err);
	if (!e) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	etcd_set_timeout_ms(e, 500);
	int64_t until = now_ms() + READY_TIMEOUT_MS;
	for (;;) {
		struct etcd_status st;
		if (etcd_endpoint_status(e, 0, &st, &err) == 0 && st.leader_id) {
			etcd_close(e);
			return 0;
		}
		int status;
		if (waitpid(m->pid, &status, WNOHANG) == m->pid) {
			fprintf(stderr, "etcd in %s exited (status %#x)\n", m->dir, status);
			m->pid = 0;
			break;
		}
		if (now_ms() > until) {
			fprintf(stderr, "etcd in %s not ready after %d ms: %s\n", m->dir,
				READY_TIMEOUT_MS, err.msg);
			break;
		}
		sleep_ms(20);
	}
	print_log_tail(m);
	etcd_close(e);
	return -1;
}

static void member_kill(struct member *m)
{
	if (m->pid > 0) {
		kill(m->pid, SIGKILL);
		waitpid(m->pid, NULL, 0);
		m->pid = 0;
	}
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void cluster_stop(struct cluster *c)
{
	for (unsigned i = 0; i < c->n; i++)
		member_kill(&c->m[i]);
	if (c->root[0])
		nftw(c->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	memset(c, 0, sizeof(*c));
}

static int cluster_start(struct cluster *c, unsigned n)
{
	memset(c, 0, sizeof(*c));
	if (access(ETCD_BIN, X_OK) != 0) {
		fprintf(stderr, "test_etcd: %s is missing (apt-get install etcd-server): these "
			"tests need a real etcd\n", ETCD_BIN);
		return -1;
	}
	snprintf(c->root, sizeof(c->root), "/tmp/tern-etcd-XXXXXX");
	if (!mkdtemp(c->root)) {
		perror("mkdtemp");
		c->root[0] = '\0';
		return -1;
	}
	c->n = n;
	for (unsigned i = 0; i < n; i++) {
		struct member *m = &c->m[i];
		snprintf(m->dir, sizeof(m->dir), "%s/m%u", c->root, i + 1);
		snprintf(m->sock, sizeof(m->sock), "%s/client:1", m->dir);
		if (mkdir(m->dir, 0755) < 0)
			goto fail;
		for (unsigned j = 0; j < n; j++) {
			char target[32], link[200];
			if (j == i)
				continue;
			snprintf(target, sizeof(target), "../m%u/p%u:1", j + 1, j + 1);
			snprintf(link, sizeof(link), "%s/p%u:1", m->dir, j + 1);
			if (symlink(target, link) < 0)
				goto fail;
		}
		size_t used = strlen(c->endpoints);
		snprintf(c->endpoints + used, sizeof(c->endpoints) - used, "%sunix:%s", i ? "," : "",
			 m->sock);
	}
	for (unsigned i = 0; i < n; i++)
		if (member_spawn(c, i) < 0)
			goto fail;
	for (unsigned i = 0; i < n; i++)
		if (member_wait(c, i) < 0)
			goto fail;
	return 0;
fail:
	fprintf(stderr, "test_etcd: cannot start %u etcd member(s) in %s\n", n, c->root);
	cluster_stop(c);
	return -1;
}

/* ---- fixture ------------------------------------------------------------------ */

static struct cluster single;
static struct etcd *client;

static int group_setup(void **state)
{
	(void)state;
	if (cluster_start(&single, 1) < 0)
		return -1;
	struct error err = { 0 };
	client = etcd_open(single.endpoints, &err);
	if (!client) {
		fprintf(stderr, "%s\n", err.msg);
		cluster_stop(&single);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	etcd_close(client);
	client = NULL;
	cluster_stop(&single);
	return 0;
}

static int ok_or_fail(int rc, const char *call, const struct error *err)
{
	if (rc < 0)
		fail_msg("%s failed (%d): %s", call, rc, err->msg);
	return rc;
}
#define OK(call) ok_or_fail((call), #call, &err)

static void expect_msg(const struct error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err->msg, needle);
}

static int64_t put_str(const char *key, const char *val)
{
	struct error err = { 0 };
	int64_t rev = 0;
	OK(etcd_put(client, key, val, strlen(val), 0, &rev, &err));
	assert_true(rev > 0);
	return rev;
}

/* The value of key, or NULL when absent: the caller frees. */
static char *get_str(struct etcd *e, const char *key)
{
	struct error err = { 0 };
	struct etcd_kv kv;
	bool found;
	OK(etcd_get(e, key, &kv, &found, &err));
	if (!found)
		return NULL;
	char *v = strdup(kv.value);
	etcd_kv_free(&kv);
	return v;
}

/* ---- keys and values -------------------------------------------------------- */

static void test_put_get_binary(void **state)
{
	(void)state;
	struct error err = { 0 };
	struct etcd_kv kv;
	bool found = true;

	static const char bin[] = { 'a', '\0', 'b', (char)0xff, '\0', '\n', '=', '\0' };
	int64_t rev;
	OK(etcd_put(client, "/t/bin", bin, sizeof(bin), 0, &rev, &err));
	OK(etcd_get(client, "/t/bin", &kv, &found, &err));
	assert_true(found);
	assert_string_equal(kv.key, "/t/bin");
	assert_int_equal(kv.value_len, sizeof(bin));
	assert_memory_equal(kv.value, bin, sizeof(bin));
	assert_int_equal(kv.value[kv.value_len], '\0');
	assert_int_equal(kv.create_revision, rev);
	assert_int_equal(kv.mod_revision, rev);
	assert_int_equal(kv.version, 1);
	assert_int_equal(kv.lease, 0);
	etcd_kv_free(&kv);

	/* A second put: a new mod_revision and version, the same create_revision. */
	int64_t rev2;
	OK(etcd_put(client, "/t/bin", "x", 1, 0, &rev2, &err));
	assert_true(rev2 > rev);
	OK(etcd_get(client, "/t/bin", &kv, &found, &err));
	assert_int_equal(kv.create_revision, rev);
	assert_int_equal(kv.mod_revision, rev2);
	assert_int_equal(kv.version, 2);
	etcd_kv_free(&kv);

	/* Every length modulo 3 (base64 padding), the empty value included. */
	unsigned char buf[64];
	for (size_t len = 0; len <= 7; len++) {
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)(0xfe - 37 * i - len);
		OK(etcd_put(client, "/t/pad", buf, len, 0, NULL, &err));
		OK(etcd_get(client, "/t/pad", &kv, &found, &err));
		assert_true(found);
		assert_int_equal(kv.value_len, len);
		assert_non_null(kv.value);
		if (len)
			assert_memory_equal(kv.value, buf, len);
		assert_int_equal(kv.value[len], '\0');
		etcd_kv_free(&kv);
	}

	/* A large value, every byte value present. */
	size_t big = 300 * 1024;
	unsigned char *p = malloc(big);
	assert_non_null(p);
	for (size_t i = 0; i < big; i++)
		p[i] = (unsigned char)(i * 131 + (i >> 8));
	OK(etcd_put(client, "/t/big", p, big, 0, NULL, &err));
	OK(etcd_get(client, "/t/big", &kv, &found, &err));
	assert_int_equal(kv.value_len, big);
	assert_memory_equal(kv.value, p, big);
	etcd_kv_free(&kv);
	free(p);

	/* Absent: found false, no error. */
	OK(etcd_get(client, "/t/absent", &kv, &found, &err));
	assert_false(found);
	assert_null(kv.key);
	assert_null(kv.value);
}

static void test_range_prefix_and_delete(void **state)
{
	(void)state;
	struct error err = { 0 };
	struct etcd_kv *kvs;
	size_t n;
	int64_t hrev;

	put_str("/t/range/b", "2");
	put_str("/t/range/a", "1");
	int64_t last = put_str("/t/range/c/d", "3");
	put_str("/t/rangeX", "not under /t/range/");
	put_str("/t/rang", "not under /t/range/");

	OK(etcd_range_prefix(client, "/t/range/", &kvs, &n, &hrev, &err));
	assert_int_equal(n, 3);
	assert_string_equal(kvs[0].key, "/t/range/a");
	assert_string_equal(kvs[1].key, "/t/range/b");
	assert_string_equal(kvs[2].key, "/t/range/c/d");
	assert_string_equal(kvs[2].value, "3");
	assert_true(hrev >= last + 2);
	etcd_kvs_free(kvs, n);

	assert_int_equal(OK(etcd_delete(client, "/t/range/a", &err)), 1);
	assert_int_equal(OK(etcd_delete(client, "/t/range/a", &err)), 0);
	assert_int_equal(OK(etcd_delete_prefix(client, "/t/range/", &err)), 2);
	OK(etcd_range_prefix(client, "/t/range/", &kvs, &n, NULL, &err));
	assert_int_equal(n, 0);
	assert_null(kvs);
	char *v = get_str(client, "/t/rangeX");
	assert_non_null(v);
	free(v);

	/* A prefix ending in 0xff bytes: its range end carries over. */
	put_str("/t/ff/\xff\xff" "a", "in");
	put_str("/t/ff/\xff\xff", "in");
	put_str("/t/ff0", "out");
	OK(etcd_range_prefix(client, "/t/ff/\xff", &kvs, &n, NULL, &err));
	assert_int_equal(n, 2);
	etcd_kvs_free(kvs, n);
	assert_int_equal(OK(etcd_delete_prefix(client, "/t/ff/\xff", &err)), 2);

	/* More keys than one page holds: one sorted, consistent list. Written
	 * 128 per transaction, etcd's limit. */
	enum { MANY = 1100 };
	char key[64];
	for (unsigned i = 0; i < MANY;) {
		struct etcd_txn *t = etcd_txn_new();
		assert_non_null(t);
		for (unsigned k = 0; k < ETCD_TXN_MAX_OPS && i < MANY; k++, i++) {
			snprintf(key, sizeof(key), "/t/many/%05u", i);
			assert_int_equal(etcd_txn_put(t, ETCD_ON_SUCCESS, key, key, strlen(key), 0), 0);
		}
		bool ok;
		OK(etcd_txn_commit(client, t, &ok, NULL, NULL, &err));
		assert_true(ok);
		etcd_txn_free(t);
	}
	OK(etcd_range_prefix(client, "/t/many/", &kvs, &n, &hrev, &err));
	assert_int_equal(n, MANY);
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(key, sizeof(key), "/t/many/%05u", i);
		assert_string_equal(kvs[i].key, key);
		assert_string_equal(kvs[i].value, key);
		assert_true(kvs[i].mod_revision <= hrev);
	}
	etcd_kvs_free(kvs, n);
	assert_int_equal(OK(etcd_delete_prefix(client, "/t/many/", &err)), MANY);
}

/* ---- transactions ---------------------------------------------------------- */

static void test_txn_cas_on_mod_revision(void **state)
{
	(void)state;
	struct error err = { 0 };
	struct etcd_txn_result res;
	bool ok;
	int64_t rev1 = put_str("/t/cas", "v1"), rev2;

	struct etcd_txn *t = etcd_txn_new();
	assert_non_null(t);
	assert_int_equal(etcd_txn_cmp_mod(t, "/t/cas", ETCD_CMP_EQUAL, rev1), 0);
	assert_int_equal(etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/cas", "v2", 2, 0), 0);
	assert_int_equal(etcd_txn_get(t, ETCD_ON_FAILURE, "/t/cas"), 0);

	OK(etcd_txn_commit(client, t, &ok, &rev2, &res, &err));
	assert_true(ok);
	assert_true(rev2 > rev1);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.responses[0].kind, ETCD_OP_PUT);
	assert_null(etcd_txn_result_kv(&res, 0));
	etcd_txn_result_free(&res);

	/* The same revision again: the swap fails, and the failure branch
	 * tells what is there now. */
	int64_t rev3;
	OK(etcd_txn_commit(client, t, &ok, &rev3, &res, &err));
	assert_false(ok);
	assert_int_equal(rev3, rev2);
	assert_int_equal(res.n, 1);
	const struct etcd_kv *kv = etcd_txn_result_kv(&res, 0);
	assert_non_null(kv);
	assert_string_equal(kv->key, "/t/cas");
	assert_int_equal(kv->value_len, 2);
	assert_string_equal(kv->value, "v2");
	assert_int_equal(kv->mod_revision, rev2);
	assert_int_equal(kv->create_revision, rev1);
	etcd_txn_result_free(&res);
	etcd_txn_free(t);
}

/* Claims key for who, unless it is taken; *owner: who has it after. */
static bool claim(const char *key, const char *who, char *owner, size_t size)
{
	struct error err = { 0 };
	struct etcd_txn_result res;
	bool ok;
	struct etcd_txn *t = etcd_txn_new();
	assert_non_null(t);
	etcd_txn_cmp_create(t, key, ETCD_CMP_EQUAL, 0);
	etcd_txn_put(t, ETCD_ON_SUCCESS, key, who, strlen(who), 0);
	etcd_txn_get(t, ETCD_ON_FAILURE, key);
	OK(etcd_txn_commit(client, t, &ok, NULL, &res, &err));
	etcd_txn_free(t);
	const struct etcd_kv *kv = etcd_txn_result_kv(&res, 0);
	assert_true(ok ? kv == NULL : kv != NULL);
	snprintf(owner, size, "%s", ok ? who : kv->value);
	etcd_txn_result_free(&res);
	return ok;
}

static void test_txn_create_if_absent(void **state)
{
	(void)state;
	char owner[32];
	assert_true(claim("/t/owner", "host-a", owner, sizeof(owner)));
	assert_string_equal(owner, "host-a");
	assert_false(claim("/t/owner", "host-b", owner, sizeof(owner)));
	assert_string_equal(owner, "host-a");
	assert_false(claim("/t/owner", "host-a", owner, sizeof(owner)));
	char *v = get_str(client, "/t/owner");
	assert_string_equal(v, "host-a");
	free(v);
}

/* Commits a txn of one compare and returns whether it held. */
static bool holds(struct etcd_txn *t)
{
	struct error err = { 0 };
	bool ok;
	OK(etcd_txn_commit(client, t, &ok, NULL, NULL, &err));
	etcd_txn_free(t);
	return ok;
}

static void test_txn_other_compares(void **state)
{
	(void)state;
	struct error err = { 0 };
	static const char val[] = { 'v', '\0', 'w' };
	OK(etcd_put(client, "/t/cmp", val, sizeof(val), 0, NULL, &err));
	put_str("/t/cmp", "abc");
	put_str("/t/cmp", "abd");             /* version 3 */

	struct etcd_txn *t;
	t = etcd_txn_new();
	etcd_txn_cmp_value(t, "/t/cmp", ETCD_CMP_EQUAL, "abd", 3);
	assert_true(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_value(t, "/t/cmp", ETCD_CMP_EQUAL, "abd\0", 4);
	assert_false(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_value(t, "/t/cmp", ETCD_CMP_GREATER, "abc", 3);
	assert_true(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_value(t, "/t/absent", ETCD_CMP_NOT_EQUAL, "x", 1);
	assert_false(holds(t));                /* no value to compare */
	t = etcd_txn_new();
	etcd_txn_cmp_version(t, "/t/cmp", ETCD_CMP_EQUAL, 3);
	assert_true(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_version(t, "/t/cmp", ETCD_CMP_LESS, 3);
	assert_false(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_version(t, "/t/absent", ETCD_CMP_EQUAL, 0);
	assert_true(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_lease(t, "/t/cmp", ETCD_CMP_EQUAL, 0);
	assert_true(holds(t));
	t = etcd_txn_new();
	etcd_txn_cmp_create(t, "/t/cmp", ETCD_CMP_GREATER, 0);
	etcd_txn_cmp_mod(t, "/t/cmp", ETCD_CMP_NOT_EQUAL, 0);
	assert_true(holds(t));

	/* A branch of several ops, answered in order. */
	put_str("/t/cmp/x", "1");
	put_str("/t/cmp/y", "2");
	struct etcd_txn_result res;
	bool ok;
	int64_t rev;
	t = etcd_txn_new();
	etcd_txn_cmp_version(t, "/t/cmp", ETCD_CMP_EQUAL, 3);
	etcd_txn_range_prefix(t, ETCD_ON_SUCCESS, "/t/cmp/");
	etcd_txn_delete_prefix(t, ETCD_ON_SUCCESS, "/t/cmp/");
	etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/cmp", "done", 4, 0);
	etcd_txn_get(t, ETCD_ON_SUCCESS, "/t/cmp/x");
	OK(etcd_txn_commit(client, t, &ok, &rev, &res, &err));
	etcd_txn_free(t);
	assert_true(ok);
	assert_int_equal(res.n, 4);
	assert_int_equal(res.responses[0].kind, ETCD_OP_RANGE);
	assert_int_equal(res.responses[0].n_kvs, 2);
	assert_string_equal(res.responses[0].kvs[1].key, "/t/cmp/y");
	assert_int_equal(res.responses[1].kind, ETCD_OP_DELETE);
	assert_int_equal(res.responses[1].deleted, 2);
	assert_int_equal(res.responses[2].kind, ETCD_OP_PUT);
	assert_int_equal(res.responses[3].kind, ETCD_OP_RANGE);
	assert_null(etcd_txn_result_kv(&res, 3));           /* deleted just before */
	etcd_txn_result_free(&res);
	char *v = get_str(client, "/t/cmp");
	assert_string_equal(v, "done");
	free(v);
}

static void test_txn_limits_checked_before_sending(void **state)
{
	(void)state;
	struct error err = { 0 };
	bool ok = true;
	struct etcd_txn *t;

	/* One key put twice in a branch. */
	t = etcd_txn_new();
	etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/lim/a", "1", 1, 0);
	etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/lim/b", "1", 1, 0);
	etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/lim/a", "2", 1, 0);
	assert_int_equal(etcd_txn_commit(client, t, &ok, NULL, NULL, &err), -EINVAL);
	assert_false(ok);
	expect_msg(&err, "/t/lim/a");
	expect_msg(&err, "twice");
	etcd_txn_free(t);
	char *v = get_str(client, "/t/lim/b");
	assert_null(v);                       /* nothing was sent */

	/* Put and delete of one key, the delete by prefix. */
	t = etcd_txn_new();
	etcd_txn_delete_prefix(t, ETCD_ON_FAILURE, "/t/lim/");
	etcd_txn_put(t, ETCD_ON_FAILURE, "/t/lim/c", "1", 1, 0);
	assert_int_equal(etcd_txn_commit(client, t, &ok, NULL, NULL, &err), -EINVAL);
	expect_msg(&err, "failure branch");
	expect_msg(&err, "/t/lim/c");
	etcd_txn_free(t);

	/* What etcd allows: the same key in both branches, read and written,
	 * deleted twice, compared twice. */
	t = etcd_txn_new();
	etcd_txn_cmp_version(t, "/t/lim/a", ETCD_CMP_EQUAL, 0);
	etcd_txn_cmp_create(t, "/t/lim/a", ETCD_CMP_EQUAL, 0);
	etcd_txn_get(t, ETCD_ON_SUCCESS, "/t/lim/a");
	etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/lim/a", "1", 1, 0);
	etcd_txn_put(t, ETCD_ON_FAILURE, "/t/lim/a", "2", 1, 0);
	etcd_txn_delete(t, ETCD_ON_FAILURE, "/t/lim/b");
	etcd_txn_delete_prefix(t, ETCD_ON_FAILURE, "/t/lim/b");
	OK(etcd_txn_commit(client, t, &ok, NULL, NULL, &err));
	assert_true(ok);
	etcd_txn_free(t);

	/* 128 ops pass, the 129th is refused. */
	char key[32];
	t = etcd_txn_new();
	for (unsigned i = 0; i < ETCD_TXN_MAX_OPS; i++) {
		snprintf(key, sizeof(key), "/t/lim/n%u", i);
		assert_int_equal(etcd_txn_put(t, ETCD_ON_SUCCESS, key, "x", 1, 0), 0);
	}
	OK(etcd_txn_commit(client, t, &ok, NULL, NULL, &err));
	assert_true(ok);
	assert_int_equal(etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/lim/one-more", "x", 1, 0), -EINVAL);
	assert_int_equal(etcd_txn_commit(client, t, &ok, NULL, NULL, &err), -EINVAL);
	expect_msg(&err, "more than 128");
	etcd_txn_free(t);
	v = get_str(client, "/t/lim/one-more");
	assert_null(v);

	t = etcd_txn_new();
	for (unsigned i = 0; i <= ETCD_TXN_MAX_OPS; i++)
		etcd_txn_cmp_version(t, "/t/lim/a", ETCD_CMP_GREATER, 0);
	assert_int_equal(etcd_txn_commit(client, t, &ok, NULL, NULL, &err), -EINVAL);
	expect_msg(&err, "compares");
	etcd_txn_free(t);
	assert_true(OK(etcd_delete_prefix(client, "/t/lim/", &err)) >= 128);
}

/* ---- leases ----------------------------------------------------------------- */

/* Whether `etcdctl lease list` on the test member lists id (in hex). */
static bool etcdctl_lists_lease(int64_t id)
{
	char cmd[300], want[32], line[128];
	snprintf(cmd, sizeof(cmd), "ETCDCTL_API=3 %s --endpoints unix://%s lease list 2>&1",
		 ETCDCTL_BIN, single.m[0].sock);
	snprintf(want, sizeof(want), "%" PRIx64, (uint64_t)id);
	FILE *f = popen(cmd, "r");
	if (!f)
		fail_msg("cannot run %s", cmd);
	bool found = false;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, want) == 0)
			found = true;
	}
	int status = pclose(f);
	if (status != 0)
		fail_msg("%s failed (status %#x)", cmd, status);
	return found;
}

static void test_lease_lifecycle(void **state)
{
	(void)state;
	struct error err = { 0 };
	int64_t id, granted, ttl;

	OK(etcd_lease_grant(client, 30, &id, &granted, &err));
	assert_int_equal(granted, 30);
	/* etcd's lease ids use 63 bits: the low 16 bits of the member's id
	 * become their top bits (less the sign), and this member's id is fixed
	 * by its peer URL and the default cluster token. More than a double
	 * holds exactly; etcdctl must list the very same id. */
	assert_true(id > (INT64_C(1) << 53));
	assert_true(etcdctl_lists_lease(id));
	assert_false(etcdctl_lists_lease(id ^ 1));

	OK(etcd_put(client, "/t/lease/k", "v", 1, id, NULL, &err));
	struct etcd_kv kv;
	bool found;
	OK(etcd_get(client, "/t/lease/k", &kv, &found, &err));
	assert_true(found);
	assert_int_equal(kv.lease, id);
	etcd_kv_free(&kv);

	OK(etcd_lease_keepalive(client, id, &ttl, &err));
	assert_int_equal(ttl, 30);
	OK(etcd_lease_ttl(client, id, &ttl, &granted, &err));
	assert_true(ttl > 0 && ttl <= 30);
	assert_int_equal(granted, 30);

	/* A compare on the lease. */
	struct etcd_txn *t = etcd_txn_new();
	etcd_txn_cmp_lease(t, "/t/lease/k", ETCD_CMP_EQUAL, id);
	bool ok;
	OK(etcd_txn_commit(client, t, &ok, NULL, NULL, &err));
	assert_true(ok);
	etcd_txn_free(t);

	OK(etcd_lease_revoke(client, id, &err));
	OK(etcd_get(client, "/t/lease/k", &kv, &found, &err));
	assert_false(found);                  /* went with the lease */

	assert_int_equal(etcd_lease_keepalive(client, id, &ttl, &err), -ENOENT);
	expect_msg(&err, "expired");
	assert_int_equal(etcd_lease_revoke(client, id, &err), -ENOENT);
	expect_msg(&err, "lease not found");
	assert_int_equal(etcd_lease_ttl(client, id, &ttl, NULL, &err), -ENOENT);

	/* A put with a lease etcd does not know is refused. */
	assert_int_equal(etcd_put(client, "/t/lease/k", "v", 1, id, NULL, &err), -ENOENT);
	expect_msg(&err, "/t/lease/k");
}

static void test_lease_expiry(void **state)
{
	(void)state;
	struct error err = { 0 };
	int64_t id, granted, ttl;
	OK(etcd_lease_grant(client, 1, &id, &granted, &err));
	assert_true(granted >= 1);
	OK(etcd_put(client, "/t/expire", "v", 1, id, NULL, &err));
	int64_t until = now_ms() + 5000;
	int rc;
	while ((rc = etcd_lease_ttl(client, id, &ttl, NULL, &err)) == 0) {
		if (now_ms() > until)
			fail_msg("lease %" PRId64 " still alive after 5 s (TTL %" PRId64 ")", id, ttl);
		sleep_ms(100);
	}
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(etcd_lease_keepalive(client, id, &ttl, &err), -ENOENT);
	expect_msg(&err, "expired");
	char *v = get_str(client, "/t/expire");
	assert_null(v);
}

/* ---- endpoints -------------------------------------------------------------- */

static void test_bad_endpoint_lists(void **state)
{
	(void)state;
	static const struct {
		const char *list, *named;
	} bad[] = {
		{ "", "no etcd endpoint" },
		{ " , ", "no etcd endpoint" },
		{ "ftp://host:1", "\"ftp://host:1\"" },
		{ "unix:relative/sock", "absolute" },
		{ "https://127.0.0.1:2379", "TLS" },
		{ "http://host:1/path", "\"http://host:1/path\"" },
		{ "unix:/ok,tcp:host:1", "\"tcp:host:1\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct error err = { 0 };
		struct etcd *e = etcd_open(bad[i].list, &err);
		if (e)
			fail_msg("etcd_open(\"%s\") accepted it", bad[i].list);
		assert_int_equal(err.code, EINVAL);
		expect_msg(&err, bad[i].named);
	}
	struct error err = { 0 };
	struct etcd *e = etcd_open(" unix:///tmp/x.sock , http://127.0.0.1:1/ ", &err);
	assert_non_null(e);
	assert_int_equal(etcd_endpoint_count(e), 2);
	assert_string_equal(etcd_endpoint_name(e, 0), "unix:///tmp/x.sock");
	assert_string_equal(etcd_endpoint_name(e, 1), "http://127.0.0.1:1/");
	assert_null(etcd_endpoint_name(e, 2));
	etcd_close(e);
}

/* A TCP port that refuses connections: bound, never listening (kept bound
 * until *fd is closed, so nobody else takes it meanwhile). */
static int refused_port(int *fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*fd >= 0);
	assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

/* A unix socket that accepts connections (the kernel does) and never answers. */
static int silent_socket(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static void test_unreachable_endpoints_are_named(void **state)
{
	(void)state;
	struct error err = { 0 };
	struct etcd_kv kv;
	bool found;

	struct etcd *e = etcd_open("unix:/nonexistent-tern/etcd.sock", &err);
	assert_non_null(e);
	assert_int_equal(etcd_get(e, "/t/x", &kv, &found, &err), -ECONNREFUSED);
	expect_msg(&err, "etcd get \"/t/x\"");
	expect_msg(&err, "unix:/nonexistent-tern/etcd.sock");
	expect_msg(&err, "No such file or directory");
	etcd_close(e);

	int fd;
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", refused_port(&fd));
	e = etcd_open(ep, &err);
	assert_non_null(e);
	assert_int_equal(etcd_put(e, "/t/x", "v", 1, 0, NULL, &err), -ECONNREFUSED);
	expect_msg(&err, ep);
	expect_msg(&err, "Connection refused");
	etcd_close(e);

	/* Both together: each named, in the order tried. */
	char list[300];
	snprintf(list, sizeof(list), "unix:/nonexistent-tern/etcd.sock,%s", ep);
	e = etcd_open(list, &err);
	assert_non_null(e);
	assert_int_equal(etcd_lease_revoke(e, 7, &err), -ECONNREFUSED);
	expect_msg(&err, "every etcd endpoint failed");
	char *first = strstr(err.msg, "unix:/nonexistent-tern"), *second = strstr(err.msg, ep);
	assert_non_null(first);
	assert_non_null(second);
	assert_true(first < second);
	etcd_close(e);
	close(fd);

	/* A member that never answers: the timeout, named. */
	char path[128];
	snprintf(path, sizeof(path), "%s/silent.sock", single.root);
	int sfd = silent_socket(path);
	snprintf(list, sizeof(list), "unix:%s", path);
	e = etcd_open(list, &err);
	assert_non_null(e);
	etcd_set_timeout_ms(e, 300);
	int64_t t0 = now_ms();
	assert_int_equal(etcd_get(e, "/t/x", &kv, &found, &err), -ETIMEDOUT);
	assert_true(now_ms() - t0 < 2000);
	expect_msg(&err, path);
	expect_msg(&err, "300 ms");
	etcd_close(e);
	close(sfd);
	unlink(path);
}

static void test_failover_to_the_next_endpoint(void **state)
{
	(void)state;
	struct error err = { 0 };
	char list[400], path[128];

	snprintf(list, sizeof(list), "unix:/nonexistent-tern/etcd.sock,unix:%s", single.m[0].sock);
	struct etcd *e = etcd_open(list, &err);
	assert_non_null(e);
	assert_int_equal(etcd_current_endpoint(e), 0);
	OK(etcd_put(e, "/t/fo", "1", 1, 0, NULL, &err));
	assert_int_equal(etcd_current_endpoint(e), 1);   /* the one that works, from now on */
	char *v = get_str(e, "/t/fo");
	assert_string_equal(v, "1");
	free(v);
	etcd_close(e);

	/* A silent member first: one timeout, then the next one. */
	snprintf(path, sizeof(path), "%s/silent2.sock", single.root);
	int sfd = silent_socket(path);
	snprintf(list, sizeof(list), "unix:%s,unix:%s", path, single.m[0].sock);
	e = etcd_open(list, &err);
	assert_non_null(e);
	etcd_set_timeout_ms(e, 300);
	int64_t t0 = now_ms();
	OK(etcd_put(e, "/t/fo", "2", 1, 0, NULL, &err));
	int64_t took = now_ms() - t0;
	assert_true(took >= 250 && took < 2000);
	assert_int_equal(etcd_current_endpoint(e), 1);
	t0 = now_ms();
	v = get_str(e, "/t/fo");
	assert_true(now_ms() - t0 < 250);                 /* straight to the good one */
	assert_string_equal(v, "2");
	free(v);
	etcd_close(e);
	close(sfd);
	unlink(path);

	/* A request etcd refuses is not retried elsewhere: its answer stands. */
	snprintf(list, sizeof(list), "unix:%s,unix:/nonexistent-tern/etcd.sock", single.m[0].sock);
	e = etcd_open(list, &err);
	assert_non_null(e);
	assert_int_equal(etcd_put(e, "", "v", 1, 0, NULL, &err), -EINVAL);
	expect_msg(&err, "key is not provided");
	expect_msg(&err, "HTTP 400");
	expect_msg(&err, single.m[0].sock);
	assert_null(strstr(err.msg, "nonexistent"));
	etcd_close(e);
}

struct putter {
	unsigned id;
	int failures;
	struct error err;
};

static void *put_many(void *opaque)
{
	struct putter *p = opaque;
	char key[64], val[32];
	for (unsigned i = 0; i < 25; i++) {
		snprintf(key, sizeof(key), "/t/conc/%u/%02u", p->id, i);
		snprintf(val, sizeof(val), "%u.%u", p->id, i);
		if (etcd_put(client, key, val, strlen(val), 0, NULL, &p->err) < 0)
			p->failures++;
	}
	return NULL;
}

static void test_threads_share_one_client(void **state)
{
	(void)state;
	struct error err = { 0 };
	struct putter p[4];
	pthread_t th[4];
	for (unsigned i = 0; i < 4; i++) {
		p[i] = (struct putter){ .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, put_many, &p[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (p[i].failures)
			fail_msg("thread %u: %d puts failed: %s", i, p[i].failures, p[i].err.msg);
	}
	struct etcd_kv *kvs;
	size_t n;
	OK(etcd_range_prefix(client, "/t/conc/", &kvs, &n, NULL, &err));
	assert_int_equal(n, 100);
	assert_string_equal(kvs[99].value, "3.24");
	etcd_kvs_free(kvs, n);
}

/* ---- watches ------------------------------------------------------------------ */

#define MAX_SEEN 64

struct seen_event {
	enum etcd_event_type type;
	char key[64];
	char value[64];
	int64_t revision;
};

struct seen {
	struct seen_event ev[MAX_SEEN];
	atomic_size_t n;
	size_t stop_after;       /* 0: never stop */
};

static int record(const struct etcd_event *ev, void *ctx)
{
	struct seen *s = ctx;
	size_t n = atomic_load(&s->n);
	if (n < MAX_SEEN) {
		struct seen_event *e = &s->ev[n];
		e->type = ev->type;
		e->revision = ev->revision;
		snprintf(e->key, sizeof(e->key), "%s", ev->kv.key);
		snprintf(e->value, sizeof(e->value), "%s", ev->kv.value);
		atomic_store(&s->n, n + 1);
	}
	return s->stop_after && n + 1 >= s->stop_after;
}

static void test_watch_replays_history(void **state)
{
	(void)state;
	struct error err = { 0 };
	int64_t r1 = put_str("/t/w/a", "one"), r2;
	assert_int_equal(OK(etcd_delete(client, "/t/w/a", &err)), 1);
	r2 = put_str("/t/w/b", "two");
	put_str("/t/wX", "not under /t/w/");

	struct seen *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->stop_after = 3;
	OK(etcd_watch_prefix(client, "/t/w/", r1, record, s, NULL, &err));
	assert_int_equal(atomic_load(&s->n), 3);
	assert_int_equal(s->ev[0].type, ETCD_EVENT_PUT);
	assert_string_equal(s->ev[0].key, "/t/w/a");
	assert_string_equal(s->ev[0].value, "one");
	assert_int_equal(s->ev[0].revision, r1);
	assert_int_equal(s->ev[1].type, ETCD_EVENT_DELETE);
	assert_string_equal(s->ev[1].key, "/t/w/a");
	assert_string_equal(s->ev[1].value, "");
	assert_int_equal(s->ev[1].revision, r1 + 1);
	assert_int_equal(s->ev[2].type, ETCD_EVENT_PUT);
	assert_string_equal(s->ev[2].key, "/t/w/b");
	assert_int_equal(s->ev[2].revision, r2);
	free(s);
}

struct later {
	int delay_ms;
	const char *key, *value;
	atomic_bool *flag;       /* set instead of putting, when not NULL */
};

static void *do_later(void *opaque)
{
	struct later *l = opaque;
	struct error err = { 0 };
	sleep_ms(l->delay_ms);
	if (l->flag)
		atomic_store(l->flag, true);
	else if (etcd_put(client, l->key, l->value, strlen(l->value), 0, NULL, &err) < 0)
		fprintf(stderr, "late put: %s\n", err.msg);
	return NULL;
}

static void test_watch_live_and_stop_flag(void **state)
{
	(void)state;
	struct error err = { 0 };
	pthread_t th;

	/* From now on: sees a put made while it waits. */
	struct later l = { .delay_ms = 200, .key = "/t/live/x", .value = "hello" };
	struct seen *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->stop_after = 1;
	assert_int_equal(pthread_create(&th, NULL, do_later, &l), 0);
	OK(etcd_watch_prefix(client, "/t/live/", 0, record, s, NULL, &err));
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&s->n), 1);
	assert_string_equal(s->ev[0].key, "/t/live/x");
	assert_string_equal(s->ev[0].value, "hello");

	/* The stop flag ends a watch that sees nothing, promptly. */
	atomic_bool stop = false;
	struct later f = { .delay_ms = 200, .flag = &stop };
	memset(s, 0, sizeof(*s));
	assert_int_equal(pthread_create(&th, NULL, do_later, &f), 0);
	int64_t t0 = now_ms();
	OK(etcd_watch_prefix(client, "/t/quiet/", 0, record, s, &stop, &err));
	int64_t took = now_ms() - t0;
	pthread_join(th, NULL);
	assert_true(took >= 190 && took < 1000);
	assert_int_equal(atomic_load(&s->n), 0);
	free(s);
}

static void test_wait_change(void **state)
{
	(void)state;
	struct error err = { 0 };
	int64_t rev = put_str("/t/wc/a", "1"), got = -1;

	/* Nothing after rev: the timeout. */
	int64_t t0 = now_ms();
	assert_int_equal(OK(etcd_wait_change(client, "/t/wc/", rev, 300, &got, &err)), 0);
	int64_t took = now_ms() - t0;
	assert_true(took >= 290 && took < 1500);
	assert_int_equal(got, 0);

	/* A change already made counts at once. */
	assert_int_equal(OK(etcd_wait_change(client, "/t/wc/", rev - 1, 2000, &got, &err)), 1);
	assert_int_equal(got, rev);

	/* One made while waiting. */
	pthread_t th;
	struct later l = { .delay_ms = 150, .key = "/t/wc/b", .value = "2" };
	assert_int_equal(pthread_create(&th, NULL, do_later, &l), 0);
	assert_int_equal(OK(etcd_wait_change(client, "/t/wc/", rev, 5000, &got, &err)), 1);
	pthread_join(th, NULL);
	assert_true(got > rev);
}

static void test_watch_from_compacted_revision(void **state)
{
	(void)state;
	struct error err = { 0 };
	int64_t old = put_str("/t/cw/a", "1");
	int64_t now = put_str("/t/cw/a", "2");
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "ETCDCTL_API=3 %s --endpoints unix://%s compact %" PRId64
		 " >/dev/null", ETCDCTL_BIN, single.m[0].sock, now);
	assert_int_equal(system(cmd), 0);

	struct seen *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	assert_int_equal(etcd_watch_prefix(client, "/t/cw/", old, record, s, NULL, &err), -ERANGE);
	expect_msg(&err, "compacted");
	expect_msg(&err, "/t/cw/");
	assert_int_equal(atomic_load(&s->n), 0);
	free(s);
}

/* ---- a three-member cluster loses its leader ---------------------------------- */

static int three_setup(void **state)
{
	struct cluster *c = calloc(1, sizeof(*c));
	if (!c || cluster_start(c, 3) < 0) {
		free(c);
		return -1;
	}
	*state = c;
	return 0;
}

static int three_teardown(void **state)
{
	struct cluster *c = *state;
	cluster_stop(c);
	free(c);
	return 0;
}

struct watcher {
	struct etcd *e;
	int64_t from;
	struct seen seen;
	atomic_bool stop;
	int rc;
	struct error err;
};

static void *watch_thread(void *opaque)
{
	struct watcher *w = opaque;
	w->rc = etcd_watch_prefix(w->e, "/t/ha/", w->from, record, &w->seen, &w->stop, &w->err);
	return NULL;
}

static void test_leader_killed_puts_go_on(void **state)
{
	struct cluster *c = *state;
	struct error err = { 0 };
	struct etcd_status st;

	/* Find the leader; list it first, so the client starts on it. */
	struct etcd *probe = etcd_open(c->endpoints, &err);
	assert_non_null(probe);
	unsigned leader = MAX_MEMBERS;
	uint64_t leader_id = 0;
	for (unsigned i = 0; i < 3; i++) {
		OK(etcd_endpoint_status(probe, i, &st, &err));
		assert_string_equal(st.version, "3.4.23");
		if (st.member_id == st.leader_id) {
			leader = i;
			leader_id = st.member_id;
		}
	}
	etcd_close(probe);
	assert_true(leader < 3);
	char list[sizeof(c->endpoints)];
	unsigned order[3] = { leader }, n_order = 1;    /* endpoint -> member */
	snprintf(list, sizeof(list), "unix:%s", c->m[leader].sock);
	for (unsigned i = 0; i < 3; i++) {
		size_t used = strlen(list);
		if (i == leader)
			continue;
		snprintf(list + used, sizeof(list) - used, ",unix:%s", c->m[i].sock);
		order[n_order++] = i;
	}
	struct etcd *e = etcd_open(list, &err);
	assert_non_null(e);
	int64_t rev0 = 0;
	OK(etcd_put(e, "/t/ha/00", "0", 1, 0, &rev0, &err));
	assert_int_equal(etcd_current_endpoint(e), 0);

	/* A watch on the same client, on the leader too. */
	struct watcher *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->e = e;
	w->from = rev0;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, watch_thread, w), 0);
	sleep_ms(100);

	member_kill(&c->m[leader]);

	enum { PUTS = 20 };
	char key[32], val[8];
	int64_t t0 = now_ms();
	for (unsigned i = 1; i <= PUTS; i++) {
		snprintf(key, sizeof(key), "/t/ha/%02u", i);
		snprintf(val, sizeof(val), "%u", i);
		OK(etcd_put(e, key, val, strlen(val), 0, NULL, &err));
	}
	int64_t took = now_ms() - t0;
	assert_int_not_equal(etcd_current_endpoint(e), 0);
	char *v = get_str(e, "/t/ha/20");
	assert_string_equal(v, "20");
	free(v);

	/* A new leader, among the others. */
	size_t cur = etcd_current_endpoint(e);
	OK(etcd_endpoint_status(e, cur, &st, &err));
	assert_true(st.leader_id != 0 && st.leader_id != leader_id);
	/* The dead member is named when asked alone. */
	assert_true(etcd_endpoint_status(e, 0, &st, &err) < 0);
	expect_msg(&err, c->m[leader].sock);

	/* Leases and transactions work too. */
	int64_t id;
	OK(etcd_lease_grant(e, 5, &id, NULL, &err));
	OK(etcd_lease_keepalive(e, id, NULL, &err));
	struct etcd_txn *t = etcd_txn_new();
	etcd_txn_cmp_create(t, "/t/ha/00", ETCD_CMP_GREATER, 0);
	etcd_txn_put(t, ETCD_ON_SUCCESS, "/t/ha/lease", "x", 1, id);
	bool ok;
	OK(etcd_txn_commit(e, t, &ok, NULL, NULL, &err));
	assert_true(ok);
	etcd_txn_free(t);

	/* The watch moved to a live member and lost nothing, repeated nothing. */
	int64_t until = now_ms() + 5000;
	while (atomic_load(&w->seen.n) < PUTS + 2 && now_ms() < until)
		sleep_ms(20);
	atomic_store(&w->stop, true);
	pthread_join(th, NULL);
	if (w->rc < 0)
		fail_msg("watch: %s", w->err.msg);
	assert_int_equal(atomic_load(&w->seen.n), PUTS + 2);
	for (unsigned i = 0; i <= PUTS; i++) {
		snprintf(val, sizeof(val), "%u", i);
		assert_string_equal(w->seen.ev[i].value, val);
		if (i)
			assert_true(w->seen.ev[i].revision > w->seen.ev[i - 1].revision);
	}
	assert_string_equal(w->seen.ev[PUTS + 1].key, "/t/ha/lease");
	free(w);

	/* Two of three gone: no quorum. The survivor says so at once (the
	 * client asks for "hasleader"), rather than holding the put. */
	member_kill(&c->m[order[etcd_current_endpoint(e)]]);
	sleep_ms(500);
	t0 = now_ms();
	assert_int_equal(etcd_put(e, "/t/ha/none", "x", 1, 0, NULL, &err), -EAGAIN);
	assert_true(now_ms() - t0 < 1500);
	expect_msg(&err, "etcd put \"/t/ha/none\": every etcd endpoint failed");
	expect_msg(&err, "no leader");
	expect_msg(&err, "Connection refused");
	etcd_close(e);
	print_message("leader killed: %d puts in %" PRId64 " ms\n", PUTS, took);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_binary),
		cmocka_unit_test(test_range_prefix_and_delete),
		cmocka_unit_test(test_txn_cas_on_mod_revision),
		cmocka_unit_test(test_txn_create_if_absent),
		cmocka_unit_test(test_txn_other_compares),
		cmocka_unit_test(test_txn_limits_checked_before_sending),
		cmocka_unit_test(test_lease_lifecycle),
		cmocka_unit_test(test_lease_expiry),
		cmocka_unit_test(test_bad_endpoint_lists),
		cmocka_unit_test(test_unreachable_endpoints_are_named),
		cmocka_unit_test(test_failover_to_the_next_endpoint),
		cmocka_unit_test(test_threads_share_one_client),
		cmocka_unit_test(test_watch_replays_history),
		cmocka_unit_test(test_watch_live_and_stop_flag),
		cmocka_unit_test(test_wait_change),
		cmocka_unit_test(test_watch_from_compacted_revision),
		cmocka_unit_test_setup_teardown(test_leader_killed_puts_go_on, three_setup,
						three_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
