/* test_tls.c: migration TLS over real loopback connections, with
 * certificates made by scripts/mkcerts.sh: bytes arrive intact in both
 * directions at once through the pump threads, what a peer writes just
 * before it closes still arrives (then EOF), a peer that speaks no TLS is
 * refused at the handshake, and a bad credentials directory is reported
 * by name. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/tls.h"
#include "migration/transport.h"

#define BIG (24u << 20)

static char dir[64];
static struct mig_address addr;
static int listen_fd = -1;

static int group_setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/tern-tls-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "bash scripts/mkcerts.sh ca %s/ca >/dev/null && "
		 "bash scripts/mkcerts.sh host %s/ca %s/h testhost IP:127.0.0.1 >/dev/null",
		 dir, dir, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "%s failed\n", cmd);
		return -1;
	}
	/* A directory without credentials is named in the error. */
	struct error err = { 0 };
	struct mig_tls_options bad = { .dir = "/nonexistent-tern-tls" };
	if (mig_tls_configure(&bad, &err) == 0 || !strstr(err.msg, "/nonexistent-tern-tls/ca.pem")) {
		fprintf(stderr, "bad directory: \"%s\"\n", err.msg);
		return -1;
	}
	char h[128];
	snprintf(h, sizeof(h), "%s/h", dir);
	struct mig_tls_options o = { .dir = h };
	if (mig_tls_configure(&o, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	/* Port 0 is no migration address; the listener takes a free one. */
	snprintf(addr.host, sizeof(addr.host), "127.0.0.1");
	snprintf(addr.port, sizeof(addr.port), "0");
	if ((listen_fd = mig_listen(&addr, &err)) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	if (getsockname(listen_fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	snprintf(addr.port, sizeof(addr.port), "%u", ntohs(sin.sin_port));
	return 0;
}

static int group_teardown(void **state)
{
	if (listen_fd >= 0)
		close(listen_fd);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

struct side {
	int fd;
	uint8_t *out, *in;
	size_t got;
	int rc;
};

static void *accept_main(void *arg)
{
	struct side *s = arg;
	struct error err = { 0 };
	s->fd = mig_accept(listen_fd, 10000, 10000, &err);
	if (s->fd < 0)
		fprintf(stderr, "accept: %s\n", err.msg);
	return NULL;
}

static void *writer_main(void *arg)
{
	struct side *s = arg;
	for (size_t off = 0; off < BIG;) {
		ssize_t n = write(s->fd, s->out + off, BIG - off < 100000 ? BIG - off : 100000);
		if (n <= 0) {
			s->rc = -errno;
			return NULL;
		}
		off += (size_t)n;
	}
	return NULL;
}

static void read_all(struct side *s)
{
	while (s->got < BIG) {
		ssize_t n = read(s->fd, s->in + s->got, BIG - s->got);
		assert_true(n > 0);
		s->got += (size_t)n;
	}
}

static void connect_pair(struct side *c, struct side *s)
{
	pthread_t t;
	struct error err = { 0 };
	assert_int_equal(pthread_create(&t, NULL, accept_main, s), 0);
	c->fd = mig_connect(&addr, 10000, 10000, &err);
	if (c->fd < 0)
		fail_msg("connect: %s", err.msg);
	pthread_join(t, NULL);
	assert_true(s->fd >= 0);
}

static void test_both_directions(void **state)
{
	struct side c = { 0 }, s = { 0 };
	connect_pair(&c, &s);
	c.out = malloc(BIG);
	s.out = malloc(BIG);
	c.in = malloc(BIG);
	s.in = malloc(BIG);
	assert_non_null(c.out && s.out && c.in && s.in);
	for (size_t i = 0; i < BIG; i++) {
		c.out[i] = (uint8_t)(i * 7 + (i >> 13));
		s.out[i] = (uint8_t)(i * 13 + (i >> 11));
	}
	pthread_t tc, ts;
	assert_int_equal(pthread_create(&tc, NULL, writer_main, &c), 0);
	assert_int_equal(pthread_create(&ts, NULL, writer_main, &s), 0);
	read_all(&c);
	read_all(&s);
	pthread_join(tc, NULL);
	pthread_join(ts, NULL);
	assert_int_equal(c.rc, 0);
	assert_int_equal(s.rc, 0);
	assert_memory_equal(c.in, s.out, BIG);
	assert_memory_equal(s.in, c.out, BIG);
	/* The client hangs up: the server reads EOF. */
	close(c.fd);
	uint8_t b;
	assert_int_equal(read(s.fd, &b, 1), 0);
	close(s.fd);
	free(c.out);
	free(s.out);
	free(c.in);
	free(s.in);
}

static void test_last_words_arrive(void **state)
{
	struct side c = { 0 }, s = { 0 };
	connect_pair(&c, &s);
	struct error err = { 0 };
	/* A refusing destination's pattern: a frame, then close at once. */
	assert_int_equal(mig_send_frame(s.fd, MIG_FRAME_ERROR, "no thanks", &err), 0);
	close(s.fd);
	uint32_t type;
	char text[64];
	assert_int_equal(mig_recv_frame(c.fd, 5000, &type, text, sizeof(text), &err), 1);
	assert_int_equal(type, MIG_FRAME_ERROR);
	assert_string_equal(text, "no thanks");
	assert_int_equal(mig_recv_frame(c.fd, 5000, &type, text, sizeof(text), &err), 0);
	close(c.fd);
}

static void test_plaintext_peer_refused(void **state)
{
	struct side s = { 0 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, accept_main, &s), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(addr.port)) };
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	static const char stream[] = "TERNVMST\1\0\0\0\0\0\0\0 and then some more bytes......";
	assert_int_equal(write(fd, stream, sizeof(stream)), (ssize_t)sizeof(stream));
	pthread_join(t, NULL);
	assert_true(s.fd < 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_directions),
		cmocka_unit_test(test_last_words_arrive),
		cmocka_unit_test(test_plaintext_peer_refused),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
