/* unix_listen.c: see unix_listen.h. */
#include "api/unix_listen.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

/* Makes path free for our socket: absent, or a stale socket nobody listens
 * on (removed). A live socket or any other file is refused. */
static int claim_path(const char *path, struct error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return error_errno(err, errno, "cannot check the socket path %s", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return error_set(err, EEXIST, "%s exists and is not a socket; not replacing it",
				 path);

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, path, strlen(path) + 1);
	/* Non-blocking, so a live server with a full backlog answers EAGAIN
	 * instead of stalling us. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return error_errno(err, errno, "cannot create a socket");
	int rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	int e = errno;
	close(fd);
	if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
		return error_set(err, EADDRINUSE, "another process serves %s", path);
	if (e != ECONNREFUSED)
		return error_errno(err, e, "cannot probe the existing socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return error_errno(err, errno, "cannot remove the stale socket %s", path);
	log_info("replaced the stale socket %s", path);
	return 0;
}

int unix_listen(struct unix_listener *l, const char *path, int backlog, bool nonblock,
		struct error *err)
{
	l->fd = -1;
	l->bound = false;
	size_t len = strlen(path);
	if (!len)
		return error_set(err, EINVAL, "no path for the socket");
	if (len >= sizeof(l->path))
		return error_set(err, ENAMETOOLONG, "socket path %s is too long (%zu bytes; a unix "
				 "socket path is at most %zu)", path, len, sizeof(l->path) - 1);
	memcpy(l->path, path, len + 1);
	int rc = claim_path(path, err);
	if (rc)
		return rc;

	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (l->fd < 0)
		return error_errno(err, errno, "cannot create a unix socket");
	/* Linux creates the socket file with the socket inode's mode (less the
	 * umask), so the file is owner-only from its first instant. */
	if (fchmod(l->fd, 0600) < 0)
		return error_errno(err, errno, "cannot restrict the socket's permissions");

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, path, len + 1);
	if (bind(l->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		if (errno == EADDRINUSE)
			return error_set(err, EADDRINUSE, "%s was created by another process "
					 "meanwhile", path);
		return error_errno(err, errno, "cannot create the socket %s", path);
	}
	struct stat st;
	if (lstat(path, &st) < 0)
		return error_errno(err, errno, "cannot check the new socket %s", path);
	l->bound = true;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	/* Nobody can connect before listen(), so tightening the mode here
	 * leaves no window either, should the fchmod above not have applied. */
	if ((st.st_mode & 0077) && chmod(path, 0600) < 0)
		return error_errno(err, errno, "cannot restrict the permissions of %s", path);
	if (listen(l->fd, backlog) < 0)
		return error_errno(err, errno, "cannot listen on the socket %s", path);
	return 0;
}

void unix_listen_close(struct unix_listener *l)
{
	struct stat st;
	/* Only if the file is still ours: a successor may have replaced it. */
	if (l->bound && lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino &&
	    unlink(l->path) < 0)
		log_warn("cannot remove the socket %s: %s", l->path, strerror(errno));
	l->bound = false;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}
