#ifndef ROOST_LOOP_H
#define ROOST_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One event loop: an epoll instance, an eventfd for wake-ups from other
 * threads, a min-heap of timers and a mailbox. It knows nothing about
 * connections; core/conn.c builds the connection state machine on it.
 *
 * Thread safety: loop_post() may be called from any thread. Everything else
 * is for the loop's own thread (the one in loop_run()), except loop_create()
 * and loop_free() which run before the thread starts and after it ended.
 */

struct loop;

/* A file descriptor registered with loop_add(); fn runs on the loop thread
 * with the epoll event bits. Embed it in the owning structure. */
struct loop_io {
	void (*fn)(struct loop_io *io, uint32_t events);
};

/* A one-shot timer; embed it, zero it, then loop_timer_set() it. */
struct loop_timer {
	uint64_t at; /* CLOCK_MONOTONIC ms; 0 = not armed */
	size_t idx;  /* position in the heap (private) */
	void (*fn)(struct loop_timer *t);
};

/* A message to run on the loop thread (loop_post) or after the current batch
 * of events (loop_defer). Embed it; one message can be queued once at a time. */
struct loop_msg {
	struct loop_msg *next;
	void (*fn)(struct loop_msg *m);
};

/* Monotonic clock in milliseconds. Any thread. */
uint64_t clock_ms(void);
/* The same clock in seconds, to the nanosecond: for durations shorter than
 * a millisecond (a benchmark's latencies) or printed in seconds. Any thread. */
double clock_s(void);

/* ROOST_EIO (logged) when epoll or eventfd cannot be created. */
int loop_create(struct loop **l_r);
/* After loop_run() returned. Messages still queued are run first (so their
 * owners release what they hold), then everything is freed. */
void loop_free(struct loop **l);

/* Register fd (edge- or level-triggered as events say). ROOST_EIO on error. */
int loop_add(struct loop *l, int fd, uint32_t events, struct loop_io *io);
void loop_del(struct loop *l, int fd);

/* Arm (at > 0, absolute clock_ms() time) or disarm (at == 0) a timer;
 * re-arming moves it. The timer fires once, on the loop thread. */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t at);
/* The time cached at the start of the current iteration. */
uint64_t loop_now(const struct loop *l);
/* Loop thread: a number that changes at every wait for events, so work
 * can be budgeted per iteration of the loop. */
uint64_t loop_iteration(const struct loop *l);

/* Any thread: run m->fn on the loop thread soon. */
void loop_post(struct loop *l, struct loop_msg *m);
/*
 * Any thread: between loop_batch_begin() and the matching loop_batch_end()
 * (pairs nest; the outermost end counts), this thread's loop_post()s are
 * held, in order, and the end queues each loop's share under one lock and
 * wakes that loop once (a share that reaches 256 posts goes at once). A
 * delivery that wakes 1,000 sessions made 1,000 locked posts while the
 * loops, woken by the first, took them a few at a time. A post in a batch
 * may not run before its end, so the code between must not wait for a
 * post of its own.
 */
void loop_batch_begin(void);
void loop_batch_end(void);
/* Loop thread: run m->fn after the current batch of events (used to free
 * objects an event later in the same batch may still point to). */
void loop_defer(struct loop *l, struct loop_msg *m);

/*
 * Quiet posts. Any thread: queue m like loop_post() but do not wake the
 * loop. The loop runs queued messages first whenever it wakes up, before
 * the fd events of that wake-up, so a message that only has to be seen
 * before the next event of some fd costs no wake-up of its own. Whoever
 * uses it must make sure something wakes the loop: an fd event that will
 * come, loop_poke(), or the bounded sleep below.
 */
void loop_post_quiet(struct loop *l, struct loop_msg *m);
/* Any thread: wake the loop (after loop_post_quiet() found a reason). */
void loop_poke(struct loop *l);
/* Loop thread, in an fd's handler: run the queue once more after this
 * batch of events (a quiet post may have been queued after the first run,
 * by a thread that could not know of the event). */
void loop_recheck(struct loop *l);
/* Loop thread: delta to the number of quiet posts the loop may be waiting
 * for. While it is not zero the loop sleeps at most the quiet bound
 * (LOOP_QUIET_MS unless loop_set_quiet_bound() changed it), so a quiet
 * post nothing else wakes the loop for still runs within that bound. */
#define LOOP_QUIET_MS 100
void loop_expect_quiet(struct loop *l, int delta);
/* Before loop_run(): the bound above in ms (tests make it long to show
 * that nothing but a missing wake-up could then be waiting on it). */
void loop_set_quiet_bound(struct loop *l, unsigned ms);

/* Run until loop_quit() is called on this loop's thread. */
void loop_run(struct loop *l);
void loop_quit(struct loop *l);

#endif
