/* diskcopy.h: live storage migration (`tern vm migrate --copy-storage`).
 *
 * Source: every disk's blocks are tracked from the start; a bulk copy sends
 * each data extent (holes are skipped, all-zero blocks go as flags), then
 * each pre-copy pass re-sends the blocks the guest wrote meanwhile, and the
 * stop-and-copy sends the last ones after the pause, when the block device
 * has finished the request it was serving: nothing written is left behind.
 *
 * Destination: a copied disk is written to an unnamed file (O_TMPFILE) in
 * the directory of the path it was given, so that a destination that fails
 * or is killed leaves nothing behind; the file is flushed before READY and
 * gets its name only at the commit (docs/migration-protocol.md).
 *
 * The DISK section's payload: docs/migration-format.md. */
#ifndef TERN_MIGRATION_DISKCOPY_H
#define TERN_MIGRATION_DISKCOPY_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "backends/disk_image.h"
#include "machine/vm.h"
#include "migration/stream.h"
#include "util/error.h"

#define DISK_SECTION_VERSION 1
#define DISK_REC_HEADER 16              /* le64 offset, le32 length, le32 flags */
#define DISK_REC_ZERO 0x1u              /* the range reads as zeroes: no data follows */
#define DISK_MAX_RECORD (1u << 20)      /* bytes one record may cover */
#define DISK_CHUNK (1u << 20)           /* bytes the sender reads at a time */

/* What a disk copy has done, read by migrate-status from other threads. */
struct disk_copy_stats {
	uint64_t bytes_total;           /* data found by the bulk copy's scan */
	uint64_t bytes_sent;            /* disk bytes sent (zero ranges count as sent) */
	uint64_t dirty_bytes;           /* written by the guest, not yet sent again */
};

struct disk_copy {
	unsigned n;
	struct disk_image *img[VM_MAX_DISKS];
	uint64_t *pending[VM_MAX_DISKS];/* blocks collected and not yet sent */
	uint64_t data_bytes[VM_MAX_DISKS];      /* each disk's data extents at the start */
	uint8_t *section;               /* a DISK section's payload being built */
	size_t len;
	uint8_t *chunk;                 /* DISK_CHUNK bytes read from an image */
	struct disk_copy_stats st;      /* fields read and written atomically */
};

/* Called between chunks: non-zero stops the copy (cancelled, the
 * destination gave up) with err set. */
typedef int (*disk_copy_tick)(void *ctx, struct error *err);

/* Starts tracking every disk of the VM and measures what the bulk copy
 * will send. On failure nothing is tracked. */
int disk_copy_begin(struct disk_copy *dc, struct vm *vm, struct error *err);
/* Sends every data extent of every disk. */
int disk_copy_bulk(struct disk_copy *dc, struct mig_writer *w, disk_copy_tick tick, void *ctx,
		   struct error *err);
/* Collects the blocks written since the last collection; returns the bytes
 * waiting to be sent (dirty_bytes). */
uint64_t disk_copy_sync(struct disk_copy *dc);
/* Sends the collected blocks, as they are now. */
int disk_copy_send_dirty(struct disk_copy *dc, struct mig_writer *w, disk_copy_tick tick,
			 void *ctx, struct error *err);
/* Stops tracking and frees; harmless on a zeroed or ended disk_copy. */
void disk_copy_end(struct disk_copy *dc);
void disk_copy_stats(const struct disk_copy *dc, struct disk_copy_stats *out);

/* ---- destination ---- */

struct disk_target {
	bool copy;                      /* this disk arrives in DISK sections */
	int fd;                         /* the unnamed file, -1 if none */
	int replaced_fd;                /* the image the commit replaced, until freed */
	struct disk_image writer;       /* the copy, opened read-write for DISK sections */
	char path[PATH_MAX];            /* the name it gets at the commit */
	char fd_path[64];               /* /proc/self/fd/N: how the VM opens it */
	uint64_t size;
	uint64_t unsynced;              /* bytes written since the last fdatasync */
};

struct disk_targets {
	unsigned n;
	struct disk_target t[VM_MAX_DISKS];
};

struct vm_shape;
/* For each disk the stream says is copied: checks the VM was given a path
 * for it, creates the unnamed file of the right size next to that path
 * (checking the file system has room for the data), and points the
 * config at it. Shared disks are left alone. On failure nothing is left. */
int disk_targets_prepare(struct disk_targets *dt, struct vm_config *cfg,
			 const struct vm_shape *shape, struct error *err);
/* Applies one DISK section to the VM's image `instance`, checking every
 * record first. */
int disk_copy_apply(struct disk_targets *dt, struct vm *vm, const struct mig_section *s,
		    struct error *err);
/* The same on an image: checks every record (alignment, bounds, flags,
 * lengths) and only then writes them all; adds the bytes to *written. */
int disk_section_apply(struct disk_image *d, unsigned disk, const uint8_t *payload,
		       size_t length, uint64_t *written, struct error *err);
/* Everything written so far reaches stable storage (before READY). */
int disk_targets_flush(struct disk_targets *dt, struct vm *vm, struct error *err);
/* Committed: each copied image gets its name (replacing what was there),
 * and the name is made durable. */
int disk_targets_commit(struct disk_targets *dt, struct vm *vm, struct error *err);
/* Closes what is left; an uncommitted copy disappears with it. */
void disk_targets_free(struct disk_targets *dt);

#endif
