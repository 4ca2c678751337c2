/*
 * LMDB body files: bodies of LMDB_BLOB_MIN bytes or more are kept in
 * <env>/blobs/, one file per body, and the files database maps the body's
 * sha256 to the file's name. The one writer of an environment then copies
 * a few hundred bytes into the map per message, not the message: delivery
 * threads write and fsync their files side by side, before they queue the
 * small transaction that refers to them.
 *
 * The order that makes it safe: the file and the directory are synced
 * before the commit that names the file (the file by the thread that
 * wrote it, the directory once per group commit by the writer, which
 * saves a journal flush per message); the file is removed only after
 * the commit that drops its last reference is durable. A crash in between
 * leaves a file no record names (an orphan), never a record without its
 * file. File names are unique per delivery (sha256 and a random suffix):
 * a second delivery of the same body refers to the first one's file and
 * removes its own, so a removal can never hit a file a later delivery is
 * about to use.
 *
 * Orphans are swept at open after a crash. Every open store holds a run
 * file in blobs/run/ under an exclusive flock; one that can be locked
 * belonged to a store that did not close. Deliveries hold blobs/lock
 * shared from writing their file until their commit; the sweep takes it
 * exclusively without waiting, so it never sees a file in flight, and
 * leaves the stale run file for a later open when it cannot.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/hex.h"
#include "roost/log.h"
#include "roost/xalloc.h"

static bool
is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (hex_digit((unsigned char)s[i]) < 0)
			return false;
	}
	return true;
}

/* name is shaped as a body file's name; sha_r (when not NULL) gets the
 * digest it names. */
static bool
name_parse(const char *name, size_t len, uint8_t *sha_r)
{
	if (len != LMDB_BLOB_NAME_LEN || name[LMDB_SHA_LEN * 2] != '-' ||
	    !is_hex(name, LMDB_SHA_LEN * 2) || !is_hex(name + LMDB_SHA_LEN * 2 + 1, 16))
		return false;
	for (size_t i = 0; sha_r != NULL && i < LMDB_SHA_LEN; i++)
		sha_r[i] = (uint8_t)hex_byte(name + 2 * i);
	return true;
}

bool
lmdb_blob_name_valid(const MDB_val *v, const uint8_t *sha)
{
	uint8_t got[LMDB_SHA_LEN];

	return name_parse(v->mv_data, v->mv_size, got) && memcmp(got, sha, LMDB_SHA_LEN) == 0;
}

void
lmdb_names_add(struct lmdb_names *l, const char *name)
{
	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 8 : l->cap * 2;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(name);
}

void
lmdb_names_free(struct lmdb_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int
lmdb_blobs_sync(struct lmdb_shard *sh)
{
	if (sh->fsync && fsync(sh->blob_dirfd) < 0) {
		log_error("event=lmdb_blob_error op=fsync path=%s/blobs error=\"%s\"", sh->path,
		          strerror(errno));
		return ROOST_EIO;
	}
	return 0;
}

void
lmdb_blob_hold(struct lmdb_shard *sh)
{
	pthread_mutex_lock(&sh->blob_lock);
	/* flock locks belong to the open file description: one shared lock
	 * covers every delivery of this process in flight. */
	if (sh->blob_inflight++ == 0) {
		while (flock(sh->blob_lockfd, LOCK_SH) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&sh->blob_lock);
}

void
lmdb_blob_release(struct lmdb_shard *sh)
{
	pthread_mutex_lock(&sh->blob_lock);
	if (--sh->blob_inflight == 0)
		flock(sh->blob_lockfd, LOCK_UN);
	pthread_mutex_unlock(&sh->blob_lock);
}

static int
write_file(struct lmdb_shard *sh, const char *name, const uint8_t *data, size_t len)
{
	size_t off = 0;
	int fd, err = 0;

	fd = openat(sh->blob_dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("event=lmdb_blob_error op=create path=%s/blobs/%s error=\"%s\"", sh->path,
		          name, strerror(errno));
		return errno == ENOSPC || errno == EDQUOT ? ROOST_ETEMP : ROOST_EIO;
	}
	while (off < len) {
		ssize_t r = write(fd, data + off, len - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_error("event=lmdb_blob_error op=write path=%s/blobs/%s error=\"%s\"",
			          sh->path, name, r < 0 ? strerror(errno) : "no progress");
			err =
			    r < 0 && (errno == ENOSPC || errno == EDQUOT) ? ROOST_ETEMP : ROOST_EIO;
			break;
		}
		off += (size_t)r;
	}
	if (err == 0 && sh->fsync && fdatasync(fd) < 0) {
		log_error("event=lmdb_blob_error op=fsync path=%s/blobs/%s error=\"%s\"", sh->path,
		          name, strerror(errno));
		err = ROOST_EIO;
	}
	close(fd);
	if (err != 0)
		unlinkat(sh->blob_dirfd, name, 0);
	return err;
}

int
lmdb_blob_write(struct lmdb_shard *sh, const uint8_t *sha, const uint8_t *data, size_t len,
                char name_r[LMDB_BLOB_NAME_LEN + 1])
{
	uint8_t rnd[8];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		struct timespec ts;

		/* Unique enough for O_EXCL to catch the rest. */
		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(rnd, &ts.tv_nsec, 4);
		memcpy(rnd + 4, &(uint32_t){(uint32_t)getpid() ^ (uint32_t)(uintptr_t)&ts}, 4);
	}
	hex_encode(sha, LMDB_SHA_LEN, name_r);
	name_r[LMDB_SHA_LEN * 2] = '-';
	hex_encode(rnd, sizeof(rnd), name_r + LMDB_SHA_LEN * 2 + 1);
	return write_file(sh, name_r, data, len);
}

int
lmdb_blob_link(struct lmdb_shard *from, struct lmdb_shard *to, const char *name,
               const uint8_t *data, size_t len)
{
	if (linkat(from->blob_dirfd, name, to->blob_dirfd, name, 0) < 0)
		return write_file(to, name, data, len);
	return 0;
}

void
lmdb_blob_unlink(struct lmdb_shard *sh, const char *name)
{
	if (unlinkat(sh->blob_dirfd, name, 0) < 0 && errno != ENOENT)
		log_warn("event=lmdb_blob_error op=unlink path=%s/blobs/%s error=\"%s\"", sh->path,
		         name, strerror(errno));
}

static void
view_release(struct msg_view *view)
{
	if (view->priv[0] != NULL)
		munmap(view->priv[0], (size_t)(uintptr_t)view->priv[1]);
	view->priv[0] = NULL;
}

int
lmdb_blob_view(struct lmdb_shard *sh, const char *name, uint64_t len, struct msg_view *view_r)
{
	struct stat sb;
	void *map;
	int fd;

	fd = openat(sh->blob_dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return ROOST_ENOTFOUND;
		log_error("event=lmdb_blob_error op=open path=%s/blobs/%s error=\"%s\"", sh->path,
		          name, strerror(errno));
		return ROOST_EIO;
	}
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != len || len == 0) {
		log_error("event=lmdb_blob_error path=%s/blobs/%s size=%ld expected=%lu "
		          "error=\"size differs from the record\"",
		          sh->path, name, (long)sb.st_size, (unsigned long)len);
		close(fd);
		return ROOST_EIO;
	}
	/* A private mapping stays valid after the file is removed, so the
	 * view may be held across steps, as a Maildir one. */
	map = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		log_error("event=lmdb_blob_error op=mmap path=%s/blobs/%s error=\"%s\"", sh->path,
		          name, strerror(errno));
		return ROOST_EIO;
	}
	madvise(map, (size_t)len, MADV_SEQUENTIAL);
	view_r->data = map;
	view_r->len = (size_t)len;
	view_r->holdable = true;
	view_r->priv[0] = map;
	view_r->priv[1] = (void *)(uintptr_t)len;
	view_r->release = view_release;
	return 0;
}

/* Is the file name referred to by the files database? */
static bool
referenced(struct lmdb_shard *sh, MDB_txn *txn, const char *name)
{
	uint8_t sha[LMDB_SHA_LEN];
	MDB_val k = {LMDB_SHA_LEN, sha}, v;

	if (!name_parse(name, strlen(name), sha))
		return true; /* not ours: leave it alone */
	return mdb_get(txn, sh->files, &k, &v) == 0 && v.mv_size == LMDB_BLOB_NAME_LEN &&
	       memcmp(v.mv_data, name, LMDB_BLOB_NAME_LEN) == 0;
}

int
lmdb_blobs_sweep(struct lmdb_shard *sh, bool collect, struct buf *report, unsigned *n_r)
{
	char path[4200];
	struct dirent *de;
	MDB_txn *txn = NULL;
	DIR *d = NULL;
	int lockfd, dfd, rc = 0;

	*n_r = 0;
	/* Its own open file description: the store's lockfd may be held
	 * shared by this very process. */
	snprintf(path, sizeof(path), "%s/blobs/lock", sh->path);
	if ((lockfd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return ROOST_EIO;
	if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		close(lockfd);
		return ROOST_EINUSE;
	}
	if ((dfd = dup(sh->blob_dirfd)) < 0 || (d = fdopendir(dfd)) == NULL) {
		if (dfd >= 0)
			close(dfd);
		rc = ROOST_EIO;
		goto out;
	}
	rewinddir(d);
	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		goto out;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, "lock") == 0 ||
		    strcmp(de->d_name, "run") == 0 || referenced(sh, txn, de->d_name))
			continue;
		(*n_r)++;
		if (collect) {
			lmdb_blob_unlink(sh, de->d_name);
		} else if (report != NULL && *n_r <= 100) {
			buf_printf(report, "%s: blobs/%s: body file no record refers to\n",
			           sh->path, de->d_name);
		}
	}
	lmdb_rtxn_end(sh, txn);
	if (collect && *n_r > 0)
		log_info("event=lmdb_blob_cleanup path=%s removed=%u reason=\"left by a crash\"",
		         sh->path, *n_r);
out:
	if (d != NULL)
		closedir(d);
	close(lockfd);
	return rc;
}

/* Run files of stores that are gone without closing (their lock is free). */
static void
stale_runs(DIR *d, struct lmdb_names *stale)
{
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		if ((fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			lmdb_names_add(stale, de->d_name);
		close(fd);
	}
}

int
lmdb_blobs_open(struct lmdb_shard *sh)
{
	char dir[4200], path[4400];
	struct lmdb_names stale = {0};
	DIR *rundir;
	uint8_t rnd[8];
	char id[17];
	unsigned n;
	int rc = 0;

	sh->blob_dirfd = sh->blob_lockfd = sh->blob_runfd = -1;
	pthread_mutex_init(&sh->blob_lock, NULL);
	sh->blob_open = true;
	snprintf(dir, sizeof(dir), "%s/blobs", sh->path);
	snprintf(path, sizeof(path), "%s/run", dir);
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(path, 0700) < 0 && errno != EEXIST)) {
		log_error("event=storage_error op=mkdir path=%s error=\"%s\"", path,
		          strerror(errno));
		return ROOST_EIO;
	}
	sh->blob_dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/lock", dir);
	sh->blob_lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sh->blob_dirfd < 0 || sh->blob_lockfd < 0) {
		log_error("event=storage_error op=open path=%s error=\"%s\"", dir, strerror(errno));
		return ROOST_EIO;
	}
	snprintf(path, sizeof(path), "%s/run", dir);
	if ((rundir = opendir(path)) == NULL) {
		log_error("event=storage_error op=open path=%s error=\"%s\"", path,
		          strerror(errno));
		return ROOST_EIO;
	}
	stale_runs(rundir, &stale);
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memcpy(rnd, &(uint64_t){(uint64_t)getpid() * 2654435761u ^ (uint64_t)time(NULL)},
		       8);
	hex_encode(rnd, sizeof(rnd), id);
	snprintf(path, sizeof(path), "%s/run/%ld-%s", dir, (long)getpid(), id);
	sh->blob_runpath = xstrdup(path);
	sh->blob_runfd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (sh->blob_runfd < 0 || flock(sh->blob_runfd, LOCK_EX) < 0) {
		log_error("event=storage_error path=%s error=\"%s\"", path, strerror(errno));
		rc = ROOST_EIO;
		goto out;
	}
	if (stale.n > 0) {
		rc = lmdb_blobs_sweep(sh, true, NULL, &n);
		/* Busy: a delivery of another process is in flight; the next
		 * open sweeps. */
		for (size_t i = 0; rc == 0 && i < stale.n; i++)
			unlinkat(dirfd(rundir), stale.v[i], 0);
		if (rc == ROOST_EINUSE)
			rc = 0;
	}
out:
	closedir(rundir);
	lmdb_names_free(&stale);
	return rc;
}

void
lmdb_blobs_close(struct lmdb_shard *sh)
{
	if (!sh->blob_open)
		return;
	sh->blob_open = false;
	if (sh->blob_runpath != NULL) {
		if (sh->blob_runfd >= 0)
			unlink(sh->blob_runpath);
		free(sh->blob_runpath);
		sh->blob_runpath = NULL;
	}
	if (sh->blob_runfd >= 0)
		close(sh->blob_runfd);
	if (sh->blob_lockfd >= 0)
		close(sh->blob_lockfd);
	if (sh->blob_dirfd >= 0)
		close(sh->blob_dirfd);
	sh->blob_dirfd = sh->blob_lockfd = sh->blob_runfd = -1;
	pthread_mutex_destroy(&sh->blob_lock);
}
