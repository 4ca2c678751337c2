/*
 * What a part's header says about its content, decoded for clients that
 * want values rather than IMAP's BODYSTRUCTURE syntax (JMAP's EmailBodyPart).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/hex.h"
#include "roost/message.h"
#include "roost/utf8.h"
#include "roost/xalloc.h"

#include "message_impl.h"

static char *
lower_dup(const uint8_t *p, size_t len)
{
	char *s = xmalloc(len + 1);

	for (size_t i = 0; i < len; i++)
		s[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
	s[len] = '\0';
	return s;
}

/* An RFC 2231 extended value "charset'lang'%XX..." to UTF-8. */
static char *
ext_value(const char *v, size_t len)
{
	const char *q1 = memchr(v, '\'', len), *q2;
	struct buf raw = BUF_INIT(0), out = BUF_INIT(0);
	char charset[64];
	size_t cl;

	if (q1 == NULL || (q2 = memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - v))) == NULL)
		return xstrndup(v, len);
	cl = (size_t)(q1 - v);
	if (cl >= sizeof(charset))
		cl = 0;
	memcpy(charset, v, cl);
	charset[cl] = '\0';
	for (const char *p = q2 + 1; p < v + len; p++) {
		int b;

		if (*p == '%' && p + 2 < v + len && (b = hex_byte(p + 1)) >= 0) {
			buf_append_byte(&raw, (uint8_t)b);
			p += 2;
		} else {
			buf_append_byte(&raw, (uint8_t)*p);
		}
	}
	if (message_charset_to_utf8(cl > 0 ? charset : "us-ascii", raw.data, raw.len, &out) != 0) {
		buf_reset(&out);
		buf_append(&out, raw.data, raw.len);
	}
	buf_free(&raw);
	buf_append(&out, "", 0);
	return (char *)buf_steal(&out, NULL);
}

/* A plain parameter value, with RFC 2047 words decoded (clients send them
 * though the RFC forbids it). */
static char *
plain_value(const char *v, size_t len)
{
	struct buf out = BUF_INIT(0);

	if (message_decode_words(v, len, &out) != 0) {
		buf_reset(&out);
		buf_append(&out, v, len);
	}
	buf_append(&out, "", 0);
	return (char *)buf_steal(&out, NULL);
}

static char *
param(const struct message_params *ps, const char *name)
{
	char ext[64];
	const struct message_param *p;

	snprintf(ext, sizeof(ext), "%s*", name);
	p = message_params_get(ps, ext);
	if (p != NULL)
		return ext_value(p->value, p->value_len);
	p = message_params_get(ps, name);
	if (p != NULL)
		return plain_value(p->value, p->value_len);
	return NULL;
}

static char *
field(const uint8_t *hdr, size_t hlen, const char *name)
{
	struct hdr_field f;
	struct buf v = BUF_INIT(0);

	if (!message_hdr_find(hdr, hlen, name, &f))
		return NULL;
	message_hdr_unfold(f.value, f.value_len, &v);
	buf_append(&v, "", 0);
	return (char *)buf_steal(&v, NULL);
}

void
message_part_info(const struct message *msg, const struct message_part *part,
                  struct message_part_info *info)
{
	const uint8_t *hdr = msg->data + part->header_off;
	size_t hlen = part->header_len;
	struct hdr_field f;
	struct content_type ct;
	char *cte;

	memset(info, 0, sizeof(*info));
	if (message_hdr_find(hdr, hlen, "Content-Type", &f)) {
		message_parse_content_type(f.value, f.value_len, &ct);
		if (!ct.broken) {
			info->type = lower_dup(ct.type, ct.type_len);
			info->subtype = lower_dup(ct.sub, ct.sub_len);
			info->charset = param(&ct.params, "charset");
			info->name = param(&ct.params, "name");
		}
		message_content_type_free(&ct);
	}
	if (info->type == NULL) {
		bool digest = part->parent != NULL && mpart_c(part->parent)->digest;

		info->type = xstrdup(digest ? "message" : "text");
		info->subtype = xstrdup(digest ? "rfc822" : "plain");
	}
	if (info->charset == NULL && strcmp(info->type, "text") == 0)
		info->charset = xstrdup("us-ascii");
	if (message_hdr_find(hdr, hlen, "Content-Disposition", &f)) {
		message_parse_disposition(f.value, f.value_len, &ct);
		info->disposition = lower_dup(ct.type, ct.type_len);
		{
			char *fn = param(&ct.params, "filename");

			if (fn != NULL) {
				free(info->name);
				info->name = fn;
			}
		}
		message_content_type_free(&ct);
	}
	if (info->disposition == NULL)
		info->disposition = xstrdup("");
	info->cid = field(hdr, hlen, "Content-ID");
	if (info->cid != NULL) {
		char *p = info->cid + strspn(info->cid, " <");
		size_t n = strcspn(p, ">");

		memmove(info->cid, p, n);
		info->cid[n] = '\0';
	}
	info->language = field(hdr, hlen, "Content-Language");
	info->location = field(hdr, hlen, "Content-Location");
	cte = field(hdr, hlen, "Content-Transfer-Encoding");
	if (cte != NULL) {
		char *p = cte + strspn(cte, " \t");
		size_t n = strcspn(p, " \t;(");

		info->cte = lower_dup((const uint8_t *)p, n);
		free(cte);
	} else {
		info->cte = xstrdup("7bit");
	}
}

void
message_part_info_free(struct message_part_info *info)
{
	free(info->type);
	free(info->subtype);
	free(info->charset);
	free(info->name);
	free(info->disposition);
	free(info->cid);
	free(info->language);
	free(info->location);
	free(info->cte);
	memset(info, 0, sizeof(*info));
}

/* Copy p[0..len) with each invalid UTF-8 sequence replaced by U+FFFD. */
static void
utf8_clean(const uint8_t *p, size_t len, struct buf *out)
{
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(p + i, len - i, &cp);

		if (n == 0) {
			buf_append_str(out, "\xef\xbf\xbd");
			i++;
			continue;
		}
		buf_append(out, p + i, n);
		i += n;
	}
}

void
message_part_text(const struct message *msg, const struct message_part *part, struct buf *out,
                  bool *problem_r)
{
	struct message_part_info info;
	struct buf raw = BUF_INIT(0);
	size_t start = out->len;

	*problem_r = false;
	message_part_info(msg, part, &info);
	if (message_part_decode(msg, part, &raw) != 0) {
		*problem_r = true;
		buf_reset(&raw);
		buf_append(&raw, msg->data + part->body_off, part->body_len);
	}
	if (message_charset_to_utf8(info.charset != NULL ? info.charset : "us-ascii", raw.data,
	                            raw.len, out) != 0) {
		*problem_r = true;
		buf_truncate(out, start);
		utf8_clean(raw.data, raw.len, out);
	}
	buf_free(&raw);
	message_part_info_free(&info);
}
