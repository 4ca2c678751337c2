/*
 * LMDB \Recent claims, decided in memory and written by a later group
 * commit.
 */

#include <stdlib.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/xalloc.h"

/*
 * \Recent (RFC 3501 2.3.2): the mailbox's boundary moves to UIDNEXT and the
 * claimer gets the old one, so each new message is recent for one session.
 * The decision is taken under claim_lock against the boundary this process
 * last gave out (sh->claims), which may be ahead of the database; the
 * database follows in the next group commit (w_claim, not waited for). Only
 * `roost serve` claims, so the table is the whole truth, and a crash before
 * the commit at worst shows a message as recent once more.
 */
struct claim_arg {
	uint64_t id;
	uint32_t first;
};

static size_t
claim_find(const struct lmdb_shard *sh, uint64_t id)
{
	size_t i;

	for (i = 0; i < sh->n_claims; i++) {
		if (sh->claims[i].id == id)
			break;
	}
	return i;
}

uint32_t
lmdb_claim_boundary(struct lmdb_shard *sh, uint64_t id)
{
	uint32_t first = 0;
	size_t i;

	pthread_mutex_lock(&sh->claim_lock);
	i = claim_find(sh, id);
	if (i < sh->n_claims)
		first = sh->claims[i].first;
	pthread_mutex_unlock(&sh->claim_lock);
	return first;
}

static int
claim_cmp(const void *a, const void *b)
{
	const struct lmdb_claim *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/*
 * Forget the claims the database already holds (or whose mailbox is gone).
 * Called without claim_lock: a read transaction takes the map lock, which
 * lmdb_status_fill() holds when it takes claim_lock.
 */
static void
claims_prune(struct lmdb_shard *sh)
{
	struct lmdb_claim *done;
	struct lmdb_mbox rec;
	MDB_txn *txn;
	size_t n, i, j, k;

	pthread_mutex_lock(&sh->claim_lock);
	n = sh->n_claims;
	done = xreallocarray(NULL, n + 1, sizeof(*done));
	memcpy(done, sh->claims, n * sizeof(*done));
	pthread_mutex_unlock(&sh->claim_lock);
	if (lmdb_rtxn_begin(sh, &txn) != 0) {
		free(done);
		return;
	}
	for (i = k = 0; i < n; i++) {
		if (lmdb_mbox_get(txn, sh, done[i].id, &rec, NULL) != 0 ||
		    rec.recent_first >= done[i].first)
			done[k++] = done[i];
	}
	lmdb_rtxn_end(sh, txn);
	if (k > 1)
		qsort(done, k, sizeof(*done), claim_cmp);
	pthread_mutex_lock(&sh->claim_lock);
	for (i = j = 0; i < sh->n_claims; i++) {
		if (bsearch(&sh->claims[i], done, k, sizeof(*done), claim_cmp) == NULL)
			sh->claims[j++] = sh->claims[i];
	}
	if (j < sh->n_claims)
		sh->claims_forgotten++;
	sh->n_claims = j;
	sh->prune_at = j * 2 > 64 ? j * 2 : 64;
	pthread_mutex_unlock(&sh->claim_lock);
	free(done);
}

/* Move the stored boundary up to a->first, uncounting the messages below it. */
static int
w_claim(struct lmdb_w *w, void *arg)
{
	struct claim_arg *a = arg;
	struct lmdb_mbox rec;
	uint8_t key[12];
	MDB_cursor *cur;
	MDB_val k = {12, key}, v;
	uint32_t n = 0;
	int rc;

	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &rec, NULL)) != 0)
		return rc;
	if (a->first <= rec.recent_first || a->first > rec.uidnext)
		return 0;
	if ((rc = mdb_cursor_open(w->txn, w->sh->msgs, &cur)) != 0)
		return lmdb_err("cursor", rc);
	lmdb_msg_key(key, a->id, rec.recent_first);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 12 || lmdb_get_be64(k.mv_data) != a->id ||
		    lmdb_get_be32((const uint8_t *)k.mv_data + 8) >= a->first)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err("claim", rc);
	rec.recent = rec.recent > n ? rec.recent - n : 0;
	rec.recent_first = a->first;
	return lmdb_mbox_put(w, a->id, &rec, NULL);
}

int
lmdb_op_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct lmdb_shard *sh = lm->sh;
	struct claim_arg *a;
	struct lmdb_mbox rec;
	MDB_txn *txn;
	uint64_t forgotten;
	uint32_t first;
	size_t i;
	bool prune;
	int rc;

	/*
	 * The boundary is the database's (the snapshot read below) or this
	 * process's newer claim. A claim forgotten between the snapshot and
	 * the lock was one the snapshot may not hold: the session would take
	 * again what another session already took. Read again then.
	 */
	pthread_mutex_lock(&sh->claim_lock);
	for (;;) {
		forgotten = sh->claims_forgotten;
		pthread_mutex_unlock(&sh->claim_lock);
		if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
			return rc;
		rc = lmdb_cur_rec(txn, lm, &rec, NULL);
		lmdb_rtxn_end(sh, txn);
		if (rc != 0)
			return rc;
		pthread_mutex_lock(&sh->claim_lock);
		if (sh->claims_forgotten == forgotten)
			break;
	}
	first = rec.recent_first;
	i = claim_find(sh, lm->id);
	if (i < sh->n_claims) {
		if (sh->claims[i].first > first) {
			first = sh->claims[i].first;
		} else {
			sh->claims[i] = sh->claims[--sh->n_claims];
			sh->claims_forgotten++;
		}
	}
	*first_recent_uid_r = first;
	*next_r = first;
	if (first >= rec.uidnext || (mb->flags & MAILBOX_READONLY) != 0) {
		pthread_mutex_unlock(&sh->claim_lock);
		return 0;
	}
	i = claim_find(sh, lm->id);
	if (i == sh->n_claims) {
		if (sh->n_claims == sh->cap_claims) {
			sh->cap_claims = sh->cap_claims == 0 ? 64 : sh->cap_claims * 2;
			sh->claims = xreallocarray(sh->claims, sh->cap_claims, sizeof(*sh->claims));
		}
		i = sh->n_claims++;
		sh->claims[i].id = lm->id;
	}
	sh->claims[i].first = rec.uidnext;
	prune = sh->n_claims >= (sh->prune_at > 0 ? sh->prune_at : 64);
	pthread_mutex_unlock(&sh->claim_lock);
	*next_r = rec.uidnext;
	a = xmalloc(sizeof(*a));
	a->id = lm->id;
	a->first = rec.uidnext;
	lmdb_write_async(sh, w_claim, a, sizeof(*a), free);
	if (prune)
		claims_prune(sh);
	return 0;
}
