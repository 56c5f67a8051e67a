/* replica_wire.c: see replica_wire.h. */
#include "migration/replica_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/le.h"

static int empty(int fd, struct error *err)
{
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "emptying the epoch buffer");
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len, struct error *err)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return error_errno(err, errno, "staging the epoch (out of memory?)");
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int replica_chunks_encode(int in_fd, uint64_t len, int out_fd, struct zctx *z,
			  uint64_t *wire_len, struct error *err)
{
	int rc = empty(out_fd, err);
	if (rc < 0)
		return rc;
	uint8_t *raw = malloc(REPLICA_CHUNK);
	uint8_t *out = malloc(REPLICA_CHUNK_HEADER + REPLICA_CHUNK);
	if (!raw || !out) {
		free(raw);
		free(out);
		return error_set(err, ENOMEM, "no memory to compress an epoch");
	}
	*wire_len = 0;
	for (uint64_t off = 0; off < len && rc == 0;) {
		size_t want = len - off < REPLICA_CHUNK ? (size_t)(len - off) : REPLICA_CHUNK;
		ssize_t n = pread(in_fd, raw, want, (off_t)off);
		if (n != (ssize_t)want) {
			rc = error_errno(err, n < 0 ? errno : EIO, "reading back the epoch");
			break;
		}
		/* A frame no smaller than the chunk is not worth it: raw. */
		ssize_t z_len = zpages_compress(z, raw, want, out + REPLICA_CHUNK_HEADER, want - 1);
		put_le32(out, (uint32_t)want);
		put_le32(out + 4, z_len > 0 ? (uint32_t)z_len : 0);
		size_t body = z_len > 0 ? (size_t)z_len : want;
		rc = write_all(out_fd, out, REPLICA_CHUNK_HEADER, err);
		if (rc == 0)
			rc = write_all(out_fd, z_len > 0 ? out + REPLICA_CHUNK_HEADER : raw, body, err);
		*wire_len += REPLICA_CHUNK_HEADER + body;
		off += want;
	}
	free(raw);
	free(out);
	return rc;
}

int replica_chunks_decode(replica_read_fn read_fn, void *ctx, uint64_t wire_len, int out_fd,
			  uint64_t max_raw, struct zdctx *zd, struct error *err)
{
	int rc = empty(out_fd, err);
	if (rc < 0)
		return rc;
	uint8_t *in = malloc(REPLICA_CHUNK);
	uint8_t *raw = malloc(REPLICA_CHUNK);
	if (!in || !raw) {
		free(in);
		free(raw);
		return error_set(err, ENOMEM, "no memory to decompress an epoch");
	}
	uint64_t raw_total = 0;
	while (wire_len && rc == 0) {
		uint8_t hdr[REPLICA_CHUNK_HEADER];
		if (wire_len < sizeof(hdr)) {
			rc = error_set(err, EPROTO, "a compressed epoch ends inside a chunk header");
			break;
		}
		if ((rc = read_fn(ctx, hdr, sizeof(hdr), err)) < 0)
			break;
		wire_len -= sizeof(hdr);
		uint32_t raw_len = get_le32(hdr), frame_len = get_le32(hdr + 4);
		uint32_t body = frame_len ? frame_len : raw_len;
		if (raw_len == 0 || raw_len > REPLICA_CHUNK || frame_len >= raw_len) {
			rc = error_set(err, EPROTO, "a chunk of %u bytes in a frame of %u: out of "
				       "range (1 to %u bytes, the frame smaller)", raw_len, frame_len,
				       REPLICA_CHUNK);
			break;
		}
		if (body > wire_len) {
			rc = error_set(err, EPROTO, "a chunk of %u bytes runs past the epoch's end",
				       body);
			break;
		}
		if (raw_total + raw_len > max_raw) {
			rc = error_set(err, EPROTO, "a compressed epoch of more than %llu bytes",
				       (unsigned long long)max_raw);
			break;
		}
		if ((rc = read_fn(ctx, frame_len ? in : raw, body, err)) < 0)
			break;
		wire_len -= body;
		if (frame_len) {
			ssize_t n = zpages_decompress(zd, in, frame_len, raw, REPLICA_CHUNK, raw_len,
						      err);
			if (n < 0) {
				rc = (int)n;
				break;
			}
		}
		rc = write_all(out_fd, raw, raw_len, err);
		raw_total += raw_len;
	}
	free(in);
	free(raw);
	return rc;
}
