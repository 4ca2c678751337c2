#ifndef ROOST_WORKER_H
#define ROOST_WORKER_H

/*
 * A fixed pool of worker threads running queued jobs in FIFO order. A job is
 * an intrusive node embedded in its owner (no allocation per job); handing a
 * job to the pool hands over ownership of the object holding it until fn
 * returns it somewhere (conn.c posts connections back to their loop).
 *
 * worker_pool_push() may be called from any thread; the rest by the thread
 * that created the pool.
 */

struct worker_pool;

struct work {
	struct work *next;
	void (*fn)(struct work *w);
};

/* Start n threads (n >= 1). ROOST_EIO when a thread cannot be started. */
int worker_pool_create(unsigned n, struct worker_pool **pool_r);
/*
 * Queue w: one of the pool's threads runs w->fn(w) once every job queued
 * before it has started (FIFO start; with several threads an earlier job
 * may still be running). Never blocks on a job and never fails: the queue
 * is unbounded and intrusive, so nothing is allocated. The caller hands
 * over the object holding w; w must not be pushed again before its fn has
 * started, and from then fn owns it. Any thread may push, until
 * worker_pool_free() begins.
 */
void worker_pool_push(struct worker_pool *pool, struct work *w);
/* Run what is queued, then stop and join the threads and free the pool. */
void worker_pool_free(struct worker_pool **pool);

#endif
