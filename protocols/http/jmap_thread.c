/*
 * Threads (RFC 8621 3): a Thread is every Email of the account sharing a
 * THREADID, the one IMAP's OBJECTID shows (message_thread_id(): a digest
 * of the root its header names), so JMAP and IMAP agree on what a thread
 * is and nothing is stored for it.
 *
 * The cost of computing: a thread's members are found from the THREADID
 * of every message of the account, once per request that asks (Thread/get,
 * Thread/changes, the thread keyword filters); an Email's own threadId
 * needs only that message. Storage keeps no thread index: each THREADID is
 * read from the message's header once and then kept in a bounded cache of
 * the process (below); the index lives for one request and is dropped with
 * the mailbox list after a change.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

/* The same Emails by EMAILID, for the thread of an Email. */
struct jmap_tmap {
	uint64_t emailid;
	uint64_t threadid;
};

/*
 * The THREADIDs read, kept across requests: a message's bytes never change
 * under one UIDVALIDITY and UID, so neither does its THREADID, and a
 * request that needs the threads of the account reads only the messages
 * new since. Direct-mapped (a colliding entry replaces the old one), a
 * bounded cache of TCACHE_SIZE entries.
 *
 * Lock: tcache_mu guards tcache; held for one lookup or one store, never
 * across a read of a message.
 */
#define TCACHE_SIZE (1u << 17) /* 4 MiB */

struct tcache_ent {
	uint64_t user;    /* hash of the user's name */
	uint64_t mailbox; /* digest of its MAILBOXID */
	uint32_t uidvalidity, uid;
	uint64_t threadid; /* 0: empty */
};

static pthread_mutex_t tcache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tcache_ent *tcache; /* guarded by tcache_mu */

static size_t
tcache_slot(const struct tcache_ent *k)
{
	uint64_t h = k->user ^ (k->mailbox * 0x9e3779b97f4a7c15ULL) ^
	             ((uint64_t)k->uidvalidity << 32 | k->uid) * 0xc2b2ae3d27d4eb4fULL;

	return (size_t)((h ^ h >> 29) & (TCACHE_SIZE - 1));
}

static uint64_t
tcache_get(const struct tcache_ent *k)
{
	uint64_t t = 0;

	pthread_mutex_lock(&tcache_mu);
	if (tcache != NULL) {
		const struct tcache_ent *e = &tcache[tcache_slot(k)];

		if (e->threadid != 0 && e->user == k->user && e->mailbox == k->mailbox &&
		    e->uidvalidity == k->uidvalidity && e->uid == k->uid)
			t = e->threadid;
	}
	pthread_mutex_unlock(&tcache_mu);
	return t;
}

static void
tcache_put(const struct tcache_ent *k)
{
	pthread_mutex_lock(&tcache_mu);
	if (tcache == NULL)
		tcache = xcalloc(TCACHE_SIZE, sizeof(*tcache));
	tcache[tcache_slot(k)] = *k;
	pthread_mutex_unlock(&tcache_mu);
}

uint64_t
jmap_thread_read(struct jmap_req *r, const struct jmap_mbox *m, struct mailbox *mb,
                 const struct msg_record *rec)
{
	struct tcache_ent k = {.user = hash_str64(r->user),
	                       .mailbox = m->digest,
	                       .uidvalidity = m->st.uidvalidity,
	                       .uid = rec->uid};
	struct msg_view v;

	if ((k.threadid = tcache_get(&k)) != 0)
		return k.threadid;
	/* an unreadable message (expunged meanwhile) is a thread of its own,
	 * and not worth remembering */
	if (mailbox_read(mb, rec->uid, &v) != 0)
		return message_thread_id(NULL, 0, rec->emailid);
	k.threadid = message_thread_id(v.data, v.len, rec->emailid);
	msg_view_release(&v);
	tcache_put(&k);
	return k.threadid;
}

uint64_t
jmap_thread_cached(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid)
{
	struct tcache_ent k = {.user = hash_str64(r->user),
	                       .mailbox = m->digest,
	                       .uidvalidity = m->st.uidvalidity,
	                       .uid = uid};

	return tcache_get(&k);
}

uint64_t
jmap_thread_at(struct jmap_req *r, const struct jmap_mbox *m, uint32_t uid, uint64_t emailid)
{
	struct mailbox *mb = NULL;
	struct msg_record rec = {.uid = uid, .emailid = emailid};
	uint64_t t;

	if (mailbox_open(r->store, r->user, m->name, MAILBOX_READONLY, &mb) != 0)
		return message_thread_id(NULL, 0, emailid);
	t = jmap_thread_read(r, m, mb, &rec);
	mailbox_close(&mb);
	return t;
}

static int
tloc_cmp(const void *pa, const void *pb)
{
	const struct jmap_tloc *a = pa, *b = pb;

	if (a->threadid != b->threadid)
		return a->threadid < b->threadid ? -1 : 1;
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	if (a->emailid != b->emailid)
		return a->emailid < b->emailid ? -1 : 1;
	if (a->mbox != b->mbox)
		return a->mbox < b->mbox ? -1 : 1;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static int
tmap_cmp(const void *pa, const void *pb)
{
	const struct jmap_tmap *a = pa, *b = pb;

	return a->emailid < b->emailid ? -1 : a->emailid > b->emailid;
}

void
jmap_threads_reset(struct jmap_req *r)
{
	free(r->tlocs);
	free(r->tmap);
	r->tlocs = NULL;
	r->tmap = NULL;
	r->n_tlocs = 0;
	r->tlocs_loaded = false;
}

/* The locations of mailbox i's records with their THREADIDs; arg is the
 * capacity of r->tlocs. */
static void
tlocs_add(struct jmap_req *r, size_t i, struct mailbox *mb, const struct msg_record *recs, size_t n,
          void *arg)
{
	size_t *cap = arg;

	if (r->n_tlocs + n > *cap) {
		*cap = (r->n_tlocs + n) * 2 + 16;
		r->tlocs = xreallocarray(r->tlocs, *cap, sizeof(*r->tlocs));
	}
	for (size_t j = 0; j < n; j++) {
		struct jmap_tloc *t = &r->tlocs[r->n_tlocs++];

		t->threadid = jmap_thread_read(r, &r->mboxes[i], mb, &recs[j]);
		t->emailid = recs[j].emailid;
		t->date = recs[j].internal_date;
		t->mbox = (uint32_t)i;
		t->uid = recs[j].uid;
	}
}

int
jmap_threads_load(struct jmap_req *r)
{
	size_t cap = 0, k = 0, all;
	int rc;

	if (r->tlocs_loaded)
		return 0;
	if ((rc = jmap_each_records(r, tlocs_add, &cap)) != 0)
		return rc;
	/* an Email in several mailboxes (IMAP COPY keeps the EMAILID) is
	 * one member: keep its first location */
	all = r->n_tlocs;
	r->tmap = xreallocarray(NULL, r->n_tlocs + 1, sizeof(*r->tmap));
	for (size_t i = 0; i < r->n_tlocs; i++) {
		r->tmap[i].emailid = r->tlocs[i].emailid;
		r->tmap[i].threadid = r->tlocs[i].threadid;
	}
	if (r->n_tlocs > 1) {
		qsort(r->tlocs, r->n_tlocs, sizeof(*r->tlocs), tloc_cmp);
		qsort(r->tmap, r->n_tlocs, sizeof(*r->tmap), tmap_cmp);
	}
	for (size_t i = 0; i < r->n_tlocs; i++) {
		bool dup = false;

		/* copies keep the date, so they sort next to each other;
		 * the scan back over the thread is for a store that did not */
		for (size_t j = k; j-- > 0 && r->tlocs[j].threadid == r->tlocs[i].threadid;) {
			if (r->tlocs[j].emailid == r->tlocs[i].emailid) {
				dup = true;
				break;
			}
		}
		if (!dup)
			r->tlocs[k++] = r->tlocs[i];
	}
	r->n_tlocs = k;
	{
		size_t m = 0;

		for (size_t i = 0; i < all; i++) {
			if (m == 0 || r->tmap[m - 1].emailid != r->tmap[i].emailid)
				r->tmap[m++] = r->tmap[i];
		}
	}
	r->tlocs_loaded = true;
	return 0;
}

size_t
jmap_thread_members(struct jmap_req *r, uint64_t threadid, const struct jmap_tloc **first_r)
{
	size_t lo = 0, hi, n = 0;

	*first_r = NULL;
	if (jmap_threads_load(r) != 0)
		return 0;
	hi = r->n_tlocs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->tlocs[mid].threadid < threadid)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (lo + n < r->n_tlocs && r->tlocs[lo + n].threadid == threadid)
		n++;
	if (n > 0)
		*first_r = &r->tlocs[lo];
	return n;
}

uint64_t
jmap_thread_of_email(struct jmap_req *r, uint64_t emailid)
{
	struct jmap_tmap key = {.emailid = emailid}, *hit;

	if (jmap_threads_load(r) != 0 || r->n_tlocs == 0)
		return 0;
	hit = bsearch(&key, r->tmap, r->n_tlocs, sizeof(*r->tmap), tmap_cmp);
	return hit != NULL ? hit->threadid : 0;
}

void
jmap_thread_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *list, *not_found, *v, *seen;
	size_t i;

	/* ids null (all threads) is as large as the account */
	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_TOO_LARGE, tag,
	                        &ids))
		return;
	list = json_array();
	not_found = json_array();
	seen = json_object();
	json_array_foreach(ids, i, v)
	{
		const char *id = json_string_value(v);
		uint64_t t = jmap_id_value(id, 'T');
		const struct jmap_tloc *first;
		size_t n;
		json_t *emails;

		if (jmap_id_repeat(seen, id))
			continue;
		n = t != 0 ? jmap_thread_members(r, t, &first) : 0;
		if (n == 0) {
			json_array_append(not_found, v);
			continue;
		}
		/* members oldest first (RFC 8621 3: sorted by receivedAt) */
		emails = json_array();
		for (size_t k = 0; k < n; k++) {
			char eid[JMAP_ID_LEN + 1];

			jmap_email_id('E', first[k].emailid, eid);
			json_array_append_new(emails, json_string(eid));
		}
		json_array_append_new(list, json_pack("{ssso}", "id", id, "emailIds", emails));
	}
	json_decref(seen);
	jmap_get_reply(r, "Thread/get", NULL, list, not_found, tag);
}
