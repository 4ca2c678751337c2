/*
 * roost-index: what Maildir has no place for. A log of fixed-size 48-byte
 * entries in host byte order, each with a checksum:
 *
 *   HDR     first entry: magic, version, UIDVALIDITY it belongs to, the
 *           HIGHESTMODSEQ and expunge-log floor at the time of writing
 *   REC     uid's MODSEQ, the flags/keyword letters we last saw in its file
 *           name, internal date, size
 *   EXP     uid expunged at MODSEQ, at time t (the expunge log), its EMAILID
 *           in the keyword field (0 in entries written before EMAILIDs)
 *   RECENT  the \Recent boundary moved to uid
 *
 * Loading replays the log; later entries win. Changes are appended under
 * the uidlist lock; the file is rewritten compacted (temp file + rename)
 * when it holds much more than the live state, and expunge entries older
 * than [storage] expunge_log_retention are then dropped: changes_since()
 * from a MODSEQ below the newest dropped one says expunged_complete=false.
 *
 * The index is derived data. If it is missing, of another UIDVALIDITY or
 * corrupt, it is rebuilt from dovecot-uidlist and the files, never changing
 * a UID; MODSEQs then restart above the current time in seconds so they
 * still grow for clients that remember older ones. A torn tail (crash) is
 * cut off at the first entry whose checksum fails; files whose flags then
 * differ from the index simply get a new MODSEQ.
 *
 * roost-cache holds the parsed-data cache: records <magic, uidvalidity,
 * uid, len, checksum, data> appended with single write()s; the last record
 * of a uid wins. A damaged cache is discarded and started afresh.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define INDEX "roost-index"
#define CACHE "roost-cache"
#define INDEX_MAGIC 0x3158444954535200ll /* "\0RSTIDX1" */
#define INDEX_VERSION 1
#define INDEX_MAX_SIZE (1024ull * 1024 * 1024)
#define CACHE_MAGIC 0x48434352u
#define CACHE_MAX_ENTRY (16u * 1024 * 1024)

enum { ENT_HDR = 1, ENT_REC = 2, ENT_EXP = 3, ENT_RECENT = 4 };

struct idx_ent {
	uint8_t type;
	uint8_t flags;
	uint16_t pad;
	uint32_t uid;
	uint64_t modseq;
	uint64_t kw;
	int64_t idate;
	uint64_t size;
	uint64_t check;
};

_Static_assert(sizeof(struct idx_ent) == 48, "index entry size");

static void
ent_seal(struct idx_ent *e)
{
	e->check = hash_fnv1a64(e, offsetof(struct idx_ent, check), HASH_FNV1A64_INIT);
}

static bool
ent_ok(const struct idx_ent *e)
{
	return e->check == hash_fnv1a64(e, offsetof(struct idx_ent, check), HASH_FNV1A64_INIT);
}

static void
log_ent(struct md_folder *f, const struct idx_ent *e)
{
	struct idx_ent copy = *e;

	ent_seal(&copy);
	buf_append(&f->index_pending, &copy, sizeof(copy));
}

void
md_index_log_rec(struct md_folder *f, const struct md_rec *r)
{
	struct idx_ent e = {.type = ENT_REC,
	                    .flags = (uint8_t)r->flags,
	                    .uid = r->uid,
	                    .modseq = r->modseq,
	                    .kw = r->keywords,
	                    .idate = r->idate,
	                    .size = r->size};

	log_ent(f, &e);
}

void
md_index_log_recent(struct md_folder *f)
{
	struct idx_ent e = {.type = ENT_RECENT, .uid = f->recent_uid};

	log_ent(f, &e);
}

void
md_expunge_log_add(struct md_folder *f, uint32_t uid, uint64_t modseq, uint64_t emailid)
{
	struct idx_ent e = {.type = ENT_EXP,
	                    .uid = uid,
	                    .modseq = modseq,
	                    .kw = emailid,
	                    .idate = (int64_t)time(NULL)};

	if (f->n_exp == f->cap_exp) {
		f->cap_exp = f->cap_exp == 0 ? 64 : f->cap_exp * 2;
		f->exp = xreallocarray(f->exp, f->cap_exp, sizeof(*f->exp));
	}
	f->exp[f->n_exp].uid = uid;
	f->exp[f->n_exp].modseq = modseq;
	f->exp[f->n_exp].when = e.idate;
	f->exp[f->n_exp].emailid = emailid;
	f->n_exp++;
	log_ent(f, &e);
	f->index_pending_sync = true;
}

static void
index_forget(struct md_folder *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		f->recs[i].indexed = false;
		f->recs[i].modseq = 0;
	}
	f->n_exp = 0;
	f->exp_applied = 0;
	f->highestmodseq = 0;
	f->expunge_floor = 0;
	f->recent_uid = 1;
	f->index_off = 0;
}

/* No usable index. For a mailbox that never had a message, start at
 * MODSEQ 1; otherwise start again above anything a client may know, and
 * say that the expunge log starts here. */
static void
index_rebuild(struct md_folder *f)
{
	index_forget(f);
	if (f->n == 0 && f->nextuid == 1) {
		f->highestmodseq = 1;
		f->expunge_floor = 0;
	} else {
		f->highestmodseq = (uint64_t)time(NULL);
		f->expunge_floor = f->highestmodseq;
		f->recent_uid = f->nextuid;
	}
	f->index_rewrite = true;
	buf_reset(&f->index_pending);
}

static void
apply(struct md_folder *f, const struct idx_ent *e)
{
	struct md_rec *r;

	switch (e->type) {
	case ENT_REC:
		r = md_rec_find(f, e->uid);
		if (r != NULL) {
			r->modseq = e->modseq;
			r->flags = e->flags;
			r->keywords = e->kw;
			r->idate = e->idate;
			r->size = e->size;
			r->indexed = true;
		}
		break;
	case ENT_EXP:
		if (f->n_exp == f->cap_exp) {
			f->cap_exp = f->cap_exp == 0 ? 64 : f->cap_exp * 2;
			f->exp = xreallocarray(f->exp, f->cap_exp, sizeof(*f->exp));
		}
		f->exp[f->n_exp].uid = e->uid;
		f->exp[f->n_exp].modseq = e->modseq;
		f->exp[f->n_exp].when = e->idate;
		f->exp[f->n_exp].emailid = e->kw;
		f->n_exp++;
		break;
	case ENT_RECENT:
		f->recent_uid = e->uid;
		break;
	default:
		return;
	}
	if (e->modseq > f->highestmodseq)
		f->highestmodseq = e->modseq;
}

/* Replay roost-index into f (records already loaded from the uidlist). */
int
md_index_read(struct md_folder *f)
{
	char *path = md_path(f->path, INDEX);
	struct md_file_id id;
	char *data = NULL;
	size_t len, off;
	int err;

	err = md_file_id_at(f, INDEX, path, &id);
	if (err < 0)
		goto out;
	if (f->index_loaded && md_file_id_eq(&id, &f->index_id))
		goto out;
	f->index_loaded = true;
	if (!id.exists) {
		index_rebuild(f);
		f->index_id = id;
		goto out;
	}
	err = md_read_file(path, INDEX_MAX_SIZE, &data, &len);
	if (err == ROOST_ENOTFOUND) {
		index_rebuild(f);
		err = 0;
		goto out;
	} else if (err < 0) {
		goto out;
	}
	if (!(f->index_off > 0 && id.dev == f->index_id.dev && id.ino == f->index_id.ino &&
	      (off_t)len >= f->index_off)) {
		const struct idx_ent *h = (const struct idx_ent *)data;

		index_forget(f);
		if (len < sizeof(*h) || !ent_ok(h) || h->type != ENT_HDR ||
		    h->idate != INDEX_MAGIC || h->kw != INDEX_VERSION || h->uid != f->uidvalidity) {
			log_warn("event=maildir_repair path=%s what=index action=rebuild",
			         LOG_QUOTE(path));
			index_rebuild(f);
			f->index_id = id;
			goto out;
		}
		f->highestmodseq = h->modseq;
		f->expunge_floor = h->size;
		f->index_off = sizeof(*h);
	}
	for (off = (size_t)f->index_off; off + sizeof(struct idx_ent) <= len;
	     off += sizeof(struct idx_ent)) {
		struct idx_ent e;

		memcpy(&e, data + off, sizeof(e));
		if (!ent_ok(&e)) {
			log_warn("event=maildir_repair path=%s what=index_entry offset=%zu "
			         "action=rest_ignored",
			         LOG_QUOTE(path), off);
			f->index_rewrite = true;
			break;
		}
		apply(f, &e);
	}
	f->index_off = (off_t)off;
	f->index_id = id;
out:
	free(data);
	free(path);
	return err;
}

static int
index_rewrite(struct md_folder *f)
{
	struct buf b = BUF_INIT(0);
	struct idx_ent e;
	int64_t cutoff = (int64_t)time(NULL) - (int64_t)f->ms->retention;
	size_t i, j;
	int err;

	/* prune the expunge log */
	for (i = j = 0; i < f->n_exp; i++) {
		if (f->exp[i].when < cutoff || md_rec_find(f, f->exp[i].uid) != NULL) {
			if (f->exp[i].when < cutoff && f->exp[i].modseq > f->expunge_floor)
				f->expunge_floor = f->exp[i].modseq;
			continue;
		}
		f->exp[j++] = f->exp[i];
	}
	f->n_exp = j;
	/* every entry left was applied (we sync before we write) */
	f->exp_applied = j;

	memset(&e, 0, sizeof(e));
	e.type = ENT_HDR;
	e.uid = f->uidvalidity;
	e.modseq = f->highestmodseq;
	e.kw = INDEX_VERSION;
	e.idate = INDEX_MAGIC;
	e.size = f->expunge_floor;
	ent_seal(&e);
	buf_append(&b, &e, sizeof(e));
	for (i = 0; i < f->n; i++) {
		const struct md_rec *r = &f->recs[i];

		if (!r->indexed)
			continue;
		memset(&e, 0, sizeof(e));
		e.type = ENT_REC;
		e.flags = (uint8_t)r->flags;
		e.uid = r->uid;
		e.modseq = r->modseq;
		e.kw = r->keywords;
		e.idate = r->idate;
		e.size = r->size;
		ent_seal(&e);
		buf_append(&b, &e, sizeof(e));
	}
	for (i = 0; i < f->n_exp; i++) {
		memset(&e, 0, sizeof(e));
		e.type = ENT_EXP;
		e.uid = f->exp[i].uid;
		e.modseq = f->exp[i].modseq;
		e.idate = f->exp[i].when;
		e.kw = f->exp[i].emailid;
		ent_seal(&e);
		buf_append(&b, &e, sizeof(e));
	}
	memset(&e, 0, sizeof(e));
	e.type = ENT_RECENT;
	e.uid = f->recent_uid;
	ent_seal(&e);
	buf_append(&b, &e, sizeof(e));
	err = md_write_file(f->ms, f->path, INDEX, b.data, b.len, f->ms->fsync);
	if (err == 0) {
		char *path = md_path(f->path, INDEX);

		f->index_off = (off_t)b.len;
		md_file_id_get(path, &f->index_id);
		free(path);
		f->index_rewrite = false;
		buf_reset(&f->index_pending);
		f->index_pending_sync = false;
	}
	buf_free(&b);
	return err;
}

int
md_index_write(struct md_folder *f)
{
	char *path;
	int fd, err = 0;
	size_t entries;

	if (f->index_pending.len == 0 && !f->index_rewrite && f->index_id.exists)
		return 0;
	entries = (size_t)f->index_off / sizeof(struct idx_ent);
	if (f->index_rewrite || !f->index_id.exists || entries > 2 * (f->n + f->n_exp) + 1024)
		return index_rewrite(f);
	path = md_path(f->path, INDEX);
	fd = md_open_at(f, INDEX, path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		log_error("event=storage_error backend=maildir op=open path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		free(path);
		return index_rewrite(f);
	}
	if (write(fd, f->index_pending.data, f->index_pending.len) !=
	        (ssize_t)f->index_pending.len ||
	    (f->ms->fsync && f->index_pending_sync && fdatasync(fd) < 0)) {
		log_error("event=storage_error backend=maildir op=append path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		close(fd);
		free(path);
		return index_rewrite(f);
	}
	md_file_id_fd(fd, &f->index_id);
	close(fd);
	f->index_off += (off_t)f->index_pending.len;
	buf_reset(&f->index_pending);
	f->index_pending_sync = false;
	free(path);
	return err;
}

/* ---- cache ---- */

struct cache_hdr {
	uint32_t magic;
	uint32_t uidvalidity;
	uint32_t uid;
	uint32_t len;
	uint64_t check;
};

void
md_cache_reset(struct md_folder *f)
{
	if (f->cache_fd >= 0)
		close(f->cache_fd);
	f->cache_fd = -1;
	f->cache_scanned = 0;
	f->n_cache = 0;
}

static int
cache_open(struct md_folder *f)
{
	char *path;

	if (f->cache_fd >= 0)
		return 0;
	path = md_path(f->path, CACHE);
	f->cache_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (f->cache_fd < 0) {
		int err = md_errno_to_err(errno);

		log_error("event=storage_error backend=maildir op=open path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		free(path);
		return err;
	}
	free(path);
	f->cache_scanned = 0;
	f->n_cache = 0;
	return 0;
}

static void
cache_put(struct md_folder *f, uint32_t uid, uint32_t len, off_t off)
{
	size_t lo = 0, hi = f->n_cache;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->cache[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < f->n_cache && f->cache[lo].uid == uid) {
		f->cache[lo].len = len;
		f->cache[lo].off = off;
		return;
	}
	if (f->n_cache == f->cap_cache) {
		f->cap_cache = f->cap_cache == 0 ? 64 : f->cap_cache * 2;
		f->cache = xreallocarray(f->cache, f->cap_cache, sizeof(*f->cache));
	}
	memmove(&f->cache[lo + 1], &f->cache[lo], (f->n_cache - lo) * sizeof(*f->cache));
	f->cache[lo].uid = uid;
	f->cache[lo].len = len;
	f->cache[lo].off = off;
	f->n_cache++;
}

/* Read records appended since the last scan. Returns false when the file
 * is damaged. */
static bool
cache_scan(struct md_folder *f)
{
	struct stat stb;

	if (fstat(f->cache_fd, &stb) < 0)
		return true;
	while (f->cache_scanned + (off_t)sizeof(struct cache_hdr) <= stb.st_size) {
		struct cache_hdr h;
		uint8_t *data;
		bool ok;

		if (pread(f->cache_fd, &h, sizeof(h), f->cache_scanned) != sizeof(h))
			return true;
		if (h.magic != CACHE_MAGIC || h.len > CACHE_MAX_ENTRY)
			return false;
		if (f->cache_scanned + (off_t)sizeof(h) + h.len > stb.st_size)
			return true; /* being written */
		data = xmalloc(h.len + 1);
		ok = pread(f->cache_fd, data, h.len, f->cache_scanned + (off_t)sizeof(h)) ==
		     (ssize_t)h.len;
		if (ok) {
			uint64_t c =
			    hash_fnv1a64(&h, offsetof(struct cache_hdr, check), HASH_FNV1A64_INIT);

			ok = hash_fnv1a64(data, h.len, c) == h.check;
		}
		free(data);
		if (!ok)
			return false;
		if (h.uidvalidity == f->uidvalidity)
			cache_put(f, h.uid, h.len, f->cache_scanned + (off_t)sizeof(h));
		f->cache_scanned += (off_t)sizeof(h) + h.len;
	}
	return true;
}

static void
cache_discard(struct md_folder *f)
{
	char *path = md_path(f->path, CACHE);

	log_warn("event=maildir_repair path=%s what=cache action=discarded", LOG_QUOTE(path));
	unlink(path);
	free(path);
	md_cache_reset(f);
}

static struct md_cache_ent *
cache_find(struct md_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->n_cache;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->cache[mid].uid < uid)
			lo = mid + 1;
		else if (f->cache[mid].uid > uid)
			hi = mid;
		else
			return &f->cache[mid];
	}
	return NULL;
}

/* Open and scan f's cache for the record uid. 0: ready; 1: the cache was
 * damaged and is discarded (closed, empty); negative: an error,
 * ROOST_ENOTFOUND where there is no such record. */
static int
cache_load(struct md_folder *f, uint32_t uid)
{
	int err;

	if (md_rec_find(f, uid) == NULL)
		return ROOST_ENOTFOUND;
	if ((err = cache_open(f)) < 0)
		return err;
	if (!cache_scan(f)) {
		cache_discard(f);
		return 1;
	}
	return 0;
}

int
md_cache_get(struct md_folder *f, uint32_t uid, struct buf *out)
{
	struct md_cache_ent *ce;
	int err;

	if ((err = cache_load(f, uid)) != 0)
		return err > 0 ? ROOST_ENOTFOUND : err;
	ce = cache_find(f, uid);
	if (ce == NULL)
		return ROOST_ENOTFOUND;
	if ((err = buf_reserve(out, ce->len)) < 0)
		return err;
	if (pread(f->cache_fd, out->data + out->len, ce->len, ce->off) != (ssize_t)ce->len)
		return ROOST_EIO;
	out->len += ce->len;
	out->data[out->len] = '\0';
	return 0;
}

int
md_cache_set(struct md_folder *f, uint32_t uid, const void *data, size_t len)
{
	struct cache_hdr h;
	struct buf b = BUF_INIT(0);
	int err;

	if (len > CACHE_MAX_ENTRY)
		return ROOST_ETOOBIG;
	if ((err = cache_load(f, uid)) > 0)
		err = cache_open(f);
	if (err < 0)
		return err;
	memset(&h, 0, sizeof(h));
	h.magic = CACHE_MAGIC;
	h.uidvalidity = f->uidvalidity;
	h.uid = uid;
	h.len = (uint32_t)len;
	h.check = hash_fnv1a64(
	    data, len, hash_fnv1a64(&h, offsetof(struct cache_hdr, check), HASH_FNV1A64_INIT));
	buf_append(&b, &h, sizeof(h));
	buf_append(&b, data, len);
	if (write(f->cache_fd, b.data, b.len) != (ssize_t)b.len) {
		log_error("event=storage_error backend=maildir op=write path=%s file=" CACHE
		          " error=\"%s\"",
		          LOG_QUOTE(f->path), strerror(errno));
		buf_free(&b);
		return ROOST_EIO;
	}
	buf_free(&b);
	/* pick it (and anything another process appended) up */
	if (!cache_scan(f))
		cache_discard(f);
	return 0;
}

struct salv_ent {
	uint32_t uid;
	bool expunged;
	size_t seq;
	int64_t idate;
	uint64_t size;
};

static int
salv_cmp(const void *a, const void *b)
{
	const struct salv_ent *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int
md_index_salvage(const char *dir, uint32_t *uidvalidity_r, struct md_salvage **recs_r, size_t *n_r)
{
	char *path = md_path(dir, INDEX);
	char *data = NULL;
	size_t len, n = 0, k = 0;
	struct salv_ent *all;
	struct md_salvage *v;
	int err;

	*uidvalidity_r = 0;
	*recs_r = NULL;
	*n_r = 0;
	err = md_read_file(path, INDEX_MAX_SIZE, &data, &len);
	free(path);
	if (err < 0)
		return err;
	all = xcalloc(len / sizeof(struct idx_ent) + 1, sizeof(*all));
	for (size_t off = 0; off + sizeof(struct idx_ent) <= len; off += sizeof(struct idx_ent)) {
		struct idx_ent e;

		memcpy(&e, data + off, sizeof(e));
		if (!ent_ok(&e))
			break; /* a torn or damaged tail: what came before stands */
		if (e.type == ENT_HDR && off == 0 && e.idate == INDEX_MAGIC) {
			*uidvalidity_r = e.uid;
			continue;
		}
		if (e.type != ENT_REC && e.type != ENT_EXP)
			continue;
		all[n].uid = e.uid;
		all[n].expunged = e.type == ENT_EXP;
		all[n].seq = n;
		all[n].idate = e.idate;
		all[n].size = e.size;
		n++;
	}
	free(data);
	if (n > 1)
		qsort(all, n, sizeof(*all), salv_cmp);
	v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		/* the last entry of a UID wins */
		if ((i + 1 < n && all[i + 1].uid == all[i].uid) || all[i].expunged)
			continue;
		v[k].uid = all[i].uid;
		v[k].idate = all[i].idate;
		v[k].size = all[i].size;
		k++;
	}
	free(all);
	*recs_r = v;
	*n_r = k;
	return 0;
}
