/*
 * LMDB keys and records: big-endian keys, the names and mboxes tables,
 * keyword tables, message records and their modseq and unseen indexes,
 * mailbox ids and UIDVALIDITY.
 */

#include <openssl/evp.h>
#include <string.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#define MBOX_VERSION 1

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
		fatal("event=storage_error backend=lmdb error=\"SHA-256 unavailable\"");
}

/* Names can be longer than LMDB's 511-byte key limit, so the key is a hash
 * and the value carries the real user and name (checked on lookup). */
void
lmdb_name_key(uint8_t key[LMDB_NAME_KEY], const char *user, const char *name)
{
	uint8_t h[LMDB_SHA_LEN];

	lmdb_sha256(user, strlen(user), h);
	memcpy(key, h, LMDB_USER_PREFIX);
	lmdb_sha256(name, strlen(name), h);
	memcpy(key + LMDB_USER_PREFIX, h, LMDB_NAME_KEY - LMDB_USER_PREFIX);
}

/* names value: id(8) user \0 name \0; subs value: user \0 name \0. */
bool
lmdb_value_names(const MDB_val *v, size_t skip, const char **user_r, const char **name_r)
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
	if (!lmdb_value_names(&v, 8, &vu, &vn) || strcmp(vu, user) != 0 || strcmp(vn, name) != 0)
		return ROOST_ENOTFOUND;
	memcpy(id_r, v.mv_data, 8);
	return 0;
}

int
lmdb_names_put(struct lmdb_w *w, const char *user, const char *name, uint64_t id)
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

int
lmdb_names_del(struct lmdb_w *w, const char *user, const char *name)
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
		log_error("event=lmdb_error path=%s mailbox_id=%llu error=\"short record\"",
		          sh->path, (unsigned long long)id);
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
lmdb_mbox_selectable(MDB_txn *txn, struct lmdb_shard *sh, const char *user, const char *name,
                     uint64_t *id_r, struct lmdb_mbox *rec_r)
{
	int rc;

	if ((rc = lmdb_mbox_id(txn, sh, user, name, id_r)) != 0 ||
	    (rc = lmdb_mbox_get(txn, sh, *id_r, rec_r, NULL)) != 0)
		return rc;
	return rec_r->noselect ? ROOST_ENOTFOUND : 0;
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
		struct lmdb_msg m;

		if (unref_bodies && k.mv_size == 12 &&
		    lmdb_msg_decode(&v, id, lmdb_get_be32((const uint8_t *)k.mv_data + 8), &m)) {
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
	    (rc = del_prefix(w, w->sh->unseen, id, false)) != 0 || (rc = lmdb_meta_del(w, id)) != 0)
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
	if ((rc = lmdb_mbox_put(w, id, &rec, &kw)) != 0 ||
	    (rc = lmdb_names_put(w, user, name, id)) != 0)
		return rc;
	if (id_r != NULL)
		*id_r = id;
	return 0;
}

void
lmdb_msg_key(uint8_t key[12], uint64_t id, uint32_t uid)
{
	lmdb_be64(key, id);
	lmdb_be32(key + 8, uid);
}

void
lmdb_seq_key(uint8_t key[20], uint64_t id, uint64_t modseq, uint32_t uid)
{
	lmdb_be64(key, id);
	lmdb_be64(key + 8, modseq);
	lmdb_be32(key + 16, uid);
}

int
lmdb_msg_iter_open(struct lmdb_msg_iter *it, MDB_txn *txn, struct lmdb_shard *sh, uint64_t id,
                   uint32_t first)
{
	memset(it, 0, sizeof(*it));
	it->id = id;
	lmdb_msg_key(it->key, id, first);
	it->k.mv_size = sizeof(it->key);
	it->k.mv_data = it->key;
	return mdb_cursor_open(txn, sh->msgs, &it->cur);
}

bool
lmdb_msg_iter_next(struct lmdb_msg_iter *it)
{
	if (it->cur == NULL || it->rc != 0)
		return false;
	it->rc = mdb_cursor_get(it->cur, &it->k, &it->v, it->started ? MDB_NEXT : MDB_SET_RANGE);
	it->started = true;
	if (it->rc == MDB_NOTFOUND ||
	    (it->rc == 0 && (it->k.mv_size != 12 || lmdb_get_be64(it->k.mv_data) != it->id))) {
		it->rc = 0;
		mdb_cursor_close(it->cur);
		it->cur = NULL;
		return false;
	}
	if (it->rc != 0)
		return false;
	it->uid = lmdb_get_be32((const uint8_t *)it->k.mv_data + 8);
	return true;
}

void
lmdb_msg_iter_close(struct lmdb_msg_iter *it)
{
	if (it->cur != NULL)
		mdb_cursor_close(it->cur);
	it->cur = NULL;
}

int
lmdb_msg_get(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, uint32_t uid, struct lmdb_msg *m)
{
	uint8_t key[12];
	MDB_val k = {12, key}, v;
	int rc;

	lmdb_msg_key(key, id, uid);
	if ((rc = mdb_get(txn, sh->msgs, &k, &v)) != 0)
		return lmdb_err("get msg", rc);
	if (!lmdb_msg_decode(&v, id, uid, m))
		return lmdb_err("get msg", MDB_CORRUPTED);
	return 0;
}

bool
lmdb_msg_decode(const MDB_val *v, uint64_t id, uint32_t uid, struct lmdb_msg *m)
{
	if (v->mv_size == sizeof(*m)) {
		memcpy(m, v->mv_data, sizeof(*m));
		return true;
	}
	if (v->mv_size == LMDB_MSG_V2_SIZE) {
		memset(m, 0, sizeof(*m));
		memcpy(m, v->mv_data, LMDB_MSG_V2_SIZE);
		return true;
	}
	if (v->mv_size == LMDB_MSG_V1_SIZE) {
		uint8_t d[LMDB_SHA_LEN + 12];

		memset(m, 0, sizeof(*m));
		memcpy(m, v->mv_data, LMDB_MSG_V1_SIZE);
		memcpy(d, m->sha, LMDB_SHA_LEN);
		lmdb_be64(d + LMDB_SHA_LEN, id);
		lmdb_be32(d + LMDB_SHA_LEN + 8, uid);
		m->emailid = storage_derived_emailid(d, sizeof(d));
		return true;
	}
	return false;
}

int
lmdb_msg_put(struct lmdb_w *w, uint64_t id, uint32_t uid, const struct lmdb_msg *m)
{
	uint8_t key[12];
	MDB_val k = {12, key}, v = {sizeof(*m), (void *)m};

	lmdb_msg_key(key, id, uid);
	return lmdb_wput(w, w->sh->msgs, &k, &v, 0);
}

int
lmdb_seq_put(struct lmdb_w *w, MDB_dbi dbi, uint64_t id, uint64_t modseq, uint32_t uid,
             const void *val, size_t vlen)
{
	uint8_t key[20];
	MDB_val k = {20, key}, v = {vlen, (void *)val};

	lmdb_seq_key(key, id, modseq, uid);
	return lmdb_wput(w, dbi, &k, &v, 0);
}

int
lmdb_seq_del(struct lmdb_w *w, uint64_t id, uint64_t modseq, uint32_t uid)
{
	uint8_t key[20];
	MDB_val k = {20, key};

	lmdb_seq_key(key, id, modseq, uid);
	return lmdb_wdel(w, w->sh->modseq, &k);
}

int
lmdb_unseen_set(struct lmdb_w *w, uint64_t id, uint32_t uid, bool unseen)
{
	uint8_t key[12];
	MDB_val k = {12, key}, v = {0, ""};

	lmdb_msg_key(key, id, uid);
	return unseen ? lmdb_wput(w, w->sh->unseen, &k, &v, 0) : lmdb_wdel(w, w->sh->unseen, &k);
}
