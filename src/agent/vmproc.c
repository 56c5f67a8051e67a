/* vmproc.c: see vmproc.h. */
#include "agent/vmproc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/spawner.h"
#include "api/api_client.h"
#include "util/log.h"

#define VM_MAX_MEMORY_MIB (64u * 1024)
#define VM_MAX_HARTS 8

bool vm_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 1 || n >= CL_NAME_MAX || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static int copy_string(json_t *j, const char *key, char *out, size_t size, bool required,
		       struct error *err)
{
	json_t *v = json_object_get(j, key);
	if (!v) {
		out[0] = 0;
		return required ? error_set(err, EINVAL, "the VM spec needs \"%s\"", key) : 0;
	}
	if (!json_is_string(v))
		return error_set(err, EINVAL, "the VM spec's \"%s\" must be a string", key);
	const char *s = json_string_value(v);
	if (strlen(s) >= size)
		return error_set(err, EINVAL, "the VM spec's \"%s\" is longer than %zu characters",
				 key, size - 1);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int copy_uint(json_t *j, const char *key, uint32_t def, uint32_t lo, uint32_t hi,
		     uint32_t *out, struct error *err)
{
	json_t *v = json_object_get(j, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return error_set(err, EINVAL, "the VM spec's \"%s\" must be an integer from %u to %u",
				 key, lo, hi);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

int vm_spec_from_json(json_t *j, struct vm_spec *out, struct error *err)
{
	static const char *const known[] = { "name", "memory_mib", "cpus", "kernel", "initrd",
					     "cmdline", "disk", "tap", "mac", NULL };
	memset(out, 0, sizeof(*out));
	if (!json_is_object(j))
		return error_set(err, EINVAL, "a VM spec is a JSON object");
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		bool ok = false;
		for (unsigned i = 0; known[i] && !ok; i++)
			ok = !strcmp(key, known[i]);
		if (!ok)
			return error_set(err, EINVAL, "the VM spec has an unknown field \"%s\"", key);
	}
	int rc;
	if ((rc = copy_string(j, "name", out->name, sizeof(out->name), true, err)) ||
	    (rc = copy_string(j, "kernel", out->kernel, sizeof(out->kernel), true, err)) ||
	    (rc = copy_string(j, "initrd", out->initrd, sizeof(out->initrd), false, err)) ||
	    (rc = copy_string(j, "cmdline", out->cmdline, sizeof(out->cmdline), false, err)) ||
	    (rc = copy_string(j, "disk", out->disk, sizeof(out->disk), false, err)) ||
	    (rc = copy_string(j, "tap", out->tap, sizeof(out->tap), false, err)) ||
	    (rc = copy_string(j, "mac", out->mac, sizeof(out->mac), false, err)) ||
	    (rc = copy_uint(j, "memory_mib", 256, 16, VM_MAX_MEMORY_MIB, &out->memory_mib, err)) ||
	    (rc = copy_uint(j, "cpus", 1, 1, VM_MAX_HARTS, &out->cpus, err)))
		return rc;
	if (!vm_name_valid(out->name))
		return error_set(err, EINVAL, "\"%s\" is not a VM name: 1 to %d of a-z, 0-9 and -, "
				 "not starting with -", out->name, CL_NAME_MAX - 1);
	if (out->kernel[0] != '/' || (out->initrd[0] && out->initrd[0] != '/') ||
	    (out->disk[0] && out->disk[0] != '/'))
		return error_set(err, EINVAL, "the VM spec's kernel, initrd and disk must be "
				 "absolute paths (every host resolves them alike)");
	return 0;
}

json_t *vm_spec_to_json(const struct vm_spec *s)
{
	json_t *j = json_pack("{s:s, s:i, s:i, s:s}", "name", s->name,
			      "memory_mib", (int)s->memory_mib, "cpus", (int)s->cpus,
			      "kernel", s->kernel);
	if (!j)
		return NULL;
	const char *keys[] = { "initrd", "cmdline", "disk", "tap", "mac" };
	const char *vals[] = { s->initrd, s->cmdline, s->disk, s->tap, s->mac };
	for (unsigned i = 0; i < 5; i++)
		if (vals[i][0])
			json_object_set_new(j, keys[i], json_string(vals[i]));
	return j;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The argument vector of `tern vm run` for spec; strings live in buf. */
static int build_argv(const struct vmproc *p, const struct vmproc_env *env,
		      const struct vm_spec *s, const char *incoming, bool replica, char **argv,
		      size_t max, char (*buf)[320])
{
	size_t n = 0, b = 0;
#define ARG(x) do { if (n + 1 >= max) return -E2BIG; argv[n++] = (char *)(x); } while (0)
#define FMT(...) do { snprintf(buf[b], sizeof(buf[b]), __VA_ARGS__); ARG(buf[b]); b++; } while (0)
	ARG(env->tern_binary);
	ARG("vm");
	ARG("run");
	if (incoming) {
		ARG(replica ? "--replica" : "--incoming");
		ARG(incoming);
	} else {
		ARG("--kernel");
		ARG(s->kernel);
		ARG("--memory");
		FMT("%uM", s->memory_mib);
		ARG("--cpus");
		FMT("%u", s->cpus);
		if (s->initrd[0]) {
			ARG("--initrd");
			ARG(s->initrd);
		}
		if (s->cmdline[0]) {
			ARG("--cmdline");
			ARG(s->cmdline);
		}
	}
	ARG("--api-socket");
	ARG(p->api_path);
	ARG("--console");
	FMT("unix:%s/console.sock", p->dir);
	if (s->disk[0]) {
		ARG("--disk");
		ARG(s->disk);
	}
	if (s->tap[0]) {
		ARG("--net");
		if (s->mac[0])
			FMT("tap=%s,mac=%s", s->tap, s->mac);
		else
			FMT("tap=%s", s->tap);
	}
	if (env->tls_dir) {
		ARG("--tls-dir");
		ARG(env->tls_dir);
	} else {
		ARG("--no-tls");
	}
	argv[n] = NULL;
	return 0;
#undef ARG
#undef FMT
}

/* Runs `ip ARGS...`; 0 on exit status 0. quiet: its complaints too go
 * to /dev/null (an expected failure). */
static int run_ip_as(char *const args[], bool quiet, struct error *err)
{
	pid_t pid = fork();
	if (pid < 0)
		return error_errno(err, errno, "cannot fork ip");
	if (pid == 0) {
		int null_fd = open("/dev/null", O_WRONLY);
		if (null_fd >= 0) {
			dup2(null_fd, 1);
			if (quiet)
				dup2(null_fd, 2);
		}
		execvp("ip", args);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return error_errno(err, errno, "waiting for ip");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return error_set(err, EIO, "ip %s %s %s failed (status %d)", args[1], args[2],
				 args[3] ? args[3] : "", status);
	return 0;
}

static int run_ip(char *const args[], struct error *err)
{
	return run_ip_as(args, false, err);
}

/* A TAP for the VM on the host bridge, made before the VMM opens it. */
static int make_tap(const char *tap, const char *bridge, struct error *err)
{
	char *add[] = { "ip", "tuntap", "add", (char *)tap, "mode", "tap", NULL };
	char *join[] = { "ip", "link", "set", (char *)tap, "master", (char *)bridge, "up", NULL };
	char *stale[] = { "ip", "link", "del", (char *)tap, NULL };
	struct error ignored = { 0 };
	/* Left by an agent that was killed: TAP names are per VM, so one of
	 * this name belongs to no running VMM here. */
	run_ip_as(stale, true, &ignored);
	int rc = run_ip(add, err);
	if (rc == 0 && (rc = run_ip(join, err)) < 0) {
		char *del[] = { "ip", "link", "del", (char *)tap, NULL };
		struct error e2 = { 0 };
		run_ip(del, &e2);
	}
	return rc < 0 ? error_wrap(err, "making TAP %s on %s", tap, bridge) : 0;
}

void vmproc_release(struct vmproc *p)
{
	if (p->pid || !p->tap[0])
		return;
	char *del[] = { "ip", "link", "del", p->tap, NULL };
	struct error err = { 0 };
	if (run_ip(del, &err) < 0)
		log_warn("removing TAP %s of %s: %s", p->tap, p->name, err.msg);
	p->tap[0] = 0;
}

/* Whether a TCP socket of this network namespace listens on port
 * (/proc/net/tcp: local address, then state 0A = LISTEN). */
static bool listening_on(int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	if (!f)
		return false;
	char line[256];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned local_port, state;
		if (sscanf(line, " %*d: %*8x:%x %*8x:%*x %x", &local_port, &state) == 2)
			found = (int)local_port == port && state == 0x0a;
	}
	fclose(f);
	return found;
}

struct child_setup {
	char **argv;
	const char *binary;
	int log_fd;
};

/* In the forked child (spawner.h). */
static void vmm_child(void *ctx)
{
	struct child_setup *cs = ctx;
	int null_fd = open("/dev/null", O_RDONLY);
	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(cs->log_fd, 1) < 0 ||
	    dup2(cs->log_fd, 2) < 0)
		_exit(127);
	/* A VM must not outlive its agent, who alone can fence it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
		_exit(127);
	/* The agent's own signal handling is not the VMM's. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(cs->binary, cs->argv);
	dprintf(2, "ternd: cannot run %s: %s\n", cs->binary, strerror(errno));
	_exit(127);
}

static int start(struct vmproc *p, const struct vmproc_env *env, const struct vm_spec *spec,
		 const char *incoming, bool replica, int timeout_ms, struct error *err)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", spec->name);
	if ((size_t)snprintf(p->dir, sizeof(p->dir), "%s/%s", env->run_dir, spec->name) >=
	    sizeof(p->dir))
		return error_set(err, ENAMETOOLONG, "the run directory %s is too long", env->run_dir);
	snprintf(p->api_path, sizeof(p->api_path), "%s/api.sock", p->dir);
	if (mkdir(p->dir, 0700) < 0 && errno != EEXIST)
		return error_errno(err, errno, "cannot create %s", p->dir);
	char *argv[40];
	char buf[8][320];
	if (build_argv(p, env, spec, incoming, replica, argv, 40, buf) < 0)
		return error_set(err, E2BIG, "too many VMM arguments");
	char log_path[320];
	snprintf(log_path, sizeof(log_path), "%s/tern.log", p->dir);
	int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log_fd < 0)
		return error_errno(err, errno, "cannot open %s", log_path);
	if (spec->tap[0] && env->bridge) {
		int rc = make_tap(spec->tap, env->bridge, err);
		if (rc < 0) {
			close(log_fd);
			return rc;
		}
		snprintf(p->tap, sizeof(p->tap), "%s", spec->tap);
	}
	struct child_setup cs = { argv, env->tern_binary, log_fd };
	pid_t pid = spawner_spawn(vmm_child, &cs);
	if (pid < 0) {
		close(log_fd);
		vmproc_release(p);
		return error_errno(err, (int)-pid, "cannot fork the VMM for %s", spec->name);
	}
	close(log_fd);
	p->pid = pid;
	/* Ready when its control socket answers; an incoming VMM serves its
	 * API once the migration has built the VM, and is ready before that,
	 * when it listens for the migration. */
	int port = 0;
	const char *colon = incoming ? strrchr(incoming, ':') : NULL;
	if (colon)
		port = atoi(colon + 1);
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	for (;;) {
		json_t *res = NULL;
		struct error e2 = { 0 };
		if (port ? listening_on(port) :
			   api_call(p->api_path, "status", NULL, 1000, &res, &e2) == 0) {
			json_decref(res);
			break;
		}
		if (vmproc_reap(p))
			return error_set(err, ECHILD, "the VMM for %s exited at once (status %d); "
					 "see %s", spec->name, p->exit_status, log_path);
		if (now_ns() > deadline) {
			vmproc_kill(p);
			return error_set(err, ETIMEDOUT, "the VMM for %s did not answer on %s within "
					 "%d ms; see %s", spec->name, p->api_path, timeout_ms,
					 log_path);
		}
		usleep(20000);
	}
	log_info("started the VMM for %s (pid %d%s%s)", spec->name, (int)pid,
		 incoming ? ", incoming on " : "", incoming ? incoming : "");
	return 0;
}

int vmproc_start(struct vmproc *p, const struct vmproc_env *env, const struct vm_spec *spec,
		 const char *incoming, int timeout_ms, struct error *err)
{
	return start(p, env, spec, incoming, false, timeout_ms, err);
}

int vmproc_start_replica(struct vmproc *p, const struct vmproc_env *env,
			 const struct vm_spec *spec, const char *uri, int timeout_ms,
			 struct error *err)
{
	return start(p, env, spec, uri, true, timeout_ms, err);
}

bool vmproc_reap(struct vmproc *p)
{
	if (!p->pid)
		return true;
	int status;
	pid_t r = waitpid(p->pid, &status, WNOHANG);
	if (r == 0)
		return false;
	if (r < 0 && errno != ECHILD)
		return false;
	p->exit_status = r > 0 ? status : -1;
	p->pid = 0;
	vmproc_release(p);
	return true;
}

void vmproc_kill(struct vmproc *p)
{
	if (!p->pid)
		return;
	if (kill(p->pid, SIGKILL) < 0 && errno != ESRCH)
		log_warn("cannot kill the VMM of %s (pid %d): %s", p->name, (int)p->pid,
			 strerror(errno));
	int status;
	if (waitpid(p->pid, &status, 0) > 0)
		p->exit_status = status;
	p->pid = 0;
	vmproc_release(p);
}

void vmproc_stop(struct vmproc *p, int timeout_ms)
{
	if (!p->pid)
		return;
	json_t *res = NULL;
	struct error err = { 0 };
	if (api_call(p->api_path, "stop", NULL, 2000, &res, &err) < 0)
		log_warn("asking the VMM of %s to stop: %s", p->name, err.msg);
	json_decref(res);
	int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
	while (!vmproc_reap(p)) {
		if (now_ns() > deadline) {
			log_warn("the VMM of %s did not stop within %d ms: killing it", p->name,
				 timeout_ms);
			vmproc_kill(p);
			return;
		}
		usleep(20000);
	}
}

static uint64_t field(json_t *o, const char *k)
{
	return (uint64_t)json_integer_value(json_object_get(o, k));
}

bool vmproc_sample_load(struct vmproc *p, int64_t t)
{
	if (!p->pid)
		return false;
	json_t *st = NULL;
	struct error err = { 0 };
	if (api_call(p->api_path, "stats", NULL, 1000, &st, &err) < 0)
		return false;
	struct vm_load now = {
		.cpu_ns = field(st, "harts_cpu_ns"),
		.disk_bytes = field(st, "disk_read_bytes") + field(st, "disk_write_bytes"),
		.net_bytes = field(st, "net_rx_bytes") + field(st, "net_tx_bytes"),
		.at_ns = t,
	};
	json_t *dirty = json_object_get(st, "dirty_pages");
	uint64_t page = field(st, "page_size");
	double dt = p->last.at_ns && t > p->last.at_ns ? (double)(t - p->last.at_ns) / 1e9 : 0;
	if (dt > 0) {
		/* Counters restart with a new VMM (after a migration): no rate
		 * from a counter that went back. */
		if (now.cpu_ns >= p->last.cpu_ns)
			p->cpu_milli = (uint32_t)((double)(now.cpu_ns - p->last.cpu_ns) / 1e6 / dt);
		if (now.disk_bytes >= p->last.disk_bytes)
			p->disk_bytes_s = (uint64_t)((double)(now.disk_bytes - p->last.disk_bytes) / dt);
		if (now.net_bytes >= p->last.net_bytes)
			p->net_bytes_s = (uint64_t)((double)(now.net_bytes - p->last.net_bytes) / dt);
		/* The pages written since the last stats call: this one. */
		if (json_is_integer(dirty))
			p->dirty_bytes_s = (uint64_t)((double)json_integer_value(dirty) *
						      (double)page / dt);
	}
	p->last = now;
	json_decref(st);
	return true;
}

int vmproc_call(const struct vmproc *p, const char *command, json_t *args, int timeout_ms,
		json_t **result, struct error *err)
{
	return api_call(p->api_path, command, args, timeout_ms, result, err);
}
