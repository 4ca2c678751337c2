/*
 * IMAP sequence sets: "1:3,5,*:7" parsed, resolved against '*', tested
 * and formatted.
 */
#include <stdlib.h>

#include "roost/error.h"

#include "imap_impl.h"

static int
seq_number(const char **pp, uint32_t *v_r)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (*p == '*') {
		*v_r = SEQ_STAR;
		*pp = p + 1;
		return 0;
	}
	if (*p < '1' || *p > '9')
		return ROOST_EINVAL;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX) /* nz-number is 32-bit: 4294967295 is one */
			return ROOST_EINVAL;
		p++;
	}
	*v_r = (uint32_t)v;
	*pp = p;
	return 0;
}

int
seqset_parse(struct arena *a, const char *text, struct seqset *set_r)
{
	size_t n = 1;

	for (const char *p = text; *p; p++)
		if (*p == ',')
			n++;
	set_r->r = arena_alloc(a, n * sizeof(*set_r->r));
	set_r->n = 0;
	const char *p = text;
	for (;;) {
		uint32_t lo, hi;

		if (seq_number(&p, &lo) < 0)
			return ROOST_EINVAL;
		hi = lo;
		if (*p == ':') {
			p++;
			if (seq_number(&p, &hi) < 0)
				return ROOST_EINVAL;
		}
		set_r->r[set_r->n].lo = lo;
		set_r->r[set_r->n].hi = hi;
		set_r->n++;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			return ROOST_EINVAL;
		p++;
	}
}

static int
range_cmp(const void *a, const void *b)
{
	const struct seq_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void
seqset_resolve(struct seqset *set, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		struct seq_range *r = &set->r[i];
		if (r->lo == SEQ_STAR)
			r->lo = star;
		if (r->hi == SEQ_STAR)
			r->hi = star;
		if (r->lo > r->hi) {
			uint32_t t = r->lo;
			r->lo = r->hi;
			r->hi = t;
		}
	}
	if (set->n > 1)
		qsort(set->r, set->n, sizeof(*set->r), range_cmp);
	size_t o = 0;
	for (size_t i = 0; i < set->n; i++) {
		if (o > 0 && (uint64_t)set->r[i].lo <= (uint64_t)set->r[o - 1].hi + 1) {
			if (set->r[i].hi > set->r[o - 1].hi)
				set->r[o - 1].hi = set->r[i].hi;
		} else {
			set->r[o++] = set->r[i];
		}
	}
	set->n = o;
}

bool
seqset_contains(const struct seqset *set, uint32_t v)
{
	size_t lo = 0, hi = set->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v < set->r[mid].lo)
			hi = mid;
		else if (v > set->r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

void
seqset_format(const uint32_t *vals, size_t n, struct buf *out)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		while (j + 1 < n && vals[j + 1] == vals[j] + 1)
			j++;
		if (i > 0)
			buf_append_byte(out, ',');
		if (j == i)
			buf_printf(out, "%u", vals[i]);
		else
			buf_printf(out, "%u:%u", vals[i], vals[j]);
		i = j + 1;
	}
}
