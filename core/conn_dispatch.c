#include <stdatomic.h>

#include "conn_impl.h"
#include "roost/metrics.h"
#include "roost/server_impl.h"

/*
 * The hand-off between the loop and the workers: a hook of the protocol
 * runs on a worker (conn_dispatch(), conn_work()) and the connection comes
 * back to the loop (conn_back()), where the hook's requests (close,
 * STARTTLS, delay, a continuation) pick the next state (conn_job_finish()).
 * A command the protocol says cannot block (command_inline) runs on the
 * loop instead (conn_run_inline()), passing through CONN_WORKER the same
 * way, without the two thread switches of the round trip.
 *
 * A plain reply (everything sent, nothing else to do: see quiet_back())
 * is handed back without waking the loop (loop_post_quiet()): the loop
 * takes it before the socket's next event, usually the client's next
 * command, and so wakes once per command instead of twice.
 */

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

void
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
void
conn_job_finish(struct conn *c)
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

void
conn_back(struct loop_msg *m)
{
	struct conn *c = container_of(m, struct conn, back);

	loop_expect_quiet(c->sl->loop, -1);
	atomic_fetch_and(&c->wake_bits, ~WAKE_BIT_IO);
	conn_job_finish(c);
	conn_step(c);
}

/* Loop: run the framed command (c->cmd_len bytes) here, as a worker would:
 * the protocol said it cannot block (proto_ops.command_inline). The output
 * is flushed by the step that goes on. */
void
conn_run_inline(struct conn *c)
{
	c->job = JOB_COMMAND;
	c->input_max_seq_cmd = c->input_max_seq;
	metrics_command(conn_listener(c));
	conn_enter(c, CONN_WORKER);
	c->inline_left--;
	c->on_loop = true;
	c->lst->ops->on_command(c, c->session, c->in.data + c->in_off, c->cmd_len);
	c->on_loop = false;
	conn_job_finish(c);
}
