/* tls.c: see tls.h. */
#include "migration/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "util/log.h"

#define PUMP_BUF (256u * 1024)
#define PAIR_BUF (4 << 20)
#define MAX_ALLOWED 32
#define NET_ERRORS 64

static struct {
	pthread_mutex_t lock;
	bool configured, plaintext;
	SSL_CTX *client, *server;
	char dir[PATH_MAX];
	char allow_buf[1024];
	const char *allowed[MAX_ALLOWED];
	unsigned nallowed;
	struct { int fd, error; } net_errors[NET_ERRORS];
	/* Pumps running, by their caller's descriptor: exit waits for them to
	 * send what was written (the last ERROR frame of a refusing VMM). */
	int live[NET_ERRORS];
	unsigned nlive;
	pthread_cond_t drained;
	bool atexit_set;
} tls = { .lock = PTHREAD_MUTEX_INITIALIZER, .drained = PTHREAD_COND_INITIALIZER };

#define EXIT_DRAIN_MS 2000
#define LINGER_MS 300

/* The first OpenSSL error of this thread, for a message. */
static const char *ssl_reason(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();
	if (!e)
		return "no further detail";
	ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

static SSL_CTX *make_ctx(bool server, const char *dir, struct error *err)
{
	char ca[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16], why[256];
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/host.pem", dir);
	snprintf(key, sizeof(key), "%s/host.key", dir);
	for (const char *f = ca;; f = f == ca ? cert : key) {
		if (access(f, R_OK) < 0) {
			error_errno(err, errno, "migration TLS: cannot read %s (make the "
				    "credentials with scripts/mkcerts.sh, point --tls-dir at them, "
				    "or migrate in plaintext with --no-tls)", f);
			return NULL;
		}
		if (f == key)
			break;
	}
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		error_set(err, ENOMEM, "migration TLS: %s", ssl_reason(why, sizeof(why)));
		return NULL;
	}
	const char *failed = NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		failed = "TLS 1.3 is not available";
	else if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		failed = ca;
	else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		failed = cert;
	else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		failed = key;
	else if (SSL_CTX_check_private_key(ctx) != 1)
		failed = "the key does not match the certificate";
	if (failed) {
		error_set(err, EINVAL, "migration TLS: %s: %s", failed, ssl_reason(why, sizeof(why)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Both ends prove who they are. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	/* A migration connection is never resumed: no tickets to send. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

static int configure_locked(const struct mig_tls_options *o, struct error *err)
{
	if (o->plaintext) {
		tls.plaintext = true;
		tls.configured = true;
		return 0;
	}
	const char *dir = o->dir ? o->dir : MIG_TLS_DEFAULT_DIR;
	if (strlen(dir) >= sizeof(tls.dir))
		return error_set(err, ENAMETOOLONG, "--tls-dir is too long");
	SSL_CTX *client = make_ctx(false, dir, err);
	if (!client)
		return -EINVAL;
	SSL_CTX *server = make_ctx(true, dir, err);
	if (!server) {
		SSL_CTX_free(client);
		return -EINVAL;
	}
	tls.nallowed = 0;
	if (o->allow) {
		if (strlen(o->allow) >= sizeof(tls.allow_buf)) {
			SSL_CTX_free(client);
			SSL_CTX_free(server);
			return error_set(err, E2BIG, "--tls-allow is too long");
		}
		snprintf(tls.allow_buf, sizeof(tls.allow_buf), "%s", o->allow);
		char *save = NULL;
		for (char *name = strtok_r(tls.allow_buf, ",", &save); name;
		     name = strtok_r(NULL, ",", &save)) {
			if (tls.nallowed == MAX_ALLOWED) {
				SSL_CTX_free(client);
				SSL_CTX_free(server);
				return error_set(err, E2BIG, "--tls-allow names more than %d peers",
						 MAX_ALLOWED);
			}
			tls.allowed[tls.nallowed++] = name;
		}
	}
	snprintf(tls.dir, sizeof(tls.dir), "%s", dir);
	tls.client = client;
	tls.server = server;
	tls.plaintext = false;
	tls.configured = true;
	return 0;
}

int mig_tls_configure(const struct mig_tls_options *o, struct error *err)
{
	pthread_mutex_lock(&tls.lock);
	int rc = tls.configured ? error_set(err, EALREADY, "migration TLS is already set up")
				: configure_locked(o, err);
	pthread_mutex_unlock(&tls.lock);
	return rc;
}

bool mig_tls_plaintext(void)
{
	pthread_mutex_lock(&tls.lock);
	bool p = tls.configured && tls.plaintext;
	pthread_mutex_unlock(&tls.lock);
	return p;
}

static void set_net_error(int fd, int error)
{
	pthread_mutex_lock(&tls.lock);
	unsigned free_slot = NET_ERRORS;
	for (unsigned i = 0; i < NET_ERRORS; i++) {
		if (tls.net_errors[i].fd == fd + 1) {
			tls.net_errors[i].error = error;
			pthread_mutex_unlock(&tls.lock);
			return;
		}
		if (!tls.net_errors[i].fd && free_slot == NET_ERRORS)
			free_slot = i;
	}
	/* fd + 1: a zeroed slot is free. A full table drops the oldest. */
	if (free_slot == NET_ERRORS) {
		memmove(&tls.net_errors[0], &tls.net_errors[1],
			(NET_ERRORS - 1) * sizeof(tls.net_errors[0]));
		free_slot = NET_ERRORS - 1;
	}
	tls.net_errors[free_slot].fd = fd + 1;
	tls.net_errors[free_slot].error = error;
	pthread_mutex_unlock(&tls.lock);
}

int mig_tls_net_error(int fd)
{
	int e = 0;
	pthread_mutex_lock(&tls.lock);
	for (unsigned i = 0; i < NET_ERRORS; i++)
		if (tls.net_errors[i].fd == fd + 1)
			e = tls.net_errors[i].error;
	pthread_mutex_unlock(&tls.lock);
	return e;
}

/* ---- the handshake ---------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The peer's certificate names one of the allowed. */
static bool peer_allowed(SSL *ssl, char *name, size_t size)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);
	if (!cert)
		return false;
	X509_NAME_oneline(X509_get_subject_name(cert), name, (int)size);
	bool ok = tls.nallowed == 0;
	for (unsigned i = 0; i < tls.nallowed && !ok; i++)
		ok = X509_check_host(cert, tls.allowed[i], 0, 0, NULL) == 1 ||
		     X509_check_ip_asc(cert, tls.allowed[i], 0) == 1;
	X509_free(cert);
	return ok;
}

static int handshake(SSL *ssl, int fd, bool server, int timeout_ms, struct error *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		ERR_clear_error();
		int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
		if (r == 1)
			return 0;
		int e = SSL_get_error(ssl, r);
		short events = e == SSL_ERROR_WANT_READ ? POLLIN :
			       e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
		if (!events) {
			char why[256];
			long verify = SSL_get_verify_result(ssl);
			if (verify != X509_V_OK)
				return error_set(err, EPROTO, "TLS handshake with the %s: its "
						 "certificate is not accepted: %s (trusted: the CA "
						 "in %s/ca.pem)", server ? "source" : "destination",
						 X509_verify_cert_error_string(verify), tls.dir);
			if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
				return error_set(err, ECONNRESET, "TLS handshake with the %s: the "
						 "connection closed (%s)", server ? "source" :
						 "destination", errno ? strerror(errno) :
						 "it may not speak TLS, or refused our certificate");
			bool plain = ERR_GET_REASON(ERR_peek_error()) == SSL_R_WRONG_VERSION_NUMBER;
			return error_set(err, EPROTO, "TLS handshake with the %s failed: %s%s",
					 server ? "source" : "destination",
					 ssl_reason(why, sizeof(why)), plain ? " (it does not speak "
					 "TLS: a tern started with --no-tls?)" : "");
		}
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return error_set(err, ETIMEDOUT, "TLS handshake with the %s: no answer in "
					 "%d ms (is it a tern with TLS?)", server ? "source" :
					 "destination", timeout_ms);
		struct pollfd p = { .fd = fd, .events = events };
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return error_errno(err, errno, "TLS handshake: poll");
	}
}

/* ---- the pump --------------------------------------------------------------- */

struct pump {
	SSL *ssl;
	int net, app;           /* the TCP socket, the pump's end of the pair */
	int user_fd;            /* the caller's end: the key of net_errors */
	uint8_t *up, *down;     /* app -> net, net -> app */
	size_t up_len, up_off, down_len, down_off;
};

static void pump_free(struct pump *p)
{
	if (p->ssl)
		SSL_free(p->ssl);
	if (p->net >= 0)
		close(p->net);
	if (p->app >= 0)
		close(p->app);
	free(p->up);
	free(p->down);
	free(p);
}

static int ssl_failure(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_SYSCALL)
		return errno ? errno : ECONNRESET;
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	return EPROTO;
}

static void *pump_main(void *arg)
{
	struct pump *p = arg;
	/* caller_done: the caller closed its end; write_dead: the peer takes
	 * no more (what it sent before may still be read and delivered: a
	 * destination's ERROR frame comes just before it closes). */
	bool caller_done = false, write_dead = false, net_eof = false;
	int net_error = 0;
	int64_t linger_until = 0;
	for (;;) {
		bool progress = false;
		short net_events = 0, app_events = 0;
		/* net -> app first: a peer's last words (an ERROR frame before it
		 * closes) leave the socket before a write can fail on its reset. */
		if (!net_eof && p->down_len == 0) {
			ERR_clear_error();
			int r = SSL_read(p->ssl, p->down, PUMP_BUF);
			if (r > 0) {
				p->down_len = (size_t)r;
				p->down_off = 0;
				progress = true;
			} else {
				int e = SSL_get_error(p->ssl, r);
				if (e == SSL_ERROR_WANT_READ) {
					net_events |= POLLIN;
				} else if (e == SSL_ERROR_WANT_WRITE) {
					net_events |= POLLOUT;
				} else {
					net_eof = true;
					int f = ssl_failure(p->ssl, r);
					if (!net_error)
						net_error = f;
					progress = true;
				}
			}
		}
		/* app -> net */
		if (!caller_done && !write_dead && p->up_len == 0) {
			ssize_t n = read(p->app, p->up, PUMP_BUF);
			if (n > 0) {
				p->up_len = (size_t)n;
				p->up_off = 0;
				progress = true;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				caller_done = true;
				(void)SSL_shutdown(p->ssl);     /* close_notify, best effort */
				progress = true;
			} else {
				app_events |= POLLIN;
			}
		}
		if (p->up_len && !write_dead) {
			ERR_clear_error();
			int r = SSL_write(p->ssl, p->up + p->up_off, (int)(p->up_len - p->up_off));
			if (r > 0) {
				p->up_off += (size_t)r;
				if (p->up_off == p->up_len)
					p->up_len = 0;
				progress = true;
			} else {
				int e = SSL_get_error(p->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE) {
					net_events |= POLLOUT;
				} else if (e == SSL_ERROR_WANT_READ) {
					net_events |= POLLIN;
				} else {
					int f = ssl_failure(p->ssl, r);
					if (!net_error)
						net_error = f ? f : EPIPE;
					write_dead = true;
					p->up_len = 0;
					progress = true;
				}
			}
		}
		if (p->down_len) {
			ssize_t n = send(p->app, p->down + p->down_off, p->down_len - p->down_off,
					 MSG_NOSIGNAL);
			if (n > 0) {
				p->down_off += (size_t)n;
				if (p->down_off == p->down_len)
					p->down_len = 0;
				progress = true;
			} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				app_events |= POLLOUT;
			} else if (caller_done) {
				p->down_len = 0;        /* lingering: nobody reads any more */
				progress = true;
			} else {
				break;          /* the caller closed its end */
			}
		}
		if (net_eof && !p->down_len) {
			/* Everything the peer sent is delivered: the caller reads EOF. */
			shutdown(p->app, SHUT_WR);
			if (caller_done || write_dead)
				break;
		}
		/* The caller is gone and its last bytes went out. Read on a
		 * little, so that closing with the peer's data unread does not
		 * reset the connection and destroy what we sent last. */
		if (caller_done && !p->up_len) {
			if (!linger_until)
				linger_until = now_ms() + LINGER_MS;
			if (net_eof || write_dead || now_ms() >= linger_until)
				break;
		}
		if (progress || SSL_pending(p->ssl))
			continue;
		struct pollfd fds[2] = { { .fd = p->net, .events = net_events },
					 { .fd = p->app, .events = caller_done ? 0 : app_events } };
		int wait_ms = linger_until ? (int)(linger_until - now_ms()) : -1;
		if (linger_until && wait_ms < 0)
			wait_ms = 0;
		if (poll(fds, 2, wait_ms) < 0 && errno != EINTR) {
			if (!net_error)
				net_error = errno;
			break;
		}
		if ((fds[1].revents & (POLLHUP | POLLERR)) && !(fds[1].revents & POLLIN) &&
		    (app_events & POLLOUT))
			break;          /* the caller closed while we had data for it */
	}
	if (net_error)
		set_net_error(p->user_fd, net_error);
	/* Whatever is left: the caller sees EOF and EPIPE, the peer EOF. */
	shutdown(p->net, SHUT_RDWR);
	shutdown(p->app, SHUT_RDWR);
	pthread_mutex_lock(&tls.lock);
	for (unsigned i = 0; i < tls.nlive; i++) {
		if (tls.live[i] == p->user_fd) {
			tls.live[i] = tls.live[--tls.nlive];
			break;
		}
	}
	pthread_cond_broadcast(&tls.drained);
	pthread_mutex_unlock(&tls.lock);
	pump_free(p);
	return NULL;
}

/* At exit: every connection's last bytes go out (a pump sees its caller's
 * end shut for writing once it has sent what came before), for a while. */
static void drain_at_exit(void)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += EXIT_DRAIN_MS / 1000;
	pthread_mutex_lock(&tls.lock);
	for (unsigned i = 0; i < tls.nlive; i++)
		shutdown(tls.live[i], SHUT_WR);
	while (tls.nlive)
		if (pthread_cond_timedwait(&tls.drained, &tls.lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&tls.lock);
}

static bool loaded(struct error *err)
{
	pthread_mutex_lock(&tls.lock);
	int rc = 0;
	if (!tls.configured) {
		struct mig_tls_options o = { 0 };
		rc = configure_locked(&o, err);
	}
	pthread_mutex_unlock(&tls.lock);
	return rc == 0;
}

int mig_tls_wrap(int tcp_fd, bool server, int timeout_ms, char *refusal, size_t refusal_size,
		 struct error *err)
{
	if (refusal_size)
		refusal[0] = '\0';
	if (!loaded(err)) {
		close(tcp_fd);
		return -EINVAL;
	}
	if (tls.plaintext)
		return tcp_fd;
	struct pump *p = calloc(1, sizeof(*p));
	if (!p) {
		close(tcp_fd);
		return error_set(err, ENOMEM, "no memory for a TLS connection");
	}
	p->net = tcp_fd;
	p->app = p->user_fd = -1;
	p->up = malloc(PUMP_BUF);
	p->down = malloc(PUMP_BUF);
	p->ssl = SSL_new(server ? tls.server : tls.client);
	int flags = fcntl(tcp_fd, F_GETFL);
	char why[256];
	if (!p->up || !p->down || !p->ssl) {
		error_set(err, ENOMEM, "no memory for a TLS connection: %s", ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (flags < 0 || fcntl(tcp_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		error_errno(err, errno, "configuring the migration socket for TLS");
		goto fail;
	}
	if (SSL_set_fd(p->ssl, tcp_fd) != 1) {
		error_set(err, EIO, "TLS: %s", ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (handshake(p->ssl, tcp_fd, server, timeout_ms, err) < 0)
		goto fail;
	char name[256];
	if (!peer_allowed(p->ssl, name, sizeof(name))) {
		/* A source is told why over the secured connection; a
		 * destination not allowed is simply not talked to. */
		if (!server || !refusal_size) {
			error_set(err, EACCES, "TLS: the %s's certificate (%s) names no peer on "
				  "the allow list (--tls-allow)", server ? "source" : "destination",
				  name);
			goto fail;
		}
		snprintf(refusal, refusal_size, "its certificate (%s) names no peer on the "
			 "destination's allow list (--tls-allow)", name);
	}
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		error_errno(err, errno, "TLS: socketpair");
		goto fail;
	}
	int size = PAIR_BUF;
	for (int i = 0; i < 2; i++) {
		(void)setsockopt(pair[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
		(void)setsockopt(pair[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	p->app = pair[1];
	p->user_fd = pair[0];
	int pflags = fcntl(p->app, F_GETFL);
	if (pflags < 0 || fcntl(p->app, F_SETFL, pflags | O_NONBLOCK) < 0) {
		error_errno(err, errno, "TLS: configuring the socketpair");
		close(pair[0]);
		goto fail;
	}
	set_net_error(p->user_fd, 0);
	pthread_mutex_lock(&tls.lock);
	if (tls.nlive == NET_ERRORS) {
		pthread_mutex_unlock(&tls.lock);
		error_set(err, EMFILE, "TLS: more than %d migration connections at once",
			  NET_ERRORS);
		close(pair[0]);
		goto fail;
	}
	tls.live[tls.nlive++] = p->user_fd;
	if (!tls.atexit_set)
		tls.atexit_set = atexit(drain_at_exit) == 0;
	pthread_mutex_unlock(&tls.lock);
	/* No signal for the pump: a peer gone mid-write is EPIPE, not SIGPIPE. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, pump_main, p);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		error_errno(err, rc, "TLS: cannot start the connection's thread");
		pthread_mutex_lock(&tls.lock);
		tls.nlive--;
		pthread_mutex_unlock(&tls.lock);
		close(pair[0]);
		goto fail;
	}
	pthread_setname_np(t, "tern-tls");
	log_debug("migration connection secured (TLS 1.3, peer %s)", name);
	return pair[0];

fail:
	pump_free(p);
	return err->code ? -abs(err->code) : -EIO;
}
