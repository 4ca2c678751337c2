/*
 * A reader's \Seen set as a value: sorted seen UID ranges and private
 * MODSEQ ranges, their lookups and normalisation, and the stored encoding
 * (a varint form under the SEEN_MAGIC tag, followed by the reader's name).
 * What the set means, where it is stored and how it changes is in
 * storage_seen.c's header.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/hash.h"
#include "roost/xalloc.h"

#include "storage_private.h"
#include "storage_seen_set.h"

void
seen_clear(struct seen_set *s)
{
	free(s->v);
	free(s->m);
	s->v = NULL;
	s->m = NULL;
	s->n = s->nm = 0;
	s->last = 0;
}

void
storage_seen_free(struct seen_set **sp)
{
	struct seen_set *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	seen_clear(s);
	free(s);
}

uint64_t
storage_seen_backend_modseq(uint64_t modseq)
{
	return modseq >> SEEN_SHIFT;
}

void
seen_key(const char *reader, char *out, size_t size)
{
	if (strlen(reader) <= SEEN_KEY_MAX)
		snprintf(out, size, SEEN_PREFIX "%s", reader);
	else
		snprintf(out, size, SEEN_PREFIX "#%016llx", (unsigned long long)hash_str64(reader));
}

void
seen_range_push(struct seen_set *s, size_t *cap, uint32_t lo, uint32_t hi)
{
	if (s->n > 0 && lo >= s->v[s->n - 1].lo && s->v[s->n - 1].hi + 1 >= lo) {
		if (hi > s->v[s->n - 1].hi)
			s->v[s->n - 1].hi = hi;
		return;
	}
	if (s->n == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		s->v = xreallocarray(s->v, *cap, sizeof(*s->v));
	}
	s->v[s->n].lo = lo;
	s->v[s->n].hi = hi;
	s->n++;
}

void
seen_mod_push(struct seen_set *s, size_t *cap, uint32_t lo, uint32_t hi, uint64_t modseq)
{
	if (s->nm == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		s->m = xreallocarray(s->m, *cap, sizeof(*s->m));
	}
	s->m[s->nm].r.lo = lo;
	s->m[s->nm].r.hi = hi;
	s->m[s->nm].modseq = modseq;
	s->nm++;
}

/* By the lower bound; it orders the private MODSEQ ranges too (their
 * range at their head). */
static int
range_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct seen_range *)a)->lo, y = ((const struct seen_range *)b)->lo;

	return x < y ? -1 : x > y;
}

/* Ascending and merged: the ranges kept above the records read and the
 * UIDs a change names there may interleave (two sessions appending). */
void
seen_normalize(struct seen_set *s)
{
	size_t k = 0;

	if (s->n >= 2) {
		qsort(s->v, s->n, sizeof(*s->v), range_cmp);
		for (size_t i = 1; i < s->n; i++) {
			if (s->v[i].lo <= s->v[k].hi || s->v[i].lo - s->v[k].hi == 1) {
				if (s->v[i].hi > s->v[k].hi)
					s->v[k].hi = s->v[i].hi;
			} else {
				s->v[++k] = s->v[i];
			}
		}
		s->n = k + 1;
	}
	/* private MODSEQs: overlapping ranges take the larger (a message may
	 * be reported changed when it was not, never the other way), touching
	 * ones of one MODSEQ merge */
	k = 0;
	if (s->nm >= 2) {
		qsort(s->m, s->nm, sizeof(*s->m), range_cmp);
		for (size_t i = 1; i < s->nm; i++) {
			struct seen_mod *a = &s->m[k], *b = &s->m[i];

			if (b->r.lo <= a->r.hi ||
			    (b->r.lo - a->r.hi == 1 && b->modseq == a->modseq)) {
				if (b->r.hi > a->r.hi)
					a->r.hi = b->r.hi;
				if (b->modseq > a->modseq)
					a->modseq = b->modseq;
			} else {
				s->m[++k] = *b;
			}
		}
		s->nm = k + 1;
	}
	/* bounded: past SEEN_MODS_MAX, neighbours merge in equal groups (in
	 * one pass: a STORE of every other UID of a large mailbox makes one
	 * range per message) with the largest MODSEQ of each */
	if (s->nm > SEEN_MODS_MAX) {
		size_t per = (s->nm + SEEN_MODS_MAX - 1) / SEEN_MODS_MAX;

		k = 0;
		for (size_t i = 0; i < s->nm; i += per) {
			struct seen_mod g = s->m[i];

			for (size_t j = i + 1; j < i + per && j < s->nm; j++) {
				g.r.hi = s->m[j].r.hi;
				if (s->m[j].modseq > g.modseq)
					g.modseq = s->m[j].modseq;
			}
			s->m[k++] = g;
		}
		s->nm = k;
	}
}

/* The index of the range holding uid among v[0..n), ascending and
 * disjoint, each stride bytes after the last and a struct seen_range at
 * its head (the seen ranges and the private MODSEQ ranges alike); n when
 * none holds it. */
static size_t
range_find(const void *v, size_t n, size_t stride, uint32_t uid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct seen_range *r = (const void *)((const char *)v + mid * stride);

		if (uid < r->lo)
			hi = mid;
		else if (uid > r->hi)
			lo = mid + 1;
		else
			return mid;
	}
	return n;
}

bool
seen_has(const struct seen_set *s, uint32_t uid)
{
	return s != NULL && range_find(s->v, s->n, sizeof(*s->v), uid) < s->n;
}

/* The private MODSEQ of uid, 0 when none. */
uint64_t
seen_mod_of(const struct seen_set *s, uint32_t uid)
{
	size_t i = s != NULL ? range_find(s->m, s->nm, sizeof(*s->m), uid) : 0;

	return s != NULL && i < s->nm ? s->m[i].modseq : 0;
}

/* A message's MODSEQ as the reader sees it. */
uint64_t
seen_view_modseq(const struct seen_set *s, uint32_t uid, uint64_t backend)
{
	uint64_t own = seen_mod_of(s, uid), shifted = backend << SEEN_SHIFT;

	return own > shifted ? own : shifted;
}

/* HIGHESTMODSEQ as the reader sees it. */
uint64_t
seen_view_highest(const struct seen_set *s, uint64_t backend)
{
	uint64_t shifted = backend << SEEN_SHIFT;

	return s->last > shifted ? s->last : shifted;
}

bool
seen_equal(const struct seen_set *a, const struct seen_set *b)
{
	return a->n == b->n && a->uidvalidity == b->uidvalidity &&
	       (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

static void
varint_put(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_append_byte(b, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	buf_append_byte(b, (uint8_t)v);
}

static bool
varint64_get(const uint8_t *p, size_t len, size_t *off, uint64_t *v_r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t c;

		if (*off >= len)
			return false;
		c = p[(*off)++];
		if (shift == 63 && (c & 0x7e) != 0)
			return false;
		v |= (uint64_t)(c & 0x7f) << shift;
		if ((c & 0x80) == 0) {
			*v_r = v;
			return true;
		}
	}
	return false;
}

static bool
varint_get(const uint8_t *p, size_t len, size_t *off, uint32_t *v_r)
{
	uint64_t v;

	if (!varint64_get(p, len, off, &v) || v > UINT32_MAX)
		return false;
	*v_r = (uint32_t)v;
	return true;
}

void
seen_encode(const struct seen_set *s, const char *reader, struct buf *out)
{
	uint8_t uv[4] = {(uint8_t)(s->uidvalidity >> 24), (uint8_t)(s->uidvalidity >> 16),
	                 (uint8_t)(s->uidvalidity >> 8), (uint8_t)s->uidvalidity};
	uint32_t prev = 0;

	buf_append_str(out, SEEN_MAGIC);
	buf_append(out, uv, 4);
	varint_put(out, s->n);
	for (size_t i = 0; i < s->n; i++) {
		varint_put(out, s->v[i].lo - prev);
		varint_put(out, s->v[i].hi - s->v[i].lo);
		prev = s->v[i].hi;
	}
	varint_put(out, s->last);
	varint_put(out, s->nm);
	prev = 0;
	for (size_t i = 0; i < s->nm; i++) {
		varint_put(out, s->m[i].r.lo - prev);
		varint_put(out, s->m[i].r.hi - s->m[i].r.lo);
		varint_put(out, s->last - s->m[i].modseq);
		prev = s->m[i].r.hi;
	}
	buf_append_str(out, reader);
}

/* Decode data[0..len) into s (cleared first) when its UIDVALIDITY is
 * uidvalidity; *name_off_r gets where the reader's name starts. False when
 * it does not decode (s then empty). */
bool
seen_parse(const uint8_t *data, size_t len, uint32_t uidvalidity, struct seen_set *s,
           size_t *name_off_r)
{
	size_t off = 6, cap = 0, mcap = 0;
	uint32_t count, prev = 0, uv;
	bool v2;

	seen_clear(s);
	s->uidvalidity = uidvalidity;
	if (data == NULL || len < 6)
		return false;
	v2 = memcmp(data, SEEN_MAGIC, 2) == 0;
	if (!v2 && memcmp(data, SEEN_MAGIC_V1, 2) != 0)
		return false;
	uv = (uint32_t)data[2] << 24 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 8 | data[5];
	if (uv != uidvalidity || !varint_get(data, len, &off, &count) || count > len)
		goto bad;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t gap, span;

		if (!varint_get(data, len, &off, &gap) || !varint_get(data, len, &off, &span) ||
		    gap > UINT32_MAX - prev || (i > 0 && gap == 0) ||
		    span > UINT32_MAX - (prev + gap))
			goto bad;
		seen_range_push(s, &cap, prev + gap, prev + gap + span);
		prev += gap + span;
	}
	if (s->n > 0 && s->v[0].lo == 0)
		goto bad;
	if (v2) {
		uint64_t last;

		prev = 0;
		if (!varint64_get(data, len, &off, &last) || !varint_get(data, len, &off, &count) ||
		    count > len)
			goto bad;
		for (uint32_t i = 0; i < count; i++) {
			uint32_t gap, span;
			uint64_t below;

			if (!varint_get(data, len, &off, &gap) ||
			    !varint_get(data, len, &off, &span) ||
			    !varint64_get(data, len, &off, &below) || gap > UINT32_MAX - prev ||
			    gap == 0 || span > UINT32_MAX - (prev + gap) || below >= last)
				goto bad;
			seen_mod_push(s, &mcap, prev + gap, prev + gap + span, last - below);
			prev += gap + span;
		}
		s->last = last;
	}
	*name_off_r = off;
	return true;
bad:
	seen_clear(s);
	return false;
}

/* The set in data[0..len) when it is reader's and of uidvalidity; else
 * (absent, another UIDVALIDITY, another reader's under a hashed key, not
 * decodable) the empty set. */
void
seen_decode(const uint8_t *data, size_t len, const char *reader, uint32_t uidvalidity,
            struct seen_set *s)
{
	size_t off;

	if (!seen_parse(data, len, uidvalidity, s, &off))
		return;
	if (len - off != strlen(reader) || memcmp(data + off, reader, len - off) != 0)
		seen_clear(s);
}
