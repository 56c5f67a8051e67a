/* diskcopy.c: see diskcopy.h. */
#include "migration/diskcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "backends/disk_image.h"
#include "migration/vmstate.h"
#include "util/le.h"
#include "util/log.h"

/* Zero detection and the unit of a zero record. */
#define ZERO_GRAIN 4096u
/* The destination starts writeback this often, so that the flush before
 * READY (inside the downtime) has little left to do. */
#define SYNC_EVERY (64ull << 20)
/* A chunk's data plus a header per grain, were every grain its own record. */
#define SECTION_CAP (DISK_CHUNK + (DISK_CHUNK / ZERO_GRAIN + 1) * DISK_REC_HEADER)

static void stat_add(uint64_t *field, uint64_t n)
{
	__atomic_fetch_add(field, n, __ATOMIC_RELAXED);
}

static void stat_set(uint64_t *field, uint64_t v)
{
	__atomic_store_n(field, v, __ATOMIC_RELAXED);
}

void disk_copy_stats(const struct disk_copy *dc, struct disk_copy_stats *out)
{
	out->bytes_total = __atomic_load_n(&dc->st.bytes_total, __ATOMIC_RELAXED);
	out->bytes_sent = __atomic_load_n(&dc->st.bytes_sent, __ATOMIC_RELAXED);
	out->dirty_bytes = __atomic_load_n(&dc->st.dirty_bytes, __ATOMIC_RELAXED);
}

/* ---- source ---------------------------------------------------------------- */

void disk_copy_end(struct disk_copy *dc)
{
	for (unsigned i = 0; i < dc->n; i++) {
		struct error e = { 0 };
		(void)disk_image_track_dirty(dc->img[i], false, &e);
		free(dc->pending[i]);
		dc->pending[i] = NULL;
	}
	dc->n = 0;
	free(dc->section);
	free(dc->chunk);
	dc->section = dc->chunk = NULL;
}

int disk_copy_begin(struct disk_copy *dc, struct vm *vm, struct error *err)
{
	memset(dc, 0, sizeof(*dc));
	dc->section = malloc(SECTION_CAP);
	dc->chunk = malloc(DISK_CHUNK);
	if (!dc->section || !dc->chunk) {
		disk_copy_end(dc);
		return error_set(err, ENOMEM, "no memory for the storage copy's buffers");
	}
	for (unsigned i = 0; i < vm->config.num_disks; i++) {
		struct disk_image *d = vm_disk_image(vm, i);
		if (!d)
			break;
		dc->img[dc->n++] = d;
		if (disk_image_track_dirty(d, true, err) < 0) {
			disk_copy_end(dc);
			return -ENOMEM;
		}
		dc->pending[i] = calloc(d->dirty.nwords ? d->dirty.nwords : 1, sizeof(uint64_t));
		if (!dc->pending[i]) {
			disk_copy_end(dc);
			return error_set(err, ENOMEM, "no memory for the dirty map of %s", d->path);
		}
		/* What the bulk copy will read: the data extents. */
		uint64_t off = 0, total = 0;
		while (off < d->size) {
			uint64_t start, end;
			if (disk_image_next_data(d, off, &start, &end, err) < 0) {
				disk_copy_end(dc);
				return -EIO;
			}
			if (start >= d->size)
				break;
			total += end - start;
			off = end;
		}
		dc->data_bytes[i] = total;
		dc->st.bytes_total += total;
	}
	return 0;
}

static int flush_section(struct disk_copy *dc, unsigned disk, struct mig_writer *w,
			 struct error *err)
{
	if (!dc->len)
		return 0;
	int rc = mig_write_section(w, MIG_SEC_DISK, disk, DISK_SECTION_VERSION, dc->section,
				   dc->len);
	dc->len = 0;
	return rc ? mig_writer_status(w, err) : 0;
}

static void add_record(struct disk_copy *dc, uint64_t offset, uint32_t len, bool zero,
		       const uint8_t *data)
{
	uint8_t *p = dc->section + dc->len;
	put_le64(p, offset);
	put_le32(p + 8, len);
	put_le32(p + 12, zero ? DISK_REC_ZERO : 0);
	dc->len += DISK_REC_HEADER;
	if (!zero) {
		memcpy(dc->section + dc->len, data, len);
		dc->len += len;
	}
}

static bool all_zero(const uint8_t *p, size_t len)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < len / 8; i++)
		if (q[i])
			return false;
	for (size_t i = len & ~(size_t)7; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Reads [offset, offset+len) (len <= DISK_CHUNK) and sends it as one DISK
 * section: runs of data and runs of zero grains. */
static int send_range(struct disk_copy *dc, unsigned disk, uint64_t offset, uint32_t len,
		      struct mig_writer *w, struct error *err)
{
	struct disk_image *d = dc->img[disk];
	if (disk_image_pread(d, dc->chunk, len, offset, err) < 0)
		return error_wrap(err, "storage copy");
	uint32_t pos = 0;
	while (pos < len) {
		uint32_t grain = len - pos < ZERO_GRAIN ? len - pos : ZERO_GRAIN;
		bool zero = all_zero(dc->chunk + pos, grain);
		uint32_t end = pos + grain;
		while (end < len) {
			uint32_t g = len - end < ZERO_GRAIN ? len - end : ZERO_GRAIN;
			if (all_zero(dc->chunk + end, g) != zero)
				break;
			end += g;
		}
		add_record(dc, offset + pos, end - pos, zero, dc->chunk + pos);
		pos = end;
	}
	stat_add(&dc->st.bytes_sent, len);
	return flush_section(dc, disk, w, err);
}

int disk_copy_bulk(struct disk_copy *dc, struct mig_writer *w, disk_copy_tick tick, void *ctx,
		   struct error *err)
{
	for (unsigned i = 0; i < dc->n; i++) {
		struct disk_image *d = dc->img[i];
		uint64_t off = 0;
		while (off < d->size) {
			uint64_t start, end;
			if (disk_image_next_data(d, off, &start, &end, err) < 0)
				return error_wrap(err, "storage copy");
			if (start >= d->size)
				break;
			/* Whole sectors: a file's data may end mid-sector. */
			start &= ~(uint64_t)(DISK_SECTOR_SIZE - 1);
			end = (end + DISK_SECTOR_SIZE - 1) & ~(uint64_t)(DISK_SECTOR_SIZE - 1);
			if (end > d->size)
				end = d->size;
			for (uint64_t at = start; at < end;) {
				uint32_t n = end - at < DISK_CHUNK ? (uint32_t)(end - at) : DISK_CHUNK;
				if (send_range(dc, i, at, n, w, err) < 0 || tick(ctx, err))
					return -EIO;
				at += n;
			}
			off = end;
		}
	}
	return 0;
}

uint64_t disk_copy_sync(struct disk_copy *dc)
{
	uint64_t bytes = 0;
	for (unsigned i = 0; i < dc->n; i++) {
		struct dirty_blocks *db = &dc->img[i]->dirty;
		dirty_blocks_collect(db, dc->pending[i]);
		uint64_t blocks = 0;
		for (uint64_t k = 0; k < db->nwords; k++)
			blocks += (uint64_t)__builtin_popcountll(dc->pending[i][k]);
		bytes += blocks << db->shift;
	}
	stat_set(&dc->st.dirty_bytes, bytes);
	return bytes;
}

int disk_copy_send_dirty(struct disk_copy *dc, struct mig_writer *w, disk_copy_tick tick,
			 void *ctx, struct error *err)
{
	for (unsigned i = 0; i < dc->n; i++) {
		struct disk_image *d = dc->img[i];
		struct dirty_blocks *db = &d->dirty;
		uint64_t *bits = dc->pending[i];
		uint64_t bsize = 1ull << db->shift;
		for (uint64_t b = 0; b < db->nblocks;) {
			if (!bits[b / 64]) {
				b = (b / 64 + 1) * 64;
				continue;
			}
			if (!((bits[b / 64] >> (b % 64)) & 1)) {
				b++;
				continue;
			}
			/* A run of dirty blocks, up to a chunk. */
			uint64_t first = b;
			while (b < db->nblocks && ((bits[b / 64] >> (b % 64)) & 1) &&
			       (b - first + 1) * bsize <= DISK_CHUNK) {
				bits[b / 64] &= ~(1ull << (b % 64));
				b++;
			}
			uint64_t offset = first * bsize;
			uint64_t len = (b - first) * bsize;
			if (offset + len > d->size)
				len = d->size - offset;
			if (send_range(dc, i, offset, (uint32_t)len, w, err) < 0 || tick(ctx, err))
				return -EIO;
			uint64_t left = __atomic_load_n(&dc->st.dirty_bytes, __ATOMIC_RELAXED);
			stat_set(&dc->st.dirty_bytes, left > len ? left - len : 0);
		}
	}
	stat_set(&dc->st.dirty_bytes, 0);
	return 0;
}

/* ---- destination ---------------------------------------------------------- */

void disk_targets_free(struct disk_targets *dt)
{
	for (unsigned i = 0; i < dt->n; i++) {
		if (dt->t[i].fd >= 0)
			close(dt->t[i].fd);
		if (dt->t[i].replaced_fd >= 0)
			close(dt->t[i].replaced_fd);
		disk_image_close(&dt->t[i].writer);
		dt->t[i].fd = dt->t[i].replaced_fd = -1;
	}
	dt->n = 0;
}

static int make_target(struct disk_target *t, const char *path, uint64_t size,
		       uint64_t data_bytes, struct error *err)
{
	if (strlen(path) >= sizeof(t->path))
		return error_set(err, ENAMETOOLONG, "disk path %s is too long", path);
	snprintf(t->path, sizeof(t->path), "%s", path);
	struct stat st;
	bool replaces = stat(path, &st) == 0;
	if (replaces && !S_ISREG(st.st_mode))
		return error_set(err, EINVAL, "the storage copy would replace %s, which is not a "
				 "regular file: give the path of an image file", path);
	if (replaces) {
		/* A VM using it holds its lock: replacing its disk under it is
		 * a mistake in the path, not a migration. */
		struct disk_image old;
		if (disk_image_open(&old, path, true, err) < 0)
			return error_wrap(err, "the storage copy would replace %s", path);
		disk_image_close(&old);
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	const char *parent = dirname(dir);
	struct statvfs vfs;
	if (statvfs(parent, &vfs) < 0)
		return error_errno(err, errno, "cannot look at the directory %s for the copy of %s",
				   parent, path);
	uint64_t room = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (room < data_bytes)
		return error_set(err, ENOSPC, "the copy of %s needs %llu MiB and %s has %llu MiB "
				 "free", path, (unsigned long long)(data_bytes >> 20), parent,
				 (unsigned long long)(room >> 20));
	/* Unnamed until the commit: a destination that fails or dies leaves
	 * no half-copied image behind. */
	t->fd = open(parent, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (t->fd < 0)
		return error_errno(err, errno, "cannot create the copy of %s in %s", path, parent);
	if (ftruncate(t->fd, (off_t)size) < 0) {
		int e = errno;
		close(t->fd);
		t->fd = -1;
		return error_errno(err, e, "cannot size the copy of %s to %llu bytes", path,
				   (unsigned long long)size);
	}
	/* An image it replaces keeps its permissions; a new one is private. */
	if (replaces && fchmod(t->fd, st.st_mode & 07777) < 0)
		log_warn("the copy of %s cannot take its permissions (%o): %s", path,
			 (unsigned)(st.st_mode & 07777), strerror(errno));
	snprintf(t->fd_path, sizeof(t->fd_path), "/proc/self/fd/%d", t->fd);
	/* The copy is written through its own descriptor: the VM may open
	 * the disk read-only. */
	if (disk_image_open_unlocked(&t->writer, t->fd_path, false, err) < 0) {
		close(t->fd);
		t->fd = -1;
		return error_wrap(err, "the copy of %s", path);
	}
	t->size = size;
	t->copy = true;
	return 0;
}

int disk_targets_prepare(struct disk_targets *dt, struct vm_config *cfg,
			 const struct vm_shape *shape, struct error *err)
{
	memset(dt, 0, sizeof(*dt));
	for (unsigned i = 0; i < VM_MAX_DISKS; i++) {
		dt->t[i].fd = dt->t[i].replaced_fd = -1;
		dt->t[i].writer.fd = -1;
	}
	bool any = false;
	for (unsigned i = 0; i < shape->num_disks; i++)
		any |= shape->disks[i].copy;
	if (!any)
		return 0;
	if (cfg->num_disks != shape->num_disks)
		return error_set(err, EINVAL, "the incoming VM has %u disks and this destination "
				 "was given %u --disk options: give one path per disk, where its "
				 "copy is to go", shape->num_disks, cfg->num_disks);
	dt->n = shape->num_disks;
	for (unsigned i = 0; i < shape->num_disks; i++) {
		if (!shape->disks[i].copy)
			continue;
		if (cfg->disks[i].read_only != shape->disks[i].read_only) {
			disk_targets_free(dt);
			return error_set(err, EINVAL, "disk %u is %s on the source and %s here", i,
					 shape->disks[i].read_only ? "read-only" : "read-write",
					 cfg->disks[i].read_only ? "read-only" : "read-write");
		}
		if (make_target(&dt->t[i], cfg->disks[i].path, shape->disks[i].size,
				shape->disks[i].data_bytes, err) < 0) {
			disk_targets_free(dt);
			return -EIO;
		}
		cfg->disks[i].path = dt->t[i].fd_path;
		log_info("disk %u: copying %llu MiB of data into a new image for %s", i,
			 (unsigned long long)(shape->disks[i].data_bytes >> 20), dt->t[i].path);
	}
	return 0;
}

int disk_section_apply(struct disk_image *d, unsigned disk, const uint8_t *payload,
		       size_t length, uint64_t *written, struct error *err)
{
	/* Every record is checked before any is written. */
	const uint8_t *p = payload, *end = payload + length;
	while (p < end) {
		if ((size_t)(end - p) < DISK_REC_HEADER)
			return error_set(err, EPROTO, "DISK section for disk %u: a record header "
					 "is cut short", disk);
		uint64_t off = get_le64(p);
		uint32_t len = get_le32(p + 8), flags = get_le32(p + 12);
		if (flags & ~DISK_REC_ZERO)
			return error_set(err, EPROTO, "DISK record with unknown flags 0x%x", flags);
		if (!len || len > DISK_MAX_RECORD || len % DISK_SECTOR_SIZE ||
		    off % DISK_SECTOR_SIZE || off > d->size || len > d->size - off)
			return error_set(err, EPROTO, "DISK record of %u bytes at offset %llu does "
					 "not fit disk %u (%llu bytes, 512-byte sectors)", len,
					 (unsigned long long)off, disk, (unsigned long long)d->size);
		p += DISK_REC_HEADER;
		if (!(flags & DISK_REC_ZERO)) {
			if ((size_t)(end - p) < len)
				return error_set(err, EPROTO, "DISK record at offset %llu: %u bytes "
						 "announced, %zu left in the section",
						 (unsigned long long)off, len, (size_t)(end - p));
			p += len;
		}
	}
	for (p = payload; p < end;) {
		uint64_t off = get_le64(p);
		uint32_t len = get_le32(p + 8), flags = get_le32(p + 12);
		p += DISK_REC_HEADER;
		int rc = (flags & DISK_REC_ZERO) ? disk_image_write_zeroes(d, off, len, true, err)
						 : disk_image_pwrite(d, p, len, off, err);
		if (rc < 0)
			return error_wrap(err, "storage copy");
		if (!(flags & DISK_REC_ZERO))
			p += len;
		*written += len;
	}
	return 0;
}

int disk_copy_apply(struct disk_targets *dt, struct vm *vm, const struct mig_section *s,
		    struct error *err)
{
	unsigned disk = s->instance;
	if (s->version != DISK_SECTION_VERSION)
		return error_set(err, EPROTO, "DISK section version %u: this tern reads version %u",
				 s->version, DISK_SECTION_VERSION);
	if (disk >= dt->n || !dt->t[disk].copy)
		return error_set(err, EPROTO, "a DISK section for disk %u, which is not being "
				 "copied", disk);
	struct disk_image *d = &dt->t[disk].writer;
	int rc = disk_section_apply(d, disk, s->payload, s->length, &dt->t[disk].unsynced, err);
	if (rc)
		return rc;
	if (dt->t[disk].unsynced >= SYNC_EVERY) {
		dt->t[disk].unsynced = 0;
		/* Start writeback now rather than all of it before READY. */
		if (sync_file_range(d->fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0)
			log_debug("disk %u: sync_file_range: %s", disk, strerror(errno));
	}
	return 0;
}

int disk_targets_flush(struct disk_targets *dt, struct vm *vm, struct error *err)
{
	for (unsigned i = 0; i < dt->n; i++) {
		if (!dt->t[i].copy)
			continue;
		if (disk_image_flush(&dt->t[i].writer, err) < 0)
			return error_wrap(err, "the copy of %s", dt->t[i].path);
	}
	return 0;
}

static int fsync_dir(const char *path, struct error *err)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, errno, "cannot open the directory of %s", path);
	int rc = fsync(fd) < 0 ? error_errno(err, errno, "cannot flush the directory of %s", path)
			       : 0;
	close(fd);
	return rc;
}

int disk_targets_commit(struct disk_targets *dt, struct vm *vm, struct error *err)
{
	for (unsigned i = 0; i < dt->n; i++) {
		struct disk_target *t = &dt->t[i];
		if (!t->copy)
			continue;
		/* linkat needs a name that does not exist; rename then replaces
		 * the old image (the stale one a VM left here) in one step. */
		char tmp[PATH_MAX + 32];
		snprintf(tmp, sizeof(tmp), "%s.tern-incoming-%d", t->path, (int)getpid());
		(void)unlink(tmp);
		/* Held open, the replaced image's blocks are freed when this is
		 * closed, after RUNNING, not inside the rename (the downtime). */
		if (t->replaced_fd < 0)
			t->replaced_fd = open(t->path, O_RDONLY | O_CLOEXEC);
		if (linkat(AT_FDCWD, t->fd_path, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0)
			return error_errno(err, errno, "cannot give the copied image the name %s", tmp);
		if (rename(tmp, t->path) < 0) {
			int e = errno;
			(void)unlink(tmp);
			return error_errno(err, e, "cannot rename the copied image to %s", t->path);
		}
		if (fsync_dir(t->path, err) < 0)
			return -EIO;
		struct disk_image *d = vm_disk_image(vm, i);
		if (d)
			snprintf(d->path, sizeof(d->path), "%s", t->path);
		log_info("disk %u: the copy is now %s", i, t->path);
	}
	return 0;
}
