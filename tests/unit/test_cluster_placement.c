/* Unit tests for the cluster's load metrics, feasibility, placement and
 * migration cost model, on hand-made states with known answers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * MIB)

static struct cl_host host(const char *name, uint32_t cpu_milli, uint64_t mem)
{
	struct cl_host h = { .cpu_milli = cpu_milli, .mem_bytes = mem,
			     .link_bytes_s = 1024 * MIB, .schedulable = true, .alive = true };
	snprintf(h.name, sizeof(h.name), "%s", name);
	return h;
}

static struct cl_vm vm(const char *name, int on, uint32_t cpu_milli, uint64_t mem)
{
	struct cl_vm v = { .host = on, .vcpus = 1, .mem_bytes = mem, .cpu_milli = cpu_milli };
	snprintf(v.name, sizeof(v.name), "%s", name);
	return v;
}

static struct cl_rule rule(const char *name, enum cl_rule_kind kind, const int *vms, unsigned n_vms,
			   const int *hosts, unsigned n_hosts)
{
	struct cl_rule r = { .kind = kind, .n_vms = n_vms, .n_hosts = n_hosts };
	snprintf(r.name, sizeof(r.name), "%s", name);
	memcpy(r.vms, vms, n_vms * sizeof(*vms));
	if (n_hosts)
		memcpy(r.hosts, hosts, n_hosts * sizeof(*hosts));
	return r;
}

/* Within eps, as a double: cmocka's own compares floats. */
#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

static struct cl_policy policy(void)
{
	struct cl_policy p;
	cl_policy_default(&p);
	return p;
}

static void test_policy_defaults(void **state)
{
	(void)state;
	struct cl_policy p = policy();
	assert_true(p.headroom == 0.1);
	assert_true(p.imbalance_threshold == 0.10);
	assert_true(p.min_gain == 0.01);
	assert_int_equal(p.max_concurrent, 2);
	assert_int_equal(p.max_moves, 8);
	assert_int_equal(p.cooldown_ms, 300000);
	assert_int_equal(p.downtime_ms, 30);
}

static void test_utilisation_and_imbalance(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 4000, 8 * GIB), host("h1", 4000, 8 * GIB),
				   host("dead", 4000, 8 * GIB), host("drained", 4000, 8 * GIB) };
	hosts[2].alive = false;
	hosts[3].schedulable = false;
	struct cl_vm vms[] = { vm("a", 0, 1500, 1 * GIB), vm("b", 0, 500, 1 * GIB),
			       vm("c", 3, 4000, 1 * GIB), vm("new", -1, 1000, 1 * GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 4, .vms = vms, .n_vms = 4 };
	assert_near(cl_host_cpu_util(&st, 0), 0.5, 1e-12);
	assert_near(cl_host_mem_util(&st, 0), 0.25, 1e-12);
	assert_near(cl_host_cpu_util(&st, 1), 0.0, 1e-12);
	/* Over h0 and h1 only: utilisations 0.5 and 0, standard deviation 0.25. */
	assert_near(cl_imbalance(&st), 0.25, 1e-12);
}

static void test_layout_tracks_moves_incrementally(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 4000, 64 * GIB), host("h1", 8000, 64 * GIB),
				   host("h2", 2000, 64 * GIB), host("h3", 4000, 64 * GIB) };
	hosts[3].alive = false;
	struct cl_vm vms[8];
	for (int i = 0; i < 8; i++)
		vms[i] = vm("v", i % 3, 100u + 250u * (unsigned)i, GIB);
	struct cl_state st = { .hosts = hosts, .n_hosts = 4, .vms = vms, .n_vms = 8 };
	struct cl_layout l;
	assert_int_equal(cl_layout_init(&l, &st, NULL), 0);
	unsigned seed = 7;
	for (int step = 0; step < 200; step++) {
		seed = seed * 1103515245u + 12345u;
		int v = (int)(seed >> 8) % 8, to = (int)(seed >> 16) % 5 - 1;
		double predicted = cl_layout_imbalance_if(&l, v, to);
		cl_layout_move(&l, v, to);
		vms[v].host = to;
		assert_near(cl_layout_imbalance(&l), predicted, 1e-9);
		assert_near(cl_layout_imbalance(&l), cl_imbalance(&st), 1e-9);
	}
	cl_layout_free(&l);
}

static void test_fits_capacity_with_headroom(void **state)
{
	(void)state;
	/* With 10% headroom: 9 GiB and 3600 mcpu may be used. */
	struct cl_host hosts[] = { host("h0", 4000, 10 * GIB) };
	struct cl_vm vms[] = { vm("big", 0, 1000, 8 * GIB), vm("exact", -1, 2600, 1 * GIB),
			       vm("fat", -1, 100, 1 * GIB + 1), vm("hot", -1, 2601, 512 * MIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 1, .vms = vms, .n_vms = 4 };
	struct cl_policy p = policy();
	char why[256] = "";
	assert_true(cl_fits(&st, &p, 0, 0, why, sizeof(why)));   /* not counted twice */
	assert_true(cl_fits(&st, &p, 1, 0, why, sizeof(why)));
	assert_false(cl_fits(&st, &p, 2, 0, why, sizeof(why)));
	assert_non_null(strstr(why, "memory"));
	assert_false(cl_fits(&st, &p, 3, 0, why, sizeof(why)));
	assert_non_null(strstr(why, "cpu"));
	p.headroom = 0.0;
	assert_true(cl_fits(&st, &p, 2, 0, why, sizeof(why)));
}

static void test_fits_needs_an_alive_schedulable_host(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("dead", 4000, 8 * GIB), host("drained", 4000, 8 * GIB) };
	hosts[0].alive = false;
	hosts[1].schedulable = false;
	struct cl_vm vms[] = { vm("a", -1, 100, GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 2, .vms = vms, .n_vms = 1 };
	struct cl_policy p = policy();
	char why[256];
	assert_false(cl_fits(&st, &p, 0, 0, why, sizeof(why)));
	assert_non_null(strstr(why, "not alive"));
	assert_false(cl_fits(&st, &p, 0, 1, why, sizeof(why)));
	assert_non_null(strstr(why, "unschedulable"));
	assert_false(cl_fits(&st, &p, 0, 5, why, sizeof(why)));
	assert_false(cl_fits(&st, &p, 3, 0, why, sizeof(why)));
}

static void test_fits_keeps_the_rules(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 8000, 32 * GIB), host("h1", 8000, 32 * GIB),
				   host("h2", 8000, 32 * GIB) };
	struct cl_vm vms[] = { vm("web1", 0, 100, GIB), vm("web2", -1, 100, GIB),
			       vm("app", 1, 100, GIB), vm("cache", -1, 100, GIB),
			       vm("db", -1, 100, GIB) };
	const int spread[] = { 0, 1 }, together[] = { 2, 3 }, dbs[] = { 4 }, only_h2[] = { 2 },
		  not_h0[] = { 0 };
	struct cl_rule rules[] = {
		rule("web-spread", CL_VM_ANTI_AFFINITY, spread, 2, NULL, 0),
		rule("app-cache", CL_VM_AFFINITY, together, 2, NULL, 0),
		rule("db-on-h2", CL_HOST_AFFINITY, dbs, 1, only_h2, 1),
		rule("web-not-h0", CL_HOST_ANTI_AFFINITY, spread + 1, 1, not_h0, 1),
	};
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 5,
			       .rules = rules, .n_rules = 4 };
	struct cl_policy p = policy();
	char why[256];
	assert_false(cl_fits(&st, &p, 1, 0, why, sizeof(why)));
	assert_non_null(strstr(why, "rule 'web-spread'"));
	assert_non_null(strstr(why, "web1 already runs on h0"));
	assert_true(cl_fits(&st, &p, 1, 1, why, sizeof(why)));
	/* cache must follow app, which runs on h1. */
	assert_false(cl_fits(&st, &p, 3, 2, why, sizeof(why)));
	assert_non_null(strstr(why, "rule 'app-cache'"));
	assert_true(cl_fits(&st, &p, 3, 1, why, sizeof(why)));
	assert_false(cl_fits(&st, &p, 4, 1, why, sizeof(why)));
	assert_non_null(strstr(why, "may run only on h2"));
	assert_true(cl_fits(&st, &p, 4, 2, why, sizeof(why)));
	vms[0].host = 1;      /* web1 elsewhere: h0 is still barred to web2 by its host rule */
	assert_false(cl_fits(&st, &p, 1, 0, why, sizeof(why)));
	assert_non_null(strstr(why, "rule 'web-not-h0'"));
}

static void test_first_of_an_affinity_group_needs_room_for_all(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("small", 8000, 10 * GIB), host("large", 8000, 16 * GIB) };
	struct cl_vm vms[] = { vm("g1", -1, 100, 4 * GIB), vm("g2", -1, 100, 4 * GIB),
			       vm("g3", -1, 100, 4 * GIB) };
	const int group[] = { 0, 1, 2 };
	struct cl_rule rules[] = { rule("trio", CL_VM_AFFINITY, group, 3, NULL, 0) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 2, .vms = vms, .n_vms = 3,
			       .rules = rules, .n_rules = 1 };
	struct cl_policy p = policy();
	char why[256];
	assert_false(cl_fits(&st, &p, 0, 0, why, sizeof(why)));
	assert_non_null(strstr(why, "rule 'trio'"));
	assert_true(cl_fits(&st, &p, 0, 1, why, sizeof(why)));
	struct cl_decision d;
	assert_int_equal(cl_place(&st, &p, 0, &d, NULL), 0);
	assert_int_equal(d.to, 1);
}

static void test_place_picks_the_least_loaded_host(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 4000, 16 * GIB), host("h1", 4000, 16 * GIB),
				   host("h2", 4000, 16 * GIB) };
	struct cl_vm vms[] = { vm("a", 0, 2000, GIB), vm("b", 1, 1000, GIB), vm("new", -1, 500, GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 3 };
	struct cl_policy p = policy();
	struct cl_decision d;
	assert_int_equal(cl_place(&st, &p, 2, &d, NULL), 0);
	assert_int_equal(d.kind, CL_PLACE);
	assert_int_equal(d.vm, 2);
	assert_int_equal(d.from, -1);
	assert_int_equal(d.to, 2);
	assert_true(d.imbalance_after < d.imbalance_before);
	assert_near(d.gain, d.imbalance_before - d.imbalance_after, 1e-12);
	assert_non_null(strstr(d.reason, "place new on h2"));
	assert_int_equal(vms[2].host, -1);     /* the state is only read */
}

static void test_place_ties_go_to_free_memory_then_name(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("b", 4000, 16 * GIB), host("a", 4000, 16 * GIB),
				   host("c", 4000, 32 * GIB) };
	struct cl_vm vms[] = { vm("new", -1, 500, GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 1 };
	struct cl_policy p = policy();
	struct cl_decision d;
	assert_int_equal(cl_place(&st, &p, 0, &d, NULL), 0);
	assert_int_equal(d.to, 2);               /* most free memory */
	hosts[2].mem_bytes = 16 * GIB;
	assert_int_equal(cl_place(&st, &p, 0, &d, NULL), 0);
	assert_int_equal(d.to, 1);               /* "a" before "b" and "c" */
}

static void test_place_refuses_naming_each_reason(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("dead", 8000, 32 * GIB), host("tiny", 8000, 2 * GIB),
				   host("taken", 8000, 32 * GIB), host("busy", 1000, 32 * GIB) };
	hosts[0].alive = false;
	struct cl_vm vms[] = { vm("web1", 2, 100, GIB), vm("web2", -1, 500, 4 * GIB),
			       vm("load", 3, 800, GIB) };
	const int spread[] = { 0, 1 };
	struct cl_rule rules[] = { rule("web-spread", CL_VM_ANTI_AFFINITY, spread, 2, NULL, 0) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 4, .vms = vms, .n_vms = 3,
			       .rules = rules, .n_rules = 1 };
	struct cl_policy p = policy();
	struct cl_decision d;
	struct error err = { 0 };
	assert_int_equal(cl_place(&st, &p, 1, &d, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "no host fits vm web2"));
	assert_non_null(strstr(err.msg, "1 host not alive"));
	assert_non_null(strstr(err.msg, "1 host short of memory"));
	assert_non_null(strstr(err.msg, "1 host short of CPU"));
	assert_non_null(strstr(err.msg, "1 host excluded by rule 'web-spread'"));
}

static void test_bad_indexes_are_refused(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 4000, 16 * GIB) };
	struct cl_vm vms[] = { vm("a", -1, 500, GIB) };
	const int bad[] = { 0, 9 };
	struct cl_rule rules[] = { rule("broken", CL_VM_ANTI_AFFINITY, bad, 2, NULL, 0) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 1, .vms = vms, .n_vms = 1,
			       .rules = rules, .n_rules = 1 };
	struct cl_policy p = policy();
	struct cl_decision d;
	struct error err = { 0 };
	assert_int_equal(cl_place(&st, &p, 1, &d, &err), -EINVAL);
	assert_int_equal(cl_place(&st, &p, 0, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "rule 'broken'"));
	st.n_rules = 0;
	vms[0].host = 3;
	assert_int_equal(cl_place(&st, &p, 0, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vm a"));
}

static void test_migration_cost_model(void **state)
{
	(void)state;
	struct cl_vm v = vm("v", 0, 1000, 1024 * MIB);
	/* Nothing dirtied: one pass, 1 GiB at 1 GiB/s. */
	assert_near(cl_migration_cost_s(&v, 1024 * MIB, 30), 1.0, 1e-9);
	/* Half the link: passes of 1, 1/2, ... 1/64 s, the last within 30 ms. */
	v.dirty_bytes_s = 512 * MIB;
	assert_near(cl_migration_cost_s(&v, 1024 * MIB, 30), 2.0 - 1.0 / 64, 1e-9);
	/* A downtime limit the first pass meets: that pass is the stop-and-copy. */
	assert_near(cl_migration_cost_s(&v, 1024 * MIB, 2000), 1.0, 1e-9);
	/* As fast as the link or faster: auto-converge or post-copy. */
	v.dirty_bytes_s = 1024 * MIB;
	assert_near(cl_migration_cost_s(&v, 1024 * MIB, 30), CL_NONCONVERGE_PENALTY, 1e-9);
	v.dirty_bytes_s = 4096 * MIB;
	assert_near(cl_migration_cost_s(&v, 1024 * MIB, 30), CL_NONCONVERGE_PENALTY, 1e-9);
	assert_true(isinf(cl_migration_cost_s(&v, 0, 30)));
	/* More dirtying never costs less. */
	double last = 0.0;
	for (uint64_t d = 0; d <= 1024; d += 64) {
		v.dirty_bytes_s = d * MIB;
		double c = cl_migration_cost_s(&v, 1024 * MIB, 30);
		assert_true(c >= last);
		last = c;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_defaults),
		cmocka_unit_test(test_utilisation_and_imbalance),
		cmocka_unit_test(test_layout_tracks_moves_incrementally),
		cmocka_unit_test(test_fits_capacity_with_headroom),
		cmocka_unit_test(test_fits_needs_an_alive_schedulable_host),
		cmocka_unit_test(test_fits_keeps_the_rules),
		cmocka_unit_test(test_first_of_an_affinity_group_needs_room_for_all),
		cmocka_unit_test(test_place_picks_the_least_loaded_host),
		cmocka_unit_test(test_place_ties_go_to_free_memory_then_name),
		cmocka_unit_test(test_place_refuses_naming_each_reason),
		cmocka_unit_test(test_bad_indexes_are_refused),
		cmocka_unit_test(test_migration_cost_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
