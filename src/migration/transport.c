/* transport.c: TCP for migration. Every wait is bounded: connect and accept
 * by their timeouts, sends by TCP_USER_TIMEOUT (a cut link fails the send
 * instead of hanging), frame reads by poll. */
#include "migration/transport.h"
#include "migration/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/le.h"

int mig_parse_address(const char *uri, struct mig_address *out, struct error *err)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(uri, "tcp:", 4) != 0)
		return error_set(err, EINVAL, "migration address \"%s\": only tcp:HOST:PORT is "
				 "supported", uri);
	const char *hp = uri + 4, *colon = strrchr(hp, ':');
	if (!colon || colon == hp || !colon[1])
		return error_set(err, EINVAL, "migration address \"%s\" is not tcp:HOST:PORT", uri);
	size_t hlen = (size_t)(colon - hp);
	if (hp[0] == '[' && hlen >= 2 && hp[hlen - 1] == ']') {   /* [v6 address] */
		hp++;
		hlen -= 2;
	}
	if (hlen >= sizeof(out->host) || strlen(colon + 1) >= sizeof(out->port))
		return error_set(err, EINVAL, "migration address \"%s\" is too long", uri);
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return error_set(err, EINVAL, "migration address \"%s\": bad port", uri);
	memcpy(out->host, hp, hlen);
	strcpy(out->port, colon + 1);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_stall_timeout(int fd, int stall_ms)
{
	int one = 1, idle = 2, intvl = 1, cnt = 3;
	unsigned timeout = (unsigned)stall_ms;
	/* Best effort: a missing option only weakens failure detection. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	/* The stream is written in large buffers anyway; what must not wait
	 * for an acknowledgement (Nagle's algorithm, up to the peer's 40 ms
	 * delayed ACK) are the small writes at the switch-over: the last
	 * sections, the control frames. They are the downtime. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int mig_connect(const struct mig_address *a, int timeout_ms, int stall_ms, struct error *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
	int rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc)
		return error_set(err, EHOSTUNREACH, "cannot resolve %s: %s", a->host, gai_strerror(rc));
	int fd = -1, last = ECONNREFUSED;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			last = errno;
			close(fd);
			fd = -1;
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int n = poll(&p, 1, timeout_ms);
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (n <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
			last = n == 0 ? ETIMEDOUT : n < 0 ? errno : soerr;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		return error_errno(err, last, "cannot connect to %s:%s", a->host, a->port);
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		return error_errno(err, e, "configuring the migration socket");
	}
	set_stall_timeout(fd, stall_ms);
	int tfd = mig_tls_wrap(fd, false, timeout_ms, NULL, 0, err);
	if (tfd < 0)
		return error_wrap(err, "%s:%s", a->host, a->port);
	return tfd;
}

int mig_listen(const struct mig_address *a, struct error *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *res;
	int rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc)
		return error_set(err, EINVAL, "cannot resolve %s: %s", a->host, gai_strerror(rc));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, e = 0;
	if (fd < 0)
		e = errno;
	else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		 bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0)
		e = errno;
	freeaddrinfo(res);
	if (e) {
		if (fd >= 0)
			close(fd);
		return error_errno(err, e, "cannot listen on %s:%s for the incoming migration",
				   a->host, a->port);
	}
	return fd;
}

int mig_accept(int listen_fd, int timeout_ms, int stall_ms, struct error *err)
{
	struct pollfd p = { .fd = listen_fd, .events = POLLIN };
	for (;;) {
		int n = poll(&p, 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_errno(err, errno, "waiting for the migration connection");
		if (n == 0)
			return error_set(err, ETIMEDOUT, "no migration connection came in %d ms",
					 timeout_ms);
		break;
	}
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return error_errno(err, errno, "accepting the migration connection");
	set_stall_timeout(fd, stall_ms);
	char refusal[512];
	int tfd = mig_tls_wrap(fd, true, stall_ms, refusal, sizeof(refusal), err);
	if (tfd >= 0 && refusal[0]) {
		struct error e2 = { 0 };
		(void)mig_send_frame(tfd, MIG_FRAME_ERROR, refusal, &e2);
		close(tfd);
		return error_set(err, EACCES, "refused a migration connection: %s", refusal);
	}
	return tfd;
}

int mig_send_frame_bin(int fd, enum mig_frame_type type, const void *data, size_t len,
		       struct error *err)
{
	if (len > MIG_FRAME_MAX)
		return error_set(err, EMSGSIZE, "a migration control frame of %zu bytes", len);
	uint8_t buf[12 + MIG_FRAME_MAX];
	put_le32(buf, MIG_FRAME_MAGIC);
	put_le32(buf + 4, type);
	put_le32(buf + 8, (uint32_t)len);
	if (len)
		memcpy(buf + 12, data, len);
	size_t done = 0, total = 12 + len;
	while (done < total) {
		ssize_t n = send(fd, buf + done, total - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return error_errno(err, n < 0 ? errno : EPIPE, "sending a migration control frame");
		done += (size_t)n;
	}
	return 0;
}

int mig_send_frame(int fd, enum mig_frame_type type, const char *text, struct error *err)
{
	size_t len = text ? strlen(text) : 0;
	return mig_send_frame_bin(fd, type, text, len < MIG_FRAME_MAX ? len : MIG_FRAME_MAX, err);
}

/* Reads exactly len bytes before the deadline (-1: none). 0 = EOF at the start. */
static int read_full(int fd, uint8_t *p, size_t len, int64_t deadline, struct error *err)
{
	size_t got = 0;
	while (got < len) {
		int wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return error_set(err, ETIMEDOUT, "the migration peer did not answer in time");
			wait = (int)left;
		}
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int n = poll(&pf, 1, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_errno(err, errno, "waiting for the migration peer");
		if (n == 0)
			continue;
		ssize_t r = read(fd, p + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return error_errno(err, errno, "reading from the migration peer");
		if (r == 0) {
			if (got == 0)
				return 0;
			return error_set(err, EPROTO, "the migration peer closed inside a frame");
		}
		got += (size_t)r;
	}
	return 1;
}

int mig_recv_frame_bin(int fd, int timeout_ms, uint32_t *type, void *data, size_t cap,
		       size_t *len_out, struct error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	uint8_t h[12];
	int rc = read_full(fd, h, sizeof(h), deadline, err);
	if (rc <= 0)
		return rc;
	uint32_t len = get_le32(h + 8);
	if (get_le32(h) != MIG_FRAME_MAGIC || len > MIG_FRAME_MAX)
		return error_set(err, EPROTO, "the migration peer sent a malformed control frame");
	*type = get_le32(h + 4);
	uint8_t body[MIG_FRAME_MAX];
	if (len) {
		rc = read_full(fd, body, len, deadline, err);
		if (rc <= 0)
			return rc < 0 ? rc : error_set(err, EPROTO, "the migration peer closed inside a frame");
	}
	size_t n = len < cap ? len : cap;
	if (n)
		memcpy(data, body, n);
	*len_out = n;
	return 1;
}

int mig_recv_frame(int fd, int timeout_ms, uint32_t *type, char *text, size_t size,
		   struct error *err)
{
	size_t n = 0;
	int rc = mig_recv_frame_bin(fd, timeout_ms, type, text, size ? size - 1 : 0, &n, err);
	if (rc <= 0 || !size)
		return rc;
	text[n] = '\0';
	/* The peer's text goes into our messages: keep it printable. */
	for (size_t i = 0; i < n; i++)
		if (text[i] < 0x20 || text[i] == 0x7f)
			text[i] = '?';
	return 1;
}
