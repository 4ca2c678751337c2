/*
 * The local delivery service (services/delivery.c): recipient resolution,
 * ids, trace headers, and delivery_store()'s policy (all or nothing for
 * SMTP, per recipient for LMTP, INBOX when the folder went away). The
 * store cases run on every backend in the build.
 */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "roost/aliases.h"
#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "check_run.h"

static const char *all_backends[] = {"lmdb", "maildir"};
static const char *backends[8];
static int n_backends;

static char dir[256];
static struct roost_config cfg;
static struct roost_services sv;
static char *domains[] = {"example.org", "Lists.Example.org", NULL};

static const char MSG[] = "Subject: hi\r\n\r\nbody\r\n";

static void
setup_backend(int i)
{
	char tmpl[] = "/tmp/roost-check-delivery-XXXXXX", path[300];
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	snprintf(dir, sizeof(dir), "%s", tmpl);
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = dir;
	cfg.hostname = "mx.example.org";
	cfg.storage_backend = (char *)backends[i];
	cfg.lmdb_map_size = 8u << 20;
	cfg.lmdb_shards = 1;
	cfg.storage_fsync = true;
	cfg.expunge_log_retention = 86400;
	cfg.max_message_size = 1u << 20;
	cfg.password_scheme = "SHA256-CRYPT";
	cfg.auth_cache_ttl = 300;
	cfg.smtp_domains = domains;
	cfg.recipient_delimiter = "+";
	log_setup(LOG_LEVEL_ERROR, false, false);
	snprintf(path, sizeof(path), "%s/passwd", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("alice@example.org:{PLAIN}a\n"
	      "bob@example.org:{PLAIN}b\n"
	      "carol:{PLAIN}c\n"
	      "postmaster@example.org:{PLAIN}p\n"
	      "dave@elsewhere.net:{PLAIN}d\n",
	      f);
	fclose(f);
	sv.cfg = &cfg;
	ck_assert_int_eq(auth_open(&cfg, &sv.auth), 0);
	ck_assert_int_eq(storage_open(&cfg, &sv.storage), 0);
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown_backend(void)
{
	storage_close(&sv.storage);
	auth_free(&sv.auth);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct msg_input
msg_in(void)
{
	return (struct msg_input){.data = (const uint8_t *)MSG, .len = sizeof(MSG) - 1, .fd = -1};
}

static uint32_t
messages_in(const char *user, const char *mbox)
{
	struct mailbox_status ms;

	if (storage_status(sv.storage, user, mbox, &ms) != 0)
		return 0;
	return ms.messages;
}

/* ---- resolution ---- */

START_TEST(domain_is_local)
{
	setup_backend(0);
	ck_assert(delivery_domain_is_local(&cfg, "example.org"));
	ck_assert(delivery_domain_is_local(&cfg, "EXAMPLE.ORG"));
	ck_assert(delivery_domain_is_local(&cfg, "lists.example.org"));
	ck_assert(!delivery_domain_is_local(&cfg, "example.org.evil"));
	ck_assert(!delivery_domain_is_local(&cfg, "elsewhere.net"));
	cfg.smtp_domains = NULL;
	ck_assert(!delivery_domain_is_local(&cfg, "example.org"));
	teardown_backend();
}
END_TEST

START_TEST(resolve)
{
	struct delivery_rcpt r;
	char big[DELIVERY_MAX_USER + 10];

	setup_backend(0);
	ck_assert_int_eq(delivery_resolve(&sv, "alice@example.org", &r), 0);
	ck_assert_str_eq(r.user, "alice@example.org");
	ck_assert_str_eq(r.mailbox, "INBOX");
	/* a user named without a domain receives at every local domain */
	ck_assert_int_eq(delivery_resolve(&sv, "carol@example.org", &r), 0);
	ck_assert_str_eq(r.user, "carol");
	/* a user of a domain that is not local is another host's address */
	ck_assert_int_eq(delivery_resolve(&sv, "dave@elsewhere.net", &r), ROOST_EPERM);
	ck_assert_str_eq(r.user, "");
	/* bare names: a user of that name, or the name at the first domain */
	ck_assert_int_eq(delivery_resolve(&sv, "carol", &r), 0);
	ck_assert_str_eq(r.user, "carol");
	ck_assert_int_eq(delivery_resolve(&sv, "postmaster", &r), 0);
	ck_assert_str_eq(r.user, "postmaster@example.org");
	ck_assert_int_eq(delivery_resolve(&sv, "nobody", &r), ROOST_ENOTFOUND);

	ck_assert_int_eq(delivery_resolve(&sv, "nobody@example.org", &r), ROOST_ENOTFOUND);
	ck_assert_str_eq(r.user, "");
	ck_assert_int_eq(delivery_resolve(&sv, "alice@elsewhere.net", &r), ROOST_EPERM);
	ck_assert_int_eq(delivery_resolve(&sv, "alice\r\n@example.org", &r), ROOST_EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big + sizeof(big) - 13, "@example.org", 12);
	ck_assert_int_eq(delivery_resolve(&sv, big, &r), ROOST_EINVAL);
	teardown_backend();
}
END_TEST

/* The backend set up with an aliases file of text, loaded into sv;
 * aliases_teardown() drops both. */
static struct aliases *
aliases_setup(const char *text)
{
	static char path[300];
	struct aliases *al = NULL;
	char err[256];
	FILE *f;

	setup_backend(0);
	snprintf(path, sizeof(path), "%s/aliases", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	cfg.smtp_aliases = path;
	ck_assert_int_eq(aliases_load(&cfg, &al, err, sizeof(err)), 0);
	sv.aliases = al;
	return al;
}

static void
aliases_teardown(struct aliases **al)
{
	sv.aliases = NULL;
	aliases_free(al);
	cfg.smtp_aliases = NULL;
	teardown_backend();
}

START_TEST(expand)
{
	struct delivery_dest *d = NULL;
	struct aliases *al = aliases_setup(
	    "team: alice, bob@example.org, alice\n"
	    "fwd: dave@elsewhere.net, team\n"
	    "carol: carol, fwd\n"
	    "a1: a2\na2: a3\na3: a4\na4: a5\na5: a6\na6: a7\na7: a8\na8: a9\na9: alice\n"
	    "loop: loop2\nloop2: loop\n");
	size_t n = 0;

	/* A list, deduplicated (alice twice). */
	ck_assert_int_eq(delivery_expand(&sv, "Team@example.org", &d, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(d[0].d.user, "alice@example.org");
	ck_assert_str_eq(d[1].d.user, "bob@example.org");
	ck_assert(!d[0].remote);
	free(d);
	/* Another domain's address is a remote destination; nested lists. */
	ck_assert_int_eq(delivery_expand(&sv, "fwd@lists.example.org", &d, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert(d[0].remote);
	ck_assert_str_eq(d[0].addr, "dave@elsewhere.net");
	free(d);
	/* carol names herself: the user, then the rest. */
	ck_assert_int_eq(delivery_expand(&sv, "carol@example.org", &d, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(d[0].d.user, "carol");
	ck_assert(d[1].remote);
	free(d);
	/* Too deep, loops, unknown: not found. A user's address is itself. */
	ck_assert_int_eq(delivery_expand(&sv, "a1@example.org", &d, &n), ROOST_ENOTFOUND);
	ck_assert_ptr_null(d);
	ck_assert_int_eq(delivery_expand(&sv, "a2@example.org", &d, &n), 0);
	free(d);
	ck_assert_int_eq(delivery_expand(&sv, "loop@example.org", &d, &n), ROOST_ENOTFOUND);
	ck_assert_int_eq(delivery_expand(&sv, "nobody@example.org", &d, &n), ROOST_ENOTFOUND);
	ck_assert_int_eq(delivery_expand(&sv, "fwd@elsewhere.net", &d, &n), ROOST_EPERM);
	ck_assert_int_eq(delivery_expand(&sv, "bob@example.org", &d, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(d);
	/* postmaster at a local domain is always deliverable. */
	ck_assert_int_eq(delivery_expand(&sv, "POSTMASTER@lists.example.org", &d, &n), 0);
	ck_assert_str_eq(d[0].d.user, "postmaster@lists.example.org");
	free(d);
	ck_assert_int_eq(delivery_expand(&sv, "postmaster@elsewhere.net", &d, &n), ROOST_EPERM);
	aliases_teardown(&al);
}
END_TEST

/* An alias target "#public<d><name>" names Shared/<name>: <d> is any
 * character of [smtp] recipient_delimiter, or '+'; never the store's
 * INBOX, never the store alone. */
START_TEST(expand_public)
{
	struct delivery_dest *d = NULL;
	struct aliases *al =
	    aliases_setup("support: #public+support\nhelp: #public-help\ninbox: #public-INBOX\n"
	                  "store: #public\nempty: #public-\n");
	size_t n = 0;

	cfg.recipient_delimiter = "-+";
	ck_assert_int_eq(delivery_expand(&sv, "support@example.org", &d, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(d[0].d.user, STORAGE_ACL_PUBLIC_OWNER);
	ck_assert_str_eq(d[0].d.mailbox, "support");
	free(d);
	ck_assert_int_eq(delivery_expand(&sv, "help@example.org", &d, &n), 0);
	ck_assert_str_eq(d[0].d.mailbox, "help");
	free(d);
	ck_assert_int_eq(delivery_expand(&sv, "inbox@example.org", &d, &n), ROOST_ENOTFOUND);
	ck_assert_int_eq(delivery_expand(&sv, "store@example.org", &d, &n), ROOST_ENOTFOUND);
	ck_assert_int_eq(delivery_expand(&sv, "empty@example.org", &d, &n), ROOST_ENOTFOUND);
	/* "-" is no delimiter here; '+' always is, also with none set */
	cfg.recipient_delimiter = "+";
	ck_assert_int_eq(delivery_expand(&sv, "help@example.org", &d, &n), ROOST_ENOTFOUND);
	cfg.recipient_delimiter = "";
	ck_assert_int_eq(delivery_expand(&sv, "support@example.org", &d, &n), 0);
	ck_assert_str_eq(d[0].d.mailbox, "support");
	free(d);
	/* a sender cannot name the store */
	cfg.recipient_delimiter = "-+";
	ck_assert_int_eq(delivery_expand(&sv, "#public-help@example.org", &d, &n), ROOST_ENOTFOUND);

	cfg.recipient_delimiter = "+";
	aliases_teardown(&al);
}
END_TEST

/* alice+lists: alice's folder "lists" when it exists, else her INBOX;
 * the detail is never taken for a folder name it cannot be. */
START_TEST(resolve_detail)
{
	struct delivery_rcpt r;

	setup_backend(0);
	ck_assert_int_eq(delivery_resolve(&sv, "alice+lists@example.org", &r), 0);
	ck_assert_str_eq(r.user, "alice@example.org");
	ck_assert_str_eq(r.mailbox, "INBOX");
	ck_assert_int_eq(storage_create(sv.storage, "alice@example.org", "lists", 0), 0);
	ck_assert_int_eq(delivery_resolve(&sv, "alice+lists@example.org", &r), 0);
	ck_assert_str_eq(r.mailbox, "lists");
	ck_assert_int_eq(delivery_resolve(&sv, "alice+../x@example.org", &r), 0);
	ck_assert_str_eq(r.mailbox, "INBOX");
	ck_assert_int_eq(delivery_resolve(&sv, "nobody+lists@example.org", &r), ROOST_ENOTFOUND);
	cfg.recipient_delimiter = "";
	ck_assert_int_eq(delivery_resolve(&sv, "alice+lists@example.org", &r), ROOST_ENOTFOUND);
	teardown_backend();
}
END_TEST

START_TEST(new_id)
{
	char a[DELIVERY_ID_LEN], b[DELIVERY_ID_LEN];

	delivery_new_id(a);
	delivery_new_id(b);
	ck_assert_str_ne(a, b);
	ck_assert_uint_ge(strlen(a), 15);
	ck_assert_uint_eq(strspn(a, "0123456789ABCDEF"), strlen(a));
}
END_TEST

/* ---- trace headers ---- */

START_TEST(trace_headers)
{
	struct buf out = BUF_INIT(0);
	struct delivery_trace t = {
	    .sender = "bob@example.org",
	    .helo = "evil\r\nX-Injected: yes",
	    .peer = "192.0.2.7",
	    .protocol = "ESMTPS",
	    .tls_info = "TLSv1.3 TLS_AES_256_GCM_SHA384",
	    .id = "ID1",
	    .for_rcpt = "alice@example.org",
	    .dsn = "ENVID=x\r\nBcc: y; RET=HDRS",
	    .time = 86400,
	};
	const char *s;

	setup_backend(0);
	ck_assert_int_eq(delivery_trace_headers(&cfg, &t, &out), 0);
	s = buf_cstr(&out);
	ck_assert_ptr_eq(strstr(s, "Return-Path: <bob@example.org>\r\n"), s);
	ck_assert_ptr_nonnull(strstr(s, "Received: from evil__X-Injected:_yes ([192.0.2.7])"));
	ck_assert_ptr_nonnull(strstr(s, "by mx.example.org (Roost) with ESMTPS"));
	ck_assert_ptr_nonnull(strstr(s, "(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384)"));
	ck_assert_ptr_nonnull(strstr(s, "id ID1\r\n\tfor <alice@example.org>; Fri, 02 Jan 1970"));
	ck_assert_ptr_nonnull(strstr(s, "X-Roost-DSN: ENVID=x__Bcc_ y; RET=HDRS\r\n"));
	/* client text never starts a header line of its own */
	ck_assert_ptr_null(strstr(s, "\r\nX-Injected"));
	ck_assert_ptr_null(strstr(s, "\r\nBcc"));

	/* over the buffer's maximum: an error and nothing appended */
	buf_free(&out);
	buf_init(&out, 64);
	buf_append_str(&out, "kept");
	ck_assert_int_eq(delivery_trace_headers(&cfg, &t, &out), ROOST_ETOOBIG);
	ck_assert_str_eq(buf_cstr(&out), "kept");
	buf_free(&out);
	teardown_backend();
}
END_TEST

/* ---- storing ---- */

static void
targets_of(struct delivery_rcpt *r, struct delivery_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t[i] = (struct delivery_target){.user = r[i].user, .mailbox = r[i].mailbox};
}

/* SMTP: one recipient cannot take the message (over its quota of names:
 * here, a user name no store accepts), so nobody keeps a copy and the
 * client's retry makes no duplicate. LMTP: each recipient on its own. */
START_TEST(store_all_or_nothing)
{
	struct delivery_rcpt r[3];
	struct delivery_target t[3];
	struct msg_input in = msg_in();

	setup_backend(_i);
	ck_assert_int_eq(delivery_resolve(&sv, "alice@example.org", &r[0]), 0);
	ck_assert_int_eq(delivery_resolve(&sv, "bob@example.org", &r[1]), 0);
	snprintf(r[2].user, sizeof(r[2].user), "bad/../user");
	snprintf(r[2].mailbox, sizeof(r[2].mailbox), "INBOX");

	targets_of(r, t, 3);
	ck_assert_int_eq(delivery_store(&sv, "", &in, t, 3, true), ROOST_EINVAL);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(t[i].result, ROOST_EINVAL);
	ck_assert_uint_eq(messages_in("alice@example.org", "INBOX"), 0);
	ck_assert_uint_eq(messages_in("bob@example.org", "INBOX"), 0);

	targets_of(r, t, 3);
	ck_assert_int_eq(delivery_store(&sv, "", &in, t, 3, false), ROOST_EINVAL);
	ck_assert_int_eq(t[0].result, 0);
	ck_assert_int_eq(t[1].result, 0);
	ck_assert_int_eq(t[2].result, ROOST_EINVAL);
	ck_assert_uint_ne(t[0].uid, 0);
	ck_assert_uint_eq(messages_in("alice@example.org", "INBOX"), 1);
	ck_assert_uint_eq(messages_in("bob@example.org", "INBOX"), 1);

	targets_of(r, t, 2);
	ck_assert_int_eq(delivery_store(&sv, "", &in, t, 2, true), 0);
	ck_assert_uint_eq(messages_in("alice@example.org", "INBOX"), 2);
	ck_assert_int_eq(delivery_store(&sv, "", &in, t, 0, true), 0);
	teardown_backend();
}
END_TEST

/* A recipient named twice (alice and alice's INBOX through the detail
 * path) gets one copy; a first delivery sets the user up. */
START_TEST(store_new_user_once)
{
	struct delivery_rcpt r[2];
	struct delivery_target t[2];
	struct msg_input in = msg_in();
	struct mailbox_info *list;
	size_t n;

	setup_backend(_i);
	ck_assert_int_eq(delivery_resolve(&sv, "alice@example.org", &r[0]), 0);
	ck_assert_int_eq(delivery_resolve(&sv, "alice+nofolder@example.org", &r[1]), 0);
	targets_of(r, t, 2);
	ck_assert_int_eq(delivery_store(&sv, "", &in, t, 2, true), 0);
	ck_assert_uint_eq(t[0].uid, t[1].uid);
	ck_assert_uint_eq(messages_in("alice@example.org", "INBOX"), 1);
	ck_assert_int_eq(storage_list(sv.storage, "alice@example.org", &list, &n), 0);
	ck_assert_uint_eq(n, 6); /* INBOX and the default folders */
	storage_list_free(list, n);
	teardown_backend();
}
END_TEST

/* The detail folder existed at RCPT and was deleted before DATA: the copy
 * goes to INBOX, and the target says so (for the log line). */
START_TEST(store_folder_gone)
{
	struct delivery_rcpt r;
	struct delivery_target t;
	struct msg_input in = msg_in();

	setup_backend(_i);
	ck_assert_int_eq(storage_create(sv.storage, "bob@example.org", "lists", 0), 0);
	ck_assert_int_eq(delivery_resolve(&sv, "bob+lists@example.org", &r), 0);
	ck_assert_str_eq(r.mailbox, "lists");
	ck_assert_int_eq(storage_delete(sv.storage, "bob@example.org", "lists"), 0);
	targets_of(&r, &t, 1);
	ck_assert_int_eq(delivery_store(&sv, "", &in, &t, 1, true), 0);
	ck_assert_str_eq(t.mailbox, "INBOX");
	ck_assert_uint_eq(messages_in("bob@example.org", "INBOX"), 1);

	/* while it exists, the folder gets it */
	ck_assert_int_eq(storage_create(sv.storage, "bob@example.org", "lists", 0), 0);
	targets_of(&r, &t, 1);
	ck_assert_int_eq(delivery_store(&sv, "", &in, &t, 1, true), 0);
	ck_assert_str_eq(t.mailbox, "lists");
	ck_assert_uint_eq(messages_in("bob@example.org", "lists"), 1);
	teardown_backend();
}
END_TEST

static Suite *
delivery_suite(void)
{
	Suite *s = suite_create("delivery");
	TCase *tc = tcase_create("resolve");
	TCase *st = tcase_create("store");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, domain_is_local);
	tcase_add_test(tc, resolve);
	tcase_add_test(tc, resolve_detail);
	tcase_add_test(tc, expand);
	tcase_add_test(tc, expand_public);
	tcase_add_test(tc, new_id);
	tcase_add_test(tc, trace_headers);
	suite_add_tcase(s, tc);
	tcase_set_timeout(st, 120);
	tcase_add_loop_test(st, store_all_or_nothing, 0, n_backends);
	tcase_add_loop_test(st, store_new_user_once, 0, n_backends);
	tcase_add_loop_test(st, store_folder_gone, 0, n_backends);
	suite_add_tcase(s, st);
	return s;
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++) {
		if (storage_backend_available(all_backends[i]))
			backends[n_backends++] = all_backends[i];
	}
	if (n_backends == 0) {
		fprintf(stderr, "check_delivery: no backend in this build\n");
		return 1;
	}
	return check_run(delivery_suite());
}
