/*
 * The storage wrapper's quota: limits (the passwd file's per-user fields,
 * else the config's [quota] defaults), the check every path that adds
 * messages makes before the backend stores, and the usage and recount
 * calls over the backends' exact counters (storage.h, quota).
 */
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"

#include "storage_private.h"

void
storage_set_auth(struct storage *st, struct auth *auth)
{
	st->auth = auth;
}

/* The limits of user: per-user values win over the config's. */
static void
limits_of(struct storage *st, const char *user, uint64_t *bytes_r, uint64_t *messages_r)
{
	struct auth_quota q;

	*bytes_r = st->cfg != NULL ? st->cfg->quota_storage : 0;
	*messages_r = st->cfg != NULL ? st->cfg->quota_messages : 0;
	if (st->auth == NULL || auth_user_quota(st->auth, user, &q) != 0)
		return;
	if (q.storage >= 0)
		*bytes_r = (uint64_t)q.storage;
	if (q.messages >= 0)
		*messages_r = (uint64_t)q.messages;
}

int
storage_quota_admit(struct storage *st, const char *user, uint64_t bytes, uint64_t messages)
{
	struct storage_usage u;
	uint64_t lb, lm;
	int rc;

	limits_of(st, user, &lb, &lm);
	if (lb == 0 && lm == 0)
		return 0; /* no limit: not even a read */
	if ((lb != 0 && bytes > lb) || (lm != 0 && messages > lm))
		return ROOST_EQUOTATOOBIG;
	if ((rc = st->ops->quota_get(st, user, &u)) != 0)
		return rc;
	if ((lb != 0 && u.bytes + bytes > lb) || (lm != 0 && u.messages + messages > lm))
		return ROOST_EOVERQUOTA;
	return 0;
}

bool
storage_quota_limited(struct storage *st, const char *user)
{
	uint64_t lb, lm;

	limits_of(st, user, &lb, &lm);
	return lb != 0 || lm != 0;
}

int
storage_quota_get(struct storage *st, const char *user, struct storage_quota *quota_r)
{
	memset(quota_r, 0, sizeof(*quota_r));
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	limits_of(st, user, &quota_r->limit_bytes, &quota_r->limit_messages);
	return st->ops->quota_get(st, user, &quota_r->usage);
}

int
storage_quota_check(struct storage *st, const char *user, uint64_t bytes, uint64_t messages)
{
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	return storage_quota_admit(st, user, bytes, messages);
}

int
storage_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                     struct storage_usage *after_r)
{
	memset(before_r, 0, sizeof(*before_r));
	memset(after_r, 0, sizeof(*after_r));
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	return st->ops->quota_recalc(st, user, before_r, after_r);
}

int
storage_quota_copy_admit(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct msg_record *recs = NULL;
	uint64_t bytes = 0, count = 0, modseq;
	size_t nr = 0, k = 0;
	int rc;

	if (n == 0 || !storage_quota_limited(mb->st, mb->user))
		return 0;
	if ((rc = mb->st->ops->records(mb, &recs, &nr, &modseq)) != 0)
		return rc;
	/* both ascending: one pass */
	for (size_t i = 0; i < nr && k < n; i++) {
		while (k < n && uids[k] < recs[i].uid)
			k++;
		if (k < n && uids[k] == recs[i].uid) {
			bytes += recs[i].size;
			count++;
		}
	}
	free(recs);
	if (count == 0)
		return 0;
	rc = storage_quota_admit(mb->st, mb->user, bytes, count);
	/* several messages larger than the limit together are only over it */
	return rc == ROOST_EQUOTATOOBIG && count > 1 ? ROOST_EOVERQUOTA : rc;
}
