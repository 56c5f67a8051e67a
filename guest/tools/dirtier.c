/* dirtier.c: a guest memory dirtier. It keeps a working set of SIZE MiB and
 * rewrites one 8-byte word in each of its pages, sequentially or at random,
 * at a target rate or flat out, so that tern's dirty tracking, snapshots and
 * live migration can be exercised with a known, steady write load. A status
 * line goes to stderr every second (ending in mono=SECONDS, the guest's
 * CLOCK_MONOTONIC, so that its rate can be placed on the guest's timeline);
 * on stop (time limit, SIGTERM, SIGINT) it can print a checksum of the whole
 * working set to stdout, so that a test can compare guest memory before and
 * after a migration.
 *
 * SIGUSR1 prints the checksum at once and stops the process until SIGCONT.
 * SIGUSR2 checks the working set against what the dirtier knows it wrote
 * and prints "dirtier: verify ok ..." or "dirtier: verify FAILED ...", while
 * it keeps running: a page a migration left stale shows up there.
 * -f fills the working set with incompressible pseudo-random words first, as
 * real data would be; without it the pages hold little but zeros, which
 * compression on the wire makes nearly free.
 * usage: dirtier [-s SIZE_MIB] [-r RATE_MIBPS] [-p seq|rand] [-t SECONDS] [-c] [-f]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC 1000000000LL
#define MIB (1024ULL * 1024ULL)

/* How many page writes go between two looks at the clock. Reading the clock
 * after every page would dominate the loop on an interpreted CPU; 64 pages
 * (256 KiB with 4 KiB pages) keeps pacing within a few milliseconds. */
#define PAGES_PER_BATCH 64

static volatile sig_atomic_t stop_requested;

static volatile sig_atomic_t freeze_requested;

static volatile sig_atomic_t verify_requested;

static void on_verify_signal(int sig)
{
	(void)sig;
	verify_requested = 1;
}

/* SIGUSR1: checksum the working set, then stop until SIGCONT, so that the
 * memory stays exactly as checksummed (across a snapshot, say). */
static void on_freeze_signal(int sig)
{
	(void)sig;
	freeze_requested = 1;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dirtier [-s SIZE_MIB] [-r RATE_MIBPS] [-p seq|rand] [-t SECONDS] [-c]\n"
		"  -s SIZE_MIB    working set size in MiB (default 64)\n"
		"  -r RATE_MIBPS  MiB of pages dirtied per second, 0 = flat out (default 0)\n"
		"  -p seq|rand    page order: sequential sweep or random pages (default seq)\n"
		"  -t SECONDS     stop after this many seconds, 0 = run until signalled (default 0)\n"
		"  -c             print a checksum of the working set when stopping\n"
		"  -f             fill the working set with incompressible data first\n");
}

/* Parses a non-negative decimal number, rejecting trailing junk and overflow,
 * which strtoull alone would silently accept. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s == '\0' || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail with a valid clock id and pointer; a
	 * failure here means a broken libc or kernel, so stop loudly. */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("dirtier: clock_gettime");
		exit(1);
	}
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* Sleeps until an absolute CLOCK_MONOTONIC time. Returns early (without an
 * error) when a stop signal arrives, so SIGTERM is honoured promptly even at
 * very low rates. */
static void sleep_until(int64_t deadline_ns)
{
	struct timespec ts = {
		.tv_sec = deadline_ns / NSEC_PER_SEC,
		.tv_nsec = deadline_ns % NSEC_PER_SEC,
	};

	while (!stop_requested) {
		int err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		if (err == 0)
			return;
		if (err != EINTR) {
			fprintf(stderr, "dirtier: clock_nanosleep: %s\n", strerror(err));
			exit(1);
		}
	}
}

/* xorshift64*: enough randomness to defeat any locality in the host's dirty
 * tracking, with no libc state and a fixed seed so runs are repeatable. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Every write puts `counter` into word counter % words_per_page of a page and
 * records it in last[page], which lives in other pages. So in a consistent
 * memory each page holds last[page] at its slot, and every other word is 0
 * or an older counter sitting at its own slot. A page left stale (or a stale
 * page of last[]) breaks one of these. Returns the first bad page or -1. */
/* The word -f puts at index i of the working set: splitmix64, with the top
 * bit set so that it can never be mistaken for a counter value. */
static uint64_t fill_word(uint64_t i)
{
	uint64_t z = i + 0x9E3779B97F4A7C15ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return (z ^ (z >> 31)) | (1ULL << 63);
}

static bool filled;

static long verify(const uint64_t *mem, const uint64_t *last, size_t npages,
		   size_t words_per_page, char *why, size_t why_len)
{
	for (size_t p = 0; p < npages; p++) {
		const uint64_t *page = mem + p * words_per_page;
		uint64_t newest = last[p];
		if (newest && page[newest % words_per_page] != newest) {
			snprintf(why, why_len, "page %zu: word %zu holds %" PRIu64 ", not the last "
				 "write %" PRIu64, p, (size_t)(newest % words_per_page),
				 page[newest % words_per_page], newest);
			return (long)p;
		}
		for (size_t w = 0; w < words_per_page; w++) {
			uint64_t v = page[w];
			uint64_t untouched = filled ? fill_word(p * words_per_page + w) : 0;
			if (v != untouched && (v > newest || v % words_per_page != w)) {
				snprintf(why, why_len, "page %zu: word %zu holds %" PRIu64
					 " (last write to the page: %" PRIu64 ")", p, w, v, newest);
				return (long)p;
			}
		}
	}
	return -1;
}

/* FNV-1a over 64-bit words rather than bytes: an eighth of the multiplies,
 * which matters when hashing hundreds of MiB on an interpreted CPU. It is
 * only used to compare two views of the same memory, not as a real hash. */
static uint64_t checksum(const uint64_t *words, size_t nwords)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < nwords; i++) {
		h ^= words[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int main(int argc, char **argv)
{
	uint64_t size_mib = 64, rate_mibps = 0, seconds = 0;
	bool random_order = false, want_checksum = false;
	int opt;

	while ((opt = getopt(argc, argv, "s:r:p:t:cfh")) != -1) {
		switch (opt) {
		case 's':
			if (!parse_u64(optarg, 1ULL << 20, &size_mib) || size_mib == 0) {
				fprintf(stderr, "dirtier: bad size '%s' (MiB, at least 1)\n", optarg);
				return 2;
			}
			break;
		case 'r':
			if (!parse_u64(optarg, 1ULL << 20, &rate_mibps)) {
				fprintf(stderr, "dirtier: bad rate '%s' (MiB/s, 0 = flat out)\n", optarg);
				return 2;
			}
			break;
		case 'p':
			if (strcmp(optarg, "seq") == 0) {
				random_order = false;
			} else if (strcmp(optarg, "rand") == 0) {
				random_order = true;
			} else {
				fprintf(stderr, "dirtier: bad pattern '%s' (seq or rand)\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (!parse_u64(optarg, 1ULL << 31, &seconds)) {
				fprintf(stderr, "dirtier: bad time '%s' (seconds, 0 = forever)\n", optarg);
				return 2;
			}
			break;
		case 'c':
			want_checksum = true;
			break;
		case 'f':
			filled = true;
			break;
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

	long page_size = sysconf(_SC_PAGESIZE);
	if (page_size <= 0) {
		perror("dirtier: sysconf(_SC_PAGESIZE)");
		return 1;
	}
	size_t bytes = (size_t)(size_mib * MIB);
	size_t npages = bytes / (size_t)page_size;
	size_t words_per_page = (size_t)page_size / sizeof(uint64_t);

	/* Private anonymous memory: every page starts as the shared zero page,
	 * so the first write to each one is a real fault and a real dirtying. */
	uint64_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "dirtier: mmap %" PRIu64 " MiB: %s\n", size_mib, strerror(errno));
		return 1;
	}

	uint64_t *last = mmap(NULL, npages * sizeof(uint64_t), PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (last == MAP_FAILED) {
		fprintf(stderr, "dirtier: mmap of the write log: %s\n", strerror(errno));
		return 1;
	}
	if (filled) {
		for (size_t i = 0; i < bytes / sizeof(uint64_t); i++)
			mem[i] = fill_word(i);
		fprintf(stderr, "dirtier: filled %" PRIu64 " MiB\n", size_mib);
	}
	/* No SA_RESTART: the signal must cut a clock_nanosleep short. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGINT, &sa, NULL) != 0) {
		perror("dirtier: sigaction");
		return 1;
	}
	sa.sa_handler = on_freeze_signal;
	struct sigaction sv = sa;
	sv.sa_handler = on_verify_signal;
	if (sigaction(SIGUSR1, &sa, NULL) != 0 || sigaction(SIGUSR2, &sv, NULL) != 0) {
		perror("dirtier: sigaction");
		return 1;
	}

	char rate_text[32] = "flat out";
	if (rate_mibps)
		snprintf(rate_text, sizeof(rate_text), "%" PRIu64 " MiB/s", rate_mibps);
	fprintf(stderr, "dirtier: pid %ld, %" PRIu64 " MiB (%zu pages), %s, %s, %s\n",
		(long)getpid(), size_mib, npages, rate_text, random_order ? "rand" : "seq",
		seconds ? "timed" : "until signalled");

	const int64_t start = now_ns();
	const int64_t end = seconds ? start + (int64_t)seconds * NSEC_PER_SEC : INT64_MAX;
	/* Nanoseconds one page write is worth at the target rate. Pacing from a
	 * base point (not from the previous batch) keeps the average rate exact
	 * even when individual sleeps overshoot. */
	const double ns_per_page = rate_mibps
		? (double)NSEC_PER_SEC * (double)page_size / ((double)rate_mibps * (double)MIB)
		: 0.0;
	int64_t next_status = start + NSEC_PER_SEC;
	int64_t pace_base = start;
	uint64_t pace_base_pages = 0;
	uint64_t pages_written = 0, last_status_pages = 0;
	uint64_t counter = 0, rng = 0x9E3779B97F4A7C15ULL;
	size_t cursor = 0;

	while (!stop_requested) {
		if (freeze_requested) {
			freeze_requested = 0;
			printf("dirtier: checksum %016" PRIx64 " (frozen)\n",
			       checksum(mem, bytes / sizeof(uint64_t)));
			fflush(stdout);
			raise(SIGSTOP);
			/* Continued: pace from now, not from before the freeze, and
			 * look again before writing: a SIGUSR1 sent while stopped
			 * asks for the checksum of the memory exactly as it was. */
			pace_base = now_ns();
			pace_base_pages = pages_written;
			continue;
		}
		if (verify_requested) {
			verify_requested = 0;
			char why[160];
			long bad = verify(mem, last, npages, words_per_page, why, sizeof(why));
			if (bad < 0)
				printf("dirtier: verify ok (%zu pages, %" PRIu64 " writes)\n", npages,
				       counter);
			else
				printf("dirtier: verify FAILED: %s\n", why);
			fflush(stdout);
		}
		for (int i = 0; i < PAGES_PER_BATCH; i++) {
			size_t page;

			if (random_order) {
				page = (size_t)(next_random(&rng) % npages);
			} else {
				page = cursor;
				cursor = cursor + 1 == npages ? 0 : cursor + 1;
			}
			counter++;
			/* A fresh counter value each time, so a page rewritten after a
			 * migration copy differs from the copy; the word's offset moves
			 * too, so over time every word of the page changes. */
			mem[page * words_per_page + counter % words_per_page] = counter;
			last[page] = counter;
		}
		pages_written += PAGES_PER_BATCH;

		int64_t now = now_ns();
		if (now >= next_status) {
			double elapsed = (double)(now - start) / NSEC_PER_SEC;
			double total_mib = (double)pages_written * (double)page_size / MIB;
			double recent_mib = (double)(pages_written - last_status_pages) *
					    (double)page_size / MIB;
			/* mono= (the guest's CLOCK_MONOTONIC, the clock of the
			 * heartbeat's lines) goes last: readers parse what is before. */
			fprintf(stderr, "dirtier: t=%.1fs dirtied=%.1f MiB (last second %.1f MiB)"
				" mono=%.3f\n", elapsed, total_mib, recent_mib,
				(double)now / NSEC_PER_SEC);
			last_status_pages = pages_written;
			/* Skip missed ticks (e.g. the VM was paused) instead of
			 * printing a burst of catch-up lines. */
			while (next_status <= now)
				next_status += NSEC_PER_SEC;
		}
		if (now >= end)
			break;
		if (rate_mibps) {
			int64_t due = pace_base +
				(int64_t)((double)(pages_written - pace_base_pages) * ns_per_page);
			if (due > now) {
				sleep_until(due < end ? due : end);
			} else if (now - due > NSEC_PER_SEC) {
				/* More than a second behind (a slow CPU or a stalled
				 * guest): forget the debt rather than run flat out to
				 * repay it, which would be a burst nobody asked for. */
				pace_base = now;
				pace_base_pages = pages_written;
			}
		}
	}

	double elapsed = (double)(now_ns() - start) / NSEC_PER_SEC;
	fprintf(stderr, "dirtier: stopped after %.1fs, dirtied %.1f MiB\n", elapsed,
		(double)pages_written * (double)page_size / MIB);
	if (want_checksum) {
		printf("dirtier: checksum %016" PRIx64 "\n", checksum(mem, bytes / sizeof(uint64_t)));
		if (fflush(stdout) != 0) {
			perror("dirtier: stdout");
			return 1;
		}
	}
	if (munmap(mem, bytes) != 0) {
		perror("dirtier: munmap");
		return 1;
	}
	return 0;
}
