/*
 * The engine's control socket (roost queue): a Unix socket under the queue
 * directory taking one command a line (list, flush, delete...), and
 * outbound_control(), its client side.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "roost/config.h"
#include "roost/dns.h"
#include "roost/dsn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/outbound.h"
#include "roost/queue.h"
#include "roost/relay.h"
#include "roost/services.h"
#include "roost/smtp_client.h"
#include "roost/xalloc.h"

#include "outbound_impl.h"

static struct queue_entry *
find_entry(struct outbound *ob, const char *id)
{
	for (struct queue_entry *e = ob->entries; e != NULL; e = e->next) {
		if (strcmp(e->id, id) == 0)
			return e;
	}
	return NULL;
}

static void
ctl_run(struct outbound *ob, char *line, char *reply, size_t len)
{
	char *arg = strchr(line, ' ');
	struct queue_entry *e = NULL;

	if (arg != NULL)
		*arg++ = '\0';
	if (arg != NULL && (e = find_entry(ob, arg)) == NULL) {
		snprintf(reply, len, "error no such queue entry\n");
		return;
	}
	if (strcmp(line, "flush") == 0) {
		for (struct queue_entry *x = ob->entries; x != NULL; x = x->next) {
			if (e == NULL || x == e) {
				x->next_try = 0;
				if (x->busy == 0)
					queue_entry_save(ob->q, x);
				outbound_index(ob, x);
			}
		}
		ob->scan_now = true;
	} else if (e != NULL && strcmp(line, "hold") == 0) {
		e->held = true;
		queue_entry_save(ob->q, e);
		outbound_index(ob, e);
	} else if (e != NULL && strcmp(line, "release") == 0) {
		e->held = false;
		e->next_try = 0;
		queue_entry_save(ob->q, e);
		outbound_index(ob, e);
	} else if (e != NULL && strcmp(line, "delete") == 0) {
		e->dead = true;
		outbound_entry_settle(ob, e);
	} else {
		snprintf(reply, len, "error unknown command\n");
		return;
	}
	log_info("event=queue_control command=%s queue_id=%s", line, arg != NULL ? arg : "-");
	snprintf(reply, len, "ok\n");
}

void
outbound_ctl_accept(struct outbound *ob)
{
	int fd = accept4(ob->ctl_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CTL; i++) {
		if (ob->ctl[i].fd < 0) {
			ob->ctl[i].fd = fd;
			ob->ctl[i].len = 0;
			ob->ctl[i].deadline = outbound_now_ms() + 5000;
			return;
		}
	}
	close(fd); /* busy: the client sees the close and retries */
}

void
outbound_ctl_read(struct outbound *ob, struct ctl_client *cc)
{
	char reply[128];
	ssize_t r = read(cc->fd, cc->line + cc->len, sizeof(cc->line) - 1 - cc->len);
	char *nl;

	if (r < 0 && errno == EAGAIN)
		return;
	if (r <= 0) {
		close(cc->fd);
		cc->fd = -1;
		return;
	}
	cc->len += (size_t)r;
	cc->line[cc->len] = '\0';
	nl = strchr(cc->line, '\n');
	if (nl == NULL && cc->len < sizeof(cc->line) - 1)
		return;
	if (nl != NULL)
		*nl = '\0';
	ctl_run(ob, cc->line, reply, sizeof(reply));
	if (write(cc->fd, reply, strlen(reply)) < 0) {
		/* The client went away: nothing to tell it. */
	}
	close(cc->fd);
	cc->fd = -1;
}

int
outbound_ctl_listen(struct outbound *ob)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", queue_dir(ob->q)) >=
	    sizeof(sa.sun_path)) {
		log_warn("event=queue_control status=disabled reason=\"socket path too long\"");
		return -1;
	}
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
		log_warn("event=queue_control status=disabled error=\"%s\"", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
outbound_control(const char *dir, const char *line, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char reply[256];
	size_t got = 0;
	int fd;

	snprintf(err, errlen, "%s", "");
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", dir) >=
	    sizeof(sa.sun_path))
		return ROOST_ENOTFOUND;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ROOST_EIO;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return ROOST_ENOTFOUND;
	}
	{
		struct timeval tv = {10, 0};

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return ROOST_EIO;
	}
	while (got < sizeof(reply) - 1) {
		ssize_t r = read(fd, reply + got, sizeof(reply) - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	if (strcmp(reply, "ok") == 0)
		return 0;
	snprintf(err, errlen, "%s",
	         strncmp(reply, "error ", 6) == 0 ? reply + 6 : "no answer from the server");
	return ROOST_EINVAL;
}
