/*
 * Expunge on the PostgreSQL backend: the messages removed and logged at a
 * new MODSEQ for changes_since(), the log pruned past the retention.
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

/* Drop expunge-log entries past the retention, raising the floor below
 * which changes_since() can no longer list every expunged UID. */
static int
prune_expunged(struct pg_txn *t, int64_t id)
{
	struct pg_params p = {.n = 0};

	if (t->ps->retention == 0)
		return 0;
	pg_p_int(&p, id);
	pg_p_int(&p, (int64_t)time(NULL) - (int64_t)t->ps->retention);
	return pg_exec(t,
	               "WITH d AS (DELETE FROM expunged WHERE mailbox_id = $1 AND at < $2 "
	               "RETURNING modseq) UPDATE mailboxes SET expunge_floor = GREATEST("
	               "expunge_floor, (SELECT max(modseq) FROM d)) WHERE id = $1 AND EXISTS "
	               "(SELECT 1 FROM d)",
	               &p, false, NULL);
}

/* Remove uids of mailbox id (locked by the caller), logging them at the
 * next MODSEQ; *gone_r is how many went. */
int
pg_remove_uids(struct pg_txn *t, int64_t id, const uint32_t *uids, size_t n, int64_t *gone_r,
               uint64_t *modseq_r)
{
	struct pg_params p = {.n = 0};
	struct buf ua = BUF_INIT(0);
	PGresult *res;
	int rc;

	*gone_r = 0;
	*modseq_r = 0;
	if ((rc = prune_expunged(t, id)) != 0)
		return rc;
	pg_int_array(&ua, uids, n);
	pg_p_int(&p, id);
	pg_p_str(&p, buf_cstr(&ua));
	pg_p_int(&p, (int64_t)time(NULL));
	rc = pg_exec(
	    t,
	    "WITH m AS (SELECT highestmodseq + 1 AS seq FROM mailboxes WHERE id = $1), "
	    "gone AS (DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY "
	    "($2::bigint[]) RETURNING uid, sha, emailid), "
	    "log AS (INSERT INTO expunged (mailbox_id, uid, modseq, at, emailid) SELECT $1, "
	    "gone.uid, m.seq, $3, gone.emailid FROM gone, m), "
	    "c AS (SELECT sha, count(*) AS n FROM gone GROUP BY sha), "
	    "u AS (UPDATE bodies b SET refs = b.refs - c.n FROM c WHERE b.sha = c.sha) "
	    "SELECT count(*) FROM gone",
	    &p, false, &res);
	buf_free(&ua);
	if (rc != 0)
		return rc;
	*gone_r = pg_int(res, 0, 0);
	PQclear(res);
	if (*gone_r == 0)
		return 0;
	p.n = 1;
	if ((rc =
	         pg_exec_row(t,
	                     "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1 "
	                     "RETURNING highestmodseq",
	                     &p, false, &res)) != 0)
		return rc == ROOST_ENOTFOUND ? ROOST_EIO : rc;
	*modseq_r = (uint64_t)pg_int(res, 0, 0);
	PQclear(res);
	return pg_bodies_collect(t);
}

struct expunge_arg {
	struct mailbox *mb;
	const uint32_t *uids;
	size_t n;
};

static int
t_expunge(struct pg_txn *t, void *arg)
{
	struct expunge_arg *a = arg;
	int64_t id = PM(a->mb)->id, gone;
	uint64_t modseq;
	bool noselect;
	int rc;

	if ((rc = pg_mbox_lock(t, id, &noselect)) != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	if ((rc = pg_remove_uids(t, id, a->uids, a->n, &gone, &modseq)) != 0)
		return rc;
	return gone > 0 ? pg_notify_id(t, a->mb->user, a->mb->name, id, modseq) : 0;
}

int
pg_op_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct expunge_arg a = {.mb = mb, .uids = uids, .n = n};

	return pg_run(PM(mb)->ps, PG_WRITE, t_expunge, &a);
}
