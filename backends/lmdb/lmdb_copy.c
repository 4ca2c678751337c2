/*
 * LMDB copy and move: the new records share the source's body.
 */

#include <stdlib.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

struct copy_arg {
	uint64_t id;
	const char *user;
	const char *dest;
	const uint32_t *uids;
	size_t n;
	bool move;
	struct copy_result *res;
};

static int
w_copy(struct lmdb_w *w, void *arg)
{
	struct copy_arg *a = arg;
	struct copy_result *res = a->res;
	struct lmdb_mbox srec, drec, *sp = &srec, *dp;
	struct lmdb_kwtab skw, dkw, *dkp;
	size_t dnkw0;
	uint64_t did, sseq, dseq, bytes = 0;
	int64_t now = (int64_t)time(NULL);
	int rc;

	storage_copy_result_free(res);
	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &srec, &skw)) != 0)
		return rc;
	if ((rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->dest, &did)) != 0)
		return rc;
	if (did == a->id) {
		dp = &srec;
		dkp = &skw;
	} else {
		if ((rc = lmdb_mbox_get(w->txn, w->sh, did, &drec, &dkw)) != 0)
			return rc;
		dp = &drec;
		dkp = &dkw;
	}
	if (sp->noselect || dp->noselect)
		return ROOST_ENOTFOUND;
	dnkw0 = dkp->n;
	sseq = sp->highestmodseq + 1;
	dseq = dp->highestmodseq + 1;
	if (did == a->id)
		dseq = sseq;
	res->src = xreallocarray(NULL, a->n + 1, sizeof(uint32_t));
	res->dst = xreallocarray(NULL, a->n + 1, sizeof(uint32_t));
	for (size_t i = 0; i < a->n; i++) {
		struct lmdb_msg m, nm;
		uint8_t key[12], nkey[12];
		MDB_val k = {12, key}, v;
		uint32_t nuid;

		rc = lmdb_msg_get(w->txn, w->sh, a->id, a->uids[i], &m);
		if (rc == ROOST_ENOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if (dp->uidnext == UINT32_MAX)
			return ROOST_ETOOBIG;
		nm = m;
		nm.keywords = 0;
		for (int b = 0; b < 64; b++) {
			bool full = false;
			int nb;

			if ((m.keywords & (1ULL << b)) == 0 || (size_t)b >= skw.n)
				continue;
			nb = lmdb_kw_index(dkp, skw.names[b], true, &full);
			if (nb < 0)
				return ROOST_ETOOBIG;
			nm.keywords |= 1ULL << nb;
		}
		nm.modseq = dseq;
		nm.save_date = now; /* RFC 8514: put in this mailbox now */
		nuid = dp->uidnext++;
		if ((rc = lmdb_msg_put(w, did, nuid, &nm)) != 0 ||
		    (rc = lmdb_seq_put(w, w->sh->modseq, did, dseq, nuid, "", 0)) != 0 ||
		    (rc = lmdb_body_ref(w, m.sha, NULL, 0, false, NULL, NULL)) != 0)
			return rc;
		/* The parse cache is the same for the same bytes. */
		lmdb_msg_key(key, a->id, a->uids[i]);
		if (mdb_get(w->txn, w->sh->cache, &k, &v) == 0) {
			uint8_t *copy = xmemdup(v.mv_data, v.mv_size);
			MDB_val nk = {12, nkey}, nv = {v.mv_size, copy};

			lmdb_msg_key(nkey, did, nuid);
			rc = lmdb_wput(w, w->sh->cache, &nk, &nv, 0);
			free(copy);
			if (rc != 0)
				return rc;
		}
		dp->messages++;
		dp->recent++;
		if ((nm.flags & MSG_SEEN) == 0) {
			dp->unseen++;
			if ((rc = lmdb_unseen_set(w, did, nuid, true)) != 0)
				return rc;
		}
		dp->size += nm.size;
		bytes += nm.size;
		if (a->move && (rc = lmdb_msg_remove(w, a->id, a->uids[i], &m, sseq, now, sp)) != 0)
			return rc;
		res->src[res->n] = a->uids[i];
		res->dst[res->n++] = nuid;
	}
	res->uidvalidity = dp->uidvalidity;
	if (res->n == 0)
		return 0;
	dp->highestmodseq = dseq;
	if (a->move)
		sp->highestmodseq = sseq;
	if ((rc = lmdb_mbox_put(w, did, dp, dkp->n != dnkw0 ? dkp : NULL)) != 0)
		return rc;
	/* a move leaves the user's usage as it was */
	if (!a->move && (rc = lmdb_quota_add(w, a->user, (int64_t)bytes, (int64_t)res->n)) != 0)
		return rc;
	if (did != a->id && a->move) {
		if ((rc = lmdb_prune_expunged(w, a->id, sp, now)) != 0)
			return rc;
		return lmdb_mbox_put(w, a->id, sp, NULL);
	}
	return 0;
}

int
lmdb_op_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
             struct copy_result *res)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct copy_arg a = {.id = lm->id,
	                     .user = mb->user,
	                     .dest = dest,
	                     .uids = uids,
	                     .n = n,
	                     .move = move,
	                     .res = res};

	return lmdb_write(lm->sh, w_copy, &a);
}
