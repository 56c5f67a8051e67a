/* vmstate.h: the content of the VM state stream: what a VM's CONFIG, RAM,
 * MACHINE, HART and DEVICE sections hold, how they are produced from a
 * paused VM, and how they are checked and applied to a fresh VM. Snapshots
 * and live migration both use these functions; only the order and the
 * transport differ. Format: docs/migration-format.md. */
#ifndef TERN_MIGRATION_VMSTATE_H
#define TERN_MIGRATION_VMSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/stream.h"
#include "util/error.h"

struct vm;
struct ram_codec;

/* Page record flags (the low 12 bits of a record's first word). */
#define VMSTATE_PAGE_ZERO 0x1ull
#define VMSTATE_PAGE_DATA 0x2ull
#define VMSTATE_PAGE_DELTA 0x4ull   /* le16 length, then a delta (pagecodec.h) */

struct ram_stats {
	uint64_t pages_data;     /* sent with contents */
	uint64_t pages_zero;     /* sent as a flag */
	uint64_t pages_skipped;  /* never populated: not scanned, not sent */
};

/* The shape a stream's CONFIG section describes: enough to build the
 * target VM before the rest is checked against it. */
#define VMSTATE_MAX_DISKS 4   /* VM_MAX_DISKS */

struct vm_shape_disk {
	uint64_t size;           /* bytes */
	bool read_only;
	bool copy;               /* --copy-storage: its blocks follow in DISK sections */
	uint64_t data_bytes;     /* what the copy will bring (data extents) */
};

struct vm_shape {
	uint64_t ram_base, ram_size;
	uint32_t num_harts;
	/* From a version 2 CONFIG; a version 1 stream (an older snapshot) says
	 * nothing about disks: num_disks 0, has_disks false. */
	bool has_disks;
	unsigned num_disks;
	struct vm_shape_disk disks[VMSTATE_MAX_DISKS];
	/* The CONFIG payload, inside the reader: valid until its next read. */
	const uint8_t *config;
	uint64_t config_len;
};

/* `copy`: which disks a storage migration copies (NULL: none), and each
 * one's data bytes. */
int vmstate_save_config(struct vm *vm, struct mig_writer *w, const uint64_t *copy_data_bytes,
			struct error *err);
/* Sends guest RAM pages: every populated page when `bitmap` is NULL (a
 * snapshot, a first pass), else the pages whose bits are set. */
int vmstate_save_ram(struct vm *vm, struct mig_writer *w, const uint64_t *bitmap,
		     struct ram_stats *stats, struct error *err);
/* The same, with pages and sections encoded by codec (ramcodec.h). */
int vmstate_save_ram_coded(struct vm *vm, struct mig_writer *w, const uint64_t *bitmap,
			   struct ram_codec *codec, struct ram_stats *stats, struct error *err);
/* RAMHASH: a digest of all guest RAM as it is now (the VM paused), which
 * the receiver checks its copy against once it has loaded everything. */
int vmstate_save_ramhash(struct vm *vm, struct mig_writer *w, struct error *err);
uint64_t vmstate_ram_digest(struct vm *vm);
/* One RAM section with the n pages numbered in pfns (n <= 256). */
int vmstate_save_pages(struct vm *vm, struct mig_writer *w, const uint64_t *pfns, unsigned n,
		       struct ram_stats *stats, struct error *err);
/* The POSTCOPY section: the pages (bits set in `owed`) the destination
 * must not take from what it has, because they come after GO. */
int vmstate_save_postcopy(struct vm *vm, struct mig_writer *w, const uint64_t *owed,
			  struct error *err);
/* The DISCARD section, before a switch to post-copy: the destination's
 * copies of these pages (bits set in `stale`) are out of date; it drops
 * them now, while the guest still runs here, rather than in the pause.
 * After it no RAM section follows: those pages come by post-copy. */
int vmstate_save_discard(struct vm *vm, struct mig_writer *w, const uint64_t *stale,
			 struct error *err);
/* Checks every page record of a RAM section against the VM's RAM (deltas
 * refused: post-copy sends whole pages), then calls `apply` for each: the
 * page's guest-physical address, and its 4 KiB or NULL for a zero page.
 * Stops at the first non-zero return. */
int vmstate_for_each_page(struct vm *vm, const struct mig_section *s,
			  int (*apply)(void *ctx, uint64_t gpa, const uint8_t *data), void *ctx,
			  struct error *err);
/* MACHINE, HART and DEVICE sections. The VM must be paused. */
int vmstate_save_machine(struct vm *vm, struct mig_writer *w, struct error *err);

/* A whole snapshot: header, CONFIG, RAM, MACHINE/HARTs/DEVICEs, END. */
int vmstate_save_all(struct vm *vm, struct mig_writer *w, struct ram_stats *stats,
		     struct error *err);

/* Reads the header and the CONFIG section that must follow it. */
int vmstate_read_shape(struct mig_reader *r, struct vm_shape *shape, struct error *err);

struct vmstate_loader {
	struct vm *vm;
	bool config_checked;
	bool machine_seen;
	uint64_t harts_seen;       /* bit per hart */
	uint64_t devices_seen;     /* bit per bus index */
	bool fresh_ram;            /* target RAM never touched: ZERO pages need no write */
	struct ram_stats ram;
	uint64_t guest_time;       /* from MACHINE */
	bool live;                 /* a live migration: deltas, post-copy allowed */
	uint64_t *owed;            /* from POSTCOPY: pages that come after GO (malloc'd) */
	uint64_t *discarded;       /* from DISCARD: pages dropped already (malloc'd) */
	bool has_ramhash;          /* RAMHASH came: check RAM at the end of the load */
	/* Called at a SYNC section (live migration: answers SYNCED). */
	int (*on_sync)(void *ctx, struct error *err);
	void *sync_ctx;
	/* Called at a DISCARD section, before the drop (live migration:
	 * every connection's pages must be in place). */
	int (*on_discard)(void *ctx, struct error *err);
	/* Called at a CHANNELS section (live migration: accept the others). */
	int (*on_channels)(void *ctx, const struct mig_section *s, struct error *err);
	uint64_t ramhash;
	uint64_t owed_pages;
	/* Live migration with --copy-storage: where DISK sections go. */
	struct disk_targets *disks;
};

void vmstate_loader_init(struct vmstate_loader *l, struct vm *vm, bool fresh_ram);
void vmstate_loader_free(struct vmstate_loader *l);
/* Checks the stream's CONFIG (from vmstate_read_shape, before any further
 * read) against the VM. */
int vmstate_check_config(struct vmstate_loader *l, const struct vm_shape *shape,
			 struct error *err);
/* Applies one verified section. */
int vmstate_load_section(struct vmstate_loader *l, const struct mig_section *s,
			 struct error *err);
/* Reads and applies sections until END; then checks that every hart and
 * device got its state. */
int vmstate_load_rest(struct vmstate_loader *l, struct mig_reader *r, struct error *err);
/* After all RAM arrived (every channel): a RAMHASH, if one came, matches. */
int vmstate_check_ramhash(struct vmstate_loader *l, struct error *err);

#endif
