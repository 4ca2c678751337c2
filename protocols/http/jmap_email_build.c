/*
 * Building the RFC 5322 text of a message from an Email object, for
 * Email/set create (RFC 8621 4.6): headers (RFC 2047 encoded words when
 * not ASCII), text/html parts and base64 attachments from blobs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "roost/config.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static bool
is_ascii(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s >= 0x80)
			return false;
	}
	return true;
}

/* A header text value, RFC 2047 B-encoded when not ASCII. */
static void
header_text(struct buf *out, const char *v)
{
	struct buf b = BUF_INIT(0);

	if (is_ascii(v)) {
		for (; *v != '\0'; v++)
			buf_append_byte(out, *v == '\r' || *v == '\n' ? ' ' : (uint8_t)*v);
		return;
	}
	base64_encode(v, strlen(v), &b);
	buf_printf(out, "=?UTF-8?B?%s?=", (const char *)b.data);
	buf_free(&b);
}

static void
header_addresses(struct buf *out, const char *field, json_t *list)
{
	json_t *a;
	size_t i;

	if (!json_is_array(list) || json_array_size(list) == 0)
		return;
	buf_printf(out, "%s: ", field);
	json_array_foreach(list, i, a)
	{
		const char *name = json_string_value(json_object_get(a, "name"));
		const char *email = json_string_value(json_object_get(a, "email"));

		if (email == NULL || strpbrk(email, "\r\n<>,\" ") != NULL)
			continue;
		if (i > 0)
			buf_append_str(out, ",\r\n ");
		if (name != NULL && name[0] != '\0') {
			if (is_ascii(name) && strpbrk(name, "\"\\\r\n") == NULL) {
				buf_printf(out, "\"%s\" ", name);
			} else {
				header_text(out, name);
				buf_append_byte(out, ' ');
			}
		}
		buf_printf(out, "<%s>", email);
	}
	buf_append_str(out, "\r\n");
}

static void
header_ids(struct buf *out, const char *field, json_t *list)
{
	json_t *v;
	size_t i;

	if (!json_is_array(list) || json_array_size(list) == 0)
		return;
	buf_printf(out, "%s:", field);
	json_array_foreach(list, i, v)
	{
		const char *id = json_string_value(v);

		if (id != NULL && strpbrk(id, "\r\n<> ") == NULL)
			buf_printf(out, " <%s>", id);
	}
	buf_append_str(out, "\r\n");
}

static void
base64_lines(const uint8_t *p, size_t len, struct buf *out)
{
	struct buf b = BUF_INIT(0);

	base64_encode(p, len, &b);
	for (size_t i = 0; i < b.len; i += 76) {
		buf_append(out, b.data + i, b.len - i < 76 ? b.len - i : 76);
		buf_append_str(out, "\r\n");
	}
	buf_free(&b);
}

/* A text part: 7bit when it is short-lined ASCII, base64 otherwise. */
static void
text_part(struct buf *out, const char *subtype, const char *text)
{
	bool plain = is_ascii(text);
	size_t line = 0;

	for (const char *p = text; plain && *p != '\0'; p++) {
		line = *p == '\n' ? 0 : line + 1;
		if (line > 900 || (*p == '\r' && p[1] != '\n'))
			plain = false;
	}
	buf_printf(out, "Content-Type: text/%s; charset=utf-8\r\n", subtype);
	if (plain) {
		buf_append_str(out, "Content-Transfer-Encoding: 7bit\r\n\r\n");
		for (const char *p = text; *p != '\0'; p++) {
			if (*p == '\n' && (p == text || p[-1] != '\r'))
				buf_append_byte(out, '\r');
			buf_append_byte(out, (uint8_t)*p);
		}
		buf_append_str(out, "\r\n");
	} else {
		buf_append_str(out, "Content-Transfer-Encoding: base64\r\n\r\n");
		base64_lines((const uint8_t *)text, strlen(text), out);
	}
}

static void
boundary(char out[40])
{
	uint8_t rnd[12];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0x5a, sizeof(rnd));
	snprintf(out, 40, "=_roost_");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 8 + 2 * i, 3, "%02x", rnd[i]);
}

/* The text of the first part of a textBody/htmlBody list. */
static const char *
part_value(json_t *list, json_t *values)
{
	const char *pid = json_string_value(json_object_get(json_array_get(list, 0), "partId"));

	if (pid == NULL)
		return NULL;
	return json_string_value(json_object_get(json_object_get(values, pid), "value"));
}

static const char *
identity_email(struct jmap_req *r, char *buf, size_t size)
{
	if (strchr(r->user, '@') != NULL)
		snprintf(buf, size, "%s", r->user);
	else
		snprintf(buf, size, "%s@%s", r->user, r->s->svc->cfg->hostname);
	return buf;
}

/* RFC 5322 text of an Email object to create; NULL and *why on error. */
bool
jmap_build_message(struct jmap_req *r, json_t *e, struct buf *out, const char **why)
{
	json_t *values = json_object_get(e, "bodyValues");
	json_t *atts = json_object_get(e, "attachments");
	const char *text = part_value(json_object_get(e, "textBody"), values);
	const char *html = part_value(json_object_get(e, "htmlBody"), values);
	const char *subject = json_string_value(json_object_get(e, "subject"));
	const char *sent = json_string_value(json_object_get(e, "sentAt"));
	char date[64], mid[128], me[AUTH_MAX_NAME + 64], outer[40], alt[40];
	uint8_t rnd[12];
	time_t now = time(NULL);
	struct tm tm;
	int64_t t;
	bool mixed = json_is_array(atts) && json_array_size(atts) > 0;

	if (json_object_get(e, "bodyStructure") != NULL) {
		*why = "bodyStructure: give textBody/htmlBody/attachments";
		return false;
	}
	if (sent != NULL && jmap_parse_date(sent, &t) == 0)
		now = (time_t)t;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	buf_printf(out, "Date: %s\r\n", date);
	if (json_object_get(e, "from") != NULL)
		header_addresses(out, "From", json_object_get(e, "from"));
	else
		buf_printf(out, "From: <%s>\r\n", identity_email(r, me, sizeof(me)));
	header_addresses(out, "Sender", json_object_get(e, "sender"));
	header_addresses(out, "To", json_object_get(e, "to"));
	header_addresses(out, "Cc", json_object_get(e, "cc"));
	header_addresses(out, "Bcc", json_object_get(e, "bcc"));
	header_addresses(out, "Reply-To", json_object_get(e, "replyTo"));
	if (subject != NULL) {
		buf_append_str(out, "Subject: ");
		header_text(out, subject);
		buf_append_str(out, "\r\n");
	}
	if (json_object_get(e, "messageId") != NULL) {
		header_ids(out, "Message-ID", json_object_get(e, "messageId"));
	} else {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			memset(rnd, 0, sizeof(rnd));
		snprintf(mid, sizeof(mid), "%lld.", (long long)now);
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(mid + strlen(mid), 3, "%02x", rnd[i]);
		buf_printf(out, "Message-ID: <%s@%s>\r\n", mid, r->s->svc->cfg->hostname);
	}
	header_ids(out, "In-Reply-To", json_object_get(e, "inReplyTo"));
	header_ids(out, "References", json_object_get(e, "references"));
	buf_append_str(out, "MIME-Version: 1.0\r\n");
	if (text == NULL && html == NULL)
		text = "";
	boundary(outer);
	boundary(alt);
	if (mixed)
		buf_printf(out, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n",
		           outer, outer);
	if (text != NULL && html != NULL) {
		buf_printf(out, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n",
		           alt);
		buf_printf(out, "--%s\r\n", alt);
		text_part(out, "plain", text);
		buf_printf(out, "--%s\r\n", alt);
		text_part(out, "html", html);
		buf_printf(out, "--%s--\r\n", alt);
	} else {
		text_part(out, text != NULL ? "plain" : "html", text != NULL ? text : html);
	}
	if (mixed) {
		json_t *a;
		size_t i;

		json_array_foreach(atts, i, a)
		{
			const char *blob = json_string_value(json_object_get(a, "blobId"));
			const char *type = json_string_value(json_object_get(a, "type"));
			const char *name = json_string_value(json_object_get(a, "name"));
			const char *disp = json_string_value(json_object_get(a, "disposition"));
			const char *cid = json_string_value(json_object_get(a, "cid"));
			struct buf data = BUF_INIT(r->s->svc->cfg->max_message_size);

			if (blob == NULL || jmap_blob_fetch(r, blob, &data) != 0) {
				buf_free(&data);
				*why = "attachments: blobId";
				return false;
			}
			if (type == NULL || strpbrk(type, "\r\n;\"") != NULL ||
			    strchr(type, '/') == NULL)
				type = "application/octet-stream";
			buf_printf(out, "--%s\r\nContent-Type: %s\r\n", outer, type);
			buf_printf(out, "Content-Disposition: %s",
			           disp != NULL && strcmp(disp, "inline") == 0 ? "inline"
			                                                       : "attachment");
			if (name != NULL) {
				struct buf enc = BUF_INIT(0);

				for (const unsigned char *p = (const unsigned char *)name; *p;
				     p++) {
					if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
					    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
						buf_append_byte(&enc, *p);
					else
						buf_printf(&enc, "%%%02X", *p);
				}
				buf_printf(out, ";\r\n filename*=UTF-8''%s",
				           (const char *)enc.data ?: "");
				buf_free(&enc);
			}
			buf_append_str(out, "\r\n");
			if (cid != NULL && strpbrk(cid, "\r\n<>") == NULL)
				buf_printf(out, "Content-ID: <%s>\r\n", cid);
			buf_append_str(out, "Content-Transfer-Encoding: base64\r\n\r\n");
			base64_lines(data.data, data.len, out);
			buf_free(&data);
		}
		buf_printf(out, "--%s--\r\n", outer);
	}
	return true;
}
