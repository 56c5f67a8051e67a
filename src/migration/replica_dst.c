/* replica_dst.c: the standby side of continuous replication (replica.h).
 *
 * The main thread receives epochs into a memfd, verifies each whole
 * (every section's checksum, then the epoch's digest at END) before it
 * applies any of it, applies it to the paused replica, and acknowledges.
 * Pages and disk blocks are applied as they come; the harts' and devices'
 * state is kept aside (the latest epoch's, as a small stream of its own)
 * and loaded once, at the failover: a device restores onto a fresh
 * device only.
 * The replica's harts never run and its devices are held, until the API's
 * "failover": then it runs from the last complete epoch. A link that
 * breaks leaves the replica as it is, waiting for a failover or a stop. */
#include "migration/replica.h"
#include "migration/replica_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api_server.h"
#include "migration/diskcopy.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "migration/vmstate.h"
#include "util/log.h"

/* Between epochs the source waits at most its epoch interval; a link
 * silent for this long is taken as lost. */
#define LINK_SILENCE_MS 30000

struct standby {
	struct vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	const char *phase;            /* "waiting", "receiving", "link-lost", "failing-over" */
	bool failover, stop;
	int fd;
	uint64_t epoch;               /* the last one applied */
	bool consistent;              /* an epoch >= 1 is applied */
	int64_t applied_ns;
	uint64_t bytes;
	char link_error[512];
	struct disk_targets disks;    /* copied disks: the replica's, committed at failover */
	int machine_fd;               /* the last complete epoch's machine state (a stream) */
};

static struct standby sb = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.changed = PTHREAD_COND_INITIALIZER,
	.phase = "waiting",
	.fd = -1,
	.machine_fd = -1,
};

/* Reads exactly len bytes; a pause of LINK_SILENCE_MS without any is a
 * lost link. 0, or a negative errno (ECONNRESET on EOF). */
static int read_full(int fd, void *buf, size_t len, struct error *err)
{
	uint8_t *p = buf;
	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int rc = poll(&pfd, 1, LINK_SILENCE_MS);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return error_errno(err, errno, "waiting for the source");
		if (rc == 0)
			return error_set(err, ETIMEDOUT, "nothing from the source for %d s",
					 LINK_SILENCE_MS / 1000);
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_errno(err, errno, "reading from the source");
		if (n == 0)
			return error_set(err, ECONNRESET, "the source closed the connection");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int receive_into(int fd, int memfd, uint64_t len, struct error *err)
{
	if (ftruncate(memfd, 0) < 0 || lseek(memfd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "emptying the epoch buffer");
	static uint8_t buf[1 << 20];
	while (len) {
		size_t want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		int rc = read_full(fd, buf, want, err);
		if (rc < 0)
			return rc;
		for (size_t done = 0; done < want;) {
			ssize_t w = write(memfd, buf + done, want - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return error_errno(err, errno, "staging the epoch (out of memory?)");
			done += (size_t)w;
		}
		len -= want;
	}
	return 0;
}

static int read_from_source(void *ctx, void *buf, size_t len, struct error *err)
{
	return read_full(*(int *)ctx, buf, len, err);
}

/* An epoch's stream into memfd, as it came or from compressed chunks. */
static int receive_epoch(int fd, int memfd, const struct replica_epoch_header *h,
			 struct zdctx **zd, struct error *err)
{
	if (!(h->flags & REPLICA_ZSTD))
		return receive_into(fd, memfd, h->length, err);
	if (!*zd && !(*zd = zdctx_create(err)))
		return -ENOMEM;
	return replica_chunks_decode(read_from_source, &fd, h->length, memfd,
				     REPLICA_MAX_EPOCH_BYTES, *zd, err);
}

/* First pass: the whole epoch checks out, nothing applied yet. */
static int verify_epoch(int memfd, struct vm_shape *shape, struct error *err)
{
	if (lseek(memfd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "rewinding the epoch");
	struct mig_reader r;
	if (mig_reader_init(&r, memfd, "a replication epoch", err) < 0)
		return -EIO;
	int rc = vmstate_read_shape(&r, shape, err);
	struct mig_section s;
	while (rc >= 0 && (rc = mig_read_section(&r, &s, err)) > 0)
		;
	mig_reader_free(&r);
	return rc;
}

static bool machine_section(uint32_t type)
{
	return type == MIG_SEC_MACHINE || type == MIG_SEC_HART || type == MIG_SEC_DEVICE;
}

/* Second pass, under the lock the failover takes: pages and disk blocks
 * into the replica, the machine's sections into a new stream that
 * replaces the last epoch's once this one is all applied. */
static int apply_epoch(struct vm *vm, int memfd, bool bulk, struct error *err)
{
	if (lseek(memfd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "rewinding the epoch");
	struct mig_reader r;
	if (mig_reader_init(&r, memfd, "a replication epoch", err) < 0)
		return -EIO;
	int machine_fd = bulk ? -1 : memfd_create("tern-machine", MFD_CLOEXEC);
	struct mig_writer w;
	bool w_on = false;
	struct vmstate_loader l;
	struct vm_shape shape;
	vmstate_loader_init(&l, vm, bulk);
	l.disks = sb.disks.n ? &sb.disks : NULL;
	/* DISK sections belong to live streams; nothing else live is sent. */
	l.live = l.disks != NULL;
	int rc = vmstate_read_shape(&r, &shape, err);
	if (rc >= 0)
		rc = vmstate_check_config(&l, &shape, err);
	if (rc >= 0 && !bulk) {
		if (machine_fd < 0 || mig_writer_init(&w, machine_fd, false, err) < 0)
			rc = error_errno(err, machine_fd < 0 ? errno : EIO, "a buffer for the "
					 "machine's state");
		else
			w_on = true;
		if (rc >= 0 && (mig_write_header(&w) < 0 || vmstate_save_config(vm, &w, NULL, err) < 0))
			rc = -EIO;
	}
	struct mig_section s;
	while (rc >= 0 && (rc = mig_read_section(&r, &s, err)) > 0) {
		if (!machine_section(s.type))
			rc = vmstate_load_section(&l, &s, err);
		else if (bulk)
			rc = error_set(err, EPROTO, "the bulk epoch carries %s state",
				       mig_section_name(s.type));
		else if (mig_write_section(&w, s.type, s.instance, s.version, s.payload,
					   s.length) < 0)
			rc = mig_writer_status(&w, err);
	}
	if (rc >= 0 && w_on && (mig_write_end(&w) < 0 || mig_flush(&w) < 0))
		rc = mig_writer_status(&w, err);
	if (w_on)
		mig_writer_free(&w);
	vmstate_loader_free(&l);
	mig_reader_free(&r);
	/* The epoch's disk blocks on stable storage before it is acknowledged. */
	if (rc >= 0 && sb.disks.n)
		rc = disk_targets_flush(&sb.disks, vm, err);
	if (rc >= 0 && !bulk) {
		if (sb.machine_fd >= 0)
			close(sb.machine_fd);
		sb.machine_fd = machine_fd;
		machine_fd = -1;
	}
	if (machine_fd >= 0)
		close(machine_fd);
	return rc < 0 ? rc : 0;
}

/* At the failover: the last complete epoch's harts and devices, and the
 * guest's clock then. */
static int load_machine(struct vm *vm, uint64_t *guest_time, struct error *err)
{
	if (lseek(sb.machine_fd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "rewinding the machine's state");
	struct mig_reader r;
	if (mig_reader_init(&r, sb.machine_fd, "the replica's machine state", err) < 0)
		return -EIO;
	struct vmstate_loader l;
	struct vm_shape shape;
	vmstate_loader_init(&l, vm, false);
	int rc = vmstate_read_shape(&r, &shape, err);
	if (rc >= 0)
		rc = vmstate_check_config(&l, &shape, err);
	if (rc >= 0)
		rc = vmstate_load_rest(&l, &r, err);
	*guest_time = l.guest_time;
	vmstate_loader_free(&l);
	mig_reader_free(&r);
	return rc < 0 ? rc : 0;
}

static int cmd_replica_status(void *opaque, json_t *args, json_t **result, struct error *err)
{
	pthread_mutex_lock(&sb.lock);
	int64_t since = sb.applied_ns ? (monotonic_ns() - sb.applied_ns) / 1000000 : -1;
	*result = json_pack("{s:s, s:I, s:b, s:I, s:I, s:s?}", "phase", sb.phase,
			    "epoch", (json_int_t)sb.epoch, "consistent", sb.consistent,
			    "since_last_epoch_ms", (json_int_t)since, "bytes", (json_int_t)sb.bytes,
			    "link_error", sb.link_error[0] ? sb.link_error : NULL);
	pthread_mutex_unlock(&sb.lock);
	return *result ? 0 : error_set(err, ENOMEM, "out of memory");
}

static int cmd_failover(void *opaque, json_t *args, json_t **result, struct error *err)
{
	pthread_mutex_lock(&sb.lock);
	if (!sb.consistent) {
		pthread_mutex_unlock(&sb.lock);
		return error_set(err, EAGAIN, "the replica has no complete epoch yet (the bulk copy "
				 "is not a restore point): nothing to fail over to");
	}
	sb.failover = true;
	sb.phase = "failing-over";
	if (sb.fd >= 0)
		shutdown(sb.fd, SHUT_RDWR);
	pthread_cond_broadcast(&sb.changed);
	*result = json_pack("{s:s, s:I}", "phase", sb.phase, "epoch", (json_int_t)sb.epoch);
	pthread_mutex_unlock(&sb.lock);
	return 0;
}

static int cmd_replica_stop(void *opaque, json_t *args, json_t **result, struct error *err)
{
	pthread_mutex_lock(&sb.lock);
	sb.stop = true;
	if (sb.fd >= 0)
		shutdown(sb.fd, SHUT_RDWR);
	pthread_cond_broadcast(&sb.changed);
	pthread_mutex_unlock(&sb.lock);
	*result = json_pack("{s:s}", "phase", "stopping");
	return 0;
}

/* Builds the replica from the first epoch's CONFIG and serves its API. */
static int create_replica(struct vm_config *cfg, const struct vm_shape *shape, struct vm **out,
			  struct error *err)
{
	cfg->memory = shape->ram_size;
	cfg->cpus = shape->num_harts;
	cfg->kernel = NULL;
	cfg->incoming = true;
	/* Copied disks go into unnamed files beside their --disk paths, named
	 * only at the failover. */
	int rc = disk_targets_prepare(&sb.disks, cfg, shape, err);
	if (rc < 0)
		return rc;
	struct vm *vm;
	rc = vm_create(&vm, cfg, err);
	if (rc < 0)
		return rc;
	vm_hold_devices(vm, true);
	if (vm->api) {
		api_server_register(vm->api, "replica-status", cmd_replica_status, NULL);
		api_server_register(vm->api, "failover", cmd_failover, NULL);
		api_server_register(vm->api, "replica-stop", cmd_replica_stop, NULL);
		if ((rc = api_server_start(vm->api, err)) < 0) {
			vm_destroy(vm);
			return rc;
		}
	}
	*out = vm;
	return 0;
}

int replica_standby(struct vm_config *cfg, const char *uri)
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
	log_info("waiting for a replication stream on %s:%s", addr.host, addr.port);
	int fd = mig_accept(lfd, -1, LINK_SILENCE_MS, &err);
	close(lfd);
	if (fd < 0) {
		log_error("%s", err.msg);
		return VM_EXIT_ERROR;
	}
	int memfd = memfd_create("tern-epoch", MFD_CLOEXEC);
	if (memfd < 0) {
		log_error("cannot make the epoch buffer: %s", strerror(errno));
		close(fd);
		return VM_EXIT_ERROR;
	}
	pthread_mutex_lock(&sb.lock);
	sb.fd = fd;
	sb.phase = "receiving";
	pthread_mutex_unlock(&sb.lock);

	struct vm *vm = NULL;
	struct zdctx *zd = NULL;
	for (;;) {
		uint8_t hdr[REPLICA_HEADER_SIZE];
		struct replica_epoch_header h;
		struct vm_shape shape;
		struct error e = { 0 };
		if (read_full(fd, hdr, sizeof(hdr), &e) < 0 || replica_header_decode(hdr, &h, &e) < 0 ||
		    h.epoch != (vm ? sb.epoch + 1 : 0) ||
		    receive_epoch(fd, memfd, &h, &zd, &e) < 0 || verify_epoch(memfd, &shape, &e) < 0) {
			if (!e.code)
				error_set(&e, EPROTO, "epoch %" PRIu64 " came after %" PRIu64,
					  h.epoch, sb.epoch);
			err = e;
			break;
		}
		if (!vm && create_replica(cfg, &shape, &vm, &e) < 0) {
			err = e;
			break;
		}
		pthread_mutex_lock(&sb.lock);
		bool quit = sb.failover || sb.stop;
		int rc = quit ? 0 : apply_epoch(vm, memfd, h.epoch == 0, &e);
		if (!quit && rc == 0) {
			sb.epoch = h.epoch;
			sb.bytes += h.length;
			sb.applied_ns = monotonic_ns();
			if (h.epoch > 0)
				sb.consistent = true;
		}
		pthread_mutex_unlock(&sb.lock);
		if (quit)
			break;
		if (rc < 0) {
			/* A verified epoch that does not apply: the replica may now
			 * be between two epochs, and is no restore point. */
			pthread_mutex_lock(&sb.lock);
			sb.consistent = false;
			pthread_mutex_unlock(&sb.lock);
			error_wrap(&e, "applying epoch %" PRIu64, h.epoch);
			(void)mig_send_frame(fd, MIG_FRAME_ERROR, e.msg, &err);
			err = e;
			break;
		}
		char text[32];
		snprintf(text, sizeof(text), "%" PRIu64, h.epoch);
		if (mig_send_frame(fd, MIG_FRAME_EPOCH_ACK, text, &e) < 0) {
			err = e;
			break;
		}
		if (h.epoch == 1)
			log_info("replica: consistent from epoch 1 on");
	}
	close(memfd);
	zdctx_destroy(zd);
	pthread_mutex_lock(&sb.lock);
	close(fd);
	sb.fd = -1;
	if (!sb.failover && !sb.stop) {
		sb.phase = "link-lost";
		snprintf(sb.link_error, sizeof(sb.link_error), "%s", err.msg);
		log_warn("replica: the replication stopped after epoch %" PRIu64 " (%s); waiting for "
			 "failover or stop", sb.epoch, err.msg);
	}
	while (vm && !sb.failover && !sb.stop)
		pthread_cond_wait(&sb.changed, &sb.lock);
	bool failover = sb.failover && sb.consistent;
	uint64_t epoch = sb.epoch, guest_time = 0;
	pthread_mutex_unlock(&sb.lock);
	if (!vm) {
		log_error("replica: no replica was built: %s", err.msg);
		disk_targets_free(&sb.disks);
		return VM_EXIT_ERROR;
	}
	if (!failover) {
		log_info("replica stopped at epoch %" PRIu64 "; the guest never ran here", epoch);
		vm_destroy(vm);
		disk_targets_free(&sb.disks);
		if (sb.machine_fd >= 0)
			close(sb.machine_fd);
		return 0;
	}
	/* The harts and devices as they were at the end of the last epoch;
	 * the replica's disks get their names; shared ones may be had only
	 * now, the primary having let them go. */
	if (load_machine(vm, &guest_time, &err) < 0 ||
	    disk_targets_commit(&sb.disks, vm, &err) < 0 || vm_disks_lock(vm, &err) < 0) {
		log_error("failover: %s; the guest does not run here", err.msg);
		vm_destroy(vm);
		disk_targets_free(&sb.disks);
		return VM_EXIT_ERROR;
	}
	disk_targets_free(&sb.disks);
	close(sb.machine_fd);
	sb.machine_fd = -1;
	vm_hold_devices(vm, false);
	vm_set_guest_time(vm, guest_time);
	vm_announce(vm);
	log_info("failover: the guest runs here from epoch %" PRIu64, epoch);
	int status = vm_run(vm);
	vm_destroy(vm);
	return status;
}
