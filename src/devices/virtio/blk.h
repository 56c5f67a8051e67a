/* blk.h: virtio-blk (virtio 1.2, section 5.2) backed by a raw disk image.
 *
 * The device offers SEG_MAX, BLK_SIZE (512) and FLUSH, plus RO for a
 * read-only image or DISCARD and WRITE_ZEROES for a writable one; one
 * request queue of up to 256 entries. Requests are served by one worker
 * thread per device, never on a hart thread. */
#ifndef TERN_DEVICES_VIRTIO_BLK_H
#define TERN_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/virtio/virtio.h"
#include "mem/guest_ram.h"
#include "util/error.h"

/* Feature bits (5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (5.2.6) */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_GET_LIFETIME 10
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_T_SECURE_ERASE 14

/* Request status (5.2.6) */
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

/* flags of a discard / write-zeroes segment */
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_SECTOR_SIZE 512u
#define VIRTIO_BLK_QUEUE_SIZE 256

/* Byte offsets in the device config space (5.2.4), little-endian. */
#define VIRTIO_BLK_CFG_CAPACITY 0               /* le64, 512-byte sectors */
#define VIRTIO_BLK_CFG_SIZE_MAX 8               /* le32 */
#define VIRTIO_BLK_CFG_SEG_MAX 12               /* le32 */
#define VIRTIO_BLK_CFG_GEOMETRY 16              /* le16 cylinders, u8 heads, u8 sectors */
#define VIRTIO_BLK_CFG_BLK_SIZE 20              /* le32 */
#define VIRTIO_BLK_CFG_TOPOLOGY 24              /* u8, u8, le16, le32 */
#define VIRTIO_BLK_CFG_WRITEBACK 32             /* u8 */
#define VIRTIO_BLK_CFG_NUM_QUEUES 34            /* le16 */
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 36   /* le32 */
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG 40       /* le32 */
#define VIRTIO_BLK_CFG_DISCARD_ALIGN 44         /* le32, sectors */
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS 48        /* le32 */
#define VIRTIO_BLK_CFG_MAX_WZ_SEG 52            /* le32 */
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP 56          /* u8 */
#define VIRTIO_BLK_CFG_SIZE 60                  /* up to the secure-erase fields */

/* Limits the device advertises (and enforces). */
#define VIRTIO_BLK_SEG_MAX (VIRTIO_BLK_QUEUE_SIZE - 2)
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 21)      /* 1 GiB per segment */
#define VIRTIO_BLK_MAX_DISCARD_SEG 32u
#define VIRTIO_BLK_DISCARD_ALIGN 8u                     /* 4 KiB */

/* Creates a virtio-blk device on the image at `path` with its virtio-mmio
 * transport at `base`. On failure nothing is left open or allocated. */
struct virtio_mmio *virtio_blk_create(const char *id, uint64_t base, struct irq_line irq,
				      struct guest_ram *ram, const char *path, bool read_only,
				      struct error *err);

/* For a migration destination: the image is opened without its lock, which
 * virtio_blk_lock() takes at the switch-over (the source drops its own
 * with virtio_blk_unlock() first). */
struct virtio_mmio *virtio_blk_create_unlocked(const char *id, uint64_t base,
					       struct irq_line irq, struct guest_ram *ram,
					       const char *path, bool read_only,
					       struct error *err);
int virtio_blk_lock(struct virtio_mmio *t, struct error *err);
void virtio_blk_unlock(struct virtio_mmio *t);
/* The image behind the device, for a storage migration: the source reads
 * it and tracks its dirty blocks, the destination writes the copy. */
struct disk_image *virtio_blk_image(struct virtio_mmio *t);
/* Data bytes the guest has read and written through it (not saved with
 * the VM: a count of this process's work). */
void virtio_blk_io(struct virtio_mmio *t, uint64_t *read, uint64_t *written);

#endif
