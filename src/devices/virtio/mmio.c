/* mmio.c: the virtio-mmio transport, version 2 only (virtio 1.2, 4.2.2
 * "MMIO Device Register Layout", 4.2.3 "MMIO-specific Initialization And
 * Device Operation").
 *
 * What it owns: the register file, the device status state machine (2.1,
 * 3.1), feature negotiation (2.2), the configuration of each queue until
 * the driver sets DRIVER_OK, the interrupt status and the level of the IRQ
 * line, the config generation counter, and the transport's part of saved
 * state. What it never does: touch a queue's rings (queue.c does, on the
 * backend's thread), interpret config space (the backend's), or call a
 * backend operation that may wait for the backend's worker while holding
 * the lock that worker takes.
 *
 * Behaviour where the specification leaves room, or that it requires:
 * - Registers below 0x100 take only aligned 32-bit accesses (4.2.2.2); any
 *   other access there reads 0 and is ignored. Config space (from 0x100)
 *   takes 1, 2 and 4-byte accesses anywhere inside config_size, and 8-byte
 *   ones as two 4-byte ones, lower address first.
 * - DeviceFeatures = what the backend offers, minus the reserved transport
 *   bits 28..41 (a backend cannot offer ring layouts the transport does not
 *   implement), plus VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX and
 *   VIRTIO_F_INDIRECT_DESC, which queue.c implements.
 * - FEATURES_OK sticks only if the driver's features are a subset of those
 *   offered and include VERSION_1 (6.2: this device has no legacy
 *   interface); otherwise the bit reads back clear, which is how 2.2.2 and
 *   3.1.1 step 6 tell the driver. DriverFeatures is frozen once FEATURES_OK
 *   is set.
 * - The driver cannot clear status bits except by writing 0 (2.1.2), and
 *   cannot set NEEDS_RESET itself; such bits in a write are ignored.
 * - DRIVER_OK: the negotiated ring features go into each queue, every ready
 *   queue is validated (rings aligned and inside RAM), then the backend is
 *   activated; any failure sets DEVICE_NEEDS_RESET. After activation every
 *   ready queue gets one notification, so buffers the driver made
 *   available before DRIVER_OK are not forgotten.
 * - Queue registers (QueueNum, QueueReady, QueueDesc/Driver/Device) are
 *   ignored while the selected queue is ready and after DRIVER_OK: from
 *   then on the queue belongs to the backend's thread. QueueNum must be a
 *   power of two no larger than QueueNumMax; after a reset it is
 *   QueueNumMax. SHMLen/SHMBase read as ~0: there are no shared memory
 *   regions (4.2.2).
 * - NEEDS_RESET (2.1.2): the device stops serving (no notifications reach
 *   the backend), and if DRIVER_OK was set the driver gets a configuration
 *   change interrupt. The reason is logged once per device.
 * - The IRQ line is level-triggered: it is high exactly while
 *   InterruptStatus is non-zero (4.2.2: bits stay set until acknowledged).
 *
 * Locking. Two mutexes per transport, always taken in this order:
 *     ctl  ->  lock  ->  the interrupt controller's lock (irq_line_set)
 * `lock` guards every register. It is what backends take, from their own
 * threads, through virtio_notify_used/notify_config/set_needs_reset; the
 * only backend operations called with it held are config_read and
 * config_write. The PLIC never calls back into a device.
 * `ctl` serialises the control path: Status writes (reset, activation),
 * QueueNotify, save/restore, pause/resume and device reset. Backend
 * operations that may wait for the backend's worker (activate, reset,
 * pause, resume, save, restore) and notify are called with `ctl` held and
 * `lock` released; no backend thread ever takes `ctl`. So a backend sees
 * notify only between a successful activate and the next reset, never at
 * the same time as either. */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define MMIO_MAGIC 0x74726976u          /* "virt" */
#define MMIO_VERSION 2u
#define MMIO_VENDOR 0x6e726574u         /* "tern" */

/* Register offsets (4.2.2). */
enum {
	REG_MAGIC = 0x000,
	REG_VERSION = 0x004,
	REG_DEVICE_ID = 0x008,
	REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010,
	REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020,
	REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030,
	REG_QUEUE_NUM_MAX = 0x034,
	REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_STATUS = 0x060,
	REG_INTERRUPT_ACK = 0x064,
	REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080,
	REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090,
	REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0,
	REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_SHM_SEL = 0x0ac,
	REG_SHM_LEN_LOW = 0x0b0,
	REG_SHM_LEN_HIGH = 0x0b4,
	REG_SHM_BASE_LOW = 0x0b8,
	REG_SHM_BASE_HIGH = 0x0bc,
	REG_CONFIG_GENERATION = 0x0fc,
};

/* Status bits the driver may set (2.1). */
#define DRIVER_STATUS_BITS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
			    VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK | \
			    VIRTIO_STATUS_FAILED)
#define ALL_STATUS_BITS (DRIVER_STATUS_BITS | VIRTIO_STATUS_NEEDS_RESET)
/* 6: bits 28 to 41 are reserved for the transport and ring. */
#define TRANSPORT_FEATURES (((1ull << 42) - 1) & ~((1ull << 28) - 1))
#define RING_FEATURES ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) | \
		       (1ull << VIRTIO_F_INDIRECT_DESC))

/* Field ids of the saved transport record; never reuse one. */
enum {
	TS_VERSION = 0,
	TS_DEVICE_ID = 1,
	TS_NUM_QUEUES = 2,
	TS_STATUS = 3,
	TS_DEVICE_FEATURES_SEL = 4,
	TS_DRIVER_FEATURES = 5,
	TS_DRIVER_FEATURES_SEL = 6,
	TS_QUEUE_SEL = 7,
	TS_INTERRUPT_STATUS = 8,
	TS_CONFIG_GENERATION = 9,
	TS_BROKEN = 10,
	TS_QUEUE0 = 16,         /* 16 + queue index, nested vq_save records */
	TS_BACKEND = 32,        /* the backend's own nested record */
};
#define TRANSPORT_STATE_VERSION 1u

_Static_assert(TS_QUEUE0 + VIRTIO_MAX_QUEUES <= TS_BACKEND, "queue record ids overlap");

struct virtio_mmio {
	struct device dev;
	pthread_mutex_t ctl;            /* the control path, see the header comment */
	pthread_mutex_t lock;           /* every field below */
	const struct virtio_backend_ops *ops;
	void *be;
	struct guest_ram *ram;
	struct irq_line irq;
	uint64_t offered;               /* DeviceFeatures, fixed at creation */

	uint32_t status;
	uint32_t device_features_sel;
	uint64_t driver_features;       /* written atomically: backends read it unlocked */
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint32_t config_generation;
	bool broken;                    /* written atomically: backends read it unlocked */
	bool warned;                    /* NEEDS_RESET was logged once already */
	bool paused;                    /* guarded by ctl */
	struct virtq vq[VIRTIO_MAX_QUEUES];
};

static struct virtio_mmio *to_mmio(struct device *dev)
{
	return (struct virtio_mmio *)((char *)dev - offsetof(struct virtio_mmio, dev));
}

static void lock(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
}

static void unlock(struct virtio_mmio *t)
{
	pthread_mutex_unlock(&t->lock);
}

/* Called whenever interrupt_status changes, with `lock` held. */
static void update_irq(struct virtio_mmio *t)
{
	irq_line_set(&t->irq, t->interrupt_status != 0);
}

static void set_broken(struct virtio_mmio *t, bool broken)
{
	__atomic_store_n(&t->broken, broken, __ATOMIC_RELEASE);
}

static void set_driver_features(struct virtio_mmio *t, uint64_t f)
{
	__atomic_store_n(&t->driver_features, f, __ATOMIC_RELEASE);
}

/* With `lock` held. */
static void needs_reset_locked(struct virtio_mmio *t, const char *why)
{
	if (t->broken)
		return;
	set_broken(t, true);
	t->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* The guest can trigger this at will: say it loudly only once. */
	if (!t->warned) {
		t->warned = true;
		log_warn("%s: %s; the device needs a reset by its driver", t->dev.id, why);
	} else {
		log_debug("%s: %s; the device needs a reset by its driver", t->dev.id, why);
	}
	/* 2.1.2: after DRIVER_OK, NEEDS_RESET comes with a config change
	 * notification. */
	if (t->status & VIRTIO_STATUS_DRIVER_OK) {
		t->interrupt_status |= VIRTIO_INT_CONFIG;
		update_irq(t);
	}
}

static struct virtq *selected_queue(struct virtio_mmio *t)
{
	return t->queue_sel < t->ops->num_queues ? &t->vq[t->queue_sel] : NULL;
}

/* The selected queue if the driver may still configure it. */
static struct virtq *configurable_queue(struct virtio_mmio *t)
{
	struct virtq *q = selected_queue(t);
	if (!q || q->ready || (t->status & VIRTIO_STATUS_DRIVER_OK))
		return NULL;
	return q;
}

static void set_low(uint64_t *v, uint32_t low)
{
	*v = (*v & ~0xffffffffull) | low;
}

static void set_high(uint64_t *v, uint32_t high)
{
	*v = (*v & 0xffffffffull) | (uint64_t)high << 32;
}

static void reset_queues_locked(struct virtio_mmio *t)
{
	for (unsigned i = 0; i < t->ops->num_queues; i++) {
		vq_reset(&t->vq[i]);
		t->vq[i].num = t->ops->queue_max_size;
	}
}

/* Device reset (driver wrote 0 to Status, or the machine resets). With
 * `ctl` held and `lock` not: the backend's reset waits for its worker,
 * which may be about to take `lock`. */
static void do_reset(struct virtio_mmio *t)
{
	t->ops->reset(t->be);
	lock(t);
	reset_queues_locked(t);
	t->status = 0;
	t->device_features_sel = 0;
	set_driver_features(t, 0);
	t->driver_features_sel = 0;
	t->queue_sel = 0;
	t->interrupt_status = 0;
	set_broken(t, false);
	update_irq(t);
	unlock(t);
}

/* One notification for every ready queue: after activation (buffers made
 * available before DRIVER_OK) and after resume (work that arrived while
 * paused). With `ctl` held, `lock` not. */
static void kick_queues(struct virtio_mmio *t)
{
	for (unsigned i = 0; i < t->ops->num_queues; i++)
		if (t->vq[i].ready)
			t->ops->notify(t->be, i);
}

/* 2.2.1, 2.2.2, 6.2: a subset of what was offered, and VERSION_1. */
static bool features_acceptable(const struct virtio_mmio *t, uint64_t f)
{
	return !(f & ~t->offered) && (f >> VIRTIO_F_VERSION_1) & 1;
}

static void write_status(struct virtio_mmio *t, uint32_t value)
{
	pthread_mutex_lock(&t->ctl);
	if (value == 0) {
		do_reset(t);
		pthread_mutex_unlock(&t->ctl);
		return;
	}

	lock(t);
	uint32_t old = t->status;
	uint32_t add = value & ~old & DRIVER_STATUS_BITS;
	bool activate = false;
	char why[sizeof(((struct error *)0)->msg) + 48] = "";

	if ((add & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(t, t->driver_features)) {
		log_debug("%s: FEATURES_OK refused: driver features 0x%llx, offered 0x%llx",
			  t->dev.id, (unsigned long long)t->driver_features,
			  (unsigned long long)t->offered);
		add &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	if (add & VIRTIO_STATUS_DRIVER_OK) {
		if (!((old | add) & VIRTIO_STATUS_FEATURES_OK)) {
			add &= ~VIRTIO_STATUS_DRIVER_OK;
			snprintf(why, sizeof(why), "the driver set DRIVER_OK without FEATURES_OK");
		} else if (!t->broken) {
			bool event_idx = (t->driver_features >> VIRTIO_F_EVENT_IDX) & 1;
			bool indirect = (t->driver_features >> VIRTIO_F_INDIRECT_DESC) & 1;
			activate = true;
			for (unsigned i = 0; i < t->ops->num_queues && activate; i++) {
				struct virtq *q = &t->vq[i];
				struct error err = { 0 };
				q->event_idx = event_idx;
				q->indirect = indirect;
				if (vq_validate(q, &err)) {
					snprintf(why, sizeof(why), "queue %u: %s", i, err.msg);
					activate = false;
				}
			}
		}
	}
	/* DRIVER_OK becomes visible together with the validation above, so
	 * no queue register write can slip in between. NEEDS_RESET follows,
	 * so that a driver that set DRIVER_OK also gets the config interrupt. */
	t->status = old | add;
	if (why[0])
		needs_reset_locked(t, why);
	unlock(t);

	if (activate) {
		struct error err = { 0 };
		if (t->ops->activate(t->be, &err)) {
			snprintf(why, sizeof(why), "activation failed: %s", err.msg);
			lock(t);
			needs_reset_locked(t, why);
			unlock(t);
		} else {
			kick_queues(t);
		}
	}
	pthread_mutex_unlock(&t->ctl);
}

static void queue_notify(struct virtio_mmio *t, uint32_t index)
{
	pthread_mutex_lock(&t->ctl);
	lock(t);
	bool deliver = index < t->ops->num_queues && (t->status & VIRTIO_STATUS_DRIVER_OK) &&
		       !t->broken && t->vq[index].ready;
	unlock(t);
	/* Without `lock`: the backend may answer on this thread and call
	 * virtio_notify_used(). */
	if (deliver)
		t->ops->notify(t->be, index);
	pthread_mutex_unlock(&t->ctl);
}

/* ---- config space ---------------------------------------------------------- */

static bool config_access_ok(const struct virtio_mmio *t, uint64_t off, unsigned size)
{
	return (size == 1 || size == 2 || size == 4 || size == 8) &&
	       off < t->ops->config_size && size <= t->ops->config_size - off;
}

static uint64_t config_read(struct virtio_mmio *t, uint64_t off, unsigned size)
{
	if (!config_access_ok(t, off, size) || !t->ops->config_read)
		return 0;
	uint8_t buf[8] = { 0 };
	lock(t);
	if (size == 8) {
		t->ops->config_read(t->be, (uint32_t)off, buf, 4);
		t->ops->config_read(t->be, (uint32_t)off + 4, buf + 4, 4);
	} else {
		t->ops->config_read(t->be, (uint32_t)off, buf, size);
	}
	unlock(t);
	/* Config space is little-endian (4.2.2: "little-endian format"). */
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)buf[i] << (8 * i);
	return v;
}

static void config_write(struct virtio_mmio *t, uint64_t off, uint64_t value, unsigned size)
{
	if (!config_access_ok(t, off, size) || !t->ops->config_write)
		return;
	uint8_t buf[8];
	for (unsigned i = 0; i < size; i++)
		buf[i] = (uint8_t)(value >> (8 * i));
	lock(t);
	if (size == 8) {
		t->ops->config_write(t->be, (uint32_t)off, buf, 4);
		t->ops->config_write(t->be, (uint32_t)off + 4, buf + 4, 4);
	} else {
		t->ops->config_write(t->be, (uint32_t)off, buf, size);
	}
	unlock(t);
}

/* ---- registers ---------------------------------------------------------- */

static uint64_t mmio_read(struct device *dev, uint64_t offset, unsigned size)
{
	struct virtio_mmio *t = to_mmio(dev);
	if (offset >= VIRTIO_MMIO_WINDOW)
		return 0;
	if (offset >= VIRTIO_MMIO_CONFIG_OFFSET)
		return config_read(t, offset - VIRTIO_MMIO_CONFIG_OFFSET, size);
	if (size != 4 || (offset & 3))
		return 0;

	uint32_t v = 0;
	lock(t);
	struct virtq *q = selected_queue(t);
	switch (offset) {
	case REG_MAGIC:
		v = MMIO_MAGIC;
		break;
	case REG_VERSION:
		v = MMIO_VERSION;
		break;
	case REG_DEVICE_ID:
		v = t->ops->device_id;
		break;
	case REG_VENDOR_ID:
		v = MMIO_VENDOR;
		break;
	case REG_DEVICE_FEATURES:
		if (t->device_features_sel < 2)
			v = (uint32_t)(t->offered >> (32 * t->device_features_sel));
		break;
	case REG_QUEUE_NUM_MAX:
		v = q ? t->ops->queue_max_size : 0;
		break;
	case REG_QUEUE_READY:
		v = q ? q->ready : 0;
		break;
	case REG_INTERRUPT_STATUS:
		v = t->interrupt_status;
		break;
	case REG_STATUS:
		v = t->status;
		break;
	case REG_SHM_LEN_LOW:
	case REG_SHM_LEN_HIGH:
	case REG_SHM_BASE_LOW:
	case REG_SHM_BASE_HIGH:
		v = 0xffffffffu;
		break;
	case REG_CONFIG_GENERATION:
		v = t->config_generation;
		break;
	default:
		break;
	}
	unlock(t);
	return v;
}

static void mmio_write(struct device *dev, uint64_t offset, uint64_t value, unsigned size)
{
	struct virtio_mmio *t = to_mmio(dev);
	if (offset >= VIRTIO_MMIO_WINDOW)
		return;
	if (offset >= VIRTIO_MMIO_CONFIG_OFFSET) {
		config_write(t, offset - VIRTIO_MMIO_CONFIG_OFFSET, value, size);
		return;
	}
	if (size != 4 || (offset & 3))
		return;
	uint32_t v = (uint32_t)value;
	if (offset == REG_STATUS) {
		write_status(t, v);
		return;
	}
	if (offset == REG_QUEUE_NOTIFY) {
		queue_notify(t, v);
		return;
	}

	lock(t);
	struct virtq *q = configurable_queue(t);
	switch (offset) {
	case REG_DEVICE_FEATURES_SEL:
		t->device_features_sel = v;
		break;
	case REG_DRIVER_FEATURES:
		if (!(t->status & VIRTIO_STATUS_FEATURES_OK) && t->driver_features_sel < 2) {
			uint64_t f = t->driver_features;
			if (t->driver_features_sel == 0)
				set_low(&f, v);
			else
				set_high(&f, v);
			set_driver_features(t, f);
		}
		break;
	case REG_DRIVER_FEATURES_SEL:
		t->driver_features_sel = v;
		break;
	case REG_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case REG_QUEUE_NUM:
		if (q && v && v <= t->ops->queue_max_size && !(v & (v - 1)))
			q->num = (uint16_t)v;
		break;
	case REG_QUEUE_READY: {
		/* Writing 0 is how a driver takes a queue down (Linux's
		 * vm_del_vq), so it works on a ready queue too, but only
		 * before DRIVER_OK: afterwards the queue is the backend's. */
		struct virtq *s = selected_queue(t);
		if (s && !(t->status & VIRTIO_STATUS_DRIVER_OK) && v <= 1)
			s->ready = v;
		break;
	}
	case REG_INTERRUPT_ACK:
		t->interrupt_status &= ~v;
		update_irq(t);
		break;
	case REG_QUEUE_DESC_LOW:
		if (q)
			set_low(&q->desc_addr, v);
		break;
	case REG_QUEUE_DESC_HIGH:
		if (q)
			set_high(&q->desc_addr, v);
		break;
	case REG_QUEUE_DRIVER_LOW:
		if (q)
			set_low(&q->avail_addr, v);
		break;
	case REG_QUEUE_DRIVER_HIGH:
		if (q)
			set_high(&q->avail_addr, v);
		break;
	case REG_QUEUE_DEVICE_LOW:
		if (q)
			set_low(&q->used_addr, v);
		break;
	case REG_QUEUE_DEVICE_HIGH:
		if (q)
			set_high(&q->used_addr, v);
		break;
	default:
		break;
	}
	unlock(t);
}

static void mmio_reset(struct device *dev)
{
	struct virtio_mmio *t = to_mmio(dev);
	pthread_mutex_lock(&t->ctl);
	do_reset(t);
	pthread_mutex_unlock(&t->ctl);
}

/* ---- save / restore ---------------------------------------------------- */

static int mmio_save(struct device *dev, struct state_writer *w, struct error *err)
{
	struct virtio_mmio *t = to_mmio(dev);
	int rc = 0;
	pthread_mutex_lock(&t->ctl);
	lock(t);
	/* The queues' progress belongs to the backend's worker until it is
	 * paused; reading it meanwhile would save a moving target. */
	if ((t->status & VIRTIO_STATUS_DRIVER_OK) && !t->paused) {
		unlock(t);
		pthread_mutex_unlock(&t->ctl);
		return error_set(err, EBUSY, "%s: cannot save a running virtio device; pause it "
				 "first", t->dev.id);
	}
	state_put_u32(w, TS_VERSION, TRANSPORT_STATE_VERSION);
	state_put_u32(w, TS_DEVICE_ID, t->ops->device_id);
	state_put_u32(w, TS_NUM_QUEUES, t->ops->num_queues);
	state_put_u32(w, TS_STATUS, t->status);
	state_put_u32(w, TS_DEVICE_FEATURES_SEL, t->device_features_sel);
	state_put_u64(w, TS_DRIVER_FEATURES, t->driver_features);
	state_put_u32(w, TS_DRIVER_FEATURES_SEL, t->driver_features_sel);
	state_put_u32(w, TS_QUEUE_SEL, t->queue_sel);
	state_put_u32(w, TS_INTERRUPT_STATUS, t->interrupt_status);
	state_put_u32(w, TS_CONFIG_GENERATION, t->config_generation);
	state_put_bool(w, TS_BROKEN, t->broken);
	for (unsigned i = 0; i < t->ops->num_queues; i++) {
		size_t tok = state_begin(w, (uint16_t)(TS_QUEUE0 + i));
		vq_save(&t->vq[i], w);
		state_end(w, tok);
	}
	unlock(t);

	size_t tok = state_begin(w, TS_BACKEND);
	if (t->ops->save && (rc = t->ops->save(t->be, w, err)))
		error_wrap(err, "%s", t->dev.id);
	state_end(w, tok);
	if (!rc)
		rc = state_writer_status(w, err);
	pthread_mutex_unlock(&t->ctl);
	return rc;
}

/* Everything the transport restores, read and checked before any of it is
 * applied. */
struct saved {
	uint32_t status, device_features_sel, driver_features_sel, queue_sel;
	uint32_t interrupt_status, config_generation;
	uint64_t driver_features;
	bool broken;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	struct state_reader backend;
};

static int read_saved(struct virtio_mmio *t, const struct state_reader *in, struct saved *s,
		      struct error *err)
{
	static const uint16_t known[] = {
		TS_VERSION, TS_DEVICE_ID, TS_NUM_QUEUES, TS_STATUS, TS_DEVICE_FEATURES_SEL,
		TS_DRIVER_FEATURES, TS_DRIVER_FEATURES_SEL, TS_QUEUE_SEL, TS_INTERRUPT_STATUS,
		TS_CONFIG_GENERATION, TS_BROKEN, TS_QUEUE0, TS_QUEUE0 + 1, TS_QUEUE0 + 2,
		TS_QUEUE0 + 3, TS_BACKEND,
	};
	_Static_assert(VIRTIO_MAX_QUEUES == 4, "list every queue record id in known[]");
	const char *id = t->dev.id;
	struct state_reader r;
	uint32_t version, device_id, num_queues;
	int rc;

	if ((rc = state_reader_init(&r, in->data, in->len, id, known,
				    sizeof(known) / sizeof(known[0]), err)))
		return rc;
	if ((rc = state_get_u32(&r, TS_VERSION, &version, err)))
		return rc;
	if (version != TRANSPORT_STATE_VERSION)
		return error_set(err, EINVAL, "%s: virtio-mmio state version %u is not %u", id,
				 version, TRANSPORT_STATE_VERSION);
	if ((rc = state_get_u32(&r, TS_DEVICE_ID, &device_id, err)) ||
	    (rc = state_get_u32(&r, TS_NUM_QUEUES, &num_queues, err)) ||
	    (rc = state_get_u32(&r, TS_STATUS, &s->status, err)) ||
	    (rc = state_get_u32(&r, TS_DEVICE_FEATURES_SEL, &s->device_features_sel, err)) ||
	    (rc = state_get_u64(&r, TS_DRIVER_FEATURES, &s->driver_features, err)) ||
	    (rc = state_get_u32(&r, TS_DRIVER_FEATURES_SEL, &s->driver_features_sel, err)) ||
	    (rc = state_get_u32(&r, TS_QUEUE_SEL, &s->queue_sel, err)) ||
	    (rc = state_get_u32(&r, TS_INTERRUPT_STATUS, &s->interrupt_status, err)) ||
	    (rc = state_get_u32(&r, TS_CONFIG_GENERATION, &s->config_generation, err)) ||
	    (rc = state_get_bool(&r, TS_BROKEN, &s->broken, err)))
		return rc;

	if (device_id != t->ops->device_id)
		return error_set(err, EINVAL, "%s: saved state is of virtio device id %u, this is "
				 "a %s (id %u)", id, device_id, t->ops->type, t->ops->device_id);
	if (num_queues != t->ops->num_queues)
		return error_set(err, EINVAL, "%s: saved state has %u queues, this %s has %u", id,
				 num_queues, t->ops->type, t->ops->num_queues);
	for (unsigned i = num_queues; i < VIRTIO_MAX_QUEUES; i++)
		if (state_has(&r, (uint16_t)(TS_QUEUE0 + i)))
			return error_set(err, EINVAL, "%s: saved state has a record for queue %u, "
					 "this %s has %u queues", id, i, t->ops->type, num_queues);
	if (s->status & ~ALL_STATUS_BITS)
		return error_set(err, EINVAL, "%s: saved status 0x%x has unknown bits", id,
				 s->status);
	if (s->driver_features & ~t->offered)
		return error_set(err, EINVAL, "%s: saved driver features 0x%llx include 0x%llx, "
				 "which this device does not offer", id,
				 (unsigned long long)s->driver_features,
				 (unsigned long long)(s->driver_features & ~t->offered));
	if ((s->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !features_acceptable(t, s->driver_features))
		return error_set(err, EINVAL, "%s: saved status has FEATURES_OK but the features "
				 "0x%llx lack VIRTIO_F_VERSION_1", id,
				 (unsigned long long)s->driver_features);
	if ((s->status & VIRTIO_STATUS_DRIVER_OK) && !(s->status & VIRTIO_STATUS_FEATURES_OK))
		return error_set(err, EINVAL, "%s: saved status 0x%x has DRIVER_OK without "
				 "FEATURES_OK", id, s->status);
	if (s->broken != !!(s->status & VIRTIO_STATUS_NEEDS_RESET))
		return error_set(err, EINVAL, "%s: saved status 0x%x disagrees with the saved "
				 "broken flag", id, s->status);
	if (s->interrupt_status & ~(VIRTIO_INT_USED | VIRTIO_INT_CONFIG))
		return error_set(err, EINVAL, "%s: saved interrupt status 0x%x has unknown bits",
				 id, s->interrupt_status);

	bool event_idx = (s->driver_features >> VIRTIO_F_EVENT_IDX) & 1;
	bool indirect = (s->driver_features >> VIRTIO_F_INDIRECT_DESC) & 1;
	for (unsigned i = 0; i < num_queues; i++) {
		struct state_reader sub;
		struct virtq *q = &s->vq[i];
		memset(q, 0, sizeof(*q));
		q->ram = t->ram;
		if ((rc = state_get_record(&r, (uint16_t)(TS_QUEUE0 + i), &sub, NULL, 0, err)) ||
		    (rc = vq_restore(q, &sub, err)))
			return error_wrap(err, "queue %u", i);
		if (q->num > t->ops->queue_max_size)
			return error_set(err, EINVAL, "%s: queue %u: saved size %u is larger than "
					 "this device's %u", id, i, q->num,
					 t->ops->queue_max_size);
		if ((q->event_idx && !event_idx) || (q->indirect && !indirect))
			return error_set(err, EINVAL, "%s: queue %u uses a ring feature that was "
					 "not negotiated", id, i);
	}
	if ((rc = state_get_record(&r, TS_BACKEND, &s->backend, NULL, 0, err)))
		return rc;
	return 0;
}

static int mmio_restore(struct device *dev, struct state_reader *in, struct error *err)
{
	struct virtio_mmio *t = to_mmio(dev);
	struct saved *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, ENOMEM, "%s: out of memory restoring", t->dev.id);
	pthread_mutex_lock(&t->ctl);
	lock(t);
	uint32_t cur_status = t->status;
	unlock(t);

	int rc;
	if (cur_status != 0) {
		rc = error_set(err, EBUSY, "%s: restore needs a device its driver has not set up "
			       "(status is 0x%x)", t->dev.id, cur_status);
		goto out;
	}
	if ((rc = read_saved(t, in, s, err)))
		goto out;
	/* The backend checks its own record before changing anything. */
	if (t->ops->restore && (rc = t->ops->restore(t->be, &s->backend, err))) {
		error_wrap(err, "%s", t->dev.id);
		goto out;
	}

	lock(t);
	t->status = s->status;
	t->device_features_sel = s->device_features_sel;
	set_driver_features(t, s->driver_features);
	t->driver_features_sel = s->driver_features_sel;
	t->queue_sel = s->queue_sel;
	t->interrupt_status = s->interrupt_status;
	t->config_generation = s->config_generation;
	set_broken(t, s->broken);
	for (unsigned i = 0; i < t->ops->num_queues; i++)
		t->vq[i] = s->vq[i];
	update_irq(t);
	bool activate = (t->status & VIRTIO_STATUS_DRIVER_OK) && !t->broken;
	unlock(t);

	if (activate) {
		if ((rc = t->ops->activate(t->be, err))) {
			char why[sizeof(err->msg) + 48];
			snprintf(why, sizeof(why), "activation after restore failed: %s", err->msg);
			lock(t);
			needs_reset_locked(t, why);
			unlock(t);
			error_wrap(err, "%s: activating after restore", t->dev.id);
		} else if (!t->paused) {
			kick_queues(t);
		}
	}
out:
	pthread_mutex_unlock(&t->ctl);
	free(s);
	return rc;
}

static void mmio_destroy(struct device *dev)
{
	struct virtio_mmio *t = to_mmio(dev);
	if (t->ops->destroy)
		t->ops->destroy(t->be);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->ctl);
	free(t);
}

static const struct device_ops mmio_ops = {
	.type = "virtio-mmio",
	.read = mmio_read,
	.write = mmio_write,
	.reset = mmio_reset,
	.save = mmio_save,
	.restore = mmio_restore,
	.destroy = mmio_destroy,
};

/* ---- creation and the backend's interface -------------------------------- */

struct virtio_mmio *virtio_mmio_create(const char *id, uint64_t base, struct irq_line irq,
				       struct guest_ram *ram,
				       const struct virtio_backend_ops *ops, void *be,
				       struct error *err)
{
	if (!id || !*id || strlen(id) >= sizeof(((struct device *)0)->id)) {
		error_set(err, EINVAL, "virtio-mmio instance name \"%s\" is empty or too long",
			  id ? id : "");
		return NULL;
	}
	if (!ops || !ram) {
		error_set(err, EINVAL, "%s: no backend or no guest RAM", id);
		return NULL;
	}
	if (ops->num_queues < 1 || ops->num_queues > VIRTIO_MAX_QUEUES) {
		error_set(err, EINVAL, "%s: %u queues is out of range: 1 to %d", id,
			  ops->num_queues, VIRTIO_MAX_QUEUES);
		return NULL;
	}
	uint16_t max = ops->queue_max_size;
	if (max == 0 || max > VQ_MAX_SIZE || (max & (max - 1))) {
		error_set(err, EINVAL, "%s: queue size %u is not a power of two from 1 to %d", id,
			  max, VQ_MAX_SIZE);
		return NULL;
	}
	if (ops->config_size > VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG_OFFSET) {
		error_set(err, EINVAL, "%s: config space of %u bytes does not fit the window", id,
			  ops->config_size);
		return NULL;
	}
	if (!ops->activate || !ops->reset || !ops->notify ||
	    (ops->config_size && !ops->config_read)) {
		error_set(err, EINVAL, "%s: backend %s lacks activate, reset, notify or "
			  "config_read", id, ops->type ? ops->type : "?");
		return NULL;
	}

	struct virtio_mmio *t = calloc(1, sizeof(*t));
	if (!t) {
		error_set(err, ENOMEM, "%s: out of memory", id);
		return NULL;
	}
	pthread_mutex_init(&t->ctl, NULL);
	pthread_mutex_init(&t->lock, NULL);
	t->dev.ops = &mmio_ops;
	snprintf(t->dev.id, sizeof(t->dev.id), "%s", id);
	t->dev.base = base;
	t->dev.size = VIRTIO_MMIO_WINDOW;
	t->ops = ops;
	t->be = be;
	t->ram = ram;
	t->irq = irq;
	uint64_t f = ops->features ? ops->features(be) : 0;
	t->offered = (f & ~TRANSPORT_FEATURES) | RING_FEATURES;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		t->vq[i].ram = ram;
	reset_queues_locked(t);
	return t;
}

struct device *virtio_mmio_device(struct virtio_mmio *t)
{
	return &t->dev;
}

struct virtq *virtio_queue(struct virtio_mmio *t, unsigned index)
{
	return index < t->ops->num_queues ? &t->vq[index] : NULL;
}

uint64_t virtio_driver_features(const struct virtio_mmio *t)
{
	return __atomic_load_n(&t->driver_features, __ATOMIC_ACQUIRE);
}

bool virtio_is_broken(const struct virtio_mmio *t)
{
	return __atomic_load_n(&t->broken, __ATOMIC_ACQUIRE);
}

void virtio_notify_used(struct virtio_mmio *t, unsigned index)
{
	if (index >= t->ops->num_queues)
		return;
	lock(t);
	/* 2.1.2: no used buffer notification before DRIVER_OK. */
	if ((t->status & VIRTIO_STATUS_DRIVER_OK) && !t->broken &&
	    vq_should_notify(&t->vq[index])) {
		t->interrupt_status |= VIRTIO_INT_USED;
		update_irq(t);
	}
	unlock(t);
}

void virtio_notify_config(struct virtio_mmio *t)
{
	lock(t);
	t->config_generation++;
	if (t->status & VIRTIO_STATUS_DRIVER_OK) {
		t->interrupt_status |= VIRTIO_INT_CONFIG;
		update_irq(t);
	}
	unlock(t);
}

void virtio_set_needs_reset(struct virtio_mmio *t, const char *why)
{
	lock(t);
	needs_reset_locked(t, why ? why : "unknown reason");
	unlock(t);
}

void virtio_mmio_pause(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->ctl);
	if (!t->paused) {
		if (t->ops->pause)
			t->ops->pause(t->be);
		t->paused = true;
	}
	pthread_mutex_unlock(&t->ctl);
}

void virtio_mmio_resume(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->ctl);
	if (t->paused) {
		if (t->ops->resume)
			t->ops->resume(t->be);
		t->paused = false;
		lock(t);
		bool running = (t->status & VIRTIO_STATUS_DRIVER_OK) && !t->broken;
		unlock(t);
		if (running)
			kick_queues(t);
	}
	pthread_mutex_unlock(&t->ctl);
}

void *virtio_backend(struct virtio_mmio *t)
{
	return t->be;
}
