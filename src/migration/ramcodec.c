/* ramcodec.c: see ramcodec.h. */
#include "migration/ramcodec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem/guest_ram.h"
#include "migration/vmstate.h"
#include "util/le.h"

/* A delta is sent only if it fits in this: beyond it the page goes raw,
 * which also bounds what an encoding attempt costs. */
#define DELTA_CAP 2048
/* In auto mode a codec that does not pay is still tried now and then
 * (every Nth chance), so that it comes back when the guest or link change. */
#define PROBE_EVERY_PAGES 64
#define PROBE_EVERY_SECTIONS 8
/* Measurements age: every this many samples the meters halve. */
#define DECAY_EVERY 4096

static const char *const mode_names[] = { "off", "on", "auto" };

const char *codec_mode_name(enum codec_mode m)
{
	return m <= CODEC_AUTO ? mode_names[m] : "?";
}

int codec_mode_parse(const char *name, enum codec_mode *out)
{
	for (enum codec_mode m = CODEC_OFF; m <= CODEC_AUTO; m++) {
		if (!strcmp(name, mode_names[m])) {
			*out = m;
			return 0;
		}
	}
	return -EINVAL;
}

int ram_codec_init(struct ram_codec *c, const struct ram_codec_params *p, uint64_t ram_size,
		   struct error *err)
{
	memset(c, 0, sizeof(*c));
	c->params = *p;
	if (p->delta != CODEC_OFF) {
		uint64_t bytes = p->delta_cache_bytes;
		if (!bytes) {
			bytes = ram_size / 4;
			if (bytes > (256ull << 20))
				bytes = 256ull << 20;
		}
		c->cache = page_cache_create(bytes, err);
		if (!c->cache)
			return -(err->code ? err->code : ENOMEM);
	}
	if (p->zstd != CODEC_OFF) {
		c->z = zctx_create(0, err);
		if (!c->z) {
			ram_codec_free(c);
			return -(err->code ? err->code : ENOMEM);
		}
	}
	return 0;
}

void ram_codec_free(struct ram_codec *c)
{
	page_cache_destroy(c->cache);
	zctx_destroy(c->z);
	free(c->section);
	c->cache = NULL;
	c->z = NULL;
	c->section = NULL;
	c->section_cap = 0;
}

uint8_t *ram_codec_section_buffer(struct ram_codec *c, size_t cap)
{
	if (c->section_cap < cap) {
		uint8_t *buf = realloc(c->section, cap);
		if (!buf)
			return NULL;
		c->section = buf;
		c->section_cap = cap;
	}
	return c->section;
}

static bool worth_trying(enum codec_mode mode, struct codec_meter *m, uint64_t bandwidth,
			 uint64_t *tries, unsigned probe_every)
{
	if (mode == CODEC_ON)
		return true;
	if (++*tries % DECAY_EVERY == 0)
		codec_meter_decay(m);
	return codec_pays_off(m, bandwidth) || *tries % probe_every == 0;
}

size_t ram_codec_put_page(struct ram_codec *c, const struct guest_ram *ram, uint64_t pfn,
			  uint8_t *out, struct ram_stats *stats)
{
	uint64_t gpa = ram->base + (pfn << GUEST_PAGE_SHIFT);
	/* The guest may write the page meanwhile: encode, send and remember
	 * one stable copy, so the cache holds exactly what the receiver gets. */
	memcpy(c->scratch, ram->host + (pfn << GUEST_PAGE_SHIFT), GUEST_PAGE_SIZE);
	const uint64_t *words = (const uint64_t *)c->scratch;
	uint64_t any = 0;
	for (unsigned i = 0; i < GUEST_PAGE_SIZE / 8; i++)
		any |= words[i];
	if (!any) {
		if (c->cache)
			page_cache_drop(c->cache, pfn);
		put_le64(out, gpa | VMSTATE_PAGE_ZERO);
		stats->pages_zero++;
		return 8;
	}
	const uint8_t *old = c->cache ? page_cache_lookup(c->cache, pfn) : NULL;
	if (old && worth_trying(c->params.delta, &c->delta_meter, c->bandwidth, &c->delta_tries,
				PROBE_EVERY_PAGES)) {
		uint64_t t0 = codec_clock_ns();
		ssize_t n = delta_encode(old, c->scratch, out + 10, DELTA_CAP);
		uint64_t wire = n >= 0 ? 10 + (uint64_t)n : 8 + GUEST_PAGE_SIZE;
		codec_meter_add(&c->delta_meter, 8 + GUEST_PAGE_SIZE, wire, codec_clock_ns() - t0);
		if (n >= 0) {
			put_le64(out, gpa | VMSTATE_PAGE_DELTA);
			out[8] = (uint8_t)n;
			out[9] = (uint8_t)(n >> 8);
			page_cache_insert(c->cache, pfn, c->scratch);
			stats->pages_data++;
			c->stats.pages_delta++;
			c->stats.delta_bytes += wire;
			return wire;
		}
	}
	put_le64(out, gpa | VMSTATE_PAGE_DATA);
	memcpy(out + 8, c->scratch, GUEST_PAGE_SIZE);
	if (c->cache)
		page_cache_insert(c->cache, pfn, c->scratch);
	stats->pages_data++;
	return 8 + GUEST_PAGE_SIZE;
}

int ram_codec_write_section(struct ram_codec *c, struct mig_writer *w, uint32_t version,
			    const uint8_t *payload, size_t len)
{
	if (!c->z || !worth_trying(c->params.zstd, &c->zstd_meter, c->bandwidth, &c->zstd_tries,
				   PROBE_EVERY_SECTIONS))
		return mig_write_section(w, MIG_SEC_RAM, 0, version, payload, len);
	uint64_t before = w->bytes, t0 = codec_clock_ns();
	int rc = mig_write_section_z(w, MIG_SEC_RAM, 0, version, payload, len, c->z);
	if (rc < 0)
		return rc;
	uint64_t ns = codec_clock_ns() - t0, sent = w->bytes - before;
	codec_meter_add(&c->zstd_meter, len, sent, ns);
	if (rc == 1) {
		c->stats.sections_zstd++;
		c->stats.zstd_saved += len > sent ? len - sent : 0;
	}
	return 0;
}
