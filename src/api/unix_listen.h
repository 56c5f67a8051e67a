/* unix_listen.h: a listening unix stream socket at a path, owner-only,
 * for the VMM's control API and the agent's REST API alike. */
#ifndef TERN_API_UNIX_LISTEN_H
#define TERN_API_UNIX_LISTEN_H

#include <stdbool.h>
#include <sys/types.h>

#include "util/error.h"

struct unix_listener {
	int fd;                 /* -1 when closed */
	bool bound;             /* the socket file at path is ours to remove */
	dev_t dev;
	ino_t ino;
	char path[108];
};

/* Creates the socket at path (a stale socket nobody listens on is
 * replaced; a live one or any other file is refused), mode 0600,
 * listening with `backlog`; non-blocking and close-on-exec if asked. */
int unix_listen(struct unix_listener *l, const char *path, int backlog, bool nonblock,
		struct error *err);
/* Closes it and removes the socket file, if it is still the one created. */
void unix_listen_close(struct unix_listener *l);

#endif
