/* guest_ram.c: allocation of guest RAM and its dirty bitmap. */
#include "mem/guest_ram.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int guest_ram_init(struct guest_ram *ram, uint64_t base, uint64_t size, struct error *err)
{
	memset(ram, 0, sizeof(*ram));
	if (size == 0 || size % GUEST_PAGE_SIZE)
		return error_set(err, EINVAL, "guest RAM size %llu is not a positive multiple of 4 KiB",
				 (unsigned long long)size);
	/* MAP_NORESERVE: pages the guest never touches cost nothing, which is
	 * also what lets a migration skip them. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return error_errno(err, errno, "cannot map %llu MiB of guest RAM",
				   (unsigned long long)(size >> 20));
	size_t pages = size >> GUEST_PAGE_SHIFT;
	ram->dirty_words = (pages + 63) / 64;
	ram->dirty = calloc(ram->dirty_words, sizeof(uint64_t));
	if (!ram->dirty) {
		munmap(p, size);
		return error_set(err, ENOMEM, "cannot allocate the dirty bitmap for %zu pages", pages);
	}
	ram->host = p;
	ram->base = base;
	ram->size = size;
	return 0;
}

void guest_ram_destroy(struct guest_ram *ram)
{
	if (ram->host)
		munmap(ram->host, ram->size);
	free(ram->dirty);
	memset(ram, 0, sizeof(*ram));
}

void guest_ram_mark_dirty(struct guest_ram *ram, uint64_t gpa, uint64_t len)
{
	if (len == 0 || !guest_ram_contains(ram, gpa))
		return;
	uint64_t first = (gpa - ram->base) >> GUEST_PAGE_SHIFT;
	uint64_t last_byte = gpa - ram->base + len - 1;
	if (last_byte >= ram->size)
		last_byte = ram->size - 1;
	uint64_t last = last_byte >> GUEST_PAGE_SHIFT;
	for (uint64_t pfn = first; pfn <= last; pfn++)
		__atomic_fetch_or(&ram->dirty[pfn / 64], 1ull << (pfn % 64), __ATOMIC_RELAXED);
}

bool guest_ram_mark_page_dirty(struct guest_ram *ram, uint64_t gpa)
{
	if (!guest_ram_contains(ram, gpa))
		return false;
	uint64_t pfn = (gpa - ram->base) >> GUEST_PAGE_SHIFT, bit = 1ull << (pfn % 64);
	/* Reading first keeps the cache line shared while the page stays dirty. */
	if (__atomic_load_n(&ram->dirty[pfn / 64], __ATOMIC_RELAXED) & bit)
		return false;
	return !(__atomic_fetch_or(&ram->dirty[pfn / 64], bit, __ATOMIC_RELAXED) & bit);
}

bool guest_ram_page_dirty(const struct guest_ram *ram, uint64_t gpa)
{
	if (!guest_ram_contains(ram, gpa))
		return false;
	uint64_t pfn = (gpa - ram->base) >> GUEST_PAGE_SHIFT;
	return (__atomic_load_n(&ram->dirty[pfn / 64], __ATOMIC_RELAXED) >> (pfn % 64)) & 1;
}

void guest_ram_clear_dirty(struct guest_ram *ram)
{
	for (size_t i = 0; i < ram->dirty_words; i++)
		__atomic_store_n(&ram->dirty[i], 0, __ATOMIC_RELAXED);
}

int guest_ram_write(struct guest_ram *ram, uint64_t gpa, const void *src, size_t len)
{
	void *dst = guest_ram_ptr(ram, gpa, len);
	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	guest_ram_mark_dirty(ram, gpa, len);
	return 0;
}

int guest_ram_read(const struct guest_ram *ram, uint64_t gpa, void *dst, size_t len)
{
	const void *src = guest_ram_ptr(ram, gpa, len);
	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

uint64_t guest_ram_collect_dirty(struct guest_ram *ram, uint64_t *out)
{
	uint64_t count = 0;
	for (size_t i = 0; i < ram->dirty_words; i++) {
		/* A cheap look first: most words of a quiet guest are zero. */
		if (__atomic_load_n(&ram->dirty[i], __ATOMIC_RELAXED) != 0)
			out[i] |= __atomic_exchange_n(&ram->dirty[i], 0, __ATOMIC_ACQ_REL);
		count += (uint64_t)__builtin_popcountll(out[i]);
	}
	return count;
}

/* Bit pfn of map, and not of except (NULL: nothing excepted). */
static bool drop_wanted(const uint64_t *map, const uint64_t *except, uint64_t pfn)
{
	uint64_t bit = 1ull << (pfn % 64);
	return (map[pfn / 64] & bit) && !(except && (except[pfn / 64] & bit));
}

int guest_ram_drop(struct guest_ram *ram, const uint64_t *map, const uint64_t *except,
		   uint64_t *dropped, struct error *err)
{
	uint64_t pages = ram->size >> GUEST_PAGE_SHIFT, count = 0;
	for (uint64_t pfn = 0; pfn < pages;) {
		/* Whole words with nothing to drop go by at once. */
		uint64_t word = map[pfn / 64] & ~(except ? except[pfn / 64] : 0);
		if (pfn % 64 == 0 && !word) {
			pfn += 64;
			continue;
		}
		if (!drop_wanted(map, except, pfn)) {
			pfn++;
			continue;
		}
		uint64_t end = pfn + 1;
		while (end < pages && drop_wanted(map, except, end))
			end++;
		if (madvise(ram->host + (pfn << GUEST_PAGE_SHIFT), (end - pfn) << GUEST_PAGE_SHIFT,
			    MADV_DONTNEED) < 0)
			return error_errno(err, errno, "dropping %llu pages of guest RAM at 0x%llx",
					   (unsigned long long)(end - pfn),
					   (unsigned long long)(ram->base + (pfn << GUEST_PAGE_SHIFT)));
		count += end - pfn;
		pfn = end;
	}
	if (dropped)
		*dropped = count;
	return 0;
}
