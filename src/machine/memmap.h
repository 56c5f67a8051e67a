/* memmap.h: tern's "virt" machine layout, modelled on QEMU's riscv virt
 * board so that guests and tools see familiar addresses. */
#ifndef TERN_MACHINE_MEMMAP_H
#define TERN_MACHINE_MEMMAP_H

#define MEMMAP_PLIC_BASE      0x0c000000ull
#define MEMMAP_UART0_BASE     0x10000000ull
#define MEMMAP_UART1_BASE     0x10000100ull
#define MEMMAP_VIRTIO_BASE    0x10001000ull
#define MEMMAP_VIRTIO_STRIDE  0x1000ull
#define MEMMAP_VIRTIO_COUNT   8
#define MEMMAP_RAM_BASE       0x80000000ull

#define IRQ_VIRTIO_FIRST      1           /* virtio-mmio n uses source 1 + n */
#define IRQ_UART0             10
#define IRQ_UART1             11
#define PLIC_SOURCES          32          /* sources 1..31 */

#define TIMEBASE_HZ           10000000ull /* the time CSR ticks at 10 MHz */

#define VM_MAX_CPUS           8
#define VM_MIN_MEMORY         (128ull << 20)  /* Debian's kernel panics at 64 MiB */
#define VM_MAX_MEMORY         (256ull << 30)

#endif
