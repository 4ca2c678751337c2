/*
 * Maildir folders in memory: the cache of folder states shared by every
 * session of the process (reference-counted, unused ones kept up to a
 * bound), their records, and opening and refreshing one by name.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "roost/error.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define MAX_CACHED_FOLDERS 128

void
md_rec_free_fields(struct md_rec *r)
{
	free(r->fname);
	free(r->ext);
	r->fname = NULL;
	r->ext = NULL;
}

void
md_folder_reset(struct md_folder *f)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		md_rec_free_fields(&f->recs[i]);
	f->n = 0;
	f->n_exp = 0;
	f->uidvalidity = 0;
	f->nextuid = 1;
	f->uidlist_off = 0;
	f->index_off = 0;
	f->index_loaded = false;
	memset(&f->uidlist_id, 0, sizeof(f->uidlist_id));
	memset(&f->index_id, 0, sizeof(f->index_id));
	f->highestmodseq = 0;
	f->expunge_floor = 0;
	f->recent_uid = 1;
	f->dirs_clean = false;
	f->scanned = false;
	f->uidlist_rewrite = false;
	f->uidlist_append_from = 0;
	f->uidlist_dead = 0;
	f->exp_applied = 0;
	f->index_rewrite = false;
	buf_reset(&f->index_pending);
	md_cache_reset(f);
	f->loaded = false;
}

struct md_folder *
md_folder_alloc(struct md_storage *ms, const char *path)
{
	struct md_folder *f = xcalloc(1, sizeof(*f));

	f->ms = ms;
	f->path = xstrdup(path);
	f->cache_fd = -1;
	f->quota_fd = f->quota_file_fd = -1;
	f->dirfd = -1;
	f->nextuid = 1;
	f->recent_uid = 1;
	f->tmp_cleaned = false;
	buf_init(&f->index_pending, 0);
	pthread_mutex_init(&f->mutex, NULL);
	pthread_mutex_init(&f->own_lock, NULL);
	return f;
}

void
md_folder_destroy(struct md_folder *f)
{
	size_t i;

	if (f->quota_fd >= 0)
		close(f->quota_fd);
	if (f->quota_file_fd >= 0)
		close(f->quota_file_fd);
	if (f->dirfd >= 0)
		close(f->dirfd);
	md_folder_reset(f);
	md_uidlist_lock_forget(f);
	for (i = 0; i < MD_MAX_KEYWORDS; i++)
		free(f->kw[i]);
	free(f->recs);
	free(f->exp);
	free(f->cache);
	buf_free(&f->index_pending);
	pthread_mutex_destroy(&f->mutex);
	pthread_mutex_destroy(&f->own_lock);
	free(f->path);
	free(f->user);
	free(f->name);
	free(f);
}

/* The list is kept in order of use, most recent first, so what the
 * bound evicts is what was used least recently. */
struct md_folder *
md_folder_get(struct md_storage *ms, const char *path)
{
	struct md_folder *f, **pp;

	pthread_mutex_lock(&ms->lock);
	for (pp = &ms->folders; (f = *pp) != NULL; pp = &f->next) {
		if (strcmp(f->path, path) == 0) {
			f->refs++;
			*pp = f->next;
			f->next = ms->folders;
			ms->folders = f;
			pthread_mutex_unlock(&ms->lock);
			return f;
		}
	}
	f = md_folder_alloc(ms, path);
	f->refs = 1;
	f->next = ms->folders;
	ms->folders = f;
	pthread_mutex_unlock(&ms->lock);
	return f;
}

/*
 * Unused folders stay cached (a delivery to a mailbox nobody has open
 * should not reread its uidlist every time), up to a limit, and keep
 * their inotify watches (maildir_watch.c): the next session to open one
 * can then trust the directory stamps of the last scan at once, even when
 * the last change was too recent for mtime_settled(). Past the limit the
 * least recently used unused folders go, with their watches.
 */
void
md_folder_put(struct md_storage *ms, struct md_folder *f)
{
	struct md_folder **pp, *victims = NULL;
	size_t count = 0;

	if (f == NULL)
		return;
	pthread_mutex_lock(&ms->lock);
	f->refs--;
	for (pp = &ms->folders; *pp != NULL;) {
		struct md_folder *g = *pp;

		if (++count > MAX_CACHED_FOLDERS && g->refs == 0) {
			md_watch_remove_locked(ms, g);
			*pp = g->next;
			g->next = victims;
			victims = g;
		} else {
			pp = &g->next;
		}
	}
	pthread_mutex_unlock(&ms->lock);
	while (victims != NULL) {
		struct md_folder *g = victims;

		victims = g->next;
		md_folder_destroy(g);
	}
}

void
md_folders_free(struct md_storage *ms)
{
	while (ms->folders != NULL) {
		struct md_folder *f = ms->folders;

		ms->folders = f->next;
		md_folder_destroy(f);
	}
}

struct md_rec *
md_rec_find(struct md_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->recs[mid].uid < uid)
			lo = mid + 1;
		else if (f->recs[mid].uid > uid)
			hi = mid;
		else
			return &f->recs[mid];
	}
	return NULL;
}

char *
md_rec_path(struct md_folder *f, const struct md_rec *r)
{
	return md_path3(f->path, r->in_new ? "new" : "cur", r->fname);
}

/* Call after dropping f->mutex when f->changed was set by a sync. */
void
md_notify(struct md_folder *f, const char *user, const char *name)
{
	if (user != NULL)
		storage_notify(&f->ms->st, user, name);
}

int
md_folder_open(struct md_storage *ms, const char *user, const char *name, int mode,
               struct md_folder **f_r)
{
	char *path = md_folder_path(ms, user, name);
	char *cur = md_path(path, "cur");
	struct md_folder *f;
	struct stat stb;
	bool changed;
	int err;

	if (stat(cur, &stb) < 0 || !S_ISDIR(stb.st_mode)) {
		free(cur);
		free(path);
		return ROOST_ENOTFOUND;
	}
	free(cur);
	f = md_folder_get(ms, path);
	free(path);
	pthread_mutex_lock(&f->mutex);
	if (f->user == NULL) {
		f->user = xstrdup(user);
		f->name = xstrdup(name);
	}
	/* A delivery or copy syncs again under the uidlist lock: the stat
	 * calls of a sync here too would find what that one finds. */
	if (mode == MD_SYNC_NONE && f->loaded)
		err = 0, changed = false;
	else
		err = md_refresh(f, mode == MD_SYNC_NONE ? MD_SYNC_LIGHT : mode, &changed);
	pthread_mutex_unlock(&f->mutex);
	if (err < 0) {
		md_folder_put(ms, f);
		return err;
	}
	if (changed)
		md_notify(f, user, name);
	*f_r = f;
	return 0;
}

int
md_refresh(struct md_folder *f, int mode, bool *changed_r)
{
	int err = md_sync(f, mode), e;

	if (f->locked) {
		e = md_commit(f);
		if (err == 0)
			err = e;
	}
	*changed_r = f->changed;
	f->changed = false;
	return err;
}
