/* transport.h: the migration connection: "tcp:HOST:PORT" addresses, TCP
 * sockets with the timeouts the protocol relies on, and the control frames
 * of docs/migration-protocol.md. */
#ifndef TERN_MIGRATION_TRANSPORT_H
#define TERN_MIGRATION_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct mig_address {
	char host[256];
	char port[16];
};

#define MIG_FRAME_MAGIC 0x434e5254u   /* "TRNC" */
#define MIG_FRAME_MAX 4096

enum mig_frame_type {
	MIG_FRAME_READY = 1,
	MIG_FRAME_ERROR = 2,
	MIG_FRAME_RUNNING = 3,
	MIG_FRAME_REQUEST = 4,  /* post-copy: le64 page addresses the guest waits for */
	MIG_FRAME_DONE = 5,     /* post-copy: every page arrived */
	MIG_FRAME_SYNCED = 6,   /* everything up to a SYNC section is applied */
	MIG_FRAME_GO = 16,
	MIG_FRAME_RESUME = 17,  /* post-copy recovery: the source is back */
	MIG_FRAME_PREEMPT = 18, /* post-copy: this connection carries requested pages (session) */
	MIG_FRAME_EPOCH_ACK = 19, /* replication: the epoch (decimal) is applied (replica.h) */
};

/* GO's text when the guest was paused on the source: it stays paused. */
#define MIG_GO_PAUSED "paused"
/* GO's text for a post-copy switch-over: pages follow after GO. */
#define MIG_GO_POSTCOPY "postcopy"

int mig_parse_address(const char *uri, struct mig_address *out, struct error *err);
/* Connects within timeout_ms; the socket then fails a send that makes no
 * progress for stall_ms (TCP_USER_TIMEOUT) and probes an idle peer. */
int mig_connect(const struct mig_address *a, int timeout_ms, int stall_ms, struct error *err);
int mig_listen(const struct mig_address *a, struct error *err);
/* timeout_ms < 0: wait for ever. */
int mig_accept(int listen_fd, int timeout_ms, int stall_ms, struct error *err);

int mig_send_frame(int fd, enum mig_frame_type type, const char *text, struct error *err);
int mig_send_frame_bin(int fd, enum mig_frame_type type, const void *data, size_t len,
		       struct error *err);
/* Waits up to timeout_ms (< 0: for ever) for one frame. Returns 1 with
 * *type and text (NUL-terminated, cut to size), 0 on a clean EOF, -ETIMEDOUT
 * on timeout, or another negative errno. */
int mig_recv_frame(int fd, int timeout_ms, uint32_t *type, char *text, size_t size,
		   struct error *err);
/* The same, for a binary payload: up to cap bytes into data, *len set. */
int mig_recv_frame_bin(int fd, int timeout_ms, uint32_t *type, void *data, size_t cap,
		       size_t *len_out, struct error *err);

#endif
