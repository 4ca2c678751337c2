/*
 * Maildir flag and keyword changes (STORE): a rename of the message file
 * to carry the new info letters, with UNCHANGEDSINCE.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

void
md_fsync_subdirs(struct md_folder *f, bool newdir, bool curdir)
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

	bool moves = strcmp(src, dst) != 0;

	if (moves) {
		md_watch_own(f, r->in_new, false, r->fname);
		md_watch_own(f, false, true, name);
	}
	if (moves && rename(src, dst) < 0) {
		err = md_errno_to_err(errno);
		md_watch_own_undo(f, r->in_new, false, r->fname);
		md_watch_own_undo(f, false, true, name);
		if (err != ROOST_ENOTFOUND)
			log_error(
			    "event=storage_error backend=maildir op=rename path=%s error=\"%s\"",
			    LOG_QUOTE(src), strerror(errno));
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
         struct store_result *res)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);
	struct md_folder *f = m->f;
	size_t i;
	uint64_t kw = 0, modseq;
	bool any = false, from_new = false, own_new, own_cur;
	int err, e;

	/* Light: a file renamed behind our back shows up as ENOENT below. */
	pthread_mutex_lock(&f->mutex);
	if ((err = md_lock_and_sync(f, MD_SYNC_LIGHT)) < 0) {
		pthread_mutex_unlock(&f->mutex);
		return err;
	}
	err = md_keyword_bits(f, req->keywords, req->n_keywords, req->mode != STORE_REMOVE, &kw);
	if (err == 0 && f->kw_dirty)
		err = md_keywords_write(f);
	/* Our own renames need not make the next sync read the directories
	 * again (md_own_rename_begin(); the watch reports everyone else's). */
	own_new = md_own_rename_begin(f, true);
	own_cur = md_own_rename_begin(f, false);
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
			storage_store_result_add(res, r->uid);
			continue;
		}
		nf = (uint32_t)storage_store_bits(req->mode, r->flags, req->flags) & MSG_FLAGS_ALL;
		nk = storage_store_bits(req->mode, r->keywords, kw);
		if (nf == r->flags && nk == r->keywords)
			continue;
		e = rename_flags(f, r, nf, nk, &from_new);
		if (e == ROOST_ENOTFOUND && tries++ < MD_RESOLVE_TRIES) {
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
			log_error("event=maildir_race op=store path=%s uid=%u error=\"file keeps "
			          "being renamed\"",
			          LOG_QUOTE(f->path), r->uid);
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
		if (own_cur)
			md_own_rename_end(f, false);
		if (own_new && from_new)
			md_own_rename_end(f, true);
		md_fsync_subdirs(f, from_new, true);
	}
	e = md_commit(f);
	if (err == 0)
		err = e;
	pthread_mutex_unlock(&f->mutex);
	return err < 0 ? err : 0;
}
