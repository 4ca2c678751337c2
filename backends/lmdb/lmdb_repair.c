/*
 * roost check --repair for LMDB: body reference counts are derived data
 * (the number of message records naming each body), so they are counted
 * again from the records and written where they differ; a body (inline or
 * in a file) that no record names any more is dropped, its file removed
 * once the commit is durable; files in <env>/blobs that nothing names are
 * removed (lmdb_blobs_sweep). One write request per shard, serialised
 * with the server's writes like any other. A record whose body is lost
 * cannot be rebuilt: it is reported, and left as it is.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

struct repair_arg {
	struct buf *report;
	unsigned fixed, lost;
};

static int
sha_cmp(const void *a, const void *b)
{
	return memcmp(a, b, LMDB_SHA_LEN);
}

/* Every key of dbi (LMDB_SHA_LEN bytes each), in order. */
static int
keys_of(struct lmdb_w *w, MDB_dbi dbi, uint8_t **v_r, size_t *n_r)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint8_t *out = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*v_r = NULL;
	*n_r = 0;
	if ((rc = mdb_cursor_open(w->txn, dbi, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != LMDB_SHA_LEN)
			continue;
		if (n == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			out = xreallocarray(out, cap, LMDB_SHA_LEN);
		}
		memcpy(out + n * LMDB_SHA_LEN, k.mv_data, LMDB_SHA_LEN);
		n++;
	}
	mdb_cursor_close(cur);
	*v_r = out;
	*n_r = n;
	return 0;
}

static size_t
count_of(const uint8_t *used, size_t n_used, const uint8_t *sha)
{
	const uint8_t *hit = bsearch(sha, used, n_used, LMDB_SHA_LEN, sha_cmp);
	size_t c = 0;

	if (hit == NULL)
		return 0;
	while (hit > used && memcmp(hit - LMDB_SHA_LEN, sha, LMDB_SHA_LEN) == 0)
		hit -= LMDB_SHA_LEN;
	for (; hit < used + n_used * LMDB_SHA_LEN && memcmp(hit, sha, LMDB_SHA_LEN) == 0;
	     hit += LMDB_SHA_LEN)
		c++;
	return c;
}

static bool
present(struct lmdb_w *w, MDB_dbi dbi, const uint8_t *sha, MDB_val *v_r)
{
	MDB_val k = {LMDB_SHA_LEN, (void *)sha}, v;

	if (mdb_get(w->txn, dbi, &k, &v) != 0)
		return false;
	if (v_r != NULL)
		*v_r = v;
	return true;
}

/* Drop a body nothing uses: its refs entry, and the inline copy or the
 * file (doomed: removed after the commit). */
static int
drop_body(struct lmdb_w *w, const uint8_t *sha)
{
	MDB_val k = {LMDB_SHA_LEN, (void *)sha}, v;
	int rc = 0;

	if (present(w, w->sh->refs, sha, NULL) && (rc = lmdb_wdel(w, w->sh->refs, &k)) != 0)
		return rc;
	if (present(w, w->sh->files, sha, &v)) {
		if (lmdb_blob_name_valid(&v, sha)) {
			char name[LMDB_BLOB_NAME_LEN + 1];

			memcpy(name, v.mv_data, LMDB_BLOB_NAME_LEN);
			name[LMDB_BLOB_NAME_LEN] = '\0';
			lmdb_names_add(&w->doomed, name);
		}
		if ((rc = lmdb_wdel(w, w->sh->files, &k)) != 0)
			return rc;
	}
	if (present(w, w->sh->bodies, sha, NULL))
		rc = lmdb_wdel(w, w->sh->bodies, &k);
	return rc;
}

static int
w_repair(struct lmdb_w *w, void *arg)
{
	struct repair_arg *a = arg;
	uint8_t *used = NULL, *keys = NULL;
	size_t n_used = 0, cap = 0, n_keys;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	a->fixed = a->lost = 0;
	/* what the records use */
	if ((rc = mdb_cursor_open(w->txn, w->sh->msgs, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmdb_msg m;

		/* only the body's hash is looked at: records of every
		 * version hold it at the same place */
		if (v.mv_size < LMDB_MSG_V1_SIZE)
			continue;
		memcpy(&m, v.mv_data, LMDB_MSG_V1_SIZE);
		if (n_used == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			used = xreallocarray(used, cap, LMDB_SHA_LEN);
		}
		memcpy(used + n_used * LMDB_SHA_LEN, m.sha, LMDB_SHA_LEN);
		n_used++;
		if (!present(w, w->sh->bodies, m.sha, NULL) &&
		    !present(w, w->sh->files, m.sha, NULL) && k.mv_size == 12) {
			a->lost++;
			buf_printf(a->report,
			           "%s: mailbox %" PRIu64 " UID %u: body lost, cannot be rebuilt "
			           "(restore it from a backup)\n",
			           w->sh->path, lmdb_get_be64(k.mv_data),
			           lmdb_get_be32((const uint8_t *)k.mv_data + 8));
		}
	}
	mdb_cursor_close(cur);
	if (n_used > 1)
		qsort(used, n_used, LMDB_SHA_LEN, sha_cmp);
	/* counts the records give, where a body is there to count */
	for (size_t i = 0; i < n_used; i++) {
		const uint8_t *sha = used + i * LMDB_SHA_LEN;
		uint64_t want = 1, have = 0;
		MDB_val kk = {LMDB_SHA_LEN, (void *)sha}, vv;

		while (i + 1 < n_used &&
		       memcmp(sha, used + (i + 1) * LMDB_SHA_LEN, LMDB_SHA_LEN) == 0) {
			want++;
			i++;
		}
		if (!present(w, w->sh->bodies, sha, NULL) && !present(w, w->sh->files, sha, NULL))
			continue;
		if (present(w, w->sh->refs, sha, &vv) && vv.mv_size == sizeof(have))
			memcpy(&have, vv.mv_data, sizeof(have));
		if (have == want)
			continue;
		vv.mv_size = sizeof(want);
		vv.mv_data = &want;
		if ((rc = lmdb_wput(w, w->sh->refs, &kk, &vv, 0)) != 0)
			goto out;
		a->fixed++;
		buf_printf(a->report, "%s: body reference count %" PRIu64 " set to %" PRIu64 "\n",
		           w->sh->path, have, want);
	}
	/* bodies, files and counts nothing uses */
	MDB_dbi dbis[] = {w->sh->refs, w->sh->bodies, w->sh->files};
	for (size_t d = 0; d < 3; d++) {
		if ((rc = keys_of(w, dbis[d], &keys, &n_keys)) != 0)
			goto out;
		for (size_t i = 0; i < n_keys; i++) {
			const uint8_t *sha = keys + i * LMDB_SHA_LEN;

			if (count_of(used, n_used, sha) > 0 || !present(w, dbis[d], sha, NULL))
				continue;
			if ((rc = drop_body(w, sha)) != 0)
				goto out;
			a->fixed++;
			buf_printf(a->report, "%s: %s nothing uses: removed\n", w->sh->path,
			           d == 0   ? "a reference count"
			           : d == 1 ? "a body"
			                    : "a body file");
		}
		free(keys);
		keys = NULL;
	}
	rc = 0;
out:
	free(keys);
	free(used);
	return rc;
}

int
lmdb_op_repair(struct storage *st, struct buf *report)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);
	int bad = 0;

	for (unsigned i = 0; i < ls->n_shards; i++) {
		struct lmdb_shard *sh = &ls->shards[i];
		struct repair_arg a = {.report = report};
		unsigned orphans = 0;
		int rc = lmdb_write(sh, w_repair, &a);

		if (rc != 0) {
			buf_printf(report, "%s: repair failed: %s\n", sh->path, roost_strerror(rc));
			bad = 1;
			continue;
		}
		if (a.lost > 0)
			bad = 1;
		/* files in blobs/ no record names (a crash between writing one
		 * and its commit) */
		rc = lmdb_blobs_sweep(sh, true, report, &orphans);
		if (rc == 0 && orphans > 0)
			buf_printf(report, "%s: %u body files nothing names: removed\n", sh->path,
			           orphans);
		if (rc == ROOST_EINUSE)
			buf_printf(report,
			           "%s: blobs/ busy with a delivery: not swept, run again\n",
			           sh->path);
		if (rc != 0 && rc != ROOST_EINUSE) {
			buf_printf(report, "%s: cannot clean blobs/: %s\n", sh->path,
			           roost_strerror(rc));
			bad = 1;
		}
	}
	return bad ? ROOST_EIO : 0;
}
