#ifndef ROOST_LMDB_IMPL_H
#define ROOST_LMDB_IMPL_H

/*
 * The LMDB backend's private shapes (backends/lmdb only).
 *
 * Layout: one environment per shard under <data_dir>/lmdb (one shard) or
 * <data_dir>/lmdb/shard-N (cfg->lmdb_shards > 1; users hashed over them;
 * the count is recorded in <data_dir>/lmdb/shards and must not change).
 * Named databases, keys big-endian so they sort numerically:
 *
 *   meta      "next_id" -> u64, "uidvalidity" -> u32 (last one handed out)
 *   names     user \0 name -> u64 mailbox id (ids are never reused)
 *   mboxes    id(8) -> struct lmdb_mbox + keyword names (NUL-terminated)
 *   msgs      id(8) uid(4) -> struct lmdb_msg
 *   modseq    id(8) modseq(8) uid(4) -> "" (index for changes-since)
 *   expunged  id(8) modseq(8) uid(4) -> i64 expunge time (the expunge log;
 *             entries older than cfg->expunge_log_retention are pruned on
 *             later expunges, and the mailbox's expunge_floor remembers the
 *             highest pruned MODSEQ so changes-since can say the log is
 *             incomplete; retention 0 keeps them forever)
 *   bodies    sha256(32) -> raw message (content-addressed, stored once)
 *   files     sha256(32) -> name of the file in <env>/blobs holding the
 *             body, for bodies of LMDB_BLOB_MIN bytes or more (a body is
 *             in bodies or in files, never both; see lmdb_blob.c)
 *   refs      sha256(32) -> u64 number of message records using the body
 *   cache     id(8) uid(4) -> opaque parse cache bytes
 *   subs      user \0 name -> ""
 *   unseen    id(8) uid(4) -> "" for messages without \Seen (first unseen
 *             without a scan)
 *   annots    'M' id(8) 0(8) or 'U' sha256(user)[0..16) -> the metadata
 *             record (RFC 5464; lmdb_meta.c)
 *   quota     user -> u64 bytes, u64 messages over all the user's
 *             mailboxes, changed in the transaction that changes them
 *             (lmdb_quota.c)
 *
 * Writes: every change is a request queued on the shard; whoever commits
 * takes all queued requests, runs each in a nested transaction of one write
 * transaction and commits once (group commit), then wakes the callers, so
 * each caller returns after its change is durable. The committer is the
 * calling worker itself when no commit is running (leader/follower: no
 * hand-off to another thread, whose two context switches per write were
 * most of a write's CPU on a small VM); callers that arrive during a
 * commit wait, and the first of them commits the next batch for all.
 * The shard's writer thread commits only fire-and-forget requests (cache
 * fills, \Recent claims) that no caller took along. Another
 * process (`roost deliver`) may write the same environment; LMDB's
 * inter-process write lock serialises us with it, and every request reads
 * what it needs inside its own transaction.
 *
 * Reads: short read transactions (MDB_NOTLS, recycled with reset/renew).
 * maplock is held shared by every open transaction and exclusively while
 * the map is resized (MDB_MAP_FULL here, MDB_MAP_RESIZED from another
 * process), because a resize remaps the file under any open pointer.
 */

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "roost/storage.h"
#include "roost/storage_impl.h"

#define LMDB_SHA_LEN 32
#define LMDB_MAX_SHARDS 64
/* Bodies of this many bytes or more are kept in files (lmdb_blob.c). */
#define LMDB_BLOB_MIN (128u << 10)
/* A body file's name: hex sha256, '-', 16 random hex digits. */
#define LMDB_BLOB_NAME_LEN (LMDB_SHA_LEN * 2 + 1 + 16)

struct lmdb_wreq;
struct lmdb_waiter;

struct lmdb_shard {
	MDB_env *env;
	MDB_dbi meta, names, mboxes, msgs, modseq, expunged, bodies, files, refs, cache, subs,
	    unseen, annots, quota;
	unsigned index;
	char *path;
	bool fsync;
	uint64_t retention;

	/* Body files (lmdb_blob.c). blob_lockfd is held shared while this
	 * process has body files written but not yet committed
	 * (blob_inflight of them, blob_lock), exclusively by a sweep;
	 * blob_runfd is held exclusively while the store is open, so a
	 * run file nobody holds tells of a crash. */
	bool blob_open;
	int blob_dirfd, blob_lockfd, blob_runfd;
	char *blob_runpath;
	pthread_mutex_t blob_lock;
	unsigned blob_inflight;

	pthread_rwlock_t maplock;

	/* Recycled read transactions (reset, not aborted). */
	pthread_mutex_t pool_lock;
	MDB_txn *pool[64];
	size_t n_pool;

	/* The write queue, its committers and the writer thread; every field
	 * here is protected by wq_lock (lmdb_write.c). */
	pthread_mutex_t wq_lock;
	pthread_cond_t wq_cond; /* writer: fire-and-forget work queued / stop */
	struct lmdb_waiter *waiters_free, *waiters_all; /* lmdb_write.c */
	struct lmdb_wreq *wq_head, *wq_tail;
	size_t wq_async_bytes; /* queued fire-and-forget bytes */
	size_t wq_sync;        /* queued requests whose callers wait */
	bool committing;       /* a thread is running a batch (one at a time) */
	bool writer_idle;      /* the writer thread sleeps until signalled */
	size_t max_batch;      /* requests per commit; 1 = no group commit
	                        * (ROOST_LMDB_MAX_BATCH, for the benchmark) */
	bool stop;
	pthread_t writer;
	bool writer_running;

	/* Statistics (wq_lock). */
	uint64_t n_commits, n_requests;

	/* \Recent claims this process made that the database may not hold
	 * yet (claim_lock; lmdb_recent.c). A claim is decided here, at
	 * once, and written by a later group commit without anyone waiting
	 * for it: IDLE sessions claim as they are woken, and a worker
	 * blocked on an fsync per woken mailbox held up the wake-ups queued
	 * behind it. */
	pthread_mutex_t claim_lock;
	struct lmdb_claim *claims;
	size_t n_claims, cap_claims;
	size_t prune_at; /* look for claims written when n_claims reaches it */
	/* Bumped whenever a claim is forgotten because the database holds
	 * it: a claim whose read transaction began before that may hold a
	 * boundary older than the forgotten one and must read again. */
	uint64_t claims_forgotten;

	/* The last changes-since answers, one per slot, shared by the
	 * sessions of a mailbox woken at the same modseq (memo_lock;
	 * lmdb_changes.c). */
	pthread_mutex_t memo_lock;
	struct lmdb_changes_memo *memo;
};

/* The mailbox's \Recent boundary as this process moved it. */
struct lmdb_claim {
	uint64_t id;
	uint32_t first;
};

struct lmdb_storage {
	struct storage base;
	struct lmdb_shard *shards;
	unsigned n_shards;
};

struct lmdb_mailbox {
	struct mailbox base;
	struct lmdb_shard *sh;
	uint64_t id;
	uint32_t uidvalidity;
	/* mailbox_keywords() result, valid until the next call on mb */
	char *kw_blob;
	const char *kw_names[STORAGE_MAX_KEYWORDS];
	size_t n_kw;
};

/* A mailbox's record (value in mboxes, followed by keyword names). */
struct lmdb_mbox {
	uint32_t version;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t recent_first; /* UIDs >= this are not yet claimed */
	uint32_t messages;
	uint32_t unseen;
	uint32_t special_use;
	uint32_t noselect;
	uint64_t highestmodseq;
	uint64_t size;
	uint64_t expunge_floor; /* expunge log complete only above this */
	uint32_t n_kw;
	uint32_t recent; /* messages with uid >= recent_first */
};

struct lmdb_msg {
	uint32_t flags;
	uint32_t pad;
	uint64_t keywords;
	uint64_t modseq;
	int64_t internal_date;
	uint64_t size;
	uint8_t sha[LMDB_SHA_LEN];
	uint64_t emailid; /* absent from records written before ids (72 bytes) */
	/* SAVEDATE (RFC 8514): when the message was put in this mailbox
	 * (append, delivery, copy, move), seconds since the epoch; absent
	 * from records written before save dates (80 bytes), read as 0 */
	int64_t save_date;
};
/* The size of a record written before EMAILIDs were stored. */
#define LMDB_MSG_V1_SIZE offsetof(struct lmdb_msg, emailid)
/* The size of a record written before save dates were stored. */
#define LMDB_MSG_V2_SIZE offsetof(struct lmdb_msg, save_date)

/* Keyword table of a mailbox, decoded. */
struct lmdb_kwtab {
	size_t n;
	char names[STORAGE_MAX_KEYWORDS][STORAGE_MAX_KEYWORD_LEN + 1];
};

/* Names of body files, owned. */
struct lmdb_names {
	char **v;
	size_t n, cap;
};

/* The write context a request runs in. */
struct lmdb_w {
	struct lmdb_shard *sh;
	MDB_txn *txn;
	int mdb_err; /* first LMDB error; MDB_MAP_FULL makes the batch retry */
	/* body files whose last reference the request dropped: removed by
	 * the writer once the commit is durable, forgotten if it fails */
	struct lmdb_names doomed;
	/* the request refers to a new body file: the writer syncs the
	 * blobs directory before the commit */
	bool dirsync;
};

/*
 * A write request. fn runs inside a nested transaction on whichever thread
 * commits the batch (the caller's own, another caller's, or the writer
 * thread), so it must not depend on the calling thread nor take a lock a
 * caller of lmdb_write() may hold; it may run more than once (the batch is
 * retried after the map grew), so it must reset its outputs when it
 * starts. async requests are not waited for: the committer frees them
 * (free_arg(arg)).
 */
typedef int lmdb_write_fn(struct lmdb_w *w, void *arg);

/* ---- lmdb_env.c ---- */
int lmdb_shards_open(const struct roost_config *cfg, struct lmdb_storage *ls);
void lmdb_shards_close(struct lmdb_storage *ls);
struct lmdb_shard *lmdb_shard_of(struct lmdb_storage *ls, const char *user);
/* Read transactions: begin returns 0 or ROOST_EIO/ROOST_ETEMP. */
int lmdb_rtxn_begin(struct lmdb_shard *sh, MDB_txn **txn_r);
void lmdb_rtxn_end(struct lmdb_shard *sh, MDB_txn *txn);
/* Map an LMDB error to a roost code, logging what happened. */
int lmdb_err(const char *what, int rc);
/* Grow the map (grow) or adopt a size another process set (!grow); 0 or
 * a roost error. Takes maplock exclusively: the caller holds no
 * transaction and not maplock. */
int lmdb_map_resize(struct lmdb_shard *sh, bool grow);
/* Clear reader slots of processes that died holding them. */
void lmdb_reader_check(struct lmdb_shard *sh);
/* *ts = now (CLOCK_REALTIME) + sec + nsec, for pthread timed waits. */
void lmdb_deadline(struct timespec *ts, long sec, long nsec);

/* ---- lmdb_write.c ---- */
/* Start the shard's writer thread (0 or ROOST_EIO); stop drains the queue
 * and joins it (nothing if it never started). */
int lmdb_writer_start(struct lmdb_shard *sh);
void lmdb_writer_stop(struct lmdb_shard *sh);
/* Free the shard's waiters, at close once no caller can write. */
void lmdb_waiters_free(struct lmdb_shard *sh);
/* Run fn(w, arg) in the next group commit, committed by this thread when no
 * commit is running (see "Writes" above); returns its result once the
 * commit is durable (ROOST_EIO/ROOST_ETEMP when the commit failed). */
int lmdb_write(struct lmdb_shard *sh, lmdb_write_fn *fn, void *arg);
/* Queue fn without waiting (cache fills); arg is freed with free_arg. */
void lmdb_write_async(struct lmdb_shard *sh, lmdb_write_fn *fn, void *arg, size_t bytes,
                      void (*free_arg)(void *));
int lmdb_wput(struct lmdb_w *w, MDB_dbi dbi, MDB_val *key, MDB_val *val, unsigned flags);
int lmdb_wdel(struct lmdb_w *w, MDB_dbi dbi, MDB_val *key);

/* The backend behind a storage handle and a mailbox handle. */
static inline struct lmdb_shard *
lmdb_st_shard(struct storage *st, const char *user)
{
	return lmdb_shard_of(container_of(st, struct lmdb_storage, base), user);
}

static inline struct lmdb_mailbox *
lmdb_mb(struct mailbox *mb)
{
	return container_of(mb, struct lmdb_mailbox, base);
}

/* ---- keys and records (lmdb_record.c) ---- */
/* names/subs key: sha256(user)[0..16) sha256(name)[0..16). */
#define LMDB_NAME_KEY 32
#define LMDB_USER_PREFIX 16
void lmdb_name_key(uint8_t key[LMDB_NAME_KEY], const char *user, const char *name);
void lmdb_sha256(const void *data, size_t len, uint8_t out[LMDB_SHA_LEN]);
void lmdb_be64(uint8_t *p, uint64_t v);
void lmdb_be32(uint8_t *p, uint32_t v);
uint64_t lmdb_get_be64(const uint8_t *p);
uint32_t lmdb_get_be32(const uint8_t *p);
/* names value: id(8) user \0 name \0; subs value: user \0 name \0; false
 * when v is not shaped so. The strings point into v. */
bool lmdb_value_names(const MDB_val *v, size_t skip, const char **user_r, const char **name_r);
int lmdb_names_put(struct lmdb_w *w, const char *user, const char *name, uint64_t id);
int lmdb_names_del(struct lmdb_w *w, const char *user, const char *name);
/* Look up a mailbox by name: ROOST_ENOTFOUND when absent. */
int lmdb_mbox_id(MDB_txn *txn, struct lmdb_shard *sh, const char *user, const char *name,
                 uint64_t *id_r);
int lmdb_mbox_get(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, struct lmdb_mbox *rec_r,
                  struct lmdb_kwtab *kw_r);
/* The id and record of user's mailbox name, which must hold messages:
 * ROOST_ENOTFOUND when absent or \Noselect. */
int lmdb_mbox_selectable(MDB_txn *txn, struct lmdb_shard *sh, const char *user, const char *name,
                         uint64_t *id_r, struct lmdb_mbox *rec_r);
int lmdb_mbox_put(struct lmdb_w *w, uint64_t id, const struct lmdb_mbox *rec,
                  const struct lmdb_kwtab *kw);
/* Keyword bit of name, adding it when add is set: -1 when absent (or the
 * table is full and add was set: *full_r). */
int lmdb_kw_index(struct lmdb_kwtab *kw, const char *name, bool add, bool *full_r);
/* Message records: msgs key id(8) uid(4); modseq and expunged keys
 * id(8) modseq(8) uid(4). */
void lmdb_msg_key(uint8_t key[12], uint64_t id, uint32_t uid);
void lmdb_seq_key(uint8_t key[20], uint64_t id, uint64_t modseq, uint32_t uid);
int lmdb_msg_get(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, uint32_t uid,
                 struct lmdb_msg *m);
/* Decode a msgs value of mailbox id and uid into *m: false when it is not
 * a record. An old record gets the EMAILID derived from its mailbox, UID
 * and body (stable while it stays; a copy or move stores it). */
bool lmdb_msg_decode(const MDB_val *v, uint64_t id, uint32_t uid, struct lmdb_msg *m);
int lmdb_msg_put(struct lmdb_w *w, uint64_t id, uint32_t uid, const struct lmdb_msg *m);
/*
 * A walk over mailbox id's message records in UID order from UID first,
 * inside txn (which outlives it):
 *   if ((rc = lmdb_msg_iter_open(&it, txn, sh, id, 0)) != 0) ... (an MDB error)
 *   while (lmdb_msg_iter_next(&it)) ... it.uid, it.v (valid until the next call)
 *   lmdb_msg_iter_close(&it); it.rc: 0 at the end, else the MDB error
 */
struct lmdb_msg_iter {
	MDB_cursor *cur;
	uint64_t id;
	uint8_t key[12];
	MDB_val k, v;
	bool started;
	uint32_t uid;
	int rc;
};
int lmdb_msg_iter_open(struct lmdb_msg_iter *it, MDB_txn *txn, struct lmdb_shard *sh, uint64_t id,
                       uint32_t first);
bool lmdb_msg_iter_next(struct lmdb_msg_iter *it);
void lmdb_msg_iter_close(struct lmdb_msg_iter *it);
int lmdb_seq_put(struct lmdb_w *w, MDB_dbi dbi, uint64_t id, uint64_t modseq, uint32_t uid,
                 const void *val, size_t vlen);
int lmdb_seq_del(struct lmdb_w *w, uint64_t id, uint64_t modseq, uint32_t uid);
int lmdb_unseen_set(struct lmdb_w *w, uint64_t id, uint32_t uid, bool unseen);
/* Remove a mailbox's messages and logs (delete, or before dropping it). */
int lmdb_mbox_purge(struct lmdb_w *w, uint64_t id);
uint32_t lmdb_next_uidvalidity(struct lmdb_w *w);
/* Create user/name with fresh id and UIDVALIDITY (parents not handled). */
int lmdb_mbox_create_one(struct lmdb_w *w, const char *user, const char *name, unsigned special_use,
                         uint64_t *id_r);

/* ---- lmdb_meta.c ---- */
int lmdb_op_meta_get(struct storage *st, const char *user, const char *mailbox, struct buf *out);
int lmdb_op_meta_update(struct storage *st, const char *user, const char *mailbox,
                        int (*fn)(const uint8_t *, size_t, struct buf *, void *), void *arg);
/* Drop mailbox id's metadata (with the mailbox). */
int lmdb_meta_del(struct lmdb_w *w, uint64_t id);

/* ---- lmdb_read.c ---- */
/* The mailbox record, or ROOST_ENOTFOUND once it was deleted (or renamed
 * over and re-created: ids are never reused). */
int lmdb_cur_rec(MDB_txn *txn, struct lmdb_mailbox *lm, struct lmdb_mbox *rec,
                 struct lmdb_kwtab *kw);
void lmdb_rec_out(struct msg_record *r, uint32_t uid, const struct lmdb_msg *m);

/* ---- lmdb_body.c ---- */
/* Drop one reference to body sha; the last one removes it (a body file
 * is then doomed in w, and removed after the commit). */
int lmdb_body_unref(struct lmdb_w *w, const uint8_t *sha);
/* Add one reference to body sha. When it has none yet the body is stored:
 * from file (a body file already written and synced, see lmdb_blob_write)
 * when not NULL, *file_used_r then true; else data/len when data_known;
 * else ROOST_EIO (a copy whose source body vanished). */
int lmdb_body_ref(struct lmdb_w *w, const uint8_t *sha, const uint8_t *data, size_t len,
                  bool data_known, const char *file, bool *file_used_r);

/* ---- lmdb_blob.c ---- */
/* Open <env>/blobs (after the databases): register this store and, when a
 * store that used the directory before crashed, remove the body files that
 * no record refers to (written, then never committed). */
int lmdb_blobs_open(struct lmdb_shard *sh);
void lmdb_blobs_close(struct lmdb_shard *sh);
/* Hold the directory for a delivery: no sweep runs (in any process) until
 * the matching lmdb_blob_release(), so a file written for a commit not yet
 * made is never taken for an orphan. May wait for a running sweep. */
void lmdb_blob_hold(struct lmdb_shard *sh);
void lmdb_blob_release(struct lmdb_shard *sh);
/* Write data as a new body file, synced (when the store fsyncs) before it
 * returns; name_r gets its name. The directory entry is synced by the
 * commit that refers to it (lmdb_blobs_sync()). Directory held. */
int lmdb_blob_write(struct lmdb_shard *sh, const uint8_t *sha, const uint8_t *data, size_t len,
                    char name_r[LMDB_BLOB_NAME_LEN + 1]);
/* Give the file name of shard from the same name in shard to (a hard link,
 * else a copy), as lmdb_blob_write(). Both directories held. */
int lmdb_blob_link(struct lmdb_shard *from, struct lmdb_shard *to, const char *name,
                   const uint8_t *data, size_t len);
/* fsync the blobs directory (when the store fsyncs): new names durable. */
int lmdb_blobs_sync(struct lmdb_shard *sh);
/* Remove a body file (no record refers to it any more). */
void lmdb_blob_unlink(struct lmdb_shard *sh, const char *name);
/* Map body file name (len bytes expected) into view_r: holdable, read by
 * the page cache, no transaction pinned. ROOST_ENOTFOUND when the file is
 * gone (its message was expunged meanwhile), ROOST_EIO when damaged. */
int lmdb_blob_view(struct lmdb_shard *sh, const char *name, uint64_t len, struct msg_view *view_r);
/* Body files no record refers to: removed when collect, else each written
 * to report (when not NULL) and counted in *n_r. ROOST_EINUSE when a
 * delivery holds the directory (in flight files are not orphans). */
int lmdb_blobs_sweep(struct lmdb_shard *sh, bool collect, struct buf *report, unsigned *n_r);
/* A files value: true when it is a well-formed name for body sha. */
bool lmdb_blob_name_valid(const MDB_val *v, const uint8_t *sha);
void lmdb_names_add(struct lmdb_names *l, const char *name);
void lmdb_names_free(struct lmdb_names *l);

/* ---- lmdb_expunge.c ---- */
/* Remove one message record (expunge or the source side of a move). */
int lmdb_msg_remove(struct lmdb_w *w, uint64_t id, uint32_t uid, const struct lmdb_msg *m,
                    uint64_t seq, int64_t now, struct lmdb_mbox *rec);
/* Drop expunge-log entries past the retention (bounded work per call). */
int lmdb_prune_expunged(struct lmdb_w *w, uint64_t id, struct lmdb_mbox *rec, int64_t now);

/* ---- lmdb_quota.c ---- */
/* Change user's usage by (bytes, messages). Call after the mailbox
 * records hold the change: a user without a usage record yet gets one
 * summed from them. */
int lmdb_quota_add(struct lmdb_w *w, const char *user, int64_t bytes, int64_t messages);
int lmdb_op_quota_get(struct storage *st, const char *user, struct storage_usage *usage_r);
/* `roost check`: every usage record against a recount of the user's
 * messages; mismatches written to report and counted in *problems_r. */
int lmdb_quota_check(MDB_txn *txn, struct lmdb_shard *sh, struct buf *report, unsigned *problems_r);
int lmdb_op_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                         struct storage_usage *after_r);

/* ---- ops ---- */
int lmdb_op_user_init(struct storage *st, const char *user);
int lmdb_op_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r);
int lmdb_op_create(struct storage *st, const char *user, const char *name, unsigned special_use);
int lmdb_op_delete(struct storage *st, const char *user, const char *name);
int lmdb_op_rename(struct storage *st, const char *user, const char *from, const char *to);
int lmdb_op_subscribe(struct storage *st, const char *user, const char *name, bool on);
int lmdb_op_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
                     uint32_t uidnext);
int lmdb_op_status(struct storage *st, const char *user, const char *name,
                   struct mailbox_status *status_r);
/* The \Recent boundary this process gave out for mailbox id, 0 when none
 * is waiting to be written (lmdb_recent.c). */
uint32_t lmdb_claim_boundary(struct lmdb_shard *sh, uint64_t id);
/* The status of mailbox id, or (id 0) of user's mailbox name, in a read
 * transaction of its own: ROOST_ENOTFOUND when it is gone or \Noselect.
 * Backs ops->status and ops->mailbox_status. */
int lmdb_status_read(struct lmdb_shard *sh, const char *user, const char *name, uint64_t id,
                     struct mailbox_status *status_r);

int lmdb_op_deliver(struct storage *st, const struct msg_input *msg,
                    struct delivery_target *targets, size_t n);
int lmdb_op_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                         struct mailbox **mb_r);
void lmdb_op_mailbox_close(struct mailbox *mb);
int lmdb_op_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r);
int lmdb_op_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r,
                    uint64_t *modseq_r);
int lmdb_op_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r);
int lmdb_op_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r);
int lmdb_op_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r);
int lmdb_op_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out);
int lmdb_op_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len);
int lmdb_op_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r);
int lmdb_op_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
                  struct store_result *res);
int lmdb_op_expunge(struct mailbox *mb, const uint32_t *uids, size_t n);
int lmdb_op_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
                 struct copy_result *res);
int lmdb_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r);
/* The shard's memo of changes-since answers (lmdb_changes.c): made at
 * shard_open(), freed at shard_close(). */
void lmdb_changes_memo_init(struct lmdb_shard *sh);
void lmdb_changes_memo_free(struct lmdb_shard *sh);
int lmdb_op_changes_since_nb(struct mailbox *mb, uint64_t modseq, size_t max,
                             struct mailbox_changes *changes_r);
int lmdb_op_check(struct storage *st, struct buf *report);
int lmdb_op_repair(struct storage *st, struct buf *report);
int lmdb_op_backup(struct storage *st, const char *dest, struct buf *report);

#endif
