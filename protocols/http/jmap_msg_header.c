/*
 * The header fields of a message or part as RFC 8621 4.1.2 and 4.1.3 show
 * them: the raw values, and the parsed forms (Text, Addresses,
 * GroupedAddresses, MessageIds, Date, URLs) that header:Name:asForm asks for.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_msg.h"

/* Every field of the header block of part (NULL = the message). */
struct field *
jmap_fields_of(const struct message *msg, const struct message_part *part, size_t *n_r)
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

void
jmap_fields_free(struct field *f, size_t n)
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

json_t *
jmap_hdr_text(const char *raw)
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

json_t *
jmap_hdr_addresses(const char *raw, bool grouped)
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

/* The strings between < and > in raw, in order. One that is not UTF-8 is
 * left out, or with bad_empty is an empty string. */
static json_t *
angle_strings(const char *raw, bool bad_empty)
{
	json_t *a = json_array();
	const char *p = raw;

	while ((p = strchr(p, '<')) != NULL) {
		const char *e = strchr(p, '>');
		json_t *s;

		if (e == NULL)
			break;
		s = json_stringn(p + 1, (size_t)(e - p - 1));
		if (s == NULL && bad_empty)
			s = json_string("");
		if (s != NULL)
			json_array_append_new(a, s);
		p = e + 1;
	}
	return a;
}

static json_t *
as_message_ids(const char *raw)
{
	json_t *a = angle_strings(raw, false);

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
	return angle_strings(raw, true);
}

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

json_t *
jmap_hdr_form(const char *raw, enum hform f)
{
	switch (f) {
	case F_RAW:
		return json_string(raw) ?: json_string("");
	case F_TEXT:
		return jmap_hdr_text(raw);
	case F_ADDRESSES:
		return jmap_hdr_addresses(raw, false);
	case F_GROUPED:
		return jmap_hdr_addresses(raw, true);
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
json_t *
jmap_header_prop(struct field *f, size_t n, const char *prop)
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
				json_array_append_new(out, jmap_hdr_form(f[i].raw, fm));
		}
		return out;
	}
	/* the last instance (RFC 8621 4.1.3) */
	for (size_t i = n; i-- > 0;) {
		if (strcasecmp(f[i].name, name) == 0)
			return jmap_hdr_form(f[i].raw, fm);
	}
	return json_null();
}

json_t *
jmap_headers_list(struct field *f, size_t n)
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
const char *
jmap_last_field(struct field *f, size_t n, const char *name)
{
	for (size_t i = n; i-- > 0;) {
		if (strcasecmp(f[i].name, name) == 0)
			return f[i].raw;
	}
	return NULL;
}

json_t *
jmap_header_or_null(struct field *f, size_t n, const char *name, enum hform form)
{
	const char *raw = jmap_last_field(f, n, name);

	return raw != NULL ? jmap_hdr_form(raw, form) : json_null();
}

void
jmap_msg_header_text(const struct message *msg, const char *name, struct buf *out)
{
	struct field *f;
	size_t n;
	const char *raw;

	f = jmap_fields_of(msg, NULL, &n);
	raw = jmap_last_field(f, n, name);
	if (raw != NULL) {
		json_t *t = jmap_hdr_text(raw);

		buf_append_str(out, json_string_value(t));
		json_decref(t);
	}
	jmap_fields_free(f, n);
}

void
jmap_msg_addresses_text(const struct message *msg, const char *name, struct buf *out)
{
	struct field *f;
	size_t n;

	f = jmap_fields_of(msg, NULL, &n);
	for (size_t i = 0; i < n; i++) {
		json_t *a, *e;
		size_t k;

		if (strcasecmp(f[i].name, name) != 0)
			continue;
		a = jmap_hdr_addresses(f[i].raw, false);
		json_array_foreach(a, k, e)
		{
			const char *nm = json_string_value(json_object_get(e, "name"));

			buf_printf(out, "%s%s <%s>", out->len ? ", " : "", nm ?: "",
			           json_string_value(json_object_get(e, "email")));
		}
		json_decref(a);
	}
	jmap_fields_free(f, n);
}
