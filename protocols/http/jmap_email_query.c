/*
 * Email/query (RFC 8621 4.4): the filter conditions and operators matched
 * against each candidate message, read only when a condition needs its
 * content, and the sort comparators.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

struct cand {
	struct jmap_mbc *c;
	struct jmap_mbc_set *set; /* the call's mailboxes, c among them */
	const struct msg_record *rec;
	uint64_t thread; /* 0 until known */
	/* parsed on demand */
	struct msg_view view;
	struct message *msg;
	bool tried;
};

struct id_pos {
	uint64_t emailid;
	size_t pos;
};

static int
id_pos_cmp(const void *pa, const void *pb)
{
	const struct id_pos *a = pa, *b = pb;

	if (a->emailid != b->emailid)
		return a->emailid < b->emailid ? -1 : 1;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static uint64_t cand_thread(struct jmap_req *r, struct cand *k);

/* An Email in several mailboxes (an IMAP COPY keeps the EMAILID) is one
 * result, where it first sorts; with threads collapsed, so is a thread:
 * drop the later ones from sel[0..n), keeping the order. Returns the new
 * count. */
static size_t
unique_emails(struct jmap_req *r, struct cand **sel, size_t n, bool by_thread)
{
	struct id_pos *v = xreallocarray(NULL, n + 1, sizeof(*v));
	bool *drop = xcalloc(n + 1, sizeof(*drop)), any = false;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		v[i].emailid = by_thread ? cand_thread(r, sel[i]) : sel[i]->rec->emailid;
		v[i].pos = i;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), id_pos_cmp);
	for (size_t i = 1; i < n; i++) {
		if (v[i].emailid == v[i - 1].emailid)
			drop[v[i].pos] = any = true;
	}
	if (any) {
		for (size_t i = 0; i < n; i++) {
			if (!drop[i])
				sel[k++] = sel[i];
		}
		n = k;
	}
	free(drop);
	free(v);
	return n;
}

static struct message *
cand_msg(struct cand *k)
{
	if (!k->tried) {
		k->tried = true;
		if (jmap_read_message(k->c, k->rec->uid, &k->view, &k->msg) != 0)
			k->msg = NULL;
	}
	return k->msg;
}

static uint64_t
cand_thread(struct jmap_req *r, struct cand *k)
{
	if (k->thread == 0)
		k->thread = k->msg != NULL
		                ? message_thread_id(k->view.data, k->view.len, k->rec->emailid)
		                : jmap_thread_read(r, k->c->m, k->c->mb, k->rec);
	return k->thread;
}

static void
cand_release(struct cand *k)
{
	if (k->msg != NULL) {
		message_free(&k->msg);
		msg_view_release(&k->view);
	}
	k->tried = false;
}

static bool
rec_has_keyword(const struct jmap_mbc *c, const struct msg_record *rec, const char *kw)
{
	json_t *o = jmap_mbc_keywords(c, rec);
	char lower[STORAGE_MAX_KEYWORD_LEN + 1];
	bool has;

	snprintf(lower, sizeof(lower), "%s", kw);
	for (char *p = lower; *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	has = json_object_get(o, lower) != NULL;
	json_decref(o);
	return has;
}

static bool
has_keyword(struct cand *k, const char *kw)
{
	return rec_has_keyword(k->c, k->rec, kw);
}

enum thread_kw { KW_ALL, KW_SOME, KW_NONE };

/* allInThreadHaveKeyword, someInThreadHaveKeyword, noneInThreadHaveKeyword
 * (RFC 8621 4.4.1) over every member of k's thread in the account. */
static bool
thread_keyword(struct jmap_req *r, struct cand *k, const char *kw, enum thread_kw mode)
{
	const struct jmap_tloc *first;
	size_t n = jmap_thread_members(r, cand_thread(r, k), &first), hits = 0;

	if (n == 0) {
		/* arrived after the index was read: a thread of its own */
		hits = has_keyword(k, kw);
		n = 1;
	}
	for (size_t i = 0; i < n && first != NULL; i++) {
		struct jmap_mbc *c = jmap_mbc_get(r, k->set, &r->mboxes[first[i].mbox]);
		const struct msg_record *rec = c != NULL ? jmap_mbc_find(c, first[i].uid) : NULL;

		if (rec != NULL && rec_has_keyword(c, rec, kw))
			hits++;
	}
	return mode == KW_ALL ? hits == n : mode == KW_SOME ? hits > 0 : hits == 0;
}

static bool
contains(const char *hay, size_t hlen, const char *needle)
{
	return message_text_contains(hay, hlen, needle, strlen(needle));
}

static bool
header_contains(struct message *msg, const char *name, const char *needle, bool addresses)
{
	struct buf t = BUF_INIT(0);
	bool hit;

	if (addresses)
		jmap_msg_addresses_text(msg, name, &t);
	else
		jmap_msg_header_text(msg, name, &t);
	hit = contains((const char *)t.data ?: "", t.len, needle);
	buf_free(&t);
	return hit;
}

static bool
body_contains(struct message *msg, const char *needle)
{
	struct buf t = BUF_INIT(0);
	bool hit;

	message_body_text(msg, &t);
	hit = contains((const char *)t.data ?: "", t.len, needle);
	buf_free(&t);
	return hit;
}

/* 1 match, 0 no match, -1 unsupported filter (error answered by caller). */
static int
cond_match(struct jmap_req *r, struct cand *k, json_t *f)
{
	const char *key;
	json_t *v;

	json_object_foreach(f, key, v)
	{
		const char *s = json_string_value(v);
		struct message *msg;

		if (strcmp(key, "inMailbox") == 0) {
			const struct jmap_mbox *m = jmap_mbox_by_id(r, s);

			if (m != k->c->m)
				return 0;
		} else if (strcmp(key, "inMailboxOtherThan") == 0) {
			json_t *e;
			size_t i;

			json_array_foreach(v, i, e)
			{
				if (jmap_mbox_by_id(r, json_string_value(e)) == k->c->m)
					return 0;
			}
		} else if (strcmp(key, "before") == 0 || strcmp(key, "after") == 0) {
			int64_t t;

			if (s == NULL || jmap_parse_date(s, &t) != 0)
				return -1;
			if (key[0] == 'b' ? k->rec->internal_date >= t : k->rec->internal_date < t)
				return 0;
		} else if (strcmp(key, "minSize") == 0) {
			if ((json_int_t)k->rec->size < json_integer_value(v))
				return 0;
		} else if (strcmp(key, "maxSize") == 0) {
			if ((json_int_t)k->rec->size >= json_integer_value(v))
				return 0;
		} else if (strcmp(key, "hasKeyword") == 0) {
			if (s == NULL || !has_keyword(k, s))
				return 0;
		} else if (strcmp(key, "notKeyword") == 0) {
			if (s == NULL || has_keyword(k, s))
				return 0;
		} else if (strcmp(key, "allInThreadHaveKeyword") == 0) {
			if (s == NULL || !thread_keyword(r, k, s, KW_ALL))
				return 0;
		} else if (strcmp(key, "someInThreadHaveKeyword") == 0) {
			if (s == NULL || !thread_keyword(r, k, s, KW_SOME))
				return 0;
		} else if (strcmp(key, "noneInThreadHaveKeyword") == 0) {
			if (s == NULL || !thread_keyword(r, k, s, KW_NONE))
				return 0;
		} else if (strcmp(key, "hasAttachment") == 0) {
			if ((msg = cand_msg(k)) == NULL ||
			    jmap_msg_has_attachment(msg) != json_is_true(v))
				return 0;
		} else if (strcmp(key, "text") == 0) {
			if (s == NULL || (msg = cand_msg(k)) == NULL)
				return 0;
			if (!header_contains(msg, "From", s, true) &&
			    !header_contains(msg, "To", s, true) &&
			    !header_contains(msg, "Cc", s, true) &&
			    !header_contains(msg, "Bcc", s, true) &&
			    !header_contains(msg, "Subject", s, false) && !body_contains(msg, s))
				return 0;
		} else if (strcmp(key, "from") == 0 || strcmp(key, "to") == 0 ||
		           strcmp(key, "cc") == 0 || strcmp(key, "bcc") == 0) {
			char name[8];

			snprintf(name, sizeof(name), "%s", key);
			name[0] = (char)(name[0] - 32);
			if (s == NULL || (msg = cand_msg(k)) == NULL ||
			    !header_contains(msg, name, s, true))
				return 0;
		} else if (strcmp(key, "subject") == 0) {
			if (s == NULL || (msg = cand_msg(k)) == NULL ||
			    !header_contains(msg, "Subject", s, false))
				return 0;
		} else if (strcmp(key, "body") == 0) {
			if (s == NULL || (msg = cand_msg(k)) == NULL || !body_contains(msg, s))
				return 0;
		} else if (strcmp(key, "header") == 0) {
			const char *hn = json_string_value(json_array_get(v, 0));
			const char *hv = json_string_value(json_array_get(v, 1));
			struct buf t = BUF_INIT(0);
			int rc;

			if (hn == NULL || (msg = cand_msg(k)) == NULL)
				return 0;
			rc = message_header_get(msg, NULL, hn, true, &t);
			buf_free(&t);
			if (rc != 0 || (hv != NULL && !header_contains(msg, hn, hv, false)))
				return 0;
		} else {
			return -1;
		}
	}
	return 1;
}

static int
filter_match(struct jmap_req *r, struct cand *k, json_t *f)
{
	const char *op;

	if (f == NULL || json_is_null(f))
		return 1;
	if (!json_is_object(f))
		return -1;
	op = json_string_value(json_object_get(f, "operator"));
	if (op != NULL) {
		json_t *conds = json_object_get(f, "conditions"), *c;
		bool and = strcmp(op, "AND") == 0, or = strcmp(op, "OR") == 0;
		bool not = strcmp(op, "NOT") == 0;
		size_t i;
		int any = 0;

		if (!(and || or || not ) || !json_is_array(conds))
			return -1;
		json_array_foreach(conds, i, c)
		{
			int m = filter_match(r, k, c);

			if (m < 0)
				return -1;
			if (and&&m == 0)
				return 0;
			any |= m;
		}
		if (and)
			return 1;
		return or ? any : !any;
	}
	return cond_match(r, k, f);
}

struct sort_key {
	const char *prop;
	bool asc;
};

struct sort_ctx {
	struct sort_key keys[4];
	size_t n;
};

static __thread struct sort_ctx *sort_ctx;

static void
sort_text(struct cand *k, const char *prop, struct buf *out)
{
	struct message *msg = cand_msg(k);

	if (msg == NULL)
		return;
	if (strcmp(prop, "subject") == 0)
		jmap_msg_header_text(msg, "Subject", out);
	else
		jmap_msg_addresses_text(msg, prop[0] == 'f' ? "From" : "To", out);
}

static int64_t
sent_at(struct cand *k)
{
	struct message *msg = cand_msg(k);
	struct buf t = BUF_INIT(0);
	int64_t when = k->rec->internal_date;

	if (msg != NULL && message_header_get(msg, NULL, "Date", false, &t) == 0)
		(void)message_parse_date((const char *)t.data, t.len, &when);
	buf_free(&t);
	return when;
}

static int
cmp_cand(const void *a, const void *b)
{
	struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;

	for (size_t i = 0; i < sort_ctx->n; i++) {
		const struct sort_key *k = &sort_ctx->keys[i];
		int d = 0;

		if (strcmp(k->prop, "receivedAt") == 0) {
			d = (x->rec->internal_date > y->rec->internal_date) -
			    (x->rec->internal_date < y->rec->internal_date);
		} else if (strcmp(k->prop, "size") == 0) {
			d = (x->rec->size > y->rec->size) - (x->rec->size < y->rec->size);
		} else if (strcmp(k->prop, "sentAt") == 0) {
			int64_t sx = sent_at(x), sy = sent_at(y);

			d = (sx > sy) - (sx < sy);
		} else {
			struct buf tx = BUF_INIT(0), ty = BUF_INIT(0);

			sort_text(x, k->prop, &tx);
			sort_text(y, k->prop, &ty);
			d = strcasecmp((const char *)tx.data ?: "", (const char *)ty.data ?: "");
			buf_free(&tx);
			buf_free(&ty);
		}
		if (d != 0)
			return k->asc ? d : -d;
	}
	/* Total and the same in every request, so that /queryChanges can
	 * tell where an Email went: by mailbox (its id's digest, which a
	 * rename keeps), then by UID (arrival), in the first key's direction. */
	{
		int d;

		if (x->c->m->digest != y->c->m->digest)
			d = x->c->m->digest < y->c->m->digest ? -1 : 1;
		else
			d = (x->rec->uid > y->rec->uid) - (x->rec->uid < y->rec->uid);
		return sort_ctx->keys[0].asc ? d : -d;
	}
}

static bool
parse_sort(json_t *sort, struct sort_ctx *ctx)
{
	static const char *const ok[] = {"receivedAt", "size", "from", "to", "subject", "sentAt"};
	json_t *c;
	size_t i;

	ctx->n = 0;
	if (sort == NULL || json_is_null(sort)) {
		ctx->keys[0].prop = "receivedAt";
		ctx->keys[0].asc = false;
		ctx->n = 1;
		return true;
	}
	if (!json_is_array(sort))
		return false;
	json_array_foreach(sort, i, c)
	{
		const char *p = json_string_value(json_object_get(c, "property"));
		json_t *asc = json_object_get(c, "isAscending");
		bool known = false;

		for (size_t k = 0; p != NULL && k < sizeof(ok) / sizeof(ok[0]); k++)
			known |= strcmp(ok[k], p) == 0;
		if (!known || ctx->n == 4)
			return false;
		ctx->keys[ctx->n].prop = p;
		ctx->keys[ctx->n].asc = asc == NULL || json_is_true(asc);
		ctx->n++;
	}
	return true;
}

/* One run of a query: every matching Email, sorted, each once. */
struct query_run {
	struct jmap_mbc_set set;
	struct cand *cands;
	struct cand **sel;
	size_t n_cands, n_sel;
	struct buf state; /* the state the results are of (read before them) */
};

static void
query_free(struct query_run *q)
{
	for (size_t i = 0; i < q->n_cands; i++)
		cand_release(&q->cands[i]);
	free(q->cands);
	free(q->sel);
	jmap_mbc_free(&q->set);
	buf_free(&q->state);
}

/* Run the filter and sort of args into q; false once an error response
 * was written (q is then freed). */
static bool
query_run(struct jmap_req *r, json_t *args, const char *tag, struct query_run *q)
{
	json_t *filter = json_object_get(args, "filter");
	bool collapse = json_is_true(json_object_get(args, "collapseThreads"));
	struct sort_ctx sc;

	memset(q, 0, sizeof(*q));
	if (!parse_sort(json_object_get(args, "sort"), &sc)) {
		jmap_error(r, "unsupportedSort", NULL, tag);
		return false;
	}
	if (jmap_mailboxes(r) != 0) {
		jmap_error(r, "serverFail", NULL, tag);
		return false;
	}
	jmap_state(r, &q->state);
	for (size_t i = 0; i < r->n_mboxes; i++) {
		const char *in = json_string_value(json_object_get(filter, "inMailbox"));
		struct jmap_mbc *c;

		/* the common case: one mailbox, without opening the others */
		if (in != NULL && jmap_mbox_by_id(r, in) != &r->mboxes[i])
			continue;
		c = jmap_mbc_get(r, &q->set, &r->mboxes[i]);
		if (c == NULL)
			continue;
		q->cands = xreallocarray(q->cands, q->n_cands + c->n + 1, sizeof(*q->cands));
		for (size_t k = 0; k < c->n; k++) {
			memset(&q->cands[q->n_cands], 0, sizeof(*q->cands));
			q->cands[q->n_cands].c = c;
			q->cands[q->n_cands].set = &q->set;
			q->cands[q->n_cands].rec = &c->recs[k];
			q->n_cands++;
		}
	}
	q->sel = xcalloc(q->n_cands + 1, sizeof(*q->sel));
	for (size_t i = 0; i < q->n_cands; i++) {
		int m = filter_match(r, &q->cands[i], filter);

		if (m < 0) {
			jmap_error(r, "unsupportedFilter", NULL, tag);
			query_free(q);
			return false;
		}
		if (m)
			q->sel[q->n_sel++] = &q->cands[i];
		/* keep parsed messages only when the sort needs them */
		if (strcmp(sc.keys[0].prop, "receivedAt") == 0 ||
		    strcmp(sc.keys[0].prop, "size") == 0)
			cand_release(&q->cands[i]);
	}
	sort_ctx = &sc;
	if (q->n_sel > 1)
		qsort(q->sel, q->n_sel, sizeof(*q->sel), cmp_cand);
	sort_ctx = NULL;
	q->n_sel = unique_emails(r, q->sel, q->n_sel, false);
	if (collapse)
		q->n_sel = unique_emails(r, q->sel, q->n_sel, true);
	return true;
}

/* Does the filter hold a condition on other Emails of the thread? */
static bool
filter_on_threads(json_t *f)
{
	json_t *c;
	size_t i;

	if (!json_is_object(f))
		return false;
	if (json_object_get(f, "allInThreadHaveKeyword") != NULL ||
	    json_object_get(f, "someInThreadHaveKeyword") != NULL ||
	    json_object_get(f, "noneInThreadHaveKeyword") != NULL)
		return true;
	json_array_foreach(json_object_get(f, "conditions"), i, c)
	{
		if (filter_on_threads(c))
			return true;
	}
	return false;
}

/*
 * Can /queryChanges tell this query's changes? Every sort property and
 * every condition but the thread ones depends only on the Email itself,
 * so an Email whose result can differ is one that changed (created,
 * updated, destroyed) in the Email changes. Not so with thread conditions
 * or collapsed threads: another member's change moves an unchanged Email
 * in or out.
 */
static bool
query_changes_possible(json_t *args)
{
	return !json_is_true(json_object_get(args, "collapseThreads")) &&
	       !filter_on_threads(json_object_get(args, "filter"));
}

void
jmap_email_query(struct jmap_req *r, json_t *args, const char *tag)
{
	json_int_t pos = json_integer_value(json_object_get(args, "position"));
	json_t *limit_j = json_object_get(args, "limit"), *ids, *a;
	const char *anchor = json_string_value(json_object_get(args, "anchor"));
	json_int_t anchor_off = json_integer_value(json_object_get(args, "anchorOffset"));
	size_t limit = SIZE_MAX;
	struct query_run q;

	if (!jmap_check_account(r, args, tag))
		return;
	if (limit_j != NULL && !json_is_null(limit_j)) {
		if (!json_is_integer(limit_j) || json_integer_value(limit_j) < 0) {
			jmap_error(r, "invalidArguments", "limit", tag);
			return;
		}
		limit = (size_t)json_integer_value(limit_j);
	}
	if (!query_run(r, args, tag, &q))
		return;
	if (anchor != NULL) {
		size_t k;

		for (k = 0; k < q.n_sel; k++) {
			char id[JMAP_ID_LEN + 1];

			jmap_email_id('E', q.sel[k]->rec->emailid, id);
			if (strcmp(id, anchor) == 0)
				break;
		}
		if (k == q.n_sel) {
			jmap_error(r, "anchorNotFound", NULL, tag);
			goto out;
		}
		pos = (json_int_t)k + anchor_off;
		if (pos < 0)
			pos = 0;
	} else if (pos < 0) {
		pos = (json_int_t)q.n_sel + pos < 0 ? 0 : (json_int_t)q.n_sel + pos;
	}
	ids = json_array();
	for (size_t i = (size_t)pos; i < q.n_sel && json_array_size(ids) < limit; i++) {
		char id[JMAP_ID_LEN + 1];

		jmap_email_id('E', q.sel[i]->rec->emailid, id);
		json_array_append_new(ids, json_string(id));
	}
	a = json_pack("{sssssbsosIsb}", "accountId", r->account, "queryState", (char *)q.state.data,
	              "canCalculateChanges", query_changes_possible(args), "ids", ids, "position",
	              (json_int_t)pos, "collapseThreads",
	              json_is_true(json_object_get(args, "collapseThreads")));
	if (json_is_true(json_object_get(args, "calculateTotal")))
		json_object_set_new(a, "total", json_integer((json_int_t)q.n_sel));
	if (limit != SIZE_MAX)
		json_object_set_new(a, "limit", json_integer((json_int_t)limit));
	jmap_reply(r, "Email/query", a, tag);
out:
	query_free(&q);
}

/*
 * Email/queryChanges (RFC 8620 5.6): the Emails changed since the old
 * query state (a state string: jmap_impl.h) are removed, and those of them
 * in the results now are added at their index. Exact for every sort and
 * filter this server has but the thread ones (query_changes_possible());
 * an updated Email that stayed where it was is both removed and added,
 * which the RFC allows.
 *
 * upToId (the last id the client holds): when the filter looks only at
 * what never changes in an Email (every sort here does), an Email past it
 * can only come or go, and the client has none of those: additions after
 * it are left out. With a condition on keywords or mailboxes, or when
 * upToId is not in the results now, every change is told (RFC 8620 5.6).
 */
static bool
filter_immutable(json_t *f)
{
	static const char *const mutable_keys[] = {"inMailbox",
	                                           "inMailboxOtherThan",
	                                           "hasKeyword",
	                                           "notKeyword",
	                                           "allInThreadHaveKeyword",
	                                           "someInThreadHaveKeyword",
	                                           "noneInThreadHaveKeyword"};
	const char *key;
	json_t *v;
	size_t i;

	if (f == NULL || json_is_null(f))
		return true;
	if (json_object_get(f, "operator") != NULL) {
		json_array_foreach(json_object_get(f, "conditions"), i, v)
		{
			if (!filter_immutable(v))
				return false;
		}
		return true;
	}
	json_object_foreach(f, key, v)
	{
		for (i = 0; i < sizeof(mutable_keys) / sizeof(mutable_keys[0]); i++) {
			if (strcmp(key, mutable_keys[i]) == 0)
				return false;
		}
	}
	return true;
}

void
jmap_email_query_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *since = json_string_value(json_object_get(args, "sinceQueryState"));
	json_t *max_j = json_object_get(args, "maxChanges");
	json_t *up_j = json_object_get(args, "upToId");
	json_t *removed, *changed, *added, *a;
	size_t max = SIZE_MAX, upto = SIZE_MAX;
	struct query_run q;
	const char *why;

	if (!jmap_check_account(r, args, tag))
		return;
	if (since == NULL ||
	    (max_j != NULL && !json_is_null(max_j) &&
	     (!json_is_integer(max_j) || json_integer_value(max_j) <= 0)) ||
	    (up_j != NULL && !json_is_null(up_j) && !json_is_string(up_j))) {
		jmap_error(r, "invalidArguments", "sinceQueryState, maxChanges or upToId", tag);
		return;
	}
	if (json_is_integer(max_j))
		max = (size_t)json_integer_value(max_j);
	if (!query_changes_possible(args)) {
		jmap_error(r, "cannotCalculateChanges", "the results depend on other Emails", tag);
		return;
	}
	if (!query_run(r, args, tag, &q))
		return;
	if ((why = jmap_email_changes_since(r, since, &removed, &changed)) != NULL) {
		query_free(&q);
		jmap_error(r, "cannotCalculateChanges", why, tag);
		return;
	}
	if (json_is_string(up_j) && filter_immutable(json_object_get(args, "filter"))) {
		for (size_t i = 0; i < q.n_sel && upto == SIZE_MAX; i++) {
			char id[JMAP_ID_LEN + 1];

			jmap_email_id('E', q.sel[i]->rec->emailid, id);
			if (strcmp(id, json_string_value(up_j)) == 0)
				upto = i;
		}
	}
	added = json_array();
	for (size_t i = 0; i < q.n_sel && (upto == SIZE_MAX || i <= upto); i++) {
		char id[JMAP_ID_LEN + 1];

		jmap_email_id('E', q.sel[i]->rec->emailid, id);
		if (json_object_get(changed, id) != NULL)
			json_array_append_new(
			    added, json_pack("{sssI}", "id", id, "index", (json_int_t)i));
	}
	json_decref(changed);
	if (json_array_size(removed) + json_array_size(added) > max) {
		json_decref(removed);
		json_decref(added);
		query_free(&q);
		jmap_error(r, "tooManyChanges", NULL, tag);
		return;
	}
	a = json_pack("{sssssssoso}", "accountId", r->account, "oldQueryState", since,
	              "newQueryState", (char *)q.state.data, "removed", removed, "added", added);
	if (json_is_true(json_object_get(args, "calculateTotal")))
		json_object_set_new(a, "total", json_integer((json_int_t)q.n_sel));
	jmap_reply(r, "Email/queryChanges", a, tag);
	query_free(&q);
}
