#ifndef ROOST_PGSQL_IMPL_H
#define ROOST_PGSQL_IMPL_H

/*
 * The PostgreSQL backend: one database shared by any number of Roost nodes.
 *
 * Every operation is one transaction on a connection taken from a pool of
 * at most [server] workers connections (a worker blocks on the database,
 * never the event loop). Writes run at READ COMMITTED and take the
 * mailbox row's lock (SELECT ... FOR UPDATE) before they allocate UIDs or
 * MODSEQs, so the changes to one mailbox commit one after the other in
 * the order of their numbers, from whichever node; reads of several
 * statements run at REPEATABLE READ, one snapshot. A transaction that
 * deadlocks or fails to serialize is run again; one whose connection was
 * lost before COMMIT is run again once on a new connection; otherwise a
 * lost connection is ROOST_ETEMP and the next use reconnects.
 *
 * Each changing transaction also sends NOTIFY roost '<node> <user>\t<box>',
 * delivered at commit: one listener thread per process wakes the watchers
 * here of changes made by other nodes. A change to messages (delivery,
 * append, copy, move, flags, expunge) also names the mailbox's id and the
 * MODSEQ it took: '<node>/<id>/<modseq> <user>\t<box>' (pgsql_listen.c).
 */

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "roost/storage.h"
#include "roost/storage_impl.h"

#define PG_SCHEMA_VERSION 7
#define PG_CHANNEL "roost"

struct pg_conn {
	PGconn *conn;
	bool busy;
};

struct pg_store {
	struct storage base;
	char *dsn;
	uint64_t retention; /* seconds the expunge log keeps UIDs; 0 = forever */
	uint64_t node;      /* random, to skip our own notifications */

	/* The pool. lock guards conns[].busy, n_open and the listener start;
	 * a connection is used by the thread that took it, alone. */
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct pg_conn *conns;
	unsigned n_conns;

	/* Bumped (atomically) after every PG_WRITE transaction of this process
	 * and every notification heard from the others, before the sessions
	 * are woken: a read begun with seq at s sees every change this
	 * process knew of while seq was s. */
	uint64_t seq;

	/* Changes queries shared by the sessions of one mailbox
	 * (pgsql_changes.c): flights_lock guards the list and every flight
	 * on it; flights_cond is broadcast when one lands. */
	pthread_mutex_t flights_lock;
	pthread_cond_t flights_cond;
	struct pg_flights *flights;
	bool claim_batch; /* a batch of reserved claims is under way */

	/* Group commit of deliveries (pgsql_save.c): group_lock guards the
	 * queue and group_leaders; group_cond is broadcast when a group
	 * commits. The counters are atomic. */
	pthread_mutex_t group_lock;
	pthread_cond_t group_cond;
	struct pg_group_req *group_head, **group_tail;
	unsigned group_leaders;
	unsigned group_max; /* deliveries per transaction at most */
	uint64_t n_commits, n_writes;

	/* The listener (pgsql_listen.c). */
	pthread_t listener;
	bool listener_started;
	/* Set (under lock, then broadcast on listen_cond) once the listener
	 * is LISTENing or its first try failed: no transaction of ours runs
	 * before, so nothing another node commits after it goes unheard. */
	bool listen_ready;
	pthread_cond_t listen_cond;
	int stop_pipe[2];
};

#define PS(st) container_of((st), struct pg_store, base)

struct pg_mailbox {
	struct mailbox base;
	struct pg_store *ps;
	int64_t id;
	uint32_t uidvalidity;
	/* UIDNEXT as the last changes query of this handle saw it (0: none
	 * yet): the view holds no UID at or above it, so a claim need not
	 * reach past it. */
	uint32_t view_uidnext;
	/* the \Recent boundary that query saw: where a claim tries first */
	uint32_t view_recent;
	/* this handle reserved the next claim (pg_claim_reserve()) */
	bool reserved;
	/* mailbox_keywords() result, valid until the next call */
	char **kw_names;
	size_t kw_n;
};

#define PM(mb) container_of((mb), struct pg_mailbox, base)

/* ---- transactions (pgsql_conn.c) ---- */

enum pg_mode {
	PG_WRITE,      /* READ COMMITTED, synchronous commit */
	PG_READ,       /* REPEATABLE READ READ ONLY: one snapshot */
	PG_WRITE_LAZY, /* READ COMMITTED, commit not waited for: derived state
	                * that changes queries do not read (pgsql_changes.c) */
	PG_AUTO        /* no transaction block: fn runs one idempotent statement */
};

struct pg_txn {
	struct pg_store *ps;
	PGconn *conn;
	bool lost;  /* the connection broke */
	bool retry; /* deadlock or serialization failure: run again */
	bool notified;
	const char *begin; /* the BEGIN not sent yet: it goes with the first statement */
};

/* Parameters of one statement, as text (or binary where fmt is 1). */
#define PG_MAX_PARAMS 12
struct pg_params {
	int n;
	const char *v[PG_MAX_PARAMS];
	int len[PG_MAX_PARAMS];
	int fmt[PG_MAX_PARAMS];
	char num[PG_MAX_PARAMS][24];
};

void pg_p_int(struct pg_params *p, int64_t v);
void pg_p_str(struct pg_params *p, const char *s);
void pg_p_bin(struct pg_params *p, const void *data, size_t len);

typedef int pg_txn_fn(struct pg_txn *t, void *arg);

/* Run fn in one transaction of mode on a pooled connection, committing
 * when it returns 0 and rolling back otherwise; runs it again (fn must
 * reset what it returns) after a deadlock, a serialization failure or a
 * connection lost before the commit. Returns fn's result, or ROOST_ETEMP
 * when the database cannot be reached. */
int pg_run(struct pg_store *ps, enum pg_mode mode, pg_txn_fn *fn, void *arg);

/* Run one statement; *res_r (may be NULL when no rows are wanted) is the
 * result, cleared by the caller. binary: results in binary form. Returns
 * 0, ROOST_EEXISTS on a unique violation, ROOST_ETEMP (and t->lost or
 * t->retry set) or ROOST_EIO; the error is logged. */
int pg_exec(struct pg_txn *t, const char *sql, const struct pg_params *p, bool binary,
            PGresult **res_r);

/* pg_exec() of a query that finds one row: *res_r holds it, or
 * ROOST_ENOTFOUND (nothing to clear) when the query found none or several. */
int pg_exec_row(struct pg_txn *t, const char *sql, const struct pg_params *p, bool binary,
                PGresult **res_r);

/* pg_exec() and pg_exec_row() of a statement whose one parameter, $1, is
 * id (a row id: a mailbox's, a user's), results in text form. */
int pg_exec_id(struct pg_txn *t, const char *sql, int64_t id, PGresult **res_r);
int pg_exec_id_row(struct pg_txn *t, const char *sql, int64_t id, PGresult **res_r);

/* NOTIFY the other nodes of a change to (user, mailbox) at commit; an empty
 * mailbox name stands for every mailbox of the user. */
int pg_notify(struct pg_txn *t, const char *user, const char *mailbox);
/* pg_notify() of a change to mailbox id at modseq: other nodes stale only
 * that mailbox's shared changes queries and fetch it ahead of their
 * sessions (pgsql_listen.c). id or modseq 0: as pg_notify(). */
int pg_notify_id(struct pg_txn *t, const char *user, const char *mailbox, int64_t id,
                 uint64_t modseq);

int64_t pg_int(const PGresult *res, int row, int col);

/* Take a connection for one-off work outside pg_run (schema, check). */
int pg_conn_get(struct pg_store *ps, struct pg_conn **c_r);
void pg_conn_put(struct pg_store *ps, struct pg_conn *c);
int pg_connect(const char *dsn, PGconn **conn_r);

/* ---- schema (pgsql_schema.c) ---- */
int pg_schema_setup(struct pg_store *ps);
int pg_schema_check(struct pg_txn *t, struct buf *report);

/* ---- listener (pgsql_listen.c) ---- */
void pg_listen_start(struct pg_store *ps);
void pg_listen_stop(struct pg_store *ps);

static inline void
pg_seq_bump(struct pg_store *ps)
{
	__atomic_add_fetch(&ps->seq, 1, __ATOMIC_SEQ_CST);
}

static inline uint64_t
pg_seq(struct pg_store *ps)
{
	return __atomic_load_n(&ps->seq, __ATOMIC_SEQ_CST);
}

/* ---- ops ---- */
int pg_op_user_init(struct storage *st, const char *user);
int pg_op_quota_get(struct storage *st, const char *user, struct storage_usage *usage_r);
int pg_op_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                       struct storage_usage *after_r);
int pg_op_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r);
int pg_op_create(struct storage *st, const char *user, const char *name, unsigned special_use);
int pg_op_delete(struct storage *st, const char *user, const char *name);
int pg_op_rename(struct storage *st, const char *user, const char *from, const char *to);
int pg_op_subscribe(struct storage *st, const char *user, const char *name, bool on);
int pg_op_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
                   uint32_t uidnext);
int pg_op_status(struct storage *st, const char *user, const char *name,
                 struct mailbox_status *status_r);
int pg_op_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                       struct mailbox **mb_r);
void pg_op_mailbox_close(struct mailbox *mb);
int pg_op_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r);
int pg_status_fill(struct pg_txn *t, int64_t id, struct mailbox_status *s);

int pg_op_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
                  size_t n);
int pg_op_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r);
void pg_op_stats(struct storage *st, struct storage_stats *stats_r);
/* Deliveries per group commit: ROOST_PGSQL_MAX_BATCH (1 turns it off, for
 * benchmarks) or the default. */
unsigned pg_group_max(void);
/* Tests: deliveries waiting in the group-commit queue, and groups under
 * way (pgsql_save.c). */
void pg_group_state(struct storage *st, size_t *queued_r, unsigned *leaders_r);
int pg_op_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r);
int pg_op_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r);
int pg_op_claim_recent(struct mailbox *mb, uint32_t *first_r, uint32_t *next_r);
bool pg_op_claim_later(struct mailbox *mb);
int pg_op_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r);
int pg_op_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out);
int pg_op_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len);
int pg_op_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
                struct store_result *res);
int pg_op_expunge(struct mailbox *mb, const uint32_t *uids, size_t n);
int pg_op_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
               struct copy_result *res);
/* pgsql_changes.c: free the shared changes queries' state at close. */
void pg_flights_free(struct pg_store *ps);
/* \Recent claims of mailbox id in this process, one at a time: false
 * (and *below_r) when the boundary is known to be at or above uidnext
 * (0: unknown), nothing left to claim; true when the caller claims, then
 * calls pg_claim_end() with the boundary it left (0: unknown). */
bool pg_claim_begin(struct pg_store *ps, int64_t id, uint32_t uidnext, uint32_t *below_r);
void pg_claim_end(struct pg_store *ps, int64_t id, uint32_t below);
/* Reserve the next claim of mailbox id in this process for a handle whose
 * view reaches below uidnext with the boundary at recent: false when a
 * claim under way, made or reserved takes everything below uidnext, or
 * nothing is left. pg_claim_unreserve() drops it (the claim starts, or
 * the handle closes); meanwhile pg_claim_begin() of any handle whose
 * view ends at or below it finds nothing left. */
bool pg_claim_reserve(struct pg_store *ps, int64_t id, uint32_t uidnext, uint32_t recent);
void pg_claim_unreserve(struct pg_store *ps, int64_t id);
/* The claim reserved for mailbox id, made with every other reservation
 * of this process in one statement (pgsql_changes.c): 0 and the range it
 * took, or ROOST_EAGAIN (the row was held, nothing was left, the statement
 * failed): the caller claims alone. The reservation is gone either way. */
int pg_claim_batch(struct pg_store *ps, int64_t id, uint32_t *first_r, uint32_t *next_r);
int pg_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r);
/*
 * The listener heard that mailboxes ids[0..n) (distinct) changed on
 * another node at MODSEQs above sinces[]: flights of them started before
 * are stale from now on, and for each one watched[] here a flight from
 * its since starts, one query for all, which pg_prefetch_run() runs (call
 * it, after waking the sessions, whenever *pf_r is not NULL).
 */
struct pg_prefetch;
void pg_changes_heard(struct pg_store *ps, const int64_t *ids, const uint64_t *sinces,
                      const bool *watched, size_t n, struct pg_prefetch **pf_r);
void pg_prefetch_run(struct pg_store *ps, struct pg_prefetch **pf);
int pg_op_repair(struct storage *st, struct buf *report);
int pg_op_backup(struct storage *st, const char *dest, struct buf *report);
int pg_op_check(struct storage *st, struct buf *report);

/* Helpers shared by the op files. */
int pg_mbox_lock(struct pg_txn *t, int64_t id, bool *noselect_r);
int pg_mbox_lookup(struct pg_txn *t, const char *user, const char *name, bool lock, int64_t *id_r,
                   bool *noselect_r);
/* Index of keyword name in mailbox id's table, added when add is true;
 * -1 when absent (and not added); ROOST_ETOOBIG when the table is full. */
int pg_kw_index(struct pg_txn *t, int64_t id, const char *name, bool add, int *idx_r);

/* Helpers shared by the message op files (pgsql_message.c unless named). */

/* The columns pg_rec_fill() reads, in its order. */
#define REC_COLS "uid, flags, keywords, modseq, internal_date, size, emailid, save_date"
/* "{1,2,3}": a bigint[] parameter in text form, into b (reset first). */
void pg_int_array(struct buf *b, const uint32_t *v, size_t n);
void pg_int64_array(struct buf *b, const uint64_t *v, size_t n);
/* Bits of names in mailbox id's table (added when add). */
int pg_kw_bits(struct pg_txn *t, int64_t id, const char *const *names, size_t n, bool add,
               uint64_t *bits_r);
/* A message record from row of a query selecting REC_COLS. */
void pg_rec_fill(struct msg_record *r, const PGresult *res, int row);
/* The mailbox row as a reader sees it; ROOST_ENOTFOUND once deleted. */
int pg_mbox_row(struct pg_txn *t, int64_t id, uint64_t *hms_r, uint32_t *uidnext_r,
                uint64_t *floor_r);
/* pgsql_save.c: drop the bodies no message refers to any more. */
int pg_bodies_collect(struct pg_txn *t);
/* ---- delivery (pgsql_save.c, pgsql_save_batch.c) ---- */

#define PG_SHA_LEN 32

/* One mailbox a delivery goes to, and what it took there. */
struct pg_dtarget {
	const char *user;
	const char *name;
	int64_t id; /* 0: look up by user and name */
	int result;
	uint32_t uid;
	uint32_t uidvalidity;
	int64_t modseq;
	uint64_t kw;
	bool stored; /* its record, body reference and notification are in */
};

/* One delivery: the message and its targets. */
struct pg_deliver_arg {
	const struct msg_input *msg;
	size_t *order; /* targets by (user, mailbox): one lock order for all */
	const uint8_t *data;
	size_t len;
	uint8_t sha[PG_SHA_LEN];
	int64_t idate;
	struct pg_dtarget *targets;
	size_t n;
};

/* The users and the mailbox names of a's targets, in target order, as
 * two text[] parameters in text form ("{...}", built in users and names,
 * which start empty and must outlive the statement): every target, or
 * with pending only those that took a UID and are not stored yet. */
void pg_p_target_names(struct pg_params *p, const struct pg_deliver_arg *a, bool pending,
                       struct buf *users, struct buf *names);
/* The message's columns of a record, six parameters: its flags, internal
 * date, size, SHA-256, save date (now) and parse cache. */
void pg_p_record(struct pg_params *p, const struct pg_deliver_arg *a);
/* "{...}" of signed 64-bit values, a bigint[] parameter in text form,
 * into b (reset first). */
void pg_sint64_array(struct buf *b, const int64_t *v, size_t n);
/* pgsql_save_batch.c: whether a's targets fit the batch statements;
 * lock every target's mailbox and take its UID in one statement; or that
 * and store the message too. The targets left with result 1 go the slow
 * way. Return 0 or pg_exec()'s error. */
bool pg_batch_fits(const struct pg_deliver_arg *a);
int pg_alloc_batch(struct pg_txn *t, struct pg_deliver_arg *a);
int pg_store_batch(struct pg_txn *t, struct pg_deliver_arg *a);

/* pgsql_expunge.c: remove uids of mailbox id (locked by the caller),
 * logging them at the next MODSEQ (*modseq_r, when any went); *gone_r is
 * how many went. */
int pg_remove_uids(struct pg_txn *t, int64_t id, const uint32_t *uids, size_t n, int64_t *gone_r,
                   uint64_t *modseq_r);
/* pgsql_meta.c: RFC 5464 metadata records. */
int pg_op_meta_get(struct storage *st, const char *user, const char *mailbox, struct buf *out);
int pg_op_meta_update(struct storage *st, const char *user, const char *mailbox,
                      int (*fn)(const uint8_t *, size_t, struct buf *, void *), void *arg);

#endif
