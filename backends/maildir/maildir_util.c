/* File helpers shared by the Maildir backend. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/hex.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

int
md_errno_to_err(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return ROOST_ENOTFOUND;
	case EEXIST:
	case ENOTEMPTY:
		return ROOST_EEXISTS;
	case EDQUOT:
		return ROOST_EOVERQUOTA;
	case EFBIG:
		return ROOST_ETOOBIG;
	case ENOSPC:
	case EAGAIN:
	case EMFILE:
	case ENFILE:
		return ROOST_ETEMP;
	case EACCES:
	case EPERM:
		return ROOST_EPERM;
	default:
		return ROOST_EIO;
	}
}

char *
md_path(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = xmalloc(la + lb + 2);

	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

char *
md_path3(const char *a, const char *b, const char *c)
{
	char *ab = md_path(a, b);
	char *p = md_path(ab, c);

	free(ab);
	return p;
}

int
md_fsync_dir(const char *path)
{
	if (fdio_fsync_dir(path) < 0) {
		log_error("event=storage_error backend=maildir op=fsync path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		return md_errno_to_err(errno);
	}
	return 0;
}

int
md_mkdir(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		log_error("event=storage_error backend=maildir op=mkdir path=%s error=\"%s\"",
		          LOG_QUOTE(path), strerror(errno));
		return md_errno_to_err(errno);
	}
	return 0;
}

/* Replace dir/name atomically: write a unique temp file beside it, fsync,
 * rename over. The directory itself is fsynced by the caller when needed. */
int
md_write_file(struct md_storage *ms, const char *dir, const char *name, const void *data,
              size_t len, bool do_fsync)
{
	char tmpname[256], base[200];
	char *tmp, *dst;
	int fd, err = 0;

	/* in tmp/ when there is one, so a leftover of a crash is cleaned */
	md_unique_base(ms, len, base, sizeof(base));
	snprintf(tmpname, sizeof(tmpname), "tmp/%s.%s", name, base);
	tmp = md_path(dir, tmpname);
	dst = md_path(dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		free(tmp);
		snprintf(tmpname, sizeof(tmpname), "%s.tmp.%s", name, base);
		tmp = md_path(dir, tmpname);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		err = md_errno_to_err(errno);
		log_error("event=storage_error backend=maildir op=create path=%s error=\"%s\"",
		          LOG_QUOTE(tmp), strerror(errno));
		goto out;
	}
	if (fdio_write_all(fd, data, len) < 0 || (do_fsync && fdatasync(fd) < 0)) {
		err = md_errno_to_err(errno);
		log_error("event=storage_error backend=maildir op=write path=%s error=\"%s\"",
		          LOG_QUOTE(tmp), strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, dst) < 0) {
		err = md_errno_to_err(errno);
		log_error("event=storage_error backend=maildir op=rename path=%s error=\"%s\"",
		          LOG_QUOTE(tmp), strerror(errno));
		unlink(tmp);
	}
out:
	free(tmp);
	free(dst);
	return err;
}

int
md_read_file(const char *path, size_t max, char **data_r, size_t *len_r)
{
	struct stat stb;
	char *data;
	size_t got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? ROOST_ENOTFOUND : md_errno_to_err(errno);
	if (fstat(fd, &stb) < 0 || (uint64_t)stb.st_size > max) {
		close(fd);
		return ROOST_EIO;
	}
	data = xmalloc((size_t)stb.st_size + 1);
	while (got < (size_t)stb.st_size) {
		ssize_t r = read(fd, data + got, (size_t)stb.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			log_error(
			    "event=storage_error backend=maildir op=read path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
			free(data);
			close(fd);
			return ROOST_EIO;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	data[got] = '\0';
	*data_r = data;
	*len_r = got;
	return 0;
}

/* id_r from the result of a stat call (rc, errno): a missing file is an id
 * that does not exist, not an error. */
static int
file_id_from_stat(int rc, const struct stat *stb, struct md_file_id *id_r)
{
	memset(id_r, 0, sizeof(*id_r));
	if (rc < 0)
		return errno == ENOENT ? 0 : md_errno_to_err(errno);
	id_r->exists = true;
	id_r->dev = stb->st_dev;
	id_r->ino = stb->st_ino;
	id_r->size = stb->st_size;
	id_r->mtime = stb->st_mtim;
	return 0;
}

int
md_file_id_get(const char *path, struct md_file_id *id_r)
{
	struct stat stb;
	int rc = stat(path, &stb);

	return file_id_from_stat(rc, &stb, id_r);
}

int
md_file_id_fd(int fd, struct md_file_id *id_r)
{
	struct stat stb;
	int rc = fstat(fd, &stb);

	return file_id_from_stat(rc, &stb, id_r);
}

int
md_file_id_at(struct md_folder *f, const char *name, const char *path, struct md_file_id *id_r)
{
	struct stat stb;

	if (f->dirfd < 0)
		return md_file_id_get(path, id_r);
	int rc = fstatat(f->dirfd, name, &stb, 0);

	return file_id_from_stat(rc, &stb, id_r);
}

int
md_open_at(struct md_folder *f, const char *name, const char *path, int flags)
{
	if (f->dirfd < 0)
		return open(path, flags);
	return openat(f->dirfd, name, flags);
}

bool
md_file_id_eq(const struct md_file_id *a, const struct md_file_id *b)
{
	if (a->exists != b->exists)
		return false;
	if (!a->exists)
		return true;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int
md_rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int err = 0;

	if (d == NULL) {
		if (errno == ENOTDIR) {
			if (unlink(path) < 0 && errno != ENOENT)
				return md_errno_to_err(errno);
			return 0;
		}
		return errno == ENOENT ? 0 : md_errno_to_err(errno);
	}
	while ((de = readdir(d)) != NULL) {
		char *p;
		struct stat stb;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		p = md_path(path, de->d_name);
		if (lstat(p, &stb) == 0 && S_ISDIR(stb.st_mode)) {
			if (md_rm_rf(p) < 0)
				err = ROOST_EIO;
		} else if (unlink(p) < 0 && errno != ENOENT) {
			err = ROOST_EIO;
		}
		free(p);
	}
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT)
		err = md_errno_to_err(errno);
	return err;
}

static atomic_uint_fast64_t unique_counter;

/* <sec>.M<usec>P<pid>Q<counter>.<host>,S=<size>: the counter makes names
 * unique between threads of one process, the pid between processes, the
 * time across pid reuse. */
void
md_unique_base(struct md_storage *ms, uint64_t size, char *out, size_t outlen)
{
	struct timeval tv;
	uint64_t q = atomic_fetch_add(&unique_counter, 1) + 1;

	gettimeofday(&tv, NULL);
	snprintf(out, outlen, "%lld.M%ldP%ldQ%" PRIu64 ".%s,S=%" PRIu64, (long long)tv.tv_sec,
	         (long)tv.tv_usec, (long)getpid(), q, ms->hostname, size);
}

void
md_random_hex(char *out, size_t nbytes)
{
	uint8_t raw[64];
	size_t i;

	if (nbytes > sizeof(raw))
		nbytes = sizeof(raw);
	if (getrandom(raw, nbytes, 0) != (ssize_t)nbytes) {
		struct timeval tv;

		gettimeofday(&tv, NULL);
		for (i = 0; i < nbytes; i++)
			raw[i] = (uint8_t)((tv.tv_usec >> (i % 3)) ^ (getpid() >> (i % 5)) ^ i);
	}
	hex_encode(raw, nbytes, out);
}

int
md_each_folder(struct md_storage *ms, md_folder_fn *fn, struct buf *report)
{
	DIR *top = opendir(ms->root);
	struct dirent *ue;
	int bad = 0;

	if (top == NULL)
		return 0;
	while ((ue = readdir(top)) != NULL) {
		char *udir, *user;
		DIR *d;
		struct dirent *de;

		if (ue->d_name[0] == '.')
			continue;
		user = xstrdup(ue->d_name);
		udir = md_path(ms->root, user);
		if ((d = opendir(udir)) == NULL) {
			free(udir);
			free(user);
			continue;
		}
		bad |= fn(ms, user, "INBOX", udir, report);
		while ((de = readdir(d)) != NULL) {
			char *name, *path, *cur;
			struct stat stb;

			if (de->d_name[0] != '.' || (name = md_name_decode(de->d_name)) == NULL)
				continue;
			path = md_path(udir, de->d_name);
			cur = md_path(path, "cur");
			if (stat(cur, &stb) == 0)
				bad |= fn(ms, user, name, path, report);
			free(cur);
			free(path);
			free(name);
		}
		closedir(d);
		free(udir);
		free(user);
	}
	closedir(top);
	return bad;
}

void
md_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}
