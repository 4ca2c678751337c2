/*
 * JMAP accounts (RFC 8620 1.6.2): the user's own, and one per owner who
 * shares mailboxes with the user (the model is in jmap_impl.h). The
 * accounts are found from storage_acl_shared_list(), the list IMAP's LIST
 * shows under "Other Users/" and "Shared/", so JMAP and IMAP agree on what
 * a user sees.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/xalloc.h"

#include "jmap_impl.h"

static int
acct_cmp(const void *a, const void *b)
{
	return strcmp(((const struct jmap_account *)a)->id, ((const struct jmap_account *)b)->id);
}

/* The account prefix of a shared name into prefix (size bytes) and its
 * owner into owner; false for names of no account (the \Noselect parents). */
static bool
name_account(const struct storage *st, const char *name, char *prefix, size_t size,
             const char **owner_r, size_t *olen_r)
{
	static const char others[] = STORAGE_ACL_PREFIX "/";
	const char *o, *slash, *shared = storage_acl_shared_prefix(st); /* [acl] shared_prefix */
	size_t sl = shared != NULL ? strlen(shared) : 0;

	if (shared != NULL && strncmp(name, shared, sl) == 0 && name[sl] == '/') {
		snprintf(prefix, size, "%s/", shared);
		*owner_r = STORAGE_ACL_PUBLIC_OWNER;
		*olen_r = strlen(STORAGE_ACL_PUBLIC_OWNER);
		return true;
	}
	if (strncmp(name, others, sizeof(others) - 1) != 0)
		return false;
	o = name + sizeof(others) - 1;
	if ((slash = strchr(o, '/')) == NULL || slash == o || (size_t)(slash + 1 - name) >= size)
		return false;
	memcpy(prefix, name, (size_t)(slash + 1 - name));
	prefix[slash + 1 - name] = '\0';
	*owner_r = o;
	*olen_r = (size_t)(slash - o);
	return true;
}

int
jmap_accounts_shared(struct storage *st, const char *user, bool rights, struct jmap_account **v_r,
                     size_t *n_r)
{
	struct mailbox_info *list = NULL;
	struct jmap_account *v = NULL;
	size_t n_list = 0, n = 0;
	int rc;

	*v_r = NULL;
	*n_r = 0;
	if ((rc = storage_acl_shared_list(st, user, &list, &n_list)) != 0)
		return rc;
	for (size_t i = 0; i < n_list; i++) {
		char prefix[STORAGE_MAX_NAME_STORED + 2];
		const char *owner;
		size_t olen, k;
		unsigned my = 0;

		if ((list[i].attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)) != 0 ||
		    !name_account(st, list[i].name, prefix, sizeof(prefix), &owner, &olen))
			continue;
		for (k = 0; k < n; k++) {
			if (strcmp(v[k].prefix, prefix) == 0)
				break;
		}
		if (k == n) {
			v = xreallocarray(v, n + 1, sizeof(*v));
			v[n].owner = xstrndup(owner, olen);
			v[n].prefix = xstrdup(prefix);
			v[n].readonly = true;
			http_account_id(v[n].owner, v[n].id);
			n++;
		}
		if (rights && v[k].readonly &&
		    storage_acl_myrights(st, user, list[i].name, &my) == 0 &&
		    (my & ~(unsigned)(ACL_LOOKUP | ACL_READ | ACL_POST | ACL_ADMIN)) != 0)
			v[k].readonly = false;
	}
	storage_list_free(list, n_list);
	if (n > 1)
		qsort(v, n, sizeof(*v), acct_cmp);
	*v_r = v;
	*n_r = n;
	return 0;
}

void
jmap_accounts_free(struct jmap_account *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].owner);
		free(v[i].prefix);
	}
	free(v);
}

void
jmap_accounts_reset(struct jmap_req *r)
{
	jmap_accounts_free(r->accts, r->n_accts);
	r->accts = NULL;
	r->n_accts = 0;
	r->accts_loaded = false;
	r->prefix = NULL;
	r->account = jmap_account_own(r);
}

const char *
jmap_account_own(const struct jmap_req *r)
{
	return r->s != NULL ? r->s->account : r->account;
}

bool
jmap_account_shared(const struct jmap_req *r)
{
	return r->prefix != NULL;
}

bool
jmap_account_select(struct jmap_req *r, const char *id)
{
	const struct jmap_account *a = NULL;
	const char *own = jmap_account_own(r);

	if (strcmp(id, own) == 0) {
		if (r->prefix != NULL) {
			jmap_mailboxes_reset(r);
			r->prefix = NULL;
			r->account = own;
		}
		return true;
	}
	/* ids are "a" and 16 hex digits: anything else is nobody's */
	if (strlen(id) != strlen(own))
		return false;
	if (!r->accts_loaded) {
		if (jmap_accounts_shared(r->store, r->user, false, &r->accts, &r->n_accts) != 0)
			return false;
		r->accts_loaded = true;
	}
	for (size_t i = 0; i < r->n_accts && a == NULL; i++) {
		if (strcmp(r->accts[i].id, id) == 0)
			a = &r->accts[i];
	}
	if (a == NULL)
		return false;
	if (r->prefix != a->prefix) {
		jmap_mailboxes_reset(r);
		r->prefix = a->prefix;
		r->account = a->id;
	}
	return true;
}

const char *
jmap_mbox_local_name(const struct jmap_req *r, const struct jmap_mbox *m)
{
	(void)r;
	return m->local;
}
