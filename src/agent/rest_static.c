/* rest_static.c: the dashboard's files (rest.h, rest_static): GET / is
 * dir/index.html, GET /ui/NAME is dir/NAME for a plain name (letters,
 * digits, '.', '-', '_'; no '/' and no leading '.'), so nothing outside
 * dir can be named. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/rest_priv.h"

int rest_static(struct rest_server *srv, const char *dir, struct error *err)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return error_errno(err, errno, "the dashboard's directory %s", dir);
	if (!S_ISDIR(st.st_mode))
		return error_set(err, ENOTDIR, "the dashboard's directory %s is not a directory", dir);
	if (strlen(dir) >= sizeof(srv->static_dir))
		return error_set(err, ENAMETOOLONG, "the dashboard's directory path is too long");
	snprintf(srv->static_dir, sizeof(srv->static_dir), "%s", dir);
	return 0;
}

static bool plain_name(const char *name)
{
	if (!name[0] || name[0] == '.' || strlen(name) > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			return false;
	return true;
}

static const char *content_type(const char *name)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".json", "application/json" },
	};
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(dot, types[i].ext))
			return types[i].type;
	return "application/octet-stream";
}

bool rest_static_request(struct rest_server *srv, struct MHD_Connection *c, const char *url,
			 enum MHD_Result *result)
{
	if (!srv->static_dir[0])
		return false;
	const char *name;
	if (!strcmp(url, "/"))
		name = "index.html";
	else if (!strncmp(url, "/ui/", 4))
		name = url + 4;
	else
		return false;
	char path[sizeof(srv->static_dir) + 80];
	int fd = -1;
	struct stat st;
	if (plain_name(name)) {
		snprintf(path, sizeof(path), "%s/%s", srv->static_dir, name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		*result = rest_send_error(c, 404, "no such file of the dashboard");
		return true;
	}
	/* The response owns fd from here, and closes it. */
	struct MHD_Response *r = MHD_create_response_from_fd((size_t)st.st_size, fd);
	if (!r) {
		close(fd);
		*result = MHD_NO;
		return true;
	}
	MHD_add_response_header(r, "Content-Type", content_type(name));
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	*result = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return true;
}
