/*
 * roost check --repair for Maildir. Message files are never touched (not
 * renamed, not removed, not rewritten): only the files Roost and Dovecot
 * derive from them.
 *
 * A dovecot-uidlist that is missing or does not parse (a bad header makes
 * every open of the folder fail) is rebuilt under its lock, keeping every
 * UID that can still be known: the records of the damaged file that still
 * parse (matched to files by base name), then roost-index's records
 * (matched by size and internal date, which is the file's mtime), and the
 * UIDVALIDITY of the damaged header or of roost-index. Files left get new
 * UIDs above every known one; if no UIDVALIDITY survives, a new one is
 * chosen and the report says clients will download the folder again.
 *
 * Then every folder is opened with a full sync, the path the server takes:
 * files without a UID get one, UIDs without a file are dropped, a damaged
 * roost-index is rebuilt and written, a damaged roost-cache discarded, and
 * a stale lock broken.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "maildir.h"

struct rfile {
	char *base;
	uint64_t size;
	int64_t mtime;
	uint32_t uid;
};

static int
rfile_base_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rfile *)a)->base, ((const struct rfile *)b)->base);
}

static int
rfile_uid_cmp(const void *a, const void *b)
{
	const struct rfile *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* by UID, and the files without one (0) by name in delivery order */
static int
rfile_fresh_cmp(const void *a, const void *b)
{
	const struct rfile *x = a, *y = b;
	int c = rfile_uid_cmp(a, b);

	if (c != 0 || x->uid != 0)
		return c;
	return strverscmp(x->base, y->base);
}

/* Delivery order: a base name starts <sec>.M<usec>P<pid>Q<n> (Roost) or
 * <sec>.M<usec>P<pid> (Dovecot) with unpadded numbers, so digit runs
 * compare as numbers (strverscmp), not as text. */
static int
rfile_delivery_cmp(const void *a, const void *b)
{
	const struct rfile *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strverscmp(x->base, y->base);
}

/* roost-index's records by the only things a file shows of them, size and
 * internal date; used as the bsearch key comparison */
static int
salvage_cmp(const void *a, const void *b)
{
	const struct md_salvage *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return x->idate < y->idate ? -1 : x->idate > y->idate;
}

/* ... and within one size and date, by UID, so that files that look alike
 * (the same size delivered in one second) take their UIDs in delivery
 * order */
static int
salvage_uid_cmp(const void *a, const void *b)
{
	const struct md_salvage *x = a, *y = b;
	int c = salvage_cmp(a, b);

	if (c != 0)
		return c;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static void
list_files(const char *dir, const char *sub, struct rfile **v, size_t *n)
{
	char *path = md_path(dir, sub);
	DIR *d = opendir(path);
	struct dirent *de;

	while (d != NULL && (de = readdir(d)) != NULL) {
		struct stat sb;
		char *file;

		if (de->d_name[0] == '.')
			continue;
		file = md_path(path, de->d_name);
		if (stat(file, &sb) == 0 && S_ISREG(sb.st_mode)) {
			*v = xreallocarray(*v, *n + 1, sizeof(**v));
			(*v)[*n].base = xstrndup(de->d_name, strcspn(de->d_name, ":"));
			(*v)[*n].size = (uint64_t)sb.st_size;
			(*v)[*n].mtime = sb.st_mtime;
			(*v)[*n].uid = 0;
			(*n)++;
		}
		free(file);
	}
	if (d != NULL)
		closedir(d);
	free(path);
}

/* What a damaged dovecot-uidlist still says: its header's V and N when
 * they parse, and each record line that parses (ascending UIDs). */
static void
salvage_uidlist(const char *dir, uint32_t *uidvalidity, uint32_t *nextuid, struct rfile *files,
                size_t n_files, size_t *kept)
{
	char *path = md_path(dir, "dovecot-uidlist"), *data = NULL;
	size_t len, pos = 0;
	uint32_t last = 0;
	bool first = true;

	if (md_read_file(path, 1u << 30, &data, &len) < 0) {
		free(path);
		return;
	}
	free(path);
	while (pos < len) {
		char *line = data + pos, *nl = memchr(line, '\n', len - pos), *e, *base;
		unsigned long uid;

		if (nl == NULL)
			break; /* a torn last line */
		*nl = '\0';
		pos = (size_t)(nl - data) + 1;
		if (first) {
			char *v = strstr(line, " V"), *nx = strstr(line, " N");

			first = false;
			if (line[0] == '3' && line[1] == ' ') {
				if (v != NULL)
					*uidvalidity = (uint32_t)strtoul(v + 2, NULL, 10);
				if (nx != NULL)
					*nextuid = (uint32_t)strtoul(nx + 2, NULL, 10);
				continue;
			}
		}
		uid = strtoul(line, &e, 10);
		if (e == line || *e != ' ' || uid == 0 || uid >= UINT32_MAX || uid <= last)
			continue;
		base = strstr(e, " :");
		base = base != NULL ? base + 2 : e + 1;
		if (*base == '\0' || strchr(base, '/') != NULL)
			continue;
		{
			struct rfile key = {.base = base}, *hit;

			hit = bsearch(&key, files, n_files, sizeof(*files), rfile_base_cmp);
			if (hit != NULL && hit->uid == 0) {
				hit->uid = (uint32_t)uid;
				last = (uint32_t)uid;
				(*kept)++;
			}
		}
	}
	free(data);
}

static int
rebuild_uidlist(struct md_storage *ms, const char *user, const char *dir, const char *label,
                struct buf *report)
{
	struct md_folder *f = md_folder_alloc(ms, dir);
	struct rfile *files = NULL;
	struct md_salvage *idx = NULL;
	size_t n = 0, n_idx = 0, from_file = 0, from_index = 0, fresh = 0;
	uint32_t uidvalidity = 0, nextuid = 1, idx_uidvalidity = 0, top = 0;
	char guid[33];
	struct buf out = BUF_INIT(0);
	bool new_validity = false;
	int err;

	if ((err = md_uidlist_lock(f)) < 0) {
		buf_printf(report,
		           "%s %s: dovecot-uidlist is locked by another process: not rebuilt\n",
		           user, label);
		md_folder_destroy(f);
		return err;
	}
	list_files(dir, "cur", &files, &n);
	list_files(dir, "new", &files, &n);
	if (n > 1)
		qsort(files, n, sizeof(*files), rfile_base_cmp);
	salvage_uidlist(dir, &uidvalidity, &nextuid, files, n, &from_file);
	(void)md_index_salvage(dir, &idx_uidvalidity, &idx, &n_idx);
	if (uidvalidity == 0)
		uidvalidity = idx_uidvalidity;
	/* roost-index's UIDs, by size and date, when it is of this UIDVALIDITY */
	if (uidvalidity != 0 && uidvalidity == idx_uidvalidity && n_idx > 0) {
		uint32_t *used = xcalloc(n + 1, sizeof(*used));
		size_t n_used = 0;

		for (size_t i = 0; i < n; i++) {
			if (files[i].uid != 0)
				used[n_used++] = files[i].uid;
		}
		qsort(used, n_used, sizeof(*used), uid_cmp);
		for (size_t k = 0; k < n_idx; k++)
			idx[k].taken =
			    bsearch(&idx[k].uid, used, n_used, sizeof(*used), uid_cmp) != NULL;
		qsort(idx, n_idx, sizeof(*idx), salvage_uid_cmp);
		if (n > 1)
			qsort(files, n, sizeof(*files), rfile_delivery_cmp);
		for (size_t i = 0; i < n; i++) {
			struct md_salvage key = {.size = files[i].size, .idate = files[i].mtime};
			struct md_salvage *hit;

			if (files[i].uid != 0)
				continue;
			hit = bsearch(&key, idx, n_idx, sizeof(*idx), salvage_cmp);
			if (hit == NULL)
				continue;
			while (hit > idx && salvage_cmp(hit - 1, &key) == 0)
				hit--;
			for (; hit < idx + n_idx && salvage_cmp(hit, &key) == 0; hit++) {
				if (!hit->taken) {
					hit->taken = true;
					files[i].uid = hit->uid;
					from_index++;
					break;
				}
			}
		}
		free(used);
	}
	if (uidvalidity == 0) {
		uidvalidity = (uint32_t)time(NULL);
		new_validity = true;
		for (size_t i = 0; i < n; i++)
			files[i].uid = 0;
		from_file = from_index = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (files[i].uid > top)
			top = files[i].uid;
	}
	for (size_t k = 0; k < n_idx; k++) {
		if (!new_validity && idx[k].uid > top)
			top = idx[k].uid;
	}
	if (nextuid <= top)
		nextuid = top + 1;
	if (n > 1)
		qsort(files, n, sizeof(*files), rfile_fresh_cmp);
	/* files without a UID come first after the sort (uid 0): number them
	 * above every known one, in delivery order */
	for (size_t i = 0; i < n && files[i].uid == 0; i++) {
		files[i].uid = nextuid++;
		fresh++;
	}
	if (n > 1)
		qsort(files, n, sizeof(*files), rfile_uid_cmp);
	md_random_hex(guid, 16);
	buf_printf(&out, "3 V%" PRIu32 " N%" PRIu32 " G%s\n", uidvalidity, nextuid, guid);
	for (size_t i = 0; i < n; i++)
		buf_printf(&out, "%" PRIu32 " :%s\n", files[i].uid, files[i].base);
	err = md_write_file(ms, dir, "dovecot-uidlist", out.data, out.len, true);
	md_uidlist_unlock(f);
	if (err == 0) {
		buf_printf(
		    report,
		    "%s %s: dovecot-uidlist rebuilt: %zu UIDs kept from the damaged file, %zu "
		    "from roost-index, %zu new%s\n",
		    user, label, from_file, from_index, fresh,
		    new_validity ? "; no UIDVALIDITY survived: clients will download the "
		                   "folder again"
		                 : "");
	} else {
		buf_printf(report, "%s %s: dovecot-uidlist could not be written: %s\n", user, label,
		           roost_strerror(err));
	}
	for (size_t i = 0; i < n; i++)
		free(files[i].base);
	free(files);
	free(idx);
	buf_free(&out);
	md_folder_destroy(f);
	return err;
}

static int
repair_folder(struct md_storage *ms, const char *user, const char *name, const char *dir,
              struct buf *report)
{
	struct md_folder *f = md_folder_alloc(ms, dir), *open;
	bool damaged_index;
	int err = md_uidlist_read(f), bad = 0;

	if (err < 0) {
		md_folder_destroy(f);
		if (rebuild_uidlist(ms, user, dir, name, report) < 0)
			bad = 1;
	} else {
		f->loaded = true;
		md_index_read(f);
		damaged_index = f->index_rewrite && f->index_id.exists;
		md_folder_destroy(f);
		if (damaged_index)
			buf_printf(report, "%s %s: roost-index damaged: rebuilt\n", user, name);
	}
	/* The server's own path: a full sync under the lock writes what it
	 * finds missing or stale. */
	err = md_folder_open(ms, user, name, MD_SYNC_FORCE, &open);
	if (err < 0) {
		buf_printf(report, "%s %s: still cannot be opened: %s\n", user, name,
		           roost_strerror(err));
		return 1;
	}
	md_folder_put(ms, open);
	return bad;
}

int
md_repair(struct storage *st, struct buf *report)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);

	return md_each_folder(ms, repair_folder, report) ? ROOST_EIO : 0;
}
