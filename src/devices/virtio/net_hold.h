/* net_hold.h: holding a NIC's outgoing frames until the state that made
 * them is safe elsewhere: replication's synchronous mode (Remus-style,
 * docs/replication.md). While on, each frame the guest sends is queued,
 * tagged with the current epoch, instead of going to the TAP; a barrier
 * (taken while the guest is paused for an epoch) starts the next epoch;
 * releasing up to a barrier sends, in order, what was queued before it. */
#ifndef TERN_DEVICES_VIRTIO_NET_HOLD_H
#define TERN_DEVICES_VIRTIO_NET_HOLD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct tap;

/* Frames held beyond this are dropped, as a congested link would. */
#define NET_HOLD_MAX_BYTES (32u << 20)

struct held_frame;

struct net_hold {
	pthread_mutex_t lock;
	bool on;
	uint64_t epoch;                 /* frames queued now get this tag */
	struct held_frame *head, *tail;
	size_t bytes;
	uint64_t held, released, dropped;
};

void net_hold_init(struct net_hold *h);
/* Frees what is still queued (a VM that stops sends nothing more). */
void net_hold_destroy(struct net_hold *h);
/* If holding, queues the frame (iov: what would go to the TAP) and
 * returns true; else false and the caller sends it. */
bool net_hold_take(struct net_hold *h, const struct iovec *iov, int iovcnt);
void net_hold_start(struct net_hold *h);
/* Sends everything queued and stops holding. */
void net_hold_stop(struct net_hold *h, struct tap *tap);
/* A new epoch: returns the barrier that ends the one before. */
uint64_t net_hold_barrier(struct net_hold *h);
/* Sends, in order, the frames queued before `barrier`. */
void net_hold_release(struct net_hold *h, struct tap *tap, uint64_t barrier);

#endif
