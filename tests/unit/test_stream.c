/* test_stream.c: the VM state stream (docs/migration-format.md), framing
 * and contents, from the reading side.
 *
 * Framing tests build streams byte by byte with their own encoder (so the
 * reader is checked against the document, not against its own writer),
 * and feed them to mig_reader through a memfd. Content tests build real
 * VMs with vm_create (nothing loaded, never run), save one with
 * vmstate_save_all, then take the stream apart into sections, edit one
 * record field and put it back together with mig_writer, so that every
 * refusal is reached with valid checksums and a valid END; the target VM
 * is then checked to be untouched where the format promises it is.
 *
 * Every malformed input must fail with a message saying what is wrong;
 * ASan and UBSan (make unit) catch any read outside what was given. */
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
#include <xxhash.h>

#include "cpu/cpu.h"
#include "devices/virtio/virtio.h"
#include "machine/vm.h"
#include "migration/stream.h"
#include "migration/vmstate.h"
#include "state/state.h"

#define WHAT "test stream"
#define MIB (1ull << 20)
#define PAGE GUEST_PAGE_SIZE

/* Field ids of the section records, as docs/migration-format.md lists them. */
enum {
	CFG_VERSION = 0, CFG_RAM_BASE = 1, CFG_RAM_SIZE = 2, CFG_HARTS = 3, CFG_ISA = 4,
	CFG_TIMEBASE = 5, CFG_DEVICES = 6, CFG_DISKS = 7, CFG_DEVICE_BASE = 100,
	CFG_DISK_BASE = 200, CFG_DISK_SIZE = 1,
	CFG_DEV_ID = 1, CFG_DEV_TYPE = 2,
	MACH_VERSION = 0, MACH_GUEST_TIME = 1,
	DEV_VERSION = 0, DEV_ID = 1, DEV_STATE = 2,
	HART_VERSION_F = 0, HART_X = 1, HART_F = 2, HART_PC = 3, HART_PRIV = 4, HART_FCSR = 5,
	HART_MSTATUS = 10, HART_MHARTID = 23, HART_SATP = 35,
	HART_HSM = 50, HART_IN_WFI = 53,
	UART_IER = 1,
};

#define PAGE_ZERO 0x1ull
#define PAGE_DATA 0x2ull

static void expect_msg(const struct error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err->msg, needle);
}

/* ---- bytes ---------------------------------------------------------------- */

struct bytes {
	uint8_t *p;
	size_t len, cap;
};

static void b_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void b_put(struct bytes *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned width)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void b_le(struct bytes *b, uint64_t v, unsigned width)
{
	uint8_t t[8];
	put_le(t, v, width);
	b_put(b, t, width);
}

static void b_copy(struct bytes *dst, const void *data, size_t len)
{
	memset(dst, 0, sizeof(*dst));
	b_put(dst, data, len);
}

/* ---- the framing, encoded from the document ------------------------------ */

static void raw_header(struct bytes *b, const char *magic, uint32_t version, uint32_t flags)
{
	b_put(b, magic, 8);
	b_le(b, version, 4);
	b_le(b, flags, 4);
}

static void raw_section_header(struct bytes *b, uint32_t type, uint32_t instance,
			       uint32_t version, uint32_t flags, uint64_t len)
{
	b_le(b, type, 4);
	b_le(b, instance, 4);
	b_le(b, version, 4);
	b_le(b, flags, 4);
	b_le(b, len, 8);
}

/* A whole section: XXH3-64 of its 24 header bytes and the payload. */
static void raw_section(struct bytes *b, uint32_t type, uint32_t instance, uint32_t version,
			uint32_t flags, const void *payload, size_t len)
{
	size_t start = b->len;
	raw_section_header(b, type, instance, version, flags, len);
	b_put(b, payload, len);
	b_le(b, XXH3_64bits(b->p + start, b->len - start), 8);
}

/* The stream digest END carries: XXH3-64 of the 16 header bytes followed
 * by the checksum of every whole section in the `len` bytes at p. */
static uint64_t chain_digest(const uint8_t *p, size_t len)
{
	XXH3_state_t *st = XXH3_createState();
	assert_non_null(st);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, p, MIG_HEADER_SIZE);
	for (size_t pos = MIG_HEADER_SIZE; len - pos >= MIG_SECTION_HEADER_SIZE + 8;) {
		uint64_t slen = get_le(p + pos + 16, 8);
		assert_true(slen <= len - pos - MIG_SECTION_HEADER_SIZE - 8);
		pos += MIG_SECTION_HEADER_SIZE + slen;
		XXH3_64bits_update(st, p + pos, 8);
		pos += 8;
	}
	uint64_t d = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return d;
}

/* END: the section count and the digest of everything before it. */
static void raw_end_with(struct bytes *b, uint64_t count, uint64_t digest)
{
	uint8_t p[16];
	put_le(p, count, 8);
	put_le(p + 8, digest, 8);
	raw_section(b, MIG_SEC_END, 0, 1, 0, p, sizeof(p));
}

static void raw_end(struct bytes *b, uint64_t count)
{
	raw_end_with(b, count, chain_digest(b->p, b->len));
}

/* ---- feeding a reader ------------------------------------------------------ */

/* A memfd holding data, positioned at its start. */
static int mem_fd(const void *data, size_t len)
{
	int fd = memfd_create("tern-test-stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)data + done, len - done);
		assert_true(n > 0);
		done += (size_t)n;
	}
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static void read_fd(int fd, struct bytes *out)
{
	memset(out, 0, sizeof(*out));
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	uint8_t buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		b_put(out, buf, (size_t)n);
	assert_int_equal(n, 0);
}

/* Reads header and sections up to END (or the first error). Returns 0 at
 * END, else the error; *sections counts the sections read. */
static int read_stream(const void *data, size_t len, unsigned *sections, struct error *err)
{
	int fd = mem_fd(data, len);
	struct mig_reader r;
	assert_int_equal(mig_reader_init(&r, fd, WHAT, err), 0);
	unsigned n = 0;
	int rc = mig_read_header(&r, err);
	while (!rc) {
		struct mig_section s;
		rc = mig_read_section(&r, &s, err);
		if (rc == 1) {
			n++;
			rc = 0;
		} else {
			break;
		}
	}
	mig_reader_free(&r);
	close(fd);
	if (sections)
		*sections = n;
	return rc;
}

/* A small stream with sections of three kinds, one of them empty. */
static void small_stream(struct bytes *b)
{
	static const uint8_t config[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	memset(b, 0, sizeof(*b));
	raw_header(b, MIG_MAGIC, 1, 0);
	raw_section(b, MIG_SEC_CONFIG, 0, 1, 0, config, sizeof(config));
	raw_section(b, MIG_SEC_HART, 3, 1, 0, "hart!", 5);
	raw_section(b, MIG_SEC_DEVICE, 2, 1, 0, NULL, 0);
	raw_end(b, 3);
}

/* ---- framing tests ----------------------------------------------------------- */

/* What mig_writer produces is byte for byte what the document describes,
 * and mig_reader gives back every section as written: all types, empty
 * payloads, and payloads longer than the reader's buffer. */
static void test_frame_round_trip(void **state)
{
	static const uint32_t types[] = {
		MIG_SEC_CONFIG, MIG_SEC_RAM, MIG_SEC_MACHINE, MIG_SEC_HART, MIG_SEC_DEVICE,
	};
	const size_t big = 2 * MIB + 12345;
	/* Each type's sections start at a different offset into it. */
	uint8_t *payload = malloc(big + 5);
	assert_non_null(payload);
	for (size_t i = 0; i < big + 5; i++)
		payload[i] = (uint8_t)(i * 7 + (i >> 13));
	size_t lens[] = { 0, 1, 24, 4096, big };
	const unsigned nlens = sizeof(lens) / sizeof(lens[0]);

	int fd = memfd_create("tern-test-stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	struct mig_writer w;
	struct error err = { 0 };
	assert_int_equal(mig_writer_init(&w, fd, true, &err), 0);
	assert_int_equal(mig_write_header(&w), 0);
	struct bytes want = { 0 };
	raw_header(&want, MIG_MAGIC, MIG_FORMAT_VERSION, 0);
	unsigned count = 0;
	for (unsigned t = 0; t < 5; t++) {
		for (unsigned l = 0; l < nlens; l++) {
			uint32_t instance = t * 100 + l, version = 1 + l;
			const uint8_t *p = payload + t;
			assert_int_equal(mig_write_section(&w, types[t], instance, version, p,
							   lens[l]), 0);
			raw_section(&want, types[t], instance, version, 0, p, lens[l]);
			count++;
		}
	}
	assert_int_equal(mig_write_end(&w), 0);
	raw_end(&want, count);
	assert_int_equal(w.bytes, want.len);
	mig_writer_free(&w);

	struct bytes got;
	read_fd(fd, &got);
	close(fd);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.p, want.p, want.len);

	fd = mem_fd(got.p, got.len);
	struct mig_reader r;
	assert_int_equal(mig_reader_init(&r, fd, WHAT, &err), 0);
	assert_int_equal(mig_read_header(&r, &err), 0);
	for (unsigned t = 0; t < 5; t++) {
		for (unsigned l = 0; l < nlens; l++) {
			struct mig_section s;
			int rc = mig_read_section(&r, &s, &err);
			if (rc != 1)
				fail_msg("section %u/%u: %d %s", t, l, rc, err.msg);
			assert_int_equal(s.type, types[t]);
			assert_int_equal(s.instance, t * 100 + l);
			assert_int_equal(s.version, 1 + l);
			assert_int_equal(s.flags, 0);
			assert_int_equal(s.length, lens[l]);
			if (lens[l])
				assert_memory_equal(s.payload, payload + t, lens[l]);
		}
	}
	struct mig_section s;
	assert_int_equal(mig_read_section(&r, &s, &err), 0);
	assert_int_equal(r.bytes, got.len);
	mig_reader_free(&r);
	close(fd);
	b_free(&got);
	b_free(&want);
	free(payload);
}

/* A stream cut anywhere is refused as truncated, whatever it was inside. */
static void test_frame_truncated_everywhere(void **state)
{
	struct bytes b;
	small_stream(&b);
	struct error err = { 0 };
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), 0);
	for (size_t len = 0; len < b.len; len++) {
		memset(&err, 0, sizeof(err));
		int rc = read_stream(b.p, len, NULL, &err);
		if (rc >= 0)
			fail_msg("a stream cut to %zu of %zu bytes was accepted", len, b.len);
		assert_int_equal(rc, -EPROTO);
		expect_msg(&err, WHAT " is truncated");
	}
	b_free(&b);
}

/* No single flipped bit anywhere goes unnoticed. */
static void test_frame_bit_flips(void **state)
{
	struct bytes b;
	small_stream(&b);
	uint8_t *copy = malloc(b.len);
	assert_non_null(copy);
	for (size_t bit = 0; bit < b.len * 8; bit++) {
		memcpy(copy, b.p, b.len);
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		struct error err = { 0 };
		int rc = read_stream(copy, b.len, NULL, &err);
		if (rc >= 0)
			fail_msg("a stream with bit %zu flipped was accepted", bit);
		assert_true(err.msg[0] != 0);
	}
	free(copy);
	b_free(&b);
}

static void test_frame_bad_header(void **state)
{
	struct error err = { 0 };
	struct bytes b = { 0 };

	raw_header(&b, "TERNVMSX", 1, 0);
	raw_end(&b, 0);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, WHAT " is not a tern VM state stream (bad magic)");
	b_free(&b);

	raw_header(&b, MIG_MAGIC, 2, 0);
	raw_end(&b, 0);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "stream format version 2; this tern reads version 1");
	b_free(&b);

	raw_header(&b, MIG_MAGIC, 0, 0);
	raw_end(&b, 0);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "stream format version 0");
	b_free(&b);

	for (unsigned bit = 0; bit < 32; bit++) {
		raw_header(&b, MIG_MAGIC, 1, 1u << bit);
		raw_end(&b, 0);
		assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
		char want[64];
		snprintf(want, sizeof(want), "unknown header flags 0x%x", 1u << bit);
		expect_msg(&err, want);
		b_free(&b);
	}

	/* The smallest valid stream: a header and END. */
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_end(&b, 0);
	unsigned n = 99;
	assert_int_equal(read_stream(b.p, b.len, &n, &err), 0);
	assert_int_equal(n, 0);
	b_free(&b);
}

static void test_frame_bad_section_header(void **state)
{
	struct error err = { 0 };
	struct bytes b = { 0 };

	static const uint32_t bad_types[] = { 0, 13, 14, 0xfffe, 0x10000, 0xffffffff };
	for (unsigned i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		raw_header(&b, MIG_MAGIC, 1, 0);
		raw_section(&b, MIG_SEC_CONFIG, 0, 1, 0, "x", 1);
		raw_section(&b, bad_types[i], 0, 1, 0, "y", 1);
		raw_end(&b, 2);
		unsigned n;
		assert_int_equal(read_stream(b.p, b.len, &n, &err), -EPROTO);
		char want[64];
		snprintf(want, sizeof(want), "section 2 has unknown type %u", bad_types[i]);
		expect_msg(&err, want);
		assert_int_equal(n, 1);
		b_free(&b);
	}

	/* Bit 0 is MIG_SECTION_ZSTD: a compressed payload that is not one. */
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_RAM, 0, 1, MIG_SECTION_ZSTD, "x", 1);
	raw_end(&b, 1);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "compressed RAM section of 1 bytes");
	b_free(&b);
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_RAM, 0, 1, MIG_SECTION_ZSTD, "\x10\0\0\0\0\0\0\0garbage!", 16);
	raw_end(&b, 1);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "RAM section");
	b_free(&b);
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_RAM, 0, 1, MIG_SECTION_ZSTD, "\xff\xff\xff\xff\0\0\0\0", 8);
	raw_end(&b, 1);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "more than the");
	b_free(&b);

	for (unsigned bit = 1; bit < 32; bit++) {
		raw_header(&b, MIG_MAGIC, 1, 0);
		raw_section(&b, MIG_SEC_RAM, 0, 1, 1u << bit, "x", 1);
		raw_end(&b, 1);
		assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
		char want[64];
		snprintf(want, sizeof(want), "RAM section has unknown flags 0x%x", 1u << bit);
		expect_msg(&err, want);
		b_free(&b);
	}
	/* END is a section like the others. */
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_END, 0, 1, 4, "0123456789abcdef", 16);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "END section has unknown flags 0x4");
	b_free(&b);
}

/* A length over the limit is refused from the header alone: nothing is
 * allocated for it, and the stream need not be that long. */
static void test_frame_section_too_long(void **state)
{
	static const uint64_t lens[] = {
		MIG_MAX_SECTION + 1ull, 1ull << 32, 1ull << 63, UINT64_MAX,
	};
	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct bytes b = { 0 };
		raw_header(&b, MIG_MAGIC, 1, 0);
		raw_section_header(&b, MIG_SEC_RAM, 0, 1, 0, lens[i]);
		b_put(&b, "a few bytes, not the claimed ones", 33);
		int fd = mem_fd(b.p, b.len);
		struct mig_reader r;
		struct error err = { 0 };
		assert_int_equal(mig_reader_init(&r, fd, WHAT, &err), 0);
		assert_int_equal(mig_read_header(&r, &err), 0);
		struct mig_section s;
		assert_int_equal(mig_read_section(&r, &s, &err), -EPROTO);
		char want[128];
		snprintf(want, sizeof(want), "RAM section claims %llu bytes, more than the %u",
			 (unsigned long long)lens[i], MIG_MAX_SECTION);
		expect_msg(&err, want);
		assert_null(r.payload);
		assert_int_equal(r.payload_cap, 0);
		mig_reader_free(&r);
		close(fd);
		b_free(&b);
	}
}

static void test_frame_end(void **state)
{
	struct error err = { 0 };
	struct bytes b = { 0 };
	unsigned n;

	/* Wrong count, either way. */
	for (int delta = -1; delta <= 1; delta += 2) {
		raw_header(&b, MIG_MAGIC, 1, 0);
		raw_section(&b, MIG_SEC_CONFIG, 0, 1, 0, "a", 1);
		raw_section(&b, MIG_SEC_MACHINE, 0, 1, 0, "b", 1);
		raw_end(&b, (uint64_t)(2 + delta));
		assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
		expect_msg(&err, "sections are missing, repeated or out of order");
		b_free(&b);
	}

	/* Right count, wrong digest. */
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_CONFIG, 0, 1, 0, "a", 1);
	raw_end_with(&b, 1, chain_digest(b.p, b.len) ^ 1);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "its END digest does not match");
	b_free(&b);

	/* An END of the wrong size, with a good checksum. */
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_END, 0, 1, 0, "01234567", 8);
	assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
	expect_msg(&err, "END section of 8 bytes");
	b_free(&b);

	/* An END of another version or instance, otherwise right. */
	for (unsigned i = 0; i < 2; i++) {
		raw_header(&b, MIG_MAGIC, 1, 0);
		raw_section(&b, MIG_SEC_CONFIG, 0, 1, 0, "a", 1);
		uint8_t p[16];
		put_le(p, 1, 8);
		put_le(p + 8, chain_digest(b.p, b.len), 8);
		raw_section(&b, MIG_SEC_END, i, 2 - i, 0, p, sizeof(p));
		assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
		expect_msg(&err, i ? "END section version 1, instance 1"
				   : "END section version 2, instance 0");
		b_free(&b);
	}

	/* No END: the stream just stops after a whole section. */
	raw_header(&b, MIG_MAGIC, 1, 0);
	raw_section(&b, MIG_SEC_CONFIG, 0, 1, 0, "a", 1);
	assert_int_equal(read_stream(b.p, b.len, &n, &err), -EPROTO);
	expect_msg(&err, WHAT " is truncated: it ends inside the header of section 2");
	assert_int_equal(n, 1);
	b_free(&b);

	/* Every section intact, the END computed over them, and then two
	 * sections swapped, one dropped, or one repeated: only END sees it. */
	struct bytes parts[3] = { 0 }, hdr = { 0 };
	raw_header(&hdr, MIG_MAGIC, 1, 0);
	raw_section(&parts[0], MIG_SEC_CONFIG, 0, 1, 0, "a", 1);
	raw_section(&parts[1], MIG_SEC_HART, 0, 1, 0, "b", 1);
	raw_section(&parts[2], MIG_SEC_HART, 1, 1, 0, "c", 1);
	struct bytes good = { 0 };
	b_put(&good, hdr.p, hdr.len);
	for (unsigned i = 0; i < 3; i++)
		b_put(&good, parts[i].p, parts[i].len);
	raw_end(&good, 3);
	assert_int_equal(read_stream(good.p, good.len, &n, &err), 0);
	assert_int_equal(n, 3);
	struct bytes end = { 0 };
	b_put(&end, good.p + good.len - (MIG_SECTION_HEADER_SIZE + 16 + 8),
	      MIG_SECTION_HEADER_SIZE + 16 + 8);

	static const struct {
		unsigned n, idx[4];
	} orders[] = {
		{ 3, { 0, 2, 1 } },     /* reordered */
		{ 2, { 0, 1 } },        /* one missing */
		{ 4, { 0, 1, 1, 2 } },  /* one repeated */
	};
	for (unsigned o = 0; o < 3; o++) {
		b_put(&b, hdr.p, hdr.len);
		for (unsigned i = 0; i < orders[o].n; i++)
			b_put(&b, parts[orders[o].idx[i]].p, parts[orders[o].idx[i]].len);
		/* END as the writer had it, its count adjusted to what is
		 * there, so that only the digest can tell. */
		if (orders[o].n == 3)
			b_put(&b, end.p, end.len);
		else
			raw_end_with(&b, orders[o].n, get_le(end.p + MIG_SECTION_HEADER_SIZE + 8, 8));
		assert_int_equal(read_stream(b.p, b.len, NULL, &err), -EPROTO);
		expect_msg(&err, "sections are missing, repeated or out of order");
		b_free(&b);
	}
	for (unsigned i = 0; i < 3; i++)
		b_free(&parts[i]);
	b_free(&hdr);
	b_free(&end);
	b_free(&good);
}

/* What follows END is never read as part of the stream: after END the
 * reader answers 0 for good, even if more (even garbage) follows. */
static void test_frame_after_end(void **state)
{
	struct bytes b;
	small_stream(&b);
	size_t valid = b.len;
	raw_section(&b, MIG_SEC_CONFIG, 0, 1, 0, "more", 4);
	b_put(&b, "garbage that is no section header at all", 40);
	int fd = mem_fd(b.p, b.len);
	struct mig_reader r;
	struct error err = { 0 };
	assert_int_equal(mig_reader_init(&r, fd, WHAT, &err), 0);
	assert_int_equal(mig_read_header(&r, &err), 0);
	struct mig_section s;
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(mig_read_section(&r, &s, &err), 1);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(mig_read_section(&r, &s, &err), 0);
	assert_int_equal(r.bytes, valid);
	assert_true(r.ended);
	mig_reader_free(&r);
	close(fd);
	b_free(&b);
}

/* The writer refuses what the reader would: an oversized section, and
 * every later write after a failure. */
static void test_frame_writer_limits(void **state)
{
	int fd = memfd_create("tern-test-stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	struct mig_writer w;
	struct error err = { 0 };
	uint8_t small[16] = { 0 };
	assert_int_equal(mig_writer_init(&w, fd, false, &err), 0);
	assert_int_equal(mig_write_header(&w), 0);
	/* The length is refused before the payload is looked at. */
	assert_int_equal(mig_write_section(&w, MIG_SEC_RAM, 0, 1, small, MIG_MAX_SECTION + 1ull),
			 -EFBIG);
	assert_int_equal(mig_writer_status(&w, &err), -EFBIG);
	expect_msg(&err, "larger than the format allows");
	assert_true(mig_write_section(&w, MIG_SEC_RAM, 0, 1, small, sizeof(small)) < 0);
	assert_true(mig_write_end(&w) < 0);
	mig_writer_free(&w);
	struct bytes got;
	read_fd(fd, &got);
	assert_int_equal(got.len, 0);
	close(fd);
}

/* ---- VMs ------------------------------------------------------------------ */

/* A disk image for VMs that have one: a 1 MiB memfd, opened by path. */
static int disk_fd = -1;
static char disk_path[64];

static struct vm *new_vm_disks(unsigned cpus, uint64_t memory, unsigned disks)
{
	struct vm_config cfg = {
		.memory = memory,
		.cpus = cpus,
		.console = "none",
		.serial1 = "none",
		.num_disks = disks,
	};
	assert_true(disks <= 1);
	if (disks) {
		if (disk_fd < 0) {
			disk_fd = memfd_create("tern-test-disk", MFD_CLOEXEC);
			assert_true(disk_fd >= 0);
			assert_int_equal(ftruncate(disk_fd, MIB), 0);
			snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", disk_fd);
		}
		cfg.disks[0].path = disk_path;
	}
	struct vm *vm;
	struct error err = { 0 };
	if (vm_create(&vm, &cfg, &err))
		fail_msg("vm_create: %s", err.msg);
	return vm;
}

static struct vm *new_vm(unsigned cpus, uint64_t memory)
{
	return new_vm_disks(cpus, memory, 0);
}

static bool resident(struct vm *vm, uint64_t offset)
{
	unsigned char v = 0;
	assert_int_equal(mincore(vm->ram.host + offset, PAGE, &v), 0);
	return v & 1;
}

/* RAM offsets the test VMs populate with data; ZERO_PAGE is populated and
 * then cleared, so a snapshot carries it as a ZERO record. */
static const uint64_t data_pages[] = { 0, 0x7000, 0x123000, 128 * MIB - PAGE };
#define N_DATA_PAGES (sizeof(data_pages) / sizeof(data_pages[0]))
#define ZERO_PAGE 0x9000ull
#define UNTOUCHED_PAGE 0x5000ull

static void mmio(struct vm *vm, uint64_t addr, unsigned size, uint64_t v)
{
	assert_true(bus_write(&vm->bus, addr, size, v));
}

/* Gives a VM state in every section: RAM pages, harts away from their
 * reset state (S-mode, Sv39, a reservation, one hart stopped), a UART
 * with bytes in its receive FIFO and its interrupt pending at the PLIC. */
static void populate(struct vm *vm, unsigned seed)
{
	for (unsigned i = 0; i < N_DATA_PAGES; i++) {
		uint8_t *p = vm->ram.host + data_pages[i];
		for (unsigned j = 0; j < PAGE; j++)
			p[j] = (uint8_t)(j * 13 + i * 101 + seed);
	}
	memset(vm->ram.host + ZERO_PAGE, 0xff, PAGE);
	memset(vm->ram.host + ZERO_PAGE, 0, PAGE);

	for (unsigned i = 0; i < vm->num_harts; i++) {
		struct hart *h = &vm->harts[i];
		struct rv_state s;
		cpu_get_state(h->cpu, &s);
		for (unsigned r = 1; r < 32; r++)
			s.x[r] = 0x0101010101010101ull * r + seed + i;
		for (unsigned r = 0; r < 32; r++)
			s.f[r] = 0xffffffff00000000ull | (r * 3 + seed + i);
		s.pc = MEMMAP_RAM_BASE + 0x200000 + 4 * i;
		s.priv = RV_PRIV_S;
		s.fcsr = 0x65;
		s.mstatus |= 1ull << 1 | 1ull << 13;    /* SIE, FS initial */
		s.medeleg = 0xb109;
		s.mideleg = 0x222;
		s.mie = 0x222;
		s.mtvec = MEMMAP_RAM_BASE + 0x100;
		s.mscratch = 0x1234 + i;
		s.mcounteren = 7;
		s.menvcfg = 1ull << 63;
		s.stvec = MEMMAP_RAM_BASE + 0x201000;
		s.sepc = MEMMAP_RAM_BASE + 0x202000;
		s.scause = 8;
		s.stval = 0xdead;
		s.sscratch = 0xbeef + i;
		s.satp = 8ull << 60 | 0x80400;
		s.scounteren = 7;
		s.stimecmp = 123456789 + i;
		s.minstret = s.mcycle = 1000000 + i;
		s.reservation_valid = 1;
		s.reservation_addr = MEMMAP_RAM_BASE + 0x1000;
		s.reservation_value = 42;
		cpu_set_state(h->cpu, &s);
		h->hsm = i ? HSM_STOPPED : HSM_STARTED;
		h->start_addr = MEMMAP_RAM_BASE + 0x200000;
		h->start_arg = 0x87e00000 + i;
		h->in_wfi = i == 0;
	}

	/* UART0: FIFO on, loopback, "hi" received, data-ready interrupt on. */
	mmio(vm, MEMMAP_UART0_BASE + 2, 1, 0xc1);
	mmio(vm, MEMMAP_UART0_BASE + 4, 1, 0x1b);
	mmio(vm, MEMMAP_UART0_BASE + 0, 1, 'h');
	mmio(vm, MEMMAP_UART0_BASE + 0, 1, 'i');
	mmio(vm, MEMMAP_UART0_BASE + 1, 1, 0x05);
	mmio(vm, MEMMAP_UART0_BASE + 7, 1, 0x5a + seed);
	/* UART1: a divisor latch, 8N1. */
	mmio(vm, MEMMAP_UART1_BASE + 3, 1, 0x80);
	mmio(vm, MEMMAP_UART1_BASE + 0, 1, 0x0c);
	mmio(vm, MEMMAP_UART1_BASE + 1, 1, 0x00);
	mmio(vm, MEMMAP_UART1_BASE + 3, 1, 0x03);
	/* PLIC: UART0 enabled for hart 0 above the threshold. */
	mmio(vm, MEMMAP_PLIC_BASE + 4 * IRQ_UART0, 4, 3);
	mmio(vm, MEMMAP_PLIC_BASE + 4 * IRQ_UART1, 4, 2);
	mmio(vm, MEMMAP_PLIC_BASE + 0x2000, 4, 1u << IRQ_UART0);
	mmio(vm, MEMMAP_PLIC_BASE + 0x200000, 4, 1);
	if (vm->num_harts > 1)
		mmio(vm, MEMMAP_PLIC_BASE + 0x2000 + 0x80, 4, 1u << IRQ_UART1);
}

/* A virtio-blk driver's setup of the disk at slot 0 (virtio 1.2, 3.1.1):
 * VERSION_1, queue 0 of 8 entries with its rings in one RAM page, then
 * DRIVER_OK. */
static void setup_disk(struct vm *vm)
{
	const uint64_t base = MEMMAP_VIRTIO_BASE, ring = MEMMAP_RAM_BASE + 0x8000;
	memset(vm->ram.host + 0x8000, 0, 0x300);
	mmio(vm, base + 0x070, 4, 0);
	mmio(vm, base + 0x070, 4, 1);
	mmio(vm, base + 0x070, 4, 3);
	mmio(vm, base + 0x024, 4, 1);
	mmio(vm, base + 0x020, 4, 1);
	mmio(vm, base + 0x070, 4, 0xb);
	mmio(vm, base + 0x030, 4, 0);
	mmio(vm, base + 0x038, 4, 8);
	mmio(vm, base + 0x080, 4, (uint32_t)ring);
	mmio(vm, base + 0x084, 4, ring >> 32);
	mmio(vm, base + 0x090, 4, (uint32_t)(ring + 0x100));
	mmio(vm, base + 0x094, 4, (ring + 0x100) >> 32);
	mmio(vm, base + 0x0a0, 4, (uint32_t)(ring + 0x200));
	mmio(vm, base + 0x0a4, 4, (ring + 0x200) >> 32);
	mmio(vm, base + 0x044, 4, 1);
	mmio(vm, base + 0x070, 4, 0xf);
}

static void save_vm(struct vm *vm, struct bytes *out)
{
	int fd = memfd_create("tern-test-snapshot", MFD_CLOEXEC);
	assert_true(fd >= 0);
	struct mig_writer w;
	struct error err = { 0 };
	struct ram_stats stats = { 0 };
	/* As vm_pause does: devices stop before their state is taken. */
	for (unsigned i = 0; i < vm->num_virtio; i++)
		virtio_mmio_pause(vm->virtio[i]);
	assert_int_equal(mig_writer_init(&w, fd, false, &err), 0);
	if (vmstate_save_all(vm, &w, &stats, &err))
		fail_msg("vmstate_save_all: %s", err.msg);
	mig_writer_free(&w);
	read_fd(fd, out);
	close(fd);
}

/* What `tern vm run --restore` does with a stream, into a VM already built. */
static int load_into(struct vm *vm, const void *data, size_t len, bool fresh,
		     struct error *err)
{
	int fd = mem_fd(data, len);
	struct mig_reader r;
	assert_int_equal(mig_reader_init(&r, fd, WHAT, err), 0);
	struct vm_shape shape;
	int rc = vmstate_read_shape(&r, &shape, err);
	if (!rc) {
		struct vmstate_loader l;
		vmstate_loader_init(&l, vm, fresh);
		rc = vmstate_check_config(&l, &shape, err);
		if (!rc)
			rc = vmstate_load_rest(&l, &r, err);
	}
	mig_reader_free(&r);
	close(fd);
	return rc;
}

/* ---- streams taken apart -------------------------------------------------- */

#define MAX_SECTIONS 32

struct sec {
	uint32_t type, instance, version;
	struct bytes rec;               /* the payload */
};

struct stream {
	struct sec s[MAX_SECTIONS];
	unsigned n;
};

/* Every section of a valid stream but END. */
static void stream_parse(const struct bytes *b, struct stream *st)
{
	memset(st, 0, sizeof(*st));
	size_t pos = MIG_HEADER_SIZE;
	assert_true(b->len >= pos);
	for (;;) {
		assert_true(b->len - pos >= MIG_SECTION_HEADER_SIZE);
		const uint8_t *h = b->p + pos;
		uint32_t type = (uint32_t)get_le(h, 4);
		uint64_t len = get_le(h + 16, 8);
		assert_true(b->len - pos >= MIG_SECTION_HEADER_SIZE + len + 8);
		if (type == MIG_SEC_END)
			break;
		assert_true(st->n < MAX_SECTIONS);
		struct sec *s = &st->s[st->n++];
		s->type = type;
		s->instance = (uint32_t)get_le(h + 4, 4);
		s->version = (uint32_t)get_le(h + 8, 4);
		b_copy(&s->rec, h + MIG_SECTION_HEADER_SIZE, len);
		pos += MIG_SECTION_HEADER_SIZE + len + 8;
	}
}

/* Back to bytes with the real writer: checksums and END are right. */
static void stream_write(const struct stream *st, struct bytes *out)
{
	int fd = memfd_create("tern-test-stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	struct mig_writer w;
	struct error err = { 0 };
	assert_int_equal(mig_writer_init(&w, fd, false, &err), 0);
	assert_int_equal(mig_write_header(&w), 0);
	for (unsigned i = 0; i < st->n; i++)
		assert_int_equal(mig_write_section(&w, st->s[i].type, st->s[i].instance,
						   st->s[i].version, st->s[i].rec.p,
						   st->s[i].rec.len), 0);
	assert_int_equal(mig_write_end(&w), 0);
	mig_writer_free(&w);
	read_fd(fd, out);
	close(fd);
}

static void stream_free(struct stream *st)
{
	for (unsigned i = 0; i < st->n; i++)
		b_free(&st->s[i].rec);
	st->n = 0;
}

static void stream_copy(struct stream *dst, const struct stream *src)
{
	*dst = *src;
	for (unsigned i = 0; i < src->n; i++)
		b_copy(&dst->s[i].rec, src->s[i].rec.p, src->s[i].rec.len);
}

static unsigned stream_index(const struct stream *st, uint32_t type, uint32_t instance)
{
	for (unsigned i = 0; i < st->n; i++)
		if (st->s[i].type == type && st->s[i].instance == instance)
			return i;
	fail_msg("no %s section %u", mig_section_name(type), instance);
	return 0;
}

static struct sec *stream_find(struct stream *st, uint32_t type, uint32_t instance)
{
	return &st->s[stream_index(st, type, instance)];
}

static void stream_remove(struct stream *st, unsigned at)
{
	assert_true(at < st->n);
	b_free(&st->s[at].rec);
	memmove(&st->s[at], &st->s[at + 1], (st->n - at - 1) * sizeof(st->s[0]));
	st->n--;
}

/* Inserts a copy of a section (possibly of the stream's own) before `at`. */
static void stream_insert(struct stream *st, unsigned at, uint32_t type, uint32_t instance,
			  uint32_t version, const void *payload, size_t len)
{
	assert_true(st->n < MAX_SECTIONS && at <= st->n);
	struct sec s = { .type = type, .instance = instance, .version = version };
	b_copy(&s.rec, payload, len);
	memmove(&st->s[at + 1], &st->s[at], (st->n - at) * sizeof(st->s[0]));
	st->s[at] = s;
	st->n++;
}

/* ---- records edited field by field ------------------------------------------ */

/* Offset of field id's header in a well-formed record, or SIZE_MAX. */
static size_t rec_find(const struct bytes *r, uint16_t id)
{
	for (size_t pos = 0; pos + STATE_FIELD_HEADER <= r->len;) {
		uint32_t len = (uint32_t)get_le(r->p + pos + 4, 4);
		if (get_le(r->p + pos, 2) == id)
			return pos;
		pos += STATE_FIELD_HEADER + len;
	}
	return SIZE_MAX;
}

/* Sets field id (in place of the old one, else at the end). */
static void rec_set(struct bytes *r, uint16_t id, uint16_t flags, const void *value,
		    uint32_t len)
{
	struct bytes out = { 0 };
	size_t at = rec_find(r, id), rest = at;
	if (at != SIZE_MAX) {
		b_put(&out, r->p, at);
		rest = at + STATE_FIELD_HEADER + get_le(r->p + at + 4, 4);
	} else {
		b_put(&out, r->p, r->len);
		rest = r->len;
	}
	b_le(&out, id, 2);
	b_le(&out, flags, 2);
	b_le(&out, len, 4);
	b_put(&out, value, len);
	b_put(&out, r->p + rest, r->len - rest);
	b_free(r);
	*r = out;
}

static void rec_set_uint(struct bytes *r, uint16_t id, uint64_t v, unsigned width)
{
	uint8_t b[8];
	put_le(b, v, width);
	rec_set(r, id, 0, b, width);
}

static void rec_set_u64(struct bytes *r, uint16_t id, uint64_t v)
{
	rec_set_uint(r, id, v, 8);
}

static void rec_set_u32(struct bytes *r, uint16_t id, uint32_t v)
{
	rec_set_uint(r, id, v, 4);
}

static void rec_set_str(struct bytes *r, uint16_t id, const char *s)
{
	rec_set(r, id, 0, s, (uint32_t)strlen(s));
}

static void rec_del(struct bytes *r, uint16_t id)
{
	size_t at = rec_find(r, id);
	assert_true(at != SIZE_MAX);
	size_t end = at + STATE_FIELD_HEADER + get_le(r->p + at + 4, 4);
	memmove(r->p + at, r->p + end, r->len - end);
	r->len -= end - at;
}

/* A copy of field id's value (a nested record, typically). */
static void rec_get(const struct bytes *r, uint16_t id, struct bytes *out)
{
	size_t at = rec_find(r, id);
	assert_true(at != SIZE_MAX);
	b_copy(out, r->p + at + STATE_FIELD_HEADER, get_le(r->p + at + 4, 4));
}

static uint64_t rec_get_uint(const struct bytes *r, uint16_t id)
{
	size_t at = rec_find(r, id);
	assert_true(at != SIZE_MAX);
	return get_le(r->p + at + STATE_FIELD_HEADER, (unsigned)get_le(r->p + at + 4, 4));
}

/* ---- fixtures: snapshots of populated 1- and 2-hart VMs --------------------- */

static struct bytes snap[3];            /* by hart count */
static struct stream parsed[3];

static int group_setup(void **state)
{
	for (unsigned cpus = 1; cpus <= 2; cpus++) {
		struct vm *vm = new_vm(cpus, 128 * MIB);
		populate(vm, cpus);
		save_vm(vm, &snap[cpus]);
		stream_parse(&snap[cpus], &parsed[cpus]);
		vm_destroy(vm);
	}
	return 0;
}

static int group_teardown(void **state)
{
	if (disk_fd >= 0)
		close(disk_fd);
	for (unsigned i = 1; i <= 2; i++) {
		b_free(&snap[i]);
		stream_free(&parsed[i]);
	}
	return 0;
}

/* The 1-hart snapshot, ready to edit. */
static void edit_1(struct stream *st)
{
	stream_copy(st, &parsed[1]);
}

/* Loads an edited stream into a fresh 1-hart VM and expects a refusal
 * naming `needle`; returns the VM (untouched where the format promises)
 * for more checks, or destroys it when out is NULL. */
static void expect_refused_vm(struct stream *st, unsigned cpus, const char *needle,
			      struct vm **out)
{
	struct bytes b;
	stream_write(st, &b);
	stream_free(st);
	struct vm *vm = new_vm(cpus, 128 * MIB);
	struct error err = { 0 };
	int rc = load_into(vm, b.p, b.len, true, &err);
	b_free(&b);
	if (rc >= 0)
		fail_msg("a stream that should fail with \"%s\" was accepted", needle);
	expect_msg(&err, needle);
	if (out)
		*out = vm;
	else
		vm_destroy(vm);
}

static void expect_refused(struct stream *st, const char *needle)
{
	expect_refused_vm(st, 1, needle, NULL);
}

/* Nothing of the stream reached the VM: no RAM, harts and devices as
 * vm_create made them. */
static void expect_untouched(struct vm *vm)
{
	struct vm *ref = new_vm(vm->num_harts, vm->ram.size);
	for (uint64_t off = 0; off < vm->ram.size; off += PAGE)
		if (resident(vm, off))
			fail_msg("RAM page 0x%llx was written", (unsigned long long)off);
	for (unsigned i = 0; i < vm->num_harts; i++) {
		struct rv_state a, b;
		cpu_get_state(vm->harts[i].cpu, &a);
		cpu_get_state(ref->harts[i].cpu, &b);
		assert_memory_equal(&a, &b, sizeof(a));
		assert_int_equal(vm->harts[i].hsm, ref->harts[i].hsm);
	}
	struct bytes sa, sb;
	struct stream ta, tb;
	save_vm(vm, &sa);
	save_vm(ref, &sb);
	stream_parse(&sa, &ta);
	stream_parse(&sb, &tb);
	for (unsigned i = 0; i < vm->bus.count; i++) {
		struct sec *da = stream_find(&ta, MIG_SEC_DEVICE, i);
		struct sec *db = stream_find(&tb, MIG_SEC_DEVICE, i);
		assert_int_equal(da->rec.len, db->rec.len);
		assert_memory_equal(da->rec.p, db->rec.p, da->rec.len);
	}
	stream_free(&ta);
	stream_free(&tb);
	b_free(&sa);
	b_free(&sb);
	vm_destroy(ref);
}

/* ---- vmstate: the whole VM ---------------------------------------------------- */

static void round_trip(unsigned cpus)
{
	struct vm *a = new_vm(cpus, 128 * MIB);
	populate(a, cpus + 10);
	struct bytes sa;
	save_vm(a, &sa);

	struct vm *b = new_vm(cpus, 128 * MIB);
	struct error err = { 0 };
	if (load_into(b, sa.p, sa.len, true, &err))
		fail_msg("load: %s", err.msg);

	/* The shape. */
	assert_int_equal(b->num_harts, a->num_harts);
	assert_int_equal(b->ram.size, a->ram.size);
	assert_int_equal(b->bus.count, a->bus.count);

	/* Every hart, bit for bit. */
	for (unsigned i = 0; i < cpus; i++) {
		struct rv_state x, y;
		cpu_get_state(a->harts[i].cpu, &x);
		cpu_get_state(b->harts[i].cpu, &y);
		assert_memory_equal(&x, &y, sizeof(x));
		assert_int_equal(a->harts[i].hsm, b->harts[i].hsm);
		assert_int_equal(a->harts[i].start_addr, b->harts[i].start_addr);
		assert_int_equal(a->harts[i].start_arg, b->harts[i].start_arg);
		assert_int_equal(a->harts[i].in_wfi, b->harts[i].in_wfi);
	}

	/* RAM: the data pages equal; the zero page and untouched memory were
	 * never touched on the fresh destination. */
	for (unsigned i = 0; i < N_DATA_PAGES; i++)
		assert_memory_equal(a->ram.host + data_pages[i], b->ram.host + data_pages[i], PAGE);
	assert_false(resident(b, ZERO_PAGE));
	assert_false(resident(b, UNTOUCHED_PAGE));
	unsigned populated = 0;
	for (uint64_t off = 0; off < b->ram.size; off += PAGE)
		populated += resident(b, off);
	assert_int_equal(populated, N_DATA_PAGES);

	/* Devices, CONFIG and harts: saving the copy gives the same records. */
	struct bytes sb;
	save_vm(b, &sb);
	struct stream ta, tb;
	stream_parse(&sa, &ta);
	stream_parse(&sb, &tb);
	for (unsigned i = 0; i < ta.n; i++) {
		struct sec *x = &ta.s[i];
		if (x->type == MIG_SEC_RAM || x->type == MIG_SEC_MACHINE)
			continue;
		struct sec *y = stream_find(&tb, x->type, x->instance);
		assert_int_equal(x->version, y->version);
		assert_int_equal(x->rec.len, y->rec.len);
		assert_memory_equal(x->rec.p, y->rec.p, x->rec.len);
	}
	/* Guest time continues from the saved value. */
	uint64_t saved = rec_get_uint(&stream_find(&ta, MIG_SEC_MACHINE, 0)->rec,
				      MACH_GUEST_TIME);
	uint64_t now = vm_time_now(b);
	assert_true(now >= saved);
	assert_true(now - saved < 60 * TIMEBASE_HZ);

	stream_free(&ta);
	stream_free(&tb);
	b_free(&sa);
	b_free(&sb);
	vm_destroy(a);
	vm_destroy(b);
}

static void test_vm_round_trip_1(void **state)
{
	round_trip(1);
}

static void test_vm_round_trip_2(void **state)
{
	round_trip(2);
}

/* A VM with a disk whose driver set up a queue: the virtio-mmio and
 * virtio-blk records come back as they were; and the device lists of a VM
 * with a disk and one without do not fit each other. */
/* Loads the edited stream into a VM with one disk; it must be refused. */
static void expect_refused_disk(struct stream *st, const char *needle)
{
	struct bytes b;
	stream_write(st, &b);
	struct vm *vm = new_vm_disks(1, 128 * MIB, 1);
	struct error err = { 0 };
	int rc = load_into(vm, b.p, b.len, true, &err);
	b_free(&b);
	vm_destroy(vm);
	if (rc >= 0)
		fail_msg("a stream that should fail with \"%s\" was accepted", needle);
	expect_msg(&err, needle);
}

static void test_vm_round_trip_disk(void **state)
{
	struct vm *a = new_vm_disks(1, 128 * MIB, 1);
	populate(a, 3);
	setup_disk(a);
	struct bytes sa;
	save_vm(a, &sa);
	vm_destroy(a);

	struct vm *b = new_vm_disks(1, 128 * MIB, 1);
	struct error err = { 0 };
	if (load_into(b, sa.p, sa.len, true, &err))
		fail_msg("load: %s", err.msg);
	struct bytes sb;
	save_vm(b, &sb);
	vm_destroy(b);
	struct stream ta, tb;
	stream_parse(&sa, &ta);
	stream_parse(&sb, &tb);
	assert_int_equal(ta.n, tb.n);
	for (unsigned i = 0; i < 4; i++) {
		struct sec *x = stream_find(&ta, MIG_SEC_DEVICE, i);
		struct sec *y = stream_find(&tb, MIG_SEC_DEVICE, i);
		assert_int_equal(x->rec.len, y->rec.len);
		assert_memory_equal(x->rec.p, y->rec.p, x->rec.len);
	}
	stream_free(&ta);
	stream_free(&tb);
	b_free(&sb);

	b = new_vm(1, 128 * MIB);
	assert_true(load_into(b, sa.p, sa.len, true, &err) < 0);
	expect_msg(&err, "the saved VM has 4 devices; this one has 3: give the same --disk");
	vm_destroy(b);
	b = new_vm_disks(1, 128 * MIB, 1);
	assert_true(load_into(b, snap[1].p, snap[1].len, true, &err) < 0);
	expect_msg(&err, "the saved VM has 3 devices; this one has 4");
	vm_destroy(b);

	/* The CONFIG says how big each disk is: another size is refused
	 * before anything is loaded (for a migration: before the pause). */
	struct stream ts;
	stream_parse(&sa, &ts);
	struct bytes disk = { 0 };
	rec_get(&stream_find(&ts, MIG_SEC_CONFIG, 0)->rec, CFG_DISK_BASE, &disk);
	uint64_t size = rec_get_uint(&disk, CFG_DISK_SIZE);
	rec_set_u64(&disk, CFG_DISK_SIZE, size * 2);
	rec_set(&stream_find(&ts, MIG_SEC_CONFIG, 0)->rec, CFG_DISK_BASE, STATE_RECORD, disk.p,
		(uint32_t)disk.len);
	b_free(&disk);
	expect_refused_disk(&ts, "shared storage needs the same image on both hosts");
	/* A snapshot carries no DISK section: one is refused. */
	stream_free(&ts);
	stream_parse(&sa, &ts);
	stream_insert(&ts, 2, MIG_SEC_DISK, 0, 1, "\0\0\0\0\0\0\0\0\0\2\0\0\1\0\0\0", 16);
	expect_refused_disk(&ts, "a DISK section, but no disk is being copied");
	/* A version 1 CONFIG (no disks listed; older snapshots) still loads. */
	stream_free(&ts);
	stream_parse(&sa, &ts);
	struct sec *cfg = stream_find(&ts, MIG_SEC_CONFIG, 0);
	cfg->version = 1;
	rec_set_u32(&cfg->rec, CFG_VERSION, 1);
	rec_del(&cfg->rec, CFG_DISKS);
	rec_del(&cfg->rec, CFG_DISK_BASE);
	struct bytes v1;
	stream_write(&ts, &v1);
	b = new_vm_disks(1, 128 * MIB, 1);
	if (load_into(b, v1.p, v1.len, true, &err))
		fail_msg("a version 1 CONFIG: %s", err.msg);
	vm_destroy(b);
	b_free(&v1);
	stream_free(&ts);
	b_free(&sa);
}

/* Sections after END are not part of the snapshot. */
static void test_vm_trailing_bytes(void **state)
{
	struct bytes b = { 0 };
	b_put(&b, snap[1].p, snap[1].len);
	raw_section(&b, MIG_SEC_HART, 0, 1, 0, "junk", 4);
	b_put(&b, "\xff\xff\xff\xff", 4);
	struct vm *vm = new_vm(1, 128 * MIB);
	struct error err = { 0 };
	if (load_into(vm, b.p, b.len, true, &err))
		fail_msg("load: %s", err.msg);
	vm_destroy(vm);
	b_free(&b);
}

/* ---- CONFIG ------------------------------------------------------------------ */

static void test_config_not_first(void **state)
{
	struct stream st;

	/* RAM, MACHINE, HART or DEVICE first. */
	static const uint32_t firsts[] = { MIG_SEC_RAM, MIG_SEC_MACHINE, MIG_SEC_HART,
					   MIG_SEC_DEVICE };
	for (unsigned i = 0; i < 4; i++) {
		edit_1(&st);
		unsigned at = stream_index(&st, firsts[i], 0);
		struct sec s = st.s[at];
		stream_insert(&st, 0, s.type, s.instance, s.version, s.rec.p, s.rec.len);
		expect_refused(&st, WHAT " does not start with a CONFIG section");
	}
	/* CONFIG moved after RAM. */
	edit_1(&st);
	struct sec c = st.s[0];
	stream_insert(&st, 2, c.type, c.instance, c.version, c.rec.p, c.rec.len);
	stream_remove(&st, 0);
	expect_refused(&st, "does not start with a CONFIG section");
	/* Nothing at all but END. */
	st.n = 0;
	expect_refused(&st, "does not start with a CONFIG section");
}

static void test_config_mismatch(void **state)
{
	struct stream st;
	struct vm *vm;
	struct bytes dev = { 0 };

	/* Saved from 2 harts, loaded into 1; and the other way. */
	stream_copy(&st, &parsed[2]);
	expect_refused_vm(&st, 1, "the saved VM has 2 harts; this one has 1", &vm);
	expect_untouched(vm);
	vm_destroy(vm);
	edit_1(&st);
	expect_refused_vm(&st, 2, "the saved VM has 1 harts; this one has 2", NULL);

	/* RAM size and base. */
	struct bytes b;
	edit_1(&st);
	stream_write(&st, &b);
	stream_free(&st);
	vm = new_vm(1, 256 * MIB);
	struct error err = { 0 };
	assert_true(load_into(vm, b.p, b.len, true, &err) < 0);
	expect_msg(&err, "the saved VM has 128 MiB of RAM at 0x80000000; this one has 256 MiB");
	vm_destroy(vm);
	b_free(&b);
	edit_1(&st);
	rec_set_u64(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_RAM_BASE, 0x40000000);
	expect_refused_vm(&st, 1, "128 MiB of RAM at 0x40000000", &vm);
	expect_untouched(vm);
	vm_destroy(vm);

	/* ISA and timebase. */
	edit_1(&st);
	rec_set_str(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_ISA, "rv64gcv");
	expect_refused(&st, "the saved VM's CPU implements rv64gcv; this tern's implements "
		       RV64_ISA_STRING);
	edit_1(&st);
	rec_set_str(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_ISA,
		    RV64_ISA_STRING "_zba");
	expect_refused(&st, "the saved VM's CPU implements");
	edit_1(&st);
	rec_set_u64(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_TIMEBASE, 1000000);
	expect_refused(&st, "the saved VM's timebase is 1000000 Hz; this one's is 10000000");

	/* The device list: count, id, type, and a device record missing. */
	edit_1(&st);
	rec_set_u32(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_DEVICES, 4);
	expect_refused(&st, "the saved VM has 4 devices; this one has 3");
	edit_1(&st);
	struct sec *cfg = stream_find(&st, MIG_SEC_CONFIG, 0);
	rec_get(&cfg->rec, CFG_DEVICE_BASE + 2, &dev);
	rec_set_str(&dev, CFG_DEV_ID, "virtio-blk@10001000");
	rec_set(&cfg->rec, CFG_DEVICE_BASE + 2, STATE_RECORD, dev.p, (uint32_t)dev.len);
	b_free(&dev);
	expect_refused_vm(&st, 1, "device 2 of the saved VM is virtio-blk@10001000 (ns16550a); "
			  "this VM's is uart@10000100 (ns16550a)", &vm);
	expect_untouched(vm);
	vm_destroy(vm);
	edit_1(&st);
	cfg = stream_find(&st, MIG_SEC_CONFIG, 0);
	rec_get(&cfg->rec, CFG_DEVICE_BASE + 0, &dev);
	rec_set_str(&dev, CFG_DEV_TYPE, "aplic");
	rec_set(&cfg->rec, CFG_DEVICE_BASE + 0, STATE_RECORD, dev.p, (uint32_t)dev.len);
	b_free(&dev);
	expect_refused(&st, "device 0 of the saved VM is plic@c000000 (aplic)");
	edit_1(&st);
	rec_del(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_DEVICE_BASE + 1);
	expect_refused(&st, "record 101 is missing");
	edit_1(&st);
	cfg = stream_find(&st, MIG_SEC_CONFIG, 0);
	rec_set_u32(&cfg->rec, CFG_DEVICE_BASE + 1, 7);
	expect_refused(&st, "field 101 is not a record");
}

static void test_config_malformed(void **state)
{
	struct stream st;

	/* A CONFIG section of a version this tern does not read. */
	edit_1(&st);
	st.s[0].version = 3;
	expect_refused(&st, "CONFIG section version 3; this tern reads 1 to 2");
	/* A required field this tern does not know. */
	edit_1(&st);
	uint8_t one[8] = { 1 };
	rec_set(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, 77, STATE_REQUIRED, one, 8);
	expect_refused(&st, "field 77 is required but unknown to this version of tern");
	/* An optional one is skipped. */
	edit_1(&st);
	rec_set(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, 77, 0, one, 8);
	struct bytes b;
	stream_write(&st, &b);
	stream_free(&st);
	struct vm *vm = new_vm(1, 128 * MIB);
	struct error err = { 0 };
	if (load_into(vm, b.p, b.len, true, &err))
		fail_msg("an unknown optional CONFIG field: %s", err.msg);
	vm_destroy(vm);
	b_free(&b);
	/* Missing or mistyped fields. */
	static const uint16_t needed[] = {
		CFG_RAM_BASE, CFG_RAM_SIZE, CFG_HARTS, CFG_ISA, CFG_TIMEBASE, CFG_DEVICES,
	};
	for (unsigned i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		edit_1(&st);
		rec_del(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, needed[i]);
		char want[32];
		snprintf(want, sizeof(want), "field %u", needed[i]);
		expect_refused(&st, want);
	}
	edit_1(&st);
	rec_set_u32(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_RAM_SIZE, 128 << 20);
	expect_refused(&st, "field 2 is 4 bytes wide, a u64 is 8");
	/* A CONFIG that is no record at all. */
	edit_1(&st);
	b_free(&st.s[0].rec);
	b_put(&st.s[0].rec, "\x01\x00\x00\x00\xff\xff\xff\x7f", 8);
	expect_refused(&st, "past the end of its record");
	/* A second CONFIG later on. */
	edit_1(&st);
	stream_insert(&st, 3, MIG_SEC_CONFIG, 0, 2, st.s[0].rec.p, st.s[0].rec.len);
	expect_refused(&st, "an unexpected CONFIG section");
}

/* CONFIG's own record version (field 0) is a version like any other: a
 * newer one is refused, not read as if it were version 1. */
static void test_config_record_version(void **state)
{
	struct stream st;
	edit_1(&st);
	rec_set_u32(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_VERSION, 3);
	struct vm *vm;
	expect_refused_vm(&st, 1, "CONFIG record version 3 in a version 2 section", &vm);
	expect_untouched(vm);
	vm_destroy(vm);
	edit_1(&st);
	rec_del(&stream_find(&st, MIG_SEC_CONFIG, 0)->rec, CFG_VERSION);
	expect_refused(&st, "field 0 (u32) is missing");
}

/* ---- RAM ---------------------------------------------------------------------- */

/* A RAM section with one bad page record, placed after a good DATA record
 * of page GOOD_PAGE: the section is checked whole before any of it is
 * applied, so GOOD_PAGE stays untouched. */
#define GOOD_PAGE 0x42000ull

static void ram_refused(const void *records, size_t len, const char *needle)
{
	struct stream st;
	edit_1(&st);
	struct bytes rec = { 0 };
	uint8_t data[PAGE];
	memset(data, 0xa5, sizeof(data));
	b_le(&rec, (MEMMAP_RAM_BASE + GOOD_PAGE) | PAGE_DATA, 8);
	b_put(&rec, data, sizeof(data));
	b_put(&rec, records, len);
	stream_insert(&st, 1, MIG_SEC_RAM, 0, 1, rec.p, rec.len);
	b_free(&rec);
	struct vm *vm;
	expect_refused_vm(&st, 1, needle, &vm);
	assert_false(resident(vm, GOOD_PAGE));
	vm_destroy(vm);
}

static void ram_word_refused(uint64_t word, const char *needle)
{
	uint8_t rec[8 + PAGE];
	put_le(rec, word, 8);
	memset(rec + 8, 0x5a, PAGE);
	ram_refused(rec, (word & 0xfff) == PAGE_DATA ? sizeof(rec) : 8, needle);
}

/* A snapshot is not a live migration: the sections only a live stream may
 * carry are refused there, before anything is applied. */
static void test_live_only_sections_refused(void **state)
{
	(void)state;
	static const struct {
		uint32_t type;
		const char *needle;
	} cases[] = {
		{ MIG_SEC_POSTCOPY, "a POSTCOPY section belongs to a live migration only" },
		{ MIG_SEC_SYNC, "a SYNC section belongs to a live migration only" },
		{ MIG_SEC_CHANNELS, "a CHANNELS section belongs to a live migration only" },
		{ MIG_SEC_CHANNEL, "an unexpected CHANNEL section" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stream st;
		edit_1(&st);
		uint8_t payload[16] = { 0 };
		stream_insert(&st, 1, cases[i].type, 0, 1, payload, sizeof(payload));
		struct vm *vm;
		expect_refused_vm(&st, 1, cases[i].needle, &vm);
		expect_untouched(vm);
		vm_destroy(vm);
	}
}

/* As load_into, for a live migration's stream (deltas allowed). */
static int load_live(struct vm *vm, const void *data, size_t len, struct error *err)
{
	int fd = mem_fd(data, len);
	struct mig_reader r;
	assert_int_equal(mig_reader_init(&r, fd, WHAT, err), 0);
	struct vm_shape shape;
	int rc = vmstate_read_shape(&r, &shape, err);
	if (!rc) {
		struct vmstate_loader l;
		vmstate_loader_init(&l, vm, false);
		l.live = true;
		rc = vmstate_check_config(&l, &shape, err);
		if (!rc)
			rc = vmstate_load_rest(&l, &r, err);
		vmstate_loader_free(&l);
	}
	mig_reader_free(&r);
	close(fd);
	return rc;
}

/* A page sent whole, then as a delta against that copy: the page ends up
 * with the new bytes; a delta that runs past the page is refused. */
static void test_ram_delta(void **state)
{
	(void)state;
	uint8_t page[PAGE];
	for (unsigned i = 0; i < PAGE; i++)
		page[i] = (uint8_t)(i * 7);
	/* skip 100, copy 3 bytes; skip 4000 - 103 = 3897, copy 1 byte */
	static const uint8_t delta[] = { 100, 3, 0xaa, 0xbb, 0xcc, 0xb9, 0x1e, 1, 0xdd };
	for (int bad = 0; bad < 2; bad++) {
		struct stream st;
		edit_1(&st);
		struct bytes rec = { 0 };
		b_le(&rec, (MEMMAP_RAM_BASE + GOOD_PAGE) | PAGE_DATA, 8);
		b_put(&rec, page, sizeof(page));
		b_le(&rec, (MEMMAP_RAM_BASE + GOOD_PAGE) | 0x4, 8);
		if (bad) {
			/* skip 4095, copy 2: one byte past the page */
			static const uint8_t past[] = { 0xff, 0x1f, 2, 1, 2 };
			b_le(&rec, sizeof(past), 2);
			b_put(&rec, past, sizeof(past));
		} else {
			b_le(&rec, sizeof(delta), 2);
			b_put(&rec, delta, sizeof(delta));
		}
		stream_insert(&st, 1, MIG_SEC_RAM, 0, 1, rec.p, rec.len);
		b_free(&rec);
		struct bytes b;
		stream_write(&st, &b);
		stream_free(&st);
		struct vm *vm = new_vm(1, 128 * MIB);
		struct error err = { 0 };
		int rc = load_live(vm, b.p, b.len, &err);
		b_free(&b);
		if (bad) {
			assert_true(rc < 0);
			expect_msg(&err, "page 0x80042000");
		} else {
			if (rc)
				fail_msg("load: %s", err.msg);
			const uint8_t *got = vm->ram.host + GOOD_PAGE;
			uint8_t want[PAGE];
			memcpy(want, page, PAGE);
			want[100] = 0xaa;
			want[101] = 0xbb;
			want[102] = 0xcc;
			want[4000] = 0xdd;
			assert_memory_equal(got, want, PAGE);
		}
		vm_destroy(vm);
	}
}

static void test_ram_refusals(void **state)
{
	const uint64_t base = MEMMAP_RAM_BASE, end = MEMMAP_RAM_BASE + 128 * MIB;

	/* Outside RAM: below, at the end, far away, and wrapping around. */
	ram_word_refused(0 | PAGE_DATA, "RAM section: page 0x0 is outside guest RAM");
	ram_word_refused((base - PAGE) | PAGE_ZERO, "page 0x7ffff000 is outside guest RAM");
	ram_word_refused(end | PAGE_DATA, "page 0x88000000 is outside guest RAM");
	ram_word_refused(end | PAGE_ZERO, "page 0x88000000 is outside guest RAM");
	ram_word_refused(0xfffffffffffff000ull | PAGE_DATA, "is outside guest RAM");
	ram_word_refused((base + (1ull << 63)) | PAGE_DATA, "is outside guest RAM");

	/* Flags: none, both, unknown, and what a misaligned address looks like. */
	ram_word_refused(base | 0, "RAM section: page 0x80000000 has flags 0x0");
	ram_word_refused(base | 3, "page 0x80000000 has flags 0x3");
	ram_word_refused(base | 4, "page 0x80000000 has flags 0x4");
	ram_word_refused(base | 8, "has flags 0x8");
	ram_word_refused(base | 0x800 | PAGE_DATA, "has flags 0x802");
	ram_word_refused(base | 0xfff, "has flags 0xfff");
	ram_word_refused((base + 8) | PAGE_ZERO, "page 0x80000000 has flags 0x9");

	/* Cut short: inside the address word, and inside the page data. */
	for (size_t n = 1; n < 8; n++) {
		uint8_t word[8];
		put_le(word, base | PAGE_ZERO, 8);
		ram_refused(word, n, "RAM section: a page record is cut short");
	}
	static const size_t data_lens[] = { 0, 1, 100, PAGE - 1 };
	for (unsigned i = 0; i < 4; i++) {
		uint8_t rec[8 + PAGE] = { 0 };
		put_le(rec, (base + 0x3000) | PAGE_DATA, 8);
		ram_refused(rec, 8 + data_lens[i], "RAM section: page 0x80003000 is cut short");
	}

	/* A RAM section of a newer version. */
	struct stream st;
	edit_1(&st);
	stream_find(&st, MIG_SEC_RAM, 0)->version = 2;
	expect_refused(&st, "RAM section version 2: this tern reads version 1");
}

/* ZERO records: nothing written on a fresh VM; zeroes on one that is not;
 * and the last record for a page wins either way. */
static void test_ram_zero_pages(void **state)
{
	const uint64_t page = 0x80000ull;
	struct bytes zero = { 0 };
	b_le(&zero, (MEMMAP_RAM_BASE + page) | PAGE_ZERO, 8);

	/* Fresh: the page stays unpopulated. */
	struct stream st;
	edit_1(&st);
	stream_insert(&st, 1, MIG_SEC_RAM, 0, 1, zero.p, zero.len);
	struct bytes b;
	stream_write(&st, &b);
	stream_free(&st);
	struct vm *vm = new_vm(1, 128 * MIB);
	struct error err = { 0 };
	if (load_into(vm, b.p, b.len, true, &err))
		fail_msg("load: %s", err.msg);
	assert_false(resident(vm, page));
	vm_destroy(vm);

	/* Not fresh: the page had data and is zero after. */
	vm = new_vm(1, 128 * MIB);
	memset(vm->ram.host + page, 0x77, PAGE);
	if (load_into(vm, b.p, b.len, false, &err))
		fail_msg("load: %s", err.msg);
	uint8_t zeros[PAGE] = { 0 };
	assert_memory_equal(vm->ram.host + page, zeros, PAGE);
	vm_destroy(vm);
	b_free(&b);

	/* DATA then ZERO for the same page, in one section and in two: the
	 * page ends up zero, on a fresh VM too (a live migration resends a
	 * page that was cleared after it was first sent). */
	for (unsigned split = 0; split < 2; split++) {
		struct bytes rec = { 0 };
		uint8_t data[PAGE];
		memset(data, 0x3c, sizeof(data));
		b_le(&rec, (MEMMAP_RAM_BASE + page) | PAGE_DATA, 8);
		b_put(&rec, data, sizeof(data));
		edit_1(&st);
		if (split) {
			stream_insert(&st, 1, MIG_SEC_RAM, 0, 1, rec.p, rec.len);
			stream_insert(&st, 2, MIG_SEC_RAM, 0, 1, zero.p, zero.len);
		} else {
			b_put(&rec, zero.p, zero.len);
			stream_insert(&st, 1, MIG_SEC_RAM, 0, 1, rec.p, rec.len);
		}
		b_free(&rec);
		stream_write(&st, &b);
		stream_free(&st);
		for (int fresh = 1; fresh >= 0; fresh--) {
			vm = new_vm(1, 128 * MIB);
			if (load_into(vm, b.p, b.len, fresh, &err))
				fail_msg("load: %s", err.msg);
			if (memcmp(vm->ram.host + page, zeros, PAGE))
				fail_msg("DATA then ZERO in %s, %s VM: the page is not zero",
					 split ? "two sections" : "one section",
					 fresh ? "a fresh" : "a used");
			vm_destroy(vm);
		}
		b_free(&b);
	}
	/* ZERO then DATA: the data. */
	edit_1(&st);
	struct bytes rec = { 0 };
	uint8_t data[PAGE];
	memset(data, 0x3c, sizeof(data));
	b_put(&rec, zero.p, zero.len);
	b_le(&rec, (MEMMAP_RAM_BASE + page) | PAGE_DATA, 8);
	b_put(&rec, data, sizeof(data));
	stream_insert(&st, 1, MIG_SEC_RAM, 0, 1, rec.p, rec.len);
	b_free(&rec);
	stream_write(&st, &b);
	stream_free(&st);
	vm = new_vm(1, 128 * MIB);
	if (load_into(vm, b.p, b.len, true, &err))
		fail_msg("load: %s", err.msg);
	assert_memory_equal(vm->ram.host + page, data, PAGE);
	vm_destroy(vm);
	b_free(&b);
	b_free(&zero);
}

/* ---- HART ------------------------------------------------------------------- */

/* Edits hart `hart` of the snapshot of a `cpus`-hart VM; the load must fail
 * naming `needle` and leave that hart as vm_create made it. */
static void hart_refused(unsigned cpus, unsigned hart, uint16_t id, const void *value,
			 uint32_t len, const char *needle)
{
	struct stream st;
	stream_copy(&st, &parsed[cpus]);
	struct sec *s = stream_find(&st, MIG_SEC_HART, hart);
	if (value)
		rec_set(&s->rec, id, 0, value, len);
	else
		rec_del(&s->rec, id);
	struct vm *vm;
	expect_refused_vm(&st, cpus, needle, &vm);
	struct vm *ref = new_vm(cpus, 128 * MIB);
	struct rv_state a, b;
	cpu_get_state(vm->harts[hart].cpu, &a);
	cpu_get_state(ref->harts[hart].cpu, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(vm->harts[hart].hsm, ref->harts[hart].hsm);
	assert_int_equal(vm->harts[hart].in_wfi, ref->harts[hart].in_wfi);
	vm_destroy(ref);
	vm_destroy(vm);
}

static void hart_u64_refused(unsigned cpus, unsigned hart, uint16_t id, uint64_t v,
			     const char *needle)
{
	uint8_t b[8];
	put_le(b, v, 8);
	hart_refused(cpus, hart, id, b, 8, needle);
}

static void test_hart_refusals(void **state)
{
	/* Privilege: 2 (H) and anything beyond 3 do not exist. */
	hart_u64_refused(1, 0, HART_PRIV, 2, "hart 0: privilege level 2 does not exist");
	hart_u64_refused(1, 0, HART_PRIV, 4, "privilege level 4 does not exist");
	hart_u64_refused(2, 1, HART_PRIV, UINT64_MAX, "hart 1: privilege level");
	/* satp modes the CPU does not offer (Sv48, Sv57, reserved). */
	hart_u64_refused(1, 0, HART_SATP, 9ull << 60, "hart 0: satp mode 9 is not one this CPU");
	hart_u64_refused(1, 0, HART_SATP, 10ull << 60 | 0x80400, "satp mode 10");
	hart_u64_refused(1, 0, HART_SATP, 1ull << 60, "satp mode 1");
	hart_u64_refused(1, 0, HART_SATP, 15ull << 60, "satp mode 15");
	/* fcsr: only frm and fflags exist. */
	hart_u64_refused(1, 0, HART_FCSR, 0x100, "hart 0: fcsr 0x100 has bits that do not exist");
	hart_u64_refused(1, 0, HART_FCSR, 1ull << 63, "fcsr 0x8000000000000000");
	/* mhartid must name the hart the section is for. */
	hart_u64_refused(1, 0, HART_MHARTID, 1, "hart 0: its mhartid is 1");
	hart_u64_refused(2, 1, HART_MHARTID, 0, "hart 1: its mhartid is 0");
	/* SBI HSM state. */
	uint8_t hsm[4];
	put_le(hsm, 5, 4);
	hart_refused(1, 0, HART_HSM, hsm, 4, "hart 0: SBI hart state 5 does not exist");
	put_le(hsm, 0xffffffff, 4);
	hart_refused(1, 0, HART_HSM, hsm, 4, "SBI hart state 4294967295");
	/* Record version, missing and mistyped fields, a bool that is 2. */
	uint8_t v2[4] = { 2 };
	hart_refused(1, 0, HART_VERSION_F, v2, 4, "hart 0: record version 2 is not 1");
	hart_refused(1, 0, HART_PC, NULL, 0, "hart 0: field 3 (u64) is missing");
	hart_refused(1, 0, HART_X, NULL, 0, "hart 0: field 1 is missing");
	hart_refused(1, 0, HART_MSTATUS, NULL, 0, "hart 0: field 10 (u64) is missing");
	hart_refused(1, 0, HART_PC, "1234", 4, "hart 0: field 3 is 4 bytes wide, a u64 is 8");
	uint8_t regs[255] = { 0 };
	hart_refused(1, 0, HART_X, regs, 255, "hart 0: field 1 is 255 bytes long, expected 256");
	hart_refused(1, 0, HART_F, regs, 0, "hart 0: field 2 is 0 bytes long, expected 256");
	hart_refused(1, 0, HART_IN_WFI, "\x02", 1, "hart 0: field 53 is a bool of value 2");
}

static void test_hart_sections(void **state)
{
	struct stream st;
	struct sec h;
	uint8_t one[8] = { 1 };

	/* A required field this tern does not know; an optional one is fine. */
	edit_1(&st);
	rec_set(&stream_find(&st, MIG_SEC_HART, 0)->rec, 99, STATE_REQUIRED, one, 8);
	expect_refused(&st, "hart 0: field 99 is required but unknown to this version of tern");

	/* Two sections for one hart. */
	edit_1(&st);
	h = *stream_find(&st, MIG_SEC_HART, 0);
	stream_insert(&st, stream_index(&st, MIG_SEC_HART, 0), h.type, h.instance, h.version,
		      h.rec.p, h.rec.len);
	expect_refused(&st, "two HART sections for hart 0");

	/* A hart the VM does not have: the next one, and far beyond. */
	static const uint32_t beyond[] = { 1, 8, 63, 64, 65, 0xffffffff };
	for (unsigned i = 0; i < sizeof(beyond) / sizeof(beyond[0]); i++) {
		edit_1(&st);
		h = *stream_find(&st, MIG_SEC_HART, 0);
		struct bytes rec;
		b_copy(&rec, h.rec.p, h.rec.len);
		rec_set_u64(&rec, HART_MHARTID, beyond[i]);
		stream_insert(&st, st.n, MIG_SEC_HART, beyond[i], 1, rec.p, rec.len);
		b_free(&rec);
		char want[80];
		snprintf(want, sizeof(want), "HART section for hart %u, but the VM has 1",
			 beyond[i]);
		expect_refused(&st, want);
	}

	/* A HART section of a newer version. */
	edit_1(&st);
	stream_find(&st, MIG_SEC_HART, 0)->version = 2;
	expect_refused(&st, "HART section version 2: this tern reads version 1");
}

/* ---- DEVICE ------------------------------------------------------------------- */

/* The device at bus index `dev` keeps its fresh state when refused. */
static void device_refused(struct stream *st, unsigned dev, const char *needle)
{
	struct vm *vm;
	expect_refused_vm(st, 1, needle, &vm);
	struct vm *ref = new_vm(1, 128 * MIB);
	struct bytes sa, sb;
	struct stream ta, tb;
	save_vm(vm, &sa);
	save_vm(ref, &sb);
	stream_parse(&sa, &ta);
	stream_parse(&sb, &tb);
	struct sec *da = stream_find(&ta, MIG_SEC_DEVICE, dev);
	struct sec *db = stream_find(&tb, MIG_SEC_DEVICE, dev);
	assert_int_equal(da->rec.len, db->rec.len);
	assert_memory_equal(da->rec.p, db->rec.p, da->rec.len);
	stream_free(&ta);
	stream_free(&tb);
	b_free(&sa);
	b_free(&sb);
	vm_destroy(ref);
	vm_destroy(vm);
}

static void test_device_refusals(void **state)
{
	struct stream st;
	struct bytes sub;
	uint8_t one[8] = { 1 };

	/* The section's device id is not the device at that bus index. */
	edit_1(&st);
	rec_set_str(&stream_find(&st, MIG_SEC_DEVICE, 1)->rec, DEV_ID, "uart@10000100");
	device_refused(&st, 1, "DEVICE section 1 is for uart@10000100, not uart@10000000");
	edit_1(&st);
	rec_set_str(&stream_find(&st, MIG_SEC_DEVICE, 0)->rec, DEV_ID, "");
	device_refused(&st, 0, "DEVICE section 0 is for , not plic@c000000");
	/* The two UART sections swapped: each is for the other's device. */
	edit_1(&st);
	stream_find(&st, MIG_SEC_DEVICE, 1)->instance = 99;
	stream_find(&st, MIG_SEC_DEVICE, 2)->instance = 1;
	stream_find(&st, MIG_SEC_DEVICE, 99)->instance = 2;
	device_refused(&st, 2, "DEVICE section 2 is for uart@10000000, not uart@10000100");

	/* Bus index out of range. */
	static const uint32_t beyond[] = { 3, 63, 64, 0xffffffff };
	for (unsigned i = 0; i < sizeof(beyond) / sizeof(beyond[0]); i++) {
		edit_1(&st);
		struct sec d = *stream_find(&st, MIG_SEC_DEVICE, 2);
		stream_insert(&st, st.n, MIG_SEC_DEVICE, beyond[i], 1, d.rec.p, d.rec.len);
		char want[80];
		snprintf(want, sizeof(want), "DEVICE section for device %u, but the VM has 3",
			 beyond[i]);
		expect_refused(&st, want);
	}

	/* Two sections for one device: the second is refused. */
	edit_1(&st);
	struct sec d = *stream_find(&st, MIG_SEC_DEVICE, 1);
	stream_insert(&st, st.n, MIG_SEC_DEVICE, 1, 1, d.rec.p, d.rec.len);
	expect_refused(&st, "two DEVICE sections for device 1");

	/* The DEVICE record: required field unknown, version, missing parts. */
	edit_1(&st);
	rec_set(&stream_find(&st, MIG_SEC_DEVICE, 1)->rec, 42, STATE_REQUIRED, one, 8);
	device_refused(&st, 1, "uart@10000000: field 42 is required but unknown");
	edit_1(&st);
	rec_set_u32(&stream_find(&st, MIG_SEC_DEVICE, 1)->rec, DEV_VERSION, 2);
	device_refused(&st, 1, "uart@10000000: DEVICE record version 2 is not 1");
	edit_1(&st);
	rec_del(&stream_find(&st, MIG_SEC_DEVICE, 1)->rec, DEV_STATE);
	device_refused(&st, 1, "uart@10000000: record 2 is missing");
	edit_1(&st);
	rec_set_u32(&stream_find(&st, MIG_SEC_DEVICE, 1)->rec, DEV_STATE, 0);
	device_refused(&st, 1, "uart@10000000: field 2 is not a record");
	edit_1(&st);
	rec_del(&stream_find(&st, MIG_SEC_DEVICE, 1)->rec, DEV_ID);
	device_refused(&st, 1, "field 1 is missing");
	edit_1(&st);
	stream_find(&st, MIG_SEC_DEVICE, 1)->version = 2;
	expect_refused(&st, "DEVICE section version 2: this tern reads version 1");

	/* The device's own record: a required field it does not know, and a
	 * value its registers cannot hold. */
	edit_1(&st);
	struct sec *s = stream_find(&st, MIG_SEC_DEVICE, 1);
	rec_get(&s->rec, DEV_STATE, &sub);
	rec_set(&sub, 200, STATE_REQUIRED, one, 8);
	rec_set(&s->rec, DEV_STATE, STATE_RECORD, sub.p, (uint32_t)sub.len);
	b_free(&sub);
	device_refused(&st, 1, "restoring uart@10000000: uart@10000000: field 200 is required");
	edit_1(&st);
	s = stream_find(&st, MIG_SEC_DEVICE, 1);
	rec_get(&s->rec, DEV_STATE, &sub);
	rec_set_uint(&sub, UART_IER, 0xf5, 1);
	rec_set(&s->rec, DEV_STATE, STATE_RECORD, sub.p, (uint32_t)sub.len);
	b_free(&sub);
	device_refused(&st, 1, "restoring uart@10000000: uart@10000000: saved IER 0xf5");
	edit_1(&st);
	s = stream_find(&st, MIG_SEC_DEVICE, 0);
	rec_get(&s->rec, DEV_STATE, &sub);
	rec_set_u32(&sub, 1, 64);
	rec_set(&s->rec, DEV_STATE, STATE_RECORD, sub.p, (uint32_t)sub.len);
	b_free(&sub);
	device_refused(&st, 0, "restoring plic@c000000: plic@c000000: saved PLIC has 64 sources");
}

/* ---- what must be there by END ----------------------------------------------- */

static void test_missing_at_end(void **state)
{
	struct stream st;

	edit_1(&st);
	stream_remove(&st, stream_index(&st, MIG_SEC_MACHINE, 0));
	expect_refused(&st, WHAT " has no MACHINE section");
	edit_1(&st);
	stream_remove(&st, stream_index(&st, MIG_SEC_HART, 0));
	expect_refused(&st, WHAT " has no state for hart 0");
	stream_copy(&st, &parsed[2]);
	stream_remove(&st, stream_index(&st, MIG_SEC_HART, 1));
	expect_refused_vm(&st, 2, WHAT " has no state for hart 1", NULL);
	for (unsigned i = 0; i < 3; i++) {
		static const char *const ids[] = { "plic@c000000", "uart@10000000",
						   "uart@10000100" };
		edit_1(&st);
		stream_remove(&st, stream_index(&st, MIG_SEC_DEVICE, i));
		char want[80];
		snprintf(want, sizeof(want), WHAT " has no state for %s", ids[i]);
		expect_refused(&st, want);
	}
	/* Only CONFIG. */
	edit_1(&st);
	while (st.n > 1)
		stream_remove(&st, 1);
	expect_refused(&st, "has no MACHINE section");
}

/* CONFIG, RAM, MACHINE have instance 0 only; MACHINE comes once. */
static void test_single_instance_sections(void **state)
{
	struct stream st;

	edit_1(&st);
	st.s[0].instance = 1;
	expect_refused(&st, WHAT ": CONFIG section has instance 1, not 0");
	edit_1(&st);
	stream_find(&st, MIG_SEC_RAM, 0)->instance = 2;
	expect_refused(&st, WHAT ": RAM section has instance 2, not 0");
	edit_1(&st);
	stream_find(&st, MIG_SEC_MACHINE, 0)->instance = 0xffffffff;
	expect_refused(&st, WHAT ": MACHINE section has instance 4294967295, not 0");

	edit_1(&st);
	unsigned at = stream_index(&st, MIG_SEC_MACHINE, 0);
	struct bytes m;
	b_copy(&m, st.s[at].rec.p, st.s[at].rec.len);
	rec_set_u64(&m, MACH_GUEST_TIME, 5);
	stream_insert(&st, st.n, MIG_SEC_MACHINE, 0, 1, m.p, m.len);
	b_free(&m);
	expect_refused(&st, WHAT ": two MACHINE sections");
}

/* ---- MACHINE ----------------------------------------------------------------- */

static void test_machine_refusals(void **state)
{
	struct stream st;
	uint8_t one[8] = { 1 };

	edit_1(&st);
	rec_set_u32(&stream_find(&st, MIG_SEC_MACHINE, 0)->rec, MACH_VERSION, 2);
	expect_refused(&st, "MACHINE record version 2 is not 1");
	edit_1(&st);
	rec_del(&stream_find(&st, MIG_SEC_MACHINE, 0)->rec, MACH_GUEST_TIME);
	expect_refused(&st, "MACHINE section: field 1 (u64) is missing");
	edit_1(&st);
	rec_set(&stream_find(&st, MIG_SEC_MACHINE, 0)->rec, 9, STATE_REQUIRED, one, 8);
	expect_refused(&st, "MACHINE section: field 9 is required but unknown");
	edit_1(&st);
	stream_find(&st, MIG_SEC_MACHINE, 0)->version = 7;
	expect_refused(&st, "MACHINE section version 7: this tern reads version 1");
}

/* A guest time that cannot be a time in nanoseconds is refused rather
 * than handed to the clock (where it would overflow). */
static void test_machine_guest_time(void **state)
{
	static const uint64_t bad[] = {
		UINT64_MAX, 1ull << 63, UINT64_MAX / (1000000000ull / TIMEBASE_HZ) + 1,
		(uint64_t)INT64_MAX / (1000000000ull / TIMEBASE_HZ) + 1,
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct stream st;
		edit_1(&st);
		rec_set_u64(&stream_find(&st, MIG_SEC_MACHINE, 0)->rec, MACH_GUEST_TIME, bad[i]);
		expect_refused(&st, "MACHINE section: guest time");
	}
	/* A large but possible time (a century of guest uptime) is fine. */
	struct stream st;
	edit_1(&st);
	uint64_t century = 100ull * 365 * 86400 * TIMEBASE_HZ;
	rec_set_u64(&stream_find(&st, MIG_SEC_MACHINE, 0)->rec, MACH_GUEST_TIME, century);
	struct bytes b;
	stream_write(&st, &b);
	stream_free(&st);
	struct vm *vm = new_vm(1, 128 * MIB);
	struct error err = { 0 };
	if (load_into(vm, b.p, b.len, true, &err))
		fail_msg("a century of guest time: %s", err.msg);
	assert_true(vm_time_now(vm) >= century);
	vm_destroy(vm);
	b_free(&b);
}

/* Sections go through vmstate_load_section only after CONFIG was checked. */
static void test_section_before_config(void **state)
{
	struct vm *vm = new_vm(1, 128 * MIB);
	struct vmstate_loader l;
	vmstate_loader_init(&l, vm, true);
	struct sec *h = stream_find(&parsed[1], MIG_SEC_HART, 0);
	struct mig_section s = {
		.type = MIG_SEC_HART, .instance = 0, .version = 1,
		.length = h->rec.len, .payload = h->rec.p,
	};
	struct error err = { 0 };
	assert_true(vmstate_load_section(&l, &s, &err) < 0);
	expect_msg(&err, "a HART section came before the CONFIG was checked");
	vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_round_trip),
		cmocka_unit_test(test_frame_truncated_everywhere),
		cmocka_unit_test(test_frame_bit_flips),
		cmocka_unit_test(test_frame_bad_header),
		cmocka_unit_test(test_frame_bad_section_header),
		cmocka_unit_test(test_frame_section_too_long),
		cmocka_unit_test(test_frame_end),
		cmocka_unit_test(test_frame_after_end),
		cmocka_unit_test(test_frame_writer_limits),
		cmocka_unit_test(test_vm_round_trip_1),
		cmocka_unit_test(test_vm_round_trip_2),
		cmocka_unit_test(test_vm_round_trip_disk),
		cmocka_unit_test(test_vm_trailing_bytes),
		cmocka_unit_test(test_config_not_first),
		cmocka_unit_test(test_config_mismatch),
		cmocka_unit_test(test_config_malformed),
		cmocka_unit_test(test_config_record_version),
		cmocka_unit_test(test_ram_refusals),
		cmocka_unit_test(test_live_only_sections_refused),
		cmocka_unit_test(test_ram_delta),
		cmocka_unit_test(test_ram_zero_pages),
		cmocka_unit_test(test_hart_refusals),
		cmocka_unit_test(test_hart_sections),
		cmocka_unit_test(test_device_refusals),
		cmocka_unit_test(test_missing_at_end),
		cmocka_unit_test(test_single_instance_sections),
		cmocka_unit_test(test_machine_refusals),
		cmocka_unit_test(test_machine_guest_time),
		cmocka_unit_test(test_section_before_config),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
