/*
 * storage_deliver(), the one owner of the delivery path: the recipients
 * checked and deduplicated, new users set up and retried, an all-or-nothing
 * delivery rolled back, the watchers woken; and the parse cache record made
 * once and stored with every copy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/message.h"
#include "roost/message_cache.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"

#define DELIVER_MAX 100000

/*
 * The parse cache record of a message being delivered, appended to rec:
 * made once for all its recipients and stored with each copy in the
 * backend's own commit, so the first FETCH of ENVELOPE, BODYSTRUCTURE or
 * PREVIEW (RFC 8970 asks that a preview be made once) reads it rather than
 * the message. A message with bare LFs is left to FETCH, which parses the
 * CRLF form IMAP sends; so is one that does not parse: delivery does not
 * depend on it.
 */
static void
deliver_cache(const struct storage *st, const struct msg_input *msg, struct buf *rec)
{
	const struct roost_config *cfg = st->cfg;
	struct message_limits lim = MESSAGE_LIMITS_DEFAULT;
	const uint8_t *data = msg->data;
	struct message *m = NULL;
	void *map = NULL;

	if (msg->len == 0)
		return;
	/* the bounds FETCH parses with (a store opened without them, as a
	 * tool may, keeps the defaults) */
	if (cfg->mime_max_depth != 0 && cfg->mime_max_parts != 0 && cfg->max_header_size != 0 &&
	    cfg->max_header_fields != 0) {
		lim.max_depth = cfg->mime_max_depth;
		lim.max_parts = cfg->mime_max_parts;
		lim.max_header_size = cfg->max_header_size;
		lim.max_header_fields = cfg->max_header_fields;
	}
	if (msg->fd >= 0) {
		map = mmap(NULL, msg->len, PROT_READ, MAP_PRIVATE, msg->fd, 0);
		if (map == MAP_FAILED)
			return;
		data = map;
	}
	for (const uint8_t *p = data, *end = data + msg->len;
	     (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) {
		if (p == data || p[-1] != '\r')
			goto out;
	}
	if (message_parse(data, msg->len, &lim, &m) == 0 &&
	    message_cache_make(m, msg->len, rec) < 0)
		buf_reset(rec);
	message_free(&m);
out:
	if (map != NULL)
		munmap(map, msg->len);
}

/* The delivery request after the wrapper's checks: one entry per distinct
 * (user, canonical mailbox), handed to the backend as is. */
struct deliver_req {
	struct delivery_target *sub; /* what the backend gets, m entries */
	char (*canon)[STORAGE_MAX_NAME + 1];
	size_t *owner; /* targets[i] is served by sub[owner[i]]; SIZE_MAX: invalid */
	size_t m;
	struct storage_quota *quota; /* sub[j]'s usage before and limits (zero: none) */
};

/* Index of (user, canon) in sub[] through an open-addressing table of
 * size mask+1 (a power of two over 2n): a message to thousands of
 * recipients must not cost a comparison per pair. */
static size_t
dedupe(struct deliver_req *r, size_t *table, size_t mask, const char *user, const char *canon)
{
	uint64_t h = storage_user_hash(user) * 31 + storage_user_hash(canon);

	for (size_t k = (size_t)h & mask;; k = (k + 1) & mask) {
		size_t j = table[k];

		if (j == SIZE_MAX) {
			table[k] = r->m;
			return r->m;
		}
		if (strcmp(r->sub[j].user, user) == 0 && strcmp(r->sub[j].mailbox, canon) == 0)
			return j;
	}
}

static void
req_build(struct deliver_req *r, struct delivery_target *targets, size_t n)
{
	size_t mask = 1, *table;

	while (mask < 2 * n)
		mask <<= 1;
	table = xmalloc(mask * sizeof(*table));
	memset(table, 0xff, mask * sizeof(*table));
	mask--;
	r->sub = xcalloc(n, sizeof(*r->sub));
	r->canon = xcalloc(n, sizeof(*r->canon));
	r->owner = xcalloc(n, sizeof(*r->owner));
	r->m = 0;
	for (size_t i = 0; i < n; i++) {
		size_t j;

		r->owner[i] = SIZE_MAX;
		if (!storage_owner_valid(targets[i].user) ||
		    storage_name_canon(targets[i].mailbox, r->canon[r->m]) != 0)
			continue;
		j = dedupe(r, table, mask, targets[i].user, r->canon[r->m]);
		if (j == r->m) {
			r->sub[j].user = targets[i].user;
			r->sub[j].mailbox = r->canon[j];
			r->m++;
		}
		r->owner[i] = j;
	}
	free(table);
}

static void
req_free(struct deliver_req *r)
{
	free(r->quota);
	free(r->owner);
	free(r->canon);
	free(r->sub);
}

/* Take back a message stored for t, as an all-or-nothing delivery must
 * when another recipient failed. */
static void
undo_one(struct storage *st, const struct delivery_target *t)
{
	struct mailbox *mb = NULL;
	int rc = st->ops->mailbox_open(st, t->user, t->mailbox, 0, &mb);

	if (rc == 0) {
		mb->st = st;
		mb->user = xstrdup(t->user);
		mb->name = xstrdup(t->mailbox);
		mb->flags = 0;
		rc = st->ops->expunge(mb, &t->uid, 1);
		free(mb->user);
		free(mb->name);
		st->ops->mailbox_close(mb);
	}
	if (rc != 0)
		log_error("event=rollback_failed user=%s mailbox=%s uid=%u error=\"%s\"",
		          LOG_QUOTE(t->user), LOG_QUOTE(t->mailbox), t->uid, roost_strerror(rc));
}

/*
 * Hand the backend the targets whose user has room for the message; the
 * others keep their quota error (storage.h, quota). Without limits, or
 * when every target fits, the request goes as it is.
 */
static void
deliver_admitted(struct storage *st, const struct msg_input *msg, struct deliver_req *r)
{
	struct delivery_target *batch;
	size_t *idx, na = 0;

	idx = xcalloc(r->m + 1, sizeof(*idx));
	r->quota = xcalloc(r->m + 1, sizeof(*r->quota));
	for (size_t j = 0; j < r->m; j++) {
		int rc = storage_quota_admit(st, r->sub[j].user, msg->len, 1, &r->quota[j]);

		r->sub[j].result = rc;
		if (rc == 0)
			idx[na++] = j;
	}
	if (na == r->m) {
		(void)st->ops->deliver(st, msg, r->sub, r->m);
	} else if (na > 0) {
		batch = xcalloc(na, sizeof(*batch));
		for (size_t k = 0; k < na; k++)
			batch[k] = r->sub[idx[k]];
		(void)st->ops->deliver(st, msg, batch, na);
		for (size_t k = 0; k < na; k++)
			r->sub[idx[k]] = batch[k];
		free(batch);
	}
	free(idx);
}

/*
 * The one owner of the delivery path: check, deliver, set up new users and
 * retry, roll back, wake the watchers. The backend sees each (user,
 * mailbox) once, validated and canonical, and makes each copy durable
 * before it returns.
 */
int
storage_deliver_owned(struct storage *st, const struct msg_input *msg,
                      struct delivery_target *targets, size_t n, unsigned flags)
{
	struct deliver_req r;
	struct msg_input in;
	struct buf cache = BUF_INIT(0);
	size_t *retry, nr = 0;
	int rc, first = 0;

	if (n == 0 || n > DELIVER_MAX || targets == NULL ||
	    (flags & ~(unsigned)(STORAGE_DELIVER_ATOMIC | STORAGE_DELIVER_INBOX_FALLBACK)) != 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < n; i++) {
		targets[i].uid = targets[i].uidvalidity = 0;
		targets[i].result = ROOST_EINVAL;
	}
	if ((rc = storage_msg_input_check(st, msg)) != 0) {
		for (size_t i = 0; i < n; i++)
			targets[i].result = rc;
		return rc;
	}
	deliver_cache(st, msg, &cache);
	in = *msg;
	in.cache = cache.data;
	in.cache_len = cache.len;
	msg = &in;
	req_build(&r, targets, n);
	deliver_admitted(st, msg, &r);
	/* One more try for recipients whose INBOX did not exist (set up now)
	 * or, with INBOX_FALLBACK, whose folder went away. */
	retry = xcalloc(r.m + 1, sizeof(*retry));
	for (size_t j = 0; j < r.m; j++) {
		struct delivery_target *t = &r.sub[j];

		if (t->result != ROOST_ENOTFOUND)
			continue;
		if (storage_user_set_up(st, t->user, t->mailbox, t->result)) {
			retry[nr++] = j;
		} else if ((flags & STORAGE_DELIVER_INBOX_FALLBACK) != 0 &&
		           !storage_name_is_inbox(t->mailbox) && !storage_owner_public(t->user)) {
			(void)storage_user_set_up(st, t->user, "INBOX", ROOST_ENOTFOUND);
			t->mailbox = "INBOX";
			retry[nr++] = j;
		}
	}
	if (nr > 0) {
		struct delivery_target *batch = xcalloc(nr, sizeof(*batch));

		for (size_t k = 0; k < nr; k++)
			batch[k] = r.sub[retry[k]];
		(void)st->ops->deliver(st, msg, batch, nr);
		for (size_t k = 0; k < nr; k++)
			r.sub[retry[k]] = batch[k];
		free(batch);
	}
	free(retry);
	for (size_t i = 0; i < n && first == 0; i++) {
		if (r.owner[i] == SIZE_MAX)
			first = ROOST_EINVAL;
		else
			first = r.sub[r.owner[i]].result;
	}
	if (first != 0 && (flags & STORAGE_DELIVER_ATOMIC) != 0) {
		for (size_t j = 0; j < r.m; j++) {
			if (r.sub[j].result != 0)
				continue;
			undo_one(st, &r.sub[j]);
			r.sub[j].result = first;
			r.sub[j].uid = 0;
		}
	}
	/* Every session here first, then the other processes: a notify file
	 * costs an open and a write, and a message to many users used to keep
	 * the later users' sessions waiting for the earlier users' files. */
	if (st->watches != NULL) {
		/* each loop gets its share of all the users' wake-ups in one
		 * post (loop_batch_begin()) */
		loop_batch_begin();
		for (size_t j = 0; j < r.m; j++) {
			if (r.sub[j].result == 0)
				storage_notify_here(st->watches, storage_user_hash(r.sub[j].user),
				                    r.sub[j].user, r.sub[j].mailbox);
		}
		loop_batch_end();
		for (size_t j = 0; j < r.m; j++) {
			if (r.sub[j].result == 0)
				storage_notify_others(st->watches,
				                      storage_user_hash(r.sub[j].user));
		}
	}
	for (size_t j = 0; j < r.m; j++) {
		if (r.sub[j].result == 0)
			storage_quota_warn(st, r.sub[j].user, &r.quota[j], msg->len);
	}
	for (size_t i = 0; i < n; i++) {
		const struct delivery_target *d;

		if (r.owner[i] == SIZE_MAX) {
			targets[i].result = first != 0 && (flags & STORAGE_DELIVER_ATOMIC) != 0
			                        ? first
			                        : ROOST_EINVAL;
			continue;
		}
		d = &r.sub[r.owner[i]];
		targets[i].result = d->result;
		targets[i].uid = d->result == 0 ? d->uid : 0;
		targets[i].uidvalidity = d->uidvalidity;
		if (d->result == 0 && storage_name_is_inbox(d->mailbox) &&
		    !storage_name_is_inbox(r.canon[r.owner[i]]))
			targets[i].mailbox = "INBOX";
	}
	req_free(&r);
	buf_free(&cache);
	return first;
}

/*
 * Mail from a sender (SMTP, LMTP, `roost deliver`) reaches a folder other
 * than INBOX only where the folder's ACL grants p to "anyone"
 * (storage_acl.c; the default ACL does); otherwise it goes to INBOX with
 * STORAGE_DELIVER_INBOX_FALLBACK, or fails with ROOST_ENOACCESS. A name
 * under the other users' or the shared prefix is never a delivery target.
 * The public store (the shared namespace, reached through an alias to
 * "#public+<name>") has no INBOX to fall back to: a refused target there
 * fails, and so does its INBOX.
 */
int
storage_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
                size_t n, unsigned flags)
{
	struct delivery_target *t;
	size_t *idx, m = 0;
	bool *refused, any = false, dropped = false;
	int rc = 0, first = 0;

	if (n == 0 || n > DELIVER_MAX || targets == NULL)
		return ROOST_EINVAL;
	refused = xcalloc(n, sizeof(*refused));
	for (size_t i = 0; i < n; i++) {
		char canon[STORAGE_MAX_NAME + 1];

		if (!storage_owner_valid(targets[i].user) ||
		    storage_name_canon(targets[i].mailbox, canon) != 0)
			continue;
		if (storage_name_is_inbox(canon) && !storage_owner_public(targets[i].user))
			continue;
		if (!storage_acl_may_post(st, targets[i].user, canon))
			refused[i] = any = true;
	}
	if (!any) {
		free(refused);
		return storage_deliver_owned(st, msg, targets, n, flags);
	}
	t = xcalloc(n, sizeof(*t));
	idx = xcalloc(n, sizeof(*idx));
	for (size_t i = 0; i < n; i++) {
		targets[i].uid = targets[i].uidvalidity = 0;
		if (refused[i] && ((flags & STORAGE_DELIVER_INBOX_FALLBACK) == 0 ||
		                   storage_owner_public(targets[i].user))) {
			targets[i].result = ROOST_ENOACCESS;
			dropped = true;
			continue;
		}
		idx[m] = i;
		t[m] = targets[i];
		if (refused[i])
			t[m].mailbox = "INBOX";
		m++;
	}
	/* the others go on unless the delivery is all or nothing */
	if (dropped && (flags & STORAGE_DELIVER_ATOMIC) != 0) {
		for (size_t i = 0; i < n; i++)
			targets[i].result = ROOST_ENOACCESS;
		m = 0;
	}
	if (m > 0)
		rc = storage_deliver_owned(st, msg, t, m, flags);
	for (size_t k = 0; k < m; k++) {
		struct delivery_target *d = &targets[idx[k]];

		d->result = t[k].result;
		d->uid = t[k].uid;
		d->uidvalidity = t[k].uidvalidity;
		if (t[k].result == 0 && (refused[idx[k]] || t[k].mailbox != d->mailbox))
			d->mailbox = "INBOX";
	}
	for (size_t i = 0; i < n && first == 0; i++)
		first = targets[i].result;
	free(idx);
	free(t);
	free(refused);
	return dropped ? first : rc;
}
