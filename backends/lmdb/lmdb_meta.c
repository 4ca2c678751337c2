/*
 * LMDB metadata (RFC 5464 entries, the wrapper's record): the annots
 * database, key 'M' + mailbox id (so a rename, which keeps the id, keeps
 * them, and lmdb_mbox_purge() drops them with the mailbox) or 'U' + the
 * first 16 bytes of SHA-256 of the user (the server's entries).
 */
#include <stdlib.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

#define META_KEY 17

/* The record's key for user's mailbox ("" = server). */
static int
meta_key(MDB_txn *txn, struct lmdb_shard *sh, const char *user, const char *mailbox,
         uint8_t key[META_KEY])
{
	uint8_t h[LMDB_SHA_LEN];
	uint64_t id;
	int rc;

	if (mailbox[0] == '\0') {
		key[0] = 'U';
		lmdb_sha256(user, strlen(user), h);
		memcpy(key + 1, h, 16);
		return 0;
	}
	if ((rc = lmdb_mbox_id(txn, sh, user, mailbox, &id)) != 0)
		return rc;
	key[0] = 'M';
	lmdb_be64(key + 1, id);
	memset(key + 9, 0, 8);
	return 0;
}

int
lmdb_meta_del(struct lmdb_w *w, uint64_t id)
{
	uint8_t key[META_KEY] = {'M'};
	MDB_val k = {META_KEY, key};

	lmdb_be64(key + 1, id);
	return lmdb_wdel(w, w->sh->annots, &k);
}

int
lmdb_op_meta_get(struct storage *st, const char *user, const char *mailbox, struct buf *out)
{
	struct lmdb_shard *sh = lmdb_st_shard(st, user);
	uint8_t key[META_KEY];
	MDB_val k = {META_KEY, key}, v;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	if ((rc = meta_key(txn, sh, user, mailbox, key)) == 0) {
		rc = mdb_get(txn, sh->annots, &k, &v);
		if (rc == 0)
			buf_append(out, v.mv_data, v.mv_size);
		else
			rc = lmdb_err("get metadata", rc);
	}
	lmdb_rtxn_end(sh, txn);
	return rc;
}

struct meta_arg {
	const char *user, *mailbox;
	int (*fn)(const uint8_t *, size_t, struct buf *, void *);
	void *arg;
};

static int
w_meta(struct lmdb_w *w, void *arg)
{
	struct meta_arg *a = arg;
	uint8_t key[META_KEY];
	MDB_val k = {META_KEY, key}, v;
	struct buf out = BUF_INIT(0);
	uint8_t *old = NULL;
	size_t old_len = 0;
	int rc;

	if ((rc = meta_key(w->txn, w->sh, a->user, a->mailbox, key)) != 0)
		return rc;
	if (mdb_get(w->txn, w->sh->annots, &k, &v) == 0) {
		/* fn may run again (a retried batch): it gets its own copy */
		old = xmemdup(v.mv_data, v.mv_size);
		old_len = v.mv_size;
	}
	rc = a->fn(old, old_len, &out, a->arg);
	if (rc == 0) {
		if (out.len == 0) {
			rc = lmdb_wdel(w, w->sh->annots, &k);
		} else {
			v.mv_size = out.len;
			v.mv_data = out.data;
			rc = lmdb_wput(w, w->sh->annots, &k, &v, 0);
		}
	}
	free(old);
	buf_free(&out);
	return rc;
}

int
lmdb_op_meta_update(struct storage *st, const char *user, const char *mailbox,
                    int (*fn)(const uint8_t *, size_t, struct buf *, void *), void *arg)
{
	struct meta_arg a = {user, mailbox, fn, arg};

	return lmdb_write(lmdb_st_shard(st, user), w_meta, &a);
}
