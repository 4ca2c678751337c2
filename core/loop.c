#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/xalloc.h"

#define LOOP_MAX_EVENTS 128

struct loop {
	int epfd;
	int evfd;
	struct loop_io ev_io; /* the eventfd's registration */
	bool quit;
	uint64_t now;

	/* Timer min-heap, ordered by at. Loop thread only. */
	struct loop_timer **heap;
	size_t nheap, capheap;

	/* Messages to run after the current batch. Loop thread only. */
	struct loop_msg *deferred;

	/* Mailbox from other threads. mu protects head/tail only. armed is
	 * set by the first poster after the loop last drained the box, so a
	 * burst of posts costs one eventfd write. */
	pthread_mutex_t mu;
	struct loop_msg *head, *tail;
	_Atomic bool armed;

	/* Quiet posts the loop may be waiting for, and how long it then
	 * sleeps at most. Loop thread only. */
	unsigned quiet_expected;
	unsigned quiet_bound;
	bool recheck; /* run the queue again after this batch */
	uint64_t iteration;
};

uint64_t
clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

double
clock_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_deferred(struct loop *l);

/* Run what other threads queued, in the order they queued it. */
static void
drain(struct loop *l)
{
	struct loop_msg *m, *next;

	pthread_mutex_lock(&l->mu);
	m = l->head;
	l->head = l->tail = NULL;
	pthread_mutex_unlock(&l->mu);
	for (; m != NULL; m = next) {
		next = m->next;
		m->next = NULL;
		m->fn(m);
	}
}

static void
loop_mailbox(struct loop_io *io, uint32_t events)
{
	struct loop *l = (struct loop *)((char *)io - offsetof(struct loop, ev_io));
	uint64_t v;

	if (read(l->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("event=loop_eventfd_read error=\"%s\"", strerror(errno));
	/* Disarm before draining: a post racing with the drain re-arms and
	 * writes the eventfd again, so nothing is left behind. */
	atomic_store(&l->armed, false);
	drain(l);
}

int
loop_create(struct loop **l_r)
{
	struct loop *l = xcalloc(1, sizeof(*l));
	struct epoll_event ev;

	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epfd < 0 || l->evfd < 0) {
		log_error("event=loop_create error=\"%s\"", strerror(errno));
		goto fail;
	}
	l->ev_io.fn = loop_mailbox;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &l->ev_io;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) {
		log_error("event=loop_create error=\"%s\"", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->quiet_bound = LOOP_QUIET_MS;
	l->now = clock_ms();
	*l_r = l;
	return 0;
fail:
	if (l->evfd >= 0)
		close(l->evfd);
	if (l->epfd >= 0)
		close(l->epfd);
	free(l);
	return ROOST_EIO;
}

void
loop_free(struct loop **lp)
{
	struct loop *l = *lp;

	if (l == NULL)
		return;
	/* Messages still queued (wake-ups that arrived after their connection
	 * closed) hold references their handlers release. Each is taken off
	 * as loop_post() expects (tail cleared with the last), so a handler
	 * that posts again here is run too rather than linked to itself. */
	for (;;) {
		struct loop_msg *m;

		pthread_mutex_lock(&l->mu);
		m = l->head;
		if (m != NULL) {
			l->head = m->next;
			if (l->head == NULL)
				l->tail = NULL;
		}
		pthread_mutex_unlock(&l->mu);
		if (m == NULL)
			break;
		m->next = NULL;
		m->fn(m);
	}
	run_deferred(l);
	close(l->evfd);
	close(l->epfd);
	pthread_mutex_destroy(&l->mu);
	free(l->heap);
	free(l);
	*lp = NULL;
}

int
loop_add(struct loop *l, int fd, uint32_t events, struct loop_io *io)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = io;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		log_error("event=loop_add fd=%d error=\"%s\"", fd, strerror(errno));
		return ROOST_EIO;
	}
	return 0;
}

void
loop_del(struct loop *l, int fd)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &ev);
}

/* ---- timer heap ---- */

static void
heap_place(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->idx = i;
}

static void
heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (l->heap[p]->at <= t->at)
			break;
		heap_place(l, i, l->heap[p]);
		i = p;
	}
	heap_place(l, i, t);
}

static void
heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && l->heap[c + 1]->at < l->heap[c]->at)
			c++;
		if (t->at <= l->heap[c]->at)
			break;
		heap_place(l, i, l->heap[c]);
		i = c;
	}
	heap_place(l, i, t);
}

static void
heap_remove(struct loop *l, struct loop_timer *t)
{
	size_t i = t->idx;
	struct loop_timer *last = l->heap[--l->nheap];

	t->at = 0;
	if (i == l->nheap)
		return;
	heap_place(l, i, last);
	heap_up(l, i);
	heap_down(l, last->idx);
}

void
loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t at)
{
	if (t->at != 0) {
		if (at != 0) {
			uint64_t old = t->at;

			t->at = at;
			if (at < old)
				heap_up(l, t->idx);
			else
				heap_down(l, t->idx);
			return;
		}
		heap_remove(l, t);
		return;
	}
	if (at == 0)
		return;
	if (l->nheap == l->capheap) {
		l->capheap = l->capheap == 0 ? 64 : l->capheap * 2;
		l->heap = xreallocarray(l->heap, l->capheap, sizeof(*l->heap));
	}
	t->at = at;
	heap_place(l, l->nheap++, t);
	heap_up(l, t->idx);
}

uint64_t
loop_now(const struct loop *l)
{
	return l->now;
}

uint64_t
loop_iteration(const struct loop *l)
{
	return l->iteration;
}

/* ---- messages ---- */

void
loop_post_quiet(struct loop *l, struct loop_msg *m)
{
	m->next = NULL;
	pthread_mutex_lock(&l->mu);
	if (l->tail != NULL)
		l->tail->next = m;
	else
		l->head = m;
	l->tail = m;
	pthread_mutex_unlock(&l->mu);
}

void
loop_poke(struct loop *l)
{
	if (!atomic_exchange(&l->armed, true)) {
		uint64_t one = 1;

		if (write(l->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("event=loop_eventfd_write error=\"%s\"", strerror(errno));
	}
}

/* This thread's held posts (loop_batch_begin()), by loop. A thread posts
 * to a few loops; past BATCH_LOOPS of them the others go at once. A loop's
 * share goes out whenever it reaches BATCH_FLUSH posts: 10,000 wake-ups
 * took the waking thread about 10 ms to post, which the loops spent
 * waiting when all of them were held to the end. */
#define BATCH_LOOPS 8
#define BATCH_FLUSH 256

struct post_batch {
	unsigned depth;
	unsigned n;
	struct {
		struct loop *l;
		struct loop_msg *head, *tail;
		unsigned count;
	} to[BATCH_LOOPS];
};

static _Thread_local struct post_batch batch;

/* Queue what batch.to[i] holds on its loop and wake the loop. */
static void
batch_flush(unsigned i)
{
	struct loop *l = batch.to[i].l;

	if (batch.to[i].head == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	if (l->tail != NULL)
		l->tail->next = batch.to[i].head;
	else
		l->head = batch.to[i].head;
	l->tail = batch.to[i].tail;
	pthread_mutex_unlock(&l->mu);
	loop_poke(l);
	batch.to[i].head = batch.to[i].tail = NULL;
	batch.to[i].count = 0;
}

static bool
batch_hold(struct loop *l, struct loop_msg *m)
{
	unsigned i;

	for (i = 0; i < batch.n && batch.to[i].l != l; i++)
		;
	if (i == batch.n) {
		if (batch.n == BATCH_LOOPS)
			return false;
		batch.to[batch.n++].l = l;
	}
	m->next = NULL;
	if (batch.to[i].tail != NULL)
		batch.to[i].tail->next = m;
	else
		batch.to[i].head = m;
	batch.to[i].tail = m;
	if (++batch.to[i].count == BATCH_FLUSH)
		batch_flush(i);
	return true;
}

void
loop_batch_begin(void)
{
	batch.depth++;
}

void
loop_batch_end(void)
{
	if (batch.depth == 0 || --batch.depth > 0)
		return;
	for (unsigned i = 0; i < batch.n; i++) {
		batch_flush(i);
		batch.to[i].l = NULL;
	}
	batch.n = 0;
}

void
loop_post(struct loop *l, struct loop_msg *m)
{
	if (batch.depth > 0 && batch_hold(l, m))
		return;
	loop_post_quiet(l, m);
	loop_poke(l);
}

void
loop_recheck(struct loop *l)
{
	l->recheck = true;
}

void
loop_expect_quiet(struct loop *l, int delta)
{
	l->quiet_expected = (unsigned)((int)l->quiet_expected + delta);
}

void
loop_set_quiet_bound(struct loop *l, unsigned ms)
{
	l->quiet_bound = ms;
}

void
loop_defer(struct loop *l, struct loop_msg *m)
{
	m->next = l->deferred;
	l->deferred = m;
}

static void
run_deferred(struct loop *l)
{
	while (l->deferred != NULL) {
		struct loop_msg *m = l->deferred;

		l->deferred = m->next;
		m->next = NULL;
		m->fn(m);
	}
}

static void
run_timers(struct loop *l)
{
	while (l->nheap > 0 && l->heap[0]->at <= l->now) {
		struct loop_timer *t = l->heap[0];

		heap_remove(l, t);
		t->fn(t);
	}
}

void
loop_run(struct loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];

	l->quit = false;
	while (!l->quit) {
		int timeout = -1, n;

		if (l->nheap > 0) {
			uint64_t at = l->heap[0]->at;

			l->now = clock_ms();
			timeout =
			    at <= l->now ? 0 : (at - l->now > 60000 ? 60000 : (int)(at - l->now));
		}
		if (l->quiet_expected > 0 && (timeout < 0 || (unsigned)timeout > l->quiet_bound))
			timeout = (int)l->quiet_bound;
		n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			fatal("event=epoll_wait error=\"%s\"", strerror(errno));
		l->now = clock_ms();
		l->iteration++;
		/* Queued messages before the fd events: a quiet post made
		 * before an fd's event is handled before that event (the
		 * connection a worker handed back quietly is the loop's again
		 * when its client's next command is read). */
		drain(l);
		for (int i = 0; i < n; i++) {
			struct loop_io *io = evs[i].data.ptr;

			io->fn(io, evs[i].events);
		}
		if (l->recheck) {
			l->recheck = false;
			drain(l);
		}
		run_deferred(l);
		run_timers(l);
		run_deferred(l);
	}
	run_deferred(l);
}

void
loop_quit(struct loop *l)
{
	l->quit = true;
}
