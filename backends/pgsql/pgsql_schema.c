/*
 * The schema of the PostgreSQL backend, created and migrated by Roost
 * itself: roost_schema holds the version; each step below takes the
 * database from version i to i + 1, all in one transaction under an
 * advisory lock, so nodes starting together migrate once. A database
 * newer than this build is refused rather than guessed at.
 */
#include <stdio.h>
#include <string.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/log.h"

/*
 * Version 1.
 * - users: one row per user name; mailboxes and subscriptions hang off it.
 * - mailboxes: UIDNEXT, HIGHESTMODSEQ and the \Recent boundary live in the
 *   row, and every change to the mailbox locks it first (pgsql_impl.h).
 *   noselect: a deleted parent kept for its children (and its UIDNEXT).
 *   expunge_floor: the highest MODSEQ dropped from the expunge log.
 * - bodies: message bytes once per distinct SHA-256, refs = the messages
 *   that point at it; the row goes with the last reference.
 * - messages: one row per (mailbox, UID); keywords a bitmask over the
 *   mailbox's keywords table; cache the parse results (derived data).
 * - expunged: the expunge log for CONDSTORE/QRESYNC, pruned by age.
 */
static const char *const migrations[] = {
    "CREATE TABLE users ("
    " id bigserial PRIMARY KEY,"
    " name text NOT NULL UNIQUE);"
    "CREATE SEQUENCE uidvalidity_seq MINVALUE 1 MAXVALUE 4294967295;"
    "SELECT setval('uidvalidity_seq', extract(epoch FROM now())::bigint);"
    "CREATE TABLE mailboxes ("
    " id bigserial PRIMARY KEY,"
    " user_id bigint NOT NULL REFERENCES users (id),"
    " name text NOT NULL,"
    " uidvalidity bigint NOT NULL,"
    " uidnext bigint NOT NULL DEFAULT 1,"
    " highestmodseq bigint NOT NULL DEFAULT 1,"
    " recent_first bigint NOT NULL DEFAULT 1,"
    " expunge_floor bigint NOT NULL DEFAULT 0,"
    " special_use integer NOT NULL DEFAULT 0,"
    " noselect boolean NOT NULL DEFAULT false,"
    " UNIQUE (user_id, name));"
    "CREATE TABLE keywords ("
    " mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,"
    " idx integer NOT NULL,"
    " name text NOT NULL,"
    " PRIMARY KEY (mailbox_id, idx));"
    "CREATE UNIQUE INDEX keywords_name ON keywords (mailbox_id, lower(name));"
    "CREATE TABLE bodies ("
    " sha bytea PRIMARY KEY,"
    " refs bigint NOT NULL CHECK (refs >= 0),"
    " data bytea NOT NULL);"
    "CREATE INDEX bodies_unreferenced ON bodies (sha) WHERE refs = 0;"
    "CREATE TABLE messages ("
    " mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,"
    " uid bigint NOT NULL,"
    " flags integer NOT NULL,"
    " keywords bigint NOT NULL DEFAULT 0,"
    " modseq bigint NOT NULL,"
    " internal_date bigint NOT NULL,"
    " size bigint NOT NULL,"
    " sha bytea NOT NULL REFERENCES bodies (sha) DEFERRABLE INITIALLY DEFERRED,"
    " cache bytea,"
    " PRIMARY KEY (mailbox_id, uid));"
    "CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);"
    "CREATE INDEX messages_sha ON messages (sha);"
    "CREATE TABLE expunged ("
    " mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,"
    " uid bigint NOT NULL,"
    " modseq bigint NOT NULL,"
    " at bigint NOT NULL,"
    " PRIMARY KEY (mailbox_id, uid));"
    "CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);"
    "CREATE TABLE subscriptions ("
    " user_id bigint NOT NULL REFERENCES users (id),"
    " name text NOT NULL,"
    " PRIMARY KEY (user_id, name));",
    /*
     * Version 2: messages.emailid, the EMAILID (RFC 8474) given at append
     * and carried by COPY and MOVE. Rows of version 1 get one derived from
     * their mailbox, UID and body, as the LMDB backend derives it for its
     * old records (both are stable; they need not be equal).
     */
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS emailid bigint;"
    "UPDATE messages SET emailid = ('x' || substr(md5(mailbox_id::text || ':' || uid::text || "
    "':' || encode(sha, 'hex')), 1, 16))::bit(64)::bigint WHERE emailid IS NULL;"
    "UPDATE messages SET emailid = 1 WHERE emailid = 0;"
    "ALTER TABLE messages ALTER COLUMN emailid SET NOT NULL;",
    /* Version 3: the expunge log keeps each message's EMAILID (NULL for
     * entries of before), so JMAP tells a MOVE from an expunge. */
    "ALTER TABLE expunged ADD COLUMN IF NOT EXISTS emailid bigint;",
    /* Version 4: metadata (RFC 5464), the wrapper's record per mailbox
     * and, for the server's entries, per user. */
    "ALTER TABLE mailboxes ADD COLUMN IF NOT EXISTS metadata bytea;"
    "ALTER TABLE users ADD COLUMN IF NOT EXISTS metadata bytea;",
    /*
     * Version 5: quota usage. users.quota_bytes/quota_messages are the sum
     * of the sizes and the number of the user's messages, changed by
     * statement triggers in the transaction that inserts or deletes the
     * rows (one UPDATE per statement, however many rows: an expunge of
     * thousands is one row version). A move inserts and deletes within one
     * user, so it nets to nothing. Messages are deleted before their
     * mailbox (purge_messages), so the join finds the owner. Each step
     * may run again (an older version number re-runs the steps since): the
     * counters are then summed afresh.
     */
    "ALTER TABLE users ADD COLUMN IF NOT EXISTS quota_bytes bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS quota_messages bigint NOT NULL DEFAULT 0;"
    "UPDATE users u SET quota_bytes = s.b, quota_messages = s.c FROM"
    " (SELECT mb.user_id, sum(m.size) AS b, count(*) AS c FROM messages m"
    "  JOIN mailboxes mb ON mb.id = m.mailbox_id GROUP BY mb.user_id) s"
    " WHERE u.id = s.user_id;"
    "CREATE OR REPLACE FUNCTION roost_quota_added() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE users u SET quota_bytes = u.quota_bytes + d.b,"
    "  quota_messages = u.quota_messages + d.c FROM"
    "  (SELECT mb.user_id, sum(n.size) AS b, count(*) AS c FROM roost_new n"
    "   JOIN mailboxes mb ON mb.id = n.mailbox_id GROUP BY mb.user_id) d"
    "  WHERE u.id = d.user_id;"
    " RETURN NULL; END $$;"
    "CREATE OR REPLACE FUNCTION roost_quota_removed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE users u SET quota_bytes = u.quota_bytes - d.b,"
    "  quota_messages = u.quota_messages - d.c FROM"
    "  (SELECT mb.user_id, sum(o.size) AS b, count(*) AS c FROM roost_old o"
    "   JOIN mailboxes mb ON mb.id = o.mailbox_id GROUP BY mb.user_id) d"
    "  WHERE u.id = d.user_id;"
    " RETURN NULL; END $$;"
    "DROP TRIGGER IF EXISTS messages_quota_added ON messages;"
    "CREATE TRIGGER messages_quota_added AFTER INSERT ON messages"
    " REFERENCING NEW TABLE AS roost_new FOR EACH STATEMENT"
    " EXECUTE PROCEDURE roost_quota_added();"
    "DROP TRIGGER IF EXISTS messages_quota_removed ON messages;"
    "CREATE TRIGGER messages_quota_removed AFTER DELETE ON messages"
    " REFERENCING OLD TABLE AS roost_old FOR EACH STATEMENT"
    " EXECUTE PROCEDURE roost_quota_removed();",
    /* Version 6: messages.save_date, SAVEDATE (RFC 8514): when the row
     * was put in its mailbox (append, delivery, copy, move). NULL for
     * rows of before: nobody knows, and IMAP answers NIL. */
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS save_date bigint;",
    /*
     * Version 7: STATUS and SELECT counters in the mailbox row.
     * n_messages, n_unseen (no \Seen, flag bit 1) and n_bytes are changed
     * by statement triggers in the transaction that inserts, deletes or
     * updates the messages, as the quota counters are: the writers hold
     * the mailbox row's lock already (they took their MODSEQ from it), so
     * the counters add no lock and no round trip. An UPDATE that changes
     * neither \Seen, size nor mailbox (a parse cache, a keyword) nets to
     * nothing and touches no row. The first unseen UID comes from a
     * partial index on the unseen messages, the \Recent count from the
     * primary key above the boundary: STATUS no longer reads every
     * message of the mailbox. Run again, the step sums afresh.
     */
    "ALTER TABLE mailboxes ADD COLUMN IF NOT EXISTS n_messages bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS n_unseen bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS n_bytes bigint NOT NULL DEFAULT 0;"
    "UPDATE mailboxes m SET n_messages = s.c, n_unseen = s.u, n_bytes = s.b FROM"
    " (SELECT mb.id, count(g.uid) AS c, count(g.uid) FILTER (WHERE g.flags & 1 = 0) AS u,"
    "  coalesce(sum(g.size), 0) AS b FROM mailboxes mb LEFT JOIN messages g"
    "  ON g.mailbox_id = mb.id GROUP BY mb.id) s WHERE m.id = s.id;"
    "CREATE INDEX IF NOT EXISTS messages_unseen ON messages (mailbox_id, uid)"
    " WHERE flags & 1 = 0;"
    "CREATE OR REPLACE FUNCTION roost_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE mailboxes m SET n_messages = m.n_messages + d.c, n_unseen = m.n_unseen + d.u,"
    "  n_bytes = m.n_bytes + d.b FROM"
    "  (SELECT mailbox_id, count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u,"
    "   sum(size) AS b FROM roost_new GROUP BY mailbox_id) d"
    "  WHERE m.id = d.mailbox_id;"
    " RETURN NULL; END $$;"
    "CREATE OR REPLACE FUNCTION roost_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE mailboxes m SET n_messages = m.n_messages - d.c, n_unseen = m.n_unseen - d.u,"
    "  n_bytes = m.n_bytes - d.b FROM"
    "  (SELECT mailbox_id, count(*) AS c, count(*) FILTER (WHERE flags & 1 = 0) AS u,"
    "   sum(size) AS b FROM roost_old GROUP BY mailbox_id) d"
    "  WHERE m.id = d.mailbox_id;"
    " RETURN NULL; END $$;"
    "CREATE OR REPLACE FUNCTION roost_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE mailboxes m SET n_messages = m.n_messages + d.c, n_unseen = m.n_unseen + d.u,"
    "  n_bytes = m.n_bytes + d.b FROM"
    "  (SELECT mailbox_id, sum(c) AS c, sum(u) AS u, sum(b) AS b FROM"
    "   (SELECT mailbox_id, 1 AS c, (flags & 1 = 0)::int AS u, size AS b FROM roost_new"
    "    UNION ALL SELECT mailbox_id, -1, -((flags & 1 = 0)::int), -size FROM roost_old) x"
    "   GROUP BY mailbox_id HAVING sum(c) <> 0 OR sum(u) <> 0 OR sum(b) <> 0) d"
    "  WHERE m.id = d.mailbox_id;"
    " RETURN NULL; END $$;"
    "DROP TRIGGER IF EXISTS messages_counts_added ON messages;"
    "CREATE TRIGGER messages_counts_added AFTER INSERT ON messages"
    " REFERENCING NEW TABLE AS roost_new FOR EACH STATEMENT"
    " EXECUTE PROCEDURE roost_counts_added();"
    "DROP TRIGGER IF EXISTS messages_counts_removed ON messages;"
    "CREATE TRIGGER messages_counts_removed AFTER DELETE ON messages"
    " REFERENCING OLD TABLE AS roost_old FOR EACH STATEMENT"
    " EXECUTE PROCEDURE roost_counts_removed();"
    "DROP TRIGGER IF EXISTS messages_counts_changed ON messages;"
    "CREATE TRIGGER messages_counts_changed AFTER UPDATE ON messages"
    " REFERENCING OLD TABLE AS roost_old NEW TABLE AS roost_new FOR EACH STATEMENT"
    " EXECUTE PROCEDURE roost_counts_changed();",
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
#define SCHEMA_LOCK "7236937" /* pg_advisory_xact_lock key: "roost" */

static int
schema_version(struct pg_txn *t, int *version_r)
{
	PGresult *res;
	int rc;

	*version_r = 0;
	rc = pg_exec(t, "SELECT version FROM roost_schema", NULL, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 1)
		*version_r = (int)pg_int(res, 0, 0);
	PQclear(res);
	return 0;
}

static int
migrate(struct pg_txn *t, void *arg)
{
	int *version_r = arg, version, rc;
	struct pg_params p = {.n = 0};

	if ((rc = pg_exec(t, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")", NULL, false, NULL)) !=
	        0 ||
	    (rc = pg_exec(t, "CREATE TABLE IF NOT EXISTS roost_schema (version integer NOT NULL)",
	                  NULL, false, NULL)) != 0 ||
	    (rc = schema_version(t, &version)) != 0)
		return rc;
	*version_r = version;
	if (version > (int)N_MIGRATIONS)
		return 0;
	for (int v = version; v < (int)N_MIGRATIONS; v++) {
		PGresult *res = PQexec(t->conn, migrations[v]);

		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    PQresultStatus(res) != PGRES_TUPLES_OK) {
			log_error("event=pgsql_migrate_failed version=%d error=%s", v + 1,
			          LOG_QUOTE(PQresultErrorMessage(res)));
			t->lost = PQstatus(t->conn) != CONNECTION_OK;
			PQclear(res);
			return t->lost ? ROOST_ETEMP : ROOST_EIO;
		}
		PQclear(res);
		log_info("event=pgsql_migrated version=%d", v + 1);
	}
	pg_p_int(&p, (int64_t)N_MIGRATIONS);
	if (version == 0)
		rc = pg_exec(t, "INSERT INTO roost_schema (version) VALUES ($1)", &p, false, NULL);
	else
		rc = pg_exec(t, "UPDATE roost_schema SET version = $1", &p, false, NULL);
	return rc;
}

int
pg_schema_setup(struct pg_store *ps)
{
	int version = 0, rc = pg_run(ps, PG_WRITE, migrate, &version);

	if (rc != 0)
		return rc;
	if (version > (int)N_MIGRATIONS) {
		log_error("event=pgsql_schema_newer version=%d known=%d", version,
		          (int)N_MIGRATIONS);
		return ROOST_ECONFIG;
	}
	return 0;
}

/* `roost check`: the version table says what this build made. */
int
pg_schema_check(struct pg_txn *t, struct buf *report)
{
	PGresult *res;
	int rc, version;

	rc = pg_exec(t, "SELECT count(*) FROM roost_schema", NULL, false, &res);
	if (rc != 0)
		return rc;
	if (pg_int(res, 0, 0) != 1)
		buf_printf(report, "pgsql: roost_schema has %s rows, not 1\n",
		           PQgetvalue(res, 0, 0));
	PQclear(res);
	if ((rc = schema_version(t, &version)) != 0)
		return rc;
	if (version != PG_SCHEMA_VERSION)
		buf_printf(report, "pgsql: schema version %d, this build expects %d\n", version,
		           PG_SCHEMA_VERSION);
	return 0;
}
