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

/* After GO: the pages set in `owed` (owed_pages of them; ownership passes
 * here) come over fd, whose source identified itself as `session`. Drops
 * the stale copies of those pages, registers guest RAM, sends RUNNING and
 * starts serving faults and receiving pages. */
/* listen_fd (or -1, owned from here on): the incoming address's listening
 * socket, on which the source's preempt connection (requested pages only)
 * is accepted; without one, requested pages come on fd with the rest. */
int postcopy_dst_start(struct postcopy_dst **out, struct vm *vm, int fd, int listen_fd,
		       uint64_t *owed, uint64_t owed_pages, const char *session,
		       const struct mig_address *addr, struct error *err);
/* After the guest stopped: ends the threads and releases guest RAM. */
void postcopy_dst_destroy(struct postcopy_dst *p);

#endif
