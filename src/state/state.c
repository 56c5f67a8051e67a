/* state.c: the encoder and decoder of saved state described in state.h.
 *
 * What it owns: the byte format of a record (tagged fields, little-endian,
 * nested records flagged STATE_RECORD) and its checking. What it never
 * does: interpret a device's fields, or let a get read a byte that the
 * framing check did not cover.
 *
 * The reader checks everything about the framing once, in
 * state_reader_init(): each header fits, each length fits in what is left,
 * no flag bit is unknown, no id appears twice in one record, and nested
 * records (recursively, at most STATE_MAX_DEPTH levels) obey the same
 * rules. After that the getters can walk the record without any bounds
 * doubt. Duplicates are found with one 64 Ki-bit bitmap shared by every
 * level: a level sets the bits of its ids, then clears exactly those bits
 * before it descends, so the cost stays linear in the size of the input. */
#include "state/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KNOWN_FLAGS (STATE_REQUIRED | STATE_RECORD)
#define INITIAL_CAP 256

/* ---- writer -------------------------------------------------------------- */

void state_writer_init(struct state_writer *w)
{
	memset(w, 0, sizeof(*w));
}

void state_writer_free(struct state_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

int state_writer_status(const struct state_writer *w, struct error *err)
{
	if (w->failed)
		return error_set(err, ENOMEM,
				 "saving state: out of memory (or a field over 4 GiB)");
	return 0;
}

/* Room for n more bytes at the end, or NULL (and failed set). */
static uint8_t *reserve(struct state_writer *w, size_t n)
{
	if (w->failed)
		return NULL;
	if (n > SIZE_MAX - w->len) {
		w->failed = true;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : INITIAL_CAP;
		while (cap < w->len + n) {
			if (cap > SIZE_MAX / 2) {
				cap = w->len + n;
				break;
			}
			cap *= 2;
		}
		uint8_t *buf = realloc(w->buf, cap);
		if (!buf) {
			w->failed = true;
			return NULL;
		}
		w->buf = buf;
		w->cap = cap;
	}
	uint8_t *p = w->buf + w->len;
	w->len += n;
	return p;
}

static void le_put(uint8_t *p, uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, unsigned width)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_header(uint8_t *p, uint16_t id, uint16_t flags, uint32_t len)
{
	le_put(p, id, 2);
	le_put(p + 2, flags, 2);
	le_put(p + 4, len, 4);
}

static void put_field(struct state_writer *w, uint16_t id, uint16_t flags, const void *value,
		      size_t len)
{
	if (len > UINT32_MAX) {
		w->failed = true;
		return;
	}
	uint8_t *p = reserve(w, STATE_FIELD_HEADER + len);
	if (!p)
		return;
	put_header(p, id, flags, (uint32_t)len);
	if (len)
		memcpy(p + STATE_FIELD_HEADER, value, len);
}

static void put_uint(struct state_writer *w, uint16_t id, uint16_t flags, uint64_t v,
		     unsigned width)
{
	uint8_t b[8];
	le_put(b, v, width);
	put_field(w, id, flags, b, width);
}

void state_put_u8(struct state_writer *w, uint16_t id, uint8_t v)
{
	put_uint(w, id, 0, v, 1);
}

void state_put_u16(struct state_writer *w, uint16_t id, uint16_t v)
{
	put_uint(w, id, 0, v, 2);
}

void state_put_u32(struct state_writer *w, uint16_t id, uint32_t v)
{
	put_uint(w, id, 0, v, 4);
}

void state_put_u64(struct state_writer *w, uint16_t id, uint64_t v)
{
	put_uint(w, id, 0, v, 8);
}

void state_put_bool(struct state_writer *w, uint16_t id, bool v)
{
	put_uint(w, id, 0, v ? 1 : 0, 1);
}

void state_put_bytes(struct state_writer *w, uint16_t id, const void *data, size_t len)
{
	put_field(w, id, 0, data, len);
}

void state_put_u64_required(struct state_writer *w, uint16_t id, uint64_t v)
{
	put_uint(w, id, STATE_REQUIRED, v, 8);
}

/* The token is the offset of the record's header; its length is patched
 * in by state_end once the contents are known. */
size_t state_begin(struct state_writer *w, uint16_t id)
{
	uint8_t *p = reserve(w, STATE_FIELD_HEADER);
	if (!p)
		return SIZE_MAX;
	put_header(p, id, STATE_RECORD, 0);
	return (size_t)(p - w->buf);
}

void state_end(struct state_writer *w, size_t token)
{
	if (w->failed || token == SIZE_MAX || token > w->len ||
	    w->len - token < STATE_FIELD_HEADER)
		return;
	size_t body = w->len - token - STATE_FIELD_HEADER;
	if (body > UINT32_MAX) {
		w->failed = true;
		return;
	}
	le_put(w->buf + token + 4, body, 4);
}

/* ---- reader -------------------------------------------------------------- */

struct field {
	uint16_t id;
	uint16_t flags;
	uint32_t len;
	const uint8_t *value;
};

/* The field at *pos of a record whose framing is already checked. */
static void field_at(const uint8_t *data, size_t *pos, struct field *f)
{
	const uint8_t *h = data + *pos;
	f->id = (uint16_t)le_get(h, 2);
	f->flags = (uint16_t)le_get(h + 2, 2);
	f->len = (uint32_t)le_get(h + 4, 4);
	f->value = h + STATE_FIELD_HEADER;
	*pos += STATE_FIELD_HEADER + (size_t)f->len;
}

static bool test_and_set(uint64_t *seen, uint16_t id)
{
	uint64_t bit = 1ull << (id % 64);
	bool was = seen[id / 64] & bit;
	seen[id / 64] |= bit;
	return was;
}

/* Checks one record's framing, then descends into its nested records.
 * `seen` is all clear on entry and on return. */
static int check_record(const uint8_t *data, size_t len, const char *what, unsigned depth,
			uint64_t *seen, struct error *err)
{
	size_t pos = 0;
	int rc = 0;

	while (pos < len) {
		if (len - pos < STATE_FIELD_HEADER) {
			rc = error_set(err, EINVAL, "%s: truncated field header at offset %zu "
				       "(%zu bytes left, %d needed)", what, pos, len - pos,
				       STATE_FIELD_HEADER);
			break;
		}
		const uint8_t *h = data + pos;
		uint16_t id = (uint16_t)le_get(h, 2);
		uint16_t flags = (uint16_t)le_get(h + 2, 2);
		uint32_t flen = (uint32_t)le_get(h + 4, 4);
		if (flags & ~KNOWN_FLAGS) {
			rc = error_set(err, EINVAL, "%s: field %u has unknown flags 0x%x", what, id,
				       flags & ~KNOWN_FLAGS);
			break;
		}
		if (flen > len - pos - STATE_FIELD_HEADER) {
			rc = error_set(err, EINVAL, "%s: field %u at offset %zu is %u bytes long, "
				       "past the end of its record (%zu bytes left)", what, id, pos,
				       flen, len - pos - STATE_FIELD_HEADER);
			break;
		}
		if (test_and_set(seen, id)) {
			rc = error_set(err, EINVAL, "%s: field %u appears twice in one record",
				       what, id);
			break;
		}
		pos += STATE_FIELD_HEADER + (size_t)flen;
	}

	/* Clear exactly the bits this level set: the fields before `pos`. */
	size_t end = pos;
	for (pos = 0; pos < end;) {
		struct field f;
		field_at(data, &pos, &f);
		seen[f.id / 64] &= ~(1ull << (f.id % 64));
	}
	if (rc)
		return rc;

	for (pos = 0; pos < len;) {
		struct field f;
		field_at(data, &pos, &f);
		if (!(f.flags & STATE_RECORD))
			continue;
		if (depth + 1 > STATE_MAX_DEPTH)
			return error_set(err, EINVAL,
					 "%s: field %u nests records more than %d deep", what,
					 f.id, STATE_MAX_DEPTH);
		rc = check_record(f.value, f.len, what, depth + 1, seen, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int check_known(const struct state_reader *r, const uint16_t *known, size_t n_known,
		       struct error *err)
{
	if (!known)
		return 0;
	for (size_t pos = 0; pos < r->len;) {
		struct field f;
		field_at(r->data, &pos, &f);
		if (!(f.flags & STATE_REQUIRED))
			continue;
		bool found = false;
		for (size_t i = 0; i < n_known && !found; i++)
			found = known[i] == f.id;
		if (!found)
			return error_set(err, EINVAL, "%s: field %u is required but unknown to "
					 "this version of tern", r->what, f.id);
	}
	return 0;
}

int state_reader_init(struct state_reader *r, const void *data, size_t len, const char *what,
		      const uint16_t *known, size_t n_known, struct error *err)
{
	uint64_t seen[65536 / 64];

	r->data = data;
	r->len = 0;
	r->what = what ? what : "saved state";
	if (len && !data)
		return error_set(err, EINVAL, "%s: no data", r->what);
	memset(seen, 0, sizeof(seen));
	int rc = check_record(data, len, r->what, 0, seen, err);
	if (rc)
		return rc;
	r->len = len;
	rc = check_known(r, known, n_known, err);
	if (rc)
		r->len = 0;
	return rc;
}

static bool find(const struct state_reader *r, uint16_t id, struct field *out)
{
	for (size_t pos = 0; pos < r->len;) {
		field_at(r->data, &pos, out);
		if (out->id == id)
			return true;
	}
	return false;
}

bool state_has(const struct state_reader *r, uint16_t id)
{
	struct field f;
	return find(r, id, &f);
}

/* A scalar of exactly `width` bytes. *present tells an absent field from
 * a bad one for the _or variants; NULL means absent is an error. */
static int get_uint(const struct state_reader *r, uint16_t id, unsigned width, const char *type,
		    uint64_t *out, bool *present, struct error *err)
{
	struct field f;
	if (!find(r, id, &f)) {
		if (present) {
			*present = false;
			return 0;
		}
		return error_set(err, EINVAL, "%s: field %u (%s) is missing", r->what, id, type);
	}
	if (f.flags & STATE_RECORD)
		return error_set(err, EINVAL, "%s: field %u is a record, not a %s", r->what, id,
				 type);
	if (f.len != width)
		return error_set(err, EINVAL, "%s: field %u is %u bytes wide, a %s is %u", r->what,
				 id, f.len, type, width);
	if (present)
		*present = true;
	*out = le_get(f.value, width);
	return 0;
}

int state_get_u8(const struct state_reader *r, uint16_t id, uint8_t *out, struct error *err)
{
	uint64_t v;
	int rc = get_uint(r, id, 1, "u8", &v, NULL, err);
	if (!rc)
		*out = (uint8_t)v;
	return rc;
}

int state_get_u16(const struct state_reader *r, uint16_t id, uint16_t *out, struct error *err)
{
	uint64_t v;
	int rc = get_uint(r, id, 2, "u16", &v, NULL, err);
	if (!rc)
		*out = (uint16_t)v;
	return rc;
}

int state_get_u32(const struct state_reader *r, uint16_t id, uint32_t *out, struct error *err)
{
	uint64_t v;
	int rc = get_uint(r, id, 4, "u32", &v, NULL, err);
	if (!rc)
		*out = (uint32_t)v;
	return rc;
}

int state_get_u64(const struct state_reader *r, uint16_t id, uint64_t *out, struct error *err)
{
	return get_uint(r, id, 8, "u64", out, NULL, err);
}

int state_get_bool(const struct state_reader *r, uint16_t id, bool *out, struct error *err)
{
	uint64_t v;
	int rc = get_uint(r, id, 1, "bool", &v, NULL, err);
	if (rc)
		return rc;
	if (v > 1)
		return error_set(err, EINVAL, "%s: field %u is a bool of value %u, not 0 or 1",
				 r->what, id, (unsigned)v);
	*out = v;
	return 0;
}

int state_get_u64_or(const struct state_reader *r, uint16_t id, uint64_t dflt, uint64_t *out,
		     struct error *err)
{
	bool present;
	uint64_t v;
	int rc = get_uint(r, id, 8, "u64", &v, &present, err);
	if (!rc)
		*out = present ? v : dflt;
	return rc;
}

int state_get_u32_or(const struct state_reader *r, uint16_t id, uint32_t dflt, uint32_t *out,
		     struct error *err)
{
	bool present;
	uint64_t v;
	int rc = get_uint(r, id, 4, "u32", &v, &present, err);
	if (!rc)
		*out = present ? (uint32_t)v : dflt;
	return rc;
}

int state_get_blob(const struct state_reader *r, uint16_t id, const void **data, size_t *len,
		   struct error *err)
{
	struct field f;
	if (!find(r, id, &f))
		return error_set(err, EINVAL, "%s: field %u is missing", r->what, id);
	*data = f.value;
	*len = f.len;
	return 0;
}

int state_get_bytes(const struct state_reader *r, uint16_t id, void *out, size_t len,
		    struct error *err)
{
	struct field f;
	if (!find(r, id, &f))
		return error_set(err, EINVAL, "%s: field %u is missing", r->what, id);
	if (f.flags & STATE_RECORD)
		return error_set(err, EINVAL, "%s: field %u is a record, not %zu bytes", r->what,
				 id, len);
	if (f.len != len)
		return error_set(err, EINVAL, "%s: field %u is %u bytes long, expected %zu",
				 r->what, id, f.len, len);
	if (len)
		memcpy(out, f.value, len);
	return 0;
}

int state_get_record(const struct state_reader *r, uint16_t id, struct state_reader *sub,
		     const uint16_t *known, size_t n_known, struct error *err)
{
	struct field f;
	if (!find(r, id, &f))
		return error_set(err, EINVAL, "%s: record %u is missing", r->what, id);
	if (!(f.flags & STATE_RECORD))
		return error_set(err, EINVAL, "%s: field %u is not a record", r->what, id);
	/* Framing was checked recursively by state_reader_init. */
	struct state_reader s = { .data = f.value, .len = f.len, .what = r->what };
	int rc = check_known(&s, known, n_known, err);
	if (rc)
		return error_wrap(err, "record %u", id);
	*sub = s;
	return 0;
}
