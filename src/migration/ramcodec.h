/* ramcodec.h: how a live migration's sender encodes pages, page by page
 * (a delta against the copy it sent last, XBZRLE-style) and section by
 * section (zstd), each on, off, or "auto": used while its measured cost
 * (time to encode, bytes it saves) beats sending raw at the bandwidth the
 * link gives. Snapshots send raw. Formats: docs/migration-format.md. */
#ifndef TERN_MIGRATION_RAMCODEC_H
#define TERN_MIGRATION_RAMCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/pagecodec.h"
#include "migration/stream.h"
#include "util/error.h"

struct guest_ram;
struct ram_stats;

enum codec_mode { CODEC_OFF, CODEC_ON, CODEC_AUTO };

struct ram_codec_params {
	enum codec_mode delta, zstd;
	uint64_t delta_cache_bytes;     /* 0: a quarter of guest RAM, at most 256 MiB */
};

struct ram_codec_stats {
	uint64_t pages_delta;           /* pages sent as a delta */
	uint64_t delta_bytes;           /* what those deltas took */
	uint64_t sections_zstd;         /* sections sent compressed */
	uint64_t zstd_saved;            /* bytes compression saved */
};

struct ram_codec {
	struct ram_codec_params params;
	struct page_cache *cache;       /* NULL: deltas off */
	struct zctx *z;                 /* NULL: compression off */
	uint64_t bandwidth;             /* bytes/s, for the auto modes (0: unknown) */
	struct codec_meter delta_meter, zstd_meter;
	uint64_t delta_tries, zstd_tries;
	struct ram_codec_stats stats;
	/* With several channels, this codec's sender takes the pages of
	 * 1 MiB chunks number part, part + nparts, ... (nparts 0 or 1: all). */
	unsigned part, nparts;
	uint8_t *section;               /* see ram_codec_section_buffer */
	size_t section_cap;
	uint8_t scratch[PAGECODEC_PAGE_SIZE];
};

int ram_codec_init(struct ram_codec *c, const struct ram_codec_params *p, uint64_t ram_size,
		   struct error *err);
void ram_codec_free(struct ram_codec *c);
/* Whether pfn is this codec's to send (its channel's share). */
static inline bool ram_codec_owns(const struct ram_codec *c, uint64_t pfn)
{
	return c->nparts <= 1 || (pfn >> 8) % c->nparts == c->part;
}
/* A buffer of at least cap bytes for building RAM sections, kept until
 * ram_codec_free; NULL when out of memory. */
uint8_t *ram_codec_section_buffer(struct ram_codec *c, size_t cap);
/* One page record for pfn at out (room for 8 + 4096 bytes); its length. */
size_t ram_codec_put_page(struct ram_codec *c, const struct guest_ram *ram, uint64_t pfn,
			  uint8_t *out, struct ram_stats *stats);
/* Writes one RAM section, compressed when that is on and pays. */
int ram_codec_write_section(struct ram_codec *c, struct mig_writer *w, uint32_t version,
			    const uint8_t *payload, size_t len);

const char *codec_mode_name(enum codec_mode m);
int codec_mode_parse(const char *name, enum codec_mode *out);

#endif
