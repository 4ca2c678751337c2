/*
 * IMAP renderers: strings (quoted or literal), ENVELOPE, BODY and
 * BODYSTRUCTURE, matching what Dovecot sends byte for byte (checked against
 * the goldens in tests/data/goldens): type names and parameters in the
 * case the message wrote them, "7bit" and ("charset" "us-ascii") as the
 * defaults, sizes counted with every bare LF as CRLF (the way the message
 * goes over the wire), display names and subjects "for humans".
 */
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"

#include "message_impl.h"

/* ---- strings ---- */

static void
append_literal(struct buf *out, const uint8_t *s, size_t len)
{
	buf_printf(out, "{%zu}\r\n", len);
	buf_append(out, s, len);
}

void
imap_append_nstring(struct buf *out, const uint8_t *s, size_t len, bool nil)
{
	unsigned specials = 0;
	size_t i;

	if (nil) {
		buf_append_str(out, "NIL");
		return;
	}
	for (i = 0; i < len; i++) {
		uint8_t c = s[i];

		if (c == '"' || c == '\\') {
			/* a few are escaped; more and a literal is shorter */
			if (++specials <= 4)
				continue;
			append_literal(out, s, len);
			return;
		}
		if (c == '\r' || c == '\n' || c == 0 || c >= 0x80) {
			append_literal(out, s, len);
			return;
		}
	}
	buf_append_byte(out, '"');
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_append_byte(out, '\\');
		buf_append_byte(out, s[i]);
	}
	buf_append_byte(out, '"');
}

void
imap_append_nolf(struct buf *out, const uint8_t *s, size_t len)
{
	struct buf tmp = BUF_INIT(0);

	if (memchr(s, '\n', len) == NULL && memchr(s, '\r', len) == NULL) {
		imap_append_nstring(out, s, len, false);
		return;
	}
	hdr_unfold(s, len, &tmp);
	imap_append_nstring(out, tmp.data, tmp.len, false);
	buf_free(&tmp);
}

void
imap_append_human(struct buf *out, const uint8_t *s, size_t len)
{
	bool modify = false, last_ws = true;
	size_t i;

	for (i = 0; i < len; i++) {
		uint8_t c = s[i];

		if (c == ' ') {
			if (last_ws)
				modify = true;
			last_ws = true;
		} else if (c == '\r' || c == '\n' || c == '\t') {
			modify = true;
			last_ws = true;
		} else {
			if (c == 0 || c == '"' || c == '\\' || c >= 0x80)
				modify = true;
			last_ws = false;
		}
	}
	if (len > 0 && last_ws)
		modify = true;
	if (!modify) {
		buf_append_byte(out, '"');
		buf_append(out, s, len);
		buf_append_byte(out, '"');
		return;
	}
	/* collapse white space into the output, then make it a literal */
	{
		struct buf t = BUF_INIT(0);

		last_ws = true;
		for (i = 0; i < len; i++) {
			uint8_t c = s[i];

			if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				if (!last_ws)
					buf_append_byte(&t, ' ');
				last_ws = true;
				continue;
			}
			buf_append_byte(&t, c == 0 ? 0x80 : c);
			last_ws = false;
		}
		if (t.len > 0 && last_ws)
			t.len--;
		if (t.len == 0)
			buf_append_str(out, "\"\"");
		else
			append_literal(out, t.data, t.len);
		buf_free(&t);
	}
}

/* ---- part fields ---- */

struct part_fields {
	struct hdr_field f[8];
	bool have[8];
};

enum { F_TYPE, F_CTE, F_ID, F_DESC, F_MD5, F_DISP, F_LANG, F_LOC };

static const char *const field_names[8] = {
	"content-type", "content-transfer-encoding", "content-id", "content-description",
	"content-md5", "content-disposition", "content-language", "content-location",
};

static void
part_fields_read(const struct message *msg, const struct message_part *part,
    struct part_fields *pf)
{
	struct hdr_iter it;
	struct hdr_field f;
	unsigned i;

	memset(pf, 0, sizeof(*pf));
	hdr_iter_init(&it, msg->data + part->header_off, part->header_len);
	while (hdr_iter_next(&it, &f)) {
		if (!f.has_colon || f.name_len < 10 ||
		    strncasecmp((const char *)f.name, "content-", 8) != 0)
			continue;
		for (i = 0; i < 8; i++) {
			if (!pf->have[i] && hdr_name_eq(&f, field_names[i])) {
				pf->f[i] = f;
				pf->have[i] = true;
				break;
			}
		}
	}
}

static void
append_params(struct buf *out, const struct mime_params *ps, bool text_default)
{
	size_t i;
	bool have_charset = mime_params_get(ps, "charset") != NULL;

	if (ps->n == 0 && !text_default) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_byte(out, '(');
	for (i = 0; i < ps->n; i++) {
		if (i > 0)
			buf_append_byte(out, ' ');
		imap_append_nstring(out, (const uint8_t *)ps->v[i].name, strlen(ps->v[i].name), false);
		buf_append_byte(out, ' ');
		imap_append_nstring(out, (const uint8_t *)ps->v[i].value, ps->v[i].value_len, false);
	}
	if (text_default && !have_charset) {
		if (ps->n > 0)
			buf_append_byte(out, ' ');
		buf_append_str(out, "\"charset\" \"us-ascii\"");
	}
	buf_append_byte(out, ')');
}

static void
append_field_nstring(struct buf *out, const struct part_fields *pf, int which)
{
	if (!pf->have[which]) {
		buf_append_str(out, "NIL");
		return;
	}
	imap_append_nolf(out, pf->f[which].value, pf->f[which].value_len);
}

static void
append_disposition(struct buf *out, const struct part_fields *pf)
{
	struct content_type d;

	if (!pf->have[F_DISP] || !mime_parse_disposition(pf->f[F_DISP].value,
	    pf->f[F_DISP].value_len, &d)) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_byte(out, '(');
	imap_append_nstring(out, d.type, d.type_len, false);
	buf_append_byte(out, ' ');
	append_params(out, &d.params, false);
	buf_append_byte(out, ')');
	content_type_free(&d);
}

/* Content-Language: a list of language tags */
static void
append_language(struct buf *out, const struct part_fields *pf)
{
	struct lex lx;
	size_t start = out->len;
	unsigned n = 0;

	if (!pf->have[F_LANG]) {
		buf_append_str(out, "NIL");
		return;
	}
	lx.p = pf->f[F_LANG].value;
	lx.end = lx.p + pf->f[F_LANG].value_len;
	buf_append_byte(out, '(');
	for (;;) {
		const uint8_t *s;

		lex_skip_cfws(&lx);
		if (lx.p >= lx.end)
			break;
		if (*lx.p == ',') {
			lx.p++;
			continue;
		}
		s = lx.p;
		while (lx.p < lx.end && *lx.p > ' ' && *lx.p != ',' && *lx.p != '(' && *lx.p < 0x7f)
			lx.p++;
		if (lx.p == s) {
			lx.p++;
			continue;
		}
		if (n++ > 0)
			buf_append_byte(out, ' ');
		imap_append_nstring(out, s, (size_t)(lx.p - s), false);
	}
	if (n == 0) {
		buf_truncate(out, start);
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_byte(out, ')');
}

static void
append_extension(struct buf *out, const struct part_fields *pf)
{
	buf_append_byte(out, ' ');
	append_disposition(out, pf);
	buf_append_byte(out, ' ');
	append_language(out, pf);
	buf_append_byte(out, ' ');
	append_field_nstring(out, pf, F_LOC);
}

/* ---- ENVELOPE ---- */

enum { E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC, E_BCC, E_IN_REPLY_TO,
	E_MESSAGE_ID, E_COUNT };

static const char *const env_names[E_COUNT] = {
	"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
	"message-id",
};

static void
envelope_of_header(const uint8_t *hdr, size_t len, struct buf *out)
{
	struct hdr_field fs[E_COUNT];
	bool have[E_COUNT] = { false };
	struct hdr_iter it;
	struct hdr_field f;
	struct buf from = BUF_INIT(0);
	unsigned i;

	hdr_iter_init(&it, hdr, len);
	while (hdr_iter_next(&it, &f)) {
		for (i = 0; i < E_COUNT; i++) {
			if (!have[i] && hdr_name_eq(&f, env_names[i])) {
				fs[i] = f;
				have[i] = true;
				break;
			}
		}
	}
	buf_append_byte(out, '(');
	for (i = 0; i < E_COUNT; i++) {
		if (i > 0)
			buf_append_byte(out, ' ');
		switch (i) {
		case E_SUBJECT:
			if (have[i])
				imap_append_human(out, fs[i].value, fs[i].value_len);
			else
				buf_append_str(out, "NIL");
			break;
		case E_DATE:
		case E_IN_REPLY_TO:
		case E_MESSAGE_ID:
			if (have[i])
				imap_append_nolf(out, fs[i].value, fs[i].value_len);
			else
				buf_append_str(out, "NIL");
			break;
		case E_FROM:
			if (have[i])
				address_list_imap(fs[i].value, fs[i].value_len, &from);
			else
				buf_append_str(&from, "NIL");
			buf_append(out, from.data, from.len);
			break;
		case E_SENDER:
		case E_REPLY_TO: {
			size_t at = out->len;

			if (have[i])
				address_list_imap(fs[i].value, fs[i].value_len, out);
			if (!have[i] || strcmp((const char *)out->data + at, "NIL") == 0) {
				buf_truncate(out, at);
				buf_append(out, from.data, from.len);
			}
			break;
		}
		default:
			if (have[i])
				address_list_imap(fs[i].value, fs[i].value_len, out);
			else
				buf_append_str(out, "NIL");
			break;
		}
	}
	buf_append_byte(out, ')');
	buf_free(&from);
}

int
message_envelope(const struct message *msg, const struct message_part *part, struct buf *out)
{
	struct buf tmp = BUF_INIT(0);
	int ret;

	if (part != NULL && part != message_root(msg)) {
		if (!part->is_message_rfc822)
			return ROOST_EINVAL;
		part = part->children;
	} else {
		part = message_root(msg);
	}
	/* rendered aside, then appended at once: the caller's buffer maximum
	 * holds and a failure leaves nothing half-written */
	if (part == NULL)
		buf_append_str(&tmp, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	else
		envelope_of_header(msg->data + part->header_off, part->header_len, &tmp);
	ret = buf_append(out, tmp.data, tmp.len);
	buf_free(&tmp);
	return ret;
}

/* ---- BODY / BODYSTRUCTURE ---- */

static const char EMPTY_TEXT[] = "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0";

static void body_write(const struct message *msg, const struct message_part *p, bool ext,
    struct buf *out);

static void
body_write_multipart(const struct message *msg, const struct message_part *p,
    const struct part_fields *pf, bool ext, struct buf *out)
{
	const struct message_part *c;
	struct content_type ct;
	bool have_ct = pf->have[F_TYPE] &&
	    mime_parse_content_type(pf->f[F_TYPE].value, pf->f[F_TYPE].value_len, &ct);

	buf_append_byte(out, '(');
	if (p->children == NULL) {
		buf_append_byte(out, '(');
		buf_append_str(out, EMPTY_TEXT);
		if (ext)
			buf_append_str(out, " NIL NIL NIL NIL");
		buf_append_byte(out, ')');
	}
	for (c = p->children; c != NULL; c = c->next)
		body_write(msg, c, ext, out);
	buf_append_byte(out, ' ');
	if (have_ct && ct.sub != NULL)
		imap_append_nstring(out, ct.sub, ct.sub_len, false);
	else
		buf_append_str(out, "\"mixed\"");
	if (ext) {
		buf_append_byte(out, ' ');
		if (have_ct)
			append_params(out, &ct.params, false);
		else
			buf_append_str(out, "NIL");
		append_extension(out, pf);
	}
	buf_append_byte(out, ')');
	if (have_ct)
		content_type_free(&ct);
}

static void
body_write(const struct message *msg, const struct message_part *p, bool ext, struct buf *out)
{
	struct part_fields pf;
	struct content_type ct;
	bool have_ct, text, rfc822 = p->is_message_rfc822;

	part_fields_read(msg, p, &pf);
	if (p->is_multipart) {
		body_write_multipart(msg, p, &pf, ext, out);
		return;
	}
	have_ct = pf.have[F_TYPE] &&
	    mime_parse_content_type(pf.f[F_TYPE].value, pf.f[F_TYPE].value_len, &ct);
	if (have_ct && ct.sub == NULL) {
		content_type_free(&ct);
		have_ct = false;
	}
	buf_append_byte(out, '(');
	if (have_ct) {
		text = mime_token_eq(ct.type, ct.type_len, "text");
		imap_append_nstring(out, ct.type, ct.type_len, false);
		buf_append_byte(out, ' ');
		imap_append_nstring(out, ct.sub, ct.sub_len, false);
		buf_append_byte(out, ' ');
		append_params(out, &ct.params, text);
		content_type_free(&ct);
	} else if (rfc822) {
		text = false;
		buf_append_str(out, "\"message\" \"rfc822\" NIL");
	} else {
		text = true;
		buf_append_str(out, "\"text\" \"plain\" (\"charset\" \"us-ascii\")");
	}
	buf_append_byte(out, ' ');
	append_field_nstring(out, &pf, F_ID);
	buf_append_byte(out, ' ');
	append_field_nstring(out, &pf, F_DESC);
	buf_append_byte(out, ' ');
	if (pf.have[F_CTE])
		imap_append_nolf(out, pf.f[F_CTE].value, pf.f[F_CTE].value_len);
	else
		buf_append_str(out, "\"7bit\"");
	buf_printf(out, " %llu", (unsigned long long)p->body_vsize);
	if (text)
		buf_printf(out, " %llu", (unsigned long long)p->body_lines);
	if (rfc822) {
		buf_append_byte(out, ' ');
		if (p->children != NULL) {
			envelope_of_header(msg->data + p->children->header_off,
			    p->children->header_len, out);
			buf_append_byte(out, ' ');
			body_write(msg, p->children, ext, out);
		} else {
			buf_append_str(out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (");
			buf_append_str(out, EMPTY_TEXT);
			if (ext)
				buf_append_str(out, " NIL NIL NIL NIL");
			buf_append_byte(out, ')');
		}
		buf_printf(out, " %llu", (unsigned long long)p->body_lines);
	}
	if (ext) {
		buf_append_byte(out, ' ');
		append_field_nstring(out, &pf, F_MD5);
		append_extension(out, &pf);
	}
	buf_append_byte(out, ')');
}

int
message_bodystructure(const struct message *msg, const struct message_part *part,
    bool extended, struct buf *out)
{
	struct buf tmp = BUF_INIT(0);
	int ret;

	if (part == NULL)
		part = message_root(msg);
	body_write(msg, part, extended, &tmp);
	ret = buf_append(out, tmp.data, tmp.len);
	buf_free(&tmp);
	return ret;
}
