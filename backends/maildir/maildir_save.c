/*
 * Writing messages: delivery and append (tmp/ + write + fsync + rename
 * into new/ or cur/ + fsync of the directory), flag changes (renames),
 * expunge (unlink), copy and move (hard links), and the zero-copy read
 * (mmap).
 *
 * A multi-recipient delivery writes the body once into the first
 * recipient's tmp/ and hard-links it into every other recipient's tmp/
 * (copying only across file systems), so 100 local recipients cost one
 * body on disk. The message file is written and renamed into place before
 * the uidlist lock is taken; the lock covers only the UID assignment.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

/*
 * How often one message's file is looked for again when its name vanished
 * under us. In this process every rename happens under the folder mutex,
 * which these paths hold from finding a name to using it; only another
 * program (a Maildir tool changing flags) renames behind it. Each try
 * rescans the directories, so the file would have to be renamed this many
 * times within one operation to defeat it.
 */
#define RESOLVE_TRIES 8

/* A message file waiting in some folder's tmp/. */
struct pending {
	char *tmppath;
	char base[200];
	uint64_t size;
};

static int
write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int
copy_fd(int out, int in, uint64_t len)
{
	uint8_t buf[65536];
	off_t off = 0;

	while ((uint64_t)off < len) {
		size_t want =
		    len - (uint64_t)off > sizeof(buf) ? sizeof(buf) : (size_t)(len - (uint64_t)off);
		ssize_t r = pread(in, buf, want, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (write_all(out, buf, (size_t)r) < 0)
			return -1;
		off += r;
	}
	return 0;
}

/* Write msg (or the file src_fd) into dir/tmp/ under a fresh unique name. */
static int
save_tmp(struct md_storage *ms, const char *dir, const struct msg_input *msg, int src_fd,
         uint64_t src_len, struct pending *p)
{
	struct timespec times[2];
	uint64_t size = src_fd >= 0 ? src_len : (uint64_t)msg->len;
	char *tmpdir = md_path(dir, "tmp");
	int fd, rc;

	md_unique_base(ms, size, p->base, sizeof(p->base));
	p->size = size;
	p->tmppath = md_path(tmpdir, p->base);
	free(tmpdir);
	fd = open(p->tmppath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = md_errno_to_err(errno);

		log_error("maildir: create %s: %s", p->tmppath, strerror(errno));
		free(p->tmppath);
		p->tmppath = NULL;
		return err == ROOST_EEXISTS ? ROOST_ETEMP : err;
	}
	if (src_fd >= 0)
		rc = copy_fd(fd, src_fd, src_len);
	else if (msg->fd >= 0)
		rc = copy_fd(fd, msg->fd, msg->len);
	else
		rc = write_all(fd, msg->data, msg->len);
	if (rc == 0 && ms->fsync)
		rc = fdatasync(fd);
	if (rc == 0) {
		/* the internal date is the file's mtime, as Dovecot keeps it */
		times[0].tv_sec = msg->internal_date > 0 ? (time_t)msg->internal_date : time(NULL);
		times[0].tv_nsec = 0;
		times[1] = times[0];
		if (futimens(fd, times) < 0)
			log_warn("maildir: futimens %s: %s", p->tmppath, strerror(errno));
	}
	if (rc < 0) {
		int err = md_errno_to_err(errno);

		log_error("maildir: write %s: %s", p->tmppath, strerror(errno));
		close(fd);
		unlink(p->tmppath);
		free(p->tmppath);
		p->tmppath = NULL;
		return err == ROOST_ENOTFOUND ? ROOST_EIO : err;
	}
	close(fd);
	return 0;
}

/* Put another name for the file src into dir/tmp/ (a hard link, or a copy
 * across file systems). */
static int
link_tmp(struct md_storage *ms, const char *dir, const char *src, uint64_t size,
         const struct msg_input *msg, struct pending *p)
{
	char *tmpdir;
	int fd, err;

	md_unique_base(ms, size, p->base, sizeof(p->base));
	p->size = size;
	tmpdir = md_path(dir, "tmp");
	p->tmppath = md_path(tmpdir, p->base);
	free(tmpdir);
	if (link(src, p->tmppath) == 0)
		return 0;
	if (errno != EXDEV && errno != EMLINK && errno != EPERM) {
		err = md_errno_to_err(errno);
		/* a vanished name is the caller's to look up again */
		if (errno != ENOENT)
			log_error("maildir: link %s %s: %s", src, p->tmppath, strerror(errno));
		free(p->tmppath);
		p->tmppath = NULL;
		return err;
	}
	free(p->tmppath);
	p->tmppath = NULL;
	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return md_errno_to_err(errno);
	err = save_tmp(ms, dir, msg, fd, size, p);
	close(fd);
	return err;
}

static void
pending_drop(struct pending *p)
{
	if (p->tmppath != NULL) {
		unlink(p->tmppath);
		free(p->tmppath);
		p->tmppath = NULL;
	}
}

/* Letters for keyword names in f, adding unknown ones; ROOST_ETOOBIG when
 * the folder has no letter left. */
static int
keyword_bits(struct md_folder *f, const char *const *names, size_t n, bool add, uint64_t *bits_r)
{
	uint64_t bits = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		int idx = md_keyword_index(f, names[i], add);

		if (idx >= 0)
			bits |= 1ull << idx;
		else if (add)
			return ROOST_ETOOBIG;
	}
	*bits_r = bits;
	return 0;
}

/*
 * With f->mutex and the uidlist lock held: move the pending file into
 * new/ (no flags) or cur/ (with flags), durably, and give it the next UID.
 */
static int
finish_save(struct md_folder *f, struct pending *p, uint32_t flags, const char *const *kws,
            size_t n_kws, int64_t idate, struct md_durable *d, uint32_t *uid_r)
{
	uint64_t kw = 0;
	struct md_rec *r;
	char *name, *dst, *dstdir;
	bool in_new, own;
	int err;

	if (f->nextuid == UINT32_MAX)
		return ROOST_ETOOBIG;
	if ((err = keyword_bits(f, kws, n_kws, true, &kw)) < 0)
		return err;
	/* names before the letters that mean them */
	if (f->kw_dirty && (err = md_keywords_write(f)) < 0)
		return err;
	in_new = flags == 0 && kw == 0;
	name =
	    in_new ? xstrdup(p->base) : md_fname_build(p->base, strlen(p->base), flags, kw, NULL);
	dstdir = md_path(f->path, in_new ? "new" : "cur");
	dst = md_path(dstdir, name);
	own = md_own_rename_begin(f, in_new);
	if (rename(p->tmppath, dst) < 0) {
		err = md_errno_to_err(errno);
		log_error("maildir: rename %s %s: %s", p->tmppath, dst, strerror(errno));
		goto fail;
	}
	if (own)
		md_own_rename_end(f, in_new);
	free(p->tmppath);
	p->tmppath = NULL;
	if (in_new)
		d->newdir = true;
	else
		d->curdir = true;
	if (f->n == f->cap) {
		f->cap = f->cap == 0 ? 64 : f->cap * 2;
		f->recs = xreallocarray(f->recs, f->cap, sizeof(*f->recs));
	}
	r = &f->recs[f->n++];
	memset(r, 0, sizeof(*r));
	r->uid = f->nextuid++;
	r->fname = name;
	name = NULL;
	r->baselen = (uint16_t)strlen(p->base);
	r->in_new = in_new;
	r->flags = flags;
	r->keywords = kw;
	r->modseq = ++f->highestmodseq;
	r->idate = idate > 0 ? idate : (int64_t)time(NULL);
	r->size = p->size;
	r->indexed = true;
	md_index_log_rec(f, r);
	if (f->uidlist_append_from == 0)
		f->uidlist_append_from = r->uid;
	*uid_r = r->uid;
	err = 0;
fail:
	free(name);
	free(dst);
	free(dstdir);
	return err;
}

/* With nothing locked: write the message into f, leaving what makes it
 * durable to md_durable_sync() with *d. */
static int
folder_commit_one(struct md_folder *f, struct pending *p, const struct msg_input *msg,
                  uint32_t *uidvalidity_r, uint32_t *uid_r, struct md_durable *d)
{
	int err, e;

	memset(d, 0, sizeof(*d));
	pthread_mutex_lock(&f->mutex);
	err = md_lock_and_sync(f, MD_SYNC_LIGHT);
	if (err == 0) {
		err = finish_save(f, p, msg->flags & MSG_FLAGS_ALL, msg->keywords, msg->n_keywords,
		                  msg->internal_date, d, uid_r);
		*uidvalidity_r = f->uidvalidity;
		e = md_commit_deferred(f, d);
		if (err == 0)
			err = e;
	}
	pthread_mutex_unlock(&f->mutex);
	return err;
}

static int
folder_finish_one(struct md_folder *f, struct pending *p, const struct msg_input *msg,
                  uint32_t *uidvalidity_r, uint32_t *uid_r)
{
	struct md_durable d;
	int err = folder_commit_one(f, p, msg, uidvalidity_r, uid_r, &d);

	if (err == 0)
		err = md_durable_sync(f->ms, f->path, &d);
	return err;
}

/*
 * The fsyncs of a delivery to many recipients, issued together: one after
 * the other they cost two disk round trips per recipient before anyone is
 * answered or woken (a 50-recipient message waited for 100 fsyncs); side by
 * side the disk and the file system take them in parallel.
 */
#define SYNC_THREADS 16

struct sync_all {
	struct md_storage *ms;
	struct md_folder **fs;
	const struct md_durable *ds;
	struct delivery_target *t;
	size_t n;
	_Atomic size_t next;
};

static void *
sync_some(void *arg)
{
	struct sync_all *a = arg;
	size_t i;

	while ((i = atomic_fetch_add(&a->next, 1)) < a->n) {
		if (a->t[i].result == 0)
			a->t[i].result = md_durable_sync(a->ms, a->fs[i]->path, &a->ds[i]);
	}
	return NULL;
}

static void
durable_sync_all(struct md_storage *ms, struct md_folder **fs, const struct md_durable *ds,
                 struct delivery_target *t, size_t n)
{
	struct sync_all a = {ms, fs, ds, t, n, 0};
	pthread_t th[SYNC_THREADS - 1];
	size_t k = 0;

	if (ms->fsync) {
		for (; k + 1 < n && k < SYNC_THREADS - 1; k++) {
			if (pthread_create(&th[k], NULL, sync_some, &a) != 0)
				break;
		}
	}
	sync_some(&a);
	while (k-- > 0)
		pthread_join(th[k], NULL);
}

int
md_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	struct pending p = {NULL, "", 0};
	uint32_t v;
	int err;

	if ((err = save_tmp(f->ms, f->path, msg, -1, 0, &p)) < 0)
		return err;
	err = folder_finish_one(f, &p, msg, &v, uid_r);
	pending_drop(&p);
	return err;
}

int
md_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *t, size_t n)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct md_folder **fs = xcalloc(n + 1, sizeof(*fs));
	struct pending *ps = xcalloc(n + 1, sizeof(*ps));
	struct md_durable *ds = xcalloc(n + 1, sizeof(*ds));
	const char *first = NULL;
	uint64_t size = msg->len;
	size_t i;
	int err = 0;

	/* open every target and give each a name for the body */
	for (i = 0; i < n; i++) {
		t[i].result = md_folder_open(ms, t[i].user, t[i].mailbox, MD_SYNC_LIGHT, &fs[i]);
		if (t[i].result == ROOST_ENOTFOUND && strcmp(t[i].mailbox, "INBOX") == 0 &&
		    storage_maildir_ops.user_init(st, t[i].user) == 0)
			t[i].result =
			    md_folder_open(ms, t[i].user, t[i].mailbox, MD_SYNC_LIGHT, &fs[i]);
		if (t[i].result < 0)
			continue;
		if (first == NULL) {
			t[i].result = save_tmp(ms, fs[i]->path, msg, -1, 0, &ps[i]);
			if (t[i].result == 0)
				first = ps[i].tmppath;
		} else {
			t[i].result = link_tmp(ms, fs[i]->path, first, size, msg, &ps[i]);
		}
	}
	/* then move each into its mailbox; the first one last, since the
	 * others link to it */
	for (i = n; i-- > 0;) {
		if (t[i].result < 0)
			continue;
		t[i].result =
		    folder_commit_one(fs[i], &ps[i], msg, &t[i].uidvalidity, &t[i].uid, &ds[i]);
	}
	durable_sync_all(ms, fs, ds, t, n);
	for (i = 0; i < n; i++) {
		if (t[i].result < 0 && err == 0)
			err = t[i].result;
		pending_drop(&ps[i]);
		md_folder_put(ms, fs[i]);
	}
	free(ds);
	free(ps);
	free(fs);
	return err;
}

/* ---- flags ---- */

static void
fsync_dirs(struct md_folder *f, bool newdir, bool curdir)
{
	if (!f->ms->fsync)
		return;
	if (newdir) {
		char *p = md_path(f->path, "new");

		md_fsync_dir(p);
		free(p);
	}
	if (curdir) {
		char *p = md_path(f->path, "cur");

		md_fsync_dir(p);
		free(p);
	}
}

/* Rename r's file to carry flags/kw. ROOST_ENOTFOUND when the file is gone. */
static int
rename_flags(struct md_folder *f, struct md_rec *r, uint32_t flags, uint64_t kw, bool *from_new_r)
{
	const char *info = r->fname[r->baselen] == ':' ? strchr(r->fname + r->baselen, ',') : NULL;
	char *name =
	    md_fname_build(r->fname, r->baselen, flags, kw, info != NULL ? info + 1 : NULL);
	char *src = md_rec_path(f, r);
	char *dst = md_path3(f->path, "cur", name);
	int err = 0;

	if (strcmp(src, dst) != 0 && rename(src, dst) < 0) {
		err = md_errno_to_err(errno);
		if (err != ROOST_ENOTFOUND)
			log_error("maildir: rename %s: %s", src, strerror(errno));
		free(name);
	} else {
		if (r->in_new)
			*from_new_r = true;
		free(r->fname);
		r->fname = name;
		r->in_new = false;
	}
	free(src);
	free(dst);
	return err;
}

int
md_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
         uint32_t **modified_r, size_t *n_modified_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	uint32_t *mod = NULL;
	size_t n_mod = 0, i;
	uint64_t kw = 0, modseq;
	bool any = false, from_new = false;
	int err, e;

	*modified_r = NULL;
	*n_modified_r = 0;
	/* Light: a file renamed behind our back shows up as ENOENT below. */
	pthread_mutex_lock(&f->mutex);
	if ((err = md_lock_and_sync(f, MD_SYNC_LIGHT)) < 0) {
		pthread_mutex_unlock(&f->mutex);
		return err;
	}
	err = keyword_bits(f, req->keywords, req->n_keywords, req->mode != STORE_REMOVE, &kw);
	if (err == 0 && f->kw_dirty)
		err = md_keywords_write(f);
	modseq = f->highestmodseq + 1;
	for (i = 0; err == 0 && i < n; i++) {
		struct md_rec *r;
		uint32_t nf;
		uint64_t nk;
		int tries = 0;

	again:
		if ((r = md_rec_find(f, uids[i])) == NULL)
			continue;
		if (req->unchanged_since != 0 && r->modseq > req->unchanged_since) {
			mod = xreallocarray(mod, n_mod + 1, sizeof(*mod));
			mod[n_mod++] = r->uid;
			continue;
		}
		switch (req->mode) {
		case STORE_ADD:
			nf = r->flags | req->flags;
			nk = r->keywords | kw;
			break;
		case STORE_REMOVE:
			nf = r->flags & ~req->flags;
			nk = r->keywords & ~kw;
			break;
		default:
			nf = req->flags;
			nk = kw;
			break;
		}
		nf &= MSG_FLAGS_ALL;
		if (nf == r->flags && nk == r->keywords)
			continue;
		e = rename_flags(f, r, nf, nk, &from_new);
		if (e == ROOST_ENOTFOUND && tries++ < RESOLVE_TRIES) {
			/* renamed (flags changed) or removed by another program:
			 * see what it did, then decide again (a removed one is
			 * skipped above) */
			if (any)
				f->highestmodseq = modseq;
			if ((err = md_sync(f, MD_SYNC_FORCE)) < 0)
				break;
			modseq = f->highestmodseq + 1;
			goto again;
		}
		if (e == ROOST_ENOTFOUND) {
			log_error("maildir: %s: the file of UID %u keeps being renamed", f->path,
			          r->uid);
			e = ROOST_ETEMP;
		}
		if (e < 0) {
			err = e;
			break;
		}
		r->flags = nf;
		r->keywords = nk;
		r->modseq = modseq;
		md_index_log_rec(f, r);
		any = true;
	}
	if (any) {
		f->highestmodseq = modseq;
		fsync_dirs(f, from_new, true);
	}
	e = md_commit(f);
	if (err == 0)
		err = e;
	pthread_mutex_unlock(&f->mutex);
	if (err < 0) {
		free(mod);
		return err;
	}
	*modified_r = mod;
	*n_modified_r = n_mod;
	return 0;
}

/* ---- expunge ---- */

/* Drop the records of gone[0..n) (ascending UIDs) from f. */
static void
drop_recs(struct md_folder *f, const uint32_t *gone, size_t n)
{
	size_t i, j, k;

	if (n == 0)
		return;
	for (i = j = k = 0; i < f->n; i++) {
		while (k < n && gone[k] < f->recs[i].uid)
			k++;
		if (k < n && gone[k] == f->recs[i].uid) {
			md_rec_free_fields(&f->recs[i]);
			continue;
		}
		f->recs[j++] = f->recs[i];
	}
	f->n = j;
}

/*
 * f->mutex and the lock held. A file whose name vanished was renamed by
 * another program (or removed by it, and then the rescan expunges it
 * itself): it is looked up again, never counted as gone unseen, so an
 * expunge always removes the file it reports.
 */
static int
expunge_locked(struct md_folder *f, const uint32_t *uids, size_t n)
{
	uint64_t modseq = f->highestmodseq + 1;
	bool in_new = false, in_cur = false, any = false;
	uint32_t *gone = xreallocarray(NULL, n + 1, sizeof(*gone));
	size_t n_gone = 0, i = 0;
	int tries = 0, err = 0;

	while (i < n) {
		struct md_rec *r = md_rec_find(f, uids[i]);
		char *path;

		if (r == NULL) {
			i++;
			tries = 0;
			continue;
		}
		path = md_rec_path(f, r);
		if (unlink(path) < 0) {
			int e = errno;

			if (e == ENOENT && tries++ < RESOLVE_TRIES) {
				/* the rescan must not see our own unlinks as
				 * another program's */
				free(path);
				drop_recs(f, gone, n_gone);
				n_gone = 0;
				if (any)
					f->highestmodseq = modseq;
				if ((err = md_sync(f, MD_SYNC_FORCE)) < 0)
					break;
				modseq = f->highestmodseq + 1;
				continue;
			}
			/* still there: not expunged */
			if (e == ENOENT) {
				log_error("maildir: %s: the file of UID %u keeps being renamed",
				          f->path, r->uid);
				err = ROOST_ETEMP;
			} else {
				log_error("maildir: unlink %s: %s", path, strerror(e));
				err = ROOST_EIO;
			}
			free(path);
			i++;
			tries = 0;
			continue;
		}
		free(path);
		if (r->in_new)
			in_new = true;
		else
			in_cur = true;
		md_expunge_log_add(f, r->uid, modseq);
		f->uidlist_dead++;
		gone[n_gone++] = r->uid;
		any = true;
		i++;
		tries = 0;
	}
	drop_recs(f, gone, n_gone);
	if (any) {
		f->highestmodseq = modseq;
		md_uidlist_maybe_rewrite(f);
		fsync_dirs(f, in_new, in_cur);
	}
	free(gone);
	return err;
}

static int
expunge_folder(struct md_folder *f, const uint32_t *uids, size_t n)
{
	int err, e;

	pthread_mutex_lock(&f->mutex);
	if ((err = md_lock_and_sync(f, MD_SYNC_LIGHT)) < 0) {
		pthread_mutex_unlock(&f->mutex);
		return err;
	}
	err = expunge_locked(f, uids, n);
	e = md_commit(f);
	pthread_mutex_unlock(&f->mutex);
	return err < 0 ? err : e;
}

int
md_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);

	return expunge_folder(m->f, uids, n);
}

/* ---- copy and move ---- */

struct copy_src {
	uint32_t uid;
	uint32_t flags;
	int64_t idate;
	char **kws;
	size_t n_kws;
	struct pending p;
	uint32_t new_uid;
};

static void
copy_srcs_free(struct copy_src *v, size_t n)
{
	size_t i, k;

	for (i = 0; i < n; i++) {
		for (k = 0; k < v[i].n_kws; k++)
			free(v[i].kws[k]);
		free(v[i].kws);
		pending_drop(&v[i].p);
	}
	free(v);
}

static bool
dir_exists(const char *path)
{
	struct stat stb;

	return stat(path, &stb) == 0 && S_ISDIR(stb.st_mode);
}

/*
 * With src->mutex held: put another name for the file of message uid into
 * dir/tmp/ and note what the copy needs to carry. A name that vanished is
 * looked up again (another program renamed the file). ROOST_ETEMP when the
 * message disappeared meanwhile (another program removed it) or its file
 * cannot be pinned down; ROOST_ENOTFOUND when dir went away. *changed_r
 * is set when a rescan found changes (md_notify after the mutex).
 */
static int
link_message(struct md_folder *src, uint32_t uid, const char *dir, struct copy_src *c,
             bool *changed_r)
{
	struct md_rec *r;
	char *path, *tmpdir;
	size_t k;
	int tries, err;
	bool changed;

	for (tries = 0;; tries++) {
		struct msg_input in = {.fd = -1};

		if ((r = md_rec_find(src, uid)) == NULL) {
			log_warn("maildir: %s: UID %u was removed during a copy", src->path, uid);
			return ROOST_ETEMP;
		}
		in.internal_date = r->idate;
		path = md_rec_path(src, r);
		err = link_tmp(src->ms, dir, path, r->size, &in, &c->p);
		free(path);
		if (err != ROOST_ENOTFOUND)
			break;
		tmpdir = md_path(dir, "tmp");
		if (!dir_exists(tmpdir)) {
			free(tmpdir);
			return ROOST_ENOTFOUND;
		}
		free(tmpdir);
		if (tries == RESOLVE_TRIES) {
			log_error("maildir: %s: the file of UID %u keeps being renamed", src->path,
			          uid);
			return ROOST_ETEMP;
		}
		if ((err = md_refresh(src, MD_SYNC_FORCE, &changed)) < 0)
			return err;
		*changed_r |= changed;
	}
	if (err < 0)
		return err;
	c->uid = r->uid;
	c->flags = r->flags;
	c->idate = r->idate;
	c->kws = xcalloc(MD_MAX_KEYWORDS + 1, sizeof(char *));
	for (k = 0; k < MD_MAX_KEYWORDS; k++) {
		if ((r->keywords & (1ull << k)) && src->kw[k] != NULL)
			c->kws[c->n_kws++] = xstrdup(src->kw[k]);
	}
	return 0;
}

/*
 * With dst->mutex and its uidlist lock held: number every copy in dst, all
 * or none. What could refuse one (no UID or keyword letter left) is checked
 * before the first; a copy that fails after others were saved (an I/O
 * error) takes them back.
 */
static int
save_copies(struct md_folder *dst, struct copy_src *v, size_t nv, struct md_durable *d)
{
	uint32_t *saved;
	uint64_t kw;
	size_t i;
	int err = 0;

	if (nv > UINT32_MAX - dst->nextuid)
		return ROOST_ETOOBIG;
	for (i = 0; i < nv; i++) {
		err = keyword_bits(dst, (const char *const *)v[i].kws, v[i].n_kws, true, &kw);
		if (err < 0)
			return err;
	}
	for (i = 0; i < nv; i++) {
		err = finish_save(dst, &v[i].p, v[i].flags, (const char *const *)v[i].kws,
		                  v[i].n_kws, v[i].idate, d, &v[i].new_uid);
		if (err < 0)
			break;
	}
	if (err < 0 && i > 0) {
		saved = xreallocarray(NULL, i, sizeof(*saved));
		for (size_t k = 0; k < i; k++)
			saved[k] = v[k].new_uid;
		if (expunge_locked(dst, saved, i) < 0)
			log_error("maildir: %s: a failed copy left messages behind", dst->path);
		free(saved);
	}
	return err;
}

/*
 * Copy uids of src into dst, all or nothing (RFC 3501 6.4.7, RFC 6851),
 * in three steps, never holding both folders' mutexes: with src's mutex
 * held throughout, so that no flag change of this process renames a file
 * between finding its name and linking it, link every source into dst's
 * tmp/; number them in dst; then (move) expunge them from src. UIDs src no
 * longer has are skipped, as by every backend.
 */
static int
copy_between(struct md_storage *ms, struct md_folder *src, struct md_folder *dst,
             const uint32_t *uids, size_t n, bool move, uint32_t *dest_uidvalidity_r,
             uint32_t **src_uids_r, uint32_t **dest_uids_r, size_t *n_r)
{
	struct copy_src *v;
	size_t nv = 0, i;
	uint32_t *su, *du;
	struct md_durable d = {false, false, false, false};
	bool changed = false;
	int err, e;

	v = xcalloc(n + 1, sizeof(*v));
	pthread_mutex_lock(&src->mutex);
	err = md_refresh(src, MD_SYNC_NORMAL, &changed);
	for (i = 0; err == 0 && i < n; i++) {
		if (md_rec_find(src, uids[i]) == NULL)
			continue;
		if ((err = link_message(src, uids[i], dst->path, &v[nv], &changed)) == 0)
			nv++;
	}
	pthread_mutex_unlock(&src->mutex);
	if (changed)
		md_notify(src, src->user, src->name);
	if (err < 0) {
		copy_srcs_free(v, nv);
		return err;
	}

	pthread_mutex_lock(&dst->mutex);
	err = md_lock_and_sync(dst, MD_SYNC_LIGHT);
	if (err == 0)
		err = save_copies(dst, v, nv, &d);
	if (dst->locked) {
		e = md_commit_deferred(dst, &d);
		if (err == 0)
			err = e;
	}
	*dest_uidvalidity_r = dst->uidvalidity;
	pthread_mutex_unlock(&dst->mutex);
	if (err == 0)
		err = md_durable_sync(ms, dst->path, &d);
	if (err < 0) {
		copy_srcs_free(v, nv);
		return err;
	}

	su = xcalloc(nv + 1, sizeof(*su));
	du = xcalloc(nv + 1, sizeof(*du));
	for (i = 0; i < nv; i++) {
		su[i] = v[i].uid;
		du[i] = v[i].new_uid;
	}
	copy_srcs_free(v, nv);
	if (move && nv > 0 && (err = expunge_folder(src, su, nv)) < 0) {
		free(su);
		free(du);
		return err;
	}
	*src_uids_r = su;
	*dest_uids_r = du;
	*n_r = nv;
	return 0;
}

int
md_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
        uint32_t *dest_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dest_uids_r, size_t *n_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_storage *ms = container_of(mb->st, struct md_storage, st);
	struct md_folder *dst;
	int err;

	*src_uids_r = NULL;
	*dest_uids_r = NULL;
	*n_r = 0;
	if ((err = md_folder_open(ms, m->user, dest, MD_SYNC_LIGHT, &dst)) < 0)
		return err;
	err = copy_between(ms, m->f, dst, uids, n, move, dest_uidvalidity_r, src_uids_r,
	                   dest_uids_r, n_r);
	md_folder_put(ms, dst);
	return err;
}

int
md_move_all(struct md_storage *ms, struct md_folder *from, struct md_folder *to)
{
	uint32_t *uids, *su = NULL, *du = NULL, v;
	size_t n, i, nr = 0;
	bool changed;
	int err;

	pthread_mutex_lock(&from->mutex);
	err = md_refresh(from, MD_SYNC_NORMAL, &changed);
	n = from->n;
	uids = xcalloc(n + 1, sizeof(*uids));
	for (i = 0; i < n; i++)
		uids[i] = from->recs[i].uid;
	pthread_mutex_unlock(&from->mutex);
	if (err == 0 && n > 0)
		err = copy_between(ms, from, to, uids, n, true, &v, &su, &du, &nr);
	free(uids);
	free(su);
	free(du);
	return err;
}

/* ---- read ---- */

static void
view_release(struct msg_view *view)
{
	if (view->priv[0] != NULL)
		munmap(view->priv[0], (size_t)(uintptr_t)view->priv[1]);
	view->priv[0] = NULL;
	view->release = NULL;
}

int
md_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	struct md_rec *r;
	struct stat stb;
	bool changed = false;
	void *addr;
	int fd = -1, tries, err = 0;

	memset(view_r, 0, sizeof(*view_r));
	pthread_mutex_lock(&f->mutex);
	for (tries = 0;; tries++) {
		r = md_rec_find(f, uid);
		if (r != NULL && f->scanned) {
			char *path = md_rec_path(f, r);

			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 && errno != ENOENT)
				err = md_errno_to_err(errno);
			free(path);
			if (fd >= 0 || err < 0)
				break;
		} else if (r == NULL && tries > 0) {
			break;
		}
		if (tries == RESOLVE_TRIES) {
			/* there, but renamed faster than we look: not expunged */
			log_error("maildir: %s: the file of UID %u keeps being renamed", f->path,
			          uid);
			err = ROOST_ETEMP;
			break;
		}
		/* not known yet, or renamed meanwhile: look again */
		{
			bool c;

			err = md_refresh(f, tries == 0 ? MD_SYNC_NORMAL : MD_SYNC_FORCE, &c);
			changed |= c;
			if (err < 0)
				break;
		}
	}
	pthread_mutex_unlock(&f->mutex);
	if (changed)
		md_notify(f, m->user, m->name);
	if (fd < 0)
		return err < 0 ? err : ROOST_ENOTFOUND;
	if (fstat(fd, &stb) < 0) {
		close(fd);
		return ROOST_EIO;
	}
	if (stb.st_size == 0) {
		close(fd);
		view_r->data = (const uint8_t *)"";
		view_r->len = 0;
		view_r->holdable = true;
		view_r->release = view_release;
		return 0;
	}
	addr = mmap(NULL, (size_t)stb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (addr == MAP_FAILED) {
		log_error("maildir: mmap: %s", strerror(errno));
		return ROOST_EIO;
	}
	/* A private mapping outlives the descriptor and any later rename or
	 * unlink of the file, and pins nothing other readers need: the view
	 * may be held across steps (storage.h). Message files are never
	 * rewritten in place (Maildir's rule), so the bytes stay put. */
	view_r->data = addr;
	view_r->len = (size_t)stb.st_size;
	view_r->holdable = true;
	view_r->priv[0] = addr;
	view_r->priv[1] = (void *)(uintptr_t)stb.st_size;
	view_r->release = view_release;
	return 0;
}
