/*
 * The stored ACL of a mailbox (the model is written at the head of
 * storage_acl.c): the "/acl" entry of its metadata record, read, decoded
 * and written, a new mailbox's inherited from its parent, and the API
 * that reads and changes it (GETACL, SETACL, DELETEACL, MYRIGHTS).
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

void
storage_acl_clear(struct acl *a)
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
	storage_acl_clear(a);
	a->stored = false;
	acl_add(a, "anyone", 6, ACL_POST);
}

/* The text of the "/acl" entry; lines that do not parse are skipped
 * (logged), never taken as a grant. */
static void
acl_decode(const uint8_t *data, size_t len, struct acl *a)
{
	size_t off = 0;

	storage_acl_clear(a);
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
		r[strspn(r, ACL_RIGHTS_LETTERS)] = '\0';
		buf_printf(out, "%s%s %s\n", special ? "" : "user=", id, r);
	}
}

/* The ACL of owner's mailbox canon; ROOST_ENOTFOUND when it does not exist. */
int
storage_acl_read(struct storage *st, const char *owner, const char *canon, struct acl *a)
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
unsigned
storage_acl_rights_of(const struct acl *a, const char *actor)
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

void
storage_acl_free(struct acl_entry *list, size_t n)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].identifier);
	free(list);
}

int
storage_acl_target(struct storage *st, const char *user, const char *mailbox, unsigned need,
                   bool set_up, struct acl_target *t)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct mailbox_status s;
	int rc;

	if ((rc = storage_user_name_canon(user, mailbox, canon)) != 0 ||
	    (rc = storage_acl_resolve(st, user, canon, need, t)) != 0)
		return rc;
	rc = st->ops->status(st, t->owner, t->name, &s);
	if (set_up && storage_user_set_up(st, t->owner, t->name, rc))
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
	if ((rc = storage_acl_target(st, user, mailbox, ACL_ADMIN, true, &t)) != 0 ||
	    (rc = storage_acl_read(st, t.owner, t.name, &a)) != 0)
		return rc;
	/* the owner first, with the rights nothing can take away; the
	 * shared namespace has none (its administrators are the config's) */
	*list_r = xcalloc(a.n + 1, sizeof(**list_r));
	if (!t.shared) {
		(*list_r)[0].identifier = xstrdup(t.owner);
		(*list_r)[0].rights = ACL_RIGHTS_ALL;
		*n_r = 1;
	}
	for (size_t i = 0; i < a.n; i++) {
		if (strcmp(a.v[i].identifier, t.owner) == 0 || a.v[i].rights == 0)
			continue;
		(*list_r)[*n_r].identifier = xstrdup(a.v[i].identifier);
		(*list_r)[*n_r].rights = a.v[i].rights;
		(*n_r)++;
	}
	storage_acl_clear(&a);
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
			storage_acl_clear(&a);
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
	storage_acl_clear(&a);
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
	if ((rc = storage_acl_target(st, user, mailbox, ACL_ADMIN, true, &t)) != 0)
		return rc;
	if (strcmp(identifier, t.owner) == 0)
		return ROOST_EPERM; /* the owner's rights are fixed */
	if ((rc = storage_meta_entry_update(st, t.owner, t.name, ACL_ENTRY, apply_acl, &s)) != 0)
		return rc;
	/* LIST reads the public store without an index */
	if ((s.result & (ACL_LOOKUP | ACL_READ)) != 0 && !t.shared)
		storage_acl_index_note(st, t.owner, identifier);
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
	if ((rc = storage_acl_target(st, user, mailbox, ACL_ADMIN, true, &t)) != 0)
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
	if ((rc = storage_acl_target(st, user, mailbox, 0, true, &t)) != 0)
		return rc;
	/* p alone (anyone's, by default) is about mail to user+folder: it
	 * must not let every user probe which folders others have */
	if ((t.rights & ~(unsigned)ACL_POST) == 0)
		return ROOST_ENOTFOUND;
	*rights_r = t.rights;
	return 0;
}
