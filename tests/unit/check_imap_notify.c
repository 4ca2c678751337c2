/*
 * NOTIFY's argument parser (protocols/imap/imap_notify.c): each command is
 * framed and parsed by the IMAP parser as on the wire, then given to
 * imap_notify_parse(); the result is checked field by field, and every
 * refusal for its class (BAD, NO [BADEVENT], NO, NO [NOTIFICATIONOVERFLOW]).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/storage.h"

#include "../../protocols/imap/imap_impl.h"

#include "check_run.h"

/* Parse "t NOTIFY <args>" and hand the arguments to the NOTIFY parser. */
static int
notify_parse(const struct imap_session *s, const char *args, struct notify_spec *spec,
             const char **err)
{
	struct arena a;
	struct imap_parsed p;
	struct buf line = BUF_INIT(0);
	const char *perr;
	int rc;

	arena_init(&a);
	buf_printf(&line, "t NOTIFY %s\r\n", args);
	rc = imap_parse_command(&a, line.data, line.len, &p, &perr);
	if (rc == 0) {
		ck_assert_str_eq(p.name, "NOTIFY");
		rc = imap_notify_parse(s, p.args, p.n, spec, err);
	} else {
		*err = perr;
		rc = 1; /* refused by the IMAP parser itself (a BAD too) */
	}
	arena_free(&a);
	buf_free(&line);
	return rc;
}

static const struct imap_session plain; /* IMAP4rev1: names in modified UTF-7 */

START_TEST(test_none_and_set)
{
	struct notify_spec sp;
	const char *err;

	ck_assert_int_eq(notify_parse(&plain, "NONE", &sp, &err), 0);
	ck_assert(sp.none);
	imap_notify_spec_free(&sp);
	ck_assert_int_eq(notify_parse(&plain, "none", &sp, &err), 0);
	imap_notify_spec_free(&sp);

	ck_assert_int_eq(
	    notify_parse(
	        &plain,
	        "SET STATUS (selected (MessageNew (uid FLAGS modseq) MessageExpunge "
	        "FlagChange)) (personal (MessageNew MessageExpunge MailboxName "
	        "SubscriptionChange)) (subtree (Lists \"a b\") (MessageNew MessageExpunge)) "
	        "(mailboxes inbox/x NONE)",
	        &sp, &err),
	    0);
	ck_assert(!sp.none);
	ck_assert(sp.status);
	ck_assert_uint_eq(sp.n_groups, 4);
	ck_assert_int_eq(sp.groups[0].filter, NF_SELECTED);
	ck_assert_uint_eq(sp.groups[0].events,
	                  NEV_MESSAGE_NEW | NEV_MESSAGE_EXPUNGE | NEV_FLAG_CHANGE);
	ck_assert_uint_eq(sp.fetch, NF_FETCH_UID | NF_FETCH_FLAGS | NF_FETCH_MODSEQ);
	ck_assert_int_eq(sp.groups[1].filter, NF_PERSONAL);
	ck_assert_uint_eq(sp.groups[1].events, NEV_MESSAGE_NEW | NEV_MESSAGE_EXPUNGE |
	                                           NEV_MAILBOX_NAME | NEV_SUBSCRIPTION_CHANGE);
	ck_assert_int_eq(sp.groups[2].filter, NF_SUBTREE);
	ck_assert_uint_eq(sp.groups[2].n_names, 2);
	ck_assert_str_eq(sp.groups[2].names[0], "Lists");
	ck_assert_str_eq(sp.groups[2].names[1], "a b");
	ck_assert_int_eq(sp.groups[3].filter, NF_MAILBOXES);
	ck_assert_uint_eq(sp.groups[3].events, 0);
	ck_assert_uint_eq(sp.groups[3].n_names, 1);
	ck_assert_str_eq(sp.groups[3].names[0], "INBOX/x"); /* INBOX in one spelling */
	imap_notify_spec_free(&sp);

	ck_assert_int_eq(notify_parse(&plain,
	                              "SET (personal (MailboxMetadataChange ServerMetadataChange))",
	                              &sp, &err),
	                 0);
	ck_assert_uint_eq(sp.groups[0].events, NEV_MAILBOX_METADATA | NEV_SERVER_METADATA);
	imap_notify_spec_free(&sp);

	/* Modified UTF-7 decoded into storage form. */
	ck_assert_int_eq(
	    notify_parse(&plain, "SET (mailboxes B&AOQ-r (MessageNew MessageExpunge))", &sp, &err),
	    0);
	ck_assert_str_eq(sp.groups[0].names[0], "B\xc3\xa4r");
	imap_notify_spec_free(&sp);

	/* Fetch attributes outside SELECTED are not asked for: STATUS is sent. */
	ck_assert_int_eq(
	    notify_parse(&plain, "SET (inboxes (MessageNew (BODY.PEEK[HEADER]) MessageExpunge))",
	                 &sp, &err),
	    0);
	ck_assert_uint_eq(sp.fetch, 0);
	imap_notify_spec_free(&sp);
}
END_TEST

/* Refused as BAD by NOTIFY's grammar or its combination rules. */
START_TEST(test_bad)
{
	static const char *const bad[] = {
	    "",
	    "FOO",
	    "NONE x",
	    "SET",
	    "SET STATUS",
	    "SET personal",
	    "SET ()",
	    "SET (personal)",
	    "SET (personal NONE x)",
	    "SET (bogus (MessageNew MessageExpunge))",
	    "SET (personal ())",
	    "SET (personal (MessageNew))",
	    "SET (personal (MessageExpunge))",
	    "SET (personal (FlagChange))",
	    "SET (personal (MessageNew FlagChange))",
	    "SET (selected (MailboxName))",
	    "SET (selected (MessageNew MessageExpunge MailboxMetadataChange))",
	    "SET (selected-delayed (ServerMetadataChange))",
	    "SET (selected-delayed (MessageNew MessageExpunge SubscriptionChange))",
	    "SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)",
	    "SET (personal ((MessageNew) MessageExpunge))",
	    "SET (personal (\"MessageNew\" MessageExpunge))",
	    "SET (mailboxes () NONE)",
	    "SET (mailboxes NONE)",
	    "SET (subtree (a (b)) NONE)",
	    "SET (selected (MessageNew () MessageExpunge))",
	    "SET (mailboxes &Jjo NONE)",
	    "SET (mailboxes \"\" NONE)",
	    "SET (personal (MessageNew MessageExpunge)) x",
	};
	struct notify_spec sp;
	const char *err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = notify_parse(&plain, bad[i], &sp, &err);

		if (rc != 1 && rc != ROOST_EINVAL)
			ck_abort_msg("%s: %d", bad[i], rc);
		ck_assert_msg(err != NULL, "%s: no reason", bad[i]);
	}
}
END_TEST

START_TEST(test_badevent)
{
	static const char *const ev[] = {
	    "SET (personal (Bogus))",
	    "SET (personal (MessageNew MessageExpunge AnnotationChange))",
	    "SET (selected (MessageNew MessageExpunge)) (personal (x-unknown))",
	};
	struct notify_spec sp;
	const char *err;

	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
		ck_assert_int_eq(notify_parse(&plain, ev[i], &sp, &err), ROOST_ENOTSUP);
		ck_assert_ptr_null(err);
	}
	ck_assert_str_eq(imap_notify_events_supported(),
	                 "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange "
	                 "MailboxMetadataChange ServerMetadataChange");
	/* A fetch attribute the notification cannot give: NO with a reason. */
	ck_assert_int_eq(notify_parse(&plain,
	                              "SET (selected (MessageNew (ENVELOPE) MessageExpunge))", &sp,
	                              &err),
	                 ROOST_ENOTSUP);
	ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(test_bounds)
{
	struct buf b = BUF_INIT(0);
	struct notify_spec sp;
	const char *err;

	/* 1000 names are taken, 1001 are too many to follow. */
	buf_append_str(&b, "SET (mailboxes (");
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%sm%d", i ? " " : "", i);
	buf_append_str(&b, ") (MessageNew MessageExpunge))");
	ck_assert_int_eq(notify_parse(&plain, buf_cstr(&b), &sp, &err), 0);
	ck_assert_uint_eq(sp.groups[0].n_names, 1000);
	imap_notify_spec_free(&sp);
	buf_reset(&b);
	buf_append_str(&b, "SET (mailboxes (a b) NONE) (subtree (");
	for (int i = 0; i < 999; i++)
		buf_printf(&b, "%sm%d", i ? " " : "", i);
	buf_append_str(&b, ") NONE)");
	ck_assert_int_eq(notify_parse(&plain, buf_cstr(&b), &sp, &err), ROOST_ETOOBIG);
	/* More groups than a NOTIFY takes. */
	buf_reset(&b);
	buf_append_str(&b, "SET");
	for (int i = 0; i < NOTIFY_MAX_GROUPS + 1; i++)
		buf_append_str(&b, " (personal NONE)");
	ck_assert_int_eq(notify_parse(&plain, buf_cstr(&b), &sp, &err), ROOST_EINVAL);
	/* Nesting past the parser's bound never reaches NOTIFY. */
	buf_reset(&b);
	buf_append_str(&b, "SET (personal ");
	for (int i = 0; i < 64; i++)
		buf_append_byte(&b, '(');
	for (int i = 0; i < 64; i++)
		buf_append_byte(&b, ')');
	buf_append_byte(&b, ')');
	ck_assert_int_ne(notify_parse(&plain, buf_cstr(&b), &sp, &err), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_utf8_names)
{
	struct imap_session utf8;
	struct notify_spec sp;
	const char *err;

	memset(&utf8, 0, sizeof(utf8));
	utf8.utf8_accept = true;
	ck_assert_int_eq(notify_parse(&utf8, "SET (mailboxes \"B\xc3\xa4r\" NONE)", &sp, &err), 0);
	ck_assert_str_eq(sp.groups[0].names[0], "B\xc3\xa4r");
	imap_notify_spec_free(&sp);
	ck_assert_int_eq(notify_parse(&utf8, "SET (mailboxes \"B\xc3r\" NONE)", &sp, &err),
	                 ROOST_EINVAL);
	ck_assert_int_eq(notify_parse(&utf8, "SET (mailboxes \"a\x01z\" NONE)", &sp, &err),
	                 ROOST_EINVAL);
	/* Without it, as every command decodes names: bad UTF-8 refused. */
	ck_assert_int_eq(notify_parse(&plain, "SET (mailboxes \"B\xc3r\" NONE)", &sp, &err),
	                 ROOST_EINVAL);
}
END_TEST

/* Which filters take other users' and shared mailboxes: SUBTREE,
 * MAILBOXES and SUBSCRIBED do, PERSONAL and INBOXES do not. */
START_TEST(test_foreign_filters)
{
	struct notify_spec sp;
	const char *err;
	const unsigned msg = NEV_MESSAGE_NEW | NEV_MESSAGE_EXPUNGE;

	ck_assert_int_eq(notify_parse(&plain,
	                              "SET (personal (MessageNew MessageExpunge)) "
	                              "(subtree Shared (MessageNew MessageExpunge FlagChange)) "
	                              "(mailboxes \"Other Users/a@x.org/T\" (MailboxName)) "
	                              "(subscribed (SubscriptionChange))",
	                              &sp, &err),
	                 0);
	ck_assert_uint_eq(notify_events_for(&sp, "INBOX", 0, false), msg);
	ck_assert_uint_eq(notify_events_for(&sp, "Shared/desk", 0, true), msg | NEV_FLAG_CHANGE);
	ck_assert_uint_eq(notify_events_for(&sp, "Shared/desk/2026", 0, true),
	                  msg | NEV_FLAG_CHANGE);
	ck_assert_uint_eq(notify_events_for(&sp, "Sharedx/desk", 0, true), 0);
	ck_assert_uint_eq(notify_events_for(&sp, "Other Users/a@x.org/T", 0, true),
	                  NEV_MAILBOX_NAME);
	ck_assert_uint_eq(notify_events_for(&sp, "Other Users/a@x.org/T/sub", 0, true), 0);
	ck_assert_uint_eq(notify_events_for(&sp, "Other Users/b@x.org/T", MBOX_SUBSCRIBED, true),
	                  NEV_SUBSCRIPTION_CHANGE);
	ck_assert_uint_eq(notify_events_for(&sp, "Other Users/b@x.org/T", 0, true), 0);
	imap_notify_spec_free(&sp);
}
END_TEST

/* The store a name of the other users' or the shared namespace lives in. */
START_TEST(test_store_of)
{
	char owner[256];
	size_t pl = 0;

	ck_assert_int_eq(storage_acl_store_of(NULL, "Shared", owner, sizeof(owner), &pl), 0);
	ck_assert_str_eq(owner, STORAGE_ACL_PUBLIC_OWNER);
	ck_assert_uint_eq(pl, 6);
	ck_assert_int_eq(storage_acl_store_of(NULL, "Shared/desk/x", owner, sizeof(owner), &pl), 0);
	ck_assert_uint_eq(pl, 6);
	ck_assert_int_eq(
	    storage_acl_store_of(NULL, "Other Users/a@x.org/T", owner, sizeof(owner), &pl), 0);
	ck_assert_str_eq(owner, "a@x.org");
	ck_assert_uint_eq(pl, strlen("Other Users/a@x.org"));
	ck_assert_int_eq(
	    storage_acl_store_of(NULL, "Other Users/a@x.org", owner, sizeof(owner), &pl), 0);
	ck_assert_str_eq(owner, "a@x.org");
	ck_assert_int_eq(storage_acl_store_of(NULL, "Other Users", owner, sizeof(owner), &pl),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_store_of(NULL, "INBOX", owner, sizeof(owner), &pl),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_store_of(NULL, "Sharedx", owner, sizeof(owner), &pl),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(storage_acl_store_of(NULL, "Other Users/../x", owner, sizeof(owner), &pl),
	                 ROOST_EINVAL);
	ck_assert_int_eq(
	    storage_acl_store_of(NULL, "Other Users/#public/x", owner, sizeof(owner), &pl),
	    ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_store_of(NULL, "Other Users//x", owner, sizeof(owner), &pl),
	                 ROOST_EINVAL);
	ck_assert_int_eq(storage_acl_store_of(NULL, "Other Users/a@x.org/T", owner, 4, &pl),
	                 ROOST_EINVAL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("imap_notify");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_none_and_set);
	tcase_add_test(tc, test_bad);
	tcase_add_test(tc, test_badevent);
	tcase_add_test(tc, test_bounds);
	tcase_add_test(tc, test_utf8_names);
	tcase_add_test(tc, test_foreign_filters);
	tcase_add_test(tc, test_store_of);
	suite_add_tcase(s, tc);
	return check_run(s);
}
