/* replica.h: continuous replication of a running VM to a standby that
 * keeps a paused replica, for disaster recovery (docs/replication.md).
 *
 * The source sends epochs. Epoch 0 is the bulk copy: every populated page,
 * sent while the guest runs (so not yet a consistent image), with dirty
 * tracking started before it. Every later epoch is taken with the guest
 * paused for a moment: the pages written since the last epoch are copied
 * out, with the harts' and devices' state, the guest resumes, and the
 * epoch goes to the standby, which receives it whole, verifies it whole
 * (every section's checksum and the epoch's digest), and only then
 * applies it: the replica always equals the VM at the end of some whole
 * epoch from epoch 1 on. Each epoch is a complete state stream of
 * docs/migration-format.md (header, CONFIG, RAM, MACHINE/HART/DEVICE,
 * END), preceded on the wire by a struct replica_epoch_header and
 * acknowledged with an EPOCH_ACK frame. */
#ifndef TERN_MIGRATION_REPLICA_H
#define TERN_MIGRATION_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "machine/vm.h"
#include "migration/ramcodec.h"
#include "util/error.h"

#define REPLICA_MAGIC 0x50455254u          /* "TREP", little-endian on the wire */
#define REPLICA_HEADER_SIZE 24
/* Epoch header flags. */
#define REPLICA_BULK 0x1u                   /* epoch 0: taken live, not a restore point */
#define REPLICA_ZSTD 0x2u                   /* the stream goes in compressed chunks (replica_wire.h) */
/* An epoch larger than this is refused (a corrupt length, not a VM). */
#define REPLICA_MAX_EPOCH_BYTES (64ull << 30)

/* On the wire: le32 magic, le32 flags, le64 epoch, le64 stream length. */
struct replica_epoch_header {
	uint32_t flags;
	uint64_t epoch;
	uint64_t length;
};

void replica_header_encode(const struct replica_epoch_header *h, uint8_t out[REPLICA_HEADER_SIZE]);
int replica_header_decode(const uint8_t in[REPLICA_HEADER_SIZE], struct replica_epoch_header *h,
			  struct error *err);

/* ---- source ----------------------------------------------------------- */

struct replica_params {
	uint32_t epoch_ms;      /* how often an epoch is taken */
	uint32_t rpo_ms;        /* the objective the status reports against */
	bool copy_storage;      /* the disks too: bulk copy, then written blocks each epoch */
	/* Synchronous: what the guest sends on its NICs is held until the
	 * epoch that produced it is on the standby (Remus), so no client sees
	 * output from state the replica lacks. */
	bool sync;
	/* zstd on the wire, after the pause: on, off, or auto (when the cost
	 * model says the epoch arrives sooner compressed: pagecodec.h). */
	enum codec_mode compress;
};

struct replica_stats {
	const char *phase;      /* "bulk", "protecting", "failed", "stopped", "completed" */
	char to[300];
	struct replica_params params;
	uint64_t epochs_acked;  /* the last epoch the standby has applied */
	uint64_t lag_ms;        /* now minus when that epoch was taken */
	bool rpo_met;           /* lag_ms <= rpo_ms (and an epoch >= 1 is there) */
	uint64_t bytes_last_epoch, bytes_total;         /* on the wire */
	uint64_t stream_bytes_last_epoch, stream_bytes_total; /* before compression */
	uint64_t epochs_compressed;
	uint64_t pages_last_epoch;
	uint64_t pause_us_last, pause_us_max;
	uint64_t bulk_ms;
	uint64_t disk_bytes_last_epoch; /* with copy_storage: written blocks sent */
	char error[512];
};

/* Starts replicating vm to the standby at `to` (tcp:HOST:PORT). Refused
 * while a migration or another replication runs. */
int replica_start(struct vm *vm, const char *to, const struct replica_params *p,
		  struct error *err);
void replica_status(struct vm *vm, struct replica_stats *out);
/* final: one last epoch is taken with the guest paused, and the guest
 * stays paused once the standby has it (phase "completed"): a planned
 * handover loses nothing; if that epoch fails, the guest resumes here. */
int replica_stop(struct vm *vm, bool final, struct error *err);
/* True while a replication owns the dirty map. */
bool replica_active(struct vm *vm);
/* At VM teardown. */
void replica_destroy(struct vm *vm);

/* ---- standby --------------------------------------------------------- */

/* `tern vm run --replica tcp:ADDR:PORT`: receives epochs into a paused
 * replica until the API's "failover" (then the replica runs from its last
 * complete epoch) or "stop". The process's exit status, as vm_run's. */
int replica_standby(struct vm_config *cfg, const char *uri);

#endif
