/* converge.h: auto-converge, the policy that throttles the harts when
 * pre-copy passes stop shrinking the set of pages left to send. */
#ifndef TERN_MIGRATION_CONVERGE_H
#define TERN_MIGRATION_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>

#define CONVERGE_FIRST_PCT 20   /* the first step, as QEMU's cpu-throttle-initial */
#define CONVERGE_STEP_PCT 10
#define CONVERGE_MAX_PCT 99
#define CONVERGE_REFINE_PASSES 12
#define CONVERGE_REFINE_FLOOR 128  /* refine down to downtime / this */
/* The refining passes' throttle: from this, raised a step each pass that
 * does not halve the rest, up to the cap. */
#define CONVERGE_REFINE_FIRST_PCT 50
#define CONVERGE_REFINE_STEP_PCT 20
#define CONVERGE_REFINE_MAX_PCT 90

struct converge {
	unsigned throttle_pct;  /* what the harts get throttled by now */
	unsigned slow_passes;   /* passes in a row that did not halve the rest */
	unsigned refine_passes; /* passes run after the rest already fitted */
	unsigned refine_stalls; /* of those, passes that did not shrink it */
	unsigned refine_pct;    /* their throttle */
};

/* After a pass: `dirty` pages were dirtied while it sent `sent` pages, and
 * sending the dirty ones would take expect_us against a downtime limit of
 * limit_us (microseconds: the last passes' rests are under 1 ms). A pass
 * that leaves more than half as many pages as it sent is not converging
 * fast enough: the second such pass in a row starts the throttle, and each
 * further one raises it. Returns the new throttle. */
unsigned converge_after_pass(struct converge *c, uint64_t dirty, uint64_t sent,
			     uint64_t expect_us, uint64_t limit_us);

/* Once the rest fits the limit (expect_us <= limit_us): true to switch
 * over now. False asks for one more pass, taken while the guest runs,
 * because passes still shrink the rest (this one left at most 7/8 of the
 * `sent` pages of the pass before; a 20% throttle leaves 4/5) and it would
 * still take more than 1/CONVERGE_REFINE_FLOOR of the limit. One pass that
 * does not shrink it is forgiven (a burst), the second ends it (a hot set
 * the guest keeps rewriting). A throttled guest's rest shrinks by the
 * throttle's share each pass, so a few short passes cut the downtime to a
 * fraction for about the time they save. At most CONVERGE_REFINE_PASSES. */
bool converge_switch_now(struct converge *c, uint64_t dirty, uint64_t sent,
			 uint64_t expect_us, uint64_t limit_us);

/* The throttle for the next refining pass, after one that left `dirty` of
 * the `sent` pages before it, when auto-converge's was throttle_pct. A
 * pass that did not halve the rest raises it: to CONVERGE_REFINE_FIRST_PCT,
 * then by steps to CONVERGE_REFINE_MAX_PCT. The rest a pass leaves is what
 * the guest dirties while the pass runs; a pass lasts a few milliseconds,
 * so a hard throttle costs the guest that long and leaves a rest of a
 * fraction of a millisecond for the pause. Never below throttle_pct. */
unsigned converge_refine_throttle(struct converge *c, uint64_t dirty, uint64_t sent,
				  unsigned throttle_pct);

#endif
