/*
 * Maildir-specific tests, through the backend's ops table: file names,
 * dovecot-uidlist and dovecot-keywords formats, changes made by other
 * programs, the Dovecot fixture (tests/data/maildir-dovecot), and Dovecot
 * reading what we wrote (when /usr/sbin/dovecot exists). What every
 * backend must do is in the shared conformance suite (check_storage.c).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "../../backends/maildir/maildir.h"

#include "check_run.h"

static const struct storage_ops *ops = &storage_maildir_ops;
static char datadir[256];
static struct roost_config cfg;
static struct storage *st;

#define USER "alice@example.com"

static void
rm_rf(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "rm -rf %s failed\n", path);
}

static void
store_open(void)
{
	ck_assert_int_eq(ops->open(&cfg, &st), 0);
	st->ops = ops;
	st->cfg = &cfg;
}

static void
store_close(void)
{
	ops->close(st);
	st = NULL;
}

static void
setup(void)
{
	snprintf(datadir, sizeof(datadir), "/tmp/roost-check-maildir.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(datadir));
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = datadir;
	cfg.hostname = (char *)"test.host";
	cfg.storage_fsync = true;
	cfg.expunge_log_retention = 30 * 24 * 3600;
	store_open();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
}

static void
teardown(void)
{
	if (st != NULL)
		store_close();
	rm_rf(datadir);
}

static char *
upath(const char *rel)
{
	char *p = xmalloc(strlen(datadir) + strlen(rel) + 64);

	sprintf(p, "%s/maildir/" USER "/%s", datadir, rel);
	return p;
}

static struct mailbox *
mbox(const char *name)
{
	struct mailbox *mb = NULL;

	ck_assert_int_eq(ops->mailbox_open(st, USER, name, 0, &mb), 0);
	mb->st = st;
	return mb;
}

/* ops->copy, the results handed back as mailbox_copy() hands them */
static int
op_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
        uint32_t **src_r, uint32_t **dst_r, size_t *n_r)
{
	struct copy_result res = {0};
	int rc = ops->copy(mb, uids, n, dest, move, &res);

	if (rc != 0)
		storage_copy_result_free(&res);
	*src_r = res.src;
	*dst_r = res.dst;
	*n_r = res.n;
	return rc;
}

static uint32_t
append(struct mailbox *mb, const char *text, uint32_t flags, const char *const *kws, size_t nkw)
{
	struct msg_input in = {.data = (const uint8_t *)text,
	                       .len = strlen(text),
	                       .fd = -1,
	                       .flags = flags,
	                       .keywords = kws,
	                       .n_keywords = nkw};
	uint32_t uid = 0;

	ck_assert_int_eq(ops->append(mb, &in, &uid), 0);
	return uid;
}

/* Names of the files in dir, one per call slot; returns how many. */
static size_t
list_files(const char *dir, char names[][256], size_t max)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = xcalloc(1, 1 << 20);

	ck_assert_ptr_nonnull(fp);
	if (fread(buf, 1, (1 << 20) - 1, fp) == 0)
		buf[0] = '\0';
	fclose(fp);
	return buf;
}

/* ---- names ---- */

START_TEST(name_encoding)
{
	static const char *const names[] = {
	    "a",
	    "a/b",
	    "a.b",
	    "a%b",
	    "100%/x.y",
	    "Entw\xc3\xbcrfe",
	    "\xe6\x97\xa5\xe6\x9c\xac/x",
	    "&",
	    "A&B",
	    "\xf0\x9f\x98\x80 smile",
	    "..x",
	    "x..",
	    "%2E",
	    "-&-",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *enc = md_name_encode(names[i]);
		char *dec = md_name_decode(enc);

		ck_assert_msg(strchr(enc, '/') == NULL, "%s -> %s", names[i], enc);
		ck_assert_msg(dec != NULL && strcmp(dec, names[i]) == 0, "%s -> %s -> %s", names[i],
		              enc, dec != NULL ? dec : "(null)");
		free(enc);
		free(dec);
	}
	{
		char *a = md_name_encode("a.b"), *b = md_name_encode("a/b");

		ck_assert_str_eq(a, ".a%2eb"); /* Dovecot's spelling */
		ck_assert_str_eq(b, ".a.b");
		free(a);
		free(b);
	}
	{
		char *e = md_name_encode("Entw\xc3\xbcrfe");

		ck_assert_str_eq(e, ".Entw&APw-rfe"); /* Dovecot's spelling */
		free(e);
	}
	/* not ours: non-canonical or broken spellings are not listed */
	ck_assert_ptr_null(md_name_decode(".a%2Eb"));
	ck_assert_ptr_null(md_name_decode(".&AGE-"));
	ck_assert_ptr_null(md_name_decode(".a..b"));
	ck_assert_ptr_null(md_name_decode(".INBOX"));
	ck_assert_ptr_null(md_name_decode(".x&Jjo"));
}
END_TEST

START_TEST(layout_and_listing)
{
	struct mailbox_info *list;
	size_t n, i;
	struct stat stb;
	char *p;

	ck_assert_int_eq(ops->create(st, USER, "a.b", 0), 0);
	ck_assert_int_eq(ops->create(st, USER, "a/b", 0), 0);
	ck_assert_int_eq(ops->create(st, USER, "x/y/z", 0), 0);
	ck_assert_int_eq(ops->create(st, USER, "a/b", 0), ROOST_EEXISTS);
	p = upath(".a%2eb/cur");
	ck_assert_int_eq(stat(p, &stb), 0);
	free(p);
	p = upath(".a.b/dovecot-uidlist");
	ck_assert_int_eq(stat(p, &stb), 0);
	free(p);
	p = upath(".Sent/roost-specialuse");
	ck_assert_int_eq(stat(p, &stb), 0);
	free(p);
	ck_assert_int_eq(ops->list(st, USER, &list, &n), 0);
	{
		static const char *const want[] = {"Archive", "Drafts", "INBOX", "Junk",
		                                   "Sent",    "Trash",  "a",     "a.b",
		                                   "a/b",     "x",      "x/y",   "x/y/z"};

		ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
		for (i = 0; i < n; i++)
			ck_assert_str_eq(list[i].name, want[i]);
	}
	for (i = 0; i < n; i++) {
		if (strcmp(list[i].name, "Sent") == 0)
			ck_assert(list[i].attrs & MBOX_SENT);
		if (strcmp(list[i].name, "a") == 0)
			ck_assert(list[i].attrs & MBOX_HASCHILDREN);
		if (strcmp(list[i].name, "a.b") == 0)
			ck_assert(list[i].attrs & MBOX_HASNOCHILDREN);
	}
	for (i = 0; i < n; i++)
		free(list[i].name);
	free(list);

	/* delete a parent: children stay, it becomes \Noselect */
	ck_assert_int_eq(ops->delete (st, USER, "x"), 0);
	ck_assert_int_eq(ops->delete (st, USER, "x"), ROOST_EPERM); /* \Noselect parent */
	ck_assert_int_eq(ops->list(st, USER, &list, &n), 0);
	for (i = 0; i < n; i++) {
		if (strcmp(list[i].name, "x") == 0)
			ck_assert(list[i].attrs & MBOX_NOSELECT);
		free(list[i].name);
	}
	free(list);

	/* rename moves children */
	ck_assert_int_eq(ops->rename(st, USER, "x/y", "q"), 0);
	p = upath(".q.z/cur");
	ck_assert_int_eq(stat(p, &stb), 0);
	free(p);
	ck_assert_int_eq(ops->rename(st, USER, "q", "a.b"), ROOST_EEXISTS);
	ck_assert_int_eq(ops->rename(st, USER, "nope", "zz"), ROOST_ENOTFOUND);
}
END_TEST

/* ---- files ---- */

START_TEST(file_names_and_formats)
{
	static const char *const kws[] = {"$Label1", "Work"};
	struct mailbox *mb = mbox("INBOX");
	char names[8][256], *dir, *text, *p;
	const char *const *kwnames;
	size_t n, nk;
	uint32_t u1, u2, u3;
	struct stat stb;

	u1 = append(mb, "Subject: one\r\n\r\nbody\r\n", 0, NULL, 0);
	u2 = append(mb, "Subject: two\r\n\r\nbody\r\n", MSG_SEEN | MSG_FLAGGED, kws, 2);
	u3 = append(mb, "Subject: three\r\n\r\nbody\r\n", MSG_DELETED | MSG_ANSWERED | MSG_DRAFT,
	            kws + 1, 1);
	ck_assert_uint_eq(u1, 1);
	ck_assert_uint_eq(u2, 2);
	ck_assert_uint_eq(u3, 3);

	/* unflagged in new/, flagged in cur/ with sorted letters */
	dir = upath("new");
	n = list_files(dir, names, 8);
	ck_assert_uint_eq(n, 1);
	ck_assert_msg(fnmatch("*.M*P*Q*.test.host,S=22", names[0], 0) == 0, "%s", names[0]);
	free(dir);
	dir = upath("cur");
	n = list_files(dir, names, 8);
	ck_assert_uint_eq(n, 2);
	ck_assert(fnmatch("*,S=22:2,FSab", names[0], 0) == 0 ||
	          fnmatch("*,S=22:2,FSab", names[1], 0) == 0);
	ck_assert(fnmatch("*,S=24:2,DRTb", names[0], 0) == 0 ||
	          fnmatch("*,S=24:2,DRTb", names[1], 0) == 0);
	free(dir);

	/* dovecot-keywords */
	p = upath("dovecot-keywords");
	text = slurp(p);
	ck_assert_str_eq(text, "0 $Label1\n1 Work\n");
	free(text);
	free(p);
	ck_assert_int_eq(ops->keywords(mb, &kwnames, &nk), 0);
	ck_assert_uint_eq(nk, 2);
	ck_assert_str_eq(kwnames[1], "Work");

	/* dovecot-uidlist: version 3 header, records with the base name */
	p = upath("dovecot-uidlist");
	text = slurp(p);
	ck_assert_msg(fnmatch("3 V[0-9]* N[0-9]* G[0-9a-f]*\n1 G[0-9a-f]* :*.test.host,S=22\n"
	                      "2 G[0-9a-f]* :*.test.host,S=22\n3 G[0-9a-f]* :*.test.host,S=24\n",
	                      text, 0) == 0,
	              "%s", text);
	ck_assert_ptr_null(strstr(text, ":2,"));
	free(text);

	/* an expunge leaves the record (as Dovecot does) until dead records
	 * pile up; a fresh reader knows it from the expunge log */
	{
		uint32_t e[] = {2};
		struct msg_record *recs;
		size_t nr;
		uint64_t hm;

		ck_assert_int_eq(ops->expunge(mb, e, 1), 0);
		ops->mailbox_close(mb);
		store_close();
		store_open();
		mb = mbox("INBOX");
		ck_assert_int_eq(ops->records(mb, &recs, &nr, &hm), 0);
		ck_assert_uint_eq(nr, 2);
		ck_assert_uint_eq(recs[0].uid, 1);
		ck_assert_uint_eq(recs[1].uid, 3);
		free(recs);
	}
	free(p);
	/* many expunges rewrite it without them */
	{
		uint32_t e[300];
		size_t i;

		for (i = 0; i < 300; i++)
			e[i] = append(mb, "x\r\n", 0, NULL, 0);
		ck_assert_int_eq(ops->expunge(mb, e, 300), 0);
	}
	p = upath("dovecot-uidlist");
	text = slurp(p);
	ck_assert_msg(fnmatch("3 V[0-9]* N304 G[0-9a-f]*\n1 G* :*\n3 G* :*\n", text, 0) == 0, "%s",
	              text);
	free(text);
	free(p);
	ck_assert_uint_eq(append(mb, "y\r\n", 0, NULL, 0), 304);
	/* our index beside it */
	p = upath("roost-index");
	ck_assert_int_eq(stat(p, &stb), 0);
	free(p);
	ops->mailbox_close(mb);
}
END_TEST

START_TEST(read_zero_copy_roundtrip)
{
	struct mailbox *mb = mbox("INBOX");
	struct msg_view v;
	uint8_t bin[4096];
	struct msg_input in = {
	    .data = bin, .len = sizeof(bin), .fd = -1, .internal_date = 1700000000};
	struct msg_record *recs;
	size_t i, n;
	uint64_t ms;
	uint32_t uid;

	for (i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 7 + (i >> 8));
	ck_assert_int_eq(ops->append(mb, &in, &uid), 0);
	ck_assert_int_eq(ops->read(mb, uid, &v), 0);
	ck_assert_uint_eq(v.len, sizeof(bin));
	ck_assert_int_eq(memcmp(v.data, bin, sizeof(bin)), 0);
	v.release(&v);
	ck_assert_ptr_null(v.release);
	ck_assert_int_eq(ops->read(mb, 999, &v), ROOST_ENOTFOUND);
	ck_assert_int_eq(ops->records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(recs[0].internal_date, 1700000000);
	ck_assert_uint_eq(recs[0].size, sizeof(bin));
	free(recs);

	/* from a spooled file */
	{
		char tmpl[] = "/tmp/roost-spool.XXXXXX";
		int fd = mkstemp(tmpl);
		struct msg_input fin = {.fd = fd, .len = 1000};

		ck_assert_int_ge(fd, 0);
		unlink(tmpl);
		ck_assert_int_eq(write(fd, bin, 1000), 1000);
		ck_assert_int_eq(ops->append(mb, &fin, &uid), 0);
		close(fd);
		ck_assert_int_eq(ops->read(mb, uid, &v), 0);
		ck_assert_uint_eq(v.len, 1000);
		ck_assert_int_eq(memcmp(v.data, bin, 1000), 0);
		v.release(&v);
	}
	ops->mailbox_close(mb);
}
END_TEST

/* ---- other programs ---- */

/* As an MDA delivers: written in tmp/, then renamed into place, so no
 * scan sees it half written. */
static void
put_file(const char *rel, const char *text)
{
	char *p = upath(rel), *tmp = upath("tmp/put_file");
	FILE *fp = fopen(tmp, "w");

	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(rename(tmp, p), 0);
	free(tmp);
	free(p);
}

/* Directory mtimes are trusted once they are older than the clock's
 * granularity; make ours look old so the test proves the mtime check
 * rather than the dirty window. */
static void
age_dirs(void)
{
	struct timeval tv[2];
	const char *subs[] = {"new", "cur"};
	size_t i;

	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= 10;
	tv[1] = tv[0];
	for (i = 0; i < 2; i++) {
		char *p = upath(subs[i]);

		ck_assert_int_eq(utimes(p, tv), 0);
		free(p);
	}
}

START_TEST(external_changes)
{
	struct mailbox *mb = mbox("INBOX");
	struct msg_record *recs;
	struct mailbox_changes ch;
	size_t n;
	uint64_t m0, m1;
	char names[4][256], *dir, *from, *to;

	append(mb, "Subject: one\r\n\r\n", 0, NULL, 0);
	append(mb, "Subject: two\r\n\r\n", MSG_SEEN, NULL, 0);
	age_dirs();
	ck_assert_int_eq(ops->records(mb, &recs, &n, &m0), 0);
	ck_assert_uint_eq(n, 2);
	free(recs);

	/* an MDA drops a file into new/ */
	put_file("new/1700000000.P1Q1.other", "Subject: dropped\r\n\r\nhi\r\n");
	ck_assert_int_eq(ops->records(mb, &recs, &n, &m1), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(recs[2].uid, 3);
	ck_assert_uint_gt(recs[2].modseq, m0);
	ck_assert_uint_eq(recs[2].size, 24);
	ck_assert_uint_gt(m1, m0);
	free(recs);

	/* mutt marks message 2 flagged and 1 seen (moving it to cur/) */
	dir = upath("cur");
	ck_assert_uint_eq(list_files(dir, names, 4), 1);
	from = xmalloc(2000);
	to = xmalloc(2000);
	snprintf(from, 2000, "%s/%s", dir, names[0]);
	snprintf(to, 2000, "%s/%.*sFS", dir, (int)(strlen(names[0]) - 1), names[0]);
	ck_assert_int_eq(rename(from, to), 0);
	free(dir);
	dir = upath("new");
	ck_assert_uint_eq(list_files(dir, names, 4), 2);
	{
		size_t i;

		for (i = 0; i < 2; i++) {
			if (strstr(names[i], "other") != NULL)
				continue;
			snprintf(from, 2000, "%s/%s", dir, names[i]);
			snprintf(to, 2000, "%s/../cur/%s:2,S", dir, names[i]);
			ck_assert_int_eq(rename(from, to), 0);
		}
	}
	free(dir);
	ck_assert_int_eq(ops->changes_since(mb, m1, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 2);
	ck_assert_uint_eq(ch.changed[0].uid, 1);
	ck_assert_uint_eq(ch.changed[0].flags, MSG_SEEN);
	ck_assert_uint_eq(ch.changed[1].uid, 2);
	ck_assert_uint_eq(ch.changed[1].flags, MSG_SEEN | MSG_FLAGGED);
	ck_assert_uint_eq(ch.n_expunged, 0);
	m0 = ch.highestmodseq;
	mailbox_changes_free(&ch);

	/* and deletes the dropped one */
	dir = upath("new");
	ck_assert_uint_eq(list_files(dir, names, 4), 1);
	snprintf(from, 2000, "%s/%s", dir, names[0]);
	ck_assert_int_eq(unlink(from), 0);
	free(dir);
	ck_assert_int_eq(ops->changes_since(mb, m0, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 0);
	ck_assert_uint_eq(ch.n_expunged, 1);
	ck_assert_uint_eq(ch.expunged[0], 3);
	ck_assert(ch.expunged_complete);
	ck_assert_uint_gt(ch.highestmodseq, m0);
	mailbox_changes_free(&ch);
	free(from);
	free(to);

	/* UIDs are never reused */
	ck_assert_uint_eq(append(mb, "x\r\n", 0, NULL, 0), 4);
	ops->mailbox_close(mb);
}
END_TEST

START_TEST(tmp_cleanup)
{
	struct timeval tv[2];
	struct stat stb;
	struct mailbox *mb;
	char *old, *fresh;

	put_file("tmp/old-file", "x");
	put_file("tmp/fresh-file", "x");
	old = upath("tmp/old-file");
	fresh = upath("tmp/fresh-file");
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= 37 * 3600;
	tv[1] = tv[0];
	ck_assert_int_eq(utimes(old, tv), 0);
	/* a fresh process sees the folder for the first time */
	store_close();
	store_open();
	mb = mbox("INBOX");
	ck_assert_int_eq(stat(old, &stb), -1);
	ck_assert_int_eq(stat(fresh, &stb), 0);
	ops->mailbox_close(mb);
	free(old);
	free(fresh);
}
END_TEST

START_TEST(stale_lock_broken)
{
	struct mailbox *mb = mbox("INBOX");
	char *p = upath("dovecot-uidlist.lock");
	char content[64];
	pid_t pid = fork();
	struct stat stb;

	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	/* a lock left by a process that died */
	snprintf(content, sizeof(content), "%d:test.host\n", (int)pid);
	put_file("dovecot-uidlist.lock", content);
	ck_assert_uint_eq(append(mb, "x\r\n", 0, NULL, 0), 1);
	ck_assert_int_eq(stat(p, &stb), -1);
	free(p);
	ops->mailbox_close(mb);
}
END_TEST

START_TEST(index_rebuilt_keeps_uids)
{
	struct mailbox *mb = mbox("INBOX");
	struct mailbox_status s0, s1;
	struct msg_record *recs;
	size_t n;
	uint64_t ms;
	char *p;
	FILE *fp;

	append(mb, "a\r\n", 0, NULL, 0);
	append(mb, "b\r\n", MSG_SEEN, NULL, 0);
	append(mb, "c\r\n", 0, NULL, 0);
	{
		uint32_t e[] = {2};

		ck_assert_int_eq(ops->expunge(mb, e, 1), 0);
	}
	ck_assert_int_eq(ops->mailbox_status(mb, &s0), 0);
	ops->mailbox_close(mb);
	store_close();

	/* corrupt the index */
	p = upath("roost-index");
	fp = fopen(p, "r+");
	ck_assert_ptr_nonnull(fp);
	fputs("garbage garbage garbage", fp);
	fclose(fp);
	free(p);
	store_open();
	mb = mbox("INBOX");
	ck_assert_int_eq(ops->mailbox_status(mb, &s1), 0);
	ck_assert_uint_eq(s1.uidvalidity, s0.uidvalidity);
	ck_assert_uint_eq(s1.uidnext, s0.uidnext);
	ck_assert_uint_eq(s1.messages, 2);
	ck_assert_uint_ge(s1.highestmodseq, s0.highestmodseq);
	ck_assert_int_eq(ops->records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(recs[0].uid, 1);
	ck_assert_uint_eq(recs[1].uid, 3);
	free(recs);
	ops->mailbox_close(mb);
	store_close();

	/* and without one */
	p = upath("roost-index");
	ck_assert_int_eq(unlink(p), 0);
	free(p);
	store_open();
	mb = mbox("INBOX");
	ck_assert_int_eq(ops->mailbox_status(mb, &s1), 0);
	ck_assert_uint_eq(s1.uidnext, s0.uidnext);
	ck_assert_uint_eq(s1.messages, 2);
	ck_assert_uint_eq(append(mb, "d\r\n", 0, NULL, 0), 4);
	ops->mailbox_close(mb);
}
END_TEST

/* ---- body once ---- */

START_TEST(deliver_links_body_once)
{
	struct delivery_target t[3] = {
	    {.user = USER, .mailbox = "INBOX"},
	    {.user = "bob@example.com", .mailbox = "INBOX"},
	    {.user = "carol@example.com", .mailbox = "INBOX"},
	};
	const char *text = "Subject: hi all\r\n\r\nbody\r\n";
	struct msg_input in = {.data = (const uint8_t *)text, .len = strlen(text), .fd = -1};
	char names[4][256], *dir, path[700];
	struct stat stb;
	struct mailbox *mb;
	uint32_t *su, *du;
	size_t n;

	/* The wrapper sets up new users; the backend only delivers. */
	ck_assert_int_eq(ops->deliver(st, &in, &t[1], 1), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_user_init(st, "bob@example.com"), 0);
	ck_assert_int_eq(storage_user_init(st, "carol@example.com"), 0);
	ck_assert_int_eq(ops->deliver(st, &in, t, 3), 0);
	ck_assert_int_eq(t[0].uid, 1);
	ck_assert_int_eq(t[1].uid, 1);
	ck_assert_int_eq(t[2].result, 0);
	dir = upath("new");
	ck_assert_uint_eq(list_files(dir, names, 4), 1);
	snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
	ck_assert_int_eq(stat(path, &stb), 0);
	ck_assert_uint_eq(stb.st_nlink, 3);
	free(dir);

	/* copy is a hard link too */
	mb = mbox("INBOX");
	{
		uint32_t u[] = {1};

		ck_assert_int_eq(op_copy(mb, u, 1, "Archive", false, &su, &du, &n), 0);
	}
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(du[0], 1);
	free(su);
	free(du);
	ck_assert_int_eq(stat(path, &stb), 0);
	ck_assert_uint_eq(stb.st_nlink, 4);
	ops->mailbox_close(mb);
}
END_TEST

/* ---- concurrency ---- */

struct thr {
	struct mailbox *mb;
	uint32_t uids[40];
};

static void *
appender(void *arg)
{
	struct thr *t = arg;
	size_t i;

	for (i = 0; i < 40; i++) {
		char text[64];
		struct msg_input in = {.data = (const uint8_t *)text, .fd = -1};

		snprintf(text, sizeof(text), "Subject: %zu\r\n\r\n", i);
		in.len = strlen(text);
		if (ops->append(t->mb, &in, &t->uids[i]) != 0)
			t->uids[i] = 0;
		if (i % 5 == 4) {
			struct store_req req = {.mode = STORE_ADD, .flags = MSG_SEEN};
			struct store_result res = {0};

			ops->store(t->mb, &t->uids[i], 1, &req, &res);
			storage_store_result_free(&res);
		}
	}
	return NULL;
}

START_TEST(threads_and_processes)
{
	struct thr t[8];
	pthread_t th[8];
	struct msg_record *recs;
	size_t i, j, n;
	uint64_t ms;
	pid_t kids[2];
	struct mailbox *mb;

	/* two processes with their own store on the same directory */
	for (i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			struct storage *cst;
			struct mailbox *cmb;
			struct thr ct;

			if (storage_maildir_ops.open(&cfg, &cst) != 0)
				_exit(1);
			cst->ops = ops;
			if (ops->mailbox_open(cst, USER, "INBOX", 0, &cmb) != 0)
				_exit(1);
			cmb->st = cst;
			ct.mb = cmb;
			appender(&ct);
			for (j = 0; j < 40; j++) {
				if (ct.uids[j] == 0)
					_exit(2);
			}
			ops->mailbox_close(cmb);
			ops->close(cst);
			_exit(0);
		}
	}
	for (i = 0; i < 8; i++) {
		t[i].mb = mbox("INBOX");
		pthread_create(&th[i], NULL, appender, &t[i]);
	}
	for (i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 2; i++) {
		int status;

		waitpid(kids[i], &status, 0);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	mb = mbox("INBOX");
	ck_assert_int_eq(ops->records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 400);
	for (i = 0; i < n; i++)
		ck_assert_uint_eq(recs[i].uid, i + 1);
	for (i = 0; i < 8; i++) {
		for (j = 0; j < 40; j++)
			ck_assert_uint_ne(t[i].uids[j], 0);
		ops->mailbox_close(t[i].mb);
	}
	free(recs);
	ops->mailbox_close(mb);
	{
		struct buf report = BUF_INIT(0);

		ck_assert_msg(ops->check(st, &report) == 0, "%s", buf_cstr(&report));
		buf_free(&report);
	}
}
END_TEST

/* ---- inotify: other programs wake IDLE ---- */

static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static int woken;

static void
on_change(void *arg)
{
	pthread_mutex_lock(&wlock);
	woken++;
	pthread_mutex_unlock(&wlock);
}

static void
reset_woken(void)
{
	pthread_mutex_lock(&wlock);
	woken = 0;
	pthread_mutex_unlock(&wlock);
}

static bool
wait_woken(void)
{
	int i, n = 0;

	for (i = 0; i < 500 && n == 0; i++) {
		usleep(10000);
		pthread_mutex_lock(&wlock);
		n = woken;
		pthread_mutex_unlock(&wlock);
	}
	return n > 0;
}

START_TEST(external_change_wakes_watchers)
{
	struct roost_config *c = config_defaults();
	struct storage *pst;
	struct mailbox *mb;
	struct storage_watch *w;
	struct msg_record *recs;
	size_t n;
	uint64_t ms;
	char names[4][256], *dir, from[1200], to[1200];

	store_close();
	free(c->data_dir);
	c->data_dir = xstrdup(datadir);
	free(c->storage_backend);
	c->storage_backend = xstrdup("maildir");
	ck_assert_int_eq(storage_open(c, &pst), 0);
	ck_assert_int_eq(mailbox_open(pst, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(storage_watch(pst, USER, "INBOX", on_change, NULL, &w), 0);

	/* procmail drops a message */
	reset_woken();
	put_file("new/1700000000.P7Q7.procmail", "Subject: dropped\r\n\r\n");
	ck_assert_msg(wait_woken(), "not woken by a file dropped into new/");
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 1);
	free(recs);

	/* mutt flags it */
	reset_woken();
	dir = upath("new");
	ck_assert_uint_eq(list_files(dir, names, 4), 1);
	snprintf(from, sizeof(from), "%s/%s", dir, names[0]);
	snprintf(to, sizeof(to), "%s/../cur/%s:2,FS", dir, names[0]);
	free(dir);
	ck_assert_int_eq(rename(from, to), 0);
	ck_assert_msg(wait_woken(), "not woken by a flag rename");
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN | MSG_FLAGGED);
	free(recs);

	/* and deletes it */
	reset_woken();
	ck_assert_int_eq(unlink(to), 0);
	ck_assert_msg(wait_woken(), "not woken by a deletion");
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 0);
	free(recs);

	storage_unwatch(&w);
	mailbox_close(&mb);
	storage_close(&pst);
	config_free(&c);
}
END_TEST

/*
 * A folder nobody has open stays cached with its inotify watch (a session
 * opening it just after another's EXPUNGE trusts the last scan at once):
 * another program's change to it is still found by the watch thread (which
 * records it in dovecot-uidlist and wakes the mailbox's watchers), and a
 * folder removed and made again behind it is read afresh, not taken for
 * the one that was scanned.
 */
START_TEST(closed_folder_keeps_watch)
{
	struct roost_config *c = config_defaults();
	struct storage *pst;
	struct mailbox *mb;
	struct msg_record *recs;
	struct msg_input in = {.data = (const uint8_t *)"Subject: ours\r\n\r\n", .fd = -1};
	size_t n;
	uint64_t ms;
	uint32_t uid;
	bool found = false;
	char *udir = upath(""), *uidlist = upath("dovecot-uidlist"), cmd[1200];

	store_close();
	free(c->data_dir);
	c->data_dir = xstrdup(datadir);
	free(c->storage_backend);
	c->storage_backend = xstrdup("maildir");
	in.len = strlen((const char *)in.data);
	ck_assert_int_eq(storage_open(c, &pst), 0);
	ck_assert_int_eq(mailbox_open(pst, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_append(mb, &in, &uid), 0);
	mailbox_close(&mb);

	/* closed: procmail drops a message; the watch thread records it */
	put_file("new/1700000000.P8Q8.procmail", "Subject: dropped\r\n\r\n");
	for (int i = 0; i < 3000 && !found; i++) {
		char *text = slurp(uidlist);

		found = strstr(text, "P8Q8.procmail") != NULL;
		free(text);
		if (!found)
			usleep(10000);
	}
	ck_assert_msg(found, "a closed folder's watch did not record a file dropped into new/");
	ck_assert_int_eq(mailbox_open(pst, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 2);
	free(recs);
	mailbox_close(&mb);

	/* another program removes the maildir and makes a new one holding
	 * one message of its own, no uidlist */
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && rm -rf cur new tmp dovecot-uidlist dovecot-keywords roost-index "
	         "roost-cache && mkdir cur new tmp",
	         udir);
	ck_assert_int_eq(system(cmd), 0);
	put_file("cur/1700000001.P9Q9.mutt:2,S", "Subject: theirs\r\n\r\n");
	ck_assert_int_eq(mailbox_open(pst, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN);
	free(recs);
	mailbox_close(&mb);

	/* the same with a folder's own directory (which a sync reaches
	 * through a descriptor kept open): renamed away, another made in
	 * its place with two messages */
	ck_assert_int_eq(storage_create(pst, USER, "Sub", 0), 0);
	ck_assert_int_eq(mailbox_open(pst, USER, "Sub", 0, &mb), 0);
	ck_assert_int_eq(mailbox_append(mb, &in, &uid), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 1);
	free(recs);
	mailbox_close(&mb);
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && mv .Sub .Gone && mkdir .Sub .Sub/cur .Sub/new .Sub/tmp", udir);
	ck_assert_int_eq(system(cmd), 0);
	put_file(".Sub/cur/1700000002.P1Q1.mutt:2,S", "Subject: a\r\n\r\n");
	put_file(".Sub/new/1700000003.P2Q2.mutt", "Subject: b\r\n\r\n");
	ck_assert_int_eq(mailbox_open(pst, USER, "Sub", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 2);
	free(recs);
	mailbox_close(&mb);

	storage_close(&pst);
	config_free(&c);
	free(uidlist);
	free(udir);
}
END_TEST

/* ---- Dovecot ---- */

static void
install_fixture(void)
{
	char cmd[1200], *udir = upath("");
	const char *src = getenv("ROOST_DOVECOT_FIXTURE");

	if (src == NULL)
		src = "tests/data/maildir-dovecot";
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", udir, src, udir);
	ck_assert_int_eq(system(cmd), 0);
	free(udir);
}

START_TEST(dovecot_fixture)
{
	struct mailbox *mb;
	struct mailbox_status s;
	struct msg_record *recs;
	const char *const *kw;
	size_t n, nk;
	uint64_t ms;
	char *text, *p;
	struct msg_view v;
	struct mailbox_info *list;
	size_t i;
	bool work = false;

	store_close();
	install_fixture();
	store_open();
	p = upath("dovecot-uidlist");
	text = slurp(p);
	free(p);

	mb = mbox("INBOX");
	ck_assert_int_eq(ops->mailbox_status(mb, &s), 0);
	/* Dovecot's UIDVALIDITY and UIDs, UID 4 expunged by Dovecot */
	ck_assert_msg(strncmp(text, "3 V", 3) == 0, "%s", text);
	ck_assert_uint_eq(s.uidvalidity, strtoul(text + 3, NULL, 10));
	ck_assert_uint_eq(s.uidnext, 7);
	ck_assert_uint_eq(s.messages, 5);
	ck_assert_int_eq(ops->keywords(mb, &kw, &nk), 0);
	ck_assert_uint_eq(nk, 2);
	ck_assert_str_eq(kw[0], "$Label1");
	ck_assert_str_eq(kw[1], "Work");
	ck_assert_int_eq(ops->records(mb, &recs, &n, &ms), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(recs[0].uid, 1);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN);
	ck_assert_uint_eq(recs[1].uid, 2);
	ck_assert_uint_eq(recs[1].flags, MSG_SEEN | MSG_FLAGGED);
	ck_assert_uint_eq(recs[1].keywords, 1);
	ck_assert_uint_eq(recs[2].uid, 3);
	ck_assert_uint_eq(recs[2].flags, MSG_ANSWERED);
	ck_assert_uint_eq(recs[2].keywords, 2);
	ck_assert_uint_eq(recs[3].uid, 5);
	ck_assert_uint_eq(recs[3].flags, MSG_DRAFT);
	ck_assert_uint_eq(recs[3].keywords, 3);
	ck_assert_uint_eq(recs[4].uid, 6);
	ck_assert_uint_eq(recs[4].flags, 0);
	ck_assert_uint_eq(recs[4].size, 64);
	free(recs);
	ck_assert_int_eq(ops->read(mb, 3, &v), 0);
	ck_assert_ptr_nonnull(memmem(v.data, v.len, "Subject: three", 14));
	v.release(&v);

	/* and we keep numbering where Dovecot stopped */
	ck_assert_uint_eq(append(mb, "Subject: ours\r\n\r\n", MSG_SEEN, NULL, 0), 7);
	ops->mailbox_close(mb);
	free(text);

	ck_assert_int_eq(ops->list(st, USER, &list, &n), 0);
	for (i = 0; i < n; i++) {
		if (strcmp(list[i].name, "Work") == 0)
			work = true;
		free(list[i].name);
	}
	free(list);
	ck_assert(work);
	mb = mbox("Work");
	ck_assert_int_eq(ops->mailbox_status(mb, &s), 0);
	/* Dovecot appended record 1 without moving N in the header */
	ck_assert_uint_eq(s.messages, 1);
	ck_assert_uint_eq(s.uidnext, 2);
	ops->mailbox_close(mb);
}
END_TEST

START_TEST(dovecot_reads_ours)
{
	static const char *const kws[] = {"Work"};
	struct mailbox *mb;
	char cmd[1200], line[512], *udir;
	struct mailbox_status s;
	FILE *fp;
	struct buf out = BUF_INIT(0);

	if (access("/usr/sbin/dovecot", X_OK) != 0) {
		fprintf(stderr, "dovecot_reads_ours: SKIPPED (no /usr/sbin/dovecot; "
		                "apt-get install dovecot-imapd to run it)\n");
		return;
	}
	mb = mbox("INBOX");
	append(mb, "Subject: one\r\n\r\n1\r\n", 0, NULL, 0);
	append(mb, "Subject: two\r\n\r\n22\r\n", MSG_SEEN | MSG_FLAGGED, kws, 1);
	append(mb, "Subject: three\r\n\r\n333\r\n", MSG_ANSWERED, NULL, 0);
	{
		uint32_t e[] = {1};

		ck_assert_int_eq(ops->expunge(mb, e, 1), 0);
	}
	append(mb, "Subject: four\r\n\r\n4444\r\n", MSG_DRAFT | MSG_DELETED, NULL, 0);
	ck_assert_int_eq(ops->mailbox_status(mb, &s), 0);
	ops->mailbox_close(mb);
	mb = mbox("Sent");
	append(mb, "Subject: sent\r\n\r\n", MSG_SEEN, NULL, 0);
	ops->mailbox_close(mb);
	ck_assert_int_eq(ops->create(st, USER, "a.b/c", 0), 0);

	udir = upath("");
	snprintf(cmd, sizeof(cmd), "python3 tests/data/dovecot_imap.py dump '%s'", udir);
	free(udir);
	fp = popen(cmd, "r");
	ck_assert_ptr_nonnull(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		buf_append_str(&out, line);
	ck_assert_int_eq(pclose(fp), 0);
	/* Dovecot lists keywords by name: ours is "Work" */
	snprintf(line, sizeof(line),
	         "mailbox INBOX uidvalidity %u uidnext 5\n"
	         "2 20 Work \\Flagged \\Seen\n"
	         "3 23 \\Answered\n"
	         "4 23 \\Deleted \\Draft\n",
	         s.uidvalidity);
	ck_assert_msg(strstr(buf_cstr(&out), line) != NULL, "dovecot saw:\n%s\nwanted:\n%s",
	              buf_cstr(&out), line);
	ck_assert_msg(strstr(buf_cstr(&out), "mailbox Sent uidvalidity") != NULL, "%s",
	              buf_cstr(&out));
	buf_free(&out);
}
END_TEST

static bool
in_list(const struct mailbox_info *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return true;
	return false;
}

/*
 * Names with '.' and '%' on disk as Dovecot keeps them (listescape with
 * '%', "/" between levels): what Dovecot created, we list and read; what
 * we created, Dovecot lists and reads.
 */
START_TEST(dovecot_names)
{
	static const char *const theirs[] = {"Mr. Smith", "Projects/2024.Q1", "100%"};
	static const char *const dirs[] = {".Mr%2e Smith/cur", ".Projects.2024%2eQ1/cur",
	                                   ".100%25/cur"};
	static const char *const ours[] = {"v1.2", "Dept. A/x.y", "50% off"};
	static const char *const our_dirs[] = {".v1%2e2/cur", ".Dept%2e A.x%2ey/cur",
	                                       ".50%25 off/cur"};
	struct mailbox_info *list;
	struct mailbox_status s;
	struct mailbox *mb;
	struct stat sb;
	char cmd[1400], line[512], *udir;
	FILE *fp;
	struct buf out = BUF_INIT(0);
	size_t n;

	/* ours, spelt on disk as Dovecot spells them */
	for (size_t i = 0; i < 3; i++) {
		char *p = upath(our_dirs[i]);

		ck_assert_int_eq(ops->create(st, USER, ours[i], 0), 0);
		mb = mbox(ours[i]);
		append(mb, "Subject: ours\r\n\r\nx\r\n", 0, NULL, 0);
		ops->mailbox_close(mb);
		ck_assert_msg(stat(p, &sb) == 0, "no %s", our_dirs[i]);
		free(p);
	}
	if (access("/usr/sbin/dovecot", X_OK) != 0) {
		fprintf(stderr, "dovecot_names: Dovecot part SKIPPED (no /usr/sbin/dovecot; "
		                "apt-get install dovecot-imapd to run it)\n");
		return;
	}
	udir = upath("");
	snprintf(cmd, sizeof(cmd),
	         "python3 tests/data/dovecot_imap.py create '%s' 'Mr. Smith' "
	         "'Projects/2024.Q1' '100%%'",
	         udir);
	ck_assert_int_eq(system(cmd), 0);
	for (size_t i = 0; i < 3; i++) {
		char *p = upath(dirs[i]);

		ck_assert_msg(stat(p, &sb) == 0, "Dovecot did not write %s", dirs[i]);
		free(p);
	}
	ck_assert_int_eq(ops->list(st, USER, &list, &n), 0);
	for (size_t i = 0; i < 3; i++)
		ck_assert_msg(in_list(list, n, theirs[i]), "%s not listed", theirs[i]);
	storage_list_free(list, n);
	for (size_t i = 0; i < 3; i++) {
		mb = mbox(theirs[i]);
		ck_assert_int_eq(ops->mailbox_status(mb, &s), 0);
		ck_assert_uint_eq(s.messages, 1);
		ops->mailbox_close(mb);
	}

	snprintf(cmd, sizeof(cmd), "python3 tests/data/dovecot_imap.py dump '%s'", udir);
	fp = popen(cmd, "r");
	ck_assert_ptr_nonnull(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		buf_append_str(&out, line);
	ck_assert_int_eq(pclose(fp), 0);
	for (size_t i = 0; i < 3; i++) {
		snprintf(line, sizeof(line), "mailbox %s uidvalidity", ours[i]);
		ck_assert_msg(strstr(buf_cstr(&out), line) != NULL, "dovecot saw:\n%s\nno %s",
		              buf_cstr(&out), ours[i]);
		snprintf(line, sizeof(line), "mailbox %s uidvalidity", theirs[i]);
		ck_assert_msg(strstr(buf_cstr(&out), line) != NULL, "dovecot saw:\n%s\nno %s",
		              buf_cstr(&out), theirs[i]);
	}
	buf_free(&out);
	free(udir);
}
END_TEST

/* A CREATE that fails half-way (here: a stray file where the folder's
 * directory must go) takes back the parents it made for it, and only
 * those. */
START_TEST(failed_create_leaves_no_parents)
{
	static const char *const strays[] = {".p.q.r", ".k.q.r"};
	struct mailbox_info *list;
	struct stat sb;
	size_t n;
	char *p = upath(".p"), *pq = upath(".p.q"), *k = upath(".k"), *kq = upath(".k.q");

	for (size_t i = 0; i < 2; i++) {
		char *stray = upath(strays[i]);
		int fd = open(stray, O_WRONLY | O_CREAT | O_EXCL, 0600);

		ck_assert_int_ge(fd, 0);
		close(fd);
		free(stray);
	}
	ck_assert_int_eq(ops->create(st, USER, "k", 0), 0);
	ck_assert_int_lt(ops->create(st, USER, "p/q/r", 0), 0);
	ck_assert_int_lt(ops->create(st, USER, "k/q/r", 0), 0);
	ck_assert_int_ne(stat(p, &sb), 0);
	ck_assert_int_ne(stat(pq, &sb), 0);
	ck_assert_int_ne(stat(kq, &sb), 0);
	ck_assert_int_eq(stat(k, &sb), 0); /* there before: kept */
	ck_assert_int_eq(ops->list(st, USER, &list, &n), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(strncmp(list[i].name, "p", 1) != 0 &&
		                  strncmp(list[i].name, "k/", 2) != 0,
		              "left %s", list[i].name);
	storage_list_free(list, n);
	free(kq);
	free(k);
	free(pq);
	free(p);
}
END_TEST

/* ---- names that went stale ---- */

/*
 * Another program renames message files (a flag change) within the clock
 * tick of our last look, so the directories' mtimes do not tell, and before
 * inotify reports it (the watcher is kept out): every operation meets file
 * names that vanished and must find the files again, never skip them.
 */
static const struct timeval pinned[2] = {{1700000000, 500000}, {1700000000, 500000}};

static void
no_watcher(void)
{
	struct md_storage *ms = container_of(st, struct md_storage, st);

	pthread_mutex_lock(&ms->lock);
	ms->watcher_failed = true;
	pthread_mutex_unlock(&ms->lock);
}

static void
pin_dirs(const char *folder)
{
	const char *subs[] = {"new", "cur"};
	char rel[300];

	for (size_t i = 0; i < 2; i++) {
		char *p;

		snprintf(rel, sizeof(rel), "%s%s", folder, subs[i]);
		p = upath(rel);
		ck_assert_int_eq(utimes(p, pinned), 0);
		free(p);
	}
}

/* Toggle \Flagged (letter F) on every file in folder's cur/, as mutt would,
 * keeping the directories' mtimes. */
static void
rename_behind(const char *folder)
{
	char names[64][256], rel[300], *dir, *from, *to;
	size_t n, i;

	snprintf(rel, sizeof(rel), "%scur", folder);
	dir = upath(rel);
	n = list_files(dir, names, 64);
	ck_assert_uint_le(n, 64);
	for (i = 0; i < n; i++) {
		char *info = strstr(names[i], ":2,"), letters[64], *o = letters;
		const char *c;
		bool had;

		ck_assert_ptr_nonnull(info);
		had = strchr(info + 3, 'F') != NULL;
		/* the letters again, in order, with F toggled */
		for (c = info + 3; *c != '\0' && *c < 'F'; c++)
			*o++ = *c;
		if (!had)
			*o++ = 'F';
		for (; *c != '\0'; c++) {
			if (*c != 'F')
				*o++ = *c;
		}
		*o = '\0';
		ck_assert_int_ge(asprintf(&from, "%s/%s", dir, names[i]), 0);
		ck_assert_int_ge(
		    asprintf(&to, "%s/%.*s:2,%s", dir, (int)(info - names[i]), names[i], letters),
		    0);
		ck_assert_int_eq(rename(from, to), 0);
		free(from);
		free(to);
	}
	free(dir);
	pin_dirs(folder);
}

static void
assert_body(struct mailbox *mb, uint32_t uid, const char *text)
{
	struct msg_view v;

	ck_assert_int_eq(ops->read(mb, uid, &v), 0);
	ck_assert_uint_eq(v.len, strlen(text));
	ck_assert_int_eq(memcmp(v.data, text, v.len), 0);
	v.release(&v);
}

/* Message files of folder: new/, cur/ and (but for the uidlist lock's
 * template) tmp/, where a copy left behind would be. */
static size_t
count_files(const char *folder)
{
	const char *subs[] = {"new", "cur", "tmp"};
	char rel[300];
	size_t n = 0;

	for (size_t i = 0; i < 3; i++) {
		struct dirent *de;
		char *p;
		DIR *d;

		snprintf(rel, sizeof(rel), "%s%s", folder, subs[i]);
		p = upath(rel);
		d = opendir(p);
		ck_assert_ptr_nonnull(d);
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] != '.' && strncmp(de->d_name, "lock.", 5) != 0)
				n++;
		}
		closedir(d);
		free(p);
	}
	return n;
}

#define STALE_N 6

START_TEST(stale_names)
{
	static const char *const texts[STALE_N] = {
	    "Subject: 0\r\n\r\nzero\r\n", "Subject: 1\r\n\r\none\r\n",
	    "Subject: 2\r\n\r\ntwo\r\n",  "Subject: 3\r\n\r\nthree\r\n",
	    "Subject: 4\r\n\r\nfour\r\n", "Subject: 5\r\n\r\nfive\r\n",
	};
	struct store_req req = {.mode = STORE_ADD, .flags = MSG_ANSWERED};
	struct mailbox *mb, *trash, *arch;
	struct msg_record *recs;
	uint32_t uids[STALE_N], *src, *dst;
	struct store_result sres = {0};
	size_t n;
	uint64_t hms;

	no_watcher();
	mb = mbox("INBOX");
	for (int i = 0; i < STALE_N; i++)
		uids[i] = append(mb, texts[i], MSG_SEEN, NULL, 0);
	pin_dirs("");
	ck_assert_int_eq(ops->records(mb, &recs, &n, &hms), 0); /* notes the mtimes */
	free(recs);

	/* copy */
	rename_behind("");
	ck_assert_int_eq(op_copy(mb, uids, STALE_N, "Trash", false, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, STALE_N);
	ck_assert_int_eq(memcmp(src, uids, sizeof(uids)), 0);
	trash = mbox("Trash");
	for (size_t i = 0; i < n; i++)
		assert_body(trash, dst[i], texts[i]);
	ck_assert_int_eq(ops->records(trash, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, STALE_N);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN | MSG_FLAGGED); /* as renamed */
	free(recs);
	free(src);
	free(dst);
	ck_assert_uint_eq(count_files(".Trash/"), STALE_N);

	/* read */
	rename_behind("");
	for (int i = 0; i < STALE_N; i++)
		assert_body(mb, uids[i], texts[i]);

	/* flags */
	rename_behind("");
	ck_assert_int_eq(ops->store(mb, uids, STALE_N, &req, &sres), 0);
	storage_store_result_free(&sres);
	ck_assert_int_eq(ops->records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, STALE_N);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(recs[i].flags & MSG_ANSWERED, MSG_ANSWERED);
	free(recs);

	/* move half */
	rename_behind("");
	ck_assert_int_eq(op_copy(mb, uids, STALE_N / 2, "Archive", true, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, STALE_N / 2);
	arch = mbox("Archive");
	for (size_t i = 0; i < n; i++)
		assert_body(arch, dst[i], texts[i]);
	free(src);
	free(dst);
	ck_assert_uint_eq(count_files(".Archive/"), STALE_N / 2);

	/* expunge the rest */
	rename_behind("");
	ck_assert_int_eq(ops->expunge(mb, uids + STALE_N / 2, STALE_N - STALE_N / 2), 0);
	ck_assert_int_eq(ops->records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, 0);
	free(recs);
	ck_assert_uint_eq(count_files(""), 0);
	ops->mailbox_close(arch);
	ops->mailbox_close(trash);
	ops->mailbox_close(mb);
}
END_TEST

/* A copy that cannot take every message takes none. */
START_TEST(copy_all_or_nothing)
{
	const char *kws[MD_MAX_KEYWORDS], *extra[] = {"Extra"};
	char names[MD_MAX_KEYWORDS][8], *p;
	struct mailbox *mb, *trash;
	struct mailbox_status s;
	uint32_t uids[3], *src = NULL, *dst = NULL;
	size_t n = 0;

	no_watcher();
	mb = mbox("INBOX");
	trash = mbox("Trash");
	for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
		snprintf(names[i], sizeof(names[i]), "k%u", (unsigned)i % 100u);
		kws[i] = names[i];
	}
	append(trash, "Subject: full\r\n\r\n", 0, kws, MD_MAX_KEYWORDS);

	/* the last one needs a keyword letter Trash does not have */
	uids[0] = append(mb, "Subject: a\r\n\r\na\r\n", MSG_SEEN, NULL, 0);
	uids[1] = append(mb, "Subject: b\r\n\r\nb\r\n", MSG_SEEN, NULL, 0);
	uids[2] = append(mb, "Subject: c\r\n\r\nc\r\n", MSG_SEEN, extra, 1);
	ck_assert_int_eq(op_copy(mb, uids, 3, "Trash", false, &src, &dst, &n), ROOST_ETOOBIG);
	ck_assert_int_eq(ops->mailbox_status(trash, &s), 0);
	ck_assert_uint_eq(s.messages, 1);
	ck_assert_uint_eq(count_files(".Trash/"), 1);

	/* a message another program removed after we last looked */
	pin_dirs("");
	ck_assert_int_eq(ops->mailbox_status(mb, &s), 0);
	ck_assert_uint_eq(s.messages, 3);
	{
		char fnames[4][256], *text;
		size_t i;

		p = upath("cur");
		ck_assert_uint_eq(list_files(p, fnames, 4), 3);
		free(p);
		for (i = 0; i < 3; i++) {
			ck_assert_int_ge(asprintf(&text, "cur/%s", fnames[i]), 0);
			p = upath(text);
			free(text);
			text = slurp(p);
			if (strcmp(text, "Subject: b\r\n\r\nb\r\n") == 0)
				ck_assert_int_eq(unlink(p), 0);
			free(text);
			free(p);
		}
		ck_assert_uint_eq(count_files(""), 2);
	}
	pin_dirs("");
	ck_assert_int_eq(op_copy(mb, uids, 2, "Trash", false, &src, &dst, &n), ROOST_ETEMP);
	ck_assert_int_eq(ops->mailbox_status(trash, &s), 0);
	ck_assert_uint_eq(s.messages, 1);
	ck_assert_uint_eq(count_files(".Trash/"), 1);
	ck_assert_int_eq(op_copy(mb, uids, 2, "Trash", true, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1); /* the session now knows it is gone */
	free(src);
	free(dst);
	ck_assert_int_eq(ops->mailbox_status(trash, &s), 0);
	ck_assert_uint_eq(s.messages, 2);
	ops->mailbox_close(trash);
	ops->mailbox_close(mb);
}
END_TEST

static Suite *
maildir_suite(void)
{
	Suite *s = suite_create("maildir");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, name_encoding);
	tcase_add_test(tc, layout_and_listing);
	tcase_add_test(tc, file_names_and_formats);
	tcase_add_test(tc, read_zero_copy_roundtrip);
	tcase_add_test(tc, external_changes);
	tcase_add_test(tc, tmp_cleanup);
	tcase_add_test(tc, stale_lock_broken);
	tcase_add_test(tc, index_rebuilt_keeps_uids);
	tcase_add_test(tc, deliver_links_body_once);
	tcase_add_test(tc, threads_and_processes);
	tcase_add_test(tc, external_change_wakes_watchers);
	tcase_add_test(tc, closed_folder_keeps_watch);
	tcase_add_test(tc, stale_names);
	tcase_add_test(tc, copy_all_or_nothing);
	tcase_add_test(tc, dovecot_fixture);
	tcase_add_test(tc, dovecot_reads_ours);
	tcase_add_test(tc, dovecot_names);
	tcase_add_test(tc, failed_create_leaves_no_parents);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(maildir_suite());
}
