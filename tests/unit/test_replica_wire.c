/* test_replica_wire.c: a replication epoch's compressed chunks
 * (src/migration/replica_wire.h).
 *
 * Round trips go through memfds as the replication does; the decoder's
 * refusals are reached with chunks built here by hand from the format in
 * replica_wire.h, each with a message saying what is wrong. ASan and UBSan
 * (make unit) catch any access outside what was given. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/replica_wire.h"
#include "util/le.h"

#define CHUNK REPLICA_CHUNK

/* The wire as a byte array read from the front. */
struct wire {
	const uint8_t *p;
	size_t len, off;
};

static int read_wire(void *ctx, void *buf, size_t len, struct error *err)
{
	struct wire *w = ctx;
	if (len > w->len - w->off)
		return error_set(err, ECONNRESET, "the source closed the connection");
	memcpy(buf, w->p + w->off, len);
	w->off += len;
	return 0;
}

static int memfd_with(const uint8_t *p, size_t len)
{
	int fd = memfd_create("test", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	return fd;
}

static uint8_t *read_back(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	assert_true(end >= 0);
	uint8_t *p = malloc((size_t)end + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)end, 0), end);
	*len = (size_t)end;
	return p;
}

/* Decodes `wire` (len bytes) into a fresh memfd: rc, and the output. */
static int decode(const uint8_t *wire, size_t len, uint64_t max_raw, uint8_t **out,
		  size_t *out_len, struct error *err)
{
	struct zdctx *zd = zdctx_create(err);
	assert_non_null(zd);
	int fd = memfd_create("out", MFD_CLOEXEC);
	struct wire w = { wire, len, 0 };
	int rc = replica_chunks_decode(read_wire, &w, len, fd, max_raw, zd, err);
	if (out)
		*out = read_back(fd, out_len);
	close(fd);
	zdctx_destroy(zd);
	return rc;
}

/* 2.5 chunks: zeros, then pseudo-random bytes, then text-like bytes. */
static uint8_t *sample(size_t *len)
{
	*len = CHUNK * 2 + CHUNK / 2;
	uint8_t *p = calloc(1, *len);
	assert_non_null(p);
	uint64_t x = 88172645463325252ull;
	for (size_t i = CHUNK; i < 2 * CHUNK; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	for (size_t i = 2 * CHUNK; i < *len; i++)
		p[i] = (uint8_t)("replication epoch "[i % 18]);
	return p;
}

static void test_round_trip(void **state)
{
	(void)state;
	size_t len;
	uint8_t *data = sample(&len);
	int in = memfd_with(data, len);
	int wire_fd = memfd_create("wire", MFD_CLOEXEC);
	struct error err = { 0 };
	struct zctx *z = zctx_create(0, &err);
	assert_non_null(z);
	uint64_t wire_len = 0;
	assert_int_equal(replica_chunks_encode(in, len, wire_fd, z, &wire_len, &err), 0);
	size_t got;
	uint8_t *wire = read_back(wire_fd, &got);
	assert_int_equal(got, wire_len);
	/* Three chunks: zeros and text compressed, random bytes raw. */
	assert_int_equal(get_le32(wire), CHUNK);
	uint32_t f0 = get_le32(wire + 4);
	assert_true(f0 > 0 && f0 < CHUNK / 100);
	const uint8_t *c1 = wire + REPLICA_CHUNK_HEADER + f0;
	assert_int_equal(get_le32(c1), CHUNK);
	assert_int_equal(get_le32(c1 + 4), 0);
	const uint8_t *c2 = c1 + REPLICA_CHUNK_HEADER + CHUNK;
	assert_int_equal(get_le32(c2), CHUNK / 2);
	uint32_t f2 = get_le32(c2 + 4);
	assert_true(f2 > 0 && f2 < CHUNK / 10);
	assert_int_equal(wire_len, 3 * REPLICA_CHUNK_HEADER + f0 + CHUNK + f2);

	uint8_t *out;
	size_t out_len;
	assert_int_equal(decode(wire, wire_len, len, &out, &out_len, &err), 0);
	assert_int_equal(out_len, len);
	assert_memory_equal(out, data, len);
	free(out);
	/* Exactly as many raw bytes as the limit: fine; one fewer: refused. */
	err = (struct error){ 0 };
	assert_int_equal(decode(wire, wire_len, len - 1, NULL, NULL, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "more than"));

	/* An empty epoch is no chunks at all. */
	assert_int_equal(replica_chunks_encode(in, 0, wire_fd, z, &wire_len, &err), 0);
	assert_int_equal(wire_len, 0);
	assert_int_equal(decode(wire, 0, len, &out, &out_len, &err), 0);
	assert_int_equal(out_len, 0);
	free(out);

	free(wire);
	free(data);
	zctx_destroy(z);
	close(in);
	close(wire_fd);
}

/* One chunk: header (raw_len, frame_len) then body bytes. */
static size_t chunk(uint8_t *out, uint32_t raw_len, uint32_t frame_len, const void *body,
		    size_t body_len)
{
	put_le32(out, raw_len);
	put_le32(out + 4, frame_len);
	memcpy(out + REPLICA_CHUNK_HEADER, body, body_len);
	return REPLICA_CHUNK_HEADER + body_len;
}

static void refused(const uint8_t *wire, size_t len, const char *needle)
{
	struct error err = { 0 };
	int rc = decode(wire, len, 1ull << 30, NULL, NULL, &err);
	if (rc != -EPROTO || !err.msg[0] || !strstr(err.msg, needle))
		fail_msg("expected a refusal with \"%s\", got %d \"%s\"", needle, rc, err.msg);
}

static void test_malformed_chunks(void **state)
{
	(void)state;
	static uint8_t buf[2 * REPLICA_CHUNK_HEADER + 8192];
	uint8_t zeros[4096] = { 0 };
	struct error err = { 0 };
	struct zctx *z = zctx_create(0, &err);
	uint8_t frame[256];
	ssize_t flen = zpages_compress(z, zeros, sizeof(zeros), frame, sizeof(frame));
	assert_true(flen > 0);

	refused(buf, 5, "inside a chunk header");
	size_t n = chunk(buf, 0, 0, "", 0);
	refused(buf, n, "out of range");
	n = chunk(buf, CHUNK + 1, 0, "", 0);
	refused(buf, n, "out of range");
	/* A frame as long as its raw bytes is not a compressed chunk. */
	n = chunk(buf, 16, 16, zeros, 16);
	refused(buf, n, "out of range");
	/* The body runs past the epoch's end. */
	n = chunk(buf, 4096, 0, zeros, 100);
	refused(buf, n, "past the epoch's end");
	/* The wire ends early although the lengths add up. */
	n = chunk(buf, 100, 0, zeros, 100);
	{
		struct zdctx *zd = zdctx_create(&err);
		int fd = memfd_create("out", MFD_CLOEXEC);
		struct wire w = { buf, n - 10, 0 };
		err = (struct error){ 0 };
		assert_int_equal(replica_chunks_decode(read_wire, &w, n, fd, 1 << 20, zd, &err),
				 -ECONNRESET);
		close(fd);
		zdctx_destroy(zd);
	}
	/* A frame that decompresses to another size than its raw_len. */
	n = chunk(buf, 4000, (uint32_t)flen, frame, (size_t)flen);
	refused(buf, n, "");
	/* A corrupt frame. */
	n = chunk(buf, 4096, (uint32_t)flen, frame, (size_t)flen);
	buf[REPLICA_CHUNK_HEADER + (size_t)flen / 2] ^= 0x5a;
	buf[REPLICA_CHUNK_HEADER + 1] ^= 0xff;
	refused(buf, n, "");
	/* A good chunk, then a second one cut short in its header. */
	n = chunk(buf, 4096, (uint32_t)flen, frame, (size_t)flen);
	memset(buf + n, 0, 3);
	refused(buf, n + 3, "inside a chunk header");
	zctx_destroy(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_malformed_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
