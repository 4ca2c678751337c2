/*
 * The read side of an open Maildir mailbox: open and close, status,
 * records, keywords, \Recent claims, the parse cache, changes-since and
 * the zero-copy read of a message file (mmap).
 */

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/uid.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

int
md_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                struct mailbox **mb_r)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct md_mailbox *m;
	struct md_folder *f;
	int err;

	if ((err = md_folder_open(ms, user, name, MD_SYNC_NORMAL, &f)) < 0)
		return err;
	md_watch_add(ms, f);
	m = xcalloc(1, sizeof(*m));
	m->f = f;
	pthread_mutex_lock(&f->mutex);
	m->uidvalidity = f->uidvalidity;
	pthread_mutex_unlock(&f->mutex);
	m->user = xstrdup(user);
	m->name = xstrdup(name);
	m->mb.st = st;
	m->mb.flags = flags;
	*mb_r = &m->mb;
	return 0;
}

static void
kw_view_free(struct md_mailbox *m)
{
	size_t i;

	for (i = 0; i < MD_MAX_KEYWORDS; i++) {
		free((char *)m->kw_view[i]);
		m->kw_view[i] = NULL;
	}
}

void
md_mailbox_close(struct mailbox *mb)
{
	struct md_mailbox *m;

	if (mb == NULL)
		return;
	m = container_of(mb, struct md_mailbox, mb);
	pthread_mutex_lock(&m->f->mutex);
	if (m->f->claimer == m) {
		/* gone before its claim: what it was shown stays claimed */
		if (m->f->claim_uv == m->f->uidvalidity && m->f->claim_to > m->f->recent_floor)
			m->f->recent_floor = m->f->claim_to;
		m->f->claimer = NULL;
	}
	pthread_mutex_unlock(&m->f->mutex);
	md_folder_put(container_of(mb->st, struct md_storage, st), m->f);
	kw_view_free(m);
	free(m->user);
	free(m->name);
	free(m);
}

/*
 * Lock the folder and bring it up to date. When a check of the disk in
 * this mode or a stronger one began after we arrived and completed while
 * we waited for the mutex, it saw everything that was done before our
 * call, and another would only cost the same stats again: sessions woken
 * together by one delivery (IDLE) would each stat the same files, one
 * after the other, behind the same mutex.
 */
static int
mb_begin(struct mailbox *mb, int mode, struct md_folder **f_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	uint64_t arrived = atomic_load(&f->checks_begun), check;
	int level = mode == MD_SYNC_LIGHT ? 0 : 1;
	bool changed;
	int err;

	pthread_mutex_lock(&f->mutex);
	if (mode != MD_SYNC_FORCE && f->loaded && f->checked[level] > arrived) {
		*f_r = f;
		return 0;
	}
	check = atomic_fetch_add(&f->checks_begun, 1) + 1;
	err = md_refresh(f, mode, &changed);
	if (err < 0) {
		pthread_mutex_unlock(&f->mutex);
		return err;
	}
	if (check > f->checked[0])
		f->checked[0] = check;
	if (level == 1 && check > f->checked[1])
		f->checked[1] = check;
	if (changed) {
		/* wake the others; we are already up to date ourselves */
		pthread_mutex_unlock(&f->mutex);
		md_notify(f, m->user, m->name);
		pthread_mutex_lock(&f->mutex);
	}
	*f_r = f;
	return 0;
}

int
md_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r)
{
	struct md_folder *f;
	int err;

	if ((err = mb_begin(mb, MD_SYNC_NORMAL, &f)) < 0)
		return err;
	md_folder_status(f, status_r);
	pthread_mutex_unlock(&f->mutex);
	return 0;
}

static void
rec_out(const struct md_rec *r, struct msg_record *o)
{
	o->uid = r->uid;
	o->flags = r->flags;
	o->keywords = r->keywords;
	o->modseq = r->modseq;
	o->internal_date = r->idate;
	o->size = r->size;
	o->emailid = md_rec_emailid(r);
	o->save_date = r->save_date;
}

int
md_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	struct md_folder *f;
	struct msg_record *v;
	size_t i;
	int err;

	if ((err = mb_begin(mb, MD_SYNC_NORMAL, &f)) < 0)
		return err;
	v = xreallocarray(NULL, f->n + 1, sizeof(*v));
	for (i = 0; i < f->n; i++)
		rec_out(&f->recs[i], &v[i]);
	*recs_r = v;
	*n_r = f->n;
	if (modseq_r != NULL)
		*modseq_r = f->highestmodseq;
	pthread_mutex_unlock(&f->mutex);
	return 0;
}

int
md_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f;
	size_t i;
	int err;

	if ((err = mb_begin(mb, MD_SYNC_LIGHT, &f)) < 0)
		return err;
	kw_view_free(m);
	for (i = 0; i < f->n_kw; i++) {
		char unnamed[32];

		if (f->kw[i] != NULL) {
			m->kw_view[i] = xstrdup(f->kw[i]);
		} else {
			snprintf(unnamed, sizeof(unnamed), "$MaildirLetter%c", (char)('a' + i));
			m->kw_view[i] = xstrdup(unnamed);
		}
	}
	*names_r = m->kw_view;
	*n_r = f->n_kw;
	pthread_mutex_unlock(&f->mutex);
	return 0;
}

uint32_t
md_recent_base(const struct md_folder *f)
{
	if (f->claim_uv == f->uidvalidity && f->recent_floor > f->recent_uid)
		return f->recent_floor;
	return f->recent_uid;
}

/* The claim of m, f->mutex and the uidlist lock held, synced: [*first_r,
 * *next_r), the boundary moved past it. A reservation of m's is its own
 * whoever moved the boundary since; another handle's is skipped. */
static void
claim_locked(struct md_folder *f, struct md_mailbox *m, uint32_t *first_r, uint32_t *next_r)
{
	uint32_t base = md_recent_base(f), first = base, next = f->nextuid;
	bool reserved = f->claimer != NULL && f->claim_uv == f->uidvalidity;

	if (reserved && f->claimer == m) {
		/* nobody moved the boundary since: everything up to now */
		first = f->claim_from;
		if (base != f->claim_from)
			next = f->claim_to;
		f->claimer = NULL;
	} else if (reserved && first < f->claim_to) {
		first = f->claim_to;
	}
	if (first > next)
		first = next;
	if (next > f->recent_uid) {
		f->recent_uid = next;
		md_index_log_recent(f);
	}
	*first_r = first;
	*next_r = next;
}

/*
 * Claims what the folder in memory knows without looking at the disk first:
 * IMAP claims right after a sync (that looked), and a message another
 * program added since is only left for a later claim. Moving the boundary
 * takes the lock and rereads the files like any change.
 */
int
md_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	int err = 0;

	if (m->claim_ready) {
		/* decided by md_changes_since_nb() just before */
		m->claim_ready = false;
		*first_recent_uid_r = m->claim_first;
		*next_r = m->claim_next;
		return 0;
	}
	m->claim_deferred = false;
	pthread_mutex_lock(&f->mutex);
	if (!f->loaded) {
		pthread_mutex_unlock(&f->mutex);
		if ((err = mb_begin(mb, MD_SYNC_LIGHT, &f)) < 0)
			return err;
	}
	*first_recent_uid_r = *next_r = md_recent_base(f);
	if (!(mb->flags & MAILBOX_READONLY) && (f->claimer == m || *next_r != f->nextuid)) {
		if ((err = md_lock_and_sync(f, MD_SYNC_LIGHT)) == 0) {
			claim_locked(f, m, first_recent_uid_r, next_r);
			err = md_commit(f);
		}
	}
	if (f->claimer == m)
		f->claimer = NULL;
	pthread_mutex_unlock(&f->mutex);
	return err;
}

int
md_cache_get_op(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	int err;

	pthread_mutex_lock(&m->f->mutex);
	err = md_cache_get(m->f, uid, out);
	pthread_mutex_unlock(&m->f->mutex);
	return err;
}

int
md_cache_set_op(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	int err;

	pthread_mutex_lock(&m->f->mutex);
	err = md_cache_set(m->f, uid, data, len);
	pthread_mutex_unlock(&m->f->mutex);
	return err;
}

static int
exp_uid_cmp(const void *a, const void *b)
{
	return uid_cmp(&((const struct md_expunge *)a)->uid, &((const struct md_expunge *)b)->uid);
}

/* With f->mutex held: the records changed after modseq into c, and the
 * expunge log's entries after it into *exp_r (the caller's). */
static void
changes_collect(struct md_folder *f, uint64_t modseq, struct mailbox_changes *c,
                struct md_expunge **exp_r, size_t *n_exp_r)
{
	struct md_expunge *exp;
	size_t i, n;

	memset(c, 0, sizeof(*c));
	c->highestmodseq = f->highestmodseq;
	c->uidnext = f->nextuid;
	c->expunged_complete = modseq >= f->expunge_floor;
	for (i = n = 0; i < f->n; i++) {
		if (f->recs[i].modseq > modseq)
			n++;
	}
	c->changed = xreallocarray(NULL, n + 1, sizeof(*c->changed));
	for (i = 0; i < f->n; i++) {
		if (f->recs[i].modseq > modseq)
			rec_out(&f->recs[i], &c->changed[c->n_changed++]);
	}
	exp = xreallocarray(NULL, f->n_exp + 1, sizeof(*exp));
	for (i = n = 0; i < f->n_exp; i++) {
		if (f->exp[i].modseq > modseq)
			exp[n++] = f->exp[i];
	}
	*exp_r = exp;
	*n_exp_r = n;
}

/* The expunged UIDs of exp[0..n) into c, ascending, once each; frees exp. */
static void
changes_expunged(struct mailbox_changes *c, struct md_expunge *exp, size_t n)
{
	size_t i;

	if (n > 1)
		qsort(exp, n, sizeof(*exp), exp_uid_cmp);
	c->expunged = xreallocarray(NULL, n + 1, sizeof(*c->expunged));
	c->expunged_emailids = xreallocarray(NULL, n + 1, sizeof(*c->expunged_emailids));
	for (i = 0; i < n; i++) {
		if (c->n_expunged > 0 && c->expunged[c->n_expunged - 1] == exp[i].uid)
			continue;
		c->expunged_emailids[c->n_expunged] = exp[i].emailid;
		c->expunged[c->n_expunged++] = exp[i].uid;
	}
	free(exp);
}

int
md_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *c)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_expunge *exp;
	struct md_folder *f;
	size_t n;
	int err;

	/* a claim after this one is made here, on the thread that may wait */
	m->claim_ready = m->claim_deferred = false;
	if ((err = mb_begin(mb, MD_SYNC_NORMAL, &f)) < 0)
		return err;
	if (f->uidvalidity != m->uidvalidity) {
		/* deleted and created again since this handle was opened */
		pthread_mutex_unlock(&f->mutex);
		return ROOST_ENOTFOUND;
	}
	changes_collect(f, modseq, c, &exp, &n);
	pthread_mutex_unlock(&f->mutex);
	changes_expunged(c, exp, n);
	return 0;
}

/*
 * A wake-up on the event loop (changes_since_nb in storage_impl.h): the
 * answer from the folder in memory, which every session of the process
 * shares and every change by this process updates before it wakes anyone.
 * What another program did reaches it through the watch thread, so the
 * answer is given only when that thread has looked at every event queued
 * before this call (md_watch_quiet(), watch_pending) and the mutex is
 * free at once; otherwise ROOST_EAGAIN, and the session asks on a worker,
 * which reads the disk (md_changes_since()). 1,000 sessions woken by one
 * delivery to 50 users each ran that read before, one after the other per
 * folder.
 *
 * The \Recent claim after it must not wait either: the first session
 * that sees unclaimed messages becomes the folder's claimer and claims on
 * a worker after it has sent EXISTS (md_claim_later()); the others are
 * told now that nothing is left for them.
 */
int
md_changes_since_nb(struct mailbox *mb, uint64_t modseq, size_t max, struct mailbox_changes *c)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	struct md_expunge *exp;
	bool unclaimed = false;
	uint32_t base;
	size_t i, n_changed = 0, n_exp = 0;

	memset(c, 0, sizeof(*c));
	m->claim_ready = m->claim_deferred = false;
	if (!atomic_load(&f->watch_ok) || !md_watch_quiet(f->ms))
		return ROOST_EAGAIN;
	if (pthread_mutex_trylock(&f->mutex) != 0)
		return ROOST_EAGAIN;
	if (atomic_load(&f->watch_pending) || !f->loaded || !f->scanned || f->locked ||
	    modseq < f->expunge_floor)
		goto again;
	if (f->uidvalidity != m->uidvalidity) {
		/* as in md_changes_since() */
		pthread_mutex_unlock(&f->mutex);
		return ROOST_ENOTFOUND;
	}
	base = md_recent_base(f);
	for (i = f->n; i-- > 0;) {
		if (f->recs[i].modseq <= modseq)
			continue;
		if (++n_changed > max)
			goto again;
		if (f->recs[i].uid >= base)
			unclaimed = true;
	}
	for (i = 0; i < f->n_exp; i++) {
		if (f->exp[i].modseq > modseq && ++n_exp > max)
			goto again;
	}
	if (unclaimed && !(mb->flags & MAILBOX_READONLY) &&
	    (f->claimer == NULL || f->claimer == m)) {
		if (f->claimer == NULL) {
			f->claim_uv = f->uidvalidity;
			f->claim_from = base;
		}
		f->claimer = m;
		f->claim_to = f->nextuid; /* what this answer shows */
		m->claim_deferred = true;
	} else {
		/* read-only, nothing new, or another session claims it: that
		 * one's reservation covers what this answer shows without
		 * \Recent, so no later claim of this handle takes it */
		m->claim_ready = true;
		m->claim_first = m->claim_next = base;
		if (unclaimed && f->claimer != NULL && f->claim_to < f->nextuid)
			f->claim_to = f->nextuid;
	}
	changes_collect(f, modseq, c, &exp, &n_exp);
	pthread_mutex_unlock(&f->mutex);
	changes_expunged(c, exp, n_exp);
	return 0;
again:
	pthread_mutex_unlock(&f->mutex);
	return ROOST_EAGAIN;
}

bool
md_claim_later(struct mailbox *mb)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);

	return m->claim_deferred;
}

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
		if (tries == MD_RESOLVE_TRIES) {
			/* there, but renamed faster than we look: not expunged */
			log_error("event=maildir_race op=read path=%s uid=%u error=\"file keeps "
			          "being renamed\"",
			          LOG_QUOTE(f->path), uid);
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
		log_error("event=storage_error backend=maildir op=mmap error=\"%s\"",
		          strerror(errno));
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
