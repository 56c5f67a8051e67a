/* test_virtq.c: the split virtqueue (virtio 1.2, 2.7) seen from a driver.
 * The tests lay out descriptor tables and rings in a real struct guest_ram
 * the way a driver does, then check what vq_pop() makes of them: valid
 * chains come back as checked host buffers; every malformed one is refused
 * with a message naming the problem, without moving the queue and without
 * any access outside guest RAM (ASan would tell). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/queue.h"
#include "state/state.h"

#define RAM_BASE 0x80000000ull
#define RAM_SIZE (1ull << 20)
#define QSZ 16
#define DESC_GPA (RAM_BASE + 0x1000)
#define AVAIL_GPA (RAM_BASE + 0x2000)
#define USED_GPA (RAM_BASE + 0x3000)
#define IND_GPA (RAM_BASE + 0x8000)
#define BUF_GPA (RAM_BASE + 0x10000)

struct fx {
	struct guest_ram ram;
	struct virtq q;
	struct vq_chain chain;
	uint16_t avail_idx;     /* the driver's copy */
};

/* ---- driver side ----------------------------------------------------------- */

static uint8_t *gp(struct fx *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = guest_ram_ptr(&f->ram, gpa, len);
	assert_non_null(p);
	return p;
}

static void w16(struct fx *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(gp(f, gpa, 2), &v, 2);
}

static void w32(struct fx *f, uint64_t gpa, uint32_t v)
{
	v = htole32(v);
	memcpy(gp(f, gpa, 4), &v, 4);
}

static void w64(struct fx *f, uint64_t gpa, uint64_t v)
{
	v = htole64(v);
	memcpy(gp(f, gpa, 8), &v, 8);
}

static uint16_t r16(struct fx *f, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, gp(f, gpa, 2), 2);
	return le16toh(v);
}

static uint32_t r32(struct fx *f, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, gp(f, gpa, 4), 4);
	return le32toh(v);
}

static void desc_at(struct fx *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
		    uint16_t flags, uint16_t next)
{
	uint64_t d = table + 16ull * i;
	w64(f, d, addr);
	w32(f, d + 8, len);
	w16(f, d + 12, flags);
	w16(f, d + 14, next);
}

static void desc(struct fx *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

/* Makes chain `head` available and publishes the new avail idx. */
static void offer(struct fx *f, uint16_t head)
{
	w16(f, AVAIL_GPA + 4 + 2 * (f->avail_idx % f->q.num), head);
	f->avail_idx++;
	w16(f, AVAIL_GPA + 2, f->avail_idx);
}

static void set_avail_idx(struct fx *f, uint16_t idx)
{
	f->avail_idx = idx;
	w16(f, AVAIL_GPA + 2, idx);
}

static uint16_t used_idx(struct fx *f)
{
	return r16(f, USED_GPA + 2);
}

static uint16_t avail_event(struct fx *f)
{
	return r16(f, USED_GPA + 4 + 8 * f->q.num);
}

static void set_used_event(struct fx *f, uint16_t v)
{
	w16(f, AVAIL_GPA + 4 + 2 * f->q.num, v);
}

static void setup_ram(struct fx *f, uint64_t size)
{
	struct error err = { 0 };
	if (guest_ram_init(&f->ram, RAM_BASE, size, &err))
		fail_msg("guest_ram_init: %s", err.msg);
	f->q.ram = &f->ram;
	vq_reset(&f->q);
	f->q.num = QSZ;
	f->q.desc_addr = DESC_GPA;
	f->q.avail_addr = AVAIL_GPA;
	f->q.used_addr = USED_GPA;
	f->q.ready = true;
	assert_int_equal(vq_validate(&f->q, &err), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	setup_ram(f, RAM_SIZE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	guest_ram_destroy(&f->ram);
	free(f);
	return 0;
}

static int pop(struct fx *f)
{
	struct error err = { 0 };
	int rc = vq_pop(&f->q, &f->chain, &err);
	if (rc < 0)
		fail_msg("vq_pop: %s", err.msg);
	return rc;
}

/* The malformed-chain contract: an error that names the problem, and
 * neither the queue nor the used ring (avail_event) moved. */
static void expect_bad(struct fx *f, const char *needle)
{
	struct virtq before = f->q;
	uint8_t used_before[4 + 8 * VQ_MAX_SIZE + 2];
	size_t used_len = 4 + 8 * f->q.num + 2;
	memcpy(used_before, gp(f, USED_GPA, used_len), used_len);
	struct error err = { 0 };

	int rc = vq_pop(&f->q, &f->chain, &err);
	assert_true(rc < 0);
	assert_true(err.code > 0);
	if (!strstr(err.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
	assert_memory_equal(&before, &f->q, sizeof(before));
	assert_memory_equal(used_before, gp(f, USED_GPA, used_len), used_len);
}

/* ---- valid chains ------------------------------------------------------------ */

static void test_empty_and_not_ready(void **state)
{
	struct fx *f = *state;
	assert_int_equal(pop(f), 0);
	assert_false(vq_has_available(&f->q));
	desc(f, 0, BUF_GPA, 64, 0, 0);
	offer(f, 0);
	f->q.ready = false;
	assert_int_equal(pop(f), 0);
	assert_false(vq_has_available(&f->q));
	f->q.ready = true;
	assert_true(vq_has_available(&f->q));
	assert_int_equal(pop(f), 1);
	assert_false(vq_has_available(&f->q));
}

static void test_single_buffer(void **state)
{
	struct fx *f = *state;
	desc(f, 3, BUF_GPA + 0x100, 512, 0, 0);
	offer(f, 3);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.head, 3);
	assert_int_equal(f->chain.nsegs, 1);
	assert_int_equal(f->chain.readable, 512);
	assert_int_equal(f->chain.writable, 0);
	assert_int_equal(f->chain.segs[0].gpa, BUF_GPA + 0x100);
	assert_ptr_equal(f->chain.segs[0].host, gp(f, BUF_GPA + 0x100, 512));
	assert_int_equal(f->chain.segs[0].len, 512);
	assert_false(f->chain.segs[0].write);
	assert_int_equal(f->q.last_avail_idx, 1);
	assert_int_equal(pop(f), 0);
}

static void test_mixed_chain_read_write(void **state)
{
	struct fx *f = *state;
	/* A block request: 16-byte header, two data buffers, 1-byte status. */
	desc(f, 5, BUF_GPA, 16, VRING_DESC_F_NEXT, 9);
	desc(f, 9, BUF_GPA + 0x1000, 0x1000, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	desc(f, 2, BUF_GPA + 0x3000, 0x800, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 7);
	desc(f, 7, BUF_GPA + 0x5000, 1, VRING_DESC_F_WRITE, 0);
	for (unsigned i = 0; i < 16; i++)
		gp(f, BUF_GPA, 16)[i] = (uint8_t)(0xa0 + i);
	offer(f, 5);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.head, 5);
	assert_int_equal(f->chain.nsegs, 4);
	assert_int_equal(f->chain.readable, 16);
	assert_int_equal(f->chain.writable, 0x1801);
	assert_false(f->chain.segs[0].write);
	assert_true(f->chain.segs[1].write && f->chain.segs[2].write && f->chain.segs[3].write);

	uint8_t hdr[20];
	memset(hdr, 0, sizeof(hdr));
	assert_int_equal(vq_chain_read(&f->chain, 4, hdr, sizeof(hdr)), 12);
	assert_int_equal(hdr[0], 0xa4);
	assert_int_equal(hdr[11], 0xaf);
	assert_int_equal(vq_chain_read(&f->chain, 16, hdr, 1), 0);

	/* A write that straddles the two data buffers and stops short of the
	 * status byte; the pages it touched, and only those, become dirty. */
	guest_ram_clear_dirty(&f->ram);
	static uint8_t data[0x800];
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(vq_chain_write(&f->ram, &f->chain, 0xc00, data, sizeof(data)),
			 sizeof(data));
	assert_int_equal(gp(f, BUF_GPA + 0x1bff, 1)[0], 0);
	assert_int_equal(gp(f, BUF_GPA + 0x1c00, 1)[0], 0x5a);
	assert_int_equal(gp(f, BUF_GPA + 0x1fff, 1)[0], 0x5a);
	assert_int_equal(gp(f, BUF_GPA + 0x3000, 1)[0], 0x5a);
	assert_int_equal(gp(f, BUF_GPA + 0x33ff, 1)[0], 0x5a);
	assert_int_equal(gp(f, BUF_GPA + 0x3400, 1)[0], 0);
	assert_true(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x1000));
	assert_true(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x3000));
	assert_false(guest_ram_page_dirty(&f->ram, BUF_GPA));
	assert_false(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x2000));
	assert_false(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x5000));
	/* The status byte: the last writable byte; nothing beyond. */
	uint8_t st[2] = { 7, 7 };
	assert_int_equal(vq_chain_write(&f->ram, &f->chain, 0x1800, st, 2), 1);
	assert_int_equal(gp(f, BUF_GPA + 0x5000, 1)[0], 7);
	assert_true(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x5000));
	/* Longer than the writable part: only what fits. */
	static uint8_t big[0x2000];
	assert_int_equal(vq_chain_write(&f->ram, &f->chain, 0x1800, big, sizeof(big)), 1);
	assert_int_equal(vq_chain_write(&f->ram, &f->chain, 0x1801, big, sizeof(big)), 0);
	assert_int_equal(vq_chain_read(&f->chain, 0, big, sizeof(big)), 16);

	guest_ram_clear_dirty(&f->ram);
	vq_chain_mark_written(&f->ram, &f->chain, 0xfff, 2);
	assert_true(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x1000));
	assert_true(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x3000));
	assert_false(guest_ram_page_dirty(&f->ram, BUF_GPA + 0x5000));
}

static void test_indirect(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	desc_at(f, IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	desc_at(f, IND_GPA, 2, BUF_GPA + 0x100, 100, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA + 0x200, 200, VRING_DESC_F_WRITE, 0);
	/* The WRITE flag of the descriptor naming the table is ignored. */
	desc(f, 4, IND_GPA, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	offer(f, 4);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.head, 4);
	assert_int_equal(f->chain.nsegs, 3);
	assert_int_equal(f->chain.readable, 116);
	assert_int_equal(f->chain.writable, 200);
	assert_int_equal(f->chain.segs[1].gpa, BUF_GPA + 0x100);
	assert_true(f->chain.segs[2].write);
}

static void test_direct_then_indirect(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	/* 2.7.5.3.2: zero or more direct descriptors, then one indirect. */
	desc_at(f, IND_GPA, 0, BUF_GPA + 0x100, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA + 0x200, 8, VRING_DESC_F_WRITE, 0);
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc(f, 1, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.nsegs, 3);
	assert_int_equal(f->chain.readable, 16);
	assert_int_equal(f->chain.writable, 8);
}

static void test_longest_indirect_chain(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	for (unsigned i = 0; i < VQ_MAX_CHAIN; i++)
		desc_at(f, IND_GPA, i, BUF_GPA + i, 1,
			i + 1 < VQ_MAX_CHAIN ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	desc(f, 0, IND_GPA, VQ_MAX_CHAIN * 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.nsegs, VQ_MAX_CHAIN);
	assert_int_equal(f->chain.readable, VQ_MAX_CHAIN);
}

static void test_full_ring_and_push(void **state)
{
	struct fx *f = *state;
	/* Every descriptor a one-buffer chain: the ring is full. */
	for (unsigned i = 0; i < QSZ; i++) {
		desc(f, i, BUF_GPA + 0x100 * i, 0x100, VRING_DESC_F_WRITE, 0);
		offer(f, (uint16_t)(QSZ - 1 - i));
	}
	guest_ram_clear_dirty(&f->ram);
	for (unsigned i = 0; i < QSZ; i++) {
		assert_int_equal(pop(f), 1);
		assert_int_equal(f->chain.head, QSZ - 1 - i);
		vq_push(&f->q, f->chain.head, 10 + i);
		assert_int_equal(used_idx(f), i + 1);
		assert_int_equal(r32(f, USED_GPA + 4 + 8 * i), QSZ - 1 - i);
		assert_int_equal(r32(f, USED_GPA + 8 + 8 * i), 10 + i);
	}
	assert_int_equal(pop(f), 0);
	assert_int_equal(f->q.last_avail_idx, QSZ);
	assert_int_equal(f->q.used_idx, QSZ);
	/* The used ring's page is dirty; the untouched descriptor page is not. */
	assert_true(guest_ram_page_dirty(&f->ram, USED_GPA));
	assert_false(guest_ram_page_dirty(&f->ram, DESC_GPA));
	assert_false(guest_ram_page_dirty(&f->ram, AVAIL_GPA));
}

/* vq_push_many publishes all elements with one used->idx store, wrapping
 * the ring; vq_unpop makes the same chains come out of vq_pop again. */
static void test_push_many_and_unpop(void **state)
{
	struct fx *f = *state;
	for (unsigned i = 0; i < QSZ; i++)
		desc(f, i, BUF_GPA + 0x100 * i, 0x100, VRING_DESC_F_WRITE, 0);
	/* Advance the used ring near its end so the batch wraps around. */
	for (unsigned i = 0; i < QSZ - 2; i++) {
		offer(f, (uint16_t)i);
		assert_int_equal(pop(f), 1);
		vq_push(&f->q, f->chain.head, 0);
	}
	for (unsigned i = 0; i < 4; i++)
		offer(f, (uint16_t)(i + 3));
	struct vq_used batch[4];
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(pop(f), 1);
		batch[i] = (struct vq_used){ f->chain.head, 100 + i };
	}
	/* Give the last two back: they come out again, in order. */
	vq_unpop(&f->q, 2);
	for (unsigned i = 2; i < 4; i++) {
		assert_int_equal(pop(f), 1);
		assert_int_equal(f->chain.head, batch[i].head);
	}
	assert_int_equal(pop(f), 0);

	guest_ram_clear_dirty(&f->ram);
	uint16_t before = used_idx(f);
	vq_push_many(&f->q, batch, 4);
	assert_int_equal(used_idx(f), (uint16_t)(before + 4));
	for (unsigned i = 0; i < 4; i++) {
		unsigned slot = (before + i) % QSZ;
		assert_int_equal(r32(f, USED_GPA + 4 + 8 * slot), batch[i].head);
		assert_int_equal(r32(f, USED_GPA + 8 + 8 * slot), 100 + i);
	}
	assert_true(guest_ram_page_dirty(&f->ram, USED_GPA));
	/* An empty batch changes nothing. */
	vq_push_many(&f->q, batch, 0);
	assert_int_equal(used_idx(f), (uint16_t)(before + 4));
}

static void test_index_wraparound(void **state)
{
	struct fx *f = *state;
	/* Indices are free-running 16-bit counters (2.7.6, 2.7.8). */
	f->q.last_avail_idx = 0xfffd;
	f->q.used_idx = 0xfffd;
	set_avail_idx(f, 0xfffd);
	w16(f, USED_GPA + 2, 0xfffd);
	for (unsigned i = 0; i < 6; i++) {
		desc(f, i, BUF_GPA, 4, 0, 0);
		offer(f, (uint16_t)i);
	}
	assert_int_equal(f->avail_idx, 3);
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(pop(f), 1);
		assert_int_equal(f->chain.head, i);
		vq_push(&f->q, f->chain.head, 0);
	}
	assert_int_equal(pop(f), 0);
	assert_int_equal(f->q.last_avail_idx, 3);
	assert_int_equal(used_idx(f), 3);
	/* Slot (0xfffd + 5) % 16 = 2 holds the last id. */
	assert_int_equal(r32(f, USED_GPA + 4 + 8 * 2), 5);
}

/* ---- malformed chains ------------------------------------------------------ */

static void test_bad_self_loop(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	offer(f, 0);
	expect_bad(f, "loop");
}

static void test_bad_long_cycle(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	desc(f, 2, BUF_GPA, 8, VRING_DESC_F_NEXT, 3);
	desc(f, 3, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	offer(f, 0);
	expect_bad(f, "loop");
}

static void test_bad_next_out_of_range(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, QSZ);
	offer(f, 0);
	expect_bad(f, "next 16 is out of range");
}

static void test_bad_head_out_of_range(void **state)
{
	struct fx *f = *state;
	offer(f, QSZ);
	expect_bad(f, "names descriptor 16");
	w16(f, AVAIL_GPA + 4, 0xffff);
	expect_bad(f, "names descriptor 65535");
}

static void test_bad_avail_idx_jump(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, 0, 0);
	set_avail_idx(f, QSZ + 1);
	expect_bad(f, "17 entries ahead");
	/* Exactly num ahead is a full ring, which is fine. */
	for (unsigned i = 0; i < QSZ; i++)
		w16(f, AVAIL_GPA + 4 + 2 * i, 0);
	set_avail_idx(f, QSZ);
	assert_int_equal(pop(f), 1);
	/* "Behind" is ahead by a lot modulo 2^16. */
	set_avail_idx(f, 0);
	expect_bad(f, "ahead");
}

static void test_bad_addresses(void **state)
{
	struct fx *f = *state;
	static const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{ RAM_BASE - 0x1000, 16 },              /* below RAM */
		{ RAM_BASE - 8, 16 },                   /* straddles RAM's start */
		{ RAM_BASE + RAM_SIZE, 1 },             /* just past the end */
		{ RAM_BASE + RAM_SIZE - 8, 9 },         /* straddles the end */
		{ RAM_BASE + 0x1000, (uint32_t)RAM_SIZE },   /* too long */
		{ UINT64_MAX - 7, 16 },                 /* addr + len wraps */
		{ 0, 0xffffffffu },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
		desc(f, 1, bad[i].addr, bad[i].len, VRING_DESC_F_WRITE, 0);
		if (i == 0)
			offer(f, 0);
		expect_bad(f, "descriptor 1: buffer");
		expect_bad(f, "not inside guest RAM");
	}
	/* The last byte of RAM is fine. */
	desc(f, 1, RAM_BASE + RAM_SIZE - 1, 1, VRING_DESC_F_WRITE, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.writable, 1);
}

static void test_bad_zero_length(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA, 0, VRING_DESC_F_WRITE, 0);
	offer(f, 0);
	expect_bad(f, "descriptor 1 has length 0");
}

static void test_bad_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, 0, 0);
	desc(f, 0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, "VIRTIO_F_INDIRECT_DESC was not negotiated");
}

static void test_bad_indirect_table(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, 0, 0);
	desc(f, 0, IND_GPA, 0, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, "indirect table length 0 is not a non-zero multiple of 16");
	desc(f, 0, IND_GPA, 24, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "indirect table length 24");
	desc(f, 0, IND_GPA, (VQ_MAX_CHAIN + 1) * 16, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "longer than 1024");
	desc(f, 0, RAM_BASE + RAM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "indirect table [0x800ffff0, +0x20) is not inside guest RAM");
	desc(f, 0, UINT64_MAX - 15, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "not inside guest RAM");
	/* An in-table next outside the table. */
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	desc(f, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "next 2 is outside the table of 2");
	/* A loop inside the table. */
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	expect_bad(f, "loops");
	/* A zero-length buffer inside the table. */
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA, 0, 0, 0);
	expect_bad(f, "descriptor 1 of the indirect table in descriptor 0 has length 0");
}

static void test_bad_nested_indirect(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc_at(f, IND_GPA, 1, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(f, IND_GPA + 0x100, 0, BUF_GPA, 8, 0, 0);
	desc(f, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, "is itself indirect");
}

static void test_bad_indirect_with_next(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, 0, 0);
	desc(f, 0, IND_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	expect_bad(f, "indirect and also has NEXT");
}

static void test_bad_readable_after_writable(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	desc(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	desc(f, 2, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	expect_bad(f, "descriptor 2 is device-readable but follows a device-writable one");
	/* Inside an indirect table too, and across direct -> indirect. */
	f->q.indirect = true;
	desc_at(f, IND_GPA, 0, BUF_GPA, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	desc_at(f, IND_GPA, 1, BUF_GPA, 8, 0, 0);
	desc(f, 0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "device-readable but follows");
	desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	desc(f, 1, IND_GPA + 16, 16, VRING_DESC_F_INDIRECT, 0);
	expect_bad(f, "descriptor 0 of the indirect table in descriptor 1 is device-readable");
}

static void test_bad_too_many_descriptors(void **state)
{
	struct fx *f = *state;
	f->q.indirect = true;
	/* A full 1024-entry table after one direct buffer: 1025 buffers. */
	for (unsigned i = 0; i < VQ_MAX_CHAIN; i++)
		desc_at(f, IND_GPA, i, BUF_GPA, 1, i + 1 < VQ_MAX_CHAIN ? VRING_DESC_F_NEXT : 0,
			(uint16_t)(i + 1));
	desc(f, 0, BUF_GPA, 1, VRING_DESC_F_NEXT, 1);
	desc(f, 1, IND_GPA, VQ_MAX_CHAIN * 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, "more than 1024 buffers");
}

static void test_bad_rings_misplaced(void **state)
{
	struct fx *f = *state;
	desc(f, 0, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	f->q.used_addr = RAM_BASE + RAM_SIZE - 8;
	expect_bad(f, "misplaced");
	f->q.used_addr = USED_GPA;
	f->q.avail_addr = AVAIL_GPA + 1;
	expect_bad(f, "misplaced");
	f->q.avail_addr = AVAIL_GPA;
	assert_int_equal(pop(f), 1);
	/* A push or a notification check on misplaced rings does nothing. */
	f->q.used_addr = RAM_BASE + RAM_SIZE;
	f->q.avail_addr = RAM_BASE + RAM_SIZE;
	vq_push(&f->q, 0, 0);
	assert_int_equal(f->q.used_idx, 0);
	assert_false(vq_should_notify(&f->q));
	assert_false(vq_enable_notify(&f->q, true));
	assert_false(vq_has_available(&f->q));
}

/* Chains over 4 GiB need buffers that add up to more than that: two 3 GiB
 * descriptors over the same (never touched) RAM. */
static void test_bad_total_overflow(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	setup_ram(f, 3ull << 30);
	desc(f, 0, RAM_BASE, 0xc0000000u, VRING_DESC_F_NEXT, 1);
	desc(f, 1, RAM_BASE, 0xc0000000u, VRING_DESC_F_WRITE, 0);
	offer(f, 0);
	expect_bad(f, "longer than 4 GiB");
	desc(f, 1, RAM_BASE, 0x3fffffffu, VRING_DESC_F_WRITE, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->chain.readable, 0xc0000000u);
	assert_int_equal(f->chain.writable, 0x3fffffffu);
	guest_ram_destroy(&f->ram);
	free(f);
}

/* ---- notifications --------------------------------------------------------- */

static void push_one(struct fx *f)
{
	desc(f, 0, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	assert_int_equal(pop(f), 1);
	vq_push(&f->q, 0, 0);
}

static void test_notify_flags(void **state)
{
	struct fx *f = *state;
	push_one(f);
	assert_true(vq_should_notify(&f->q));
	/* Nothing new since the last interrupt. */
	assert_false(vq_should_notify(&f->q));
	w16(f, AVAIL_GPA, VRING_AVAIL_F_NO_INTERRUPT);
	push_one(f);
	assert_false(vq_should_notify(&f->q));
	w16(f, AVAIL_GPA, 0);
	push_one(f);
	assert_true(vq_should_notify(&f->q));
}

static void test_notify_event_idx(void **state)
{
	struct fx *f = *state;
	f->q.event_idx = true;
	/* The flags are ignored with event index (2.7.7.2). */
	w16(f, AVAIL_GPA, VRING_AVAIL_F_NO_INTERRUPT);
	set_used_event(f, 0);
	push_one(f);
	assert_true(vq_should_notify(&f->q));   /* first one: always */
	/* The driver wants an interrupt when entry 3 is used (used idx 3 -> 4). */
	set_used_event(f, 3);
	push_one(f);                            /* used idx 2 */
	assert_false(vq_should_notify(&f->q));
	push_one(f);                            /* 3 */
	assert_false(vq_should_notify(&f->q));
	push_one(f);                            /* 4: entry 3 written */
	assert_true(vq_should_notify(&f->q));
	/* Batched: used_event inside the window (old, new]. */
	set_used_event(f, 5);
	push_one(f);
	push_one(f);
	push_one(f);                            /* 4 -> 7 covers entry 5 */
	assert_true(vq_should_notify(&f->q));
	/* Already passed: no interrupt until the counter comes round. */
	push_one(f);
	assert_false(vq_should_notify(&f->q));
}

static void test_notify_event_idx_wraps(void **state)
{
	struct fx *f = *state;
	f->q.event_idx = true;
	f->q.last_avail_idx = 0xfffe;
	f->q.used_idx = 0xfffe;
	f->q.signalled_used = 0xfffe;
	f->q.signalled_used_valid = true;
	set_avail_idx(f, 0xfffe);
	set_used_event(f, 0xffff);
	push_one(f);                            /* 0xffff */
	assert_false(vq_should_notify(&f->q));
	push_one(f);                            /* 0: entry 0xffff written */
	assert_true(vq_should_notify(&f->q));
	set_used_event(f, 0);
	push_one(f);                            /* 1 */
	assert_true(vq_should_notify(&f->q));
}

static void test_enable_notify_flags(void **state)
{
	struct fx *f = *state;
	guest_ram_clear_dirty(&f->ram);
	assert_false(vq_enable_notify(&f->q, false));
	assert_int_equal(r16(f, USED_GPA), VRING_USED_F_NO_NOTIFY);
	assert_true(guest_ram_page_dirty(&f->ram, USED_GPA));
	/* The race: a buffer arrives while notifications are off. */
	desc(f, 0, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	assert_true(vq_enable_notify(&f->q, true));
	assert_int_equal(r16(f, USED_GPA), 0);
	assert_int_equal(pop(f), 1);
	assert_false(vq_enable_notify(&f->q, true));
}

static void test_enable_notify_event_idx(void **state)
{
	struct fx *f = *state;
	f->q.event_idx = true;
	w16(f, USED_GPA + 4 + 8 * QSZ, 0x1234);
	guest_ram_clear_dirty(&f->ram);
	/* Disabling moves nothing and leaves the flags 0 (2.7.10). */
	assert_false(vq_enable_notify(&f->q, false));
	assert_int_equal(avail_event(f), 0x1234);
	assert_int_equal(r16(f, USED_GPA), 0);
	assert_false(vq_enable_notify(&f->q, true));
	assert_int_equal(avail_event(f), 0);
	assert_true(guest_ram_page_dirty(&f->ram, USED_GPA));
	/* Each pop asks for a notification for the next new entry. */
	for (unsigned i = 0; i < 3; i++) {
		desc(f, i, BUF_GPA, 8, 0, 0);
		offer(f, (uint16_t)i);
	}
	assert_int_equal(pop(f), 1);
	assert_int_equal(avail_event(f), 1);
	assert_int_equal(pop(f), 1);
	assert_int_equal(avail_event(f), 2);
	/* Buffers available at enable time: the caller must look again. */
	w16(f, USED_GPA + 4 + 8 * QSZ, 0);
	assert_true(vq_enable_notify(&f->q, true));
	assert_int_equal(avail_event(f), 2);
	assert_int_equal(pop(f), 1);
	assert_false(vq_enable_notify(&f->q, true));
	assert_int_equal(avail_event(f), 3);
}

/* ---- validate, save, restore ------------------------------------------------ */

static void expect_invalid(struct fx *f, const char *needle)
{
	struct error err = { 0 };
	assert_true(vq_validate(&f->q, &err) < 0);
	if (!strstr(err.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_validate(void **state)
{
	struct fx *f = *state;
	struct virtq good = f->q;
	f->q.desc_addr = DESC_GPA + 8;
	expect_invalid(f, "descriptor table at 0x80001008 is not 16-byte aligned");
	f->q = good;
	f->q.avail_addr = AVAIL_GPA + 1;
	expect_invalid(f, "available ring at 0x80002001 is not 2-byte aligned");
	f->q = good;
	f->q.used_addr = USED_GPA + 2;
	expect_invalid(f, "used ring at 0x80003002 is not 4-byte aligned");
	f->q = good;
	/* The used ring of 16 entries is 6 + 128 bytes: one too many here. */
	f->q.used_addr = RAM_BASE + RAM_SIZE - 132;
	expect_invalid(f, "used ring [0x800fff7c, +0x86) is not inside guest RAM");
	f->q.used_addr = RAM_BASE + RAM_SIZE - 136;
	assert_int_equal(vq_validate(&f->q, NULL), 0);
	f->q = good;
	f->q.desc_addr = RAM_BASE - 0x100;
	expect_invalid(f, "descriptor table");
	f->q = good;
	f->q.avail_addr = 0xfffffffffffffff0ull;
	expect_invalid(f, "available ring");
	f->q = good;
	f->q.num = 24;
	expect_invalid(f, "queue size 24");
	f->q.num = 2048;
	expect_invalid(f, "queue size 2048");
	f->q.num = 0;
	expect_invalid(f, "queue size 0");
	/* A queue that is not ready is never looked at. */
	f->q.ready = false;
	assert_int_equal(vq_validate(&f->q, NULL), 0);
}

static void save(const struct virtq *q, struct state_writer *w)
{
	state_writer_init(w);
	size_t t = state_begin(w, 7);
	vq_save(q, w);
	state_end(w, t);
	assert_int_equal(state_writer_status(w, NULL), 0);
}

static int restore(struct virtq *q, const struct state_writer *w, struct error *err)
{
	struct state_reader top, sub;
	int rc = state_reader_init(&top, w->buf, w->len, "test queue", NULL, 0, err);
	if (!rc)
		rc = state_get_record(&top, 7, &sub, NULL, 0, err);
	if (!rc)
		rc = vq_restore(q, &sub, err);
	return rc;
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	f->q.event_idx = true;
	f->q.indirect = true;
	f->q.last_avail_idx = 0x1234;
	f->q.used_idx = 0x1230;
	f->q.signalled_used = 0x122f;
	f->q.signalled_used_valid = true;
	struct state_writer w1, w2;
	save(&f->q, &w1);

	struct virtq q2 = { .ram = &f->ram };
	struct error err = { 0 };
	if (restore(&q2, &w1, &err))
		fail_msg("restore: %s", err.msg);
	assert_memory_equal(&q2, &f->q, sizeof(q2));
	save(&q2, &w2);
	assert_int_equal(w1.len, w2.len);
	assert_memory_equal(w1.buf, w2.buf, w1.len);
	state_writer_free(&w1);
	state_writer_free(&w2);

	/* A queue that is not ready restores with any addresses. */
	struct virtq idle = { .ram = &f->ram, .num = 0, .desc_addr = 3 };
	save(&idle, &w1);
	assert_int_equal(restore(&q2, &w1, &err), 0);
	assert_int_equal(q2.desc_addr, 3);
	assert_false(q2.ready);
	state_writer_free(&w1);
}

static void expect_restore_refused(struct fx *f, const struct virtq *src, const char *needle)
{
	struct state_writer w;
	save(src, &w);
	struct virtq target = f->q;
	struct error err = { 0 };
	assert_true(restore(&f->q, &w, &err) < 0);
	if (!strstr(err.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
	assert_memory_equal(&target, &f->q, sizeof(target));
	state_writer_free(&w);
}

static void test_restore_refuses(void **state)
{
	struct fx *f = *state;
	struct virtq bad = f->q;
	bad.num = 12;
	expect_restore_refused(f, &bad, "queue size 12");
	bad.num = 2048;
	expect_restore_refused(f, &bad, "queue size 2048");
	bad = f->q;
	bad.used_addr = RAM_BASE + RAM_SIZE - 4;
	expect_restore_refused(f, &bad, "used ring");
	bad = f->q;
	bad.num = 0;
	expect_restore_refused(f, &bad, "queue size 0");

	/* A required field this version does not know; a missing field. */
	struct state_writer w;
	state_writer_init(&w);
	size_t t = state_begin(&w, 7);
	vq_save(&f->q, &w);
	state_put_u64_required(&w, 99, 1);
	state_end(&w, t);
	struct virtq target = f->q;
	struct error err = { 0 };
	assert_true(restore(&f->q, &w, &err) < 0);
	assert_non_null(strstr(err.msg, "field 99 is required"));
	assert_memory_equal(&target, &f->q, sizeof(target));
	state_writer_free(&w);

	state_writer_init(&w);
	t = state_begin(&w, 7);
	state_put_u32(&w, 0, 1);
	state_put_u16(&w, 1, QSZ);
	state_end(&w, t);
	assert_true(restore(&f->q, &w, &err) < 0);
	assert_non_null(strstr(err.msg, "field 2 (bool) is missing"));
	assert_memory_equal(&target, &f->q, sizeof(target));
	state_writer_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_and_not_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_chain_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_then_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longest_indirect_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_many_and_unpop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_ring_and_push, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_self_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_long_cycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_next_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_head_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_avail_idx_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_zero_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_indirect_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_indirect_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_nested_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_indirect_with_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_readable_after_writable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_too_many_descriptors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_rings_misplaced, setup, teardown),
		cmocka_unit_test(test_bad_total_overflow),
		cmocka_unit_test_setup_teardown(test_notify_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_event_idx_wraps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_notify_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_notify_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
