/*
 * i;unicode-casemap (RFC 5051) and the base subject (RFC 5256 2.1).
 *
 * The Unicode tables come from utf8proc rather than tables of our own:
 * titlecase and compatibility decomposition change with each Unicode
 * version, and a maintained library follows them.
 *
 * The base subject is found by moving two indexes over one normalised
 * copy of the subject, never by copying it again, and each step either
 * consumes bytes or ends its loop, so a hostile subject (thousands of
 * "[x]" blobs or "[Fwd:" wrappers) costs time linear in its length.
 */
#include <string.h>
#include <strings.h>

#include <utf8proc.h>

#include "roost/collate.h"

/* The longest full decomposition in Unicode is 18 code points. */
#define DECOMP_MAX 32

static void
put_cp(struct buf *out, utf8proc_int32_t cp)
{
	utf8proc_uint8_t u[4];
	utf8proc_ssize_t n = utf8proc_encode_char(cp, u);

	buf_append(out, u, (size_t)n);
}

void
collate_key(const char *s, size_t len, struct buf *out)
{
	const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
	size_t i = 0;

	buf_reserve(out, len);
	while (i < len) {
		if (p[i] < 0x80) {
			uint8_t c = p[i++];
			buf_append_byte(out, c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
			continue;
		}
		utf8proc_int32_t cp, d[DECOMP_MAX];
		utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
		if (n <= 0) {
			put_cp(out, 0xFFFD);
			i++;
			continue;
		}
		i += (size_t)n;
		int bc = 0;
		utf8proc_ssize_t nd = utf8proc_decompose_char(
		    utf8proc_totitle(cp), d, DECOMP_MAX, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &bc);
		if (nd <= 0 || nd > DECOMP_MAX) {
			put_cp(out, utf8proc_totitle(cp));
			continue;
		}
		/* A decomposition may hold lower case letters (the "ff"
		 * ligature): map them too, so it collates with "FF". */
		for (utf8proc_ssize_t k = 0; k < nd; k++)
			put_cp(out, utf8proc_totitle(d[k]));
	}
}

int
collate_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int r = memcmp(a, b, alen < blen ? alen : blen);

	if (r != 0)
		return r;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at t[i], within t[0..hi). */
static bool
blob_at(const char *t, size_t i, size_t hi, size_t *end_r)
{
	if (i >= hi || t[i] != '[')
		return false;
	size_t j = i + 1;
	while (j < hi && t[j] != '[' && t[j] != ']')
		j++;
	if (j >= hi || t[j] != ']')
		return false;
	for (j++; j < hi && t[j] == ' '; j++)
		;
	*end_r = j;
	return true;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at t[i]. */
static bool
refwd_at(const char *t, size_t i, size_t hi, size_t *end_r)
{
	size_t j = i, e;

	if (hi - i >= 2 && strncasecmp(t + i, "re", 2) == 0) {
		j += 2;
	} else if (hi - i >= 2 && strncasecmp(t + i, "fw", 2) == 0) {
		j += 2;
		if (j < hi && (t[j] == 'd' || t[j] == 'D'))
			j++;
	} else {
		return false;
	}
	while (j < hi && t[j] == ' ')
		j++;
	if (blob_at(t, j, hi, &e))
		j = e;
	if (j >= hi || t[j] != ':')
		return false;
	*end_r = j + 1;
	return true;
}

void
collate_base_subject(const char *s, size_t len, struct buf *out, bool *reply_r)
{
	struct buf nb = BUF_INIT(0);
	bool reply = false;

	/* (1) white space (tabs, folding) as one space each run */
	buf_reserve(&nb, len);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == ' ' && nb.len > 0 && nb.data[nb.len - 1] == ' ')
			continue;
		buf_append_byte(&nb, (uint8_t)c);
	}
	const char *t = (const char *)nb.data;
	size_t lo = 0, hi = nb.len, e;

	for (;;) {
		/* (2) trailing "(fwd)" and white space */
		for (;;) {
			if (hi > lo && t[hi - 1] == ' ') {
				hi--;
			} else if (hi - lo >= 5 && strncasecmp(t + hi - 5, "(fwd)", 5) == 0) {
				hi -= 5;
				reply = true;
			} else {
				break;
			}
		}
		/* (3), (4), (5) */
		for (;;) {
			bool changed = false;
			for (;;) {
				if (lo < hi && t[lo] == ' ') {
					lo++;
					changed = true;
					continue;
				}
				size_t j = lo;
				while (blob_at(t, j, hi, &e))
					j = e;
				if (!refwd_at(t, j, hi, &e))
					break;
				lo = e;
				reply = true;
				changed = true;
			}
			/* Removing one blob leaves the rest of the run for
			 * step (3) to fail on the same way, so the run goes
			 * at once, but never the blob that is all that is
			 * left. */
			while (blob_at(t, lo, hi, &e) && e < hi) {
				lo = e;
				changed = true;
			}
			if (!changed)
				break;
		}
		/* (6) "[fwd:" ... "]" */
		if (hi - lo >= 6 && strncasecmp(t + lo, "[fwd:", 5) == 0 && t[hi - 1] == ']') {
			lo += 5;
			hi--;
			reply = true;
			continue;
		}
		break;
	}
	buf_append(out, t + lo, hi - lo);
	buf_free(&nb);
	if (reply_r != NULL)
		*reply_r = reply;
}
