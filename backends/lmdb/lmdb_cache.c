/*
 * The LMDB parse cache: per-message opaque bytes (envelope, body
 * structure), written asynchronously.
 */

#include <stdlib.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/xalloc.h"

int
lmdb_op_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	uint8_t key[12];
	MDB_val k = {12, key}, v;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	lmdb_msg_key(key, lm->id, uid);
	rc = mdb_get(txn, lm->sh->cache, &k, &v);
	if (rc == 0)
		rc = buf_append(out, v.mv_data, v.mv_size);
	else
		rc = lmdb_err("cache get", rc);
	lmdb_rtxn_end(lm->sh, txn);
	return rc;
}

struct cache_arg {
	uint64_t id;
	uint32_t uid;
	size_t len;
	uint8_t data[];
};

static int
w_cache(struct lmdb_w *w, void *arg)
{
	struct cache_arg *a = arg;
	uint8_t key[12];
	MDB_val k = {12, key}, v = {a->len, a->data};

	lmdb_msg_key(key, a->id, a->uid);
	if (mdb_get(w->txn, w->sh->msgs, &k, &v) != 0)
		return 0; /* expunged meanwhile */
	v.mv_size = a->len;
	v.mv_data = a->data;
	return lmdb_wput(w, w->sh->cache, &k, &v, 0);
}

/*
 * Cache fills do not wait for their commit: they are derived data, and
 * FETCH of many messages must not pay one sync per message. The writer
 * batches them (with any other writes) and a crash loses only cache.
 */
int
lmdb_op_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct cache_arg *a = xmalloc(sizeof(*a) + len);

	a->id = lm->id;
	a->uid = uid;
	a->len = len;
	if (len > 0)
		memcpy(a->data, data, len);
	lmdb_write_async(lm->sh, w_cache, a, sizeof(*a) + len, free);
	return 0;
}
