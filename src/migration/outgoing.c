/* outgoing.c: pre-copy live migration, source side.
 *
 * Pass 1 sends every page the guest ever populated; each later pass sends
 * the pages dirtied during the one before, until what is left can be sent
 * within the downtime limit at the bandwidth the last pass measured (or
 * the pass limit is reached). Then the guest is paused, the rest and the
 * device state are sent, and the commit of docs/migration-protocol.md
 * decides where the guest runs. Until GO is sent every failure resumes
 * the guest here. */
#include "migration/outgoing.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine/vm.h"
#include "migration/channels.h"
#include "migration/converge.h"
#include "migration/diskcopy.h"
#include "migration/postcopy_src.h"
#include "migration/stream.h"
#include "migration/tls.h"
#include "migration/transport.h"
#include "migration/vmstate.h"
#include "util/log.h"

#define CONNECT_TIMEOUT_MS 10000
#define STALL_TIMEOUT_MS 10000
#define READY_TIMEOUT_MS 30000
#define RUNNING_TIMEOUT_MS 10000
/* Whoever asked for the gate has this long to open it; the guest is paused
 * meanwhile, so a gatekeeper that went away must not keep it so. */
#define SWITCHOVER_TIMEOUT_MS 10000
#define PAGE_WIRE_BYTES (GUEST_PAGE_SIZE + 8)
/* Long enough for a watcher polling twice a second to see the outcome. */
#define LINGER_AFTER_COMPLETION_MS 1000

struct migration {
	struct vm *vm;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;           /* everything below */
	struct mig_stats st;
	bool cancel;
	bool resume;                    /* --resume asked for, with resume_to */
	char resume_to[300];
	pthread_cond_t resumed;
	pthread_cond_t gate_cond;       /* CLOCK_MONOTONIC */
	bool gate_open;                 /* migration_continue was called */
	int fd;
	struct mig_writer *w;
	int64_t started_ns;
	uint64_t stall_at_start_ns;     /* vm_dirty_stall_ns() when it started */
	struct postcopy_progress pc;    /* during post-copy */
	struct ram_codec codec;         /* the migration thread's */
	struct mig_channels ch;         /* the connections that carry RAM */
	bool ch_open;                   /* under lock: ch may be aborted */
	uint64_t bytes_before_postcopy;
	struct disk_copy dc;            /* with copy_storage: the migration thread's */
};

/* A pass this large (or long) tells the end-to-end page rate. */
#define PAGE_RATE_MIN_PAGES 1024
#define PAGE_RATE_MIN_NS 50000000
/* auto turns to post-copy rather than take more than this from the guest. */
#define AUTO_MAX_THROTTLE_PCT 50

const char *mig_phase_name(enum mig_phase phase)
{
	static const char *const names[] = {
		"none", "setup", "precopy", "stop-copy", "commit", "switchover", "postcopy",
		"postcopy-paused", "completed", "failed", "cancelled", "unknown",
	};
	return phase <= MIG_PHASE_UNKNOWN ? names[phase] : "?";
}

const char *mig_strategy_name(enum mig_strategy s)
{
	static const char *const names[] = { "auto", "precopy", "auto-converge", "postcopy",
					     "hybrid" };
	return s <= MIG_STRATEGY_HYBRID ? names[s] : "?";
}

int mig_strategy_parse(const char *name, enum mig_strategy *out)
{
	for (enum mig_strategy s = MIG_STRATEGY_AUTO; s <= MIG_STRATEGY_HYBRID; s++) {
		if (!strcmp(name, mig_strategy_name(s))) {
			*out = s;
			return 0;
		}
	}
	return -EINVAL;
}

bool mig_phase_finished(enum mig_phase phase)
{
	return phase == MIG_PHASE_NONE || phase >= MIG_PHASE_COMPLETED;
}

static void set_phase(struct migration *m, enum mig_phase phase)
{
	pthread_mutex_lock(&m->lock);
	m->st.phase = phase;
	pthread_mutex_unlock(&m->lock);
}

static bool cancelled(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	bool c = m->cancel;
	pthread_mutex_unlock(&m->lock);
	return c;
}

/* After a failed send: the destination may have said why before closing;
 * if not, tell the operator what the socket error means. */
static void peer_reason(int fd, struct error *err)
{
	uint32_t type;
	char text[MIG_FRAME_MAX];
	struct error e2 = { 0 };
	if (mig_recv_frame(fd, 200, &type, text, sizeof(text), &e2) == 1 && type == MIG_FRAME_ERROR) {
		error_set(err, EPROTO, "the destination refused the migration: %s", text);
		return;
	}
	/* Over TLS the caller only sees the connection close: what the
	 * network side failed with says which. */
	int net = mig_tls_net_error(fd);
	if (net == ETIMEDOUT && (err->code == EPIPE || err->code == ECONNRESET)) {
		error_wrap(err, "the connection timed out");
		err->code = ETIMEDOUT;
	}
	if (err->code == EPIPE || err->code == ECONNRESET)
		error_wrap(err, "the destination closed the connection (its VMM exited, was "
			   "killed or gave up)");
	else if (err->code == ETIMEDOUT)
		error_wrap(err, "the destination acknowledged nothing for %d s (the link to it is "
			   "down, or it is stuck)", STALL_TIMEOUT_MS / 1000);
}

/* Between passes: has the destination reported a problem or gone away? */
static int check_return_path(int fd, struct error *err)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 0) <= 0)
		return 0;
	uint32_t type;
	char text[MIG_FRAME_MAX];
	int rc = mig_recv_frame(fd, 1000, &type, text, sizeof(text), err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return error_set(err, ECONNRESET, "the destination closed the connection");
	if (type == MIG_FRAME_ERROR)
		return error_set(err, EPROTO, "the destination refused the migration: %s", text);
	return error_set(err, EPROTO, "the destination sent control frame %u out of turn", type);
}

struct disk_tick_ctx {
	struct migration *m;
	int fd;
};

/* Between the chunks of a disk copy, which can be long. */
static int disk_tick(void *ctx, struct error *err)
{
	struct disk_tick_ctx *t = ctx;
	if (cancelled(t->m))
		return error_set(err, ECANCELED, "cancelled by the operator");
	return check_return_path(t->fd, err);
}

/* The disk blocks collected by the last disk_copy_sync. */
static int send_disk_dirty(struct migration *m, struct mig_writer *w, int fd, struct error *err)
{
	struct disk_tick_ctx t = { m, fd };
	int rc = disk_copy_send_dirty(&m->dc, w, disk_tick, &t, err);
	pthread_mutex_lock(&m->lock);
	m->st.bytes_sent = w->bytes + mig_channels_aux_bytes(&m->ch);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static int send_pass(struct migration *m, struct mig_writer *w, const uint64_t *bitmap,
		     struct error *err)
{
	struct ram_stats rs = { 0 };
	/* The codecs weigh their cost against what the link could carry: its
	 * own speed, or the operator's limit if lower, not the pass's
	 * throughput (which the codecs themselves may be holding down). */
	uint64_t link = mig_writer_link_rate(w);
	pthread_mutex_lock(&m->lock);
	uint64_t limit = m->st.params.bandwidth;
	pthread_mutex_unlock(&m->lock);
	if (limit && (!link || limit < link))
		link = limit;
	m->codec.bandwidth = link;
	int rc = mig_channels_send(&m->ch, m->vm, bitmap, &rs, err);
	pthread_mutex_lock(&m->lock);
	m->st.pages_sent += rs.pages_data + rs.pages_zero;
	m->st.codec = m->codec.stats;
	for (unsigned i = 1; i < m->ch.n; i++) {
		const struct ram_codec_stats *cs = &m->ch.codec[i]->stats;
		m->st.codec.pages_delta += cs->pages_delta;
		m->st.codec.delta_bytes += cs->delta_bytes;
		m->st.codec.sections_zstd += cs->sections_zstd;
		m->st.codec.zstd_saved += cs->zstd_saved;
	}
	m->st.bytes_sent = w->bytes + mig_channels_aux_bytes(&m->ch);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* The guest is paused from here on; sends the rest and the device state. */
static int stop_and_copy(struct migration *m, struct mig_writer *w, uint64_t *bitmap,
			 struct error *err)
{
	uint64_t left = vm_sync_dirty(m->vm, bitmap);
	pthread_mutex_lock(&m->lock);
	m->st.pages_remaining = left;
	pthread_mutex_unlock(&m->lock);
	int rc = send_pass(m, w, bitmap, err);
	if (!rc)
		rc = mig_channels_end(&m->ch, err);
	pthread_mutex_lock(&m->lock);
	bool verify = m->st.params.verify;
	pthread_mutex_unlock(&m->lock);
	if (!rc && verify)
		rc = vmstate_save_ramhash(m->vm, w, err);
	if (!rc)
		rc = vmstate_save_machine(m->vm, w, err);
	if (!rc && mig_write_end(w) < 0)
		rc = mig_writer_status(w, err);
	pthread_mutex_lock(&m->lock);
	m->st.bytes_sent = w->bytes + mig_channels_aux_bytes(&m->ch);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Auto-converge: lets the guest dirty (100 - pct)% of the pages a pass
 * delivers per second (rate); 0 leaves the limit as it is. */
static void set_throttle(struct migration *m, double rate, unsigned pct)
{
	if (pct)
		vm_set_dirty_limit(m->vm, (uint64_t)(rate * (100 - pct) / 100));
	pthread_mutex_lock(&m->lock);
	m->st.throttle_pct = pct;
	pthread_mutex_unlock(&m->lock);
}

/* The commit: READY, GO, RUNNING. Returns the phase the migration ends in. */
/* The destination is ready and the guest paused: waits for
 * migration_continue. MIG_PHASE_COMMIT to go on, else how it ended (the
 * guest then resumes here). */
static enum mig_phase wait_at_gate(struct migration *m, struct error *err)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SWITCHOVER_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&m->lock);
	m->st.phase = MIG_PHASE_SWITCHOVER;
	int rc = 0;
	while (!m->gate_open && !m->cancel && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&m->gate_cond, &m->lock, &deadline);
	bool open = m->gate_open, cancel = m->cancel;
	if (open && !cancel)
		m->st.phase = MIG_PHASE_COMMIT;
	pthread_mutex_unlock(&m->lock);
	if (cancel) {
		error_set(err, ECANCELED, "cancelled at the switch-over");
		return MIG_PHASE_CANCELLED;
	}
	if (!open) {
		error_set(err, ETIMEDOUT, "nobody let the switch-over go on within %d s "
			  "(migrate-continue)", SWITCHOVER_TIMEOUT_MS / 1000);
		return MIG_PHASE_FAILED;
	}
	log_debug("migration: switch-over allowed");
	return MIG_PHASE_COMMIT;
}

static enum mig_phase commit(struct migration *m, int fd, const char *go, int64_t *t_ready,
			     struct error *err)
{
	uint32_t type;
	char text[MIG_FRAME_MAX];
	int rc = mig_recv_frame(fd, READY_TIMEOUT_MS, &type, text, sizeof(text), err);
	if (rc == 0)
		rc = error_set(err, ECONNRESET, "the destination closed before it was ready");
	if (rc > 0 && type == MIG_FRAME_ERROR)
		rc = error_set(err, EPROTO, "the destination refused the final state: %s", text);
	else if (rc > 0 && type != MIG_FRAME_READY)
		rc = error_set(err, EPROTO, "the destination sent frame %u instead of READY", type);
	if (rc < 0)
		return MIG_PHASE_FAILED;
	*t_ready = monotonic_ns();
	if (cancelled(m)) {
		error_set(err, ECANCELED, "cancelled by the operator");
		return MIG_PHASE_CANCELLED;
	}
	if (m->st.params.switchover_gate) {
		enum mig_phase gate = wait_at_gate(m, err);
		if (gate != MIG_PHASE_COMMIT)
			return gate;
	}

	/* From GO on, the destination may run the guest. */
	vm_disks_unlock(m->vm);
	if (mig_send_frame(fd, MIG_FRAME_GO, go, err) < 0)
		return MIG_PHASE_FAILED;   /* it cannot have received GO */
	rc = mig_recv_frame(fd, RUNNING_TIMEOUT_MS, &type, text, sizeof(text), err);
	if (rc > 0 && type == MIG_FRAME_RUNNING)
		return MIG_PHASE_COMPLETED;
	if (rc == -ETIMEDOUT) {
		error_set(err, ETIMEDOUT, "the destination did not confirm it runs the guest within "
			  "%d s, and the connection is still open: it may or may not run it. The "
			  "guest stays paused here; check the destination before `tern vm resume "
			  "--force`", RUNNING_TIMEOUT_MS / 1000);
		return MIG_PHASE_UNKNOWN;
	}
	/* Closed or reset: the destination process is gone, so it does not
	 * run the guest, whether or not GO reached it. */
	if (rc >= 0)
		error_set(err, ECONNRESET, "the destination closed the connection after GO without "
			  "confirming: it does not run the guest");
	return MIG_PHASE_FAILED;
}

/* SYNC, then SYNCED from a destination that has applied all before it. */
static int wait_for_destination(struct migration *m, struct mig_writer *w, int fd,
				struct error *err)
{
	int64_t t0 = monotonic_ns();
	if (mig_write_section(w, MIG_SEC_SYNC, 0, 1, NULL, 0) < 0 || mig_flush(w) < 0)
		return mig_writer_status(w, err);
	uint32_t type;
	char text[MIG_FRAME_MAX];
	int rc = mig_recv_frame(fd, READY_TIMEOUT_MS, &type, text, sizeof(text), err);
	if (rc == 0)
		return error_set(err, ECONNRESET, "the destination closed the connection");
	if (rc > 0 && type == MIG_FRAME_ERROR)
		return error_set(err, EPROTO, "the destination refused the migration: %s", text);
	if (rc > 0 && type != MIG_FRAME_SYNCED)
		return error_set(err, EPROTO, "the destination sent frame %u instead of SYNCED", type);
	if (rc < 0)
		return rc;
	(void)m;
	log_debug("migration: the destination caught up in %.1f ms", (monotonic_ns() - t0) / 1e6);
	return 0;
}

/* Before the pause of a switch to post-copy: the destination drops its
 * copies of the pages dirtied since they were sent (most of those it will
 * be owed) while the guest still runs here. Dropping 256 MiB took 21 ms on
 * this machine, which the pause then no longer holds. SYNCED says it is
 * done, and that all sent before is applied (a backlog would be downtime
 * too). */
static int announce_postcopy(struct migration *m, struct mig_writer *w, int fd,
			     uint64_t *bitmap, struct error *err)
{
	/* No pass follows: the other connections are done. */
	int rc = mig_channels_end(&m->ch, err);
	if (rc)
		return rc;
	uint64_t stale = vm_sync_dirty(m->vm, bitmap);
	if ((rc = vmstate_save_discard(m->vm, w, bitmap, err)) < 0)
		return rc;
	log_debug("migration: the destination drops %llu stale pages before the switch",
		  (unsigned long long)stale);
	return wait_for_destination(m, w, fd, err);
}

static void new_session(char *go, size_t size)
{
	uint64_t id = 0;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint64_t)monotonic_ns() ^ ((uint64_t)getpid() << 32);
	snprintf(go, size, "%s %016llx", MIG_GO_POSTCOPY, (unsigned long long)id);
}

/* The guest is paused: the pages still dirty become the destination's
 * "owed" map, and the device state goes now. */
static int switch_to_postcopy(struct migration *m, struct mig_writer *w, uint64_t *bitmap,
			      struct error *err)
{
	uint64_t left = vm_sync_dirty(m->vm, bitmap);
	pthread_mutex_lock(&m->lock);
	m->st.pages_remaining = left;
	pthread_mutex_unlock(&m->lock);
	/* The pages still owed go on the main connection, after GO. */
	int rc = mig_channels_end(&m->ch, err);
	if (!rc)
		rc = vmstate_save_postcopy(m->vm, w, bitmap, err);
	if (!rc)
		rc = vmstate_save_machine(m->vm, w, err);
	if (!rc && mig_write_end(w) < 0)
		rc = mig_writer_status(w, err);
	pthread_mutex_lock(&m->lock);
	m->st.bytes_sent = w->bytes + mig_channels_aux_bytes(&m->ch);
	pthread_mutex_unlock(&m->lock);
	log_info("migration: switched to post-copy with %llu pages still to send",
		 (unsigned long long)left);
	return rc;
}

/* Reconnects for --resume: RESUME, then the destination's own map of the
 * pages it still lacks. Returns the new connection or -errno. */
static int reconnect(struct migration *m, const char *to, const char *session, uint64_t *owed,
		     struct error *err)
{
	struct mig_address addr;
	int rc = mig_parse_address(to, &addr, err);
	if (rc)
		return rc;
	int fd = mig_connect(&addr, CONNECT_TIMEOUT_MS, STALL_TIMEOUT_MS, err);
	if (fd < 0)
		return fd;
	rc = mig_send_frame(fd, MIG_FRAME_RESUME, session, err);
	struct mig_reader r;
	bool reader = false;
	if (!rc && !(rc = mig_reader_init(&r, fd, "the destination's page map", err)))
		reader = true;
	if (!rc)
		rc = mig_read_header(&r, err);
	struct vmstate_loader l;
	vmstate_loader_init(&l, m->vm, false);
	l.config_checked = true;
	l.live = true;
	while (!rc) {
		struct mig_section s;
		rc = mig_read_section(&r, &s, err);
		if (rc == 0)
			break;
		if (rc > 0)
			rc = s.type == MIG_SEC_POSTCOPY ? vmstate_load_section(&l, &s, err)
				: error_set(err, EPROTO, "the destination sent a %s section instead "
					    "of its page map", mig_section_name(s.type));
	}
	if (!rc && !l.owed)
		rc = error_set(err, EPROTO, "the destination sent no page map");
	if (!rc) {
		memcpy(owed, l.owed, m->vm->ram.dirty_words * 8);
		log_info("post-copy: reconnected to %s; it still needs %llu pages", to,
			 (unsigned long long)l.owed_pages);
	}
	vmstate_loader_free(&l);
	if (reader)
		mig_reader_free(&r);
	if (rc) {
		peer_reason(fd, err);
		close(fd);
		return rc;
	}
	return fd;
}

/* Post-copy from GO on: serve pages until DONE; after a broken link, wait
 * for --resume and carry on over a new connection. The guest is not ours
 * any more: nothing here resumes it. */
/* The second post-copy connection, for requested pages only; -1 if the
 * destination cannot be reached on it (post-copy then goes on without). */
static int connect_preempt(struct migration *m, const char *session)
{
	struct mig_address addr;
	struct error e = { 0 };
	int fd = -1;
	if (mig_parse_address(m->st.to, &addr, &e) == 0)
		fd = mig_connect(&addr, CONNECT_TIMEOUT_MS, STALL_TIMEOUT_MS, &e);
	if (fd >= 0 && mig_send_frame(fd, MIG_FRAME_PREEMPT, session, &e) < 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		log_warn("post-copy: no preempt connection (%s); requested pages go with the rest",
			 e.msg);
	return fd;
}

static enum mig_phase run_postcopy(struct migration *m, int *fd, uint64_t *owed,
				   const char *session, struct error *err)
{
	/* Only the first time: after a reconnect the one connection serves. */
	int preempt = connect_preempt(m, session);
	for (;;) {
		set_phase(m, MIG_PHASE_POSTCOPY);
		pthread_mutex_lock(&m->lock);
		uint64_t bandwidth = m->st.params.bandwidth;
		m->fd = *fd;
		pthread_mutex_unlock(&m->lock);
		int rc = postcopy_serve(m->vm, *fd, preempt, owed, bandwidth, &m->pc, &m->lock, err);
		preempt = -1;
		pthread_mutex_lock(&m->lock);
		m->fd = -1;
		pthread_mutex_unlock(&m->lock);
		close(*fd);
		*fd = -1;
		if (rc == 0)
			return MIG_PHASE_COMPLETED;
		for (;;) {
			log_error("post-copy to %s: %s. The guest is paused on the destination until "
				  "it gets the rest of its pages from here: tern vm migrate --resume "
				  "[--to tcp:HOST:PORT]", m->st.to, err->msg);
			pthread_mutex_lock(&m->lock);
			m->st.phase = MIG_PHASE_POSTCOPY_PAUSED;
			snprintf(m->st.error, sizeof(m->st.error), "%s", err->msg);
			while (!m->resume && !m->cancel)
				pthread_cond_wait(&m->resumed, &m->lock);
			bool stop = m->cancel;
			char to[sizeof(m->resume_to)];
			snprintf(to, sizeof(to), "%s", m->resume_to[0] ? m->resume_to : m->st.to);
			m->resume = false;
			pthread_mutex_unlock(&m->lock);
			if (stop) {
				error_set(err, ECANCELED, "the source VMM stopped during post-copy; the "
					  "guest on the destination lacks %llu pages",
					  (unsigned long long)m->pc.pages_left);
				return MIG_PHASE_FAILED;
			}
			memset(err, 0, sizeof(*err));
			*fd = reconnect(m, to, session, owed, err);
			if (*fd >= 0)
				break;
		}
		pthread_mutex_lock(&m->lock);
		m->st.error[0] = '\0';
		pthread_mutex_unlock(&m->lock);
	}
}

static void finish(struct migration *m, enum mig_phase phase, const struct error *err)
{
	pthread_mutex_lock(&m->lock);
	m->st.phase = phase;
	m->st.elapsed_ms = (uint64_t)(monotonic_ns() - m->started_ns) / 1000000;
	m->st.throttle_stall_ms = (vm_dirty_stall_ns(m->vm) - m->stall_at_start_ns) / 1000000;
	if (err && err->code)
		snprintf(m->st.error, sizeof(m->st.error), "%s", err->msg);
	m->w = NULL;
	pthread_mutex_unlock(&m->lock);
}

static void *migration_main(void *arg)
{
	struct migration *m = arg;
	struct vm *vm = m->vm;
	struct error err = { 0 };
	struct mig_address addr;
	struct mig_writer w;
	bool writer_ready = false, paused_here = false, postcopy_running = false, dc_on = false;
	uint64_t *bitmap = calloc(vm->ram.dirty_words, sizeof(uint64_t));
	enum mig_phase end = MIG_PHASE_FAILED;
	int fd = -1;

	if (!bitmap) {
		error_set(&err, ENOMEM, "no memory for the dirty bitmap");
		goto out;
	}
	if (ram_codec_init(&m->codec, &m->st.params.codec, vm->ram.size, &err) < 0)
		goto out;
	if (mig_parse_address(m->st.to, &addr, &err) < 0)
		goto out;
	fd = mig_connect(&addr, CONNECT_TIMEOUT_MS, STALL_TIMEOUT_MS, &err);
	if (fd < 0)
		goto out;
	if (mig_writer_init(&w, fd, true, &err) < 0)
		goto out;
	writer_ready = true;
	pthread_mutex_lock(&m->lock);
	m->fd = fd;
	m->w = &w;
	mig_writer_set_rate(&w, m->st.params.bandwidth);
	bool stop_now = m->cancel;
	pthread_mutex_unlock(&m->lock);
	if (stop_now) {
		error_set(&err, ECANCELED, "cancelled by the operator");
		end = MIG_PHASE_CANCELLED;
		goto out;
	}

	bool copy_storage = m->st.params.copy_storage;
	if (copy_storage) {
		if (disk_copy_begin(&m->dc, vm, &err) < 0)
			goto out;
		dc_on = true;
		log_info("migration: copying the disks too, %llu MiB of data",
			 (unsigned long long)(m->dc.st.bytes_total >> 20));
	}
	if (mig_write_header(&w) < 0 ||
	    vmstate_save_config(vm, &w, copy_storage ? m->dc.data_bytes : NULL, &err) < 0 ||
	    mig_flush(&w) < 0) {
		mig_writer_status(&w, &err);
		goto fail_send;
	}
	{
		unsigned streams = m->st.params.streams;
		int rc = mig_channels_open(&m->ch, streams, &addr, STALL_TIMEOUT_MS, &w, &m->codec,
					   &m->st.params.codec, vm->ram.size, &err);
		pthread_mutex_lock(&m->lock);
		m->ch_open = true;
		pthread_mutex_unlock(&m->lock);
		if (rc < 0)
			goto fail_send;
	}

	/* Pass 1: start tracking, then every populated page. */
	set_phase(m, MIG_PHASE_PRECOPY);
	if (dc_on) {
		/* The disks' bulk copy first: the guest's writes meanwhile are
		 * tracked and go with the passes. */
		struct disk_tick_ctx t = { m, fd };
		int64_t t_disk = monotonic_ns();
		if (disk_copy_bulk(&m->dc, &w, disk_tick, &t, &err) < 0)
			goto fail_send;
		log_info("migration: bulk disk copy done in %.1f s",
			 (double)(monotonic_ns() - t_disk) / 1e9);
	}
	int64_t last_sync = 0;
	uint64_t sent_last_pass = 0;
	struct converge conv = { 0 };
	bool to_postcopy = false, caught_up = false, settled = false;
	double page_rate = 0;       /* pages/s a large enough pass delivered */
	/* Whether the pages in the bitmap went out; if not (a pass skipped to
	 * let the destination catch up), the next sync adds to them. */
	bool bitmap_sent = true;
	for (uint32_t pass = 1;; pass++) {
		int64_t t0 = monotonic_ns();
		uint64_t bytes0 = w.bytes + mig_channels_aux_bytes(&m->ch);
		/* The last pass sent what the bitmap held. If this pass turns
		 * out to be the stop-and-copy's, the pages collected here stay
		 * in the bitmap and the final sync adds to them. */
		if (bitmap_sent)
			memset(bitmap, 0, vm->ram.dirty_words * sizeof(uint64_t));
		bitmap_sent = false;
		uint64_t dirty = vm_sync_dirty(vm, bitmap);
		uint64_t disk_dirty = dc_on ? disk_copy_sync(&m->dc) : 0;
		pthread_mutex_lock(&m->lock);
		m->st.pass = pass;
		m->st.pages_remaining = dirty;
		/* Pages dirtied since the last sync, over the time since then. */
		if (last_sync && t0 > last_sync)
			m->st.dirty_rate = (uint64_t)((double)dirty * 1e9 / (double)(t0 - last_sync));
		struct mig_params p = m->st.params;
		uint64_t bandwidth = m->st.bandwidth;
		pthread_mutex_unlock(&m->lock);
		/* What the rest would take: at the pages per second the last
		 * pass that was large enough to tell delivered end to end
		 * (encoding, the link, the destination applying them), which
		 * a small pass cannot show (latency), nor the socket's write
		 * speed (the destination may be slower). Until a pass told,
		 * the link's speed in raw pages. */
		uint64_t link = mig_writer_link_rate(&w);
		if (p.bandwidth && (!link || p.bandwidth < link))
			link = p.bandwidth;
		if (link)
			bandwidth = link;
		double rate = page_rate > 0 ? page_rate : (double)bandwidth / PAGE_WIRE_BYTES;

		last_sync = t0;
		if (pass > 1) {
			/* Disk blocks cost about what pages of their size do. */
			double work = (double)dirty + (double)disk_dirty / GUEST_PAGE_SIZE;
			uint64_t expect_us = rate > 0 ? (uint64_t)(work * 1e6 / rate) : 0;
			uint64_t limit_us = (uint64_t)p.downtime_ms * 1000;
			pthread_mutex_lock(&m->lock);
			m->st.expected_downtime_ms = expect_us / 1000;
			pthread_mutex_unlock(&m->lock);
			if (expect_us <= limit_us) {
				/* The destination may still be applying what was sent:
				 * let it catch up while the guest runs, then take one
				 * more look, so that its backlog is not downtime. */
				if (!caught_up) {
					if (wait_for_destination(m, &w, fd, &err) < 0)
						goto fail_send;
					caught_up = true;
					continue;
				}
				bool switch_now = pass > p.max_passes ||
						  converge_switch_now(&conv, dirty, sent_last_pass,
								      expect_us, limit_us);
				log_debug("migration: pass %u left %llu of the %llu pages it sent, "
					  "%.2f ms at %.0f pages/s: %s", pass - 1,
					  (unsigned long long)dirty,
					  (unsigned long long)sent_last_pass, (double)expect_us / 1000,
					  rate, switch_now ? "switching over" : "one more pass");
				if (switch_now) {
					/* What the refining passes sent may not be
					 * applied yet: one more catch-up, one more look. */
					if (conv.refine_passes && !settled) {
						if (wait_for_destination(m, &w, fd, &err) < 0)
							goto fail_send;
						settled = true;
						continue;
					}
					break;
				}
				/* Only the strategies that throttle at all. */
				if (p.strategy == MIG_STRATEGY_AUTO ||
				    p.strategy == MIG_STRATEGY_AUTO_CONVERGE) {
					unsigned t = converge_refine_throttle(
						&conv, dirty, sent_last_pass, m->st.throttle_pct);
					if (t != m->st.throttle_pct)
						set_throttle(m, rate, t);
				}
			} else {
				bool postcopy_ok = p.strategy == MIG_STRATEGY_AUTO ||
						   p.strategy == MIG_STRATEGY_HYBRID ||
						   p.strategy == MIG_STRATEGY_POSTCOPY;
				if (pass > p.max_passes || p.strategy == MIG_STRATEGY_POSTCOPY) {
					to_postcopy = postcopy_ok;
					break;
				}
				if (p.strategy != MIG_STRATEGY_PRECOPY) {
					unsigned t = converge_after_pass(&conv, dirty, sent_last_pass,
									 expect_us, limit_us);
					if ((p.strategy == MIG_STRATEGY_HYBRID && t) ||
					    (p.strategy == MIG_STRATEGY_AUTO &&
					     t > AUTO_MAX_THROTTLE_PCT)) {
						log_info("migration: pass %u left %llu of the %llu pages it "
							 "sent; switching to post-copy", pass - 1,
							 (unsigned long long)dirty,
							 (unsigned long long)sent_last_pass);
						to_postcopy = true;
						break;
					}
					if (t && t != m->st.throttle_pct)
						log_info("migration: pass %u left %llu of the %llu pages "
							 "it sent; throttling the guest's dirtying by "
							 "%u%%", pass - 1, (unsigned long long)dirty,
							 (unsigned long long)sent_last_pass, t);
					set_throttle(m, rate, t);
				}
			}
		}
		uint64_t sent_before = m->st.pages_sent;
		if (send_pass(m, &w, pass == 1 ? NULL : bitmap, &err) < 0)
			goto fail_send;
		bitmap_sent = true;
		if (dc_on && send_disk_dirty(m, &w, fd, &err) < 0)
			goto fail_send;
		sent_last_pass = m->st.pages_sent - sent_before;
		if (check_return_path(fd, &err) < 0)
			goto out;
		if (cancelled(m)) {
			error_set(&err, ECANCELED, "cancelled by the operator");
			end = MIG_PHASE_CANCELLED;
			goto out;
		}
		int64_t dt = monotonic_ns() - t0;
		if (sent_last_pass >= PAGE_RATE_MIN_PAGES || dt >= PAGE_RATE_MIN_NS)
			page_rate = (double)sent_last_pass * 1e9 / (double)(dt > 0 ? dt : 1);
		pthread_mutex_lock(&m->lock);
		if (dt > 0)
			m->st.bandwidth = (uint64_t)((double)(w.bytes + mig_channels_aux_bytes(&m->ch) -
							      bytes0) * 1e9 / (double)dt);
		pthread_mutex_unlock(&m->lock);
	}

	/* Paused by the operator meanwhile, the guest dirties nothing:
	 * pre-copy finishes it, and it stays paused there. */
	if (to_postcopy && vm_is_paused(vm))
		to_postcopy = false;
	if (to_postcopy && announce_postcopy(m, &w, fd, bitmap, &err) < 0)
		goto fail_send;

	/* What is still buffered here would go out during the pause. */
	if (mig_flush(&w) < 0) {
		mig_writer_status(&w, &err);
		goto fail_send;
	}

	/* Stop and copy. */
	set_phase(m, MIG_PHASE_STOPCOPY);
	int64_t t_pause = monotonic_ns();
	bool was_paused = vm_is_paused(vm);
	if (to_postcopy && was_paused) {
		/* The DISCARD went: post-copy or nothing, and post-copy would
		 * run there the guest the operator just paused. */
		error_set(&err, EBUSY, "the VM was paused while the destination got ready for "
			  "post-copy; migrate it again (paused, it goes by pre-copy)");
		goto out;
	}
	/* A hart waiting out the dirty limit would delay the pause. */
	vm_set_dirty_limit(vm, 0);
	if (!was_paused) {
		if (vm_pause(vm, &err) < 0)
			goto out;
		paused_here = true;
	}
	char go[64];
	if (to_postcopy)
		new_session(go, sizeof(go));
	log_debug("migration: guest paused after %.1f ms", (monotonic_ns() - t_pause) / 1e6);
	/* Paused, the block devices have finished the request they were
	 * serving and take no other: the last written blocks go now. */
	if (dc_on) {
		uint64_t left = disk_copy_sync(&m->dc);
		if (send_disk_dirty(m, &w, fd, &err) < 0)
			goto fail_send;
		log_debug("migration: last %llu KiB of disk blocks sent %.1f ms after the pause",
			  (unsigned long long)(left >> 10), (monotonic_ns() - t_pause) / 1e6);
	}
	if ((to_postcopy ? switch_to_postcopy(m, &w, bitmap, &err)
			 : stop_and_copy(m, &w, bitmap, &err)) < 0)
		goto fail_send;
	int64_t t_sent = monotonic_ns(), t_ready = 0;
	log_debug("migration: final state (%llu pages) sent %.3f ms after the pause",
		  (unsigned long long)m->st.pages_remaining, (t_sent - t_pause) / 1e6);
	set_phase(m, MIG_PHASE_COMMIT);
	/* A VM the operator had paused stays paused on the destination. */
	end = commit(m, fd, to_postcopy ? go : was_paused ? MIG_GO_PAUSED : NULL, &t_ready, &err);
	if (end == MIG_PHASE_COMPLETED) {
		pthread_mutex_lock(&m->lock);
		m->st.downtime_us = (uint64_t)(monotonic_ns() - t_pause) / 1000;
		m->st.downtime_sent_us = (uint64_t)(t_sent - t_pause) / 1000;
		m->st.downtime_ready_us = (uint64_t)(t_ready - t_pause) / 1000;
		pthread_mutex_unlock(&m->lock);
	}
	if (end == MIG_PHASE_COMPLETED && to_postcopy) {
		/* The guest runs there now; the rest of its pages follow, written
		 * by post-copy itself: the stream writer's thread goes first. */
		pthread_mutex_lock(&m->lock);
		m->w = NULL;
		m->bytes_before_postcopy = w.bytes + mig_channels_aux_bytes(&m->ch);
		pthread_mutex_unlock(&m->lock);
		mig_writer_free(&w);
		writer_ready = false;
		postcopy_running = true;
		end = run_postcopy(m, &fd, bitmap, go + strlen(MIG_GO_POSTCOPY) + 1, &err);
	}
	goto out;

fail_send:
	peer_reason(fd, &err);
out:
	/* Full speed again, here (failed) or for the copy that stays paused. */
	vm_set_dirty_limit(vm, 0);
	if (end == MIG_PHASE_FAILED && cancelled(m))
		end = MIG_PHASE_CANCELLED;
	if (postcopy_running && end != MIG_PHASE_COMPLETED) {
		/* Past the point of return: the guest runs there, on pages from here. */
		log_error("post-copy to %s ended unfinished: %s", m->st.to, err.msg);
	} else if (end == MIG_PHASE_FAILED || end == MIG_PHASE_CANCELLED) {
		/* The guest stays (or becomes again) ours: its disks first. */
		struct error e2 = { 0 };
		if (vm_disks_lock(vm, &e2) < 0)
			log_error("migration failed, and the disks cannot be locked again: %s",
				  e2.msg);
		if (paused_here && vm_resume(vm, &e2) < 0)
			log_error("migration failed, and the VM cannot resume: %s", e2.msg);
		log_error("migration to %s %s: %s", m->st.to,
			  end == MIG_PHASE_CANCELLED ? "cancelled" : "failed", err.msg);
	} else if (end == MIG_PHASE_UNKNOWN) {
		log_error("migration to %s: %s", m->st.to, err.msg);
	}
	if (writer_ready) {
		pthread_mutex_lock(&m->lock);
		m->w = NULL;
		pthread_mutex_unlock(&m->lock);
		mig_writer_free(&w);
	}
	pthread_mutex_lock(&m->lock);
	m->fd = -1;
	pthread_mutex_unlock(&m->lock);
	if (fd >= 0)
		close(fd);
	free(bitmap);
	pthread_mutex_lock(&m->lock);
	bool ch_open = m->ch_open;
	m->ch_open = false;
	pthread_mutex_unlock(&m->lock);
	if (ch_open)
		mig_channels_close(&m->ch);
	ram_codec_free(&m->codec);
	if (dc_on)
		disk_copy_end(&m->dc);
	finish(m, end, &err);
	if (end == MIG_PHASE_COMPLETED) {
		struct mig_stats st;
		migration_status(vm, &st);
		log_info("migrated to %s: %llu ms in all, downtime %.2f ms, %llu bytes, %u passes",
			 st.to, (unsigned long long)st.elapsed_ms, (double)st.downtime_us / 1000,
			 (unsigned long long)st.bytes_sent, st.pass);
		usleep(LINGER_AFTER_COMPLETION_MS * 1000);
		vm_request_stop(vm, VM_EXIT_POWEROFF);
	}
	return NULL;
}

int migration_start(struct vm *vm, const char *to, const struct mig_params *params,
		    struct error *err)
{
	struct mig_address addr;
	int rc = mig_parse_address(to, &addr, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&vm->lock);
	enum vm_state state = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (state == VM_STOPPING)
		return error_set(err, EBUSY, "the VM is stopping");
	struct migration *m = vm->migration;
	if (m) {
		pthread_mutex_lock(&m->lock);
		enum mig_phase phase = m->st.phase;
		pthread_mutex_unlock(&m->lock);
		if (!mig_phase_finished(phase))
			return error_set(err, EBUSY, "a migration to %s is already %s", m->st.to,
					 mig_phase_name(phase));
		if (phase == MIG_PHASE_COMPLETED || phase == MIG_PHASE_UNKNOWN)
			return error_set(err, EBUSY, "the last migration ended %s: the VM no longer "
					 "runs here", mig_phase_name(phase));
		if (m->thread_started)
			pthread_join(m->thread, NULL);
		m->thread_started = false;
	} else {
		m = calloc(1, sizeof(*m));
		if (!m)
			return error_set(err, ENOMEM, "out of memory");
		pthread_mutex_init(&m->lock, NULL);
		pthread_cond_init(&m->resumed, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m->gate_cond, &ca);
		pthread_condattr_destroy(&ca);
		m->vm = vm;
		vm->migration = m;
	}
	pthread_mutex_lock(&m->lock);
	memset(&m->st, 0, sizeof(m->st));
	snprintf(m->st.to, sizeof(m->st.to), "%s", to);
	m->st.params = *params;
	m->st.phase = MIG_PHASE_SETUP;
	m->cancel = false;
	m->gate_open = false;
	m->fd = -1;
	m->started_ns = monotonic_ns();
	m->stall_at_start_ns = vm_dirty_stall_ns(vm);
	pthread_mutex_unlock(&m->lock);
	rc = pthread_create(&m->thread, NULL, migration_main, m);
	if (rc) {
		set_phase(m, MIG_PHASE_FAILED);
		return error_errno(err, rc, "cannot start the migration thread");
	}
	m->thread_started = true;
	log_info("migrating to %s (downtime limit %u ms, bandwidth %s, at most %u passes)", to,
		 params->downtime_ms, params->bandwidth ? "limited" : "unlimited",
		 params->max_passes);
	return 0;
}

void migration_status(struct vm *vm, struct mig_stats *out)
{
	struct migration *m = vm->migration;
	memset(out, 0, sizeof(*out));
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	*out = m->st;
	if (m->w)    /* mid-pass: the bytes handed to the writer so far */
		out->bytes_sent = __atomic_load_n(&m->w->bytes, __ATOMIC_RELAXED);
	if (m->bytes_before_postcopy) {
		out->pages_remaining = m->pc.pages_left;
		out->postcopy_requests = m->pc.pages_requested;
		out->bytes_sent = m->bytes_before_postcopy + m->pc.bytes;
	}
	if (m->st.params.copy_storage) {
		struct disk_copy_stats ds;
		disk_copy_stats(&m->dc, &ds);
		out->disk_bytes_total = ds.bytes_total;
		out->disk_bytes_sent = ds.bytes_sent;
		out->disk_dirty_bytes = ds.dirty_bytes;
	}
	if (!mig_phase_finished(m->st.phase)) {
		out->elapsed_ms = (uint64_t)(monotonic_ns() - m->started_ns) / 1000000;
		out->throttle_stall_ms = (vm_dirty_stall_ns(vm) - m->stall_at_start_ns) / 1000000;
	}
	pthread_mutex_unlock(&m->lock);
}

int migration_set(struct vm *vm, int64_t downtime_ms, int64_t bandwidth, int64_t max_passes,
		  struct error *err)
{
	struct migration *m = vm->migration;
	if (!m)
		return error_set(err, ENOENT, "no migration is running");
	pthread_mutex_lock(&m->lock);
	if (mig_phase_finished(m->st.phase)) {
		pthread_mutex_unlock(&m->lock);
		return error_set(err, ENOENT, "no migration is running");
	}
	if (downtime_ms >= 0)
		m->st.params.downtime_ms = (uint32_t)downtime_ms;
	if (max_passes >= 0)
		m->st.params.max_passes = (uint32_t)max_passes;
	if (bandwidth >= 0) {
		m->st.params.bandwidth = (uint64_t)bandwidth;
		if (m->w)
			mig_writer_set_rate(m->w, (uint64_t)bandwidth);
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int migration_continue(struct vm *vm, struct error *err)
{
	struct migration *m = vm->migration;
	if (!m)
		return error_set(err, ENOENT, "no migration is running");
	pthread_mutex_lock(&m->lock);
	bool waiting = m->st.phase == MIG_PHASE_SWITCHOVER && !m->cancel;
	if (waiting) {
		m->gate_open = true;
		pthread_cond_broadcast(&m->gate_cond);
	}
	pthread_mutex_unlock(&m->lock);
	if (!waiting)
		return error_set(err, EINVAL, "the migration is not waiting at its switch-over");
	return 0;
}

int migration_cancel(struct vm *vm, struct error *err)
{
	struct migration *m = vm->migration;
	if (!m)
		return error_set(err, ENOENT, "no migration is running");
	pthread_mutex_lock(&m->lock);
	if (mig_phase_finished(m->st.phase)) {
		pthread_mutex_unlock(&m->lock);
		return error_set(err, ENOENT, "no migration is running");
	}
	if (m->st.phase == MIG_PHASE_COMMIT) {
		pthread_mutex_unlock(&m->lock);
		return error_set(err, EBUSY, "the migration is committing: too late to cancel");
	}
	if (m->st.phase == MIG_PHASE_POSTCOPY || m->st.phase == MIG_PHASE_POSTCOPY_PAUSED) {
		pthread_mutex_unlock(&m->lock);
		return error_set(err, EBUSY, "post-copy has begun: the guest runs on the destination "
				 "and needs the rest of its pages from here; it cannot be cancelled");
	}
	m->cancel = true;
	pthread_cond_broadcast(&m->gate_cond);
	/* Unblock a send stuck on a slow link: the thread sees the failure,
	 * then the cancel flag, and resumes the guest. */
	if (m->w)
		mig_writer_abort(m->w, ECANCELED, "cancelled by the operator");
	if (m->ch_open)
		mig_channels_abort(&m->ch, ECANCELED, "cancelled by the operator");
	if (m->fd >= 0)
		shutdown(m->fd, SHUT_RDWR);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

bool migration_outcome_unknown(struct vm *vm)
{
	struct migration *m = vm->migration;
	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	bool unknown = m->st.phase == MIG_PHASE_UNKNOWN;
	pthread_mutex_unlock(&m->lock);
	return unknown;
}

int migration_check_idle(struct vm *vm, const char *what, bool running_ok, struct error *err)
{
	struct migration *m = vm->migration;
	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	enum mig_phase phase = m->st.phase;
	char to[sizeof(m->st.to)];
	snprintf(to, sizeof(to), "%s", m->st.to);
	pthread_mutex_unlock(&m->lock);
	if (mig_phase_finished(phase))
		return 0;
	/* While the guest still runs here it may be paused and resumed: the
	 * passes go on. From the pause of the switch-over on, it is the
	 * migration's. */
	if (running_ok && phase <= MIG_PHASE_PRECOPY)
		return 0;
	return error_set(err, EBUSY, "%s: a migration to %s is in progress (%s); wait for it or "
			 "cancel it (migrate-cancel) first", what, to, mig_phase_name(phase));
}

int migration_resume(struct vm *vm, const char *to, struct error *err)
{
	struct migration *m = vm->migration;
	if (to) {
		struct mig_address addr;
		int rc = mig_parse_address(to, &addr, err);
		if (rc)
			return rc;
	}
	if (!m)
		return error_set(err, ENOENT, "no migration to resume");
	pthread_mutex_lock(&m->lock);
	if (m->st.phase != MIG_PHASE_POSTCOPY_PAUSED) {
		enum mig_phase phase = m->st.phase;
		pthread_mutex_unlock(&m->lock);
		return error_set(err, EBUSY, "the migration is %s; only a post-copy whose link "
				 "failed can be resumed", mig_phase_name(phase));
	}
	snprintf(m->resume_to, sizeof(m->resume_to), "%s", to ? to : "");
	if (to)
		snprintf(m->st.to, sizeof(m->st.to), "%s", to);
	m->resume = true;
	pthread_cond_signal(&m->resumed);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void migration_destroy(struct vm *vm)
{
	struct migration *m = vm->migration;
	if (!m)
		return;
	if (m->thread_started) {
		pthread_mutex_lock(&m->lock);
		m->cancel = true;
		if (m->w)
			mig_writer_abort(m->w, ECANCELED, "the VMM is stopping");
		if (m->ch_open)
			mig_channels_abort(&m->ch, ECANCELED, "the VMM is stopping");
		if (m->fd >= 0)
			shutdown(m->fd, SHUT_RDWR);
		pthread_cond_signal(&m->resumed);
		pthread_cond_broadcast(&m->gate_cond);
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
	}
	pthread_cond_destroy(&m->resumed);
	pthread_cond_destroy(&m->gate_cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
	vm->migration = NULL;
}
