/* The event loop: one epoll set over every connection; read, frame and time
 * each response, then write the next request. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

void (*lg_on_idle_exists)(struct lg_conn *c);
void (*lg_on_tick)(void);

static void
handle_input(struct lg_conn *c)
{
	unsigned generation = c->generation;
	bool eof = false;

	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < 65536) {
			c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
			c->in = lg_xrealloc(c->in, c->in_cap);
		}
		size_t room = c->in_cap - c->in_len;

		n = read(c->fd, c->in + c->in_len, room);
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			eof = true;
			break;
		}
		if (n < 0)
			break;
		c->in_len += (size_t)n;
		/* A short read took all there was: the epoll set is level-
		 * triggered, so more bytes come back as another event. One
		 * read(2) per event, not a second one to hear EAGAIN (1,000
		 * sessions woken at once are 1,000 reads less per round on
		 * the cores the server runs on). */
		if ((size_t)n < room)
			break;
	}
	while (c->busy && !c->done) {
		size_t len = lg_response_len(c);
		double t;

		if (len == 0)
			break;
		t = lg_now();
		if (strcmp(c->cmd, "idle-wait") == 0) {
			memmove(c->in, c->in + len, c->in_len - len);
			c->in_len -= len;
			if (lg_on_idle_exists != NULL)
				lg_on_idle_exists(c);
			continue;
		}
		lg_stat_add(c->cmd, t - c->t_sent, lg_response_ok(c));
		if (c->proto == P_SMTP && strcmp(c->cmd, "deliver") == 0 && lg_response_ok(c))
			lg_msgs_done++;
		if (c->proto == P_POP3 && strcmp(c->cmd, "stat") == 0)
			sscanf(c->in, "+OK %u", &c->exists);
		memmove(c->in, c->in + len, c->in_len - len);
		c->in_len -= len;
		c->scan = 0;
		c->busy = false;
		c->out_len = c->out_off = 0;
		lg_next_request(c);
	}
	/* The peer closed: fine after a goodbye (the session moved on to a new
	 * socket or finished), an error in the middle of an exchange. */
	if (eof && !c->done && c->generation == generation) {
		if (c->busy)
			lg_stat_add(c->cmd, 0, false);
		lg_conn_finish(c);
	}
}

static void
handle_output(struct lg_conn *c)
{
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			lg_stat_add("connect", 0, false);
			lg_conn_finish(c);
			return;
		}
		c->connecting = false;
		c->out_len = c->out_off = 0;
		lg_next_request(c); /* waits for the greeting */
		return;
	}
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0) {
			if (errno == EAGAIN)
				return;
			lg_conn_finish(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	lg_watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

void
lg_run_loop(double deadline, bool (*stop)(void))
{
	struct epoll_event evs[256];
	double last_tick = lg_now();

	while (lg_active_conns > 0 && lg_now() < deadline && (stop == NULL || !stop())) {
		int n = epoll_wait(lg_epfd, evs, 256, 100);

		if (lg_on_tick != NULL && lg_now() - last_tick >= 0.1) {
			last_tick = lg_now();
			lg_on_tick();
		}

		for (int i = 0; i < n; i++) {
			struct lg_conn *c = evs[i].data.ptr;

			if (c->done)
				continue;
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				handle_output(c);
			if (!c->done && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				handle_input(c);
		}
	}
}
