/* channels.h: a live migration over several TCP connections. The main
 * connection carries the stream as always; with N channels it announces
 * them (a CHANNELS section) and N - 1 more connections each carry the RAM
 * of every Nth 1 MiB chunk of guest RAM, sent by a thread of their own, so
 * that page copying, encoding and hashing use several cores. A page always
 * travels on the same channel, so its copies arrive in the order sent.
 * Device state, SYNC, RAMHASH and the switch-over stay on the main one. */
#ifndef TERN_MIGRATION_CHANNELS_H
#define TERN_MIGRATION_CHANNELS_H

#include <pthread.h>
#include <stdint.h>

#include "migration/ramcodec.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "util/error.h"

#define MIG_MAX_CHANNELS 8

struct vm;
struct ram_stats;

/* Source side. Channel 0 is the main connection and its writer. */
struct mig_channels {
	unsigned n;
	int fds[MIG_MAX_CHANNELS];
	struct mig_writer *w[MIG_MAX_CHANNELS];
	struct mig_writer aux[MIG_MAX_CHANNELS];
	struct ram_codec *codec[MIG_MAX_CHANNELS];
	struct ram_codec aux_codec[MIG_MAX_CHANNELS];
	bool ended;                     /* mig_channels_end done */
};

/* Announces n channels on the main writer and opens the n - 1 others,
 * each with a codec like main_codec's (which becomes channel 0's share). */
int mig_channels_open(struct mig_channels *c, unsigned n, const struct mig_address *addr,
		      int stall_ms, struct mig_writer *main_w, struct ram_codec *main_codec,
		      const struct ram_codec_params *params, uint64_t ram_size, struct error *err);
/* One pass: every channel sends its share of bitmap (NULL: of every
 * populated page) at once; stats add up. */
int mig_channels_send(struct mig_channels *c, struct vm *vm, const uint64_t *bitmap,
		      struct ram_stats *stats, struct error *err);
/* Ends the other channels' streams (before the main one's final state, or
 * before a DISCARD); once, later calls do nothing. */
int mig_channels_end(struct mig_channels *c, struct error *err);
/* From any thread: makes every channel's writes fail (cancel, teardown). */
void mig_channels_abort(struct mig_channels *c, int code, const char *why);
/* Bytes written on all channels but the main one. */
uint64_t mig_channels_aux_bytes(struct mig_channels *c);
void mig_channels_close(struct mig_channels *c);

/* Destination side. */
struct mig_channels_in {
	unsigned n;
	struct vm *vm;
	int fds[MIG_MAX_CHANNELS];
	pthread_t threads[MIG_MAX_CHANNELS];
	int rc[MIG_MAX_CHANNELS];
	struct error err[MIG_MAX_CHANNELS];
	uint64_t pages[MIG_MAX_CHANNELS];
};

/* For a CHANNELS section (payload): accepts the other connections on
 * listen_fd and starts a reader for each, applying its RAM sections. */
int mig_channels_accept(struct mig_channels_in *in, struct vm *vm, int listen_fd,
			const struct mig_section *s, int stall_ms, struct error *err);
/* Waits for every reader to reach its END; the first failure, if any. */
int mig_channels_join(struct mig_channels_in *in, struct error *err);
/* On failure: cuts the channels and waits for their readers. */
void mig_channels_stop(struct mig_channels_in *in);

#endif
