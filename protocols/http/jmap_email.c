/*
 * Email/get (RFC 8621 4.2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static const char *const own_default[] = {"id",       "blobId", "threadId",  "mailboxIds",
                                          "keywords", "size",   "receivedAt"};

static bool
prop_wanted(json_t *props, const char *name)
{
	return jmap_prop_wanted(props, own_default, sizeof(own_default) / sizeof(own_default[0]),
	                        name);
}

/* Does the call want anything that needs the message's bytes? */
static bool
needs_content(json_t *props)
{
	json_t *p;
	size_t i;

	if (props == NULL)
		return true;
	json_array_foreach(props, i, p)
	{
		const char *n = json_string_value(p);

		if (n != NULL && strcmp(n, "id") != 0 && !prop_wanted(NULL, n))
			return true;
	}
	return false;
}

static json_t *
email_json(struct jmap_req *r, struct jmap_mbc *c, const struct msg_record *rec, json_t *props,
           json_t *args)
{
	char id[JMAP_ID_LEN + 1], date[21];
	const struct jmap_mbox *m = c->m;
	json_t *o = NULL;
	uint64_t thread = 0;

	if (needs_content(props)) {
		struct msg_view v;
		struct message *msg;
		char prefix[JMAP_ID_LEN + 1];

		if (jmap_read_message(c, rec->uid, &v, &msg) != 0)
			return NULL;
		jmap_email_id('E', rec->emailid, prefix);
		o = jmap_msg_email(msg, props, json_object_get(args, "bodyProperties"), args,
		                   prefix + 1);
		thread = message_thread_id(v.data, v.len, rec->emailid);
		message_free(&msg);
		msg_view_release(&v);
	} else {
		o = json_object();
	}
	jmap_email_id('E', rec->emailid, id);
	json_object_set_new(o, "id", json_string(id));
	if (prop_wanted(props, "blobId")) {
		id[0] = 'B';
		json_object_set_new(o, "blobId", json_string(id));
	}
	if (prop_wanted(props, "threadId")) {
		jmap_email_id('T', thread != 0 ? thread : jmap_thread_read(r, c->m, c->mb, rec),
		              id);
		json_object_set_new(o, "threadId", json_string(id));
	}
	if (prop_wanted(props, "mailboxIds"))
		json_object_set_new(o, "mailboxIds", jmap_email_mailbox_ids(r, rec->emailid, m));
	if (prop_wanted(props, "keywords"))
		json_object_set_new(o, "keywords", jmap_mbc_keywords(c, rec));
	if (prop_wanted(props, "size"))
		json_object_set_new(o, "size", json_integer((json_int_t)rec->size));
	if (prop_wanted(props, "receivedAt")) {
		jmap_utc_date(rec->internal_date, date);
		json_object_set_new(o, "receivedAt", json_string(date));
	}
	return o;
}

void
jmap_email_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *props;
	struct jmap_mbc_set set = {0};
	json_t *list, *not_found, *v, *seen;
	size_t i;

	/* All of them (ids null) only when few: clients are expected to query. */
	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_TOO_LARGE, tag,
	                        &ids) ||
	    !jmap_check_properties(r, args, tag, &props))
		return;
	list = json_array();
	not_found = json_array();
	seen = json_object();
	json_array_foreach(ids, i, v)
	{
		const struct jmap_mbox *m;
		const struct msg_record *rec;
		struct jmap_mbc *c;
		uint32_t uid;
		json_t *o = NULL;

		if (jmap_id_repeat(seen, json_string_value(v)))
			continue;
		if (jmap_email_parse(r, 'E', jmap_resolve_id(r, json_string_value(v)), &m, &uid) &&
		    (c = jmap_mbc_get(r, &set, m)) != NULL && (rec = jmap_mbc_find(c, uid)) != NULL)
			o = email_json(r, c, rec, props, args);
		if (o != NULL)
			json_array_append_new(list, o);
		else
			json_array_append(not_found, v);
	}
	json_decref(seen);
	jmap_mbc_free(&set);
	jmap_get_reply(r, "Email/get", NULL, list, not_found, tag);
}
