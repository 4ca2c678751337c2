/* storage_seen_set.h: a reader's \Seen set (seen UID ranges and private
 * MODSEQ ranges), its arithmetic and its stored form, shared by
 * storage_seen.c (reading and changing sets), storage_seen_carry.c
 * (carrying them on COPY/MOVE) and storage_seen_set.c (the set itself).
 * Private to backends/. */
#ifndef ROOST_STORAGE_SEEN_SET_H
#define ROOST_STORAGE_SEEN_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/storage.h"

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

/* One reader's change of its set (storage_seen.c). */
struct seen_change_arg {
	const char *reader;
	uint32_t uidvalidity;
	uint64_t backend; /* the backend's HIGHESTMODSEQ as read before */
	/* the messages as they exist, ascending, and the new \Seen of some */
	const struct msg_record *recs;
	size_t n_recs;
	const uint32_t *uids; /* ascending */
	size_t n;
	bool seen;  /* what uids get */
	bool force; /* give uids a new private MODSEQ even when \Seen is as asked */
	/* out: the set as stored, the UIDs whose \Seen changed (or all with
	 * force), the private MODSEQ they got (0: none changed) */
	struct seen_set result;
	uint32_t *changed;
	size_t n_changed;
	uint64_t modseq;
	bool failed; /* lenient: this reader's set could not take it */
};

/* Apply the changes a[0..n) (each its reader's, keyed by keys[i]) to the
 * record of owner's canon in one update. Then read the backend's
 * HIGHESTMODSEQ again and give the changes new private MODSEQs while the
 * owner changed the mailbox in between (see Ordering at the head of
 * storage_seen.c). With lenient, a reader whose set cannot take its change
 * keeps its set as it was (failed) and the others go on. */
int seen_change_many(struct storage *st, const char *owner, const char *canon,
                     const char *const *keys, struct seen_change_arg *a, size_t n, bool lenient);

#endif
