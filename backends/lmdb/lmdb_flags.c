/*
 * LMDB flag and keyword changes (STORE), with UNCHANGEDSINCE.
 */

#include <stdlib.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

struct store_arg {
	uint64_t id;
	const uint32_t *uids;
	size_t n;
	const struct store_req *req;
	struct store_result *res;
};

static int
w_store(struct lmdb_w *w, void *arg)
{
	struct store_arg *a = arg;
	const struct store_req *req = a->req;
	struct lmdb_mbox rec;
	struct lmdb_kwtab kw;
	uint64_t kwbits = 0, newseq;
	size_t nkw0;
	bool changed = false;
	int rc;

	storage_store_result_free(a->res);
	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &rec, &kw)) != 0)
		return rc;
	if (rec.noselect)
		return ROOST_ENOTFOUND;
	nkw0 = kw.n;
	for (size_t i = 0; i < req->n_keywords; i++) {
		bool full = false;
		int bit = lmdb_kw_index(&kw, req->keywords[i], req->mode != STORE_REMOVE, &full);

		if (full)
			return ROOST_ETOOBIG;
		if (bit >= 0)
			kwbits |= 1ULL << bit;
	}
	newseq = rec.highestmodseq + 1;
	for (size_t i = 0; i < a->n; i++) {
		struct lmdb_msg m;
		uint32_t nf;
		uint64_t nk;

		rc = lmdb_msg_get(w->txn, w->sh, a->id, a->uids[i], &m);
		if (rc == ROOST_ENOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if (req->unchanged_since != 0 && m.modseq > req->unchanged_since) {
			storage_store_result_add(a->res, a->uids[i]);
			continue;
		}
		nf = (uint32_t)storage_store_bits(req->mode, m.flags, req->flags);
		nk = storage_store_bits(req->mode, m.keywords, kwbits);
		if (nf == m.flags && nk == m.keywords)
			continue;
		if ((rc = lmdb_seq_del(w, a->id, m.modseq, a->uids[i])) != 0)
			return rc;
		if ((m.flags & MSG_SEEN) != (nf & MSG_SEEN)) {
			bool unseen = (nf & MSG_SEEN) == 0;

			if (unseen)
				rec.unseen++;
			else if (rec.unseen > 0)
				rec.unseen--;
			if ((rc = lmdb_unseen_set(w, a->id, a->uids[i], unseen)) != 0)
				return rc;
		}
		m.flags = nf;
		m.keywords = nk;
		m.modseq = newseq;
		if ((rc = lmdb_msg_put(w, a->id, a->uids[i], &m)) != 0 ||
		    (rc = lmdb_seq_put(w, w->sh->modseq, a->id, newseq, a->uids[i], "", 0)) != 0)
			return rc;
		changed = true;
	}
	if (changed)
		rec.highestmodseq = newseq;
	if (changed || kw.n != nkw0)
		return lmdb_mbox_put(w, a->id, &rec, kw.n != nkw0 ? &kw : NULL);
	return 0;
}

int
lmdb_op_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
              struct store_result *res)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct store_arg a = {.id = lm->id, .uids = uids, .n = n, .req = req, .res = res};

	return lmdb_write(lm->sh, w_store, &a);
}
