/*
 * Mailbox/get, /query and /set (RFC 8621 2). A JMAP mailbox is a storage
 * mailbox; its name here is the last component of the path and parentId
 * the mailbox of the rest. In a shared account the path is the one after
 * the account's prefix, and myRights tell the user's ACL rights there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static const char *
role_of(const struct jmap_mbox *m)
{
	if (strcmp(m->local, "INBOX") == 0)
		return "inbox";
	if (m->attrs & MBOX_DRAFTS)
		return "drafts";
	if (m->attrs & MBOX_SENT)
		return "sent";
	if (m->attrs & MBOX_TRASH)
		return "trash";
	if (m->attrs & MBOX_JUNK)
		return "junk";
	if (m->attrs & MBOX_ARCHIVE)
		return "archive";
	return NULL;
}

static unsigned
role_attr(const char *role)
{
	static const struct {
		const char *role;
		unsigned attr;
	} roles[] = {{"drafts", MBOX_DRAFTS},
	             {"sent", MBOX_SENT},
	             {"trash", MBOX_TRASH},
	             {"junk", MBOX_JUNK},
	             {"archive", MBOX_ARCHIVE}};

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		if (strcmp(roles[i].role, role) == 0)
			return roles[i].attr;
	}
	return 0;
}

static int
sort_order(const struct jmap_mbox *m)
{
	static const char *const order[] = {"inbox", "drafts", "sent", "archive", "junk", "trash"};
	const char *role = role_of(m);

	for (size_t i = 0; role != NULL && i < sizeof(order) / sizeof(order[0]); i++) {
		if (strcmp(order[i], role) == 0)
			return (int)i + 1;
	}
	return 10;
}

static const struct jmap_mbox *
parent_of(struct jmap_req *r, const struct jmap_mbox *m)
{
	const char *slash = strrchr(m->name, '/');
	char *pname;
	const struct jmap_mbox *p;

	if (slash == NULL)
		return NULL;
	pname = xstrndup(m->name, (size_t)(slash - m->name));
	p = jmap_mbox_by_name(r, pname);
	free(pname);
	return p;
}

/* myRights (RFC 8621 2) from the ACL rights (RFC 4314 and RFC 8621 2's
 * own mapping): removing needs t and e, as IMAP's STORE \Deleted and
 * EXPUNGE do. mayRename stays false: Mailbox/set renames nothing. Only the
 * personal account submits (EmailSubmission is the user's own). */
static json_t *
rights_json(const struct jmap_req *r, const struct jmap_mbox *m, bool inbox)
{
	unsigned a = m->rights;

	return json_pack("{sbsbsbsbsbsbsbsbsb}", "mayReadItems", (a & ACL_READ) != 0, "mayAddItems",
	                 (a & ACL_INSERT) != 0, "mayRemoveItems",
	                 (a & (ACL_DELETED | ACL_EXPUNGE)) == (ACL_DELETED | ACL_EXPUNGE),
	                 "maySetSeen", (a & ACL_SEEN) != 0, "maySetKeywords", (a & ACL_WRITE) != 0,
	                 "mayCreateChild", (a & ACL_CREATE) != 0, "mayRename", 0, "mayDelete",
	                 (a & ACL_DELETE) != 0 && !(inbox && !jmap_account_shared(r)), "maySubmit",
	                 !jmap_account_shared(r));
}

static json_t *
mailbox_json(struct jmap_req *r, const struct jmap_mbox *m)
{
	const struct jmap_mbox *parent = parent_of(r, m);
	const char *local = jmap_mbox_local_name(r, m);
	const char *slash = strrchr(local, '/');
	const char *role = role_of(m);
	bool inbox = strcmp(local, "INBOX") == 0;
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(m->id));
	json_object_set_new(o, "name", json_string(inbox ? "Inbox" : slash ? slash + 1 : local));
	json_object_set_new(o, "parentId", parent ? json_string(parent->id) : json_null());
	json_object_set_new(o, "role", role ? json_string(role) : json_null());
	json_object_set_new(o, "sortOrder", json_integer(sort_order(m)));
	json_object_set_new(o, "totalEmails", json_integer(m->st.messages));
	json_object_set_new(o, "unreadEmails", json_integer(m->st.unseen));
	json_object_set_new(o, "totalThreads", json_integer(m->st.messages));
	json_object_set_new(o, "unreadThreads", json_integer(m->st.unseen));
	json_object_set_new(o, "myRights", rights_json(r, m, inbox));
	json_object_set_new(o, "isSubscribed", json_boolean(m->attrs & MBOX_SUBSCRIBED));
	return o;
}

/* Keep only the properties asked for (id always). */
static void
filter_props(json_t *o, json_t *props)
{
	const char *key;
	json_t *v, *tmp;

	if (!json_is_array(props))
		return;
	json_object_foreach_safe(o, tmp, key, v)
	{
		bool keep = strcmp(key, "id") == 0;
		json_t *p;
		size_t i;

		json_array_foreach(props, i, p)
		{
			if (json_is_string(p) && strcmp(json_string_value(p), key) == 0)
				keep = true;
		}
		if (!keep)
			json_object_del(o, key);
	}
}

void
jmap_mailbox_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *props = json_object_get(args, "properties");
	json_t *list, *not_found;

	if (!jmap_check_account(r, args, tag))
		return;
	if (jmap_mailboxes(r) != 0) {
		jmap_error(r, "serverFail", NULL, tag);
		return;
	}
	if (!jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_ALL, tag, &ids))
		return;
	list = json_array();
	not_found = json_array();
	if (json_is_array(ids)) {
		json_t *v, *seen = json_object();
		size_t i;

		json_array_foreach(ids, i, v)
		{
			const struct jmap_mbox *m = jmap_mbox_by_id(r, json_string_value(v));

			if (jmap_id_repeat(seen, json_string_value(v)))
				continue;
			if (m != NULL)
				json_array_append_new(list, mailbox_json(r, m));
			else
				json_array_append(not_found, v);
		}
		json_decref(seen);
	} else {
		for (size_t i = 0; i < r->n_mboxes; i++)
			json_array_append_new(list, mailbox_json(r, &r->mboxes[i]));
	}
	{
		json_t *o;
		size_t i;

		json_array_foreach(list, i, o)
		{
			filter_props(o, props);
		}
	}
	jmap_get_reply(r, "Mailbox/get", NULL, list, not_found, tag);
}

static bool
mailbox_matches(struct jmap_req *r, const struct jmap_mbox *m, json_t *filter)
{
	json_t *v;

	if (!json_is_object(filter))
		return true;
	if ((v = json_object_get(filter, "role")) != NULL) {
		const char *role = role_of(m);

		if (json_is_null(v) ? role != NULL
		                    : role == NULL || strcmp(role, json_string_value(v) ?: "") != 0)
			return false;
	}
	if ((v = json_object_get(filter, "hasAnyRole")) != NULL &&
	    json_is_true(v) != (role_of(m) != NULL))
		return false;
	if ((v = json_object_get(filter, "isSubscribed")) != NULL &&
	    json_is_true(v) != ((m->attrs & MBOX_SUBSCRIBED) != 0))
		return false;
	if ((v = json_object_get(filter, "parentId")) != NULL) {
		const struct jmap_mbox *p = parent_of(r, m);

		if (json_is_null(v) ? p != NULL
		                    : p == NULL || strcmp(p->id, json_string_value(v) ?: "") != 0)
			return false;
	}
	if ((v = json_object_get(filter, "name")) != NULL && json_is_string(v)) {
		const char *local = jmap_mbox_local_name(r, m);
		const char *slash = strrchr(local, '/');

		if (strstr(slash ? slash + 1 : local, json_string_value(v)) == NULL)
			return false;
	}
	return true;
}

static int
cmp_mbox(const void *a, const void *b)
{
	const struct jmap_mbox *x = *(const struct jmap_mbox *const *)a;
	const struct jmap_mbox *y = *(const struct jmap_mbox *const *)b;
	int d = sort_order(x) - sort_order(y);

	return d != 0 ? d : strcmp(x->name, y->name);
}

/* The mailboxes matching filter, sorted, into a new array (*n_r of them);
 * NULL once an error response was written. */
static const struct jmap_mbox **
mailbox_query_run(struct jmap_req *r, json_t *filter, const char *tag, size_t *n_r)
{
	const struct jmap_mbox **sel;
	size_t n = 0;

	if (jmap_mailboxes(r) != 0) {
		jmap_error(r, "serverFail", NULL, tag);
		return NULL;
	}
	if (filter != NULL && !json_is_null(filter) && !json_is_object(filter)) {
		jmap_error(r, "invalidArguments", "filter", tag);
		return NULL;
	}
	sel = xcalloc(r->n_mboxes + 1, sizeof(*sel));
	for (size_t i = 0; i < r->n_mboxes; i++) {
		if (mailbox_matches(r, &r->mboxes[i], filter))
			sel[n++] = &r->mboxes[i];
	}
	if (n > 1)
		qsort(sel, n, sizeof(*sel), cmp_mbox);
	*n_r = n;
	return sel;
}

void
jmap_mailbox_query(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *filter = json_object_get(args, "filter"), *ids;
	const struct jmap_mbox **sel;
	struct buf st = BUF_INIT(0);
	json_int_t pos = json_integer_value(json_object_get(args, "position"));
	json_t *limit = json_object_get(args, "limit");
	size_t n = 0;

	if (!jmap_check_account(r, args, tag))
		return;
	if ((sel = mailbox_query_run(r, filter, tag, &n)) == NULL)
		return;
	if (pos < 0)
		pos = (json_int_t)n + pos < 0 ? 0 : (json_int_t)n + pos;
	ids = json_array();
	for (size_t i = (size_t)pos; i < n; i++) {
		if (json_is_integer(limit) &&
		    json_array_size(ids) >= (size_t)json_integer_value(limit))
			break;
		json_array_append_new(ids, json_string(sel[i]->id));
	}
	jmap_state(r, &st);
	jmap_reply(r, "Mailbox/query",
	           json_pack("{sssssbsosIsI}", "accountId", r->account, "queryState",
	                     (char *)st.data, "canCalculateChanges",
	                     json_object_get(filter, "isSubscribed") == NULL, "ids", ids,
	                     "position", (json_int_t)pos, "total", (json_int_t)n),
	           tag);
	free(sel);
	buf_free(&st);
}

/*
 * Mailbox/queryChanges (RFC 8620 5.6): the mailboxes created, updated or
 * destroyed since the old state are removed and, when in the results now,
 * added at their index. A mailbox's name, parent and role change only
 * with a change the state records (its name's hash), so the others keep
 * their order. Subscriptions are not in the state: a filter on
 * isSubscribed cannot be followed.
 */
void
jmap_mailbox_query_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *since = json_string_value(json_object_get(args, "sinceQueryState"));
	json_t *filter = json_object_get(args, "filter"),
	       *max_j = json_object_get(args, "maxChanges");
	json_t *removed, *changed, *added, *a;
	const struct jmap_mbox **sel;
	struct buf st = BUF_INIT(0);
	const char *why;
	size_t n = 0;

	if (!jmap_check_account(r, args, tag))
		return;
	/* upToId: every property a Mailbox is sorted or filtered by can
	 * change (name, sortOrder, parentId, role), so RFC 8620 5.6 has it
	 * ignored: it is checked and every change is told. */
	if (since == NULL ||
	    (max_j != NULL && !json_is_null(max_j) &&
	     (!json_is_integer(max_j) || json_integer_value(max_j) <= 0)) ||
	    (json_object_get(args, "upToId") != NULL &&
	     !json_is_null(json_object_get(args, "upToId")) &&
	     !json_is_string(json_object_get(args, "upToId")))) {
		jmap_error(r, "invalidArguments", "sinceQueryState, maxChanges or upToId", tag);
		return;
	}
	if (json_object_get(filter, "isSubscribed") != NULL) {
		jmap_error(r, "cannotCalculateChanges", "subscriptions are not in the state", tag);
		return;
	}
	if ((sel = mailbox_query_run(r, filter, tag, &n)) == NULL)
		return;
	if ((why = jmap_mailbox_changes_since(r, since, &removed, &changed)) != NULL) {
		free(sel);
		jmap_error(r, "cannotCalculateChanges", why, tag);
		return;
	}
	added = json_array();
	for (size_t i = 0; i < n; i++) {
		if (json_object_get(changed, sel[i]->id) != NULL)
			json_array_append_new(
			    added, json_pack("{sssI}", "id", sel[i]->id, "index", (json_int_t)i));
	}
	json_decref(changed);
	free(sel);
	if (json_is_integer(max_j) &&
	    json_array_size(removed) + json_array_size(added) > (size_t)json_integer_value(max_j)) {
		json_decref(removed);
		json_decref(added);
		jmap_error(r, "tooManyChanges", NULL, tag);
		return;
	}
	jmap_state(r, &st);
	a = json_pack("{sssssssoso}", "accountId", r->account, "oldQueryState", since,
	              "newQueryState", (char *)st.data, "removed", removed, "added", added);
	if (json_is_true(json_object_get(args, "calculateTotal")))
		json_object_set_new(a, "total", json_integer((json_int_t)n));
	jmap_reply(r, "Mailbox/queryChanges", a, tag);
	buf_free(&st);
}

static json_t *
create_one(struct jmap_req *r, void *ctx, json_t *obj, json_t **created_r)
{
	const char *name = json_string_value(json_object_get(obj, "name"));
	const char *parent = json_string_value(json_object_get(obj, "parentId"));
	const char *role = json_string_value(json_object_get(obj, "role"));
	const struct jmap_mbox *p = NULL, *m;
	struct buf full = BUF_INIT(0);
	int rc;

	if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL)
		return jmap_set_error("invalidProperties", "name");
	if (parent != NULL && (p = jmap_mbox_by_id(r, parent)) == NULL)
		return jmap_set_error("invalidProperties", "parentId");
	if (role != NULL && role_attr(role) == 0)
		return jmap_set_error("invalidProperties", "role");
	if (p != NULL)
		buf_printf(&full, "%s/", p->name);
	else if (r->prefix != NULL)
		buf_append_str(&full, r->prefix); /* storage checks the right to */
	buf_append_str(&full, name);
	rc = storage_create(r->store, r->user, (char *)full.data, role ? role_attr(role) : 0);
	if (rc == 0 && json_is_false(json_object_get(obj, "isSubscribed")) == false)
		(void)storage_subscribe(r->store, r->user, (char *)full.data, true);
	jmap_mailboxes_reset(r);
	if (rc != 0) {
		buf_free(&full);
		return jmap_storage_set_error(rc, "the name is not allowed");
	}
	m = jmap_mbox_by_name(r, (char *)full.data);
	buf_free(&full);
	if (m == NULL)
		return jmap_set_error("serverFail", NULL);
	*created_r = mailbox_json(r, m);
	return NULL;
}

static json_t *
update_one(struct jmap_req *r, void *ctx, const char *id, json_t *patch, json_t **updated_r)
{
	const struct jmap_mbox *m = jmap_mbox_by_id(r, id);
	const char *key;
	json_t *v;
	char *name;
	int rc = 0;

	if (m == NULL)
		return jmap_set_error("notFound", NULL);
	name = xstrdup(m->name);
	json_object_foreach(patch, key, v)
	{
		if (strcmp(key, "isSubscribed") == 0 && json_is_boolean(v)) {
			rc = storage_subscribe(r->store, r->user, name, json_is_true(v));
		} else if (strcmp(key, "sortOrder") == 0) {
			continue; /* fixed by role here */
		} else {
			free(name);
			/* A rename would change the id (ids come from names). */
			return jmap_set_error("invalidProperties", key);
		}
		if (rc != 0)
			break;
	}
	free(name);
	jmap_mailboxes_reset(r);
	return rc != 0 ? jmap_storage_set_error(rc, "the name is not allowed") : NULL;
}

/* ctx: onDestroyRemoveEmails (a bool). */
static json_t *
destroy_one(struct jmap_req *r, void *ctx, const char *id)
{
	bool remove_emails = *(const bool *)ctx;
	const struct jmap_mbox *m = jmap_mbox_by_id(r, id);
	int rc;

	if (m == NULL)
		return jmap_set_error("notFound", NULL);
	if (m->st.messages > 0 && !remove_emails)
		return jmap_set_error("mailboxHasEmail", NULL);
	for (size_t i = 0; i < r->n_mboxes; i++) {
		const char *n = r->mboxes[i].name;

		if (strncmp(n, m->name, strlen(m->name)) == 0 && n[strlen(m->name)] == '/')
			return jmap_set_error("mailboxHasChild", NULL);
	}
	rc = storage_delete(r->store, r->user, m->name);
	jmap_mailboxes_reset(r);
	return rc != 0 ? jmap_storage_set_error(rc, "the name is not allowed") : NULL;
}

void
jmap_mailbox_set(struct jmap_req *r, json_t *args, const char *tag)
{
	static const struct jmap_set_ops ops = {
	    .name = "Mailbox/set",
	    .state = jmap_set_mail_state,
	    .create = create_one,
	    .update = update_one,
	    .destroy = destroy_one,
	};
	bool remove_emails = json_is_true(json_object_get(args, "onDestroyRemoveEmails"));

	jmap_set_run(r, args, tag, &ops, &remove_emails);
}
