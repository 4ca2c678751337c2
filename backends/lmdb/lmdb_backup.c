/*
 * roost backup for LMDB, while the server writes: per shard,
 *
 *   1. every body file now in blobs/ is hard-linked (or copied) into the
 *      backup: a link keeps the file even if the server removes it later;
 *   2. mdb_env_copy2() writes a consistent snapshot of the environment
 *      (its own read transaction; writers go on meanwhile);
 *   3. the snapshot's files database names the body files it needs: those
 *      delivered between 1 and 2 are linked now, those the snapshot does
 *      not name are dropped from the backup.
 *
 * A body file a delivery wrote after step 1 and whose last message was
 * expunged again before step 3 is gone from the store: the report names
 * its message's body as missing in the backup (`roost check` on the
 * restored copy would say the same). Nothing else can be missing, since a
 * file is removed only after the commit that stops naming it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmdb_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/xalloc.h"

static bool
blob_entry(const char *name)
{
	return name[0] != '.' && strcmp(name, "lock") != 0 && strcmp(name, "run") != 0;
}

/* Step 1: link what blobs/ holds now. */
static void
link_all(const char *src, const char *dst)
{
	DIR *d = opendir(src);
	struct dirent *de;

	while (d != NULL && (de = readdir(d)) != NULL) {
		char from[4608], to[4608];

		if (!blob_entry(de->d_name) ||
		    snprintf(from, sizeof(from), "%s/%s", src, de->d_name) >= (int)sizeof(from) ||
		    snprintf(to, sizeof(to), "%s/%s", dst, de->d_name) >= (int)sizeof(to))
			continue;
		(void)fdio_link_or_copy(from, to, true, false);
	}
	if (d != NULL)
		closedir(d);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Step 3 on the copy at dst: link the files it names that step 1 missed,
 * drop those it does not name. */
static int
settle_blobs(struct lmdb_shard *sh, const char *dst, const char *src_blobs, const char *dst_blobs,
             struct buf *report, unsigned *missing_r)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi files;
	MDB_cursor *cur;
	MDB_val k, v;
	char **names = NULL;
	size_t n = 0;
	DIR *d;
	struct dirent *de;
	int rc;

	*missing_r = 0;
	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 16)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, 0)) != 0 ||
	    (rc = mdb_env_open(env, dst, MDB_RDONLY | MDB_NOLOCK, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "files", 0, &files)) != 0 ||
	    (rc = mdb_cursor_open(txn, files, &cur)) != 0) {
		if (rc == MDB_NOTFOUND) {
			rc = 0; /* no files database: no body files */
		} else {
			buf_printf(report, "%s: cannot read the copy: %s\n", dst, mdb_strerror(rc));
			rc = ROOST_EIO;
		}
		goto out;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char from[4608], to[4608], *name;
		int e;

		if (!lmdb_blob_name_valid(&v, k.mv_data))
			continue;
		name = xstrndup(v.mv_data, v.mv_size);
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = name;
		if (snprintf(to, sizeof(to), "%s/%s", dst_blobs, name) >= (int)sizeof(to) ||
		    snprintf(from, sizeof(from), "%s/%s", src_blobs, name) >= (int)sizeof(from) ||
		    access(to, F_OK) == 0)
			continue;
		e = fdio_link_or_copy(from, to, true, false);
		if (e != 0) {
			(*missing_r)++;
			buf_printf(report, "%s: body file %s %s\n", sh->path, name,
			           e == ROOST_ENOTFOUND
			               ? "was removed during the backup (its message "
			                 "was expunged meanwhile)"
			               : "could not be copied");
		}
	}
	mdb_cursor_close(cur);
	rc = 0;
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	if ((d = opendir(dst_blobs)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			const char *key = de->d_name;

			if (blob_entry(key) &&
			    bsearch(&key, names, n, sizeof(*names), name_cmp) == NULL)
				unlinkat(dirfd(d), key, 0);
		}
		closedir(d);
	}
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (env != NULL)
		mdb_env_close(env);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int
lmdb_op_backup(struct storage *st, const char *dest, struct buf *report)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);
	const char *data_dir = st->cfg->data_dir;
	size_t dl = strlen(data_dir);
	int bad = 0;

	for (unsigned i = 0; i < ls->n_shards; i++) {
		struct lmdb_shard *sh = &ls->shards[i];
		const char *rel = strncmp(sh->path, data_dir, dl) == 0 ? sh->path + dl : "/lmdb";
		char dst[4096], src_blobs[4200], dst_blobs[4200];
		unsigned missing = 0;
		int rc;

		snprintf(dst, sizeof(dst), "%s%s%s", dest, rel[0] == '/' ? "" : "/", rel);
		snprintf(src_blobs, sizeof(src_blobs), "%s/blobs", sh->path);
		snprintf(dst_blobs, sizeof(dst_blobs), "%s/blobs", dst);
		if ((rc = fdio_mkdir_p(dst_blobs, NULL)) != 0) {
			buf_printf(report, "%s: cannot create: %s\n", dst_blobs, strerror(errno));
			bad = 1;
			continue;
		}
		link_all(src_blobs, dst_blobs);
		/* A resize remaps the file under any open pointer: held off
		 * for the copy, as for every read transaction. */
		pthread_rwlock_rdlock(&sh->maplock);
		rc = mdb_env_copy2(sh->env, dst, MDB_CP_COMPACT);
		pthread_rwlock_unlock(&sh->maplock);
		if (rc != 0) {
			buf_printf(report, "%s: copy failed: %s\n", sh->path, mdb_strerror(rc));
			bad = 1;
			continue;
		}
		if (settle_blobs(sh, dst, src_blobs, dst_blobs, report, &missing) != 0 ||
		    missing > 0)
			bad = 1;
		if (fdio_fsync_dir(dst_blobs) != 0 || fdio_fsync_dir(dst) != 0)
			bad = 1;
	}
	/* the shard count, when the store is sharded */
	{
		char from[4096], to[4096];

		snprintf(from, sizeof(from), "%s/lmdb/shards", data_dir);
		snprintf(to, sizeof(to), "%s/lmdb/shards", dest);
		if (access(from, F_OK) == 0 && access(to, F_OK) != 0 &&
		    fdio_link_or_copy(from, to, false, true) != 0) {
			buf_printf(report, "%s: cannot copy\n", from);
			bad = 1;
		}
	}
	return bad ? ROOST_EIO : 0;
}
