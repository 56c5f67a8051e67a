/* test_virtio_mmio.c: the virtio-mmio transport (virtio 1.2, 4.2.2) driven
 * through its registers exactly as Linux's virtio_mmio driver does at
 * probe, with a dummy backend written here (two queues, a 12-byte config
 * space, a few feature bits, its own saved state) and a fake interrupt
 * controller that records the line's level. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtio.h"

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (1ull << 20)
#define QMAX 8
#define DUMMY_ID VIRTIO_ID_BLOCK
#define F_DUMMY_A (1ull << 5)
#define F_DUMMY_B (1ull << 9)
#define F_EVENT (1ull << VIRTIO_F_EVENT_IDX)
#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_V1 (1ull << VIRTIO_F_VERSION_1)

enum {
	MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c,
	DEV_FEATURES = 0x010, DEV_FEATURES_SEL = 0x014, DRV_FEATURES = 0x020,
	DRV_FEATURES_SEL = 0x024, QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038,
	QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050, INT_STATUS = 0x060, INT_ACK = 0x064,
	STATUS = 0x070, DESC_LO = 0x080, DESC_HI = 0x084, DRIVER_LO = 0x090, DRIVER_HI = 0x094,
	DEVICE_LO = 0x0a0, DEVICE_HI = 0x0a4, SHM_SEL = 0x0ac, SHM_LEN_LO = 0x0b0,
	CONFIG_GEN = 0x0fc, CONFIG = 0x100,
};

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRIVER VIRTIO_STATUS_DRIVER
#define S_FEATURES_OK VIRTIO_STATUS_FEATURES_OK
#define S_DRIVER_OK VIRTIO_STATUS_DRIVER_OK

/* ---- the dummy backend ------------------------------------------------------- */

struct dummy {
	struct virtio_mmio *t;          /* set after creation */
	uint64_t features;
	uint8_t config[12];
	unsigned config_reads, config_writes, last_config_len;
	unsigned activations, resets, pauses, resumes, restores, destroyed;
	unsigned notifies[VIRTIO_MAX_QUEUES];
	bool fail_activate;
	bool serve_on_notify;           /* pop and push right in notify() */
	uint32_t counter;               /* the backend's own saved state */
	unsigned *destroy_count;
};

static uint64_t d_features(void *be)
{
	return ((struct dummy *)be)->features;
}

static void d_config_read(void *be, uint32_t off, void *buf, uint32_t len)
{
	struct dummy *d = be;
	assert_true(off + len <= sizeof(d->config));
	memcpy(buf, d->config + off, len);
	d->config_reads++;
	d->last_config_len = len;
}

static void d_config_write(void *be, uint32_t off, const void *buf, uint32_t len)
{
	struct dummy *d = be;
	assert_true(off + len <= sizeof(d->config));
	memcpy(d->config + off, buf, len);
	d->config_writes++;
	d->last_config_len = len;
}

static int d_activate(void *be, struct error *err)
{
	struct dummy *d = be;
	if (d->fail_activate)
		return error_set(err, EIO, "the dummy's disk is gone");
	d->activations++;
	return 0;
}

static void d_reset(void *be)
{
	((struct dummy *)be)->resets++;
}

static void d_notify(void *be, unsigned queue)
{
	struct dummy *d = be;
	d->notifies[queue]++;
	if (!d->serve_on_notify)
		return;
	/* Served on the notifying thread: this takes the transport lock, so
	 * it deadlocks unless notify is called without it. */
	struct virtq *q = virtio_queue(d->t, queue);
	static struct vq_chain chain;
	struct error err = { 0 };
	int rc;
	while ((rc = vq_pop(q, &chain, &err)) == 1) {
		vq_push(q, chain.head, 0);
		virtio_notify_used(d->t, queue);
	}
	if (rc < 0)
		virtio_set_needs_reset(d->t, err.msg);
}

static void d_pause(void *be)
{
	((struct dummy *)be)->pauses++;
}

static void d_resume(void *be)
{
	((struct dummy *)be)->resumes++;
}

static int d_save(void *be, struct state_writer *w, struct error *err)
{
	struct dummy *d = be;
	state_put_u32(w, 0, 1);
	state_put_u32(w, 1, d->counter);
	state_put_bytes(w, 2, d->config, sizeof(d->config));
	return 0;
}

static int d_restore(void *be, const struct state_reader *in, struct error *err)
{
	static const uint16_t known[] = { 0, 1, 2 };
	struct dummy *d = be;
	struct state_reader r;
	uint32_t version, counter;
	uint8_t config[sizeof(d->config)];
	int rc;
	if ((rc = state_reader_init(&r, in->data, in->len, in->what, known, 3, err)) ||
	    (rc = state_get_u32(&r, 0, &version, err)) ||
	    (rc = state_get_u32(&r, 1, &counter, err)) ||
	    (rc = state_get_bytes(&r, 2, config, sizeof(config), err)))
		return rc;
	d->counter = counter;
	memcpy(d->config, config, sizeof(config));
	d->restores++;
	return 0;
}

static void d_destroy(void *be)
{
	struct dummy *d = be;
	if (d->destroy_count)
		(*d->destroy_count)++;
}

static const struct virtio_backend_ops dummy_ops = {
	.type = "dummy",
	.device_id = DUMMY_ID,
	.num_queues = 2,
	.queue_max_size = QMAX,
	.config_size = 12,
	.features = d_features,
	.config_read = d_config_read,
	.config_write = d_config_write,
	.activate = d_activate,
	.reset = d_reset,
	.notify = d_notify,
	.pause = d_pause,
	.resume = d_resume,
	.save = d_save,
	.restore = d_restore,
	.destroy = d_destroy,
};

/* ---- the fake interrupt controller, the fixture -------------------------- */

struct irq_rec {
	bool level;
	unsigned raises;
};

static void irq_set(void *controller, unsigned irq, bool level)
{
	struct irq_rec *r = controller;
	assert_int_equal(irq, 7);
	if (level && !r->level)
		r->raises++;
	r->level = level;
}

struct fx {
	struct guest_ram ram;
	struct irq_rec irq;
	struct dummy d;
	struct virtio_mmio *t;
	struct device *dev;
	uint16_t avail_idx[2];
};

static struct virtio_mmio *create(struct fx *f, const struct virtio_backend_ops *ops,
				  struct dummy *d, struct irq_rec *irq)
{
	struct error err = { 0 };
	struct irq_line line = { .set_level = irq_set, .controller = irq, .irq = 7 };
	struct virtio_mmio *t = virtio_mmio_create("virtio@10001000", 0x10001000, line, &f->ram,
						   ops, d, &err);
	if (!t)
		fail_msg("virtio_mmio_create: %s", err.msg);
	d->t = t;
	return t;
}

static void dummy_init(struct dummy *d)
{
	memset(d, 0, sizeof(*d));
	d->features = F_DUMMY_A | F_DUMMY_B | (1ull << VIRTIO_F_ACCESS_PLATFORM) | (1ull << 40);
	for (unsigned i = 0; i < sizeof(d->config); i++)
		d->config[i] = (uint8_t)(0x10 + i);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	struct error err = { 0 };
	if (guest_ram_init(&f->ram, RAM_BASE, RAM_SIZE, &err))
		fail_msg("%s", err.msg);
	dummy_init(&f->d);
	f->t = create(f, &dummy_ops, &f->d, &f->irq);
	f->dev = virtio_mmio_device(f->t);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	f->dev->ops->destroy(f->dev);
	guest_ram_destroy(&f->ram);
	free(f);
	return 0;
}

static uint32_t rd(struct device *dev, uint64_t off)
{
	uint64_t v = dev->ops->read(dev, off, 4);
	assert_true(v <= 0xffffffffu);
	return (uint32_t)v;
}

static void wr(struct device *dev, uint64_t off, uint32_t v)
{
	dev->ops->write(dev, off, v, 4);
}

static uint64_t ring_base(unsigned q)
{
	return RAM_BASE + 0x10000 * (q + 1);
}

/* Linux's virtio_mmio probe + virtio_dev_probe + vm_find_vqs. Returns the
 * negotiated features. */
static uint64_t probe_dev(struct device *dev, uint64_t want, unsigned qsz)
{
	assert_int_equal(rd(dev, MAGIC), 0x74726976);
	assert_int_equal(rd(dev, VERSION), 2);
	assert_int_equal(rd(dev, DEVICE_ID), DUMMY_ID);
	assert_int_equal(rd(dev, VENDOR_ID), 0x6e726574);
	wr(dev, STATUS, 0);
	assert_int_equal(rd(dev, STATUS), 0);
	wr(dev, STATUS, S_ACK);
	wr(dev, STATUS, rd(dev, STATUS) | S_DRIVER);
	wr(dev, DEV_FEATURES_SEL, 1);
	uint64_t offered = (uint64_t)rd(dev, DEV_FEATURES) << 32;
	wr(dev, DEV_FEATURES_SEL, 0);
	offered |= rd(dev, DEV_FEATURES);
	uint64_t use = offered & want;
	wr(dev, DRV_FEATURES_SEL, 1);
	wr(dev, DRV_FEATURES, (uint32_t)(use >> 32));
	wr(dev, DRV_FEATURES_SEL, 0);
	wr(dev, DRV_FEATURES, (uint32_t)use);
	wr(dev, STATUS, rd(dev, STATUS) | S_FEATURES_OK);
	assert_true(rd(dev, STATUS) & S_FEATURES_OK);
	for (unsigned i = 0; i < 2; i++) {
		wr(dev, QUEUE_SEL, i);
		assert_int_equal(rd(dev, QUEUE_READY), 0);
		assert_int_equal(rd(dev, QUEUE_NUM_MAX), QMAX);
		wr(dev, QUEUE_NUM, qsz);
		uint64_t b = ring_base(i);
		wr(dev, DESC_LO, (uint32_t)b);
		wr(dev, DESC_HI, (uint32_t)(b >> 32));
		wr(dev, DRIVER_LO, (uint32_t)(b + 0x1000));
		wr(dev, DRIVER_HI, (uint32_t)((b + 0x1000) >> 32));
		wr(dev, DEVICE_LO, (uint32_t)(b + 0x2000));
		wr(dev, DEVICE_HI, (uint32_t)((b + 0x2000) >> 32));
		wr(dev, QUEUE_READY, 1);
		assert_int_equal(rd(dev, QUEUE_READY), 1);
	}
	wr(dev, STATUS, rd(dev, STATUS) | S_DRIVER_OK);
	return use;
}

static uint64_t probe(struct fx *f, uint64_t want)
{
	return probe_dev(f->dev, want, QMAX);
}

/* The driver makes one one-buffer chain available on queue q. */
static void offer(struct fx *f, unsigned q)
{
	uint64_t b = ring_base(q);
	uint16_t head = f->avail_idx[q] % QMAX;
	uint8_t *desc = guest_ram_ptr(&f->ram, b + 16 * head, 16);
	uint64_t addr = htole64(RAM_BASE + 0x80000);
	uint32_t len = htole32(64);
	uint16_t flags = 0, next = 0;
	memcpy(desc, &addr, 8);
	memcpy(desc + 8, &len, 4);
	memcpy(desc + 12, &flags, 2);
	memcpy(desc + 14, &next, 2);
	uint16_t h = htole16(head);
	memcpy(guest_ram_ptr(&f->ram, b + 0x1000 + 4 + 2 * (f->avail_idx[q] % QMAX), 2), &h, 2);
	f->avail_idx[q]++;
	uint16_t idx = htole16(f->avail_idx[q]);
	memcpy(guest_ram_ptr(&f->ram, b + 0x1000 + 2, 2), &idx, 2);
}

static void set_avail_flags(struct fx *f, unsigned q, uint16_t flags)
{
	flags = htole16(flags);
	memcpy(guest_ram_ptr(&f->ram, ring_base(q) + 0x1000, 2), &flags, 2);
}

/* The backend's side: take everything and complete it. */
static unsigned serve(struct fx *f, unsigned qi)
{
	struct virtq *q = virtio_queue(f->t, qi);
	static struct vq_chain chain;
	struct error err = { 0 };
	unsigned n = 0;
	int rc;
	while ((rc = vq_pop(q, &chain, &err)) == 1) {
		vq_push(q, chain.head, 0);
		n++;
	}
	assert_int_equal(rc, 0);
	virtio_notify_used(f->t, qi);
	return n;
}

/* ---- probe, notifications, interrupts -------------------------------------- */

static void test_identity_and_probe(void **state)
{
	struct fx *f = *state;
	/* Transport bits the backend may not offer are gone; the ring
	 * features are added. */
	uint64_t offered = F_DUMMY_A | F_DUMMY_B | F_V1 | F_EVENT | F_INDIRECT;
	wr(f->dev, DEV_FEATURES_SEL, 0);
	assert_int_equal(rd(f->dev, DEV_FEATURES), (uint32_t)offered);
	wr(f->dev, DEV_FEATURES_SEL, 1);
	assert_int_equal(rd(f->dev, DEV_FEATURES), (uint32_t)(offered >> 32));
	wr(f->dev, DEV_FEATURES_SEL, 2);
	assert_int_equal(rd(f->dev, DEV_FEATURES), 0);

	uint64_t got = probe(f, F_DUMMY_A | F_V1 | F_EVENT);
	assert_int_equal(got, F_DUMMY_A | F_V1 | F_EVENT);
	assert_int_equal(virtio_driver_features(f->t), got);
	assert_true(virtio_has_feature(f->t, VIRTIO_F_EVENT_IDX));
	assert_false(virtio_has_feature(f->t, VIRTIO_F_INDIRECT_DESC));
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(f->d.activations, 1);
	/* Every ready queue is kicked once after activation. */
	assert_int_equal(f->d.notifies[0], 1);
	assert_int_equal(f->d.notifies[1], 1);
	for (unsigned i = 0; i < 2; i++) {
		struct virtq *q = virtio_queue(f->t, i);
		assert_true(q->ready);
		assert_int_equal(q->num, QMAX);
		assert_true(q->event_idx);
		assert_false(q->indirect);
		assert_int_equal(q->desc_addr, ring_base(i));
		assert_int_equal(q->avail_addr, ring_base(i) + 0x1000);
		assert_int_equal(q->used_addr, ring_base(i) + 0x2000);
	}
	assert_null(virtio_queue(f->t, 2));
	assert_false(virtio_is_broken(f->t));
	assert_false(f->irq.level);
}

static void test_register_access_rules(void **state)
{
	struct fx *f = *state;
	struct device *dev = f->dev;
	/* Only aligned 32-bit accesses below 0x100. */
	assert_int_equal(dev->ops->read(dev, MAGIC, 2), 0);
	assert_int_equal(dev->ops->read(dev, MAGIC, 1), 0);
	assert_int_equal(dev->ops->read(dev, MAGIC, 8), 0);
	assert_int_equal(dev->ops->read(dev, MAGIC + 2, 4), 0);
	dev->ops->write(dev, STATUS, S_ACK, 1);
	dev->ops->write(dev, STATUS, S_ACK, 8);
	dev->ops->write(dev, STATUS + 1, S_ACK, 4);
	assert_int_equal(rd(dev, STATUS), 0);
	/* Queues that do not exist. */
	wr(dev, QUEUE_SEL, 2);
	assert_int_equal(rd(dev, QUEUE_NUM_MAX), 0);
	assert_int_equal(rd(dev, QUEUE_READY), 0);
	wr(dev, QUEUE_READY, 1);
	wr(dev, QUEUE_NUM, 4);
	assert_int_equal(rd(dev, QUEUE_READY), 0);
	/* Write-only registers read 0; no shared memory regions. */
	wr(dev, QUEUE_SEL, 0);
	wr(dev, DESC_LO, 0x1000);
	assert_int_equal(rd(dev, DESC_LO), 0);
	assert_int_equal(rd(dev, QUEUE_NUM), 0);
	wr(dev, SHM_SEL, 0);
	assert_int_equal(rd(dev, SHM_LEN_LO), 0xffffffffu);
	/* Outside the window. */
	assert_int_equal(dev->ops->read(dev, 0x1000, 4), 0);
	dev->ops->write(dev, 0x1000, 1, 4);
}

static void test_notify_reaches_backend(void **state)
{
	struct fx *f = *state;
	/* Before DRIVER_OK nothing reaches the backend. */
	wr(f->dev, QUEUE_NOTIFY, 0);
	assert_int_equal(f->d.notifies[0], 0);
	probe(f, F_V1);
	wr(f->dev, QUEUE_NOTIFY, 1);
	wr(f->dev, QUEUE_NOTIFY, 1);
	wr(f->dev, QUEUE_NOTIFY, 0);
	assert_int_equal(f->d.notifies[0], 2);
	assert_int_equal(f->d.notifies[1], 3);
	wr(f->dev, QUEUE_NOTIFY, 2);
	wr(f->dev, QUEUE_NOTIFY, 0xffffffff);
	assert_int_equal(f->d.notifies[0], 2);
	assert_int_equal(f->d.notifies[1], 3);
}

static void test_used_interrupt(void **state)
{
	struct fx *f = *state;
	probe(f, F_V1);
	offer(f, 0);
	assert_int_equal(serve(f, 0), 1);
	assert_true(f->irq.level);
	assert_int_equal(f->irq.raises, 1);
	assert_int_equal(rd(f->dev, INT_STATUS), VIRTIO_INT_USED);
	/* Another used buffer while the line is high: still one level. */
	offer(f, 1);
	assert_int_equal(serve(f, 1), 1);
	assert_int_equal(f->irq.raises, 1);
	wr(f->dev, INT_ACK, VIRTIO_INT_CONFIG);   /* not the pending bit */
	assert_true(f->irq.level);
	wr(f->dev, INT_ACK, rd(f->dev, INT_STATUS));
	assert_false(f->irq.level);
	assert_int_equal(rd(f->dev, INT_STATUS), 0);
	/* The driver suppresses interrupts (no event index negotiated). */
	set_avail_flags(f, 0, VRING_AVAIL_F_NO_INTERRUPT);
	offer(f, 0);
	assert_int_equal(serve(f, 0), 1);
	assert_false(f->irq.level);
	set_avail_flags(f, 0, 0);
	offer(f, 0);
	assert_int_equal(serve(f, 0), 1);
	assert_true(f->irq.level);
	assert_int_equal(f->irq.raises, 2);
	/* Nothing new: no interrupt. */
	wr(f->dev, INT_ACK, VIRTIO_INT_USED);
	virtio_notify_used(f->t, 0);
	virtio_notify_used(f->t, 9);
	assert_false(f->irq.level);
}

static void test_serve_on_notify(void **state)
{
	struct fx *f = *state;
	/* The backend answers on the notifying thread and calls back into
	 * the transport: notify must be called without the transport lock. */
	f->d.serve_on_notify = true;
	probe(f, F_V1 | F_EVENT);
	offer(f, 1);
	offer(f, 1);
	wr(f->dev, QUEUE_NOTIFY, 1);
	assert_int_equal(virtio_queue(f->t, 1)->used_idx, 2);
	assert_true(f->irq.level);
}

static void *hammer(void *arg)
{
	struct fx *f = arg;
	for (unsigned i = 0; i < 20000; i++) {
		virtio_notify_used(f->t, i & 1);
		if (i % 64 == 0)
			virtio_notify_config(f->t);
	}
	return NULL;
}

static void test_concurrent_interrupts(void **state)
{
	struct fx *f = *state;
	probe(f, F_V1);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, hammer, f), 0);
	for (unsigned i = 0; i < 20000; i++) {
		uint32_t s = rd(f->dev, INT_STATUS);
		wr(f->dev, INT_ACK, s);
		(void)f->dev->ops->read(f->dev, CONFIG, 4);
	}
	pthread_join(th, NULL);
	wr(f->dev, INT_ACK, 3);
	assert_false(f->irq.level);
	assert_int_equal(rd(f->dev, CONFIG_GEN), (20000 + 63) / 64);
}

/* ---- config space -------------------------------------------------------------- */

static void test_config_space(void **state)
{
	struct fx *f = *state;
	struct device *dev = f->dev;
	assert_int_equal(dev->ops->read(dev, CONFIG, 1), 0x10);
	assert_int_equal(dev->ops->read(dev, CONFIG + 1, 2), 0x1211);
	assert_int_equal(dev->ops->read(dev, CONFIG + 4, 4), 0x17161514);
	f->d.config_reads = 0;
	assert_int_equal(dev->ops->read(dev, CONFIG, 8), 0x1716151413121110ull);
	/* 8 bytes are two 4-byte reads. */
	assert_int_equal(f->d.config_reads, 2);
	assert_int_equal(f->d.last_config_len, 4);
	assert_int_equal(dev->ops->read(dev, CONFIG + 8, 4), 0x1b1a1918);
	/* Past the end of config space: 0, and the backend is not asked. */
	f->d.config_reads = 0;
	assert_int_equal(dev->ops->read(dev, CONFIG + 9, 4), 0);
	assert_int_equal(dev->ops->read(dev, CONFIG + 8, 8), 0);
	assert_int_equal(dev->ops->read(dev, CONFIG + 12, 1), 0);
	assert_int_equal(dev->ops->read(dev, 0xffc, 4), 0);
	assert_int_equal(dev->ops->read(dev, CONFIG, 3), 0);
	assert_int_equal(f->d.config_reads, 0);

	dev->ops->write(dev, CONFIG + 2, 0xaabb, 2);
	assert_int_equal(f->d.config[2], 0xbb);
	assert_int_equal(f->d.config[3], 0xaa);
	f->d.config_writes = 0;
	dev->ops->write(dev, CONFIG + 4, 0x0102030405060708ull, 8);
	assert_int_equal(f->d.config_writes, 2);
	assert_int_equal(f->d.config[4], 0x08);
	assert_int_equal(f->d.config[11], 0x01);
	dev->ops->write(dev, CONFIG + 10, 0xffffffff, 4);
	assert_int_equal(f->d.config_writes, 2);
	assert_int_equal(f->d.config[11], 0x01);
}

static void test_config_generation(void **state)
{
	struct fx *f = *state;
	uint32_t g = rd(f->dev, CONFIG_GEN);
	/* Before DRIVER_OK: a new generation, no interrupt. */
	virtio_notify_config(f->t);
	assert_int_equal(rd(f->dev, CONFIG_GEN), g + 1);
	assert_false(f->irq.level);
	probe(f, F_V1);
	virtio_notify_config(f->t);
	assert_int_equal(rd(f->dev, CONFIG_GEN), g + 2);
	assert_int_equal(rd(f->dev, INT_STATUS), VIRTIO_INT_CONFIG);
	assert_true(f->irq.level);
	wr(f->dev, INT_ACK, VIRTIO_INT_CONFIG);
	assert_false(f->irq.level);
}

/* ---- negotiation and queue setup ------------------------------------------- */

static void start(struct device *dev, uint64_t features)
{
	wr(dev, STATUS, 0);
	wr(dev, STATUS, S_ACK | S_DRIVER);
	wr(dev, DRV_FEATURES_SEL, 0);
	wr(dev, DRV_FEATURES, (uint32_t)features);
	wr(dev, DRV_FEATURES_SEL, 1);
	wr(dev, DRV_FEATURES, (uint32_t)(features >> 32));
	wr(dev, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
}

static void test_bad_feature_sets(void **state)
{
	struct fx *f = *state;
	/* A bit the device did not offer (it masked ACCESS_PLATFORM away). */
	start(f->dev, F_V1 | (1ull << VIRTIO_F_ACCESS_PLATFORM));
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER);
	start(f->dev, F_V1 | (1ull << 63));
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER);
	/* No VERSION_1: a legacy driver. */
	start(f->dev, F_DUMMY_A);
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER);
	/* DRIVER_OK without FEATURES_OK: the device needs a reset. */
	wr(f->dev, STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->d.activations, 0);
	assert_true(virtio_is_broken(f->t));
	/* A good set sticks, and then the features are frozen. */
	start(f->dev, F_V1 | F_DUMMY_B);
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_false(virtio_is_broken(f->t));
	wr(f->dev, DRV_FEATURES_SEL, 0);
	wr(f->dev, DRV_FEATURES, (uint32_t)F_DUMMY_A);
	assert_int_equal(virtio_driver_features(f->t), F_V1 | F_DUMMY_B);
	/* Status bits cannot be cleared, nor NEEDS_RESET set, by the driver. */
	wr(f->dev, STATUS, S_ACK | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(f->dev, STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
}

static void test_queue_registers(void **state)
{
	struct fx *f = *state;
	struct device *dev = f->dev;
	struct virtq *q = virtio_queue(f->t, 1);
	start(dev, F_V1);
	wr(dev, QUEUE_SEL, 1);
	/* Sizes: powers of two up to QueueNumMax only. */
	wr(dev, QUEUE_NUM, 4);
	assert_int_equal(q->num, 4);
	wr(dev, QUEUE_NUM, 6);
	wr(dev, QUEUE_NUM, 16);
	wr(dev, QUEUE_NUM, 0);
	assert_int_equal(q->num, 4);
	wr(dev, DESC_LO, 0x1000);
	wr(dev, DESC_HI, 0x2);
	assert_int_equal(q->desc_addr, 0x200001000ull);
	wr(dev, DRIVER_LO, 0x3000);
	wr(dev, DEVICE_LO, 0x4000);
	wr(dev, QUEUE_READY, 1);
	/* Ready: the configuration is frozen. */
	wr(dev, QUEUE_NUM, 2);
	wr(dev, DESC_LO, 0x5000);
	wr(dev, DRIVER_HI, 1);
	wr(dev, DEVICE_LO, 0x6000);
	assert_int_equal(q->num, 4);
	assert_int_equal(q->desc_addr, 0x200001000ull);
	assert_int_equal(q->avail_addr, 0x3000);
	assert_int_equal(q->used_addr, 0x4000);
	/* Taken down again (Linux's vm_del_vq) it can be changed. */
	wr(dev, QUEUE_READY, 0);
	assert_int_equal(rd(dev, QUEUE_READY), 0);
	wr(dev, QUEUE_NUM, 2);
	assert_int_equal(q->num, 2);
	/* Queue 0 is untouched by all this. */
	assert_int_equal(virtio_queue(f->t, 0)->num, QMAX);
	assert_int_equal(virtio_queue(f->t, 0)->desc_addr, 0);
}

static void test_queue_registers_after_driver_ok(void **state)
{
	struct fx *f = *state;
	probe(f, F_V1);
	struct virtq *q = virtio_queue(f->t, 0);
	struct virtq before = *q;
	wr(f->dev, QUEUE_SEL, 0);
	wr(f->dev, QUEUE_READY, 0);
	wr(f->dev, QUEUE_NUM, 2);
	wr(f->dev, DESC_LO, 0);
	assert_memory_equal(&before, q, sizeof(before));
	assert_int_equal(rd(f->dev, QUEUE_READY), 1);
}

static void test_reset_clears_everything(void **state)
{
	struct fx *f = *state;
	probe(f, F_V1 | F_EVENT | F_INDIRECT);
	offer(f, 0);
	serve(f, 0);
	virtio_notify_config(f->t);
	assert_true(f->irq.level);
	wr(f->dev, QUEUE_SEL, 1);
	uint32_t gen = rd(f->dev, CONFIG_GEN);

	wr(f->dev, STATUS, 0);
	assert_int_equal(f->d.resets, 2);         /* the probe reset, and this one */
	assert_int_equal(rd(f->dev, STATUS), 0);
	assert_int_equal(rd(f->dev, INT_STATUS), 0);
	assert_false(f->irq.level);
	assert_int_equal(virtio_driver_features(f->t), 0);
	assert_int_equal(rd(f->dev, CONFIG_GEN), gen);
	for (unsigned i = 0; i < 2; i++) {
		struct virtq *q = virtio_queue(f->t, i);
		assert_false(q->ready);
		assert_int_equal(q->num, QMAX);
		assert_int_equal(q->desc_addr, 0);
		assert_int_equal(q->last_avail_idx, 0);
		assert_int_equal(q->used_idx, 0);
		assert_false(q->event_idx);
		assert_false(q->indirect);
		assert_ptr_equal(q->ram, &f->ram);
	}
	/* QueueSel went back to 0. */
	assert_int_equal(rd(f->dev, QUEUE_NUM_MAX), QMAX);
	wr(f->dev, QUEUE_NOTIFY, 0);
	assert_int_equal(f->d.notifies[0], 1);    /* only the kick at DRIVER_OK */
	/* And it can be probed again from scratch. */
	f->avail_idx[0] = 0;
	memset(guest_ram_ptr(&f->ram, ring_base(0), 0x3000), 0, 0x3000);
	probe(f, F_V1);
	assert_int_equal(f->d.activations, 2);
	/* The machine's reset does the same. */
	f->dev->ops->reset(f->dev);
	assert_int_equal(rd(f->dev, STATUS), 0);
	assert_int_equal(f->d.resets, 4);
}

static void test_needs_reset(void **state)
{
	struct fx *f = *state;
	probe(f, F_V1);
	virtio_set_needs_reset(f->t, "descriptor 3 loops");
	assert_true(virtio_is_broken(f->t));
	assert_true(rd(f->dev, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(f->dev, INT_STATUS), VIRTIO_INT_CONFIG);
	assert_true(f->irq.level);
	wr(f->dev, INT_ACK, VIRTIO_INT_CONFIG);
	/* A second report changes nothing. */
	virtio_set_needs_reset(f->t, "again");
	assert_int_equal(rd(f->dev, INT_STATUS), 0);
	/* The device stops serving. */
	unsigned before = f->d.notifies[0];
	wr(f->dev, QUEUE_NOTIFY, 0);
	assert_int_equal(f->d.notifies[0], before);
	offer(f, 0);
	serve(f, 0);
	assert_false(f->irq.level);
	/* Reset makes it whole again. */
	wr(f->dev, STATUS, 0);
	assert_false(virtio_is_broken(f->t));
	assert_int_equal(rd(f->dev, STATUS), 0);
}

static void test_needs_reset_from_malformed_chain(void **state)
{
	struct fx *f = *state;
	f->d.serve_on_notify = true;
	probe(f, F_V1);
	/* Descriptor 0 chains to itself. */
	uint16_t flags = htole16(VRING_DESC_F_NEXT);
	offer(f, 0);
	memcpy(guest_ram_ptr(&f->ram, ring_base(0) + 12, 2), &flags, 2);
	wr(f->dev, QUEUE_NOTIFY, 0);
	assert_true(virtio_is_broken(f->t));
	assert_true(rd(f->dev, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(f->irq.level);
}

static void test_driver_ok_validates_queues(void **state)
{
	struct fx *f = *state;
	struct device *dev = f->dev;
	start(dev, F_V1);
	wr(dev, QUEUE_SEL, 0);
	wr(dev, DESC_LO, (uint32_t)(RAM_BASE + RAM_SIZE - 0x40));   /* 8 * 16 does not fit */
	wr(dev, DESC_HI, 0);
	wr(dev, DRIVER_LO, (uint32_t)(RAM_BASE + 0x1000));
	wr(dev, DEVICE_LO, (uint32_t)(RAM_BASE + 0x2000));
	wr(dev, QUEUE_READY, 1);
	wr(dev, STATUS, rd(dev, STATUS) | S_DRIVER_OK);
	assert_int_equal(f->d.activations, 0);
	assert_true(virtio_is_broken(f->t));
	uint32_t s = rd(dev, STATUS);
	assert_true(s & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(s & S_DRIVER_OK);
	/* DRIVER_OK was set: the driver hears about it. */
	assert_int_equal(rd(dev, INT_STATUS), VIRTIO_INT_CONFIG);
	assert_int_equal(f->d.notifies[0], 0);
}

static void test_activation_failure(void **state)
{
	struct fx *f = *state;
	f->d.fail_activate = true;
	probe(f, F_V1);
	assert_true(virtio_is_broken(f->t));
	assert_true(rd(f->dev, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->d.notifies[0], 0);
	wr(f->dev, QUEUE_NOTIFY, 0);
	assert_int_equal(f->d.notifies[0], 0);
}

static void test_pause_resume(void **state)
{
	struct fx *f = *state;
	virtio_mmio_pause(f->t);
	virtio_mmio_pause(f->t);
	assert_int_equal(f->d.pauses, 1);
	virtio_mmio_resume(f->t);
	assert_int_equal(f->d.resumes, 1);
	assert_int_equal(f->d.notifies[0], 0);   /* not running: no kick */
	probe(f, F_V1);
	virtio_mmio_pause(f->t);
	virtio_mmio_resume(f->t);
	virtio_mmio_resume(f->t);
	assert_int_equal(f->d.pauses, 2);
	assert_int_equal(f->d.resumes, 2);
	/* Work that arrived while paused is looked at. */
	assert_int_equal(f->d.notifies[0], 2);
	assert_int_equal(f->d.notifies[1], 2);
}

static void test_create_refuses(void **state)
{
	struct fx *f = *state;
	struct error err = { 0 };
	struct irq_line line = { 0 };
	struct virtio_backend_ops ops = dummy_ops;
	ops.num_queues = VIRTIO_MAX_QUEUES + 1;
	assert_null(virtio_mmio_create("v", 0, line, &f->ram, &ops, &f->d, &err));
	assert_non_null(strstr(err.msg, "queues"));
	ops = dummy_ops;
	ops.queue_max_size = 12;
	assert_null(virtio_mmio_create("v", 0, line, &f->ram, &ops, &f->d, &err));
	assert_non_null(strstr(err.msg, "queue size 12"));
	ops = dummy_ops;
	ops.config_size = 0xf01;
	assert_null(virtio_mmio_create("v", 0, line, &f->ram, &ops, &f->d, &err));
	ops = dummy_ops;
	ops.notify = NULL;
	assert_null(virtio_mmio_create("v", 0, line, &f->ram, &ops, &f->d, &err));
	assert_null(virtio_mmio_create("", 0, line, &f->ram, &dummy_ops, &f->d, &err));
}

/* ---- save / restore ------------------------------------------------------------ */

static int save_dev(struct device *dev, struct state_writer *w, struct error *err)
{
	state_writer_init(w);
	int rc = dev->ops->save(dev, w, err);
	if (rc)
		state_writer_free(w);
	return rc;
}

static int restore_dev(struct device *dev, const void *data, size_t len, struct error *err)
{
	struct state_reader r;
	int rc = state_reader_init(&r, data, len, "virtio@10001000", NULL, 0, err);
	if (!rc)
		rc = dev->ops->restore(dev, &r, err);
	return rc;
}

/* A second transport + backend on the same RAM, as a migration target. */
struct target {
	struct dummy d;
	struct irq_rec irq;
	struct virtio_mmio *t;
	struct device *dev;
};

static void target_init(struct fx *f, struct target *tg, const struct virtio_backend_ops *ops)
{
	memset(tg, 0, sizeof(*tg));
	dummy_init(&tg->d);
	memset(tg->d.config, 0, sizeof(tg->d.config));
	tg->t = create(f, ops, &tg->d, &tg->irq);
	tg->dev = virtio_mmio_device(tg->t);
}

static void target_destroy(struct target *tg)
{
	tg->dev->ops->destroy(tg->dev);
}

/* A running device with some history: negotiated, buffers used, an
 * interrupt pending, a config change, backend state. */
static void make_history(struct fx *f)
{
	probe(f, F_V1 | F_EVENT | F_INDIRECT | F_DUMMY_B);
	for (unsigned i = 0; i < 5; i++) {
		offer(f, 0);
		serve(f, 0);
	}
	offer(f, 1);
	offer(f, 1);            /* available, not yet taken */
	virtio_notify_config(f->t);
	wr(f->dev, DEV_FEATURES_SEL, 1);
	wr(f->dev, QUEUE_SEL, 1);
	f->d.counter = 77;
	f->d.config[0] = 0x99;
}

static void test_save_requires_pause(void **state)
{
	struct fx *f = *state;
	struct state_writer w;
	struct error err = { 0 };
	/* Nothing running: fine. */
	assert_int_equal(save_dev(f->dev, &w, &err), 0);
	state_writer_free(&w);
	probe(f, F_V1);
	assert_int_equal(save_dev(f->dev, &w, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "pause it first"));
	virtio_mmio_pause(f->t);
	assert_int_equal(save_dev(f->dev, &w, &err), 0);
	state_writer_free(&w);
}

static void test_save_restore_round_trip(void **state)
{
	struct fx *f = *state;
	make_history(f);
	virtio_mmio_pause(f->t);
	struct state_writer a, b;
	struct error err = { 0 };
	if (save_dev(f->dev, &a, &err))
		fail_msg("save: %s", err.msg);

	struct target tg;
	target_init(f, &tg, &dummy_ops);
	if (restore_dev(tg.dev, a.buf, a.len, &err))
		fail_msg("restore: %s", err.msg);
	assert_int_equal(tg.d.restores, 1);
	assert_int_equal(tg.d.activations, 1);
	assert_int_equal(tg.d.counter, 77);
	assert_int_equal(tg.d.config[0], 0x99);
	/* Not paused: the queues were kicked, so queue 1's pending buffers
	 * will be seen. */
	assert_int_equal(tg.d.notifies[1], 1);
	/* The pending interrupt is on the line again. */
	assert_true(tg.irq.level);
	/* The registers read the same. */
	static const uint64_t regs[] = {
		MAGIC, DEVICE_ID, DEV_FEATURES, QUEUE_NUM_MAX, QUEUE_READY, INT_STATUS, STATUS,
		CONFIG_GEN,
	};
	for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		assert_int_equal(rd(tg.dev, regs[i]), rd(f->dev, regs[i]));
	assert_int_equal(virtio_driver_features(tg.t), virtio_driver_features(f->t));
	for (unsigned i = 0; i < 2; i++)
		assert_memory_equal(virtio_queue(tg.t, i), virtio_queue(f->t, i),
				    sizeof(struct virtq));

	virtio_mmio_pause(tg.t);
	if (save_dev(tg.dev, &b, &err))
		fail_msg("save again: %s", err.msg);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	state_writer_free(&b);

	/* The restored device works: it serves queue 1's pending buffers. */
	virtio_mmio_resume(tg.t);
	struct virtq *q = virtio_queue(tg.t, 1);
	static struct vq_chain chain;
	assert_int_equal(vq_pop(q, &chain, &err), 1);
	assert_int_equal(vq_pop(q, &chain, &err), 1);
	assert_int_equal(vq_pop(q, &chain, &err), 0);

	/* Restoring into a device the driver has set up is refused. */
	assert_int_equal(restore_dev(tg.dev, a.buf, a.len, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "has not set up"));
	target_destroy(&tg);
	state_writer_free(&a);
}

static void test_save_restore_fresh_and_broken(void **state)
{
	struct fx *f = *state;
	struct state_writer a, b;
	struct error err = { 0 };
	/* A device the driver never touched. */
	assert_int_equal(save_dev(f->dev, &a, &err), 0);
	struct target tg;
	target_init(f, &tg, &dummy_ops);
	assert_int_equal(restore_dev(tg.dev, a.buf, a.len, &err), 0);
	assert_int_equal(tg.d.activations, 0);
	assert_false(tg.irq.level);
	assert_int_equal(save_dev(tg.dev, &b, &err), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	state_writer_free(&a);
	state_writer_free(&b);
	target_destroy(&tg);

	/* A broken one stays broken and is not activated. */
	probe(f, F_V1);
	virtio_set_needs_reset(f->t, "test");
	virtio_mmio_pause(f->t);
	assert_int_equal(save_dev(f->dev, &a, &err), 0);
	target_init(f, &tg, &dummy_ops);
	assert_int_equal(restore_dev(tg.dev, a.buf, a.len, &err), 0);
	assert_int_equal(tg.d.activations, 0);
	assert_true(virtio_is_broken(tg.t));
	assert_true(rd(tg.dev, STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(tg.irq.level);
	state_writer_free(&a);
	target_destroy(&tg);
}

/* The target must look exactly as fresh after a refused restore. */
static void expect_refused(struct fx *f, const struct virtio_backend_ops *ops, const void *data,
			   size_t len, const char *needle)
{
	struct target tg;
	target_init(f, &tg, ops);
	struct state_writer before, after;
	struct error err = { 0 };
	assert_int_equal(save_dev(tg.dev, &before, &err), 0);
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, data, len);
	int rc = restore_dev(tg.dev, copy, len, &err);
	free(copy);
	if (rc == 0)
		fail_msg("restore of %zu bytes was accepted", len);
	if (needle && !strstr(err.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
	assert_int_equal(save_dev(tg.dev, &after, &err), 0);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.buf, after.buf, before.len);
	assert_int_equal(tg.d.activations, 0);
	assert_int_equal(tg.d.restores, 0);
	assert_false(tg.irq.level);
	state_writer_free(&before);
	state_writer_free(&after);
	target_destroy(&tg);
}

static void test_restore_refuses_mismatches(void **state)
{
	struct fx *f = *state;
	make_history(f);
	virtio_mmio_pause(f->t);
	struct state_writer a;
	struct error err = { 0 };
	assert_int_equal(save_dev(f->dev, &a, &err), 0);

	struct virtio_backend_ops ops = dummy_ops;
	ops.device_id = VIRTIO_ID_NET;
	expect_refused(f, &ops, a.buf, a.len, "virtio device id 2, this is a dummy (id 1)");
	ops = dummy_ops;
	ops.num_queues = 3;
	expect_refused(f, &ops, a.buf, a.len, "saved state has 2 queues, this dummy has 3");
	ops.num_queues = 1;
	expect_refused(f, &ops, a.buf, a.len, "saved state has 2 queues, this dummy has 1");
	/* F_DUMMY_B was negotiated; this backend does not offer it. */
	ops = dummy_ops;
	ops.features = NULL;
	expect_refused(f, &ops, a.buf, a.len, "which this device does not offer");
	ops = dummy_ops;
	ops.queue_max_size = 4;
	expect_refused(f, &ops, a.buf, a.len, "saved size 8 is larger");

	/* Every truncation. */
	for (size_t len = 0; len < a.len; len++)
		expect_refused(f, &dummy_ops, a.buf, len, NULL);
	state_writer_free(&a);
}

/* Hand-made records with one thing wrong. */
static void test_restore_refuses_bad_records(void **state)
{
	struct fx *f = *state;
	make_history(f);
	virtio_mmio_pause(f->t);
	struct state_writer a;
	struct error err = { 0 };
	assert_int_equal(save_dev(f->dev, &a, &err), 0);

	/* A ring outside RAM: move queue 0's used ring past the end. */
	struct virtq *q0 = virtio_queue(f->t, 0);
	uint64_t used = q0->used_addr;
	q0->used_addr = RAM_BASE + RAM_SIZE - 16;
	struct state_writer w;
	assert_int_equal(save_dev(f->dev, &w, &err), 0);
	q0->used_addr = used;
	expect_refused(f, &dummy_ops, w.buf, w.len, "queue 0");
	expect_refused(f, &dummy_ops, w.buf, w.len, "used ring");
	state_writer_free(&w);

	/* Fields flipped one at a time, through a rewritten record. */
	struct {
		uint16_t id;
		uint32_t value;
		const char *needle;
	} bad[] = {
		{ 0, 2, "state version 2" },
		{ 3, 0x0f | 0x20, "unknown bits" },
		{ 3, 0x07, "DRIVER_OK without FEATURES_OK" },
		{ 3, 0x4f, "broken flag" },
		{ 8, 4, "interrupt status 0x4" },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *copy = malloc(a.len);
		assert_non_null(copy);
		memcpy(copy, a.buf, a.len);
		/* Top-level fields: walk the headers to the one to change. */
		size_t pos = 0;
		while (pos < a.len) {
			uint16_t id = (uint16_t)(copy[pos] | copy[pos + 1] << 8);
			uint32_t flen;
			memcpy(&flen, copy + pos + 4, 4);
			if (id == bad[i].id) {
				assert_int_equal(flen, 4);
				uint32_t v = htole32(bad[i].value);
				memcpy(copy + pos + 8, &v, 4);
			}
			pos += 8 + flen;
		}
		expect_refused(f, &dummy_ops, copy, a.len, bad[i].needle);
		free(copy);
	}

	/* A record for a queue this device does not have: the saved record
	 * with a nested record 16 + 2 appended by hand. */
	static const uint8_t queue2[] = {
		18, 0, 2, 0, 12, 0, 0, 0,       /* id 18, STATE_RECORD, 12 bytes */
		0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0,
	};
	uint8_t *stray = malloc(a.len + sizeof(queue2));
	assert_non_null(stray);
	memcpy(stray, a.buf, a.len);
	memcpy(stray + a.len, queue2, sizeof(queue2));
	expect_refused(f, &dummy_ops, stray, a.len + sizeof(queue2), "record for queue 2");
	free(stray);

	/* Byte flips anywhere: whatever is accepted must not crash, and
	 * whatever is refused must leave the target untouched. */
	uint32_t seed = 99;
	uint8_t *copy = malloc(a.len);
	assert_non_null(copy);
	for (unsigned round = 0; round < 300; round++) {
		memcpy(copy, a.buf, a.len);
		seed = seed * 1103515245u + 12345u;
		size_t at = (seed >> 8) % a.len;
		seed = seed * 1103515245u + 12345u;
		copy[at] ^= (uint8_t)(1u << ((seed >> 16) % 8));
		struct target tg;
		target_init(f, &tg, &dummy_ops);
		struct state_writer before, after;
		assert_int_equal(save_dev(tg.dev, &before, &err), 0);
		if (restore_dev(tg.dev, copy, a.len, &err) != 0) {
			assert_int_equal(save_dev(tg.dev, &after, &err), 0);
			assert_int_equal(before.len, after.len);
			assert_memory_equal(before.buf, after.buf, before.len);
			assert_int_equal(tg.d.activations, 0);
			state_writer_free(&after);
		}
		state_writer_free(&before);
		target_destroy(&tg);
	}
	free(copy);
	state_writer_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_access_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_reaches_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_used_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serve_on_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_interrupts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_feature_sets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_registers_after_driver_ok, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reset_clears_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_needs_reset_from_malformed_chain, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_driver_ok_validates_queues, setup, teardown),
		cmocka_unit_test_setup_teardown(test_activation_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_requires_pause, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_fresh_and_broken, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_mismatches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_bad_records, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
