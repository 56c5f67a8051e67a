/* Unit tests for the auto-converge policy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "migration/converge.h"

static void test_converged_pass_changes_nothing(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_after_pass(&c, 1000, 100, 10, 30), 0);
	assert_int_equal(c.slow_passes, 0);
}

static void test_shrinking_passes_are_not_throttled(void **state)
{
	(void)state;
	struct converge c = { 0 };
	for (int i = 0; i < 10; i++)
		assert_int_equal(converge_after_pass(&c, 400, 1000, 500, 30), 0);
}

static void test_one_slow_pass_is_forgiven(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500, 30), 0);
	assert_int_equal(converge_after_pass(&c, 100, 1000, 500, 30), 0);
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500, 30), 0);
}

static void test_slow_passes_raise_the_throttle_to_the_cap(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500, 30), 0);
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500, 30), CONVERGE_FIRST_PCT);
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500, 30),
			 CONVERGE_FIRST_PCT + CONVERGE_STEP_PCT);
	for (int i = 0; i < 20; i++)
		converge_after_pass(&c, 2000, 1000, 500, 30);
	assert_int_equal(c.throttle_pct, CONVERGE_MAX_PCT);
}

static void test_throttle_stays_once_it_helps(void **state)
{
	(void)state;
	struct converge c = { 0 };
	converge_after_pass(&c, 900, 1000, 500, 30);
	converge_after_pass(&c, 900, 1000, 500, 30);
	assert_int_equal(converge_after_pass(&c, 100, 1000, 50, 30), CONVERGE_FIRST_PCT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_converged_pass_changes_nothing),
		cmocka_unit_test(test_shrinking_passes_are_not_throttled),
		cmocka_unit_test(test_one_slow_pass_is_forgiven),
		cmocka_unit_test(test_slow_passes_raise_the_throttle_to_the_cap),
		cmocka_unit_test(test_throttle_stays_once_it_helps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
