/*
 * Delivery and append on the PostgreSQL backend: each body stored once by
 * its SHA-256 and reference-counted, one transaction per delivery taking
 * the mailboxes' row locks in one order, so concurrent deliveries never
 * deadlock.
 */
#include <errno.h>
#include <inttypes.h>
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

#define BODY_UPSERT_MAX (64 * 1024)

/* Add refs references to body sha, storing data when it is new. */
static int
body_ref(struct pg_txn *t, const uint8_t *sha, const uint8_t *data, size_t len, int64_t refs)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc, updated;

	pg_p_bin(&p, sha, PG_SHA_LEN);
	pg_p_int(&p, refs);
	/* A small body goes in one round trip, sent even when it is there
	 * already; a large one is sent only when the UPDATE finds none. */
	if (len <= BODY_UPSERT_MAX)
		goto insert;
	rc = pg_exec(t, "UPDATE bodies SET refs = refs + $2 WHERE sha = $1", &p, false, &res);
	if (rc != 0)
		return rc;
	updated = atoi(PQcmdTuples(res));
	PQclear(res);
	if (updated == 1)
		return 0;
	/* New here, or its last reference went while this waited: store it.
	 * Two nodes storing the same new body meet in ON CONFLICT. */
insert:
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

/* Take the next UID and MODSEQ of a mailbox whose row the caller locked. */
static int
take_uid(struct pg_txn *t, struct pg_dtarget *d)
{
	PGresult *res;
	int rc = pg_exec_id(t,
	                    "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = "
	                    "highestmodseq + 1 WHERE id = $1 AND uidnext < 4294967295 RETURNING "
	                    "uidnext - 1, highestmodseq, uidvalidity",
	                    d->id, &res);

	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return ROOST_ETOOBIG; /* UIDs used up */
	}
	d->uid = (uint32_t)pg_int(res, 0, 0);
	d->modseq = pg_int(res, 0, 1);
	d->uidvalidity = (uint32_t)pg_int(res, 0, 2);
	PQclear(res);
	return 0;
}

/*
 * Lock the target's mailbox and take its UID: without keywords one UPDATE
 * does it all (the row lock is the UPDATE's own); when that finds no row
 * (no such mailbox, \Noselect, UIDs used up) or keywords must be added
 * first, the lock is taken on its own and each case told apart.
 */
static int
alloc_one(struct pg_txn *t, struct pg_deliver_arg *a, struct pg_dtarget *d)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	bool noselect;
	int rc;

	d->kw = 0;
	if (a->msg->n_keywords == 0) {
		if (d->id == 0) {
			pg_p_str(&p, d->user);
			pg_p_str(&p, d->name);
		} else {
			pg_p_int(&p, d->id);
		}
		rc = pg_exec(
		    t,
		    d->id == 0 ? "UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = "
		                 "m.highestmodseq + 1 FROM users u WHERE u.id = m.user_id AND "
		                 "u.name = $1 AND m.name = $2 AND NOT m.noselect AND m.uidnext < "
		                 "4294967295 RETURNING m.id, m.uidnext - 1, m.highestmodseq, "
		                 "m.uidvalidity"
		               : "UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = "
		                 "m.highestmodseq + 1 WHERE m.id = $1 AND NOT m.noselect AND "
		                 "m.uidnext < 4294967295 RETURNING m.id, m.uidnext - 1, "
		                 "m.highestmodseq, m.uidvalidity",
		    &p, false, &res);
		if (rc != 0)
			return rc;
		if (PQntuples(res) == 1) {
			d->id = pg_int(res, 0, 0);
			d->uid = (uint32_t)pg_int(res, 0, 1);
			d->modseq = pg_int(res, 0, 2);
			d->uidvalidity = (uint32_t)pg_int(res, 0, 3);
			PQclear(res);
			return 0;
		}
		PQclear(res);
	}
	if (d->id == 0)
		rc = pg_mbox_lookup(t, d->user, d->name, true, &d->id, &noselect);
	else
		rc = pg_mbox_lock(t, d->id, &noselect);
	if (rc != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	if ((rc = pg_kw_bits(t, d->id, a->msg->keywords, a->msg->n_keywords, true, &d->kw)) != 0)
		return rc;
	return take_uid(t, d);
}

/* "{...}" of signed 64-bit values, a bigint[] parameter in text form. */
void
pg_sint64_array(struct buf *b, const int64_t *v, size_t n)
{
	buf_reset(b);
	buf_append_byte(b, '{');
	for (size_t i = 0; i < n; i++)
		buf_printf(b, i == 0 ? "%lld" : ",%lld", (long long)v[i]);
	buf_append_byte(b, '}');
}

/* One INSERT for the records of every target that took a UID: one round
 * trip, and one run of the statement triggers, however many recipients. */
static int
insert_all(struct pg_txn *t, struct pg_deliver_arg *a)
{
	enum { ID, UID, KW, MODSEQ, EMAILID, N_COLS };
	struct buf arr[N_COLS];
	int64_t *col[N_COLS];
	struct pg_params p = {.n = 0};
	size_t k = 0;
	int rc;

	for (int c = 0; c < N_COLS; c++) {
		buf_init(&arr[c], 0);
		col[c] = xcalloc(a->n, sizeof(**col));
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct pg_dtarget *d = &a->targets[a->order[i]];

		if (d->result != 0 || d->stored)
			continue;
		col[ID][k] = d->id;
		col[UID][k] = d->uid;
		col[KW][k] = (int64_t)d->kw;
		col[MODSEQ][k] = d->modseq;
		col[EMAILID][k] = (int64_t)storage_new_emailid();
		k++;
	}
	for (int c = 0; c < N_COLS; c++) {
		pg_sint64_array(&arr[c], col[c], k);
		pg_p_str(&p, buf_cstr(&arr[c]));
	}
	pg_p_record(&p, a);
	rc = pg_exec(t,
	             "INSERT INTO messages (mailbox_id, uid, flags, keywords, modseq, "
	             "internal_date, size, sha, emailid, save_date, cache) SELECT x.id, x.uid, $6, "
	             "x.kw, x.modseq, $7, $8, $9, x.emailid, $10, NULLIF($11, ''::bytea) FROM "
	             "unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) "
	             "AS x (id, uid, kw, modseq, emailid)",
	             &p, false, NULL);
	for (int c = 0; c < N_COLS; c++) {
		buf_free(&arr[c]);
		free(col[c]);
	}
	return rc == ROOST_EEXISTS ? ROOST_EIO : rc;
}

/* An element of a text[] parameter in text form: quoted, with " and \
 * escaped (names may hold either). */
static void
text_element(struct buf *b, const char *s)
{
	buf_append_byte(b, '"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_append_byte(b, '\\');
		buf_append_byte(b, (uint8_t)*s);
	}
	buf_append_byte(b, '"');
}

void
pg_p_target_names(struct pg_params *p, const struct pg_deliver_arg *a, bool pending,
                  struct buf *users, struct buf *names)
{
	size_t k = 0;

	buf_append_byte(users, '{');
	buf_append_byte(names, '{');
	for (size_t i = 0; i < a->n; i++) {
		if (pending && (a->targets[i].result != 0 || a->targets[i].stored))
			continue;
		if (k++ > 0) {
			buf_append_byte(users, ',');
			buf_append_byte(names, ',');
		}
		text_element(users, a->targets[i].user);
		text_element(names, a->targets[i].name);
	}
	buf_append_byte(users, '}');
	buf_append_byte(names, '}');
	pg_p_str(p, buf_cstr(users));
	pg_p_str(p, buf_cstr(names));
}

void
pg_p_record(struct pg_params *p, const struct pg_deliver_arg *a)
{
	pg_p_int(p, a->msg->flags);
	pg_p_int(p, a->idate);
	pg_p_int(p, (int64_t)a->len);
	pg_p_bin(p, a->sha, PG_SHA_LEN);
	pg_p_int(p, (int64_t)time(NULL));
	pg_p_bin(p, a->msg->cache, a->msg->cache_len); /* the parse cache; '' is none */
}

/* pg_notify() for every target that took the message, in one statement,
 * naming each mailbox's id and the MODSEQ the message took there: the
 * other nodes fetch the change for their sessions ahead of them
 * (pgsql_listen.c). */
static int
notify_all(struct pg_txn *t, struct pg_deliver_arg *a)
{
	struct buf users = BUF_INIT(0), names = BUF_INIT(0), ids = BUF_INIT(0),
	           modseqs = BUF_INIT(0);
	int64_t *id = xcalloc(a->n + 1, sizeof(*id)), *ms = xcalloc(a->n + 1, sizeof(*ms));
	struct pg_params p = {.n = 0};
	char node[24];
	size_t k = 0;
	int rc;

	for (size_t i = 0; i < a->n; i++) {
		if (a->targets[i].result != 0 || a->targets[i].stored)
			continue;
		id[k] = a->targets[i].id;
		ms[k] = a->targets[i].modseq;
		k++;
	}
	pg_sint64_array(&ids, id, k);
	pg_sint64_array(&modseqs, ms, k);
	snprintf(node, sizeof(node), "%016" PRIx64, t->ps->node);
	pg_p_str(&p, node);
	pg_p_target_names(&p, a, true, &users, &names);
	pg_p_str(&p, buf_cstr(&ids));
	pg_p_str(&p, buf_cstr(&modseqs));
	t->notified = true;
	rc = pg_exec(t,
	             "SELECT pg_notify('" PG_CHANNEL "', $1 || '/' || x.i || '/' || x.ms || ' ' || "
	             "x.u || chr(9) || x.m) FROM unnest($2::text[], $3::text[], $4::bigint[], "
	             "$5::bigint[]) AS x (u, m, i, ms)",
	             &p, false, NULL);
	buf_free(&users);
	buf_free(&names);
	buf_free(&ids);
	buf_free(&modseqs);
	free(id);
	free(ms);
	return rc;
}

/*
 * One transaction for every target: each mailbox is locked and given its
 * UID, the body is stored (or referenced) once, and everything commits
 * together. A target that cannot take the message (no such mailbox, too
 * many keywords) gets its own result; the others still commit. The round
 * trips are one per target plus four, whatever the number of targets:
 * a delivery to 50 users took 250 before, the time every IDLE session of
 * the 50 waited to hear of it.
 */
static int
t_deliver(struct pg_txn *t, void *arg)
{
	struct pg_deliver_arg *a = arg;
	int64_t fresh = 0;
	int rc;

	for (size_t i = 0; i < a->n; i++) {
		a->targets[i].uid = a->targets[i].uidvalidity = 0;
		a->targets[i].result = 1; /* not allocated yet */
		a->targets[i].stored = false;
	}
	if (pg_batch_fits(a)) {
		if (a->len <= BODY_UPSERT_MAX)
			rc = pg_store_batch(t, a);
		else
			rc = a->n >= 2 ? pg_alloc_batch(t, a) : 0;
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < a->n; i++) {
		struct pg_dtarget *d = &a->targets[a->order[i]];

		if (d->result == 0) {
			fresh += !d->stored;
			continue;
		}
		rc = alloc_one(t, a, d);
		if (rc == ROOST_ETEMP || rc == ROOST_EIO)
			return rc; /* the transaction is unusable */
		d->result = rc;
		if (rc == 0)
			fresh++;
	}
	/* the targets pg_store_batch() did not take, and pg_alloc_batch()'s */
	if (fresh == 0)
		return 0;
	if ((rc = insert_all(t, a)) != 0 || (rc = body_ref(t, a->sha, a->data, a->len, fresh)) != 0)
		return rc;
	return notify_all(t, a);
}

/*
 * Group commit. A delivery to one mailbox waits in ps->group_head's queue
 * while GROUP_LEADERS groups are under way; else the first to find the
 * queue waiting leads: it takes up to group_max deliveries from the head,
 * runs them one after the other in one transaction, and every one of them
 * returns when that transaction has committed (synchronous_commit on: an
 * accepted message is still a committed one). Sixteen writers on a node
 * made sixteen commits, each its own WAL flush, and the deliveries to one
 * mailbox queued on its row lock behind each commit; a few groups at once
 * keep the statements of several groups running while one commits (one
 * group alone, its statements one after the other, delivered less than
 * one commit per delivery did). A group takes its mailboxes' locks in the
 * order of their names, as a delivery to several mailboxes does, so
 * groups never wait on each other in a cycle, here or on another node;
 * a delivery to several mailboxes runs alone. When a delivery fails
 * inside the group (an error that spoils the transaction), the group is
 * rolled back and each delivery is run alone, as before; when the COMMIT
 * itself breaks, its outcome is unknown and every delivery of the group is
 * told to try again later, as a lone delivery is (pg_run()).
 */
#define GROUP_MAX_DEFAULT 4
#define GROUP_LEADERS 4

struct pg_group_req {
	struct pg_group_req *next;
	struct pg_deliver_arg *a;
	bool done;
	int rc;
};

struct group_arg {
	struct pg_group_req **reqs;
	size_t n;
	bool fn_failed; /* the last run of t_group() failed before COMMIT */
};

unsigned
pg_group_max(void)
{
	const char *v = getenv("ROOST_PGSQL_MAX_BATCH");
	unsigned long n;
	char *end;

	if (v == NULL || *v == '\0')
		return GROUP_MAX_DEFAULT;
	n = strtoul(v, &end, 10);
	return *end == '\0' && n >= 1 && n <= 1000 ? (unsigned)n : GROUP_MAX_DEFAULT;
}

static int
t_group(struct pg_txn *t, void *arg)
{
	struct group_arg *g = arg;

	g->fn_failed = true;
	for (size_t i = 0; i < g->n; i++) {
		int rc = t_deliver(t, g->reqs[i]->a);

		if (rc != 0)
			return rc;
	}
	g->fn_failed = false;
	return 0;
}

static void
count_commit(struct pg_store *ps, size_t deliveries)
{
	__atomic_add_fetch(&ps->n_commits, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&ps->n_writes, deliveries, __ATOMIC_RELAXED);
}

static int
deliver_alone(struct pg_store *ps, struct pg_deliver_arg *a)
{
	int rc = pg_run(ps, PG_WRITE, t_deliver, a);

	if (rc == 0)
		count_commit(ps, 1);
	return rc;
}

/* A delivery's first mailbox in its lock order, for ordering a group. */
static int
req_cmp(const void *x, const void *y)
{
	const struct pg_deliver_arg *a = (*(struct pg_group_req *const *)x)->a;
	const struct pg_deliver_arg *b = (*(struct pg_group_req *const *)y)->a;
	const struct pg_dtarget *da = &a->targets[a->order[0]], *db = &b->targets[b->order[0]];
	int c = strcmp(da->user, db->user);

	return c != 0 ? c : strcmp(da->name, db->name);
}

static void
group_run(struct pg_store *ps, struct pg_group_req **reqs, size_t n)
{
	struct group_arg g = {.reqs = reqs, .n = n};
	int rc;

	if (n == 1) {
		reqs[0]->rc = deliver_alone(ps, reqs[0]->a);
		return;
	}
	qsort(reqs, n, sizeof(*reqs), req_cmp);
	rc = pg_run(ps, PG_WRITE, t_group, &g);
	if (rc == 0)
		count_commit(ps, n);
	for (size_t i = 0; i < n; i++) {
		if (rc != 0 && g.fn_failed)
			reqs[i]->rc = deliver_alone(ps, reqs[i]->a);
		else
			reqs[i]->rc = rc;
	}
}

static int
group_deliver(struct pg_store *ps, struct pg_deliver_arg *a)
{
	struct pg_group_req me = {.a = a};

	if (ps->group_max <= 1 || a->n != 1)
		return deliver_alone(ps, a);
	pthread_mutex_lock(&ps->group_lock);
	*ps->group_tail = &me;
	ps->group_tail = &me.next;
	for (;;) {
		struct pg_group_req **batch;
		size_t n = 0;

		/* an empty queue: a leader took us, and will say when it is done */
		while (!me.done && (ps->group_leaders >= GROUP_LEADERS || ps->group_head == NULL))
			pthread_cond_wait(&ps->group_cond, &ps->group_lock);
		if (me.done)
			break;
		/* lead: the queue's head, which holds us unless it is long */
		ps->group_leaders++;
		batch = xcalloc(ps->group_max, sizeof(*batch));
		while (n < ps->group_max && ps->group_head != NULL) {
			batch[n++] = ps->group_head;
			ps->group_head = ps->group_head->next;
		}
		if (ps->group_head == NULL)
			ps->group_tail = &ps->group_head;
		pthread_mutex_unlock(&ps->group_lock);
		group_run(ps, batch, n);
		pthread_mutex_lock(&ps->group_lock);
		for (size_t i = 0; i < n; i++)
			batch[i]->done = true;
		ps->group_leaders--;
		pthread_cond_broadcast(&ps->group_cond);
		free(batch);
	}
	pthread_mutex_unlock(&ps->group_lock);
	return me.rc;
}

void
pg_group_state(struct storage *st, size_t *queued_r, unsigned *leaders_r)
{
	struct pg_store *ps = PS(st);
	size_t n = 0;

	pthread_mutex_lock(&ps->group_lock);
	for (struct pg_group_req *r = ps->group_head; r != NULL; r = r->next)
		n++;
	*leaders_r = (unsigned)ps->group_leaders;
	pthread_mutex_unlock(&ps->group_lock);
	*queued_r = n;
}

void
pg_op_stats(struct storage *st, struct storage_stats *stats_r)
{
	struct pg_store *ps = PS(st);

	stats_r->commits = __atomic_load_n(&ps->n_commits, __ATOMIC_RELAXED);
	stats_r->writes = __atomic_load_n(&ps->n_writes, __ATOMIC_RELAXED);
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
	const struct pg_dtarget *t = base;
	const struct pg_dtarget *a = &t[*(const size_t *)x], *b = &t[*(const size_t *)y];
	int c = strcmp(a->user, b->user);

	return c != 0 ? c : strcmp(a->name, b->name);
}

/* Deliveries lock their mailboxes in one order (user, then mailbox name),
 * so two multi-recipient deliveries never wait on each other in a cycle. */
static size_t *
target_order(const struct pg_dtarget *targets, size_t n)
{
	size_t *order = xcalloc(n, sizeof(*order));

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), target_cmp, (void *)targets);
	return order;
}

static int
deliver_run(struct pg_store *ps, const struct msg_input *msg, struct pg_dtarget *targets, size_t n)
{
	struct pg_deliver_arg a = {.msg = msg, .len = msg->len, .targets = targets, .n = n};
	uint8_t *owned;
	unsigned int shalen = PG_SHA_LEN;
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
	rc = group_deliver(ps, &a);
	free(a.order);
	free(owned);
	return rc;
}

int
pg_op_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
              size_t n)
{
	struct pg_dtarget *d = xcalloc(n, sizeof(*d));
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
	struct pg_dtarget d = {.user = mb->user, .name = mb->name, .id = pm->id};
	int rc = deliver_run(pm->ps, msg, &d, 1);

	if (rc == 0)
		rc = d.result;
	if (rc == 0)
		*uid_r = d.uid;
	return rc;
}
