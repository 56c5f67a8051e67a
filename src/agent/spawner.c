/* spawner.c: see spawner.h. */
#include "agent/spawner.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

struct request {
	spawn_child_fn fn;
	void *ctx;
	pid_t result;
	bool done;
	struct request *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct request *queue;
static bool serving;

static pid_t fork_child(spawn_child_fn fn, void *ctx)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		fn(ctx);
		_exit(127);
	}
	return pid;
}

pid_t spawner_spawn(spawn_child_fn fn, void *ctx)
{
	pthread_mutex_lock(&lock);
	if (!serving) {
		pthread_mutex_unlock(&lock);
		return fork_child(fn, ctx);
	}
	struct request r = { .fn = fn, .ctx = ctx, .next = queue };
	queue = &r;
	pthread_cond_broadcast(&wake);
	while (!r.done)
		pthread_cond_wait(&wake, &lock);
	pthread_mutex_unlock(&lock);
	return r.result;
}

void spawner_serve(volatile bool *stop, volatile int *signalled)
{
	pthread_mutex_lock(&lock);
	serving = true;
	while (!*stop && !*signalled) {
		while (queue) {
			struct request *r = queue;
			queue = r->next;
			r->result = fork_child(r->fn, r->ctx);
			r->done = true;
		}
		pthread_cond_broadcast(&wake);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&wake, &lock, &ts);
	}
	/* Later requests fork in their own thread (the agent is stopping). */
	serving = false;
	while (queue) {
		struct request *r = queue;
		queue = r->next;
		r->result = -ECANCELED;
		r->done = true;
	}
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&lock);
}
