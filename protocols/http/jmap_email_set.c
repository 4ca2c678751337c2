/*
 * Email/set, Email/import, Email/copy and Email/parse (RFC 8621 4.6-4.9).
 * A message is in exactly one mailbox here (maxMailboxesPerEmail 1):
 * changing mailboxIds moves it, and the moved message has a new id (see
 * jmap_impl.h), which /changes reports as destroyed and created.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/message.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

#define MAX_KEYWORDS 64

/* Keywords object -> system flags and other keyword names. */
struct kwset {
	uint32_t flags;
	const char *names[MAX_KEYWORDS];
	size_t n;
};

static bool
keywords_parse(json_t *kw, struct kwset *k)
{
	const char *key;
	json_t *v;

	memset(k, 0, sizeof(*k));
	if (kw == NULL || json_is_null(kw))
		return true;
	if (!json_is_object(kw))
		return false;
	json_object_foreach(kw, key, v)
	{
		uint32_t f = jmap_keyword_flag(key);

		if (!json_is_true(v))
			return false;
		if (f != 0)
			k->flags |= f;
		else if (k->n < MAX_KEYWORDS && storage_keyword_valid(key) && key[0] != '\\')
			k->names[k->n++] = key;
		else
			return false;
	}
	return true;
}

/* The one mailbox of a mailboxIds object; NULL (and *why) otherwise. */
static const struct jmap_mbox *
single_mailbox(struct jmap_req *r, json_t *ids, const char **why)
{
	const struct jmap_mbox *m = NULL;
	const char *key;
	json_t *v;

	*why = "mailboxIds";
	json_object_foreach(ids, key, v)
	{
		if (!json_is_true(v))
			continue;
		if (m != NULL) {
			*why = "mailboxIds: one mailbox per email on this server";
			return NULL;
		}
		m = jmap_mbox_by_id(r, key);
		if (m == NULL)
			return NULL;
	}
	return m;
}

static json_t *
created_json(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid, size_t size)
{
	char id[JMAP_ID_LEN + 1], blob[JMAP_ID_LEN + 1], thread[JMAP_ID_LEN + 1];
	uint64_t emailid = jmap_emailid_at(r, m, uid);

	jmap_email_id('E', emailid, id);
	jmap_email_id('B', emailid, blob);
	jmap_email_id('T', jmap_thread_at(r, m, uid, emailid), thread);
	return json_pack("{sssssssI}", "id", id, "blobId", blob, "threadId", thread, "size",
	                 (json_int_t)size);
}

/* Append msg[0..len) to m with keywords and date; the created object. */
static json_t *
store_new(struct jmap_req *r, const struct jmap_mbox *m, const uint8_t *msg, size_t len,
          const struct kwset *k, int64_t when, json_t **err_r)
{
	struct msg_input in = {.data = msg, .len = len, .fd = -1};
	uint32_t uv, uid;
	int rc;

	in.flags = k->flags;
	in.keywords = k->names;
	in.n_keywords = k->n;
	in.internal_date = when;
	rc = storage_append(r->store, r->user, m->name, &in, &uv, &uid);
	if (rc != 0) {
		*err_r = jmap_storage_set_error(rc, NULL);
		return NULL;
	}
	{
		/* The list is read again (the mailbox's status changed); m
		 * points into the old one. */
		char *name = xstrdup(m->name);

		jmap_mailboxes_reset(r);
		m = jmap_mbox_by_name(r, name);
		free(name);
	}
	if (m == NULL) {
		*err_r = jmap_set_error("serverFail", NULL);
		return NULL;
	}
	return created_json(r, m, uid, len);
}

static json_t *
create_one(struct jmap_req *r, json_t *e, json_t **err_r)
{
	struct buf msg = BUF_INIT(r->s->svc->cfg->max_message_size);
	const struct jmap_mbox *m;
	const char *why = NULL, *recv = json_string_value(json_object_get(e, "receivedAt"));
	struct kwset k;
	int64_t when = 0;
	json_t *o = NULL;

	m = single_mailbox(r, json_object_get(e, "mailboxIds"), &why);
	if (m == NULL) {
		*err_r = jmap_set_error("invalidProperties", why);
		return NULL;
	}
	if (!keywords_parse(json_object_get(e, "keywords"), &k)) {
		*err_r = jmap_set_error("invalidProperties", "keywords");
		return NULL;
	}
	if (recv != NULL && jmap_parse_date(recv, &when) != 0) {
		*err_r = jmap_set_error("invalidProperties", "receivedAt");
		return NULL;
	}
	if (!jmap_build_message(r, e, &msg, &why)) {
		*err_r = jmap_set_error(strncmp(why, "attachments", 11) == 0 ? "blobNotFound"
		                                                             : "invalidProperties",
		                        why);
	} else {
		o = store_new(r, m, msg.data, msg.len, &k, when, err_r);
	}
	buf_free(&msg);
	return o;
}

static int
store(struct jmap_mbc *c, uint32_t uid, const struct store_req *req)
{
	uint32_t *modified = NULL;
	size_t n_modified = 0;
	int rc = mailbox_store(c->mb, &uid, 1, req, &modified, &n_modified);

	free(modified);
	return rc;
}

/* One keyword change of a patch ("keywords/$seen": true or null). */
static int
store_keyword(struct jmap_mbc *c, uint32_t uid, const char *kw, bool on)
{
	struct store_req req = {.mode = on ? STORE_ADD : STORE_REMOVE};
	const char *names[1] = {kw};
	uint32_t f = jmap_keyword_flag(kw);

	if (f != 0) {
		req.flags = f;
	} else {
		if (!storage_keyword_valid(kw))
			return ROOST_EINVAL;
		req.keywords = names;
		req.n_keywords = 1;
	}
	return store(c, uid, &req);
}

/*
 * An Email may be in several mailboxes (an IMAP COPY keeps its EMAILID):
 * keywords change in every copy, so the Email has one set of them; new
 * mailboxIds (one mailbox here) keep the copy already there, or move the
 * first one there, and expunge the others.
 */
static json_t *
update_one(struct jmap_req *r, struct jmap_mbc_set *set, const char *id, json_t *patch)
{
	const struct jmap_mbox *mbs[JMAP_MAX_LOCATIONS], *dest = NULL;
	struct jmap_mbc *cs[JMAP_MAX_LOCATIONS];
	uint32_t uids[JMAP_MAX_LOCATIONS];
	size_t n = jmap_email_locate(r, id, mbs, uids, JMAP_MAX_LOCATIONS);
	const char *key;
	json_t *v, *boxes = NULL;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		if ((cs[i] = jmap_mbc_get(r, set, mbs[i])) == NULL ||
		    jmap_mbc_find(cs[i], uids[i]) == NULL)
			return jmap_set_error("notFound", NULL);
	}
	if (n == 0)
		return jmap_set_error("notFound", NULL);
	json_object_foreach(patch, key, v)
	{
		if (strcmp(key, "keywords") == 0) {
			struct kwset k;
			struct store_req req = {.mode = STORE_REPLACE};

			if (!keywords_parse(v, &k))
				return jmap_set_error("invalidProperties", "keywords");
			req.flags = k.flags;
			req.keywords = k.names;
			req.n_keywords = k.n;
			for (size_t i = 0; i < n && rc == 0; i++)
				rc = store(cs[i], uids[i], &req);
		} else if (strncmp(key, "keywords/", 9) == 0) {
			if (!json_is_true(v) && !json_is_null(v))
				return jmap_set_error("invalidProperties", key);
			for (size_t i = 0; i < n && rc == 0; i++)
				rc = store_keyword(cs[i], uids[i], key + 9, json_is_true(v));
			if (rc == ROOST_EINVAL)
				return jmap_set_error("invalidProperties", key);
		} else if (strcmp(key, "mailboxIds") == 0) {
			boxes = json_deep_copy(v);
		} else if (strncmp(key, "mailboxIds/", 11) == 0) {
			if (boxes == NULL)
				boxes = json_pack("{sb}", mbs[0]->id, 1);
			if (json_is_true(v))
				json_object_set_new(boxes, key + 11, json_true());
			else
				json_object_del(boxes, key + 11);
		} else {
			json_decref(boxes);
			return jmap_set_error("invalidProperties", key);
		}
		if (rc != 0) {
			json_decref(boxes);
			return jmap_storage_set_error(rc, NULL);
		}
	}
	if (boxes != NULL) {
		const char *why;
		size_t keep = n;

		dest = single_mailbox(r, boxes, &why);
		json_decref(boxes);
		if (dest == NULL)
			return jmap_set_error("invalidProperties", why);
		for (size_t i = 0; i < n; i++) {
			if (mbs[i] == dest && keep == n)
				keep = i;
		}
		if (keep == n) {
			uint32_t dv, *src_uids = NULL, *dst_uids = NULL;
			size_t nc = 0;

			rc = mailbox_copy(cs[0]->mb, &uids[0], 1, dest->name, true, &dv, &src_uids,
			                  &dst_uids, &nc);
			free(src_uids);
			free(dst_uids);
			if (rc != 0)
				return jmap_storage_set_error(rc, NULL);
			keep = 0;
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			if (i != keep)
				rc = mailbox_expunge(cs[i]->mb, &uids[i], 1);
		}
		if (rc != 0)
			return jmap_storage_set_error(rc, NULL);
	}
	return NULL;
}

static json_t *
set_create(struct jmap_req *r, void *ctx, json_t *obj, json_t **created_r)
{
	json_t *err = NULL;

	*created_r = create_one(r, obj, &err);
	return *created_r != NULL ? NULL : err;
}

static json_t *
set_update(struct jmap_req *r, void *ctx, const char *id, json_t *patch, json_t **updated_r)
{
	return update_one(r, ctx, id, patch);
}

/* The Email leaves every mailbox it is in. */
static json_t *
set_destroy(struct jmap_req *r, void *ctx, const char *id)
{
	const struct jmap_mbox *mbs[JMAP_MAX_LOCATIONS];
	uint32_t uids[JMAP_MAX_LOCATIONS];
	size_t n = jmap_email_locate(r, id, mbs, uids, JMAP_MAX_LOCATIONS);
	int rc = 0;

	if (n == 0)
		return jmap_set_error("notFound", NULL);
	for (size_t k = 0; k < n && rc == 0; k++) {
		struct jmap_mbc *c = jmap_mbc_get(r, ctx, mbs[k]);

		rc = c == NULL ? ROOST_ENOTFOUND : mailbox_expunge(c->mb, &uids[k], 1);
	}
	return rc != 0 ? jmap_storage_set_error(rc, NULL) : NULL;
}

/* The mailboxes opened for the call are closed before newState. */
static void
set_done(struct jmap_req *r, void *ctx)
{
	jmap_mbc_free(ctx);
	jmap_mailboxes_reset(r);
}

void
jmap_email_set(struct jmap_req *r, json_t *args, const char *tag)
{
	static const struct jmap_set_ops ops = {
	    .name = "Email/set",
	    .state = jmap_set_mail_state,
	    .create = set_create,
	    .update = set_update,
	    .destroy = set_destroy,
	    .done = set_done,
	};
	struct jmap_mbc_set set = {0};

	jmap_set_run(r, args, tag, &ops, &set);
}

/* An RFC 5322 message starts with a header field ("name:"), whatever its
 * body: anything else (an empty blob, a picture) is not an Email. */
static bool
looks_like_message(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len && i < 998 && p[i] > 32 && p[i] < 127 && p[i] != ':')
		i++;
	return i > 0 && i < len && p[i] == ':';
}

void
jmap_email_import(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *emails = json_object_get(args, "emails"), *created = json_object();
	json_t *not_created = json_object(), *v;
	struct buf old = BUF_INIT(0), st = BUF_INIT(0);
	const char *key, *if_in = json_string_value(json_object_get(args, "ifInState"));

	if (!jmap_check_account(r, args, tag))
		goto out;
	if (!json_is_object(emails)) {
		jmap_error(r, "invalidArguments", "emails", tag);
		goto out;
	}
	if (json_object_size(emails) > JMAP_MAX_OBJECTS_SET) {
		jmap_error(r, "requestTooLarge", NULL, tag);
		goto out;
	}
	jmap_state(r, &old);
	if (if_in != NULL && strcmp(if_in, (char *)old.data) != 0) {
		jmap_error(r, "stateMismatch", NULL, tag);
		goto out;
	}
	json_object_foreach(emails, key, v)
	{
		struct buf data = BUF_INIT(r->s->svc->cfg->max_message_size);
		const char *blob = json_string_value(json_object_get(v, "blobId"));
		const char *recv = json_string_value(json_object_get(v, "receivedAt"));
		const struct jmap_mbox *m;
		const char *why;
		struct kwset k;
		int64_t when = 0;
		json_t *err = NULL, *o = NULL;
		int rc;

		if ((m = single_mailbox(r, json_object_get(v, "mailboxIds"), &why)) == NULL)
			err = jmap_set_error("invalidProperties", why);
		else if (!keywords_parse(json_object_get(v, "keywords"), &k))
			err = jmap_set_error("invalidProperties", "keywords");
		else if (recv != NULL && jmap_parse_date(recv, &when) != 0)
			err = jmap_set_error("invalidProperties", "receivedAt");
		else if (blob == NULL)
			err = jmap_set_error("invalidProperties", "blobId");
		else if ((rc = jmap_blob_fetch(r, blob, &data)) != 0)
			err = rc == ROOST_ETOOBIG ? jmap_set_error("tooLarge", NULL)
			                          : jmap_set_error("blobNotFound", NULL);
		else if (!looks_like_message(data.data, data.len))
			err = jmap_set_error("invalidEmail", "no header field first");
		else
			o = store_new(r, m, data.data, data.len, &k, when, &err);
		if (o != NULL) {
			json_object_set_new(r->created_ids, key,
			                    json_incref(json_object_get(o, "id")));
			json_object_set_new(created, key, o);
		} else {
			json_object_set_new(not_created, key, err);
		}
		buf_free(&data);
	}
	jmap_state(r, &st);
	jmap_reply(r, "Email/import",
	           json_pack("{sssssssOsO}", "accountId", r->account, "oldState", (char *)old.data,
	                     "newState", (char *)st.data, "created", created, "notCreated",
	                     not_created),
	           tag);
out:
	json_decref(created);
	json_decref(not_created);
	buf_free(&old);
	buf_free(&st);
}

/* One Email/copy create as it goes: the destination by name (the account
 * is switched between the phases, which drops the mailbox list), then the
 * copy's UID and size. */
struct copy_one {
	const char *key;
	char *dest;
	uint32_t uid;
	size_t size;
	json_t *err;
};

/* Copy each create's Email, found in the account r works in now (from),
 * into its destination. */
static void
copy_from(struct jmap_req *r, json_t *create, struct copy_one *v, size_t n)
{
	struct jmap_mbc_set set = {0};

	for (size_t i = 0; i < n; i++) {
		const char *id =
		    json_string_value(json_object_get(json_object_get(create, v[i].key), "id"));
		const struct jmap_mbox *m;
		struct jmap_mbc *c;
		uint32_t uid, dv, *su = NULL, *du = NULL;
		size_t nc = 0;
		int rc;

		if (v[i].err != NULL)
			continue;
		if (!jmap_email_parse(r, 'E', id, &m, &uid) ||
		    (c = jmap_mbc_get(r, &set, m)) == NULL) {
			v[i].err = jmap_set_error("notFound", NULL);
			continue;
		}
		rc = mailbox_copy(c->mb, &uid, 1, v[i].dest, false, &dv, &su, &du, &nc);
		if (rc != 0 || nc != 1) {
			v[i].err = rc != 0 ? jmap_storage_set_error(rc, NULL)
			                   : jmap_set_error("notFound", NULL);
		} else {
			const struct msg_record *rec = jmap_mbc_find(c, uid);

			v[i].uid = du[0];
			v[i].size = rec != NULL ? (size_t)rec->size : 0;
		}
		free(su);
		free(du);
	}
	jmap_mbc_free(&set);
}

/*
 * Email/copy (RFC 8621 4.7): from any account of the user into any other
 * (or the same), e.g. from a mailbox another user shares into one's own.
 * Destinations are found in the target account, the Emails in the source
 * account, and storage copies as the user (r on the source, i on the
 * destination; the user's own \Seen goes along).
 */
void
jmap_email_copy(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *from = json_string_value(json_object_get(args, "fromAccountId"));
	json_t *create = json_object_get(args, "create"), *created = json_object();
	json_t *not_created = json_object(), *v;
	struct buf old = BUF_INIT(0), st = BUF_INIT(0);
	struct copy_one *ones = NULL;
	size_t n = 0;
	char to[24];
	const char *key;

	if (!jmap_check_account(r, args, tag))
		goto out;
	snprintf(to, sizeof(to), "%s", r->account);
	if (from == NULL || !jmap_account_select(r, from)) {
		jmap_error(r, "fromAccountNotFound", NULL, tag);
		goto out;
	}
	(void)jmap_account_select(r, to);
	if (json_object_size(create) > JMAP_MAX_OBJECTS_SET) {
		jmap_error(r, "requestTooLarge", NULL, tag);
		goto out;
	}
	jmap_state(r, &old);
	ones = xcalloc(json_object_size(create) + 1, sizeof(*ones));
	json_object_foreach(create, key, v)
	{
		const struct jmap_mbox *dest;
		const char *why;

		ones[n].key = key;
		if (!json_is_string(json_object_get(v, "id")))
			ones[n].err = jmap_set_error("invalidProperties", "id");
		else if ((dest = single_mailbox(r, json_object_get(v, "mailboxIds"), &why)) == NULL)
			ones[n].err = jmap_set_error("invalidProperties", why);
		else
			ones[n].dest = xstrdup(dest->name);
		n++;
	}
	(void)jmap_account_select(r, from);
	copy_from(r, create, ones, n);
	(void)jmap_account_select(r, to);
	jmap_mailboxes_reset(r);
	for (size_t i = 0; i < n; i++) {
		const struct jmap_mbox *dest;

		if (ones[i].err != NULL) {
			json_object_set_new(not_created, ones[i].key, ones[i].err);
		} else if ((dest = jmap_mbox_by_name(r, ones[i].dest)) == NULL) {
			json_object_set_new(not_created, ones[i].key,
			                    jmap_set_error("serverFail", NULL));
		} else {
			json_t *o = created_json(r, dest, ones[i].uid, ones[i].size);

			json_object_set_new(r->created_ids, ones[i].key,
			                    json_incref(json_object_get(o, "id")));
			json_object_set_new(created, ones[i].key, o);
		}
		free(ones[i].dest);
	}
	jmap_state(r, &st);
	jmap_reply(r, "Email/copy",
	           json_pack("{sssssssssOsO}", "fromAccountId", from, "accountId", r->account,
	                     "oldState", (char *)old.data, "newState", (char *)st.data, "created",
	                     created, "notCreated", not_created),
	           tag);
out:
	free(ones);
	json_decref(created);
	json_decref(not_created);
	buf_free(&old);
	buf_free(&st);
}

void
jmap_email_parse_method(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids = json_object_get(args, "blobIds"), *parsed = json_object();
	json_t *not_parsable = json_array(), *not_found = json_array(), *v;
	json_t *props = json_object_get(args, "properties");
	size_t i;

	if (!jmap_check_account(r, args, tag))
		goto out;
	if (!json_is_array(ids)) {
		jmap_error(r, "invalidArguments", "blobIds", tag);
		goto out;
	}
	json_array_foreach(ids, i, v)
	{
		struct buf data = BUF_INIT(r->s->svc->cfg->max_message_size);
		const char *blob = json_string_value(v);
		struct message *msg;

		if (blob == NULL || jmap_blob_fetch(r, blob, &data) != 0) {
			json_array_append(not_found, v);
		} else if (message_parse(data.data, data.len, NULL, &msg) != 0) {
			json_array_append(not_parsable, v);
		} else {
			json_t *o = jmap_msg_email(msg, json_is_array(props) ? props : NULL,
			                           json_object_get(args, "bodyProperties"), args,
			                           "0000000000000000000000000000000");

			json_object_set_new(o, "blobId", json_string(blob));
			json_object_set_new(o, "size", json_integer((json_int_t)data.len));
			json_object_set_new(parsed, blob, o);
			message_free(&msg);
		}
		buf_free(&data);
	}
	jmap_reply(r, "Email/parse",
	           json_pack("{sssOsOsO}", "accountId", r->account, "parsed", parsed, "notParsable",
	                     not_parsable, "notFound", not_found),
	           tag);
out:
	json_decref(parsed);
	json_decref(not_parsable);
	json_decref(not_found);
}
