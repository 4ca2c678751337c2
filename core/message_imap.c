/*
 * IMAP renderers: strings (quoted or literal), ENVELOPE, BODY and
 * BODYSTRUCTURE, matching what Dovecot sends byte for byte (checked against
 * the goldens in tests/data/goldens): type names and parameters in the
 * case the message wrote them, "7bit" and ("charset" "us-ascii") as the
 * defaults, sizes counted with every bare LF as CRLF (the way the message
 * goes over the wire), display names and subjects "for humans".
 */
#include <stdlib.h>
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

/* A copy with every NUL as U+FFFD (Dovecot's header values have them so);
 * NULL when there is no NUL. */
static uint8_t *
nul_free(const uint8_t *s, size_t len, size_t *len_r)
{
	struct buf b = BUF_INIT(0);
	size_t i, run = 0;

	if (len == 0 || memchr(s, 0, len) == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] != 0)
			continue;
		buf_append(&b, s + run, i - run);
		buf_append(&b, "\xef\xbf\xbd", 3);
		run = i + 1;
	}
	buf_append(&b, s + run, len - run);
	return buf_steal(&b, len_r);
}

void
message_imap_nstring(struct buf *out, const uint8_t *s, size_t len, bool nil)
{
	unsigned specials = 0;
	size_t i;
	uint8_t *fixed;

	if (nil) {
		buf_append_str(out, "NIL");
		return;
	}
	if ((fixed = nul_free(s, len, &len)) != NULL) {
		append_literal(out, fixed, len);
		free(fixed);
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
	buf_reserve(out, len + specials + 2);
	buf_append_byte(out, '"');
	if (specials == 0) {
		buf_append(out, s, len);
	} else {
		size_t run = 0;

		for (i = 0; i < len; i++) {
			if (s[i] == '"' || s[i] == '\\') {
				buf_append(out, s + run, i - run);
				buf_append_byte(out, '\\');
				run = i;
			}
		}
		buf_append(out, s + run, len - run);
	}
	buf_append_byte(out, '"');
}

/* " %llu" without printf's machinery: BODYSTRUCTURE writes many numbers */
static void
append_num(struct buf *out, uint64_t v)
{
	buf_append_byte(out, ' ');
	buf_append_uint(out, v);
}

void
message_imap_nolf(struct buf *out, const uint8_t *s, size_t len)
{
	struct buf tmp = BUF_INIT(0);

	if (memchr(s, '\n', len) == NULL && memchr(s, '\r', len) == NULL) {
		message_imap_nstring(out, s, len, false);
		return;
	}
	message_hdr_unfold(s, len, &tmp);
	message_imap_nstring(out, tmp.data, tmp.len, false);
	buf_free(&tmp);
}

void
message_imap_human(struct buf *out, const uint8_t *s, size_t len)
{
	bool modify = false, last_ws = true;
	size_t i;
	uint8_t *fixed = nul_free(s, len, &len);

	if (fixed != NULL) {
		message_imap_human(out, fixed, len);
		free(fixed);
		return;
	}

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
	bool mime_version;
};

enum { F_TYPE, F_CTE, F_ID, F_DESC, F_MD5, F_DISP, F_LANG, F_LOC };

static const char *const field_names[8] = {
    "content-type", "content-transfer-encoding", "content-id",       "content-description",
    "content-md5",  "content-disposition",       "content-language", "content-location",
};

/*
 * The Content-* fields of part (the first of each). A message's own header
 * (the top one or an embedded message's) with neither MIME-Version nor
 * Content-Type is not MIME (RFC 2045 4): its other Content-* fields are
 * ignored, as Dovecot ignores them.
 */
static void
part_fields_read(const struct message *msg, const struct message_part *part, struct part_fields *pf)
{
	struct hdr_iter it;
	struct hdr_field f;
	unsigned i;

	memset(pf, 0, sizeof(*pf));
	message_hdr_iter_init(&it, msg->data + part->header_off, part->header_len);
	while (message_hdr_iter_next(&it, &f)) {
		if (!f.has_colon)
			continue;
		if (f.name_len == 12 && message_hdr_name_eq(&f, "mime-version")) {
			pf->mime_version = true;
			continue;
		}
		if (f.name_len < 10 || strncasecmp((const char *)f.name, "content-", 8) != 0)
			continue;
		for (i = 0; i < 8; i++) {
			if (!pf->have[i] && message_hdr_name_eq(&f, field_names[i])) {
				pf->f[i] = f;
				pf->have[i] = true;
				break;
			}
		}
	}
	if (!pf->mime_version && !pf->have[F_TYPE] &&
	    (part->parent == NULL || part->parent->is_message_rfc822))
		for (i = 0; i < 8; i++)
			if (i != F_TYPE)
				pf->have[i] = false;
}

static void
append_params(struct buf *out, const struct message_params *ps, bool text_default)
{
	size_t i;
	bool have_charset = message_params_get(ps, "charset") != NULL;

	if (ps->n == 0 && !text_default) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_byte(out, '(');
	for (i = 0; i < ps->n; i++) {
		if (i > 0)
			buf_append_byte(out, ' ');
		message_imap_nstring(out, (const uint8_t *)ps->v[i].name, strlen(ps->v[i].name),
		                     false);
		buf_append_byte(out, ' ');
		message_imap_nstring(out, (const uint8_t *)ps->v[i].value, ps->v[i].value_len,
		                     false);
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
	message_imap_nolf(out, pf->f[which].value, pf->f[which].value_len);
}

static void
append_disposition(struct buf *out, const struct part_fields *pf)
{
	struct content_type d;

	if (!pf->have[F_DISP]) {
		buf_append_str(out, "NIL");
		return;
	}
	message_parse_disposition(pf->f[F_DISP].value, pf->f[F_DISP].value_len, &d);
	buf_append_byte(out, '(');
	message_imap_nstring(out, d.type, d.type_len, false);
	buf_append_byte(out, ' ');
	append_params(out, &d.params, false);
	buf_append_byte(out, ')');
	message_content_type_free(&d);
}

static bool
lang_char(uint8_t c)
{
	/* atext (RFC 5322 3.2.3) */
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80)
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Content-Language: language tags separated by commas, up to the first
 * thing that is not one */
static void
append_language(struct buf *out, const struct part_fields *pf)
{
	struct lex lx;
	unsigned n = 0;

	if (!pf->have[F_LANG]) {
		buf_append_str(out, "NIL");
		return;
	}
	lx.p = pf->f[F_LANG].value;
	lx.end = lx.p + pf->f[F_LANG].value_len;
	for (;;) {
		const uint8_t *s;

		message_lex_skip_cfws(&lx);
		s = lx.p;
		while (lx.p < lx.end && lang_char(*lx.p))
			lx.p++;
		if (lx.p == s)
			break;
		buf_append_str(out, n++ == 0 ? "(" : " ");
		message_imap_nstring(out, s, (size_t)(lx.p - s), false);
		message_lex_skip_cfws(&lx);
		if (lx.p >= lx.end || *lx.p != ',')
			break;
		lx.p++;
	}
	buf_append_str(out, n == 0 ? "NIL" : ")");
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

enum {
	E_DATE,
	E_SUBJECT,
	E_FROM,
	E_SENDER,
	E_REPLY_TO,
	E_TO,
	E_CC,
	E_BCC,
	E_IN_REPLY_TO,
	E_MESSAGE_ID,
	E_COUNT
};

static const char *const env_names[E_COUNT] = {
    "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id",
};

/*
 * As Dovecot builds it: the last Date, Subject, In-Reply-To and Message-ID
 * count, the address fields of every occurrence are put together, and an
 * empty Sender or Reply-To is the From.
 */
static void
envelope_of_header(const uint8_t *hdr, size_t len, struct buf *out)
{
	struct hdr_field last[E_COUNT];
	bool have[E_COUNT] = {false};
	struct buf addrs[E_COUNT];
	size_t naddr[E_COUNT] = {0};
	struct hdr_iter it;
	struct hdr_field f;
	unsigned i;

	for (i = 0; i < E_COUNT; i++)
		buf_init(&addrs[i], 0);
	message_hdr_iter_init(&it, hdr, len);
	while (message_hdr_iter_next(&it, &f)) {
		for (i = 0; i < E_COUNT; i++) {
			if (!message_hdr_name_eq(&f, env_names[i]))
				continue;
			last[i] = f;
			have[i] = true;
			if (i >= E_FROM && i <= E_BCC)
				naddr[i] +=
				    message_address_list_entries(f.value, f.value_len, &addrs[i]);
			break;
		}
	}
	buf_append_byte(out, '(');
	for (i = 0; i < E_COUNT; i++) {
		unsigned src = i;

		if (i > 0)
			buf_append_byte(out, ' ');
		switch (i) {
		case E_SUBJECT:
			if (have[i])
				message_imap_human(out, last[i].value, last[i].value_len);
			else
				buf_append_str(out, "NIL");
			break;
		case E_DATE:
		case E_IN_REPLY_TO:
		case E_MESSAGE_ID:
			if (have[i])
				message_imap_nolf(out, last[i].value, last[i].value_len);
			else
				buf_append_str(out, "NIL");
			break;
		default:
			if ((i == E_SENDER || i == E_REPLY_TO) && naddr[i] == 0)
				src = E_FROM;
			if (naddr[src] == 0) {
				buf_append_str(out, "NIL");
				break;
			}
			buf_append_byte(out, '(');
			buf_append(out, addrs[src].data, addrs[src].len);
			buf_append_byte(out, ')');
			break;
		}
	}
	buf_append_byte(out, ')');
	for (i = 0; i < E_COUNT; i++)
		buf_free(&addrs[i]);
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

static const char EMPTY_TEXT[] =
    "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0";

static void body_write(const struct message *msg, const struct message_part *p, bool ext,
                       struct buf *out);

static void
body_write_multipart(const struct message *msg, const struct message_part *p,
                     const struct part_fields *pf, bool ext, struct buf *out)
{
	const struct message_part *c;
	struct content_type ct;
	bool have_ct = pf->have[F_TYPE] && message_parse_content_type(pf->f[F_TYPE].value,
	                                                              pf->f[F_TYPE].value_len, &ct);

	if (have_ct && ct.broken) {
		message_content_type_free(&ct);
		have_ct = false;
	}

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
	if (have_ct)
		message_imap_nstring(out, ct.sub, ct.sub_len, false);
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
		message_content_type_free(&ct);
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
	          message_parse_content_type(pf.f[F_TYPE].value, pf.f[F_TYPE].value_len, &ct);
	buf_append_byte(out, '(');
	if (have_ct && ct.broken) {
		/* present but malformed: neither text nor the default */
		text = false;
		message_imap_nstring(out, ct.type, ct.type_len, false);
		buf_append_str(out, " \"\" NIL");
		message_content_type_free(&ct);
	} else if (have_ct && rfc822) {
		/* Dovecot spells the type of a message it parsed its own way */
		text = false;
		buf_append_str(out, "\"message\" \"rfc822\" ");
		append_params(out, &ct.params, false);
		message_content_type_free(&ct);
	} else if (have_ct) {
		text = message_token_eq(ct.type, ct.type_len, "text");
		message_imap_nstring(out, ct.type, ct.type_len, false);
		buf_append_byte(out, ' ');
		message_imap_nstring(out, ct.sub, ct.sub_len, false);
		buf_append_byte(out, ' ');
		append_params(out, &ct.params, text);
		message_content_type_free(&ct);
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
	{
		const uint8_t *cte;
		size_t cte_len;

		if (pf.have[F_CTE] &&
		    message_parse_cte(pf.f[F_CTE].value, pf.f[F_CTE].value_len, &cte, &cte_len))
			message_imap_nstring(out, cte, cte_len, false);
		else
			buf_append_str(out, "\"7bit\"");
	}
	append_num(out, p->body_vsize);
	if (text)
		append_num(out, p->body_lines);
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
		append_num(out, p->body_lines);
	}
	if (ext) {
		buf_append_byte(out, ' ');
		append_field_nstring(out, &pf, F_MD5);
		append_extension(out, &pf);
	}
	buf_append_byte(out, ')');
}

int
message_bodystructure(const struct message *msg, const struct message_part *part, bool extended,
                      struct buf *out)
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
