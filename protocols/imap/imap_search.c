/*
 * SEARCH and UID SEARCH with every RFC 3501 key, CHARSET UTF-8/US-ASCII,
 * and ESEARCH (RFC 4731) result options MIN MAX COUNT ALL.
 *
 * Keys become a tree; each message is tested against it, and the message
 * is read and parsed only when a header or body key is reached (at most
 * once per message). Its text is decoded and case-folded at most once per
 * message too, when the first TEXT/BODY key needs it, and every key then
 * runs memmem() (linear in glibc) over that one copy: the needles are folded
 * once per command.
 *
 * The work is bounded per command: at most SEARCH_MAX_KEYS keys, and at
 * most [imap] search_budget bytes scanned by the matcher in all (a key over
 * a message costs the bytes it scans), past which the command answers
 * NO [LIMIT]. Decoding each message once is not charged: it costs what any
 * single-key search costs, and no more keys make it bigger.
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

struct sparse {
	struct imap_cmd *cmd;
	const struct imap_arg *a;
	size_t n, i;
	unsigned depth;
	size_t *n_keys; /* nodes made so far, shared by nested lists */
	bool modseq;    /* a MODSEQ key was used (RFC 7162 3.1.5) */
};

static int64_t
day_of(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

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
	};
	static const struct {
		const char *name;
		enum skind kind;
	} dates[] = {
	    {"BEFORE", K_BEFORE},         {"ON", K_ON},         {"SINCE", K_SINCE},
	    {"SENTBEFORE", K_SENTBEFORE}, {"SENTON", K_SENTON}, {"SENTSINCE", K_SENTSINCE},
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
static void
resolve_sets(struct skey *k, const struct imap_view *v)
{
	if (k->kind == K_UID)
		seqset_resolve(&k->set, v->n > 0 ? v->msgs[v->n - 1].rec.uid : 0);
	else if (k->kind == K_SEQ)
		seqset_resolve(&k->set, (uint32_t)v->n);
	for (size_t i = 0; i < k->n; i++)
		resolve_sets(k->sub[i], v);
}

/* The matcher's allowance for one command, in bytes scanned. */
struct sbudget {
	uint64_t left;
	bool exceeded;
};

/* Per-message lazily loaded content, each part made at most once. */
struct sctx {
	struct imap_session *s;
	struct imap_view *v;
	size_t idx;
	struct sbudget *budget;
	bool loaded, failed;
	struct msg_view mv;
	struct message *msg;
	bool have_day, have_head, have_body;
	int64_t sent_day;
	struct buf head; /* top-level header, encoded words decoded, folded (TEXT) */
	struct buf body; /* every text part decoded, folded (BODY, TEXT) */
};

static bool
load(struct sctx *x)
{
	if (x->loaded)
		return !x->failed;
	x->loaded = true;
	if (mailbox_read(x->v->mb, x->v->msgs[x->idx].rec.uid, &x->mv) < 0) {
		x->failed = true;
		return false;
	}
	const struct roost_config *cfg = x->s->sv->cfg;
	struct message_limits lim = {cfg->mime_max_depth, cfg->mime_max_parts, cfg->max_header_size,
	                             cfg->max_header_fields};
	if (message_parse(x->mv.data, x->mv.len, &lim, &x->msg) < 0) {
		msg_view_release(&x->mv);
		x->failed = true;
		return false;
	}
	return true;
}

static void
unload(struct sctx *x)
{
	if (x->loaded && !x->failed) {
		message_free(&x->msg);
		msg_view_release(&x->mv);
	}
	x->loaded = x->failed = false;
	x->have_day = x->have_head = x->have_body = false;
	buf_free(&x->head);
	buf_free(&x->body);
}

/* Take n bytes of scanning from the command's allowance; false (and the
 * command answers NO [LIMIT]) when it does not have them. */
static bool
charge(struct sctx *x, uint64_t n)
{
	if (x->budget->exceeded || n > x->budget->left) {
		x->budget->exceeded = true;
		return false;
	}
	x->budget->left -= n;
	return true;
}

/* Does the folded text hold the folded needle of k? */
static bool
scan(struct sctx *x, const struct buf *text, const struct skey *k)
{
	if (k->val_len == 0)
		return true;
	if (!charge(x, text->len))
		return false;
	return text->len > 0 && memmem(text->data, text->len, k->val, k->val_len) != NULL;
}

static const struct buf *
head_text(struct sctx *x)
{
	if (!x->have_head) {
		const struct message_part *root = message_root(x->msg);
		struct buf b = BUF_INIT(0);

		message_decode_words((const char *)x->mv.data + root->header_off, root->header_len,
		                     &b);
		message_text_fold(buf_cstr(&b), b.len, &x->head);
		buf_free(&b);
		x->have_head = true;
	}
	return &x->head;
}

static const struct buf *
body_text(struct sctx *x)
{
	if (!x->have_body) {
		struct buf b = BUF_INIT(0);

		if (message_body_text(x->msg, &b) == 0)
			message_text_fold(buf_cstr(&b), b.len, &x->body);
		buf_free(&b);
		x->have_body = true;
	}
	return &x->body;
}

static int
keyword_index(const struct imap_view *v, const char *kw)
{
	for (size_t i = 0; i < v->n_keywords && i < 64; i++)
		if (strcasecmp(v->keywords[i], kw) == 0)
			return (int)i;
	return -1;
}

static bool
sent_day(struct sctx *x, int64_t *day_r)
{
	struct buf b = BUF_INIT(0);
	int64_t t;
	int zone;

	if (!load(x))
		return false;
	if (!x->have_day) {
		/* RFC 3501 6.4.4: the date of the Date: header "disregarding
		 * time and timezone", so the day as its writer wrote it, not
		 * that instant's day in UTC. */
		if (message_header_get(x->msg, NULL, "Date", false, &b) == 0 &&
		    message_parse_date_zone(buf_cstr(&b), b.len, &t, &zone) == 0)
			x->sent_day = day_of(t + (int64_t)zone * 60);
		else /* RFC 3501: no usable Date: use the internal date. */
			x->sent_day = day_of(x->v->msgs[x->idx].rec.internal_date);
		buf_free(&b);
		x->have_day = true;
	}
	*day_r = x->sent_day;
	return true;
}

static bool
match(struct sctx *x, const struct skey *k)
{
	const struct view_msg *m = &x->v->msgs[x->idx];
	int64_t d;

	switch (k->kind) {
	case K_ALL:
		return true;
	case K_AND:
		for (size_t i = 0; i < k->n; i++)
			if (!match(x, k->sub[i]))
				return false;
		return true;
	case K_OR:
		return match(x, k->sub[0]) || match(x, k->sub[1]);
	case K_NOT:
		return !match(x, k->sub[0]);
	case K_FLAG:
		return (m->rec.flags & k->flag) != 0;
	case K_UNFLAG:
		return (m->rec.flags & k->flag) == 0;
	case K_KEYWORD:
	case K_UNKEYWORD: {
		int i = keyword_index(x->v, k->str);
		bool has = i >= 0 && (m->rec.keywords & ((uint64_t)1 << i));
		return k->kind == K_KEYWORD ? has : !has;
	}
	case K_NEW:
		return m->recent && !(m->rec.flags & MSG_SEEN);
	case K_OLD:
		return !m->recent;
	case K_RECENT:
		return m->recent;
	case K_BEFORE:
		return day_of(m->rec.internal_date) < k->day;
	case K_ON:
		return day_of(m->rec.internal_date) == k->day;
	case K_SINCE:
		return day_of(m->rec.internal_date) >= k->day;
	case K_SENTBEFORE:
		return sent_day(x, &d) && d < k->day;
	case K_SENTON:
		return sent_day(x, &d) && d == k->day;
	case K_SENTSINCE:
		return sent_day(x, &d) && d >= k->day;
	case K_LARGER:
		return m->rec.size > k->size;
	case K_SMALLER:
		return m->rec.size < k->size;
	case K_MODSEQ:
		return m->rec.modseq >= k->size;
	case K_SAVED:
		return searchres_contains(x->v, m->rec.uid);
	case K_OLDER:
		return m->rec.internal_date <= k->time;
	case K_YOUNGER:
		return m->rec.internal_date > k->time;
	case K_UID:
		return seqset_contains(&k->set, m->rec.uid);
	case K_SEQ:
		return seqset_contains(&k->set, (uint32_t)x->idx + 1);
	case K_HEADER: {
		struct buf b = BUF_INIT(0), f = BUF_INIT(0);
		bool r = false;
		/* Finding the field walks the header block: that is the cost. */
		if (!load(x) || !charge(x, message_root(x->msg)->header_len))
			return false;
		if (message_header_get_all(x->msg, NULL, k->str, true, &b) == 0) {
			message_text_fold(buf_cstr(&b), b.len, &f);
			r = scan(x, &f, k);
		}
		buf_free(&f);
		buf_free(&b);
		return r;
	}
	case K_ADDRESS: {
		/* RFC 3501: the string in "the envelope structure's FROM
		 * field", so comments and quoting are not in the way of an
		 * address written "<a (x)@ (y) b.org>". */
		struct buf b = BUF_INIT(0), f = BUF_INIT(0);
		bool r = false;
		if (!load(x) || !charge(x, message_root(x->msg)->header_len))
			return false;
		if (message_header_addresses(x->msg, NULL, k->str, &b) == 0) {
			message_text_fold(buf_cstr(&b), b.len, &f);
			r = scan(x, &f, k);
		}
		buf_free(&f);
		buf_free(&b);
		return r;
	}
	case K_BODY:
		return load(x) && scan(x, body_text(x), k);
	case K_TEXT:
		if (!load(x))
			return false;
		return scan(x, head_text(x), k) || scan(x, body_text(x), k);
	}
	return false;
}

#define RET_MIN IMAP_RET_MIN
#define RET_MAX IMAP_RET_MAX
#define RET_ALL IMAP_RET_ALL
#define RET_COUNT IMAP_RET_COUNT

int
imap_search_return(struct imap_cmd *cmd, const struct imap_arg *list, unsigned *ret_r,
                   uint32_t partial_r[2])
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {{"MIN", IMAP_RET_MIN},         {"MAX", IMAP_RET_MAX},
	            {"ALL", IMAP_RET_ALL},         {"COUNT", IMAP_RET_COUNT},
	            {"SAVE", IMAP_RET_SAVE},       {"UPDATE", IMAP_RET_UPDATE},
	            {"CONTEXT", IMAP_RET_CONTEXT}, {"PARTIAL", IMAP_RET_PARTIAL}};
	unsigned ret = 0;

	if (list->type != ARG_LIST) {
		imap_bad(cmd, "Invalid RETURN options");
		return ROOST_EINVAL;
	}
	for (size_t k = 0; k < list->n; k++) {
		size_t j = 0;
		while (j < sizeof(opts) / sizeof(opts[0]) &&
		       !imap_arg_atom_eq(&list->list[k], opts[j].name))
			j++;
		if (j == sizeof(opts) / sizeof(opts[0])) {
			imap_bad(cmd, "Unknown RETURN option");
			return ROOST_EINVAL;
		}
		ret |= opts[j].bit;
		if (opts[j].bit == IMAP_RET_PARTIAL) {
			/* PARTIAL lo:hi, 1-based positions in the result */
			const struct imap_arg *r = k + 1 < list->n ? &list->list[++k] : NULL;
			unsigned long lo, hi;
			char end;
			if (r == NULL || r->type != ARG_ATOM ||
			    sscanf(r->str, "%lu:%lu%c", &lo, &hi, &end) != 2 || lo == 0 ||
			    hi == 0 || lo > UINT32_MAX || hi > UINT32_MAX || r->str[0] < '1' ||
			    r->str[0] > '9') {
				imap_bad(cmd, "Invalid PARTIAL range");
				return ROOST_EINVAL;
			}
			partial_r[0] = (uint32_t)(lo < hi ? lo : hi);
			partial_r[1] = (uint32_t)(lo < hi ? hi : lo);
		}
	}
	/* CONTEXT is a hint; alone (or with UPDATE alone) it implies nothing */
	if ((ret & ~(unsigned)IMAP_RET_CONTEXT) == 0)
		ret |= IMAP_RET_ALL;
	*ret_r = ret;
	return 0;
}

void
imap_partial_format(struct buf *b, const uint32_t partial[2], const uint32_t *nums, size_t n)
{
	buf_printf(b, " PARTIAL (%u:%u ", partial[0], partial[1]);
	if (partial[0] > n) {
		buf_append_str(b, "NIL)");
		return;
	}
	size_t lo = partial[0] - 1, hi = partial[1] < n ? partial[1] : n;
	for (size_t i = lo; i < hi;) {
		size_t j = i;
		while (j + 1 < hi && nums[j + 1] == nums[j] + 1)
			j++;
		if (i > lo)
			buf_append_byte(b, ',');
		if (j == i)
			buf_printf(b, "%u", nums[i]);
		else
			buf_printf(b, "%u:%u", nums[i], nums[j]);
		i = j + 1;
	}
	buf_append_byte(b, ')');
}

void
imap_search_save(struct imap_view *v, unsigned ret, const uint32_t *idx, size_t n)
{
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof(*uids));
	size_t k = 0;

	if ((ret & (IMAP_RET_ALL | IMAP_RET_COUNT)) == 0 && (ret & (IMAP_RET_MIN | IMAP_RET_MAX))) {
		/* RFC 5182: with MIN and/or MAX alone, only those are saved */
		if (n > 0 && (ret & IMAP_RET_MIN))
			uids[k++] = v->msgs[idx[0]].rec.uid;
		if (n > 0 && (ret & IMAP_RET_MAX) && !(k == 1 && n == 1))
			uids[k++] = v->msgs[idx[n - 1]].rec.uid;
	} else {
		for (; k < n; k++)
			uids[k] = v->msgs[idx[k]].rec.uid;
	}
	searchres_save(v, uids, k);
	free(uids);
}

/*
 * The result line of a SEARCH, written after the search in pieces: a
 * mailbox of many messages makes a line of hundreds of KiB, so the numbers
 * go out as the client reads them (imap_yield()). The line stays one line:
 * while the command is parked nothing else is written on the connection.
 */
struct search_out {
	uint32_t *hits; /* ascending sequence numbers or UIDs (heap) */
	size_t nh;
	size_t next;   /* first of hits not written yet */
	bool ranges;   /* ESEARCH ALL "1:3,5" rather than SEARCH " 1 2 3 5" */
	char tail[48]; /* written after the last number: the MODSEQ */
};

/* Bytes of numbers formatted before they are handed to the connection. */
#define SEARCH_PIECE 4096

static imap_step_fn search_out_step;

static void
search_out_free(struct imap_cmd *cmd)
{
	struct search_out *o = cmd->state;

	if (o != NULL)
		free(o->hits);
	cmd->state = NULL;
}

static void
search_out_step(struct imap_cmd *cmd)
{
	struct search_out *o = cmd->state;
	struct buf b = BUF_INIT(0);

	while (o->next < o->nh) {
		if (conn_output_full(cmd->c)) {
			imap_yield(cmd, search_out_step);
			buf_free(&b);
			return;
		}
		buf_reset(&b);
		while (o->next < o->nh && b.len < SEARCH_PIECE) {
			size_t i = o->next;
			if (!o->ranges) {
				buf_printf(&b, " %u", o->hits[i]);
				o->next++;
				continue;
			}
			size_t j = i;
			while (j + 1 < o->nh && o->hits[j + 1] == o->hits[j] + 1)
				j++;
			if (i > 0)
				buf_append_byte(&b, ',');
			if (j == i)
				buf_printf(&b, "%u", o->hits[i]);
			else
				buf_printf(&b, "%u:%u", o->hits[i], o->hits[j]);
			o->next = j + 1;
		}
		conn_write(cmd->c, b.data, b.len);
	}
	buf_free(&b);
	conn_printf(cmd->c, "%s\r\n", o->tail);
	search_out_free(cmd);
	imap_tagged(cmd, "OK", "SEARCH completed");
}

struct imap_search {
	struct skey *root;
	size_t n_keys;
	bool modseq;
};

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

void
imap_search_limit(struct imap_cmd *cmd, size_t n_keys)
{
	log_info("conn=%llu proto=imap event=search-limit keys=%zu budget=%llu",
	         (unsigned long long)conn_id(cmd->s->c), n_keys,
	         (unsigned long long)cmd->s->sv->cfg->imap_search_budget);
	imap_tagged(cmd, "NO",
	            "[LIMIT] Search needs more work than allowed "
	            "(search_budget); narrow it");
}

int
imap_search_run(struct imap_cmd *cmd, struct imap_search *sr, uint64_t *budget, uint32_t **idx_r,
                size_t *n_r, uint64_t *top_r)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;

	resolve_sets(sr->root, v);

	struct sbudget bg = {*budget, false};
	uint32_t *hits = xcalloc(v->n ? v->n : 1, sizeof(*hits));
	size_t nh = 0;
	uint64_t top = 0;
	for (size_t m = 0; m < v->n && !bg.exceeded; m++) {
		if (v->msgs[m].expunged)
			continue;
		struct sctx x = {.s = s,
		                 .v = v,
		                 .idx = m,
		                 .budget = &bg,
		                 .head = BUF_INIT(0),
		                 .body = BUF_INIT(0)};
		if (match(&x, sr->root)) {
			hits[nh++] = (uint32_t)m;
			if (v->msgs[m].rec.modseq > top)
				top = v->msgs[m].rec.modseq;
		}
		unload(&x);
	}
	if (bg.exceeded) {
		free(hits);
		imap_search_limit(cmd, sr->n_keys);
		return ROOST_ETOOBIG;
	}
	*budget = bg.left;
	*idx_r = hits;
	*n_r = nh;
	if (top_r != NULL)
		*top_r = top;
	return 0;
}

void
cmd_search(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n, i = 0;
	unsigned ret = 0;
	bool esearch = false;

	uint32_t partial[2] = {0, 0};
	if (i < n && imap_arg_atom_eq(&a[i], "RETURN")) {
		if (i + 1 >= n) {
			imap_bad(cmd, "Invalid RETURN options");
			return;
		}
		if (imap_search_return(cmd, &a[i + 1], &ret, partial) < 0)
			return;
		esearch = true;
		i += 2;
	}
	if ((ret & IMAP_RET_UPDATE) && !cmd->uid) {
		imap_bad(cmd, "UPDATE needs UID SEARCH");
		return;
	}
	if (i < n && imap_arg_atom_eq(&a[i], "CHARSET")) {
		if (i + 1 >= n || !imap_arg_is_string(&a[i + 1])) {
			imap_bad(cmd, "Missing charset");
			return;
		}
		const char *cs = a[i + 1].str;
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			imap_tagged(cmd, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		i += 2;
	}
	struct imap_search *sr;
	uint64_t budget = s->sv->cfg->imap_search_budget;
	uint32_t *hits;
	size_t nh;
	uint64_t top;
	if (imap_search_parse(cmd, a + i, n - i, &sr) < 0 ||
	    imap_search_run(cmd, sr, &budget, &hits, &nh, &top) < 0) {
		if (ret & IMAP_RET_SAVE) /* RFC 5182: a failed SAVE leaves $ empty */
			searchres_clear(v);
		return;
	}
	if ((ret & IMAP_RET_UPDATE) && context_add(cmd, a + i, n - i, NULL, 0, hits, nh) < 0)
		imap_untagged(s, "OK [NOUPDATE \"%s\"] No more search contexts", cmd->p.tag);
	if (ret & IMAP_RET_SAVE) {
		imap_search_save(v, ret, hits, nh);
		ret &= ~(unsigned)IMAP_RET_SAVE;
		if (ret == 0) { /* SAVE alone: no ESEARCH response */
			free(hits);
			imap_tagged(cmd, "OK", "SEARCH completed, result saved");
			return;
		}
	}
	/* the messages ESEARCH MIN and MAX return (hits are view indexes here) */
	uint64_t first_ms = nh > 0 ? v->msgs[hits[0]].rec.modseq : 0;
	uint64_t last_ms = nh > 0 ? v->msgs[hits[nh - 1]].rec.modseq : 0;
	for (size_t k = 0; k < nh; k++)
		hits[k] = cmd->uid ? v->msgs[hits[k]].rec.uid : hits[k] + 1;
	bool modseq = imap_search_modseq(sr);
	struct search_out *o = arena_alloc(&cmd->arena, sizeof(*o));
	o->hits = hits;
	o->nh = nh;
	cmd->state = o;
	cmd->state_free = search_out_free;
	struct buf b = BUF_INIT(0);
	buf_append_str(&b, "* ");
	if (esearch) {
		buf_printf(&b, "ESEARCH (TAG \"%s\")%s", cmd->p.tag, cmd->uid ? " UID" : "");
		if (nh > 0 && (ret & RET_MIN))
			buf_printf(&b, " MIN %u", hits[0]);
		if (nh > 0 && (ret & RET_MAX))
			buf_printf(&b, " MAX %u", hits[nh - 1]);
		if (ret & RET_COUNT)
			buf_printf(&b, " COUNT %zu", nh);
		if (ret & IMAP_RET_PARTIAL)
			imap_partial_format(&b, partial, hits, nh);
		if (nh > 0 && (ret & RET_ALL)) {
			buf_append_str(&b, " ALL ");
			o->ranges = true;
		} else {
			o->next = nh; /* no numbers: only the tail */
		}
		/* RFC 7162 3.1.5: with only MIN and/or MAX, the MODSEQ is of
		 * the messages returned, not of every match. */
		if ((ret & (RET_ALL | RET_COUNT)) == 0) {
			top = 0;
			if (ret & RET_MIN)
				top = first_ms;
			if ((ret & RET_MAX) && last_ms > top)
				top = last_ms;
		}
		if (nh > 0 && modseq)
			snprintf(o->tail, sizeof(o->tail), " MODSEQ %llu", (unsigned long long)top);
	} else {
		buf_append_str(&b, "SEARCH");
		if (nh > 0 && modseq)
			snprintf(o->tail, sizeof(o->tail), " (MODSEQ %llu)",
			         (unsigned long long)top);
	}
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
	search_out_step(cmd);
}
