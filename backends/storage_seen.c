/*
 * Per-user \Seen on shared mailboxes (RFC 4314 4, "s": \Seen is the
 * reader's own), once, in the wrapper, for every backend.
 *
 * The model. The owner's \Seen is the backend's flag, as it always was. A
 * user who opened another's mailbox (mb->actor) has a seen set of its own
 * for that mailbox: every path of the wrapper that shows or changes \Seen
 * for such a reader uses the set instead of the flag:
 * mailbox_records() and mailbox_changes_since() give records whose
 * MSG_SEEN is the reader's, mailbox_status() and storage_status() count
 * UNSEEN by it, mailbox_store() keeps \Seen in the set and passes only the
 * other flags to the backend (a FLAGS replace keeps the owner's \Seen as it
 * was), APPEND and COPY/MOVE into the mailbox put a \Seen they carry into
 * the set, and a copy out of it takes \Seen from the set. A reader without
 * a set starts with nothing seen (as Dovecot's private index does). When
 * the owner (or a reader) copies or moves messages between the owner's
 * mailboxes, every other reader's \Seen of them goes along into the
 * destination's set when that reader may read the destination
 * (storage_seen_carry()). That costs every COPY and MOVE within the
 * owner's store one read of the source's record, and each reader with
 * \Seen of a moved message a read of its rights on the destination; all
 * the readers' sets change in one update (one commit) of the
 * destination's record (bench/bench_seen.c measures it).
 *
 * Where it is kept. An entry of the owner's mailbox metadata record
 * (storage_metadata.c), "/seen/<reader>" ("/seen/#<hash>" for names past
 * SEEN_KEY_MAX bytes, the name then kept in the value and compared), which
 * no client reaches through METADATA: it goes with the mailbox when it is
 * deleted and follows it when renamed, needs no new backend op, and is
 * changed under the record's lock like the ACL beside it. The value:
 * "S2", UIDVALIDITY (4 bytes, big-endian: a set of another UIDVALIDITY is
 * empty), the count of ranges and the ranges of seen UIDs as varints (gap
 * from the previous range's end, then length less one), the last private
 * MODSEQ given and the private MODSEQ ranges (below), then the reader's
 * name. "S1" values (no MODSEQ part) are still read.
 *
 * Exact and bounded. Ranges are rebuilt at each change over the UIDs that
 * exist at that moment: UIDs between two seen messages that no longer
 * exist (expunged) are taken as seen, so runs of seen messages merge across
 * expunges and a range never needs more than one byte per existing
 * message: a set costs 2-10 bytes per run of seen messages (0 per message
 * inside a run; a reader who has read everything but new mail has one
 * range), at worst (every other message seen) about 1 byte per message.
 * The value is bounded by STORAGE_METADATA_MAX_VALUE (16 KiB): a change
 * that would pass it is refused (ROOST_ETOOBIG; IMAP STORE answers NO
 * [LIMIT]) and nothing changes, the other flags of that STORE included;
 * the entries count towards the owner's metadata limits of the mailbox.
 *
 * An open mailbox keeps the set it last gave its session (mb->seen, 8
 * bytes a range): mailbox_changes_since() compares the stored set with it
 * and reports the messages whose \Seen the reader changed elsewhere (its
 * other sessions), so IDLE and NOOP of every session of the reader show
 * them. A reader's change wakes the mailbox's watchers like any change;
 * the owner's sessions and other readers find nothing changed for them.
 *
 * MODSEQ (CONDSTORE, QRESYNC: RFC 7162 3.1 wants every change of a
 * message's metadata, \Seen included, to give it a MODSEQ above every one
 * the client was told, so that CHANGEDSINCE, SEARCH MODSEQ, UNCHANGEDSINCE
 * and QRESYNC's SELECT see it). A reader's \Seen change must not be a
 * change of the owner's mailbox (the owner and the other readers would
 * each be told of a change that is not theirs), and the storage interface
 * has no way to take a MODSEQ from the backend without changing a message.
 * So a reader sees MODSEQs of its own, built from two parts:
 *
 *   reader MODSEQ = backend MODSEQ << SEEN_SHIFT      (owner's changes)
 *                 | a private counter                (the reader's \Seen)
 *
 * A message's MODSEQ for the reader is the larger of its backend MODSEQ
 * shifted and the private MODSEQ the reader's last \Seen change of it got;
 * HIGHESTMODSEQ is the larger of the backend's shifted and the last
 * private one given. A \Seen change by the reader gets
 * max(backend HIGHESTMODSEQ << SEEN_SHIFT, last private) + 1: above all
 * the reader was told, and below the next change of the owner's
 * ((HIGHESTMODSEQ + 1) << SEEN_SHIFT), so the two kinds of change order
 * themselves in one sequence per reader while the owner's MODSEQs and the
 * other readers' stay what they were. CHANGEDSINCE m asks the backend
 * for changes since m >> SEEN_SHIFT and adds the messages whose private
 * MODSEQ is above m; UNCHANGEDSINCE compares the reader's MODSEQ (the
 * backend checks its part, atomically, as UNCHANGEDSINCE m >> SEEN_SHIFT).
 * Dovecot's INDEXPVT keeps a private index with its own modseqs beside the
 * shared one in much the same way; bumping the owner's HIGHESTMODSEQ for
 * each reader's change (the other option) would need a new backend op and
 * would make every owner and reader session fetch changes that are not
 * theirs.
 *
 * What it costs: the private MODSEQs are kept per range of UIDs that got
 * one (gap, length, distance below the last private MODSEQ: 3-15 bytes a
 * range), only while they are above the message's backend MODSEQ (a later
 * change by the owner makes them useless, and the next rebuild drops
 * them), and at most SEEN_MODS_MAX ranges: past that neighbours merge in
 * equal groups with the largest MODSEQ of each, which can make
 * CHANGEDSINCE report a message that did not change (allowed; never one
 * missed). A reader's first MODSEQ
 * after this change is far above what it was told before (the shift): its
 * clients fetch the flags once more. Limits: the backend's MODSEQ must stay
 * below 2^(63 - SEEN_SHIFT) (2^43); a reader gets at most 2^SEEN_SHIFT - 1
 * \Seen changes between two changes of the mailbox by anyone else, past
 * which its STORE is refused (ROOST_ETOOBIG) until the mailbox changes.
 *
 * Ordering. Sessions read the backend, then the set; a change reads the
 * backend's HIGHESTMODSEQ, commits the set, then reads it again: when the
 * owner changed the mailbox in between (its change may have been read by a
 * session that had not seen ours, with a MODSEQ above ours), the change is
 * given a new private MODSEQ above it, SEEN_RETRIES times at most.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"
#include "storage_seen_set.h"

/* The reader's set for owner's canon as stored now. */
static int
seen_read(struct storage *st, const char *owner, const char *canon, const char *reader,
          uint32_t uidvalidity, struct seen_set *s)
{
	char key[SEEN_KEY_MAX + sizeof(SEEN_PREFIX) + 1];
	struct buf v = BUF_INIT(0);
	bool found = false;
	int rc;

	seen_key(reader, key, sizeof(key));
	rc = storage_meta_entry_get(st, owner, canon, key, &v, &found);
	if (rc == 0)
		seen_decode(found ? v.data : NULL, v.len, reader, uidvalidity, s);
	buf_free(&v);
	return rc;
}

/* Set (or clear) MSG_SEEN of each record from s, and give it the reader's
 * MODSEQ (recs hold the backend's). */
static void
overlay(const struct seen_set *s, struct msg_record *recs, size_t n)
{
	size_t r = 0;

	for (size_t i = 0; i < n; i++) {
		while (r < s->n && s->v[r].hi < recs[i].uid)
			r++;
		if (r < s->n && s->v[r].lo <= recs[i].uid)
			recs[i].flags |= MSG_SEEN;
		else
			recs[i].flags &= ~(uint32_t)MSG_SEEN;
		recs[i].modseq = seen_view_modseq(s, recs[i].uid, recs[i].modseq);
	}
}

/* UIDVALIDITY of an open mailbox, read once. */
static int
mb_uidvalidity(struct mailbox *mb, uint32_t *uv_r)
{
	struct mailbox_status status;
	int rc;

	if (mb->seen != NULL && mb->seen->uidvalidity != 0) {
		*uv_r = mb->seen->uidvalidity;
		return 0;
	}
	memset(&status, 0, sizeof(status));
	if ((rc = mb->st->ops->mailbox_status(mb, &status)) != 0)
		return rc;
	*uv_r = status.uidvalidity;
	return 0;
}

/* The set of mb's reader (mb->actor, not NULL) as stored now, into s. */
static int
reader_seen(struct mailbox *mb, struct seen_set *s)
{
	uint32_t uv;
	int rc;

	if ((rc = mb_uidvalidity(mb, &uv)) != 0)
		return rc;
	return seen_read(mb->st, mb->user, mb->name, mb->actor, uv, s);
}

/* Keep s as what mb's session was last told (s is emptied). */
static void
remember(struct mailbox *mb, struct seen_set *s)
{
	if (mb->seen == NULL)
		mb->seen = xcalloc(1, sizeof(*mb->seen));
	seen_clear(mb->seen);
	*mb->seen = *s;
	memset(s, 0, sizeof(*s));
}

int
storage_seen_records(struct mailbox *mb, struct msg_record *recs, size_t n, uint64_t *modseq)
{
	struct seen_set s = {0};
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = reader_seen(mb, &s)) != 0)
		return rc;
	overlay(&s, recs, n);
	if (modseq != NULL)
		*modseq = seen_view_highest(&s, *modseq);
	remember(mb, &s);
	return 0;
}

static int
rec_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct msg_record *)a)->uid, y = ((const struct msg_record *)b)->uid;

	return x < y ? -1 : x > y;
}

static bool
listed(const struct msg_record *recs, size_t n, uint32_t uid)
{
	struct msg_record key = {.uid = uid};

	return n > 0 && bsearch(&key, recs, n, sizeof(*recs), rec_cmp) != NULL;
}

int
storage_seen_changes(struct mailbox *mb, uint64_t since, struct mailbox_changes *ch)
{
	struct seen_set s = {0};
	struct msg_record *recs = NULL;
	size_t n = 0, extra = 0;
	uint64_t modseq;
	bool differ, newer = false;
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = reader_seen(mb, &s)) != 0)
		return rc;
	overlay(&s, ch->changed, ch->n_changed);
	ch->highestmodseq = seen_view_highest(&s, ch->highestmodseq);
	/* the reader changed \Seen in another session: every message whose
	 * \Seen differs from what this one was told is a change (IDLE, NOOP),
	 * and so is every message whose private MODSEQ is above since */
	differ = mb->seen != NULL && !seen_equal(&s, mb->seen);
	for (size_t i = 0; i < s.nm && !newer; i++)
		newer = s.m[i].modseq > since;
	if (!differ && !newer) {
		remember(mb, &s);
		return 0;
	}
	if ((rc = mb->st->ops->records(mb, &recs, &n, &modseq)) != 0) {
		seen_clear(&s);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t uid = recs[i].uid;

		if (!(differ && seen_has(&s, uid) != seen_has(mb->seen, uid)) &&
		    seen_mod_of(&s, uid) <= since)
			continue;
		if (listed(ch->changed, ch->n_changed, uid))
			continue;
		recs[extra++] = recs[i];
	}
	if (extra > 0) {
		overlay(&s, recs, extra);
		ch->changed =
		    xreallocarray(ch->changed, ch->n_changed + extra, sizeof(*ch->changed));
		memcpy(ch->changed + ch->n_changed, recs, extra * sizeof(*recs));
		ch->n_changed += extra;
		qsort(ch->changed, ch->n_changed, sizeof(*ch->changed), rec_cmp);
	}
	free(recs);
	remember(mb, &s);
	return 0;
}

int
storage_seen_unseen(struct mailbox *mb, struct mailbox_status *status)
{
	struct seen_set s = {0};
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t modseq;
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = mb->st->ops->records(mb, &recs, &n, &modseq)) != 0)
		return rc;
	rc = seen_read(mb->st, mb->user, mb->name, mb->actor, status->uidvalidity, &s);
	if (rc == 0) {
		overlay(&s, recs, n);
		status->highestmodseq = seen_view_highest(&s, status->highestmodseq);
	}
	seen_clear(&s);
	status->unseen = 0;
	status->first_unseen_uid = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if ((recs[i].flags & MSG_SEEN) != 0)
			continue;
		status->unseen++;
		if (status->first_unseen_uid == 0)
			status->first_unseen_uid = recs[i].uid;
	}
	free(recs);
	return rc;
}

int
storage_seen_status(struct storage *st, const char *owner, const char *canon, const char *reader,
                    struct mailbox_status *status)
{
	struct mailbox *mb = NULL;
	int rc;

	if ((rc = st->ops->mailbox_open(st, owner, canon, MAILBOX_READONLY, &mb)) != 0)
		return rc;
	mb->st = st;
	mb->user = xstrdup(owner);
	mb->name = xstrdup(canon);
	mb->flags = MAILBOX_READONLY;
	mb->actor = xstrdup(reader);
	mb->view_name = NULL;
	mb->seen = NULL;
	rc = storage_seen_unseen(mb, status);
	storage_seen_free(&mb->seen);
	free(mb->user);
	free(mb->name);
	free(mb->actor);
	st->ops->mailbox_close(mb);
	return rc;
}

/* ---- changes ---- */

static int
apply_change(const uint8_t *old, size_t old_len, struct buf *out, bool *remove, void *arg)
{
	struct seen_change_arg *a = arg;
	struct seen_set s = {0}, *r = &a->result;
	size_t cap = 0, mcap = 0, u = 0;
	uint32_t last = a->n_recs > 0 ? a->recs[a->n_recs - 1].uid : 0;
	uint64_t base, p;
	bool run = false, mrun = false;

	*remove = false;
	seen_decode(old, old_len, a->reader, a->uidvalidity, &s);
	seen_clear(r);
	r->uidvalidity = a->uidvalidity;
	a->n_changed = 0;
	a->modseq = 0;
	/* the private MODSEQ this change gives: above everything the reader
	 * was told, below the owner's next change */
	base = seen_view_highest(&s, a->backend);
	if ((base & SEEN_LOW) == SEEN_LOW) {
		seen_clear(&s);
		return ROOST_ETOOBIG;
	}
	p = base + 1;
	for (size_t i = 0; i < a->n; i++) {
		if (a->force || seen_has(&s, a->uids[i]) != a->seen)
			a->changed[a->n_changed++] = a->uids[i];
	}
	/* runs over the messages that exist: what lies between two seen
	 * ones does not exist and merges them; a private MODSEQ no higher
	 * than the message's own (shifted) tells nothing and goes */
	for (size_t i = 0, c = 0; i < a->n_recs; i++) {
		uint32_t uid = a->recs[i].uid;
		uint64_t ms;
		bool seen, named;

		while (u < a->n && a->uids[u] < uid)
			u++;
		while (c < a->n_changed && a->changed[c] < uid)
			c++;
		named = u < a->n && a->uids[u] == uid;
		seen = named ? a->seen : seen_has(&s, uid);
		if (seen && run)
			r->v[r->n - 1].hi = uid;
		else if (seen)
			seen_range_push(r, &cap, uid, uid);
		run = seen;
		ms = c < a->n_changed && a->changed[c] == uid ? p : seen_mod_of(&s, uid);
		if (ms <= a->recs[i].modseq << SEEN_SHIFT)
			ms = 0;
		if (ms != 0 && mrun && r->m[r->nm - 1].modseq == ms)
			r->m[r->nm - 1].r.hi = uid;
		else if (ms != 0)
			seen_mod_push(r, &mcap, uid, uid, ms);
		mrun = ms != 0;
	}
	/* UIDs newer than the records read (appended meanwhile) keep theirs,
	 * and so do the ones this change names there (an append's own) */
	for (size_t i = 0; i < s.n; i++) {
		if (s.v[i].hi > last)
			seen_range_push(r, &cap, s.v[i].lo > last ? s.v[i].lo : last + 1,
			                s.v[i].hi);
	}
	for (size_t i = 0; i < s.nm; i++) {
		if (s.m[i].r.hi > last)
			seen_mod_push(r, &mcap, s.m[i].r.lo > last ? s.m[i].r.lo : last + 1,
			              s.m[i].r.hi, s.m[i].modseq);
	}
	for (; u < a->n; u++) {
		if (a->uids[u] > last && a->seen)
			seen_range_push(r, &cap, a->uids[u], a->uids[u]);
	}
	for (size_t c = 0; c < a->n_changed; c++) {
		if (a->changed[c] > last)
			seen_mod_push(r, &mcap, a->changed[c], a->changed[c], p);
	}
	r->last = s.last;
	if (a->n_changed > 0) {
		r->last = p;
		a->modseq = p;
	}
	seen_clear(&s);
	seen_normalize(r);
	/* kept even when nothing is seen: the last private MODSEQ must not
	 * go back while it is above the backend's */
	if (r->n == 0 && r->nm == 0 && (r->last >> SEEN_SHIFT) < a->backend)
		*remove = true;
	else
		seen_encode(r, a->reader, out);
	return 0;
}

/* Several readers' changes of one record in one update (a carry): with
 * lenient, a reader whose set cannot take its change keeps its set as it
 * was (failed set) and the others go on. */
struct change_many {
	struct seen_change_arg *a;
	bool lenient;
};

static int
apply_many(size_t i, const uint8_t *old, size_t old_len, struct buf *out, bool *remove, void *arg)
{
	struct change_many *m = arg;
	struct seen_change_arg *a = &m->a[i];
	int rc = apply_change(old, old_len, out, remove, a);

	if (rc == 0 && out->len <= STORAGE_METADATA_MAX_VALUE)
		return 0;
	if (!m->lenient)
		return rc != 0 ? rc : ROOST_ETOOBIG;
	buf_reset(out);
	*remove = old == NULL;
	if (old != NULL)
		buf_append(out, old, old_len);
	seen_clear(&a->result);
	a->n_changed = 0;
	a->modseq = 0;
	a->failed = true;
	return 0;
}

/* Apply the changes a[0..n) (each its reader's, keyed by keys[i]) to the
 * record of owner's canon in one update. Then read the backend's
 * HIGHESTMODSEQ again and give the changes new private MODSEQs while the
 * owner changed the mailbox in between (see Ordering above). */
int
seen_change_many(struct storage *st, const char *owner, const char *canon, const char *const *keys,
                 struct seen_change_arg *a, size_t n, bool lenient)
{
	struct change_many m = {a, lenient};
	const uint32_t **uids = xcalloc(n + 1, sizeof(*uids));
	size_t *nu = xcalloc(n + 1, sizeof(*nu));
	int rc;

	for (size_t i = 0; i < n; i++) {
		a[i].changed = xcalloc(a[i].n + 1, sizeof(*a[i].changed));
		uids[i] = a[i].uids;
		nu[i] = a[i].n;
	}
	rc = storage_meta_entries_update(st, owner, canon, keys, n, apply_many, &m);
	for (int tries = 0; rc == 0; tries++) {
		struct mailbox_status ms = {0};
		uint64_t low = UINT64_MAX;

		for (size_t i = 0; i < n; i++) {
			if (a[i].n_changed > 0 && (a[i].modseq >> SEEN_SHIFT) < low)
				low = a[i].modseq >> SEEN_SHIFT;
		}
		if (low == UINT64_MAX || st->ops->status(st, owner, canon, &ms) != 0 ||
		    ms.highestmodseq <= low)
			break;
		if (tries == SEEN_RETRIES) {
			log_warn("event=seen_modseq_race user=%s mailbox=%s",
			         LOG_QUOTE(a[0].reader), LOG_QUOTE(canon));
			break;
		}
		/* again over what changed, with the MODSEQ read now */
		for (size_t i = 0; i < n; i++) {
			a[i].backend = ms.highestmodseq;
			a[i].force = true;
			a[i].n = a[i].n_changed;
			a[i].uids = a[i].n > 0
			                ? xmemdup(a[i].changed, a[i].n * sizeof(*a[i].changed))
			                : NULL;
		}
		rc = storage_meta_entries_update(st, owner, canon, keys, n, apply_many, &m);
		for (size_t i = 0; i < n; i++) {
			free((uint32_t *)a[i].uids);
			a[i].uids = uids[i];
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(a[i].changed);
		a[i].changed = NULL;
		a[i].uids = uids[i];
		a[i].n = nu[i];
	}
	free(uids);
	free(nu);
	return rc;
}

/* Give uids (ascending) seen (or not) in reader's set for owner's canon,
 * over the existing messages recs (NULL: only new ones named), backend the
 * backend's HIGHESTMODSEQ read before; *result_r (may be NULL) gets the set
 * as stored. */
static int
seen_change(struct storage *st, const char *owner, const char *canon, const char *reader,
            uint32_t uidvalidity, uint64_t backend, const struct msg_record *recs, size_t n_recs,
            const uint32_t *uids, size_t n, bool seen, struct seen_set *result_r)
{
	char key[SEEN_KEY_MAX + sizeof(SEEN_PREFIX) + 1];
	const char *keys[1] = {key};
	struct seen_change_arg a = {.reader = reader,
	                            .uidvalidity = uidvalidity,
	                            .backend = backend,
	                            .recs = recs,
	                            .n_recs = n_recs,
	                            .uids = uids,
	                            .n = n,
	                            .seen = seen};
	int rc;

	seen_key(reader, key, sizeof(key));
	rc = seen_change_many(st, owner, canon, keys, &a, 1, false);
	if (rc == 0 && result_r != NULL) {
		seen_clear(result_r);
		*result_r = a.result;
	} else {
		seen_clear(&a.result);
	}
	return rc;
}

int
storage_seen_add(struct storage *st, const char *owner, const char *canon, const char *reader,
                 uint32_t uidvalidity, const uint32_t *uids, size_t n)
{
	struct mailbox_status ms = {0};
	int rc;

	if (n == 0)
		return 0;
	if ((rc = st->ops->status(st, owner, canon, &ms)) != 0)
		return rc;
	return seen_change(st, owner, canon, reader, uidvalidity, ms.highestmodseq, NULL, 0, uids,
	                   n, true, NULL);
}

/* backend store of uids[0..n) with req, the UNCHANGEDSINCE refusals
 * appended to mod (ascending merge left to the caller) */
static int
backend_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
              struct store_result *mod)
{
	struct store_result m = {0};
	int rc;

	if (n == 0 || (req->mode != STORE_REPLACE && req->flags == 0 && req->n_keywords == 0))
		return 0;
	rc = mb->st->ops->store(mb, uids, n, req, &m);
	for (size_t i = 0; rc == 0 && i < m.n_modified; i++)
		storage_store_result_add(mod, m.modified[i]);
	storage_store_result_free(&m);
	return rc;
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The backend refused uids[0..n) (UNCHANGEDSINCE: the owner changed them
 * between our check and its store) after their \Seen was changed: put
 * their \Seen back as it was in old. */
static void
seen_undo(struct mailbox *mb, uint32_t uv, uint64_t backend, const struct msg_record *recs,
          size_t n_recs, const struct seen_set *old, uint32_t *uids, size_t n, struct seen_set *now)
{
	uint32_t *on = xcalloc(n + 1, sizeof(*on)), *off = xcalloc(n + 1, sizeof(*off));
	size_t n_on = 0, n_off = 0;
	int rc = 0;

	qsort(uids, n, sizeof(*uids), uid_cmp);
	for (size_t i = 0; i < n; i++) {
		if (seen_has(old, uids[i]))
			on[n_on++] = uids[i];
		else
			off[n_off++] = uids[i];
	}
	if (n_on > 0)
		rc = seen_change(mb->st, mb->user, mb->name, mb->actor, uv, backend, recs, n_recs,
		                 on, n_on, true, now);
	if (rc == 0 && n_off > 0)
		rc = seen_change(mb->st, mb->user, mb->name, mb->actor, uv, backend, recs, n_recs,
		                 off, n_off, false, now);
	if (rc != 0)
		log_warn("event=seen_error op=store_undo user=%s mailbox=%s err=%s",
		         LOG_QUOTE(mb->actor), LOG_QUOTE(mb->name), roost_strerror(rc));
	free(on);
	free(off);
}

int
storage_seen_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
                   struct store_result *res)
{
	struct msg_record *recs = NULL;
	uint32_t *todo = NULL, *with = NULL, *without = NULL, uv;
	size_t n_recs = 0, n_todo = 0, n_with = 0, n_without = 0, r = 0, n_checked;
	struct store_result mod = {0};
	struct store_req rest = *req;
	struct seen_set now = {0}, cur = {0};
	uint64_t backend;
	bool touch = req->mode == STORE_REPLACE || (req->flags & MSG_SEEN) != 0, seen_done = false;
	bool seen =
	    req->mode == STORE_REPLACE ? (req->flags & MSG_SEEN) != 0 : req->mode == STORE_ADD;
	int rc;

	if ((rc = mb_uidvalidity(mb, &uv)) != 0 ||
	    (rc = mb->st->ops->records(mb, &recs, &n_recs, &backend)) != 0)
		return rc;
	/* the set as it is: the reader's MODSEQs (UNCHANGEDSINCE) and \Seen
	 * to put back if the backend refuses a message after all */
	if ((rc = seen_read(mb->st, mb->user, mb->name, mb->actor, uv, &cur)) != 0)
		goto out;
	todo = xcalloc(n + 1, sizeof(*todo));
	with = xcalloc(n + 1, sizeof(*with));
	without = xcalloc(n + 1, sizeof(*without));
	for (size_t i = 0; i < n; i++) {
		while (r < n_recs && recs[r].uid < uids[i])
			r++;
		if (r == n_recs || recs[r].uid != uids[i])
			continue; /* gone: skipped */
		if (req->unchanged_since != 0 &&
		    seen_view_modseq(&cur, uids[i], recs[r].modseq) > req->unchanged_since) {
			storage_store_result_add(&mod, uids[i]);
			continue;
		}
		todo[n_todo++] = uids[i];
		/* a replace keeps the owner's \Seen as it is */
		if ((recs[r].flags & MSG_SEEN) != 0)
			with[n_with++] = uids[i];
		else
			without[n_without++] = uids[i];
	}
	n_checked = mod.n_modified;
	rest.flags &= ~(uint32_t)MSG_SEEN;
	/* the backend checks its own part of the reader's MODSEQ, atomically */
	rest.unchanged_since = storage_seen_backend_modseq(req->unchanged_since);
	if (req->unchanged_since != 0 && rest.unchanged_since == 0)
		n_todo = n_with = n_without = 0; /* below every message's (never happens) */
	/* \Seen first: when the set cannot take it (its bound), nothing of
	 * the STORE is done */
	if (touch && n_todo > 0) {
		rc = seen_change(mb->st, mb->user, mb->name, mb->actor, uv, backend, recs, n_recs,
		                 todo, n_todo, seen, &now);
		seen_done = rc == 0;
	}
	if (rc == 0 && req->mode != STORE_REPLACE) {
		rc = backend_store(mb, todo, n_todo, &rest, &mod);
	} else if (rc == 0) {
		rc = backend_store(mb, without, n_without, &rest, &mod);
		rest.flags |= MSG_SEEN;
		if (rc == 0)
			rc = backend_store(mb, with, n_with, &rest, &mod);
	}
	if (seen_done && rc != 0)
		seen_undo(mb, uv, backend, recs, n_recs, &cur, todo, n_todo, &now);
	else if (seen_done && mod.n_modified > n_checked)
		seen_undo(mb, uv, backend, recs, n_recs, &cur, mod.modified + n_checked,
		          mod.n_modified - n_checked, &now);
	if (rc == 0 && mod.n_modified > 1)
		qsort(mod.modified, mod.n_modified, sizeof(*mod.modified), uid_cmp);
	if (rc == 0) {
		*res = mod;
		mod = (struct store_result){0};
	}
	/* the session applies its own change: what it knows now */
	if (rc == 0 && touch && n_todo > 0 && mb->seen != NULL)
		remember(mb, &now);
out:
	seen_clear(&now);
	seen_clear(&cur);
	storage_store_result_free(&mod);
	free(without);
	free(with);
	free(todo);
	free(recs);
	return rc;
}
