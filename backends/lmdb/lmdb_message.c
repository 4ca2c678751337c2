/*
 * LMDB messages: delivery and append, records, zero-copy reads, flags,
 * expunge, copy/move, changes-since, \Recent and the parse cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

static struct lmdb_shard *
shard(struct storage *st, const char *user)
{
	return lmdb_shard_of(container_of(st, struct lmdb_storage, base), user);
}

static struct lmdb_mailbox *
LM(struct mailbox *mb)
{
	return container_of(mb, struct lmdb_mailbox, base);
}

static void
msg_key(uint8_t key[12], uint64_t id, uint32_t uid)
{
	lmdb_be64(key, id);
	lmdb_be32(key + 8, uid);
}

static void
seq_key(uint8_t key[20], uint64_t id, uint64_t modseq, uint32_t uid)
{
	lmdb_be64(key, id);
	lmdb_be64(key + 8, modseq);
	lmdb_be32(key + 16, uid);
}

static int
msg_get(MDB_txn *txn, struct lmdb_shard *sh, uint64_t id, uint32_t uid, struct lmdb_msg *m)
{
	uint8_t key[12];
	MDB_val k = {12, key}, v;
	int rc;

	msg_key(key, id, uid);
	if ((rc = mdb_get(txn, sh->msgs, &k, &v)) != 0)
		return lmdb_err("get msg", rc);
	if (v.mv_size != sizeof(*m))
		return lmdb_err("get msg", MDB_CORRUPTED);
	memcpy(m, v.mv_data, sizeof(*m));
	return 0;
}

static int
msg_put(struct lmdb_w *w, uint64_t id, uint32_t uid, const struct lmdb_msg *m)
{
	uint8_t key[12];
	MDB_val k = {12, key}, v = {sizeof(*m), (void *)m};

	msg_key(key, id, uid);
	return lmdb_wput(w, w->sh->msgs, &k, &v, 0);
}

static int
seq_put(struct lmdb_w *w, MDB_dbi dbi, uint64_t id, uint64_t modseq, uint32_t uid, const void *val,
        size_t vlen)
{
	uint8_t key[20];
	MDB_val k = {20, key}, v = {vlen, (void *)val};

	seq_key(key, id, modseq, uid);
	return lmdb_wput(w, dbi, &k, &v, 0);
}

static int
seq_del(struct lmdb_w *w, uint64_t id, uint64_t modseq, uint32_t uid)
{
	uint8_t key[20];
	MDB_val k = {20, key};

	seq_key(key, id, modseq, uid);
	return lmdb_wdel(w, w->sh->modseq, &k);
}

static int
unseen_set(struct lmdb_w *w, uint64_t id, uint32_t uid, bool unseen)
{
	uint8_t key[12];
	MDB_val k = {12, key}, v = {0, ""};

	msg_key(key, id, uid);
	return unseen ? lmdb_wput(w, w->sh->unseen, &k, &v, 0) : lmdb_wdel(w, w->sh->unseen, &k);
}

/* ------------------------------------------------------------------ */
/* Delivery and append                                                 */
/* ------------------------------------------------------------------ */

struct body {
	const uint8_t *data;
	size_t len;
	void *map;
	uint8_t *owned;
	uint8_t sha[LMDB_SHA_LEN];
};

static int
body_load(const struct msg_input *msg, struct body *b)
{
	memset(b, 0, sizeof(*b));
	b->len = msg->len;
	if (msg->fd < 0 || msg->len == 0) {
		b->data = msg->len > 0 ? msg->data : (const uint8_t *)"";
	} else {
		struct stat sb;

		/* Mapping past the end of the file would fault on access. */
		if (fstat(msg->fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
		    (uint64_t)sb.st_size < msg->len)
			b->map = MAP_FAILED;
		else
			b->map = mmap(NULL, msg->len, PROT_READ, MAP_PRIVATE, msg->fd, 0);
		if (b->map != MAP_FAILED) {
			b->data = b->map;
		} else {
			size_t off = 0;

			b->map = NULL;
			b->owned = xmalloc(msg->len);
			while (off < msg->len) {
				ssize_t r =
				    pread(msg->fd, b->owned + off, msg->len - off, (off_t)off);

				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0) {
					log_error("storage: reading spooled message: %s",
					          r < 0 ? strerror(errno) : "short file");
					free(b->owned);
					b->owned = NULL;
					return ROOST_EIO;
				}
				off += (size_t)r;
			}
			b->data = b->owned;
		}
	}
	lmdb_sha256(b->data, b->len, b->sha);
	return 0;
}

static void
body_free(struct body *b)
{
	if (b->map != NULL)
		munmap(b->map, b->len);
	free(b->owned);
	memset(b, 0, sizeof(*b));
}

struct deliver_arg {
	const struct body *b;
	const struct msg_input *msg;
	int64_t idate;
	/* deliver: targets[idx[i]] for i < n; append: mbox_id */
	struct delivery_target *targets;
	const size_t *idx;
	size_t n;
	uint64_t mbox_id;
	uint32_t uid;
};

static int
append_one(struct lmdb_w *w, uint64_t id, const struct deliver_arg *a, uint32_t *uid_r,
           uint32_t *uidvalidity_r)
{
	struct lmdb_mbox rec;
	struct lmdb_kwtab kw;
	struct lmdb_msg m;
	size_t nkw0;
	uint8_t key[12];
	MDB_val k = {12, key}, v;
	int rc;

	if ((rc = lmdb_mbox_get(w->txn, w->sh, id, &rec, &kw)) != 0)
		return rc;
	if (rec.noselect)
		return ROOST_ENOTFOUND;
	if (rec.uidnext == UINT32_MAX)
		return ROOST_ETOOBIG;
	memset(&m, 0, sizeof(m));
	nkw0 = kw.n;
	for (size_t i = 0; i < a->msg->n_keywords; i++) {
		bool full = false;
		int bit = lmdb_kw_index(&kw, a->msg->keywords[i], true, &full);

		if (bit < 0)
			return ROOST_ETOOBIG;
		m.keywords |= 1ULL << bit;
	}
	m.flags = a->msg->flags;
	m.modseq = ++rec.highestmodseq;
	m.internal_date = a->idate;
	m.size = a->b->len;
	memcpy(m.sha, a->b->sha, LMDB_SHA_LEN);
	*uid_r = rec.uidnext++;
	msg_key(key, id, *uid_r);
	v.mv_size = sizeof(m);
	v.mv_data = &m;
	if ((rc = lmdb_wput(w, w->sh->msgs, &k, &v, MDB_NOOVERWRITE)) != 0)
		return rc == ROOST_EEXISTS ? ROOST_EIO : rc;
	if ((rc = seq_put(w, w->sh->modseq, id, m.modseq, *uid_r, "", 0)) != 0 ||
	    (rc = lmdb_body_ref(w, a->b->sha, a->b->data, a->b->len, true)) != 0)
		return rc;
	if ((m.flags & MSG_SEEN) == 0 && (rc = unseen_set(w, id, *uid_r, true)) != 0)
		return rc;
	rec.messages++;
	rec.recent++;
	if ((m.flags & MSG_SEEN) == 0)
		rec.unseen++;
	rec.size += m.size;
	if ((rc = lmdb_mbox_put(w, id, &rec, kw.n != nkw0 ? &kw : NULL)) != 0)
		return rc;
	*uidvalidity_r = rec.uidvalidity;
	return 0;
}

static int
w_deliver(struct lmdb_w *w, void *arg)
{
	struct deliver_arg *a = arg;
	int first = 0;
	bool any = false;

	for (size_t i = 0; i < a->n; i++) {
		struct delivery_target *t = &a->targets[a->idx[i]];
		struct lmdb_w cw = {.sh = w->sh};
		uint64_t id;
		int rc;

		t->uid = t->uidvalidity = 0;
		if ((rc = mdb_txn_begin(mdb_txn_env(w->txn), w->txn, 0, &cw.txn)) != 0) {
			if (rc == MDB_MAP_FULL)
				w->mdb_err = rc;
			t->result = lmdb_err("nested txn", rc);
			if (w->mdb_err != 0)
				return t->result;
			continue;
		}
		rc = lmdb_mbox_id(cw.txn, w->sh, t->user, t->mailbox, &id);
		if (rc == 0)
			rc = append_one(&cw, id, a, &t->uid, &t->uidvalidity);
		if (cw.mdb_err != 0) {
			mdb_txn_abort(cw.txn);
			w->mdb_err = cw.mdb_err;
			t->result = rc != 0 ? rc : ROOST_EIO;
			return t->result;
		}
		if (rc == 0 && (rc = mdb_txn_commit(cw.txn)) != 0) {
			w->mdb_err = rc;
			t->result = lmdb_err("commit", rc);
			return t->result;
		} else if (rc != 0) {
			mdb_txn_abort(cw.txn);
		}
		t->result = rc;
		if (rc == 0) {
			any = true;
		} else {
			t->uid = t->uidvalidity = 0;
			if (first == 0)
				first = rc;
		}
	}
	return any ? 0 : first;
}

static int64_t
idate_of(const struct msg_input *msg)
{
	return msg->internal_date != 0 ? msg->internal_date : (int64_t)time(NULL);
}

int
lmdb_op_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
                size_t n)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);
	struct body b;
	size_t *idx;
	int rc, first = 0;

	if ((rc = body_load(msg, &b)) != 0) {
		for (size_t i = 0; i < n; i++)
			targets[i].result = rc;
		return rc;
	}
	idx = xcalloc(n, sizeof(*idx));
	for (unsigned s = 0; s < ls->n_shards; s++) {
		struct lmdb_shard *sh = &ls->shards[s];
		struct deliver_arg a = {
		    .b = &b, .msg = msg, .idate = idate_of(msg), .targets = targets, .idx = idx};

		for (size_t i = 0; i < n; i++) {
			if (lmdb_shard_of(ls, targets[i].user) == sh)
				idx[a.n++] = i;
		}
		if (a.n == 0)
			continue;
		rc = lmdb_write(sh, w_deliver, &a);
		for (size_t i = 0; rc != 0 && i < a.n; i++) {
			/* The commit failed: nothing of this shard is stored. */
			if (targets[idx[i]].result == 0)
				targets[idx[i]].result = rc;
		}
	}
	for (size_t i = 0; i < n && first == 0; i++)
		first = targets[i].result;
	free(idx);
	body_free(&b);
	return first;
}

static int
w_append(struct lmdb_w *w, void *arg)
{
	struct deliver_arg *a = arg;
	uint32_t uidvalidity;

	return append_one(w, a->mbox_id, a, &a->uid, &uidvalidity);
}

int
lmdb_op_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct body b;
	struct deliver_arg a = {.b = &b, .msg = msg, .idate = idate_of(msg), .mbox_id = lm->id};
	int rc;

	if ((rc = body_load(msg, &b)) != 0)
		return rc;
	rc = lmdb_write(lm->sh, w_append, &a);
	body_free(&b);
	if (rc == 0 && uid_r != NULL)
		*uid_r = a.uid;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Open mailbox, reading                                               */
/* ------------------------------------------------------------------ */

int
lmdb_op_mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
                     struct mailbox **mb_r)
{
	struct lmdb_shard *sh = shard(st, user);
	struct lmdb_mailbox *lm;
	struct lmdb_mbox rec;
	MDB_txn *txn;
	uint64_t id;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	if ((rc = lmdb_mbox_id(txn, sh, user, name, &id)) == 0 &&
	    (rc = lmdb_mbox_get(txn, sh, id, &rec, NULL)) == 0 && rec.noselect)
		rc = ROOST_ENOTFOUND;
	lmdb_rtxn_end(sh, txn);
	if (rc != 0)
		return rc;
	lm = xcalloc(1, sizeof(*lm));
	lm->sh = sh;
	lm->id = id;
	lm->uidvalidity = rec.uidvalidity;
	*mb_r = &lm->base;
	return 0;
}

void
lmdb_op_mailbox_close(struct mailbox *mb)
{
	struct lmdb_mailbox *lm = LM(mb);

	free(lm->kw_blob);
	free(lm);
}

/* The mailbox record, or ROOST_ENOTFOUND once it was deleted (or renamed
 * over and re-created: ids are never reused). */
static int
cur_rec(MDB_txn *txn, struct lmdb_mailbox *lm, struct lmdb_mbox *rec, struct lmdb_kwtab *kw)
{
	int rc = lmdb_mbox_get(txn, lm->sh, lm->id, rec, kw);

	if (rc == 0 && rec->noselect)
		rc = ROOST_ENOTFOUND;
	return rc;
}

int
lmdb_op_mailbox_status(struct mailbox *mb, struct mailbox_status *status_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct lmdb_mbox rec;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	if ((rc = cur_rec(txn, lm, &rec, NULL)) == 0)
		rc = lmdb_status_fill(txn, lm->sh, lm->id, &rec, status_r);
	lmdb_rtxn_end(lm->sh, txn);
	return rc;
}

static void
rec_out(struct msg_record *r, uint32_t uid, const struct lmdb_msg *m)
{
	r->uid = uid;
	r->flags = m->flags;
	r->keywords = m->keywords;
	r->modseq = m->modseq;
	r->internal_date = m->internal_date;
	r->size = m->size;
}

int
lmdb_op_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct msg_record *recs = NULL;
	struct lmdb_mbox rec;
	uint8_t key[12];
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k = {12, key}, v;
	size_t n = 0, cap;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	if ((rc = cur_rec(txn, lm, &rec, NULL)) != 0)
		goto out;
	if ((rc = mdb_cursor_open(txn, lm->sh->msgs, &cur)) != 0) {
		rc = lmdb_err("cursor", rc);
		goto out;
	}
	cap = rec.messages + 16;
	recs = xreallocarray(NULL, cap, sizeof(*recs));
	msg_key(key, lm->id, 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmdb_msg m;

		if (k.mv_size != 12 || lmdb_get_be64(k.mv_data) != lm->id)
			break;
		if (v.mv_size != sizeof(m))
			continue;
		memcpy(&m, v.mv_data, sizeof(m));
		if (n == cap) {
			cap *= 2;
			recs = xreallocarray(recs, cap, sizeof(*recs));
		}
		rec_out(&recs[n++], lmdb_get_be32((const uint8_t *)k.mv_data + 8), &m);
	}
	mdb_cursor_close(cur);
	rc = rc == MDB_NOTFOUND || rc == 0 ? 0 : lmdb_err("records", rc);
	if (modseq_r != NULL)
		*modseq_r = rec.highestmodseq;
out:
	lmdb_rtxn_end(lm->sh, txn);
	if (rc != 0) {
		free(recs);
		return rc;
	}
	*recs_r = recs;
	*n_r = n;
	return 0;
}

int
lmdb_op_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct lmdb_mbox rec;
	struct lmdb_kwtab kw;
	MDB_txn *txn;
	size_t total = 0, off = 0;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	rc = cur_rec(txn, lm, &rec, &kw);
	lmdb_rtxn_end(lm->sh, txn);
	if (rc != 0)
		return rc;
	free(lm->kw_blob);
	for (size_t i = 0; i < kw.n; i++)
		total += strlen(kw.names[i]) + 1;
	lm->kw_blob = xmalloc(total + 1);
	for (size_t i = 0; i < kw.n; i++) {
		size_t len = strlen(kw.names[i]) + 1;

		memcpy(lm->kw_blob + off, kw.names[i], len);
		lm->kw_names[i] = lm->kw_blob + off;
		off += len;
	}
	lm->n_kw = kw.n;
	*names_r = lm->kw_names;
	*n_r = lm->n_kw;
	return 0;
}

/*
 * \Recent (RFC 3501 2.3.2): the mailbox's boundary moves to UIDNEXT and the
 * claimer gets the old one, so each new message is recent for one session.
 * The decision is taken under claim_lock against the boundary this process
 * last gave out (sh->claims), which may be ahead of the database; the
 * database follows in the next group commit (w_claim, not waited for). Only
 * `roost serve` claims, so the table is the whole truth, and a crash before
 * the commit at worst shows a message as recent once more.
 */
struct claim_arg {
	uint64_t id;
	uint32_t first;
};

static size_t
claim_find(const struct lmdb_shard *sh, uint64_t id)
{
	size_t i;

	for (i = 0; i < sh->n_claims; i++) {
		if (sh->claims[i].id == id)
			break;
	}
	return i;
}

uint32_t
lmdb_claim_boundary(struct lmdb_shard *sh, uint64_t id)
{
	uint32_t first = 0;
	size_t i;

	pthread_mutex_lock(&sh->claim_lock);
	i = claim_find(sh, id);
	if (i < sh->n_claims)
		first = sh->claims[i].first;
	pthread_mutex_unlock(&sh->claim_lock);
	return first;
}

static int
claim_cmp(const void *a, const void *b)
{
	const struct lmdb_claim *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/*
 * Forget the claims the database already holds (or whose mailbox is gone).
 * Called without claim_lock: a read transaction takes the map lock, which
 * lmdb_status_fill() holds when it takes claim_lock.
 */
static void
claims_prune(struct lmdb_shard *sh)
{
	struct lmdb_claim *done;
	struct lmdb_mbox rec;
	MDB_txn *txn;
	size_t n, i, j, k;

	pthread_mutex_lock(&sh->claim_lock);
	n = sh->n_claims;
	done = xreallocarray(NULL, n + 1, sizeof(*done));
	memcpy(done, sh->claims, n * sizeof(*done));
	pthread_mutex_unlock(&sh->claim_lock);
	if (lmdb_rtxn_begin(sh, &txn) != 0) {
		free(done);
		return;
	}
	for (i = k = 0; i < n; i++) {
		if (lmdb_mbox_get(txn, sh, done[i].id, &rec, NULL) != 0 ||
		    rec.recent_first >= done[i].first)
			done[k++] = done[i];
	}
	lmdb_rtxn_end(sh, txn);
	qsort(done, k, sizeof(*done), claim_cmp);
	pthread_mutex_lock(&sh->claim_lock);
	for (i = j = 0; i < sh->n_claims; i++) {
		if (bsearch(&sh->claims[i], done, k, sizeof(*done), claim_cmp) == NULL)
			sh->claims[j++] = sh->claims[i];
	}
	sh->n_claims = j;
	sh->prune_at = j * 2 > 64 ? j * 2 : 64;
	pthread_mutex_unlock(&sh->claim_lock);
	free(done);
}

/* Move the stored boundary up to a->first, uncounting the messages below it. */
static int
w_claim(struct lmdb_w *w, void *arg)
{
	struct claim_arg *a = arg;
	struct lmdb_mbox rec;
	uint8_t key[12];
	MDB_cursor *cur;
	MDB_val k = {12, key}, v;
	uint32_t n = 0;
	int rc;

	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &rec, NULL)) != 0)
		return rc;
	if (a->first <= rec.recent_first || a->first > rec.uidnext)
		return 0;
	if ((rc = mdb_cursor_open(w->txn, w->sh->msgs, &cur)) != 0)
		return lmdb_err("cursor", rc);
	msg_key(key, a->id, rec.recent_first);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 12 || lmdb_get_be64(k.mv_data) != a->id ||
		    lmdb_get_be32((const uint8_t *)k.mv_data + 8) >= a->first)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err("claim", rc);
	rec.recent = rec.recent > n ? rec.recent - n : 0;
	rec.recent_first = a->first;
	return lmdb_mbox_put(w, a->id, &rec, NULL);
}

int
lmdb_op_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct lmdb_shard *sh = lm->sh;
	struct claim_arg *a;
	struct lmdb_mbox rec;
	MDB_txn *txn;
	uint32_t first;
	size_t i;
	bool prune;
	int rc;

	if ((rc = lmdb_rtxn_begin(sh, &txn)) != 0)
		return rc;
	rc = cur_rec(txn, lm, &rec, NULL);
	lmdb_rtxn_end(sh, txn);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&sh->claim_lock);
	first = rec.recent_first;
	i = claim_find(sh, lm->id);
	if (i < sh->n_claims) {
		if (sh->claims[i].first > first)
			first = sh->claims[i].first;
		else
			sh->claims[i] = sh->claims[--sh->n_claims];
	}
	*first_recent_uid_r = first;
	*next_r = first;
	if (first >= rec.uidnext || (mb->flags & MAILBOX_READONLY) != 0) {
		pthread_mutex_unlock(&sh->claim_lock);
		return 0;
	}
	i = claim_find(sh, lm->id);
	if (i == sh->n_claims) {
		if (sh->n_claims == sh->cap_claims) {
			sh->cap_claims = sh->cap_claims == 0 ? 64 : sh->cap_claims * 2;
			sh->claims = xreallocarray(sh->claims, sh->cap_claims, sizeof(*sh->claims));
		}
		i = sh->n_claims++;
		sh->claims[i].id = lm->id;
	}
	sh->claims[i].first = rec.uidnext;
	prune = sh->n_claims >= (sh->prune_at > 0 ? sh->prune_at : 64);
	pthread_mutex_unlock(&sh->claim_lock);
	*next_r = rec.uidnext;
	a = xmalloc(sizeof(*a));
	a->id = lm->id;
	a->first = rec.uidnext;
	lmdb_write_async(sh, w_claim, a, sizeof(*a), free);
	if (prune)
		claims_prune(sh);
	return 0;
}

static void
view_release(struct msg_view *view)
{
	lmdb_rtxn_end(view->priv[0], view->priv[1]);
	view->priv[0] = view->priv[1] = NULL;
}

int
lmdb_op_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct lmdb_msg m;
	MDB_txn *txn;
	MDB_val k = {LMDB_SHA_LEN, NULL}, v;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	if ((rc = msg_get(txn, lm->sh, lm->id, uid, &m)) != 0)
		goto fail;
	k.mv_data = m.sha;
	if ((rc = mdb_get(txn, lm->sh->bodies, &k, &v)) != 0) {
		log_error("storage: lmdb %s: body of uid %u missing", lm->sh->path, uid);
		rc = ROOST_EIO;
		goto fail;
	}
	/* Zero-copy into the map, under a read transaction: the caller
	 * releases it within its step and reads again by UID (storage.h). */
	view_r->data = v.mv_data;
	view_r->len = v.mv_size;
	view_r->holdable = false;
	view_r->priv[0] = lm->sh;
	view_r->priv[1] = txn;
	view_r->release = view_release;
	return 0;
fail:
	lmdb_rtxn_end(lm->sh, txn);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Cache                                                               */
/* ------------------------------------------------------------------ */

int
lmdb_op_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	struct lmdb_mailbox *lm = LM(mb);
	uint8_t key[12];
	MDB_val k = {12, key}, v;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	msg_key(key, lm->id, uid);
	rc = mdb_get(txn, lm->sh->cache, &k, &v);
	if (rc == 0)
		rc = buf_append(out, v.mv_data, v.mv_size);
	else
		rc = lmdb_err("cache get", rc);
	lmdb_rtxn_end(lm->sh, txn);
	return rc;
}

struct cache_arg {
	uint64_t id;
	uint32_t uid;
	size_t len;
	uint8_t data[];
};

static int
w_cache(struct lmdb_w *w, void *arg)
{
	struct cache_arg *a = arg;
	uint8_t key[12];
	MDB_val k = {12, key}, v = {a->len, a->data};

	msg_key(key, a->id, a->uid);
	if (mdb_get(w->txn, w->sh->msgs, &k, &v) != 0)
		return 0; /* expunged meanwhile */
	v.mv_size = a->len;
	v.mv_data = a->data;
	return lmdb_wput(w, w->sh->cache, &k, &v, 0);
}

/*
 * Cache fills do not wait for their commit: they are derived data, and
 * FETCH of many messages must not pay one sync per message. The writer
 * batches them (with any other writes) and a crash loses only cache.
 */
int
lmdb_op_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct cache_arg *a = xmalloc(sizeof(*a) + len);

	a->id = lm->id;
	a->uid = uid;
	a->len = len;
	if (len > 0)
		memcpy(a->data, data, len);
	lmdb_write_async(lm->sh, w_cache, a, sizeof(*a) + len, free);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Store, expunge, copy                                                */
/* ------------------------------------------------------------------ */

struct store_arg {
	uint64_t id;
	const uint32_t *uids;
	size_t n;
	const struct store_req *req;
	uint32_t *modified;
	size_t n_modified;
};

static int
w_store(struct lmdb_w *w, void *arg)
{
	struct store_arg *a = arg;
	const struct store_req *req = a->req;
	struct lmdb_mbox rec;
	struct lmdb_kwtab kw;
	uint64_t kwbits = 0, newseq;
	size_t nkw0, cap = 0;
	bool changed = false;
	int rc;

	free(a->modified);
	a->modified = NULL;
	a->n_modified = 0;
	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &rec, &kw)) != 0)
		return rc;
	if (rec.noselect)
		return ROOST_ENOTFOUND;
	nkw0 = kw.n;
	for (size_t i = 0; i < req->n_keywords; i++) {
		bool full = false;
		int bit = lmdb_kw_index(&kw, req->keywords[i], req->mode != STORE_REMOVE, &full);

		if (full)
			return ROOST_ETOOBIG;
		if (bit >= 0)
			kwbits |= 1ULL << bit;
	}
	newseq = rec.highestmodseq + 1;
	for (size_t i = 0; i < a->n; i++) {
		struct lmdb_msg m;
		uint32_t nf;
		uint64_t nk;

		rc = msg_get(w->txn, w->sh, a->id, a->uids[i], &m);
		if (rc == ROOST_ENOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if (req->unchanged_since != 0 && m.modseq > req->unchanged_since) {
			if (a->n_modified == cap) {
				cap = cap == 0 ? 16 : cap * 2;
				a->modified = xreallocarray(a->modified, cap, sizeof(uint32_t));
			}
			a->modified[a->n_modified++] = a->uids[i];
			continue;
		}
		switch (req->mode) {
		case STORE_ADD:
			nf = m.flags | req->flags;
			nk = m.keywords | kwbits;
			break;
		case STORE_REMOVE:
			nf = m.flags & ~req->flags;
			nk = m.keywords & ~kwbits;
			break;
		default:
			nf = req->flags;
			nk = kwbits;
			break;
		}
		if (nf == m.flags && nk == m.keywords)
			continue;
		if ((rc = seq_del(w, a->id, m.modseq, a->uids[i])) != 0)
			return rc;
		if ((m.flags & MSG_SEEN) != (nf & MSG_SEEN)) {
			bool unseen = (nf & MSG_SEEN) == 0;

			if (unseen)
				rec.unseen++;
			else if (rec.unseen > 0)
				rec.unseen--;
			if ((rc = unseen_set(w, a->id, a->uids[i], unseen)) != 0)
				return rc;
		}
		m.flags = nf;
		m.keywords = nk;
		m.modseq = newseq;
		if ((rc = msg_put(w, a->id, a->uids[i], &m)) != 0 ||
		    (rc = seq_put(w, w->sh->modseq, a->id, newseq, a->uids[i], "", 0)) != 0)
			return rc;
		changed = true;
	}
	if (changed)
		rec.highestmodseq = newseq;
	if (changed || kw.n != nkw0)
		return lmdb_mbox_put(w, a->id, &rec, kw.n != nkw0 ? &kw : NULL);
	return 0;
}

int
lmdb_op_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
              uint32_t **modified_r, size_t *n_modified_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct store_arg a = {.id = lm->id, .uids = uids, .n = n, .req = req};
	int rc = lmdb_write(lm->sh, w_store, &a);

	if (rc != 0) {
		free(a.modified);
		return rc;
	}
	*modified_r = a.modified;
	*n_modified_r = a.n_modified;
	return 0;
}

/* Remove one message record (expunge or the source side of a move). */
static int
remove_msg(struct lmdb_w *w, uint64_t id, uint32_t uid, const struct lmdb_msg *m, uint64_t seq,
           int64_t now, struct lmdb_mbox *rec)
{
	uint8_t key[12];
	MDB_val k = {12, key};
	int rc;

	msg_key(key, id, uid);
	if ((rc = lmdb_wdel(w, w->sh->msgs, &k)) != 0 ||
	    (rc = lmdb_wdel(w, w->sh->cache, &k)) != 0 ||
	    (rc = lmdb_wdel(w, w->sh->unseen, &k)) != 0 ||
	    (rc = seq_del(w, id, m->modseq, uid)) != 0 ||
	    (rc = seq_put(w, w->sh->expunged, id, seq, uid, &now, sizeof(now))) != 0 ||
	    (rc = lmdb_body_unref(w, m->sha)) != 0)
		return rc;
	if (rec->messages > 0)
		rec->messages--;
	if (uid >= rec->recent_first && rec->recent > 0)
		rec->recent--;
	if ((m->flags & MSG_SEEN) == 0 && rec->unseen > 0)
		rec->unseen--;
	rec->size = rec->size >= m->size ? rec->size - m->size : 0;
	return 0;
}

#define PRUNE_BATCH 10000

/* Drop expunge-log entries past the retention (bounded work per call). */
static int
prune_expunged(struct lmdb_w *w, uint64_t id, struct lmdb_mbox *rec, int64_t now)
{
	uint8_t key[8];
	MDB_cursor *cur;
	MDB_val k = {8, key}, v;
	int rc, err = 0;

	if (w->sh->retention == 0)
		return 0;
	lmdb_be64(key, id);
	if ((rc = mdb_cursor_open(w->txn, w->sh->expunged, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (int i = 0; i < PRUNE_BATCH; i++) {
		int64_t when;

		k.mv_size = 8;
		k.mv_data = key;
		if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) != 0 || k.mv_size != 20 ||
		    lmdb_get_be64(k.mv_data) != id || v.mv_size != sizeof(when))
			break;
		memcpy(&when, v.mv_data, sizeof(when));
		if (when >= now - (int64_t)w->sh->retention)
			break;
		if (lmdb_get_be64((const uint8_t *)k.mv_data + 8) > rec->expunge_floor)
			rec->expunge_floor = lmdb_get_be64((const uint8_t *)k.mv_data + 8);
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			if (w->mdb_err == 0)
				w->mdb_err = rc;
			err = lmdb_err("prune", rc);
			break;
		}
	}
	mdb_cursor_close(cur);
	return err;
}

struct expunge_arg {
	uint64_t id;
	const uint32_t *uids;
	size_t n;
};

static int
w_expunge(struct lmdb_w *w, void *arg)
{
	struct expunge_arg *a = arg;
	struct lmdb_mbox rec;
	int64_t now = (int64_t)time(NULL);
	uint64_t seq;
	bool any = false;
	int rc;

	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &rec, NULL)) != 0)
		return rc;
	if (rec.noselect)
		return ROOST_ENOTFOUND;
	seq = rec.highestmodseq + 1;
	for (size_t i = 0; i < a->n; i++) {
		struct lmdb_msg m;

		rc = msg_get(w->txn, w->sh, a->id, a->uids[i], &m);
		if (rc == ROOST_ENOTFOUND)
			continue;
		if (rc != 0 || (rc = remove_msg(w, a->id, a->uids[i], &m, seq, now, &rec)) != 0)
			return rc;
		any = true;
	}
	if (!any)
		return 0;
	rec.highestmodseq = seq;
	if ((rc = prune_expunged(w, a->id, &rec, now)) != 0)
		return rc;
	return lmdb_mbox_put(w, a->id, &rec, NULL);
}

int
lmdb_op_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct expunge_arg a = {.id = lm->id, .uids = uids, .n = n};

	return lmdb_write(lm->sh, w_expunge, &a);
}

struct copy_arg {
	uint64_t id;
	const char *user;
	const char *dest;
	const uint32_t *uids;
	size_t n;
	bool move;
	uint32_t uidvalidity;
	uint32_t *src, *dst;
	size_t n_out;
};

static int
w_copy(struct lmdb_w *w, void *arg)
{
	struct copy_arg *a = arg;
	struct lmdb_mbox srec, drec, *sp = &srec, *dp;
	struct lmdb_kwtab skw, dkw, *dkp;
	size_t dnkw0;
	uint64_t did, sseq, dseq;
	int64_t now = (int64_t)time(NULL);
	int rc;

	free(a->src);
	free(a->dst);
	a->src = a->dst = NULL;
	a->n_out = 0;
	if ((rc = lmdb_mbox_get(w->txn, w->sh, a->id, &srec, &skw)) != 0)
		return rc;
	if ((rc = lmdb_mbox_id(w->txn, w->sh, a->user, a->dest, &did)) != 0)
		return rc;
	if (did == a->id) {
		dp = &srec;
		dkp = &skw;
	} else {
		if ((rc = lmdb_mbox_get(w->txn, w->sh, did, &drec, &dkw)) != 0)
			return rc;
		dp = &drec;
		dkp = &dkw;
	}
	if (sp->noselect || dp->noselect)
		return ROOST_ENOTFOUND;
	dnkw0 = dkp->n;
	sseq = sp->highestmodseq + 1;
	dseq = dp->highestmodseq + 1;
	if (did == a->id)
		dseq = sseq;
	a->src = xreallocarray(NULL, a->n + 1, sizeof(uint32_t));
	a->dst = xreallocarray(NULL, a->n + 1, sizeof(uint32_t));
	for (size_t i = 0; i < a->n; i++) {
		struct lmdb_msg m, nm;
		uint8_t key[12], nkey[12];
		MDB_val k = {12, key}, v;
		uint32_t nuid;

		rc = msg_get(w->txn, w->sh, a->id, a->uids[i], &m);
		if (rc == ROOST_ENOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if (dp->uidnext == UINT32_MAX)
			return ROOST_ETOOBIG;
		nm = m;
		nm.keywords = 0;
		for (int b = 0; b < 64; b++) {
			bool full = false;
			int nb;

			if ((m.keywords & (1ULL << b)) == 0 || (size_t)b >= skw.n)
				continue;
			nb = lmdb_kw_index(dkp, skw.names[b], true, &full);
			if (nb < 0)
				return ROOST_ETOOBIG;
			nm.keywords |= 1ULL << nb;
		}
		nm.modseq = dseq;
		nuid = dp->uidnext++;
		if ((rc = msg_put(w, did, nuid, &nm)) != 0 ||
		    (rc = seq_put(w, w->sh->modseq, did, dseq, nuid, "", 0)) != 0 ||
		    (rc = lmdb_body_ref(w, m.sha, NULL, 0, false)) != 0)
			return rc;
		/* The parse cache is the same for the same bytes. */
		msg_key(key, a->id, a->uids[i]);
		if (mdb_get(w->txn, w->sh->cache, &k, &v) == 0) {
			uint8_t *copy = xmemdup(v.mv_data, v.mv_size);
			MDB_val nk = {12, nkey}, nv = {v.mv_size, copy};

			msg_key(nkey, did, nuid);
			rc = lmdb_wput(w, w->sh->cache, &nk, &nv, 0);
			free(copy);
			if (rc != 0)
				return rc;
		}
		dp->messages++;
		dp->recent++;
		if ((nm.flags & MSG_SEEN) == 0) {
			dp->unseen++;
			if ((rc = unseen_set(w, did, nuid, true)) != 0)
				return rc;
		}
		dp->size += nm.size;
		if (a->move && (rc = remove_msg(w, a->id, a->uids[i], &m, sseq, now, sp)) != 0)
			return rc;
		a->src[a->n_out] = a->uids[i];
		a->dst[a->n_out++] = nuid;
	}
	a->uidvalidity = dp->uidvalidity;
	if (a->n_out == 0)
		return 0;
	dp->highestmodseq = dseq;
	if (a->move)
		sp->highestmodseq = sseq;
	if ((rc = lmdb_mbox_put(w, did, dp, dkp->n != dnkw0 ? dkp : NULL)) != 0)
		return rc;
	if (did != a->id && a->move) {
		if ((rc = prune_expunged(w, a->id, sp, now)) != 0)
			return rc;
		return lmdb_mbox_put(w, a->id, sp, NULL);
	}
	return 0;
}

int
lmdb_op_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
             uint32_t *dest_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dest_uids_r,
             size_t *n_r)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct copy_arg a = {
	    .id = lm->id, .user = mb->user, .dest = dest, .uids = uids, .n = n, .move = move};
	int rc = lmdb_write(lm->sh, w_copy, &a);

	if (rc != 0) {
		free(a.src);
		free(a.dst);
		return rc;
	}
	if (dest_uidvalidity_r != NULL)
		*dest_uidvalidity_r = a.uidvalidity;
	*src_uids_r = a.src;
	*dest_uids_r = a.dst;
	*n_r = a.n_out;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Changes since                                                       */
/* ------------------------------------------------------------------ */

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int
rec_cmp(const void *a, const void *b)
{
	return u32_cmp(&((const struct msg_record *)a)->uid, &((const struct msg_record *)b)->uid);
}

/* UIDs of dbi entries (id, modseq > since, uid). */
static int
seq_scan(MDB_txn *txn, MDB_dbi dbi, uint64_t id, uint64_t since, uint32_t **uids_r, size_t *n_r)
{
	uint8_t key[20];
	MDB_cursor *cur;
	MDB_val k = {20, key}, v;
	uint32_t *uids = NULL;
	size_t n = 0, cap = 0;
	int rc;

	seq_key(key, id, since == UINT64_MAX ? since : since + 1, 0);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return lmdb_err("cursor", rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 20 || lmdb_get_be64(k.mv_data) != id)
			break;
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			uids = xreallocarray(uids, cap, sizeof(*uids));
		}
		uids[n++] = lmdb_get_be32((const uint8_t *)k.mv_data + 16);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		free(uids);
		return lmdb_err("scan", rc);
	}
	if (n > 1)
		qsort(uids, n, sizeof(*uids), u32_cmp);
	*uids_r = uids;
	*n_r = n;
	return 0;
}

int
lmdb_op_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *ch)
{
	struct lmdb_mailbox *lm = LM(mb);
	struct lmdb_mbox rec;
	uint32_t *uids = NULL;
	size_t n = 0;
	MDB_txn *txn;
	int rc;

	if ((rc = lmdb_rtxn_begin(lm->sh, &txn)) != 0)
		return rc;
	if ((rc = cur_rec(txn, lm, &rec, NULL)) != 0)
		goto out;
	ch->highestmodseq = rec.highestmodseq;
	ch->uidnext = rec.uidnext;
	ch->expunged_complete = modseq >= rec.expunge_floor;
	if ((rc = seq_scan(txn, lm->sh->modseq, lm->id, modseq, &uids, &n)) != 0)
		goto out;
	ch->changed = xreallocarray(NULL, n + 1, sizeof(*ch->changed));
	if (n > 64 && n > rec.messages / 8) {
		/* Much changed: one sequential pass beats a lookup per UID. */
		uint8_t key[12];
		MDB_cursor *cur;
		MDB_val k = {12, key}, v;

		if ((rc = mdb_cursor_open(txn, lm->sh->msgs, &cur)) != 0) {
			rc = lmdb_err("cursor", rc);
			goto out;
		}
		msg_key(key, lm->id, 0);
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct lmdb_msg m;

			if (k.mv_size != 12 || lmdb_get_be64(k.mv_data) != lm->id)
				break;
			if (v.mv_size != sizeof(m))
				continue;
			memcpy(&m, v.mv_data, sizeof(m));
			if (m.modseq <= modseq || ch->n_changed == n)
				continue;
			rec_out(&ch->changed[ch->n_changed++],
			        lmdb_get_be32((const uint8_t *)k.mv_data + 8), &m);
		}
		mdb_cursor_close(cur);
	} else {
		for (size_t i = 0; i < n; i++) {
			struct lmdb_msg m;

			if (i > 0 && uids[i] == uids[i - 1])
				continue;
			if (msg_get(txn, lm->sh, lm->id, uids[i], &m) != 0)
				continue;
			rec_out(&ch->changed[ch->n_changed++], uids[i], &m);
		}
		if (ch->n_changed > 1)
			qsort(ch->changed, ch->n_changed, sizeof(*ch->changed), rec_cmp);
	}
	rc = seq_scan(txn, lm->sh->expunged, lm->id, modseq, &ch->expunged, &ch->n_expunged);
out:
	lmdb_rtxn_end(lm->sh, txn);
	free(uids);
	if (rc != 0)
		mailbox_changes_free(ch);
	return rc;
}
