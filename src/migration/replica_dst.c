/* replica_dst.c: the standby side of continuous replication (replica.h).
 *
 * The main thread receives epochs into a memfd, verifies each whole
 * (every section's checksum, then the epoch's digest at END) before it
 * applies any of it, applies it to the paused replica, and acknowledges.
 * The replica's harts never run and its devices are held, until the API's
 * "failover": then it runs from the last complete epoch. A link that
 * breaks leaves the replica as it is, waiting for a failover or a stop. */
#include "migration/replica.h"

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
	uint64_t guest_time;          /* of the last complete epoch */
	uint64_t bytes;
	char link_error[512];
};

static struct standby sb = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.changed = PTHREAD_COND_INITIALIZER,
	.phase = "waiting",
	.fd = -1,
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

/* Second pass, under the lock the failover takes. */
static int apply_epoch(struct vm *vm, int memfd, bool bulk, uint64_t *guest_time,
		       struct error *err)
{
	if (lseek(memfd, 0, SEEK_SET) < 0)
		return error_errno(err, errno, "rewinding the epoch");
	struct mig_reader r;
	if (mig_reader_init(&r, memfd, "a replication epoch", err) < 0)
		return -EIO;
	struct vmstate_loader l;
	struct vm_shape shape;
	vmstate_loader_init(&l, vm, bulk);
	int rc = vmstate_read_shape(&r, &shape, err);
	if (rc >= 0)
		rc = vmstate_check_config(&l, &shape, err);
	if (rc >= 0 && bulk) {
		/* RAM only: the harts and devices come with epoch 1. */
		struct mig_section s;
		while ((rc = mig_read_section(&r, &s, err)) > 0 &&
		       (rc = vmstate_load_section(&l, &s, err)) >= 0)
			;
	} else if (rc >= 0) {
		rc = vmstate_load_rest(&l, &r, err);
		*guest_time = l.guest_time;
	}
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
	struct vm *vm;
	int rc = vm_create(&vm, cfg, err);
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
	for (;;) {
		uint8_t hdr[REPLICA_HEADER_SIZE];
		struct replica_epoch_header h;
		struct vm_shape shape;
		uint64_t guest_time = 0;
		struct error e = { 0 };
		if (read_full(fd, hdr, sizeof(hdr), &e) < 0 || replica_header_decode(hdr, &h, &e) < 0 ||
		    h.epoch != (vm ? sb.epoch + 1 : 0) ||
		    receive_into(fd, memfd, h.length, &e) < 0 || verify_epoch(memfd, &shape, &e) < 0) {
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
		int rc = quit ? 0 : apply_epoch(vm, memfd, h.epoch == 0, &guest_time, &e);
		if (!quit && rc == 0) {
			sb.epoch = h.epoch;
			sb.bytes += h.length;
			sb.applied_ns = monotonic_ns();
			if (h.epoch > 0) {
				sb.guest_time = guest_time;
				sb.consistent = true;
			}
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
	uint64_t epoch = sb.epoch, guest_time = sb.guest_time;
	pthread_mutex_unlock(&sb.lock);
	if (!vm) {
		log_error("replica: no replica was built: %s", err.msg);
		return VM_EXIT_ERROR;
	}
	if (!failover) {
		log_info("replica stopped at epoch %" PRIu64 "; the guest never ran here", epoch);
		vm_destroy(vm);
		return 0;
	}
	/* Only now may the disks be had: the primary has let them go. */
	if (vm_disks_lock(vm, &err) < 0) {
		log_error("failover: %s; the guest does not run here", err.msg);
		vm_destroy(vm);
		return VM_EXIT_ERROR;
	}
	vm_hold_devices(vm, false);
	vm_set_guest_time(vm, guest_time);
	vm_announce(vm);
	log_info("failover: the guest runs here from epoch %" PRIu64, epoch);
	int status = vm_run(vm);
	vm_destroy(vm);
	return status;
}
