/*
 * The web page's files (www/ in the source tree, installed beside the
 * binary's data). Only GET and HEAD, only regular files under the root,
 * no path segment starting with a dot (so no ".." either).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"

#include "http_impl.h"

#ifndef ROOST_WWW_DIR
#define ROOST_WWW_DIR "/usr/local/share/roost/www"
#endif

#define STATIC_MAX (4u << 20)

static pthread_once_t root_once = PTHREAD_ONCE_INIT;
static char found_root[PATH_MAX + 16];

static bool
is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Without [http] www_dir: the installed files, or www/ beside build/ when
 * the binary runs from the source tree. */
static void
find_root(void)
{
	char exe[PATH_MAX - 16];
	ssize_t n;

	if (is_dir(ROOST_WWW_DIR)) {
		snprintf(found_root, sizeof(found_root), "%s", ROOST_WWW_DIR);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(found_root, sizeof(found_root), "%s/../www", exe);
			if (is_dir(found_root))
				return;
		}
	}
	snprintf(found_root, sizeof(found_root), "%s", ROOST_WWW_DIR);
}

static const char *
www_root(const struct roost_config *cfg)
{
	if (cfg->http_www_dir != NULL && cfg->http_www_dir[0] != '\0')
		return cfg->http_www_dir;
	pthread_once(&root_once, find_root);
	return found_root;
}

static const char *
mime_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".js", "application/javascript; charset=utf-8"},
	    {".json", "application/json"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}

void
http_static_serve(struct http_session *s)
{
	struct buf rel = BUF_INIT(PATH_MAX), data = BUF_INIT(STATIC_MAX);
	char full[PATH_MAX], etag[64];
	const char *inm;
	struct stat st;
	uint8_t chunk[8192];
	ssize_t n;
	int fd = -1;

	if (http_url_decode(s->req.path, strlen(s->req.path), &rel) != 0 ||
	    strstr((char *)rel.data, "/.") != NULL || strchr((char *)rel.data, '\\') != NULL) {
		http_respond_text(s, 404, NULL, NULL);
		goto done;
	}
	if (rel.data[rel.len - 1] == '/')
		buf_append_str(&rel, "index.html");
	if (snprintf(full, sizeof(full), "%s%s", www_root(s->svc->cfg), (char *)rel.data) >=
	    (int)sizeof(full)) {
		http_respond_text(s, 404, NULL, NULL);
		goto done;
	}
	fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > STATIC_MAX) {
		http_respond_text(s, 404, NULL, NULL);
		goto done;
	}
	snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
	         (unsigned long long)st.st_mtime);
	inm = http_request_field(&s->req, "If-None-Match");
	if (inm != NULL && strcmp(inm, etag) == 0) {
		char extra[96];

		snprintf(extra, sizeof(extra), "ETag: %s\r\n", etag);
		http_respond(s, 304, NULL, NULL, 0, extra);
		goto done;
	}
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		if (buf_append(&data, chunk, (size_t)n) != 0)
			break;
	}
	{
		char extra[512];

		/* The page's own files: scripts only from here, nothing fetched
		 * from elsewhere (a message's frame inherits this too), no
		 * framing by other sites. */
		snprintf(
		    extra, sizeof(extra),
		    "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
		    "X-Frame-Options: SAMEORIGIN\r\nReferrer-Policy: no-referrer\r\n"
		    "Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:; "
		    "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; "
		    "form-action 'self'; frame-ancestors 'self'\r\n",
		    etag);
		http_respond(s, 200, mime_type(full), data.data, data.len, extra);
	}
done:
	if (fd >= 0)
		close(fd);
	buf_free(&rel);
	buf_free(&data);
}
