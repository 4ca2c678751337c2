/*
 * A parsed message as RFC 8621 4.1 describes it: header fields in their
 * parsed forms, the body structure, textBody/htmlBody/attachments (by the
 * algorithm of 4.1.4), bodyValues and the preview.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

#define PREVIEW_CHARS 256
#define PATH_MAX_LEN 128

static const char *const default_props[] = {
    "messageId", "inReplyTo",  "references", "sender",   "from",        "to",
    "cc",        "bcc",        "replyTo",    "subject",  "sentAt",      "hasAttachment",
    "preview",   "bodyValues", "textBody",   "htmlBody", "attachments",
};
static const char *const default_body_props[] = {
    "partId",  "blobId",      "size", "name",     "type",
    "charset", "disposition", "cid",  "language", "location",
};

/* ---- header fields ---- */

struct field {
	char *name;
	char *raw; /* the value as written after the colon, folds kept */
};

/* Every field of the header block of part (NULL = the message). */
static struct field *
fields_of(const struct message *msg, const struct message_part *part, size_t *n_r)
{
	const struct message_part *p = part != NULL ? part : message_root(msg);
	size_t len;
	const uint8_t *data = message_data(msg, &len);
	const uint8_t *h = data + p->header_off, *end = h + p->header_len;
	struct field *f = NULL;
	size_t n = 0, cap = 0;

	while (h < end && *h != '\r' && *h != '\n') {
		const uint8_t *start = h, *colon;
		size_t flen;

		/* one field: up to a line end not followed by WSP */
		while (h < end) {
			const uint8_t *lf = memchr(h, '\n', (size_t)(end - h));

			h = lf != NULL ? lf + 1 : end;
			if (h >= end || (*h != ' ' && *h != '\t'))
				break;
		}
		flen = (size_t)(h - start);
		colon = memchr(start, ':', flen);
		if (colon == NULL)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			f = xreallocarray(f, cap, sizeof(*f));
		}
		f[n].name = xstrndup((const char *)start, (size_t)(colon - start));
		while (flen > 0 && (start[flen - 1] == '\n' || start[flen - 1] == '\r'))
			flen--;
		f[n].raw = xstrndup((const char *)colon + 1, (size_t)(start + flen - colon - 1));
		n++;
	}
	*n_r = n;
	return f;
}

static void
fields_free(struct field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].name);
		free(f[i].raw);
	}
	free(f);
}

static void
unfold(const char *raw, struct buf *out)
{
	for (const char *p = raw; *p != '\0'; p++) {
		if (*p != '\r' && *p != '\n')
			buf_append_byte(out, (uint8_t)*p);
	}
}

static json_t *
as_text(const char *raw)
{
	struct buf u = BUF_INIT(0), d = BUF_INIT(0);
	const char *s;
	size_t n;
	json_t *j;

	unfold(raw, &u);
	if (message_decode_words((const char *)u.data ?: "", u.len, &d) != 0) {
		buf_reset(&d);
		buf_append(&d, u.data, u.len);
	}
	s = (const char *)d.data ?: "";
	s += strspn(s, " \t");
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	j = json_stringn(s, n);
	if (j == NULL)
		j = json_string("");
	buf_free(&u);
	buf_free(&d);
	return j;
}

struct addr_ctx {
	json_t *flat;    /* asAddresses */
	json_t *grouped; /* asGroupedAddresses */
	json_t *group;   /* the open group's addresses */
};

static json_t *
decoded_name(const char *name)
{
	struct buf d = BUF_INIT(0);
	json_t *j;

	if (name == NULL)
		return json_null();
	if (message_decode_words(name, strlen(name), &d) != 0) {
		buf_reset(&d);
		buf_append_str(&d, name);
	}
	j = json_string((const char *)d.data ?: "");
	buf_free(&d);
	return j != NULL ? j : json_null();
}

static void
addr_cb(const struct message_address *a, void *arg)
{
	struct addr_ctx *x = arg;

	if (a->kind == MESSAGE_ADDR_GROUP) {
		x->group = json_array();
		json_array_append_new(
		    x->grouped, json_pack("{sos[]}", "name", decoded_name(a->name), "addresses"));
		json_decref(x->group);
		x->group = json_object_get(
		    json_array_get(x->grouped, json_array_size(x->grouped) - 1), "addresses");
	} else if (a->kind == MESSAGE_ADDR_GROUP_END) {
		x->group = NULL;
	} else {
		struct buf e = BUF_INIT(0);
		json_t *o;

		buf_printf(&e, "%s%s%s", a->mailbox ?: "", a->host ? "@" : "", a->host ?: "");
		o = json_pack("{soss}", "name", decoded_name(a->name), "email",
		              (const char *)e.data ?: "");
		if (o == NULL) /* not UTF-8 */
			o = json_pack("{snss}", "name", "email", "");
		json_array_append(x->flat, o);
		if (x->group != NULL) {
			json_array_append_new(x->group, o);
		} else {
			json_array_append_new(x->grouped,
			                      json_pack("{sn s[o]}", "name", "addresses", o));
		}
		buf_free(&e);
	}
}

static json_t *
as_addresses(const char *raw, bool grouped)
{
	struct buf u = BUF_INIT(0);
	struct addr_ctx x = {json_array(), json_array(), NULL};

	unfold(raw, &u);
	message_address_walk(u.data ?: (const uint8_t *)"", u.len, addr_cb, &x);
	buf_free(&u);
	if (grouped) {
		json_decref(x.flat);
		return x.grouped;
	}
	json_decref(x.grouped);
	return x.flat;
}

static json_t *
as_message_ids(const char *raw)
{
	json_t *a = json_array();
	const char *p = raw;

	while ((p = strchr(p, '<')) != NULL) {
		const char *e = strchr(p, '>');

		if (e == NULL)
			break;
		{
			json_t *s = json_stringn(p + 1, (size_t)(e - p - 1));

			if (s != NULL)
				json_array_append_new(a, s);
		}
		p = e + 1;
	}
	if (json_array_size(a) == 0) {
		json_decref(a);
		return json_null();
	}
	return a;
}

static json_t *
as_date(const char *raw)
{
	struct buf u = BUF_INIT(0);
	int64_t t;
	json_t *j = json_null();

	unfold(raw, &u);
	if (message_parse_date((const char *)u.data ?: "", u.len, &t) == 0) {
		char d[21];

		jmap_utc_date(t, d);
		j = json_string(d);
	}
	buf_free(&u);
	return j;
}

static json_t *
as_urls(const char *raw)
{
	json_t *a = json_array();
	const char *p = raw;

	while ((p = strchr(p, '<')) != NULL) {
		const char *e = strchr(p, '>');

		if (e == NULL)
			break;
		json_array_append_new(a,
		                      json_stringn(p + 1, (size_t)(e - p - 1)) ?: json_string(""));
		p = e + 1;
	}
	return a;
}

enum hform { F_RAW, F_TEXT, F_ADDRESSES, F_GROUPED, F_IDS, F_DATE, F_URLS, F_BAD };

static enum hform
form_of(const char *s)
{
	static const char *const names[] = {
	    "asRaw",        "asText", "asAddresses", "asGroupedAddresses",
	    "asMessageIds", "asDate", "asURLs"};

	for (int i = 0; i < F_BAD; i++) {
		if (strcmp(names[i], s) == 0)
			return (enum hform)i;
	}
	return F_BAD;
}

static json_t *
parse_form(const char *raw, enum hform f)
{
	switch (f) {
	case F_RAW:
		return json_string(raw) ?: json_string("");
	case F_TEXT:
		return as_text(raw);
	case F_ADDRESSES:
		return as_addresses(raw, false);
	case F_GROUPED:
		return as_addresses(raw, true);
	case F_IDS:
		return as_message_ids(raw);
	case F_DATE:
		return as_date(raw);
	case F_URLS:
		return as_urls(raw);
	case F_BAD:
		break;
	}
	return json_null();
}

/* "header:Name[:form][:all]" over the fields; NULL for a malformed name. */
static json_t *
header_prop(struct field *f, size_t n, const char *prop)
{
	char buf[256], *name, *form = NULL, *all = NULL;
	enum hform fm = F_RAW;
	bool want_all = false;
	json_t *out;

	if (strlen(prop) >= sizeof(buf))
		return NULL;
	snprintf(buf, sizeof(buf), "%s", prop + 7);
	name = buf;
	form = strchr(name, ':');
	if (form != NULL) {
		*form++ = '\0';
		all = strchr(form, ':');
		if (all != NULL)
			*all++ = '\0';
		if (strcmp(form, "all") == 0 && all == NULL) {
			want_all = true;
		} else {
			fm = form_of(form);
			if (fm == F_BAD || (all != NULL && strcmp(all, "all") != 0))
				return NULL;
			want_all = all != NULL;
		}
	}
	if (name[0] == '\0')
		return NULL;
	if (want_all) {
		out = json_array();
		for (size_t i = 0; i < n; i++) {
			if (strcasecmp(f[i].name, name) == 0)
				json_array_append_new(out, parse_form(f[i].raw, fm));
		}
		return out;
	}
	/* the last instance (RFC 8621 4.1.3) */
	for (size_t i = n; i-- > 0;) {
		if (strcasecmp(f[i].name, name) == 0)
			return parse_form(f[i].raw, fm);
	}
	return json_null();
}

static json_t *
headers_list(struct field *f, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		json_t *o = json_pack("{ssss}", "name", f[i].name, "value", f[i].raw);

		if (o != NULL)
			json_array_append_new(a, o);
	}
	return a;
}

/* The value of the last field named name, or NULL. */
static const char *
last_field(struct field *f, size_t n, const char *name)
{
	for (size_t i = n; i-- > 0;) {
		if (strcasecmp(f[i].name, name) == 0)
			return f[i].raw;
	}
	return NULL;
}

/* ---- body parts ---- */

struct jpart {
	const struct message_part *p;
	char path[PATH_MAX_LEN];
	struct message_part_info info;
	bool multipart;
	struct jpart *kids;
	size_t n_kids;
	json_t *json; /* leaf: every body property */
};

struct walk {
	const struct message *msg;
	const char *blob_prefix;
	unsigned parts;
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

static void
build(struct walk *w, struct jpart *jp, const struct message_part *p, const char *path)
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
			build(w, &jp->kids[i], c, sub);
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

static void
jpart_free(struct jpart *jp)
{
	for (size_t i = 0; i < jp->n_kids; i++)
		jpart_free(&jp->kids[i]);
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

/* Lists of leaves; NULL stands for the algorithm's null list. */
struct plist {
	const struct jpart **v;
	size_t n, cap;
	bool null;
};

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
static void
parse_structure(const struct jpart *parts, size_t n, const char *multi_type, bool in_alt,
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

			parse_structure(p->kids, p->n_kids, sub,
			                in_alt || strcmp(sub, "alternative") == 0, html, text, att);
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
	f = fields_of(msg, jp->p, &n);
	json_array_foreach(props, i, p)
	{
		const char *name = json_string_value(p);

		if (name == NULL)
			continue;
		if (strcmp(name, "headers") == 0) {
			json_object_set_new(o, "headers", headers_list(f, n));
		} else if (strncmp(name, "header:", 7) == 0) {
			json_t *v = header_prop(f, n, name);

			if (v != NULL)
				json_object_set_new(o, name, v);
		} else if (strcmp(name, "subParts") == 0 && !jp->multipart) {
			json_object_set_new(o, "subParts", json_null());
		}
	}
	fields_free(f, n);
}

static json_t *
structure_json(const struct message *msg, const struct jpart *jp, json_t *props)
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
			json_array_append_new(kids, structure_json(msg, &jp->kids[i], props));
		json_object_set_new(o, "subParts", kids);
	}
	part_extra(msg, jp, props, o);
	return o;
}

static json_t *
list_json(const struct message *msg, const struct plist *l, json_t *props)
{
	json_t *a = json_array();

	for (size_t i = 0; !l->null && i < l->n; i++) {
		json_t *o = filtered(l->v[i]->json, props);

		part_extra(msg, l->v[i], props, o);
		json_array_append_new(a, o);
	}
	return a;
}

/* Strip tags and decode a few entities: enough for a preview. */
static void
html_to_text(const char *h, struct buf *out)
{
	bool tag = false;

	for (const char *p = h; *p != '\0'; p++) {
		if (*p == '<') {
			tag = true;
			const char *e = NULL;

			if (strncasecmp(p, "<style", 6) == 0)
				e = strcasestr(p, "</style");
			else if (strncasecmp(p, "<script", 7) == 0)
				e = strcasestr(p, "</script");
			if (e != NULL)
				p = e;
		} else if (*p == '>') {
			tag = false;
			buf_append_byte(out, ' ');
		} else if (!tag) {
			if (strncmp(p, "&amp;", 5) == 0) {
				buf_append_byte(out, '&');
				p += 4;
			} else if (strncmp(p, "&lt;", 4) == 0) {
				buf_append_byte(out, '<');
				p += 3;
			} else if (strncmp(p, "&gt;", 4) == 0) {
				buf_append_byte(out, '>');
				p += 3;
			} else if (strncmp(p, "&nbsp;", 6) == 0) {
				buf_append_byte(out, ' ');
				p += 5;
			} else {
				buf_append_byte(out, (uint8_t)*p);
			}
		}
	}
}

/* Collapse white space and cut at max characters (UTF-8 aware). */
static void
squeeze(const char *s, size_t max, struct buf *out)
{
	size_t chars = 0;
	bool space = true;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			if (!space) {
				buf_append_byte(out, ' ');
				chars++;
			}
			space = true;
		} else {
			if ((*p & 0xc0) != 0x80) {
				if (chars >= max)
					break;
				chars++;
			}
			buf_append_byte(out, *p);
			space = false;
		}
	}
	while (out->len > 0 && out->data[out->len - 1] == ' ')
		buf_truncate(out, out->len - 1);
}

static void
preview_of(const struct message *msg, const struct plist *text, struct buf *out)
{
	for (size_t i = 0; !text->null && i < text->n; i++) {
		const struct jpart *p = text->v[i];
		struct buf t = BUF_INIT(0), plain = BUF_INIT(0);
		bool problem;

		if (!is_type(p, "text", NULL))
			continue;
		message_part_text(msg, p->p, &t, &problem);
		if (is_type(p, "text", "html")) {
			html_to_text((const char *)t.data ?: "", &plain);
			squeeze((const char *)plain.data ?: "", PREVIEW_CHARS, out);
		} else {
			squeeze((const char *)t.data ?: "", PREVIEW_CHARS, out);
		}
		buf_free(&t);
		buf_free(&plain);
		return;
	}
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

static void
add_values(const struct message *msg, const struct plist *l, size_t max, json_t *values)
{
	for (size_t i = 0; !l->null && i < l->n; i++) {
		const char *pid = json_string_value(json_object_get(l->v[i]->json, "partId"));

		if (is_type(l->v[i], "text", NULL) && json_object_get(values, pid) == NULL)
			json_object_set_new(values, pid, body_value(msg, l->v[i], max));
	}
}

static bool
wants(json_t *props, const char *name)
{
	json_t *p;
	size_t i;

	if (props == NULL) {
		for (size_t k = 0; k < sizeof(default_props) / sizeof(default_props[0]); k++) {
			if (strcmp(default_props[k], name) == 0)
				return true;
		}
		return false;
	}
	json_array_foreach(props, i, p)
	{
		if (json_is_string(p) && strcmp(json_string_value(p), name) == 0)
			return true;
	}
	return false;
}

static json_t *
header_or_null(struct field *f, size_t n, const char *name, enum hform form)
{
	const char *raw = last_field(f, n, name);

	return raw != NULL ? parse_form(raw, form) : json_null();
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
	build(&w, &root, message_root(msg), "");
	parse_structure(&root, 1, "mixed", false, &html, &text, &att);
	f = fields_of(msg, NULL, &n);
	for (size_t i = 0; i < sizeof(hprops) / sizeof(hprops[0]); i++) {
		if (wants(props, hprops[i].prop))
			json_object_set_new(o, hprops[i].prop,
			                    header_or_null(f, n, hprops[i].field, hprops[i].form));
	}
	if (wants(props, "headers"))
		json_object_set_new(o, "headers", headers_list(f, n));
	if (props != NULL) {
		json_t *p;
		size_t i;

		json_array_foreach(props, i, p)
		{
			const char *name = json_string_value(p);
			json_t *v;

			if (name != NULL && strncmp(name, "header:", 7) == 0 &&
			    (v = header_prop(f, n, name)) != NULL)
				json_object_set_new(o, name, v);
		}
	}
	if (wants(props, "hasAttachment"))
		json_object_set_new(o, "hasAttachment", json_boolean(!att.null && att.n > 0));
	if (wants(props, "preview")) {
		struct buf pv = BUF_INIT(0);

		preview_of(msg, &text, &pv);
		json_object_set_new(o, "preview",
		                    json_string((const char *)pv.data ?: "") ?: json_string(""));
		buf_free(&pv);
	}
	if (wants(props, "bodyStructure"))
		json_object_set_new(o, "bodyStructure", structure_json(msg, &root, body_props));
	if (wants(props, "textBody"))
		json_object_set_new(o, "textBody", list_json(msg, &text, body_props));
	if (wants(props, "htmlBody"))
		json_object_set_new(o, "htmlBody", list_json(msg, &html, body_props));
	if (wants(props, "attachments"))
		json_object_set_new(o, "attachments", list_json(msg, &att, body_props));
	if (wants(props, "bodyValues")) {
		json_t *values = json_object();
		size_t max = (size_t)json_integer_value(json_object_get(opts, "maxBodyValueBytes"));
		bool all = json_is_true(json_object_get(opts, "fetchAllBodyValues"));

		if (all || json_is_true(json_object_get(opts, "fetchTextBodyValues")))
			add_values(msg, &text, max, values);
		if (all || json_is_true(json_object_get(opts, "fetchHTMLBodyValues")))
			add_values(msg, &html, max, values);
		if (all) {
			/* every text part, attachments included */
			add_values(msg, &att, max, values);
		}
		json_object_set_new(o, "bodyValues", values);
	}
	fields_free(f, n);
	free(text.v);
	free(html.v);
	free(att.v);
	jpart_free(&root);
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

void
jmap_msg_header_text(const struct message *msg, const char *name, struct buf *out)
{
	struct field *f;
	size_t n;
	const char *raw;

	f = fields_of(msg, NULL, &n);
	raw = last_field(f, n, name);
	if (raw != NULL) {
		json_t *t = as_text(raw);

		buf_append_str(out, json_string_value(t));
		json_decref(t);
	}
	fields_free(f, n);
}

void
jmap_msg_addresses_text(const struct message *msg, const char *name, struct buf *out)
{
	struct field *f;
	size_t n;

	f = fields_of(msg, NULL, &n);
	for (size_t i = 0; i < n; i++) {
		json_t *a, *e;
		size_t k;

		if (strcasecmp(f[i].name, name) != 0)
			continue;
		a = as_addresses(f[i].raw, false);
		json_array_foreach(a, k, e)
		{
			const char *nm = json_string_value(json_object_get(e, "name"));

			buf_printf(out, "%s%s <%s>", out->len ? ", " : "", nm ?: "",
			           json_string_value(json_object_get(e, "email")));
		}
		json_decref(a);
	}
	fields_free(f, n);
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
