/*
 * PostgreSQL quota usage: users.quota_bytes and quota_messages, kept by the
 * statement triggers of schema version 2 (pgsql_schema.c) in the
 * transaction that inserts or deletes messages, so every node reads the
 * same exact figures; reading them is one indexed row.
 */
#include <string.h>

#include "pgsql_impl.h"
#include "roost/error.h"

struct quota_arg {
	const char *user;
	struct storage_usage before, after;
};

static int
t_quota_get(struct pg_txn *t, void *arg)
{
	struct quota_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	memset(&a->before, 0, sizeof(a->before));
	pg_p_str(&p, a->user);
	rc = pg_exec(t, "SELECT quota_bytes, quota_messages FROM users WHERE name = $1", &p, false,
	             &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 1) {
		int64_t b = pg_int(res, 0, 0), m = pg_int(res, 0, 1);

		a->before.bytes = b > 0 ? (uint64_t)b : 0;
		a->before.messages = m > 0 ? (uint64_t)m : 0;
	}
	PQclear(res);
	return 0;
}

int
pg_op_quota_get(struct storage *st, const char *user, struct storage_usage *usage_r)
{
	struct quota_arg a = {.user = user};
	int rc = pg_run(PS(st), PG_AUTO, t_quota_get, &a);

	*usage_r = a.before;
	return rc;
}

/* The user's row locked first: deliveries wait for the recount, and it
 * counts what they committed before. */
static int
t_quota_recalc(struct pg_txn *t, void *arg)
{
	struct quota_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	memset(&a->after, 0, sizeof(a->after));
	pg_p_str(&p, a->user);
	if ((rc = pg_exec(t, "SELECT id FROM users WHERE name = $1 FOR UPDATE", &p, false, &res)) !=
	    0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		memset(&a->before, 0, sizeof(a->before));
		return 0;
	}
	PQclear(res);
	if ((rc = t_quota_get(t, a)) != 0)
		return rc;
	rc = pg_exec(t,
	             "UPDATE users u SET quota_bytes = s.b, quota_messages = s.c FROM"
	             " (SELECT coalesce(sum(m.size), 0) AS b, count(m.uid) AS c"
	             "  FROM mailboxes mb JOIN users x ON x.id = mb.user_id"
	             "  JOIN messages m ON m.mailbox_id = mb.id WHERE x.name = $1) s"
	             " WHERE u.name = $1 RETURNING u.quota_bytes, u.quota_messages",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 1) {
		a->after.bytes = (uint64_t)pg_int(res, 0, 0);
		a->after.messages = (uint64_t)pg_int(res, 0, 1);
	}
	PQclear(res);
	return 0;
}

int
pg_op_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                   struct storage_usage *after_r)
{
	struct quota_arg a = {.user = user};
	int rc = pg_run(PS(st), PG_WRITE, t_quota_recalc, &a);

	*before_r = a.before;
	*after_r = a.after;
	return rc;
}
