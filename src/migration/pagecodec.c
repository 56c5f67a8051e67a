/* pagecodec.c: page cache, page delta, zstd batches and the cost model of
 * pagecodec.h, where the formats are described. */
#include "migration/pagecodec.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "mem/guest_ram.h"

#define PAGE PAGECODEC_PAGE_SIZE

_Static_assert(PAGECODEC_PAGE_SIZE == GUEST_PAGE_SIZE,
	       "the page codecs work on guest pages");

/* ---- page cache -------------------------------------------------------- */

struct page_cache {
	size_t slots;              /* a power of two */
	uint64_t *tag;             /* pfn of the page in each slot */
	bool *used;                /* apart from tag: every pfn is a valid tag */
	uint8_t *data;             /* slots * PAGE bytes */
	struct page_cache_stats stats;
};

struct page_cache *page_cache_create(size_t bytes, struct error *err)
{
	if (bytes < PAGE) {
		error_set(err, EINVAL, "a page cache of %zu bytes holds no %u-byte page", bytes, PAGE);
		return NULL;
	}
	/* A power of two makes the slot a mask of the pfn, and keeps the
	 * cache within the budget rather than just over it. */
	size_t slots = (size_t)1 << (63 - __builtin_clzll(bytes / PAGE));
	struct page_cache *c = calloc(1, sizeof(*c));
	if (!c) {
		error_set(err, ENOMEM, "no memory for a page cache");
		return NULL;
	}
	c->slots = slots;
	c->tag = calloc(slots, sizeof(*c->tag));
	c->used = calloc(slots, sizeof(*c->used));
	/* Page-aligned: a slot then spans 64 cache lines, not 65. */
	c->data = aligned_alloc(PAGE, slots * PAGE);
	if (!c->tag || !c->used || !c->data) {
		error_set(err, ENOMEM, "no memory for a page cache of %zu pages (%zu MiB)", slots,
			  slots * PAGE >> 20);
		page_cache_destroy(c);
		return NULL;
	}
	return c;
}

void page_cache_destroy(struct page_cache *c)
{
	if (!c)
		return;
	free(c->tag);
	free(c->used);
	free(c->data);
	free(c);
}

size_t page_cache_capacity(const struct page_cache *c)
{
	return c->slots;
}

static size_t slot_of(const struct page_cache *c, uint64_t pfn)
{
	return (size_t)(pfn & (c->slots - 1));
}

const uint8_t *page_cache_lookup(struct page_cache *c, uint64_t pfn)
{
	size_t s = slot_of(c, pfn);
	if (!c->used[s] || c->tag[s] != pfn) {
		c->stats.misses++;
		return NULL;
	}
	c->stats.hits++;
	return c->data + s * PAGE;
}

void page_cache_insert(struct page_cache *c, uint64_t pfn, const uint8_t *page)
{
	size_t s = slot_of(c, pfn);
	if (c->used[s] && c->tag[s] != pfn)
		c->stats.evictions++;
	c->stats.inserts++;
	c->used[s] = true;
	c->tag[s] = pfn;
	uint8_t *dst = c->data + s * PAGE;
	/* The caller may hand back what lookup returned: nothing to copy. */
	if (dst != page)
		memcpy(dst, page, PAGE);
}

void page_cache_drop(struct page_cache *c, uint64_t pfn)
{
	size_t s = slot_of(c, pfn);
	if (c->used[s] && c->tag[s] == pfn)
		c->used[s] = false;
}

struct page_cache_stats page_cache_stats(const struct page_cache *c)
{
	return c->stats;
}

/* ---- page delta -------------------------------------------------------- */

/* An unchanged gap this short costs less inside a copy than as a new pair
 * (two lengths of at least one byte each). */
#define DELTA_MAX_GAP 2

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* The first offset >= pos where the pages differ, or PAGE. */
static size_t same_until(const uint8_t *old, const uint8_t *new, size_t pos)
{
	while (pos + 32 <= PAGE) {
		/* Four words per test: unchanged stretches are usually long. */
		uint64_t x = (load64(old + pos) ^ load64(new + pos)) |
			     (load64(old + pos + 8) ^ load64(new + pos + 8)) |
			     (load64(old + pos + 16) ^ load64(new + pos + 16)) |
			     (load64(old + pos + 24) ^ load64(new + pos + 24));
		if (x)
			break;
		pos += 32;
	}
	while (pos + 8 <= PAGE) {
		uint64_t x = load64(old + pos) ^ load64(new + pos);
		if (x) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return pos + (size_t)__builtin_ctzll(x) / 8;
#else
			return pos + (size_t)__builtin_clzll(x) / 8;
#endif
		}
		pos += 8;
	}
	while (pos < PAGE && old[pos] == new[pos])
		pos++;
	return pos;
}

/* The end of the changed run that starts at pos (where the pages differ):
 * the offset after its last changed byte, with gaps of up to DELTA_MAX_GAP
 * unchanged bytes inside. Looks no further than limit; when the run is not
 * over by then (and limit is not the page's end), returns limit + 1. */
static size_t changed_until(const uint8_t *old, const uint8_t *new, size_t pos, size_t limit)
{
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
	size_t last = pos, i = pos + 1;
	while (i < limit) {
		if (i + 8 <= limit) {
			uint64_t x = load64(old + i) ^ load64(new + i);
			/* High bit of each byte of x that is zero: an unchanged
			 * byte. None in the word, the common case in a rewritten
			 * page, and the run goes on for all 8. */
			uint64_t same = ~(((x & low7) + low7) | x | low7);
			if (!same) {
				last = i + 7;
				i += 8;
				continue;
			}
		}
		for (size_t end = i + 8 < limit ? i + 8 : limit; i < end; i++) {
			if (old[i] != new[i])
				last = i;
			else if (i - last > DELTA_MAX_GAP)
				return last + 1;
		}
	}
	return limit == PAGE ? last + 1 : limit + 1;
}

static size_t uleb_len(size_t v)
{
	return v < 0x80 ? 1 : 2;
}

static size_t put_uleb(uint8_t *p, size_t v)
{
	if (v < 0x80) {
		p[0] = (uint8_t)v;
		return 1;
	}
	p[0] = (uint8_t)(v | 0x80);
	p[1] = (uint8_t)(v >> 7);
	return 2;
}

ssize_t delta_encode(const uint8_t *old, const uint8_t *new, uint8_t *out, size_t out_cap)
{
	size_t pos = 0, o = 0;
	for (;;) {
		size_t start = pos;
		pos = same_until(old, new, pos);
		if (pos == PAGE)
			return (ssize_t)o;
		size_t skip = pos - start;
		/* What is left after the skip's length bounds the copy, and so
		 * how far the run is worth scanning: a page that changed
		 * everywhere costs a scan of out_cap bytes, not of the page. A
		 * copy needs its length and at least one byte; one of up to
		 * avail - 1 bytes may fit, and the scan has to go DELTA_MAX_GAP
		 * bytes past its end to see that it ended. */
		if (o + uleb_len(skip) + 2 > out_cap)
			return -1;
		size_t avail = out_cap - o - uleb_len(skip);
		size_t limit = avail < PAGE ? pos + avail + DELTA_MAX_GAP : PAGE;
		if (limit > PAGE)
			limit = PAGE;
		size_t end = changed_until(old, new, pos, limit);
		size_t copy = end - pos;
		if (o + uleb_len(skip) + uleb_len(copy) + copy > out_cap)
			return -1;
		o += put_uleb(out + o, skip);
		o += put_uleb(out + o, copy);
		memcpy(out + o, new + pos, copy);
		o += copy;
		pos = end;
	}
}

/* Reads one length of a delta. `what` names it for messages. */
static int get_uleb(const uint8_t *in, size_t len, size_t *ip, size_t *v, const char *what,
		    size_t page_off, struct error *err)
{
	size_t at = *ip;
	if (at >= len)
		return error_set(err, EPROTO,
				 "page delta: the %s length at byte %zu (page offset %zu) is missing",
				 what, at, page_off);
	uint8_t b0 = in[at];
	if (!(b0 & 0x80)) {
		*v = b0;
		*ip = at + 1;
		return 0;
	}
	if (at + 1 >= len)
		return error_set(err, EPROTO,
				 "page delta: the %s length at byte %zu (page offset %zu) is cut short",
				 what, at, page_off);
	uint8_t b1 = in[at + 1];
	if (b1 & 0x80)
		return error_set(err, EPROTO,
				 "page delta: the %s length at byte %zu (page offset %zu) is longer than "
				 "the 2 bytes a page offset needs",
				 what, at, page_off);
	if (b1 == 0)
		return error_set(err, EPROTO,
				 "page delta: the %s length at byte %zu (page offset %zu) is not in its "
				 "shortest form",
				 what, at, page_off);
	*v = (size_t)(b0 & 0x7f) | (size_t)b1 << 7;
	*ip = at + 2;
	return 0;
}

/* Checks a delta and says what is wrong with it, where. The slow path:
 * delta_valid below enforces the same rules for the deltas that pass. */
static int delta_explain(const uint8_t *in, size_t len, struct error *err)
{
	size_t pos = 0, ip = 0;
	while (ip < len) {
		if (pos == PAGE)
			return error_set(err, EPROTO,
					 "page delta: %zu trailing bytes at byte %zu, after the end of the page",
					 len - ip, ip);
		size_t skip = 0, copy = 0;
		size_t at = ip;
		int rc = get_uleb(in, len, &ip, &skip, "unchanged-run", pos, err);
		if (rc)
			return rc;
		if (skip == 0 && pos != 0)
			return error_set(err, EPROTO,
					 "page delta: an empty unchanged run at byte %zu (page offset %zu) "
					 "joins two changed runs that should be one",
					 at, pos);
		if (skip > PAGE - pos)
			return error_set(err, EPROTO,
					 "page delta: an unchanged run of %zu bytes at page offset %zu runs "
					 "past the end of the page",
					 skip, pos);
		pos += skip;
		at = ip;
		rc = get_uleb(in, len, &ip, &copy, "changed-run", pos, err);
		if (rc)
			return rc;
		if (copy == 0)
			return error_set(err, EPROTO,
					 "page delta: an empty changed run at byte %zu (page offset %zu)", at,
					 pos);
		if (copy > PAGE - pos)
			return error_set(err, EPROTO,
					 "page delta: a changed run of %zu bytes at page offset %zu runs past "
					 "the end of the page",
					 copy, pos);
		if (copy > len - ip)
			return error_set(err, EPROTO,
					 "page delta: the changed run of %zu bytes at byte %zu (page offset "
					 "%zu) is cut short: %zu bytes left",
					 copy, ip, pos, len - ip);
		ip += copy;
		pos += copy;
	}
	return 0;
}

/* One length, for the fast passes: false on anything get_uleb refuses. */
static inline bool len_ok(const uint8_t *in, size_t len, size_t *ip, size_t *v)
{
	size_t at = *ip;
	if (at >= len)
		return false;
	size_t b0 = in[at];
	if (!(b0 & 0x80)) {
		*v = b0;
		*ip = at + 1;
		return true;
	}
	if (at + 1 >= len || (in[at + 1] & 0x80) || !in[at + 1])
		return false;
	*v = (b0 & 0x7f) | (size_t)in[at + 1] << 7;
	*ip = at + 2;
	return true;
}

/* The rules of delta_explain without its messages. Most deltas are valid,
 * and without the bookkeeping for naming a fault this check and the apply
 * after it take half the time (measured on a delta of 512 runs). */
static bool delta_valid(const uint8_t *in, size_t len)
{
	size_t pos = 0, ip = 0;
	while (ip < len) {
		size_t skip = 0, copy = 0;
		if (pos == PAGE || !len_ok(in, len, &ip, &skip) || (skip == 0 && pos != 0) ||
		    skip > PAGE - pos)
			return false;
		pos += skip;
		if (!len_ok(in, len, &ip, &copy) || copy == 0 || copy > PAGE - pos || copy > len - ip)
			return false;
		ip += copy;
		pos += copy;
	}
	return true;
}

/* Applies a delta that delta_valid accepted. */
static void delta_apply(uint8_t *page, const uint8_t *in, size_t len)
{
	size_t pos = 0, ip = 0, skip = 0, copy = 0;
	while (ip < len) {
		len_ok(in, len, &ip, &skip);
		len_ok(in, len, &ip, &copy);
		pos += skip;
		if (copy <= 8) {
			/* Short copies are the common case of scattered writes,
			 * where a call to memcpy would cost more than the copy. */
			for (size_t i = 0; i < copy; i++)
				page[pos + i] = in[ip + i];
		} else {
			memcpy(page + pos, in + ip, copy);
		}
		ip += copy;
		pos += copy;
	}
}

int delta_decode(uint8_t *page, const uint8_t *in, size_t len, struct error *err)
{
	/* Checked whole before applied, rather than decoded into a scratch
	 * page: the check reads only the lengths, cheaper than copying 4 KiB
	 * in and out. */
	if (delta_valid(in, len)) {
		delta_apply(page, in, len);
		return 0;
	}
	int rc = delta_explain(in, len, err);
	/* delta_explain and delta_valid enforce the same rules; if they ever
	 * disagreed, refusing is the safe side. */
	return rc ? rc : error_set(err, EPROTO, "page delta: refused (%zu bytes)", len);
}

/* ---- zstd batches ------------------------------------------------------ */

/* The default level (pagecodec.h), measured on 16384 nonzero pages of
 * /usr binaries, libraries and text, compressed in batches of 1, 8 and 64
 * pages, best of 3 passes, gcc -O2, on the 2-core build machine while
 * another job loaded it (so absolute numbers are pessimistic; ratios
 * between levels held across runs). Per page, batch of 64:
 *
 *   level  size   compress      decompress
 *    -5    0.56   355 MB/s      1245 MB/s
 *    -3    0.51   288 MB/s       896 MB/s
 *    -1    0.45   281 MB/s      1009 MB/s
 *     1    0.41   227 MB/s       664 MB/s
 *     3    0.38   124 MB/s       690 MB/s
 *
 * Two more runs gave -1 at 308 / 1117 and 208 / 863 MB/s, 1 at 275 / 840
 * and 245 / 790: compression within the noise, decompression ahead.
 * Single pages cost 1.1-1.6 times as much per page and shrink to 0.55
 * (level -1) instead of 0.45. With the stream's writer thread overlapping
 * compression and sending, a 1 Gbit/s link (8 ns per raw byte) then takes
 * max(3.6, 3.6) ns per byte at level -1, max(4.4, 3.3) at level 1 and
 * max(3.5, 4.1) at level -3: -1 is the best of them. At 10 Gbit/s no level
 * pays on this machine; codec_pays_off says so from the measured costs. */

struct zctx {
	ZSTD_CCtx *cctx;
	int level;
};

struct zdctx {
	ZSTD_DCtx *dctx;
};

static int check_level(int level, struct error *err)
{
	if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
		return error_set(err, EINVAL, "zstd level %d is outside %d..%d", level,
				 ZSTD_minCLevel(), ZSTD_maxCLevel());
	return 0;
}

int zctx_set_level(struct zctx *z, int level, struct error *err)
{
	if (level == 0)
		level = ZPAGES_DEFAULT_LEVEL;
	int rc = check_level(level, err);
	if (rc)
		return rc;
	size_t r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
	if (ZSTD_isError(r))
		return error_set(err, EINVAL, "zstd refuses level %d: %s", level,
				 ZSTD_getErrorName(r));
	z->level = level;
	return 0;
}

struct zctx *zctx_create(int level, struct error *err)
{
	struct zctx *z = calloc(1, sizeof(*z));
	if (!z) {
		error_set(err, ENOMEM, "no memory for a zstd compression context");
		return NULL;
	}
	z->cctx = ZSTD_createCCtx();
	if (!z->cctx) {
		error_set(err, ENOMEM, "no memory for a zstd compression context");
		zctx_destroy(z);
		return NULL;
	}
	/* The receiver checks the size against its records; the section's
	 * checksum covers the bytes, so zstd's own checksum would be paid
	 * twice. */
	size_t r1 = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
	size_t r2 = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0);
	if (ZSTD_isError(r1) || ZSTD_isError(r2)) {
		error_set(err, EINVAL, "zstd refuses the frame parameters: %s",
			  ZSTD_getErrorName(ZSTD_isError(r1) ? r1 : r2));
		zctx_destroy(z);
		return NULL;
	}
	if (zctx_set_level(z, level, err)) {
		zctx_destroy(z);
		return NULL;
	}
	return z;
}

void zctx_destroy(struct zctx *z)
{
	if (!z)
		return;
	ZSTD_freeCCtx(z->cctx);
	free(z);
}

size_t zpages_bound(size_t len)
{
	return ZSTD_compressBound(len);
}

ssize_t zpages_compress(struct zctx *z, const void *in, size_t len, void *out, size_t cap)
{
	size_t r = ZSTD_compress2(z->cctx, out, cap, in, len);
	if (ZSTD_isError(r) || r > (size_t)SSIZE_MAX)
		return -1;
	return (ssize_t)r;
}

struct zdctx *zdctx_create(struct error *err)
{
	struct zdctx *z = calloc(1, sizeof(*z));
	if (z)
		z->dctx = ZSTD_createDCtx();
	if (!z || !z->dctx) {
		error_set(err, ENOMEM, "no memory for a zstd decompression context");
		zdctx_destroy(z);
		return NULL;
	}
	return z;
}

void zdctx_destroy(struct zdctx *z)
{
	if (!z)
		return;
	ZSTD_freeDCtx(z->dctx);
	free(z);
}

ssize_t zpages_decompress(struct zdctx *z, const void *in, size_t len, void *out, size_t cap,
			  size_t expect, struct error *err)
{
	if (expect > cap || expect > (size_t)SSIZE_MAX)
		return error_set(err, EINVAL,
				 "zstd batch: %zu bytes expected, but the buffer holds only %zu", expect,
				 cap);
	/* Everything about the frame's size is checked from its header
	 * before a byte is decoded. */
	unsigned long long declared = ZSTD_getFrameContentSize(in, len);
	if (declared == ZSTD_CONTENTSIZE_ERROR)
		return error_set(err, EPROTO, "zstd batch: %zu bytes that do not start with a zstd frame header",
				 len);
	if (declared == ZSTD_CONTENTSIZE_UNKNOWN)
		return error_set(err, EPROTO,
				 "zstd batch: the frame does not declare its size (expected %zu bytes)",
				 expect);
	if (declared != expect)
		return error_set(err, EPROTO,
				 "zstd batch: the frame holds %llu bytes, the records call for %zu",
				 declared, expect);
	size_t frame = ZSTD_findFrameCompressedSize(in, len);
	if (ZSTD_isError(frame))
		return error_set(err, EPROTO, "zstd batch: the %zu-byte frame is corrupt or cut short: %s",
				 len, ZSTD_getErrorName(frame));
	if (frame != len)
		return error_set(err, EPROTO,
				 "zstd batch: %zu bytes follow the %zu-byte frame", len - frame, frame);
	/* Capacity `expect`, not cap: zstd then cannot write past what the
	 * records vouch for, whatever the frame says inside. */
	size_t r = ZSTD_decompressDCtx(z->dctx, out, expect, in, len);
	if (ZSTD_isError(r))
		return error_set(err, EPROTO, "zstd batch: the %zu-byte frame is corrupt: %s", len,
				 ZSTD_getErrorName(r));
	if (r != expect)
		return error_set(err, EPROTO,
				 "zstd batch: the frame decompressed to %zu bytes, not the %zu it declared",
				 r, expect);
	return (ssize_t)r;
}

/* ---- cost model -------------------------------------------------------- */

void codec_meter_add(struct codec_meter *m, uint64_t bytes_in, uint64_t bytes_out, uint64_t ns)
{
	m->bytes_in += bytes_in;
	m->bytes_out += bytes_out;
	m->ns += ns;
}

void codec_meter_decay(struct codec_meter *m)
{
	m->bytes_in /= 2;
	m->bytes_out /= 2;
	m->ns /= 2;
}

bool codec_pays_off(const struct codec_meter *m, uint64_t link_bytes_per_s)
{
	if (!m->bytes_in)
		return true;
	if (m->bytes_out >= m->bytes_in || !link_bytes_per_s)
		return false;
	/* The inequality of pagecodec.h times in * bw * 1e9, in integers:
	 * ns * bw < (in - out) * 1e9. Each side is below 2^64 * 2^64, so
	 * 128 bits hold it exactly, however long the migration. */
	unsigned __int128 cost = (unsigned __int128)m->ns * link_bytes_per_s;
	unsigned __int128 saved = (unsigned __int128)(m->bytes_in - m->bytes_out) * 1000000000u;
	return cost < saved;
}

uint64_t codec_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
