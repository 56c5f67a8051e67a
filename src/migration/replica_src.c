/* replica_src.c: the source side of continuous replication (replica.h).
 *
 * One thread: connect, the bulk epoch, then an epoch every epoch_ms. An
 * epoch is written, while the guest is paused, into a memfd (the pages
 * written since the last one, then the harts' and devices' state), so the
 * pause lasts a copy in memory, not a network round trip; it is sent and
 * acknowledged while the guest runs. A link that fails ends the
 * replication (phase "failed", the reason in the status); the VM runs on,
 * untouched. */
#include "migration/replica.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/diskcopy.h"
#include "migration/outgoing.h"
#include "migration/replica_wire.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "migration/vmstate.h"
#include "util/le.h"
#include "util/log.h"

#define CONNECT_TIMEOUT_MS 10000
#define STALL_TIMEOUT_MS 10000
/* The standby verifies and applies an epoch before it acknowledges. */
#define ACK_TIMEOUT_MS 60000

struct replication {
	struct vm *vm;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;           /* everything below */
	pthread_cond_t wake;
	bool stop;
	bool final;                     /* stop with one last epoch, the guest left paused */
	bool final_failed;
	bool active;
	int fd;
	struct replica_stats st;
	int64_t acked_taken_ns;         /* when the last acknowledged epoch was taken */
	struct disk_copy dc;            /* with copy_storage: the replication thread's */
	bool dc_on;
	/* The replication thread's, for compression on the wire. */
	struct zctx *z;
	int wire_fd;                    /* the compressed copy of an epoch */
	struct codec_meter meter;
	uint64_t link_bytes_per_s;      /* measured from sends; 0 unknown */
	uint64_t compress_tries;
};

void replica_header_encode(const struct replica_epoch_header *h, uint8_t out[REPLICA_HEADER_SIZE])
{
	put_le32(out, REPLICA_MAGIC);
	put_le32(out + 4, h->flags);
	put_le64(out + 8, h->epoch);
	put_le64(out + 16, h->length);
}

int replica_header_decode(const uint8_t in[REPLICA_HEADER_SIZE], struct replica_epoch_header *h,
			  struct error *err)
{
	if (get_le32(in) != REPLICA_MAGIC)
		return error_set(err, EPROTO, "not a replication epoch (magic %08x)", get_le32(in));
	h->flags = get_le32(in + 4);
	h->epoch = get_le64(in + 8);
	h->length = get_le64(in + 16);
	if (h->flags & ~(REPLICA_BULK | REPLICA_ZSTD))
		return error_set(err, EPROTO, "epoch %llu has unknown flags %#x",
				 (unsigned long long)h->epoch, h->flags);
	if (h->length > REPLICA_MAX_EPOCH_BYTES)
		return error_set(err, EPROTO, "epoch %llu claims %llu bytes",
				 (unsigned long long)h->epoch, (unsigned long long)h->length);
	if (!!(h->flags & REPLICA_BULK) != (h->epoch == 0))
		return error_set(err, EPROTO, "epoch %llu is %s the bulk copy, which epoch 0 alone is",
				 (unsigned long long)h->epoch, h->flags & REPLICA_BULK ? "marked" : "not");
	return 0;
}

/* Writes the memfd's `len` bytes after the epoch header. */
static int send_epoch(int fd, int memfd, const struct replica_epoch_header *h, struct error *err)
{
	uint8_t hdr[REPLICA_HEADER_SIZE];
	replica_header_encode(h, hdr);
	if (send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) != (ssize_t)sizeof(hdr))
		return error_errno(err, errno, "sending the header of epoch %llu",
				   (unsigned long long)h->epoch);
	static __thread uint8_t buf[1 << 20];
	uint64_t off = 0;
	while (off < h->length) {
		size_t want = h->length - off < sizeof(buf) ? h->length - off : sizeof(buf);
		ssize_t n = pread(memfd, buf, want, (off_t)off);
		if (n <= 0)
			return error_errno(err, n < 0 ? errno : EIO, "reading back epoch %llu",
					   (unsigned long long)h->epoch);
		for (ssize_t done = 0; done < n;) {
			ssize_t w = send(fd, buf + done, (size_t)(n - done), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return error_errno(err, w < 0 ? errno : EIO, "sending epoch %llu",
						   (unsigned long long)h->epoch);
			done += w;
		}
		off += (uint64_t)n;
	}
	return 0;
}

/* Re-measure a codec the cost model turned down this often (epochs). */
#define PROBE_EVERY_EPOCHS 16

static bool compress_now(struct replication *rp)
{
	switch (rp->st.params.compress) {
	case CODEC_OFF: return false;
	case CODEC_ON: return true;
	case CODEC_AUTO: break;
	}
	return codec_pays_off(&rp->meter, rp->link_bytes_per_s) ||
	       ++rp->compress_tries % PROBE_EVERY_EPOCHS == 0;
}

/* Sends the epoch staged in memfd (len bytes), compressed if that pays;
 * *wire: the bytes that went on the link. */
static int ship_epoch(struct replication *rp, int fd, int memfd, struct replica_epoch_header *h,
		      uint64_t len, uint64_t *wire, struct error *err)
{
	int src = memfd;
	h->length = len;
	if (compress_now(rp)) {
		if (!rp->z && !(rp->z = zctx_create(0, err)))
			return -ENOMEM;
		if (rp->wire_fd < 0 && (rp->wire_fd = memfd_create("tern-epoch-z", MFD_CLOEXEC)) < 0)
			return error_errno(err, errno, "cannot make the compressed epoch's buffer");
		uint64_t t0 = codec_clock_ns(), wlen = 0;
		int rc = replica_chunks_encode(memfd, len, rp->wire_fd, rp->z, &wlen, err);
		if (rc < 0)
			return rc;
		codec_meter_add(&rp->meter, len, wlen, codec_clock_ns() - t0);
		codec_meter_decay(&rp->meter);
		h->flags |= REPLICA_ZSTD;
		h->length = wlen;
		src = rp->wire_fd;
	}
	uint64_t t0 = codec_clock_ns();
	int rc = send_epoch(fd, src, h, err);
	uint64_t ns = codec_clock_ns() - t0;
	/* A send the socket buffer swallowed says nothing of the link. */
	if (rc == 0 && ns > 2000000)
		rp->link_bytes_per_s = h->length * 1000000000ull / ns;
	*wire = h->length;
	return rc;
}

static int wait_ack(int fd, uint64_t epoch, struct error *err)
{
	uint32_t type;
	char text[MIG_FRAME_MAX];
	int rc = mig_recv_frame(fd, ACK_TIMEOUT_MS, &type, text, sizeof(text), err);
	if (rc == 0)
		return error_set(err, ECONNRESET, "the standby closed the connection");
	if (rc < 0)
		return rc;
	if (type == MIG_FRAME_ERROR)
		return error_set(err, EPROTO, "the standby refused epoch %llu: %s",
				 (unsigned long long)epoch, text);
	if (type != MIG_FRAME_EPOCH_ACK || strtoull(text, NULL, 10) != epoch)
		return error_set(err, EPROTO, "the standby answered frame %u \"%s\" instead of the "
				 "acknowledgement of epoch %llu", type, text,
				 (unsigned long long)epoch);
	return 0;
}

static int disk_tick(void *ctx, struct error *err)
{
	struct replication *rp = ctx;
	pthread_mutex_lock(&rp->lock);
	bool cancel = rp->stop && !rp->final;   /* a last epoch goes on */
	pthread_mutex_unlock(&rp->lock);
	return cancel ? error_set(err, ECANCELED, "replication stopped") : 0;
}

/* One epoch into memfd: a whole state stream. bitmap NULL: every page and
 * every disk's data, the guest running (the bulk copy); else the pages in
 * bitmap, the disk blocks written since the last epoch and the machine's
 * state, the guest paused. */
static int write_epoch(struct replication *rp, int memfd, const uint64_t *bitmap, uint64_t *len,
		       uint64_t *pages, uint64_t *disk_bytes, struct error *err)
{
	struct vm *vm = rp->vm;
	if (ftruncate(memfd, 0) < 0 || lseek(memfd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "emptying the epoch buffer");
	struct mig_writer w;
	if (mig_writer_init(&w, memfd, false, err) < 0)
		return -EIO;
	struct ram_stats rs = { 0 };
	int rc = 0;
	uint64_t disk_before = 0;
	if (rp->dc_on) {
		struct disk_copy_stats ds;
		disk_copy_stats(&rp->dc, &ds);
		disk_before = ds.bytes_sent;
		if (bitmap)
			disk_copy_sync(&rp->dc);
	}
	if (mig_write_header(&w) < 0 ||
	    vmstate_save_config(vm, &w, rp->dc_on ? rp->dc.data_bytes : NULL, err) < 0 ||
	    vmstate_save_ram(vm, &w, bitmap, &rs, err) < 0 ||
	    (rp->dc_on && !bitmap && disk_copy_bulk(&rp->dc, &w, disk_tick, rp, err) < 0) ||
	    (rp->dc_on && bitmap && disk_copy_send_dirty(&rp->dc, &w, disk_tick, rp, err) < 0) ||
	    (bitmap && vmstate_save_machine(vm, &w, err) < 0) || mig_write_end(&w) < 0 ||
	    mig_flush(&w) < 0)
		rc = w.failed ? mig_writer_status(&w, err) : -EIO;
	*disk_bytes = 0;
	if (rp->dc_on) {
		struct disk_copy_stats ds;
		disk_copy_stats(&rp->dc, &ds);
		*disk_bytes = ds.bytes_sent - disk_before;
	}
	*len = w.bytes;
	*pages = rs.pages_data + rs.pages_zero;
	mig_writer_free(&w);
	return rc;
}

static void set_failed(struct replication *rp, const struct error *err)
{
	pthread_mutex_lock(&rp->lock);
	/* Stopped on request, the link's end is no failure; a last epoch
	 * asked for is. */
	bool failed = !rp->stop || rp->final_failed;
	rp->st.phase = failed ? "failed" : "stopped";
	if (failed)
		snprintf(rp->st.error, sizeof(rp->st.error), "%s", err->msg);
	rp->active = false;
	pthread_mutex_unlock(&rp->lock);
	if (failed)
		log_error("replication to %s failed: %s; the VM runs on here", rp->st.to, err->msg);
}

static void *replication_main(void *arg)
{
	struct replication *rp = arg;
	struct vm *vm = rp->vm;
	struct error err = { 0 };
	uint64_t *bitmap = calloc(vm->ram.dirty_words, sizeof(uint64_t));
	int memfd = memfd_create("tern-epoch", MFD_CLOEXEC);
	int fd = -1;
	bool kept_paused = false;
	struct mig_address addr;
	if (!bitmap || memfd < 0) {
		error_set(&err, ENOMEM, "no memory for the dirty map or the epoch buffer");
		goto fail;
	}
	if (mig_parse_address(rp->st.to, &addr, &err) < 0)
		goto fail;
	fd = mig_connect(&addr, CONNECT_TIMEOUT_MS, STALL_TIMEOUT_MS, &err);
	if (fd < 0)
		goto fail;
	pthread_mutex_lock(&rp->lock);
	rp->fd = fd;
	uint32_t epoch_ms = rp->st.params.epoch_ms;
	pthread_mutex_unlock(&rp->lock);

	/* Epoch 0: tracking first, so that what the guest writes during the
	 * copy goes with epoch 1. */
	int64_t t0 = monotonic_ns();
	if (rp->st.params.copy_storage) {
		if (disk_copy_begin(&rp->dc, vm, &err) < 0)
			goto fail;
		rp->dc_on = true;
	}
	vm_sync_dirty(vm, bitmap);
	bool holding = rp->st.params.sync;
	if (holding)
		vm_net_hold(vm, true);
	uint64_t len = 0, pages = 0, disk_bytes = 0;
	struct replica_epoch_header h = { .flags = REPLICA_BULK, .epoch = 0 };
	if (write_epoch(rp, memfd, NULL, &len, &pages, &disk_bytes, &err) < 0)
		goto fail;
	uint64_t wire = 0;
	if (ship_epoch(rp, fd, memfd, &h, len, &wire, &err) < 0 || wait_ack(fd, 0, &err) < 0)
		goto fail;
	pthread_mutex_lock(&rp->lock);
	rp->st.bulk_ms = (uint64_t)(monotonic_ns() - t0) / 1000000;
	rp->st.bytes_total = wire;
	rp->st.stream_bytes_total = len;
	rp->st.epochs_compressed = !!(h.flags & REPLICA_ZSTD);
	rp->st.phase = "protecting";
	pthread_mutex_unlock(&rp->lock);
	log_info("replication to %s: bulk copy of %llu pages and %llu MiB of disks (%llu MiB in "
		 "all) in %llu ms", rp->st.to, (unsigned long long)pages,
		 (unsigned long long)(disk_bytes >> 20), (unsigned long long)(len >> 20),
		 (unsigned long long)rp->st.bulk_ms);

	int64_t next = monotonic_ns();
	for (uint64_t epoch = 1;; epoch++) {
		pthread_mutex_lock(&rp->lock);
		bool last = rp->stop && rp->final;
		bool quit = rp->stop && !rp->final;
		pthread_mutex_unlock(&rp->lock);
		if (quit)
			break;
		int64_t now = monotonic_ns();
		if (now < next && !last) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			int64_t wake_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (next - now);
			ts.tv_sec = wake_ns / 1000000000;
			ts.tv_nsec = wake_ns % 1000000000;
			pthread_mutex_lock(&rp->lock);
			while (!rp->stop &&
			       pthread_cond_timedwait(&rp->wake, &rp->lock, &ts) != ETIMEDOUT)
				;
			last = rp->stop && rp->final;
			quit = rp->stop && !rp->final;
			pthread_mutex_unlock(&rp->lock);
			if (quit)
				break;
		}
		next = monotonic_ns() + (int64_t)epoch_ms * 1000000;
		/* The pause: collect, copy out, resume. */
		int64_t t_pause = monotonic_ns();
		struct error perr = { 0 };
		bool paused_here = vm_pause(vm, &perr) == 0;
		if (!paused_here) {
			pthread_mutex_lock(&vm->lock);
			bool operator_paused = vm->state == VM_PAUSED;
			pthread_mutex_unlock(&vm->lock);
			if (!operator_paused) {
				error_set(&err, perr.code, "pausing for epoch %llu: %s",
					  (unsigned long long)epoch, perr.msg);
				goto fail;
			}
		}
		memset(bitmap, 0, vm->ram.dirty_words * sizeof(uint64_t));
		vm_sync_dirty(vm, bitmap);
		/* What the NICs sent up to this pause came from the state this
		 * epoch captures: it goes out once the epoch is acknowledged. */
		uint64_t barrier = holding ? vm_net_barrier(vm) : 0;
		int rc = write_epoch(rp, memfd, bitmap, &len, &pages, &disk_bytes, &err);
		/* The last epoch of a planned handover: the guest stays paused,
		 * so the standby gets all of it; resumed if the epoch fails. */
		kept_paused = last && paused_here;
		if (paused_here && !last && vm_resume(vm, &perr) < 0)
			log_error("replication: resuming after epoch %llu: %s",
				  (unsigned long long)epoch, perr.msg);
		uint64_t pause_us = (uint64_t)(monotonic_ns() - t_pause) / 1000;
		if (rc < 0)
			goto fail;
		h = (struct replica_epoch_header){ .epoch = epoch };
		if (ship_epoch(rp, fd, memfd, &h, len, &wire, &err) < 0 ||
		    wait_ack(fd, epoch, &err) < 0)
			goto fail;
		if (holding)
			vm_net_release(vm, barrier);
		pthread_mutex_lock(&rp->lock);
		rp->st.epochs_acked = epoch;
		rp->acked_taken_ns = t_pause;
		rp->st.bytes_last_epoch = wire;
		rp->st.bytes_total += wire;
		rp->st.stream_bytes_last_epoch = len;
		rp->st.stream_bytes_total += len;
		rp->st.epochs_compressed += !!(h.flags & REPLICA_ZSTD);
		rp->st.pages_last_epoch = pages;
		rp->st.disk_bytes_last_epoch = disk_bytes;
		rp->st.pause_us_last = pause_us;
		if (pause_us > rp->st.pause_us_max)
			rp->st.pause_us_max = pause_us;
		epoch_ms = rp->st.params.epoch_ms;
		pthread_mutex_unlock(&rp->lock);
		if (last)
			break;
	}
	pthread_mutex_lock(&rp->lock);
	rp->st.phase = rp->final ? "completed" : "stopped";
	rp->active = false;
	pthread_mutex_unlock(&rp->lock);
	log_info("replication to %s %s after epoch %llu", rp->st.to,
		 rp->final ? "completed (the guest stays paused: the standby has all of it)" :
			     "stopped", (unsigned long long)rp->st.epochs_acked);
	goto out;
fail:
	if (kept_paused) {
		struct error rerr = { 0 };
		if (vm_resume(vm, &rerr) < 0)
			log_error("replication: resuming after the failed last epoch: %s", rerr.msg);
	}
	pthread_mutex_lock(&rp->lock);
	rp->final_failed = rp->final;
	rp->final = false;
	pthread_mutex_unlock(&rp->lock);
	set_failed(rp, &err);
out:
	pthread_mutex_lock(&rp->lock);
	rp->fd = -1;
	pthread_mutex_unlock(&rp->lock);
	if (fd >= 0)
		close(fd);
	if (memfd >= 0)
		close(memfd);
	if (rp->wire_fd >= 0)
		close(rp->wire_fd);
	rp->wire_fd = -1;
	zctx_destroy(rp->z);
	rp->z = NULL;
	if (rp->dc_on) {
		disk_copy_end(&rp->dc);
		rp->dc_on = false;
	}
	/* Unprotected from here: what is held goes out, and nothing more is. */
	if (rp->st.params.sync)
		vm_net_hold(vm, false);
	free(bitmap);
	return NULL;
}

bool replica_active(struct vm *vm)
{
	struct replication *rp = vm->replication;
	if (!rp)
		return false;
	pthread_mutex_lock(&rp->lock);
	bool a = rp->active;
	pthread_mutex_unlock(&rp->lock);
	return a;
}

static void join_finished(struct replication *rp)
{
	if (rp->thread_started) {
		pthread_join(rp->thread, NULL);
		rp->thread_started = false;
	}
}

int replica_start(struct vm *vm, const char *to, const struct replica_params *p,
		  struct error *err)
{
	if (p->epoch_ms < 10 || p->epoch_ms > 3600000)
		return error_set(err, EINVAL, "replicate: \"epoch_ms\" must be from 10 to 3600000");
	if (replica_active(vm))
		return error_set(err, EBUSY, "the VM is already replicated to %s",
				 vm->replication->st.to);
	int rc = migration_check_idle(vm, "replicate", false, err);
	if (rc)
		return rc;
	struct replication *rp = vm->replication;
	if (!rp) {
		rp = calloc(1, sizeof(*rp));
		if (!rp)
			return error_set(err, ENOMEM, "out of memory");
		pthread_mutex_init(&rp->lock, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&rp->wake, &ca);
		pthread_condattr_destroy(&ca);
		rp->vm = vm;
		vm->replication = rp;
	}
	join_finished(rp);
	pthread_mutex_lock(&rp->lock);
	memset(&rp->st, 0, sizeof(rp->st));
	snprintf(rp->st.to, sizeof(rp->st.to), "%s", to);
	rp->st.params = *p;
	rp->st.phase = "bulk";
	rp->stop = false;
	rp->final = false;
	rp->final_failed = false;
	rp->wire_fd = -1;
	memset(&rp->meter, 0, sizeof(rp->meter));
	rp->link_bytes_per_s = 0;
	rp->compress_tries = 0;
	rp->active = true;
	rp->fd = -1;
	pthread_mutex_unlock(&rp->lock);
	rc = pthread_create(&rp->thread, NULL, replication_main, rp);
	if (rc) {
		rp->active = false;
		rp->st.phase = "failed";
		return error_errno(err, rc, "cannot start the replication thread");
	}
	rp->thread_started = true;
	log_info("replicating to %s, an epoch every %u ms (RPO %u ms)", to, p->epoch_ms,
		 p->rpo_ms);
	return 0;
}

void replica_status(struct vm *vm, struct replica_stats *out)
{
	struct replication *rp = vm->replication;
	memset(out, 0, sizeof(*out));
	out->phase = "none";
	if (!rp)
		return;
	pthread_mutex_lock(&rp->lock);
	*out = rp->st;
	if (rp->st.epochs_acked) {
		out->lag_ms = (uint64_t)(monotonic_ns() - rp->acked_taken_ns) / 1000000;
		out->rpo_met = rp->active && out->lag_ms <= rp->st.params.rpo_ms;
	}
	pthread_mutex_unlock(&rp->lock);
}

int replica_stop(struct vm *vm, bool final, struct error *err)
{
	struct replication *rp = vm->replication;
	if (!replica_active(vm))
		return error_set(err, ENOENT, "no replication is running");
	pthread_mutex_lock(&rp->lock);
	if (final && strcmp(rp->st.phase, "protecting")) {
		pthread_mutex_unlock(&rp->lock);
		return error_set(err, EAGAIN, "replicate-stop: no last epoch before the bulk copy is "
				 "done (phase %s)", rp->st.phase);
	}
	rp->stop = true;
	rp->final = final;
	pthread_cond_broadcast(&rp->wake);
	/* A last epoch needs the link; otherwise cut it, ending any wait. */
	if (rp->fd >= 0 && !final)
		shutdown(rp->fd, SHUT_RDWR);
	pthread_mutex_unlock(&rp->lock);
	join_finished(rp);
	pthread_mutex_lock(&rp->lock);
	bool failed = final && rp->final_failed;
	pthread_mutex_unlock(&rp->lock);
	if (failed)
		return error_set(err, EIO, "the last epoch did not reach the standby (%s): the VM "
				 "runs on here", rp->st.error);
	return 0;
}

void replica_destroy(struct vm *vm)
{
	struct replication *rp = vm->replication;
	if (!rp)
		return;
	struct error err = { 0 };
	if (replica_active(vm))
		replica_stop(vm, false, &err);
	join_finished(rp);
	pthread_cond_destroy(&rp->wake);
	pthread_mutex_destroy(&rp->lock);
	free(rp);
	vm->replication = NULL;
}
