/*
 * The LMDB write path: the write queue that funnels every change into
 * group commits, committed by the callers themselves (leader/follower) or
 * by the writer thread, and the puts and deletes a request makes.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#define READER_CHECK_SEC 30                /* periodic mdb_reader_check */
#define ASYNC_MAX_BYTES (64u << 20)        /* queued cache fills beyond this are dropped */
#define ASYNC_LINGER_NS (20 * 1000 * 1000) /* cache-only batches wait for company */

struct lmdb_wreq {
	lmdb_write_fn *fn;
	void *arg;
	void (*free_arg)(void *);
	size_t bytes;
	int result;
	bool done;
	bool async;
	/* Its caller waits here (synchronous requests only). */
	struct lmdb_waiter *waiter;
	struct lmdb_wreq *next;
};

/*
 * A condition variable a waiting caller sleeps on, signalled when its
 * request is done or when it is to commit the next batch. Waiters belong to
 * the shard (a free list, wq_lock) and live until it closes, so a commit
 * may signal one after dropping wq_lock (a caller woken under the lock
 * would only sleep again on the mutex) even if the caller has returned
 * meanwhile: then the signal is a spurious wake-up for the waiter's next
 * user, who checks its request under the lock and waits again.
 */
struct lmdb_waiter {
	pthread_cond_t cond;
	struct lmdb_waiter *next_free; /* on sh->waiters_free */
	struct lmdb_waiter *next_all;  /* on sh->waiters_all, until close */
};

int
lmdb_wput(struct lmdb_w *w, MDB_dbi dbi, MDB_val *key, MDB_val *val, unsigned flags)
{
	int rc = mdb_put(w->txn, dbi, key, val, flags);

	if (rc != 0 && rc != MDB_KEYEXIST && w->mdb_err == 0)
		w->mdb_err = rc;
	return rc == MDB_MAP_FULL ? ROOST_ETEMP : lmdb_err("put", rc);
}

int
lmdb_wdel(struct lmdb_w *w, MDB_dbi dbi, MDB_val *key)
{
	int rc = mdb_del(w->txn, dbi, key, NULL);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0 && w->mdb_err == 0)
		w->mdb_err = rc;
	return lmdb_err("del", rc);
}

static void
batch_fail(struct lmdb_wreq *batch, int err)
{
	for (struct lmdb_wreq *r = batch; r != NULL; r = r->next) {
		if (r->result == 0)
			r->result = err;
	}
}

/*
 * One write transaction for the whole batch, one nested transaction per
 * request so a failing request leaves no trace while the others commit. A
 * request alone in its batch (the common case when writes do not overlap)
 * runs in the top transaction itself: it fails by aborting it, and a
 * nested transaction would only add its begin and its page merge.
 * MDB_MAP_FULL anywhere aborts the batch, grows the map and runs it again.
 */
static void
run_batch(struct lmdb_shard *sh, struct lmdb_wreq *batch)
{
	/* Body files the batch's requests dropped: removed after the
	 * commit, never before (lmdb_blob.c). */
	struct lmdb_names doomed = {0};

	for (int attempt = 0; attempt < 12; attempt++) {
		MDB_txn *txn;
		bool full = false, dirsync = false;
		int rc;

		lmdb_names_free(&doomed);
		pthread_rwlock_rdlock(&sh->maplock);
		rc = mdb_txn_begin(sh->env, NULL, 0, &txn);
		if (rc != 0) {
			pthread_rwlock_unlock(&sh->maplock);
			if (rc == MDB_MAP_RESIZED && lmdb_map_resize(sh, false) == 0)
				continue;
			batch_fail(batch, lmdb_err("write txn", rc));
			return;
		}
		if (batch->next == NULL) {
			struct lmdb_w w = {.sh = sh, .txn = txn};
			int res = batch->fn(&w, batch->arg);

			if (w.mdb_err == MDB_MAP_FULL) {
				lmdb_names_free(&w.doomed);
				full = true;
			} else if (res != 0) {
				lmdb_names_free(&w.doomed);
				mdb_txn_abort(txn);
				pthread_rwlock_unlock(&sh->maplock);
				batch->result = res;
				return;
			} else {
				batch->result = 0;
				doomed = w.doomed;
				dirsync = w.dirsync;
			}
		} else {
			for (struct lmdb_wreq *r = batch; r != NULL; r = r->next) {
				struct lmdb_w w = {.sh = sh};
				int res;

				r->result = 0;
				rc = mdb_txn_begin(sh->env, txn, 0, &w.txn);
				if (rc != 0) {
					if (rc == MDB_MAP_FULL) {
						full = true;
						break;
					}
					r->result = lmdb_err("nested txn", rc);
					continue;
				}
				res = r->fn(&w, r->arg);
				if (w.mdb_err == MDB_MAP_FULL) {
					mdb_txn_abort(w.txn);
					lmdb_names_free(&w.doomed);
					full = true;
					break;
				}
				if (res == 0) {
					rc = mdb_txn_commit(w.txn);
					if (rc == MDB_MAP_FULL) {
						lmdb_names_free(&w.doomed);
						full = true;
						break;
					}
					res = lmdb_err("nested commit", rc);
				} else {
					mdb_txn_abort(w.txn);
				}
				for (size_t i = 0; res == 0 && i < w.doomed.n; i++)
					lmdb_names_add(&doomed, w.doomed.v[i]);
				dirsync |= res == 0 && w.dirsync;
				lmdb_names_free(&w.doomed);
				r->result = res;
			}
		}
		if (full) {
			mdb_txn_abort(txn);
			pthread_rwlock_unlock(&sh->maplock);
			if (lmdb_map_resize(sh, true) != 0)
				break;
			continue;
		}
		/* Body files the batch refers to are named durably first. */
		if (dirsync && lmdb_blobs_sync(sh) != 0) {
			mdb_txn_abort(txn);
			pthread_rwlock_unlock(&sh->maplock);
			batch_fail(batch, ROOST_EIO);
			lmdb_names_free(&doomed);
			return;
		}
		rc = mdb_txn_commit(txn);
		pthread_rwlock_unlock(&sh->maplock);
		if (rc == MDB_MAP_FULL) {
			if (lmdb_map_resize(sh, true) != 0)
				break;
			continue;
		}
		if (rc != 0)
			batch_fail(batch, lmdb_err("commit", rc));
		for (size_t i = 0; rc == 0 && i < doomed.n; i++)
			lmdb_blob_unlink(sh, doomed.v[i]);
		lmdb_names_free(&doomed);
		return;
	}
	lmdb_names_free(&doomed);
	for (struct lmdb_wreq *r = batch; r != NULL; r = r->next)
		r->result = ROOST_ETEMP;
}

/*
 * Take the first max_batch requests off the queue, run them as one commit
 * and hand back the results. Called with wq_lock held and committing clear;
 * the caller is the committer until it returns, wq_lock held again.
 *
 * Each waiting caller is woken once: when its request is done, or, for the
 * first caller still queued, to commit the next batch.
 */
static void
commit_queued_locked(struct lmdb_shard *sh)
{
	struct lmdb_wreq *batch = sh->wq_head, *last = batch, *next;
	struct lmdb_waiter *wake[64], *next_leader = NULL;
	size_t n = 1, n_wake = 0;

	sh->committing = true;
	while (last->next != NULL && n < sh->max_batch) {
		last = last->next;
		n++;
	}
	sh->wq_head = last->next;
	if (sh->wq_head == NULL)
		sh->wq_tail = NULL;
	last->next = NULL;
	for (struct lmdb_wreq *r = batch; r != NULL; r = r->next) {
		if (r->async)
			sh->wq_async_bytes -= r->bytes;
		else
			sh->wq_sync--;
	}
	pthread_mutex_unlock(&sh->wq_lock);

	run_batch(sh, batch);

	pthread_mutex_lock(&sh->wq_lock);
	sh->n_commits++;
	sh->committing = false;
	for (struct lmdb_wreq *r = batch; r != NULL; r = next) {
		next = r->next;
		sh->n_requests++;
		if (r->async) {
			if (r->free_arg != NULL)
				r->free_arg(r->arg);
			free(r);
		} else {
			/* r dies once its caller sees done: keep its waiter. */
			r->done = true;
			if (n_wake < sizeof(wake) / sizeof(wake[0]))
				wake[n_wake++] = r->waiter;
			else
				pthread_cond_signal(&r->waiter->cond);
		}
	}
	if (sh->wq_sync > 0) {
		for (struct lmdb_wreq *r = sh->wq_head; r != NULL; r = r->next) {
			if (!r->async) {
				next_leader = r->waiter;
				break;
			}
		}
	} else if (sh->writer_idle && (sh->wq_head != NULL || sh->stop)) {
		/* Fire-and-forget requests left alone are the writer's. */
		pthread_cond_signal(&sh->wq_cond);
	}
	pthread_mutex_unlock(&sh->wq_lock);
	for (size_t i = 0; i < n_wake; i++)
		pthread_cond_signal(&wake[i]->cond);
	if (next_leader != NULL)
		pthread_cond_signal(&next_leader->cond);
	pthread_mutex_lock(&sh->wq_lock);
}

/* The writer thread may commit: nobody is committing and no synchronous
 * caller is queued (that caller commits, taking the rest along). */
static bool
writer_may_commit(const struct lmdb_shard *sh)
{
	return sh->wq_head != NULL && sh->wq_sync == 0 && !sh->committing;
}

/*
 * The writer thread commits only fire-and-forget requests (cache fills,
 * \Recent claims) that no synchronous caller took along: it lets them
 * gather for ASYNC_LINGER_NS, then commits them if nobody else has. It
 * also reclaims stale reader slots every READER_CHECK_SEC.
 */
static void *
writer_main(void *arg)
{
	struct lmdb_shard *sh = arg;
	time_t last_check = time(NULL);

	pthread_mutex_lock(&sh->wq_lock);
	for (;;) {
		struct timespec ts;

		sh->writer_idle = true;
		while (!writer_may_commit(sh) &&
		       !(sh->stop && sh->wq_head == NULL && !sh->committing)) {
			lmdb_deadline(&ts, READER_CHECK_SEC, 0);
			if (pthread_cond_timedwait(&sh->wq_cond, &sh->wq_lock, &ts) == ETIMEDOUT)
				break;
		}
		sh->writer_idle = false;
		/* Stale reader slots (a killed `roost deliver`) are reclaimed
		 * every READER_CHECK_SEC whether idle or busy. */
		if (time(NULL) - last_check >= READER_CHECK_SEC) {
			pthread_mutex_unlock(&sh->wq_lock);
			lmdb_reader_check(sh);
			last_check = time(NULL);
			pthread_mutex_lock(&sh->wq_lock);
		}
		if (sh->stop && sh->wq_head == NULL && !sh->committing)
			break; /* stopping and drained */
		if (!writer_may_commit(sh))
			continue;
		/* Cache fills alone are not urgent: let them gather (queuing
		 * more does not cut the wait short; see lmdb_write_async()). */
		lmdb_deadline(&ts, 0, ASYNC_LINGER_NS);
		while (!sh->stop && writer_may_commit(sh) &&
		       pthread_cond_timedwait(&sh->wq_cond, &sh->wq_lock, &ts) != ETIMEDOUT)
			;
		/* A synchronous caller may have taken the queue meanwhile. */
		if (writer_may_commit(sh))
			commit_queued_locked(sh);
	}
	pthread_mutex_unlock(&sh->wq_lock);
	return NULL;
}

static void
enqueue_locked(struct lmdb_shard *sh, struct lmdb_wreq *r)
{
	r->next = NULL;
	if (sh->wq_tail != NULL)
		sh->wq_tail->next = r;
	else
		sh->wq_head = r;
	sh->wq_tail = r;
}

/*
 * Leader/follower group commit. The caller queues its request; if no
 * commit is running it becomes the committer itself and commits
 * everything queued (its own request and whatever others queued), with no
 * hand-off to another thread. If a commit is running it waits; when that
 * commit ends, its request is either done (it was in the batch) or still
 * queued, and then the first caller still queued commits the next batch
 * for all of them. So under concurrency one commit still carries many
 * requests, and the caller returns only once its change is committed.
 */
int
lmdb_write(struct lmdb_shard *sh, lmdb_write_fn *fn, void *arg)
{
	struct lmdb_wreq r = {.fn = fn, .arg = arg};

	pthread_mutex_lock(&sh->wq_lock);
	if (sh->stop) {
		pthread_mutex_unlock(&sh->wq_lock);
		return ROOST_ETEMP;
	}
	if ((r.waiter = sh->waiters_free) != NULL) {
		sh->waiters_free = r.waiter->next_free;
	} else {
		r.waiter = xcalloc(1, sizeof(*r.waiter));
		pthread_cond_init(&r.waiter->cond, NULL);
		r.waiter->next_all = sh->waiters_all;
		sh->waiters_all = r.waiter;
	}
	enqueue_locked(sh, &r);
	sh->wq_sync++;
	while (!r.done) {
		if (!sh->committing)
			commit_queued_locked(sh);
		else
			pthread_cond_wait(&r.waiter->cond, &sh->wq_lock);
	}
	r.waiter->next_free = sh->waiters_free;
	sh->waiters_free = r.waiter;
	pthread_mutex_unlock(&sh->wq_lock);
	return r.result;
}

void
lmdb_write_async(struct lmdb_shard *sh, lmdb_write_fn *fn, void *arg, size_t bytes,
                 void (*free_arg)(void *))
{
	struct lmdb_wreq *r;

	pthread_mutex_lock(&sh->wq_lock);
	if (sh->stop || sh->wq_async_bytes + bytes > ASYNC_MAX_BYTES) {
		pthread_mutex_unlock(&sh->wq_lock);
		if (free_arg != NULL)
			free_arg(arg);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->fn = fn;
	r->arg = arg;
	r->free_arg = free_arg;
	r->bytes = bytes;
	r->async = true;
	sh->wq_async_bytes += bytes;
	enqueue_locked(sh, r);
	/* Only a writer asleep with nothing to do needs the news: one that
	 * is lingering commits at its deadline anyway, and a running commit
	 * or a queued caller takes this request along. */
	if (sh->writer_idle && writer_may_commit(sh))
		pthread_cond_signal(&sh->wq_cond);
	pthread_mutex_unlock(&sh->wq_lock);
}

int
lmdb_writer_start(struct lmdb_shard *sh)
{
	if (pthread_create(&sh->writer, NULL, writer_main, sh) != 0) {
		log_error(
		    "event=lmdb_error op=writer_start error=\"cannot start the writer thread\"");
		return ROOST_EIO;
	}
	sh->writer_running = true;
	return 0;
}

void
lmdb_writer_stop(struct lmdb_shard *sh)
{
	if (sh->writer_running) {
		pthread_mutex_lock(&sh->wq_lock);
		sh->stop = true;
		pthread_cond_signal(&sh->wq_cond);
		pthread_mutex_unlock(&sh->wq_lock);
		pthread_join(sh->writer, NULL);
	}
}

void
lmdb_waiters_free(struct lmdb_shard *sh)
{
	while (sh->waiters_all != NULL) {
		struct lmdb_waiter *wt = sh->waiters_all;

		sh->waiters_all = wt->next_all;
		pthread_cond_destroy(&wt->cond);
		free(wt);
	}
}
