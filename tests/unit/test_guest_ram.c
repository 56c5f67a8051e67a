/* Unit tests for guest RAM: dropping the pages of a map (DISCARD, post-copy). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "mem/guest_ram.h"

#define BASE 0x80000000ull
#define PAGES 200    /* not a multiple of 64: the last word is partial */

static struct guest_ram ram;

static int setup(void **state)
{
	(void)state;
	struct error err = { 0 };
	if (guest_ram_init(&ram, BASE, PAGES * GUEST_PAGE_SIZE, &err) < 0)
		return -1;
	/* Every page tells which it is. */
	for (unsigned i = 0; i < PAGES; i++)
		memset(ram.host + i * GUEST_PAGE_SIZE, 1 + i % 250, GUEST_PAGE_SIZE);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	guest_ram_destroy(&ram);
	return 0;
}

static bool page_is(unsigned pfn, int value)
{
	const uint8_t *p = ram.host + pfn * GUEST_PAGE_SIZE;
	for (size_t i = 0; i < GUEST_PAGE_SIZE; i++)
		if (p[i] != value)
			return false;
	return true;
}

static void set_bit(uint64_t *map, unsigned pfn)
{
	map[pfn / 64] |= 1ull << (pfn % 64);
}

static void test_drop_runs_and_single_pages(void **state)
{
	(void)state;
	uint64_t map[4] = { 0 }, except[4] = { 0 };
	/* A run across a word boundary, a lone page, the last page. */
	for (unsigned pfn = 60; pfn < 70; pfn++)
		set_bit(map, pfn);
	set_bit(map, 130);
	set_bit(map, PAGES - 1);
	/* Excepted pages stay, even inside the run. */
	set_bit(except, 64);
	set_bit(except, 130);
	struct error err = { 0 };
	uint64_t dropped = 0;
	assert_int_equal(guest_ram_drop(&ram, map, except, &dropped, &err), 0);
	assert_int_equal(dropped, 10);
	for (unsigned pfn = 0; pfn < PAGES; pfn++) {
		bool gone = (pfn >= 60 && pfn < 70 && pfn != 64) || pfn == PAGES - 1;
		if (gone)
			assert_true(page_is(pfn, 0));
		else
			assert_true(page_is(pfn, 1 + pfn % 250));
	}
}

static void test_drop_nothing(void **state)
{
	(void)state;
	uint64_t map[4] = { 0 };
	struct error err = { 0 };
	uint64_t dropped = 99;
	assert_int_equal(guest_ram_drop(&ram, map, NULL, &dropped, &err), 0);
	assert_int_equal(dropped, 0);
	for (unsigned pfn = 0; pfn < PAGES; pfn++)
		assert_true(page_is(pfn, 1 + pfn % 250));
}

static void test_drop_everything_then_write_again(void **state)
{
	(void)state;
	uint64_t map[4];
	memset(map, 0xff, sizeof(map));
	struct error err = { 0 };
	uint64_t dropped = 0;
	assert_int_equal(guest_ram_drop(&ram, map, NULL, &dropped, &err), 0);
	assert_int_equal(dropped, PAGES);
	for (unsigned pfn = 0; pfn < PAGES; pfn++)
		assert_true(page_is(pfn, 0));
	/* A dropped page takes data again like any other. */
	memset(ram.host + 7 * GUEST_PAGE_SIZE, 0x5a, GUEST_PAGE_SIZE);
	assert_true(page_is(7, 0x5a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_drop_runs_and_single_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop_everything_then_write_again, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
