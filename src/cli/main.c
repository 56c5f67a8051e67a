/* main.c: the `tern` command line.
 *
 *   tern vm run --kernel IMAGE [--initrd FILE] [--cmdline TEXT] [--memory SIZE]
 *               [--cpus N] [--console SPEC] [--serial1 SPEC] [--api-socket PATH]
 *   tern vm status|pause|resume|stop --api-socket PATH
 *
 * The only place that prints usage and decides the process exit status. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api_client.h"
#include "cli/cluster_cli.h"
#include "devices/virtio/net.h"
#include "machine/vm.h"
#include "migration/incoming.h"
#include "migration/replica.h"
#include "migration/tls.h"
#include "sandbox/seccomp.h"
#include "migration/snapshot.h"
#include "util/log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tern vm run --kernel IMAGE [options]\n"
		"       tern vm run --restore FILE [options]\n"
		"       tern vm run --incoming tcp:ADDR:PORT [options]\n"
		"       tern vm run --replica tcp:ADDR:PORT [options]   (a standby: keeps a paused\n"
		"                       replica of a replicated VM until failover)\n"
		"       tern vm status|pause|resume|stop --api-socket PATH\n"
		"       tern vm resume --force --api-socket PATH   (after a migration whose\n"
		"                       outcome is unknown, once the destination is known dead)\n"
		"       tern vm snapshot --api-socket PATH --to FILE [--stop]\n"
		"       tern vm migrate --api-socket PATH --to tcp:HOST:PORT [--downtime-ms N]\n"
		"                       [--bandwidth MBPS] [--max-passes N] [--watch]\n"
		"                       [--strategy auto|precopy|auto-converge|postcopy|hybrid]\n"
		"                       [--delta auto|on|off] [--compress auto|on|off]\n"
		"                       [--delta-cache MIB] [--verify] [--streams N]\n"
		"                       [--copy-storage]  (local disks: copy them too)\n"
		"                       [--switchover-gate]  (hold the switch-over, guest\n"
		"                       paused and destination ready, until --continue)\n"
		"       tern vm migrate --api-socket PATH --resume [--to tcp:HOST:PORT]\n"
		"                       (a post-copy whose link failed)\n"
		"       tern vm migrate --api-socket PATH --status | --cancel | --continue\n"
		"                       | --set [...]\n"
		"\n"
		"cluster (any agent answers: --agent unix:/PATH | http://IP:PORT with\n"
		"--token-file FILE, or $TERN_AGENT, or the lab's; --json for scripts):\n"
		"       tern cluster up --hosts N | down      (a lab cluster on this machine)\n"
		"       tern cluster balance [--dry-run | --enable | --disable]\n"
		"       tern cluster consolidate [--dry-run]   (fewest hosts; which to power off)\n"
		"       tern cluster decisions      (the controller's, with their reasons)\n"
		"       tern host list | drain HOST | undrain HOST\n"
		"       tern vm list | show NAME | delete NAME | stop NAME\n"
		"       tern vm create NAME --kernel IMAGE [--initrd FILE] [--cmdline TEXT]\n"
		"                       [--memory-mib N] [--cpus N] [--disk PATH] | --spec FILE\n"
		"       tern vm migrate NAME --to HOST\n"
		"       tern rule list | delete NAME\n"
		"       tern rule create NAME --kind affinity|anti-affinity --vms A,B,...\n"
		"       tern rule create NAME --kind host-affinity|host-anti-affinity --vms A,...\n"
		"                       --hosts H1,...\n"
		"       tern site list | add NAME --site-agent http://IP:PORT   (other sites)\n"
		"       tern dr protect VM --to SITE [--rpo MS] [--epoch MS] [--sync]\n"
		"       tern dr status | failover VM [--force]   (at the standby's site)\n"
		"       tern dr failback VM [--to SITE]   (home again, once its site is back)\n"
		"\n"
		"vm run options:\n"
		"  --kernel IMAGE      RISC-V Linux kernel Image (required unless --restore)\n"
		"  --restore FILE      continue the VM saved in FILE by vm snapshot; --memory\n"
		"                      and --cpus default to the saved VM's, disks and NICs\n"
		"                      must be given as they were\n"
		"  --incoming tcp:ADDR:PORT\n"
		"                      wait for a live migration on ADDR:PORT; like --restore,\n"
		"                      memory and harts come from the incoming VM\n"
		"  --initrd FILE       initial ramdisk\n"
		"  --cmdline TEXT      kernel command line\n"
		"  --memory SIZE       guest RAM, e.g. 256M or 2G (default 256M)\n"
		"  --cpus N            harts, 1 to %d (default 1)\n"
		"  --console SPEC      ttyS0: stdio, file:PATH, unix:PATH or none (default stdio)\n"
		"  --serial1 SPEC      ttyS1, same forms (default none)\n"
		"  --api-socket PATH   serve the control API on this unix socket\n"
		"  --disk PATH[,ro]    a raw disk image as virtio-blk (vda, vdb, ... in order);\n"
		"                      ro makes it read-only (up to %d)\n"
		"  --net tap=NAME[,mac=MAC][,create=on]\n"
		"                      a virtio-net card on an existing TAP device, or on a\n"
		"                      new one with create=on (up to %d)\n"
		"  --tls-dir DIR       migration TLS credentials: DIR/ca.pem, DIR/host.pem,\n"
		"                      DIR/host.key (default " MIG_TLS_DEFAULT_DIR "; make them\n"
		"                      with scripts/mkcerts.sh); both ends must share the CA\n"
		"  --tls-allow NAMES   accept only migration peers whose certificate names one\n"
		"                      of NAMES (comma-separated DNS names or IPs)\n"
		"  --no-tls            migrate in plaintext (the other end must too)\n"
		"  --no-seccomp        do not confine the process to the system calls it\n"
		"                      needs (for debugging)\n"
		"  --log-level LEVEL   error, warning, info or debug (default info)\n"
		"\n"
		"exit status of vm run: 0 guest powered off or stopped by the API, 1 error,\n"
		"2 bad command line, 3 guest asked to reboot, 4 guest reported a failure,\n"
		"128+N stopped by signal N\n",
		VM_MAX_CPUS, VM_MAX_DISKS, VM_MAX_NETS);
}

/* "256M", "2G", "1048576K", "512" (MiB when no suffix). */
static int parse_size(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || text[0] == '-')
		return -1;
	uint64_t unit = 1ull << 20;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': unit = 1ull << 10; break;
		case 'm': case 'M': unit = 1ull << 20; break;
		case 'g': case 'G': unit = 1ull << 30; break;
		default: return -1;
		}
		if (end[1] && !(end[1] == 'i' && (end[2] == 'B' || end[2] == 'b') && !end[3]) &&
		    !((end[1] == 'B' || end[1] == 'b') && !end[2]))
			return -1;
	}
	if (v > UINT64_MAX / unit)
		return -1;
	*out = v * unit;
	return 0;
}

static int parse_uint(const char *text, unsigned *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < 0 || v > 1000000)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int set_log_level(const char *name)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, names[i]) == 0) {
			log_set_level((enum log_level)i);
			return 0;
		}
	}
	return -1;
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tern: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nRun 'tern help' for usage.\n");
	va_end(ap);
	return VM_EXIT_USAGE;
}

/* "PATH[,ro|,rw]": the options come after the last comma-free path part. */
static int parse_disk(char *spec, struct vm_disk_config *disk)
{
	memset(disk, 0, sizeof(*disk));
	char *opts = strchr(spec, ',');
	if (opts)
		*opts++ = '\0';
	if (!*spec)
		return usage_error("--disk: \"%s\" names no image file", spec);
	disk->path = spec;
	while (opts && *opts) {
		char *next = strchr(opts, ',');
		if (next)
			*next++ = '\0';
		if (strcmp(opts, "ro") == 0 || strcmp(opts, "readonly") == 0)
			disk->read_only = true;
		else if (strcmp(opts, "rw") == 0)
			disk->read_only = false;
		else
			return usage_error("--disk: unknown option \"%s\" (use ro or rw)", opts);
		opts = next;
	}
	return 0;
}

/* "tap=NAME[,mac=MAC][,create=on|off]" */
static int parse_net(char *spec, struct vm_net_config *net)
{
	memset(net, 0, sizeof(*net));
	for (char *opt = strtok(spec, ","); opt; opt = strtok(NULL, ",")) {
		char *value = strchr(opt, '=');
		if (!value)
			return usage_error("--net: \"%s\" is not KEY=VALUE", opt);
		*value++ = '\0';
		if (strcmp(opt, "tap") == 0) {
			if (!*value)
				return usage_error("--net: tap=%s names no interface", value);
			net->tap = value;
		} else if (strcmp(opt, "mac") == 0) {
			struct error err = { 0 };
			if (net_parse_mac(value, net->mac, &err) < 0)
				return usage_error("--net: %s", err.msg);
			net->mac_set = true;
		} else if (strcmp(opt, "create") == 0) {
			if (strcmp(value, "on") == 0)
				net->create = true;
			else if (strcmp(value, "off") == 0)
				net->create = false;
			else
				return usage_error("--net: create=%s: use on or off", value);
		} else {
			return usage_error("--net: unknown option \"%s\" (tap, mac or create)", opt);
		}
	}
	if (!net->tap)
		return usage_error("--net needs tap=NAME");
	return 0;
}

static int check_memory(uint64_t memory)
{
	if (memory < VM_MIN_MEMORY || memory % GUEST_PAGE_SIZE) {
		fprintf(stderr, "tern: --memory %" PRIu64 " MiB is not usable: give at least %llu MiB, "
			"in whole 4 KiB pages\n", memory >> 20, VM_MIN_MEMORY >> 20);
		return -1;
	}
	struct sysinfo si;
	if (sysinfo(&si) == 0) {
		uint64_t host = (uint64_t)si.totalram * si.mem_unit;
		if (memory > host) {
			fprintf(stderr, "tern: --memory %" PRIu64 " MiB is more than this host has (%"
				PRIu64 " MiB)\n", memory >> 20, host >> 20);
			return -1;
		}
	}
	if (memory > VM_MAX_MEMORY) {
		fprintf(stderr, "tern: --memory %" PRIu64 " MiB exceeds tern's limit of %llu MiB\n",
			memory >> 20, VM_MAX_MEMORY >> 20);
		return -1;
	}
	return 0;
}

static int cmd_vm_run(int argc, char **argv)
{
	enum { OPT_KERNEL = 1, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_CONSOLE,
	       OPT_SERIAL1, OPT_API, OPT_LOG, OPT_HELP, OPT_DISK, OPT_NET, OPT_RESTORE,
	       OPT_INCOMING, OPT_TLS_DIR, OPT_TLS_ALLOW, OPT_NO_TLS, OPT_NO_SECCOMP, OPT_REPLICA };
	static const struct option options[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "serial1", required_argument, NULL, OPT_SERIAL1 },
		{ "api-socket", required_argument, NULL, OPT_API },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "net", required_argument, NULL, OPT_NET },
		{ "restore", required_argument, NULL, OPT_RESTORE },
		{ "incoming", required_argument, NULL, OPT_INCOMING },
		{ "replica", required_argument, NULL, OPT_REPLICA },
		{ "tls-dir", required_argument, NULL, OPT_TLS_DIR },
		{ "tls-allow", required_argument, NULL, OPT_TLS_ALLOW },
		{ "no-tls", no_argument, NULL, OPT_NO_TLS },
		{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
		{ 0 },
	};
	const char *restore = NULL, *incoming = NULL, *tls_dir = NULL, *tls_allow = NULL;
	const char *replica = NULL;
	bool no_tls = false, no_seccomp = false;
	bool memory_given = false, cpus_given = false;
	struct vm_config cfg = { .memory = 256ull << 20, .cpus = 1, .console = "stdio" };

	opterr = 0;
	optind = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_KERNEL: cfg.kernel = optarg; break;
		case OPT_INITRD: cfg.initrd = optarg; break;
		case OPT_CMDLINE: cfg.cmdline = optarg; break;
		case OPT_MEMORY:
			if (parse_size(optarg, &cfg.memory))
				return usage_error("--memory: \"%s\" is not a size like 256M or 2G", optarg);
			memory_given = true;
			break;
		case OPT_CPUS:
			if (parse_uint(optarg, &cfg.cpus))
				return usage_error("--cpus: \"%s\" is not a number", optarg);
			cpus_given = true;
			break;
		case OPT_CONSOLE: cfg.console = optarg; break;
		case OPT_SERIAL1: cfg.serial1 = optarg; break;
		case OPT_API: cfg.api_socket = optarg; break;
		case OPT_LOG:
			if (set_log_level(optarg))
				return usage_error("--log-level: unknown level \"%s\"", optarg);
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		case OPT_RESTORE: restore = optarg; break;
		case OPT_INCOMING: incoming = optarg; break;
		case OPT_REPLICA: replica = optarg; break;
		case OPT_TLS_DIR: tls_dir = optarg; break;
		case OPT_TLS_ALLOW: tls_allow = optarg; break;
		case OPT_NO_TLS: no_tls = true; break;
		case OPT_NO_SECCOMP: no_seccomp = true; break;
		case OPT_DISK:
			if (cfg.num_disks == VM_MAX_DISKS)
				return usage_error("--disk %s: at most %d disks", optarg, VM_MAX_DISKS);
			if (parse_disk(optarg, &cfg.disks[cfg.num_disks++]))
				return VM_EXIT_USAGE;
			break;
		case OPT_NET:
			if (cfg.num_nets == VM_MAX_NETS)
				return usage_error("--net %s: at most %d network cards", optarg,
						   VM_MAX_NETS);
			if (parse_net(optarg, &cfg.nets[cfg.num_nets++]))
				return VM_EXIT_USAGE;
			break;
		case ':':
			return usage_error("option %s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (no_tls && (tls_dir || tls_allow))
		return usage_error("--no-tls turns migration TLS off: --tls-dir and --tls-allow do "
				   "not apply");
	/* Given credentials are checked now; a destination needs them anyway.
	 * A VM that may never migrate loads the default ones when it does. */
	if (tls_dir || tls_allow || no_tls || incoming || replica) {
		struct mig_tls_options o = { .dir = tls_dir, .allow = tls_allow,
					     .plaintext = no_tls };
		struct error terr = { 0 };
		if (mig_tls_configure(&o, &terr) < 0) {
			fprintf(stderr, "tern: %s\n", terr.msg);
			return VM_EXIT_ERROR;
		}
	}
	/* From here on the process needs only the calls of a running VMM:
	 * before any thread starts, before any guest or peer byte is read. */
	if (!no_seccomp) {
		struct error serr = { 0 };
		if (sandbox_install(&serr) < 0) {
			fprintf(stderr, "tern: %s (--no-seccomp runs without the filter)\n", serr.msg);
			return VM_EXIT_ERROR;
		}
	}
	if (replica) {
		if (restore || incoming || cfg.kernel || cfg.initrd || cfg.cmdline || memory_given ||
		    cpus_given)
			return usage_error("--replica receives a replicated VM: --restore, --incoming, "
					   "--kernel, --initrd, --cmdline, --memory and --cpus do not "
					   "apply");
		return replica_standby(&cfg, replica);
	}
	if (incoming) {
		if (restore || cfg.kernel || cfg.initrd || cfg.cmdline)
			return usage_error("--incoming receives a running VM: --restore, --kernel, "
					   "--initrd and --cmdline do not apply");
		return migration_incoming(&cfg, memory_given, cpus_given, incoming);
	}
	if (restore && (cfg.kernel || cfg.initrd || cfg.cmdline))
		return usage_error("--restore continues a saved VM: --kernel, --initrd and --cmdline "
				   "do not apply");
	if (!restore && !cfg.kernel)
		return usage_error("vm run needs --kernel IMAGE (or --restore FILE, or --incoming)");

	struct error err = { 0 };
	struct snapshot_source src = { .fd = -1 };
	if (restore) {
		if (snapshot_open(&src, restore, &err) < 0) {
			fprintf(stderr, "tern: %s\n", err.msg);
			return VM_EXIT_ERROR;
		}
		/* The saved VM's shape is the default; a different one given on
		 * the command line is a mistake, said before anything starts. */
		if (memory_given && cfg.memory != src.shape.ram_size) {
			fprintf(stderr, "tern: %s holds a VM with %" PRIu64 " MiB of memory, not the %"
				PRIu64 " MiB of --memory\n", restore, src.shape.ram_size >> 20,
				cfg.memory >> 20);
			snapshot_close(&src);
			return VM_EXIT_ERROR;
		}
		if (cpus_given && cfg.cpus != src.shape.num_harts) {
			fprintf(stderr, "tern: %s holds a VM with %u harts, not the %u of --cpus\n",
				restore, src.shape.num_harts, cfg.cpus);
			snapshot_close(&src);
			return VM_EXIT_ERROR;
		}
		cfg.memory = src.shape.ram_size;
		cfg.cpus = src.shape.num_harts;
	}
	if (cfg.cpus == 0 || cfg.cpus > VM_MAX_CPUS) {
		fprintf(stderr, "tern: --cpus %u is out of range: tern supports 1 to %d harts\n",
			cfg.cpus, VM_MAX_CPUS);
		return VM_EXIT_USAGE;
	}
	if (check_memory(cfg.memory)) {
		if (restore)
			snapshot_close(&src);
		return VM_EXIT_USAGE;
	}

	struct vm *vm;
	if (vm_create(&vm, &cfg, &err) < 0) {
		fprintf(stderr, "tern: %s\n", err.msg);
		if (restore)
			snapshot_close(&src);
		return VM_EXIT_ERROR;
	}
	if (restore) {
		int64_t t0 = monotonic_ns();
		struct ram_stats ram;
		int rc = snapshot_load(&src, vm, &ram, &err);
		snapshot_close(&src);
		if (rc < 0) {
			fprintf(stderr, "tern: %s\n", err.msg);
			vm_destroy(vm);
			return VM_EXIT_ERROR;
		}
		log_info("restored %s in %lld ms (%llu pages with data, %llu zero)", restore,
			 (long long)(monotonic_ns() - t0) / 1000000,
			 (unsigned long long)ram.pages_data, (unsigned long long)ram.pages_zero);
	}
	int status = vm_run(vm);
	vm_destroy(vm);
	return status;
}

static int cmd_vm_control(const char *command, int argc, char **argv)
{
	static const struct option options[] = {
		{ "api-socket", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "to", required_argument, NULL, 'o' },
		{ "stop", no_argument, NULL, 's' },
		{ "force", no_argument, NULL, 'f' },
		{ 0 },
	};
	const char *path = NULL, *to = NULL;
	bool stop = false, force = false;
	unsigned timeout_s = 30;
	opterr = 0;
	optind = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case 'a': path = optarg; break;
		case 'o': to = optarg; break;
		case 's': stop = true; break;
		case 'f': force = true; break;
		case 't':
			if (parse_uint(optarg, &timeout_s))
				return usage_error("--timeout: \"%s\" is not a number of seconds", optarg);
			break;
		case ':':
			return usage_error("option %s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!path)
		return usage_error("vm %s needs --api-socket PATH", command);

	bool is_snapshot = strcmp(command, "snapshot") == 0;
	if (is_snapshot && !to)
		return usage_error("vm snapshot needs --to FILE");
	if (!is_snapshot && (to || stop))
		return usage_error("--to and --stop belong to vm snapshot");
	if (force && strcmp(command, "resume") != 0)
		return usage_error("--force belongs to vm resume");
	json_t *args = NULL;
	if (force)
		args = json_pack("{s:b}", "force", 1);
	if (is_snapshot) {
		/* The VMM has its own working directory: send an absolute path. */
		char cwd[4096], *abs = NULL;
		if (to[0] == '/')
			abs = strdup(to);
		else if (getcwd(cwd, sizeof(cwd)) && asprintf(&abs, "%s/%s", cwd, to) < 0)
			abs = NULL;
		if (!abs) {
			fprintf(stderr, "tern: snapshot: cannot resolve %s: %s\n", to, strerror(errno));
			return VM_EXIT_ERROR;
		}
		args = json_pack("{s:s, s:b}", "path", abs, "stop", stop);
		free(abs);
	}
	struct error err = { 0 };
	json_t *result = NULL;
	int call = api_call(path, command, args, (int)timeout_s * 1000, &result, &err);
	json_decref(args);
	if (call < 0) {
		fprintf(stderr, "tern: %s: %s\n", command, err.msg);
		return VM_EXIT_ERROR;
	}
	if (result) {
		char *text = json_dumps(result, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(result);
	}
	return 0;
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

static json_int_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* One line of progress: phase, pass, bar, sent, remaining, rates, downtime. */
static void print_progress(json_t *st, bool final)
{
	const char *phase = json_string_value(json_object_get(st, "phase"));
	json_int_t sent = jint(st, "pages_sent"), left = jint(st, "pages_remaining");
	double frac = sent + left ? (double)sent / (double)(sent + left) : 0;
	if (phase && (!strcmp(phase, "completed")))
		frac = 1;
	char bar[21];
	for (int i = 0; i < 20; i++)
		bar[i] = i < (int)(frac * 20) ? '#' : '.';
	bar[20] = '\0';
	fprintf(stderr, "\r%-10s pass %-3lld [%s] sent %8.1f MiB  left %7lld pages  dirty %7lld p/s  "
		"%7.1f MiB/s  est. downtime %lld ms  throttle %lld%%   ", phase ? phase : "?",
		(long long)jint(st, "pass"), bar, mib((uint64_t)jint(st, "bytes_sent")),
		(long long)left, (long long)jint(st, "dirty_rate_pages_s"),
		mib((uint64_t)jint(st, "bandwidth_bytes_s")),
		(long long)jint(st, "expected_downtime_ms"), (long long)jint(st, "throttle_pct"));
	json_t *disk = json_object_get(st, "disk");
	if (disk)
		fprintf(stderr, "disk %.1f/%.1f MiB, %.1f MiB dirty   ",
			mib((uint64_t)jint(disk, "bytes_sent")), mib((uint64_t)jint(disk, "bytes_total")),
			mib((uint64_t)jint(disk, "dirty_bytes")));
	if (final)
		fprintf(stderr, "\n");
}

/* The final report of --watch, for a person; the JSON follows on stdout. */
static void print_report(json_t *st)
{
	const char *phase = json_string_value(json_object_get(st, "phase"));
	const char *to = json_string_value(json_object_get(st, "to"));
	const char *error = json_string_value(json_object_get(st, "error"));
	if (phase && !strcmp(phase, "completed"))
		fprintf(stderr, "migrated to %s in %lld ms: downtime %.2f ms (guest paused here until "
			"it ran there; final state sent after %.2f ms, applied there after %.2f), "
			"%.1f MiB on the wire, %lld passes, %lld pages sent\n",
			to ? to : "?", (long long)jint(st, "elapsed_ms"),
			(double)jint(st, "downtime_us") / 1000, (double)jint(st, "downtime_sent_us") / 1000,
			(double)jint(st, "downtime_ready_us") / 1000, mib((uint64_t)jint(st, "bytes_sent")),
			(long long)jint(st, "pass"), (long long)jint(st, "pages_sent"));
	if (phase && !strcmp(phase, "completed") && jint(st, "throttle_stall_ms"))
		fprintf(stderr, "auto-converge held the guest's harts %lld ms in all (up to %lld%%)\n",
			(long long)jint(st, "throttle_stall_ms"), (long long)jint(st, "throttle_pct"));
	else if (!phase || strcmp(phase, "completed"))
		fprintf(stderr, "migration to %s %s after %lld ms: %s\n", to ? to : "?",
			phase ? phase : "?", (long long)jint(st, "elapsed_ms"),
			error ? error : "no reason given");
}

static int watch_migration(const char *path)
{
	json_t *last = NULL;
	for (;;) {
		struct error err = { 0 };
		json_t *st = NULL;
		if (api_call(path, "migrate-status", NULL, 10000, &st, &err) < 0) {
			/* The source exits after a completed migration. */
			const char *phase = last ? json_string_value(json_object_get(last, "phase")) : NULL;
			json_decref(last);
			if (phase && !strcmp(phase, "commit"))
				fprintf(stderr, "\nthe source VMM ended during the commit: check the "
					"destination\n");
			else
				fprintf(stderr, "\ntern: migrate-status: %s\n", err.msg);
			return VM_EXIT_ERROR;
		}
		json_decref(last);
		last = st;
		const char *phase = json_string_value(json_object_get(st, "phase"));
		bool done = phase && (!strcmp(phase, "completed") || !strcmp(phase, "failed") ||
				      !strcmp(phase, "cancelled") || !strcmp(phase, "unknown") ||
				      !strcmp(phase, "postcopy-paused") ||
				      !strcmp(phase, "none"));
		if (isatty(STDERR_FILENO) || done)
			print_progress(st, done);
		if (done) {
			print_report(st);
			char *text = json_dumps(st, JSON_INDENT(2) | JSON_SORT_KEYS);
			if (text)
				printf("%s\n", text);
			free(text);
			int ok = !strcmp(phase, "completed");
			json_decref(st);
			return ok ? 0 : VM_EXIT_ERROR;
		}
		usleep(200000);
	}
}

static int cmd_vm_migrate(int argc, char **argv)
{
	enum { O_API = 1, O_TO, O_DOWNTIME, O_BANDWIDTH, O_PASSES, O_WATCH, O_CANCEL, O_STATUS,
	       O_SET, O_STRATEGY, O_RESUME, O_DELTA, O_COMPRESS, O_DELTA_CACHE, O_VERIFY,
	       O_STREAMS, O_COPY_STORAGE, O_GATE, O_CONTINUE };
	static const struct option options[] = {
		{ "api-socket", required_argument, NULL, O_API },
		{ "to", required_argument, NULL, O_TO },
		{ "downtime-ms", required_argument, NULL, O_DOWNTIME },
		{ "bandwidth", required_argument, NULL, O_BANDWIDTH },
		{ "max-passes", required_argument, NULL, O_PASSES },
		{ "strategy", required_argument, NULL, O_STRATEGY },
		{ "resume", no_argument, NULL, O_RESUME },
		{ "delta", required_argument, NULL, O_DELTA },
		{ "compress", required_argument, NULL, O_COMPRESS },
		{ "delta-cache", required_argument, NULL, O_DELTA_CACHE },
		{ "verify", no_argument, NULL, O_VERIFY },
		{ "streams", required_argument, NULL, O_STREAMS },
		{ "copy-storage", no_argument, NULL, O_COPY_STORAGE },
		{ "switchover-gate", no_argument, NULL, O_GATE },
		{ "continue", no_argument, NULL, O_CONTINUE },
		{ "watch", no_argument, NULL, O_WATCH },
		{ "cancel", no_argument, NULL, O_CANCEL },
		{ "status", no_argument, NULL, O_STATUS },
		{ "set", no_argument, NULL, O_SET },
		{ 0 },
	};
	const char *path = NULL, *to = NULL, *strategy = NULL, *delta = NULL, *compress = NULL;
	long long downtime = -1, bandwidth = -1, passes = -1, delta_cache = -1, streams = -1;
	bool watch = false, cancel = false, status = false, set = false, resume = false;
	bool verify = false, copy_storage = false, gate = false, cont = false;
	opterr = 0;
	optind = 1;
	int opt;
	unsigned v;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case O_API: path = optarg; break;
		case O_TO: to = optarg; break;
		case O_DOWNTIME:
			if (parse_uint(optarg, &v))
				return usage_error("--downtime-ms: \"%s\" is not a number", optarg);
			downtime = v;
			break;
		case O_BANDWIDTH:
			if (parse_uint(optarg, &v))
				return usage_error("--bandwidth: \"%s\" is not a number of MiB/s", optarg);
			bandwidth = (long long)v << 20;
			break;
		case O_PASSES:
			if (parse_uint(optarg, &v))
				return usage_error("--max-passes: \"%s\" is not a number", optarg);
			passes = v;
			break;
		case O_STRATEGY: strategy = optarg; break;
		case O_RESUME: resume = true; break;
		case O_DELTA: delta = optarg; break;
		case O_VERIFY: verify = true; break;
		case O_COPY_STORAGE: copy_storage = true; break;
		case O_GATE: gate = true; break;
		case O_CONTINUE: cont = true; break;
		case O_STREAMS:
			if (parse_uint(optarg, &v) || v < 1 || v > 8)
				return usage_error("--streams: \"%s\" is not a number from 1 to 8", optarg);
			streams = v;
			break;
		case O_COMPRESS: compress = optarg; break;
		case O_DELTA_CACHE:
			if (parse_uint(optarg, &v))
				return usage_error("--delta-cache: \"%s\" is not a number of MiB", optarg);
			delta_cache = v;
			break;
		case O_WATCH: watch = true; break;
		case O_CANCEL: cancel = true; break;
		case O_STATUS: status = true; break;
		case O_SET: set = true; break;
		case ':': return usage_error("option %s needs a value", argv[optind - 1]);
		default: return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!path)
		return usage_error("vm migrate needs --api-socket PATH");
	if ((to != NULL && !resume) + resume + cancel + status + set + cont != 1)
		return usage_error("vm migrate needs exactly one of --to, --resume, --cancel, "
				   "--continue, --status, --set");

	if ((strategy || delta || compress || delta_cache >= 0 || verify || streams >= 0 ||
	     copy_storage || gate) && (!to || resume))
		return usage_error("--strategy, --delta, --compress, --delta-cache, --verify, "
				   "--streams, --copy-storage and --switchover-gate are chosen when "
				   "the migration starts (with --to)");
	const char *command = to || resume ? "migrate" : cancel ? "migrate-cancel" :
			      cont ? "migrate-continue" : status ? "migrate-status" : "migrate-set";
	json_t *args = json_object();
	if (to)
		json_object_set_new(args, "to", json_string(to));
	if (resume)
		json_object_set_new(args, "resume", json_true());
	if (strategy)
		json_object_set_new(args, "strategy", json_string(strategy));
	if (delta)
		json_object_set_new(args, "delta", json_string(delta));
	if (verify)
		json_object_set_new(args, "verify", json_true());
	if (copy_storage)
		json_object_set_new(args, "copy_storage", json_true());
	if (gate)
		json_object_set_new(args, "switchover_gate", json_true());
	if (streams >= 0)
		json_object_set_new(args, "streams", json_integer(streams));
	if (compress)
		json_object_set_new(args, "compress", json_string(compress));
	if (delta_cache >= 0)
		json_object_set_new(args, "delta_cache_mib", json_integer(delta_cache));
	if ((to && !resume) || set) {
		if (downtime >= 0)
			json_object_set_new(args, "downtime_ms", json_integer(downtime));
		if (bandwidth >= 0)
			json_object_set_new(args, "bandwidth_bytes_s", json_integer(bandwidth));
		if (passes >= 0)
			json_object_set_new(args, "max_passes", json_integer(passes));
	}
	struct error err = { 0 };
	json_t *result = NULL;
	int rc = api_call(path, command, args, 30000, &result, &err);
	json_decref(args);
	if (rc < 0) {
		fprintf(stderr, "tern: %s: %s\n", command, err.msg);
		return VM_EXIT_ERROR;
	}
	if (watch && (to || status || resume)) {
		json_decref(result);
		return watch_migration(path);
	}
	char *text = result ? json_dumps(result, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	if (text)
		printf("%s\n", text);
	free(text);
	json_decref(result);
	return 0;
}

/* `tern vm list|create|show|delete`, and `tern vm stop|migrate` without
 * --api-socket, are cluster commands (they name a VM, not a VMM socket). */
static bool is_cluster_form(int argc, char **argv)
{
	const char *sub = argv[0];
	if (!strcmp(sub, "list") || !strcmp(sub, "create") || !strcmp(sub, "show") ||
	    !strcmp(sub, "delete"))
		return true;
	if (strcmp(sub, "stop") && strcmp(sub, "migrate"))
		return false;
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "--api-socket", 12))
			return false;
	return true;
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? VM_EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "host"))
		return cmd_host(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cluster"))
		return cmd_cluster(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rule"))
		return cmd_rule(argc - 1, argv + 1);
	if (!strcmp(argv[1], "site"))
		return cmd_site(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dr"))
		return cmd_dr(argc - 1, argv + 1);
	if (strcmp(argv[1], "vm") != 0 || argc < 3)
		return usage_error("unknown command \"%s\"", argv[1]);
	const char *sub = argv[2];
	if (is_cluster_form(argc - 2, argv + 2))
		return cmd_cluster_vm(argc - 1, argv + 1);
	if (strcmp(sub, "run") == 0)
		return cmd_vm_run(argc - 2, argv + 2);
	if (strcmp(sub, "migrate") == 0)
		return cmd_vm_migrate(argc - 2, argv + 2);
	if (strcmp(sub, "status") == 0 || strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0 ||
	    strcmp(sub, "stop") == 0 || strcmp(sub, "snapshot") == 0)
		return cmd_vm_control(sub, argc - 2, argv + 2);
	return usage_error("unknown command \"vm %s\"", sub);
}
