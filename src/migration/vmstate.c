/* vmstate.c: producing and applying the sections of the VM state stream
 * (docs/migration-format.md). Everything read is checked before it is
 * used; a hart or device record is applied only after its section's
 * checksum and its own fields were verified. */
#include "migration/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "cpu/cpu.h"
#include "machine/vm.h"
#include "backends/disk_image.h"
#include "migration/diskcopy.h"
#include "migration/pagecodec.h"
#include "migration/ramcodec.h"
#include "state/state.h"
#include "util/le.h"
#include "util/log.h"

/* 2: disks (size, read-only, copied). Version 1 streams are still read. */
#define CONFIG_VERSION 2
#define CONFIG_VERSION_MIN 1
#define RAM_VERSION 1
#define MACHINE_VERSION 1
#define POSTCOPY_VERSION 1
#define DISCARD_VERSION 1
#define RAMHASH_VERSION 1
#define HART_VERSION 1
#define DEVICE_VERSION 1

#define RAM_SECTION_PAGES 256
#define MAX_GUEST_TIME ((uint64_t)(INT64_MAX / 2) / (1000000000ull / TIMEBASE_HZ))
#define PAGE_ZERO VMSTATE_PAGE_ZERO
#define PAGE_DATA VMSTATE_PAGE_DATA
#define PAGE_DELTA VMSTATE_PAGE_DELTA

enum {
	CFG_VERSION = 0, CFG_RAM_BASE = 1, CFG_RAM_SIZE = 2, CFG_HARTS = 3, CFG_ISA = 4,
	CFG_TIMEBASE = 5, CFG_DEVICES = 6, CFG_DISKS = 7, CFG_DEVICE_BASE = 100,
	CFG_DISK_BASE = 200,
	CFG_DEV_ID = 1, CFG_DEV_TYPE = 2,
	CFG_DISK_SIZE = 1, CFG_DISK_READ_ONLY = 2, CFG_DISK_COPY = 3, CFG_DISK_DATA = 4,
};

_Static_assert(VMSTATE_MAX_DISKS == VM_MAX_DISKS, "vm_shape holds every disk");

enum {
	MACH_VERSION = 0, MACH_GUEST_TIME = 1,
};

enum {
	DEV_VERSION = 0, DEV_ID = 1, DEV_STATE = 2,
};

/* HART field ids: docs/migration-format.md, "HART". */
enum {
	HART_VERSION_F = 0, HART_X = 1, HART_F = 2, HART_PC = 3, HART_PRIV = 4, HART_FCSR = 5,
	HART_CSR_M = 10,     /* 10..23: the machine-level CSRs, in m_csrs order */
	HART_CSR_S = 30,     /* 30..38: the supervisor-level CSRs, in s_csrs order */
	HART_MCYCLE = 40, HART_MINSTRET = 41,
	HART_RES_VALID = 45, HART_RES_ADDR = 46, HART_RES_VALUE = 47,
	HART_HSM = 50, HART_START_ADDR = 51, HART_START_ARG = 52, HART_IN_WFI = 53,
};

#define M_CSR_COUNT 14
#define S_CSR_COUNT 9

static uint64_t *m_csr(struct rv_state *s, unsigned i)
{
	uint64_t *const table[M_CSR_COUNT] = {
		&s->mstatus, &s->misa, &s->medeleg, &s->mideleg, &s->mie, &s->mip, &s->mtvec,
		&s->mepc, &s->mcause, &s->mtval, &s->mscratch, &s->mcounteren, &s->menvcfg,
		&s->mhartid,
	};
	return table[i];
}

static uint64_t *s_csr(struct rv_state *s, unsigned i)
{
	uint64_t *const table[S_CSR_COUNT] = {
		&s->stvec, &s->sepc, &s->scause, &s->stval, &s->sscratch, &s->satp,
		&s->scounteren, &s->senvcfg, &s->stimecmp,
	};
	return table[i];
}

static int write_record(struct mig_writer *w, struct state_writer *sw, uint32_t type,
			uint32_t instance, uint32_t version, struct error *err)
{
	int rc = state_writer_status(sw, err);
	if (!rc) {
		rc = mig_write_section(w, type, instance, version, sw->buf, sw->len);
		if (rc)
			rc = mig_writer_status(w, err);
	}
	state_writer_free(sw);
	return rc;
}

/* ---- saving ------------------------------------------------------------ */

int vmstate_save_config(struct vm *vm, struct mig_writer *w, const uint64_t *copy_data_bytes,
			struct error *err)
{
	struct state_writer sw;
	state_writer_init(&sw);
	state_put_u32(&sw, CFG_VERSION, CONFIG_VERSION);
	state_put_u64(&sw, CFG_RAM_BASE, vm->ram.base);
	state_put_u64(&sw, CFG_RAM_SIZE, vm->ram.size);
	state_put_u32(&sw, CFG_HARTS, vm->num_harts);
	state_put_bytes(&sw, CFG_ISA, RV64_ISA_STRING, strlen(RV64_ISA_STRING));
	state_put_u64(&sw, CFG_TIMEBASE, TIMEBASE_HZ);
	state_put_u32(&sw, CFG_DEVICES, vm->bus.count);
	for (unsigned i = 0; i < vm->bus.count; i++) {
		const struct device *dev = vm->bus.devices[i];
		size_t tok = state_begin(&sw, (uint16_t)(CFG_DEVICE_BASE + i));
		state_put_bytes(&sw, CFG_DEV_ID, dev->id, strlen(dev->id));
		state_put_bytes(&sw, CFG_DEV_TYPE, dev->ops->type, strlen(dev->ops->type));
		state_end(&sw, tok);
	}
	unsigned disks = 0;
	while (vm_disk_image(vm, disks))
		disks++;
	state_put_u32(&sw, CFG_DISKS, disks);
	for (unsigned i = 0; i < disks; i++) {
		const struct disk_image *d = vm_disk_image(vm, i);
		size_t tok = state_begin(&sw, (uint16_t)(CFG_DISK_BASE + i));
		state_put_u64(&sw, CFG_DISK_SIZE, d->size);
		state_put_bool(&sw, CFG_DISK_READ_ONLY, d->read_only);
		state_put_bool(&sw, CFG_DISK_COPY, copy_data_bytes != NULL);
		state_put_u64(&sw, CFG_DISK_DATA, copy_data_bytes ? copy_data_bytes[i] : 0);
		state_end(&sw, tok);
	}
	return write_record(w, &sw, MIG_SEC_CONFIG, 0, CONFIG_VERSION, err);
}

static bool page_is_zero(const uint8_t *page)
{
	const uint64_t *p = (const uint64_t *)page;
	uint64_t acc = 0;
	for (unsigned i = 0; i < GUEST_PAGE_SIZE / 8; i++)
		acc |= p[i];
	return acc == 0;
}

/* One page record at out (room for 8 + 4 KiB); returns its length. */
static size_t put_page(const struct guest_ram *ram, uint64_t pfn, uint8_t *out,
		       struct ram_stats *stats)
{
	const uint8_t *page = ram->host + (pfn << GUEST_PAGE_SHIFT);
	uint64_t gpa = ram->base + (pfn << GUEST_PAGE_SHIFT);
	if (page_is_zero(page)) {
		put_le64(out, gpa | PAGE_ZERO);
		stats->pages_zero++;
		return 8;
	}
	put_le64(out, gpa | PAGE_DATA);
	memcpy(out + 8, page, GUEST_PAGE_SIZE);
	stats->pages_data++;
	return 8 + GUEST_PAGE_SIZE;
}

int vmstate_save_pages(struct vm *vm, struct mig_writer *w, const uint64_t *pfns, unsigned n,
		       struct ram_stats *stats, struct error *err)
{
	if (n > RAM_SECTION_PAGES)
		return error_set(err, EINVAL, "%u pages do not fit one RAM section", n);
	uint8_t *buf = malloc((size_t)n * (8 + GUEST_PAGE_SIZE));
	if (!buf)
		return error_set(err, ENOMEM, "no memory for a RAM section");
	size_t len = 0;
	for (unsigned i = 0; i < n; i++)
		len += put_page(&vm->ram, pfns[i], buf + len, stats);
	int rc = mig_write_section(w, MIG_SEC_RAM, 0, RAM_VERSION, buf, len);
	free(buf);
	return rc ? mig_writer_status(w, err) : 0;
}

int vmstate_save_ram(struct vm *vm, struct mig_writer *w, const uint64_t *bitmap,
		     struct ram_stats *stats, struct error *err)
{
	return vmstate_save_ram_coded(vm, w, bitmap, NULL, stats, err);
}

int vmstate_save_ram_coded(struct vm *vm, struct mig_writer *w, const uint64_t *bitmap,
			   struct ram_codec *codec, struct ram_stats *stats, struct error *err)
{
	struct guest_ram *ram = &vm->ram;
	uint64_t pages = ram->size >> GUEST_PAGE_SHIFT;
	unsigned char *resident = NULL;
	if (!bitmap) {
		/* Which pages the guest ever populated, from the host's page
		 * tables: the others are not read, so they stay unallocated. */
		resident = malloc(pages);
		if (!resident)
			return error_set(err, ENOMEM, "no memory for the RAM residency map");
		if (mincore(ram->host, ram->size, resident) < 0) {
			int e = errno;
			free(resident);
			return error_errno(err, e, "mincore on guest RAM");
		}
	}
	/* A codec keeps its section buffer from pass to pass: a fresh one
	 * would be faulted in page by page inside the downtime. */
	size_t cap = RAM_SECTION_PAGES * (8 + GUEST_PAGE_SIZE), len = 0;
	uint8_t *buf = codec ? ram_codec_section_buffer(codec, cap) : malloc(cap);
	if (!buf) {
		free(resident);
		return error_set(err, ENOMEM, "no memory for a RAM section");
	}
	unsigned in_section = 0;
	uint64_t owned = 0, wanted = 0;
	int rc = 0;
	/* A word of the map at a time: the last passes of a big guest find
	 * a few hundred pages in hundreds of thousands, inside the downtime. */
	for (uint64_t pfn0 = 0; pfn0 < pages && !rc; pfn0 += 64) {
		/* Channels own 256-page chunks: a word is all one channel's. */
		if (codec && !ram_codec_owns(codec, pfn0))
			continue;    /* another channel's */
		unsigned n = pages - pfn0 < 64 ? (unsigned)(pages - pfn0) : 64;
		uint64_t bits = 0;
		if (bitmap) {
			bits = bitmap[pfn0 / 64];
		} else {
			for (unsigned i = 0; i < n; i++)
				bits |= (uint64_t)(resident[pfn0 + i] & 1) << i;
		}
		if (n < 64)
			bits &= (1ull << n) - 1;
		owned += n;
		for (; bits && !rc; bits &= bits - 1) {
			uint64_t pfn = pfn0 + (uint64_t)__builtin_ctzll(bits);
			wanted++;
			len += codec ? ram_codec_put_page(codec, ram, pfn, buf + len, stats)
				     : put_page(ram, pfn, buf + len, stats);
			if (++in_section == RAM_SECTION_PAGES) {
				rc = codec ? ram_codec_write_section(codec, w, RAM_VERSION, buf, len)
					   : mig_write_section(w, MIG_SEC_RAM, 0, RAM_VERSION, buf,
							       len);
				len = 0;
				in_section = 0;
			}
		}
	}
	stats->pages_skipped += owned - wanted;
	if (!rc && len)
		rc = codec ? ram_codec_write_section(codec, w, RAM_VERSION, buf, len)
			   : mig_write_section(w, MIG_SEC_RAM, 0, RAM_VERSION, buf, len);
	if (!codec)
		free(buf);
	free(resident);
	return rc ? mig_writer_status(w, err) : 0;
}

static int save_hart(struct vm *vm, struct hart *h, struct mig_writer *w, struct error *err)
{
	struct rv_state s;
	cpu_get_state(h->cpu, &s);
	struct state_writer sw;
	state_writer_init(&sw);
	state_put_u32(&sw, HART_VERSION_F, HART_VERSION);
	state_put_bytes(&sw, HART_X, s.x, sizeof(s.x));
	state_put_bytes(&sw, HART_F, s.f, sizeof(s.f));
	state_put_u64(&sw, HART_PC, s.pc);
	state_put_u64(&sw, HART_PRIV, s.priv);
	state_put_u64(&sw, HART_FCSR, s.fcsr);
	for (unsigned i = 0; i < M_CSR_COUNT; i++)
		state_put_u64(&sw, (uint16_t)(HART_CSR_M + i), *m_csr(&s, i));
	for (unsigned i = 0; i < S_CSR_COUNT; i++)
		state_put_u64(&sw, (uint16_t)(HART_CSR_S + i), *s_csr(&s, i));
	state_put_u64(&sw, HART_MCYCLE, s.mcycle);
	state_put_u64(&sw, HART_MINSTRET, s.minstret);
	state_put_u64(&sw, HART_RES_VALID, s.reservation_valid);
	state_put_u64(&sw, HART_RES_ADDR, s.reservation_addr);
	state_put_u64(&sw, HART_RES_VALUE, s.reservation_value);
	pthread_mutex_lock(&vm->lock);
	state_put_u32(&sw, HART_HSM, h->hsm);
	state_put_u64(&sw, HART_START_ADDR, h->start_addr);
	state_put_u64(&sw, HART_START_ARG, h->start_arg);
	state_put_bool(&sw, HART_IN_WFI, h->in_wfi);
	pthread_mutex_unlock(&vm->lock);
	return write_record(w, &sw, MIG_SEC_HART, h->id, HART_VERSION, err);
}

static int save_device(struct device *dev, unsigned index, struct mig_writer *w,
		       struct error *err)
{
	if (!dev->ops->save)
		return error_set(err, ENOTSUP, "device %s cannot save its state", dev->id);
	struct state_writer sw;
	state_writer_init(&sw);
	state_put_u32(&sw, DEV_VERSION, DEVICE_VERSION);
	state_put_bytes(&sw, DEV_ID, dev->id, strlen(dev->id));
	size_t tok = state_begin(&sw, DEV_STATE);
	int rc = dev->ops->save(dev, &sw, err);
	state_end(&sw, tok);
	if (rc) {
		state_writer_free(&sw);
		return error_wrap(err, "saving %s", dev->id);
	}
	return write_record(w, &sw, MIG_SEC_DEVICE, index, DEVICE_VERSION, err);
}

int vmstate_save_machine(struct vm *vm, struct mig_writer *w, struct error *err)
{
	struct state_writer sw;
	state_writer_init(&sw);
	state_put_u32(&sw, MACH_VERSION, MACHINE_VERSION);
	state_put_u64(&sw, MACH_GUEST_TIME, vm_time_now(vm));
	int rc = write_record(w, &sw, MIG_SEC_MACHINE, 0, MACHINE_VERSION, err);
	for (unsigned i = 0; i < vm->num_harts && !rc; i++)
		rc = save_hart(vm, &vm->harts[i], w, err);
	for (unsigned i = 0; i < vm->bus.count && !rc; i++)
		rc = save_device(vm->bus.devices[i], i, w, err);
	return rc;
}

int vmstate_save_all(struct vm *vm, struct mig_writer *w, struct ram_stats *stats,
		     struct error *err)
{
	int rc = mig_write_header(w);
	if (rc)
		return mig_writer_status(w, err);
	rc = vmstate_save_config(vm, w, NULL, err);
	if (!rc)
		rc = vmstate_save_ram(vm, w, NULL, stats, err);
	if (!rc)
		rc = vmstate_save_machine(vm, w, err);
	if (!rc && mig_write_end(w))
		rc = mig_writer_status(w, err);
	return rc;
}

/* ---- loading ------------------------------------------------------------- */

static int read_shape_disks(struct state_reader *cr, struct vm_shape *shape, struct error *err)
{
	static const uint16_t known[] = { CFG_DISK_SIZE, CFG_DISK_READ_ONLY, CFG_DISK_COPY,
					  CFG_DISK_DATA };
	uint32_t n;
	int rc = state_get_u32(cr, CFG_DISKS, &n, err);
	if (rc)
		return rc;
	if (n > VMSTATE_MAX_DISKS)
		return error_set(err, EPROTO, "CONFIG lists %u disks; at most %u are possible", n,
				 VMSTATE_MAX_DISKS);
	for (unsigned i = 0; i < n; i++) {
		struct vm_shape_disk *d = &shape->disks[i];
		struct state_reader dr;
		if ((rc = state_get_record(cr, (uint16_t)(CFG_DISK_BASE + i), &dr, known,
					   sizeof(known) / sizeof(known[0]), err)) ||
		    (rc = state_get_u64(&dr, CFG_DISK_SIZE, &d->size, err)) ||
		    (rc = state_get_bool(&dr, CFG_DISK_READ_ONLY, &d->read_only, err)) ||
		    (rc = state_get_bool(&dr, CFG_DISK_COPY, &d->copy, err)) ||
		    (rc = state_get_u64(&dr, CFG_DISK_DATA, &d->data_bytes, err)))
			return rc;
		if (!d->size || d->size % DISK_SECTOR_SIZE)
			return error_set(err, EPROTO, "CONFIG: disk %u has %llu bytes, not a non-zero "
					 "multiple of 512", i, (unsigned long long)d->size);
	}
	shape->has_disks = true;
	shape->num_disks = n;
	return 0;
}

int vmstate_read_shape(struct mig_reader *r, struct vm_shape *shape, struct error *err)
{
	int rc = mig_read_header(r, err);
	if (rc)
		return rc;
	struct mig_section s;
	rc = mig_read_section(r, &s, err);
	if (rc < 0)
		return rc;
	if (rc == 0 || s.type != MIG_SEC_CONFIG)
		return error_set(err, EPROTO, "%s does not start with a CONFIG section", r->what);
	if (s.version < CONFIG_VERSION_MIN || s.version > CONFIG_VERSION)
		return error_set(err, EPROTO, "%s: CONFIG section version %u; this tern reads %u "
				 "to %u", r->what, s.version, CONFIG_VERSION_MIN, CONFIG_VERSION);
	if (s.instance != 0)
		return error_set(err, EPROTO, "%s: CONFIG section has instance %u, not 0", r->what,
				 s.instance);
	struct state_reader cr;
	uint32_t version;
	rc = state_reader_init(&cr, s.payload, s.length, "the stream's CONFIG", NULL, 0, err);
	if (!rc)
		rc = state_get_u32(&cr, CFG_VERSION, &version, err);
	if (!rc && version != s.version)
		rc = error_set(err, EPROTO, "CONFIG record version %u in a version %u section",
			       version, s.version);
	if (!rc)
		rc = state_get_u64(&cr, CFG_RAM_BASE, &shape->ram_base, err);
	if (!rc)
		rc = state_get_u64(&cr, CFG_RAM_SIZE, &shape->ram_size, err);
	if (!rc)
		rc = state_get_u32(&cr, CFG_HARTS, &shape->num_harts, err);
	shape->has_disks = false;
	shape->num_disks = 0;
	if (!rc && version >= 2)
		rc = read_shape_disks(&cr, shape, err);
	if (rc)
		return error_wrap(err, "%s", r->what);
	shape->config = s.payload;
	shape->config_len = s.length;
	return 0;
}

void vmstate_loader_init(struct vmstate_loader *l, struct vm *vm, bool fresh_ram)
{
	memset(l, 0, sizeof(*l));
	l->vm = vm;
	l->fresh_ram = fresh_ram;
}

static int check_ram_records(struct guest_ram *ram, const struct mig_section *s,
			     bool deltas, struct error *err);

void vmstate_loader_free(struct vmstate_loader *l)
{
	free(l->owed);
	free(l->discarded);
	l->owed = NULL;
	l->discarded = NULL;
}

/* A page map as POSTCOPY and DISCARD carry it: ram->dirty_words
 * little-endian u64 words, bit n of word i for page 64 i + n. */
static int save_page_map(struct vm *vm, struct mig_writer *w, uint32_t type, uint32_t version,
			 const uint64_t *map, struct error *err)
{
	size_t words = vm->ram.dirty_words;
	uint8_t *buf = malloc(words * 8);
	if (!buf)
		return error_set(err, ENOMEM, "no memory for the %s section", mig_section_name(type));
	for (size_t i = 0; i < words; i++)
		put_le64(buf + 8 * i, map[i]);
	int rc = mig_write_section(w, type, 0, version, buf, words * 8);
	free(buf);
	return rc ? mig_writer_status(w, err) : 0;
}

int vmstate_save_postcopy(struct vm *vm, struct mig_writer *w, const uint64_t *owed,
			  struct error *err)
{
	return save_page_map(vm, w, MIG_SEC_POSTCOPY, POSTCOPY_VERSION, owed, err);
}

int vmstate_save_discard(struct vm *vm, struct mig_writer *w, const uint64_t *stale,
			 struct error *err)
{
	return save_page_map(vm, w, MIG_SEC_DISCARD, DISCARD_VERSION, stale, err);
}

uint64_t vmstate_ram_digest(struct vm *vm)
{
	/* Pages never populated read as zeros; hashing a zero page for them
	 * keeps the digest a function of content alone, without a page fault
	 * per untouched page (tens of ms for 256 MiB of fresh RAM). */
	static const uint8_t zero[GUEST_PAGE_SIZE];
	struct guest_ram *ram = &vm->ram;
	uint64_t pages = ram->size >> GUEST_PAGE_SHIFT;
	unsigned char *resident = malloc(pages);
	XXH3_state_t *st = XXH3_createState();
	if (!resident || !st || mincore(ram->host, ram->size, resident) < 0) {
		free(resident);
		XXH3_freeState(st);
		return XXH3_64bits(ram->host, ram->size);   /* the slow way, same value */
	}
	XXH3_64bits_reset(st);
	for (uint64_t pfn = 0; pfn < pages;) {
		uint64_t end = pfn + 1;
		while (end < pages && (resident[end] & 1) == (resident[pfn] & 1))
			end++;
		if (resident[pfn] & 1)
			XXH3_64bits_update(st, ram->host + (pfn << GUEST_PAGE_SHIFT),
					   (end - pfn) << GUEST_PAGE_SHIFT);
		else
			for (uint64_t i = pfn; i < end; i++)
				XXH3_64bits_update(st, zero, sizeof(zero));
		pfn = end;
	}
	uint64_t digest = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(resident);
	return digest;
}

int vmstate_save_ramhash(struct vm *vm, struct mig_writer *w, struct error *err)
{
	uint8_t buf[8];
	put_le64(buf, vmstate_ram_digest(vm));
	int rc = mig_write_section(w, MIG_SEC_RAMHASH, 0, RAMHASH_VERSION, buf, sizeof(buf));
	return rc ? mig_writer_status(w, err) : 0;
}

static int load_ramhash(struct vmstate_loader *l, const struct mig_section *s,
			struct error *err)
{
	if (s->version != RAMHASH_VERSION || s->instance != 0 || s->length != 8)
		return error_set(err, EPROTO, "RAMHASH section version %u, instance %u, %llu bytes: "
				 "this tern reads version %u, instance 0, 8 bytes", s->version,
				 s->instance, (unsigned long long)s->length, RAMHASH_VERSION);
	l->has_ramhash = true;
	l->ramhash = get_le64(s->payload);
	return 0;
}

/* A POSTCOPY or DISCARD section's page map, checked, into a new
 * bitmap (*out, malloc'd) with *count pages set. */
static int read_page_map(struct vmstate_loader *l, const struct mig_section *s, uint32_t version,
			 uint64_t **out, uint64_t *count, struct error *err)
{
	struct guest_ram *ram = &l->vm->ram;
	const char *name = mig_section_name(s->type);
	if (!l->live)
		return error_set(err, EPROTO, "a %s section belongs to a live migration only", name);
	if (s->version != version || s->instance != 0)
		return error_set(err, EPROTO, "%s section version %u, instance %u: this tern "
				 "reads version %u, instance 0", name, s->version, s->instance,
				 version);
	if (s->length != ram->dirty_words * 8)
		return error_set(err, EPROTO, "%s section of %llu bytes; %zu expected for "
				 "%llu MiB of RAM", name, (unsigned long long)s->length,
				 ram->dirty_words * 8, (unsigned long long)(ram->size >> 20));
	uint64_t *map = calloc(ram->dirty_words, 8);
	if (!map)
		return error_set(err, ENOMEM, "no memory for the page map of a %s section", name);
	uint64_t pages = ram->size >> GUEST_PAGE_SHIFT, n = 0;
	for (size_t i = 0; i < ram->dirty_words; i++) {
		uint64_t word = get_le64(s->payload + 8 * i);
		/* Bits past the last page would name pages that do not exist. */
		if (i == ram->dirty_words - 1 && pages % 64)
			word &= (1ull << (pages % 64)) - 1;
		map[i] = word;
		n += (uint64_t)__builtin_popcountll(word);
	}
	*out = map;
	*count = n;
	return 0;
}

static int load_postcopy(struct vmstate_loader *l, const struct mig_section *s,
			 struct error *err)
{
	if (l->owed)
		return error_set(err, EPROTO, "a second POSTCOPY section");
	return read_page_map(l, s, POSTCOPY_VERSION, &l->owed, &l->owed_pages, err);
}

static int load_discard(struct vmstate_loader *l, const struct mig_section *s,
			struct error *err)
{
	if (l->discarded)
		return error_set(err, EPROTO, "a second DISCARD section");
	uint64_t *map, count;
	int rc = read_page_map(l, s, DISCARD_VERSION, &map, &count, err);
	if (rc)
		return rc;
	/* Every page sent before the DISCARD must be in place first, or one
	 * arriving late on another connection would undo the drop. */
	if (l->on_discard && (rc = l->on_discard(l->sync_ctx, err)) < 0) {
		free(map);
		return rc;
	}
	int64_t t0 = monotonic_ns();
	uint64_t dropped = 0;
	rc = guest_ram_drop(&l->vm->ram, map, NULL, &dropped, err);
	if (rc) {
		free(map);
		return rc;
	}
	log_info("post-copy ahead: dropped %llu stale pages in %.1f ms, before the pause",
		 (unsigned long long)dropped, (monotonic_ns() - t0) / 1e6);
	l->discarded = map;
	return 0;
}

int vmstate_for_each_page(struct vm *vm, const struct mig_section *s,
			  int (*apply)(void *ctx, uint64_t gpa, const uint8_t *data), void *ctx,
			  struct error *err)
{
	int rc = check_ram_records(&vm->ram, s, false, err);
	if (rc)
		return rc;
	for (uint64_t off = 0; off < s->length;) {
		uint64_t word = get_le64(s->payload + off);
		off += 8;
		const uint8_t *data = NULL;
		if ((word & 0xfff) == PAGE_DATA) {
			data = s->payload + off;
			off += GUEST_PAGE_SIZE;
		}
		rc = apply(ctx, word & ~0xfffull, data);
		if (rc)
			return rc;
	}
	return 0;
}

static bool bytes_equal(const void *a, size_t alen, const char *b)
{
	return alen == strlen(b) && memcmp(a, b, alen) == 0;
}

/* Before anything is paused: a shared image that is not the same size is
 * most likely the wrong file (or none was given). */
static int check_disks(struct vmstate_loader *l, const struct vm_shape *shape,
		       struct error *err)
{
	if (!shape->has_disks)
		return 0;
	unsigned mine = 0;
	while (vm_disk_image(l->vm, mine))
		mine++;
	if (mine != shape->num_disks)
		return error_set(err, EINVAL, "the saved VM has %u disks; this one has %u: give the "
				 "same --disk options", shape->num_disks, mine);
	for (unsigned i = 0; i < mine; i++) {
		const struct disk_image *d = vm_disk_image(l->vm, i);
		const struct vm_shape_disk *sd = &shape->disks[i];
		if (sd->size != d->size)
			return error_set(err, EINVAL, "disk %u is %llu bytes on the source; %s here "
					 "is %llu bytes: %s", i, (unsigned long long)sd->size,
					 d->path, (unsigned long long)d->size, sd->copy ?
					 "the copy was sized wrongly" : "shared storage needs the "
					 "same image on both hosts (or migrate with --copy-storage)");
		if (sd->read_only != d->read_only)
			return error_set(err, EINVAL, "disk %u is %s on the source and %s here", i,
					 sd->read_only ? "read-only" : "read-write",
					 d->read_only ? "read-only" : "read-write");
	}
	return 0;
}

int vmstate_check_config(struct vmstate_loader *l, const struct vm_shape *shape,
			 struct error *err)
{
	struct vm *vm = l->vm;
	uint16_t known[8 + BUS_MAX_DEVICES + VMSTATE_MAX_DISKS];
	size_t n = 0;
	for (uint16_t id = CFG_VERSION; id <= CFG_DISKS; id++)
		known[n++] = id;
	for (unsigned i = 0; i < BUS_MAX_DEVICES; i++)
		known[n++] = (uint16_t)(CFG_DEVICE_BASE + i);
	for (unsigned i = 0; i < VMSTATE_MAX_DISKS; i++)
		known[n++] = (uint16_t)(CFG_DISK_BASE + i);
	struct state_reader cr;
	int rc = state_reader_init(&cr, shape->config, shape->config_len, "the stream's CONFIG",
				   known, n, err);
	if (rc)
		return rc;
	uint64_t timebase;
	uint32_t ndev;
	const void *isa;
	size_t isa_len;
	if ((rc = state_get_u64(&cr, CFG_TIMEBASE, &timebase, err)) ||
	    (rc = state_get_u32(&cr, CFG_DEVICES, &ndev, err)) ||
	    (rc = state_get_blob(&cr, CFG_ISA, &isa, &isa_len, err)))
		return rc;

	if (shape->ram_base != vm->ram.base || shape->ram_size != vm->ram.size)
		return error_set(err, EINVAL, "the saved VM has %llu MiB of RAM at 0x%llx; this one "
				 "has %llu MiB at 0x%llx",
				 (unsigned long long)(shape->ram_size >> 20),
				 (unsigned long long)shape->ram_base,
				 (unsigned long long)(vm->ram.size >> 20),
				 (unsigned long long)vm->ram.base);
	if (shape->num_harts != vm->num_harts)
		return error_set(err, EINVAL, "the saved VM has %u harts; this one has %u",
				 shape->num_harts, vm->num_harts);
	if (!bytes_equal(isa, isa_len, RV64_ISA_STRING))
		return error_set(err, EINVAL, "the saved VM's CPU implements %.*s; this tern's "
				 "implements %s", (int)(isa_len > 200 ? 200 : isa_len),
				 (const char *)isa, RV64_ISA_STRING);
	if (timebase != TIMEBASE_HZ)
		return error_set(err, EINVAL, "the saved VM's timebase is %llu Hz; this one's is %llu",
				 (unsigned long long)timebase, (unsigned long long)TIMEBASE_HZ);
	if (ndev != vm->bus.count)
		return error_set(err, EINVAL, "the saved VM has %u devices; this one has %u: give "
				 "the same --disk and --net options", ndev, vm->bus.count);
	for (unsigned i = 0; i < ndev; i++) {
		struct state_reader dr;
		const void *id, *type;
		size_t id_len, type_len;
		const struct device *dev = vm->bus.devices[i];
		if ((rc = state_get_record(&cr, (uint16_t)(CFG_DEVICE_BASE + i), &dr, NULL, 0, err)) ||
		    (rc = state_get_blob(&dr, CFG_DEV_ID, &id, &id_len, err)) ||
		    (rc = state_get_blob(&dr, CFG_DEV_TYPE, &type, &type_len, err)))
			return rc;
		if (!bytes_equal(id, id_len, dev->id) || !bytes_equal(type, type_len, dev->ops->type))
			return error_set(err, EINVAL, "device %u of the saved VM is %.*s (%.*s); this "
					 "VM's is %s (%s): give the same --disk and --net options "
					 "in the same order", i, (int)(id_len > 64 ? 64 : id_len),
					 (const char *)id, (int)(type_len > 64 ? 64 : type_len),
					 (const char *)type, dev->id, dev->ops->type);
	}
	if ((rc = check_disks(l, shape, err)))
		return rc;
	l->config_checked = true;
	return 0;
}

/* Consecutive ZERO pages of a fresh VM, dropped with one madvise: on a
 * private anonymous mapping MADV_DONTNEED makes them read as zeros again
 * and leaves pages never written untouched, at one system call per run
 * rather than per page. */
struct zero_run {
	uint8_t *start;
	size_t len;
};

static void zero_run_flush(struct zero_run *run)
{
	if (run->len && madvise(run->start, run->len, MADV_DONTNEED) < 0) {
		/* Locked memory refuses it: clear by hand what needs it. */
		for (size_t off = 0; off < run->len; off += GUEST_PAGE_SIZE)
			if (!page_is_zero(run->start + off))
				memset(run->start + off, 0, GUEST_PAGE_SIZE);
	}
	run->len = 0;
}

/* Every record of a RAM section well formed and inside guest RAM. */
static int check_ram_records(struct guest_ram *ram, const struct mig_section *s,
			     bool deltas, struct error *err)
{
	for (uint64_t off = 0; off < s->length;) {
		if (s->length - off < 8)
			return error_set(err, EPROTO, "RAM section: a page record is cut short");
		uint64_t word = get_le64(s->payload + off), flags = word & 0xfff;
		uint64_t gpa = word & ~0xfffull;
		if (flags != PAGE_ZERO && flags != PAGE_DATA && (flags != PAGE_DELTA || !deltas))
			return error_set(err, EPROTO, "RAM section: page 0x%llx has flags 0x%llx",
					 (unsigned long long)gpa, (unsigned long long)flags);
		if (!guest_ram_ptr(ram, gpa, GUEST_PAGE_SIZE))
			return error_set(err, EPROTO, "RAM section: page 0x%llx is outside guest RAM",
					 (unsigned long long)gpa);
		off += 8;
		if (flags == PAGE_DATA) {
			if (s->length - off < GUEST_PAGE_SIZE)
				return error_set(err, EPROTO, "RAM section: page 0x%llx is cut short",
						 (unsigned long long)gpa);
			off += GUEST_PAGE_SIZE;
		} else if (flags == PAGE_DELTA) {
			if (s->length - off < 2)
				return error_set(err, EPROTO, "RAM section: the delta of page 0x%llx "
						 "is cut short", (unsigned long long)gpa);
			uint64_t n = (uint64_t)s->payload[off] | (uint64_t)s->payload[off + 1] << 8;
			if (n > GUEST_PAGE_SIZE || s->length - off - 2 < n)
				return error_set(err, EPROTO, "RAM section: the delta of page 0x%llx "
						 "(%llu bytes) is cut short or too long",
						 (unsigned long long)gpa, (unsigned long long)n);
			off += 2 + n;
		}
	}
	return 0;
}

static int load_ram(struct vmstate_loader *l, const struct mig_section *s, struct error *err)
{
	struct guest_ram *ram = &l->vm->ram;
	/* What was dropped must stay so: post-copy brings it (its map says
	 * which pages it still has to drop, not which came again since). */
	if (l->discarded)
		return error_set(err, EPROTO, "a RAM section after DISCARD");
	/* Check every record before applying any. */
	int rc = check_ram_records(ram, s, l->live, err);
	if (rc)
		return rc;
	struct zero_run run = { 0 };
	for (uint64_t off = 0; off < s->length;) {
		uint64_t word = get_le64(s->payload + off);
		uint8_t *page = guest_ram_ptr(ram, word & ~0xfffull, GUEST_PAGE_SIZE);
		off += 8;
		if ((word & 0xfff) == PAGE_DATA) {
			zero_run_flush(&run);
			memcpy(page, s->payload + off, GUEST_PAGE_SIZE);
			off += GUEST_PAGE_SIZE;
			l->ram.pages_data++;
		} else if ((word & 0xfff) == PAGE_DELTA) {
			/* Against the copy sent before, which this page holds. */
			zero_run_flush(&run);
			size_t n = (size_t)s->payload[off] | (size_t)s->payload[off + 1] << 8;
			rc = delta_decode(page, s->payload + off + 2, n, err);
			if (rc)
				return error_wrap(err, "RAM section: page 0x%llx",
						  (unsigned long long)(word & ~0xfffull));
			off += 2 + n;
			l->ram.pages_data++;
		} else if (l->fresh_ram) {
			/* Never written before this load, the page reads as
			 * zeros and costs nothing; but a DATA record earlier in
			 * the stream may have filled it (the last record for a
			 * page wins), so drop whatever is there. */
			if (run.len && page != run.start + run.len)
				zero_run_flush(&run);
			if (!run.len)
				run.start = page;
			run.len += GUEST_PAGE_SIZE;
			l->ram.pages_zero++;
		} else {
			if (!page_is_zero(page))
				memset(page, 0, GUEST_PAGE_SIZE);
			l->ram.pages_zero++;
		}
	}
	zero_run_flush(&run);
	return 0;
}

static int load_machine(struct vmstate_loader *l, const struct mig_section *s,
			struct error *err)
{
	log_debug("loading the machine state");
	static const uint16_t known[] = { MACH_VERSION, MACH_GUEST_TIME };
	struct state_reader r;
	uint32_t version;
	/* Like a hart's or a device's: one state, not the last of several. */
	if (l->machine_seen)
		return error_set(err, EPROTO, "two MACHINE sections");
	int rc = state_reader_init(&r, s->payload, s->length, "MACHINE section", known, 2, err);
	if (!rc)
		rc = state_get_u32(&r, MACH_VERSION, &version, err);
	if (!rc && version != MACHINE_VERSION)
		rc = error_set(err, EPROTO, "MACHINE record version %u is not %u", version,
			       MACHINE_VERSION);
	uint64_t guest_time;
	if (!rc)
		rc = state_get_u64(&r, MACH_GUEST_TIME, &guest_time, err);
	/* The clock keeps guest time as signed nanoseconds: bound it with
	 * room for the VM to run on for as long again (146 years). */
	if (!rc && guest_time > MAX_GUEST_TIME)
		rc = error_set(err, EPROTO, "MACHINE section: guest time %llu ticks is more than "
			       "tern can keep (at most %llu)", (unsigned long long)guest_time,
			       (unsigned long long)MAX_GUEST_TIME);
	if (!rc) {
		l->guest_time = guest_time;
		l->machine_seen = true;
	}
	return rc;
}

static int load_hart(struct vmstate_loader *l, const struct mig_section *s, struct error *err)
{
	struct vm *vm = l->vm;
	if (s->instance >= vm->num_harts)
		return error_set(err, EPROTO, "HART section for hart %u, but the VM has %u",
				 s->instance, vm->num_harts);
	if ((l->harts_seen >> s->instance) & 1)
		return error_set(err, EPROTO, "two HART sections for hart %u", s->instance);
	uint16_t known[64];
	size_t n = 0;
	static const uint16_t fixed[] = {
		HART_VERSION_F, HART_X, HART_F, HART_PC, HART_PRIV, HART_FCSR, HART_MCYCLE,
		HART_MINSTRET, HART_RES_VALID, HART_RES_ADDR, HART_RES_VALUE, HART_HSM,
		HART_START_ADDR, HART_START_ARG, HART_IN_WFI,
	};
	for (unsigned i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		known[n++] = fixed[i];
	for (unsigned i = 0; i < M_CSR_COUNT; i++)
		known[n++] = (uint16_t)(HART_CSR_M + i);
	for (unsigned i = 0; i < S_CSR_COUNT; i++)
		known[n++] = (uint16_t)(HART_CSR_S + i);

	char what[48];
	snprintf(what, sizeof(what), "hart %u", s->instance);
	struct state_reader r;
	int rc = state_reader_init(&r, s->payload, s->length, what, known, n, err);
	if (rc)
		return rc;
	struct rv_state st;
	memset(&st, 0, sizeof(st));
	uint32_t version, hsm;
	uint64_t start_addr, start_arg;
	bool in_wfi;
	if ((rc = state_get_u32(&r, HART_VERSION_F, &version, err)) ||
	    (rc = state_get_bytes(&r, HART_X, st.x, sizeof(st.x), err)) ||
	    (rc = state_get_bytes(&r, HART_F, st.f, sizeof(st.f), err)) ||
	    (rc = state_get_u64(&r, HART_PC, &st.pc, err)) ||
	    (rc = state_get_u64(&r, HART_PRIV, &st.priv, err)) ||
	    (rc = state_get_u64(&r, HART_FCSR, &st.fcsr, err)) ||
	    (rc = state_get_u64(&r, HART_MCYCLE, &st.mcycle, err)) ||
	    (rc = state_get_u64(&r, HART_MINSTRET, &st.minstret, err)) ||
	    (rc = state_get_u64(&r, HART_RES_VALID, &st.reservation_valid, err)) ||
	    (rc = state_get_u64(&r, HART_RES_ADDR, &st.reservation_addr, err)) ||
	    (rc = state_get_u64(&r, HART_RES_VALUE, &st.reservation_value, err)) ||
	    (rc = state_get_u32(&r, HART_HSM, &hsm, err)) ||
	    (rc = state_get_u64(&r, HART_START_ADDR, &start_addr, err)) ||
	    (rc = state_get_u64(&r, HART_START_ARG, &start_arg, err)) ||
	    (rc = state_get_bool(&r, HART_IN_WFI, &in_wfi, err)))
		return rc;
	for (unsigned i = 0; i < M_CSR_COUNT && !rc; i++)
		rc = state_get_u64(&r, (uint16_t)(HART_CSR_M + i), m_csr(&st, i), err);
	for (unsigned i = 0; i < S_CSR_COUNT && !rc; i++)
		rc = state_get_u64(&r, (uint16_t)(HART_CSR_S + i), s_csr(&st, i), err);
	if (rc)
		return rc;

	if (version != HART_VERSION)
		return error_set(err, EPROTO, "%s: record version %u is not %u", what, version,
				 HART_VERSION);
	if (st.priv != RV_PRIV_U && st.priv != RV_PRIV_S && st.priv != RV_PRIV_M)
		return error_set(err, EPROTO, "%s: privilege level %llu does not exist", what,
				 (unsigned long long)st.priv);
	unsigned mode = (unsigned)(st.satp >> 60);
	if (mode != 0 && mode != 8)
		return error_set(err, EPROTO, "%s: satp mode %u is not one this CPU offers", what,
				 mode);
	if (st.fcsr > 0xff)
		return error_set(err, EPROTO, "%s: fcsr 0x%llx has bits that do not exist", what,
				 (unsigned long long)st.fcsr);
	if (st.mhartid != s->instance)
		return error_set(err, EPROTO, "%s: its mhartid is %llu", what,
				 (unsigned long long)st.mhartid);
	if (hsm > HSM_SUSPENDED)
		return error_set(err, EPROTO, "%s: SBI hart state %u does not exist", what, hsm);
	st.x[0] = 0;

	struct hart *h = &vm->harts[s->instance];
	cpu_set_state(h->cpu, &st);
	pthread_mutex_lock(&vm->lock);
	h->hsm = (enum hart_hsm)hsm;
	h->start_addr = start_addr;
	h->start_arg = start_arg;
	h->in_wfi = in_wfi;
	pthread_mutex_unlock(&vm->lock);
	l->harts_seen |= 1ull << s->instance;
	return 0;
}

static int load_device(struct vmstate_loader *l, const struct mig_section *s, struct error *err)
{
	struct vm *vm = l->vm;
	log_debug("loading device %u", s->instance);
	if (s->instance >= vm->bus.count)
		return error_set(err, EPROTO, "DEVICE section for device %u, but the VM has %u",
				 s->instance, vm->bus.count);
	if ((l->devices_seen >> s->instance) & 1)
		return error_set(err, EPROTO, "two DEVICE sections for device %u", s->instance);
	struct device *dev = vm->bus.devices[s->instance];
	static const uint16_t known[] = { DEV_VERSION, DEV_ID, DEV_STATE };
	struct state_reader r, sub;
	uint32_t version;
	const void *id;
	size_t id_len;
	int rc = state_reader_init(&r, s->payload, s->length, dev->id, known, 3, err);
	if (!rc)
		rc = state_get_u32(&r, DEV_VERSION, &version, err);
	if (!rc && version != DEVICE_VERSION)
		rc = error_set(err, EPROTO, "%s: DEVICE record version %u is not %u", dev->id,
			       version, DEVICE_VERSION);
	if (!rc)
		rc = state_get_blob(&r, DEV_ID, &id, &id_len, err);
	if (!rc && !bytes_equal(id, id_len, dev->id))
		rc = error_set(err, EPROTO, "DEVICE section %u is for %.*s, not %s", s->instance,
			       (int)(id_len > 64 ? 64 : id_len), (const char *)id, dev->id);
	if (!rc)
		rc = state_get_record(&r, DEV_STATE, &sub, NULL, 0, err);
	if (rc)
		return rc;
	if (!dev->ops->restore)
		return error_set(err, ENOTSUP, "device %s cannot restore its state", dev->id);
	sub.what = dev->id;
	rc = dev->ops->restore(dev, &sub, err);
	if (rc)
		return error_wrap(err, "restoring %s", dev->id);
	l->devices_seen |= 1ull << s->instance;
	return 0;
}

int vmstate_load_section(struct vmstate_loader *l, const struct mig_section *s,
			 struct error *err)
{
	if (!l->config_checked)
		return error_set(err, EPROTO, "a %s section came before the CONFIG was checked",
				 mig_section_name(s->type));
	static const uint32_t versions[] = {
		[MIG_SEC_CONFIG] = CONFIG_VERSION, [MIG_SEC_RAM] = RAM_VERSION,
		[MIG_SEC_MACHINE] = MACHINE_VERSION, [MIG_SEC_HART] = HART_VERSION,
		[MIG_SEC_DEVICE] = DEVICE_VERSION,
	};
	if (s->type <= MIG_SEC_DEVICE && s->version != versions[s->type])
		return error_set(err, EPROTO, "%s section version %u: this tern reads version %u",
				 mig_section_name(s->type), s->version, versions[s->type]);
	if ((s->type == MIG_SEC_RAM || s->type == MIG_SEC_MACHINE) && s->instance != 0)
		return error_set(err, EPROTO, "%s section has instance %u, not 0",
				 mig_section_name(s->type), s->instance);
	switch (s->type) {
	case MIG_SEC_RAM:
		return load_ram(l, s, err);
	case MIG_SEC_MACHINE:
		return load_machine(l, s, err);
	case MIG_SEC_HART:
		return load_hart(l, s, err);
	case MIG_SEC_DEVICE:
		return load_device(l, s, err);
	case MIG_SEC_POSTCOPY:
		return load_postcopy(l, s, err);
	case MIG_SEC_DISCARD:
		return load_discard(l, s, err);
	case MIG_SEC_RAMHASH:
		return load_ramhash(l, s, err);
	case MIG_SEC_CHANNELS:
		if (!l->on_channels)
			return error_set(err, EPROTO, "a CHANNELS section belongs to a live migration "
					 "only");
		return l->on_channels(l->sync_ctx, s, err);
	case MIG_SEC_DISK:
		if (!l->live || !l->disks)
			return error_set(err, EPROTO, "a DISK section, but no disk is being copied");
		return disk_copy_apply(l->disks, l->vm, s, err);
	case MIG_SEC_SYNC:
		if (!l->on_sync)
			return error_set(err, EPROTO, "a SYNC section belongs to a live migration only");
		return l->on_sync(l->sync_ctx, err);
	default:
		return error_set(err, EPROTO, "an unexpected %s section", mig_section_name(s->type));
	}
}

int vmstate_load_rest(struct vmstate_loader *l, struct mig_reader *r, struct error *err)
{
	struct vm *vm = l->vm;
	for (;;) {
		struct mig_section s;
		int rc = mig_read_section(r, &s, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			break;
		rc = vmstate_load_section(l, &s, err);
		if (rc)
			return error_wrap(err, "%s", r->what);
	}
	if (!l->machine_seen)
		return error_set(err, EPROTO, "%s has no MACHINE section", r->what);
	for (unsigned i = 0; i < vm->num_harts; i++)
		if (!((l->harts_seen >> i) & 1))
			return error_set(err, EPROTO, "%s has no state for hart %u", r->what, i);
	for (unsigned i = 0; i < vm->bus.count; i++)
		if (!((l->devices_seen >> i) & 1))
			return error_set(err, EPROTO, "%s has no state for %s", r->what,
					 vm->bus.devices[i]->id);
	vm_set_guest_time(vm, l->guest_time);
	return 0;
}

int vmstate_check_ramhash(struct vmstate_loader *l, struct error *err)
{
	if (!l->has_ramhash || l->owed)
		return 0;
	uint64_t mine = vmstate_ram_digest(l->vm);
	if (mine != l->ramhash)
		return error_set(err, EPROTO, "guest RAM here differs from the source's (digest "
				 "%016llx, the source's %016llx): pages were lost or corrupted on "
				 "the way", (unsigned long long)mine, (unsigned long long)l->ramhash);
	log_info("guest RAM verified against the source's digest");
	return 0;
}
