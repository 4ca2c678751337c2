/*
 * `roost check` for LMDB: walk every database of every shard in one read
 * transaction and report what breaks an invariant. Changes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmdb_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

struct shaent {
	uint8_t sha[LMDB_SHA_LEN];
};

static int
sha_cmp(const void *a, const void *b)
{
	return memcmp(a, b, LMDB_SHA_LEN);
}

struct checker {
	struct buf *report;
	struct lmdb_shard *sh;
	unsigned problems;
};

static void __attribute__((format(printf, 2, 3))) problem(struct checker *c, const char *fmt, ...)
{
	va_list ap;

	c->problems++;
	if (c->problems > 1000)
		return; /* the report stays bounded */
	buf_printf(c->report, "%s: ", c->sh->path);
	va_start(ap, fmt);
	buf_vprintf(c->report, fmt, ap);
	va_end(ap);
	buf_append_byte(c->report, '\n');
}

static bool
key_in(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, MDB_val *v_r)
{
	MDB_val k = {klen, (void *)key}, v;

	if (mdb_get(txn, dbi, &k, &v) != 0)
		return false;
	if (v_r != NULL)
		*v_r = v;
	return true;
}

/* A body file holds as many bytes as the record says. */
static void
check_file_size(struct checker *c, uint64_t id, uint32_t uid, const MDB_val *name, uint64_t size)
{
	char file[LMDB_BLOB_NAME_LEN + 1];
	struct stat sb;

	if (name->mv_size != LMDB_BLOB_NAME_LEN)
		return; /* reported with the files database */
	memcpy(file, name->mv_data, LMDB_BLOB_NAME_LEN);
	file[LMDB_BLOB_NAME_LEN] = '\0';
	if (fstatat(c->sh->blob_dirfd, file, &sb, 0) < 0)
		problem(c, "mailbox %" PRIu64 " uid %u: body file blobs/%s missing", id, uid, file);
	else if ((uint64_t)sb.st_size != size)
		problem(c,
		        "mailbox %" PRIu64 " uid %u: size %" PRIu64
		        " but body file blobs/%s has %jd bytes",
		        id, uid, size, file, (intmax_t)sb.st_size);
}

/* A body file's content matches the digest that names it. */
static void
check_file(struct checker *c, const uint8_t *sha, const MDB_val *name)
{
	char file[LMDB_BLOB_NAME_LEN + 1];
	uint8_t got[LMDB_SHA_LEN];
	struct stat sb;
	void *map;
	int fd;

	if (!lmdb_blob_name_valid(name, sha)) {
		problem(c, "files: malformed name for its body");
		return;
	}
	memcpy(file, name->mv_data, LMDB_BLOB_NAME_LEN);
	file[LMDB_BLOB_NAME_LEN] = '\0';
	if ((fd = openat(c->sh->blob_dirfd, file, O_RDONLY | O_CLOEXEC)) < 0) {
		problem(c, "files: blobs/%s: %s", file, strerror(errno));
		return;
	}
	if (fstat(fd, &sb) < 0 || sb.st_size == 0) {
		problem(c, "files: blobs/%s: empty or unreadable", file);
		close(fd);
		return;
	}
	map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		problem(c, "files: blobs/%s: %s", file, strerror(errno));
		return;
	}
	lmdb_sha256(map, (size_t)sb.st_size, got);
	munmap(map, (size_t)sb.st_size);
	if (memcmp(got, sha, LMDB_SHA_LEN) != 0)
		problem(c, "files: blobs/%s: content does not match its SHA-256", file);
}

/* k, a key of the modseq or expunged index (mailbox id, modseq, uid), is
 * mailbox id's: its uid into *uid_r and its message key into mk. False at
 * the end of the mailbox's entries. */
static bool
index_uid(const MDB_val *k, uint64_t id, uint8_t mk[12], uint32_t *uid_r)
{
	if (k->mv_size != 20 || lmdb_get_be64(k->mv_data) != id)
		return false;
	*uid_r = lmdb_get_be32((const uint8_t *)k->mv_data + 16);
	lmdb_be64(mk, id);
	lmdb_be32(mk + 8, *uid_r);
	return true;
}

/* One mailbox: counters, UIDs, MODSEQs, index entries, keywords, bodies. */
static void
check_mailbox(struct checker *c, MDB_txn *txn, uint64_t id, const struct lmdb_mbox *rec,
              struct shaent **shas, size_t *n_sha, size_t *cap_sha)
{
	uint8_t key[20];
	MDB_cursor *cur;
	MDB_val k = {12, key}, v;
	uint32_t messages = 0, unseen = 0, recent = 0, last = 0;
	uint64_t size = 0;
	int rc;

	if (rec->recent_first > rec->uidnext)
		problem(c, "mailbox %" PRIu64 ": recent boundary %u above UIDNEXT %u", id,
		        rec->recent_first, rec->uidnext);
	if (rec->uidvalidity == 0)
		problem(c, "mailbox %" PRIu64 ": UIDVALIDITY 0", id);
	if (mdb_cursor_open(txn, c->sh->msgs, &cur) != 0)
		return;
	lmdb_be64(key, id);
	lmdb_be32(key + 8, 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmdb_msg m;
		uint8_t sk[20];
		uint32_t uid;

		if (k.mv_size != 12 || lmdb_get_be64(k.mv_data) != id)
			break;
		uid = lmdb_get_be32((const uint8_t *)k.mv_data + 8);
		if (!lmdb_msg_decode(&v, id, uid, &m)) {
			problem(c, "mailbox %" PRIu64 " uid %u: record of %zu bytes", id, uid,
			        v.mv_size);
			continue;
		}
		if (uid == 0 || uid >= rec->uidnext || uid <= last)
			problem(c, "mailbox %" PRIu64 " uid %u: out of order or >= UIDNEXT %u", id,
			        uid, rec->uidnext);
		last = uid;
		if (m.modseq == 0 || m.modseq > rec->highestmodseq)
			problem(c,
			        "mailbox %" PRIu64 " uid %u: modseq %" PRIu64
			        " above HIGHESTMODSEQ %" PRIu64,
			        id, uid, m.modseq, rec->highestmodseq);
		if ((m.flags & ~MSG_FLAGS_ALL) != 0)
			problem(c, "mailbox %" PRIu64 " uid %u: unknown flag bits %#x", id, uid,
			        m.flags);
		if (rec->n_kw < 64 && (m.keywords >> rec->n_kw) != 0)
			problem(c, "mailbox %" PRIu64 " uid %u: keyword bit past the table (%u)",
			        id, uid, rec->n_kw);
		lmdb_be64(sk, id);
		lmdb_be64(sk + 8, m.modseq);
		lmdb_be32(sk + 16, uid);
		if (!key_in(txn, c->sh->modseq, sk, 20, NULL))
			problem(c, "mailbox %" PRIu64 " uid %u: missing from the modseq index", id,
			        uid);
		{
			MDB_val bv;

			if (key_in(txn, c->sh->files, m.sha, LMDB_SHA_LEN, &bv))
				check_file_size(c, id, uid, &bv, m.size);
			else if (!key_in(txn, c->sh->bodies, m.sha, LMDB_SHA_LEN, &bv))
				problem(c, "mailbox %" PRIu64 " uid %u: body missing", id, uid);
			else if (bv.mv_size != m.size)
				problem(c,
				        "mailbox %" PRIu64 " uid %u: size %" PRIu64
				        " but body has %zu bytes",
				        id, uid, m.size, bv.mv_size);
		}
		if (*n_sha == *cap_sha) {
			*cap_sha = *cap_sha == 0 ? 1024 : *cap_sha * 2;
			*shas = xreallocarray(*shas, *cap_sha, sizeof(**shas));
		}
		memcpy((*shas)[(*n_sha)++].sha, m.sha, LMDB_SHA_LEN);
		{
			uint8_t uk[12];

			lmdb_be64(uk, id);
			lmdb_be32(uk + 8, uid);
			if (key_in(txn, c->sh->unseen, uk, 12, NULL) != ((m.flags & MSG_SEEN) == 0))
				problem(c, "mailbox %" PRIu64 " uid %u: unseen index disagrees", id,
				        uid);
		}
		messages++;
		if (uid >= rec->recent_first)
			recent++;
		if ((m.flags & MSG_SEEN) == 0)
			unseen++;
		size += m.size;
	}
	mdb_cursor_close(cur);
	if (messages != rec->messages || unseen != rec->unseen || size != rec->size)
		problem(c,
		        "mailbox %" PRIu64 ": counters say %u messages, %u unseen, %" PRIu64
		        " octets; records say %u, %u, %" PRIu64,
		        id, rec->messages, rec->unseen, rec->size, messages, unseen, size);
	if (recent != rec->recent)
		problem(c, "mailbox %" PRIu64 ": recent counter %u, records say %u", id,
		        rec->recent, recent);

	/* Index entries point at records with that MODSEQ; the expunge log
	 * names only UIDs that are gone. */
	if (mdb_cursor_open(txn, c->sh->modseq, &cur) != 0)
		return;
	k.mv_size = 8;
	k.mv_data = key;
	lmdb_be64(key, id);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint8_t mk[12];
		MDB_val mv;
		struct lmdb_msg m;
		uint32_t uid;

		if (!index_uid(&k, id, mk, &uid))
			break;
		if (!key_in(txn, c->sh->msgs, mk, 12, &mv) || !lmdb_msg_decode(&mv, id, uid, &m)) {
			problem(c, "mailbox %" PRIu64 ": modseq index names absent uid %u", id,
			        uid);
			continue;
		}
		if (m.modseq != lmdb_get_be64((const uint8_t *)k.mv_data + 8))
			problem(c, "mailbox %" PRIu64 " uid %u: stale modseq index entry", id, uid);
	}
	mdb_cursor_close(cur);
	if (mdb_cursor_open(txn, c->sh->expunged, &cur) != 0)
		return;
	k.mv_size = 8;
	k.mv_data = key;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint8_t mk[12];
		uint32_t uid;

		if (!index_uid(&k, id, mk, &uid))
			break;
		if (uid >= rec->uidnext)
			problem(c, "mailbox %" PRIu64 ": expunged uid %u >= UIDNEXT", id, uid);
		if (key_in(txn, c->sh->msgs, mk, 12, NULL))
			problem(c, "mailbox %" PRIu64 ": uid %u both expunged and present", id,
			        uid);
	}
	mdb_cursor_close(cur);
}

static void
check_shard(struct checker *c, MDB_txn *txn)
{
	struct lmdb_shard *sh = c->sh;
	struct shaent *shas = NULL;
	size_t n_sha = 0, cap_sha = 0, j = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	/* Every name points at a mailbox record. */
	if (mdb_cursor_open(txn, sh->names, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			uint8_t idk[8];
			uint64_t id;

			if (v.mv_size < 12) {
				problem(c, "names: short entry");
				continue;
			}
			memcpy(&id, v.mv_data, 8);
			lmdb_be64(idk, id);
			if (!key_in(txn, sh->mboxes, idk, 8, NULL))
				problem(c, "names: \"%.200s\" points at missing mailbox %" PRIu64,
				        (const char *)v.mv_data + 8, id);
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(txn, sh->mboxes, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct lmdb_mbox rec;

			if (k.mv_size != 8 || v.mv_size < sizeof(rec)) {
				problem(c, "mboxes: malformed entry");
				continue;
			}
			memcpy(&rec, v.mv_data, sizeof(rec));
			check_mailbox(c, txn, lmdb_get_be64(k.mv_data), &rec, &shas, &n_sha,
			              &cap_sha);
		}
		mdb_cursor_close(cur);
	}
	/* Body reference counts equal the records using them. */
	if (n_sha > 1)
		qsort(shas, n_sha, sizeof(*shas), sha_cmp);
	if (mdb_cursor_open(txn, sh->refs, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			uint64_t want = 0, have;

			if (k.mv_size != LMDB_SHA_LEN || v.mv_size != sizeof(have)) {
				problem(c, "refs: malformed entry");
				continue;
			}
			memcpy(&have, v.mv_data, sizeof(have));
			while (j < n_sha && memcmp(shas[j].sha, k.mv_data, LMDB_SHA_LEN) < 0) {
				problem(c, "a body is used but has no reference count");
				j++;
			}
			while (j < n_sha && memcmp(shas[j].sha, k.mv_data, LMDB_SHA_LEN) == 0) {
				want++;
				j++;
			}
			if (want != have)
				problem(c, "body reference count %" PRIu64 ", used by %" PRIu64,
				        have, want);
			if (!key_in(txn, sh->bodies, k.mv_data, LMDB_SHA_LEN, NULL) &&
			    !key_in(txn, sh->files, k.mv_data, LMDB_SHA_LEN, NULL))
				problem(c, "refs: counted body missing");
		}
		mdb_cursor_close(cur);
	}
	for (; j < n_sha; j++)
		problem(c, "a body is used but has no reference count");
	free(shas);
	/* Every body is counted and matches its hash. */
	if (mdb_cursor_open(txn, sh->bodies, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			uint8_t sha[LMDB_SHA_LEN];

			if (k.mv_size != LMDB_SHA_LEN) {
				problem(c, "bodies: malformed key");
				continue;
			}
			lmdb_sha256(v.mv_data, v.mv_size, sha);
			if (memcmp(sha, k.mv_data, LMDB_SHA_LEN) != 0)
				problem(c, "bodies: content does not match its SHA-256");
			if (!key_in(txn, sh->refs, k.mv_data, LMDB_SHA_LEN, NULL))
				problem(c, "bodies: unreferenced body (leaked space)");
		}
		mdb_cursor_close(cur);
	}
	/* Every body file is counted, present and matches its hash. */
	if (mdb_cursor_open(txn, sh->files, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (k.mv_size != LMDB_SHA_LEN) {
				problem(c, "files: malformed key");
				continue;
			}
			check_file(c, k.mv_data, &v);
			if (key_in(txn, sh->bodies, k.mv_data, LMDB_SHA_LEN, NULL))
				problem(c, "files: body also kept in the bodies database");
			if (!key_in(txn, sh->refs, k.mv_data, LMDB_SHA_LEN, NULL))
				problem(c, "files: unreferenced body file (leaked space)");
		}
		mdb_cursor_close(cur);
	}
}

int
lmdb_op_check(struct storage *st, struct buf *report)
{
	struct lmdb_storage *ls = container_of(st, struct lmdb_storage, base);
	unsigned total = 0;

	for (unsigned i = 0; i < ls->n_shards; i++) {
		struct checker c = {.report = report, .sh = &ls->shards[i]};
		MDB_txn *txn;
		int rc;

		if ((rc = lmdb_rtxn_begin(c.sh, &txn)) != 0) {
			buf_printf(report, "%s: cannot read: %s\n", c.sh->path, roost_strerror(rc));
			total++;
			continue;
		}
		check_shard(&c, txn);
		{
			unsigned qp = 0;

			if (lmdb_quota_check(txn, c.sh, report, &qp) != 0)
				qp++;
			c.problems += qp;
		}
		lmdb_rtxn_end(c.sh, txn);
		/* Files no record names: left by a crash (open removes them
		 * after one) or put there by hand. Not while a delivery is in
		 * flight: its file is not committed yet. */
		{
			unsigned orphans = 0;

			rc = lmdb_blobs_sweep(c.sh, false, report, &orphans);
			if (rc != 0 && rc != ROOST_EINUSE) {
				buf_printf(report, "%s: cannot list blobs/: %s\n", c.sh->path,
				           roost_strerror(rc));
				c.problems++;
			}
			c.problems += orphans;
		}
		total += c.problems;
	}
	return total == 0 ? 0 : ROOST_EIO;
}
