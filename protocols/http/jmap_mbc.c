/*
 * The mailboxes one JMAP method call opens (struct jmap_mbc_set): each
 * opened at most once per call, with its records and keywords, and
 * closed when the call ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

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
