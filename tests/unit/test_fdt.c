/* test_fdt.c: fdt_build() produces the tree the kernel expects. Every
 * assertion reads the blob back through libfdt, the way a consumer would,
 * rather than comparing bytes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libfdt.h>

#include "machine/fdt.h"

#define ISA "rv64imafdc_zicntr_zicsr_zifencei_sstc"
#define BUF_SIZE (64 * 1024)

static void sample_machine(struct fdt_machine *m)
{
	memset(m, 0, sizeof(*m));
	m->num_harts = 2;
	m->isa = ISA;
	m->mmu_type = "riscv,sv39";
	m->timebase_hz = 10000000;
	m->ram_base = 0x80000000;
	m->ram_size = 256ull << 20;
	m->plic_base = 0x0c000000;
	m->plic_size = 0x4000000;
	m->plic_num_sources = 32;
	m->uarts[0] = (struct fdt_mmio_dev){ 0x10000000, 0x100, 10 };
	m->num_uarts = 1;
	m->virtio[0] = (struct fdt_mmio_dev){ 0x10001000, 0x1000, 1 };
	m->virtio[1] = (struct fdt_mmio_dev){ 0x10002000, 0x1000, 2 };
	m->num_virtio = 2;
	m->bootargs = "console=ttyS0 earlycon";
	m->initrd_start = 0x100200000ull; /* above 4 GiB: needs both cells */
	m->initrd_end = m->initrd_start + 0x123456;
	for (unsigned i = 0; i < sizeof(m->rng_seed); i++)
		m->rng_seed[i] = (uint8_t)(i * 7 + 1);
}

static void *build_sample(void)
{
	struct fdt_machine m;
	sample_machine(&m);
	void *buf = malloc(BUF_SIZE);
	assert_non_null(buf);
	struct error err = { 0 };
	int size = fdt_build(&m, buf, BUF_SIZE, &err);
	if (size < 0)
		fail_msg("fdt_build: %s", err.msg);
	assert_int_equal(fdt_check_full(buf, BUF_SIZE), 0);
	assert_int_equal((int)fdt_totalsize(buf), size);
	return buf;
}

static int path(const void *fdt, const char *p)
{
	int off = fdt_path_offset(fdt, p);
	if (off < 0)
		fail_msg("no node %s: %s", p, fdt_strerror(off));
	return off;
}

static const void *prop(const void *fdt, int off, const char *name, int *len)
{
	int l;
	const void *v = fdt_getprop(fdt, off, name, &l);
	if (!v)
		fail_msg("no property %s: %s", name, fdt_strerror(l));
	if (len)
		*len = l;
	return v;
}

static uint32_t prop_u32(const void *fdt, int off, const char *name)
{
	int len;
	const fdt32_t *v = prop(fdt, off, name, &len);
	assert_int_equal(len, 4);
	return fdt32_to_cpu(*v);
}

/* Property values are only 4-byte aligned: read 64-bit cells by copying. */
static uint64_t get64(const void *p)
{
	fdt64_t v;
	memcpy(&v, p, sizeof(v));
	return fdt64_to_cpu(v);
}

static uint64_t prop_u64(const void *fdt, int off, const char *name)
{
	int len;
	const void *v = prop(fdt, off, name, &len);
	assert_int_equal(len, 8);
	return get64(v);
}

static void assert_reg(const void *fdt, int off, uint64_t base, uint64_t size)
{
	int len;
	const char *v = prop(fdt, off, "reg", &len);
	assert_int_equal(len, 16);
	assert_int_equal(get64(v), base);
	assert_int_equal(get64(v + 8), size);
}

static void test_root_and_memory(void **state)
{
	void *fdt = build_sample();
	int root = path(fdt, "/");
	assert_int_equal(prop_u32(fdt, root, "#address-cells"), 2);
	assert_int_equal(prop_u32(fdt, root, "#size-cells"), 2);
	assert_int_equal(fdt_node_check_compatible(fdt, root, "tern,virt"), 0);
	assert_int_equal(fdt_node_check_compatible(fdt, root, "riscv-virtio"), 0);
	assert_string_equal(prop(fdt, root, "model", NULL), "tern,virt");

	int mem = path(fdt, "/memory@80000000");
	assert_string_equal(prop(fdt, mem, "device_type", NULL), "memory");
	assert_reg(fdt, mem, 0x80000000, 256ull << 20);
	free(fdt);
}

static void test_cpus(void **state)
{
	void *fdt = build_sample();
	int cpus = path(fdt, "/cpus");
	assert_int_equal(prop_u32(fdt, cpus, "#address-cells"), 1);
	assert_int_equal(prop_u32(fdt, cpus, "#size-cells"), 0);
	assert_int_equal(prop_u32(fdt, cpus, "timebase-frequency"), 10000000);

	static const char *const exts[] = { "i", "m", "a", "f", "d", "c",
					    "zicntr", "zicsr", "zifencei", "sstc" };
	unsigned count = 0;
	int off;
	fdt_for_each_subnode(off, fdt, cpus) {
		const char *name = fdt_get_name(fdt, off, NULL);
		if (strncmp(name, "cpu@", 4) != 0)
			continue;
		char expect[16];
		snprintf(expect, sizeof(expect), "cpu@%u", count);
		assert_string_equal(name, expect);
		assert_string_equal(prop(fdt, off, "device_type", NULL), "cpu");
		assert_int_equal(prop_u32(fdt, off, "reg"), count);
		assert_string_equal(prop(fdt, off, "status", NULL), "okay");
		assert_int_equal(fdt_node_check_compatible(fdt, off, "riscv"), 0);
		assert_string_equal(prop(fdt, off, "riscv,isa", NULL), ISA);
		assert_string_equal(prop(fdt, off, "riscv,isa-base", NULL), "rv64i");
		assert_string_equal(prop(fdt, off, "mmu-type", NULL), "riscv,sv39");

		int n = fdt_stringlist_count(fdt, off, "riscv,isa-extensions");
		assert_int_equal(n, 10);
		for (int i = 0; i < n; i++) {
			const char *s = fdt_stringlist_get(fdt, off, "riscv,isa-extensions", i, NULL);
			assert_non_null(s);
			assert_string_equal(s, exts[i]);
		}

		int intc = fdt_subnode_offset(fdt, off, "interrupt-controller");
		assert_true(intc >= 0);
		assert_int_equal(prop_u32(fdt, intc, "#interrupt-cells"), 1);
		int len;
		prop(fdt, intc, "interrupt-controller", &len);
		assert_int_equal(len, 0);
		assert_int_equal(fdt_node_check_compatible(fdt, intc, "riscv,cpu-intc"), 0);
		assert_true(fdt_get_phandle(fdt, intc) != 0);
		count++;
	}
	assert_int_equal(count, 2);

	/* cpu-map/cluster0/coreN points at cpu@N. */
	for (unsigned n = 0; n < 2; n++) {
		char p[64];
		snprintf(p, sizeof(p), "/cpus/cpu-map/cluster0/core%u", n);
		uint32_t ph = prop_u32(fdt, path(fdt, p), "cpu");
		snprintf(p, sizeof(p), "/cpus/cpu@%u", n);
		assert_int_equal(fdt_node_offset_by_phandle(fdt, ph), path(fdt, p));
	}
	free(fdt);
}

static void test_plic(void **state)
{
	void *fdt = build_sample();
	int soc = path(fdt, "/soc");
	assert_int_equal(fdt_node_check_compatible(fdt, soc, "simple-bus"), 0);
	assert_int_equal(prop_u32(fdt, soc, "#address-cells"), 2);
	assert_int_equal(prop_u32(fdt, soc, "#size-cells"), 2);
	int len;
	prop(fdt, soc, "ranges", &len);
	assert_int_equal(len, 0);

	int plic = path(fdt, "/soc/plic@c000000");
	assert_int_equal(fdt_node_check_compatible(fdt, plic, "sifive,plic-1.0.0"), 0);
	assert_int_equal(fdt_node_check_compatible(fdt, plic, "riscv,plic0"), 0);
	assert_reg(fdt, plic, 0x0c000000, 0x4000000);
	assert_int_equal(prop_u32(fdt, plic, "#interrupt-cells"), 1);
	assert_int_equal(prop_u32(fdt, plic, "#address-cells"), 0);
	assert_int_equal(prop_u32(fdt, plic, "riscv,ndev"), 31);
	prop(fdt, plic, "interrupt-controller", &len);
	assert_int_equal(len, 0);

	const fdt32_t *ie = prop(fdt, plic, "interrupts-extended", &len);
	assert_int_equal(len, 2 * 2 * 4);
	for (unsigned n = 0; n < 2; n++) {
		char p[64];
		snprintf(p, sizeof(p), "/cpus/cpu@%u/interrupt-controller", n);
		int intc = path(fdt, p);
		assert_int_equal(fdt32_to_cpu(ie[2 * n]), fdt_get_phandle(fdt, intc));
		assert_int_equal(fdt32_to_cpu(ie[2 * n + 1]), 9);
	}
	free(fdt);
}

static void test_devices(void **state)
{
	void *fdt = build_sample();
	uint32_t plic_ph = fdt_get_phandle(fdt, path(fdt, "/soc/plic@c000000"));
	assert_true(plic_ph != 0);

	int uart = path(fdt, "/soc/serial@10000000");
	assert_int_equal(fdt_node_check_compatible(fdt, uart, "ns16550a"), 0);
	assert_reg(fdt, uart, 0x10000000, 0x100);
	assert_int_equal(prop_u32(fdt, uart, "interrupts"), 10);
	assert_int_equal(prop_u32(fdt, uart, "interrupt-parent"), plic_ph);
	assert_int_equal(prop_u32(fdt, uart, "clock-frequency"), 3686400);
	assert_string_equal(prop(fdt, path(fdt, "/aliases"), "serial0", NULL),
			    "/soc/serial@10000000");

	static const uint64_t bases[] = { 0x10001000, 0x10002000 };
	for (unsigned i = 0; i < 2; i++) {
		char p[64];
		snprintf(p, sizeof(p), "/soc/virtio_mmio@%llx", (unsigned long long)bases[i]);
		int v = path(fdt, p);
		assert_int_equal(fdt_node_check_compatible(fdt, v, "virtio,mmio"), 0);
		assert_reg(fdt, v, bases[i], 0x1000);
		assert_int_equal(prop_u32(fdt, v, "interrupts"), i + 1);
		assert_int_equal(prop_u32(fdt, v, "interrupt-parent"), plic_ph);
	}
	free(fdt);
}

static void test_chosen(void **state)
{
	struct fdt_machine m;
	sample_machine(&m);
	void *fdt = build_sample();
	int chosen = path(fdt, "/chosen");
	assert_string_equal(prop(fdt, chosen, "bootargs", NULL), "console=ttyS0 earlycon");
	assert_int_equal(prop_u64(fdt, chosen, "linux,initrd-start"), m.initrd_start);
	assert_int_equal(prop_u64(fdt, chosen, "linux,initrd-end"), m.initrd_end);
	int len;
	const void *seed = prop(fdt, chosen, "rng-seed", &len);
	assert_int_equal(len, 64);
	assert_memory_equal(seed, m.rng_seed, 64);

	/* stdout-path must name the console UART's node. */
	const char *out = prop(fdt, chosen, "stdout-path", NULL);
	assert_int_equal(fdt_path_offset(fdt, out), path(fdt, "/soc/serial@10000000"));
	free(fdt);
}

/* What is absent from the description is absent from the tree. */
static void test_optional_parts(void **state)
{
	struct fdt_machine m;
	sample_machine(&m);
	m.bootargs = NULL;
	m.initrd_start = m.initrd_end = 0;
	m.num_uarts = 0;
	m.num_virtio = 0;
	m.num_harts = 1;
	char buf[8192];
	struct error err = { 0 };
	int size = fdt_build(&m, buf, sizeof(buf), &err);
	if (size < 0)
		fail_msg("fdt_build: %s", err.msg);
	int chosen = path(buf, "/chosen");
	assert_null(fdt_getprop(buf, chosen, "bootargs", NULL));
	assert_null(fdt_getprop(buf, chosen, "stdout-path", NULL));
	assert_null(fdt_getprop(buf, chosen, "linux,initrd-start", NULL));
	assert_true(fdt_path_offset(buf, "/soc/serial@10000000") < 0);
	assert_true(fdt_path_offset(buf, "/cpus/cpu@1") < 0);
	int len;
	prop(buf, path(buf, "/soc/plic@c000000"), "interrupts-extended", &len);
	assert_int_equal(len, 8);
}

/* Every buffer size short of the tree fails cleanly; none overruns (ASan
 * watches the heap buffer of exactly that size). */
static void test_small_buffer(void **state)
{
	struct fdt_machine m;
	sample_machine(&m);
	char full[BUF_SIZE];
	struct error err = { 0 };
	int need = fdt_build(&m, full, sizeof(full), &err);
	assert_true(need > 0);
	for (int size = 0; size < need; size += size < 64 ? 1 : 37) {
		void *buf = malloc(size ? size : 1);
		memset(&err, 0, sizeof(err));
		int rc = fdt_build(&m, buf, size, &err);
		assert_int_equal(rc, -ENOSPC);
		assert_int_equal(err.code, ENOSPC);
		assert_non_null(strstr(err.msg, fdt_strerror(-FDT_ERR_NOSPACE)));
		free(buf);
	}
	void *exact = malloc(need);
	assert_int_equal(fdt_build(&m, exact, need, &err), need);
	free(exact);
}

static void test_bad_descriptions(void **state)
{
	char buf[BUF_SIZE];
	struct fdt_machine m;
	struct error err = { 0 };

	sample_machine(&m);
	m.isa = "x86_64";
	assert_int_equal(fdt_build(&m, buf, sizeof(buf), &err), -EINVAL);
	assert_non_null(strstr(err.msg, "x86_64"));

	sample_machine(&m);
	m.num_harts = 0;
	assert_int_equal(fdt_build(&m, buf, sizeof(buf), &err), -EINVAL);

	sample_machine(&m);
	m.uarts[0].irq = 32;     /* sources are 1..31 */
	assert_int_equal(fdt_build(&m, buf, sizeof(buf), &err), -EINVAL);

	sample_machine(&m);
	m.initrd_end = m.initrd_start;
	assert_int_equal(fdt_build(&m, buf, sizeof(buf), &err), -EINVAL);
}

/* "g" expands, duplicates collapse, a multi-letter name may follow the
 * single letters without an underscore. */
static void test_isa_variants(void **state)
{
	char buf[BUF_SIZE];
	struct fdt_machine m;
	struct error err = { 0 };
	sample_machine(&m);
	m.isa = "rv64gc_zicsr_svpbmt";
	if (fdt_build(&m, buf, sizeof(buf), &err) < 0)
		fail_msg("fdt_build: %s", err.msg);
	static const char *const exts[] = { "i", "m", "a", "f", "d", "zicsr", "zifencei", "c",
					    "svpbmt" };
	int cpu = path(buf, "/cpus/cpu@0");
	assert_int_equal(fdt_stringlist_count(buf, cpu, "riscv,isa-extensions"), 9);
	for (int i = 0; i < 9; i++)
		assert_string_equal(fdt_stringlist_get(buf, cpu, "riscv,isa-extensions", i, NULL),
				    exts[i]);

	m.isa = "rv64imaczicsr";
	if (fdt_build(&m, buf, sizeof(buf), &err) < 0)
		fail_msg("fdt_build: %s", err.msg);
	cpu = path(buf, "/cpus/cpu@0");
	assert_int_equal(fdt_stringlist_count(buf, cpu, "riscv,isa-extensions"), 5);
	assert_string_equal(fdt_stringlist_get(buf, cpu, "riscv,isa-extensions", 4, NULL), "zicsr");
}

/* For eyeballing with dtc: TERN_FDT_DUMP=path writes the sample tree there
 * before the tests run. Not a test: it checks nothing. */
static void dump_if_asked(void)
{
	const char *out = getenv("TERN_FDT_DUMP");
	if (!out)
		return;
	void *fdt = build_sample();
	FILE *f = fopen(out, "wb");
	if (!f || fwrite(fdt, 1, fdt_totalsize(fdt), f) != fdt_totalsize(fdt) || fclose(f))
		fprintf(stderr, "cannot write %s\n", out);
	free(fdt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_and_memory),
		cmocka_unit_test(test_cpus),
		cmocka_unit_test(test_plic),
		cmocka_unit_test(test_devices),
		cmocka_unit_test(test_chosen),
		cmocka_unit_test(test_optional_parts),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_bad_descriptions),
		cmocka_unit_test(test_isa_variants),
	};
	dump_if_asked();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
