/* virtio.h: virtio constants (Virtual I/O Device spec 1.2) and the
 * interface between the virtio-mmio transport and a device backend.
 *
 * The transport (mmio.c) owns the register file of section 4.2.2, feature
 * negotiation, the queue configuration, the interrupt status and the IRQ
 * line. A backend (blk.c, net.c) owns what the device does: its config
 * space, its worker thread and its use of the queues once the driver has
 * set DRIVER_OK. Both save and restore their own state. */
#ifndef TERN_DEVICES_VIRTIO_VIRTIO_H
#define TERN_DEVICES_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/virtio/queue.h"
#include "mem/guest_ram.h"
#include "state/state.h"
#include "util/error.h"

/* Device status bits (2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER 2u
#define VIRTIO_STATUS_DRIVER_OK 4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED 0x80u

/* Reserved feature bits (6) */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* Device ids (5) */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2

/* InterruptStatus bits (4.2.2) */
#define VIRTIO_INT_USED 1u
#define VIRTIO_INT_CONFIG 2u

#define VIRTIO_MMIO_WINDOW 0x1000
#define VIRTIO_MMIO_CONFIG_OFFSET 0x100
#define VIRTIO_MAX_QUEUES 4

struct virtio_mmio;

struct virtio_backend_ops {
	const char *type;               /* "virtio-blk" */
	uint32_t device_id;             /* VIRTIO_ID_* */
	unsigned num_queues;
	uint16_t queue_max_size;        /* a power of two, at most VQ_MAX_SIZE */
	uint32_t config_size;           /* bytes of device config space */
	/* Feature bits the device offers (VERSION_1 is added by the transport).
	 * Called once, by virtio_mmio_create. The transport drops the reserved
	 * bits 28..41 and adds VERSION_1, EVENT_IDX and INDIRECT_DESC itself. */
	uint64_t (*features)(void *be);
	/* Config space access, bounds already checked; called with the
	 * transport lock held, so it must not call back into the transport. */
	void (*config_read)(void *be, uint32_t offset, void *buf, uint32_t len);
	void (*config_write)(void *be, uint32_t offset, const void *buf, uint32_t len);
	/* The driver set DRIVER_OK: negotiated features are final and the
	 * queues are set up. Start serving. Non-zero = refuse (NEEDS_RESET).
	 * Also called by the transport's restore, possibly while paused: then
	 * touch no guest memory until resume. */
	int (*activate)(void *be, struct error *err);
	/* Device reset by the driver (status 0) or by tern: stop touching guest
	 * memory and the queues before returning; forget in-flight work. */
	void (*reset)(void *be);
	/* The driver notified queue `queue`. Runs on a hart thread: must not
	 * block; typically wakes the backend's worker. Only called between a
	 * successful activate and the next reset, never concurrently with
	 * activate/reset/pause/resume/save/restore, and without the transport
	 * lock (it may still come while paused: defer the work to resume).
	 * The transport also calls it once per ready queue right after
	 * activate and after resume, so work made available meanwhile is seen. */
	void (*notify)(void *be, unsigned queue);
	/* Stop taking work and finish in-flight I/O, so that after return the
	 * backend writes no guest memory until resume (snapshot, migration). */
	void (*pause)(void *be);
	void (*resume)(void *be);
	/* The backend's own state (config it changed, in-flight bookkeeping,
	 * backend position); queue and transport state are saved by the
	 * transport. restore happens on a paused, not-yet-activated backend. */
	int (*save)(void *be, struct state_writer *w, struct error *err);
	int (*restore)(void *be, const struct state_reader *r, struct error *err);
	void (*destroy)(void *be);
};

/* Creates the transport for backend `be` at `base`. On success the
 * transport owns `be` and destroys it with itself. */
struct virtio_mmio *virtio_mmio_create(const char *id, uint64_t base, struct irq_line irq,
				       struct guest_ram *ram,
				       const struct virtio_backend_ops *ops, void *be,
				       struct error *err);
struct device *virtio_mmio_device(struct virtio_mmio *t);
/* The backend pointer given at creation (for the backend's own API). */
void *virtio_backend(struct virtio_mmio *t);

/* ---- for backends ------------------------------------------------------ */
struct virtq *virtio_queue(struct virtio_mmio *t, unsigned index);
uint64_t virtio_driver_features(const struct virtio_mmio *t);
static inline bool virtio_has_feature(const struct virtio_mmio *t, unsigned bit)
{
	return (virtio_driver_features(t) >> bit) & 1;
}
/* After pushing used buffers to queue `index`: interrupts the driver
 * unless it suppressed notifications (flags or event index). Thread-safe. */
void virtio_notify_used(struct virtio_mmio *t, unsigned index);
/* The device changed its config space: bump the generation, interrupt. */
void virtio_notify_config(struct virtio_mmio *t);
/* The driver did something the device cannot survive (a malformed chain):
 * set DEVICE_NEEDS_RESET, log why once, interrupt; stop using the device. */
void virtio_set_needs_reset(struct virtio_mmio *t, const char *why);
bool virtio_is_broken(const struct virtio_mmio *t);

/* ---- for the machine ------------------------------------------------------ */
void virtio_mmio_pause(struct virtio_mmio *t);
void virtio_mmio_resume(struct virtio_mmio *t);

#endif
