/* migrate_progress.c: see migrate_progress.h. */
#include "agent/migrate_progress.h"

#include <string.h>
#include <time.h>

#include "agent/store.h"
#include "util/log.h"

#define PUBLISH_EVERY_NS 250000000
#define MAX_SAMPLES 400

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_int_t field(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

void mig_progress_init(struct mig_progress *p, json_t *record, const char *key)
{
	memset(p, 0, sizeof(*p));
	p->record = record;
	snprintf(p->key, sizeof(p->key), "%s", key);
	p->samples = json_array();
	p->t0_ns = agent_now_ns();
	p->sample_every_ns = 100000000;
}

/* Done share of the work: pages sent of those sent and still to send; a
 * pass that finds more dirty pages can move it back a little. */
static int percent(json_t *st, const char *phase)
{
	if (!strcmp(phase, "completed"))
		return 100;
	json_int_t sent = field(st, "pages_sent"), left = field(st, "pages_remaining");
	if (sent + left <= 0)
		return 0;
	int pct = (int)(sent * 100 / (sent + left));
	return pct > 99 ? 99 : pct;
}

void mig_progress_update(struct agent *a, struct mig_progress *p, json_t *st)
{
	int64_t now = agent_now_ns();
	const char *phase = json_string_value(json_object_get(st, "phase"));
	phase = phase ? phase : "?";
	if (field(st, "downtime_ms"))
		p->downtime_ms = field(st, "downtime_ms");
	/* Before the first pass has counted anything there is nothing to draw. */
	bool counted = field(st, "pages_sent") || field(st, "pages_remaining");
	if (p->samples && counted && now - p->last_sample_ns >= p->sample_every_ns) {
		p->last_sample_ns = now;
		if (json_array_size(p->samples) >= MAX_SAMPLES) {
			/* Every other one goes: the chart keeps its whole span. */
			json_t *half = json_array();
			for (size_t i = 0; half && i < json_array_size(p->samples); i += 2)
				json_array_append(half, json_array_get(p->samples, i));
			json_decref(p->samples);
			p->samples = half;
			p->sample_every_ns *= 2;
		}
		if (p->samples)
			json_array_append_new(p->samples, json_pack("[I, I, I]",
				(json_int_t)((now - p->t0_ns) / 1000000),
				field(st, "pages_remaining"), field(st, "dirty_rate_pages_s")));
	}
	bool ended = !strcmp(phase, "completed") || !strcmp(phase, "failed") ||
		     !strcmp(phase, "cancelled");
	if (!p->record || (!ended && now - p->last_publish_ns < PUBLISH_EVERY_NS))
		return;
	p->last_publish_ns = now;
	json_t *progress = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
		"phase", phase, "pass", (int)field(st, "pass"),
		"pages_sent", field(st, "pages_sent"),
		"pages_remaining", field(st, "pages_remaining"),
		"dirty_rate_pages_s", field(st, "dirty_rate_pages_s"),
		"bandwidth_bytes_s", field(st, "bandwidth_bytes_s"),
		"expected_downtime_ms", field(st, "expected_downtime_ms"),
		"elapsed_ms", field(st, "elapsed_ms"),
		"downtime_ms", field(st, "downtime_ms"),
		"percent", percent(st, phase));
	if (!progress)
		return;
	json_object_set_new(p->record, "progress", progress);
	struct error err = { 0 };
	if (store_put(a->etcd, p->key, p->record, a->lease, &err) < 0)
		log_debug("ternd %s: publishing a migration's progress: %s", a->cfg.name, err.msg);
}

void mig_progress_finish(struct agent *a, struct mig_progress *p, const char *result)
{
	if (!p->record)
		return;
	char prefix[128];
	agent_key(a, prefix, sizeof(prefix), "history/migrations/");
	json_t *h = json_deep_copy(p->record);
	if (!h)
		return;
	json_object_del(h, "progress");
	json_object_set_new(h, "result", json_string(result));
	json_object_set_new(h, "ended_ms", json_integer(wall_ms()));
	json_object_set_new(h, "total_ms",
			    json_integer((agent_now_ns() - p->t0_ns) / 1000000));
	json_object_set_new(h, "downtime_ms", json_integer(p->downtime_ms));
	json_object_set_new(h, "samples", p->samples ? json_incref(p->samples) : json_array());
	struct error err = { 0 };
	if (store_append(a->etcd, prefix, h, MIGRATION_HISTORY_KEPT, &err) < 0)
		log_warn("ternd %s: recording a migration's history: %s", a->cfg.name, err.msg);
	json_decref(h);
}

void mig_progress_free(struct mig_progress *p)
{
	json_decref(p->record);
	json_decref(p->samples);
	p->record = p->samples = NULL;
}
