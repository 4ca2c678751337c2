/*
 * Messages of the PostgreSQL backend: delivery and append, the records,
 * keywords, \Recent claims, reading, the parse cache, flag changes,
 * expunge, copy and move, and "what changed since".
 *
 * UIDs and MODSEQs come from the mailbox row, read and advanced under its
 * row lock in the transaction that writes the messages, so they are
 * allocated without gaps (a rolled-back transaction gives its numbers
 * back) and commit in ascending order whatever node runs them.
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

#define SHA_LEN 32

/* "{1,2,3}": a bigint[] parameter in text form. */
static void
int_array(struct buf *b, const uint32_t *v, size_t n)
{
	buf_reset(b);
	buf_append_byte(b, '{');
	for (size_t i = 0; i < n; i++)
		buf_printf(b, i == 0 ? "%u" : ",%u", v[i]);
	buf_append_str(b, "}");
}

static void
int64_array(struct buf *b, const uint64_t *v, size_t n)
{
	buf_reset(b);
	buf_append_byte(b, '{');
	for (size_t i = 0; i < n; i++)
		buf_printf(b, i == 0 ? "%llu" : ",%llu", (unsigned long long)v[i]);
	buf_append_str(b, "}");
}

/* ---- keywords ---- */

int
pg_kw_index(struct pg_txn *t, int64_t id, const char *name, bool add, int *idx_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc, n;

	*idx_r = -1;
	pg_p_int(&p, id);
	pg_p_str(&p, name);
	rc =
	    pg_exec(t, "SELECT idx FROM keywords WHERE mailbox_id = $1 AND lower(name) = lower($2)",
	            &p, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) == 1) {
		*idx_r = (int)pg_int(res, 0, 0);
		PQclear(res);
		return 0;
	}
	PQclear(res);
	if (!add)
		return 0;
	/* The caller holds the mailbox's row lock: no one adds meanwhile. */
	p.n = 1;
	rc = pg_exec(t, "SELECT count(*) FROM keywords WHERE mailbox_id = $1", &p, false, &res);
	if (rc != 0)
		return rc;
	n = (int)pg_int(res, 0, 0);
	PQclear(res);
	if (n >= STORAGE_MAX_KEYWORDS)
		return ROOST_ETOOBIG;
	pg_p_str(&p, name);
	pg_p_int(&p, n);
	rc = pg_exec(t, "INSERT INTO keywords (mailbox_id, name, idx) VALUES ($1, $2, $3)", &p,
	             false, NULL);
	if (rc == 0)
		*idx_r = n;
	return rc;
}

/* Bits of names in mailbox id's table (added when add). */
static int
kw_bits(struct pg_txn *t, int64_t id, const char *const *names, size_t n, bool add,
        uint64_t *bits_r)
{
	*bits_r = 0;
	for (size_t i = 0; i < n; i++) {
		int idx, rc = pg_kw_index(t, id, names[i], add, &idx);

		if (rc != 0)
			return rc;
		if (idx >= 0)
			*bits_r |= 1ULL << idx;
	}
	return 0;
}

/* ---- bodies ---- */

/* Add refs references to body sha, storing data when it is new. */
static int
body_ref(struct pg_txn *t, const uint8_t *sha, const uint8_t *data, size_t len, int64_t refs)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc, updated;

	pg_p_bin(&p, sha, SHA_LEN);
	pg_p_int(&p, refs);
	rc = pg_exec(t, "UPDATE bodies SET refs = refs + $2 WHERE sha = $1", &p, false, &res);
	if (rc != 0)
		return rc;
	updated = atoi(PQcmdTuples(res));
	PQclear(res);
	if (updated == 1)
		return 0;
	/* New here, or its last reference went while this waited: store it.
	 * Two nodes storing the same new body meet in ON CONFLICT. */
	pg_p_bin(&p, data, len);
	return pg_exec(t,
	               "INSERT INTO bodies (sha, refs, data) VALUES ($1, $2, $3) ON CONFLICT (sha) "
	               "DO UPDATE SET refs = bodies.refs + EXCLUDED.refs",
	               &p, false, NULL);
}

static int
bodies_collect(struct pg_txn *t)
{
	return pg_exec(t, "DELETE FROM bodies WHERE refs = 0", NULL, false, NULL);
}

/* ---- deliver and append ---- */

struct dtarget {
	const char *user;
	const char *name;
	int64_t id; /* 0: look up by user and name */
	int result;
	uint32_t uid;
	uint32_t uidvalidity;
};

struct deliver_arg {
	const struct msg_input *msg;
	size_t *order; /* targets by (user, mailbox): one lock order for all */
	const uint8_t *data;
	size_t len;
	uint8_t sha[SHA_LEN];
	int64_t idate;
	struct dtarget *targets;
	size_t n;
};

static int
append_one(struct pg_txn *t, struct deliver_arg *a, struct dtarget *d)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	uint64_t kw;
	int64_t uid, modseq;
	bool noselect;
	int rc;

	if (d->id == 0)
		rc = pg_mbox_lookup(t, d->user, d->name, true, &d->id, &noselect);
	else
		rc = pg_mbox_lock(t, d->id, &noselect);
	if (rc != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	if ((rc = kw_bits(t, d->id, a->msg->keywords, a->msg->n_keywords, true, &kw)) != 0)
		return rc;
	pg_p_int(&p, d->id);
	rc =
	    pg_exec(t,
	            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 "
	            "WHERE id = $1 AND uidnext < 4294967295 RETURNING uidnext - 1, highestmodseq, "
	            "uidvalidity",
	            &p, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return ROOST_ETOOBIG; /* UIDs used up */
	}
	uid = pg_int(res, 0, 0);
	modseq = pg_int(res, 0, 1);
	d->uidvalidity = (uint32_t)pg_int(res, 0, 2);
	PQclear(res);
	pg_p_int(&p, uid);
	pg_p_int(&p, a->msg->flags);
	pg_p_int(&p, (int64_t)kw);
	pg_p_int(&p, modseq);
	pg_p_int(&p, a->idate);
	pg_p_int(&p, (int64_t)a->len);
	pg_p_bin(&p, a->sha, SHA_LEN);
	pg_p_int(&p, (int64_t)storage_new_emailid());
	rc = pg_exec(t,
	             "INSERT INTO messages (mailbox_id, uid, flags, keywords, modseq, "
	             "internal_date, size, sha, emailid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
	             "$9)",
	             &p, false, NULL);
	if (rc != 0)
		return rc == ROOST_EEXISTS ? ROOST_EIO : rc;
	d->uid = (uint32_t)uid;
	return 0;
}

/*
 * One transaction for every target: each mailbox is locked and given its
 * UID, the body is stored (or referenced) once, and everything commits
 * together. A target that cannot take the message (no such mailbox, too
 * many keywords) gets its own result; the others still commit.
 */
static int
t_deliver(struct pg_txn *t, void *arg)
{
	struct deliver_arg *a = arg;
	int64_t ok = 0;
	int rc;

	for (size_t i = 0; i < a->n; i++) {
		struct dtarget *d = &a->targets[a->order[i]];

		d->uid = d->uidvalidity = 0;
		rc = append_one(t, a, d);
		if (rc == ROOST_ETEMP || rc == ROOST_EIO)
			return rc; /* the transaction is unusable */
		d->result = rc;
		if (rc == 0)
			ok++;
	}
	if (ok == 0)
		return 0;
	if ((rc = body_ref(t, a->sha, a->data, a->len, ok)) != 0)
		return rc;
	for (size_t i = 0; i < a->n; i++) {
		if (a->targets[i].result == 0 &&
		    (rc = pg_notify(t, a->targets[i].user, a->targets[i].name)) != 0)
			return rc;
	}
	return 0;
}

/* The message's bytes in memory: borrowed from msg, or read from its spool
 * file into *owned_r. */
static int
msg_bytes(const struct msg_input *msg, const uint8_t **data_r, uint8_t **owned_r)
{
	uint8_t *buf;
	size_t off = 0;

	*owned_r = NULL;
	if (msg->fd < 0) {
		*data_r = msg->len > 0 ? msg->data : (const uint8_t *)"";
		return 0;
	}
	buf = xmalloc(msg->len + 1);
	while (off < msg->len) {
		ssize_t r = pread(msg->fd, buf + off, msg->len - off, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_warn("pgsql: reading the spooled message: %s",
			         r < 0 ? strerror(errno) : "shorter than announced");
			free(buf);
			return ROOST_EIO;
		}
		off += (size_t)r;
	}
	*data_r = buf;
	*owned_r = buf;
	return 0;
}

static int
target_cmp(const void *x, const void *y, void *base)
{
	const struct dtarget *t = base;
	const struct dtarget *a = &t[*(const size_t *)x], *b = &t[*(const size_t *)y];
	int c = strcmp(a->user, b->user);

	return c != 0 ? c : strcmp(a->name, b->name);
}

/* Deliveries lock their mailboxes in one order (user, then mailbox name),
 * so two multi-recipient deliveries never wait on each other in a cycle. */
static size_t *
target_order(const struct dtarget *targets, size_t n)
{
	size_t *order = xcalloc(n, sizeof(*order));

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), target_cmp, (void *)targets);
	return order;
}

static int
deliver_run(struct pg_store *ps, const struct msg_input *msg, struct dtarget *targets, size_t n)
{
	struct deliver_arg a = {.msg = msg, .len = msg->len, .targets = targets, .n = n};
	uint8_t *owned;
	unsigned int shalen = SHA_LEN;
	int rc;

	if ((rc = msg_bytes(msg, &a.data, &owned)) != 0)
		return rc;
	a.order = target_order(targets, n);
	if (EVP_Digest(a.data, a.len, a.sha, &shalen, EVP_sha256(), NULL) != 1) {
		free(a.order);
		free(owned);
		return ROOST_EIO;
	}
	a.idate = msg->internal_date != 0 ? msg->internal_date : (int64_t)time(NULL);
	rc = pg_run(ps, PG_WRITE, t_deliver, &a);
	free(a.order);
	free(owned);
	return rc;
}

int
pg_op_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
              size_t n)
{
	struct dtarget *d = xcalloc(n, sizeof(*d));
	int rc, first = 0;

	for (size_t i = 0; i < n; i++) {
		d[i].user = targets[i].user;
		d[i].name = targets[i].mailbox;
	}
	rc = deliver_run(PS(st), msg, d, n);
	for (size_t i = 0; i < n; i++) {
		targets[i].result = rc != 0 ? rc : d[i].result;
		targets[i].uid = targets[i].result == 0 ? d[i].uid : 0;
		targets[i].uidvalidity = targets[i].result == 0 ? d[i].uidvalidity : 0;
		if (first == 0)
			first = targets[i].result;
	}
	free(d);
	return first;
}

int
pg_op_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	struct pg_mailbox *pm = PM(mb);
	struct dtarget d = {.user = mb->user, .name = mb->name, .id = pm->id};
	int rc = deliver_run(pm->ps, msg, &d, 1);

	if (rc == 0)
		rc = d.result;
	if (rc == 0)
		*uid_r = d.uid;
	return rc;
}

/* ---- records, keywords ---- */

static void
rec_fill(struct msg_record *r, const PGresult *res, int row)
{
	r->uid = (uint32_t)pg_int(res, row, 0);
	r->flags = (uint32_t)pg_int(res, row, 1);
	r->keywords = (uint64_t)pg_int(res, row, 2);
	r->modseq = (uint64_t)pg_int(res, row, 3);
	r->internal_date = pg_int(res, row, 4);
	r->size = (uint64_t)pg_int(res, row, 5);
	r->emailid = (uint64_t)pg_int(res, row, 6);
}

#define REC_COLS "uid, flags, keywords, modseq, internal_date, size, emailid"

/* The mailbox row as a reader sees it; ROOST_ENOTFOUND once deleted. */
static int
mbox_row(struct pg_txn *t, int64_t id, uint64_t *hms_r, uint32_t *uidnext_r, uint64_t *floor_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_int(&p, id);
	rc = pg_exec(t,
	             "SELECT highestmodseq, uidnext, expunge_floor FROM mailboxes WHERE id = $1 "
	             "AND NOT noselect",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return ROOST_ENOTFOUND;
	}
	*hms_r = (uint64_t)pg_int(res, 0, 0);
	if (uidnext_r != NULL)
		*uidnext_r = (uint32_t)pg_int(res, 0, 1);
	if (floor_r != NULL)
		*floor_r = (uint64_t)pg_int(res, 0, 2);
	PQclear(res);
	return 0;
}

struct records_arg {
	int64_t id;
	struct msg_record *recs;
	size_t n;
	uint64_t hms;
};

static int
t_records(struct pg_txn *t, void *arg)
{
	struct records_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	free(a->recs);
	a->recs = NULL;
	a->n = 0;
	if ((rc = mbox_row(t, a->id, &a->hms, NULL, NULL)) != 0)
		return rc;
	pg_p_int(&p, a->id);
	rc = pg_exec(t, "SELECT " REC_COLS " FROM messages WHERE mailbox_id = $1 ORDER BY uid", &p,
	             false, &res);
	if (rc != 0)
		return rc;
	a->n = (size_t)PQntuples(res);
	a->recs = xcalloc(a->n + 1, sizeof(*a->recs));
	for (size_t i = 0; i < a->n; i++)
		rec_fill(&a->recs[i], res, (int)i);
	PQclear(res);
	return 0;
}

int
pg_op_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	struct records_arg a = {.id = PM(mb)->id};
	int rc = pg_run(PM(mb)->ps, PG_READ, t_records, &a);

	if (rc != 0) {
		free(a.recs);
		return rc;
	}
	*recs_r = a.recs;
	*n_r = a.n;
	if (modseq_r != NULL)
		*modseq_r = a.hms;
	return 0;
}

static int
t_keywords(struct pg_txn *t, void *arg)
{
	struct pg_mailbox *pm = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_int(&p, pm->id);
	rc = pg_exec(t, "SELECT idx, name FROM keywords WHERE mailbox_id = $1 ORDER BY idx", &p,
	             false, &res);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < pm->kw_n; i++)
		free(pm->kw_names[i]);
	pm->kw_n = 0;
	pm->kw_names = xreallocarray(pm->kw_names, (size_t)PQntuples(res) + 1, sizeof(char *));
	for (int i = 0; i < PQntuples(res); i++) {
		/* indexes are 0..n-1, given in order under the mailbox lock */
		if (pg_int(res, i, 0) != i)
			break;
		pm->kw_names[pm->kw_n++] = xstrdup(PQgetvalue(res, i, 1));
	}
	PQclear(res);
	return 0;
}

int
pg_op_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	struct pg_mailbox *pm = PM(mb);
	int rc = pg_run(pm->ps, PG_AUTO, t_keywords, pm);

	if (rc != 0)
		return rc;
	*names_r = (const char *const *)pm->kw_names;
	*n_r = pm->kw_n;
	return 0;
}

/* ---- \Recent ---- */

struct claim_arg {
	int64_t id;
	bool readonly;
	uint32_t first;
	uint32_t next;
};

static int
t_claim(struct pg_txn *t, void *arg)
{
	struct claim_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_int(&p, a->id);
	rc = pg_exec(t,
	             a->readonly ? "SELECT recent_first, uidnext FROM mailboxes WHERE id = $1 AND "
	                           "NOT noselect"
	                         : "SELECT recent_first, uidnext FROM mailboxes WHERE id = $1 AND "
	                           "NOT noselect FOR UPDATE",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return ROOST_ENOTFOUND;
	}
	a->first = (uint32_t)pg_int(res, 0, 0);
	a->next = a->readonly ? a->first : (uint32_t)pg_int(res, 0, 1);
	PQclear(res);
	if (a->next == a->first)
		return 0;
	pg_p_int(&p, a->next);
	return pg_exec(t, "UPDATE mailboxes SET recent_first = $2 WHERE id = $1", &p, false, NULL);
}

/* A claim is derived state: its commit is not waited for (a claim lost
 * in a database crash shows a message as \Recent once more). */
int
pg_op_claim_recent(struct mailbox *mb, uint32_t *first_r, uint32_t *next_r)
{
	struct claim_arg a = {.id = PM(mb)->id, .readonly = (mb->flags & MAILBOX_READONLY) != 0};
	int rc = pg_run(PM(mb)->ps, a.readonly ? PG_AUTO : PG_WRITE_LAZY, t_claim, &a);

	if (rc != 0)
		return rc;
	*first_r = a.first;
	*next_r = a.next;
	return 0;
}

/* ---- read, cache ---- */

struct read_arg {
	int64_t id;
	uint32_t uid;
	bool cache;
	PGresult *res;
};

static int
t_read(struct pg_txn *t, void *arg)
{
	struct read_arg *a = arg;
	struct pg_params p = {.n = 0};

	PQclear(a->res);
	a->res = NULL;
	pg_p_int(&p, a->id);
	pg_p_int(&p, a->uid);
	return pg_exec(t,
	               a->cache ? "SELECT cache FROM messages WHERE mailbox_id = $1 AND uid = $2 "
	                          "AND cache IS NOT NULL"
	                        : "SELECT b.data FROM messages g JOIN bodies b ON b.sha = g.sha "
	                          "WHERE g.mailbox_id = $1 AND g.uid = $2",
	               &p, true, &a->res);
}

static void
view_release(struct msg_view *view)
{
	PQclear(view->priv[0]);
	view->priv[0] = NULL;
}

/* The view is the query's result, private to this caller: holdable. */
int
pg_op_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	struct read_arg a = {.id = PM(mb)->id, .uid = uid};
	int rc = pg_run(PM(mb)->ps, PG_AUTO, t_read, &a);

	if (rc != 0) {
		PQclear(a.res);
		return rc;
	}
	if (PQntuples(a.res) != 1) {
		PQclear(a.res);
		return ROOST_ENOTFOUND;
	}
	view_r->data = (const uint8_t *)PQgetvalue(a.res, 0, 0);
	view_r->len = (size_t)PQgetlength(a.res, 0, 0);
	view_r->holdable = true;
	view_r->priv[0] = a.res;
	view_r->release = view_release;
	return 0;
}

int
pg_op_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	struct read_arg a = {.id = PM(mb)->id, .uid = uid, .cache = true};
	int rc = pg_run(PM(mb)->ps, PG_AUTO, t_read, &a);

	if (rc == 0 && PQntuples(a.res) != 1)
		rc = ROOST_ENOTFOUND;
	if (rc == 0) {
		buf_reset(out);
		if (buf_append(out, PQgetvalue(a.res, 0, 0), (size_t)PQgetlength(a.res, 0, 0)) != 0)
			rc = ROOST_ETOOBIG;
	}
	PQclear(a.res);
	return rc;
}

struct cache_arg {
	int64_t id;
	uint32_t uid;
	const void *data;
	size_t len;
};

static int
t_cache_set(struct pg_txn *t, void *arg)
{
	struct cache_arg *a = arg;
	struct pg_params p = {.n = 0};

	pg_p_int(&p, a->id);
	pg_p_int(&p, a->uid);
	pg_p_bin(&p, a->data, a->len);
	return pg_exec(t, "UPDATE messages SET cache = $3 WHERE mailbox_id = $1 AND uid = $2", &p,
	               false, NULL);
}

int
pg_op_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	struct cache_arg a = {.id = PM(mb)->id, .uid = uid, .data = data, .len = len};

	return pg_run(PM(mb)->ps, PG_WRITE_LAZY, t_cache_set, &a);
}

/* ---- store ---- */

struct store_arg {
	struct mailbox *mb;
	const uint32_t *uids;
	size_t n;
	const struct store_req *req;
	uint32_t *modified;
	size_t n_modified;
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

	free(a->modified);
	a->modified = NULL;
	a->n_modified = 0;
	if ((rc = pg_mbox_lock(t, id, &noselect)) != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	if ((rc = kw_bits(t, id, req->keywords, req->n_keywords, req->mode != STORE_REMOVE,
	                  &kwbits)) != 0 ||
	    (rc = mbox_row(t, id, &hms, NULL, NULL)) != 0)
		return rc;
	int_array(&ua, a->uids, a->n);
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
	a->modified = xcalloc((size_t)PQntuples(res) + 1, sizeof(*a->modified));
	for (int i = 0; i < PQntuples(res); i++) {
		uint32_t uid = (uint32_t)pg_int(res, i, 0), flags = (uint32_t)pg_int(res, i, 1);
		uint64_t kw = (uint64_t)pg_int(res, i, 2), modseq = (uint64_t)pg_int(res, i, 3);
		uint32_t nf;
		uint64_t nk;

		if (req->unchanged_since != 0 && modseq > req->unchanged_since) {
			a->modified[a->n_modified++] = uid;
			continue;
		}
		switch (req->mode) {
		case STORE_ADD:
			nf = flags | req->flags;
			nk = kw | kwbits;
			break;
		case STORE_REMOVE:
			nf = flags & ~req->flags;
			nk = kw & ~kwbits;
			break;
		default:
			nf = req->flags;
			nk = kwbits;
			break;
		}
		if (nf == flags && nk == kw)
			continue;
		cu[nc] = uid;
		cf[nc] = nf;
		ck[nc] = nk;
		nc++;
	}
	if (a->n_modified == 0) {
		free(a->modified);
		a->modified = NULL;
	}
	if (nc == 0)
		goto out;
	int_array(&ua, cu, nc);
	int_array(&fa, cf, nc);
	int64_array(&ka, ck, nc);
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
	rc = pg_notify(t, a->mb->user, a->mb->name);
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
            uint32_t **modified_r, size_t *n_modified_r)
{
	struct store_arg a = {.mb = mb, .uids = uids, .n = n, .req = req};
	int rc = pg_run(PM(mb)->ps, PG_WRITE, t_store, &a);

	if (rc != 0) {
		free(a.modified);
		return rc;
	}
	*modified_r = a.modified;
	*n_modified_r = a.n_modified;
	return 0;
}

/* ---- expunge ---- */

/* Drop expunge-log entries past the retention, raising the floor below
 * which changes_since() can no longer list every expunged UID. */
static int
prune_expunged(struct pg_txn *t, int64_t id)
{
	struct pg_params p = {.n = 0};

	if (t->ps->retention == 0)
		return 0;
	pg_p_int(&p, id);
	pg_p_int(&p, (int64_t)time(NULL) - (int64_t)t->ps->retention);
	return pg_exec(t,
	               "WITH d AS (DELETE FROM expunged WHERE mailbox_id = $1 AND at < $2 "
	               "RETURNING modseq) UPDATE mailboxes SET expunge_floor = GREATEST("
	               "expunge_floor, (SELECT max(modseq) FROM d)) WHERE id = $1 AND EXISTS "
	               "(SELECT 1 FROM d)",
	               &p, false, NULL);
}

/* Remove uids of mailbox id (locked by the caller), logging them at the
 * next MODSEQ; *gone_r is how many went. */
static int
remove_uids(struct pg_txn *t, int64_t id, const uint32_t *uids, size_t n, int64_t *gone_r)
{
	struct pg_params p = {.n = 0};
	struct buf ua = BUF_INIT(0);
	PGresult *res;
	int rc;

	*gone_r = 0;
	if ((rc = prune_expunged(t, id)) != 0)
		return rc;
	int_array(&ua, uids, n);
	pg_p_int(&p, id);
	pg_p_str(&p, buf_cstr(&ua));
	pg_p_int(&p, (int64_t)time(NULL));
	rc = pg_exec(
	    t,
	    "WITH m AS (SELECT highestmodseq + 1 AS seq FROM mailboxes WHERE id = $1), "
	    "gone AS (DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY "
	    "($2::bigint[]) RETURNING uid, sha, emailid), "
	    "log AS (INSERT INTO expunged (mailbox_id, uid, modseq, at, emailid) SELECT $1, "
	    "gone.uid, m.seq, $3, gone.emailid FROM gone, m), "
	    "c AS (SELECT sha, count(*) AS n FROM gone GROUP BY sha), "
	    "u AS (UPDATE bodies b SET refs = b.refs - c.n FROM c WHERE b.sha = c.sha) "
	    "SELECT count(*) FROM gone",
	    &p, false, &res);
	buf_free(&ua);
	if (rc != 0)
		return rc;
	*gone_r = pg_int(res, 0, 0);
	PQclear(res);
	if (*gone_r == 0)
		return 0;
	p.n = 1;
	if ((rc = pg_exec(t, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1",
	                  &p, false, NULL)) != 0)
		return rc;
	return bodies_collect(t);
}

struct expunge_arg {
	struct mailbox *mb;
	const uint32_t *uids;
	size_t n;
};

static int
t_expunge(struct pg_txn *t, void *arg)
{
	struct expunge_arg *a = arg;
	int64_t id = PM(a->mb)->id, gone;
	bool noselect;
	int rc;

	if ((rc = pg_mbox_lock(t, id, &noselect)) != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	if ((rc = remove_uids(t, id, a->uids, a->n, &gone)) != 0)
		return rc;
	return gone > 0 ? pg_notify(t, a->mb->user, a->mb->name) : 0;
}

int
pg_op_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct expunge_arg a = {.mb = mb, .uids = uids, .n = n};

	return pg_run(PM(mb)->ps, PG_WRITE, t_expunge, &a);
}

/* ---- copy and move ---- */

struct copy_arg {
	struct mailbox *mb;
	const uint32_t *uids;
	size_t n;
	const char *dest;
	bool move;
	uint32_t uidvalidity;
	uint32_t *src;
	uint32_t *dst;
	size_t n_copied;
};

/* The destination's bit for each of the source's keyword bits. */
static int
kw_map(struct pg_txn *t, int64_t sid, int64_t did, int map[64])
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	for (int i = 0; i < 64; i++)
		map[i] = -1;
	pg_p_int(&p, sid);
	rc = pg_exec(t, "SELECT idx, name FROM keywords WHERE mailbox_id = $1 ORDER BY idx", &p,
	             false, &res);
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
	int64_t sid = PM(a->mb)->id, did, base, seq, gone;
	struct pg_params p = {.n = 0};
	struct buf ua = BUF_INIT(0), na = BUF_INIT(0), ka = BUF_INIT(0);
	uint64_t *nk = NULL;
	int map[64];
	PGresult *res = NULL, *src = NULL;
	bool sns = false, dns = false;
	size_t k;
	int rc;

	free(a->src);
	free(a->dst);
	a->src = a->dst = NULL;
	a->n_copied = 0;
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
	int_array(&ua, a->uids, a->n);
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
	a->src = xcalloc(k + 1, sizeof(*a->src));
	a->dst = xcalloc(k + 1, sizeof(*a->dst));
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
	a->uidvalidity = (uint32_t)pg_int(res, 0, 2);
	for (size_t i = 0; i < k; i++) {
		uint64_t kw = (uint64_t)pg_int(src, (int)i, 1);

		a->src[i] = (uint32_t)pg_int(src, (int)i, 0);
		a->dst[i] = (uint32_t)(base + (int64_t)i);
		for (int b = 0; b < 64; b++) {
			if ((kw & (1ULL << b)) != 0 && map[b] >= 0)
				nk[i] |= 1ULL << map[b];
		}
	}
	a->n_copied = k;
	int_array(&ua, a->src, k);
	int_array(&na, a->dst, k);
	int64_array(&ka, nk, k);
	p.n = 0;
	pg_p_int(&p, did);
	pg_p_int(&p, sid);
	pg_p_int(&p, seq);
	pg_p_str(&p, buf_cstr(&ua));
	pg_p_str(&p, buf_cstr(&na));
	pg_p_str(&p, buf_cstr(&ka));
	if ((rc =
	         pg_exec(t,
	                 "INSERT INTO messages (mailbox_id, uid, flags, keywords, modseq, "
	                 "internal_date, size, sha, cache, emailid) SELECT $1, v.nu, g.flags, v.k, "
	                 "$3, g.internal_date, g.size, g.sha, g.cache, g.emailid FROM messages g "
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
	if (a->move && (rc = remove_uids(t, sid, a->src, k, &gone)) != 0)
		goto out;
	if ((rc = pg_notify(t, a->mb->user, a->dest)) == 0 && a->move)
		rc = pg_notify(t, a->mb->user, a->mb->name);
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
           uint32_t *dest_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dest_uids_r, size_t *n_r)
{
	struct copy_arg a = {.mb = mb, .uids = uids, .n = n, .dest = dest, .move = move};
	int rc = pg_run(PM(mb)->ps, PG_WRITE, t_copy, &a);

	if (rc != 0) {
		free(a.src);
		free(a.dst);
		return rc;
	}
	if (dest_uidvalidity_r != NULL)
		*dest_uidvalidity_r = a.uidvalidity;
	*src_uids_r = a.src;
	*dest_uids_r = a.dst;
	*n_r = a.n_copied;
	return 0;
}

/* ---- changes since ---- */

struct changes_arg {
	int64_t id;
	uint64_t since;
	struct mailbox_changes *ch;
};

static int
t_changes(struct pg_txn *t, void *arg)
{
	struct changes_arg *a = arg;
	struct mailbox_changes *ch = a->ch;
	struct pg_params p = {.n = 0};
	PGresult *res;
	uint64_t floor;
	int rc;

	mailbox_changes_free(ch);
	if ((rc = mbox_row(t, a->id, &ch->highestmodseq, &ch->uidnext, &floor)) != 0)
		return rc;
	ch->expunged_complete = a->since >= floor;
	pg_p_int(&p, a->id);
	pg_p_int(&p, (int64_t)a->since);
	rc = pg_exec(t,
	             "SELECT " REC_COLS " FROM messages WHERE mailbox_id = $1 AND modseq > $2 "
	             "ORDER BY uid",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	ch->n_changed = (size_t)PQntuples(res);
	ch->changed = xcalloc(ch->n_changed + 1, sizeof(*ch->changed));
	for (size_t i = 0; i < ch->n_changed; i++)
		rec_fill(&ch->changed[i], res, (int)i);
	PQclear(res);
	rc = pg_exec(t,
	             "SELECT uid, coalesce(emailid, 0) FROM expunged WHERE mailbox_id = $1 AND "
	             "modseq > $2 ORDER BY uid",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	ch->n_expunged = (size_t)PQntuples(res);
	ch->expunged = xcalloc(ch->n_expunged + 1, sizeof(*ch->expunged));
	ch->expunged_emailids = xcalloc(ch->n_expunged + 1, sizeof(*ch->expunged_emailids));
	for (size_t i = 0; i < ch->n_expunged; i++) {
		ch->expunged[i] = (uint32_t)pg_int(res, (int)i, 0);
		ch->expunged_emailids[i] = (uint64_t)pg_int(res, (int)i, 1);
	}
	PQclear(res);
	return 0;
}

int
pg_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r)
{
	struct changes_arg a = {.id = PM(mb)->id, .since = modseq, .ch = changes_r};
	int rc = pg_run(PM(mb)->ps, PG_READ, t_changes, &a);

	if (rc != 0)
		mailbox_changes_free(changes_r);
	return rc;
}
