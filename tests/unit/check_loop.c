#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "roost/loop.h"
#include "roost/worker.h"

#include "check_run.h"

/* The event loop (timers, mailbox, deferred messages, fd events) and the
 * worker pool, without sockets of a server. */

struct rec_timer {
	struct loop_timer t;
	struct loop *l;
	int id;
	int *order;
	int *n;
	bool quit;
};

static void
rec_fire(struct loop_timer *t)
{
	struct rec_timer *r = (struct rec_timer *)t;

	r->order[(*r->n)++] = r->id;
	if (r->quit)
		loop_quit(r->l);
}

START_TEST(timers_fire_in_order)
{
	struct loop *l;
	struct rec_timer r[64];
	int order[64], n = 0;
	uint64_t base = clock_ms();

	ck_assert_int_eq(loop_create(&l), 0);
	memset(r, 0, sizeof(r));
	/* Arm out of order; re-arm some; disarm one. */
	for (int i = 0; i < 64; i++) {
		r[i].t.fn = rec_fire;
		r[i].l = l;
		r[i].id = i;
		r[i].order = order;
		r[i].n = &n;
		loop_timer_set(l, &r[i].t, base + 10 + (uint64_t)((i * 37) % 64));
	}
	for (int i = 0; i < 64; i++)
		loop_timer_set(l, &r[i].t, base + 10 + (uint64_t)i); /* move */
	loop_timer_set(l, &r[5].t, 0);                               /* disarm */
	loop_timer_set(l, &r[5].t, 0);                               /* twice is fine */
	r[63].quit = true;
	loop_run(l);
	ck_assert_int_eq(n, 63);
	for (int i = 0, want = 0; i < n; i++, want++) {
		if (want == 5)
			want++;
		ck_assert_int_eq(order[i], want);
	}
	ck_assert_uint_ge(clock_ms(), base + 10 + 63);
	loop_free(&l);
	ck_assert_ptr_null(l);
}
END_TEST

struct counter_msg {
	struct loop_msg m;
	struct loop *l;
	_Atomic int *count;
	int quit_at;
};

static void
count_fn(struct loop_msg *m)
{
	struct counter_msg *c = (struct counter_msg *)m;

	if (atomic_fetch_add(c->count, 1) + 1 == c->quit_at)
		loop_quit(c->l);
}

struct poster {
	struct loop *l;
	struct counter_msg msgs[1000];
};

static void *
post_many(void *arg)
{
	struct poster *p = arg;

	for (int i = 0; i < 1000; i++)
		loop_post(p->l, &p->msgs[i].m);
	return NULL;
}

START_TEST(posts_from_threads_all_arrive)
{
	struct loop *l;
	struct poster *p = calloc(4, sizeof(*p));
	pthread_t th[4];
	_Atomic int count = 0;

	ck_assert_int_eq(loop_create(&l), 0);
	for (int t = 0; t < 4; t++) {
		p[t].l = l;
		for (int i = 0; i < 1000; i++) {
			p[t].msgs[i].m.fn = count_fn;
			p[t].msgs[i].l = l;
			p[t].msgs[i].count = &count;
			p[t].msgs[i].quit_at = 4000;
		}
	}
	for (int t = 0; t < 4; t++)
		pthread_create(&th[t], NULL, post_many, &p[t]);
	loop_run(l);
	for (int t = 0; t < 4; t++)
		pthread_join(th[t], NULL);
	ck_assert_int_eq(atomic_load(&count), 4000);
	loop_free(&l);
	free(p);
}
END_TEST

START_TEST(free_runs_queued_messages)
{
	struct loop *l;
	struct counter_msg m[3];
	_Atomic int count = 0;

	ck_assert_int_eq(loop_create(&l), 0);
	for (int i = 0; i < 3; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].m.fn = count_fn;
		m[i].l = l;
		m[i].count = &count;
		m[i].quit_at = -1;
		loop_post(l, &m[i].m);
	}
	loop_free(&l);
	ck_assert_int_eq(atomic_load(&count), 3);
}
END_TEST

/* A message that notes its place in the order the loop ran them. */
struct order_msg {
	struct loop_msg m;
	int id;
	int *order, *n;
};

static void
order_fn(struct loop_msg *m)
{
	struct order_msg *o = (struct order_msg *)m;

	o->order[(*o->n)++] = o->id;
}

static void *
post_one(void *arg)
{
	struct counter_msg *q = arg;

	loop_post(q->l, &q->m);
	return NULL;
}

START_TEST(batched_posts_wait_for_the_end_and_keep_their_order)
{
	/* Posts made in a batch (nested here) reach no loop before the
	 * outermost end, then each loop runs its share in the order posted;
	 * more loops than a batch keeps apart (8) are posted to at once. */
	enum { LOOPS = 10, PER = 3 };
	struct loop *l[LOOPS];
	struct order_msg m[LOOPS][PER];
	int order[LOOPS][PER], n[LOOPS] = {0};
	_Atomic int count = 0;
	struct counter_msg q = {.m.fn = count_fn, .count = &count, .quit_at = 1};
	pthread_t th;

	for (int i = 0; i < LOOPS; i++)
		ck_assert_int_eq(loop_create(&l[i]), 0);
	loop_batch_begin();
	loop_batch_begin();
	for (int k = 0; k < PER; k++) {
		for (int i = 0; i < LOOPS; i++) {
			m[i][k] = (struct order_msg){
			    .m.fn = order_fn, .id = k, .order = order[i], .n = &n[i]};
			loop_post(l[i], &m[i][k].m);
		}
	}
	loop_batch_end();
	/* Still held: loop 0 runs only what another thread posts (and quits
	 * on it). */
	q.l = l[0];
	ck_assert_int_eq(pthread_create(&th, NULL, post_one, &q), 0);
	loop_run(l[0]);
	pthread_join(th, NULL);
	ck_assert_int_eq(atomic_load(&count), 1);
	ck_assert_int_eq(n[0], 0);
	loop_batch_end();
	for (int i = 0; i < LOOPS; i++) {
		loop_free(&l[i]); /* runs what is queued */
		ck_assert_int_eq(n[i], PER);
		for (int k = 0; k < PER; k++)
			ck_assert_int_eq(order[i][k], k);
	}
	/* An end without a begin does nothing. */
	loop_batch_end();
}
END_TEST

START_TEST(a_batch_sends_a_full_share_at_once)
{
	/* 300 posts to one loop in a batch: the first 256 go as they fill
	 * up, the other 44 at the end, all in the order posted. */
	enum { N = 300 };
	struct loop *l;
	struct order_msg *m = calloc(N, sizeof(*m));
	int *order = calloc(N, sizeof(*order)), n = 0;
	_Atomic int count = 0;
	struct counter_msg q = {.m.fn = count_fn, .count = &count, .quit_at = 1};
	pthread_t th;

	ck_assert_int_eq(loop_create(&l), 0);
	loop_batch_begin();
	for (int k = 0; k < N; k++) {
		m[k] = (struct order_msg){.m.fn = order_fn, .id = k, .order = order, .n = &n};
		loop_post(l, &m[k].m);
	}
	q.l = l;
	ck_assert_int_eq(pthread_create(&th, NULL, post_one, &q), 0);
	pthread_join(th, NULL);
	loop_run(l); /* the 256 sent, then the other thread's post: quit */
	ck_assert_int_eq(atomic_load(&count), 1);
	ck_assert_int_eq(n, 256);
	loop_batch_end();
	loop_free(&l);
	ck_assert_int_eq(n, N);
	for (int k = 0; k < N; k++)
		ck_assert_int_eq(order[k], k);
	free(m);
	free(order);
}
END_TEST

struct fd_watch {
	struct loop_io io;
	struct loop *l;
	int fd;
	char got[64];
	size_t len;
	struct counter_msg deferred;
	_Atomic int deferred_count;
};

static void
fd_ready(struct loop_io *io, uint32_t events)
{
	struct fd_watch *w = (struct fd_watch *)io;
	ssize_t n = read(w->fd, w->got + w->len, sizeof(w->got) - 1 - w->len);

	if (n > 0)
		w->len += (size_t)n;
	if (w->len >= 5) {
		/* The deferred message runs after this batch, then quits. */
		loop_defer(w->l, &w->deferred.m);
	}
}

START_TEST(fd_events_and_defer)
{
	struct loop *l;
	struct fd_watch w;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_int_eq(loop_create(&l), 0);
	memset(&w, 0, sizeof(w));
	w.io.fn = fd_ready;
	w.l = l;
	w.fd = sv[0];
	w.deferred.m.fn = count_fn;
	w.deferred.l = l;
	w.deferred.count = &w.deferred_count;
	w.deferred.quit_at = 1;
	ck_assert_int_eq(loop_add(l, sv[0], EPOLLIN, &w.io), 0);
	ck_assert_int_eq(write(sv[1], "hello", 5), 5);
	loop_run(l);
	ck_assert_int_eq(w.len, 5);
	ck_assert_int_eq(memcmp(w.got, "hello", 5), 0);
	ck_assert_int_eq(atomic_load(&w.deferred_count), 1);
	loop_del(l, sv[0]);
	loop_free(&l);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- quiet posts ---- */

struct quiet {
	struct loop_io io;
	struct loop *l;
	int fd[2];
	struct counter_msg msg;
	_Atomic int ran;
	bool msg_before_event; /* the message had run when the fd's event came */
	bool poke;             /* the poster pokes instead of writing the fd */
	bool write_fd;
	bool post_in_handler; /* the fd's handler posts quietly and rechecks */
};

static void
quiet_fd(struct loop_io *io, uint32_t events)
{
	struct quiet *q = (struct quiet *)io;
	char b[8];

	while (read(q->fd[0], b, sizeof(b)) > 0)
		;
	q->msg_before_event = atomic_load(&q->ran) == 1;
	if (q->post_in_handler) {
		/* As a worker whose quiet post came after the loop's first
		 * run of its queue in this batch, and whose look came before
		 * this event was noted. */
		loop_post_quiet(q->l, &q->msg.m);
		loop_recheck(q->l);
		return;
	}
	loop_quit(q->l);
}

static void *
quiet_poster(void *arg)
{
	struct quiet *q = arg;

	loop_post_quiet(q->l, &q->msg.m);
	if (q->poke)
		loop_poke(q->l);
	if (q->write_fd)
		ck_assert_int_eq(write(q->fd[1], "x", 1), 1);
	return NULL;
}

/* mode 0: the poster writes an fd after its quiet post: the message runs
 * before that fd's event. mode 1: it pokes. mode 2: nothing wakes the loop
 * but its bounded sleep (the loop expects a quiet post). mode 3: the post
 * comes during the batch of events, with loop_recheck(): it runs before the
 * loop sleeps again. With the bound at 60 s in modes 0, 1 and 3 (the
 * test's timeout is shorter), only the wake-up under test can have run the
 * message. */
START_TEST(quiet_posts_run_before_the_next_event)
{
	struct quiet q;
	pthread_t th;

	memset(&q, 0, sizeof(q));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, q.fd), 0);
	ck_assert_int_eq(loop_create(&q.l), 0);
	q.io.fn = quiet_fd;
	q.msg.m.fn = count_fn;
	q.msg.l = q.l;
	q.msg.count = &q.ran;
	q.msg.quit_at = _i == 0 ? -1 : 1;
	q.write_fd = _i == 0;
	q.poke = _i == 1;
	q.post_in_handler = _i == 3;
	ck_assert_int_eq(loop_add(q.l, q.fd[0], EPOLLIN | EPOLLET, &q.io), 0);
	loop_set_quiet_bound(q.l, _i == 2 ? 5 : 60000);
	if (_i == 2)
		loop_expect_quiet(q.l, 1);
	if (_i == 3) {
		ck_assert_int_eq(write(q.fd[1], "x", 1), 1);
		loop_run(q.l);
	} else {
		ck_assert_int_eq(pthread_create(&th, NULL, quiet_poster, &q), 0);
		loop_run(q.l);
		pthread_join(th, NULL);
	}
	ck_assert_int_eq(atomic_load(&q.ran), 1);
	if (_i == 0)
		ck_assert(q.msg_before_event);
	loop_del(q.l, q.fd[0]);
	loop_free(&q.l);
	close(q.fd[0]);
	close(q.fd[1]);
}
END_TEST

/* ---- worker pool ---- */

struct job {
	struct work w;
	_Atomic int *done;
	int *seq; /* order for the single-thread test */
	int *nseq;
	pthread_mutex_t *mu;
	int id;
};

static void
job_fn(struct work *w)
{
	struct job *j = (struct job *)w;

	if (j->seq != NULL) {
		pthread_mutex_lock(j->mu);
		j->seq[(*j->nseq)++] = j->id;
		pthread_mutex_unlock(j->mu);
	}
	atomic_fetch_add(j->done, 1);
}

START_TEST(pool_runs_everything_and_drains_on_free)
{
	struct worker_pool *pool;
	struct job *jobs = calloc(5000, sizeof(*jobs));
	_Atomic int done = 0;

	ck_assert_int_eq(worker_pool_create(8, &pool), 0);
	for (int i = 0; i < 5000; i++) {
		jobs[i].w.fn = job_fn;
		jobs[i].done = &done;
		worker_pool_push(pool, &jobs[i].w);
	}
	worker_pool_free(&pool);
	ck_assert_ptr_null(pool);
	ck_assert_int_eq(atomic_load(&done), 5000);
	free(jobs);
}
END_TEST

START_TEST(pool_single_thread_is_fifo)
{
	struct worker_pool *pool;
	struct job jobs[100];
	int seq[100], nseq = 0;
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	_Atomic int done = 0;

	memset(jobs, 0, sizeof(jobs));
	ck_assert_int_eq(worker_pool_create(1, &pool), 0);
	for (int i = 0; i < 100; i++) {
		jobs[i].w.fn = job_fn;
		jobs[i].done = &done;
		jobs[i].seq = seq;
		jobs[i].nseq = &nseq;
		jobs[i].mu = &mu;
		jobs[i].id = i;
		worker_pool_push(pool, &jobs[i].w);
	}
	worker_pool_free(&pool);
	ck_assert_int_eq(nseq, 100);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(seq[i], i);
}
END_TEST

/* Ping-pong: pushers from several threads, each waiting for its job to run
 * before pushing the next, so workers go idle and are woken again every
 * time (the idle list and its semaphores in worker.c); every job runs. */
struct pinger {
	struct worker_pool *pool;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work w;
	bool ran;
	int runs;
};

static void
ping_fn(struct work *w)
{
	struct pinger *p = (struct pinger *)((char *)w - offsetof(struct pinger, w));

	pthread_mutex_lock(&p->mu);
	p->ran = true;
	p->runs++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static void *
pinger_main(void *arg)
{
	struct pinger *p = arg;

	for (int i = 0; i < 500; i++) {
		p->ran = false;
		p->w.fn = ping_fn;
		worker_pool_push(p->pool, &p->w);
		pthread_mutex_lock(&p->mu);
		while (!p->ran)
			pthread_cond_wait(&p->cv, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

START_TEST(pool_wakes_idle_workers)
{
	struct worker_pool *pool;
	struct pinger p[4];

	ck_assert_int_eq(worker_pool_create(3, &pool), 0);
	for (int i = 0; i < 4; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].pool = pool;
		pthread_mutex_init(&p[i].mu, NULL);
		pthread_cond_init(&p[i].cv, NULL);
		ck_assert_int_eq(pthread_create(&p[i].th, NULL, pinger_main, &p[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(p[i].th, NULL);
		ck_assert_int_eq(p[i].runs, 500);
		pthread_cond_destroy(&p[i].cv);
		pthread_mutex_destroy(&p[i].mu);
	}
	worker_pool_free(&pool);
	ck_assert_ptr_null(pool);
}
END_TEST

static Suite *
loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, timers_fire_in_order);
	tcase_add_test(tc, posts_from_threads_all_arrive);
	tcase_add_test(tc, free_runs_queued_messages);
	tcase_add_test(tc, batched_posts_wait_for_the_end_and_keep_their_order);
	tcase_add_test(tc, a_batch_sends_a_full_share_at_once);
	tcase_add_test(tc, fd_events_and_defer);
	tcase_add_loop_test(tc, quiet_posts_run_before_the_next_event, 0, 4);
	tcase_add_test(tc, pool_runs_everything_and_drains_on_free);
	tcase_add_test(tc, pool_single_thread_is_fifo);
	tcase_add_test(tc, pool_wakes_idle_workers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(loop_suite());
}
