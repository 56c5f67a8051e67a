/* spawner.h: every VMM process is forked by one long-lived thread, the
 * agent's main thread. A VMM asks the kernel to kill it when its parent
 * goes (PR_SET_PDEATHSIG), so that no VM outlives the agent that alone can
 * fence it; but "parent" there means the thread that forked, and a REST
 * connection's thread ends with its request. */
#ifndef TERN_AGENT_SPAWNER_H
#define TERN_AGENT_SPAWNER_H

#include <stdbool.h>
#include <sys/types.h>

/* Runs in the child after fork; must exec or _exit. */
typedef void (*spawn_child_fn)(void *ctx);

/* Called from any thread: forks (in the spawner thread) and returns the
 * child's pid, or a negative errno. */
pid_t spawner_spawn(spawn_child_fn fn, void *ctx);
/* The spawner thread's loop: serves requests until *stop. Without a
 * running spawner, spawner_spawn forks in the calling thread. */
void spawner_serve(volatile bool *stop, volatile int *signalled);

#endif
