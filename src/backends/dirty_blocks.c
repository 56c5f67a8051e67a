/* dirty_blocks.c: see dirty_blocks.h. */
#include "backends/dirty_blocks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int dirty_blocks_init(struct dirty_blocks *db, uint64_t size)
{
	memset(db, 0, sizeof(*db));
	unsigned shift = DIRTY_BLOCKS_MIN_SHIFT;
	while (((size + (1ull << shift) - 1) >> shift) > DIRTY_BLOCKS_MAX_BITS)
		shift++;
	db->shift = shift;
	db->nblocks = (size + (1ull << shift) - 1) >> shift;
	db->nwords = (db->nblocks + 63) / 64;
	db->words = calloc(db->nwords ? db->nwords : 1, sizeof(uint64_t));
	return db->words ? 0 : -ENOMEM;
}

void dirty_blocks_free(struct dirty_blocks *db)
{
	free(db->words);
	memset(db, 0, sizeof(*db));
}

void dirty_blocks_track(struct dirty_blocks *db, bool on)
{
	if (on)
		for (uint64_t i = 0; i < db->nwords; i++)
			__atomic_store_n(&db->words[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&db->on, on, __ATOMIC_SEQ_CST);
}

void dirty_blocks_mark(struct dirty_blocks *db, uint64_t offset, uint64_t len)
{
	if (!len || !db->words || !__atomic_load_n(&db->on, __ATOMIC_SEQ_CST))
		return;
	if (offset >> db->shift >= db->nblocks)
		return;
	if (len > UINT64_MAX - offset)
		len = UINT64_MAX - offset;
	uint64_t first = offset >> db->shift;
	uint64_t last = (offset + len - 1) >> db->shift;
	if (last >= db->nblocks)
		last = db->nblocks - 1;
	for (uint64_t b = first; b <= last; b++)
		__atomic_fetch_or(&db->words[b / 64], 1ull << (b % 64), __ATOMIC_SEQ_CST);
}

uint64_t dirty_blocks_collect(struct dirty_blocks *db, uint64_t *into)
{
	uint64_t count = 0;
	for (uint64_t i = 0; i < db->nwords; i++) {
		if (!__atomic_load_n(&db->words[i], __ATOMIC_RELAXED))
			continue;
		uint64_t w = __atomic_exchange_n(&db->words[i], 0, __ATOMIC_SEQ_CST);
		count += (uint64_t)__builtin_popcountll(w & ~into[i]);
		into[i] |= w;
	}
	return count;
}

uint64_t dirty_blocks_block_size(const struct dirty_blocks *db)
{
	return 1ull << db->shift;
}
