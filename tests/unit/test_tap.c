/* test_tap.c: the TAP backend against the real tun driver.
 *
 * Needs root (CAP_NET_ADMIN). The test first moves itself into a network
 * namespace of its own (unshare(CLONE_NEWNET), no name, nothing mounted):
 * every interface it creates (ternt<pid>, ternt<pid>p, ternt<pid>u) lives
 * there, no traffic can reach the host's interfaces, and the kernel
 * destroys the namespace with everything in it when the process exits,
 * even if a test fails or crashes. The tests also close what they open,
 * and check that created TAPs disappear on close. Without root, every test
 * fails, saying what it needs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/tap.h"

static bool have_netns;
static char tap_name[16];

/* ternt<pid> followed by a one-letter suffix: at most 5 + 7 + 1 characters. */
static void name_with(char *out, size_t size, const char *suffix)
{
	snprintf(out, size, "ternt%u%s", (unsigned)getpid() % 10000000u, suffix);
}

static void need_netns(void)
{
	if (!have_netns)
		fail_msg("this test needs root, a network namespace and /dev/net/tun (see above)");
}

static void assert_msg_contains(const struct error *err, const char *what)
{
	if (!strstr(err->msg, what))
		fail_msg("error message \"%s\" lacks \"%s\"", err->msg, what);
}

static bool iface_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

static short iface_flags(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	close(s);
	return ifr.ifr_flags;
}

/* A TUN/TAP made directly with the tun driver, as `ip tuntap add` would. */
static void make_persistent(const char *name, short type)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = type | IFF_NO_PI;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 1), 0);
	close(fd);
	assert_true(iface_exists(name));
}

/* Attaches to a persistent TUN/TAP and makes it non-persistent, so it goes
 * away with the fd. */
static void remove_persistent(const char *name, short type)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = type | IFF_NO_PI;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 0), 0);
	close(fd);
	assert_false(iface_exists(name));
}

static void test_create_up_and_gone_on_close(void **state)
{
	need_netns();
	struct tap t;
	struct error err = { 0 };
	if (tap_open(&t, tap_name, true, &err))
		fail_msg("tap_open: %s", err.msg);
	assert_true(t.fd >= 0);
	assert_true(t.created);
	assert_string_equal(t.name, tap_name);
	assert_true(iface_exists(tap_name));
	assert_true(iface_flags(tap_name) & IFF_UP);

	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	assert_int_equal(ioctl(t.fd, TUNGETIFF, &ifr), 0);
	assert_true(ifr.ifr_flags & IFF_TAP);
	assert_true(ifr.ifr_flags & IFF_NO_PI);
	assert_true(ifr.ifr_flags & IFF_VNET_HDR);
	int sz = 0;
	assert_int_equal(ioctl(t.fd, TUNGETVNETHDRSZ, &sz), 0);
	assert_int_equal(sz, TAP_VNET_HDR_LEN);
	assert_true(fcntl(t.fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(t.fd, F_GETFD) & FD_CLOEXEC);

	/* Nothing queued: a read does not block. */
	char buf[2048];
	struct iovec iov = { buf, sizeof(buf) };
	assert_int_equal(tap_readv(&t, &iov, 1), -EAGAIN);

	tap_close(&t);
	assert_int_equal(t.fd, -1);
	tap_close(&t); /* idempotent */
	assert_false(iface_exists(tap_name));
}

static void test_offload(void **state)
{
	need_netns();
	struct tap t;
	struct error err = { 0 };
	if (tap_open(&t, tap_name, true, &err))
		fail_msg("tap_open: %s", err.msg);
	assert_int_equal(tap_set_offload(&t, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
					 &err), 0);
	assert_int_equal(tap_set_offload(&t, TUN_F_CSUM, &err), 0);
	assert_int_equal(tap_set_offload(&t, 0, &err), 0);
	/* TSO without checksum offload makes no sense; the kernel refuses. */
	assert_int_equal(tap_set_offload(&t, TUN_F_TSO4, &err), -EINVAL);
	assert_msg_contains(&err, tap_name);
	assert_msg_contains(&err, "offloads");
	tap_close(&t);
	assert_false(iface_exists(tap_name));
}

static void test_missing(void **state)
{
	need_netns();
	struct tap t;
	struct error err = { 0 };
	char name[32];
	name_with(name, sizeof(name), "x");
	assert_int_equal(tap_open(&t, name, false, &err), -ENODEV);
	assert_int_equal(t.fd, -1);
	char want[256];
	snprintf(want, sizeof(want),
		 "no TAP device %s: create it with `ip tuntap add %s mode tap` or pass create=on",
		 name, name);
	assert_string_equal(err.msg, want);
	/* ...and it did not get created as a side effect. */
	assert_false(iface_exists(name));
}

static void test_busy_and_exists(void **state)
{
	need_netns();
	struct tap t, t2;
	struct error err = { 0 };
	if (tap_open(&t, tap_name, true, &err))
		fail_msg("tap_open: %s", err.msg);

	assert_int_equal(tap_open(&t2, tap_name, false, &err), -EBUSY);
	assert_int_equal(t2.fd, -1);
	char want[256];
	snprintf(want, sizeof(want), "TAP device %s is busy (in use by another process)", tap_name);
	assert_string_equal(err.msg, want);

	assert_int_equal(tap_open(&t2, tap_name, true, &err), -EEXIST);
	assert_msg_contains(&err, "already exists");

	tap_close(&t);
	assert_false(iface_exists(tap_name));
}

static void test_attach_existing(void **state)
{
	need_netns();
	char name[32];
	name_with(name, sizeof(name), "p");
	make_persistent(name, IFF_TAP);

	struct tap t;
	struct error err = { 0 };
	int rc = tap_open(&t, name, false, &err);
	if (rc) {
		remove_persistent(name, IFF_TAP);
		fail_msg("tap_open: %s", err.msg);
	}
	assert_false(t.created);
	int sz = 0;
	assert_int_equal(ioctl(t.fd, TUNGETVNETHDRSZ, &sz), 0);
	assert_int_equal(sz, TAP_VNET_HDR_LEN);
	/* Its link state is the administrator's: still down. */
	assert_false(iface_flags(name) & IFF_UP);
	tap_close(&t);
	/* Persistent: closing tern's fd leaves it in place. */
	assert_true(iface_exists(name));
	remove_persistent(name, IFF_TAP);
}

static void test_not_a_tap(void **state)
{
	need_netns();
	struct tap t;
	struct error err = { 0 };
	assert_int_equal(tap_open(&t, "lo", false, &err), -ENODEV);
	assert_msg_contains(&err, "lo is not a TAP device");
	assert_int_equal(tap_open(&t, "lo", true, &err), -EEXIST);
	assert_string_equal(err.msg,
			    "cannot create TAP device lo: an interface of that name already exists");

	char name[32];
	name_with(name, sizeof(name), "u");
	make_persistent(name, IFF_TUN);
	int rc = tap_open(&t, name, false, &err);
	remove_persistent(name, IFF_TUN);
	assert_int_equal(rc, -ENODEV);
	assert_msg_contains(&err, "is a TUN device, not a TAP");
}

static void test_bad_names(void **state)
{
	struct tap t;
	struct error err = { 0 };
	assert_int_equal(tap_open(&t, "ternt0123456789a", true, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "TAP device name \"ternt0123456789a\" is too long: at most 15 characters");
	assert_int_equal(t.fd, -1);
	assert_int_equal(tap_open(&t, "", true, &err), -EINVAL);
	assert_msg_contains(&err, "empty");
	assert_int_equal(tap_open(&t, "ternt%d", true, &err), -EINVAL);
	assert_msg_contains(&err, "'%'");
	assert_int_equal(tap_open(&t, "../x", false, &err), -EINVAL);
	assert_int_equal(tap_open(&t, "a b", false, &err), -EINVAL);
	assert_int_equal(tap_open(&t, "..", false, &err), -EINVAL);
}

int main(void)
{
	name_with(tap_name, sizeof(tap_name), "");
	if (geteuid() != 0)
		fprintf(stderr, "test_tap: not root: the tests that need a TAP will fail\n");
	else if (unshare(CLONE_NEWNET) < 0)
		fprintf(stderr, "test_tap: unshare(CLONE_NEWNET): %s: the tests that need a TAP will fail\n", strerror(errno));
	else if (access("/dev/net/tun", R_OK | W_OK) < 0)
		fprintf(stderr, "test_tap: /dev/net/tun: %s: the tests that need a TAP will fail\n", strerror(errno));
	else
		have_netns = true;

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_up_and_gone_on_close),
		cmocka_unit_test(test_offload),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_busy_and_exists),
		cmocka_unit_test(test_attach_existing),
		cmocka_unit_test(test_not_a_tap),
		cmocka_unit_test(test_bad_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
