/* test_virtio_net.c: virtio-net seen from a guest driver on one side and
 * the network on the other.
 *
 * Each test owns 16 MiB of real guest RAM, a virtio-net device with its
 * virtio-mmio transport on a TAP it creates (ternt<pid>a, and ternt<pid>b
 * for a second device), and drives the transport's registers the way
 * Linux's virtio_mmio and virtio_net drivers do: feature negotiation
 * (MRG_RXBUF, CTRL_VQ, EVENT_IDX...), three split queues, receive buffers,
 * transmit chains, control commands, the used rings and the interrupt line.
 * The network side is an AF_PACKET socket bound to the TAP: what it sends
 * the device reads from the TAP (the guest's RX), and what the device
 * writes to the TAP it receives (the guest's TX).
 *
 * Needs root. main() first moves the process into a network namespace of
 * its own (unshare(CLONE_NEWNET), anonymous, IPv6 off so the kernel sends
 * nothing on its own): the TAPs live there, no frame can reach the host's
 * interfaces, and the kernel removes the namespace and everything in it
 * when the process exits, even after a failed test. Teardown also destroys
 * each device and checks that its TAP is gone. Without root only the MAC
 * parser tests run. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "devices/virtio/virtio.h"
#include "mem/guest_ram.h"
#include "state/state.h"

#define MiB (1024u * 1024u)
#define RAM_BASE 0x80000000ull
#define RAM_SIZE (16ull * MiB)
#define MMIO_BASE 0x10001000ull

/* Guest memory layout of the tests. */
#define QSIZE 256
#define QUEUE_GPA(q) (RAM_BASE + 0x10000 + (uint64_t)(q) * 0x4000)
#define DESC_GPA(q) QUEUE_GPA(q)
#define AVAIL_GPA(q) (QUEUE_GPA(q) + 0x1000)
#define USED_GPA(q) (QUEUE_GPA(q) + 0x2000)
#define RXBUF_STRIDE 0x4000u                            /* buffers up to 16 KiB */
#define RXBUF_GPA(desc) (RAM_BASE + 0x100000 + (uint64_t)(desc) * RXBUF_STRIDE)
#define BIGBUF_GPA(i) (RAM_BASE + 0x600000 + (uint64_t)(i) * 0x20000)
#define TX_GPA (RAM_BASE + 0xa00000)                    /* 2 MiB, reused per send */
#define INDIRECT_GPA (RAM_BASE + 0xc00000)
#define CTRL_GPA (RAM_BASE + 0xd00000)

/* virtio-mmio registers (4.2.2) */
enum {
	R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008,
	R_DEV_FEATURES = 0x010, R_DEV_FEATURES_SEL = 0x014,
	R_DRV_FEATURES = 0x020, R_DRV_FEATURES_SEL = 0x024,
	R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038,
	R_QUEUE_READY = 0x044, R_QUEUE_NOTIFY = 0x050,
	R_INT_STATUS = 0x060, R_INT_ACK = 0x064, R_STATUS = 0x070,
	R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_DRIVER_LO = 0x090, R_DRIVER_HI = 0x094,
	R_DEVICE_LO = 0x0a0, R_DEVICE_HI = 0x0a4, R_CONFIG_GEN = 0x0fc, R_CONFIG = 0x100,
};

#define BIT(n) (1ull << (n))
/* What Linux's virtio_net driver accepts of what tern offers. */
#define LINUX_FEATURES                                                                    \
	(BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_MAC) |    \
	 BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6) |                     \
	 BIT(VIRTIO_NET_F_GUEST_ECN) | BIT(VIRTIO_NET_F_HOST_TSO4) |                       \
	 BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) |                        \
	 BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_NET_F_STATUS) |                          \
	 BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_CTRL_RX) |                           \
	 BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) | BIT(VIRTIO_F_INDIRECT_DESC) |                  \
	 BIT(VIRTIO_F_EVENT_IDX) | BIT(VIRTIO_F_VERSION_1))

#define ETHERTYPE_TEST 0x88b5   /* IEEE local experimental */
#define WAIT_MS 5000            /* for things that must happen */
#define QUIET_MS 150            /* for things that must not */

static const uint8_t GUEST_MAC[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t PEER_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

static bool have_netns;

struct dq {
	uint16_t avail_idx;     /* the driver's next available index */
	uint16_t used_seen;     /* used entries consumed */
	uint16_t next_desc;
};

struct fixture {
	char tap[16];
	struct guest_ram ram;
	struct virtio_mmio *t;
	struct device *dev;
	bool level;                     /* written by the device's threads */
	unsigned raises;
	uint64_t features;              /* negotiated */
	struct dq q[3];
	int pkt;                        /* AF_PACKET socket bound to the TAP */
	int ifindex;
};

/* ---- small helpers -------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

#define WAIT_FOR(cond, ms)                                           \
	({                                                           \
		uint64_t _end = now_ms() + (ms);                     \
		bool _ok;                                            \
		while (!(_ok = (cond)) && now_ms() < _end)           \
			sleep_ms(1);                                 \
		_ok;                                                 \
	})

static void tap_name(char *out, size_t size, const char *suffix)
{
	snprintf(out, size, "ternt%u%s", (unsigned)getpid() % 10000000u, suffix);
}

/* ---- the fake driver ---------------------------------------------------- */

static void line_set(void *controller, unsigned irq, bool level)
{
	struct fixture *f = controller;
	if (level && !__atomic_load_n(&f->level, __ATOMIC_ACQUIRE))
		__atomic_fetch_add(&f->raises, 1, __ATOMIC_ACQ_REL);
	__atomic_store_n(&f->level, level, __ATOMIC_RELEASE);
}

static unsigned raises(struct fixture *f)
{
	return __atomic_load_n(&f->raises, __ATOMIC_ACQUIRE);
}

static uint32_t rd32(struct fixture *f, uint64_t off)
{
	return (uint32_t)f->dev->ops->read(f->dev, off, 4);
}

static void wr32(struct fixture *f, uint64_t off, uint32_t v)
{
	f->dev->ops->write(f->dev, off, v, 4);
}

static uint8_t *host(struct fixture *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = guest_ram_ptr(&f->ram, gpa, len);
	assert_non_null(p);
	return p;
}

static void put16(struct fixture *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(host(f, gpa, 2), &v, 2);
}

static void put32(struct fixture *f, uint64_t gpa, uint32_t v)
{
	v = htole32(v);
	memcpy(host(f, gpa, 4), &v, 4);
}

static void put64(struct fixture *f, uint64_t gpa, uint64_t v)
{
	v = htole64(v);
	memcpy(host(f, gpa, 8), &v, 8);
}


static uint32_t get32(struct fixture *f, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, host(f, gpa, 4), 4);
	return le32toh(v);
}

static uint16_t get16(struct fixture *f, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, host(f, gpa, 2), 2);
	return le16toh(v);
}

static uint16_t used_idx(struct fixture *f, unsigned q)
{
	uint16_t v = __atomic_load_n((uint16_t *)(void *)host(f, USED_GPA(q) + 2, 2),
				     __ATOMIC_ACQUIRE);
	return le16toh(v);
}

/* What the device last published as avail_event (EVENT_IDX): the next
 * available entry it will read. */
static uint16_t avail_event(struct fixture *f, unsigned q)
{
	uint16_t v = __atomic_load_n((uint16_t *)(void *)host(f, USED_GPA(q) + 4 + 8 * QSIZE, 2),
				     __ATOMIC_ACQUIRE);
	return le16toh(v);
}

static unsigned used_pending(struct fixture *f, unsigned q)
{
	return (uint16_t)(used_idx(f, q) - f->q[q].used_seen);
}

static void set_desc(struct fixture *f, unsigned q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint64_t d = DESC_GPA(q) + 16ull * i;
	put64(f, d, addr);
	put32(f, d + 8, len);
	put16(f, d + 12, flags);
	put16(f, d + 14, next);
}

static uint16_t alloc_desc(struct fixture *f, unsigned q)
{
	return f->q[q].next_desc++ & (QSIZE - 1);
}

/* Makes chain `head` available and kicks (always: a spurious kick is
 * allowed, and it keeps the driver simple). */
static void make_available(struct fixture *f, unsigned q, uint16_t head, bool kick)
{
	struct dq *d = &f->q[q];
	put16(f, AVAIL_GPA(q) + 4 + 2u * (d->avail_idx & (QSIZE - 1)), head);
	d->avail_idx++;
	__atomic_store_n((uint16_t *)(void *)host(f, AVAIL_GPA(q) + 2, 2), htole16(d->avail_idx),
			 __ATOMIC_RELEASE);
	if (kick) {
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		wr32(f, R_QUEUE_NOTIFY, q);
	}
}

/* Takes the next used entry; keeps used_event just behind, as Linux does
 * when it wants an interrupt for every entry. */
static void take_used(struct fixture *f, unsigned q, uint32_t *id, uint32_t *len)
{
	struct dq *d = &f->q[q];
	assert_true(used_pending(f, q) > 0);
	uint64_t e = USED_GPA(q) + 4 + 8u * (d->used_seen & (QSIZE - 1));
	*id = get32(f, e);
	*len = get32(f, e + 4);
	d->used_seen++;
	put16(f, AVAIL_GPA(q) + 4 + 2u * QSIZE, d->used_seen);
}

static void ack_interrupts(struct fixture *f)
{
	uint32_t s = rd32(f, R_INT_STATUS);
	if (s)
		wr32(f, R_INT_ACK, s);
}

static uint64_t device_features(struct fixture *f)
{
	wr32(f, R_DEV_FEATURES_SEL, 0);
	uint64_t lo = rd32(f, R_DEV_FEATURES);
	wr32(f, R_DEV_FEATURES_SEL, 1);
	uint64_t hi = rd32(f, R_DEV_FEATURES);
	return hi << 32 | lo;
}

/* Reset, negotiate `want` & offered, set up the queues, DRIVER_OK. */
static void drv_start(struct fixture *f, uint64_t want)
{
	wr32(f, R_STATUS, 0);
	memset(f->q, 0, sizeof(f->q));
	memset(host(f, QUEUE_GPA(0), 3 * 0x4000), 0, 3 * 0x4000);
	wr32(f, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr32(f, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	uint64_t feat = device_features(f) & want;
	assert_true(feat & BIT(VIRTIO_F_VERSION_1));
	wr32(f, R_DRV_FEATURES_SEL, 0);
	wr32(f, R_DRV_FEATURES, (uint32_t)feat);
	wr32(f, R_DRV_FEATURES_SEL, 1);
	wr32(f, R_DRV_FEATURES, (uint32_t)(feat >> 32));
	uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	wr32(f, R_STATUS, st);
	assert_true(rd32(f, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	f->features = feat;

	unsigned nq = (feat & BIT(VIRTIO_NET_F_CTRL_VQ)) ? 3 : 2;
	for (unsigned q = 0; q < nq; q++) {
		wr32(f, R_QUEUE_SEL, q);
		assert_int_equal(rd32(f, R_QUEUE_NUM_MAX), VIRTIO_NET_QUEUE_SIZE);
		wr32(f, R_QUEUE_NUM, QSIZE);
		wr32(f, R_DESC_LO, (uint32_t)DESC_GPA(q));
		wr32(f, R_DESC_HI, (uint32_t)(DESC_GPA(q) >> 32));
		wr32(f, R_DRIVER_LO, (uint32_t)AVAIL_GPA(q));
		wr32(f, R_DRIVER_HI, (uint32_t)(AVAIL_GPA(q) >> 32));
		wr32(f, R_DEVICE_LO, (uint32_t)USED_GPA(q));
		wr32(f, R_DEVICE_HI, (uint32_t)(USED_GPA(q) >> 32));
		wr32(f, R_QUEUE_READY, 1);
	}
	wr32(f, R_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(rd32(f, R_STATUS), st | VIRTIO_STATUS_DRIVER_OK);
}

/* Posts `count` single-descriptor receive buffers of `size` bytes. */
static void rx_post(struct fixture *f, unsigned count, uint32_t size)
{
	assert_true(size <= RXBUF_STRIDE);
	for (unsigned i = 0; i < count; i++) {
		uint16_t d = alloc_desc(f, VIRTIO_NET_RXQ);
		set_desc(f, VIRTIO_NET_RXQ, d, RXBUF_GPA(d), size, VRING_DESC_F_WRITE, 0);
		make_available(f, VIRTIO_NET_RXQ, d, i + 1 == count);
	}
}

/* One received packet: its used entries gathered back into one buffer. */
struct rx_packet {
	uint8_t hdr[VIRTIO_NET_HDR_LEN];
	uint8_t frame[70000];
	size_t frame_len;
	unsigned num_buffers;
	uint16_t first_desc;
};

static uint16_t hdr16(const uint8_t *h, unsigned off)
{
	return (uint16_t)(h[off] | h[off + 1] << 8);
}

/* Waits for a whole packet in the receive queue (buffers from rx_post). */
static void rx_take_packet(struct fixture *f, struct rx_packet *p)
{
	if (!WAIT_FOR(used_pending(f, VIRTIO_NET_RXQ) > 0, WAIT_MS))
		fail_msg("no packet reached the receive queue");
	uint32_t id, len;
	take_used(f, VIRTIO_NET_RXQ, &id, &len);
	assert_true(len >= VIRTIO_NET_HDR_LEN);
	const uint8_t *buf = host(f, RXBUF_GPA(id), len);
	memcpy(p->hdr, buf, VIRTIO_NET_HDR_LEN);
	p->first_desc = (uint16_t)id;
	p->num_buffers = hdr16(p->hdr, VIRTIO_NET_HDR_NUM_BUFFERS);
	p->frame_len = len - VIRTIO_NET_HDR_LEN;
	memcpy(p->frame, buf + VIRTIO_NET_HDR_LEN, p->frame_len);
	assert_true(p->num_buffers >= 1);
	/* With merged buffers the rest must already be in the used ring. */
	assert_true(used_pending(f, VIRTIO_NET_RXQ) >= p->num_buffers - 1);
	for (unsigned i = 1; i < p->num_buffers; i++) {
		take_used(f, VIRTIO_NET_RXQ, &id, &len);
		assert_true(p->frame_len + len <= sizeof(p->frame));
		memcpy(p->frame + p->frame_len, host(f, RXBUF_GPA(id), len), len);
		p->frame_len += len;
	}
}

/* Sends one packet from the guest: a 12-byte header (hdr, or zeros) and
 * the frame, split into `nsegs` descriptors (plus the header's),
 * optionally through an indirect table. */
static void tx_send(struct fixture *f, const uint8_t *hdr, const uint8_t *frame, size_t len,
		    unsigned nsegs, bool indirect)
{
	const unsigned q = VIRTIO_NET_TXQ;
	uint8_t zero[VIRTIO_NET_HDR_LEN] = { 0 };
	memcpy(host(f, TX_GPA, VIRTIO_NET_HDR_LEN), hdr ? hdr : zero, VIRTIO_NET_HDR_LEN);
	memcpy(host(f, TX_GPA + 0x1000, len), frame, len);

	struct { uint64_t addr; uint32_t len; } seg[16];
	assert_true(nsegs >= 1 && nsegs < 16);
	seg[0].addr = TX_GPA;
	seg[0].len = VIRTIO_NET_HDR_LEN;
	size_t at = 0;
	for (unsigned i = 0; i < nsegs; i++) {
		size_t n = i + 1 == nsegs ? len - at : len / nsegs;
		seg[1 + i].addr = TX_GPA + 0x1000 + at;
		seg[1 + i].len = (uint32_t)n;
		at += n;
	}
	unsigned total = nsegs + 1;
	if (indirect) {
		for (unsigned i = 0; i < total; i++) {
			uint64_t d = INDIRECT_GPA + 16ull * i;
			put64(f, d, seg[i].addr);
			put32(f, d + 8, seg[i].len);
			put16(f, d + 12, i + 1 < total ? VRING_DESC_F_NEXT : 0);
			put16(f, d + 14, (uint16_t)(i + 1));
		}
		uint16_t head = alloc_desc(f, q);
		set_desc(f, q, head, INDIRECT_GPA, 16 * total, VRING_DESC_F_INDIRECT, 0);
		make_available(f, q, head, true);
		return;
	}
	uint16_t ids[16];
	for (unsigned i = 0; i < total; i++)
		ids[i] = alloc_desc(f, q);
	for (unsigned i = 0; i < total; i++)
		set_desc(f, q, ids[i], seg[i].addr, seg[i].len,
			 i + 1 < total ? VRING_DESC_F_NEXT : 0, i + 1 < total ? ids[i + 1] : 0);
	make_available(f, q, ids[0], true);
}

/* ---- the network side ------------------------------------------------------- */

static int iface_ioctl(const char *name, unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	strcpy(ifr->ifr_name, name);
	int rc = ioctl(s, req, ifr);
	close(s);
	return rc;
}

static void set_mtu(struct fixture *f, int mtu)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_mtu = mtu;
	assert_int_equal(iface_ioctl(f->tap, SIOCSIFMTU, &ifr), 0);
}

static int packet_socket(int ifindex, bool vnet_hdr)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
	assert_true(s >= 0);
	int one = 1;
	/* Only what the device wrote, not what this socket sent. */
	assert_int_equal(setsockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)), 0);
	if (vnet_hdr)
		assert_int_equal(setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)), 0);
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = ifindex,
	};
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	/* Frames from before the bind, from any interface: not ours. */
	char junk[2048];
	while (recv(s, junk, sizeof(junk), 0) > 0)
		;
	return s;
}

static void pkt_send(struct fixture *f, const uint8_t *frame, size_t len)
{
	ssize_t n = send(f->pkt, frame, len, 0);
	if (n != (ssize_t)len)
		fail_msg("packet socket send of %zu bytes: %zd (%s)", len, n, strerror(errno));
}

static ssize_t pkt_recv(int s, void *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = { .fd = s, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return recv(s, buf, cap, 0);
}

static void make_frame(uint8_t *frame, size_t len, unsigned seed)
{
	memcpy(frame, GUEST_MAC, 6);
	memcpy(frame + 6, PEER_MAC, 6);
	frame[12] = ETHERTYPE_TEST >> 8;
	frame[13] = ETHERTYPE_TEST & 0xff;
	for (size_t i = 14; i < len; i++)
		frame[i] = (uint8_t)(seed * 37 + i * 7 + (i >> 8));
}

/* ---- fixture ------------------------------------------------------------------- */

static int make_device(struct fixture *f, const char *suffix, const uint8_t mac[6],
		       struct error *err)
{
	tap_name(f->tap, sizeof(f->tap), suffix);
	struct irq_line irq = { .set_level = line_set, .controller = f, .irq = 1 };
	f->t = virtio_net_create("virtio-net@10001000", MMIO_BASE, irq, &f->ram, f->tap, true, mac,
				 err);
	if (!f->t)
		return -1;
	f->dev = virtio_mmio_device(f->t);
	f->ifindex = (int)if_nametoindex(f->tap);
	assert_true(f->ifindex > 0);
	f->pkt = packet_socket(f->ifindex, false);
	return 0;
}

static void destroy_device(struct fixture *f)
{
	if (f->pkt >= 0)
		close(f->pkt);
	f->pkt = -1;
	if (f->dev)
		f->dev->ops->destroy(f->dev);
	f->dev = NULL;
	f->t = NULL;
	/* create=on: the TAP goes away with the device. */
	assert_int_equal(if_nametoindex(f->tap), 0);
}

static int setup(void **state)
{
	if (!have_netns)
		return 0;       /* each test fails itself, saying why */
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->pkt = -1;
	struct error err = { 0 };
	if (guest_ram_init(&f->ram, RAM_BASE, RAM_SIZE, &err))
		fail_msg("guest_ram_init: %s", err.msg);
	if (make_device(f, "a", GUEST_MAC, &err))
		fail_msg("virtio_net_create: %s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	destroy_device(f);
	guest_ram_destroy(&f->ram);
	free(f);
	return 0;
}

static struct fixture *fixture(void **state)
{
	if (!have_netns)
		fail_msg("this test needs root, a network namespace and /dev/net/tun (see above)");
	return *state;
}

/* ---- identity, features, config ------------------------------------------------------ */

static void test_identity_and_config(void **state)
{
	struct fixture *f = fixture(state);
	assert_int_equal(rd32(f, R_MAGIC), 0x74726976);
	assert_int_equal(rd32(f, R_VERSION), 2);
	assert_int_equal(rd32(f, R_DEVICE_ID), VIRTIO_ID_NET);
	assert_int_equal(device_features(f), LINUX_FEATURES);

	uint8_t cfg[VIRTIO_NET_CFG_SIZE];
	for (unsigned i = 0; i < sizeof(cfg); i++)
		cfg[i] = (uint8_t)f->dev->ops->read(f->dev, R_CONFIG + i, 1);
	assert_memory_equal(cfg + VIRTIO_NET_CFG_MAC, GUEST_MAC, 6);
	assert_int_equal(hdr16(cfg, VIRTIO_NET_CFG_STATUS), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(hdr16(cfg, VIRTIO_NET_CFG_MAX_VQ_PAIRS), 1);
	assert_int_equal(f->dev->ops->read(f->dev, R_CONFIG + VIRTIO_NET_CFG_STATUS, 2),
			 VIRTIO_NET_S_LINK_UP);

	/* The queue sizes, and no fourth queue. */
	wr32(f, R_QUEUE_SEL, 3);
	assert_int_equal(rd32(f, R_QUEUE_NUM_MAX), 0);
	drv_start(f, LINUX_FEATURES);
	assert_int_equal(f->features, LINUX_FEATURES);
}

/* ---- receive ---------------------------------------------------------------------- */

static void test_rx_one_packet(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	rx_post(f, 8, 1526);
	guest_ram_clear_dirty(&f->ram);
	unsigned before = raises(f);

	uint8_t frame[100];
	make_frame(frame, sizeof(frame), 1);
	pkt_send(f, frame, sizeof(frame));

	static struct rx_packet p;
	rx_take_packet(f, &p);
	assert_int_equal(p.num_buffers, 1);
	assert_int_equal(p.frame_len, sizeof(frame));
	assert_memory_equal(p.frame, frame, sizeof(frame));
	assert_int_equal(p.hdr[VIRTIO_NET_HDR_GSO_TYPE], VIRTIO_NET_HDR_GSO_NONE);
	assert_false(p.hdr[VIRTIO_NET_HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM);
	/* The device's writes are visible to dirty tracking: the buffer and
	 * the used ring; a buffer it did not use stays clean. */
	assert_true(guest_ram_page_dirty(&f->ram, RXBUF_GPA(p.first_desc)));
	assert_true(guest_ram_page_dirty(&f->ram, USED_GPA(VIRTIO_NET_RXQ)));
	assert_false(guest_ram_page_dirty(&f->ram, RXBUF_GPA(p.first_desc + 1)));
	/* ...and the driver was interrupted. */
	assert_true(WAIT_FOR(raises(f) > before, WAIT_MS));
	assert_true(rd32(f, R_INT_STATUS) & VIRTIO_INT_USED);
	ack_interrupts(f);
	assert_false(__atomic_load_n(&f->level, __ATOMIC_ACQUIRE));

	/* Several packets keep their order. */
	for (unsigned i = 0; i < 5; i++) {
		make_frame(frame, sizeof(frame) - i, 10 + i);
		pkt_send(f, frame, sizeof(frame) - i);
	}
	for (unsigned i = 0; i < 5; i++) {
		rx_take_packet(f, &p);
		make_frame(frame, sizeof(frame) - i, 10 + i);
		assert_int_equal(p.frame_len, sizeof(frame) - i);
		assert_memory_equal(p.frame, frame, p.frame_len);
	}
}

static void test_rx_merged_large(void **state)
{
	struct fixture *f = fixture(state);
	set_mtu(f, 9000);
	drv_start(f, LINUX_FEATURES);
	rx_post(f, 32, 1526);

	static uint8_t frame[9014];
	make_frame(frame, sizeof(frame), 3);
	pkt_send(f, frame, sizeof(frame));

	static struct rx_packet p;
	rx_take_packet(f, &p);
	/* 12 + 9014 bytes in buffers of 1526 */
	assert_int_equal(p.num_buffers, (VIRTIO_NET_HDR_LEN + sizeof(frame) + 1525) / 1526);
	assert_int_equal(p.frame_len, sizeof(frame));
	assert_memory_equal(p.frame, frame, sizeof(frame));
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
}

static void test_rx_waits_for_buffers(void **state)
{
	struct fixture *f = fixture(state);
	set_mtu(f, 9000);
	drv_start(f, LINUX_FEATURES);

	/* No buffers at all: nothing is used, nothing is lost. */
	uint8_t frame[200];
	for (unsigned i = 0; i < 5; i++) {
		make_frame(frame, sizeof(frame), 20 + i);
		pkt_send(f, frame, sizeof(frame));
	}
	sleep_ms(QUIET_MS);
	assert_int_equal(used_idx(f, VIRTIO_NET_RXQ), 0);
	rx_post(f, 8, 1526);
	static struct rx_packet p;
	for (unsigned i = 0; i < 5; i++) {
		rx_take_packet(f, &p);
		make_frame(frame, sizeof(frame), 20 + i);
		assert_int_equal(p.frame_len, sizeof(frame));
		assert_memory_equal(p.frame, frame, sizeof(frame));
	}
	/* 3 left over. A packet needing 6 merged buffers waits until enough
	 * are there, then arrives whole. */
	static uint8_t big[9014];
	make_frame(big, sizeof(big), 4);
	pkt_send(f, big, sizeof(big));
	sleep_ms(QUIET_MS);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	rx_post(f, 2, 1526);
	/* It has taken all 5 it could get, and waits. */
	assert_true(WAIT_FOR(avail_event(f, VIRTIO_NET_RXQ) == 10, WAIT_MS));
	sleep_ms(QUIET_MS);
	assert_int_equal(used_pending(f, VIRTIO_NET_RXQ), 0);
	rx_post(f, 4, 1526);
	rx_take_packet(f, &p);
	assert_int_equal(p.num_buffers, 6);
	assert_int_equal(p.frame_len, sizeof(big));
	assert_memory_equal(p.frame, big, sizeof(big));
	/* One buffer remains for the next packet. */
	make_frame(frame, sizeof(frame), 30);
	pkt_send(f, frame, sizeof(frame));
	rx_take_packet(f, &p);
	assert_memory_equal(p.frame, frame, sizeof(frame));
}

static void test_rx_without_mrg(void **state)
{
	struct fixture *f = fixture(state);
	set_mtu(f, 9000);
	drv_start(f, LINUX_FEATURES & ~BIT(VIRTIO_NET_F_MRG_RXBUF));
	rx_post(f, 4, 1526);

	uint8_t frame[300];
	make_frame(frame, sizeof(frame), 5);
	pkt_send(f, frame, sizeof(frame));
	static struct rx_packet p;
	rx_take_packet(f, &p);
	assert_int_equal(p.num_buffers, 1);
	assert_memory_equal(p.frame, frame, sizeof(frame));

	/* Too big for one buffer: dropped, the buffer comes back empty. */
	static uint8_t big[9014];
	make_frame(big, sizeof(big), 6);
	pkt_send(f, big, sizeof(big));
	assert_true(WAIT_FOR(used_pending(f, VIRTIO_NET_RXQ) == 1, WAIT_MS));
	uint32_t id, len;
	take_used(f, VIRTIO_NET_RXQ, &id, &len);
	assert_int_equal(len, 0);

	/* The next one fits. */
	make_frame(frame, sizeof(frame), 7);
	pkt_send(f, frame, sizeof(frame));
	rx_take_packet(f, &p);
	assert_int_equal(p.num_buffers, 1);
	assert_memory_equal(p.frame, frame, sizeof(frame));
}

/* A TCP/IPv4 GSO packet from the network side reaches the guest as one
 * packet with its GSO header (GUEST_TSO4, GUEST_CSUM, merged buffers). */
static size_t make_tcp4(uint8_t *frame, size_t payload, const uint8_t *dst, const uint8_t *src)
{
	memcpy(frame, dst, 6);
	memcpy(frame + 6, src, 6);
	frame[12] = 0x08;
	frame[13] = 0x00;
	uint8_t *ip = frame + 14;
	memset(ip, 0, 40);
	size_t tot = 40 + payload;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[6] = 0x40;           /* DF */
	ip[8] = 64;
	ip[9] = 6;              /* TCP */
	uint8_t sa[4] = { 10, 0, 0, 1 }, da[4] = { 10, 0, 0, 2 };
	memcpy(ip + 12, sa, 4);
	memcpy(ip + 16, da, 4);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ip[10] = (uint8_t)(~sum >> 8);
	ip[11] = (uint8_t)~sum;
	uint8_t *tcp = ip + 20;
	tcp[0] = 0x30;          /* port 12345 -> 80 */
	tcp[1] = 0x39;
	tcp[3] = 80;
	tcp[7] = 1;             /* seq 1 */
	tcp[12] = 5 << 4;
	tcp[13] = 0x18;         /* PSH ACK */
	tcp[14] = 0xff;
	tcp[15] = 0xff;
	for (size_t i = 0; i < payload; i++)
		tcp[20 + i] = (uint8_t)(i * 11 + (i >> 10));
	return 54 + payload;
}

static void tso_hdr(uint8_t *h, size_t hdr_size)
{
	memset(h, 0, hdr_size);
	h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h[1] = VIRTIO_NET_HDR_GSO_TCPV4;
	h[2] = 54;              /* hdr_len */
	h[4] = 1448 & 0xff;     /* gso_size */
	h[5] = 1448 >> 8;
	h[6] = 34;              /* csum_start */
	h[8] = 16;              /* csum_offset */
}

static void test_rx_gso(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	rx_post(f, 64, 1526);

	/* A socket that sends with a virtio_net_hdr (10 bytes) in front. */
	int s = packet_socket(f->ifindex, true);
	static uint8_t buf[10 + 54 + 20000];
	tso_hdr(buf, 10);
	size_t len = make_tcp4(buf + 10, 20000, GUEST_MAC, PEER_MAC);
	ssize_t n = send(s, buf, 10 + len, 0);
	if (n != (ssize_t)(10 + len))
		fail_msg("GSO send: %zd (%s)", n, strerror(errno));
	close(s);

	static struct rx_packet p;
	rx_take_packet(f, &p);
	assert_int_equal(p.hdr[VIRTIO_NET_HDR_GSO_TYPE], VIRTIO_NET_HDR_GSO_TCPV4);
	assert_true(p.hdr[VIRTIO_NET_HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(hdr16(p.hdr, 4), 1448);
	assert_true(p.num_buffers > 1);
	assert_int_equal(p.frame_len, len);
	assert_memory_equal(p.frame + 54, buf + 10 + 54, 20000);
}

/* ---- transmit ---------------------------------------------------------------------- */

static void expect_on_wire(struct fixture *f, const uint8_t *frame, size_t len)
{
	static uint8_t got[70000];
	for (;;) {
		ssize_t n = pkt_recv(f->pkt, got, sizeof(got), WAIT_MS);
		if (n < 0)
			fail_msg("the guest's frame of %zu bytes did not reach the TAP", len);
		if ((size_t)n == len && !memcmp(got, frame, len))
			return;
		fail_msg("unexpected frame of %zd bytes on the TAP (expected %zu)", n, len);
	}
}

static void test_tx(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	unsigned before = raises(f);

	uint8_t frame[600];
	make_frame(frame, sizeof(frame), 8);
	memcpy(frame, PEER_MAC, 6);             /* to the network */
	memcpy(frame + 6, GUEST_MAC, 6);
	tx_send(f, NULL, frame, sizeof(frame), 1, false);
	expect_on_wire(f, frame, sizeof(frame));
	assert_true(WAIT_FOR(used_pending(f, VIRTIO_NET_TXQ) == 1, WAIT_MS));
	uint32_t id, len;
	take_used(f, VIRTIO_NET_TXQ, &id, &len);
	assert_int_equal(len, 0);
	assert_true(WAIT_FOR(raises(f) > before, WAIT_MS));
	ack_interrupts(f);

	/* Frame spread over several descriptors, directly and indirectly. */
	frame[20] ^= 0xff;
	tx_send(f, NULL, frame, sizeof(frame), 5, false);
	expect_on_wire(f, frame, sizeof(frame));
	frame[21] ^= 0xff;
	tx_send(f, NULL, frame, sizeof(frame), 3, true);
	expect_on_wire(f, frame, sizeof(frame));
	assert_true(WAIT_FOR(used_pending(f, VIRTIO_NET_TXQ) == 2, WAIT_MS));
}

static void test_tx_gso(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	static uint8_t frame[54 + 20000];
	size_t len = make_tcp4(frame, 20000, PEER_MAC, GUEST_MAC);
	uint8_t hdr[VIRTIO_NET_HDR_LEN];
	tso_hdr(hdr, sizeof(hdr));
	tx_send(f, hdr, frame, len, 4, false);
	/* The TAP took it as one GSO packet, which the packet socket sees
	 * before anything would segment it. */
	expect_on_wire(f, frame, len);
	assert_true(WAIT_FOR(used_pending(f, VIRTIO_NET_TXQ) == 1, WAIT_MS));
}

/* Without EVENT_IDX (notification suppression by flags) and without
 * indirect descriptors: both directions, and waiting for buffers. */
static void test_plain_rings(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES & ~(BIT(VIRTIO_F_EVENT_IDX) | BIT(VIRTIO_F_INDIRECT_DESC)));
	uint8_t frame[300];
	for (unsigned i = 0; i < 3; i++) {
		make_frame(frame, sizeof(frame), 40 + i);
		pkt_send(f, frame, sizeof(frame));
	}
	sleep_ms(QUIET_MS);
	assert_int_equal(used_idx(f, VIRTIO_NET_RXQ), 0);
	/* Out of buffers, the device asks to be notified. */
	assert_int_equal(get16(f, USED_GPA(VIRTIO_NET_RXQ)) & VRING_USED_F_NO_NOTIFY, 0);
	rx_post(f, 3, 1526);
	static struct rx_packet p;
	for (unsigned i = 0; i < 3; i++) {
		rx_take_packet(f, &p);
		make_frame(frame, sizeof(frame), 40 + i);
		assert_memory_equal(p.frame, frame, sizeof(frame));
	}
	make_frame(frame, sizeof(frame), 50);
	memcpy(frame, PEER_MAC, 6);
	tx_send(f, NULL, frame, sizeof(frame), 2, false);
	expect_on_wire(f, frame, sizeof(frame));
	assert_true(WAIT_FOR(used_pending(f, VIRTIO_NET_TXQ) == 1, WAIT_MS));
}

/* The TAP is deleted under a running device: the guest's packets are
 * dropped (and their buffers returned), nothing spins. */
static void test_tap_deleted(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	rx_post(f, 4, 1526);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "ip link del %s", f->tap);
	if (system(cmd) != 0)
		fail_msg("`%s` failed: is iproute2 installed?", cmd);
	close(f->pkt);
	f->pkt = -1;
	sleep_ms(50);

	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	sleep_ms(300);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	double busy = (double)(c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) / 1e9;
	if (busy > 0.1)
		fail_msg("%.0f ms of CPU in 300 ms with the TAP gone: a busy loop?", busy * 1000);

	uint8_t frame[100];
	make_frame(frame, sizeof(frame), 60);
	tx_send(f, NULL, frame, sizeof(frame), 1, false);
	assert_true(WAIT_FOR(used_pending(f, VIRTIO_NET_TXQ) == 1, WAIT_MS));
	assert_false(rd32(f, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

/* ---- control queue ------------------------------------------------------------------ */

/* Sends class/cmd/data on the control queue, returns the ack. */
static uint8_t ctrl(struct fixture *f, uint8_t class, uint8_t cmd, const void *data, size_t len)
{
	const unsigned q = VIRTIO_NET_CTRLQ;
	uint8_t *h = host(f, CTRL_GPA, 2);
	h[0] = class;
	h[1] = cmd;
	if (len)
		memcpy(host(f, CTRL_GPA + 0x100, len), data, len);
	*host(f, CTRL_GPA + 0x800, 1) = 0xee;
	uint16_t d0 = alloc_desc(f, q), d1 = alloc_desc(f, q), d2 = alloc_desc(f, q);
	if (len) {
		set_desc(f, q, d0, CTRL_GPA, 2, VRING_DESC_F_NEXT, d1);
		set_desc(f, q, d1, CTRL_GPA + 0x100, (uint32_t)len, VRING_DESC_F_NEXT, d2);
	} else {
		set_desc(f, q, d0, CTRL_GPA, 2, VRING_DESC_F_NEXT, d2);
	}
	set_desc(f, q, d2, CTRL_GPA + 0x800, 1, VRING_DESC_F_WRITE, 0);
	make_available(f, q, d0, true);
	/* Linux spins on the used ring here. */
	if (!WAIT_FOR(used_pending(f, q) == 1, WAIT_MS))
		fail_msg("control command %u/%u got no answer", class, cmd);
	uint32_t id, used_len;
	take_used(f, q, &id, &used_len);
	assert_int_equal(id, d0);
	assert_int_equal(used_len, 1);
	return *host(f, CTRL_GPA + 0x800, 1);
}

static void test_ctrl_commands(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	uint8_t on = 1, off = 0;
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1),
			 VIRTIO_NET_OK);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &off, 1),
			 VIRTIO_NET_OK);
	/* Wrong length, and the commands of CTRL_RX_EXTRA (not offered). */
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, NULL, 0),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_RX, 2, &on, 1), VIRTIO_NET_ERR);

	/* MAC tables as Linux sends them: 1 unicast, 2 multicast. */
	uint8_t tables[4 + 6 + 4 + 12] = { 1, 0, 0, 0 };
	memcpy(tables + 4, GUEST_MAC, 6);
	tables[10] = 2;
	memset(tables + 14, 0x33, 12);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tables,
			      sizeof(tables)),
			 VIRTIO_NET_OK);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tables,
			      sizeof(tables) - 1),
			 VIRTIO_NET_ERR);
	tables[0] = 0xff;       /* 255 entries announced, 1 present */
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tables,
			      sizeof(tables)),
			 VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, PEER_MAC, 6),
			 VIRTIO_NET_OK);
	/* Unknown class and command. */
	assert_int_equal(ctrl(f, 77, 0, NULL, 0), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_VLAN, 0, &on, 1), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_ANNOUNCE, 5, NULL, 0), VIRTIO_NET_ERR);
	/* The device still works. */
	assert_false(rd32(f, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static uint16_t cfg_status(struct fixture *f)
{
	return (uint16_t)f->dev->ops->read(f->dev, R_CONFIG + VIRTIO_NET_CFG_STATUS, 2);
}

static void test_announce(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	ack_interrupts(f);
	uint32_t gen = rd32(f, R_CONFIG_GEN);
	unsigned before = raises(f);

	virtio_net_announce(f->t);
	assert_int_equal(cfg_status(f), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	assert_true(rd32(f, R_INT_STATUS) & VIRTIO_INT_CONFIG);
	assert_true(raises(f) > before);
	assert_int_not_equal(rd32(f, R_CONFIG_GEN), gen);
	ack_interrupts(f);

	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0),
			 VIRTIO_NET_OK);
	assert_int_equal(cfg_status(f), VIRTIO_NET_S_LINK_UP);
}

static void test_announce_needs_feature(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES & ~BIT(VIRTIO_NET_F_GUEST_ANNOUNCE));
	ack_interrupts(f);
	unsigned before = raises(f);
	virtio_net_announce(f->t);
	assert_int_equal(cfg_status(f), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(rd32(f, R_INT_STATUS), 0);
	assert_int_equal(raises(f), before);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0),
			 VIRTIO_NET_ERR);
}

/* ---- malformed chains ------------------------------------------------------------------ */

static bool needs_reset(struct fixture *f)
{
	return rd32(f, R_STATUS) & VIRTIO_STATUS_NEEDS_RESET;
}

static void test_malformed_tx(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	/* 8 bytes: shorter than the header. */
	uint16_t d = alloc_desc(f, VIRTIO_NET_TXQ);
	set_desc(f, VIRTIO_NET_TXQ, d, TX_GPA, 8, 0, 0);
	make_available(f, VIRTIO_NET_TXQ, d, true);
	assert_true(WAIT_FOR(needs_reset(f), WAIT_MS));
	assert_int_equal(used_idx(f, VIRTIO_NET_TXQ), 0);

	/* A reset brings it back. */
	drv_start(f, LINUX_FEATURES);
	assert_false(needs_reset(f));
	uint8_t frame[64];
	make_frame(frame, sizeof(frame), 9);
	tx_send(f, NULL, frame, sizeof(frame), 1, false);
	expect_on_wire(f, frame, sizeof(frame));
}

static void test_malformed_rx(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	/* A device-readable receive buffer. */
	uint16_t d = alloc_desc(f, VIRTIO_NET_RXQ);
	set_desc(f, VIRTIO_NET_RXQ, d, RXBUF_GPA(d), 1526, 0, 0);
	make_available(f, VIRTIO_NET_RXQ, d, true);
	uint8_t frame[64];
	make_frame(frame, sizeof(frame), 10);
	pkt_send(f, frame, sizeof(frame));
	assert_true(WAIT_FOR(needs_reset(f), WAIT_MS));
	assert_int_equal(used_idx(f, VIRTIO_NET_RXQ), 0);

	drv_start(f, LINUX_FEATURES);
	rx_post(f, 4, 1526);
	make_frame(frame, sizeof(frame), 11);
	pkt_send(f, frame, sizeof(frame));
	static struct rx_packet p;
	rx_take_packet(f, &p);
	assert_memory_equal(p.frame, frame, sizeof(frame));
}

/* ---- pause / resume ------------------------------------------------------------------------ */

static void test_pause_resume(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	virtio_mmio_pause(f->t);
	guest_ram_clear_dirty(&f->ram);

	/* Neither direction moves, and no guest page is written. */
	rx_post(f, 4, 1526);
	uint8_t in[80], out[90];
	make_frame(in, sizeof(in), 12);
	pkt_send(f, in, sizeof(in));
	make_frame(out, sizeof(out), 13);
	memcpy(out, PEER_MAC, 6);
	tx_send(f, NULL, out, sizeof(out), 1, false);
	guest_ram_clear_dirty(&f->ram);
	sleep_ms(QUIET_MS);
	assert_int_equal(used_idx(f, VIRTIO_NET_RXQ), 0);
	assert_int_equal(used_idx(f, VIRTIO_NET_TXQ), 0);
	for (uint64_t gpa = RAM_BASE; gpa < RAM_BASE + RAM_SIZE; gpa += GUEST_PAGE_SIZE)
		if (guest_ram_page_dirty(&f->ram, gpa))
			fail_msg("page 0x%llx written while paused", (unsigned long long)gpa);
	static uint8_t got[2048];
	assert_true(pkt_recv(f->pkt, got, sizeof(got), 0) < 0);

	/* Resume serves both, notifications that came while paused included. */
	virtio_mmio_resume(f->t);
	static struct rx_packet p;
	rx_take_packet(f, &p);
	assert_memory_equal(p.frame, in, sizeof(in));
	expect_on_wire(f, out, sizeof(out));
}

/* A packet waiting for more merged buffers across a pause: the buffers it
 * had taken are back in the ring while paused, and it arrives whole after. */
static void test_pause_with_partial_packet(void **state)
{
	struct fixture *f = fixture(state);
	set_mtu(f, 9000);
	drv_start(f, LINUX_FEATURES);
	rx_post(f, 3, 1526);
	static uint8_t big[9014];
	make_frame(big, sizeof(big), 14);
	pkt_send(f, big, sizeof(big));
	/* The device takes the three buffers (with EVENT_IDX it publishes
	 * how far it has read in avail_event) and waits for more. */
	assert_true(WAIT_FOR(avail_event(f, VIRTIO_NET_RXQ) == 3, WAIT_MS));
	sleep_ms(QUIET_MS);
	assert_int_equal(used_idx(f, VIRTIO_NET_RXQ), 0);
	virtio_mmio_pause(f->t);
	/* Paused: they are back in the ring. */
	assert_int_equal(virtio_queue(f->t, VIRTIO_NET_RXQ)->last_avail_idx, 0);
	assert_int_equal(used_idx(f, VIRTIO_NET_RXQ), 0);
	rx_post(f, 5, 1526);
	virtio_mmio_resume(f->t);
	static struct rx_packet p;
	rx_take_packet(f, &p);
	assert_int_equal(p.num_buffers, 6);
	assert_memory_equal(p.frame, big, sizeof(big));
}

/* ---- save / restore ---------------------------------------------------------------------------- */

static void save_dev(struct device *dev, struct state_writer *w)
{
	struct error err = { 0 };
	state_writer_init(w);
	if (dev->ops->save(dev, w, &err))
		fail_msg("save: %s", err.msg);
}

static int restore_dev(struct device *dev, const struct state_writer *w, struct error *err)
{
	struct state_reader r;
	int rc = state_reader_init(&r, w->buf, w->len, dev->id, NULL, 0, err);
	if (rc)
		return rc;
	return dev->ops->restore(dev, &r, err);
}

static void test_save_restore(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	uint8_t on = 1;
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1),
			 VIRTIO_NET_OK);
	virtio_net_announce(f->t);
	/* A packet read from the TAP but not delivered (no buffers yet). */
	uint8_t frame[150];
	make_frame(frame, sizeof(frame), 15);
	pkt_send(f, frame, sizeof(frame));
	sleep_ms(QUIET_MS);

	virtio_mmio_pause(f->t);
	struct state_writer a, b;
	save_dev(f->dev, &a);

	/* A fresh device (another TAP, same guest RAM) takes the state. */
	struct fixture *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	g->ram = f->ram;
	g->pkt = -1;
	struct error err = { 0 };
	if (make_device(g, "b", GUEST_MAC, &err))
		fail_msg("second device: %s", err.msg);
	virtio_mmio_pause(g->t);
	if (restore_dev(g->dev, &a, &err))
		fail_msg("restore: %s", err.msg);
	save_dev(g->dev, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	assert_int_equal(cfg_status(g), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);

	/* The new device carries on where the old one stopped (the old one
	 * and its TAP go away): the pending packet reaches the guest, the
	 * announce ack clears the bit. */
	destroy_device(f);
	memcpy(g->q, f->q, sizeof(g->q));
	g->features = f->features;
	virtio_mmio_resume(g->t);
	rx_post(g, 4, 1526);
	static struct rx_packet p;
	rx_take_packet(g, &p);
	assert_int_equal(p.frame_len, sizeof(frame));
	assert_memory_equal(p.frame, frame, sizeof(frame));
	assert_int_equal(ctrl(g, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0),
			 VIRTIO_NET_OK);
	assert_int_equal(cfg_status(g), VIRTIO_NET_S_LINK_UP);
	destroy_device(g);
	free(g);
	state_writer_free(&a);
	state_writer_free(&b);
}

static void test_restore_refuses_other_mac(void **state)
{
	struct fixture *f = fixture(state);
	drv_start(f, LINUX_FEATURES);
	virtio_mmio_pause(f->t);
	struct state_writer a;
	save_dev(f->dev, &a);
	virtio_mmio_resume(f->t);

	struct fixture g = { .pkt = -1, .ram = f->ram };
	const uint8_t other[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x57 };
	struct error err = { 0 };
	if (make_device(&g, "b", other, &err))
		fail_msg("second device: %s", err.msg);
	virtio_mmio_pause(g.t);
	assert_true(restore_dev(g.dev, &a, &err) < 0);
	if (!strstr(err.msg, "52:54:00:12:34:56") || !strstr(err.msg, "52:54:00:12:34:57"))
		fail_msg("message does not name both MACs: %s", err.msg);
	destroy_device(&g);
	state_writer_free(&a);
}

/* ---- creation errors and MAC helpers ---------------------------------------------------------- */

static void test_create_errors(void **state)
{
	if (!have_netns)
		fail_msg("this test needs root, a network namespace and /dev/net/tun (see above)");
	struct guest_ram ram;
	struct error err = { 0 };
	assert_int_equal(guest_ram_init(&ram, RAM_BASE, RAM_SIZE, &err), 0);
	struct irq_line irq = { 0 };
	char name[16];
	tap_name(name, sizeof(name), "z");
	assert_null(virtio_net_create("net0", MMIO_BASE, irq, &ram, name, false, GUEST_MAC, &err));
	char want[160];
	snprintf(want, sizeof(want),
		 "no TAP device %s: create it with `ip tuntap add %s mode tap` or pass create=on",
		 name, name);
	assert_string_equal(err.msg, want);
	const uint8_t multicast[6] = { 0x01, 0, 0x5e, 0, 0, 1 };
	assert_null(virtio_net_create("net0", MMIO_BASE, irq, &ram, name, true, multicast, &err));
	assert_non_null(strstr(err.msg, "not a unicast"));
	assert_int_equal(if_nametoindex(name), 0);
	guest_ram_destroy(&ram);
}

static void test_parse_mac(void **state)
{
	uint8_t mac[6];
	struct error err = { 0 };
	assert_int_equal(net_parse_mac("52:54:00:12:34:56", mac, &err), 0);
	assert_memory_equal(mac, GUEST_MAC, 6);
	assert_int_equal(net_parse_mac("02:AB:cd:Ef:00:ff", mac, &err), 0);
	const uint8_t want[6] = { 0x02, 0xab, 0xcd, 0xef, 0x00, 0xff };
	assert_memory_equal(mac, want, 6);

	static const char *const malformed[] = {
		"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52-54-00-12-34-56",
		"5254.0012.3456", "52:54:00:12:34:5g", "52:54:00:12:34:5", " 52:54:00:12:34:56",
		"52:54:00:12:34:56 ", "525:4:00:12:34:56", "52::54:00:12:34:5",
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		memset(mac, 0xaa, 6);
		if (net_parse_mac(malformed[i], mac, &err) != -EINVAL)
			fail_msg("\"%s\" was accepted", malformed[i]);
		assert_non_null(strstr(err.msg, "six hex pairs"));
		assert_int_equal(mac[0], 0xaa);         /* untouched */
	}
	assert_int_equal(net_parse_mac(NULL, mac, &err), -EINVAL);
	assert_int_equal(net_parse_mac("01:00:5e:00:00:01", mac, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "multicast"));
	assert_int_equal(net_parse_mac("ff:ff:ff:ff:ff:ff", mac, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "multicast"));
	assert_int_equal(net_parse_mac("00:00:00:00:00:00", mac, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "all zeros"));

	char text[18];
	net_format_mac(want, text);
	assert_string_equal(text, "02:ab:cd:ef:00:ff");
}

static void test_random_mac(void **state)
{
	uint8_t a[6], b[6];
	net_random_mac(a);
	net_random_mac(b);
	struct error err = { 0 };
	char text[18];
	for (int i = 0; i < 2; i++) {
		const uint8_t *m = i ? b : a;
		assert_int_equal(m[0] & 1, 0);          /* unicast */
		assert_int_equal(m[0] & 2, 2);          /* locally administered */
		net_format_mac(m, text);
		uint8_t back[6];
		assert_int_equal(net_parse_mac(text, back, &err), 0);
		assert_memory_equal(back, m, 6);
	}
	assert_memory_not_equal(a, b, 6);
}

/* ---- main ---------------------------------------------------------------------------------------- */

static void write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;         /* no IPv6 in this kernel: nothing to silence */
	if (write(fd, value, strlen(value)) < 0)
		fprintf(stderr, "test_virtio_net: %s: %s\n", path, strerror(errno));
	close(fd);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_virtio_net: not root: the tests that need a TAP will fail\n");
	} else if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_virtio_net: unshare(CLONE_NEWNET): %s: the tests that need a TAP will fail\n",
			strerror(errno));
	} else if (access("/dev/net/tun", R_OK | W_OK) < 0) {
		fprintf(stderr, "test_virtio_net: /dev/net/tun: %s: the tests that need a TAP will fail\n", strerror(errno));
	} else {
		/* In the new namespace only: no IPv6 autoconfiguration
		 * traffic on the TAPs, so every frame is one a test sent. */
		write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
		write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
		have_netns = true;
	}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_identity_and_config),
		T(test_rx_one_packet),
		T(test_rx_merged_large),
		T(test_rx_waits_for_buffers),
		T(test_rx_without_mrg),
		T(test_rx_gso),
		T(test_tx),
		T(test_tx_gso),
		T(test_plain_rings),
		T(test_tap_deleted),
		T(test_ctrl_commands),
		T(test_announce),
		T(test_announce_needs_feature),
		T(test_malformed_tx),
		T(test_malformed_rx),
		T(test_pause_resume),
		T(test_pause_with_partial_packet),
		T(test_save_restore),
		T(test_restore_refuses_other_mac),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_parse_mac),
		cmocka_unit_test(test_random_mac),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
