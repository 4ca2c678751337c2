/*
 * Maildir copy and move: hard links into the destination's tmp/ (a copy
 * across file systems), then saved as new messages; a move expunges the
 * sources afterwards.
 */

#include <stdlib.h>
#include <sys/stat.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

struct copy_src {
	uint32_t uid;
	uint32_t flags;
	int64_t idate;
	char **kws;
	size_t n_kws;
	struct md_pending p;
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
		md_pending_drop(&v[i].p);
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
			log_warn("event=maildir_race op=copy path=%s uid=%u error=\"removed during "
			         "the copy\"",
			         LOG_QUOTE(src->path), uid);
			return ROOST_ETEMP;
		}
		in.internal_date = r->idate;
		in.has_internal_date = true;
		path = md_rec_path(src, r);
		err = md_link_tmp(src->ms, dir, path, r->size, &in, &c->p);
		free(path);
		if (err != ROOST_ENOTFOUND)
			break;
		tmpdir = md_path(dir, "tmp");
		if (!dir_exists(tmpdir)) {
			free(tmpdir);
			return ROOST_ENOTFOUND;
		}
		free(tmpdir);
		if (tries == MD_RESOLVE_TRIES) {
			log_error("event=maildir_race op=copy path=%s uid=%u error=\"file keeps "
			          "being renamed\"",
			          LOG_QUOTE(src->path), uid);
			return ROOST_ETEMP;
		}
		if ((err = md_refresh(src, MD_SYNC_FORCE, &changed)) < 0)
			return err;
		*changed_r |= changed;
	}
	if (err < 0)
		return err;
	c->uid = r->uid;
	c->p.emailid = md_rec_emailid(r);
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
		err = md_keyword_bits(dst, (const char *const *)v[i].kws, v[i].n_kws, true, &kw);
		if (err < 0)
			return err;
	}
	for (i = 0; i < nv; i++) {
		err = md_finish_save(dst, &v[i].p, v[i].flags, (const char *const *)v[i].kws,
		                     v[i].n_kws, v[i].idate, d, &v[i].new_uid);
		if (err < 0)
			break;
	}
	if (err < 0 && i > 0) {
		saved = xreallocarray(NULL, i, sizeof(*saved));
		for (size_t k = 0; k < i; k++)
			saved[k] = v[k].new_uid;
		if (md_expunge_locked(dst, saved, i) < 0)
			log_error("event=storage_error backend=maildir op=copy path=%s error=\"a "
			          "failed copy left "
			          "messages behind\"",
			          LOG_QUOTE(dst->path));
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
	struct md_durable d;
	bool changed = false;
	int err, e;

	md_durable_init(&d);
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
		err = md_durable_sync(dst, &d);
	else
		md_durable_drop(&d);
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
	if (move && nv > 0 && (err = md_expunge_folder(src, su, nv)) < 0) {
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
        struct copy_result *res)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_storage *ms = container_of(mb->st, struct md_storage, st);
	struct md_folder *dst;
	int err;

	if ((err = md_folder_open(ms, m->user, dest, MD_SYNC_NONE, &dst)) < 0)
		return err;
	err = copy_between(ms, m->f, dst, uids, n, move, &res->uidvalidity, &res->src, &res->dst,
	                   &res->n);
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
