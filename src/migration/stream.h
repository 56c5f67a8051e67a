/* stream.h: framing of the VM state stream (docs/migration-format.md):
 * header, checksummed sections, END with a digest of the whole stream.
 * Works on any file descriptor: a snapshot file or a socket. Knows nothing
 * of what the sections contain. */
#ifndef TERN_MIGRATION_STREAM_H
#define TERN_MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>

#include "util/error.h"

#define MIG_MAGIC "TERNVMST"
#define MIG_FORMAT_VERSION 1u
#define MIG_HEADER_SIZE 16
#define MIG_SECTION_HEADER_SIZE 24
#define MIG_MAX_SECTION (64u << 20)
/* Section flag: the payload is a le64 length followed by one zstd frame
 * that decompresses to exactly that many bytes, the section's content. */
#define MIG_SECTION_ZSTD 0x1u

enum mig_section_type {
	MIG_SEC_CONFIG = 1,
	MIG_SEC_RAM = 2,
	MIG_SEC_MACHINE = 3,
	MIG_SEC_HART = 4,
	MIG_SEC_DEVICE = 5,
	MIG_SEC_POSTCOPY = 6,   /* live migration only: the pages still to come */
	MIG_SEC_RAMHASH = 7,    /* XXH3 of all guest RAM, for the receiver to check */
	MIG_SEC_SYNC = 8,       /* live migration: answer SYNCED once all before is applied */
	MIG_SEC_CHANNELS = 9,   /* live migration: more connections carry RAM */
	MIG_SEC_CHANNEL = 10,   /* first section on such a connection: which one */
	MIG_SEC_DISK = 11,      /* live migration: blocks of a disk being copied */
	MIG_SEC_DISCARD = 12,   /* live migration: stale pages to drop before post-copy */
	MIG_SEC_END = 0xffff,
};

struct mig_section {
	uint32_t type, instance, version, flags;
	uint64_t length;
	const uint8_t *payload;         /* owned by the reader, valid until the next read */
};

struct mig_writer {
	int fd;
	uint8_t *buf;                   /* being filled */
	size_t len, cap;
	void *hash;                     /* XXH3 over the header and each section's checksum */
	uint64_t bytes;                 /* produced so far, incl. buffered */
	uint64_t sections;
	bool failed;
	struct error err;               /* the first failure */
	/* With a writer thread, one buffer is written while the other fills,
	 * so producing the stream and the kernel's copy run on two cores. */
	bool threaded;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *spare;                 /* the other buffer */
	uint8_t *pending;               /* handed to the thread, NULL when idle */
	size_t pending_len;
	bool stop;
	/* Bandwidth limit in bytes per second (0: none), changeable at any time. */
	uint64_t rate;
	uint64_t rate_bytes;            /* handed off since rate_start_ns */
	int64_t rate_start_ns;
	uint64_t rate_seen;             /* the limit the window was started with */
	uint64_t write_ns, written;     /* time in write() and bytes it took */
};

/* threaded: write from a helper thread (files, large streams). */
int mig_writer_init(struct mig_writer *w, int fd, bool threaded, struct error *err);
void mig_writer_free(struct mig_writer *w);
int mig_write_header(struct mig_writer *w);
int mig_write_section(struct mig_writer *w, uint32_t type, uint32_t instance, uint32_t version,
		      const void *payload, size_t len);
/* Writes END and flushes everything to the fd. */
/* As mig_write_section, with the payload compressed by z (a zctx) when
 * that makes it smaller. Returns 1 if compressed, 0 if sent raw, or < 0. */
int mig_write_section_z(struct mig_writer *w, uint32_t type, uint32_t instance,
			uint32_t version, const void *payload, size_t len, void *z);
int mig_write_end(struct mig_writer *w);
int mig_flush(struct mig_writer *w);
/* 0, or the first failure copied into err. */
int mig_writer_status(const struct mig_writer *w, struct error *err);
/* From any thread: makes every later write fail with `code` and `why`. */
void mig_writer_abort(struct mig_writer *w, int code, const char *why);
/* What the connection itself carries, in bytes per second of write()
 * time (0 until enough was written to tell). */
uint64_t mig_writer_link_rate(const struct mig_writer *w);
/* From any thread: limits the stream to bytes_per_second (0: unlimited). */
void mig_writer_set_rate(struct mig_writer *w, uint64_t bytes_per_second);

struct mig_reader {
	int fd;
	const char *what;               /* "snapshot /path" for messages */
	uint8_t *buf;                   /* read buffer */
	size_t start, end, cap;
	uint8_t *payload;               /* the current section's payload */
	size_t payload_cap;
	void *hash;                     /* XXH3 over the header and each section's checksum */
	uint64_t bytes;                 /* consumed so far */
	uint64_t sections;
	bool ended;
	void *zd;                       /* zstd decompression context, made on first use */
	uint8_t *raw;                   /* a compressed section's content */
	size_t raw_cap;
};

int mig_reader_init(struct mig_reader *r, int fd, const char *what, struct error *err);
void mig_reader_free(struct mig_reader *r);
/* Reads and checks the stream header. */
int mig_read_header(struct mig_reader *r, struct error *err);
/* Reads the next section and verifies its checksum (and, for END, the
 * whole stream's digest). Returns 1 with *s filled, 0 after END, or a
 * negative errno with err saying what is wrong and where. */
int mig_read_section(struct mig_reader *r, struct mig_section *s, struct error *err);

const char *mig_section_name(uint32_t type);

#endif
