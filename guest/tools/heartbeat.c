/* heartbeat.c: writes a heartbeat to a serial port (or file) at a fixed
 * interval, so that the host side can see from arrival times how long the
 * guest was stopped, e.g. the downtime of a pause or a live migration.
 * By default each beat is one '.' byte; with -l it is a line
 * "HB <seq> <monotonic_ns>\n", which also tells which beats went missing.
 *
 * usage: heartbeat [-i INTERVAL_US] [-d DEVICE] [-l] [-n COUNT]
 */
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
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC 1000000000LL
#define NSEC_PER_USEC 1000LL

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: heartbeat [-i INTERVAL_US] [-d DEVICE] [-l] [-n COUNT]\n"
		"  -i INTERVAL_US  microseconds between beats (default 100000)\n"
		"  -d DEVICE       tty or file to write to (default /dev/ttyS1)\n"
		"  -l              write lines \"HB <seq> <monotonic_ns>\" instead of '.' bytes\n"
		"  -n COUNT        stop after COUNT beats (default 0 = until signalled)\n");
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

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("heartbeat: clock_gettime");
		exit(1);
	}
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* Writes all of buf, going on after partial writes and signals that did not
 * ask us to stop. Returns false on a real error. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR && !stop_requested)
				continue;
			return false;
		}
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* A tty in its default cooked mode would turn '\n' into "\r\n" and might
 * echo or hold bytes; raw 115200 8N1 makes what arrives on the host exactly
 * what we wrote. */
static int make_raw(int fd, const char *path)
{
	struct termios tio;

	if (tcgetattr(fd, &tio) != 0) {
		fprintf(stderr, "heartbeat: tcgetattr %s: %s\n", path, strerror(errno));
		return -1;
	}
	cfmakeraw(&tio);
	tio.c_cflag |= CLOCAL; /* no modem lines: never block waiting for carrier */
	if (cfsetispeed(&tio, B115200) != 0 || cfsetospeed(&tio, B115200) != 0) {
		fprintf(stderr, "heartbeat: cfsetspeed %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (tcsetattr(fd, TCSANOW, &tio) != 0) {
		fprintf(stderr, "heartbeat: tcsetattr %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t interval_us = 100000, count = 0;
	const char *path = "/dev/ttyS1";
	bool lines = false;
	int opt;

	while ((opt = getopt(argc, argv, "i:d:ln:h")) != -1) {
		switch (opt) {
		case 'i':
			/* An hour at most: beyond that it is no heartbeat, and the
			 * bound keeps the nanosecond arithmetic far from overflow. */
			if (!parse_u64(optarg, 3600ULL * 1000000ULL, &interval_us) ||
			    interval_us == 0) {
				fprintf(stderr, "heartbeat: bad interval '%s' (microseconds, at least 1)\n",
					optarg);
				return 2;
			}
			break;
		case 'd':
			path = optarg;
			break;
		case 'l':
			lines = true;
			break;
		case 'n':
			if (!parse_u64(optarg, UINT64_MAX, &count)) {
				fprintf(stderr, "heartbeat: bad count '%s'\n", optarg);
				return 2;
			}
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

	/* A device path that does not exist is a mistake (wrong tty name), not a
	 * request to create a regular file in /dev; anything else may be a log
	 * file that we create. O_NOCTTY: a serial port must not become our
	 * controlling terminal, or a hangup on it would kill us. */
	int flags = O_WRONLY | O_NOCTTY | O_CLOEXEC;
	if (strncmp(path, "/dev/", 5) != 0)
		flags |= O_CREAT | O_APPEND;
	int fd = open(path, flags, 0644);
	if (fd < 0) {
		fprintf(stderr, "heartbeat: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (isatty(fd) && make_raw(fd, path) != 0)
		return 1;

	/* No SA_RESTART: the signal must cut a clock_nanosleep short. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGHUP, &sa, NULL) != 0) {
		perror("heartbeat: sigaction");
		return 1;
	}

	const int64_t interval_ns = (int64_t)interval_us * NSEC_PER_USEC;
	/* Absolute deadlines: the interval does not drift by the time the write
	 * itself takes, however slow the (possibly interpreted) CPU is. */
	int64_t next = now_ns();
	/* seq numbers the slots of the beat grid, not the beats written, so a
	 * skipped slot shows up as a jump in the line format. */
	uint64_t seq = 0, written = 0;

	while (!stop_requested && (count == 0 || written < count)) {
		char buf[64];
		size_t len;

		if (lines) {
			int n = snprintf(buf, sizeof(buf), "HB %" PRIu64 " %" PRId64 "\n", seq, now_ns());
			len = n > 0 ? (size_t)n : 0;
		} else {
			buf[0] = '.';
			len = 1;
		}
		if (!write_all(fd, buf, len)) {
			if (stop_requested)
				break;
			fprintf(stderr, "heartbeat: write %s: %s\n", path, strerror(errno));
			return 1;
		}
		seq++;
		written++;

		next += interval_ns;
		int64_t now = now_ns();
		if (now - next >= interval_ns) {
			/* We missed whole beats (the guest was stopped or starved).
			 * Skip them instead of sending a catch-up burst, which would
			 * fill the very gap the host is trying to measure. The phase
			 * is kept, so beats stay on the original grid. */
			int64_t missed = (now - next) / interval_ns;
			next += missed * interval_ns;
			seq += (uint64_t)missed;
		}
		struct timespec ts = {
			.tv_sec = next / NSEC_PER_SEC,
			.tv_nsec = next % NSEC_PER_SEC,
		};
		while (!stop_requested) {
			int err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			if (err == 0)
				break;
			if (err != EINTR) {
				fprintf(stderr, "heartbeat: clock_nanosleep: %s\n", strerror(err));
				return 1;
			}
		}
	}

	if (close(fd) != 0) {
		fprintf(stderr, "heartbeat: close %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}
