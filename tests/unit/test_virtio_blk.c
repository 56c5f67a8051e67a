/* test_virtio_blk.c: virtio-blk seen from a guest driver. Each test owns
 * 4 MiB of real guest RAM at 0x80000000, a temporary image file and a
 * device with its virtio-mmio transport, and drives the transport's
 * registers the way Linux's virtio_mmio and virtio_blk drivers do: reset,
 * feature negotiation, one split queue of 256 entries, requests made of
 * descriptor chains, kicks only when the device asks for them, and the
 * used ring and interrupt line watched for completions.
 *
 * Checked: data reaches the file and comes back into guest memory (with
 * the pages marked dirty), FLUSH, GET_ID, DISCARD and WRITE_ZEROES, the
 * IOERR/UNSUPP answers to bad requests, a read-only disk, malformed chains
 * (NEEDS_RESET, no crash, a reset recovers), batching, no kick lost under
 * load, pause/resume, and save/restore. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/virtio.h"
#include "mem/guest_ram.h"
#include "state/state.h"

#define MiB (1024u * 1024u)
#define RAM_BASE 0x80000000ull
#define RAM_SIZE (4ull * MiB)
#define MMIO_BASE 0x10001000ull
#define DISK_BYTES (4ull * MiB)
#define DISK_SECTORS (DISK_BYTES / 512)

/* Guest memory layout of the tests. */
#define QSIZE 256
#define DESC_GPA (RAM_BASE + 0x10000)
#define AVAIL_GPA (RAM_BASE + 0x11000)
#define USED_GPA (RAM_BASE + 0x12000)
#define HDR_GPA (RAM_BASE + 0x20000)            /* 32 bytes per slot */
#define STATUS_GPA (RAM_BASE + 0x30000)         /* 1 byte per slot */
#define DATA_GPA (RAM_BASE + 0x100000)          /* 1 MiB */
#define DATA2_GPA (RAM_BASE + 0x200000)         /* 1 MiB */

/* virtio-mmio registers (4.2.2) */
enum {
	R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_VENDOR_ID = 0x00c,
	R_DEV_FEATURES = 0x010, R_DEV_FEATURES_SEL = 0x014,
	R_DRV_FEATURES = 0x020, R_DRV_FEATURES_SEL = 0x024,
	R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038,
	R_QUEUE_READY = 0x044, R_QUEUE_NOTIFY = 0x050,
	R_INT_STATUS = 0x060, R_INT_ACK = 0x064, R_STATUS = 0x070,
	R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_DRIVER_LO = 0x090, R_DRIVER_HI = 0x094,
	R_DEVICE_LO = 0x0a0, R_DEVICE_HI = 0x0a4, R_CONFIG_GEN = 0x0fc, R_CONFIG = 0x100,
};

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct fixture {
	char dir[64];
	char path[128];
	struct guest_ram ram;
	struct virtio_mmio *t;
	struct device *dev;
	bool level;                     /* written by the device's threads */
	unsigned raises;
	uint64_t features;              /* negotiated */
	uint16_t avail_idx;             /* the driver's next available index */
	uint16_t used_seen;             /* used entries consumed */
	uint16_t next_desc;
};

/* ---- the fake driver ---------------------------------------------------- */

static void line_set(void *controller, unsigned irq, bool level)
{
	struct fixture *f = controller;
	if (level && !__atomic_load_n(&f->level, __ATOMIC_ACQUIRE))
		__atomic_fetch_add(&f->raises, 1, __ATOMIC_ACQ_REL);
	__atomic_store_n(&f->level, level, __ATOMIC_RELEASE);
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

/* Ring fields the device reads or writes while the driver runs: the
 * device's side accesses them atomically, so does the driver's. */
static uint16_t get16_shared(struct fixture *f, uint64_t gpa)
{
	uint16_t v = __atomic_load_n((uint16_t *)(void *)host(f, gpa, 2), __ATOMIC_ACQUIRE);
	return le16toh(v);
}

static void put16_shared(struct fixture *f, uint64_t gpa, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)host(f, gpa, 2), htole16(v), __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct fixture *f)
{
	return get16_shared(f, USED_GPA + 2);
}

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

static void make_image(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void file_read(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void file_write(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 31 + i * 13 + (i >> 9));
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static uint64_t device_features(struct fixture *f)
{
	wr32(f, R_DEV_FEATURES_SEL, 0);
	uint64_t lo = rd32(f, R_DEV_FEATURES);
	wr32(f, R_DEV_FEATURES_SEL, 1);
	uint64_t hi = rd32(f, R_DEV_FEATURES);
	return lo | hi << 32;
}

/* What Linux does in virtio_dev_probe / virtio_mmio setup_vq. `want`
 * masks the device's features (EVENT_IDX off to test the flags path). */
static void driver_init(struct fixture *f, uint64_t want)
{
	wr32(f, R_STATUS, 0);
	assert_int_equal(rd32(f, R_STATUS), 0);
	/* After the reset: from here on the device leaves the rings alone. */
	memset(host(f, DESC_GPA, 0x3000), 0, 0x3000);
	f->avail_idx = f->used_seen = f->next_desc = 0;
	wr32(f, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr32(f, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	f->features = device_features(f) & want;
	wr32(f, R_DRV_FEATURES_SEL, 0);
	wr32(f, R_DRV_FEATURES, (uint32_t)f->features);
	wr32(f, R_DRV_FEATURES_SEL, 1);
	wr32(f, R_DRV_FEATURES, (uint32_t)(f->features >> 32));
	uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	wr32(f, R_STATUS, st);
	assert_true(rd32(f, R_STATUS) & VIRTIO_STATUS_FEATURES_OK);

	wr32(f, R_QUEUE_SEL, 0);
	assert_int_equal(rd32(f, R_QUEUE_READY), 0);
	assert_int_equal(rd32(f, R_QUEUE_NUM_MAX), QSIZE);
	wr32(f, R_QUEUE_NUM, QSIZE);
	wr32(f, R_DESC_LO, (uint32_t)DESC_GPA);
	wr32(f, R_DESC_HI, (uint32_t)(DESC_GPA >> 32));
	wr32(f, R_DRIVER_LO, (uint32_t)AVAIL_GPA);
	wr32(f, R_DRIVER_HI, (uint32_t)(AVAIL_GPA >> 32));
	wr32(f, R_DEVICE_LO, (uint32_t)USED_GPA);
	wr32(f, R_DEVICE_HI, (uint32_t)(USED_GPA >> 32));
	wr32(f, R_QUEUE_READY, 1);
	wr32(f, R_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(rd32(f, R_STATUS), st | VIRTIO_STATUS_DRIVER_OK);
}

static bool has(const struct fixture *f, unsigned bit)
{
	return (f->features >> bit) & 1;
}

/* Puts a chain in the descriptor table and makes it available. */
static uint16_t add_chain(struct fixture *f, const struct seg *segs, unsigned n)
{
	uint16_t head = f->next_desc;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		uint64_t d = DESC_GPA + 16ull * idx;
		put64(f, d, segs[i].gpa);
		put32(f, d + 8, segs[i].len);
		put16(f, d + 12, (uint16_t)((i + 1 < n ? VRING_DESC_F_NEXT : 0) |
					    (segs[i].write ? VRING_DESC_F_WRITE : 0)));
		put16(f, d + 14, (uint16_t)((idx + 1) % QSIZE));
	}
	f->next_desc = (uint16_t)((head + n) % QSIZE);
	put16(f, AVAIL_GPA + 4 + 2u * (f->avail_idx % QSIZE), head);
	/* Want an interrupt for every completion (Linux's used_event). */
	put16_shared(f, AVAIL_GPA + 4 + 2u * QSIZE, f->used_seen);
	f->avail_idx++;
	put16_shared(f, AVAIL_GPA + 2, f->avail_idx);
	return head;
}

/* Kicks if the device asked for it (virtqueue_kick_prepare), for the
 * `added` chains made available since the last kick decision. */
static void kick_if_needed(struct fixture *f, uint16_t added)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool kick;
	if (has(f, VIRTIO_F_EVENT_IDX)) {
		uint16_t event = get16_shared(f, USED_GPA + 4 + 8u * QSIZE);
		uint16_t new_idx = f->avail_idx, old = (uint16_t)(new_idx - added);
		kick = (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
	} else {
		kick = !(get16_shared(f, USED_GPA) & VRING_USED_F_NO_NOTIFY);
	}
	if (kick)
		wr32(f, R_QUEUE_NOTIFY, 0);
}

static bool wait_used(struct fixture *f, uint16_t target, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	while ((uint16_t)(used_idx(f) - f->used_seen) < (uint16_t)(target - f->used_seen)) {
		if (now_ms() > end)
			return false;
		sleep_ms(1);
	}
	return true;
}

/* Takes the next used entry: returns its id, *len its length. */
static uint16_t take_used(struct fixture *f, uint32_t *len)
{
	uint64_t e = USED_GPA + 4 + 8u * (f->used_seen % QSIZE);
	uint16_t id = (uint16_t)get32(f, e);
	*len = get32(f, e + 4);
	f->used_seen++;
	return id;
}

/* One request, waited for: returns the used length. */
static uint32_t run_chain(struct fixture *f, const struct seg *segs, unsigned n)
{
	uint16_t head = add_chain(f, segs, n);
	kick_if_needed(f, 1);
	if (!wait_used(f, (uint16_t)(f->used_seen + 1), 10000))
		fail_msg("request not completed within 10 s");
	uint32_t len;
	assert_int_equal(take_used(f, &len), head);
	return len;
}

static void put_hdr(struct fixture *f, unsigned slot, uint32_t type, uint64_t sector)
{
	uint64_t h = HDR_GPA + 32ull * slot;
	put32(f, h, type);
	put32(f, h + 4, 0);
	put64(f, h + 8, sector);
}

static uint8_t status_of(struct fixture *f, unsigned slot)
{
	return *host(f, STATUS_GPA + slot, 1);
}

/* The usual three-part request: header, one data buffer, status. */
static uint8_t request(struct fixture *f, uint32_t type, uint64_t sector, uint64_t data,
		       uint32_t len, bool data_write, uint32_t *used)
{
	struct seg s[3];
	unsigned n = 0;
	put_hdr(f, 0, type, sector);
	*host(f, STATUS_GPA, 1) = 0xee;
	s[n++] = (struct seg){ HDR_GPA, 16, false };
	if (len)
		s[n++] = (struct seg){ data, len, data_write };
	s[n++] = (struct seg){ STATUS_GPA, 1, true };
	uint32_t u = run_chain(f, s, n);
	if (used)
		*used = u;
	return status_of(f, 0);
}

/* DISCARD / WRITE_ZEROES with `count` segments at DATA2_GPA. */
static void put_dwz(struct fixture *f, unsigned i, uint64_t sector, uint32_t num, uint32_t flags)
{
	uint64_t g = DATA2_GPA + 16ull * i;
	put64(f, g, sector);
	put32(f, g + 8, num);
	put32(f, g + 12, flags);
}

static uint8_t dwz_request(struct fixture *f, uint32_t type, unsigned count)
{
	return request(f, type, 0, DATA2_GPA, 16 * count, false, NULL);
}

static bool wait_status(struct fixture *f, uint32_t bit, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	while (!(rd32(f, R_STATUS) & bit)) {
		if (now_ms() > end)
			return false;
		sleep_ms(1);
	}
	return true;
}

static bool wait_level(struct fixture *f, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	while (!__atomic_load_n(&f->level, __ATOMIC_ACQUIRE)) {
		if (now_ms() > end)
			return false;
		sleep_ms(1);
	}
	return true;
}

/* ---- fixtures ------------------------------------------------------------- */

static struct virtio_mmio *create_dev(struct fixture *f, const char *path, bool ro,
				      struct error *err)
{
	struct irq_line irq = { .set_level = line_set, .controller = f, .irq = 1 };
	return virtio_blk_create("virtio-blk@10001000", MMIO_BASE, irq, &f->ram, path, ro, err);
}

static struct fixture *new_fixture(void)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct error err = { 0 };
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-blk-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/disk.img", f->dir);
	make_image(f->path, DISK_BYTES);
	if (guest_ram_init(&f->ram, RAM_BASE, RAM_SIZE, &err))
		fail_msg("guest_ram_init: %s", err.msg);
	return f;
}

static void open_dev(struct fixture *f, bool ro)
{
	struct error err = { 0 };
	f->t = create_dev(f, f->path, ro, &err);
	if (!f->t)
		fail_msg("virtio_blk_create: %s", err.msg);
	f->dev = virtio_mmio_device(f->t);
	assert_non_null(f->dev);
}

static void close_dev(struct fixture *f)
{
	if (f->dev)
		f->dev->ops->destroy(f->dev);
	f->dev = NULL;
	f->t = NULL;
}

static int setup_common(void **state, bool ro)
{
	struct fixture *f = new_fixture();
	open_dev(f, ro);
	driver_init(f, ~0ull);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_common(state, false);
}

static int setup_ro(void **state)
{
	return setup_common(state, true);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[160];
	close_dev(f);
	guest_ram_destroy(&f->ram);
	const char *names[] = { "disk.img", "other.img", "copy.img" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
		unlink(p);
	}
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

/* ---- identity and config -------------------------------------------------- */

static uint32_t cfg32(struct fixture *f, unsigned off)
{
	return rd32(f, R_CONFIG + off);
}

static void test_identity_and_config(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd32(f, R_MAGIC), 0x74726976);
	assert_int_equal(rd32(f, R_VERSION), 2);
	assert_int_equal(rd32(f, R_DEVICE_ID), VIRTIO_ID_BLOCK);
	uint64_t feat = device_features(f);
	uint64_t want = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
			(1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |
			(1ull << VIRTIO_BLK_F_WRITE_ZEROES) | (1ull << VIRTIO_F_VERSION_1);
	assert_int_equal(feat & want, want);
	assert_false(feat & (1ull << VIRTIO_BLK_F_RO));
	/* Nothing offered that this device does not implement. */
	uint64_t transport = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) |
			     (1ull << VIRTIO_F_INDIRECT_DESC);
	assert_int_equal(feat & ~(want | transport), 0);

	/* 64-bit fields read as two 32-bit halves, like Linux's vm_get. */
	uint64_t cap = cfg32(f, VIRTIO_BLK_CFG_CAPACITY) |
		       (uint64_t)cfg32(f, VIRTIO_BLK_CFG_CAPACITY + 4) << 32;
	assert_int_equal(cap, DISK_SECTORS);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_SEG_MAX), VIRTIO_BLK_SEG_MAX);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_BLK_SIZE), 512);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS),
			 VIRTIO_BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_MAX_DISCARD_SEG), VIRTIO_BLK_MAX_DISCARD_SEG);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_DISCARD_ALIGN), VIRTIO_BLK_DISCARD_ALIGN);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_MAX_WZ_SECTORS), VIRTIO_BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_MAX_WZ_SEG), VIRTIO_BLK_MAX_DISCARD_SEG);
	assert_int_equal(f->dev->ops->read(f->dev, R_CONFIG + VIRTIO_BLK_CFG_WZ_MAY_UNMAP, 1), 1);

	/* The config space is read-only: a write changes nothing. */
	uint32_t gen = rd32(f, R_CONFIG_GEN);
	wr32(f, R_CONFIG + VIRTIO_BLK_CFG_CAPACITY, 7);
	assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_CAPACITY), DISK_SECTORS);
	assert_int_equal(rd32(f, R_CONFIG_GEN), gen);
}

/* ---- reads and writes ------------------------------------------------------ */

static void test_write_then_read(void **state)
{
	struct fixture *f = *state;
	uint8_t *out = host(f, DATA_GPA, 3 * 512), file[3 * 512];
	uint32_t used;

	fill(out, 3 * 512, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 5, DATA_GPA, 3 * 512, false, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);      /* only the status byte */
	file_read(f->path, file, sizeof(file), 5 * 512);
	assert_memory_equal(file, out, sizeof(file));

	/* Read it back into two buffers on different pages; the dirty
	 * bitmap must show every page the device wrote. */
	guest_ram_clear_dirty(&f->ram);
	memset(host(f, DATA2_GPA, 8192), 0, 8192);
	put_hdr(f, 0, VIRTIO_BLK_T_IN, 5);
	struct seg s[] = {
		{ HDR_GPA, 16, false },
		{ DATA2_GPA + 4096 - 512, 1024, true },  /* crosses a page boundary */
		{ DATA2_GPA + 8192 + 100, 512, true },
		{ STATUS_GPA, 1, true },
	};
	used = run_chain(f, s, 4);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 3 * 512 + 1);
	assert_memory_equal(host(f, DATA2_GPA + 4096 - 512, 1024), out, 1024);
	assert_memory_equal(host(f, DATA2_GPA + 8192 + 100, 512), out + 1024, 512);
	assert_true(guest_ram_page_dirty(&f->ram, DATA2_GPA));
	assert_true(guest_ram_page_dirty(&f->ram, DATA2_GPA + 4096));
	assert_true(guest_ram_page_dirty(&f->ram, DATA2_GPA + 8192));
	assert_true(guest_ram_page_dirty(&f->ram, STATUS_GPA));
	assert_true(guest_ram_page_dirty(&f->ram, USED_GPA));
	assert_false(guest_ram_page_dirty(&f->ram, DATA2_GPA + 3 * 4096));
	assert_false(guest_ram_page_dirty(&f->ram, DATA_GPA));

	/* The interrupt came, and is acknowledged like Linux's vm_interrupt. */
	assert_true(wait_level(f, 5000));
	assert_true(rd32(f, R_INT_STATUS) & VIRTIO_INT_USED);
	wr32(f, R_INT_ACK, VIRTIO_INT_USED);
	assert_false(__atomic_load_n(&f->level, __ATOMIC_ACQUIRE));
}

/* VERSION_1 means any layout: header, data and status may share buffers. */
static void test_any_layout(void **state)
{
	struct fixture *f = *state;
	uint8_t data[1024], file[1024];

	/* OUT: header and data in one readable buffer. */
	uint64_t g = DATA_GPA;
	put32(f, g, VIRTIO_BLK_T_OUT);
	put32(f, g + 4, 0);
	put64(f, g + 8, 100);
	fill(data, sizeof(data), 9);
	memcpy(host(f, g + 16, sizeof(data)), data, sizeof(data));
	struct seg out[] = { { g, 16 + 1024, false }, { STATUS_GPA, 1, true } };
	run_chain(f, out, 2);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);
	file_read(f->path, file, sizeof(file), 100 * 512);
	assert_memory_equal(file, data, sizeof(data));

	/* IN: header split in two, data and status in one writable buffer. */
	put_hdr(f, 1, VIRTIO_BLK_T_IN, 100);
	uint64_t w = DATA2_GPA;
	memset(host(f, w, 1025), 0xee, 1025);
	struct seg in[] = {
		{ HDR_GPA + 32, 5, false }, { HDR_GPA + 37, 11, false }, { w, 1025, true },
	};
	assert_int_equal(run_chain(f, in, 3), 1025);
	assert_memory_equal(host(f, w, 1024), data, 1024);
	assert_int_equal(*host(f, w + 1024, 1), VIRTIO_BLK_S_OK);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	uint32_t used;

	fill(host(f, DATA_GPA, 512), 512, 3);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, false, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	uint8_t file[512];
	file_read(f->path, file, sizeof(file), 0);
	assert_memory_equal(file, host(f, DATA_GPA, 512), 512);
}

static void test_get_id(void **state)
{
	struct fixture *f = *state;
	uint32_t used;
	uint8_t want[VIRTIO_BLK_ID_BYTES] = "disk.img";

	memset(host(f, DATA_GPA, 64), 0xee, 64);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, VIRTIO_BLK_ID_BYTES, true,
				 &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, VIRTIO_BLK_ID_BYTES + 1);
	assert_memory_equal(host(f, DATA_GPA, VIRTIO_BLK_ID_BYTES), want, sizeof(want));
	assert_int_equal(*host(f, DATA_GPA + VIRTIO_BLK_ID_BYTES, 1), 0xee);

	/* A short buffer gets what fits. */
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 4, true, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 5);
}

static void test_discard_and_write_zeroes(void **state)
{
	struct fixture *f = *state;
	static uint8_t buf[256 * 1024];
	struct stat st;

	/* 1 MiB of data from sector 2048 on, written through the device. */
	for (unsigned i = 0; i < 4; i++) {
		fill(host(f, DATA_GPA, sizeof(buf)), sizeof(buf), i + 1);
		assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 2048 + i * 512, DATA_GPA,
					 sizeof(buf), false, NULL), VIRTIO_BLK_S_OK);
	}
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(stat(f->path, &st), 0);
	blkcnt_t full = st.st_blocks;
	assert_true(full >= 2048);

	/* Two discard segments in one request: the file gets sparser. */
	put_dwz(f, 0, 2048, 512, 0);
	put_dwz(f, 1, 2560, 512, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, 2), VIRTIO_BLK_S_OK);
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_blocks <= full - 1024);
	assert_int_equal(st.st_size, DISK_BYTES);
	file_read(f->path, buf, sizeof(buf), 2048 * 512);
	assert_true(all_zero(buf, sizeof(buf)));

	/* Write zeroes, with and without unmap, at unaligned sectors. */
	put_dwz(f, 0, 3073, 7, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	put_dwz(f, 1, 3200, 100, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_WRITE_ZEROES, 2), VIRTIO_BLK_S_OK);
	file_read(f->path, buf, sizeof(buf), 3072 * 512);
	static uint8_t ref[sizeof(buf)];
	fill(ref, sizeof(ref), 3);
	assert_memory_equal(buf, ref, 512);
	assert_true(all_zero(buf + 512, 7 * 512));
	assert_memory_equal(buf + 8 * 512, ref + 8 * 512, (3200 - 3080) * 512);
	assert_true(all_zero(buf + 128 * 512, 100 * 512));
	assert_memory_equal(buf + 228 * 512, ref + 228 * 512, sizeof(buf) - 228 * 512);

	/* 5.2.6.2: unknown flags are UNSUPP, and UNMAP on a discard. */
	put_dwz(f, 0, 0, 8, 2);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_WRITE_ZEROES, 1), VIRTIO_BLK_S_UNSUPP);
	put_dwz(f, 0, 0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, 1), VIRTIO_BLK_S_UNSUPP);

	/* Out of range, too long, too many segments, a ragged payload: IOERR
	 * and nothing done, also for the good segment before the bad one. */
	fill(ref, 512, 42);
	memcpy(host(f, DATA_GPA, 512), ref, 512);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 10, DATA_GPA, 512, false, NULL),
			 VIRTIO_BLK_S_OK);
	put_dwz(f, 0, 10, 1, 0);
	put_dwz(f, 1, DISK_SECTORS - 1, 2, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_WRITE_ZEROES, 2), VIRTIO_BLK_S_IOERR);
	file_read(f->path, buf, 512, 10 * 512);
	assert_memory_equal(buf, ref, 512);
	put_dwz(f, 0, UINT64_MAX, 1, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, 1), VIRTIO_BLK_S_IOERR);
	put_dwz(f, 0, 0, VIRTIO_BLK_MAX_DISCARD_SECTORS + 1, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, 1), VIRTIO_BLK_S_IOERR);
	for (unsigned i = 0; i <= VIRTIO_BLK_MAX_DISCARD_SEG; i++)
		put_dwz(f, i, i, 1, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_MAX_DISCARD_SEG + 1),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_DISCARD, 0, DATA2_GPA, 15, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_DISCARD, 0, 0, 0, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* A segment of 0 sectors and a full batch of segments are fine. */
	for (unsigned i = 0; i < VIRTIO_BLK_MAX_DISCARD_SEG; i++)
		put_dwz(f, i, 4000 + 8 * i, i ? 8 : 0, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_MAX_DISCARD_SEG),
			 VIRTIO_BLK_S_OK);
}

/* A driver that did not accept DISCARD gets UNSUPP for it. */
static void test_discard_not_negotiated(void **state)
{
	struct fixture *f = *state;

	driver_init(f, ~((1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES)));
	put_dwz(f, 0, 0, 8, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, 1), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_WRITE_ZEROES, 1), VIRTIO_BLK_S_UNSUPP);
}

static void test_bad_ranges(void **state)
{
	struct fixture *f = *state;
	uint8_t before[1024], after[1024];
	uint32_t used;

	file_read(f->path, before, sizeof(before), DISK_BYTES - 1024);
	fill(host(f, DATA_GPA, 4096), 4096, 5);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, DISK_SECTORS, DATA_GPA, 512, true, &used),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA_GPA, 1024, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, DISK_SECTORS - 1, DATA_GPA, 1024, false,
				 NULL), VIRTIO_BLK_S_IOERR);
	/* sector * 512 would wrap around: still out of range. */
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, UINT64_MAX / 256, DATA_GPA, 512, false,
				 NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, UINT64_MAX, DATA_GPA, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Not whole sectors. */
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 100, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 513, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	file_read(f->path, after, sizeof(after), DISK_BYTES - 1024);
	assert_memory_equal(before, after, sizeof(before));

	/* The last sector itself is fine. */
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, DISK_SECTORS - 1, DATA_GPA, 512, false,
				 NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA2_GPA, 512, true,
				 &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 513);
	assert_memory_equal(host(f, DATA2_GPA, 512), host(f, DATA_GPA, 512), 512);
	/* An empty read is a valid no-op. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, DISK_SECTORS, 0, 0, true, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
}

static void test_unknown_types(void **state)
{
	struct fixture *f = *state;
	uint32_t used;

	assert_int_equal(request(f, 99, 0, 0, 0, false, &used), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(used, 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_GET_LIFETIME, 0, DATA_GPA, 16, true, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(f, VIRTIO_BLK_T_SECURE_ERASE, 0, DATA2_GPA, 16, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	/* Still serving. */
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
}

static void test_read_only_device(void **state)
{
	struct fixture *f = *state;
	uint8_t before[512], after[512];

	uint64_t feat = device_features(f);
	assert_true(feat & (1ull << VIRTIO_BLK_F_RO));
	assert_false(feat & (1ull << VIRTIO_BLK_F_DISCARD));
	assert_false(feat & (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
	assert_true(feat & (1ull << VIRTIO_BLK_F_FLUSH));

	uint8_t data[512];
	fill(data, sizeof(data), 77);
	/* Another process may read the image while we hold a shared lock. */
	file_write(f->path, data, sizeof(data), 512);
	file_read(f->path, before, sizeof(before), 0);

	fill(host(f, DATA_GPA, 512), 512, 8);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	put_dwz(f, 0, 0, 1, 0);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_DISCARD, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(dwz_request(f, VIRTIO_BLK_T_WRITE_ZEROES, 1), VIRTIO_BLK_S_IOERR);
	file_read(f->path, after, sizeof(after), 0);
	assert_memory_equal(before, after, sizeof(before));

	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 1, DATA_GPA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(host(f, DATA_GPA, 512), data, 512);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
}

/* ---- malformed chains ---------------------------------------------------- */

static void expect_needs_reset(struct fixture *f)
{
	kick_if_needed(f, 1);
	if (!wait_status(f, VIRTIO_STATUS_NEEDS_RESET, 5000))
		fail_msg("device did not set DEVICE_NEEDS_RESET");
	/* Broken stays broken: further kicks do nothing. */
	uint16_t used = used_idx(f);
	wr32(f, R_QUEUE_NOTIFY, 0);
	sleep_ms(20);
	assert_int_equal(used_idx(f), used);
	/* A reset and a new initialisation bring it back. */
	driver_init(f, ~0ull);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
}

static void test_malformed_no_header(void **state)
{
	struct fixture *f = *state;
	/* Only a status byte. */
	struct seg s[] = { { STATUS_GPA, 1, true } };
	add_chain(f, s, 1);
	expect_needs_reset(f);
}

static void test_malformed_short_header(void **state)
{
	struct fixture *f = *state;
	put_hdr(f, 0, VIRTIO_BLK_T_IN, 0);
	struct seg s[] = { { HDR_GPA, 8, false }, { STATUS_GPA, 1, true } };
	add_chain(f, s, 2);
	expect_needs_reset(f);
}

static void test_malformed_no_status(void **state)
{
	struct fixture *f = *state;
	put_hdr(f, 0, VIRTIO_BLK_T_OUT, 0);
	struct seg s[] = { { HDR_GPA, 16, false }, { DATA_GPA, 512, false } };
	add_chain(f, s, 2);
	expect_needs_reset(f);
}

static void test_malformed_outside_ram(void **state)
{
	struct fixture *f = *state;
	put_hdr(f, 0, VIRTIO_BLK_T_IN, 0);
	/* A data buffer past the end of RAM and one straddling it. */
	struct seg s[] = {
		{ HDR_GPA, 16, false }, { RAM_BASE + RAM_SIZE - 256, 512, true },
		{ STATUS_GPA, 1, true },
	};
	add_chain(f, s, 3);
	expect_needs_reset(f);
	struct seg s2[] = {
		{ HDR_GPA, 16, false }, { 0x1000, 512, true }, { STATUS_GPA, 1, true },
	};
	add_chain(f, s2, 3);
	expect_needs_reset(f);
}

/* ---- batching, notification races, pause ----------------------------------- */

static void run_batch(struct fixture *f)
{
	enum { N = 32 };
	/* N writes of one sector each, made available before one kick. */
	for (unsigned i = 0; i < N; i++) {
		uint64_t data = DATA_GPA + 512ull * i;
		fill(host(f, data, 512), 512, 100 + i);
		put_hdr(f, i, VIRTIO_BLK_T_OUT, 64 + i);
		*host(f, STATUS_GPA + i, 1) = 0xee;
		struct seg s[] = {
			{ HDR_GPA + 32ull * i, 16, false }, { data, 512, false },
			{ STATUS_GPA + i, 1, true },
		};
		add_chain(f, s, 3);
	}
	kick_if_needed(f, N);
	if (!wait_used(f, (uint16_t)(f->used_seen + N), 10000))
		fail_msg("batch not completed");
	for (unsigned i = 0; i < N; i++) {
		uint32_t len;
		assert_int_equal(take_used(f, &len), (3 * i) % QSIZE);
		assert_int_equal(len, 1);
		assert_int_equal(status_of(f, i), VIRTIO_BLK_S_OK);
	}
	static uint8_t file[N * 512];
	file_read(f->path, file, sizeof(file), 64 * 512);
	assert_memory_equal(file, host(f, DATA_GPA, sizeof(file)), sizeof(file));
	assert_true(wait_level(f, 5000));
}

static void test_batch(void **state)
{
	run_batch(*state);
}

static void test_batch_without_event_idx(void **state)
{
	struct fixture *f = *state;
	driver_init(f, ~(1ull << VIRTIO_F_EVENT_IDX));
	assert_false(has(f, VIRTIO_F_EVENT_IDX));
	run_batch(f);
}

/* Many requests, up to 48 outstanding, each kicked only when the device
 * asks for it: a lost wake-up (the device sleeping with work in the ring
 * and notifications off) hangs here. */
static void stream(struct fixture *f)
{
	enum { TOTAL = 3000, WINDOW = 48 };
	unsigned submitted = 0, done = 0;
	uint64_t end = now_ms() + 60000;

	fill(host(f, DATA_GPA, 4096), 4096, 55);
	while (done < TOTAL) {
		unsigned added = 0;
		/* Batches of 1 to 5, as far as the window allows. */
		unsigned batch = 1 + submitted % 5;
		while (submitted < TOTAL && submitted - done < WINDOW && added < batch) {
			unsigned slot = submitted % WINDOW;
			put_hdr(f, slot, VIRTIO_BLK_T_OUT, submitted % DISK_SECTORS);
			struct seg s[] = {
				{ HDR_GPA + 32ull * slot, 16, false },
				{ DATA_GPA + 512ull * (submitted % 8), 512, false },
				{ STATUS_GPA + slot, 1, true },
			};
			add_chain(f, s, 3);
			submitted++;
			added++;
		}
		if (added)
			kick_if_needed(f, (uint16_t)added);
		while ((uint16_t)(used_idx(f) - f->used_seen) > 0) {
			uint32_t len;
			take_used(f, &len);
			assert_int_equal(len, 1);
			assert_int_equal(status_of(f, done % WINDOW), VIRTIO_BLK_S_OK);
			done++;
		}
		if (now_ms() > end)
			fail_msg("stalled: %u submitted, %u done", submitted, done);
		if (submitted - done == WINDOW)
			sched_yield();
	}
}

static void test_stream_event_idx(void **state)
{
	struct fixture *f = *state;
	assert_true(has(f, VIRTIO_F_EVENT_IDX));
	stream(f);
}

static void test_stream_flags(void **state)
{
	struct fixture *f = *state;
	driver_init(f, ~(1ull << VIRTIO_F_EVENT_IDX));
	stream(f);
}

static void test_pause_resume(void **state)
{
	struct fixture *f = *state;

	virtio_mmio_pause(f->t);
	put_hdr(f, 0, VIRTIO_BLK_T_OUT, 1);
	fill(host(f, DATA_GPA, 512), 512, 12);
	*host(f, STATUS_GPA, 1) = 0xee;
	struct seg s[] = { { HDR_GPA, 16, false }, { DATA_GPA, 512, false },
			   { STATUS_GPA, 1, true } };
	add_chain(f, s, 3);
	wr32(f, R_QUEUE_NOTIFY, 0);     /* the kick arrives while paused */
	sleep_ms(100);
	assert_int_equal(used_idx(f), f->used_seen);
	assert_int_equal(status_of(f, 0), 0xee);

	virtio_mmio_resume(f->t);
	if (!wait_used(f, (uint16_t)(f->used_seen + 1), 10000))
		fail_msg("the kick made while paused was lost");
	uint32_t len;
	take_used(f, &len);
	assert_int_equal(status_of(f, 0), VIRTIO_BLK_S_OK);

	/* Pausing with nothing in flight, twice in a row, is fine too. */
	virtio_mmio_pause(f->t);
	virtio_mmio_resume(f->t);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
}

/* pause() while the worker is busy returns only when nothing more is
 * being written to guest memory: nothing moves between its return and
 * resume(). Paused at varying points of a stream of large reads, so that
 * most rounds catch a request in flight. */
static void test_pause_drains(void **state)
{
	struct fixture *f = *state;
	enum { N = 16, LEN = 64 * 1024, ROUNDS = 60 };

	for (unsigned round = 0; round < ROUNDS; round++) {
		for (unsigned i = 0; i < N; i++) {
			put_hdr(f, i, VIRTIO_BLK_T_IN, (uint64_t)(LEN / 512) * i);
			*host(f, STATUS_GPA + i, 1) = 0xee;
			struct seg s[] = {
				{ HDR_GPA + 32ull * i, 16, false },
				{ DATA_GPA + (uint64_t)LEN * i, LEN, true },
				{ STATUS_GPA + i, 1, true },
			};
			add_chain(f, s, 3);
		}
		kick_if_needed(f, N);
		struct timespec ts = { 0, (long)(round % 10) * 20000 };
		nanosleep(&ts, NULL);

		virtio_mmio_pause(f->t);
		uint16_t at_pause = used_idx(f);
		uint8_t snap[N];
		memcpy(snap, host(f, STATUS_GPA, N), N);
		sleep_ms(2);
		assert_int_equal(used_idx(f), at_pause);
		assert_memory_equal(host(f, STATUS_GPA, N), snap, N);
		virtio_mmio_resume(f->t);

		if (!wait_used(f, (uint16_t)(f->used_seen + N), 10000))
			fail_msg("requests left after resume were not completed");
		for (unsigned i = 0; i < N; i++) {
			uint32_t len;
			take_used(f, &len);
			assert_int_equal(len, LEN + 1);
			assert_int_equal(status_of(f, i), VIRTIO_BLK_S_OK);
		}
	}
}

/* ---- save / restore ---------------------------------------------------------- */

static void save_dev(struct fixture *f, struct state_writer *w)
{
	struct error err = { 0 };
	state_writer_init(w);
	if (f->dev->ops->save(f->dev, w, &err))
		fail_msg("save: %s", err.msg);
}

static int restore_dev(struct device *dev, const struct state_writer *w, struct error *err)
{
	struct state_reader r;
	int ret = state_reader_init(&r, w->buf, w->len, dev->id, NULL, 0, err);
	if (ret)
		return ret;
	return dev->ops->restore(dev, &r, err);
}

static void test_save_restore(void **state)
{
	struct fixture *f = *state;
	struct state_writer a, b;
	struct error err = { 0 };

	/* Some history, so the queue indices are not zero. */
	fill(host(f, DATA_GPA, 512), 512, 21);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 3, DATA_GPA, 512, false, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);

	virtio_mmio_pause(f->t);
	save_dev(f, &a);
	close_dev(f);           /* releases the image lock for the new device */

	open_dev(f, false);
	virtio_mmio_pause(f->t);
	if (restore_dev(f->dev, &a, &err))
		fail_msg("restore: %s", err.msg);
	save_dev(f, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	virtio_mmio_resume(f->t);

	/* The restored device carries on where the old one stopped. */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 3, DATA2_GPA, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(host(f, DATA2_GPA, 512), host(f, DATA_GPA, 512), 512);
	state_writer_free(&a);
	state_writer_free(&b);
}

static void test_restore_refuses_other_capacity(void **state)
{
	struct fixture *f = *state;
	struct state_writer a, before, after;
	struct error err = { 0 };
	char other[160];

	virtio_mmio_pause(f->t);
	save_dev(f, &a);
	virtio_mmio_resume(f->t);

	snprintf(other, sizeof(other), "%s/other.img", f->dir);
	make_image(other, DISK_BYTES * 2);
	struct fixture g = *f;
	g.t = create_dev(&g, other, false, &err);
	if (!g.t)
		fail_msg("virtio_blk_create: %s", err.msg);
	g.dev = virtio_mmio_device(g.t);
	virtio_mmio_pause(g.t);
	save_dev(&g, &before);
	assert_true(restore_dev(g.dev, &a, &err) < 0);
	assert_non_null(strstr(err.msg, "sectors"));
	assert_non_null(strstr(err.msg, "8192"));
	assert_non_null(strstr(err.msg, "16384"));
	/* Refused before anything changed. */
	save_dev(&g, &after);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.buf, after.buf, before.len);
	g.dev->ops->destroy(g.dev);

	state_writer_free(&a);
	state_writer_free(&before);
	state_writer_free(&after);
}

/* A read-only device does not take a read-write VM's disk. (The driver
 * here accepted no feature the read-only device lacks, so the transport
 * lets the record through to the backend.) */
static void test_restore_refuses_other_mode(void **state)
{
	struct fixture *f = *state;
	struct state_writer a;
	struct error err = { 0 };

	driver_init(f, ~((1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES)));
	virtio_mmio_pause(f->t);
	save_dev(f, &a);
	close_dev(f);
	open_dev(f, true);
	virtio_mmio_pause(f->t);
	assert_true(restore_dev(f->dev, &a, &err) < 0);
	assert_non_null(strstr(err.msg, "read-only"));
	assert_non_null(strstr(err.msg, "read-write"));
	assert_int_equal(rd32(f, R_STATUS), 0);
	virtio_mmio_resume(f->t);
	state_writer_free(&a);
}

/* ---- creation ---------------------------------------------------------------- */

static void test_create_errors(void **state)
{
	struct fixture *f = *state;
	struct error err = { 0 };
	char p[160];

	/* The image is locked by the fixture's device. */
	assert_null(create_dev(f, f->path, false, &err));
	assert_non_null(strstr(err.msg, "already in use"));
	assert_non_null(strstr(err.msg, "virtio-blk@10001000"));
	assert_null(create_dev(f, f->path, true, &err));

	snprintf(p, sizeof(p), "%s/missing.img", f->dir);
	assert_null(create_dev(f, p, false, &err));
	assert_non_null(strstr(err.msg, p));

	snprintf(p, sizeof(p), "%s/other.img", f->dir);
	make_image(p, 1000);
	assert_null(create_dev(f, p, false, &err));
	assert_non_null(strstr(err.msg, "512"));

	/* The transport refuses (a name too long): the image, its lock and
	 * the worker are gone again (ASan's leak check sees the rest). */
	snprintf(p, sizeof(p), "%s/copy.img", f->dir);
	make_image(p, DISK_BYTES);
	char long_id[100];
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	struct irq_line irq = { .set_level = line_set, .controller = f, .irq = 1 };
	assert_null(virtio_blk_create(long_id, MMIO_BASE, irq, &f->ram, p, false, &err));
	struct virtio_mmio *t = create_dev(f, p, false, &err);
	if (!t)
		fail_msg("the image stayed locked: %s", err.msg);
	virtio_mmio_device(t)->ops->destroy(virtio_mmio_device(t));
}

static void test_reset_and_reinit(void **state)
{
	struct fixture *f = *state;
	/* Requests made available but never kicked, then a reset: forgotten. */
	put_hdr(f, 0, VIRTIO_BLK_T_FLUSH, 0);
	struct seg s[] = { { HDR_GPA, 16, false }, { STATUS_GPA, 1, true } };
	add_chain(f, s, 2);
	wr32(f, R_STATUS, 0);
	assert_int_equal(rd32(f, R_STATUS), 0);
	for (unsigned i = 0; i < 3; i++) {
		driver_init(f, ~0ull);
		fill(host(f, DATA_GPA, 1024), 1024, i);
		assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 8, DATA_GPA, 1024, false, NULL),
				 VIRTIO_BLK_S_OK);
		assert_int_equal(request(f, VIRTIO_BLK_T_IN, 8, DATA2_GPA, 1024, true, NULL),
				 VIRTIO_BLK_S_OK);
		assert_memory_equal(host(f, DATA2_GPA, 1024), host(f, DATA_GPA, 1024), 1024);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_then_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_any_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_and_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_device, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_no_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_short_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_no_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_without_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_other_capacity, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_other_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_and_reinit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
