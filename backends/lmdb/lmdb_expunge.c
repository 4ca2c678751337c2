/*
 * LMDB expunge: message records removed, the expunge log written and
 * pruned past its retention, body references dropped.
 */

#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"

/* Remove one message record (expunge or the source side of a move). */
int
lmdb_msg_remove(struct lmdb_w *w, uint64_t id, uint32_t uid, const struct lmdb_msg *m, uint64_t seq,
                int64_t now, struct lmdb_mbox *rec)
{
	uint8_t key[12];
	MDB_val k = {12, key};
	int rc;

	lmdb_msg_key(key, id, uid);
	if ((rc = lmdb_wdel(w, w->sh->msgs, &k)) != 0 ||
	    (rc = lmdb_wdel(w, w->sh->cache, &k)) != 0 ||
	    (rc = lmdb_wdel(w, w->sh->unseen, &k)) != 0 ||
	    (rc = lmdb_seq_del(w, id, m->modseq, uid)) != 0 ||
	    (rc = lmdb_seq_put(w, w->sh->expunged, id, seq, uid,
	                       (int64_t[]){now, (int64_t)m->emailid}, 2 * sizeof(now))) != 0 ||
	    (rc = lmdb_body_unref(w, m->sha)) != 0)
		return rc;
	if (rec->messages > 0)
		rec->messages--;
	if (uid >= rec->recent_first && rec->recent > 0)
		rec->recent--;
	if ((m->flags & MSG_SEEN) == 0 && rec->unseen > 0)
		rec->unseen--;
	rec->size = rec->size >= m->size ? rec->size - m->size : 0;
	return 0;
}

#define PRUNE_BATCH 10000

/* Drop expunge-log entries past the retention (bounded work per call). */
int
lmdb_prune_expunged(struct lmdb_w *w, uint64_t id, struct lmdb_mbox *rec, int64_t now)
{
	uint8_t key[8];
	MDB_cursor *cur;
	MDB_val k = {8, key}, v;
	int rc, err = 0;

	if (w->sh->retention == 0)
		return 0;
	lmdb_be64(key, id);
	if ((rc = mdb_cursor_open(w->txn, w->sh->expunged, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (int i = 0; i < PRUNE_BATCH; i++) {
		int64_t when;

		k.mv_size = 8;
		k.mv_data = key;
		if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) != 0 || k.mv_size != 20 ||
		    lmdb_get_be64(k.mv_data) != id || v.mv_size < sizeof(when))
			break;
		memcpy(&when, v.mv_data, sizeof(when));
		if (when >= now - (int64_t)w->sh->retention)
			break;
		if (lmdb_get_be64((const uint8_t *)k.mv_data + 8) > rec->expunge_floor)
			rec->expunge_floor = lmdb_get_be64((const uint8_t *)k.mv_data + 8);
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			if (w->mdb_err == 0)
				w->mdb_err = rc;
			err = lmdb_err("prune", rc);
			break;
		}
	}
	mdb_cursor_close(cur);
	return err;
}

struct expunge_arg {
	const char *user;
	uint64_t id;
	const uint32_t *uids;
	size_t n;
};

static int
w_expunge(struct lmdb_w *w, void *arg)
{
	struct expunge_arg *a = arg;
	struct lmdb_mbox rec;
	int64_t now = (int64_t)time(NULL);
	uint64_t seq;
	uint64_t bytes = 0, count = 0;
	bool any = false;
	int rc;

	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &rec, NULL)) != 0)
		return rc;
	if (rec.noselect)
		return ROOST_ENOTFOUND;
	seq = rec.highestmodseq + 1;
	for (size_t i = 0; i < a->n; i++) {
		struct lmdb_msg m;

		rc = lmdb_msg_get(w->txn, w->sh, a->id, a->uids[i], &m);
		if (rc == ROOST_ENOTFOUND)
			continue;
		if (rc != 0 ||
		    (rc = lmdb_msg_remove(w, a->id, a->uids[i], &m, seq, now, &rec)) != 0)
			return rc;
		bytes += m.size;
		count++;
		any = true;
	}
	if (!any)
		return 0;
	rec.highestmodseq = seq;
	if ((rc = lmdb_prune_expunged(w, a->id, &rec, now)) != 0 ||
	    (rc = lmdb_mbox_put(w, a->id, &rec, NULL)) != 0)
		return rc;
	return lmdb_quota_add(w, a->user, -(int64_t)bytes, -(int64_t)count);
}

int
lmdb_op_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct expunge_arg a = {.user = mb->user, .id = lm->id, .uids = uids, .n = n};

	return lmdb_write(lm->sh, w_expunge, &a);
}
