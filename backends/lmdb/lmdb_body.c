/*
 * LMDB message bodies: content-addressed (sha256) and reference-counted,
 * so a copy or a multi-recipient delivery stores the body once. Small
 * bodies live in the bodies database, large ones in files (lmdb_blob.c)
 * named by the files database.
 */

#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"

int
lmdb_body_ref(struct lmdb_w *w, const uint8_t *sha, const uint8_t *data, size_t len,
              bool data_known, const char *file, bool *file_used_r)
{
	MDB_val k = {LMDB_SHA_LEN, (void *)sha}, v;
	uint64_t count = 0;
	int rc;

	if (file_used_r != NULL)
		*file_used_r = false;
	rc = mdb_get(w->txn, w->sh->refs, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(count)) {
		memcpy(&count, v.mv_data, sizeof(count));
	} else if (rc != MDB_NOTFOUND) {
		return lmdb_err("get ref", rc == 0 ? MDB_CORRUPTED : rc);
	}
	if (count == 0 && file != NULL) {
		v.mv_size = strlen(file);
		v.mv_data = (void *)file;
		if ((rc = lmdb_wput(w, w->sh->files, &k, &v, 0)) != 0)
			return rc;
		if (file_used_r != NULL)
			*file_used_r = true;
		w->dirsync = true;
	} else if (count == 0) {
		if (!data_known) {
			log_error(
			    "event=lmdb_error path=%s error=\"body of a copied message missing\"",
			    w->sh->path);
			return ROOST_EIO;
		}
		v.mv_size = len;
		v.mv_data = NULL;
		if ((rc = lmdb_wput(w, w->sh->bodies, &k, &v, MDB_RESERVE)) != 0)
			return rc;
		if (len > 0)
			memcpy(v.mv_data, data, len);
	}
	count++;
	v.mv_size = sizeof(count);
	v.mv_data = &count;
	return lmdb_wput(w, w->sh->refs, &k, &v, 0);
}

int
lmdb_body_unref(struct lmdb_w *w, const uint8_t *sha)
{
	MDB_val k = {LMDB_SHA_LEN, (void *)sha}, v;
	uint64_t count;
	int rc;

	rc = mdb_get(w->txn, w->sh->refs, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0; /* already gone: `roost check` reports it */
	if (rc != 0 || v.mv_size != sizeof(count))
		return lmdb_err("get ref", rc == 0 ? MDB_CORRUPTED : rc);
	memcpy(&count, v.mv_data, sizeof(count));
	if (count <= 1) {
		if ((rc = lmdb_wdel(w, w->sh->refs, &k)) != 0)
			return rc;
		rc = mdb_get(w->txn, w->sh->files, &k, &v);
		if (rc == 0) {
			char name[LMDB_BLOB_NAME_LEN + 1];

			/* The file goes only once the commit that forgets it
			 * is durable: a crash before leaves it referenced. */
			if (lmdb_blob_name_valid(&v, sha)) {
				memcpy(name, v.mv_data, LMDB_BLOB_NAME_LEN);
				name[LMDB_BLOB_NAME_LEN] = '\0';
				lmdb_names_add(&w->doomed, name);
			}
			return lmdb_wdel(w, w->sh->files, &k);
		} else if (rc != MDB_NOTFOUND) {
			return lmdb_err("get file", rc);
		}
		return lmdb_wdel(w, w->sh->bodies, &k);
	}
	count--;
	v.mv_size = sizeof(count);
	v.mv_data = &count;
	return lmdb_wput(w, w->sh->refs, &k, &v, 0);
}
