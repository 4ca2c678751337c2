/*
 * LMDB mailboxes: keys and records, the mailbox table (create, delete,
 * rename, list, subscriptions, status) and body reference counts.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#define MBOX_VERSION 1
#define USER_PREFIX 16

void
lmdb_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void
lmdb_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint64_t
lmdb_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

uint32_t
lmdb_get_be32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 8) | p[i];
	return v;
}

void
lmdb_sha256(const void *data, size_t len, uint8_t out[LMDB_SHA_LEN])
{
	unsigned int olen = LMDB_SHA_LEN;

	if (EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) != 1)
		fatal("storage: SHA-256 unavailable");
}

/* Names can be longer than LMDB's 511-byte key limit, so the key is a hash
 * and the value carries the real user and name (checked on lookup). */
void
lmdb_name_key(uint8_t key[LMDB_NAME_KEY], const char *user, const char *name)
{
	uint8_t h[LMDB_SHA_LEN];

	lmdb_sha256(user, strlen(user), h);
	memcpy(key, h, USER_PREFIX);
	lmdb_sha256(name, strlen(name), h);
	memcpy(key + USER_PREFIX, h, LMDB_NAME_KEY - USER_PREFIX);
}

/* names value: id(8) user \0 name \0; subs value: user \0 name \0. */
static bool
value_names(const MDB_val *v, size_t skip, const char **user_r, const char **name_r)
{
	const char *p = (const char *)v->mv_data + skip,
	           *end = (const char *)v->mv_data + v->mv_size;
	const char *nul;

	if (v->mv_size < skip + 4 || end[-1] != '\0')
		return false;
	nul = memchr(p, '\0', (size_t)(end - p));
	if (nul == NULL || nul + 1 >= end)
		return false;
	*user_r = p;
	*name_r = nul + 1;
	return true;
}

int
lmdb_mbox_id(MDB_txn *txn, struct lmdb_shard *sh, const char *user, const char *name,
             uint64_t *id_r)
{
	uint8_t key[LMDB_NAME_KEY];
	MDB_val k = {sizeof(key), key}, v;
	const char *vu, *vn;
	int rc;

	lmdb_name_key(key, user, name);
	rc = mdb_get(txn, sh->names, &k, &v);
	if (rc != 0)
		return lmdb_err("get name", rc);
	if (!value_names(&v, 8, &vu, &vn) || strcmp(vu, user) != 0 || strcmp(vn, name) != 0)
		return ROOST_ENOTFOUND;
	memcpy(id_r, v.mv_data, 8);
	return 0;
}

static int
names_put(struct lmdb_w *w, const char *user, const char *name, uint64_t id)
{
	uint8_t key[LMDB_NAME_KEY];
	size_t ul = strlen(user) + 1, nl = strlen(name) + 1;
	MDB_val k = {sizeof(key), key}, v = {8 + ul + nl, NULL};
	int rc;

	lmdb_name_key(key, user, name);
	if ((rc = lmdb_wput(w, w->sh->names, &k, &v, MDB_RESERVE)) != 0)
		return rc;
	memcpy(v.mv_data, &id, 8);
	memcpy((char *)v.mv_data + 8, user, ul);
	memcpy((char *)v.mv_data + 8 + ul, name, nl);
	return 0;
}

static int
names_del(struct lmdb_w *w, const char *user, const char *name)
{
	uint8_t key[LMDB_NAME_KEY];
	MDB_val k = {sizeof(key), key};

	lmdb_name_key(key, user, name);
	return lmdb_wdel(w, w->sh->names, &k);
}

int
lmdb_mbox_get(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, struct lmdb_mbox *rec_r,
              struct lmdb_kwtab *kw_r)
{
	uint8_t key[8];
	MDB_val k = {8, key}, v;
	int rc;

	lmdb_be64(key, id);
	if ((rc = mdb_get(txn, sh->mboxes, &k, &v)) != 0)
		return lmdb_err("get mailbox", rc);
	if (v.mv_size < sizeof(*rec_r)) {
		log_error("storage: lmdb %s: mailbox %llu: short record", sh->path,
		          (unsigned long long)id);
		return ROOST_EIO;
	}
	memcpy(rec_r, v.mv_data, sizeof(*rec_r));
	if (kw_r != NULL) {
		const char *p = (const char *)v.mv_data + sizeof(*rec_r);
		const char *end = (const char *)v.mv_data + v.mv_size;

		kw_r->n = 0;
		while (p < end && kw_r->n < rec_r->n_kw && kw_r->n < STORAGE_MAX_KEYWORDS) {
			size_t len = strnlen(p, (size_t)(end - p));

			if (len > STORAGE_MAX_KEYWORD_LEN || p + len >= end)
				break;
			memcpy(kw_r->names[kw_r->n++], p, len + 1);
			p += len + 1;
		}
	}
	return 0;
}

int
lmdb_mbox_put(struct lmdb_w *w, uint64_t id, const struct lmdb_mbox *rec,
              const struct lmdb_kwtab *kw)
{
	uint8_t key[8];
	size_t kwlen = 0, off;
	struct lmdb_mbox r = *rec;
	MDB_val k = {8, key}, v;
	int rc;

	lmdb_be64(key, id);
	r.version = MBOX_VERSION;
	r.n_kw = kw != NULL ? (uint32_t)kw->n : 0;
	for (size_t i = 0; i < r.n_kw; i++)
		kwlen += strlen(kw->names[i]) + 1;
	v.mv_size = sizeof(r) + kwlen;
	v.mv_data = NULL;
	if (kw == NULL) {
		/* keep the stored table */
		MDB_val old;

		if (mdb_get(w->txn, w->sh->mboxes, &k, &old) == 0 && old.mv_size > sizeof(r)) {
			struct lmdb_mbox o;

			memcpy(&o, old.mv_data, sizeof(o));
			r.n_kw = o.n_kw;
			kwlen = old.mv_size - sizeof(r);
			{
				uint8_t *tmp =
				    xmemdup((const uint8_t *)old.mv_data + sizeof(r), kwlen);

				v.mv_size = sizeof(r) + kwlen;
				if ((rc = lmdb_wput(w, w->sh->mboxes, &k, &v, MDB_RESERVE)) != 0) {
					free(tmp);
					return rc;
				}
				memcpy(v.mv_data, &r, sizeof(r));
				memcpy((uint8_t *)v.mv_data + sizeof(r), tmp, kwlen);
				free(tmp);
				return 0;
			}
		}
	}
	if ((rc = lmdb_wput(w, w->sh->mboxes, &k, &v, MDB_RESERVE)) != 0)
		return rc;
	memcpy(v.mv_data, &r, sizeof(r));
	off = sizeof(r);
	for (size_t i = 0; i < r.n_kw; i++) {
		size_t len = strlen(kw->names[i]) + 1;

		memcpy((char *)v.mv_data + off, kw->names[i], len);
		off += len;
	}
	return 0;
}

int
lmdb_kw_index(struct lmdb_kwtab *kw, const char *name, bool add, bool *full_r)
{
	for (size_t i = 0; i < kw->n; i++) {
		if (strcasecmp(kw->names[i], name) == 0)
			return (int)i;
	}
	if (!add)
		return -1;
	if (kw->n >= STORAGE_MAX_KEYWORDS) {
		*full_r = true;
		return -1;
	}
	snprintf(kw->names[kw->n], sizeof(kw->names[kw->n]), "%s", name);
	return (int)kw->n++;
}

/* ------------------------------------------------------------------ */
/* Bodies                                                              */
/* ------------------------------------------------------------------ */

int
lmdb_body_ref(struct lmdb_w *w, const uint8_t *sha, const uint8_t *data, size_t len,
              bool data_known)
{
	MDB_val k = {LMDB_SHA_LEN, (void *)sha}, v;
	uint64_t count = 0;
	int rc;

	rc = mdb_get(w->txn, w->sh->refs, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(count)) {
		memcpy(&count, v.mv_data, sizeof(count));
	} else if (rc != MDB_NOTFOUND) {
		return lmdb_err("get ref", rc == 0 ? MDB_CORRUPTED : rc);
	}
	if (count == 0) {
		if (!data_known) {
			log_error("storage: lmdb %s: body of a copied message is missing",
			          w->sh->path);
			return ROOST_EIO;
		}
		v.mv_size = len;
		v.mv_data = NULL;
		if ((rc = lmdb_wput(w, w->sh->bodies, &k, &v, MDB_RESERVE)) != 0)
			return rc;
		if (len > 0)
			memcpy(v.mv_data, data, len);
	}
	count++;
	v.mv_size = sizeof(count);
	v.mv_data = &count;
	return lmdb_wput(w, w->sh->refs, &k, &v, 0);
}

int
lmdb_body_unref(struct lmdb_w *w, const uint8_t *sha)
{
	MDB_val k = {LMDB_SHA_LEN, (void *)sha}, v;
	uint64_t count;
	int rc;

	rc = mdb_get(w->txn, w->sh->refs, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0; /* already gone: `roost check` reports it */
	if (rc != 0 || v.mv_size != sizeof(count))
		return lmdb_err("get ref", rc == 0 ? MDB_CORRUPTED : rc);
	memcpy(&count, v.mv_data, sizeof(count));
	if (count <= 1) {
		if ((rc = lmdb_wdel(w, w->sh->refs, &k)) != 0)
			return rc;
		return lmdb_wdel(w, w->sh->bodies, &k);
	}
	count--;
	v.mv_size = sizeof(count);
	v.mv_data = &count;
	return lmdb_wput(w, w->sh->refs, &k, &v, 0);
}

/* ------------------------------------------------------------------ */
/* Mailbox table                                                       */
/* ------------------------------------------------------------------ */

static int
del_prefix(struct lmdb_w *w, MDB_dbi dbi, uint64_t id, bool unref_bodies)
{
	uint8_t key[8];
	MDB_cursor *cur;
	MDB_val k = {8, key}, v;
	int rc, err = 0;

	lmdb_be64(key, id);
	if ((rc = mdb_cursor_open(w->txn, dbi, &cur)) != 0)
		return lmdb_err("cursor", rc);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size >= 8 && memcmp(k.mv_data, key, 8) == 0) {
		if (unref_bodies && v.mv_size == sizeof(struct lmdb_msg)) {
			struct lmdb_msg m;

			memcpy(&m, v.mv_data, sizeof(m));
			if ((err = lmdb_body_unref(w, m.sha)) != 0)
				break;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			if (w->mdb_err == 0)
				w->mdb_err = rc;
			err = lmdb_err("purge", rc);
			break;
		}
		/* Seek again rather than trust the cursor position after a
		 * delete across page boundaries. */
		k.mv_size = 8;
		k.mv_data = key;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	if (err == 0 && rc != 0 && rc != MDB_NOTFOUND)
		err = lmdb_err("purge", rc);
	return err;
}

int
lmdb_mbox_purge(struct lmdb_w *w, uint64_t id)
{
	int rc;

	if ((rc = del_prefix(w, w->sh->msgs, id, true)) != 0 ||
	    (rc = del_prefix(w, w->sh->modseq, id, false)) != 0 ||
	    (rc = del_prefix(w, w->sh->expunged, id, false)) != 0 ||
	    (rc = del_prefix(w, w->sh->cache, id, false)) != 0 ||
	    (rc = del_prefix(w, w->sh->unseen, id, false)) != 0)
		return rc;
	return 0;
}

/* UIDVALIDITY: the time, but always above the last one handed out in this
 * environment, so a mailbox re-created in the same second still changes. */
uint32_t
lmdb_next_uidvalidity(struct lmdb_w *w)
{
	MDB_val k = {11, "uidvalidity"}, v;
	uint32_t last = 0, now = (uint32_t)time(NULL), next;

	if (mdb_get(w->txn, w->sh->meta, &k, &v) == 0 && v.mv_size == 4)
		memcpy(&last, v.mv_data, 4);
	next = now > last ? now : last + 1;
	if (next == 0)
		next = 1;
	v.mv_size = 4;
	v.mv_data = &next;
	(void)lmdb_wput(w, w->sh->meta, &k, &v, 0);
	return next;
}

static int
next_id(struct lmdb_w *w, uint64_t *id_r)
{
	MDB_val k = {7, "next_id"}, v;
	uint64_t id = 1, next;

	if (mdb_get(w->txn, w->sh->meta, &k, &v) == 0 && v.mv_size == 8)
		memcpy(&id, v.mv_data, 8);
	next = id + 1;
	v.mv_size = 8;
	v.mv_data = &next;
	*id_r = id;
	return lmdb_wput(w, w->sh->meta, &k, &v, 0);
}

int
lmdb_mbox_create_one(struct lmdb_w *w, const char *user, const char *name, unsigned special_use,
                     uint64_t *id_r)
{
	struct lmdb_mbox rec;
	struct lmdb_kwtab kw = {.n = 0};
	uint64_t id;
	int rc;

	if ((rc = next_id(w, &id)) != 0)
		return rc;
	memset(&rec, 0, sizeof(rec));
	rec.uidvalidity = lmdb_next_uidvalidity(w);
	rec.uidnext = 1;
	rec.recent_first = 1;
	rec.highestmodseq = 1;
	rec.special_use = special_use;
	if ((rc = lmdb_mbox_put(w, id, &rec, &kw)) != 0 || (rc = names_put(w, user, name, id)) != 0)
		return rc;
	if (id_r != NULL)
		*id_r = id;
	return 0;
}

static struct lmdb_shard *
shard(struct storage *st, const char *user)
{
	return lmdb_shard_of(container_of(st, struct lmdb_storage, base), user);
}

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
	k.mv_size = USER_PREFIX;
	k.mv_data = prefix;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *vu, *vn;

		if (k.mv_size < USER_PREFIX || memcmp(k.mv_data, prefix, USER_PREFIX) != 0)
			break;
		if (!value_names(&v, skip, &vu, &vn) || strcmp(vu, user) != 0)
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

static bool
is_child(const char *name, const char *parent)
{
	size_t pl = strlen(parent);

	return strncmp(name, parent, pl) == 0 && name[pl] == '/';
}

/* Create the missing parents of name ("a/b/c": "a", "a/b"). */
static int
create_parents(struct lmdb_w *w, const char *user, const char *name)
{
	char buf[STORAGE_MAX_NAME + 1];
	size_t len = strlen(name);
	uint64_t id;
	int rc;

	if (len > STORAGE_MAX_NAME)
		return ROOST_EINVAL;
	memcpy(buf, name, len + 1);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		rc = lmdb_mbox_id(w->txn, w->sh, user, buf, &id);
		if (rc == ROOST_ENOTFOUND)
			rc = lmdb_mbox_create_one(w, user, buf, 0, NULL);
		if (rc != 0)
			return rc;
		buf[i] = '/';
	}
	return 0;
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

	return lmdb_write(shard(st, user), w_user_init, &a);
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

	return lmdb_write(shard(st, user), w_create, &a);
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
		children = is_child(nl.names[i], a->name);
	namelist_free(&nl);
	if (children && rec.noselect)
		return ROOST_EPERM; /* RFC 3501 6.3.4 */
	if ((rc = lmdb_mbox_purge(w, id)) != 0)
		return rc;
	if (children) {
		/* Stays as a \Noselect parent; UIDNEXT kept. */
		rec.noselect = 1;
		rec.messages = rec.unseen = rec.recent = 0;
		rec.size = 0;
		rec.highestmodseq++;
		rec.recent_first = rec.uidnext;
		return lmdb_mbox_put(w, id, &rec, NULL);
	}
	lmdb_be64(key, id);
	if ((rc = lmdb_wdel(w, w->sh->mboxes, &k)) != 0)
		return rc;
	return names_del(w, a->user, a->name);
}

int
lmdb_op_delete(struct storage *st, const char *user, const char *name)
{
	struct mbox_arg a = {.user = user, .name = name};

	return lmdb_write(shard(st, user), w_delete, &a);
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
		    (rc = names_del(w, a->user, "INBOX")) != 0 ||
		    (rc = names_put(w, a->user, a->to, id)) != 0)
			return rc;
		return lmdb_mbox_create_one(w, a->user, "INBOX", 0, NULL);
	}
	if ((rc = user_scan(w->txn, w->sh->names, a->user, 8, &nl)) != 0)
		return rc;
	/* Check every new name first, then move. */
	for (size_t i = 0; i < nl.n; i++) {
		char nn[STORAGE_MAX_NAME + 1];
		uint64_t other;

		if (strcmp(nl.names[i], a->name) != 0 && !is_child(nl.names[i], a->name))
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

		if (strcmp(nl.names[i], a->name) != 0 && !is_child(nl.names[i], a->name))
			continue;
		snprintf(nn, sizeof(nn), "%s%s", a->to, nl.names[i] + flen);
		if ((rc = names_del(w, a->user, nl.names[i])) != 0 ||
		    (rc = names_put(w, a->user, nn, nl.ids[i])) != 0)
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

	return lmdb_write(shard(st, user), w_rename, &a);
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

	return lmdb_write(shard(st, user), w_subscribe, &a);
}

static int
info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mailbox_info *)a)->name,
	              ((const struct mailbox_info *)b)->name);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
lmdb_op_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r)
{
	struct lmdb_shard *sh = shard(st, user);
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
	if (n > 1)
		qsort(list, n, sizeof(*list), info_cmp);
	if (subs.n > 1)
		qsort(subs.names, subs.n, sizeof(*subs.names), str_cmp);

	/* Children: names below "x/" sort right after "x/" itself. */
	for (size_t i = 0; i < n; i++) {
		size_t lo = i + 1;
		bool kids = lo < n && is_child(list[lo].name, list[i].name);

		/* "x-y" sorts between "x" and "x/"; skip past such names. */
		for (size_t j = lo; !kids && j < n; j++) {
			if (strncmp(list[j].name, list[i].name, strlen(list[i].name)) != 0)
				break;
			kids = is_child(list[j].name, list[i].name);
		}
		list[i].attrs |= kids ? MBOX_HASCHILDREN : MBOX_HASNOCHILDREN;
	}
	/* Subscriptions, marking absent ones \NonExistent. */
	{
		size_t real = n;

		for (size_t s = 0; s < subs.n; s++) {
			struct mailbox_info key = {.name = subs.names[s]};
			struct mailbox_info *hit =
			    bsearch(&key, list, real, sizeof(*list), info_cmp);

			if (hit != NULL) {
				hit->attrs |= MBOX_SUBSCRIBED;
				continue;
			}
			list[n].name = subs.names[s];
			subs.names[s] = NULL;
			list[n].attrs = MBOX_SUBSCRIBED | MBOX_NONEXISTENT;
			n++;
		}
		if (n > real)
			qsort(list, n, sizeof(*list), info_cmp);
	}
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
	uint8_t key[12];
	MDB_cursor *cur;
	MDB_val k = {12, key}, v;
	int rc;

	if (first <= rec->recent_first)
		return 0;
	if ((rc = mdb_cursor_open(txn, sh->msgs, &cur)) != 0)
		return lmdb_err("cursor", rc);
	lmdb_be64(key, id);
	lmdb_be32(key + 8, first);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 12 || lmdb_get_be64(k.mv_data) != id)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err("recent", rc);
	*recent_r = n;
	return 0;
}

int
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
lmdb_op_status(struct storage *st, const char *user, const char *name,
               struct mailbox_status *status_r)
{
	struct lmdb_shard *sh = shard(st, user);
	struct lmdb_mbox rec;
	MDB_txn *txn;
	uint64_t id;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	if ((rc = lmdb_mbox_id(txn, sh, user, name, &id)) == 0 &&
	    (rc = lmdb_mbox_get(txn, sh, id, &rec, NULL)) == 0) {
		if (rec.noselect)
			rc = ROOST_ENOTFOUND;
		else
			rc = lmdb_status_fill(txn, sh, id, &rec, status_r);
	}
	lmdb_rtxn_end(sh, txn);
	return rc;
}
