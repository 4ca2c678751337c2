#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/fdio.h"

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
