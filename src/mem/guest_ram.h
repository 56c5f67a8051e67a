/* guest_ram.h: the guest's RAM, one anonymous mapping at a fixed guest
 * physical base.
 *
 * Devices and the VMM write guest memory only through guest_ram_write() or
 * after guest_ram_mark_dirty(), so that dirty tracking for migration cannot be
 * bypassed; the CPU marks a page when it first maps it writable in its TLB. */
#ifndef TERN_MEM_GUEST_RAM_H
#define TERN_MEM_GUEST_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define GUEST_PAGE_SHIFT 12
#define GUEST_PAGE_SIZE  (1ull << GUEST_PAGE_SHIFT)

struct guest_ram {
	uint8_t *host;      /* host address of guest physical `base` */
	uint64_t base;      /* guest physical address of the first byte */
	uint64_t size;      /* bytes, a multiple of GUEST_PAGE_SIZE */
	uint64_t *dirty;    /* one bit per page, set atomically */
	size_t dirty_words;
};

int guest_ram_init(struct guest_ram *ram, uint64_t base, uint64_t size, struct error *err);
void guest_ram_destroy(struct guest_ram *ram);

/* Host pointer for [gpa, gpa+len) if the whole range is RAM, else NULL. */
static inline void *guest_ram_ptr(const struct guest_ram *ram, uint64_t gpa, uint64_t len)
{
	uint64_t off = gpa - ram->base;
	if (gpa < ram->base || off > ram->size || len > ram->size - off)
		return NULL;
	return ram->host + off;
}

static inline bool guest_ram_contains(const struct guest_ram *ram, uint64_t gpa)
{
	return gpa >= ram->base && gpa - ram->base < ram->size;
}

void guest_ram_mark_dirty(struct guest_ram *ram, uint64_t gpa, uint64_t len);

/* Copies into guest RAM and marks the pages dirty; -EFAULT outside RAM. */
int guest_ram_write(struct guest_ram *ram, uint64_t gpa, const void *src, size_t len);
int guest_ram_read(const struct guest_ram *ram, uint64_t gpa, void *dst, size_t len);

/* True if the page holding gpa was marked since the bitmap was last cleared. */
bool guest_ram_page_dirty(const struct guest_ram *ram, uint64_t gpa);
/* Marks the page holding gpa; true if it was clean (not marked since the
 * last collection). */
bool guest_ram_mark_page_dirty(struct guest_ram *ram, uint64_t gpa);
void guest_ram_clear_dirty(struct guest_ram *ram);

/* Moves the dirty bitmap into `out` (ram->dirty_words words; ORed in, so
 * pages collected earlier and not yet sent stay there) and clears it, word
 * by word with an atomic exchange: a page marked concurrently lands either
 * in `out` or in the next collection, never in neither. Cost is the
 * bitmap's size (one bit per page), not the guest's. Returns the number of
 * pages set in `out`. */
uint64_t guest_ram_collect_dirty(struct guest_ram *ram, uint64_t *out);

/* Drops the pages set in map (a page bitmap, ram->dirty_words words) and
 * not in except (NULL: none), in runs, one madvise each: they read as
 * zeros, or fault under userfaultfd, until written again. *dropped (if
 * not NULL): how many. */
int guest_ram_drop(struct guest_ram *ram, const uint64_t *map, const uint64_t *except,
		   uint64_t *dropped, struct error *err);

#endif
