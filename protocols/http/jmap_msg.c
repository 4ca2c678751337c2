/*
 * A parsed message as RFC 8621 4.1 describes it: header fields in their
 * parsed forms, the body structure, textBody/htmlBody/attachments (by the
 * algorithm of 4.1.4), bodyValues and the preview. Here the Email object is
 * put together; the header forms are made in jmap_msg_header.c, the body
 * parts in jmap_msg_body.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_msg.h"

static const char *const default_props[] = {
    "messageId", "inReplyTo",  "references", "sender",   "from",        "to",
    "cc",        "bcc",        "replyTo",    "subject",  "sentAt",      "hasAttachment",
    "preview",   "bodyValues", "textBody",   "htmlBody", "attachments",
};

static bool
wants(json_t *props, const char *name)
{
	return jmap_prop_wanted(props, default_props,
	                        sizeof(default_props) / sizeof(default_props[0]), name);
}

json_t *
jmap_msg_email(const struct message *msg, json_t *props, json_t *body_props, json_t *opts,
               const char *blob_prefix)
{
	static const struct {
		const char *prop, *field;
		enum hform form;
	} hprops[] = {
	    {"messageId", "Message-ID", F_IDS},
	    {"inReplyTo", "In-Reply-To", F_IDS},
	    {"references", "References", F_IDS},
	    {"sender", "Sender", F_ADDRESSES},
	    {"from", "From", F_ADDRESSES},
	    {"to", "To", F_ADDRESSES},
	    {"cc", "Cc", F_ADDRESSES},
	    {"bcc", "Bcc", F_ADDRESSES},
	    {"replyTo", "Reply-To", F_ADDRESSES},
	    {"subject", "Subject", F_TEXT},
	    {"sentAt", "Date", F_DATE},
	};
	struct walk w = {msg, blob_prefix, 0};
	struct plist text = {0}, html = {0}, att = {0};
	struct jpart root;
	struct field *f;
	size_t n;
	json_t *o = json_object();

	memset(&root, 0, sizeof(root));
	jmap_part_build(&w, &root, message_root(msg), "");
	jmap_parse_structure(&root, 1, "mixed", false, &html, &text, &att);
	f = jmap_fields_of(msg, NULL, &n);
	for (size_t i = 0; i < sizeof(hprops) / sizeof(hprops[0]); i++) {
		if (wants(props, hprops[i].prop))
			json_object_set_new(
			    o, hprops[i].prop,
			    jmap_header_or_null(f, n, hprops[i].field, hprops[i].form));
	}
	if (wants(props, "headers"))
		json_object_set_new(o, "headers", jmap_headers_list(f, n));
	if (props != NULL) {
		json_t *p;
		size_t i;

		json_array_foreach(props, i, p)
		{
			const char *name = json_string_value(p);
			json_t *v;

			if (name != NULL && strncmp(name, "header:", 7) == 0 &&
			    (v = jmap_header_prop(f, n, name)) != NULL)
				json_object_set_new(o, name, v);
		}
	}
	if (wants(props, "hasAttachment"))
		json_object_set_new(o, "hasAttachment", json_boolean(!att.null && att.n > 0));
	if (wants(props, "preview")) {
		struct buf pv = BUF_INIT(0);

		message_preview(msg, &pv); /* as IMAP PREVIEW has it */
		json_object_set_new(o, "preview",
		                    json_string((const char *)pv.data ?: "") ?: json_string(""));
		buf_free(&pv);
	}
	if (wants(props, "bodyStructure"))
		json_object_set_new(o, "bodyStructure",
		                    jmap_structure_json(msg, &root, body_props));
	if (wants(props, "textBody"))
		json_object_set_new(o, "textBody", jmap_part_list(msg, &text, body_props));
	if (wants(props, "htmlBody"))
		json_object_set_new(o, "htmlBody", jmap_part_list(msg, &html, body_props));
	if (wants(props, "attachments"))
		json_object_set_new(o, "attachments", jmap_part_list(msg, &att, body_props));
	if (wants(props, "bodyValues")) {
		json_t *values = json_object();
		size_t max = (size_t)json_integer_value(json_object_get(opts, "maxBodyValueBytes"));
		bool all = json_is_true(json_object_get(opts, "fetchAllBodyValues"));

		if (all || json_is_true(json_object_get(opts, "fetchTextBodyValues")))
			jmap_body_values_add(msg, &text, max, values);
		if (all || json_is_true(json_object_get(opts, "fetchHTMLBodyValues")))
			jmap_body_values_add(msg, &html, max, values);
		if (all) {
			/* every text part, attachments included */
			jmap_body_values_add(msg, &att, max, values);
		}
		json_object_set_new(o, "bodyValues", values);
	}
	jmap_fields_free(f, n);
	free(text.v);
	free(html.v);
	free(att.v);
	jmap_part_free(&root);
	return o;
}

void
jmap_msg_preview(const struct message *msg, struct buf *out)
{
	json_t *props = json_pack("[s]", "preview");
	json_t *o = jmap_msg_email(msg, props, NULL, NULL, "0");

	buf_append_str(out, json_string_value(json_object_get(o, "preview")) ?: "");
	json_decref(o);
	json_decref(props);
}

bool
jmap_msg_has_attachment(const struct message *msg)
{
	json_t *props = json_pack("[s]", "hasAttachment");
	json_t *o = jmap_msg_email(msg, props, NULL, NULL, "0");
	bool has = json_is_true(json_object_get(o, "hasAttachment"));

	json_decref(o);
	json_decref(props);
	return has;
}

const struct message_part *
jmap_msg_find_part(const struct message *msg, const char *part_id)
{
	uint32_t path[64];
	size_t depth = 0;
	const struct message_part *p;
	const char *s = part_id;

	while (*s != '\0') {
		char *end;
		unsigned long v = strtoul(s, &end, 10);

		if (end == s || v == 0 || v > UINT32_MAX || depth == 64)
			return NULL;
		path[depth++] = (uint32_t)v;
		s = end;
		if (*s == '.')
			s++;
		else if (*s != '\0')
			return NULL;
	}
	if (message_find_part(msg, path, depth, &p) != 0)
		return NULL;
	return p;
}
