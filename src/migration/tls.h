/* tls.h: TLS 1.3 with mutual certificate authentication on every migration
 * connection (OpenSSL), on by default; plaintext only when asked for.
 *
 * The credentials live in one directory: ca.pem (the CA whose signature a
 * peer's certificate must carry), host.pem (this host's certificate, the
 * CA's signature on it) and host.key. Both ends present a certificate and
 * check the other's; an optional allow list narrows which names (DNS or IP
 * subject alternative names, or the common name) are accepted.
 * scripts/mkcerts.sh makes a CA and host certificates.
 *
 * How: after the TCP connection and the handshake, a thread per connection
 * moves bytes between the TLS session and one end of a socketpair; the rest
 * of the migration code gets the other end and keeps using plain reads,
 * writes, poll and shutdown on it, unchanged. A failure on the network side
 * closes the socketpair (the caller sees EOF or EPIPE) and is kept for
 * mig_tls_net_error(), so that messages can still say "timed out". */
#ifndef TERN_MIGRATION_TLS_H
#define TERN_MIGRATION_TLS_H

#include <stdbool.h>

#include "util/error.h"

#define MIG_TLS_DEFAULT_DIR "/etc/tern/tls"

struct mig_tls_options {
	const char *dir;        /* NULL: MIG_TLS_DEFAULT_DIR */
	const char *allow;      /* comma-separated peer names; NULL: any the CA signed */
	bool plaintext;         /* no TLS at all (--no-tls) */
};

/* Once, before any migration connection: loads and checks the credentials
 * (so that a bad file is reported at start-up, not at the first move), or
 * records that connections are plaintext. Without a call, the first
 * connection loads the default directory. */
int mig_tls_configure(const struct mig_tls_options *o, struct error *err);
bool mig_tls_plaintext(void);

/* Secures a connected TCP socket (blocking, owned from here on) as the
 * client or the server end, the handshake bounded by timeout_ms. Returns
 * the descriptor to use instead, or a negative errno with err saying why
 * (the peer's certificate, its CA, its name, its expiry, or no TLS at all).
 * In plaintext mode returns tcp_fd itself. A server whose allow list does
 * not name the (CA-signed) peer gets the descriptor and the reason in
 * `refusal` (non-empty), to tell the peer before closing. */
int mig_tls_wrap(int tcp_fd, bool server, int timeout_ms, char *refusal, size_t refusal_size,
		 struct error *err);

/* What the network side of a wrapped descriptor failed with (ETIMEDOUT, a
 * reset, EPROTO for a TLS alert), 0 if nothing: the caller only sees the
 * socketpair close. */
int mig_tls_net_error(int fd);

#endif
