/*
 * The storage conformance suite: every test runs once per backend in the
 * build (storage_backend_available()), each in its own forked process
 * with its own data directory. ROOST_STORAGE_BACKENDS="lmdb" (a comma
 * list) narrows the set.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <lmdb.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/message_cache.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "check_run.h"
/* lmdb_group_commit watches the LMDB write queue from inside. */
#include "../../backends/lmdb/lmdb_impl.h"

static const char *all_backends[] = {"lmdb", "maildir", "pgsql"};
static const char *backends[8];
static int n_backends;

/* Per test (each runs in its own process). */
static char dir[256];
static char pg_db[64];    /* the test's own database (pgsql) */
static char pg_dsn[1024]; /* and how to reach it */
static struct roost_config cfg;
static struct storage *st;
static const char *backend;

#define USER "alice@example.com"

static void
make_cfg(const char *name)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = dir;
	cfg.storage_backend = (char *)name;
	cfg.lmdb_map_size = 8u << 20; /* small on purpose: the map must grow */
	cfg.lmdb_shards = 1;
	cfg.storage_fsync = true;
	cfg.expunge_log_retention = 30 * 86400;
	cfg.max_message_size = 50u << 20;
}

static void
open_store(void)
{
	ck_assert_int_eq(storage_open(&cfg, &st), 0);
	ck_assert_str_eq(storage_backend_name(st), backend);
}

static void
reopen(void)
{
	storage_close(&st);
	open_store();
}

/* Run sql on the database dsn names: the suite's PostgreSQL
 * (ROOST_PGSQL_TEST_DSN: scripts/run-unit.sh starts it), or the test's own
 * database (pg_dsn), to damage it behind the store. */
static void
pg_sql(const char *dsn, const char *sql)
{
	PGconn *conn = PQconnectdb(dsn);
	PGresult *res;

	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
	res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
	              PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(conn);
}

/* A fresh database per test, as the other backends get a fresh directory. */
static void
pg_setup(void)
{
	static int seq;
	char sql[128];

	snprintf(pg_db, sizeof(pg_db), "roost_t%d_%d", (int)getpid(), seq++);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", pg_db);
	pg_sql(getenv("ROOST_PGSQL_TEST_DSN"), sql);
	snprintf(pg_dsn, sizeof(pg_dsn), "%s dbname=%s", getenv("ROOST_PGSQL_TEST_DSN"), pg_db);
	cfg.pgsql_dsn = pg_dsn;
}

static void
setup_dir(int i)
{
	char tmpl[] = "/tmp/roost-storage-XXXXXX";

	backend = backends[i];
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	snprintf(dir, sizeof(dir), "%s", tmpl);
	make_cfg(backend);
	if (strcmp(backend, "pgsql") == 0)
		pg_setup();
}

static void
setup_backend(int i)
{
	setup_dir(i);
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown_backend(void)
{
	storage_close(&st);
	if (dir[0] != '\0')
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (pg_db[0] != '\0') {
		char sql[128];

		snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", pg_db);
		pg_sql(getenv("ROOST_PGSQL_TEST_DSN"), sql);
		pg_db[0] = '\0';
	}
}

static int
append_bytes(const char *mbox, const void *data, size_t len, uint32_t flags, uint32_t *uid_r)
{
	struct msg_input in = {.data = data, .len = len, .fd = -1, .flags = flags};
	uint32_t uidv;

	return storage_append(st, USER, mbox, &in, &uidv, uid_r);
}

static uint32_t
append_simple(const char *mbox, int n)
{
	char msg[128];
	uint32_t uid = 0;
	int len = snprintf(msg, sizeof(msg), "Subject: %d\r\n\r\nbody %d\r\n", n, n);

	ck_assert_int_eq(append_bytes(mbox, msg, (size_t)len, 0, &uid), 0);
	return uid;
}

static void
assert_read(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	struct msg_view v;

	ck_assert_int_eq(mailbox_read(mb, uid, &v), 0);
	ck_assert_uint_eq(v.len, len);
	ck_assert(len == 0 || memcmp(v.data, data, len) == 0);
	msg_view_release(&v);
}

static void
assert_clean(void)
{
	struct buf report = BUF_INIT(1 << 20);
	int rc = storage_check(st, &report);

	if (rc != 0)
		fprintf(stderr, "check report (%s):\n%s", backend, buf_cstr(&report));
	ck_assert_int_eq(rc, 0);
	buf_free(&report);
}

static bool
has_attr(struct mailbox_info *list, size_t n, const char *name, unsigned attr)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].name, name) == 0)
			return (list[i].attrs & attr) == attr;
	}
	return false;
}

static bool
listed(struct mailbox_info *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].name, name) == 0)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */

START_TEST(hostile_names)
{
	static const char *bad[] = {
	    "",
	    "/",
	    "/a",
	    "a/",
	    "a//b",
	    ".",
	    "..",
	    "a/../b",
	    "../x",
	    "a/./b",
	    "x/./y",
	    "x/..",
	    "a\nb",
	    "a\rb",
	    "tab\there",
	    "del\x7f",
	    "c1\xc2\x80",
	    "bad\xff",
	    "over\xc0\xaf",
	    "sur\xed\xa0\x80",
	    "trunc\xe2\x82",
	    "\x01",
	    "a\x1f"
	    "b",
	    "x/\x1b[2J",
	    "c1/\xc2\x9f",
	    "a/b\x7f",
	};
	char longname[STORAGE_MAX_NAME + 2];
	struct mailbox *mb;
	struct mailbox_status s;
	uint32_t uid;

	setup_backend(_i);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!storage_name_valid(bad[i]), "accepted %s", bad[i]);
		ck_assert_int_eq(storage_create(st, USER, bad[i], 0), ROOST_EINVAL);
		ck_assert_int_eq(storage_delete(st, USER, bad[i]), ROOST_EINVAL);
		ck_assert_int_eq(storage_rename(st, USER, "INBOX", bad[i]), ROOST_EINVAL);
		ck_assert_int_eq(storage_status(st, USER, bad[i], &s), ROOST_EINVAL);
		ck_assert_int_eq(mailbox_open(st, USER, bad[i], 0, &mb), ROOST_EINVAL);
		ck_assert_int_eq(append_bytes(bad[i], "x", 1, 0, &uid), ROOST_EINVAL);
		ck_assert_int_eq(storage_subscribe(st, USER, bad[i], true), ROOST_EINVAL);
	}
	ck_assert_int_eq(storage_create(st, USER, longname, 0), ROOST_EINVAL);
	ck_assert(!storage_name_valid(NULL));
	ck_assert(storage_name_valid("Työ/Ärger 2024"));
	ck_assert(storage_name_valid("a b/c-d_e"));
	/* users */
	ck_assert_int_eq(storage_user_init(st, "../etc"), ROOST_EINVAL);
	ck_assert_int_eq(storage_user_init(st, "a/b"), ROOST_EINVAL);
	ck_assert_int_eq(storage_user_init(st, ""), ROOST_EINVAL);
	ck_assert_int_eq(storage_create(st, "x\ny", "Box", 0), ROOST_EINVAL);
	/* keywords */
	ck_assert(storage_keyword_valid("$Forwarded"));
	ck_assert(!storage_keyword_valid("\\Seen"));
	ck_assert(!storage_keyword_valid("a b"));
	ck_assert(!storage_keyword_valid("x(y"));
	ck_assert(!storage_keyword_valid(""));
	assert_clean();
	teardown_backend();
}
END_TEST

/* name of n copies of unit (plus an optional prefix) in out[size] */
static const char *
repeat(char *out, size_t size, const char *prefix, const char *unit, size_t n)
{
	size_t len = strlen(prefix), ul = strlen(unit);

	ck_assert_uint_lt(len + n * ul, size);
	memcpy(out, prefix, len);
	for (size_t i = 0; i < n; i++, len += ul)
		memcpy(out + len, unit, ul);
	out[len] = '\0';
	return out;
}

/* Every operation refuses a name too long to store with ROOST_EINVAL (never
 * an I/O error from the file system), and a refused hierarchy leaves no
 * parent behind: the same rule on every backend. */
static void
assert_refused(const char *name)
{
	struct mailbox_info *list;
	struct mailbox_status s;
	struct mailbox *mb;
	size_t n, before;
	uint32_t uid;

	ck_assert_int_eq(storage_list(st, USER, &list, &before), 0);
	storage_list_free(list, before);
	ck_assert_msg(!storage_name_valid(name), "accepted %s", name);
	ck_assert_int_eq(storage_create(st, USER, name, 0), ROOST_EINVAL);
	ck_assert_int_eq(storage_status(st, USER, name, &s), ROOST_EINVAL);
	ck_assert_int_eq(mailbox_open(st, USER, name, 0, &mb), ROOST_EINVAL);
	ck_assert_int_eq(append_bytes(name, "x", 1, 0, &uid), ROOST_EINVAL);
	ck_assert_int_eq(storage_rename(st, USER, "INBOX", name), ROOST_EINVAL);
	ck_assert_int_eq(storage_subscribe(st, USER, name, true), ROOST_EINVAL);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert_uint_eq(n, before);
	storage_list_free(list, n);
}

static void
assert_made(const char *name)
{
	struct mailbox_status s;

	ck_assert_msg(storage_name_valid(name), "refused %s", name);
	ck_assert_int_eq(storage_create(st, USER, name, 0), 0);
	ck_assert_int_eq(storage_status(st, USER, name, &s), 0);
	append_simple(name, 1);
	ck_assert_int_eq(storage_status(st, USER, name, &s), 0);
	ck_assert_uint_eq(s.messages, 1);
}

START_TEST(name_lengths)
{
	char name[STORAGE_MAX_NAME * 2];
	struct mailbox_info *list;
	size_t n;

	setup_backend(_i);
	/* ASCII: one byte each, '/' included */
	assert_made(repeat(name, sizeof(name), "", "a", STORAGE_MAX_NAME_STORED));
	assert_refused(repeat(name, sizeof(name), "", "b", STORAGE_MAX_NAME_STORED + 1));
	assert_refused(repeat(name, sizeof(name), "p/", "c", 300));
	assert_made(repeat(name, sizeof(name), "h", "/h", (STORAGE_MAX_NAME_STORED - 1) / 2));
	assert_refused(repeat(name, sizeof(name), "k", "/k", STORAGE_MAX_NAME_STORED / 2));
	/* counted as stored: "\xc3\xa9" x 94 is "&AOkA6Q...-", 253 bytes; x 95 is 256 */
	assert_made(repeat(name, sizeof(name), "", "\xc3\xa9", 94));
	assert_refused(repeat(name, sizeof(name), "", "\xc3\xa8", 95));
	/* "a\xc3\xa9" alternating: 6 bytes stored per 3 of UTF-8 ("a&AOk-") */
	assert_made(repeat(name, sizeof(name), "", "a\xc3\xa9", 42));
	assert_refused(repeat(name, sizeof(name), "", "e\xc3\xa9", 43));
	/* '&' is "&-" and '%' is "%25" on disk */
	assert_made(repeat(name, sizeof(name), "", "&", STORAGE_MAX_NAME_STORED / 2));
	assert_refused(repeat(name, sizeof(name), "&", "&", STORAGE_MAX_NAME_STORED / 2));
	assert_made(repeat(name, sizeof(name), "", "%", STORAGE_MAX_NAME_STORED / 3));
	assert_refused(repeat(name, sizeof(name), "%", "%", STORAGE_MAX_NAME_STORED / 3));
	/* and '.' is "%2e" */
	assert_made(repeat(name, sizeof(name), "", ".", STORAGE_MAX_NAME_STORED / 3));
	assert_refused(repeat(name, sizeof(name), ".", ".", STORAGE_MAX_NAME_STORED / 3));

	/* A rename that would make a child's name too long moves nothing. */
	repeat(name, sizeof(name), "r/", "c", STORAGE_MAX_NAME_STORED - 2);
	ck_assert_int_eq(storage_create(st, USER, name, 0), 0);
	ck_assert_int_eq(storage_rename(st, USER, "r", "rr"), ROOST_EINVAL);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(listed(list, n, "r"));
	ck_assert(listed(list, n, name));
	ck_assert(!listed(list, n, "rr"));
	storage_list_free(list, n);
	ck_assert_int_eq(storage_rename(st, USER, "r", "q"), 0);
	name[0] = 'q';
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(listed(list, n, name));
	storage_list_free(list, n);
	assert_clean();
	teardown_backend();
}
END_TEST

/*
 * Names with '.', '%' and the other printable punctuation are names like
 * any other on every backend (Maildir++ escapes '.' and '%' on disk):
 * created, filled, listed, renamed with their children, and still there
 * after the store is opened again.
 */
START_TEST(punctuation_names)
{
	static const char *const names[] = {
	    "Mr. Smith",
	    "v1.2",
	    "Projects/2024.Q1",
	    "a.b",
	    "a/b",
	    "a..b",
	    ".hidden",
	    "x/.y",
	    "trailing.",
	    "Maildir.sub",
	    "..\\..",
	    "100%",
	    "a%2eb",
	    "a%2Eb",
	    "%25",
	    "p!#$&'()*+,-;<=>?@[]^_`{|}~q",
	    "quote\"d",
	    "back\\slash",
	    "Caf\xc3\xa9.Bar/x.y.z",
	};
	static const char *const renamed[] = {"Proj.2025", "Proj.2025/2024.Q1"};
	size_t nn = sizeof(names) / sizeof(names[0]);
	struct mailbox_info *list;
	struct mailbox_status s;
	struct mailbox *mb;
	size_t n;

	setup_backend(_i);
	for (size_t i = 0; i < nn; i++) {
		ck_assert_msg(storage_name_valid(names[i]), "refused %s", names[i]);
		ck_assert_msg(storage_create(st, USER, names[i], 0) == 0, "create %s", names[i]);
		append_simple(names[i], (int)i);
	}
	ck_assert_int_eq(storage_create(st, USER, "v1.2", 0), ROOST_EEXISTS);
	for (int pass = 0; pass < 2; pass++) {
		ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
		for (size_t i = 0; i < nn; i++) {
			ck_assert_msg(listed(list, n, names[i]), "%s not listed", names[i]);
			ck_assert_int_eq(storage_status(st, USER, names[i], &s), 0);
			ck_assert_uint_eq(s.messages, 1);
		}
		ck_assert(has_attr(list, n, "Projects", MBOX_HASCHILDREN));
		ck_assert(!listed(list, n, "Mr"));
		ck_assert(!listed(list, n, "v1"));
		storage_list_free(list, n);
		reopen();
	}
	ck_assert_int_eq(mailbox_open(st, USER, "Mr. Smith", 0, &mb), 0);
	ck_assert_str_eq(mailbox_name(mb), "Mr. Smith");
	mailbox_close(&mb);
	/* a rename carries children whose names hold dots */
	ck_assert_int_eq(storage_rename(st, USER, "Projects", renamed[0]), 0);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(!listed(list, n, "Projects/2024.Q1"));
	for (size_t i = 0; i < 2; i++)
		ck_assert_msg(listed(list, n, renamed[i]), "%s not listed", renamed[i]);
	storage_list_free(list, n);
	ck_assert_int_eq(storage_status(st, USER, renamed[1], &s), 0);
	ck_assert_uint_eq(s.messages, 1);
	ck_assert_int_eq(storage_delete(st, USER, "a.b"), 0);
	ck_assert_int_eq(storage_status(st, USER, "a/b", &s), 0); /* another mailbox */
	ck_assert_int_eq(storage_status(st, USER, "a.b", &s), ROOST_ENOTFOUND);
	assert_clean();
	teardown_backend();
}
END_TEST

START_TEST(round_trip)
{
	static const uint8_t binary[] = {'S', ':',  ' ',  'b',  '\r', '\n', '\r', '\n', 0,  1,
	                                 2,   0xff, 0xfe, '\n', '\n', 0x80, 0,    '\r', 'x'};
	static const char bare_lf[] = "Subject: lf\n\nline one\nline two\n";
	static const char eight[] = "Subject: =?utf-8?q?x?=\r\n\r\nGr\xc3\xbc\xc3\x9f"
	                            "e\r\n";
	const char *kws[] = {"$Forwarded", "Work"};
	struct msg_input in = {.fd = -1};
	struct mailbox *mb;
	struct msg_record *recs;
	const char *const *names;
	size_t n, nk;
	uint64_t hms;
	uint32_t uid[4], uidv;

	setup_backend(_i);
	ck_assert_int_eq(append_bytes("INBOX", binary, sizeof(binary), MSG_SEEN, &uid[0]), 0);
	ck_assert_int_eq(append_bytes("INBOX", bare_lf, strlen(bare_lf), 0, &uid[1]), 0);
	in.data = (const uint8_t *)eight;
	in.len = strlen(eight);
	in.flags = MSG_FLAGGED | MSG_ANSWERED | MSG_DRAFT;
	in.keywords = kws;
	in.n_keywords = 2;
	in.internal_date = 1000000000;
	ck_assert_int_eq(storage_append(st, USER, "inbox", &in, &uidv, &uid[2]), 0);
	ck_assert_uint_ne(uidv, 0);
	ck_assert_int_eq(append_bytes("INBOX", "", 0, 0, &uid[3]), 0);
	ck_assert_uint_lt(uid[0], uid[1]);
	ck_assert_uint_lt(uid[1], uid[2]);
	ck_assert_uint_lt(uid[2], uid[3]);

	for (int pass = 0; pass < 2; pass++) {
		ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
		ck_assert_str_eq(mailbox_name(mb), "INBOX");
		assert_read(mb, uid[0], binary, sizeof(binary));
		assert_read(mb, uid[1], bare_lf, strlen(bare_lf));
		assert_read(mb, uid[2], eight, strlen(eight));
		assert_read(mb, uid[3], "", 0);
		ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
		ck_assert_uint_eq(n, 4);
		ck_assert_uint_eq(recs[0].uid, uid[0]);
		ck_assert_uint_eq(recs[0].flags, MSG_SEEN);
		ck_assert_uint_eq(recs[0].size, sizeof(binary));
		ck_assert_uint_eq(recs[1].flags, 0);
		ck_assert_uint_eq(recs[2].flags, MSG_FLAGGED | MSG_ANSWERED | MSG_DRAFT);
		ck_assert_int_eq(recs[2].internal_date, 1000000000);
		ck_assert(recs[0].internal_date > 1600000000);
		ck_assert_int_eq(mailbox_keywords(mb, &names, &nk), 0);
		ck_assert_uint_eq(nk, 2);
		for (size_t k = 0; k < nk; k++)
			ck_assert(recs[2].keywords & (1ULL << k));
		ck_assert(strcmp(names[0], "$Forwarded") == 0 ||
		          strcmp(names[1], "$Forwarded") == 0);
		ck_assert(strcmp(names[0], "Work") == 0 || strcmp(names[1], "Work") == 0);
		ck_assert_uint_eq(recs[0].keywords, 0);
		for (size_t r = 1; r < n; r++) {
			ck_assert_uint_lt(recs[r - 1].uid, recs[r].uid);
			ck_assert_uint_le(recs[r].modseq, hms);
		}
		free(recs);
		ck_assert_int_eq(mailbox_read(mb, 9999, &(struct msg_view){0}), ROOST_ENOTFOUND);
		mailbox_close(&mb);
		reopen();
	}
	assert_clean();
	teardown_backend();
}
END_TEST

/* storage_set_uids(): an import keeps the UIDs and UIDVALIDITY the source
 * had while the mailbox is new, and only raises UIDNEXT after that. */
START_TEST(imported_uids)
{
	struct mailbox_status s;
	struct mailbox *mb;
	struct msg_record *recs;
	size_t n;
	uint64_t hms;
	uint32_t uid, uidv;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Imported", 0), 0);
	ck_assert_int_eq(storage_set_uids(st, USER, "Imported", 0, 0), 0);
	ck_assert_int_eq(storage_set_uids(st, USER, "Imported", 777, 5), 0);
	ck_assert_int_eq(storage_status(st, USER, "Imported", &s), 0);
	ck_assert_uint_eq(s.uidvalidity, 777);
	ck_assert_uint_eq(s.uidnext, 5);
	ck_assert_int_eq(append_bytes("Imported", "a\r\n", 3, 0, &uid), 0);
	ck_assert_uint_eq(uid, 5);
	/* UIDNEXT is only raised; a jump leaves a gap */
	ck_assert_int_eq(storage_set_uids(st, USER, "Imported", 0, 3), 0);
	ck_assert_int_eq(storage_set_uids(st, USER, "Imported", 777, 40), 0);
	ck_assert_int_eq(append_bytes("Imported", "b\r\n", 3, 0, &uid), 0);
	ck_assert_uint_eq(uid, 40);
	ck_assert_int_eq(append_bytes("Imported", "c\r\n", 3, 0, &uid), 0);
	ck_assert_uint_eq(uid, 41);
	/* once a message was there, UIDVALIDITY stays, even when empty again */
	ck_assert_int_eq(storage_set_uids(st, USER, "Imported", 778, 0), ROOST_EEXISTS);
	ck_assert_int_eq(mailbox_open(st, USER, "Imported", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(recs[0].uid, 5);
	ck_assert_uint_eq(recs[2].uid, 41);
	ck_assert_int_eq(mailbox_expunge(mb, (uint32_t[]){5, 40, 41}, 3), 0);
	free(recs);
	mailbox_close(&mb);
	ck_assert_int_eq(storage_set_uids(st, USER, "Imported", 778, 0), ROOST_EEXISTS);
	reopen();
	ck_assert_int_eq(storage_status(st, USER, "Imported", &s), 0);
	ck_assert_uint_eq(s.uidvalidity, 777);
	ck_assert_uint_eq(s.uidnext, 42);
	ck_assert_int_eq(
	    storage_append(st, USER, "Imported",
	                   &(struct msg_input){.data = (const uint8_t *)"d", .len = 1, .fd = -1},
	                   &uidv, &uid),
	    0);
	ck_assert_uint_eq(uidv, 777);
	ck_assert_uint_eq(uid, 42);
	ck_assert_int_eq(storage_set_uids(st, USER, "Absent", 1, 1), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_set_uids(st, USER, "../x", 1, 1), ROOST_EINVAL);
	assert_clean();
	teardown_backend();
}
END_TEST

/* storage_repair() on a healthy store changes nothing a client sees. */
START_TEST(repair_healthy)
{
	struct buf report = BUF_INIT(1 << 20);
	struct mailbox_status before, after;
	uint32_t uid;
	int rc;

	setup_backend(_i);
	ck_assert_int_eq(append_bytes("INBOX", "Subject: a\r\n\r\nx\r\n", 17, MSG_SEEN, &uid), 0);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &before), 0);
	rc = storage_repair(st, &report);
	ck_assert_msg(rc == 0, "%s: %d %s", backend, rc, buf_cstr(&report));
	if (rc == 0)
		ck_assert_msg(report.len == 0, "%s", buf_cstr(&report));
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &after), 0);
	ck_assert_uint_eq(after.uidvalidity, before.uidvalidity);
	ck_assert_uint_eq(after.uidnext, before.uidnext);
	ck_assert_uint_eq(after.messages, 1);
	buf_free(&report);
	assert_clean();
	teardown_backend();
}
END_TEST

START_TEST(big_message)
{
	size_t len = 30u << 20;
	uint8_t *big = malloc(len);
	char path[300];
	struct msg_input in = {.fd = -1};
	struct mailbox *mb;
	uint32_t uid1, uid2, uidv;
	int fd;

	setup_backend(_i);
	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)((i * 2654435761u) >> 13);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	ck_assert_int_eq(append_bytes("INBOX", big, len, 0, &uid1), 0);
	/* spooled in a file */
	snprintf(path, sizeof(path), "%s/spool", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	big[100] ^= 1;
	ck_assert_int_eq(write(fd, big, len), (ssize_t)len);
	in.fd = fd;
	in.len = len;
	ck_assert_int_eq(storage_append(st, USER, "INBOX", &in, &uidv, &uid2), 0);
	close(fd);
	unlink(path);
	reopen();
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	assert_read(mb, uid2, big, len);
	big[100] ^= 1;
	assert_read(mb, uid1, big, len);
	mailbox_close(&mb);
	/* a spool file shorter than it claims: an error, not a crash */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, big, 1000), 1000);
	in.fd = fd;
	in.len = 5000;
	ck_assert_int_ne(storage_append(st, USER, "INBOX", &in, &uidv, &uid2), 0);
	close(fd);
	unlink(path);
	/* too big */
	in.fd = -1;
	in.data = big;
	in.len = (50u << 20) + 1;
	ck_assert_int_eq(storage_append(st, USER, "INBOX", &in, &uidv, &uid2), ROOST_ETOOBIG);
	free(big);
	assert_clean();
	teardown_backend();
}
END_TEST

START_TEST(uids_never_reused)
{
	struct mailbox *mb;
	struct mailbox_status s;
	uint32_t uids[5], last, uidv1, uidv2;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	for (int i = 0; i < 5; i++)
		uids[i] = append_simple("Box", i);
	for (int i = 1; i < 5; i++)
		ck_assert_uint_gt(uids[i], uids[i - 1]);
	ck_assert_int_eq(mailbox_open(st, USER, "Box", 0, &mb), 0);
	ck_assert_int_eq(mailbox_expunge(mb, &uids[3], 2), 0);
	mailbox_close(&mb);
	last = append_simple("Box", 5);
	ck_assert_uint_gt(last, uids[4]);
	reopen();
	ck_assert_int_eq(mailbox_open(st, USER, "Box", 0, &mb), 0);
	ck_assert_int_eq(mailbox_expunge(mb, &last, 1), 0);
	mailbox_close(&mb);
	reopen();
	ck_assert_uint_gt(append_simple("Box", 6), last);
	ck_assert_int_eq(storage_status(st, USER, "Box", &s), 0);
	uidv1 = s.uidvalidity;
	ck_assert_uint_eq(s.messages, 4);
	/* delete and re-create: new UIDVALIDITY */
	ck_assert_int_eq(storage_delete(st, USER, "Box"), 0);
	ck_assert_int_eq(storage_status(st, USER, "Box", &s), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	ck_assert_int_eq(storage_status(st, USER, "Box", &s), 0);
	uidv2 = s.uidvalidity;
	ck_assert_uint_ne(uidv1, uidv2);
	ck_assert_uint_eq(s.messages, 0);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), ROOST_EEXISTS);
	assert_clean();
	teardown_backend();
}
END_TEST

static bool
has_uid(const struct msg_record *r, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].uid == uid)
			return true;
	}
	return false;
}

static const struct store_req seen_add = {.mode = STORE_ADD, .flags = MSG_SEEN};

/* INBOX with four messages u[0..3], opened in *mb_r; returns its
 * HIGHESTMODSEQ then (m0), after which u[1] is flagged \Seen, u[2]
 * expunged and u[4], u[5] appended: the changes both cases read. */
static uint64_t
changes_fixture(struct mailbox **mb_r, uint32_t u[6])
{
	struct mailbox_status s;
	uint32_t *mod;
	size_t nmod;

	for (int i = 0; i < 4; i++)
		u[i] = append_simple("INBOX", i);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, mb_r), 0);
	ck_assert_int_eq(mailbox_status(*mb_r, &s), 0);
	ck_assert_int_eq(mailbox_store(*mb_r, &u[1], 1, &seen_add, &mod, &nmod), 0);
	ck_assert_int_eq(mailbox_expunge(*mb_r, &u[2], 1), 0);
	u[4] = append_simple("INBOX", 4);
	u[5] = append_simple("INBOX", 5);
	return s.highestmodseq;
}

START_TEST(changes_since)
{
	struct mailbox *mb;
	struct mailbox_changes ch;
	struct mailbox_status s;
	uint32_t u[6], *mod;
	size_t nmod;
	uint64_t m0, m1;

	setup_backend(_i);
	/* after m0: flag u1, expunge u2, append u4 u5, flag u4, expunge u5 */
	m0 = changes_fixture(&mb, u);
	ck_assert_int_eq(mailbox_store(mb, &u[4], 1, &seen_add, &mod, &nmod), 0);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	m1 = s.highestmodseq;
	ck_assert_int_eq(mailbox_expunge(mb, &u[5], 1), 0);

	ck_assert_int_eq(mailbox_changes_since(mb, m0, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 2);
	ck_assert_uint_eq(ch.changed[0].uid, u[1]);
	ck_assert_uint_eq(ch.changed[0].flags, MSG_SEEN);
	ck_assert_uint_eq(ch.changed[1].uid, u[4]);
	ck_assert_uint_eq(ch.n_expunged, 2);
	ck_assert_uint_eq(ch.expunged[0], u[2]);
	ck_assert_uint_eq(ch.expunged[1], u[5]);
	ck_assert(ch.expunged_complete);
	ck_assert_uint_gt(ch.highestmodseq, m1);
	ck_assert_uint_eq(ch.uidnext, u[5] + 1);
	mailbox_changes_free(&ch);

	ck_assert_int_eq(mailbox_changes_since(mb, m1, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 0);
	ck_assert_uint_eq(ch.n_expunged, 1);
	ck_assert_uint_eq(ch.expunged[0], u[5]);
	mailbox_changes_free(&ch);

	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_int_eq(mailbox_changes_since(mb, s.highestmodseq, &ch), 0);
	ck_assert_uint_eq(ch.n_changed + ch.n_expunged, 0);
	mailbox_changes_free(&ch);

	ck_assert_int_eq(mailbox_changes_since(mb, 0, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 4);
	ck_assert(has_uid(ch.changed, ch.n_changed, u[0]));
	ck_assert(!has_uid(ch.changed, ch.n_changed, u[2]));
	ck_assert(has_uid(ch.changed, ch.n_changed, u[3]));
	mailbox_changes_free(&ch);

	/* Many changes: the result equals the records with modseq > since. */
	{
		uint32_t many[200];
		size_t nm = 0, nr, j = 0;
		struct msg_record *recs;
		uint64_t hms;

		for (int i = 0; i < 200; i++) {
			uint32_t uid = append_simple("INBOX", 100 + i);

			if (i % 5 != 0)
				many[nm++] = uid;
		}
		ck_assert_int_eq(mailbox_status(mb, &s), 0);
		m1 = s.highestmodseq;
		ck_assert_int_eq(mailbox_store(mb, many, nm, &seen_add, &mod, &nmod), 0);
		ck_assert_int_eq(mailbox_expunge(mb, &many[7], 1), 0);
		ck_assert_int_eq(mailbox_changes_since(mb, m1, &ch), 0);
		ck_assert_int_eq(mailbox_records(mb, &recs, &nr, &hms), 0);
		for (size_t i = 0; i < nr; i++) {
			if (recs[i].modseq <= m1)
				continue;
			ck_assert_uint_lt(j, ch.n_changed);
			ck_assert_uint_eq(ch.changed[j].uid, recs[i].uid);
			ck_assert_uint_eq(ch.changed[j].modseq, recs[i].modseq);
			ck_assert_uint_eq(ch.changed[j].flags, recs[i].flags);
			j++;
		}
		ck_assert_uint_eq(j, ch.n_changed);
		ck_assert_uint_eq(ch.n_changed, nm - 1);
		ck_assert_uint_eq(ch.n_expunged, 1);
		ck_assert_uint_eq(ch.expunged[0], many[7]);
		free(recs);
		mailbox_changes_free(&ch);
	}
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/* mailbox_changes_since_nb(): LMDB answers as mailbox_changes_since()
 * does while the changes fit in max, and ROOST_EAGAIN past it; so does
 * Maildir, once its watch thread has looked at the events of the changes
 * (our own expunge and flag renames); the other backends always say
 * ROOST_EAGAIN, with nothing returned. */
START_TEST(changes_since_nb)
{
	struct mailbox *mb;
	struct mailbox_changes ch, nb;
	struct mailbox_status s;
	uint32_t u[6];
	uint64_t m0;
	bool answers;

	setup_backend(_i);
	answers = strcmp(storage_backend_name(st), "lmdb") == 0 ||
	          strcmp(storage_backend_name(st), "maildir") == 0;
	/* after m0: flag u1, expunge u2, append u4 u5: 3 changed, 1 expunged */
	m0 = changes_fixture(&mb, u);
	if (strcmp(storage_backend_name(st), "maildir") == 0) {
		/* the watch thread's look, 20 ms after the events: bounded */
		for (int k = 0; k < 60000; k++) {
			int rc = mailbox_changes_since_nb(mb, m0, 4, &nb);

			mailbox_changes_free(&nb);
			if (rc == 0)
				break;
			usleep(1000);
		}
	}

	ck_assert_int_eq(mailbox_changes_since(mb, m0, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 3);
	ck_assert_uint_eq(ch.n_expunged, 1);
	for (size_t max = 1; max <= 4; max++) {
		int rc = mailbox_changes_since_nb(mb, m0, max, &nb);

		if (!answers || max < 3) {
			ck_assert_int_eq(rc, ROOST_EAGAIN);
			ck_assert_ptr_null(nb.changed);
			ck_assert_ptr_null(nb.expunged);
			ck_assert_uint_eq(nb.n_changed + nb.n_expunged, 0);
			continue;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(nb.n_changed, ch.n_changed);
		for (size_t i = 0; i < ch.n_changed; i++) {
			ck_assert_uint_eq(nb.changed[i].uid, ch.changed[i].uid);
			ck_assert_uint_eq(nb.changed[i].flags, ch.changed[i].flags);
			ck_assert_uint_eq(nb.changed[i].modseq, ch.changed[i].modseq);
		}
		ck_assert_uint_eq(nb.n_expunged, 1);
		ck_assert_uint_eq(nb.expunged[0], u[2]);
		ck_assert(nb.expunged_complete);
		ck_assert_uint_eq(nb.highestmodseq, ch.highestmodseq);
		ck_assert_uint_eq(nb.uidnext, ch.uidnext);
		mailbox_changes_free(&nb);
	}
	mailbox_changes_free(&ch);
	/* Nothing new: an empty answer, not a refusal. */
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_int_eq(mailbox_changes_since_nb(mb, s.highestmodseq, 1, &nb),
	                 answers ? 0 : ROOST_EAGAIN);
	ck_assert_uint_eq(nb.n_changed + nb.n_expunged, 0);
	mailbox_changes_free(&nb);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/* Sessions of one mailbox at the same modseq may get one shared answer
 * (LMDB keeps the last one per mailbox): every later question must still
 * see each change committed before it, through another handle, after a
 * \Recent claim or a commit elsewhere left the mailbox as it was, and a
 * question at another modseq gets its own answer. */
START_TEST(changes_since_nb_shared)
{
	struct mailbox *a, *b;
	struct mailbox_changes ca, cb;
	struct mailbox_status s;
	uint32_t u0, u1, u2, first, next, *mod;
	size_t nmod;
	uint64_t m0, m1;

	setup_backend(_i);
	if (strcmp(storage_backend_name(st), "lmdb") != 0) {
		teardown_backend();
		return;
	}
	u0 = append_simple("INBOX", 0);
	ck_assert_int_eq(storage_create(st, USER, "Other", 0), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &a), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &b), 0);
	ck_assert_int_eq(mailbox_status(a, &s), 0);
	m0 = s.highestmodseq;
	u1 = append_simple("INBOX", 1);
	/* the same question twice, then after commits that leave INBOX as
	 * it was: the same answer */
	for (int k = 0; k < 3; k++) {
		ck_assert_int_eq(mailbox_changes_since_nb(k == 1 ? b : a, m0, 4, &ca), 0);
		ck_assert_uint_eq(ca.n_changed, 1);
		ck_assert_uint_eq(ca.changed[0].uid, u1);
		ck_assert_uint_eq(ca.n_expunged, 0);
		ck_assert(ca.expunged_complete);
		mailbox_changes_free(&ca);
		(void)append_simple("Other", 10 + k);
		ck_assert_int_eq(mailbox_claim_recent(b, &first, &next), 0);
	}
	/* a flag change and a new message through b: a's next question at
	 * m0 sees both, as does b's */
	ck_assert_int_eq(mailbox_store(b, &u0, 1, &seen_add, &mod, &nmod), 0);
	free(mod);
	u2 = append_simple("INBOX", 2);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(mailbox_changes_since_nb(k == 0 ? a : b, m0, 4, &ca), 0);
		ck_assert_uint_eq(ca.n_changed, 3);
		ck_assert_uint_eq(ca.changed[0].uid, u0);
		ck_assert_uint_eq(ca.changed[0].flags, MSG_SEEN);
		ck_assert_uint_eq(ca.changed[1].uid, u1);
		ck_assert_uint_eq(ca.changed[2].uid, u2);
		mailbox_changes_free(&ca);
	}
	/* an expunge moves it again; another modseq has its own answer */
	ck_assert_int_eq(mailbox_expunge(a, &u1, 1), 0);
	ck_assert_int_eq(mailbox_changes_since_nb(b, m0, 4, &ca), 0);
	ck_assert_uint_eq(ca.n_changed, 2);
	ck_assert_uint_eq(ca.n_expunged, 1);
	ck_assert_uint_eq(ca.expunged[0], u1);
	ck_assert_int_eq(mailbox_status(a, &s), 0);
	m1 = s.highestmodseq;
	ck_assert_int_eq(mailbox_changes_since_nb(a, m1, 4, &cb), 0);
	ck_assert_uint_eq(cb.n_changed + cb.n_expunged, 0);
	ck_assert_uint_eq(cb.highestmodseq, ca.highestmodseq);
	mailbox_changes_free(&cb);
	ck_assert_int_eq(mailbox_changes_since(a, m0, &cb), 0);
	ck_assert_uint_eq(cb.n_changed, ca.n_changed);
	ck_assert_uint_eq(cb.n_expunged, ca.n_expunged);
	mailbox_changes_free(&cb);
	mailbox_changes_free(&ca);
	mailbox_close(&a);
	mailbox_close(&b);
	assert_clean();
	teardown_backend();
}
END_TEST

/* Sessions of one mailbox asking from the same modseq while another
 * handle changes it (LMDB shares their answers): every answer is the one
 * snapshot's whole state, and never older than a change committed before
 * the question was asked. A writer sets and clears \Seen on MEMO_RACE_N
 * messages in turn; round r (from 0) leaves HIGHESTMODSEQ at m0 + r + 1,
 * so the answer at HIGHESTMODSEQ m0 + k is known exactly. */
#define MEMO_RACE_N 8
#define MEMO_RACE_ROUNDS 400
#define MEMO_RACE_READERS 4

struct memo_race {
	uint32_t uids[MEMO_RACE_N];
	uint64_t m0;
	_Atomic uint64_t committed; /* rounds done */
	_Atomic bool stop;
	_Atomic int bad;
	_Atomic unsigned long answers;
	_Atomic int readers_answered; /* readers with at least one answer */
};

/* The answer since m0 after k rounds: every message touched so far, each
 * with the modseq and \Seen of the last round that touched it. */
static bool
memo_race_ok(const struct memo_race *r, const struct mailbox_changes *ch)
{
	uint64_t k = ch->highestmodseq - r->m0;
	size_t want = k < MEMO_RACE_N ? (size_t)k : MEMO_RACE_N;

	if (ch->highestmodseq < r->m0 || k > MEMO_RACE_ROUNDS || ch->n_changed != want ||
	    ch->n_expunged != 0 || !ch->expunged_complete)
		return false;
	for (size_t i = 0; i < ch->n_changed; i++) {
		uint64_t last = (k - 1) - ((k - 1 - i) % MEMO_RACE_N); /* last round on i */
		bool seen = (last / MEMO_RACE_N) % 2 == 0;

		if (ch->changed[i].uid != r->uids[i] || ch->changed[i].modseq != r->m0 + last + 1 ||
		    ((ch->changed[i].flags & MSG_SEEN) != 0) != seen)
			return false;
	}
	return true;
}

static void *
memo_race_reader(void *arg)
{
	struct memo_race *r = arg;
	struct mailbox *mb;

	if (mailbox_open(st, USER, "INBOX", 0, &mb) != 0) {
		atomic_fetch_add(&r->bad, 1);
		return NULL;
	}
	for (bool first = true; !atomic_load(&r->stop); first = false) {
		uint64_t before = atomic_load(&r->committed);
		struct mailbox_changes ch = {0};
		int rc = mailbox_changes_since_nb(mb, r->m0, 32, &ch);

		if (rc != 0 || !memo_race_ok(r, &ch) || ch.highestmodseq < r->m0 + before)
			atomic_fetch_add(&r->bad, 1);
		atomic_fetch_add(&r->answers, 1);
		if (first)
			atomic_fetch_add(&r->readers_answered, 1);
		mailbox_changes_free(&ch);
	}
	mailbox_close(&mb);
	return NULL;
}

START_TEST(changes_since_nb_shared_race)
{
	static const struct store_req seen_del = {.mode = STORE_REMOVE, .flags = MSG_SEEN};
	struct memo_race r = {.committed = 0};
	pthread_t th[MEMO_RACE_READERS];
	struct mailbox *mb;
	struct mailbox_status s;
	struct mailbox_changes ch;

	setup_dir(_i);
	if (strcmp(backend, "lmdb") != 0) { /* the others answer ROOST_EAGAIN */
		teardown_backend();
		return;
	}
	cfg.storage_fsync = false; /* the race is the point, not the disk */
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	for (int i = 0; i < MEMO_RACE_N; i++)
		r.uids[i] = append_simple("INBOX", i);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	r.m0 = s.highestmodseq;
	for (int i = 0; i < MEMO_RACE_READERS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, memo_race_reader, &r), 0);
	for (uint64_t k = 0; k < MEMO_RACE_ROUNDS; k++) {
		uint32_t *mod;
		size_t nmod;

		ck_assert_int_eq(mailbox_store(mb, &r.uids[k % MEMO_RACE_N], 1,
		                               (k / MEMO_RACE_N) % 2 == 0 ? &seen_add : &seen_del,
		                               &mod, &nmod),
		                 0);
		free(mod);
		atomic_store(&r.committed, k + 1);
		/* a question between the rounds, from this thread too */
		ck_assert_int_eq(mailbox_changes_since_nb(mb, r.m0, 32, &ch), 0);
		ck_assert(memo_race_ok(&r, &ch));
		ck_assert_uint_eq(ch.highestmodseq, r.m0 + k + 1);
		mailbox_changes_free(&ch);
	}
	/* On a loaded machine the readers may not have run yet: every one
	 * answers at least once before they stop (bounded: 60 s). */
	for (int ms = 0; atomic_load(&r.readers_answered) < MEMO_RACE_READERS && ms < 60000; ms++)
		usleep(1000);
	atomic_store(&r.stop, true);
	for (int i = 0; i < MEMO_RACE_READERS; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&r.bad), 0);
	ck_assert_int_eq(atomic_load(&r.readers_answered), MEMO_RACE_READERS);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/* A mailbox deleted while it has children stays as their \Noselect
 * parent; created again it is a new mailbox (a new UIDVALIDITY). A handle
 * opened on the old one must not take the new one's changes for its own:
 * its messages are gone, so it gets ROOST_ENOTFOUND (or every old UID
 * expunged), never an answer that keeps them. */
START_TEST(changes_after_recreate_over_parent)
{
	struct mailbox *a, *b;
	struct mailbox_status s0, s1;
	struct mailbox_changes ch;
	uint32_t u[3];
	int rc;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Foo", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "Foo/Bar", 0), 0);
	for (int i = 0; i < 3; i++)
		u[i] = append_simple("Foo", i);
	ck_assert_int_eq(mailbox_open(st, USER, "Foo", 0, &a), 0);
	ck_assert_int_eq(mailbox_status(a, &s0), 0);
	ck_assert_int_eq(storage_delete(st, USER, "Foo"), 0);
	ck_assert_int_eq(storage_create(st, USER, "Foo", 0), 0);
	(void)append_simple("Foo", 9);
	ck_assert_int_eq(storage_status(st, USER, "Foo", &s1), 0);
	ck_assert_uint_ne(s1.uidvalidity, s0.uidvalidity);
	/* a handle of the new mailbox asks from the same modseq first: its
	 * answer (LMDB keeps it for the mailbox's id) is not the old one's.
	 * (Maildir starts the new mailbox's MODSEQs again, PostgreSQL answers
	 * only on a worker.) */
	ck_assert_int_eq(mailbox_open(st, USER, "Foo", 0, &b), 0);
	rc = mailbox_changes_since_nb(b, s0.highestmodseq, 32, &ch);
	if (rc == ROOST_EAGAIN)
		rc = mailbox_changes_since(b, s0.highestmodseq, &ch);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(ch.n_changed, s1.highestmodseq > s0.highestmodseq ? 1 : 0);
	mailbox_changes_free(&ch);
	for (int k = 0; k < 2; k++) {
		rc = k == 1 ? mailbox_changes_since(a, s0.highestmodseq, &ch)
		            : mailbox_changes_since_nb(a, s0.highestmodseq, 32, &ch);
		if (rc == ROOST_EAGAIN && k == 0)
			continue;
		if (rc == 0) {
			/* then the old messages are gone from its answer */
			ck_assert_msg(ch.n_expunged >= 3 || !ch.expunged_complete,
			              "%s: old messages kept (%zu expunged, %zu changed)", backend,
			              ch.n_expunged, ch.n_changed);
			mailbox_changes_free(&ch);
		} else {
			ck_assert_int_eq(rc, ROOST_ENOTFOUND);
		}
	}
	(void)u;
	mailbox_close(&a);
	/* the new handle sees the new mailbox */
	ck_assert_int_eq(mailbox_status(b, &s0), 0);
	ck_assert_uint_eq(s0.messages, 1);
	mailbox_close(&b);
	assert_clean();
	teardown_backend();
}
END_TEST

START_TEST(mailbox_tree)
{
	struct mailbox_info *list;
	struct mailbox_status s;
	size_t n;
	uint32_t uid;

	setup_backend(_i);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(has_attr(list, n, "INBOX", MBOX_HASNOCHILDREN));
	ck_assert(has_attr(list, n, "Drafts", MBOX_DRAFTS));
	ck_assert(has_attr(list, n, "Sent", MBOX_SENT));
	ck_assert(has_attr(list, n, "Trash", MBOX_TRASH));
	ck_assert(has_attr(list, n, "Junk", MBOX_JUNK));
	ck_assert(has_attr(list, n, "Archive", MBOX_ARCHIVE));
	for (size_t i = 1; i < n; i++)
		ck_assert_int_lt(strcmp(list[i - 1].name, list[i].name), 0);
	storage_list_free(list, n);
	ck_assert_int_eq(storage_user_init(st, USER), 0); /* idempotent */

	ck_assert_int_eq(storage_create(st, USER, "a/b/c", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "a-b", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "INBOX", 0), ROOST_EEXISTS);
	ck_assert_int_eq(storage_create(st, USER, "a/b", 0), ROOST_EEXISTS);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(has_attr(list, n, "a", MBOX_HASCHILDREN));
	ck_assert(has_attr(list, n, "a/b", MBOX_HASCHILDREN));
	ck_assert(has_attr(list, n, "a/b/c", MBOX_HASNOCHILDREN));
	ck_assert(has_attr(list, n, "a-b", MBOX_HASNOCHILDREN));
	ck_assert(!has_attr(list, n, "a", MBOX_NOSELECT));
	storage_list_free(list, n);

	/* delete with children: \Noselect, messages gone */
	append_simple("a/b", 1);
	ck_assert_int_eq(storage_delete(st, USER, "a/b"), 0);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(has_attr(list, n, "a/b", MBOX_NOSELECT | MBOX_HASCHILDREN));
	storage_list_free(list, n);
	ck_assert_int_eq(storage_status(st, USER, "a/b", &s), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_delete(st, USER, "a/b"), ROOST_EPERM);
	ck_assert_int_eq(storage_delete(st, USER, "INBOX"), ROOST_EPERM);
	ck_assert_int_eq(storage_delete(st, USER, "inbox"), ROOST_EPERM);
	ck_assert_int_eq(storage_delete(st, USER, "nope"), ROOST_ENOTFOUND);

	/* rename with children */
	append_simple("a/b/c", 2);
	ck_assert_int_eq(storage_rename(st, USER, "a", "a/x"), ROOST_EINVAL);
	ck_assert_int_eq(storage_rename(st, USER, "a", "a"), ROOST_EEXISTS);
	ck_assert_int_eq(storage_rename(st, USER, "a", "a-b"), ROOST_EEXISTS);
	ck_assert_int_eq(storage_rename(st, USER, "nope", "z"), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_rename(st, USER, "a", "z/y"), 0);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(!listed(list, n, "a"));
	ck_assert(!listed(list, n, "a/b/c"));
	ck_assert(listed(list, n, "z"));
	ck_assert(listed(list, n, "z/y"));
	ck_assert(has_attr(list, n, "z/y/b", MBOX_NOSELECT));
	ck_assert(listed(list, n, "z/y/b/c"));
	storage_list_free(list, n);
	ck_assert_int_eq(storage_status(st, USER, "z/y/b/c", &s), 0);
	ck_assert_uint_eq(s.messages, 1);

	/* INBOX rename: messages move, INBOX stays, empty */
	append_simple("INBOX", 3);
	append_simple("INBOX", 4);
	ck_assert_int_eq(storage_create(st, USER, "INBOX/child", 0), 0);
	ck_assert_int_eq(storage_rename(st, USER, "INBOX", "Old"), 0);
	ck_assert_int_eq(storage_status(st, USER, "Old", &s), 0);
	ck_assert_uint_eq(s.messages, 2);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.messages, 0);
	ck_assert_int_eq(storage_status(st, USER, "INBOX/child", &s), 0);
	ck_assert_int_eq(append_bytes("INBOX", "x", 1, 0, &uid), 0);
	ck_assert_int_eq(storage_rename(st, USER, "Old", "INBOX"), ROOST_EEXISTS);

	/* subscriptions */
	ck_assert_int_eq(storage_subscribe(st, USER, "z/y", true), 0);
	ck_assert_int_eq(storage_subscribe(st, USER, "Gone", true), 0);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(has_attr(list, n, "z/y", MBOX_SUBSCRIBED));
	ck_assert(has_attr(list, n, "Gone", MBOX_SUBSCRIBED | MBOX_NONEXISTENT));
	ck_assert(!has_attr(list, n, "z", MBOX_SUBSCRIBED));
	storage_list_free(list, n);
	ck_assert_int_eq(storage_subscribe(st, USER, "Gone", false), 0);
	reopen();
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(!listed(list, n, "Gone"));
	ck_assert(has_attr(list, n, "z/y", MBOX_SUBSCRIBED));
	storage_list_free(list, n);
	assert_clean();
	teardown_backend();
}
END_TEST

/*
 * A new user gets INBOX and the special-use folders, every one subscribed,
 * the same on every backend and whichever way the user first arrives (a
 * login's storage_user_init(), a delivery). Folders the user deletes later
 * are not made again.
 */
static void
assert_default_folders(const char *user)
{
	static const struct {
		const char *name;
		unsigned attr;
	} want[] = {
	    {"INBOX", 0},          {"Drafts", MBOX_DRAFTS}, {"Sent", MBOX_SENT},
	    {"Trash", MBOX_TRASH}, {"Junk", MBOX_JUNK},     {"Archive", MBOX_ARCHIVE},
	};
	struct mailbox_info *list;
	size_t n;

	ck_assert_int_eq(storage_list(st, user, &list, &n), 0);
	ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!has_attr(list, n, want[i].name, MBOX_SUBSCRIBED | want[i].attr))
			ck_abort_msg("%s: %s not listed subscribed with attributes %#x", backend,
			             want[i].name, want[i].attr);
	}
	storage_list_free(list, n);
}

START_TEST(default_folders)
{
	struct delivery_target t = {.user = "new@example.com", .mailbox = "INBOX"};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: hi\r\n\r\nx\r\n", .len = 18, .fd = -1};
	struct mailbox_info *list;
	size_t n;

	setup_backend(_i);
	assert_default_folders(USER);
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, 0), 0);
	assert_default_folders("new@example.com");

	ck_assert_int_eq(storage_delete(st, USER, "Junk"), 0);
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	reopen();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	ck_assert_int_eq(storage_list(st, USER, &list, &n), 0);
	ck_assert(!has_attr(list, n, "Junk", MBOX_JUNK));
	storage_list_free(list, n);
	assert_clean();
	teardown_backend();
}
END_TEST

START_TEST(status_store_copy)
{
	struct mailbox *mb, *ro;
	struct mailbox_status s;
	struct msg_record *recs;
	struct store_req req = {.mode = STORE_ADD, .flags = MSG_SEEN};
	const char *kw[] = {"Work"};
	uint32_t u[4], *mod, *src, *dst, uidv, first;
	size_t n, nmod;
	uint64_t hms;
	struct buf b = BUF_INIT(0);

	setup_backend(_i);
	for (int i = 0; i < 4; i++)
		u[i] = append_simple("INBOX", i);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.messages, 4);
	ck_assert_uint_eq(s.unseen, 4);
	ck_assert_uint_eq(s.recent, 4);
	ck_assert_uint_eq(s.uidnext, u[3] + 1);
	ck_assert_uint_eq(s.first_unseen_uid, u[0]);
	ck_assert_uint_gt(s.size, 0);

	/* \Recent claimed once */
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", MAILBOX_READONLY, &ro), 0);
	ck_assert_int_eq(mailbox_claim_recent(ro, &first, NULL), 0);
	ck_assert_uint_eq(first, u[0]);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_claim_recent(mb, &first, NULL), 0);
	ck_assert_uint_eq(first, u[0]);
	ck_assert_int_eq(mailbox_claim_recent(mb, &first, NULL), 0);
	ck_assert_uint_eq(first, u[3] + 1);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_uint_eq(s.recent, 0);

	/* read-only refuses writes */
	ck_assert_int_eq(mailbox_store(ro, u, 1, &req, &mod, &nmod), ROOST_EPERM);
	ck_assert_int_eq(mailbox_expunge(ro, u, 1), ROOST_EPERM);
	ck_assert_int_eq(
	    mailbox_append(
	        ro, &(struct msg_input){.data = (const uint8_t *)"x", .len = 1, .fd = -1}, &first),
	    ROOST_EPERM);
	ck_assert_int_eq(mailbox_copy(ro, u, 1, "Trash", true, &uidv, &src, &dst, &n), ROOST_EPERM);

	/* store, validation */
	ck_assert_int_eq(mailbox_store(mb, (uint32_t[]){3, 2}, 2, &req, &mod, &nmod), ROOST_EINVAL);
	req.flags = 1u << 7;
	ck_assert_int_eq(mailbox_store(mb, u, 1, &req, &mod, &nmod), ROOST_EINVAL);
	req.flags = MSG_SEEN | MSG_FLAGGED;
	req.keywords = kw;
	req.n_keywords = 1;
	ck_assert_int_eq(mailbox_store(mb, u, 2, &req, &mod, &nmod), 0);
	ck_assert_uint_eq(nmod, 0);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_uint_eq(s.unseen, 2);
	ck_assert_uint_eq(s.first_unseen_uid, u[2]);
	hms = s.highestmodseq;
	/* UNCHANGEDSINCE: u0 changed again after hms-1 */
	req.mode = STORE_REMOVE;
	req.flags = MSG_FLAGGED;
	req.n_keywords = 0;
	ck_assert_int_eq(mailbox_store(mb, u, 1, &req, &mod, &nmod), 0);
	req.mode = STORE_REPLACE;
	req.flags = MSG_ANSWERED;
	req.unchanged_since = hms;
	ck_assert_int_eq(mailbox_store(mb, u, 3, &req, &mod, &nmod), 0);
	ck_assert_uint_eq(nmod, 1);
	ck_assert_uint_eq(mod[0], u[0]);
	free(mod);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN);
	ck_assert_uint_eq(recs[0].keywords, 1);
	ck_assert_uint_eq(recs[1].flags, MSG_ANSWERED);
	ck_assert_uint_eq(recs[1].keywords, 0);
	ck_assert_uint_eq(recs[2].flags, MSG_ANSWERED);
	ck_assert_uint_eq(recs[3].flags, 0);
	free(recs);

	/* cache: the record storage_append() made, then replaced */
	ck_assert_int_eq(mailbox_cache_get(mb, u[1], &b), 0);
	ck_assert_uint_ge(b.len, 3);
	ck_assert_int_eq(memcmp(b.data, "R5 ", 3), 0);
	buf_reset(&b);
	ck_assert_int_eq(mailbox_cache_set(mb, u[1], "envelope", 8), 0);
	ck_assert_int_eq(mailbox_cache_set(mb, u[2], "other", 5), 0);
	mailbox_close(&mb);
	mailbox_close(&ro);
	reopen(); /* cache fills are flushed by close */
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_cache_get(mb, u[1], &b), 0);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_int_eq(memcmp(b.data, "envelope", 8), 0);

	/* copy and move */
	ck_assert_int_eq(mailbox_copy(mb, (uint32_t[]){u[0], u[1], 999}, 3, "Trash", false, &uidv,
	                              &src, &dst, &n),
	                 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(src[0], u[0]);
	ck_assert_uint_eq(src[1], u[1]);
	ck_assert_uint_lt(dst[0], dst[1]);
	ck_assert_int_eq(storage_status(st, USER, "Trash", &s), 0);
	ck_assert_uint_eq(s.uidvalidity, uidv);
	ck_assert_uint_eq(s.messages, 2);
	free(src);
	free(dst);
	ck_assert_int_eq(mailbox_copy(mb, &u[2], 2, "Archive", true, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 2);
	free(src);
	free(dst);
	ck_assert_int_eq(mailbox_copy(mb, u, 1, "Nope", false, &uidv, &src, &dst, &n),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_uint_eq(s.messages, 2);
	mailbox_close(&mb);
	ck_assert_int_eq(mailbox_open(st, USER, "Trash", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN);
	ck_assert_uint_eq(recs[0].keywords != 0, 1); /* "Work" came along */
	free(recs);
	buf_reset(&b);
	mailbox_close(&mb);
	ck_assert_int_eq(mailbox_open(st, USER, "Archive", 0, &mb), 0);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_uint_eq(s.messages, 2);
	mailbox_close(&mb);
	buf_free(&b);
	assert_clean();
	teardown_backend();
}
END_TEST

/* UNCHANGEDSINCE refusing more messages than a store_result's first
 * allocation holds: every one listed, ascending, and none changed. */
START_TEST(store_modified_many)
{
	struct store_req req = {.mode = STORE_ADD, .flags = MSG_FLAGGED};
	struct mailbox_status s;
	struct msg_record *recs;
	struct mailbox *mb;
	uint32_t u[40], *mod;
	size_t n, nmod;
	uint64_t hms;

	setup_backend(_i);
	for (int i = 0; i < 40; i++)
		u[i] = append_simple("INBOX", i);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_int_eq(mailbox_store(mb, u, 40, &req, &mod, &nmod), 0);
	ck_assert_uint_eq(nmod, 0);
	ck_assert(mod == NULL);
	req.flags = MSG_SEEN;
	req.unchanged_since = s.highestmodseq;
	ck_assert_int_eq(mailbox_store(mb, u, 40, &req, &mod, &nmod), 0);
	ck_assert_uint_eq(nmod, 40);
	for (int i = 0; i < 40; i++)
		ck_assert_uint_eq(mod[i], u[i]);
	free(mod);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, 40);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(recs[i].flags, MSG_FLAGGED);
	free(recs);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/*
 * \Recent is claimed once: of several sessions on a mailbox, one gets each
 * new message, whichever claims first, and status counts only what nobody
 * claimed. The claim survives a restart (LMDB writes it after the claim
 * returned, in a later commit that closing the store waits for).
 */
/* The record of uid in mailbox name into *rec_r; false when absent. */
static bool
record_of(const char *name, uint32_t uid, struct msg_record *rec_r)
{
	struct mailbox *mb;
	struct msg_record *recs;
	size_t n;
	uint64_t hms;
	bool found = false;

	ck_assert_int_eq(mailbox_open(st, USER, name, MAILBOX_READONLY, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	for (size_t i = 0; i < n; i++) {
		if (recs[i].uid == uid) {
			*rec_r = recs[i];
			found = true;
		}
	}
	free(recs);
	mailbox_close(&mb);
	return found;
}

/* The EMAILID of uid in mailbox name (0 when absent). */
static uint64_t
emailid_of(const char *name, uint32_t uid)
{
	struct msg_record rec;

	return record_of(name, uid, &rec) ? rec.emailid : 0;
}

static void
mailboxid_of(const char *name, char out[STORAGE_MAILBOXID_MAX + 1])
{
	struct mailbox_status s;

	ck_assert_int_eq(storage_status(st, USER, name, &s), 0);
	ck_assert_uint_gt(strlen(s.mailboxid), 0);
	for (const char *p = s.mailboxid; *p != '\0'; p++)
		ck_assert(isalnum((unsigned char)*p) || *p == '-' || *p == '_');
	memcpy(out, s.mailboxid, STORAGE_MAILBOXID_MAX + 1);
}

/* The save date of uid in mailbox name (-1 when absent). */
static int64_t
save_date_of(const char *name, uint32_t uid)
{
	struct msg_record rec;

	return record_of(name, uid, &rec) ? rec.save_date : -1;
}

/* Until the clock has passed t (save dates are whole seconds). */
static void
wait_past(int64_t t)
{
	while ((int64_t)time(NULL) <= t)
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
}

/* RFC 8514: the save date is when the message was put in its mailbox:
 * append and delivery set it, COPY and MOVE give the new message the time
 * of the copy, not the original's (the internal date is kept), and it
 * survives a restart and a flag change. */
START_TEST(save_dates)
{
	struct delivery_target t = {.user = USER, .mailbox = "INBOX"};
	const char text[] = "Subject: d\r\n\r\nbody\r\n";
	struct msg_input in = {.data = (const uint8_t *)text, .len = sizeof(text) - 1, .fd = -1};
	struct mailbox *mb;
	struct store_req req = {.mode = STORE_ADD, .flags = MSG_FLAGGED};
	struct msg_record *recs;
	uint32_t u1, uidv, *src, *dst, *mod;
	uint64_t hms;
	int64_t t0, s1, s2;
	size_t n, nmod;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "Other", 0), 0);
	t0 = (int64_t)time(NULL);
	u1 = append_simple("Box", 1);
	s1 = save_date_of("Box", u1);
	ck_assert_int_ge(s1, t0);
	ck_assert_int_le(s1, (int64_t)time(NULL));
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, 0), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", MAILBOX_READONLY, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_ge(n, 1);
	ck_assert_int_ge(recs[n - 1].save_date, t0);
	free(recs);
	mailbox_close(&mb);

	wait_past(s1);
	ck_assert_int_eq(mailbox_open(st, USER, "Box", 0, &mb), 0);
	ck_assert_int_eq(mailbox_store(mb, &u1, 1, &req, &mod, &nmod), 0);
	free(mod);
	ck_assert_int_eq(mailbox_copy(mb, &u1, 1, "Other", false, &uidv, &src, &dst, &n), 0);
	mailbox_close(&mb);
	ck_assert_uint_eq(n, 1);
	s2 = save_date_of("Other", dst[0]);
	ck_assert_int_gt(s2, s1);
	ck_assert_int_eq(save_date_of("Box", u1), s1); /* a flag change keeps it */
	free(src);
	free(dst);

	wait_past(s2);
	ck_assert_int_eq(mailbox_open(st, USER, "Box", 0, &mb), 0);
	ck_assert_int_eq(mailbox_copy(mb, &u1, 1, "Other", true, &uidv, &src, &dst, &n), 0);
	mailbox_close(&mb);
	ck_assert_uint_eq(n, 1);
	s2 = save_date_of("Other", dst[0]);
	ck_assert_int_gt(s2, s1);
	reopen();
	ck_assert_int_eq(save_date_of("Other", dst[0]), s2);
	ck_assert_int_eq(save_date_of("Box", u1), -1);
	free(src);
	free(dst);
	teardown_backend();
}
END_TEST

/* storage_deliver() stores the parse cache record with every copy (made
 * once: RFC 8970's preview among it), in the delivery's own commit, and so
 * does storage_append() (IMAP APPEND), a delivery to one mailbox; a
 * message with bare LFs gets none (FETCH makes it from the CRLF form). */
START_TEST(deliver_cache)
{
	struct delivery_target t[2] = {{.user = USER, .mailbox = "INBOX"},
	                               {.user = USER, .mailbox = "Box"}};
	const char text[] = "From: a@example.org\r\nSubject: cached\r\n\r\nHello there, "
	                    "this is the preview.\r\n";
	const char bare[] = "From: a@example.org\nSubject: bare\n\nbare LF\n";
	struct msg_input in = {.data = (const uint8_t *)text, .len = sizeof(text) - 1, .fd = -1};
	struct message_cache pc = {.raw = BUF_INIT(0)};
	struct mailbox *mb;
	uint32_t u;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	ck_assert_int_eq(storage_deliver(st, &in, t, 2, 0), 0);
	reopen(); /* durable with the message, not a later lazy write */
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(mailbox_open(st, USER, t[k].mailbox, MAILBOX_READONLY, &mb), 0);
		buf_reset(&pc.raw);
		ck_assert_int_eq(mailbox_cache_get(mb, t[k].uid, &pc.raw), 0);
		ck_assert(message_cache_decode(&pc));
		ck_assert(pc.have_parts && pc.have_preview);
		ck_assert_uint_eq(pc.vsize, sizeof(text) - 1);
		ck_assert_msg(pc.pv_len == 33 &&
		                  memcmp(pc.pv, "Hello there, this is the preview.", 33) == 0,
		              "preview \"%.*s\"", (int)pc.pv_len, pc.pv);
		ck_assert_ptr_nonnull(memmem(pc.env, pc.env_len, "\"cached\"", 8));
		mailbox_close(&mb);
	}
	/* bare LFs: none; an APPEND: one */
	in.data = (const uint8_t *)bare;
	in.len = sizeof(bare) - 1;
	ck_assert_int_eq(storage_deliver(st, &in, t, 1, 0), 0);
	u = append_simple("Box", 9);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", MAILBOX_READONLY, &mb), 0);
	buf_reset(&pc.raw);
	ck_assert_int_eq(mailbox_cache_get(mb, t[0].uid, &pc.raw), ROOST_ENOTFOUND);
	mailbox_close(&mb);
	ck_assert_int_eq(mailbox_open(st, USER, "Box", MAILBOX_READONLY, &mb), 0);
	buf_reset(&pc.raw);
	ck_assert_int_eq(mailbox_cache_get(mb, u, &pc.raw), 0);
	ck_assert(message_cache_decode(&pc) && pc.have_preview);
	ck_assert_int_eq(memcmp(pc.pv, "body 9", pc.pv_len), 0);
	mailbox_close(&mb);
	buf_free(&pc.raw);
	teardown_backend();
}
END_TEST

/* RFC 8474: MAILBOXID survives restarts and RENAME, a mailbox made again
 * under an old name gets another; EMAILID survives restarts and is kept by
 * COPY and MOVE; two appends of the same bytes get two. */
START_TEST(object_ids)
{
	char a[STORAGE_MAILBOXID_MAX + 1], b[STORAGE_MAILBOXID_MAX + 1],
	    c[STORAGE_MAILBOXID_MAX + 1];
	struct mailbox *mb;
	struct mailbox_status ms;
	uint32_t u1, u2, uidv, *src, *dst;
	uint64_t e1, e2;
	size_t n;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "Other", 0), 0);
	mailboxid_of("Box", a);
	mailboxid_of("Other", b);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(mailbox_open(st, USER, "Box", 0, &mb), 0);
	ck_assert_int_eq(mailbox_status(mb, &ms), 0);
	ck_assert_str_eq(ms.mailboxid, a);
	mailbox_close(&mb);

	u1 = append_simple("Box", 1);
	u2 = append_simple("Box", 1); /* the same bytes again */
	e1 = emailid_of("Box", u1);
	e2 = emailid_of("Box", u2);
	ck_assert_uint_ne(e1, 0);
	ck_assert_uint_ne(e2, 0);
	ck_assert_uint_ne(e1, e2);

	reopen();
	mailboxid_of("Box", c);
	ck_assert_str_eq(c, a);
	ck_assert_uint_eq(emailid_of("Box", u1), e1);

	/* rename keeps the mailbox's id and its messages' ids */
	ck_assert_int_eq(storage_rename(st, USER, "Box", "Renamed/Box"), 0);
	mailboxid_of("Renamed/Box", c);
	ck_assert_str_eq(c, a);
	ck_assert_uint_eq(emailid_of("Renamed/Box", u1), e1);
	/* a new mailbox under the old name is another mailbox */
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	mailboxid_of("Box", c);
	ck_assert_str_ne(c, a);

	/* COPY and MOVE keep the EMAILID */
	ck_assert_int_eq(mailbox_open(st, USER, "Renamed/Box", 0, &mb), 0);
	ck_assert_int_eq(mailbox_copy(mb, &u1, 1, "Other", false, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(emailid_of("Other", dst[0]), e1);
	free(src);
	free(dst);
	ck_assert_int_eq(mailbox_copy(mb, &u2, 1, "Box", true, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	mailbox_close(&mb);
	ck_assert_uint_eq(emailid_of("Box", dst[0]), e2);
	ck_assert_uint_eq(emailid_of("Renamed/Box", u2), 0);
	/* the expunge log names the EMAILID that left */
	ck_assert_int_eq(mailbox_open(st, USER, "Renamed/Box", 0, &mb), 0);
	{
		struct mailbox_changes ch;
		bool seen = false;

		ck_assert_int_eq(mailbox_changes_since(mb, 1, &ch), 0);
		ck_assert_ptr_nonnull(ch.expunged_emailids);
		for (size_t i = 0; i < ch.n_expunged; i++) {
			if (ch.expunged[i] == u2) {
				ck_assert_uint_eq(ch.expunged_emailids[i], e2);
				seen = true;
			}
		}
		ck_assert(seen);
		mailbox_changes_free(&ch);
	}
	mailbox_close(&mb);
	reopen();
	ck_assert_uint_eq(emailid_of("Box", dst[0]), e2);
	free(src);
	free(dst);

	/* deleted and made again: another id */
	mailboxid_of("Other", a);
	ck_assert_int_eq(storage_delete(st, USER, "Other"), 0);
	ck_assert_int_eq(storage_create(st, USER, "Other", 0), 0);
	mailboxid_of("Other", c);
	ck_assert_str_ne(c, a);
	teardown_backend();
}
END_TEST

static void
meta_set1(const char *mbox, const char *name, const char *value, int want)
{
	const uint8_t *v = (const uint8_t *)value;
	size_t len = value != NULL ? strlen(value) : 0;

	ck_assert_int_eq(storage_metadata_set(st, USER, mbox, &name, &v, &len, 1), want);
}

/* The value of one entry, NULL when absent. */
static char *
meta_get1(const char *mbox, const char *name)
{
	struct metadata_entry *l;
	size_t n;
	char *v = NULL;

	ck_assert_int_eq(storage_metadata_get(st, USER, mbox, name, 0, &l, &n), 0);
	ck_assert_uint_le(n, 1);
	if (n == 1)
		v = strndup((const char *)l[0].value, l[0].len);
	storage_metadata_free(l, n);
	return v;
}

static void
assert_meta(const char *mbox, const char *name, const char *want)
{
	char *v = meta_get1(mbox, name);

	if (want == NULL)
		ck_assert_ptr_null(v);
	else
		ck_assert_str_eq(v != NULL ? v : "(none)", want);
	free(v);
}

/* RFC 5464 entries on every backend: set, get with depth, remove, limits,
 * names refused, kept across a restart, moved by rename, gone with the
 * mailbox, the server's apart from INBOX's. */
START_TEST(metadata)
{
	struct metadata_entry *l;
	size_t n;
	char big[STORAGE_METADATA_MAX_VALUE + 2];
	const char *names[3] = {"/private/a/b", "/private/a/c", "/Shared/Comment"};
	const uint8_t *vals[3] = {(const uint8_t *)"1", (const uint8_t *)"2\0x",
	                          (const uint8_t *)"c"};
	size_t lens[3] = {1, 3, 1};

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	ck_assert_int_eq(storage_metadata_set(st, USER, "Box", names, vals, lens, 3), 0);
	meta_set1("", "/shared/comment", "server", 0);
	meta_set1("INBOX", "/shared/comment", "inbox", 0);
	assert_meta("Box", "/shared/comment", "c");
	assert_meta("Box", "/SHARED/COMMENT", "c"); /* names without regard to case */
	ck_assert_int_eq(storage_metadata_get(st, USER, "box", "/shared", 0, &l, &n),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Box", "/shared", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 1);
	storage_metadata_free(l, n);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Box", "/bogus", -1, &l, &n), ROOST_EINVAL);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Box", "/private/a", 1, &l, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(l[0].name, "/private/a/b");
	ck_assert_uint_eq(l[1].len, 3); /* NUL kept */
	ck_assert(memcmp(l[1].value, "2\0x", 3) == 0);
	storage_metadata_free(l, n);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Box", "/private", 0, &l, &n), 0);
	ck_assert_uint_eq(n, 0);
	storage_metadata_free(l, n);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Box", "/private", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 2);
	storage_metadata_free(l, n);
	assert_meta("", "/shared/comment", "server");
	assert_meta("INBOX", "/shared/comment", "inbox");

	/* names and limits */
	meta_set1("Box", "/private", "x", ROOST_EINVAL);
	meta_set1("Box", "/other/x", "x", ROOST_EINVAL);
	meta_set1("Box", "/private/a*", "x", ROOST_EINVAL);
	meta_set1("Box", "/private//x", "x", ROOST_EINVAL);
	meta_set1("Box", "/private/x/", "x", ROOST_EINVAL);
	meta_set1("Box", "/private/\x01", "x", ROOST_EINVAL);
	meta_set1("Nope", "/private/x", "x", ROOST_ENOTFOUND);
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	meta_set1("Box", "/private/big", big, ROOST_ETOOBIG);
	big[STORAGE_METADATA_MAX_VALUE] = '\0';
	meta_set1("Box", "/private/big", big, 0);
	{
		/* the total: about STORAGE_METADATA_MAX_TOTAL / MAX_VALUE of them */
		int i, rc = 0;

		for (i = 0; i < 100 && rc == 0; i++) {
			char nm[32];
			const char *np = nm;
			const uint8_t *vp = (const uint8_t *)big;
			size_t len = STORAGE_METADATA_MAX_VALUE;

			snprintf(nm, sizeof(nm), "/private/big%d", i);
			rc = storage_metadata_set(st, USER, "Box", &np, &vp, &len, 1);
		}
		ck_assert_int_eq(rc, ROOST_EOVERQUOTA);
		/* "/private/big" and the small ones take one more's room */
		ck_assert_int_eq(i - 1,
		                 STORAGE_METADATA_MAX_TOTAL / STORAGE_METADATA_MAX_VALUE - 2);
		while (i-- > 0) {
			char nm[32];

			snprintf(nm, sizeof(nm), "/private/big%d", i);
			meta_set1("Box", nm, NULL, 0);
		}
	}
	for (int i = 0; i < STORAGE_METADATA_MAX_ENTRIES; i++) {
		char nm[32];

		snprintf(nm, sizeof(nm), "/private/n%d", i);
		meta_set1("Other", nm, NULL, ROOST_ENOTFOUND);
		meta_set1("INBOX", nm, "v",
		          i < STORAGE_METADATA_MAX_ENTRIES - 1 ? 0 : ROOST_EOVERQUOTA);
	}
	meta_set1("Box", "/private/big", NULL, 0);
	assert_meta("Box", "/private/big", NULL);
	meta_set1("Box", "/private/never", NULL, 0); /* absent: fine */

	reopen();
	assert_meta("Box", "/private/a/b", "1");
	/* rename moves them, a new mailbox under the old name has none */
	ck_assert_int_eq(storage_rename(st, USER, "Box", "Moved"), 0);
	assert_meta("Moved", "/private/a/b", "1");
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	assert_meta("Box", "/private/a/b", NULL);
	/* delete takes them, also when the mailbox stays as a parent */
	ck_assert_int_eq(storage_create(st, USER, "Moved/child", 0), 0);
	ck_assert_int_eq(storage_delete(st, USER, "Moved"), 0);
	ck_assert_int_eq(storage_create(st, USER, "Moved", 0), 0);
	assert_meta("Moved", "/private/a/b", NULL);
	ck_assert_int_eq(storage_delete(st, USER, "Box"), 0);
	ck_assert_int_eq(storage_create(st, USER, "Box", 0), 0);
	assert_meta("Box", "/shared/comment", NULL);
	assert_meta("", "/shared/comment", "server");
	teardown_backend();
}
END_TEST

/* The user's limit over every mailbox (and the server part): reached in the
 * fifth full mailbox, and room freed in another makes room here. */
START_TEST(metadata_user_limit)
{
	static char big[STORAGE_METADATA_MAX_VALUE + 1];
	int rc = 0, box = 0, k = 0;

	setup_backend(_i);
	memset(big, 'u', STORAGE_METADATA_MAX_VALUE);
	for (box = 0; box < 10 && rc == 0; box++) {
		char mb[16];

		snprintf(mb, sizeof(mb), "u%d", box);
		ck_assert_int_eq(storage_create(st, USER, mb, 0), 0);
		for (k = 0; k < 15 && rc == 0; k++) {
			char nm[32];
			const char *np = nm;
			const uint8_t *vp = (const uint8_t *)big;
			size_t len = STORAGE_METADATA_MAX_VALUE;

			snprintf(nm, sizeof(nm), "/private/v%d", k);
			rc = storage_metadata_set(st, USER, mb, &np, &vp, &len, 1);
		}
	}
	ck_assert_int_eq(rc, ROOST_EOVERQUOTA);
	/* 1 MiB over 15 values of 16 KiB a mailbox: the fifth one fills */
	ck_assert_int_eq(box - 1,
	                 STORAGE_METADATA_MAX_USER_TOTAL / (15 * STORAGE_METADATA_MAX_VALUE));
	meta_set1("u4", "/private/v9", big, ROOST_EOVERQUOTA);
	meta_set1("u0", "/private/v0", NULL, 0);
	meta_set1("u4", "/private/v9", big, 0);
	meta_set1("", "/private/server", big, ROOST_EOVERQUOTA);
	teardown_backend();
}
END_TEST

START_TEST(recent_claims)
{
	struct mailbox *a, *b;
	struct mailbox_status s;
	uint32_t u[3], first, next;

	setup_backend(_i);
	u[0] = append_simple("INBOX", 0);
	u[1] = append_simple("INBOX", 1);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &a), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &b), 0);
	ck_assert_int_eq(mailbox_claim_recent(a, &first, &next), 0);
	ck_assert_uint_eq(first, u[0]);
	ck_assert_uint_eq(next, u[1] + 1);
	ck_assert_int_eq(mailbox_claim_recent(b, &first, &next), 0);
	ck_assert_uint_eq(first, u[1] + 1);
	ck_assert_uint_eq(next, first);
	ck_assert_int_eq(mailbox_status(b, &s), 0);
	ck_assert_uint_eq(s.recent, 0);
	u[2] = append_simple("INBOX", 2);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.recent, 1);
	ck_assert_int_eq(mailbox_claim_recent(b, &first, NULL), 0);
	ck_assert_uint_eq(first, u[2]);
	ck_assert_int_eq(mailbox_claim_recent(a, &first, NULL), 0);
	ck_assert_uint_eq(first, u[2] + 1);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.recent, 0);
	mailbox_close(&a);
	mailbox_close(&b);
	reopen();
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.recent, 0);
	ck_assert_uint_eq(s.messages, 3);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &a), 0);
	ck_assert_int_eq(mailbox_claim_recent(a, &first, NULL), 0);
	ck_assert_uint_eq(first, u[2] + 1);
	mailbox_close(&a);
	/* many mailboxes claimed at once (LMDB forgets the claims its
	 * database holds now and then, never one it does not) */
	for (int k = 0; k < 80; k++) {
		char name[16];

		snprintf(name, sizeof(name), "C%d", k);
		ck_assert_int_eq(storage_create(st, USER, name, 0), 0);
		u[0] = append_simple(name, k);
		ck_assert_int_eq(mailbox_open(st, USER, name, 0, &a), 0);
		ck_assert_int_eq(mailbox_claim_recent(a, &first, &next), 0);
		ck_assert_uint_eq(first, u[0]);
		ck_assert_uint_eq(next, u[0] + 1);
		mailbox_close(&a);
	}
	for (int k = 0; k < 80; k++) {
		char name[16];

		snprintf(name, sizeof(name), "C%d", k);
		ck_assert_int_eq(mailbox_open(st, USER, name, 0, &a), 0);
		ck_assert_int_eq(mailbox_claim_recent(a, &first, &next), 0);
		ck_assert_uint_eq(first, next);
		ck_assert_int_eq(mailbox_status(a, &s), 0);
		ck_assert_uint_eq(s.recent, 0);
		mailbox_close(&a);
	}
	assert_clean();
	teardown_backend();
}
END_TEST

/* mailbox_changes_since_nb() answered for a (a wake-up on the event loop)
 * until it stops saying ROOST_EAGAIN: Maildir's watch thread looks at the
 * events of our own changes first (bounded). */
static int
nb_answer(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *c)
{
	int rc = ROOST_EAGAIN;

	for (int k = 0; k < 60000 && rc == ROOST_EAGAIN; k++) {
		rc = mailbox_changes_since_nb(mb, modseq, 32, c);
		if (rc == ROOST_EAGAIN) {
			mailbox_changes_free(c);
			usleep(1000);
		}
	}
	return rc;
}

/*
 * \Recent goes to one session even when the session that is to claim it
 * after a wake-up (mailbox_claim_later()) closes first: b was shown x
 * without \Recent, since a was to claim it, so no later claim of b's (nor
 * anyone's) takes x; y, which came after, is b's. Where the claim is not
 * left for later, every claim is made at once and this says nothing.
 */
START_TEST(recent_claimer_gone)
{
	struct mailbox *a, *b, *c;
	struct mailbox_changes ch;
	struct mailbox_status s;
	uint32_t x, y, first, next;
	uint64_t m0, m1;

	setup_backend(_i);
	(void)append_simple("INBOX", 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &a), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &b), 0);
	ck_assert_int_eq(mailbox_claim_recent(a, &first, &next), 0);
	ck_assert_int_eq(mailbox_claim_recent(b, &first, &next), 0);
	ck_assert_uint_eq(first, next);
	ck_assert_int_eq(mailbox_status(a, &s), 0);
	m0 = s.highestmodseq;
	x = append_simple("INBOX", 1);
	if (nb_answer(a, m0, &ch) != 0 || !mailbox_claim_later(a)) {
		mailbox_changes_free(&ch);
		goto out;
	}
	mailbox_changes_free(&ch);
	/* b: x is a's to claim */
	ck_assert_int_eq(nb_answer(b, m0, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 1);
	ck_assert_uint_eq(ch.changed[0].uid, x);
	m1 = ch.highestmodseq;
	mailbox_changes_free(&ch);
	ck_assert(!mailbox_claim_later(b));
	ck_assert_int_eq(mailbox_claim_recent(b, &first, &next), 0);
	ck_assert_uint_eq(first, next);
	/* a goes before its claim */
	mailbox_close(&a);
	y = append_simple("INBOX", 2);
	ck_assert_int_eq(nb_answer(b, m1, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 1);
	ck_assert_uint_eq(ch.changed[0].uid, y);
	mailbox_changes_free(&ch);
	ck_assert(mailbox_claim_later(b));
	ck_assert_int_eq(mailbox_claim_recent(b, &first, &next), 0);
	ck_assert_uint_gt(first, x);
	ck_assert_uint_le(first, y);
	ck_assert_uint_gt(next, y);
	/* and nobody after */
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &c), 0);
	ck_assert_int_eq(mailbox_claim_recent(c, &first, &next), 0);
	ck_assert_uint_eq(first, next);
	mailbox_close(&c);
out:
	mailbox_close(&a);
	mailbox_close(&b);
	teardown_backend();
}
END_TEST

START_TEST(multi_recipient)
{
	struct delivery_target t[4] = {
	    {.user = "u1@x", .mailbox = "INBOX"},
	    {.user = "u2@x", .mailbox = "INBOX"},
	    {.user = "u3@x", .mailbox = "NoSuch"},
	    {.user = "u4@x", .mailbox = "../bad"},
	};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: hi\r\n\r\nx\r\n", .len = 18, .fd = -1};
	struct mailbox *mb;

	setup_backend(_i);
	ck_assert_int_eq(storage_deliver(st, &in, t, 4, 0), ROOST_ENOTFOUND);
	ck_assert_int_eq(t[0].result, 0);
	ck_assert_int_eq(t[1].result, 0);
	ck_assert_int_eq(t[2].result, ROOST_ENOTFOUND);
	ck_assert_int_eq(t[3].result, ROOST_EINVAL);
	ck_assert_uint_ne(t[0].uid, 0);
	ck_assert_int_eq(mailbox_open(st, "u2@x", "INBOX", 0, &mb), 0);
	assert_read(mb, t[1].uid, in.data, in.len);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

static uint32_t
messages_in(const char *user, const char *mbox)
{
	struct mailbox_status ms;

	ck_assert_int_eq(storage_status(st, user, mbox, &ms), 0);
	return ms.messages;
}

/* A (user, mailbox) named twice, in any spelling of INBOX, gets one copy;
 * every target sees its result. */
START_TEST(deliver_once_per_mailbox)
{
	struct delivery_target t[3] = {
	    {.user = USER, .mailbox = "INBOX"},
	    {.user = USER, .mailbox = "inbox"},
	    {.user = USER, .mailbox = "Drafts"},
	};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: hi\r\n\r\nx\r\n", .len = 18, .fd = -1};

	setup_backend(_i);
	ck_assert_int_eq(storage_deliver(st, &in, t, 3, 0), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t[i].result, 0);
	ck_assert_uint_eq(t[0].uid, t[1].uid);
	ck_assert_uint_ne(t[2].uid, 0);
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 1);
	ck_assert_uint_eq(messages_in(USER, "Drafts"), 1);
	assert_clean();
	teardown_backend();
}
END_TEST

/* One delivery to many folders of one user and to other users (Maildir:
 * side by side, each folder on its own thread, one maildirsize): every
 * copy is there, with its own UID, and the user's usage counts each one,
 * also after a recount. */
#define FANOUT_FOLDERS 12
#define FANOUT_USERS 4
#define FANOUT_ROUNDS 6

START_TEST(deliver_fanout_one_user)
{
	struct delivery_target t[FANOUT_FOLDERS + FANOUT_USERS];
	char names[FANOUT_FOLDERS][16], users[FANOUT_USERS][32];
	const char *body = "Subject: fan\r\n\r\nout\r\n";
	struct msg_input in = {.data = (const uint8_t *)body, .len = strlen(body), .fd = -1};
	struct storage_quota q;
	struct storage_usage before, after;
	size_t n = FANOUT_FOLDERS + FANOUT_USERS;

	setup_backend(_i);
	for (int i = 0; i < FANOUT_FOLDERS; i++) {
		snprintf(names[i], sizeof(names[i]), i == 0 ? "INBOX" : "f%d", i);
		if (i > 0)
			ck_assert_int_eq(storage_create(st, USER, names[i], 0), 0);
		t[i] = (struct delivery_target){.user = USER, .mailbox = names[i]};
	}
	for (int i = 0; i < FANOUT_USERS; i++) {
		snprintf(users[i], sizeof(users[i]), "fan%d@example.com", i);
		t[FANOUT_FOLDERS + i] =
		    (struct delivery_target){.user = users[i], .mailbox = "INBOX"};
	}
	for (uint32_t r = 1; r <= FANOUT_ROUNDS; r++) {
		ck_assert_int_eq(storage_deliver(st, &in, t, n, 0), 0);
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_eq(t[i].result, 0);
			ck_assert_uint_eq(t[i].uid, r);
		}
	}
	for (int i = 0; i < FANOUT_FOLDERS; i++)
		ck_assert_uint_eq(messages_in(USER, names[i]), FANOUT_ROUNDS);
	for (int i = 0; i < FANOUT_USERS; i++)
		ck_assert_uint_eq(messages_in(users[i], "INBOX"), FANOUT_ROUNDS);
	ck_assert_int_eq(storage_quota_get(st, USER, &q), 0);
	ck_assert_uint_eq(q.usage.messages, FANOUT_FOLDERS * FANOUT_ROUNDS);
	ck_assert_int_eq(storage_quota_recalc(st, USER, &before, &after), 0);
	ck_assert_uint_eq(before.messages, after.messages);
	ck_assert_uint_eq(before.bytes, after.bytes);
	assert_clean();
	teardown_backend();
}
END_TEST

/* All or nothing: one recipient fails, so the copies already stored for
 * the others (a new user's among them) are taken back, and all results
 * carry the error. Their UIDs are not handed out again. */
START_TEST(deliver_atomic)
{
	struct delivery_target t[3] = {
	    {.user = USER, .mailbox = "INBOX"},
	    {.user = "new@example.com", .mailbox = "INBOX"},
	    {.user = USER, .mailbox = "NoSuch"},
	};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: hi\r\n\r\nx\r\n", .len = 18, .fd = -1};
	uint32_t uid;

	setup_backend(_i);
	ck_assert_int_eq(storage_deliver(st, &in, t, 3, STORAGE_DELIVER_ATOMIC), ROOST_ENOTFOUND);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(t[i].result, ROOST_ENOTFOUND);
		ck_assert_uint_eq(t[i].uid, 0);
	}
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 0);
	ck_assert_uint_eq(messages_in("new@example.com", "INBOX"), 0);
	uid = append_simple("INBOX", 1);
	ck_assert_uint_eq(uid, 2);

	/* An invalid target fails the whole delivery too. */
	t[2].mailbox = "../bad";
	ck_assert_int_eq(storage_deliver(st, &in, t, 3, STORAGE_DELIVER_ATOMIC), ROOST_EINVAL);
	ck_assert_int_eq(t[0].result, ROOST_EINVAL);
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 1);
	ck_assert_uint_eq(messages_in("new@example.com", "INBOX"), 0);

	/* Without the flag each target has its own result. */
	ck_assert_int_eq(storage_deliver(st, &in, t, 3, 0), ROOST_EINVAL);
	ck_assert_int_eq(t[0].result, 0);
	ck_assert_int_eq(t[1].result, 0);
	ck_assert_int_eq(t[2].result, ROOST_EINVAL);
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 2);
	assert_clean();
	teardown_backend();
}
END_TEST

/* INBOX_FALLBACK: a folder that does not exist (any more) gets the copy
 * in INBOX, for known and for new users; without the flag it is an
 * error. */
START_TEST(deliver_inbox_fallback)
{
	static const char gone[] = "Gone";
	struct delivery_target t[2] = {
	    {.user = USER, .mailbox = gone},
	    {.user = "new@example.com", .mailbox = gone},
	};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: hi\r\n\r\nx\r\n", .len = 18, .fd = -1};

	setup_backend(_i);
	ck_assert_int_eq(storage_deliver(st, &in, t, 1, 0), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_deliver(st, &in, t, 2, STORAGE_DELIVER_INBOX_FALLBACK), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(t[i].result, 0);
		ck_assert_str_eq(t[i].mailbox, "INBOX");
		ck_assert_uint_eq(t[i].uid, 1);
	}
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 1);
	ck_assert_uint_eq(messages_in("new@example.com", "INBOX"), 1);
	assert_default_folders("new@example.com");
	assert_clean();
	teardown_backend();
}
END_TEST

/* Write counters: a backend that keeps them counts every durable write,
 * never fewer writes than commits; one that does not says so and reports
 * zeros. */
START_TEST(stats)
{
	struct storage_stats s0, s1;
	int rc;

	setup_backend(_i);
	rc = storage_stats(st, &s0);
	append_simple("INBOX", 1);
	append_simple("INBOX", 2);
	ck_assert_int_eq(storage_stats(st, &s1), rc);
	if (rc == ROOST_ENOTSUP) {
		ck_assert_uint_eq(s1.commits, 0);
		ck_assert_uint_eq(s1.writes, 0);
	} else {
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_ge(s1.commits, s0.commits + 1);
		ck_assert_uint_ge(s1.writes, s0.writes + 2);
		ck_assert_uint_ge(s1.writes, s1.commits);
	}
	if (strcmp(backend, "lmdb") == 0)
		ck_assert_int_eq(rc, 0);
	teardown_backend();
}
END_TEST

/* ---- concurrency ---- */

struct worker {
	int id;
	int appended;
};

static void *
thread_main(void *arg)
{
	struct worker *w = arg;
	struct mailbox *mb;
	struct store_req req = {.mode = STORE_ADD, .flags = MSG_FLAGGED};

	if (mailbox_open(st, USER, "INBOX", 0, &mb) != 0)
		return NULL;
	for (int i = 0; i < 40; i++) {
		char msg[64];
		uint32_t uid, *mod;
		size_t nmod;
		struct msg_input in = {.data = (const uint8_t *)msg, .fd = -1};

		in.len =
		    (size_t)snprintf(msg, sizeof(msg), "Subject: t%d m%d\r\n\r\n.\r\n", w->id, i);
		if (mailbox_append(mb, &in, &uid) != 0)
			break;
		w->appended++;
		if (i % 3 == 0 && mailbox_store(mb, &uid, 1, &req, &mod, &nmod) != 0)
			break;
		if (i % 5 == 0) {
			if (mailbox_expunge(mb, &uid, 1) != 0)
				break;
			w->appended--;
		}
	}
	mailbox_close(&mb);
	return NULL;
}

START_TEST(threads)
{
	pthread_t th[8];
	struct worker w[8];
	struct mailbox_status s;
	struct mailbox *mb;
	struct msg_record *recs;
	size_t n;
	uint64_t hms;
	int total = 0;

	setup_backend(_i);
	for (int i = 0; i < 8; i++) {
		w[i].id = i;
		w[i].appended = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		total += w[i].appended;
	}
	ck_assert_int_eq(total, 8 * 32);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.messages, (uint32_t)total);
	ck_assert_uint_eq(s.uidnext, 8 * 40 + 1);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, (size_t)total);
	for (size_t i = 1; i < n; i++)
		ck_assert_uint_lt(recs[i - 1].uid, recs[i].uid);
	free(recs);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/*
 * Copy, move and read racing against flag changes: one thread keeps
 * setting and clearing \Seen on every message of INBOX (on Maildir, every
 * change renames every file) while this one copies, reads and finally
 * moves all of them. Nothing may be skipped, lost or left behind.
 */
#define RACE_N 200

struct flipper {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	int rounds;
	int err;
};

static void *
flip_main(void *arg)
{
	struct flipper *fl = arg;
	struct mailbox *mb;
	struct store_req req = {.flags = MSG_SEEN};
	int err;

	if ((err = mailbox_open(st, USER, "INBOX", 0, &mb)) != 0)
		goto out;
	for (;;) {
		struct msg_record *recs;
		uint32_t *uids, *mod;
		size_t n, nmod;
		uint64_t hms;
		bool stop;

		pthread_mutex_lock(&fl->lock);
		stop = fl->stop;
		pthread_mutex_unlock(&fl->lock);
		if (stop)
			break;
		if ((err = mailbox_records(mb, &recs, &n, &hms)) != 0)
			break;
		uids = calloc(n + 1, sizeof(*uids));
		for (size_t i = 0; i < n; i++)
			uids[i] = recs[i].uid;
		free(recs);
		req.mode = STORE_ADD;
		err = n == 0 ? 0 : mailbox_store(mb, uids, n, &req, &mod, &nmod);
		if (err == 0) {
			free(mod);
			req.mode = STORE_REMOVE;
			err = n == 0 ? 0 : mailbox_store(mb, uids, n, &req, &mod, &nmod);
			if (err == 0)
				free(mod);
		}
		free(uids);
		if (err != 0)
			break;
		pthread_mutex_lock(&fl->lock);
		fl->rounds++;
		pthread_cond_signal(&fl->cond);
		pthread_mutex_unlock(&fl->lock);
	}
	mailbox_close(&mb);
out:
	pthread_mutex_lock(&fl->lock);
	fl->err = err;
	fl->stop = true;
	pthread_cond_signal(&fl->cond);
	pthread_mutex_unlock(&fl->lock);
	return NULL;
}

/* The message numbered by its body "race <i>", 0 when it is not one. */
static int
race_number(struct mailbox *mb, uint32_t uid)
{
	struct msg_view v;
	int num = 0;

	ck_assert_int_eq(mailbox_read(mb, uid, &v), 0);
	ck_assert_uint_gt(v.len, 0);
	if (v.len > 12 && memcmp(v.data, "Subject: r", 10) == 0)
		num = atoi((const char *)v.data + 10);
	msg_view_release(&v);
	return num;
}

/* Every message of name is one of the RACE_N, each exactly once, and its
 * UIDs are uids (when given). */
static void
assert_race_box(const char *name, const uint32_t *uids, size_t n_uids)
{
	struct mailbox *mb;
	struct msg_record *recs;
	size_t n;
	uint64_t hms;
	bool seen[RACE_N + 1] = {false};

	ck_assert_int_eq(mailbox_open(st, USER, name, MAILBOX_READONLY, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
	ck_assert_uint_eq(n, RACE_N);
	for (size_t i = 0; i < n; i++) {
		int num = race_number(mb, recs[i].uid);

		ck_assert_int_ge(num, 1);
		ck_assert_int_le(num, RACE_N);
		ck_assert(!seen[num]);
		seen[num] = true;
		if (uids != NULL) {
			ck_assert_uint_eq(n_uids, n);
			ck_assert_uint_eq(recs[i].uid, uids[i]);
		}
	}
	free(recs);
	mailbox_close(&mb);
}

START_TEST(copy_move_race)
{
	struct flipper fl = {.stop = false};
	struct mailbox *mb;
	struct mailbox_status s;
	uint32_t uids[RACE_N], *src, *dst, uidv;
	size_t n;
	pthread_t th;

	setup_dir(_i);
	cfg.storage_fsync = false; /* the race is the point, not the disk */
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	for (int i = 0; i < RACE_N; i++) {
		char msg[64];
		int len =
		    snprintf(msg, sizeof(msg), "Subject: r%d\r\n\r\nbody %d\r\n", i + 1, i + 1);

		ck_assert_int_eq(append_bytes("INBOX", msg, (size_t)len, 0, &uids[i]), 0);
	}
	ck_assert_int_eq(storage_create(st, USER, "copy1", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "copy2", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "moved", 0), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);

	pthread_mutex_init(&fl.lock, NULL);
	pthread_cond_init(&fl.cond, NULL);
	ck_assert_int_eq(pthread_create(&th, NULL, flip_main, &fl), 0);
	pthread_mutex_lock(&fl.lock);
	while (fl.rounds == 0 && !fl.stop)
		pthread_cond_wait(&fl.cond, &fl.lock);
	pthread_mutex_unlock(&fl.lock);

	for (int i = 0; i < RACE_N; i++)
		ck_assert_int_eq(race_number(mb, uids[i]), i + 1);
	for (int k = 1; k <= 2; k++) {
		const char *dest = k == 1 ? "copy1" : "copy2";

		ck_assert_int_eq(mailbox_copy(mb, uids, RACE_N, dest, false, &uidv, &src, &dst, &n),
		                 0);
		ck_assert_uint_eq(n, RACE_N);
		ck_assert_int_eq(memcmp(src, uids, sizeof(uids)), 0);
		assert_race_box(dest, dst, n);
		free(src);
		free(dst);
	}
	ck_assert_int_eq(mailbox_copy(mb, uids, RACE_N, "moved", true, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, RACE_N);
	ck_assert_int_eq(memcmp(src, uids, sizeof(uids)), 0);

	pthread_mutex_lock(&fl.lock);
	fl.stop = true;
	pthread_mutex_unlock(&fl.lock);
	pthread_join(th, NULL);
	ck_assert_int_eq(fl.err, 0);
	ck_assert_int_gt(fl.rounds, 0);

	ck_assert_int_eq(mailbox_status(mb, &s), 0);
	ck_assert_uint_eq(s.messages, 0);
	mailbox_close(&mb);
	assert_race_box("moved", dst, n);
	free(src);
	free(dst);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.messages, 0);
	assert_clean();
	pthread_cond_destroy(&fl.cond);
	pthread_mutex_destroy(&fl.lock);
	teardown_backend();
}
END_TEST

/* Child processes open their own store and never touch the parent's. */
static void
child_deliver(int id, int count)
{
	struct storage *cst;

	if (storage_open(&cfg, &cst) != 0)
		_exit(2);
	for (int i = 0; i < count; i++) {
		char msg[64];
		struct msg_input in = {.data = (const uint8_t *)msg, .fd = -1};
		uint32_t uidv, uid;

		in.len = (size_t)snprintf(msg, sizeof(msg), "Subject: p%d m%d\r\n\r\n.\r\n", id, i);
		if (storage_append(cst, USER, "INBOX", &in, &uidv, &uid) != 0)
			_exit(3);
	}
	storage_close(&cst);
	_exit(0);
}

START_TEST(two_processes)
{
	struct mailbox_status s;
	pid_t pid[2];

	setup_backend(_i);
	storage_close(&st); /* its threads are joined: fork is safe */
	for (int p = 0; p < 2; p++) {
		pid[p] = fork();
		ck_assert_int_ge(pid[p], 0);
		if (pid[p] == 0)
			child_deliver(p, 60);
	}
	for (int p = 0; p < 2; p++) {
		int status;

		ck_assert_int_eq(waitpid(pid[p], &status, 0), pid[p]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	open_store();
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.messages, 120);
	ck_assert_uint_eq(s.uidnext, 121);
	assert_clean();
	teardown_backend();
}
END_TEST

static void
ack_push(uint32_t **acked, size_t *n, size_t *cap, uint32_t uid)
{
	if (*n == *cap) {
		*cap = *cap == 0 ? 1024 : *cap * 2;
		*acked = xrealloc(*acked, *cap * sizeof(**acked));
	}
	(*acked)[(*n)++] = uid;
}

/*
 * Crash: a child appends in a loop and writes each acknowledged UID to a
 * pipe; the parent kills it with SIGKILL after a random delay, reopens
 * the store and checks every acknowledged message is there and readable.
 */
START_TEST(crash)
{
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	uint32_t *acked = NULL;
	size_t n_acked = 0, cap = 0;

	setup_backend(_i);
	storage_close(&st);
	for (int iter = 0; iter < 60; iter++) {
		int fds[2];
		pid_t pid;
		uint32_t uid;
		ssize_t r;

		ck_assert_int_eq(pipe(fds), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct storage *cst;

			close(fds[0]);
			if (storage_open(&cfg, &cst) != 0)
				_exit(2);
			for (int i = 0;; i++) {
				char msg[200];
				struct msg_input in = {.data = (const uint8_t *)msg, .fd = -1};
				uint32_t uidv;

				in.len = (size_t)snprintf(msg, sizeof(msg),
				                          "Subject: crash %d/%d\r\n\r\n%0*d\r\n",
				                          iter, i, 1 + i % 150, i);
				if (storage_append(cst, USER, "INBOX", &in, &uidv, &uid) != 0)
					_exit(3);
				if (write(fds[1], &uid, sizeof(uid)) != sizeof(uid))
					_exit(4);
			}
		}
		close(fds[1]);
		/* Kill only after the child has acknowledged a few appends, so
		 * every iteration tests a crash during real work however slow
		 * the machine is; the extra random delay moves the kill to any
		 * point of the next append. */
		for (unsigned want = 1 + (unsigned)(rand_r(&seed) % 4); want > 0; want--) {
			r = read(fds[0], &uid, sizeof(uid));
			ck_assert_int_eq(r, (ssize_t)sizeof(uid));
			ack_push(&acked, &n_acked, &cap, uid);
		}
		usleep((unsigned)(rand_r(&seed) % 20000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		while ((r = read(fds[0], &uid, sizeof(uid))) == sizeof(uid)) {
			ack_push(&acked, &n_acked, &cap, uid);
		}
		close(fds[0]);
	}
	ck_assert_uint_ge(n_acked, 60);
	open_store();
	{
		struct mailbox *mb;
		struct msg_record *recs;
		size_t n, j = 0;
		uint64_t hms;

		ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
		ck_assert_int_eq(mailbox_records(mb, &recs, &n, &hms), 0);
		ck_assert_uint_ge(n, n_acked);
		for (size_t i = 1; i < n_acked; i++)
			ck_assert_uint_lt(acked[i - 1], acked[i]);
		for (size_t i = 0; i < n_acked; i++) {
			struct msg_view v;

			while (j < n && recs[j].uid < acked[i])
				j++;
			ck_assert_msg(j < n && recs[j].uid == acked[i], "acknowledged uid %u lost",
			              acked[i]);
			ck_assert_int_eq(mailbox_read(mb, acked[i], &v), 0);
			ck_assert(v.len > 20 && memcmp(v.data, "Subject: crash ", 15) == 0);
			msg_view_release(&v);
		}
		free(recs);
		mailbox_close(&mb);
	}
	free(acked);
	assert_clean();
	teardown_backend();
}
END_TEST

/* ---- notification ---- */

static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wcond = PTHREAD_COND_INITIALIZER;
static int woken;

static void
on_change(void *arg)
{
	pthread_mutex_lock(&wlock);
	woken++;
	pthread_cond_broadcast(&wcond);
	pthread_mutex_unlock(&wlock);
}

static bool
wait_woken(int want, int ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&wlock);
	while (woken < want) {
		if (pthread_cond_timedwait(&wcond, &wlock, &ts) != 0)
			break;
	}
	ok = woken >= want;
	pthread_mutex_unlock(&wlock);
	return ok;
}

/* Fork a child before this process has threads (the store's) that waits
 * for a byte on the pipe go: fork_held() returns 0 in it once the byte
 * came (it exits 5 when the parent went away first), the child's pid in
 * the parent, which tells it through go[1]. */
static pid_t
fork_held(int go[2])
{
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(5);
		return 0;
	}
	close(go[0]);
	return pid;
}

START_TEST(watch)
{
	struct storage_watch *w, *other;
	int go[2], status;
	pid_t pid;

	/* The child delivers when told to. */
	setup_dir(_i);
	pid = fork_held(go);
	if (pid == 0)
		child_deliver(9, 1);
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	ck_assert_int_eq(storage_watch(st, USER, "inbox", on_change, NULL, &w), 0);
	ck_assert_int_eq(storage_watch(st, USER, "Trash", on_change, NULL, &other), 0);
	storage_unwatch(&other);
	ck_assert_ptr_null(other);
	append_simple("INBOX", 1);
	ck_assert(wait_woken(1, 5000));
	/* from another process */
	pthread_mutex_lock(&wlock);
	woken = 0;
	pthread_mutex_unlock(&wlock);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(wait_woken(1, 5000));
	storage_unwatch(&w);
	pthread_mutex_lock(&wlock);
	woken = 0;
	pthread_mutex_unlock(&wlock);
	append_simple("INBOX", 2);
	usleep(100000);
	pthread_mutex_lock(&wlock);
	ck_assert_int_eq(woken, 0);
	pthread_mutex_unlock(&wlock);
	close(go[1]);
	teardown_backend();
}
END_TEST

/* What a user watch was told, as "name<old" lines (NOTIFY's channel). */
static struct buf uevents = BUF_INIT(0);

static void
on_user_change(void *arg, const struct storage_change *ch)
{
	pthread_mutex_lock(&wlock);
	buf_printf(&uevents, "%s<%s", ch->mailbox != NULL ? ch->mailbox : "*",
	           ch->old_name != NULL ? ch->old_name : "");
	for (size_t i = 0; i < ch->n_entries; i++)
		buf_printf(&uevents, " %s", ch->entries[i]);
	buf_append_byte(&uevents, '\n');
	pthread_mutex_unlock(&wlock);
}

/* Was line told (since the last call)? The told lines are then dropped:
 * a backend may add its own (a Maildir sync), never leave one out. */
static bool
user_told(const char *line)
{
	bool found;

	pthread_mutex_lock(&wlock);
	buf_append_byte(&uevents, 0);
	found = strstr((const char *)uevents.data, line) != NULL;
	buf_reset(&uevents);
	pthread_mutex_unlock(&wlock);
	return found;
}

/*
 * A user watch hears of every change to any of the user's mailboxes, with
 * its name: messages, creation, (un)subscription, rename (with the old
 * name), deletion; and nothing of another user's.
 */
START_TEST(watch_user)
{
	struct storage_watch *w;

	setup_dir(_i);
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	ck_assert_int_eq(storage_user_init(st, "other@example.org"), 0);
	ck_assert_int_eq(storage_watch_user(st, USER, on_user_change, NULL, &w), 0);
	append_simple("INBOX", 1);
	ck_assert(user_told("INBOX<\n"));
	ck_assert_int_eq(storage_create(st, USER, "A", 0), 0);
	ck_assert(user_told("A<\n"));
	ck_assert_int_eq(storage_create(st, USER, "A/kid", 0), 0);
	ck_assert(user_told("A/kid<\n"));
	ck_assert_int_eq(storage_subscribe(st, USER, "A", true), 0);
	ck_assert(user_told("A<\n"));
	ck_assert_int_eq(storage_rename(st, USER, "A", "B"), 0);
	ck_assert(user_told("B<A\n"));
	ck_assert_int_eq(storage_subscribe(st, USER, "A", false), 0);
	ck_assert(user_told("A<\n"));
	ck_assert_int_eq(storage_delete(st, USER, "B/kid"), 0);
	ck_assert(user_told("B/kid<\n"));
	/* Metadata: the entries by name, the server's as mailbox "". */
	{
		const char *names[] = {"/private/Comment", "/shared/x"};
		const uint8_t *vals[] = {(const uint8_t *)"v", NULL};
		const size_t lens[] = {1, 0};

		ck_assert_int_eq(storage_metadata_set(st, USER, "INBOX", names, vals, lens, 2), 0);
		ck_assert(user_told("INBOX< /private/comment /shared/x\n"));
		ck_assert_int_eq(storage_metadata_set(st, USER, "", names, vals, lens, 1), 0);
		ck_assert(user_told("< /private/comment\n"));
	}
	ck_assert_int_eq(storage_create(st, "other@example.org", "X", 0), 0);
	ck_assert(!user_told("X<"));
	storage_unwatch(&w);
	ck_assert_ptr_null(w);
	append_simple("INBOX", 2);
	ck_assert(!user_told("INBOX<"));
	buf_free(&uevents);
	teardown_backend();
}
END_TEST

/*
 * Where inotify is not to be had, other processes' changes are found by
 * polling the per-user notify files. A change made right after a session
 * started watching must wake it, even when it falls in the same tick of
 * the file system's clock as the one before (which left the mtime as the
 * watch had seen it). Two stores on one data directory stand for two
 * processes.
 */
START_TEST(watch_polled)
{
	static const char text[] = "Subject: p\r\n\r\np\r\n";
	struct storage *other;
	struct storage_watch *w;
	struct msg_input in = {.data = (const uint8_t *)text, .len = sizeof(text) - 1, .fd = -1};
	uint32_t uidv, uid;

	ck_assert_int_eq(setenv("ROOST_NOTIFY_POLL", "1", 1), 0);
	setup_dir(_i);
	cfg.storage_fsync = false; /* the two changes as close as can be */
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	ck_assert_int_eq(storage_open(&cfg, &other), 0);
	for (int round = 0; round < 5; round++) {
		pthread_mutex_lock(&wlock);
		woken = 0;
		pthread_mutex_unlock(&wlock);
		ck_assert_int_eq(storage_append(other, USER, "INBOX", &in, &uidv, &uid), 0);
		ck_assert_int_eq(storage_watch(st, USER, "INBOX", on_change, NULL, &w), 0);
		ck_assert_int_eq(storage_append(other, USER, "INBOX", &in, &uidv, &uid), 0);
		ck_assert_msg(wait_woken(1, 5000), "round %d: no wake-up", round);
		storage_unwatch(&w);
	}
	storage_close(&other);
	ck_assert_int_eq(unsetenv("ROOST_NOTIFY_POLL"), 0);
	teardown_backend();
}
END_TEST

/* Notify files in <dir>/notify (procs/ aside) and their sizes summed. */
static size_t
notify_files(off_t *bytes_r)
{
	char path[700];
	DIR *d;
	struct dirent *de;
	size_t n = 0;

	*bytes_r = 0;
	snprintf(path, sizeof(path), "%s/notify", dir);
	d = opendir(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		struct stat sb;

		if (de->d_name[0] == '.' || strcmp(de->d_name, "procs") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0) {
			n++;
			*bytes_r += sb.st_size;
		}
	}
	closedir(d);
	return n;
}

/*
 * A store alone on its data directory writes no notify file: no other
 * process watches (<notify>/procs/ holds its entry only), and the write's
 * inotify echo woke its own thread for nothing. Once a second store (a
 * process) is open, changes reach that store's watchers through the file
 * again; after it closes, the first is alone once more. An entry a
 * crashed process left (its lock free) goes when the next store opens.
 */
START_TEST(notify_file_only_for_other_watchers)
{
	struct storage *other;
	struct storage_watch *w;
	char procs[600], stale[700], lock[720];
	struct stat sb;
	off_t bytes, bytes2;
	bool counted;
	int fd;

	setup_backend(_i);
	append_simple("INBOX", 1);
	snprintf(procs, sizeof(procs), "%s/notify/procs", dir);
	ck_assert_int_eq(stat(procs, &sb), 0);
	/* a file system that does not count subdirectories: always written */
	counted = sb.st_nlink == 3;
	if (counted)
		ck_assert_uint_eq(notify_files(&bytes), 0);

	snprintf(stale, sizeof(stale), "%s/1-crashed", procs);
	snprintf(lock, sizeof(lock), "%s/lock", stale);
	ck_assert_int_eq(mkdir(stale, 0700), 0);
	fd = open(lock, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(storage_open(&cfg, &other), 0);
	ck_assert_int_ne(stat(stale, &sb), 0);

	pthread_mutex_lock(&wlock);
	woken = 0;
	pthread_mutex_unlock(&wlock);
	ck_assert_int_eq(storage_watch(other, USER, "INBOX", on_change, NULL, &w), 0);
	append_simple("INBOX", 2);
	ck_assert_uint_eq(notify_files(&bytes), 1);
	ck_assert_msg(wait_woken(1, 60000), "the other store's watcher was not woken");
	storage_unwatch(&w);
	storage_close(&other);

	append_simple("INBOX", 3);
	ck_assert_uint_eq(notify_files(&bytes2), 1);
	if (counted)
		ck_assert_int_eq(bytes2, bytes);
	else
		ck_assert_int_gt(bytes2, bytes);
	teardown_backend();
}
END_TEST

/*
 * Another process grows the store (with LMDB: the map, past this
 * process's map size) while this one has it open; this one then reads
 * what the other wrote and keeps writing.
 */
START_TEST(grown_by_other_process)
{
	size_t len = 12u << 20;
	int go[2], status;
	pid_t pid;

	setup_dir(_i);
	pid = fork_held(go);
	if (pid == 0) {
		struct storage *cst;
		uint8_t *big = malloc(len);
		struct msg_input in = {.data = big, .len = len, .fd = -1};
		uint32_t uidv, uid;

		if (big == NULL || storage_open(&cfg, &cst) != 0)
			_exit(2);
		for (size_t i = 0; i < len; i++)
			big[i] = (uint8_t)(i * 31 + (i >> 12));
		if (storage_append(cst, USER, "INBOX", &in, &uidv, &uid) != 0)
			_exit(3);
		storage_close(&cst);
		_exit(uid == 2 ? 0 : 4);
	}
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	append_simple("INBOX", 1);
	{
		struct mailbox *mb;
		struct msg_view v;

		ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
		ck_assert_int_eq(write(go[1], "g", 1), 1);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		ck_assert_int_eq(mailbox_read(mb, 2, &v), 0);
		ck_assert_uint_eq(v.len, len);
		for (size_t i = 0; i < len; i += 4099)
			ck_assert_uint_eq(v.data[i], (uint8_t)(i * 31 + (i >> 12)));
		msg_view_release(&v);
		mailbox_close(&mb);
	}
	ck_assert_uint_eq(append_simple("INBOX", 3), 3);
	close(go[1]);
	assert_clean();
	teardown_backend();
}
END_TEST

/* LMDB only: users spread over shards; the shard count is fixed. */
/* ------------------------------------------------------------------ */
/* Large bodies (LMDB keeps them in files beside the environment) */

#define LARGE_LEN (3u << 20)

static uint8_t *
large_body(unsigned seed)
{
	uint8_t *b = malloc(LARGE_LEN);

	ck_assert_ptr_nonnull(b);
	for (size_t i = 0; i < LARGE_LEN; i++)
		b[i] = (uint8_t)(((i + seed * 7919u) * 2654435761u) >> 13);
	memcpy(b, "Subject: large\r\n\r\n", 18);
	return b;
}

/* The body files an LMDB store keeps; -1 on other backends. */
static int
body_files(void)
{
	char path[400];
	struct dirent *de;
	DIR *d;
	int n = 0;

	if (strcmp(backend, "lmdb") != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/lmdb/blobs", dir);
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) == 64 + 1 + 16)
			n++;
	}
	closedir(d);
	return n;
}

#define ASSERT_BODY_FILES(n)                                                                       \
	do {                                                                                       \
		if (body_files() >= 0)                                                             \
			ck_assert_int_eq(body_files(), (n));                                       \
	} while (0)

START_TEST(large_bodies)
{
	uint8_t *a = large_body(1), *b = large_body(2);
	struct delivery_target t[2] = {{.user = USER, .mailbox = "INBOX"},
	                               {.user = "bob@example.com", .mailbox = "INBOX"}};
	struct msg_input in = {.data = b, .len = LARGE_LEN, .fd = -1};
	uint32_t uid1, uid2, uidv, *src = NULL, *dst = NULL, *msrc = NULL, *mdst = NULL;
	uint32_t both[2];
	struct mailbox *mb;
	struct msg_view v;
	size_t n = 0, mn = 0;

	setup_backend(_i);
	ck_assert_int_eq(storage_user_init(st, "bob@example.com"), 0);
	ck_assert_int_eq(append_bytes("INBOX", a, LARGE_LEN, 0, &uid1), 0);
	ASSERT_BODY_FILES(1);
	/* the same body again is stored once */
	ck_assert_int_eq(append_bytes("INBOX", a, LARGE_LEN, MSG_SEEN, &uid2), 0);
	ASSERT_BODY_FILES(1);
	/* two recipients, one body */
	ck_assert_int_eq(storage_deliver(st, &in, t, 2, 0), 0);
	ASSERT_BODY_FILES(2);

	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	assert_read(mb, uid1, a, LARGE_LEN);
	assert_read(mb, uid2, a, LARGE_LEN);
	assert_read(mb, t[0].uid, b, LARGE_LEN);
	/* copy and move share the body */
	ck_assert_int_eq(mailbox_copy(mb, &uid1, 1, "Archive", false, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(mailbox_copy(mb, &t[0].uid, 1, "Trash", true, &uidv, &msrc, &mdst, &mn),
	                 0);
	ck_assert_uint_eq(mn, 1);
	ASSERT_BODY_FILES(2);
	/* the source's references go, the copy's keeps the file */
	both[0] = uid1;
	both[1] = uid2;
	ck_assert_int_eq(mailbox_expunge(mb, both, 2), 0);
	ck_assert_int_eq(mailbox_read(mb, uid1, &v), ROOST_ENOTFOUND);
	ASSERT_BODY_FILES(2);
	mailbox_close(&mb);
	reopen();

	ck_assert_int_eq(mailbox_open(st, USER, "Archive", 0, &mb), 0);
	/* a view of a large body may be held and outlives the message */
	ck_assert_int_eq(mailbox_read(mb, dst[0], &v), 0);
	ck_assert_uint_eq(v.len, LARGE_LEN);
	ck_assert_int_eq(mailbox_expunge(mb, dst, 1), 0);
	ASSERT_BODY_FILES(1); /* the last reference dropped the file */
	ck_assert(memcmp(v.data, a, LARGE_LEN) == 0);
	msg_view_release(&v);
	mailbox_close(&mb);
	ck_assert_int_eq(mailbox_open(st, USER, "Trash", 0, &mb), 0);
	assert_read(mb, mdst[0], b, LARGE_LEN);
	mailbox_close(&mb);
	ck_assert_int_eq(mailbox_open(st, "bob@example.com", "INBOX", 0, &mb), 0);
	assert_read(mb, t[1].uid, b, LARGE_LEN);
	mailbox_close(&mb);
	/* deleting the mailboxes drops the rest */
	ck_assert_int_eq(storage_delete(st, USER, "Trash"), 0);
	ASSERT_BODY_FILES(1);
	ck_assert_int_eq(storage_delete(st, "bob@example.com", "Trash"), 0);
	ck_assert_int_eq(mailbox_open(st, "bob@example.com", "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_expunge(mb, &t[1].uid, 1), 0);
	mailbox_close(&mb);
	ASSERT_BODY_FILES(0);
	assert_clean();
	free(src);
	free(dst);
	free(msrc);
	free(mdst);
	free(a);
	free(b);
	teardown_backend();
}
END_TEST

/*
 * A store that wrote a large body and died before the commit that would
 * have referred to it: the next open (LMDB) or the folder's next sync
 * (Maildir, once the file is older than another program's delivery could
 * be) removes the file; the committed messages are intact. (PostgreSQL
 * keeps no body files.)
 */
START_TEST(large_body_crash)
{
	uint8_t *a = large_body(3);
	char orphan[600];
	struct mailbox *mb;
	struct stat sb;
	uint32_t uid;
	int status;
	pid_t pid;

	setup_backend(_i);
	ck_assert_int_eq(append_bytes("INBOX", a, LARGE_LEN, 0, &uid), 0);
	storage_close(&st);
	if (strcmp(backend, "pgsql") == 0) {
		/* No body file: a body and the message that refers to it are
		 * one transaction (the crash test covers a kill mid-append). */
		open_store();
		ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
		assert_read(mb, uid, a, LARGE_LEN);
		mailbox_close(&mb);
		assert_clean();
		free(a);
		teardown_backend();
		return;
	}
	if (strcmp(backend, "lmdb") == 0)
		snprintf(orphan, sizeof(orphan), "%s/lmdb/blobs/%064d-%016d", dir, 0, 7);
	else
		snprintf(orphan, sizeof(orphan), "%s/maildir/%s/tmp/1.M1P1.crash", dir, USER);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct storage *cst;
		int fd;

		if (storage_open(&cfg, &cst) != 0)
			_exit(1);
		fd = open(orphan, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || write(fd, a, LARGE_LEN) != (ssize_t)LARGE_LEN || fsync(fd) != 0)
			_exit(2);
		_exit(0); /* no storage_close: a crash */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(stat(orphan, &sb), 0);
	if (strcmp(backend, "maildir") == 0) {
		struct timespec old[2] = {{.tv_sec = time(NULL) - 3 * 86400},
		                          {.tv_sec = time(NULL) - 3 * 86400}};

		ck_assert_int_eq(utimensat(AT_FDCWD, orphan, old, 0), 0);
	}
	open_store();
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	assert_read(mb, uid, a, LARGE_LEN);
	mailbox_close(&mb);
	ck_assert_int_eq(stat(orphan, &sb), -1);
	ck_assert_int_eq(errno, ENOENT);
	ASSERT_BODY_FILES(1);
	assert_clean();
	free(a);
	teardown_backend();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Quota                                                               */

static void
assert_usage(const char *user, uint64_t bytes, uint64_t messages)
{
	struct storage_quota q;

	ck_assert_int_eq(storage_quota_get(st, user, &q), 0);
	ck_assert_msg(q.usage.bytes == bytes && q.usage.messages == messages,
	              "%s usage of %s: %llu bytes %llu messages, expected %llu %llu", backend, user,
	              (unsigned long long)q.usage.bytes, (unsigned long long)q.usage.messages,
	              (unsigned long long)bytes, (unsigned long long)messages);
}

/* n bytes of message (n >= 16) */
static int
append_sized(const char *mbox, size_t n, uint32_t *uid_r)
{
	char *msg = malloc(n);
	int rc;

	memset(msg, 'x', n);
	memcpy(msg, "Subject: q\r\n\r\n", 14);
	msg[n - 2] = '\r';
	msg[n - 1] = '\n';
	rc = append_bytes(mbox, msg, n, 0, uid_r);
	free(msg);
	return rc;
}

static void
assert_recalc_same(const char *user, uint64_t bytes, uint64_t messages)
{
	struct storage_usage before, after;

	ck_assert_int_eq(storage_quota_recalc(st, user, &before, &after), 0);
	ck_assert_uint_eq(before.bytes, bytes);
	ck_assert_uint_eq(before.messages, messages);
	ck_assert_uint_eq(after.bytes, bytes);
	ck_assert_uint_eq(after.messages, messages);
}

/* A recount repairs a usage that drifted (it differs from what it found). */
static void
assert_recalc_repairs(const char *user)
{
	struct storage_usage before, after;

	ck_assert_int_eq(storage_quota_recalc(st, user, &before, &after), 0);
	ck_assert(before.bytes != after.bytes || before.messages != after.messages);
}

/* The usage counters follow every change exactly, survive a reopen, and
 * a recount finds what they say. */
START_TEST(quota_counters)
{
	struct mailbox *mb;
	uint32_t uids[4], *su, *du, uidv;
	size_t n;
	struct delivery_target t[2] = {{.user = USER, .mailbox = "INBOX"},
	                               {.user = "bob@example.com", .mailbox = "INBOX"}};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: d\r\n\r\nhello\r\n", .len = 21, .fd = -1};

	setup_backend(_i);
	assert_usage(USER, 0, 0);
	assert_usage("nobody@example.com", 0, 0);
	ck_assert_int_eq(storage_create(st, USER, "Work", 0), 0);
	ck_assert_int_eq(append_sized("INBOX", 100, &uids[0]), 0);
	ck_assert_int_eq(append_sized("INBOX", 200, &uids[1]), 0);
	ck_assert_int_eq(append_sized("INBOX", 300, &uids[2]), 0);
	ck_assert_int_eq(append_sized("Work", 1000, &uids[3]), 0);
	assert_usage(USER, 1600, 4);

	/* copy adds, move does not, expunge takes away */
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_copy(mb, uids, 2, "Work", false, &uidv, &su, &du, &n), 0);
	ck_assert_uint_eq(n, 2);
	free(su);
	free(du);
	assert_usage(USER, 1900, 6);
	ck_assert_int_eq(mailbox_copy(mb, &uids[2], 1, "Work", true, &uidv, &su, &du, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(su);
	free(du);
	assert_usage(USER, 1900, 6);
	ck_assert_int_eq(mailbox_expunge(mb, &uids[1], 1), 0);
	assert_usage(USER, 1700, 5);
	/* absent UIDs change nothing */
	ck_assert_int_eq(mailbox_expunge(mb, &uids[1], 1), 0);
	assert_usage(USER, 1700, 5);
	ck_assert_int_eq(mailbox_append(mb, &in, NULL), 0);
	assert_usage(USER, 1721, 6);
	mailbox_close(&mb);

	/* a delivery counts for each recipient, a new one included */
	ck_assert_int_eq(storage_deliver(st, &in, t, 2, 0), 0);
	assert_usage(USER, 1742, 7);
	assert_usage("bob@example.com", 21, 1);

	/* renaming INBOX moves its messages within the user */
	ck_assert_int_eq(storage_rename(st, USER, "INBOX", "Old"), 0);
	assert_usage(USER, 1742, 7);
	reopen();
	assert_usage(USER, 1742, 7);
	assert_recalc_same(USER, 1742, 7);

	/* deleting a mailbox takes its messages away */
	ck_assert_int_eq(storage_delete(st, USER, "Work"), 0);
	assert_usage(USER, 142, 3);
	ck_assert_int_eq(storage_create(st, USER, "Old/Sub", 0), 0);
	ck_assert_int_eq(storage_delete(st, USER, "Old"), 0); /* \Noselect parent */
	assert_usage(USER, 0, 0);
	assert_recalc_same(USER, 0, 0);
	assert_recalc_same("bob@example.com", 21, 1);
	assert_clean();
	teardown_backend();
}
END_TEST

/* Writers in two processes, two threads each, appending, copying and
 * expunging in the same user's mailboxes at once: the usage is what a
 * recount finds, and what the writers' own tallies add up to. */
struct quota_writer {
	struct storage *st;
	int id;
	uint64_t bytes, messages; /* what this writer left stored */
};

static void *
quota_writer_main(void *arg)
{
	struct quota_writer *w = arg;
	char box[16];
	struct mailbox *mb = NULL;

	snprintf(box, sizeof(box), "W%d", w->id);
	if (storage_create(w->st, USER, box, 0) != 0 &&
	    storage_create(w->st, USER, box, 0) != ROOST_EEXISTS)
		return (void *)1;
	if (mailbox_open(w->st, USER, box, 0, &mb) != 0)
		return (void *)1;
	for (int i = 0; i < 30; i++) {
		char msg[256];
		int len = snprintf(msg, sizeof(msg), "Subject: w%d %d\r\n\r\n%*s\r\n", w->id, i,
		                   i * 3 + 1, "x");
		struct msg_input in = {.data = (const uint8_t *)msg, .len = (size_t)len, .fd = -1};
		uint32_t uid, *su = NULL, *du = NULL, uidv;
		size_t n = 0;

		if (mailbox_append(mb, &in, &uid) != 0)
			return (void *)1;
		w->bytes += (uint64_t)len;
		w->messages++;
		if (i % 3 == 1) {
			if (mailbox_expunge(mb, &uid, 1) != 0)
				return (void *)1;
			w->bytes -= (uint64_t)len;
			w->messages--;
		} else if (i % 3 == 2) {
			if (mailbox_copy(mb, &uid, 1, "INBOX", false, &uidv, &su, &du, &n) != 0 ||
			    n != 1)
				return (void *)1;
			free(su);
			free(du);
			w->bytes += (uint64_t)len;
			w->messages++;
		}
	}
	mailbox_close(&mb);
	return NULL;
}

/* Runs in a forked child: two writer threads on a store of its own. */
static void
quota_child(int base_id, int result_fd)
{
	struct storage *cst = NULL;
	struct quota_writer w[2];
	pthread_t th[2];
	uint64_t tally[2] = {0, 0};
	int ok = 1;

	if (storage_open(&cfg, &cst) != 0)
		_exit(2);
	for (int t = 0; t < 2; t++) {
		w[t] = (struct quota_writer){.st = cst, .id = base_id + t};
		pthread_create(&th[t], NULL, quota_writer_main, &w[t]);
	}
	for (int t = 0; t < 2; t++) {
		void *r;

		pthread_join(th[t], &r);
		ok &= r == NULL;
		tally[0] += w[t].bytes;
		tally[1] += w[t].messages;
	}
	storage_close(&cst);
	if (write(result_fd, tally, sizeof(tally)) != (ssize_t)sizeof(tally))
		_exit(3);
	_exit(ok ? 0 : 1);
}

START_TEST(quota_concurrent)
{
	uint64_t want_bytes = 0, want_messages = 0;
	int fds[2];
	pid_t pid[2];

	setup_backend(_i);
	storage_close(&st); /* its threads are joined: fork is safe */
	ck_assert_int_eq(pipe(fds), 0);
	for (int p = 0; p < 2; p++) {
		pid[p] = fork();
		ck_assert_int_ge(pid[p], 0);
		if (pid[p] == 0)
			quota_child(p * 2, fds[1]);
	}
	for (int p = 0; p < 2; p++) {
		uint64_t tally[2];
		int status;

		ck_assert_int_eq(waitpid(pid[p], &status, 0), pid[p]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		ck_assert_int_eq(read(fds[0], tally, sizeof(tally)), (ssize_t)sizeof(tally));
		want_bytes += tally[0];
		want_messages += tally[1];
	}
	close(fds[0]);
	close(fds[1]);
	open_store();
	ck_assert_uint_eq(want_messages, 4 * 30);
	assert_usage(USER, want_bytes, want_messages);
	assert_recalc_same(USER, want_bytes, want_messages);
	assert_clean();
	teardown_backend();
}
END_TEST

/* Crossing [quota] warning percent of a limit puts one flagged notice in
 * INBOX; staying past it sends no more; the count limit warns too. */
START_TEST(quota_warning)
{
	struct mailbox *mb;
	struct msg_record *recs;
	struct msg_view v;
	size_t n;
	uint64_t modseq;

	setup_dir(_i);
	cfg.quota_storage = 10000;
	cfg.quota_messages = 10;
	cfg.quota_warning = 90;
	cfg.hostname = "mail.example.com";
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	ck_assert_int_eq(append_sized("INBOX", 8000, NULL), 0);
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 1);
	ck_assert_int_eq(append_sized("INBOX", 1000, NULL), 0); /* 9000: crossed */
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 3);
	ck_assert_int_eq(append_sized("INBOX", 100, NULL), 0); /* past it already */
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 4);

	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &modseq), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(recs[2].flags, MSG_FLAGGED);
	ck_assert_int_eq(mailbox_read(mb, recs[2].uid, &v), 0);
	ck_assert(memmem(v.data, v.len, "Subject: Your mailbox is 90% full\r\n", 35) != NULL);
	ck_assert(memmem(v.data, v.len, "From: Mail System <postmaster@mail.example.com>", 47) !=
	          NULL);
	ck_assert(memmem(v.data, v.len, "To: <" USER ">\r\n", strlen(USER) + 8) != NULL);
	msg_view_release(&v);
	/* the message count: 9 of 10 is 90% */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(
		    mailbox_append(mb,
		                   &(struct msg_input){.data = (const uint8_t *)"S: x\r\n\r\nx\r\n",
		                                       .len = 11,
		                                       .fd = -1},
		                   NULL),
		    0);
	free(recs);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &modseq), 0);
	ck_assert_uint_eq(n, 10); /* 8 appended, 2 notices */
	ck_assert_uint_eq(recs[9].flags, MSG_FLAGGED);
	free(recs);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/* Limits from the config refuse what would pass them on every path, with
 * EQUOTATOOBIG for a message larger than the limit itself; a move is
 * never refused; refusals change nothing. */
START_TEST(quota_limits)
{
	struct mailbox *mb;
	uint32_t uids[3], *su, *du, uidv;
	size_t n;
	struct delivery_target t[2] = {{.user = USER, .mailbox = "INBOX"},
	                               {.user = "bob@example.com", .mailbox = "INBOX"}};
	char big[300];
	struct msg_input in = {.data = (const uint8_t *)big, .len = 250, .fd = -1};

	setup_dir(_i);
	cfg.quota_storage = 1000;
	cfg.quota_messages = 5;
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	memset(big, 'y', sizeof(big));
	memcpy(big, "Subject: b\r\n\r\n", 14);

	ck_assert_int_eq(storage_create(st, USER, "Work", 0), 0);
	ck_assert_int_eq(append_sized("INBOX", 400, &uids[0]), 0);
	ck_assert_int_eq(append_sized("INBOX", 400, &uids[1]), 0);
	ck_assert_int_eq(append_sized("INBOX", 201, &uids[2]), ROOST_EOVERQUOTA);
	ck_assert_int_eq(append_sized("INBOX", 1001, &uids[2]), ROOST_EQUOTATOOBIG);
	ck_assert_int_eq(storage_quota_check(st, USER, 200, 1), 0);
	ck_assert_int_eq(storage_quota_check(st, USER, 201, 1), ROOST_EOVERQUOTA);
	ck_assert_int_eq(storage_quota_check(st, USER, 1001, 1), ROOST_EQUOTATOOBIG);
	assert_usage(USER, 800, 2);

	/* a delivery refuses the full recipient only, unless all or nothing */
	ck_assert_int_eq(storage_deliver(st, &in, t, 2, 0), ROOST_EOVERQUOTA);
	ck_assert_int_eq(t[0].result, ROOST_EOVERQUOTA);
	ck_assert_int_eq(t[1].result, 0);
	ck_assert_int_eq(storage_deliver(st, &in, t, 2, STORAGE_DELIVER_ATOMIC), ROOST_EOVERQUOTA);
	ck_assert_int_eq(t[1].result, ROOST_EOVERQUOTA);
	assert_usage("bob@example.com", 250, 1);
	assert_usage(USER, 800, 2);

	/* COPY is counted; MOVE stays within the root */
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_copy(mb, uids, 1, "Work", false, &uidv, &su, &du, &n),
	                 ROOST_EOVERQUOTA);
	ck_assert_int_eq(mailbox_copy(mb, uids, 2, "Work", true, &uidv, &su, &du, &n), 0);
	ck_assert_uint_eq(n, 2);
	free(su);
	free(du);
	assert_usage(USER, 800, 2);
	ck_assert_int_eq(mailbox_append(mb, &in, NULL), ROOST_EOVERQUOTA);
	mailbox_close(&mb);
	ck_assert_int_eq(append_sized("Work", 150, NULL), 0);
	ck_assert_int_eq(append_sized("Work", 150, NULL), ROOST_EOVERQUOTA);
	assert_usage(USER, 950, 3);

	/* the message count is a limit too */
	ck_assert_int_eq(storage_delete(st, USER, "Work"), 0);
	assert_usage(USER, 0, 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(append_sized("INBOX", 20, NULL), 0);
	ck_assert_int_eq(append_sized("INBOX", 20, NULL), ROOST_EOVERQUOTA);
	assert_usage(USER, 100, 5);
	assert_recalc_same(USER, 100, 5);
	assert_clean();
	teardown_backend();
}
END_TEST

/* `roost check` on body files: one nobody refers to, one gone, one changed. */
START_TEST(lmdb_check_body_files)
{
	uint8_t *a = large_body(4);
	struct buf report = BUF_INIT(1 << 20);
	char blobs[300], path[600], name[256] = "";
	struct mailbox *mb;
	struct msg_view v;
	struct dirent *de;
	uint32_t uid;
	DIR *d;
	int fd;

	setup_backend(0);
	ck_assert_int_eq(append_bytes("INBOX", a, LARGE_LEN, 0, &uid), 0);
	assert_clean();
	snprintf(blobs, sizeof(blobs), "%s/lmdb/blobs", dir);
	ck_assert_ptr_nonnull(d = opendir(blobs));
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) == 81)
			snprintf(name, sizeof(name), "%s", de->d_name);
	}
	closedir(d);
	ck_assert_str_ne(name, "");

	/* a file nobody refers to */
	snprintf(path, sizeof(path), "%s/%064d-%016d", blobs, 0, 1);
	ck_assert_int_ge(fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600), 0);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "no record refers to"));
	unlink(path);
	assert_clean();

	/* a changed file */
	snprintf(path, sizeof(path), "%s/%s", blobs, name);
	ck_assert_int_ge(fd = open(path, O_WRONLY), 0);
	ck_assert_int_eq(pwrite(fd, "X", 1, 1000), 1);
	close(fd);
	buf_reset(&report);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "does not match its SHA-256"));

	/* a lost file: an error, not a crash */
	unlink(path);
	buf_reset(&report);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "missing"));
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_read(mb, uid, &v), ROOST_EIO);
	mailbox_close(&mb);
	buf_free(&report);
	free(a);
	teardown_backend();
}
END_TEST

START_TEST(lmdb_shards)
{
	char user[32];
	struct mailbox_status s;

	setup_dir(0);
	cfg.lmdb_shards = 4;
	open_store();
	for (int u = 0; u < 12; u++) {
		struct delivery_target t[2];
		struct msg_input in = {
		    .data = (const uint8_t *)"S: x\r\n\r\n.\r\n", .len = 12, .fd = -1};
		char u2[32];

		snprintf(user, sizeof(user), "user%d@x", u);
		snprintf(u2, sizeof(u2), "other%d@x", u);
		t[0] = (struct delivery_target){.user = user, .mailbox = "INBOX"};
		t[1] = (struct delivery_target){.user = u2, .mailbox = "INBOX"};
		ck_assert_int_eq(storage_deliver(st, &in, t, 2, 0), 0);
	}
	reopen();
	for (int u = 0; u < 12; u++) {
		snprintf(user, sizeof(user), "user%d@x", u);
		ck_assert_int_eq(storage_status(st, user, "INBOX", &s), 0);
		ck_assert_uint_eq(s.messages, 1);
	}
	assert_clean();
	storage_close(&st);
	cfg.lmdb_shards = 2;
	ck_assert_int_eq(storage_open(&cfg, &st), ROOST_ECONFIG);
	teardown_backend();
}
END_TEST

/* The closed store's LMDB environment, opened directly with a write
 * transaction in *txn_r, to damage it behind the store's back. */
static MDB_env *
lmdb_behind(MDB_txn **txn_r)
{
	char path[300];
	MDB_env *env;

	snprintf(path, sizeof(path), "%s/lmdb", dir);
	ck_assert_int_eq(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, 1u << 30);
	ck_assert_int_eq(mdb_env_open(env, path, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, txn_r), 0);
	return env;
}

/* ---- LMDB group commit (lmdb_env.c) ---- */

struct gc_writer {
	pthread_t th;
	int id, count, failed;
	const char *mailbox; /* NULL: INBOX */
	int expect;          /* each delivery's result */
};

static void *
gc_writer_main(void *arg)
{
	struct gc_writer *w = arg;

	for (int i = 0; i < w->count; i++) {
		char msg[64];
		struct msg_input in = {.data = (const uint8_t *)msg, .fd = -1};
		struct delivery_target t = {.user = USER,
		                            .mailbox = w->mailbox != NULL ? w->mailbox : "INBOX"};

		in.len =
		    (size_t)snprintf(msg, sizeof(msg), "Subject: g%d m%d\r\n\r\n.\r\n", w->id, i);
		if (storage_deliver(st, &in, &t, 1, 0) != w->expect || t.result != w->expect)
			w->failed++;
	}
	return NULL;
}

/* Wait (60 s at most) until the shard's write queue holds n_sync waiting
 * requests with a commit running. */
static void
gc_wait_queue(struct lmdb_shard *sh, size_t n_sync)
{
	for (int i = 0; i < 60000; i++) {
		bool ok;

		pthread_mutex_lock(&sh->wq_lock);
		ok = sh->committing && sh->wq_sync == n_sync;
		pthread_mutex_unlock(&sh->wq_lock);
		if (ok)
			return;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	ck_abort_msg("the write queue never held %zu requests behind a commit", n_sync);
}

/*
 * Leader/follower group commit: the first writer commits its own request
 * (here held up by another process owning LMDB's write lock); the writers
 * that arrive meanwhile all wait, and one of them then commits all their
 * requests at once; one of those fails (no such mailbox) and leaves no
 * trace while the others commit. Then many writers at once: every write
 * lands exactly once, whoever committed it.
 */
START_TEST(lmdb_group_commit)
{
	struct lmdb_shard *sh;
	struct gc_writer w[8];
	struct storage_stats s0, s1;
	struct mailbox_status ms;
	int go[2], ready[2], status;
	char c;
	pid_t pid;

	setup_backend(0);
	append_simple("INBOX", 1);
	storage_close(&st); /* its threads are joined: fork is safe */
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Take LMDB's write lock when told, hold it until told. */
		MDB_env *env;
		MDB_txn *txn;

		if (read(go[0], &c, 1) != 1)
			_exit(2);
		env = lmdb_behind(&txn);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		_exit(0);
	}
	open_store();
	sh = &container_of(st, struct lmdb_storage, base)->shards[0];
	ck_assert_int_eq(storage_stats(st, &s0), 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);

	for (int i = 0; i < 8; i++)
		w[i] = (struct gc_writer){.id = i, .count = 1};
	w[5].mailbox = "Nope";
	w[5].expect = ROOST_ENOTFOUND;
	ck_assert_int_eq(pthread_create(&w[0].th, NULL, gc_writer_main, &w[0]), 0);
	gc_wait_queue(sh, 0); /* w[0] commits, blocked on the other process */
	for (int i = 1; i < 8; i++)
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, gc_writer_main, &w[i]), 0);
	gc_wait_queue(sh, 7);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(w[i].th, NULL);
		ck_assert_int_eq(w[i].failed, 0);
	}
	ck_assert_int_eq(storage_stats(st, &s1), 0);
	ck_assert_uint_eq(s1.writes - s0.writes, 8);
	ck_assert_uint_eq(s1.commits - s0.commits, 2); /* w[0]'s, then the other 7 */
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);

	/* Free for all: 8 writers, 30 deliveries each. */
	s0 = s1;
	for (int i = 0; i < 8; i++) {
		w[i] = (struct gc_writer){.id = 10 + i, .count = 30};
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, gc_writer_main, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(w[i].th, NULL);
		ck_assert_int_eq(w[i].failed, 0);
	}
	ck_assert_int_eq(storage_stats(st, &s1), 0);
	ck_assert_uint_eq(s1.writes - s0.writes, 8 * 30);
	ck_assert_uint_le(s1.commits - s0.commits, 8 * 30);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &ms), 0);
	ck_assert_uint_eq(ms.messages, 1 + 7 + 8 * 30);
	ck_assert_uint_eq(ms.uidnext, 1 + 7 + 8 * 30 + 1);
	pthread_mutex_lock(&sh->wq_lock);
	ck_assert_ptr_null(sh->wq_head);
	ck_assert(!sh->committing);
	pthread_mutex_unlock(&sh->wq_lock);
	assert_clean();
	teardown_backend();
}
END_TEST

/* LMDB only: damage a reference count and a counter behind the store's
 * back; `roost check` must report both and change nothing. */
START_TEST(lmdb_check_detects_damage)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi refs, mboxes;
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t seven = 7;
	struct buf report = BUF_INIT(1 << 20);

	setup_backend(0);
	append_simple("INBOX", 1);
	append_simple("INBOX", 2);
	storage_close(&st);
	env = lmdb_behind(&txn);
	ck_assert_int_eq(mdb_dbi_open(txn, "refs", 0, &refs), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "mboxes", 0, &mboxes), 0);
	ck_assert_int_eq(mdb_cursor_open(txn, refs, &cur), 0);
	ck_assert_int_eq(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
	v.mv_size = sizeof(seven);
	v.mv_data = &seven;
	ck_assert_int_eq(mdb_cursor_put(cur, &k, &v, MDB_CURRENT), 0);
	mdb_cursor_close(cur);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	open_store();
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "reference count 7"));
	buf_reset(&report);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO); /* unchanged */
	buf_free(&report);
	teardown_backend();
}
END_TEST

/* LMDB: a usage record that disagrees with the messages is reported by
 * `roost check` and repaired by a recount. */
START_TEST(lmdb_check_quota)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi quota;
	MDB_val k = {strlen(USER), (void *)USER}, v;
	uint64_t wrong[2] = {5, 1};
	struct buf report = BUF_INIT(1 << 20);

	setup_backend(0);
	append_simple("INBOX", 1);
	append_simple("INBOX", 2);
	assert_clean();
	storage_close(&st);
	env = lmdb_behind(&txn);
	ck_assert_int_eq(mdb_dbi_open(txn, "quota", 0, &quota), 0);
	v.mv_size = sizeof(wrong);
	v.mv_data = wrong;
	ck_assert_int_eq(mdb_put(txn, quota, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	open_store();
	assert_usage(USER, 5, 1);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "quota of " USER " says 5 bytes in 1"));
	assert_recalc_repairs(USER);
	assert_clean();
	buf_free(&report);
	teardown_backend();
}
END_TEST

static int
woken_now(void)
{
	int n;

	pthread_mutex_lock(&wlock);
	n = woken;
	pthread_mutex_unlock(&wlock);
	return n;
}

/* Wait (each time for the next wake-up of the watcher, at most 60 s)
 * until the changes since modseq of mb hold uid changed with flags (or,
 * when flags is ~0u, uid expunged); returns their HIGHESTMODSEQ. */
static uint64_t
wait_change(struct mailbox *mb, uint64_t modseq, uint32_t uid, uint32_t flags, const char *what)
{
	for (;;) {
		struct mailbox_changes ch;
		int seen = woken_now();
		bool found = false;

		ck_assert_int_eq(mailbox_changes_since(mb, modseq, &ch), 0);
		if (flags == ~0u) {
			for (size_t i = 0; i < ch.n_expunged; i++)
				found = found || ch.expunged[i] == uid;
		} else {
			for (size_t i = 0; i < ch.n_changed; i++)
				found = found ||
				        (ch.changed[i].uid == uid && ch.changed[i].flags == flags);
		}
		if (found) {
			uint64_t hms = ch.highestmodseq;

			mailbox_changes_free(&ch);
			ck_assert_uint_gt(hms, modseq);
			return hms;
		}
		mailbox_changes_free(&ch);
		ck_assert_msg(wait_woken(seen + 1, 60000), "%s on the other node: not heard", what);
	}
}

/*
 * A flag change, an expunge and a move made on node other wake the watcher
 * here, and the changes query here returns them: this node keeps a
 * changes query's result while nothing it heard of names the mailbox, so
 * each notification must name it (its id and MODSEQ) to stale that result.
 */
static void
pgsql_two_nodes_changes(struct storage *other)
{
	static const struct store_req flag = {.mode = STORE_ADD, .flags = MSG_FLAGGED};
	struct mailbox *mb, *mbo;
	struct mailbox_changes ch;
	uint32_t *modified, uid = 3, *src, *dst, uidv;
	size_t n_modified, n;
	uint64_t hms;

	ck_assert_int_eq(storage_create(st, USER, "Moved", 0), 0);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_open(other, USER, "INBOX", 0, &mbo), 0);
	ck_assert_int_eq(mailbox_changes_since(mb, 0, &ch), 0);
	hms = ch.highestmodseq;
	mailbox_changes_free(&ch);

	ck_assert_int_eq(mailbox_store(mbo, &uid, 1, &flag, &modified, &n_modified), 0);
	free(modified);
	hms = wait_change(mb, hms, 3, MSG_FLAGGED, "a flag change");

	uid = 4;
	ck_assert_int_eq(mailbox_expunge(mbo, &uid, 1), 0);
	hms = wait_change(mb, hms, 4, ~0u, "an expunge");

	uid = 5;
	ck_assert_int_eq(mailbox_copy(mbo, &uid, 1, "Moved", true, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(src);
	free(dst);
	wait_change(mb, hms, 5, ~0u, "a move");
	mailbox_close(&mbo);
	mailbox_close(&mb);
}

void pg_group_state(struct storage *st, size_t *queued_r, unsigned *leaders_r);

struct group_delivery {
	const char *mbox;
	int n;
	pthread_t th;
	int rc;
	uint32_t uid;
};

static void *
group_delivery_run(void *arg)
{
	struct group_delivery *d = arg;
	char msg[128];
	int len = snprintf(msg, sizeof(msg), "Subject: %d\r\n\r\nbody %d\r\n", d->n, d->n);

	d->rc = append_bytes(d->mbox, msg, (size_t)len, 0, &d->uid);
	return NULL;
}

/* Wait (at most 60 s) until the group-commit queue holds queued
 * deliveries behind leaders groups under way. */
static void
wait_group_state(size_t queued, unsigned leaders)
{
	for (int i = 0; i < 60000; i++) {
		size_t q;
		unsigned l;

		pg_group_state(st, &q, &l);
		if (q == queued && l == leaders)
			return;
		usleep(1000);
	}
	ck_abort_msg("group commit: never %zu queued behind %u groups", queued, leaders);
}

/*
 * pgsql only: the group commit's fallback. Four deliveries to a mailbox
 * whose row another connection holds lead four groups that wait (the
 * most under way at once), so the next three queue and go as one group
 * once the row is free: A, B and Bad, whose message a trigger refuses.
 * That spoils the group's transaction; each delivery then runs alone: A
 * and B are stored once each, Bad fails, the four behind the row too.
 */
START_TEST(pgsql_group_fallback)
{
	struct group_delivery held[4],
	    grp[3] = {{.mbox = "A", .n = 10}, {.mbox = "B", .n = 11}, {.mbox = "Bad", .n = 12}};
	PGconn *lock;
	PGresult *res;

	setup_backend(_i);
	ck_assert_int_eq(storage_create(st, USER, "Held", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "A", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "B", 0), 0);
	ck_assert_int_eq(storage_create(st, USER, "Bad", 0), 0);
	pg_sql(pg_dsn, "CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$ "
	               "BEGIN IF NEW.mailbox_id = (SELECT id FROM mailboxes WHERE name = 'Bad') "
	               "THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$");
	pg_sql(pg_dsn, "CREATE TRIGGER refuse_bad BEFORE INSERT ON messages FOR EACH ROW "
	               "EXECUTE FUNCTION refuse_bad()");
	lock = PQconnectdb(pg_dsn);
	ck_assert_msg(PQstatus(lock) == CONNECTION_OK, "%s", PQerrorMessage(lock));
	res = PQexec(lock, "BEGIN; SELECT id FROM mailboxes WHERE name = 'Held' FOR UPDATE");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(res), 1);
	PQclear(res);
	for (unsigned i = 0; i < 4; i++) {
		held[i] = (struct group_delivery){.mbox = "Held", .n = (int)i};
		ck_assert_int_eq(pthread_create(&held[i].th, NULL, group_delivery_run, &held[i]),
		                 0);
		wait_group_state(0, i + 1);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&grp[i].th, NULL, group_delivery_run, &grp[i]), 0);
	wait_group_state(3, 4);
	res = PQexec(lock, "COMMIT");
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(lock);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(held[i].th, NULL), 0);
		ck_assert_int_eq(held[i].rc, 0);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_join(grp[i].th, NULL), 0);
	ck_assert_int_eq(grp[0].rc, 0);
	ck_assert_uint_eq(grp[0].uid, 1);
	ck_assert_int_eq(grp[1].rc, 0);
	ck_assert_uint_eq(grp[1].uid, 1);
	ck_assert_int_ne(grp[2].rc, 0);
	ck_assert_uint_eq(messages_in(USER, "Held"), 4);
	ck_assert_uint_eq(messages_in(USER, "A"), 1);
	ck_assert_uint_eq(messages_in(USER, "B"), 1);
	ck_assert_uint_eq(messages_in(USER, "Bad"), 0);
	pg_sql(pg_dsn, "DROP TRIGGER refuse_bad ON messages");
	assert_clean();
	teardown_backend();
}
END_TEST

/*
 * pgsql only: two nodes, each with its own data directory (so no notify
 * file links them), on one database. A change on one wakes a watcher on
 * the other through LISTEN/NOTIFY, and the UIDs both hand out interleave
 * without a gap.
 */
START_TEST(pgsql_two_nodes)
{
	char dir2[] = "/tmp/roost-storage-XXXXXX";
	struct roost_config cfg2;
	struct storage *other;
	struct storage_watch *w;
	struct mailbox_status s;
	uint32_t uid;

	setup_backend(_i);
	ck_assert_ptr_nonnull(mkdtemp(dir2));
	cfg2 = cfg;
	cfg2.data_dir = dir2;
	ck_assert_int_eq(storage_open(&cfg2, &other), 0);
	pthread_mutex_lock(&wlock);
	woken = 0;
	pthread_mutex_unlock(&wlock);
	/* the listener starts with the first transaction after the open */
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_int_eq(storage_watch(st, USER, "INBOX", on_change, NULL, &w), 0);
	for (int round = 1; round <= 5; round++) {
		struct msg_input in = {
		    .data = (const uint8_t *)"S: n\r\n\r\nx\r\n", .len = 11, .fd = -1};
		uint32_t uidv;

		ck_assert_int_eq(storage_append(other, USER, "INBOX", &in, &uidv, &uid), 0);
		ck_assert_uint_eq(uid, (uint32_t)(2 * round - 1));
		ck_assert_msg(wait_woken(round, 5000), "round %d: no wake-up from the other node",
		              round);
		ck_assert_uint_eq(append_simple("INBOX", round), (uint32_t)(2 * round));
	}
	pgsql_two_nodes_changes(other);
	storage_unwatch(&w);
	storage_close(&other);
	nftw(dir2, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	ck_assert_int_eq(storage_status(st, USER, "INBOX", &s), 0);
	ck_assert_uint_eq(s.messages, 8);
	ck_assert_uint_eq(s.uidnext, 11);
	assert_clean();
	teardown_backend();
}
END_TEST

/* pgsql only: `roost check` finds a wrong reference count and a schema
 * version this build did not make; a newer schema is refused at open. */
START_TEST(pgsql_check_detects_damage)
{
	struct buf report = BUF_INIT(1 << 20);

	setup_backend(_i);
	append_simple("INBOX", 1);
	append_simple("INBOX", 2);
	assert_clean();
	pg_sql(pg_dsn, "UPDATE bodies SET refs = 7 WHERE sha = (SELECT sha FROM bodies LIMIT 1)");
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "reference count 7"));
	buf_reset(&report);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO); /* unchanged */
	pg_sql(pg_dsn, "UPDATE bodies SET refs = 1");
	pg_sql(pg_dsn, "UPDATE roost_schema SET version = 99");
	buf_reset(&report);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "schema version 99"));
	storage_close(&st);
	ck_assert_int_eq(storage_open(&cfg, &st), ROOST_ECONFIG);
	/* an older version: the steps since run again, harmlessly */
	pg_sql(pg_dsn, "UPDATE roost_schema SET version = 1");
	open_store();
	assert_clean();
	/* the quota counters against the messages */
	pg_sql(pg_dsn, "UPDATE users SET quota_bytes = quota_bytes + 5");
	buf_reset(&report);
	ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "quota of " USER));
	assert_recalc_repairs(USER);
	assert_clean();
	/* the mailbox counters STATUS reads (schema 7) against the messages;
	 * the repair recounts them */
	{
		struct mailbox_status before, after;

		ck_assert_int_eq(storage_status(st, USER, "INBOX", &before), 0);
		ck_assert_uint_eq(before.messages, 2);
		pg_sql(pg_dsn,
		       "UPDATE mailboxes SET n_unseen = n_unseen + 3, n_bytes = 1 WHERE name "
		       "= 'INBOX'");
		buf_reset(&report);
		ck_assert_int_eq(storage_check(st, &report), ROOST_EIO);
		ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "/INBOX: counters say"));
		buf_reset(&report);
		ck_assert_int_eq(storage_repair(st, &report), 0);
		ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "/INBOX: counters recounted"));
		assert_clean();
		ck_assert_int_eq(storage_status(st, USER, "INBOX", &after), 0);
		ck_assert_uint_eq(after.messages, before.messages);
		ck_assert_uint_eq(after.unseen, before.unseen);
		ck_assert_uint_eq(after.size, before.size);
		buf_reset(&report);
		ck_assert_int_eq(storage_repair(st, &report), 0);
		ck_assert_uint_eq(report.len, 0);
	}
	buf_free(&report);
	teardown_backend();
}
END_TEST

/* ---- access control (storage_acl.c) ---- */

#define BOB "bob@example.com"
#define CAROL "carol@example.com"
#define TEAM "Other Users/" USER "/Team"

START_TEST(acl_rights_text)
{
	char out[STORAGE_ACL_RIGHTS_MAX];
	unsigned r;

	ck_assert_int_eq(storage_acl_rights_parse("lrswipkxtea", &r), 0);
	ck_assert_uint_eq(r, ACL_RIGHTS_ALL);
	storage_acl_rights_format(r, out);
	ck_assert_str_eq(out, "lrswipkxteacd");
	/* the obsolete letters: c is k, d is x t e (RFC 4314 2.1.1) */
	ck_assert_int_eq(storage_acl_rights_parse("c", &r), 0);
	ck_assert_uint_eq(r, ACL_CREATE);
	ck_assert_int_eq(storage_acl_rights_parse("d", &r), 0);
	ck_assert_uint_eq(r, ACL_DELETE | ACL_DELETED | ACL_EXPUNGE);
	storage_acl_rights_format(ACL_LOOKUP | ACL_READ | ACL_DELETED, out);
	ck_assert_str_eq(out, "lrt");
	ck_assert_int_eq(storage_acl_rights_parse("", &r), 0);
	ck_assert_uint_eq(r, 0);
	ck_assert_int_eq(storage_acl_rights_parse("lrz", &r), ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_rights_parse("l r", &r), ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_rights_parse("+l", &r), ROOST_EINVAL);
	ck_assert(storage_acl_identifier_valid("anyone"));
	ck_assert(storage_acl_identifier_valid("authenticated"));
	ck_assert(storage_acl_identifier_valid(BOB));
	ck_assert(!storage_acl_identifier_valid("-bob@example.com"));
	ck_assert(!storage_acl_identifier_valid("a/b"));
	ck_assert(!storage_acl_identifier_valid(""));
	ck_assert(!storage_acl_identifier_valid("#shared"));
}
END_TEST

static unsigned
rights_of(const char *user, const char *mbox)
{
	unsigned r = 0;

	ck_assert_int_eq(storage_acl_myrights(st, user, mbox, &r), 0);
	return r;
}

static size_t
shared_count(const char *user, const char *name)
{
	struct mailbox_info *l;
	size_t n, found = 0;

	ck_assert_int_eq(storage_acl_shared_list(st, user, &l, &n), 0);
	for (size_t i = 0; i < n; i++)
		found += name == NULL || strcmp(l[i].name, name) == 0;
	storage_list_free(l, n);
	return found;
}

/* The acl cases' start: the backend, bob and carol, alice's Team with
 * n_msgs messages (their UIDs in uids when not NULL), then bob's and
 * carol's rights on it (0: nothing granted, the default ACL stays). */
static void
acl_setup(int i, size_t n_msgs, uint32_t *uids, unsigned bob, unsigned carol)
{
	setup_backend(i);
	ck_assert_int_eq(storage_user_init(st, BOB), 0);
	ck_assert_int_eq(storage_user_init(st, CAROL), 0);
	ck_assert_int_eq(storage_create(st, USER, "Team", 0), 0);
	for (size_t k = 0; k < n_msgs; k++) {
		uint32_t uid = append_simple("Team", (int)k + 1);

		if (uids != NULL)
			uids[k] = uid;
	}
	if (bob != 0)
		ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_SET, bob), 0);
	if (carol != 0)
		ck_assert_int_eq(storage_acl_set(st, USER, "Team", CAROL, ACL_SET, carol), 0);
}

START_TEST(acl_share)
{
	struct acl_entry *v;
	struct mailbox *mb;
	struct msg_record *recs;
	size_t n;
	uint64_t modseq;
	uint32_t uids[2], *src, *dst, uidv;
	struct store_req seen = {.mode = STORE_ADD, .flags = MSG_SEEN};
	struct store_req del = {.mode = STORE_ADD, .flags = MSG_DELETED};
	char big[600];

	acl_setup(_i, 2, uids, 0, 0);

	/* the default ACL: the owner, and anyone may post */
	ck_assert_int_eq(storage_acl_get(st, USER, "Team", &v, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(v[0].identifier, USER);
	ck_assert_uint_eq(v[0].rights, ACL_RIGHTS_ALL);
	ck_assert_str_eq(v[1].identifier, "anyone");
	ck_assert_uint_eq(v[1].rights, ACL_POST);
	storage_acl_free(v, n);

	/* before any grant bob sees nothing, not even that it exists */
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &mb), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_get(st, BOB, TEAM, &v, &n), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_set(st, BOB, TEAM, BOB, ACL_SET, ACL_RIGHTS_ALL),
	                 ROOST_ENOTFOUND);
	ck_assert_uint_eq(shared_count(BOB, NULL), 0);

	/* lr: bob reads, read-only */
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_SET, ACL_LOOKUP | ACL_READ), 0);
	/* anyone's p counts too */
	ck_assert_uint_eq(rights_of(BOB, TEAM), ACL_LOOKUP | ACL_READ | ACL_POST);
	ck_assert_uint_eq(shared_count(BOB, TEAM), 1);
	ck_assert_uint_eq(shared_count(BOB, "Other Users/" USER), 1);
	ck_assert_uint_eq(shared_count(BOB, "Other Users"), 1);
	ck_assert_uint_eq(shared_count(CAROL, NULL), 0);
	ck_assert_uint_eq(messages_in(BOB, TEAM), 2);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &mb), 0);
	ck_assert(mailbox_readonly(mb));
	ck_assert_str_eq(mailbox_name(mb), TEAM);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &modseq), 0);
	ck_assert_uint_eq(n, 2);
	free(recs);
	assert_read(mb, uids[0], "Subject: 1\r\n\r\nbody 1\r\n", 22);
	ck_assert_int_eq(mailbox_store(mb, uids, 1, &seen, &src, &n), ROOST_EPERM);
	ck_assert_int_eq(mailbox_expunge(mb, uids, 1), ROOST_EPERM);
	mailbox_close(&mb);
	ck_assert_int_eq(storage_acl_set(st, BOB, TEAM, BOB, ACL_ADD, ACL_ADMIN), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_delete(st, BOB, TEAM), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_create(st, BOB, TEAM "/Sub", 0), ROOST_ENOACCESS);

	/* carol, a third user, reaches nothing */
	ck_assert_int_eq(mailbox_open(st, CAROL, TEAM, MAILBOX_READONLY, &mb), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_status(st, CAROL, TEAM, &(struct mailbox_status){0}),
	                 ROOST_ENOTFOUND);

	/* more rights: bob writes flags, expunges, appends */
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_ADD,
	                                 ACL_SEEN | ACL_DELETED | ACL_EXPUNGE | ACL_INSERT),
	                 0);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &mb), 0);
	ck_assert(!mailbox_readonly(mb));
	ck_assert_int_eq(mailbox_store(mb, uids, 1, &seen, &src, &n), 0);
	ck_assert_int_eq(mailbox_store(mb, uids + 1, 1, &del, &src, &n), 0);
	ck_assert_int_eq(mailbox_expunge(mb, uids + 1, 1), 0);
	ck_assert_uint_eq(messages_in(USER, "Team"), 1);
	/* a copy into bob's own INBOX crosses stores */
	ck_assert_int_eq(mailbox_copy(mb, uids, 1, "INBOX", false, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(src);
	free(dst);
	ck_assert_uint_eq(messages_in(BOB, "INBOX"), 1);
	/* a right taken away stops the session that has the mailbox open */
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_REMOVE, ACL_EXPUNGE), 0);
	ck_assert_int_eq(mailbox_expunge(mb, uids, 1), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_acl_delete(st, USER, "Team", BOB), 0);
	ck_assert_int_eq(mailbox_store(mb, uids, 1, &seen, &src, &n), ROOST_ENOTFOUND);
	mailbox_close(&mb);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &mb), ROOST_ENOTFOUND);

	/* k on the parent makes children (which start with the parent's ACL);
	 * x deletes; a rename stays with the owner */
	ck_assert_int_eq(
	    storage_acl_set(st, USER, "Team", BOB, ACL_SET, ACL_LOOKUP | ACL_READ | ACL_CREATE), 0);
	ck_assert_int_eq(storage_create(st, BOB, TEAM "/Sub", 0), 0);
	ck_assert_int_eq(storage_status(st, USER, "Team/Sub", &(struct mailbox_status){0}), 0);
	ck_assert_uint_eq(rights_of(BOB, TEAM "/Sub"),
	                  ACL_LOOKUP | ACL_READ | ACL_CREATE | ACL_POST);
	ck_assert_int_eq(storage_rename(st, BOB, TEAM, "Mine"), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_delete(st, BOB, TEAM "/Sub"), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_ADD, ACL_DELETE), 0);
	ck_assert_int_eq(storage_acl_set(st, USER, "Team/Sub", BOB, ACL_ADD, ACL_DELETE), 0);
	ck_assert_int_eq(storage_rename(st, BOB, TEAM, "Mine"), ROOST_EPERM);
	ck_assert_int_eq(storage_rename(st, BOB, TEAM "/Sub", TEAM "/Sub2"), 0);
	ck_assert_int_eq(storage_delete(st, BOB, TEAM "/Sub2"), 0);
	ck_assert_int_eq(storage_create(st, BOB, "Other Users/" USER "/Top", 0), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_create(st, BOB, "Other Users", 0), ROOST_EPERM);
	ck_assert_int_eq(storage_create(st, BOB, "Other Users/" USER, 0), ROOST_EPERM);

	/* the ACL follows a rename */
	ck_assert_int_eq(storage_rename(st, USER, "Team", "Crew"), 0);
	ck_assert_uint_eq(rights_of(BOB, "Other Users/" USER "/Crew"),
	                  ACL_LOOKUP | ACL_READ | ACL_CREATE | ACL_DELETE | ACL_POST);
	ck_assert_uint_eq(shared_count(BOB, "Other Users/" USER "/Crew"), 1);

	/* "authenticated": every user, carol too */
	ck_assert_int_eq(storage_create(st, USER, "Pub", 0), 0);
	ck_assert_int_eq(
	    storage_acl_set(st, USER, "Pub", "authenticated", ACL_SET, ACL_LOOKUP | ACL_READ), 0);
	ck_assert_uint_eq(shared_count(CAROL, "Other Users/" USER "/Pub"), 1);
	ck_assert_uint_eq(rights_of(CAROL, "Other Users/" USER "/Pub"),
	                  ACL_LOOKUP | ACL_READ | ACL_POST);
	/* the owner's rights are fixed */
	ck_assert_int_eq(storage_acl_set(st, USER, "Pub", USER, ACL_SET, 0), ROOST_EPERM);

	/* the owner's own mailbox named under the prefix is the mailbox itself */
	ck_assert_int_eq(mailbox_open(st, USER, "Other Users/" USER "/Pub", 0, &mb), 0);
	ck_assert_str_eq(mailbox_name(mb), "Pub");
	mailbox_close(&mb);
	ck_assert_uint_eq(messages_in(USER, "Other Users/" USER "/Pub"), 0);

	/* hostile names and identifiers */
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users/../x", 0, &mb), ROOST_EINVAL);
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users/" USER "/../Pub", 0, &mb),
	                 ROOST_EINVAL);
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users/a\\b/INBOX", 0, &mb), ROOST_EINVAL);
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users/" USER, 0, &mb), ROOST_ENOTFOUND);
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users", 0, &mb), ROOST_ENOTFOUND);
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users/" USER "/INBOX", 0, &mb),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_set(st, USER, "Pub", "-" BOB, ACL_SET, ACL_READ),
	                 ROOST_EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(storage_acl_set(st, USER, "Pub", big, ACL_SET, ACL_READ), ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_set(st, USER, "Pub", "b\xff@x", ACL_SET, ACL_READ),
	                 ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_set(st, USER, "Pub", BOB, ACL_SET, 1u << 20), ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_set(st, USER, "Nope", BOB, ACL_SET, ACL_READ),
	                 ROOST_ENOTFOUND);
	/* the ACL is not a metadata entry anyone can read or write */
	{
		struct metadata_entry *l;
		const char *name = "/acl";
		const uint8_t *val = (const uint8_t *)"user=" BOB " lrswipkxtea\n";
		size_t len = strlen((const char *)val);

		ck_assert_int_eq(storage_metadata_get(st, USER, "Pub", "/shared", -1, &l, &n), 0);
		ck_assert_uint_eq(n, 0);
		storage_metadata_free(l, n);
		ck_assert_int_eq(storage_metadata_set(st, USER, "Pub", &name, &val, &len, 1),
		                 ROOST_EINVAL);
	}
	assert_clean();
	teardown_backend();
}
END_TEST

/* Delivery to user+folder needs p for anyone; without it mail goes to
 * INBOX (or fails without the fallback); names of others never take mail. */
START_TEST(acl_deliver)
{
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: x\r\n\r\nx\r\n", .len = 17, .fd = -1};
	struct delivery_target t = {.user = USER, .mailbox = "Team"};

	acl_setup(_i, 0, NULL, 0, 0);
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK), 0);
	ck_assert_str_eq(t.mailbox, "Team");
	ck_assert_uint_eq(messages_in(USER, "Team"), 1);
	ck_assert_int_eq(storage_acl_delete(st, USER, "Team", "anyone"), 0);
	t.mailbox = "Team";
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK), 0);
	ck_assert_str_eq(t.mailbox, "INBOX");
	ck_assert_uint_eq(messages_in(USER, "Team"), 1);
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 1);
	t.mailbox = "Team";
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, 0), ROOST_ENOACCESS);
	ck_assert_int_eq(t.result, ROOST_ENOACCESS);
	/* bob's address with alice's mailbox as the folder */
	t.user = BOB;
	t.mailbox = "Other Users/" USER "/INBOX";
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK), 0);
	ck_assert_str_eq(t.mailbox, "INBOX");
	ck_assert_uint_eq(messages_in(BOB, "INBOX"), 1);
	ck_assert_uint_eq(messages_in(USER, "INBOX"), 1);
	/* the owner's APPEND needs no p */
	ck_assert_int_eq(append_bytes("Team", in.data, in.len, 0, NULL), 0);
	teardown_backend();
}
END_TEST

/* The shared namespace (storage_acl.c): "Shared/<name>" is the public
 * store's, nobody owns it, the admins of [acl] shared_admins hold every
 * right, everyone else what the ACL grants; mail reaches it only through
 * a target "#public" (an alias's), never its INBOX. */
START_TEST(acl_shared_ns)
{
	char *admins[] = {CAROL, NULL};
	struct msg_input in = {
	    .data = (const uint8_t *)"Subject: x\r\n\r\nx\r\n", .len = 17, .fd = -1};
	struct delivery_target t = {.user = STORAGE_ACL_PUBLIC_OWNER, .mailbox = "support"};
	struct store_req seen = {.mode = STORE_ADD, .flags = MSG_SEEN};
	struct mailbox_status ms;
	struct storage_quota q;
	struct acl_entry *v;
	struct mailbox *mb;
	struct msg_record *recs;
	uint64_t modseq;
	char owner[256];
	uint32_t *mod = NULL;
	size_t n, nmod = 0;
	unsigned r;

	setup_backend(_i);
	cfg.acl_shared_admins = admins;
	ck_assert_int_eq(storage_user_init(st, BOB), 0);
	ck_assert_int_eq(storage_user_init(st, CAROL), 0);
	/* only an admin makes its top-level mailboxes */
	ck_assert_int_eq(storage_create(st, BOB, "Shared/support", 0), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/support", 0), 0);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/support", 0), ROOST_EEXISTS);
	/* hostile names: the namespace itself, its store's INBOX, escapes */
	ck_assert_int_eq(storage_create(st, CAROL, "Shared", 0), ROOST_EPERM);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/INBOX", 0), ROOST_EPERM);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/inbox/x", 0), ROOST_EPERM);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/", 0), ROOST_EINVAL);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/../x", 0), ROOST_EINVAL);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/a//b", 0), ROOST_EINVAL);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/\xff", 0), ROOST_EINVAL);
	ck_assert_int_eq(storage_create(st, CAROL, "Other Users/#public/x", 0), ROOST_EINVAL);
	ck_assert_int_eq(storage_status(st, CAROL, "Other Users/#public/support", &ms),
	                 ROOST_EINVAL);
	ck_assert_int_eq(storage_status(st, CAROL, "Shared/INBOX", &ms), ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_create(st, CAROL, "#public", 0), 0); /* her own, plain */
	ck_assert_uint_eq(messages_in(CAROL, "#public"), 0);

	/* the admin holds every right, bob none and sees nothing */
	ck_assert_uint_eq(rights_of(CAROL, "Shared/support"), ACL_RIGHTS_ALL);
	ck_assert_int_eq(storage_acl_myrights(st, BOB, "Shared/support", &r), ROOST_ENOTFOUND);
	ck_assert_uint_eq(shared_count(BOB, NULL), 0);
	ck_assert_uint_eq(shared_count(CAROL, "Shared/support"), 1);
	ck_assert_uint_eq(shared_count(CAROL, "Shared"), 1);
	ck_assert_uint_eq(shared_count(CAROL, "Shared/INBOX"), 0);
	ck_assert_int_eq(storage_acl_owner(st, BOB, "Shared/support", owner, sizeof(owner)), 0);
	ck_assert_str_eq(owner, STORAGE_ACL_PUBLIC_OWNER);
	/* no owner entry in its ACL: nobody owns it */
	ck_assert_int_eq(storage_acl_get(st, CAROL, "Shared/support", &v, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(v[0].identifier, "anyone");
	storage_acl_free(v, n);
	ck_assert_int_eq(storage_acl_set(st, BOB, "Shared/support", BOB, ACL_SET, ACL_RIGHTS_ALL),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(
	    storage_acl_set(st, CAROL, "Shared/support", STORAGE_ACL_PUBLIC_OWNER, ACL_SET, 1),
	    ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_set(st, CAROL, "Shared/support", BOB, ACL_SET,
	                                 ACL_LOOKUP | ACL_READ | ACL_SEEN | ACL_INSERT),
	                 0);
	ck_assert_uint_eq(shared_count(BOB, "Shared/support"), 1);
	ck_assert_uint_eq(shared_count(USER, NULL), 0);

	/* mail through "#public+support": p for anyone, the default */
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK), 0);
	ck_assert_str_eq(t.mailbox, "support");
	ck_assert_uint_eq(messages_in(BOB, "Shared/support"), 1);
	/* never into the store's INBOX, not even as a fallback */
	t.mailbox = "INBOX";
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK),
	                 ROOST_ENOACCESS);
	t.mailbox = "gone";
	ck_assert_int_ne(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK), 0);
	ck_assert_str_eq(t.mailbox, "gone");
	ck_assert_int_eq(storage_acl_delete(st, CAROL, "Shared/support", "anyone"), 0);
	t.mailbox = "support";
	ck_assert_int_eq(storage_deliver(st, &in, &t, 1, STORAGE_DELIVER_INBOX_FALLBACK),
	                 ROOST_ENOACCESS);
	ck_assert_str_eq(t.mailbox, "support");
	ck_assert_uint_eq(messages_in(CAROL, "Shared/support"), 1);

	/* every user a reader: bob's \Seen is his own */
	ck_assert_int_eq(mailbox_open(st, BOB, "Shared/support", 0, &mb), 0);
	ck_assert(!mailbox_readonly(mb));
	ck_assert_str_eq(mailbox_name(mb), "Shared/support");
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &modseq), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(recs[0].flags & MSG_SEEN, 0);
	ck_assert_int_eq(mailbox_store(mb, &recs[0].uid, 1, &seen, &mod, &nmod), 0);
	free(mod);
	free(recs);
	mailbox_close(&mb);
	ck_assert_int_eq(storage_status(st, BOB, "Shared/support", &ms), 0);
	ck_assert_uint_eq(ms.unseen, 0);
	ck_assert_int_eq(storage_status(st, CAROL, "Shared/support", &ms), 0);
	ck_assert_uint_eq(ms.unseen, 1);
	ck_assert_int_eq(append_bytes("Shared/support", in.data, in.len, 0, NULL), ROOST_ENOTFOUND);

	/* bob may not delete, rename or make a top-level one; the admin may */
	ck_assert_int_eq(storage_delete(st, BOB, "Shared/support"), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_rename(st, BOB, "Shared/support", "Shared/x"), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_rename(st, CAROL, "Shared/support", "Shared/help"), 0);
	ck_assert_uint_eq(messages_in(BOB, "Shared/help"), 1);
	ck_assert_int_eq(storage_rename(st, CAROL, "Shared/help", "Mine"), ROOST_EPERM);
	ck_assert_int_eq(storage_create(st, CAROL, "Shared/help/2026", 0), 0);
	ck_assert_int_eq(storage_create(st, BOB, "Shared/help/bob", 0), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_quota_get(st, STORAGE_ACL_PUBLIC_OWNER, &q), 0);
	ck_assert_uint_eq(q.usage.messages, 1);
	ck_assert_int_eq(storage_delete(st, CAROL, "Shared/help/2026"), 0);
	ck_assert_int_eq(storage_delete(st, CAROL, "Shared/help"), 0);
	ck_assert_int_eq(storage_status(st, BOB, "Shared/help", &ms), ROOST_ENOTFOUND);
	ck_assert_uint_eq(shared_count(CAROL, NULL), 0);
	cfg.acl_shared_admins = NULL;
	teardown_backend();
}
END_TEST

/* \Seen of a record of uid in mb's records (-1 when absent). */
static int
seen_of(struct mailbox *mb, uint32_t uid)
{
	struct msg_record *recs;
	size_t n;
	uint64_t modseq;
	int r = -1;

	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &modseq), 0);
	for (size_t i = 0; i < n; i++) {
		if (recs[i].uid == uid)
			r = (recs[i].flags & MSG_SEEN) != 0;
	}
	free(recs);
	return r;
}

static uint32_t
unseen_of(const char *user, const char *mbox, uint32_t *first_r)
{
	struct mailbox_status ms;

	ck_assert_int_eq(storage_status(st, user, mbox, &ms), 0);
	if (first_r != NULL)
		*first_r = ms.first_unseen_uid;
	return ms.unseen;
}

/* Per-user \Seen on a shared mailbox (storage_seen.c): each reader's is
 * its own, the owner's stays the owner's, on every path. */
START_TEST(acl_seen)
{
	struct mailbox *own, *bob, *bob2, *carol;
	struct mailbox_status ms;
	struct mailbox_changes ch;
	struct msg_record *recs;
	struct metadata_entry *l;
	uint32_t u[4], *mod, first, uidv, *src, *dst;
	size_t n;
	uint64_t modseq, bob_ms;
	struct store_req seen = {.mode = STORE_ADD, .flags = MSG_SEEN};
	struct store_req unseen = {.mode = STORE_REMOVE, .flags = MSG_SEEN};
	struct store_req flag = {.mode = STORE_REPLACE, .flags = MSG_FLAGGED};
	struct msg_input in = {.data = (const uint8_t *)"Subject: s\r\n\r\nx\r\n",
	                       .len = 17,
	                       .fd = -1,
	                       .flags = MSG_SEEN};

	acl_setup(_i, 3, u, ACL_LOOKUP | ACL_READ | ACL_SEEN | ACL_WRITE | ACL_DELETED | ACL_INSERT,
	          ACL_LOOKUP | ACL_READ | ACL_SEEN);
	ck_assert_int_eq(mailbox_open(st, USER, "Team", 0, &own), 0);
	ck_assert_int_eq(mailbox_store(own, u, 1, &seen, &mod, &n), 0);

	/* a reader starts with nothing seen; the owner's \Seen is not its */
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob), 0);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob2), 0);
	ck_assert_int_eq(mailbox_open(st, CAROL, TEAM, 0, &carol), 0);
	ck_assert_int_eq(seen_of(bob, u[0]), 0);
	ck_assert_int_eq(seen_of(bob2, u[0]), 0);
	ck_assert_int_eq(seen_of(own, u[0]), 1);
	ck_assert_int_eq(mailbox_records(own, &recs, &n, &modseq), 0);
	free(recs);
	/* bob's MODSEQs are bob's (storage_seen.c) */
	ck_assert_int_eq(mailbox_records(bob2, &recs, &n, &bob_ms), 0);
	free(recs);

	/* bob's +FLAGS \Seen is bob's alone */
	ck_assert_int_eq(mailbox_store(bob, u + 1, 1, &seen, &mod, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(seen_of(bob, u[1]), 1);
	ck_assert_int_eq(seen_of(own, u[1]), 0);
	ck_assert_int_eq(seen_of(carol, u[1]), 0);
	/* STATUS UNSEEN per user */
	ck_assert_uint_eq(unseen_of(USER, "Team", &first), 2);
	ck_assert_uint_eq(first, u[1]);
	ck_assert_uint_eq(unseen_of(BOB, TEAM, &first), 2);
	ck_assert_uint_eq(first, u[0]);
	ck_assert_uint_eq(unseen_of(CAROL, TEAM, NULL), 3);
	ck_assert_int_eq(mailbox_status(bob, &ms), 0);
	ck_assert_uint_eq(ms.unseen, 2);
	ck_assert_uint_eq(ms.messages, 3);

	/* the owner's session learns nothing of it */
	ck_assert_int_eq(mailbox_changes_since(own, modseq, &ch), 0);
	for (size_t i = 0; i < ch.n_changed; i++)
		ck_assert_uint_eq(ch.changed[i].flags & MSG_SEEN, ch.changed[i].uid == u[0]);
	mailbox_changes_free(&ch);

	/* bob's other session does, through changes */
	ck_assert_int_eq(mailbox_changes_since(bob2, bob_ms, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 1);
	ck_assert_uint_eq(ch.changed[0].uid, u[1]);
	ck_assert_uint_eq(ch.changed[0].flags & MSG_SEEN, MSG_SEEN);
	bob_ms = ch.highestmodseq;
	mailbox_changes_free(&ch);
	ck_assert_int_eq(mailbox_changes_since(bob2, bob_ms, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 0); /* told once */
	mailbox_changes_free(&ch);
	ck_assert_int_eq(mailbox_store(bob2, u + 1, 1, &unseen, &mod, &n), 0);
	ck_assert_int_eq(mailbox_changes_since(bob, bob_ms, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 1);
	ck_assert_uint_eq(ch.changed[0].flags & MSG_SEEN, 0);
	mailbox_changes_free(&ch);

	/* a FLAGS replace by bob keeps the owner's \Seen, sets bob's */
	ck_assert_int_eq(mailbox_store(bob, u, 2, &seen, &mod, &n), 0);
	ck_assert_int_eq(mailbox_store(bob, u, 1, &flag, &mod, &n), 0);
	ck_assert_int_eq(seen_of(bob, u[0]), 0);
	ck_assert_int_eq(seen_of(bob, u[1]), 1);
	ck_assert_int_eq(seen_of(own, u[0]), 1);
	ck_assert_int_eq(mailbox_records(own, &recs, &n, &modseq), 0);
	ck_assert_uint_eq(recs[0].flags, MSG_SEEN | MSG_FLAGGED);
	free(recs);

	/* carol may keep \Seen (s) but not \Flagged (w) */
	ck_assert_int_eq(mailbox_store(carol, u + 2, 1, &seen, &mod, &n), 0);
	ck_assert_int_eq(seen_of(carol, u[2]), 1);
	ck_assert_int_eq(seen_of(bob, u[2]), 0);
	ck_assert_int_eq(seen_of(own, u[2]), 0);

	/* an APPEND with \Seen by a reader: the reader's */
	ck_assert_int_eq(storage_append(st, BOB, TEAM, &in, &uidv, &u[3]), 0);
	ck_assert_int_eq(seen_of(bob, u[3]), 1);
	ck_assert_int_eq(seen_of(own, u[3]), 0);
	ck_assert_int_eq(seen_of(carol, u[3]), 0);
	/* the runs merge: u[1]..u[3] is one range */
	ck_assert_int_eq(mailbox_store(bob, u + 2, 1, &seen, &mod, &n), 0);
	ck_assert_uint_eq(unseen_of(BOB, TEAM, NULL), 1);

	/* a copy out of the shared mailbox takes the reader's \Seen */
	ck_assert_int_eq(mailbox_copy(bob, u + 1, 1, "INBOX", false, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(src);
	free(dst);
	ck_assert_uint_eq(unseen_of(BOB, "INBOX", NULL), 0);

	/* kept out of METADATA, and follows a rename */
	ck_assert_int_eq(storage_metadata_get(st, USER, "Team", "/private", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 0);
	storage_metadata_free(l, n);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Team", "/shared", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 0);
	storage_metadata_free(l, n);
	mailbox_close(&bob);
	mailbox_close(&bob2);
	mailbox_close(&carol);
	mailbox_close(&own);
	ck_assert_int_eq(storage_rename(st, USER, "Team", "Crew"), 0);
	ck_assert_uint_eq(unseen_of(BOB, "Other Users/" USER "/Crew", NULL), 1);
	ck_assert_uint_eq(unseen_of(CAROL, "Other Users/" USER "/Crew", NULL), 3);
	ck_assert_uint_eq(unseen_of(USER, "Crew", NULL), 3);
	teardown_backend();
}
END_TEST

/* The MODSEQ of uid in mb's records (0 when absent); *highest_r (may be
 * NULL) the HIGHESTMODSEQ they reflect. */
static uint64_t
modseq_of(struct mailbox *mb, uint32_t uid, uint64_t *highest_r)
{
	struct msg_record *recs;
	size_t n;
	uint64_t modseq, r = 0;

	ck_assert_int_eq(mailbox_records(mb, &recs, &n, &modseq), 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_le(recs[i].modseq, modseq);
		if (recs[i].uid == uid)
			r = recs[i].modseq;
	}
	free(recs);
	if (highest_r != NULL)
		*highest_r = modseq;
	return r;
}

/* CONDSTORE of a reader (storage_seen.c, MODSEQ): its \Seen changes get
 * MODSEQs of its own, above what it was told, seen by its other sessions
 * through changes since, checked by UNCHANGEDSINCE; the owner's and the
 * other readers' MODSEQs do not move. */
START_TEST(acl_seen_modseq)
{
	struct mailbox *own, *bob, *bob2;
	struct mailbox_status ms;
	struct mailbox_changes ch;
	uint32_t u[3], *mod;
	size_t n;
	uint64_t own_h, bob_h, h, carol_h, m1;
	struct store_req seen = {.mode = STORE_ADD, .flags = MSG_SEEN};
	struct store_req unseen = {.mode = STORE_REMOVE, .flags = MSG_SEEN};
	struct store_req flag = {.mode = STORE_ADD, .flags = MSG_FLAGGED};

	acl_setup(_i, 3, u, ACL_LOOKUP | ACL_READ | ACL_SEEN | ACL_WRITE,
	          ACL_LOOKUP | ACL_READ | ACL_SEEN);
	ck_assert_int_eq(mailbox_open(st, USER, "Team", 0, &own), 0);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob), 0);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob2), 0);
	(void)modseq_of(own, u[0], &own_h);
	(void)modseq_of(bob, u[0], &bob_h);
	(void)modseq_of(bob2, u[0], NULL);
	ck_assert_int_eq(storage_status(st, CAROL, TEAM, &ms), 0);
	carol_h = ms.highestmodseq;
	ck_assert_int_eq(mailbox_status(bob, &ms), 0);
	ck_assert_uint_eq(ms.highestmodseq, bob_h);
	ck_assert_int_eq(storage_status(st, BOB, TEAM, &ms), 0);
	ck_assert_uint_eq(ms.highestmodseq, bob_h);

	/* bob's \Seen: a MODSEQ above what bob was told, in bob's views */
	ck_assert_int_eq(mailbox_store(bob, u + 1, 1, &seen, &mod, &n), 0);
	m1 = modseq_of(bob, u[1], &h);
	ck_assert_uint_gt(m1, bob_h);
	ck_assert_uint_eq(h, m1);
	ck_assert_int_eq(mailbox_status(bob, &ms), 0);
	ck_assert_uint_eq(ms.highestmodseq, m1);
	ck_assert_int_eq(storage_status(st, BOB, TEAM, &ms), 0);
	ck_assert_uint_eq(ms.highestmodseq, m1);
	ck_assert_uint_lt(modseq_of(bob, u[0], NULL), m1);
	/* CHANGEDSINCE of another session of bob's (no IDLE state: a fresh
	 * session that only knows bob_h) */
	mailbox_close(&bob2);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob2), 0);
	ck_assert_int_eq(mailbox_changes_since(bob2, bob_h, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 1);
	ck_assert_uint_eq(ch.changed[0].uid, u[1]);
	ck_assert_uint_eq(ch.changed[0].modseq, m1);
	ck_assert_uint_eq(ch.changed[0].flags & MSG_SEEN, MSG_SEEN);
	ck_assert_uint_eq(ch.highestmodseq, m1);
	mailbox_changes_free(&ch);
	ck_assert_int_eq(mailbox_changes_since(bob2, m1, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 0);
	mailbox_changes_free(&ch);
	/* the owner and carol: nothing moved */
	(void)modseq_of(own, u[0], &h);
	ck_assert_uint_eq(h, own_h);
	ck_assert_int_eq(mailbox_changes_since(own, own_h, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 0);
	mailbox_changes_free(&ch);
	ck_assert_int_eq(storage_status(st, CAROL, TEAM, &ms), 0);
	ck_assert_uint_eq(ms.highestmodseq, carol_h);

	/* the owner's next change stands above bob's, for bob */
	ck_assert_int_eq(mailbox_store(own, u + 2, 1, &flag, &mod, &n), 0);
	ck_assert_int_eq(mailbox_changes_since(bob2, m1, &ch), 0);
	ck_assert_uint_eq(ch.n_changed, 1);
	ck_assert_uint_eq(ch.changed[0].uid, u[2]);
	ck_assert_uint_gt(ch.changed[0].modseq, m1);
	ck_assert_uint_eq(ch.changed[0].flags & MSG_SEEN, 0);
	h = ch.highestmodseq;
	mailbox_changes_free(&ch);

	/* UNCHANGEDSINCE against bob's MODSEQs, \Seen or not */
	ck_assert_int_eq(mailbox_store(bob, u + 1, 1,
	                               &(struct store_req){.mode = STORE_REMOVE,
	                                                   .flags = MSG_SEEN,
	                                                   .unchanged_since = m1 - 1},
	                               &mod, &n),
	                 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(mod[0], u[1]);
	free(mod);
	ck_assert_int_eq(seen_of(bob, u[1]), 1);
	ck_assert_int_eq(mailbox_store(bob, u + 1, 1,
	                               &(struct store_req){.mode = STORE_ADD,
	                                                   .flags = MSG_FLAGGED,
	                                                   .unchanged_since = m1 - 1},
	                               &mod, &n),
	                 0);
	ck_assert_uint_eq(n, 1);
	free(mod);
	ck_assert_int_eq(mailbox_store(bob, u + 2, 1,
	                               &(struct store_req){.mode = STORE_ADD,
	                                                   .flags = MSG_SEEN | MSG_FLAGGED,
	                                                   .unchanged_since = m1},
	                               &mod, &n),
	                 0);
	ck_assert_uint_eq(n, 1); /* the owner changed it after m1 */
	free(mod);
	ck_assert_int_eq(seen_of(bob, u[2]), 0);
	ck_assert_int_eq(
	    mailbox_store(
	        bob, u + 1, 1,
	        &(struct store_req){.mode = STORE_REMOVE, .flags = MSG_SEEN, .unchanged_since = m1},
	        &mod, &n),
	    0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(seen_of(bob, u[1]), 0);
	ck_assert_uint_gt(modseq_of(bob, u[1], NULL), h);

	/* nothing seen any more: HIGHESTMODSEQ does not go back, and a store
	 * that changes nothing gives no new one */
	(void)modseq_of(bob, u[0], &bob_h);
	ck_assert_int_eq(mailbox_store(bob, u, 3, &unseen, &mod, &n), 0);
	(void)modseq_of(bob, u[0], &h);
	ck_assert_uint_eq(h, bob_h);
	mailbox_close(&bob);
	mailbox_close(&bob2);
	ck_assert_int_eq(storage_status(st, BOB, TEAM, &ms), 0);
	ck_assert_uint_eq(ms.highestmodseq, bob_h);
	mailbox_close(&own);
	teardown_backend();
}
END_TEST

/* A seen set of a reader whose name passes SEEN_KEY_MAX (kept under a
 * hash), and readers' \Seen carried by the owner's MOVE and COPY into
 * another mailbox the reader may read (and only there). */
START_TEST(acl_seen_carry)
{
	char longname[AUTH_MAX_NAME + 1];
	struct mailbox *own, *bob, *lng, *car;
	uint32_t u[4], uidv, *src, *dst, *mod;
	size_t n;
	struct store_req seen = {.mode = STORE_ADD, .flags = MSG_SEEN};

	memset(longname, 'x', 245);
	memcpy(longname + 245, "@e.example", 11);
	ck_assert_uint_eq(strlen(longname), 255);
	acl_setup(_i, 4, u, ACL_LOOKUP | ACL_READ | ACL_SEEN, ACL_LOOKUP | ACL_READ | ACL_SEEN);
	ck_assert_int_eq(storage_user_init(st, longname), 0);
	ck_assert_int_eq(storage_create(st, USER, "Archive2", 0), 0);
	ck_assert_int_eq(
	    storage_acl_set(st, USER, "Team", longname, ACL_SET, ACL_LOOKUP | ACL_READ | ACL_SEEN),
	    0);
	/* carol may not read Archive2 */
	ck_assert_int_eq(
	    storage_acl_set(st, USER, "Archive2", BOB, ACL_SET, ACL_LOOKUP | ACL_READ | ACL_SEEN),
	    0);
	ck_assert_int_eq(storage_acl_set(st, USER, "Archive2", longname, ACL_SET,
	                                 ACL_LOOKUP | ACL_READ | ACL_SEEN),
	                 0);
	ck_assert_int_eq(mailbox_open(st, USER, "Team", 0, &own), 0);
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob), 0);
	ck_assert_int_eq(mailbox_open(st, longname, "Other Users/" USER "/Team", 0, &lng), 0);
	ck_assert_int_eq(mailbox_store(bob, u, 2, &seen, &mod, &n), 0);
	ck_assert_int_eq(mailbox_store(lng, u + 1, 2, &seen, &mod, &n), 0);
	/* carol's \Seen of 1 and 3 */
	ck_assert_int_eq(mailbox_open(st, CAROL, TEAM, 0, &car), 0);
	ck_assert_int_eq(mailbox_store(car, (uint32_t[]){u[0], u[2]}, 2, &seen, &mod, &n), 0);
	mailbox_close(&car);
	ck_assert_int_eq(seen_of(lng, u[0]), 0);
	ck_assert_int_eq(seen_of(lng, u[1]), 1);
	ck_assert_int_eq(seen_of(bob, u[2]), 0);
	ck_assert_uint_eq(unseen_of(longname, "Other Users/" USER "/Team", NULL), 2);
	mailbox_close(&bob);
	mailbox_close(&lng);

	/* the owner moves 1..3 to Archive2, copies 4 */
	ck_assert_int_eq(mailbox_copy(own, u, 3, "Archive2", true, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(mailbox_open(st, BOB, "Other Users/" USER "/Archive2", 0, &bob), 0);
	ck_assert_int_eq(mailbox_open(st, longname, "Other Users/" USER "/Archive2", 0, &lng), 0);
	ck_assert_int_eq(seen_of(bob, dst[0]), 1);
	ck_assert_int_eq(seen_of(bob, dst[1]), 1);
	ck_assert_int_eq(seen_of(bob, dst[2]), 0);
	ck_assert_int_eq(seen_of(lng, dst[0]), 0);
	ck_assert_int_eq(seen_of(lng, dst[1]), 1);
	ck_assert_int_eq(seen_of(lng, dst[2]), 1);
	free(src);
	free(dst);
	ck_assert_int_eq(mailbox_copy(own, u + 3, 1, "Archive2", false, &uidv, &src, &dst, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(seen_of(bob, dst[0]), 0);
	free(src);
	free(dst);
	mailbox_close(&bob);
	mailbox_close(&lng);
	/* carol could not read Archive2 then: nothing of hers went there */
	ck_assert_int_eq(
	    storage_acl_set(st, USER, "Archive2", CAROL, ACL_SET, ACL_LOOKUP | ACL_READ), 0);
	ck_assert_uint_eq(unseen_of(CAROL, "Other Users/" USER "/Archive2", NULL), 4);
	ck_assert_uint_eq(unseen_of(USER, "Archive2", NULL), 4);
	mailbox_close(&own);
	teardown_backend();
}
END_TEST

/* The bound of a seen set (STORAGE_METADATA_MAX_VALUE): a STORE past it
 * is refused whole, its other flags included; one within it passes. */
START_TEST(acl_seen_cap)
{
	struct mailbox *own, *bob;
	struct msg_record *recs;
	uint32_t *uids, uidv, *src, *dst, *mod;
	size_t n, nrec, k = 0;
	uint64_t modseq;
	struct store_req both = {.mode = STORE_ADD, .flags = MSG_SEEN | MSG_FLAGGED};

	setup_dir(_i);
	cfg.storage_fsync = false; /* 16384 messages, the bound is the point */
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	ck_assert_int_eq(storage_user_init(st, BOB), 0);
	ck_assert_int_eq(storage_create(st, USER, "Team", 0), 0);
	append_simple("Team", 1);
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_SET,
	                                 ACL_LOOKUP | ACL_READ | ACL_SEEN | ACL_WRITE),
	                 0);
	ck_assert_int_eq(mailbox_open(st, USER, "Team", 0, &own), 0);
	for (int i = 0; i < 14; i++) {
		ck_assert_int_eq(mailbox_records(own, &recs, &nrec, &modseq), 0);
		uids = xcalloc(nrec, sizeof(*uids));
		for (size_t j = 0; j < nrec; j++)
			uids[j] = recs[j].uid;
		ck_assert_int_eq(
		    mailbox_copy(own, uids, nrec, "Team", false, &uidv, &src, &dst, &n), 0);
		free(src);
		free(dst);
		free(uids);
		free(recs);
	}
	ck_assert_int_eq(mailbox_records(own, &recs, &nrec, &modseq), 0);
	ck_assert_uint_eq(nrec, 16384);
	/* every other one: 8192 runs of 2 bytes each, past 16 KiB */
	uids = xcalloc(nrec, sizeof(*uids));
	for (size_t j = 0; j < nrec; j += 2)
		uids[k++] = recs[j].uid;
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob), 0);
	ck_assert_int_eq(mailbox_store(bob, uids, k, &both, &mod, &n), ROOST_ETOOBIG);
	ck_assert_int_eq(seen_of(bob, uids[0]), 0);
	ck_assert_uint_eq(unseen_of(BOB, TEAM, NULL), 16384);
	free(recs);
	ck_assert_int_eq(mailbox_records(own, &recs, &nrec, &modseq), 0);
	for (size_t j = 0; j < nrec; j++)
		ck_assert_uint_eq(recs[j].flags & MSG_FLAGGED, 0);
	/* half of that fits */
	ck_assert_int_eq(mailbox_store(bob, uids, k / 2, &both, &mod, &n), 0);
	ck_assert_uint_eq(unseen_of(BOB, TEAM, NULL), 16384 - k / 2);
	ck_assert_int_eq(seen_of(bob, uids[k / 2 - 1]), 1);
	free(uids);
	free(recs);
	mailbox_close(&bob);
	mailbox_close(&own);
	teardown_backend();
}
END_TEST

/* METADATA of another's mailbox, and a revoked r in an open mailbox. */
START_TEST(acl_shared_meta)
{
	struct mailbox *bob;
	struct mailbox_changes ch;
	struct metadata_entry *l;
	size_t n;
	const char *names[] = {"/shared/comment", "/private/comment"};
	const uint8_t *values[] = {(const uint8_t *)"desk", (const uint8_t *)"mine"};
	const size_t lens[] = {4, 4};
	const uint8_t *bv[] = {(const uint8_t *)"bob"};
	const size_t bl[] = {3};

	acl_setup(_i, 1, NULL, 0, 0);
	ck_assert_int_eq(storage_metadata_set(st, USER, "Team", names, values, lens, 2), 0);
	/* nothing granted: not there */
	ck_assert_int_eq(storage_metadata_get(st, BOB, TEAM, "/shared", -1, &l, &n),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_SET, ACL_LOOKUP | ACL_READ), 0);
	/* r reads the owner's /shared, never its /private */
	ck_assert_int_eq(storage_metadata_get(st, BOB, TEAM, "/shared", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(l[0].name, "/shared/comment");
	ck_assert_str_eq((const char *)l[0].value, "desk");
	storage_metadata_free(l, n);
	ck_assert_int_eq(storage_metadata_get(st, BOB, TEAM, "/private", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 0);
	storage_metadata_free(l, n);
	/* w writes /shared; /private of another's mailbox is refused */
	ck_assert_int_eq(storage_metadata_set(st, BOB, TEAM, names, bv, bl, 1), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_ADD, ACL_WRITE), 0);
	ck_assert_int_eq(storage_metadata_set(st, BOB, TEAM, names, bv, bl, 1), 0);
	ck_assert_int_eq(storage_metadata_set(st, BOB, TEAM, names + 1, bv, bl, 1), ROOST_EPERM);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Team", "/shared", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq((const char *)l[0].value, "bob");
	storage_metadata_free(l, n);
	ck_assert_int_eq(storage_metadata_get(st, USER, "Team", "/private", -1, &l, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq((const char *)l[0].value, "mine");
	storage_metadata_free(l, n);
	/* carol, no rights */
	ck_assert_int_eq(storage_metadata_set(st, CAROL, TEAM, names, bv, bl, 1), ROOST_ENOTFOUND);

	/* rights read again when asked, and before changes are told */
	ck_assert_int_eq(mailbox_open(st, BOB, TEAM, 0, &bob), 0);
	ck_assert_int_eq(mailbox_rights_refresh(bob), 0);
	ck_assert_uint_eq(mailbox_rights(bob), ACL_LOOKUP | ACL_READ | ACL_WRITE | ACL_POST);
	ck_assert_int_eq(storage_acl_set(st, USER, "Team", BOB, ACL_SET, ACL_LOOKUP), 0);
	ck_assert_int_eq(mailbox_rights_refresh(bob), ROOST_ENOACCESS);
	ck_assert_int_eq(mailbox_changes_since(bob, 0, &ch), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_acl_delete(st, USER, "Team", BOB), 0);
	ck_assert_int_eq(mailbox_changes_since(bob, 0, &ch), ROOST_ENOACCESS);
	ck_assert_int_eq(storage_delete(st, USER, "Team"), 0);
	ck_assert_int_eq(mailbox_rights_refresh(bob), ROOST_ENOTFOUND);
	mailbox_close(&bob);
	teardown_backend();
}
END_TEST

static void
on_acl_change(void *arg)
{
	int *n = arg;

	__atomic_add_fetch(n, 1, __ATOMIC_SEQ_CST);
}

/* bob's watch on alice's mailbox wakes when alice changes it. */
START_TEST(acl_watch)
{
	struct storage_watch *w;
	int n = 0;

	acl_setup(_i, 0, NULL, ACL_LOOKUP | ACL_READ, 0);
	ck_assert_int_eq(storage_watch(st, BOB, TEAM, on_acl_change, &n, &w), 0);
	append_simple("Team", 1);
	for (int i = 0; i < 500 && __atomic_load_n(&n, __ATOMIC_SEQ_CST) == 0; i++)
		usleep(10000);
	ck_assert_int_gt(__atomic_load_n(&n, __ATOMIC_SEQ_CST), 0);
	storage_unwatch(&w);
	teardown_backend();
}
END_TEST

/* mailbox_records() with modseq_r NULL: the records alone, as with it. */
START_TEST(records_without_modseq)
{
	struct mailbox *mb;
	struct msg_record *recs, *again;
	size_t n, n2;
	uint64_t hms;
	uint32_t a, b;

	setup_dir(_i);
	open_store();
	ck_assert_int_eq(storage_user_init(st, USER), 0);
	a = append_simple("INBOX", 1);
	b = append_simple("INBOX", 2);
	ck_assert_int_eq(mailbox_open(st, USER, "INBOX", 0, &mb), 0);
	ck_assert_int_eq(mailbox_records(mb, &recs, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(recs[0].uid, a);
	ck_assert_uint_eq(recs[1].uid, b);
	ck_assert_int_eq(mailbox_records(mb, &again, &n2, &hms), 0);
	ck_assert_uint_eq(n2, n);
	ck_assert_uint_eq(again[1].uid, b);
	ck_assert_uint_gt(hms, 0);
	free(again);
	free(recs);
	mailbox_close(&mb);
	assert_clean();
	teardown_backend();
}
END_TEST

/* ------------------------------------------------------------------ */

static void
pick_backends(void)
{
	const char *only = getenv("ROOST_STORAGE_BACKENDS");

	for (size_t i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++) {
		if (!storage_backend_available(all_backends[i]))
			continue;
		if (only != NULL && strstr(only, all_backends[i]) == NULL)
			continue;
		if (strcmp(all_backends[i], "pgsql") == 0 &&
		    getenv("ROOST_PGSQL_TEST_DSN") == NULL) {
			fprintf(stderr,
			        "check_storage: pgsql skipped: no PostgreSQL to test on "
			        "(scripts/run-unit.sh starts one where the postgresql package "
			        "is installed; or set ROOST_PGSQL_TEST_DSN)\n");
			continue;
		}
		backends[n_backends++] = all_backends[i];
		fprintf(stderr, "check_storage: backend %s\n", all_backends[i]);
	}
}

static Suite *
storage_suite(void)
{
	Suite *s = suite_create("storage");
	TCase *tc = tcase_create("conformance");
	TCase *quota = tcase_create("quota");
	TCase *acl;

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, hostile_names, 0, n_backends);
	tcase_add_loop_test(tc, save_dates, 0, n_backends);
	tcase_add_loop_test(tc, deliver_cache, 0, n_backends);
	tcase_add_loop_test(tc, name_lengths, 0, n_backends);
	tcase_add_loop_test(tc, punctuation_names, 0, n_backends);
	tcase_add_loop_test(tc, round_trip, 0, n_backends);
	tcase_add_loop_test(tc, imported_uids, 0, n_backends);
	tcase_add_loop_test(tc, repair_healthy, 0, n_backends);
	tcase_add_loop_test(tc, big_message, 0, n_backends);
	tcase_add_loop_test(tc, large_bodies, 0, n_backends);
	tcase_add_loop_test(tc, large_body_crash, 0, n_backends);
	tcase_add_loop_test(tc, uids_never_reused, 0, n_backends);
	tcase_add_loop_test(tc, changes_since, 0, n_backends);
	tcase_add_loop_test(tc, changes_since_nb, 0, n_backends);
	tcase_add_loop_test(tc, changes_since_nb_shared, 0, n_backends);
	tcase_add_loop_test(tc, changes_since_nb_shared_race, 0, n_backends);
	tcase_add_loop_test(tc, changes_after_recreate_over_parent, 0, n_backends);
	tcase_add_loop_test(tc, mailbox_tree, 0, n_backends);
	tcase_add_loop_test(tc, default_folders, 0, n_backends);
	tcase_add_loop_test(tc, records_without_modseq, 0, n_backends);
	tcase_add_loop_test(tc, status_store_copy, 0, n_backends);
	tcase_add_loop_test(tc, store_modified_many, 0, n_backends);
	tcase_add_loop_test(tc, object_ids, 0, n_backends);
	tcase_add_loop_test(tc, metadata, 0, n_backends);
	tcase_add_loop_test(tc, metadata_user_limit, 0, n_backends);
	tcase_add_loop_test(tc, recent_claims, 0, n_backends);
	tcase_add_loop_test(tc, recent_claimer_gone, 0, n_backends);
	tcase_add_loop_test(tc, multi_recipient, 0, n_backends);
	tcase_add_loop_test(tc, stats, 0, n_backends);
	tcase_add_loop_test(tc, deliver_once_per_mailbox, 0, n_backends);
	tcase_add_loop_test(tc, deliver_fanout_one_user, 0, n_backends);
	tcase_add_loop_test(tc, deliver_atomic, 0, n_backends);
	tcase_add_loop_test(tc, deliver_inbox_fallback, 0, n_backends);
	tcase_add_loop_test(tc, threads, 0, n_backends);
	tcase_add_loop_test(tc, copy_move_race, 0, n_backends);
	tcase_add_loop_test(tc, two_processes, 0, n_backends);
	tcase_add_loop_test(tc, crash, 0, n_backends);
	tcase_add_loop_test(tc, watch, 0, n_backends);
	tcase_add_loop_test(tc, watch_user, 0, n_backends);
	tcase_add_loop_test(tc, watch_polled, 0, n_backends);
	tcase_add_loop_test(tc, notify_file_only_for_other_watchers, 0, n_backends);
	tcase_add_loop_test(tc, grown_by_other_process, 0, n_backends);

	suite_add_tcase(s, tc);
	/* usage counters and limits (storage.h, quota) */
	tcase_set_timeout(quota, 120);
	tcase_add_loop_test(quota, quota_counters, 0, n_backends);
	tcase_add_loop_test(quota, quota_limits, 0, n_backends);
	tcase_add_loop_test(quota, quota_warning, 0, n_backends);
	tcase_add_loop_test(quota, quota_concurrent, 0, n_backends);
	suite_add_tcase(s, quota);
	acl = tcase_create("acl");
	tcase_set_timeout(acl, 120);
	tcase_add_test(acl, acl_rights_text);
	tcase_add_loop_test(acl, acl_share, 0, n_backends);
	tcase_add_loop_test(acl, acl_deliver, 0, n_backends);
	tcase_add_loop_test(acl, acl_watch, 0, n_backends);
	tcase_add_loop_test(acl, acl_seen, 0, n_backends);
	tcase_add_loop_test(acl, acl_seen_modseq, 0, n_backends);
	tcase_add_loop_test(acl, acl_seen_carry, 0, n_backends);
	tcase_add_loop_test(acl, acl_seen_cap, 0, n_backends);
	tcase_add_loop_test(acl, acl_shared_meta, 0, n_backends);
	tcase_add_loop_test(acl, acl_shared_ns, 0, n_backends);
	suite_add_tcase(s, acl);
	if (n_backends > 0 && strcmp(backends[0], "lmdb") == 0) {
		TCase *lm = tcase_create("lmdb");

		/* Check's default of 4 s is too short for fsyncs on a loaded machine. */
		tcase_set_timeout(lm, 120);

		tcase_add_test(lm, lmdb_check_detects_damage);
		tcase_add_test(lm, lmdb_shards);
		tcase_add_test(lm, lmdb_check_body_files);
		tcase_add_test(lm, lmdb_check_quota);
		tcase_add_test(lm, lmdb_group_commit);
		suite_add_tcase(s, lm);
	}
	for (int i = 0; i < n_backends; i++) {
		TCase *pg;

		if (strcmp(backends[i], "pgsql") != 0)
			continue;
		pg = tcase_create("pgsql");
		tcase_set_timeout(pg, 120);
		tcase_add_loop_test(pg, pgsql_two_nodes, i, i + 1);
		tcase_add_loop_test(pg, pgsql_check_detects_damage, i, i + 1);
		tcase_add_loop_test(pg, pgsql_group_fallback, i, i + 1);
		suite_add_tcase(s, pg);
	}
	return s;
}

int
main(void)
{
	pick_backends();
	if (n_backends == 0) {
		fprintf(stderr, "check_storage: no backend selected\n");
		return 1;
	}
	return check_run(storage_suite());
}
