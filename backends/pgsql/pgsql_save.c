/*
 * Delivery and append on the PostgreSQL backend: each body stored once by
 * its SHA-256 and reference-counted, one transaction per delivery taking
 * the mailboxes' row locks in one order, so concurrent deliveries never
 * deadlock.
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

int
pg_bodies_collect(struct pg_txn *t)
{
	return pg_exec(t, "DELETE FROM bodies WHERE refs = 0", NULL, false, NULL);
}

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
	if ((rc = pg_kw_bits(t, d->id, a->msg->keywords, a->msg->n_keywords, true, &kw)) != 0)
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
	pg_p_int(&p, (int64_t)time(NULL));
	pg_p_bin(&p, a->msg->cache, a->msg->cache_len); /* the parse cache; '' is none */
	rc = pg_exec(t,
	             "INSERT INTO messages (mailbox_id, uid, flags, keywords, modseq, "
	             "internal_date, size, sha, emailid, save_date, cache) VALUES ($1, $2, $3, "
	             "$4, $5, $6, $7, $8, $9, $10, NULLIF($11, ''::bytea))",
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
			log_warn("event=storage_error op=read_spool backend=pgsql error=\"%s\"",
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
