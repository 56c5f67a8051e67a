/* ternd_main.c: the ternd program, the host agent (agent.h). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/spawner.h"
#include "util/log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ternd --name HOST --etcd ENDPOINTS --state-dir DIR [options]\n"
		"\n"
		"  --name HOST         this host's name in the cluster (a-z, 0-9, -)\n"
		"  --etcd ENDPOINTS    comma-separated etcd client URLs: unix:/PATH or\n"
		"                      http://IP:PORT (all members of a cluster)\n"
		"  --state-dir DIR     the agent's socket (DIR/api.sock) and its VMs' files\n"
		"  --listen IP:PORT    serve the REST API on TCP too (needs --token-file)\n"
		"  --token-file FILE   the bearer token TCP clients must send\n"
		"  --ip IP             the address migrations reach this host on\n"
		"                      (default: the --listen IP, else 127.0.0.1)\n"
		"  --cpu-milli N       CPU offered to guests, 1000 per core (default: cores)\n"
		"  --memory-mib N      memory offered to guests (default 4096)\n"
		"  --lease-ttl S       the host lease in seconds (default 6); the agent\n"
		"                      kills its VMs once it could not renew it for 3/4 of it\n"
		"  --prefix P          etcd key prefix (default /tern)\n"
		"  --tern PATH         the tern binary for VMMs (default: beside ternd)\n"
		"  --tls-dir DIR       migration TLS credentials for the VMMs; --no-tls: none\n"
		"  --bridge BR         a VM with a \"tap\" in its spec gets that TAP, made by\n"
		"                      the agent, on bridge BR of this host\n"
		"  --site NAME         this cluster's site, for disaster recovery (default local)\n"
		"  --web-dir DIR       the dashboard's files, served on / (default: web/ of\n"
		"                      the source tree beside this binary); --no-web: none\n"
		"  --no-balance        as the controller, never move VMs to balance the load\n"
		"                      (drains and HA restarts still happen)\n"
		"  --log-level LEVEL   error, warning, info or debug\n");
}

static int parse_u32(const char *text, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || v < lo || v > hi)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int copy_opt(char *dst, size_t size, const char *val, const char *opt)
{
	if (strlen(val) >= size) {
		fprintf(stderr, "ternd: %s is longer than %zu characters\n", opt, size - 1);
		return -1;
	}
	memcpy(dst, val, strlen(val) + 1);
	return 0;
}

/* The directory of this binary ("" if unknown). */
static void own_dir(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	out[n > 0 ? n : 0] = 0;
	char *slash = strrchr(out, '/');
	if (slash)
		*slash = 0;
}

static void default_tern_binary(char *out, size_t size)
{
	char self[200];
	own_dir(self, sizeof(self));
	snprintf(out, size, self[0] ? "%s/tern" : "tern%s", self);
}

/* The source tree's web/ beside build/, if it is there. */
static void default_web_dir(char *out, size_t size)
{
	char self[200], index[300];
	own_dir(self, sizeof(self));
	snprintf(index, sizeof(index), "%s/../web/index.html", self);
	if (self[0] && access(index, R_OK) == 0)
		snprintf(out, size, "%s/../web", self);
	else
		out[0] = 0;
}

static volatile int stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

int main(int argc, char **argv)
{
	enum { O_NAME = 1, O_ETCD, O_STATE, O_LISTEN, O_TOKEN, O_IP, O_CPU, O_MEM, O_TTL,
	       O_PREFIX, O_TERN, O_TLS, O_NO_TLS, O_LOG, O_HELP, O_NO_BALANCE, O_BRIDGE, O_SITE,
	       O_WEB, O_NO_WEB };
	static const struct option options[] = {
		{ "name", required_argument, NULL, O_NAME },
		{ "etcd", required_argument, NULL, O_ETCD },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "token-file", required_argument, NULL, O_TOKEN },
		{ "ip", required_argument, NULL, O_IP },
		{ "cpu-milli", required_argument, NULL, O_CPU },
		{ "memory-mib", required_argument, NULL, O_MEM },
		{ "lease-ttl", required_argument, NULL, O_TTL },
		{ "prefix", required_argument, NULL, O_PREFIX },
		{ "tern", required_argument, NULL, O_TERN },
		{ "tls-dir", required_argument, NULL, O_TLS },
		{ "no-tls", no_argument, NULL, O_NO_TLS },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, O_HELP },
		{ "no-balance", no_argument, NULL, O_NO_BALANCE },
		{ "bridge", required_argument, NULL, O_BRIDGE },
		{ "site", required_argument, NULL, O_SITE },
		{ "web-dir", required_argument, NULL, O_WEB },
		{ "no-web", no_argument, NULL, O_NO_WEB },
		{ 0 },
	};
	static struct agent a;
	struct agent_config *c = &a.cfg;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	c->cpu_milli = (uint32_t)(cores > 0 ? cores : 1) * CL_MILLI;
	c->mem_bytes = 4096ull << 20;
	c->lease_ttl_s = 6;
	c->balance = true;
	snprintf(c->site, sizeof(c->site), "local");
	snprintf(c->prefix, sizeof(c->prefix), "/tern");
	default_tern_binary(c->tern_binary, sizeof(c->tern_binary));
	default_web_dir(c->web_dir, sizeof(c->web_dir));
	bool tls_chosen = false;
	uint32_t v;
	int opt;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case O_NAME: rc = copy_opt(c->name, sizeof(c->name), optarg, "--name"); break;
		case O_ETCD: rc = copy_opt(c->etcd, sizeof(c->etcd), optarg, "--etcd"); break;
		case O_STATE:
			rc = copy_opt(c->state_dir, sizeof(c->state_dir), optarg, "--state-dir");
			break;
		case O_LISTEN: rc = copy_opt(c->tcp, sizeof(c->tcp), optarg, "--listen"); break;
		case O_TOKEN:
			rc = copy_opt(c->token_file, sizeof(c->token_file), optarg, "--token-file");
			break;
		case O_IP: rc = copy_opt(c->ip, sizeof(c->ip), optarg, "--ip"); break;
		case O_PREFIX: rc = copy_opt(c->prefix, sizeof(c->prefix), optarg, "--prefix"); break;
		case O_TERN:
			rc = copy_opt(c->tern_binary, sizeof(c->tern_binary), optarg, "--tern");
			break;
		case O_TLS:
			rc = copy_opt(c->tls_dir, sizeof(c->tls_dir), optarg, "--tls-dir");
			tls_chosen = true;
			break;
		case O_NO_TLS: c->tls_dir[0] = 0; tls_chosen = true; break;
		case O_WEB: rc = copy_opt(c->web_dir, sizeof(c->web_dir), optarg, "--web-dir"); break;
		case O_NO_WEB: c->web_dir[0] = 0; break;
		case O_CPU:
			if ((rc = parse_u32(optarg, 1, 1u << 30, &c->cpu_milli)))
				fprintf(stderr, "ternd: --cpu-milli: \"%s\" is not a number\n", optarg);
			break;
		case O_MEM:
			if ((rc = parse_u32(optarg, 16, 1u << 30, &v)))
				fprintf(stderr, "ternd: --memory-mib: \"%s\" is not a number\n", optarg);
			c->mem_bytes = (uint64_t)v << 20;
			break;
		case O_TTL:
			if ((rc = parse_u32(optarg, 2, 3600, &c->lease_ttl_s)))
				fprintf(stderr, "ternd: --lease-ttl: \"%s\" is not 2 to 3600 seconds\n",
					optarg);
			break;
		case O_LOG: {
			static const char *const names[] = { "error", "warning", "info", "debug" };
			rc = -1;
			for (int i = 0; i < 4; i++)
				if (!strcmp(optarg, names[i])) {
					log_set_level((enum log_level)i);
					rc = 0;
				}
			if (rc)
				fprintf(stderr, "ternd: --log-level: \"%s\" is not error, warning, "
					"info or debug\n", optarg);
			break;
		}
		case O_HELP: usage(stdout); return 0;
		case O_NO_BALANCE: c->balance = false; break;
		case O_BRIDGE: rc = copy_opt(c->bridge, sizeof(c->bridge), optarg, "--bridge"); break;
		case O_SITE: rc = copy_opt(c->site, sizeof(c->site), optarg, "--site"); break;
		case ':':
			fprintf(stderr, "ternd: option %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "ternd: unknown option %s\n", argv[optind - 1]);
			return 2;
		}
		if (rc)
			return 2;
	}
	if (optind < argc || !c->name[0] || !c->etcd[0] || !c->state_dir[0]) {
		usage(stderr);
		return 2;
	}
	if (!vm_name_valid(c->name)) {
		fprintf(stderr, "ternd: \"%s\" is not a host name: 1 to %d of a-z, 0-9 and -\n",
			c->name, CL_NAME_MAX - 1);
		return 2;
	}
	if (!tls_chosen) {
		fprintf(stderr, "ternd: say --tls-dir DIR (migration credentials for the VMMs) "
			"or --no-tls\n");
		return 2;
	}
	if (!c->ip[0]) {
		const char *colon = strrchr(c->tcp, ':');
		if (c->tcp[0] && colon)
			snprintf(c->ip, sizeof(c->ip), "%.*s", (int)(colon - c->tcp), c->tcp);
		else
			snprintf(c->ip, sizeof(c->ip), "127.0.0.1");
	}

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
		fprintf(stderr, "ternd: cannot set signal handlers: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	struct error err = { 0 };
	if (agent_start(&a, &err) < 0) {
		fprintf(stderr, "ternd: %s\n", err.msg);
		agent_stop(&a);
		return 1;
	}
	/* The main thread forks every VMM (spawner.h) until asked to stop. */
	spawner_serve(&a.stop, &stop_signal);
	log_info("ternd %s: stopping (%s)", c->name,
		 stop_signal ? strsignal(stop_signal) : "fenced");
	agent_stop(&a);
	return 0;
}
