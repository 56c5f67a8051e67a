/* fdt.h: the device tree tern hands the guest kernel in a1, built with libfdt.
 * It describes exactly the machine that exists: memory, harts (with the ISA
 * the CPU implements), the PLIC, UARTs, virtio-mmio devices and /chosen. */
#ifndef TERN_MACHINE_FDT_H
#define TERN_MACHINE_FDT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define FDT_MAX_UARTS 2
#define FDT_MAX_VIRTIO 16

struct fdt_mmio_dev {
	uint64_t base, size;
	unsigned irq;           /* PLIC source */
};

struct fdt_machine {
	unsigned num_harts;
	const char *isa;              /* e.g. RV64_ISA_STRING */
	const char *mmu_type;         /* "riscv,sv39" */
	uint64_t timebase_hz;
	uint64_t ram_base, ram_size;
	uint64_t plic_base, plic_size;
	unsigned plic_num_sources;    /* riscv,ndev */
	struct fdt_mmio_dev uarts[FDT_MAX_UARTS];
	unsigned num_uarts;           /* uarts[0] is the console (stdout-path) */
	struct fdt_mmio_dev virtio[FDT_MAX_VIRTIO];
	unsigned num_virtio;
	const char *bootargs;         /* may be NULL */
	uint64_t initrd_start, initrd_end;   /* both 0: no initrd */
	uint8_t rng_seed[64];         /* /chosen/rng-seed */
};

/* Writes the flattened tree into buf (at most size bytes). Returns its
 * total size, or a negative errno with err filled. */
int fdt_build(const struct fdt_machine *m, void *buf, size_t size, struct error *err);

#endif
