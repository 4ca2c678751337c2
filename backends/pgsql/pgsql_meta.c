/*
 * PostgreSQL metadata (RFC 5464 entries, the wrapper's record): a bytea
 * column of the mailbox's row (a rename keeps the row, a delete removes
 * it; a mailbox kept as a \Noselect parent has it cleared) and of the
 * user's row for the server's entries. The row is locked while the record
 * is changed, so writers on every node queue behind each other.
 */
#include <string.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"

struct meta_arg {
	const char *user, *mailbox;
	struct buf *out;
	int (*fn)(const uint8_t *, size_t, struct buf *, void *);
	void *arg;
};

/* The record (locked with lock) into a->out: ROOST_ENOTFOUND when the
 * row has none; the row's id in *id_r (mailbox or user). */
static int
meta_select(struct pg_txn *t, struct meta_arg *a, bool lock, int64_t *id_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	/* ROOST_ENOTFOUND: no such mailbox or user */
	pg_p_str(&p, a->user);
	if (a->mailbox[0] == '\0') {
		rc = pg_exec_row(t,
		                 lock ? "SELECT id, metadata FROM users WHERE name = $1 FOR UPDATE"
		                      : "SELECT id, metadata FROM users WHERE name = $1",
		                 &p, true, &res);
	} else {
		pg_p_str(&p, a->mailbox);
		rc = pg_exec_row(
		    t,
		    lock ? "SELECT m.id, m.metadata FROM mailboxes m JOIN users u ON u.id = "
		           "m.user_id WHERE u.name = $1 AND m.name = $2 AND NOT m.noselect "
		           "FOR UPDATE OF m"
		         : "SELECT m.id, m.metadata FROM mailboxes m JOIN users u ON u.id = "
		           "m.user_id WHERE u.name = $1 AND m.name = $2 AND NOT m.noselect",
		    &p, true, &res);
	}
	if (rc != 0)
		return rc;
	/* binary results: the id is 8 bytes, big-endian */
	{
		const uint8_t *v = (const uint8_t *)PQgetvalue(res, 0, 0);
		uint64_t id = 0;

		for (int i = 0; i < 8 && PQgetlength(res, 0, 0) == 8; i++)
			id = id << 8 | v[i];
		*id_r = (int64_t)id;
	}
	if (PQgetisnull(res, 0, 1)) {
		PQclear(res);
		return 1; /* the row, without a record */
	}
	buf_append(a->out, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
	PQclear(res);
	return 0;
}

static int
t_meta_get(struct pg_txn *t, void *arg)
{
	struct meta_arg *a = arg;
	int64_t id;
	int rc;

	buf_reset(a->out);
	rc = meta_select(t, a, false, &id);
	return rc == 1 ? ROOST_ENOTFOUND : rc;
}

int
pg_op_meta_get(struct storage *st, const char *user, const char *mailbox, struct buf *out)
{
	struct buf rec = BUF_INIT(0);
	struct meta_arg a = {user, mailbox, &rec, NULL, NULL};
	int rc = pg_run(PS(st), PG_READ, t_meta_get, &a);

	if (rc == 0)
		buf_append(out, rec.data, rec.len);
	buf_free(&rec);
	return rc;
}

static int
t_meta_update(struct pg_txn *t, void *arg)
{
	struct meta_arg *a = arg;
	struct pg_params p = {.n = 0};
	struct buf old = BUF_INIT(0), *keep = a->out;
	bool server = a->mailbox[0] == '\0';
	int64_t id;
	int rc;

	a->out = &old;
	rc = meta_select(t, a, true, &id);
	a->out = keep;
	if (rc < 0) {
		buf_free(&old);
		return rc;
	}
	buf_reset(a->out);
	/* run again from scratch when the transaction is retried */
	rc = a->fn(rc == 1 ? NULL : old.data, old.len, a->out, a->arg);
	buf_free(&old);
	if (rc != 0)
		return rc;
	pg_p_int(&p, id);
	if (a->out->len == 0)
		return pg_exec(t,
		               server ? "UPDATE users SET metadata = NULL WHERE id = $1"
		                      : "UPDATE mailboxes SET metadata = NULL WHERE id = $1",
		               &p, false, NULL);
	pg_p_bin(&p, a->out->data, a->out->len);
	return pg_exec(t,
	               server ? "UPDATE users SET metadata = $2 WHERE id = $1"
	                      : "UPDATE mailboxes SET metadata = $2 WHERE id = $1",
	               &p, false, NULL);
}

int
pg_op_meta_update(struct storage *st, const char *user, const char *mailbox,
                  int (*fn)(const uint8_t *, size_t, struct buf *, void *), void *arg)
{
	struct buf out = BUF_INIT(0);
	struct meta_arg a = {user, mailbox, &out, fn, arg};
	int rc = pg_run(PS(st), PG_WRITE, t_meta_update, &a);

	buf_free(&out);
	return rc;
}
