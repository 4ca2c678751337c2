/*
 * Modified UTF-7 (RFC 3501 5.1.3), the 7-bit spelling of mailbox names that
 * IMAP clients use and that Dovecot's Maildir++ layout uses on disk.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/mutf7.h"
#include "roost/utf8.h"
#include "roost/xalloc.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64val(char c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;

	return p == NULL ? -1 : (int)(p - b64chars);
}

/* Append cp (checked by the caller) as UTF-8. */
static int
put_cp(struct buf *out, uint32_t cp)
{
	uint8_t b[UTF8_SEQ_MAX];

	return buf_append(out, b, utf8_encode(cp, b));
}

int
mutf7_decode(const char *in, size_t len, struct buf *out)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0;

	while (i < len) {
		if (s[i] >= 0x80) {
			uint32_t cp;
			size_t n = utf8_decode(s + i, len - i, &cp);
			if (n == 0 || utf8_is_control(cp))
				return ROOST_EINVAL;
			buf_append(out, s + i, n);
			i += n;
			continue;
		}
		if (s[i] != '&') {
			if (utf8_is_control(s[i]))
				return ROOST_EINVAL;
			buf_append_byte(out, s[i++]);
			continue;
		}
		i++;
		if (i < len && s[i] == '-') {
			buf_append_byte(out, '&');
			i++;
			continue;
		}
		uint32_t bits = 0, nbits = 0, hi_sur = 0;
		size_t start = i;
		while (i < len && s[i] != '-') {
			int v = b64val((char)s[i]);
			if (v < 0)
				return ROOST_EINVAL;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits >= 16) {
				uint32_t u = (bits >> (nbits - 16)) & 0xffff;
				nbits -= 16;
				if (u >= 0xd800 && u <= 0xdbff) {
					if (hi_sur)
						return ROOST_EINVAL;
					hi_sur = u;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					if (!hi_sur)
						return ROOST_EINVAL;
					put_cp(out,
					       0x10000 + ((hi_sur - 0xd800) << 10) + (u - 0xdc00));
					hi_sur = 0;
				} else {
					/* printable ASCII must not be encoded; NUL
					 * and other controls must not be at all (a
					 * NUL would cut the name short: "a&AAA-b"
					 * would name "a") */
					if (hi_sur || (u >= 0x20 && u < 0x7f) || utf8_is_control(u))
						return ROOST_EINVAL;
					put_cp(out, u);
				}
			}
			i++;
		}
		if (i >= len || i == start || hi_sur || nbits >= 6 ||
		    (bits & ((1u << nbits) - 1)) != 0)
			return ROOST_EINVAL;
		i++; /* '-' */
	}
	return 0;
}

static void
b64_flush(struct buf *out, const uint16_t *u, size_t n)
{
	uint32_t bits = 0;
	unsigned nbits = 0;

	buf_append_byte(out, '&');
	for (size_t i = 0; i < n; i++) {
		bits = (bits << 16) | u[i];
		nbits += 16;
		while (nbits >= 6) {
			buf_append_byte(out, (uint8_t)b64chars[(bits >> (nbits - 6)) & 0x3f]);
			nbits -= 6;
		}
	}
	if (nbits > 0)
		buf_append_byte(out, (uint8_t)b64chars[(bits << (6 - nbits)) & 0x3f]);
	buf_append_byte(out, '-');
}

int
mutf7_encode(const char *in, size_t len, struct buf *out)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0;
	uint16_t *u = NULL;
	size_t nu = 0, cap = 0;
	int rc = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(s + i, len - i, &cp);
		if (n == 0) {
			rc = ROOST_EINVAL;
			goto done;
		}
		i += n;
		if (cp >= 0x20 && cp < 0x7f) {
			if (nu > 0) {
				b64_flush(out, u, nu);
				nu = 0;
			}
			if (cp == '&')
				buf_append_str(out, "&-");
			else
				buf_append_byte(out, (uint8_t)cp);
			continue;
		}
		if (nu + 2 > cap) {
			cap = cap ? cap * 2 : 16;
			u = xreallocarray(u, cap, sizeof(*u));
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			u[nu++] = (uint16_t)(0xd800 + (cp >> 10));
			u[nu++] = (uint16_t)(0xdc00 + (cp & 0x3ff));
		} else {
			u[nu++] = (uint16_t)cp;
		}
	}
	if (nu > 0)
		b64_flush(out, u, nu);
done:
	free(u);
	return rc;
}

/* Bytes of one base64 run of n UTF-16 units, with its '&' and '-'. */
static size_t
run_len(size_t n)
{
	return 2 + (n * 16 + 5) / 6;
}

int
mutf7_encoded_len(const char *in, size_t len, size_t *len_r)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0, total = 0, units = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(s + i, len - i, &cp);

		if (n == 0)
			return ROOST_EINVAL;
		i += n;
		if (cp >= 0x20 && cp < 0x7f) {
			if (units > 0)
				total += run_len(units);
			units = 0;
			total += cp == '&' ? 2 : 1;
		} else {
			units += cp >= 0x10000 ? 2 : 1;
		}
	}
	if (units > 0)
		total += run_len(units);
	*len_r = total;
	return 0;
}
