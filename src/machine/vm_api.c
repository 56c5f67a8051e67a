/* vm_api.c: the VM's commands on the control API (docs/api.md):
 * status, pause, resume, stop. */
#include "machine/vm.h"

#include <errno.h>
#include <string.h>

#include "api/api_server.h"
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

static int cmd_resume(void *opaque, json_t *args, json_t **result, struct error *err)
{
	int rc = vm_resume(opaque, err);
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
	int rc = snapshot_save(vm, json_string_value(path), json_is_true(stop), &rep, err);
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

int vm_api_start(struct vm *vm, const char *path, struct error *err)
{
	vm->api = api_server_create(path, err);
	if (!vm->api)
		return -(err->code ? err->code : EINVAL);
	api_server_register(vm->api, "status", cmd_status, vm);
	api_server_register(vm->api, "pause", cmd_pause, vm);
	api_server_register(vm->api, "resume", cmd_resume, vm);
	api_server_register(vm->api, "stop", cmd_stop, vm);
	api_server_register(vm->api, "snapshot", cmd_snapshot, vm);
	return 0;
}
