/* console.c: serial port backends (see console.h).
 *
 * Output is written synchronously from the hart that wrote the UART's
 * transmit register, so bytes keep their order. Input comes from one
 * reader thread per console that polls its sources together with a
 * shutdown pipe, so closing never waits on a blocked read(). A unix-socket
 * console keeps the last 64 KiB of output and replays it to a client that
 * connects late, so a test attaching after start still sees the boot log. */
#include "machine/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "devices/uart16550.h"
#include "util/log.h"

enum console_kind { CON_NONE, CON_STDIO, CON_FILE, CON_UNIX };

#define BACKLOG_SIZE (64 * 1024)

struct console {
	enum console_kind kind;
	char path[108];
	pthread_mutex_t lock;
	int out_fd;                  /* stdout or the file; -1 when none */
	int listen_fd, client_fd;    /* unix socket */
	int stop_pipe[2];
	pthread_t thread;
	bool thread_started;
	struct uart16550 *uart;
	bool tty_raw;
	struct termios saved_tty;
	uint8_t *backlog;            /* ring of recent output (unix kind) */
	size_t backlog_head, backlog_len;
	int escape_state;            /* stdio: Ctrl-A then x quits */
};

static void write_all(int fd, const uint8_t *buf, size_t len, bool is_socket)
{
	while (len) {
		ssize_t n = is_socket ? send(fd, buf, len, MSG_NOSIGNAL) : write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;   /* reader gone: the guest's output is dropped, not fatal */
		buf += n;
		len -= (size_t)n;
	}
}

static void backlog_add(struct console *con, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		con->backlog[(con->backlog_head + con->backlog_len) % BACKLOG_SIZE] = buf[i];
		if (con->backlog_len < BACKLOG_SIZE)
			con->backlog_len++;
		else
			con->backlog_head = (con->backlog_head + 1) % BACKLOG_SIZE;
	}
}

void console_write(struct console *con, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&con->lock);
	switch (con->kind) {
	case CON_STDIO:
	case CON_FILE:
		write_all(con->out_fd, buf, len, false);
		break;
	case CON_UNIX:
		backlog_add(con, buf, len);
		if (con->client_fd >= 0)
			write_all(con->client_fd, buf, len, true);
		break;
	case CON_NONE:
		break;
	}
	pthread_mutex_unlock(&con->lock);
}

static void sink_write(void *opaque, const uint8_t *buf, size_t len)
{
	console_write(opaque, buf, len);
}

struct char_sink console_sink(struct console *con)
{
	return (struct char_sink){ .write = sink_write, .opaque = con };
}

static int open_unix_listener(struct console *con, const char *path, const char *what,
			      struct error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return error_set(err, ENAMETOOLONG, "the socket path for the %s is too long: %s",
				 what, path);
	strcpy(addr.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return error_set(err, EEXIST, "%s exists and is not a socket", path);
		unlink(path);   /* a socket left behind by an earlier run */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_errno(err, errno, "cannot create the socket for the %s", what);
	mode_t old = umask(0077);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	int e = errno;
	umask(old);
	if (rc < 0 || listen(fd, 1) < 0) {
		e = rc < 0 ? e : errno;
		close(fd);
		return error_errno(err, e, "cannot listen on %s for the %s", path, what);
	}
	con->listen_fd = fd;
	strcpy(con->path, path);
	return 0;
}

int console_open(struct console **out, const char *spec, const char *what, struct error *err)
{
	struct console *con = calloc(1, sizeof(*con));
	if (!con)
		return error_set(err, ENOMEM, "cannot allocate the %s", what);
	con->out_fd = con->listen_fd = con->client_fd = -1;
	con->stop_pipe[0] = con->stop_pipe[1] = -1;
	pthread_mutex_init(&con->lock, NULL);
	int rc = 0;

	if (strcmp(spec, "none") == 0) {
		con->kind = CON_NONE;
	} else if (strcmp(spec, "stdio") == 0) {
		con->kind = CON_STDIO;
		con->out_fd = STDOUT_FILENO;
	} else if (strncmp(spec, "file:", 5) == 0 && spec[5]) {
		con->kind = CON_FILE;
		con->out_fd = open(spec + 5, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (con->out_fd < 0)
			rc = error_errno(err, errno, "cannot open %s for the %s", spec + 5, what);
	} else if (strncmp(spec, "unix:", 5) == 0 && spec[5]) {
		con->kind = CON_UNIX;
		con->backlog = malloc(BACKLOG_SIZE);
		if (!con->backlog)
			rc = error_set(err, ENOMEM, "cannot allocate the %s backlog", what);
		else
			rc = open_unix_listener(con, spec + 5, what, err);
	} else {
		rc = error_set(err, EINVAL,
			       "unknown backend \"%s\" for the %s: use stdio, file:PATH, unix:PATH or none",
			       spec, what);
	}
	if (!rc && pipe2(con->stop_pipe, O_CLOEXEC) < 0)
		rc = error_errno(err, errno, "cannot create a pipe for the %s", what);
	if (rc) {
		console_close(con);
		*out = NULL;
		return rc;
	}
	*out = con;
	return 0;
}

/* Hands bytes to the UART, waiting while its FIFO is full. */
static bool feed_uart(struct console *con, const uint8_t *buf, size_t len)
{
	while (len) {
		size_t n = uart16550_receive(con->uart, buf, len);
		buf += n;
		len -= n;
		if (len && !uart16550_wait_rx_space(con->uart, 100)) {
			struct pollfd p = { .fd = con->stop_pipe[0], .events = POLLIN };
			if (poll(&p, 1, 0) > 0)
				return false;
		}
	}
	return true;
}

/* stdio: Ctrl-A x ends tern, Ctrl-A Ctrl-A sends one Ctrl-A (as QEMU does). */
static size_t filter_escape(struct console *con, uint8_t *buf, size_t len, bool *quit)
{
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = buf[i];
		if (con->escape_state) {
			con->escape_state = 0;
			if (c == 'x') {
				*quit = true;
				return out;
			}
			if (c == 0x01)
				buf[out++] = c;
			continue;
		}
		if (c == 0x01 && con->tty_raw) {
			con->escape_state = 1;
			continue;
		}
		buf[out++] = c;
	}
	return out;
}

static void *input_thread(void *arg)
{
	struct console *con = arg;
	uint8_t buf[256];
	for (;;) {
		struct pollfd p[2] = { { .fd = con->stop_pipe[0], .events = POLLIN } };
		int src = -1;
		if (con->kind == CON_STDIO)
			src = STDIN_FILENO;
		else if (con->kind == CON_UNIX)
			src = con->client_fd >= 0 ? con->client_fd : con->listen_fd;
		p[1].fd = src;
		p[1].events = POLLIN;
		int n = poll(p, src >= 0 ? 2 : 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (p[0].revents & POLLIN))
			break;
		if (!p[1].revents)
			continue;
		if (con->kind == CON_UNIX && src == con->listen_fd) {
			int fd = accept4(con->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			pthread_mutex_lock(&con->lock);
			con->client_fd = fd;
			/* Replay what the guest printed before this client came. */
			size_t first = BACKLOG_SIZE - con->backlog_head;
			if (first > con->backlog_len)
				first = con->backlog_len;
			write_all(fd, con->backlog + con->backlog_head, first, true);
			write_all(fd, con->backlog, con->backlog_len - first, true);
			pthread_mutex_unlock(&con->lock);
			continue;
		}
		ssize_t got = read(src, buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			if (con->kind == CON_UNIX) {
				pthread_mutex_lock(&con->lock);
				close(con->client_fd);
				con->client_fd = -1;
				pthread_mutex_unlock(&con->lock);
				continue;
			}
			break;   /* stdin closed: no more input, the VM runs on */
		}
		size_t len = (size_t)got;
		if (con->kind == CON_STDIO) {
			bool quit = false;
			len = filter_escape(con, buf, len, &quit);
			if (quit) {
				log_info("Ctrl-A x: stopping");
				kill(getpid(), SIGTERM);
				break;
			}
		}
		if (!feed_uart(con, buf, len))
			break;
	}
	return NULL;
}

int console_start_input(struct console *con, struct uart16550 *uart, struct error *err)
{
	if (con->kind == CON_NONE || con->kind == CON_FILE)
		return 0;
	con->uart = uart;
	if (con->kind == CON_STDIO && isatty(STDIN_FILENO) &&
	    tcgetattr(STDIN_FILENO, &con->saved_tty) == 0) {
		struct termios raw = con->saved_tty;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR;   /* keep our own log lines readable */
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
			con->tty_raw = true;
	}
	int rc = pthread_create(&con->thread, NULL, input_thread, con);
	if (rc)
		return error_errno(err, rc, "cannot start the console input thread");
	con->thread_started = true;
	return 0;
}

void console_close(struct console *con)
{
	if (!con)
		return;
	if (con->thread_started) {
		if (write(con->stop_pipe[1], "x", 1) < 0)
			log_warn("cannot wake the console thread: %s", strerror(errno));
		pthread_join(con->thread, NULL);
	}
	if (con->tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &con->saved_tty);
	if (con->kind == CON_FILE && con->out_fd >= 0)
		close(con->out_fd);
	if (con->client_fd >= 0)
		close(con->client_fd);
	if (con->listen_fd >= 0) {
		close(con->listen_fd);
		unlink(con->path);
	}
	for (unsigned i = 0; i < 2; i++)
		if (con->stop_pipe[i] >= 0)
			close(con->stop_pipe[i]);
	free(con->backlog);
	pthread_mutex_destroy(&con->lock);
	free(con);
}
