/*
 * The storage wrapper's operations on an open mailbox (roost/storage.h):
 * mailbox_open() and mailbox_close(), reading (status, records, keywords,
 * messages, the cache), writing (append, store, expunge, copy and move,
 * across users by copy_across()) and changes since a modseq. As in
 * storage.c, each function checks its input and the reader's rights
 * before any backend runs, and wakes the watchers after a change. Split
 * from storage.c, which holds the registry and the per-user operations.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"

int
mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
             struct mailbox **mb_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct mailbox *mb = NULL;
	struct acl_target t;
	int rc;

	*mb_r = NULL;
	if ((flags & ~(unsigned)MAILBOX_READONLY) != 0)
		return ROOST_EINVAL;
	if ((rc = storage_user_name_canon(user, name, canon)) != 0)
		return rc;
	if ((rc = storage_acl_resolve(st, user, canon, ACL_READ, &t)) != 0)
		return rc;
	if (t.foreign) {
		/* nothing it may change: read-only, as RFC 4314 4 asks of SELECT */
		if ((t.rights & (ACL_SEEN | ACL_WRITE | ACL_INSERT | ACL_DELETED | ACL_EXPUNGE)) ==
		    0)
			flags |= MAILBOX_READONLY;
		if ((rc = st->ops->mailbox_open(st, t.owner, t.name, flags, &mb)) != 0)
			return rc;
	} else {
		rc = st->ops->mailbox_open(st, user, t.name, flags, &mb);
		if (storage_user_set_up(st, user, t.name, rc))
			rc = st->ops->mailbox_open(st, user, t.name, flags, &mb);
		if (rc != 0)
			return rc;
	}
	mb->st = st;
	mb->user = xstrdup(t.owner);
	mb->name = xstrdup(t.name);
	mb->flags = flags;
	mb->actor = t.foreign ? xstrdup(user) : NULL;
	mb->view_name = t.foreign ? xstrdup(canon) : NULL;
	mb->rights = t.rights;
	mb->seen = NULL;
	*mb_r = mb;
	return 0;
}

void
mailbox_close(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;
	char *user, *name, *actor, *view_name;

	if (mb == NULL)
		return;
	*mbp = NULL;
	user = mb->user;
	name = mb->name;
	actor = mb->actor;
	view_name = mb->view_name;
	storage_seen_free(&mb->seen);
	mb->st->ops->mailbox_close(mb);
	free(user);
	free(name);
	free(actor);
	free(view_name);
}

const char *
mailbox_name(const struct mailbox *mb)
{
	return mb->view_name != NULL ? mb->view_name : mb->name;
}

int
mailbox_status(struct mailbox *mb, struct mailbox_status *status_r)
{
	int rc;

	memset(status_r, 0, sizeof(*status_r));
	if ((rc = mb->st->ops->mailbox_status(mb, status_r)) != 0)
		return rc;
	return storage_seen_unseen(mb, status_r);
}

int
mailbox_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	int rc;

	*recs_r = NULL;
	*n_r = 0;
	if ((rc = mb->st->ops->records(mb, recs_r, n_r, modseq_r)) != 0)
		return rc;
	if ((rc = storage_seen_records(mb, *recs_r, *n_r, modseq_r)) != 0) {
		free(*recs_r);
		*recs_r = NULL;
		*n_r = 0;
	}
	return rc;
}

int
mailbox_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	return mb->st->ops->keywords(mb, names_r, n_r);
}

int
mailbox_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r)
{
	uint32_t next;

	return mb->st->ops->claim_recent(mb, first_recent_uid_r, next_r != NULL ? next_r : &next);
}

bool
mailbox_claim_later(struct mailbox *mb)
{
	return mb->st->ops->claim_later != NULL && mb->st->ops->claim_later(mb);
}

int
mailbox_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	memset(view_r, 0, sizeof(*view_r));
	if (uid == 0)
		return ROOST_ENOTFOUND;
	return mb->st->ops->read(mb, uid, view_r);
}

void
msg_view_release(struct msg_view *view)
{
	if (view == NULL || view->release == NULL)
		return;
	view->release(view);
	view->release = NULL;
	view->data = NULL;
	view->len = 0;
}

int
mailbox_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	if (uid == 0)
		return ROOST_ENOTFOUND;
	return mb->st->ops->cache_get(mb, uid, out);
}

#define CACHE_MAX (16u << 20)

/* Allowed on read-only mailboxes: the cache is derived data, not state. */
int
mailbox_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	if (uid == 0 || (len > 0 && data == NULL))
		return ROOST_EINVAL;
	if (len > CACHE_MAX)
		return ROOST_ETOOBIG;
	return mb->st->ops->cache_set(mb, uid, data, len);
}

static int
writable(const struct mailbox *mb)
{
	return (mb->flags & MAILBOX_READONLY) != 0 ? ROOST_EPERM : 0;
}

int
mailbox_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	struct storage_quota before;
	struct msg_input m;
	uint32_t uid, *up = uid_r != NULL ? uid_r : &uid;
	bool reader_seen = false;
	int rc;

	if ((rc = writable(mb)) != 0 || (rc = storage_msg_input_check(mb->st, msg)) != 0 ||
	    (rc = storage_acl_mailbox_need(mb, ACL_INSERT)) != 0 ||
	    (rc = storage_quota_admit(mb->st, mb->user, msg->len, 1, &before)) != 0)
		return rc;
	if (mb->actor != NULL) {
		m = *msg;
		m.flags &= storage_flags_allowed(mb->rights);
		if ((mb->rights & ACL_WRITE) == 0)
			m.n_keywords = 0;
		/* \Seen is the appending reader's own */
		reader_seen = (m.flags & MSG_SEEN) != 0;
		m.flags &= ~(uint32_t)MSG_SEEN;
		msg = &m;
	}
	/* uid_r may be NULL (storage.h); backends always get somewhere to write */
	if ((rc = mb->st->ops->append(mb, msg, up)) == 0) {
		struct mailbox_status ms = {0};

		if (reader_seen && (mb->st->ops->mailbox_status(mb, &ms) != 0 ||
		                    storage_seen_add(mb->st, mb->user, mb->name, mb->actor,
		                                     ms.uidvalidity, up, 1) != 0))
			log_warn("event=seen_error op=append user=%s mailbox=%s",
			         LOG_QUOTE(mb->actor), LOG_QUOTE(mb->name));
		storage_notify(mb->st, mb->user, mb->name);
		storage_quota_warn(mb->st, mb->user, &before, msg->len);
	}
	return rc;
}

int
mailbox_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
              uint32_t **modified_r, size_t *n_modified_r)
{
	struct store_result res = {0};
	int rc;

	*modified_r = NULL;
	*n_modified_r = 0;
	if ((rc = writable(mb)) != 0)
		return rc;
	if (req == NULL || (req->flags & ~MSG_FLAGS_ALL) != 0 ||
	    (req->mode != STORE_ADD && req->mode != STORE_REMOVE && req->mode != STORE_REPLACE))
		return ROOST_EINVAL;
	if ((rc = storage_keywords_check(req->keywords, req->n_keywords)) != 0 ||
	    (rc = storage_uids_check(uids, n)) != 0)
		return rc;
	if (n == 0)
		return 0;
	if (mb->actor != NULL) {
		/* what the user may not change is left out; a replace changes
		 * every flag, so it needs every right */
		unsigned need = req->mode == STORE_REPLACE ? ACL_SEEN | ACL_DELETED | ACL_WRITE : 0;
		uint32_t allowed;

		if ((rc = storage_acl_mailbox_need(mb, need)) != 0)
			return rc;
		allowed = storage_flags_allowed(mb->rights);
		if (req->mode != STORE_REPLACE &&
		    ((req->flags & ~allowed) != 0 ||
		     (req->n_keywords > 0 && (mb->rights & ACL_WRITE) == 0))) {
			struct store_req r = *req;

			r.flags &= allowed;
			if ((mb->rights & ACL_WRITE) == 0)
				r.n_keywords = 0;
			if (r.flags == 0 && r.n_keywords == 0)
				return (mb->rights & ACL_LOOKUP) != 0 ? ROOST_ENOACCESS
				                                      : ROOST_ENOTFOUND;
			if ((r.flags & MSG_SEEN) != 0 || r.unchanged_since != 0)
				rc = storage_seen_store(mb, uids, n, &r, &res);
			else
				rc = mb->st->ops->store(mb, uids, n, &r, &res);
			goto out;
		}
	}
	/* \Seen is the reader's, and so are its MODSEQs (UNCHANGEDSINCE) */
	if (mb->actor != NULL && (req->mode == STORE_REPLACE || (req->flags & MSG_SEEN) != 0 ||
	                          req->unchanged_since != 0))
		rc = storage_seen_store(mb, uids, n, req, &res);
	else
		rc = mb->st->ops->store(mb, uids, n, req, &res);
out:
	if (rc != 0) {
		storage_store_result_free(&res);
		return rc;
	}
	storage_notify(mb->st, mb->user, mb->name);
	*modified_r = res.modified;
	*n_modified_r = res.n_modified;
	return 0;
}

void
storage_store_result_add(struct store_result *res, uint32_t uid)
{
	size_t n = res->n_modified;

	/* room for 16, then for each next power of two */
	if (n == 0 || (n >= 16 && (n & (n - 1)) == 0))
		res->modified =
		    xreallocarray(res->modified, n == 0 ? 16 : n * 2, sizeof(*res->modified));
	res->modified[res->n_modified++] = uid;
}

void
storage_store_result_free(struct store_result *res)
{
	free(res->modified);
	memset(res, 0, sizeof(*res));
}

uint64_t
storage_store_bits(enum store_mode mode, uint64_t old, uint64_t bits)
{
	switch (mode) {
	case STORE_ADD:
		return old | bits;
	case STORE_REMOVE:
		return old & ~bits;
	default:
		return bits;
	}
}

int
mailbox_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	int rc;

	if ((rc = writable(mb)) != 0 || (rc = storage_uids_check(uids, n)) != 0 ||
	    (rc = storage_acl_mailbox_need(mb, ACL_EXPUNGE)) != 0)
		return rc;
	if (n == 0)
		return 0;
	if ((rc = mb->st->ops->expunge(mb, uids, n)) == 0)
		storage_notify(mb->st, mb->user, mb->name);
	return rc;
}

/*
 * A copy into another owner's store (or into a mailbox where the user may
 * not set every flag): each message read and stored again there, with the
 * flags and keywords the user may set in dest. All or nothing: a failure
 * takes back the copies made. A move then expunges the sources.
 */
static int
copy_across(struct mailbox *mb, const uint32_t *uids, size_t n, const struct acl_target *dest,
            bool move, struct copy_result *res)
{
	struct storage *st = mb->st;
	struct msg_record *recs = NULL;
	const char *const *kw;
	char **names = NULL;
	const char **set = NULL;
	size_t nrec = 0, nkw = 0, k = 0, r = 0;
	uint32_t *src = NULL, *dst = NULL, *seen = NULL, uidvalidity = 0;
	size_t n_seen = 0, n_readers = 0;
	struct metadata_entry *readers = NULL;
	uint64_t modseq;
	/* who copies: \Seen in a mailbox of another is its own */
	const char *actor = mb->actor != NULL ? mb->actor : mb->user;
	int rc;

	if ((rc = st->ops->records(mb, &recs, &nrec, &modseq)) != 0)
		return rc;
	if (strcmp(dest->owner, mb->user) == 0 &&
	    storage_seen_readers(st, mb->user, mb->name, &readers, &n_readers) != 0)
		n_readers = 0;
	if ((rc = storage_seen_records(mb, recs, nrec, NULL)) != 0)
		goto out;
	if ((rc = st->ops->keywords(mb, &kw, &nkw)) != 0)
		goto out;
	/* the table is valid until the next call on mb: keep a copy */
	names = xcalloc(nkw + 1, sizeof(*names));
	set = xcalloc(nkw + 1, sizeof(*set));
	for (size_t i = 0; i < nkw; i++)
		names[i] = xstrdup(kw[i]);
	src = xcalloc(n + 1, sizeof(*src));
	dst = xcalloc(n + 1, sizeof(*dst));
	seen = xcalloc(n + 1, sizeof(*seen));
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct delivery_target t = {.user = dest->owner, .mailbox = dest->name};
		struct msg_input in = {.fd = -1, .has_internal_date = true};
		struct msg_view view;
		size_t ns = 0;

		while (r < nrec && recs[r].uid < uids[i])
			r++;
		if (r == nrec || recs[r].uid != uids[i])
			continue; /* gone: skipped, as a copy skips it */
		if ((rc = st->ops->read(mb, uids[i], &view)) == ROOST_ENOTFOUND) {
			rc = 0;
			continue;
		}
		if (rc != 0)
			break;
		for (size_t j = 0; j < nkw && j < 64 && (dest->rights & ACL_WRITE) != 0; j++) {
			if ((recs[r].keywords & (UINT64_C(1) << j)) != 0)
				set[ns++] = names[j];
		}
		in.data = view.data;
		in.len = view.len;
		in.flags = recs[r].flags & storage_flags_allowed(dest->rights);
		if (dest->foreign && (in.flags & MSG_SEEN) != 0) {
			in.flags &= ~(uint32_t)MSG_SEEN;
			seen[n_seen++] = k; /* index of the copy, its UID below */
		}
		in.keywords = set;
		in.n_keywords = ns;
		in.internal_date = recs[r].internal_date;
		rc = storage_deliver_owned(st, &in, &t, 1, 0);
		msg_view_release(&view);
		if (rc != 0)
			break;
		uidvalidity = t.uidvalidity;
		src[k] = uids[i];
		dst[k++] = t.uid;
	}
	if (rc != 0 && k > 0) {
		struct mailbox *back = NULL;

		if (st->ops->mailbox_open(st, dest->owner, dest->name, 0, &back) == 0) {
			back->st = st;
			back->user = xstrdup(dest->owner);
			back->name = xstrdup(dest->name);
			if (st->ops->expunge(back, dst, k) != 0)
				log_error("event=copy_rollback_failed user=%s mailbox=%s",
				          LOG_QUOTE(dest->owner), LOG_QUOTE(dest->name));
			free(back->user);
			free(back->name);
			st->ops->mailbox_close(back);
		}
		storage_notify(st, dest->owner, dest->name);
	}
	if (rc == 0 && n_seen > 0) {
		for (size_t i = 0; i < n_seen; i++)
			seen[i] = dst[seen[i]];
		if (storage_seen_add(st, dest->owner, dest->name, actor, uidvalidity, seen,
		                     n_seen) != 0)
			log_warn("event=seen_error op=copy user=%s mailbox=%s", LOG_QUOTE(actor),
			         LOG_QUOTE(dest->name));
	}
	if (rc == 0 && k > 0)
		storage_seen_carry(st, mb->user, mb->name, dest->name, readers, n_readers, actor,
		                   uidvalidity, src, dst, k);
	if (rc == 0 && move && k > 0 && (rc = st->ops->expunge(mb, src, k)) == 0)
		storage_notify(st, mb->user, mb->name);
	if (rc == 0) {
		res->uidvalidity = uidvalidity;
		res->src = k > 0 ? src : NULL;
		res->dst = k > 0 ? dst : NULL;
		res->n = k;
		if (k > 0)
			src = dst = NULL;
	}
out:
	for (size_t i = 0; names != NULL && i < nkw; i++)
		free(names[i]);
	free(names);
	free(set);
	storage_metadata_free(readers, n_readers);
	free(seen);
	free(src);
	free(dst);
	free(recs);
	return rc;
}

int
mailbox_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
             uint32_t *dest_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dest_uids_r,
             size_t *n_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct metadata_entry *readers = NULL;
	size_t n_readers = 0;
	struct copy_result res = {0};
	struct acl_target t;
	int rc;

	*src_uids_r = NULL;
	*dest_uids_r = NULL;
	*n_r = 0;
	if (move && (rc = writable(mb)) != 0)
		return rc;
	if ((rc = storage_name_canon(dest, canon)) != 0 || (rc = storage_uids_check(uids, n)) != 0)
		return rc;
	/* dest as the one who opened mb names it; a move takes the
	 * messages away, which needs t and e on the source */
	if ((rc = storage_acl_resolve(mb->st, mb->actor != NULL ? mb->actor : mb->user, canon,
	                              ACL_INSERT, &t)) != 0 ||
	    (move && (rc = storage_acl_mailbox_need(mb, ACL_DELETED | ACL_EXPUNGE)) != 0))
		return rc;
	if (strcmp(t.owner, mb->user) != 0) {
		rc = copy_across(mb, uids, n, &t, move, &res);
		goto out;
	}
	/* a move stays within the owner's quota root: nothing to check */
	if (!move && (rc = storage_quota_copy_admit(mb, uids, n)) != 0)
		return rc;
	/* a copy by a reader (into the owner's store, or its own mailbox
	 * named under the prefix is not foreign) goes message by message so
	 * that \Seen is its own on both sides */
	if (t.foreign) {
		rc = copy_across(mb, uids, n, &t, move, &res);
		goto out;
	}
	/* the readers' \Seen of the messages goes along (storage_seen.c):
	 * their sets as they were before the move */
	if (storage_seen_readers(mb->st, mb->user, mb->name, &readers, &n_readers) != 0)
		n_readers = 0;
	rc = mb->st->ops->copy(mb, uids, n, t.name, move, &res);
	if (rc == 0)
		storage_seen_carry(mb->st, mb->user, mb->name, t.name, readers, n_readers, NULL,
		                   res.uidvalidity, res.src, res.dst, res.n);
	storage_metadata_free(readers, n_readers);
	if (rc == 0) {
		storage_notify(mb->st, mb->user, t.name);
		if (move)
			storage_notify(mb->st, mb->user, mb->name);
	}
out:
	if (rc != 0) {
		storage_copy_result_free(&res);
		return rc;
	}
	if (dest_uidvalidity_r != NULL)
		*dest_uidvalidity_r = res.uidvalidity;
	*src_uids_r = res.src;
	*dest_uids_r = res.dst;
	*n_r = res.n;
	return 0;
}

void
storage_copy_result_free(struct copy_result *res)
{
	free(res->src);
	free(res->dst);
	memset(res, 0, sizeof(*res));
}

int
mailbox_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r)
{
	int rc;

	memset(changes_r, 0, sizeof(*changes_r));
	if ((rc = mailbox_rights_refresh(mb)) != 0)
		return rc;
	/* a reader's MODSEQs stand above the backend's (storage_seen.c) */
	if ((rc = mb->st->ops->changes_since(
	         mb, mb->actor != NULL ? storage_seen_backend_modseq(modseq) : modseq,
	         changes_r)) != 0)
		return rc;
	if ((rc = storage_seen_changes(mb, modseq, changes_r)) != 0)
		mailbox_changes_free(changes_r);
	return rc;
}

int
mailbox_changes_since_nb(struct mailbox *mb, uint64_t modseq, size_t max,
                         struct mailbox_changes *changes_r)
{
	memset(changes_r, 0, sizeof(*changes_r));
	/* Another user's mailbox: its rights and the reader's \Seen set are
	 * read from the metadata, which may block. */
	if (mb->actor != NULL || mb->st->ops->changes_since_nb == NULL)
		return ROOST_EAGAIN;
	return mb->st->ops->changes_since_nb(mb, modseq, max, changes_r);
}

void
mailbox_changes_free(struct mailbox_changes *changes)
{
	if (changes == NULL)
		return;
	free(changes->changed);
	free(changes->expunged);
	free(changes->expunged_emailids);
	changes->changed = NULL;
	changes->expunged = NULL;
	changes->expunged_emailids = NULL;
	changes->n_changed = changes->n_expunged = 0;
}
