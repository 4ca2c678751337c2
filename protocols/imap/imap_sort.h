#ifndef ROOST_IMAP_SORT_H
#define ROOST_IMAP_SORT_H

/*
 * Private to imap_sort.c, imap_sort_cache.c and imap_thread.c: the sort
 * key cache of a session's view.
 *
 * Where the keys live and what invalidates them: the cache hangs off the
 * view (struct imap_view.sort_cache), one entry per message in view order,
 * each holding what SORT and THREAD need from the header (collation keys,
 * sent date, message ids). A message's header never changes under one
 * UIDVALIDITY, so an entry stays valid for as long as its UID is in the
 * view; each SORT or THREAD first lines the cache up with the view by UID
 * (expunged messages' entries are dropped, new messages get empty ones,
 * filled when a command first needs them). Closing or re-selecting the
 * mailbox frees the cache. It costs its memory per session, which is the
 * price of not keeping derived data in storage.
 */

#include <stdbool.h>
#include <stdint.h>

#include "imap_impl.h"

enum sort_field {
	SF_SUBJECT, /* collate_key(base subject) */
	SF_FROM,    /* collate_key(addr-mailbox of the first From) */
	SF_TO,
	SF_CC,
	SF_DFROM, /* collate_key(display name, else mailbox@host), RFC 5957 */
	SF_DTO,
	SF_MSGID, /* Message-ID without its brackets ("" = none) */
	SF_REFS,  /* parent ids, each NUL-terminated, oldest first */
	SF_N,
};

/* At most this many ancestors are kept from one References field: the
 * closest ones, which are those threading needs. */
#define SORT_MAX_REFS 64
/* Bytes of one message id kept. */
#define SORT_MAX_ID 998

struct sort_msg {
	uint32_t uid;
	bool loaded;
	bool reply; /* the base subject lost a Re:/Fwd: marker */
	uint16_t n_refs;
	uint32_t mid;   /* interned Message-ID (sort_cache), 0 = none */
	uint32_t *refs; /* interned SF_REFS, n_refs of them (heap) */
	int64_t date;   /* sent date: Date:, else the internal date */
	uint32_t off[SF_N], len[SF_N];
	char *blob; /* the strings, one allocation */
};

struct sort_cache {
	struct sort_msg *m; /* parallel to the view's msgs after sort_cache_sync() */
	size_t n;
	/* Per string field, each loaded entry's rank in collation order (equal
	 * keys share one), made when a SORT first needs it and dropped when
	 * an entry is added, loaded or dropped: a cached SORT then compares
	 * integers, not strings. NULL = not made. */
	uint32_t *rank[SF_N];
	/* Every message id of the loaded headers interned as 1..n_ids, so
	 * THREAD links integers instead of hashing strings on each run. Ids
	 * stay until the view closes (their bytes in id_arena). */
	struct arena id_arena;
	const char **id_str;
	uint32_t *id_len;
	uint32_t *id_tab; /* open addressing: id or 0 */
	size_t id_cap, n_ids;
	uint64_t id_seed;
};

/* Line the view's cache up with its messages (creating the cache). */
struct sort_cache *sort_cache_sync(struct imap_view *v);
/*
 * Make sure entries idx[0..n) are loaded, reading each header at most once
 * and charging its bytes to *budget. ROOST_ETOOBIG when the budget runs
 * out (the caller answers NO [LIMIT]); a message that cannot be read gets
 * empty keys and its internal date.
 */
int sort_cache_load(struct imap_cmd *cmd, struct sort_cache *sc, const uint32_t *idx, size_t n,
                    uint64_t *budget);
static inline const char *
sort_str(const struct sort_msg *m, enum sort_field f, size_t *len_r)
{
	*len_r = m->len[f];
	return m->blob + m->off[f];
}

/* The cache of the view, freed with it (view_close()). */
void sort_cache_free(struct sort_cache **sc);

enum sort_key { SK_ARRIVAL, SK_CC, SK_DATE, SK_FROM, SK_SIZE, SK_SUBJECT, SK_TO, SK_DFROM, SK_DTO };

#define SORT_MAX_CRITERIA 16

struct sort_crit {
	enum sort_key key;
	bool reverse;
};

/* The rank array of field f (made now if needed). */
const uint32_t *sort_cache_rank(struct sort_cache *sc, enum sort_field f);

/* Order the view indexes idx[0..n) (keys loaded) by crit, ties by
 * sequence number. */
void sort_indexes(struct imap_view *v, struct sort_cache *sc, uint32_t *idx, size_t n,
                  const struct sort_crit *crit, size_t n_crit);
/* SORT/THREAD's charset argument: 0, or < 0 with the reply sent. */
int imap_sort_charset(struct imap_cmd *cmd, const struct imap_arg *a);
/*
 * Run the search keys a[0..n) and load the sort keys of the hits: their
 * view indexes, ascending, in *idx_r (heap, the caller frees) and the
 * view's cache in *sc_r. < 0 with the reply sent (BAD, NO [LIMIT]).
 */
int imap_sort_select(struct imap_cmd *cmd, const struct imap_arg *a, size_t n, uint32_t **idx_r,
                     size_t *n_r, struct sort_cache **sc_r);
/* Send text (taken) as the command's untagged reply in steps as the
 * client reads, then "OK <name> completed". */
void imap_sort_reply(struct imap_cmd *cmd, struct buf *text);

/* Search contexts (RFC 5267, imap_context.c). */
#define IMAP_MAX_CONTEXTS 8
/*
 * Keep the search keys[0..n) of a UID SEARCH/SORT with RETURN (UPDATE)
 * (crit NULL for SEARCH) and its result, view indexes idx[0..nh) in
 * result order, under the command's tag. ROOST_ETOOBIG past
 * IMAP_MAX_CONTEXTS, ROOST_EEXISTS for a tag in use.
 */
int context_add(struct imap_cmd *cmd, const struct imap_arg *keys, size_t n,
                const struct sort_crit *crit, size_t n_crit, const uint32_t *idx, size_t nh);
/* CANCELUPDATE: 0, or ROOST_ENOTFOUND. */
int context_cancel(struct imap_view *v, const char *tag);
/* After the view caught up with changes: tell each context's changes. */
void context_update(struct imap_session *s);
void context_free_all(struct imap_view *v);

#endif
