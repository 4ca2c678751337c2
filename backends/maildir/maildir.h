#ifndef ROOST_MAILDIR_H
#define ROOST_MAILDIR_H

/*
 * Private to backends/maildir. The Maildir backend keeps every user's mail
 * in a Maildir++ tree that Dovecot, mutt and other Maildir tools read and
 * write too:
 *
 *   <data_dir>/maildir/<user>/            INBOX (cur/ new/ tmp/)
 *   <data_dir>/maildir/<user>/.a.b/       mailbox "a/b"
 *   <folder>/dovecot-uidlist              UIDs (Dovecot's version 3 format)
 *   <folder>/dovecot-uidlist.lock         cross-process lock (O_EXCL dotlock)
 *   <folder>/dovecot-keywords             keyword names for letters a-z
 *   <folder>/roost-index                  ours: MODSEQs, expunge log, \Recent
 *   <folder>/roost-cache                  ours: parsed-data cache slots
 *   <folder>/roost-specialuse             ours: special-use attribute
 *   <user>/roost-subscriptions            ours: subscribed names, UTF-8
 *   <user>/roost-uidvalidity              ours: last UIDVALIDITY handed out
 *   <folder>/roost-metadata               ours: RFC 5464 entries (maildir_meta.c)
 *   <user>/roost-server-metadata          ours: the server's entries
 *   <user>/maildirsize                    Maildir++ quota usage (maildir_quota.c)
 *   <user>/roost-quota.lock               ours: flock serialising its recount
 *
 * Folder names (maildir_name.c): each '/'-separated component of the
 * UTF-8 name is converted to modified UTF-7 (RFC 3501 5.1.3, as Dovecot
 * stores names), then '%' and '.' are written as "%25" and "%2e" (Dovecot's
 * storage escape with mailbox_list_storage_escape_char=%, or its listescape
 * plugin with listescape_char=%, both in lower-case hex). Components are
 * joined with '.' and prefixed with '.'. The mapping is injective and its
 * output never contains '/', so no two names share a directory and no name
 * leaves the user's directory.
 *
 * Locking: per folder an in-process mutex (struct md_folder.mutex) held for
 * the whole operation, then, for changes, the dovecot-uidlist.lock dotlock
 * for other processes. Lock order: storage->lock is never held while taking
 * a folder mutex; no thread holds two folder mutexes at once (copy works in
 * phases); the user flock (roost-lock) is taken before a folder mutex only.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "roost/storage.h"
#include "roost/storage_impl.h"

#define MD_MAX_KEYWORDS 26
#define MD_OWN_MAX 128

struct md_storage {
	struct storage st;

	/* fixed after open */
	char *root;     /* <data_dir>/maildir */
	char *hostname; /* for unique names, '/' and ':' escaped */
	bool fsync;
	uint64_t retention; /* seconds of expunge log */

	pthread_mutex_t lock; /* protects folders, watcher */
	struct md_folder *folders;
	struct md_watcher *watcher; /* maildir_watch.c; NULL until needed */
	bool watcher_failed;
};

/* One message. */
struct md_rec {
	uint32_t uid;
	uint32_t flags;    /* enum msg_flag */
	uint64_t keywords; /* bit i = letter 'a' + i */
	uint64_t modseq;
	int64_t idate;
	uint64_t size;
	char *fname;       /* current file name (base + info) */
	char *ext;         /* uidlist extension fields, verbatim, or NULL */
	uint64_t emailid;  /* from ext's G field; 0: md_rec_emailid() derives one */
	int64_t save_date; /* from ext's T field (RFC 8514 SAVEDATE); 0: unknown */
	uint16_t baselen;  /* fname[0..baselen) is the base (before ':') */
	bool in_new;       /* lives in new/ rather than cur/ */
	bool indexed;      /* has an entry in roost-index */
	bool mark;         /* scan scratch */
};

struct md_expunge {
	uint32_t uid;
	uint64_t modseq;
	uint64_t emailid; /* 0 in entries written before EMAILIDs */
	int64_t when;
};

struct md_file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	bool exists;
};

/* What a sync compares of new/ and cur/: the inode too, so a directory
 * removed and made again by another program is not taken for the one
 * scanned. */
struct md_dir_stamp {
	struct timespec mtime;
	ino_t ino;
};

struct md_cache_ent {
	uint32_t uid;
	uint32_t len;
	off_t off; /* of the data */
};

/* The shared state of one Maildir folder in this process, refcounted by
 * open mailboxes. Everything below mutex is protected by it. */
struct md_folder {
	struct md_folder *next; /* storage->folders, under storage->lock */
	unsigned refs;          /* under storage->lock */
	char *path;             /* the folder's directory */
	struct md_storage *ms;
	char *user, *name; /* for storage_notify; set by the first opener */

	pthread_mutex_t mutex;
	bool loaded;
	bool locked;     /* we hold dovecot-uidlist.lock */
	char *lock_tmpl; /* tmp/ file linked to take the lock */
	pid_t lock_tmpl_pid;
	time_t lock_tmpl_touched; /* its mtime, as we last set it */
	bool tmp_cleaned;
	uint32_t uidvalidity;
	uint32_t nextuid;
	char guid[33];
	struct md_rec *recs; /* ascending uid */
	size_t n, cap;
	char *kw[MD_MAX_KEYWORDS];
	size_t n_kw;
	uint64_t highestmodseq;
	uint64_t expunge_floor; /* changes_since(m < floor) is incomplete */
	uint32_t recent_uid;    /* first UID not yet claimed as \Recent */
	struct md_expunge *exp;
	size_t n_exp, cap_exp;

	struct md_file_id uidlist_id, kw_id, index_id;
	/* The folder's directory, checked at each md_sync() to be the one at
	 * path (dir_dev, dir_ino) and else opened again (-1: none, use
	 * paths): the stat calls of a sync walk one component, not eight. */
	int dirfd;
	dev_t dir_dev;
	ino_t dir_ino;
	struct md_dir_stamp new_stamp, cur_stamp;
	bool dirs_clean;       /* stamps above are safe to trust */
	bool dirs_by_watch;    /* ...only while watch_ok (a scan too soon after
	                        * a change for its mtime, md_own_rename_end) */
	bool scanned;          /* file locations known */
	bool watched;          /* inotify watches on new/ cur/ (w->lock) */
	_Atomic bool watch_ok; /* and both are in place (set under w->lock) */
	/* The watch thread read events of this folder that are not our own
	 * renames (own, below) and has not synced them yet: memory may be
	 * behind the disk (set by the thread, cleared under mutex). */
	_Atomic bool watch_pending;
	/* Names this process is renaming into new/ or cur/, so the watch
	 * thread knows the events as its own without the folder mutex: a
	 * hash of the name, bit 0 set for new/ (under own_lock). */
	pthread_mutex_t own_lock;
	uint64_t own[MD_OWN_MAX];
	size_t n_own;
	/* The handle that claims the \Recent of messages a wake-up on the
	 * event loop showed (md_changes_since_nb()); NULL: none. Its claim
	 * is reserved: [claim_from, claim_to) are the UIDs it showed
	 * unclaimed, which no other handle of this process claims. A claimer
	 * that goes before its claim leaves recent_floor at claim_to: those
	 * messages were shown to it first, so no session shows them as
	 * \Recent later (RFC 3501 2.3.2: one session). All three mean UIDs of
	 * UIDVALIDITY claim_uv, and nothing under another. */
	struct md_mailbox *claimer;
	uint32_t claim_uv, claim_from, claim_to, recent_floor;
	/* Checks of the disk by mb_begin(), numbered as they start;
	 * checked[0] is the newest that completed in at least MD_SYNC_LIGHT
	 * mode, checked[1] in at least MD_SYNC_NORMAL (maildir_store.c). */
	_Atomic uint64_t checks_begun;
	uint64_t checked[2];

	off_t uidlist_off; /* bytes of dovecot-uidlist parsed */
	int uidlist_version;
	off_t index_off; /* bytes of roost-index replayed */
	bool index_loaded;

	/* what to write at commit */
	bool uidlist_rewrite;
	uint32_t uidlist_append_from; /* first UID to append; 0 = none */
	size_t uidlist_dead;          /* records of expunged UIDs still in the file */
	size_t exp_applied;           /* exp[0..exp_applied) dropped from recs */
	bool index_rewrite;
	struct buf index_pending; /* entries to append to roost-index */
	bool index_pending_sync;  /* they include expunges: fsync them */
	bool kw_dirty;
	bool changed; /* something another program did was found */

	/* quota usage this locked section changed, written to maildirsize
	 * when the uidlist lock is released (maildir_quota.c); quota_fd is
	 * the shared quota lock, -1 when not held, quota_file_fd maildirsize
	 * open for the line (-1: none) */
	int quota_fd, quota_file_fd;
	int64_t quota_bytes, quota_messages;

	/* cache file */
	int cache_fd;
	off_t cache_scanned;
	struct md_cache_ent *cache;
	size_t n_cache, cap_cache;
};

struct md_mailbox {
	struct mailbox mb;
	struct md_folder *f;
	char *user, *name; /* ours; the wrapper's copies are in mb */
	/* The folder's when opened: deleted with children (kept as their
	 * \Noselect parent) and created again, the folder of the same path
	 * has a new one, and this handle's messages are gone. */
	uint32_t uidvalidity;
	const char *kw_view[MD_MAX_KEYWORDS];
	/* The \Recent claim the last md_changes_since_nb() decided for this
	 * handle, so the claim after it needs no lock: claim_ready gives
	 * [claim_first, claim_next); claim_deferred says this handle is the
	 * folder's claimer and claims later, on a worker. Touched only by the
	 * thread that runs the session. */
	bool claim_ready, claim_deferred;
	uint32_t claim_first, claim_next;
};

/* ---- maildir_name.c ---- */
/* Folder directory name (".a.b" or "" for INBOX) of a validated name. */
char *md_name_encode(const char *name);
/* Back from a directory entry name (with its leading '.'); NULL when the
 * entry is not a name we could have written. */
char *md_name_decode(const char *dirname);

/* ---- maildir_util.c ---- */
int md_errno_to_err(int e);
/* Free v[0..n) and v. */
void md_strv_free(char **v, size_t n);
int md_fsync_dir(const char *path);
int md_mkdir(const char *path);
int md_write_file(struct md_storage *ms, const char *dir, const char *name, const void *data,
                  size_t len, bool do_fsync);
int md_read_file(const char *path, size_t max, char **data_r, size_t *len_r);
int md_file_id_get(const char *path, struct md_file_id *id_r);
/* md_file_id_get of f's file name (path is its full path), relative to
 * f->dirfd when md_sync() has one for this operation. */
int md_file_id_at(struct md_folder *f, const char *name, const char *path, struct md_file_id *id_r);
/* The id of the file open on fd (the one we wrote, whatever its name is
 * now). */
int md_file_id_fd(int fd, struct md_file_id *id_r);
/* open() of f's file name (path is its full path), relative to f->dirfd
 * when md_sync() has one for this operation. */
int md_open_at(struct md_folder *f, const char *name, const char *path, int flags);
bool md_file_id_eq(const struct md_file_id *a, const struct md_file_id *b);
int md_rm_rf(const char *path);
void md_unique_base(struct md_storage *ms, uint64_t size, char *out, size_t outlen);
void md_random_hex(char *out, size_t nbytes);
char *md_path(const char *a, const char *b);
char *md_path3(const char *a, const char *b, const char *c);
/*
 * For roost check and its repair: fn on every folder of every user under
 * ms->root, each user's INBOX (the user directory) first, then each
 * ".Name" folder that has a cur/. name is the mailbox name, path the folder's
 * directory; both are valid for the call only. Returns the results of fn
 * or'ed together (nonzero: some folder was bad).
 */
typedef int md_folder_fn(struct md_storage *ms, const char *user, const char *name,
                         const char *path, struct buf *report);
int md_each_folder(struct md_storage *ms, md_folder_fn *fn, struct buf *report);

/* ---- maildir_quota.c ---- */
/* Take the user's quota lock shared before changing message files; *fd_r
 * is -1 when that failed (logged: the count may drift, the change goes
 * on). file_fd_r (NULL: not wanted) gets maildirsize open for the change's
 * line, -1 when it could not be opened (md_quota_end() tries its path). */
int md_quota_begin(struct md_storage *ms, const char *user, int *fd_r, int *file_fd_r);
/* Write the change's line (bytes, messages signed) and release fd;
 * file_fd (maildirsize from md_quota_begin(), or -1) is taken over. With
 * sync false the line is not fdatasynced: the open file is returned when
 * a line was written (else -1), and the caller passes it to
 * md_quota_sync() before it answers. With sync true, -1. */
int md_quota_end(struct md_storage *ms, const char *user, int fd, int file_fd, int64_t bytes,
                 int64_t messages, bool sync);
/* fdatasync (when the store fsyncs) and close what md_quota_end() returned
 * (-1: nothing). */
int md_quota_sync(struct md_storage *ms, int file_fd);
/* In f's locked section: hold the quota lock until the uidlist lock goes. */
void md_quota_hold(struct md_folder *f);
/* Usage of the message files under folder (new/ and cur/). */
int md_quota_count_folder(const char *folder, struct storage_usage *u);
int md_quota_get(struct storage *st, const char *user, struct storage_usage *usage_r);
int md_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                    struct storage_usage *after_r);

/* ---- maildir_uidlist.c ---- */
int md_uidlist_lock(struct md_folder *f);
/* Remove the lock template (folder going away). */
void md_uidlist_lock_forget(struct md_folder *f);
void md_uidlist_unlock(struct md_folder *f);
/* Read dovecot-uidlist into f (replaces recs' uid/base/ext). */
int md_uidlist_read(struct md_folder *f);
/* sync false: the caller fdatasyncs the file later: with fd_r, the file
 * appended to is left open in *fd_r (-1: nothing appended) for
 * md_durable_sync(). */
int md_uidlist_write(struct md_folder *f, bool sync, int *fd_r);
int md_uidlist_create(struct md_storage *ms, const char *dir, uint32_t uidvalidity);

/* ---- maildir_keywords.c ---- */
int md_keywords_read(struct md_folder *f);
int md_keywords_write(struct md_folder *f);
/* Letter index of name, adding it when add; -1 when absent (or full). */
int md_keyword_index(struct md_folder *f, const char *name, bool add);
/* Parse the info part (after ":2,") into flags and keyword bits. */
void md_info_parse(struct md_folder *f, const char *info, uint32_t *flags_r, uint64_t *kw_r);
/* Build the file name for base with flags/keywords, keeping letters we do
 * not know from old_info. */
char *md_fname_build(const char *base, size_t baselen, uint32_t flags, uint64_t kw,
                     const char *old_info);

/* ---- maildir_index.c ---- */
int md_index_read(struct md_folder *f);
int md_index_write(struct md_folder *f);
void md_index_log_rec(struct md_folder *f, const struct md_rec *r);
void md_index_log_recent(struct md_folder *f);
void md_expunge_log_add(struct md_folder *f, uint32_t uid, uint64_t modseq, uint64_t emailid);
int md_cache_get(struct md_folder *f, uint32_t uid, struct buf *out);
int md_cache_set(struct md_folder *f, uint32_t uid, const void *data, size_t len);
void md_cache_reset(struct md_folder *f);

/* ---- maildir_folder.c, maildir_sync.c ---- */
struct md_folder *md_folder_get(struct md_storage *ms, const char *path);
void md_folder_put(struct md_storage *ms, struct md_folder *f);
void md_folders_free(struct md_storage *ms);
/* A folder outside the cache (roost check). */
struct md_folder *md_folder_alloc(struct md_storage *ms, const char *path);
void md_folder_destroy(struct md_folder *f);
enum {
	MD_SYNC_NONE = -1, /* md_folder_open(): none when loaded (the caller
	                    * syncs under the lock next) */
	MD_SYNC_LIGHT,     /* uidlist and index only (appends) */
	MD_SYNC_NORMAL,    /* and the directories when their mtimes moved */
	MD_SYNC_FORCE,     /* and the directories regardless */
};
/* With f->mutex held: bring f up to date with the disk. May leave the
 * uidlist lock taken (f->locked) with changes to md_commit(). */
int md_sync(struct md_folder *f, int mode);
/* Take the uidlist lock (f->mutex held) and sync under it. */
int md_lock_and_sync(struct md_folder *f, int mode);
/*
 * Around a rename of our own into new/ (in_new) or cur/, f->mutex held:
 * md_own_rename_begin() says whether the directory is as the last scan
 * left it; if so, md_own_rename_end() records its new mtime, so the next
 * sync need not read the directory for a file we know. Only for folders
 * inotify watches (f->watch_ok): there, what another program does to the
 * directory meanwhile is reported and synced by maildir_watch.c.
 */
bool md_own_rename_begin(struct md_folder *f, bool in_new);
void md_own_rename_end(struct md_folder *f, bool in_new);
/* md_sync + md_commit when the sync took the lock; *changed_r says that
 * another program changed the folder (call md_notify after the mutex). */
int md_refresh(struct md_folder *f, int mode, bool *changed_r);
void md_notify(struct md_folder *f, const char *user, const char *name);
/* Write what is dirty and drop the uidlist lock. */
int md_commit(struct md_folder *f);

/*
 * Deliveries make their changes durable after dropping the locks, so the
 * fsyncs of concurrent deliveries overlap (the file system commits them
 * together) instead of queueing behind the folder lock. Nothing is
 * acknowledged before md_durable_sync() returns, and whoever reads the
 * state meanwhile sees a consistent (if not yet durable) folder.
 */
struct md_durable {
	bool newdir, curdir; /* a file was renamed into it */
	bool folderdir;      /* a file of the folder was replaced */
	int uidlist_fd;      /* records were appended to this dovecot-uidlist */
	int quota_fd;        /* a line was appended to this maildirsize */
};
/* An empty *d (no descriptors). */
void md_durable_init(struct md_durable *d);
/* md_commit, leaving the fsyncs to md_durable_sync(). */
int md_commit_deferred(struct md_folder *f, struct md_durable *d);
/* f: a folder the caller holds a reference to (its path and user). Syncs
 * what *d lists and closes its descriptors. */
int md_durable_sync(struct md_folder *f, struct md_durable *d);
/* Close *d's descriptors without syncing (the change failed). */
void md_durable_drop(struct md_durable *d);
struct md_rec *md_rec_find(struct md_folder *f, uint32_t uid);
/* A new zeroed record for uid at the end of f->recs (the caller keeps the
 * order ascending); valid until the next append. */
struct md_rec *md_rec_append(struct md_folder *f, uint32_t uid);
/* The EMAILID of r: the one its uidlist record carries (Dovecot's G
 * field, which Roost writes as 16 hex digits; another writer's GUID is
 * hashed), else one derived from the file's base name, which no program
 * changes while the message lives. */
uint64_t md_rec_emailid(const struct md_rec *r);
/* base name -> record, open addressing; valid until f->recs changes. */
struct base_map {
	uint32_t *slots; /* index + 1; 0 = empty */
	size_t mask;
};
void md_map_build(struct base_map *m, struct md_folder *f);
struct md_rec *md_map_find(struct base_map *m, struct md_folder *f, const char *name,
                           size_t baselen);
void md_rec_free_fields(struct md_rec *r);
void md_folder_reset(struct md_folder *f);
/* Drop records whose UID is in the expunge log (see maildir_sync.c). */
void md_drop_expunged(struct md_folder *f);
/* Ask for a uidlist rewrite when dead records pile up. */
void md_uidlist_maybe_rewrite(struct md_folder *f);
char *md_rec_path(struct md_folder *f, const struct md_rec *r);
/* Open the folder of (user, name); ROOST_ENOTFOUND if it does not exist. */
int md_folder_open(struct md_storage *ms, const char *user, const char *name, int mode,
                   struct md_folder **f_r);

/* ---- maildir_storage.c ---- */
char *md_user_dir(struct md_storage *ms, const char *user);
/* maildir_meta.c: RFC 5464 metadata records. */
int md_meta_get(struct storage *st, const char *user, const char *mailbox, struct buf *out);
int md_meta_update(struct storage *st, const char *user, const char *mailbox,
                   int (*fn)(const uint8_t *, size_t, struct buf *, void *), void *arg);
char *md_folder_path(struct md_storage *ms, const char *user, const char *name);

/* What roost-index still says of each live UID (roost check --repair):
 * entries up to the first damaged one, expunged UIDs left out. *recs_r is
 * the caller's (free()). */
struct md_salvage {
	uint32_t uid;
	int64_t idate;
	uint64_t size;
	bool taken;
};
int md_index_salvage(const char *dir, uint32_t *uidvalidity_r, struct md_salvage **recs_r,
                     size_t *n_r);

/* ---- maildir_repair.c ---- */
int md_repair(struct storage *st, struct buf *report);
/* ---- maildir_backup.c ---- */
int md_backup(struct storage *st, const char *dest, struct buf *report);

/* ---- maildir_check.c ---- */
int md_check(struct storage *st, struct buf *report);

/* ---- maildir_create.c ---- */
/* The user's lock (roost-uidvalidity, flock): mailboxes made and removed,
 * metadata changed. */
int md_user_lock(struct md_storage *ms, const char *user, int *fd_r);
void md_user_unlock(int fd);
int md_user_init(struct storage *st, const char *user);
int md_create(struct storage *st, const char *user, const char *name, unsigned special_use);
bool md_dir_exists(const char *path);
/* Does path hold a maildir (its cur/)? */
bool md_folder_exists(const char *path);
/* The MBOX_* special-use mark of the folder in dir. */
unsigned md_read_specialuse(const char *dir);
int md_ensure_user_dir(struct md_storage *ms, const char *user);
/* name and the parents it lacks (those made are taken back when name
 * cannot be made); the caller holds the user lock (lockfd). */
int md_create_with_parents(struct md_storage *ms, const char *user, const char *name,
                           unsigned special_use, int lockfd);

/* ---- maildir_list.c ---- */
int md_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r);
int md_delete(struct storage *st, const char *user, const char *name);
int md_rename(struct storage *st, const char *user, const char *from, const char *to);
int md_subscribe(struct storage *st, const char *user, const char *name, bool on);
int md_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
                uint32_t uidnext);
int md_status(struct storage *st, const char *user, const char *name,
              struct mailbox_status *status_r);
/* Counts of f into s; f->mutex held. */
void md_folder_status(struct md_folder *f, struct mailbox_status *s);

/* ---- maildir_mail.c ---- */
/* The first UID no session of this process was shown unclaimed: the
 * \Recent boundary on disk, or past it recent_floor; f->mutex held. */
uint32_t md_recent_base(const struct md_folder *f);
int md_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                    struct mailbox **mb_r);
void md_mailbox_close(struct mailbox *mb);
int md_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r);
int md_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r);
int md_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r);
int md_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r);
int md_cache_get_op(struct mailbox *mb, uint32_t uid, struct buf *out);
int md_cache_set_op(struct mailbox *mb, uint32_t uid, const void *data, size_t len);
int md_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *c);
int md_changes_since_nb(struct mailbox *mb, uint64_t modseq, size_t max, struct mailbox_changes *c);
bool md_claim_later(struct mailbox *mb);
int md_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r);

/* ---- maildir_watch.c ---- */
/* Watch f's new/ and cur/ for other programs' changes (an open mailbox). */
void md_watch_add(struct md_storage *ms, struct md_folder *f);
/* Stop watching f; ms->lock held. */
void md_watch_remove_locked(struct md_storage *ms, struct md_folder *f);
/* Stop the thread (store closing). */
void md_watch_stop(struct md_storage *ms);
/* Before a rename of ours into (appears) or out of f's new/ (is_new) or
 * cur/ of the file name, or its unlink (appears false), f->mutex held: the
 * watch thread is to take its event as known. */
void md_watch_own(struct md_folder *f, bool is_new, bool appears, const char *name);
/* The rename or unlink did not happen: forget it. */
void md_watch_own_undo(struct md_folder *f, bool is_new, bool appears, const char *name);
/*
 * For a thread that must not block, with f->watch_ok seen true: has the
 * watch thread read and synced every event the kernel queued so far
 * (nothing left in the inotify queue, no read in progress)? Then f in
 * memory is as new as the last change another program made to f's new/
 * and cur/ before this call, once f->watch_pending is false under the
 * mutex. A poll() of the inotify descriptor: no disk.
 */
bool md_watch_quiet(struct md_storage *ms);

/*
 * How often one message's file is looked for again when its name vanished
 * under us. In this process every rename happens under the folder mutex,
 * which these paths hold from finding a name to using it; only another
 * program (a Maildir tool changing flags) renames behind it. Each try
 * rescans the directories, so the file would have to be renamed this many
 * times within one operation to defeat it.
 */
#define MD_RESOLVE_TRIES 8

/* A message file waiting in some folder's tmp/. */
struct md_pending {
	char *tmppath;
	char base[200];
	uint64_t size;
	int64_t idate;    /* the file's mtime: the internal date */
	uint64_t emailid; /* a copy's, kept; 0: a new one when saved */
};

/* ---- maildir_save.c ---- */
int md_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
               size_t n);
int md_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r);
/* Put another name for the file src into dir/tmp/ (a hard link, or a copy
 * across file systems). */
int md_link_tmp(struct md_storage *ms, const char *dir, const char *src, uint64_t size,
                const struct msg_input *msg, struct md_pending *p);
/* Remove the pending file and free its path (NULL path: nothing). */
void md_pending_drop(struct md_pending *p);
/* Letters for keyword names in f, adding unknown ones; ROOST_ETOOBIG when
 * the folder has no letter left. */
int md_keyword_bits(struct md_folder *f, const char *const *names, size_t n, bool add,
                    uint64_t *bits_r);
/* With f->mutex and the uidlist lock held: move the pending file into
 * new/ (no flags) or cur/ (with flags), durably, and give it the next UID. */
int md_finish_save(struct md_folder *f, struct md_pending *p, uint32_t flags,
                   const char *const *kws, size_t n_kws, int64_t idate, struct md_durable *d,
                   uint32_t *uid_r);

/* ---- maildir_flags.c ---- */
int md_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
             struct store_result *res);
/* fsync f's new/ and/or cur/ (when the store fsyncs at all). */
void md_fsync_subdirs(struct md_folder *f, bool newdir, bool curdir);

/* ---- maildir_expunge.c ---- */
int md_expunge(struct mailbox *mb, const uint32_t *uids, size_t n);
/* Expunge uids from f; f->mutex and the uidlist lock held. */
int md_expunge_locked(struct md_folder *f, const uint32_t *uids, size_t n);
/* Expunge uids from f, taking the mutex and the lock. */
int md_expunge_folder(struct md_folder *f, const uint32_t *uids, size_t n);

/* ---- maildir_copy.c ---- */
int md_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
            struct copy_result *res);
/* Move every message of INBOX into the (new, empty) folder to. */
int md_move_all(struct md_storage *ms, struct md_folder *from, struct md_folder *to);

#endif
