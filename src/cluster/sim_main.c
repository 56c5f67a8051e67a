/* sim_main.c: tern-sim, the cluster decision code at data-center scale.
 *
 *   tern-sim [--hosts N] [--vms M] [--ticks T] [--seed S] [--json] [policy knobs]
 *
 * Generates heterogeneous hosts and VMs whose CPU load follows synthetic
 * traces, places the VMs with cl_layout_place (what cl_place runs), and then
 * runs the same cluster three ways, tick by tick, on identical loads: not
 * balanced at all, balanced by cl_balance_plan, and balanced by the greedy
 * baseline, with the moves each plans carried out under the same limit on
 * migrations in flight. Then consolidates the balanced cluster once. Prints
 * what it measured, and the command line that reproduces it. The only
 * program of src/cluster; everything it decides, the library decides. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cluster/balance.h"
#include "cluster/placement.h"
#include "util/error.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)
/* A VM moved again within this many ticks of its last move counts as a bounce. */
#define BOUNCE_TICKS 10
#define PHASE_GROUPS 4

/* ---- options ---------------------------------------------------------------- */

struct options {
	unsigned hosts, vms, ticks, day_ticks, rules;
	uint64_t seed;
	double tick_s, noise;
	bool json;
	struct cl_policy pol;
	bool min_gain_set, concurrent_set, moves_set, rules_set;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tern-sim [options]\n"
		"  --hosts N           hosts (1000)\n"
		"  --vms M             VMs (10 x hosts)\n"
		"  --ticks T           ticks to simulate (100)\n"
		"  --tick-s SECONDS    simulated time per tick (60)\n"
		"  --day-ticks D       ticks per simulated day of the load's sine (100)\n"
		"  --seed S            random seed (1)\n"
		"  --noise F           standard deviation of a VM's load noise per tick,\n"
		"                      as a fraction of its vCPUs (0.05)\n"
		"  --rules K           anti-affinity triples; half as many affinity pairs\n"
		"                      (hosts / 10)\n"
		"  --headroom F        fraction of each host kept free (0.1)\n"
		"  --threshold F       imbalance that starts balancing (0.1)\n"
		"  --min-gain F        least imbalance cut worth a move (0.1 / hosts)\n"
		"  --max-concurrent N  migrations in flight at once (hosts / 50, at least 2)\n"
		"  --max-moves N       migrations one round may plan (as --max-concurrent)\n"
		"  --cooldown-s S      a VM moved this recently stays (300)\n"
		"  --downtime-ms MS    the migrations' downtime limit (30)\n"
		"  --json              one JSON object instead of the tables\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tern-sim: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'tern-sim --help' for usage.\n");
	return 2;
}

static bool parse_unsigned(const char *s, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

static bool parse_fraction(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return false;
	*out = v;
	return true;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { HOSTS = 256, VMS, TICKS, TICK_S, DAY, SEED, NOISE, RULES, HEADROOM, THRESHOLD, MIN_GAIN,
	       CONCURRENT, MOVES, COOLDOWN, DOWNTIME, JSON, HELP };
	static const struct option longs[] = {
		{ "hosts", required_argument, NULL, HOSTS },
		{ "vms", required_argument, NULL, VMS },
		{ "ticks", required_argument, NULL, TICKS },
		{ "tick-s", required_argument, NULL, TICK_S },
		{ "day-ticks", required_argument, NULL, DAY },
		{ "seed", required_argument, NULL, SEED },
		{ "noise", required_argument, NULL, NOISE },
		{ "rules", required_argument, NULL, RULES },
		{ "headroom", required_argument, NULL, HEADROOM },
		{ "threshold", required_argument, NULL, THRESHOLD },
		{ "min-gain", required_argument, NULL, MIN_GAIN },
		{ "max-concurrent", required_argument, NULL, CONCURRENT },
		{ "max-moves", required_argument, NULL, MOVES },
		{ "cooldown-s", required_argument, NULL, COOLDOWN },
		{ "downtime-ms", required_argument, NULL, DOWNTIME },
		{ "json", no_argument, NULL, JSON },
		{ "help", no_argument, NULL, HELP },
		{ 0 },
	};
	*o = (struct options){ .hosts = 1000, .vms = 0, .ticks = 100, .day_ticks = 100,
			       .seed = 1, .tick_s = 60.0, .noise = 0.05 };
	cl_policy_default(&o->pol);
	bool vms_set = false;
	unsigned u;
	double f;
	int c;
	opterr = 0;        /* our own message, in our own words */
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case HOSTS:
			if (!parse_unsigned(optarg, 1000000, &o->hosts) || !o->hosts)
				return usage_error("--hosts: \"%s\" is not a count from 1", optarg);
			break;
		case VMS:
			if (!parse_unsigned(optarg, 10000000, &o->vms))
				return usage_error("--vms: \"%s\" is not a count", optarg);
			vms_set = true;
			break;
		case TICKS:
			if (!parse_unsigned(optarg, 1000000, &o->ticks))
				return usage_error("--ticks: \"%s\" is not a count", optarg);
			break;
		case TICK_S:
			if (!parse_fraction(optarg, 1.0, 86400.0, &o->tick_s))
				return usage_error("--tick-s: \"%s\" is not 1 to 86400 seconds", optarg);
			break;
		case DAY:
			if (!parse_unsigned(optarg, 1000000, &o->day_ticks) || !o->day_ticks)
				return usage_error("--day-ticks: \"%s\" is not a count from 1", optarg);
			break;
		case SEED:
			if (!parse_unsigned(optarg, UINT32_MAX, &u))
				return usage_error("--seed: \"%s\" is not a number", optarg);
			o->seed = u;
			break;
		case NOISE:
			if (!parse_fraction(optarg, 0.0, 1.0, &o->noise))
				return usage_error("--noise: \"%s\" is not 0 to 1", optarg);
			break;
		case RULES:
			if (!parse_unsigned(optarg, 1000000, &o->rules))
				return usage_error("--rules: \"%s\" is not a count", optarg);
			o->rules_set = true;
			break;
		case HEADROOM:
			if (!parse_fraction(optarg, 0.0, 0.9, &o->pol.headroom))
				return usage_error("--headroom: \"%s\" is not 0 to 0.9", optarg);
			break;
		case THRESHOLD:
			if (!parse_fraction(optarg, 0.0, 1.0, &o->pol.imbalance_threshold))
				return usage_error("--threshold: \"%s\" is not 0 to 1", optarg);
			break;
		case MIN_GAIN:
			if (!parse_fraction(optarg, 0.0, 1.0, &o->pol.min_gain))
				return usage_error("--min-gain: \"%s\" is not 0 to 1", optarg);
			o->min_gain_set = true;
			break;
		case CONCURRENT:
			if (!parse_unsigned(optarg, 100000, &o->pol.max_concurrent))
				return usage_error("--max-concurrent: \"%s\" is not a count", optarg);
			o->concurrent_set = true;
			break;
		case MOVES:
			if (!parse_unsigned(optarg, 100000, &o->pol.max_moves))
				return usage_error("--max-moves: \"%s\" is not a count", optarg);
			o->moves_set = true;
			break;
		case COOLDOWN:
			if (!parse_fraction(optarg, 0.0, 1e9, &f))
				return usage_error("--cooldown-s: \"%s\" is not seconds", optarg);
			o->pol.cooldown_ms = (int64_t)(f * 1000.0);
			break;
		case DOWNTIME:
			if (!parse_unsigned(optarg, 1000000, &u))
				return usage_error("--downtime-ms: \"%s\" is not milliseconds", optarg);
			o->pol.downtime_ms = u;
			break;
		case JSON:
			o->json = true;
			break;
		case HELP:
			usage(stdout);
			exit(0);
		default:
			return usage_error("unknown option or missing value: %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!vms_set)
		o->vms = 10 * o->hosts;
	/* The policy's defaults are for a handful of hosts. A move's cut of a
	 * standard deviation over n hosts shrinks as 1/n, and a data center
	 * runs more than two migrations at once: scale both with the size. */
	if (!o->min_gain_set)
		o->pol.min_gain = 0.1 / o->hosts;
	unsigned scaled = o->hosts / 50 > 2 ? o->hosts / 50 : 2;
	if (!o->concurrent_set)
		o->pol.max_concurrent = scaled;
	if (!o->moves_set)
		o->pol.max_moves = o->pol.max_concurrent;
	if (!o->rules_set)
		o->rules = o->hosts / 10;
	return 0;
}

/* ---- random numbers (splitmix64: small, and the same on every machine) ----- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform(uint64_t *s, double lo, double hi)
{
	return lo + (hi - lo) * (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static double gaussian(uint64_t *s)
{
	double a = uniform(s, 0x1.0p-53, 1.0), b = uniform(s, 0.0, 1.0);
	return sqrt(-2.0 * log(a)) * cos(2.0 * M_PI * b);
}

/* ---- the synthetic cluster ------------------------------------------------- */

struct host_class {
	const char *name;
	double share;
	uint32_t cores;
	double mem_gib, link_gbit;
};

static const struct host_class classes[] = {
	{ "small", 0.3, 32, 128, 10 },
	{ "medium", 0.5, 64, 256, 25 },
	{ "large", 0.2, 96, 512, 25 },
};
#define N_CLASSES (sizeof(classes) / sizeof(classes[0]))

/* A VM's CPU over time: a daily sine around its base, noise, and now and
 * then a burst of some ticks; its dirtying follows its CPU. */
struct trace {
	double base, amplitude, phase;   /* fractions of its vCPUs; phase of a day */
	double write_mib_s;              /* memory dirtied per busy vCPU-second */
	unsigned burst_left;
	double burst;
};

struct cluster {
	struct cl_host *hosts;
	unsigned host_class[N_CLASSES];
	struct cl_vm *vms;               /* as placed; the runs copy it */
	struct trace *traces;
	struct cl_rule *rules;
	size_t n_rules;
	unsigned unplaced;               /* VMs the first placement found no host for */
	uint64_t rng;
};

static void make_hosts(struct cluster *c, const struct options *o)
{
	for (unsigned h = 0; h < o->hosts; h++) {
		double pick = uniform(&c->rng, 0.0, 1.0), acc = 0.0;
		size_t k = 0;
		while (k + 1 < N_CLASSES && pick >= (acc += classes[k].share))
			k++;
		c->host_class[k]++;
		struct cl_host *host = &c->hosts[h];
		snprintf(host->name, sizeof(host->name), "%s-%05u", classes[k].name, h);
		host->cpu_milli = classes[k].cores * CL_MILLI;
		host->mem_bytes = (uint64_t)(classes[k].mem_gib * GIB);
		host->link_bytes_s = (uint64_t)(classes[k].link_gbit * 1e9 / 8.0);
		host->alive = host->schedulable = true;
	}
}

static void make_vms(struct cluster *c, const struct options *o)
{
	static const uint32_t vcpus[] = { 1, 2, 4, 8, 16 };
	static const double vcpu_weight[] = { 0.2, 0.3, 0.3, 0.15, 0.05 };
	static const double gib_per_vcpu[] = { 1, 2, 4, 8 };
	static const double writes[] = { 4, 16, 64 };
	static const double write_weight[] = { 0.6, 0.3, 0.1 };
	for (unsigned v = 0; v < o->vms; v++) {
		struct cl_vm *vm = &c->vms[v];
		double pick = uniform(&c->rng, 0.0, 1.0), acc = 0.0;
		size_t k = 0;
		while (k + 1 < 5 && pick >= (acc += vcpu_weight[k]))
			k++;
		snprintf(vm->name, sizeof(vm->name), "vm-%06u", v);
		vm->host = -1;
		vm->vcpus = vcpus[k];
		vm->mem_bytes = (uint64_t)(vm->vcpus * gib_per_vcpu[rng_next(&c->rng) % 4] * GIB);
		struct trace *t = &c->traces[v];
		t->base = uniform(&c->rng, 0.2, 0.8);
		t->amplitude = uniform(&c->rng, 0.3, 0.9);
		/* Four groups a quarter of a day apart (tenants in four time
		 * zones), each VM a little off its group's: hosts whose VMs
		 * happen to be mostly of one group swing through the day. */
		t->phase = (double)(rng_next(&c->rng) % PHASE_GROUPS) / PHASE_GROUPS +
			   uniform(&c->rng, -0.05, 0.05);
		pick = uniform(&c->rng, 0.0, 1.0);
		acc = 0.0;
		k = 0;
		while (k + 1 < 3 && pick >= (acc += write_weight[k]))
			k++;
		t->write_mib_s = writes[k];
	}
}

/* Anti-affinity triples and affinity pairs, no VM in two rules (so that
 * no pair of them contradicts). */
static void make_rules(struct cluster *c, const struct options *o)
{
	unsigned want_vms = 3 * o->rules + 2 * (o->rules / 2);
	if (!want_vms || want_vms > o->vms / 2)
		return;
	bool *taken = calloc(o->vms, sizeof(*taken));
	if (!taken)
		return;
	for (unsigned i = 0; i < o->rules + o->rules / 2; i++) {
		struct cl_rule *r = &c->rules[c->n_rules++];
		bool apart = i < o->rules;
		r->kind = apart ? CL_VM_ANTI_AFFINITY : CL_VM_AFFINITY;
		snprintf(r->name, sizeof(r->name), "%s-%u", apart ? "apart" : "together", i);
		while (r->n_vms < (apart ? 3u : 2u)) {
			unsigned v = (unsigned)(rng_next(&c->rng) % o->vms);
			if (taken[v])
				continue;
			taken[v] = true;
			r->vms[r->n_vms++] = (int)v;
		}
	}
	free(taken);
}

/* The load of every VM at tick t, the same for every run. */
static void advance_loads(struct cluster *c, const struct options *o, unsigned t, uint32_t *cpu,
			  uint64_t *dirty)
{
	for (unsigned v = 0; v < o->vms; v++) {
		struct trace *tr = &c->traces[v];
		if (tr->burst_left)
			tr->burst_left--;
		else if (uniform(&c->rng, 0.0, 1.0) < 0.002) {
			tr->burst_left = 5 + (unsigned)(rng_next(&c->rng) % 26);
			tr->burst = uniform(&c->rng, 0.3, 0.8);
		}
		double day = 2.0 * M_PI * ((double)t / o->day_ticks + tr->phase);
		double busy = tr->base * (1.0 + tr->amplitude * sin(day)) +
			      o->noise * gaussian(&c->rng) + (tr->burst_left ? tr->burst : 0.0);
		busy = fmin(1.0, fmax(0.02, busy));
		double vcpus = c->vms[v].vcpus;
		cpu[v] = (uint32_t)(busy * vcpus * CL_MILLI);
		dirty[v] = (uint64_t)(busy * vcpus * tr->write_mib_s * MIB);
	}
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

static int place_all(struct cluster *c, const struct options *o, double *place_s, struct error *err)
{
	struct cl_state st = { .hosts = c->hosts, .n_hosts = o->hosts, .vms = c->vms,
			       .n_vms = o->vms, .rules = c->rules, .n_rules = c->n_rules };
	struct cl_layout l;
	int rc = cl_layout_init(&l, &st, err);
	if (rc < 0)
		return rc;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned v = 0; v < o->vms; v++) {
		if (l.at[v] >= 0)
			continue;
		struct cl_decision d;
		struct error why = { 0 };
		if (cl_layout_place(&l, &o->pol, (int)v, &d, &why) < 0) {
			c->unplaced++;
			continue;
		}
		/* Its affinity partners right after it, as a controller creating
		 * a group would: the room its host was chosen for is theirs. */
		for (unsigned i = l.rule_first[v]; i < l.rule_first[v + 1]; i++) {
			const struct cl_rule *r = &c->rules[l.rule_of[i]];
			for (unsigned k = 0; r->kind == CL_VM_AFFINITY && k < r->n_vms; k++)
				if (l.at[r->vms[k]] < 0 &&
				    cl_layout_place(&l, &o->pol, r->vms[k], &d, &why) < 0)
					c->unplaced++;
		}
	}
	*place_s = seconds_since(&t0);
	for (unsigned v = 0; v < o->vms; v++)
		c->vms[v].host = l.at[v];
	cl_layout_free(&l);
	return 0;
}

/* ---- runs: one way of balancing, on its own copy of the VMs ----------------- */

typedef int (*planner)(const struct cl_state *, const struct cl_policy *, struct cl_plan *,
		       struct error *);

struct run {
	const char *name;
	planner plan;                    /* NULL: never balanced */
	struct cl_vm *vms;
	struct cl_state st;
	unsigned *ends;                  /* the ticks at which migrations in flight end */
	size_t n_flying, cap_flying;
	unsigned *moved_at;              /* per VM: tick of its last move, 0 none */
	int *left;                       /* per VM: host its last move left, -1 none */
	double *before, *after;          /* per tick: imbalance before and after planning */
	unsigned long migrations, bounces, returns;
	double migration_s, plan_s, plan_s_max;
	unsigned rule_breaks;            /* VMs whose rules the final placement breaks */
};

static void run_free(struct run *r)
{
	free(r->vms);
	free(r->ends);
	free(r->moved_at);
	free(r->left);
	free(r->before);
	free(r->after);
}

static int run_init(struct run *r, const char *name, planner plan, const struct cluster *c,
		    const struct options *o, struct error *err)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->plan = plan;
	r->vms = malloc(((size_t)o->vms + 1) * sizeof(*r->vms));
	r->cap_flying = (size_t)o->pol.max_concurrent + o->pol.max_moves + 1;
	r->ends = calloc(r->cap_flying, sizeof(*r->ends));
	r->moved_at = calloc((size_t)o->vms + 1, sizeof(*r->moved_at));
	r->left = malloc(((size_t)o->vms + 1) * sizeof(*r->left));
	r->before = calloc((size_t)o->ticks + 1, sizeof(*r->before));
	r->after = calloc((size_t)o->ticks + 1, sizeof(*r->after));
	if (!r->vms || !r->ends || !r->moved_at || !r->left || !r->before || !r->after) {
		run_free(r);
		return error_set(err, ENOMEM, "out of memory for the %s run", name);
	}
	memcpy(r->vms, c->vms, (size_t)o->vms * sizeof(*r->vms));
	for (unsigned v = 0; v < o->vms; v++)
		r->left[v] = -1;
	r->st = (struct cl_state){ .hosts = c->hosts, .n_hosts = o->hosts, .vms = r->vms,
				   .n_vms = o->vms, .rules = c->rules, .n_rules = c->n_rules };
	return 0;
}

static void land_migrations(struct run *r, unsigned t)
{
	size_t kept = 0;
	for (size_t i = 0; i < r->n_flying; i++)
		if (r->ends[i] > t)
			r->ends[kept++] = r->ends[i];
	r->n_flying = kept;
}

/* Starts the plan's moves; a move is in flight for ceil(cost / tick) ticks
 * and its VM counts as moved (last_moved_ms) when it lands. */
static void carry_out(struct run *r, const struct cl_plan *p, unsigned t, const struct options *o)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct cl_decision *d = &p->d[i];
		if (d->kind != CL_MOVE)
			continue;
		unsigned ticks = (unsigned)fmax(1.0, ceil(d->cost_s / o->tick_s));
		struct cl_vm *vm = &r->vms[d->vm];
		if (r->moved_at[d->vm] && t - r->moved_at[d->vm] < BOUNCE_TICKS)
			r->bounces++;
		if (r->left[d->vm] == d->to)
			r->returns++;
		r->moved_at[d->vm] = t;
		r->left[d->vm] = d->from;
		vm->host = d->to;
		vm->last_moved_ms = r->st.now_ms + (int64_t)(ticks * o->tick_s * 1000.0);
		if (r->n_flying < r->cap_flying)
			r->ends[r->n_flying++] = t + ticks;
		r->migrations++;
		r->migration_s += d->cost_s;
	}
}

static unsigned round_budget(const struct run *r, const struct cl_policy *pol)
{
	unsigned free_slots = r->st.migrations_in_flight >= pol->max_concurrent ? 0
			      : pol->max_concurrent - r->st.migrations_in_flight;
	return free_slots < pol->max_moves ? free_slots : pol->max_moves;
}

static int run_tick(struct run *r, const struct options *o, unsigned t, struct error *err)
{
	land_migrations(r, t);
	r->st.now_ms = (int64_t)(t * o->tick_s * 1000.0);
	r->st.migrations_in_flight = (unsigned)r->n_flying;
	double now = cl_imbalance(&r->st);
	r->before[t - 1] = r->after[t - 1] = now;
	if (!r->plan)
		return 0;
	struct cl_plan p;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = r->plan(&r->st, &o->pol, &p, err);
	double took = seconds_since(&t0);
	if (rc < 0)
		return error_wrap(err, "%s run, tick %u", r->name, t);
	r->plan_s += took;
	r->plan_s_max = fmax(r->plan_s_max, took);
	carry_out(r, &p, t, o);
	r->after[t - 1] = p.imbalance_after;
	cl_plan_free(&p);
	return 0;
}

static int count_rule_breaks(struct run *r, const struct cl_policy *pol, struct error *err)
{
	struct cl_layout l;
	int rc = cl_layout_init(&l, &r->st, err);
	if (rc < 0)
		return rc;
	r->rule_breaks = 0;
	for (size_t v = 0; v < r->st.n_vms; v++)
		if (l.at[v] >= 0 &&
		    !cl_layout_check(&l, pol, (int)v, l.at[v],
				     CL_CHECK_SEPARATION | CL_CHECK_AFFINITY, NULL, 0))
			r->rule_breaks++;
	cl_layout_free(&l);
	return 0;
}

/* ---- statistics --------------------------------------------------------------- */

struct summary {
	double mean, p95, max;
};

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Sorts xs. */
static struct summary summarise(double *xs, size_t n)
{
	struct summary s = { 0 };
	if (!n)
		return s;
	qsort(xs, n, sizeof(*xs), by_value);
	for (size_t i = 0; i < n; i++)
		s.mean += xs[i];
	s.mean /= (double)n;
	size_t at = (size_t)ceil(0.95 * (double)n);
	s.p95 = xs[at ? at - 1 : 0];
	s.max = xs[n - 1];
	return s;
}

struct bounds {
	double *best;                    /* per tick: best_after_budget from the tern run's state */
	double *min_moves;               /* per tick */
	unsigned over_budget;            /* ticks whose min_moves exceeded the round's budget */
};

struct consolidation {
	size_t in_use_before, in_use_after, moves, power_offs;
	double migration_s, plan_s;
	unsigned bound, bound_mem, bound_cpu;
	char summary[256];
};

static int consolidate(const struct run *r, const struct options *o, struct consolidation *out,
		       struct error *err)
{
	memset(out, 0, sizeof(*out));
	bool *used = calloc((size_t)o->hosts + 1, sizeof(*used));
	if (!used)
		return error_set(err, ENOMEM, "out of memory counting hosts");
	for (unsigned v = 0; v < o->vms; v++)
		if (r->vms[v].host >= 0)
			used[r->vms[v].host] = true;
	for (unsigned h = 0; h < o->hosts; h++)
		out->in_use_before += used[h];
	free(used);
	struct cl_plan p;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = cl_consolidate_plan(&r->st, &o->pol, &p, err);
	out->plan_s = seconds_since(&t0);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < p.n; i++) {
		if (p.d[i].kind == CL_MOVE) {
			out->moves++;
			out->migration_s += p.d[i].cost_s;
		} else if (p.d[i].kind == CL_POWER_OFF) {
			out->power_offs++;
		}
	}
	out->in_use_after = o->hosts - out->power_offs;
	snprintf(out->summary, sizeof(out->summary), "%s", p.summary);
	cl_plan_free(&p);
	out->bound = cl_consolidate_lower_bound(&r->st, &o->pol, &out->bound_mem, &out->bound_cpu);
	return 0;
}

/* ---- output ------------------------------------------------------------------- */

static void command_line(int argc, char **argv, char *out, size_t size)
{
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < argc && used + 1 < size; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? " " : "", argv[i]);
		if (n < 0)
			break;
		used += (size_t)n < size - used ? (size_t)n : size - used - 1;
	}
}

struct report {
	const char *command;
	const struct options *o;
	const struct cluster *c;
	struct run *runs;
	size_t n_runs;
	struct summary before[3], after[3];
	struct summary bound, bound_moves;
	unsigned over_budget;
	double place_s, total_s;
	const struct consolidation *cons;
};

static void print_tables(const struct report *rp)
{
	const struct options *o = rp->o;
	const struct cl_policy *p = &o->pol;
	printf("command: %s\n", rp->command);
	printf("cluster: %u hosts (", o->hosts);
	for (size_t k = 0; k < N_CLASSES; k++)
		printf("%s%u %s", k ? ", " : "", rp->c->host_class[k], classes[k].name);
	printf("), %u VMs (%u found no host), %zu rules; %u ticks of %.0f s, a day is %u ticks, "
	       "noise %.2f\n", o->vms, rp->c->unplaced, rp->c->n_rules, o->ticks, o->tick_s,
	       o->day_ticks, o->noise);
	printf("policy: headroom %.2f, threshold %.3f (stop at %.3f), min_gain %.3g, "
	       "max_concurrent %u, max_moves %u, cooldown %.0f s, downtime %" PRIu64 " ms\n\n",
	       p->headroom, p->imbalance_threshold, p->imbalance_threshold * CL_HYSTERESIS,
	       p->min_gain, p->max_concurrent, p->max_moves, (double)p->cooldown_ms / 1000.0,
	       p->downtime_ms);
	printf("%-22s %-23s %-23s %10s %11s %8s %8s %6s %9s\n", "", "imbalance before plan",
	       "imbalance after plan", "", "predicted", "bounces", "returns", "rules", "plan ms");
	printf("%-22s %7s %7s %7s %7s %7s %7s %10s %11s %8s %8s %6s %9s\n", "balancing", "mean",
	       "p95", "max", "mean", "p95", "max", "migrations", "migration s", "<10 tick",
	       "", "broken", "mean/max");
	for (size_t i = 0; i < rp->n_runs; i++) {
		const struct run *r = &rp->runs[i];
		char ms[32] = "-";
		if (r->plan && o->ticks)
			snprintf(ms, sizeof(ms), "%.1f/%.1f", r->plan_s * 1000.0 / o->ticks,
				 r->plan_s_max * 1000.0);
		printf("%-22s %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %10lu %11.0f %8lu %8lu %6u %9s\n",
		       r->name, rp->before[i].mean, rp->before[i].p95, rp->before[i].max,
		       rp->after[i].mean, rp->after[i].p95, rp->after[i].max, r->migrations,
		       r->migration_s, r->bounces, r->returns, r->rule_breaks, ms);
	}
	printf("%-22s %7s %7s %7s %7.4f %7.4f %7.4f %10s\n", "lower bound", "", "", "",
	       rp->bound.mean, rp->bound.p95, rp->bound.max, "");
	printf("  (the least imbalance any planner could reach from the tern run's state with that\n"
	       "   tick's move budget; fewest moves to the threshold: mean %.1f, p95 %.0f, max %.0f\n"
	       "   a tick; more than the budget in %u ticks)\n\n", rp->bound_moves.mean,
	       rp->bound_moves.p95, rp->bound_moves.max, rp->over_budget);
	const struct consolidation *cs = rp->cons;
	printf("%-22s %12s %8s %11s %9s\n", "consolidation", "hosts in use", "moves",
	       "migration s", "plan ms");
	printf("%-22s %12zu\n", "before", cs->in_use_before);
	printf("%-22s %12zu %8zu %11.0f %9.1f\n", "cl_consolidate_plan", cs->in_use_after,
	       cs->moves, cs->migration_s, cs->plan_s * 1000.0);
	printf("%-22s %12u\n", "lower bound (memory)", cs->bound_mem);
	printf("%-22s %12u\n", "lower bound (cpu)", cs->bound_cpu);
	printf("  %s\n\n", cs->summary);
	printf("initial placement %.2f s, whole run %.2f s\n", rp->place_s, rp->total_s);
}

static json_t *summary_json(const struct summary *s)
{
	return json_pack("{s:f, s:f, s:f}", "mean", s->mean, "p95", s->p95, "max", s->max);
}

static int print_json(const struct report *rp)
{
	const struct options *o = rp->o;
	json_t *runs = json_object();
	for (size_t i = 0; i < rp->n_runs; i++) {
		const struct run *r = &rp->runs[i];
		json_object_set_new(runs, r->name, json_pack(
			"{s:o, s:o, s:I, s:f, s:I, s:I, s:I, s:f, s:f}",
			"imbalance_before", summary_json(&rp->before[i]),
			"imbalance_after", summary_json(&rp->after[i]),
			"migrations", (json_int_t)r->migrations, "migration_s", r->migration_s,
			"bounces", (json_int_t)r->bounces, "returns", (json_int_t)r->returns,
			"rules_broken", (json_int_t)r->rule_breaks,
			"plan_ms_mean", o->ticks ? r->plan_s * 1000.0 / o->ticks : 0.0,
			"plan_ms_max", r->plan_s_max * 1000.0));
	}
	const struct consolidation *cs = rp->cons;
	json_t *root = json_pack(
		"{s:s, s:{s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:f}, "
		"s:{s:f, s:f, s:f, s:I, s:I, s:f, s:I}, s:o, "
		"s:{s:o, s:o, s:I}, s:{s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:s}, s:f, s:f}",
		"command", rp->command,
		"cluster", "hosts", (json_int_t)o->hosts, "vms", (json_int_t)o->vms,
		"unplaced", (json_int_t)rp->c->unplaced, "rules", (json_int_t)rp->c->n_rules,
		"tick_s", o->tick_s, "ticks", (json_int_t)o->ticks, "day_ticks",
		(json_int_t)o->day_ticks, "noise", o->noise,
		"policy", "headroom", o->pol.headroom, "threshold", o->pol.imbalance_threshold,
		"min_gain", o->pol.min_gain, "max_concurrent", (json_int_t)o->pol.max_concurrent,
		"max_moves", (json_int_t)o->pol.max_moves,
		"cooldown_s", (double)o->pol.cooldown_ms / 1000.0,
		"downtime_ms", (json_int_t)o->pol.downtime_ms,
		"runs", runs,
		"lower_bound", "imbalance_after", summary_json(&rp->bound),
		"min_moves", summary_json(&rp->bound_moves),
		"ticks_over_budget", (json_int_t)rp->over_budget,
		"consolidation", "hosts_before", (json_int_t)cs->in_use_before,
		"hosts_after", (json_int_t)cs->in_use_after, "moves", (json_int_t)cs->moves,
		"migration_s", cs->migration_s, "plan_ms", cs->plan_s * 1000.0,
		"bound", (json_int_t)cs->bound, "bound_mem", (json_int_t)cs->bound_mem,
		"bound_cpu", (json_int_t)cs->bound_cpu, "summary", cs->summary,
		"place_s", rp->place_s, "total_s", rp->total_s);
	if (!root)
		return -1;
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	putchar('\n');
	json_decref(root);
	return 0;
}

/* ---- main ---------------------------------------------------------------------- */

struct sim {
	struct cluster c;
	struct run runs[3];
	size_t n_runs;
	uint32_t *cpu;
	uint64_t *dirty;
	struct bounds b;
};

static void sim_free(struct sim *s)
{
	free(s->c.hosts);
	free(s->c.vms);
	free(s->c.traces);
	free(s->c.rules);
	for (size_t i = 0; i < s->n_runs; i++)
		run_free(&s->runs[i]);
	free(s->cpu);
	free(s->dirty);
	free(s->b.best);
	free(s->b.min_moves);
}

static int sim_init(struct sim *s, const struct options *o, struct error *err)
{
	memset(s, 0, sizeof(*s));
	size_t n_rules = (size_t)o->rules + o->rules / 2;
	s->c.rng = o->seed;
	s->c.hosts = calloc(o->hosts, sizeof(*s->c.hosts));
	s->c.vms = calloc((size_t)o->vms + 1, sizeof(*s->c.vms));
	s->c.traces = calloc((size_t)o->vms + 1, sizeof(*s->c.traces));
	s->c.rules = calloc(n_rules + 1, sizeof(*s->c.rules));
	s->cpu = calloc((size_t)o->vms + 1, sizeof(*s->cpu));
	s->dirty = calloc((size_t)o->vms + 1, sizeof(*s->dirty));
	s->b.best = calloc((size_t)o->ticks + 1, sizeof(*s->b.best));
	s->b.min_moves = calloc((size_t)o->ticks + 1, sizeof(*s->b.min_moves));
	if (!s->c.hosts || !s->c.vms || !s->c.traces || !s->c.rules || !s->cpu || !s->dirty ||
	    !s->b.best || !s->b.min_moves)
		return error_set(err, ENOMEM, "out of memory for %u hosts and %u VMs", o->hosts,
				 o->vms);
	return 0;
}

static void set_loads(struct sim *s, const struct options *o)
{
	for (size_t i = 0; i < s->n_runs; i++)
		for (unsigned v = 0; v < o->vms; v++) {
			s->runs[i].vms[v].cpu_milli = s->cpu[v];
			s->runs[i].vms[v].dirty_bytes_s = s->dirty[v];
		}
}

static int simulate(struct sim *s, const struct options *o, struct error *err)
{
	struct run *tern = &s->runs[1];
	for (unsigned t = 1; t <= o->ticks; t++) {
		advance_loads(&s->c, o, t, s->cpu, s->dirty);
		set_loads(s, o);
		/* The bound from the tern run's state, before it plans. */
		land_migrations(tern, t);
		tern->st.migrations_in_flight = (unsigned)tern->n_flying;
		struct cl_bound b;
		unsigned budget = round_budget(tern, &o->pol);
		int rc = cl_balance_lower_bound(&tern->st, &o->pol, budget, &b, err);
		if (rc < 0)
			return rc;
		s->b.best[t - 1] = b.best_after_budget;
		s->b.min_moves[t - 1] = b.min_moves;
		s->b.over_budget += b.min_moves > budget;
		for (size_t i = 0; i < s->n_runs; i++) {
			rc = run_tick(&s->runs[i], o, t, err);
			if (rc < 0)
				return rc;
		}
	}
	for (size_t i = 0; i < s->n_runs; i++) {
		int rc = count_rule_breaks(&s->runs[i], &o->pol, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	int rc = parse_options(argc, argv, &o);
	if (rc)
		return rc;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct error err = { 0 };
	struct sim s;
	struct consolidation cons;
	struct report rp = { .o = &o, .c = &s.c, .runs = s.runs, .cons = &cons };
	char command[1024];
	command_line(argc, argv, command, sizeof(command));
	rp.command = command;
	if (sim_init(&s, &o, &err) < 0)
		goto fail;
	make_hosts(&s.c, &o);
	make_vms(&s.c, &o);
	make_rules(&s.c, &o);
	advance_loads(&s.c, &o, 0, s.cpu, s.dirty);
	for (unsigned v = 0; v < o.vms; v++) {
		s.c.vms[v].cpu_milli = s.cpu[v];
		s.c.vms[v].dirty_bytes_s = s.dirty[v];
	}
	if (cl_check_rules(&(struct cl_state){ .hosts = s.c.hosts, .n_hosts = o.hosts,
					       .vms = s.c.vms, .n_vms = o.vms,
					       .rules = s.c.rules, .n_rules = s.c.n_rules },
			   &o.pol, &err) < 0 ||
	    place_all(&s.c, &o, &rp.place_s, &err) < 0)
		goto fail;
	static const char *const names[] = { "none", "tern", "greedy baseline" };
	const planner plans[] = { NULL, cl_balance_plan, cl_greedy_baseline_plan };
	for (size_t i = 0; i < 3; i++, s.n_runs++)
		if (run_init(&s.runs[i], names[i], plans[i], &s.c, &o, &err) < 0)
			goto fail;
	if (simulate(&s, &o, &err) < 0 || consolidate(&s.runs[1], &o, &cons, &err) < 0)
		goto fail;
	rp.n_runs = s.n_runs;
	for (size_t i = 0; i < s.n_runs; i++) {
		rp.before[i] = summarise(s.runs[i].before, o.ticks);
		rp.after[i] = summarise(s.runs[i].after, o.ticks);
	}
	rp.bound = summarise(s.b.best, o.ticks);
	rp.bound_moves = summarise(s.b.min_moves, o.ticks);
	rp.over_budget = s.b.over_budget;
	rp.total_s = seconds_since(&t0);
	if (o.json ? print_json(&rp) : (print_tables(&rp), 0)) {
		error_set(&err, ENOMEM, "out of memory writing JSON");
		goto fail;
	}
	sim_free(&s);
	return 0;
fail:
	fprintf(stderr, "tern-sim: %s\n", err.msg);
	sim_free(&s);
	return 1;
}
