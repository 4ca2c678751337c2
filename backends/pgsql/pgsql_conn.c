/*
 * The connection pool and the transaction runner of the PostgreSQL backend.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

void
pg_p_int(struct pg_params *p, int64_t v)
{
	if (p->n >= PG_MAX_PARAMS)
		fatal("event=pgsql_error error=\"too many parameters\"");
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%" PRId64, v);
	p->v[p->n] = p->num[p->n];
	p->len[p->n] = 0;
	p->fmt[p->n] = 0;
	p->n++;
}

void
pg_p_str(struct pg_params *p, const char *s)
{
	if (p->n >= PG_MAX_PARAMS)
		fatal("event=pgsql_error error=\"too many parameters\"");
	p->v[p->n] = s;
	p->len[p->n] = 0;
	p->fmt[p->n] = 0;
	p->n++;
}

void
pg_p_bin(struct pg_params *p, const void *data, size_t len)
{
	if (p->n >= PG_MAX_PARAMS)
		fatal("event=pgsql_error error=\"too many parameters\"");
	/* libpq wants a non-NULL pointer for a non-NULL value */
	p->v[p->n] = len > 0 ? data : "";
	p->len[p->n] = (int)len;
	p->fmt[p->n] = 1;
	p->n++;
}

int64_t
pg_int(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Notices ("relation already exists, skipping") are not worth a log line. */
static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int
pg_connect(const char *dsn, PGconn **conn_r)
{
	PGconn *conn = PQconnectdb(dsn);

	*conn_r = NULL;
	if (conn == NULL)
		return ROOST_ETEMP;
	if (PQstatus(conn) != CONNECTION_OK) {
		char *msg = PQerrorMessage(conn);
		size_t len = strlen(msg);

		while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
			msg[--len] = '\0';
		log_warn("event=pgsql_connect_failed error=%s", LOG_QUOTE(msg));
		PQfinish(conn);
		return ROOST_ETEMP;
	}
	PQsetNoticeProcessor(conn, quiet_notice, NULL);
	*conn_r = conn;
	return 0;
}

/*
 * Waiting for a free connection blocks the worker, never a loop: storage
 * calls run on workers only, and the pool holds one connection per worker
 * (a few more callers, such as `roost deliver` threads, just wait).
 */
int
pg_conn_get(struct pg_store *ps, struct pg_conn **c_r)
{
	struct pg_conn *c = NULL;
	int rc = 0;

	pthread_mutex_lock(&ps->lock);
	for (;;) {
		for (unsigned i = 0; i < ps->n_conns && c == NULL; i++) {
			if (!ps->conns[i].busy && ps->conns[i].conn != NULL)
				c = &ps->conns[i];
		}
		for (unsigned i = 0; i < ps->n_conns && c == NULL; i++) {
			if (!ps->conns[i].busy)
				c = &ps->conns[i];
		}
		if (c != NULL)
			break;
		pthread_cond_wait(&ps->freed, &ps->lock);
	}
	c->busy = true;
	pthread_mutex_unlock(&ps->lock);
	if (c->conn != NULL && PQstatus(c->conn) != CONNECTION_OK) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	if (c->conn == NULL && (rc = pg_connect(ps->dsn, &c->conn)) != 0) {
		pg_conn_put(ps, c);
		return rc;
	}
	*c_r = c;
	return 0;
}

void
pg_conn_put(struct pg_store *ps, struct pg_conn *c)
{
	if (c->conn != NULL && PQstatus(c->conn) != CONNECTION_OK) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	pthread_mutex_lock(&ps->lock);
	c->busy = false;
	pthread_cond_signal(&ps->freed);
	pthread_mutex_unlock(&ps->lock);
}

static void
log_pg_error(const char *what, const PGresult *res, PGconn *conn)
{
	const char *msg = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn);
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char buf[512];
	size_t len;

	snprintf(buf, sizeof(buf), "%s", msg != NULL ? msg : "");
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	log_warn("event=pgsql_error what=%s sqlstate=%s error=%s", what,
	         state != NULL ? state : "-", LOG_QUOTE(buf));
}

/*
 * The transaction's BEGIN and its first statement in one round trip
 * (libpq's pipeline mode): the result of the BEGIN when it failed (the
 * statement was then not run), else the statement's. NULL when the
 * connection broke.
 */
static PGresult *
exec_begun(struct pg_txn *t, const char *sql, const struct pg_params *p, bool binary)
{
	const char *begin = t->begin;
	PGresult *got[2] = {NULL, NULL}, *r;
	bool sent;

	t->begin = NULL;
	if (PQenterPipelineMode(t->conn) != 1) {
		r = PQexec(t->conn, begin);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			return r;
		PQclear(r);
		return PQexecParams(t->conn, sql, p->n, NULL, p->v, p->len, p->fmt, binary ? 1 : 0);
	}
	sent = PQsendQueryParams(t->conn, begin, 0, NULL, NULL, NULL, NULL, 0) == 1 &&
	       PQsendQueryParams(t->conn, sql, p->n, NULL, p->v, p->len, p->fmt, binary ? 1 : 0) ==
	           1 &&
	       PQpipelineSync(t->conn) == 1;
	/* each statement's results end with a NULL; the sync's comes last */
	for (int q = 0; sent && q < 2; q++) {
		while ((r = PQgetResult(t->conn)) != NULL) {
			if (got[q] == NULL)
				got[q] = r;
			else
				PQclear(r);
		}
		if (got[q] == NULL || PQstatus(t->conn) != CONNECTION_OK)
			sent = false;
	}
	if (sent && (r = PQgetResult(t->conn)) != NULL) {
		sent = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
		PQclear(r);
	}
	if (!sent || PQexitPipelineMode(t->conn) != 1) {
		/* broken: the connection is dropped, whatever it says */
		PQclear(got[0]);
		PQclear(got[1]);
		t->lost = true;
		return NULL;
	}
	if (PQresultStatus(got[0]) != PGRES_COMMAND_OK) {
		PQclear(got[1]);
		return got[0];
	}
	PQclear(got[0]);
	return got[1];
}

int
pg_exec(struct pg_txn *t, const char *sql, const struct pg_params *p, bool binary, PGresult **res_r)
{
	static const struct pg_params none = {.n = 0};
	PGresult *res;
	ExecStatusType status;
	const char *state;

	if (res_r != NULL)
		*res_r = NULL;
	if (p == NULL)
		p = &none;
	/* Without parameters, the simple protocol: one round trip, and a
	 * string of several statements (pg_run's BEGIN of a lazy write). */
	if (t->begin != NULL)
		res = exec_begun(t, sql, p, binary);
	else if (p->n == 0 && !binary)
		res = PQexec(t->conn, sql);
	else
		res = PQexecParams(t->conn, sql, p->n, NULL, p->v, p->len, p->fmt, binary ? 1 : 0);
	status = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
		if (res_r != NULL)
			*res_r = res;
		else
			PQclear(res);
		return 0;
	}
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (PQstatus(t->conn) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0) {
		/* connection lost, server shutting down or restarted */
		t->lost = true;
		log_pg_error("connection", res, t->conn);
		PQclear(res);
		return ROOST_ETEMP;
	}
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
		t->retry = true;
		PQclear(res);
		return ROOST_ETEMP;
	}
	if (strcmp(state, "23505") == 0) {
		PQclear(res);
		return ROOST_EEXISTS;
	}
	log_pg_error("query", res, t->conn);
	PQclear(res);
	return ROOST_EIO;
}

int
pg_exec_row(struct pg_txn *t, const char *sql, const struct pg_params *p, bool binary,
            PGresult **res_r)
{
	int rc = pg_exec(t, sql, p, binary, res_r);

	if (rc == 0 && PQntuples(*res_r) != 1) {
		PQclear(*res_r);
		*res_r = NULL;
		rc = ROOST_ENOTFOUND;
	}
	return rc;
}

int
pg_exec_id(struct pg_txn *t, const char *sql, int64_t id, PGresult **res_r)
{
	struct pg_params p = {.n = 0};

	pg_p_int(&p, id);
	return pg_exec(t, sql, &p, false, res_r);
}

int
pg_exec_id_row(struct pg_txn *t, const char *sql, int64_t id, PGresult **res_r)
{
	struct pg_params p = {.n = 0};

	pg_p_int(&p, id);
	return pg_exec_row(t, sql, &p, false, res_r);
}

int
pg_notify_id(struct pg_txn *t, const char *user, const char *mailbox, int64_t id, uint64_t modseq)
{
	struct pg_params p = {.n = 0};
	char node[64];

	if (id > 0 && modseq > 0)
		snprintf(node, sizeof(node), "%016" PRIx64 "/%" PRId64 "/%" PRIu64, t->ps->node, id,
		         modseq);
	else
		snprintf(node, sizeof(node), "%016" PRIx64, t->ps->node);
	pg_p_str(&p, node);
	pg_p_str(&p, user);
	pg_p_str(&p, mailbox);
	t->notified = true;
	return pg_exec(t, "SELECT pg_notify('" PG_CHANNEL "', $1 || ' ' || $2 || chr(9) || $3)", &p,
	               false, NULL);
}

int
pg_notify(struct pg_txn *t, const char *user, const char *mailbox)
{
	return pg_notify_id(t, user, mailbox, 0, 0);
}

#define PG_TRIES 20

int
pg_run(struct pg_store *ps, enum pg_mode mode, pg_txn_fn *fn, void *arg)
{
	static const char *begin[] = {
	    [PG_WRITE] = "BEGIN ISOLATION LEVEL READ COMMITTED",
	    [PG_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    [PG_WRITE_LAZY] = "BEGIN ISOLATION LEVEL READ COMMITTED; "
	                      "SET LOCAL synchronous_commit = off",
	    [PG_AUTO] = NULL,
	};
	bool reconnected = false;
	int rc = ROOST_ETEMP;

	/* Not while the store is being opened: the watch registry the
	 * listener wakes is set up after. */
	if (ps->base.watches != NULL)
		pg_listen_start(ps);
	for (int attempt = 0; attempt < PG_TRIES; attempt++) {
		struct pg_conn *c;
		struct pg_txn t = {.ps = ps};
		bool committing = false;

		if ((rc = pg_conn_get(ps, &c)) != 0)
			return rc;
		t.conn = c->conn;
		/* A BEGIN of one statement goes with the first one of fn (one
		 * round trip less per transaction); a lazy write's has two. */
		rc = 0;
		if (mode == PG_WRITE || mode == PG_READ)
			t.begin = begin[mode];
		else if (begin[mode] != NULL)
			rc = pg_exec(&t, begin[mode], NULL, false, NULL);
		if (rc == 0)
			rc = fn(&t, arg);
		if (mode == PG_AUTO) {
			/* one idempotent statement: safe to run again */
		} else if (rc == 0) {
			committing = true;
			rc = pg_exec(&t, "COMMIT", NULL, false, NULL);
		} else if (!t.lost) {
			PGresult *res = PQexec(t.conn, "ROLLBACK");

			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				t.lost = PQstatus(t.conn) != CONNECTION_OK;
			PQclear(res);
		}
		if (t.lost) {
			PQfinish(c->conn);
			c->conn = NULL;
		}
		pg_conn_put(ps, c);
		/* lazy writes (\Recent claims, parse caches) change nothing a
		 * changes query returns: they leave shared queries valid */
		if (mode == PG_WRITE)
			pg_seq_bump(ps);
		if (t.retry)
			continue;
		/* A connection that broke before COMMIT was sent committed
		 * nothing: run once more on a new one (a server restart
		 * breaks every idle connection of the pool). A break during
		 * COMMIT leaves the outcome unknown: the caller is told to
		 * try again later, and the change may or may not be there. */
		if (t.lost && !committing && !reconnected) {
			reconnected = true;
			continue;
		}
		return rc;
	}
	log_warn("event=pgsql_error what=retries error=\"gave up after %d tries\"", PG_TRIES);
	return rc;
}
