/* Unit tests for the cluster planners: balancing, drain, consolidation, HA,
 * rule checks and the bounds, on hand-made states with known answers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/balance.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * MIB)

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

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

static struct cl_policy policy(void)
{
	struct cl_policy p;
	cl_policy_default(&p);
	return p;
}

/* Three equal hosts, six equal-CPU VMs on the first, 1 to 6 GiB each. */
struct piled {
	struct cl_host hosts[3];
	struct cl_vm vms[6];
	struct cl_state st;
};

static void pile_up(struct piled *c)
{
	static const char *const names[] = { "h0", "h1", "h2" };
	for (int h = 0; h < 3; h++)
		c->hosts[h] = host(names[h], 4000, 64 * GIB);
	for (int v = 0; v < 6; v++) {
		char name[16];
		snprintf(name, sizeof(name), "vm%d", v + 1);
		c->vms[v] = vm(name, 0, 500, (uint64_t)(v + 1) * GIB);
	}
	c->st = (struct cl_state){ .hosts = c->hosts, .n_hosts = 3, .vms = c->vms, .n_vms = 6,
				   .now_ms = 10000000 };
}

static void assert_move(const struct cl_decision *d, int vm, int from, int to)
{
	assert_int_equal(d->kind, CL_MOVE);
	assert_int_equal(d->vm, vm);
	assert_int_equal(d->from, from);
	assert_int_equal(d->to, to);
}

static void test_piled_up_host_sheds_its_cheapest_vms(void **state)
{
	(void)state;
	struct piled c;
	pile_up(&c);
	struct cl_policy p = policy();
	p.max_concurrent = 8;
	struct cl_plan plan;
	assert_int_equal(cl_balance_plan(&c.st, &p, &plan, NULL), 0);
	/* Utilisations 0.75, 0, 0; every VM moves as much load, so the four
	 * smallest (cheapest to migrate) go, two to each empty host. */
	assert_near(plan.imbalance_before, sqrt(0.125), 1e-9);
	assert_int_equal(plan.n, 4);
	assert_move(&plan.d[0], 0, 0, 1);
	assert_move(&plan.d[1], 1, 0, 2);
	assert_move(&plan.d[2], 2, 0, 1);
	assert_move(&plan.d[3], 3, 0, 2);
	assert_near(plan.imbalance_after, 0.0, 1e-9);
	for (size_t i = 0; i < plan.n; i++) {
		assert_true(plan.d[i].gain >= p.min_gain);
		assert_near(plan.d[i].cost_s, (double)(i + 1), 1e-9);
		assert_non_null(strstr(plan.d[i].reason, "cpu imbalance"));
		assert_non_null(strstr(plan.d[i].reason, "cost"));
	}
	assert_near(plan.d[0].imbalance_after, plan.d[1].imbalance_before, 1e-12);
	assert_non_null(strstr(plan.summary, "under the stop target"));
	for (int v = 0; v < 6; v++)
		assert_int_equal(c.vms[v].host, 0);     /* the state is only read */
	cl_plan_free(&plan);
}

static void test_balanced_enough_plans_nothing(void **state)
{
	(void)state;
	/* 0.4, 0.6, 0.5: imbalance 0.082, under the threshold 0.1 though over
	 * its stop target 0.08: hysteresis leaves it alone. */
	struct cl_host hosts[] = { host("h0", 10000, 64 * GIB), host("h1", 10000, 64 * GIB),
				   host("h2", 10000, 64 * GIB) };
	struct cl_vm vms[] = { vm("a", 0, 4000, GIB), vm("b", 1, 6000, GIB), vm("c", 2, 5000, GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 3 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_true(plan.imbalance_before > p.imbalance_threshold * CL_HYSTERESIS);
	assert_int_equal(plan.n, 0);
	assert_non_null(strstr(plan.summary, "within the threshold"));
	cl_plan_free(&plan);
}

/* h0: a (cheap) and c (dear), 1000 mcpu each; h1: b, idle. */
static struct cl_state two_hosts(struct cl_host *hosts, struct cl_vm *vms)
{
	hosts[0] = host("h0", 4000, 64 * GIB);
	hosts[1] = host("h1", 4000, 64 * GIB);
	vms[0] = vm("a", 0, 1000, 1 * GIB);
	vms[1] = vm("b", 1, 0, 1 * GIB);
	vms[2] = vm("c", 0, 1000, 4 * GIB);
	return (struct cl_state){ .hosts = hosts, .n_hosts = 2, .vms = vms, .n_vms = 3,
				  .now_ms = 10000000 };
}

static void test_anti_affinity_blocks_a_move(void **state)
{
	(void)state;
	struct cl_host hosts[2];
	struct cl_vm vms[3];
	struct cl_state st = two_hosts(hosts, vms);
	struct cl_policy p = policy();
	struct cl_plan plan;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 1);
	assert_move(&plan.d[0], 0, 0, 1);       /* without the rule: the cheap one */
	cl_plan_free(&plan);

	const int apart[] = { 0, 1 };
	struct cl_rule rules[] = { rule("a-b-apart", CL_VM_ANTI_AFFINITY, apart, 2, NULL, 0) };
	st.rules = rules;
	st.n_rules = 1;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 1);
	assert_move(&plan.d[0], 2, 0, 1);
	cl_plan_free(&plan);
}

static void test_cooldown_keeps_a_recently_moved_vm(void **state)
{
	(void)state;
	struct cl_host hosts[2];
	struct cl_vm vms[3];
	struct cl_state st = two_hosts(hosts, vms);
	struct cl_policy p = policy();
	struct cl_plan plan;
	vms[0].last_moved_ms = st.now_ms - 1000;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 1);
	assert_move(&plan.d[0], 2, 0, 1);
	cl_plan_free(&plan);

	vms[0].last_moved_ms = st.now_ms - p.cooldown_ms;   /* cooled down */
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_move(&plan.d[0], 0, 0, 1);
	cl_plan_free(&plan);

	vms[0].last_moved_ms = st.now_ms + 5000;            /* still migrating */
	vms[2].last_moved_ms = st.now_ms - 1;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 0);
	assert_non_null(strstr(plan.summary, "2 VMs in cooldown"));
	cl_plan_free(&plan);
}

static void test_max_concurrent_caps_the_round(void **state)
{
	(void)state;
	struct piled c;
	pile_up(&c);
	struct cl_policy p = policy();
	struct cl_plan plan;
	p.max_concurrent = 2;
	c.st.migrations_in_flight = 1;
	assert_int_equal(cl_balance_plan(&c.st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 1);
	assert_move(&plan.d[0], 0, 0, 1);
	assert_non_null(strstr(plan.summary, "max_concurrent 2, 1 in flight"));
	cl_plan_free(&plan);

	c.st.migrations_in_flight = 2;
	assert_int_equal(cl_balance_plan(&c.st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 0);
	assert_non_null(strstr(plan.summary, "in flight"));
	cl_plan_free(&plan);

	p.max_concurrent = 8;
	p.max_moves = 3;
	c.st.migrations_in_flight = 0;
	assert_int_equal(cl_balance_plan(&c.st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 3);
	assert_non_null(strstr(plan.summary, "max_moves 3"));
	cl_plan_free(&plan);
}

static void test_min_gain_stops_small_moves(void **state)
{
	(void)state;
	struct piled c;
	pile_up(&c);
	struct cl_policy p = policy();
	p.max_concurrent = 8;
	p.min_gain = 0.5;        /* more than the whole imbalance */
	struct cl_plan plan;
	assert_int_equal(cl_balance_plan(&c.st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 0);
	assert_non_null(strstr(plan.summary, "min_gain"));
	cl_plan_free(&plan);
}

static void test_greedy_baseline_moves_the_largest_cpu(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 4000, 64 * GIB), host("h1", 4000, 64 * GIB) };
	struct cl_vm vms[] = { vm("small", 0, 500, GIB), vm("large", 0, 1500, 32 * GIB),
			       vm("mid", 0, 1000, GIB) };
	const int large[] = { 1 }, h1[] = { 1 };
	struct cl_rule rules[] = { rule("ignored", CL_HOST_ANTI_AFFINITY, large, 1, h1, 1) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 2, .vms = vms, .n_vms = 3,
			       .rules = rules, .n_rules = 1 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	assert_int_equal(cl_greedy_baseline_plan(&st, &p, &plan, NULL), 0);
	/* 0.75 / 0: "large" (1500) goes first, rule and cost notwithstanding;
	 * then 0.375 / 0.375 is balanced. */
	assert_int_equal(plan.n, 1);
	assert_move(&plan.d[0], 1, 0, 1);
	assert_near(plan.imbalance_after, 0.0, 1e-9);
	cl_plan_free(&plan);
}

static void test_drain_moves_every_vm_off(void **state)
{
	(void)state;
	struct piled c;
	pile_up(&c);
	c.vms[5].last_moved_ms = c.st.now_ms - 1;   /* cooldown does not hold a drain back */
	struct cl_policy p = policy();
	struct cl_plan plan;
	assert_int_equal(cl_drain_plan(&c.st, &p, 0, &plan, NULL), 0);
	assert_int_equal(plan.n, 6);
	unsigned on[3] = { 0 };
	for (size_t i = 0; i < plan.n; i++) {
		assert_int_equal(plan.d[i].kind, CL_MOVE);
		assert_int_equal(plan.d[i].from, 0);
		assert_true(plan.d[i].to == 1 || plan.d[i].to == 2);
		assert_non_null(strstr(plan.d[i].reason, "drain h0"));
		on[plan.d[i].to]++;
	}
	assert_int_equal(plan.d[0].vm, 5);      /* largest first */
	assert_int_equal(on[1], 3);
	assert_int_equal(on[2], 3);
	assert_near(plan.imbalance_after, 0.0, 1e-9);
	assert_int_equal(c.vms[0].host, 0);
	cl_plan_free(&plan);
}

static void test_drain_of_the_last_schedulable_host_is_refused(void **state)
{
	(void)state;
	struct piled c;
	pile_up(&c);
	c.hosts[1].alive = false;
	c.hosts[2].schedulable = false;
	struct cl_policy p = policy();
	struct cl_plan plan;
	struct error err = { 0 };
	assert_int_equal(cl_drain_plan(&c.st, &p, 0, &plan, &err), -ENOSPC);
	assert_int_equal(plan.n, 0);
	assert_null(plan.d);
	assert_non_null(strstr(err.msg, "drain h0"));
	assert_non_null(strstr(err.msg, "last alive schedulable host"));

	assert_int_equal(cl_drain_plan(&c.st, &p, 7, &plan, &err), -EINVAL);
	assert_int_equal(cl_drain_plan(&c.st, &p, 1, &plan, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not alive"));
	assert_int_equal(plan.n, 0);
}

static void test_drain_is_all_or_nothing(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 8000, 64 * GIB), host("h1", 8000, 16 * GIB),
				   host("h2", 8000, 16 * GIB) };
	struct cl_vm vms[] = { vm("small1", 0, 500, GIB), vm("huge", 0, 500, 20 * GIB),
			       vm("small2", 0, 500, GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 3 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	struct error err = { 0 };
	assert_int_equal(cl_drain_plan(&st, &p, 0, &plan, &err), -ENOSPC);
	assert_int_equal(plan.n, 0);
	assert_null(plan.d);
	assert_non_null(strstr(err.msg, "drain h0 refused, nothing moved"));
	assert_non_null(strstr(err.msg, "vm huge"));
	assert_non_null(strstr(err.msg, "2 hosts short of memory"));
	assert_non_null(strstr(err.msg, "1 host being drained"));
}

static void test_drain_keeps_an_affinity_group_together(void **state)
{
	(void)state;
	/* g1 and g2 (6 GiB each) must share a host: only h2 holds both, and
	 * the filler must not take the room h2 was chosen for. */
	struct cl_host hosts[] = { host("h0", 8000, 64 * GIB), host("h1", 8000, 8 * GIB),
				   host("h2", 8000, 14 * GIB) };
	struct cl_vm vms[] = { vm("g1", 0, 100, 6 * GIB), vm("g2", 0, 100, 6 * GIB),
			       vm("filler", 0, 100, 5 * GIB) };
	const int pair[] = { 0, 1 };
	struct cl_rule rules[] = { rule("pair", CL_VM_AFFINITY, pair, 2, NULL, 0) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 3,
			       .rules = rules, .n_rules = 1 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	struct error err = { 0 };
	assert_int_equal(cl_drain_plan(&st, &p, 0, &plan, &err), 0);
	assert_int_equal(plan.n, 3);
	assert_move(&plan.d[0], 0, 0, 2);
	assert_move(&plan.d[1], 1, 0, 2);
	assert_move(&plan.d[2], 2, 0, 1);
	cl_plan_free(&plan);
}

static void test_consolidation_packs_four_hosts_onto_two(void **state)
{
	(void)state;
	/* Four hosts, each 12 of 32 GiB used; 28.8 GiB allowed with headroom:
	 * two hosts hold everything. */
	struct cl_host hosts[4];
	struct cl_vm vms[8];
	for (int h = 0; h < 4; h++) {
		char name[16];
		snprintf(name, sizeof(name), "h%d", h);
		hosts[h] = host(name, 8000, 32 * GIB);
	}
	for (int v = 0; v < 8; v++) {
		char name[16];
		snprintf(name, sizeof(name), "vm%d", v);
		vms[v] = vm(name, v / 2, 1000, 6 * GIB);
	}
	struct cl_state st = { .hosts = hosts, .n_hosts = 4, .vms = vms, .n_vms = 8 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	struct error err = { 0 };
	assert_int_equal(cl_consolidate_plan(&st, &p, &plan, &err), 0);
	assert_int_equal(plan.n, 6);
	/* Only the VMs of the hosts that empty move. */
	int into[4] = { 0 }, off[4] = { 0 };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(plan.d[i].kind, CL_MOVE);
		assert_true(plan.d[i].from >= 2);
		assert_true(plan.d[i].to <= 1);
		into[plan.d[i].to]++;
	}
	for (size_t i = 4; i < 6; i++) {
		assert_int_equal(plan.d[i].kind, CL_POWER_OFF);
		off[plan.d[i].from]++;
		assert_non_null(strstr(plan.d[i].reason, "2 of 4 hosts in use"));
	}
	assert_int_equal(into[0], 2);
	assert_int_equal(into[1], 2);
	assert_int_equal(off[2] + off[3], 2);
	assert_non_null(strstr(plan.summary, "4 -> 2 hosts"));
	unsigned by_mem, by_cpu;
	assert_int_equal(cl_consolidate_lower_bound(&st, &p, &by_mem, &by_cpu), 2);
	assert_int_equal(by_mem, 2);
	assert_int_equal(by_cpu, 2);
	cl_plan_free(&plan);
}

static void test_consolidation_keeps_the_rules(void **state)
{
	(void)state;
	/* Two half-empty hosts would fit on one, but a and b must stay apart. */
	struct cl_host hosts[] = { host("h0", 8000, 32 * GIB), host("h1", 8000, 32 * GIB),
				   host("h2", 8000, 32 * GIB) };
	struct cl_vm vms[] = { vm("a", 0, 1000, 4 * GIB), vm("b", 1, 1000, 4 * GIB),
			       vm("c", 2, 1000, 4 * GIB) };
	const int apart[] = { 0, 1 };
	struct cl_rule rules[] = { rule("apart", CL_VM_ANTI_AFFINITY, apart, 2, NULL, 0) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 3,
			       .rules = rules, .n_rules = 1 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	assert_int_equal(cl_consolidate_plan(&st, &p, &plan, NULL), 0);
	assert_int_equal(plan.n, 2);
	assert_move(&plan.d[0], 2, 2, 0);
	assert_int_equal(plan.d[1].kind, CL_POWER_OFF);
	assert_int_equal(plan.d[1].from, 2);
	cl_plan_free(&plan);
}

static void test_ha_restarts_the_dead_hosts_vms(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 8000, 64 * GIB), host("h1", 8000, 16 * GIB),
				   host("h2", 8000, 16 * GIB) };
	struct cl_vm vms[] = { vm("a", 0, 500, 4 * GIB), vm("b", 0, 500, 8 * GIB),
			       vm("huge", 0, 500, 40 * GIB), vm("c", 1, 500, 2 * GIB) };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 4 };
	struct cl_policy p = policy();
	struct cl_plan plan;
	struct error err = { 0 };
	assert_int_equal(cl_ha_plan(&st, &p, 0, &plan, &err), -EINVAL);   /* still alive */
	assert_non_null(strstr(err.msg, "alive"));
	hosts[0].alive = false;
	assert_int_equal(cl_ha_plan(&st, &p, 0, &plan, &err), 0);
	assert_int_equal(plan.n, 3);
	assert_int_equal(plan.d[0].kind, CL_UNPLACED);     /* largest first */
	assert_int_equal(plan.d[0].vm, 2);
	assert_non_null(strstr(plan.d[0].reason, "no host fits vm huge"));
	assert_int_equal(plan.d[1].kind, CL_PLACE);
	assert_int_equal(plan.d[1].vm, 1);
	assert_int_equal(plan.d[1].from, 0);
	assert_int_equal(plan.d[1].to, 2);                 /* h1 has c already */
	assert_int_equal(plan.d[2].kind, CL_PLACE);
	assert_int_equal(plan.d[2].vm, 0);
	assert_int_equal(plan.d[2].to, 1);
	assert_non_null(strstr(plan.summary, "2 of its 3 VMs"));
	cl_plan_free(&plan);
}

static void test_unsatisfiable_rules_are_named(void **state)
{
	(void)state;
	struct cl_host hosts[] = { host("h0", 8000, 16 * GIB), host("h1", 8000, 16 * GIB),
				   host("gone", 8000, 16 * GIB) };
	hosts[2].alive = false;
	struct cl_vm vms[] = { vm("a", 0, 500, 10 * GIB), vm("b", 1, 500, 10 * GIB),
			       vm("c", 1, 500, GIB) };
	const int ab[] = { 0, 1 }, abc[] = { 0, 1, 2 }, bc[] = { 1, 2 }, gone[] = { 2 },
		  both[] = { 0, 1 }, bad[] = { 0, 3 };
	struct cl_policy p = policy();
	struct error err = { 0 };
	struct cl_state st = { .hosts = hosts, .n_hosts = 3, .vms = vms, .n_vms = 3 };
	struct {
		struct cl_rule r;
		const char *says;
	} cases[] = {
		{ rule("too-big", CL_VM_AFFINITY, ab, 2, NULL, 0), "rule 'too-big' (affinity)" },
		{ rule("too-many", CL_VM_ANTI_AFFINITY, abc, 3, NULL, 0),
		  "only 2 hosts are alive and schedulable" },
		{ rule("dead-only", CL_HOST_AFFINITY, ab, 1, gone, 1), "rule 'dead-only'" },
		{ rule("nowhere", CL_HOST_ANTI_AFFINITY, ab, 1, both, 2), "rule 'nowhere'" },
		{ rule("unknown", CL_VM_ANTI_AFFINITY, bad, 2, NULL, 0),
		  "rule 'unknown': member 1 is VM index 3" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		st.rules = &cases[i].r;
		st.n_rules = 1;
		assert_int_equal(cl_check_rules(&st, &p, &err), -EINVAL);
		assert_non_null(strstr(err.msg, cases[i].says));
	}
	struct cl_rule pair[] = { rule("with", CL_VM_AFFINITY, bc, 2, NULL, 0),
				  rule("without", CL_VM_ANTI_AFFINITY, bc, 2, NULL, 0) };
	st.rules = pair;
	st.n_rules = 2;
	assert_int_equal(cl_check_rules(&st, &p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "rules 'with' and 'without' contradict"));
	st.n_rules = 1;
	assert_int_equal(cl_check_rules(&st, &p, &err), 0);

	/* A planner on a broken rule refuses rather than reading past it. */
	struct cl_plan plan;
	st.rules = &cases[4].r;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, &err), -EINVAL);
	assert_int_equal(plan.n, 0);
}

static void test_lower_bounds(void **state)
{
	(void)state;
	struct piled c;
	pile_up(&c);
	struct cl_policy p = policy();
	struct cl_bound b;
	assert_int_equal(cl_balance_lower_bound(&c.st, &p, 1, &b, NULL), 0);
	/* 0.75, 0, 0 with threshold 0.1: the two idle hosts may keep their
	 * load, so one move is all the bound can promise (VM sizes are not
	 * its business; the planner needs four). */
	assert_int_equal(b.hosts, 3);
	assert_int_equal(b.min_moves, 1);
	assert_near(b.best_after_budget, 0.0, 1e-12);
	assert_near(b.fractional, 0.0, 1e-12);

	/* Utilisations 0, .2, .4, .6, .8 in VMs of 0.1. */
	struct cl_host hosts[5];
	struct cl_vm vms[20];
	size_t n = 0;
	for (int h = 0; h < 5; h++) {
		char name[16];
		snprintf(name, sizeof(name), "h%d", h);
		hosts[h] = host(name, 1000, 64 * GIB);
		for (int k = 0; k < 2 * h; k++)
			vms[n++] = vm(name, h, 100, GIB);
	}
	struct cl_state st = { .hosts = hosts, .n_hosts = 5, .vms = vms, .n_vms = n };
	assert_int_equal(cl_balance_lower_bound(&st, &p, 1, &b, NULL), 0);
	/* One move leaves three hosts as they were, at best three in a row
	 * (sum of squares 0.08): sqrt(0.08 / 5). */
	assert_near(b.best_after_budget, sqrt(0.08 / 5), 1e-9);
	/* Under 0.1 needs a sum of squares of at most 0.05: two hosts at most
	 * keep their load (0.02), so three change: 2 moves. */
	assert_int_equal(b.min_moves, 2);
	struct cl_plan plan;
	p.max_concurrent = 8;
	assert_int_equal(cl_balance_plan(&st, &p, &plan, NULL), 0);
	assert_true(plan.n >= b.min_moves);
	assert_true(plan.d[0].imbalance_after >= b.best_after_budget - 1e-12);
	cl_plan_free(&plan);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_piled_up_host_sheds_its_cheapest_vms),
		cmocka_unit_test(test_balanced_enough_plans_nothing),
		cmocka_unit_test(test_anti_affinity_blocks_a_move),
		cmocka_unit_test(test_cooldown_keeps_a_recently_moved_vm),
		cmocka_unit_test(test_max_concurrent_caps_the_round),
		cmocka_unit_test(test_min_gain_stops_small_moves),
		cmocka_unit_test(test_greedy_baseline_moves_the_largest_cpu),
		cmocka_unit_test(test_drain_moves_every_vm_off),
		cmocka_unit_test(test_drain_of_the_last_schedulable_host_is_refused),
		cmocka_unit_test(test_drain_is_all_or_nothing),
		cmocka_unit_test(test_drain_keeps_an_affinity_group_together),
		cmocka_unit_test(test_consolidation_packs_four_hosts_onto_two),
		cmocka_unit_test(test_consolidation_keeps_the_rules),
		cmocka_unit_test(test_ha_restarts_the_dead_hosts_vms),
		cmocka_unit_test(test_unsatisfiable_rules_are_named),
		cmocka_unit_test(test_lower_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
