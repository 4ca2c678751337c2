/*
 * "What changed since MODSEQ m" on the PostgreSQL backend: changed
 * records and expunged UIDs, the latter marked incomplete when m is below
 * the expunge floor (the log was pruned past it).
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

struct changes_arg {
	int64_t id;
	uint64_t since;
	struct mailbox_changes *ch;
};

static int
t_changes(struct pg_txn *t, void *arg)
{
	struct changes_arg *a = arg;
	struct mailbox_changes *ch = a->ch;
	struct pg_params p = {.n = 0};
	PGresult *res;
	uint64_t floor;
	int rc;

	mailbox_changes_free(ch);
	if ((rc = pg_mbox_row(t, a->id, &ch->highestmodseq, &ch->uidnext, &floor)) != 0)
		return rc;
	ch->expunged_complete = a->since >= floor;
	pg_p_int(&p, a->id);
	pg_p_int(&p, (int64_t)a->since);
	rc = pg_exec(t,
	             "SELECT " REC_COLS " FROM messages WHERE mailbox_id = $1 AND modseq > $2 "
	             "ORDER BY uid",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	ch->n_changed = (size_t)PQntuples(res);
	ch->changed = xcalloc(ch->n_changed + 1, sizeof(*ch->changed));
	for (size_t i = 0; i < ch->n_changed; i++)
		pg_rec_fill(&ch->changed[i], res, (int)i);
	PQclear(res);
	rc = pg_exec(t,
	             "SELECT uid, coalesce(emailid, 0) FROM expunged WHERE mailbox_id = $1 AND "
	             "modseq > $2 ORDER BY uid",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	ch->n_expunged = (size_t)PQntuples(res);
	ch->expunged = xcalloc(ch->n_expunged + 1, sizeof(*ch->expunged));
	ch->expunged_emailids = xcalloc(ch->n_expunged + 1, sizeof(*ch->expunged_emailids));
	for (size_t i = 0; i < ch->n_expunged; i++) {
		ch->expunged[i] = (uint32_t)pg_int(res, (int)i, 0);
		ch->expunged_emailids[i] = (uint64_t)pg_int(res, (int)i, 1);
	}
	PQclear(res);
	return 0;
}

int
pg_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r)
{
	struct changes_arg a = {.id = PM(mb)->id, .since = modseq, .ch = changes_r};
	int rc = pg_run(PM(mb)->ps, PG_READ, t_changes, &a);

	if (rc != 0)
		mailbox_changes_free(changes_r);
	return rc;
}
