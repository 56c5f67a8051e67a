/* events.c: what the dashboard (web/) reads: GET /v1/migrations (those
 * under way, with their progress, and the last ones with their samples)
 * and GET /v1/events, a server-sent event every EVENT_MS with the whole
 * picture: hosts, VMs, migrations, recent decisions, DR status. Every
 * agent serves both from etcd, so the page may talk to any host. */
#include <errno.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/rest.h"

#define EVENT_MS 500
#define EVENT_DECISIONS 30

static int migrations(struct agent *a, bool with_samples, json_t **out, struct error *err)
{
	json_t *now, *history;
	int rc = agent_list_records(a, "migrations", &now, err);
	if (rc < 0)
		return rc;
	if ((rc = agent_list_records(a, "history/migrations", &history, err)) < 0) {
		json_decref(now);
		return rc;
	}
	size_t i;
	json_t *h;
	json_array_foreach(history, i, h)
		if (!with_samples)
			json_object_del(h, "samples");
	*out = json_pack("{s:o, s:o}", "migrations", now, "history", history);
	return *out ? 0 : error_set(err, ENOMEM, "out of memory");
}

static int get_migrations(void *opaque, const struct rest_request *req, json_t **reply,
			  struct error *err)
{
	return migrations(opaque, true, reply, err);
}

static int event(void *opaque, json_t **out, struct error *err)
{
	struct agent *a = opaque;
	json_t *cluster = NULL, *moves = NULL, *decisions = NULL, *dr = NULL;
	int rc = agent_cluster_json(a, &cluster, err);
	if (rc == 0)
		rc = migrations(a, false, &moves, err);
	if (rc == 0)
		rc = agent_list_records(a, "decisions", &decisions, err);
	if (rc == 0) {
		/* The newest few, newest last (keys sort by time). */
		while (json_array_size(decisions) > EVENT_DECISIONS)
			json_array_remove(decisions, 0);
		struct error e2 = { 0 };
		if (agent_dr_status(a, &dr, &e2) < 0)
			dr = json_pack("{s:s}", "error", e2.msg);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		json_object_update(cluster, moves);
		json_object_set(cluster, "decisions", decisions);
		json_object_set(cluster, "dr", dr);
		json_object_set_new(cluster, "site", json_string(a->cfg.site));
		json_object_set_new(cluster, "served_by", json_string(a->cfg.name));
		json_object_set_new(cluster, "at_ms", json_integer((json_int_t)ts.tv_sec * 1000 +
								   ts.tv_nsec / 1000000));
		*out = json_incref(cluster);
	}
	json_decref(cluster);
	json_decref(moves);
	json_decref(decisions);
	json_decref(dr);
	return rc;
}

int agent_events_register(struct agent *a, struct error *err)
{
	if (rest_route(a->rest, "GET", "/v1/migrations", get_migrations, a) < 0 ||
	    rest_stream(a->rest, "/v1/events", event, a, EVENT_MS) < 0)
		return error_set(err, ENOSPC, "too many REST routes");
	return 0;
}
