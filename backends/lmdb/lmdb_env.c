/*
 * LMDB environments: opening the shards, read transactions and map growth.
 * The write queue and its group commits are lmdb_write.c's.
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
#define RESIZE_WAIT_SEC 10 /* how long a resize waits for open views */

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

void
lmdb_deadline(struct timespec *ts, long sec, long nsec)
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
int
lmdb_map_resize(struct lmdb_shard *sh, bool grow)
{
	struct timespec ts;
	MDB_envinfo info;
	size_t size = 0;
	int rc;

	lmdb_deadline(&ts, RESIZE_WAIT_SEC, 0);
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
			if (lmdb_map_resize(sh, false) != 0)
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

void
lmdb_reader_check(struct lmdb_shard *sh)
{
	int dead = 0;

	mdb_reader_check(sh->env, &dead);
	if (dead > 0)
		log_info("event=lmdb_stale_readers path=%s cleared=%d", sh->path, dead);
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
	lmdb_reader_check(sh);
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
	return lmdb_writer_start(sh);
}

static void
shard_close(struct lmdb_shard *sh)
{
	lmdb_writer_stop(sh);
	lmdb_blobs_close(sh);
	if (sh->env != NULL) {
		pool_drop(sh);
		mdb_env_close(sh->env);
	}
	lmdb_waiters_free(sh);
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
