/* postcopy_dst.h: the destination of a post-copy migration. The guest runs
 * here before all its pages have arrived: guest RAM is registered with
 * userfaultfd, so any access to a page still on the source (by a hart, a
 * device thread, or the kernel on their behalf) waits while that page is
 * requested ahead of the background stream. If the link drops, the guest
 * pauses and tern waits on the incoming address for the source to come
 * back (`tern vm migrate --resume`). docs/migration-strategies.md. */
#ifndef TERN_MIGRATION_POSTCOPY_DST_H
#define TERN_MIGRATION_POSTCOPY_DST_H

#include <stdint.h>

#include "migration/transport.h"
#include "util/error.h"

struct vm;
struct postcopy_dst;

/* Before READY, once everything sent before the switch is loaded: the
 * pages set in `owed` (owed_pages of them; ownership passes here) are to
 * come later. Drops the stale copies of those pages, registers guest RAM
 * and starts the threads, which wait for postcopy_dst_go: then the guest
 * starts on GO without waiting for any of this. Nothing may touch guest
 * RAM from here until the guest runs: an owed page would wait for GO.
 * listen_fd (or -1, owned from here on): the incoming address's listening
 * socket, on which the source's preempt connection (requested pages only)
 * is accepted after GO; without one, requested pages come on the main
 * connection with the rest. On failure *out may still need destroying. */
int postcopy_dst_prepare(struct postcopy_dst **out, struct vm *vm, int listen_fd,
			 uint64_t *owed, uint64_t owed_pages, const struct mig_address *addr,
			 struct error *err);
/* GO came over fd (owned from here on) from the source of `session`:
 * sends RUNNING and lets the threads serve faults and receive pages. The
 * caller resumes the guest after it. */
int postcopy_dst_go(struct postcopy_dst *p, int fd, const char *session, struct error *err);
/* After the guest stopped: ends the threads and releases guest RAM. */
void postcopy_dst_destroy(struct postcopy_dst *p);

#endif
