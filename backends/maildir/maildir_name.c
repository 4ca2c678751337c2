/*
 * Mailbox names to Maildir++ folder directory names and back (the scheme is
 * described in maildir.h): UTF-8 -> modified UTF-7 per component, then '%'
 * and '.' hex-escaped, components joined with '.', a leading '.'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/xalloc.h"

#include "maildir.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Decode one UTF-8 sequence; returns bytes used or 0 when invalid. */
static size_t
utf8_decode(const unsigned char *s, uint32_t *cp_r)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80) {
		*cp_r = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		cp = s[0] & 0x1f;
		n = 2;
	} else if ((s[0] & 0xf0) == 0xe0) {
		cp = s[0] & 0x0f;
		n = 3;
	} else if ((s[0] & 0xf8) == 0xf0) {
		cp = s[0] & 0x07;
		n = 4;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

static void
utf8_encode(struct buf *out, uint32_t cp)
{
	if (cp < 0x80) {
		buf_append_byte(out, (uint8_t)cp);
	} else if (cp < 0x800) {
		buf_append_byte(out, (uint8_t)(0xc0 | (cp >> 6)));
		buf_append_byte(out, (uint8_t)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_append_byte(out, (uint8_t)(0xe0 | (cp >> 12)));
		buf_append_byte(out, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
		buf_append_byte(out, (uint8_t)(0x80 | (cp & 0x3f)));
	} else {
		buf_append_byte(out, (uint8_t)(0xf0 | (cp >> 18)));
		buf_append_byte(out, (uint8_t)(0x80 | ((cp >> 12) & 0x3f)));
		buf_append_byte(out, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
		buf_append_byte(out, (uint8_t)(0x80 | (cp & 0x3f)));
	}
}

static void
put_escaped(struct buf *out, char c)
{
	if (c == '.')
		buf_append_str(out, "%2E");
	else if (c == '%')
		buf_append_str(out, "%25");
	else
		buf_append_byte(out, (uint8_t)c);
}

/* Encode one component [s, end) into out. Invalid UTF-8 (which the wrapper
 * refuses anyway) is encoded byte by byte as Latin-1 so the function is
 * total. */
static void
encode_component(struct buf *out, const unsigned char *s, const unsigned char *end)
{
	while (s < end) {
		uint32_t cp;
		size_t n;
		uint32_t bits = 0;
		int nbits = 0;

		if (*s >= 0x20 && *s < 0x7f) {
			if (*s == '&')
				buf_append_str(out, "&-");
			else
				put_escaped(out, (char)*s);
			s++;
			continue;
		}
		buf_append_byte(out, '&');
		while (s < end && !(*s >= 0x20 && *s < 0x7f)) {
			uint16_t units[2];
			int nu, i;

			n = utf8_decode(s, &cp);
			if (n == 0 || s + n > end) {
				cp = *s;
				n = 1;
			}
			s += n;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				units[0] = (uint16_t)(0xd800 | (cp >> 10));
				units[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
				nu = 2;
			} else {
				units[0] = (uint16_t)cp;
				nu = 1;
			}
			for (i = 0; i < nu; i++) {
				bits = (bits << 16) | units[i];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					buf_append_byte(out, (uint8_t)b64[(bits >> nbits) & 0x3f]);
				}
			}
		}
		if (nbits > 0)
			buf_append_byte(out, (uint8_t)b64[(bits << (6 - nbits)) & 0x3f]);
		buf_append_byte(out, '-');
	}
}

char *
md_name_encode(const char *name)
{
	struct buf out = BUF_INIT(0);
	const char *p = name, *slash;
	size_t len;

	if (strcmp(name, "INBOX") == 0)
		return xstrdup("");
	for (;;) {
		slash = strchr(p, '/');
		buf_append_byte(&out, '.');
		encode_component(&out, (const unsigned char *)p,
		    (const unsigned char *)(slash != NULL ? slash : p + strlen(p)));
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	return (char *)buf_steal(&out, &len);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
b64val(char c)
{
	const char *p = strchr(b64, c);

	return c != '\0' && p != NULL ? (int)(p - b64) : -1;
}

/* Decode one component [s, end); false when it is not our encoding. */
static bool
decode_component(struct buf *out, const char *s, const char *end)
{
	if (s == end)
		return false;
	while (s < end) {
		if (*s == '%') {
			int h, l;

			if (end - s < 3 || (h = hexval(s[1])) < 0 || (l = hexval(s[2])) < 0)
				return false;
			if (h * 16 + l != '.' && h * 16 + l != '%')
				return false;
			buf_append_byte(out, (uint8_t)(h * 16 + l));
			s += 3;
		} else if (*s == '&') {
			uint32_t bits = 0, hi = 0;
			int nbits = 0, v;
			bool any = false;

			s++;
			if (s < end && *s == '-') {
				buf_append_byte(out, '&');
				s++;
				continue;
			}
			while (s < end && *s != '-') {
				if ((v = b64val(*s)) < 0)
					return false;
				bits = (bits << 6) | (uint32_t)v;
				nbits += 6;
				s++;
				if (nbits >= 16) {
					uint32_t u;

					nbits -= 16;
					u = (bits >> nbits) & 0xffff;
					any = true;
					if (u >= 0xd800 && u <= 0xdbff) {
						if (hi != 0)
							return false;
						hi = u;
					} else if (u >= 0xdc00 && u <= 0xdfff) {
						if (hi == 0)
							return false;
						utf8_encode(out, 0x10000 + ((hi - 0xd800) << 10) +
						    (u - 0xdc00));
						hi = 0;
					} else {
						if (hi != 0 || (u >= 0x20 && u < 0x7f))
							return false;
						utf8_encode(out, u);
					}
				}
			}
			if (s == end || !any || hi != 0 || nbits >= 6 ||
			    (bits & ((1u << nbits) - 1)) != 0)
				return false;
			s++;	/* '-' */
		} else if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) {
			return false;
		} else {
			buf_append_byte(out, (uint8_t)*s);
			s++;
		}
	}
	return true;
}

char *
md_name_decode(const char *dirname)
{
	struct buf out = BUF_INIT(0);
	const char *p, *dot;
	size_t len;

	if (dirname[0] != '.' || dirname[1] == '\0')
		return NULL;
	p = dirname + 1;
	for (;;) {
		dot = strchr(p, '.');
		if (!decode_component(&out, p, dot != NULL ? dot : p + strlen(p))) {
			buf_free(&out);
			return NULL;
		}
		if (dot == NULL)
			break;
		buf_append_byte(&out, '/');
		p = dot + 1;
	}
	/* "INBOX" is the root, never a folder directory; and only the one
	 * canonical spelling of a name counts, so listing stays injective. */
	if (strcmp(buf_cstr(&out), "INBOX") == 0) {
		buf_free(&out);
		return NULL;
	} else {
		char *again = md_name_encode(buf_cstr(&out));
		bool same = strcmp(again, dirname) == 0;

		free(again);
		if (!same) {
			buf_free(&out);
			return NULL;
		}
	}
	return (char *)buf_steal(&out, &len);
}
