/*
 * The batched delivery statements of the PostgreSQL backend: one
 * statement that locks every target mailbox and takes its UID
 * (pg_alloc_batch), and one that also stores the message, its body
 * reference and the notifications (pg_store_batch), with the test of
 * whether a delivery fits them. pgsql_save.c runs them and takes the
 * slow way, one target at a time, for whatever they leave.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/xalloc.h"

/* The rows (ord, mailbox id, uid, modseq, uidvalidity) a batch statement
 * returned: each gives its target (the ord-th, 1-based) its UID, and
 * marks it stored when the statement also stored the message. */
static void
take_batch_rows(PGresult *res, struct pg_deliver_arg *a, bool stored)
{
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t ord = pg_int(res, r, 0);
		struct pg_dtarget *d;

		if (ord < 1 || (size_t)ord > a->n)
			continue;
		d = &a->targets[ord - 1];
		d->id = pg_int(res, r, 1);
		d->uid = (uint32_t)pg_int(res, r, 2);
		d->modseq = pg_int(res, r, 3);
		d->uidvalidity = (uint32_t)pg_int(res, r, 4);
		d->kw = 0;
		d->result = 0;
		if (stored)
			d->stored = true;
	}
}

/*
 * Lock and take a UID in every target's mailbox with one statement, when
 * no keywords are to be added and no mailbox is named twice: the rows are
 * locked in the order of their ids (ORDER BY under FOR UPDATE), then
 * updated. The targets it found nothing for keep result 1 and go the
 * slow way, which tells their errors apart. A delivery to fifty users
 * was fifty round trips, each holding the locks taken before it.
 */
int
pg_alloc_batch(struct pg_txn *t, struct pg_deliver_arg *a)
{
	struct buf users = BUF_INIT(0), names = BUF_INIT(0);
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	for (size_t i = 0; i < a->n; i++)
		a->targets[i].result = 1;
	pg_p_target_names(&p, a, false, &users, &names);
	rc = pg_exec(t,
	             "UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = "
	             "m.highestmodseq + 1 FROM (SELECT m2.id, x.ord FROM unnest($1::text[], "
	             "$2::text[]) WITH ORDINALITY AS x (u, n, ord) JOIN users u ON u.name = x.u "
	             "JOIN mailboxes m2 ON m2.user_id = u.id AND m2.name = x.n WHERE NOT "
	             "m2.noselect AND m2.uidnext < 4294967295 ORDER BY m2.id FOR UPDATE OF m2) l "
	             "WHERE m.id = l.id RETURNING l.ord, m.id, m.uidnext - 1, m.highestmodseq, "
	             "m.uidvalidity",
	             &p, false, &res);
	buf_free(&users);
	buf_free(&names);
	if (rc != 0)
		return rc;
	take_batch_rows(res, a, false);
	PQclear(res);
	return 0;
}

/* Whether pg_alloc_batch() may serve: targets by name, no keywords, no
 * mailbox twice (one UPDATE changes a row once). */
bool
pg_batch_fits(const struct pg_deliver_arg *a)
{
	if (a->n < 1 || a->msg->n_keywords > 0)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct pg_dtarget *d = &a->targets[a->order[i]];

		if (d->id != 0)
			return false;
		if (i > 0) {
			const struct pg_dtarget *prev = &a->targets[a->order[i - 1]];

			if (strcmp(prev->user, d->user) == 0 && strcmp(prev->name, d->name) == 0)
				return false;
		}
	}
	return true;
}

/*
 * pg_alloc_batch(), insert_all(), body_ref() and notify_all() in one
 * statement, for the targets it finds (marked stored; the others keep
 * result 1 and go the slow way): one round trip where they were four, each
 * a wait for the database's process to be scheduled on a loaded machine,
 * while the delivery holds its mailboxes' locks and every IDLE session of
 * them waits for its commit. The triggers on messages run after the
 * statement, on the rows its UPDATE left.
 */
int
pg_store_batch(struct pg_txn *t, struct pg_deliver_arg *a)
{
	struct buf users = BUF_INIT(0), names = BUF_INIT(0), eids = BUF_INIT(0);
	int64_t *e = xcalloc(a->n + 1, sizeof(*e));
	struct pg_params p = {.n = 0};
	PGresult *res;
	char node[24];
	int rc;

	for (size_t i = 0; i < a->n; i++) {
		e[i] = (int64_t)storage_new_emailid();
		a->targets[i].result = 1;
		a->targets[i].stored = false;
	}
	pg_sint64_array(&eids, e, a->n);
	free(e);
	snprintf(node, sizeof(node), "%016" PRIx64, t->ps->node);
	pg_p_target_names(&p, a, false, &users, &names);
	pg_p_str(&p, buf_cstr(&eids));
	pg_p_record(&p, a);
	pg_p_bin(&p, a->data, a->len);
	pg_p_str(&p, node);
	rc = pg_exec(t,
	             "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH "
	             "ORDINALITY AS x (u, n, e, ord)), "
	             "l AS (UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = "
	             "m.highestmodseq + 1 FROM (SELECT m2.id, x.ord, x.e FROM x JOIN users u ON "
	             "u.name = x.u JOIN mailboxes m2 ON m2.user_id = u.id AND m2.name = x.n WHERE "
	             "NOT m2.noselect AND m2.uidnext < 4294967295 ORDER BY m2.id FOR UPDATE OF m2) "
	             "k WHERE m.id = k.id RETURNING k.ord, m.id, m.uidnext - 1 AS uid, "
	             "m.highestmodseq AS ms, m.uidvalidity, k.e), "
	             "i AS (INSERT INTO messages (mailbox_id, uid, flags, keywords, modseq, "
	             "internal_date, size, sha, emailid, save_date, cache) SELECT l.id, l.uid, $4, "
	             "0, l.ms, $5, $6, $7, l.e, $8, NULLIF($9, ''::bytea) FROM l), "
	             "b AS (INSERT INTO bodies (sha, refs, data) SELECT $7, count(*), $10 FROM l "
	             "HAVING count(*) > 0 ON CONFLICT (sha) DO UPDATE SET refs = bodies.refs + "
	             "EXCLUDED.refs) "
	             "SELECT l.ord, l.id, l.uid, l.ms, l.uidvalidity, pg_notify('" PG_CHANNEL
	             "', $11 || '/' || l.id || '/' || l.ms || ' ' || x.u || chr(9) || x.n) FROM l "
	             "JOIN x ON x.ord = l.ord",
	             &p, false, &res);
	buf_free(&users);
	buf_free(&names);
	buf_free(&eids);
	if (rc != 0)
		return rc == ROOST_EEXISTS ? ROOST_EIO : rc;
	t->notified = true;
	take_batch_rows(res, a, true);
	PQclear(res);
	return 0;
}
