/* disk_image.h: a raw disk image (a regular file or a host block device)
 * that a block device reads and writes by byte offset. It knows nothing
 * about virtio: it owns the file descriptor, the size, the advisory lock
 * that keeps two tern processes from writing one image, and the retry and
 * fallback rules of the underlying system calls.
 *
 * A disk_image is used by one thread at a time (the block device's worker);
 * it has no lock of its own. The exception is a storage migration, which
 * reads the image from its own thread with disk_image_pread and
 * disk_image_next_data (neither changes the disk_image, and the image never
 * uses the file offset) and collects the dirty map, which is lock-free. */
#ifndef TERN_BACKENDS_DISK_IMAGE_H
#define TERN_BACKENDS_DISK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backends/dirty_blocks.h"
#include "util/error.h"

#define DISK_SECTOR_SIZE 512u

struct disk_image {
	int fd;                 /* -1 when closed */
	char path[4096];        /* as given, for messages */
	uint64_t size;          /* bytes, a non-zero multiple of DISK_SECTOR_SIZE */
	bool read_only;
	bool locked;            /* holds its advisory lock */
	bool block_device;
	/* Learnt on the first EOPNOTSUPP, so that a file system without
	 * them costs one failed system call, not one per request. */
	bool no_punch_hole;
	bool no_zero_range;
	/* Blocks written while a storage migration tracks them (the map is
	 * made by the first disk_image_track_dirty and lives until close). */
	struct dirty_blocks dirty;
};

/* Opens `path` read-write or read-only and takes an advisory lock on it
 * (exclusive for read-write, shared for read-only): another open file
 * description holding a conflicting lock, in this process or another,
 * makes this fail with -EBUSY. The size must be a non-zero multiple of
 * 512 bytes. On failure *d is left closed (fd -1). */
int disk_image_open(struct disk_image *d, const char *path, bool read_only, struct error *err);
/* The same without taking the lock: a migration destination opens the
 * image the source still holds and takes the lock at the switch-over. */
int disk_image_open_unlocked(struct disk_image *d, const char *path, bool read_only,
			     struct error *err);
/* Takes (-EBUSY if another holds a conflicting lock) or drops the lock. */
int disk_image_lock(struct disk_image *d, struct error *err);
void disk_image_unlock(struct disk_image *d);

/* Starts or stops recording which blocks every write, discard and
 * write-zeroes touches (in d->dirty). -ENOMEM if the map cannot be made. */
int disk_image_track_dirty(struct disk_image *d, bool on, struct error *err);

/* The first byte at or after `offset` that may hold data (SEEK_DATA), and the
 * end of that data (SEEK_HOLE), for copying a sparse image without its holes.
 * 0 with *data_start = d->size when only a hole remains; a file system (or a
 * block device) that cannot tell reports everything as data. */
int disk_image_next_data(struct disk_image *d, uint64_t offset, uint64_t *data_start,
			 uint64_t *data_end, struct error *err);

/* Releases the lock and closes; harmless on a closed image. */
void disk_image_close(struct disk_image *d);

/* Transfers exactly the requested bytes at `offset`, retrying short
 * transfers and EINTR; a range beyond the end of the image is -EINVAL,
 * a write to a read-only image -EBADF. The vectored forms advance `iov`
 * in place when a transfer is short, so the caller's array is clobbered.
 * 0 or negative errno with err set. */
int disk_image_pread(struct disk_image *d, void *buf, size_t len, uint64_t offset,
		     struct error *err);
int disk_image_pwrite(struct disk_image *d, const void *buf, size_t len, uint64_t offset,
		      struct error *err);
int disk_image_preadv(struct disk_image *d, struct iovec *iov, unsigned iovcnt,
		      uint64_t offset, struct error *err);
int disk_image_pwritev(struct disk_image *d, struct iovec *iov, unsigned iovcnt,
		       uint64_t offset, struct error *err);

/* Data written so far reaches stable storage (fdatasync). A read-only
 * image has nothing to flush. */
int disk_image_flush(struct disk_image *d, struct error *err);

/* The range's contents may be dropped; they read back as zeroes. Punches a
 * hole (keeping the size); where holes are unsupported, writes zeroes. */
int disk_image_discard(struct disk_image *d, uint64_t offset, uint64_t len, struct error *err);

/* The range reads back as zeroes afterwards. With may_unmap the blocks may
 * be deallocated (a hole is punched first); without it the range is zeroed
 * in place (FALLOC_FL_ZERO_RANGE), falling back to a hole and then to
 * writing zeroes. */
int disk_image_write_zeroes(struct disk_image *d, uint64_t offset, uint64_t len,
			    bool may_unmap, struct error *err);

#endif
