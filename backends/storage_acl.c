/*
 * Access control lists (RFC 4314) and other users' mailboxes (RFC 2342),
 * once, in the wrapper, for every backend and every protocol path.
 *
 * The model.
 *
 * - Every mailbox has one owner, the user whose store holds it. The owner
 *   has every right on it, always; the ACL cannot take them away (a
 *   SETACL naming the owner is refused).
 * - A mailbox's ACL maps identifiers to rights: "anyone" (every session
 *   and also an anonymous sender), "authenticated" (every logged-in user),
 *   or a user's canonical name. Rights are the letters of RFC 4314 2.1,
 *   lrswipkxtea, each kept on its own (RIGHTS=texk); the obsolete "c" is
 *   read as "k" and "d" as "xte" (the second reading of RFC 4314 2.1.1),
 *   and each is shown again beside its members when all of them are there.
 *   Negative rights ("-bob") are not supported and refused.
 * - A user's rights on another's mailbox are the union of the entries for
 *   "anyone", "authenticated" and the user's own name. A mailbox without a
 *   stored ACL has the default one: "anyone p", so that mail sent to
 *   user+folder keeps reaching the folder (SMTP/LMTP and `roost deliver`
 *   check "p" for "anyone" before delivering anywhere but INBOX, and fall
 *   back to INBOX without it). An ACL with no entries is stored as such.
 * - Another user's mailbox is named "Other Users/<owner>/<mailbox>"
 *   (STORAGE_ACL_PREFIX): every storage_*() and mailbox_*() function that
 *   takes a user (the acting one) and a mailbox name resolves such a name
 *   here to the owner's mailbox and checks the actor's rights before any
 *   backend runs. A user's own mailboxes are reached by their plain names
 *   only, so no name under the prefix can be created in one's own store,
 *   and the owner part is a valid user name (no '/', nothing that leaves
 *   the owner's store); the rest obeys storage_name.c like any name.
 * - Rights per operation (RFC 4314 4): open (SELECT, EXAMINE, POP3) and
 *   STATUS need r; an open without any of s, w, i, t, e is read-only.
 *   STORE needs s for \Seen, t for \Deleted, w for the other flags and
 *   keywords (a flag the actor may not set is left out; nothing left is
 *   NOPERM; a FLAGS replace needs all three); EXPUNGE needs e; APPEND and
 *   COPY/MOVE into a mailbox need i (flags the actor may not set are
 *   dropped); MOVE needs t and e on the source; CREATE needs k on the
 *   parent; DELETE needs x; RENAME needs x on the old name and k on the
 *   new parent, within one owner (a mailbox one user makes in another's
 *   store starts with its parent's ACL, so the maker keeps the rights
 *   that let it be made); GETACL, SETACL, DELETEACL and LISTRIGHTS
 *   need a; MYRIGHTS needs any right. An actor without l who lacks a
 *   right gets ROOST_ENOTFOUND, so that a mailbox one may not see does not
 *   show that it exists; with l, ROOST_ENOACCESS.
 * - Rights are read when a mailbox is opened, and again before every
 *   change made through the open mailbox (a revoked right stops the next
 *   STORE, EXPUNGE, APPEND or COPY of a session that has it open), before
 *   every mailbox_changes_since() (a session that lost r hears nothing
 *   more, also in IDLE) and when a protocol asks with
 *   mailbox_rights_refresh() (IMAP: before each command, so that a
 *   revoked r stops the next FETCH or SEARCH too).
 * - Changes made by any user are changes of the owner's mailbox: they wake
 *   the watchers of (owner, mailbox), so IDLE of every user who has the
 *   mailbox open sees them (storage_watch() resolves the name the same way).
 * - \Seen is each user's own: the owner's is the backend's flag, every
 *   other reader's a set of its own kept beside the ACL (storage_seen.c).
 *   The other flags and keywords are the mailbox's, shared by every user
 *   who reads it.
 *
 * Where it is kept. The ACL is an entry of the mailbox's metadata record
 * (storage_metadata.c), named "/acl": every backend stores it already, it
 * follows a rename and goes with a delete, with no new backend op and no
 * second copy to keep in step. Its name is outside "/private" and
 * "/shared", so no client reaches it through METADATA. The value is text,
 * one entry a line, as Dovecot's dovecot-acl file writes it:
 * "anyone p", "authenticated lr", "user=bob@example.com lrswi".
 *
 * LIST must find the mailboxes others share with a user without looking
 * at every user's store. A grant to a user adds the owner's name to the
 * grantee's "/acl-owners" entry (the grantee's server record); a grant to
 * "anyone" or "authenticated" adds it to the same entry of the reserved
 * store "#shared" (a name no user can have: auth refuses a leading '#').
 * LIST reads those two entries, then each owner's mailbox list and ACLs,
 * and shows the mailboxes where the user has l. Entries are never removed
 * from the index when a right is revoked: a stale owner costs one list of
 * that owner's mailboxes and shows nothing.
 *
 * The shared namespace ("Shared/", RFC 2342's third) holds mailboxes no
 * person owns. "Shared/<name>" resolves in split() to the reserved store
 * STORAGE_ACL_PUBLIC_OWNER ("#public": no user can log in as it, auth
 * refuses a leading '#', and "Other Users/#public/..." is refused like any
 * invalid owner), so every actor is foreign there and everything above
 * applies as is: rights from the ACL, \Seen per reader for everyone (no
 * owner's flag is ever shown), writes woken under (#public, name). What
 * differs: nobody has implicit rights, so the users of [acl]
 * shared_admins hold every right on the namespace (storage_acl_rights_for())
 * and alone create its top-level mailboxes (resolve_parent); GETACL shows
 * no owner entry; LIST reads the public store for every user, without the
 * index, and names its mailboxes "Shared/<name>"; the store's INBOX (made
 * when storage_create() sets the store up, as user_init does a user's,
 * without default folders) is neither shown nor reachable, nor a delivery
 * target or fallback; the quota root is the store's, with [quota]
 * shared_* limits. Mail reaches a shared mailbox only through an alias
 * whose target is "#public+<name>" (services/delivery.c), with p for
 * anyone. Backends need nothing new. The prefix is [acl] shared_prefix
 * ("Shared" by default, none when empty: storage_acl_shared_prefix()); a
 * user's own mailbox of that name (made before the namespace existed) is
 * shadowed by it, which is why an administrator may move it.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"

static const char letters[] = "lrswipkxtea";

/* ---- rights and identifiers ---- */

int
storage_acl_rights_parse(const char *text, unsigned *rights_r)
{
	unsigned r = 0;

	*rights_r = 0;
	if (text == NULL || strlen(text) > 64)
		return ROOST_EINVAL;
	for (const char *p = text; *p != '\0'; p++) {
		const char *l = strchr(letters, *p);

		if (*p == 'c')
			r |= ACL_CREATE;
		else if (*p == 'd')
			r |= ACL_DELETE | ACL_DELETED | ACL_EXPUNGE;
		else if (l != NULL)
			r |= 1u << (l - letters);
		else
			return ROOST_EINVAL;
	}
	*rights_r = r;
	return 0;
}

void
storage_acl_rights_format(unsigned rights, char out[STORAGE_ACL_RIGHTS_MAX])
{
	size_t k = 0;

	for (size_t i = 0; letters[i] != '\0'; i++) {
		if ((rights & (1u << i)) != 0)
			out[k++] = letters[i];
	}
	if ((rights & ACL_CREATE) != 0)
		out[k++] = 'c';
	if ((rights & (ACL_DELETE | ACL_DELETED | ACL_EXPUNGE)) ==
	    (ACL_DELETE | ACL_DELETED | ACL_EXPUNGE))
		out[k++] = 'd';
	out[k] = '\0';
}

bool
storage_acl_identifier_valid(const char *id)
{
	/* a leading '-' would be a negative right (RFC 4314 2), which is
	 * not supported: refused rather than taken as a user's name */
	return id != NULL && id[0] != '-' &&
	       (strcmp(id, "anyone") == 0 || strcmp(id, "authenticated") == 0 ||
	        storage_user_valid(id));
}

/* ---- names and the rights they need ---- */

/* Is canon prefix itself or a name under it? Never for a NULL prefix (a
 * namespace that is off). */
static bool
under(const char *canon, const char *prefix)
{
	size_t pl;

	if (prefix == NULL)
		return false;
	pl = strlen(prefix);
	return strncmp(canon, prefix, pl) == 0 && (canon[pl] == '\0' || canon[pl] == '/');
}

const char *
storage_acl_shared_prefix(const struct storage *st)
{
	const char *p = st != NULL && st->cfg != NULL && st->cfg->acl_shared_prefix != NULL
	                    ? st->cfg->acl_shared_prefix
	                    : STORAGE_ACL_SHARED_PREFIX;

	return p[0] != '\0' ? p : NULL;
}

bool
storage_acl_name_foreign(const struct storage *st, const char *name)
{
	return name != NULL &&
	       (under(name, STORAGE_ACL_PREFIX) || under(name, storage_acl_shared_prefix(st)));
}

bool
storage_owner_valid(const char *owner)
{
	return storage_user_valid(owner) || storage_owner_public(owner);
}

bool
storage_owner_public(const char *owner)
{
	return owner != NULL && strcmp(owner, STORAGE_ACL_PUBLIC_OWNER) == 0;
}

bool
storage_acl_shared_admin(const struct storage *st, const char *actor)
{
	char *const *admins = st->cfg != NULL ? st->cfg->acl_shared_admins : NULL;

	for (size_t i = 0; actor != NULL && admins != NULL && admins[i] != NULL; i++) {
		if (strcasecmp(admins[i], actor) == 0)
			return true;
	}
	return false;
}

unsigned
storage_acl_rights_for(const struct storage *st, const char *owner, const struct acl *a,
                       const char *actor)
{
	if (storage_owner_public(owner) && storage_acl_shared_admin(st, actor))
		return ACL_RIGHTS_ALL;
	return storage_acl_rights_of(a, actor);
}

/* "Shared/<name>" (prefix: [acl] shared_prefix): the mailbox <name> of
 * the public store, whose INBOX (and anything under it) is the store's
 * own and never shown. */
static int
split_shared(const char *prefix, const char *canon, struct acl_target *t)
{
	size_t pl = strlen(prefix);

	if (canon[pl] == '\0')
		return ROOST_ENOTFOUND; /* the namespace, not a mailbox */
	if (storage_name_canon(canon + pl + 1, t->name) != 0)
		return ROOST_EINVAL;
	if (strncmp(t->name, "INBOX", 5) == 0 && (t->name[5] == '\0' || t->name[5] == '/'))
		return ROOST_ENOTFOUND;
	snprintf(t->owner, sizeof(t->owner), "%s", STORAGE_ACL_PUBLIC_OWNER);
	t->foreign = true; /* nobody owns it, every actor is a reader */
	t->shared = true;
	return 0;
}

/* Split canon (a canonical name as the actor sees it) into owner and the
 * owner's canonical name. 0 with t->foreign false for the actor's own
 * names; ROOST_ENOTFOUND for the prefix or an owner alone (they are
 * namespaces, not mailboxes); ROOST_EINVAL for an owner or name the rules
 * refuse. */
static int
split(const struct storage *st, const char *actor, const char *canon, struct acl_target *t)
{
	size_t pl = strlen(STORAGE_ACL_PREFIX);
	const char *owner, *slash, *shared = storage_acl_shared_prefix(st);
	size_t olen;

	t->foreign = false;
	t->shared = false;
	t->rights = ACL_RIGHTS_ALL;
	if (under(canon, shared))
		return split_shared(shared, canon, t);
	if (!under(canon, STORAGE_ACL_PREFIX)) {
		snprintf(t->owner, sizeof(t->owner), "%s", actor);
		snprintf(t->name, sizeof(t->name), "%s", canon);
		return 0;
	}
	if (canon[pl] == '\0')
		return ROOST_ENOTFOUND;
	owner = canon + pl + 1;
	slash = strchr(owner, '/');
	if (slash == NULL)
		return ROOST_ENOTFOUND;
	olen = (size_t)(slash - owner);
	if (olen >= sizeof(t->owner))
		return ROOST_EINVAL;
	memcpy(t->owner, owner, olen);
	t->owner[olen] = '\0';
	/* "#public" is no user's name: the shared namespace is reached by
	 * its own prefix only */
	if (!storage_user_valid(t->owner))
		return ROOST_EINVAL;
	if (storage_name_canon(slash + 1, t->name) != 0)
		return ROOST_EINVAL;
	t->foreign = strcmp(t->owner, actor) != 0;
	return 0;
}

int
storage_acl_store_of(const struct storage *st, const char *name, char *owner_r, size_t size,
                     size_t *prefix_len_r)
{
	size_t pl = strlen(STORAGE_ACL_PREFIX);
	const char *owner, *slash, *shared = storage_acl_shared_prefix(st);
	size_t olen;

	if (name == NULL)
		return ROOST_ENOTFOUND;
	if (under(name, shared)) {
		snprintf(owner_r, size, "%s", STORAGE_ACL_PUBLIC_OWNER);
		*prefix_len_r = strlen(shared);
		return 0;
	}
	if (!under(name, STORAGE_ACL_PREFIX) || name[pl] == '\0')
		return ROOST_ENOTFOUND;
	owner = name + pl + 1;
	slash = strchr(owner, '/');
	olen = slash != NULL ? (size_t)(slash - owner) : strlen(owner);
	if (olen == 0 || olen >= size)
		return ROOST_EINVAL;
	memcpy(owner_r, owner, olen);
	owner_r[olen] = '\0';
	if (!storage_user_valid(owner_r))
		return ROOST_EINVAL;
	*prefix_len_r = pl + 1 + olen;
	return 0;
}

/* The error for an actor holding rights and needing need. */
static int
refusal(unsigned rights, unsigned need)
{
	if ((rights & need) == need)
		return 0;
	return (rights & ACL_LOOKUP) != 0 ? ROOST_ENOACCESS : ROOST_ENOTFOUND;
}

int
storage_acl_resolve(struct storage *st, const char *actor, const char *canon, unsigned need,
                    struct acl_target *t)
{
	struct acl a;
	int rc;

	if ((rc = split(st, actor, canon, t)) != 0 || !t->foreign)
		return rc;
	if ((rc = storage_acl_read(st, t->owner, t->name, &a)) != 0)
		return rc;
	t->rights = storage_acl_rights_for(st, t->owner, &a, actor);
	storage_acl_clear(&a);
	return refusal(t->rights, need);
}

int
storage_acl_resolve_parent(struct storage *st, const char *actor, const char *canon,
                           struct acl_target *t)
{
	struct acl_target p;
	char parent[STORAGE_MAX_NAME + 1];
	const char *slash;
	int rc;

	if ((rc = split(st, actor, canon, t)) != 0 || !t->foreign)
		return rc;
	/* a new top-level mailbox of another user has no parent to grant k;
	 * the shared namespace's are made by its administrators */
	if ((slash = strrchr(t->name, '/')) == NULL) {
		if (!t->shared || !storage_acl_shared_admin(st, actor))
			return ROOST_ENOACCESS;
		t->rights = ACL_RIGHTS_ALL;
		return 0;
	}
	snprintf(parent, sizeof(parent), "%s", canon);
	parent[strlen(canon) - strlen(slash)] = '\0';
	if ((rc = storage_acl_resolve(st, actor, parent, ACL_CREATE, &p)) != 0)
		return rc == ROOST_ENOTFOUND ? ROOST_ENOACCESS : rc;
	t->rights = p.rights;
	return 0;
}

bool
storage_acl_may_post(struct storage *st, const char *owner, const char *canon)
{
	struct acl a;
	unsigned r;

	if (storage_acl_name_foreign(st, canon))
		return false;
	/* the public store's INBOX is nobody's: no mail is left there */
	if (storage_name_is_inbox(canon))
		return !storage_owner_public(owner);
	if (storage_acl_read(st, owner, canon, &a) != 0)
		return true; /* absent: the delivery finds out and falls back */
	r = storage_acl_rights_of(&a, NULL);
	storage_acl_clear(&a);
	return (r & ACL_POST) != 0;
}

int
storage_acl_mailbox_need(struct mailbox *mb, unsigned need)
{
	struct acl a;
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = storage_acl_read(mb->st, mb->user, mb->name, &a)) != 0)
		return rc;
	mb->rights = storage_acl_rights_for(mb->st, mb->user, &a, mb->actor);
	storage_acl_clear(&a);
	return refusal(mb->rights, need);
}

int
storage_acl_owner(struct storage *st, const char *user, const char *mailbox, char *owner_r,
                  size_t size)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target t;
	int rc;

	if ((rc = storage_user_name_canon(user, mailbox, canon)) != 0 ||
	    (rc = split(st, user, canon, &t)) != 0)
		return rc;
	snprintf(owner_r, size, "%s", t.owner);
	return 0;
}

int
mailbox_rights_refresh(struct mailbox *mb)
{
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = storage_acl_mailbox_need(mb, 0)) != 0)
		return rc;
	return (mb->rights & ACL_READ) != 0 ? 0 : ROOST_ENOACCESS;
}

unsigned
mailbox_rights(const struct mailbox *mb)
{
	return mb->actor == NULL ? ACL_RIGHTS_ALL : mb->rights;
}

bool
mailbox_readonly(const struct mailbox *mb)
{
	return (mb->flags & MAILBOX_READONLY) != 0;
}
