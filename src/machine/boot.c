/* boot.c: what firmware does before Linux runs: load the kernel Image and
 * the initrd into guest RAM, write the device tree, set the machine-level
 * CSRs of every hart, and point hart 0 at the kernel with a0 = hart id and
 * a1 = the device tree (Linux Documentation/arch/riscv/boot.rst and
 * boot-image-header.rst). The other harts wait, stopped, for SBI HSM. */
#include "machine/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "machine/fdt.h"
#include "util/log.h"

/* The RISC-V Linux Image header, little-endian (boot-image-header.rst). */
struct image_header {
	uint32_t code0, code1;
	uint64_t text_offset;
	uint64_t image_size;
	uint64_t flags;
	uint32_t version;
	uint32_t res1;
	uint64_t res2;
	uint64_t magic;        /* "RISCV\0\0\0", deprecated */
	uint32_t magic2;       /* "RSC\x05" */
	uint32_t res3;
};

#define IMAGE_MAGIC2 0x05435352u
#define FDT_MAX_SIZE (64 * 1024)

/* Reads a whole file into guest RAM at gpa. */
static int load_file(struct vm *vm, const char *path, const char *what, uint64_t gpa,
		     uint64_t limit, uint64_t *size_out, struct error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, errno, "cannot open the %s %s", what, path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return error_errno(err, e, "cannot stat the %s %s", what, path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return error_set(err, EINVAL, "the %s %s is not a regular file", what, path);
	}
	if (st.st_size == 0) {
		close(fd);
		return error_set(err, EINVAL, "the %s %s is empty", what, path);
	}
	if ((uint64_t)st.st_size > limit) {
		close(fd);
		return error_set(err, EFBIG,
				 "the %s %s (%lld bytes) does not fit in guest memory (%llu bytes available): "
				 "give the VM more --memory", what, path, (long long)st.st_size,
				 (unsigned long long)limit);
	}
	uint8_t *dst = guest_ram_ptr(&vm->ram, gpa, (uint64_t)st.st_size);
	if (!dst) {
		close(fd);
		return error_set(err, EFBIG, "the %s %s does not fit in guest memory", what, path);
	}
	uint64_t done = 0;
	while (done < (uint64_t)st.st_size) {
		ssize_t n = read(fd, dst + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			return error_errno(err, e, "cannot read the %s %s", what, path);
		}
		done += (uint64_t)n;
	}
	close(fd);
	guest_ram_mark_dirty(&vm->ram, gpa, done);
	*size_out = done;
	return 0;
}

static int read_kernel_header(const char *path, struct image_header *hdr, struct error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, errno, "cannot open the kernel %s", path);
	ssize_t n = pread(fd, hdr, sizeof(*hdr), 0);
	int e = errno;
	close(fd);
	if (n < 0)
		return error_errno(err, e, "cannot read the kernel %s", path);
	if ((size_t)n < sizeof(*hdr) || hdr->magic2 != IMAGE_MAGIC2)
		return error_set(err, EINVAL,
				 "%s is not a RISC-V Linux kernel Image (no \"RSC\\x05\" magic at offset 56); "
				 "pass the uncompressed Image, e.g. Debian's /boot/vmlinux-*-riscv64", path);
	if (hdr->text_offset % 4096 || hdr->text_offset > (1ull << 30))
		return error_set(err, EINVAL, "the kernel %s has an implausible load offset 0x%llx",
				 path, (unsigned long long)hdr->text_offset);
	return 0;
}

/* Machine-level state a firmware leaves behind for an S-mode kernel. */
static void setup_firmware_csrs(struct hart *h)
{
	struct rv_state s;
	cpu_get_state(h->cpu, &s);
	/* Everything but ecalls from S and M goes straight to the kernel. */
	s.medeleg = 0xb1ff;
	s.mideleg = RV_MIP_SSIP | RV_MIP_STIP | RV_MIP_SEIP;
	s.mcounteren = 7;                 /* cycle, time, instret */
	/* User mode may read them too (rdtime in the vDSO), as OpenSBI sets up. */
	s.scounteren = 7;
	s.menvcfg = 1ull << 63;           /* STCE: stimecmp for the kernel */
	s.priv = RV_PRIV_S;
	s.satp = 0;
	cpu_set_state(h->cpu, &s);
}

int vm_load_boot_images(struct vm *vm, struct error *err)
{
	const struct vm_config *cfg = &vm->config;
	uint64_t ram_base = vm->ram.base, ram_size = vm->ram.size;
	struct image_header hdr;
	int rc = read_kernel_header(cfg->kernel, &hdr, err);
	if (rc)
		return rc;

	/* Layout: kernel at base + text_offset, initrd well above the kernel's
	 * image size (bss included), device tree in the last 64 KiB. */
	uint64_t kernel_addr = ram_base + hdr.text_offset;
	uint64_t kernel_size;
	uint64_t fdt_addr = ram_base + ram_size - FDT_MAX_SIZE;
	rc = load_file(vm, cfg->kernel, "kernel", kernel_addr, fdt_addr - kernel_addr, &kernel_size, err);
	if (rc)
		return rc;
	uint64_t kernel_end = kernel_addr + (hdr.image_size > kernel_size ? hdr.image_size : kernel_size);
	if (kernel_end + (16ull << 20) > fdt_addr)
		return error_set(err, ENOMEM,
				 "--memory %llu MiB is too small for this kernel (it occupies %llu MiB); "
				 "give at least %llu MiB", (unsigned long long)(ram_size >> 20),
				 (unsigned long long)((kernel_end - ram_base) >> 20),
				 (unsigned long long)(VM_MIN_MEMORY >> 20));

	vm->initrd_start = vm->initrd_end = 0;
	if (cfg->initrd) {
		uint64_t half = ram_size / 2 < (512ull << 20) ? ram_size / 2 : 512ull << 20;
		uint64_t start = (ram_base + half + 0xfffff) & ~0xfffffull;
		if (start < kernel_end)
			start = (kernel_end + 0xfffff) & ~0xfffffull;
		uint64_t size;
		rc = load_file(vm, cfg->initrd, "initrd", start, start < fdt_addr ? fdt_addr - start : 0,
			       &size, err);
		if (rc)
			return rc;
		vm->initrd_start = start;
		vm->initrd_end = start + size;
	}

	struct fdt_machine m = {
		.num_harts = vm->num_harts,
		.isa = RV64_ISA_STRING,
		.mmu_type = "riscv,sv39",
		.timebase_hz = TIMEBASE_HZ,
		.ram_base = ram_base,
		.ram_size = ram_size,
		.plic_base = MEMMAP_PLIC_BASE,
		.plic_size = 0x4000000,
		.plic_num_sources = PLIC_SOURCES,
		.uarts = { { MEMMAP_UART0_BASE, 0x100, IRQ_UART0 }, { MEMMAP_UART1_BASE, 0x100, IRQ_UART1 } },
		.num_uarts = 2,
		.num_virtio = vm->num_virtio,
		.bootargs = cfg->cmdline,
		.initrd_start = vm->initrd_start,
		.initrd_end = vm->initrd_end,
	};
	for (unsigned i = 0; i < vm->num_virtio; i++) {
		m.virtio[i].base = MEMMAP_VIRTIO_BASE + i * MEMMAP_VIRTIO_STRIDE;
		m.virtio[i].size = MEMMAP_VIRTIO_STRIDE;
		m.virtio[i].irq = IRQ_VIRTIO_FIRST + i;
	}
	if (getrandom(m.rng_seed, sizeof(m.rng_seed), 0) != (ssize_t)sizeof(m.rng_seed))
		log_warn("no random seed for the guest: %s", strerror(errno));
	void *fdt = guest_ram_ptr(&vm->ram, fdt_addr, FDT_MAX_SIZE);
	rc = fdt_build(&m, fdt, FDT_MAX_SIZE, err);
	if (rc < 0)
		return error_wrap(err, "building the device tree");
	guest_ram_mark_dirty(&vm->ram, fdt_addr, FDT_MAX_SIZE);

	for (unsigned i = 0; i < vm->num_harts; i++) {
		struct hart *h = &vm->harts[i];
		setup_firmware_csrs(h);
		h->hsm = i == 0 ? HSM_STARTED : HSM_STOPPED;
	}
	struct cpu *boot = vm->harts[0].cpu;
	cpu_set_pc(boot, kernel_addr);
	cpu_set_reg(boot, 10, 0);
	cpu_set_reg(boot, 11, fdt_addr);
	vm->kernel_entry = kernel_addr;
	vm->fdt_addr = fdt_addr;
	return 0;
}
