/*
 * NOTIFY's session state, shared by imap_notify.c (the snapshot, the
 * queue, the reports) and imap_notify_owner.c (the watches on other
 * users' and the shared namespace's stores). Private to those files.
 */
#ifndef ROOST_IMAP_NOTIFY_IMPL_H
#define ROOST_IMAP_NOTIFY_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/storage.h"

#include "imap_impl.h"

/* Changed mailboxes remembered between two wake-ups. */
#define NOTIFY_QUEUE 64
/* Unread output past which notifications stop (NOTIFICATIONOVERFLOW). */
#define NOTIFY_OUTPUT_MAX (256 * 1024)
/* Bytes of metadata entry names held between two wake-ups; past it,
 * NOTIFICATIONOVERFLOW (which entries changed cannot be found again). */
#define NOTIFY_META_MAX (16 * 1024)

/* The part of a mailbox's status that NOTIFY reports. */
struct notify_status {
	uint32_t messages, uidnext, uidvalidity, unseen;
	uint64_t highestmodseq;
};

/* What the session last told (or would have told) of one mailbox: about
 * 80 bytes with its name. */
struct notify_mbox {
	char *name;
	unsigned attrs;   /* MBOX_* from storage_list() */
	unsigned events;  /* NEV_* of the groups that name it (not the selected) */
	bool have_status; /* st below is known */
	bool seen;        /* scratch: still listed */
	bool foreign;     /* another user's or shared: rights checked per STATUS */
	struct notify_status st;
};

struct notify_change {
	char *name; /* NULL: unknown, look at everything */
	char *old;  /* a rename's old name, else NULL */
};

/* A watch on a store other than the user's; its callback names the
 * store's mailboxes prefix + "/" + name, as the session does. */
struct notify_owner {
	struct imap_notify *nt;
	char *owner;  /* a user, or STORAGE_ACL_PUBLIC_OWNER */
	char *prefix; /* "Other Users/<owner>" or "Shared" */
	struct storage_watch *watch;
};

struct imap_notify {
	struct notify_spec spec;
	struct conn *c;
	struct storage_watch *watch;

	/*
	 * Lock rule: lock protects q, n_q, all_dirty, meta and meta_lost. The
	 * watch callback
	 * takes it (holding the registry's lock), the session's worker takes
	 * it to swap the queue out; nothing else is taken while it is held.
	 */
	pthread_mutex_t lock;
	struct notify_change q[NOTIFY_QUEUE];
	size_t n_q;
	bool all_dirty;
	struct buf meta; /* "mailbox\0entry\0" pairs of metadata changes */
	bool meta_lost;  /* more than NOTIFY_META_MAX of them */

	/* The session's thread only: the user's mailboxes, sorted by name;
	 * the other stores watched. */
	struct notify_mbox *mbs;
	size_t n_mbs;
	struct notify_owner **owners;
	size_t n_owners;
};

/* Any thread, under the registry's lock: remember the change (chg names
 * mailboxes as the session does) and wake the connection. */
void notify_queue_change(struct imap_notify *nt, const struct storage_change *chg);
/* Too much to tell: NOTIFY off, the untagged OK [NOTIFICATIONOVERFLOW]. */
void notify_overflow(struct imap_session *s);

/* ---- imap_notify_owner.c ---- */

/* Watch the stores the session must hear, and only those. 0;
 * ROOST_ETOOBIG past NOTIFY_MAX_OWNERS (nothing is changed then). */
int notify_owners_sync(struct imap_session *s, struct imap_notify *nt);
/* Stop *op's watch (no callback runs after) and free it. */
void notify_owner_free(struct notify_owner **op);

#endif
