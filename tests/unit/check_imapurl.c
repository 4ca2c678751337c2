#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/imapurl.h"

#include "check_run.h"

static int
parse(const char *s, struct imapurl *u)
{
	return imapurl_parse(s, strlen(s), u);
}

START_TEST(full_urlauth)
{
	static const char url[] =
	    "imap://joe@example.com/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.2"
	    ";URLAUTH=submit+fred:internal:91354a473744909de610943775f92038";
	struct imapurl u;

	ck_assert_int_eq(parse(url, &u), 0);
	ck_assert(u.absolute);
	ck_assert_str_eq(u.user, "joe");
	ck_assert_str_eq(u.host, "example.com");
	ck_assert_uint_eq(u.port, 0);
	ck_assert_str_eq(u.mailbox, "INBOX");
	ck_assert_uint_eq(u.uidvalidity, 385759045);
	ck_assert_uint_eq(u.uid, 20);
	ck_assert(u.has_section);
	ck_assert_uint_eq(u.depth, 2);
	ck_assert_uint_eq(u.path[0], 1);
	ck_assert_uint_eq(u.path[1], 2);
	ck_assert_int_eq(u.sec, IMAPURL_SEC_ALL);
	ck_assert_int_eq(u.access, IMAPURL_ACCESS_SUBMIT);
	ck_assert_str_eq(u.access_user, "fred");
	ck_assert_str_eq(u.mechanism, "internal");
	ck_assert_str_eq(u.token, "91354a473744909de610943775f92038");
	/* the rump ends with the access identifier */
	ck_assert_uint_eq(u.rump_len,
	                  strlen(url) - strlen(":internal:91354a473744909de610943775f92038"));
}
END_TEST

START_TEST(forms)
{
	struct imapurl u;

	/* a rump: no verifier */
	ck_assert_int_eq(parse("IMAP://a%40b.org;AUTH=*@Mail.Example.COM:143/Drafts/;uid=7"
	                       ";EXPIRE=2006-05-20T12:00:00Z;urlauth=AUTHUSER",
	                       &u),
	                 0);
	ck_assert_str_eq(u.user, "a@b.org");
	ck_assert_str_eq(u.host, "mail.example.com");
	ck_assert_uint_eq(u.port, 143);
	ck_assert_str_eq(u.mailbox, "Drafts");
	ck_assert_uint_eq(u.uid, 7);
	ck_assert(u.has_expire);
	ck_assert_int_eq(u.expire, 1148126400);
	ck_assert_int_eq(u.access, IMAPURL_ACCESS_AUTHUSER);
	ck_assert_str_eq(u.mechanism, "");
	ck_assert_uint_eq(u.rump_len,
	                  strlen("IMAP://a%40b.org;AUTH=*@Mail.Example.COM:143/Drafts/"
	                         ";uid=7;EXPIRE=2006-05-20T12:00:00Z;urlauth=AUTHUSER"));

	/* path-absolute, with a hierarchy, an escape, a section and a partial */
	ck_assert_int_eq(parse("/Work/R%C3%A9sum%C3%A9%3B;UIDVALIDITY=9/;UID=3/;SECTION=2.MIME"
	                       "/;PARTIAL=10.20",
	                       &u),
	                 0);
	ck_assert(!u.absolute);
	ck_assert_str_eq(u.mailbox, "Work/R\xc3\xa9sum\xc3\xa9;");
	ck_assert_uint_eq(u.depth, 1);
	ck_assert_int_eq(u.sec, IMAPURL_SEC_MIME);
	ck_assert(u.partial);
	ck_assert_uint_eq(u.p_off, 10);
	ck_assert_uint_eq(u.p_len, 20);
	ck_assert_int_eq(u.access, IMAPURL_ACCESS_NONE);

	/* relative to the selected mailbox */
	ck_assert_int_eq(parse(";UID=5/;SECTION=HEADER", &u), 0);
	ck_assert_str_eq(u.mailbox, "");
	ck_assert_int_eq(u.sec, IMAPURL_SEC_HEADER);
	ck_assert_int_eq(parse("/;UID=5/;SECTION=1.TEXT/;PARTIAL=0", &u), 0);
	ck_assert_str_eq(u.mailbox, "");
	ck_assert_int_eq(u.sec, IMAPURL_SEC_TEXT);
	ck_assert(u.partial && u.p_off == 0 && u.p_len == 0);

	/* the other access identifiers, a time zone, a bracketed address */
	ck_assert_int_eq(parse("imap://u@[::1]/INBOX/;UID=1;EXPIRE=2030-01-01T01:00:00.5+01:00"
	                       ";URLAUTH=anonymous",
	                       &u),
	                 0);
	ck_assert_str_eq(u.host, "[::1]");
	ck_assert_int_eq(u.expire, 1893456000);
	ck_assert_int_eq(u.access, IMAPURL_ACCESS_ANONYMOUS);
	ck_assert_int_eq(parse("imap://u@h/INBOX/;UID=1;URLAUTH=user+bob%2Bx", &u), 0);
	ck_assert_int_eq(u.access, IMAPURL_ACCESS_USER);
	ck_assert_str_eq(u.access_user, "bob+x");
	ck_assert_int_eq(parse("imap://u@h/INBOX/;UID=4294967295", &u), 0);
	ck_assert_uint_eq(u.uid, 4294967295u);
}
END_TEST

START_TEST(malformed)
{
	static const char *const bad[] = {
	    "",
	    "imap://",
	    "imap://u@h",
	    "imap://u@h/",
	    "imap://u@h/INBOX",
	    "imap://u@h/INBOX;UID=1",  /* the '/' before ;UID */
	    "imap://u@h/INBOX/;UID=0", /* nz-number */
	    "imap://u@h/INBOX/;UID=4294967296",
	    "imap://u@h/INBOX/;UID=1x",
	    "imap://u@h/;UID=1", /* no mailbox in an absolute URL */
	    "imap://@h/INBOX/;UID=1",
	    "imap://u@/INBOX/;UID=1",
	    "imap://u@h:0/INBOX/;UID=1",
	    "imap://u@h:65536/INBOX/;UID=1",
	    "imap://u@h:x/INBOX/;UID=1",
	    "imap://u@h h/INBOX/;UID=1",
	    "imap://u;AUTH=@h/INBOX/;UID=1",
	    "imap://u;X=1@h/INBOX/;UID=1",
	    "//h/INBOX/;UID=1",
	    "http://u@h/INBOX/;UID=1",
	    "INBOX/;UID=1",
	    "/INBOX/;UID=1/;SECTION=",
	    "/INBOX/;UID=1/;SECTION=0",
	    "/INBOX/;UID=1/;SECTION=MIME", /* MIME needs a part */
	    "/INBOX/;UID=1/;SECTION=1.BOGUS",
	    "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(From)",
	    "/INBOX/;UID=1/;PARTIAL=1.0",
	    "/INBOX/;UID=1/;PARTIAL=",
	    "/INBOX/;UID=1;EXPIRE=2006-05-20T12:00:00Z", /* EXPIRE without URLAUTH */
	    "/INBOX/;UID=1;URLAUTH=",
	    "/INBOX/;UID=1;URLAUTH=nobody",
	    "/INBOX/;UID=1;URLAUTH=user+",
	    "/INBOX/;UID=1;URLAUTH=authuser:internal",
	    "/INBOX/;UID=1;URLAUTH=authuser:internal:",
	    "/INBOX/;UID=1;URLAUTH=authuser:internal:0123", /* < 32 digits */
	    "/INBOX/;UID=1;URLAUTH=authuser:internal:0123456789abcdef0123456789abcdeg",
	    "/INBOX/;UID=1;URLAUTH=authuser::0123456789abcdef0123456789abcdef",
	    "/INBOX/;UID=1;URLAUTH=authuser:in/t:0123456789abcdef0123456789abcdef",
	    "/INBOX/;UID=1;EXPIRE=2006-13-20T12:00:00Z;URLAUTH=authuser",
	    "/INBOX/;UID=1;EXPIRE=2006-05-20 12:00:00Z;URLAUTH=authuser",
	    "/INBOX/;UID=1;EXPIRE=2006-05-20T12:00:00;URLAUTH=authuser",
	    "/INBOX/;UID=1;EXPIRE=2006-05-20T12:00:00+1:00;URLAUTH=authuser",
	    "/INBOX/;UID=1?x",
	    "/INBOX/;UID=1#x",
	    "/IN%00BOX/;UID=1", /* NUL */
	    "/IN%0aBOX/;UID=1", /* control character */
	    "/IN%zzBOX/;UID=1", /* bad escape */
	    "/INBOX%/;UID=1",
	    "/INBOX%4/;UID=1",
	    "/IN BOX/;UID=1",
	    "/IN\"BOX/;UID=1",
	    "/INBOX/;UID=1/;SECTION=1/;URLAUTH=authuser",
	    "/INBOX/;UID=1;UIDVALIDITY=3",
	    "/INBOX;UIDVALIDITY=0/;UID=1",
	    "/INBOX;UIDVALIDITY=3;UID=1",
	};
	struct imapurl u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i], &u);
		ck_assert_msg(rc == ROOST_EINVAL, "accepted or wrong error %d: %s", rc, bad[i]);
	}
	/* NUL inside the given length */
	ck_assert_int_eq(imapurl_parse("/INBOX\0/;UID=1", 14, &u), ROOST_EINVAL);
	ck_assert_int_eq(imapurl_parse("/INBOX/;UID=1\0", 14, &u), ROOST_EINVAL);
}
END_TEST

START_TEST(huge)
{
	size_t n = IMAPURL_MAX + 100;
	char *s = malloc(n + 1);
	struct imapurl u;

	/* past the bound: refused before reading */
	memset(s, 'a', n);
	memcpy(s, "/", 1);
	memcpy(s + n - 7, "/;UID=1", 7);
	ck_assert_int_eq(imapurl_parse(s, n, &u), ROOST_ETOOBIG);
	/* within it, but a mailbox longer than any stored name */
	ck_assert_int_eq(imapurl_parse(s + n - 3000, 3000, &u), ROOST_EINVAL);
	memcpy(s + n - 3000, "/", 1);
	ck_assert_int_eq(imapurl_parse(s + n - 3000, 3000, &u), ROOST_ETOOBIG);
	/* deep sections */
	char sec[IMAPURL_MAX];
	strcpy(sec, "/INBOX/;UID=1/;SECTION=1");
	for (int i = 0; i < IMAPURL_MAX_DEPTH; i++)
		strcat(sec, ".1");
	ck_assert_int_eq(parse(sec, &u), ROOST_ETOOBIG);
	/* escapes that decode to a mailbox of 1023 bytes fit; 1024 do not */
	size_t k = 0;
	k += (size_t)sprintf(s + k, "/");
	for (int i = 0; i < 1023; i++)
		k += (size_t)sprintf(s + k, "%%41");
	k += (size_t)sprintf(s + k, "/;UID=1");
	ck_assert_int_eq(imapurl_parse(s, k, &u), 0);
	ck_assert_uint_eq(strlen(u.mailbox), 1023);
	free(s);
}
END_TEST

/* Every prefix of a valid URL is parsed without reading past its end: the
 * bytes sit against a page that cannot be read. */
START_TEST(guard_page)
{
	static const char url[] = "imap://joe@example.com/INBOX;UIDVALIDITY=1/;UID=20/;SECTION=1.2"
	                          "/;PARTIAL=0.5;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=user+a"
	                          ":internal:0123456789abcdef0123456789abcdef";
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
	                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct imapurl u;
	size_t n = strlen(url);

	ck_assert(m != MAP_FAILED);
	ck_assert_int_eq(mprotect(m + page, (size_t)page, PROT_NONE), 0);
	for (size_t len = 0; len <= n; len++) {
		char *p = (char *)m + page - len;
		memcpy(p, url, len);
		int rc = imapurl_parse(p, len, &u);
		ck_assert(rc == 0 || rc == ROOST_EINVAL);
		if (len == n)
			ck_assert_int_eq(rc, 0);
	}
	munmap(m, (size_t)page * 2);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("imapurl");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, full_urlauth);
	tcase_add_test(tc, forms);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, huge);
	tcase_add_test(tc, guard_page);
	suite_add_tcase(s, tc);
	return check_run(s);
}
