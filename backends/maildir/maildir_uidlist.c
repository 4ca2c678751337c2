/*
 * dovecot-uidlist: the UID of every file, in Dovecot's format so Dovecot
 * keeps serving the same UIDs and so do we with a Maildir Dovecot wrote.
 *
 *   header (version 3): 3 V<uidvalidity> N<nextuid> G<guid>
 *   record:             <uid> [<key><value> ...] :<file name base>
 *   (version 1, read only: "1 <uidvalidity> <nextuid>" / "<uid> <name>")
 *
 * Records ascend by UID. New records are appended under the lock, as
 * Dovecot does, so the header's N can lag behind the last record: the next
 * UID is the larger of N and the last UID + 1. Expunges rewrite the file
 * (temp file + rename).
 *
 * The lock is dovecot-uidlist.lock created with O_EXCL holding
 * "<pid>:<host>". A lock whose pid is dead on this host, or that has not
 * been touched for 2 minutes (Dovecot's stale timeout), is broken.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/hex.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define UIDLIST "dovecot-uidlist"
#define UIDLIST_LOCK "dovecot-uidlist.lock"
#define LOCK_STALE_SECS 120
#define LOCK_WAIT_SECS 60
#define LOCK_TOUCH_SECS 30
#define UIDLIST_MAX_SIZE (1024u * 1024 * 1024)

static bool
lock_is_stale(struct md_folder *f, const char *path)
{
	struct stat stb;
	char buf[300], *colon;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &stb) < 0) {
		close(fd);
		return false;
	}
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r > 0) {
		buf[r] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		colon = strchr(buf, ':');
		if (colon != NULL && strcmp(colon + 1, f->ms->hostname) == 0) {
			long pid = strtol(buf, NULL, 10);

			if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
				return true;
			if (pid > 0)
				return false;
		}
	}
	return stb.st_mtime + LOCK_STALE_SECS < time(NULL);
}

/*
 * The lock appears with its content already in it: a file in tmp/ holding
 * "<pid>:<host>" is hard-linked to the lock name (as Dovecot's dotlocks
 * do), so a process killed while taking the lock never leaves an empty
 * lock whose owner nobody can tell. The file is kept for the next lock
 * (creating files is the slow part) and touched before each use, so the
 * lock's mtime is fresh; one left by a killed process is removed by the
 * 36-hour tmp/ cleaning. "Fresh" is within LOCK_TOUCH_SECS, far inside
 * the 2 minutes after which others break a lock (ours is held for
 * milliseconds): a touch per lock was one more path walk per delivery.
 */
static int
lock_template(struct md_folder *f, const char **path_r)
{
	char content[300], base[200], tmpname[256];
	int fd, len;

	if (f->lock_tmpl != NULL && f->lock_tmpl_pid == getpid()) {
		time_t now = time(NULL);

		if (now - f->lock_tmpl_touched < LOCK_TOUCH_SECS && now >= f->lock_tmpl_touched) {
			*path_r = f->lock_tmpl;
			return 0;
		}
		if (utimensat(AT_FDCWD, f->lock_tmpl, NULL, 0) == 0) {
			f->lock_tmpl_touched = now;
			*path_r = f->lock_tmpl;
			return 0;
		}
	}
	if (f->lock_tmpl != NULL && f->lock_tmpl_pid == getpid())
		unlink(f->lock_tmpl);
	free(f->lock_tmpl);
	f->lock_tmpl = NULL;
	len = snprintf(content, sizeof(content), "%ld:%s\n", (long)getpid(), f->ms->hostname);
	md_unique_base(f->ms, 0, base, sizeof(base));
	snprintf(tmpname, sizeof(tmpname), "tmp/lock.%s", base);
	f->lock_tmpl = md_path(f->path, tmpname);
	f->lock_tmpl_pid = getpid();
	fd = open(f->lock_tmpl, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, content, (size_t)len) != len) {
		int err = md_errno_to_err(errno);

		log_error("event=storage_error backend=maildir op=create path=%s error=\"%s\"",
		          LOG_QUOTE(f->lock_tmpl), strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(f->lock_tmpl);
		}
		free(f->lock_tmpl);
		f->lock_tmpl = NULL;
		return err;
	}
	close(fd);
	f->lock_tmpl_touched = time(NULL);
	*path_r = f->lock_tmpl;
	return 0;
}

void
md_uidlist_lock_forget(struct md_folder *f)
{
	if (f->lock_tmpl != NULL && f->lock_tmpl_pid == getpid())
		unlink(f->lock_tmpl);
	free(f->lock_tmpl);
	f->lock_tmpl = NULL;
}

int
md_uidlist_lock(struct md_folder *f)
{
	char *path;
	const char *tmpl;
	struct timespec delay = {0, 500000};
	time_t deadline = time(NULL) + LOCK_WAIT_SECS;
	bool retried = false;
	int err;

	if (f->locked)
		return 0;
	if ((err = lock_template(f, &tmpl)) < 0)
		return err;
	path = md_path(f->path, UIDLIST_LOCK);
	for (;;) {
		if (link(tmpl, path) == 0) {
			f->locked = true;
			free(path);
			return 0;
		}
		if (errno == ENOENT && !retried) {
			/* the template went away (tmp/ cleaned by someone) */
			retried = true;
			md_uidlist_lock_forget(f);
			if ((err = lock_template(f, &tmpl)) < 0)
				break;
			continue;
		}
		if (errno != EEXIST) {
			err = md_errno_to_err(errno);
			log_error(
			    "event=storage_error backend=maildir op=link path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
			break;
		}
		if (lock_is_stale(f, path)) {
			log_warn("event=maildir_repair path=%s what=stale_lock action=broken",
			         LOG_QUOTE(path));
			unlink(path);
			continue;
		}
		if (time(NULL) > deadline) {
			log_error("event=storage_error backend=maildir op=lock path=%s "
			          "error=\"timed out\"",
			          LOG_QUOTE(path));
			err = ROOST_ETEMP;
			break;
		}
		nanosleep(&delay, NULL);
		if (delay.tv_nsec < 16000000)
			delay.tv_nsec *= 2;
	}
	free(path);
	return err;
}

void
md_uidlist_unlock(struct md_folder *f)
{
	char *path;

	if (f->quota_fd >= 0 || f->quota_file_fd >= 0) {
		(void)md_quota_end(f->ms, f->user, f->quota_fd, f->quota_file_fd, f->quota_bytes,
		                   f->quota_messages, true);
		f->quota_fd = f->quota_file_fd = -1;
	}
	f->quota_bytes = f->quota_messages = 0;
	if (!f->locked)
		return;
	path = md_path(f->path, UIDLIST_LOCK);
	if (unlink(path) < 0)
		log_warn("event=storage_error backend=maildir op=unlink path=%s error=\"%s\"",
		         LOG_QUOTE(path), strerror(errno));
	free(path);
	f->locked = false;
}

struct md_rec *
md_rec_append(struct md_folder *f, uint32_t uid)
{
	struct md_rec *r;

	if (f->n == f->cap) {
		f->cap = f->cap == 0 ? 64 : f->cap * 2;
		f->recs = xreallocarray(f->recs, f->cap, sizeof(*f->recs));
	}
	r = &f->recs[f->n++];
	memset(r, 0, sizeof(*r));
	r->uid = uid;
	return r;
}

static void
rec_append(struct md_folder *f, uint32_t uid, const char *name, size_t namelen, const char *ext,
           size_t extlen)
{
	struct md_rec *r = md_rec_append(f, uid);

	r->fname = xstrndup(name, namelen);
	r->baselen = (uint16_t)strcspn(r->fname, ":");
	r->ext = extlen > 0 ? xstrndup(ext, extlen) : NULL;
	r->in_new = true; /* until the scan finds it */
	/* ext fields are "<key><value>" separated by spaces */
	for (size_t i = 0, len; i < extlen; i += len + 1) {
		uint64_t v = 0;
		size_t k;

		for (len = 0; i + len < extlen && ext[i + len] != ' '; len++)
			;
		if (ext[i] == 'T' && len >= 2) {
			/* save date: decimal seconds, digits only */
			int64_t t = 0;

			for (k = 1; k < len && k <= 18 && ext[i + k] >= '0' && ext[i + k] <= '9';
			     k++)
				t = t * 10 + (ext[i + k] - '0');
			if (k == len)
				r->save_date = t;
			continue;
		}
		if (ext[i] != 'G' || len < 2 || r->emailid != 0)
			continue;
		for (k = 1; k < len && k <= 16 && hex_digit((unsigned char)ext[i + k]) >= 0; k++)
			v = v << 4 | (uint64_t)hex_digit((unsigned char)ext[i + k]);
		r->emailid = len == 17 && k == 17 && v != 0
		                 ? v
		                 : storage_derived_emailid(ext + i + 1, len - 1);
	}
}

uint64_t
md_rec_emailid(const struct md_rec *r)
{
	return r->emailid != 0 ? r->emailid : storage_derived_emailid(r->fname, r->baselen);
}

/*
 * Is the header of data[0..len) still the one f was read from? A folder
 * deleted and made again may get its uidlist's inode back, with a header
 * of the same length: only its UIDVALIDITY and GUID tell it apart.
 */
static bool
same_header(const struct md_folder *f, const char *data, size_t len)
{
	const char *nl = memchr(data, '\n', len);
	char want[64];
	int n;

	if (nl == NULL)
		return false;
	n = snprintf(want, sizeof(want), " V%" PRIu32 " ", f->uidvalidity);
	if (n <= 0 || memmem(data, (size_t)(nl - data), want, (size_t)n) == NULL)
		return false;
	n = snprintf(want, sizeof(want), " G%s", f->guid);
	return f->guid[0] == '\0' ||
	       (n > 0 && memmem(data, (size_t)(nl - data), want, (size_t)n) != NULL);
}

/* Parse complete lines of [p, end). Returns the bytes consumed. */
static size_t
parse_records(struct md_folder *f, const char *start, const char *end)
{
	const char *p = start, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		const char *q = p, *name = NULL, *ext = NULL;
		size_t extlen = 0;
		unsigned long uid;
		char *e;

		uid = strtoul(q, &e, 10);
		if (e == q || *e != ' ' || uid == 0 || uid >= UINT32_MAX) {
			log_warn("event=maildir_repair path=%s file=" UIDLIST
			         " what=bad_record action=skipped",
			         LOG_QUOTE(f->path));
			p = nl + 1;
			continue;
		}
		q = e + 1;
		if (f->uidlist_version == 1) {
			name = q;
		} else {
			const char *colon = memchr(q, ':', (size_t)(nl - q));

			/* ext fields are "<key><value>" separated by spaces and
			 * never contain ':' ; the name follows " :" */
			while (colon != NULL && colon > q && colon[-1] != ' ')
				colon = memchr(colon + 1, ':', (size_t)(nl - colon - 1));
			if (colon == NULL) {
				p = nl + 1;
				continue;
			}
			name = colon + 1;
			ext = q;
			extlen = (size_t)(colon - q);
			while (extlen > 0 && ext[extlen - 1] == ' ')
				extlen--;
		}
		if (name >= nl || (f->n > 0 && uid <= f->recs[f->n - 1].uid)) {
			log_warn("event=maildir_repair path=%s file=" UIDLIST
			         " what=record_out_of_order "
			         "uid=%lu action=skipped",
			         LOG_QUOTE(f->path), uid);
			p = nl + 1;
			continue;
		}
		rec_append(f, (uint32_t)uid, name, (size_t)(nl - name), ext, extlen);
		if (uid + 1 > f->nextuid)
			f->nextuid = (uint32_t)uid + 1;
		p = nl + 1;
	}
	return (size_t)(p - start);
}

static int
parse_header(struct md_folder *f, const char *p, const char *nl)
{
	char *e;

	if (nl - p >= 2 && p[0] == '1' && p[1] == ' ') {
		unsigned long v, n;

		v = strtoul(p + 2, &e, 10);
		n = strtoul(e, &e, 10);
		if (v == 0 || v > UINT32_MAX || n == 0 || n > UINT32_MAX)
			return ROOST_EIO;
		f->uidlist_version = 1;
		f->uidvalidity = (uint32_t)v;
		f->nextuid = (uint32_t)n;
		md_random_hex(f->guid, 16);
		return 0;
	}
	if (nl - p < 2 || p[0] != '3' || p[1] != ' ')
		return ROOST_EIO;
	f->uidlist_version = 3;
	f->guid[0] = '\0';
	p += 2;
	while (p < nl) {
		const char *sp = memchr(p, ' ', (size_t)(nl - p));
		const char *tok_end = sp != NULL ? sp : nl;

		if (p[0] == 'V' || p[0] == 'N') {
			unsigned long v = strtoul(p + 1, &e, 10);

			if (e != tok_end || v > UINT32_MAX)
				return ROOST_EIO;
			if (p[0] == 'V')
				f->uidvalidity = (uint32_t)v;
			else
				f->nextuid = (uint32_t)v;
		} else if (p[0] == 'G' && tok_end - p - 1 < (long)sizeof(f->guid)) {
			memcpy(f->guid, p + 1, (size_t)(tok_end - p - 1));
			f->guid[tok_end - p - 1] = '\0';
		}
		p = sp != NULL ? sp + 1 : nl;
	}
	if (f->uidvalidity == 0)
		return ROOST_EIO;
	if (f->nextuid == 0)
		f->nextuid = 1;
	if (f->guid[0] == '\0')
		md_random_hex(f->guid, 16);
	return 0;
}

/*
 * Bring f's records up to the file. When the file is the one we read
 * before and only grew, parse just the new lines; otherwise reread it all
 * (dropping the records, which the caller then refills from the index and
 * a directory scan). Returns 1 when the records were rebuilt, 0 when only
 * appended to (or nothing changed), ROOST_ENOTFOUND when there is no
 * uidlist, other errors.
 */
int
md_uidlist_read(struct md_folder *f)
{
	char *path = md_path(f->path, UIDLIST);
	struct md_file_id id;
	char *data = NULL;
	size_t len;
	const char *nl;
	int err, rebuilt = 0;

	err = md_file_id_at(f, UIDLIST, path, &id);
	if (err < 0)
		goto out;
	if (!id.exists) {
		err = ROOST_ENOTFOUND;
		goto out;
	}
	if (f->loaded && md_file_id_eq(&id, &f->uidlist_id)) {
		err = 0;
		goto out;
	}
	err = md_read_file(path, UIDLIST_MAX_SIZE, &data, &len);
	if (err < 0)
		goto out;
	if (f->loaded && f->uidlist_id.exists && id.dev == f->uidlist_id.dev &&
	    id.ino == f->uidlist_id.ino && (off_t)len >= f->uidlist_off && f->uidlist_off > 0 &&
	    data[f->uidlist_off - 1] == '\n' && same_header(f, data, len)) {
		/* appended to: the header is never changed in place */
		f->uidlist_off += (off_t)parse_records(f, data + f->uidlist_off, data + len);
		f->uidlist_id = id;
		err = 0;
		goto out;
	}
	/* reread from scratch */
	{
		md_folder_reset(f);
		nl = memchr(data, '\n', len);
		if (nl == NULL || parse_header(f, data, nl) < 0) {
			log_error("event=storage_error backend=maildir op=read path=%s "
			          "error=\"broken header\"",
			          LOG_QUOTE(path));
			err = ROOST_EIO;
			goto out;
		}
		f->uidlist_off = (off_t)(nl + 1 - data);
		f->uidlist_off += (off_t)parse_records(f, nl + 1, data + len);
		f->uidlist_id = id;
		rebuilt = 1;
	}
	err = rebuilt;
out:
	free(data);
	free(path);
	return err;
}

static void
append_record(struct buf *b, const struct md_rec *r)
{
	buf_printf(b, "%" PRIu32 "%s%s :%.*s\n", r->uid, r->ext != NULL ? " " : "",
	           r->ext != NULL ? r->ext : "", (int)r->baselen, r->fname);
}

/* Write what is pending: the whole file, or the new records appended. */
int
md_uidlist_write(struct md_folder *f, bool sync, int *fd_r)
{
	struct buf b = BUF_INIT(0);
	char *path = md_path(f->path, UIDLIST);
	size_t i;
	bool full;
	int err = 0;

	if (fd_r != NULL)
		*fd_r = -1;
	full = f->uidlist_rewrite || !f->uidlist_id.exists || f->uidlist_version != 3;
	if (full) {
		buf_printf(&b, "3 V%" PRIu32 " N%" PRIu32 " G%s\n", f->uidvalidity, f->nextuid,
		           f->guid);
		for (i = 0; i < f->n; i++)
			append_record(&b, &f->recs[i]);
		err = md_write_file(f->ms, f->path, UIDLIST, b.data, b.len, f->ms->fsync);
		if (err == 0) {
			f->uidlist_version = 3;
			f->uidlist_off = (off_t)b.len;
		}
	} else if (f->uidlist_append_from != 0) {
		int fd;

		for (i = 0; i < f->n; i++) {
			if (f->recs[i].uid >= f->uidlist_append_from)
				append_record(&b, &f->recs[i]);
		}
		fd = md_open_at(f, UIDLIST, path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (fd < 0) {
			err = md_errno_to_err(errno);
			log_error(
			    "event=storage_error backend=maildir op=open path=%s error=\"%s\"",
			    LOG_QUOTE(path), strerror(errno));
		} else {
			ssize_t w = write(fd, b.data, b.len);

			if (w != (ssize_t)b.len || (sync && f->ms->fsync && fdatasync(fd) < 0)) {
				log_error("event=storage_error backend=maildir op=append path=%s "
				          "error=\"%s\"",
				          LOG_QUOTE(path), w < 0 ? strerror(errno) : "short write");
				err = ROOST_EIO;
				/* a torn tail would be misparsed: rewrite */
				if (w > 0 && ftruncate(fd, f->uidlist_off) < 0)
					f->uidlist_rewrite = true;
			} else {
				f->uidlist_off += (off_t)b.len;
				md_file_id_fd(fd, &f->uidlist_id);
				/* the caller's, for its fdatasync */
				if (fd_r != NULL) {
					*fd_r = fd;
					fd = -1;
				}
			}
			if (fd >= 0)
				close(fd);
		}
	} else {
		goto out;
	}
	if (err == 0) {
		if (full) {
			f->uidlist_dead = 0;
			md_file_id_get(path, &f->uidlist_id);
		}
		f->uidlist_rewrite = false;
		f->uidlist_append_from = 0;
	}
out:
	buf_free(&b);
	free(path);
	return err;
}

int
md_uidlist_create(struct md_storage *ms, const char *dir, uint32_t uidvalidity)
{
	char guid[33], line[128];
	int len;

	md_random_hex(guid, 16);
	len = snprintf(line, sizeof(line), "3 V%" PRIu32 " N1 G%s\n", uidvalidity, guid);
	return md_write_file(ms, dir, UIDLIST, line, (size_t)len, ms->fsync);
}
