#include <stdatomic.h>
#include <sys/epoll.h>

#include "conn_impl.h"
#include "roost/error.h"
#include "roost/server_impl.h"

/*
 * The step that drives a connection through its states (conn_impl.h, enum
 * conn_state).
 *
 * conn_step() runs on the loop thread whenever something happened (the
 * socket became readable or writable, a worker handed the connection back,
 * a wake-up, a deadline) and pushes the connection as far as it can. When
 * there is work for the protocol it hands the connection to the worker pool
 * (CONN_WORKER, conn_dispatch.c); the worker runs the hook, writes what the
 * socket takes without waiting, and posts the connection back (conn_back()),
 * where the hook's requests (close, STARTTLS, delay, a continuation) pick the
 * next state. A command the protocol says cannot block (command_inline) runs
 * on the loop instead, without the two thread switches of the round trip;
 * so does a wake-up the protocol can handle without blocking (wake_inline),
 * a bounded number of them per iteration of the loop (conn_wake_inline.c),
 * the rest on workers.
 */

/* Commands a connection may run on the loop in one conn_step() before the
 * next goes to a worker (which lets the loop serve its other connections). */
#define INLINE_PER_STEP 8

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
				conn_run_inline(c);
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
				switch (conn_run_wake_inline(c)) {
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
				conn_job_finish(c);
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

void
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
