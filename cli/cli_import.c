/*
 * `roost import USER SOURCE [--mailbox NAME] [--format mboxrd|mboxo]
 *  [--password-file FILE]`: bring a user's mail in through the storage
 * interface (every backend alike), keeping flags, keywords, internal dates
 * and, where the source has them and the target mailbox is new, UIDs and
 * UIDVALIDITY. SOURCE is
 *
 *   an mbox file              into --mailbox (default INBOX)
 *   a directory of *.mbox     each file a mailbox ("Work/Sub.mbox" is
 *                             Work/Sub), as `roost export --format mbox`
 *                             writes them
 *   a Maildir or Maildir++    INBOX and its .Sub.Folders, flags from file
 *                             names, dovecot-keywords, dovecot-uidlist
 *   imap[s]://user@host[:port]  a running IMAP server (cli_import_imap.c)
 *
 * With --mailbox, a Maildir's or server's folders go under NAME (INBOX
 * becomes NAME itself). Running it again (after an interruption, or later
 * to catch up) stores only what is new: see struct import_box.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/mbox.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "cli_transfer.h"

/* A file mapped read-only (empty files map to nothing). */
struct mapped {
	const uint8_t *data;
	size_t len;
};

static int
map_file(const char *path, struct mapped *m)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	m->data = NULL;
	m->len = 0;
	if (fd < 0)
		return errno == ENOENT ? ROOST_ENOTFOUND : ROOST_EIO;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return ROOST_EINVAL;
	}
	if (sb.st_size > 0) {
		void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (p == MAP_FAILED) {
			close(fd);
			return ROOST_EIO;
		}
		m->data = p;
		m->len = (size_t)sb.st_size;
	}
	close(fd);
	return 0;
}

static void
unmap_file(struct mapped *m)
{
	if (m->len > 0)
		munmap((void *)m->data, m->len);
	m->data = NULL;
	m->len = 0;
}

static void
report_failure(const char *box, const char *what, int rc)
{
	fprintf(stderr, "roost import: %s: %s: %s\n", box, what, roost_strerror(rc));
}

/* Target name of a source folder: prefix (may be NULL) + name. */
static char *
target_name(const char *prefix, const char *name)
{
	size_t n;
	char *s;

	if (prefix == NULL)
		return xstrdup(name);
	if (strcmp(name, "INBOX") == 0)
		return xstrdup(prefix);
	n = strlen(prefix) + strlen(name) + 2;
	s = xmalloc(n);
	snprintf(s, n, "%s/%s", prefix, name);
	return s;
}

/* ---- mbox ---- */

static int
import_mbox_file(struct import_ctx *c, const char *path, const char *target,
                 enum mbox_format format)
{
	struct mapped m;
	struct mbox_reader r;
	struct mbox_entry e;
	struct import_box box;
	struct buf msg = BUF_INIT(0);
	struct mbox_meta meta;
	uint32_t uidvalidity = 0;
	uint64_t count = 0;
	size_t idx = 0;
	int rc;

	if ((rc = map_file(path, &m)) != 0) {
		fprintf(stderr, "roost import: %s: %s\n", path,
		        rc == ROOST_EINVAL ? "not a regular file" : strerror(errno));
		return rc;
	}
	if ((rc = mbox_reader_init(&r, m.data, m.len)) != 0) {
		fprintf(stderr, "roost import: %s: not an mbox file (no From_ line at the start)\n",
		        path);
		unmap_file(&m);
		return rc;
	}
	if (format == MBOX_FORMAT_AUTO)
		format = mbox_detect(m.data, m.len);
	/* First pass: count, and the UIDVALIDITY Dovecot or UW-IMAP wrote. */
	while (mbox_next(&r, &e) == 1) {
		if (count == 0) {
			buf_reset(&msg);
			(void)mbox_decode(e.raw, e.raw_len, format, &msg, &meta);
			uidvalidity = meta.uidvalidity;
			mbox_meta_free(&meta);
		}
		count++;
	}
	progress_total(&c->prog, count, m.len);
	if ((rc = import_box_begin(c, target, uidvalidity, &box)) != 0) {
		report_failure(target, "cannot open or create the mailbox", rc);
		buf_free(&msg);
		unmap_file(&m);
		return rc;
	}
	(void)mbox_reader_init(&r, m.data, m.len);
	while (mbox_next(&r, &e) == 1) {
		struct import_msg im = {0};
		char what[64];

		idx++;
		buf_reset(&msg);
		rc = mbox_decode(e.raw, e.raw_len, format, &msg, &meta);
		if (rc == 0 && !meta.pseudo) {
			im.data = msg.data != NULL ? msg.data : (const uint8_t *)"";
			im.len = msg.len;
			im.flags = meta.flags;
			im.keywords = (const char *const *)meta.keywords;
			im.n_keywords = meta.n_keywords;
			im.date = e.date;
			im.src_uid = uidvalidity != 0 ? meta.uid : 0;
			rc = import_box_add(&box, &im);
		}
		if (rc < 0) {
			snprintf(what, sizeof(what), "message %zu (offset %zu)", idx, e.offset);
			report_failure(target, what, rc);
			c->failed++;
		}
		progress_step(&c->prog, e.raw_len + e.from_len + 1);
		mbox_meta_free(&meta);
	}
	import_box_end(&box);
	buf_free(&msg);
	unmap_file(&m);
	return 0;
}

/* A directory of *.mbox files, subdirectories for the hierarchy. */
static int
import_mbox_tree(struct import_ctx *c, const char *dir, const char *rel, const char *prefix,
                 enum mbox_format format, size_t *found)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort), rc = 0;

	if (n < 0)
		return ROOST_EIO;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		size_t len = strlen(name);
		char path[4096], sub[4096];
		struct stat sb;

		if (name[0] == '.' ||
		    snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
		    stat(path, &sb) < 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] != '\0' ? "/" : "", name);
			import_mbox_tree(c, path, sub, prefix, format, found);
		} else if (S_ISREG(sb.st_mode) && len > 5 && strcmp(name + len - 5, ".mbox") == 0) {
			char *target;

			snprintf(sub, sizeof(sub), "%s%s%.*s", rel, rel[0] != '\0' ? "/" : "",
			         (int)(len - 5), name);
			target = target_name(prefix, sub);
			(*found)++;
			if (import_mbox_file(c, path, target, format) != 0)
				rc = ROOST_EIO;
			free(target);
		}
	}
	for (int i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	return rc;
}

/* ---- Maildir ---- */

struct md_file {
	char *path;
	char *base; /* name up to ':' */
	uint32_t uid;
	uint32_t flags;
	uint64_t kwbits;
	int64_t mtime;
	uint64_t size;
};

struct md_uid {
	char *base;
	uint32_t uid;
};

static int
md_uid_cmp(const void *a, const void *b)
{
	return strcmp(((const struct md_uid *)a)->base, ((const struct md_uid *)b)->base);
}

static int
md_file_cmp(const void *a, const void *b)
{
	const struct md_file *x = a, *y = b;

	/* By UID, files the uidlist does not know last, by name. */
	if (x->uid != y->uid) {
		if (x->uid == 0 || y->uid == 0)
			return x->uid == 0 ? 1 : -1;
		return x->uid < y->uid ? -1 : 1;
	}
	return strcmp(x->base, y->base);
}

/* dovecot-uidlist: version 3 ("3 V<uv> N<next> ...", "<uid> [ext] :<base>")
 * or 1 ("1 <uv> <next>", "<uid> <base>"). A file that does not parse
 * gives no UIDs (the import then goes by content). */
static uint32_t
read_uidlist(const char *dir, struct md_uid **uids_r, size_t *n_r)
{
	char path[4096];
	FILE *f;
	char *line = NULL;
	size_t cap = 0, n = 0, alloc = 0;
	ssize_t len;
	uint32_t uidvalidity = 0;
	int version = 0;
	struct md_uid *v = NULL;

	*uids_r = NULL;
	*n_r = 0;
	snprintf(path, sizeof(path), "%s/dovecot-uidlist", dir);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while ((len = getline(&line, &cap, f)) > 0) {
		char *p = line, *end, *base;
		unsigned long uid;

		line[strcspn(line, "\r\n")] = '\0';
		if (version == 0) {
			version = (int)strtol(line, &p, 10);
			if (version == 3) {
				char *vv = strstr(p, " V");

				if (vv != NULL)
					uidvalidity = (uint32_t)strtoul(vv + 2, NULL, 10);
			} else if (version == 1) {
				uidvalidity = (uint32_t)strtoul(p, NULL, 10);
			} else {
				break;
			}
			if (uidvalidity == 0)
				break;
			continue;
		}
		uid = strtoul(line, &end, 10);
		if (end == line || uid == 0 || uid > UINT32_MAX || *end != ' ') {
			uidvalidity = 0; /* damaged: do not trust any of it */
			break;
		}
		if (version == 3) {
			base = strstr(end, " :");
			if (base == NULL) {
				uidvalidity = 0;
				break;
			}
			base += 2;
		} else {
			base = end + 1;
		}
		if (n == alloc) {
			alloc = alloc == 0 ? 256 : alloc * 2;
			v = xreallocarray(v, alloc, sizeof(*v));
		}
		v[n].base = xstrdup(base);
		v[n].uid = (uint32_t)uid;
		n++;
	}
	free(line);
	fclose(f);
	if (uidvalidity == 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i].base);
		free(v);
		return 0;
	}
	if (n > 1) /* qsort(NULL, 0) is undefined */
		qsort(v, n, sizeof(*v), md_uid_cmp);
	*uids_r = v;
	*n_r = n;
	return uidvalidity;
}

/* dovecot-keywords: "<index> <name>" per line. */
static void
read_keywords(const char *dir, char *names[26])
{
	char path[4096], line[512];
	FILE *f;

	memset(names, 0, 26 * sizeof(char *));
	snprintf(path, sizeof(path), "%s/dovecot-keywords", dir);
	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *end, *name;
		long k = strtol(line, &end, 10);

		line[strcspn(line, "\r\n")] = '\0';
		if (end == line || *end != ' ' || k < 0 || k >= 26)
			continue;
		name = end + 1;
		if (storage_keyword_valid(name)) {
			free(names[k]);
			names[k] = xstrdup(name);
		}
	}
	fclose(f);
}

static void
scan_sub(const char *dir, const char *sub, const struct md_uid *uids, size_t n_uids,
         struct md_file **files, size_t *n, size_t *alloc)
{
	char path[4096];
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct md_file *mf;
		struct md_uid key, *hit;
		struct stat sb;
		char file[4096];
		const char *colon;

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(file, sizeof(file), "%s/%s", path, de->d_name) >= (int)sizeof(file) ||
		    stat(file, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (*n == *alloc) {
			*alloc = *alloc == 0 ? 256 : *alloc * 2;
			*files = xreallocarray(*files, *alloc, sizeof(**files));
		}
		mf = &(*files)[(*n)++];
		memset(mf, 0, sizeof(*mf));
		mf->path = xstrdup(file);
		colon = strchr(de->d_name, ':');
		mf->base = colon != NULL ? xstrndup(de->d_name, (size_t)(colon - de->d_name))
		                         : xstrdup(de->d_name);
		if (colon != NULL && strncmp(colon, ":2,", 3) == 0)
			mf->flags = maildir_letters_flags(colon + 3, &mf->kwbits);
		mf->mtime = sb.st_mtime;
		mf->size = (uint64_t)sb.st_size;
		key.base = mf->base;
		hit = n_uids > 0 ? bsearch(&key, uids, n_uids, sizeof(*uids), md_uid_cmp) : NULL;
		mf->uid = hit != NULL ? hit->uid : 0;
	}
	closedir(d);
}

static int
import_maildir_folder(struct import_ctx *c, const char *dir, const char *target)
{
	struct md_uid *uids;
	struct md_file *files = NULL;
	size_t n_uids, n = 0, alloc = 0;
	char *kwnames[26];
	uint32_t uidvalidity = read_uidlist(dir, &uids, &n_uids);
	struct import_box box;
	uint64_t bytes = 0;
	int rc;

	read_keywords(dir, kwnames);
	scan_sub(dir, "cur", uids, n_uids, &files, &n, &alloc);
	scan_sub(dir, "new", uids, n_uids, &files, &n, &alloc);
	if (n > 1)
		qsort(files, n, sizeof(*files), md_file_cmp);
	for (size_t i = 0; i < n; i++)
		bytes += files[i].size;
	progress_total(&c->prog, n, bytes);
	rc = import_box_begin(c, target, uidvalidity, &box);
	if (rc != 0)
		report_failure(target, "cannot open or create the mailbox", rc);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct md_file *mf = &files[i];
		const char *kws[26];
		struct import_msg im = {0};
		struct mapped m;
		int e;

		if ((e = map_file(mf->path, &m)) == 0) {
			im.data = m.data != NULL ? m.data : (const uint8_t *)"";
			im.len = m.len;
			im.flags = mf->flags;
			im.date = mf->mtime;
			im.src_uid = mf->uid;
			for (int k = 0; k < 26; k++) {
				if ((mf->kwbits & (1ULL << k)) && kwnames[k] != NULL)
					kws[im.n_keywords++] = kwnames[k];
			}
			im.keywords = kws;
			if (!import_box_has_uid(&box, mf->uid))
				e = import_box_add(&box, &im);
			else
				c->skipped++;
			unmap_file(&m);
		} else if (e == ROOST_ENOTFOUND) {
			e = 0; /* moved by a reader of the source meanwhile */
		}
		if (e < 0) {
			report_failure(target, mf->path, e);
			c->failed++;
		}
		progress_step(&c->prog, mf->size);
	}
	import_box_end(&box);
	for (size_t i = 0; i < n; i++) {
		free(files[i].path);
		free(files[i].base);
	}
	free(files);
	for (size_t i = 0; i < n_uids; i++)
		free(uids[i].base);
	free(uids);
	for (int k = 0; k < 26; k++)
		free(kwnames[k]);
	return rc;
}

static bool
is_maildir(const char *dir)
{
	char path[4096];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/cur", dir);
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return true;
	snprintf(path, sizeof(path), "%s/new", dir);
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int
import_maildir(struct import_ctx *c, const char *root, const char *prefix)
{
	struct dirent **ents;
	int n, rc = 0;
	char *target;

	if (is_maildir(root)) {
		target = target_name(prefix, "INBOX");
		if (import_maildir_folder(c, root, target) != 0)
			rc = ROOST_EIO;
		free(target);
	}
	if ((n = scandir(root, &ents, NULL, alphasort)) < 0)
		return ROOST_EIO;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		struct buf dec = BUF_INIT(8192);
		char path[4096];

		if (name[0] != '.' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
		    snprintf(path, sizeof(path), "%s/%s", root, name) >= (int)sizeof(path) ||
		    !is_maildir(path)) {
			free(ents[i]);
			continue;
		}
		if (maildir_name_decode(name, &dec) != 0 || !storage_name_valid(buf_cstr(&dec))) {
			fprintf(stderr, "roost import: %s: folder name not usable, skipped\n",
			        path);
			rc = ROOST_EINVAL;
		} else {
			target = target_name(prefix, buf_cstr(&dec));
			if (import_maildir_folder(c, path, target) != 0)
				rc = ROOST_EIO;
			free(target);
		}
		buf_free(&dec);
		free(ents[i]);
	}
	free(ents);
	return rc;
}

/* ---- the command ---- */

/* The user as the passwd file spells it; unknown users are refused. */
int
cli_transfer_user(const struct roost_config *cfg, const char *user, char *name_r, size_t len)
{
	struct auth *auth = NULL;
	int rc = auth_open(cfg, &auth);

	if (rc == 0)
		rc = auth_lookup(auth, user, name_r, len);
	auth_free(&auth);
	return rc;
}

int
cli_import(struct cli *cli)
{
	const char *user = NULL, *source = NULL, *mailbox = NULL, *pwfile = NULL;
	enum mbox_format format = MBOX_FORMAT_AUTO;
	struct roost_config *cfg = NULL;
	struct import_ctx c = {0};
	char canon[AUTH_MAX_NAME + 1];
	struct stat sb;
	double secs;
	int rc;

	for (int i = 1; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if ((strcmp(a, "--mailbox") == 0 || strcmp(a, "--format") == 0 ||
		     strcmp(a, "--password-file") == 0) &&
		    i + 1 < cli->argc) {
			const char *v = cli->argv[++i];

			if (a[2] == 'm')
				mailbox = v;
			else if (a[2] == 'p')
				pwfile = v;
			else if (strcmp(v, "mboxrd") == 0)
				format = MBOX_FORMAT_MBOXRD;
			else if (strcmp(v, "mboxo") == 0)
				format = MBOX_FORMAT_MBOXO;
			else if (strcmp(v, "auto") != 0)
				return cli_usage(cli);
		} else if (strcmp(a, "--insecure") == 0) {
			import_imap_insecure = true;
		} else if (a[0] == '-' && a[1] == '-') {
			return cli_usage(cli);
		} else if (user == NULL) {
			user = a;
		} else if (source == NULL) {
			source = a;
		} else {
			return cli_usage(cli);
		}
	}
	if (user == NULL || source == NULL)
		return cli_usage(cli);
	if (mailbox != NULL && !storage_name_valid(mailbox)) {
		fprintf(stderr, "roost import: --mailbox %s: not a valid mailbox name\n", mailbox);
		return CLI_USAGE;
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if ((rc = cli_transfer_user(cfg, user, canon, sizeof(canon))) != 0) {
		fprintf(stderr, "roost import: %s: %s\n", user,
		        rc == ROOST_ENOTFOUND ? "no such user (roost user add first)"
		                              : roost_strerror(rc));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if ((rc = storage_open(cfg, &c.st)) != 0) {
		fprintf(stderr, "roost import: cannot open the store: %s\n", roost_strerror(rc));
		config_free(&cfg);
		return CLI_FAIL;
	}
	c.user = canon;
	(void)storage_user_init(c.st, canon);
	progress_start(&c.prog, "import");
	if (strncmp(source, "imap://", 7) == 0 || strncmp(source, "imaps://", 8) == 0) {
		rc = import_imap(&c, source, mailbox, pwfile);
	} else if (stat(source, &sb) < 0) {
		fprintf(stderr, "roost import: %s: %s\n", source, strerror(errno));
		rc = ROOST_ENOTFOUND;
	} else if (S_ISREG(sb.st_mode)) {
		rc = import_mbox_file(&c, source, mailbox != NULL ? mailbox : "INBOX", format);
	} else if (S_ISDIR(sb.st_mode) && is_maildir(source)) {
		rc = import_maildir(&c, source, mailbox);
	} else if (S_ISDIR(sb.st_mode)) {
		size_t found = 0;

		rc = import_maildir(&c, source, mailbox);
		if (c.mailboxes == 0) {
			rc = import_mbox_tree(&c, source, "", mailbox, format, &found);
			if (found == 0) {
				fprintf(
				    stderr,
				    "roost import: %s: neither a Maildir nor a directory of .mbox "
				    "files\n",
				    source);
				rc = ROOST_EINVAL;
			}
		}
	} else {
		fprintf(stderr, "roost import: %s: not a file or directory\n", source);
		rc = ROOST_EINVAL;
	}
	secs = progress_finish(&c.prog);
	printf("roost import: %s: %" PRIu64 " messages in %zu mailboxes: %" PRIu64
	       " stored, %" PRIu64 " already there, %" PRIu64 " failed; %.1f MB stored in %.1f s\n",
	       canon, c.added + c.skipped + c.failed, c.mailboxes, c.added, c.skipped, c.failed,
	       (double)c.bytes_added / 1e6, secs);
	storage_close(&c.st);
	config_free(&cfg);
	if (fflush(stdout) != 0)
		return CLI_FAIL;
	return rc == 0 && c.failed == 0 ? CLI_OK : CLI_FAIL;
}
