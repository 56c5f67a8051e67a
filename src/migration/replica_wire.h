/* replica_wire.h: a replication epoch's bytes on the wire, zstd-compressed
 * in chunks (docs/replication.md, "On the wire").
 *
 * An epoch is a state stream staged in a memfd. Sent with the header flag
 * REPLICA_ZSTD, its `length` bytes on the wire are chunks, each:
 *
 *     le32 raw_len     1 .. REPLICA_CHUNK bytes of the stream
 *     le32 frame_len   0: the raw_len bytes follow as they are
 *                      else: one zstd frame of frame_len bytes follows,
 *                      which decompresses to exactly raw_len bytes
 *
 * Compression runs after the guest's pause, on the staged copy, so it
 * never lengthens the pause; a chunk that does not shrink goes raw. */
#ifndef TERN_MIGRATION_REPLICA_WIRE_H
#define TERN_MIGRATION_REPLICA_WIRE_H

#include <stdint.h>

#include "migration/pagecodec.h"
#include "util/error.h"

#define REPLICA_CHUNK (1u << 20)
#define REPLICA_CHUNK_HEADER 8

/* Compresses in_fd's bytes [0, len) into out_fd (emptied first) as
 * chunks; *wire_len: out_fd's length. 0 or a negative errno. */
int replica_chunks_encode(int in_fd, uint64_t len, int out_fd, struct zctx *z,
			  uint64_t *wire_len, struct error *err);

/* Reads exactly len bytes from the source (0 or a negative errno). */
typedef int (*replica_read_fn)(void *ctx, void *buf, size_t len, struct error *err);

/* Reads wire_len bytes of chunks through read_fn and writes the stream
 * they carry to out_fd (emptied first), refusing more than max_raw bytes
 * of it. Malformed chunks (lengths out of range, a frame that does not
 * decompress to its raw_len, a chunk running past wire_len) are refused
 * with a message. 0 or a negative errno. */
int replica_chunks_decode(replica_read_fn read_fn, void *ctx, uint64_t wire_len, int out_fd,
			  uint64_t max_raw, struct zdctx *zd, struct error *err);

#endif
