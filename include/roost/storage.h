#ifndef ROOST_STORAGE_H
#define ROOST_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * The one storage interface every protocol uses. Backends (backends/lmdb,
 * backends/maildir) implement storage_impl.h; backends/storage.c validates
 * everything (user and mailbox names, INBOX rules, rename into own child,
 * flag sets) before any backend runs, and wakes watchers after commits.
 *
 * Users are identified by their canonical name from auth (full address).
 * Mailbox names are UTF-8, hierarchy separator '/', "INBOX" matched
 * case-insensitively and always spelt "INBOX" in results. Names with empty
 * components, leading/trailing '/', ".", "..", control characters (C0, DEL,
 * C1), NUL or invalid UTF-8 are refused with ROOST_EINVAL by every backend
 * alike. Any other '.' is a character like the others ("Mr. Smith",
 * "v1.2"): Maildir++ writes it "%2e" (its own separator is '.').
 *
 * Length, the same for every backend: at most STORAGE_MAX_NAME bytes of
 * UTF-8, and at most STORAGE_MAX_NAME_STORED bytes spelt as Maildir++ keeps
 * the name, less its leading '.': modified UTF-7 (what IMAP clients send,
 * RFC 3501 5.1.3) with each '%' and '.' counted three times (stored as
 * "%25" and "%2e").
 * Maildir++ keeps a whole hierarchy in one directory name (".a.b"), which
 * the file system bounds at 255 bytes, so that total bounds every
 * component too and there is no separate per-component limit. A rename is
 * refused the same way when a child's new name would be too long.
 *
 * Errors (roost/error.h), the same for every function below unless it
 * says otherwise: ROOST_EINVAL for a name, user, flag or keyword the rules
 * above refuse (checked before any backend runs, nothing changed);
 * ROOST_ENOTFOUND for a user, mailbox or message that does not exist (a
 * \Noselect mailbox counts as absent where messages are concerned);
 * ROOST_ETEMP when the store is busy or out of room for now (map growth
 * timed out, disk full: try again); ROOST_EIO when the disk or database
 * failed (logged with the path and errno, never returned as text). A
 * failed change leaves nothing half done.
 *
 * Threads: a struct storage is shared by all threads; every storage_*()
 * call is safe from any thread at any time between storage_open() and
 * storage_close(). A struct mailbox is used by one thread at a time (the
 * worker running its session's command) and may move between threads
 * between calls. Calls block on disk and database I/O, never on a client;
 * none waits for another session's command.
 *
 * Durability: when a call that changes state returns 0, the change is on
 * stable storage (unless [storage] fsync = no). Calls that read see every
 * change whose call has returned, in this process or another.
 */

#define STORAGE_MAX_NAME 512        /* bytes of a mailbox name in UTF-8 */
#define STORAGE_MAX_NAME_STORED 254 /* bytes as stored (see above) */
#define STORAGE_MAX_KEYWORDS 26     /* per mailbox (Maildir maps them to a-z) */
#define STORAGE_MAX_KEYWORD_LEN 128
#define STORAGE_MAILBOXID_MAX 40 /* characters of struct mailbox_status.mailboxid */

struct storage;
struct mailbox;
struct roost_config;

/* System flags, a bitmask. \Recent is per session, not stored (see
 * mailbox_claim_recent()). */
enum msg_flag {
	MSG_SEEN = 1 << 0,
	MSG_ANSWERED = 1 << 1,
	MSG_FLAGGED = 1 << 2,
	MSG_DELETED = 1 << 3,
	MSG_DRAFT = 1 << 4,
};
#define MSG_FLAGS_ALL 0x1fu

/* Mailbox attributes in listings. */
enum mailbox_attr {
	MBOX_NOSELECT = 1 << 0, /* exists only as a parent of others */
	MBOX_HASCHILDREN = 1 << 1,
	MBOX_HASNOCHILDREN = 1 << 2,
	MBOX_SUBSCRIBED = 1 << 3,
	MBOX_DRAFTS = 1 << 4, /* special-use (RFC 6154) */
	MBOX_SENT = 1 << 5,
	MBOX_TRASH = 1 << 6,
	MBOX_JUNK = 1 << 7,
	MBOX_ARCHIVE = 1 << 8,
	MBOX_NONEXISTENT = 1 << 9, /* subscribed but absent */
};
#define MBOX_SPECIAL_USE_MASK (MBOX_DRAFTS | MBOX_SENT | MBOX_TRASH | MBOX_JUNK | MBOX_ARCHIVE)

struct mailbox_info {
	char *name;
	unsigned attrs;
};

struct mailbox_status {
	uint32_t messages;
	uint32_t unseen; /* messages without \Seen */
	uint32_t recent; /* UIDs not yet claimed by any session */
	uint32_t uidnext;
	uint32_t uidvalidity;
	uint64_t highestmodseq;
	uint64_t size;             /* sum of message sizes in octets */
	uint32_t first_unseen_uid; /* 0 when all are seen */
	/* MAILBOXID (RFC 8474): letters and digits, never empty; the same
	 * for the mailbox across restarts and renames, a new one for a
	 * mailbox created again under an old name. */
	char mailboxid[STORAGE_MAILBOXID_MAX + 1];
};

/* One message as a mailbox lists it. keywords is a bitmask over the
 * mailbox's keyword table (mailbox_keywords()). */
struct msg_record {
	uint32_t uid;
	uint32_t flags; /* enum msg_flag */
	uint64_t keywords;
	uint64_t modseq;
	int64_t internal_date; /* seconds since the epoch, UTC */
	uint64_t size;         /* octets as stored */
	/* EMAILID (RFC 8474), never 0: given at append or delivery, kept
	 * for good, carried by COPY and MOVE to the new message (a copy
	 * holds the same immutable bytes). Messages stored before ids
	 * existed (or dropped into a Maildir by another program) get one
	 * derived from what identifies them there, equally stable. */
	uint64_t emailid;
	/* SAVEDATE (RFC 8514): when the message was put in this mailbox by
	 * append, delivery, copy or move, seconds since the epoch; 0 when
	 * the backend does not know (older records, files dropped into a
	 * Maildir by other programs): IMAP answers NIL. */
	int64_t save_date;
};

/* A message to store: in memory (data/len) or spooled in a file (fd >= 0,
 * len bytes from offset 0; the callee reads it, the caller closes it). */
struct msg_input {
	const uint8_t *data;
	size_t len;
	int fd;
	uint32_t flags;
	const char *const *keywords; /* names; unknown ones are added */
	size_t n_keywords;
	int64_t internal_date;  /* 0 = now, unless has_internal_date */
	bool has_internal_date; /* internal_date is the date even when 0 (the epoch) */
	/* The parse cache record (roost/message_cache.h) to keep with each
	 * new message, as mailbox_cache_set() would, or none (cache_len 0).
	 * storage_deliver() makes it itself; callers leave it empty. */
	const void *cache;
	size_t cache_len;
};

/* The internal date a message to store gets: the one it carries, or the
 * time of the call. Backends take the date from here, never directly. */
int64_t msg_input_date(const struct msg_input *msg);

/*
 * A zero-copy view of a stored message: data[0..len) are its bytes as
 * stored, valid until msg_view_release().
 *
 * How long a view (a reader) may live. A command runs in steps (conn.h:
 * one run of a hook on a worker, then conn_continue() while the client
 * reads): a view that pins a snapshot of the store must be released
 * before the step that read it returns, never kept while the client is
 * slow. With holdable false (LMDB: the view is a read transaction, and a
 * pinned reader stops page reuse and map growth for every user), release
 * it at the end of each step and read the message again by UID in the next
 * one. A message's bytes never change under one UIDVALIDITY and UID, so
 * the new view holds the same bytes, or the read fails with ROOST_ENOTFOUND
 * when the message was expunged in between (a caller that already promised
 * its size to a client must then drop the connection rather than send
 * other bytes). With holdable true (Maildir: a private mapping of the
 * message file, which stays valid after the file is renamed or unlinked)
 * the view pins nothing shared and may be held across steps, until the
 * command ends or the session is freed; it survives the message's expunge.
 * Either way a view is used by one thread at a time and released on the
 * mailbox it came from, before mailbox_close().
 */
struct msg_view {
	const uint8_t *data;
	size_t len;
	bool holdable;                          /* backend's: may outlive the step (see above) */
	void *priv[3];                          /* backend's */
	void (*release)(struct msg_view *view); /* backend's; NULL once released */
};

/* What changed in a mailbox since a MODSEQ. */
struct mailbox_changes {
	uint64_t highestmodseq;
	uint32_t uidnext;
	struct msg_record *changed; /* new or modified, modseq > since, by UID */
	size_t n_changed;
	uint32_t *expunged; /* UIDs expunged after since, ascending */
	size_t n_expunged;
	/* Parallel to expunged: the EMAILID each one had (so a MOVE can be
	 * told from an expunge by the id reappearing elsewhere), 0 where
	 * the log predates ids. */
	uint64_t *expunged_emailids;
	/* false when since predates the expunge log's retention: the caller
	 * must compare its UID list with a fresh mailbox_records(). Expunged
	 * UIDs are kept [storage] expunge_log_retention (default 30 days;
	 * 0 = forever) after their expunge, so QRESYNC clients that were away
	 * for less than that get an exact VANISHED list. */
	bool expunged_complete;
};

enum store_mode { STORE_ADD, STORE_REMOVE, STORE_REPLACE };

struct store_req {
	enum store_mode mode;
	uint32_t flags;
	const char *const *keywords;
	size_t n_keywords;
	uint64_t unchanged_since; /* 0 = unconditional (CONDSTORE) */
};

/*
 * One recipient of a delivery: the one request type that goes from the
 * protocols through the delivery service to the backend. The caller owns
 * user and mailbox; storage_deliver() fills in the results.
 */
struct delivery_target {
	const char *user;
	const char *mailbox; /* usually "INBOX"; "INBOX" after a fallback */
	/* results */
	int result;
	uint32_t uidvalidity;
	uint32_t uid;
};

/* ---- the store ---- */

/* Open the backend named in cfg ([storage] backend) under data_dir,
 * creating what is missing. cfg is borrowed and must outlive the store.
 * ROOST_ENOTSUP for a backend not in this build, ROOST_ECONFIG when the
 * data on disk contradicts cfg (LMDB shard count), ROOST_EIO. Another
 * process may open the same data at the same time (`roost deliver`). Call
 * from one thread, before the store is shared. */
int storage_open(const struct roost_config *cfg, struct storage **st_r);
/* Finish queued writes and free the store; *st becomes NULL, NULL is
 * ignored. Every mailbox must be closed and every watch removed first, and
 * no other thread may use the store any more. */
void storage_close(struct storage **st);
/* "lmdb" or "maildir": static, never freed. */
const char *storage_backend_name(const struct storage *st);
/* True when the store's reads never wait: storage_list(), storage_status(),
 * mailbox_status(), the records and keywords of an open mailbox,
 * mailbox_changes_since() and the metadata and ACL reads answer from memory
 * and a read snapshot of a map (LMDB), so an event loop may run a command
 * made only of them, when the work is small. False where a read may wait on
 * a disk or a server (Maildir, PostgreSQL). Any thread. */
bool storage_reads_nb(const struct storage *st);

/* Create the user's INBOX and special-use folders (Drafts, Sent, Trash,
 * Junk, Archive) if absent. Idempotent and safe when two first logins race
 * (a folder the user deleted later is not created again); called at first
 * login/delivery. */
int storage_user_init(struct storage *st, const char *user);

/* ---- mailboxes ---- */

/* Every mailbox of the user, sorted by name, with attributes (subscribed
 * but absent names included with MBOX_NONEXISTENT); an unknown user has
 * none (0, *n_r = 0). The array and names belong to the caller: free with
 * storage_list_free() (NULL, 0 is fine). */
int storage_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r);
void storage_list_free(struct mailbox_info *list, size_t n);
/* Creates missing parents too. special_use: MBOX_* special-use bits or 0.
 * ROOST_EEXISTS when name exists (a \Noselect parent becomes selectable
 * instead); ROOST_ETOOBIG when a hierarchy limit is reached. */
int storage_create(struct storage *st, const char *user, const char *name, unsigned special_use);
/* Delete name and its messages. ROOST_EPERM for INBOX; a mailbox with
 * children becomes \Noselect instead. Sessions that have it open get
 * ROOST_ENOTFOUND from their next call on it. */
int storage_delete(struct storage *st, const char *user, const char *name);
/* Children move too. Renaming INBOX moves its messages into a new mailbox
 * and leaves INBOX empty (RFC 3501 6.3.5). ROOST_EEXISTS when to exists,
 * ROOST_EINVAL for a rename into itself or its own child. */
int storage_rename(struct storage *st, const char *user, const char *from, const char *to);
/* Subscribe or unsubscribe name; it need not exist (RFC 3501 6.3.6). */
int storage_subscribe(struct storage *st, const char *user, const char *name, bool subscribe);
/* Counters of a mailbox that need not be open (STATUS, LIST-STATUS), as of
 * the call. ROOST_ENOTFOUND when absent or \Noselect. */
int storage_status(struct storage *st, const char *user, const char *name,
                   struct mailbox_status *status_r);

/*
 * Give a mailbox the UIDs another store had, so that clients which knew
 * them need not download again (roost import). uidnext (0 = keep) raises
 * UIDNEXT to at least that, never lowers it: the next append gets that UID
 * unless another one takes it first. uidvalidity (0 = keep) replaces
 * UIDVALIDITY, allowed only while the mailbox has never held a message
 * (UIDNEXT 1, so no client can know a UID of it and no expunge log names
 * one): ROOST_EEXISTS otherwise, nothing changed. Sessions that have the
 * mailbox open see the new UIDVALIDITY at their next call.
 */
int storage_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
                     uint32_t uidnext);

/* Append one message; returns its UID and the mailbox's UIDVALIDITY.
 * msg is borrowed for the call. ROOST_ETOOBIG above [limits]
 * max_message_size, or when the mailbox cannot take another keyword or
 * UID; ROOST_EIO also when a spooled file is shorter than msg->len. */
int storage_append(struct storage *st, const char *user, const char *mailbox,
                   const struct msg_input *msg, uint32_t *uidvalidity_r, uint32_t *uid_r);
enum {
	/* All or nothing: when any target fails, the copies stored for the
	 * others are taken back and every result is the first error, so a
	 * client's retry makes no duplicate. */
	STORAGE_DELIVER_ATOMIC = 1 << 0,
	/* A target whose mailbox does not exist (any more) gets the message
	 * in INBOX instead; its mailbox then points at "INBOX". */
	STORAGE_DELIVER_INBOX_FALLBACK = 1 << 1,
};

/* Deliver one message to many recipients (n <= 100000), storing the body
 * once where the backend can; a (user, mailbox) named twice gets one copy.
 * A user without an INBOX is set up (storage_user_init()) and delivered to.
 * flags: STORAGE_DELIVER_*. Each target's own result goes to
 * targets[i].result, with its uid and uidvalidity on success; a stored
 * copy is on stable storage when this returns. targets' strings are
 * borrowed. Returns 0 when every target succeeded, otherwise the first
 * error in target order. */
int storage_deliver(struct storage *st, const struct msg_input *msg,
                    struct delivery_target *targets, size_t n, unsigned flags);

/* ---- an open mailbox ---- */

enum { MAILBOX_READONLY = 1 << 0 };

/*
 * Open user's mailbox name for a session (SELECT/EXAMINE, POP3). INBOX is
 * created on first use. *mb_r belongs to the caller until mailbox_close()
 * and is used by one thread at a time (see Threads above); it pins no
 * snapshot and holds no lock, so it may stay open while the client is
 * idle: other sessions and processes change the mailbox meanwhile and each
 * call sees their changes. With MAILBOX_READONLY, calls that change
 * messages fail with ROOST_EPERM (cache_set excepted). ROOST_ENOTFOUND when
 * absent or \Noselect; ROOST_EINVAL for unknown flags.
 */
int mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                 struct mailbox **mb_r);
/* Close and free; *mb becomes NULL, NULL is ignored. Release every view
 * read from it first. */
void mailbox_close(struct mailbox **mb);
/* The canonical name it was opened as ("INBOX" spelt so); valid until
 * mailbox_close(). */
const char *mailbox_name(const struct mailbox *mb);
/* Counters as of the call (not as of the open). ROOST_ENOTFOUND once the
 * mailbox was deleted, or renamed and another created under its name
 * (the handle follows the mailbox, not the name). */
int mailbox_status(struct mailbox *mb, struct mailbox_status *status_r);

/* All records, ascending UID, and the HIGHESTMODSEQ they reflect (one
 * consistent snapshot) in *modseq_r (NULL when not wanted; every backend
 * accepts NULL). Caller frees *recs_r with free(). */
int mailbox_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r,
                    uint64_t *modseq_r);
/* Keyword table: index i is bit i of msg_record.keywords. Valid until the
 * next call on mb. */
int mailbox_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r);

/* Claim \Recent: atomically moves the mailbox's recent boundary to UIDNEXT
 * and returns the old boundary in *first_recent_uid_r and the new one in
 * *next_r (NULL when not wanted); messages with first <= uid < next are
 * \Recent for the caller's session only. UIDNEXT is the one this process
 * knows: a message another process added a moment ago may be left for a
 * later claim. Read-only mailboxes return the boundary without moving it
 * (next = first). */
int mailbox_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r);
/*
 * Where a claim is a round trip to a database and this handle's claim
 * would be one (the changes it last read show messages above the \Recent
 * boundary that no claim of this process is taking): reserve that claim,
 * so the handles of other sessions here leave those messages to this one,
 * and return true; the caller claims later with mailbox_claim_recent(),
 * which then does not wait for a row another transaction holds but
 * returns ROOST_EAGAIN, dropping the reservation (a second call waits).
 * False: claim now (it is decided in memory, or nothing is left).
 */
bool mailbox_claim_later(struct mailbox *mb);

/*
 * View of message uid: its bytes as stored, zero-copy (a mapping of a
 * file, or of the database), never a copy of the whole body on the heap,
 * so a protocol that streams pays a page cache's worth, not the message
 * size. How long it may live: see struct msg_view (holdable). *view_r is
 * zeroed on failure, so msg_view_release() on it is always safe.
 * ROOST_ENOTFOUND when no such message exists (any more, uid 0 included);
 * ROOST_EIO when the message exists but its body is damaged or lost
 * (logged; `roost check` reports it).
 */
int mailbox_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r);
/* Release a view; a released or zeroed view is ignored. */
void msg_view_release(struct msg_view *view);

/* Parsed-data cache (envelope, body structure...), opaque bytes filled by
 * the MIME parser. ROOST_ENOTFOUND when nothing is cached. The cache is
 * derived data: cache_set is allowed on read-only mailboxes, may be
 * written asynchronously (LMDB batches fills into later commits, so a get
 * right after a set may still miss) and a crash may lose entries. */
int mailbox_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out);
int mailbox_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len);

/* storage_append() into an open mailbox; *uid_r (may be NULL) its UID. */
int mailbox_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r);
/* Change flags of uids (ascending). UIDs that no longer exist are skipped.
 * With unchanged_since, messages whose modseq is higher are left alone and
 * listed in *modified_r (caller frees; may be NULL when none). */
int mailbox_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
                  uint32_t **modified_r, size_t *n_modified_r);
/* Remove uids (ascending) for good; absent ones are skipped. */
int mailbox_expunge(struct mailbox *mb, const uint32_t *uids, size_t n);
/* Copy (or move) uids to dest (a mailbox name of the same user); absent
 * source UIDs are skipped. *src_uids_r and *dest_uids_r get the copied
 * source UIDs and their new UIDs, pairwise in order, *n_r how many (caller
 * frees both; NULL when none). The copies share the source's body where
 * the backend can. ROOST_ENOTFOUND when dest does not exist (nothing
 * copied). */
int mailbox_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
                 uint32_t *dest_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dest_uids_r,
                 size_t *n_r);
/* What changed after modseq (see struct mailbox_changes), one consistent
 * snapshot. Free with mailbox_changes_free(), which accepts a zeroed
 * struct. */
int mailbox_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r);
/* mailbox_changes_since() for a thread that must not block (an event
 * loop): the same answer when the backend can give it from memory and a
 * read snapshot (LMDB) and it holds at most max changed and max expunged
 * records with a complete expunge list; ROOST_EAGAIN otherwise (another
 * backend, another user's mailbox, more changes), with *changes_r
 * zeroed: then call mailbox_changes_since() where blocking is fine. */
int mailbox_changes_since_nb(struct mailbox *mb, uint64_t modseq, size_t max,
                             struct mailbox_changes *changes_r);
void mailbox_changes_free(struct mailbox_changes *changes);

/* ---- metadata (annotations, RFC 5464) ---- */

/*
 * Entries of a mailbox, or of the user's server (mailbox ""): names
 * "/private/..." or "/shared/...", at most STORAGE_METADATA_MAX_NAME bytes
 * of printable ASCII without '*', '%' or "//", matched without regard to
 * case and kept in lower case; values are bytes (NUL included). A
 * mailbox's entries go with it when it is deleted and follow it when it
 * is renamed. Limits, per mailbox and for the server part of each user:
 * a value of at most STORAGE_METADATA_MAX_VALUE bytes (else ROOST_ETOOBIG),
 * at most STORAGE_METADATA_MAX_ENTRIES entries and
 * STORAGE_METADATA_MAX_TOTAL bytes of names and values together (else
 * ROOST_EOVERQUOTA); and per user, over all mailboxes and the server,
 * STORAGE_METADATA_MAX_USER_ENTRIES entries and
 * STORAGE_METADATA_MAX_USER_TOTAL bytes (ROOST_EOVERQUOTA; two sessions
 * setting entries of two mailboxes at the same moment may pass it by one
 * change each, as the user's other mailboxes are counted before the
 * change is made).
 */
#define STORAGE_METADATA_MAX_NAME 255
#define STORAGE_METADATA_MAX_VALUE (16u << 10) /* below IMAP's 64 KiB line bound */
#define STORAGE_METADATA_MAX_ENTRIES 256
#define STORAGE_METADATA_MAX_TOTAL (256u << 10)
#define STORAGE_METADATA_MAX_USER_ENTRIES 1024
#define STORAGE_METADATA_MAX_USER_TOTAL (1024u << 10)

/* Entries the server keeps here for itself (the URLAUTH keys): no
 * protocol shows them or lets a client set them. */
#define STORAGE_METADATA_INTERNAL "/private/vendor/vendor.roost/"

struct metadata_entry {
	char *name;
	uint8_t *value;
	size_t len;
};

/* Set (value non-NULL) or remove (value NULL: absent is fine) the entries
 * names[i], all or none. ROOST_EINVAL for a name the rules refuse,
 * ROOST_ENOTFOUND for a mailbox that does not exist. */
int storage_metadata_set(struct storage *st, const char *user, const char *mailbox,
                         const char *const *names, const uint8_t *const *values, const size_t *lens,
                         size_t n);
/* The entries named prefix and, depth 0: none below it, 1: its children,
 * -1: all its descendants (RFC 5464 4.2.2), ascending by name, into
 * *list_r (caller frees with storage_metadata_free(); none: *n_r = 0). */
int storage_metadata_get(struct storage *st, const char *user, const char *mailbox,
                         const char *prefix, int depth, struct metadata_entry **list_r,
                         size_t *n_r);
void storage_metadata_free(struct metadata_entry *list, size_t n);
/* A valid entry name (see above); *canon gets it in lower case. */
bool storage_metadata_name_valid(const char *name, char canon[STORAGE_METADATA_MAX_NAME + 1]);

/* ---- access control (RFC 4314) and other users' mailboxes (RFC 2342) ---- */

/*
 * The model is written at the head of backends/storage_acl.c. In short:
 * another user's mailbox is named STORAGE_ACL_PREFIX "/<owner>/<name>",
 * and every function of this header that takes a user (the one acting)
 * and a mailbox name resolves such a name and checks the user's rights on
 * the owner's mailbox before anything runs; the owner has every right.
 * ROOST_ENOACCESS when a right is missing on a mailbox the user may see
 * (l), ROOST_ENOTFOUND when the user may not see it at all.
 */
#define STORAGE_ACL_PREFIX "Other Users"
/* Mailboxes no person owns (RFC 2342's shared namespace): "Shared/<name>"
 * (the prefix is [acl] shared_prefix, this by default: see
 * storage_acl_shared_prefix()) is the mailbox <name> of the reserved store
 * STORAGE_ACL_PUBLIC_OWNER, a
 * name no user can have (auth refuses a leading '#'). Nobody owns them:
 * the users of [acl] shared_admins hold every right there, everyone else
 * the rights its ACL grants. */
#define STORAGE_ACL_SHARED_PREFIX "Shared"
#define STORAGE_ACL_PUBLIC_OWNER "#public"
#define STORAGE_ACL_MAX_ENTRIES 64 /* identifiers in one mailbox's ACL */
#define STORAGE_ACL_RIGHTS_MAX 16  /* a formatted rights string, NUL included */

enum acl_right {
	ACL_LOOKUP = 1 << 0,  /* l: LIST shows it */
	ACL_READ = 1 << 1,    /* r: SELECT, EXAMINE, STATUS, FETCH, SEARCH, COPY from */
	ACL_SEEN = 1 << 2,    /* s: keep \Seen */
	ACL_WRITE = 1 << 3,   /* w: other flags and keywords */
	ACL_INSERT = 1 << 4,  /* i: APPEND, COPY/MOVE into */
	ACL_POST = 1 << 5,    /* p: mail to user+mailbox is delivered there */
	ACL_CREATE = 1 << 6,  /* k: CREATE children, RENAME into */
	ACL_DELETE = 1 << 7,  /* x: DELETE, RENAME away */
	ACL_DELETED = 1 << 8, /* t: set or clear \Deleted */
	ACL_EXPUNGE = 1 << 9, /* e: EXPUNGE, the source of MOVE */
	ACL_ADMIN = 1 << 10,  /* a: GETACL, SETACL, DELETEACL, LISTRIGHTS */
};
#define ACL_RIGHTS_ALL 0x7ffu
#define ACL_RIGHTS_LETTERS "lrswipkxtea"

struct acl_entry {
	char *identifier; /* "anyone", "authenticated" or a user */
	unsigned rights;  /* enum acl_right */
};

enum acl_mode { ACL_SET, ACL_ADD, ACL_REMOVE };

/* Rights letters to bits: "c" reads as k, "d" as x t e; any other letter
 * (and more than 64 of them) is ROOST_EINVAL. */
int storage_acl_rights_parse(const char *text, unsigned *rights_r);
/* Bits to letters in the order of ACL_RIGHTS_LETTERS, then "c" when k is
 * there and "d" when x, t and e all are. */
void storage_acl_rights_format(unsigned rights, char out[STORAGE_ACL_RIGHTS_MAX]);
/* "anyone", "authenticated" or a valid user name (negative rights, "-id",
 * are not supported). */
bool storage_acl_identifier_valid(const char *id);
/* The ACL of mailbox as user names it (needs a): the owner first with every
 * right (none in the shared namespace), then the stored entries. Free with
 * storage_acl_free(). */
int storage_acl_get(struct storage *st, const char *user, const char *mailbox,
                    struct acl_entry **list_r, size_t *n_r);
void storage_acl_free(struct acl_entry *list, size_t n);
/* Set, add or remove rights of identifier (needs a). ROOST_EPERM for the
 * owner, ROOST_ETOOBIG past STORAGE_ACL_MAX_ENTRIES identifiers. */
int storage_acl_set(struct storage *st, const char *user, const char *mailbox,
                    const char *identifier, enum acl_mode mode, unsigned rights);
/* Remove identifier's entry (needs a); absent is fine. */
int storage_acl_delete(struct storage *st, const char *user, const char *mailbox,
                       const char *identifier);
/* user's rights on mailbox; ROOST_ENOTFOUND when user has none but p
 * (which anyone has by default, and which must not show a mailbox). */
int storage_acl_myrights(struct storage *st, const char *user, const char *mailbox,
                         unsigned *rights_r);
/* The shared namespace's name: [acl] shared_prefix of st's config
 * (STORAGE_ACL_SHARED_PREFIX by default, also for a NULL st), or NULL when
 * it is empty (no shared namespace). Valid as long as st. */
const char *storage_acl_shared_prefix(const struct storage *st);
/* Is name (as a user gives it) under STORAGE_ACL_PREFIX or the shared
 * namespace's prefix, or one of them itself: a mailbox the user does not
 * own? */
bool storage_acl_name_foreign(const struct storage *st, const char *name);
/* The owner of mailbox as user names it (user for the user's own names,
 * STORAGE_ACL_PUBLIC_OWNER for the shared namespace). */
int storage_acl_owner(struct storage *st, const char *user, const char *mailbox, char *owner_r,
                      size_t size);
/* The store that holds name as a user gives it, for a name in the other
 * users' or the shared namespace: the owner ("Other Users/<owner>" alone
 * included) or STORAGE_ACL_PUBLIC_OWNER, and in *prefix_len_r the length
 * of the part of name that names the store ("Other Users/<owner>",
 * "Shared"), so that prefix + "/" + the store's name is the user's name.
 * ROOST_ENOTFOUND for a personal name or a namespace prefix alone that
 * names no store, ROOST_EINVAL for an owner the rules refuse. Nothing is
 * read: the store need not exist, and no right is checked; st may be NULL
 * (the default namespace names). */
int storage_acl_store_of(const struct storage *st, const char *name, char *owner_r, size_t size,
                         size_t *prefix_len_r);
/* Other users' mailboxes user may see (l), named under STORAGE_ACL_PREFIX,
 * with the prefix and each owner as \Noselect parents, and the shared
 * namespace's under STORAGE_ACL_SHARED_PREFIX (a \Noselect parent when
 * one is shown); sorted; free with storage_list_free(). */
int storage_acl_shared_list(struct storage *st, const char *user, struct mailbox_info **list_r,
                            size_t *n_r);
/* The rights the session's user had on mb when it was opened or last
 * changed it (every right on the user's own mailboxes). */
unsigned mailbox_rights(const struct mailbox *mb);
/* Read the rights of the user who opened another's mailbox again (a
 * protocol calls it before each command on the open mailbox, so that a
 * revoked right stops the next command, reads included): 0 while the user
 * still has r (mailbox_rights() then tells the rights as read now),
 * ROOST_ENOACCESS once it has lost r, ROOST_ENOTFOUND once the mailbox is
 * gone. Nothing is read, and 0 returned, on the user's own mailbox.
 * mailbox_changes_since() checks r the same way. */
int mailbox_rights_refresh(struct mailbox *mb);
/* Opened read-only: asked for, or the user holds no right to change it. */
bool mailbox_readonly(const struct mailbox *mb);

/* ---- notification ---- */

/* cb(arg) runs on some storage thread whenever the mailbox changes, also
 * when another process changed it (then possibly spuriously: another
 * process's change is known per user, not per mailbox). It must not block:
 * typically it calls conn_wake(). It runs under the watch registry's lock,
 * so it must not call storage_watch()/storage_unwatch(). */
typedef void storage_watch_fn(void *arg);
struct storage_watch;
int storage_watch(struct storage *st, const char *user, const char *mailbox, storage_watch_fn *cb,
                  void *arg, struct storage_watch **watch_r);
/*
 * A watch on every mailbox of user (IMAP NOTIFY, RFC 5465): cb(arg, ch)
 * runs as a storage_watch_fn does after any change to one of them:
 * messages, flags, creation, deletion, (un)subscription, metadata.
 * ch->mailbox names the one that changed, or is NULL when that is not
 * known (another process or node changed something of the user, or
 * changes may have been missed): then the receiver must look at
 * everything (metadata changes made elsewhere are not known by name).
 * After a rename made here, mailbox is the new name and old_name the old
 * one (the children moved along). After a metadata change made here,
 * entries[0..n_entries) are the entry names set or removed (canonical),
 * mailbox "" meaning the server's. *ch is valid only during the call.
 * Removed with storage_unwatch().
 */
struct storage_change {
	const char *mailbox;  /* NULL: unknown */
	const char *old_name; /* a rename's old name, else NULL */
	const char *const *entries;
	size_t n_entries; /* > 0: a metadata change, nothing else */
};
typedef void storage_watch_user_fn(void *arg, const struct storage_change *ch);
int storage_watch_user(struct storage *st, const char *user, storage_watch_user_fn *cb, void *arg,
                       struct storage_watch **watch_r);
/* After return, cb is not running and will not run again. */
void storage_unwatch(struct storage_watch **watch);

/* ---- maildrop lock ---- */

/*
 * An exclusive lock on the user's maildrop for one POP3 session (RFC 1939
 * 8), held until storage_unlock_user(). A backend whose store several
 * nodes share (pgsql) takes it in that store, so it excludes sessions on
 * every node and goes with the holder's connection if the holder dies;
 * the others hand back a NULL lock, the caller's own lock file covering
 * their one data directory. ROOST_EINUSE when another session holds it.
 * A lock is used by one thread at a time.
 */
struct storage_lock;
int storage_lock_user(struct storage *st, const char *user, struct storage_lock **lock_r);
/* Release; NULL and a NULL *lock are ignored. */
void storage_unlock_user(struct storage_lock **lock);

/* ---- quota ---- */

/*
 * One quota root per user over all the user's mailboxes (RFC 9208
 * STORAGE and MESSAGE). The usage is kept exact by each backend in the
 * transaction that adds or removes messages (LMDB: a record per user;
 * Maildir: Maildir++'s maildirsize; PostgreSQL: counters in the users
 * row), never found by scanning; reading it costs one lookup.
 *
 * Limits: the passwd file's quota_storage=/quota_messages= (auth.h) when
 * the user's line sets them, else [quota] storage and messages in the
 * config; 0 is no limit. Without storage_set_auth() only the config's
 * apply.
 *
 * Enforcement, in the wrapper, for every path that adds messages:
 * storage_deliver() (per target), storage_append(), mailbox_append() and
 * mailbox_copy() (a move within the user changes nothing and is never
 * refused). A message that would take the usage past a limit gets
 * ROOST_EOVERQUOTA; one larger than the storage limit by itself gets
 * ROOST_EQUOTATOOBIG. The check reads the usage, then the backend stores:
 * deliveries racing for the last room may overshoot a limit by what they
 * carry (as with Dovecot's quota), never more.
 */
struct storage_usage {
	uint64_t bytes;    /* sum of msg_record.size over all the user's messages */
	uint64_t messages; /* how many */
};

struct storage_quota {
	struct storage_usage usage;
	uint64_t limit_bytes;    /* 0 = no limit */
	uint64_t limit_messages; /* 0 = no limit */
};

struct auth;

/* Take per-user limits from auth (borrowed; it must outlive the store).
 * Call before the store is shared. */
void storage_set_auth(struct storage *st, struct auth *auth);
/* Usage and limits of user (a user without mail has usage 0). */
int storage_quota_get(struct storage *st, const char *user, struct storage_quota *quota_r);
/* Would adding messages totalling bytes fit? 0, ROOST_EOVERQUOTA or
 * ROOST_EQUOTATOOBIG (see above). A cheap check for a protocol that wants
 * to refuse early (SMTP RCPT with SIZE=); the store checks again. */
int storage_quota_check(struct storage *st, const char *user, uint64_t bytes, uint64_t messages);
/* Count the user's messages again (from the messages themselves) and
 * store that as the usage: *before_r as it was kept, *after_r as counted.
 * For repairs (Maildir files added by a program that keeps no maildirsize). */
int storage_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                         struct storage_usage *after_r);

/* ---- maintenance ---- */

/* Verify invariants without changing anything; problems are written to
 * report as lines (bounded). 0 when clean, ROOST_EIO when problems were
 * found. May run while a server uses the store; it reads one snapshot. */
int storage_check(struct storage *st, struct buf *report);

/* Rebuild what is derived from the messages and damaged or missing, and
 * report each thing done and each thing that could not be done (bounded
 * lines in report); message contents are never changed or removed. Runs
 * while a server uses the store, taking the locks the server takes. 0
 * when everything found was rebuilt, ROOST_EIO when something could not
 * be, ROOST_ENOTSUP when the backend has nothing to rebuild this way. */
int storage_repair(struct storage *st, struct buf *report);

/*
 * A consistent copy of the store's data, taken while servers use it, into
 * dest (an existing directory that stands for the data directory: the
 * backend's files go where they are under data_dir). Every message whose
 * delivery or append returned before the call is in the copy (and
 * possibly some that came during it). Problems are written to report.
 * ROOST_ENOTSUP when the data is not under the data directory (pgsql: the
 * report names pg_dump), ROOST_EIO when something could not be copied.
 */
int storage_backup(struct storage *st, const char *dest, struct buf *report);

/* Write-path counters since storage_open(), for benchmarks and metrics. */
struct storage_stats {
	uint64_t commits; /* durable commits (each one sync) */
	uint64_t writes;  /* write requests they carried (group commit: writes >= commits) */
};

/* Fill *stats_r. ROOST_ENOTSUP when the backend keeps no counters (then
 * *stats_r is zeroed). Thread-safe. */
int storage_stats(struct storage *st, struct storage_stats *stats_r);

/* True when a backend of that name is in this build ("lmdb", "maildir"). */
bool storage_backend_available(const char *name);

/* Validation helpers shared by backends and protocols. storage_name_valid()
 * applies every rule above, the lengths included. */
bool storage_name_valid(const char *name);
bool storage_user_valid(const char *user);
bool storage_keyword_valid(const char *kw);

#endif
