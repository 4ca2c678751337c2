#ifndef ROOST_QUEUE_H
#define ROOST_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/heap.h"

/*
 * The outbound queue under <data_dir>/queue (services/queue.c; its head
 * comment gives the on-disk format and the crash argument).
 *
 * Threads: queue_submit() and queue_commit() may be called from any worker
 * at once; committed entries reach the delivery engine through
 * queue_take_new(), and from then on an entry belongs to the engine's
 * thread alone (it changes, writes and removes it without a lock). The
 * file-level functions (queue_load, queue_scan, queue_check, ...) touch only
 * files and are safe anywhere; they are what the `roost queue` and
 * `roost check` commands use when no server runs.
 */
struct roost_config;
struct queue;

#define QUEUE_ID_LEN 32

enum queue_rcpt_state {
	QUEUE_RCPT_PENDING, /* not delivered yet */
	QUEUE_RCPT_SENT,    /* a remote 250: done */
	QUEUE_RCPT_FAILED,  /* permanent failure (or lifetime over): bounced */
};

struct queue_rcpt {
	char *addr;
	char *notify; /* DSN NOTIFY ("" = default: FAILURE,DELAY) */
	char *orcpt;  /* DSN ORCPT as given ("" when absent) */
	enum queue_rcpt_state state;
	int code;     /* last reply code, 0 before any attempt */
	char *status; /* last reply ("5.1.1 No such user") or our reason */
	char *remote; /* the host that gave it ("" when none) */
};

struct queue_entry {
	char id[QUEUE_ID_LEN];
	char *sender; /* envelope sender, "" for the null sender */
	char *user;   /* authenticated submitter, "" when none */
	char *envid;  /* DSN ENVID xtext, "" when absent */
	char ret[5];  /* "", "FULL" or "HDRS" */
	bool smtputf8, body_8bit;
	bool binarymime;   /* BODY=BINARYMIME (RFC 3030) */
	bool requiretls;   /* MAIL ... REQUIRETLS (RFC 8689) */
	bool tls_optional; /* "TLS-Required: No" and no REQUIRETLS (RFC 8689 4.2.2):
	                    * queue_submit() reads the header for it */
	int64_t created;   /* time queued (seconds since the epoch) */
	int64_t next_try;  /* not before this time */
	unsigned attempts;
	bool held;     /* `roost queue hold`: not delivered until released */
	bool warned;   /* the delay warning went out */
	uint64_t size; /* bytes of the .msg file */
	size_t n_rcpts;
	struct queue_rcpt *rcpts;

	/* Engine-owned run-time state, never written to disk. */
	unsigned busy; /* sessions working on some of its recipients */
	bool dead;     /* deleted while busy: drop when idle */
	/* In the engine's time index while idle (outbound_impl.h). */
	struct heap_node due;
	struct queue_entry *next, *prev;
};

/* What a worker queues. */
struct queue_rcpt_in {
	const char *addr;
	const char *notify; /* NULL or "" when absent */
	const char *orcpt;
};

struct queue_submission {
	const char *id; /* preferred id (the SMTP session's), or NULL */
	const char *sender;
	const char *user; /* NULL when not authenticated */
	const char *envid, *ret;
	bool smtputf8, body_8bit;
	bool binarymime, requiretls;
	const struct queue_rcpt_in *rcpts;
	size_t n_rcpts;
	/* The message: prefix (headers added here: DKIM-Signature, Received)
	 * followed by data[0..len) in memory, or, when fd >= 0, bytes
	 * [offset, offset + len) of fd (read with pread; fd stays the caller's). */
	const uint8_t *prefix;
	size_t prefix_len;
	const uint8_t *data;
	size_t len;
	int fd;
	uint64_t offset;
};

/*
 * Open (creating the directories) the queue of cfg. With recover, finish
 * what a crash left: remove tmp/ and messages without an envelope, and load
 * every entry for the engine (they come out of queue_take_new()).
 * ROOST_EIO (logged) when the directory cannot be used.
 */
int queue_open(const struct roost_config *cfg, bool recover, struct queue **q_r);
void queue_close(struct queue **q);
const char *queue_dir(const struct queue *q);

/*
 * Write the message and its envelope to stable storage (both files and the
 * directory fsynced). On return the entry survives any crash, but the
 * engine does not see it until queue_commit(id, true); queue_commit(id,
 * false) removes it again (the SMTP transaction failed elsewhere). The id
 * is written to id_r. ROOST_EIO / ROOST_ETEMP on failure (nothing is left).
 */
int queue_submit(struct queue *q, const struct queue_submission *sub, char id_r[QUEUE_ID_LEN]);
void queue_commit(struct queue *q, const char *id, bool keep);

/* Wake-up for the engine: fn(arg) runs after each commit (any thread). */
void queue_set_notify(struct queue *q, void (*fn)(void *arg), void *arg);
/* Engine: take the committed entries not yet taken (a list via ->next). */
struct queue_entry *queue_take_new(struct queue *q);

/* Engine: rewrite e's envelope atomically (tmp, fsync, rename, fsync dir). */
int queue_entry_save(struct queue *q, const struct queue_entry *e);
/* Engine: remove e's files (envelope first, then the message). */
void queue_entry_remove(struct queue *q, const struct queue_entry *e);
/* Engine: remove the entries ids[0..n) with one directory sync for all
 * (group commit of finished entries). */
void queue_remove_batch(struct queue *q, char (*ids)[QUEUE_ID_LEN], size_t n);
/* The path of e's message file into buf (size PATH_MAX). */
void queue_msg_path(const struct queue *q, const char *id, char *buf, size_t size);

void queue_entry_free(struct queue_entry **e);
/* Number of recipients still pending. */
size_t queue_entry_pending(const struct queue_entry *e);

/* ---- files only (CLI, check) ---- */

/* The queue directory of cfg into buf. */
void queue_dir_of(const struct roost_config *cfg, char *buf, size_t size);
/* Load one entry by id from dir. ROOST_ENOTFOUND, ROOST_EINVAL (corrupt). */
int queue_load(const char *dir, const char *id, struct queue_entry **e_r);
/* Every entry of dir, sorted by creation time; *n_r entries, caller frees
 * each with queue_entry_free() and the array with free(). */
int queue_scan(const char *dir, struct queue_entry ***v_r, size_t *n_r);
/* Save/remove by directory (CLI without a server). */
int queue_save_in(const char *dir, bool sync, const struct queue_entry *e);
void queue_remove_in(const char *dir, bool sync, const char *id);
/* Verify the queue: every envelope parses, has its message of the recorded
 * size, no message without envelope. Problems appended to report (one a
 * line). 0 when consistent, ROOST_EINVAL otherwise. */
int queue_check(const char *dir, struct buf *report);

/* Is id a queue id (safe as a file name)? */
bool queue_id_valid(const char *id);

#endif
