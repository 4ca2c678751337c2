/*
 * LMDB environments: opening the shards, read transactions, map growth and
 * the write queue that funnels every change into group commits (committed
 * by the callers themselves, leader/follower, or by the writer thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmdb_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#define LMDB_DEFAULT_MAP (1ULL << 30)
#define LMDB_MAX_READERS 2048
#define RESIZE_WAIT_SEC 10                 /* how long a resize waits for open views */
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
lmdb_err(const char *what, int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return ROOST_ENOTFOUND;
	case MDB_KEYEXIST:
		return ROOST_EEXISTS;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED:
	case MDB_MAP_FULL:
		log_warn("event=lmdb_error op=%s error=\"%s\"", what, mdb_strerror(rc));
		return ROOST_ETEMP;
	default:
		log_error("event=lmdb_error op=%s error=\"%s\"", what, mdb_strerror(rc));
		return ROOST_EIO;
	}
}

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
deadline(struct timespec *ts, long sec, long nsec)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += sec;
	ts->tv_nsec += nsec;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ------------------------------------------------------------------ */
/* Read transactions and the map size                                  */
/* ------------------------------------------------------------------ */

/* Caller holds maplock exclusively (no transaction is open here). */
static void
pool_drop(struct lmdb_shard *sh)
{
	pthread_mutex_lock(&sh->pool_lock);
	while (sh->n_pool > 0)
		mdb_txn_abort(sh->pool[--sh->n_pool]);
	pthread_mutex_unlock(&sh->pool_lock);
}

/* Grow the map (grow) or adopt a size another process set (!grow). Waits a
 * bounded time for open read transactions (views) to finish. */
static int
map_resize(struct lmdb_shard *sh, bool grow)
{
	struct timespec ts;
	MDB_envinfo info;
	size_t size = 0;
	int rc;

	deadline(&ts, RESIZE_WAIT_SEC, 0);
	if (pthread_rwlock_timedwrlock(&sh->maplock, &ts) != 0) {
		log_warn("event=lmdb_map_resize path=%s status=waited error=\"readers held the map "
		         "too long\"",
		         sh->path);
		return ROOST_ETEMP;
	}
	pool_drop(sh);
	if (grow) {
		mdb_env_info(sh->env, &info);
		size = info.me_mapsize * 2;
		if (size < info.me_mapsize + (64u << 20))
			size = info.me_mapsize + (64u << 20);
	}
	rc = mdb_env_set_mapsize(sh->env, size);
	pthread_rwlock_unlock(&sh->maplock);
	if (rc != 0)
		return lmdb_err("set_mapsize", rc);
	if (grow) {
		log_info("event=lmdb_map_resize path=%s size_mib=%zu", sh->path, size >> 20);
	} else {
		mdb_env_info(sh->env, &info);
		log_info("event=lmdb_map_resize path=%s size_mib=%zu by=other_process", sh->path,
		         info.me_mapsize >> 20);
	}
	return 0;
}

int
lmdb_rtxn_begin(struct lmdb_shard *sh, MDB_txn **txn_r)
{
	MDB_txn *txn = NULL;
	int rc = 0;

	for (int attempt = 0; attempt < 5; attempt++) {
		pthread_rwlock_rdlock(&sh->maplock);
		pthread_mutex_lock(&sh->pool_lock);
		txn = sh->n_pool > 0 ? sh->pool[--sh->n_pool] : NULL;
		pthread_mutex_unlock(&sh->pool_lock);
		if (txn != NULL) {
			rc = mdb_txn_renew(txn);
			if (rc != 0) {
				mdb_txn_abort(txn);
				txn = NULL;
			}
		} else {
			rc = mdb_txn_begin(sh->env, NULL, MDB_RDONLY, &txn);
		}
		if (rc == 0) {
			*txn_r = txn;
			return 0;
		}
		pthread_rwlock_unlock(&sh->maplock);
		if (rc == MDB_MAP_RESIZED) {
			if (map_resize(sh, false) != 0)
				break;
		} else if (rc == MDB_READERS_FULL) {
			int dead = 0;

			mdb_reader_check(sh->env, &dead);
			if (dead == 0)
				break;
		} else {
			break;
		}
	}
	return lmdb_err("read txn", rc);
}

void
lmdb_rtxn_end(struct lmdb_shard *sh, MDB_txn *txn)
{
	mdb_txn_reset(txn);
	pthread_mutex_lock(&sh->pool_lock);
	if (sh->n_pool < sizeof(sh->pool) / sizeof(sh->pool[0])) {
		sh->pool[sh->n_pool++] = txn;
		txn = NULL;
	}
	pthread_mutex_unlock(&sh->pool_lock);
	if (txn != NULL)
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&sh->maplock);
}

/* ------------------------------------------------------------------ */
/* The writer: group commit                                            */
/* ------------------------------------------------------------------ */

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
			if (rc == MDB_MAP_RESIZED && map_resize(sh, false) == 0)
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
			if (map_resize(sh, true) != 0)
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
			if (map_resize(sh, true) != 0)
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

static void
reader_check(struct lmdb_shard *sh)
{
	int dead = 0;

	mdb_reader_check(sh->env, &dead);
	if (dead > 0)
		log_info("event=lmdb_stale_readers path=%s cleared=%d", sh->path, dead);
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
			deadline(&ts, READER_CHECK_SEC, 0);
			if (pthread_cond_timedwait(&sh->wq_cond, &sh->wq_lock, &ts) == ETIMEDOUT)
				break;
		}
		sh->writer_idle = false;
		/* Stale reader slots (a killed `roost deliver`) are reclaimed
		 * every READER_CHECK_SEC whether idle or busy. */
		if (time(NULL) - last_check >= READER_CHECK_SEC) {
			pthread_mutex_unlock(&sh->wq_lock);
			reader_check(sh);
			last_check = time(NULL);
			pthread_mutex_lock(&sh->wq_lock);
		}
		if (sh->stop && sh->wq_head == NULL && !sh->committing)
			break; /* stopping and drained */
		if (!writer_may_commit(sh))
			continue;
		/* Cache fills alone are not urgent: let them gather (queuing
		 * more does not cut the wait short; see lmdb_write_async()). */
		deadline(&ts, 0, ASYNC_LINGER_NS);
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

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

static int
mkdir_p(const char *path)
{
	char *failed;
	int rc = fdio_mkdir_p(path, &failed);

	if (rc == ROOST_EIO) {
		log_error("event=storage_error op=mkdir path=%s error=\"%s\"", failed,
		          strerror(errno));
		free(failed);
	}
	return rc;
}

/* The shard count decides where users live; changing it would hide mail. */
static int
shards_file(const char *dir, unsigned n)
{
	char path[4096], buf[32];
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/shards", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0) {
			log_error("event=storage_error path=%s error=unreadable", path);
			return ROOST_EIO;
		}
		buf[len] = '\0';
		if (strtoul(buf, NULL, 10) != n) {
			log_error("event=lmdb_error path=%s shards=%lu lmdb_shards=%u error=\"the "
			          "store has another shard count; refusing\"",
			          path, strtoul(buf, NULL, 10), n);
			return ROOST_ECONFIG;
		}
		return 0;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? shards_file(dir, n) : ROOST_EIO;
	len = snprintf(buf, sizeof(buf), "%u\n", n);
	if (write(fd, buf, (size_t)len) != len || fsync(fd) < 0) {
		close(fd);
		return ROOST_EIO;
	}
	close(fd);
	return 0;
}

static int
shard_open(const struct roost_config *cfg, struct lmdb_shard *sh, const char *path)
{
	uint64_t map =
	    cfg != NULL && cfg->lmdb_map_size != 0 ? cfg->lmdb_map_size : LMDB_DEFAULT_MAP;
	unsigned flags = MDB_NOTLS;
	MDB_txn *txn;
	int rc;
	struct {
		const char *name;
		MDB_dbi *dbi;
	} dbs[] = {
	    {"meta", &sh->meta},     {"names", &sh->names},   {"mboxes", &sh->mboxes},
	    {"msgs", &sh->msgs},     {"modseq", &sh->modseq}, {"expunged", &sh->expunged},
	    {"bodies", &sh->bodies}, {"refs", &sh->refs},     {"cache", &sh->cache},
	    {"subs", &sh->subs},     {"unseen", &sh->unseen}, {"files", &sh->files},
	    {"annots", &sh->annots}, {"quota", &sh->quota},
	};

	sh->path = xstrdup(path);
	sh->fsync = cfg == NULL || cfg->storage_fsync;
	sh->retention = cfg != NULL ? cfg->expunge_log_retention : 0;
	sh->max_batch = 4096;
	if (getenv("ROOST_LMDB_MAX_BATCH") != NULL && atoi(getenv("ROOST_LMDB_MAX_BATCH")) > 0)
		sh->max_batch = (size_t)atoi(getenv("ROOST_LMDB_MAX_BATCH"));
	pthread_rwlock_init(&sh->maplock, NULL);
	pthread_mutex_init(&sh->pool_lock, NULL);
	pthread_mutex_init(&sh->claim_lock, NULL);
	lmdb_changes_memo_init(sh);
	pthread_mutex_init(&sh->wq_lock, NULL);
	pthread_cond_init(&sh->wq_cond, NULL);

	if ((rc = mkdir_p(path)) != 0)
		return rc;
	if (!sh->fsync)
		flags |= MDB_NOSYNC | MDB_NOMETASYNC;
	if ((rc = mdb_env_create(&sh->env)) != 0)
		return lmdb_err("env_create", rc);
	mdb_env_set_maxdbs(sh->env, 16);
	mdb_env_set_maxreaders(sh->env, LMDB_MAX_READERS);
	mdb_env_set_mapsize(sh->env, (size_t)map);
	if ((rc = mdb_env_open(sh->env, path, flags, 0600)) != 0) {
		log_error("event=lmdb_error op=open path=%s error=\"%s\"", path, mdb_strerror(rc));
		mdb_env_close(sh->env);
		sh->env = NULL;
		return ROOST_EIO;
	}
	reader_check(sh);
	for (int attempt = 0;; attempt++) {
		rc = mdb_txn_begin(sh->env, NULL, 0, &txn);
		if (rc == MDB_MAP_RESIZED && attempt < 3) {
			mdb_env_set_mapsize(sh->env, 0);
			continue;
		}
		break;
	}
	if (rc != 0)
		return lmdb_err("open txn", rc);
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		if ((rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi)) != 0) {
			mdb_txn_abort(txn);
			return lmdb_err("dbi_open", rc);
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err("open commit", rc);
	if ((rc = lmdb_blobs_open(sh)) != 0)
		return rc;
	if (pthread_create(&sh->writer, NULL, writer_main, sh) != 0) {
		log_error(
		    "event=lmdb_error op=writer_start error=\"cannot start the writer thread\"");
		return ROOST_EIO;
	}
	sh->writer_running = true;
	return 0;
}

static void
shard_close(struct lmdb_shard *sh)
{
	if (sh->writer_running) {
		pthread_mutex_lock(&sh->wq_lock);
		sh->stop = true;
		pthread_cond_signal(&sh->wq_cond);
		pthread_mutex_unlock(&sh->wq_lock);
		pthread_join(sh->writer, NULL);
	}
	lmdb_blobs_close(sh);
	if (sh->env != NULL) {
		pool_drop(sh);
		mdb_env_close(sh->env);
	}
	while (sh->waiters_all != NULL) {
		struct lmdb_waiter *wt = sh->waiters_all;

		sh->waiters_all = wt->next_all;
		pthread_cond_destroy(&wt->cond);
		free(wt);
	}
	pthread_cond_destroy(&sh->wq_cond);
	pthread_mutex_destroy(&sh->wq_lock);
	pthread_mutex_destroy(&sh->pool_lock);
	pthread_mutex_destroy(&sh->claim_lock);
	lmdb_changes_memo_free(sh);
	pthread_rwlock_destroy(&sh->maplock);
	free(sh->claims);
	free(sh->path);
}

int
lmdb_shards_open(const struct roost_config *cfg, struct lmdb_storage *ls)
{
	const char *data = cfg != NULL && cfg->data_dir != NULL ? cfg->data_dir : "./var";
	unsigned n = cfg != NULL && cfg->lmdb_shards > 0 ? cfg->lmdb_shards : 1;
	char dir[4096], path[4200];
	int rc;

	if (n > LMDB_MAX_SHARDS)
		return ROOST_ECONFIG;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/lmdb", data) >= sizeof(dir))
		return ROOST_EINVAL;
	if ((rc = mkdir_p(dir)) != 0 || (rc = shards_file(dir, n)) != 0)
		return rc;
	ls->shards = xcalloc(n, sizeof(*ls->shards));
	ls->n_shards = n;
	for (unsigned i = 0; i < n; i++) {
		if (n == 1)
			snprintf(path, sizeof(path), "%s", dir);
		else
			snprintf(path, sizeof(path), "%s/shard-%u", dir, i);
		ls->shards[i].index = i;
		if ((rc = shard_open(cfg, &ls->shards[i], path)) != 0) {
			lmdb_shards_close(ls);
			return rc;
		}
	}
	return 0;
}

void
lmdb_shards_close(struct lmdb_storage *ls)
{
	for (unsigned i = 0; i < ls->n_shards; i++)
		shard_close(&ls->shards[i]);
	free(ls->shards);
	ls->shards = NULL;
	ls->n_shards = 0;
}

struct lmdb_shard *
lmdb_shard_of(struct lmdb_storage *ls, const char *user)
{
	if (ls->n_shards == 1)
		return &ls->shards[0];
	return &ls->shards[hash_str(user) % ls->n_shards];
}

static int
lmdb_open(const struct roost_config *cfg, struct storage **st_r)
{
	struct lmdb_storage *ls = xcalloc(1, sizeof(*ls));
	int rc;

	if ((rc = lmdb_shards_open(cfg, ls)) != 0) {
		free(ls);
		return rc;
	}
	*st_r = &ls->base;
	return 0;
}

static void
lmdb_close(struct storage *st)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);

	lmdb_shards_close(ls);
	free(ls);
}

static void
lmdb_stats(struct storage *st, struct storage_stats *stats_r)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);

	for (unsigned i = 0; i < ls->n_shards; i++) {
		pthread_mutex_lock(&ls->shards[i].wq_lock);
		stats_r->commits += ls->shards[i].n_commits;
		stats_r->writes += ls->shards[i].n_requests;
		pthread_mutex_unlock(&ls->shards[i].wq_lock);
	}
}

const struct storage_ops storage_lmdb_ops = {
    .name = "lmdb",
    .reads_nb = true,
    .open = lmdb_open,
    .close = lmdb_close,
    .user_init = lmdb_op_user_init,
    .list = lmdb_op_list,
    .create = lmdb_op_create,
    .delete = lmdb_op_delete,
    .rename = lmdb_op_rename,
    .subscribe = lmdb_op_subscribe,
    .status = lmdb_op_status,
    .set_uids = lmdb_op_set_uids,
    .deliver = lmdb_op_deliver,
    .mailbox_open = lmdb_op_mailbox_open,
    .mailbox_close = lmdb_op_mailbox_close,
    .mailbox_status = lmdb_op_mailbox_status,
    .records = lmdb_op_records,
    .keywords = lmdb_op_keywords,
    .claim_recent = lmdb_op_claim_recent,
    .read = lmdb_op_read,
    .cache_get = lmdb_op_cache_get,
    .cache_set = lmdb_op_cache_set,
    .append = lmdb_op_append,
    .store = lmdb_op_store,
    .expunge = lmdb_op_expunge,
    .copy = lmdb_op_copy,
    .changes_since = lmdb_op_changes_since,
    .changes_since_nb = lmdb_op_changes_since_nb,
    .meta_get = lmdb_op_meta_get,
    .meta_update = lmdb_op_meta_update,
    .check = lmdb_op_check,
    .repair = lmdb_op_repair,
    .backup = lmdb_op_backup,
    .quota_get = lmdb_op_quota_get,
    .quota_recalc = lmdb_op_quota_recalc,
    .stats = lmdb_stats,
};
