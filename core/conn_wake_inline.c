#include <stdatomic.h>

#include "conn_impl.h"
#include "roost/server_impl.h"

/*
 * Wake-ups the loop runs itself: a wake-up the protocol can handle without
 * blocking (proto_ops.wake_inline) runs on the loop, passing through
 * CONN_WORKER as an inline command does, a bounded number of them per
 * iteration of the loop (conn_run_wake_inline()); those past the allowance
 * wait on the loop's list for the next iterations (wake_later(),
 * later_arrived()), and those the protocol cannot run here go to a worker.
 */

/* Wake-ups the loop runs itself (proto_ops.wake_inline) in one iteration
 * (about 5 ms of work). Those past it wait for the next iterations, in the
 * order they came (wake_later()): a loop that had 5,000 sessions to wake
 * (10,000 woken by one delivery) handed 4,500 of them to the workers, two
 * thread switches and a worker's blocking catch-up each, and 4 workers on
 * 2 cores took several times longer than the loop would have. Posting
 * every one still waiting again for the next iteration was quadratic in
 * the backlog (each iteration stepped them all); the list is walked once. */
#define WAKE_INLINE_PER_ITER 512

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
enum wake_where
conn_run_wake_inline(struct conn *c)
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
	conn_job_finish(c);
	return done ? WAKE_RAN : WAKE_WORKER;
}
