/*
 * roost check for Maildir: read every user's folders without taking locks
 * or writing anything, and report what does not hold:
 *   - dovecot-uidlist missing or unreadable, UIDs not ascending, the next
 *     UID not above the last one;
 *   - a uidlist record without a file, a file without a record (another
 *     program's delivery not yet seen by Roost is reported too);
 *   - the same message (base name) twice in new/ and cur/;
 *   - roost-index of another UIDVALIDITY or damaged;
 *   - lock files older than the stale timeout.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "roost/error.h"
#include "roost/xalloc.h"

#include "maildir.h"

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t
list_dir(const char *path, char ***v_r)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;

	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			v = xreallocarray(v, n + 1, sizeof(*v));
			v[n++] = xstrdup(de->d_name);
		}
		closedir(d);
	}
	*v_r = v;
	return n;
}

static int
check_folder(struct md_storage *ms, const char *user, const char *label, const char *dir,
             struct buf *report)
{
	struct md_folder *f = md_folder_alloc(ms, dir);
	char *sub, **names = NULL, **all = NULL;
	size_t n_new, n_cur, n_all, i, problems = 0, no_uid = 0, no_file = 0;
	struct stat stb;
	int err;

	err = md_uidlist_read(f);
	if (err < 0) {
		buf_printf(report, "%s %s: dovecot-uidlist %s\n", user, label,
		           err == ROOST_ENOTFOUND ? "missing" : "unreadable");
		md_folder_destroy(f);
		return 1;
	}
	f->loaded = true;
	md_index_read(f);
	md_drop_expunged(f);
	if (f->index_rewrite && f->index_id.exists) {
		buf_printf(report, "%s %s: roost-index damaged or stale (will be rebuilt)\n", user,
		           label);
		problems++;
	}
	for (i = 1; i < f->n; i++) {
		if (f->recs[i].uid <= f->recs[i - 1].uid) {
			buf_printf(report, "%s %s: UIDs not ascending at %u\n", user, label,
			           f->recs[i].uid);
			problems++;
			break;
		}
	}
	if (f->n > 0 && f->nextuid <= f->recs[f->n - 1].uid) {
		buf_printf(report, "%s %s: next UID %u not above last UID %u\n", user, label,
		           f->nextuid, f->recs[f->n - 1].uid);
		problems++;
	}
	/* bases of every file in new/ and cur/ */
	sub = md_path(dir, "new");
	n_new = list_dir(sub, &names);
	free(sub);
	all = names;
	n_all = n_new;
	sub = md_path(dir, "cur");
	n_cur = list_dir(sub, &names);
	free(sub);
	all = xreallocarray(all, n_all + n_cur + 1, sizeof(*all));
	if (n_cur > 0)
		memcpy(all + n_all, names, n_cur * sizeof(*names));
	free(names);
	n_all += n_cur;
	for (i = 0; i < n_all; i++)
		all[i][strcspn(all[i], ":")] = '\0';
	if (n_all > 1)
		qsort(all, n_all, sizeof(*all), cmp_str);
	for (i = 1; i < n_all; i++) {
		if (strcmp(all[i], all[i - 1]) == 0) {
			buf_printf(report, "%s %s: %s is in the folder twice\n", user, label,
			           all[i]);
			problems++;
		}
	}
	for (i = 0; i < f->n; i++) {
		char key[1024], *k = key;

		snprintf(key, sizeof(key), "%.*s", (int)f->recs[i].baselen, f->recs[i].fname);
		if (bsearch(&k, all, n_all, sizeof(*all), cmp_str) == NULL)
			no_file++;
	}
	if (n_all + no_file > f->n)
		no_uid = n_all + no_file - f->n;
	if (no_file > 0) {
		buf_printf(report, "%s %s: %zu UIDs without a file\n", user, label, no_file);
		problems++;
	}
	if (no_uid > 0) {
		buf_printf(report, "%s %s: %zu files without a UID\n", user, label, no_uid);
		problems++;
	}
	sub = md_path(dir, "dovecot-uidlist.lock");
	if (stat(sub, &stb) == 0 && stb.st_mtime + 120 < time(NULL)) {
		buf_printf(report, "%s %s: stale dovecot-uidlist.lock\n", user, label);
		problems++;
	}
	free(sub);
	md_strv_free(all, n_all);
	md_folder_destroy(f);
	return problems > 0;
}

int
md_check(struct storage *st, struct buf *report)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);

	return md_each_folder(ms, check_folder, report) ? ROOST_EIO : 0;
}
