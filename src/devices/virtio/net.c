/* net.c: the virtio-net device backend (virtio 1.2, section 5.1) on a TAP:
 * feature bits (5.1.3) and their dependencies (5.1.3.1), config space
 * (5.1.4), packet transmission and reception with the 12-byte header
 * (5.1.6, 5.1.6.2, 5.1.6.3, 5.1.6.4), mergeable receive buffers
 * (5.1.6.3.2, 5.1.6.4.2), and the control queue (5.1.6.5) with RX mode,
 * MAC table and guest announcement commands.
 *
 * Packets pass through unchanged: the TAP is opened with a 12-byte vnet
 * header, which is the virtio 1.x struct virtio_net_hdr. TX hands the
 * guest's buffers to writev() as they are; RX reads one packet into a
 * bounce buffer, then copies it into one receive chain (or several with
 * MRG_RXBUF) through vq_chain_write(), which marks the pages dirty.
 *
 * Threads and locks. One I/O thread per device polls the TAP and an
 * eventfd. notify() runs on a hart thread and only writes the eventfd.
 * n->lock guards the life-cycle flags (active, paused, stop, busy) and the
 * RX mode; it is a leaf lock: nobody calls the transport or does I/O with
 * it held. The thread works on the queues only with `busy` set; pause(),
 * reset() and destroy() clear `active`/set `paused` and wait until it is
 * not busy, so after they return it writes no guest memory. Like blk.c,
 * they must not be called with the transport lock held, because the
 * thread calls virtio_notify_used() while busy. The config status word is
 * an atomic so config_read (under the transport lock) never takes n->lock.
 *
 * Back-pressure instead of loss: a packet is read from the TAP only when
 * the previous one has been delivered. When the receive queue runs dry the
 * packet waits in the bounce buffer, the TAP is polled without POLLIN (the
 * kernel keeps queueing, or drops by its own queue limit), and the driver's
 * notification for new buffers resumes delivery. A packet that needs
 * several merged buffers keeps the chains popped so far until it has
 * enough; pause() gives them back to the ring (by rewinding the queue's
 * avail index) so a snapshot never holds half-used buffers, and the packet
 * itself is part of the saved state. */
#include "devices/virtio/net.h"
#include "devices/virtio/net_hold.h"

#include <endian.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "backends/tap.h"
#include "state/state.h"
#include "util/le.h"
#include "util/log.h"

#define ETH_HLEN 14
#define RX_BUF_SIZE (VIRTIO_NET_HDR_LEN + VIRTIO_NET_MAX_FRAME)
/* Per round of the I/O thread: bounds how long pause() waits and how long
 * one direction can starve the other. */
#define RX_BATCH 64
#define TX_BATCH 128
#define CTRL_BATCH 64

/* Saved state fields (see net_save); never reuse an id. */
enum {
	F_VERSION = 0,
	F_MAC = 1,
	F_STATUS = 2,
	F_PROMISC = 3,
	F_ALLMULTI = 4,
	F_RX_PENDING = 5,       /* a packet read from the TAP, not yet delivered */
};
#define NET_STATE_VERSION 1u

#define BIT(n) (1ull << (n))

/* What the device offers; each is implemented end to end (see net_features).
 * The transport adds VERSION_1, EVENT_IDX and INDIRECT_DESC. */
#define NET_FEATURES                                                                   \
	(BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_MAC) | \
	 BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6) |                  \
	 BIT(VIRTIO_NET_F_GUEST_ECN) | BIT(VIRTIO_NET_F_HOST_TSO4) |                    \
	 BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) |                     \
	 BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_NET_F_STATUS) |                       \
	 BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_CTRL_RX) |                        \
	 BIT(VIRTIO_NET_F_GUEST_ANNOUNCE))

struct net {
	struct virtio_mmio *t;          /* set once virtio_mmio_create returned */
	struct guest_ram *ram;
	struct tap tap;
	char id[64];
	uint8_t mac[6];
	bool mac_chosen_randomly;       /* no MAC given: a restore adopts the saved one */
	int wake_fd;                    /* eventfd: notify() and life-cycle changes */
	struct net *next;               /* in the registry */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t idle;            /* pause/reset/save wait here for !busy */
	/* under lock */
	bool stop, active, paused, busy;
	bool promisc, allmulti;         /* RX mode set by the driver (5.1.6.5.1) */

	uint16_t status;                /* VIRTIO_NET_S_*, atomic */
	/* frame bytes received and sent, for the host agent's load figures
	 * (virtio_net_io); relaxed atomics */
	uint64_t rx_bytes, tx_bytes;
	struct net_hold hold;           /* replication's synchronous mode */

	/* The I/O thread's while busy; the life-cycle calls' while it is idle. */
	uint64_t features;              /* negotiated, from activate */
	struct virtq *rxq, *txq, *ctrlq;
	bool broken;                    /* we set NEEDS_RESET; serve nothing until reset */
	bool tap_gone;                  /* the TAP failed (deleted): never polled again;
					 * the I/O thread's alone */
	bool tx_blocked;                /* the TAP said EAGAIN: wait for POLLOUT */
	bool rx_notify;                 /* out of receive buffers: notifications on */
	uint8_t *rx_buf;                /* the packet being delivered (header + frame) */
	size_t rx_len;                  /* its length; 0 = none */
	size_t rx_off;                  /* bytes of it placed in popped chains */
	unsigned rx_held;               /* chains popped for it, not yet pushed */
	unsigned rx_pushed;             /* chains pushed in this round */
	uint64_t rx_dropped, tx_dropped;
	struct vq_used rx_pieces[VQ_MAX_SIZE];
	struct vq_chain rx_first;       /* the chain that gets the header */
	struct vq_chain chain;          /* scratch */
	struct iovec iov[VQ_MAX_CHAIN];
};

/* ---- registry: from a transport back to its backend --------------------- */

/* virtio.h has no accessor for a transport's backend; virtio_net_announce
 * needs one, so virtio-net keeps its own list. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct net *registry;

static void registry_add(struct net *n)
{
	pthread_mutex_lock(&registry_lock);
	n->next = registry;
	registry = n;
	pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(struct net *n)
{
	pthread_mutex_lock(&registry_lock);
	for (struct net **p = &registry; *p; p = &(*p)->next) {
		if (*p == n) {
			*p = n->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

static struct net *registry_find(const struct virtio_mmio *t)
{
	pthread_mutex_lock(&registry_lock);
	struct net *n = registry;
	while (n && n->t != t)
		n = n->next;
	pthread_mutex_unlock(&registry_lock);
	return n;
}

/* ---- helpers -------------------------------------------------------------- */

static bool has(const struct net *n, unsigned bit)
{
	return (n->features >> bit) & 1;
}

/* Repeated per-packet problems: the 1st, 2nd, 4th, 8th... are logged. */
static bool worth_logging(uint64_t count)
{
	return (count & (count - 1)) == 0;
}

static void kick(struct net *n)
{
	uint64_t one = 1;
	/* Fails only when the counter is near overflow, and then the thread
	 * has a wake-up pending anyway. */
	if (write(n->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: cannot wake the I/O thread: %s", n->id, strerror(errno));
}

static void wait_idle(struct net *n)
{
	/* The I/O thread itself (via a transport callback) must not wait for
	 * itself; it is at a safe point whenever it calls out. */
	if (n->thread_started && pthread_equal(pthread_self(), n->thread))
		return;
	while (n->busy)
		pthread_cond_wait(&n->idle, &n->lock);
}

static void set_broken(struct net *n, const char *why)
{
	n->broken = true;
	virtio_set_needs_reset(n->t, why);
}

void net_format_mac(const uint8_t mac[6], char buf[18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

static bool mac_is_unicast(const uint8_t mac[6])
{
	static const uint8_t zero[6];
	return !(mac[0] & 1) && memcmp(mac, zero, 6) != 0;
}

/* ---- receive ---------------------------------------------------------------- */

/* Gives back the chains popped for the pending packet, as if never taken:
 * no used entry was written for them, and the driver cannot reuse their
 * avail ring slots while they are outstanding. */
static void rx_unpop_held(struct net *n)
{
	vq_unpop(n->rxq, (uint16_t)n->rx_held);
	n->rx_held = 0;
	n->rx_off = 0;
}

/* Publishes the chains of one packet as used, all at once: with merged
 * buffers the driver reads num_buffers from the first and then expects the
 * others to be in the used ring already (Linux drops the packet as
 * "buffers missing" otherwise). */
static void rx_push_all(struct net *n)
{
	vq_push_many(n->rxq, n->rx_pieces, n->rx_held);
	n->rx_pushed += n->rx_held;
	n->rx_held = 0;
	n->rx_off = 0;
	n->rx_len = 0;
}

static void rx_drop(struct net *n, const char *why)
{
	n->rx_dropped++;
	if (worth_logging(n->rx_dropped))
		log_warn("%s: dropped a received packet of %zu bytes: %s (%llu dropped so far)",
			 n->id, n->rx_len > VIRTIO_NET_HDR_LEN ? n->rx_len - VIRTIO_NET_HDR_LEN : 0,
			 why, (unsigned long long)n->rx_dropped);
	n->rx_len = 0;
}

/* Places the pending packet into receive chains. 1 = done (delivered or
 * dropped), 0 = out of buffers (what was popped is kept), -1 = broken. */
static int rx_deliver(struct net *n)
{
	struct virtq *q = n->rxq;
	bool mrg = has(n, VIRTIO_NET_F_MRG_RXBUF);
	struct error err = { 0 };

	while (n->rx_off < n->rx_len) {
		if (n->rx_held == q->num) {
			/* Every buffer of the queue is ours and the packet still
			 * does not fit: the driver's buffers are too small. */
			rx_unpop_held(n);
			rx_drop(n, "larger than all receive buffers together");
			return 1;
		}
		struct vq_chain *c = n->rx_held ? &n->chain : &n->rx_first;
		int rc = vq_pop(q, c, &err);
		if (rc < 0) {
			set_broken(n, err.msg);
			return -1;
		}
		if (rc == 0)
			return 0;
		if (c->readable || c->writable < VIRTIO_NET_HDR_LEN) {
			char why[160];
			snprintf(why, sizeof(why),
				 "receive chain %u has %u device-readable and %u writable bytes; it must be writable only and hold the %d-byte header",
				 c->head, c->readable, c->writable, VIRTIO_NET_HDR_LEN);
			set_broken(n, why);
			return -1;
		}
		if (!mrg && c->writable < n->rx_len) {
			/* 5.1.6.3.1: without merged buffers one chain must
			 * hold the packet. Hand the chain back empty (Linux
			 * counts a length error and reposts it). */
			vq_push(q, c->head, 0);
			n->rx_pushed++;
			rx_drop(n, "larger than the receive buffer");
			return 1;
		}
		size_t take = n->rx_len - n->rx_off;
		if (take > c->writable)
			take = c->writable;
		/* The first chain is written last, once num_buffers is known. */
		if (n->rx_held)
			vq_chain_write(n->ram, c, 0, n->rx_buf + n->rx_off, take);
		n->rx_pieces[n->rx_held++] = (struct vq_used){ c->head, (uint32_t)take };
		n->rx_off += take;
	}
	put_le16(n->rx_buf + VIRTIO_NET_HDR_NUM_BUFFERS, (uint16_t)n->rx_held);
	vq_chain_write(n->ram, &n->rx_first, 0, n->rx_buf, n->rx_pieces[0].written);
	__atomic_fetch_add(&n->rx_bytes, n->rx_len - VIRTIO_NET_HDR_LEN, __ATOMIC_RELAXED);
	rx_push_all(n);
	return 1;
}

/* Checks a packet just read from the TAP against what the driver
 * negotiated; the TAP's offloads follow the features, so a mismatch means
 * a packet queued before a renegotiation. */
static bool rx_accept(struct net *n)
{
	uint8_t *h = n->rx_buf;
	if (n->rx_len < VIRTIO_NET_HDR_LEN + ETH_HLEN) {
		rx_drop(n, "shorter than an Ethernet header");
		return false;
	}
	if (!has(n, VIRTIO_NET_F_GUEST_CSUM)) {
		if (h[VIRTIO_NET_HDR_FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
			rx_drop(n, "partial checksum, but the driver did not accept GUEST_CSUM");
			return false;
		}
		/* 5.1.6.4.1: flags are 0 without GUEST_CSUM. */
		h[VIRTIO_NET_HDR_FLAGS] = 0;
	}
	uint8_t gso = h[VIRTIO_NET_HDR_GSO_TYPE];
	if (gso != VIRTIO_NET_HDR_GSO_NONE) {
		uint8_t type = gso & ~VIRTIO_NET_HDR_GSO_ECN;
		bool ok = (type == VIRTIO_NET_HDR_GSO_TCPV4 && has(n, VIRTIO_NET_F_GUEST_TSO4)) ||
			  (type == VIRTIO_NET_HDR_GSO_TCPV6 && has(n, VIRTIO_NET_F_GUEST_TSO6));
		if (gso & VIRTIO_NET_HDR_GSO_ECN)
			ok = ok && has(n, VIRTIO_NET_F_GUEST_ECN);
		if (!ok) {
			rx_drop(n, "a GSO type the driver did not accept");
			return false;
		}
	}
	return true;
}

/* The TAP cannot be read any more (deleted under us): stop polling it,
 * or poll() would report it forever. Transmitted packets are still taken
 * from the guest and dropped, so its driver does not stall. */
static void tap_failed(struct net *n, int err)
{
	bool first = !n->tap_gone;
	n->tap_gone = true;
	if (first)
		log_error("%s: TAP %s failed (%s; deleted?): the guest's network is cut off", n->id,
			  n->tap.name, strerror(err));
}

/* Returns true if it stopped at the batch limit with work left. */
static bool serve_rx(struct net *n)
{
	struct virtq *q = n->rxq;
	if (!q || !q->ready)
		return false;
	if (n->rx_notify) {
		/* We were waiting for buffers: while we have some, the
		 * driver need not tell us about more. */
		n->rx_notify = false;
		vq_enable_notify(q, false);
	}
	unsigned packets = 0;
	for (;;) {
		if (packets == RX_BATCH)
			break;
		if (!n->rx_len) {
			if (n->tap_gone)
				break;
			struct iovec iov = { n->rx_buf, RX_BUF_SIZE };
			ssize_t r = tap_readv(&n->tap, &iov, 1);
			if (r == -EAGAIN)
				break;
			packets++;
			if (r == -EFAULT || r == -EINVAL) {
				/* Larger than our buffer: the kernel dropped it. */
				n->rx_dropped++;
				if (worth_logging(n->rx_dropped))
					log_warn("%s: TAP %s had a packet larger than %d bytes (%llu dropped so far)",
						 n->id, n->tap.name, RX_BUF_SIZE,
						 (unsigned long long)n->rx_dropped);
				continue;
			}
			if (r < 0) {
				/* EBADFD: the interface was deleted. Reading
				 * again would fail the same way, forever. */
				tap_failed(n, (int)-r);
				break;
			}
			n->rx_len = (size_t)r;
			if (!rx_accept(n))
				continue;
		}
		int rc = rx_deliver(n);
		if (rc < 0)
			break;
		if (rc == 0) {
			/* Out of buffers: ask for a notification, and look once
			 * more in case the driver added some meanwhile. */
			if (vq_enable_notify(q, true)) {
				vq_enable_notify(q, false);
				continue;
			}
			n->rx_notify = true;
			break;
		}
	}
	if (n->rx_pushed) {
		n->rx_pushed = 0;
		virtio_notify_used(n->t, VIRTIO_NET_RXQ);
	}
	return packets == RX_BATCH;
}

/* ---- transmit --------------------------------------------------------------- */

static bool serve_tx(struct net *n)
{
	struct virtq *q = n->txq;
	if (!q || !q->ready || n->tx_blocked)
		return false;
	struct error err = { 0 };
	unsigned pushed = 0;

	vq_enable_notify(q, false);
	while (pushed < TX_BATCH) {
		struct vq_chain *c = &n->chain;
		int rc = vq_pop(q, c, &err);
		if (rc < 0) {
			set_broken(n, err.msg);
			break;
		}
		if (rc == 0) {
			if (vq_enable_notify(q, true)) {
				vq_enable_notify(q, false);
				continue;
			}
			break;
		}
		if (c->readable < VIRTIO_NET_HDR_LEN) {
			char why[96];
			snprintf(why, sizeof(why),
				 "transmit chain %u has %u bytes, less than the %d-byte header",
				 c->head, c->readable, VIRTIO_NET_HDR_LEN);
			set_broken(n, why);
			break;
		}
		/* Readable buffers come first in a chain (checked by vq_pop);
		 * writable ones in a transmit chain are ignored. */
		int cnt = 0;
		for (unsigned i = 0; i < c->nsegs && !c->segs[i].write; i++)
			n->iov[cnt++] = (struct iovec){ c->segs[i].host, c->segs[i].len };
		/* Held (synchronous replication): to the TAP once its epoch is
		 * safe on the standby; to the guest it is sent. */
		ssize_t w = net_hold_take(&n->hold, n->iov, cnt) ? (ssize_t)c->readable :
			    tap_writev(&n->tap, n->iov, cnt);
		if (w == -EAGAIN) {
			/* Take it again when the TAP has room. */
			vq_unpop(q, 1);
			n->tx_blocked = true;
			break;
		}
		if (w >= 0)
			__atomic_fetch_add(&n->tx_bytes, c->readable - VIRTIO_NET_HDR_LEN,
					   __ATOMIC_RELAXED);
		if (w < 0) {
			n->tx_dropped++;
			if (worth_logging(n->tx_dropped))
				log_warn("%s: TAP %s refused a packet of %u bytes: %s (%llu dropped so far)",
					 n->id, n->tap.name, c->readable - VIRTIO_NET_HDR_LEN,
					 strerror((int)-w), (unsigned long long)n->tx_dropped);
		}
		vq_push(q, c->head, 0);
		pushed++;
	}
	if (pushed)
		virtio_notify_used(n->t, VIRTIO_NET_TXQ);
	return pushed == TX_BATCH;
}

/* ---- control queue (5.1.6.5) ------------------------------------------------ */

static uint8_t ctrl_rx(struct net *n, const struct vq_chain *c, uint8_t cmd, uint32_t len)
{
	uint8_t on;
	if (!has(n, VIRTIO_NET_F_CTRL_RX) || len != 1 || vq_chain_read(c, 2, &on, 1) != 1)
		return VIRTIO_NET_ERR;
	/* tern does not filter: the TAP delivers what the host sends it and
	 * the guest's stack drops what is not for it. The mode is recorded
	 * (and migrated) so the device reports what the driver set. */
	pthread_mutex_lock(&n->lock);
	uint8_t ack = VIRTIO_NET_OK;
	if (cmd == VIRTIO_NET_CTRL_RX_PROMISC)
		n->promisc = on;
	else if (cmd == VIRTIO_NET_CTRL_RX_ALLMULTI)
		n->allmulti = on;
	else
		ack = VIRTIO_NET_ERR;   /* the others need CTRL_RX_EXTRA */
	pthread_mutex_unlock(&n->lock);
	return ack;
}

/* VIRTIO_NET_CTRL_MAC_TABLE_SET: two tables, each le32 entries + 6 bytes
 * per entry, and nothing after them. */
static bool mac_tables_ok(const struct vq_chain *c, uint32_t len)
{
	uint64_t at = 0;
	for (int table = 0; table < 2; table++) {
		uint8_t raw[4];
		if (at + 4 > len || vq_chain_read(c, 2 + at, raw, 4) != 4)
			return false;
		at += 4 + 6ull * get_le32(raw);
	}
	return at == len;
}

static uint8_t ctrl_mac(struct net *n, const struct vq_chain *c, uint8_t cmd, uint32_t len)
{
	if (cmd == VIRTIO_NET_CTRL_MAC_TABLE_SET)
		return has(n, VIRTIO_NET_F_CTRL_RX) && mac_tables_ok(c, len) ? VIRTIO_NET_OK
									    : VIRTIO_NET_ERR;
	if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
		/* Accepted: without filtering, frames for any address the
		 * guest chooses reach it. The config space keeps the
		 * configured MAC, which is what migration checks. */
		uint8_t mac[6];
		return len == 6 && vq_chain_read(c, 2, mac, 6) == 6 && mac_is_unicast(mac)
			       ? VIRTIO_NET_OK
			       : VIRTIO_NET_ERR;
	}
	return VIRTIO_NET_ERR;
}

static uint8_t ctrl_command(struct net *n, const struct vq_chain *c, uint8_t class, uint8_t cmd)
{
	uint32_t len = c->readable - 2;
	switch (class) {
	case VIRTIO_NET_CTRL_RX:
		return ctrl_rx(n, c, cmd, len);
	case VIRTIO_NET_CTRL_MAC:
		return ctrl_mac(n, c, cmd, len);
	case VIRTIO_NET_CTRL_ANNOUNCE:
		if (!has(n, VIRTIO_NET_F_GUEST_ANNOUNCE) || cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK)
			return VIRTIO_NET_ERR;
		/* 5.1.6.5.4: the driver has announced itself. */
		__atomic_fetch_and(&n->status, (uint16_t)~VIRTIO_NET_S_ANNOUNCE, __ATOMIC_SEQ_CST);
		return VIRTIO_NET_OK;
	default:
		return VIRTIO_NET_ERR;
	}
}

static bool serve_ctrl(struct net *n)
{
	struct virtq *q = n->ctrlq;
	if (!q || !q->ready)
		return false;
	struct error err = { 0 };
	unsigned done = 0;
	/* Notifications stay enabled: commands are rare and Linux waits for
	 * each answer. */
	while (done < CTRL_BATCH) {
		struct vq_chain *c = &n->chain;
		int rc = vq_pop(q, c, &err);
		if (rc < 0) {
			set_broken(n, err.msg);
			break;
		}
		if (rc == 0)
			break;
		if (c->readable < 2 || c->writable < 1) {
			char why[160];
			snprintf(why, sizeof(why),
				 "control chain %u has %u readable and %u writable bytes; it needs class, command and an ack byte",
				 c->head, c->readable, c->writable);
			set_broken(n, why);
			break;
		}
		uint8_t hdr[2];
		vq_chain_read(c, 0, hdr, 2);
		uint8_t ack = ctrl_command(n, c, hdr[0], hdr[1]);
		/* The ack is the first device-writable byte. */
		vq_chain_write(n->ram, c, 0, &ack, 1);
		vq_push(q, c->head, 1);
		done++;
	}
	if (done)
		virtio_notify_used(n->t, VIRTIO_NET_CTRLQ);
	return done == CTRL_BATCH;
}

/* ---- the I/O thread ------------------------------------------------------------ */

/* One round over the queues; true if some queue has work left. */
static bool serve(struct net *n, bool tap_writable)
{
	if (n->broken || virtio_is_broken(n->t))
		return false;
	if (tap_writable)
		n->tx_blocked = false;
	bool more = serve_ctrl(n);
	if (!n->broken)
		more |= serve_tx(n);
	if (!n->broken)
		more |= serve_rx(n);
	return more && !n->broken;
}

static void *io_main(void *arg)
{
	struct net *n = arg;
	bool more = true, tap_writable = false;

	for (;;) {
		pthread_mutex_lock(&n->lock);
		n->busy = false;
		pthread_cond_broadcast(&n->idle);
		if (n->stop) {
			pthread_mutex_unlock(&n->lock);
			break;
		}
		bool run = n->active && !n->paused;
		if (run && more) {
			n->busy = true;
			pthread_mutex_unlock(&n->lock);
			more = serve(n, tap_writable);
			tap_writable = false;
			continue;
		}
		/* About to sleep: what to wait for is decided under the lock,
		 * since the life-cycle calls change these fields. */
		struct pollfd p[2] = {
			{ .fd = n->wake_fd, .events = POLLIN },
			{ .fd = -1 },
		};
		if (run && !n->broken && !n->tap_gone) {
			short ev = 0;
			if (!n->rx_len && n->rxq && n->rxq->ready)
				ev |= POLLIN;
			if (n->tx_blocked)
				ev |= POLLOUT;
			if (ev) {
				p[1].fd = n->tap.fd;
				p[1].events = ev;
			}
		}
		pthread_mutex_unlock(&n->lock);

		if (poll(p, 2, -1) < 0) {
			if (errno != EINTR) {
				log_error("%s: poll: %s", n->id, strerror(errno));
				/* Not a busy loop if it persists. */
				nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
			}
			continue;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;
			if (read(n->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_warn("%s: reading the wake-up eventfd: %s", n->id, strerror(errno));
		}
		if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
			tap_failed(n, EBADFD);
		tap_writable = p[1].revents & POLLOUT;
		more = true;
	}
	return NULL;
}

/* ---- backend operations --------------------------------------------------------- */

static uint64_t net_features(void *be)
{
	/* CSUM, HOST_TSO4/6 and HOST_ECN: the TAP takes partial checksums and
	 * GSO packets on write as they are. GUEST_CSUM, GUEST_TSO4/6 and
	 * GUEST_ECN: the TAP's offloads are set from them at activate, so it
	 * hands us only what the driver accepts. Not offered: GUEST_UFO and
	 * HOST_UFO (a TAP no longer produces UFO packets, and Linux drivers
	 * no longer send them), MTU, MQ, CTRL_VLAN, CTRL_RX_EXTRA,
	 * CTRL_MAC_ADDR and CTRL_GUEST_OFFLOADS. */
	return NET_FEATURES;
}

static void net_config_read(void *be, uint32_t offset, void *buf, uint32_t len)
{
	struct net *n = be;
	uint8_t cfg[VIRTIO_NET_CFG_SIZE];
	memcpy(cfg + VIRTIO_NET_CFG_MAC, n->mac, 6);
	put_le16(cfg + VIRTIO_NET_CFG_STATUS, __atomic_load_n(&n->status, __ATOMIC_SEQ_CST));
	put_le16(cfg + VIRTIO_NET_CFG_MAX_VQ_PAIRS, 1);
	memcpy(buf, cfg + offset, len);
}

static void net_config_write(void *be, uint32_t offset, const void *buf, uint32_t len)
{
	/* 5.1.4.2: a VERSION_1 driver does not write the config space (the
	 * legacy way to set the MAC); ignored. */
}

/* 5.1.3.1: features that require others. */
static int check_dependencies(struct net *n, uint64_t f, struct error *err)
{
	static const struct {
		unsigned bit;
		uint64_t needs_any;
	} rules[] = {
		{ VIRTIO_NET_F_GUEST_TSO4, BIT(VIRTIO_NET_F_GUEST_CSUM) },
		{ VIRTIO_NET_F_GUEST_TSO6, BIT(VIRTIO_NET_F_GUEST_CSUM) },
		{ VIRTIO_NET_F_GUEST_ECN,
		  BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6) },
		{ VIRTIO_NET_F_HOST_TSO4, BIT(VIRTIO_NET_F_CSUM) },
		{ VIRTIO_NET_F_HOST_TSO6, BIT(VIRTIO_NET_F_CSUM) },
		{ VIRTIO_NET_F_HOST_ECN, BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6) },
		{ VIRTIO_NET_F_CTRL_RX, BIT(VIRTIO_NET_F_CTRL_VQ) },
		{ VIRTIO_NET_F_GUEST_ANNOUNCE, BIT(VIRTIO_NET_F_CTRL_VQ) },
	};
	if (!(f & BIT(VIRTIO_F_VERSION_1)))
		return error_set(err, EINVAL, "%s: the driver did not accept VIRTIO_F_VERSION_1",
				 n->id);
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if ((f & BIT(rules[i].bit)) && !(f & rules[i].needs_any))
			return error_set(err, EINVAL,
					 "%s: the driver accepted feature %u without the feature(s) it depends on (0x%llx)",
					 n->id, rules[i].bit, (unsigned long long)rules[i].needs_any);
	return 0;
}

static int net_activate(void *be, struct error *err)
{
	struct net *n = be;
	uint64_t f = virtio_driver_features(n->t);
	int rc = check_dependencies(n, f, err);
	if (rc)
		return rc;
	unsigned offload = 0;
	if (f & BIT(VIRTIO_NET_F_GUEST_CSUM))
		offload |= TUN_F_CSUM;
	if (f & BIT(VIRTIO_NET_F_GUEST_TSO4))
		offload |= TUN_F_TSO4;
	if (f & BIT(VIRTIO_NET_F_GUEST_TSO6))
		offload |= TUN_F_TSO6;
	if (f & BIT(VIRTIO_NET_F_GUEST_ECN))
		offload |= TUN_F_TSO_ECN;
	if ((rc = tap_set_offload(&n->tap, offload, err)))
		return error_wrap(err, "%s", n->id);

	pthread_mutex_lock(&n->lock);
	wait_idle(n);
	n->features = f;
	n->rxq = virtio_queue(n->t, VIRTIO_NET_RXQ);
	n->txq = virtio_queue(n->t, VIRTIO_NET_TXQ);
	n->ctrlq = (f & BIT(VIRTIO_NET_F_CTRL_VQ)) ? virtio_queue(n->t, VIRTIO_NET_CTRLQ) : NULL;
	n->broken = false;
	n->tx_blocked = false;
	n->rx_notify = false;
	n->rx_held = 0;
	n->rx_off = 0;
	n->active = true;
	pthread_mutex_unlock(&n->lock);
	/* Buffers and packets that arrived before DRIVER_OK are served now. */
	kick(n);
	return 0;
}

static void net_reset(void *be)
{
	struct net *n = be;
	pthread_mutex_lock(&n->lock);
	n->active = false;
	kick(n);
	wait_idle(n);
	/* 5.1.6: after reset nothing of the previous driver's session is
	 * kept; a packet read but not delivered is dropped with it. */
	n->features = 0;
	n->rxq = n->txq = n->ctrlq = NULL;
	n->broken = false;
	n->tx_blocked = false;
	n->rx_notify = false;
	n->rx_len = n->rx_off = 0;
	n->rx_held = 0;
	n->promisc = true;
	n->allmulti = false;
	__atomic_store_n(&n->status, VIRTIO_NET_S_LINK_UP, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&n->lock);
}

static void net_notify(void *be, unsigned queue)
{
	kick(be);
}

static void net_pause(void *be)
{
	struct net *n = be;
	pthread_mutex_lock(&n->lock);
	n->paused = true;
	kick(n);
	wait_idle(n);
	/* Half-placed packet: its buffers go back to the ring so the saved
	 * queue has them as available; the packet stays in rx_buf (and in
	 * the saved state) and is placed again after resume. */
	if (n->rx_held)
		rx_unpop_held(n);
	pthread_mutex_unlock(&n->lock);
}

static void net_resume(void *be)
{
	struct net *n = be;
	pthread_mutex_lock(&n->lock);
	n->paused = false;
	pthread_mutex_unlock(&n->lock);
	/* Notifications that came while paused only left the eventfd set;
	 * the thread re-checks every queue and the TAP anyway. */
	kick(n);
}

static int net_save(void *be, struct state_writer *w, struct error *err)
{
	struct net *n = be;
	pthread_mutex_lock(&n->lock);
	wait_idle(n);
	state_put_u32(w, F_VERSION, NET_STATE_VERSION);
	state_put_bytes(w, F_MAC, n->mac, 6);
	state_put_u16(w, F_STATUS, __atomic_load_n(&n->status, __ATOMIC_SEQ_CST));
	state_put_bool(w, F_PROMISC, n->promisc);
	state_put_bool(w, F_ALLMULTI, n->allmulti);
	if (n->rx_len)
		state_put_bytes(w, F_RX_PENDING, n->rx_buf, n->rx_len);
	pthread_mutex_unlock(&n->lock);
	return state_writer_status(w, err);
}

static int net_restore(void *be, const struct state_reader *in, struct error *err)
{
	struct net *n = be;
	static const uint16_t known[] = {
		F_VERSION, F_MAC, F_STATUS, F_PROMISC, F_ALLMULTI, F_RX_PENDING,
	};
	struct state_reader r;
	const char *what = in->what ? in->what : n->id;
	/* Re-read with our own list of known ids (the caller cannot know
	 * which required fields a virtio-net record may carry). */
	int rc = state_reader_init(&r, in->data, in->len, what, known,
				   sizeof(known) / sizeof(known[0]), err);
	if (rc)
		return rc;
	uint32_t version;
	if ((rc = state_get_u32(&r, F_VERSION, &version, err)))
		return rc;
	if (version != NET_STATE_VERSION)
		return error_set(err, EINVAL, "%s: virtio-net state version %u is not %u", what,
				 version, NET_STATE_VERSION);
	uint8_t mac[6];
	if ((rc = state_get_bytes(&r, F_MAC, mac, 6, err)))
		return rc;
	if (!mac_is_unicast(mac))
		return error_set(err, EINVAL, "%s: the saved MAC is not a unicast address", what);
	/* A MAC nobody chose (none on the command line) follows the guest. */
	if (memcmp(mac, n->mac, 6) != 0 && !n->mac_chosen_randomly) {
		char saved[18], mine[18];
		net_format_mac(mac, saved);
		net_format_mac(n->mac, mine);
		return error_set(err, EINVAL,
				 "%s: the saved guest has MAC %s but this device was configured with MAC %s: configure it with mac=%s",
				 what, saved, mine, saved);
	}
	uint16_t status = VIRTIO_NET_S_LINK_UP;
	bool promisc = true, allmulti = false;
	const void *pending = NULL;
	size_t pending_len = 0;
	if (state_has(&r, F_STATUS) && (rc = state_get_u16(&r, F_STATUS, &status, err)))
		return rc;
	if (status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE))
		return error_set(err, EINVAL, "%s: virtio-net status 0x%x has unknown bits", what,
				 status);
	if (state_has(&r, F_PROMISC) && (rc = state_get_bool(&r, F_PROMISC, &promisc, err)))
		return rc;
	if (state_has(&r, F_ALLMULTI) && (rc = state_get_bool(&r, F_ALLMULTI, &allmulti, err)))
		return rc;
	if (state_has(&r, F_RX_PENDING)) {
		if ((rc = state_get_blob(&r, F_RX_PENDING, &pending, &pending_len, err)))
			return rc;
		if (pending_len < VIRTIO_NET_HDR_LEN + ETH_HLEN || pending_len > RX_BUF_SIZE)
			return error_set(err, EINVAL,
					 "%s: pending received packet of %zu bytes is out of range",
					 what, pending_len);
	}

	pthread_mutex_lock(&n->lock);
	wait_idle(n);
	/* The link is always up: the saved bit is not needed for that. */
	__atomic_store_n(&n->status, (uint16_t)(status | VIRTIO_NET_S_LINK_UP), __ATOMIC_SEQ_CST);
	memcpy(n->mac, mac, 6);
	n->promisc = promisc;
	n->allmulti = allmulti;
	n->rx_held = 0;
	n->rx_off = 0;
	n->rx_len = pending_len;
	if (pending_len)
		memcpy(n->rx_buf, pending, pending_len);
	pthread_mutex_unlock(&n->lock);
	return 0;
}

static void net_free(struct net *n)
{
	if (n->thread_started) {
		pthread_mutex_lock(&n->lock);
		n->stop = true;
		pthread_mutex_unlock(&n->lock);
		kick(n);
		pthread_join(n->thread, NULL);
	}
	net_hold_destroy(&n->hold);
	tap_close(&n->tap);
	if (n->wake_fd >= 0)
		close(n->wake_fd);
	pthread_cond_destroy(&n->idle);
	pthread_mutex_destroy(&n->lock);
	free(n->rx_buf);
	free(n);
}

static void net_destroy(void *be)
{
	struct net *n = be;
	registry_remove(n);
	net_free(n);
}

static const struct virtio_backend_ops net_ops = {
	.type = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 3,
	.queue_max_size = VIRTIO_NET_QUEUE_SIZE,
	.config_size = VIRTIO_NET_CFG_SIZE,
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.activate = net_activate,
	.reset = net_reset,
	.notify = net_notify,
	.pause = net_pause,
	.resume = net_resume,
	.save = net_save,
	.restore = net_restore,
	.destroy = net_destroy,
};

struct virtio_mmio *virtio_net_create(const char *id, uint64_t base, struct irq_line irq,
				      struct guest_ram *ram, const char *tap_name,
				      bool create_tap, const uint8_t mac[6], struct error *err)
{
	if (!id || strlen(id) >= sizeof(((struct net *)0)->id)) {
		error_set(err, EINVAL, "virtio-net instance name \"%s\" is empty or too long",
			  id ? id : "");
		return NULL;
	}
	uint8_t random_mac[6];
	if (!mac) {
		net_random_mac(random_mac);
		mac = random_mac;
	}
	if (!mac_is_unicast(mac)) {
		char text[18];
		net_format_mac(mac, text);
		error_set(err, EINVAL, "%s: MAC %s is not a unicast address", id, text);
		return NULL;
	}
	struct net *n = calloc(1, sizeof(*n));
	if (!n) {
		error_set(err, ENOMEM, "%s: cannot allocate the device", id);
		return NULL;
	}
	strcpy(n->id, id);
	n->ram = ram;
	memcpy(n->mac, mac, 6);
	n->mac_chosen_randomly = mac == random_mac;
	n->tap.fd = -1;
	n->wake_fd = -1;
	n->status = VIRTIO_NET_S_LINK_UP;
	n->promisc = true;
	net_hold_init(&n->hold);
	int rc = pthread_mutex_init(&n->lock, NULL);
	if (rc) {
		error_errno(err, rc, "%s: cannot create a lock", id);
		free(n);
		return NULL;
	}
	if ((rc = pthread_cond_init(&n->idle, NULL))) {
		error_errno(err, rc, "%s: cannot create a condition variable", id);
		pthread_mutex_destroy(&n->lock);
		free(n);
		return NULL;
	}
	/* From here on net_free() undoes whatever was done. */
	n->rx_buf = malloc(RX_BUF_SIZE);
	if (!n->rx_buf) {
		error_set(err, ENOMEM, "%s: cannot allocate the receive buffer", id);
		goto fail;
	}
	if (tap_open(&n->tap, tap_name, create_tap, err) < 0)
		goto fail;
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake_fd < 0) {
		error_errno(err, errno, "%s: eventfd", id);
		goto fail;
	}
	/* The thread takes no signals: the VM's signal thread handles them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&n->thread, NULL, io_main, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		error_errno(err, rc, "%s: cannot start the I/O thread", id);
		goto fail;
	}
	n->thread_started = true;

	struct virtio_mmio *t = virtio_mmio_create(id, base, irq, ram, &net_ops, n, err);
	if (!t)
		goto fail;
	pthread_mutex_lock(&n->lock);
	n->t = t;
	pthread_mutex_unlock(&n->lock);
	registry_add(n);
	return t;
fail:
	net_free(n);
	return NULL;
}

void virtio_net_hold(struct virtio_mmio *t, bool on)
{
	struct net *n = registry_find(t);
	if (!n)
		return;
	if (on)
		net_hold_start(&n->hold);
	else
		net_hold_stop(&n->hold, &n->tap);
}

uint64_t virtio_net_hold_barrier(struct virtio_mmio *t)
{
	struct net *n = registry_find(t);
	return n ? net_hold_barrier(&n->hold) : 0;
}

void virtio_net_hold_release(struct virtio_mmio *t, uint64_t barrier)
{
	struct net *n = registry_find(t);
	if (n)
		net_hold_release(&n->hold, &n->tap, barrier);
}

void virtio_net_io(struct virtio_mmio *t, uint64_t *rx, uint64_t *tx)
{
	struct net *n = registry_find(t);
	*rx = n ? __atomic_load_n(&n->rx_bytes, __ATOMIC_RELAXED) : 0;
	*tx = n ? __atomic_load_n(&n->tx_bytes, __ATOMIC_RELAXED) : 0;
}

void virtio_net_announce(struct virtio_mmio *t)
{
	struct net *n = registry_find(t);
	if (!n || !virtio_has_feature(t, VIRTIO_NET_F_GUEST_ANNOUNCE))
		return;
	__atomic_fetch_or(&n->status, (uint16_t)VIRTIO_NET_S_ANNOUNCE, __ATOMIC_SEQ_CST);
	virtio_notify_config(t);
}

int virtio_net_self_announce(struct virtio_mmio *t)
{
	struct net *n = registry_find(t);
	if (!n || n->tap.fd < 0)
		return -ENODEV;
	/* A RARP request "from" the guest, as QEMU's self-announce sends:
	 * broadcast, so every bridge on the way learns the guest's MAC on the
	 * port it now arrives from. Padded to the 60-byte Ethernet minimum. */
	uint8_t hdr[VIRTIO_NET_HDR_LEN] = { 0 }, frame[60] = { 0 };
	memset(frame, 0xff, 6);
	memcpy(frame + 6, n->mac, 6);
	frame[12] = 0x80;
	frame[13] = 0x35;               /* ETH_P_RARP */
	frame[14] = 0;
	frame[15] = 1;                  /* hardware: Ethernet */
	frame[16] = 0x08;
	frame[17] = 0x00;               /* protocol: IPv4 */
	frame[18] = 6;
	frame[19] = 4;
	frame[20] = 0;
	frame[21] = 3;                  /* reverse request */
	memcpy(frame + 22, n->mac, 6);  /* sender hardware address */
	memcpy(frame + 32, n->mac, 6);  /* target hardware address */
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { frame, sizeof(frame) } };
	ssize_t w = tap_writev(&n->tap, iov, 2);
	return w < 0 ? (int)w : 0;
}

/* ---- MAC addresses ----------------------------------------------------------------- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int net_parse_mac(const char *text, uint8_t mac[6], struct error *err)
{
	uint8_t m[6];
	if (!text || strlen(text) != 17)
		goto malformed;
	for (int i = 0; i < 6; i++) {
		const char *p = text + 3 * i;
		int hi = hex_digit(p[0]), lo = hex_digit(p[1]);
		if (hi < 0 || lo < 0 || (i < 5 && p[2] != ':'))
			goto malformed;
		m[i] = (uint8_t)(hi << 4 | lo);
	}
	if (m[0] & 1)
		return error_set(err, EINVAL,
				 "MAC address %s is a multicast address (the lowest bit of the first octet is set): a guest needs a unicast one, e.g. 52:54:00:12:34:56",
				 text);
	if (!mac_is_unicast(m))
		return error_set(err, EINVAL,
				 "MAC address %s is all zeros, which no interface may use", text);
	memcpy(mac, m, 6);
	return 0;
malformed:
	return error_set(err, EINVAL,
			 "MAC address \"%s\" is not six hex pairs separated by ':' (e.g. 52:54:00:12:34:56)",
			 text ? text : "");
}

void net_random_mac(uint8_t mac[6])
{
	uint8_t r[5];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* No entropy source: time and pid still differ between VMs. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
			     ((uint64_t)getpid() << 40);
		for (int i = 0; i < 5; i++)
			r[i] = (uint8_t)(x >> (8 * i));
	}
	/* 0x02: locally administered (bit 1), unicast (bit 0 clear). */
	mac[0] = 0x02;
	memcpy(mac + 1, r, 5);
}
