/*
 * Messages of the PostgreSQL backend: the records, keywords, \Recent
 * claims, reading and the parse cache, and the helpers the other message
 * files share. Delivery and append are in pgsql_save.c, flag changes in
 * pgsql_flags.c, expunge in pgsql_expunge.c, copy and move in
 * pgsql_copy.c, "what changed since" in pgsql_changes.c.
 *
 * UIDs and MODSEQs come from the mailbox row, read and advanced under its
 * row lock in the transaction that writes the messages, so they are
 * allocated without gaps (a rolled-back transaction gives its numbers
 * back) and commit in ascending order whatever node runs them.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

/* "{1,2,3}": a bigint[] parameter in text form. */
void
pg_int_array(struct buf *b, const uint32_t *v, size_t n)
{
	buf_reset(b);
	buf_append_byte(b, '{');
	for (size_t i = 0; i < n; i++)
		buf_printf(b, i == 0 ? "%u" : ",%u", v[i]);
	buf_append_str(b, "}");
}

void
pg_int64_array(struct buf *b, const uint64_t *v, size_t n)
{
	buf_reset(b);
	buf_append_byte(b, '{');
	for (size_t i = 0; i < n; i++)
		buf_printf(b, i == 0 ? "%llu" : ",%llu", (unsigned long long)v[i]);
	buf_append_str(b, "}");
}

int
pg_kw_index(struct pg_txn *t, int64_t id, const char *name, bool add, int *idx_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc, n;

	*idx_r = -1;
	pg_p_int(&p, id);
	pg_p_str(&p, name);
	rc =
	    pg_exec(t, "SELECT idx FROM keywords WHERE mailbox_id = $1 AND lower(name) = lower($2)",
	            &p, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 1) {
		*idx_r = (int)pg_int(res, 0, 0);
		PQclear(res);
		return 0;
	}
	PQclear(res);
	if (!add)
		return 0;
	/* The caller holds the mailbox's row lock: no one adds meanwhile. */
	p.n = 1;
	rc = pg_exec(t, "SELECT count(*) FROM keywords WHERE mailbox_id = $1", &p, false, &res);
	if (rc != 0)
		return rc;
	n = (int)pg_int(res, 0, 0);
	PQclear(res);
	if (n >= STORAGE_MAX_KEYWORDS)
		return ROOST_ETOOBIG;
	pg_p_str(&p, name);
	pg_p_int(&p, n);
	rc = pg_exec(t, "INSERT INTO keywords (mailbox_id, name, idx) VALUES ($1, $2, $3)", &p,
	             false, NULL);
	if (rc == 0)
		*idx_r = n;
	return rc;
}

/* Bits of names in mailbox id's table (added when add). */
int
pg_kw_bits(struct pg_txn *t, int64_t id, const char *const *names, size_t n, bool add,
           uint64_t *bits_r)
{
	*bits_r = 0;
	for (size_t i = 0; i < n; i++) {
		int idx, rc = pg_kw_index(t, id, names[i], add, &idx);

		if (rc != 0)
			return rc;
		if (idx >= 0)
			*bits_r |= 1ULL << idx;
	}
	return 0;
}

void
pg_rec_fill(struct msg_record *r, const PGresult *res, int row)
{
	r->uid = (uint32_t)pg_int(res, row, 0);
	r->flags = (uint32_t)pg_int(res, row, 1);
	r->keywords = (uint64_t)pg_int(res, row, 2);
	r->modseq = (uint64_t)pg_int(res, row, 3);
	r->internal_date = pg_int(res, row, 4);
	r->size = (uint64_t)pg_int(res, row, 5);
	r->emailid = (uint64_t)pg_int(res, row, 6);
	r->save_date = pg_int(res, row, 7); /* NULL (rows of before): 0 */
}

/* The mailbox row as a reader sees it; ROOST_ENOTFOUND once deleted. */
int
pg_mbox_row(struct pg_txn *t, int64_t id, uint64_t *hms_r, uint32_t *uidnext_r, uint64_t *floor_r)
{
	PGresult *res;
	int rc = pg_exec_id_row(t,
	                        "SELECT highestmodseq, uidnext, expunge_floor FROM mailboxes WHERE "
	                        "id = $1 AND NOT noselect",
	                        id, &res);

	if (rc != 0)
		return rc;
	*hms_r = (uint64_t)pg_int(res, 0, 0);
	if (uidnext_r != NULL)
		*uidnext_r = (uint32_t)pg_int(res, 0, 1);
	if (floor_r != NULL)
		*floor_r = (uint64_t)pg_int(res, 0, 2);
	PQclear(res);
	return 0;
}

struct records_arg {
	int64_t id;
	struct msg_record *recs;
	size_t n;
	uint64_t hms;
};

static int
t_records(struct pg_txn *t, void *arg)
{
	struct records_arg *a = arg;
	PGresult *res;
	int rc;

	free(a->recs);
	a->recs = NULL;
	a->n = 0;
	if ((rc = pg_mbox_row(t, a->id, &a->hms, NULL, NULL)) != 0)
		return rc;
	rc = pg_exec_id(t, "SELECT " REC_COLS " FROM messages WHERE mailbox_id = $1 ORDER BY uid",
	                a->id, &res);
	if (rc != 0)
		return rc;
	a->n = (size_t)PQntuples(res);
	a->recs = xcalloc(a->n + 1, sizeof(*a->recs));
	for (size_t i = 0; i < a->n; i++)
		pg_rec_fill(&a->recs[i], res, (int)i);
	PQclear(res);
	return 0;
}

int
pg_op_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	struct records_arg a = {.id = PM(mb)->id};
	int rc = pg_run(PM(mb)->ps, PG_READ, t_records, &a);

	/* the view may now hold UIDs a changes query has not shown */
	PM(mb)->view_uidnext = 0;
	if (rc != 0) {
		free(a.recs);
		return rc;
	}
	*recs_r = a.recs;
	*n_r = a.n;
	if (modseq_r != NULL)
		*modseq_r = a.hms;
	return 0;
}

static int
t_keywords(struct pg_txn *t, void *arg)
{
	struct pg_mailbox *pm = arg;
	PGresult *res;
	int rc = pg_exec_id(t, "SELECT idx, name FROM keywords WHERE mailbox_id = $1 ORDER BY idx",
	                    pm->id, &res);

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < pm->kw_n; i++)
		free(pm->kw_names[i]);
	pm->kw_n = 0;
	pm->kw_names = xreallocarray(pm->kw_names, (size_t)PQntuples(res) + 1, sizeof(char *));
	for (int i = 0; i < PQntuples(res); i++) {
		/* indexes are 0..n-1, given in order under the mailbox lock */
		if (pg_int(res, i, 0) != i)
			break;
		pm->kw_names[pm->kw_n++] = xstrdup(PQgetvalue(res, i, 1));
	}
	PQclear(res);
	return 0;
}

int
pg_op_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	struct pg_mailbox *pm = PM(mb);
	int rc = pg_run(pm->ps, PG_AUTO, t_keywords, pm);

	if (rc != 0)
		return rc;
	*names_r = (const char *const *)pm->kw_names;
	*n_r = pm->kw_n;
	return 0;
}

struct claim_arg {
	int64_t id;
	uint32_t first;   /* the boundary as the read saw it */
	uint32_t uidnext; /* as the read saw it */
	bool moved;       /* the swap found another boundary */
	bool nowait;      /* skip the row when another transaction holds it */
};

/* Where the \Recent boundary and UIDNEXT are now. */
static int
t_claim_read(struct pg_txn *t, void *arg)
{
	struct claim_arg *a = arg;
	PGresult *res;
	int rc = pg_exec_id_row(
	    t, "SELECT recent_first, uidnext FROM mailboxes WHERE id = $1 AND NOT noselect", a->id,
	    &res);

	if (rc != 0)
		return rc;
	a->first = (uint32_t)pg_int(res, 0, 0);
	a->uidnext = (uint32_t)pg_int(res, 0, 1);
	PQclear(res);
	return 0;
}

/*
 * Move the boundary from a->first to UIDNEXT, only if it is still at
 * a->first (the row's lock, taken by the UPDATE, makes that a compare and
 * swap): one round trip, its commit not waited for. Two statements in one
 * simple query are one implicit transaction, for which SET LOCAL holds;
 * the numbers are ours, not a client's, so they go into the text.
 */
static int
t_claim_swap(struct pg_txn *t, void *arg)
{
	struct claim_arg *a = arg;
	PGresult *res;
	char sql[320];
	int rc;

	if (a->nowait)
		snprintf(
		    sql, sizeof(sql),
		    "SET LOCAL synchronous_commit = off; UPDATE mailboxes SET recent_first = "
		    "uidnext WHERE id = (SELECT id FROM mailboxes WHERE id = %lld AND "
		    "recent_first = %u AND NOT noselect FOR UPDATE SKIP LOCKED) RETURNING uidnext",
		    (long long)a->id, a->first);
	else
		snprintf(sql, sizeof(sql),
		         "SET LOCAL synchronous_commit = off; UPDATE mailboxes SET recent_first = "
		         "uidnext WHERE id = %lld AND recent_first = %u AND NOT noselect RETURNING "
		         "uidnext",
		         (long long)a->id, a->first);
	if ((rc = pg_exec(t, sql, NULL, false, &res)) != 0)
		return rc;
	a->moved = PQntuples(res) != 1;
	if (!a->moved)
		a->uidnext = (uint32_t)pg_int(res, 0, 0);
	PQclear(res);
	return 0;
}

#define CLAIM_TRIES 16

/*
 * A claim is derived state: its commit is not waited for (a claim lost
 * in a database crash shows a message as \Recent once more).
 *
 * A delivery wakes every session of the mailbox, on every node, and each
 * one asks what changed, then claims; the first takes the new UIDs and the
 * others find nothing left. Claims of one mailbox in this process go one
 * at a time (pg_claim_begin()), and each tells the next where the
 * boundary is now: a session whose view ends below it (pm->view_uidnext,
 * from its last changes query) has nothing left to claim and asks no one.
 * Otherwise one unlocked read tells whether anything is left, and only
 * then does a compare and swap take it (t_claim_swap()). A claim that found nothing
 * left at some instant is one a locked claim could have made then; what
 * came after is claimed by the next sync, here or in another session.
 *
 * A claim reserved by pg_op_claim_later() is made after its session told
 * the client of the new messages, with the other reservations of this
 * process in one statement (pg_claim_batch()), maybe while the next
 * delivery holds the mailbox row until its commit (a WAL flush, tens of
 * milliseconds: the bench saw claims wait so, holding the workers the next
 * wake-up needed). Should the batch not take it, the claim alone skips a
 * held row too, and a boundary still where the skipped swap left it says
 * so (ROOST_EAGAIN).
 */
int
pg_op_claim_recent(struct mailbox *mb, uint32_t *first_r, uint32_t *next_r)
{
	struct pg_mailbox *pm = PM(mb);
	struct claim_arg a = {.id = pm->id, .nowait = pm->reserved};
	bool readonly = (mb->flags & MAILBOX_READONLY) != 0;
	uint32_t below, tried = 0;
	int rc = 0, tries = 0;
	bool guessed = false;

	if (pm->reserved) {
		pm->reserved = false;
		if (pg_claim_batch(pm->ps, pm->id, first_r, next_r) == 0) {
			pm->view_recent = *next_r;
			return 0;
		}
	}
	if (!readonly && !pg_claim_begin(pm->ps, pm->id, pm->view_uidnext, &below)) {
		*first_r = *next_r = below;
		return 0;
	}
	/* The last changes query saw the boundary below UIDNEXT: try the swap
	 * from there at once, without reading it again first. */
	if (!readonly && pm->view_uidnext != 0 && pm->view_recent < pm->view_uidnext) {
		a.first = tried = pm->view_recent;
		rc = pg_run(pm->ps, PG_AUTO, t_claim_swap, &a);
		guessed = rc != 0 || !a.moved;
	}
	while (!guessed) {
		rc = pg_run(pm->ps, PG_AUTO, t_claim_read, &a);
		if (rc != 0 || readonly || a.first == a.uidnext)
			break;
		if (a.nowait && a.first == tried) {
			rc = ROOST_EAGAIN; /* held, not moved */
			break;
		}
		tried = a.first;
		rc = pg_run(pm->ps, PG_AUTO, t_claim_swap, &a);
		if (rc != 0 || !a.moved || ++tries >= CLAIM_TRIES)
			break;
	}
	if (rc == 0 && !readonly && !a.moved)
		pm->view_recent = a.uidnext; /* the boundary now */
	if (rc == 0 && (readonly || a.moved))
		a.uidnext = a.first; /* nothing claimed */
	if (!readonly)
		pg_claim_end(pm->ps, pm->id, rc == 0 ? a.uidnext : 0);
	if (rc != 0)
		return rc;
	*first_r = a.first;
	*next_r = a.uidnext;
	return 0;
}

bool
pg_op_claim_later(struct mailbox *mb)
{
	struct pg_mailbox *pm = PM(mb);

	if ((mb->flags & MAILBOX_READONLY) != 0)
		return false;
	if (!pm->reserved)
		pm->reserved = pg_claim_reserve(pm->ps, pm->id, pm->view_uidnext, pm->view_recent);
	return pm->reserved;
}

struct read_arg {
	int64_t id;
	uint32_t uid;
	bool cache;
	PGresult *res;
};

static int
t_read(struct pg_txn *t, void *arg)
{
	struct read_arg *a = arg;
	struct pg_params p = {.n = 0};

	PQclear(a->res);
	a->res = NULL;
	pg_p_int(&p, a->id);
	pg_p_int(&p, a->uid);
	return pg_exec(t,
	               a->cache ? "SELECT cache FROM messages WHERE mailbox_id = $1 AND uid = $2 "
	                          "AND cache IS NOT NULL"
	                        : "SELECT b.data FROM messages g JOIN bodies b ON b.sha = g.sha "
	                          "WHERE g.mailbox_id = $1 AND g.uid = $2",
	               &p, true, &a->res);
}

static void
view_release(struct msg_view *view)
{
	PQclear(view->priv[0]);
	view->priv[0] = NULL;
}

/* The view is the query's result, private to this caller: holdable. */
int
pg_op_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	struct read_arg a = {.id = PM(mb)->id, .uid = uid};
	int rc = pg_run(PM(mb)->ps, PG_AUTO, t_read, &a);

	if (rc != 0) {
		PQclear(a.res);
		return rc;
	}
	if (PQntuples(a.res) != 1) {
		PQclear(a.res);
		return ROOST_ENOTFOUND;
	}
	view_r->data = (const uint8_t *)PQgetvalue(a.res, 0, 0);
	view_r->len = (size_t)PQgetlength(a.res, 0, 0);
	view_r->holdable = true;
	view_r->priv[0] = a.res;
	view_r->release = view_release;
	return 0;
}

int
pg_op_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	struct read_arg a = {.id = PM(mb)->id, .uid = uid, .cache = true};
	int rc = pg_run(PM(mb)->ps, PG_AUTO, t_read, &a);

	if (rc == 0 && PQntuples(a.res) != 1)
		rc = ROOST_ENOTFOUND;
	if (rc == 0) {
		buf_reset(out);
		if (buf_append(out, PQgetvalue(a.res, 0, 0), (size_t)PQgetlength(a.res, 0, 0)) != 0)
			rc = ROOST_ETOOBIG;
	}
	PQclear(a.res);
	return rc;
}

struct cache_arg {
	int64_t id;
	uint32_t uid;
	const void *data;
	size_t len;
};

static int
t_cache_set(struct pg_txn *t, void *arg)
{
	struct cache_arg *a = arg;
	struct pg_params p = {.n = 0};

	pg_p_int(&p, a->id);
	pg_p_int(&p, a->uid);
	pg_p_bin(&p, a->data, a->len);
	return pg_exec(t, "UPDATE messages SET cache = $3 WHERE mailbox_id = $1 AND uid = $2", &p,
	               false, NULL);
}

int
pg_op_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	struct cache_arg a = {.id = PM(mb)->id, .uid = uid, .data = data, .len = len};

	return pg_run(PM(mb)->ps, PG_WRITE_LAZY, t_cache_set, &a);
}
