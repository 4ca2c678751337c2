/*
 * Email/get, Thread/get, Email/query and SearchSnippet/get (RFC 8621 3,
 * 4.4, 4.5, 5). Every message is its own thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

/* ---- mailboxes opened for one call ---- */

struct jmap_mbc *
jmap_mbc_get(struct jmap_req *r, struct jmap_mbc_set *set, const struct jmap_mbox *m)
{
	struct jmap_mbc *c;
	const char *const *names;
	size_t nk;
	uint64_t ms;

	for (size_t i = 0; i < set->n; i++) {
		if (set->v[i]->m == m)
			return set->v[i];
	}
	c = xcalloc(1, sizeof(*c));
	c->m = m;
	if (mailbox_open(r->store, r->user, m->name, 0, &c->mb) != 0) {
		free(c);
		return NULL;
	}
	if (mailbox_records(c->mb, &c->recs, &c->n, &ms) != 0) {
		mailbox_close(&c->mb);
		free(c);
		return NULL;
	}
	c->kw = json_array();
	if (mailbox_keywords(c->mb, &names, &nk) == 0) {
		for (size_t i = 0; i < nk; i++)
			json_array_append_new(c->kw, json_string(names[i]) ?: json_string(""));
	}
	set->v = xreallocarray(set->v, set->n + 1, sizeof(*set->v));
	set->v[set->n++] = c;
	return c;
}

const struct msg_record *
jmap_mbc_find(const struct jmap_mbc *c, uint32_t uid)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->recs[mid].uid == uid)
			return &c->recs[mid];
		if (c->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

json_t *
jmap_mbc_keywords(const struct jmap_mbc *c, const struct msg_record *rec)
{
	static const struct {
		uint32_t flag;
		const char *kw;
	} flags[] = {{MSG_SEEN, "$seen"},
	             {MSG_ANSWERED, "$answered"},
	             {MSG_FLAGGED, "$flagged"},
	             {MSG_DRAFT, "$draft"}};
	json_t *o = json_object();

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (rec->flags & flags[i].flag)
			json_object_set_new(o, flags[i].kw, json_true());
	}
	for (size_t i = 0; i < json_array_size(c->kw) && i < 64; i++) {
		if (rec->keywords & (1ULL << i)) {
			char lower[STORAGE_MAX_KEYWORD_LEN + 1];
			const char *k = json_string_value(json_array_get(c->kw, i));

			snprintf(lower, sizeof(lower), "%s", k);
			for (char *p = lower; *p != '\0'; p++)
				*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
			json_object_set_new(o, lower, json_true());
		}
	}
	return o;
}

void
jmap_mbc_free(struct jmap_mbc_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		mailbox_close(&set->v[i]->mb);
		free(set->v[i]->recs);
		json_decref(set->v[i]->kw);
		free(set->v[i]);
	}
	free(set->v);
	set->v = NULL;
	set->n = 0;
}

int
jmap_read_message(struct jmap_mbc *c, uint32_t uid, struct msg_view *view, struct message **msg_r)
{
	int rc = mailbox_read(c->mb, uid, view);

	if (rc != 0)
		return rc;
	rc = message_parse(view->data, view->len, NULL, msg_r);
	if (rc != 0)
		msg_view_release(view);
	return rc;
}

/* ---- Email/get ---- */

static const char *const own_default[] = {"id",       "blobId", "threadId",  "mailboxIds",
                                          "keywords", "size",   "receivedAt"};

static bool
prop_wanted(json_t *props, const char *name)
{
	json_t *p;
	size_t i;

	if (props == NULL) {
		for (size_t k = 0; k < sizeof(own_default) / sizeof(own_default[0]); k++) {
			if (strcmp(own_default[k], name) == 0)
				return true;
		}
		return false;
	}
	json_array_foreach(props, i, p)
	{
		if (json_is_string(p) && strcmp(json_string_value(p), name) == 0)
			return true;
	}
	return false;
}

/* Does the call want anything that needs the message's bytes? */
static bool
needs_content(json_t *props)
{
	json_t *p;
	size_t i;

	if (props == NULL)
		return true;
	json_array_foreach(props, i, p)
	{
		const char *n = json_string_value(p);

		if (n != NULL && strcmp(n, "id") != 0 && !prop_wanted(NULL, n))
			return true;
	}
	return false;
}

static json_t *
email_json(struct jmap_req *r, struct jmap_mbc *c, const struct msg_record *rec, json_t *props,
           json_t *args)
{
	char id[JMAP_ID_LEN + 1], date[21];
	const struct jmap_mbox *m = c->m;
	json_t *o = NULL;

	if (needs_content(props)) {
		struct msg_view v;
		struct message *msg;
		char prefix[JMAP_ID_LEN + 1];

		if (jmap_read_message(c, rec->uid, &v, &msg) != 0)
			return NULL;
		jmap_email_id('E', m->digest, m->st.uidvalidity, rec->uid, prefix);
		o = jmap_msg_email(msg, props, json_object_get(args, "bodyProperties"), args,
		                   prefix + 1);
		message_free(&msg);
		msg_view_release(&v);
	} else {
		o = json_object();
	}
	jmap_email_id('E', m->digest, m->st.uidvalidity, rec->uid, id);
	json_object_set_new(o, "id", json_string(id));
	if (prop_wanted(props, "blobId")) {
		id[0] = 'B';
		json_object_set_new(o, "blobId", json_string(id));
	}
	if (prop_wanted(props, "threadId")) {
		id[0] = 'T';
		json_object_set_new(o, "threadId", json_string(id));
	}
	if (prop_wanted(props, "mailboxIds"))
		json_object_set_new(o, "mailboxIds", json_pack("{sb}", m->id, 1));
	if (prop_wanted(props, "keywords"))
		json_object_set_new(o, "keywords", jmap_mbc_keywords(c, rec));
	if (prop_wanted(props, "size"))
		json_object_set_new(o, "size", json_integer((json_int_t)rec->size));
	if (prop_wanted(props, "receivedAt")) {
		jmap_utc_date(rec->internal_date, date);
		json_object_set_new(o, "receivedAt", json_string(date));
	}
	return o;
}

void
jmap_email_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids = json_object_get(args, "ids"), *props = json_object_get(args, "properties");
	struct jmap_mbc_set set = {0};
	json_t *list, *not_found, *v;
	struct buf st = BUF_INIT(0);
	size_t i;

	if (!jmap_check_account(r, args, tag))
		return;
	if (!json_is_array(ids)) {
		/* All of them only when few: clients are expected to query. */
		jmap_error(
		    r, json_is_null(ids) || ids == NULL ? "requestTooLarge" : "invalidArguments",
		    "ids", tag);
		return;
	}
	if (json_array_size(ids) > JMAP_MAX_OBJECTS_GET) {
		jmap_error(r, "requestTooLarge", NULL, tag);
		return;
	}
	if (props != NULL && !json_is_null(props) && !json_is_array(props)) {
		jmap_error(r, "invalidArguments", "properties", tag);
		return;
	}
	if (json_is_null(props))
		props = NULL;
	list = json_array();
	not_found = json_array();
	json_array_foreach(ids, i, v)
	{
		const struct jmap_mbox *m;
		const struct msg_record *rec;
		struct jmap_mbc *c;
		uint32_t uid;
		json_t *o = NULL;

		if (jmap_email_parse(r, 'E', jmap_resolve_id(r, json_string_value(v)), &m, &uid) &&
		    (c = jmap_mbc_get(r, &set, m)) != NULL && (rec = jmap_mbc_find(c, uid)) != NULL)
			o = email_json(r, c, rec, props, args);
		if (o != NULL)
			json_array_append_new(list, o);
		else
			json_array_append(not_found, v);
	}
	jmap_mbc_free(&set);
	jmap_state(r, &st);
	jmap_reply(r, "Email/get",
	           json_pack("{sssssoso}", "accountId", r->account, "state", (char *)st.data,
	                     "list", list, "notFound", not_found),
	           tag);
	buf_free(&st);
}

void
jmap_thread_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids = json_object_get(args, "ids"), *list, *not_found, *v;
	struct jmap_mbc_set set = {0};
	struct buf st = BUF_INIT(0);
	size_t i;

	if (!jmap_check_account(r, args, tag))
		return;
	if (!json_is_array(ids) || json_array_size(ids) > JMAP_MAX_OBJECTS_GET) {
		jmap_error(r, json_is_array(ids) ? "requestTooLarge" : "invalidArguments", "ids",
		           tag);
		return;
	}
	list = json_array();
	not_found = json_array();
	json_array_foreach(ids, i, v)
	{
		const struct jmap_mbox *m;
		struct jmap_mbc *c;
		uint32_t uid;
		const char *id = json_string_value(v);

		if (jmap_email_parse(r, 'T', id, &m, &uid) && (c = jmap_mbc_get(r, &set, m)) &&
		    jmap_mbc_find(c, uid) != NULL) {
			char eid[JMAP_ID_LEN + 1];

			jmap_email_id('E', m->digest, m->st.uidvalidity, uid, eid);
			json_array_append_new(list,
			                      json_pack("{sss[s]}", "id", id, "emailIds", eid));
		} else {
			json_array_append(not_found, v);
		}
	}
	jmap_mbc_free(&set);
	jmap_state(r, &st);
	jmap_reply(r, "Thread/get",
	           json_pack("{sssssoso}", "accountId", r->account, "state", (char *)st.data,
	                     "list", list, "notFound", not_found),
	           tag);
	buf_free(&st);
}

/* ---- Email/query ---- */

struct cand {
	struct jmap_mbc *c;
	const struct msg_record *rec;
	/* parsed on demand */
	struct msg_view view;
	struct message *msg;
	bool tried;
};

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
has_keyword(struct cand *k, const char *kw)
{
	json_t *o = jmap_mbc_keywords(k->c, k->rec);
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
		} else if (strcmp(key, "hasKeyword") == 0 ||
		           strcmp(key, "allInThreadHaveKeyword") == 0 ||
		           strcmp(key, "someInThreadHaveKeyword") == 0) {
			if (s == NULL || !has_keyword(k, s))
				return 0;
		} else if (strcmp(key, "notKeyword") == 0 ||
		           strcmp(key, "noneInThreadHaveKeyword") == 0) {
			if (s == NULL || has_keyword(k, s))
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
	/* stable and total: newest UID last */
	if (x->c != y->c)
		return x->c < y->c ? -1 : 1;
	return (x->rec->uid > y->rec->uid) - (x->rec->uid < y->rec->uid);
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

void
jmap_email_query(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *filter = json_object_get(args, "filter"), *ids;
	json_int_t pos = json_integer_value(json_object_get(args, "position"));
	json_t *limit_j = json_object_get(args, "limit");
	const char *anchor = json_string_value(json_object_get(args, "anchor"));
	json_int_t anchor_off = json_integer_value(json_object_get(args, "anchorOffset"));
	struct jmap_mbc_set set = {0};
	struct cand *cands = NULL, **sel = NULL;
	size_t n_cands = 0, n_sel = 0, limit = SIZE_MAX;
	struct sort_ctx sc;
	struct buf st = BUF_INIT(0);
	json_t *a;

	if (!jmap_check_account(r, args, tag))
		return;
	if (!parse_sort(json_object_get(args, "sort"), &sc)) {
		jmap_error(r, "unsupportedSort", NULL, tag);
		return;
	}
	if (limit_j != NULL && !json_is_null(limit_j)) {
		if (!json_is_integer(limit_j) || json_integer_value(limit_j) < 0) {
			jmap_error(r, "invalidArguments", "limit", tag);
			return;
		}
		limit = (size_t)json_integer_value(limit_j);
	}
	if (jmap_mailboxes(r) != 0) {
		jmap_error(r, "serverFail", NULL, tag);
		return;
	}
	jmap_state(r, &st);
	for (size_t i = 0; i < r->n_mboxes; i++) {
		const char *in = json_string_value(json_object_get(filter, "inMailbox"));
		struct jmap_mbc *c;

		/* the common case: one mailbox, without opening the others */
		if (in != NULL && jmap_mbox_by_id(r, in) != &r->mboxes[i])
			continue;
		c = jmap_mbc_get(r, &set, &r->mboxes[i]);
		if (c == NULL)
			continue;
		cands = xreallocarray(cands, n_cands + c->n + 1, sizeof(*cands));
		for (size_t k = 0; k < c->n; k++) {
			memset(&cands[n_cands], 0, sizeof(*cands));
			cands[n_cands].c = c;
			cands[n_cands].rec = &c->recs[k];
			n_cands++;
		}
	}
	sel = xcalloc(n_cands + 1, sizeof(*sel));
	for (size_t i = 0; i < n_cands; i++) {
		int m = filter_match(r, &cands[i], filter);

		if (m < 0) {
			jmap_error(r, "unsupportedFilter", NULL, tag);
			goto out;
		}
		if (m)
			sel[n_sel++] = &cands[i];
		/* keep parsed messages only when the sort needs them */
		if (strcmp(sc.keys[0].prop, "receivedAt") == 0 ||
		    strcmp(sc.keys[0].prop, "size") == 0)
			cand_release(&cands[i]);
	}
	sort_ctx = &sc;
	qsort(sel, n_sel, sizeof(*sel), cmp_cand);
	sort_ctx = NULL;
	if (anchor != NULL) {
		size_t k;

		for (k = 0; k < n_sel; k++) {
			char id[JMAP_ID_LEN + 1];
			const struct jmap_mbox *m = sel[k]->c->m;

			jmap_email_id('E', m->digest, m->st.uidvalidity, sel[k]->rec->uid, id);
			if (strcmp(id, anchor) == 0)
				break;
		}
		if (k == n_sel) {
			jmap_error(r, "anchorNotFound", NULL, tag);
			goto out;
		}
		pos = (json_int_t)k + anchor_off;
		if (pos < 0)
			pos = 0;
	} else if (pos < 0) {
		pos = (json_int_t)n_sel + pos < 0 ? 0 : (json_int_t)n_sel + pos;
	}
	ids = json_array();
	for (size_t i = (size_t)pos; i < n_sel && json_array_size(ids) < limit; i++) {
		char id[JMAP_ID_LEN + 1];
		const struct jmap_mbox *m = sel[i]->c->m;

		jmap_email_id('E', m->digest, m->st.uidvalidity, sel[i]->rec->uid, id);
		json_array_append_new(ids, json_string(id));
	}
	a = json_pack("{sssssbsosI}", "accountId", r->account, "queryState", (char *)st.data,
	              "canCalculateChanges", 0, "ids", ids, "position", (json_int_t)pos);
	if (json_is_true(json_object_get(args, "calculateTotal")))
		json_object_set_new(a, "total", json_integer((json_int_t)n_sel));
	if (limit != SIZE_MAX)
		json_object_set_new(a, "limit", json_integer((json_int_t)limit));
	jmap_reply(r, "Email/query", a, tag);
out:
	for (size_t i = 0; i < n_cands; i++)
		cand_release(&cands[i]);
	free(cands);
	free(sel);
	jmap_mbc_free(&set);
	buf_free(&st);
}

/* ---- SearchSnippet/get ---- */

/* The first text term of a filter (text, subject or body). */
static const char *
filter_term(json_t *f)
{
	const char *t;
	json_t *c;
	size_t i;

	if (!json_is_object(f))
		return NULL;
	if ((t = json_string_value(json_object_get(f, "text"))) != NULL ||
	    (t = json_string_value(json_object_get(f, "subject"))) != NULL ||
	    (t = json_string_value(json_object_get(f, "body"))) != NULL)
		return t;
	json_array_foreach(json_object_get(f, "conditions"), i, c)
	{
		if ((t = filter_term(c)) != NULL)
			return t;
	}
	return NULL;
}

static void
html_escape(const char *s, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '<':
			buf_append_str(out, "&lt;");
			break;
		case '>':
			buf_append_str(out, "&gt;");
			break;
		case '&':
			buf_append_str(out, "&amp;");
			break;
		case '"':
			buf_append_str(out, "&quot;");
			break;
		default:
			buf_append_byte(out, (uint8_t)s[i]);
		}
	}
}

/* text with the first occurrence of term marked; NULL when absent. */
static json_t *
highlight(const char *text, const char *term, size_t window)
{
	size_t tl = strlen(term), n = strlen(text), start = 0, end;
	const char *hit = strcasestr(text, term);
	struct buf out = BUF_INIT(0);
	json_t *j;

	if (hit == NULL || tl == 0)
		return json_null();
	if (window > 0 && (size_t)(hit - text) > window / 2) {
		start = (size_t)(hit - text) - window / 2;
		while (start < n && ((unsigned char)text[start] & 0xc0) == 0x80)
			start++;
	}
	end = window > 0 && start + window < n ? start + window : n;
	while (end < n && ((unsigned char)text[end] & 0xc0) == 0x80)
		end++;
	if (end < (size_t)(hit - text) + tl)
		end = (size_t)(hit - text) + tl;
	html_escape(text + start, (size_t)(hit - text) - start, &out);
	buf_append_str(&out, "<mark>");
	html_escape(hit, tl, &out);
	buf_append_str(&out, "</mark>");
	html_escape(hit + tl, end - ((size_t)(hit - text) + tl), &out);
	j = json_string((const char *)out.data) ?: json_null();
	buf_free(&out);
	return j;
}

void
jmap_snippet_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids = json_object_get(args, "emailIds"), *list, *not_found, *v;
	const char *term = filter_term(json_object_get(args, "filter"));
	struct jmap_mbc_set set = {0};
	size_t i;

	if (!jmap_check_account(r, args, tag))
		return;
	if (!json_is_array(ids) || json_array_size(ids) > JMAP_MAX_OBJECTS_GET) {
		jmap_error(r, json_is_array(ids) ? "requestTooLarge" : "invalidArguments", NULL,
		           tag);
		return;
	}
	list = json_array();
	not_found = json_array();
	json_array_foreach(ids, i, v)
	{
		const struct jmap_mbox *m;
		struct jmap_mbc *c;
		struct msg_view view;
		struct message *msg;
		uint32_t uid;

		if (!jmap_email_parse(r, 'E', json_string_value(v), &m, &uid) ||
		    (c = jmap_mbc_get(r, &set, m)) == NULL || jmap_mbc_find(c, uid) == NULL ||
		    jmap_read_message(c, uid, &view, &msg) != 0) {
			json_array_append(not_found, v);
			continue;
		}
		{
			struct buf subj = BUF_INIT(0), body = BUF_INIT(0);
			json_t *o = json_pack("{sO}", "emailId", v);

			jmap_msg_header_text(msg, "Subject", &subj);
			message_body_text(msg, &body);
			json_object_set_new(o, "subject",
			                    term ? highlight((const char *)subj.data ?: "", term, 0)
			                         : json_null());
			json_object_set_new(
			    o, "preview",
			    term ? highlight((const char *)body.data ?: "", term, 200)
			         : json_null());
			json_array_append_new(list, o);
			buf_free(&subj);
			buf_free(&body);
		}
		message_free(&msg);
		msg_view_release(&view);
	}
	jmap_mbc_free(&set);
	jmap_reply(r, "SearchSnippet/get",
	           json_pack("{sssoso}", "accountId", r->account, "list", list, "notFound",
	                     json_array_size(not_found) ? not_found : json_null()),
	           tag);
	if (json_array_size(not_found) == 0)
		json_decref(not_found);
}
