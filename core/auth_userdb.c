/*
 * The passwd file: parsing it into a sorted table, and the atomic edits
 * behind `roost user add|passwd|del`.
 *
 * Format (Dovecot's passwd-file): one user a line,
 *   user:{SCHEME}hash:uid:gid:gecos:home:shell:extra
 * of which the first two fields and the quota limits of the extra field
 * (auth.h) are used; blank lines and lines whose
 * first non-blank character is '#' are comments. Edits keep every other line
 * byte for byte, including comments and the extra fields of the edited user.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/utf8.h"
#include "roost/xalloc.h"

#include "auth_impl.h"

#define AUTH_MAX_FILE (256u << 20) /* bytes of a passwd file we are willing to edit */

bool
auth_user_name_valid(const char *name)
{
	const char *at = NULL;
	size_t len;

	if (name == NULL)
		return false;
	len = strnlen(name, AUTH_MAX_NAME + 1);
	if (len == 0 || len > AUTH_MAX_NAME || name[0] == '#' || name[0] == '.' ||
	    !utf8_text_valid(name, len))
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
		/* ':' splits fields; '/' and '\\' could escape a per-user directory;
		 * blanks and control characters have no place in an address. */
		if (*p < 0x21 || *p == 0x7f || *p == ':' || *p == '/' || *p == '\\')
			return false;
		if (*p == '@') {
			if (at != NULL)
				return false;
			at = (const char *)p;
		}
	}
	if (at != NULL && (at == name || at[1] == '\0' || at[1] == '.'))
		return false;
	return name[len - 1] != '.';
}

/* ---- parsing ---- */

int
auth_quota_parse_size(const char *s, uint64_t *v_r)
{
	uint64_t v = 0, mult = 1;

	if (*s < '0' || *s > '9')
		return ROOST_EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return ROOST_EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	switch (*s) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1ull << 10;
		s++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		s++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		s++;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		s++;
		break;
	default:
		return ROOST_EINVAL;
	}
	if (*s != '\0' || v > ((uint64_t)INT64_MAX) / mult)
		return ROOST_EINVAL;
	*v_r = v * mult;
	return 0;
}

/* A count of messages: digits only. */
static int
parse_count(const char *s, uint64_t *v_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return ROOST_EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > ((uint64_t)INT64_MAX - 9) / 10)
			return ROOST_EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*v_r = v;
	return 0;
}

/* Dovecot's "*:storage=N" (kilobytes without a suffix; b for bytes) or
 * "*:messages=N"; rules for other roots or with '%' are not ours. */
static void
dovecot_rule(const char *rule, int64_t *storage, int64_t *messages, bool *bad)
{
	uint64_t v;

	if (strncmp(rule, "*:", 2) != 0)
		return;
	rule += 2;
	if (strncmp(rule, "storage=", 8) == 0) {
		char num[32];
		size_t len = strlen(rule + 8);
		bool bytes = len > 0 && (rule[8 + len - 1] == 'b' || rule[8 + len - 1] == 'B');

		if (len == 0 || len >= sizeof(num)) {
			*bad = true;
			return;
		}
		memcpy(num, rule + 8, len + 1);
		if (bytes)
			num[len - 1] = '\0';
		else if (num[len - 1] >= '0' && num[len - 1] <= '9' && len + 1 < sizeof(num))
			memcpy(num + len, "K", 2);
		if (auth_quota_parse_size(num, &v) != 0)
			*bad = true;
		else
			*storage = (int64_t)v;
	} else if (strncmp(rule, "messages=", 9) == 0) {
		if (parse_count(rule + 9, &v) != 0)
			*bad = true;
		else
			*messages = (int64_t)v;
	}
}

/*
 * The quota limits of an extra field (space-separated key=value). quota_*
 * win over Dovecot's rules whatever their order. A bad value is logged and
 * ignored.
 */
static void
parse_extra(const char *path, unsigned lineno, const char *extra, struct userdb_entry *e)
{
	int64_t rs = AUTH_QUOTA_DEFAULT, rm = AUTH_QUOTA_DEFAULT;
	char *copy = xstrdup(extra), *save = NULL;
	bool bad = false;
	uint64_t v;

	e->quota_storage = e->quota_messages = AUTH_QUOTA_DEFAULT;
	for (char *tok = strtok_r(copy, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (strncmp(tok, "quota_storage=", 14) == 0) {
			if (auth_quota_parse_size(tok + 14, &v) != 0)
				bad = true;
			else
				e->quota_storage = (int64_t)v;
		} else if (strncmp(tok, "quota_messages=", 15) == 0) {
			if (parse_count(tok + 15, &v) != 0)
				bad = true;
			else
				e->quota_messages = (int64_t)v;
		} else if (strncmp(tok, "userdb_quota_rule=", 18) == 0) {
			dovecot_rule(tok + 18, &rs, &rm, &bad);
		}
	}
	if (e->quota_storage == AUTH_QUOTA_DEFAULT)
		e->quota_storage = rs;
	if (e->quota_messages == AUTH_QUOTA_DEFAULT)
		e->quota_messages = rm;
	if (bad)
		log_warn("event=userdb_load path=%s line=%u user=%s error=\"bad quota value "
		         "ignored\"",
		         path, lineno, LOG_QUOTE(e->name));
	free(copy);
}

/* The extra field of a line's fields after the hash (uid:gid:gecos:home:
 * shell:extra), or NULL when the line has none. */
static const char *
extra_field(const char *rest)
{
	for (int i = 0; i < 5 && rest != NULL; i++) {
		rest = strchr(rest, ':');
		if (rest != NULL)
			rest++;
	}
	return rest;
}

struct userdb *
userdb_new_empty(void)
{
	return xcalloc(1, sizeof(struct userdb));
}

void
userdb_free(struct userdb **db)
{
	if (*db == NULL)
		return;
	for (size_t i = 0; i < (*db)->n; i++) {
		free((*db)->v[i].name);
		if ((*db)->v[i].hash != NULL) {
			explicit_bzero((*db)->v[i].hash, strlen((*db)->v[i].hash));
			free((*db)->v[i].hash);
		}
	}
	free((*db)->v);
	free(*db);
	*db = NULL;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcasecmp(((const struct userdb_entry *)a)->name,
	                  ((const struct userdb_entry *)b)->name);
}

/* Is this line (without its newline) a comment or blank? */
static bool
line_is_comment(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i == len || s[i] == '#';
}

int
userdb_load(const char *path, struct userdb **db_r)
{
	struct userdb *db;
	char *line = NULL;
	size_t cap = 0, alloc = 0;
	unsigned lineno = 0;
	ssize_t n;
	FILE *f;
	int ret = 0;

	f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT)
			return ROOST_ENOTFOUND;
		log_error("event=userdb_load path=%s error=\"%s\"", path, strerror(errno));
		return ROOST_EIO;
	}
	db = userdb_new_empty();
	while ((n = getline(&line, &cap, f)) > 0) {
		size_t len = (size_t)n;
		char *colon, *hash, *end;

		lineno++;
		if (len > AUTH_MAX_LINE) {
			log_error("event=userdb_load path=%s line=%u error=\"line too long\"", path,
			          lineno);
			ret = ROOST_EINVAL;
			goto fail;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (memchr(line, '\0', len) != NULL) {
			log_error("event=userdb_load path=%s line=%u error=\"NUL byte\"", path,
			          lineno);
			ret = ROOST_EINVAL;
			goto fail;
		}
		if (line_is_comment(line, len))
			continue;
		colon = strchr(line, ':');
		if (colon == NULL) {
			log_error("event=userdb_load path=%s line=%u error=\"no ':' after the user "
			          "name\"",
			          path, lineno);
			ret = ROOST_EINVAL;
			goto fail;
		}
		*colon = '\0';
		if (!auth_user_name_valid(line)) {
			log_error("event=userdb_load path=%s line=%u error=\"invalid user name\"",
			          path, lineno);
			ret = ROOST_EINVAL;
			goto fail;
		}
		hash = colon + 1;
		end = strchr(hash, ':');
		if (end != NULL)
			*end = '\0';
		if (db->n == alloc) {
			alloc = alloc == 0 ? 64 : alloc * 2;
			db->v = xreallocarray(db->v, alloc, sizeof(db->v[0]));
		}
		db->v[db->n].name = xstrdup(line);
		db->v[db->n].hash = xstrdup(hash);
		parse_extra(path, lineno,
		            end != NULL && extra_field(end + 1) != NULL ? extra_field(end + 1) : "",
		            &db->v[db->n]);
		db->n++;
	}
	if (ferror(f)) {
		log_error("event=userdb_load path=%s error=\"%s\"", path, strerror(errno));
		ret = ROOST_EIO;
		goto fail;
	}
	if (db->n > 0)
		qsort(db->v, db->n, sizeof(db->v[0]), entry_cmp);
	for (size_t i = 1; i < db->n; i++) {
		if (strcasecmp(db->v[i - 1].name, db->v[i].name) == 0) {
			log_error("event=userdb_load path=%s user=%s error=\"duplicate user\"",
			          path, LOG_QUOTE(db->v[i].name));
			ret = ROOST_EINVAL;
			goto fail;
		}
	}
	if (line != NULL)
		explicit_bzero(line, cap);
	free(line);
	fclose(f);
	*db_r = db;
	return 0;
fail:
	if (line != NULL)
		explicit_bzero(line, cap);
	free(line);
	fclose(f);
	userdb_free(&db);
	return ret;
}

const struct userdb_entry *
userdb_find(const struct userdb *db, const char *user)
{
	struct userdb_entry key = {.name = (char *)user};

	if (db->n == 0)
		return NULL;
	return bsearch(&key, db->v, db->n, sizeof(db->v[0]), entry_cmp);
}

int
auth_file_list(const char *path, auth_list_fn *fn, void *arg)
{
	struct userdb *db;
	int ret;

	ret = userdb_load(path, &db);
	if (ret == ROOST_ENOTFOUND)
		return 0;
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < db->n; i++)
		fn(db->v[i].name, arg);
	userdb_free(&db);
	return 0;
}

/* ---- editing ---- */

enum edit_op { EDIT_ADD, EDIT_SET, EDIT_DEL, EDIT_QUOTA };

/* mkdir -p for the directory of the passwd file (0700: it holds hashes). */
static int
make_dirs(const char *dir)
{
	char *failed;
	int rc = fdio_mkdir_p(dir, &failed);

	if (rc == ROOST_EIO) {
		log_error("event=mkdir path=%s error=\"%s\"", failed, strerror(errno));
		free(failed);
	}
	return rc;
}

/* Rewrite path with new contents: temp file, fsync, rename, fsync the directory. */
static int
replace_file(const char *path, int dirfd, const struct buf *contents)
{
	size_t plen = strlen(path);
	char *tmp = xmalloc(plen + 16);
	int fd, ret = ROOST_EIO;

	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		log_error("event=passwd_write path=%s error=\"%s\"", tmp, strerror(errno));
		free(tmp);
		return ROOST_EIO;
	}
	/* Run as root (`sudo roost user add`), keep the file readable by the
	 * server's own user: the old file's owner, or the directory's. */
	if (geteuid() == 0) {
		struct stat st;

		if (stat(path, &st) == 0 || fstat(dirfd, &st) == 0) {
			if (fchown(fd, st.st_uid, st.st_gid) < 0)
				log_warn("event=passwd_chown path=%s error=\"%s\"", tmp,
				         strerror(errno));
		}
	}
	if (fchmod(fd, 0600) < 0 || fdio_write_all(fd, contents->data, contents->len) < 0 ||
	    fsync(fd) < 0) {
		log_error("event=passwd_write path=%s error=\"%s\"", tmp, strerror(errno));
		close(fd);
		goto fail;
	}
	if (close(fd) < 0) {
		log_error("event=passwd_write path=%s error=\"%s\"", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		log_error("event=passwd_rename path=%s error=\"%s\"", path, strerror(errno));
		goto fail;
	}
	if (fsync(dirfd) < 0)
		log_warn("event=passwd_dirsync path=%s error=\"%s\"", path, strerror(errno));
	free(tmp);
	return 0;
fail:
	unlink(tmp);
	free(tmp);
	return ret;
}

static bool
field_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == ':' || *s == '\n' || *s == '\r')
			return false;
	}
	return true;
}

/* Append one "key=value" token of the new extra field, a space before it
 * unless it is the first. */
static void
extra_token(struct buf *out, size_t start, const char *key, int64_t v)
{
	if (out->len > start)
		buf_append_byte(out, ' ');
	buf_printf(out, "%s=%lld", key, (long long)v);
}

/* A line with its quota fields replaced: the first seven fields as they
 * were (padded with empty ones), then the extra field without the quota_*
 * tokens being set, then their new values. */
static void
quota_line(struct buf *out, const char *line, size_t len, const struct auth_quota *q)
{
	size_t colons = 0, i, start;
	const char *extra = NULL;
	char *copy, *save = NULL;

	while (len > 0 && line[len - 1] == '\r')
		len--;
	for (i = 0; i < len; i++) {
		if (line[i] == ':' && ++colons == 7) {
			extra = line + i + 1;
			break;
		}
	}
	buf_append(out, line, extra != NULL ? (size_t)(extra - line) : len);
	for (; colons < 7; colons++)
		buf_append_byte(out, ':');
	start = out->len;
	copy = extra != NULL ? xstrndup(extra, len - (size_t)(extra - line)) : xstrdup("");
	for (char *tok = strtok_r(copy, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if ((q->storage != AUTH_QUOTA_KEEP && strncmp(tok, "quota_storage=", 14) == 0) ||
		    (q->messages != AUTH_QUOTA_KEEP && strncmp(tok, "quota_messages=", 15) == 0))
			continue;
		if (out->len > start)
			buf_append_byte(out, ' ');
		buf_append_str(out, tok);
	}
	free(copy);
	if (q->storage >= 0)
		extra_token(out, start, "quota_storage", q->storage);
	if (q->messages >= 0)
		extra_token(out, start, "quota_messages", q->messages);
	buf_append_byte(out, '\n');
}

static int
file_edit(const char *path, const char *user, enum edit_op op, const char *hash,
          const struct auth_quota *quota)
{
	struct buf old = BUF_INIT(AUTH_MAX_FILE), out = BUF_INIT(AUTH_MAX_FILE + AUTH_MAX_LINE);
	char *pathcopy, *dir, *real = NULL;
	bool found = false;
	int dirfd = -1, fd, ret;

	if (!auth_user_name_valid(user))
		return ROOST_EINVAL;
	if (hash != NULL && (!field_ok(hash) || strlen(hash) > AUTH_MAX_LINE / 2))
		return ROOST_EINVAL;
	/* A symlinked passwd file (shared with Dovecot, say) is edited where
	 * it really lives; the link stays. */
	pathcopy = realpath(path, NULL);
	if (pathcopy != NULL)
		path = real = pathcopy;
	pathcopy = xstrdup(path);
	dir = dirname(pathcopy);
	if (op == EDIT_ADD && (ret = make_dirs(dir)) < 0)
		goto out;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		log_error("event=passwd_open path=%s error=\"%s\"", dir, strerror(errno));
		ret = errno == ENOENT ? ROOST_ENOTFOUND : ROOST_EIO;
		goto out;
	}
	/* Serialise concurrent `roost user` runs on the directory: no lock file
	 * is left behind, and the rename below never races another edit. */
	if (flock(dirfd, LOCK_EX) < 0) {
		ret = ROOST_EIO;
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		log_error("event=passwd_open path=%s error=\"%s\"", path, strerror(errno));
		ret = ROOST_EIO;
		goto out;
	}
	if (fd >= 0) {
		ret = fdio_read_all(fd, &old);
		close(fd);
		if (ret < 0) {
			log_error("event=passwd_read path=%s error=\"%s\"", path,
			          ret == ROOST_ETOOBIG ? "file too large" : strerror(errno));
			goto out;
		}
	}

	for (size_t pos = 0; pos < old.len;) {
		const char *line = (const char *)old.data + pos;
		const char *nl = memchr(line, '\n', old.len - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) : old.len - pos;
		size_t next = pos + len + (nl != NULL);
		const char *colon = memchr(line, ':', len);

		if (!line_is_comment(line, len) && colon != NULL &&
		    (size_t)(colon - line) == strlen(user) &&
		    strncasecmp(line, user, strlen(user)) == 0) {
			found = true;
			if (op == EDIT_ADD) {
				ret = ROOST_EEXISTS;
				goto out;
			}
			if (op == EDIT_SET) {
				const char *rest =
				    memchr(colon + 1, ':', len - (size_t)(colon + 1 - line));

				/* Keep the file's spelling of the name and the other fields. */
				buf_append(&out, line, (size_t)(colon - line) + 1);
				buf_append_str(&out, hash);
				if (rest != NULL)
					buf_append(&out, rest, len - (size_t)(rest - line));
				buf_append_byte(&out, '\n');
			} else if (op == EDIT_QUOTA) {
				quota_line(&out, line, len, quota);
			}
			pos = next;
			continue;
		}
		if (buf_append(&out, line, next - pos) < 0) {
			ret = ROOST_ETOOBIG;
			goto out;
		}
		pos = next;
	}
	if (op != EDIT_ADD && !found) {
		ret = ROOST_ENOTFOUND;
		goto out;
	}
	if (op == EDIT_ADD) {
		if (out.len > 0 && out.data[out.len - 1] != '\n')
			buf_append_byte(&out, '\n');
		if (buf_printf(&out, "%s:%s::::::\n", user, hash) < 0) {
			ret = ROOST_ETOOBIG;
			goto out;
		}
	}
	ret = replace_file(path, dirfd, &out);
out:
	if (dirfd >= 0)
		close(dirfd); /* releases the lock */
	if (old.data != NULL)
		explicit_bzero(old.data, old.cap);
	if (out.data != NULL)
		explicit_bzero(out.data, out.cap);
	buf_free(&old);
	buf_free(&out);
	free(pathcopy);
	free(real);
	return ret;
}

int
auth_file_add(const char *path, const char *user, const char *hash)
{
	return file_edit(path, user, EDIT_ADD, hash, NULL);
}

int
auth_file_set_password(const char *path, const char *user, const char *hash)
{
	return file_edit(path, user, EDIT_SET, hash, NULL);
}

int
auth_file_delete(const char *path, const char *user)
{
	return file_edit(path, user, EDIT_DEL, NULL, NULL);
}

int
auth_file_set_quota(const char *path, const char *user, int64_t storage, int64_t messages)
{
	struct auth_quota q = {storage, messages};

	if (storage < AUTH_QUOTA_KEEP || messages < AUTH_QUOTA_KEEP)
		return ROOST_EINVAL;
	return file_edit(path, user, EDIT_QUOTA, NULL, &q);
}
