/*
 * Making Maildir folders: a user's directory, its lock (flock on
 * roost-uidvalidity, held around changes to the folder list) and INBOX;
 * a folder made with its UIDVALIDITY and special-use mark, and with its
 * parents (Maildir++ .Sub.Folder directories, each a maildir of its own).
 */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define SPECIALUSE "roost-specialuse"
#define UIDVALIDITY_FILE "roost-uidvalidity"

bool
md_dir_exists(const char *path)
{
	struct stat stb;

	return stat(path, &stb) == 0 && S_ISDIR(stb.st_mode);
}

bool
md_folder_exists(const char *path)
{
	char *cur = md_path(path, "cur");
	bool ok = md_dir_exists(cur);

	free(cur);
	return ok;
}

/* The user-wide lock (flock on roost-uidvalidity): held around mailbox
 * creation, deletion, renames and subscription changes. */
static int
user_lock(struct md_storage *ms, const char *user, int *fd_r)
{
	char *udir = md_user_dir(ms, user);
	char *path = md_path(udir, UIDVALIDITY_FILE);
	int fd, err = 0;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = md_errno_to_err(errno);
		if (errno != ENOENT)
			log_error(
			    "event=storage_error backend=maildir op=open path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
	} else if (flock(fd, LOCK_EX) < 0) {
		log_error("event=storage_error backend=maildir op=flock path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		close(fd);
		err = ROOST_EIO;
	} else {
		*fd_r = fd;
	}
	free(path);
	free(udir);
	return err;
}

static void
user_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

int
md_user_lock(struct md_storage *ms, const char *user, int *fd_r)
{
	return user_lock(ms, user, fd_r);
}

void
md_user_unlock(int fd)
{
	user_unlock(fd);
}

/* Next UIDVALIDITY for a new mailbox of the user: the current time, but
 * always above the last one handed out, so a mailbox deleted and created
 * again within a second still gets a new one. Caller holds the user lock
 * (fd is the locked file). */
static int
next_uidvalidity(int fd, uint32_t *uidvalidity_r)
{
	char buf[32];
	ssize_t r;
	unsigned long last = 0;
	uint32_t v = (uint32_t)time(NULL);
	int len;

	r = pread(fd, buf, sizeof(buf) - 1, 0);
	if (r > 0) {
		buf[r] = '\0';
		last = strtoul(buf, NULL, 10);
	}
	if (last >= v)
		v = (uint32_t)last + 1;
	len = snprintf(buf, sizeof(buf), "%" PRIu32 "\n", v);
	if (pwrite(fd, buf, (size_t)len, 0) != len || ftruncate(fd, len) < 0)
		return ROOST_EIO;
	*uidvalidity_r = v;
	return 0;
}

static int
write_specialuse(struct md_storage *ms, const char *dir, unsigned special_use)
{
	char line[32];
	int len;

	special_use &= MBOX_SPECIAL_USE_MASK;
	if (special_use == 0)
		return 0;
	len = snprintf(line, sizeof(line), "%u\n", special_use);
	return md_write_file(ms, dir, SPECIALUSE, line, (size_t)len, false);
}

unsigned
md_read_specialuse(const char *dir)
{
	char *path = md_path(dir, SPECIALUSE);
	char *data = NULL;
	size_t len;
	unsigned v = 0;

	if (md_read_file(path, 64, &data, &len) == 0)
		v = (unsigned)strtoul(data, NULL, 10) & MBOX_SPECIAL_USE_MASK;
	free(data);
	free(path);
	return v;
}

/* Make dir a Maildir (cur/ new/ tmp/ and a fresh uidlist), in place. */
static int
make_maildir(struct md_storage *ms, const char *dir, uint32_t uidvalidity)
{
	static const char *const subs[] = {"cur", "new", "tmp"};
	size_t i;
	int err;

	for (i = 0; i < 3; i++) {
		char *p = md_path(dir, subs[i]);

		err = md_mkdir(p);
		free(p);
		if (err < 0)
			return err;
	}
	return md_uidlist_create(ms, dir, uidvalidity);
}

/* Maildir++ marks a folder (as opposed to the root) with this empty file;
 * MDAs such as maildrop and Dovecot's quota code look for it. */
static int
mark_folder(struct md_storage *ms, const char *dir)
{
	return md_write_file(ms, dir, "maildirfolder", "", 0, false);
}

/* Create INBOX (the user's root) when missing; user lock held. */
static int
ensure_inbox(struct md_storage *ms, const char *udir, int lockfd)
{
	char *uidlist;
	struct stat stb;
	uint32_t v;
	int err;

	uidlist = md_path(udir, "dovecot-uidlist");
	if (stat(uidlist, &stb) == 0 || md_folder_exists(udir)) {
		/* a Maildir without uidlist gets one at its first sync */
		free(uidlist);
		return 0;
	}
	free(uidlist);
	if ((err = next_uidvalidity(lockfd, &v)) < 0)
		return err;
	if ((err = make_maildir(ms, udir, v)) < 0)
		return err;
	return ms->fsync ? md_fsync_dir(udir) : 0;
}

int
md_ensure_user_dir(struct md_storage *ms, const char *user)
{
	char *udir = md_user_dir(ms, user);
	int err = md_mkdir(udir);

	free(udir);
	return err;
}

/* Create one folder (not INBOX) atomically: built under a temporary name,
 * then renamed into place. User lock held. ROOST_EEXISTS when present. */
static int
create_one(struct md_storage *ms, const char *user, const char *name, unsigned special_use,
           int lockfd)
{
	char *udir = md_user_dir(ms, user);
	char *path = md_folder_path(ms, user, name);
	char tmpname[256], base[200], *tmp;
	uint32_t v;
	int err;

	if (md_folder_exists(path)) {
		err = ROOST_EEXISTS;
		goto out_notmp;
	}
	md_unique_base(ms, 0, base, sizeof(base));
	snprintf(tmpname, sizeof(tmpname), "roost-tmp.%s", base);
	tmp = md_path(udir, tmpname);
	if ((err = md_mkdir(tmp)) < 0)
		goto out;
	if ((err = next_uidvalidity(lockfd, &v)) < 0 || (err = make_maildir(ms, tmp, v)) < 0 ||
	    (err = mark_folder(ms, tmp)) < 0 || (err = write_specialuse(ms, tmp, special_use)) < 0)
		goto out;
	if (md_dir_exists(path)) {
		/* a leftover without cur/ (half-deleted by another tool) */
		md_rm_rf(path);
	}
	if (rename(tmp, path) < 0) {
		err =
		    errno == EEXIST || errno == ENOTEMPTY ? ROOST_EEXISTS : md_errno_to_err(errno);
		if (err != ROOST_EEXISTS)
			log_error(
			    "event=storage_error backend=maildir op=rename path=%s error=\"%s\"",
			    LOG_QUOTE(tmp), strerror(errno));
		goto out;
	}
	if (ms->fsync)
		err = md_fsync_dir(udir);
out:
	if (err < 0)
		md_rm_rf(tmp);
	free(tmp);
out_notmp:
	free(path);
	free(udir);
	return err;
}

/* Does the folder at path hold no message (cur/ and new/ empty)? */
static bool
folder_empty(const char *path)
{
	static const char *const subs[] = {"cur", "new"};

	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char *p = md_path(path, subs[i]);
		DIR *d = opendir(p);
		struct dirent *de;
		bool empty = d != NULL;

		free(p);
		while (empty && (de = readdir(d)) != NULL)
			empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
		if (d != NULL)
			closedir(d);
		if (!empty)
			return false;
	}
	return true;
}

/* Take back a parent made for a child that could not be made: moved aside
 * and removed as md_delete does, unless a message reached it meanwhile.
 * User lock held. */
static void
remove_parent(struct md_storage *ms, const char *user, const char *name)
{
	char *udir = md_user_dir(ms, user), *path = md_folder_path(ms, user, name), *trash;
	char tname[256], base[200];

	md_unique_base(ms, 0, base, sizeof(base));
	snprintf(tname, sizeof(tname), "roost-trash.%s", base);
	trash = md_path(udir, tname);
	if (folder_empty(path) && rename(path, trash) == 0)
		md_rm_rf(trash);
	free(trash);
	free(path);
	free(udir);
}

/* Create name and its missing parents; when name cannot be made, the
 * parents made for it are taken back. User lock held. */
int
md_create_with_parents(struct md_storage *ms, const char *user, const char *name,
                       unsigned special_use, int lockfd)
{
	char *copy = xstrdup(name), *p, **made = NULL;
	size_t n_made = 0;
	int err = 0;

	for (p = strchr(copy, '/'); p != NULL && err == 0; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (strcmp(copy, "INBOX") != 0) {
			err = create_one(ms, user, copy, 0, lockfd);
			if (err == 0) {
				made = xreallocarray(made, n_made + 1, sizeof(*made));
				made[n_made++] = xstrdup(copy);
			} else if (err == ROOST_EEXISTS) {
				err = 0;
			}
		}
		*p = '/';
	}
	free(copy);
	if (err == 0)
		err = create_one(ms, user, name, special_use, lockfd);
	for (size_t i = n_made; i > 0; i--) {
		if (err < 0)
			remove_parent(ms, user, made[i - 1]);
		free(made[i - 1]);
	}
	free(made);
	return err;
}

/* The user's directory, its lock taken (*fd_r, which the caller releases
 * with user_unlock() whatever this returns) and INBOX. */
static int
user_ready(struct md_storage *ms, const char *user, int *fd_r)
{
	char *udir;
	int err;

	if ((err = md_ensure_user_dir(ms, user)) < 0)
		return err;
	if ((err = user_lock(ms, user, fd_r)) < 0)
		return err;
	udir = md_user_dir(ms, user);
	err = ensure_inbox(ms, udir, *fd_r);
	free(udir);
	return err;
}

/* The user's directory and INBOX; the wrapper makes the default folders. */
int
md_user_init(struct storage *st, const char *user)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	int fd = -1, err;

	err = user_ready(ms, user, &fd);
	user_unlock(fd);
	return err;
}

int
md_create(struct storage *st, const char *user, const char *name, unsigned special_use)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	int fd = -1, err;

	if (strcmp(name, "INBOX") == 0)
		return ROOST_EEXISTS;
	err = user_ready(ms, user, &fd);
	if (err == 0)
		err = md_create_with_parents(ms, user, name, special_use, fd);
	user_unlock(fd);
	return err;
}
