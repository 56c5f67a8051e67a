/* balance.c: see balance.h. */
#include "cluster/balance.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)
/* Scores this close (relatively) are a tie, settled by the next criterion. */
#define SAME_SCORE 1e-12

/* ---- plans ---------------------------------------------------------------- */

static void plan_reset(struct cl_plan *p)
{
	memset(p, 0, sizeof(*p));
}

void cl_plan_free(struct cl_plan *p)
{
	free(p->d);
	plan_reset(p);
}

/* What a failed planner had planned goes: all or nothing. */
static int plan_fail(struct cl_plan *p, int rc)
{
	cl_plan_free(p);
	return rc;
}

static struct cl_decision *plan_add(struct cl_plan *p, struct error *err)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct cl_decision *d = realloc(p->d, cap * sizeof(*d));
		if (!d) {
			error_set(err, ENOMEM, "out of memory for %zu decisions", cap);
			return NULL;
		}
		p->d = d;
		p->cap = cap;
	}
	struct cl_decision *d = &p->d[p->n++];
	memset(d, 0, sizeof(*d));
	d->vm = d->from = d->to = -1;
	return d;
}

/* Reasons are cut to fit their buffer; a long VM name loses the tail. */
static void text(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void text(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

int cl_host_find(const struct cl_state *st, const char *name)
{
	for (size_t h = 0; h < st->n_hosts; h++)
		if (!strcmp(st->hosts[h].name, name))
			return (int)h;
	return -1;
}

/* ---- moves ---------------------------------------------------------------- */

static uint64_t link_between(const struct cl_state *st, int from, int to)
{
	uint64_t a = from >= 0 ? st->hosts[from].link_bytes_s : UINT64_MAX;
	uint64_t b = to >= 0 ? st->hosts[to].link_bytes_s : UINT64_MAX;
	uint64_t slower = a < b ? a : b;
	return slower == UINT64_MAX ? 0 : slower;
}

static double move_cost(const struct cl_state *st, const struct cl_policy *pol, int vm, int from,
			int to)
{
	return cl_migration_cost_s(&st->vms[vm], link_between(st, from, to), pol->downtime_ms);
}

/* The CL_MOVE decision of vm from -> to in l, before the layout changes. */
static void describe_move(const struct cl_layout *l, const struct cl_policy *pol,
			  struct cl_decision *d, int vm, int from, int to, const char *what)
{
	const struct cl_state *st = l->st;
	const struct cl_vm *v = &st->vms[vm];
	d->kind = CL_MOVE;
	d->vm = vm;
	d->from = from;
	d->to = to;
	d->imbalance_before = cl_layout_imbalance(l);
	d->imbalance_after = cl_layout_imbalance_if(l, vm, to);
	d->gain = d->imbalance_before - d->imbalance_after;
	d->cost_s = move_cost(st, pol, vm, from, to);
	text(d->reason, sizeof(d->reason),
	     "%s%s %s -> %s: cpu imbalance %.4g -> %.4g (gain %.3g), cost %.1f s "
	     "(%.0f MiB, dirty %.0f MiB/s, link %.0f MiB/s)", what, v->name,
	     from >= 0 ? st->hosts[from].name : "-", st->hosts[to].name, d->imbalance_before,
	     d->imbalance_after, d->gain, d->cost_s, (double)v->mem_bytes / MIB,
	     (double)v->dirty_bytes_s / MIB, (double)link_between(st, from, to) / MIB);
}

static int record_move(struct cl_layout *l, const struct cl_policy *pol, struct cl_plan *p,
		       int vm, int to, const char *what, struct error *err)
{
	struct cl_decision *d = plan_add(p, err);
	if (!d)
		return -ENOMEM;
	describe_move(l, pol, d, vm, l->at[vm], to, what);
	cl_layout_move(l, vm, to);
	return 0;
}

static bool migrating(const struct cl_state *st, int vm)
{
	return st->vms[vm].last_moved_ms > st->now_ms;
}

static bool cooling(const struct cl_state *st, const struct cl_policy *pol, int vm)
{
	int64_t last = st->vms[vm].last_moved_ms;
	return last && (migrating(st, vm) || st->now_ms - last < pol->cooldown_ms);
}

/* How many migrations a round may plan: they all start at once. */
static unsigned move_limit(const struct cl_state *st, const struct cl_policy *pol)
{
	unsigned free_slots = st->migrations_in_flight >= pol->max_concurrent ? 0
			      : pol->max_concurrent - st->migrations_in_flight;
	return free_slots < pol->max_moves ? free_slots : pol->max_moves;
}

/* ---- DRS-style balancing -------------------------------------------------- */

enum { ROLE_SOURCE = 1, ROLE_DEST = 2 };

struct move {
	int vm, to;
	double gain, score;
};

struct search {
	struct cl_layout l;
	int *order;                /* usable hosts, most loaded first */
	unsigned char *role;       /* per host */
	bool *moved;               /* per VM: moved in this plan */
};

static void search_free(struct search *s)
{
	cl_layout_free(&s->l);
	free(s->order);
	free(s->role);
	free(s->moved);
}

static int search_init(struct search *s, const struct cl_state *st, struct error *err)
{
	memset(s, 0, sizeof(*s));
	int rc = cl_layout_init(&s->l, st, err);
	if (rc < 0)
		return rc;
	s->order = calloc(st->n_hosts + 1, sizeof(*s->order));
	s->role = calloc(st->n_hosts + 1, sizeof(*s->role));
	s->moved = calloc(st->n_vms + 1, sizeof(*s->moved));
	if (!s->order || !s->role || !s->moved) {
		search_free(s);
		return error_set(err, ENOMEM, "out of memory planning for %zu hosts", st->n_hosts);
	}
	return 0;
}

static int by_load(const void *a, const void *b, void *ctx)
{
	const struct cl_layout *l = ctx;
	int x = *(const int *)a, y = *(const int *)b;
	double ux = cl_layout_cpu_util(l, x), uy = cl_layout_cpu_util(l, y);
	if (ux != uy)
		return ux > uy ? -1 : 1;
	return x - y;
}

/* Marks where this step takes VMs from and sends them to; returns the
 * destinations: all of s->order on a small cluster, else its tail. */
static const int *pick_roles(struct search *s, size_t *n_dests)
{
	const struct cl_state *st = s->l.st;
	size_t n = 0;
	for (size_t h = 0; h < st->n_hosts; h++) {
		s->role[h] = 0;
		if (s->l.usable[h])
			s->order[n++] = (int)h;
	}
	if (n <= CL_FULL_SEARCH_HOSTS) {
		for (size_t i = 0; i < n; i++)
			s->role[s->order[i]] = ROLE_SOURCE | ROLE_DEST;
		*n_dests = n;
		return s->order;
	}
	qsort_r(s->order, n, sizeof(*s->order), by_load, &s->l);
	for (size_t i = 0; i < CL_SOURCE_HOSTS; i++)
		s->role[s->order[i]] |= ROLE_SOURCE;
	for (size_t i = n - CL_DEST_HOSTS; i < n; i++)
		s->role[s->order[i]] |= ROLE_DEST;
	*n_dests = CL_DEST_HOSTS;
	return s->order + n - CL_DEST_HOSTS;
}

static bool beats(const struct cl_state *st, const struct move *a, const struct move *b)
{
	if (b->vm < 0)
		return true;
	double tie = SAME_SCORE * fmax(fabs(a->score), fabs(b->score));
	if (fabs(a->score - b->score) > tie)
		return a->score > b->score;
	if (a->gain != b->gain)
		return a->gain > b->gain;
	int by_name = strcmp(st->hosts[a->to].name, st->hosts[b->to].name);
	if (by_name)
		return by_name < 0;
	return a->vm < b->vm;
}

/* The move with the most imbalance cut per migration second, vm -1 if none
 * cuts at least min_gain. */
static struct move best_move(struct search *s, const struct cl_policy *pol)
{
	const struct cl_state *st = s->l.st;
	struct move best = { .vm = -1, .to = -1 };
	size_t n_dests;
	const int *dests = pick_roles(s, &n_dests);
	double now = cl_layout_imbalance(&s->l);
	for (size_t v = 0; v < st->n_vms; v++) {
		int from = s->l.at[v];
		if (from < 0 || !(s->role[from] & ROLE_SOURCE) || s->moved[v] ||
		    cooling(st, pol, (int)v))
			continue;
		for (size_t i = 0; i < n_dests; i++) {
			int to = dests[i];
			if (to == from)
				continue;
			double gain = now - cl_layout_imbalance_if(&s->l, (int)v, to);
			if (gain <= 0.0 || gain < pol->min_gain)
				continue;
			double cost = move_cost(st, pol, (int)v, from, to);
			if (!isfinite(cost))
				continue;
			struct move m = { .vm = (int)v, .to = to, .gain = gain,
					  .score = gain / (cost + CL_MOVE_OVERHEAD_S) };
			/* The feasibility test is the dearest part: only for a winner. */
			if (beats(st, &m, &best) &&
			    cl_layout_check(&s->l, pol, (int)v, to, CL_CHECK_ALL, NULL, 0))
				best = m;
		}
	}
	return best;
}

static unsigned count_cooling(const struct cl_layout *l, const struct cl_policy *pol)
{
	unsigned n = 0;
	for (size_t v = 0; v < l->st->n_vms; v++)
		if (l->at[v] >= 0 && l->usable[l->at[v]] && cooling(l->st, pol, (int)v))
			n++;
	return n;
}

int cl_balance_plan(const struct cl_state *st, const struct cl_policy *pol,
		    struct cl_plan *out, struct error *err)
{
	plan_reset(out);
	struct search s;
	int rc = search_init(&s, st, err);
	if (rc < 0)
		return rc;
	double start = cl_layout_imbalance(&s.l), target = pol->imbalance_threshold * CL_HYSTERESIS;
	out->imbalance_before = out->imbalance_after = start;
	unsigned limit = move_limit(st, pol);
	if (start <= pol->imbalance_threshold) {
		text(out->summary, sizeof(out->summary),
		     "balance: cpu imbalance %.4g within the threshold %.4g: nothing to do", start,
		     pol->imbalance_threshold);
		goto done;
	}
	if (!limit) {
		text(out->summary, sizeof(out->summary),
		     "balance: cpu imbalance %.4g over the threshold %.4g, but %u migrations are in "
		     "flight (max_concurrent %u): nothing planned this round", start,
		     pol->imbalance_threshold, st->migrations_in_flight, pol->max_concurrent);
		goto done;
	}
	for (;;) {
		double now = cl_layout_imbalance(&s.l);
		if (now <= target) {
			text(out->summary, sizeof(out->summary),
			     "balance: cpu imbalance %.4g -> %.4g with %zu moves: under the stop "
			     "target %.4g (threshold %.4g x %.1f)", start, now, out->n, target,
			     pol->imbalance_threshold, CL_HYSTERESIS);
			break;
		}
		if (out->n >= limit) {
			if (limit < pol->max_moves)
				text(out->summary, sizeof(out->summary),
				     "balance: cpu imbalance %.4g -> %.4g: stopped at %zu moves, as many "
				     "as may run at once (max_concurrent %u, %u in flight)", start, now,
				     out->n, pol->max_concurrent, st->migrations_in_flight);
			else
				text(out->summary, sizeof(out->summary),
				     "balance: cpu imbalance %.4g -> %.4g: stopped at max_moves %u",
				     start, now, pol->max_moves);
			break;
		}
		struct move m = best_move(&s, pol);
		if (m.vm < 0) {
			text(out->summary, sizeof(out->summary),
			     "balance: cpu imbalance %.4g -> %.4g with %zu moves: no further move "
			     "cuts it by min_gain %.3g or more (%u VMs in cooldown)", start, now,
			     out->n, pol->min_gain, count_cooling(&s.l, pol));
			break;
		}
		rc = record_move(&s.l, pol, out, m.vm, m.to, "move ", err);
		if (rc < 0) {
			search_free(&s);
			return plan_fail(out, rc);
		}
		s.moved[m.vm] = true;
	}
done:
	out->imbalance_after = cl_layout_imbalance(&s.l);
	search_free(&s);
	return 0;
}

/* ---- the greedy baseline -------------------------------------------------- */

/* The most (sign 1) or least (sign -1) loaded usable host, -1 if none. */
static int extreme_host(const struct cl_layout *l, int sign)
{
	int pick = -1;
	for (size_t h = 0; h < l->st->n_hosts; h++) {
		if (!l->usable[h])
			continue;
		double u = cl_layout_cpu_util(l, (int)h);
		if (pick < 0 || sign * (u - cl_layout_cpu_util(l, pick)) > 0)
			pick = (int)h;
	}
	return pick;
}

int cl_greedy_baseline_plan(const struct cl_state *st, const struct cl_policy *pol,
			    struct cl_plan *out, struct error *err)
{
	plan_reset(out);
	struct search s;
	int rc = search_init(&s, st, err);
	if (rc < 0)
		return rc;
	double start = cl_layout_imbalance(&s.l);
	out->imbalance_before = start;
	unsigned limit = move_limit(st, pol);
	if (start <= pol->imbalance_threshold)
		limit = 0;
	while (out->n < limit && cl_layout_imbalance(&s.l) > pol->imbalance_threshold) {
		int most = extreme_host(&s.l, 1), least = extreme_host(&s.l, -1);
		if (most < 0 || most == least)
			break;
		double now = cl_layout_imbalance(&s.l);
		int pick = -1;
		for (size_t v = 0; v < st->n_vms; v++) {
			if (s.l.at[v] != most || s.moved[v] || migrating(st, (int)v))
				continue;
			if (pick >= 0 && st->vms[v].cpu_milli <= st->vms[pick].cpu_milli)
				continue;
			if (cl_layout_imbalance_if(&s.l, (int)v, least) < now - SAME_SCORE &&
			    cl_layout_check(&s.l, pol, (int)v, least, CL_CHECK_CAPACITY, NULL, 0))
				pick = (int)v;
		}
		if (pick < 0)
			break;
		rc = record_move(&s.l, pol, out, pick, least, "greedy: move ", err);
		if (rc < 0) {
			search_free(&s);
			return plan_fail(out, rc);
		}
		s.moved[pick] = true;
	}
	out->imbalance_after = cl_layout_imbalance(&s.l);
	text(out->summary, sizeof(out->summary), "greedy: cpu imbalance %.4g -> %.4g with %zu moves",
	     start, out->imbalance_after, out->n);
	search_free(&s);
	return 0;
}

/* ---- placing a host's VMs elsewhere: drain and HA -------------------------- */

/* The VMs on host, largest first (memory, then CPU): the hard ones get the
 * choice of hosts. */
struct evacuation {
	int *vms;
	size_t n;
	bool *pending;             /* per VM: still to be placed */
	int *queue;                /* per VM: a group being placed */
};

static int by_size(const void *a, const void *b, void *ctx)
{
	const struct cl_state *st = ctx;
	const struct cl_vm *x = &st->vms[*(const int *)a], *y = &st->vms[*(const int *)b];
	if (x->mem_bytes != y->mem_bytes)
		return x->mem_bytes > y->mem_bytes ? -1 : 1;
	if (x->cpu_milli != y->cpu_milli)
		return x->cpu_milli > y->cpu_milli ? -1 : 1;
	return *(const int *)a - *(const int *)b;
}

static void evacuation_free(struct evacuation *ev)
{
	free(ev->vms);
	free(ev->pending);
	free(ev->queue);
}

/* Takes host's VMs off it in l, to be placed again. */
static int evacuation_init(struct evacuation *ev, struct cl_layout *l, int host, struct error *err)
{
	const struct cl_state *st = l->st;
	memset(ev, 0, sizeof(*ev));
	ev->vms = calloc(st->n_vms + 1, sizeof(*ev->vms));
	ev->pending = calloc(st->n_vms + 1, sizeof(*ev->pending));
	ev->queue = calloc(st->n_vms + 1, sizeof(*ev->queue));
	if (!ev->vms || !ev->pending || !ev->queue) {
		evacuation_free(ev);
		return error_set(err, ENOMEM, "out of memory for the VMs of %s", st->hosts[host].name);
	}
	for (size_t v = 0; v < st->n_vms; v++)
		if (l->at[v] == host)
			ev->vms[ev->n++] = (int)v;
	qsort_r(ev->vms, ev->n, sizeof(*ev->vms), by_size, (void *)st);
	for (size_t i = 0; i < ev->n; i++) {
		ev->pending[ev->vms[i]] = true;
		cl_layout_move(l, ev->vms[i], -1);
	}
	return 0;
}

/* Queues vm and, transitively, the pending members of its affinity
 * groups: they are placed one right after the other, so that no other VM
 * takes the room the first one's host was chosen to have for them. */
static size_t queue_group(const struct cl_layout *l, struct evacuation *ev, int vm)
{
	const struct cl_state *st = l->st;
	size_t n = 0;
	ev->queue[n++] = vm;
	ev->pending[vm] = false;
	for (size_t q = 0; q < n; q++) {
		int v = ev->queue[q];
		for (unsigned i = l->rule_first[v]; i < l->rule_first[v + 1]; i++) {
			const struct cl_rule *r = &st->rules[l->rule_of[i]];
			if (r->kind != CL_VM_AFFINITY)
				continue;
			for (unsigned k = 0; k < r->n_vms; k++) {
				if (!ev->pending[r->vms[k]])
					continue;
				ev->pending[r->vms[k]] = false;
				ev->queue[n++] = r->vms[k];
			}
		}
	}
	return n;
}

int cl_drain_plan(const struct cl_state *st, const struct cl_policy *pol, int host,
		  struct cl_plan *out, struct error *err)
{
	plan_reset(out);
	if (host < 0 || (size_t)host >= st->n_hosts)
		return error_set(err, EINVAL, "drain: no host with index %d (there are %zu hosts)",
				 host, st->n_hosts);
	const char *name = st->hosts[host].name;
	if (!st->hosts[host].alive)
		return error_set(err, EINVAL, "drain %s: the host is not alive; HA restarts its VMs, "
				 "a drain could not migrate them", name);
	struct cl_layout l;
	int rc = cl_layout_init(&l, st, err);
	if (rc < 0)
		return rc;
	if (l.n_usable - (l.usable[host] ? 1u : 0u) == 0) {
		cl_layout_free(&l);
		return error_set(err, ENOSPC, "drain %s: it is the last alive schedulable host; its "
				 "VMs would have nowhere to go", name);
	}
	out->imbalance_before = cl_layout_imbalance(&l);
	cl_layout_exclude(&l, host);
	struct evacuation ev;
	rc = evacuation_init(&ev, &l, host, err);
	if (rc < 0) {
		cl_layout_free(&l);
		return rc;
	}
	char what[CL_NAME_MAX + 16];
	text(what, sizeof(what), "drain %s: move ", name);
	double cost = 0.0;
	for (size_t i = 0; i < ev.n && rc == 0; i++) {
		if (!ev.pending[ev.vms[i]])
			continue;
		size_t n = queue_group(&l, &ev, ev.vms[i]);
		for (size_t q = 0; q < n && rc == 0; q++) {
			int vm = ev.queue[q];
			struct cl_decision placed;
			rc = cl_layout_place(&l, pol, vm, &placed, err);
			if (rc < 0)
				break;
			/* Described as the move it is, from the host being drained. */
			cl_layout_move(&l, vm, host);
			rc = record_move(&l, pol, out, vm, placed.to, what, err);
			if (rc == 0)
				cost += out->d[out->n - 1].cost_s;
		}
	}
	if (rc < 0) {
		error_wrap(err, "drain %s refused, nothing moved", name);
		evacuation_free(&ev);
		cl_layout_free(&l);
		return plan_fail(out, rc);
	}
	out->imbalance_after = cl_layout_imbalance(&l);
	text(out->summary, sizeof(out->summary),
	     "drain %s: %zu VMs to other hosts, %.1f s of migration predicted; cpu imbalance "
	     "%.4g -> %.4g over the hosts that remain", name, out->n, cost, out->imbalance_before,
	     out->imbalance_after);
	evacuation_free(&ev);
	cl_layout_free(&l);
	return 0;
}

int cl_ha_plan(const struct cl_state *st, const struct cl_policy *pol, int dead_host,
	       struct cl_plan *out, struct error *err)
{
	plan_reset(out);
	if (dead_host < 0 || (size_t)dead_host >= st->n_hosts)
		return error_set(err, EINVAL, "HA: no host with index %d (there are %zu hosts)",
				 dead_host, st->n_hosts);
	const char *name = st->hosts[dead_host].name;
	if (st->hosts[dead_host].alive)
		return error_set(err, EINVAL, "HA %s: the host is alive (its lease is held); "
				 "restarting its VMs elsewhere would run them twice", name);
	struct cl_layout l;
	int rc = cl_layout_init(&l, st, err);
	if (rc < 0)
		return rc;
	out->imbalance_before = cl_layout_imbalance(&l);
	struct evacuation ev;
	rc = evacuation_init(&ev, &l, dead_host, err);
	if (rc < 0) {
		cl_layout_free(&l);
		return rc;
	}
	size_t placed = 0;
	for (size_t i = 0; i < ev.n; i++) {
		if (!ev.pending[ev.vms[i]])
			continue;
		size_t n = queue_group(&l, &ev, ev.vms[i]);
		for (size_t q = 0; q < n; q++) {
			int vm = ev.queue[q];
			struct cl_decision *d = plan_add(out, err);
			if (!d) {
				evacuation_free(&ev);
				cl_layout_free(&l);
				return plan_fail(out, -ENOMEM);
			}
			struct error why = { 0 };
			if (cl_layout_place(&l, pol, vm, d, &why) < 0) {
				*d = (struct cl_decision){ .kind = CL_UNPLACED, .vm = vm, .from = dead_host,
							   .to = -1 };
				text(d->reason, sizeof(d->reason), "cannot restart: %s", why.msg);
				continue;
			}
			d->from = dead_host;
			placed++;
			text(d->reason, sizeof(d->reason),
			     "restart %s on %s (%s's lease expired): cpu imbalance %.4g -> %.4g",
			     st->vms[vm].name, st->hosts[d->to].name, name, d->imbalance_before,
			     d->imbalance_after);
		}
	}
	out->imbalance_after = cl_layout_imbalance(&l);
	text(out->summary, sizeof(out->summary),
	     "HA %s: %zu of its %zu VMs restarted elsewhere%s", name, placed, ev.n,
	     placed < ev.n ? "; the others fit nowhere (see their reasons)" : "");
	evacuation_free(&ev);
	cl_layout_free(&l);
	return 0;
}

/* ---- consolidation -------------------------------------------------------- */

/* Consolidation packs twice. First-fit decreasing into all the usable
 * hosts says how few of them suffice, k; then the same packing with the
 * VMs of the first k hosts left where they are, only the other hosts' VMs
 * placed, usually fits too and moves far fewer VMs: it is taken when it
 * fits, the plain packing otherwise. */
struct packing {
	const struct cl_state *st;
	int *hosts;                 /* usable hosts, largest and then fullest first */
	size_t n_hosts;
	int *vms;                   /* the VMs on usable hosts, largest first */
	size_t n_vms;
	bool *allowed;              /* per host: may be packed into */
	bool *open;                 /* per host: holds a VM of the packing */
	bool *pending;              /* per VM: still to pack */
};

static void packing_free(struct packing *pk)
{
	free(pk->hosts);
	free(pk->vms);
	free(pk->allowed);
	free(pk->open);
	free(pk->pending);
	memset(pk, 0, sizeof(*pk));
}

static int by_capacity(const void *a, const void *b, void *ctx)
{
	const struct cl_layout *l = ctx;
	int x = *(const int *)a, y = *(const int *)b;
	const struct cl_host *hx = &l->st->hosts[x], *hy = &l->st->hosts[y];
	if (hx->mem_bytes != hy->mem_bytes)
		return hx->mem_bytes > hy->mem_bytes ? -1 : 1;
	if (hx->cpu_milli != hy->cpu_milli)
		return hx->cpu_milli > hy->cpu_milli ? -1 : 1;
	/* Of equal hosts the fullest first: fewer of its VMs have to move. */
	if (l->mem[x] != l->mem[y])
		return l->mem[x] > l->mem[y] ? -1 : 1;
	return strcmp(hx->name, hy->name);
}

static int packing_init(struct packing *pk, const struct cl_layout *now, struct error *err)
{
	const struct cl_state *st = now->st;
	memset(pk, 0, sizeof(*pk));
	pk->st = st;
	pk->hosts = calloc(st->n_hosts + 1, sizeof(*pk->hosts));
	pk->vms = calloc(st->n_vms + 1, sizeof(*pk->vms));
	pk->allowed = calloc(st->n_hosts + 1, sizeof(*pk->allowed));
	pk->open = calloc(st->n_hosts + 1, sizeof(*pk->open));
	pk->pending = calloc(st->n_vms + 1, sizeof(*pk->pending));
	if (!pk->hosts || !pk->vms || !pk->allowed || !pk->open || !pk->pending) {
		packing_free(pk);
		return error_set(err, ENOMEM, "out of memory consolidating %zu hosts", st->n_hosts);
	}
	for (size_t h = 0; h < st->n_hosts; h++)
		if (now->usable[h])
			pk->hosts[pk->n_hosts++] = (int)h;
	qsort_r(pk->hosts, pk->n_hosts, sizeof(*pk->hosts), by_capacity, (void *)now);
	for (size_t v = 0; v < st->n_vms; v++)
		if (now->at[v] >= 0 && now->usable[now->at[v]])
			pk->vms[pk->n_vms++] = (int)v;
	qsort_r(pk->vms, pk->n_vms, sizeof(*pk->vms), by_size, (void *)st);
	return 0;
}

/* Where vm goes: its own host if that is in the packing anyway, else the
 * first allowed host it fits. */
static int first_fit(const struct packing *pk, const struct cl_layout *l,
		     const struct cl_policy *pol, int vm)
{
	int was = pk->st->vms[vm].host;
	if (pk->open[was] && pk->allowed[was] &&
	    cl_layout_check(l, pol, vm, was, CL_CHECK_ALL, NULL, 0))
		return was;
	for (size_t i = 0; i < pk->n_hosts; i++) {
		int h = pk->hosts[i];
		if (pk->allowed[h] && cl_layout_check(l, pol, vm, h, CL_CHECK_ALL, NULL, 0))
			return h;
	}
	return -1;
}

static int pack_one(struct packing *pk, struct cl_layout *l, const struct cl_policy *pol, int vm,
		    struct error *err)
{
	int to = first_fit(pk, l, pol, vm);
	if (to < 0) {
		char why[256];
		int was = pk->st->vms[vm].host;
		cl_layout_check(l, pol, vm, was, CL_CHECK_ALL, why, sizeof(why));
		return error_set(err, ENOSPC, "first-fit decreasing finds no host for vm %s "
				 "(on its own host: %s)", pk->st->vms[vm].name, why);
	}
	cl_layout_move(l, vm, to);
	pk->open[to] = true;
	return 0;
}

/* Packs the pending VMs, largest first, an affinity group as soon as its
 * first member is in. */
static int fill(struct packing *pk, struct cl_layout *l, const struct cl_policy *pol,
		struct error *err)
{
	const struct cl_state *st = pk->st;
	for (size_t i = 0; i < pk->n_vms; i++) {
		int vm = pk->vms[i];
		if (!pk->pending[vm])
			continue;
		pk->pending[vm] = false;
		int rc = pack_one(pk, l, pol, vm, err);
		if (rc < 0)
			return rc;
		for (unsigned k = l->rule_first[vm]; k < l->rule_first[vm + 1]; k++) {
			const struct cl_rule *r = &st->rules[l->rule_of[k]];
			if (r->kind != CL_VM_AFFINITY)
				continue;
			for (unsigned j = 0; j < r->n_vms; j++) {
				int m = r->vms[j];
				if (!pk->pending[m])
					continue;
				pk->pending[m] = false;
				rc = pack_one(pk, l, pol, m, err);
				if (rc < 0)
					return rc;
			}
		}
	}
	return 0;
}

static int pack_all(struct packing *pk, struct cl_layout *l, const struct cl_policy *pol,
		    struct error *err)
{
	memset(pk->open, 0, pk->st->n_hosts * sizeof(*pk->open));
	for (size_t i = 0; i < pk->n_hosts; i++)
		pk->allowed[pk->hosts[i]] = true;
	for (size_t i = 0; i < pk->n_vms; i++) {
		pk->pending[pk->vms[i]] = true;
		cl_layout_move(l, pk->vms[i], -1);
	}
	return fill(pk, l, pol, err);
}

static int pack_keeping(struct packing *pk, struct cl_layout *l, const struct cl_policy *pol,
			size_t keep, struct error *err)
{
	memset(pk->open, 0, pk->st->n_hosts * sizeof(*pk->open));
	memset(pk->allowed, 0, pk->st->n_hosts * sizeof(*pk->allowed));
	for (size_t i = 0; i < keep && i < pk->n_hosts; i++)
		pk->allowed[pk->hosts[i]] = pk->open[pk->hosts[i]] = true;
	for (size_t i = 0; i < pk->n_vms; i++) {
		int vm = pk->vms[i];
		pk->pending[vm] = !pk->allowed[pk->st->vms[vm].host];
		if (pk->pending[vm])
			cl_layout_move(l, vm, -1);
	}
	return fill(pk, l, pol, err);
}

/* The moves from the state to `to`, in an order that keeps capacity and
 * separation at every step: a move waits until its destination has room,
 * i.e. until the VMs leaving it have left. */
static int order_moves(const struct cl_state *st, const struct cl_layout *to,
		       const struct cl_policy *pol, struct cl_plan *out, struct error *err)
{
	struct cl_layout now;
	int rc = cl_layout_init(&now, st, err);
	if (rc < 0)
		return rc;
	const unsigned checks = CL_CHECK_CAPACITY | CL_CHECK_SEPARATION;
	size_t left = 0;
	for (size_t v = 0; v < st->n_vms; v++)
		left += now.at[v] != to->at[v];
	bool progress = true;
	while (left && progress && rc == 0) {
		progress = false;
		for (size_t v = 0; v < st->n_vms && rc == 0; v++) {
			int dest = to->at[v];
			if (now.at[v] == dest || !cl_layout_check(&now, pol, (int)v, dest, checks, NULL, 0))
				continue;
			rc = record_move(&now, pol, out, (int)v, dest, "consolidate: move ", err);
			left--;
			progress = true;
		}
	}
	for (size_t v = 0; v < st->n_vms && rc == 0 && left; v++) {
		if (now.at[v] == to->at[v])
			continue;
		char why[256];
		cl_layout_check(&now, pol, (int)v, to->at[v], checks, why, sizeof(why));
		rc = error_set(err, ENOSPC, "consolidation needs a spare host: %zu moves wait on "
			       "each other, e.g. vm %s: %s", left, st->vms[v].name, why);
	}
	cl_layout_free(&now);
	return rc;
}

/* Marks the hosts that hold a VM in l; returns how many of `hosts` do. */
static size_t hosts_in_use(const struct cl_layout *l, const int *hosts, size_t n, bool *occupied)
{
	memset(occupied, 0, l->st->n_hosts * sizeof(*occupied));
	for (size_t v = 0; v < l->st->n_vms; v++)
		if (l->at[v] >= 0)
			occupied[l->at[v]] = true;
	size_t used = 0;
	for (size_t i = 0; i < n; i++)
		used += occupied[hosts[i]];
	return used;
}

static int power_offs(const struct packing *pk, const bool *occupied, size_t in_use,
		      struct cl_plan *out, struct error *err)
{
	for (size_t i = 0; i < pk->n_hosts; i++) {
		int h = pk->hosts[i];
		if (occupied[h])
			continue;
		struct cl_decision *d = plan_add(out, err);
		if (!d)
			return -ENOMEM;
		d->kind = CL_POWER_OFF;
		d->from = h;
		d->imbalance_before = d->imbalance_after = out->imbalance_after;
		text(d->reason, sizeof(d->reason),
		     "power off %s: it holds no VM after consolidation (%zu of %zu hosts in use)",
		     pk->st->hosts[h].name, in_use, pk->n_hosts);
	}
	return 0;
}

int cl_consolidate_plan(const struct cl_state *st, const struct cl_policy *pol,
			struct cl_plan *out, struct error *err)
{
	plan_reset(out);
	struct cl_layout before, packed, kept;
	struct packing pk = { 0 };
	bool *occupied = NULL;
	memset(&packed, 0, sizeof(packed));
	memset(&kept, 0, sizeof(kept));
	int rc = cl_layout_init(&before, st, err);
	if (rc < 0)
		return rc;
	if ((rc = packing_init(&pk, &before, err)) < 0 ||
	    (rc = cl_layout_init(&packed, st, err)) < 0 ||
	    (rc = cl_layout_init(&kept, st, err)) < 0)
		goto fail;
	occupied = calloc(st->n_hosts + 1, sizeof(*occupied));
	if (!occupied) {
		rc = error_set(err, ENOMEM, "out of memory consolidating %zu hosts", st->n_hosts);
		goto fail;
	}
	out->imbalance_before = out->imbalance_after = cl_layout_imbalance(&before);
	size_t used_before = hosts_in_use(&before, pk.hosts, pk.n_hosts, occupied);
	rc = pack_all(&pk, &packed, pol, err);
	if (rc < 0)
		goto fail;
	const struct cl_layout *final = &packed;
	size_t used_after = hosts_in_use(&packed, pk.hosts, pk.n_hosts, occupied);
	struct error ignored = { 0 };
	if (used_after < used_before && pack_keeping(&pk, &kept, pol, used_after, &ignored) == 0)
		final = &kept;
	used_after = hosts_in_use(final, pk.hosts, pk.n_hosts, occupied);
	if (used_after >= used_before) {
		text(out->summary, sizeof(out->summary),
		     "consolidate: %zu of %zu hosts in use, and first-fit decreasing needs %zu: "
		     "nothing to move", used_before, pk.n_hosts, used_after);
		used_after = hosts_in_use(&before, pk.hosts, pk.n_hosts, occupied);
	} else {
		rc = order_moves(st, final, pol, out, err);
		if (rc < 0)
			goto fail;
		out->imbalance_after = cl_layout_imbalance(final);
		double cost = 0.0;
		for (size_t i = 0; i < out->n; i++)
			cost += out->d[i].cost_s;
		text(out->summary, sizeof(out->summary),
		     "consolidate: %zu -> %zu hosts in use of %zu, %zu moves, %.1f s of migration "
		     "predicted", used_before, used_after, pk.n_hosts, out->n, cost);
	}
	rc = power_offs(&pk, occupied, used_after, out, err);
	if (rc < 0)
		goto fail;
	goto done;
fail:
	error_wrap(err, "consolidation refused, nothing moved");
	plan_fail(out, rc);
done:
	free(occupied);
	cl_layout_free(&kept);
	cl_layout_free(&packed);
	cl_layout_free(&before);
	packing_free(&pk);
	return rc;
}

/* ---- rules ---------------------------------------------------------------- */

static bool shares_two(const struct cl_rule *a, const struct cl_rule *b, int *x, int *y)
{
	int found = -1;
	for (unsigned i = 0; i < a->n_vms; i++)
		for (unsigned j = 0; j < b->n_vms; j++) {
			if (a->vms[i] != b->vms[j] || a->vms[i] == found)
				continue;
			if (found >= 0) {
				*x = found;
				*y = a->vms[i];
				return true;
			}
			found = a->vms[i];
		}
	return false;
}

static unsigned distinct_vms(const struct cl_rule *r)
{
	unsigned n = 0;
	for (unsigned i = 0; i < r->n_vms; i++) {
		bool seen = false;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = r->vms[j] == r->vms[i];
		n += !seen;
	}
	return n;
}

static int check_group_fits(const struct cl_layout *l, const struct cl_policy *pol,
			    const struct cl_rule *r, struct error *err)
{
	const struct cl_state *st = l->st;
	double mem = 0.0, cpu = 0.0, share = 1.0 - pol->headroom;
	for (unsigned i = 0; i < r->n_vms; i++) {
		bool seen = false;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = r->vms[j] == r->vms[i];
		if (seen)
			continue;
		mem += (double)st->vms[r->vms[i]].mem_bytes;
		cpu += st->vms[r->vms[i]].cpu_milli;
	}
	double max_mem = 0.0, max_cpu = 0.0;
	for (size_t h = 0; h < st->n_hosts; h++) {
		if (!l->usable[h])
			continue;
		double hm = share * (double)st->hosts[h].mem_bytes;
		double hc = share * st->hosts[h].cpu_milli;
		if (mem <= hm && cpu <= hc)
			return 0;
		max_mem = fmax(max_mem, hm);
		max_cpu = fmax(max_cpu, hc);
	}
	return error_set(err, EINVAL, "rule '%s' (affinity): its %u VMs need %.0f MiB and %.0f mcpu "
			 "on one host; no alive schedulable host has that with %.0f%% headroom "
			 "(the most: %.0f MiB, %.0f mcpu)", r->name, distinct_vms(r), mem / MIB, cpu,
			 pol->headroom * 100.0, max_mem / MIB, max_cpu);
}

static int check_rule(const struct cl_layout *l, const struct cl_policy *pol,
		      const struct cl_rule *r, struct error *err)
{
	unsigned listed_usable = 0;
	for (unsigned i = 0; i < r->n_hosts; i++) {
		bool seen = false;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = r->hosts[j] == r->hosts[i];
		listed_usable += !seen && l->usable[r->hosts[i]];
	}
	switch (r->kind) {
	case CL_VM_AFFINITY:
		return check_group_fits(l, pol, r, err);
	case CL_VM_ANTI_AFFINITY:
		if (distinct_vms(r) > l->n_usable)
			return error_set(err, EINVAL, "rule '%s' (anti-affinity): %u VMs must run on "
					 "different hosts, but only %u hosts are alive and "
					 "schedulable", r->name, distinct_vms(r), l->n_usable);
		return 0;
	case CL_HOST_AFFINITY:
		if (!listed_usable)
			return error_set(err, EINVAL, "rule '%s' (host affinity): none of its %u hosts "
					 "is alive and schedulable", r->name, r->n_hosts);
		return 0;
	case CL_HOST_ANTI_AFFINITY:
		if (l->n_usable && listed_usable == l->n_usable)
			return error_set(err, EINVAL, "rule '%s' (host anti-affinity): it excludes "
					 "every alive schedulable host", r->name);
		return 0;
	}
	return error_set(err, EINVAL, "rule '%s': unknown kind %d", r->name, (int)r->kind);
}

int cl_check_rules(const struct cl_state *st, const struct cl_policy *pol, struct error *err)
{
	struct cl_layout l;
	int rc = cl_layout_init(&l, st, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < st->n_rules && rc == 0; i++)
		rc = check_rule(&l, pol, &st->rules[i], err);
	for (size_t i = 0; i < st->n_rules && rc == 0; i++) {
		if (st->rules[i].kind != CL_VM_AFFINITY)
			continue;
		for (size_t j = 0; j < st->n_rules && rc == 0; j++) {
			int x, y;
			if (st->rules[j].kind == CL_VM_ANTI_AFFINITY &&
			    shares_two(&st->rules[i], &st->rules[j], &x, &y))
				rc = error_set(err, EINVAL, "rules '%s' and '%s' contradict: %s and %s "
					       "must share a host and must not", st->rules[i].name,
					       st->rules[j].name, st->vms[x].name, st->vms[y].name);
		}
	}
	cl_layout_free(&l);
	return rc;
}

/* ---- lower bounds --------------------------------------------------------- */

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The least sum of squared deviations from their mean of any w of the
 * sorted values, from their prefix sums p1 (values) and p2 (squares). */
static double least_spread(const double *p1, const double *p2, size_t n, size_t w)
{
	double least = HUGE_VAL;
	for (size_t i = 0; i + w <= n; i++) {
		double s = p1[i + w] - p1[i];
		double ss = (p2[i + w] - p2[i]) - s * s / (double)w;
		least = fmin(least, ss);
	}
	return least > 0.0 ? least : 0.0;
}

int cl_balance_lower_bound(const struct cl_state *st, const struct cl_policy *pol, unsigned budget,
			   struct cl_bound *out, struct error *err)
{
	memset(out, 0, sizeof(*out));
	struct cl_layout l;
	int rc = cl_layout_init(&l, st, err);
	if (rc < 0)
		return rc;
	size_t n = l.n_usable;
	double *u = calloc(n + 1, sizeof(*u)), *p1 = calloc(n + 1, sizeof(*p1));
	double *p2 = calloc(n + 1, sizeof(*p2));
	if (!u || !p1 || !p2) {
		rc = error_set(err, ENOMEM, "out of memory bounding %zu hosts", n);
		goto done;
	}
	size_t k = 0;
	for (size_t h = 0; h < st->n_hosts; h++)
		if (l.usable[h])
			u[k++] = cl_layout_cpu_util(&l, (int)h);
	qsort(u, n, sizeof(*u), by_value);
	for (size_t i = 0; i < n; i++) {
		p1[i + 1] = p1[i] + u[i];
		p2[i + 1] = p2[i] + u[i] * u[i];
	}
	out->hosts = (unsigned)n;
	double allowed = (double)n * pol->imbalance_threshold * pol->imbalance_threshold;
	if (n && least_spread(p1, p2, n, n) > allowed) {
		/* The most hosts that may keep their load: the spread of the
		 * best w of them only grows with w. */
		size_t ok = 1, too_many = n;
		while (too_many - ok > 1) {
			size_t w = ok + (too_many - ok) / 2;
			if (least_spread(p1, p2, n, w) <= allowed)
				ok = w;
			else
				too_many = w;
		}
		out->min_moves = (unsigned)((n - ok + 1) / 2);
	}
	if (n > 2 * (size_t)budget + 1)
		out->best_after_budget = sqrt(least_spread(p1, p2, n, n - 2 * (size_t)budget) /
					      (double)n);
	out->fractional = 0.0;
done:
	free(u);
	free(p1);
	free(p2);
	cl_layout_free(&l);
	return rc;
}

static int by_value_desc(const void *a, const void *b)
{
	return -by_value(a, b);
}

/* The fewest of the capacities, largest first, that add up to need. */
static unsigned fewest_covering(double *cap, size_t n, double need)
{
	qsort(cap, n, sizeof(*cap), by_value_desc);
	double sum = 0.0;
	for (size_t i = 0; i < n; i++) {
		if (sum >= need)
			return (unsigned)i;
		sum += cap[i];
	}
	return sum >= need ? (unsigned)n : (unsigned)n + 1;
}

unsigned cl_consolidate_lower_bound(const struct cl_state *st, const struct cl_policy *pol,
				    unsigned *by_mem, unsigned *by_cpu)
{
	double share = 1.0 - pol->headroom, need_mem = 0.0, need_cpu = 0.0;
	double *mem = calloc(st->n_hosts + 1, sizeof(*mem));
	double *cpu = calloc(st->n_hosts + 1, sizeof(*cpu));
	unsigned m = 0, c = 0;
	if (mem && cpu) {
		size_t n = 0;
		for (size_t h = 0; h < st->n_hosts; h++) {
			const struct cl_host *host = &st->hosts[h];
			if (!host->alive || !host->schedulable || !host->cpu_milli)
				continue;
			mem[n] = share * (double)host->mem_bytes;
			cpu[n] = share * host->cpu_milli;
			n++;
		}
		for (size_t v = 0; v < st->n_vms; v++) {
			int h = st->vms[v].host;
			if (h < 0 || (size_t)h >= st->n_hosts || !st->hosts[h].alive ||
			    !st->hosts[h].schedulable || !st->hosts[h].cpu_milli)
				continue;
			need_mem += (double)st->vms[v].mem_bytes;
			need_cpu += st->vms[v].cpu_milli;
		}
		m = fewest_covering(mem, n, need_mem);
		c = fewest_covering(cpu, n, need_cpu);
	}
	free(mem);
	free(cpu);
	if (by_mem)
		*by_mem = m;
	if (by_cpu)
		*by_cpu = c;
	return m > c ? m : c;
}
