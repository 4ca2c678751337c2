#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/fdio.h"

#include "check_run.h"

/* More than a pipe holds, so writes and reads come back short. */
#define BIG (1u << 20)

static uint8_t *
pattern(size_t n)
{
	uint8_t *p = malloc(n);

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + i / 251);
	return p;
}

struct writer {
	int fd;
	const uint8_t *data;
	size_t len;
	int err;
};

static void *
write_thread(void *arg)
{
	struct writer *w = arg;

	w->err = fdio_write_all(w->fd, w->data, w->len);
	close(w->fd);
	return NULL;
}

START_TEST(pipe_round_trip)
{
	uint8_t *data = pattern(BIG);
	struct writer w = {.data = data, .len = BIG};
	struct buf b = BUF_INIT(0);
	pthread_t t;
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	w.fd = p[1];
	ck_assert_int_eq(pthread_create(&t, NULL, write_thread, &w), 0);
	ck_assert_int_eq(fdio_read_all(p[0], &b), 0);
	pthread_join(t, NULL);
	close(p[0]);
	ck_assert_int_eq(w.err, 0);
	ck_assert_uint_eq(b.len, BIG);
	ck_assert(memcmp(b.data, data, BIG) == 0);
	ck_assert_uint_eq(b.data[b.len], 0);
	buf_free(&b);
	free(data);
}
END_TEST

static void
temp_file(char path[64], const void *data, size_t len)
{
	int fd;

	strcpy(path, "/tmp/roost-check-fdio-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fdio_write_all(fd, data, len), 0);
	ck_assert_int_eq(close(fd), 0);
}

START_TEST(read_file_bounds)
{
	uint8_t *data = pattern(200000);
	struct buf b;
	char path[64];

	temp_file(path, data, 200000);
	/* exactly the maximum fits; one byte less does not */
	ck_assert_int_eq(fdio_read_file(path, 200000, &b), 0);
	ck_assert_uint_eq(b.len, 200000);
	ck_assert(memcmp(b.data, data, 200000) == 0);
	buf_free(&b);
	ck_assert_int_eq(fdio_read_file(path, 199999, &b), ROOST_ETOOBIG);
	ck_assert_ptr_null(b.data);
	ck_assert_int_eq(fdio_read_file(path, 0, &b), 0);
	ck_assert_uint_eq(b.len, 200000);
	buf_free(&b);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(fdio_read_file(path, 0, &b), ROOST_ENOTFOUND);
	free(data);
}
END_TEST

START_TEST(read_all_appends)
{
	struct buf b = BUF_INIT(10);
	char path[64];
	int fd;

	temp_file(path, "world", 5);
	buf_append_str(&b, "hello");
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(fdio_read_all(fd, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "helloworld");
	/* at the end of the file again: nothing more to read, nothing too big */
	ck_assert_int_eq(fdio_read_all(fd, &b), 0);
	close(fd);
	unlink(path);
	buf_free(&b);
}
END_TEST

START_TEST(spool_has_no_name)
{
	char dir[] = "/tmp/roost-check-fdio-XXXXXX";
	char missing[64];
	struct buf b = BUF_INIT(0);
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	fd = fdio_open_spool(dir, ".spool-");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fdio_write_all(fd, "spooled", 7), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	ck_assert_int_eq(fdio_read_all(fd, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "spooled");
	/* nothing named is left in the directory: it can be removed at once */
	ck_assert_int_eq(rmdir(dir), 0);
	close(fd);
	snprintf(missing, sizeof(missing), "%s/none", dir);
	ck_assert_int_eq(fdio_open_spool(missing, ".spool-"), -1);
	buf_free(&b);
}
END_TEST

START_TEST(errors)
{
	char dir[] = "/tmp/roost-check-fdio-XXXXXX";
	char missing[64];
	struct buf b = BUF_INIT(0);
	int p[2];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(fdio_fsync_dir(dir), 0);
	snprintf(missing, sizeof(missing), "%s/none", dir);
	ck_assert_int_eq(fdio_fsync_dir(missing), ROOST_EIO);
	/* a directory is not a file to read */
	ck_assert_int_eq(fdio_read_file(dir, 0, &b), ROOST_EIO);
	ck_assert_int_eq(rmdir(dir), 0);
	/* the reading end of a pipe cannot be written */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(fdio_write_all(p[0], "x", 1), ROOST_EIO);
	ck_assert_int_eq(errno, EBADF);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(mkdir_p)
{
	char dir[] = "/tmp/roost-check-fdio-XXXXXX";
	char path[256], file[256], under_file[300], *failed = (char *)1;
	struct stat sb;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* every missing level is made, 0700; a second call finds them */
	snprintf(path, sizeof(path), "%s/a/b//c/", dir);
	ck_assert_int_eq(fdio_mkdir_p(path, &failed), 0);
	ck_assert_ptr_null(failed);
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));
	ck_assert_int_eq(sb.st_mode & 0777, 0700);
	ck_assert_int_eq(fdio_mkdir_p(path, NULL), 0);
	/* a file in the way: EIO, and the first level that could not be made
	 * (under the file) is named */
	snprintf(file, sizeof(file), "%s/f", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(under_file, sizeof(under_file), "%s/x/y", file);
	ck_assert_int_eq(fdio_mkdir_p(under_file, &failed), ROOST_EIO);
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(under_file, sizeof(under_file), "%s/x", file);
	ck_assert_str_eq(failed, under_file);
	free(failed);
	/* empty and over-long paths are refused before any mkdir */
	ck_assert_int_eq(fdio_mkdir_p("", NULL), ROOST_EINVAL);
	{
		char *longp = malloc(PATH_MAX + 8);

		memset(longp, 'a', PATH_MAX + 7);
		longp[0] = '/';
		longp[PATH_MAX + 7] = '\0';
		ck_assert_int_eq(fdio_mkdir_p(longp, NULL), ROOST_EINVAL);
		free(longp);
	}
	unlink(file);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a/b", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a", dir);
	rmdir(path);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("fdio");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, pipe_round_trip);
	tcase_add_test(tc, read_file_bounds);
	tcase_add_test(tc, read_all_appends);
	tcase_add_test(tc, spool_has_no_name);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, mkdir_p);
	suite_add_tcase(s, tc);
	return check_run(s);
}
