/* agent.c: starting and stopping the host agent (agent.h). */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/rest.h"
#include "cluster/etcd.h"
#include "util/log.h"

int64_t agent_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int agent_key(const struct agent *a, char *out, size_t size, const char *fmt, ...)
{
	int n = snprintf(out, size, "%s/", a->cfg.prefix);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(out + n, size - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)(n + m) >= size)
		return -ENAMETOOLONG;
	return 0;
}

static int read_token(struct agent *a, struct error *err)
{
	int fd = open(a->cfg.token_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, errno, "cannot open the token file %s", a->cfg.token_file);
	ssize_t n = read(fd, a->token, sizeof(a->token) - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return error_errno(err, e, "cannot read the token file %s", a->cfg.token_file);
	a->token[n] = 0;
	a->token[strcspn(a->token, "\r\n")] = 0;
	return 0;
}

static int make_dir(const char *path, struct error *err)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return error_errno(err, errno, "cannot create %s", path);
	return 0;
}

int agent_start(struct agent *a, struct error *err)
{
	pthread_mutex_init(&a->lock, NULL);
	char path[300];
	int rc = make_dir(a->cfg.state_dir, err);
	snprintf(path, sizeof(path), "%s/vms", a->cfg.state_dir);
	if (rc || (rc = make_dir(path, err)))
		return rc;
	if (a->cfg.tcp[0]) {
		if (!a->cfg.token_file[0])
			return error_set(err, EINVAL, "--listen needs --token-file");
		if ((rc = read_token(a, err)))
			return rc;
	}
	a->etcd = etcd_open(a->cfg.etcd, err);
	if (!a->etcd)
		return -(err->code ? err->code : EIO);
	if ((rc = agent_register(a, err)))
		return rc;
	snprintf(path, sizeof(path), "%s/api.sock", a->cfg.state_dir);
	a->rest = rest_server_create(path, a->cfg.tcp[0] ? a->cfg.tcp : NULL,
				     a->cfg.tcp[0] ? a->token : NULL, err);
	if (!a->rest)
		return -(err->code ? err->code : EIO);
	if (a->cfg.web_dir[0] && (rc = rest_static(a->rest, a->cfg.web_dir, err)) < 0)
		return rc;
	if ((rc = agent_api_register(a, err)) || (rc = agent_dr_register(a, err)) ||
	    (rc = agent_events_register(a, err)) ||
	    (rc = rest_server_start(a->rest, err)))
		return rc;
	if ((rc = pthread_create(&a->lease_thread, NULL, agent_lease_main, a)))
		return error_errno(err, rc, "cannot start the lease thread");
	a->threads_started |= 1;
	if ((rc = pthread_create(&a->reconcile_thread, NULL, agent_reconcile_main, a)))
		return error_errno(err, rc, "cannot start the reconcile thread");
	a->threads_started |= 2;
	if ((rc = pthread_create(&a->controller_thread, NULL, agent_controller_main, a)))
		return error_errno(err, rc, "cannot start the controller thread");
	a->threads_started |= 4;
	if ((rc = pthread_create(&a->watchdog_thread, NULL, agent_watchdog_main, a)))
		return error_errno(err, rc, "cannot start the watchdog thread");
	a->threads_started |= 8;
	log_info("ternd %s: serving on %s%s%s, etcd %s, lease %lld (%u s)", a->cfg.name, path,
		 a->cfg.tcp[0] ? " and " : "", a->cfg.tcp, a->cfg.etcd, (long long)a->lease,
		 a->cfg.lease_ttl_s);
	return 0;
}

void agent_stop(struct agent *a)
{
	a->stop = true;
	if (a->threads_started & 8)
		pthread_join(a->watchdog_thread, NULL);
	if (a->threads_started & 4)
		pthread_join(a->controller_thread, NULL);
	if (a->threads_started & 2)
		pthread_join(a->reconcile_thread, NULL);
	if (a->threads_started & 1)
		pthread_join(a->lease_thread, NULL);
	a->threads_started = 0;
	rest_server_destroy(a->rest);
	a->rest = NULL;
	/* A VM must never outlive its agent: nobody would fence it. */
	agent_kill_all_vms(a, "the agent is stopping");
	if (a->etcd) {
		struct error err = { 0 };
		if (a->lease && etcd_lease_revoke(a->etcd, a->lease, &err) < 0)
			log_warn("ternd: revoking the host lease: %s", err.msg);
		etcd_close(a->etcd);
		a->etcd = NULL;
	}
}
