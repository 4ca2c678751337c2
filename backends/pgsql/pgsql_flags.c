/*
 * Flag and keyword changes (STORE) on the PostgreSQL backend, with
 * UNCHANGEDSINCE, each changed message taking the next MODSEQ.
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

struct store_arg {
	struct mailbox *mb;
	const uint32_t *uids;
	size_t n;
	const struct store_req *req;
	struct store_result *res;
};

static int
t_store(struct pg_txn *t, void *arg)
{
	struct store_arg *a = arg;
	const struct store_req *req = a->req;
	int64_t id = PM(a->mb)->id;
	struct pg_params p = {.n = 0};
	struct buf ua = BUF_INIT(0), fa = BUF_INIT(0), ka = BUF_INIT(0);
	uint32_t *cu = NULL, *cf = NULL;
	uint64_t *ck = NULL, kwbits, hms;
	size_t nc = 0;
	PGresult *res = NULL;
	bool noselect;
	int rc;

	storage_store_result_free(a->res);
	if ((rc = pg_mbox_lock(t, id, &noselect)) != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	if ((rc = pg_kw_bits(t, id, req->keywords, req->n_keywords, req->mode != STORE_REMOVE,
	                     &kwbits)) != 0 ||
	    (rc = pg_mbox_row(t, id, &hms, NULL, NULL)) != 0)
		return rc;
	pg_int_array(&ua, a->uids, a->n);
	pg_p_int(&p, id);
	pg_p_str(&p, buf_cstr(&ua));
	rc = pg_exec(t,
	             "SELECT uid, flags, keywords, modseq FROM messages WHERE mailbox_id = $1 AND "
	             "uid = ANY ($2::bigint[]) ORDER BY uid",
	             &p, false, &res);
	if (rc != 0)
		goto out;
	cu = xcalloc((size_t)PQntuples(res) + 1, sizeof(*cu));
	cf = xcalloc((size_t)PQntuples(res) + 1, sizeof(*cf));
	ck = xcalloc((size_t)PQntuples(res) + 1, sizeof(*ck));
	for (int i = 0; i < PQntuples(res); i++) {
		uint32_t uid = (uint32_t)pg_int(res, i, 0), flags = (uint32_t)pg_int(res, i, 1);
		uint64_t kw = (uint64_t)pg_int(res, i, 2), modseq = (uint64_t)pg_int(res, i, 3);
		uint32_t nf;
		uint64_t nk;

		if (req->unchanged_since != 0 && modseq > req->unchanged_since) {
			storage_store_result_add(a->res, uid);
			continue;
		}
		nf = (uint32_t)storage_store_bits(req->mode, flags, req->flags);
		nk = storage_store_bits(req->mode, kw, kwbits);
		if (nf == flags && nk == kw)
			continue;
		cu[nc] = uid;
		cf[nc] = nf;
		ck[nc] = nk;
		nc++;
	}
	if (nc == 0)
		goto out;
	pg_int_array(&ua, cu, nc);
	pg_int_array(&fa, cf, nc);
	pg_int64_array(&ka, ck, nc);
	p.n = 0;
	pg_p_int(&p, id);
	pg_p_str(&p, buf_cstr(&ua));
	pg_p_str(&p, buf_cstr(&fa));
	pg_p_str(&p, buf_cstr(&ka));
	pg_p_int(&p, (int64_t)hms + 1);
	if ((rc = pg_exec(t,
	                  "UPDATE messages g SET flags = v.f, keywords = v.k, modseq = $5 FROM "
	                  "unnest($2::bigint[], $3::int[], $4::bigint[]) AS v(u, f, k) WHERE "
	                  "g.mailbox_id = $1 AND g.uid = v.u",
	                  &p, false, NULL)) != 0)
		goto out;
	p.n = 1;
	if ((rc = pg_exec(t, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1",
	                  &p, false, NULL)) != 0)
		goto out;
	rc = pg_notify_id(t, a->mb->user, a->mb->name, id, hms + 1);
out:
	PQclear(res);
	free(cu);
	free(cf);
	free(ck);
	buf_free(&ua);
	buf_free(&fa);
	buf_free(&ka);
	return rc;
}

int
pg_op_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
            struct store_result *res)
{
	struct store_arg a = {.mb = mb, .uids = uids, .n = n, .req = req, .res = res};

	return pg_run(PM(mb)->ps, PG_WRITE, t_store, &a);
}
