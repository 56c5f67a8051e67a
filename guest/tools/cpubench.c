/* cpubench: CPU-bound work for comparing VMMs from inside the guest.
 *   cpubench loop [MILLIONS]   an assembly loop of exactly 4 instructions per
 *                              iteration: prints guest instructions per second
 *   cpubench mix [MiB]         checksums, sorting and branches over a buffer:
 *                              prints elapsed time (a mixed, cache-hungry load)
 * Times are the guest's CLOCK_MONOTONIC, which both tern and QEMU keep at the
 * host's rate. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_loop(long millions)
{
	unsigned long n = (unsigned long)millions * 1000000ul / 4, a = 0, b = 1;
	double t0 = now_s();
	/* addi, add, xor, bnez: 4 instructions per iteration */
	__asm__ volatile("1:\n\t"
			 "addi %0, %0, -1\n\t"
			 "add %1, %1, %0\n\t"
			 "xor %2, %2, %1\n\t"
			 "bnez %0, 1b\n\t"
			 : "+r"(n), "+r"(a), "+r"(b));
	double dt = now_s() - t0;
	printf("CPUBENCH loop instructions=%ld000000 seconds=%.3f mips=%.1f (%lx)\n", millions, dt,
	       (double)millions / dt, b);
	return 0;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return (a > b) - (a < b);
}

static int bench_mix(long mib)
{
	size_t words = (size_t)mib << 18;
	uint32_t *buf = malloc(words * sizeof(*buf));
	if (!buf) {
		perror("cpubench: malloc");
		return 1;
	}
	double t0 = now_s();
	uint32_t x = 2463534242u, sum = 0;
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = x;
	}
	qsort(buf, words, sizeof(*buf), cmp_u32);
	for (size_t i = 0; i < words; i++)
		sum = (sum << 1 | sum >> 31) ^ (buf[i] & 1 ? buf[i] : ~buf[i]);
	double dt = now_s() - t0;
	printf("CPUBENCH mix mib=%ld seconds=%.3f checksum=%08x\n", mib, dt, sum);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "loop";
	long arg = argc > 2 ? atol(argv[2]) : 0;
	if (strcmp(what, "loop") == 0)
		return bench_loop(arg > 0 ? arg : 400);
	if (strcmp(what, "mix") == 0)
		return bench_mix(arg > 0 ? arg : 4);
	fprintf(stderr, "usage: cpubench loop [MILLIONS] | mix [MiB]\n");
	return 2;
}
