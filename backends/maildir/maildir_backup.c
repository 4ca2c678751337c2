/*
 * roost backup for Maildir, while the server writes: a walk of every
 * user's folders, each copied under its dovecot-uidlist lock, the lock
 * every change of the folder takes (a delivery to it waits for the length
 * of its copy). So the copy of a folder is one state of it: its message
 * files (hard links where the backup is on the same file system, message
 * files never being changed in place; copies otherwise), its
 * dovecot-uidlist, dovecot-keywords and roost-index as they were. Other
 * files of the user (subscriptions) are copied as they are. Folders are
 * copied one after the other: a message moved between two of them during
 * the backup may be in the copy of both or of neither.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/xalloc.h"

#include "maildir.h"

static bool
is_lock(const char *name)
{
	size_t n = strlen(name);

	return n >= 5 && strcmp(name + n - 5, ".lock") == 0;
}

/* The files of dir/sub into to/sub: links, or copies (message files). */
static int
copy_messages(const char *dir, const char *sub, const char *to, bool link, bool do_fsync)
{
	char src[4096], dst[4096];
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (snprintf(src, sizeof(src), "%s/%s", dir, sub) >= (int)sizeof(src) ||
	    snprintf(dst, sizeof(dst), "%s/%s", to, sub) >= (int)sizeof(dst))
		return ROOST_EINVAL;
	if (mkdir(dst, 0700) < 0 && errno != EEXIST)
		return ROOST_EIO;
	if ((d = opendir(src)) == NULL)
		return errno == ENOENT ? 0 : ROOST_EIO;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char from[8192], dest[8192];
		int e;

		if (de->d_name[0] == '.' || strcmp(sub, "tmp") == 0)
			continue;
		if (snprintf(from, sizeof(from), "%s/%s", src, de->d_name) >= (int)sizeof(from) ||
		    snprintf(dest, sizeof(dest), "%s/%s", dst, de->d_name) >= (int)sizeof(dest))
			continue;
		e = fdio_link_or_copy(from, dest, link, do_fsync);
		/* a file another program moved meanwhile (its own rename of
		 * new/ to cur/, not under our lock) is found by its next sync */
		if (e != 0 && e != ROOST_ENOTFOUND)
			rc = e;
	}
	closedir(d);
	if (rc == 0 && do_fsync)
		rc = fdio_fsync_dir(dst);
	return rc;
}

static int
backup_folder(struct md_storage *ms, const char *dir, const char *to, bool is_inbox,
              struct buf *report)
{
	struct md_folder *f = md_folder_alloc(ms, dir);
	DIR *d;
	struct dirent *de;
	int rc;

	if (mkdir(to, 0700) < 0 && errno != EEXIST) {
		md_folder_destroy(f);
		return ROOST_EIO;
	}
	if ((rc = md_uidlist_lock(f)) < 0) {
		buf_printf(report, "%s: cannot take the dovecot-uidlist lock: %s\n", dir,
		           roost_strerror(rc));
		md_folder_destroy(f);
		return rc;
	}
	rc = copy_messages(dir, "cur", to, true, ms->fsync);
	if (rc == 0)
		rc = copy_messages(dir, "new", to, true, ms->fsync);
	if (rc == 0)
		rc = copy_messages(dir, "tmp", to, false, false);
	/* the folder's own files (an INBOX's are the user's too), copied:
	 * they are rewritten in place or replaced */
	if (rc == 0 && (d = opendir(dir)) != NULL) {
		while (rc == 0 && (de = readdir(d)) != NULL) {
			char from[4096], dest[4096];
			struct stat sb;

			if ((de->d_name[0] == '.' && (is_inbox || de->d_name[1] == '\0' ||
			                              strcmp(de->d_name, "..") == 0)) ||
			    is_lock(de->d_name))
				continue;
			if (snprintf(from, sizeof(from), "%s/%s", dir, de->d_name) >=
			        (int)sizeof(from) ||
			    snprintf(dest, sizeof(dest), "%s/%s", to, de->d_name) >=
			        (int)sizeof(dest))
				continue;
			if (lstat(from, &sb) < 0 || !S_ISREG(sb.st_mode) || access(dest, F_OK) == 0)
				continue;
			rc = fdio_link_or_copy(from, dest, false, ms->fsync);
			if (rc == ROOST_ENOTFOUND)
				rc = 0;
		}
		closedir(d);
	}
	md_uidlist_unlock(f);
	md_folder_destroy(f);
	if (rc != 0)
		buf_printf(report, "%s: copy failed: %s\n", dir, strerror(errno));
	return rc;
}

int
md_backup(struct storage *st, const char *dest, struct buf *report)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	char root[4096];
	DIR *top;
	struct dirent *ue;
	int bad = 0;

	snprintf(root, sizeof(root), "%s/%s", dest, strrchr(ms->root, '/') + 1);
	if (mkdir(root, 0700) < 0 && errno != EEXIST) {
		buf_printf(report, "%s: cannot create: %s\n", root, strerror(errno));
		return ROOST_EIO;
	}
	if ((top = opendir(ms->root)) == NULL)
		return 0;
	while ((ue = readdir(top)) != NULL) {
		char udir[4096], uto[4096];
		DIR *d;
		struct dirent *de;

		if (ue->d_name[0] == '.')
			continue;
		if (snprintf(udir, sizeof(udir), "%s/%s", ms->root, ue->d_name) >=
		        (int)sizeof(udir) ||
		    snprintf(uto, sizeof(uto), "%s/%s", root, ue->d_name) >= (int)sizeof(uto) ||
		    (d = opendir(udir)) == NULL)
			continue;
		if (backup_folder(ms, udir, uto, true, report) != 0)
			bad = 1;
		while ((de = readdir(d)) != NULL) {
			char path[8192], to[8192], cur[8300];
			struct stat sb;

			if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (snprintf(path, sizeof(path), "%s/%s", udir, de->d_name) >=
			        (int)sizeof(path) ||
			    snprintf(cur, sizeof(cur), "%s/cur", path) >= (int)sizeof(cur) ||
			    snprintf(to, sizeof(to), "%s/%s", uto, de->d_name) >= (int)sizeof(to))
				continue;
			if (stat(cur, &sb) == 0) {
				if (backup_folder(ms, path, to, false, report) != 0)
					bad = 1;
			} else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
				/* a \Noselect parent: its name is the folder */
				if (mkdir(to, 0700) < 0 && errno != EEXIST)
					bad = 1;
			}
		}
		closedir(d);
	}
	closedir(top);
	return bad ? ROOST_EIO : 0;
}
