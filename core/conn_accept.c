#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_impl.h"
#include "roost/error.h"
#include "roost/server_impl.h"
#include "roost/xalloc.h"
#include "roost/metrics.h"

/*
 * Accept: a loop takes a connection it accepted, or hands the socket to a
 * loop that holds fewer (balance between the loops); and the loop's
 * shutdown of its connections (stop: goodbyes; force: close).
 */

/* An accepted socket on its way to the loop that will serve it. */
struct accepted {
	struct listener *lst;
	int fd;
	bool loopback, is_unix;
	char peer[64], local[64];
};
_Static_assert(sizeof(((struct accepted *)0)->peer) == sizeof(((struct conn *)0)->peer) &&
                   sizeof(((struct accepted *)0)->local) == sizeof(((struct conn *)0)->local),
               "an accepted socket's names are copied whole into its connection");

static void
accept_here(struct srv_loop *sl, const struct accepted *a)
{
	struct server *s = sl->srv;
	struct listener *lst = a->lst;
	int fd = a->fd;
	struct conn *c = xcalloc(1, sizeof(*c));
	uint64_t now = loop_now(sl->loop);

	c->srv = s;
	c->cfg = server_config(s);
	c->sl = sl;
	c->lst = lst;
	c->id = atomic_fetch_add(&s->next_id, 1) + 1;
	c->fd = fd;
	c->loopback = a->loopback;
	c->is_unix = a->is_unix;
	c->started = now;
	memcpy(c->peer, a->peer, sizeof(c->peer));
	memcpy(c->local, a->local, sizeof(c->local));
	c->state = CONN_NEW;
	c->tp = &conn_plain_transport;
	c->io.fn = conn_event;
	c->timer.fn = conn_deadline;
	c->work.fn = conn_work;
	c->back.fn = conn_back;
	conn_init_wake(c);
	atomic_init(&c->refs, 1);
	buf_init(&c->in, 0);
	buf_init(&c->out, 0);
	c->idle_since = now;
	c->out_progress = now;
	c->ready_out = true;

	c->next = sl->conns;
	if (sl->conns != NULL)
		sl->conns->prev = c;
	sl->conns = c;
	sl->nconns++;
	registry_add(c);

	conn_log(c, LOG_LEVEL_INFO, "event=connect local=%s", c->local);
	metrics_conn_open(conn_listener(c));
	if (loop_add(sl->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->io) != 0) {
		conn_close_now(c, "epoll_error");
		return;
	}
	if (lst->implicit_tls) {
		if (s->tls == NULL) {
			conn_close_now(c, "no_tls");
			return;
		}
		if (!conn_tls_start(c))
			return;
	}
	conn_step(c);
}

/*
 * Balance between the loops. Every loop waits on every listening socket
 * (EPOLLEXCLUSIVE) and the one woken accepts up to a batch: a burst of
 * clients (1,000 IMAP sessions logging in) left one loop with about two
 * thirds of them, and a delivery that woke them all waited for that loop
 * to write its 650 while the other had finished its 350 (issue 20). A loop
 * that accepts a connection while another holds fewer hands the socket to
 * that one, which takes it as its own accept would have.
 */
struct handoff {
	struct loop_msg msg;
	struct srv_loop *to;
	struct accepted a;
};

/* The target loop: take the connection, or, when it stops (or its thread
 * ended and loop_free() runs what was left queued), close it as a loop
 * that is stopping closes what it accepts. */
static void
handoff_arrived(struct loop_msg *m)
{
	struct handoff *h = container_of(m, struct handoff, msg);
	struct srv_loop *sl = h->to;

	if (sl->stopping) {
		atomic_fetch_sub(&sl->held, 1);
		close(h->a.fd);
		limits_release(sl->srv, h->a.peer, h->a.is_unix);
	} else {
		accept_here(sl, &h->a);
	}
	free(h);
}

void
conn_accept(struct srv_loop *sl, struct listener *lst, int fd, const char *peer, const char *local,
            bool loopback, bool is_unix)
{
	struct server *s = sl->srv;
	struct srv_loop *to = sl;
	unsigned least = atomic_load(&sl->held);
	struct accepted a = {.lst = lst, .fd = fd, .loopback = loopback, .is_unix = is_unix};
	struct handoff *h;

	for (unsigned i = 0; i < s->nloops; i++) {
		struct srv_loop *o = &s->loops[i];
		unsigned held = atomic_load(&o->held);

		if (o != sl && atomic_load(&o->taking) && held < least) {
			least = held;
			to = o;
		}
	}
	snprintf(a.peer, sizeof(a.peer), "%s", peer);
	snprintf(a.local, sizeof(a.local), "%s", local);
	atomic_fetch_add(&to->held, 1);
	if (to == sl) {
		accept_here(sl, &a);
		return;
	}
	h = xcalloc(1, sizeof(*h));
	h->msg.fn = handoff_arrived;
	h->to = to;
	h->a = a;
	loop_post(to->loop, &h->msg);
}

/* ---- shutdown ---- */

void
conn_loop_maybe_quit(struct srv_loop *sl)
{
	if (sl->stopping && sl->nconns == 0 && !sl->quit_sent) {
		sl->quit_sent = true;
		loop_quit(sl->loop);
	}
}

void
conn_loop_stop(struct srv_loop *sl)
{
	struct conn *c, *next;

	sl->stopping = true;
	atomic_store(&sl->taking, false);
	for (c = sl->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state != CONN_WORKER)
			conn_step(c);
	}
	conn_loop_maybe_quit(sl);
}

void
conn_loop_force(struct srv_loop *sl)
{
	struct conn *c, *next;

	sl->forced = true;
	for (c = sl->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == CONN_WORKER) {
			/* A worker still runs a hook: make its socket fail so
			 * the connection closes when it comes back. */
			(void)shutdown(c->fd, SHUT_RDWR);
		} else {
			conn_close_now(c, "shutdown");
		}
	}
	conn_loop_maybe_quit(sl);
}
