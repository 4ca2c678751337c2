/* loadgen's connection table: the output queue, connecting, closing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

int lg_epfd;
struct lg_conn *lg_conns;
int lg_active_conns;

void
lg_out_add(struct lg_conn *c, const char *data, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		c->out_cap = (c->out_len + len) * 2;
		c->out = lg_xrealloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

void __attribute__((format(printf, 2, 3))) lg_out_printf(struct lg_conn *c, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	lg_out_add(c, tmp, (size_t)n);
}

void
lg_watch(struct lg_conn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (epoll_ctl(lg_epfd, op, c->fd, &ev) != 0 && op != EPOLL_CTL_DEL)
		lg_die("epoll_ctl: %s", strerror(errno));
}

int
lg_connect_to(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, one = 1;

	if (inet_pton(AF_INET, lg_opt.host, &sa.sin_addr) != 1)
		lg_die("bad host %s", lg_opt.host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		lg_die("socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
		/* 10,000 sessions per run, and the sockets of the runs before
		 * still in TIME_WAIT, outrun the default 28,232 local ports */
		if (errno == EADDRNOTAVAIL)
			lg_die("connect %s:%d: %s: no local port left; widen them, e.g. "
			       "sysctl -w net.ipv4.ip_local_port_range=\"15000 65000\"",
			       lg_opt.host, port, strerror(errno));
		lg_die("connect %s:%d: %s", lg_opt.host, port, strerror(errno));
	}
	return fd;
}

/* Send the queued lg_request and remember when, for its latency. */
void
lg_request(struct lg_conn *c, const char *cmd)
{
	c->cmd = cmd;
	c->busy = true;
	c->resp_ok = true;
	c->t_sent = lg_now();
	lg_watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

void
lg_conn_finish(struct lg_conn *c)
{
	if (c->fd >= 0) {
		lg_watch(c, 0, EPOLL_CTL_DEL);
		close(c->fd);
		c->fd = -1;
	}
	if (!c->done) {
		c->done = true;
		lg_active_conns--;
	}
}

/* The session is over: start the next one on a new socket. */
void
lg_next_session(struct lg_conn *c)
{
	lg_watch(c, 0, EPOLL_CTL_DEL);
	close(c->fd);
	c->fd = lg_connect_to(lg_opt.port);
	c->generation++;
	c->step = 0;
	c->in_len = c->scan = c->lit_left = 0;
	c->connecting = true;
	lg_watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

void
lg_alloc_conns(enum lg_proto proto, int n)
{
	lg_conns = calloc((size_t)n, sizeof(*lg_conns));
	if (lg_conns == NULL)
		lg_die("out of memory");
	for (int i = 0; i < n; i++) {
		lg_conns[i].id = i;
		lg_conns[i].proto = proto;
		lg_conns[i].user = i % lg_opt.users;
		lg_conns[i].fd = -1;
	}
}

void
lg_connect_range(int port, int from, int to)
{
	for (int i = from; i < to; i++) {
		struct lg_conn *c = &lg_conns[i];

		c->fd = lg_connect_to(port);
		c->connecting = true;
		lg_active_conns++;
		lg_watch(c, EPOLLOUT, EPOLL_CTL_ADD);
	}
}

void
lg_open_conns(enum lg_proto proto, int port, int n)
{
	lg_alloc_conns(proto, n);
	lg_connect_range(port, 0, n);
}
