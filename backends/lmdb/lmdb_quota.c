/*
 * LMDB quota usage: one record per user in the quota database, the sum of
 * the sizes and the number of the user's messages, changed by the same
 * write transaction that adds or removes a message record (append,
 * deliver, copy, expunge, delete), so it is exact at every commit and a
 * crash cannot separate the two.
 *
 * A store written before the record existed has none: it is then the sum
 * of the mailbox records' counters (which the same transactions keep), read
 * without writing, and the first change writes it.
 */

#include <inttypes.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/buf.h"
#include "roost/error.h"

#define LMDB_QUOTA_MAX_USER 255 /* AUTH_MAX_NAME: the longest user name */

struct lmdb_quota {
	uint64_t bytes;
	uint64_t messages;
};

/* Add the sizes and the number of mailbox id's message records. */
static int
msgs_sum(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, struct storage_usage *u)
{
	struct lmdb_msg_iter it;
	int rc;

	if ((rc = lmdb_msg_iter_open(&it, txn, sh, id, 0)) != 0)
		return lmdb_err("cursor", rc);
	while (lmdb_msg_iter_next(&it)) {
		struct lmdb_msg m;

		if (!lmdb_msg_decode(&it.v, id, it.uid, &m)) {
			lmdb_msg_iter_close(&it);
			return lmdb_err("quota recount", MDB_CORRUPTED);
		}
		u->bytes += m.size;
		u->messages++;
	}
	lmdb_msg_iter_close(&it);
	if (it.rc != 0)
		return lmdb_err("quota recount", it.rc);
	return 0;
}

/* Sum a counter pair over the user's mailboxes: from the mailbox records
 * (exact) or, with recount, from the message records themselves. */
static int
quota_sum(MDB_txn *txn, struct lmdb_shard *sh, const char *user, bool recount,
          struct storage_usage *u)
{
	uint8_t prefix[LMDB_SHA_LEN];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, err = 0;

	memset(u, 0, sizeof(*u));
	lmdb_sha256(user, strlen(user), prefix);
	if ((rc = mdb_cursor_open(txn, sh->names, &cur)) != 0)
		return lmdb_err("cursor", rc);
	k.mv_size = LMDB_USER_PREFIX;
	k.mv_data = prefix;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && err == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *vu, *vn;
		struct lmdb_mbox rec;
		uint64_t id;

		if (k.mv_size < LMDB_USER_PREFIX ||
		    memcmp(k.mv_data, prefix, LMDB_USER_PREFIX) != 0)
			break;
		if (!lmdb_value_names(&v, 8, &vu, &vn) || strcmp(vu, user) != 0)
			continue;
		memcpy(&id, v.mv_data, 8);
		if (!recount) {
			if ((err = lmdb_mbox_get(txn, sh, id, &rec, NULL)) == 0) {
				u->bytes += rec.size;
				u->messages += rec.messages;
			}
			continue;
		}
		err = msgs_sum(txn, sh, id, u);
	}
	mdb_cursor_close(cur);
	if (err != 0)
		return err;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err("quota scan", rc);
	return 0;
}

/* The record, or ROOST_ENOTFOUND when the user has none yet. */
static int
quota_rec(MDB_txn *txn, struct lmdb_shard *sh, const char *user, struct storage_usage *u)
{
	MDB_val k = {strlen(user), (void *)user}, v;
	struct lmdb_quota q;
	int rc = mdb_get(txn, sh->quota, &k, &v);

	if (rc == MDB_NOTFOUND)
		return ROOST_ENOTFOUND;
	if (rc != 0)
		return lmdb_err("quota get", rc);
	if (v.mv_size != sizeof(q))
		return ROOST_EIO;
	memcpy(&q, v.mv_data, sizeof(q));
	u->bytes = q.bytes;
	u->messages = q.messages;
	return 0;
}

static int
quota_put(struct lmdb_w *w, const char *user, const struct storage_usage *u)
{
	struct lmdb_quota q = {u->bytes, u->messages};
	MDB_val k = {strlen(user), (void *)user}, v = {sizeof(q), &q};

	return lmdb_wput(w, w->sh->quota, &k, &v, 0);
}

int
lmdb_quota_add(struct lmdb_w *w, const char *user, int64_t bytes, int64_t messages)
{
	struct storage_usage u;
	int rc = quota_rec(w->txn, w->sh, user, &u);

	if (rc == ROOST_ENOTFOUND) {
		/* the mailbox records already hold this change */
		if ((rc = quota_sum(w->txn, w->sh, user, false, &u)) != 0)
			return rc;
		return quota_put(w, user, &u);
	}
	if (rc != 0)
		return rc;
	u.bytes = bytes < 0 && u.bytes < (uint64_t)-bytes ? 0 : u.bytes + (uint64_t)bytes;
	u.messages =
	    messages < 0 && u.messages < (uint64_t)-messages ? 0 : u.messages + (uint64_t)messages;
	return quota_put(w, user, &u);
}

int
lmdb_op_quota_get(struct storage *st, const char *user, struct storage_usage *usage_r)
{
	struct lmdb_shard *sh = lmdb_st_shard(st, user);
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	rc = quota_rec(txn, sh, user, usage_r);
	if (rc == ROOST_ENOTFOUND)
		rc = quota_sum(txn, sh, user, false, usage_r);
	lmdb_rtxn_end(sh, txn);
	return rc;
}

struct recalc_arg {
	const char *user;
	struct storage_usage before, after;
};

static int
w_recalc(struct lmdb_w *w, void *arg)
{
	struct recalc_arg *a = arg;
	int rc = quota_rec(w->txn, w->sh, a->user, &a->before);

	if (rc == ROOST_ENOTFOUND)
		rc = quota_sum(w->txn, w->sh, a->user, false, &a->before);
	if (rc != 0 || (rc = quota_sum(w->txn, w->sh, a->user, true, &a->after)) != 0)
		return rc;
	return quota_put(w, a->user, &a->after);
}

int
lmdb_op_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                     struct storage_usage *after_r)
{
	struct recalc_arg a = {.user = user};
	int rc = lmdb_write(lmdb_st_shard(st, user), w_recalc, &a);

	if (rc == 0) {
		*before_r = a.before;
		*after_r = a.after;
	}
	return rc;
}

int
lmdb_quota_check(MDB_txn *txn, struct lmdb_shard *sh, struct buf *report, unsigned *problems_r)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	*problems_r = 0;
	if ((rc = mdb_cursor_open(txn, sh->quota, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char user[LMDB_QUOTA_MAX_USER + 1];
		struct storage_usage kept, sum;
		struct lmdb_quota q;

		if (k.mv_size == 0 || k.mv_size > LMDB_QUOTA_MAX_USER || v.mv_size != sizeof(q)) {
			if ((*problems_r)++ < 1000)
				buf_printf(report,
				           "%s: quota record of %zu bytes under a key of %zu\n",
				           sh->path, v.mv_size, k.mv_size);
			continue;
		}
		memcpy(user, k.mv_data, k.mv_size);
		user[k.mv_size] = '\0';
		memcpy(&q, v.mv_data, sizeof(q));
		kept.bytes = q.bytes;
		kept.messages = q.messages;
		if (quota_sum(txn, sh, user, true, &sum) != 0)
			continue;
		if (kept.bytes != sum.bytes || kept.messages != sum.messages) {
			if ((*problems_r)++ < 1000)
				buf_printf(report,
				           "%s: quota of %s says %" PRIu64 " bytes in %" PRIu64
				           " messages, the messages hold %" PRIu64 " in %" PRIu64
				           " (roost quota recalc repairs it)\n",
				           sh->path, user, kept.bytes, kept.messages, sum.bytes,
				           sum.messages);
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmdb_err("quota check", rc);
	return 0;
}
