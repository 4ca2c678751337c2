#include <check.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/mutf7.h"

#include "check_run.h"

static void
roundtrip(const char *utf8, const char *mutf7)
{
	struct buf b = BUF_INIT(0);

	ck_assert_int_eq(mutf7_encode(utf8, strlen(utf8), &b), 0);
	ck_assert_str_eq(buf_cstr(&b), mutf7);
	buf_reset(&b);
	ck_assert_int_eq(mutf7_decode(mutf7, strlen(mutf7), &b), 0);
	ck_assert_str_eq(buf_cstr(&b), utf8);
	buf_free(&b);
}

START_TEST(mutf7)
{
	roundtrip("INBOX", "INBOX");
	roundtrip("a&b", "a&-b");
	roundtrip("Entw\xc3\xbc"
	          "rfe",
	          "Entw&APw-rfe");
	roundtrip("\xe5\x8f\xb0\xe5\x8c\x97", "&U,BTFw-");
	roundtrip("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	          "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	roundtrip("\xf0\x9f\x98\x80", "&2D3eAA-");

	struct buf b = BUF_INIT(0);
	ck_assert_int_eq(mutf7_decode("&", 1, &b), ROOST_EINVAL);
	ck_assert_int_eq(mutf7_decode("&AGE-", 5, &b), ROOST_EINVAL); /* encoded 'a' */
	ck_assert_int_eq(mutf7_decode("&2D0-", 5, &b), ROOST_EINVAL); /* lone surrogate */
	ck_assert_int_eq(mutf7_decode("&U,B", 4, &b), ROOST_EINVAL);
	ck_assert_int_eq(mutf7_decode("\xff", 1, &b), ROOST_EINVAL);
	buf_reset(&b);
	/* raw UTF-8 is accepted as is */
	ck_assert_int_eq(mutf7_decode("caf\xc3\xa9", 5, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "caf\xc3\xa9");
	buf_free(&b);
}
END_TEST

START_TEST(invalid_utf8_is_not_encoded)
{
	struct buf b = BUF_INIT(0);

	ck_assert_int_eq(mutf7_encode("a\xc3", 2, &b), ROOST_EINVAL);
	ck_assert_int_eq(mutf7_encode("\xed\xa0\x80", 3, &b), ROOST_EINVAL); /* surrogate */
	ck_assert_int_eq(mutf7_encode("\xc0\xaf", 2, &b), ROOST_EINVAL);     /* overlong '/' */
	buf_free(&b);
}
END_TEST

/* A NUL or another control character decoded from base64 would cut or
 * garble the name ("a&AAA-b" naming "a"): refused, like raw ones. */
START_TEST(controls_refused_after_decoding)
{
	static const char *const bad[] = {
	    "a&AAA-b", "&AAA-",     "&AAE-",    "&AB8-",    "&AH8-", "&AIA-",
	    "&AJ8-",   "x&AGEAAA-", "\xc2\x80", "\xc2\x9f", "a\x01", "a\x7f",
	};
	struct buf b = BUF_INIT(0);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_reset(&b);
		ck_assert_msg(mutf7_decode(bad[i], strlen(bad[i]), &b) == ROOST_EINVAL,
		              "accepted %s", bad[i]);
	}
	/* the first printable character past C1 is fine */
	buf_reset(&b);
	ck_assert_int_eq(mutf7_decode("&AKA-", 5, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "\xc2\xa0");
	buf_free(&b);
}
END_TEST

START_TEST(encoded_len_matches_encode)
{
	static const char *const names[] = {
	    "",
	    "INBOX",
	    "a&b",
	    "&",
	    "&&",
	    "Entw\xc3\xbcrfe",
	    "\xc3\xa9",
	    "a\xc3\xa9"
	    "a\xc3\xa9",
	    "\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5",
	    "\xf0\x9f\x98\x80x\xf0\x9f\x98\x80",
	    "\xc3\xa9\xc3\xa9\xc3\xa9",
	    "100%/x",
	};
	struct buf b = BUF_INIT(0);
	size_t n;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		buf_reset(&b);
		ck_assert_int_eq(mutf7_encode(names[i], strlen(names[i]), &b), 0);
		ck_assert_int_eq(mutf7_encoded_len(names[i], strlen(names[i]), &n), 0);
		ck_assert_msg(n == b.len, "%s: %zu, encoded %zu", buf_cstr(&b), n, b.len);
	}
	ck_assert_int_eq(mutf7_encoded_len("a\xc3", 2, &n), ROOST_EINVAL);
	buf_free(&b);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("mutf7");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, mutf7);
	tcase_add_test(tc, invalid_utf8_is_not_encoded);
	tcase_add_test(tc, controls_refused_after_decoding);
	tcase_add_test(tc, encoded_len_matches_encode);
	suite_add_tcase(s, tc);
	return check_run(s);
}
