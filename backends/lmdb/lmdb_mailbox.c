/*
 * LMDB mailboxes: create, delete, rename, list, subscriptions and status.
 */

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

/* Every mailbox of a user: names (owned) and ids. */
struct namelist {
	char **names;
	uint64_t *ids;
	size_t n;
};

static void
namelist_free(struct namelist *nl)
{
	for (size_t i = 0; i < nl->n; i++)
		free(nl->names[i]);
	free(nl->names);
	free(nl->ids);
	memset(nl, 0, sizeof(*nl));
}

static int
user_scan(MDB_txn *txn, MDB_dbi dbi, const char *user, size_t skip, struct namelist *nl)
{
	uint8_t prefix[LMDB_SHA_LEN];
	MDB_cursor *cur;
	MDB_val k, v;
	size_t cap = 0;
	int rc;

	memset(nl, 0, sizeof(*nl));
	lmdb_sha256(user, strlen(user), prefix);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return lmdb_err("cursor", rc);
	k.mv_size = LMDB_USER_PREFIX;
	k.mv_data = prefix;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *vu, *vn;

		if (k.mv_size < LMDB_USER_PREFIX ||
		    memcmp(k.mv_data, prefix, LMDB_USER_PREFIX) != 0)
			break;
		if (!lmdb_value_names(&v, skip, &vu, &vn) || strcmp(vu, user) != 0)
			continue;
		if (nl->n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			nl->names = xreallocarray(nl->names, cap, sizeof(*nl->names));
			nl->ids = xreallocarray(nl->ids, cap, sizeof(*nl->ids));
		}
		nl->names[nl->n] = xstrdup(vn);
		nl->ids[nl->n] = 0;
		if (skip == 8)
			memcpy(&nl->ids[nl->n], v.mv_data, 8);
		nl->n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		namelist_free(nl);
		return lmdb_err("scan", rc);
	}
	return 0;
}

struct parent_arg {
	struct lmdb_w *w;
	const char *user;
};

static int
create_parent(const char *parent, void *arg)
{
	struct parent_arg *a = arg;
	uint64_t id;
	int rc = lmdb_mbox_id(a->w->txn, a->w->sh, a->user, parent, &id);

	if (rc == ROOST_ENOTFOUND)
		rc = lmdb_mbox_create_one(a->w, a->user, parent, 0, NULL);
	return rc;
}

/* Create the missing parents of name ("a/b/c": "a", "a/b"). */
static int
create_parents(struct lmdb_w *w, const char *user, const char *name)
{
	struct parent_arg a = {.w = w, .user = user};

	return storage_name_parents(name, create_parent, &a);
}

struct mbox_arg {
	const char *user;
	const char *name;
	const char *to;
	unsigned special_use;
	bool on;
};

static int
w_user_init(struct lmdb_w *w, void *arg)
{
	struct mbox_arg *a = arg;
	uint64_t id;
	int rc = lmdb_mbox_id(w->txn, w->sh, a->user, "INBOX", &id);

	if (rc != ROOST_ENOTFOUND)
		return rc == 0 ? ROOST_EEXISTS : rc;
	return lmdb_mbox_create_one(w, a->user, "INBOX", 0, NULL);
}

int
lmdb_op_user_init(struct storage *st, const char *user)
{
	struct mbox_arg a = {.user = user};

	return lmdb_write(lmdb_st_shard(st, user), w_user_init, &a);
}

static int
w_create(struct lmdb_w *w, void *arg)
{
	struct mbox_arg *a = arg;
	struct lmdb_mbox rec;
	uint64_t id;
	int rc;

	rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->name, &id);
	if (rc == 0) {
		/* A \Noselect parent left by a delete becomes a real mailbox again;
		 * it keeps its UIDNEXT so no UID is reused. */
		if ((rc = lmdb_mbox_get(w->txn, w->sh, id, &rec, NULL)) != 0)
			return rc;
		if (!rec.noselect)
			return ROOST_EEXISTS;
		rec.noselect = 0;
		rec.special_use = a->special_use;
		rec.uidvalidity = lmdb_next_uidvalidity(w);
		return lmdb_mbox_put(w, id, &rec, NULL);
	}
	if (rc != ROOST_ENOTFOUND)
		return rc;
	if ((rc = create_parents(w, a->user, a->name)) != 0)
		return rc;
	return lmdb_mbox_create_one(w, a->user, a->name, a->special_use, NULL);
}

int
lmdb_op_create(struct storage *st, const char *user, const char *name, unsigned special_use)
{
	struct mbox_arg a = {.user = user, .name = name, .special_use = special_use};

	return lmdb_write(lmdb_st_shard(st, user), w_create, &a);
}

static int
w_delete(struct lmdb_w *w, void *arg)
{
	struct mbox_arg *a = arg;
	struct namelist nl;
	struct lmdb_mbox rec;
	uint8_t key[8];
	MDB_val k = {8, key};
	bool children = false;
	uint64_t id;
	int rc;

	if ((rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->name, &id)) != 0 ||
	    (rc = lmdb_mbox_get(w->txn, w->sh, id, &rec, NULL)) != 0)
		return rc;
	if ((rc = user_scan(w->txn, w->sh->names, a->user, 8, &nl)) != 0)
		return rc;
	for (size_t i = 0; i < nl.n && !children; i++)
		children = storage_name_is_child(nl.names[i], a->name);
	namelist_free(&nl);
	if (children && rec.noselect)
		return ROOST_EPERM; /* RFC 3501 6.3.4 */
	if ((rc = lmdb_mbox_purge(w, id)) != 0)
		return rc;
	if (children) {
		/* Stays as a \Noselect parent; UIDNEXT kept. */
		uint64_t size = rec.size, messages = rec.messages;

		rec.noselect = 1;
		rec.messages = rec.unseen = rec.recent = 0;
		rec.size = 0;
		rec.highestmodseq++;
		rec.recent_first = rec.uidnext;
		if ((rc = lmdb_mbox_put(w, id, &rec, NULL)) != 0)
			return rc;
		return lmdb_quota_add(w, a->user, -(int64_t)size, -(int64_t)messages);
	}
	lmdb_be64(key, id);
	if ((rc = lmdb_wdel(w, w->sh->mboxes, &k)) != 0 ||
	    (rc = lmdb_names_del(w, a->user, a->name)) != 0)
		return rc;
	return lmdb_quota_add(w, a->user, -(int64_t)rec.size, -(int64_t)rec.messages);
}

int
lmdb_op_delete(struct storage *st, const char *user, const char *name)
{
	struct mbox_arg a = {.user = user, .name = name};

	return lmdb_write(lmdb_st_shard(st, user), w_delete, &a);
}

static int
w_rename(struct lmdb_w *w, void *arg)
{
	struct mbox_arg *a = arg;
	struct namelist nl = {0};
	size_t flen = strlen(a->name), tlen = strlen(a->to);
	uint64_t id;
	int rc;

	if ((rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->name, &id)) != 0)
		return rc;
	rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->to, &id);
	if (rc != ROOST_ENOTFOUND)
		return rc == 0 ? ROOST_EEXISTS : rc;
	if (strcmp(a->name, "INBOX") == 0) {
		/* RFC 3501 6.3.5: INBOX's messages move to the new name (the
		 * whole mailbox, UIDVALIDITY included), INBOX starts afresh and
		 * keeps its children. */
		if ((rc = lmdb_mbox_id(w->txn, w->sh, a->user, "INBOX", &id)) != 0 ||
		    (rc = create_parents(w, a->user, a->to)) != 0 ||
		    (rc = lmdb_names_del(w, a->user, "INBOX")) != 0 ||
		    (rc = lmdb_names_put(w, a->user, a->to, id)) != 0)
			return rc;
		return lmdb_mbox_create_one(w, a->user, "INBOX", 0, NULL);
	}
	if ((rc = user_scan(w->txn, w->sh->names, a->user, 8, &nl)) != 0)
		return rc;
	/* Check every new name first, then move. */
	for (size_t i = 0; i < nl.n; i++) {
		char nn[STORAGE_MAX_NAME + 1];
		uint64_t other;

		if (strcmp(nl.names[i], a->name) != 0 &&
		    !storage_name_is_child(nl.names[i], a->name))
			continue;
		if (tlen + strlen(nl.names[i]) - flen > STORAGE_MAX_NAME) {
			rc = ROOST_ETOOBIG;
			goto out;
		}
		snprintf(nn, sizeof(nn), "%s%s", a->to, nl.names[i] + flen);
		rc = lmdb_mbox_id(w->txn, w->sh, a->user, nn, &other);
		if (rc != ROOST_ENOTFOUND) {
			rc = rc == 0 ? ROOST_EEXISTS : rc;
			goto out;
		}
	}
	if ((rc = create_parents(w, a->user, a->to)) != 0)
		goto out;
	for (size_t i = 0; i < nl.n; i++) {
		char nn[STORAGE_MAX_NAME + 1];

		if (strcmp(nl.names[i], a->name) != 0 &&
		    !storage_name_is_child(nl.names[i], a->name))
			continue;
		snprintf(nn, sizeof(nn), "%s%s", a->to, nl.names[i] + flen);
		if ((rc = lmdb_names_del(w, a->user, nl.names[i])) != 0 ||
		    (rc = lmdb_names_put(w, a->user, nn, nl.ids[i])) != 0)
			goto out;
	}
	rc = 0;
out:
	namelist_free(&nl);
	return rc;
}

int
lmdb_op_rename(struct storage *st, const char *user, const char *from, const char *to)
{
	struct mbox_arg a = {.user = user, .name = from, .to = to};

	return lmdb_write(lmdb_st_shard(st, user), w_rename, &a);
}

static int
w_subscribe(struct lmdb_w *w, void *arg)
{
	struct mbox_arg *a = arg;
	uint8_t key[LMDB_NAME_KEY];
	size_t ul = strlen(a->user) + 1, nl = strlen(a->name) + 1;
	MDB_val k = {sizeof(key), key}, v = {ul + nl, NULL};
	int rc;

	lmdb_name_key(key, a->user, a->name);
	if (!a->on)
		return lmdb_wdel(w, w->sh->subs, &k);
	if ((rc = lmdb_wput(w, w->sh->subs, &k, &v, MDB_RESERVE)) != 0)
		return rc;
	memcpy(v.mv_data, a->user, ul);
	memcpy((char *)v.mv_data + ul, a->name, nl);
	return 0;
}

int
lmdb_op_subscribe(struct storage *st, const char *user, const char *name, bool on)
{
	struct mbox_arg a = {.user = user, .name = name, .on = on};

	return lmdb_write(lmdb_st_shard(st, user), w_subscribe, &a);
}

int
lmdb_op_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r)
{
	struct lmdb_shard *sh = lmdb_st_shard(st, user);
	struct namelist boxes, subs;
	struct mailbox_info *list;
	MDB_txn *txn;
	size_t n = 0;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	if ((rc = user_scan(txn, sh->names, user, 8, &boxes)) != 0) {
		lmdb_rtxn_end(sh, txn);
		return rc;
	}
	if ((rc = user_scan(txn, sh->subs, user, 0, &subs)) != 0) {
		namelist_free(&boxes);
		lmdb_rtxn_end(sh, txn);
		return rc;
	}
	list = xcalloc(boxes.n + subs.n + 1, sizeof(*list));
	for (size_t i = 0; i < boxes.n; i++) {
		struct lmdb_mbox rec;

		if (lmdb_mbox_get(txn, sh, boxes.ids[i], &rec, NULL) != 0)
			continue;
		list[n].name = boxes.names[i];
		boxes.names[i] = NULL;
		list[n].attrs = rec.special_use & MBOX_SPECIAL_USE_MASK;
		if (rec.noselect)
			list[n].attrs |= MBOX_NOSELECT;
		n++;
	}
	lmdb_rtxn_end(sh, txn);
	n = storage_list_finish(list, n, (const char *const *)subs.names, subs.n);
	namelist_free(&boxes);
	namelist_free(&subs);
	*list_r = list;
	*n_r = n;
	return 0;
}

/* A claim not yet in the database moved the boundary up: count what is
 * above it. */
static int
recent_claimed(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, const struct lmdb_mbox *rec,
               uint32_t *recent_r)
{
	uint32_t first = lmdb_claim_boundary(sh, id), n = 0;
	struct lmdb_msg_iter it;
	int rc;

	if (first <= rec->recent_first)
		return 0;
	if ((rc = lmdb_msg_iter_open(&it, txn, sh, id, first)) != 0)
		return lmdb_err("cursor", rc);
	while (lmdb_msg_iter_next(&it))
		n++;
	lmdb_msg_iter_close(&it);
	if (it.rc != 0)
		return lmdb_err("recent", it.rc);
	*recent_r = n;
	return 0;
}

static int
lmdb_status_fill(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, const struct lmdb_mbox *rec,
                 struct mailbox_status *s)
{
	uint8_t key[12];
	MDB_cursor *cur;
	MDB_val k = {12, key}, v;
	int rc;

	memset(s, 0, sizeof(*s));
	s->messages = rec->messages;
	s->unseen = rec->unseen;
	s->uidnext = rec->uidnext;
	s->uidvalidity = rec->uidvalidity;
	s->highestmodseq = rec->highestmodseq;
	s->size = rec->size;
	s->recent = rec->recent;
	/* the id is never reused in the environment */
	storage_mailboxid_from_id(s->mailboxid, id, rec->uidvalidity);
	if ((rc = recent_claimed(txn, sh, id, rec, &s->recent)) != 0)
		return rc;
	if (rec->unseen == 0)
		return 0;
	if ((rc = mdb_cursor_open(txn, sh->unseen, &cur)) != 0)
		return lmdb_err("cursor", rc);
	lmdb_be64(key, id);
	lmdb_be32(key + 8, 0);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && k.mv_size == 12 && lmdb_get_be64(k.mv_data) == id)
		s->first_unseen_uid = lmdb_get_be32((const uint8_t *)k.mv_data + 8);
	mdb_cursor_close(cur);
	return 0;
}

int
lmdb_status_read(struct lmdb_shard *sh, const char *user, const char *name, uint64_t id,
                 struct mailbox_status *status_r)
{
	struct lmdb_mbox rec;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	if (id == 0)
		rc = lmdb_mbox_selectable(txn, sh, user, name, &id, &rec);
	else if ((rc = lmdb_mbox_get(txn, sh, id, &rec, NULL)) == 0 && rec.noselect)
		rc = ROOST_ENOTFOUND;
	if (rc == 0)
		rc = lmdb_status_fill(txn, sh, id, &rec, status_r);
	lmdb_rtxn_end(sh, txn);
	return rc;
}

int
lmdb_op_status(struct storage *st, const char *user, const char *name,
               struct mailbox_status *status_r)
{
	return lmdb_status_read(lmdb_st_shard(st, user), user, name, 0, status_r);
}

struct uids_arg {
	const char *user;
	const char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
};

static int
w_set_uids(struct lmdb_w *w, void *arg)
{
	struct uids_arg *a = arg;
	struct lmdb_mbox rec;
	uint64_t id;
	int rc;

	if ((rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->name, &id)) != 0 ||
	    (rc = lmdb_mbox_get(w->txn, w->sh, id, &rec, NULL)) != 0)
		return rc;
	if (rec.noselect)
		return ROOST_ENOTFOUND;
	if (a->uidvalidity != 0 && a->uidvalidity != rec.uidvalidity) {
		if (rec.uidnext != 1)
			return ROOST_EEXISTS;
		rec.uidvalidity = a->uidvalidity;
	}
	if (a->uidnext > rec.uidnext)
		rec.uidnext = a->uidnext;
	return lmdb_mbox_put(w, id, &rec, NULL);
}

int
lmdb_op_set_uids(struct storage *st, const char *user, const char *name, uint32_t uidvalidity,
                 uint32_t uidnext)
{
	struct uids_arg a = {
	    .user = user, .name = name, .uidvalidity = uidvalidity, .uidnext = uidnext};

	return lmdb_write(lmdb_st_shard(st, user), w_set_uids, &a);
}
