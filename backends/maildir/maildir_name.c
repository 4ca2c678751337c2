/*
 * Mailbox names to Maildir++ folder directory names and back (the scheme is
 * described in maildir.h): UTF-8 -> modified UTF-7 per component, then '%'
 * and '.' hex-escaped, components joined with '.', a leading '.'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/hex.h"
#include "roost/mutf7.h"
#include "roost/xalloc.h"

#include "maildir.h"

/* Append one modified-UTF-7 component with '.' and '%' hex-escaped: '.' is
 * Maildir++'s separator, '%' the escape itself. Lower-case hex, as Dovecot
 * writes it ("Mr. Smith" is ".Mr%2e Smith"). */
static void
put_escaped(struct buf *out, const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.')
			buf_append_str(out, "%2e");
		else if (s[i] == '%')
			buf_append_str(out, "%25");
		else
			buf_append_byte(out, s[i]);
	}
}

/* Encode one component [s, end) into out. The wrapper has refused invalid
 * UTF-8 already; should any reach here, its bytes are kept as they are so
 * the function stays total (md_name_decode then refuses the result). */
static void
encode_component(struct buf *out, const unsigned char *s, const unsigned char *end)
{
	struct buf enc = BUF_INIT(0);

	if (mutf7_encode((const char *)s, (size_t)(end - s), &enc) == 0)
		put_escaped(out, enc.data, enc.len);
	else
		buf_append(out, s, (size_t)(end - s));
	buf_free(&enc);
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

/* Decode one component [s, end); false when it is not our encoding. On
 * disk a name is 7-bit only: raw 8-bit bytes, which mutf7_decode would
 * pass through, are refused here. */
static bool
decode_component(struct buf *out, const char *s, const char *end)
{
	struct buf unescaped = BUF_INIT(0);
	bool ok = s < end;

	for (; ok && s < end; s++) {
		if (*s == '%') {
			int b;

			if (end - s < 3 || ((b = hex_byte(s + 1)) != '.' && b != '%')) {
				ok = false;
				break;
			}
			buf_append_byte(&unescaped, (uint8_t)b);
			s += 2;
		} else if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) {
			ok = false;
		} else {
			buf_append_byte(&unescaped, (uint8_t)*s);
		}
	}
	if (ok)
		ok = mutf7_decode((const char *)unescaped.data, unescaped.len, out) == 0;
	buf_free(&unescaped);
	return ok;
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
