/*
 * The read side of an open LMDB mailbox: open and close, status, the
 * message records, the keyword table and zero-copy reads of a body.
 */

#include <stdlib.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

int
lmdb_op_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                     struct mailbox **mb_r)
{
	struct lmdb_shard *sh = lmdb_st_shard(st, user);
	struct lmdb_mailbox *lm;
	struct lmdb_mbox rec;
	MDB_txn *txn;
	uint64_t id;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	rc = lmdb_mbox_selectable(txn, sh, user, name, &id, &rec);
	lmdb_rtxn_end(sh, txn);
	if (rc != 0)
		return rc;
	lm = xcalloc(1, sizeof(*lm));
	lm->sh = sh;
	lm->id = id;
	lm->uidvalidity = rec.uidvalidity;
	*mb_r = &lm->base;
	return 0;
}

void
lmdb_op_mailbox_close(struct mailbox *mb)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);

	free(lm->kw_blob);
	free(lm);
}

/* The mailbox record, or ROOST_ENOTFOUND once it was deleted (or renamed
 * over and re-created: ids are never reused), also when it was deleted
 * with children and created again before this handle looked: that keeps
 * the \Noselect parent's id under a new UIDVALIDITY (w_create()), and
 * this handle's messages are gone. */
int
lmdb_cur_rec(MDB_txn *txn, struct lmdb_mailbox *lm, struct lmdb_mbox *rec, struct lmdb_kwtab *kw)
{
	int rc = lmdb_mbox_get(txn, lm->sh, lm->id, rec, kw);

	if (rc == 0 && (rec->noselect || rec->uidvalidity != lm->uidvalidity))
		rc = ROOST_ENOTFOUND;
	return rc;
}

int
lmdb_op_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);

	return lmdb_status_read(lm->sh, NULL, NULL, lm->id, status_r);
}

void
lmdb_rec_out(struct msg_record *r, uint32_t uid, const struct lmdb_msg *m)
{
	r->uid = uid;
	r->flags = m->flags;
	r->keywords = m->keywords;
	r->modseq = m->modseq;
	r->internal_date = m->internal_date;
	r->size = m->size;
	r->emailid = m->emailid;
	r->save_date = m->save_date;
}

int
lmdb_op_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct msg_record *recs = NULL;
	struct lmdb_mbox rec;
	struct lmdb_msg_iter it;
	MDB_txn *txn;
	size_t n = 0, cap;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	if ((rc = lmdb_cur_rec(txn, lm, &rec, NULL)) != 0)
		goto out;
	if ((rc = lmdb_msg_iter_open(&it, txn, lm->sh, lm->id, 0)) != 0) {
		rc = lmdb_err("cursor", rc);
		goto out;
	}
	cap = rec.messages + 16;
	recs = xreallocarray(NULL, cap, sizeof(*recs));
	while (lmdb_msg_iter_next(&it)) {
		struct lmdb_msg m;

		if (!lmdb_msg_decode(&it.v, lm->id, it.uid, &m))
			continue;
		if (n == cap) {
			cap *= 2;
			recs = xreallocarray(recs, cap, sizeof(*recs));
		}
		lmdb_rec_out(&recs[n++], it.uid, &m);
	}
	lmdb_msg_iter_close(&it);
	rc = it.rc == 0 ? 0 : lmdb_err("records", it.rc);
	if (modseq_r != NULL)
		*modseq_r = rec.highestmodseq;
out:
	lmdb_rtxn_end(lm->sh, txn);
	if (rc != 0) {
		free(recs);
		return rc;
	}
	*recs_r = recs;
	*n_r = n;
	return 0;
}

int
lmdb_op_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct lmdb_mbox rec;
	struct lmdb_kwtab kw;
	MDB_txn *txn;
	size_t total = 0, off = 0;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	rc = lmdb_cur_rec(txn, lm, &rec, &kw);
	lmdb_rtxn_end(lm->sh, txn);
	if (rc != 0)
		return rc;
	free(lm->kw_blob);
	for (size_t i = 0; i < kw.n; i++)
		total += strlen(kw.names[i]) + 1;
	lm->kw_blob = xmalloc(total + 1);
	for (size_t i = 0; i < kw.n; i++) {
		size_t len = strlen(kw.names[i]) + 1;

		memcpy(lm->kw_blob + off, kw.names[i], len);
		lm->kw_names[i] = lm->kw_blob + off;
		off += len;
	}
	lm->n_kw = kw.n;
	*names_r = lm->kw_names;
	*n_r = lm->n_kw;
	return 0;
}

static void
view_release(struct msg_view *view)
{
	lmdb_rtxn_end(view->priv[0], view->priv[1]);
	view->priv[0] = view->priv[1] = NULL;
}

int
lmdb_op_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	char name[LMDB_BLOB_NAME_LEN + 1];
	struct lmdb_msg m;
	MDB_txn *txn;
	MDB_val k = {LMDB_SHA_LEN, NULL}, v;
	int rc;

	for (int tries = 0;; tries++) {
		if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
			return rc;
		if ((rc = lmdb_msg_get(txn, lm->sh, lm->id, uid, &m)) != 0)
			goto fail;
		k.mv_data = m.sha;
		if ((rc = mdb_get(txn, lm->sh->bodies, &k, &v)) == 0)
			break;
		if (rc != MDB_NOTFOUND || mdb_get(txn, lm->sh->files, &k, &v) != 0 ||
		    !lmdb_blob_name_valid(&v, m.sha)) {
			log_error("event=lmdb_error path=%s uid=%u error=\"body missing\"",
			          lm->sh->path, uid);
			rc = ROOST_EIO;
			goto fail;
		}
		/* A body file: mapped without a transaction held. */
		memcpy(name, v.mv_data, LMDB_BLOB_NAME_LEN);
		name[LMDB_BLOB_NAME_LEN] = '\0';
		lmdb_rtxn_end(lm->sh, txn);
		rc = lmdb_blob_view(lm->sh, name, m.size, view_r);
		/* Gone: expunged since the snapshot (the next one says so), or
		 * lost (then an error). */
		if (rc != ROOST_ENOTFOUND || tries > 0)
			return rc == ROOST_ENOTFOUND ? ROOST_EIO : rc;
	}
	/* Zero-copy into the map, under a read transaction: the caller
	 * releases it within its step and reads again by UID (storage.h). */
	view_r->data = v.mv_data;
	view_r->len = v.mv_size;
	view_r->holdable = false;
	view_r->priv[0] = lm->sh;
	view_r->priv[1] = txn;
	view_r->release = view_release;
	return 0;
fail:
	lmdb_rtxn_end(lm->sh, txn);
	return rc;
}
