/*
 * What the files of the storage wrapper (storage.c, storage_mailbox.c,
 * storage_name.c, storage_watch.c, storage_deliver.c, ...) share. Private
 * to the wrapper: neither the backends nor any caller of storage.h includes
 * it.
 */
#ifndef ROOST_STORAGE_PRIVATE_H
#define ROOST_STORAGE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/config.h"
#include "roost/storage.h"

struct store_result;
struct watch_registry;

/* storage_name.c */

/* Validate name and write its canonical spelling (INBOX in capitals, also
 * as the first component of a child) into out. 0, or ROOST_EINVAL. */
int storage_name_canon(const char *name, char out[STORAGE_MAX_NAME + 1]);
/* The same for a user's mailbox, when user is valid (storage_user_valid())
 * too: the first check of most wrapper functions. 0, or ROOST_EINVAL. */
int storage_user_name_canon(const char *user, const char *name, char out[STORAGE_MAX_NAME + 1]);
/* True when canon (a canonical name) is INBOX itself. */
bool storage_name_is_inbox(const char *canon);
/* n keywords, each an IMAP atom: 0, ROOST_EINVAL or ROOST_ETOOBIG. */
int storage_keywords_check(const char *const *kw, size_t n);
/* A message to store: flags, source, size against max_message_size,
 * keywords. 0, ROOST_EINVAL or ROOST_ETOOBIG. */
int storage_msg_input_check(const struct storage *st, const struct msg_input *msg);
/* A UID set: non-zero and strictly ascending. 0 or ROOST_EINVAL. */
int storage_uids_check(const uint32_t *uids, size_t n);

/* storage.c */

/* Lazy set-up of a user never seen before: when rc is ROOST_ENOTFOUND on
 * INBOX (canon), create the user's INBOX and default folders. True when
 * the user was set up and the operation is worth one more try. */
bool storage_user_set_up(struct storage *st, const char *user, const char *canon, int rc);
/* The flags (MSG_*) a user with rights (ACL_*) may set or clear. */
uint32_t storage_flags_allowed(unsigned rights);

/* storage_quota.c */

/* May user take messages totalling bytes? 0, ROOST_EOVERQUOTA, or
 * ROOST_EQUOTATOOBIG when bytes alone exceed the storage limit (storage.h,
 * quota). Reads nothing when the user has no limit. *quota_r (may be
 * NULL) gets the limits and the usage before the change (all zero when
 * there is no limit). */
int storage_quota_admit(struct storage *st, const char *user, uint64_t bytes, uint64_t messages,
                        struct storage_quota *quota_r);
/* After user took a message of bytes with usage and limits *before (from
 * storage_quota_admit()): when that crossed [quota] warning percent of a
 * limit, deliver the user a notice into INBOX (once per crossing: the next
 * message is past the threshold already). */
void storage_quota_warn(struct storage *st, const char *user, const struct storage_quota *before,
                        uint64_t bytes);
/* Has user any limit? */
bool storage_quota_limited(struct storage *st, const char *user);
/* May a copy of uids (ascending) of mb fit in its user's quota? Reads the
 * records only when the user has a limit. */
int storage_quota_copy_admit(struct mailbox *mb, const uint32_t *uids, size_t n);

/* storage_metadata.c */

/* The value of the wrapper's own entry (a name outside /private and
 * /shared) of owner's record canon ("" = the server part), appended to
 * value; *found_r false when absent. ROOST_ENOTFOUND when the mailbox is. */
int storage_meta_entry_get(struct storage *st, const char *user, const char *canon,
                           const char *entry, struct buf *value, bool *found_r);
/* The wrapper's own entries of owner's record canon whose names start
 * with prefix, ascending (none, also without a record: *n_r 0); free with
 * storage_metadata_free(). */
int storage_meta_entries(struct storage *st, const char *user, const char *canon,
                         const char *prefix, struct metadata_entry **list_r, size_t *n_r);
/* Change that entry under the record's lock: fn gets the old value (NULL
 * when absent) and writes the new one into new, or sets *remove; its error
 * is returned and nothing changed. */
int storage_meta_entry_update(struct storage *st, const char *user, const char *canon,
                              const char *entry,
                              int (*fn)(const uint8_t *old, size_t old_len, struct buf *new,
                                        bool *remove, void *arg),
                              void *arg);
/* The same for entries[0..n) in one update: fn(i, ...) for entries[i]. */
int storage_meta_entries_update(struct storage *st, const char *user, const char *canon,
                                const char *const *entries, size_t n,
                                int (*fn)(size_t i, const uint8_t *old, size_t old_len,
                                          struct buf *new, bool *remove, void *arg),
                                void *arg);

/* storage_acl.c */

/* A mailbox name as the acting user gave it, resolved to its owner. */
struct acl_target {
	char owner[256];                 /* AUTH_MAX_NAME + 1 */
	char name[STORAGE_MAX_NAME + 1]; /* the owner's canonical name */
	bool foreign;                    /* owner is not the actor */
	bool shared;                     /* owner is STORAGE_ACL_PUBLIC_OWNER */
	unsigned rights;                 /* the actor's (all when !foreign) */
};
/* Resolve canon (canonical, as actor sees it) and check that actor holds
 * need on it: 0, ROOST_ENOACCESS, ROOST_ENOTFOUND (also for the prefix or
 * an owner alone, and for a mailbox that does not exist), ROOST_EINVAL. */
int storage_acl_resolve(struct storage *st, const char *actor, const char *canon, unsigned need,
                        struct acl_target *t);
/* The same for a mailbox to be made: k on its parent (another user's
 * top level cannot be made: ROOST_ENOACCESS). */
int storage_acl_resolve_parent(struct storage *st, const char *actor, const char *canon,
                               struct acl_target *t);
/* The mailbox user names (as given, not yet canonical) for a command
 * needing need there: the user name checked (ROOST_EINVAL), the name made
 * canonical, resolved and checked (storage_acl_resolve()), and the owner's
 * mailbox existing (the backend's status; with set_up, a user never seen
 * before whose INBOX is named is set up and asked again,
 * storage_user_set_up()). 0 or that error. The
 * one preamble of the ACL commands (storage_acl_record.c) and of
 * METADATA (storage_metadata.c). */
int storage_acl_target(struct storage *st, const char *user, const char *mailbox, unsigned need,
                       bool set_up, struct acl_target *t);
/* A user's name, or the public store's (storage.h): whose store a
 * mailbox may be in. */
bool storage_owner_valid(const char *owner);
/* Is owner the public store (the shared namespace)? */
bool storage_owner_public(const char *owner);
/* Is actor one of [acl] shared_admins? */
bool storage_acl_shared_admin(const struct storage *st, const char *actor);
/* actor's rights on owner's mailbox whose ACL is a: a shared admin's on
 * the public store are all of them. */
struct acl;
unsigned storage_acl_rights_for(const struct storage *st, const char *owner, const struct acl *a,
                                const char *actor);
/* Give owner's new mailbox canon its parent's ACL (a mailbox made by
 * another user); failures are logged. */
void storage_acl_inherit(struct storage *st, const char *owner, const char *canon);
/* May an anonymous sender deliver to owner's canon (p for "anyone")?
 * INBOX always; names under the prefix never. */
bool storage_acl_may_post(struct storage *st, const char *owner, const char *canon);
/* Read the actor's rights on an open mailbox again and check need (0 for
 * the owner's own). */
int storage_acl_mailbox_need(struct mailbox *mb, unsigned need);

/* storage_acl_record.c: a mailbox's stored ACL */

struct acl {
	struct acl_entry *v;
	size_t n;
	bool stored; /* false: the default ACL */
};
/* The ACL of owner's mailbox canon into *a (the default one when none is
 * stored); free with storage_acl_clear(). ROOST_ENOTFOUND when the mailbox
 * does not exist. */
int storage_acl_read(struct storage *st, const char *owner, const char *canon, struct acl *a);
void storage_acl_clear(struct acl *a);
/* actor's rights under a; NULL actor: an anonymous sender. */
unsigned storage_acl_rights_of(const struct acl *a, const char *actor);

/* storage_acl_list.c */

/* Note that owner shared something with grantee (an identifier). Failures
 * are logged: the grant stands, only LIST may miss it. */
void storage_acl_index_note(struct storage *st, const char *owner, const char *grantee);

/* storage_seen.c: the \Seen of a user who opened another's mailbox
 * (mb->actor), kept apart from the owner's (the model is written there).
 * Each does nothing and returns 0 on a mailbox its owner opened. */

struct seen_set;
void storage_seen_free(struct seen_set **s);
/* Records of mb as the actor sees them: MSG_SEEN is the actor's, and so
 * is each MODSEQ, and *modseq (may be NULL: the backend's HIGHESTMODSEQ
 * in, the actor's out). */
int storage_seen_records(struct mailbox *mb, struct msg_record *recs, size_t n, uint64_t *modseq);
/* The backend's MODSEQ that an actor's MODSEQ modseq stands above (ask the
 * backend for changes since this one). */
uint64_t storage_seen_backend_modseq(uint64_t modseq);
/* The same as records for changes the backend gave since
 * storage_seen_backend_modseq(since), plus every message whose \Seen the
 * actor changed (in another session) after since, or since mb last told
 * its session. */
int storage_seen_changes(struct mailbox *mb, uint64_t since, struct mailbox_changes *ch);
/* status->unseen and first_unseen_uid by the actor's \Seen (status's
 * UIDVALIDITY filled in). */
int storage_seen_unseen(struct mailbox *mb, struct mailbox_status *status);
/* storage_status() of owner's canon as reader sees it (reader is not the
 * owner): status filled by the backend, then UNSEEN counted again. */
int storage_seen_status(struct storage *st, const char *owner, const char *canon,
                        const char *reader, struct mailbox_status *status);
/* mailbox_store() by the actor, req already cut to its rights: \Seen in
 * the actor's set, the rest in the backend (a FLAGS replace keeps the
 * owner's \Seen). ROOST_ETOOBIG when the set would pass its bound. */
int storage_seen_store(struct mailbox *mb, const uint32_t *uids, size_t n,
                       const struct store_req *req, struct store_result *res);
/* Mark uids (new messages, ascending) seen for reader in owner's canon. */
int storage_seen_add(struct storage *st, const char *owner, const char *canon, const char *reader,
                     uint32_t uidvalidity, const uint32_t *uids, size_t n);
/* The seen sets of owner's canon (every reader's entry; none: *n_r 0),
 * for storage_seen_carry(); free with storage_metadata_free(). */
int storage_seen_readers(struct storage *st, const char *owner, const char *canon,
                         struct metadata_entry **list_r, size_t *n_r);
/* Messages src[i] of owner's from were copied (or moved) to dst[i] of
 * owner's to: give each reader of readers (from storage_seen_readers()
 * before the copy) but except (may be NULL) its \Seen of them in to,
 * when it may read to. Failures are logged. */
void storage_seen_carry(struct storage *st, const char *owner, const char *from, const char *to,
                        const struct metadata_entry *readers, size_t n_readers, const char *except,
                        uint32_t to_uidvalidity, const uint32_t *src, const uint32_t *dst,
                        size_t n);

/* storage_deliver.c */

/* storage_deliver() without the check of p: targets are owners' mailboxes
 * the caller has checked (APPEND, a copy between users). */
int storage_deliver_owned(struct storage *st, const struct msg_input *msg,
                          struct delivery_target *targets, size_t n, unsigned flags);

/* storage_watch.c */

/* The hash that names a user's notify file and bucket. */
uint64_t storage_user_hash(const char *user);
/* The registry of storage_open(): never NULL; without a notify directory,
 * pipe or thread, watchers of this process are still woken, other
 * processes' changes are not seen. Freed (the thread joined) by
 * storage_watch_registry_free(), which takes NULL. */
struct watch_registry *storage_watch_registry_new(const struct roost_config *cfg);
void storage_watch_registry_free(struct watch_registry **regp);
/* Wake the watchers of (user, mailbox) in this process; h is
 * storage_user_hash(user), mailbox NULL wakes all of the user's. Takes the
 * registry lock; callbacks run under it. */
void storage_notify_here(struct watch_registry *reg, uint64_t h, const char *user,
                         const char *mailbox);
/* Tell other processes: append to the user's notify file (h names it).
 * Failures are logged at debug level and otherwise ignored. */
void storage_notify_others(struct watch_registry *reg, uint64_t h);

#endif
