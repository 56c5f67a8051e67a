/* tap.h: a Linux TAP interface as a packet backend for virtio-net.
 *
 * The TAP is opened with IFF_VNET_HDR and a 12-byte vnet header, which is
 * byte for byte the virtio 1.x struct virtio_net_hdr with num_buffers
 * (virtio 1.2, 5.1.6): a packet read from or written to the fd is that
 * header followed by the Ethernet frame, so virtio-net passes packets
 * through without translating headers. The fd is non-blocking.
 *
 * This file owns the fd and the interface's setup (flags, header size,
 * offloads, link up); it never touches addresses, routes or other
 * interfaces. */
#ifndef TERN_BACKENDS_TAP_H
#define TERN_BACKENDS_TAP_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/error.h"

/* The vnet header size tern sets: virtio_net_hdr + num_buffers. */
#define TAP_VNET_HDR_LEN 12

struct tap {
	int fd;                 /* -1 when closed */
	char name[IFNAMSIZ];
	bool created;           /* tern created it; the kernel removes it on close */
};

/* Opens TAP interface `name`. With `create` the interface must not exist:
 * it is created, owned exclusively (IFF_TUN_EXCL), brought up, and removed
 * by the kernel when the fd closes. Without `create` it must already be a
 * TAP that no other process holds; its link state is left as configured.
 * On failure t->fd is -1 and err says what to do about it. */
int tap_open(struct tap *t, const char *name, bool create, struct error *err);

/* TUNSETOFFLOAD: which offloads (TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6,
 * TUN_F_TSO_ECN, TUN_F_UFO) the reader of the fd accepts, i.e. what the
 * kernel may hand us: partial checksums and GSO packets. */
int tap_set_offload(struct tap *t, unsigned tun_f_flags, struct error *err);

/* One packet (vnet header + frame) per call. Return the byte count,
 * -EAGAIN when nothing can be read / written right now, or another
 * negative errno. EINTR is retried. */
ssize_t tap_readv(struct tap *t, const struct iovec *iov, int iovcnt);
ssize_t tap_writev(struct tap *t, const struct iovec *iov, int iovcnt);

/* Idempotent. */
void tap_close(struct tap *t);

#endif
