/* net.h: virtio-net (virtio 1.2, section 5.1) backed by a TAP interface.
 *
 * One receive queue, one transmit queue and a control queue. The device
 * offers checksum and TCP segmentation offload in both directions,
 * mergeable receive buffers, the control queue with RX mode commands, and
 * guest announcement (used after a migration). Packets are served by one
 * I/O thread per device, never on a hart thread. */
#ifndef TERN_DEVICES_VIRTIO_NET_H
#define TERN_DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/virtio/virtio.h"
#include "mem/guest_ram.h"
#include "util/error.h"

/* Feature bits (5.1.3) */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_CTRL_VLAN 19
#define VIRTIO_NET_F_CTRL_RX_EXTRA 20
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_MQ 22
#define VIRTIO_NET_F_CTRL_MAC_ADDR 23

/* Config status bits (5.1.4) */
#define VIRTIO_NET_S_LINK_UP 1u
#define VIRTIO_NET_S_ANNOUNCE 2u

/* Byte offsets in the device config space (5.1.4), little-endian. */
#define VIRTIO_NET_CFG_MAC 0                    /* u8[6] */
#define VIRTIO_NET_CFG_STATUS 6                 /* le16 */
#define VIRTIO_NET_CFG_MAX_VQ_PAIRS 8           /* le16 */
#define VIRTIO_NET_CFG_SIZE 10

/* Queues */
#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
#define VIRTIO_NET_CTRLQ 2
#define VIRTIO_NET_QUEUE_SIZE 256

/* struct virtio_net_hdr (5.1.6), 12 bytes under VERSION_1. */
#define VIRTIO_NET_HDR_LEN 12
#define VIRTIO_NET_HDR_FLAGS 0                  /* u8 */
#define VIRTIO_NET_HDR_GSO_TYPE 1               /* u8 */
#define VIRTIO_NET_HDR_NUM_BUFFERS 10           /* le16 */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1u
#define VIRTIO_NET_HDR_F_DATA_VALID 2u
#define VIRTIO_NET_HDR_GSO_NONE 0u
#define VIRTIO_NET_HDR_GSO_TCPV4 1u
#define VIRTIO_NET_HDR_GSO_UDP 3u
#define VIRTIO_NET_HDR_GSO_TCPV6 4u
#define VIRTIO_NET_HDR_GSO_ECN 0x80u

/* The largest frame the device takes from the TAP: a 64 KiB GSO packet
 * plus its Ethernet and VLAN headers. */
#define VIRTIO_NET_MAX_FRAME (65536 + 14 + 4)

/* Control queue (5.1.6.5): class, command, data, then the ack byte. */
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_RX_PROMISC 0
#define VIRTIO_NET_CTRL_RX_ALLMULTI 1
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET 1
#define VIRTIO_NET_CTRL_VLAN 2
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0

/* Creates a virtio-net device with its virtio-mmio transport at `base`,
 * attached to TAP `tap_name` (created, and removed again on destroy, when
 * `create_tap`). `mac` is the guest's address; NULL picks a random one,
 * which a restore replaces with the saved guest's. On failure nothing is left
 * open or allocated. */
struct virtio_mmio *virtio_net_create(const char *id, uint64_t base, struct irq_line irq,
				      struct guest_ram *ram, const char *tap_name,
				      bool create_tap, const uint8_t mac[6], struct error *err);

/* After the VM moved (migration, snapshot restore): if the driver
 * negotiated GUEST_ANNOUNCE, sets VIRTIO_NET_S_ANNOUNCE and interrupts, so
 * the guest sends gratuitous ARPs / unsolicited neighbour advertisements;
 * its VIRTIO_NET_CTRL_ANNOUNCE_ACK clears the bit. Otherwise nothing.
 * `t` must come from virtio_net_create. Thread-safe. */
void virtio_net_announce(struct virtio_mmio *t);
/* Replication's synchronous mode (net_hold.h): hold the frames the guest
 * sends; a barrier per epoch; release those before a barrier. */
void virtio_net_hold(struct virtio_mmio *t, bool on);
uint64_t virtio_net_hold_barrier(struct virtio_mmio *t);
void virtio_net_hold_release(struct virtio_mmio *t, uint64_t barrier);
/* Frame bytes received and sent (a count of this process's work). */
void virtio_net_io(struct virtio_mmio *t, uint64_t *rx, uint64_t *tx);
/* Sends one RARP broadcast with the guest's MAC out of the TAP, so that
 * bridges learn where the guest now is even if its driver cannot announce. */
int virtio_net_self_announce(struct virtio_mmio *t);

/* "52:54:00:12:34:56": six hex pairs separated by ':'. Refuses malformed
 * text, multicast (lowest bit of the first octet) and all-zero addresses. */
int net_parse_mac(const char *text, uint8_t mac[6], struct error *err);

/* A random unicast, locally administered address. */
void net_random_mac(uint8_t mac[6]);

/* "52:54:00:12:34:56" into buf (at least 18 bytes). */
void net_format_mac(const uint8_t mac[6], char buf[18]);

#endif
