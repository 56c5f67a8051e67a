/* outgoing.h: the source side of a live migration (pre-copy), run by a
 * thread of its own while the guest keeps running. Protocol:
 * docs/migration-protocol.md. */
#ifndef TERN_MIGRATION_OUTGOING_H
#define TERN_MIGRATION_OUTGOING_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/ramcodec.h"
#include "util/error.h"

struct vm;

enum mig_phase {
	MIG_PHASE_NONE,
	MIG_PHASE_SETUP,        /* connecting, sending CONFIG */
	MIG_PHASE_PRECOPY,      /* passes over memory, guest running */
	MIG_PHASE_STOPCOPY,     /* guest paused, the rest and device state */
	MIG_PHASE_COMMIT,       /* waiting for READY / RUNNING */
	MIG_PHASE_SWITCHOVER,   /* destination ready, guest paused: waiting for
				 * migrate-continue (params.switchover_gate) */
	MIG_PHASE_POSTCOPY,     /* the guest runs there; its last pages go over */
	MIG_PHASE_POSTCOPY_PAUSED, /* link lost in post-copy: waiting for --resume */
	MIG_PHASE_COMPLETED,    /* the guest runs on the destination */
	MIG_PHASE_FAILED,       /* the guest runs here */
	MIG_PHASE_CANCELLED,    /* the guest runs here */
	MIG_PHASE_UNKNOWN,      /* RUNNING never came: the guest stays paused here */
};

/* How to make a migration finish when pre-copy alone does not converge. */
enum mig_strategy {
	MIG_STRATEGY_AUTO,          /* pre-copy, auto-converge, then post-copy if need be */
	MIG_STRATEGY_PRECOPY,       /* passes only; after max_passes, stop and copy the rest */
	MIG_STRATEGY_AUTO_CONVERGE, /* throttle the harts while passes do not shrink the rest */
	MIG_STRATEGY_POSTCOPY,      /* one pass, then run there and send the rest after */
	MIG_STRATEGY_HYBRID,        /* passes while they converge, then post-copy */
};

struct mig_params {
	uint32_t downtime_ms;   /* switch over when the rest fits in this */
	uint64_t bandwidth;     /* bytes per second, 0 = unlimited */
	uint32_t max_passes;    /* switch over after this many passes anyway */
	enum mig_strategy strategy;
	struct ram_codec_params codec;
	bool verify;            /* send a digest of all RAM; the destination checks it */
	unsigned streams;       /* connections carrying RAM (1 to 8) */
	bool copy_storage;      /* copy the disks too (diskcopy.h), not shared storage */
	/* Hold the switch-over, once the destination is ready and before GO,
	 * until migration_continue (or cancel, which resumes the guest here):
	 * a cluster hands the VM's ownership over in between. */
	bool switchover_gate;
};

const char *mig_strategy_name(enum mig_strategy s);
/* 0 and *out set, or -EINVAL for a name that is not a strategy. */
int mig_strategy_parse(const char *name, enum mig_strategy *out);

#define MIG_DEFAULT_DOWNTIME_MS 30
#define MIG_DEFAULT_MAX_PASSES 30

struct mig_stats {
	enum mig_phase phase;
	char to[300];
	uint32_t pass;
	uint64_t bytes_sent;
	uint64_t pages_sent;            /* with data or as zero flags */
	uint64_t pages_remaining;       /* dirty at the last sync */
	uint64_t dirty_rate;            /* pages per second over the last pass */
	uint64_t bandwidth;             /* bytes per second over the last pass */
	uint64_t expected_downtime_ms;
	unsigned throttle_pct;          /* auto-converge's current throttle */
	uint64_t throttle_stall_ms;     /* hart time spent waiting under it, all harts */
	uint64_t postcopy_requests;     /* pages the destination waited for */
	/* --copy-storage: data to copy, disk bytes sent, and written by the
	 * guest since last sent (at the last sync). */
	uint64_t disk_bytes_total, disk_bytes_sent, disk_dirty_bytes;
	struct ram_codec_stats codec;
	uint64_t elapsed_ms;
	uint64_t downtime_us;           /* pause to RUNNING, once completed */
	/* Where that downtime went: pause until the final state was in the
	 * socket (what QEMU calls downtime), and until READY came back (the
	 * destination had applied it). The rest is GO and RUNNING. */
	uint64_t downtime_sent_us, downtime_ready_us;
	struct mig_params params;
	char error[512];
};

const char *mig_phase_name(enum mig_phase phase);
bool mig_phase_finished(enum mig_phase phase);

/* Starts migrating vm to `to` ("tcp:HOST:PORT"). Fails if one is running. */
int migration_start(struct vm *vm, const char *to, const struct mig_params *params,
		    struct error *err);
/* A snapshot of the current (or last) migration's statistics. */
void migration_status(struct vm *vm, struct mig_stats *out);
/* Changes parameters of the running migration (fields < 0: unchanged). */
int migration_set(struct vm *vm, int64_t downtime_ms, int64_t bandwidth, int64_t max_passes,
		  struct error *err);
int migration_cancel(struct vm *vm, struct error *err);
/* Lets a migration waiting at its switch-over gate send GO. */
int migration_continue(struct vm *vm, struct error *err);
/* After the link failed in post-copy: reconnects to `to` (NULL: the same
 * destination) and carries on. */
int migration_resume(struct vm *vm, const char *to, struct error *err);
/* True if the last migration ended with its outcome unknown. */
bool migration_outcome_unknown(struct vm *vm);
/* 0 if no migration is under way (or, with running_ok, only its passes,
 * while the guest still runs here); else -EBUSY naming it, for `what`. */
int migration_check_idle(struct vm *vm, const char *what, bool running_ok, struct error *err);
/* Joins the migration thread (at VM teardown). */
void migration_destroy(struct vm *vm);

#endif
