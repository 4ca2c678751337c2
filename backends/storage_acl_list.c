/*
 * Finding what others share with a user without looking at every store
 * (the model is written at the head of storage_acl.c): the index of
 * owners who granted something, and LIST's view of other users'
 * mailboxes built from it.
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

#define INDEX_ENTRY "/acl-owners"
#define INDEX_PUBLIC_USER "#shared"
#define INDEX_MAX_OWNERS 512

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
void
storage_acl_index_note(struct storage *st, const char *owner, const char *grantee)
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

/* The mailboxes of owner that user may see (l), named under prefix
 * ("Other Users/<owner>" or "Shared"), into v; how many. The public
 * store's INBOX is its own, never shown. */
static size_t
owner_add(struct storage *st, const char *user, const char *owner, const char *prefix,
          struct mailbox_info **v, size_t *n, size_t *cap)
{
	struct mailbox_info *list = NULL;
	struct buf name = BUF_INIT(0);
	size_t nl = 0, shown = 0;
	bool public = storage_owner_public(owner);

	if (st->ops->list(st, owner, &list, &nl) != 0)
		return 0;
	for (size_t j = 0; j < nl; j++) {
		struct acl a;
		unsigned r;

		if ((list[j].attrs & (MBOX_NONEXISTENT | MBOX_NOSELECT)) != 0 ||
		    (public && strncmp(list[j].name, "INBOX", 5) == 0 &&
		     (list[j].name[5] == '\0' || list[j].name[5] == '/')) ||
		    storage_acl_read(st, owner, list[j].name, &a) != 0)
			continue;
		r = storage_acl_rights_for(st, owner, &a, user);
		storage_acl_clear(&a);
		if ((r & ACL_LOOKUP) == 0)
			continue;
		buf_reset(&name);
		buf_printf(&name, "%s/%s", prefix, list[j].name);
		if (!storage_name_valid(buf_cstr(&name)))
			continue;
		info_add(v, n, cap, buf_cstr(&name),
		         list[j].attrs & (MBOX_HASCHILDREN | MBOX_HASNOCHILDREN));
		shown++;
	}
	storage_list_free(list, nl);
	buf_free(&name);
	return shown;
}

int
storage_acl_shared_list(struct storage *st, const char *user, struct mailbox_info **list_r,
                        size_t *n_r)
{
	char **owners = NULL;
	size_t n_owners = 0, n = 0, cap = 0, others = 0;
	struct mailbox_info *v = NULL;
	struct buf name = BUF_INIT(0);
	const char *shared = storage_acl_shared_prefix(st);

	*list_r = NULL;
	*n_r = 0;
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	index_read(st, user, &owners, &n_owners);
	index_read(st, INDEX_PUBLIC_USER, &owners, &n_owners);
	for (size_t i = 0; i < n_owners; i++) {
		size_t shown;
		bool dup = strcmp(owners[i], user) == 0;

		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(owners[j], owners[i]) == 0;
		if (dup)
			continue;
		buf_reset(&name);
		buf_printf(&name, "%s/%s", STORAGE_ACL_PREFIX, owners[i]);
		shown = owner_add(st, user, owners[i], buf_cstr(&name), &v, &n, &cap);
		if (shown > 0)
			info_add(&v, &n, &cap, buf_cstr(&name), MBOX_NOSELECT | MBOX_HASCHILDREN);
		others += shown;
	}
	if (others > 0)
		info_add(&v, &n, &cap, STORAGE_ACL_PREFIX, MBOX_NOSELECT | MBOX_HASCHILDREN);
	/* the shared namespace: every user may find something there, so the
	 * public store is listed for everyone, without an index */
	if (shared != NULL &&
	    owner_add(st, user, STORAGE_ACL_PUBLIC_OWNER, shared, &v, &n, &cap) > 0)
		info_add(&v, &n, &cap, shared, MBOX_NOSELECT | MBOX_HASCHILDREN);
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
