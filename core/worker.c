#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/worker.h"
#include "roost/xalloc.h"
#include "roost/metrics.h"

/*
 * One mutex and one condition variable guard the queue and the stop flag.
 * Jobs are short hand-offs, so a single queue is not the bottleneck next to
 * the disk I/O the jobs do; it also keeps the FIFO order across threads.
 */
struct worker_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work *head, *tail; /* protected by mu */
	bool stop;                /* protected by mu */
	unsigned nthreads;
	pthread_t *threads;
};

static void *
worker_main(void *arg)
{
	struct worker_pool *pool = arg;

	pthread_mutex_lock(&pool->mu);
	for (;;) {
		struct work *w;

		while (pool->head == NULL && !pool->stop)
			pthread_cond_wait(&pool->cv, &pool->mu);
		if (pool->head == NULL)
			break;
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
	pthread_cond_init(&pool->cv, NULL);
	pool->threads = xcalloc(n, sizeof(*pool->threads));
	for (unsigned i = 0; i < n; i++) {
		int err = pthread_create(&pool->threads[i], NULL, worker_main, pool);

		if (err != 0) {
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
	w->next = NULL;
	metrics_job_queued();
	pthread_mutex_lock(&pool->mu);
	if (pool->tail != NULL)
		pool->tail->next = w;
	else
		pool->head = w;
	pool->tail = w;
	pthread_mutex_unlock(&pool->mu);
	/* Signalled after the unlock: a worker woken under the lock would
	 * only sleep again on the mutex, two context switches instead of one
	 * per command. It re-checks the queue, so nothing is lost. */
	pthread_cond_signal(&pool->cv);
}

void
worker_pool_free(struct worker_pool **poolp)
{
	struct worker_pool *pool = *poolp;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool->threads);
	free(pool);
	*poolp = NULL;
}
