/* echoctr: a line echo service with a reply counter, the guest end of the
 * live-migration tests. A client on the host side sends numbered lines and
 * checks that every reply comes back, in order, with a counter that never
 * skips or repeats: a lost, duplicated or reordered byte of TCP state
 * across a migration shows up as a broken reply.
 *
 *   echoctr [-p PORT]
 *
 * Listens on TCP PORT (default 7000) on every IPv4 address. For every line a
 * client sends it replies "<seq> <line>\n", where seq counts the replies on
 * that connection from 1. Serves up to MAX_CLIENTS connections at once from
 * one poll loop (more are accepted and closed at once) and runs until
 * killed. A client that stops reading is not read from either until it
 * catches up, so memory stays bounded. Logs connections and errors to
 * stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 8
#define MAX_LINE 4096 /* longest line accepted, without its '\n' */
#define OUT_CAP (64 * 1024)
/* A reply is the line plus a counter of at most 20 digits, a space and '\n'. */
#define REPLY_MAX (MAX_LINE + 22)
#define STR_(x) #x
#define STR(x) STR_(x)

struct client {
	int fd; /* -1: free slot */
	unsigned long long seq; /* replies sent so far */
	bool eof; /* the client has closed its side */
	char peer[INET_ADDRSTRLEN + 8];
	size_t inlen;
	size_t outoff, outlen;
	char in[MAX_LINE + 1];
	char out[OUT_CAP];
};

static struct client clients[MAX_CLIENTS];

static void usage(FILE *f)
{
	fprintf(f, "usage: echoctr [-p PORT]\n"
		   "  -p PORT  TCP port to listen on (default 7000)\n"
		   "Replies \"<seq> <line>\" to every line, seq counting from 1 per connection.\n");
}

static void drop(struct client *c, const char *why)
{
	fprintf(stderr, "echoctr: %s: closed after %llu replies (%s)\n", c->peer, c->seq, why);
	close(c->fd);
	c->fd = -1;
}

/* Sends what is buffered until done or the socket is full. Returns false
 * if the connection failed. */
static bool flush_out(struct client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			drop(c, n < 0 ? strerror(errno) : "send returned 0");
			return false;
		}
		c->outoff += (size_t)n;
	}
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	return true;
}

/* Turns the complete lines of c->in into replies, as far as the output
 * buffer has room; the rest waits in c->in. */
static void answer_lines(struct client *c)
{
	size_t start = 0;
	for (;;) {
		char *nl = memchr(c->in + start, '\n', c->inlen - start);
		if (!nl)
			break;
		if (c->outoff > 0 && OUT_CAP - c->outlen < REPLY_MAX) {
			/* Reclaim what was already sent before giving up. */
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		if (OUT_CAP - c->outlen < REPLY_MAX)
			break;
		size_t len = (size_t)(nl - (c->in + start));
		c->seq++;
		int n = snprintf(c->out + c->outlen, OUT_CAP - c->outlen, "%llu ", c->seq);
		c->outlen += (size_t)n;
		memcpy(c->out + c->outlen, c->in + start, len);
		c->outlen += len;
		c->out[c->outlen++] = '\n';
		start += len + 1;
	}
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
}

/* Answers and sends as much as the socket takes. Returns false if the
 * connection failed (and was closed). */
static bool pump(struct client *c)
{
	for (;;) {
		answer_lines(c);
		if (!flush_out(c))
			return false;
		/* Stop when the socket is full or no whole line is left. */
		if (c->outlen > c->outoff || !memchr(c->in, '\n', c->inlen))
			return true;
	}
}

/* Reads what the client sent and answers it. At the end of its stream the
 * client is still owed the replies to its last lines: reading stops and the
 * main loop closes the connection once they are sent. */
static void serve(struct client *c)
{
	if (c->inlen == sizeof(c->in)) {
		if (!memchr(c->in, '\n', c->inlen))
			drop(c, "line longer than " STR(MAX_LINE) " bytes");
		return; /* full of lines waiting for room to reply */
	}
	ssize_t n;
	do
		n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n < 0) {
		drop(c, strerror(errno));
		return;
	}
	if (n == 0)
		c->eof = true;
	c->inlen += (size_t)n;
	if (!pump(c))
		return;
	if (c->inlen == sizeof(c->in) && !memchr(c->in, '\n', c->inlen))
		drop(c, "line longer than " STR(MAX_LINE) " bytes");
}

static void set_opt(int fd, int level, int name, int value, const char *what)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) < 0)
		fprintf(stderr, "echoctr: setsockopt %s: %s\n", what, strerror(errno));
}

static void accept_one(int lfd)
{
	struct sockaddr_in addr;
	socklen_t alen = sizeof(addr);
	int fd = accept4(lfd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != ECONNABORTED)
			fprintf(stderr, "echoctr: accept: %s\n", strerror(errno));
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			usleep(100 * 1000); /* do not spin on a connection we cannot take */
		return;
	}
	char peer[sizeof(clients[0].peer)];
	char ip[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof(ip));
	snprintf(peer, sizeof(peer), "%s:%u", ip, (unsigned)ntohs(addr.sin_port));
	struct client *c = NULL;
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (clients[i].fd < 0) {
			c = &clients[i];
			break;
		}
	}
	if (!c) {
		fprintf(stderr, "echoctr: %s: refused, already %d clients\n", peer, MAX_CLIENTS);
		close(fd);
		return;
	}
	/* Replies go out at once, not held back for the next ACK. */
	set_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	/* A peer that vanished without a FIN (its network namespace deleted, say)
	 * frees its slot after about two minutes; a migration's pause is far
	 * shorter than that. */
	set_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	set_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60, "TCP_KEEPIDLE");
	set_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10, "TCP_KEEPINTVL");
	set_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, 6, "TCP_KEEPCNT");
	c->fd = fd;
	c->seq = 0;
	c->eof = false;
	c->inlen = c->outoff = c->outlen = 0;
	memcpy(c->peer, peer, sizeof(peer));
	fprintf(stderr, "echoctr: %s: connected\n", c->peer);
}

int main(int argc, char **argv)
{
	unsigned long port = 7000;
	int opt;
	while ((opt = getopt(argc, argv, "p:h")) != -1) {
		switch (opt) {
		case 'p': {
			char *end;
			errno = 0;
			port = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || port == 0 || port > 65535) {
				fprintf(stderr, "echoctr: bad port %s\n", optarg);
				return 2;
			}
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		perror("echoctr: socket");
		return 1;
	}
	set_opt(lfd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 16) < 0) {
		fprintf(stderr, "echoctr: bind/listen on port %lu: %s\n", port, strerror(errno));
		return 1;
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;
	fprintf(stderr, "echoctr: listening on port %lu\n", port);

	for (;;) {
		struct pollfd pfd[MAX_CLIENTS + 1];
		int who[MAX_CLIENTS + 1];
		nfds_t n = 0;
		pfd[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		who[n++] = -1;
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = &clients[i];
			if (c->fd < 0)
				continue;
			if (c->eof && c->outlen == c->outoff) {
				drop(c, c->inlen ? "end of stream inside a line" : "end of stream");
				continue;
			}
			short ev = 0;
			/* Read only while a full line's reply would still fit. */
			if (!c->eof && OUT_CAP - (c->outlen - c->outoff) >= REPLY_MAX &&
			    c->inlen < sizeof(c->in))
				ev |= POLLIN;
			if (c->outlen > c->outoff)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			who[n++] = i;
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("echoctr: poll");
			return 1;
		}
		for (nfds_t k = 0; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (who[k] < 0) {
				accept_one(lfd);
				continue;
			}
			struct client *c = &clients[who[k]];
			/* Lines held back for want of room can be answered now. */
			if ((pfd[k].revents & POLLOUT) && !pump(c))
				continue;
			if (c->eof) {
				if (pfd[k].revents & (POLLHUP | POLLERR))
					drop(c, "connection lost while sending the last replies");
				continue;
			}
			if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
				serve(c);
		}
	}
}
