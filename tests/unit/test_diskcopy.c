/* test_diskcopy.c: the pieces of live storage migration that need no VM:
 * the dirty block map (block size, marking, collecting, bounds), the disk
 * image marking what it writes while tracking, SEEK_DATA extents, and the
 * DISK section's records applied to a real image file, including every
 * kind of malformed section, which must change nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/dirty_blocks.h"
#include "backends/disk_image.h"
#include "migration/diskcopy.h"
#include "util/le.h"

#define MiB (1024ull * 1024)

static void test_block_size(void **state)
{
	struct dirty_blocks db;
	assert_int_equal(dirty_blocks_init(&db, 2048 * MiB), 0);
	assert_int_equal(dirty_blocks_block_size(&db), 4096);
	assert_int_equal(db.nblocks, 2048 * MiB / 4096);
	dirty_blocks_free(&db);
	/* 1 TiB: a larger block keeps the map at 2^24 bits. */
	assert_int_equal(dirty_blocks_init(&db, 1024 * 1024 * MiB), 0);
	assert_true(db.nblocks <= DIRTY_BLOCKS_MAX_BITS);
	assert_int_equal(dirty_blocks_block_size(&db), 65536);
	dirty_blocks_free(&db);
	/* A size that is not a multiple of the block: the tail is a block. */
	assert_int_equal(dirty_blocks_init(&db, 4096 * 3 + 512), 0);
	assert_int_equal(db.nblocks, 4);
	dirty_blocks_free(&db);
}

static void test_mark_and_collect(void **state)
{
	struct dirty_blocks db;
	assert_int_equal(dirty_blocks_init(&db, 64 * MiB), 0);
	uint64_t *into = calloc(db.nwords, sizeof(uint64_t));
	assert_non_null(into);

	dirty_blocks_mark(&db, 0, 4096);                /* not tracking: nothing */
	assert_int_equal(dirty_blocks_collect(&db, into), 0);

	dirty_blocks_track(&db, true);
	dirty_blocks_mark(&db, 4095, 2);                /* straddles blocks 0 and 1 */
	dirty_blocks_mark(&db, 100 * 4096, 512);        /* block 100 */
	dirty_blocks_mark(&db, 100 * 4096 + 512, 512);  /* the same block again */
	dirty_blocks_mark(&db, 64 * MiB, 4096);         /* past the end: ignored */
	dirty_blocks_mark(&db, 64 * MiB - 512, UINT64_MAX); /* clamped to the last block */
	assert_int_equal(dirty_blocks_collect(&db, into), 4);
	assert_int_equal(into[0], 0x3);
	assert_true((into[100 / 64] >> (100 % 64)) & 1);
	assert_true((into[(db.nblocks - 1) / 64] >> ((db.nblocks - 1) % 64)) & 1);
	/* Collected: the map is empty; a block already in `into` is not new. */
	assert_int_equal(dirty_blocks_collect(&db, into), 0);
	dirty_blocks_mark(&db, 0, 1);
	assert_int_equal(dirty_blocks_collect(&db, into), 0);
	dirty_blocks_mark(&db, 4096 * 2, 1);
	assert_int_equal(dirty_blocks_collect(&db, into), 1);

	/* Starting again clears what was marked before. */
	dirty_blocks_mark(&db, 4096 * 7, 1);
	dirty_blocks_track(&db, true);
	memset(into, 0, db.nwords * sizeof(uint64_t));
	assert_int_equal(dirty_blocks_collect(&db, into), 0);
	free(into);
	dirty_blocks_free(&db);
}

struct image {
	char dir[64], path[128];
	struct disk_image d;
};

static struct image *make_image(uint64_t size)
{
	struct image *im = calloc(1, sizeof(*im));
	assert_non_null(im);
	snprintf(im->dir, sizeof(im->dir), "/tmp/tern-diskcopy-XXXXXX");
	assert_non_null(mkdtemp(im->dir));
	snprintf(im->path, sizeof(im->path), "%s/disk.img", im->dir);
	int fd = open(im->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	struct error err = { 0 };
	assert_int_equal(disk_image_open(&im->d, im->path, false, &err), 0);
	return im;
}

static void free_image(struct image *im)
{
	disk_image_close(&im->d);
	assert_int_equal(unlink(im->path), 0);
	assert_int_equal(rmdir(im->dir), 0);
	free(im);
}

static void test_image_marks_writes(void **state)
{
	struct image *im = make_image(16 * MiB);
	struct error err = { 0 };
	uint8_t buf[4096];
	memset(buf, 0xab, sizeof(buf));

	assert_int_equal(disk_image_pwrite(&im->d, buf, 512, 0, &err), 0); /* not tracked */
	assert_int_equal(disk_image_track_dirty(&im->d, true, &err), 0);
	assert_int_equal(disk_image_pwrite(&im->d, buf, 512, 3 * 4096, &err), 0);
	assert_int_equal(disk_image_discard(&im->d, 8 * 4096, 4096, &err), 0);
	assert_int_equal(disk_image_write_zeroes(&im->d, 9 * 4096, 8192, false, &err), 0);
	assert_int_equal(disk_image_pread(&im->d, buf, sizeof(buf), 12 * 4096, &err), 0);
	uint64_t *into = calloc(im->d.dirty.nwords, sizeof(uint64_t));
	assert_non_null(into);
	assert_int_equal(dirty_blocks_collect(&im->d.dirty, into), 4);
	assert_int_equal(into[0], (1ull << 3) | (1ull << 8) | (1ull << 9) | (1ull << 10));
	assert_int_equal(disk_image_track_dirty(&im->d, false, &err), 0);
	assert_int_equal(disk_image_pwrite(&im->d, buf, 512, 0, &err), 0);
	assert_int_equal(dirty_blocks_collect(&im->d.dirty, into), 0);
	free(into);
	free_image(im);
}

static void test_next_data(void **state)
{
	struct image *im = make_image(16 * MiB);
	struct error err = { 0 };
	uint8_t buf[65536];
	memset(buf, 1, sizeof(buf));
	assert_int_equal(disk_image_pwrite(&im->d, buf, sizeof(buf), 4 * MiB, &err), 0);
	uint64_t start, end;
	assert_int_equal(disk_image_next_data(&im->d, 0, &start, &end, &err), 0);
	/* The file system's granularity may widen the extent, never miss it. */
	assert_true(start <= 4 * MiB && end >= 4 * MiB + sizeof(buf));
	assert_true(end - start < 8 * MiB);
	assert_int_equal(disk_image_next_data(&im->d, end, &start, &end, &err), 0);
	assert_int_equal(start, 16 * MiB);
	assert_int_equal(end, 16 * MiB);
	free_image(im);
}

static size_t put_record(uint8_t *p, uint64_t off, uint32_t len, uint32_t flags,
			 uint8_t fill)
{
	put_le64(p, off);
	put_le32(p + 8, len);
	put_le32(p + 12, flags);
	if (flags & DISK_REC_ZERO)
		return DISK_REC_HEADER;
	memset(p + DISK_REC_HEADER, fill, len);
	return DISK_REC_HEADER + len;
}

static void test_section_apply(void **state)
{
	struct image *im = make_image(1 * MiB);
	struct error err = { 0 };
	uint8_t *sec = malloc(64 * 1024);
	uint8_t buf[8192];
	uint64_t written = 0;
	assert_non_null(sec);

	size_t n = put_record(sec, 0, 4096, 0, 0x11);
	n += put_record(sec + n, 8192, 1024, 0, 0x22);
	n += put_record(sec + n, 4096, 512, DISK_REC_ZERO, 0);
	assert_int_equal(disk_section_apply(&im->d, 0, sec, n, &written, &err), 0);
	assert_int_equal(written, 4096 + 1024 + 512);
	assert_int_equal(disk_image_pread(&im->d, buf, sizeof(buf), 4096, &err), 0);
	for (size_t i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0);
	for (size_t i = 4096; i < 4096 + 1024; i++)
		assert_int_equal(buf[i], 0x22);
	/* A zero record over data leaves zeroes. */
	n = put_record(sec, 0, 4096, DISK_REC_ZERO, 0);
	assert_int_equal(disk_section_apply(&im->d, 0, sec, n, &written, &err), 0);
	assert_int_equal(disk_image_pread(&im->d, buf, 4096, 0, &err), 0);
	for (size_t i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0);
	free(sec);
	free_image(im);
}

/* Each malformed section is refused with a message, after a good record
 * in front of the bad one: the good one must not have been written. */
static void test_section_malformed(void **state)
{
	struct image *im = make_image(1 * MiB);
	uint8_t *sec = malloc(64 * 1024);
	assert_non_null(sec);
	struct {
		uint64_t off;
		uint32_t len, flags;
		size_t cut;             /* bytes taken off the end of the section */
		const char *says;
	} bad[] = {
		{ 4096, 512, 0x2, 0, "unknown flags" },
		{ 4096, 0, 0, 0, "does not fit" },                 /* empty */
		{ 4096, 100, 0, 0, "does not fit" },               /* not whole sectors */
		{ 4097, 512, 0, 0, "does not fit" },               /* misaligned */
		{ 1 * MiB - 512, 1024, 0, 0, "does not fit" },     /* past the end */
		{ UINT64_MAX - 511, 512, DISK_REC_ZERO, 0, "does not fit" },
		{ 0, 2 * 1024 * 1024, DISK_REC_ZERO, 0, "does not fit" }, /* record too long */
		{ 4096, 1024, 0, 10, "announced" },                /* data cut short */
		{ 4096, 512, DISK_REC_ZERO, 4, "cut short" },      /* header cut short */
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct error err = { 0 };
		uint64_t written = 0;
		size_t n = put_record(sec, 0, 512, 0, 0x5a);
		n += put_record(sec + n, bad[k].off, bad[k].len > 4096 ? 512 : bad[k].len,
				bad[k].flags, 0x6b);
		/* The length field says what the case needs; the data as above. */
		put_le32(sec + DISK_REC_HEADER + 512 + 8, bad[k].len);
		n -= bad[k].cut;
		int rc = disk_section_apply(&im->d, 0, sec, n, &written, &err);
		assert_true(rc < 0);
		assert_non_null(strstr(err.msg, bad[k].says));
		assert_int_equal(written, 0);
		uint8_t first[512];
		assert_int_equal(disk_image_pread(&im->d, first, sizeof(first), 0, &err), 0);
		for (size_t i = 0; i < sizeof(first); i++)
			assert_int_equal(first[i], 0);
	}
	free(sec);
	free_image(im);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_size),
		cmocka_unit_test(test_mark_and_collect),
		cmocka_unit_test(test_image_marks_writes),
		cmocka_unit_test(test_next_data),
		cmocka_unit_test(test_section_apply),
		cmocka_unit_test(test_section_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
