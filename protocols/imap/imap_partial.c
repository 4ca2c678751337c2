/*
 * PARTIAL (RFC 9394): a window on a result, for SEARCH, SORT and UID
 * SEARCH RETURN (PARTIAL range) and the UID FETCH modifier (PARTIAL
 * range). "a:b" counts from the first message of the result (1 is the
 * first), "-a:-b" from the last (-1 is the last); either way round means
 * the same window, and positions past the end select nothing.
 */
#include <stdio.h>
#include <string.h>

#include "roost/buf.h"

#include "imap_impl.h"

/* One nz-number (1..2^32-1, no leading zero) at *p, of a sign minus; moves
 * *p past it. */
static bool
partial_number(const char **p, bool minus, uint32_t *v_r)
{
	const char *s = *p;
	uint64_t v = 0;
	size_t n = 0;

	if (minus && *s++ != '-')
		return false;
	if (*s < '1' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9') {
		if (++n > 10)
			return false;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*v_r = (uint32_t)v;
	*p = s;
	return true;
}

int
imap_partial_parse(const char *s, struct imap_partial *p_r)
{
	struct imap_partial p = {.last = s != NULL && s[0] == '-'};

	if (s == NULL || !partial_number(&s, p.last, &p.a) || *s++ != ':' ||
	    !partial_number(&s, p.last, &p.b) || *s != '\0')
		return -1;
	*p_r = p;
	return 0;
}

void
imap_partial_slice(const struct imap_partial *p, size_t n, size_t *from_r, size_t *to_r)
{
	uint64_t lo = p->a < p->b ? p->a : p->b, hi = p->a < p->b ? p->b : p->a;

	*from_r = *to_r = 0;
	if (lo > n)
		return;
	if (hi > n)
		hi = n;
	if (!p->last) {
		*from_r = (size_t)lo - 1;
		*to_r = (size_t)hi;
	} else {
		/* -lo is position n - lo + 1, -hi is n - hi + 1 */
		*from_r = n - (size_t)hi;
		*to_r = n - (size_t)lo + 1;
	}
}

void
imap_partial_format(struct buf *b, const struct imap_partial *p, const uint32_t *nums, size_t n)
{
	size_t from, to;

	if (p->last)
		buf_printf(b, " PARTIAL (-%u:-%u ", p->a, p->b);
	else
		buf_printf(b, " PARTIAL (%u:%u ", p->a, p->b);
	imap_partial_slice(p, n, &from, &to);
	if (from == to) {
		buf_append_str(b, "NIL)");
		return;
	}
	seqset_format(nums + from, to - from, b);
	buf_append_byte(b, ')');
}
