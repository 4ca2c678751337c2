#ifndef ROOST_STORAGE_IMPL_H
#define ROOST_STORAGE_IMPL_H

/*
 * What only storage backends see. A backend is a `const struct storage_ops`
 * registered by name in backends/storage.c. It embeds struct storage and
 * struct mailbox first in its own structs and gets back to them with
 * container_of().
 *
 * The wrapper (backends/storage.c) has already checked, before any op runs:
 * user and mailbox names valid (storage_name_valid/storage_user_valid),
 * INBOX spelt "INBOX", keywords valid and flags within MSG_FLAGS_ALL, UID
 * arrays ascending, rename not into itself or its own child, delete of INBOX
 * refused, read-only mailboxes not written. After every successful change
 * it wakes the watchers (storage_notify()), so backends need not.
 *
 * Every op returns 0 or a roost_err code, like the public functions it
 * backs; out-parameters have the same meaning and ownership as there.
 *
 * Threads and lifetime, as storage.h promises them to callers: storage
 * ops run concurrently from any thread, mailbox ops from one thread at a
 * time per mailbox (so a backend locks what mailboxes share, never the
 * mailbox struct itself); an op returns only once its change is durable;
 * no op keeps a snapshot, lock or transaction past its return except what
 * a msg_view pins until its release (a view that pins anything shared is
 * not holdable). close runs after every mailbox was closed.
 */

#include <stddef.h>

#include "roost/storage.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct watch_registry;

struct storage {
	const struct storage_ops *ops;
	const struct roost_config *cfg;
	struct watch_registry *watches; /* the wrapper's */
	struct auth *auth;              /* per-user quota limits; NULL: config's only */
};

struct mailbox {
	struct storage *st;
	char *user;     /* the owner */
	char *name;     /* the owner's canonical name */
	unsigned flags; /* MAILBOX_READONLY */
	/* the wrapper's (storage_acl.c): NULL when the owner opened it */
	char *actor;     /* the user who opened another's mailbox */
	char *view_name; /* the name as the actor gave it */
	unsigned rights; /* the actor's, as last read */
	/* the actor's \Seen as its session last saw it (storage_seen.c) */
	struct seen_set *seen;
};

/* A backend's maildrop lock embeds this first. */
struct storage_lock {
	struct storage *st;
};

/* What ops->copy hands back: the destination's UIDVALIDITY and, pair by
 * pair, the source UIDs copied and the UIDs they got there. The wrapper
 * passes it zeroed, gives src and dst to mailbox_copy()'s caller on
 * success and frees them after an error, so a backend may leave them
 * allocated whatever it returns. */
struct copy_result {
	uint32_t uidvalidity;
	uint32_t *src;
	uint32_t *dst;
	size_t n;
};

/* What ops->store hands back: the UIDs UNCHANGEDSINCE kept it from
 * changing (RFC 7162 3.1.3's MODIFIED), ascending; modified is NULL when
 * there are none. The wrapper passes it zeroed, gives modified to
 * mailbox_store()'s caller on success and frees it after an error, so a
 * backend may leave it allocated whatever it returns. */
struct store_result {
	uint32_t *modified;
	size_t n_modified;
};

struct storage_ops {
	const char *name;
	/* list, status, mailbox_status, records, keywords, changes_since and
	 * meta_get answer from memory and a read snapshot of a map: they never
	 * wait on a disk write, a lock held across I/O or a server (a page of
	 * the map read in from disk aside), so a protocol may run a command
	 * made only of them on its event loop (storage_reads_nb()). */
	bool reads_nb;

	/* Allocate the backend's struct (embedding struct storage, whose
	 * ops/cfg the wrapper fills in) and open the store under
	 * cfg->data_dir. */
	int (*open)(const struct roost_config *cfg, struct storage **st_r);
	void (*close)(struct storage *st);

	/* Create the user's INBOX (ROOST_EEXISTS when it exists). The
	 * wrapper makes the default folders and subscriptions, so that
	 * every backend starts a user alike. */
	int (*user_init)(struct storage *st, const char *user);
	int (*list)(struct storage *st, const char *user, struct mailbox_info **list_r,
	            size_t *n_r);
	int (*create)(struct storage *st, const char *user, const char *name, unsigned special_use);
	int (*delete)(struct storage *st, const char *user, const char *name);
	int (*rename)(struct storage *st, const char *user, const char *from, const char *to);
	int (*subscribe)(struct storage *st, const char *user, const char *name, bool on);
	int (*status)(struct storage *st, const char *user, const char *name,
	              struct mailbox_status *status_r);
	/* storage_set_uids(): uidvalidity and uidnext are 0 when to be kept. */
	int (*set_uids)(struct storage *st, const char *user, const char *name,
	                uint32_t uidvalidity, uint32_t uidnext);
	/* storage_append() is deliver() with one target. */
	int (*deliver)(struct storage *st, const struct msg_input *msg,
	               struct delivery_target *targets, size_t n);

	/* Allocate the backend's mailbox struct; the wrapper fills in the
	 * embedded struct mailbox fields after this returns (st, a copy of
	 * user and of the canonical name, flags) and frees user and name
	 * after mailbox_close(), which frees only the backend's struct. */
	int (*mailbox_open)(struct storage *st, const char *user, const char *name, unsigned flags,
	                    struct mailbox **mb_r);
	void (*mailbox_close)(struct mailbox *mb);
	int (*mailbox_status)(struct mailbox *mb, struct mailbox_status *status_r);
	/* modseq_r may be NULL (mailbox_records()). */
	int (*records)(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r,
	               uint64_t *modseq_r);
	int (*keywords)(struct mailbox *mb, const char *const **names_r, size_t *n_r);
	int (*claim_recent)(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r);
	/* mailbox_claim_later(); NULL: never (a claim is decided in memory) */
	bool (*claim_later)(struct mailbox *mb);
	int (*read)(struct mailbox *mb, uint32_t uid, struct msg_view *view_r);
	int (*cache_get)(struct mailbox *mb, uint32_t uid, struct buf *out);
	int (*cache_set)(struct mailbox *mb, uint32_t uid, const void *data, size_t len);
	int (*append)(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r);
	int (*store)(struct mailbox *mb, const uint32_t *uids, size_t n,
	             const struct store_req *req, struct store_result *res);
	int (*expunge)(struct mailbox *mb, const uint32_t *uids, size_t n);
	int (*copy)(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
	            struct copy_result *res);
	int (*changes_since)(struct mailbox *mb, uint64_t modseq,
	                     struct mailbox_changes *changes_r);
	/* Optional: changes_since when the answer needs no wait (memory and
	 * a read snapshot of a map only) and is small: at most max records
	 * changed and max expunged, and the expunge log reaching back to
	 * modseq. Otherwise ROOST_EAGAIN and nothing returned. Backends
	 * whose reads may wait on a disk or a server leave it NULL. */
	int (*changes_since_nb)(struct mailbox *mb, uint64_t modseq, size_t max,
	                        struct mailbox_changes *changes_r);

	/* The metadata of a mailbox ("" = the user's server entries): one
	 * opaque record (the wrapper's format), read with meta_get
	 * (ROOST_ENOTFOUND when there is none yet, *out untouched) and
	 * changed with meta_update, which calls fn(old, old_len, new, arg)
	 * (old NULL when there is none) with the record locked against every
	 * other writer, and stores new (removes the record when new is
	 * empty) when fn returns 0; fn's error is returned as is. Delete and
	 * rename take the record with the mailbox. */
	int (*meta_get)(struct storage *st, const char *user, const char *mailbox, struct buf *out);
	int (*meta_update)(struct storage *st, const char *user, const char *mailbox,
	                   int (*fn)(const uint8_t *old, size_t old_len, struct buf *new,
	                             void *arg),
	                   void *arg);

	int (*check)(struct storage *st, struct buf *report);
	/* storage_repair(); ROOST_ENOTSUP (with a report line saying why)
	 * where the backend has nothing to rebuild. */
	int (*repair)(struct storage *st, struct buf *report);
	/* storage_backup(): the backend's part of the data directory into
	 * the same place under dest; ROOST_ENOTSUP with a report line naming
	 * the tool to use where the data is not under the directory. */
	int (*backup)(struct storage *st, const char *dest, struct buf *report);
	/* The user's usage as kept (storage.h, quota), exact as of the call:
	 * zero for a user the store has never seen. */
	int (*quota_get)(struct storage *st, const char *user, struct storage_usage *usage_r);
	/* Count it again from the messages, store and return it. */
	int (*quota_recalc)(struct storage *st, const char *user, struct storage_usage *before_r,
	                    struct storage_usage *after_r);
	/* Optional: write-path counters (storage_stats()). */
	void (*stats)(struct storage *st, struct storage_stats *stats_r);

	/* Optional, both or neither (NULL: storage_lock_user() hands back a
	 * NULL lock). lock_user fills in nothing of the base: the wrapper
	 * sets st. */
	int (*lock_user)(struct storage *st, const char *user, struct storage_lock **lock_r);
	void (*unlock_user)(struct storage_lock *lock);
};

/* Free res's arrays and zero it: for a backend's transaction that starts
 * over, and the wrapper after an error. */
void storage_copy_result_free(struct copy_result *res);
/* Append uid to res->modified, growing it as needed. */
void storage_store_result_add(struct store_result *res, uint32_t uid);
/* As storage_copy_result_free(), for a struct store_result. */
void storage_store_result_free(struct store_result *res);
/* What a STORE of mode with bits (req->flags, or req's keywords as the
 * backend's bits) makes of a message's old flags or keywords: old | bits,
 * old & ~bits, or bits. */
uint64_t storage_store_bits(enum store_mode mode, uint64_t old, uint64_t bits);
/* A new EMAILID (struct msg_record): 64 random bits, never 0. Thread-safe. */
uint64_t storage_new_emailid(void);
/* An EMAILID derived from bytes that identify a message for good where no
 * id was stored (a Maildir file's base name, an old record): never 0. */
uint64_t storage_derived_emailid(const void *data, size_t len);
/* Copy id into mailboxid (struct mailbox_status) keeping only letters,
 * digits, '-' and '_' (RFC 8474 objectid), at most STORAGE_MAILBOXID_MAX;
 * "0" when nothing is left. */
void storage_mailboxid_set(char *mailboxid, const char *id);

/* storage_mailboxid_set() of a row id the store never reuses and the
 * mailbox's UIDVALIDITY, which tells its mailbox from one of a store made
 * anew: "%016x%08x". */
void storage_mailboxid_from_id(char *mailboxid, uint64_t id, uint32_t uidvalidity);

/* Whether name lies below parent ("a/b" and "a/b/c" below "a"). */
bool storage_name_is_child(const char *name, const char *parent);
/* Call fn(parent, arg) for each parent of name, outermost first ("a",
 * then "a/b", of "a/b/c"), up to the first that returns nonzero, and
 * return that; ROOST_EINVAL for a name longer than STORAGE_MAX_NAME. */
int storage_name_parents(const char *name, int (*fn)(const char *parent, void *arg), void *arg);
/* Finish a backend's list (storage_ops.list): list[0..n) are its
 * mailboxes (names owned, attrs holding MBOX_NOSELECT and special-use
 * bits) with room for n_subs more. Sorts them by name, marks each
 * \HasChildren or \HasNoChildren and \Subscribed when subs[0..n_subs)
 * names it, and adds a copy of every subscribed name no mailbox has as
 * \Subscribed \NonExistent. Returns the new count. */
size_t storage_list_finish(struct mailbox_info *list, size_t n, const char *const *subs,
                           size_t n_subs);

/* Backends in this build (backends/lmdb, backends/maildir, backends/pgsql). */
extern const struct storage_ops storage_lmdb_ops;
extern const struct storage_ops storage_maildir_ops;
extern const struct storage_ops storage_pgsql_ops;

/*
 * Wake every watcher of (user, mailbox) in this process, and signal other
 * processes on the same data directory. mailbox NULL wakes every watcher
 * of the user. Other processes learn only the user (a per-user file under
 * <data_dir>/notify is rewritten; their inotify thread wakes all that
 * user's watchers). Backends call it only for changes
 * they discover themselves (e.g. a file another program dropped into a
 * Maildir); the wrapper calls it after every change made through it.
 */
void storage_notify(struct storage *st, const char *user, const char *mailbox);
/* As storage_notify(st, user, NULL) after a rename of from (and its
 * children) to to: user watches learn both names. */
void storage_notify_rename(struct storage *st, const char *user, const char *from, const char *to);
/* After a metadata change made here: the entries set or removed (mailbox
 * "" for the server's) reach user watches by name. */
void storage_notify_metadata(struct storage *st, const char *user, const char *mailbox,
                             const char *const *entries, size_t n);

/*
 * Wake the watchers of (user, mailbox) in this process only: for a backend
 * that learns of another node's change by its own means (PostgreSQL's
 * LISTEN). mailbox NULL wakes every watcher of the user, user NULL every
 * watcher (after a gap in which changes may have been missed). Must not be
 * called from a watch callback.
 */
void storage_wake(struct storage *st, const char *user, const char *mailbox);

/* Whether a watcher in this process would be woken by a change to (user,
 * mailbox): a backend fetching changes ahead for the sessions it is about
 * to wake asks first. Thread-safe; the answer may be stale at once. */
bool storage_watched(struct storage *st, const char *user, const char *mailbox);

#endif
