/*
 * "What changed since MODSEQ m" on the PostgreSQL backend: changed
 * records and expunged UIDs, the latter marked incomplete when m is below
 * the expunge floor (the log was pruned past it).
 *
 * A delivery wakes every session of the mailbox at once, and each asks
 * this (IMAP IDLE and NOOP, JMAP push): a thousand sessions over fifty
 * mailboxes made a thousand queries, eight at a time on the pool, and the
 * last session heard of its mail after 125 query times. Sessions of one
 * mailbox in this process share their queries instead. A query (a
 * "flight") notes ps->seq when it starts; a caller may take the result of
 * one that started while seq was what the caller sees now, running or
 * landed: no write of this process and no notification from another node
 * came since, so it holds every change the caller can know of, as a query
 * of its own would. Otherwise the caller joins the next flight, which
 * starts as soon as the running one lands, from the lowest MODSEQ of its
 * callers; each caller keeps the rows above its own MODSEQ.
 *
 * A notification from another node that names its mailbox (a delivery's:
 * pgsql_listen.c) moves only that mailbox's epoch, not seq: fifty
 * deliveries heard at once no longer make every mailbox's sessions query
 * again behind the flights the first ones started. For the mailboxes
 * watched here, the listener starts one flight for all of them, from just
 * below the MODSEQ the notification carried, before it wakes their
 * sessions (pg_changes_prefetch()): a session that was up to date finds
 * its answer there, or on its way, and asks nothing of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/xalloc.h"

/* One query's outcome, shared by its callers. */
struct flight {
	uint64_t since; /* the lowest of its callers' */
	uint64_t seq;   /* ps->seq when it started */
	uint64_t epoch; /* the mailbox's epoch when it started */
	int refs;       /* callers attached, the runner included */
	bool started;
	bool done;
	int rc;
	uint64_t highestmodseq;
	uint32_t uidnext;
	uint32_t recent_first;
	uint32_t uidvalidity; /* the mailbox row's */
	uint64_t floor;
	struct msg_record *changed; /* by UID, each with its MODSEQ */
	size_t n_changed;
	uint32_t *expunged; /* by UID */
	uint64_t *expunged_emailids;
	uint64_t *expunged_modseqs;
	size_t n_expunged;
};

/* The flights of one mailbox: at most one running, one waiting for it,
 * and the last landed, kept while seq stays where it started. */
struct pg_flights {
	struct pg_flights *next;
	int64_t id;
	int users;      /* callers inside pg_op_changes_since() or a claim */
	uint64_t epoch; /* notifications heard naming the mailbox */
	struct flight *running;
	struct flight *waiting;
	struct flight *last;
	bool claiming;          /* a \Recent claim is under way */
	uint32_t claiming_upto; /* it takes every UID below (0: unknown) */
	uint32_t claimed_below; /* every UID below is claimed (0: unknown) */
	bool reserved;          /* a handle will claim everything below: */
	uint32_t reserved_upto; /* (it holds one of users meanwhile) */
	bool batched;           /* in the batch of claims under way */
	bool held;              /* the batch took [held_first, held_next) */
	uint32_t held_first, held_next;
};

/* Mailboxes whose last flight is kept at most (the others' is dropped). */
#define FLIGHTS_KEPT 1024

static void
flight_unref(struct flight *f)
{
	if (--f->refs > 0)
		return;
	free(f->changed);
	free(f->expunged);
	free(f->expunged_emailids);
	free(f->expunged_modseqs);
	free(f);
}

struct changes_arg {
	int64_t id;
	struct flight *f;
};

/* The column saying what a row is: the one after REC_COLS (eight). */
#define KIND_COL 8
#define KIND_COL_SQL "9"

/*
 * The rows [first, end) of a changes query into f: the first is the
 * mailbox row (kind 0, its UIDVALIDITY fifth), the others changed records
 * (kind 1) then expunged UIDs (kind 2). ROOST_ENOTFOUND when the mailbox
 * row is missing.
 */
static int
flight_fill(struct flight *f, const PGresult *res, int first, int end)
{
	size_t n_changed = 0, n_expunged = 0;

	if (first >= end || pg_int(res, first, KIND_COL) != 0)
		return ROOST_ENOTFOUND;
	f->highestmodseq = (uint64_t)pg_int(res, first, 0);
	f->uidnext = (uint32_t)pg_int(res, first, 1);
	f->floor = (uint64_t)pg_int(res, first, 2);
	f->recent_first = (uint32_t)pg_int(res, first, 3);
	f->uidvalidity = (uint32_t)pg_int(res, first, 4);
	for (int i = first + 1; i < end; i++) {
		if (pg_int(res, i, KIND_COL) == 1)
			n_changed++;
		else
			n_expunged++;
	}
	free(f->changed);
	free(f->expunged);
	free(f->expunged_emailids);
	free(f->expunged_modseqs);
	f->n_changed = n_changed;
	f->changed = xcalloc(n_changed + 1, sizeof(*f->changed));
	f->n_expunged = n_expunged;
	f->expunged = xcalloc(n_expunged + 1, sizeof(*f->expunged));
	f->expunged_emailids = xcalloc(n_expunged + 1, sizeof(*f->expunged_emailids));
	f->expunged_modseqs = xcalloc(n_expunged + 1, sizeof(*f->expunged_modseqs));
	for (size_t i = 0; i < n_changed; i++)
		pg_rec_fill(&f->changed[i], res, (int)(first + 1 + i));
	for (size_t i = 0; i < n_expunged; i++) {
		int row = (int)(first + 1 + n_changed + i);

		f->expunged[i] = (uint32_t)pg_int(res, row, 0);
		f->expunged_emailids[i] = (uint64_t)pg_int(res, row, 1);
		f->expunged_modseqs[i] = (uint64_t)pg_int(res, row, 2);
	}
	return 0;
}

/*
 * One statement, so one snapshot without a transaction block and one round
 * trip (BEGIN, three SELECTs and COMMIT were five). The last column says
 * what a row is: 0 the mailbox row (HIGHESTMODSEQ, UIDNEXT, the expunge
 * floor and the \Recent boundary in the first four), 1 a changed record
 * (REC_COLS), 2 an expunged UID, its EMAILID and MODSEQ.
 */
static int
t_changes(struct pg_txn *t, void *arg)
{
	struct changes_arg *a = arg;
	struct flight *f = a->f;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_int(&p, a->id);
	pg_p_int(&p, (int64_t)f->since);
	rc = pg_exec(t,
	             "SELECT highestmodseq, uidnext, expunge_floor, recent_first, uidvalidity, 0, "
	             "0, 0, 0 FROM mailboxes WHERE id = $1 AND NOT noselect "
	             "UNION ALL SELECT " REC_COLS ", 1 FROM messages WHERE mailbox_id = $1 AND "
	             "modseq > $2 "
	             "UNION ALL SELECT uid, coalesce(emailid, 0), modseq, 0, 0, 0, 0, 0, 2 FROM "
	             "expunged WHERE mailbox_id = $1 AND modseq > $2 "
	             "ORDER BY " KIND_COL_SQL ", 1",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	rc = flight_fill(f, res, 0, PQntuples(res));
	PQclear(res);
	return rc;
}

/* The caller's share of a landed flight: the rows above its MODSEQ.
 * A mailbox deleted with children keeps its id as their \Noselect parent
 * and is given it back, under a new UIDVALIDITY, when created again: a
 * handle of the old one (uidvalidity) is gone, its messages with it. */
static int
flight_take(const struct flight *f, uint32_t uidvalidity, uint64_t since,
            struct mailbox_changes *ch)
{
	size_t k = 0;

	if (f->rc != 0)
		return f->rc;
	if (f->uidvalidity != uidvalidity)
		return ROOST_ENOTFOUND;
	ch->highestmodseq = f->highestmodseq;
	ch->uidnext = f->uidnext;
	ch->expunged_complete = since >= f->floor;
	ch->changed = xcalloc(f->n_changed + 1, sizeof(*ch->changed));
	for (size_t i = 0; i < f->n_changed; i++)
		if (f->changed[i].modseq > since)
			ch->changed[k++] = f->changed[i];
	ch->n_changed = k;
	ch->expunged = xcalloc(f->n_expunged + 1, sizeof(*ch->expunged));
	ch->expunged_emailids = xcalloc(f->n_expunged + 1, sizeof(*ch->expunged_emailids));
	k = 0;
	for (size_t i = 0; i < f->n_expunged; i++) {
		if (f->expunged_modseqs[i] > since) {
			ch->expunged[k] = f->expunged[i];
			ch->expunged_emailids[k] = f->expunged_emailids[i];
			k++;
		}
	}
	ch->n_expunged = k;
	return 0;
}

/* f, the running flight of e, is done: the waiting one is next, run by
 * the first of its callers to wake. flights_lock held. */
static void
flight_land(struct pg_store *ps, struct pg_flights *e, struct flight *f)
{
	f->done = true;
	e->running = e->waiting;
	e->waiting = NULL;
	if (f->rc == 0) {
		if (f->recent_first > e->claimed_below)
			e->claimed_below = f->recent_first;
		if (e->last != NULL)
			flight_unref(e->last);
		f->refs++;
		e->last = f;
	}
	pthread_cond_broadcast(&ps->flights_cond);
}

/* Called with flights_lock held; returns with it held. Runs f, the
 * mailbox's running flight, and lands it: the waiting flight, if any, is
 * next, run by the first of its callers to wake. */
static void
flight_run(struct pg_store *ps, struct pg_flights *e, struct flight *f)
{
	struct changes_arg a = {.id = e->id, .f = f};

	f->started = true;
	f->seq = pg_seq(ps);
	f->epoch = e->epoch;
	pthread_mutex_unlock(&ps->flights_lock);
	f->rc = pg_run(ps, PG_AUTO, t_changes, &a);
	pthread_mutex_lock(&ps->flights_lock);
	flight_land(ps, e, f);
}

/* Free the entries no caller is in whose last flight is stale (seq moved
 * on), and any unused ones past FLIGHTS_KEPT. */
static void
flights_sweep(struct pg_store *ps, uint64_t seq)
{
	size_t kept = 0;

	for (struct pg_flights **pp = &ps->flights; *pp != NULL;) {
		struct pg_flights *e = *pp;

		if (e->users == 0 && (e->last == NULL || e->last->seq != seq ||
		                      e->last->epoch != e->epoch || kept >= FLIGHTS_KEPT)) {
			*pp = e->next;
			if (e->last != NULL)
				flight_unref(e->last);
			free(e);
			continue;
		}
		kept++;
		pp = &e->next;
	}
}

/* The entry of mailbox id, made when absent; flights_lock held. */
static struct pg_flights *
flights_get(struct pg_store *ps, int64_t id)
{
	struct pg_flights *e;

	for (e = ps->flights; e != NULL && e->id != id; e = e->next)
		;
	if (e == NULL) {
		e = xcalloc(1, sizeof(*e));
		e->id = id;
		e->next = ps->flights;
		ps->flights = e;
	}
	e->users++;
	return e;
}

static void
flights_put(struct pg_store *ps, struct pg_flights *e)
{
	e->users--;
	flights_sweep(ps, pg_seq(ps));
}

/* A flight the caller may take: started (or to start) with seq where the
 * caller sees it, from a MODSEQ at or below the caller's. */
static bool
flight_fits(const struct flight *f, uint64_t seq, uint64_t epoch, uint64_t since)
{
	return f != NULL && f->started && f->seq == seq && f->epoch == epoch && f->since <= since;
}

int
pg_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r)
{
	struct pg_mailbox *pm = PM(mb);
	struct pg_store *ps = pm->ps;
	struct pg_flights *e;
	struct flight *f;
	uint64_t seq;
	int rc;

	memset(changes_r, 0, sizeof(*changes_r));
	pthread_mutex_lock(&ps->flights_lock);
	seq = pg_seq(ps);
	e = flights_get(ps, pm->id);
	if (flight_fits(e->last, seq, e->epoch, modseq)) {
		f = e->last;
	} else if (flight_fits(e->running, seq, e->epoch, modseq)) {
		f = e->running;
	} else if (e->running == NULL) {
		f = e->running = xcalloc(1, sizeof(*f));
		f->since = modseq;
	} else {
		if (e->waiting == NULL) {
			e->waiting = xcalloc(1, sizeof(*e->waiting));
			e->waiting->since = modseq;
		}
		f = e->waiting;
		if (modseq < f->since)
			f->since = modseq;
	}
	f->refs++;
	while (!f->done) {
		if (e->running == f && !f->started)
			flight_run(ps, e, f);
		else
			pthread_cond_wait(&ps->flights_cond, &ps->flights_lock);
	}
	rc = flight_take(f, pm->uidvalidity, modseq, changes_r);
	pm->view_uidnext = rc == 0 ? f->uidnext : 0;
	pm->view_recent = rc == 0 ? f->recent_first : 0;
	flight_unref(f);
	flights_put(ps, e);
	pthread_mutex_unlock(&ps->flights_lock);
	if (rc != 0)
		mailbox_changes_free(changes_r);
	return rc;
}

bool
pg_claim_begin(struct pg_store *ps, int64_t id, uint32_t uidnext, uint32_t *below_r)
{
	struct pg_flights *e;

	pthread_mutex_lock(&ps->flights_lock);
	e = flights_get(ps, id);
	/* A claim under way that takes everything below our UIDNEXT leaves
	 * nothing for us: as if we came after it, without holding a worker
	 * for its round trip. (Should it fail, its UIDs are claimed by a
	 * later sync, here or elsewhere.) */
	while (e->claiming && !(uidnext != 0 && e->claiming_upto >= uidnext))
		pthread_cond_wait(&ps->flights_cond, &ps->flights_lock);
	if (e->claiming) {
		*below_r = e->claiming_upto;
		flights_put(ps, e);
		pthread_mutex_unlock(&ps->flights_lock);
		return false;
	}
	/* Likewise a claim reserved: the handle that holds it claims later
	 * (never waited for here: its claim waits for a worker). */
	if (e->reserved && uidnext != 0 && e->reserved_upto >= uidnext) {
		*below_r = e->reserved_upto;
		flights_put(ps, e);
		pthread_mutex_unlock(&ps->flights_lock);
		return false;
	}
	if (uidnext != 0 && e->claimed_below >= uidnext) {
		*below_r = e->claimed_below;
		flights_put(ps, e);
		pthread_mutex_unlock(&ps->flights_lock);
		return false;
	}
	e->claiming = true; /* the entry stays: users counts the claimer */
	e->claiming_upto = uidnext;
	pthread_mutex_unlock(&ps->flights_lock);
	return true;
}

void
pg_claim_end(struct pg_store *ps, int64_t id, uint32_t below)
{
	struct pg_flights *e;

	pthread_mutex_lock(&ps->flights_lock);
	for (e = ps->flights; e != NULL && e->id != id; e = e->next)
		;
	if (e != NULL && e->claiming) {
		if (below > e->claimed_below)
			e->claimed_below = below;
		e->claiming = false;
		pthread_cond_broadcast(&ps->flights_cond);
		flights_put(ps, e);
	}
	pthread_mutex_unlock(&ps->flights_lock);
}

bool
pg_claim_reserve(struct pg_store *ps, int64_t id, uint32_t uidnext, uint32_t recent)
{
	struct pg_flights *e;
	bool taken;

	if (uidnext == 0 || recent >= uidnext)
		return false;
	pthread_mutex_lock(&ps->flights_lock);
	e = flights_get(ps, id);
	/* one reservation at a time: another handle claims now, as before */
	taken = !e->reserved && !(e->claiming && e->claiming_upto >= uidnext) &&
	        e->claimed_below < uidnext;
	if (taken) {
		e->reserved = true; /* keeps the user flights_get() counted */
		e->reserved_upto = uidnext;
	} else {
		flights_put(ps, e);
	}
	pthread_mutex_unlock(&ps->flights_lock);
	return taken;
}

void
pg_claim_unreserve(struct pg_store *ps, int64_t id)
{
	struct pg_flights *e;

	pthread_mutex_lock(&ps->flights_lock);
	for (e = ps->flights; e != NULL && e->id != id; e = e->next)
		;
	if (e != NULL && e->reserved) {
		/* a claim the batch made for it stays made: its messages were
		 * announced to this session, which goes without showing them
		 * as \Recent */
		e->reserved = e->held = false;
		flights_put(ps, e);
	}
	pthread_mutex_unlock(&ps->flights_lock);
}

/* Reservations batched at most per statement. */
#define CLAIM_BATCH_MAX 256

struct claim_batch {
	struct pg_flights *e[CLAIM_BATCH_MAX];
	size_t n;
};

/*
 * Every mailbox of the batch whose boundary is below UIDNEXT and whose row
 * no other transaction holds (a delivery under way holds it to its commit:
 * skipped, never waited for) moves its boundary to UIDNEXT, the row lock
 * making each a compare and swap, as one claim does; its commit is not
 * waited for. The ids are ours, so they go into the text (two statements:
 * SET LOCAL needs the simple protocol).
 */
static int
t_claim_batch(struct pg_txn *t, void *arg)
{
	struct claim_batch *b = arg;
	uint64_t ids[CLAIM_BATCH_MAX];
	struct buf sql = BUF_INIT(0), arr = BUF_INIT(0);
	PGresult *res;
	int rc;

	for (size_t i = 0; i < b->n; i++)
		ids[i] = (uint64_t)b->e[i]->id;
	pg_int64_array(&arr, ids, b->n);
	buf_printf(&sql,
	           "SET LOCAL synchronous_commit = off; WITH k AS (SELECT id, recent_first FROM "
	           "mailboxes WHERE id = ANY('%s'::bigint[]) AND NOT noselect AND recent_first < "
	           "uidnext ORDER BY id FOR UPDATE SKIP LOCKED) UPDATE mailboxes m SET "
	           "recent_first = m.uidnext FROM k WHERE m.id = k.id RETURNING m.id, "
	           "k.recent_first, m.uidnext",
	           buf_cstr(&arr));
	rc = pg_exec(t, buf_cstr(&sql), NULL, false, &res);
	buf_free(&sql);
	buf_free(&arr);
	if (rc != 0)
		return rc;
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t id = pg_int(res, r, 0);

		for (size_t i = 0; i < b->n; i++) {
			if (b->e[i]->id == id) {
				b->e[i]->held_first = (uint32_t)pg_int(res, r, 1);
				b->e[i]->held_next = (uint32_t)pg_int(res, r, 2);
			}
		}
	}
	PQclear(res);
	return 0;
}

/*
 * The sessions that reserved a claim make it on a wake-up of their own,
 * one after the other on the workers: the first makes all of those
 * reserved by then in one statement (50 round trips per delivery to 50
 * users were 50 statements for the database to parse and run on the same
 * two cores, and 50 worker waits), and the others find theirs made.
 */
int
pg_claim_batch(struct pg_store *ps, int64_t id, uint32_t *first_r, uint32_t *next_r)
{
	struct pg_flights *e, *x;
	struct claim_batch *b;
	bool was_batched = false;
	int rc;

	pthread_mutex_lock(&ps->flights_lock);
	for (e = ps->flights; e != NULL && e->id != id; e = e->next)
		;
	if (e == NULL || !e->reserved) {
		pthread_mutex_unlock(&ps->flights_lock);
		return ROOST_EAGAIN;
	}
	while (!e->held && (e->batched || ps->claim_batch)) {
		was_batched = was_batched || e->batched;
		pthread_cond_wait(&ps->flights_cond, &ps->flights_lock);
	}
	/* a batch that had us and took nothing: claim alone */
	if (!e->held && !was_batched) {
		b = xcalloc(1, sizeof(*b));
		ps->claim_batch = true;
		for (x = ps->flights; x != NULL && b->n < CLAIM_BATCH_MAX; x = x->next) {
			if (x->reserved && !x->held && !x->batched) {
				x->batched = true;
				x->held_first = x->held_next = 0;
				x->users++; /* the batch's, should its handle close */
				b->e[b->n++] = x;
			}
		}
		pthread_mutex_unlock(&ps->flights_lock);
		rc = pg_run(ps, PG_AUTO, t_claim_batch, b);
		pthread_mutex_lock(&ps->flights_lock);
		for (size_t i = 0; i < b->n; i++) {
			x = b->e[i];
			x->batched = false;
			if (rc == 0 && x->held_next > x->held_first && x->held_first > 0) {
				if (x->held_next > x->claimed_below)
					x->claimed_below = x->held_next;
				x->held = x->reserved; /* its handle may have gone */
			}
			flights_put(ps, x);
		}
		ps->claim_batch = false;
		pthread_cond_broadcast(&ps->flights_cond);
		free(b);
	}
	rc = e->held ? 0 : ROOST_EAGAIN;
	*first_r = e->held_first;
	*next_r = e->held_next;
	e->held = e->reserved = false;
	flights_put(ps, e); /* the reservation's */
	pthread_mutex_unlock(&ps->flights_lock);
	return rc;
}

/* pg_close(): every caller has returned. */
void
pg_flights_free(struct pg_store *ps)
{
	while (ps->flights != NULL) {
		struct pg_flights *e = ps->flights;

		ps->flights = e->next;
		if (e->last != NULL)
			flight_unref(e->last);
		free(e);
	}
}

/* The flights pg_changes_heard() started, for pg_prefetch_run(). */
struct pg_prefetch {
	size_t n;
	struct pg_flights **e;
	struct flight **f;
};

#define ID_COL 9

/*
 * t_changes() for several mailboxes in one statement: each row ends with
 * its mailbox's id, after the kind, and the rows come by mailbox, kind and
 * UID. LATERAL keeps each mailbox an index scan from its own MODSEQ.
 */
static int
t_changes_multi(struct pg_txn *t, void *arg)
{
	struct pg_prefetch *pf = arg;
	struct buf ids = BUF_INIT(0), sinces = BUF_INIT(0);
	uint64_t *v = xcalloc(pf->n, sizeof(*v));
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc, rows, first;

	for (size_t i = 0; i < pf->n; i++)
		v[i] = (uint64_t)pf->e[i]->id;
	pg_int64_array(&ids, v, pf->n);
	for (size_t i = 0; i < pf->n; i++)
		v[i] = pf->f[i]->since;
	pg_int64_array(&sinces, v, pf->n);
	free(v);
	pg_p_str(&p, buf_cstr(&ids));
	pg_p_str(&p, buf_cstr(&sinces));
	rc = pg_exec(t,
	             "SELECT m.highestmodseq, m.uidnext, m.expunge_floor, m.recent_first, "
	             "m.uidvalidity, 0, 0, 0, 0, x.i FROM unnest($1::bigint[], $2::bigint[]) AS x "
	             "(i, s) JOIN mailboxes m ON m.id = x.i WHERE NOT m.noselect "
	             "UNION ALL SELECT g.*, 1, x.i FROM unnest($1::bigint[], $2::bigint[]) AS x "
	             "(i, s) CROSS JOIN LATERAL (SELECT " REC_COLS " FROM messages WHERE "
	             "mailbox_id = x.i AND modseq > x.s) g "
	             "UNION ALL SELECT e.uid, coalesce(e.emailid, 0), e.modseq, 0, 0, 0, 0, 0, 2, "
	             "x.i FROM unnest($1::bigint[], $2::bigint[]) AS x (i, s) CROSS JOIN LATERAL "
	             "(SELECT uid, emailid, modseq FROM expunged WHERE mailbox_id = x.i AND "
	             "modseq > x.s) e "
	             "ORDER BY 10, 9, 1",
	             &p, false, &res);
	buf_free(&ids);
	buf_free(&sinces);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < pf->n; i++)
		pf->f[i]->rc = ROOST_ENOTFOUND;
	rows = PQntuples(res);
	for (int r = 0; r < rows; r = first) {
		int64_t id = pg_int(res, r, ID_COL);

		for (first = r; first < rows && pg_int(res, first, ID_COL) == id; first++)
			;
		for (size_t i = 0; i < pf->n; i++) {
			if (pf->e[i]->id == id)
				pf->f[i]->rc = flight_fill(pf->f[i], res, r, first);
		}
	}
	PQclear(res);
	return 0;
}

void
pg_changes_heard(struct pg_store *ps, const int64_t *ids, const uint64_t *sinces,
                 const bool *watched, size_t n, struct pg_prefetch **pf_r)
{
	struct pg_prefetch *pf = NULL;
	uint64_t seq;

	*pf_r = NULL;
	pthread_mutex_lock(&ps->flights_lock);
	/* every flight of these mailboxes started before is stale now */
	for (struct pg_flights *e = ps->flights; e != NULL; e = e->next) {
		for (size_t i = 0; i < n; i++) {
			if (e->id == ids[i]) {
				e->epoch++;
				break;
			}
		}
	}
	seq = pg_seq(ps);
	for (size_t i = 0; i < n; i++) {
		struct pg_flights *e;
		struct flight *f;

		if (!watched[i])
			continue;
		e = flights_get(ps, ids[i]);
		if (e->running != NULL) {
			flights_put(ps, e); /* its sessions will ask, as before */
			continue;
		}
		if (pf == NULL) {
			pf = xcalloc(1, sizeof(*pf));
			pf->e = xcalloc(n, sizeof(*pf->e));
			pf->f = xcalloc(n, sizeof(*pf->f));
		}
		f = e->running = xcalloc(1, sizeof(*f));
		f->since = sinces[i];
		f->started = true;
		f->seq = seq;
		f->epoch = e->epoch;
		f->refs = 1;
		pf->e[pf->n] = e;
		pf->f[pf->n] = f;
		pf->n++;
	}
	pthread_mutex_unlock(&ps->flights_lock);
	*pf_r = pf;
}

void
pg_prefetch_run(struct pg_store *ps, struct pg_prefetch **pfp)
{
	struct pg_prefetch *pf = *pfp;
	int rc;

	if (pf == NULL)
		return;
	*pfp = NULL;
	rc = pg_run(ps, PG_AUTO, t_changes_multi, pf);
	pthread_mutex_lock(&ps->flights_lock);
	for (size_t i = 0; i < pf->n; i++) {
		if (rc != 0)
			pf->f[i]->rc = rc;
		flight_land(ps, pf->e[i], pf->f[i]);
		flight_unref(pf->f[i]);
		flights_put(ps, pf->e[i]);
	}
	pthread_mutex_unlock(&ps->flights_lock);
	free(pf->e);
	free(pf->f);
	free(pf);
}
