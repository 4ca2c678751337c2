/*
 * The PostgreSQL backend's store: opened (settings, the connection pool,
 * the node id, the schema set up) and closed, the POP3 maildrop lock on a
 * connection of its own, and the storage_ops table that names every
 * operation of the backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "pgsql_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

/* ---- the store ---- */

static void
pg_close(struct storage *st)
{
	struct pg_store *ps = PS(st);

	pg_listen_stop(ps);
	for (unsigned i = 0; i < ps->n_conns; i++) {
		if (ps->conns[i].conn != NULL)
			PQfinish(ps->conns[i].conn);
	}
	if (ps->stop_pipe[0] >= 0) {
		close(ps->stop_pipe[0]);
		close(ps->stop_pipe[1]);
	}
	pthread_cond_destroy(&ps->freed);
	pthread_mutex_destroy(&ps->lock);
	pg_flights_free(ps);
	pthread_cond_destroy(&ps->flights_cond);
	pthread_mutex_destroy(&ps->flights_lock);
	pthread_cond_destroy(&ps->group_cond);
	pthread_cond_destroy(&ps->listen_cond);
	pthread_mutex_destroy(&ps->group_lock);
	free(ps->conns);
	free(ps->dsn);
	free(ps);
}

static int
pg_open(const struct roost_config *cfg, struct storage **st_r)
{
	struct pg_store *ps;
	int rc;

	*st_r = NULL;
	if (cfg == NULL || cfg->pgsql_dsn == NULL) {
		log_error("event=pgsql_error error=\"[storage] pgsql_dsn is not set\"");
		return ROOST_ECONFIG;
	}
	ps = xcalloc(1, sizeof(*ps));
	ps->dsn = xstrdup(cfg->pgsql_dsn);
	ps->retention = cfg->expunge_log_retention;
	ps->n_conns = cfg->workers > 0 ? cfg->workers : 8;
	ps->conns = xcalloc(ps->n_conns, sizeof(*ps->conns));
	pthread_mutex_init(&ps->lock, NULL);
	pthread_cond_init(&ps->freed, NULL);
	pthread_mutex_init(&ps->flights_lock, NULL);
	pthread_cond_init(&ps->flights_cond, NULL);
	pthread_cond_init(&ps->listen_cond, NULL);
	pthread_mutex_init(&ps->group_lock, NULL);
	pthread_cond_init(&ps->group_cond, NULL);
	ps->group_tail = &ps->group_head;
	ps->group_max = pg_group_max();
	ps->stop_pipe[0] = ps->stop_pipe[1] = -1;
	if (getrandom(&ps->node, sizeof(ps->node), 0) != sizeof(ps->node))
		ps->node = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (pipe2(ps->stop_pipe, O_CLOEXEC) < 0) {
		log_warn("event=pgsql_error op=pipe error=\"%s\" effect=\"no notification from "
		         "other nodes\"",
		         strerror(errno));
		ps->stop_pipe[0] = ps->stop_pipe[1] = -1;
	}
	if ((rc = pg_schema_setup(ps)) != 0) {
		pg_close(&ps->base);
		return rc;
	}
	*st_r = &ps->base;
	return 0;
}

/* ---- the maildrop lock ---- */

/*
 * A session-level advisory lock on a connection of its own, kept for as
 * long as the POP3 session holds the maildrop: PostgreSQL drops it with
 * the connection, so a node that dies frees its users' maildrops. The key
 * is a 64-bit hash of the user name.
 */
struct pg_lock {
	struct storage_lock base;
	PGconn *conn;
};

static int
pg_op_lock_user(struct storage *st, const char *user, struct storage_lock **lock_r)
{
	const char *v[1] = {user};
	struct pg_lock *lk;
	PGconn *conn;
	PGresult *res;
	int rc;

	if ((rc = pg_connect(PS(st)->dsn, &conn)) != 0)
		return rc;
	res = PQexecParams(conn, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, NULL, v,
	                   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_warn("event=pgsql_error what=lock error=%s",
		         LOG_QUOTE(PQresultErrorMessage(res)));
		rc = ROOST_ETEMP;
	} else if (PQgetvalue(res, 0, 0)[0] != 't') {
		rc = ROOST_EINUSE;
	}
	PQclear(res);
	if (rc != 0) {
		PQfinish(conn);
		return rc;
	}
	lk = xcalloc(1, sizeof(*lk));
	lk->conn = conn;
	*lock_r = &lk->base;
	return 0;
}

static void
pg_op_unlock_user(struct storage_lock *lock)
{
	struct pg_lock *lk = container_of(lock, struct pg_lock, base);

	PQfinish(lk->conn);
	free(lk);
}

const struct storage_ops storage_pgsql_ops = {
    .name = "pgsql",
    .open = pg_open,
    .close = pg_close,
    .user_init = pg_op_user_init,
    .list = pg_op_list,
    .create = pg_op_create,
    .delete = pg_op_delete,
    .rename = pg_op_rename,
    .subscribe = pg_op_subscribe,
    .status = pg_op_status,
    .set_uids = pg_op_set_uids,
    .deliver = pg_op_deliver,
    .mailbox_open = pg_op_mailbox_open,
    .mailbox_close = pg_op_mailbox_close,
    .mailbox_status = pg_op_mailbox_status,
    .meta_get = pg_op_meta_get,
    .meta_update = pg_op_meta_update,
    .records = pg_op_records,
    .keywords = pg_op_keywords,
    .claim_recent = pg_op_claim_recent,
    .claim_later = pg_op_claim_later,
    .read = pg_op_read,
    .cache_get = pg_op_cache_get,
    .cache_set = pg_op_cache_set,
    .append = pg_op_append,
    .store = pg_op_store,
    .expunge = pg_op_expunge,
    .copy = pg_op_copy,
    .changes_since = pg_op_changes_since,
    .check = pg_op_check,
    .repair = pg_op_repair,
    .backup = pg_op_backup,
    .stats = pg_op_stats,
    .quota_get = pg_op_quota_get,
    .quota_recalc = pg_op_quota_recalc,
    .lock_user = pg_op_lock_user,
    .unlock_user = pg_op_unlock_user,
};
