/*
 * Keeping a folder's in-memory state in step with the disk.
 *
 * The state is dovecot-uidlist (UIDs), roost-index (MODSEQs etc.) and the
 * file names in new/ and cur/ (flags). The two files are reread only when
 * their inode, size or mtime changed, and only their new tail when they
 * merely grew. The directories are rescanned when their mtime changed, or
 * when the last scan started too soon after their mtime (a change in the
 * same clock tick would not move the mtime again; see mtime_settled()).
 * Deliveries (MD_SYNC_LIGHT) never scan: they need only the next UID.
 *
 * A scan first compares without the lock; only when it finds something to
 * record (a new file, a file gone, flag letters changed, a file without an
 * index entry) does it take the uidlist lock and scan again, so the second
 * readdir confirms that a file that seemed gone was not merely being
 * renamed while we read. Then, with one new MODSEQ: new files get UIDs,
 * changed flags are recorded, gone files are expunged (logged) and the
 * mailbox's watchers are woken (storage_notify) after the commit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define TMP_MAX_AGE (36 * 3600)

struct scan_ent {
	char *name;
	size_t baselen;
	bool in_new;
};

struct scan {
	struct scan_ent *ents;
	size_t n, cap;
	struct md_dir_stamp new_stamp, cur_stamp;
	struct timespec started;
};

static void
scan_free(struct scan *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->ents[i].name);
	free(s->ents);
	memset(s, 0, sizeof(*s));
}

static int
scan_dir(struct md_folder *f, struct scan *s, const char *sub)
{
	char *path = md_path(f->path, sub);
	struct dirent *de;
	DIR *d;

	d = opendir(path);
	if (d == NULL) {
		int err = md_errno_to_err(errno);

		if (errno != ENOENT)
			log_error(
			    "event=storage_error backend=maildir op=opendir path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
		free(path);
		return err;
	}
	while ((de = readdir(d)) != NULL) {
		struct scan_ent *e;

		if (de->d_name[0] == '.')
			continue;
		if (s->n == s->cap) {
			s->cap = s->cap == 0 ? 256 : s->cap * 2;
			s->ents = xreallocarray(s->ents, s->cap, sizeof(*s->ents));
		}
		e = &s->ents[s->n++];
		e->name = xstrdup(de->d_name);
		e->baselen = strcspn(e->name, ":");
		e->in_new = sub[0] == 'n';
	}
	closedir(d);
	free(path);
	return 0;
}

static int
dir_stamp(struct md_folder *f, const char *sub, struct md_dir_stamp *ds_r)
{
	struct stat stb;

	if (f->dirfd >= 0) {
		if (fstatat(f->dirfd, sub, &stb, 0) < 0)
			return md_errno_to_err(errno);
	} else {
		char *path = md_path(f->path, sub);
		int err = stat(path, &stb) < 0 ? md_errno_to_err(errno) : 0;

		free(path);
		if (err < 0)
			return err;
	}
	ds_r->mtime = stb.st_mtim;
	ds_r->ino = stb.st_ino;
	return 0;
}

static bool
stamp_eq(const struct md_dir_stamp *a, const struct md_dir_stamp *b)
{
	return a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ino == b->ino;
}

void
md_map_build(struct base_map *m, struct md_folder *f)
{
	size_t size = 16, i;

	while (size < f->n * 2)
		size *= 2;
	m->slots = xcalloc(size, sizeof(*m->slots));
	m->mask = size - 1;
	for (i = 0; i < f->n; i++) {
		size_t h =
		    (size_t)hash_fnv1a64(f->recs[i].fname, f->recs[i].baselen, HASH_FNV1A64_INIT) &
		    m->mask;

		while (m->slots[h] != 0)
			h = (h + 1) & m->mask;
		m->slots[h] = (uint32_t)i + 1;
	}
}

struct md_rec *
md_map_find(struct base_map *m, struct md_folder *f, const char *name, size_t baselen)
{
	size_t h = (size_t)hash_fnv1a64(name, baselen, HASH_FNV1A64_INIT) & m->mask;

	while (m->slots[h] != 0) {
		struct md_rec *r = &f->recs[m->slots[h] - 1];

		if (r->baselen == baselen && memcmp(r->fname, name, baselen) == 0)
			return r;
		h = (h + 1) & m->mask;
	}
	return NULL;
}

/*
 * Expunges leave their dovecot-uidlist record behind (Dovecot does the
 * same): rewriting a 100k-line file per expunge is what made them slow.
 * A record whose UID is in the expunge log is dropped on reading; the file
 * is rewritten once such dead records are a quarter of it. Also drops
 * records another process expunged (its EXP entries replayed from the
 * index) before our scan would count them as gone a second time.
 */
void
md_drop_expunged(struct md_folder *f)
{
	uint32_t *dead;
	size_t i, j, n;

	if (f->exp_applied >= f->n_exp)
		return;
	n = f->n_exp - f->exp_applied;
	dead = xreallocarray(NULL, n, sizeof(*dead));
	for (i = 0; i < n; i++)
		dead[i] = f->exp[f->exp_applied + i].uid;
	f->exp_applied = f->n_exp;
	uid_sort(dead, n);
	for (i = j = 0; i < f->n; i++) {
		if (uid_find(dead, n, f->recs[i].uid)) {
			md_rec_free_fields(&f->recs[i]);
			f->uidlist_dead++;
			continue;
		}
		f->recs[j++] = f->recs[i];
	}
	f->n = j;
	free(dead);
}

void
md_uidlist_maybe_rewrite(struct md_folder *f)
{
	if (f->uidlist_dead > f->n / 4 + 256)
		f->uidlist_rewrite = true;
}

static int
cmp_ent_name(const void *a, const void *b)
{
	const struct scan_ent *x = *(struct scan_ent *const *)a, *y = *(struct scan_ent *const *)b;

	return strcmp(x->name, y->name);
}

static void
tmp_clean(struct md_folder *f)
{
	char *path = md_path(f->path, "tmp");
	time_t cutoff = time(NULL) - TMP_MAX_AGE;
	struct dirent *de;
	DIR *d;

	f->tmp_cleaned = true;
	d = opendir(path);
	if (d == NULL) {
		free(path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat stb;

		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &stb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(stb.st_mode) && stb.st_mtime < cutoff && stb.st_atime < cutoff) {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				log_info("event=maildir_cleanup path=%s file=%s what=stale_tmp",
				         LOG_QUOTE(path), LOG_QUOTE(de->d_name));
		}
	}
	closedir(d);
	free(path);
}

/*
 * Can a later change of the directory be told by its mtime? Only when the
 * clock had moved on past the mtime before we read the directory: a change
 * in the same clock tick as the last one leaves the mtime as it was. The
 * kernel stamps with its coarse clock (a few ms), so 50 ms is plenty;
 * a file system without sub-second stamps (tv_nsec 0) needs 2 s.
 */
static bool
mtime_settled(const struct timespec *mtime, const struct timespec *scan_start)
{
	int64_t gap_ms = ((int64_t)scan_start->tv_sec - (int64_t)mtime->tv_sec) * 1000 +
	                 (scan_start->tv_nsec - mtime->tv_nsec) / 1000000;

	return gap_ms >= (mtime->tv_nsec == 0 ? 2000 : 50);
}

/* Fill in size and internal date of a file we have not indexed; with
 * ctime_r, its change time (0 if it cannot be read). */
static void
rec_stat(struct md_folder *f, struct md_rec *r, int64_t *ctime_r)
{
	char *path = md_rec_path(f, r);
	const char *s;
	struct stat stb;

	if (ctime_r != NULL)
		*ctime_r = 0;
	if (stat(path, &stb) == 0) {
		r->idate = (int64_t)stb.st_mtime;
		r->size = (uint64_t)stb.st_size;
		if (ctime_r != NULL)
			*ctime_r = (int64_t)stb.st_ctime;
	}
	s = strstr(r->fname, ",S=");
	if (s != NULL && s < r->fname + r->baselen) {
		char *e;
		unsigned long long v = strtoull(s + 3, &e, 10);

		if (e != s + 3 && (*e == ',' || *e == ':' || *e == '\0'))
			r->size = v;
	}
	free(path);
}

/*
 * Compare the directories with the records. Unlocked, it only updates file
 * locations and says (*work_r) whether something must be recorded; locked,
 * it records it.
 */
static int
scan_apply(struct md_folder *f, bool *work_r)
{
	struct scan s;
	struct base_map map = {NULL, 0};
	struct scan_ent **fresh = NULL;
	size_t n_fresh = 0, i, j;
	uint64_t modseq = f->highestmodseq + 1;
	bool locked = f->locked, work = false, settled;
	/* the watches were in place before the directories were read, so
	 * whatever another program does from here on is reported */
	bool watched = atomic_load(&f->watch_ok);
	int err;

	memset(&s, 0, sizeof(s));
	clock_gettime(CLOCK_REALTIME, &s.started);
	if ((err = dir_stamp(f, "new", &s.new_stamp)) < 0 ||
	    (err = dir_stamp(f, "cur", &s.cur_stamp)) < 0)
		return err;
	/* new/ before cur/: a file moving from new/ to cur/ meanwhile is
	 * seen at least once. */
	if ((err = scan_dir(f, &s, "new")) < 0 || (err = scan_dir(f, &s, "cur")) < 0)
		goto out;
	md_map_build(&map, f);
	for (i = 0; i < f->n; i++)
		f->recs[i].mark = false;
	fresh = xreallocarray(NULL, s.n + 1, sizeof(*fresh));
	for (i = 0; i < s.n; i++) {
		struct scan_ent *e = &s.ents[i];
		struct md_rec *r = md_map_find(&map, f, e->name, e->baselen);

		if (r == NULL) {
			/* the same base twice (in new/ and cur/ during a move):
			 * the later, in cur/, wins */
			for (j = 0; j < n_fresh; j++) {
				if (fresh[j]->baselen == e->baselen &&
				    memcmp(fresh[j]->name, e->name, e->baselen) == 0)
					break;
			}
			if (j < n_fresh)
				fresh[j] = e;
			else
				fresh[n_fresh++] = e;
			work = true;
			continue;
		}
		if (r->mark && !e->in_new && r->in_new) {
			/* seen in new/ already; cur/ wins */
		} else if (r->mark) {
			continue;
		}
		r->mark = true;
		if (strcmp(r->fname, e->name) != 0 || r->in_new != e->in_new) {
			free(r->fname);
			r->fname = xstrdup(e->name);
			r->in_new = e->in_new;
		}
	}
	for (i = 0; i < f->n; i++) {
		struct md_rec *r = &f->recs[i];
		uint32_t flags;
		uint64_t kw;
		const char *info;

		if (!r->mark) {
			work = true;
			continue;
		}
		info = r->fname[r->baselen] == ':' ? strchr(r->fname + r->baselen, ',') : NULL;
		md_info_parse(f, info != NULL ? info + 1 : NULL, &flags, &kw);
		if (!r->indexed) {
			work = true;
			if (locked) {
				r->flags = flags;
				r->keywords = kw;
				rec_stat(f, r, NULL);
				r->modseq = modseq;
				r->indexed = true;
				md_index_log_rec(f, r);
			}
		} else if (flags != r->flags || kw != r->keywords) {
			work = true;
			if (locked) {
				r->flags = flags;
				r->keywords = kw;
				r->modseq = modseq;
				md_index_log_rec(f, r);
			}
		}
	}
	if (!locked)
		goto done;

	/* files gone */
	for (i = j = 0; i < f->n; i++) {
		struct md_rec *r = &f->recs[i];

		if (!r->mark) {
			md_expunge_log_add(f, r->uid, modseq, md_rec_emailid(r));
			md_rec_free_fields(r);
			f->uidlist_dead++;
			continue;
		}
		f->recs[j++] = *r;
	}
	f->n = j;
	md_uidlist_maybe_rewrite(f);

	/* new files, in name order (names start with the delivery time) */
	if (n_fresh > 1)
		qsort(fresh, n_fresh, sizeof(*fresh), cmp_ent_name);
	for (i = 0; i < n_fresh; i++) {
		struct md_rec *r;
		const char *info;

		if (f->nextuid == UINT32_MAX) {
			log_error("event=storage_error backend=maildir op=assign_uid path=%s "
			          "error=\"UIDs exhausted\"",
			          LOG_QUOTE(f->path));
			err = ROOST_ETOOBIG;
			break;
		}
		r = md_rec_append(f, f->nextuid++);
		r->fname = xstrdup(fresh[i]->name);
		r->baselen = (uint16_t)fresh[i]->baselen;
		r->in_new = fresh[i]->in_new;
		info = r->fname[r->baselen] == ':' ? strchr(r->fname + r->baselen, ',') : NULL;
		md_info_parse(f, info != NULL ? info + 1 : NULL, &r->flags, &r->keywords);
		/* Put here by another program: the rename into new/ or cur/
		 * that did it set the change time, the nearest thing to when
		 * it was saved. A later rename moves the change time, so the
		 * date is kept in the uidlist from now on. */
		rec_stat(f, r, &r->save_date);
		if (r->save_date != 0) {
			char t[24];

			snprintf(t, sizeof(t), "T%" PRId64, r->save_date);
			r->ext = xstrdup(t);
		}
		r->modseq = modseq;
		r->indexed = true;
		md_index_log_rec(f, r);
		if (f->uidlist_append_from == 0)
			f->uidlist_append_from = r->uid;
	}
	if (work) {
		f->highestmodseq = modseq;
		f->changed = true;
	}
done:
	f->scanned = true;
	f->new_stamp = s.new_stamp;
	f->cur_stamp = s.cur_stamp;
	settled = mtime_settled(&s.new_stamp.mtime, &s.started) &&
	          mtime_settled(&s.cur_stamp.mtime, &s.started);
	/* Too soon after a change for the mtime to tell the next one, but
	 * watched: the watch thread reports and syncs any later change by
	 * another program, so the scan stands while the watches do (a session
	 * that opens the folder just after another's EXPUNGE need not read
	 * the directories at every command for 50 ms). */
	f->dirs_clean = settled || watched;
	f->dirs_by_watch = !settled && watched;
	if (locked && work)
		f->dirs_clean = false;
	*work_r = work;
out:
	free(fresh);
	free(map.slots);
	scan_free(&s);
	return err;
}

static bool
dirs_unchanged(struct md_folder *f)
{
	struct md_dir_stamp n, c;

	if (!f->dirs_clean || !f->scanned)
		return false;
	/* a stamp recorded after a rename of ours, or by a scan the mtime
	 * alone could not vouch for, is only as good as the watch that
	 * reports everyone else's changes */
	if (f->dirs_by_watch && !atomic_load(&f->watch_ok))
		return false;
	if (dir_stamp(f, "new", &n) < 0 || dir_stamp(f, "cur", &c) < 0)
		return false;
	return stamp_eq(&n, &f->new_stamp) && stamp_eq(&c, &f->cur_stamp);
}

bool
md_own_rename_begin(struct md_folder *f, bool in_new)
{
	struct md_dir_stamp t;

	if (!atomic_load(&f->watch_ok) || !f->dirs_clean || !f->scanned)
		return false;
	if (dir_stamp(f, in_new ? "new" : "cur", &t) < 0)
		return false;
	return stamp_eq(&t, in_new ? &f->new_stamp : &f->cur_stamp);
}

void
md_own_rename_end(struct md_folder *f, bool in_new)
{
	if (dir_stamp(f, in_new ? "new" : "cur", in_new ? &f->new_stamp : &f->cur_stamp) < 0)
		f->dirs_clean = false;
	else
		f->dirs_by_watch = true;
}

static int
uidlist_missing(struct md_folder *f)
{
	char *cur = md_path(f->path, "cur");
	struct stat stb;
	int err;

	err = stat(cur, &stb) < 0 ? ROOST_ENOTFOUND : 0;
	free(cur);
	if (err < 0)
		return err;
	/* A Maildir no uidlist was ever written for (mutt, procmail...):
	 * start one. */
	md_folder_reset(f);
	f->uidvalidity = (uint32_t)time(NULL);
	f->nextuid = 1;
	f->uidlist_version = 3;
	md_random_hex(f->guid, 16);
	f->uidlist_rewrite = true;
	return 0;
}

/*
 * Make f->dirfd the directory now at f->path, for the stat calls of this
 * operation (f->mutex held). The folder may have been removed, renamed or
 * made again by anyone since the last operation; comparing the inode of
 * what the path names with the one the descriptor holds tells (that inode
 * cannot be reused while we hold it open). Without a descriptor, paths.
 */
static void
dirfd_check(struct md_folder *f)
{
	struct stat stb;

	if (stat(f->path, &stb) == 0 && f->dirfd >= 0 && stb.st_ino == f->dir_ino &&
	    stb.st_dev == f->dir_dev)
		return;
	if (f->dirfd >= 0) {
		close(f->dirfd);
		f->dirfd = -1;
	}
	f->dirfd = open(f->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (f->dirfd < 0)
		return;
	if (fstat(f->dirfd, &stb) < 0) {
		close(f->dirfd);
		f->dirfd = -1;
		return;
	}
	f->dir_dev = stb.st_dev;
	f->dir_ino = stb.st_ino;
}

int
md_sync(struct md_folder *f, int mode)
{
	bool work, force = mode == MD_SYNC_FORCE;
	struct md_file_id kw_before;
	int err;

	dirfd_check(f);
	if (!f->tmp_cleaned)
		tmp_clean(f);
again:
	kw_before = f->kw_id;
	if ((err = md_keywords_read(f)) < 0)
		return err;
	if (!md_file_id_eq(&kw_before, &f->kw_id))
		force = true;
	err = md_uidlist_read(f);
	if (err == ROOST_ENOTFOUND) {
		if (!f->locked) {
			if ((err = md_uidlist_lock(f)) < 0)
				return err;
			goto again;
		}
		if ((err = uidlist_missing(f)) < 0)
			return err;
		force = true;
	} else if (err < 0) {
		return err;
	} else if (err == 1) {
		force = true;
	}
	if ((err = md_index_read(f)) < 0)
		return err;
	md_drop_expunged(f);
	f->loaded = true;
	if (mode == MD_SYNC_LIGHT && f->scanned && !force)
		return 0;
	if (!force && dirs_unchanged(f))
		return 0;
	if ((err = scan_apply(f, &work)) < 0)
		return err;
	if (work && !f->locked) {
		if ((err = md_uidlist_lock(f)) < 0)
			return err;
		force = true;
		goto again;
	}
	return 0;
}

int
md_lock_and_sync(struct md_folder *f, int mode)
{
	int err = md_uidlist_lock(f);

	if (err < 0)
		return err;
	err = md_sync(f, mode);
	if (err < 0)
		md_uidlist_unlock(f);
	return err;
}

/*
 * Write what the operation changed and release the lock. The uidlist last:
 * a crash before it leaves index entries for UIDs that do not exist yet,
 * which are ignored (the files then get new UIDs).
 */
static int
commit(struct md_folder *f, struct md_durable *d)
{
	int err = 0, e, fd = -1;
	bool need_dirsync = f->uidlist_rewrite || f->index_rewrite || !f->uidlist_id.exists ||
	                    !f->index_id.exists || f->kw_dirty;

	if (f->kw_dirty && (e = md_keywords_write(f)) < 0)
		err = e;
	if ((e = md_index_write(f)) < 0 && err == 0)
		err = e;
	if ((e = md_uidlist_write(f, d == NULL, d != NULL ? &fd : NULL)) < 0 && err == 0)
		err = e;
	if (d != NULL) {
		if (fd >= 0) {
			/* an earlier append's file was synced by whoever
			 * replaced it, or is this one */
			if (d->uidlist_fd >= 0)
				close(d->uidlist_fd);
			d->uidlist_fd = fd;
		}
		d->folderdir |= need_dirsync;
		if (f->quota_fd >= 0 || f->quota_file_fd >= 0) {
			fd = md_quota_end(f->ms, f->user, f->quota_fd, f->quota_file_fd,
			                  f->quota_bytes, f->quota_messages, false);
			f->quota_fd = f->quota_file_fd = -1;
			if (fd >= 0) {
				if (d->quota_fd >= 0)
					(void)md_quota_sync(f->ms, d->quota_fd);
				d->quota_fd = fd;
			}
		}
	} else if (need_dirsync && f->ms->fsync && err == 0) {
		err = md_fsync_dir(f->path);
	}
	md_uidlist_unlock(f);
	if (err < 0) {
		/* what is on disk is the truth: forget our view */
		md_folder_reset(f);
	}
	return err;
}

/*
 * Write what the operation changed and release the lock. The uidlist last:
 * a crash before it leaves index entries for UIDs that do not exist yet,
 * which are ignored (the files then get new UIDs).
 */
int
md_commit(struct md_folder *f)
{
	return commit(f, NULL);
}

int
md_commit_deferred(struct md_folder *f, struct md_durable *d)
{
	return commit(f, d);
}

void
md_durable_init(struct md_durable *d)
{
	memset(d, 0, sizeof(*d));
	d->uidlist_fd = d->quota_fd = -1;
}

void
md_durable_drop(struct md_durable *d)
{
	if (d->uidlist_fd >= 0)
		close(d->uidlist_fd);
	if (d->quota_fd >= 0)
		close(d->quota_fd);
	d->uidlist_fd = d->quota_fd = -1;
}

int
md_durable_sync(struct md_folder *f, struct md_durable *d)
{
	struct md_storage *ms = f->ms;
	const char *path = f->path;
	int err = 0, e;

	if (!ms->fsync) {
		md_durable_drop(d);
		return 0;
	}
	if (d->newdir || d->curdir) {
		char *p = md_path(path, d->newdir ? "new" : "cur");

		err = md_fsync_dir(p);
		free(p);
		if (d->newdir && d->curdir) {
			p = md_path(path, "cur");
			if ((e = md_fsync_dir(p)) < 0 && err == 0)
				err = e;
			free(p);
		}
	}
	/* if it was replaced meanwhile, whoever replaced it synced it */
	if (d->uidlist_fd >= 0 && fdatasync(d->uidlist_fd) < 0) {
		log_error("event=storage_error backend=maildir op=fdatasync path=%s "
		          "file=dovecot-uidlist error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		if (err == 0)
			err = ROOST_EIO;
	}
	if (d->folderdir && (e = md_fsync_dir(path)) < 0 && err == 0)
		err = e;
	if ((e = md_quota_sync(ms, d->quota_fd)) < 0 && err == 0)
		err = e;
	d->quota_fd = -1;
	md_durable_drop(d);
	return err;
}
