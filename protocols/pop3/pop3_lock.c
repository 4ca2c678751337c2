#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/pop3.h"

/*
 * The maildrop lock is flock(2) on one file per user. flock belongs to the
 * open file description, so two sessions of the same process (each opening
 * the file itself) exclude each other exactly as two processes do, and the
 * kernel drops the lock when the descriptor is closed or the process dies:
 * a lock can never go stale. The files are never unlinked, because removing
 * a lock file while another session waits on its descriptor would let a
 * third session lock a new file of the same name.
 */

#define LOCK_DIR "pop3-locks"
#define MAX_NAME 200 /* bytes of the escaped user name in the file name */

/* Map a user name to a file name: safe characters as they are, others as
 * %XX; very long names as a hash (FNV-1a 64) so the name stays short. */
static void
lock_file_name(const char *user, char *out, size_t outlen)
{
	size_t o = 0;
	const unsigned char *p;

	for (p = (const unsigned char *)user; *p != '\0'; p++) {
		bool safe = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		            (*p >= '0' && *p <= '9') || *p == '@' || *p == '-' || *p == '_' ||
		            *p == '+' || (*p == '.' && p != (const unsigned char *)user);

		if (o + 4 > MAX_NAME)
			break;
		if (safe) {
			out[o++] = (char)*p;
		} else {
			snprintf(out + o, 4, "%%%02X", *p);
			o += 3;
		}
	}
	if (*p != '\0') {
		uint64_t h = 1469598103934665603ULL;

		for (p = (const unsigned char *)user; *p != '\0'; p++) {
			h ^= *p;
			h *= 1099511628211ULL;
		}
		snprintf(out, outlen, "%%hash-%016llx", (unsigned long long)h);
		return;
	}
	out[o] = '\0';
}

int
pop3_lock_acquire(const char *data_dir, const char *user, int *fd_r)
{
	char name[MAX_NAME + 8];
	char path[4096];
	int fd, n;

	*fd_r = -1;
	n = snprintf(path, sizeof(path), "%s/%s", data_dir, LOCK_DIR);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		log_error("event=pop3_lock_failed error=\"data_dir too long\"");
		return ROOST_EIO;
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		log_error("event=pop3_lock_failed path=%s error=\"%s\"", path, strerror(errno));
		return ROOST_EIO;
	}
	lock_file_name(user, name, sizeof(name));
	n = snprintf(path, sizeof(path), "%s/%s/%s.lock", data_dir, LOCK_DIR, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		log_error("event=pop3_lock_failed error=\"path too long\"");
		return ROOST_EIO;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_error("event=pop3_lock_failed path=%s error=\"%s\"", path, strerror(errno));
		return ROOST_EIO;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		if (err == EINTR)
			continue;
		close(fd);
		if (err == EWOULDBLOCK)
			return ROOST_EINUSE;
		log_error("event=pop3_lock_failed path=%s error=\"%s\"", path, strerror(err));
		return ROOST_EIO;
	}
	*fd_r = fd;
	return 0;
}

void
pop3_lock_release(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}
