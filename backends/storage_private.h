/*
 * What the files of the storage wrapper (storage.c, storage_name.c,
 * storage_watch.c, storage_deliver.c) share. Private to the wrapper: neither
 * the backends nor any caller of storage.h includes it.
 */
#ifndef ROOST_STORAGE_PRIVATE_H
#define ROOST_STORAGE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/config.h"
#include "roost/storage.h"

struct watch_registry;

/* storage_name.c */

/* Validate name and write its canonical spelling (INBOX in capitals, also
 * as the first component of a child) into out. 0, or ROOST_EINVAL. */
int storage_name_canon(const char *name, char out[STORAGE_MAX_NAME + 1]);
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
