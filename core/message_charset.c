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
#include "roost/utf8.h"
#include "roost/xalloc.h"

#include "message_impl.h"

static const char REPLACEMENT[] = "\xef\xbf\xbd";

static int
append_utf8_fixed(const uint8_t *p, size_t len, struct buf *out)
{
	size_t i = 0, run = 0, n;
	uint32_t cp;
	int ret;

	while (i + run < len) {
		if (p[i + run] < 0x80) {
			run++;
			continue;
		}
		if ((n = utf8_decode(p + i + run, len - i - run, &cp)) != 0) {
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
	uint8_t t[UTF8_SEQ_MAX];

	buf_append(b, t, utf8_encode(c, t));
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
		n = utf8_decode(p + i, len - i, &c);
		if (n == 0) {
			buf_append_byte(out, p[i++]);
			continue;
		}
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
