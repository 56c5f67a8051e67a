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
	assert_int_equal(converge_after_pass(&c, 1000, 100, 10000, 30000), 0);
	assert_int_equal(c.slow_passes, 0);
}

static void test_shrinking_passes_are_not_throttled(void **state)
{
	(void)state;
	struct converge c = { 0 };
	for (int i = 0; i < 10; i++)
		assert_int_equal(converge_after_pass(&c, 400, 1000, 500000, 30000), 0);
}

static void test_one_slow_pass_is_forgiven(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500000, 30000), 0);
	assert_int_equal(converge_after_pass(&c, 100, 1000, 500000, 30000), 0);
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500000, 30000), 0);
}

static void test_slow_passes_raise_the_throttle_to_the_cap(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500000, 30000), 0);
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500000, 30000), CONVERGE_FIRST_PCT);
	assert_int_equal(converge_after_pass(&c, 900, 1000, 500000, 30000),
			 CONVERGE_FIRST_PCT + CONVERGE_STEP_PCT);
	for (int i = 0; i < 20; i++)
		converge_after_pass(&c, 2000, 1000, 500000, 30000);
	assert_int_equal(c.throttle_pct, CONVERGE_MAX_PCT);
}

static void test_throttle_stays_once_it_helps(void **state)
{
	(void)state;
	struct converge c = { 0 };
	converge_after_pass(&c, 900, 1000, 500000, 30000);
	converge_after_pass(&c, 900, 1000, 500000, 30000);
	assert_int_equal(converge_after_pass(&c, 100, 1000, 50000, 30000), CONVERGE_FIRST_PCT);
}

/* A throttled guest's rest shrinks by the throttle's share each pass. */
static void test_shrinking_rest_gets_more_passes_before_the_switch(void **state)
{
	(void)state;
	struct converge c = { 0 };
	uint64_t sent = 430, dirty = 300;
	for (; dirty * 30 * CONVERGE_REFINE_FLOOR > 30000; sent = dirty, dirty = dirty * 7 / 10)
		assert_false(converge_switch_now(&c, dirty, sent, dirty * 30, 30000));
	assert_true(converge_switch_now(&c, dirty, sent, dirty * 30, 30000));
	assert_in_range(c.refine_passes, 4, CONVERGE_REFINE_PASSES);
}

static void test_a_rest_that_stops_shrinking_switches_at_the_second_pass(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_false(converge_switch_now(&c, 900, 1000, 25000, 30000)); /* kept 90%: a burst? */
	assert_true(converge_switch_now(&c, 900, 900, 25000, 30000));  /* no: a hot set */
	assert_int_equal(c.refine_passes, 1);
}

static void test_refining_passes_are_capped(void **state)
{
	(void)state;
	struct converge c = { 0 };
	for (int i = 0; i < CONVERGE_REFINE_PASSES; i++)
		assert_false(converge_switch_now(&c, 500, 1000, 20000, 30000));
	assert_true(converge_switch_now(&c, 500, 1000, 20000, 30000));
}

static void test_refining_a_halving_rest_does_not_throttle(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_refine_throttle(&c, 400, 1000, 0), 0);
	assert_int_equal(converge_refine_throttle(&c, 500, 1000, 0), 0);
}

static void test_refining_throttle_rises_while_the_rest_does_not_halve(void **state)
{
	(void)state;
	struct converge c = { 0 };
	assert_int_equal(converge_refine_throttle(&c, 600, 1000, 0), CONVERGE_REFINE_FIRST_PCT);
	assert_int_equal(converge_refine_throttle(&c, 400, 600, 0),
			 CONVERGE_REFINE_FIRST_PCT + CONVERGE_REFINE_STEP_PCT);
	assert_int_equal(converge_refine_throttle(&c, 100, 400, 0),
			 CONVERGE_REFINE_FIRST_PCT + CONVERGE_REFINE_STEP_PCT); /* halved: stays */
	for (int i = 0; i < 10; i++)
		converge_refine_throttle(&c, 90, 100, 0);
	assert_int_equal(c.refine_pct, CONVERGE_REFINE_MAX_PCT);
}

static void test_refining_throttle_starts_from_auto_converges(void **state)
{
	(void)state;
	struct converge c = { 0 };
	/* Auto-converge had reached 40%: refining never throttles less. */
	assert_int_equal(converge_refine_throttle(&c, 100, 1000, 40), 40);
	assert_int_equal(converge_refine_throttle(&c, 80, 100, 40), CONVERGE_REFINE_FIRST_PCT);
	/* Beyond the first step, a throttle already over it goes up a step. */
	struct converge d = { 0 };
	assert_int_equal(converge_refine_throttle(&d, 80, 100, 60), 60 + CONVERGE_REFINE_STEP_PCT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_converged_pass_changes_nothing),
		cmocka_unit_test(test_shrinking_passes_are_not_throttled),
		cmocka_unit_test(test_one_slow_pass_is_forgiven),
		cmocka_unit_test(test_slow_passes_raise_the_throttle_to_the_cap),
		cmocka_unit_test(test_throttle_stays_once_it_helps),
		cmocka_unit_test(test_shrinking_rest_gets_more_passes_before_the_switch),
		cmocka_unit_test(test_a_rest_that_stops_shrinking_switches_at_the_second_pass),
		cmocka_unit_test(test_refining_passes_are_capped),
		cmocka_unit_test(test_refining_a_halving_rest_does_not_throttle),
		cmocka_unit_test(test_refining_throttle_rises_while_the_rest_does_not_halve),
		cmocka_unit_test(test_refining_throttle_starts_from_auto_converges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
