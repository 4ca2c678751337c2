/*
 * NOTIFY (RFC 5465): unsolicited reports of changes in any of the user's
 * mailboxes, between commands and during IDLE.
 *
 * A session with NOTIFY SET holds one user watch (storage_watch_user()),
 * not one watch per mailbox: its callback, on whatever thread storage
 * wakes it, records the name of the mailbox that changed in a small
 * queue and calls conn_wake(). The connection stays in its event loop
 * holding no worker and no thread; when no command runs, on_wake runs
 * imap_notify_wake() on a worker, which compares what storage says now
 * with the session's snapshot of the user's mailboxes and writes what the
 * client asked for: EXISTS/EXPUNGE/FETCH for the selected mailbox (the
 * view catches up as at NOOP), STATUS for the others, LIST for mailboxes
 * created, deleted, renamed (OLDNAME) or (un)subscribed, METADATA (entry
 * names) for annotations set through this process.
 *
 * Bounds: a NOTIFY session follows at most NOTIFY_MAX_MAILBOXES of the
 * user's mailboxes (a NOTIFY SET over more is refused with NO
 * [NOTIFICATIONOVERFLOW]; a user growing past it later gets the untagged
 * OK [NOTIFICATIONOVERFLOW] and NOTIFY NONE), the queue holds
 * NOTIFY_QUEUE names (past it the next wake-up rescans every followed
 * mailbox), and a client that leaves NOTIFY_OUTPUT_MAX bytes unread gets
 * OK [NOTIFICATIONOVERFLOW] instead of more output (RFC 5465 5.8).
 *
 * Other users' and the shared namespace's mailboxes ("Other Users/<owner>/
 * ...", "Shared/...") change under their owner's store, whoever changes
 * them (storage_acl.c): a session whose SUBTREE, MAILBOXES or SUBSCRIBED
 * filters take such mailboxes holds one more user watch per store they
 * live in (at most NOTIFY_MAX_OWNERS; past it NO [NOTIFICATIONOVERFLOW],
 * or the untagged OK and NOTIFY off when the set grows later), whose
 * callback names the changes as the session does. Its snapshot holds them
 * only while the user may see them (LIST's l), and a STATUS is written
 * only while the user holds l and r, read again before each one, so a
 * revoked right stops the reports at the next change.
 *
 * The command's grammar and the filters are in imap_notify_spec.c; the
 * watches on other stores in imap_notify_owner.c; the session state both
 * share in imap_notify_impl.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"
#include "imap_notify_impl.h"

/* ------------------------------------------------------------------ */
/* The snapshot                                                        */

static void
mbs_free(struct notify_mbox *mbs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(mbs[i].name);
	free(mbs);
}

static int
mbox_cmp(const void *a, const void *b)
{
	return strcmp(((const struct notify_mbox *)a)->name, ((const struct notify_mbox *)b)->name);
}

static struct notify_mbox *
mbs_find(struct notify_mbox *mbs, size_t n, const char *name)
{
	struct notify_mbox key = {.name = (char *)name};

	return n == 0 ? NULL : bsearch(&key, mbs, n, sizeof(*mbs), mbox_cmp);
}

static bool
exists(unsigned attrs)
{
	return (attrs & MBOX_NONEXISTENT) == 0;
}

static bool
has_filter(const struct notify_spec *spec, enum notify_filter f)
{
	for (size_t i = 0; i < spec->n_groups; i++) {
		if (spec->groups[i].filter == f)
			return true;
	}
	return false;
}

/*
 * The user's mailboxes now, sorted, their events set; with the other
 * users' and shared mailboxes the user may see (l) that a filter takes,
 * when a SUBTREE or MAILBOXES name points there or a SUBSCRIBED filter
 * meets a subscription to one (else that listing, which reads every
 * sharing owner's list, is not taken). ROOST_ETOOBIG past
 * NOTIFY_MAX_MAILBOXES.
 */
static int
list_now(struct imap_session *s, const struct notify_spec *spec, struct notify_mbox **mbs_r,
         size_t *n_r)
{
	struct mailbox_info *list = NULL;
	struct notify_mbox *mbs;
	size_t n = 0, n_kept = 0;
	bool shared = spec->foreign;
	int rc = storage_list(s->sv->storage, s->user, &list, &n);

	if (rc < 0)
		return rc;
	if (n > NOTIFY_MAX_MAILBOXES) {
		storage_list_free(list, n);
		return ROOST_ETOOBIG;
	}
	for (size_t i = 0; i < n && !shared; i++)
		shared = (list[i].attrs & MBOX_SUBSCRIBED) != 0 &&
		         storage_acl_name_foreign(s->sv->storage, list[i].name) &&
		         has_filter(spec, NF_SUBSCRIBED);
	if (shared)
		imap_list_add_shared(s, &list, &n);
	mbs = xcalloc(n ? n : 1, sizeof(*mbs));
	for (size_t i = 0, k; i < n; i++) {
		bool foreign = storage_acl_name_foreign(s->sv->storage, list[i].name);
		unsigned ev = notify_events_for(spec, list[i].name, list[i].attrs, foreign);

		/* Another store's mailbox no filter takes is none of ours. */
		if (foreign && ev == 0)
			continue;
		if (n_kept == NOTIFY_MAX_MAILBOXES) {
			storage_list_free(list, n);
			mbs_free(mbs, n_kept);
			return ROOST_ETOOBIG;
		}
		k = n_kept++;
		mbs[k].name = list[i].name;
		list[i].name = NULL;
		mbs[k].attrs = list[i].attrs;
		mbs[k].foreign = foreign;
		mbs[k].events = exists(list[i].attrs) && !(list[i].attrs & MBOX_NOSELECT) ? ev : 0;
	}
	storage_list_free(list, n);
	if (n_kept > 1)
		qsort(mbs, n_kept, sizeof(*mbs), mbox_cmp);
	*mbs_r = mbs;
	*n_r = n_kept;
	return 0;
}

static bool
is_selected(const struct imap_session *s, const char *name)
{
	return s->state == IMAP_STATE_SELECTED && s->view.name != NULL &&
	       strcmp(s->view.name, name) == 0;
}

static void
write_status(struct imap_session *s, const char *name, const struct notify_status *st)
{
	conn_write_str(s->c, "* STATUS ");
	imap_write_mbox(s, name);
	conn_printf(s->c, " (MESSAGES %u UIDNEXT %u UIDVALIDITY %u UNSEEN %u", st->messages,
	            st->uidnext, st->uidvalidity, st->unseen);
	if (s->condstore)
		conn_printf(s->c, " HIGHESTMODSEQ %llu", (unsigned long long)st->highestmodseq);
	conn_write_str(s->c, ")\r\n");
}

/* Did what m's events ask about change between a and b? */
static bool
status_differs(unsigned events, const struct notify_status *a, const struct notify_status *b)
{
	if (a->uidvalidity != b->uidvalidity)
		return true;
	if ((events & (NEV_MESSAGE_NEW | NEV_MESSAGE_EXPUNGE)) != 0 &&
	    (a->messages != b->messages || a->uidnext != b->uidnext))
		return true;
	if ((events & NEV_FLAG_CHANGE) != 0 &&
	    (a->unseen != b->unseen || a->highestmodseq != b->highestmodseq))
		return true;
	return false;
}

/* What to say of a mailbox new to the snapshot. */
enum announce {
	ANNOUNCE_NO,       /* NOTIFY SET without STATUS */
	ANNOUNCE_YES,      /* NOTIFY SET STATUS */
	ANNOUNCE_MESSAGES, /* created since: only when messages arrived already */
};

/* Look at m again: STATUS when what its events cover changed (or when it
 * is new to the snapshot, as announce says). */
static void
refresh_status(struct imap_session *s, struct notify_mbox *m, enum announce announce)
{
	struct mailbox_status full;
	struct notify_status st;
	const unsigned msg_ev = NEV_MESSAGE_NEW | NEV_MESSAGE_EXPUNGE | NEV_FLAG_CHANGE;

	if ((m->events & msg_ev) == 0)
		return;
	if (m->foreign) {
		/* Status needs r alone; a mailbox the user may no longer
		 * see (l) is not told of either. */
		const unsigned need = ACL_LOOKUP | ACL_READ;
		unsigned r = 0;

		if (storage_acl_myrights(s->sv->storage, s->user, m->name, &r) != 0 ||
		    (r & need) != need)
			return;
	}
	if (storage_status(s->sv->storage, s->user, m->name, &full) < 0)
		return; /* gone: the next listing says so */
	st = (struct notify_status){full.messages, full.uidnext, full.uidvalidity, full.unseen,
	                            full.highestmodseq};
	if (m->have_status
	        ? status_differs(m->events, &m->st, &st)
	        : announce == ANNOUNCE_YES || (announce == ANNOUNCE_MESSAGES && st.messages > 0)) {
		if (!is_selected(s, m->name))
			write_status(s, m->name, &st);
	}
	m->st = st;
	m->have_status = true;
}

/* ------------------------------------------------------------------ */
/* LIST for mailbox events                                             */

static void
write_list(struct imap_session *s, const char *name, unsigned attrs, const char *old)
{
	struct buf b = BUF_INIT(0);

	imap_format_mbox_attrs(attrs, &b);
	conn_write_str(s->c, "* LIST ");
	conn_write(s->c, b.data, b.len);
	conn_write_str(s->c, " \"/\" ");
	buf_free(&b);
	imap_write_mbox(s, name);
	if (old != NULL) {
		conn_write_str(s->c, " (\"OLDNAME\" (");
		imap_write_mbox(s, old);
		conn_write_str(s->c, "))");
	}
	conn_write_str(s->c, "\r\n");
}

/* Does a mailbox event on name (with either attrs) concern the client? */
static bool
wants(const struct imap_session *s, const struct notify_spec *spec, const char *name, unsigned a,
      unsigned b, unsigned ev)
{
	bool f = storage_acl_name_foreign(s->sv->storage, name);

	return ((notify_events_for(spec, name, a, f) | notify_events_for(spec, name, b, f)) & ev) !=
	       0;
}

/* The new name of old after the renames recorded in ch[0..n): "a/x" for
 * "b/x" when b became a. NULL when none moved it. */
static const char *
renamed_to(const struct notify_change *ch, size_t n, const char *old, struct buf *tmp)
{
	for (size_t i = 0; i < n; i++) {
		size_t len;

		if (ch[i].old == NULL || ch[i].name == NULL)
			continue;
		len = strlen(ch[i].old);
		if (strcmp(old, ch[i].old) == 0)
			return ch[i].name;
		if (strncmp(old, ch[i].old, len) == 0 && old[len] == '/') {
			buf_reset(tmp);
			buf_append_str(tmp, ch[i].name);
			buf_append_str(tmp, old + len);
			return buf_cstr(tmp);
		}
	}
	return NULL;
}

/*
 * Compare the listing now with the snapshot: LIST for each mailbox that
 * appeared, disappeared, was renamed or changed subscription, where the
 * client asked for it; carry the status snapshots over (along renames),
 * and replace the snapshot (mailboxes new to it have no status yet).
 */
static int
relist(struct imap_session *s, struct imap_notify *nt, const struct notify_change *ch, size_t n_ch)
{
	const struct notify_spec *spec = &nt->spec;
	struct notify_mbox *now = NULL;
	struct buf tmp = BUF_INIT(0);
	size_t n_now = 0;
	int rc = list_now(s, spec, &now, &n_now);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nt->n_mbs; i++)
		nt->mbs[i].seen = false;
	for (size_t i = 0; i < n_now; i++) {
		struct notify_mbox *m = &now[i];
		struct notify_mbox *was = mbs_find(nt->mbs, nt->n_mbs, m->name);

		if (was != NULL && exists(was->attrs) == exists(m->attrs)) {
			was->seen = true;
			m->st = was->st;
			m->have_status = was->have_status;
			if ((was->attrs & MBOX_SUBSCRIBED) != (m->attrs & MBOX_SUBSCRIBED) &&
			    wants(s, spec, m->name, was->attrs, m->attrs, NEV_SUBSCRIPTION_CHANGE))
				write_list(s, m->name, m->attrs, NULL);
			continue;
		}
		if (was != NULL)
			was->seen = true;
		if (!exists(m->attrs)) {
			/* Deleted, still subscribed. */
			if (wants(s, spec, m->name, m->attrs, m->attrs,
			          NEV_MAILBOX_NAME | NEV_SUBSCRIPTION_CHANGE))
				write_list(s, m->name, m->attrs, NULL);
			continue;
		}
		/* New here: created, or the new name of a rename. */
		const char *old = NULL;
		for (size_t k = 0; k < nt->n_mbs && old == NULL; k++) {
			const char *to;

			if (!exists(nt->mbs[k].attrs) ||
			    mbs_find(now, n_now, nt->mbs[k].name) != NULL)
				continue;
			to = renamed_to(ch, n_ch, nt->mbs[k].name, &tmp);
			if (to != NULL && strcmp(to, m->name) == 0) {
				old = nt->mbs[k].name;
				nt->mbs[k].seen = true;
				m->st = nt->mbs[k].st;
				m->have_status = nt->mbs[k].have_status;
			}
		}
		if (wants(s, spec, m->name, m->attrs, m->attrs, NEV_MAILBOX_NAME))
			write_list(s, m->name, m->attrs, old);
	}
	/* What is no longer listed at all was deleted (or renamed away by
	 * another process, which tells only the user). */
	for (size_t i = 0; i < nt->n_mbs; i++) {
		struct notify_mbox *m = &nt->mbs[i];

		if (!m->seen && exists(m->attrs) &&
		    wants(s, spec, m->name, m->attrs, m->attrs, NEV_MAILBOX_NAME))
			write_list(s, m->name, MBOX_NONEXISTENT, NULL);
	}
	buf_free(&tmp);
	mbs_free(nt->mbs, nt->n_mbs);
	nt->mbs = now;
	nt->n_mbs = n_now;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Session side                                                        */

static void
queue_clear(struct notify_change *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(q[i].name);
		free(q[i].old);
	}
}

/* Keep the entries of a metadata change (the lock held). Roost's own
 * entries (URLAUTH keys) are nobody's business. */
static void
queue_meta(struct imap_notify *nt, const struct storage_change *ch)
{
	const size_t internal = strlen(STORAGE_METADATA_INTERNAL);

	for (size_t i = 0; i < ch->n_entries; i++) {
		const char *e = ch->entries[i];

		/* Only what METADATA shows: not Roost's own entries (URLAUTH
		 * keys, the ACL). */
		if (strncasecmp(e, STORAGE_METADATA_INTERNAL, internal) == 0 ||
		    (strncasecmp(e, "/private/", 9) != 0 && strncasecmp(e, "/shared/", 8) != 0))
			continue;
		if (nt->meta.len + strlen(ch->mailbox) + strlen(e) + 2 > NOTIFY_META_MAX) {
			nt->meta_lost = true;
			return;
		}
		buf_append(&nt->meta, ch->mailbox, strlen(ch->mailbox) + 1);
		buf_append(&nt->meta, e, strlen(e) + 1);
	}
}

/* Any thread, under the registry's lock: remember and wake (chg names
 * mailboxes as the session does). */
void
notify_queue_change(struct imap_notify *nt, const struct storage_change *chg)
{
	const char *mailbox = chg->mailbox, *old_name = chg->old_name;

	pthread_mutex_lock(&nt->lock);
	if (chg->n_entries > 0) {
		if (!nt->spec.meta_events || mailbox == NULL) {
			pthread_mutex_unlock(&nt->lock);
			return;
		}
		queue_meta(nt, chg);
	} else if (mailbox == NULL || nt->n_q == NOTIFY_QUEUE) {
		nt->all_dirty = true;
	} else if (!nt->all_dirty || old_name != NULL) {
		bool dup = false;

		for (size_t i = 0; i < nt->n_q && !dup && old_name == NULL; i++)
			dup = nt->q[i].old == NULL && strcmp(nt->q[i].name, mailbox) == 0;
		if (!dup) {
			nt->q[nt->n_q].name = xstrdup(mailbox);
			nt->q[nt->n_q].old = old_name != NULL ? xstrdup(old_name) : NULL;
			nt->n_q++;
		}
	}
	pthread_mutex_unlock(&nt->lock);
	conn_wake(nt->c);
}

static void
watch_cb(void *arg, const struct storage_change *chg)
{
	notify_queue_change(arg, chg);
}

static void
notify_free(struct imap_session *s)
{
	struct imap_notify *nt = s->notify;

	if (nt == NULL)
		return;
	s->notify = NULL;
	/* No callback runs once these return: then nothing touches nt. */
	for (size_t i = 0; i < nt->n_owners; i++)
		notify_owner_free(&nt->owners[i]);
	free(nt->owners);
	if (nt->watch != NULL) {
		storage_unwatch(&nt->watch);
		conn_unref(nt->c);
	}
	queue_clear(nt->q, nt->n_q);
	buf_free(&nt->meta);
	pthread_mutex_destroy(&nt->lock);
	mbs_free(nt->mbs, nt->n_mbs);
	imap_notify_spec_free(&nt->spec);
	free(nt);
}

void
imap_notify_stop(struct imap_session *s)
{
	notify_free(s);
}

bool
imap_notify_selected_events(const struct imap_session *s, bool *delayed_r)
{
	const struct notify_group *g;

	if (s->notify == NULL || (g = notify_selected_group(&s->notify->spec)) == NULL ||
	    g->events == 0)
		return false;
	if (delayed_r != NULL)
		*delayed_r = g->filter == NF_SELECTED_DELAYED;
	return true;
}

void
notify_overflow(struct imap_session *s)
{
	conn_log(s->c, LOG_LEVEL_INFO, "event=notify_overflow pending=%zu",
	         conn_output_pending(s->c));
	notify_free(s);
	imap_untagged(s, "OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off");
}

/* Does the client want to hear of metadata changes of mailbox ("": the
 * server's)? */
static bool
wants_metadata(struct imap_session *s, const struct imap_notify *nt, const char *mailbox)
{
	const struct notify_mbox *m;

	if (mailbox[0] == '\0') {
		for (size_t i = 0; i < nt->spec.n_groups; i++) {
			if (nt->spec.groups[i].events & NEV_SERVER_METADATA)
				return true;
		}
		return false;
	}
	m = mbs_find(nt->mbs, nt->n_mbs, mailbox);
	if (storage_acl_name_foreign(s->sv->storage, mailbox)) {
		/* Only one the user sees (l) and reads (r, as GETMETADATA). */
		unsigned r = 0;

		if (m == NULL || (m->events & NEV_MAILBOX_METADATA) == 0 ||
		    storage_acl_myrights(s->sv->storage, s->user, mailbox, &r) != 0 ||
		    (r & (ACL_LOOKUP | ACL_READ)) != (ACL_LOOKUP | ACL_READ))
			return false;
		return true;
	}
	return (notify_events_for(&nt->spec, mailbox, m != NULL ? m->attrs : 0, false) &
	        NEV_MAILBOX_METADATA) != 0;
}

/* "* METADATA mailbox entry..." (RFC 5464 4.4, without values) for the
 * changes in meta, one response per run of one mailbox's entries. */
static void
report_metadata(struct imap_session *s, const struct imap_notify *nt, const struct buf *meta)
{
	const char *p = (const char *)meta->data, *end = p + meta->len, *open = NULL;

	while (p < end) {
		const char *mbox = p, *entry = p + strlen(p) + 1;

		p = entry + strlen(entry) + 1;
		/* another store's /private entries are its owner's */
		if (!wants_metadata(s, nt, mbox) ||
		    (strncasecmp(entry, "/private/", 9) == 0 &&
		     storage_acl_name_foreign(s->sv->storage, mbox)))
			continue;
		if (open == NULL || strcmp(open, mbox) != 0) {
			if (open != NULL)
				conn_write_str(s->c, "\r\n");
			conn_write_str(s->c, "* METADATA ");
			imap_write_mbox(s, mbox);
			open = mbox;
		}
		conn_write_str(s->c, " ");
		imap_write_string(s->c, entry, strlen(entry));
	}
	if (open != NULL)
		conn_write_str(s->c, "\r\n");
}

void
imap_notify_wake(struct imap_session *s)
{
	struct imap_notify *nt = s->notify;
	struct notify_change ch[NOTIFY_QUEUE];
	struct buf meta;
	size_t n_ch;
	bool all, meta_lost;
	bool delayed = false;

	if (nt == NULL)
		return;
	pthread_mutex_lock(&nt->lock);
	memcpy(ch, nt->q, nt->n_q * sizeof(ch[0]));
	n_ch = nt->n_q;
	all = nt->all_dirty;
	meta = nt->meta;
	meta_lost = nt->meta_lost;
	nt->n_q = 0;
	nt->all_dirty = false;
	buf_init(&nt->meta, 0);
	nt->meta_lost = false;
	pthread_mutex_unlock(&nt->lock);

	if (conn_output_pending(s->c) >= NOTIFY_OUTPUT_MAX || meta_lost) {
		queue_clear(ch, n_ch);
		buf_free(&meta);
		notify_overflow(s);
		return;
	}
	if (s->state == IMAP_STATE_SELECTED && imap_notify_selected_events(s, &delayed))
		view_sync(s, !delayed);

	/* A new, deleted, renamed or (un)subscribed mailbox shows only in a
	 * listing: take one when the client asked for such events or for
	 * the subscribed mailboxes, or when a change is not plainly one to
	 * the messages of a mailbox the snapshot has. */
	bool need_list = all || nt->spec.list_events;
	for (size_t i = 0; i < n_ch && !need_list; i++) {
		struct notify_mbox *m = mbs_find(nt->mbs, nt->n_mbs, ch[i].name);

		if (ch[i].old != NULL)
			need_list = true;
		else if (m != NULL)
			need_list = !exists(m->attrs);
		else /* another store's mailbox the snapshot lacks matters
		      * only when a name of the filters takes it */
			need_list = !storage_acl_name_foreign(s->sv->storage, ch[i].name) ||
			            notify_events_for(&nt->spec, ch[i].name, 0, true) != 0;
	}
	if (need_list) {
		int rc = relist(s, nt, ch, n_ch);

		if (rc == 0)
			rc = notify_owners_sync(s, nt);
		if (rc == ROOST_ETOOBIG) {
			queue_clear(ch, n_ch);
			notify_overflow(s);
			return;
		}
		if (rc < 0)
			conn_log(s->c, LOG_LEVEL_WARN, "event=notify_list_failed err=%s",
			         roost_strerror(rc));
	}
	for (size_t i = 0; i < nt->n_mbs; i++) {
		struct notify_mbox *m = &nt->mbs[i];
		bool look = all || !m->have_status;

		/* The selected mailbox speaks through its view; its snapshot
		 * is left as it was, and differs when it is unselected. */
		if (is_selected(s, m->name))
			continue;
		for (size_t k = 0; k < n_ch && !look; k++)
			look = strcmp(ch[k].name, m->name) == 0 || ch[k].old != NULL;
		if (look && exists(m->attrs))
			refresh_status(s, m, ANNOUNCE_MESSAGES);
	}
	queue_clear(ch, n_ch);
	report_metadata(s, nt, &meta);
	buf_free(&meta);
}

/*
 * MessageNew's fetch attributes for the messages the view just gained
 * (view indexes [from, v->n)), after their EXISTS (RFC 5465 5.2). Only
 * what the message's record holds: no message is read here.
 */
void
imap_notify_new_messages(struct imap_session *s, size_t from)
{
	struct imap_view *v = &s->view;
	unsigned f;
	bool delayed;
	struct buf b = BUF_INIT(0);

	if (!imap_notify_selected_events(s, &delayed) || (f = s->notify->spec.fetch) == 0)
		return;
	for (size_t i = from; i < v->n; i++) {
		const struct view_msg *m = &v->msgs[i];
		const char *sp = "";

		buf_reset(&b);
		buf_printf(&b, "* %zu FETCH (", i + 1);
		if (f & NF_FETCH_UID) {
			buf_printf(&b, "UID %u", m->rec.uid);
			sp = " ";
		}
		if (f & NF_FETCH_FLAGS) {
			buf_printf(&b, "%sFLAGS ", sp);
			view_format_flags(v, m, &b);
			sp = " ";
		}
		if (f & NF_FETCH_DATE) {
			char date[32];

			imap_format_datetime(m->rec.internal_date, date);
			buf_printf(&b, "%sINTERNALDATE \"%s\"", sp, date);
			sp = " ";
		}
		if (f & NF_FETCH_MODSEQ) {
			buf_printf(&b, "%sMODSEQ (%llu)", sp, (unsigned long long)m->rec.modseq);
			sp = " ";
		}
		if (f & NF_FETCH_EMAILID) {
			buf_append_str(&b, sp);
			imap_objectid_fetch(F_EMAILID, &m->rec, NULL, 0, &b);
		}
		buf_append_str(&b, ")\r\n");
		conn_write(s->c, b.data, b.len);
	}
	buf_free(&b);
}

void
cmd_notify(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_notify *nt;
	struct notify_spec spec;
	const char *err;
	int rc = imap_notify_parse(s, cmd->p.args, cmd->p.n, &spec, &err);

	if (rc == ROOST_ENOTSUP && err == NULL) {
		imap_tagged(cmd, "NO", "[BADEVENT (%s)] Unsupported event",
		            imap_notify_events_supported());
		return;
	}
	if (rc == ROOST_ETOOBIG) {
		imap_tagged(cmd, "NO", "[NOTIFICATIONOVERFLOW] At most %d mailboxes",
		            NOTIFY_MAX_MAILBOXES);
		return;
	}
	if (rc == ROOST_ENOTSUP) {
		imap_tagged(cmd, "NO", "[CANNOT] %s", err);
		return;
	}
	if (rc < 0) {
		imap_bad(cmd, "%s", err != NULL ? err : "Invalid NOTIFY");
		return;
	}
	notify_free(s);
	if (spec.none) {
		imap_notify_spec_free(&spec);
		imap_tagged(cmd, "OK", "NOTIFY completed");
		return;
	}
	nt = xcalloc(1, sizeof(*nt));
	nt->spec = spec;
	for (size_t i = 0; i < spec.n_groups; i++) {
		if (spec.groups[i].filter == NF_SUBSCRIBED ||
		    (spec.groups[i].events & (NEV_MAILBOX_NAME | NEV_SUBSCRIPTION_CHANGE)) != 0)
			nt->spec.list_events = true;
		if ((spec.groups[i].events & (NEV_MAILBOX_METADATA | NEV_SERVER_METADATA)) != 0)
			nt->spec.meta_events = true;
		for (size_t k = 0; k < spec.groups[i].n_names; k++) {
			if (storage_acl_name_foreign(s->sv->storage, spec.groups[i].names[k]))
				nt->spec.foreign = true;
		}
	}
	nt->c = s->c;
	pthread_mutex_init(&nt->lock, NULL);
	/* Watch first, then take the snapshot: a change in between wakes us
	 * (at worst for nothing). */
	rc = storage_watch_user(s->sv->storage, s->user, watch_cb, nt, &nt->watch);
	if (rc == 0) {
		conn_ref(s->c);
		rc = list_now(s, &nt->spec, &nt->mbs, &nt->n_mbs);
	}
	if (rc == 0)
		rc = notify_owners_sync(s, nt);
	s->notify = nt;
	if (rc == ROOST_ETOOBIG) {
		notify_free(s);
		imap_tagged(cmd, "NO",
		            "[NOTIFICATIONOVERFLOW] At most %d mailboxes in at most %d other "
		            "users' stores",
		            NOTIFY_MAX_MAILBOXES, NOTIFY_MAX_OWNERS);
		return;
	}
	if (rc < 0) {
		notify_free(s);
		imap_reply_error(cmd, rc, "Cannot watch the mailboxes");
		return;
	}
	for (size_t i = 0; i < nt->n_mbs; i++) {
		if (exists(nt->mbs[i].attrs))
			refresh_status(s, &nt->mbs[i],
			               nt->spec.status ? ANNOUNCE_YES : ANNOUNCE_NO);
	}
	/* An implicit NOOP (RFC 5465 3.1): the runner's catch-up before the
	 * tagged OK sends what the selected mailbox has pending. */
	imap_tagged(cmd, "OK", "NOTIFY completed");
}
