/* net_hold.c: see net_hold.h. */
#include "devices/virtio/net_hold.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tap.h"
#include "util/log.h"

struct held_frame {
	struct held_frame *next;
	uint64_t epoch;
	size_t len;
	uint8_t data[];
};

void net_hold_init(struct net_hold *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
}

static void free_all(struct net_hold *h)
{
	while (h->head) {
		struct held_frame *f = h->head;
		h->head = f->next;
		free(f);
	}
	h->tail = NULL;
	h->bytes = 0;
}

void net_hold_destroy(struct net_hold *h)
{
	free_all(h);
	pthread_mutex_destroy(&h->lock);
}

bool net_hold_take(struct net_hold *h, const struct iovec *iov, int iovcnt)
{
	pthread_mutex_lock(&h->lock);
	if (!h->on) {
		pthread_mutex_unlock(&h->lock);
		return false;
	}
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	struct held_frame *f = NULL;
	if (h->bytes + len <= NET_HOLD_MAX_BYTES)
		f = malloc(sizeof(*f) + len);
	if (!f) {
		h->dropped++;
		pthread_mutex_unlock(&h->lock);
		return true;
	}
	f->next = NULL;
	f->epoch = h->epoch;
	f->len = len;
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (h->tail)
		h->tail->next = f;
	else
		h->head = f;
	h->tail = f;
	h->bytes += len;
	h->held++;
	pthread_mutex_unlock(&h->lock);
	return true;
}

/* One frame to the TAP; a full TAP gets a moment, then the frame is
 * dropped (the network's loss, which TCP recovers from). */
static void send_frame(struct tap *tap, const struct held_frame *f)
{
	struct iovec iov = { (void *)f->data, f->len };
	for (int tries = 0; tries < 20; tries++) {
		ssize_t w = tap_writev(tap, &iov, 1);
		if (w != -EAGAIN)
			return;
		struct pollfd pfd = { .fd = tap->fd, .events = POLLOUT };
		poll(&pfd, 1, 5);
	}
}

/* With h->lock held: sends the frames before `barrier` (all: UINT64_MAX). */
static void release_locked(struct net_hold *h, struct tap *tap, uint64_t barrier)
{
	while (h->head && h->head->epoch < barrier) {
		struct held_frame *f = h->head;
		h->head = f->next;
		if (!h->head)
			h->tail = NULL;
		h->bytes -= f->len;
		if (tap && tap->fd >= 0)
			send_frame(tap, f);
		h->released++;
		free(f);
	}
}

void net_hold_start(struct net_hold *h)
{
	pthread_mutex_lock(&h->lock);
	h->on = true;
	pthread_mutex_unlock(&h->lock);
}

void net_hold_stop(struct net_hold *h, struct tap *tap)
{
	/* Under the lock: the I/O thread's next frame waits for the queue
	 * to drain, so nothing overtakes it. */
	pthread_mutex_lock(&h->lock);
	release_locked(h, tap, UINT64_MAX);
	h->on = false;
	pthread_mutex_unlock(&h->lock);
}

uint64_t net_hold_barrier(struct net_hold *h)
{
	pthread_mutex_lock(&h->lock);
	uint64_t b = ++h->epoch;
	pthread_mutex_unlock(&h->lock);
	return b;
}

void net_hold_release(struct net_hold *h, struct tap *tap, uint64_t barrier)
{
	pthread_mutex_lock(&h->lock);
	release_locked(h, tap, barrier);
	pthread_mutex_unlock(&h->lock);
}
