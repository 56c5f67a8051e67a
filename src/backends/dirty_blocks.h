/* dirty_blocks.h: which blocks of a disk image were written since they were
 * last collected, for live storage migration. One thread (a block device's
 * worker) marks, another (the migration) collects; neither takes a lock:
 * marking ORs bits into words, collecting exchanges each word with zero,
 * so a mark is never lost between the two.
 *
 * The block is 4 KiB, or larger for a disk so big that a 4 KiB map would
 * pass 2 MiB: a power of two, so a disk of N bytes needs at most 2^24 bits. */
#ifndef TERN_BACKENDS_DIRTY_BLOCKS_H
#define TERN_BACKENDS_DIRTY_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#define DIRTY_BLOCKS_MIN_SHIFT 12
#define DIRTY_BLOCKS_MAX_BITS (1ull << 24)

struct dirty_blocks {
	uint64_t *words;
	uint64_t nblocks, nwords;
	unsigned shift;                 /* block size = 1 << shift bytes */
	bool on;                        /* marking; read and written atomically */
};

/* A map for a disk of `size` bytes, not yet marking. -ENOMEM on failure. */
int dirty_blocks_init(struct dirty_blocks *db, uint64_t size);
void dirty_blocks_free(struct dirty_blocks *db);
/* Starts (clearing every bit first) or stops marking. */
void dirty_blocks_track(struct dirty_blocks *db, bool on);
/* Marks every block the byte range touches, if marking is on. Call it
 * after the write has reached the file: a collector that read the block
 * before the mark then sees the bit again and sends the block again. */
void dirty_blocks_mark(struct dirty_blocks *db, uint64_t offset, uint64_t len);
/* Moves the marks into `into` (nwords words, ORed in) and returns how
 * many bits were newly set there. */
uint64_t dirty_blocks_collect(struct dirty_blocks *db, uint64_t *into);
uint64_t dirty_blocks_block_size(const struct dirty_blocks *db);

#endif
