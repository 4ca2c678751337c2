/*
 * LMDB changes-since: new and changed UIDs from the modseq index,
 * expunged ones from the expunge log.
 */

#include <stdlib.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

static int
rec_cmp(const void *a, const void *b)
{
	return uid_cmp(&((const struct msg_record *)a)->uid, &((const struct msg_record *)b)->uid);
}

struct exp_pair {
	uint32_t uid;
	uint64_t emailid;
};

static int
pair_cmp(const void *a, const void *b)
{
	return uid_cmp(&((const struct exp_pair *)a)->uid, &((const struct exp_pair *)b)->uid);
}

/* UIDs of dbi entries (id, modseq > since, uid); with emailids_r (the
 * expunge log, whose value is the time and, since EMAILIDs, the id) their
 * EMAILIDs too. More than max entries: ROOST_EAGAIN. */
static int
seq_scan(MDB_txn *txn, MDB_dbi dbi, uint64_t id, uint64_t since, size_t max, uint32_t **uids_r,
         size_t *n_r, uint64_t **emailids_r)
{
	struct exp_pair *pairs = NULL;
	uint8_t key[20];
	MDB_cursor *cur;
	MDB_val k = {20, key}, v;
	uint32_t *uids = NULL;
	size_t n = 0, cap = 0;
	int rc;

	lmdb_seq_key(key, id, since == UINT64_MAX ? since : since + 1, 0);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 20 || lmdb_get_be64(k.mv_data) != id)
			break;
		if (n == max) {
			mdb_cursor_close(cur);
			free(pairs);
			return ROOST_EAGAIN;
		}
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			pairs = xreallocarray(pairs, cap, sizeof(*pairs));
		}
		pairs[n].uid = lmdb_get_be32((const uint8_t *)k.mv_data + 16);
		pairs[n].emailid = 0;
		if (v.mv_size >= 16)
			memcpy(&pairs[n].emailid, (const uint8_t *)v.mv_data + 8, 8);
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		free(pairs);
		return lmdb_err("scan", rc);
	}
	if (n > 1) /* qsort(NULL, 0) is undefined */
		qsort(pairs, n, sizeof(*pairs), pair_cmp);
	uids = xreallocarray(NULL, n + 1, sizeof(*uids));
	for (size_t i = 0; i < n; i++)
		uids[i] = pairs[i].uid;
	if (emailids_r != NULL) {
		*emailids_r = xreallocarray(NULL, n + 1, sizeof(**emailids_r));
		for (size_t i = 0; i < n; i++)
			(*emailids_r)[i] = pairs[i].emailid;
	}
	free(pairs);
	*uids_r = uids;
	*n_r = n;
	return 0;
}

/* max: see changes_since_nb in storage_impl.h (SIZE_MAX: no bound). */
static int
changes_read(struct mailbox *mb, uint64_t modseq, size_t max, struct mailbox_changes *ch)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct lmdb_mbox rec;
	uint32_t *uids = NULL;
	size_t n = 0;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	if ((rc = lmdb_cur_rec(txn, lm, &rec, NULL)) != 0)
		goto out;
	ch->highestmodseq = rec.highestmodseq;
	ch->uidnext = rec.uidnext;
	ch->expunged_complete = modseq >= rec.expunge_floor;
	if (max != SIZE_MAX && !ch->expunged_complete) {
		rc = ROOST_EAGAIN;
		goto out;
	}
	if ((rc = seq_scan(txn, lm->sh->modseq, lm->id, modseq, max, &uids, &n, NULL)) != 0)
		goto out;
	ch->changed = xreallocarray(NULL, n + 1, sizeof(*ch->changed));
	if (n > 64 && n > rec.messages / 8) {
		/* Much changed: one sequential pass beats a lookup per UID. */
		struct lmdb_msg_iter it;

		if ((rc = lmdb_msg_iter_open(&it, txn, lm->sh, lm->id, 0)) != 0) {
			rc = lmdb_err("cursor", rc);
			goto out;
		}
		while (lmdb_msg_iter_next(&it)) {
			struct lmdb_msg m;

			if (!lmdb_msg_decode(&it.v, lm->id, it.uid, &m))
				continue;
			if (m.modseq <= modseq || ch->n_changed == n)
				continue;
			lmdb_rec_out(&ch->changed[ch->n_changed++], it.uid, &m);
		}
		lmdb_msg_iter_close(&it);
	} else {
		for (size_t i = 0; i < n; i++) {
			struct lmdb_msg m;

			if (i > 0 && uids[i] == uids[i - 1])
				continue;
			if (lmdb_msg_get(txn, lm->sh, lm->id, uids[i], &m) != 0)
				continue;
			lmdb_rec_out(&ch->changed[ch->n_changed++], uids[i], &m);
		}
		if (ch->n_changed > 1)
			qsort(ch->changed, ch->n_changed, sizeof(*ch->changed), rec_cmp);
	}
	rc = seq_scan(txn, lm->sh->expunged, lm->id, modseq, max, &ch->expunged, &ch->n_expunged,
	              &ch->expunged_emailids);
out:
	lmdb_rtxn_end(lm->sh, txn);
	free(uids);
	if (rc != 0)
		mailbox_changes_free(ch);
	return rc;
}

int
lmdb_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *ch)
{
	return changes_read(mb, modseq, SIZE_MAX, ch);
}

/* A read snapshot of the map never waits (lmdb_rtxn_begin() waits only
 * for a map resize, which holds its lock for the remap alone). */
int
lmdb_op_changes_since_nb(struct mailbox *mb, uint64_t modseq, size_t max,
                         struct mailbox_changes *ch)
{
	return changes_read(mb, modseq, max, ch);
}
