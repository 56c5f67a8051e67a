/* snapshot.c: snapshot files. Writing goes to "PATH.tmp-PID", fsync,
 * rename, fsync of the directory: a crash never leaves a partial file
 * under the name a restore would read. */
#include "migration/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine/vm.h"
#include "util/log.h"

static int sync_directory_of(const char *path, struct error *err)
{
	char *copy = strdup(path);
	if (!copy)
		return error_set(err, ENOMEM, "out of memory");
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0 || fsync(fd) < 0)
		rc = error_errno(err, errno, "syncing the directory of %s", path);
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/* Writes the state into a new temporary file; the guest must be paused. */
static int write_state(struct vm *vm, const char *tmp, int *fd_out, struct snapshot_report *rep,
		       struct error *err)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return error_errno(err, errno, "cannot create the snapshot %s", tmp);
	struct mig_writer w;
	int rc = mig_writer_init(&w, fd, true, err);
	if (!rc) {
		rc = vmstate_save_all(vm, &w, &rep->ram, err);
		rep->bytes = w.bytes;
		mig_writer_free(&w);
	}
	if (rc) {
		close(fd);
		unlink(tmp);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

/* Makes the written state durable under its final name; the guest may
 * already run again: what is in the file no longer depends on it. */
static int publish(int fd, const char *tmp, const char *path, struct error *err)
{
	int rc = 0;
	if (fsync(fd) < 0)
		rc = error_errno(err, errno, "syncing the snapshot %s", tmp);
	if (close(fd) < 0 && !rc)
		rc = error_errno(err, errno, "closing the snapshot %s", tmp);
	if (!rc && rename(tmp, path) < 0)
		rc = error_errno(err, errno, "renaming %s to %s", tmp, path);
	if (!rc)
		rc = sync_directory_of(path, err);
	if (rc)
		unlink(tmp);
	return rc;
}

int snapshot_save(struct vm *vm, const char *path, bool stop_after,
		  struct snapshot_report *rep, struct error *err)
{
	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&vm->lock);
	bool was_paused = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);

	int64_t t0 = monotonic_ns();
	if (!was_paused) {
		int rc = vm_pause(vm, err);
		if (rc)
			return rc;
	}
	int64_t t1 = monotonic_ns();
	char tmp[4096];
	int fd = -1, rc = 0;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof(tmp))
		rc = error_set(err, ENAMETOOLONG, "snapshot path too long: %s", path);
	if (!rc)
		rc = write_state(vm, tmp, &fd, rep, err);

	/* A VM that stops after its snapshot waits for the file to be safe. */
	if (!rc && stop_after)
		rc = publish(fd, tmp, path, err);
	if (rc || !stop_after) {
		if (!was_paused) {
			struct error e2 = { 0 };
			if (vm_resume(vm, &e2) < 0)
				log_error("resuming after the snapshot: %s", e2.msg);
		}
	} else {
		vm_request_stop(vm, VM_EXIT_POWEROFF);
	}
	rep->pause_us = was_paused ? 0 : (uint64_t)(monotonic_ns() - t0) / 1000;
	if (!rc && !stop_after)
		rc = publish(fd, tmp, path, err);
	rep->write_us = (uint64_t)(monotonic_ns() - t1) / 1000;
	if (!rc)
		log_info("snapshot %s: %llu bytes (%llu pages with data, %llu zero, %llu never used), "
			 "guest paused %llu ms", path, (unsigned long long)rep->bytes,
			 (unsigned long long)rep->ram.pages_data, (unsigned long long)rep->ram.pages_zero,
			 (unsigned long long)rep->ram.pages_skipped,
			 (unsigned long long)rep->pause_us / 1000);
	return rc;
}

int snapshot_open(struct snapshot_source *src, const char *path, struct error *err)
{
	memset(src, 0, sizeof(*src));
	snprintf(src->what, sizeof(src->what), "snapshot %s", path);
	src->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (src->fd < 0)
		return error_errno(err, errno, "cannot open the snapshot %s", path);
	int rc = mig_reader_init(&src->reader, src->fd, src->what, err);
	if (!rc)
		rc = vmstate_read_shape(&src->reader, &src->shape, err);
	if (rc)
		snapshot_close(src);
	return rc;
}

int snapshot_load(struct snapshot_source *src, struct vm *vm, struct ram_stats *ram,
		  struct error *err)
{
	struct vmstate_loader l;
	vmstate_loader_init(&l, vm, true);
	int rc = vmstate_check_config(&l, &src->shape, err);
	if (rc)
		return error_wrap(err, "%s does not fit this VM", src->what);
	rc = vmstate_load_rest(&l, &src->reader, err);
	if (ram)
		*ram = l.ram;
	return rc;
}

void snapshot_close(struct snapshot_source *src)
{
	mig_reader_free(&src->reader);
	if (src->fd >= 0)
		close(src->fd);
	src->fd = -1;
}
