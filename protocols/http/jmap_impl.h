#ifndef ROOST_JMAP_IMPL_H
#define ROOST_JMAP_IMPL_H

/*
 * Shared by the JMAP files (jmap_*.c): one API request's context, the
 * method table's shape, ids and states.
 *
 * Ids are storage's object ids (RFC 8474, the ones IMAP's OBJECTID shows):
 *   Mailbox  "M" + 16 hex digits of a 64-bit FNV-1a digest of its MAILBOXID
 *   Email    "E" + the EMAILID's 16 hex digits (IMAP spells it "M" + the same)
 *   Thread   "T" + the THREADID's 16 hex digits (jmap_thread.c)
 *   Blob     "B" + the same (the raw message), "P" + the same + "_" + the
 *            part path with "_" for "." (one body part, decoded), or "U" +
 *            40 hex digits of the SHA-256 of an uploaded blob
 * so a mailbox keeps its id through a rename and a message through a move
 * (RFC 8621 1.2: ids are immutable). An Email id is found by its EMAILID
 * among the records of every mailbox, read once per request (jmap_ids.c);
 * COPY over IMAP keeps the EMAILID, so one Email may be in several mailboxes.
 *
 * States. A state string lists, for every mailbox, its digest,
 * UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT and a hash of its name; /changes asks storage what
 * changed since each mailbox's MODSEQ (the same change log IMAP's
 * CONDSTORE/QRESYNC read), so a change made over IMAP shows in JMAP and
 * the reverse.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "roost/storage.h"

#include "http_impl.h"

#define JMAP_CORE "urn:ietf:params:jmap:core"
#define JMAP_MAIL "urn:ietf:params:jmap:mail"
#define JMAP_SUBMISSION "urn:ietf:params:jmap:submission"
#define JMAP_VACATION "urn:ietf:params:jmap:vacationresponse"
#define JMAP_BLOB "urn:ietf:params:jmap:blob"

#define JMAP_MAX_CALLS 32
#define JMAP_MAX_CONCURRENT_REQUESTS 4 /* per user, over all connections */
#define JMAP_MAX_CONCURRENT_UPLOADS 4
#define JMAP_MAX_OBJECTS_GET 1000
#define JMAP_MAX_OBJECTS_SET 500
#define JMAP_ID_LEN 17 /* E/T/B ids: letter + 16 hex digits */

enum jmap_cap {
	JMAP_CAP_CORE = 1 << 0,
	JMAP_CAP_MAIL = 1 << 1,
	JMAP_CAP_SUBMISSION = 1 << 2,
	JMAP_CAP_VACATION = 1 << 3,
	JMAP_CAP_BLOB = 1 << 4,
};

struct jmap_mbox {
	char *name;        /* in the user's storage view: the account's prefix first */
	const char *local; /* the name within its account: the end of name */
	char id[18];       /* "M" + 16 hex */
	uint64_t digest;
	unsigned attrs;
	unsigned rights; /* the user's (enum acl_right); every right on own ones */
	struct mailbox_status st;
};

/*
 * Accounts (RFC 8620 1.6.2). The user's own mailboxes are the personal
 * account. Each owner who lets the user see (l) at least one mailbox is an
 * account of its own, and so is the shared namespace ("Shared/", the store
 * STORAGE_ACL_PUBLIC_OWNER) when the user sees a mailbox there. An account
 * is a name prefix in the user's own storage view ("Other Users/<owner>/",
 * "Shared/"): every storage call is made as the authenticated user with
 * the prefixed name, so the storage wrapper checks the rights as it does
 * for IMAP. An account's id is http_account_id() of its owner, the same
 * for every user (and the owner's own personal account id): stable, and
 * it tells no more than the owner's name, which LIST shows already.
 */
struct jmap_account {
	char id[24];
	char *owner;   /* a user, or STORAGE_ACL_PUBLIC_OWNER */
	char *prefix;  /* "Other Users/<owner>/" or "Shared/" */
	bool readonly; /* no right beyond l and r on any of its mailboxes */
};

struct jmap_req {
	struct http_session *s;
	struct storage *store;
	const char *user;
	const char *account; /* the account of the current method call */
	/* The prefix of that account's names; NULL for the personal account
	 * (jmap_account_select()). Borrowed from accts. */
	const char *prefix;
	/* the accounts others share with the user, loaded on first use */
	struct jmap_account *accts;
	size_t n_accts;
	bool accts_loaded;
	unsigned using;
	json_t *responses;   /* [[name, args, tag], ...] */
	json_t *created_ids; /* creation id -> id */
	/* the mailbox list, loaded on first use, dropped after changes */
	struct jmap_mbox *mboxes;
	size_t n_mboxes;
	bool loaded;
	/* where each EMAILID is (jmap_ids.c), loaded on first use with the
	 * mailbox list and dropped with it */
	struct jmap_eloc *elocs;
	size_t n_elocs;
	bool elocs_loaded;
	/* every Email by thread (jmap_thread.c), loaded on first use and
	 * dropped with the mailbox list */
	struct jmap_tloc *tlocs;
	struct jmap_tmap *tmap;
	size_t n_tlocs;
	bool tlocs_loaded;
};

struct jmap_method {
	const char *name;
	unsigned cap;
	void (*run)(struct jmap_req *r, json_t *args, const char *tag);
};

/* ---- jmap_set.c ---- */

/* One type's part of its /set method (RFC 8620 5.3), for jmap_set_run();
 * ctx is the caller's, passed to every slot. */
struct jmap_set_ops {
	const char *name; /* of the response: "Mailbox/set" */
	/* The type's state string appended to out; false when it cannot be
	 * read (serverFail before anything is done; after, newState is
	 * oldState). NULL: the type has no state (PushSubscription/set, RFC
	 * 8620 7.2.2): no accountId, ifInState, oldState or newState, and
	 * the reply's empty maps are null. */
	bool (*state)(struct jmap_req *r, void *ctx, struct buf *out);
	/* Create one from obj: NULL with the "created" object, holding its
	 * "id" (the creation id's meaning from now on), in *created_r; or a
	 * SetError. New references either way. */
	json_t *(*create)(struct jmap_req *r, void *ctx, json_t *obj, json_t **created_r);
	/* Update id ("#creationId" already resolved) with patch: NULL with
	 * the properties the server changed in *updated_r (NULL: none); or a
	 * SetError. */
	json_t *(*update)(struct jmap_req *r, void *ctx, const char *id, json_t *patch,
	                  json_t **updated_r);
	/* Destroy id (resolved): NULL or a SetError. */
	json_t *(*destroy)(struct jmap_req *r, void *ctx, const char *id);
	/* After the last destroy, before newState, and after an error
	 * response: release what ctx holds. May be NULL. */
	void (*done)(struct jmap_req *r, void *ctx);
};

/* A /set method: the account, ifInState, at most JMAP_MAX_OBJECTS_SET
 * objects, create then update then destroy through ops (creation ids
 * recorded for later "#id" references), and the reply named ops->name;
 * or a method error response. */
void jmap_set_run(struct jmap_req *r, json_t *args, const char *tag, const struct jmap_set_ops *ops,
                  void *ctx);
/* The state of the mail types (jmap_state()) as a state slot. */
bool jmap_set_mail_state(struct jmap_req *r, void *ctx, struct buf *out);

/* ---- jmap_core.c ---- */

/* Append a method response; args is stolen. */
void jmap_reply(struct jmap_req *r, const char *name, json_t *args, const char *tag);
/* Append an "error" response; desc may be NULL. */
void jmap_error(struct jmap_req *r, const char *type, const char *desc, const char *tag);
/* A SetError object (RFC 8620 5.3) of type, with a description unless desc
 * is NULL; new reference. */
json_t *jmap_set_error(const char *type, const char *desc);
/* The SetError for a storage error, the one mapping of every /set method:
 * alreadyExists, invalidProperties (described by invalid_desc, may be
 * NULL), notFound, forbidden, overQuota, tooLarge, else serverFail. */
json_t *jmap_storage_set_error(int rc, const char *invalid_desc);
/* Is name among the properties asked for (a JSON array of strings), or
 * among defaults[0..n) when props is NULL? */
bool jmap_prop_wanted(json_t *props, const char *const *defaults, size_t n, const char *name);
/* accountId is the user's own or one shared with the user (the method
 * then works in it: jmap_account_select()), or an accountNotFound error
 * was written (false). */
bool jmap_check_account(struct jmap_req *r, json_t *args, const char *tag);
/* What an id list that is null (or absent) asks for. */
enum jmap_ids_null {
	JMAP_IDS_NULL_ALL,       /* every object: *ids_r is NULL */
	JMAP_IDS_NULL_TOO_LARGE, /* every object, more than we answer: requestTooLarge */
	JMAP_IDS_REQUIRED,       /* the list must be given: invalidArguments */
};
/* The id list args[name] of a method (RFC 8620 3.3, 5.1): an array of at
 * most max strings (else invalidArguments, or requestTooLarge over max), or
 * null/absent as null_is says. True with the array, borrowed from args, in
 * *ids_r (NULL for "all"); false once an error response was written. */
bool jmap_check_id_list(struct jmap_req *r, json_t *args, const char *name, size_t max,
                        enum jmap_ids_null null_is, const char *tag, json_t **ids_r);
/* The properties argument of a /get (RFC 8620 5.1): an array, borrowed
 * from args, or NULL for null/absent (every property). False once an
 * invalidArguments response was written. */
bool jmap_check_properties(struct jmap_req *r, json_t *args, const char *tag, json_t **props_r);
/* Was id met before in this /get (RFC 8620 5.1: an id asked twice is
 * answered once)? seen is the call's object of ids, owned by the caller. */
bool jmap_id_repeat(json_t *seen, const char *id);
/* The response of a /get (RFC 8620 5.1): accountId, state (the account's,
 * jmap_state(), when NULL), list and notFound, both taken. */
void jmap_get_reply(struct jmap_req *r, const char *method, const char *state, json_t *list,
                    json_t *not_found, const char *tag);
/* An id that may be "#creationId": the id it was created as, or NULL. */
const char *jmap_resolve_id(struct jmap_req *r, const char *id);
/* The mailboxes with their status, (re)loaded as needed. 0 or an error. */
int jmap_mailboxes(struct jmap_req *r);
/* Forget the loaded list (after a change). */
void jmap_mailboxes_reset(struct jmap_req *r);
const struct jmap_mbox *jmap_mbox_by_id(struct jmap_req *r, const char *id);
const struct jmap_mbox *jmap_mbox_by_digest(struct jmap_req *r, uint64_t digest);
const struct jmap_mbox *jmap_mbox_by_name(struct jmap_req *r, const char *name);
uint64_t jmap_name_digest(const char *name);
/* 32 bits of the mailbox's name in the state: a rename changes the state. */
uint32_t jmap_mbox_name_hash(const struct jmap_mbox *m);
/* The account's state string (see above) into out. */
void jmap_state(struct jmap_req *r, struct buf *out);
/* RFC 3339 UTC ("2024-01-31T10:00:00Z") of t into out (21 bytes). */
void jmap_utc_date(int64_t t, char out[21]);
int jmap_parse_date(const char *s, int64_t *t_r);

/* ---- jmap_account.c ---- */

/* The accounts others share with user (see above), sorted by id; with
 * rights, isReadOnly is found (one read of the rights of each mailbox).
 * 0 or an error; free with jmap_accounts_free(). */
int jmap_accounts_shared(struct storage *st, const char *user, bool rights,
                         struct jmap_account **v_r, size_t *n_r);
void jmap_accounts_free(struct jmap_account *v, size_t n);
/* Make account id (the user's own or a shared one) the one r works in,
 * dropping what was loaded of another; false, nothing changed, when the
 * user has no such account. */
bool jmap_account_select(struct jmap_req *r, const char *id);
/* The user's personal account id. */
const char *jmap_account_own(const struct jmap_req *r);

/* ---- jmap_session.c ---- */

/* The Session resource's state for the user with shared accounts v[0..n)
 * into out (RFC 8620 2: it changes with the configuration, the user and
 * the accounts shared with the user). */
void jmap_session_state(struct http_session *s, const struct jmap_account *v, size_t n,
                        char out[20]);
/* Is r working in a shared account? */
bool jmap_account_shared(const struct jmap_req *r);
/* The account's own name of m (its name without the account's prefix). */
const char *jmap_mbox_local_name(const struct jmap_req *r, const struct jmap_mbox *m);
/* Free the accounts loaded into r. */
void jmap_accounts_reset(struct jmap_req *r);

/* ---- jmap_ids.c: Email ids ---- */

/* The "E"/"T"/"B" id (kind) of EMAILID emailid. */
void jmap_email_id(char kind, uint64_t emailid, char out[JMAP_ID_LEN + 1]);
/* Parse an "E"/"T"/"B" id (letter given): the first mailbox holding it
 * and its UID there; false when malformed or no message has it. */
bool jmap_email_parse(struct jmap_req *r, char kind, const char *id, const struct jmap_mbox **mb_r,
                      uint32_t *uid_r);
/* Every location of an "E" id (at most max, first ones first): the count,
 * 0 when malformed or no message has it. */
#define JMAP_MAX_LOCATIONS 64
size_t jmap_email_locate(struct jmap_req *r, const char *id, const struct jmap_mbox **mbs,
                         uint32_t *uids, size_t max);
/* The EMAILID of uid in m, 0 when it is not there (a lookup in storage). */
uint64_t jmap_emailid_at(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid);
/* mailboxIds of EMAILID emailid: every mailbox holding it, m at least. */
json_t *jmap_email_mailbox_ids(struct jmap_req *r, uint64_t emailid, const struct jmap_mbox *m);
/* Drop the locations (with the mailbox list). */
void jmap_elocs_reset(struct jmap_req *r);
/* The EMAILID of an id with letter kind ("E", "T", "B"), 0 when malformed. */
uint64_t jmap_id_value(const char *id, char kind);
/* Call fn(r, i, mb, recs, n, arg) with the records of each mailbox
 * r->mboxes[i] of the account, open read-only (one gone meanwhile holds
 * nothing): what the indexes of one request (Email locations, threads)
 * are read from. 0, or jmap_mailboxes()'s error. */
int jmap_each_records(struct jmap_req *r,
                      void (*fn)(struct jmap_req *r, size_t i, struct mailbox *mb,
                                 const struct msg_record *recs, size_t n, void *arg),
                      void *arg);
/* A keyword of JMAP to a system flag (0 when it is none) and back. */
uint32_t jmap_keyword_flag(const char *kw);

/* ---- jmap_limits.c: limits over all of a user's connections ---- */

enum jmap_limit { JMAP_LIMIT_REQUESTS, JMAP_LIMIT_UPLOADS };

/* Count one more API request (upload) of user running: false, counting
 * nothing, when JMAP_MAX_CONCURRENT_* are running already. Any thread. */
bool jmap_limit_enter(const char *user, enum jmap_limit kind);
/* One that jmap_limit_enter() counted has ended. Any thread. */
void jmap_limit_leave(const char *user, enum jmap_limit kind);
/* Answer the request-level "limit" problem (RFC 8620 3.6.1) naming limit. */
void jmap_limit_problem(struct http_session *s, const char *limit);

/* ---- jmap_changes.c ---- */

/* The Email changes since the state since, for /queryChanges: *removed_r
 * the ids updated or destroyed (an array), *changed_r the ids created or
 * updated (an object of id -> true); new references. NULL, or why the
 * changes cannot be told (both then NULL). */
const char *jmap_email_changes_since(struct jmap_req *r, const char *since, json_t **removed_r,
                                     json_t **changed_r);
/* The same for Mailboxes. */
const char *jmap_mailbox_changes_since(struct jmap_req *r, const char *since, json_t **removed_r,
                                       json_t **changed_r);

/* ---- jmap_thread.c: threads ---- */

/* One Email of the account in the thread index: sorted by (threadid,
 * date, emailid), each EMAILID once (its first location). */
struct jmap_tloc {
	uint64_t threadid;
	uint64_t emailid;
	int64_t date;
	uint32_t mbox; /* index into r->mboxes */
	uint32_t uid;
};

/* The THREADID of rec in m, open as mb (reads its header unless cached).
 * Any thread. */
uint64_t jmap_thread_read(struct jmap_req *r, const struct jmap_mbox *m, struct mailbox *mb,
                          const struct msg_record *rec);
/* The THREADID of uid in m when the cache of THREADIDs still has it (also
 * after uid was expunged: a UID's message never changes), else 0. */
uint64_t jmap_thread_cached(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid);
/* The THREADID of uid (EMAILID emailid) in m, opening m. */
uint64_t jmap_thread_at(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid,
                        uint64_t emailid);
/* Build the thread index (reads every message's header once). 0 or an
 * error. */
int jmap_threads_load(struct jmap_req *r);
/* The members of thread threadid, oldest first: the count and *first_r
 * (valid until jmap_threads_reset()); 0 when no Email has it. */
size_t jmap_thread_members(struct jmap_req *r, uint64_t threadid, const struct jmap_tloc **first_r);
/* The THREADID of an Email of the account, 0 when none has emailid. */
uint64_t jmap_thread_of_email(struct jmap_req *r, uint64_t emailid);
/* Drop the index (with the mailbox list). */
void jmap_threads_reset(struct jmap_req *r);

/* Where uploaded blobs of the account live: <data_dir>/blobs/<account>. */
void jmap_blob_dir(struct jmap_req *r, char *out, size_t size);
/* The bytes of any blob of the account (uploaded, a message, a decoded
 * part) into out, whose maximum bounds it. 0 or ROOST_ENOTFOUND. */
int jmap_blob_fetch(struct jmap_req *r, const char *id, struct buf *out);

/* ---- methods ---- */

void jmap_blob_copy(struct jmap_req *r, json_t *args, const char *tag);
void jmap_blob_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_vacation_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_vacation_set(struct jmap_req *r, json_t *args, const char *tag);
void jmap_mailbox_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_mailbox_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_mailbox_query(struct jmap_req *r, json_t *args, const char *tag);
void jmap_mailbox_query_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_mailbox_set(struct jmap_req *r, json_t *args, const char *tag);
void jmap_thread_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_thread_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_query(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_query_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_set(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_import(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_parse_method(struct jmap_req *r, json_t *args, const char *tag);
void jmap_email_copy(struct jmap_req *r, json_t *args, const char *tag);
/* RFC 5322 text of an Email object for Email/set create (jmap_email_build.c);
 * false and *why on error. */
bool jmap_build_message(struct jmap_req *r, json_t *e, struct buf *out, const char **why);
void jmap_snippet_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_identity_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_identity_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_identity_set(struct jmap_req *r, json_t *args, const char *tag);
/* The address of identity id into out (size bytes), or NULL when the user
 * has no such identity (jmap_identity.c). */
const char *jmap_identity_email(struct jmap_req *r, const char *id, char *out, size_t size);
void jmap_push_sub_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_push_sub_set(struct jmap_req *r, json_t *args, const char *tag);
void jmap_submission_get(struct jmap_req *r, json_t *args, const char *tag);
void jmap_submission_changes(struct jmap_req *r, json_t *args, const char *tag);
void jmap_submission_query(struct jmap_req *r, json_t *args, const char *tag);
void jmap_submission_set(struct jmap_req *r, json_t *args, const char *tag);

/* ---- jmap_msg*.c: a stored message as JMAP sees it ---- */

struct message;

/* The Email object of a parsed message with the properties asked for
 * (props NULL = the default list; bodyProps NULL = default). opts holds
 * fetchTextBodyValues etc. from the request. */
json_t *jmap_msg_email(const struct message *msg, json_t *props, json_t *body_props, json_t *opts,
                       const char *blob_prefix);
/* The preview: up to 256 characters of the first text part. */
void jmap_msg_preview(const struct message *msg, struct buf *out);
/* Any attachment (RFC 8621 hasAttachment)? */
bool jmap_msg_has_attachment(const struct message *msg);
/* The decoded first value of header name as text ("" when absent). */
void jmap_msg_header_text(const struct message *msg, const char *name, struct buf *out);
/* The addresses of header name as "name <email>, ..." text, lower-cased
 * emails, for matching and sorting. */
void jmap_msg_addresses_text(const struct message *msg, const char *name, struct buf *out);

/* A leaf by its partId ("1.2"); NULL when absent (downloads). */
const struct message_part *jmap_msg_find_part(const struct message *msg, const char *part_id);

/* ---- jmap_mbc.c: mailboxes opened for one method call ---- */

struct jmap_mbc {
	const struct jmap_mbox *m;
	struct mailbox *mb;
	struct msg_record *recs; /* ascending UID */
	size_t n;
	json_t *kw; /* the keyword table's names */
};

struct jmap_mbc_set {
	struct jmap_mbc **v; /* each allocated alone: pointers stay valid */
	size_t n;
};

/* The open mailbox m with its records, opened on first use (NULL on error). */
struct jmap_mbc *jmap_mbc_get(struct jmap_req *r, struct jmap_mbc_set *set,
                              const struct jmap_mbox *m);
const struct msg_record *jmap_mbc_find(const struct jmap_mbc *c, uint32_t uid);
json_t *jmap_mbc_keywords(const struct jmap_mbc *c, const struct msg_record *rec);
void jmap_mbc_free(struct jmap_mbc_set *set);
/* Read and parse a message (view kept in *view until message_free and
 * msg_view_release). */
int jmap_read_message(struct jmap_mbc *c, uint32_t uid, struct msg_view *view,
                      struct message **msg_r);

#endif
