/* vm_api.c: the VM's commands on the control API (docs/api.md):
 * status, pause, resume, stop. */
#include "machine/vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_server.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "migration/outgoing.h"
#include "migration/replica.h"
#include "migration/snapshot.h"

static int cmd_status(void *opaque, json_t *args, json_t **result, struct error *err)
{
	struct vm *vm = opaque;
	pthread_mutex_lock(&vm->lock);
	json_t *harts = json_array();
	static const char *const hsm_names[] = { "started", "stopped", "start-pending",
						 "stop-pending", "suspended" };
	for (unsigned i = 0; i < vm->num_harts; i++) {
		const struct hart *h = &vm->harts[i];
		json_array_append_new(harts, json_pack("{s:i, s:s, s:b}", "id", (int)h->id,
						       "state", hsm_names[h->hsm],
						       "idle", h->in_wfi));
	}
	*result = json_pack("{s:s, s:i, s:I, s:I, s:I, s:o}",
			    "state", vm_state_name(vm->state),
			    "cpus", (int)vm->num_harts,
			    "memory_bytes", (json_int_t)vm->ram.size,
			    "uptime_ms", (json_int_t)((monotonic_ns() - vm->started_ns) / 1000000),
			    "guest_time_ns", (json_int_t)(vm_time_now(vm) * (1000000000ull / TIMEBASE_HZ)),
			    "harts", harts);
	pthread_mutex_unlock(&vm->lock);
	if (!*result)
		return error_set(err, ENOMEM, "cannot build the status reply");
	return 0;
}

/* stats: counters a host agent turns into rates: the harts' CPU time,
 * disk and network bytes, and the guest pages written since the last
 * stats (collected from the dirty map, so only while no migration is
 * under way: then null, and migrate-status has the dirty rate). */
static int check_args(const char *command, json_t *args, const char *const *allowed,
		      struct error *err);

static int cmd_stats(void *opaque, json_t *args, json_t **result, struct error *err)
{
	struct vm *vm = opaque;
	static const char *const allowed[] = { NULL };
	int rc = check_args("stats", args, allowed, err);
	if (rc)
		return rc;
	uint64_t cpu_ns = 0, disk_read = 0, disk_written = 0, rx = 0, tx = 0;
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->num_harts; i++) {
		clockid_t cid;
		struct timespec ts;
		if (vm->harts[i].thread_started &&
		    pthread_getcpuclockid(vm->harts[i].thread, &cid) == 0 &&
		    clock_gettime(cid, &ts) == 0)
			cpu_ns += (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	for (unsigned i = 0; i < vm->num_virtio; i++) {
		uint64_t a, b;
		if (i < vm->config.num_disks) {
			virtio_blk_io(vm->virtio[i], &a, &b);
			disk_read += a;
			disk_written += b;
		} else {
			virtio_net_io(vm->virtio[i], &a, &b);
			rx += a;
			tx += b;
		}
	}
	bool running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	json_t *dirty = json_null();
	struct error busy = { 0 };
	if (running && !replica_active(vm) && migration_check_idle(vm, "stats", false, &busy) == 0) {
		uint64_t *bitmap = calloc(vm->ram.dirty_words, sizeof(uint64_t));
		if (!bitmap)
			return error_set(err, ENOMEM, "no memory for a dirty bitmap");
		dirty = json_integer((json_int_t)vm_sync_dirty(vm, bitmap));
		free(bitmap);
	}
	*result = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o, s:I}", "harts_cpu_ns",
			    (json_int_t)cpu_ns, "disk_read_bytes", (json_int_t)disk_read,
			    "disk_write_bytes", (json_int_t)disk_written, "net_rx_bytes",
			    (json_int_t)rx, "net_tx_bytes", (json_int_t)tx, "dirty_pages", dirty,
			    "page_size", (json_int_t)GUEST_PAGE_SIZE);
	return *result ? 0 : error_set(err, ENOMEM, "cannot build the stats reply");
}

static int cmd_pause(void *opaque, json_t *args, json_t **result, struct error *err)
{
	struct vm *vm = opaque;
	int64_t t0 = monotonic_ns();
	int rc = vm_pause(vm, err);
	if (rc)
		return rc;
	*result = json_pack("{s:s, s:I}", "state", "paused",
			    "pause_latency_us", (json_int_t)((monotonic_ns() - t0) / 1000));
	return 0;
}

/* Refuses arguments other than `allowed` (a NULL-terminated list). */
static int check_args(const char *command, json_t *args, const char *const *allowed,
		      struct error *err)
{
	const char *key;
	json_t *value;
	json_object_foreach(args, key, value) {
		bool ok = false;
		for (unsigned i = 0; allowed[i] && !ok; i++)
			ok = strcmp(key, allowed[i]) == 0;
		if (!ok)
			return error_set(err, EINVAL, "%s: unknown argument \"%s\"", command, key);
	}
	return 0;
}

/* An optional non-negative integer argument; *out stays -1 when absent. */
static int int_arg(const char *command, json_t *args, const char *name, int64_t max,
		   int64_t *out, struct error *err)
{
	json_t *v = json_object_get(args, name);
	*out = -1;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
		return error_set(err, EINVAL, "%s: \"%s\" must be an integer from 0 to %lld",
				 command, name, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int cmd_resume(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { "force", NULL };
	int rc = check_args("resume", args, allowed, err);
	if (rc)
		return rc;
	json_t *force = json_object_get(args, "force");
	if (force && !json_is_boolean(force))
		return error_set(err, EINVAL, "resume: \"force\" must be true or false");
	if (migration_outcome_unknown(opaque) && !json_is_true(force))
		return error_set(err, EBUSY, "the last migration's outcome is unknown: the guest may "
				 "be running on the destination. Check there, then resume with "
				 "\"force\": true");
	if ((rc = migration_check_idle(opaque, "resume", true, err)))
		return rc;
	rc = vm_resume(opaque, err);
	if (rc)
		return rc;
	*result = json_pack("{s:s}", "state", "running");
	return 0;
}

static int cmd_stop(void *opaque, json_t *args, json_t **result, struct error *err)
{
	vm_request_stop(opaque, VM_EXIT_POWEROFF);
	*result = json_pack("{s:s}", "state", "stopping");
	return 0;
}

/* snapshot {"path": FILE, "stop": false}: pause, write, resume (or stop). */
static int cmd_snapshot(void *opaque, json_t *args, json_t **result, struct error *err)
{
	struct vm *vm = opaque;
	const char *key;
	json_t *value;
	json_object_foreach(args, key, value) {
		if (strcmp(key, "path") != 0 && strcmp(key, "stop") != 0)
			return error_set(err, EINVAL, "snapshot: unknown argument \"%s\" "
					 "(path, stop)", key);
	}
	json_t *path = json_object_get(args, "path"), *stop = json_object_get(args, "stop");
	if (!json_is_string(path) || !json_string_value(path)[0])
		return error_set(err, EINVAL, "snapshot needs \"path\": the file to write");
	if (stop && !json_is_boolean(stop))
		return error_set(err, EINVAL, "snapshot: \"stop\" must be true or false");
	struct snapshot_report rep;
	/* A snapshot pauses and resumes the guest: never under a migration. */
	int rc = migration_check_idle(vm, "snapshot", false, err);
	if (!rc)
		rc = snapshot_save(vm, json_string_value(path), json_is_true(stop), &rep, err);
	if (rc)
		return rc;
	*result = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
			    "path", json_string_value(path),
			    "bytes", (json_int_t)rep.bytes,
			    "pause_ms", (json_int_t)(rep.pause_us / 1000),
			    "write_ms", (json_int_t)(rep.write_us / 1000),
			    "pages_data", (json_int_t)rep.ram.pages_data,
			    "pages_zero", (json_int_t)rep.ram.pages_zero,
			    "pages_never_used", (json_int_t)rep.ram.pages_skipped,
			    "state", json_is_true(stop) ? "stopping" : vm_state_name(vm->state));
	return 0;
}

static json_t *stats_json(const struct mig_stats *st)
{
	json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I, "
			      "s:{s:i, s:I, s:i, s:s}}",
			      "phase", mig_phase_name(st->phase), "to", st->to,
			      "pass", (int)st->pass,
			      "bytes_sent", (json_int_t)st->bytes_sent,
			      "pages_sent", (json_int_t)st->pages_sent,
			      "pages_remaining", (json_int_t)st->pages_remaining,
			      "dirty_rate_pages_s", (json_int_t)st->dirty_rate,
			      "bandwidth_bytes_s", (json_int_t)st->bandwidth,
			      "expected_downtime_ms", (json_int_t)st->expected_downtime_ms,
			      "elapsed_ms", (json_int_t)st->elapsed_ms,
			      "downtime_ms", (json_int_t)(st->downtime_us / 1000),
			      "throttle_pct", (int)st->throttle_pct,
			      "postcopy_requests", (json_int_t)st->postcopy_requests,
			      "params", "downtime_ms", (int)st->params.downtime_ms,
			      "bandwidth_bytes_s", (json_int_t)st->params.bandwidth,
			      "max_passes", (int)st->params.max_passes,
			      "strategy", mig_strategy_name(st->params.strategy));
	if (o && st->params.copy_storage)
		json_object_set_new(o, "disk", json_pack("{s:I, s:I, s:I}",
			"bytes_total", (json_int_t)st->disk_bytes_total,
			"bytes_sent", (json_int_t)st->disk_bytes_sent,
			"dirty_bytes", (json_int_t)st->disk_dirty_bytes));
	if (o) {
		json_t *params = json_object_get(o, "params");
		json_object_set_new(params, "copy_storage", json_boolean(st->params.copy_storage));
		/* The milliseconds for a person, the microseconds for comparing
		 * downtimes of a few milliseconds. */
		json_object_set_new(o, "downtime_sent_ms",
				    json_integer((json_int_t)(st->downtime_sent_us / 1000)));
		json_object_set_new(o, "downtime_ready_ms",
				    json_integer((json_int_t)(st->downtime_ready_us / 1000)));
		json_object_set_new(o, "downtime_us", json_integer((json_int_t)st->downtime_us));
		json_object_set_new(o, "downtime_sent_us",
				    json_integer((json_int_t)st->downtime_sent_us));
		json_object_set_new(o, "downtime_ready_us",
				    json_integer((json_int_t)st->downtime_ready_us));
		json_object_set_new(params, "switchover_gate",
				    json_boolean(st->params.switchover_gate));
	}
	if (o)
		json_object_set_new(o, "throttle_stall_ms", json_integer((json_int_t)st->throttle_stall_ms));
	if (o)
		json_object_set_new(json_object_get(o, "params"), "streams",
				    json_integer(st->params.streams));
	if (o)
		json_object_set_new(o, "codec", json_pack(
			"{s:I, s:I, s:I, s:I, s:s, s:b, s:s}",
			"pages_delta", (json_int_t)st->codec.pages_delta,
			"delta_bytes", (json_int_t)st->codec.delta_bytes,
			"sections_zstd", (json_int_t)st->codec.sections_zstd,
			"zstd_saved_bytes", (json_int_t)st->codec.zstd_saved,
			"delta", codec_mode_name(st->params.codec.delta),
			"verify", st->params.verify,
			"compress", codec_mode_name(st->params.codec.zstd)));
	if (o && st->error[0])
		json_object_set_new(o, "error", json_string(st->error));
	return o;
}

/* migrate {"to": "tcp:HOST:PORT", "downtime_ms", "bandwidth_bytes_s", "max_passes",
 *          "strategy"} */
static int cmd_migrate(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { "to", "downtime_ms", "bandwidth_bytes_s",
					       "max_passes", "strategy", "resume", "delta",
					       "compress", "delta_cache_mib", "verify", "streams",
					       "copy_storage", "switchover_gate", NULL };
	int rc = check_args("migrate", args, allowed, err);
	if (rc)
		return rc;
	json_t *resume = json_object_get(args, "resume");
	if (resume && !json_is_boolean(resume))
		return error_set(err, EINVAL, "migrate: \"resume\" must be true or false");
	if (json_is_true(resume)) {
		json_t *to = json_object_get(args, "to");
		if (to && !json_is_string(to))
			return error_set(err, EINVAL, "migrate: \"to\" must be \"tcp:HOST:PORT\"");
		rc = migration_resume(opaque, to ? json_string_value(to) : NULL, err);
		if (rc)
			return rc;
		struct mig_stats st;
		migration_status(opaque, &st);
		*result = stats_json(&st);
		return 0;
	}
	json_t *to = json_object_get(args, "to");
	if (!json_is_string(to))
		return error_set(err, EINVAL, "migrate needs \"to\": \"tcp:HOST:PORT\"");
	int64_t downtime, bandwidth, passes;
	if ((rc = int_arg("migrate", args, "downtime_ms", 3600000, &downtime, err)) ||
	    (rc = int_arg("migrate", args, "bandwidth_bytes_s", INT64_MAX, &bandwidth, err)) ||
	    (rc = int_arg("migrate", args, "max_passes", 100000, &passes, err)))
		return rc;
	struct mig_params p = {
		.downtime_ms = downtime >= 0 ? (uint32_t)downtime : MIG_DEFAULT_DOWNTIME_MS,
		.bandwidth = bandwidth >= 0 ? (uint64_t)bandwidth : 0,
		.max_passes = passes >= 0 ? (uint32_t)passes : MIG_DEFAULT_MAX_PASSES,
		.strategy = MIG_STRATEGY_AUTO,
	};
	p.codec.delta = p.codec.zstd = CODEC_AUTO;
	static const char *const codec_keys[] = { "delta", "compress" };
	enum codec_mode *codec_modes[] = { &p.codec.delta, &p.codec.zstd };
	for (unsigned i = 0; i < 2; i++) {
		json_t *v = json_object_get(args, codec_keys[i]);
		if (v && (!json_is_string(v) || codec_mode_parse(json_string_value(v),
								  codec_modes[i]) < 0))
			return error_set(err, EINVAL, "migrate: \"%s\" must be \"auto\", \"on\" or "
					 "\"off\"", codec_keys[i]);
	}
	int64_t cache_mib;
	if ((rc = int_arg("migrate", args, "delta_cache_mib", 1 << 20, &cache_mib, err)))
		return rc;
	if (cache_mib == 0)
		return error_set(err, EINVAL, "migrate: \"delta_cache_mib\" must be at least 1 "
				 "(turn deltas off with \"delta\": \"off\")");
	p.codec.delta_cache_bytes = cache_mib > 0 ? (uint64_t)cache_mib << 20 : 0;
	int64_t streams;
	if ((rc = int_arg("migrate", args, "streams", 8, &streams, err)))
		return rc;
	if (streams == 0)
		return error_set(err, EINVAL, "migrate: \"streams\" must be from 1 to 8");
	p.streams = streams > 0 ? (unsigned)streams : 1;
	json_t *verify = json_object_get(args, "verify");
	if (verify && !json_is_boolean(verify))
		return error_set(err, EINVAL, "migrate: \"verify\" must be true or false");
	p.verify = json_is_true(verify);
	json_t *copy_storage = json_object_get(args, "copy_storage");
	if (copy_storage && !json_is_boolean(copy_storage))
		return error_set(err, EINVAL, "migrate: \"copy_storage\" must be true or false");
	p.copy_storage = json_is_true(copy_storage);
	json_t *gate = json_object_get(args, "switchover_gate");
	if (gate && !json_is_boolean(gate))
		return error_set(err, EINVAL, "migrate: \"switchover_gate\" must be true or false");
	p.switchover_gate = json_is_true(gate);
	json_t *strategy = json_object_get(args, "strategy");
	if (strategy && (!json_is_string(strategy) ||
			 mig_strategy_parse(json_string_value(strategy), &p.strategy) < 0))
		return error_set(err, EINVAL, "migrate: \"strategy\" must be \"auto\", \"precopy\", "
				 "\"auto-converge\", \"postcopy\" or \"hybrid\"");
	if (replica_active(opaque))
		return error_set(err, EBUSY, "migrate: the VM is being replicated (replicate-stop "
				 "first): both would take its dirty map");
	rc = migration_start(opaque, json_string_value(to), &p, err);
	if (rc)
		return rc;
	struct mig_stats st;
	migration_status(opaque, &st);
	*result = stats_json(&st);
	return 0;
}

static int cmd_migrate_status(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { NULL };
	int rc = check_args("migrate-status", args, allowed, err);
	if (rc)
		return rc;
	struct mig_stats st;
	migration_status(opaque, &st);
	*result = stats_json(&st);
	return 0;
}

static int cmd_migrate_set(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { "downtime_ms", "bandwidth_bytes_s", "max_passes",
					       NULL };
	int rc = check_args("migrate-set", args, allowed, err);
	if (rc)
		return rc;
	int64_t downtime, bandwidth, passes;
	if ((rc = int_arg("migrate-set", args, "downtime_ms", 3600000, &downtime, err)) ||
	    (rc = int_arg("migrate-set", args, "bandwidth_bytes_s", INT64_MAX, &bandwidth, err)) ||
	    (rc = int_arg("migrate-set", args, "max_passes", 100000, &passes, err)))
		return rc;
	rc = migration_set(opaque, downtime, bandwidth, passes, err);
	if (rc)
		return rc;
	struct mig_stats st;
	migration_status(opaque, &st);
	*result = stats_json(&st);
	return 0;
}

static int cmd_migrate_cancel(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { NULL };
	int rc = check_args("migrate-cancel", args, allowed, err);
	if (!rc)
		rc = migration_cancel(opaque, err);
	if (rc)
		return rc;
	*result = json_pack("{s:s}", "phase", "cancelling");
	return 0;
}

static int cmd_migrate_continue(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { NULL };
	int rc = check_args("migrate-continue", args, allowed, err);
	if (!rc)
		rc = migration_continue(opaque, err);
	if (rc)
		return rc;
	*result = json_pack("{s:s}", "phase", "commit");
	return 0;
}

static json_t *replica_json(const struct replica_stats *st)
{
	return json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}",
			 "phase", st->phase, "to", st->to, "epoch_ms", (int)st->params.epoch_ms,
			 "rpo_ms", (int)st->params.rpo_ms, "epoch", (json_int_t)st->epochs_acked,
			 "lag_ms", (json_int_t)st->lag_ms, "rpo_met", st->rpo_met,
			 "bytes_last_epoch", (json_int_t)st->bytes_last_epoch,
			 "pages_last_epoch", (json_int_t)st->pages_last_epoch,
			 "bytes_total", (json_int_t)st->bytes_total,
			 "pause_us_last", (json_int_t)st->pause_us_last,
			 "pause_us_max", (json_int_t)st->pause_us_max, "bulk_ms",
			 (json_int_t)st->bulk_ms, "error", st->error[0] ? st->error : NULL);
}

static json_t *replica_json_full(const struct replica_stats *st)
{
	json_t *o = replica_json(st);
	if (o) {
		json_object_set_new(o, "sync", json_boolean(st->params.sync));
		json_object_set_new(o, "compress", json_string(codec_mode_name(st->params.compress)));
		json_object_set_new(o, "stream_bytes_last_epoch",
				    json_integer((json_int_t)st->stream_bytes_last_epoch));
		json_object_set_new(o, "stream_bytes_total",
				    json_integer((json_int_t)st->stream_bytes_total));
		json_object_set_new(o, "epochs_compressed",
				    json_integer((json_int_t)st->epochs_compressed));
	}
	if (o && st->params.copy_storage)
		json_object_set_new(o, "disk_bytes_last_epoch",
				    json_integer((json_int_t)st->disk_bytes_last_epoch));
	return o;
}

/* replicate {"to": "tcp:HOST:PORT", "epoch_ms": 1000, "rpo_ms": epoch_ms, "copy_storage",
 * "sync", "compress": "auto"|"on"|"off"} */
static int cmd_replicate(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { "to", "epoch_ms", "rpo_ms", "copy_storage", "sync",
					       "compress", NULL };
	int rc = check_args("replicate", args, allowed, err);
	if (rc)
		return rc;
	json_t *to = json_object_get(args, "to");
	if (!json_is_string(to))
		return error_set(err, EINVAL, "replicate needs \"to\": \"tcp:HOST:PORT\"");
	int64_t epoch_ms, rpo_ms;
	if ((rc = int_arg("replicate", args, "epoch_ms", 3600000, &epoch_ms, err)) ||
	    (rc = int_arg("replicate", args, "rpo_ms", 86400000, &rpo_ms, err)))
		return rc;
	struct replica_params p = { .epoch_ms = epoch_ms >= 0 ? (uint32_t)epoch_ms : 1000 };
	p.rpo_ms = rpo_ms >= 0 ? (uint32_t)rpo_ms : p.epoch_ms;
	json_t *copy = json_object_get(args, "copy_storage");
	if (copy && !json_is_boolean(copy))
		return error_set(err, EINVAL, "replicate: \"copy_storage\" must be true or false");
	p.copy_storage = json_is_true(copy);
	json_t *sync = json_object_get(args, "sync");
	if (sync && !json_is_boolean(sync))
		return error_set(err, EINVAL, "replicate: \"sync\" must be true or false");
	p.sync = json_is_true(sync);
	p.compress = CODEC_AUTO;
	json_t *compress = json_object_get(args, "compress");
	if (compress && (!json_is_string(compress) ||
			 codec_mode_parse(json_string_value(compress), &p.compress) < 0))
		return error_set(err, EINVAL, "replicate: \"compress\" must be \"auto\", \"on\" "
				 "or \"off\"");
	if ((rc = replica_start(opaque, json_string_value(to), &p, err)))
		return rc;
	struct replica_stats st;
	replica_status(opaque, &st);
	*result = replica_json_full(&st);
	return 0;
}

static int cmd_replicate_status(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { NULL };
	int rc = check_args("replicate-status", args, allowed, err);
	if (rc)
		return rc;
	struct replica_stats st;
	replica_status(opaque, &st);
	*result = replica_json_full(&st);
	return 0;
}

static int cmd_replicate_stop(void *opaque, json_t *args, json_t **result, struct error *err)
{
	static const char *const allowed[] = { "final", NULL };
	int rc = check_args("replicate-stop", args, allowed, err);
	json_t *final = json_object_get(args, "final");
	if (!rc && final && !json_is_boolean(final))
		rc = error_set(err, EINVAL, "replicate-stop: \"final\" must be true or false");
	if (!rc)
		rc = replica_stop(opaque, json_is_true(final), err);
	if (rc)
		return rc;
	struct replica_stats st;
	replica_status(opaque, &st);
	*result = replica_json_full(&st);
	return 0;
}

int vm_api_start(struct vm *vm, const char *path, struct error *err)
{
	vm->api = api_server_create(path, err);
	if (!vm->api)
		return -(err->code ? err->code : EINVAL);
	api_server_register(vm->api, "status", cmd_status, vm);
	api_server_register(vm->api, "stats", cmd_stats, vm);
	api_server_register(vm->api, "pause", cmd_pause, vm);
	api_server_register(vm->api, "resume", cmd_resume, vm);
	api_server_register(vm->api, "stop", cmd_stop, vm);
	api_server_register(vm->api, "snapshot", cmd_snapshot, vm);
	api_server_register(vm->api, "migrate", cmd_migrate, vm);
	api_server_register(vm->api, "migrate-status", cmd_migrate_status, vm);
	api_server_register(vm->api, "migrate-set", cmd_migrate_set, vm);
	api_server_register(vm->api, "migrate-cancel", cmd_migrate_cancel, vm);
	api_server_register(vm->api, "migrate-continue", cmd_migrate_continue, vm);
	api_server_register(vm->api, "replicate", cmd_replicate, vm);
	api_server_register(vm->api, "replicate-status", cmd_replicate_status, vm);
	api_server_register(vm->api, "replicate-stop", cmd_replicate_stop, vm);
	return 0;
}
