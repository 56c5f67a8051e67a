/* placement.c: see placement.h. */
#include "cluster/placement.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)
/* Imbalances closer than this are a tie, not a preference. */
#define SAME_IMBALANCE 1e-12

void cl_policy_default(struct cl_policy *p)
{
	*p = (struct cl_policy){
		.headroom = 0.1,
		.imbalance_threshold = 0.10,
		.min_gain = 0.01,
		.max_concurrent = 2,
		.max_moves = 8,
		.cooldown_ms = 300000,
		.downtime_ms = 30,
	};
}

/* ---- metrics straight from the state ------------------------------------ */

static double ratio(uint64_t used, uint64_t cap)
{
	return cap ? (double)used / (double)cap : 0.0;
}

double cl_host_cpu_util(const struct cl_state *st, int host)
{
	if (host < 0 || (size_t)host >= st->n_hosts)
		return 0.0;
	uint64_t used = 0;
	for (size_t v = 0; v < st->n_vms; v++)
		if (st->vms[v].host == host)
			used += st->vms[v].cpu_milli;
	return ratio(used, st->hosts[host].cpu_milli);
}

double cl_host_mem_util(const struct cl_state *st, int host)
{
	if (host < 0 || (size_t)host >= st->n_hosts)
		return 0.0;
	uint64_t used = 0;
	for (size_t v = 0; v < st->n_vms; v++)
		if (st->vms[v].host == host)
			used += st->vms[v].mem_bytes;
	return ratio(used, st->hosts[host].mem_bytes);
}

static bool counts_for_balance(const struct cl_host *h)
{
	return h->alive && h->schedulable && h->cpu_milli > 0;
}

static double stddev(double sum, double sum2, unsigned n)
{
	if (!n)
		return 0.0;
	double mean = sum / n;
	double var = sum2 / n - mean * mean;
	return var > 0.0 ? sqrt(var) : 0.0;   /* rounding may leave -1e-17 */
}

double cl_imbalance(const struct cl_state *st)
{
	/* One pass over the VMs when there is memory for the per-host sums,
	 * one per host otherwise. */
	uint64_t *used = calloc(st->n_hosts + 1, sizeof(*used));
	if (used)
		for (size_t v = 0; v < st->n_vms; v++) {
			int h = st->vms[v].host;
			if (h >= 0 && (size_t)h < st->n_hosts)
				used[h] += st->vms[v].cpu_milli;
		}
	double sum = 0.0, sum2 = 0.0;
	unsigned n = 0;
	for (size_t h = 0; h < st->n_hosts; h++) {
		if (!counts_for_balance(&st->hosts[h]))
			continue;
		double u = used ? ratio(used[h], st->hosts[h].cpu_milli) : cl_host_cpu_util(st, (int)h);
		sum += u;
		sum2 += u * u;
		n++;
	}
	free(used);
	return stddev(sum, sum2, n);
}

/* ---- migration cost ------------------------------------------------------ */

double cl_migration_cost_s(const struct cl_vm *vm, uint64_t link_bytes_s, uint64_t downtime_ms)
{
	if (!link_bytes_s)
		return HUGE_VAL;
	double mem = (double)vm->mem_bytes, link = (double)link_bytes_s;
	double dirty = (double)vm->dirty_bytes_s;
	double first_s = mem / link;
	if (dirty >= link)
		return first_s * CL_NONCONVERGE_PENALTY;
	double limit_s = (double)downtime_ms / 1000.0;
	double total_s = first_s, pass_s = first_s;
	for (unsigned pass = 2; pass <= CL_COST_MAX_PASSES && pass_s > limit_s; pass++) {
		pass_s = fmin(mem, dirty * pass_s) / link;
		total_s += pass_s;
	}
	/* Passes that barely shrink add up to more than the switch to
	 * auto-converge or post-copy costs, and tern's auto strategy makes
	 * that switch as soon as they stop halving: it never pays for them. */
	return fmin(total_s, first_s * CL_NONCONVERGE_PENALTY);
}

/* ---- the layout ---------------------------------------------------------- */

static void *zalloc(size_t n, size_t size)
{
	return calloc(n ? n : 1, size);
}

static int validate(const struct cl_state *st, struct error *err)
{
	for (size_t v = 0; v < st->n_vms; v++) {
		int h = st->vms[v].host;
		if (h < -1 || h >= (int)st->n_hosts)
			return error_set(err, EINVAL, "vm %s: host index %d, but there are %zu hosts",
					 st->vms[v].name, h, st->n_hosts);
	}
	for (size_t r = 0; r < st->n_rules; r++) {
		const struct cl_rule *rule = &st->rules[r];
		if (rule->n_vms > CL_RULE_MAX_MEMBERS || rule->n_hosts > CL_RULE_MAX_MEMBERS)
			return error_set(err, EINVAL, "rule '%s': %u VMs and %u hosts, at most %d of each",
					 rule->name, rule->n_vms, rule->n_hosts, CL_RULE_MAX_MEMBERS);
		for (unsigned i = 0; i < rule->n_vms; i++)
			if (rule->vms[i] < 0 || (size_t)rule->vms[i] >= st->n_vms)
				return error_set(err, EINVAL,
						 "rule '%s': member %u is VM index %d, but there are %zu VMs",
						 rule->name, i, rule->vms[i], st->n_vms);
		for (unsigned i = 0; i < rule->n_hosts; i++)
			if (rule->hosts[i] < 0 || (size_t)rule->hosts[i] >= st->n_hosts)
				return error_set(err, EINVAL,
						 "rule '%s': host %u is host index %d, but there are %zu hosts",
						 rule->name, i, rule->hosts[i], st->n_hosts);
	}
	return 0;
}

/* Per VM, the rules that name it: compressed rows, built in two passes. */
static int index_rules(struct cl_layout *l, struct error *err)
{
	const struct cl_state *st = l->st;
	size_t members = 0;
	for (size_t r = 0; r < st->n_rules; r++)
		members += st->rules[r].n_vms;
	l->rule_first = zalloc(st->n_vms + 1, sizeof(*l->rule_first));
	l->rule_of = zalloc(members, sizeof(*l->rule_of));
	if (!l->rule_first || !l->rule_of)
		return error_set(err, ENOMEM, "out of memory indexing %zu rules", st->n_rules);
	for (size_t r = 0; r < st->n_rules; r++)
		for (unsigned i = 0; i < st->rules[r].n_vms; i++)
			l->rule_first[st->rules[r].vms[i] + 1]++;
	for (size_t v = 0; v < st->n_vms; v++)
		l->rule_first[v + 1] += l->rule_first[v];
	/* Fill each row from its end, counting its cursor back down to its start. */
	unsigned *fill = zalloc(st->n_vms, sizeof(*fill));
	if (!fill)
		return error_set(err, ENOMEM, "out of memory indexing %zu rules", st->n_rules);
	for (size_t v = 0; v < st->n_vms; v++)
		fill[v] = l->rule_first[v + 1];
	for (size_t r = st->n_rules; r-- > 0;)
		for (unsigned i = 0; i < st->rules[r].n_vms; i++)
			l->rule_of[--fill[st->rules[r].vms[i]]] = (unsigned)r;
	free(fill);
	return 0;
}

static void host_load_changes(struct cl_layout *l, int h, int64_t cpu, int64_t mem)
{
	uint64_t cap = l->st->hosts[h].cpu_milli;
	if (l->usable[h]) {
		double u = ratio(l->cpu[h], cap);
		l->sum_u -= u;
		l->sum_u2 -= u * u;
	}
	l->cpu[h] += (uint64_t)cpu;
	l->mem[h] += (uint64_t)mem;
	if (l->usable[h]) {
		double u = ratio(l->cpu[h], cap);
		l->sum_u += u;
		l->sum_u2 += u * u;
	}
}

int cl_layout_init(struct cl_layout *l, const struct cl_state *st, struct error *err)
{
	memset(l, 0, sizeof(*l));
	l->st = st;
	int rc = validate(st, err);
	if (rc < 0)
		return rc;
	l->at = zalloc(st->n_vms, sizeof(*l->at));
	l->cpu = zalloc(st->n_hosts, sizeof(*l->cpu));
	l->mem = zalloc(st->n_hosts, sizeof(*l->mem));
	l->usable = zalloc(st->n_hosts, sizeof(*l->usable));
	if (!l->at || !l->cpu || !l->mem || !l->usable) {
		cl_layout_free(l);
		return error_set(err, ENOMEM, "out of memory for a layout of %zu hosts and %zu VMs",
				 st->n_hosts, st->n_vms);
	}
	rc = index_rules(l, err);
	if (rc < 0) {
		cl_layout_free(l);
		return rc;
	}
	for (size_t h = 0; h < st->n_hosts; h++) {
		l->usable[h] = counts_for_balance(&st->hosts[h]);
		l->n_usable += l->usable[h];
	}
	for (size_t v = 0; v < st->n_vms; v++) {
		l->at[v] = st->vms[v].host;
		if (l->at[v] >= 0) {
			l->cpu[l->at[v]] += st->vms[v].cpu_milli;
			l->mem[l->at[v]] += st->vms[v].mem_bytes;
		}
	}
	for (size_t h = 0; h < st->n_hosts; h++) {
		if (!l->usable[h])
			continue;
		double u = ratio(l->cpu[h], st->hosts[h].cpu_milli);
		l->sum_u += u;
		l->sum_u2 += u * u;
	}
	return 0;
}

void cl_layout_free(struct cl_layout *l)
{
	free(l->at);
	free(l->cpu);
	free(l->mem);
	free(l->usable);
	free(l->rule_first);
	free(l->rule_of);
	memset(l, 0, sizeof(*l));
}

void cl_layout_move(struct cl_layout *l, int vm, int host)
{
	const struct cl_vm *v = &l->st->vms[vm];
	int from = l->at[vm];
	if (from == host)
		return;
	if (from >= 0)
		host_load_changes(l, from, -(int64_t)v->cpu_milli, -(int64_t)v->mem_bytes);
	if (host >= 0)
		host_load_changes(l, host, v->cpu_milli, (int64_t)v->mem_bytes);
	l->at[vm] = host;
}

void cl_layout_exclude(struct cl_layout *l, int host)
{
	if (!l->usable[host])
		return;
	double u = ratio(l->cpu[host], l->st->hosts[host].cpu_milli);
	l->sum_u -= u;
	l->sum_u2 -= u * u;
	l->usable[host] = false;
	l->n_usable--;
}

double cl_layout_cpu_util(const struct cl_layout *l, int host)
{
	return ratio(l->cpu[host], l->st->hosts[host].cpu_milli);
}

double cl_layout_imbalance(const struct cl_layout *l)
{
	return stddev(l->sum_u, l->sum_u2, l->n_usable);
}

double cl_layout_imbalance_if(const struct cl_layout *l, int vm, int host)
{
	int from = l->at[vm];
	if (from == host)
		return cl_layout_imbalance(l);
	uint64_t c = l->st->vms[vm].cpu_milli;
	double sum = l->sum_u, sum2 = l->sum_u2;
	if (from >= 0 && l->usable[from]) {
		uint64_t cap = l->st->hosts[from].cpu_milli;
		double u = ratio(l->cpu[from], cap), after = ratio(l->cpu[from] - c, cap);
		sum += after - u;
		sum2 += after * after - u * u;
	}
	if (host >= 0 && l->usable[host]) {
		uint64_t cap = l->st->hosts[host].cpu_milli;
		double u = ratio(l->cpu[host], cap), after = ratio(l->cpu[host] + c, cap);
		sum += after - u;
		sum2 += after * after - u * u;
	}
	return stddev(sum, sum2, l->n_usable);
}

/* ---- feasibility --------------------------------------------------------- */

enum misfit {
	FITS,
	MISFIT_NO_HOST,
	MISFIT_DEAD,
	MISFIT_UNSCHEDULABLE,
	MISFIT_EXCLUDED,
	MISFIT_MEMORY,
	MISFIT_CPU,
	MISFIT_RULE,
	MISFIT_KINDS,
};

static enum misfit say(enum misfit m, char *why, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum misfit say(enum misfit m, char *why, size_t size, const char *fmt, ...)
{
	if (why && size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, size, fmt, ap);
		va_end(ap);
	}
	return m;
}

/* Whether `cpu` mcpu and `mem` bytes more fit on host, counting what the
 * layout has there besides vm. */
static enum misfit room(const struct cl_layout *l, const struct cl_policy *pol, int vm, int host,
			uint64_t cpu, uint64_t mem, const char *what, char *why, size_t size)
{
	const struct cl_host *h = &l->st->hosts[host];
	const struct cl_vm *v = &l->st->vms[vm];
	bool here = l->at[vm] == host;
	double share = 1.0 - pol->headroom;
	double mem_used = (double)(l->mem[host] - (here ? v->mem_bytes : 0));
	double mem_limit = share * (double)h->mem_bytes;
	if (mem_used + (double)mem > mem_limit)
		return say(MISFIT_MEMORY, why, size,
			   "host %s memory: %.0f MiB in use + %.0f MiB for %s > %.0f MiB allowed "
			   "(%.0f%% of %.0f MiB)", h->name, mem_used / MIB, (double)mem / MIB, what,
			   mem_limit / MIB, share * 100.0, (double)h->mem_bytes / MIB);
	double cpu_used = (double)(l->cpu[host] - (here ? v->cpu_milli : 0));
	double cpu_limit = share * (double)h->cpu_milli;
	if (cpu_used + (double)cpu > cpu_limit)
		return say(MISFIT_CPU, why, size,
			   "host %s cpu: %.0f mcpu in use + %.0f mcpu for %s > %.0f mcpu allowed "
			   "(%.0f%% of %u mcpu)", h->name, cpu_used, (double)cpu, what, cpu_limit,
			   share * 100.0, h->cpu_milli);
	return FITS;
}

static enum misfit check_capacity(const struct cl_layout *l, const struct cl_policy *pol, int vm,
				  int host, char *why, size_t size)
{
	const struct cl_host *h = &l->st->hosts[host];
	const struct cl_vm *v = &l->st->vms[vm];
	if (!h->alive)
		return say(MISFIT_DEAD, why, size, "host %s is not alive (its lease expired)", h->name);
	if (!h->schedulable)
		return say(MISFIT_UNSCHEDULABLE, why, size, "host %s is unschedulable (drained)",
			   h->name);
	if (!l->usable[host])
		return say(MISFIT_EXCLUDED, why, size, h->cpu_milli ? "host %s is being drained"
			   : "host %s has no CPU capacity", h->name);
	return room(l, pol, vm, host, v->cpu_milli, v->mem_bytes, v->name, why, size);
}

static bool lists_host(const struct cl_rule *r, int host)
{
	for (unsigned i = 0; i < r->n_hosts; i++)
		if (r->hosts[i] == host)
			return true;
	return false;
}

/* The rule's hosts by name, "h1, h2, h3" or "h1, h2, ... (7)". */
static void host_names(const struct cl_state *st, const struct cl_rule *r, char *out, size_t size)
{
	size_t used = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < r->n_hosts && used + 1 < size; i++) {
		int n;
		if (i == 3)
			n = snprintf(out + used, size - used, ", ... (%u)", r->n_hosts);
		else
			n = snprintf(out + used, size - used, "%s%s", i ? ", " : "",
				     st->hosts[r->hosts[i]].name);
		if (n < 0 || i == 3)
			break;
		used += (size_t)n;
	}
}

static enum misfit check_affinity(const struct cl_layout *l, const struct cl_policy *pol,
				  const struct cl_rule *r, int vm, int host, char *why, size_t size)
{
	const struct cl_state *st = l->st;
	uint64_t rest_cpu = 0, rest_mem = 0;
	unsigned rest = 0;
	bool anchored = false;
	for (unsigned i = 0; i < r->n_vms; i++) {
		int m = r->vms[i];
		if (m == vm)
			continue;
		int a = l->at[m];
		/* A member on a dead host is not running anywhere: it follows. */
		if (a < 0 || !st->hosts[a].alive) {
			rest_cpu += st->vms[m].cpu_milli;
			rest_mem += st->vms[m].mem_bytes;
			rest++;
		} else if (a != host) {
			return say(MISFIT_RULE, why, size, "rule '%s' (affinity): %s runs on %s",
				   r->name, st->vms[m].name, st->hosts[a].name);
		} else {
			anchored = true;
		}
	}
	if (anchored || !rest)
		return FITS;
	/* vm is the first of the group to be placed: where it goes, the
	 * others must follow, so the host must hold them all. */
	char what[2 * CL_NAME_MAX + 64];
	snprintf(what, sizeof(what), "%s and the %u other members of rule '%s'",
		 st->vms[vm].name, rest, r->name);
	enum misfit m = room(l, pol, vm, host, st->vms[vm].cpu_milli + rest_cpu,
			     st->vms[vm].mem_bytes + rest_mem, what, why, size);
	return m == FITS ? FITS : MISFIT_RULE;
}

static enum misfit check_rule(const struct cl_layout *l, const struct cl_policy *pol,
			      const struct cl_rule *r, int vm, int host, unsigned what,
			      char *why, size_t size)
{
	const struct cl_state *st = l->st;
	const char *vm_name = st->vms[vm].name, *host_name = st->hosts[host].name;
	char names[200];
	switch (r->kind) {
	case CL_VM_AFFINITY:
		if (!(what & CL_CHECK_AFFINITY))
			return FITS;
		return check_affinity(l, pol, r, vm, host, why, size);
	case CL_VM_ANTI_AFFINITY:
		if (!(what & CL_CHECK_SEPARATION))
			return FITS;
		for (unsigned i = 0; i < r->n_vms; i++)
			if (r->vms[i] != vm && l->at[r->vms[i]] == host)
				return say(MISFIT_RULE, why, size,
					   "rule '%s' (anti-affinity): %s already runs on %s", r->name,
					   st->vms[r->vms[i]].name, host_name);
		return FITS;
	case CL_HOST_AFFINITY:
		if (!(what & CL_CHECK_SEPARATION) || lists_host(r, host))
			return FITS;
		host_names(st, r, names, sizeof(names));
		return say(MISFIT_RULE, why, size, "rule '%s' (host affinity): %s may run only on %s",
			   r->name, vm_name, names);
	case CL_HOST_ANTI_AFFINITY:
		if (!(what & CL_CHECK_SEPARATION) || !lists_host(r, host))
			return FITS;
		return say(MISFIT_RULE, why, size, "rule '%s' (host anti-affinity): %s may not run on %s",
			   r->name, vm_name, host_name);
	}
	return FITS;
}

static enum misfit check(const struct cl_layout *l, const struct cl_policy *pol, int vm, int host,
			 unsigned what, int *rule, char *why, size_t size)
{
	if (vm < 0 || (size_t)vm >= l->st->n_vms)
		return say(MISFIT_NO_HOST, why, size, "VM index %d: there are %zu VMs", vm,
			   l->st->n_vms);
	if (host < 0 || (size_t)host >= l->st->n_hosts)
		return say(MISFIT_NO_HOST, why, size, "host index %d: there are %zu hosts", host,
			   l->st->n_hosts);
	if (what & CL_CHECK_CAPACITY) {
		enum misfit m = check_capacity(l, pol, vm, host, why, size);
		if (m != FITS)
			return m;
	}
	for (unsigned i = l->rule_first[vm]; i < l->rule_first[vm + 1]; i++) {
		const struct cl_rule *r = &l->st->rules[l->rule_of[i]];
		enum misfit m = check_rule(l, pol, r, vm, host, what, why, size);
		if (m != FITS) {
			*rule = (int)l->rule_of[i];
			return m;
		}
	}
	return FITS;
}

bool cl_layout_check(const struct cl_layout *l, const struct cl_policy *pol, int vm, int host,
		     unsigned what, char *why, size_t why_size)
{
	int rule;
	return check(l, pol, vm, host, what, &rule, why, why_size) == FITS;
}

bool cl_fits(const struct cl_state *st, const struct cl_policy *pol, int vm, int host,
	     char *why, size_t why_size)
{
	struct cl_layout l;
	struct error err = { 0 };
	if (cl_layout_init(&l, st, &err) < 0) {
		say(MISFIT_NO_HOST, why, why_size, "%s", err.msg);
		return false;
	}
	bool fits = cl_layout_check(&l, pol, vm, host, CL_CHECK_ALL, why, why_size);
	cl_layout_free(&l);
	return fits;
}

/* ---- choosing a host ----------------------------------------------------- */

#define TALLY_RULES 3

/* Why the hosts did not fit, by class, for one refusal message. */
struct tally {
	unsigned by[MISFIT_KINDS];
	int rule[TALLY_RULES];
	unsigned by_rule[TALLY_RULES];
	unsigned other_rules;
};

static void tally_add(struct tally *t, enum misfit m, int rule)
{
	t->by[m]++;
	if (m != MISFIT_RULE)
		return;
	for (unsigned i = 0; i < TALLY_RULES; i++) {
		if (t->by_rule[i] && t->rule[i] != rule)
			continue;
		t->rule[i] = rule;
		t->by_rule[i]++;
		return;
	}
	t->other_rules++;
}

static size_t append(char *buf, size_t size, size_t used, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static size_t append(char *buf, size_t size, size_t used, const char *fmt, ...)
{
	if (used + 1 >= size)
		return used;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
	if (n < 0)
		return used;
	return used + (size_t)n < size ? used + (size_t)n : size - 1;
}

static int refuse(const struct cl_layout *l, int vm, const struct tally *t, struct error *err)
{
	static const char *const classes[MISFIT_KINDS] = {
		[MISFIT_DEAD] = "not alive",
		[MISFIT_UNSCHEDULABLE] = "unschedulable",
		[MISFIT_EXCLUDED] = "being drained or without CPU",
		[MISFIT_MEMORY] = "short of memory",
		[MISFIT_CPU] = "short of CPU",
	};
	const struct cl_state *st = l->st;
	const struct cl_vm *v = &st->vms[vm];
	char parts[400];
	size_t used = 0;
	const char *sep = "";
	for (int m = MISFIT_DEAD; m < MISFIT_RULE; m++) {
		if (!t->by[m])
			continue;
		used = append(parts, sizeof(parts), used, "%s%u host%s %s", sep, t->by[m],
			      t->by[m] == 1 ? "" : "s", classes[m]);
		sep = ", ";
	}
	for (unsigned i = 0; i < TALLY_RULES && t->by_rule[i]; i++) {
		used = append(parts, sizeof(parts), used, "%s%u host%s excluded by rule '%s'", sep,
			      t->by_rule[i], t->by_rule[i] == 1 ? "" : "s",
			      st->rules[t->rule[i]].name);
		sep = ", ";
	}
	if (t->other_rules)
		used = append(parts, sizeof(parts), used, "%s%u by other rules", sep, t->other_rules);
	if (!used)
		append(parts, sizeof(parts), used, "there are no hosts");
	return error_set(err, ENOSPC, "no host fits vm %s (%.0f MiB, %u mcpu): %s", v->name,
			 (double)v->mem_bytes / MIB, v->cpu_milli, parts);
}

static uint64_t free_mem(const struct cl_layout *l, int host)
{
	uint64_t cap = l->st->hosts[host].mem_bytes;
	return l->mem[host] < cap ? cap - l->mem[host] : 0;
}

/* Whether host a is a better place than host b (the best so far). */
static bool better(const struct cl_layout *l, int a, double imb_a, int b, double imb_b)
{
	if (b < 0 || imb_a < imb_b - SAME_IMBALANCE)
		return true;
	if (imb_a > imb_b + SAME_IMBALANCE)
		return false;
	uint64_t free_a = free_mem(l, a), free_b = free_mem(l, b);
	if (free_a != free_b)
		return free_a > free_b;
	return strcmp(l->st->hosts[a].name, l->st->hosts[b].name) < 0;
}

int cl_layout_place(struct cl_layout *l, const struct cl_policy *pol, int vm,
		    struct cl_decision *out, struct error *err)
{
	const struct cl_state *st = l->st;
	if (vm < 0 || (size_t)vm >= st->n_vms)
		return error_set(err, EINVAL, "VM index %d: there are %zu VMs", vm, st->n_vms);
	int was = l->at[vm];
	cl_layout_move(l, vm, -1);
	double before = cl_layout_imbalance(l);
	struct tally t = { 0 };
	int best = -1;
	double best_imb = 0.0;
	for (size_t h = 0; h < st->n_hosts; h++) {
		int rule = -1;
		enum misfit m = check(l, pol, vm, (int)h, CL_CHECK_ALL, &rule, NULL, 0);
		if (m != FITS) {
			tally_add(&t, m, rule);
			continue;
		}
		double imb = cl_layout_imbalance_if(l, vm, (int)h);
		if (better(l, (int)h, imb, best, best_imb)) {
			best = (int)h;
			best_imb = imb;
		}
	}
	if (best < 0) {
		cl_layout_move(l, vm, was);
		return refuse(l, vm, &t, err);
	}
	cl_layout_move(l, vm, best);
	const struct cl_host *h = &st->hosts[best];
	*out = (struct cl_decision){
		.kind = CL_PLACE, .vm = vm, .from = was, .to = best,
		.imbalance_before = before, .imbalance_after = best_imb,
		.gain = before - best_imb,
	};
	snprintf(out->reason, sizeof(out->reason),
		 "place %s on %s: cpu imbalance %.3f -> %.3f, host cpu %.0f%%, "
		 "%.0f MiB of %.0f MiB free after", st->vms[vm].name, h->name, before, best_imb,
		 cl_layout_cpu_util(l, best) * 100.0, (double)free_mem(l, best) / MIB,
		 (double)h->mem_bytes / MIB);
	return 0;
}

int cl_place(const struct cl_state *st, const struct cl_policy *pol, int vm,
	     struct cl_decision *out, struct error *err)
{
	if (vm < 0 || (size_t)vm >= st->n_vms)
		return error_set(err, EINVAL, "VM index %d: there are %zu VMs", vm, st->n_vms);
	struct cl_layout l;
	int rc = cl_layout_init(&l, st, err);
	if (rc < 0)
		return rc;
	rc = cl_layout_place(&l, pol, vm, out, err);
	cl_layout_free(&l);
	return rc;
}
