/* stream.c: writing and reading the framed VM state stream.
 *
 * The writer buffers output and hashes every byte into a running XXH3 so
 * that END can carry a digest of the stream; each section also carries its
 * own XXH3 so that a reader never applies a section it has not verified.
 * The reader bounds every length before allocating or reading. */
#include "migration/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define WRITE_BUFFER (1u << 20)
#define READ_BUFFER (1u << 20)

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

const char *mig_section_name(uint32_t type)
{
	switch (type) {
	case MIG_SEC_CONFIG: return "CONFIG";
	case MIG_SEC_RAM: return "RAM";
	case MIG_SEC_MACHINE: return "MACHINE";
	case MIG_SEC_HART: return "HART";
	case MIG_SEC_DEVICE: return "DEVICE";
	case MIG_SEC_END: return "END";
	}
	return "unknown";
}

/* ---- writer ------------------------------------------------------------ */

static int writer_fail(struct mig_writer *w, int code, const char *what)
{
	if (!w->failed) {
		w->failed = true;
		error_errno(&w->err, code, "%s", what);
	}
	return -code;
}

int mig_writer_init(struct mig_writer *w, int fd, struct error *err)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->cap = WRITE_BUFFER;
	w->buf = malloc(w->cap);
	w->hash = XXH3_createState();
	if (!w->buf || !w->hash) {
		mig_writer_free(w);
		return error_set(err, ENOMEM, "cannot allocate the stream writer");
	}
	XXH3_64bits_reset(w->hash);
	return 0;
}

void mig_writer_free(struct mig_writer *w)
{
	free(w->buf);
	if (w->hash)
		XXH3_freeState(w->hash);
	w->buf = NULL;
	w->hash = NULL;
}

int mig_flush(struct mig_writer *w)
{
	size_t done = 0;
	while (!w->failed && done < w->len) {
		ssize_t n = write(w->fd, w->buf + done, w->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return writer_fail(w, errno, "writing the state stream");
		if (n == 0)
			return writer_fail(w, EIO, "writing the state stream");
		done += (size_t)n;
	}
	w->len = 0;
	return w->failed ? -(w->err.code ? w->err.code : EIO) : 0;
}

/* Appends to the output (hashing it), flushing when the buffer fills. */
static int emit(struct mig_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (w->failed)
		return -EIO;
	XXH3_64bits_update(w->hash, p, len);
	w->bytes += len;
	while (len) {
		if (w->len == w->cap && mig_flush(w) < 0)
			return -EIO;
		size_t n = w->cap - w->len < len ? w->cap - w->len : len;
		memcpy(w->buf + w->len, p, n);
		w->len += n;
		p += n;
		len -= n;
	}
	return 0;
}

int mig_write_header(struct mig_writer *w)
{
	uint8_t h[MIG_HEADER_SIZE];
	memcpy(h, MIG_MAGIC, 8);
	put_le32(h + 8, MIG_FORMAT_VERSION);
	put_le32(h + 12, 0);
	return emit(w, h, sizeof(h));
}

int mig_write_section(struct mig_writer *w, uint32_t type, uint32_t instance, uint32_t version,
		      const void *payload, size_t len)
{
	if (len > MIG_MAX_SECTION)
		return writer_fail(w, EFBIG, "a state section is larger than the format allows");
	uint8_t h[MIG_SECTION_HEADER_SIZE], sum[8];
	put_le32(h, type);
	put_le32(h + 4, instance);
	put_le32(h + 8, version);
	put_le32(h + 12, 0);
	put_le64(h + 16, len);
	XXH3_state_t *s = XXH3_createState();
	if (!s)
		return writer_fail(w, ENOMEM, "hashing a state section");
	XXH3_64bits_reset(s);
	XXH3_64bits_update(s, h, sizeof(h));
	XXH3_64bits_update(s, payload, len);
	put_le64(sum, XXH3_64bits_digest(s));
	XXH3_freeState(s);
	int rc = emit(w, h, sizeof(h));
	if (!rc)
		rc = emit(w, payload, len);
	if (!rc)
		rc = emit(w, sum, sizeof(sum));
	if (!rc)
		w->sections++;
	return rc;
}

int mig_write_end(struct mig_writer *w)
{
	uint8_t p[16];
	put_le64(p, w->sections);
	put_le64(p + 8, XXH3_64bits_digest(w->hash));
	int rc = mig_write_section(w, MIG_SEC_END, 0, 1, p, sizeof(p));
	if (!rc)
		rc = mig_flush(w);
	return rc;
}

int mig_writer_status(const struct mig_writer *w, struct error *err)
{
	if (!w->failed)
		return 0;
	if (err)
		*err = w->err;
	return -(w->err.code ? w->err.code : EIO);
}

/* ---- reader ------------------------------------------------------------ */

int mig_reader_init(struct mig_reader *r, int fd, const char *what, struct error *err)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->what = what;
	r->cap = READ_BUFFER;
	r->buf = malloc(r->cap);
	r->hash = XXH3_createState();
	if (!r->buf || !r->hash) {
		mig_reader_free(r);
		return error_set(err, ENOMEM, "cannot allocate the stream reader");
	}
	XXH3_64bits_reset(r->hash);
	return 0;
}

void mig_reader_free(struct mig_reader *r)
{
	free(r->buf);
	free(r->payload);
	if (r->hash)
		XXH3_freeState(r->hash);
	r->buf = r->payload = NULL;
	r->hash = NULL;
}

/* Exactly len bytes into dst, hashed; -EPIPE-like message on a short stream. */
static int take(struct mig_reader *r, void *dst, size_t len, const char *part, struct error *err)
{
	uint8_t *out = dst;
	size_t want = len;
	while (want) {
		if (r->start == r->end) {
			ssize_t n = read(r->fd, r->buf, r->cap);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return error_errno(err, errno, "%s: reading %s", r->what, part);
			if (n == 0)
				return error_set(err, EPROTO, "%s is truncated: it ends inside %s "
						 "(after %llu bytes)", r->what, part,
						 (unsigned long long)(r->bytes + len - want));
			r->start = 0;
			r->end = (size_t)n;
		}
		size_t n = r->end - r->start < want ? r->end - r->start : want;
		memcpy(out, r->buf + r->start, n);
		r->start += n;
		out += n;
		want -= n;
	}
	XXH3_64bits_update(r->hash, dst, len);
	r->bytes += len;
	return 0;
}

int mig_read_header(struct mig_reader *r, struct error *err)
{
	uint8_t h[MIG_HEADER_SIZE];
	int rc = take(r, h, sizeof(h), "the stream header", err);
	if (rc)
		return rc;
	if (memcmp(h, MIG_MAGIC, 8) != 0)
		return error_set(err, EPROTO, "%s is not a tern VM state stream (bad magic)", r->what);
	uint32_t version = get_le32(h + 8), flags = get_le32(h + 12);
	if (version != MIG_FORMAT_VERSION)
		return error_set(err, EPROTO, "%s has stream format version %u; this tern reads "
				 "version %u", r->what, version, MIG_FORMAT_VERSION);
	if (flags)
		return error_set(err, EPROTO, "%s has unknown header flags 0x%x", r->what, flags);
	return 0;
}

static bool known_type(uint32_t type)
{
	return type >= MIG_SEC_CONFIG && (type <= MIG_SEC_DEVICE || type == MIG_SEC_END);
}

int mig_read_section(struct mig_reader *r, struct mig_section *s, struct error *err)
{
	if (r->ended)
		return 0;
	uint64_t digest_before = XXH3_64bits_digest(r->hash);
	uint8_t h[MIG_SECTION_HEADER_SIZE];
	char part[96];
	snprintf(part, sizeof(part), "the header of section %llu",
		 (unsigned long long)r->sections + 1);
	int rc = take(r, h, sizeof(h), part, err);
	if (rc)
		return rc;
	s->type = get_le32(h);
	s->instance = get_le32(h + 4);
	s->version = get_le32(h + 8);
	s->flags = get_le32(h + 12);
	s->length = get_le64(h + 16);
	const char *name = mig_section_name(s->type);
	if (!known_type(s->type))
		return error_set(err, EPROTO, "%s: section %llu has unknown type %u", r->what,
				 (unsigned long long)r->sections + 1, s->type);
	if (s->flags)
		return error_set(err, EPROTO, "%s: %s section has unknown flags 0x%x", r->what, name,
				 s->flags);
	if (s->length > MIG_MAX_SECTION)
		return error_set(err, EPROTO, "%s: %s section claims %llu bytes, more than the "
				 "%u the format allows", r->what, name,
				 (unsigned long long)s->length, MIG_MAX_SECTION);
	if (s->length > r->payload_cap) {
		uint8_t *p = realloc(r->payload, s->length);
		if (!p)
			return error_set(err, ENOMEM, "%s: no memory for a %llu-byte section", r->what,
					 (unsigned long long)s->length);
		r->payload = p;
		r->payload_cap = s->length;
	}
	snprintf(part, sizeof(part), "its %s section", name);
	rc = take(r, r->payload, s->length, part, err);
	uint8_t sum[8];
	if (!rc)
		rc = take(r, sum, sizeof(sum), part, err);
	if (rc)
		return rc;

	XXH3_state_t *st = XXH3_createState();
	if (!st)
		return error_set(err, ENOMEM, "%s: cannot hash a section", r->what);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, sizeof(h));
	XXH3_64bits_update(st, r->payload, s->length);
	uint64_t expect = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	if (get_le64(sum) != expect)
		return error_set(err, EPROTO, "%s is corrupt: the checksum of its %s section "
				 "(section %llu, at byte %llu) does not match", r->what, name,
				 (unsigned long long)r->sections + 1,
				 (unsigned long long)(r->bytes - s->length - sizeof(h) - sizeof(sum)));
	s->payload = r->payload;

	if (s->type == MIG_SEC_END) {
		if (s->length != 16)
			return error_set(err, EPROTO, "%s: END section of %llu bytes", r->what,
					 (unsigned long long)s->length);
		if (get_le64(r->payload) != r->sections ||
		    get_le64(r->payload + 8) != digest_before)
			return error_set(err, EPROTO, "%s is corrupt: sections are missing, repeated "
					 "or out of order (its END digest does not match)", r->what);
		r->ended = true;
		return 0;
	}
	r->sections++;
	return 1;
}
