/*
 * Copy and move on the PostgreSQL backend: new UIDs from the
 * destination's row, the keywords mapped into the destination's table, a
 * move removing the sources in the same transaction.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgsql_impl.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

struct copy_arg {
	struct mailbox *mb;
	const uint32_t *uids;
	size_t n;
	const char *dest;
	bool move;
	struct copy_result *res;
};

/* The destination's bit for each of the source's keyword bits. */
static int
kw_map(struct pg_txn *t, int64_t sid, int64_t did, int map[64])
{
	PGresult *res;
	int rc;

	for (int i = 0; i < 64; i++)
		map[i] = -1;
	rc = pg_exec_id(t, "SELECT idx, name FROM keywords WHERE mailbox_id = $1 ORDER BY idx", sid,
	                &res);
	if (rc != 0)
		return rc;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
		int idx = (int)pg_int(res, i, 0);

		if (idx >= 0 && idx < 64)
			rc = pg_kw_index(t, did, PQgetvalue(res, i, 1), true, &map[idx]);
	}
	PQclear(res);
	return rc;
}

static int
t_copy(struct pg_txn *t, void *arg)
{
	struct copy_arg *a = arg;
	struct copy_result *out = a->res;
	int64_t sid = PM(a->mb)->id, did, base, seq, gone = 0;
	uint64_t gone_seq = 0;
	struct pg_params p = {.n = 0};
	struct buf ua = BUF_INIT(0), na = BUF_INIT(0), ka = BUF_INIT(0);
	uint64_t *nk = NULL;
	int map[64];
	PGresult *res = NULL, *src = NULL;
	bool sns = false, dns = false;
	size_t k;
	int rc;

	storage_copy_result_free(out);
	if ((rc = pg_mbox_lookup(t, a->mb->user, a->dest, false, &did, &dns)) != 0)
		return rc;
	/* Both rows locked, the lower id first. */
	if ((rc = pg_mbox_lock(t, sid < did ? sid : did, sid < did ? &sns : &dns)) != 0 ||
	    (sid != did &&
	     (rc = pg_mbox_lock(t, sid < did ? did : sid, sid < did ? &dns : &sns)) != 0))
		return rc;
	if (sid == did)
		sns = dns;
	if (sns || dns)
		return ROOST_ENOTFOUND;
	if ((rc = kw_map(t, sid, did, map)) != 0)
		return rc;
	pg_int_array(&ua, a->uids, a->n);
	pg_p_int(&p, sid);
	pg_p_str(&p, buf_cstr(&ua));
	rc = pg_exec(t,
	             "SELECT uid, keywords FROM messages WHERE mailbox_id = $1 AND uid = ANY "
	             "($2::bigint[]) ORDER BY uid",
	             &p, false, &res);
	if (rc != 0)
		goto out;
	src = res;
	res = NULL;
	k = (size_t)PQntuples(src);
	out->src = xcalloc(k + 1, sizeof(*out->src));
	out->dst = xcalloc(k + 1, sizeof(*out->dst));
	nk = xcalloc(k + 1, sizeof(*nk));
	if (k == 0)
		goto out;
	p.n = 0;
	pg_p_int(&p, did);
	pg_p_int(&p, (int64_t)k);
	rc = pg_exec(
	    t,
	    "UPDATE mailboxes SET uidnext = uidnext + $2, highestmodseq = highestmodseq + 1 "
	    "WHERE id = $1 AND uidnext + $2 <= 4294967295 RETURNING uidnext - $2, "
	    "highestmodseq, uidvalidity",
	    &p, false, &res);
	if (rc != 0)
		goto out;
	if (PQntuples(res) != 1) {
		rc = ROOST_ETOOBIG;
		goto out;
	}
	base = pg_int(res, 0, 0);
	seq = pg_int(res, 0, 1);
	out->uidvalidity = (uint32_t)pg_int(res, 0, 2);
	for (size_t i = 0; i < k; i++) {
		uint64_t kw = (uint64_t)pg_int(src, (int)i, 1);

		out->src[i] = (uint32_t)pg_int(src, (int)i, 0);
		out->dst[i] = (uint32_t)(base + (int64_t)i);
		for (int b = 0; b < 64; b++) {
			if ((kw & (1ULL << b)) != 0 && map[b] >= 0)
				nk[i] |= 1ULL << map[b];
		}
	}
	out->n = k;
	pg_int_array(&ua, out->src, k);
	pg_int_array(&na, out->dst, k);
	pg_int64_array(&ka, nk, k);
	p.n = 0;
	pg_p_int(&p, did);
	pg_p_int(&p, sid);
	pg_p_int(&p, seq);
	pg_p_str(&p, buf_cstr(&ua));
	pg_p_str(&p, buf_cstr(&na));
	pg_p_str(&p, buf_cstr(&ka));
	pg_p_int(&p, (int64_t)time(NULL)); /* RFC 8514: put in this mailbox now */
	if ((rc =
	         pg_exec(t,
	                 "INSERT INTO messages (mailbox_id, uid, flags, keywords, modseq, "
	                 "internal_date, size, sha, cache, emailid, save_date) SELECT $1, v.nu, "
	                 "g.flags, v.k, $3, g.internal_date, g.size, g.sha, g.cache, g.emailid, $7 "
	                 "FROM messages g "
	                 "JOIN unnest("
	                 "$4::bigint[], $5::bigint[], $6::bigint[]) AS v(u, nu, k) ON g.uid = v.u "
	                 "WHERE g.mailbox_id = $2",
	                 &p, false, NULL)) != 0)
		goto out;
	p.n = 0;
	pg_p_int(&p, sid);
	pg_p_str(&p, buf_cstr(&ua));
	if ((rc = pg_exec(
	         t,
	         "UPDATE bodies b SET refs = b.refs + c.n FROM (SELECT sha, count(*) AS n "
	         "FROM messages WHERE mailbox_id = $1 AND uid = ANY ($2::bigint[]) GROUP BY "
	         "sha) c WHERE b.sha = c.sha",
	         &p, false, NULL)) != 0)
		goto out;
	if (a->move && (rc = pg_remove_uids(t, sid, out->src, k, &gone, &gone_seq)) != 0)
		goto out;
	if ((rc = pg_notify_id(t, a->mb->user, a->dest, did, (uint64_t)seq)) == 0 && gone > 0)
		rc = pg_notify_id(t, a->mb->user, a->mb->name, sid, gone_seq);
out:
	PQclear(res);
	PQclear(src);
	free(nk);
	buf_free(&ua);
	buf_free(&na);
	buf_free(&ka);
	return rc;
}

int
pg_op_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
           struct copy_result *res)
{
	struct copy_arg a = {
	    .mb = mb, .uids = uids, .n = n, .dest = dest, .move = move, .res = res};

	return pg_run(PM(mb)->ps, PG_WRITE, t_copy, &a);
}
