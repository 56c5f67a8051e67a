/* migrate_progress.h: what a migration job tells the cluster while it runs
 * (its migration record in etcd, refreshed with the VMM's progress) and
 * once it ended (a history record with its samples), for the dashboard
 * and GET /v1/migrations (docs/cluster.md). */
#ifndef TERN_AGENT_MIGRATE_PROGRESS_H
#define TERN_AGENT_MIGRATE_PROGRESS_H

#include <jansson.h>
#include <stdint.h>

#include "agent/agent.h"

/* The history kept: the last this many migrations. */
#define MIGRATION_HISTORY_KEPT 20

struct mig_progress {
	json_t *record;                 /* the migration record: from, to, reason, ... */
	char key[300];                  /* where it lives (on this host's lease) */
	json_t *samples;                /* [ms since start, pages remaining, dirty pages/s] */
	int64_t t0_ns, last_publish_ns, last_sample_ns;
	int64_t sample_every_ns;        /* doubles whenever the samples fill up */
	int64_t downtime_ms;
};

/* record: the migration record as first written (the progress keeps its
 * reference). */
void mig_progress_init(struct mig_progress *p, json_t *record, const char *key);
/* With each migrate-status the job reads: a sample, and the record
 * rewritten with the progress now and then. */
void mig_progress_update(struct agent *a, struct mig_progress *p, json_t *status);
/* The end: a history record (result: "completed" or why not). */
void mig_progress_finish(struct agent *a, struct mig_progress *p, const char *result);
void mig_progress_free(struct mig_progress *p);

#endif
