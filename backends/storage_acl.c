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
 * Not built yet: a "Shared/" namespace (RFC 2342's third one) for
 * mailboxes no person owns. The design, to keep what is above unchanged:
 * "Shared/<name>" resolves in split() to the reserved owner "#public" (a
 * store no user can log in as, like "#shared" of the index: auth refuses
 * a leading '#'), so every actor is foreign there and everything above
 * applies as is: rights from the ACL only, \Seen per reader for everyone
 * (storage_seen.c; no owner's flag is ever shown), writes woken under
 * (#public, name). What differs: nobody has implicit rights, so the users
 * of [acl] shared_admins (a new key) hold every right on the namespace
 * and alone create its top-level mailboxes (split() would give them the
 * rights the owner has elsewhere); LIST scans "#public" like an owner of
 * the index, named under "Shared/" instead of "Other Users/<owner>/";
 * NAMESPACE announces (("Shared/" "/")) third; GETQUOTAROOT names the
 * root "#public" with [quota] shared limits; mail reaches such a mailbox
 * only through an alias to "#public+<name>" with p for anyone. Backends
 * need nothing new: "#public" is set up once with user_init like any new
 * user (its INBOX hidden from LIST and refused by split()).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"

#define ACL_ENTRY "/acl"
#define INDEX_ENTRY "/acl-owners"
#define INDEX_PUBLIC_USER "#shared"
#define INDEX_MAX_OWNERS 512

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

/* ---- the stored ACL ---- */

struct acl {
	struct acl_entry *v;
	size_t n;
	bool stored; /* false: the default ACL */
};

static void
acl_clear(struct acl *a)
{
	storage_acl_free(a->v, a->n);
	a->v = NULL;
	a->n = 0;
}

static void
acl_add(struct acl *a, const char *id, size_t len, unsigned rights)
{
	a->v = xreallocarray(a->v, a->n + 1, sizeof(*a->v));
	a->v[a->n].identifier = xstrndup(id, len);
	a->v[a->n].rights = rights;
	a->n++;
}

static void
acl_default(struct acl *a)
{
	acl_clear(a);
	a->stored = false;
	acl_add(a, "anyone", 6, ACL_POST);
}

/* The text of the "/acl" entry; lines that do not parse are skipped
 * (logged), never taken as a grant. */
static void
acl_decode(const uint8_t *data, size_t len, struct acl *a)
{
	size_t off = 0;

	acl_clear(a);
	a->stored = true;
	while (off < len && a->n < STORAGE_ACL_MAX_ENTRIES) {
		const uint8_t *nl = memchr(data + off, '\n', len - off);
		size_t end = nl != NULL ? (size_t)(nl - data) : len;
		const char *line = (const char *)data + off;
		size_t llen = end - off, idlen, rlen;
		const char *sp = memchr(line, ' ', llen);
		char id[AUTH_MAX_NAME + 8], rights[80];
		unsigned r;

		off = end + 1;
		if (sp == NULL)
			continue;
		idlen = (size_t)(sp - line);
		rlen = llen - idlen - 1;
		if (idlen >= sizeof(id) || rlen >= sizeof(rights))
			continue;
		memcpy(id, line, idlen);
		id[idlen] = '\0';
		memcpy(rights, sp + 1, rlen);
		rights[rlen] = '\0';
		if (storage_acl_rights_parse(rights, &r) != 0)
			continue;
		if (strncmp(id, "user=", 5) == 0 && storage_user_valid(id + 5))
			acl_add(a, id + 5, strlen(id + 5), r);
		else if (strcmp(id, "anyone") == 0 || strcmp(id, "authenticated") == 0)
			acl_add(a, id, idlen, r);
	}
}

static void
acl_encode(const struct acl *a, struct buf *out)
{
	for (size_t i = 0; i < a->n; i++) {
		char r[STORAGE_ACL_RIGHTS_MAX];
		const char *id = a->v[i].identifier;
		bool special = strcmp(id, "anyone") == 0 || strcmp(id, "authenticated") == 0;

		if (a->v[i].rights == 0)
			continue;
		storage_acl_rights_format(a->v[i].rights & ACL_RIGHTS_ALL, r);
		/* c and d are shown, not stored: the letters say it all */
		r[strspn(r, letters)] = '\0';
		buf_printf(out, "%s%s %s\n", special ? "" : "user=", id, r);
	}
}

/* The ACL of owner's mailbox canon; ROOST_ENOTFOUND when it does not exist. */
static int
acl_read(struct storage *st, const char *owner, const char *canon, struct acl *a)
{
	struct buf v = BUF_INIT(0);
	bool found;
	int rc;

	a->v = NULL;
	a->n = 0;
	rc = storage_meta_entry_get(st, owner, canon, ACL_ENTRY, &v, &found);
	if (rc == 0 && found)
		acl_decode(v.data, v.len, a);
	else if (rc == 0)
		acl_default(a);
	buf_free(&v);
	return rc;
}

/* actor's rights under a; NULL actor: an anonymous sender. */
static unsigned
acl_rights(const struct acl *a, const char *actor)
{
	unsigned r = 0;

	for (size_t i = 0; i < a->n; i++) {
		const char *id = a->v[i].identifier;

		if (strcmp(id, "anyone") == 0 ||
		    (actor != NULL && (strcmp(id, "authenticated") == 0 || strcmp(id, actor) == 0)))
			r |= a->v[i].rights;
	}
	return r & ACL_RIGHTS_ALL;
}

/* ---- names ---- */

/* Split canon (a canonical name as the actor sees it) into owner and the
 * owner's canonical name. 0 with t->foreign false for the actor's own
 * names; ROOST_ENOTFOUND for the prefix or an owner alone (they are
 * namespaces, not mailboxes); ROOST_EINVAL for an owner or name the rules
 * refuse. */
static int
split(const char *actor, const char *canon, struct acl_target *t)
{
	size_t pl = strlen(STORAGE_ACL_PREFIX);
	const char *owner, *slash;
	size_t olen;

	t->foreign = false;
	t->rights = ACL_RIGHTS_ALL;
	if (strncmp(canon, STORAGE_ACL_PREFIX, pl) != 0 ||
	    (canon[pl] != '\0' && canon[pl] != '/')) {
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
	if (!storage_user_valid(t->owner))
		return ROOST_EINVAL;
	if (storage_name_canon(slash + 1, t->name) != 0)
		return ROOST_EINVAL;
	t->foreign = strcmp(t->owner, actor) != 0;
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

	if ((rc = split(actor, canon, t)) != 0 || !t->foreign)
		return rc;
	if ((rc = acl_read(st, t->owner, t->name, &a)) != 0)
		return rc;
	t->rights = acl_rights(&a, actor);
	acl_clear(&a);
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

	if ((rc = split(actor, canon, t)) != 0 || !t->foreign)
		return rc;
	/* a new top-level mailbox of another user has no parent to grant k */
	if ((slash = strrchr(t->name, '/')) == NULL)
		return ROOST_ENOACCESS;
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

	if (strncmp(canon, STORAGE_ACL_PREFIX, strlen(STORAGE_ACL_PREFIX)) == 0 &&
	    (canon[strlen(STORAGE_ACL_PREFIX)] == '\0' || canon[strlen(STORAGE_ACL_PREFIX)] == '/'))
		return false;
	if (storage_name_is_inbox(canon))
		return true;
	if (acl_read(st, owner, canon, &a) != 0)
		return true; /* absent: the delivery finds out and falls back */
	r = acl_rights(&a, NULL);
	acl_clear(&a);
	return (r & ACL_POST) != 0;
}

int
storage_acl_mailbox_need(struct mailbox *mb, unsigned need)
{
	struct acl a;
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = acl_read(mb->st, mb->user, mb->name, &a)) != 0)
		return rc;
	mb->rights = acl_rights(&a, mb->actor);
	acl_clear(&a);
	return refusal(mb->rights, need);
}

struct copy_arg {
	const struct buf *value;
	bool found;
};

static int
put_value(const uint8_t *old, size_t old_len, struct buf *out, bool *remove, void *arg)
{
	struct copy_arg *a = arg;

	*remove = !a->found;
	if (a->found)
		buf_append(out, a->value->data, a->value->len);
	return 0;
}

void
storage_acl_inherit(struct storage *st, const char *owner, const char *canon)
{
	char parent[STORAGE_MAX_NAME + 1];
	struct buf v = BUF_INIT(0);
	struct copy_arg a = {&v, false};
	char *slash;
	int rc;

	snprintf(parent, sizeof(parent), "%s", canon);
	if ((slash = strrchr(parent, '/')) == NULL)
		return;
	*slash = '\0';
	rc = storage_meta_entry_get(st, owner, parent, ACL_ENTRY, &v, &a.found);
	if (rc == 0 && a.found)
		rc = storage_meta_entry_update(st, owner, canon, ACL_ENTRY, put_value, &a);
	if (rc != 0)
		log_warn("event=acl_inherit_error user=%s mailbox=%s error=\"%s\"",
		         LOG_QUOTE(owner), LOG_QUOTE(canon), roost_strerror(rc));
	buf_free(&v);
}

/* ---- the index of owners who shared something ---- */

struct index_arg {
	const char *owner;
};

static int
index_add(const uint8_t *old, size_t old_len, struct buf *out, bool *remove, void *arg)
{
	struct index_arg *a = arg;
	size_t olen = strlen(a->owner), lines = 0;

	*remove = false;
	for (size_t off = 0; old != NULL && off < old_len;) {
		const uint8_t *nl = memchr(old + off, '\n', old_len - off);
		size_t end = nl != NULL ? (size_t)(nl - old) : old_len;

		if (end - off == olen && memcmp(old + off, a->owner, olen) == 0)
			return ROOST_EEXISTS; /* there already: nothing to write */
		off = end + 1;
		lines++;
	}
	if (lines >= INDEX_MAX_OWNERS)
		return ROOST_ETOOBIG;
	if (old != NULL)
		buf_append(out, old, old_len);
	buf_append_str(out, a->owner);
	buf_append_byte(out, '\n');
	return 0;
}

/* Note that owner shared something with grantee (an identifier). Failures
 * are logged: the grant stands, only LIST may miss it. */
static void
index_note(struct storage *st, const char *owner, const char *grantee)
{
	const char *where = strcmp(grantee, "anyone") == 0 || strcmp(grantee, "authenticated") == 0
	                        ? INDEX_PUBLIC_USER
	                        : grantee;
	struct index_arg a = {owner};
	int rc;

	if (strcmp(owner, grantee) == 0)
		return;
	if (where == grantee)
		rc = storage_user_init(st, where);
	else if ((rc = st->ops->user_init(st, where)) == ROOST_EEXISTS)
		rc = 0;
	if (rc == 0)
		rc = storage_meta_entry_update(st, where, "", INDEX_ENTRY, index_add, &a);
	if (rc != 0 && rc != ROOST_EEXISTS)
		log_warn("event=acl_index_error user=%s owner=%s error=\"%s\"", LOG_QUOTE(where),
		         LOG_QUOTE(owner), roost_strerror(rc));
}

/* The owners listed in user's index entry, appended to *v. */
static void
index_read(struct storage *st, const char *user, char ***v, size_t *n)
{
	struct buf b = BUF_INIT(0);
	bool found;

	if (storage_meta_entry_get(st, user, "", INDEX_ENTRY, &b, &found) == 0 && found) {
		for (size_t off = 0; off < b.len;) {
			const uint8_t *nl = memchr(b.data + off, '\n', b.len - off);
			size_t end = nl != NULL ? (size_t)(nl - b.data) : b.len;
			char *o = xstrndup((const char *)b.data + off, end - off);

			off = end + 1;
			if (!storage_user_valid(o)) {
				free(o);
				continue;
			}
			*v = xreallocarray(*v, *n + 1, sizeof(**v));
			(*v)[(*n)++] = o;
		}
	}
	buf_free(&b);
}

/* ---- the API ---- */

void
storage_acl_free(struct acl_entry *list, size_t n)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].identifier);
	free(list);
}

/* Resolve user's name for an ACL command needing need: the owner's
 * mailbox must exist. */
static int
acl_target_of(struct storage *st, const char *user, const char *mailbox, unsigned need,
              struct acl_target *t)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct mailbox_status s;
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if ((rc = storage_name_canon(mailbox, canon)) != 0)
		return rc;
	if ((rc = storage_acl_resolve(st, user, canon, need, t)) != 0)
		return rc;
	rc = st->ops->status(st, t->owner, t->name, &s);
	if (storage_user_set_up(st, t->owner, t->name, rc))
		rc = st->ops->status(st, t->owner, t->name, &s);
	return rc;
}

int
storage_acl_get(struct storage *st, const char *user, const char *mailbox,
                struct acl_entry **list_r, size_t *n_r)
{
	struct acl_target t;
	struct acl a;
	int rc;

	*list_r = NULL;
	*n_r = 0;
	if ((rc = acl_target_of(st, user, mailbox, ACL_ADMIN, &t)) != 0 ||
	    (rc = acl_read(st, t.owner, t.name, &a)) != 0)
		return rc;
	/* the owner first, with the rights nothing can take away */
	*list_r = xcalloc(a.n + 1, sizeof(**list_r));
	(*list_r)[0].identifier = xstrdup(t.owner);
	(*list_r)[0].rights = ACL_RIGHTS_ALL;
	*n_r = 1;
	for (size_t i = 0; i < a.n; i++) {
		if (strcmp(a.v[i].identifier, t.owner) == 0 || a.v[i].rights == 0)
			continue;
		(*list_r)[*n_r].identifier = xstrdup(a.v[i].identifier);
		(*list_r)[*n_r].rights = a.v[i].rights;
		(*n_r)++;
	}
	acl_clear(&a);
	return 0;
}

struct set_arg {
	const char *identifier;
	enum acl_mode mode;
	unsigned rights;
	bool remove_entry;
	unsigned result; /* the identifier's rights after the change */
};

static int
apply_acl(const uint8_t *old, size_t old_len, struct buf *out, bool *remove, void *arg)
{
	struct set_arg *s = arg;
	struct acl a = {0};
	size_t i;

	*remove = false;
	if (old != NULL)
		acl_decode(old, old_len, &a);
	else
		acl_default(&a);
	for (i = 0; i < a.n && strcmp(a.v[i].identifier, s->identifier) != 0; i++)
		;
	if (i == a.n && !s->remove_entry) {
		if (a.n >= STORAGE_ACL_MAX_ENTRIES) {
			acl_clear(&a);
			return ROOST_ETOOBIG;
		}
		acl_add(&a, s->identifier, strlen(s->identifier), 0);
	}
	if (i < a.n) {
		if (s->remove_entry)
			a.v[i].rights = 0;
		else if (s->mode == ACL_ADD)
			a.v[i].rights |= s->rights;
		else if (s->mode == ACL_REMOVE)
			a.v[i].rights &= ~s->rights;
		else
			a.v[i].rights = s->rights;
		s->result = a.v[i].rights;
	}
	acl_encode(&a, out);
	acl_clear(&a);
	/* an empty ACL is stored as such (not the default): nothing written
	 * means "no entries", a removed entry means "the default" */
	return 0;
}

int
storage_acl_set(struct storage *st, const char *user, const char *mailbox, const char *identifier,
                enum acl_mode mode, unsigned rights)
{
	struct set_arg s = {identifier, mode, rights & ACL_RIGHTS_ALL, false, 0};
	struct acl_target t;
	int rc;

	if (!storage_acl_identifier_valid(identifier) || (rights & ~ACL_RIGHTS_ALL) != 0 ||
	    (mode != ACL_SET && mode != ACL_ADD && mode != ACL_REMOVE))
		return ROOST_EINVAL;
	if ((rc = acl_target_of(st, user, mailbox, ACL_ADMIN, &t)) != 0)
		return rc;
	if (strcmp(identifier, t.owner) == 0)
		return ROOST_EPERM; /* the owner's rights are fixed */
	if ((rc = storage_meta_entry_update(st, t.owner, t.name, ACL_ENTRY, apply_acl, &s)) != 0)
		return rc;
	if ((s.result & (ACL_LOOKUP | ACL_READ)) != 0)
		index_note(st, t.owner, identifier);
	storage_notify(st, t.owner, t.name);
	return 0;
}

int
storage_acl_delete(struct storage *st, const char *user, const char *mailbox,
                   const char *identifier)
{
	struct set_arg s = {identifier, ACL_SET, 0, true, 0};
	struct acl_target t;
	int rc;

	if (!storage_acl_identifier_valid(identifier))
		return ROOST_EINVAL;
	if ((rc = acl_target_of(st, user, mailbox, ACL_ADMIN, &t)) != 0)
		return rc;
	if (strcmp(identifier, t.owner) == 0)
		return ROOST_EPERM;
	rc = storage_meta_entry_update(st, t.owner, t.name, ACL_ENTRY, apply_acl, &s);
	if (rc == 0)
		storage_notify(st, t.owner, t.name);
	return rc;
}

int
storage_acl_myrights(struct storage *st, const char *user, const char *mailbox, unsigned *rights_r)
{
	struct acl_target t;
	int rc;

	*rights_r = 0;
	if ((rc = acl_target_of(st, user, mailbox, 0, &t)) != 0)
		return rc;
	/* p alone (anyone's, by default) is about mail to user+folder: it
	 * must not let every user probe which folders others have */
	if ((t.rights & ~(unsigned)ACL_POST) == 0)
		return ROOST_ENOTFOUND;
	*rights_r = t.rights;
	return 0;
}

int
storage_acl_owner(struct storage *st, const char *user, const char *mailbox, char *owner_r,
                  size_t size)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target t;
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if ((rc = storage_name_canon(mailbox, canon)) != 0 || (rc = split(user, canon, &t)) != 0)
		return rc;
	snprintf(owner_r, size, "%s", t.owner);
	return 0;
}

static int
info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mailbox_info *)a)->name,
	              ((const struct mailbox_info *)b)->name);
}

static void
info_add(struct mailbox_info **v, size_t *n, size_t *cap, const char *name, unsigned attrs)
{
	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		*v = xreallocarray(*v, *cap, sizeof(**v));
	}
	(*v)[*n].name = xstrdup(name);
	(*v)[*n].attrs = attrs;
	(*n)++;
}

int
storage_acl_shared_list(struct storage *st, const char *user, struct mailbox_info **list_r,
                        size_t *n_r)
{
	char **owners = NULL;
	size_t n_owners = 0, n = 0, cap = 0;
	struct mailbox_info *v = NULL;
	struct buf name = BUF_INIT(0);

	*list_r = NULL;
	*n_r = 0;
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	index_read(st, user, &owners, &n_owners);
	index_read(st, INDEX_PUBLIC_USER, &owners, &n_owners);
	for (size_t i = 0; i < n_owners; i++) {
		struct mailbox_info *list = NULL;
		size_t nl = 0, shown = 0;
		bool dup = strcmp(owners[i], user) == 0;

		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(owners[j], owners[i]) == 0;
		if (dup || st->ops->list(st, owners[i], &list, &nl) != 0)
			continue;
		for (size_t j = 0; j < nl; j++) {
			struct acl a;
			unsigned r;

			if ((list[j].attrs & (MBOX_NONEXISTENT | MBOX_NOSELECT)) != 0 ||
			    acl_read(st, owners[i], list[j].name, &a) != 0)
				continue;
			r = acl_rights(&a, user);
			acl_clear(&a);
			if ((r & ACL_LOOKUP) == 0)
				continue;
			buf_reset(&name);
			buf_printf(&name, "%s/%s/%s", STORAGE_ACL_PREFIX, owners[i], list[j].name);
			if (!storage_name_valid(buf_cstr(&name)))
				continue;
			info_add(&v, &n, &cap, buf_cstr(&name),
			         list[j].attrs & (MBOX_HASCHILDREN | MBOX_HASNOCHILDREN));
			shown++;
		}
		storage_list_free(list, nl);
		if (shown > 0) {
			buf_reset(&name);
			buf_printf(&name, "%s/%s", STORAGE_ACL_PREFIX, owners[i]);
			info_add(&v, &n, &cap, buf_cstr(&name), MBOX_NOSELECT | MBOX_HASCHILDREN);
		}
	}
	if (n > 0)
		info_add(&v, &n, &cap, STORAGE_ACL_PREFIX, MBOX_NOSELECT | MBOX_HASCHILDREN);
	for (size_t i = 0; i < n_owners; i++)
		free(owners[i]);
	free(owners);
	buf_free(&name);
	if (n > 0)
		qsort(v, n, sizeof(*v), info_cmp);
	*list_r = v;
	*n_r = n;
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
