/* pagecodec.h: optional encodings of guest pages for the migration stream,
 * and the bookkeeping that says when they are worth their CPU time.
 *
 * Two independent encodings, either of which a RAM section may carry
 * instead of a page's raw 4096 bytes (docs/migration-format.md: the delta
 * is a RAM record with flag 0x4; tern compresses whole sections, flag 0x1
 * in the section header, rather than batches within a RAM section):
 *
 * 1. Page delta (XBZRLE-like), against the copy of the same page that the
 *    sender sent last and the receiver therefore already holds in its RAM.
 *
 *        delta := pair*
 *        pair  := uleb128 skip | uleb128 copy | copy bytes
 *
 *    Starting at page offset 0, each pair leaves `skip` bytes of the page as
 *    they are, then overwrites the next `copy` bytes with the bytes that
 *    follow. Bytes after the last pair are unchanged, so the empty delta
 *    means "identical". The copied bytes are the new contents, not an XOR:
 *    applying a delta twice is harmless, and the receiver needs no old
 *    copy beyond its own RAM. uleb128 is the usual little-endian base-128
 *    varint (7 bits per byte, high bit = more follows).
 *
 *    A decoder refuses a delta that breaks any of these rules, which leave
 *    no padding and no two ways to frame the same runs:
 *      - a length is at most 2 bytes (4096 needs 13 bits) and minimal: no
 *        final 0x00 byte after a continuation;
 *      - skip may be 0 only in the first pair (elsewhere two copies would
 *        touch and must be one);
 *      - copy is at least 1 (a pair without one is padding);
 *      - skip + copy never runs past the page's 4096 bytes;
 *      - no byte follows the pair that reaches the end of the page, and
 *        the input never ends inside a length or a copy.
 *    A copy may include bytes equal to the old ones, which the decoder
 *    cannot see and does not mind: the encoder absorbs unchanged gaps of 1
 *    or 2 bytes into a copy, since a pair boundary costs at least 2 bytes.
 *    The encoder gives up (and the sender sends the raw page) as soon as
 *    the delta would exceed the caller's budget. The receiver must hold
 *    exactly what was sent last: no delta once the destination's guest may
 *    have run (postcopy).
 *
 * 2. zstd batch: the contents of n pages, concatenated in the order of
 *    their records, compressed as one zstd frame (RFC 8878) that declares
 *    its content size, without dictionary or frame checksum (the section's
 *    XXH3 already covers it). The receiver knows n from the records, so it
 *    refuses a frame whose declared or actual size is not n * 4096 bytes,
 *    a second frame or trailing bytes after it.
 *
 * Invariant the sender must keep for deltas: the page cache holds, for
 * each page it has an entry for, exactly the bytes the receiver holds.
 * The guest keeps writing while a page is sent, so copy the page once
 * into a stable buffer, encode from that buffer, send that buffer when the
 * delta does not pay, and insert that same buffer into the cache. A page
 * sent any other way (ZERO, a zstd batch) must be inserted too, or dropped.
 *
 * Nothing here is thread-safe: one sender thread owns a cache and a zctx,
 * one receiver thread a zdctx. */
#ifndef TERN_MIGRATION_PAGECODEC_H
#define TERN_MIGRATION_PAGECODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

#define PAGECODEC_PAGE_SIZE 4096u

/* ---- page cache (sender) ----------------------------------------------- */

/* Direct-mapped by page number: a lookup is one compare, and a migration
 * pass walks pages in order, so consecutive pages never collide. */
struct page_cache;

struct page_cache_stats {
	uint64_t hits, misses;     /* lookups */
	uint64_t inserts;
	uint64_t evictions;        /* inserts that replaced another page */
};

/* Holds as many pages as fit in `bytes`, rounded down to a power of two
 * (64 MiB: 16384 pages). At least one page's worth is required. */
struct page_cache *page_cache_create(size_t bytes, struct error *err);
void page_cache_destroy(struct page_cache *c);
/* How many pages it can hold. */
size_t page_cache_capacity(const struct page_cache *c);
/* The contents last inserted for pfn, or NULL if another page has taken its
 * place or it was never inserted. Valid until the next insert or drop. */
const uint8_t *page_cache_lookup(struct page_cache *c, uint64_t pfn);
/* Records `page` (PAGECODEC_PAGE_SIZE bytes) as what the receiver now holds
 * for pfn, evicting whichever page shared its slot. `page` may be the
 * pointer lookup returned for pfn. */
void page_cache_insert(struct page_cache *c, uint64_t pfn, const uint8_t *page);
/* Forgets pfn, if cached: for a page sent in a way the cache did not see. */
void page_cache_drop(struct page_cache *c, uint64_t pfn);
struct page_cache_stats page_cache_stats(const struct page_cache *c);

/* ---- page delta -------------------------------------------------------- */

/* Encodes how `new` differs from `old` (both PAGECODEC_PAGE_SIZE bytes)
 * into out. Returns the encoded length (0 for identical pages), or -1 when
 * it would need more than out_cap bytes: pass a cap below the raw page's
 * cost so that -1 means "send the page itself". */
ssize_t delta_encode(const uint8_t *old, const uint8_t *new, uint8_t *out, size_t out_cap);

/* Applies the delta in[0..len) to page (PAGECODEC_PAGE_SIZE bytes, the
 * previous contents). A malformed delta is refused with -EPROTO and a
 * message saying what and where, before page is changed at all. */
int delta_decode(uint8_t *page, const uint8_t *in, size_t len, struct error *err);

/* ---- zstd batches ------------------------------------------------------ */

/* Level -1, from a quick measurement on the 2-core build machine while
 * other jobs loaded it (not kept; numbers in pagecodec.c): on pages of
 * binaries and text it decompresses 1.1-1.5 times as fast as level 1 and
 * compresses single pages 1.5 times as fast, for output 10% larger; on
 * 64-page batches the compression speeds were within the noise (-1 ahead
 * in two runs of three). A batch of 64 pages shrinks to 0.45 of its size
 * where single pages shrink to 0.55, for less CPU per page: batch, don't
 * compress pages one by one. Worth measuring again on an idle machine. */
#define ZPAGES_DEFAULT_LEVEL (-1)

struct zctx;
struct zdctx;

/* level: a zstd level, ZSTD_minCLevel() (negative: faster) to
 * ZSTD_maxCLevel(); 0 picks ZPAGES_DEFAULT_LEVEL (zstd's own 0 means its
 * default, 3, which is too slow for this). */
struct zctx *zctx_create(int level, struct error *err);
void zctx_destroy(struct zctx *z);
int zctx_set_level(struct zctx *z, int level, struct error *err);
/* The largest frame zpages_compress can produce for len input bytes. */
size_t zpages_bound(size_t len);
/* Compresses in[0..len) into one frame in out. Returns its length, or -1
 * when it does not fit in cap (pass a cap below len so that -1 means "send
 * the pages raw") or zstd failed otherwise; either way out holds nothing
 * usable and the pages should go raw. */
ssize_t zpages_compress(struct zctx *z, const void *in, size_t len, void *out, size_t cap);

struct zdctx *zdctx_create(struct error *err);
void zdctx_destroy(struct zdctx *z);
/* Decompresses the one frame in[0..len) into out, which must come to
 * exactly `expect` bytes, with expect <= cap. Returns expect, or -EPROTO
 * (corrupt frame, wrong size, trailing bytes) or -EINVAL (expect > cap)
 * with a message. out is never written beyond expect bytes, but on failure
 * its contents are undefined: decompress into a scratch buffer, not into
 * guest RAM. */
ssize_t zpages_decompress(struct zdctx *z, const void *in, size_t len, void *out, size_t cap,
			  size_t expect, struct error *err);

/* ---- cost model -------------------------------------------------------- */

/* What one codec has cost so far on the sender: feed it every attempt,
 * including those that gave up (out = in, the raw bytes then sent), and
 * not the pages that were never tried (a cache miss costs nothing). */
struct codec_meter {
	uint64_t bytes_in;     /* raw bytes given to the codec */
	uint64_t bytes_out;    /* bytes that went on the wire for them */
	uint64_t ns;           /* time spent encoding them */
};

void codec_meter_add(struct codec_meter *m, uint64_t bytes_in, uint64_t bytes_out, uint64_t ns);
/* Halves every count, so that a meter fed continuously follows changes in
 * the guest's data instead of averaging over the whole migration. */
void codec_meter_decay(struct codec_meter *m);
/* Whether encoding makes the data arrive sooner than sending it raw over a
 * link that moves link_bytes_per_s:
 *
 *     ns/in * 1e-9  +  (out/in) / bw   <   1 / bw     (seconds per raw byte)
 *
 * i.e. the time the codec takes plus the time its output takes on the wire
 * beat the raw bytes' time on the wire. This treats encoding and sending as
 * sequential, which is conservative when a writer thread overlaps them.
 * link_bytes_per_s = 0 (not measured yet) counts as a fast link: the data
 * goes raw. Guessing "slow" instead let a codec run all through pass 1 on
 * a fast link (measured: zstd took 292 of pass 1's 506 ms to save 12%),
 * and kept the link from showing its speed, since the writer then never
 * waited on it; raw data fills a slow link at once, which measures it
 * (mig_writer_link_rate) within a few buffers. A meter with nothing in it says true, so a
 * caller that encodes only when told to still gets its first sample;
 * such a caller should also encode a sample now and then after a "false",
 * or the meter never learns that the data became compressible. */
bool codec_pays_off(const struct codec_meter *m, uint64_t link_bytes_per_s);

/* CLOCK_MONOTONIC in nanoseconds, to time encodings for the meter. */
uint64_t codec_clock_ns(void);

#endif
