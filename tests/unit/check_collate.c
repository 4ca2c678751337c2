#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/collate.h"
#include "roost/error.h"
#include "roost/message.h"

#include "check_run.h"

static int
cmp(const char *a, const char *b)
{
	struct buf ka = BUF_INIT(0), kb = BUF_INIT(0);

	collate_key(a, strlen(a), &ka);
	collate_key(b, strlen(b), &kb);
	int r = collate_cmp((const char *)ka.data, ka.len, (const char *)kb.data, kb.len);
	buf_free(&ka);
	buf_free(&kb);
	return r < 0 ? -1 : r > 0;
}

START_TEST(casemap_equal_and_order)
{
	ck_assert_int_eq(cmp("hello", "HELLO"), 0);
	ck_assert_int_eq(cmp("Stra\xc3\x9f"
	                     "e",
	                     "STRA\xc3\x9f"
	                     "E"),
	                 0);
	/* titlecase, then the decomposition: e-acute is E + U+0301 */
	ck_assert_int_eq(cmp("\xc3\xa9lan", "\xc3\x89LAN"), 0);
	ck_assert_int_eq(cmp("e\xcc\x81lan", "\xc3\x89lan"), 0);
	ck_assert_int_eq(cmp("elan", "\xc3\xa9lan"), -1);
	/* compatibility forms: the "ff" ligature, full-width letters */
	ck_assert_int_eq(cmp("\xef\xac\x80", "FF"), 0);
	ck_assert_int_eq(cmp("\xef\xbd\x81"
	                     "bc",
	                     "ABC"),
	                 0);
	/* Greek final sigma and sigma are the same letter's cases */
	ck_assert_int_eq(cmp("\xce\xa3", "\xcf\x83"), 0);
	ck_assert_int_eq(cmp("abc", "abd"), -1);
	ck_assert_int_eq(cmp("ab", "abc"), -1);
	ck_assert_int_eq(cmp("", "a"), -1);
	ck_assert_int_eq(cmp("_", "a"), 1); /* a maps to A (0x41) < _ (0x5f) */
}
END_TEST

START_TEST(casemap_bad_utf8)
{
	static const char *const bad[] = {"\xff", "\xc3", "a\xed\xa0\x80z", "\xf4\x90\x80\x80",
	                                  "\xc0\xaf"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct buf k = BUF_INIT(0);
		collate_key(bad[i], strlen(bad[i]), &k);
		ck_assert_uint_gt(k.len, 0);
		/* the key is valid UTF-8: each bad byte became U+FFFD */
		ck_assert_ptr_nonnull(memmem(k.data, k.len, "\xef\xbf\xbd", 3));
		buf_free(&k);
	}
	ck_assert_int_eq(cmp("\xff", "\xfe"), 0);
}
END_TEST

static void
base_is(const char *subj, const char *want, bool want_reply)
{
	struct buf b = BUF_INIT(0);
	bool reply = !want_reply;

	collate_base_subject(subj, strlen(subj), &b, &reply);
	ck_assert_msg(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0,
	              "base of \"%s\": \"%s\", want \"%s\"", subj, buf_cstr(&b), want);
	ck_assert_msg(reply == want_reply, "reply of \"%s\"", subj);
	buf_free(&b);
}

START_TEST(base_subject)
{
	base_is("Hello", "Hello", false);
	base_is("Re: Hello", "Hello", true);
	base_is("RE: re: Fwd: FW: Hello", "Hello", true);
	base_is("Re[2]: Hello", "Hello", true);
	base_is("Re [2]: Hello", "Hello", true);
	base_is("[list] Re: Hello", "Hello", true);
	base_is("[list] [x] Hello", "Hello", false);
	base_is("[list]", "[list]", false); /* a blob that is all there is stays */
	base_is("Re: [list]", "[list]", true);
	base_is("Hello (fwd)", "Hello", true);
	base_is("Hello (fwd) (FWD)  ", "Hello", true);
	base_is("[Fwd: Hello]", "Hello", true);
	base_is("[fwd: Re: [fwd: Hello (fwd)]]", "Hello", true);
	base_is("  Hello \t  world\r\n there ", "Hello world there", false);
	base_is("Re:", "", true);
	base_is("", "", false);
	base_is("Rebus", "Rebus", false);
	base_is("Fwd Hello", "Fwd Hello", false);
	base_is("[fwd: x", "[fwd: x", false);
}
END_TEST

/* Subjects built to make a naive extraction quadratic finish at once. */
START_TEST(base_subject_hostile)
{
	struct buf s = BUF_INIT(0), out = BUF_INIT(0);

	for (int i = 0; i < 50000; i++)
		buf_append_str(&s, "[a]");
	buf_append_str(&s, "x");
	collate_base_subject((const char *)s.data, s.len, &out, NULL);
	ck_assert_str_eq(buf_cstr(&out), "x");

	buf_reset(&s);
	buf_reset(&out);
	for (int i = 0; i < 40000; i++)
		buf_append_str(&s, "[fwd: ");
	buf_append_str(&s, "Re: y");
	for (int i = 0; i < 40000; i++)
		buf_append_byte(&s, ']');
	collate_base_subject((const char *)s.data, s.len, &out, NULL);
	ck_assert_str_eq(buf_cstr(&out), "y");

	buf_reset(&s);
	buf_reset(&out);
	for (int i = 0; i < 60000; i++)
		buf_append_str(&s, "re: [b] ");
	collate_base_subject((const char *)s.data, s.len, &out, NULL);
	ck_assert_str_eq(buf_cstr(&out), "[b]");
	buf_free(&s);
	buf_free(&out);
}
END_TEST

START_TEST(first_address)
{
	static const struct {
		const char *in, *name, *mbox, *host;
		int ret;
	} cases[] = {
	    {"Ann <ann@example.org>, bob@x", "Ann", "ann", "example.org", 0},
	    {"\"Doe, J\" <j@x.org>", "Doe, J", "j", "x.org", 0},
	    {"bob@x.org (Bob B)", "Bob B", "bob", "x.org", 0},
	    {"undisclosed-recipients:;", "", "", "", ROOST_ENOTFOUND},
	    {"team: carol@x.org, dan@y;", "", "carol", "x.org", 0},
	    {"", "", "", "", ROOST_ENOTFOUND},
	    {",,, <e@f>", "", "e", "f", 0},
	    {"=?UTF-8?Q?=C3=89mile?= <e@x.org>", "=?UTF-8?Q?=C3=89mile?=", "e", "x.org", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf n = BUF_INIT(0), m = BUF_INIT(0), h = BUF_INIT(0);
		int r = message_address_first(cases[i].in, strlen(cases[i].in), &n, &m, &h);
		ck_assert_int_eq(r, cases[i].ret);
		ck_assert_str_eq(buf_cstr(&n), cases[i].name);
		ck_assert_str_eq(buf_cstr(&m), cases[i].mbox);
		ck_assert_str_eq(buf_cstr(&h), cases[i].host);
		buf_free(&n);
		buf_free(&m);
		buf_free(&h);
	}
}
END_TEST

static Suite *
collate_suite(void)
{
	Suite *s = suite_create("collate");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, casemap_equal_and_order);
	tcase_add_test(tc, casemap_bad_utf8);
	tcase_add_test(tc, base_subject);
	tcase_add_test(tc, base_subject_hostile);
	tcase_add_test(tc, first_address);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(collate_suite());
}
