/*
 * Maildir expunge: unlink the files, drop the records, log the UIDs.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

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
int
md_expunge_locked(struct md_folder *f, const uint32_t *uids, size_t n)
{
	uint64_t modseq = f->highestmodseq + 1;
	bool in_new = false, in_cur = false, any = false, own_new, own_cur;
	uint32_t *gone = xreallocarray(NULL, n + 1, sizeof(*gone));
	size_t n_gone = 0, i = 0;
	int tries = 0, err = 0;

	/* Our own unlinks need not make the next sync read the directories
	 * again (md_own_rename_begin(); the watch reports everyone else's). */
	own_new = md_own_rename_begin(f, true);
	own_cur = md_own_rename_begin(f, false);
	md_quota_hold(f);
	while (i < n) {
		struct md_rec *r = md_rec_find(f, uids[i]);
		char *path;

		if (r == NULL) {
			i++;
			tries = 0;
			continue;
		}
		path = md_rec_path(f, r);
		md_watch_own(f, r->in_new, false, r->fname);
		if (unlink(path) < 0) {
			int e = errno;

			md_watch_own_undo(f, r->in_new, false, r->fname);

			if (e == ENOENT && tries++ < MD_RESOLVE_TRIES) {
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
				log_error("event=maildir_race op=expunge path=%s uid=%u "
				          "error=\"file keeps "
				          "being renamed\"",
				          LOG_QUOTE(f->path), r->uid);
				err = ROOST_ETEMP;
			} else {
				log_error("event=storage_error backend=maildir op=unlink path=%s "
				          "error=\"%s\"",
				          LOG_QUOTE(path), strerror(e));
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
		md_expunge_log_add(f, r->uid, modseq, md_rec_emailid(r));
		f->quota_bytes -= (int64_t)r->size;
		f->quota_messages--;
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
		if (own_new && in_new)
			md_own_rename_end(f, true);
		if (own_cur && in_cur)
			md_own_rename_end(f, false);
		md_fsync_subdirs(f, in_new, in_cur);
	}
	free(gone);
	return err;
}

int
md_expunge_folder(struct md_folder *f, const uint32_t *uids, size_t n)
{
	int err, e;

	pthread_mutex_lock(&f->mutex);
	if ((err = md_lock_and_sync(f, MD_SYNC_LIGHT)) < 0) {
		pthread_mutex_unlock(&f->mutex);
		return err;
	}
	err = md_expunge_locked(f, uids, n);
	e = md_commit(f);
	pthread_mutex_unlock(&f->mutex);
	return err < 0 ? err : e;
}

int
md_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct md_mailbox *m = container_of(mb, struct md_mailbox, mb);

	return md_expunge_folder(m->f, uids, n);
}
