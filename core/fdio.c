#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/xalloc.h"

/* How much fdio_read_all() asks read() for at a time. */
#define READ_CHUNK 65536

int
fdio_write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return ROOST_EIO;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int
fdio_read_all(int fd, struct buf *out)
{
	for (;;) {
		size_t room = READ_CHUNK;
		ssize_t n;
		uint8_t probe;

		if (out->max != 0 && out->max - out->len < room)
			room = out->max - out->len;
		if (room == 0) {
			/* full: the data fit only if the file ends here */
			while ((n = read(fd, &probe, 1)) < 0 && errno == EINTR)
				;
			if (n < 0)
				return ROOST_EIO;
			return n == 0 ? 0 : ROOST_ETOOBIG;
		}
		if (buf_reserve(out, room) < 0)
			return ROOST_ETOOBIG;
		n = read(fd, out->data + out->len, room);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ROOST_EIO;
		}
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		out->data[out->len] = '\0';
	}
}

int
fdio_read_file(const char *path, size_t max, struct buf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err;

	buf_init(out, max);
	if (fd < 0)
		return errno == ENOENT ? ROOST_ENOTFOUND : ROOST_EIO;
	err = fdio_read_all(fd, out);
	close(fd);
	if (err != 0)
		buf_free(out);
	return err;
}

int
fdio_open_spool(const char *dir, const char *prefix)
{
	char path[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	if ((size_t)snprintf(path, sizeof(path), "%s/%sXXXXXX", dir, prefix) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

int
fdio_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return ROOST_EIO;
	if (fsync(fd) < 0 && errno != EINVAL)
		err = ROOST_EIO;
	close(fd);
	return err;
}

int
fdio_link_or_copy(const char *from, const char *to, bool link_ok, bool do_fsync)
{
	struct stat sb;
	struct timespec ts[2];
	uint8_t chunk[65536];
	int in, out, rc = 0;

	if (link_ok && link(from, to) == 0)
		return 0;
	if (link_ok && errno == ENOENT)
		return ROOST_ENOTFOUND;
	if ((in = open(from, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? ROOST_ENOTFOUND : ROOST_EIO;
	if (fstat(in, &sb) < 0 ||
	    (out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, sb.st_mode & 0777)) < 0) {
		close(in);
		return ROOST_EIO;
	}
	for (;;) {
		ssize_t n = read(in, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				rc = ROOST_EIO;
			break;
		}
		if ((rc = fdio_write_all(out, chunk, (size_t)n)) != 0)
			break;
	}
	ts[0] = sb.st_atim;
	ts[1] = sb.st_mtim;
	if (rc == 0 && futimens(out, ts) < 0)
		rc = ROOST_EIO;
	if (rc == 0 && do_fsync && fsync(out) < 0)
		rc = ROOST_EIO;
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = ROOST_EIO;
	if (rc != 0)
		unlink(to);
	return rc;
}

int
fdio_mkdir_p(const char *path, char **failed_r)
{
	size_t len = strlen(path);
	char *tmp;

	if (failed_r != NULL)
		*failed_r = NULL;
	if (len == 0 || len >= PATH_MAX)
		return ROOST_EINVAL;
	tmp = xstrdup(path);
	for (size_t i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST) {
			int saved = errno;

			if (failed_r != NULL)
				*failed_r = xstrdup(tmp);
			free(tmp);
			errno = saved;
			return ROOST_EIO;
		}
		tmp[i] = path[i];
	}
	free(tmp);
	return 0;
}

int
fdio_copy_tree(const char *from, const char *to, const char *const *skip, bool do_fsync,
               char **failed_r)
{
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (failed_r != NULL)
		*failed_r = NULL;
	if (mkdir(to, 0700) < 0 && errno != EEXIST)
		goto fail_to;
	if ((d = opendir(from)) == NULL)
		goto fail_from;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char src[4096], dst[4096];
		struct stat sb;
		bool skipped = false;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		for (size_t i = 0; skip != NULL && skip[i] != NULL; i++)
			skipped |= strcmp(skip[i], de->d_name) == 0;
		if (skipped)
			continue;
		if (snprintf(src, sizeof(src), "%s/%s", from, de->d_name) >= (int)sizeof(src) ||
		    snprintf(dst, sizeof(dst), "%s/%s", to, de->d_name) >= (int)sizeof(dst)) {
			errno = ENAMETOOLONG;
			rc = ROOST_EIO;
			if (failed_r != NULL)
				*failed_r = xstrdup(src);
			break;
		}
		if (lstat(src, &sb) < 0)
			continue; /* gone meanwhile */
		if (S_ISDIR(sb.st_mode)) {
			rc = fdio_copy_tree(src, dst, NULL, do_fsync, failed_r);
		} else if (S_ISREG(sb.st_mode)) {
			if (access(dst, F_OK) == 0)
				continue;
			rc = fdio_link_or_copy(src, dst, false, do_fsync);
			if (rc == ROOST_ENOTFOUND)
				rc = 0;
			else if (rc != 0 && failed_r != NULL)
				*failed_r = xstrdup(src);
		}
	}
	closedir(d);
	return rc;
fail_from:
	if (failed_r != NULL)
		*failed_r = xstrdup(from);
	return ROOST_EIO;
fail_to:
	if (failed_r != NULL)
		*failed_r = xstrdup(to);
	return ROOST_EIO;
}
