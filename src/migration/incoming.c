/* incoming.c: live migration, destination side (docs/migration-protocol.md).
 * Nothing of the guest runs here before GO; every failure before it ends
 * the process without the guest having run, and tells the source why when
 * the connection still works. */
#include "migration/incoming.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "machine/vm.h"
#include "migration/channels.h"
#include "migration/diskcopy.h"
#include "migration/postcopy_dst.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "migration/vmstate.h"
#include "util/log.h"

#define STALL_TIMEOUT_MS 10000
#define GO_TIMEOUT_MS 30000

struct incoming {
	struct vm *vm;
	int fd;
	int *listen_fd;                 /* the caller's: post-copy may take it */
	const struct mig_address *addr;
	struct mig_channels_in channels;
	struct disk_targets *disks;
	struct postcopy_dst *pc;
};

static int answer_sync(void *ctx, struct error *err)
{
	struct incoming *in = ctx;
	/* The switch-over is near: flush the disk copies now, while the guest
	 * still runs on the source, so that the flush before READY (inside
	 * the downtime) has only the last blocks to write. */
	if (in->disks && disk_targets_flush(in->disks, in->vm, err) < 0)
		return -EIO;
	return mig_send_frame(in->fd, MIG_FRAME_SYNCED, NULL, err);
}

/* Post-copy's set-up, where it costs no downtime: from the DISCARD on
 * no page comes before GO. The listening socket becomes its, for the
 * source's preempt connection. */
static int prepare_postcopy(struct incoming *in, struct error *err)
{
	if (in->pc)
		return 0;
	int rc = postcopy_dst_prepare(&in->pc, in->vm, *in->listen_fd, in->addr, err);
	*in->listen_fd = -1;
	if (rc < 0)
		error_wrap(err, "post-copy cannot start");
	return rc;
}

/* A DISCARD: every channel has sent its END before it (the source ends
 * them first), so the join waits only for their last pages. */
static int before_discard(void *ctx, struct error *err)
{
	struct incoming *in = ctx;
	int rc = mig_channels_join(&in->channels, err);
	return rc ? rc : prepare_postcopy(in, err);
}

static int take_channels(void *ctx, const struct mig_section *s, struct error *err)
{
	struct incoming *in = ctx;
	return mig_channels_accept(&in->channels, in->vm, *in->listen_fd, s, STALL_TIMEOUT_MS,
				   err);
}

/* Tells the source why (if it still listens), logs, and gives up. */
static int refuse(int fd, const struct error *err)
{
	struct error e2 = { 0 };
	if (fd >= 0)
		(void)mig_send_frame(fd, MIG_FRAME_ERROR, err->msg, &e2);
	log_error("incoming migration failed, the guest did not run here: %s", err->msg);
	return VM_EXIT_ERROR;
}

int migration_incoming(struct vm_config *cfg, bool memory_given, bool cpus_given,
		       const char *uri)
{
	struct error err = { 0 };
	struct mig_address addr;
	if (mig_parse_address(uri, &addr, &err) < 0) {
		fprintf(stderr, "tern: %s\n", err.msg);
		return VM_EXIT_USAGE;
	}
	int lfd = mig_listen(&addr, &err);
	if (lfd < 0) {
		fprintf(stderr, "tern: %s\n", err.msg);
		return VM_EXIT_ERROR;
	}
	log_info("waiting for an incoming migration on %s:%s", addr.host, addr.port);
	int fd = mig_accept(lfd, -1, STALL_TIMEOUT_MS, &err);
	if (fd < 0) {
		close(lfd);
		log_error("%s", err.msg);
		return VM_EXIT_ERROR;
	}
	int64_t t_start = monotonic_ns();

	struct mig_reader r;
	struct vmstate_loader l = { 0 };
	struct incoming in = { .fd = -1, .listen_fd = &lfd, .addr = &addr, .channels = { .n = 1 } };
	struct vm *vm = NULL;
	struct disk_targets disks = { 0 };
	int status = VM_EXIT_ERROR;
	if (mig_reader_init(&r, fd, "the incoming migration", &err) < 0) {
		close(fd);
		close(lfd);
		return refuse(-1, &err);
	}
	struct vm_shape shape;
	if (vmstate_read_shape(&r, &shape, &err) < 0) {
		status = refuse(fd, &err);
		goto out;
	}
	if ((memory_given && cfg->memory != shape.ram_size) ||
	    (cpus_given && cfg->cpus != shape.num_harts)) {
		error_set(&err, EINVAL, "the incoming VM has %" PRIu64 " MiB and %u harts; this "
			  "destination was started with %" PRIu64 " MiB and %u",
			  shape.ram_size >> 20, shape.num_harts, cfg->memory >> 20, cfg->cpus);
		status = refuse(fd, &err);
		goto out;
	}
	cfg->memory = shape.ram_size;
	cfg->cpus = shape.num_harts;
	cfg->kernel = NULL;
	cfg->incoming = true;
	/* Copied disks go into new, unnamed files; shared ones are opened as
	 * given. Either way a wrong path or size shows now, before the
	 * source pauses anything. */
	if (disk_targets_prepare(&disks, cfg, &shape, &err) < 0) {
		status = refuse(fd, &err);
		goto out;
	}
	/* Paused, with its devices held, and its harts waiting: on GO a
	 * resume wakes them, without the thread starts (1-4 ms each here)
	 * that would otherwise come inside the downtime. */
	if (vm_create(&vm, cfg, &err) < 0) {
		status = refuse(fd, &err);
		goto out;
	}
	vm_start_paused(vm);
	if (vm_start_harts(vm, &err) < 0) {
		status = refuse(fd, &err);
		goto out;
	}

	/* Pages may come several times (re-sent after being dirtied): a
	 * page sent as zero after data must be zeroed, so RAM is not "fresh". */
	vmstate_loader_init(&l, vm, false);
	l.live = true;
	in.vm = vm;
	in.fd = fd;
	l.on_sync = answer_sync;
	l.on_channels = take_channels;
	l.on_discard = before_discard;
	l.sync_ctx = &in;
	l.disks = disks.n ? &disks : NULL;
	in.disks = l.disks;
	if (vmstate_check_config(&l, &shape, &err) < 0 ||
	    vmstate_load_rest(&l, &r, &err) < 0) {
		mig_channels_stop(&in.channels);
		status = refuse(fd, &err);
		goto out;
	}
	/* RUNNING will tell the source it may go: what the guest had
	 * flushed there must be on stable storage here by then. */
	if (mig_channels_join(&in.channels, &err) < 0 || vmstate_check_ramhash(&l, &err) < 0 ||
	    disk_targets_flush(&disks, vm, &err) < 0) {
		status = refuse(fd, &err);
		goto out;
	}
	/* Dropped pages must come by post-copy, or they would read as zeros. */
	if (l.discarded && !l.owed) {
		error_set(&err, EPROTO, "the source had pages dropped for post-copy, then sent no "
			  "POSTCOPY map");
		status = refuse(fd, &err);
		goto out;
	}
	/* The owed pages' map came last: GO then only has to let post-copy
	 * go (set up at the DISCARD before the pause, or now). */
	bool owes = l.owed != NULL;
	if (owes) {
		uint64_t *owed = l.owed;
		l.owed = NULL;
		if (prepare_postcopy(&in, &err) < 0 ||
		    postcopy_dst_owe(in.pc, owed, l.owed_pages, l.discarded, &err) < 0) {
			status = refuse(fd, &err);
			goto out;
		}
	}
	log_debug("incoming migration: all loaded");
	if (mig_send_frame(fd, MIG_FRAME_READY, NULL, &err) < 0) {
		log_error("incoming migration: %s", err.msg);
		goto out;
	}

	uint32_t type;
	char text[MIG_FRAME_MAX];
	int rc = mig_recv_frame(fd, GO_TIMEOUT_MS, &type, text, sizeof(text), &err);
	if (rc <= 0 || type != MIG_FRAME_GO) {
		if (rc == 0)
			error_set(&err, ECONNRESET, "the source closed the connection before GO");
		else if (rc > 0)
			error_set(&err, EPROTO, "the source sent frame %u instead of GO", type);
		log_error("incoming migration abandoned, the guest did not run here: %s", err.msg);
		goto out;
	}
	log_debug("incoming migration: GO");
	bool postcopy = !strncmp(text, MIG_GO_POSTCOPY " ", strlen(MIG_GO_POSTCOPY) + 1);
	if (postcopy != owes) {
		error_set(&err, EPROTO, postcopy ? "the source switched to post-copy without saying "
			  "which pages follow" : "the source announced post-copy pages but sent GO "
			  "without them");
		status = refuse(fd, &err);
		goto out;
	}
	/* Committed: from here this host owns the guest. The disks first:
	 * if they cannot be had, do not run, and the closed connection tells
	 * the source to resume. */
	if (disk_targets_commit(&disks, vm, &err) < 0 || vm_disks_lock(vm, &err) < 0) {
		log_error("incoming migration: %s; the guest does not run here", err.msg);
		goto out;
	}
	bool paused = strcmp(text, MIG_GO_PAUSED) == 0;
	vm_set_guest_time(vm, l.guest_time);
	if (postcopy) {
		rc = postcopy_dst_go(in.pc, fd, text + strlen(MIG_GO_POSTCOPY) + 1, &err);
		fd = -1;    /* post-copy's now */
		if (rc < 0) {
			log_error("incoming migration: post-copy cannot start: %s", err.msg);
			goto out;
		}
		/* Only now: a device's first look at its rings faults, and the
		 * pages come from the source instead of the stale copies. */
		if (vm_resume(vm, &err) < 0)
			log_error("incoming migration: %s", err.msg);
		postcopy_dst_receive(in.pc);
	} else {
		if (lfd >= 0)
			close(lfd);
		lfd = -1;
		/* The source counts its downtime until RUNNING, the guest until
		 * its harts run: both right after GO. */
		if (!paused && vm_resume(vm, &err) < 0)
			log_error("incoming migration: %s", err.msg);
		if (mig_send_frame(fd, MIG_FRAME_RUNNING, NULL, &err) < 0)
			log_warn("the source may not learn that the guest runs here: %s", err.msg);
		log_debug("incoming migration: RUNNING sent");
		close(fd);
		fd = -1;
	}
	vm_announce(vm);
	mig_reader_free(&r);
	disk_targets_free(&disks);
	if (postcopy)
		log_info("incoming migration switched to post-copy after %lld ms (%llu pages with "
			 "data, %llu zero before the switch)",
			 (long long)(monotonic_ns() - t_start) / 1000000,
			 (unsigned long long)l.ram.pages_data, (unsigned long long)l.ram.pages_zero);
	else
		log_info("incoming migration complete in %lld ms (%llu pages with data, %llu "
			 "zero); the guest %s", (long long)(monotonic_ns() - t_start) / 1000000,
			 (unsigned long long)l.ram.pages_data, (unsigned long long)l.ram.pages_zero,
			 paused ? "is here, paused as it was on the source" : "runs here");
	vmstate_loader_free(&l);
	status = vm_run(vm);
	postcopy_dst_destroy(in.pc);
	vm_destroy(vm);
	return status;

out:
	mig_channels_stop(&in.channels);
	/* Its threads first: they wait for GO, and may hold the connection. */
	postcopy_dst_destroy(in.pc);
	if (lfd >= 0)
		close(lfd);
	vmstate_loader_free(&l);
	mig_reader_free(&r);
	if (fd >= 0)
		close(fd);
	vm_destroy(vm);
	disk_targets_free(&disks);
	return status;
}
