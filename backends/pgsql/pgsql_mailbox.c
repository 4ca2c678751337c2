/*
 * Mailboxes of the PostgreSQL backend: lookups, users, create, delete,
 * rename, subscriptions, listing, imported UIDs, status and opening a
 * mailbox. The store itself (open, close, the ops table) is in
 * pgsql_storage.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsql_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- lookups ---- */

int
pg_mbox_lookup(struct pg_txn *t, const char *user, const char *name, bool lock, int64_t *id_r,
               bool *noselect_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_str(&p, user);
	pg_p_str(&p, name);
	rc = pg_exec_row(t,
	                 lock ? "SELECT m.id, m.noselect FROM mailboxes m JOIN users u ON u.id = "
	                        "m.user_id WHERE u.name = $1 AND m.name = $2 FOR UPDATE OF m"
	                      : "SELECT m.id, m.noselect FROM mailboxes m JOIN users u ON u.id = "
	                        "m.user_id WHERE u.name = $1 AND m.name = $2",
	                 &p, false, &res);
	if (rc != 0)
		return rc;
	*id_r = pg_int(res, 0, 0);
	if (noselect_r != NULL)
		*noselect_r = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return 0;
}

int
pg_mbox_lock(struct pg_txn *t, int64_t id, bool *noselect_r)
{
	PGresult *res;
	int rc =
	    pg_exec_id_row(t, "SELECT noselect FROM mailboxes WHERE id = $1 FOR UPDATE", id, &res);

	if (rc != 0)
		return rc;
	*noselect_r = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return 0;
}

/* The user's id, the row made when absent. */
static int
user_id(struct pg_txn *t, const char *user, int64_t *id_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_str(&p, user);
	for (int i = 0; i < 2; i++) {
		rc = pg_exec(t, "SELECT id FROM users WHERE name = $1", &p, false, &res);
		if (rc != 0)
			return rc;
		if (PQntuples(res) == 1) {
			*id_r = pg_int(res, 0, 0);
			PQclear(res);
			return 0;
		}
		PQclear(res);
		/* a user made by another node meanwhile is found again */
		rc =
		    pg_exec(t, "INSERT INTO users (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
		            &p, false, NULL);
		if (rc != 0)
			return rc;
	}
	return ROOST_EIO;
}

/* Make mailbox name of user uid; ROOST_EEXISTS when it is there. */
static int
create_one(struct pg_txn *t, int64_t uid, const char *name, unsigned special_use)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_int(&p, uid);
	pg_p_str(&p, name);
	pg_p_int(&p, special_use);
	rc = pg_exec(t,
	             "INSERT INTO mailboxes (user_id, name, uidvalidity, special_use) VALUES ($1, "
	             "$2, nextval('uidvalidity_seq'), $3) ON CONFLICT (user_id, name) DO NOTHING "
	             "RETURNING id",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	rc = PQntuples(res) == 1 ? 0 : ROOST_EEXISTS;
	PQclear(res);
	return rc;
}

struct parent_arg {
	struct pg_txn *t;
	int64_t uid;
};

static int
create_parent(const char *parent, void *arg)
{
	struct parent_arg *a = arg;
	int rc = create_one(a->t, a->uid, parent, 0);

	return rc == ROOST_EEXISTS ? 0 : rc;
}

/* The missing parents of name ("a/b/c": "a", "a/b"). */
static int
create_parents(struct pg_txn *t, int64_t uid, const char *name)
{
	struct parent_arg a = {.t = t, .uid = uid};

	return storage_name_parents(name, create_parent, &a);
}

/* ---- user_init, create, delete ---- */

struct mbox_arg {
	const char *user;
	const char *name;
	const char *to;
	unsigned special_use;
	bool on;
};

static int
t_user_init(struct pg_txn *t, void *arg)
{
	struct mbox_arg *a = arg;
	int64_t uid;
	int rc;

	if ((rc = user_id(t, a->user, &uid)) != 0 || (rc = create_one(t, uid, "INBOX", 0)) != 0)
		return rc;
	return pg_notify(t, a->user, "INBOX");
}

int
pg_op_user_init(struct storage *st, const char *user)
{
	struct mbox_arg a = {.user = user};

	return pg_run(PS(st), PG_WRITE, t_user_init, &a);
}

static int
t_create(struct pg_txn *t, void *arg)
{
	struct mbox_arg *a = arg;
	struct pg_params p = {.n = 0};
	int64_t uid, id;
	bool noselect;
	int rc;

	if ((rc = user_id(t, a->user, &uid)) != 0)
		return rc;
	rc = pg_mbox_lookup(t, a->user, a->name, true, &id, &noselect);
	if (rc == 0) {
		/* A \Noselect parent left by a delete becomes a real mailbox
		 * again; it keeps its UIDNEXT so no UID is reused. */
		if (!noselect)
			return ROOST_EEXISTS;
		pg_p_int(&p, id);
		pg_p_int(&p, a->special_use);
		rc = pg_exec(t,
		             "UPDATE mailboxes SET noselect = false, special_use = $2, "
		             "uidvalidity = nextval('uidvalidity_seq') WHERE id = $1",
		             &p, false, NULL);
	} else if (rc == ROOST_ENOTFOUND) {
		if ((rc = create_parents(t, uid, a->name)) == 0)
			rc = create_one(t, uid, a->name, a->special_use);
	}
	if (rc == 0)
		rc = pg_notify(t, a->user, a->name);
	return rc;
}

int
pg_op_create(struct storage *st, const char *user, const char *name, unsigned special_use)
{
	struct mbox_arg a = {.user = user, .name = name, .special_use = special_use};

	return pg_run(PS(st), PG_WRITE, t_create, &a);
}

/* Does user's mailbox name have children? */
static int
has_children(struct pg_txn *t, const char *user, const char *name, bool *kids_r)
{
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_str(&p, user);
	pg_p_str(&p, name);
	rc = pg_exec(t,
	             "SELECT EXISTS (SELECT 1 FROM mailboxes m JOIN users u ON u.id = m.user_id "
	             "WHERE u.name = $1 AND left(m.name, length($2) + 1) = $2 || '/')",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	*kids_r = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return 0;
}

/* Drop every message of mailbox id, and the bodies no one else holds. */
static int
purge_messages(struct pg_txn *t, int64_t id)
{
	struct pg_params p = {.n = 0};
	int rc;

	pg_p_int(&p, id);
	rc = pg_exec(t,
	             "WITH gone AS (DELETE FROM messages WHERE mailbox_id = $1 RETURNING sha), "
	             "c AS (SELECT sha, count(*) AS n FROM gone GROUP BY sha) "
	             "UPDATE bodies b SET refs = b.refs - c.n FROM c WHERE b.sha = c.sha",
	             &p, false, NULL);
	if (rc == 0)
		rc = pg_exec(t, "DELETE FROM bodies WHERE refs = 0", NULL, false, NULL);
	if (rc == 0)
		rc = pg_exec(t, "DELETE FROM keywords WHERE mailbox_id = $1", &p, false, NULL);
	return rc;
}

static int
t_delete(struct pg_txn *t, void *arg)
{
	struct mbox_arg *a = arg;
	struct pg_params p = {.n = 0};
	bool noselect, kids;
	int64_t id;
	int rc;

	if ((rc = pg_mbox_lookup(t, a->user, a->name, true, &id, &noselect)) != 0 ||
	    (rc = has_children(t, a->user, a->name, &kids)) != 0)
		return rc;
	if (kids && noselect)
		return ROOST_EPERM; /* RFC 3501 6.3.4 */
	if ((rc = purge_messages(t, id)) != 0)
		return rc;
	pg_p_int(&p, id);
	if (kids) {
		/* Stays as a \Noselect parent; UIDNEXT kept. */
		rc =
		    pg_exec(t,
		            "UPDATE mailboxes SET noselect = true, highestmodseq = highestmodseq + "
		            "1, recent_first = uidnext, metadata = NULL WHERE id = $1",
		            &p, false, NULL);
	} else {
		rc = pg_exec(t, "DELETE FROM mailboxes WHERE id = $1", &p, false, NULL);
	}
	if (rc == 0)
		rc = pg_notify(t, a->user, a->name);
	return rc;
}

int
pg_op_delete(struct storage *st, const char *user, const char *name)
{
	struct mbox_arg a = {.user = user, .name = name};

	return pg_run(PS(st), PG_WRITE, t_delete, &a);
}

/* ---- rename ---- */

static int
t_rename(struct pg_txn *t, void *arg)
{
	struct mbox_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int64_t uid, id, other;
	bool noselect;
	int rc;

	if ((rc = user_id(t, a->user, &uid)) != 0 ||
	    (rc = pg_mbox_lookup(t, a->user, a->name, true, &id, &noselect)) != 0)
		return rc;
	rc = pg_mbox_lookup(t, a->user, a->to, false, &other, NULL);
	if (rc != ROOST_ENOTFOUND)
		return rc == 0 ? ROOST_EEXISTS : rc;
	if ((rc = create_parents(t, uid, a->to)) != 0)
		return rc;
	if (strcmp(a->name, "INBOX") == 0) {
		/* RFC 3501 6.3.5: INBOX's messages move to the new name (the
		 * whole mailbox, UIDVALIDITY included), INBOX starts afresh and
		 * keeps its children. */
		pg_p_int(&p, id);
		pg_p_str(&p, a->to);
		if ((rc = pg_exec(t, "UPDATE mailboxes SET name = $2 WHERE id = $1", &p, false,
		                  NULL)) != 0 ||
		    (rc = create_one(t, uid, "INBOX", 0)) != 0)
			return rc;
		return pg_notify(t, a->user, "");
	}
	/* Every new name must be free (children too), then all move. */
	pg_p_int(&p, uid);
	pg_p_str(&p, a->name);
	pg_p_str(&p, a->to);
	rc = pg_exec(t,
	             "SELECT 1 FROM mailboxes m WHERE m.user_id = $1 AND left(m.name, length($2) "
	             "+ 1) = $2 || '/' AND (length($3) + length(m.name) - length($2) > " STR(
	                 STORAGE_MAX_NAME) " OR EXISTS (SELECT 1 FROM mailboxes o WHERE o.user_id "
	                                   "= $1 AND o.name = $3 || substr(m.name, length($2) + "
	                                   "1)))",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	rc = PQntuples(res) > 0 ? ROOST_EEXISTS : 0;
	PQclear(res);
	if (rc != 0)
		return rc;
	rc = pg_exec(t,
	             "UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1) WHERE user_id "
	             "= $1 AND (name = $2 OR left(name, length($2) + 1) = $2 || '/')",
	             &p, false, NULL);
	if (rc == 0)
		rc = pg_notify(t, a->user, "");
	return rc;
}

int
pg_op_rename(struct storage *st, const char *user, const char *from, const char *to)
{
	struct mbox_arg a = {.user = user, .name = from, .to = to};

	return pg_run(PS(st), PG_WRITE, t_rename, &a);
}

/* ---- subscriptions ---- */

static int
t_subscribe(struct pg_txn *t, void *arg)
{
	struct mbox_arg *a = arg;
	struct pg_params p = {.n = 0};
	int64_t uid;
	int rc;

	if ((rc = user_id(t, a->user, &uid)) != 0)
		return rc;
	pg_p_int(&p, uid);
	pg_p_str(&p, a->name);
	rc = pg_exec(t,
	             a->on ? "INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) ON "
	                     "CONFLICT DO NOTHING"
	                   : "DELETE FROM subscriptions WHERE user_id = $1 AND name = $2",
	             &p, false, NULL);
	/* Other nodes' NOTIFY sessions learn of it (SubscriptionChange). */
	return rc == 0 ? pg_notify(t, a->user, a->name) : rc;
}

int
pg_op_subscribe(struct storage *st, const char *user, const char *name, bool on)
{
	struct mbox_arg a = {.user = user, .name = name, .on = on};

	return pg_run(PS(st), PG_WRITE, t_subscribe, &a);
}

/* ---- list ---- */

struct list_arg {
	const char *user;
	struct mailbox_info *list;
	size_t n;
};

static void
list_reset(struct list_arg *a)
{
	storage_list_free(a->list, a->n);
	a->list = NULL;
	a->n = 0;
}

static int
t_list(struct pg_txn *t, void *arg)
{
	struct list_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *boxes, *subs;
	const char **names;
	size_t n = 0;
	int rc;

	list_reset(a);
	pg_p_str(&p, a->user);
	rc = pg_exec(t,
	             "SELECT m.name, m.special_use, m.noselect FROM mailboxes m JOIN users u ON "
	             "u.id = m.user_id WHERE u.name = $1",
	             &p, false, &boxes);
	if (rc != 0)
		return rc;
	rc = pg_exec(t,
	             "SELECT s.name FROM subscriptions s JOIN users u ON u.id = s.user_id WHERE "
	             "u.name = $1",
	             &p, false, &subs);
	if (rc != 0) {
		PQclear(boxes);
		return rc;
	}
	a->list = xcalloc((size_t)PQntuples(boxes) + (size_t)PQntuples(subs) + 1, sizeof(*a->list));
	for (int i = 0; i < PQntuples(boxes); i++) {
		a->list[n].name = xstrdup(PQgetvalue(boxes, i, 0));
		a->list[n].attrs = (unsigned)pg_int(boxes, i, 1) & MBOX_SPECIAL_USE_MASK;
		if (PQgetvalue(boxes, i, 2)[0] == 't')
			a->list[n].attrs |= MBOX_NOSELECT;
		n++;
	}
	names = xcalloc((size_t)PQntuples(subs) + 1, sizeof(*names));
	for (int i = 0; i < PQntuples(subs); i++)
		names[i] = PQgetvalue(subs, i, 0);
	a->n = storage_list_finish(a->list, n, names, (size_t)PQntuples(subs));
	free(names);
	PQclear(boxes);
	PQclear(subs);
	return 0;
}

int
pg_op_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r)
{
	struct list_arg a = {.user = user};
	int rc = pg_run(PS(st), PG_READ, t_list, &a);

	if (rc != 0) {
		list_reset(&a);
		return rc;
	}
	*list_r = a.list;
	*n_r = a.n;
	return 0;
}

/* ---- imported UIDs ---- */

struct uids_arg {
	const char *user;
	const char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
};

static int
t_set_uids(struct pg_txn *t, void *arg)
{
	struct uids_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int64_t id;
	bool noselect;
	int rc;

	if ((rc = pg_mbox_lookup(t, a->user, a->name, true, &id, &noselect)) != 0)
		return rc;
	if (noselect)
		return ROOST_ENOTFOUND;
	pg_p_int(&p, id);
	pg_p_int(&p, a->uidvalidity);
	pg_p_int(&p, a->uidnext);
	/* A new UIDVALIDITY only while the mailbox never held a message. */
	rc = pg_exec(t,
	             "UPDATE mailboxes SET uidvalidity = CASE WHEN $2 = 0 THEN uidvalidity ELSE $2 "
	             "END, uidnext = greatest(uidnext, $3) WHERE id = $1 AND ($2 = 0 OR $2 = "
	             "uidvalidity OR uidnext = 1) RETURNING id",
	             &p, false, &res);
	if (rc != 0)
		return rc;
	rc = PQntuples(res) == 1 ? 0 : ROOST_EEXISTS;
	PQclear(res);
	if (rc == 0)
		rc = pg_notify(t, a->user, a->name);
	return rc;
}

int
pg_op_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
               uint32_t uidnext)
{
	struct uids_arg a = {
	    .user = user, .name = name, .uidvalidity = uidvalidity, .uidnext = uidnext};

	return pg_run(PS(st), PG_WRITE, t_set_uids, &a);
}

/* ---- status ---- */

int
pg_status_fill(struct pg_txn *t, int64_t id, struct mailbox_status *s)
{
	PGresult *res;
	int rc;

	/* the counters of schema version 7; \Recent and the first unseen
	 * UID from index ranges (the primary key, messages_unseen) */
	rc = pg_exec_id(
	    t,
	    "SELECT m.uidvalidity, m.uidnext, m.highestmodseq, m.n_messages, m.n_unseen, "
	    "(SELECT count(*) FROM messages g WHERE g.mailbox_id = m.id AND g.uid >= "
	    "m.recent_first), m.n_bytes, coalesce((SELECT min(g.uid) FROM messages g "
	    "WHERE g.mailbox_id = m.id AND g.flags & 1 = 0), 0), m.noselect FROM "
	    "mailboxes m WHERE m.id = $1",
	    id, &res);
	if (rc != 0)
		return rc;
	if (PQntuples(res) != 1 || PQgetvalue(res, 0, 8)[0] == 't') {
		PQclear(res);
		return ROOST_ENOTFOUND;
	}
	memset(s, 0, sizeof(*s));
	s->uidvalidity = (uint32_t)pg_int(res, 0, 0);
	s->uidnext = (uint32_t)pg_int(res, 0, 1);
	s->highestmodseq = (uint64_t)pg_int(res, 0, 2);
	s->messages = (uint32_t)pg_int(res, 0, 3);
	s->unseen = (uint32_t)pg_int(res, 0, 4);
	s->recent = (uint32_t)pg_int(res, 0, 5);
	s->size = (uint64_t)pg_int(res, 0, 6);
	s->first_unseen_uid = (uint32_t)pg_int(res, 0, 7);
	/* the row's id is never reused */
	storage_mailboxid_from_id(s->mailboxid, (uint64_t)id, s->uidvalidity);
	PQclear(res);
	return 0;
}

struct status_arg {
	const char *user;
	const char *name;
	int64_t id;
	struct mailbox_status *s;
};

static int
t_status(struct pg_txn *t, void *arg)
{
	struct status_arg *a = arg;
	bool noselect;
	int rc;

	if (a->id == 0 && (rc = pg_mbox_lookup(t, a->user, a->name, false, &a->id, &noselect)) != 0)
		return rc;
	return pg_status_fill(t, a->id, a->s);
}

int
pg_op_status(struct storage *st, const char *user, const char *name,
             struct mailbox_status *status_r)
{
	struct status_arg a = {.user = user, .name = name, .s = status_r};

	return pg_run(PS(st), PG_READ, t_status, &a);
}

int
pg_op_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r)
{
	struct status_arg a = {.id = PM(mb)->id, .s = status_r};

	return pg_run(PM(mb)->ps, PG_AUTO, t_status, &a);
}

/* ---- open mailboxes ---- */

struct open_arg {
	const char *user;
	const char *name;
	int64_t id;
	uint32_t uidvalidity;
};

static int
t_open(struct pg_txn *t, void *arg)
{
	struct open_arg *a = arg;
	struct pg_params p = {.n = 0};
	PGresult *res;
	int rc;

	pg_p_str(&p, a->user);
	pg_p_str(&p, a->name);
	rc = pg_exec_row(
	    t,
	    "SELECT m.id, m.uidvalidity FROM mailboxes m JOIN users u ON u.id = m.user_id "
	    "WHERE u.name = $1 AND m.name = $2 AND NOT m.noselect",
	    &p, false, &res);
	if (rc != 0)
		return rc;
	a->id = pg_int(res, 0, 0);
	a->uidvalidity = (uint32_t)pg_int(res, 0, 1);
	PQclear(res);
	return 0;
}

int
pg_op_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                   struct mailbox **mb_r)
{
	struct open_arg a = {.user = user, .name = name};
	struct pg_mailbox *pm;
	int rc = pg_run(PS(st), PG_AUTO, t_open, &a);

	if (rc != 0)
		return rc;
	pm = xcalloc(1, sizeof(*pm));
	pm->ps = PS(st);
	pm->id = a.id;
	pm->uidvalidity = a.uidvalidity;
	*mb_r = &pm->base;
	return 0;
}

void
pg_op_mailbox_close(struct mailbox *mb)
{
	struct pg_mailbox *pm = PM(mb);

	if (pm->reserved) /* a claim left for later, never made */
		pg_claim_unreserve(pm->ps, pm->id);
	for (size_t i = 0; i < pm->kw_n; i++)
		free(pm->kw_names[i]);
	free(pm->kw_names);
	free(pm);
}
