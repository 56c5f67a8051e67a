/* queue.c: the device side of a split virtqueue, virtio 1.2 section 2.7:
 * the descriptor table (2.7.5) with indirect tables (2.7.5.3), the
 * available ring (2.7.6), the used ring (2.7.8), and notification
 * suppression in both directions (2.7.7, 2.7.10) with and without
 * VIRTIO_F_EVENT_IDX.
 *
 * What it owns: reading the driver's rings and turning one available chain
 * into a list of host buffers, every one of them checked to lie inside
 * guest RAM; publishing used entries; deciding whether either side needs a
 * notification. What it never does: follow a guest address it has not
 * checked, write guest RAM without marking it dirty (the migration engine
 * must see every device write), interrupt the driver or talk to the
 * transport. A malformed chain is an error returned to the caller (which
 * then sets DEVICE_NEEDS_RESET); the queue is left as it was.
 *
 * Choices where the specification leaves room:
 * - Zero-length descriptors are refused. The split-ring text does not
 *   forbid them, but they describe no memory, QEMU has refused them for
 *   years (so Linux never makes them), and refusing keeps every segment a
 *   real buffer.
 * - A chain may hold at most VQ_MAX_CHAIN buffers in all, and an indirect
 *   table at most VQ_MAX_CHAIN entries (2.7.4.1 lets the device limit the
 *   chain length). A direct chain longer than the queue size revisits a
 *   descriptor, so it is a loop; likewise an indirect walk longer than its
 *   table.
 * - Zero or more direct descriptors followed by one indirect descriptor is
 *   accepted, as 2.7.5.3.2 requires; the WRITE flag of the descriptor that
 *   points at a table is ignored, also as required there.
 * - With VIRTIO_F_EVENT_IDX, every successful vq_pop() publishes
 *   avail_event = the next index the device will read, followed by a full
 *   barrier, so the driver notifies exactly when it adds a buffer the
 *   device has not seen yet. A backend that drains the queue after every
 *   notification therefore never misses one, even if it never calls
 *   vq_enable_notify(); one that sleeps after disabling notifications must
 *   re-enable them and re-check (vq_enable_notify returns true) first.
 *
 * Concurrency: the driver (a guest hart) writes the available ring and
 * descriptors while the device reads them. Indices are read with acquire
 * loads and published with release stores; each descriptor is copied once
 * into a local and only the copy is checked and used, so a driver that
 * rewrites a descriptor under our feet cannot make us use an unchecked
 * value. */
#include "devices/virtio/queue.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "state/state.h"

/* Offsets inside the rings (2.7.5, 2.7.6, 2.7.8). */
#define DESC_SIZE 16u
#define AVAIL_FLAGS 0u
#define AVAIL_IDX 2u
#define AVAIL_RING 4u
#define USED_FLAGS 0u
#define USED_IDX 2u
#define USED_RING 4u
#define USED_ELEM_SIZE 8u

/* Field ids of the saved queue record; never reuse one. */
enum {
	VQS_VERSION = 0,
	VQS_NUM = 1,
	VQS_READY = 2,
	VQS_DESC = 3,
	VQS_AVAIL = 4,
	VQS_USED = 5,
	VQS_LAST_AVAIL = 6,
	VQS_USED_IDX = 7,
	VQS_EVENT_IDX = 8,
	VQS_INDIRECT = 9,
	VQS_SIGNALLED = 10,
	VQS_SIGNALLED_VALID = 11,
};
#define VQ_STATE_VERSION 1u

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static uint64_t desc_bytes(uint16_t num)
{
	return (uint64_t)DESC_SIZE * num;
}

/* flags, idx, ring[num], used_event */
static uint64_t avail_bytes(uint16_t num)
{
	return AVAIL_RING + 2ull * num + 2;
}

/* flags, idx, ring[num], avail_event */
static uint64_t used_bytes(uint16_t num)
{
	return USED_RING + (uint64_t)USED_ELEM_SIZE * num + 2;
}

static bool valid_num(uint16_t num)
{
	return num != 0 && num <= VQ_MAX_SIZE && (num & (num - 1)) == 0;
}

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void st32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

/* The index and flag fields shared with the other side are 2-byte aligned
 * (the rings' alignment is checked by vq_validate and before each use). */
static uint16_t ld16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static uint16_t ld16_relaxed(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static void st16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

static void st16_relaxed(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static void load_desc(const uint8_t *p, struct desc *d)
{
	uint8_t raw[DESC_SIZE];
	/* One copy: everything below looks only at `raw`. */
	memcpy(raw, p, sizeof(raw));
	d->addr = ld64(raw);
	d->len = ld32(raw + 8);
	d->flags = ld16(raw + 12);
	d->next = ld16(raw + 14);
}

/* Host address of a ring, or NULL if the queue is not usable. Rings are
 * checked by vq_validate when the driver sets DRIVER_OK; checking again
 * here costs a few compares and keeps every access safe even if a caller
 * skipped validation. */
static uint8_t *ring(const struct virtq *q, uint64_t gpa, uint64_t len, uint64_t align)
{
	if (!q->ram || !q->ready || !valid_num(q->num) || (gpa & (align - 1)))
		return NULL;
	return guest_ram_ptr(q->ram, gpa, len);
}

static uint8_t *avail_ring(const struct virtq *q)
{
	return ring(q, q->avail_addr, avail_bytes(q->num), 2);
}

static uint8_t *used_ring(const struct virtq *q)
{
	return ring(q, q->used_addr, used_bytes(q->num), 4);
}

void vq_reset(struct virtq *q)
{
	struct guest_ram *ram = q->ram;
	memset(q, 0, sizeof(*q));
	q->ram = ram;
}

static int check_ring(const struct guest_ram *ram, const char *name, uint64_t gpa, uint64_t len,
		      uint64_t align, struct error *err)
{
	if (gpa & (align - 1))
		return error_set(err, EINVAL, "%s at 0x%llx is not %llu-byte aligned", name,
				 (unsigned long long)gpa, (unsigned long long)align);
	if (!guest_ram_ptr(ram, gpa, len))
		return error_set(err, EINVAL, "%s [0x%llx, +0x%llx) is not inside guest RAM", name,
				 (unsigned long long)gpa, (unsigned long long)len);
	return 0;
}

int vq_validate(const struct virtq *q, struct error *err)
{
	if (!q->ready)
		return 0;
	if (!q->ram)
		return error_set(err, EINVAL, "virtqueue has no guest RAM");
	if (!valid_num(q->num))
		return error_set(err, EINVAL, "queue size %u is not a power of two from 1 to %d",
				 q->num, VQ_MAX_SIZE);
	int rc = check_ring(q->ram, "descriptor table", q->desc_addr, desc_bytes(q->num), 16, err);
	if (!rc)
		rc = check_ring(q->ram, "available ring", q->avail_addr, avail_bytes(q->num), 2,
				err);
	if (!rc)
		rc = check_ring(q->ram, "used ring", q->used_addr, used_bytes(q->num), 4, err);
	return rc;
}

/* ---- taking a chain ---------------------------------------------------- */

/* Where a descriptor sits, for messages. */
struct where {
	bool indirect;
	uint16_t parent;        /* the descriptor holding the indirect table */
	uint16_t index;
};

static const char *where_str(const struct where *w, char *buf, size_t size)
{
	if (w->indirect)
		snprintf(buf, size, "descriptor %u of the indirect table in descriptor %u",
			 w->index, w->parent);
	else
		snprintf(buf, size, "descriptor %u", w->index);
	return buf;
}

static int add_seg(const struct virtq *q, struct vq_chain *c, const struct desc *d,
		   const struct where *w, struct error *err)
{
	char at[80];
	bool write = d->flags & VRING_DESC_F_WRITE;

	if (d->len == 0)
		return error_set(err, EINVAL, "%s has length 0", where_str(w, at, sizeof(at)));
	if (c->nsegs == VQ_MAX_CHAIN)
		return error_set(err, EINVAL, "chain from head %u has more than %d buffers (at %s)",
				 c->head, VQ_MAX_CHAIN, where_str(w, at, sizeof(at)));
	uint8_t *host = guest_ram_ptr(q->ram, d->addr, d->len);
	if (!host)
		return error_set(err, EFAULT, "%s: buffer [0x%llx, +0x%x) is not inside guest RAM",
				 where_str(w, at, sizeof(at)), (unsigned long long)d->addr, d->len);
	/* 2.7.4.2: device-writable buffers come after all readable ones. */
	if (!write && c->writable)
		return error_set(err, EINVAL,
				 "%s is device-readable but follows a device-writable one",
				 where_str(w, at, sizeof(at)));
	/* 2.7.5.2: a chain is at most 2^32 bytes; the totals are 32-bit. */
	if ((uint64_t)c->readable + c->writable + d->len > UINT32_MAX)
		return error_set(err, EINVAL, "chain from head %u is longer than 4 GiB (at %s)",
				 c->head, where_str(w, at, sizeof(at)));

	c->segs[c->nsegs++] = (struct vq_seg){
		.gpa = d->addr, .host = host, .len = d->len, .write = write,
	};
	if (write)
		c->writable += d->len;
	else
		c->readable += d->len;
	return 0;
}

/* Walks the indirect table that descriptor `parent` (copied into *d) points at. */
static int walk_indirect(const struct virtq *q, struct vq_chain *c, uint16_t parent,
			 const struct desc *d, struct error *err)
{
	if (!q->indirect)
		return error_set(err, EINVAL, "descriptor %u is indirect, but "
				 "VIRTIO_F_INDIRECT_DESC was not negotiated", parent);
	/* 2.7.5.3.1: an indirect descriptor ends the chain in the table. */
	if (d->flags & VRING_DESC_F_NEXT)
		return error_set(err, EINVAL, "descriptor %u is indirect and also has NEXT set",
				 parent);
	if (d->len == 0 || d->len % DESC_SIZE)
		return error_set(err, EINVAL, "descriptor %u: indirect table length %u is not a "
				 "non-zero multiple of %u", parent, d->len, DESC_SIZE);
	uint32_t n = d->len / DESC_SIZE;
	if (n > VQ_MAX_CHAIN)
		return error_set(err, EINVAL, "descriptor %u: indirect table of %u entries is "
				 "longer than %d", parent, n, VQ_MAX_CHAIN);
	const uint8_t *table = guest_ram_ptr(q->ram, d->addr, d->len);
	if (!table)
		return error_set(err, EFAULT, "descriptor %u: indirect table [0x%llx, +0x%x) is "
				 "not inside guest RAM", parent, (unsigned long long)d->addr,
				 d->len);

	struct where w = { .indirect = true, .parent = parent, .index = 0 };
	for (uint32_t visited = 1;; visited++) {
		/* n entries can be visited at most once each without a loop. */
		if (visited > n)
			return error_set(err, EINVAL, "indirect table in descriptor %u loops (more "
					 "than its %u entries visited)", parent, n);
		struct desc e;
		load_desc(table + (size_t)w.index * DESC_SIZE, &e);
		if (e.flags & VRING_DESC_F_INDIRECT)
			return error_set(err, EINVAL, "descriptor %u of the indirect table in "
					 "descriptor %u is itself indirect", w.index, parent);
		int rc = add_seg(q, c, &e, &w, err);
		if (rc)
			return rc;
		if (!(e.flags & VRING_DESC_F_NEXT))
			return 0;
		if (e.next >= n)
			return error_set(err, EINVAL, "descriptor %u of the indirect table in "
					 "descriptor %u: next %u is outside the table of %u",
					 w.index, parent, e.next, n);
		w.index = e.next;
	}
}

static int walk_chain(const struct virtq *q, const uint8_t *table, uint16_t head,
		      struct vq_chain *c, struct error *err)
{
	unsigned limit = q->num < VQ_MAX_CHAIN ? q->num : VQ_MAX_CHAIN;
	struct where w = { .indirect = false, .index = head };

	c->head = head;
	c->nsegs = 0;
	c->readable = c->writable = 0;
	for (unsigned visited = 1;; visited++) {
		if (visited > limit)
			return error_set(err, EINVAL, "chain from head %u has more than %u "
					 "descriptors (a loop?)", head, limit);
		struct desc d;
		load_desc(table + (size_t)w.index * DESC_SIZE, &d);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return walk_indirect(q, c, w.index, &d, err);
		int rc = add_seg(q, c, &d, &w, err);
		if (rc)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= q->num)
			return error_set(err, EINVAL, "descriptor %u: next %u is out of range, "
					 "queue size %u", w.index, d.next, q->num);
		w.index = d.next;
	}
}

/* With event index: "notify me when you make entry last_avail_idx
 * available", then a full barrier so that the next read of avail->idx
 * cannot be ordered before the store (else both sides could decide the
 * other one will act). */
static void publish_avail_event(struct virtq *q, uint8_t *used)
{
	uint64_t off = USED_RING + (uint64_t)USED_ELEM_SIZE * q->num;
	st16_relaxed(used + off, q->last_avail_idx);
	guest_ram_mark_dirty(q->ram, q->used_addr + off, 2);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int vq_pop(struct virtq *q, struct vq_chain *c, struct error *err)
{
	if (!q->ready)
		return 0;
	uint8_t *avail = avail_ring(q);
	uint8_t *used = used_ring(q);
	const uint8_t *table = ring(q, q->desc_addr, desc_bytes(q->num), 16);
	if (!avail || !used || !table)
		return error_set(err, EFAULT, "the rings of a queue of size %u are misplaced "
				 "(desc 0x%llx, avail 0x%llx, used 0x%llx)", q->num,
				 (unsigned long long)q->desc_addr,
				 (unsigned long long)q->avail_addr,
				 (unsigned long long)q->used_addr);

	/* Acquire: the ring entries and descriptors the driver wrote before
	 * bumping idx are visible after this load. */
	uint16_t avail_idx = ld16_acquire(avail + AVAIL_IDX);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail_idx);
	if (pending == 0)
		return 0;
	if (pending > q->num)
		return error_set(err, EINVAL, "available index %u is %u entries ahead of the "
				 "device's %u, more than the queue size %u", avail_idx, pending,
				 q->last_avail_idx, q->num);
	uint16_t slot = q->last_avail_idx & (q->num - 1);
	uint16_t head = ld16(avail + AVAIL_RING + 2u * slot);
	if (head >= q->num)
		return error_set(err, EINVAL, "available ring entry %u names descriptor %u, queue "
				 "size %u", slot, head, q->num);

	int rc = walk_chain(q, table, head, c, err);
	if (rc)
		return rc;
	q->last_avail_idx++;
	if (q->event_idx)
		publish_avail_event(q, used);
	return 1;
}

/* ---- returning a chain ------------------------------------------------- */

void vq_push_many(struct virtq *q, const struct vq_used *elems, unsigned n)
{
	uint8_t *used = used_ring(q);
	if (!used || n == 0)
		return;
	uint16_t idx = q->used_idx;
	for (unsigned i = 0; i < n; i++, idx++) {
		uint64_t off = USED_RING + (uint64_t)USED_ELEM_SIZE * (idx & (q->num - 1));
		st32(used + off, elems[i].head);
		st32(used + off + 4, elems[i].written);
	}
	/* Release: the elements (and the buffer contents written before this
	 * call) are visible to the driver before the new idx. */
	st16_release(used + USED_IDX, idx);
	/* Marked after the stores: a dirty-bitmap sweep that runs between a
	 * store and its mark still sees the mark afterwards. */
	for (uint16_t i = q->used_idx; i != idx; i++)
		guest_ram_mark_dirty(q->ram, q->used_addr + USED_RING +
				     (uint64_t)USED_ELEM_SIZE * (i & (q->num - 1)), USED_ELEM_SIZE);
	guest_ram_mark_dirty(q->ram, q->used_addr + USED_IDX, 2);
	q->used_idx = idx;
}

void vq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	struct vq_used e = { .head = head, .written = written };
	vq_push_many(q, &e, 1);
}

void vq_unpop(struct virtq *q, uint16_t n)
{
	q->last_avail_idx = (uint16_t)(q->last_avail_idx - n);
}

/* 2.7.7.2 with event index: interrupt if used_event lies in the window of
 * entries published since the last interrupt, (old, new]. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool vq_should_notify(struct virtq *q)
{
	uint8_t *avail = avail_ring(q);
	if (!avail)
		return false;
	/* Full barrier: used->idx (published by vq_push) must be visible
	 * before the driver's flags or used_event are read; otherwise the
	 * driver could re-enable interrupts, see no new used entry, and we
	 * could read the stale "no interrupt" and both sleep. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	uint16_t old = q->signalled_used;
	bool valid = q->signalled_used_valid;
	uint16_t new_idx = q->used_idx;
	if (valid && old == new_idx)
		return false;           /* nothing new since the last interrupt */
	q->signalled_used = new_idx;
	q->signalled_used_valid = true;

	if (!q->event_idx)
		return !(ld16_relaxed(avail + AVAIL_FLAGS) & VRING_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	uint16_t used_event = ld16_relaxed(avail + AVAIL_RING + 2u * q->num);
	return need_event(used_event, new_idx, old);
}

bool vq_enable_notify(struct virtq *q, bool enable)
{
	uint8_t *used = used_ring(q);
	uint8_t *avail = avail_ring(q);
	if (!used || !avail)
		return false;
	if (q->event_idx) {
		/* 2.7.10: flags stay 0; only avail_event suppresses. Disabling
		 * is simply not moving avail_event forward. */
		if (enable)
			publish_avail_event(q, used);
	} else {
		uint16_t flags = ld16_relaxed(used + USED_FLAGS);
		uint16_t want = enable ? (uint16_t)(flags & ~VRING_USED_F_NO_NOTIFY)
				       : (uint16_t)(flags | VRING_USED_F_NO_NOTIFY);
		if (want != flags) {
			st16_relaxed(used + USED_FLAGS, want);
			guest_ram_mark_dirty(q->ram, q->used_addr + USED_FLAGS, 2);
		}
		/* Same reasoning as publish_avail_event. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return ld16_acquire(avail + AVAIL_IDX) != q->last_avail_idx;
}

bool vq_has_available(const struct virtq *q)
{
	const uint8_t *avail = avail_ring(q);
	return avail && ld16_acquire(avail + AVAIL_IDX) != q->last_avail_idx;
}

/* ---- chain contents ---------------------------------------------------- */

/* Calls fn on each piece of [offset, offset+len) of the chain's bytes in
 * one direction; returns the number of bytes covered. */
static size_t for_range(const struct vq_chain *c, bool write, size_t offset, size_t len,
			void (*fn)(const struct vq_seg *s, size_t at, size_t n, size_t done,
				   void *ctx),
			void *ctx)
{
	size_t done = 0;
	for (unsigned i = 0; i < c->nsegs && done < len; i++) {
		const struct vq_seg *s = &c->segs[i];
		if (s->write != write)
			continue;
		if (offset >= s->len) {
			offset -= s->len;
			continue;
		}
		size_t n = s->len - offset;
		if (n > len - done)
			n = len - done;
		fn(s, offset, n, done, ctx);
		done += n;
		offset = 0;
	}
	return done;
}

static void copy_out(const struct vq_seg *s, size_t at, size_t n, size_t done, void *ctx)
{
	memcpy((uint8_t *)ctx + done, s->host + at, n);
}

size_t vq_chain_read(const struct vq_chain *c, size_t offset, void *dst, size_t len)
{
	return for_range(c, false, offset, len, copy_out, dst);
}

struct write_ctx {
	struct guest_ram *ram;
	const uint8_t *src;
};

static void copy_in(const struct vq_seg *s, size_t at, size_t n, size_t done, void *ctx)
{
	struct write_ctx *w = ctx;
	memcpy(s->host + at, w->src + done, n);
	guest_ram_mark_dirty(w->ram, s->gpa + at, n);
}

size_t vq_chain_write(struct guest_ram *ram, const struct vq_chain *c, size_t offset,
		      const void *src, size_t len)
{
	struct write_ctx w = { .ram = ram, .src = src };
	return for_range(c, true, offset, len, copy_in, &w);
}

static void mark(const struct vq_seg *s, size_t at, size_t n, size_t done, void *ctx)
{
	guest_ram_mark_dirty(ctx, s->gpa + at, n);
}

void vq_chain_mark_written(struct guest_ram *ram, const struct vq_chain *c, size_t offset,
			   size_t len)
{
	for_range(c, true, offset, len, mark, ram);
}

/* ---- save / restore ---------------------------------------------------- */

void vq_save(const struct virtq *q, struct state_writer *w)
{
	state_put_u32(w, VQS_VERSION, VQ_STATE_VERSION);
	state_put_u16(w, VQS_NUM, q->num);
	state_put_bool(w, VQS_READY, q->ready);
	state_put_u64(w, VQS_DESC, q->desc_addr);
	state_put_u64(w, VQS_AVAIL, q->avail_addr);
	state_put_u64(w, VQS_USED, q->used_addr);
	state_put_u16(w, VQS_LAST_AVAIL, q->last_avail_idx);
	state_put_u16(w, VQS_USED_IDX, q->used_idx);
	state_put_bool(w, VQS_EVENT_IDX, q->event_idx);
	state_put_bool(w, VQS_INDIRECT, q->indirect);
	state_put_u16(w, VQS_SIGNALLED, q->signalled_used);
	state_put_bool(w, VQS_SIGNALLED_VALID, q->signalled_used_valid);
}

int vq_restore(struct virtq *q, const struct state_reader *in, struct error *err)
{
	static const uint16_t known[] = {
		VQS_VERSION, VQS_NUM, VQS_READY, VQS_DESC, VQS_AVAIL, VQS_USED, VQS_LAST_AVAIL,
		VQS_USED_IDX, VQS_EVENT_IDX, VQS_INDIRECT, VQS_SIGNALLED, VQS_SIGNALLED_VALID,
	};
	struct state_reader r;
	/* Re-read with our own list of known ids: the caller cannot know
	 * which required fields a queue record may carry. */
	int rc = state_reader_init(&r, in->data, in->len, in->what, known,
				   sizeof(known) / sizeof(known[0]), err);
	if (rc)
		return rc;

	uint32_t version;
	struct virtq t = { .ram = q->ram };
	if ((rc = state_get_u32(&r, VQS_VERSION, &version, err)))
		return rc;
	if (version != VQ_STATE_VERSION)
		return error_set(err, EINVAL, "%s: virtqueue state version %u is not %u", r.what,
				 version, VQ_STATE_VERSION);
	if ((rc = state_get_u16(&r, VQS_NUM, &t.num, err)) ||
	    (rc = state_get_bool(&r, VQS_READY, &t.ready, err)) ||
	    (rc = state_get_u64(&r, VQS_DESC, &t.desc_addr, err)) ||
	    (rc = state_get_u64(&r, VQS_AVAIL, &t.avail_addr, err)) ||
	    (rc = state_get_u64(&r, VQS_USED, &t.used_addr, err)) ||
	    (rc = state_get_u16(&r, VQS_LAST_AVAIL, &t.last_avail_idx, err)) ||
	    (rc = state_get_u16(&r, VQS_USED_IDX, &t.used_idx, err)) ||
	    (rc = state_get_bool(&r, VQS_EVENT_IDX, &t.event_idx, err)) ||
	    (rc = state_get_bool(&r, VQS_INDIRECT, &t.indirect, err)) ||
	    (rc = state_get_u16(&r, VQS_SIGNALLED, &t.signalled_used, err)) ||
	    (rc = state_get_bool(&r, VQS_SIGNALLED_VALID, &t.signalled_used_valid, err)))
		return rc;
	if (t.num != 0 && !valid_num(t.num))
		return error_set(err, EINVAL, "%s: queue size %u is not a power of two up to %d",
				 r.what, t.num, VQ_MAX_SIZE);
	if (t.ready && (rc = vq_validate(&t, err)))
		return error_wrap(err, "%s", r.what);
	*q = t;
	return 0;
}
