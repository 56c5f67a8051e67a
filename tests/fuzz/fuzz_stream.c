/* fuzz_stream.c: libFuzzer harness for the whole incoming VM state stream
 * (docs/migration-format.md), fed to exactly what `tern vm run --restore`
 * does: mig_reader -> vmstate_read_shape -> a VM built the way the command
 * line would build it for that shape -> vmstate_check_config ->
 * vmstate_load_rest. A refusal is the expected outcome; a crash, a hang,
 * a leak or undefined behaviour is a bug.
 *
 * Input layout: byte 0 is a control byte, the rest is the stream.
 *   control bit 0 clear (even): before the stream is fed, every whole
 *     section's checksum and END's count and digest are recomputed, so
 *     that mutations inside payloads reach the section decoders instead of
 *     dying at the checksum (which would otherwise catch nearly all);
 *   control bit 0 set (odd): the bytes are fed as they are, which keeps
 *     the framing checks (checksums, END) under the fuzzer too;
 *   control bit 1 set: the stream is loaded as a live migration's
 *     destination loads it (`tern vm run --incoming`): deltas, POSTCOPY,
 *     SYNC and DISK sections are allowed, every disk CONFIG marks as copied
 *     is written by the DISK sections, and RAMHASH is checked at the end.
 *     (CHANNELS, which needs more connections, is refused.)
 *
 * The target VM is fresh for every input, as in tern: memory and harts
 * from the stream's CONFIG (as main.c takes them), and as many disks as
 * CONFIG lists virtio-blk devices (1 MiB memfd images, as if the user gave
 * the matching --disk options), so the virtio-mmio and virtio-blk restore
 * paths are reached too. Shapes tern would refuse before building a VM
 * (bad memory size, hart count) end the input there, like tern; shapes
 * above FUZZ_MAX_MEMORY are skipped to keep every input fast.
 *
 * With TERN_FUZZ_WRITE_CORPUS=DIR in the environment the binary instead
 * writes the seed corpus into DIR and exits (tests/fuzz/README.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "cpu/cpu.h"
#include "devices/virtio/virtio.h"
#include "machine/vm.h"
#include "migration/diskcopy.h"
#include "migration/stream.h"
#include "migration/vmstate.h"
#include "state/state.h"
#include "util/log.h"

#define MIB (1ull << 20)
#define FUZZ_MAX_MEMORY (512 * MIB)
#define DISK_SIZE MIB
#define CONTROL_RAW 0x01
#define CONTROL_LIVE 0x02

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Field ids (docs/migration-format.md) the harness and the seed
 * generator look at. */
enum {
	CFG_DEVICES = 6, CFG_DEVICE_BASE = 100, CFG_DEV_ID = 1,
	MACH_GUEST_TIME = 1,
	HART_PRIV = 4, HART_MHARTID = 23,
	DEV_ID = 1,
};

static int stream_fd = -1;
static int disk_fd[VM_MAX_DISKS] = { -1, -1, -1, -1 };
static char disk_path[VM_MAX_DISKS][64];

/* ---- little-endian helpers ------------------------------------------------ */

static uint64_t get_le(const uint8_t *p, unsigned width)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- checksum fix-up --------------------------------------------------------- */

/* Recomputes, in place, what stream.c verifies: each whole section's
 * XXH3-64 over its header and payload, and END's section count and digest
 * (XXH3-64 of the stream header followed by every earlier section's
 * checksum). Stops at the first section that does not fit in the buffer
 * (the reader will call the stream truncated there) and after END. Only
 * END payloads of the right size are rewritten. */
static void fix_up(uint8_t *p, size_t len)
{
	if (len < MIG_HEADER_SIZE)
		return;
	XXH3_state_t *st = XXH3_createState();
	if (!st)
		abort();
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, p, MIG_HEADER_SIZE);
	uint64_t count = 0;
	size_t pos = MIG_HEADER_SIZE;
	while (len - pos >= MIG_SECTION_HEADER_SIZE + 8) {
		uint32_t type = (uint32_t)get_le(p + pos, 4);
		uint64_t slen = get_le(p + pos + 16, 8);
		if (slen > len - pos - MIG_SECTION_HEADER_SIZE - 8)
			break;
		uint8_t *payload = p + pos + MIG_SECTION_HEADER_SIZE;
		if (type == MIG_SEC_END && slen == 16) {
			put_le(payload, count, 8);
			put_le(payload + 8, XXH3_64bits_digest(st), 8);
		}
		uint8_t *sum = payload + slen;
		put_le(sum, XXH3_64bits(p + pos, MIG_SECTION_HEADER_SIZE + slen), 8);
		if (type == MIG_SEC_END)
			break;
		XXH3_64bits_update(st, sum, 8);
		count++;
		pos += MIG_SECTION_HEADER_SIZE + slen + 8;
	}
	XXH3_freeState(st);
}

/* ---- the target VM --------------------------------------------------------------- */

/* How many virtio-blk devices the stream's CONFIG lists: the --disk
 * options a user restoring it would give. Nothing is trusted here: a
 * CONFIG that does not parse gets no disks (and is refused later). */
static unsigned disks_wanted(const struct vm_shape *shape)
{
	struct state_reader r, dev;
	uint32_t ndev;
	if (state_reader_init(&r, shape->config, shape->config_len, "fuzz CONFIG", NULL, 0, NULL) ||
	    state_get_u32(&r, CFG_DEVICES, &ndev, NULL))
		return 0;
	unsigned disks = 0;
	for (unsigned i = 0; i < ndev && i < BUS_MAX_DEVICES; i++) {
		const void *id;
		size_t id_len;
		if (state_get_record(&r, (uint16_t)(CFG_DEVICE_BASE + i), &dev, NULL, 0, NULL) ||
		    state_get_blob(&dev, CFG_DEV_ID, &id, &id_len, NULL))
			continue;
		if (id_len >= 11 && !memcmp(id, "virtio-blk@", 11) && disks < VM_MAX_DISKS)
			disks++;
	}
	return disks;
}

/* The disks start every input as 1 MiB of zeros: a restored queue may
 * have written to them. */
static void reset_disks(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (ftruncate(disk_fd[i], 0) < 0 || ftruncate(disk_fd[i], DISK_SIZE) < 0)
			abort();
}

static int open_disks(void)
{
	for (unsigned i = 0; i < VM_MAX_DISKS; i++) {
		disk_fd[i] = memfd_create("tern-fuzz-disk", MFD_CLOEXEC);
		if (disk_fd[i] < 0 || ftruncate(disk_fd[i], DISK_SIZE) < 0)
			return -1;
		snprintf(disk_path[i], sizeof(disk_path[i]), "/proc/self/fd/%d", disk_fd[i]);
	}
	return 0;
}

static struct vm *build_vm(uint64_t memory, unsigned cpus, unsigned disks)
{
	struct vm_config cfg = {
		.memory = memory,
		.cpus = cpus,
		.console = "none",
		.serial1 = "none",
		.num_disks = disks,
	};
	for (unsigned i = 0; i < disks; i++)
		cfg.disks[i].path = disk_path[i];
	struct vm *vm;
	struct error err = { 0 };
	if (vm_create(&vm, &cfg, &err)) {
		fprintf(stderr, "fuzz_stream: vm_create: %s\n", err.msg);
		abort();
	}
	return vm;
}

/* ---- one input ------------------------------------------------------------------- */

static void feed(const uint8_t *p, size_t len)
{
	if (ftruncate(stream_fd, 0) < 0)
		abort();
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(stream_fd, p + done, len - done, (off_t)done);
		if (n <= 0)
			abort();
		done += (size_t)n;
	}
	if (lseek(stream_fd, 0, SEEK_SET) != 0)
		abort();
}

static int answer_sync_locally(void *ctx, struct error *err)
{
	return 0;
}

static int refuse_channels(void *ctx, const struct mig_section *s, struct error *err)
{
	return error_set(err, EPROTO, "the fuzzer has no further connections");
}

/* Returns 0 when the stream loaded, else the (expected) refusal. */
static int restore(const uint8_t *stream, size_t len, bool live, struct error *err)
{
	feed(stream, len);
	struct mig_reader r;
	if (mig_reader_init(&r, stream_fd, "fuzz stream", err))
		abort();
	struct vm_shape shape;
	int rc = vmstate_read_shape(&r, &shape, err);
	if (rc)
		goto out;
	/* main.c: the saved shape is the VM's, if tern can build it. */
	if (shape.num_harts == 0 || shape.num_harts > VM_MAX_CPUS ||
	    shape.ram_size < VM_MIN_MEMORY || shape.ram_size % GUEST_PAGE_SIZE ||
	    shape.ram_size > FUZZ_MAX_MEMORY) {
		rc = -EINVAL;
		goto out;
	}
	unsigned disks = disks_wanted(&shape);
	reset_disks(disks);
	struct vm *vm = build_vm(shape.ram_size, shape.num_harts, disks);
	struct vmstate_loader l;
	vmstate_loader_init(&l, vm, !live);
	/* As incoming.c: the disks the CONFIG says are copied take DISK
	 * sections (here written into the memfd images). */
	struct disk_targets targets = { 0 };
	for (unsigned i = 0; i < VM_MAX_DISKS; i++) {
		targets.t[i].fd = targets.t[i].replaced_fd = -1;
		targets.t[i].writer.fd = -1;
	}
	if (live) {
		l.live = true;
		l.on_sync = answer_sync_locally;
		l.on_channels = refuse_channels;
		targets.n = disks;
		for (unsigned i = 0; i < disks && i < shape.num_disks; i++) {
			targets.t[i].copy = shape.disks[i].copy;
			/* incoming.c writes a copy through its own descriptor. */
			if (targets.t[i].copy &&
			    disk_image_open_unlocked(&targets.t[i].writer, disk_path[i], false, err))
				abort();
		}
		l.disks = &targets;
	}
	rc = vmstate_check_config(&l, &shape, err);
	if (!rc)
		rc = vmstate_load_rest(&l, &r, err);
	if (!rc && live)
		rc = vmstate_check_ramhash(&l, err);
	vmstate_loader_free(&l);
	for (unsigned i = 0; i < VM_MAX_DISKS; i++)
		disk_image_close(&targets.t[i].writer);
	vm_destroy(vm);
out:
	mig_reader_free(&r);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	uint8_t *stream = malloc(len ? len : 1);
	if (!stream)
		abort();
	memcpy(stream, data + 1, len);
	if (!(data[0] & CONTROL_RAW))
		fix_up(stream, len);
	struct error err = { 0 };
	int rc = restore(stream, len, data[0] & CONTROL_LIVE, &err);
	if (getenv("TERN_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz_stream: %s\n", rc ? err.msg : "loaded");
	free(stream);
	return 0;
}

/* ---- the seed corpus --------------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len;
};

static void mmio(struct vm *vm, uint64_t addr, unsigned size, uint64_t v)
{
	if (!bus_write(&vm->bus, addr, size, v))
		abort();
}

/* A small VM with something in every section: one RAM page of data and
 * one of zeros, harts away from reset (one stopped), the console UART in
 * loopback with bytes received and its interrupt pending at the PLIC,
 * and with a disk, a virtio-blk driver set up with one ready queue. */
static struct vm *seed_vm(unsigned cpus, unsigned disks)
{
	struct vm *vm = build_vm(128 * MIB, cpus, disks);
	uint8_t *ram = vm->ram.host;
	for (unsigned i = 0; i < 64; i++)
		ram[0x1000 + i] = (uint8_t)(0x13 * i + 1);
	memset(ram + 0x3000, 0xff, GUEST_PAGE_SIZE);
	memset(ram + 0x3000, 0, GUEST_PAGE_SIZE);
	for (unsigned i = 0; i < cpus; i++) {
		struct hart *h = &vm->harts[i];
		struct rv_state s;
		cpu_get_state(h->cpu, &s);
		for (unsigned r = 1; r < 32; r++)
			s.x[r] = r * 0x1111 + i;
		s.pc = MEMMAP_RAM_BASE + 0x200000 + 4 * i;
		s.priv = RV_PRIV_S;
		s.fcsr = 0x21;
		s.satp = 8ull << 60 | 0x80400;
		s.mideleg = s.mie = 0x222;
		s.stvec = MEMMAP_RAM_BASE + 0x201000;
		s.stimecmp = 5000000;
		s.minstret = s.mcycle = 777 + i;
		cpu_set_state(h->cpu, &s);
		h->hsm = i ? HSM_STOPPED : HSM_STARTED;
		h->in_wfi = i == 0;
	}
	mmio(vm, MEMMAP_UART0_BASE + 2, 1, 0xc1);
	mmio(vm, MEMMAP_UART0_BASE + 4, 1, 0x1b);
	mmio(vm, MEMMAP_UART0_BASE + 0, 1, 'o');
	mmio(vm, MEMMAP_UART0_BASE + 0, 1, 'k');
	mmio(vm, MEMMAP_UART0_BASE + 1, 1, 0x05);
	mmio(vm, MEMMAP_UART0_BASE + 7, 1, 0x5a);
	mmio(vm, MEMMAP_PLIC_BASE + 4 * IRQ_UART0, 4, 3);
	mmio(vm, MEMMAP_PLIC_BASE + 4 * IRQ_VIRTIO_FIRST, 4, 1);
	mmio(vm, MEMMAP_PLIC_BASE + 0x2000, 4, 1u << IRQ_UART0 | 1u << IRQ_VIRTIO_FIRST);
	for (unsigned d = 0; d < disks; d++) {
		/* virtio 1.2, 3.1.1: reset, ACKNOWLEDGE, DRIVER, features
		 * (VERSION_1 only), FEATURES_OK, queue 0, DRIVER_OK. */
		uint64_t base = MEMMAP_VIRTIO_BASE + d * MEMMAP_VIRTIO_STRIDE;
		uint64_t ring = MEMMAP_RAM_BASE + 0x8000 + d * 0x1000;
		memset(ram + (ring - MEMMAP_RAM_BASE), 0, 0x300);
		mmio(vm, base + 0x070, 4, 0);
		mmio(vm, base + 0x070, 4, 1);
		mmio(vm, base + 0x070, 4, 3);
		mmio(vm, base + 0x024, 4, 1);
		mmio(vm, base + 0x020, 4, 1);
		mmio(vm, base + 0x070, 4, 0xb);
		mmio(vm, base + 0x030, 4, 0);
		mmio(vm, base + 0x038, 4, 8);
		mmio(vm, base + 0x080, 4, (uint32_t)ring);
		mmio(vm, base + 0x084, 4, ring >> 32);
		mmio(vm, base + 0x090, 4, (uint32_t)(ring + 0x100));
		mmio(vm, base + 0x094, 4, (ring + 0x100) >> 32);
		mmio(vm, base + 0x0a0, 4, (uint32_t)(ring + 0x200));
		mmio(vm, base + 0x0a4, 4, (ring + 0x200) >> 32);
		mmio(vm, base + 0x044, 4, 1);
		mmio(vm, base + 0x070, 4, 0xf);
	}
	return vm;
}

/* What was written to a memfd, which is closed. */
static struct buf take_memfd(int fd)
{
	struct buf b;
	b.len = (size_t)lseek(fd, 0, SEEK_END);
	b.p = malloc(b.len);
	if (!b.p || pread(fd, b.p, b.len, 0) != (ssize_t)b.len)
		abort();
	close(fd);
	return b;
}

/* The stream of a seed VM, with guest time fixed so that the files do not
 * change each time they are generated. */
static struct buf save_seed(unsigned cpus, unsigned disks)
{
	struct vm *vm = seed_vm(cpus, disks);
	int fd = memfd_create("tern-fuzz-seed", MFD_CLOEXEC);
	struct mig_writer w;
	struct error err = { 0 };
	struct ram_stats stats = { 0 };
	/* As vm_pause does: devices stop before their state is taken. */
	for (unsigned i = 0; i < vm->num_virtio; i++)
		virtio_mmio_pause(vm->virtio[i]);
	if (fd < 0 || mig_writer_init(&w, fd, false, &err) ||
	    vmstate_save_all(vm, &w, &stats, &err)) {
		fprintf(stderr, "fuzz_stream: saving a seed: %s\n", err.msg);
		exit(1);
	}
	mig_writer_free(&w);
	vm_destroy(vm);
	return take_memfd(fd);
}

/* Offset of section `type`/`instance`'s header in a stream, or SIZE_MAX. */
static size_t find_section(const struct buf *b, uint32_t type, uint32_t instance)
{
	for (size_t pos = MIG_HEADER_SIZE; pos + MIG_SECTION_HEADER_SIZE <= b->len;) {
		uint32_t t = (uint32_t)get_le(b->p + pos, 4);
		if (t == type && get_le(b->p + pos + 4, 4) == instance)
			return pos;
		pos += MIG_SECTION_HEADER_SIZE + get_le(b->p + pos + 16, 8) + 8;
	}
	return SIZE_MAX;
}

static size_t section_size(const struct buf *b, size_t pos)
{
	return MIG_SECTION_HEADER_SIZE + get_le(b->p + pos + 16, 8) + 8;
}

/* Overwrites a top-level field's value in place (same width). */
static void patch_field(struct buf *b, uint32_t type, uint32_t instance, uint16_t id,
			uint64_t v, unsigned width)
{
	size_t pos = find_section(b, type, instance);
	if (pos == SIZE_MAX)
		abort();
	uint8_t *rec = b->p + pos + MIG_SECTION_HEADER_SIZE;
	size_t len = get_le(b->p + pos + 16, 8);
	for (size_t f = 0; f + STATE_FIELD_HEADER <= len;) {
		uint32_t flen = (uint32_t)get_le(rec + f + 4, 4);
		if (get_le(rec + f, 2) == id) {
			if (flen < width)
				abort();
			put_le(rec + f + STATE_FIELD_HEADER, v, width);
			return;
		}
		f += STATE_FIELD_HEADER + flen;
	}
	abort();
}

/* Copies the section at `from` to just before the one at `to`. */
static void splice_copy(struct buf *b, size_t from, size_t to)
{
	size_t n = section_size(b, from);
	uint8_t *p = malloc(b->len + n);
	if (!p)
		abort();
	memcpy(p, b->p, to);
	memcpy(p + to, b->p + from, n);
	memcpy(p + to + n, b->p + to, b->len - to);
	free(b->p);
	b->p = p;
	b->len += n;
}

static void cut_section(struct buf *b, size_t at)
{
	size_t n = section_size(b, at);
	memmove(b->p + at, b->p + at + n, b->len - at - n);
	b->len -= n;
}

static struct buf copy_of(const struct buf *b)
{
	struct buf c = { malloc(b->len), b->len };
	if (!c.p)
		abort();
	memcpy(c.p, b->p, b->len);
	return c;
}

static void write_seed(const char *dir, const char *name, uint8_t control, struct buf *b)
{
	patch_field(b, MIG_SEC_MACHINE, 0, MACH_GUEST_TIME, 1000000, 8);
	fix_up(b->p, b->len);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(&control, 1, 1, f) != 1 || fwrite(b->p, 1, b->len, f) != b->len ||
	    fclose(f)) {
		fprintf(stderr, "fuzz_stream: cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(b->p);
	b->p = NULL;
}

/* A live migration's stream: CONFIG with the disk marked copied, RAM
 * (a page again as a delta against its first copy), DISK sections (data
 * and zeroes), SYNC, RAMHASH, the state, END. */
static struct buf save_live_seed(void)
{
	struct vm *vm = seed_vm(1, 1);
	for (unsigned i = 0; i < vm->num_virtio; i++)
		virtio_mmio_pause(vm->virtio[i]);
	int fd = memfd_create("tern-fuzz-seed", MFD_CLOEXEC);
	struct mig_writer w;
	struct error err = { 0 };
	struct ram_stats stats = { 0 };
	uint64_t copy_bytes[VM_MAX_DISKS] = { 8192 };
	uint8_t disk[3 * DISK_REC_HEADER + 8192];
	size_t n = 0;
	put_le(disk, 4096, 8);
	put_le(disk + 8, 8192, 4);
	put_le(disk + 12, 0, 4);
	for (unsigned i = 0; i < 8192; i++)
		disk[DISK_REC_HEADER + i] = (uint8_t)(i * 7 + 3);
	n = DISK_REC_HEADER + 8192;
	put_le(disk + n, 65536, 8);
	put_le(disk + n + 8, 4096, 4);
	put_le(disk + n + 12, DISK_REC_ZERO, 4);
	n += DISK_REC_HEADER;
	if (fd < 0 || mig_writer_init(&w, fd, false, &err) || mig_write_header(&w) ||
	    vmstate_save_config(vm, &w, copy_bytes, &err) ||
	    vmstate_save_ram(vm, &w, NULL, &stats, &err) ||
	    mig_write_section(&w, MIG_SEC_DISK, 0, DISK_SECTION_VERSION, disk, n) ||
	    mig_write_section(&w, MIG_SEC_SYNC, 0, 1, NULL, 0) ||
	    vmstate_save_ramhash(vm, &w, &err) || vmstate_save_machine(vm, &w, &err) ||
	    mig_write_end(&w)) {
		fprintf(stderr, "fuzz_stream: saving the live seed: %s\n", err.msg);
		exit(1);
	}
	mig_writer_free(&w);
	vm_destroy(vm);
	return take_memfd(fd);
}

static void write_corpus(const char *dir)
{
	struct buf one = save_seed(1, 0), two = save_seed(2, 0), disk = save_seed(1, 1);
	struct buf m;

	/* Valid streams, in both modes. */
	m = copy_of(&one);
	write_seed(dir, "valid-1hart", 0, &m);
	m = copy_of(&one);
	write_seed(dir, "valid-1hart-raw", CONTROL_RAW, &m);
	m = copy_of(&two);
	write_seed(dir, "valid-2harts", 0, &m);
	m = copy_of(&disk);
	write_seed(dir, "valid-1hart-disk", 0, &m);
	m = save_live_seed();
	write_seed(dir, "valid-live-disk", CONTROL_LIVE, &m);

	/* Near-valid: one thing wrong each, checksums right. */
	m = copy_of(&one);
	patch_field(&m, MIG_SEC_HART, 0, HART_PRIV, 2, 8);
	write_seed(dir, "bad-hart-priv", 0, &m);
	m = copy_of(&two);
	patch_field(&m, MIG_SEC_HART, 1, HART_MHARTID, 0, 8);
	write_seed(dir, "bad-hart-mhartid", 0, &m);
	m = copy_of(&one);
	patch_field(&m, MIG_SEC_CONFIG, 0, CFG_DEVICES, 4, 4);
	write_seed(dir, "bad-config-devices", 0, &m);
	m = copy_of(&one);
	{
		/* The first RAM record's flags: DATA|ZERO. */
		size_t at = find_section(&m, MIG_SEC_RAM, 0);
		m.p[at + MIG_SECTION_HEADER_SIZE] |= 3;
	}
	write_seed(dir, "bad-ram-flags", 0, &m);
	m = copy_of(&one);
	{
		size_t at = find_section(&m, MIG_SEC_DEVICE, 1);
		patch_field(&m, MIG_SEC_DEVICE, 1, DEV_ID, 'X', 1);
		splice_copy(&m, at, at);
	}
	write_seed(dir, "bad-device-dup", 0, &m);
	m = copy_of(&two);
	cut_section(&m, find_section(&m, MIG_SEC_HART, 1));
	write_seed(dir, "missing-hart", 0, &m);
	m = copy_of(&disk);
	cut_section(&m, find_section(&m, MIG_SEC_END, 0));
	write_seed(dir, "missing-end", 0, &m);
	m = copy_of(&one);
	{
		/* A payload byte changed without fixing the checksum. */
		size_t at = find_section(&m, MIG_SEC_DEVICE, 2);
		fix_up(m.p, m.len);
		patch_field(&m, MIG_SEC_MACHINE, 0, MACH_GUEST_TIME, 1000000, 8);
		fix_up(m.p, m.len);
		m.p[at + MIG_SECTION_HEADER_SIZE + 9] ^= 0x40;
		char path[4096];
		snprintf(path, sizeof(path), "%s/bad-checksum-raw", dir);
		FILE *f = fopen(path, "wb");
		uint8_t control = CONTROL_RAW;
		if (!f || fwrite(&control, 1, 1, f) != 1 || fwrite(m.p, 1, m.len, f) != m.len ||
		    fclose(f))
			exit(1);
		free(m.p);
	}
	free(one.p);
	free(two.p);
	free(disk.p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(getenv("TERN_FUZZ_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
	stream_fd = memfd_create("tern-fuzz-stream", MFD_CLOEXEC);
	if (stream_fd < 0 || open_disks() < 0) {
		perror("fuzz_stream: memfd_create");
		abort();
	}
	const char *dir = getenv("TERN_FUZZ_WRITE_CORPUS");
	if (dir) {
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			perror(dir);
			exit(1);
		}
		write_corpus(dir);
		exit(0);
	}
	return 0;
}
