/*
 * SearchSnippet/get (RFC 8621 5): the subject and a window of the body with
 * the first text term of the filter marked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

/* The first text term of a filter (text, subject or body). */
static const char *
filter_term(json_t *f)
{
	const char *t;
	json_t *c;
	size_t i;

	if (!json_is_object(f))
		return NULL;
	if ((t = json_string_value(json_object_get(f, "text"))) != NULL ||
	    (t = json_string_value(json_object_get(f, "subject"))) != NULL ||
	    (t = json_string_value(json_object_get(f, "body"))) != NULL)
		return t;
	json_array_foreach(json_object_get(f, "conditions"), i, c)
	{
		if ((t = filter_term(c)) != NULL)
			return t;
	}
	return NULL;
}

static void
html_escape(const char *s, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '<':
			buf_append_str(out, "&lt;");
			break;
		case '>':
			buf_append_str(out, "&gt;");
			break;
		case '&':
			buf_append_str(out, "&amp;");
			break;
		case '"':
			buf_append_str(out, "&quot;");
			break;
		default:
			buf_append_byte(out, (uint8_t)s[i]);
		}
	}
}

/* text with the first occurrence of term marked; NULL when absent. */
static json_t *
highlight(const char *text, const char *term, size_t window)
{
	size_t tl = strlen(term), n = strlen(text), start = 0, end;
	const char *hit = strcasestr(text, term);
	struct buf out = BUF_INIT(0);
	json_t *j;

	if (hit == NULL || tl == 0)
		return json_null();
	if (window > 0 && (size_t)(hit - text) > window / 2) {
		start = (size_t)(hit - text) - window / 2;
		while (start < n && ((unsigned char)text[start] & 0xc0) == 0x80)
			start++;
	}
	end = window > 0 && start + window < n ? start + window : n;
	while (end < n && ((unsigned char)text[end] & 0xc0) == 0x80)
		end++;
	if (end < (size_t)(hit - text) + tl)
		end = (size_t)(hit - text) + tl;
	html_escape(text + start, (size_t)(hit - text) - start, &out);
	buf_append_str(&out, "<mark>");
	html_escape(hit, tl, &out);
	buf_append_str(&out, "</mark>");
	html_escape(hit + tl, end - ((size_t)(hit - text) + tl), &out);
	j = json_string((const char *)out.data) ?: json_null();
	buf_free(&out);
	return j;
}

void
jmap_snippet_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *list, *not_found, *v;
	const char *term = filter_term(json_object_get(args, "filter"));
	struct jmap_mbc_set set = {0};
	size_t i;

	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "emailIds", JMAP_MAX_OBJECTS_GET, JMAP_IDS_REQUIRED, tag,
	                        &ids))
		return;
	list = json_array();
	not_found = json_array();
	json_array_foreach(ids, i, v)
	{
		const struct jmap_mbox *m;
		struct jmap_mbc *c;
		struct msg_view view;
		struct message *msg;
		uint32_t uid;

		if (!jmap_email_parse(r, 'E', json_string_value(v), &m, &uid) ||
		    (c = jmap_mbc_get(r, &set, m)) == NULL || jmap_mbc_find(c, uid) == NULL ||
		    jmap_read_message(c, uid, &view, &msg) != 0) {
			json_array_append(not_found, v);
			continue;
		}
		{
			struct buf subj = BUF_INIT(0), body = BUF_INIT(0);
			json_t *o = json_pack("{sO}", "emailId", v);

			jmap_msg_header_text(msg, "Subject", &subj);
			message_body_text(msg, &body);
			json_object_set_new(o, "subject",
			                    term ? highlight((const char *)subj.data ?: "", term, 0)
			                         : json_null());
			json_object_set_new(
			    o, "preview",
			    term ? highlight((const char *)body.data ?: "", term, 200)
			         : json_null());
			json_array_append_new(list, o);
			buf_free(&subj);
			buf_free(&body);
		}
		message_free(&msg);
		msg_view_release(&view);
	}
	jmap_mbc_free(&set);
	jmap_reply(r, "SearchSnippet/get",
	           json_pack("{sssoso}", "accountId", r->account, "list", list, "notFound",
	                     json_array_size(not_found) ? not_found : json_null()),
	           tag);
	if (json_array_size(not_found) == 0)
		json_decref(not_found);
}
