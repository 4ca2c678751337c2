/*
 * Writing messages into a Maildir: delivery and append (tmp/ + write +
 * fsync + rename into new/ or cur/ + fsync of the directory).
 *
 * A multi-recipient delivery writes the body once into the first
 * recipient's tmp/ and hard-links it into every other recipient's tmp/
 * (copying only across file systems), so 100 local recipients cost one
 * body on disk. The message file is written and renamed into place before
 * the uidlist lock is taken; the lock covers only the UID assignment.
 */

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

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
		if (fdio_write_all(out, buf, (size_t)r) < 0)
			return -1;
		off += r;
	}
	return 0;
}

/* Write msg (or the file src_fd) into dir/tmp/ under a fresh unique name. */
static int
save_tmp(struct md_storage *ms, const char *dir, const struct msg_input *msg, int src_fd,
         uint64_t src_len, struct md_pending *p)
{
	struct timespec times[2];
	uint64_t size = src_fd >= 0 ? src_len : (uint64_t)msg->len;
	char *tmpdir = md_path(dir, "tmp");
	int fd, rc;

	md_unique_base(ms, size, p->base, sizeof(p->base));
	p->size = size;
	p->idate = msg_input_date(msg);
	p->tmppath = md_path(tmpdir, p->base);
	free(tmpdir);
	fd = open(p->tmppath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = md_errno_to_err(errno);

		log_error("event=storage_error backend=maildir op=create path=%s error=\"%s\"",
		          LOG_QUOTE(p->tmppath), strerror(errno));
		free(p->tmppath);
		p->tmppath = NULL;
		return err == ROOST_EEXISTS ? ROOST_ETEMP : err;
	}
	if (src_fd >= 0)
		rc = copy_fd(fd, src_fd, src_len);
	else if (msg->fd >= 0)
		rc = copy_fd(fd, msg->fd, msg->len);
	else
		rc = fdio_write_all(fd, msg->data, msg->len);
	if (rc == 0) {
		/* the internal date is the file's mtime, as Dovecot keeps it;
		 * set before the fdatasync, which then writes it with the size
		 * (after it, a crash could lose it) */
		times[0].tv_sec = (time_t)p->idate;
		times[0].tv_nsec = 0;
		times[1] = times[0];
		if (futimens(fd, times) < 0)
			log_warn(
			    "event=storage_error backend=maildir op=futimens path=%s error=\"%s\"",
			    LOG_QUOTE(p->tmppath), strerror(errno));
	}
	if (rc == 0 && ms->fsync)
		rc = fdatasync(fd);
	if (rc < 0) {
		int err = md_errno_to_err(errno);

		log_error("event=storage_error backend=maildir op=write path=%s error=\"%s\"",
		          LOG_QUOTE(p->tmppath), strerror(errno));
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
int
md_link_tmp(struct md_storage *ms, const char *dir, const char *src, uint64_t size,
            const struct msg_input *msg, struct md_pending *p)
{
	char *tmpdir;
	int fd, err;

	md_unique_base(ms, size, p->base, sizeof(p->base));
	p->size = size;
	p->idate = msg_input_date(msg);
	tmpdir = md_path(dir, "tmp");
	p->tmppath = md_path(tmpdir, p->base);
	free(tmpdir);
	if (link(src, p->tmppath) == 0)
		return 0;
	if (errno != EXDEV && errno != EMLINK && errno != EPERM) {
		err = md_errno_to_err(errno);
		/* a vanished name is the caller's to look up again */
		if (errno != ENOENT)
			log_error("event=storage_error backend=maildir op=link path=%s to=%s "
			          "error=\"%s\"",
			          LOG_QUOTE(src), LOG_QUOTE(p->tmppath), strerror(errno));
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

void
md_pending_drop(struct md_pending *p)
{
	if (p->tmppath != NULL) {
		unlink(p->tmppath);
		free(p->tmppath);
		p->tmppath = NULL;
	}
}

/* Letters for keyword names in f, adding unknown ones; ROOST_ETOOBIG when
 * the folder has no letter left. */
int
md_keyword_bits(struct md_folder *f, const char *const *names, size_t n, bool add, uint64_t *bits_r)
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
int
md_finish_save(struct md_folder *f, struct md_pending *p, uint32_t flags, const char *const *kws,
               size_t n_kws, int64_t idate, struct md_durable *d, uint32_t *uid_r)
{
	uint64_t kw = 0;
	struct md_rec *r;
	char *name, *dst, *dstdir;
	bool in_new, own;
	int err;

	if (f->nextuid == UINT32_MAX)
		return ROOST_ETOOBIG;
	if ((err = md_keyword_bits(f, kws, n_kws, true, &kw)) < 0)
		return err;
	/* names before the letters that mean them */
	if (f->kw_dirty && (err = md_keywords_write(f)) < 0)
		return err;
	in_new = flags == 0 && kw == 0;
	name =
	    in_new ? xstrdup(p->base) : md_fname_build(p->base, strlen(p->base), flags, kw, NULL);
	dstdir = md_path(f->path, in_new ? "new" : "cur");
	dst = md_path(dstdir, name);
	md_quota_hold(f);
	own = md_own_rename_begin(f, in_new);
	md_watch_own(f, in_new, true, name);
	if (rename(p->tmppath, dst) < 0) {
		err = md_errno_to_err(errno);
		md_watch_own_undo(f, in_new, true, name);
		log_error(
		    "event=storage_error backend=maildir op=rename path=%s to=%s error=\"%s\"",
		    LOG_QUOTE(p->tmppath), LOG_QUOTE(dst), strerror(errno));
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
	r = md_rec_append(f, f->nextuid++);
	r->fname = name;
	name = NULL;
	r->baselen = (uint16_t)strlen(p->base);
	r->in_new = in_new;
	r->flags = flags;
	r->keywords = kw;
	r->modseq = ++f->highestmodseq;
	r->idate = idate;
	r->size = p->size;
	r->emailid = p->emailid != 0 ? p->emailid : storage_new_emailid();
	r->save_date = (int64_t)time(NULL); /* a copy too: RFC 8514 */
	{
		char g[48];

		snprintf(g, sizeof(g), "G%016" PRIx64 " T%" PRId64, r->emailid, r->save_date);
		r->ext = xstrdup(g);
	}
	r->indexed = true;
	f->quota_bytes += (int64_t)r->size;
	f->quota_messages++;
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
folder_commit_one(struct md_folder *f, struct md_pending *p, const struct msg_input *msg,
                  uint32_t *uidvalidity_r, uint32_t *uid_r, struct md_durable *d)
{
	int err, e;

	md_durable_init(d);
	pthread_mutex_lock(&f->mutex);
	err = md_lock_and_sync(f, MD_SYNC_LIGHT);
	if (err == 0) {
		err = md_finish_save(f, p, msg->flags & MSG_FLAGS_ALL, msg->keywords,
		                     msg->n_keywords, p->idate, d, uid_r);
		*uidvalidity_r = f->uidvalidity;
		/* derived data, as mailbox_cache_set(): a failure loses
		 * only the head start */
		if (err == 0 && msg->cache_len > 0)
			(void)md_cache_set(f, *uid_r, msg->cache, msg->cache_len);
		e = md_commit_deferred(f, d);
		if (err == 0)
			err = e;
	}
	pthread_mutex_unlock(&f->mutex);
	return err;
}

static int
folder_finish_one(struct md_folder *f, struct md_pending *p, const struct msg_input *msg,
                  uint32_t *uidvalidity_r, uint32_t *uid_r)
{
	struct md_durable d;
	int err = folder_commit_one(f, p, msg, uidvalidity_r, uid_r, &d);

	if (err == 0)
		err = md_durable_sync(f, &d);
	else
		md_durable_drop(&d);
	return err;
}

/*
 * A delivery to many recipients, one worker per recipient side by side:
 * each recipient's folder takes its own locks, appends and fsyncs, and
 * one after the other they cost a commit and two disk round trips per
 * recipient before anyone is answered or woken (a 50-recipient message
 * waited for 100 fsyncs, then for 50 commits); side by side the disk and
 * the file system take them in parallel. No thread holds two folders.
 */
#define DELIVER_THREADS 16

struct deliver_all {
	struct md_storage *ms;
	const struct msg_input *msg;
	/* the body: a name in the first target's tmp/ every target links
	 * to (NULL: one target, whose own pending file it is) */
	const char *src;
	size_t first; /* targets before it failed to open */
	struct md_folder **fs;
	struct md_pending *ps;
	struct delivery_target *t;
	size_t n;
	_Atomic size_t next;
};

/* Open target i (unless done), link the body into it, commit, sync. */
static void
deliver_one(struct deliver_all *a, size_t i)
{
	struct delivery_target *t = &a->t[i];
	struct md_durable d;

	if (i < a->first)
		return;
	if (a->fs[i] == NULL) {
		t->result = md_folder_open(a->ms, t->user, t->mailbox, MD_SYNC_NONE, &a->fs[i]);
		if (t->result < 0)
			return;
	}
	if (a->src != NULL) {
		t->result = md_link_tmp(a->ms, a->fs[i]->path, a->src, (uint64_t)a->msg->len,
		                        a->msg, &a->ps[i]);
		if (t->result < 0)
			return;
	}
	t->result = folder_commit_one(a->fs[i], &a->ps[i], a->msg, &t->uidvalidity, &t->uid, &d);
	if (t->result == 0)
		t->result = md_durable_sync(a->fs[i], &d);
	else
		md_durable_drop(&d);
}

static void *
deliver_some(void *arg)
{
	struct deliver_all *a = arg;
	size_t i;

	while ((i = atomic_fetch_add(&a->next, 1)) < a->n)
		deliver_one(a, i);
	return NULL;
}

static void
deliver_all_run(struct deliver_all *a)
{
	pthread_t th[DELIVER_THREADS - 1];
	size_t k = 0, todo = a->n - a->first;

	atomic_store(&a->next, a->first);
	if (a->ms->fsync) {
		for (; k + 1 < todo && k < DELIVER_THREADS - 1; k++) {
			if (pthread_create(&th[k], NULL, deliver_some, a) != 0)
				break;
		}
	}
	deliver_some(a);
	while (k-- > 0)
		pthread_join(th[k], NULL);
}

int
md_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	struct md_pending p = {NULL, "", 0, 0, 0};
	uint32_t v;
	int err;

	if ((err = save_tmp(f->ms, f->path, msg, -1, 0, &p)) < 0)
		return err;
	err = folder_finish_one(f, &p, msg, &v, uid_r);
	md_pending_drop(&p);
	return err;
}

int
md_deliver(struct storage *st, const struct msg_input *in, struct delivery_target *t, size_t n)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	/* one date for every copy: the links share the first file's mtime */
	struct msg_input dated = *in;
	struct md_pending src = {NULL, "", 0, 0, 0};
	struct deliver_all a = {ms, &dated, NULL, n, NULL, NULL, t, n, 0};
	size_t i;
	int err = 0;

	a.fs = xcalloc(n + 1, sizeof(*a.fs));
	a.ps = xcalloc(n + 1, sizeof(*a.ps));
	dated.internal_date = msg_input_date(in);
	dated.has_internal_date = true;
	/* the body, once, into the first target that opens */
	for (i = 0; i < n; i++) {
		/* A user without an INBOX gets ROOST_ENOTFOUND: the wrapper
		 * sets the user up and retries. */
		t[i].result = md_folder_open(ms, t[i].user, t[i].mailbox, MD_SYNC_NONE, &a.fs[i]);
		if (t[i].result < 0)
			continue;
		/* more to come: under a name of its own, which no target
		 * renames away while the others link to it */
		t[i].result =
		    save_tmp(ms, a.fs[i]->path, &dated, -1, 0, i + 1 < n ? &src : &a.ps[i]);
		if (t[i].result == 0) {
			a.first = i;
			a.src = src.tmppath;
			break;
		}
	}
	if (a.first < n)
		deliver_all_run(&a);
	for (i = 0; i < n; i++) {
		if (t[i].result < 0 && err == 0)
			err = t[i].result;
		md_pending_drop(&a.ps[i]);
		md_folder_put(ms, a.fs[i]);
	}
	md_pending_drop(&src);
	free(a.ps);
	free(a.fs);
	return err;
}
