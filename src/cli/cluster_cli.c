/* cluster_cli.c: the cluster side of the tern CLI. Every command is a
 * REST request to one agent (any: each answers for the whole cluster):
 * --agent unix:/PATH or http://IP:PORT (with --token-file), else
 * $TERN_AGENT, else the lab's (LAB_AGENT_FILE, written by
 * `tern cluster up`). Tables for people, --json for scripts. */
#include "cli/cluster_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/http_client.h"

#define LAB_AGENT_FILE "/run/tern-lab/agent"
#define CLI_TIMEOUT_MS 60000
#define FAILBACK_TIMEOUT_MS 600000
#define EXIT_ERROR 1
#define EXIT_USAGE 2

struct cli {
	char agent[300];
	char token[128];
	bool have_token;
	bool json;
	bool dry_run;
	int auto_balance;            /* --enable: 1, --disable: 0, -1: neither */
	const char *to;
	const char *spec_file;
	const char *name, *kernel, *initrd, *cmdline, *disk, *tap, *mac;
	const char *kind, *vms, *hosts;         /* tern rule create */
	const char *site_agent;                 /* tern site add */
	long rpo_ms, epoch_ms;                  /* tern dr protect */
	bool sync, force;
	long memory_mib, cpus;
	int argc;
	char **argv;                 /* the positional arguments */
};

static int read_small_file(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = 0;
	out[strcspn(out, "\r\n")] = 0;
	return 0;
}

static int parse(struct cli *c, int argc, char **argv)
{
	enum { O_AGENT = 1, O_TOKEN, O_JSON, O_DRY, O_TO, O_SPEC, O_KERNEL, O_INITRD, O_CMDLINE,
	       O_MEMORY, O_CPUS, O_DISK, O_TAP, O_MAC, O_ENABLE, O_DISABLE, O_KIND, O_VMS,
	       O_HOSTS, O_SITE_AGENT, O_RPO, O_EPOCH, O_SYNC, O_FORCE };
	static const struct option options[] = {
		{ "agent", required_argument, NULL, O_AGENT },
		{ "token-file", required_argument, NULL, O_TOKEN },
		{ "json", no_argument, NULL, O_JSON },
		{ "dry-run", no_argument, NULL, O_DRY },
		{ "to", required_argument, NULL, O_TO },
		{ "spec", required_argument, NULL, O_SPEC },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "cmdline", required_argument, NULL, O_CMDLINE },
		{ "memory-mib", required_argument, NULL, O_MEMORY },
		{ "cpus", required_argument, NULL, O_CPUS },
		{ "disk", required_argument, NULL, O_DISK },
		{ "tap", required_argument, NULL, O_TAP },
		{ "mac", required_argument, NULL, O_MAC },
		{ "enable", no_argument, NULL, O_ENABLE },
		{ "disable", no_argument, NULL, O_DISABLE },
		{ "kind", required_argument, NULL, O_KIND },
		{ "vms", required_argument, NULL, O_VMS },
		{ "hosts", required_argument, NULL, O_HOSTS },
		{ "site-agent", required_argument, NULL, O_SITE_AGENT },
		{ "rpo", required_argument, NULL, O_RPO },
		{ "epoch", required_argument, NULL, O_EPOCH },
		{ "sync", no_argument, NULL, O_SYNC },
		{ "force", no_argument, NULL, O_FORCE },
		{ 0 },
	};
	c->auto_balance = -1;
	const char *token_file = getenv("TERN_TOKEN_FILE");
	const char *agent = getenv("TERN_AGENT");
	opterr = 0;
	optind = 1;
	int opt;
	char *end;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case O_AGENT: agent = optarg; break;
		case O_TOKEN: token_file = optarg; break;
		case O_JSON: c->json = true; break;
		case O_DRY: c->dry_run = true; break;
		case O_TO: c->to = optarg; break;
		case O_SPEC: c->spec_file = optarg; break;
		case O_KERNEL: c->kernel = optarg; break;
		case O_INITRD: c->initrd = optarg; break;
		case O_CMDLINE: c->cmdline = optarg; break;
		case O_DISK: c->disk = optarg; break;
		case O_TAP: c->tap = optarg; break;
		case O_MAC: c->mac = optarg; break;
		case O_ENABLE: c->auto_balance = 1; break;
		case O_DISABLE: c->auto_balance = 0; break;
		case O_KIND: c->kind = optarg; break;
		case O_VMS: c->vms = optarg; break;
		case O_HOSTS: c->hosts = optarg; break;
		case O_SITE_AGENT: c->site_agent = optarg; break;
		case O_SYNC: c->sync = true; break;
		case O_FORCE: c->force = true; break;
		case O_RPO:
		case O_EPOCH:
		case O_MEMORY:
		case O_CPUS: {
			long v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v <= 0) {
				fprintf(stderr, "tern: %s: \"%s\" is not a positive number\n",
					argv[optind - 1], optarg);
				return EXIT_USAGE;
			}
			*(opt == O_MEMORY ? &c->memory_mib : opt == O_CPUS ? &c->cpus :
			  opt == O_RPO ? &c->rpo_ms : &c->epoch_ms) = v;
			break;
		}
		case ':':
			fprintf(stderr, "tern: option %s needs a value\n", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "tern: unknown option %s\n", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	c->argc = argc - optind;
	c->argv = argv + optind;
	if (agent) {
		snprintf(c->agent, sizeof(c->agent), "%s", agent);
	} else if (read_small_file(LAB_AGENT_FILE, c->agent, sizeof(c->agent)) < 0) {
		fprintf(stderr, "tern: which agent? --agent unix:/PATH or http://IP:PORT, or "
			"TERN_AGENT (no lab cluster is up: %s is missing)\n", LAB_AGENT_FILE);
		return EXIT_USAGE;
	}
	if (token_file) {
		int rc = read_small_file(token_file, c->token, sizeof(c->token));
		if (rc < 0) {
			fprintf(stderr, "tern: cannot read the token file %s: %s\n", token_file,
				strerror(-rc));
			return EXIT_ERROR;
		}
		c->have_token = true;
	}
	return 0;
}

static int request_waiting(struct cli *c, const char *method, const char *path, json_t *body,
			   int timeout_ms, json_t **reply)
{
	struct error err = { 0 };
	int rc = http_json(c->agent, c->have_token ? c->token : NULL, method, path, body,
			   timeout_ms, reply, &err);
	json_decref(body);
	if (rc < 0) {
		fprintf(stderr, "tern: %s\n", err.msg);
		return EXIT_ERROR;
	}
	return 0;
}

static int request(struct cli *c, const char *method, const char *path, json_t *body,
		   json_t **reply)
{
	return request_waiting(c, method, path, body, CLI_TIMEOUT_MS, reply);
}

static void print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (text)
		printf("%s\n", text);
	free(text);
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static long long num(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static int host_list(struct cli *c)
{
	json_t *r;
	if (request(c, "GET", "/v1/hosts", NULL, &r))
		return EXIT_ERROR;
	if (c->json) {
		print_json(r);
	} else {
		printf("%-16s %-15s %-6s %9s %15s %5s  %s\n", "HOST", "IP", "STATE", "CPU",
		       "MEMORY MiB", "VMS", "NAMES");
		size_t i;
		json_t *h;
		json_array_foreach(json_object_get(r, "hosts"), i, h) {
			char cpu[32], mem[32], names[256] = "";
			snprintf(cpu, sizeof(cpu), "%lld/%lld", num(h, "cpu_used_milli"),
				 num(h, "cpu_milli"));
			snprintf(mem, sizeof(mem), "%lld/%lld", num(h, "mem_used_bytes") >> 20,
				 num(h, "mem_bytes") >> 20);
			size_t j;
			json_t *v;
			json_array_foreach(json_object_get(h, "vms"), j, v) {
				size_t n = strlen(names);
				snprintf(names + n, sizeof(names) - n, "%s%s", n ? "," : "",
					 json_string_value(v));
			}
			printf("%-16s %-15s %-6s %9s %15s %5zu  %s\n", str(h, "name"), str(h, "ip"),
			       json_is_true(json_object_get(h, "schedulable")) ? "ready" : "drain",
			       cpu, mem, json_array_size(json_object_get(h, "vms")), names);
		}
		printf("imbalance (std. dev. of CPU use): %.3f\n",
		       json_real_value(json_object_get(r, "imbalance")));
	}
	json_decref(r);
	return 0;
}

static int vm_list(struct cli *c)
{
	json_t *r;
	if (request(c, "GET", "/v1/vms", NULL, &r))
		return EXIT_ERROR;
	if (c->json) {
		print_json(r);
	} else {
		printf("%-20s %-16s %-10s %6s %4s %6s %9s %9s %9s %9s\n", "VM", "HOST", "STATE",
		       "MiB", "CPUS", "MCPU", "DIRTY/s", "DISK/s", "NET/s", "OWNER REV");
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(r, "vms"), i, v)
			printf("%-20s %-16s %-10s %6lld %4lld %6lld %8lldK %8lldK %8lldK %9lld\n",
			       str(v, "name"), str(v, "host"), str(v, "state"),
			       num(v, "mem_bytes") >> 20, num(v, "cpus"), num(v, "cpu_milli"),
			       num(v, "dirty_bytes_s") >> 10, num(v, "disk_bytes_s") >> 10,
			       num(v, "net_bytes_s") >> 10, num(v, "owner_revision"));
	}
	json_decref(r);
	return 0;
}

static json_t *spec_from_options(struct cli *c)
{
	if (c->spec_file) {
		json_error_t jerr;
		json_t *j = json_load_file(c->spec_file, 0, &jerr);
		if (!j)
			fprintf(stderr, "tern: %s: %s (line %d)\n", c->spec_file, jerr.text, jerr.line);
		return j;
	}
	json_t *j = json_object();
	if (!j)
		return NULL;
	json_object_set_new(j, "name", json_string(c->name));
	const char *keys[] = { "kernel", "initrd", "cmdline", "disk", "tap", "mac" };
	const char *vals[] = { c->kernel, c->initrd, c->cmdline, c->disk, c->tap, c->mac };
	for (unsigned i = 0; i < 6; i++)
		if (vals[i])
			json_object_set_new(j, keys[i], json_string(vals[i]));
	if (c->memory_mib)
		json_object_set_new(j, "memory_mib", json_integer(c->memory_mib));
	if (c->cpus)
		json_object_set_new(j, "cpus", json_integer(c->cpus));
	return j;
}

static int one_name(struct cli *c, const char *what)
{
	if (c->argc != 1) {
		fprintf(stderr, "tern: %s needs exactly one name\n", what);
		return EXIT_USAGE;
	}
	c->name = c->argv[0];
	return 0;
}

static int print_result(struct cli *c, json_t *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int print_result(struct cli *c, json_t *r, const char *fmt, ...)
{
	if (c->json) {
		print_json(r);
	} else {
		va_list ap;
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	json_decref(r);
	return 0;
}

int cmd_host(int argc, char **argv)
{
	struct cli c = { 0 };
	if (argc < 2) {
		fprintf(stderr, "tern: host list | drain HOST | undrain HOST\n");
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	int rc = parse(&c, argc - 1, argv + 1);
	if (rc)
		return rc;
	if (!strcmp(sub, "list"))
		return host_list(&c);
	if (strcmp(sub, "drain") && strcmp(sub, "undrain")) {
		fprintf(stderr, "tern: unknown command \"host %s\"\n", sub);
		return EXIT_USAGE;
	}
	if ((rc = one_name(&c, sub)))
		return rc;
	char path[200];
	snprintf(path, sizeof(path), "/v1/hosts/%s/%s", c.name, sub);
	json_t *r;
	if (request(&c, "POST", path, NULL, &r))
		return EXIT_ERROR;
	if (!strcmp(sub, "undrain"))
		return print_result(&c, r, "host %s is schedulable again\n", c.name);
	size_t n = json_array_size(json_object_get(r, "planned"));
	if (!c.json) {
		printf("host %s drained: unschedulable; moving its %zu VMs off:\n", c.name, n);
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(r, "planned"), i, m)
			printf("  %s -> %s  (%s)\n", str(m, "vm"), str(m, "to"), str(m, "reason"));
	}
	return print_result(&c, r, "%s", "");
}

/* The cluster forms of `tern vm ...` (no --api-socket). */
int cmd_cluster_vm(int argc, char **argv)
{
	struct cli c = { 0 };
	const char *sub = argv[1];
	int rc = parse(&c, argc - 1, argv + 1);
	if (rc)
		return rc;
	if (!strcmp(sub, "list"))
		return vm_list(&c);
	if ((rc = one_name(&c, sub)))
		return rc;
	char path[200];
	json_t *r;
	if (!strcmp(sub, "create")) {
		json_t *spec = spec_from_options(&c);
		if (!spec)
			return EXIT_ERROR;
		if (request(&c, "POST", "/v1/vms", spec, &r))
			return EXIT_ERROR;
		return print_result(&c, r, "VM %s created; the controller places it\n", c.name);
	}
	if (!strcmp(sub, "stop") || !strcmp(sub, "delete")) {
		snprintf(path, sizeof(path), "/v1/vms/%s", c.name);
		if (request(&c, "DELETE", path, NULL, &r))
			return EXIT_ERROR;
		return print_result(&c, r, "VM %s deleted; its host stops it\n", c.name);
	}
	if (!strcmp(sub, "migrate")) {
		if (!c.to) {
			fprintf(stderr, "tern: vm migrate NAME --to HOST\n");
			return EXIT_USAGE;
		}
		snprintf(path, sizeof(path), "/v1/vms/%s/migrate", c.name);
		json_t *body = json_pack("{s:s}", "to", c.to);
		if (request(&c, "POST", path, body, &r))
			return EXIT_ERROR;
		return print_result(&c, r, "migrating %s from %s to %s\n", c.name,
				    str(r, "from"), c.to);
	}
	if (!strcmp(sub, "show")) {
		snprintf(path, sizeof(path), "/v1/vms/%s", c.name);
		if (request(&c, "GET", path, NULL, &r))
			return EXIT_ERROR;
		print_json(r);
		json_decref(r);
		return 0;
	}
	fprintf(stderr, "tern: unknown command \"vm %s\"\n", sub);
	return EXIT_USAGE;
}

/* "a,b,c" as a JSON list of strings. */
static json_t *name_list(const char *text)
{
	json_t *list = json_array();
	char *copy = strdup(text), *save = NULL;
	if (!list || !copy) {
		free(copy);
		json_decref(list);
		return NULL;
	}
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(list, json_string(t));
	free(copy);
	return list;
}

int cmd_rule(int argc, char **argv)
{
	struct cli c = { 0 };
	if (argc < 2) {
		fprintf(stderr, "tern: rule list | create NAME --kind KIND --vms A,B [--hosts H] | "
			"delete NAME\n");
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	int rc = parse(&c, argc - 1, argv + 1);
	if (rc)
		return rc;
	json_t *r;
	if (!strcmp(sub, "list")) {
		if (request(&c, "GET", "/v1/rules", NULL, &r))
			return EXIT_ERROR;
		if (!c.json) {
			size_t i;
			json_t *x;
			json_array_foreach(json_object_get(r, "rules"), i, x) {
				char *vms = json_dumps(json_object_get(x, "vms"), JSON_COMPACT);
				char *hosts = json_dumps(json_object_get(x, "hosts"), JSON_COMPACT);
				printf("%-20s %-20s vms %s%s%s\n", str(x, "name"), str(x, "kind"),
				       vms ? vms : "[]", hosts ? "  hosts " : "", hosts ? hosts : "");
				free(vms);
				free(hosts);
			}
		}
		return print_result(&c, r, "%s", "");
	}
	if ((rc = one_name(&c, sub)))
		return rc;
	if (!strcmp(sub, "delete")) {
		char path[200];
		snprintf(path, sizeof(path), "/v1/rules/%s", c.name);
		if (request(&c, "DELETE", path, NULL, &r))
			return EXIT_ERROR;
		return print_result(&c, r, "rule %s deleted\n", c.name);
	}
	if (strcmp(sub, "create")) {
		fprintf(stderr, "tern: unknown command \"rule %s\"\n", sub);
		return EXIT_USAGE;
	}
	if (!c.kind || !c.vms) {
		fprintf(stderr, "tern: rule create NAME --kind affinity|anti-affinity|host-affinity|"
			"host-anti-affinity --vms A,B [--hosts H1,H2]\n");
		return EXIT_USAGE;
	}
	json_t *body = json_pack("{s:s, s:s, s:o}", "name", c.name, "kind", c.kind, "vms",
				 name_list(c.vms));
	if (body && c.hosts)
		json_object_set_new(body, "hosts", name_list(c.hosts));
	if (!body || request(&c, "POST", "/v1/rules", body, &r))
		return EXIT_ERROR;
	return print_result(&c, r, "rule %s set\n", c.name);
}

int cmd_site(int argc, char **argv)
{
	struct cli c = { 0 };
	if (argc < 2) {
		fprintf(stderr, "tern: site list | add NAME --site-agent http://IP:PORT\n");
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	int rc = parse(&c, argc - 1, argv + 1);
	if (rc)
		return rc;
	json_t *r;
	if (!strcmp(sub, "list")) {
		if (request(&c, "GET", "/v1/sites", NULL, &r))
			return EXIT_ERROR;
		if (!c.json) {
			printf("this site: %s\n", str(r, "site"));
			size_t i;
			json_t *s;
			json_array_foreach(json_object_get(r, "sites"), i, s)
				printf("%-16s %s\n", str(s, "name"), str(s, "api"));
		}
		return print_result(&c, r, "%s", "");
	}
	if (strcmp(sub, "add")) {
		fprintf(stderr, "tern: unknown command \"site %s\"\n", sub);
		return EXIT_USAGE;
	}
	if ((rc = one_name(&c, sub)))
		return rc;
	if (!c.site_agent) {
		fprintf(stderr, "tern: site add NAME --site-agent http://IP:PORT\n");
		return EXIT_USAGE;
	}
	char path[200];
	snprintf(path, sizeof(path), "/v1/sites/%s", c.name);
	if (request(&c, "PUT", path, json_pack("{s:s}", "api", c.site_agent), &r))
		return EXIT_ERROR;
	return print_result(&c, r, "site %s: %s\n", c.name, c.site_agent);
}

int cmd_dr(int argc, char **argv)
{
	struct cli c = { 0 };
	if (argc < 2) {
		fprintf(stderr, "tern: dr protect VM --to SITE [--rpo MS] [--epoch MS] [--sync] | "
			"status | failover VM [--force] | failback VM [--to SITE]\n");
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	int rc = parse(&c, argc - 1, argv + 1);
	if (rc)
		return rc;
	json_t *r;
	if (!strcmp(sub, "status")) {
		if (request(&c, "GET", "/v1/dr", NULL, &r))
			return EXIT_ERROR;
		if (!c.json) {
			printf("site %s\n", str(r, "site"));
			size_t i;
			json_t *p;
			json_array_foreach(json_object_get(r, "protected"), i, p) {
				json_t *st = json_object_get(p, "status");
				printf("  %-16s -> %s/%s  epoch %lld  lag %lld ms  RPO %s  %s\n",
				       str(p, "vm"), str(p, "site"), str(p, "host"), num(st, "epoch"),
				       num(st, "lag_ms"),
				       json_is_true(json_object_get(st, "rpo_met")) ? "met" : "NOT met",
				       st ? str(st, "phase") : str(p, "status_error"));
			}
			json_array_foreach(json_object_get(r, "standbys"), i, p) {
				json_t *st = json_object_get(p, "status");
				printf("  standby %-8s <- %s  on %s  epoch %lld  %s\n", str(p, "vm"),
				       str(p, "from_site"), str(p, "host"), num(st, "epoch"),
				       st ? str(st, "phase") : str(p, "status_error"));
			}
		}
		return print_result(&c, r, "%s", "");
	}
	if ((rc = one_name(&c, sub)))
		return rc;
	char path[200];
	if (!strcmp(sub, "protect")) {
		if (!c.to) {
			fprintf(stderr, "tern: dr protect VM --to SITE\n");
			return EXIT_USAGE;
		}
		json_t *body = json_pack("{s:s, s:b}", "site", c.to, "sync", c.sync);
		if (body && c.rpo_ms)
			json_object_set_new(body, "rpo_ms", json_integer(c.rpo_ms));
		if (body && c.epoch_ms)
			json_object_set_new(body, "epoch_ms", json_integer(c.epoch_ms));
		snprintf(path, sizeof(path), "/v1/vms/%s/protect", c.name);
		if (request(&c, "POST", path, body, &r))
			return EXIT_ERROR;
		return print_result(&c, r, "VM %s protected by a standby at %s on %s\n", c.name,
				    str(r, "site"), str(r, "host"));
	}
	if (!strcmp(sub, "failover")) {
		snprintf(path, sizeof(path), "/v1/replicas/%s/failover", c.name);
		if (request(&c, "POST", path, json_pack("{s:b}", "force", c.force), &r))
			return EXIT_ERROR;
		return print_result(&c, r, "VM %s runs on %s from epoch %lld\n", c.name,
				    str(r, "host"), num(r, "epoch"));
	}
	if (!strcmp(sub, "failback")) {
		json_t *body = c.to ? json_pack("{s:s}", "site", c.to) : json_object();
		snprintf(path, sizeof(path), "/v1/vms/%s/failback", c.name);
		/* The way home gets in step first: a bulk copy of the VM. */
		if (request_waiting(&c, "POST", path, body, FAILBACK_TIMEOUT_MS, &r))
			return EXIT_ERROR;
		return print_result(&c, r, "VM %s is home at %s on %s (epoch %lld, %.1f s)\n",
				    c.name, str(r, "site"), str(r, "host"), num(r, "epoch"),
				    json_real_value(json_object_get(r, "seconds")));
	}
	fprintf(stderr, "tern: unknown command \"dr %s\"\n", sub);
	return EXIT_USAGE;
}

int cmd_cluster(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "tern: cluster up|down|balance|consolidate|decisions\n");
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "up") || !strcmp(sub, "down")) {
		/* The lab (namespaces, a bridge, etcd, an agent per host) is set
		 * up by a script beside the binary's source tree. */
		char self[256], script[300];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			fprintf(stderr, "tern: cannot find my own path: %s\n", strerror(errno));
			return EXIT_ERROR;
		}
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		snprintf(script, sizeof(script), "%s/../scripts/cluster_lab.py", self);
		if (access(script, R_OK) < 0) {
			fprintf(stderr, "tern: cluster %s needs %s (the lab script of the source "
				"tree): %s\n", sub, script, strerror(errno));
			return EXIT_ERROR;
		}
		char **args = calloc((size_t)argc + 3, sizeof(char *));
		if (!args)
			return EXIT_ERROR;
		args[0] = "/usr/bin/python3";
		args[1] = script;
		for (int i = 1; i < argc; i++)
			args[i + 1] = argv[i];
		execv(args[0], args);
		fprintf(stderr, "tern: cannot run %s: %s\n", args[0], strerror(errno));
		free(args);
		return EXIT_ERROR;
	}
	if (!strcmp(sub, "consolidate")) {
		struct cli c = { 0 };
		int rc = parse(&c, argc - 1, argv + 1);
		json_t *r;
		if (rc || request(&c, c.dry_run ? "GET" : "POST", "/v1/cluster/consolidate", NULL,
				  &r))
			return rc ? rc : EXIT_ERROR;
		if (!c.json) {
			printf("%s\n", str(r, "summary"));
			size_t i;
			json_t *m;
			json_array_foreach(json_object_get(r, "moves"), i, m)
				printf("  %s: %s -> %s\n", str(m, "vm"), str(m, "from"), str(m, "to"));
			json_array_foreach(json_object_get(r, "power_off"), i, m)
				printf("  %s could be powered off\n", json_string_value(m));
		}
		return print_result(&c, r, "%s", "");
	}
	if (!strcmp(sub, "decisions")) {
		struct cli c = { 0 };
		int rc = parse(&c, argc - 1, argv + 1);
		json_t *r;
		if (rc || request(&c, "GET", "/v1/cluster/decisions", NULL, &r))
			return rc ? rc : EXIT_ERROR;
		if (!c.json) {
			size_t i;
			json_t *d;
			json_array_foreach(json_object_get(r, "decisions"), i, d) {
				time_t t = (time_t)(num(d, "at_ms") / 1000);
				struct tm tm;
				char when[32] = "?";
				if (localtime_r(&t, &tm))
					strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
				printf("%s.%03lld %s: %s: %s\n", when, num(d, "at_ms") % 1000,
				       str(d, "controller"), str(d, "what"), str(d, "reason"));
			}
		}
		return print_result(&c, r, "%s", "");
	}
	if (!strcmp(sub, "balance")) {
		struct cli c = { 0 };
		int rc = parse(&c, argc - 1, argv + 1);
		if (rc)
			return rc;
		json_t *r;
		if (c.auto_balance >= 0) {
			json_t *body = json_pack("{s:b}", "balance", c.auto_balance);
			if (request(&c, "PUT", "/v1/cluster/config", body, &r))
				return EXIT_ERROR;
			return print_result(&c, r, "automatic balancing %s\n",
					    c.auto_balance ? "on" : "off");
		}
		if (request(&c, c.dry_run ? "GET" : "POST", "/v1/cluster/balance", NULL, &r))
			return EXIT_ERROR;
		if (!c.json) {
			printf("%s\n", str(r, "summary"));
			size_t i;
			json_t *m;
			json_array_foreach(json_object_get(r, "moves"), i, m)
				printf("  %s: %s -> %s  (%s)\n", str(m, "vm"), str(m, "from"),
				       str(m, "to"), str(m, "reason"));
		}
		return print_result(&c, r, "%s", "");
	}
	fprintf(stderr, "tern: unknown command \"cluster %s\"\n", sub);
	return EXIT_USAGE;
}
