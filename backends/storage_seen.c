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
 * a set starts with nothing seen (as Dovecot's private index does).
 *
 * Where it is kept. An entry of the owner's mailbox metadata record
 * (storage_metadata.c), "/seen/<reader>" ("/seen/#<hash>" for names past
 * SEEN_KEY_MAX bytes, the name then kept in the value and compared), which
 * no client reaches through METADATA: it goes with the mailbox when it is
 * deleted and follows it when renamed, needs no new backend op, and is
 * changed under the record's lock like the ACL beside it. The value:
 * "S1", UIDVALIDITY (4 bytes, big-endian: a set of another UIDVALIDITY is
 * empty), the count of ranges and the ranges of seen UIDs as varints (gap
 * from the previous range's end, then length less one), then the reader's
 * name.
 *
 * Exact and bounded. Ranges are rebuilt at each change over the UIDs that
 * exist at that moment: UIDs between two seen messages that no longer
 * exist (expunged) are taken as seen, so runs of seen messages merge across
 * expunges and a range never needs more than one byte per existing
 * message: a set costs 2-10 bytes per run of seen messages (0 per message
 * inside a run; a reader who has read everything but new mail has one
 * range), at worst (every other message seen) about 1 byte per message.
 * The value is bounded by STORAGE_METADATA_MAX_VALUE (16 KiB): a change
 * that would pass it is refused (ROOST_ETOOBIG) and nothing changes; the
 * entries count towards the owner's metadata limits of the mailbox.
 *
 * An open mailbox keeps the set it last gave its session (mb->seen, 8
 * bytes a range): mailbox_changes_since() compares the stored set with it
 * and reports the messages whose \Seen the reader changed elsewhere (its
 * other sessions), so IDLE and NOOP of every session of the reader show
 * them. A reader's change wakes the mailbox's watchers like any change;
 * the owner's sessions and other readers find nothing changed for them.
 *
 * MODSEQ (CONDSTORE). A reader's \Seen change does not bump the owner's
 * MODSEQ (it is not a change of the owner's mailbox): MODSEQ and
 * HIGHESTMODSEQ stay the mailbox's, so FETCH CHANGEDSINCE does not list a
 * message whose only change is the reader's \Seen made by another session
 * (the session that made it gets its FETCH, and IDLE/NOOP tell the others
 * through the comparison above). UNCHANGEDSINCE is checked against the
 * mailbox's MODSEQ for \Seen too.
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

#define SEEN_PREFIX "/seen/"
#define SEEN_KEY_MAX 240 /* reader names up to this many bytes are the key itself */
#define SEEN_MAGIC "S1"

struct seen_range {
	uint32_t lo, hi; /* inclusive */
};

struct seen_set {
	struct seen_range *v;
	size_t n;
	uint32_t uidvalidity;
};

void
storage_seen_free(struct seen_set **sp)
{
	struct seen_set *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	free(s->v);
	free(s);
}

static void
seen_key(const char *reader, char *out, size_t size)
{
	if (strlen(reader) <= SEEN_KEY_MAX)
		snprintf(out, size, SEEN_PREFIX "%s", reader);
	else
		snprintf(out, size, SEEN_PREFIX "#%016llx", (unsigned long long)hash_str64(reader));
}

static void
range_push(struct seen_set *s, size_t *cap, uint32_t lo, uint32_t hi)
{
	if (s->n > 0 && lo >= s->v[s->n - 1].lo && s->v[s->n - 1].hi + 1 >= lo) {
		if (hi > s->v[s->n - 1].hi)
			s->v[s->n - 1].hi = hi;
		return;
	}
	if (s->n == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		s->v = xreallocarray(s->v, *cap, sizeof(*s->v));
	}
	s->v[s->n].lo = lo;
	s->v[s->n].hi = hi;
	s->n++;
}

static int
range_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct seen_range *)a)->lo, y = ((const struct seen_range *)b)->lo;

	return x < y ? -1 : x > y;
}

/* Ascending and merged: the ranges kept above the records read and the
 * UIDs a change names there may interleave (two sessions appending). */
static void
seen_normalize(struct seen_set *s)
{
	size_t k = 0;

	if (s->n < 2)
		return;
	qsort(s->v, s->n, sizeof(*s->v), range_cmp);
	for (size_t i = 1; i < s->n; i++) {
		if (s->v[i].lo <= s->v[k].hi || s->v[i].lo - s->v[k].hi == 1) {
			if (s->v[i].hi > s->v[k].hi)
				s->v[k].hi = s->v[i].hi;
		} else {
			s->v[++k] = s->v[i];
		}
	}
	s->n = k + 1;
}

static bool
seen_has(const struct seen_set *s, uint32_t uid)
{
	size_t lo = 0, hi = s != NULL ? s->n : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (uid < s->v[mid].lo)
			hi = mid;
		else if (uid > s->v[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool
seen_equal(const struct seen_set *a, const struct seen_set *b)
{
	return a->n == b->n && a->uidvalidity == b->uidvalidity &&
	       (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

static void
varint_put(struct buf *b, uint32_t v)
{
	while (v >= 0x80) {
		buf_append_byte(b, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	buf_append_byte(b, (uint8_t)v);
}

static bool
varint_get(const uint8_t *p, size_t len, size_t *off, uint32_t *v_r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 35; shift += 7) {
		uint8_t c;

		if (*off >= len)
			return false;
		c = p[(*off)++];
		v |= (uint64_t)(c & 0x7f) << shift;
		if ((c & 0x80) == 0) {
			if (v > UINT32_MAX)
				return false;
			*v_r = (uint32_t)v;
			return true;
		}
	}
	return false;
}

static void
seen_encode(const struct seen_set *s, const char *reader, struct buf *out)
{
	uint8_t uv[4] = {(uint8_t)(s->uidvalidity >> 24), (uint8_t)(s->uidvalidity >> 16),
	                 (uint8_t)(s->uidvalidity >> 8), (uint8_t)s->uidvalidity};
	uint32_t prev = 0;

	buf_append_str(out, SEEN_MAGIC);
	buf_append(out, uv, 4);
	varint_put(out, (uint32_t)s->n);
	for (size_t i = 0; i < s->n; i++) {
		varint_put(out, s->v[i].lo - prev);
		varint_put(out, s->v[i].hi - s->v[i].lo);
		prev = s->v[i].hi;
	}
	buf_append_str(out, reader);
}

/* The set in data[0..len) when it is reader's and of uidvalidity; else
 * (absent, another UIDVALIDITY, another reader's under a hashed key, not
 * decodable) the empty set. */
static void
seen_decode(const uint8_t *data, size_t len, const char *reader, uint32_t uidvalidity,
            struct seen_set *s)
{
	size_t off = 6, cap = 0;
	uint32_t count, prev = 0, uv;

	free(s->v);
	s->v = NULL;
	s->n = 0;
	s->uidvalidity = uidvalidity;
	if (data == NULL || len < 6 || memcmp(data, SEEN_MAGIC, 2) != 0)
		return;
	uv = (uint32_t)data[2] << 24 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 8 | data[5];
	if (uv != uidvalidity || !varint_get(data, len, &off, &count) || count > len)
		return;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t gap, span;

		if (!varint_get(data, len, &off, &gap) || !varint_get(data, len, &off, &span) ||
		    gap > UINT32_MAX - prev || (i > 0 && gap == 0) ||
		    span > UINT32_MAX - (prev + gap))
			goto bad;
		range_push(s, &cap, prev + gap, prev + gap + span);
		prev += gap + span;
	}
	if (len - off != strlen(reader) || memcmp(data + off, reader, len - off) != 0)
		goto bad;
	if (s->n > 0 && s->v[0].lo == 0)
		goto bad;
	return;
bad:
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

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

/* Set (or clear) MSG_SEEN of each record from s. */
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

/* Keep s as what mb's session was last told. */
static void
remember(struct mailbox *mb, struct seen_set *s)
{
	if (mb->seen == NULL)
		mb->seen = xcalloc(1, sizeof(*mb->seen));
	free(mb->seen->v);
	*mb->seen = *s;
	s->v = NULL;
	s->n = 0;
}

int
storage_seen_records(struct mailbox *mb, struct msg_record *recs, size_t n)
{
	struct seen_set s = {0};
	uint32_t uv;
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = mb_uidvalidity(mb, &uv)) != 0 ||
	    (rc = seen_read(mb->st, mb->user, mb->name, mb->actor, uv, &s)) != 0)
		return rc;
	overlay(&s, recs, n);
	remember(mb, &s);
	return 0;
}

static int
rec_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct msg_record *)a)->uid, y = ((const struct msg_record *)b)->uid;

	return x < y ? -1 : x > y;
}

int
storage_seen_changes(struct mailbox *mb, struct mailbox_changes *ch)
{
	struct seen_set s = {0};
	struct msg_record *recs = NULL;
	size_t n = 0, extra = 0;
	uint64_t modseq;
	uint32_t uv;
	int rc;

	if (mb->actor == NULL)
		return 0;
	if ((rc = mb_uidvalidity(mb, &uv)) != 0 ||
	    (rc = seen_read(mb->st, mb->user, mb->name, mb->actor, uv, &s)) != 0)
		return rc;
	overlay(&s, ch->changed, ch->n_changed);
	if (mb->seen == NULL || seen_equal(&s, mb->seen)) {
		/* nothing changed by the reader elsewhere (or a session that
		 * never read the records: nothing to compare with) */
		remember(mb, &s);
		return 0;
	}
	/* the reader changed \Seen in another session: every message whose
	 * \Seen differs from what this one was told is a change */
	if ((rc = mb->st->ops->records(mb, &recs, &n, &modseq)) != 0) {
		free(s.v);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t uid = recs[i].uid;
		bool listed = false;

		if (seen_has(&s, uid) == seen_has(mb->seen, uid))
			continue;
		for (size_t j = 0; j < ch->n_changed && !listed; j++)
			listed = ch->changed[j].uid == uid;
		if (listed)
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
	if (rc == 0)
		overlay(&s, recs, n);
	free(s.v);
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

struct change_arg {
	const char *reader;
	uint32_t uidvalidity;
	/* the messages as they exist, ascending, and the new \Seen of some */
	const struct msg_record *recs;
	size_t n_recs;
	const uint32_t *uids; /* ascending */
	size_t n;
	bool seen; /* what uids get */
	struct seen_set result;
};

static int
apply_change(const uint8_t *old, size_t old_len, struct buf *out, bool *remove, void *arg)
{
	struct change_arg *a = arg;
	struct seen_set s = {0}, *r = &a->result;
	size_t cap = 0, u = 0;
	uint32_t last = a->n_recs > 0 ? a->recs[a->n_recs - 1].uid : 0;
	bool run = false;

	*remove = false;
	seen_decode(old, old_len, a->reader, a->uidvalidity, &s);
	free(r->v);
	r->v = NULL;
	r->n = 0;
	r->uidvalidity = a->uidvalidity;
	/* runs over the messages that exist: what lies between two seen
	 * ones does not exist and merges them */
	for (size_t i = 0; i < a->n_recs; i++) {
		uint32_t uid = a->recs[i].uid;
		bool seen;

		while (u < a->n && a->uids[u] < uid)
			u++;
		seen = u < a->n && a->uids[u] == uid ? a->seen : seen_has(&s, uid);
		if (seen && run)
			r->v[r->n - 1].hi = uid;
		else if (seen)
			range_push(r, &cap, uid, uid);
		run = seen;
	}
	/* UIDs newer than the records read (appended meanwhile) keep theirs,
	 * and so do the ones this change names there (an append's own) */
	for (size_t i = 0; i < s.n; i++) {
		if (s.v[i].hi > last)
			range_push(r, &cap, s.v[i].lo > last ? s.v[i].lo : last + 1, s.v[i].hi);
	}
	for (; u < a->n; u++) {
		if (a->uids[u] > last && a->seen)
			range_push(r, &cap, a->uids[u], a->uids[u]);
	}
	free(s.v);
	seen_normalize(r);
	if (r->n == 0)
		*remove = true;
	else
		seen_encode(r, a->reader, out);
	return 0;
}

/* Give uids (ascending) seen (or not) in reader's set for owner's canon,
 * over the existing messages recs; *result_r (may be NULL) gets the set
 * as stored. */
static int
seen_change(struct storage *st, const char *owner, const char *canon, const char *reader,
            uint32_t uidvalidity, const struct msg_record *recs, size_t n_recs,
            const uint32_t *uids, size_t n, bool seen, struct seen_set *result_r)
{
	char key[SEEN_KEY_MAX + sizeof(SEEN_PREFIX) + 1];
	struct change_arg a = {reader, uidvalidity, recs, n_recs, uids, n, seen, {0}};
	int rc;

	seen_key(reader, key, sizeof(key));
	rc = storage_meta_entry_update(st, owner, canon, key, apply_change, &a);
	if (rc == 0 && result_r != NULL) {
		free(result_r->v);
		*result_r = a.result;
	} else {
		free(a.result.v);
	}
	return rc;
}

int
storage_seen_add(struct storage *st, const char *owner, const char *canon, const char *reader,
                 uint32_t uidvalidity, const uint32_t *uids, size_t n)
{
	if (n == 0)
		return 0;
	return seen_change(st, owner, canon, reader, uidvalidity, NULL, 0, uids, n, true, NULL);
}

/* backend store of uids[0..n) with req, the UNCHANGEDSINCE refusals
 * appended to *mod (ascending merge left to the caller) */
static int
backend_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
              uint32_t **mod, size_t *n_mod)
{
	uint32_t *m = NULL;
	size_t nm = 0;
	int rc;

	if (n == 0 || (req->mode != STORE_REPLACE && req->flags == 0 && req->n_keywords == 0))
		return 0;
	rc = mb->st->ops->store(mb, uids, n, req, &m, &nm);
	if (rc == 0 && nm > 0) {
		*mod = xreallocarray(*mod, *n_mod + nm, sizeof(**mod));
		memcpy(*mod + *n_mod, m, nm * sizeof(*m));
		*n_mod += nm;
	}
	free(m);
	return rc;
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int
storage_seen_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
                   uint32_t **modified_r, size_t *n_modified_r)
{
	struct msg_record *recs = NULL;
	uint32_t *todo = NULL, *with = NULL, *without = NULL, *mod = NULL, uv;
	size_t n_recs = 0, n_todo = 0, n_with = 0, n_without = 0, n_mod = 0, r = 0;
	struct store_req rest = *req;
	struct seen_set now = {0};
	uint64_t modseq;
	bool seen =
	    req->mode == STORE_REPLACE ? (req->flags & MSG_SEEN) != 0 : req->mode == STORE_ADD;
	int rc;

	if ((rc = mb_uidvalidity(mb, &uv)) != 0 ||
	    (rc = mb->st->ops->records(mb, &recs, &n_recs, &modseq)) != 0)
		return rc;
	todo = xcalloc(n + 1, sizeof(*todo));
	with = xcalloc(n + 1, sizeof(*with));
	without = xcalloc(n + 1, sizeof(*without));
	mod = xcalloc(n + 1, sizeof(*mod));
	for (size_t i = 0; i < n; i++) {
		while (r < n_recs && recs[r].uid < uids[i])
			r++;
		if (r == n_recs || recs[r].uid != uids[i])
			continue; /* gone: skipped */
		if (req->unchanged_since != 0 && recs[r].modseq > req->unchanged_since) {
			mod[n_mod++] = uids[i];
			continue;
		}
		todo[n_todo++] = uids[i];
		/* a replace keeps the owner's \Seen as it is */
		if ((recs[r].flags & MSG_SEEN) != 0)
			with[n_with++] = uids[i];
		else
			without[n_without++] = uids[i];
	}
	rest.flags &= ~(uint32_t)MSG_SEEN;
	if (n_todo > 0)
		rc = seen_change(mb->st, mb->user, mb->name, mb->actor, uv, recs, n_recs, todo,
		                 n_todo, seen, &now);
	if (rc == 0 && req->mode != STORE_REPLACE) {
		rc = backend_store(mb, todo, n_todo, &rest, &mod, &n_mod);
	} else if (rc == 0) {
		rc = backend_store(mb, without, n_without, &rest, &mod, &n_mod);
		rest.flags |= MSG_SEEN;
		if (rc == 0)
			rc = backend_store(mb, with, n_with, &rest, &mod, &n_mod);
	}
	if (rc == 0 && n_mod > 1)
		qsort(mod, n_mod, sizeof(*mod), uid_cmp);
	if (rc == 0 && n_mod > 0) {
		*modified_r = mod;
		*n_modified_r = n_mod;
		mod = NULL;
	}
	/* the session applies its own change: what it knows now */
	if (rc == 0 && n_todo > 0 && mb->seen != NULL)
		remember(mb, &now);
	free(now.v);
	free(mod);
	free(without);
	free(with);
	free(todo);
	free(recs);
	return rc;
}
