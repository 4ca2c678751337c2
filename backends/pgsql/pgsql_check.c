/*
 * `roost check` for the PostgreSQL backend: read-only queries, in one
 * snapshot, for every invariant the schema does not enforce by itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"

#define CHECK_ROWS 100 /* problems reported per query: the report stays bounded */

/* The mailboxes whose counters (schema version 7: messages, unseen, bytes)
 * differ from a count of their messages, with the count as s.c, s.u, s.b:
 * the FROM and WHERE of the check and of the repair. */
#define COUNTS_WRONG_FROM                                                                          \
	"FROM mailboxes m JOIN users u ON u.id = m.user_id LEFT JOIN (SELECT mailbox_id, "         \
	"count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u, sum(size) AS b FROM "          \
	"messages GROUP BY mailbox_id) s ON s.mailbox_id = m.id WHERE m.n_messages <> "            \
	"coalesce(s.c, 0) OR m.n_unseen <> coalesce(s.u, 0) OR m.n_bytes <> coalesce(s.b, 0)"

static const struct {
	const char *sql;
	const char *what; /* printf format over the row's text columns */
} checks[] = {
    {"SELECT encode(b.sha, 'hex'), b.refs, count(g.sha) FROM bodies b LEFT JOIN messages g ON "
     "g.sha = b.sha GROUP BY b.sha, b.refs HAVING b.refs <> count(g.sha) LIMIT 100",
     "body %s: reference count %s, but %s messages use it"},
    {"SELECT u.name, m.name, max(g.uid), m.uidnext FROM mailboxes m JOIN users u ON u.id = "
     "m.user_id JOIN messages g ON g.mailbox_id = m.id GROUP BY u.name, m.name, m.uidnext "
     "HAVING max(g.uid) >= m.uidnext LIMIT 100",
     "%s/%s: UID %s at or above UIDNEXT %s"},
    {"SELECT u.name, m.name, max(g.modseq), m.highestmodseq FROM mailboxes m JOIN users u ON "
     "u.id = m.user_id JOIN messages g ON g.mailbox_id = m.id GROUP BY u.name, m.name, "
     "m.highestmodseq HAVING max(g.modseq) > m.highestmodseq LIMIT 100",
     "%s/%s: MODSEQ %s above HIGHESTMODSEQ %s"},
    {"SELECT u.name, m.name, max(e.uid), m.uidnext FROM mailboxes m JOIN users u ON u.id = "
     "m.user_id JOIN expunged e ON e.mailbox_id = m.id GROUP BY u.name, m.name, m.uidnext "
     "HAVING max(e.uid) >= m.uidnext LIMIT 100",
     "%s/%s: expunged UID %s at or above UIDNEXT %s"},
    {"SELECT u.name, m.name, count(*) FROM mailboxes m JOIN users u ON u.id = m.user_id JOIN "
     "messages g ON g.mailbox_id = m.id WHERE m.noselect GROUP BY u.name, m.name LIMIT 100",
     "%s/%s: \\Noselect but holds %s messages"},
    {"SELECT u.name, m.name, m.recent_first, m.uidnext FROM mailboxes m JOIN users u ON u.id = "
     "m.user_id WHERE m.recent_first > m.uidnext OR m.uidnext < 1 OR m.uidvalidity < 1 LIMIT "
     "100",
     "%s/%s: \\Recent boundary %s or UIDNEXT %s out of range"},
    {"SELECT mailbox_id, count(*), max(idx) FROM keywords GROUP BY mailbox_id HAVING max(idx) "
     "<> count(*) - 1 LIMIT 100",
     "mailbox %s: %s keywords but indexes up to %s"},
    {"SELECT g.mailbox_id, g.uid, g.size FROM messages g JOIN bodies b ON b.sha = g.sha WHERE "
     "g.size <> octet_length(b.data) LIMIT 100",
     "mailbox %s UID %s: size %s differs from its body"},
    {"SELECT u.name, u.quota_bytes || ' bytes in ' || u.quota_messages, "
     "coalesce(s.b, 0) || ' in ' || coalesce(s.c, 0) FROM users u LEFT JOIN (SELECT "
     "m.user_id, sum(g.size) AS b, count(*) AS c FROM messages g JOIN mailboxes m ON m.id = "
     "g.mailbox_id GROUP BY m.user_id) s ON s.user_id = u.id WHERE u.quota_bytes <> "
     "coalesce(s.b, 0) OR u.quota_messages <> coalesce(s.c, 0) LIMIT 100",
     "quota of %s says %s messages, the messages hold %s (roost quota recalc repairs it)"},
    {"SELECT u.name, m.name, m.n_messages || ' messages, ' || m.n_unseen || ' unseen, ' || "
     "m.n_bytes || ' bytes', coalesce(s.c, 0) || ', ' || coalesce(s.u, 0) || ', ' || "
     "coalesce(s.b, 0) " COUNTS_WRONG_FROM " LIMIT 100",
     "%s/%s: counters say %s, the messages hold %s (roost check --repair recounts)"},
};

static int
t_check(struct pg_txn *t, void *arg)
{
	struct buf *report = arg;
	size_t start = report->len;
	int rc;

	if ((rc = pg_schema_check(t, report)) != 0)
		return rc;
	for (size_t c = 0; c < sizeof(checks) / sizeof(checks[0]); c++) {
		PGresult *res;

		if ((rc = pg_exec(t, checks[c].sql, NULL, false, &res)) != 0)
			return rc;
		for (int i = 0; i < PQntuples(res) && i < CHECK_ROWS; i++) {
			const char *v[4] = {"", "", "", ""};

			for (int f = 0; f < PQnfields(res) && f < 4; f++)
				v[f] = PQgetvalue(res, i, f);
			buf_append_str(report, "pgsql: ");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
			buf_printf(report, checks[c].what, v[0], v[1], v[2], v[3]);
#pragma GCC diagnostic pop
			buf_append_byte(report, '\n');
		}
		PQclear(res);
	}
	return report->len > start ? ROOST_EIO : 0;
}

int
pg_op_check(struct storage *st, struct buf *report)
{
	size_t start = report->len;
	int rc = pg_run(PS(st), PG_READ, t_check, report);

	/* t_check's ROOST_EIO rolled back a read-only snapshot: nothing lost */
	if (rc == ROOST_EIO && report->len > start)
		return ROOST_EIO;
	if (rc != 0)
		buf_printf(report, "pgsql: cannot read: %s\n", roost_strerror(rc));
	return rc;
}

/* The mailboxes whose counters (schema version 7) differ from a count. */
#define COUNTERS_WRONG "SELECT m.id, u.name, m.name " COUNTS_WRONG_FROM " LIMIT 1000"

struct repair_arg {
	PGresult *wrong;
	int row;
	bool fixed;
};

static int
t_counters_wrong(struct pg_txn *t, void *arg)
{
	struct repair_arg *a = arg;

	PQclear(a->wrong);
	a->wrong = NULL;
	return pg_exec(t, COUNTERS_WRONG, NULL, false, &a->wrong);
}

/* Recount one mailbox under its row lock: every writer of its messages
 * holds that lock, so the count and the counters meet in one state. */
static int
t_recount(struct pg_txn *t, void *arg)
{
	struct repair_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_int(&p, pg_int(a->wrong, a->row, 0));
	if ((rc = pg_exec(t, "SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE", &p, false,
	                  NULL)) != 0)
		return rc;
	rc = pg_exec(t,
	             "UPDATE mailboxes m SET n_messages = s.c, n_unseen = s.u, n_bytes = s.b FROM "
	             "(SELECT count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u, "
	             "coalesce(sum(size), 0) AS b FROM messages WHERE mailbox_id = $1) s WHERE "
	             "m.id = $1 AND (m.n_messages, m.n_unseen, m.n_bytes) IS DISTINCT FROM (s.c, "
	             "s.u, s.b)",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	a->fixed = atoi(PQcmdTuples(res)) == 1;
	PQclear(res);
	return 0;
}

/* `roost check --repair`: the mailbox counters are the one thing derived
 * here that a repair rebuilds (references and UIDs are kept by the
 * transactions themselves). */
int
pg_op_repair(struct storage *st, struct buf *report)
{
	struct repair_arg a = {.wrong = NULL};
	int rc = pg_run(PS(st), PG_READ, t_counters_wrong, &a);

	if (rc != 0) {
		PQclear(a.wrong);
		buf_printf(report, "pgsql: cannot read: %s\n", roost_strerror(rc));
		return ROOST_EIO;
	}
	for (a.row = 0; a.row < PQntuples(a.wrong); a.row++) {
		const char *user = PQgetvalue(a.wrong, a.row, 1),
		           *name = PQgetvalue(a.wrong, a.row, 2);

		rc = pg_run(PS(st), PG_WRITE, t_recount, &a);
		if (rc != 0) {
			buf_printf(report, "pgsql: %s/%s: cannot recount the counters: %s\n", user,
			           name, roost_strerror(rc));
			break;
		}
		if (a.fixed)
			buf_printf(report, "pgsql: %s/%s: counters recounted\n", user, name);
	}
	PQclear(a.wrong);
	return rc != 0 ? ROOST_EIO : 0;
}

int
pg_op_backup(struct storage *st, const char *dest, struct buf *report)
{
	buf_append_str(report, "pgsql: the mail is in the database, not under the data directory: "
	                       "back it up with pg_dump (or pg_basebackup), which take a "
	                       "consistent copy while the servers run\n");
	return ROOST_ENOTSUP;
}
