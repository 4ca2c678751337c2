/*
 * JMAP Email ids from storage's EMAILIDs (RFC 8474): where each one is,
 * read from every mailbox's records once per request and dropped with the
 * mailbox list after a change. The cost is one records scan per mailbox
 * per request that names an Email (16 bytes of memory per message), which
 * is what ids that do not name their mailbox take without an index of
 * their own in storage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/xalloc.h"

#include "jmap_impl.h"

struct jmap_eloc {
	uint64_t emailid;
	uint32_t mbox; /* index into r->mboxes */
	uint32_t uid;
};

void
jmap_email_id(char kind, uint64_t emailid, char out[JMAP_ID_LEN + 1])
{
	snprintf(out, JMAP_ID_LEN + 1, "%c%016" PRIx64, kind, emailid);
}

static int
eloc_cmp(const void *pa, const void *pb)
{
	const struct jmap_eloc *a = pa, *b = pb;

	if (a->emailid != b->emailid)
		return a->emailid < b->emailid ? -1 : 1;
	if (a->mbox != b->mbox)
		return a->mbox < b->mbox ? -1 : 1;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

void
jmap_elocs_reset(struct jmap_req *r)
{
	free(r->elocs);
	r->elocs = NULL;
	r->n_elocs = 0;
	r->elocs_loaded = false;
}

int
jmap_each_records(struct jmap_req *r,
                  void (*fn)(struct jmap_req *r, size_t i, struct mailbox *mb,
                             const struct msg_record *recs, size_t n, void *arg),
                  void *arg)
{
	int rc;

	if ((rc = jmap_mailboxes(r)) != 0)
		return rc;
	for (size_t i = 0; i < r->n_mboxes; i++) {
		struct mailbox *mb = NULL;
		struct msg_record *recs = NULL;
		size_t n = 0;
		uint64_t ms;

		/* a mailbox gone meanwhile holds nothing */
		if (mailbox_open(r->store, r->user, r->mboxes[i].name, MAILBOX_READONLY, &mb) != 0)
			continue;
		if (mailbox_records(mb, &recs, &n, &ms) == 0) {
			fn(r, i, mb, recs, n, arg);
			free(recs);
		}
		mailbox_close(&mb);
	}
	return 0;
}

/* The locations of mailbox i's records; arg is the capacity of r->elocs. */
static void
elocs_add(struct jmap_req *r, size_t i, struct mailbox *mb, const struct msg_record *recs, size_t n,
          void *arg)
{
	size_t *cap = arg;

	if (r->n_elocs + n > *cap) {
		*cap = (r->n_elocs + n) * 2 + 16;
		r->elocs = xreallocarray(r->elocs, *cap, sizeof(*r->elocs));
	}
	for (size_t k = 0; k < n; k++) {
		struct jmap_eloc *e = &r->elocs[r->n_elocs++];

		e->emailid = recs[k].emailid;
		e->mbox = (uint32_t)i;
		e->uid = recs[k].uid;
	}
}

static int
elocs_load(struct jmap_req *r)
{
	size_t cap = 0;
	int rc;

	if (r->elocs_loaded)
		return 0;
	if ((rc = jmap_each_records(r, elocs_add, &cap)) != 0)
		return rc;
	if (r->n_elocs > 1)
		qsort(r->elocs, r->n_elocs, sizeof(*r->elocs), eloc_cmp);
	r->elocs_loaded = true;
	return 0;
}

/* The first location of emailid, NULL when none. */
static const struct jmap_eloc *
eloc_first(struct jmap_req *r, uint64_t emailid)
{
	size_t lo = 0, hi;

	if (emailid == 0 || elocs_load(r) != 0)
		return NULL;
	hi = r->n_elocs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->elocs[mid].emailid < emailid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->n_elocs && r->elocs[lo].emailid == emailid ? &r->elocs[lo] : NULL;
}

uint64_t
jmap_id_value(const char *id, char kind)
{
	uint64_t v = 0;

	if (id == NULL || strlen(id) != JMAP_ID_LEN || id[0] != kind)
		return 0;
	for (size_t i = 1; i < JMAP_ID_LEN; i++) {
		char c = id[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (d < 0)
			return 0;
		v = v << 4 | (uint64_t)d;
	}
	return v;
}

bool
jmap_email_parse(struct jmap_req *r, char kind, const char *id, const struct jmap_mbox **mb_r,
                 uint32_t *uid_r)
{
	const struct jmap_eloc *e = eloc_first(r, jmap_id_value(id, kind));

	*mb_r = NULL;
	if (e == NULL)
		return false;
	*mb_r = &r->mboxes[e->mbox];
	*uid_r = e->uid;
	return true;
}

size_t
jmap_email_locate(struct jmap_req *r, const char *id, const struct jmap_mbox **mbs, uint32_t *uids,
                  size_t max)
{
	uint64_t v = jmap_id_value(id, 'E');
	const struct jmap_eloc *e = eloc_first(r, v);
	size_t n = 0;

	for (; e != NULL && e < r->elocs + r->n_elocs && e->emailid == v && n < max; e++, n++) {
		mbs[n] = &r->mboxes[e->mbox];
		uids[n] = e->uid;
	}
	return n;
}

uint64_t
jmap_emailid_at(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid)
{
	struct mailbox *mb = NULL;
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t ms, id = 0;

	if (mailbox_open(r->store, r->user, m->name, MAILBOX_READONLY, &mb) != 0)
		return 0;
	if (mailbox_records(mb, &recs, &n, &ms) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (recs[i].uid == uid)
				id = recs[i].emailid;
		}
		free(recs);
	}
	mailbox_close(&mb);
	return id;
}

json_t *
jmap_email_mailbox_ids(struct jmap_req *r, uint64_t emailid, const struct jmap_mbox *m)
{
	const struct jmap_eloc *e = eloc_first(r, emailid);
	json_t *o = json_object();

	json_object_set_new(o, m->id, json_true());
	for (; e != NULL && e < r->elocs + r->n_elocs && e->emailid == emailid; e++)
		json_object_set_new(o, r->mboxes[e->mbox].id, json_true());
	return o;
}
