/*
 * The storage wrapper: the backend registry, and the API the protocols call,
 * each function checking its input before any backend runs (names:
 * storage_name.c; the watchers: storage_watch.c; delivery:
 * storage_deliver.c; an open mailbox's operations: storage_mailbox.c),
 * setting up new users with their default folders and waking the watchers
 * after a change.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"

static const struct storage_ops *
backend_find(const char *name)
{
	const struct storage_ops *all[] = {&storage_lmdb_ops, &storage_maildir_ops,
	                                   &storage_pgsql_ops};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i] != NULL && all[i]->name != NULL && strcmp(all[i]->name, name) == 0)
			return all[i];
	}
	return NULL;
}

/* Every slot is required: a backend that cannot do something returns
 * ROOST_ENOTSUP from its op instead of leaving it NULL. */
static bool
backend_complete(const struct storage_ops *o)
{
	return o->open != NULL && o->close != NULL && o->user_init != NULL && o->list != NULL &&
	       o->create != NULL && o->delete != NULL && o->rename != NULL &&
	       o->subscribe != NULL && o->status != NULL && o->set_uids != NULL &&
	       o->deliver != NULL && o->mailbox_open != NULL && o->mailbox_close != NULL &&
	       o->mailbox_status != NULL && o->records != NULL && o->keywords != NULL &&
	       o->claim_recent != NULL && o->read != NULL && o->cache_get != NULL &&
	       o->cache_set != NULL && o->append != NULL && o->store != NULL &&
	       o->expunge != NULL && o->copy != NULL && o->changes_since != NULL &&
	       o->check != NULL && o->repair != NULL && o->backup != NULL && o->quota_get != NULL &&
	       o->quota_recalc != NULL && (o->lock_user == NULL) == (o->unlock_user == NULL);
}

bool
storage_backend_available(const char *name)
{
	return name != NULL && backend_find(name) != NULL;
}

int
storage_open(const struct roost_config *cfg, struct storage **st_r)
{
	const char *name =
	    cfg != NULL && cfg->storage_backend != NULL ? cfg->storage_backend : "lmdb";
	const struct storage_ops *ops = backend_find(name);
	struct storage *st = NULL;
	int rc;

	*st_r = NULL;
	if (ops == NULL) {
		log_error("event=storage_error op=open backend=%s error=\"unknown backend\"",
		          LOG_QUOTE(name));
		return ROOST_ENOTSUP;
	}
	if (!backend_complete(ops))
		fatal("event=storage_error backend=%s error=\"lacks required operations\"",
		      ops->name);
	if ((rc = ops->open(cfg, &st)) != 0)
		return rc;
	st->ops = ops;
	st->cfg = cfg;
	st->watches = storage_watch_registry_new(cfg);
	*st_r = st;
	return 0;
}

void
storage_close(struct storage **stp)
{
	struct storage *st = *stp;
	struct watch_registry *reg;

	if (st == NULL)
		return;
	*stp = NULL;
	reg = st->watches;
	st->watches = NULL;
	st->ops->close(st);
	storage_watch_registry_free(&reg);
}

const char *
storage_backend_name(const struct storage *st)
{
	return st->ops->name;
}

bool
storage_reads_nb(const struct storage *st)
{
	return st->ops->reads_nb;
}

static const struct {
	const char *name;
	unsigned special_use;
} default_folders[] = {
    {"Drafts", MBOX_DRAFTS}, {"Sent", MBOX_SENT},       {"Trash", MBOX_TRASH},
    {"Junk", MBOX_JUNK},     {"Archive", MBOX_ARCHIVE},
};

/*
 * A user whose INBOX exists is initialised: folders the user deleted later
 * are not created again. Concurrent first logins both create; EEXISTS from
 * the loser is success.
 */
int
storage_user_init(struct storage *st, const char *user)
{
	struct mailbox_status status;
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	rc = st->ops->status(st, user, "INBOX", &status);
	if (rc == 0)
		return 0;
	if (rc != ROOST_ENOTFOUND)
		return rc;
	if ((rc = st->ops->user_init(st, user)) != 0 && rc != ROOST_EEXISTS)
		return rc;
	for (size_t i = 0; i < sizeof(default_folders) / sizeof(default_folders[0]); i++) {
		rc = st->ops->create(st, user, default_folders[i].name,
		                     default_folders[i].special_use);
		if (rc != 0 && rc != ROOST_EEXISTS)
			return rc;
		if (rc == 0)
			(void)st->ops->subscribe(st, user, default_folders[i].name, true);
	}
	(void)st->ops->subscribe(st, user, "INBOX", true);
	return 0;
}

/*
 * A user never seen before has no INBOX yet: set it up (the default
 * folders with it) the first time an operation on INBOX finds none. Every
 * lazy set-up goes through here. True when the user was set up and the
 * operation is worth one more try.
 */
bool
storage_user_set_up(struct storage *st, const char *user, const char *canon, int rc)
{
	return rc == ROOST_ENOTFOUND && storage_name_is_inbox(canon) &&
	       storage_user_init(st, user) == 0;
}

int
storage_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r)
{
	*list_r = NULL;
	*n_r = 0;
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	return st->ops->list(st, user, list_r, n_r);
}

void
storage_list_free(struct mailbox_info *list, size_t n)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].name);
	free(list);
}

/* The flags a user with rights may set or clear (storage_acl.c). */
uint32_t
storage_flags_allowed(unsigned rights)
{
	return ((rights & ACL_SEEN) != 0 ? MSG_SEEN : 0) |
	       ((rights & ACL_DELETED) != 0 ? MSG_DELETED : 0) |
	       ((rights & ACL_WRITE) != 0 ? MSG_ANSWERED | MSG_FLAGGED | MSG_DRAFT : 0);
}

int
storage_create(struct storage *st, const char *user, const char *name, unsigned special_use)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target t;
	int rc;

	if ((special_use & ~MBOX_SPECIAL_USE_MASK) != 0)
		return ROOST_EINVAL;
	if ((rc = storage_user_name_canon(user, name, canon)) != 0)
		return rc;
	/* the prefix and an owner alone are namespaces, never mailboxes */
	if ((rc = storage_acl_resolve_parent(st, user, canon, &t)) != 0)
		return rc == ROOST_ENOTFOUND ? ROOST_EPERM : rc;
	if (storage_name_is_inbox(t.name))
		return ROOST_EEXISTS;
	/* the public store is set up as a user is (its INBOX never shown),
	 * without the default folders */
	if (t.shared && (rc = st->ops->user_init(st, t.owner)) != 0 && rc != ROOST_EEXISTS)
		return rc;
	if ((rc = st->ops->create(st, t.owner, t.name, special_use)) != 0)
		return rc;
	if (t.foreign)
		storage_acl_inherit(st, t.owner, t.name);
	storage_notify(st, t.owner, t.name);
	return 0;
}

int
storage_delete(struct storage *st, const char *user, const char *name)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target t;
	int rc;

	if ((rc = storage_user_name_canon(user, name, canon)) != 0)
		return rc;
	if ((rc = storage_acl_resolve(st, user, canon, ACL_DELETE, &t)) != 0)
		return rc;
	if (storage_name_is_inbox(t.name))
		return ROOST_EPERM;
	if ((rc = st->ops->delete (st, t.owner, t.name)) == 0)
		storage_notify(st, t.owner, t.name);
	return rc;
}

/*
 * A rename moves the children along ("a/x" becomes "b/x"): each new name
 * must be valid too, which only the longer spelling of to can break. Checked
 * here so that no backend finds out half-way through.
 */
static int
children_renamable(struct storage *st, const char *user, const char *from, const char *to)
{
	struct mailbox_info *list = NULL;
	struct buf nn = BUF_INIT(0);
	size_t n = 0, flen = strlen(from);
	int rc;

	if (strlen(to) <= flen)
		return 0;
	if ((rc = st->ops->list(st, user, &list, &n)) != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *name = list[i].name;

		if ((list[i].attrs & MBOX_NONEXISTENT) != 0 || strncmp(name, from, flen) != 0 ||
		    name[flen] != '/')
			continue;
		buf_reset(&nn);
		buf_append_str(&nn, to);
		buf_append_str(&nn, name + flen);
		if (!storage_name_valid(buf_cstr(&nn)))
			rc = ROOST_EINVAL;
	}
	buf_free(&nn);
	storage_list_free(list, n);
	return rc;
}

int
storage_rename(struct storage *st, const char *user, const char *from, const char *to)
{
	char cfrom[STORAGE_MAX_NAME + 1], cto[STORAGE_MAX_NAME + 1];
	struct acl_target tf, tt;
	size_t flen;
	int rc;

	if ((rc = storage_user_name_canon(user, from, cfrom)) != 0 ||
	    (rc = storage_name_canon(to, cto)) != 0)
		return rc;
	if ((rc = storage_acl_resolve(st, user, cfrom, ACL_DELETE, &tf)) != 0)
		return rc;
	if ((rc = storage_acl_resolve_parent(st, user, cto, &tt)) != 0)
		return rc == ROOST_ENOTFOUND ? ROOST_EPERM : rc;
	/* a mailbox stays in its owner's store */
	if (strcmp(tf.owner, tt.owner) != 0)
		return ROOST_EPERM;
	user = tf.owner;
	memcpy(cfrom, tf.name, sizeof(cfrom));
	memcpy(cto, tt.name, sizeof(cto));
	if (strcmp(cfrom, cto) == 0 || storage_name_is_inbox(cto))
		return ROOST_EEXISTS;
	/* Into its own child: "a" -> "a/b". INBOX is exempt, its children
	 * stay where they are (only its messages move). */
	flen = strlen(cfrom);
	if (!storage_name_is_inbox(cfrom) && strncmp(cto, cfrom, flen) == 0 && cto[flen] == '/')
		return ROOST_EINVAL;
	if (!storage_name_is_inbox(cfrom) && (rc = children_renamable(st, user, cfrom, cto)) != 0)
		return rc;
	if ((rc = st->ops->rename(st, user, cfrom, cto)) == 0)
		storage_notify_rename(st, user, cfrom, cto);
	return rc;
}

int
storage_subscribe(struct storage *st, const char *user, const char *name, bool subscribe)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	if ((rc = storage_user_name_canon(user, name, canon)) != 0)
		return rc;
	if ((rc = st->ops->subscribe(st, user, canon, subscribe)) == 0)
		storage_notify(st, user, canon); /* NOTIFY's SubscriptionChange */
	return rc;
}

int
storage_status(struct storage *st, const char *user, const char *name,
               struct mailbox_status *status_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target t;
	int rc;

	memset(status_r, 0, sizeof(*status_r));
	if ((rc = storage_user_name_canon(user, name, canon)) != 0)
		return rc;
	if ((rc = storage_acl_resolve(st, user, canon, ACL_READ, &t)) != 0)
		return rc;
	if (t.foreign) {
		/* UNSEEN by the reader's own \Seen (storage_seen.c) */
		if ((rc = st->ops->status(st, t.owner, t.name, status_r)) != 0)
			return rc;
		return storage_seen_status(st, t.owner, t.name, user, status_r);
	}
	/* the user's own, also when named under the prefix */
	rc = st->ops->status(st, user, t.name, status_r);
	if (storage_user_set_up(st, user, t.name, rc))
		rc = st->ops->status(st, user, t.name, status_r);
	return rc;
}

int
storage_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
                 uint32_t uidnext)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	if ((rc = storage_user_name_canon(user, name, canon)) != 0)
		return rc;
	if (storage_acl_name_foreign(st, canon))
		return ROOST_EPERM; /* the owner's own business (roost import) */
	if (uidvalidity == 0 && uidnext == 0)
		return 0;
	rc = st->ops->set_uids(st, user, canon, uidvalidity, uidnext);
	if (rc == 0)
		storage_notify(st, user, canon);
	return rc;
}

/* APPEND into another's mailbox: the flags and keywords the user may not
 * set are dropped (RFC 4314 4), the message is stored all the same. */
int
storage_append(struct storage *st, const char *user, const char *mailbox,
               const struct msg_input *msg, uint32_t *uidvalidity_r, uint32_t *uid_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target a;
	struct msg_input m = *msg;
	struct delivery_target t = {.user = user, .mailbox = mailbox};
	bool reader_seen = false;
	int rc;

	if (storage_user_name_canon(user, mailbox, canon) == 0) {
		if ((rc = storage_acl_resolve(st, user, canon, ACL_INSERT, &a)) != 0)
			return rc;
		if (a.foreign) {
			t.user = a.owner;
			t.mailbox = a.name;
			m.flags &= storage_flags_allowed(a.rights);
			if ((a.rights & ACL_WRITE) == 0)
				m.n_keywords = 0;
			/* \Seen is the appending reader's own */
			reader_seen = (m.flags & MSG_SEEN) != 0;
			m.flags &= ~(uint32_t)MSG_SEEN;
		} else {
			t.mailbox = a.name;
		}
	}
	rc = storage_deliver_owned(st, &m, &t, 1, 0);
	if (rc == 0 && reader_seen &&
	    storage_seen_add(st, t.user, t.mailbox, user, t.uidvalidity, &t.uid, 1) != 0)
		log_warn("event=seen_error op=append user=%s mailbox=%s", LOG_QUOTE(user),
		         LOG_QUOTE(mailbox));

	if (rc == 0) {
		if (uidvalidity_r != NULL)
			*uidvalidity_r = t.uidvalidity;
		if (uid_r != NULL)
			*uid_r = t.uid;
	}
	return rc;
}

int
storage_lock_user(struct storage *st, const char *user, struct storage_lock **lock_r)
{
	int rc;

	*lock_r = NULL;
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if (st->ops->lock_user == NULL)
		return 0;
	if ((rc = st->ops->lock_user(st, user, lock_r)) == 0 && *lock_r != NULL)
		(*lock_r)->st = st;
	return rc;
}

void
storage_unlock_user(struct storage_lock **lockp)
{
	struct storage_lock *lock = lockp != NULL ? *lockp : NULL;

	if (lock == NULL)
		return;
	*lockp = NULL;
	lock->st->ops->unlock_user(lock);
}

int
storage_backup(struct storage *st, const char *dest, struct buf *report)
{
	return st->ops->backup(st, dest, report);
}

int
storage_repair(struct storage *st, struct buf *report)
{
	return st->ops->repair(st, report);
}

int
storage_check(struct storage *st, struct buf *report)
{
	return st->ops->check(st, report);
}

int
storage_stats(struct storage *st, struct storage_stats *stats_r)
{
	memset(stats_r, 0, sizeof(*stats_r));
	if (st->ops->stats == NULL)
		return ROOST_ENOTSUP;
	st->ops->stats(st, stats_r);
	return 0;
}
