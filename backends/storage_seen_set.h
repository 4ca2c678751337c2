/* storage_seen_set.h: a reader's \Seen set (seen UID ranges and private
 * MODSEQ ranges), its arithmetic and its stored form, shared by
 * storage_seen.c (reading, changing and carrying sets) and
 * storage_seen_set.c (the set itself). Private to backends/. */
#ifndef ROOST_STORAGE_SEEN_SET_H
#define ROOST_STORAGE_SEEN_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

#define SEEN_PREFIX "/seen/"
#define SEEN_KEY_MAX 240 /* reader names up to this many bytes are the key itself */
#define SEEN_MAGIC "S2"
#define SEEN_MAGIC_V1 "S1" /* without private MODSEQs */
#define SEEN_SHIFT 20
#define SEEN_LOW ((UINT64_C(1) << SEEN_SHIFT) - 1)
#define SEEN_MODS_MAX 64 /* private MODSEQ ranges kept */
#define SEEN_RETRIES 4

struct seen_range {
	uint32_t lo, hi; /* inclusive */
};

/* The range first, so that one search and one order serve both arrays. */
struct seen_mod {
	struct seen_range r;
	uint64_t modseq; /* private, the reader's */
};

struct seen_set {
	struct seen_range *v;
	size_t n;
	uint32_t uidvalidity;
	struct seen_mod *m; /* ascending, disjoint */
	size_t nm;
	uint64_t last; /* the last private MODSEQ given, 0 when none */
};

void seen_clear(struct seen_set *s);

void seen_key(const char *reader, char *out, size_t size);

void seen_range_push(struct seen_set *s, size_t *cap, uint32_t lo, uint32_t hi);

void seen_mod_push(struct seen_set *s, size_t *cap, uint32_t lo, uint32_t hi, uint64_t modseq);

/* Ascending and merged: the ranges kept above the records read and the
 * UIDs a change names there may interleave (two sessions appending). */
void seen_normalize(struct seen_set *s);

bool seen_has(const struct seen_set *s, uint32_t uid);

/* The private MODSEQ of uid, 0 when none. */
uint64_t seen_mod_of(const struct seen_set *s, uint32_t uid);

/* A message's MODSEQ as the reader sees it. */
uint64_t seen_view_modseq(const struct seen_set *s, uint32_t uid, uint64_t backend);

/* HIGHESTMODSEQ as the reader sees it. */
uint64_t seen_view_highest(const struct seen_set *s, uint64_t backend);

bool seen_equal(const struct seen_set *a, const struct seen_set *b);

void seen_encode(const struct seen_set *s, const char *reader, struct buf *out);

/* Decode data[0..len) into s (cleared first) when its UIDVALIDITY is
 * uidvalidity; *name_off_r gets where the reader's name starts. False when
 * it does not decode (s then empty). */
bool seen_parse(const uint8_t *data, size_t len, uint32_t uidvalidity, struct seen_set *s,
                size_t *name_off_r);

/* The set in data[0..len) when it is reader's and of uidvalidity; else
 * (absent, another UIDVALIDITY, another reader's under a hashed key, not
 * decodable) the empty set. */
void seen_decode(const uint8_t *data, size_t len, const char *reader, uint32_t uidvalidity,
                 struct seen_set *s);

#endif
