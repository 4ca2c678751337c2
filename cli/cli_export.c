/*
 * `roost export USER DEST [--format maildir|mbox] [--mailbox NAME]`: write
 * a user's mail out through the storage interface, as `roost import` reads
 * it back:
 *
 *   maildir (default)  DEST is a Maildir++ tree: INBOX in DEST, the others
 *                      in DEST/.Name.Sub; flags and keywords in file names
 *                      with dovecot-keywords, internal dates as mtimes, and
 *                      dovecot-uidlist with the UIDs and UIDVALIDITY, so
 *                      Dovecot (or an import into a new mailbox) serves the
 *                      same UIDs
 *   mbox               DEST is a directory of NAME.mbox files (Work/Sub is
 *                      DEST/Work/Sub.mbox), or with --mailbox one file;
 *                      mboxrd quoting, Status/X-Status/X-Keywords headers,
 *                      the internal date on the From_ line
 *
 * DEST must not exist (or be an empty directory): nothing is overwritten.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/mbox.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "cli_transfer.h"

struct export_ctx {
	struct storage *st;
	const char *user;
	const char *dest;
	bool mbox;
	bool single; /* --mailbox: DEST is the one file or Maildir */
	struct progress prog;
	uint64_t msgs, bytes, failed;
	size_t mailboxes;
};

/* The envelope sender for the From_ line: the Return-Path header's address. */
static void
sender_of(const uint8_t *data, size_t len, char *out, size_t outlen)
{
	size_t pos = 0;

	out[0] = '\0';
	while (pos < len) {
		const uint8_t *nl = memchr(data + pos, '\n', len - pos);
		size_t n = nl == NULL ? len - pos : (size_t)(nl - (data + pos));
		const char *p = (const char *)data + pos;

		if (n == 0 || (n == 1 && p[0] == '\r'))
			return; /* end of the header */
		if (n > 12 && strncasecmp(p, "Return-Path:", 12) == 0) {
			const char *lt = memchr(p, '<', n), *gt;

			if (lt != NULL && (gt = memchr(lt, '>', n - (size_t)(lt - p))) != NULL &&
			    gt > lt + 1 && (size_t)(gt - lt) < outlen) {
				memcpy(out, lt + 1, (size_t)(gt - lt - 1));
				out[gt - lt - 1] = '\0';
			}
			return;
		}
		pos += n + 1;
	}
}

static int
write_file(const char *path, const void *data, size_t len, int64_t mtime)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return ROOST_EIO;
	rc = fdio_write_all(fd, data, len);
	if (rc == 0 && mtime != 0) {
		struct timespec ts[2] = {{.tv_sec = (time_t)mtime}, {.tv_sec = (time_t)mtime}};

		if (futimens(fd, ts) < 0)
			rc = ROOST_EIO;
	}
	if (close(fd) < 0 && rc == 0)
		rc = ROOST_EIO;
	return rc;
}

/* Where mailbox name goes: a file (mbox) or a directory (maildir). */
static char *
dest_of(struct export_ctx *x, const char *name)
{
	struct buf b = BUF_INIT(0);

	buf_append_str(&b, x->dest);
	if (x->single) {
		/* DEST itself */
	} else if (x->mbox) {
		buf_printf(&b, "/%s.mbox", name);
	} else if (strcmp(name, "INBOX") != 0) {
		buf_append_byte(&b, '/');
		if (maildir_name_encode(name, &b) != 0) {
			buf_free(&b);
			return NULL;
		}
	}
	return (char *)buf_steal(&b, NULL);
}

static int
export_box(struct export_ctx *x, const char *name)
{
	struct mailbox *mb = NULL;
	struct mailbox_status s;
	struct msg_record *recs = NULL;
	const char *const *kwnames;
	size_t n = 0, nkw = 0;
	uint64_t hms;
	char *dest = dest_of(x, name);
	struct buf out = BUF_INIT(0), uidlist = BUF_INIT(0);
	FILE *mf = NULL;
	int rc;

	if (dest == NULL)
		return ROOST_EINVAL;
	if ((rc = mailbox_open(x->st, x->user, name, MAILBOX_READONLY, &mb)) != 0 ||
	    (rc = mailbox_status(mb, &s)) != 0 ||
	    (rc = mailbox_records(mb, &recs, &n, &hms)) != 0 ||
	    (rc = mailbox_keywords(mb, &kwnames, &nkw)) != 0)
		goto out;
	x->mailboxes++;
	if (x->mbox) {
		char *slash = strrchr(dest, '/');

		if (slash != NULL && slash != dest) {
			*slash = '\0';
			rc = fdio_mkdir_p(dest, NULL);
			*slash = '/';
			if (rc != 0)
				goto out;
		}
		if ((mf = fopen(dest, "wxe")) == NULL) {
			rc = ROOST_EIO;
			goto out;
		}
	} else {
		char path[4096];
		const char *subs[] = {"cur", "new", "tmp"};

		for (size_t i = 0; i < 3; i++) {
			snprintf(path, sizeof(path), "%s/%s", dest, subs[i]);
			if ((rc = fdio_mkdir_p(path, NULL)) != 0)
				goto out;
		}
		if (nkw > 0) {
			struct buf kw = BUF_INIT(0);

			for (size_t i = 0; i < nkw && i < 26; i++)
				buf_printf(&kw, "%zu %s\n", i, kwnames[i]);
			snprintf(path, sizeof(path), "%s/dovecot-keywords", dest);
			rc = write_file(path, kw.data, kw.len, 0);
			buf_free(&kw);
			if (rc != 0)
				goto out;
		}
		buf_printf(&uidlist, "3 V%" PRIu32 " N%" PRIu32 " G%016" PRIx64 "%016" PRIx64 "\n",
		           s.uidvalidity, s.uidnext, (uint64_t)time(NULL), hms);
	}
	for (size_t i = 0; i < n; i++) {
		struct msg_view v = {0};
		const char *kws[64];
		size_t k = 0;

		if ((rc = mailbox_read(mb, recs[i].uid, &v)) != 0) {
			if (rc != ROOST_ENOTFOUND) {
				fprintf(stderr, "roost export: %s: UID %u: %s\n", name, recs[i].uid,
				        roost_strerror(rc));
				x->failed++;
			}
			progress_step(&x->prog, recs[i].size);
			continue;
		}
		for (size_t b = 0; b < nkw && b < 64; b++) {
			if (recs[i].keywords & (1ULL << b))
				kws[k++] = kwnames[b];
		}
		if (x->mbox) {
			char sender[256];

			sender_of(v.data, v.len, sender, sizeof(sender));
			buf_reset(&out);
			rc = mbox_encode(&out, v.data, v.len, sender, recs[i].internal_date,
			                 recs[i].flags, kws, k);
			if (rc == 0 && fwrite(out.data, 1, out.len, mf) != out.len)
				rc = ROOST_EIO;
		} else {
			char base[128], letters[40], path[4096];

			snprintf(base, sizeof(base),
			         "%" PRId64 ".U%" PRIu32 "V%" PRIu32 ".roost,S=%zu",
			         recs[i].internal_date, recs[i].uid, s.uidvalidity, v.len);
			maildir_flags_letters(recs[i].flags, recs[i].keywords & ((1ULL << 26) - 1),
			                      letters);
			snprintf(path, sizeof(path), "%s/cur/%s:2,%s", dest, base, letters);
			rc = write_file(path, v.data, v.len, recs[i].internal_date);
			if (rc == 0)
				buf_printf(&uidlist, "%" PRIu32 " :%s\n", recs[i].uid, base);
		}
		msg_view_release(&v);
		if (rc != 0) {
			fprintf(stderr, "roost export: %s: cannot write UID %u: %s\n", name,
			        recs[i].uid, strerror(errno));
			goto out;
		}
		x->msgs++;
		x->bytes += recs[i].size;
		progress_step(&x->prog, recs[i].size);
	}
	if (!x->mbox) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/dovecot-uidlist", dest);
		rc = write_file(path, uidlist.data, uidlist.len, 0);
	}
out:
	if (mf != NULL && fclose(mf) != 0 && rc == 0)
		rc = ROOST_EIO;
	buf_free(&out);
	buf_free(&uidlist);
	free(recs);
	mailbox_close(&mb);
	free(dest);
	return rc;
}

static bool
dest_usable(const char *dest)
{
	struct stat sb;

	if (stat(dest, &sb) < 0)
		return errno == ENOENT;
	if (!S_ISDIR(sb.st_mode))
		return false;
	/* an empty directory */
	return rmdir(dest) == 0;
}

int
cli_export(struct cli *cli)
{
	const char *user = NULL, *dest = NULL, *mailbox = NULL, *format = "maildir";
	struct roost_config *cfg = NULL;
	struct export_ctx x = {0};
	struct mailbox_info *list = NULL;
	char canon[256];
	size_t nlist = 0;
	double secs;
	int rc;

	for (int i = 1; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if (strcmp(a, "--format") == 0 && i + 1 < cli->argc)
			format = cli->argv[++i];
		else if (strcmp(a, "--mailbox") == 0 && i + 1 < cli->argc)
			mailbox = cli->argv[++i];
		else if (a[0] == '-' && a[1] == '-')
			return cli_usage(cli);
		else if (user == NULL)
			user = a;
		else if (dest == NULL)
			dest = a;
		else
			return cli_usage(cli);
	}
	if (user == NULL || dest == NULL ||
	    (strcmp(format, "mbox") != 0 && strcmp(format, "maildir") != 0))
		return cli_usage(cli);
	x.mbox = strcmp(format, "mbox") == 0;
	x.single = mailbox != NULL;
	x.dest = dest;
	if (!dest_usable(dest)) {
		fprintf(stderr,
		        "roost export: %s exists: give a new path (nothing is overwritten)\n",
		        dest);
		return CLI_FAIL;
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if ((rc = cli_transfer_user(cfg, user, canon, sizeof(canon))) != 0) {
		fprintf(stderr, "roost export: %s: %s\n", user,
		        rc == ROOST_ENOTFOUND ? "no such user" : roost_strerror(rc));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if ((rc = storage_open(cfg, &x.st)) != 0) {
		fprintf(stderr, "roost export: cannot open the store: %s\n", roost_strerror(rc));
		config_free(&cfg);
		return CLI_FAIL;
	}
	x.user = canon;
	progress_start(&x.prog, "export");
	if (x.mbox && !x.single)
		rc = fdio_mkdir_p(dest, NULL);
	if (rc == 0)
		rc = storage_list(x.st, canon, &list, &nlist);
	for (size_t i = 0; rc == 0 && i < nlist; i++) {
		struct mailbox_status s;

		if ((list[i].attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)) != 0 ||
		    (mailbox != NULL && strcmp(list[i].name, mailbox) != 0))
			continue;
		if (storage_status(x.st, canon, list[i].name, &s) == 0)
			progress_total(&x.prog, s.messages, s.size);
	}
	for (size_t i = 0; rc == 0 && i < nlist; i++) {
		if ((list[i].attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)) != 0 ||
		    (mailbox != NULL && strcmp(list[i].name, mailbox) != 0))
			continue;
		if ((rc = export_box(&x, list[i].name)) != 0)
			fprintf(stderr, "roost export: %s: %s\n", list[i].name, roost_strerror(rc));
	}
	if (rc == 0 && mailbox != NULL && x.mailboxes == 0) {
		fprintf(stderr, "roost export: %s: no such mailbox\n", mailbox);
		rc = ROOST_ENOTFOUND;
	}
	storage_list_free(list, nlist);
	secs = progress_finish(&x.prog);
	printf("roost export: %s: %" PRIu64 " messages in %zu mailboxes, %.1f MB in %.1f s to %s "
	       "(%s)%s\n",
	       canon, x.msgs, x.mailboxes, (double)x.bytes / 1e6, secs, dest, format,
	       x.failed > 0 ? "; some messages could not be read" : "");
	storage_close(&x.st);
	config_free(&cfg);
	if (fflush(stdout) != 0)
		return CLI_FAIL;
	return rc == 0 && x.failed == 0 ? CLI_OK : CLI_FAIL;
}
