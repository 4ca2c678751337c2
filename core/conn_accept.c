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
 * Accept, the hand-off between the loop and the workers, and the step that
 * drives a connection through its states (conn_impl.h, enum conn_state).
 *
 * conn_step() runs on the loop thread whenever something happened (the
 * socket became readable or writable, a worker handed the connection back,
 * a wake-up, a deadline) and pushes the connection as far as it can. When
 * there is work for the protocol it hands the connection to the worker pool
 * (CONN_WORKER); the worker runs the hook, writes what the socket takes
 * without waiting, and posts the connection back (conn_back()), where the
 * hook's requests (close, STARTTLS, delay, a continuation) pick the next
 * state. A command the protocol says cannot block (command_inline) runs on
 * the loop instead, passing through CONN_WORKER the same way, without the
 * two thread switches of the round trip; so does a wake-up the protocol
 * can handle without blocking (wake_inline), a bounded number of them per
 * iteration of the loop (run_wake_inline()), the rest on workers.
 *
 * A plain reply (everything sent, nothing else to do: see quiet_back())
 * is handed back without waking the loop (loop_post_quiet()): the loop
 * takes it before the socket's next event, usually the client's next
 * command, and so wakes once per command instead of twice.
 */

/* ---- the worker side ---- */

/* Worker, owning c: the hook left nothing for the loop to do but take the
 * connection back and wait for the client (all output sent, no request,
 * no input already read, no timer due soon). */
static bool
plain_reply(const struct conn *c)
{
	size_t framed = c->job == JOB_COMMAND ? c->cmd_len : 0;

	if (c->job != JOB_COMMAND && c->job != JOB_WAKE && c->job != JOB_CONTINUE)
		return false;
	if (c->session == NULL || c->io_err != 0 || c->close_req || c->starttls_req ||
	    c->delay_ms != 0 || c->cont_fn != NULL)
		return false;
	if (out_len(c) > 0 || in_len(c) != framed || tp_pending(c))
		return false;
	return c->timer_at == 0 || c->timer_at > c->done_at + 2 * LOOP_QUIET_MS;
}

/*
 * Worker: hand a plain reply's connection back without waking the loop.
 * True when it did (c belongs to the loop from then on).
 *
 * Why no wake-up is lost: the loop runs quietly queued messages before the
 * fd events of each wake-up (loop_run()), so an event of this socket that
 * the loop takes after the hand-back is queued finds the connection back
 * in its hands. An event it took before, while c was CONN_WORKER, sets
 * WAKE_BIT_IO (conn_event()) and makes the loop run its queue once more
 * after that batch of events (loop_recheck()); a wake-up or a kick sets
 * its bit before it posts. So after queuing the hand-back we look at the
 * bits: a bit set before our look makes us poke the loop; one set after
 * it comes either from a post (which runs after our hand-back) or from an
 * event the loop took after our hand-back was queued, and its re-run of
 * the queue takes the hand-back. (The mutex of the loop's queue orders
 * the two: if the re-run did not see our hand-back, it ran before we
 * queued it, so the bit, set before the re-run, is seen by our look.) A
 * server stop is a post as well. Timers: the connection's timer is
 * disarmed while a worker owns it and re-armed from the hand-back, and
 * the loop sleeps at most LOOP_QUIET_MS while hand-backs are out
 * (loop_expect_quiet()), so a client that stays silent meets its idle
 * timeout, counted from done_at, at most that much later.
 */
static bool
quiet_back(struct conn *c)
{
	struct loop *l = c->sl->loop;

	if (!plain_reply(c))
		return false;
	/* The loop may take c back, close it and drop its reference the
	 * moment it is queued: ours keeps the struct for the look below. */
	conn_ref(c);
	loop_post_quiet(l, &c->back);
	if (atomic_load(&c->wake_bits) != 0)
		loop_poke(l);
	conn_unref(c);
	return true;
}

static void
conn_work(struct work *w)
{
	struct conn *c = container_of(w, struct conn, work);
	const struct proto_ops *ops = c->lst->ops;

	switch (c->job) {
	case JOB_SESSION_NEW:
		c->session = ops->session_new(c);
		break;
	case JOB_COMMAND:
		ops->on_command(c, c->session, c->in.data + c->in_off, c->cmd_len);
		break;
	case JOB_WAKE:
		if (ops->on_wake != NULL)
			ops->on_wake(c, c->session, c->wake_why);
		break;
	case JOB_TIMEOUT:
		if (ops->on_timeout != NULL)
			ops->on_timeout(c, c->session);
		break;
	case JOB_SHUTDOWN:
		if (ops->on_shutdown != NULL)
			ops->on_shutdown(c, c->session);
		break;
	case JOB_CONTINUE: {
		conn_continue_fn *fn = c->cont_fn;
		void *arg = c->cont_arg;

		/* The step calls conn_continue() again if it is not done. */
		c->cont_fn = NULL;
		c->cont_arg = NULL;
		fn(c, c->session, arg);
		break;
	}
	case JOB_NONE:
		break;
	}
	/* Push what the hook wrote while we own the socket; the loop only
	 * has to wait for what the kernel would not take. A delay holds it. */
	if (c->delay_ms == 0)
		conn_send_some(c);
	c->done_at = clock_ms();
	if (!quiet_back(c))
		loop_post(c->sl->loop, &c->back);
}

void
conn_dispatch(struct conn *c, enum conn_job job)
{
	c->job = job;
	if (job == JOB_COMMAND) {
		c->input_max_seq_cmd = c->input_max_seq;
		metrics_command(conn_listener(c));
	}
	conn_enter(c, CONN_WORKER);
	loop_timer_set(c->sl->loop, &c->timer, 0);
	loop_expect_quiet(c->sl->loop, 1);
	worker_pool_push(c->srv->pool, &c->work);
}

/* Loop: the hook of c->job returned (on a worker, or on the loop for an
 * inline command): consume what it ran on and pick the next state from its
 * requests. */
static void
job_finish(struct conn *c)
{
	uint64_t now = loop_now(c->sl->loop);
	/* A hand-back can wait in the loop's queue for a while: the client's
	 * silence counts from when the hook returned. */
	uint64_t done = c->done_at != 0 && c->done_at < now ? c->done_at : now;

	switch (c->job) {
	case JOB_COMMAND:
		in_consume(c, c->cmd_len);
		c->cmd_len = 0;
		/* A raised input bound lasts for the one framed unit it was
		 * raised for, unless the command raised it again. */
		if (c->input_max_seq == c->input_max_seq_cmd)
			c->input_max = 0;
		if (in_len(c) > 0)
			c->partial_since = now;
		break;
	case JOB_SESSION_NEW:
		if (c->session == NULL) {
			c->close_req = true;
			if (c->close_reason == NULL)
				c->close_reason = "refused";
		}
		break;
	case JOB_TIMEOUT:
		c->close_req = true;
		break;
	case JOB_SHUTDOWN:
		c->close_req = true;
		if (c->close_reason == NULL)
			c->close_reason = "shutdown";
		break;
	default:
		break;
	}
	/* The idle clock measures the client's silence: a command (or a step
	 * of one) restarts it, a wake-up or a keepalive timer does not. */
	if (c->job == JOB_COMMAND || c->job == JOB_SESSION_NEW || c->job == JOB_CONTINUE)
		c->idle_since = done;
	c->job = JOB_NONE;
	c->done_at = 0;
	c->frame_seen = 0;
	c->out_progress = now;
	c->out_blocked = false;
	c->ready_out = true;
	if (tp_pending(c))
		c->ready_in = true;
	if (c->delay_ms != 0 && c->io_err == 0) {
		c->delay_until = now + c->delay_ms;
		conn_enter(c, CONN_DELAYED);
	} else {
		conn_enter(c, conn_settle(c));
	}
	c->delay_ms = 0;
}

static void
conn_back(struct loop_msg *m)
{
	struct conn *c = container_of(m, struct conn, back);

	loop_expect_quiet(c->sl->loop, -1);
	atomic_fetch_and(&c->wake_bits, ~WAKE_BIT_IO);
	job_finish(c);
	conn_step(c);
}

/* Commands a connection may run on the loop in one conn_step() before the
 * next goes to a worker (which lets the loop serve its other connections). */
#define INLINE_PER_STEP 8

/* Loop: run the framed command (c->cmd_len bytes) here, as a worker would:
 * the protocol said it cannot block (proto_ops.command_inline). The output
 * is flushed by the step that goes on. */
static void
run_inline(struct conn *c)
{
	c->job = JOB_COMMAND;
	c->input_max_seq_cmd = c->input_max_seq;
	metrics_command(conn_listener(c));
	conn_enter(c, CONN_WORKER);
	c->inline_left--;
	c->on_loop = true;
	c->lst->ops->on_command(c, c->session, c->in.data + c->in_off, c->cmd_len);
	c->on_loop = false;
	job_finish(c);
}

/* Wake-ups the loop runs itself (proto_ops.wake_inline) in one iteration
 * (about 5 ms of work). Those past it wait for the next iterations, in the
 * order they came (wake_later()): a loop that had 5,000 sessions to wake
 * (10,000 woken by one delivery) handed 4,500 of them to the workers, two
 * thread switches and a worker's blocking catch-up each, and 4 workers on
 * 2 cores took several times longer than the loop would have. Posting
 * every one still waiting again for the next iteration was quadratic in
 * the backlog (each iteration stepped them all); the list is walked once. */
#define WAKE_INLINE_PER_ITER 512

enum wake_where {
	WAKE_RAN,    /* ran on the loop */
	WAKE_LATER,  /* this iteration's allowance is spent: on the list */
	WAKE_WORKER, /* for a worker (the protocol could not run it here) */
};

static unsigned
wake_budget_left(struct srv_loop *sl)
{
	uint64_t it = loop_iteration(sl->loop);
	unsigned max = sl->wake_inline_max != 0 ? sl->wake_inline_max : WAKE_INLINE_PER_ITER;

	if (sl->wake_iter != it) {
		sl->wake_iter = it;
		sl->wake_inline = 0;
	}
	return sl->wake_inline < max ? max - sl->wake_inline : 0;
}

static void later_arrived(struct loop_msg *m);

/* Loop: c's wake-up (WAKE_BIT_NOTIFY stays set) runs in a later iteration.
 * The post wakes the loop at once, so the next iteration comes after the
 * events already waiting, not after a sleep. */
static void
wake_later(struct conn *c)
{
	struct srv_loop *sl = c->sl;

	if (!c->later) {
		c->later = true;
		c->later_next = NULL;
		conn_ref(c);
		if (sl->later_tail != NULL)
			sl->later_tail->later_next = c;
		else
			sl->later_head = c;
		sl->later_tail = c;
	}
	if (!sl->later_posted) {
		sl->later_posted = true;
		sl->later_msg.fn = later_arrived;
		loop_post(sl->loop, &sl->later_msg);
	}
}

/* Loop, a new iteration: step the waiting connections while the allowance
 * lasts. One that meanwhile went to a worker, or closed, is only let go
 * (at no cost to the allowance): its wake-up bit is still set, and
 * whoever steps it next runs it. So the list always empties of closed
 * connections, also when loop_free() runs this after the loop's last
 * iteration, whose allowance may be spent. */
static void
later_arrived(struct loop_msg *m)
{
	struct srv_loop *sl = container_of(m, struct srv_loop, later_msg);
	struct conn *c;

	sl->later_posted = false;
	while ((c = sl->later_head) != NULL) {
		bool live = c->state != CONN_DEAD && c->state != CONN_WORKER;

		if (live && wake_budget_left(sl) == 0)
			break;
		sl->later_head = c->later_next;
		if (sl->later_head == NULL)
			sl->later_tail = NULL;
		c->later_next = NULL;
		c->later = false;
		if (live)
			conn_step(c);
		conn_unref(c);
	}
	if (sl->later_head != NULL && !sl->later_posted) {
		sl->later_posted = true;
		loop_post(sl->loop, &sl->later_msg);
	}
}

/* Loop, in CONN_READY with WAKE_BIT_NOTIFY set: run the wake-up here when
 * the protocol can and this iteration's allowance is not spent. */
static enum wake_where
run_wake_inline(struct conn *c)
{
	struct srv_loop *sl = c->sl;
	bool done;

	if (c->lst->ops->wake_inline == NULL)
		return WAKE_WORKER;
	if (wake_budget_left(sl) == 0) {
		wake_later(c);
		return WAKE_LATER;
	}
	sl->wake_inline++;
	atomic_fetch_and(&c->wake_bits, ~WAKE_BIT_NOTIFY);
	c->wake_why = WAKE_NOTIFY;
	c->job = JOB_WAKE;
	conn_enter(c, CONN_WORKER);
	done = c->lst->ops->wake_inline(c, c->session);
	job_finish(c);
	return done ? WAKE_RAN : WAKE_WORKER;
}

/* ---- the loop side ---- */

static bool
kicked(const struct conn *c)
{
	return (atomic_load(&((struct conn *)c)->wake_bits) & WAKE_BIT_KICK) != 0;
}

/* CONN_READY: frame the next command, deliver a wake-up, read. True when
 * the step should go on (the state may have changed), false when the
 * connection waits (or was handed to a worker, or closed). */
static bool
ready_step(struct conn *c)
{
	struct srv_loop *sl = c->sl;
	const struct proto_ops *ops = c->lst->ops;

	if (c->close_req) {
		conn_enter(c, CONN_CLOSING);
		return true;
	}
	/* Backpressure: a client that does not read its replies gets no
	 * further command run until it has read most of them. */
	if (out_len(c) >= OUT_HWM) {
		conn_enter(c, CONN_THROTTLED);
		return false;
	}
	if ((sl->stopping || kicked(c)) && !c->goodbye_sent) {
		c->goodbye_sent = true;
		c->close_reason = sl->stopping ? "shutdown" : "kicked";
		if (ops->on_shutdown != NULL && c->session != NULL) {
			conn_dispatch(c, JOB_SHUTDOWN);
			return false;
		}
		c->close_req = true;
		return true;
	}
	if (in_len(c) > 0 && in_len(c) != c->frame_seen) {
		size_t avail = in_len(c), used = 0;
		enum frame_result fr =
		    ops->frame(c, c->session, c->in.data + c->in_off, avail, &used);

		if (used > avail)
			used = avail;
		if (fr == FRAME_COMMAND && used == 0)
			fr = FRAME_AGAIN;
		switch (fr) {
		case FRAME_COMMAND:
			c->cmd_len = used;
			if (c->inline_left > 0 && ops->command_inline != NULL &&
			    ops->command_inline(c, c->session, c->in.data + c->in_off, used)) {
				run_inline(c);
				return true;
			}
			conn_dispatch(c, JOB_COMMAND);
			return false;
		case FRAME_DISCARD:
			in_consume(c, used);
			c->frame_seen = 0;
			if (in_len(c) > 0)
				c->partial_since = loop_now(sl->loop);
			return true;
		case FRAME_CLOSE:
			c->close_req = true;
			if (c->close_reason == NULL)
				c->close_reason = "protocol";
			return true;
		case FRAME_AGAIN:
			c->frame_seen = avail;
			break;
		}
	}
	if (c->timer_fired || (atomic_load(&c->wake_bits) & WAKE_BIT_NOTIFY) != 0) {
		if (ops->on_wake == NULL || c->session == NULL) {
			c->timer_fired = false;
			atomic_fetch_and(&c->wake_bits, ~WAKE_BIT_NOTIFY);
		} else {
			if (c->timer_fired) {
				c->timer_fired = false;
				c->wake_why = WAKE_TIMER;
			} else {
				switch (run_wake_inline(c)) {
				case WAKE_RAN:
					return true;
				case WAKE_LATER:
					return false;
				case WAKE_WORKER:
					break;
				}
				atomic_fetch_and(&c->wake_bits, ~WAKE_BIT_NOTIFY);
				c->wake_why = WAKE_NOTIFY;
			}
			conn_dispatch(c, JOB_WAKE);
			return false;
		}
	}
	if (c->eof) {
		c->close_req = true;
		if (c->close_reason == NULL)
			c->close_reason = "eof";
		return true;
	}
	if (c->ready_in) {
		size_t cap = conn_input_limit(c) + 1;
		ssize_t r;

		if (in_len(c) >= cap) {
			conn_log(c, LOG_LEVEL_INFO, "event=input_overflow bytes=%zu", in_len(c));
			conn_close_now(c, "input_overflow");
			return false;
		}
		r = conn_read_some(c, cap - in_len(c));
		if (r > 0)
			return true;
		if (r == 0) {
			c->eof = true;
			return true;
		}
		if (r != ROOST_EAGAIN) {
			c->io_err = ROOST_ECLOSED;
			conn_close_now(c, "read_error");
			return false;
		}
		c->ready_in = false;
	}
	if (out_len(c) > 0 && c->ready_out)
		return true;
	conn_shrink(c);
	return false;
}

static void
step_inner(struct conn *c)
{
	struct srv_loop *sl = c->sl;

	for (;;) {
		if (c->state == CONN_WORKER || c->state == CONN_DEAD)
			return;
		if (sl->forced) {
			conn_close_now(c, "shutdown");
			return;
		}
		/* A kicked session that is not waiting for its next command
		 * (a reply in steps, a client not reading, a held reply, a
		 * handshake) is closed without a goodbye; READY says one. */
		if (kicked(c) && c->state != CONN_READY && c->state != CONN_NEW &&
		    c->state != CONN_CLOSING && c->state != CONN_LINGER) {
			conn_close_now(c, "kicked");
			return;
		}
		switch (c->state) {
		case CONN_NEW:
			if (sl->stopping) {
				conn_close_now(c, "shutdown");
				return;
			}
			if (c->lst->ops->session_new_inline) {
				c->job = JOB_SESSION_NEW;
				conn_enter(c, CONN_WORKER);
				c->session = c->lst->ops->session_new(c);
				job_finish(c);
				continue;
			}
			conn_dispatch(c, JOB_SESSION_NEW);
			return;
		case CONN_HANDSHAKE:
			if (!conn_tls_handshake(c))
				return;
			/* Implicit TLS greets now; STARTTLS goes on. */
			conn_enter(c, c->session == NULL ? CONN_NEW : CONN_READY);
			continue;
		case CONN_DELAYED:
			if (!sl->stopping && loop_now(sl->loop) < c->delay_until)
				return;
			c->delay_until = 0;
			conn_enter(c, conn_settle(c));
			continue;
		case CONN_LINGER:
			if (c->ready_in)
				conn_linger_drain(c);
			return;
		default:
			break;
		}
		/* The states below have output to flush first. */
		if (out_len(c) > 0 && c->ready_out && !conn_flush_nb(c)) {
			conn_close_now(c, "write_error");
			return;
		}
		if (c->io_err != 0) {
			conn_close_now(c,
			               c->close_reason != NULL ? c->close_reason : "write_error");
			return;
		}
		switch (c->state) {
		case CONN_CLOSING:
			if (out_len(c) == 0)
				conn_close_gracefully(c);
			return;
		case CONN_STARTTLS:
			if (out_len(c) > 0)
				return;
			/* CVE-2011-0411: whatever the client sent after
			 * STARTTLS in plaintext is dropped, never framed. */
			c->starttls_req = false;
			in_consume(c, in_len(c));
			c->frame_seen = 0;
			if (!conn_tls_start(c))
				return;
			continue;
		case CONN_CONTINUE:
			/* A long reply in progress: its next step runs once the
			 * client has read most of the last one. Nothing else (no
			 * command, no wake-up, no timer) runs in between. */
			if (out_len(c) < OUT_LWM)
				conn_dispatch(c, JOB_CONTINUE);
			return;
		case CONN_THROTTLED:
			if (out_len(c) >= OUT_LWM)
				return;
			conn_enter(c, CONN_READY);
			c->idle_since = loop_now(sl->loop);
			if (in_len(c) > 0)
				c->partial_since = c->idle_since;
			continue;
		case CONN_READY:
			if (ready_step(c))
				continue;
			return;
		default:
			return;
		}
	}
}

void
conn_step(struct conn *c)
{
	c->inline_left = INLINE_PER_STEP;
	step_inner(c);
	conn_arm(c);
}

static void
conn_event(struct loop_io *io, uint32_t events)
{
	struct conn *c = container_of(io, struct conn, io);

	if (c->state == CONN_DEAD)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
		c->ready_in = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->ready_out = true;
	if (c->tp->cross_ready)
		c->ready_in = c->ready_out = true;
	if (c->state == CONN_WORKER) {
		/* Noted for a hand-back that may come quietly (quiet_back()). */
		atomic_fetch_or(&c->wake_bits, WAKE_BIT_IO);
		loop_recheck(c->sl->loop);
		return;
	}
	if ((events & EPOLLOUT) && out_len(c) > 0)
		c->out_progress = loop_now(c->sl->loop);
	conn_step(c);
}

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
