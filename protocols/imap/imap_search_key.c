/*
 * The SEARCH key parser: the client's keys (RFC 3501 and the extensions'
 * MODSEQ, WITHIN, "$") made into a tree in the command's arena, at most
 * SEARCH_MAX_KEYS nodes, the search texts folded once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/date.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"
#include "imap_sort.h"
#include "imap_search.h"

struct sparse {
	struct imap_cmd *cmd;
	const struct imap_arg *a;
	size_t n, i;
	unsigned depth;
	size_t *n_keys; /* nodes made so far, shared by nested lists */
	bool modseq;    /* a MODSEQ key was used (RFC 7162 3.1.5) */
};

static const char *
next_string(struct sparse *sp)
{
	if (sp->i >= sp->n || !imap_arg_is_string(&sp->a[sp->i]))
		return NULL;
	return sp->a[sp->i++].str;
}

static struct skey *parse_key(struct sparse *sp);

static struct skey *
new_key(struct sparse *sp, enum skind k)
{
	struct skey *key = arena_alloc(&sp->cmd->arena, sizeof(*key));

	key->kind = k;
	(*sp->n_keys)++;
	return key;
}

/* Fold the search text v once, for every message it is matched against. */
static void
set_text(struct sparse *sp, struct skey *k, const char *v)
{
	struct buf b = BUF_INIT(0);

	message_text_fold(v, strlen(v), &b);
	k->val = arena_strndup(&sp->cmd->arena, buf_cstr(&b), b.len);
	k->val_len = b.len;
	buf_free(&b);
}

static struct skey *
parse_and(struct sparse *sp, const struct imap_arg *a, size_t n)
{
	struct sparse sub = {sp->cmd, a, n, 0, sp->depth + 1, sp->n_keys, false};
	struct skey *and = new_key(sp, K_AND);

	if (sub.depth > IMAP_MAX_DEPTH * 4 || n == 0)
		return NULL;
	and->sub = arena_alloc(&sp->cmd->arena, n * sizeof(struct skey *));
	while (sub.i < sub.n) {
		struct skey *k = parse_key(&sub);
		if (k == NULL)
			return NULL;
		and->sub[ and->n++] = k;
	}
	sp->modseq |= sub.modseq;
	return and;
}

static struct skey *
parse_key(struct sparse *sp)
{
	static const struct {
		const char *name;
		enum skind kind;
		uint32_t flag;
	} simple[] = {
	    {"ALL", K_ALL, 0},
	    {"ANSWERED", K_FLAG, MSG_ANSWERED},
	    {"DELETED", K_FLAG, MSG_DELETED},
	    {"DRAFT", K_FLAG, MSG_DRAFT},
	    {"FLAGGED", K_FLAG, MSG_FLAGGED},
	    {"SEEN", K_FLAG, MSG_SEEN},
	    {"UNANSWERED", K_UNFLAG, MSG_ANSWERED},
	    {"UNDELETED", K_UNFLAG, MSG_DELETED},
	    {"UNDRAFT", K_UNFLAG, MSG_DRAFT},
	    {"UNFLAGGED", K_UNFLAG, MSG_FLAGGED},
	    {"UNSEEN", K_UNFLAG, MSG_SEEN},
	    {"NEW", K_NEW, 0},
	    {"OLD", K_OLD, 0},
	    {"RECENT", K_RECENT, 0},
	    {"SAVEDATESUPPORTED", K_SAVEDATESUPPORTED, 0},
	};
	static const struct {
		const char *name;
		enum skind kind;
	} dates[] = {
	    {"BEFORE", K_BEFORE},           {"ON", K_ON},           {"SINCE", K_SINCE},
	    {"SENTBEFORE", K_SENTBEFORE},   {"SENTON", K_SENTON},   {"SENTSINCE", K_SENTSINCE},
	    {"SAVEDBEFORE", K_SAVEDBEFORE}, {"SAVEDON", K_SAVEDON}, {"SAVEDSINCE", K_SAVEDSINCE},
	};
	static const char *const hdrs[] = {"FROM", "TO", "CC", "BCC", "SUBJECT"};

	if (sp->i >= sp->n || *sp->n_keys >= SEARCH_MAX_KEYS)
		return NULL;
	const struct imap_arg *a = &sp->a[sp->i++];
	if (a->type == ARG_LIST)
		return parse_and(sp, a->list, a->n);
	if (a->type != ARG_ATOM)
		return NULL;
	const char *w = a->str;
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (strcasecmp(w, simple[i].name) == 0) {
			struct skey *k = new_key(sp, simple[i].kind);
			k->flag = simple[i].flag;
			return k;
		}
	}
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		if (strcasecmp(w, dates[i].name) == 0) {
			const char *d = next_string(sp);
			int y, m, dd;
			if (d == NULL || imap_parse_date(d, &y, &m, &dd) < 0)
				return NULL;
			struct skey *k = new_key(sp, dates[i].kind);
			k->day = date_days_from_civil(y, (unsigned)m, (unsigned)dd);
			return k;
		}
	}
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		if (strcasecmp(w, hdrs[i]) == 0) {
			const char *v = next_string(sp);
			if (v == NULL)
				return NULL;
			bool subject = strcmp(hdrs[i], "SUBJECT") == 0;
			struct skey *k = new_key(sp, subject ? K_HEADER : K_ADDRESS);
			k->str = hdrs[i];
			set_text(sp, k, v);
			return k;
		}
	}
	if (strcasecmp(w, "HEADER") == 0) {
		const char *f = next_string(sp), *v = next_string(sp);
		if (f == NULL || v == NULL || *f == '\0')
			return NULL;
		struct skey *k = new_key(sp, K_HEADER);
		k->str = f;
		set_text(sp, k, v);
		return k;
	}
	if (strcasecmp(w, "BODY") == 0 || strcasecmp(w, "TEXT") == 0) {
		const char *v = next_string(sp);
		if (v == NULL)
			return NULL;
		struct skey *k = new_key(sp, strcasecmp(w, "BODY") == 0 ? K_BODY : K_TEXT);
		set_text(sp, k, v);
		return k;
	}
	if (strcasecmp(w, "KEYWORD") == 0 || strcasecmp(w, "UNKEYWORD") == 0) {
		const char *v = next_string(sp);
		if (v == NULL)
			return NULL;
		struct skey *k =
		    new_key(sp, strcasecmp(w, "KEYWORD") == 0 ? K_KEYWORD : K_UNKEYWORD);
		k->str = v;
		return k;
	}
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		const char *v = next_string(sp);
		char *end;
		if (v == NULL || *v < '0' || *v > '9')
			return NULL;
		unsigned long long n = strtoull(v, &end, 10);
		if (*end != '\0')
			return NULL;
		struct skey *k = new_key(sp, strcasecmp(w, "LARGER") == 0 ? K_LARGER : K_SMALLER);
		k->size = n;
		return k;
	}
	if (strcasecmp(w, "OLDER") == 0 || strcasecmp(w, "YOUNGER") == 0) {
		const char *v = next_string(sp);
		char *end;
		if (v == NULL || *v < '1' || *v > '9' || strlen(v) > 10)
			return NULL;
		unsigned long long n = strtoull(v, &end, 10);
		if (*end != '\0' || n > UINT32_MAX)
			return NULL;
		struct skey *k = new_key(sp, strcasecmp(w, "OLDER") == 0 ? K_OLDER : K_YOUNGER);
		k->time = (int64_t)time(NULL) - (int64_t)n;
		return k;
	}
	if (strcasecmp(w, "EMAILID") == 0 || strcasecmp(w, "THREADID") == 0) {
		bool email = strcasecmp(w, "EMAILID") == 0;
		const char *v = next_string(sp);
		uint64_t id;

		if (v == NULL || imap_objectid_parse(v, email ? 'M' : 'T', &id) < 0)
			return NULL;
		struct skey *k = new_key(sp, email ? K_EMAILID : K_THREADID);
		k->size = id;
		return k;
	}
	if (strcasecmp(w, "MODSEQ") == 0) {
		/* MODSEQ [entry-name entry-type-req] mod-sequence-valzer; we
		 * keep one MODSEQ per message, so the entry only narrows
		 * nothing. */
		const char *v = next_string(sp);
		if (v != NULL && *v == '/') {
			const char *type = next_string(sp);
			if (type == NULL ||
			    (strcasecmp(type, "priv") != 0 && strcasecmp(type, "shared") != 0 &&
			     strcasecmp(type, "all") != 0))
				return NULL;
			v = next_string(sp);
		}
		char *end;
		if (v == NULL || *v < '0' || *v > '9' || strlen(v) > 19)
			return NULL;
		unsigned long long n = strtoull(v, &end, 10);
		if (*end != '\0' || n > (unsigned long long)INT64_MAX)
			return NULL;
		struct skey *k = new_key(sp, K_MODSEQ);
		k->size = n;
		sp->modseq = true;
		imap_condstore_enable(sp->cmd->s); /* RFC 7162 3.1 */
		return k;
	}
	if (strcasecmp(w, "NOT") == 0) {
		/* NOT and OR nest without parentheses: bound them too, so
		 * neither parsing nor matching can recurse deeply. */
		if (++sp->depth > IMAP_MAX_DEPTH * 4)
			return NULL;
		struct skey *sub = parse_key(sp);
		sp->depth--;
		if (sub == NULL)
			return NULL;
		struct skey *k = new_key(sp, K_NOT);
		k->sub = arena_alloc(&sp->cmd->arena, sizeof(struct skey *));
		k->sub[0] = sub;
		k->n = 1;
		return k;
	}
	if (strcasecmp(w, "OR") == 0) {
		struct skey *x, *y;
		if (++sp->depth > IMAP_MAX_DEPTH * 4)
			return NULL;
		x = parse_key(sp);
		y = x != NULL ? parse_key(sp) : NULL;
		sp->depth--;
		if (y == NULL)
			return NULL;
		struct skey *k = new_key(sp, K_OR);
		k->sub = arena_alloc(&sp->cmd->arena, 2 * sizeof(struct skey *));
		k->sub[0] = x;
		k->sub[1] = y;
		k->n = 2;
		return k;
	}
	if (strcmp(w, "$") == 0 ||
	    (strcasecmp(w, "UID") == 0 && sp->i < sp->n && sp->a[sp->i].type == ARG_ATOM &&
	     strcmp(sp->a[sp->i].str, "$") == 0)) {
		sp->i += w[0] != '$';
		return new_key(sp, K_SAVED);
	}
	if (strcasecmp(w, "UID") == 0) {
		const char *v = next_string(sp);
		struct skey *k = new_key(sp, K_UID);
		if (v == NULL || seqset_parse(&sp->cmd->arena, v, &k->set) < 0)
			return NULL;
		return k;
	}
	struct skey *k = new_key(sp, K_SEQ);
	if (seqset_parse(&sp->cmd->arena, w, &k->set) < 0)
		return NULL;
	return k;
}

/* Resolve '*' in every set of the tree. */
void
search_resolve_sets(struct skey *k, const struct imap_view *v)
{
	if (k->kind == K_UID)
		seqset_resolve(&k->set, v->n > 0 ? v->msgs[v->n - 1].rec.uid : 0);
	else if (k->kind == K_SEQ)
		seqset_resolve(&k->set, (uint32_t)v->n);
	for (size_t i = 0; i < k->n; i++)
		search_resolve_sets(k->sub[i], v);
}

int
imap_search_parse(struct imap_cmd *cmd, const struct imap_arg *a, size_t n,
                  struct imap_search **sr_r)
{
	size_t n_keys = 0;
	struct sparse sp = {cmd, a, n, 0, 0, &n_keys, false};

	if (n == 0) {
		imap_bad(cmd, "Missing search keys");
		return ROOST_EINVAL;
	}
	struct skey *root = new_key(&sp, K_AND);
	n_keys = 0; /* the implicit AND of the top level is not the client's */
	root->sub = arena_alloc(&cmd->arena, n * sizeof(struct skey *));
	while (sp.i < sp.n) {
		struct skey *k = parse_key(&sp);
		if (k == NULL && n_keys >= SEARCH_MAX_KEYS) {
			imap_tagged(cmd, "NO", "[LIMIT] Too many search keys (at most %d)",
			            SEARCH_MAX_KEYS);
			return ROOST_ETOOBIG;
		}
		if (k == NULL) {
			imap_bad(cmd, "Invalid search key");
			return ROOST_EINVAL;
		}
		root->sub[root->n++] = k;
	}
	if (n_keys > SEARCH_MAX_KEYS) { /* NOT and OR are counted after their operands */
		imap_tagged(cmd, "NO", "[LIMIT] Too many search keys (at most %d)",
		            SEARCH_MAX_KEYS);
		return ROOST_ETOOBIG;
	}
	struct imap_search *sr = arena_alloc(&cmd->arena, sizeof(*sr));
	sr->root = root;
	sr->n_keys = n_keys;
	sr->modseq = sp.modseq;
	*sr_r = sr;
	return 0;
}

bool
imap_search_modseq(const struct imap_search *sr)
{
	return sr->modseq;
}
