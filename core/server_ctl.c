#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/server.h"
#include "roost/server_impl.h"
#include "roost/xalloc.h"

/*
 * The server's control socket, <data_dir>/ctl.sock, for `roost who`,
 * `roost kick` and `roost reload` (server.h documents the protocol). One
 * thread serves it, one client at a time: a request is one line of at most
 * CTL_LINE_MAX bytes read within CTL_TIMEOUT_MS, the reply is written
 * within the same bound per write, then the connection is closed, so a
 * client that stalls holds the socket for at most a few seconds and never
 * touches a loop or a worker.
 *
 * Who may talk to it: the socket is mode 0600, owned by the server's user,
 * and each client's credentials (SO_PEERCRED) must be root's or the
 * server's own uid; anyone else gets "error permission denied".
 */

#define CTL_LINE_MAX 512
#define CTL_TIMEOUT_MS 3000
#define CTL_SOCK "ctl.sock"

struct server_ctl {
	pthread_t thread;
	int fd;      /* listening */
	int stop_fd; /* eventfd */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Write all of p within the timeout; false when the client went away. */
static bool
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		struct pollfd pfd = {fd, POLLOUT, 0};
		ssize_t w;

		if (poll(&pfd, 1, CTL_TIMEOUT_MS) <= 0)
			return false;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool
reply(int fd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return false;
	return write_all(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void
cmd_who(struct server *s, int fd)
{
	struct conn_info *ci = xcalloc(64, sizeof(*ci));
	unsigned start = 0, next, total = 0;

	while (start < registry_size(s)) {
		unsigned got = registry_list(s, start, ci, 64, &next);

		for (unsigned i = 0; i < got; i++) {
			if (!reply(fd,
			           "session id=%" PRIu64 " proto=%s user=%s peer=%s since=%" PRId64
			           " mailbox=%s bytes_in=%" PRIu64 " bytes_out=%" PRIu64 "\n",
			           ci[i].id, ci[i].proto,
			           LOG_QUOTE(ci[i].user[0] ? ci[i].user : NULL),
			           LOG_QUOTE(ci[i].peer), ci[i].since,
			           LOG_QUOTE(ci[i].mailbox[0] ? ci[i].mailbox : NULL),
			           ci[i].bytes_in, ci[i].bytes_out))
				goto out;
		}
		total += got;
		start = next;
	}
	reply(fd, "ok sessions=%u unlisted=%" PRIu64 "\n", total, registry_unlisted(s));
out:
	free(ci);
}

static void
cmd_kick(struct server *s, int fd, char *args)
{
	char *user = args, *proto = NULL, *sp;
	unsigned n;

	if (user == NULL || user[0] == '\0') {
		reply(fd, "error usage: kick USER [PROTO]\n");
		return;
	}
	if ((sp = strchr(user, ' ')) != NULL) {
		*sp = '\0';
		proto = sp + 1;
		if (proto[0] == '\0' || strchr(proto, ' ') != NULL) {
			reply(fd, "error usage: kick USER [PROTO]\n");
			return;
		}
	}
	n = registry_kick(s, user, proto);
	log_info("event=kick user=%s proto=%s sessions=%u", LOG_QUOTE(user), LOG_QUOTE(proto), n);
	reply(fd, "ok kicked=%u\n", n);
}

static void
cmd_reload(struct server *s, int fd)
{
	char sum[900], err[512];

	if (server_reload(s, sum, sizeof(sum), err, sizeof(err)) == 0)
		reply(fd, "ok %s\n", sum);
	else
		reply(fd, "error %s\n", err);
}

/* Read one line within the timeout: its length, or -1 (reply sent) when
 * it is too long, holds a NUL, or never came. */
static ssize_t
read_line(int fd, char *line, size_t size)
{
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t r;
		char *nl;

		if (poll(&pfd, 1, CTL_TIMEOUT_MS) <= 0)
			return -1;
		r = recv(fd, line + len, size - 1 - len, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			return -1;
		if (memchr(line + len, '\0', (size_t)r) != NULL) {
			reply(fd, "error bad request\n");
			return -1;
		}
		len += (size_t)r;
		line[len] = '\0';
		if ((nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			if (nl > line && nl[-1] == '\r')
				nl[-1] = '\0';
			return nl - line;
		}
		if (len == size - 1) {
			reply(fd, "error request too long\n");
			return -1;
		}
	}
}

static void
serve_client(struct server *s, int fd)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char line[CTL_LINE_MAX + 1], *args;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		log_warn("event=ctl_refused uid=%ld reason=\"not root or the server's user\"",
		         clen == sizeof(cred) ? (long)cred.uid : -1L);
		reply(fd, "error permission denied\n");
		return;
	}
	if (read_line(fd, line, sizeof(line)) < 0)
		return;
	args = strchr(line, ' ');
	if (args != NULL)
		*args++ = '\0';
	if (strcmp(line, "who") == 0 && args == NULL)
		cmd_who(s, fd);
	else if (strcmp(line, "kick") == 0)
		cmd_kick(s, fd, args);
	else if (strcmp(line, "reload") == 0 && args == NULL)
		cmd_reload(s, fd);
	else
		reply(fd, "error unknown command\n");
}

static void *
ctl_thread(void *arg)
{
	struct server *s = arg;
	struct server_ctl *ctl = s->ctl;

	for (;;) {
		struct pollfd pfd[2] = {{ctl->fd, POLLIN, 0}, {ctl->stop_fd, POLLIN, 0}};
		int fd;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("event=ctl_error op=poll error=\"%s\"", strerror(errno));
			break;
		}
		if (pfd[1].revents != 0)
			break;
		if ((pfd[0].revents & POLLIN) == 0)
			continue;
		fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_client(s, fd);
		close(fd);
	}
	return NULL;
}

/* Is a server already answering on path? Then it is not ours to take. */
static bool
socket_live(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

int
server_ctl_start(struct server *s)
{
	struct server_ctl *ctl = xcalloc(1, sizeof(*ctl));
	const char *dir = s->cfg->data_dir != NULL ? s->cfg->data_dir : "./var";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int e;

	ctl->fd = -1;
	ctl->stop_fd = -1;
	if ((size_t)snprintf(ctl->path, sizeof(ctl->path), "%s/" CTL_SOCK, dir) >=
	        sizeof(ctl->path) ||
	    (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/" CTL_SOCK ".%ld", dir,
	                     (long)getpid()) >= sizeof(sa.sun_path)) {
		log_warn("event=ctl_disabled reason=\"socket path too long\" data_dir=%s",
		         LOG_QUOTE(dir));
		goto fail;
	}
	if (socket_live(ctl->path)) {
		log_warn("event=ctl_disabled path=%s reason=\"another server answers there\"",
		         LOG_QUOTE(ctl->path));
		goto fail;
	}
	/* Bound under a temporary name and made 0600 before it takes the
	 * real one, so no other user can connect in between. */
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unlink(sa.sun_path);
	if (ctl->fd < 0 || bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(sa.sun_path, 0600) != 0 || listen(ctl->fd, 16) != 0 ||
	    rename(sa.sun_path, ctl->path) != 0) {
		log_warn("event=ctl_disabled path=%s error=\"%s\"", LOG_QUOTE(ctl->path),
		         strerror(errno));
		unlink(sa.sun_path);
		goto fail;
	}
	ctl->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ctl->stop_fd < 0)
		goto fail_unlink;
	s->ctl = ctl;
	if ((e = pthread_create(&ctl->thread, NULL, ctl_thread, s)) != 0) {
		log_warn("event=ctl_disabled error=\"%s\"", strerror(e));
		s->ctl = NULL;
		goto fail_unlink;
	}
	log_info("event=ctl_listen path=%s", LOG_QUOTE(ctl->path));
	return 0;
fail_unlink:
	unlink(ctl->path);
fail:
	if (ctl->fd >= 0)
		close(ctl->fd);
	if (ctl->stop_fd >= 0)
		close(ctl->stop_fd);
	free(ctl);
	return ROOST_EIO;
}

void
server_ctl_stop(struct server *s)
{
	struct server_ctl *ctl = s->ctl;
	uint64_t one = 1;

	if (ctl == NULL)
		return;
	if (write(ctl->stop_fd, &one, sizeof(one)) < 0)
		log_warn("event=ctl_stop error=\"%s\"", strerror(errno));
	pthread_join(ctl->thread, NULL);
	close(ctl->fd);
	close(ctl->stop_fd);
	unlink(ctl->path);
	free(ctl);
	s->ctl = NULL;
}
