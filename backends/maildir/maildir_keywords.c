/*
 * Flags and keywords in file names. After ":2," come letters in ASCII
 * order: D draft, F flagged, P passed (kept, no IMAP flag), R replied
 * (\Answered), S seen, T trashed (\Deleted), then a-z for keywords. The
 * keyword of each letter is in dovecot-keywords, Dovecot's format: one
 * "<index> <name>" line per keyword, index 0 being 'a'. The file is
 * replaced through dovecot-keywords.lock (O_EXCL, then renamed over), which
 * is also the lock Dovecot takes to change it.
 */
#include <errno.h>
#include <strings.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define KEYWORDS "dovecot-keywords"
#define KEYWORDS_LOCK "dovecot-keywords.lock"

/* What an IMAP atom allows (the wrapper checks keywords we are given;
 * this guards against a file another program wrote). */
static bool
keyword_ok(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++) {
		unsigned char c = (unsigned char)*s;

		if (c <= ' ' || c >= 127 || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return n > 0 && n <= STORAGE_MAX_KEYWORD_LEN;
}

int
md_keywords_read(struct md_folder *f)
{
	char *path = md_path(f->path, KEYWORDS);
	struct md_file_id id;
	char *data = NULL, *line, *save = NULL;
	size_t len, i;
	int err;

	err = md_file_id_at(f, KEYWORDS, path, &id);
	if (err < 0)
		goto out;
	if (f->loaded && md_file_id_eq(&id, &f->kw_id))
		goto out;
	for (i = 0; i < MD_MAX_KEYWORDS; i++) {
		free(f->kw[i]);
		f->kw[i] = NULL;
	}
	f->n_kw = 0;
	f->kw_id = id;
	if (!id.exists)
		goto out;
	err = md_read_file(path, 1024 * 1024, &data, &len);
	if (err == ROOST_ENOTFOUND) {
		err = 0;
		goto out;
	} else if (err < 0) {
		goto out;
	}
	for (line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *e;
		unsigned long idx = strtoul(line, &e, 10);

		if (e == line || *e != ' ' || idx >= MD_MAX_KEYWORDS || !keyword_ok(e + 1))
			continue;
		free(f->kw[idx]);
		f->kw[idx] = xstrdup(e + 1);
		if (idx + 1 > f->n_kw)
			f->n_kw = idx + 1;
	}
out:
	free(data);
	free(path);
	return err;
}

int
md_keywords_write(struct md_folder *f)
{
	char *lock = md_path(f->path, KEYWORDS_LOCK);
	char *path = md_path(f->path, KEYWORDS);
	struct buf b = BUF_INIT(0);
	struct timespec delay = {0, 1000000};
	size_t i;
	int fd, tries = 0, err = 0;

	for (i = 0; i < f->n_kw; i++) {
		if (f->kw[i] != NULL)
			buf_printf(&b, "%zu %s\n", i, f->kw[i]);
	}
	for (;;) {
		fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
		if (++tries > 5000) {
			struct stat stb;

			if (stat(lock, &stb) == 0 && stb.st_mtime + 30 < time(NULL)) {
				unlink(lock);
				tries = 0;
				continue;
			}
			err = ROOST_ETEMP;
			goto out;
		}
		nanosleep(&delay, NULL);
	}
	if (fd < 0) {
		err = md_errno_to_err(errno);
		log_error("event=storage_error backend=maildir op=create path=%s error=\"%s\"",
		          LOG_QUOTE(lock), strerror(errno));
		goto out;
	}
	if (write(fd, b.data, b.len) != (ssize_t)b.len || (f->ms->fsync && fdatasync(fd) < 0)) {
		log_error("event=storage_error backend=maildir op=write path=%s error=\"%s\"",
		          LOG_QUOTE(lock), strerror(errno));
		close(fd);
		unlink(lock);
		err = ROOST_EIO;
		goto out;
	}
	close(fd);
	if (rename(lock, path) < 0) {
		err = md_errno_to_err(errno);
		log_error("event=storage_error backend=maildir op=rename path=%s error=\"%s\"",
		          LOG_QUOTE(lock), strerror(errno));
		unlink(lock);
		goto out;
	}
	md_file_id_get(path, &f->kw_id);
	f->kw_dirty = false;
out:
	buf_free(&b);
	free(lock);
	free(path);
	return err;
}

int
md_keyword_index(struct md_folder *f, const char *name, bool add)
{
	size_t i;

	for (i = 0; i < f->n_kw; i++) {
		if (f->kw[i] != NULL && strcasecmp(f->kw[i], name) == 0)
			return (int)i;
	}
	if (!add)
		return -1;
	for (i = 0; i < MD_MAX_KEYWORDS; i++) {
		if (f->kw[i] == NULL) {
			f->kw[i] = xstrdup(name);
			if (i + 1 > f->n_kw)
				f->n_kw = i + 1;
			f->kw_dirty = true;
			return (int)i;
		}
	}
	return -1;
}

static int
flag_of(char c)
{
	switch (c) {
	case 'D':
		return MSG_DRAFT;
	case 'F':
		return MSG_FLAGGED;
	case 'R':
		return MSG_ANSWERED;
	case 'S':
		return MSG_SEEN;
	case 'T':
		return MSG_DELETED;
	}
	return 0;
}

void
md_info_parse(struct md_folder *f, const char *info, uint32_t *flags_r, uint64_t *kw_r)
{
	uint32_t flags = 0;
	uint64_t kw = 0;

	for (; info != NULL && *info != '\0'; info++) {
		if (*info >= 'a' && *info <= 'z') {
			unsigned idx = (unsigned)(*info - 'a');

			if (idx < f->n_kw && f->kw[idx] != NULL)
				kw |= 1ull << idx;
		} else {
			flags |= (uint32_t)flag_of(*info);
		}
	}
	*flags_r = flags;
	*kw_r = kw;
}

char *
md_fname_build(const char *base, size_t baselen, uint32_t flags, uint64_t kw, const char *old_info)
{
	bool set[128] = {false};
	char *out;
	size_t n = baselen;
	int c;

	if (flags & MSG_DRAFT)
		set['D'] = true;
	if (flags & MSG_FLAGGED)
		set['F'] = true;
	if (flags & MSG_ANSWERED)
		set['R'] = true;
	if (flags & MSG_SEEN)
		set['S'] = true;
	if (flags & MSG_DELETED)
		set['T'] = true;
	for (c = 0; c < MD_MAX_KEYWORDS; c++) {
		if (kw & (1ull << c))
			set['a' + c] = true;
	}
	/* letters we do not manage (P, other tools' flags) stay */
	for (; old_info != NULL && *old_info != '\0'; old_info++) {
		c = (unsigned char)*old_info;
		if (c > ' ' && c < 127 && c != ',' && c != '/' && c != ':' &&
		    flag_of((char)c) == 0 && !(c >= 'a' && c <= 'z'))
			set[c] = true;
	}
	out = xmalloc(baselen + 3 + 128 + 1);
	memcpy(out, base, baselen);
	memcpy(out + n, ":2,", 3);
	n += 3;
	for (c = 33; c < 127; c++) {
		if (set[c])
			out[n++] = (char)c;
	}
	out[n] = '\0';
	return out;
}
