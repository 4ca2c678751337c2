/*
 * The preview of a message (IMAP PREVIEW, RFC 8970; JMAP Email.preview,
 * RFC 8621 4.1.4): up to MESSAGE_PREVIEW_CHARS characters of its first
 * text part, HTML tags dropped, white space collapsed.
 */
#include <string.h>
#include <strings.h>

#include "roost/message.h"

/* Parts looked at before giving up: a preview never walks a huge tree. */
#define PREVIEW_MAX_PARTS 1000

/* Strip tags (and style and script elements) and decode a few entities:
 * enough for a preview. */
static void
html_to_text(const char *h, struct buf *out)
{
	bool tag = false;

	for (const char *p = h; *p != '\0'; p++) {
		if (*p == '<') {
			const char *e = NULL;

			tag = true;
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

/* Collapse white space (control characters count as space) and cut at
 * max characters, on a character boundary. */
static void
squeeze(const char *s, size_t max, struct buf *out)
{
	size_t chars = 0;
	bool space = true;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f) {
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

void
message_preview_text(const char *text, bool html, struct buf *out)
{
	struct buf plain = BUF_INIT(0);

	if (html) {
		html_to_text(text, &plain);
		text = (const char *)plain.data ?: "";
	}
	squeeze(text, MESSAGE_PREVIEW_CHARS, out);
	buf_free(&plain);
}

/* 1 for text/plain, 2 for text/html shown inline, else 0. */
static int
text_kind(const struct message *msg, const struct message_part *p)
{
	struct message_part_info info;
	int kind = 0;

	message_part_info(msg, p, &info);
	if (strcmp(info.type, "text") == 0 && strcmp(info.disposition, "attachment") != 0) {
		if (strcmp(info.subtype, "plain") == 0)
			kind = 1;
		else if (strcmp(info.subtype, "html") == 0)
			kind = 2;
	}
	message_part_info_free(&info);
	return kind;
}

static bool
is_alternative(const struct message *msg, const struct message_part *p)
{
	struct message_part_info info;
	bool alt;

	message_part_info(msg, p, &info);
	alt = strcmp(info.subtype, "alternative") == 0;
	message_part_info_free(&info);
	return alt;
}

void
message_preview(const struct message *msg, struct buf *out)
{
	const struct message_part *p = message_root(msg), *best = NULL;
	unsigned seen = 0;
	int kind = 0;

	/* Depth first over the multiparts (an attached message is not the
	 * text of this one); in an alternative the plain text wins. */
	while (p != NULL && best == NULL && seen++ < PREVIEW_MAX_PARTS) {
		if (p->is_multipart && p->children != NULL) {
			if (is_alternative(msg, p)) {
				for (const struct message_part *c = p->children;
				     c != NULL && seen++ < PREVIEW_MAX_PARTS; c = c->next) {
					int k = c->is_multipart ? 0 : text_kind(msg, c);

					if (k != 0 && (best == NULL || (k == 1 && kind == 2))) {
						best = c;
						kind = k;
					}
				}
				if (best != NULL)
					break;
			}
			p = p->children;
			continue;
		}
		if (!p->is_message_rfc822 && (kind = text_kind(msg, p)) != 0) {
			best = p;
			break;
		}
		while (p != NULL && p->next == NULL)
			p = p->parent;
		if (p != NULL)
			p = p->next;
	}
	if (best != NULL) {
		struct buf t = BUF_INIT(0);
		bool problem;

		message_part_text(msg, best, &t, &problem);
		message_preview_text((const char *)t.data ?: "", kind == 2, out);
		buf_free(&t);
	}
}
