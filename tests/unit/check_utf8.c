#include <check.h>
#include <string.h>

#include "roost/utf8.h"

#include "check_run.h"

/*
 * The well-formed sequences of RFC 3629 section 4, written from its ABNF
 * rather than from the decoder: the length of the one at s[0..n), or 0.
 */
static size_t
rfc3629_len(const uint8_t *s, size_t n)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t len;

	if (s[0] <= 0x7f)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static void
check_against_rfc(const uint8_t *s, size_t n)
{
	uint32_t cp = 0;
	size_t want = rfc3629_len(s, n), got = utf8_decode(s, n, &cp);

	/* plain ifs: a Check assertion per sequence would cost more than the check */
	if (got != want)
		ck_abort_msg("%02x %02x %02x %02x (n=%zu): %zu, want %zu", s[0], n > 1 ? s[1] : 0,
		             n > 2 ? s[2] : 0, n > 3 ? s[3] : 0, n, got, want);
	if (utf8_valid(s, want == 0 ? n : want) != (want != 0))
		ck_abort_msg("utf8_valid disagrees on %02x (n=%zu)", s[0], n);
}

START_TEST(decode_matches_rfc3629)
{
	uint8_t s[4];
	static const uint8_t tails[] = {0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xff};

	/* every sequence of one to three bytes */
	for (unsigned a = 0; a < 256; a++) {
		s[0] = (uint8_t)a;
		check_against_rfc(s, 1);
		for (unsigned b = 0; b < 256; b++) {
			s[1] = (uint8_t)b;
			check_against_rfc(s, 2);
			if (a < 0xe0)
				continue;
			for (unsigned c = 0; c < 256; c++) {
				s[2] = (uint8_t)c;
				check_against_rfc(s, 3);
			}
		}
	}
	/* four bytes: every lead and second byte, the edges of the others */
	for (unsigned a = 0xf0; a < 0x100; a++)
		for (unsigned b = 0; b < 256; b++)
			for (size_t i = 0; i < sizeof(tails); i++)
				for (size_t j = 0; j < sizeof(tails); j++) {
					s[0] = (uint8_t)a;
					s[1] = (uint8_t)b;
					s[2] = tails[i];
					s[3] = tails[j];
					check_against_rfc(s, 4);
				}
}
END_TEST

START_TEST(encode_decode_every_code_point)
{
	uint8_t s[UTF8_SEQ_MAX];

	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		uint32_t back = 0xffffffff;
		size_t n;

		if (cp == 0xd800)
			cp = 0xe000;
		n = utf8_encode(cp, s);
		if (n != (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4))
			ck_abort_msg("U+%04X: %zu bytes", cp, n);
		if (utf8_decode(s, n, &back) != n || back != cp || !utf8_valid(s, n))
			ck_abort_msg("U+%04X does not decode back", cp);
		/* cut short, it is no longer a sequence */
		if (n > 1 && utf8_decode(s, n - 1, &back) != 0)
			ck_abort_msg("U+%04X cut short decodes", cp);
	}
	/* a surrogate spelt out is refused */
	ck_assert_uint_eq(utf8_encode(0xdc00, s), 3);
	ck_assert(!utf8_valid(s, 3));
}
END_TEST

START_TEST(controls)
{
	ck_assert(utf8_is_control(0));
	ck_assert(utf8_is_control(0x1f));
	ck_assert(!utf8_is_control(0x20));
	ck_assert(!utf8_is_control(0x7e));
	ck_assert(utf8_is_control(0x7f));
	ck_assert(utf8_is_control(0x80));
	ck_assert(utf8_is_control(0x9f));
	ck_assert(!utf8_is_control(0xa0));
	/* utf8_valid lets controls through, utf8_text_valid does not */
	ck_assert(utf8_valid((const uint8_t *)"a\tb\xc2\x85", 5));
	ck_assert(!utf8_text_valid("a\tb", 3));
	ck_assert(!utf8_text_valid("\xc2\x85", 2));
	ck_assert(!utf8_text_valid("a\x7f", 2));
}
END_TEST

START_TEST(text_rules)
{
	uint32_t cp;

	ck_assert(utf8_text_valid("J\xc3\xb6rg \xf0\x9f\x98\x80", 10));
	ck_assert(!utf8_text_valid("\xff\xfe", 2));
	ck_assert(!utf8_text_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
	ck_assert(!utf8_text_valid("\xe0\x80\xaf", 3));     /* overlong */
	ck_assert(utf8_text_valid("", 0));
	ck_assert(utf8_valid((const uint8_t *)"", 0));
	ck_assert(!utf8_valid((const uint8_t *)"ab\xc3", 3)); /* cut at the end */
	ck_assert_uint_eq(utf8_decode((const uint8_t *)"\xe2\x82\xac", 3, &cp), 3);
	ck_assert_uint_eq(cp, 0x20ac);
	ck_assert_uint_eq(utf8_decode((const uint8_t *)"\xe2\x82\xac", 2, &cp), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("utf8");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, decode_matches_rfc3629);
	tcase_add_test(tc, encode_decode_every_code_point);
	tcase_add_test(tc, controls);
	tcase_add_test(tc, text_rules);
	suite_add_tcase(s, tc);
	return check_run(s);
}
