/*
 * The Maildir mailbox list: folders (Maildir++ .Sub.Folder directories)
 * listed, deleted, renamed with their children, subscriptions, status and
 * imported UIDs by name. Making folders and users is in maildir_create.c.
 */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define SUBSCRIPTIONS "roost-subscriptions"

struct name_list {
	struct mailbox_info *v;
	size_t n, cap;
};

static struct mailbox_info *
nl_find(struct name_list *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	}
	return NULL;
}

static struct mailbox_info *
nl_add(struct name_list *l, const char *name, unsigned attrs)
{
	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 16 : l->cap * 2;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n].name = xstrdup(name);
	l->v[l->n].attrs = attrs;
	return &l->v[l->n++];
}

static int
cmp_info(const void *a, const void *b)
{
	return strcmp(((const struct mailbox_info *)a)->name,
	              ((const struct mailbox_info *)b)->name);
}

static char **
read_subscriptions(struct md_storage *ms, const char *user, size_t *n_r)
{
	char *udir = md_user_dir(ms, user);
	char *path = md_path(udir, SUBSCRIPTIONS);
	char *data = NULL, *line, *save = NULL;
	char **v = NULL;
	size_t len, n = 0;

	if (md_read_file(path, 16 * 1024 * 1024, &data, &len) == 0) {
		for (line = strtok_r(data, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save)) {
			if (*line == '\0')
				continue;
			v = xreallocarray(v, n + 1, sizeof(*v));
			v[n++] = xstrdup(line);
		}
	}
	free(data);
	free(path);
	free(udir);
	*n_r = n;
	return v;
}

int
md_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct name_list l = {NULL, 0, 0};
	char *udir = md_user_dir(ms, user);
	char **subs;
	size_t n_subs, i, count;
	struct dirent *de;
	DIR *d;

	d = opendir(udir);
	if (d != NULL) {
		if (md_folder_exists(udir))
			nl_add(&l, "INBOX", md_read_specialuse(udir));
		while ((de = readdir(d)) != NULL) {
			char *name, *path;

			if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			name = md_name_decode(de->d_name);
			if (name == NULL)
				continue;
			path = md_path(udir, de->d_name);
			if (md_folder_exists(path))
				nl_add(&l, name, md_read_specialuse(path));
			free(path);
			free(name);
		}
		closedir(d);
	}
	/* parents that exist only through their children */
	count = l.n;
	for (i = 0; i < count; i++) {
		char *copy = xstrdup(l.v[i].name), *p;

		for (p = strchr(copy, '/'); p != NULL; p = strchr(p + 1, '/')) {
			*p = '\0';
			if (nl_find(&l, copy) == NULL)
				nl_add(&l, copy, MBOX_NOSELECT);
			*p = '/';
		}
		free(copy);
	}
	count = l.n;
	for (i = 0; i < count; i++) {
		size_t j, len = strlen(l.v[i].name);
		bool children = false;

		for (j = 0; j < count && !children; j++) {
			children =
			    strncmp(l.v[j].name, l.v[i].name, len) == 0 && l.v[j].name[len] == '/';
		}
		l.v[i].attrs |= children ? MBOX_HASCHILDREN : MBOX_HASNOCHILDREN;
	}
	subs = read_subscriptions(ms, user, &n_subs);
	for (i = 0; i < n_subs; i++) {
		struct mailbox_info *mi = nl_find(&l, subs[i]);

		if (mi != NULL)
			mi->attrs |= MBOX_SUBSCRIBED;
		else
			nl_add(&l, subs[i], MBOX_SUBSCRIBED | MBOX_NONEXISTENT);
	}
	md_strv_free(subs, n_subs);
	free(udir);
	if (l.n > 0)
		qsort(l.v, l.n, sizeof(*l.v), cmp_info);
	*list_r = l.v;
	*n_r = l.n;
	return 0;
}

static bool
has_children(struct md_storage *ms, const char *user, const char *name)
{
	char *udir = md_user_dir(ms, user);
	char *enc = md_name_encode(name);
	size_t len = strlen(enc);
	struct dirent *de;
	bool found = false;
	DIR *d = opendir(udir);

	while (d != NULL && !found && (de = readdir(d)) != NULL)
		found = strncmp(de->d_name, enc, len) == 0 && de->d_name[len] == '.';
	if (d != NULL)
		closedir(d);
	free(enc);
	free(udir);
	return found;
}

int
md_delete(struct storage *st, const char *user, const char *name)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	char *udir, *path, *trash;
	char tname[256], base[200];
	struct storage_usage gone = {0, 0};
	int fd = -1, qfd = -1, err;

	if (strcmp(name, "INBOX") == 0)
		return ROOST_EPERM;
	if ((err = md_user_lock(ms, user, &fd)) < 0)
		return err;
	(void)md_quota_begin(ms, user, &qfd, NULL);
	udir = md_user_dir(ms, user);
	path = md_folder_path(ms, user, name);
	md_unique_base(ms, 0, base, sizeof(base));
	snprintf(tname, sizeof(tname), "roost-trash.%s", base);
	trash = md_path(udir, tname);
	if (!md_folder_exists(path)) {
		/* only a parent of others (\Noselect): nothing to delete */
		err = has_children(ms, user, name) ? ROOST_EPERM : ROOST_ENOTFOUND;
	} else if (rename(path, trash) < 0) {
		err = md_errno_to_err(errno);
		log_error("event=storage_error backend=maildir op=rename path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
	} else {
		if (ms->fsync)
			md_fsync_dir(udir);
		/* what the folder held leaves the user's usage */
		(void)md_quota_count_folder(trash, &gone);
		md_rm_rf(trash);
	}
	(void)md_quota_end(ms, user, qfd, -1, -(int64_t)gone.bytes, -(int64_t)gone.messages, true);
	md_user_unlock(fd);
	free(trash);
	free(path);
	free(udir);
	return err;
}

static char *
str_concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = xmalloc(la + lb + 1);

	memcpy(p, a, la);
	memcpy(p + la, b, lb + 1);
	return p;
}

int
md_rename(struct storage *st, const char *user, const char *from, const char *to)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	char *udir = md_user_dir(ms, user);
	char *efrom = NULL, *eto = NULL, *tpath = NULL;
	char **srcs = NULL;
	size_t n_srcs = 0, i, lfrom;
	struct dirent *de;
	DIR *d = NULL;
	int fd = -1, err;

	if ((err = md_user_lock(ms, user, &fd)) < 0) {
		free(udir);
		return err;
	}
	tpath = md_folder_path(ms, user, to);
	if (strcmp(to, "INBOX") == 0 || md_folder_exists(tpath)) {
		err = ROOST_EEXISTS;
		goto out;
	}
	if (strcmp(from, "INBOX") == 0) {
		struct md_folder *src = NULL, *dst = NULL;

		if ((err = md_create_with_parents(ms, user, to, 0, fd)) < 0)
			goto out;
		err = md_folder_open(ms, user, "INBOX", MD_SYNC_NORMAL, &src);
		if (err == 0)
			err = md_folder_open(ms, user, to, MD_SYNC_LIGHT, &dst);
		if (err == 0)
			err = md_move_all(ms, src, dst);
		md_folder_put(ms, src);
		md_folder_put(ms, dst);
		goto out;
	}
	efrom = md_name_encode(from);
	eto = md_name_encode(to);
	lfrom = strlen(efrom);
	d = opendir(udir);
	if (d == NULL) {
		err = ROOST_ENOTFOUND;
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, efrom, lfrom) == 0 &&
		    (de->d_name[lfrom] == '\0' || de->d_name[lfrom] == '.')) {
			srcs = xreallocarray(srcs, n_srcs + 1, sizeof(*srcs));
			srcs[n_srcs++] = xstrdup(de->d_name);
		}
	}
	if (n_srcs == 0) {
		err = ROOST_ENOTFOUND;
		goto out;
	}
	/* every target must be free before anything moves */
	for (i = 0; i < n_srcs; i++) {
		char *tname, *tp;

		tname = str_concat(eto, srcs[i] + lfrom);
		tp = md_path(udir, tname);
		if (md_dir_exists(tp))
			err = ROOST_EEXISTS;
		free(tp);
		free(tname);
		if (err < 0)
			goto out;
	}
	/* parents of the new name */
	if (strchr(to, '/') != NULL) {
		char *parent = xstrdup(to);

		*strrchr(parent, '/') = '\0';
		if (strcmp(parent, "INBOX") != 0) {
			char *pp = md_folder_path(ms, user, parent);

			if (!md_folder_exists(pp))
				err = md_create_with_parents(ms, user, parent, 0, fd);
			free(pp);
		}
		free(parent);
		if (err < 0)
			goto out;
	}
	for (i = 0; i < n_srcs; i++) {
		char *tname, *sp, *tp;

		tname = str_concat(eto, srcs[i] + lfrom);
		sp = md_path(udir, srcs[i]);
		tp = md_path(udir, tname);
		if (rename(sp, tp) < 0) {
			log_error(
			    "event=storage_error backend=maildir op=rename path=%s error=\"%s\"",
			    LOG_QUOTE(sp), strerror(errno));
			if (err == 0)
				err = md_errno_to_err(errno);
		}
		free(sp);
		free(tp);
		free(tname);
	}
	if (ms->fsync)
		md_fsync_dir(udir);
out:
	if (d != NULL)
		closedir(d);
	md_user_unlock(fd);
	md_strv_free(srcs, n_srcs);
	free(efrom);
	free(eto);
	free(tpath);
	free(udir);
	return err;
}

int
md_subscribe(struct storage *st, const char *user, const char *name, bool on)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct buf b = BUF_INIT(0);
	char **subs, *udir;
	size_t n, i;
	bool found = false;
	int fd = -1, err;

	if ((err = md_ensure_user_dir(ms, user)) < 0)
		return err;
	if ((err = md_user_lock(ms, user, &fd)) < 0)
		return err;
	subs = read_subscriptions(ms, user, &n);
	for (i = 0; i < n; i++) {
		if (strcmp(subs[i], name) == 0) {
			found = true;
			if (on)
				buf_printf(&b, "%s\n", subs[i]);
		} else {
			buf_printf(&b, "%s\n", subs[i]);
		}
	}
	if (on && !found)
		buf_printf(&b, "%s\n", name);
	udir = md_user_dir(ms, user);
	if (on != found)
		err = md_write_file(ms, udir, SUBSCRIPTIONS,
		                    b.data != NULL ? b.data : (uint8_t *)"", b.len, ms->fsync);
	free(udir);
	md_strv_free(subs, n);
	buf_free(&b);
	md_user_unlock(fd);
	return err;
}

void
md_folder_status(struct md_folder *f, struct mailbox_status *s)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	s->messages = (uint32_t)f->n;
	s->uidnext = f->nextuid;
	s->uidvalidity = f->uidvalidity;
	s->highestmodseq = f->highestmodseq;
	/* dovecot-uidlist's G: made with the folder, moved with its
	 * directory by a rename, read by Dovecot as its mailbox GUID */
	storage_mailboxid_set(s->mailboxid, f->guid);
	uint32_t recent = md_recent_base(f);

	for (i = 0; i < f->n; i++) {
		const struct md_rec *r = &f->recs[i];

		if (!(r->flags & MSG_SEEN)) {
			s->unseen++;
			if (s->first_unseen_uid == 0)
				s->first_unseen_uid = r->uid;
		}
		if (r->uid >= recent)
			s->recent++;
		s->size += r->size;
	}
}

int
md_status(struct storage *st, const char *user, const char *name, struct mailbox_status *status_r)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct md_folder *f;
	int err;

	if ((err = md_folder_open(ms, user, name, MD_SYNC_NORMAL, &f)) < 0)
		return err;
	pthread_mutex_lock(&f->mutex);
	md_folder_status(f, status_r);
	pthread_mutex_unlock(&f->mutex);
	md_folder_put(ms, f);
	return 0;
}

int
md_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
            uint32_t uidnext)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	struct md_folder *f;
	int err, e;

	if ((err = md_folder_open(ms, user, name, MD_SYNC_NORMAL, &f)) < 0)
		return err;
	pthread_mutex_lock(&f->mutex);
	err = md_lock_and_sync(f, MD_SYNC_NORMAL);
	if (err == 0) {
		if (uidvalidity != 0 && uidvalidity != f->uidvalidity) {
			if (f->nextuid != 1 || f->n > 0) {
				err = ROOST_EEXISTS;
			} else {
				f->uidvalidity = uidvalidity;
				f->index_rewrite = true;
				f->uidlist_rewrite = true;
			}
		}
		if (err == 0 && uidnext > f->nextuid) {
			f->nextuid = uidnext;
			f->uidlist_rewrite = true;
		}
		e = md_commit(f);
		if (err == 0)
			err = e;
	}
	pthread_mutex_unlock(&f->mutex);
	md_folder_put(ms, f);
	return err;
}
