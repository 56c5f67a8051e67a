/* test_state.c: the saved-state encoding of state.h. Records written with
 * the writer must read back exactly; anything malformed (truncated at any
 * length, lengths past the end, duplicate ids, too deep, unknown flags,
 * unknown required fields, wrong widths) must be refused with a message
 * naming the record and the field, without a read outside the buffer: the
 * truncation tests hand the reader exactly-sized heap copies so ASan sees
 * any overrun. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/state.h"

#define WHAT "dev@1000"

static void expect_msg(const struct error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err->msg, needle);
}

/* A record with one of everything, nested two levels. */
static void write_sample(struct state_writer *w)
{
	static const uint8_t bytes[5] = { 1, 2, 3, 4, 5 };
	state_writer_init(w);
	state_put_u32(w, 0, 1);
	state_put_u8(w, 1, 0xab);
	state_put_u16(w, 2, 0xbeef);
	state_put_u32(w, 3, 0xdeadbeef);
	state_put_u64(w, 4, 0x0123456789abcdefull);
	state_put_bool(w, 5, true);
	state_put_bool(w, 6, false);
	state_put_bytes(w, 7, bytes, sizeof(bytes));
	state_put_bytes(w, 8, NULL, 0);
	size_t t = state_begin(w, 9);
	state_put_u16(w, 0, 7);
	size_t t2 = state_begin(w, 1);
	state_put_u64(w, 3, 42);
	state_end(w, t2);
	state_end(w, t);
	state_put_u64_required(w, 10, 99);
	assert_int_equal(state_writer_status(w, NULL), 0);
}

static const uint16_t sample_known[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
#define N_SAMPLE_KNOWN (sizeof(sample_known) / sizeof(sample_known[0]))

/* Reads every field of the sample; 0 if all of it is there and right. */
static int read_sample(const void *data, size_t len, struct error *err)
{
	struct state_reader r, sub, subsub;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	bool b;
	uint8_t bytes[5];
	const void *blob;
	size_t blob_len;
	int rc;
	if ((rc = state_reader_init(&r, data, len, WHAT, sample_known, N_SAMPLE_KNOWN, err)) ||
	    (rc = state_get_u32(&r, 0, &u32, err)) ||
	    (rc = state_get_u8(&r, 1, &u8, err)) ||
	    (rc = state_get_u16(&r, 2, &u16, err)) ||
	    (rc = state_get_u32(&r, 3, &u32, err)) ||
	    (rc = state_get_u64(&r, 4, &u64, err)) ||
	    (rc = state_get_bool(&r, 5, &b, err)) ||
	    (rc = state_get_bool(&r, 6, &b, err)) ||
	    (rc = state_get_bytes(&r, 7, bytes, sizeof(bytes), err)) ||
	    (rc = state_get_blob(&r, 8, &blob, &blob_len, err)) ||
	    (rc = state_get_record(&r, 9, &sub, NULL, 0, err)) ||
	    (rc = state_get_u16(&sub, 0, &u16, err)) ||
	    (rc = state_get_record(&sub, 1, &subsub, NULL, 0, err)) ||
	    (rc = state_get_u64(&subsub, 3, &u64, err)) ||
	    (rc = state_get_u64(&r, 10, &u64, err)))
		return rc;
	return 0;
}

static void test_round_trip(void **state)
{
	struct state_writer w;
	write_sample(&w);
	struct state_reader r, sub, subsub;
	struct error err = { 0 };
	if (state_reader_init(&r, w.buf, w.len, WHAT, sample_known, N_SAMPLE_KNOWN, &err))
		fail_msg("%s", err.msg);

	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	bool b;
	assert_int_equal(state_get_u32(&r, 0, &u32, &err), 0);
	assert_int_equal(u32, 1);
	assert_int_equal(state_get_u8(&r, 1, &u8, &err), 0);
	assert_int_equal(u8, 0xab);
	assert_int_equal(state_get_u16(&r, 2, &u16, &err), 0);
	assert_int_equal(u16, 0xbeef);
	assert_int_equal(state_get_u32(&r, 3, &u32, &err), 0);
	assert_int_equal(u32, 0xdeadbeef);
	assert_int_equal(state_get_u64(&r, 4, &u64, &err), 0);
	assert_int_equal(u64, 0x0123456789abcdefull);
	assert_int_equal(state_get_bool(&r, 5, &b, &err), 0);
	assert_true(b);
	assert_int_equal(state_get_bool(&r, 6, &b, &err), 0);
	assert_false(b);
	uint8_t bytes[5];
	assert_int_equal(state_get_bytes(&r, 7, bytes, 5, &err), 0);
	assert_int_equal(bytes[0], 1);
	assert_int_equal(bytes[4], 5);
	const void *blob;
	size_t blob_len;
	assert_int_equal(state_get_blob(&r, 7, &blob, &blob_len, &err), 0);
	assert_int_equal(blob_len, 5);
	assert_memory_equal(blob, bytes, 5);
	assert_int_equal(state_get_blob(&r, 8, &blob, &blob_len, &err), 0);
	assert_int_equal(blob_len, 0);
	assert_int_equal(state_get_bytes(&r, 8, bytes, 0, &err), 0);

	static const uint16_t sub_known[] = { 0, 1 };
	assert_int_equal(state_get_record(&r, 9, &sub, sub_known, 2, &err), 0);
	assert_string_equal(sub.what, WHAT);
	assert_int_equal(state_get_u16(&sub, 0, &u16, &err), 0);
	assert_int_equal(u16, 7);
	assert_false(state_has(&sub, 3));
	assert_int_equal(state_get_record(&sub, 1, &subsub, NULL, 0, &err), 0);
	assert_int_equal(state_get_u64(&subsub, 3, &u64, &err), 0);
	assert_int_equal(u64, 42);
	assert_int_equal(state_get_u64(&r, 10, &u64, &err), 0);
	assert_int_equal(u64, 99);
	assert_true(state_has(&r, 10));
	assert_false(state_has(&r, 11));
	assert_int_equal(read_sample(w.buf, w.len, &err), 0);
	state_writer_free(&w);
	assert_null(w.buf);
}

static void test_byte_layout(void **state)
{
	struct state_writer w;
	state_writer_init(&w);
	state_put_u32(&w, 0x0102, 0x0a0b0c0d);
	state_put_u64_required(&w, 3, 1);
	size_t t = state_begin(&w, 4);
	state_put_u8(&w, 5, 6);
	state_end(&w, t);
	static const uint8_t want[] = {
		0x02, 0x01, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0d, 0x0c, 0x0b, 0x0a,
		0x03, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 1, 0, 0, 0, 0, 0, 0, 0,
		0x04, 0x00, 0x02, 0x00, 0x09, 0x00, 0x00, 0x00,
		0x05, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06,
	};
	assert_int_equal(w.len, sizeof(want));
	assert_memory_equal(w.buf, want, sizeof(want));
	state_writer_free(&w);
}

static void test_optional_defaults(void **state)
{
	struct state_writer w;
	state_writer_init(&w);
	state_put_u32(&w, 1, 5);
	state_put_u64(&w, 2, 6);
	state_put_u16(&w, 3, 7);
	struct state_reader r;
	struct error err = { 0 };
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), 0);
	uint32_t u32;
	uint64_t u64;
	assert_int_equal(state_get_u32_or(&r, 1, 9, &u32, &err), 0);
	assert_int_equal(u32, 5);
	assert_int_equal(state_get_u32_or(&r, 10, 9, &u32, &err), 0);
	assert_int_equal(u32, 9);
	assert_int_equal(state_get_u64_or(&r, 2, 9, &u64, &err), 0);
	assert_int_equal(u64, 6);
	assert_int_equal(state_get_u64_or(&r, 11, 0xffffffffffull, &u64, &err), 0);
	assert_int_equal(u64, 0xffffffffffull);
	/* Present with the wrong width is still an error. */
	assert_int_equal(state_get_u32_or(&r, 3, 9, &u32, &err), -EINVAL);
	expect_msg(&err, WHAT ": field 3 is 2 bytes wide, a u32 is 4");
	assert_int_equal(state_get_u64_or(&r, 1, 9, &u64, &err), -EINVAL);
	expect_msg(&err, "field 1 is 4 bytes wide");
	state_writer_free(&w);
}

static void test_unknown_fields(void **state)
{
	struct state_writer w;
	state_writer_init(&w);
	state_put_u32(&w, 0, 1);
	state_put_u64(&w, 50, 123);           /* optional, from a newer tern */
	state_put_u64_required(&w, 60, 1);    /* required, from a newer tern */
	struct state_reader r;
	struct error err = { 0 };
	static const uint16_t old[] = { 0 };
	static const uint16_t newer[] = { 0, 60 };
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, old, 1, &err), -EINVAL);
	expect_msg(&err, WHAT ": field 60 is required but unknown");
	assert_int_equal(r.len, 0);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, newer, 2, &err), 0);
	uint32_t v;
	assert_int_equal(state_get_u32(&r, 0, &v, &err), 0);
	assert_int_equal(v, 1);
	state_writer_free(&w);

	/* The same inside a nested record, checked by state_get_record. */
	state_writer_init(&w);
	size_t t = state_begin(&w, 3);
	state_put_u8(&w, 1, 1);
	state_put_u8(&w, 2, 2);
	state_put_u64_required(&w, 7, 1);
	state_end(&w, t);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, old, 1, &err), 0);
	struct state_reader sub;
	static const uint16_t sub_old[] = { 1, 2 };
	static const uint16_t sub_new[] = { 1, 2, 7 };
	assert_int_equal(state_get_record(&r, 3, &sub, sub_old, 2, &err), -EINVAL);
	expect_msg(&err, "record 3");
	expect_msg(&err, "field 7 is required but unknown");
	assert_int_equal(state_get_record(&r, 3, &sub, sub_new, 3, &err), 0);
	/* NULL: left to whoever reads the record with its own list. */
	assert_int_equal(state_get_record(&r, 3, &sub, NULL, 0, &err), 0);
	assert_int_equal(state_reader_init(&sub, sub.data, sub.len, WHAT, sub_old, 2, &err),
			 -EINVAL);
	state_writer_free(&w);
}

static void test_wrong_width_and_type(void **state)
{
	struct state_writer w;
	state_writer_init(&w);
	state_put_u32(&w, 1, 5);
	state_put_u8(&w, 2, 2);               /* not a valid bool */
	size_t t = state_begin(&w, 3);
	state_end(&w, t);
	struct state_reader r, sub;
	struct error err = { 0 };
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), 0);
	uint8_t u8;
	uint16_t u16;
	uint64_t u64;
	bool b;
	uint8_t buf[8];
	assert_int_equal(state_get_u8(&r, 1, &u8, &err), -EINVAL);
	expect_msg(&err, WHAT ": field 1 is 4 bytes wide, a u8 is 1");
	assert_int_equal(state_get_u16(&r, 1, &u16, &err), -EINVAL);
	expect_msg(&err, "field 1 is 4 bytes wide, a u16 is 2");
	assert_int_equal(state_get_u64(&r, 1, &u64, &err), -EINVAL);
	expect_msg(&err, "field 1 is 4 bytes wide, a u64 is 8");
	assert_int_equal(state_get_bool(&r, 1, &b, &err), -EINVAL);
	expect_msg(&err, "a bool is 1");
	assert_int_equal(state_get_bool(&r, 2, &b, &err), -EINVAL);
	expect_msg(&err, "field 2 is a bool of value 2");
	assert_int_equal(state_get_bytes(&r, 1, buf, 8, &err), -EINVAL);
	expect_msg(&err, "field 1 is 4 bytes long, expected 8");
	assert_int_equal(state_get_record(&r, 1, &sub, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "field 1 is not a record");
	assert_int_equal(state_get_u64(&r, 3, &u64, &err), -EINVAL);
	expect_msg(&err, "field 3 is a record, not a u64");
	/* Missing. */
	assert_int_equal(state_get_u64(&r, 4, &u64, &err), -EINVAL);
	expect_msg(&err, WHAT ": field 4 (u64) is missing");
	assert_int_equal(state_get_record(&r, 5, &sub, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "record 5 is missing");
	const void *blob;
	size_t len;
	assert_int_equal(state_get_blob(&r, 6, &blob, &len, &err), -EINVAL);
	expect_msg(&err, "field 6 is missing");
	/* An empty record is a valid record. */
	assert_int_equal(state_get_record(&r, 3, &sub, NULL, 0, &err), 0);
	assert_int_equal(sub.len, 0);
	state_writer_free(&w);
}

/* Every proper prefix of the sample must fail somewhere: in the framing
 * check, or as a missing field. Each prefix lives in its own exact-size
 * heap block. */
static void test_truncated_everywhere(void **state)
{
	struct state_writer w;
	write_sample(&w);
	for (size_t len = 0; len < w.len; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		assert_non_null(copy);
		memcpy(copy, w.buf, len);
		struct error err = { 0 };
		if (read_sample(copy, len, &err) == 0)
			fail_msg("a prefix of %zu of %zu bytes was accepted", len, w.len);
		assert_non_null(strstr(err.msg, WHAT));
		free(copy);
	}
	state_writer_free(&w);
}

static void test_bad_lengths(void **state)
{
	struct state_writer w;
	write_sample(&w);
	uint8_t *copy = malloc(w.len);
	assert_non_null(copy);
	struct error err = { 0 };
	struct state_reader r;

	/* The first field claims one byte more than there is. */
	memcpy(copy, w.buf, w.len);
	uint32_t huge = (uint32_t)(w.len - 8 + 1);
	memcpy(copy + 4, &huge, 4);
	assert_int_equal(state_reader_init(&r, copy, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, WHAT ": field 0 at offset 0");
	expect_msg(&err, "past the end");
	/* The largest possible length. */
	memset(copy + 4, 0xff, 4);
	assert_int_equal(state_reader_init(&r, copy, w.len, WHAT, NULL, 0, &err), -EINVAL);

	/* A nested record's inner field runs past the record, though not
	 * past the buffer: find record 9 and grow its first field. */
	memcpy(copy, w.buf, w.len);
	size_t pos = 0;
	for (;;) {
		uint16_t id = (uint16_t)(copy[pos] | copy[pos + 1] << 8);
		uint32_t flen;
		memcpy(&flen, copy + pos + 4, 4);
		if (id == 9)
			break;
		pos += 8 + flen;
	}
	copy[pos + 8 + 4] = 0x20;   /* u16 field 0 in record 9 now claims 32 bytes */
	assert_int_equal(state_reader_init(&r, copy, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "field 0 at offset 0 is 32 bytes long, past the end of its record");

	/* A stray byte after the last field is a truncated header. */
	uint8_t *longer = malloc(w.len + 3);
	assert_non_null(longer);
	memcpy(longer, w.buf, w.len);
	memset(longer + w.len, 0, 3);
	assert_int_equal(state_reader_init(&r, longer, w.len + 3, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "truncated field header");
	free(longer);
	free(copy);
	state_writer_free(&w);
}

static void test_duplicates_and_flags(void **state)
{
	struct state_writer w;
	struct state_reader r;
	struct error err = { 0 };

	state_writer_init(&w);
	state_put_u32(&w, 1, 1);
	state_put_u32(&w, 2, 2);
	state_put_u32(&w, 1, 3);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, WHAT ": field 1 appears twice");
	state_writer_free(&w);

	/* The same id at different levels is fine; twice in a nested one is not. */
	state_writer_init(&w);
	state_put_u32(&w, 1, 1);
	size_t t = state_begin(&w, 2);
	state_put_u32(&w, 1, 1);
	state_put_u32(&w, 2, 1);
	state_end(&w, t);
	t = state_begin(&w, 3);
	state_put_u32(&w, 1, 1);
	state_end(&w, t);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), 0);
	t = state_begin(&w, 4);
	state_put_u8(&w, 7, 1);
	state_put_u8(&w, 7, 1);
	state_end(&w, t);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "field 7 appears twice");
	state_writer_free(&w);

	/* Unknown flag bits. */
	state_writer_init(&w);
	state_put_u32(&w, 5, 1);
	w.buf[2] = 0x10;
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "field 5 has unknown flags 0x10");
	state_writer_free(&w);

	/* A RECORD flag on bytes that are no record. */
	state_writer_init(&w);
	state_put_u32(&w, 5, 0xffffffff);
	w.buf[2] = STATE_RECORD;
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "truncated field header");
	state_writer_free(&w);
}

static void nest(struct state_writer *w, unsigned levels)
{
	if (levels == 0) {
		state_put_u8(w, 1, 1);
		return;
	}
	size_t t = state_begin(w, (uint16_t)levels);
	nest(w, levels - 1);
	state_end(w, t);
}

static void test_depth_limit(void **state)
{
	struct state_writer w;
	struct state_reader r;
	struct error err = { 0 };
	state_writer_init(&w);
	nest(&w, STATE_MAX_DEPTH);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), 0);
	state_writer_free(&w);

	state_writer_init(&w);
	nest(&w, STATE_MAX_DEPTH + 1);
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), -EINVAL);
	expect_msg(&err, "more than 8 deep");
	state_writer_free(&w);
}

static void test_writer_edges(void **state)
{
	struct state_writer w;
	struct error err = { 0 };
	state_writer_init(&w);
	/* A token that is not one is ignored. */
	state_end(&w, SIZE_MAX);
	state_end(&w, 12345);
	assert_int_equal(w.len, 0);
	/* Growth past the initial capacity keeps everything. */
	for (unsigned i = 0; i < 1000; i++)
		state_put_u64(&w, (uint16_t)i, i * 3ull);
	assert_int_equal(state_writer_status(&w, &err), 0);
	struct state_reader r;
	assert_int_equal(state_reader_init(&r, w.buf, w.len, WHAT, NULL, 0, &err), 0);
	uint64_t v;
	assert_int_equal(state_get_u64(&r, 999, &v, &err), 0);
	assert_int_equal(v, 2997);
	/* Once failed, the writer ignores everything and says so. */
	w.failed = true;
	size_t len = w.len;
	state_put_u8(&w, 1, 1);
	assert_int_equal(state_begin(&w, 2), SIZE_MAX);
	assert_int_equal(w.len, len);
	assert_int_equal(state_writer_status(&w, &err), -ENOMEM);
	expect_msg(&err, "out of memory");
	state_writer_free(&w);
	/* The empty record. */
	assert_int_equal(state_reader_init(&r, NULL, 0, WHAT, NULL, 0, &err), 0);
	assert_false(state_has(&r, 0));
}

/* Random corruption of a valid record: whatever the reader accepts, every
 * getter stays inside the buffer (ASan checks). */
static void test_fuzz(void **state)
{
	struct state_writer w;
	write_sample(&w);
	uint32_t seed = 12345;
	uint8_t *copy = malloc(w.len);
	assert_non_null(copy);
	for (unsigned round = 0; round < 20000; round++) {
		memcpy(copy, w.buf, w.len);
		unsigned flips = 1 + round % 4;
		for (unsigned i = 0; i < flips; i++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % w.len;
			seed = seed * 1103515245u + 12345u;
			copy[at] = (uint8_t)(seed >> 16);
		}
		size_t len = round % 3 ? w.len : (seed >> 4) % (w.len + 1);
		struct error err = { 0 };
		(void)read_sample(copy, len, &err);
		struct state_reader r, sub;
		if (state_reader_init(&r, copy, len, WHAT, NULL, 0, &err))
			continue;
		for (uint16_t id = 0; id < 12; id++) {
			const void *blob;
			size_t blen;
			uint64_t v;
			(void)state_get_blob(&r, id, &blob, &blen, &err);
			(void)state_get_u64_or(&r, id, 0, &v, &err);
			if (state_get_record(&r, id, &sub, NULL, 0, &err) == 0)
				(void)state_get_u64_or(&sub, 3, 0, &v, &err);
		}
	}
	free(copy);
	state_writer_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_byte_layout),
		cmocka_unit_test(test_optional_defaults),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_wrong_width_and_type),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_duplicates_and_flags),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_writer_edges),
		cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
