/* incoming.h: the destination side of a live migration. */
#ifndef TERN_MIGRATION_INCOMING_H
#define TERN_MIGRATION_INCOMING_H

#include <stdbool.h>

struct vm_config;

/* Waits on `uri` ("tcp:ADDR:PORT") for one incoming migration, builds the
 * VM it describes (memory and harts from the stream unless given, which
 * must then match; disks and NICs from cfg), loads it, and after GO runs
 * it. Returns the process exit status. */
int migration_incoming(struct vm_config *cfg, bool memory_given, bool cpus_given,
		       const char *uri);

#endif
