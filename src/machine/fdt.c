/* fdt.c: builds the flattened device tree handed to the guest kernel.
 *
 * The tree follows QEMU's riscv "virt" board closely, because that is the
 * shape the stock distribution kernels are tested against: /cpus with one
 * cpu@N (and its local interrupt controller) per hart, /soc as a simple-bus
 * holding the PLIC, the UARTs and the virtio-mmio slots, /memory and
 * /chosen. It uses libfdt's sequential-write API, so nodes are emitted in
 * order and phandles are computed up front rather than looked up. */
#include "machine/fdt.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <libfdt.h>

/* Phandles are fixed by position: nothing is looked up after the fact. */
#define PHANDLE_PLIC 1u
static uint32_t cpu_phandle(unsigned hart)
{
	return 2 + 2 * hart;
}

static uint32_t intc_phandle(unsigned hart)
{
	return 3 + 2 * hart;
}

/*
 * The writer remembers the first libfdt failure and turns every later call
 * into a no-op, so the tree can be written as straight-line code and the
 * error checked once, with the node it happened in for the message.
 */
struct fdt_writer {
	void *fdt;
	int rc;                 /* first libfdt error, 0 while all is well */
	char where[96];         /* the node being written when rc was set */
	char node[96];          /* the node being written now */
};

static void w_check(struct fdt_writer *w, int rc)
{
	if (rc < 0 && !w->rc) {
		w->rc = rc;
		memcpy(w->where, w->node, sizeof(w->where));
	}
}

static void w_begin(struct fdt_writer *w, const char *name)
{
	if (w->rc)
		return;
	snprintf(w->node, sizeof(w->node), "%s", name[0] ? name : "/");
	w_check(w, fdt_begin_node(w->fdt, name));
}

static void w_end(struct fdt_writer *w)
{
	if (!w->rc)
		w_check(w, fdt_end_node(w->fdt));
}

static void w_prop(struct fdt_writer *w, const char *name, const void *val, int len)
{
	if (!w->rc)
		w_check(w, fdt_property(w->fdt, name, val, len));
}

static void w_empty(struct fdt_writer *w, const char *name)
{
	w_prop(w, name, NULL, 0);
}

static void w_u32(struct fdt_writer *w, const char *name, uint32_t val)
{
	if (!w->rc)
		w_check(w, fdt_property_u32(w->fdt, name, val));
}

static void w_u64(struct fdt_writer *w, const char *name, uint64_t val)
{
	if (!w->rc)
		w_check(w, fdt_property_u64(w->fdt, name, val));
}

static void w_str(struct fdt_writer *w, const char *name, const char *val)
{
	if (!w->rc)
		w_check(w, fdt_property_string(w->fdt, name, val));
}

/* A reg property in the 2+2 cell format used by the root and /soc. */
static void w_reg(struct fdt_writer *w, uint64_t base, uint64_t size)
{
	fdt64_t cells[2] = { cpu_to_fdt64(base), cpu_to_fdt64(size) };
	w_prop(w, "reg", cells, sizeof(cells));
}

#define ISA_MAX_EXT 48
#define ISA_MAX_LEN 32

/* A property holding several strings, each with its terminating NUL; big
 * enough for the longest extension list isa_parse() accepts. */
static void w_strlist(struct fdt_writer *w, const char *name, const char *const *list,
		      unsigned n)
{
	char buf[ISA_MAX_EXT * ISA_MAX_LEN];
	size_t len = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t l = strlen(list[i]) + 1;
		if (len + l > sizeof(buf)) {
			w_check(w, -FDT_ERR_NOSPACE);
			return;
		}
		memcpy(buf + len, list[i], l);
		len += l;
	}
	w_prop(w, name, buf, (int)len);
}

/*
 * riscv,isa-extensions: the newer, unambiguous form of the ISA that Linux
 * prefers over parsing riscv,isa. It is derived from the same string so the
 * two can never disagree. Single-letter extensions come first, then every
 * multi-letter one; "g" stands for imafd + zicsr + zifencei.
 */
struct isa_exts {
	char name[ISA_MAX_EXT][ISA_MAX_LEN];
	unsigned count;
	char base[8];           /* "rv64i" */
};

static int isa_add(struct isa_exts *x, const char *name, size_t len)
{
	if (len == 0 || len >= ISA_MAX_LEN)
		return -EINVAL;
	for (unsigned i = 0; i < x->count; i++) {
		if (strlen(x->name[i]) == len && memcmp(x->name[i], name, len) == 0)
			return 0;       /* "g" and an explicit _zicsr, say */
	}
	if (x->count == ISA_MAX_EXT)
		return -E2BIG;
	memcpy(x->name[x->count], name, len);
	x->name[x->count][len] = '\0';
	x->count++;
	return 0;
}

static int isa_parse(const char *isa, struct isa_exts *x, struct error *err)
{
	memset(x, 0, sizeof(*x));
	if (strncmp(isa, "rv64", 4) != 0 && strncmp(isa, "rv32", 4) != 0)
		return error_set(err, EINVAL, "ISA string \"%s\" does not start with rv64 or rv32", isa);
	snprintf(x->base, sizeof(x->base), "%.4si", isa);

	const char *p = isa + 4;
	int rc = 0;
	/* Single letters until the first '_' or the first multi-letter name
	 * (which starts with z, s or x and runs to the next '_'). */
	for (; *p && *p != '_' && *p != 'z' && *p != 's' && *p != 'x' && !rc; p++) {
		if (*p < 'a' || *p > 'z')
			return error_set(err, EINVAL, "ISA string \"%s\": unexpected '%c'", isa, *p);
		if (*p == 'g') {
			static const char *const g[] = { "i", "m", "a", "f", "d", "zicsr", "zifencei" };
			for (unsigned i = 0; i < 7 && !rc; i++)
				rc = isa_add(x, g[i], strlen(g[i]));
		} else {
			rc = isa_add(x, p, 1);
		}
	}
	while (*p && !rc) {
		if (*p == '_') {
			p++;
			continue;
		}
		size_t len = strcspn(p, "_");
		for (size_t i = 0; i < len; i++) {
			if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
				return error_set(err, EINVAL, "ISA string \"%s\": unexpected '%c'",
						 isa, p[i]);
		}
		rc = isa_add(x, p, len);
		p += len;
	}
	if (rc)
		return error_set(err, -rc, "ISA string \"%s\" has an extension name too long or "
				 "too many extensions", isa);
	if (x->count == 0 || strcmp(x->name[0], "i") != 0)
		return error_set(err, EINVAL, "ISA string \"%s\" lacks the base \"i\"", isa);
	return 0;
}

static int check_machine(const struct fdt_machine *m, struct error *err)
{
	if (m->num_harts == 0 || m->num_harts > 1024)
		return error_set(err, EINVAL, "device tree: %u harts is out of range", m->num_harts);
	if (!m->isa || !m->mmu_type)
		return error_set(err, EINVAL, "device tree: no ISA string or MMU type");
	if (m->timebase_hz == 0 || m->timebase_hz > UINT32_MAX)
		return error_set(err, EINVAL, "device tree: timebase %" PRIu64 " Hz does not fit "
				 "timebase-frequency", m->timebase_hz);
	if (m->ram_size == 0)
		return error_set(err, EINVAL, "device tree: no memory");
	if (m->plic_num_sources < 2)
		return error_set(err, EINVAL, "device tree: a PLIC with %u sources has no real "
				 "source (source 0 does not exist)", m->plic_num_sources);
	if (m->num_uarts > FDT_MAX_UARTS || m->num_virtio > FDT_MAX_VIRTIO)
		return error_set(err, EINVAL, "device tree: %u UARTs / %u virtio devices is too many",
				 m->num_uarts, m->num_virtio);
	if ((m->initrd_start || m->initrd_end) && m->initrd_end <= m->initrd_start)
		return error_set(err, EINVAL, "device tree: initrd end 0x%" PRIx64 " is not above "
				 "its start 0x%" PRIx64, m->initrd_end, m->initrd_start);
	for (unsigned i = 0; i < m->num_uarts; i++) {
		if (m->uarts[i].irq == 0 || m->uarts[i].irq >= m->plic_num_sources)
			return error_set(err, EINVAL, "device tree: UART %u has PLIC source %u, "
					 "outside 1..%u", i, m->uarts[i].irq, m->plic_num_sources - 1);
	}
	for (unsigned i = 0; i < m->num_virtio; i++) {
		if (m->virtio[i].irq == 0 || m->virtio[i].irq >= m->plic_num_sources)
			return error_set(err, EINVAL, "device tree: virtio device %u has PLIC source "
					 "%u, outside 1..%u", i, m->virtio[i].irq,
					 m->plic_num_sources - 1);
	}
	return 0;
}

static void write_chosen(struct fdt_writer *w, const struct fdt_machine *m)
{
	w_begin(w, "chosen");
	if (m->bootargs)
		w_str(w, "bootargs", m->bootargs);
	if (m->num_uarts > 0) {
		char path[64];
		snprintf(path, sizeof(path), "/soc/serial@%" PRIx64, m->uarts[0].base);
		w_str(w, "stdout-path", path);
	}
	if (m->initrd_start || m->initrd_end) {
		/* Two cells each: an initrd may live above 4 GiB. */
		w_u64(w, "linux,initrd-start", m->initrd_start);
		w_u64(w, "linux,initrd-end", m->initrd_end);
	}
	w_prop(w, "rng-seed", m->rng_seed, sizeof(m->rng_seed));
	w_end(w);
}

/* serialN aliases pin ttySN to the UART at uarts[N], independent of the
 * order in which the kernel happens to probe them. */
static void write_aliases(struct fdt_writer *w, const struct fdt_machine *m)
{
	if (m->num_uarts == 0)
		return;
	w_begin(w, "aliases");
	for (unsigned i = 0; i < m->num_uarts; i++) {
		char name[24], path[64];
		snprintf(name, sizeof(name), "serial%u", i);
		snprintf(path, sizeof(path), "/soc/serial@%" PRIx64, m->uarts[i].base);
		w_str(w, name, path);
	}
	w_end(w);
}

static void write_cpus(struct fdt_writer *w, const struct fdt_machine *m,
		       const struct isa_exts *x)
{
	const char *exts[ISA_MAX_EXT];
	for (unsigned i = 0; i < x->count; i++)
		exts[i] = x->name[i];

	w_begin(w, "cpus");
	w_u32(w, "#address-cells", 1);
	w_u32(w, "#size-cells", 0);
	w_u32(w, "timebase-frequency", (uint32_t)m->timebase_hz);
	for (unsigned n = 0; n < m->num_harts; n++) {
		char name[32];
		snprintf(name, sizeof(name), "cpu@%u", n);
		w_begin(w, name);
		w_u32(w, "phandle", cpu_phandle(n));
		w_str(w, "device_type", "cpu");
		w_u32(w, "reg", n);
		w_str(w, "status", "okay");
		w_str(w, "compatible", "riscv");
		w_str(w, "riscv,isa", m->isa);
		w_str(w, "riscv,isa-base", x->base);
		w_strlist(w, "riscv,isa-extensions", exts, x->count);
		w_str(w, "mmu-type", m->mmu_type);

		w_begin(w, "interrupt-controller");
		/* #address-cells 0 as for any interrupt provider (dtc warns
		 * without it); the kernel does not need it. */
		w_u32(w, "#address-cells", 0);
		w_u32(w, "#interrupt-cells", 1);
		w_empty(w, "interrupt-controller");
		w_str(w, "compatible", "riscv,cpu-intc");
		w_u32(w, "phandle", intc_phandle(n));
		w_end(w);
		w_end(w);
	}
	/* One cluster of single-threaded cores, as QEMU describes it; the
	 * kernel's topology code wants a cpu-map once there is more than one. */
	w_begin(w, "cpu-map");
	w_begin(w, "cluster0");
	for (unsigned n = 0; n < m->num_harts; n++) {
		char name[32];
		snprintf(name, sizeof(name), "core%u", n);
		w_begin(w, name);
		w_u32(w, "cpu", cpu_phandle(n));
		w_end(w);
	}
	w_end(w);
	w_end(w);
	w_end(w);
}

static void write_mmio_dev(struct fdt_writer *w, const char *prefix, const char *compatible,
			   const struct fdt_mmio_dev *d, uint64_t default_size)
{
	char name[64];
	snprintf(name, sizeof(name), "%s@%" PRIx64, prefix, d->base);
	w_begin(w, name);
	w_str(w, "compatible", compatible);
	w_reg(w, d->base, d->size ? d->size : default_size);
	w_u32(w, "interrupts", d->irq);
	w_u32(w, "interrupt-parent", PHANDLE_PLIC);
	if (strcmp(prefix, "serial") == 0)
		w_u32(w, "clock-frequency", 3686400);
	w_end(w);
}

static void write_soc(struct fdt_writer *w, const struct fdt_machine *m)
{
	w_begin(w, "soc");
	w_u32(w, "#address-cells", 2);
	w_u32(w, "#size-cells", 2);
	w_str(w, "compatible", "simple-bus");
	w_empty(w, "ranges");

	char name[64];
	snprintf(name, sizeof(name), "plic@%" PRIx64, m->plic_base);
	w_begin(w, name);
	static const char *const plic_compat[] = { "sifive,plic-1.0.0", "riscv,plic0" };
	w_strlist(w, "compatible", plic_compat, 2);
	w_reg(w, m->plic_base, m->plic_size);
	w_u32(w, "#interrupt-cells", 1);
	w_u32(w, "#address-cells", 0);
	w_empty(w, "interrupt-controller");
	w_u32(w, "riscv,ndev", m->plic_num_sources - 1);
	w_u32(w, "phandle", PHANDLE_PLIC);
	/* Context n is hart n's supervisor external interrupt (cause 9). tern
	 * is the M-mode firmware, so there are no M-mode contexts to list. */
	fdt32_t ie[2 * 1024];
	for (unsigned n = 0; n < m->num_harts; n++) {
		ie[2 * n] = cpu_to_fdt32(intc_phandle(n));
		ie[2 * n + 1] = cpu_to_fdt32(9);
	}
	w_prop(w, "interrupts-extended", ie, (int)(m->num_harts * 2 * sizeof(fdt32_t)));
	w_end(w);

	for (unsigned i = 0; i < m->num_uarts; i++)
		write_mmio_dev(w, "serial", "ns16550a", &m->uarts[i], 0x100);
	for (unsigned i = 0; i < m->num_virtio; i++)
		write_mmio_dev(w, "virtio_mmio", "virtio,mmio", &m->virtio[i], 0x1000);
	w_end(w);
}

int fdt_build(const struct fdt_machine *m, void *buf, size_t size, struct error *err)
{
	if (!m || !buf)
		return error_set(err, EINVAL, "device tree: no machine description or buffer");
	int rc = check_machine(m, err);
	if (rc)
		return rc;
	struct isa_exts exts;
	rc = isa_parse(m->isa, &exts, err);
	if (rc)
		return rc;

	/* libfdt sizes are ints; a bigger buffer is simply not all used. */
	int bufsize = size > INT_MAX ? INT_MAX : (int)size;
	struct fdt_writer w = { .fdt = buf };
	snprintf(w.node, sizeof(w.node), "(header)");
	w_check(&w, fdt_create(buf, bufsize));
	if (!w.rc)
		w_check(&w, fdt_finish_reservemap(buf));

	w_begin(&w, "");
	w_u32(&w, "#address-cells", 2);
	w_u32(&w, "#size-cells", 2);
	static const char *const compat[] = { "tern,virt", "riscv-virtio" };
	w_strlist(&w, "compatible", compat, 2);
	w_str(&w, "model", "tern,virt");

	write_chosen(&w, m);
	write_aliases(&w, m);

	char name[64];
	snprintf(name, sizeof(name), "memory@%" PRIx64, m->ram_base);
	w_begin(&w, name);
	w_str(&w, "device_type", "memory");
	w_reg(&w, m->ram_base, m->ram_size);
	w_end(&w);

	write_cpus(&w, m, &exts);
	write_soc(&w, m);
	w_end(&w);

	if (!w.rc) {
		snprintf(w.node, sizeof(w.node), "(finish)");
		w_check(&w, fdt_finish(buf));
	}
	/* A self-check costs microseconds and catches a malformed tree here
	 * rather than as a silent early hang inside the guest kernel. */
	if (!w.rc) {
		snprintf(w.node, sizeof(w.node), "(check)");
		w_check(&w, fdt_check_full(buf, (size_t)bufsize));
	}
	if (w.rc) {
		int code = w.rc == -FDT_ERR_NOSPACE ? ENOSPC : EINVAL;
		return error_set(err, code, "device tree: libfdt failed in %s: %s%s", w.where,
				 fdt_strerror(w.rc),
				 code == ENOSPC ? " (the buffer is too small)" : "");
	}
	return (int)fdt_totalsize(buf);
}
