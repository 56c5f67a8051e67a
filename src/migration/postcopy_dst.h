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

/* Once no more pages come before the switch (at DISCARD, or with the
 * owed map): registers guest RAM with userfaultfd and starts the threads,
 * which then wait for GO, so that neither costs downtime. From here until
 * the guest runs nothing may write guest RAM (a missing page would fault).
 * listen_fd (or -1, owned from here on): the incoming address's listening
 * socket, on which the source's preempt connection (requested pages only)
 * is accepted after GO; without one, requested pages come on the main
 * connection with the rest. On failure *out may still need destroying. */
int postcopy_dst_prepare(struct postcopy_dst **out, struct vm *vm, int listen_fd,
			 const struct mig_address *addr, struct error *err);
/* Before READY: the pages set in `owed` (owed_pages of them; the map's
 * ownership passes here) come after GO. Drops their stale copies, but
 * those in `dropped` (NULL: none), which a DISCARD took already. */
int postcopy_dst_owe(struct postcopy_dst *p, uint64_t *owed, uint64_t owed_pages,
		     const uint64_t *dropped, struct error *err);
/* GO came over fd (owned from here on) from the source of `session`:
 * sends RUNNING. Requests for pages go from then on; the caller resumes
 * the guest, and only then postcopy_dst_receive lets the pages in: its
 * threads would compete with the harts for the CPUs. */
int postcopy_dst_go(struct postcopy_dst *p, int fd, const char *session, struct error *err);
void postcopy_dst_receive(struct postcopy_dst *p);
/* After the guest stopped: ends the threads and releases guest RAM. */
void postcopy_dst_destroy(struct postcopy_dst *p);

#endif
