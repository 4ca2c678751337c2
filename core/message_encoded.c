/*
 * Decoding: RFC 2047 encoded words ("Q" and "B" texts), a part's content
 * with its transfer encoding undone (by core/cte.c, the decoders FETCH
 * BINARY uses), and the decoded text of a message for SEARCH BODY/TEXT.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/cte.h"
#include "roost/error.h"
#include "roost/hex.h"
#include "roost/message.h"
#include "roost/utf8.h"

#include "message_impl.h"

/* The text of a "Q" encoded word (RFC 2047 4.2): "=XY" is the byte, '_' a
 * space, anything else itself (a broken escape too). */
int
message_qp_decode(const uint8_t *d, size_t len, struct buf *out)
{
	int ret = 0;

	for (size_t i = 0; i < len && ret == 0; i++) {
		int b;

		if (d[i] == '=' && i + 2 < len && (b = hex_byte((const char *)d + i + 1)) >= 0) {
			ret = buf_append_byte(out, (uint8_t)b);
			i += 2;
		} else {
			ret = buf_append_byte(out, d[i] == '_' ? ' ' : d[i]);
		}
	}
	if (ret == 0 && out->data == NULL)
		ret = buf_reserve(out, 1);
	return ret;
}

static int
b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
message_b64_decode(const uint8_t *d, size_t len, struct buf *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i;
	int ret = 0;

	if ((ret = buf_reserve(out, len / 4 * 3 + 3)) < 0)
		return ret;
	for (i = 0; i < len && ret == 0; i++) {
		int v = b64val(d[i]);

		if (d[i] == '=')
			break;
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			ret = buf_append_byte(out, (uint8_t)(acc >> bits));
			acc &= (1u << bits) - 1;
		}
	}
	return ret;
}

/*
 * One encoded word at p ("=?charset?X?text?="): fills its parts, returns
 * its length or 0 if p does not start one.
 */
static size_t
encoded_word(const uint8_t *p, size_t len, const uint8_t **cs, size_t *cs_len, uint8_t *enc,
             const uint8_t **txt, size_t *txt_len)
{
	size_t i = 2, s;

	if (len < 8 || p[0] != '=' || p[1] != '?')
		return 0;
	s = i;
	while (i < len && p[i] != '?' && p[i] > ' ' && p[i] < 0x7f)
		i++;
	if (i >= len || p[i] != '?' || i == s)
		return 0;
	*cs = p + s;
	*cs_len = i - s;
	i++;
	if (i + 1 >= len || p[i + 1] != '?')
		return 0;
	*enc = p[i] >= 'a' ? (uint8_t)(p[i] - 32) : p[i];
	if (*enc != 'B' && *enc != 'Q')
		return 0;
	i += 2;
	s = i;
	while (i + 1 < len && !(p[i] == '?' && p[i + 1] == '='))
		i++;
	if (i + 1 >= len)
		return 0;
	*txt = p + s;
	*txt_len = i - s;
	return i + 2;
}

static int
flush_words(char *charset, struct buf *pend, struct buf *out)
{
	int ret = 0;

	if (pend->len > 0)
		ret = message_charset_to_utf8(charset, pend->data, pend->len, out);
	buf_reset(pend);
	return ret;
}

/* Raw (not encoded) text: UTF-8 if it is, else taken as ISO-8859-1. */
static int
append_raw(const uint8_t *p, size_t len, struct buf *out)
{
	if (utf8_valid(p, len))
		return buf_append(out, p, len);
	return message_charset_to_utf8("ISO-8859-1", p, len, out);
}

int
message_decode_words(const char *text, size_t len, struct buf *out)
{
	const uint8_t *p = (const uint8_t *)text;
	struct buf pend = BUF_INIT(0);
	char charset[64] = "";
	size_t i = 0, raw = 0, start = out->len;
	bool prev_word = false;
	int ret = 0;

	while (i < len && ret == 0) {
		const uint8_t *cs, *txt;
		size_t cs_len, txt_len, n, j;
		uint8_t enc;
		char this_cs[64];

		if (p[i] != '=' ||
		    (n = encoded_word(p + i, len - i, &cs, &cs_len, &enc, &txt, &txt_len)) == 0) {
			i++;
			continue;
		}
		/* text before the word; white space between two words is dropped */
		if (raw < i) {
			bool ws = prev_word;

			for (j = raw; j < i && ws; j++)
				if (p[j] != ' ' && p[j] != '\t' && p[j] != '\r' && p[j] != '\n')
					ws = false;
			if (!ws) {
				if ((ret = flush_words(charset, &pend, out)) < 0 ||
				    (ret = append_raw(p + raw, i - raw, out)) < 0)
					break;
			}
		}
		prev_word = true;
		if (cs_len >= sizeof(this_cs))
			cs_len = sizeof(this_cs) - 1;
		memcpy(this_cs, cs, cs_len);
		this_cs[cs_len] = '\0';
		/* RFC 2231 language suffix: charset*lang */
		{
			char *star = strchr(this_cs, '*');
			if (star != NULL)
				*star = '\0';
		}
		if (strcasecmp(this_cs, charset) != 0) {
			if ((ret = flush_words(charset, &pend, out)) < 0)
				break;
			memcpy(charset, this_cs, sizeof(charset));
		}
		if (enc == 'B')
			ret = message_b64_decode(txt, txt_len, &pend);
		else
			ret = message_qp_decode(txt, txt_len, &pend);
		i += n;
		raw = i;
	}
	if (ret == 0)
		ret = flush_words(charset, &pend, out);
	if (ret == 0 && raw < len)
		ret = append_raw(p + raw, len - raw, out);
	if (ret == 0 && out->data == NULL)
		ret = buf_reserve(out, 1);
	buf_free(&pend);
	if (ret < 0)
		buf_truncate(out, start);
	return ret;
}

/* The Content-Transfer-Encoding token of a part, lower-cased into enc. */
static void
part_cte(const struct message *msg, const struct message_part *part, char *enc, size_t size)
{
	struct hdr_field f;
	struct lex lx;
	size_t i = 0;

	enc[0] = '\0';
	if (!message_hdr_find(msg->data + part->header_off, part->header_len,
	                      "content-transfer-encoding", &f))
		return;
	lx.p = f.value;
	lx.end = f.value + f.value_len;
	message_lex_skip_cfws(&lx);
	while (lx.p<lx.end && * lx.p> ' ' && *lx.p != '(' && *lx.p != ';' && i + 1 < size) {
		uint8_t c = *lx.p++;
		enc[i++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	enc[i] = '\0';
}

int
message_part_decode(const struct message *msg, const struct message_part *part, struct buf *out)
{
	const uint8_t *b = msg->data + part->body_off;
	enum cte_kind kind;
	struct cte_decoder d;
	uint8_t chunk[4096];
	size_t n;
	char enc[32];
	int ret = 0;

	part_cte(msg, part, enc, sizeof(enc));
	kind = cte_kind_from_name(enc);
	if (kind == CTE_UNKNOWN)
		return ROOST_EINVAL;
	/* The one decoder FETCH BINARY uses; identity as the bytes are (the
	 * callers take bare LFs as they come). */
	cte_decoder_init(&d, kind == CTE_TEXT ? CTE_BINARY : kind);
	while (ret == 0 && (n = cte_decode(&d, b, part->body_len, chunk, sizeof(chunk))) > 0)
		ret = buf_append(out, chunk, n);
	if (ret == 0 && out->data == NULL)
		ret = buf_reserve(out, 1);
	return ret;
}

/* Is part a text part (text/...; no Content-Type = text/plain)? charset_r
 * gets its charset ("" when none). */
static bool
part_is_text(const struct message *msg, const struct message_part *part, char *cs, size_t size)
{
	struct hdr_field f;
	struct content_type ct;
	bool text = false;

	cs[0] = '\0';
	if (!message_hdr_find(msg->data + part->header_off, part->header_len, "content-type", &f)) {
		const struct mpart *parent =
		    mpart_c(part)->pub.parent != NULL ? mpart_c(part->parent) : NULL;
		return parent == NULL || !parent->digest;
	}
	if (!message_parse_content_type(f.value, f.value_len, &ct))
		return true;
	if (message_token_eq(ct.type, ct.type_len, "text")) {
		const struct message_param *c = message_params_get(&ct.params, "charset");
		text = true;
		if (c != NULL && c->value_len < size) {
			memcpy(cs, c->value, c->value_len);
			cs[c->value_len] = '\0';
		}
	}
	message_content_type_free(&ct);
	return text;
}

int
message_body_text(const struct message *msg, struct buf *out)
{
	const struct message_part *p = message_root(msg);
	struct buf dec = BUF_INIT(0);
	bool first = true;
	int ret = 0;

	while (p != NULL && ret == 0) {
		char cs[64];

		if (p->children == NULL && !p->is_multipart && !p->is_message_rfc822 &&
		    part_is_text(msg, p, cs, sizeof(cs))) {
			buf_reset(&dec);
			if (message_part_decode(msg, p, &dec) < 0) {
				buf_reset(&dec);
				buf_append(&dec, msg->data + p->body_off, p->body_len);
			}
			if (!first)
				ret = buf_append_byte(out, '\n');
			if (ret == 0)
				ret = message_charset_to_utf8(cs, dec.data, dec.len, out);
			first = false;
		}
		/* depth-first, iterative */
		if (p->children != NULL) {
			p = p->children;
			continue;
		}
		while (p != NULL && p->next == NULL)
			p = p->parent;
		if (p != NULL)
			p = p->next;
	}
	buf_free(&dec);
	if (ret == 0 && out->data == NULL)
		ret = buf_reserve(out, 1);
	return ret;
}
