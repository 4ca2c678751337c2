/*
 * NOTIFY on other users' and the shared namespace's mailboxes: the extra
 * user watches a session holds on the stores its filters reach (at most
 * NOTIFY_MAX_OWNERS), and the store of a selected mailbox of another
 * owner while SELECTED asks for its events. Each watch's callback names
 * the store's changes as the session does ("Other Users/<owner>/x",
 * "Shared/x") and queues them like the user's own (imap_notify.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"
#include "imap_notify_impl.h"

static bool
store_inbox(const char *name)
{
	return strncmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/');
}

/* Another store's change, named as the session names it. Its server
 * metadata ("") is not the user's; the public store's INBOX is nobody's. */
static void
owner_cb(void *arg, const struct storage_change *chg)
{
	struct notify_owner *o = arg;
	struct storage_change m = *chg;
	struct buf name = BUF_INIT(0), old = BUF_INIT(0);

	if (chg->mailbox != NULL) {
		if (chg->mailbox[0] == '\0' ||
		    (strcmp(o->owner, STORAGE_ACL_PUBLIC_OWNER) == 0 && store_inbox(chg->mailbox)))
			return;
		buf_printf(&name, "%s/%s", o->prefix, chg->mailbox);
		m.mailbox = buf_cstr(&name);
	}
	if (chg->old_name != NULL) {
		buf_printf(&old, "%s/%s", o->prefix, chg->old_name);
		m.old_name = buf_cstr(&old);
	}
	notify_queue_change(o->nt, &m);
	buf_free(&name);
	buf_free(&old);
}

void
notify_owner_free(struct notify_owner **op)
{
	struct notify_owner *o = *op;

	*op = NULL;
	storage_unwatch(&o->watch);
	free(o->owner);
	free(o->prefix);
	free(o);
}

/* Add owner to the stores to watch, once; never the user's own (a name
 * "Other Users/<user>/..." is the user's own mailbox, which the user
 * watch hears already). */
static void
owner_want(const struct imap_session *s, char ***v, size_t *n, const char *owner)
{
	if (strcmp(owner, s->user) == 0)
		return;
	for (size_t i = 0; i < *n; i++) {
		if (strcmp((*v)[i], owner) == 0)
			return;
	}
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(owner);
}

/*
 * Watch the stores the session must hear, and only those: the stores of
 * the other users' and shared mailboxes of the snapshot that have events,
 * and those a SUBTREE or MAILBOXES name points into (a mailbox made there
 * later). ROOST_ETOOBIG past NOTIFY_MAX_OWNERS (nothing is changed then).
 */
int
notify_owners_sync(struct imap_session *s, struct imap_notify *nt)
{
	struct storage *st = s->sv->storage;
	char owner[256];
	char **want = NULL;
	size_t n_want = 0, pl;
	int rc = 0;

	for (size_t g = 0; g < nt->spec.n_groups; g++) {
		const struct notify_group *gr = &nt->spec.groups[g];

		for (size_t k = 0; k < gr->n_names; k++) {
			if (storage_acl_store_of(st, gr->names[k], owner, sizeof(owner), &pl) == 0)
				owner_want(s, &want, &n_want, owner);
		}
	}
	for (size_t i = 0; i < nt->n_mbs; i++) {
		if (nt->mbs[i].foreign && nt->mbs[i].events != 0 &&
		    storage_acl_store_of(st, nt->mbs[i].name, owner, sizeof(owner), &pl) == 0)
			owner_want(s, &want, &n_want, owner);
	}
	/* The selected mailbox's store when SELECTED asks for its events:
	 * between commands its changes reach the view only through a watch
	 * (IDLE adds one of its own). */
	const struct notify_group *sel = notify_selected_group(&nt->spec);
	if (sel != NULL && sel->events != 0 && s->state == IMAP_STATE_SELECTED &&
	    s->view.name != NULL &&
	    storage_acl_store_of(st, s->view.name, owner, sizeof(owner), &pl) == 0)
		owner_want(s, &want, &n_want, owner);
	if (n_want > NOTIFY_MAX_OWNERS) {
		rc = ROOST_ETOOBIG;
		goto out;
	}
	for (size_t i = 0; i < nt->n_owners;) {
		bool keep = false;

		for (size_t k = 0; k < n_want && !keep; k++)
			keep = strcmp(want[k], nt->owners[i]->owner) == 0;
		if (keep) {
			i++;
			continue;
		}
		notify_owner_free(&nt->owners[i]);
		nt->owners[i] = nt->owners[--nt->n_owners];
	}
	for (size_t k = 0; k < n_want; k++) {
		struct notify_owner *o;
		struct buf prefix = BUF_INIT(0);
		bool have = false;
		int wrc;

		for (size_t i = 0; i < nt->n_owners && !have; i++)
			have = strcmp(want[k], nt->owners[i]->owner) == 0;
		if (have)
			continue;
		if (strcmp(want[k], STORAGE_ACL_PUBLIC_OWNER) == 0)
			buf_append_str(&prefix, storage_acl_shared_prefix(st));
		else
			buf_printf(&prefix, "%s/%s", STORAGE_ACL_PREFIX, want[k]);
		o = xcalloc(1, sizeof(*o));
		o->nt = nt;
		o->owner = xstrdup(want[k]);
		o->prefix = xstrdup(buf_cstr(&prefix));
		buf_free(&prefix);
		nt->owners = xreallocarray(nt->owners, nt->n_owners + 1, sizeof(*nt->owners));
		nt->owners[nt->n_owners++] = o;
		/* Watch first, then look (the caller's status reads follow): a
		 * change in between wakes us, at worst for nothing. */
		if ((wrc = storage_watch_user(st, o->owner, owner_cb, o, &o->watch)) != 0) {
			conn_log(s->c, LOG_LEVEL_WARN, "event=notify_watch_failed owner=%s err=%s",
			         LOG_QUOTE(o->owner), roost_strerror(wrc));
			notify_owner_free(&nt->owners[--nt->n_owners]);
		}
	}
out:
	for (size_t k = 0; k < n_want; k++)
		free(want[k]);
	free(want);
	return rc;
}

void
imap_notify_selection_changed(struct imap_session *s)
{
	int rc;

	if (s->notify == NULL)
		return;
	rc = notify_owners_sync(s, s->notify);
	if (rc == ROOST_ETOOBIG)
		notify_overflow(s);
	else if (rc < 0)
		conn_log(s->c, LOG_LEVEL_WARN, "event=notify_watch_failed err=%s",
		         roost_strerror(rc));
}
