/* converge.c: see converge.h. */
#include "migration/converge.h"

unsigned converge_after_pass(struct converge *c, uint64_t dirty, uint64_t sent,
			     uint64_t expect_us, uint64_t limit_us)
{
	if (expect_us <= limit_us)
		return c->throttle_pct;      /* converged: the switch-over comes next */
	if (dirty * 2 <= sent) {
		c->slow_passes = 0;          /* shrinking fast enough as it is */
		return c->throttle_pct;
	}
	/* One slow pass may be a burst (a page cache flush, say); two in a
	 * row are the guest's rate. */
	if (++c->slow_passes < 2)
		return c->throttle_pct;
	unsigned next = c->throttle_pct ? c->throttle_pct + CONVERGE_STEP_PCT : CONVERGE_FIRST_PCT;
	c->throttle_pct = next > CONVERGE_MAX_PCT ? CONVERGE_MAX_PCT : next;
	return c->throttle_pct;
}

bool converge_switch_now(struct converge *c, uint64_t dirty, uint64_t sent,
			 uint64_t expect_us, uint64_t limit_us)
{
	if (expect_us * CONVERGE_REFINE_FLOOR <= limit_us ||
	    c->refine_passes >= CONVERGE_REFINE_PASSES)
		return true;
	if (dirty * 8 > sent * 7 && c->refine_stalls++)
		return true;
	c->refine_passes++;
	return false;
}

unsigned converge_refine_throttle(struct converge *c, uint64_t dirty, uint64_t sent,
				  unsigned throttle_pct)
{
	if (c->refine_pct < throttle_pct)
		c->refine_pct = throttle_pct;
	if (dirty * 2 > sent) {
		unsigned next = c->refine_pct < CONVERGE_REFINE_FIRST_PCT
					? CONVERGE_REFINE_FIRST_PCT
					: c->refine_pct + CONVERGE_REFINE_STEP_PCT;
		c->refine_pct = next > CONVERGE_REFINE_MAX_PCT ? CONVERGE_REFINE_MAX_PCT : next;
	}
	return c->refine_pct;
}
