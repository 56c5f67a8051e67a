/* tap.c: opening and configuring a TAP interface (Linux
 * Documentation/networking/tuntap.rst, include/uapi/linux/if_tun.h).
 *
 * Whether an existing interface is a TAP is asked through the ethtool
 * driver info of the interface (driver "tun", bus "tap"), not through
 * /sys/class/net: sysfs shows the network namespace it was mounted in,
 * which is not the process's own after setns()/unshare(), while an ioctl
 * on a socket always asks the process's namespace, the one TUNSETIFF acts
 * in. */
#include "backends/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"

#define TUN_PATH "/dev/net/tun"

/* The kernel's rules for interface names (dev_valid_name), plus no '%':
 * TUNSETIFF would treat "tap%d" as a pattern and create some other name. */
static int check_name(const char *name, struct error *err)
{
	if (!name || !*name)
		return error_set(err, EINVAL, "TAP device name is empty");
	if (strlen(name) >= IFNAMSIZ)
		return error_set(err, EINVAL,
				 "TAP device name \"%s\" is too long: at most %d characters",
				 name, IFNAMSIZ - 1);
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return error_set(err, EINVAL, "\"%s\" is not a valid TAP device name", name);
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '/' || c == ':' || c == '%' || c <= ' ' || c == 0x7f)
			return error_set(err, EINVAL,
					 "TAP device name \"%s\" contains '%c', which interface names cannot",
					 name, c > ' ' && c != 0x7f ? c : '?');
	}
	return 0;
}

static int inet_socket(const char *name, struct error *err)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return error_errno(err, errno, "TAP %s: cannot open a socket to configure it", name);
	return s;
}

/* 0 = no interface `name`, 1 = it is a TAP, 2 = it is something else
 * (err says what), negative = the question could not be asked. */
static int probe_existing(const char *name, struct error *err)
{
	int s = inet_socket(name, err);
	if (s < 0)
		return s;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	int rc;
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
		rc = errno == ENODEV ? 0 : error_errno(err, errno, "cannot look up interface %s", name);
		goto out;
	}
	struct ethtool_drvinfo info;
	memset(&info, 0, sizeof(info));
	info.cmd = ETHTOOL_GDRVINFO;
	ifr.ifr_data = (void *)&info;
	rc = 2;
	if (ioctl(s, SIOCETHTOOL, &ifr) < 0) {
		/* Interfaces without ethtool support (lo) are not TAPs. */
		if (errno == EOPNOTSUPP)
			error_set(err, ENODEV, "interface %s is not a TAP device", name);
		else
			rc = error_errno(err, errno, "cannot query interface %s", name);
		goto out;
	}
	info.driver[sizeof(info.driver) - 1] = '\0';
	info.bus_info[sizeof(info.bus_info) - 1] = '\0';
	if (strcmp(info.driver, "tun") != 0)
		error_set(err, ENODEV, "interface %s is not a TAP device (its driver is %s)", name,
			  info.driver);
	else if (strcmp(info.bus_info, "tap") != 0)
		error_set(err, ENODEV,
			  "interface %s is a TUN device, not a TAP: create a TAP with `ip tuntap add %s mode tap`",
			  name, name);
	else
		rc = 1;
out:
	close(s);
	return rc;
}

/* Sets IFF_UP (create) or reports a link that is down (existing TAP). */
static int link_up(struct tap *t, bool set, struct error *err)
{
	int s = inet_socket(t->name, err);
	if (s < 0)
		return s;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, t->name);
	int rc = 0;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		rc = error_errno(err, errno, "TAP %s: cannot read its interface flags", t->name);
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		if (set) {
			ifr.ifr_flags |= IFF_UP;
			if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
				rc = error_errno(err, errno, "TAP %s: cannot bring the link up",
						 t->name);
		} else {
			log_warn("TAP %s is down: the guest's packets go nowhere until `ip link set %s up`",
				 t->name, t->name);
		}
	}
	close(s);
	return rc;
}

static int set_iff(struct tap *t, const char *name, bool create, struct error *err)
{
	int features = 0;
	if (ioctl(t->fd, TUNGETFEATURES, &features) < 0)
		return error_errno(err, errno, "TAP %s: TUNGETFEATURES", name);
	if (!(features & IFF_VNET_HDR) || !(features & IFF_TAP) || !(features & IFF_NO_PI))
		return error_set(err, ENOTSUP,
				 "TAP %s: this kernel's tun driver lacks TAP mode with vnet headers",
				 name);

	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (create ? IFF_TUN_EXCL : 0);
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		if (e == EBUSY && create)
			return error_set(err, EEXIST,
					 "cannot create TAP device %s: an interface of that name already exists (use create=off to attach to it)",
					 name);
		if (e == EBUSY)
			return error_set(err, EBUSY, "TAP device %s is busy (in use by another process)",
					 name);
		if (e == EPERM)
			return error_errno(err, e,
					   "TAP device %s: not permitted (it belongs to another user, or tern lacks CAP_NET_ADMIN)",
					   name);
		if (e == EINVAL && !create)
			return error_errno(err, e,
					   "cannot attach to TAP device %s (a multi-queue TAP is not supported)",
					   name);
		return error_errno(err, e, "TAP device %s: TUNSETIFF", name);
	}
	/* The kernel echoes the name it used; anything else is not ours. */
	if (strncmp(ifr.ifr_name, name, IFNAMSIZ) != 0)
		return error_set(err, EINVAL, "TAP device %s: the kernel attached to %.*s instead",
				 name, IFNAMSIZ, ifr.ifr_name);
	return 0;
}

static int set_vnet_hdr(struct tap *t, struct error *err)
{
	int want = TAP_VNET_HDR_LEN, got = 0;
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &want) < 0)
		return error_errno(err, errno, "TAP %s: cannot set the vnet header size to %d",
				   t->name, want);
	if (ioctl(t->fd, TUNGETVNETHDRSZ, &got) < 0)
		return error_errno(err, errno, "TAP %s: cannot read back the vnet header size",
				   t->name);
	if (got != want)
		return error_set(err, EINVAL, "TAP %s: vnet header size is %d, not %d", t->name,
				 got, want);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	/* virtio 1.x headers are little-endian; the tap's default is native. */
	int le = 1;
	if (ioctl(t->fd, TUNSETVNETLE, &le) < 0)
		return error_errno(err, errno, "TAP %s: cannot make vnet headers little-endian",
				   t->name);
#endif
	return 0;
}

int tap_open(struct tap *t, const char *name, bool create, struct error *err)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	int rc = check_name(name, err);
	if (rc)
		return rc;

	rc = probe_existing(name, err);
	if (rc < 0)
		return rc;
	if (rc == 0 && !create)
		return error_set(err, ENODEV,
				 "no TAP device %s: create it with `ip tuntap add %s mode tap` or pass create=on",
				 name, name);
	if (rc == 1 && create)
		return error_set(err, EEXIST,
				 "cannot create TAP device %s: it already exists (use create=off to attach to it)",
				 name);
	if (rc == 2 && create)
		return error_set(err, EEXIST,
				 "cannot create TAP device %s: an interface of that name already exists",
				 name);
	if (rc == 2)
		return -ENODEV;         /* err already says what it is */

	t->fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		int e = errno;
		return error_errno(err, e, "cannot open %s for TAP %s%s", TUN_PATH, name,
				   e == ENOENT ? " (is the tun module loaded?)" : "");
	}
	strcpy(t->name, name);
	t->created = create;
	if ((rc = set_iff(t, name, create, err)) || (rc = set_vnet_hdr(t, err)) ||
	    (rc = link_up(t, create, err))) {
		/* A created TAP is non-persistent: closing removes it again. */
		tap_close(t);
		return rc;
	}
	return 0;
}

int tap_set_offload(struct tap *t, unsigned tun_f_flags, struct error *err)
{
	if (ioctl(t->fd, TUNSETOFFLOAD, (unsigned long)tun_f_flags) < 0)
		return error_errno(err, errno, "TAP %s: cannot set offloads 0x%x", t->name,
				   tun_f_flags);
	return 0;
}

ssize_t tap_readv(struct tap *t, const struct iovec *iov, int iovcnt)
{
	for (;;) {
		ssize_t n = readv(t->fd, iov, iovcnt);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t tap_writev(struct tap *t, const struct iovec *iov, int iovcnt)
{
	for (;;) {
		ssize_t n = writev(t->fd, iov, iovcnt);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

void tap_close(struct tap *t)
{
	if (t->fd >= 0 && close(t->fd) < 0)
		log_warn("TAP %s: close: %s", t->name, strerror(errno));
	t->fd = -1;
}
