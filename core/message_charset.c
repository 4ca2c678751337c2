/*
 * Charsets to UTF-8 (glibc iconv) and the case-insensitive matching IMAP
 * SEARCH uses.
 *
 * An iconv_t is opened per conversion: it is not shareable between threads
 * and conversions are per header or per part, so the open is not the cost
 * that matters. Bytes that do not convert become U+FFFD, so a bad message
 * is still searchable.
 */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "message_impl.h"

static const char REPLACEMENT[] = "\xef\xbf\xbd";

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t
utf8_seq(const uint8_t *p, size_t len)
{
	uint8_t c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return len >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (len < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && p[1] < 0xa0)
			return 0;
		if (c == 0xed && p[1] >= 0xa0)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (len < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && p[1] < 0x90)
			return 0;
		if (c == 0xf4 && p[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

bool
message_utf8_valid(const uint8_t *p, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((n = utf8_seq(p + i, len - i)) == 0)
			return false;
		i += n;
	}
	return true;
}

static int
append_utf8_fixed(const uint8_t *p, size_t len, struct buf *out)
{
	size_t i = 0, run = 0, n;
	int ret;

	while (i + run < len) {
		if (p[i + run] < 0x80) {
			run++;
			continue;
		}
		if ((n = utf8_seq(p + i + run, len - i - run)) != 0) {
			run += n;
			continue;
		}
		if ((ret = buf_append(out, p + i, run)) < 0 ||
		    (ret = buf_append(out, REPLACEMENT, 3)) < 0)
			return ret;
		i += run + 1;
		run = 0;
	}
	return buf_append(out, p + i, run);
}

/* Names iconv does not know, or knows as a smaller set than mail means. */
static const char *
charset_alias(const char *cs)
{
	static const struct {
		const char *name, *iconv;
	} aliases[] = {
	    {"gb2312", "GBK"},
	    {"x-gbk", "GBK"},
	    {"ks_c_5601-1987", "CP949"},
	    {"iso-8859-8-i", "ISO-8859-8"},
	    {"x-sjis", "SHIFT_JIS"},
	    {"shift-jis", "SHIFT_JIS"},
	    {"x-mac-roman", "MACINTOSH"},
	    {"unicode-1-1-utf-7", "UTF-7"},
	    {"x-unknown", "ISO-8859-1"},
	    {"unknown-8bit", "ISO-8859-1"},
	    {"default", "ISO-8859-1"},
	};
	size_t i;

	for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (strcasecmp(cs, aliases[i].name) == 0)
			return aliases[i].iconv;
	return cs;
}

int
message_charset_to_utf8(const char *charset, const uint8_t *data, size_t len, struct buf *out)
{
	iconv_t cd;
	char obuf[4096];
	char *in = (char *)data;
	size_t inleft = len;
	int ret = 0;

	if (charset == NULL || *charset == '\0' || strcasecmp(charset, "utf-8") == 0 ||
	    strcasecmp(charset, "utf8") == 0 || strcasecmp(charset, "us-ascii") == 0 ||
	    strcasecmp(charset, "ascii") == 0)
		return append_utf8_fixed(data, len, out);
	cd = iconv_open("UTF-8", charset_alias(charset));
	if (cd == (iconv_t)-1) {
		/* unknown charset: keep what is UTF-8, mark the rest */
		return append_utf8_fixed(data, len, out);
	}
	while (inleft > 0 && ret == 0) {
		char *op = obuf;
		size_t oleft = sizeof(obuf);
		size_t r = iconv(cd, &in, &inleft, &op, &oleft);
		int err = errno;

		ret = buf_append(out, obuf, (size_t)(op - obuf));
		if (r != (size_t)-1 || ret < 0)
			continue;
		if (err == E2BIG)
			continue;
		/* EILSEQ or EINVAL (truncated at the end): one byte lost */
		if (ret == 0)
			ret = buf_append(out, REPLACEMENT, 3);
		in++;
		inleft--;
		iconv(cd, NULL, NULL, NULL, NULL);
	}
	if (ret == 0) {
		/* flush a stateful encoding's shift sequence */
		char *op = obuf;
		size_t oleft = sizeof(obuf);
		iconv(cd, NULL, NULL, &op, &oleft);
		ret = buf_append(out, obuf, (size_t)(op - obuf));
	}
	iconv_close(cd);
	if (ret == 0 && out->data == NULL)
		ret = buf_reserve(out, 1);
	return ret;
}

/* ---- case-insensitive matching ---- */

static uint32_t
fold_cp(uint32_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c < 0x80)
		return c;
	/* Latin-1: À-Þ except × */
	if (c >= 0xc0 && c <= 0xde && c != 0xd7)
		return c + 32;
	/* Latin Extended-A: mostly upper/lower pairs */
	if (c >= 0x100 && c <= 0x137)
		return c | 1;
	if (c >= 0x139 && c <= 0x148)
		return (c & 1) ? c + 1 : c;
	if (c >= 0x14a && c <= 0x177)
		return c | 1;
	if (c == 0x178)
		return 0xff;
	if (c >= 0x179 && c <= 0x17e)
		return (c & 1) ? c + 1 : c;
	/* Greek and Cyrillic capitals */
	if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
		return c + 32;
	if (c >= 0x410 && c <= 0x42f)
		return c + 32;
	if (c >= 0x400 && c <= 0x40f)
		return c + 80;
	return c;
}

static void
put_cp(struct buf *b, uint32_t c)
{
	uint8_t t[4];
	size_t n;

	if (c < 0x80) {
		t[0] = (uint8_t)c;
		n = 1;
	} else if (c < 0x800) {
		t[0] = (uint8_t)(0xc0 | (c >> 6));
		t[1] = (uint8_t)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		t[0] = (uint8_t)(0xe0 | (c >> 12));
		t[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
		t[2] = (uint8_t)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		t[0] = (uint8_t)(0xf0 | (c >> 18));
		t[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
		t[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
		t[3] = (uint8_t)(0x80 | (c & 0x3f));
		n = 4;
	}
	buf_append(b, t, n);
}

void
message_text_fold(const char *text, size_t len, struct buf *out)
{
	const uint8_t *p = (const uint8_t *)text;
	size_t i = 0, n;

	buf_reserve(out, len + 1);
	while (i < len) {
		uint32_t c;

		if (p[i] < 0x80) {
			uint8_t b = p[i++];
			buf_append_byte(out, b >= 'A' && b <= 'Z' ? b + 32 : b);
			continue;
		}
		n = utf8_seq(p + i, len - i);
		if (n == 0) {
			buf_append_byte(out, p[i++]);
			continue;
		}
		if (n == 2)
			c = ((uint32_t)(p[i] & 0x1f) << 6) | (p[i + 1] & 0x3f);
		else if (n == 3)
			c = ((uint32_t)(p[i] & 0x0f) << 12) | ((uint32_t)(p[i + 1] & 0x3f) << 6) |
			    (p[i + 2] & 0x3f);
		else
			c = ((uint32_t)(p[i] & 0x07) << 18) | ((uint32_t)(p[i + 1] & 0x3f) << 12) |
			    ((uint32_t)(p[i + 2] & 0x3f) << 6) | (p[i + 3] & 0x3f);
		put_cp(out, fold_cp(c));
		i += n;
	}
}

bool
message_text_contains(const char *haystack, size_t hlen, const char *needle, size_t nlen)
{
	struct buf h = BUF_INIT(0), n = BUF_INIT(0);
	bool found;

	if (nlen == 0)
		return true;
	if (hlen == 0)
		return false;
	message_text_fold(haystack, hlen, &h);
	message_text_fold(needle, nlen, &n);
	found = memmem(h.data, h.len, n.data, n.len) != NULL;
	buf_free(&h);
	buf_free(&n);
	return found;
}
