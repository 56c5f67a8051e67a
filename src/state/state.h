/* state.h: the one encoder and decoder of saved state.
 *
 * A saved record is a sequence of tagged fields, little-endian:
 *     u16 id | u16 flags | u32 length | length bytes of value
 * Integers keep their natural width (1, 2, 4 or 8 bytes); a nested record
 * is a field whose value is itself a sequence of fields. The reader
 * checks all framing before anything is used, finds fields by id, and
 * refuses wrong widths, so a device restores from a stream it can trust
 * to be well-formed. A field flagged STATE_REQUIRED that the reader does
 * not know makes the record fail to load; unknown optional fields are
 * skipped; missing optional fields take defaults. That is what lets a
 * newer tern read an older stream (docs/migration-format.md, later).
 *
 * Devices describe their state as fields with ids they never reuse; field
 * 0 of every device record is its state version (u32). */
#ifndef TERN_STATE_STATE_H
#define TERN_STATE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define STATE_REQUIRED 0x0001u
/* Set by state_begin(): the value is a nested record. It is what lets the
 * reader check the framing of nested records without knowing the ids.
 * A reader refuses fields with flag bits it does not know. */
#define STATE_RECORD 0x0002u
#define STATE_FIELD_HEADER 8
/* Records nested more than this many levels below the one being read are
 * refused. */
#define STATE_MAX_DEPTH 8

struct state_writer {
	uint8_t *buf;
	size_t len, cap;
	bool failed;            /* out of memory: every later put is ignored */
};

void state_writer_init(struct state_writer *w);
void state_writer_free(struct state_writer *w);
/* 0, or -ENOMEM if any put failed. */
int state_writer_status(const struct state_writer *w, struct error *err);

void state_put_u8(struct state_writer *w, uint16_t id, uint8_t v);
void state_put_u16(struct state_writer *w, uint16_t id, uint16_t v);
void state_put_u32(struct state_writer *w, uint16_t id, uint32_t v);
void state_put_u64(struct state_writer *w, uint16_t id, uint64_t v);
void state_put_bool(struct state_writer *w, uint16_t id, bool v);
void state_put_bytes(struct state_writer *w, uint16_t id, const void *data, size_t len);
/* The same, flagged STATE_REQUIRED: an older reader must refuse the record
 * rather than silently ignore the field. */
void state_put_u64_required(struct state_writer *w, uint16_t id, uint64_t v);

/* Nested record: token = state_begin(w, id); ...puts...; state_end(w, token). */
size_t state_begin(struct state_writer *w, uint16_t id);
void state_end(struct state_writer *w, size_t token);

struct state_reader {
	const uint8_t *data;
	size_t len;
	const char *what;       /* for messages: "virtio-blk@10001000" */
};

/* Checks the framing of every field (recursively for fields flagged
 * STATE_RECORD), that no id appears twice in one record, and that every
 * STATE_REQUIRED field has an id listed in `known`. Must succeed before
 * any state_get_*. known == NULL skips only the last check: for a record
 * handed on to code that reads it again with its own list (a device's or a
 * backend's restore calls state_reader_init on r->data, r->len itself). */
int state_reader_init(struct state_reader *r, const void *data, size_t len, const char *what,
		      const uint16_t *known, size_t n_known, struct error *err);

/* Required fields: -EINVAL with a message naming record and field when
 * missing or of the wrong width. */
int state_get_u8(const struct state_reader *r, uint16_t id, uint8_t *out, struct error *err);
int state_get_u16(const struct state_reader *r, uint16_t id, uint16_t *out, struct error *err);
int state_get_u32(const struct state_reader *r, uint16_t id, uint32_t *out, struct error *err);
int state_get_u64(const struct state_reader *r, uint16_t id, uint64_t *out, struct error *err);
int state_get_bool(const struct state_reader *r, uint16_t id, bool *out, struct error *err);
/* Exactly len bytes. */
int state_get_bytes(const struct state_reader *r, uint16_t id, void *out, size_t len,
		    struct error *err);
/* Any length: points into the record. */
int state_get_blob(const struct state_reader *r, uint16_t id, const void **data, size_t *len,
		   struct error *err);
/* A nested record (a field flagged STATE_RECORD), itself checked against
 * `known` like state_reader_init (NULL: not checked, see there). */
int state_get_record(const struct state_reader *r, uint16_t id, struct state_reader *sub,
		     const uint16_t *known, size_t n_known, struct error *err);
bool state_has(const struct state_reader *r, uint16_t id);

/* Optional fields: *out = dflt when absent; wrong width is still an error. */
int state_get_u64_or(const struct state_reader *r, uint16_t id, uint64_t dflt, uint64_t *out,
		     struct error *err);
int state_get_u32_or(const struct state_reader *r, uint16_t id, uint32_t dflt, uint32_t *out,
		     struct error *err);

#endif
