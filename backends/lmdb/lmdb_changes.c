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

/*
 * One answer for the sessions of a mailbox. A delivery wakes every session
 * of the mailbox at once (20 of issue 20's 1,000 idlers per user), all at
 * the same modseq, and each read the same changes in a snapshot of its own:
 * two index scans, a record per new UID and seven allocations each. The
 * memo keeps, per slot (the mailbox's id hashed), the last answer read
 * from `since` on with its snapshot's transaction id; a later question of
 * the same mailbox at the same `since` takes a copy of it when nothing
 * committed since that snapshot (the map's last transaction id, read
 * without a snapshot), or when a snapshot's mailbox record shows the same
 * HIGHESTMODSEQ and UIDNEXT (every change of the mailbox's messages moves
 * its HIGHESTMODSEQ; a \Recent claim or another mailbox's commit does
 * not). Sessions at other modseqs read as before. A copy, not a shared
 * reference: the caller owns and frees what it gets, as from a read, and
 * the memo stays bounded (MEMO_SLOTS answers of at most MEMO_MAX records
 * each, about 200 KB at most per shard). Lock rule: memo_lock protects
 * memo[]; it is only ever tried, never waited for (a miss costs a read).
 */
#define MEMO_SLOTS 64
#define MEMO_MAX 32

struct lmdb_changes_memo {
	uint64_t id;          /* 0: empty */
	uint32_t uidvalidity; /* the mailbox's when it gave this answer */
	uint64_t since;
	uint64_t txnid; /* the newest snapshot known to give this answer */
	struct mailbox_changes ch;
};

void
lmdb_changes_memo_init(struct lmdb_shard *sh)
{
	pthread_mutex_init(&sh->memo_lock, NULL);
	sh->memo = xcalloc(MEMO_SLOTS, sizeof(*sh->memo));
}

void
lmdb_changes_memo_free(struct lmdb_shard *sh)
{
	if (sh->memo == NULL)
		return;
	for (size_t i = 0; i < MEMO_SLOTS; i++)
		mailbox_changes_free(&sh->memo[i].ch);
	free(sh->memo);
	sh->memo = NULL;
	pthread_mutex_destroy(&sh->memo_lock);
}

static void *
dup_array(const void *p, size_t n, size_t size)
{
	void *d = xreallocarray(NULL, n + 1, size);

	if (n > 0)
		memcpy(d, p, n * size);
	return d;
}

static void
changes_copy(struct mailbox_changes *dst, const struct mailbox_changes *src)
{
	*dst = *src;
	dst->changed = dup_array(src->changed, src->n_changed, sizeof(*src->changed));
	dst->expunged = dup_array(src->expunged, src->n_expunged, sizeof(*src->expunged));
	dst->expunged_emailids = src->expunged_emailids != NULL
	                             ? dup_array(src->expunged_emailids, src->n_expunged,
	                                         sizeof(*src->expunged_emailids))
	                             : NULL;
}

static struct lmdb_changes_memo *
memo_slot(struct lmdb_shard *sh, uint64_t id)
{
	return &sh->memo[(id * 0x9E3779B97F4A7C15ull) >> 58];
}

/* Take a copy of the memo of (id, since) for the caller when it was read
 * in snapshot txnid, or (rec != NULL) when rec, read in snapshot txnid,
 * shows the mailbox as the memo's answer left it; then that snapshot
 * gives the same answer, and the memo says so for the next caller. */
static bool
memo_take(struct lmdb_shard *sh, const struct lmdb_mailbox *lm, uint64_t since, size_t max,
          uint64_t txnid, const struct lmdb_mbox *rec, struct mailbox_changes *ch)
{
	uint64_t id = lm->id;
	struct lmdb_changes_memo *m = memo_slot(sh, id);
	bool hit;

	/* Both loops wake the same mailbox's sessions at once: one that finds
	 * the memo taken reads for itself rather than wait (a holder
	 * preempted on a loaded machine held the other loop asleep). */
	if (pthread_mutex_trylock(&sh->memo_lock) != 0)
		return false;
	/* a handle of the mailbox as it was before it was deleted and made
	 * again under its id (lmdb_cur_rec()) is not answered for the new one */
	hit = m->id == id && m->uidvalidity == lm->uidvalidity && m->since == since &&
	      m->ch.n_changed <= max && m->ch.n_expunged <= max;
	if (hit && rec == NULL)
		hit = m->txnid == txnid;
	else if (hit)
		hit = rec->highestmodseq == m->ch.highestmodseq && rec->uidnext == m->ch.uidnext &&
		      since >= rec->expunge_floor;
	if (hit) {
		changes_copy(ch, &m->ch);
		if (txnid > m->txnid)
			m->txnid = txnid;
	}
	pthread_mutex_unlock(&sh->memo_lock);
	return hit;
}

/* Keep a copy of a complete, small answer read in snapshot txnid. */
static void
memo_put(struct lmdb_shard *sh, const struct lmdb_mailbox *lm, uint64_t since, uint64_t txnid,
         const struct mailbox_changes *ch)
{
	uint64_t id = lm->id;
	struct lmdb_changes_memo *m = memo_slot(sh, id);

	if (!ch->expunged_complete || ch->n_changed > MEMO_MAX || ch->n_expunged > MEMO_MAX)
		return;
	if (pthread_mutex_trylock(&sh->memo_lock) != 0)
		return; /* as in memo_take(): never wait for the memo */
	/* an older snapshot's answer does not replace a newer one's */
	if (m->id != id || m->uidvalidity != lm->uidvalidity || m->since != since ||
	    txnid >= m->txnid) {
		mailbox_changes_free(&m->ch);
		changes_copy(&m->ch, ch);
		m->id = id;
		m->uidvalidity = lm->uidvalidity;
		m->since = since;
		m->txnid = txnid;
	}
	pthread_mutex_unlock(&sh->memo_lock);
}

/* The map's last committed transaction: what a snapshot begun now would
 * see. Under the map lock, since a resize moves the meta pages. */
static uint64_t
last_txnid(struct lmdb_shard *sh)
{
	MDB_envinfo info;

	pthread_rwlock_rdlock(&sh->maplock);
	if (mdb_env_info(sh->env, &info) != 0)
		info.me_last_txnid = 0;
	pthread_rwlock_unlock(&sh->maplock);
	return info.me_last_txnid;
}

/* max: see changes_since_nb in storage_impl.h (SIZE_MAX: no bound; such
 * answers neither use nor fill the memo). */
static int
changes_read(struct mailbox *mb, uint64_t modseq, size_t max, struct mailbox_changes *ch)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct lmdb_mbox rec;
	uint32_t *uids = NULL;
	size_t n = 0;
	MDB_txn *txn;
	bool memo = max != SIZE_MAX;
	uint64_t txnid;
	int rc;

	if (memo && (txnid = last_txnid(lm->sh)) != 0 &&
	    memo_take(lm->sh, lm, modseq, max, txnid, NULL, ch))
		return 0;
	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	txnid = mdb_txn_id(txn);
	if ((rc = lmdb_cur_rec(txn, lm, &rec, NULL)) != 0)
		goto out;
	if (memo && memo_take(lm->sh, lm, modseq, max, txnid, &rec, ch))
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
	if (rc == 0 && memo)
		memo_put(lm->sh, lm, modseq, txnid, ch);
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
