/* disk_image.c: opening, locking, reading and writing a raw disk image.
 *
 * Every system call is checked and every failure is reported with the
 * image's path and strerror. Discard and write-zeroes prefer fallocate()
 * so that a sparse image stays sparse; writing zeroes is only the fallback
 * for file systems (or block devices) that cannot punch holes. */
#include "backends/disk_image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZERO_CHUNK (64u * 1024)

static const uint8_t zero_chunk[ZERO_CHUNK];

static void reset_closed(struct disk_image *d)
{
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

int disk_image_open_unlocked(struct disk_image *d, const char *path, bool read_only,
			     struct error *err)
{
	int ret;

	reset_closed(d);
	if (!path || !*path)
		return error_set(err, EINVAL, "disk image: empty path");
	if (strlen(path) >= sizeof(d->path))
		return error_set(err, ENAMETOOLONG, "disk image path is too long (%zu bytes)",
				 strlen(path));
	/* O_NONBLOCK so that a FIFO given by mistake fails the type check
	 * below instead of hanging in open(); cleared again afterwards. */
	int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		if (!read_only && (e == EACCES || e == EROFS || e == EPERM))
			return error_errno(err, e, "cannot open disk image %s for writing "
					   "(read-only use needs the read-only option)", path);
		return error_errno(err, e, "cannot open disk image %s", path);
	}

	struct stat st;
	if (fstat(fd, &st) < 0) {
		ret = error_errno(err, errno, "cannot stat disk image %s", path);
		goto fail;
	}
	uint64_t size;
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			ret = error_errno(err, errno, "cannot get the size of block device %s",
					  path);
			goto fail;
		}
		d->block_device = true;
	} else {
		ret = error_set(err, EINVAL, "disk image %s is not a regular file or a block "
				"device (it is a %s)", path, S_ISDIR(st.st_mode) ? "directory" :
				S_ISCHR(st.st_mode) ? "character device" :
				S_ISFIFO(st.st_mode) ? "FIFO" :
				S_ISSOCK(st.st_mode) ? "socket" : "special file");
		goto fail;
	}
	if (size == 0) {
		ret = error_set(err, EINVAL, "disk image %s is empty (0 bytes); its size must be "
				"a non-zero multiple of 512 bytes", path);
		goto fail;
	}
	if (size % DISK_SECTOR_SIZE) {
		ret = error_set(err, EINVAL, "disk image %s is %llu bytes, not a multiple of 512 "
				"bytes (the sector size)", path, (unsigned long long)size);
		goto fail;
	}

	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		ret = error_errno(err, errno, "cannot set the flags of disk image %s", path);
		goto fail;
	}

	d->fd = fd;
	d->size = size;
	d->read_only = read_only;
	memcpy(d->path, path, strlen(path) + 1);
	return 0;

fail:
	close(fd);
	reset_closed(d);
	return ret;
}

int disk_image_lock(struct disk_image *d, struct error *err)
{
	if (d->locked)
		return 0;
	/* flock locks belong to the open file description: a second open of
	 * the same image conflicts even inside this process, and the lock
	 * goes away with the descriptor, also when tern crashes. */
	for (;;) {
		if (flock(d->fd, (d->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
			break;
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EWOULDBLOCK)
			return error_set(err, EBUSY, "disk image %s is already in use by another "
					 "process (it holds a %s lock)", d->path,
					 d->read_only ? "write" : "conflicting");
		return error_errno(err, e, "cannot lock disk image %s", d->path);
	}
	d->locked = true;
	return 0;
}

void disk_image_unlock(struct disk_image *d)
{
	if (d->locked && flock(d->fd, LOCK_UN) == 0)
		d->locked = false;
}

int disk_image_open(struct disk_image *d, const char *path, bool read_only, struct error *err)
{
	int rc = disk_image_open_unlocked(d, path, read_only, err);
	if (rc)
		return rc;
	rc = disk_image_lock(d, err);
	if (rc)
		disk_image_close(d);
	return rc;
}

void disk_image_close(struct disk_image *d)
{
	/* Closing the only descriptor also drops the flock. Data not yet
	 * flushed stays in the page cache; the guest asked for FLUSH if it
	 * cared. */
	if (d->fd >= 0)
		close(d->fd);
	dirty_blocks_free(&d->dirty);
	reset_closed(d);
}

int disk_image_track_dirty(struct disk_image *d, bool on, struct error *err)
{
	if (!d->dirty.words) {
		if (!on)
			return 0;
		if (dirty_blocks_init(&d->dirty, d->size) < 0)
			return error_set(err, ENOMEM, "no memory for the dirty map of disk image %s",
					 d->path);
	}
	dirty_blocks_track(&d->dirty, on);
	return 0;
}

int disk_image_next_data(struct disk_image *d, uint64_t offset, uint64_t *data_start,
			 uint64_t *data_end, struct error *err)
{
	if (offset >= d->size) {
		*data_start = *data_end = d->size;
		return 0;
	}
	if (d->block_device) {
		*data_start = offset;
		*data_end = d->size;
		return 0;
	}
	off_t start = lseek(d->fd, (off_t)offset, SEEK_DATA);
	if (start < 0) {
		if (errno == ENXIO) {           /* only a hole from here on */
			*data_start = *data_end = d->size;
			return 0;
		}
		if (errno == EINVAL || errno == EOPNOTSUPP) {
			*data_start = offset;
			*data_end = d->size;
			return 0;
		}
		return error_errno(err, errno, "looking for data after offset %llu of disk image %s",
				   (unsigned long long)offset, d->path);
	}
	off_t end = lseek(d->fd, start, SEEK_HOLE);
	if (end < 0)
		return error_errno(err, errno, "looking for a hole after offset %llu of disk image "
				   "%s", (unsigned long long)start, d->path);
	*data_start = (uint64_t)start < d->size ? (uint64_t)start : d->size;
	*data_end = (uint64_t)end < d->size ? (uint64_t)end : d->size;
	return 0;
}

static int check_range(const struct disk_image *d, uint64_t offset, uint64_t len,
		       const char *what, struct error *err)
{
	if (d->fd < 0)
		return error_set(err, EBADF, "%s: disk image is not open", what);
	if (offset > d->size || len > d->size - offset)
		return error_set(err, EINVAL, "%s %llu bytes at offset %llu: beyond the end of "
				 "disk image %s (%llu bytes)", what, (unsigned long long)len,
				 (unsigned long long)offset, d->path, (unsigned long long)d->size);
	return 0;
}

static int check_writable(const struct disk_image *d, const char *what, struct error *err)
{
	if (d->read_only)
		return error_set(err, EBADF, "%s: disk image %s is read-only", what, d->path);
	return 0;
}

static int transfer(struct disk_image *d, struct iovec *iov, unsigned iovcnt, uint64_t offset,
		    uint64_t total, bool write, struct error *err);

static int rw_vec(struct disk_image *d, struct iovec *iov, unsigned iovcnt, uint64_t offset,
		  bool write, struct error *err)
{
	const char *what = write ? "writing" : "reading";
	uint64_t total = 0;
	int ret;

	for (unsigned i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - total)
			return error_set(err, EINVAL, "%s: request length overflows", what);
		total += iov[i].iov_len;
	}
	ret = check_range(d, offset, total, what, err);
	if (ret)
		return ret;
	if (write && (ret = check_writable(d, what, err)))
		return ret;
	ret = transfer(d, iov, iovcnt, offset, total, write, err);
	/* Even a failed write may have changed part of the range. */
	if (write)
		dirty_blocks_mark(&d->dirty, offset, total);
	return ret;
}

static int transfer(struct disk_image *d, struct iovec *iov, unsigned iovcnt, uint64_t offset,
		    uint64_t total, bool write, struct error *err)
{
	const char *what = write ? "writing" : "reading";
	while (total > 0) {
		while (iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
		int n = iovcnt > IOV_MAX ? IOV_MAX : (int)iovcnt;
		ssize_t r = write ? pwritev(d->fd, iov, n, (off_t)offset)
				  : preadv(d->fd, iov, n, (off_t)offset);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return error_errno(err, errno, "%s %llu bytes at offset %llu of disk "
					   "image %s", what, (unsigned long long)total,
					   (unsigned long long)offset, d->path);
		}
		if (r == 0)
			/* The image shrank under us (someone truncated it) or the
			 * device made no progress: never spin. */
			return error_set(err, EIO, "%s %llu bytes at offset %llu of disk image "
					 "%s: no progress (was the image truncated?)", what,
					 (unsigned long long)total, (unsigned long long)offset,
					 d->path);
		offset += (uint64_t)r;
		total -= (uint64_t)r;
		size_t done = (size_t)r;
		while (done > 0) {
			if (done >= iov->iov_len) {
				done -= iov->iov_len;
				iov->iov_len = 0;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (uint8_t *)iov->iov_base + done;
				iov->iov_len -= done;
				done = 0;
			}
		}
	}
	return 0;
}

int disk_image_preadv(struct disk_image *d, struct iovec *iov, unsigned iovcnt,
		      uint64_t offset, struct error *err)
{
	return rw_vec(d, iov, iovcnt, offset, false, err);
}

int disk_image_pwritev(struct disk_image *d, struct iovec *iov, unsigned iovcnt,
		       uint64_t offset, struct error *err)
{
	return rw_vec(d, iov, iovcnt, offset, true, err);
}

int disk_image_pread(struct disk_image *d, void *buf, size_t len, uint64_t offset,
		     struct error *err)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return rw_vec(d, &iov, 1, offset, false, err);
}

int disk_image_pwrite(struct disk_image *d, const void *buf, size_t len, uint64_t offset,
		      struct error *err)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return rw_vec(d, &iov, 1, offset, true, err);
}

int disk_image_flush(struct disk_image *d, struct error *err)
{
	if (d->fd < 0)
		return error_set(err, EBADF, "flush: disk image is not open");
	if (d->read_only)
		return 0;
	while (fdatasync(d->fd) < 0) {
		if (errno != EINTR)
			return error_errno(err, errno, "flushing disk image %s", d->path);
	}
	return 0;
}

/* Writes zeroes over the range, for when fallocate cannot help. */
static int write_zero_bytes(struct disk_image *d, uint64_t offset, uint64_t len,
			    struct error *err)
{
	while (len > 0) {
		size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
		int ret = disk_image_pwrite(d, zero_chunk, n, offset, err);
		if (ret)
			return ret;
		offset += n;
		len -= n;
	}
	return 0;
}

/* fallocate with `mode`: 0 done, 1 unsupported here (fall back), negative
 * errno on a real failure. EOPNOTSUPP/ENOSYS are remembered in *sticky;
 * EINVAL is not, because on a block device it can mean "not aligned to
 * the logical block size", true of this range only. */
static int try_fallocate(struct disk_image *d, int mode, bool *sticky, const char *what,
			 uint64_t offset, uint64_t len, struct error *err)
{
	if (*sticky)
		return 1;
	for (;;) {
		if (fallocate(d->fd, mode, (off_t)offset, (off_t)len) == 0)
			return 0;
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EOPNOTSUPP || e == ENOSYS) {
			*sticky = true;
			return 1;
		}
		if (e == EINVAL)
			return 1;
		return error_errno(err, e, "%s %llu bytes at offset %llu of disk image %s", what,
				   (unsigned long long)len, (unsigned long long)offset, d->path);
	}
}

static int punch_hole(struct disk_image *d, uint64_t offset, uint64_t len, struct error *err)
{
	return try_fallocate(d, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, &d->no_punch_hole,
			     "punching a hole of", offset, len, err);
}

static int zero_range(struct disk_image *d, uint64_t offset, uint64_t len, struct error *err)
{
	return try_fallocate(d, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, &d->no_zero_range,
			     "zeroing", offset, len, err);
}

static int discard(struct disk_image *d, uint64_t offset, uint64_t len, struct error *err)
{
	int ret = check_range(d, offset, len, "discarding", err);
	if (ret)
		return ret;
	if ((ret = check_writable(d, "discarding", err)))
		return ret;
	if (len == 0)
		return 0;
	ret = punch_hole(d, offset, len, err);
	if (ret <= 0)
		return ret;
	return write_zero_bytes(d, offset, len, err);
}

int disk_image_discard(struct disk_image *d, uint64_t offset, uint64_t len, struct error *err)
{
	int ret = discard(d, offset, len, err);
	dirty_blocks_mark(&d->dirty, offset, len);
	return ret;
}

static int write_zeroes(struct disk_image *d, uint64_t offset, uint64_t len, bool may_unmap,
			struct error *err);

int disk_image_write_zeroes(struct disk_image *d, uint64_t offset, uint64_t len,
			    bool may_unmap, struct error *err)
{
	int ret = write_zeroes(d, offset, len, may_unmap, err);
	dirty_blocks_mark(&d->dirty, offset, len);
	return ret;
}

static int write_zeroes(struct disk_image *d, uint64_t offset, uint64_t len, bool may_unmap,
			struct error *err)
{
	int ret = check_range(d, offset, len, "zeroing", err);
	if (ret)
		return ret;
	if ((ret = check_writable(d, "zeroing", err)))
		return ret;
	if (len == 0)
		return 0;
	if (may_unmap) {
		ret = punch_hole(d, offset, len, err);
		if (ret <= 0)
			return ret;
	}
	ret = zero_range(d, offset, len, err);
	if (ret <= 0)
		return ret;
	if (!may_unmap) {
		/* A hole reads back as zeroes too; the driver only loses the
		 * preallocation it asked to keep, which a file system without
		 * ZERO_RANGE could not give it anyway. */
		ret = punch_hole(d, offset, len, err);
		if (ret <= 0)
			return ret;
	}
	return write_zero_bytes(d, offset, len, err);
}
