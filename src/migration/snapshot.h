/* snapshot.h: a VM's whole state to a file and back, through the state
 * stream (docs/migration-format.md). The file appears only when complete:
 * it is written under a temporary name, synced, then renamed. */
#ifndef TERN_MIGRATION_SNAPSHOT_H
#define TERN_MIGRATION_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/stream.h"
#include "migration/vmstate.h"
#include "util/error.h"

struct vm;

struct snapshot_report {
	uint64_t bytes;            /* file size */
	uint64_t pause_us;         /* guest stopped: pause to resume (or to stop) */
	uint64_t write_us;         /* writing and syncing the file */
	struct ram_stats ram;
};

/* Pauses the VM (unless already paused), writes its state to path, then
 * resumes it, or, with stop_after, stops it (tern then exits 0). On any
 * failure the VM is resumed as it was and no file is left at path. */
int snapshot_save(struct vm *vm, const char *path, bool stop_after,
		  struct snapshot_report *report, struct error *err);

struct snapshot_source {
	int fd;
	char what[256];
	struct mig_reader reader;
	struct vm_shape shape;
};

/* Opens a snapshot and reads the shape of the VM it holds. */
int snapshot_open(struct snapshot_source *src, const char *path, struct error *err);
/* Checks the snapshot against vm (built from the command line, never run)
 * and loads every section; on failure the VM must not be started. */
int snapshot_load(struct snapshot_source *src, struct vm *vm, struct ram_stats *ram,
		  struct error *err);
void snapshot_close(struct snapshot_source *src);

#endif
