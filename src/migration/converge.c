/* converge.c: see converge.h. */
#include "migration/converge.h"

unsigned converge_after_pass(struct converge *c, uint64_t dirty, uint64_t sent,
			     uint64_t expect_ms, uint32_t downtime_ms)
{
	if (expect_ms <= downtime_ms)
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
			 uint64_t expect_ms, uint32_t downtime_ms)
{
	if (expect_ms * CONVERGE_REFINE_FLOOR <= downtime_ms ||
	    c->refine_passes >= CONVERGE_REFINE_PASSES)
		return true;
	if (dirty * 8 > sent * 7 && c->refine_stalls++)
		return true;
	c->refine_passes++;
	return false;
}
