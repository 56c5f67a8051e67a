/* postcopy_src.h: the source of a post-copy migration, after GO. The guest
 * runs on the destination; its pages still here go over in the background,
 * and the ones a destination hart or device waits for (REQUEST frames) jump
 * the queue. The source keeps every page until the destination says DONE.
 * docs/migration-strategies.md. */
#ifndef TERN_MIGRATION_POSTCOPY_SRC_H
#define TERN_MIGRATION_POSTCOPY_SRC_H

#include <pthread.h>
#include <stdint.h>

#include "util/error.h"

struct vm;

struct postcopy_progress {
	uint64_t pages_left;            /* still owed */
	uint64_t pages_requested;       /* asked for by the destination */
	uint64_t bytes;                 /* on this connection */
};

/* Sends the pages set in `owed` over fd (clearing their bits as they go)
 * and waits for DONE. Returns 0 once the destination has every page, or
 * a negative errno when the connection failed: `owed` then still holds
 * what was not sent, and a reconnect takes the destination's own account.
 * `progress` is updated under `lock`; bandwidth 0 = unlimited. */
/* preempt_fd (or -1): a second connection to the destination that carries
 * only the pages it asks for, sent the moment the request arrives, so that
 * a faulting guest does not wait behind the background stream (QEMU's
 * postcopy-preempt). It is closed here. */
int postcopy_serve(struct vm *vm, int fd, int preempt_fd, uint64_t *owed, uint64_t bandwidth,
		   struct postcopy_progress *progress, pthread_mutex_t *lock,
		   struct error *err);

#endif
