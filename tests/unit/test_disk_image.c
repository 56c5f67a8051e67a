/* test_disk_image.c: the raw disk image backend on real files in a
 * temporary directory: what open refuses and how it says so, the advisory
 * lock between two opens, reads and writes (also vectored, also more
 * buffers than one preadv takes), flush, and that discard and
 * write-zeroes leave zeroes behind while keeping a sparse file sparse. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/disk_image.h"

#define MiB (1024u * 1024u)

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-disk-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/disk.img", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[160];
	/* Whatever a test left behind. */
	const char *names[] = { "disk.img", "odd.img", "empty.img", "fifo", "sub" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
		if (unlink(p) < 0)
			rmdir(p);
	}
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

/* A sparse file of `size` bytes. */
static void make_file(const char *path, off_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

static blkcnt_t blocks_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_blocks;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

/* ---- open ------------------------------------------------------------------ */

static void test_open_missing(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };

	assert_int_equal(disk_image_open(&d, f->path, false, &err), -ENOENT);
	assert_non_null(strstr(err.msg, f->path));
	assert_non_null(strstr(err.msg, strerror(ENOENT)));
	assert_int_equal(d.fd, -1);
	disk_image_close(&d);   /* harmless on a closed image */
}

static void test_open_directory(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	char sub[160];

	snprintf(sub, sizeof(sub), "%s/sub", f->dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	/* Read-only: open() succeeds on a directory, the type check refuses. */
	assert_true(disk_image_open(&d, sub, true, &err) < 0);
	assert_non_null(strstr(err.msg, sub));
	assert_non_null(strstr(err.msg, "directory"));
	/* Read-write: open() itself refuses (EISDIR). */
	memset(&err, 0, sizeof(err));
	assert_true(disk_image_open(&d, sub, false, &err) < 0);
	assert_non_null(strstr(err.msg, sub));
}

static void test_open_fifo_and_chardev(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	char fifo[160];

	/* Must fail at once, not block in open() waiting for a writer. */
	snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(disk_image_open(&d, fifo, true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "FIFO"));

	assert_int_equal(disk_image_open(&d, "/dev/null", true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "character device"));
}

static void test_open_bad_sizes(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	char odd[160], empty[160];

	snprintf(odd, sizeof(odd), "%s/odd.img", f->dir);
	make_file(odd, 1000);
	assert_int_equal(disk_image_open(&d, odd, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, odd));
	assert_non_null(strstr(err.msg, "1000"));
	assert_non_null(strstr(err.msg, "512"));

	snprintf(empty, sizeof(empty), "%s/empty.img", f->dir);
	make_file(empty, 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(disk_image_open(&d, empty, true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, empty));
	assert_non_null(strstr(err.msg, "empty"));
	assert_non_null(strstr(err.msg, "512"));

	/* A failed open can be retried on the same struct. */
	make_file(empty, 512);
	assert_int_equal(disk_image_open(&d, empty, false, &err), 0);
	assert_int_equal(d.size, 512);
	disk_image_close(&d);

	assert_int_equal(disk_image_open(&d, "", false, &err), -EINVAL);
}

static void test_open_ok(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };

	make_file(f->path, 8 * MiB);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);
	assert_true(d.fd >= 0);
	assert_int_equal(d.size, 8 * MiB);
	assert_false(d.read_only);
	assert_false(d.block_device);
	assert_string_equal(d.path, f->path);
	/* Not inherited by a guest tool or helper tern might exec. */
	assert_true(fcntl(d.fd, F_GETFD) & FD_CLOEXEC);
	assert_false(fcntl(d.fd, F_GETFL) & O_NONBLOCK);
	disk_image_close(&d);
	assert_int_equal(d.fd, -1);
}

/* ---- locking ---------------------------------------------------------------- */

static void test_lock_conflicts(void **state)
{
	struct fixture *f = *state;
	struct disk_image a, b;
	struct error err = { 0 };

	make_file(f->path, MiB);
	assert_int_equal(disk_image_open(&a, f->path, false, &err), 0);

	/* flock locks belong to the open file description, so a second
	 * open in this very process conflicts like another VM would. */
	assert_int_equal(disk_image_open(&b, f->path, false, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "already in use by another process"));
	assert_non_null(strstr(err.msg, f->path));
	assert_int_equal(b.fd, -1);
	memset(&err, 0, sizeof(err));
	assert_int_equal(disk_image_open(&b, f->path, true, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "already in use by another process"));

	/* Closing releases the lock. */
	disk_image_close(&a);
	assert_int_equal(disk_image_open(&b, f->path, false, &err), 0);
	disk_image_close(&b);

	/* Readers share; a writer is refused while any reader holds it. */
	assert_int_equal(disk_image_open(&a, f->path, true, &err), 0);
	assert_int_equal(disk_image_open(&b, f->path, true, &err), 0);
	struct disk_image c;
	assert_int_equal(disk_image_open(&c, f->path, false, &err), -EBUSY);
	disk_image_close(&a);
	assert_int_equal(disk_image_open(&c, f->path, false, &err), -EBUSY);
	disk_image_close(&b);
	assert_int_equal(disk_image_open(&c, f->path, false, &err), 0);
	disk_image_close(&c);
}

/* ---- I/O ---------------------------------------------------------------------- */

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	uint8_t buf[1024];

	make_file(f->path, MiB);
	int fd = open(f->path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	fill(buf, sizeof(buf), 3);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
	close(fd);

	assert_int_equal(disk_image_open(&d, f->path, true, &err), 0);
	assert_true(d.read_only);
	uint8_t got[1024];
	assert_int_equal(disk_image_pread(&d, got, sizeof(got), 4096, &err), 0);
	assert_memory_equal(got, buf, sizeof(buf));

	assert_int_equal(disk_image_pwrite(&d, buf, 512, 0, &err), -EBADF);
	assert_non_null(strstr(err.msg, "read-only"));
	assert_int_equal(disk_image_discard(&d, 0, 512, &err), -EBADF);
	assert_int_equal(disk_image_write_zeroes(&d, 0, 512, true, &err), -EBADF);
	/* Nothing to flush, and no error either. */
	assert_int_equal(disk_image_flush(&d, &err), 0);
	disk_image_close(&d);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	static uint8_t out[64 * 1024], in[64 * 1024];

	make_file(f->path, 4 * MiB);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);

	fill(out, sizeof(out), 11);
	assert_int_equal(disk_image_pwrite(&d, out, sizeof(out), MiB + 512, &err), 0);
	assert_int_equal(disk_image_pread(&d, in, sizeof(in), MiB + 512, &err), 0);
	assert_memory_equal(in, out, sizeof(out));

	/* Vectored, with uneven pieces. */
	struct iovec iov[3] = {
		{ out, 100 }, { out + 100, 0 }, { out + 100, 1948 },
	};
	fill(out, 2048, 99);
	assert_int_equal(disk_image_pwritev(&d, iov, 3, 0, &err), 0);
	memset(in, 0, 2048);
	struct iovec riov[2] = { { in, 1000 }, { in + 1000, 1048 } };
	assert_int_equal(disk_image_preadv(&d, riov, 2, 0, &err), 0);
	assert_memory_equal(in, out, 2048);

	/* What the file holds, seen without the backend. */
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, in, 2048, 0), 2048);
	assert_memory_equal(in, out, 2048);
	close(fd);

	/* The last byte is reachable, one past it is not. */
	assert_int_equal(disk_image_pwrite(&d, out, 512, 4 * MiB - 512, &err), 0);
	assert_int_equal(disk_image_pread(&d, in, 513, 4 * MiB - 512, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "beyond the end"));
	assert_int_equal(disk_image_pwrite(&d, out, 1, 4 * MiB, &err), -EINVAL);
	assert_int_equal(disk_image_pread(&d, in, 1, UINT64_MAX, &err), -EINVAL);
	/* Zero bytes at the very end: nothing to do, not an error. */
	assert_int_equal(disk_image_pread(&d, in, 0, 4 * MiB, &err), 0);

	assert_int_equal(disk_image_flush(&d, &err), 0);
	disk_image_close(&d);
	assert_int_equal(disk_image_flush(&d, &err), -EBADF);
}

/* More buffers than one preadv accepts: the backend splits the call. */
static void test_many_iovecs(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	enum { N = IOV_MAX * 2 + 5, PIECE = 512 };
	uint8_t *out = malloc((size_t)N * PIECE), *in = calloc(N, PIECE);
	struct iovec *iov = calloc(N, sizeof(*iov));
	assert_non_null(out);
	assert_non_null(in);
	assert_non_null(iov);

	make_file(f->path, 4 * MiB);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);
	fill(out, (size_t)N * PIECE, 5);
	for (unsigned i = 0; i < N; i++)
		iov[i] = (struct iovec){ out + (size_t)i * PIECE, PIECE };
	assert_int_equal(disk_image_pwritev(&d, iov, N, 8192, &err), 0);
	for (unsigned i = 0; i < N; i++)
		iov[i] = (struct iovec){ in + (size_t)i * PIECE, PIECE };
	assert_int_equal(disk_image_preadv(&d, iov, N, 8192, &err), 0);
	assert_memory_equal(in, out, (size_t)N * PIECE);
	disk_image_close(&d);
	free(iov);
	free(in);
	free(out);
}

/* The file shrinks behind the backend's back: an error, not a hang. */
static void test_truncated_under_us(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	uint8_t buf[4096];

	make_file(f->path, MiB);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);
	assert_int_equal(truncate(f->path, 4096), 0);
	assert_int_equal(disk_image_pread(&d, buf, sizeof(buf), 8192, &err), -EIO);
	assert_non_null(strstr(err.msg, f->path));
	disk_image_close(&d);
}

/* ---- discard and write zeroes ---------------------------------------------- */

static void test_discard_keeps_sparse(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	static uint8_t buf[MiB];

	make_file(f->path, 16 * MiB);
	blkcnt_t empty = blocks_of(f->path);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);
	fill(buf, sizeof(buf), 1);
	assert_int_equal(disk_image_pwrite(&d, buf, sizeof(buf), 4 * MiB, &err), 0);
	assert_int_equal(disk_image_flush(&d, &err), 0);
	blkcnt_t written = blocks_of(f->path);
	assert_true(written >= empty + (blkcnt_t)(MiB / 512));

	assert_int_equal(disk_image_discard(&d, 4 * MiB, MiB, &err), 0);
	assert_true(blocks_of(f->path) <= empty);
	assert_int_equal(disk_image_pread(&d, buf, sizeof(buf), 4 * MiB, &err), 0);
	assert_true(all_zero(buf, sizeof(buf)));
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, 16 * MiB);

	/* A discard of nothing, and one past the end. */
	assert_int_equal(disk_image_discard(&d, 16 * MiB, 0, &err), 0);
	assert_int_equal(disk_image_discard(&d, 16 * MiB - 512, 1024, &err), -EINVAL);
	disk_image_close(&d);
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	static uint8_t buf[MiB];

	make_file(f->path, 16 * MiB);
	blkcnt_t empty = blocks_of(f->path);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);
	fill(buf, sizeof(buf), 2);
	assert_int_equal(disk_image_pwrite(&d, buf, sizeof(buf), 0, &err), 0);
	assert_int_equal(disk_image_pwrite(&d, buf, sizeof(buf), 2 * MiB, &err), 0);

	/* Without unmap: zeroes in [512, end), the rest untouched; the
	 * edges are not 4 KiB aligned. */
	const size_t start = 512, end = 512 + 64 * 1024 + 512;
	assert_int_equal(disk_image_write_zeroes(&d, start, end - start, false, &err), 0);
	assert_int_equal(disk_image_pread(&d, buf, sizeof(buf), 0, &err), 0);
	static uint8_t ref[MiB];
	fill(ref, sizeof(ref), 2);
	assert_memory_equal(buf, ref, start);
	assert_true(all_zero(buf + start, end - start));
	assert_memory_equal(buf + end, ref + end, sizeof(buf) - end);

	/* With unmap: the blocks go away. */
	assert_int_equal(disk_image_flush(&d, &err), 0);
	blkcnt_t before = blocks_of(f->path);
	assert_int_equal(disk_image_write_zeroes(&d, 2 * MiB, MiB, true, &err), 0);
	assert_true(blocks_of(f->path) <= before - (blkcnt_t)(MiB / 512));
	assert_true(blocks_of(f->path) >= empty);
	assert_int_equal(disk_image_pread(&d, buf, sizeof(buf), 2 * MiB, &err), 0);
	assert_true(all_zero(buf, sizeof(buf)));

	assert_int_equal(disk_image_write_zeroes(&d, 16 * MiB, 512, false, &err), -EINVAL);
	disk_image_close(&d);
}

/* Where fallocate cannot help, zeroes are written instead. */
static void test_zero_fallback(void **state)
{
	struct fixture *f = *state;
	struct disk_image d;
	struct error err = { 0 };
	static uint8_t buf[300 * 1024];

	make_file(f->path, 4 * MiB);
	assert_int_equal(disk_image_open(&d, f->path, false, &err), 0);
	fill(buf, sizeof(buf), 4);
	assert_int_equal(disk_image_pwrite(&d, buf, sizeof(buf), 0, &err), 0);
	assert_int_equal(disk_image_pwrite(&d, buf, sizeof(buf), MiB, &err), 0);
	d.no_punch_hole = true;
	d.no_zero_range = true;

	/* More than one chunk of the zero buffer, not a multiple of it. */
	assert_int_equal(disk_image_discard(&d, 512, sizeof(buf) - 1024, &err), 0);
	assert_int_equal(disk_image_pread(&d, buf, sizeof(buf), 0, &err), 0);
	assert_true(all_zero(buf + 512, sizeof(buf) - 1024));
	assert_false(all_zero(buf, 512));
	assert_false(all_zero(buf + sizeof(buf) - 512, 512));

	assert_int_equal(disk_image_write_zeroes(&d, MiB, sizeof(buf), true, &err), 0);
	assert_int_equal(disk_image_pread(&d, buf, sizeof(buf), MiB, &err), 0);
	assert_true(all_zero(buf, sizeof(buf)));
	disk_image_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_fifo_and_chardev, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_bad_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_iovecs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_under_us, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_keeps_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_fallback, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
