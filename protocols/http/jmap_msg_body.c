/*
 * The body of a message as RFC 8621 4.1.4 sees it: the tree of parts with
 * their properties, parseStructure's textBody/htmlBody/attachments,
 * bodyStructure, the body values and the preview.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_msg.h"

static const char *const default_body_props[] = {
    "partId",  "blobId",      "size", "name",     "type",
    "charset", "disposition", "cid",  "language", "location",
};

static uint64_t
decoded_size(const struct message *msg, const struct message_part *p,
             const struct message_part_info *info)
{
	struct buf d = BUF_INIT(0);
	uint64_t n = p->body_len;

	if (strcmp(info->cte, "base64") == 0 || strcmp(info->cte, "quoted-printable") == 0) {
		if (message_part_decode(msg, p, &d) == 0)
			n = d.len;
		buf_free(&d);
	}
	return n;
}

void
jmap_part_build(struct walk *w, struct jpart *jp, const struct message_part *p, const char *path)
{
	size_t len;
	const uint8_t *data = message_data(w->msg, &len);

	jp->p = p;
	snprintf(jp->path, sizeof(jp->path), "%s", path);
	message_part_info(w->msg, p, &jp->info);
	jp->multipart = p->is_multipart;
	w->parts++;
	if (jp->multipart) {
		size_t n = 0, i = 0;

		for (const struct message_part *c = p->children; c != NULL; c = c->next)
			n++;
		jp->kids = xcalloc(n + 1, sizeof(*jp->kids));
		for (const struct message_part *c = p->children; c != NULL; c = c->next, i++) {
			char sub[PATH_MAX_LEN];

			snprintf(sub, sizeof(sub), "%s%s%zu", path, path[0] ? "." : "", i + 1);
			jmap_part_build(w, &jp->kids[i], c, sub);
		}
		jp->n_kids = n;
	} else {
		struct buf blob = BUF_INIT(0), type = BUF_INIT(0);
		const char *pid = path[0] != '\0' ? path : "1";
		json_t *o = json_object();

		buf_printf(&blob, "P%s_", w->blob_prefix);
		for (const char *c = pid; *c != '\0'; c++)
			buf_append_byte(&blob, *c == '.' ? '_' : (uint8_t)*c);
		buf_printf(&type, "%s/%s", jp->info.type, jp->info.subtype);
		json_object_set_new(o, "partId", json_string(pid));
		json_object_set_new(o, "blobId", json_string((char *)blob.data));
		json_object_set_new(o, "size",
		                    json_integer((json_int_t)decoded_size(w->msg, p, &jp->info)));
		json_object_set_new(o, "name",
		                    jp->info.name ? json_string(jp->info.name) ?: json_null()
		                                  : json_null());
		json_object_set_new(o, "type", json_string((char *)type.data) ?: json_string(""));
		json_object_set_new(o, "charset",
		                    strcmp(jp->info.type, "text") == 0 && jp->info.charset
		                        ? json_string(jp->info.charset) ?: json_null()
		                        : json_null());
		json_object_set_new(o, "disposition",
		                    jp->info.disposition[0] ? json_string(jp->info.disposition)
		                                            : json_null());
		json_object_set_new(o, "cid",
		                    jp->info.cid ? json_string(jp->info.cid) ?: json_null()
		                                 : json_null());
		json_object_set_new(o, "language",
		                    jp->info.language ? json_pack("[s]", jp->info.language)
		                                      : json_null());
		json_object_set_new(o, "location",
		                    jp->info.location
		                        ? json_string(jp->info.location) ?: json_null()
		                        : json_null());
		jp->json = o;
		buf_free(&blob);
		buf_free(&type);
	}
	(void)data;
}

void
jmap_part_free(struct jpart *jp)
{
	for (size_t i = 0; i < jp->n_kids; i++)
		jmap_part_free(&jp->kids[i]);
	free(jp->kids);
	message_part_info_free(&jp->info);
	json_decref(jp->json);
}

static bool
is_type(const struct jpart *p, const char *type, const char *sub)
{
	return strcmp(p->info.type, type) == 0 &&
	       (sub == NULL || strcmp(p->info.subtype, sub) == 0);
}

static bool
inline_media(const struct jpart *p)
{
	return is_type(p, "image", NULL) || is_type(p, "audio", NULL) || is_type(p, "video", NULL);
}

static void
push(struct plist *l, const struct jpart *p)
{
	if (l->null)
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = p;
}

/* RFC 8621 4.1.4 parseStructure. */
void
jmap_parse_structure(const struct jpart *parts, size_t n, const char *multi_type, bool in_alt,
                     struct plist *html, struct plist *text, struct plist *att)
{
	size_t text_len = text->null ? SIZE_MAX : text->n;
	size_t html_len = html->null ? SIZE_MAX : html->n;

	for (size_t i = 0; i < n; i++) {
		const struct jpart *p = &parts[i];
		bool is_inline = strcmp(p->info.disposition, "attachment") != 0 &&
		                 (is_type(p, "text", "plain") || is_type(p, "text", "html") ||
		                  inline_media(p)) &&
		                 (i == 0 || (strcmp(multi_type, "related") != 0 &&
		                             (inline_media(p) || p->info.name == NULL)));

		if (p->multipart) {
			const char *sub = p->info.subtype;

			jmap_parse_structure(p->kids, p->n_kids, sub,
			                     in_alt || strcmp(sub, "alternative") == 0, html, text,
			                     att);
		} else if (is_inline) {
			if (strcmp(multi_type, "alternative") == 0) {
				if (is_type(p, "text", "plain"))
					push(text, p);
				else if (is_type(p, "text", "html"))
					push(html, p);
				else
					push(att, p);
				continue;
			} else if (in_alt) {
				if (is_type(p, "text", "plain"))
					html->null = true;
				if (is_type(p, "text", "html"))
					text->null = true;
			}
			push(text, p);
			push(html, p);
			if ((text->null || html->null) && inline_media(p))
				push(att, p);
		} else {
			push(att, p);
		}
	}
	if (strcmp(multi_type, "alternative") == 0 && !text->null && !html->null) {
		if (text_len == text->n && html_len != html->n) {
			for (size_t i = html_len; i < html->n; i++)
				push(text, html->v[i]);
		}
		if (html_len == html->n && text_len != text->n) {
			for (size_t i = text_len; i < text->n; i++)
				push(html, text->v[i]);
		}
	}
}

static json_t *
filtered(json_t *o, json_t *props)
{
	json_t *c = json_object();
	const char *key;
	json_t *v;

	if (props == NULL) {
		for (size_t i = 0; i < sizeof(default_body_props) / sizeof(default_body_props[0]);
		     i++) {
			json_t *x = json_object_get(o, default_body_props[i]);

			if (x != NULL)
				json_object_set(c, default_body_props[i], x);
		}
		return c;
	}
	json_object_foreach(o, key, v)
	{
		json_t *p;
		size_t i;

		json_array_foreach(props, i, p)
		{
			if (json_is_string(p) && strcmp(json_string_value(p), key) == 0)
				json_object_set(c, key, v);
		}
	}
	return c;
}

/* Body properties a leaf does not carry precomputed (headers, header:*). */
static void
part_extra(const struct message *msg, const struct jpart *jp, json_t *props, json_t *o)
{
	struct field *f;
	size_t n;
	json_t *p;
	size_t i;

	if (props == NULL)
		return;
	f = jmap_fields_of(msg, jp->p, &n);
	json_array_foreach(props, i, p)
	{
		const char *name = json_string_value(p);

		if (name == NULL)
			continue;
		if (strcmp(name, "headers") == 0) {
			json_object_set_new(o, "headers", jmap_headers_list(f, n));
		} else if (strncmp(name, "header:", 7) == 0) {
			json_t *v = jmap_header_prop(f, n, name);

			if (v != NULL)
				json_object_set_new(o, name, v);
		} else if (strcmp(name, "subParts") == 0 && !jp->multipart) {
			json_object_set_new(o, "subParts", json_null());
		}
	}
	jmap_fields_free(f, n);
}

json_t *
jmap_structure_json(const struct message *msg, const struct jpart *jp, json_t *props)
{
	json_t *o;

	if (!jp->multipart) {
		o = filtered(jp->json, props);
	} else {
		struct buf type = BUF_INIT(0);
		json_t *kids = json_array();
		json_t *all = json_object();

		buf_printf(&type, "multipart/%s", jp->info.subtype);
		json_object_set_new(all, "partId", json_null());
		json_object_set_new(all, "blobId", json_null());
		json_object_set_new(all, "size", json_integer((json_int_t)jp->p->body_len));
		json_object_set_new(all, "name", json_null());
		json_object_set_new(all, "type", json_string((char *)type.data) ?: json_string(""));
		json_object_set_new(all, "charset", json_null());
		json_object_set_new(all, "disposition",
		                    jp->info.disposition[0] ? json_string(jp->info.disposition)
		                                            : json_null());
		json_object_set_new(all, "cid", json_null());
		json_object_set_new(all, "language", json_null());
		json_object_set_new(all, "location", json_null());
		o = filtered(all, props);
		json_decref(all);
		buf_free(&type);
		for (size_t i = 0; i < jp->n_kids; i++)
			json_array_append_new(kids, jmap_structure_json(msg, &jp->kids[i], props));
		json_object_set_new(o, "subParts", kids);
	}
	part_extra(msg, jp, props, o);
	return o;
}

json_t *
jmap_part_list(const struct message *msg, const struct plist *l, json_t *props)
{
	json_t *a = json_array();

	for (size_t i = 0; !l->null && i < l->n; i++) {
		json_t *o = filtered(l->v[i]->json, props);

		part_extra(msg, l->v[i], props, o);
		json_array_append_new(a, o);
	}
	return a;
}

/* A body value, cut at max bytes on a character boundary (0 = whole). */
static json_t *
body_value(const struct message *msg, const struct jpart *p, size_t max)
{
	struct buf t = BUF_INIT(0);
	bool problem, cut = false;
	json_t *o;

	message_part_text(msg, p->p, &t, &problem);
	if (max > 0 && t.len > max) {
		size_t n = max;

		while (n > 0 && (t.data[n] & 0xc0) == 0x80)
			n--;
		buf_truncate(&t, n);
		cut = true;
	}
	o = json_pack("{sssbsb}", "value", (const char *)t.data ?: "", "isEncodingProblem", problem,
	              "isTruncated", cut);
	if (o == NULL)
		o = json_pack("{sssbsb}", "value", "", "isEncodingProblem", 1, "isTruncated", cut);
	buf_free(&t);
	return o;
}

void
jmap_body_values_add(const struct message *msg, const struct plist *l, size_t max, json_t *values)
{
	for (size_t i = 0; !l->null && i < l->n; i++) {
		const char *pid = json_string_value(json_object_get(l->v[i]->json, "partId"));

		if (is_type(l->v[i], "text", NULL) && json_object_get(values, pid) == NULL)
			json_object_set_new(values, pid, body_value(msg, l->v[i], max));
	}
}
