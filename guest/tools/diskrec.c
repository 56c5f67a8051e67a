/* diskrec.c: disk writers whose every acknowledged write can be checked
 * afterwards from the host, for the storage migration tests.
 *
 *   diskrec append DEV [-r PER_S]
 *       writes 4 KiB records 0, 1, 2, ... from the start of DEV with O_DIRECT,
 *       each followed by fdatasync (a virtio-blk FLUSH); a record counts as
 *       acknowledged once its fdatasync returned. Prints "append: acked N"
 *       every second and when it ends (SIGTERM/SIGINT).
 *   diskrec random DEV -o OFFSET_MIB -n SIZE_MIB [-r PER_S] [-s SEED] [-k KIB]
 *       overwrites random 4 KiB blocks of that region the same way (with -k,
 *       KIB-sized runs of blocks at a KIB-aligned place: -k 256 -r 80 is
 *       20 MiB/s). Prints "random: writes N" every second and at the end.
 *   diskrec serve DEV -p PORT
 *       a TCP service whose replies are acknowledgements: for each line a
 *       client sends it appends the next record (as append does, from
 *       record 0 on, numbered on across connections) and, once fdatasync
 *       returned, answers "<n> <line>", n counting this connection's
 *       replies from 1: the reply format of echoctr, so the migration
 *       tests' echo client checks it. One client at a time.
 *   diskrec crc DEV -o OFFSET_MIB -n SIZE_MIB
 *       reads the region with O_DIRECT (from the device, not a cache) and
 *       prints "crc32 XXXXXXXX" (zlib's CRC-32).
 *
 * A record: "TERNREC1", le64 sequence, bytes derived from the sequence, and
 * the CRC-32 of the first 4092 bytes in the last 4. A random block: the
 * same with "TERNRND1", its block number and a write counter. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define BLOCK 4096
#define NSEC_PER_SEC 1000000000LL

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fill_block(uint8_t *b, const char *magic, uint64_t a, uint64_t c)
{
	memcpy(b, magic, 8);
	put64(b + 8, a);
	put64(b + 16, c);
	uint64_t x = a * 0x9e3779b97f4a7c15ull ^ (c + 1) * 0xbf58476d1ce4e5b9ull;
	for (size_t i = 24; i + 8 <= BLOCK - 4; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		put64(b + i, x);
	}
	uint32_t crc = crc32_update(0, b, BLOCK - 4);
	for (int i = 0; i < 4; i++)
		b[BLOCK - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static int open_dev(const char *dev, int flags)
{
	int fd = open(dev, flags | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "diskrec: %s: %s\n", dev, strerror(errno));
		exit(1);
	}
	return fd;
}

static void *aligned_block(size_t size)
{
	void *p;
	if (posix_memalign(&p, BLOCK, size)) {
		fprintf(stderr, "diskrec: out of memory\n");
		exit(1);
	}
	return p;
}

/* Writes one block and flushes it; exits on failure (a lost write must
 * never look acknowledged). */
static void write_flushed(int fd, const uint8_t *b, size_t len, uint64_t offset)
{
	ssize_t n = pwrite(fd, b, len, (off_t)offset);
	if (n != (ssize_t)len) {
		fprintf(stderr, "diskrec: write at %" PRIu64 ": %s\n", offset,
			n < 0 ? strerror(errno) : "short write");
		exit(1);
	}
	if (fdatasync(fd) < 0) {
		fprintf(stderr, "diskrec: fdatasync: %s\n", strerror(errno));
		exit(1);
	}
}

static void pace(int64_t start, uint64_t done, long per_s)
{
	if (per_s <= 0)
		return;
	int64_t due = start + (int64_t)(done * NSEC_PER_SEC / (uint64_t)per_s);
	int64_t wait = due - now_ns();
	if (wait > 0) {
		struct timespec ts = { wait / NSEC_PER_SEC, wait % NSEC_PER_SEC };
		nanosleep(&ts, NULL);
	}
}

static int run_writer(const char *dev, bool random_mode, uint64_t offset, uint64_t size,
		      long per_s, uint64_t seed, unsigned run)
{
	int fd = open_dev(dev, O_WRONLY);
	uint8_t *b = aligned_block((size_t)run * BLOCK);
	uint64_t blocks = size / BLOCK, done = 0, x = seed | 1;
	size_t len = BLOCK;
	int64_t start = now_ns(), next_report = start + NSEC_PER_SEC;
	const char *what = random_mode ? "random: writes" : "append: acked";
	while (!stop_requested) {
		uint64_t at;
		if (random_mode) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			uint64_t blk = x % (blocks / run) * run;
			for (unsigned k = 0; k < run; k++)
				fill_block(b + (size_t)k * BLOCK, "TERNRND1", blk + k, done);
			at = offset + blk * BLOCK;
			len = (size_t)run * BLOCK;
		} else {
			if (done >= blocks)
				break;
			fill_block(b, "TERNREC1", done, 0);
			at = done * BLOCK;
		}
		write_flushed(fd, b, len, at);
		done++;
		if (now_ns() >= next_report) {
			printf("%s %" PRIu64 "\n", what, done);
			fflush(stdout);
			next_report += NSEC_PER_SEC;
		}
		pace(start, done, per_s);
	}
	printf("%s %" PRIu64 " (ended)\n", what, done);
	fflush(stdout);
	return 0;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static int run_server(const char *dev, int port)
{
	int fd = open_dev(dev, O_WRONLY);
	uint8_t *b = aligned_block(BLOCK);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4) < 0) {
		fprintf(stderr, "diskrec: listening on port %d: %s\n", port, strerror(errno));
		return 1;
	}
	printf("serve: listening on %d\n", port);
	uint64_t done = 0;
	while (!stop_requested) {
		int c = accept(ls, NULL, NULL);
		if (c < 0)
			continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		char in[512], out[600];
		size_t have = 0;
		uint64_t replies = 0;
		for (;;) {
			ssize_t r = recv(c, in + have, sizeof(in) - 1 - have, 0);
			if (r < 0 && errno == EINTR && !stop_requested)
				continue;
			if (r <= 0)
				break;
			have += (size_t)r;
			char *nl;
			while ((nl = memchr(in, '\n', have))) {
				size_t len = (size_t)(nl - in);
				fill_block(b, "TERNREC1", done, 0);
				write_flushed(fd, b, BLOCK, done * BLOCK);
				done++;
				int n = snprintf(out, sizeof(out), "%" PRIu64 " %.*s\n", ++replies, (int)len,
						 in);
				if (!send_all(c, out, (size_t)n))
					break;
				memmove(in, nl + 1, have - len - 1);
				have -= len + 1;
			}
			if (have == sizeof(in) - 1)
				break;          /* a line too long: not a client of ours */
		}
		close(c);
		printf("serve: acked %" PRIu64 "\n", done);
	}
	return 0;
}

static int run_crc(const char *dev, uint64_t offset, uint64_t size)
{
	int fd = open_dev(dev, O_RDONLY);
	size_t chunk = 1 << 20;
	uint8_t *b = aligned_block(chunk);
	uint32_t crc = 0;
	for (uint64_t at = 0; at < size;) {
		size_t n = size - at < chunk ? (size_t)(size - at) : chunk;
		ssize_t r = pread(fd, b, n, (off_t)(offset + at));
		if (r <= 0) {
			fprintf(stderr, "diskrec: read at %" PRIu64 ": %s\n", offset + at,
				r < 0 ? strerror(errno) : "end of device");
			return 1;
		}
		crc = crc32_update(crc, b, (size_t)r);
		at += (uint64_t)r;
	}
	printf("crc32 %08x\n", crc);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: diskrec append DEV [-r PER_S]\n"
			"       diskrec random DEV -o OFFSET_MIB -n SIZE_MIB [-r PER_S] [-s SEED] [-k KIB]\n"
			"       diskrec serve DEV -p PORT\n"
			"       diskrec crc DEV -o OFFSET_MIB -n SIZE_MIB\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	const char *mode = argv[1], *dev = argv[2];
	long per_s = 50;
	uint64_t offset_mib = 0, size_mib = 0, seed = 12345;
	int port = 0;
	unsigned run = 1;
	int opt;
	optind = 3;
	while ((opt = getopt(argc, argv, "r:o:n:s:k:p:")) != -1) {
		switch (opt) {
		case 'k': run = (unsigned)(strtoul(optarg, NULL, 0) / 4); break;
		case 'r': per_s = strtol(optarg, NULL, 0); break;
		case 'o': offset_mib = strtoull(optarg, NULL, 0); break;
		case 'n': size_mib = strtoull(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'p': port = atoi(optarg); break;
		default: usage();
		}
	}
	crc_init();
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "append"))
		return run_writer(dev, false, 0, UINT64_MAX / 2, per_s, seed, 1);
	if (!strcmp(mode, "random")) {
		if (!size_mib || !run || (uint64_t)run * BLOCK > size_mib << 20)
			usage();
		return run_writer(dev, true, offset_mib << 20, size_mib << 20, per_s, seed, run);
	}
	if (!strcmp(mode, "serve")) {
		if (port <= 0 || port > 65535)
			usage();
		return run_server(dev, port);
	}
	if (!strcmp(mode, "crc")) {
		if (!size_mib)
			usage();
		return run_crc(dev, offset_mib << 20, size_mib << 20);
	}
	usage();
}
