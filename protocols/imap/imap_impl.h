#ifndef ROOST_IMAP_IMPL_H
#define ROOST_IMAP_IMPL_H

/*
 * Private to protocols/imap: the session, the command table and the shared
 * helpers of the command files. The syntax layer under them (arena,
 * framer, arguments, sequence sets, dates, LIST patterns) is imap_parse.h;
 * mailbox names in modified UTF-7 are core/mutf7.c's. Nothing here is
 * thread-safe by itself: a session belongs to whichever thread owns its
 * connection (conn.h).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/mutf7.h"
#include "roost/proto_cmd.h"
#include "roost/buf.h"
#include "roost/storage.h"

#include "imap_parse.h"

struct conn;
struct roost_config;
struct sasl;
struct sort_cache;
struct imap_context;

/* ------------------------------------------------------------------ */
/* Session                                                            */

enum imap_state {
	IMAP_STATE_NOT_AUTH,
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};

/* One message in the session's view, index = sequence number - 1. */
struct view_msg {
	struct msg_record rec;
	bool recent;
	bool expunged; /* gone in storage, EXPUNGE not sent yet */
};

struct imap_view {
	struct mailbox *mb;
	char *name;                                /* storage (UTF-8) name */
	char mailboxid[STORAGE_MAILBOXID_MAX + 1]; /* OBJECTID (RFC 8474) */
	bool readonly;
	struct view_msg *msgs;
	size_t n, cap;
	size_t n_recent; /* of msgs[], those with recent set */
	uint64_t modseq; /* view reflects storage up to here */
	uint32_t uidvalidity;
	uint32_t uidnext;
	char **keywords; /* keyword table last announced in FLAGS */
	size_t n_keywords;
	size_t n_pending_expunge;
	/* UIDs [recent_lo, recent_hi) were claimed as \Recent by this
	 * session but may not be in the view yet. */
	uint32_t recent_lo, recent_hi;
	struct sort_cache *sort_cache; /* SORT/THREAD keys (imap_sort.h) */
	uint32_t *searchres;           /* "$" (RFC 5182): UIDs, ascending */
	size_t n_searchres;
	struct imap_context *contexts; /* RETURN (UPDATE) searches (imap_context.c) */
	bool no_recent;                /* IMAP4rev2: \Recent is never shown */
	bool claim_due;                /* new messages announced, \Recent not claimed yet */
};

struct imap_session {
	struct conn *c;
	const struct roost_services *sv;
	enum imap_state state;
	char *user;
	char peer[64];
	unsigned bad;
	bool counted;     /* holds a per-user+IP slot */
	bool condstore;   /* CONDSTORE enabled (RFC 7162 3.1) */
	bool qresync;     /* QRESYNC enabled (RFC 7162 3.2; implies condstore) */
	bool rev2;        /* IMAP4rev2 enabled (RFC 9051; imap_rev2.c) */
	bool utf8_accept; /* UTF8=ACCEPT enabled (RFC 6855) */
	bool tls;

	/* loop side */
	struct imap_framer fr;

	/* multi-step commands */
	struct sasl *sasl;
	char sasl_tag[IMAP_MAX_TAG + 1];
	bool idling;
	char idle_tag[IMAP_MAX_TAG + 1];
	double idle_keepalive_at; /* monotonic seconds of the next keepalive */
	struct storage_watch *watch;

	/* NOTIFY (imap_notify.c): NULL until NOTIFY SET */
	struct imap_notify *notify;

	/* selected state */
	struct imap_view view;

	/* A command that yielded (imap_yield()): it owns its parsed
	 * arguments and state until a step returns without yielding, or
	 * the session ends. Nothing else of the connection runs meanwhile. */
	struct imap_cmd *cont;
};

struct imap_cmd;
typedef void imap_cmd_fn(struct imap_cmd *cmd);

enum imap_cmd_flag {
	CMD_USES_SEQS = 1 << 0, /* sequence numbers in use: no EXPUNGE after it */
	CMD_UID_OK = 1 << 1,    /* allowed after "UID" */
};

/* Where a row may run (proto_cmd.h). LOGOUT is included wherever the
 * session was authenticated or not: the connection is closing anyway. */
#define IMAP_ANY                                                                                   \
	(PROTO_STATE(IMAP_STATE_NOT_AUTH) | PROTO_STATE(IMAP_STATE_AUTH) |                         \
	 PROTO_STATE(IMAP_STATE_SELECTED) | PROTO_STATE(IMAP_STATE_LOGOUT))
#define IMAP_NOT_AUTH PROTO_STATE(IMAP_STATE_NOT_AUTH)
#define IMAP_AUTHED                                                                                \
	(PROTO_STATE(IMAP_STATE_AUTH) | PROTO_STATE(IMAP_STATE_SELECTED) |                         \
	 PROTO_STATE(IMAP_STATE_LOGOUT))
#define IMAP_SELECTED PROTO_STATE(IMAP_STATE_SELECTED)

/* A check step: false once it has refused the command (and replied). */
typedef bool imap_check_fn(struct imap_cmd *cmd);

struct imap_cmd_def {
	PROTO_CMD_ROW(imap_check_fn, imap_cmd_fn);
};

/* The command table (imap_session.c): UNKNOWN, NOT_NOW (*def_r set) or
 * FOUND (*def_r set) for name in state st, uid: after "UID". */
enum proto_cmd_match imap_find_command(const char *name, bool uid, enum imap_state st,
                                       const struct imap_cmd_def **def_r);
/* The BAD text for a command its row does not allow in state st. */
const char *imap_state_error(const struct imap_cmd_def *def, enum imap_state st);

/* A later step of a command that yielded. */
typedef void imap_step_fn(struct imap_cmd *cmd);

struct imap_cmd {
	struct imap_session *s;
	struct conn *c;
	const struct imap_cmd_def *def;
	struct imap_parsed p;
	struct arena arena;
	bool uid;
	bool done;                /* tagged reply written */
	struct imap_spool *spool; /* a spooled APPEND's text (p points into it) */

	/* Resumable commands (FETCH, LIST, SEARCH): their state lives here, so it
	 * survives between steps and dies with the command or the session. */
	imap_step_fn *step; /* set by imap_yield(), cleared before it runs */
	void *state;
	void (*state_free)(struct imap_cmd *cmd); /* releases state; may be NULL */
};

/* Shared by the command files (imap_session.c). */
/*
 * A command whose reply may be long stops at a unit boundary once
 * conn_output_full() says so, and calls imap_yield() before returning:
 * step(cmd) runs on a worker once the client has read enough of the
 * output. cmd (its arena, p's arguments, cmd->state) stays valid until
 * a step returns without yielding; the tagged reply is written by the
 * last step (or by the runner, "OK <name> completed", if none was). If
 * the connection closes first, step never runs and state_free(cmd)
 * releases the state with the session.
 */
void imap_yield(struct imap_cmd *cmd, imap_step_fn *step);
const struct roost_config *imap_cfg(const struct imap_session *s);
/* Count a client error; past imap_max_bad_commands say BYE and close. */
void imap_count_bad(struct imap_session *s);
void imap_enter_state(struct imap_session *s, enum imap_state st);
/* Turn CONDSTORE on (RFC 7162 3.1), with the untagged HIGHESTMODSEQ a
 * selected mailbox then owes the client; nothing if it is on already. */
void imap_condstore_enable(struct imap_session *s);
/* Responses (imap_reply.c). */
void imap_tagged(struct imap_cmd *cmd, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void imap_bad(struct imap_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_reply_error(struct imap_cmd *cmd, int err, const char *what);
void imap_untagged(struct imap_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Write a string as quoted or literal, whichever is legal. */
void imap_write_string(struct conn *c, const char *s, size_t len);
void imap_write_nstring(struct conn *c, const char *s, size_t len);
/* Mailbox name: storage (UTF-8) to wire (mUTF-7) and back. */
void imap_write_mailbox(struct conn *c, const char *name);
int imap_mailbox_arg(struct imap_cmd *cmd, const struct imap_arg *a, char **name_r);
void imap_capability_string(struct imap_session *s, struct buf *out);

/* IMAP4rev2 and UTF8=ACCEPT (imap_rev2.c). */
/* Mailbox names travel as UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled), not
 * modified UTF-7. */
bool imap_utf8_names(const struct imap_session *s);
void imap_rev2_enable(struct imap_session *s);
/* A mailbox name or LIST pattern from the client into storage form (UTF-8)
 * appended to out: modified UTF-7 decoded, or UTF-8 checked. 0 or < 0. */
int imap_name_decode(const struct imap_session *s, const char *in, size_t len, struct buf *out);
/* Write a storage name as the session spells names (imap_write_mailbox()
 * for IMAP4rev1, UTF-8 once enabled). */
void imap_write_mbox(struct imap_session *s, const char *name);
/* "(\Attr ...)" of MBOX_* attributes, as LIST shows them (imap_list.c). */
void imap_format_mbox_attrs(unsigned attrs, struct buf *b);
/* Merge the other users' and the shared namespace's mailboxes s->user may
 * see into *list (sorted by name, from storage_list(); stays sorted): a
 * subscription to one (kept in the user's list as absent) takes the
 * shared entry's attributes (imap_list.c). */
void imap_list_add_shared(struct imap_session *s, struct mailbox_info **list, size_t *n);
/* SELECT's "* LIST () "/" name" (RFC 9051 6.3.2). */
void imap_rev2_select(struct imap_session *s, const char *name);
/* STATUS DELETED: messages with \Deleted in name. 0 or a storage error. */
int imap_status_deleted(struct imap_session *s, const char *name, uint32_t *n_r);
/* APPEND's message at a[*k]: a literal, or UTF8 (literal8) after ENABLE
 * UTF8=ACCEPT. *msg_r is the literal, *k moves past it. ROOST_EINVAL when
 * neither is there, ROOST_EPERM for UTF8 without UTF8=ACCEPT. */
int imap_append_message_arg(struct imap_cmd *cmd, const struct imap_arg *a, size_t n, size_t *k,
                            const struct imap_arg **msg_r);

/* Commands, by file. */
imap_cmd_fn cmd_capability, cmd_noop, cmd_logout, cmd_starttls, cmd_login, cmd_authenticate, cmd_id,
    cmd_enable, cmd_namespace;
imap_cmd_fn cmd_select, cmd_examine, cmd_create, cmd_delete, cmd_rename, cmd_subscribe,
    cmd_unsubscribe, cmd_list, cmd_lsub, cmd_status, cmd_append, cmd_check, cmd_close, cmd_unselect,
    cmd_expunge;
imap_cmd_fn cmd_fetch, cmd_store, cmd_copy, cmd_move;
imap_cmd_fn cmd_search, cmd_sort, cmd_thread, cmd_cancelupdate;
/* URLAUTH (imap_urlauth.c). */
imap_cmd_fn cmd_genurlauth, cmd_resetkey, cmd_urlfetch;

/* CATENATE (RFC 4469, imap_catenate.c): APPEND's message built from TEXT
 * literals and URL parts. */
#define IMAP_CATENATE_MAX_PARTS 256
struct imap_catenate {
	struct buf text; /* the message so far, while it is small */
	int fd;          /* past IMAP_SPOOL_AT: an unlinked spool file, else -1 */
	uint64_t len;
	struct buf reply; /* after a failure: the tagged NO's text */
};
/* Is list a well-formed CATENATE part list (TEXT literal / URL astring,
 * 1 to IMAP_CATENATE_MAX_PARTS parts)? */
bool imap_catenate_syntax(const struct imap_arg *list);
/* Build the message: 0; or < 0 with cat->reply set ([BADURL url] for a URL
 * that cannot be read, [TOOBIG] past APPENDLIMIT). Free cat either way. */
int imap_catenate_build(struct imap_cmd *cmd, const struct imap_arg *list,
                        struct imap_catenate *cat);
/* The built message as storage takes it (valid while cat lives). */
void imap_catenate_input(const struct imap_catenate *cat, struct msg_input *in);
void imap_catenate_free(struct imap_catenate *cat);
/* "[BADURL url] " (RFC 4469) appended to b, or nothing for a URL that
 * cannot stand in a response code. */
void imap_badurl_code(struct buf *b, const char *url, size_t len);
imap_cmd_fn cmd_compress;       /* imap_compress.c */
imap_cmd_fn cmd_unauthenticate; /* imap_unauth.c */
imap_cmd_fn cmd_replace;        /* imap_replace.c */
/* CREATE's parameter list (RFC 6154 3, imap_special_use.c): the special-use
 * bits of USE (...) in *special_r; < 0 with BAD or NO [USEATTR] sent. */
int imap_create_params(struct imap_cmd *cmd, const struct imap_arg *l, unsigned *special_r);
/* QUOTA (imap_quota.c). */
imap_cmd_fn cmd_getquota, cmd_getquotaroot, cmd_setquota;
/* imap_acl.c (RFC 4314) */
imap_cmd_fn cmd_getacl, cmd_setacl, cmd_deleteacl, cmd_listrights, cmd_myrights;
/* LIST RETURN (MYRIGHTS) (RFC 8440): "* MYRIGHTS name rights", nothing
 * when the user has none. */
void imap_myrights_write(struct imap_session *s, const char *name);
/* STATUS DELETED and DELETED-STORAGE (RFC 9208): the messages of name
 * flagged \Deleted and the octets EXPUNGE would give back. Reads the
 * mailbox's records: only for a client that asks. */
int imap_quota_deleted(struct imap_session *s, const char *name, uint64_t *count_r,
                       uint64_t *bytes_r);

/* SEARCH as SORT and THREAD use it (imap_search.c). */
struct imap_search;
/* Parse the keys a[0..n) (after any CHARSET) into the command's arena. On
 * failure the reply (BAD, NO [LIMIT]) is sent and < 0 returned. */
int imap_search_parse(struct imap_cmd *cmd, const struct imap_arg *a, size_t n,
                      struct imap_search **sr_r);
/* Test every message of the view: the view indexes of the hits, ascending
 * (heap, the caller frees), and their highest MODSEQ (top_r may be NULL).
 * *budget is the bytes left to scan, lowered by what this used. Past it,
 * NO [LIMIT] is sent and ROOST_ETOOBIG returned. */
int imap_search_run(struct imap_cmd *cmd, struct imap_search *sr, uint64_t *budget,
                    uint32_t **idx_r, size_t *n_r, uint64_t *top_r);
/* The same in steps, so a long search can report INPROGRESS and give its
 * worker back between them. The job lives in the command's state; hits is
 * the heap array imap_search_run() would return. */
struct imap_search_job {
	struct imap_search *sr;
	uint64_t budget;
	uint32_t *hits;
	size_t nh;
	uint64_t top;
	size_t next; /* the view index to test next */
};
void imap_search_job_init(struct imap_cmd *cmd, struct imap_search_job *j, struct imap_search *sr,
                          uint64_t budget);
/* Test messages from j->next until all are done (1) or the monotonic
 * clock passes deadline_ms (0, more to do); past the budget, NO [LIMIT]
 * is sent and ROOST_ETOOBIG returned. The view must not change between
 * steps (it does not: a command in steps holds the connection's
 * wake-ups). */
int imap_search_job_run(struct imap_cmd *cmd, struct imap_search_job *j, uint64_t deadline_ms);
void imap_search_job_free(struct imap_search_job *j);

/* INPROGRESS (RFC 9585, imap_progress.c): a command working for longer
 * than [imap] inprogress_interval says how far it got at most that often. */
/* When the current step of a long command should stop and report. */
uint64_t imap_progress_deadline(const struct imap_session *s);
/* "* OK [INPROGRESS ("tag" done total)] text" (total 0: NIL). */
void imap_progress_send(struct imap_cmd *cmd, uint64_t done, uint64_t total, const char *text);
bool imap_search_modseq(const struct imap_search *sr);
/* Log and answer NO [LIMIT] for a command that ran out of search_budget. */
void imap_search_limit(struct imap_cmd *cmd, size_t n_keys);
/* RETURN options (RFC 4731, 5182, 5267). */
enum {
	IMAP_RET_MIN = 1,
	IMAP_RET_MAX = 2,
	IMAP_RET_ALL = 4,
	IMAP_RET_COUNT = 8,
	IMAP_RET_SAVE = 16,
	IMAP_RET_UPDATE = 32,  /* RFC 5267 */
	IMAP_RET_CONTEXT = 64, /* a hint, accepted */
	IMAP_RET_PARTIAL = 128,
};
/* PARTIAL's range (RFC 9394, imap_partial.c): a and b as the client wrote
 * them, without their minus signs; last: counted from the end. */
struct imap_partial {
	uint32_t a, b;
	bool last;
};
/* Parse "a:b" or "-a:-b" (nz-numbers below 2^32, one sign for both). 0, or
 * -1 when s is not a range. */
int imap_partial_parse(const char *s, struct imap_partial *p_r);
/* The window of p on a result of n: indexes [*from_r, *to_r), empty
 * (from == to) past the end. */
void imap_partial_slice(const struct imap_partial *p, size_t n, size_t *from_r, size_t *to_r);
/* Append " PARTIAL (range set)" to b: the range as the client wrote it,
 * then the numbers of nums[0..n) inside the window as a sequence set in
 * their order (runs ascending by one as "4:6"), or NIL. */
void imap_partial_format(struct buf *b, const struct imap_partial *p, const uint32_t *nums,
                         size_t n);

/* Parse the RETURN option list into IMAP_RET_* bits (an empty list means
 * ALL) and PARTIAL's range into partial_r. < 0 with BAD sent: an unknown
 * option, PARTIAL without a range or twice, PARTIAL with ALL (RFC 9394
 * 3.1). */
int imap_search_return(struct imap_cmd *cmd, const struct imap_arg *list, unsigned *ret_r,
                       struct imap_partial *partial_r);
/* RETURN (SAVE): keep the hits idx[0..n) (view indexes in result order;
 * MIN/MAX are the first and last) as "$", as RFC 5182 says for ret. */
void imap_search_save(struct imap_view *v, unsigned ret, const struct imap_partial *partial,
                      const uint32_t *idx, size_t n);

/* "$" (imap_searchres.c). */
void searchres_save(struct imap_view *v, const uint32_t *uids, size_t n);
void searchres_clear(struct imap_view *v);
bool searchres_contains(const struct imap_view *v, uint32_t uid);
/* The view indexes of "$", ascending, in the command's arena. */
int searchres_resolve(struct imap_cmd *cmd, uint32_t **idx_r, size_t *n_r);
imap_cmd_fn cmd_idle;

/* ------------------------------------------------------------------ */
/* FETCH items (imap_fetch_items.c, used by imap_fetch.c)              */

enum fetch_kind {
	F_FLAGS,
	F_UID,
	F_INTERNALDATE,
	F_SIZE,
	F_ENVELOPE,
	F_BODY,
	F_BODYSTRUCTURE,
	F_MODSEQ,
	F_EMAILID,     /* OBJECTID (RFC 8474) */
	F_SAVEDATE,    /* RFC 8514 */
	F_THREADID,    /* reads the header (imap_objectid.c) */
	F_PREVIEW,     /* RFC 8970, from the parse cache */
	F_SECTION,     /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
	F_BINARY,      /* BINARY[part]<partial>, BINARY.PEEK[...] (RFC 3516): path, partial */
	F_BINARY_SIZE, /* BINARY.SIZE[part]: path */
};

enum sec_kind { SEC_ALL, SEC_HEADER, SEC_FIELDS, SEC_FIELDS_NOT, SEC_TEXT, SEC_MIME };

struct fetch_item {
	enum fetch_kind kind;
	/* F_SECTION */
	enum sec_kind sec;
	uint32_t path[32];
	size_t depth;
	const char **fields;
	size_t n_fields;
	bool partial;
	uint64_t p_off, p_len;
	bool peek;
	const char *resp; /* name echoed in the response, e.g. "BODY[HEADER]" */
};

struct fetch_req {
	struct fetch_item *items;
	size_t n;
	bool need_cache;   /* envelope/body/bodystructure */
	bool need_vsize;   /* RFC822.SIZE: octets BODY[] sends */
	bool need_preview; /* PREVIEW: a cache record with the preview */
	bool need_data;    /* message bytes */
	bool need_parse;   /* parsed sections */
	bool sets_seen;
	bool binary_seen;  /* BINARY[] sets \Seen: per message, once it is decodable */
	bool need_binsize; /* BINARY: decoded sizes kept in the cache record */
	bool has_flags, has_uid, has_modseq;
	uint64_t changedsince; /* CHANGEDSINCE (0 = none) */
};

/* Parse FETCH's item argument (an atom, a macro or a list) into req. 0 or
 * ROOST_EINVAL. */
int imap_fetch_parse_items(struct imap_cmd *cmd, const struct imap_arg *a, struct fetch_req *req);
/* RFC 7162 mod-sequence-value: 1..2^63-1 (zero_ok: 0 allowed too). 0 or
 * ROOST_EINVAL. */
int imap_parse_modseq(const struct imap_arg *a, bool zero_ok, uint64_t *v_r);

/* Sessions of user from ip (imap_login.c): false when max (0: no limit)
 * are open already; else counted until imap_ucount_release(). The lock
 * inside is taken only here, never while holding anything else. */
bool imap_ucount_take(const char *user, const char *ip, unsigned max);
void imap_ucount_release(const char *user, const char *ip);
/* STATUS items (imap_mailbox.c), also for LIST-STATUS: parse the list into
 * item bits (0 or ROOST_EINVAL); write "* STATUS name (...)" (0 or a
 * storage error, nothing written). */
int imap_status_parse_items(const struct imap_arg *l, unsigned *items_r);
int imap_status_write(struct imap_session *s, const char *name, unsigned items);

void imap_sasl_continue(struct imap_session *s, const uint8_t *line, size_t len);
void imap_idle_line(struct imap_session *s, const uint8_t *line, size_t len);
void imap_idle_wake(struct imap_session *s, bool timer);
/* [loop] imap_idle_wake(s, false) when it can run on the loop (see
 * view_sync_nb()): true when it did, false when it did nothing. */
bool imap_idle_wake_nb(struct imap_session *s);
void imap_idle_stop(struct imap_session *s);

/* ------------------------------------------------------------------ */
/* The view (imap_sync.c)                                             */

int view_open(struct imap_session *s, const char *name, bool readonly);
/* Untagged FLAGS and PERMANENTFLAGS for the open view (SELECT, new keywords). */
void view_announce_flags(struct imap_session *s);
void view_close(struct imap_session *s);
/*
 * Catch up with storage and announce: new messages (EXISTS, RECENT), flag
 * changes (FETCH FLAGS), expunges (EXPUNGE, only when allow_expunge; else
 * they stay in the view marked expunged until a command that may). With
 * quiet_uids, FETCH for those UIDs is left to the caller (STORE).
 */
void view_sync(struct imap_session *s, bool allow_expunge);
/* [loop] view_sync() when it needs no wait and little work (storage
 * answers from memory: mailbox_changes_since_nb(); no search context to
 * update): true when it synced, false when it did nothing (call
 * view_sync() on a worker). */
bool view_sync_nb(struct imap_session *s, bool allow_expunge);
/* The \Recent claim view_sync() left for later (in IDLE, where a claim is
 * a round trip): claim, then RECENT. Every command and wake-up makes it
 * first, so no flag is seen before it. */
void view_claim_due(struct imap_session *s);
/* Flags of msg as "(\Seen $Label)" appended to out. */
void view_format_flags(const struct imap_view *v, const struct view_msg *m, struct buf *out);
/* Sequence number (1-based) of uid or 0. */
uint32_t view_seq_of_uid(const struct imap_view *v, uint32_t uid);
/* Resolve a set argument into sequence indexes (0-based, ascending) of the
 * view. uid: the set holds UIDs. */
int view_resolve_set(struct imap_cmd *cmd, const char *text, bool uid, uint32_t **idx_r,
                     size_t *n_r);
/* Parse flag list args into flags + keyword names (arena). */
int imap_parse_flags(struct imap_cmd *cmd, const struct imap_arg *a, size_t n, uint32_t *flags_r,
                     const char ***kw_r, size_t *n_kw_r);
/*
 * QRESYNC: "* VANISHED (EARLIER) uids" for the UIDs in known (resolved;
 * NULL = every UID below UIDNEXT) expunged after modseq, per the expunge
 * log or, when it does not reach back, every known UID not in the view.
 */
void view_vanished_earlier(struct imap_session *s, uint64_t modseq, const struct seqset *known);
/* Update the view's keyword table (and announce FLAGS when it grew). */
void view_refresh_keywords(struct imap_session *s, bool announce);

/* ---- imap_objectid.c: OBJECTID (RFC 8474) ---- */

/* The THREADID of a message: of the root its header names (data[0..len),
 * the raw message), else its EMAILID. data may be NULL (no header). */
uint64_t imap_threadid(const struct msg_record *rec, const uint8_t *data, size_t len);
/* "EMAILID (M...)" or "THREADID (T...)" (kind F_EMAILID or F_THREADID)
 * into out; data[0..len) the message (THREADID only, may be NULL). */
void imap_objectid_fetch(enum fetch_kind kind, const struct msg_record *rec, const uint8_t *data,
                         size_t len, struct buf *out);
/* An objectid argument for SEARCH: ROOST_EINVAL when not an objectid
 * (RFC 8474 7), else 0 with *v_r the value of one spelt letter + 16 hex
 * digits, or 0 (no message has it) for any other. */
int imap_objectid_parse(const char *s, char letter, uint64_t *v_r);
/* Answer a CREATE of name that succeeded: OK [MAILBOXID (id)]. */
void imap_objectid_created(struct imap_cmd *cmd, const char *name);

/* ---- imap_preview.c: PREVIEW (RFC 8970) ---- */

/* pv[0..len) (UTF-8, no CR or LF) as a quoted string or a literal. */
void imap_preview_string(struct buf *out, const char *pv, size_t len);

/* ---- imap_notify.c, imap_notify_spec.c: NOTIFY (RFC 5465) ---- */

enum notify_event_bit {
	NEV_MESSAGE_NEW = 1 << 0,
	NEV_MESSAGE_EXPUNGE = 1 << 1,
	NEV_FLAG_CHANGE = 1 << 2,
	NEV_MAILBOX_NAME = 1 << 3,
	NEV_SUBSCRIPTION_CHANGE = 1 << 4,
	NEV_MAILBOX_METADATA = 1 << 5, /* METADATA (RFC 5464) makes these two required */
	NEV_SERVER_METADATA = 1 << 6,
};

enum notify_filter {
	NF_SELECTED,
	NF_SELECTED_DELAYED,
	NF_INBOXES,
	NF_PERSONAL,
	NF_SUBSCRIBED,
	NF_SUBTREE,
	NF_MAILBOXES,
};

/* MessageNew's fetch attributes: what a message's record holds. */
enum notify_fetch_bit {
	NF_FETCH_UID = 1 << 0,
	NF_FETCH_FLAGS = 1 << 1,
	NF_FETCH_DATE = 1 << 2, /* INTERNALDATE */
	NF_FETCH_MODSEQ = 1 << 3,
	NF_FETCH_EMAILID = 1 << 4,
};

#define NOTIFY_MAX_GROUPS 64 /* event groups in one NOTIFY SET */
/* Names a NOTIFY SET may carry, and mailboxes a session follows. */
#define NOTIFY_MAX_MAILBOXES 1000
/* Stores other than the user's own (other users', the shared namespace's)
 * whose changes one NOTIFY session follows: one storage watch each. */
#define NOTIFY_MAX_OWNERS 32

struct notify_group {
	enum notify_filter filter;
	unsigned events; /* NEV_*; 0 for NONE */
	char **names;    /* SUBTREE, MAILBOXES: storage names (heap) */
	size_t n_names;
};

struct notify_spec {
	bool none;        /* NOTIFY NONE */
	bool status;      /* SET STATUS */
	bool list_events; /* a group wants MailboxName/SubscriptionChange or is SUBSCRIBED */
	bool meta_events; /* a group wants MailboxMetadataChange or ServerMetadataChange */
	bool foreign;     /* a SUBTREE or MAILBOXES name is another user's or shared */
	unsigned fetch;   /* NF_FETCH_* for the selected group's MessageNew */
	struct notify_group *groups;
	size_t n_groups;
};

/*
 * Parse NOTIFY's arguments args[0..n) into spec (heap; the caller frees it
 * with imap_notify_spec_free() after a success). 0; ROOST_EINVAL (BAD,
 * *err_r the reason); ROOST_ENOTSUP with *err_r NULL for an event Roost
 * does not report (NO [BADEVENT]), or with *err_r set for a fetch
 * attribute it cannot give (NO); ROOST_ETOOBIG past NOTIFY_MAX_MAILBOXES
 * names (NO [NOTIFICATIONOVERFLOW]). Names are decoded as s spells them.
 */
int imap_notify_parse(const struct imap_session *s, const struct imap_arg *args, size_t n,
                      struct notify_spec *spec, const char **err_r);
void imap_notify_spec_free(struct notify_spec *spec);
/* The NEV_* events for a mailbox other than the selected one (attrs:
 * MBOX_* from storage_list(); foreign: name is in the other users' or the
 * shared namespace, which PERSONAL and INBOXES do not take). */
unsigned notify_events_for(const struct notify_spec *spec, const char *name, unsigned attrs,
                           bool foreign);
/* The SELECTED or SELECTED-DELAYED group, or NULL. */
const struct notify_group *notify_selected_group(const struct notify_spec *spec);
/* The BADEVENT list. */
const char *imap_notify_events_supported(void);
imap_cmd_fn cmd_notify;
/* [worker, no command running] Report what changed since the last call. */
void imap_notify_wake(struct imap_session *s);
/* NOTIFY NONE: drop the watch and the snapshot (logout, UNAUTHENTICATE). */
void imap_notify_stop(struct imap_session *s);
/* [worker, in a command] The session entered or left a selected mailbox:
 * watch (or stop watching) its store when it is another user's or shared. */
void imap_notify_selection_changed(struct imap_session *s);
/* Does NOTIFY ask for events of the selected mailbox? *delayed_r: through
 * SELECTED-DELAYED (expunges wait for a command that allows them). */
bool imap_notify_selected_events(const struct imap_session *s, bool *delayed_r);
/* After the EXISTS for view indexes [from, n): MessageNew's FETCH. */
void imap_notify_new_messages(struct imap_session *s, size_t from);

/* ---- imap_metadata.c: METADATA, METADATA-SERVER (RFC 5464) ---- */
void cmd_getmetadata(struct imap_cmd *cmd);
void cmd_setmetadata(struct imap_cmd *cmd);

#endif
