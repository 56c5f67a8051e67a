/* test_pagecodec.c: the page codecs of src/migration/pagecodec.h: page
 * cache, page delta, zstd batches, cost model.
 *
 * Deltas are checked against the format written in pagecodec.h, byte by
 * byte where the expected encoding is short enough to spell out, and by
 * round trips and exact-budget checks on many generated pages otherwise.
 * Every malformed delta must be refused with a message saying what is
 * wrong, and leave the page exactly as it was; ASan and UBSan (make unit)
 * catch any access outside what was given, so buffers here are allocated
 * at their exact sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "migration/pagecodec.h"

#define PAGE PAGECODEC_PAGE_SIZE
#define MIB (1ull << 20)

static void expect_msg(const struct error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err->msg, needle);
}

/* xorshift64*: the same pages on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Exactly-sized heap copies, so that ASan sees any overrun. */
static uint8_t *dup_bytes(const void *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	assert_non_null(d);
	if (n)
		memcpy(d, p, n);
	return d;
}

/* ---- page delta: round trips ----------------------------------------------- */

/* Encodes with an ample budget, checks the result against the budget
 * boundary (exactly its length fits, one byte less does not), decodes it
 * onto a copy of old and checks it gives new. Returns the length. */
static size_t round_trip(const uint8_t *old, const uint8_t *new)
{
	size_t big = 3 * PAGE;
	uint8_t *out = malloc(big);
	assert_non_null(out);
	ssize_t n = delta_encode(old, new, out, big);
	assert_true(n >= 0);
	assert_true((size_t)n <= 2 * PAGE);

	uint8_t *exact = malloc(n ? (size_t)n : 1);
	assert_non_null(exact);
	assert_int_equal(delta_encode(old, new, exact, (size_t)n), n);
	assert_memory_equal(exact, out, (size_t)n);
	if (n > 0) {
		uint8_t *short_by_one = malloc((size_t)n - 1 ? (size_t)n - 1 : 1);
		assert_non_null(short_by_one);
		assert_int_equal(delta_encode(old, new, short_by_one, (size_t)n - 1), -1);
		free(short_by_one);
	}
	free(exact);

	uint8_t *page = dup_bytes(old, PAGE);
	uint8_t *in = dup_bytes(out, (size_t)n);
	struct error err = { 0 };
	if (delta_decode(page, in, (size_t)n, &err))
		fail_msg("decoding what the encoder made: %s", err.msg);
	assert_memory_equal(page, new, PAGE);
	free(in);
	free(page);
	free(out);
	return (size_t)n;
}

static void test_delta_identical(void **state)
{
	uint8_t *old = malloc(PAGE), *new = malloc(PAGE);
	fill_random(old, PAGE);
	memcpy(new, old, PAGE);
	assert_int_equal(round_trip(old, new), 0);
	/* Nothing to say needs no room at all. */
	assert_int_equal(delta_encode(old, new, NULL, 0), 0);
	memset(old, 0, PAGE);
	memset(new, 0, PAGE);
	assert_int_equal(round_trip(old, new), 0);
	free(old);
	free(new);
}

/* One changed byte, spelled out: skip, copy 1, the byte. */
static void test_delta_one_byte(void **state)
{
	static const struct {
		size_t off;
		uint8_t enc[5];
		size_t len;
	} cases[] = {
		{ 0, { 0x00, 0x01, 0xa5 }, 3 },
		{ 1, { 0x01, 0x01, 0xa5 }, 3 },
		{ 127, { 0x7f, 0x01, 0xa5 }, 3 },
		{ 128, { 0x80, 0x01, 0x01, 0xa5 }, 4 },
		{ 2048, { 0x80, 0x10, 0x01, 0xa5 }, 4 },
		{ 4094, { 0xfe, 0x1f, 0x01, 0xa5 }, 4 },
		{ 4095, { 0xff, 0x1f, 0x01, 0xa5 }, 4 },
	};
	uint8_t *old = malloc(PAGE), *new = malloc(PAGE);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fill_random(old, PAGE);
		memcpy(new, old, PAGE);
		old[cases[i].off] = 0x5a;
		new[cases[i].off] = 0xa5;
		uint8_t out[16];
		ssize_t n = delta_encode(old, new, out, sizeof(out));
		assert_int_equal(n, cases[i].len);
		assert_memory_equal(out, cases[i].enc, cases[i].len);
		assert_int_equal(round_trip(old, new), cases[i].len);
	}
	free(old);
	free(new);
}

/* Unchanged gaps of 1 and 2 bytes are copied; 3 make a new pair. */
static void test_delta_gaps(void **state)
{
	uint8_t *old = calloc(1, PAGE), *new = calloc(1, PAGE);
	uint8_t out[32];

	new[10] = 1, new[12] = 2; /* gap of 1 */
	static const uint8_t gap1[] = { 10, 3, 1, 0, 2 };
	assert_int_equal(delta_encode(old, new, out, sizeof(out)), sizeof(gap1));
	assert_memory_equal(out, gap1, sizeof(gap1));
	round_trip(old, new);

	memset(new, 0, PAGE);
	new[10] = 1, new[13] = 2; /* gap of 2 */
	static const uint8_t gap2[] = { 10, 4, 1, 0, 0, 2 };
	assert_int_equal(delta_encode(old, new, out, sizeof(out)), sizeof(gap2));
	assert_memory_equal(out, gap2, sizeof(gap2));
	round_trip(old, new);

	memset(new, 0, PAGE);
	new[10] = 1, new[14] = 2; /* gap of 3 */
	static const uint8_t gap3[] = { 10, 1, 1, 3, 1, 2 };
	assert_int_equal(delta_encode(old, new, out, sizeof(out)), sizeof(gap3));
	assert_memory_equal(out, gap3, sizeof(gap3));
	round_trip(old, new);

	/* Unchanged bytes at the very end are never sent, even 1 or 2. */
	memset(new, 0, PAGE);
	new[4093] = 7;
	static const uint8_t tail[] = { 0xfd, 0x1f, 1, 7 };
	assert_int_equal(delta_encode(old, new, out, sizeof(out)), sizeof(tail));
	assert_memory_equal(out, tail, sizeof(tail));
	round_trip(old, new);
	free(old);
	free(new);
}

static void test_delta_every_8th(void **state)
{
	uint8_t *old = malloc(PAGE), *new = malloc(PAGE);
	fill_random(old, PAGE);
	memcpy(new, old, PAGE);
	for (size_t i = 0; i < PAGE; i += 8)
		new[i] ^= 0xff;
	/* 512 pairs of 3 bytes: skip (0, then 7), copy 1, the byte. */
	assert_int_equal(round_trip(old, new), 512 * 3);
	/* The same at the other end of each word. */
	memcpy(new, old, PAGE);
	for (size_t i = 7; i < PAGE; i += 8)
		new[i] ^= 0x01;
	assert_int_equal(round_trip(old, new), 512 * 3);
	free(old);
	free(new);
}

static void test_delta_alternating(void **state)
{
	uint8_t *old = malloc(PAGE), *new = malloc(PAGE);
	fill_random(old, PAGE);
	/* Every other byte: one copy of everything but the unchanged last
	 * byte, 0 | 4095 (2 bytes) | 4095 bytes. */
	memcpy(new, old, PAGE);
	for (size_t i = 0; i < PAGE; i += 2)
		new[i] ^= 0x80;
	assert_int_equal(round_trip(old, new), 1 + 2 + 4095);
	/* Blocks of n changed then n unchanged bytes, for all small n and
	 * some that cross word and length-encoding boundaries. */
	static const size_t widths[] = { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64, 127, 128,
					 129, 500, 2048 };
	for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
		size_t n = widths[w];
		memcpy(new, old, PAGE);
		for (size_t i = 0; i < PAGE; i++)
			if ((i / n) % 2 == 0)
				new[i] = (uint8_t)~old[i];
		round_trip(old, new);
		/* And the other phase. */
		memcpy(new, old, PAGE);
		for (size_t i = 0; i < PAGE; i++)
			if ((i / n) % 2 == 1)
				new[i] = (uint8_t)~old[i];
		round_trip(old, new);
	}
	free(old);
	free(new);
}

/* A wholly new page does not pay: the encoder gives up within the budget
 * the caller sets, and with an ample one still round-trips. */
static void test_delta_random_pages(void **state)
{
	uint8_t *old = malloc(PAGE), *new = malloc(PAGE), *out = malloc(PAGE);
	for (int i = 0; i < 16; i++) {
		fill_random(old, PAGE);
		fill_random(new, PAGE);
		assert_int_equal(delta_encode(old, new, out, PAGE - 16), -1);
		assert_int_equal(delta_encode(old, new, out, PAGE), -1);
		assert_int_equal(delta_encode(old, new, out, 0), -1);
		size_t n = round_trip(old, new);
		assert_true(n > PAGE && n <= PAGE + 3);
	}
	free(old);
	free(new);
	free(out);
}

/* Sparse and clustered random changes, for the budget arithmetic: each
 * one's exact length must fit and one byte less must not (round_trip). */
static void test_delta_generated(void **state)
{
	uint8_t *old = malloc(PAGE), *new = malloc(PAGE);
	for (int iter = 0; iter < 3000; iter++) {
		fill_random(old, PAGE);
		memcpy(new, old, PAGE);
		unsigned runs = (unsigned)(rnd() % 64);
		for (unsigned r = 0; r < runs; r++) {
			size_t at = rnd() % PAGE, len = 1 + rnd() % (iter % 3 ? 8 : 300);
			for (size_t i = at; i < at + len && i < PAGE; i++)
				/* Sometimes leave a byte as it was inside a run. */
				new[i] = rnd() % 5 ? (uint8_t)(old[i] + 1 + rnd() % 255) : old[i];
		}
		round_trip(old, new);
	}
	free(old);
	free(new);
}

/* ---- page delta: refusals ------------------------------------------------- */

/* Decodes enc onto a random page and expects a refusal that mentions
 * needle and leaves the page as it was. */
static void refuse(const uint8_t *enc, size_t len, const char *needle)
{
	uint8_t *page = malloc(PAGE), *before = malloc(PAGE);
	fill_random(page, PAGE);
	memcpy(before, page, PAGE);
	uint8_t *in = dup_bytes(enc, len);
	struct error err = { 0 };
	int rc = delta_decode(page, in, len, &err);
	if (rc == 0)
		fail_msg("a delta that should fail with \"%s\" was accepted", needle);
	assert_int_equal(rc, -EPROTO);
	assert_int_equal(err.code, EPROTO);
	expect_msg(&err, "page delta");
	expect_msg(&err, needle);
	assert_memory_equal(page, before, PAGE);
	free(in);
	free(page);
	free(before);
}

/* A valid prefix, then enc: the prefix must not be applied either. */
static void refuse_after_prefix(const uint8_t *enc, size_t len, const char *needle)
{
	static const uint8_t prefix[] = { 0x00, 0x02, 0xde, 0xad, 0x05, 0x01, 0xef };
	uint8_t *both = malloc(sizeof(prefix) + len);
	memcpy(both, prefix, sizeof(prefix));
	memcpy(both + sizeof(prefix), enc, len);
	refuse(both, sizeof(prefix) + len, needle);
	free(both);
}

static void test_delta_refusals(void **state)
{
	/* Lengths. */
	refuse((const uint8_t[]){ 0x80 }, 1, "unchanged-run length at byte 0 (page offset 0) is cut short");
	refuse((const uint8_t[]){ 0x05 }, 1, "changed-run length at byte 1 (page offset 5) is missing");
	refuse((const uint8_t[]){ 0x05, 0x81 }, 2, "changed-run length at byte 1 (page offset 5) is cut short");
	refuse((const uint8_t[]){ 0x80, 0x80, 0x01 }, 3, "longer than the 2 bytes");
	refuse((const uint8_t[]){ 0x00, 0xff, 0xff, 0x7f }, 4, "longer than the 2 bytes");
	refuse((const uint8_t[]){ 0x81, 0x00, 0x01, 0xaa }, 4, "not in its shortest form");
	refuse((const uint8_t[]){ 0x00, 0x81, 0x00, 0xaa }, 4, "not in its shortest form");
	/* Runs past the page. */
	refuse((const uint8_t[]){ 0x81, 0x20, 0x01, 0xaa }, 4,
	       "unchanged run of 4097 bytes at page offset 0 runs past the end");
	refuse((const uint8_t[]){ 0xff, 0x7f, 0x01, 0xaa }, 4,
	       "unchanged run of 16383 bytes at page offset 0 runs past the end");
	refuse((const uint8_t[]){ 0x80, 0x20, 0x01, 0xaa }, 4,
	       "changed run of 1 bytes at page offset 4096 runs past the end");
	refuse((const uint8_t[]){ 0xff, 0x1f, 0x02, 0xaa, 0xbb }, 5,
	       "changed run of 2 bytes at page offset 4095 runs past the end");
	/* Forbidden empty runs. */
	refuse((const uint8_t[]){ 0x00, 0x00 }, 2, "empty changed run at byte 1 (page offset 0)");
	refuse((const uint8_t[]){ 0x04, 0x00, 0x01, 0xaa }, 4, "empty changed run");
	refuse((const uint8_t[]){ 0x00, 0x01, 0xaa, 0x00, 0x01, 0xbb }, 6,
	       "empty unchanged run at byte 3 (page offset 1)");
	/* Cut short. */
	refuse((const uint8_t[]){ 0x00, 0x05, 1, 2, 3 }, 5,
	       "changed run of 5 bytes at byte 2 (page offset 0) is cut short: 3 bytes left");
	refuse((const uint8_t[]){ 0x10, 0x01 }, 2, "is cut short: 0 bytes left");
	/* Trailing bytes after a delta that reached the end of the page. */
	uint8_t *full = malloc(3 + PAGE + 2);
	full[0] = 0x00, full[1] = 0x80, full[2] = 0x20; /* skip 0, copy 4096 */
	fill_random(full + 3, PAGE + 2);
	refuse(full, 3 + PAGE + 1, "1 trailing bytes at byte 4099, after the end of the page");
	refuse(full, 3 + PAGE + 2, "2 trailing bytes");
	refuse(full, 3 + PAGE - 1, "cut short: 4095 bytes left");
	free(full);
	uint8_t end_pair[] = { 0xfe, 0x1f, 0x02, 1, 2, 0x01 };
	refuse(end_pair, sizeof(end_pair), "1 trailing bytes at byte 5");

	/* The same after a valid prefix (skip 0 copy 2, skip 5 copy 1; page
	 * offset 8 after it): nothing of the prefix may be applied. */
	refuse_after_prefix((const uint8_t[]){ 0x80 }, 1, "byte 7 (page offset 8) is cut short");
	refuse_after_prefix((const uint8_t[]){ 0x00, 0x01, 0xaa }, 3, "empty unchanged run");
	refuse_after_prefix((const uint8_t[]){ 0x01, 0x00 }, 2, "empty changed run");
	refuse_after_prefix((const uint8_t[]){ 0xf8, 0x1f, 0x01, 0xaa }, 4,
			    "changed run of 1 bytes at page offset 4096");
	refuse_after_prefix((const uint8_t[]){ 0x01, 0x03, 0xaa }, 3, "cut short: 1 bytes left");
	refuse_after_prefix((const uint8_t[]){ 0x01 }, 1, "is missing");
}

/* The empty delta and a delta covering the whole page are fine. */
static void test_delta_decode_edges(void **state)
{
	uint8_t *page = malloc(PAGE), *before = malloc(PAGE);
	fill_random(page, PAGE);
	memcpy(before, page, PAGE);
	struct error err = { 0 };
	assert_int_equal(delta_decode(page, NULL, 0, &err), 0);
	assert_memory_equal(page, before, PAGE);

	uint8_t *full = malloc(3 + PAGE);
	full[0] = 0x00, full[1] = 0x80, full[2] = 0x20;
	fill_random(full + 3, PAGE);
	assert_int_equal(delta_decode(page, full, 3 + PAGE, &err), 0);
	assert_memory_equal(page, full + 3, PAGE);
	free(full);
	free(page);
	free(before);
}

/* Random input and mutations of valid deltas: each is accepted or refused
 * with the page untouched, and nothing is read past the input. */
static void test_delta_decode_garbage(void **state)
{
	uint8_t *page = malloc(PAGE), *before = malloc(PAGE), *old = malloc(PAGE),
		*new = malloc(PAGE), *enc = malloc(2 * PAGE);
	struct error err = { 0 };
	unsigned refused = 0;
	for (int iter = 0; iter < 20000; iter++) {
		size_t len;
		if (iter % 2) {
			len = rnd() % 64;
			fill_random(enc, len);
		} else {
			fill_random(old, PAGE);
			memcpy(new, old, PAGE);
			for (int k = 0; k < 8; k++)
				new[rnd() % PAGE] ^= (uint8_t)(1 + rnd() % 255);
			ssize_t n = delta_encode(old, new, enc, 2 * PAGE);
			assert_true(n > 0);
			len = (size_t)n;
			switch (rnd() % 3) {
			case 0: enc[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8)); break;
			case 1: len = rnd() % len; break;
			default: enc[rnd() % len] = (uint8_t)rnd(); break;
			}
		}
		fill_random(page, PAGE);
		memcpy(before, page, PAGE);
		uint8_t *in = dup_bytes(enc, len);
		if (delta_decode(page, in, len, &err)) {
			assert_memory_equal(page, before, PAGE);
			refused++;
		}
		free(in);
	}
	assert_true(refused > 1000);
	free(page);
	free(before);
	free(old);
	free(new);
	free(enc);
}

/* ---- page cache ------------------------------------------------------------ */

static void test_cache_create(void **state)
{
	struct error err = { 0 };
	assert_null(page_cache_create(0, &err));
	expect_msg(&err, "a page cache of 0 bytes holds no 4096-byte page");
	assert_null(page_cache_create(PAGE - 1, &err));
	expect_msg(&err, "4095 bytes");

	struct page_cache *c = page_cache_create(64 * MIB, &err);
	assert_non_null(c);
	assert_int_equal(page_cache_capacity(c), 16384);
	page_cache_destroy(c);
	/* Rounded down to a power of two: never over the budget. */
	c = page_cache_create(5 * PAGE + 100, &err);
	assert_non_null(c);
	assert_int_equal(page_cache_capacity(c), 4);
	page_cache_destroy(c);
	c = page_cache_create(PAGE, &err);
	assert_non_null(c);
	assert_int_equal(page_cache_capacity(c), 1);
	page_cache_destroy(c);
	page_cache_destroy(NULL);
}

static void test_cache_lookup_evict(void **state)
{
	struct error err = { 0 };
	struct page_cache *c = page_cache_create(8 * PAGE, &err);
	assert_non_null(c);
	size_t cap = page_cache_capacity(c);
	assert_int_equal(cap, 8);
	uint8_t *a = malloc(PAGE), *b = malloc(PAGE), *d = malloc(PAGE);
	fill_random(a, PAGE);
	fill_random(b, PAGE);
	fill_random(d, PAGE);

	/* Empty: every lookup misses, pfn 0 included (no false tag match). */
	assert_null(page_cache_lookup(c, 0));
	assert_null(page_cache_lookup(c, 5));
	assert_null(page_cache_lookup(c, UINT64_MAX));

	page_cache_insert(c, 5, a);
	const uint8_t *p = page_cache_lookup(c, 5);
	assert_non_null(p);
	assert_ptr_not_equal(p, a);
	assert_memory_equal(p, a, PAGE);
	/* The cache holds a copy, not the caller's buffer. */
	a[0] ^= 1;
	assert_int_not_equal(page_cache_lookup(c, 5)[0], a[0]);
	a[0] ^= 1;

	/* All of the first cap pages fit together. */
	for (uint64_t pfn = 0; pfn < cap; pfn++)
		if (pfn != 5)
			page_cache_insert(c, pfn, d);
	assert_memory_equal(page_cache_lookup(c, 5), a, PAGE);
	for (uint64_t pfn = 0; pfn < cap; pfn++)
		assert_non_null(page_cache_lookup(c, pfn));
	assert_int_equal(page_cache_stats(c).evictions, 0);

	/* A page with the same slot evicts it. */
	page_cache_insert(c, 5 + cap, b);
	assert_null(page_cache_lookup(c, 5));
	assert_memory_equal(page_cache_lookup(c, 5 + cap), b, PAGE);
	assert_int_equal(page_cache_stats(c).evictions, 1);
	/* Rewriting a page is not an eviction, and may pass back the
	 * pointer lookup gave. */
	page_cache_insert(c, 5 + cap, a);
	assert_memory_equal(page_cache_lookup(c, 5 + cap), a, PAGE);
	page_cache_insert(c, 5 + cap, page_cache_lookup(c, 5 + cap));
	assert_memory_equal(page_cache_lookup(c, 5 + cap), a, PAGE);
	assert_int_equal(page_cache_stats(c).evictions, 1);
	/* The largest page number has a slot like any other. */
	page_cache_insert(c, UINT64_MAX, b);
	assert_memory_equal(page_cache_lookup(c, UINT64_MAX), b, PAGE);
	assert_null(page_cache_lookup(c, 7));

	/* Drop forgets only the page named. */
	page_cache_drop(c, 6 + cap);
	assert_non_null(page_cache_lookup(c, 6));
	page_cache_drop(c, 6);
	assert_null(page_cache_lookup(c, 6));
	assert_non_null(page_cache_lookup(c, 4));

	struct page_cache_stats st = page_cache_stats(c);
	assert_int_equal(st.inserts, cap + 4);
	assert_true(st.hits > 0 && st.misses > 0);
	page_cache_destroy(c);
	free(a);
	free(b);
	free(d);
}

/* The sender's loop as pagecodec.h prescribes it: the receiver's copy
 * follows along through deltas and raw pages alike. */
static void test_cache_with_delta(void **state)
{
	struct error err = { 0 };
	struct page_cache *c = page_cache_create(4 * PAGE, &err);
	assert_non_null(c);
	enum { PAGES = 8 };
	uint8_t *guest = malloc(PAGES * PAGE), *dest = malloc(PAGES * PAGE);
	uint8_t *stable = malloc(PAGE), *out = malloc(PAGE);
	fill_random(guest, PAGES * PAGE);
	memset(dest, 0, PAGES * PAGE);
	unsigned deltas = 0;
	for (int pass = 0; pass < 20; pass++) {
		for (uint64_t pfn = 0; pfn < PAGES; pfn++) {
			memcpy(stable, guest + pfn * PAGE, PAGE);
			const uint8_t *old = page_cache_lookup(c, pfn);
			ssize_t n = old ? delta_encode(old, stable, out, PAGE / 2) : -1;
			if (n >= 0) {
				if (delta_decode(dest + pfn * PAGE, out, (size_t)n, &err))
					fail_msg("pass %d page %u: %s", pass, (unsigned)pfn, err.msg);
				deltas++;
			} else {
				memcpy(dest + pfn * PAGE, stable, PAGE);
			}
			page_cache_insert(c, pfn, stable);
		}
		assert_memory_equal(dest, guest, PAGES * PAGE);
		/* The guest dirties a few bytes of some pages. */
		for (int k = 0; k < 30; k++)
			guest[rnd() % (PAGES * PAGE)]++;
	}
	/* Eight pages in four slots: every lookup is a miss. */
	assert_int_equal(deltas, 0);
	page_cache_destroy(c);

	/* With room for all of them, every page after the first pass goes
	 * as a delta. */
	c = page_cache_create(PAGES * PAGE, &err);
	assert_non_null(c);
	for (int pass = 0; pass < 20; pass++) {
		for (uint64_t pfn = 0; pfn < PAGES; pfn++) {
			memcpy(stable, guest + pfn * PAGE, PAGE);
			const uint8_t *old = page_cache_lookup(c, pfn);
			ssize_t n = old ? delta_encode(old, stable, out, PAGE / 2) : -1;
			if (n >= 0) {
				if (delta_decode(dest + pfn * PAGE, out, (size_t)n, &err))
					fail_msg("pass %d page %u: %s", pass, (unsigned)pfn, err.msg);
				deltas++;
			} else {
				memcpy(dest + pfn * PAGE, stable, PAGE);
			}
			page_cache_insert(c, pfn, stable);
		}
		assert_memory_equal(dest, guest, PAGES * PAGE);
		for (int k = 0; k < 30; k++)
			guest[rnd() % (PAGES * PAGE)]++;
	}
	assert_int_equal(deltas, 19 * PAGES);
	page_cache_destroy(c);
	free(guest);
	free(dest);
	free(stable);
	free(out);
}

/* ---- zstd batches ---------------------------------------------------------- */

enum { BATCH_PAGES = 64, BATCH = BATCH_PAGES * PAGE };

static void fill_text(uint8_t *p, size_t n)
{
	static const char *const words[] = {
		"the", "guest", "page", "migration", "kernel", "0x7fff0000", "memory", "struct",
		"return", "if", "else", "{", "}", ";", "\n", "\t", "int", "uint64_t", "error",
	};
	size_t i = 0;
	while (i < n) {
		const char *w = words[rnd() % (sizeof(words) / sizeof(words[0]))];
		for (size_t k = 0; w[k] && i < n; k++)
			p[i++] = (uint8_t)w[k];
		if (i < n)
			p[i++] = ' ';
	}
}

/* Compresses with an ample budget, decompresses into an exactly-sized
 * buffer, returns the frame's size. */
static size_t z_round_trip(struct zctx *zc, struct zdctx *zd, const uint8_t *data, size_t len)
{
	size_t bound = zpages_bound(len);
	uint8_t *frame = malloc(bound);
	ssize_t n = zpages_compress(zc, data, len, frame, bound);
	assert_true(n > 0);
	uint8_t *in = dup_bytes(frame, (size_t)n), *out = malloc(len);
	struct error err = { 0 };
	ssize_t r = zpages_decompress(zd, in, (size_t)n, out, len, len, &err);
	if (r < 0)
		fail_msg("decompressing a fresh frame: %s", err.msg);
	assert_int_equal(r, len);
	assert_memory_equal(out, data, len);
	free(in);
	free(out);
	free(frame);
	return (size_t)n;
}

static void test_zstd_round_trip(void **state)
{
	struct error err = { 0 };
	struct zctx *zc = zctx_create(0, &err);
	struct zdctx *zd = zdctx_create(&err);
	assert_non_null(zc);
	assert_non_null(zd);
	uint8_t *data = malloc(BATCH);

	memset(data, 0, BATCH);
	size_t zero = z_round_trip(zc, zd, data, BATCH);
	assert_true(zero < 100);

	fill_text(data, BATCH);
	size_t text = z_round_trip(zc, zd, data, BATCH);
	assert_true(text < BATCH / 2);

	/* Random pages do not shrink: a budget below the input says so. */
	fill_random(data, BATCH);
	uint8_t *frame = malloc(BATCH);
	assert_int_equal(zpages_compress(zc, data, BATCH, frame, BATCH - 1), -1);
	assert_true(z_round_trip(zc, zd, data, BATCH) > BATCH);
	/* Too small a budget for anything at all. */
	memset(data, 0, BATCH);
	assert_int_equal(zpages_compress(zc, data, BATCH, frame, 4), -1);

	/* One page, and the contexts reused across levels. */
	fill_text(data, PAGE);
	z_round_trip(zc, zd, data, PAGE);
	for (int level = -5; level <= 5; level++) {
		assert_int_equal(zctx_set_level(zc, level, &err), 0);
		fill_text(data, BATCH);
		z_round_trip(zc, zd, data, BATCH);
	}
	free(frame);
	free(data);
	zctx_destroy(zc);
	zdctx_destroy(zd);
}

static void test_zstd_levels(void **state)
{
	struct error err = { 0 };
	assert_null(zctx_create(ZSTD_maxCLevel() + 1, &err));
	expect_msg(&err, "zstd level");
	assert_int_equal(err.code, EINVAL);
	assert_null(zctx_create(ZSTD_minCLevel() - 1, &err));
	struct zctx *zc = zctx_create(-7, &err);
	assert_non_null(zc);
	assert_int_equal(zctx_set_level(zc, 1000, &err), -EINVAL);
	expect_msg(&err, "zstd level 1000 is outside");
	zctx_destroy(zc);
	zctx_destroy(NULL);
	zdctx_destroy(NULL);
}

/* Decompresses in into an exactly-sized buffer and expects a refusal. */
static void z_refuse(struct zdctx *zd, const uint8_t *frame, size_t len, size_t cap, size_t expect,
		     int code, const char *needle)
{
	uint8_t *in = dup_bytes(frame, len), *out = malloc(cap ? cap : 1);
	struct error err = { 0 };
	ssize_t r = zpages_decompress(zd, in, len, out, cap, expect, &err);
	if (r >= 0)
		fail_msg("a frame that should fail with \"%s\" was accepted", needle);
	assert_int_equal(r, -code);
	assert_int_equal(err.code, code);
	expect_msg(&err, "zstd batch");
	expect_msg(&err, needle);
	free(in);
	free(out);
}

static void test_zstd_refusals(void **state)
{
	struct error err = { 0 };
	struct zctx *zc = zctx_create(0, &err);
	struct zdctx *zd = zdctx_create(&err);
	uint8_t *data = malloc(BATCH), *frame = malloc(zpages_bound(BATCH) + 64);
	fill_text(data, BATCH);
	ssize_t sn = zpages_compress(zc, data, BATCH, frame, zpages_bound(BATCH));
	assert_true(sn > 0);
	size_t n = (size_t)sn;

	/* Sizes. */
	z_refuse(zd, frame, n, BATCH - PAGE, BATCH, EINVAL,
		 "262144 bytes expected, but the buffer holds only 258048");
	z_refuse(zd, frame, n, BATCH, BATCH - PAGE, EPROTO,
		 "the frame holds 262144 bytes, the records call for 258048");
	z_refuse(zd, frame, n, BATCH + PAGE, BATCH + PAGE, EPROTO,
		 "the frame holds 262144 bytes, the records call for 266240");

	/* Not a frame, cut short everywhere, trailing bytes, two frames. */
	z_refuse(zd, (const uint8_t *)"hello, world", 12, BATCH, BATCH, EPROTO,
		 "do not start with a zstd frame header");
	z_refuse(zd, frame, 0, BATCH, BATCH, EPROTO, "0 bytes that do not start");
	for (size_t cut = 0; cut < n; cut += (cut < 64 ? 1 : 97)) {
		uint8_t *in = dup_bytes(frame, cut), *out = malloc(BATCH);
		assert_true(zpages_decompress(zd, in, cut, out, BATCH, BATCH, &err) < 0);
		expect_msg(&err, "zstd batch");
		free(in);
		free(out);
	}
	frame[n] = 0x42;
	z_refuse(zd, frame, n + 1, BATCH, BATCH, EPROTO, "1 bytes follow the");
	memcpy(frame + n, frame, n);
	z_refuse(zd, frame, 2 * n, BATCH, BATCH, EPROTO, "bytes follow the");

	/* A frame that does not declare its size. */
	ZSTD_CCtx *raw = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(raw, ZSTD_c_contentSizeFlag, 0);
	size_t un = ZSTD_compress2(raw, frame, zpages_bound(BATCH), data, BATCH);
	assert_false(ZSTD_isError(un));
	z_refuse(zd, frame, un, BATCH, BATCH, EPROTO, "does not declare its size");
	ZSTD_freeCCtx(raw);

	/* A frame whose header lies about its size: it decodes to more (or
	 * less) than it declares, and the buffer of the declared size must
	 * not be overrun. Built by compressing a page less with the size
	 * field of a full batch. */
	raw = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(raw, ZSTD_c_contentSizeFlag, 1);
	size_t small = ZSTD_compress2(raw, frame, zpages_bound(BATCH), data, BATCH - PAGE);
	assert_false(ZSTD_isError(small));
	assert_int_equal(ZSTD_getFrameContentSize(frame, small), BATCH - PAGE);
	/* Frame header: magic (4), descriptor (1), [window (1)], size field
	 * of 1, 2, 4 or 8 bytes, by the descriptor's top two bits. Here 4. */
	uint8_t fhd = frame[4];
	assert_int_equal(fhd >> 6, 2);
	size_t at = 4 + 1 + ((fhd & 0x20) ? 0 : 1);
	uint32_t lie = BATCH;
	memcpy(frame + at, &lie, 4);
	z_refuse(zd, frame, small, BATCH, BATCH, EPROTO, "frame is corrupt");
	lie = BATCH - 2 * PAGE;
	memcpy(frame + at, &lie, 4);
	z_refuse(zd, frame, small, BATCH - 2 * PAGE, BATCH - 2 * PAGE, EPROTO, "corrupt");
	ZSTD_freeCCtx(raw);

	/* Flipped bytes past the header: refused, or (zstd has no checksum
	 * here; the section's covers it) decoded to exactly the size. Never
	 * written past the buffer, which ASan checks. */
	sn = zpages_compress(zc, data, BATCH, frame, zpages_bound(BATCH));
	n = (size_t)sn;
	unsigned refused = 0;
	for (size_t i = 6; i < n; i += 1 + n / 300) {
		uint8_t *in = dup_bytes(frame, n), *out = malloc(BATCH);
		in[i] ^= 0xff;
		ssize_t r = zpages_decompress(zd, in, n, out, BATCH, BATCH, &err);
		if (r < 0) {
			expect_msg(&err, "zstd batch");
			refused++;
		} else {
			assert_int_equal(r, BATCH);
		}
		free(in);
		free(out);
	}
	assert_true(refused > 0);
	/* And the context is still good after all that. */
	z_round_trip(zc, zd, data, BATCH);

	free(data);
	free(frame);
	zctx_destroy(zc);
	zdctx_destroy(zd);
}

/* ---- cost model ------------------------------------------------------------ */

static void test_cost_model(void **state)
{
	struct codec_meter m = { 0 };
	/* Nothing measured: try it. */
	assert_true(codec_pays_off(&m, 100 * MIB));

	/* 1 MB halved in 1 ms: worth it below 500 MB/s. */
	codec_meter_add(&m, 1000000, 500000, 1000000);
	assert_true(codec_pays_off(&m, 100000000));
	assert_true(codec_pays_off(&m, 499999999));
	assert_false(codec_pays_off(&m, 500000000)); /* a tie is not a gain */
	assert_false(codec_pays_off(&m, 1000000000));
	/* Unknown bandwidth: taken as fast, raw until the link is measured. */
	assert_false(codec_pays_off(&m, 0));

	/* Adding samples accumulates; decay keeps the ratios. */
	codec_meter_add(&m, 1000000, 500000, 1000000);
	assert_int_equal(m.bytes_in, 2000000);
	assert_int_equal(m.ns, 2000000);
	codec_meter_decay(&m);
	assert_int_equal(m.bytes_in, 1000000);
	assert_int_equal(m.bytes_out, 500000);
	assert_int_equal(m.ns, 1000000);
	assert_true(codec_pays_off(&m, 499999999));
	assert_false(codec_pays_off(&m, 500000000));

	/* A codec that does not shrink never pays, however fast. */
	struct codec_meter grow = { .bytes_in = 4096, .bytes_out = 4096, .ns = 0 };
	assert_false(codec_pays_off(&grow, 0));
	assert_false(codec_pays_off(&grow, 1));
	grow.bytes_out = 5000;
	assert_false(codec_pays_off(&grow, 0));

	/* Free and shrinking always pays. */
	struct codec_meter free_ = { .bytes_in = 4096, .bytes_out = 10, .ns = 0 };
	assert_true(codec_pays_off(&free_, UINT64_MAX));

	/* Extreme counts neither overflow nor flip the answer. */
	struct codec_meter huge = { .bytes_in = UINT64_MAX, .bytes_out = 0, .ns = UINT64_MAX };
	assert_false(codec_pays_off(&huge, UINT64_MAX));
	assert_true(codec_pays_off(&huge, 1));
	huge.ns = 1;
	assert_true(codec_pays_off(&huge, UINT64_MAX));

	uint64_t t0 = codec_clock_ns(), t1 = codec_clock_ns();
	assert_true(t1 >= t0 && t0 > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delta_identical),
		cmocka_unit_test(test_delta_one_byte),
		cmocka_unit_test(test_delta_gaps),
		cmocka_unit_test(test_delta_every_8th),
		cmocka_unit_test(test_delta_alternating),
		cmocka_unit_test(test_delta_random_pages),
		cmocka_unit_test(test_delta_generated),
		cmocka_unit_test(test_delta_refusals),
		cmocka_unit_test(test_delta_decode_edges),
		cmocka_unit_test(test_delta_decode_garbage),
		cmocka_unit_test(test_cache_create),
		cmocka_unit_test(test_cache_lookup_evict),
		cmocka_unit_test(test_cache_with_delta),
		cmocka_unit_test(test_zstd_round_trip),
		cmocka_unit_test(test_zstd_levels),
		cmocka_unit_test(test_zstd_refusals),
		cmocka_unit_test(test_cost_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
