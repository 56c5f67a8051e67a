/* diskbench: block device throughput from inside the guest, with O_DIRECT
 * so the guest's page cache does not hide the device.
 *   diskbench DEVICE MODE MIB [SECONDS]
 * MODE: seqwrite, seqread (1 MiB requests), randwrite, randread (4 KiB
 * requests at random 4 KiB-aligned offsets within the first MIB MiB).
 * Sequential modes move MIB MiB; random modes run for SECONDS (default 5).
 * Prints "DISKBENCH <mode> bytes=<n> seconds=<s> mbps=<MB/s> iops=<n>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: diskbench DEVICE seqwrite|seqread|randwrite|randread MIB [SECONDS]\n");
		return 2;
	}
	const char *dev = argv[1], *mode = argv[2];
	long long span = atoll(argv[3]) << 20;
	double seconds = argc > 4 ? atof(argv[4]) : 5.0;
	int write_mode = strstr(mode, "write") != NULL;
	int random_mode = strncmp(mode, "rand", 4) == 0;
	size_t req = random_mode ? 4096 : 1 << 20;
	if (span < (long long)req) {
		fprintf(stderr, "diskbench: MIB must be at least 1\n");
		return 2;
	}

	int fd = open(dev, (write_mode ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "diskbench: open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, req)) {
		fprintf(stderr, "diskbench: out of memory\n");
		return 1;
	}
	memset(buf, 0xa5, req);

	uint64_t x = 88172645463325252ull, ops = 0;
	long long pos = 0, moved = 0;
	double t0 = now_s(), t = t0;
	for (;;) {
		if (random_mode) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			pos = (long long)(x % (uint64_t)(span / 4096)) * 4096;
		} else if (moved >= span) {
			break;
		}
		ssize_t n = write_mode ? pwrite(fd, buf, req, pos) : pread(fd, buf, req, pos);
		if (n != (ssize_t)req) {
			fprintf(stderr, "diskbench: %s at %lld: %s\n", write_mode ? "write" : "read", pos,
				n < 0 ? strerror(errno) : "short transfer");
			return 1;
		}
		moved += n;
		ops++;
		if (!random_mode)
			pos += n;
		if (random_mode && (ops & 63) == 0 && (t = now_s()) - t0 >= seconds)
			break;
	}
	if (write_mode && fdatasync(fd) < 0) {
		fprintf(stderr, "diskbench: fdatasync: %s\n", strerror(errno));
		return 1;
	}
	t = now_s() - t0;
	printf("DISKBENCH %s bytes=%lld seconds=%.3f mbps=%.2f iops=%.0f\n", mode, moved, t,
	       (double)moved / t / 1e6, (double)ops / t);
	close(fd);
	return 0;
}
