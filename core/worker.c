#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/worker.h"
#include "roost/xalloc.h"
#include "roost/metrics.h"

/*
 * One mutex guards the queue, the idle list and the stop flag. Jobs are
 * short hand-offs, so a single queue is not the bottleneck next to the disk
 * I/O the jobs do; it also keeps the FIFO order across threads.
 *
 * A worker with nothing to run puts itself on the idle list and sleeps on
 * its own semaphore; a push takes the most recently idle worker off the
 * list and posts its semaphore after dropping the mutex. So a job wakes
 * exactly one thread, the one whose cache is warmest, and the pushing
 * thread (an event loop) never blocks: a condition variable shared by all
 * workers made the loop wait inside pthread_cond_signal() now and then
 * (glibc switching its waiter groups), a context switch of the loop per
 * few commands.
 */
struct worker_thread {
	struct worker_pool *pool;
	pthread_t th;
	sem_t wake;                      /* posted once per removal from the idle list */
	struct worker_thread *next_idle; /* protected by pool->mu */
};

struct worker_pool {
	pthread_mutex_t mu;
	struct work *head, *tail;   /* protected by mu */
	struct worker_thread *idle; /* protected by mu; LIFO */
	bool stop;                  /* protected by mu */
	unsigned nthreads;
	struct worker_thread *threads;
};

static void *
worker_main(void *arg)
{
	struct worker_thread *self = arg;
	struct worker_pool *pool = self->pool;

	pthread_mutex_lock(&pool->mu);
	for (;;) {
		struct work *w;

		if (pool->head == NULL) {
			if (pool->stop)
				break;
			self->next_idle = pool->idle;
			pool->idle = self;
			pthread_mutex_unlock(&pool->mu);
			/* Whoever took self off the idle list posts once. */
			while (sem_wait(&self->wake) != 0)
				;
			pthread_mutex_lock(&pool->mu);
			continue;
		}
		w = pool->head;
		pool->head = w->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->mu);
		w->next = NULL;
		metrics_job_started();
		w->fn(w);
		metrics_job_done();
		pthread_mutex_lock(&pool->mu);
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

int
worker_pool_create(unsigned n, struct worker_pool **pool_r)
{
	struct worker_pool *pool = xcalloc(1, sizeof(*pool));

	if (n == 0)
		n = 1;
	metrics_workers(n);
	pthread_mutex_init(&pool->mu, NULL);
	pool->threads = xcalloc(n, sizeof(*pool->threads));
	for (unsigned i = 0; i < n; i++) {
		struct worker_thread *t = &pool->threads[i];
		int err;

		t->pool = pool;
		sem_init(&t->wake, 0, 0);
		err = pthread_create(&t->th, NULL, worker_main, t);
		if (err != 0) {
			sem_destroy(&t->wake);
			log_error("event=worker_start error=\"%s\"", strerror(err));
			worker_pool_free(&pool);
			return ROOST_EIO;
		}
		pool->nthreads++;
	}
	*pool_r = pool;
	return 0;
}

void
worker_pool_push(struct worker_pool *pool, struct work *w)
{
	struct worker_thread *t;

	w->next = NULL;
	metrics_job_queued();
	pthread_mutex_lock(&pool->mu);
	if (pool->tail != NULL)
		pool->tail->next = w;
	else
		pool->head = w;
	pool->tail = w;
	if ((t = pool->idle) != NULL)
		pool->idle = t->next_idle;
	pthread_mutex_unlock(&pool->mu);
	/* Posted after the unlock: a worker woken under the lock would only
	 * sleep again on the mutex. It re-checks the queue, so a job another
	 * worker took first costs it one more turn round, nothing else. */
	if (t != NULL)
		sem_post(&t->wake);
}

void
worker_pool_free(struct worker_pool **poolp)
{
	struct worker_pool *pool = *poolp;
	struct worker_thread *idle;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	idle = pool->idle;
	pool->idle = NULL;
	pthread_mutex_unlock(&pool->mu);
	for (struct worker_thread *t = idle, *next; t != NULL; t = next) {
		next = t->next_idle;
		sem_post(&t->wake);
	}
	for (unsigned i = 0; i < pool->nthreads; i++) {
		pthread_join(pool->threads[i].th, NULL);
		sem_destroy(&pool->threads[i].wake);
	}
	pthread_mutex_destroy(&pool->mu);
	free(pool->threads);
	free(pool);
	*poolp = NULL;
}
