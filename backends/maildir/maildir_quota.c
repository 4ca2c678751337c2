/*
 * Maildir quota usage, kept in Maildir++'s maildirsize file at the user's
 * root, which Dovecot's maildir quota, Courier and maildrop also keep: a
 * first line with the limits ("0S,0C": the limits live in the passwd file
 * and the config, not here), then one line "bytes count" per change, signed;
 * the usage is the sum of those lines. A change appends its line with one
 * write() to an O_APPEND descriptor, so concurrent writers never tear one.
 *
 * Exactness among Roost processes: a change holds roost-quota.lock shared
 * from before it touches a message file until its line is written, and a
 * recount holds it exclusively while it walks the folders and replaces the
 * file, so a recount never sees a file whose line is yet to come. When the
 * file grows past MAILDIRSIZE_MAX (Maildir++'s 5120 bytes) it is folded
 * into one line, under the exclusive lock. A program that adds or removes
 * files without writing its line (one that knows no Maildir++ quota) makes
 * the count drift until `roost quota recalc`; a missing or unreadable file
 * is recounted from the folders.
 *
 * A message counts its size as the S= of its file name, else its file size
 * (what the folder's records say of it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define MAILDIRSIZE "maildirsize"
#define QUOTA_LOCK "roost-quota.lock"
#define MAILDIRSIZE_MAX 5120
#define MAILDIRSIZE_READ_MAX (1u << 20)

/* The size of a message file: its S=, else what stat says. */
static uint64_t
file_size(int dirfd, const char *name)
{
	const char *s = strstr(name, ",S=");
	const char *colon = strchr(name, ':');
	struct stat stb;

	if (s != NULL && (colon == NULL || s < colon)) {
		char *e;
		unsigned long long v = strtoull(s + 3, &e, 10);

		if (e != s + 3 && (*e == ',' || *e == ':' || *e == '\0'))
			return v;
	}
	if (fstatat(dirfd, name, &stb, 0) == 0 && S_ISREG(stb.st_mode))
		return (uint64_t)stb.st_size;
	return 0;
}

/* Add the files of folder/new and folder/cur. */
int
md_quota_count_folder(const char *folder, struct storage_usage *u)
{
	static const char *const subs[] = {"new", "cur"};

	for (size_t i = 0; i < 2; i++) {
		char *path = md_path(folder, subs[i]);
		DIR *d = opendir(path);
		struct dirent *de;

		if (d == NULL) {
			int e = errno;

			free(path);
			if (e == ENOENT)
				continue;
			log_error(
			    "event=storage_error backend=maildir op=quota_recount path=%s sub=%s "
			    "error=\"%s\"",
			    LOG_QUOTE(folder), subs[i], strerror(e));
			return md_errno_to_err(e);
		}
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			u->bytes += file_size(dirfd(d), de->d_name);
			u->messages++;
		}
		closedir(d);
		free(path);
	}
	return 0;
}

/* Count every folder of the user: the root (INBOX) and each ".name". */
static int
recount(const char *udir, struct storage_usage *u)
{
	DIR *d = opendir(udir);
	struct dirent *de;
	int err;

	memset(u, 0, sizeof(*u));
	if (d == NULL)
		return errno == ENOENT ? 0 : md_errno_to_err(errno);
	if ((err = md_quota_count_folder(udir, u)) < 0) {
		closedir(d);
		return err;
	}
	while ((de = readdir(d)) != NULL) {
		char *folder, *cur;
		struct stat stb;

		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		folder = md_path(udir, de->d_name);
		cur = md_path(folder, "cur");
		if (stat(cur, &stb) == 0 && S_ISDIR(stb.st_mode))
			err = md_quota_count_folder(folder, u);
		free(cur);
		free(folder);
		if (err < 0)
			break;
	}
	closedir(d);
	return err;
}

/* Sum maildirsize's lines after the first. ROOST_ENOTFOUND when it is
 * missing, ROOST_EIO when it is not shaped so (then recounted). */
static int
read_usage(const char *udir, struct storage_usage *u, size_t *size_r)
{
	char *path = md_path(udir, MAILDIRSIZE), *data = NULL, *p, *nl;
	int64_t bytes = 0, count = 0;
	size_t len = 0;
	int err;

	err = md_read_file(path, MAILDIRSIZE_READ_MAX, &data, &len);
	free(path);
	if (err < 0)
		return err == ROOST_ENOTFOUND ? err : ROOST_EIO;
	*size_r = len;
	p = memchr(data, '\n', len);
	if (p == NULL) {
		free(data);
		return ROOST_EIO;
	}
	for (p++; p < data + len; p = nl + 1) {
		long long b, c;
		char *e;

		nl = memchr(p, '\n', (size_t)(data + len - p));
		if (nl == NULL)
			break; /* a torn last line (a crash mid-write): not counted */
		*nl = '\0';
		errno = 0;
		b = strtoll(p, &e, 10);
		if (e == p || errno != 0) {
			free(data);
			return ROOST_EIO;
		}
		p = e;
		c = strtoll(p, &e, 10);
		if (e == p || errno != 0 || (*e != '\0' && *e != ' ')) {
			free(data);
			return ROOST_EIO;
		}
		bytes += b;
		count += c;
	}
	free(data);
	u->bytes = bytes > 0 ? (uint64_t)bytes : 0;
	u->messages = count > 0 ? (uint64_t)count : 0;
	return 0;
}

/* Replace maildirsize with one holding u (exclusive lock held). */
static int
write_usage(struct md_storage *ms, const char *udir, const struct storage_usage *u)
{
	char text[96];
	int len =
	    snprintf(text, sizeof(text), "0S,0C\n%" PRIu64 " %" PRIu64 "\n", u->bytes, u->messages);

	return md_write_file(ms, udir, MAILDIRSIZE, text, (size_t)len, ms->fsync);
}

static int
lock_open(const char *udir, int how, int *fd_r)
{
	char *path = md_path(udir, QUOTA_LOCK);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0) {
		int e = errno;

		free(path);
		return e == ENOENT ? ROOST_ENOTFOUND : md_errno_to_err(e);
	}
	while (flock(fd, how) < 0) {
		if (errno != EINTR) {
			log_error(
			    "event=storage_error backend=maildir op=flock path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
			close(fd);
			free(path);
			return ROOST_EIO;
		}
	}
	free(path);
	*fd_r = fd;
	return 0;
}

/* With the exclusive lock: a file that is missing, damaged or too long is
 * made again (recounted, or folded into one line). */
static int
repair_locked(struct md_storage *ms, const char *udir, bool force_recount, struct storage_usage *u)
{
	size_t size = 0;
	int err = force_recount ? ROOST_EIO : read_usage(udir, u, &size);

	if (err == 0 && size <= MAILDIRSIZE_MAX)
		return 0;
	if (err < 0 && (err = recount(udir, u)) < 0)
		return err;
	return write_usage(ms, udir, u);
}

/* Is the maildirsize open on fd within its length? One fstat, for a change
 * that only appends its line: a file damaged inside is found by the next
 * read (md_quota_get()), which recounts it with that line and the others. */
static bool
usage_short(int fd)
{
	struct stat stb;

	return fstat(fd, &stb) == 0 && S_ISREG(stb.st_mode) && stb.st_size > 0 &&
	       stb.st_size <= MAILDIRSIZE_MAX;
}

static int
usage_open(const char *udir)
{
	char *path = md_path(udir, MAILDIRSIZE);
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

	free(path);
	return fd;
}

/*
 * A shared lock on a usable maildirsize; read: check what it says (else
 * only that it is there and short). A change (file_fd_r not NULL) gets
 * the file open for its line too: the descriptor that checked its length
 * is the one md_quota_end() appends to and the delivery fdatasyncs, one
 * open where there were three path walks. The shared lock keeps a recount
 * from replacing the file until the line is written.
 */
static int
begin(struct md_storage *ms, const char *udir, bool read, int *fd_r, int *file_fd_r)
{
	struct storage_usage u;
	size_t size = 0;
	int err, fd, wfd = -1;

	if ((err = lock_open(udir, LOCK_SH, &fd)) < 0)
		return err;
	if (!read) {
		wfd = usage_open(udir);
		if (wfd >= 0 && usage_short(wfd))
			goto ok;
		if (wfd >= 0)
			close(wfd);
		wfd = -1;
	}
	err = read_usage(udir, &u, &size);
	if (err == 0 && size <= MAILDIRSIZE_MAX)
		goto reopen;
	/* make it again, then go back to sharing */
	if (flock(fd, LOCK_EX) < 0 || (err = repair_locked(ms, udir, false, &u)) < 0 ||
	    flock(fd, LOCK_SH) < 0) {
		close(fd);
		return err < 0 ? err : ROOST_EIO;
	}
reopen:
	if (!read && file_fd_r != NULL)
		wfd = usage_open(udir);
ok:
	if (file_fd_r != NULL)
		*file_fd_r = wfd;
	else if (wfd >= 0)
		close(wfd);
	*fd_r = fd;
	return 0;
}

int
md_quota_begin(struct md_storage *ms, const char *user, int *fd_r, int *file_fd_r)
{
	char *udir = md_user_dir(ms, user);
	int err;

	if (file_fd_r != NULL)
		*file_fd_r = -1;
	err = begin(ms, udir, false, fd_r, file_fd_r);
	free(udir);
	if (err < 0) {
		*fd_r = -1;
		log_error(
		    "event=storage_error backend=maildir op=quota_update user=%s error=\"%s\" "
		    "effect=\"the count may drift until roost quota recalc\"",
		    LOG_QUOTE(user), roost_strerror(err));
	}
	return err;
}

int
md_quota_end(struct md_storage *ms, const char *user, int fd, int file_fd, int64_t bytes,
             int64_t messages, bool sync)
{
	char *udir = NULL, *path = NULL, line[64];
	bool written = false;
	int len, wfd = file_fd;

	if (fd < 0) {
		if (file_fd >= 0)
			close(file_fd);
		return -1;
	}
	if (bytes != 0 || messages != 0) {
		udir = md_user_dir(ms, user);
		path = md_path(udir, MAILDIRSIZE);
		len = snprintf(line, sizeof(line), "%lld %lld\n", (long long)bytes,
		               (long long)messages);
		if (wfd < 0)
			wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (wfd < 0 || write(wfd, line, (size_t)len) != len ||
		    (sync && ms->fsync && fdatasync(wfd) < 0))
			log_error(
			    "event=storage_error backend=maildir op=append path=%s error=\"%s\" "
			    "effect=\"the quota count may drift until roost quota recalc\"",
			    LOG_QUOTE(path), strerror(errno));
		else
			written = true;
	}
	close(fd); /* releases the lock */
	free(path);
	free(udir);
	if (written && !sync)
		return wfd;
	if (wfd >= 0)
		close(wfd);
	return -1;
}

/*
 * The fdatasync md_quota_end(sync false) left (file_fd, which is closed):
 * with the other fsyncs of a delivery, side by side (md_durable_sync()),
 * not one after the other under the folder lock. A file a recount
 * replaced meanwhile was synced by it (write_usage()); this syncs the one
 * the line went to.
 */
int
md_quota_sync(struct md_storage *ms, int file_fd)
{
	int err = 0;

	if (file_fd < 0)
		return 0;
	if (ms->fsync && fdatasync(file_fd) < 0) {
		log_error("event=storage_error backend=maildir op=fdatasync file=" MAILDIRSIZE
		          " error=\"%s\"",
		          strerror(errno));
		err = ROOST_EIO;
	}
	close(file_fd);
	return err;
}

void
md_quota_hold(struct md_folder *f)
{
	if (f->quota_fd < 0 && f->user != NULL)
		(void)md_quota_begin(f->ms, f->user, &f->quota_fd, &f->quota_file_fd);
}

/* The user's directory (the caller frees it), or NULL for a user the
 * store has never seen, who has nothing. */
static char *
seen_user_dir(struct storage *st, const char *user)
{
	char *udir = md_user_dir(container_of(st, struct md_storage, st), user);
	struct stat stb;

	if (stat(udir, &stb) < 0) {
		free(udir);
		return NULL;
	}
	return udir;
}

int
md_quota_get(struct storage *st, const char *user, struct storage_usage *usage_r)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	char *udir;
	size_t size;
	int err, fd;

	memset(usage_r, 0, sizeof(*usage_r));
	if ((udir = seen_user_dir(st, user)) == NULL)
		return 0;
	if ((err = begin(ms, udir, true, &fd, NULL)) == 0) {
		err = read_usage(udir, usage_r, &size);
		close(fd);
	}
	free(udir);
	return err;
}

int
md_quota_recalc(struct storage *st, const char *user, struct storage_usage *before_r,
                struct storage_usage *after_r)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);
	char *udir;
	size_t size;
	int err, fd;

	memset(before_r, 0, sizeof(*before_r));
	memset(after_r, 0, sizeof(*after_r));
	if ((udir = seen_user_dir(st, user)) == NULL)
		return 0;
	if ((err = lock_open(udir, LOCK_EX, &fd)) == 0) {
		if (read_usage(udir, before_r, &size) < 0)
			memset(before_r, 0, sizeof(*before_r));
		err = repair_locked(ms, udir, true, after_r);
		close(fd);
	}
	free(udir);
	return err;
}
