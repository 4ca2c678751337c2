/*
 * LMDB delivery and append: the body is loaded (or mapped from the spool
 * file), a large one written to a body file (lmdb_blob.c) by the calling
 * thread, then one write request adds a record per target mailbox.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

struct body {
	const uint8_t *data;
	size_t len;
	void *map;
	uint8_t *owned;
	uint8_t sha[LMDB_SHA_LEN];
	bool in_file; /* len >= LMDB_BLOB_MIN */
	char file[LMDB_BLOB_NAME_LEN + 1];
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
					log_error("event=storage_error op=read_spool error=\"%s\"",
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
	b->in_file = b->len >= LMDB_BLOB_MIN;
	return 0;
}

/*
 * A large body gets its file in sh before sh's transaction is queued: the
 * first shard writes it, the others link the first one's (from). The
 * directory stays held until body_file_done().
 */
static int
body_file(struct body *b, struct lmdb_shard *from, struct lmdb_shard *sh)
{
	int rc;

	if (!b->in_file)
		return 0;
	lmdb_blob_hold(sh);
	if (from == NULL)
		rc = lmdb_blob_write(sh, b->sha, b->data, b->len, b->file);
	else
		rc = lmdb_blob_link(from, sh, b->file, b->data, b->len);
	if (rc != 0)
		lmdb_blob_release(sh);
	return rc;
}

/* After sh's commit: a file no record took (the body was there already,
 * or the commit failed) is removed. */
static void
body_file_done(struct body *b, struct lmdb_shard *sh, bool used)
{
	if (!b->in_file)
		return;
	if (!used)
		lmdb_blob_unlink(sh, b->file);
	lmdb_blob_release(sh);
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
	const char *file; /* the body's file in this shard, NULL: inline */
	bool file_used;   /* a committed record refers to file */
	/* deliver: targets[idx[i]] for i < n; append: mbox_id */
	struct delivery_target *targets;
	const size_t *idx;
	size_t n;
	uint64_t mbox_id;
	const char *user; /* append: the mailbox's user */
	uint32_t uid;
};

static int
append_one(struct lmdb_w *w, const char *user, uint64_t id, const struct deliver_arg *a,
           uint32_t *uid_r, uint32_t *uidvalidity_r, bool *file_used_r)
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
	m.emailid = storage_new_emailid();
	m.save_date = (int64_t)time(NULL);
	*uid_r = rec.uidnext++;
	lmdb_msg_key(key, id, *uid_r);
	v.mv_size = sizeof(m);
	v.mv_data = &m;
	if ((rc = lmdb_wput(w, w->sh->msgs, &k, &v, MDB_NOOVERWRITE)) != 0)
		return rc == ROOST_EEXISTS ? ROOST_EIO : rc;
	if (a->msg->cache_len > 0) {
		/* the parse cache, in the same commit: no second write */
		MDB_val cv = {a->msg->cache_len, (void *)a->msg->cache};

		if ((rc = lmdb_wput(w, w->sh->cache, &k, &cv, 0)) != 0)
			return rc;
	}
	if ((rc = lmdb_seq_put(w, w->sh->modseq, id, m.modseq, *uid_r, "", 0)) != 0 ||
	    (rc = lmdb_body_ref(w, a->b->sha, a->b->data, a->b->len, true, a->file, file_used_r)) !=
	        0)
		return rc;
	if ((m.flags & MSG_SEEN) == 0 && (rc = lmdb_unseen_set(w, id, *uid_r, true)) != 0)
		return rc;
	rec.messages++;
	rec.recent++;
	if ((m.flags & MSG_SEEN) == 0)
		rec.unseen++;
	rec.size += m.size;
	if ((rc = lmdb_mbox_put(w, id, &rec, kw.n != nkw0 ? &kw : NULL)) != 0 ||
	    (rc = lmdb_quota_add(w, user, (int64_t)m.size, 1)) != 0)
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

	a->file_used = false;
	if (a->n == 1) {
		/* One target: the request's own transaction keeps it atomic, a
		 * nested one per target would only cost a dirty-page merge. */
		struct delivery_target *t = &a->targets[a->idx[0]];
		uint64_t id;
		int rc;

		t->uid = t->uidvalidity = 0;
		rc = lmdb_mbox_id(w->txn, w->sh, t->user, t->mailbox, &id);
		if (rc == 0)
			rc = append_one(w, t->user, id, a, &t->uid, &t->uidvalidity, &a->file_used);
		if (rc != 0) {
			t->uid = t->uidvalidity = 0;
			a->file_used = false;
		}
		t->result = rc;
		return rc;
	}
	for (size_t i = 0; i < a->n; i++) {
		struct delivery_target *t = &a->targets[a->idx[i]];
		struct lmdb_w cw = {.sh = w->sh};
		bool used = false;
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
			rc = append_one(&cw, t->user, id, a, &t->uid, &t->uidvalidity, &used);
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
		if (rc == 0 && cw.dirsync)
			w->dirsync = true;
		t->result = rc;
		if (rc == 0) {
			any = true;
			a->file_used |= used;
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
	return msg_input_date(msg);
}

int
lmdb_op_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
                size_t n)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);
	struct lmdb_shard *first_sh = NULL; /* the first holder of the body file */
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
		if ((rc = body_file(&b, first_sh, sh)) == 0) {
			if (b.in_file && first_sh == NULL)
				first_sh = sh;
			a.file = b.in_file ? b.file : NULL;
			rc = lmdb_write(sh, w_deliver, &a);
			body_file_done(&b, sh, rc == 0 && a.file_used);
		}
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

	return append_one(w, a->user, a->mbox_id, a, &a->uid, &uidvalidity, &a->file_used);
}

int
lmdb_op_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	struct lmdb_mailbox *lm = lmdb_mb(mb);
	struct body b;
	struct deliver_arg a = {
	    .b = &b, .msg = msg, .idate = idate_of(msg), .mbox_id = lm->id, .user = mb->user};
	int rc;

	if ((rc = body_load(msg, &b)) != 0)
		return rc;
	if ((rc = body_file(&b, NULL, lm->sh)) == 0) {
		a.file = b.in_file ? b.file : NULL;
		rc = lmdb_write(lm->sh, w_append, &a);
		body_file_done(&b, lm->sh, rc == 0 && a.file_used);
	}
	body_free(&b);
	if (rc == 0 && uid_r != NULL)
		*uid_r = a.uid;
	return rc;
}
