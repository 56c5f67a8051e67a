/* netxfer: bulk TCP through a pipe, in large writes.
 *   netxfer send HOST PORT   copies stdin to a TCP connection to HOST:PORT
 *   netxfer recv PORT        accepts one connection on PORT, copies it to stdout
 * busybox nc writes about 1 KiB at a time, which makes every write its own
 * packet; network tests and benchmarks need the guest's TCP stack, not
 * that, to set the pace. Prints "NETXFER <bytes> <seconds>" on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Fills buf from fd as far as it can: large writes downstream. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int copy(int in, int out, const char *what)
{
	static char buf[CHUNK];
	unsigned long long total = 0;
	double t0 = now_s();
	for (;;) {
		ssize_t n = read_full(in, buf, sizeof(buf));
		if (n < 0) {
			fprintf(stderr, "netxfer: reading %s: %s\n", what, strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		if (write_all(out, buf, (size_t)n) < 0) {
			fprintf(stderr, "netxfer: writing %s: %s\n", what, strerror(errno));
			return 1;
		}
		total += (unsigned long long)n;
	}
	fprintf(stderr, "NETXFER %llu %.3f\n", total, now_s() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("netxfer: socket");
		return 1;
	}
	if (argc == 4 && strcmp(argv[1], "send") == 0) {
		addr.sin_port = htons((uint16_t)atoi(argv[3]));
		if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
			fprintf(stderr, "netxfer: %s is not an IPv4 address\n", argv[2]);
			return 2;
		}
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
			perror("netxfer: connect");
			return 1;
		}
		int rc = copy(STDIN_FILENO, fd, "the socket");
		if (shutdown(fd, SHUT_WR) < 0)
			perror("netxfer: shutdown");
		close(fd);
		return rc;
	}
	if (argc == 3 && strcmp(argv[1], "recv") == 0) {
		int one = 1;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
			perror("netxfer: SO_REUSEADDR");
		addr.sin_port = htons((uint16_t)atoi(argv[2]));
		addr.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
			perror("netxfer: bind/listen");
			return 1;
		}
		int c = accept(fd, NULL, NULL);
		if (c < 0) {
			perror("netxfer: accept");
			return 1;
		}
		close(fd);
		int rc = copy(c, STDOUT_FILENO, "stdout");
		close(c);
		return rc;
	}
	fprintf(stderr, "usage: netxfer send HOST PORT < data | netxfer recv PORT > data\n");
	return 2;
}
