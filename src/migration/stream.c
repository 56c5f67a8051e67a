/* stream.c: writing and reading the framed VM state stream.
 *
 * Each section carries its own XXH3, so that a reader never applies a
 * section it has not verified; END carries a digest of the stream header
 * and of every section's checksum in order, so that a section missing,
 * repeated or moved is caught. A file writer hands full buffers to a
 * thread, so producing the stream and the kernel copying it overlap.
 * The reader bounds every length before allocating or reading. */
#include "migration/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "migration/pagecodec.h"
#include "util/le.h"

#define WRITE_BUFFER (1u << 20)
#define READ_BUFFER (1u << 20)

const char *mig_section_name(uint32_t type)
{
	switch (type) {
	case MIG_SEC_CONFIG: return "CONFIG";
	case MIG_SEC_RAM: return "RAM";
	case MIG_SEC_MACHINE: return "MACHINE";
	case MIG_SEC_HART: return "HART";
	case MIG_SEC_DEVICE: return "DEVICE";
	case MIG_SEC_POSTCOPY: return "POSTCOPY";
	case MIG_SEC_RAMHASH: return "RAMHASH";
	case MIG_SEC_SYNC: return "SYNC";
	case MIG_SEC_CHANNELS: return "CHANNELS";
	case MIG_SEC_CHANNEL: return "CHANNEL";
	case MIG_SEC_DISK: return "DISK";
	case MIG_SEC_DISCARD: return "DISCARD";
	case MIG_SEC_END: return "END";
	}
	return "unknown";
}

/* ---- writer ------------------------------------------------------------ */

static void record_failure(struct mig_writer *w, int code, const char *what)
{
	if (!w->failed) {
		error_errno(&w->err, code, "%s", what);
		__atomic_store_n(&w->failed, true, __ATOMIC_RELEASE);
	}
}

static int write_fully(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int64_t mono_ns(void);

/* write_fully, timed: the link's own speed is bytes over the time spent in
 * write(), whatever else slows the sender (encoding, a rate limit). */
static int timed_write(struct mig_writer *w, const uint8_t *p, size_t len)
{
	int64_t t0 = mono_ns();
	int e = write_fully(w->fd, p, len);
	__atomic_fetch_add(&w->write_ns, (uint64_t)(mono_ns() - t0), __ATOMIC_RELAXED);
	__atomic_fetch_add(&w->written, (uint64_t)len, __ATOMIC_RELAXED);
	return e;
}

uint64_t mig_writer_link_rate(const struct mig_writer *w)
{
	uint64_t ns = __atomic_load_n(&w->write_ns, __ATOMIC_RELAXED);
	uint64_t bytes = __atomic_load_n(&w->written, __ATOMIC_RELAXED);
	/* Too little to tell from a few buffers that fit in the socket. */
	if (ns < 20000000)
		return 0;
	return (uint64_t)((double)bytes * 1e9 / (double)ns);
}

static void *writer_main(void *arg)
{
	struct mig_writer *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->pending && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->pending)
			break;
		uint8_t *buf = w->pending;
		size_t len = w->pending_len;
		pthread_mutex_unlock(&w->lock);
		int e = timed_write(w, buf, len);
		pthread_mutex_lock(&w->lock);
		if (e)
			record_failure(w, e, "writing the state stream");
		w->pending = NULL;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int mig_writer_init(struct mig_writer *w, int fd, bool threaded, struct error *err)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->cap = WRITE_BUFFER;
	w->buf = malloc(w->cap);
	w->spare = threaded ? malloc(w->cap) : NULL;
	w->hash = XXH3_createState();
	if (!w->buf || !w->hash || (threaded && !w->spare)) {
		mig_writer_free(w);
		return error_set(err, ENOMEM, "cannot allocate the stream writer");
	}
	XXH3_64bits_reset(w->hash);
	if (threaded) {
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->cond, NULL);
		int rc = pthread_create(&w->thread, NULL, writer_main, w);
		if (rc) {
			pthread_cond_destroy(&w->cond);
			pthread_mutex_destroy(&w->lock);
			mig_writer_free(w);
			return error_errno(err, rc, "cannot start the stream writer thread");
		}
		w->threaded = true;
	}
	return 0;
}

void mig_writer_free(struct mig_writer *w)
{
	if (w->threaded) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		w->threaded = false;
	}
	free(w->buf);
	free(w->spare);
	if (w->hash)
		XXH3_freeState(w->hash);
	w->buf = w->spare = NULL;
	w->hash = NULL;
}

static int failure_code(const struct mig_writer *w)
{
	return -(w->err.code ? w->err.code : EIO);
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps as long as the bytes handed off so far are ahead of the limit. */
static void pace(struct mig_writer *w, size_t len)
{
	uint64_t rate = __atomic_load_n(&w->rate, __ATOMIC_RELAXED);
	int64_t now = mono_ns();
	if (rate != w->rate_seen) {
		/* A new limit starts a new window, so it applies at once. */
		w->rate_seen = rate;
		w->rate_start_ns = now;
		w->rate_bytes = 0;
	}
	if (!rate)
		return;
	w->rate_bytes += len;
	int64_t due = w->rate_start_ns + (int64_t)((double)w->rate_bytes * 1e9 / (double)rate);
	if (due > now) {
		struct timespec ts = { .tv_sec = (due - now) / 1000000000,
				       .tv_nsec = (due - now) % 1000000000 };
		nanosleep(&ts, NULL);
	}
}

void mig_writer_set_rate(struct mig_writer *w, uint64_t bytes_per_second)
{
	__atomic_store_n(&w->rate, bytes_per_second, __ATOMIC_RELAXED);
}

void mig_writer_abort(struct mig_writer *w, int code, const char *why)
{
	if (w->threaded)
		pthread_mutex_lock(&w->lock);
	if (!w->failed) {
		error_set(&w->err, code, "%s", why);
		__atomic_store_n(&w->failed, true, __ATOMIC_RELEASE);
	}
	if (w->threaded) {
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
}

/* Hands the filled buffer over: written now, or by the thread while the
 * other buffer fills. */
static int hand_off(struct mig_writer *w, bool wait)
{
	pace(w, w->len);
	if (!w->threaded) {
		int e = w->failed ? 0 : timed_write(w, w->buf, w->len);
		if (e)
			record_failure(w, e, "writing the state stream");
		w->len = 0;
		return w->failed ? failure_code(w) : 0;
	}
	pthread_mutex_lock(&w->lock);
	while (w->pending)
		pthread_cond_wait(&w->cond, &w->lock);
	if (!w->failed && w->len) {
		w->pending = w->buf;
		w->pending_len = w->len;
		w->buf = w->spare;
		w->spare = w->pending;
		w->len = 0;
		pthread_cond_broadcast(&w->cond);
	}
	while (wait && w->pending)
		pthread_cond_wait(&w->cond, &w->lock);
	int rc = w->failed ? failure_code(w) : 0;
	pthread_mutex_unlock(&w->lock);
	return rc;
}

int mig_flush(struct mig_writer *w)
{
	return hand_off(w, true);
}

/* Appends to the output, handing buffers over as they fill. */
static int emit(struct mig_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (__atomic_load_n(&w->failed, __ATOMIC_ACQUIRE))
		return failure_code(w);
	/* Atomic: a status request reads it while a pass runs. */
	__atomic_store_n(&w->bytes, w->bytes + len, __ATOMIC_RELAXED);
	while (len) {
		if (w->len == w->cap && hand_off(w, false) < 0)
			return failure_code(w);
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
	XXH3_64bits_update(w->hash, h, sizeof(h));
	return emit(w, h, sizeof(h));
}

static int write_section(struct mig_writer *w, uint32_t type, uint32_t instance,
			 uint32_t version, uint32_t flags, const void *payload, size_t len);

int mig_write_section(struct mig_writer *w, uint32_t type, uint32_t instance, uint32_t version,
		      const void *payload, size_t len)
{
	return write_section(w, type, instance, version, 0, payload, len);
}

int mig_write_section_z(struct mig_writer *w, uint32_t type, uint32_t instance,
			uint32_t version, const void *payload, size_t len, void *z)
{
	/* Worth it only if it saves something beyond the length word. */
	size_t cap = len > 64 ? len - 64 : 0;
	uint8_t *buf = cap ? malloc(8 + cap) : NULL;
	ssize_t n = buf ? zpages_compress(z, payload, len, buf + 8, cap) : -1;
	if (n < 0) {
		free(buf);
		int rc = write_section(w, type, instance, version, 0, payload, len);
		return rc < 0 ? rc : 0;
	}
	put_le64(buf, len);
	int rc = write_section(w, type, instance, version, MIG_SECTION_ZSTD, buf, 8 + (size_t)n);
	free(buf);
	return rc < 0 ? rc : 1;
}

static int write_section(struct mig_writer *w, uint32_t type, uint32_t instance,
			 uint32_t version, uint32_t flags, const void *payload, size_t len)
{
	if (len > MIG_MAX_SECTION) {
		record_failure(w, EFBIG, "a state section is larger than the format allows");
		return failure_code(w);
	}
	uint8_t h[MIG_SECTION_HEADER_SIZE], sum[8];
	put_le32(h, type);
	put_le32(h + 4, instance);
	put_le32(h + 8, version);
	put_le32(h + 12, flags);
	put_le64(h + 16, len);
	XXH3_state_t *st = XXH3_createState();
	if (!st) {
		record_failure(w, ENOMEM, "hashing a state section");
		return failure_code(w);
	}
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, sizeof(h));
	XXH3_64bits_update(st, payload, len);
	put_le64(sum, XXH3_64bits_digest(st));
	XXH3_freeState(st);
	int rc = emit(w, h, sizeof(h));
	if (!rc)
		rc = emit(w, payload, len);
	if (!rc)
		rc = emit(w, sum, sizeof(sum));
	if (!rc && type != MIG_SEC_END) {
		/* The stream digest chains section checksums: a section
		 * missing, repeated or moved changes it. */
		XXH3_64bits_update(w->hash, sum, sizeof(sum));
		w->sections++;
	}
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
	if (!__atomic_load_n(&w->failed, __ATOMIC_ACQUIRE))
		return 0;
	if (err)
		*err = w->err;
	return failure_code(w);
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
	free(r->raw);
	r->raw = NULL;
	zdctx_destroy(r->zd);
	r->zd = NULL;
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
	r->bytes += len;
	return 0;
}

int mig_read_header(struct mig_reader *r, struct error *err)
{
	uint8_t h[MIG_HEADER_SIZE];
	int rc = take(r, h, sizeof(h), "the stream header", err);
	if (rc)
		return rc;
	XXH3_64bits_update(r->hash, h, sizeof(h));
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
	return type >= MIG_SEC_CONFIG && (type <= MIG_SEC_DISCARD || type == MIG_SEC_END);
}

/* A compressed section's content replaces its payload (the checksum was
 * over what came on the wire). */
static int decompress(struct mig_reader *r, struct mig_section *s, const char *name,
		      struct error *err)
{
	if (s->type == MIG_SEC_END)
		return error_set(err, EPROTO, "%s: a compressed END section", r->what);
	if (s->length < 8)
		return error_set(err, EPROTO, "%s: compressed %s section of %llu bytes", r->what,
				 name, (unsigned long long)s->length);
	uint64_t raw = get_le64(s->payload);
	if (raw > MIG_MAX_SECTION)
		return error_set(err, EPROTO, "%s: compressed %s section claims %llu bytes, more "
				 "than the %u the format allows", r->what, name,
				 (unsigned long long)raw, MIG_MAX_SECTION);
	if (!r->zd && !(r->zd = zdctx_create(err)))
		return -(err->code ? err->code : ENOMEM);
	if (raw > r->raw_cap) {
		uint8_t *p = realloc(r->raw, raw ? raw : 1);
		if (!p)
			return error_set(err, ENOMEM, "%s: no memory for a %llu-byte section", r->what,
					 (unsigned long long)raw);
		r->raw = p;
		r->raw_cap = raw;
	}
	ssize_t n = zpages_decompress(r->zd, s->payload + 8, s->length - 8, r->raw, r->raw_cap,
				      raw, err);
	if (n < 0)
		return error_wrap(err, "%s: %s section", r->what, name);
	s->payload = r->raw;
	s->length = raw;
	return 0;
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
	if (s->flags & ~MIG_SECTION_ZSTD)
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
	if (s->flags & MIG_SECTION_ZSTD) {
		rc = decompress(r, s, name, err);
		if (rc)
			return rc;
	}

	if (s->type == MIG_SEC_END) {
		if (s->version != 1 || s->instance != 0)
			return error_set(err, EPROTO, "%s: END section version %u, instance %u: this "
					 "tern reads version 1, instance 0", r->what, s->version,
					 s->instance);
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
	XXH3_64bits_update(r->hash, sum, sizeof(sum));
	r->sections++;
	return 1;
}
