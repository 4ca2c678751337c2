/*
 * The storage wrapper's quota: limits (the passwd file's per-user fields,
 * else the config's [quota] defaults), the check every path that adds
 * messages makes before the backend stores, and the usage and recount
 * calls over the backends' exact counters (storage.h, quota).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
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
	if (storage_owner_public(user)) {
		/* the shared namespace: one root of its own, [quota] shared_* */
		*bytes_r = st->cfg != NULL ? st->cfg->quota_shared_storage : 0;
		*messages_r = st->cfg != NULL ? st->cfg->quota_shared_messages : 0;
		return;
	}
	if (st->auth == NULL || auth_user_quota(st->auth, user, &q) != 0)
		return;
	if (q.storage >= 0)
		*bytes_r = (uint64_t)q.storage;
	if (q.messages >= 0)
		*messages_r = (uint64_t)q.messages;
}

int
storage_quota_admit(struct storage *st, const char *user, uint64_t bytes, uint64_t messages,
                    struct storage_quota *quota_r)
{
	struct storage_quota q;
	uint64_t lb, lm;
	int rc;

	memset(&q, 0, sizeof(q));
	if (quota_r != NULL)
		*quota_r = q;
	limits_of(st, user, &lb, &lm);
	if (lb == 0 && lm == 0)
		return 0; /* no limit: not even a read */
	if ((lb != 0 && bytes > lb) || (lm != 0 && messages > lm))
		return ROOST_EQUOTATOOBIG;
	if ((rc = st->ops->quota_get(st, user, &q.usage)) != 0)
		return rc;
	q.limit_bytes = lb;
	q.limit_messages = lm;
	if (quota_r != NULL)
		*quota_r = q;
	if ((lb != 0 && q.usage.bytes + bytes > lb) ||
	    (lm != 0 && q.usage.messages + messages > lm))
		return ROOST_EOVERQUOTA;
	return 0;
}

/* Did going from used to used + add cross pct percent of limit? */
static bool
crossed(uint64_t used, uint64_t add, uint64_t limit, unsigned pct)
{
	uint64_t at;

	if (limit == 0 || pct == 0)
		return false;
	at = limit / 100 * pct + limit % 100 * pct / 100;
	return used < at && used + add >= at;
}

static atomic_uint notice_seq; /* Message-IDs of the notices this process sends */

/*
 * The notice is delivered into INBOX past the quota check: it is small,
 * and a user near the limit is the one who must read it. It is built here
 * rather than by a service above because only the storage layer sees the
 * usage before and after every path that adds messages.
 */
void
storage_quota_warn(struct storage *st, const char *user, const struct storage_quota *before,
                   uint64_t bytes)
{
	unsigned pct = st->cfg != NULL ? st->cfg->quota_warning : 0;
	const char *host =
	    st->cfg != NULL && st->cfg->hostname != NULL ? st->cfg->hostname : "localhost";
	bool by_bytes = crossed(before->usage.bytes, bytes, before->limit_bytes, pct);
	bool by_count = crossed(before->usage.messages, 1, before->limit_messages, pct);
	struct delivery_target t = {.user = user, .mailbox = "INBOX"};
	struct msg_input in = {.fd = -1};
	struct buf msg = BUF_INIT(0);
	char date[64], id[40];
	time_t now = time(NULL);
	struct tm tm;

	if ((!by_bytes && !by_count) || storage_owner_public(user))
		return; /* nobody reads the public store's INBOX */
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	snprintf(id, sizeof(id), "%llx.%x.%x", (unsigned long long)now, (unsigned)getpid(),
	         atomic_fetch_add(&notice_seq, 1));
	buf_printf(&msg,
	           "From: Mail System <postmaster@%s>\r\n"
	           "To: <%s>\r\n"
	           "Subject: Your mailbox is %u%% full\r\n"
	           "Date: %s\r\n"
	           "Message-ID: <quota.%s@%s>\r\n"
	           "Auto-Submitted: auto-generated\r\n"
	           "MIME-Version: 1.0\r\n"
	           "Content-Type: text/plain; charset=us-ascii\r\n"
	           "\r\n"
	           "Your mailbox has passed %u%% of its quota.\r\n\r\n",
	           host, user, pct, date, id, host, pct);
	if (before->limit_bytes != 0)
		buf_printf(&msg, "Storage:  %llu of %llu KiB\r\n",
		           (unsigned long long)((before->usage.bytes + bytes + 1023) / 1024),
		           (unsigned long long)(before->limit_bytes / 1024));
	if (before->limit_messages != 0)
		buf_printf(&msg, "Messages: %llu of %llu\r\n",
		           (unsigned long long)(before->usage.messages + 1),
		           (unsigned long long)before->limit_messages);
	buf_append_str(&msg, "\r\nDelete or archive the mail you no longer need: once the "
	                     "mailbox is full,\r\nnew mail to you is refused.\r\n");
	in.data = msg.data;
	in.len = msg.len;
	in.flags = MSG_FLAGGED;
	(void)st->ops->deliver(st, &in, &t, 1);
	if (t.result == 0) {
		log_info("event=quota_warning user=%s percent=%u", LOG_QUOTE(user), pct);
		storage_notify(st, user, "INBOX");
	} else {
		log_warn("event=quota_warning_failed user=%s error=\"%s\"", LOG_QUOTE(user),
		         roost_strerror(t.result));
	}
	buf_free(&msg);
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
	if (!storage_owner_valid(user))
		return ROOST_EINVAL;
	limits_of(st, user, &quota_r->limit_bytes, &quota_r->limit_messages);
	return st->ops->quota_get(st, user, &quota_r->usage);
}

int
storage_quota_check(struct storage *st, const char *user, uint64_t bytes, uint64_t messages)
{
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	return storage_quota_admit(st, user, bytes, messages, NULL);
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
	rc = storage_quota_admit(mb->st, mb->user, bytes, count, NULL);
	/* several messages larger than the limit together are only over it */
	return rc == ROOST_EQUOTATOOBIG && count > 1 ? ROOST_EOVERQUOTA : rc;
}
