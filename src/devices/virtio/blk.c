/* blk.c: the virtio-blk device backend (virtio 1.2, section 5.2): feature
 * bits (5.2.3), config space (5.2.4), request processing (5.2.6), and the
 * worker thread that does the I/O on a raw disk image (backends/).
 *
 * Threads and locks. Each device has one worker thread. notify() runs on a
 * hart thread and only sets `kicked` and signals the worker under b->lock;
 * the worker never holds b->lock while doing I/O or calling into the
 * transport, so b->lock is a leaf lock and a hart never waits for a disk.
 * The worker drains the request queue with driver notifications disabled,
 * pushes each completed chain, interrupts the driver every few requests
 * and once at the end, then re-enables notifications and checks the queue
 * again before it sleeps (a request added between the last pop and the
 * re-enable would otherwise wait for the next kick that never comes).
 *
 * pause(), reset() and destroy() wait for the worker to leave the queue
 * (b->busy false): the request being processed is completed, pushed and
 * signalled first, so after they return the backend writes no guest
 * memory. They must therefore not be called with a lock the worker takes
 * on its way out: the transport calls them holding only its `ctl` mutex,
 * never its register `lock`, which virtio_notify_used() and
 * virtio_set_needs_reset() take from the worker. Lock order:
 *     transport ctl -> b->lock;   worker: transport lock, b->lock never nested.
 * The disk image is used only by the worker (and by create/destroy).
 *
 * Malformed input never crashes tern: vq_pop() checks every descriptor
 * against guest RAM (a broken chain sets NEEDS_RESET with the reason), a
 * chain too short for the header and status byte is treated the same way,
 * and sectors outside the disk, lengths that are not whole sectors, and
 * writes to a read-only disk complete with VIRTIO_BLK_S_IOERR. */
#include "devices/virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "backends/disk_image.h"
#include "util/le.h"
#include "util/log.h"

#define REQ_HDR_SIZE 16                 /* le32 type, le32 reserved, le64 sector */
#define DWZ_SEG_SIZE 16                 /* le64 sector, le32 num_sectors, le32 flags */
/* Interrupt the driver at least this often while draining a long queue,
 * so it can reuse completed buffers before the whole batch is done. */
#define NOTIFY_BATCH 16
/* I/O errors logged per device; the guest sees every one as IOERR. */
#define MAX_LOGGED_ERRORS 10

/* Saved state fields (see blk_save). */
enum {
	F_VERSION = 0,
	F_READ_ONLY = 1,
	F_CAPACITY = 2,
	F_SERIAL = 3,
};
#define BLK_STATE_VERSION 1u

struct blk {
	struct virtio_mmio *t;          /* set once virtio_mmio_create returned */
	struct guest_ram *ram;
	struct disk_image img;
	char id[64];
	uint64_t capacity;              /* sectors */
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
	uint8_t config[VIRTIO_BLK_CFG_SIZE];

	pthread_t worker;
	pthread_mutex_t lock;
	pthread_cond_t wake;            /* the worker waits here */
	pthread_cond_t idle;            /* pause/reset wait here for !busy */
	/* under lock */
	bool stop;                      /* destroy: the worker exits */
	bool active;                    /* DRIVER_OK and not reset since */
	bool paused;
	bool kicked;                    /* the queue may hold new requests */
	bool busy;                      /* the worker is using the queue */

	/* data bytes the guest read and wrote, for the host agent's load
	 * figures (virtio_blk_io); relaxed atomics */
	uint64_t bytes_read, bytes_written;

	/* worker only */
	unsigned io_errors;
	struct vq_chain chain;
	struct iovec iov[VQ_MAX_CHAIN];
};

/* ---- config and features ---------------------------------------------- */

/* The config space depends only on the capacity and read-only flag, which
 * restore checks, so it never changes under a guest across a migration. */
static void build_config(struct blk *b)
{
	uint8_t *c = b->config;

	memset(c, 0, sizeof(b->config));
	put_le64(c + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
	/* Header and status take two descriptors of a direct chain. */
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, VIRTIO_BLK_SECTOR_SIZE);
	/* Writes sit in the host page cache until FLUSH: a write-back cache.
	 * Only read by a driver that negotiates CONFIG_WCE (not offered). */
	c[VIRTIO_BLK_CFG_WRITEBACK] = 1;
	put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1);
	if (!b->img.read_only) {
		put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
		put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
		/* 4 KiB, the block size of the usual host file systems: a
		 * smaller discard only zeroes part of a block, freeing nothing.
		 * A constant, not st_blksize, so that it cannot differ between
		 * the two ends of a migration. */
		put_le32(c + VIRTIO_BLK_CFG_DISCARD_ALIGN, VIRTIO_BLK_DISCARD_ALIGN);
		put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
		put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
		c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
	}
}

/* The 20-byte serial GET_ID returns (/sys/block/vdX/serial, and
 * /dev/disk/by-id/virtio-<serial>): the image's file name, printable ASCII
 * only, NUL-padded; "tern-<device id>" if the name is unusable. */
static void make_serial(struct blk *b, const char *path)
{
	const char *name = strrchr(path, '/');
	name = name ? name + 1 : path;
	char tmp[sizeof(b->id) + 8];
	if (!*name) {
		snprintf(tmp, sizeof(tmp), "tern-%s", b->id);
		name = tmp;
	}
	memset(b->serial, 0, sizeof(b->serial));
	for (size_t i = 0; i < sizeof(b->serial) && name[i]; i++) {
		unsigned char ch = (unsigned char)name[i];
		b->serial[i] = (ch > 0x20 && ch < 0x7f) ? ch : '_';
	}
}

static uint64_t blk_features(void *be)
{
	struct blk *b = be;
	uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ull << VIRTIO_BLK_F_FLUSH);
	if (b->img.read_only)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(void *be, uint32_t offset, void *buf, uint32_t len)
{
	struct blk *b = be;
	memcpy(buf, b->config + offset, len);
}

static void blk_config_write(void *be, uint32_t offset, const void *buf, uint32_t len)
{
	/* Nothing is writable: `writeback` only is, with CONFIG_WCE. */
}

/* ---- requests ------------------------------------------------------------- */

static void io_error(struct blk *b, const struct error *err)
{
	b->io_errors++;
	if (b->io_errors <= MAX_LOGGED_ERRORS)
		log_warn("%s: %s%s", b->id, err->msg, b->io_errors == MAX_LOGGED_ERRORS ?
			 " (further I/O errors not logged)" : "");
}

static bool range_ok(const struct blk *b, uint64_t sector, uint64_t sectors)
{
	return sector <= b->capacity && sectors <= b->capacity - sector;
}

/* Fills b->iov with the host ranges of bytes [start, start+len) of the
 * chain's readable (writable = false) or writable part. vq_pop() has
 * checked that every segment lies inside guest RAM. */
static unsigned chain_iov(struct blk *b, const struct vq_chain *c, bool writable, size_t start,
			  size_t len)
{
	size_t lo = start, hi = start + len, pos = 0;
	unsigned n = 0;

	for (unsigned i = 0; i < c->nsegs && pos < hi; i++) {
		const struct vq_seg *s = &c->segs[i];
		if (s->write != writable)
			continue;
		size_t a = pos, e = pos + s->len;
		pos = e;
		if (e <= lo)
			continue;
		size_t from = a > lo ? a : lo, to = e < hi ? e : hi;
		if (to > from)
			b->iov[n++] = (struct iovec){ s->host + (from - a), to - from };
	}
	return n;
}

static uint8_t do_read(struct blk *b, const struct vq_chain *c, uint64_t sector,
		       uint32_t *written)
{
	uint64_t len = c->writable - 1;         /* all but the status byte */
	struct error err = { 0 };

	if (len % VIRTIO_BLK_SECTOR_SIZE || !range_ok(b, sector, len / VIRTIO_BLK_SECTOR_SIZE))
		return VIRTIO_BLK_S_IOERR;
	unsigned n = chain_iov(b, c, true, 0, len);
	int ret = disk_image_preadv(&b->img, b->iov, n, sector * VIRTIO_BLK_SECTOR_SIZE, &err);
	/* preadv wrote straight into guest pages, maybe partly on failure:
	 * mark them all so that a migration copies them again. */
	vq_chain_mark_written(b->ram, c, 0, len);
	*written = (uint32_t)len;
	if (ret) {
		io_error(b, &err);
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_write(struct blk *b, const struct vq_chain *c, uint64_t sector)
{
	uint64_t len = c->readable - REQ_HDR_SIZE;
	struct error err = { 0 };

	if (b->img.read_only)
		return VIRTIO_BLK_S_IOERR;
	if (len % VIRTIO_BLK_SECTOR_SIZE || !range_ok(b, sector, len / VIRTIO_BLK_SECTOR_SIZE))
		return VIRTIO_BLK_S_IOERR;
	unsigned n = chain_iov(b, c, false, REQ_HDR_SIZE, len);
	if (disk_image_pwritev(&b->img, b->iov, n, sector * VIRTIO_BLK_SECTOR_SIZE, &err)) {
		io_error(b, &err);
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_flush(struct blk *b)
{
	struct error err = { 0 };

	/* Completed only after fdatasync: what the guest wrote before its
	 * flush is in the file when the flush completes. */
	if (disk_image_flush(&b->img, &err)) {
		io_error(b, &err);
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_get_id(struct blk *b, const struct vq_chain *c, uint32_t *written)
{
	size_t n = c->writable - 1;
	if (n > sizeof(b->serial))
		n = sizeof(b->serial);
	*written = (uint32_t)vq_chain_write(b->ram, c, 0, b->serial, n);
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_discard_or_zero(struct blk *b, const struct vq_chain *c, uint32_t type)
{
	bool zero = type == VIRTIO_BLK_T_WRITE_ZEROES;
	uint8_t segs[VIRTIO_BLK_MAX_DISCARD_SEG * DWZ_SEG_SIZE];
	uint32_t payload = c->readable - REQ_HDR_SIZE;
	struct error err = { 0 };

	if (b->img.read_only)
		return VIRTIO_BLK_S_IOERR;
	if (!virtio_has_feature(b->t, zero ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD))
		return VIRTIO_BLK_S_UNSUPP;
	if (payload == 0 || payload % DWZ_SEG_SIZE || payload > sizeof(segs))
		return VIRTIO_BLK_S_IOERR;
	unsigned count = payload / DWZ_SEG_SIZE;
	vq_chain_read(c, REQ_HDR_SIZE, segs, payload);

	/* Check every segment before acting on any, so that a bad request
	 * changes nothing. */
	for (unsigned i = 0; i < count; i++) {
		const uint8_t *s = segs + i * DWZ_SEG_SIZE;
		uint64_t sector = get_le64(s);
		uint32_t num = get_le32(s + 8), flags = get_le32(s + 12);
		/* 5.2.6.2: unknown flags, and UNMAP on a discard, are UNSUPP. */
		if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
			return VIRTIO_BLK_S_UNSUPP;
		if (!zero && (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			return VIRTIO_BLK_S_UNSUPP;
		if (num > VIRTIO_BLK_MAX_DISCARD_SECTORS || !range_ok(b, sector, num))
			return VIRTIO_BLK_S_IOERR;
	}
	for (unsigned i = 0; i < count; i++) {
		const uint8_t *s = segs + i * DWZ_SEG_SIZE;
		uint64_t off = get_le64(s) * VIRTIO_BLK_SECTOR_SIZE;
		uint64_t len = (uint64_t)get_le32(s + 8) * VIRTIO_BLK_SECTOR_SIZE;
		bool unmap = get_le32(s + 12) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		int ret = zero ? disk_image_write_zeroes(&b->img, off, len, unmap, &err)
			       : disk_image_discard(&b->img, off, len, &err);
		if (ret) {
			io_error(b, &err);
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

/* Processes one chain and pushes it. False if the chain is malformed and
 * the device has been marked NEEDS_RESET. */
static bool handle_request(struct blk *b, struct virtq *q, const struct vq_chain *c)
{
	uint8_t hdr[REQ_HDR_SIZE];
	uint32_t written = 0;           /* data bytes, without the status byte */
	uint8_t status;

	if (c->readable < REQ_HDR_SIZE || c->writable < 1) {
		char why[160];
		snprintf(why, sizeof(why), "virtio-blk request with %u readable and %u writable "
			 "bytes has no room for the 16-byte header and the status byte",
			 c->readable, c->writable);
		virtio_set_needs_reset(b->t, why);
		return false;
	}
	vq_chain_read(c, 0, hdr, sizeof(hdr));
	uint32_t type = get_le32(hdr);
	uint64_t sector = get_le64(hdr + 8);

	switch (type) {
	case VIRTIO_BLK_T_IN:
		status = do_read(b, c, sector, &written);
		break;
	case VIRTIO_BLK_T_OUT:
		status = do_write(b, c, sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = do_flush(b);
		break;
	case VIRTIO_BLK_T_GET_ID:
		status = do_get_id(b, c, &written);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = do_discard_or_zero(b, c, type);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (status == VIRTIO_BLK_S_OK && type == VIRTIO_BLK_T_IN)
		__atomic_fetch_add(&b->bytes_read, written, __ATOMIC_RELAXED);
	else if (status == VIRTIO_BLK_S_OK && type == VIRTIO_BLK_T_OUT)
		__atomic_fetch_add(&b->bytes_written, c->readable - REQ_HDR_SIZE, __ATOMIC_RELAXED);
	/* The status is the last byte of the writable part, wherever the
	 * driver's buffers put it (VERSION_1 implies any layout). */
	vq_chain_write(b->ram, c, c->writable - 1, &status, 1);
	vq_push(q, c->head, written + 1);
	return true;
}

/* ---- the worker ------------------------------------------------------------ */

/* Whether the worker may take another chain: not paused, reset or stopped. */
static bool may_continue(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	bool ok = b->active && !b->paused && !b->stop;
	pthread_mutex_unlock(&b->lock);
	return ok;
}

static void serve_queue(struct blk *b)
{
	struct virtio_mmio *t = b->t;
	struct virtq *q = virtio_queue(t, 0);
	unsigned pushed = 0;

	if (!q || !q->ready || virtio_is_broken(t))
		return;
	for (;;) {
		/* No kicks needed while we drain anyway. */
		vq_enable_notify(q, false);
		for (;;) {
			struct error err = { 0 };

			if (!may_continue(b))
				goto out;
			int r = vq_pop(q, &b->chain, &err);
			if (r < 0) {
				virtio_set_needs_reset(t, err.msg);
				goto out;
			}
			if (r == 0)
				break;
			if (!handle_request(b, q, &b->chain))
				goto out;
			if (++pushed == NOTIFY_BATCH) {
				virtio_notify_used(t, 0);
				pushed = 0;
			}
		}
		/* Re-enable, then look again: a request made available after
		 * the last pop but before the driver saw notifications enabled
		 * would not be kicked. */
		if (!vq_enable_notify(q, true))
			break;
	}
out:
	if (pushed)
		virtio_notify_used(t, 0);
}

static void *worker_main(void *arg)
{
	struct blk *b = arg;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->stop && !(b->active && !b->paused && b->kicked))
			pthread_cond_wait(&b->wake, &b->lock);
		if (b->stop)
			break;
		b->kicked = false;
		b->busy = true;
		pthread_mutex_unlock(&b->lock);

		serve_queue(b);

		pthread_mutex_lock(&b->lock);
		b->busy = false;
		pthread_cond_broadcast(&b->idle);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* Called with b->lock held: waits until the worker is off the queue.
 * Never from the worker itself (it would wait for itself). */
static void wait_idle(struct blk *b)
{
	if (pthread_equal(pthread_self(), b->worker))
		return;
	while (b->busy)
		pthread_cond_wait(&b->idle, &b->lock);
}

/* ---- backend operations ------------------------------------------------- */

static int blk_activate(void *be, struct error *err)
{
	struct blk *b = be;

	pthread_mutex_lock(&b->lock);
	b->active = true;
	/* The driver may have queued requests before DRIVER_OK, or the
	 * queues come from a restored snapshot: look once without a kick. */
	b->kicked = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void blk_reset(void *be)
{
	struct blk *b = be;

	pthread_mutex_lock(&b->lock);
	b->active = false;
	b->kicked = false;
	wait_idle(b);
	pthread_mutex_unlock(&b->lock);
}

static void blk_notify(void *be, unsigned queue)
{
	struct blk *b = be;

	if (queue != 0)
		return;
	pthread_mutex_lock(&b->lock);
	b->kicked = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

static void blk_pause(void *be)
{
	struct blk *b = be;

	pthread_mutex_lock(&b->lock);
	b->paused = true;
	wait_idle(b);
	pthread_mutex_unlock(&b->lock);
}

static void blk_resume(void *be)
{
	struct blk *b = be;

	pthread_mutex_lock(&b->lock);
	b->paused = false;
	/* Kicks that arrived while paused were recorded in `kicked`, but the
	 * worker may also have stopped mid-queue: look again either way. */
	b->kicked = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

/* The backend state. There is never a request in flight to save: pause()
 * completes the one being processed before the machine saves, and chains
 * not yet popped are still in the available ring, in guest RAM. The config
 * space follows from capacity and read-only, so only those (checked on
 * restore) and the serial the guest has seen are carried. */
static int blk_save(void *be, struct state_writer *w, struct error *err)
{
	struct blk *b = be;

	state_put_u32(w, F_VERSION, BLK_STATE_VERSION);
	state_put_bool(w, F_READ_ONLY, b->img.read_only);
	state_put_u64(w, F_CAPACITY, b->capacity);
	state_put_bytes(w, F_SERIAL, b->serial, sizeof(b->serial));
	return state_writer_status(w, err);
}

static int blk_restore(void *be, const struct state_reader *in, struct error *err)
{
	static const uint16_t known[] = { F_VERSION, F_READ_ONLY, F_CAPACITY, F_SERIAL };
	struct blk *b = be;
	struct state_reader r;
	uint32_t version;
	bool read_only;
	uint64_t capacity;
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
	int ret;

	/* Re-checked against this backend's own field list. */
	ret = state_reader_init(&r, in->data, in->len, in->what ? in->what : b->id, known,
				sizeof(known) / sizeof(known[0]), err);
	if (ret)
		return ret;
	if ((ret = state_get_u32(&r, F_VERSION, &version, err)))
		return ret;
	if (version != BLK_STATE_VERSION)
		return error_set(err, EINVAL, "%s: saved virtio-blk state has version %u, this "
				 "tern reads %u", b->id, version, BLK_STATE_VERSION);
	if ((ret = state_get_bool(&r, F_READ_ONLY, &read_only, err)) ||
	    (ret = state_get_u64(&r, F_CAPACITY, &capacity, err)) ||
	    (ret = state_get_bytes(&r, F_SERIAL, serial, sizeof(serial), err)))
		return ret;

	/* Everything is checked before anything changes. */
	if (capacity != b->capacity)
		return error_set(err, EINVAL, "%s: the saved VM's disk has %llu sectors (%llu "
				 "bytes) but %s has %llu sectors (%llu bytes); restore needs "
				 "the same image", b->id, (unsigned long long)capacity,
				 (unsigned long long)capacity * VIRTIO_BLK_SECTOR_SIZE, b->img.path,
				 (unsigned long long)b->capacity,
				 (unsigned long long)b->capacity * VIRTIO_BLK_SECTOR_SIZE);
	if (read_only != b->img.read_only)
		return error_set(err, EINVAL,
				 "%s: the saved VM's disk was %s but %s is opened %s here",
				 b->id, read_only ? "read-only" : "read-write", b->img.path,
				 b->img.read_only ? "read-only" : "read-write");
	if (memcmp(serial, b->serial, sizeof(serial)))
		/* Another file name, same size: most likely a copy of the image
		 * (or a migration target path). The guest keeps its serial. */
		log_info("%s: image %s restored under the saved serial \"%.20s\"", b->id,
			 b->img.path, (const char *)serial);
	memcpy(b->serial, serial, sizeof(serial));
	return 0;
}

static void blk_free(struct blk *b)
{
	disk_image_close(&b->img);
	pthread_cond_destroy(&b->idle);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void stop_worker(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->stop = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->worker, NULL);
}

static void blk_destroy(void *be)
{
	struct blk *b = be;

	stop_worker(b);
	blk_free(b);
}

static const struct virtio_backend_ops blk_ops = {
	.type = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
	.config_size = VIRTIO_BLK_CFG_SIZE,
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.reset = blk_reset,
	.notify = blk_notify,
	.pause = blk_pause,
	.resume = blk_resume,
	.save = blk_save,
	.restore = blk_restore,
	.destroy = blk_destroy,
};

static struct virtio_mmio *blk_create(const char *id, uint64_t base, struct irq_line irq,
				      struct guest_ram *ram, const char *path, bool read_only,
				      bool lock, struct error *err)
{
	struct blk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b) {
		error_set(err, ENOMEM, "%s: out of memory", id);
		return NULL;
	}
	b->ram = ram;
	snprintf(b->id, sizeof(b->id), "%s", id);
	if ((lock ? disk_image_open : disk_image_open_unlocked)(&b->img, path, read_only, err)) {
		error_wrap(err, "%s", id);
		free(b);
		return NULL;
	}
	b->capacity = b->img.size / VIRTIO_BLK_SECTOR_SIZE;
	make_serial(b, path);
	build_config(b);

	if ((ret = pthread_mutex_init(&b->lock, NULL))) {
		error_errno(err, ret, "%s: cannot create a mutex", id);
		goto fail_img;
	}
	if ((ret = pthread_cond_init(&b->wake, NULL))) {
		error_errno(err, ret, "%s: cannot create a condition variable", id);
		goto fail_lock;
	}
	if ((ret = pthread_cond_init(&b->idle, NULL))) {
		error_errno(err, ret, "%s: cannot create a condition variable", id);
		goto fail_wake;
	}
	/* The worker takes no signals: they belong to the thread the VM
	 * dedicates to them (devices are created before it blocks them), and
	 * would only interrupt the worker's system calls. */
	sigset_t all, old;
	sigfillset(&all);
	if ((ret = pthread_sigmask(SIG_SETMASK, &all, &old))) {
		error_errno(err, ret, "%s: cannot mask signals for the I/O thread", id);
		goto fail_idle;
	}
	ret = pthread_create(&b->worker, NULL, worker_main, b);
	int ret2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		error_errno(err, ret, "%s: cannot start the I/O thread", id);
		goto fail_idle;
	}
	if (ret2)
		log_warn("%s: cannot restore the signal mask: %s", id, strerror(ret2));
	/* Only a name for debuggers and top. */
	pthread_setname_np(b->worker, "tern-blk");

	/* The worker touches b->t only once activated, which the transport
	 * cannot do before it exists; the mutex publishes the pointer. */
	struct virtio_mmio *t = virtio_mmio_create(id, base, irq, ram, &blk_ops, b, err);
	if (!t) {
		blk_destroy(b);
		return NULL;
	}
	pthread_mutex_lock(&b->lock);
	b->t = t;
	pthread_mutex_unlock(&b->lock);
	return t;

fail_idle:
	pthread_cond_destroy(&b->idle);
fail_wake:
	pthread_cond_destroy(&b->wake);
fail_lock:
	pthread_mutex_destroy(&b->lock);
fail_img:
	disk_image_close(&b->img);
	free(b);
	return NULL;
}

struct virtio_mmio *virtio_blk_create(const char *id, uint64_t base, struct irq_line irq,
				      struct guest_ram *ram, const char *path, bool read_only,
				      struct error *err)
{
	return blk_create(id, base, irq, ram, path, read_only, true, err);
}

struct virtio_mmio *virtio_blk_create_unlocked(const char *id, uint64_t base,
					       struct irq_line irq, struct guest_ram *ram,
					       const char *path, bool read_only,
					       struct error *err)
{
	return blk_create(id, base, irq, ram, path, read_only, false, err);
}

int virtio_blk_lock(struct virtio_mmio *t, struct error *err)
{
	struct blk *b = virtio_backend(t);
	int rc = disk_image_lock(&b->img, err);
	return rc ? error_wrap(err, "%s", b->id) : 0;
}

void virtio_blk_unlock(struct virtio_mmio *t)
{
	struct blk *b = virtio_backend(t);
	disk_image_unlock(&b->img);
}

void virtio_blk_io(struct virtio_mmio *t, uint64_t *read, uint64_t *written)
{
	struct blk *b = virtio_backend(t);
	*read = __atomic_load_n(&b->bytes_read, __ATOMIC_RELAXED);
	*written = __atomic_load_n(&b->bytes_written, __ATOMIC_RELAXED);
}

struct disk_image *virtio_blk_image(struct virtio_mmio *t)
{
	struct blk *b = virtio_backend(t);
	return &b->img;
}
