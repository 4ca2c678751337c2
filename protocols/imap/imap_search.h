#ifndef ROOST_IMAP_SEARCH_H
#define ROOST_IMAP_SEARCH_H

/*
 * Private to imap_search.c, imap_search_key.c and imap_search_match.c: the
 * tree of search keys that the parser builds and the matcher walks.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_impl.h"

/* Keys in one command, every node of the tree counted (NOT, OR and
 * parenthesised lists too). Real clients send tens. */
#define SEARCH_MAX_KEYS 1000

enum skind {
	K_ALL,
	K_AND,
	K_OR,
	K_NOT,
	K_FLAG,
	K_UNFLAG,
	K_KEYWORD,
	K_UNKEYWORD,
	K_NEW,
	K_OLD,
	K_RECENT,
	K_BEFORE,
	K_ON,
	K_SINCE,
	K_SENTBEFORE,
	K_SENTON,
	K_SENTSINCE,
	K_LARGER,
	K_SMALLER,
	K_HEADER,
	K_ADDRESS, /* FROM, TO, CC, BCC: the field's addresses as ENVELOPE has them */
	K_BODY,
	K_TEXT,
	K_UID,
	K_SEQ,
	K_MODSEQ,
	K_SAVED,   /* "$" (RFC 5182) */
	K_OLDER,   /* WITHIN (RFC 5032): internal date at most now - n */
	K_YOUNGER, /* internal date after now - n */
	K_EMAILID, /* OBJECTID (RFC 8474): size holds the id */
	K_THREADID,
	K_SAVEDBEFORE, /* SAVEDATE (RFC 8514): the day the message was saved */
	K_SAVEDON,
	K_SAVEDSINCE,
	K_SAVEDATESUPPORTED, /* every message: each mailbox keeps save dates */
};

struct skey {
	enum skind kind;
	struct skey **sub; /* AND: n children; OR: 2; NOT: 1 */
	size_t n;
	uint32_t flag;
	const char *str; /* keyword, header name */
	const char *val; /* search text (UTF-8), case-folded */
	size_t val_len;
	int64_t day;  /* days since the epoch */
	int64_t time; /* OLDER, YOUNGER: seconds since the epoch */
	uint64_t size;
	struct seqset set;
};

/* What imap_search_parse() hands to imap_search_run(), in the command's
 * arena. */
struct imap_search {
	struct skey *root;
	size_t n_keys;
	bool modseq;
};

/* The day (since the epoch) of t, rounded down also before 1970. */
static inline int64_t
search_day_of(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

/* Resolve '*' in every set of the tree k against the view v. */
void search_resolve_sets(struct skey *k, const struct imap_view *v);

#endif
