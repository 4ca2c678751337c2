/*
 * /changes of Mailbox, Email and Thread, from the state strings
 * (jmap_impl.h): storage says what changed in each mailbox since the MODSEQ
 * the state recorded, and whether its expunge log still reaches back that
 * far. /queryChanges (in jmap_email_query.c and jmap_mailbox.c) starts
 * from the same changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

struct state_entry {
	uint64_t digest;
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
	uint32_t name_hash;
	bool seen; /* the mailbox still exists */
};

#define STATE_MAX_ENTRIES 100000

/* Parse "s" + entries "digest.uv.modseq.uidnext.namehash" joined by "_". */
static int
state_parse(const char *s, struct state_entry **e_r, size_t *n_r)
{
	struct state_entry *e = NULL;
	size_t n = 0, cap = 0;

	*e_r = NULL;
	*n_r = 0;
	if (s == NULL || s[0] != 's')
		return ROOST_EINVAL;
	s++;
	while (*s != '\0') {
		unsigned long long d, ms;
		unsigned uv, un, nh;
		int used = 0;

		if (sscanf(s, "%16llx.%x.%llx.%x.%x%n", &d, &uv, &ms, &un, &nh, &used) != 5 ||
		    used == 0 || n == STATE_MAX_ENTRIES) {
			free(e);
			return ROOST_EINVAL;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			e = xreallocarray(e, cap, sizeof(*e));
		}
		e[n].digest = d;
		e[n].uidvalidity = uv;
		e[n].modseq = ms;
		e[n].uidnext = un;
		e[n].name_hash = nh;
		e[n].seen = false;
		n++;
		s += used;
		if (*s == '_')
			s++;
		else if (*s != '\0') {
			free(e);
			return ROOST_EINVAL;
		}
	}
	*e_r = e;
	*n_r = n;
	return 0;
}

static struct state_entry *
entry_for(struct state_entry *e, size_t n, uint64_t digest)
{
	for (size_t i = 0; i < n; i++) {
		if (e[i].digest == digest)
			return &e[i];
	}
	return NULL;
}

static bool
changes_args(struct jmap_req *r, json_t *args, const char *tag, const char **since_r, size_t *max_r)
{
	json_t *max = json_object_get(args, "maxChanges");

	if (!jmap_check_account(r, args, tag))
		return false;
	*since_r = json_string_value(json_object_get(args, "sinceState"));
	if (*since_r == NULL || (max != NULL && !json_is_null(max) &&
	                         (!json_is_integer(max) || json_integer_value(max) <= 0))) {
		jmap_error(r, "invalidArguments", "sinceState or maxChanges", tag);
		return false;
	}
	*max_r = json_is_integer(max) ? (size_t)json_integer_value(max) : SIZE_MAX;
	return true;
}

/* The /changes response; the arrays are stolen. */
static void
changes_reply(struct jmap_req *r, const char *name, const char *tag, const char *since,
              const char *new_state, bool more, json_t *created, json_t *updated, json_t *destroyed)
{
	json_t *a = json_object();

	json_object_set_new(a, "accountId", json_string(r->account));
	json_object_set_new(a, "oldState", json_string(since));
	json_object_set_new(a, "newState", json_string(new_state));
	json_object_set_new(a, "hasMoreChanges", json_boolean(more));
	json_object_set_new(a, "created", created);
	json_object_set_new(a, "updated", updated);
	json_object_set_new(a, "destroyed", destroyed);
	json_object_set_new(a, "updatedProperties", json_null());
	jmap_reply(r, name, a, tag);
}

/* The Mailbox changes since the state since into three new arrays; NULL,
 * or why they cannot be told. */
static const char *
mailbox_changes_compute(struct jmap_req *r, const char *since, json_t **created_r,
                        json_t **updated_r, json_t **destroyed_r)
{
	struct state_entry *old;
	size_t n_old;
	json_t *created, *updated, *destroyed;

	if (state_parse(since, &old, &n_old) != 0 || jmap_mailboxes(r) != 0)
		return "not a state of this account";
	created = json_array();
	updated = json_array();
	destroyed = json_array();
	for (size_t i = 0; i < r->n_mboxes; i++) {
		const struct jmap_mbox *m = &r->mboxes[i];
		struct state_entry *e = entry_for(old, n_old, m->digest);

		if (e == NULL || e->uidvalidity != m->st.uidvalidity) {
			json_array_append_new(created, json_string(m->id));
		} else {
			e->seen = true;
			if (e->modseq != m->st.highestmodseq || e->uidnext != m->st.uidnext ||
			    e->name_hash != jmap_mbox_name_hash(m))
				json_array_append_new(updated, json_string(m->id));
		}
	}
	for (size_t i = 0; i < n_old; i++) {
		char id[18];

		if (old[i].seen)
			continue;
		snprintf(id, sizeof(id), "M%016llx", (unsigned long long)old[i].digest);
		json_array_append_new(destroyed, json_string(id));
	}
	free(old);
	*created_r = created;
	*updated_r = updated;
	*destroyed_r = destroyed;
	return NULL;
}

void
jmap_mailbox_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	size_t max;
	const char *since, *why;
	json_t *created, *updated, *destroyed;
	struct buf st = BUF_INIT(0);

	if (!changes_args(r, args, tag, &since, &max))
		return;
	if ((why = mailbox_changes_compute(r, since, &created, &updated, &destroyed)) != NULL) {
		jmap_error(r, "cannotCalculateChanges", why, tag);
		return;
	}
	if (json_array_size(created) + json_array_size(updated) + json_array_size(destroyed) >
	    max) {
		/* Mailboxes are few: no intermediate state is worth it. */
		json_decref(created);
		json_decref(updated);
		json_decref(destroyed);
		jmap_error(r, "cannotCalculateChanges", "more changes than maxChanges", tag);
		return;
	}
	jmap_state(r, &st);
	changes_reply(r, "Mailbox/changes", tag, since, (char *)st.data, false, created, updated,
	              destroyed);
	buf_free(&st);
}

const char *
jmap_mailbox_changes_since(struct jmap_req *r, const char *since, json_t **removed_r,
                           json_t **changed_r)
{
	json_t *created, *updated, *destroyed, *v;
	const char *why = mailbox_changes_compute(r, since, &created, &updated, &destroyed);
	size_t i;

	*removed_r = *changed_r = NULL;
	if (why != NULL)
		return why;
	*removed_r = json_array();
	*changed_r = json_object();
	json_array_extend(*removed_r, updated);
	json_array_extend(*removed_r, destroyed);
	json_array_foreach(created, i, v)
	{
		json_object_set_new(*changed_r, json_string_value(v), json_true());
	}
	json_array_foreach(updated, i, v)
	{
		json_object_set_new(*changed_r, json_string_value(v), json_true());
	}
	json_decref(created);
	json_decref(updated);
	json_decref(destroyed);
	return NULL;
}

/* One mailbox's share of Email/changes; false when it cannot be told.
 * With dthreads (Thread/changes), each destroyed Email's id is set there to
 * its thread's id, or to null when nothing remembers it. */
static bool
mailbox_share(struct jmap_req *r, const struct jmap_mbox *m, const struct state_entry *e,
              json_t *created, json_t *updated, json_t *destroyed, json_t *dthreads)
{
	struct mailbox *mb = NULL;
	struct mailbox_changes ch;
	char id[JMAP_ID_LEN + 1];
	bool ok = true;

	if (mailbox_open(r->store, r->user, m->name, MAILBOX_READONLY, &mb) != 0)
		return false;
	if (e == NULL) {
		struct msg_record *recs = NULL;
		size_t n = 0;
		uint64_t ms;

		if (mailbox_records(mb, &recs, &n, &ms) != 0) {
			mailbox_close(&mb);
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			jmap_email_id('E', recs[i].emailid, id);
			json_array_append_new(created, json_string(id));
		}
		free(recs);
		mailbox_close(&mb);
		return true;
	}
	if (mailbox_changes_since(mb, e->modseq, &ch) != 0) {
		mailbox_close(&mb);
		return false;
	}
	if (!ch.expunged_complete) {
		ok = false;
		goto done;
	}
	for (size_t i = 0; i < ch.n_changed; i++) {
		uint32_t uid = ch.changed[i].uid;

		jmap_email_id('E', ch.changed[i].emailid, id);
		if (uid >= e->uidnext)
			json_array_append_new(created, json_string(id));
		else
			json_array_append_new(updated, json_string(id));
	}
	for (size_t i = 0; i < ch.n_expunged; i++) {
		if (ch.expunged[i] >= e->uidnext)
			continue; /* created and gone since: never seen */
		if (ch.expunged_emailids == NULL || ch.expunged_emailids[i] == 0)
			continue; /* logged before EMAILIDs: nobody knows its id */
		jmap_email_id('E', ch.expunged_emailids[i], id);
		json_array_append_new(destroyed, json_string(id));
		if (dthreads != NULL && !json_is_string(json_object_get(dthreads, id))) {
			uint64_t t = jmap_thread_cached(r, m, ch.expunged[i]);
			char tid[JMAP_ID_LEN + 1];

			jmap_email_id('T', t, tid);
			json_object_set_new(dthreads, id, t != 0 ? json_string(tid) : json_null());
		}
	}
done:
	mailbox_changes_free(&ch);
	mailbox_close(&mb);
	return ok;
}

/* Whether the array a holds the string id. */
static bool
holds(json_t *a, const char *id)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
	{
		if (strcmp(json_string_value(v), id) == 0)
			return true;
	}
	return false;
}

/* Drop repeats of an id within a (the same EMAILID in several mailboxes). */
static json_t *
unique(json_t *a)
{
	json_t *out = json_array(), *v;
	size_t i;

	json_array_foreach(a, i, v)
	{
		if (!holds(out, json_string_value(v)))
			json_array_append(out, v);
	}
	json_decref(a);
	return out;
}

/*
 * Ids keep through a MOVE, which storage logs as an expunge in one mailbox
 * and a new message in another: an id both destroyed and created or
 * updated was moved (or copied, then expunged), and the client that knew
 * it sees it updated (Email: its mailboxIds changed) or not at all
 * (Thread). Quadratic in the changes of one response, which maxChanges
 * and the mailboxes' sizes bound.
 */
static void
reconcile(json_t **created, json_t **updated, json_t **destroyed)
{
	json_t *c = json_array(), *d = json_array(), *v;
	size_t i;

	*created = unique(*created);
	*updated = unique(*updated);
	*destroyed = unique(*destroyed);
	json_array_foreach(*destroyed, i, v)
	{
		const char *id = json_string_value(v);
		bool moved = holds(*created, id) || holds(*updated, id);

		if (!moved)
			json_array_append(d, v);
		else if (!holds(*updated, id))
			json_array_append(*updated, v);
	}
	json_array_foreach(*created, i, v)
	{
		if (!holds(*destroyed, json_string_value(v)))
			json_array_append(c, v);
	}
	json_decref(*created);
	json_decref(*destroyed);
	*created = c;
	*destroyed = d;
}

/* The EMAILID of an "E" id (they are made here, so well-formed). */
static uint64_t
email_value(const char *id)
{
	return strtoull(id + 1, NULL, 16);
}

/* Did the Email with this EMAILID exist at the old state: is one of its
 * locations in a mailbox the state knew, below the UIDNEXT it recorded? */
static bool
existed_before(struct jmap_req *r, const struct state_entry *old, size_t n_old, uint64_t emailid)
{
	const struct jmap_mbox *mbs[JMAP_MAX_LOCATIONS];
	uint32_t uids[JMAP_MAX_LOCATIONS];
	char id[JMAP_ID_LEN + 1];
	size_t n;

	jmap_email_id('E', emailid, id);
	n = jmap_email_locate(r, id, mbs, uids, JMAP_MAX_LOCATIONS);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < n_old; k++) {
			if (old[k].digest == mbs[i]->digest &&
			    old[k].uidvalidity == mbs[i]->st.uidvalidity &&
			    uids[i] < old[k].uidnext)
				return true;
		}
	}
	return false;
}

/* An Email copied into another mailbox (IMAP COPY keeps the EMAILID) is
 * not new: the client knew it, and only its mailboxIds changed. */
static void
copies_updated(struct jmap_req *r, const struct state_entry *old, size_t n_old, json_t **created,
               json_t *updated)
{
	json_t *c = json_array(), *v;
	size_t i;

	json_array_foreach(*created, i, v)
	{
		const char *id = json_string_value(v);

		if (!existed_before(r, old, n_old, email_value(id)))
			json_array_append(c, v);
		else if (!holds(updated, id))
			json_array_append(updated, v);
	}
	json_decref(*created);
	*created = c;
}

/* Remove the string id from the array a, if it is there. */
static void
drop(json_t *a, const char *id)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
	{
		if (strcmp(json_string_value(v), id) == 0) {
			json_array_remove(a, i);
			return;
		}
	}
}

/*
 * The Email changes turned into Thread changes (RFC 8621 3.2): a new
 * Email makes its thread created when no member existed before, else
 * updated; a changed or moved Email leaves its thread as it was (a Thread
 * holds only emailIds). A destroyed Email's thread is updated when members
 * remain, else destroyed; its THREADID comes from the process's cache of
 * THREADIDs (dthreads, filled by mailbox_share()), which has it when the
 * Email's thread was read while it existed (any Thread/get or threadId of
 * it) and the cache kept it. When it did not (a restart, an eviction),
 * false: the client fetches its threads again.
 */
static bool
thread_changes(struct jmap_req *r, const struct state_entry *old, size_t n_old, json_t **created,
               json_t **updated, json_t **destroyed, json_t *dthreads)
{
	json_t *tc = json_array(), *tu = json_array(), *td, *v;
	size_t i;

	json_array_foreach(*destroyed, i, v)
	{
		if (!json_is_string(json_object_get(dthreads, json_string_value(v)))) {
			json_decref(tc);
			json_decref(tu);
			return false;
		}
	}
	json_array_foreach(*created, i, v)
	{
		uint64_t t = jmap_thread_of_email(r, email_value(json_string_value(v)));
		const struct jmap_tloc *first;
		size_t n = t != 0 ? jmap_thread_members(r, t, &first) : 0;
		char tid[JMAP_ID_LEN + 1];
		bool existed = false;

		if (n == 0)
			continue; /* gone meanwhile */
		for (size_t k = 0; k < n && !existed; k++)
			existed = existed_before(r, old, n_old, first[k].emailid);
		jmap_email_id('T', t, tid);
		if (!holds(tc, tid) && !holds(tu, tid))
			json_array_append_new(existed ? tu : tc, json_string(tid));
	}
	td = json_array();
	json_array_foreach(*destroyed, i, v)
	{
		const char *tid =
		    json_string_value(json_object_get(dthreads, json_string_value(v)));
		const struct jmap_tloc *first;

		/* The thread had this member at the old state: it existed. */
		if (jmap_thread_members(r, email_value(tid), &first) > 0) {
			drop(tc, tid);
			if (!holds(tu, tid))
				json_array_append_new(tu, json_string(tid));
		} else if (!holds(td, tid)) {
			json_array_append_new(td, json_string(tid));
		}
	}
	json_decref(*created);
	json_decref(*updated);
	json_decref(*destroyed);
	*created = tc;
	*updated = tu;
	*destroyed = td;
	return true;
}

struct changes {
	json_t *created, *updated, *destroyed;
	struct buf state; /* the new state */
	bool more;
};

static void
changes_free(struct changes *ch)
{
	json_decref(ch->created);
	json_decref(ch->updated);
	json_decref(ch->destroyed);
	buf_free(&ch->state);
	memset(ch, 0, sizeof(*ch));
}

/*
 * The Email (kind 'E') or Thread ('T') changes since the state since into
 * ch: whole mailboxes are taken until maxChanges Emails would be passed (a
 * thread counts no more than its Emails); the new state then says which
 * were. NULL on success, else why the changes cannot be told (ch is then
 * empty).
 */
static const char *
changes_compute(struct jmap_req *r, const char *since, size_t max, char kind, struct changes *ch)
{
	struct state_entry *old;
	size_t n_old, total = 0;
	const char *why = NULL;
	json_t *dthreads;

	memset(ch, 0, sizeof(*ch));
	if (state_parse(since, &old, &n_old) != 0)
		return "not a state of this account";
	if (jmap_mailboxes(r) != 0) {
		free(old);
		return "not a state of this account";
	}
	/* made after the checks above, which return without freeing it */
	dthreads = kind == 'T' ? json_object() : NULL;
	for (size_t i = 0; i < n_old; i++) {
		const struct jmap_mbox *m = jmap_mbox_by_digest(r, old[i].digest);

		/* A mailbox gone (or renumbered) took messages whose ids
		 * nobody recorded. */
		if (m == NULL || m->st.uidvalidity != old[i].uidvalidity) {
			free(old);
			json_decref(dthreads);
			return "a mailbox was removed";
		}
	}
	ch->created = json_array();
	ch->updated = json_array();
	ch->destroyed = json_array();
	buf_append_str(&ch->state, "s");
	for (size_t i = 0; i < r->n_mboxes; i++) {
		const struct jmap_mbox *m = &r->mboxes[i];
		struct state_entry *e = entry_for(old, n_old, m->digest);
		json_t *c = json_array(), *u = json_array(), *d = json_array();
		size_t n;

		if (!ch->more && !mailbox_share(r, m, e, c, u, d, dthreads)) {
			why = "the expunge log does not reach back so far";
		} else {
			n = json_array_size(c) + json_array_size(u) + json_array_size(d);
			if (!ch->more && total + n > max && total > 0)
				ch->more = true;
			if (!ch->more && n > max)
				why = "one mailbox changed more than maxChanges";
		}
		if (why != NULL) {
			json_decref(c);
			json_decref(u);
			json_decref(d);
			break;
		}
		if (!ch->more) {
			total += n;
			json_array_extend(ch->created, c);
			json_array_extend(ch->updated, u);
			json_array_extend(ch->destroyed, d);
			buf_printf(&ch->state, "%s%016llx.%x.%llx.%x.%x",
			           ch->state.len > 1 ? "_" : "", (unsigned long long)m->digest,
			           m->st.uidvalidity, (unsigned long long)m->st.highestmodseq,
			           m->st.uidnext, jmap_mbox_name_hash(m));
		} else if (e != NULL) {
			/* Not taken yet: the old position stays in the state. */
			buf_printf(&ch->state, "%s%016llx.%x.%llx.%x.%x",
			           ch->state.len > 1 ? "_" : "", (unsigned long long)e->digest,
			           e->uidvalidity, (unsigned long long)e->modseq, e->uidnext,
			           e->name_hash);
		}
		json_decref(c);
		json_decref(u);
		json_decref(d);
	}
	if (why == NULL) {
		reconcile(&ch->created, &ch->updated, &ch->destroyed);
		copies_updated(r, old, n_old, &ch->created, ch->updated);
		if (kind == 'T' && !thread_changes(r, old, n_old, &ch->created, &ch->updated,
		                                   &ch->destroyed, dthreads))
			why = "an Email was destroyed and its thread is not remembered";
	}
	json_decref(dthreads);
	free(old);
	if (why != NULL)
		changes_free(ch);
	return why;
}

const char *
jmap_email_changes_since(struct jmap_req *r, const char *since, json_t **removed_r,
                         json_t **changed_r)
{
	struct changes ch;
	const char *why = changes_compute(r, since, SIZE_MAX, 'E', &ch);
	json_t *v;
	size_t i;

	*removed_r = *changed_r = NULL;
	if (why != NULL)
		return why;
	*removed_r = json_array();
	*changed_r = json_object();
	json_array_extend(*removed_r, ch.updated);
	json_array_extend(*removed_r, ch.destroyed);
	json_array_foreach(ch.created, i, v)
	{
		json_object_set_new(*changed_r, json_string_value(v), json_true());
	}
	json_array_foreach(ch.updated, i, v)
	{
		json_object_set_new(*changed_r, json_string_value(v), json_true());
	}
	changes_free(&ch);
	return NULL;
}

static void
email_changes(struct jmap_req *r, json_t *args, const char *tag, char kind, const char *name)
{
	struct changes ch;
	const char *since, *why;
	size_t max;

	if (!changes_args(r, args, tag, &since, &max))
		return;
	if ((why = changes_compute(r, since, max, kind, &ch)) != NULL) {
		jmap_error(r, "cannotCalculateChanges", why, tag);
		return;
	}
	changes_reply(r, name, tag, since, (char *)ch.state.data, ch.more, ch.created, ch.updated,
	              ch.destroyed);
	ch.created = ch.updated = ch.destroyed = NULL;
	changes_free(&ch);
}

void
jmap_email_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	email_changes(r, args, tag, 'E', "Email/changes");
}

void
jmap_thread_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	email_changes(r, args, tag, 'T', "Thread/changes");
}
