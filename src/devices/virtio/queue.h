/* queue.h: the split virtqueue (virtio 1.2, section 2.7) as the device sees
 * it: taking descriptor chains the driver made available, and returning
 * them as used. Every access to the rings and buffers is checked against
 * guest RAM; a malformed chain is reported, never followed outside it.
 *
 * A struct virtq is used by one thread at a time: the transport while the
 * driver configures it, then the backend's worker after DRIVER_OK. */
#ifndef TERN_DEVICES_VIRTIO_QUEUE_H
#define TERN_DEVICES_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem/guest_ram.h"
#include "util/error.h"

#define VQ_MAX_SIZE 1024
/* Longest chain accepted, counting the descriptors of an indirect table. */
#define VQ_MAX_CHAIN 1024

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_USED_F_NO_NOTIFY 1u
#define VRING_AVAIL_F_NO_INTERRUPT 1u

struct virtq {
	struct guest_ram *ram;
	/* configured by the driver through the transport */
	uint16_t num;                   /* queue size, a power of two */
	bool ready;
	uint64_t desc_addr, avail_addr, used_addr;
	/* device-side progress */
	uint16_t last_avail_idx;        /* next avail ring entry to take */
	uint16_t used_idx;              /* next used ring index to publish */
	bool event_idx;                 /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;                  /* VIRTIO_F_INDIRECT_DESC negotiated */
	uint16_t signalled_used;        /* used_idx at the last interrupt */
	bool signalled_used_valid;
};

/* One buffer of a chain: guest address, host address, length, direction. */
struct vq_seg {
	uint64_t gpa;
	uint8_t *host;
	uint32_t len;
	bool write;                     /* device-writable */
};

struct vq_chain {
	uint16_t head;                  /* what vq_push() returns to the driver */
	unsigned nsegs;
	uint32_t readable, writable;    /* total bytes in each direction */
	struct vq_seg segs[VQ_MAX_CHAIN];
};

/* Resets the device-side state (driver reset or queue reconfiguration). */
void vq_reset(struct virtq *q);

/* Checks that the three rings of a ready queue lie inside guest RAM and are
 * suitably aligned; -EINVAL with a message if not. */
int vq_validate(const struct virtq *q, struct error *err);

/* Takes the next available chain: 1 = got one, 0 = none available,
 * negative errno = the driver wrote nonsense (loop, out-of-range address
 * or index, zero-length descriptor, zero-length or oversized table, too
 * many descriptors, readable after writable); err says what, and the queue
 * is left as it was. With event index, a successful pop also publishes
 * avail_event (see queue.c). */
int vq_pop(struct virtq *q, struct vq_chain *chain, struct error *err);

/* Gives chain `head` back with `written` bytes written into its
 * device-writable buffers. Marks the used ring dirty. */
void vq_push(struct virtq *q, uint16_t head, uint32_t written);

/* A used ring element: which chain, and how many bytes were written. */
struct vq_used {
	uint16_t head;
	uint32_t written;
};

/* Gives several chains back at once: the driver sees all of them or none
 * (virtio-net's merged receive buffers need this: the driver reads
 * num_buffers from the first and expects the rest to be there). */
void vq_push_many(struct virtq *q, const struct vq_used *elems, unsigned n);

/* Puts the last n chains taken with vq_pop back, to be taken again
 * (a packet the TAP could not accept now; work a pause interrupted). */
void vq_unpop(struct virtq *q, uint16_t n);

/* Whether the driver wants an interrupt for what was pushed since the last
 * time this returned true (VRING_AVAIL_F_NO_INTERRUPT, or used_event). */
bool vq_should_notify(struct virtq *q);

/* Asks the driver to notify (true) or not (false) when it adds buffers;
 * with event index this publishes avail_event. Returns true if buffers
 * became available meanwhile (check again after enabling). */
bool vq_enable_notify(struct virtq *q, bool enable);

bool vq_has_available(const struct virtq *q);

/* Copies from the chain's readable bytes, starting `offset` bytes in. */
size_t vq_chain_read(const struct vq_chain *c, size_t offset, void *dst, size_t len);
/* Copies into the chain's writable bytes starting `offset` bytes into the
 * writable part, marking the guest pages dirty. */
size_t vq_chain_write(struct guest_ram *ram, const struct vq_chain *c, size_t offset,
		      const void *src, size_t len);
/* Marks `len` bytes of the writable part, from `offset`, dirty: for
 * backends that write through seg.host directly (preadv, tap reads). */
void vq_chain_mark_written(struct guest_ram *ram, const struct vq_chain *c, size_t offset,
			   size_t len);

/* Saves/restores the queue's configuration and progress (not the rings,
 * which live in guest RAM). */
struct state_writer;
struct state_reader;
void vq_save(const struct virtq *q, struct state_writer *w);
int vq_restore(struct virtq *q, const struct state_reader *r, struct error *err);

#endif
