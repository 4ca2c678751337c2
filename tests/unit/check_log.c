#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "roost/log.h"
#include "roost/utf8.h"

#include "check_run.h"

static const char *
q(const char *s)
{
	static char buf[LOG_QUOTE_MAX];

	return log_quote(buf, sizeof(buf), s);
}

static const char *
qn(const char *s, size_t len)
{
	static char buf[LOG_QUOTE_MAX];

	return log_quote_n(buf, sizeof(buf), s, len);
}

START_TEST(plain_values_stay_bare)
{
	ck_assert_str_eq(q("alice@example.org"), "alice@example.org");
	ck_assert_str_eq(q("INBOX/Sent-2024_a.b+c"), "INBOX/Sent-2024_a.b+c");
	ck_assert_str_eq(q("<>"), "<>");
	ck_assert_str_eq(q(NULL), "-");
	ck_assert_str_eq(q(""), "\"\"");
}
END_TEST

START_TEST(escapes)
{
	ck_assert_str_eq(q("a b"), "\"a b\"");
	ck_assert_str_eq(q("say \"hi\""), "\"say \\\"hi\\\"\"");
	ck_assert_str_eq(q("a\\b"), "\"a\\\\b\"");
	ck_assert_str_eq(q("k=v"), "\"k\\x3dv\"");
	ck_assert_str_eq(q("a\r\nb\tc\x7f"), "\"a\\x0d\\x0ab\\x09c\\x7f\"");
	ck_assert_str_eq(qn("a\0b", 3), "\"a\\x00b\"");
	/* Valid UTF-8 is kept, in quotes. */
	ck_assert_str_eq(q("j\xc3\xb6rg@x"), "\"j\xc3\xb6rg@x\"");
	ck_assert_str_eq(q("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");
	/* Not UTF-8: a lone byte, a stray continuation, truncated, overlong,
	 * a surrogate. Each byte escaped. */
	ck_assert_str_eq(q("\xff\xfe"), "\"\\xff\\xfe\"");
	ck_assert_str_eq(q("a\x80"
	                   "b"),
	                 "\"a\\x80b\"");
	ck_assert_str_eq(q("\xc3"), "\"\\xc3\"");
	ck_assert_str_eq(q("\xc0\xaf"), "\"\\xc0\\xaf\"");
	ck_assert_str_eq(q("\xed\xa0\x80"), "\"\\xed\\xa0\\x80\"");
	/* Valid but invisible or layout-changing: C1 NEL, LINE SEPARATOR,
	 * RIGHT-TO-LEFT OVERRIDE. */
	ck_assert_str_eq(q("a\xc2\x85"
	                   "b"),
	                 "\"a\\xc2\\x85b\"");
	ck_assert_str_eq(q("\xe2\x80\xa8"), "\"\\xe2\\x80\\xa8\"");
	ck_assert_str_eq(q("x\xe2\x80\xaey"), "\"x\\xe2\\x80\\xaey\"");
}
END_TEST

/* The forged sender of a delivery line stays one field. */
START_TEST(forged_fields)
{
	const char *v = q("\"x> status=ok user=bob@example.org id=FAKE\"@evil.org");

	ck_assert_str_eq(
	    v, "\"\\\"x> status\\x3dok user\\x3dbob@example.org id\\x3dFAKE\\\"@evil.org\"");
	ck_assert_ptr_null(strchr(v, '='));
}
END_TEST

START_TEST(long_values_are_cut)
{
	char in[2000], small[8];
	const char *v;

	memset(in, 'a', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	v = q(in);
	ck_assert_uint_eq(strlen(v), LOG_QUOTE_MAX - 1);
	ck_assert_int_eq(v[0], '"');
	ck_assert_str_eq(v + strlen(v) - 4, "...\"");
	/* Exactly full: still whole. */
	in[LOG_QUOTE_MAX - 1] = '\0';
	ck_assert_str_eq(q(in), in);
	in[LOG_QUOTE_MAX - 2] = ' ';
	v = q(in);
	ck_assert_str_eq(v + strlen(v) - 4, "...\"");
	/* Never cut inside an escape or a UTF-8 sequence. */
	for (size_t i = 0; i + 2 < sizeof(in); i += 2)
		memcpy(in + i, "\xc3\xb6", 2);
	in[sizeof(in) - 2] = '\0';
	v = q(in);
	ck_assert(utf8_text_valid(v, strlen(v)));
	ck_assert_str_eq(v + strlen(v) - 6, "\xc3\xb6...\"");
	memset(in, '\x01', 100);
	in[100] = '\0';
	v = log_quote(small, sizeof(small), in);
	ck_assert_str_eq(v, "\"...\"");
	ck_assert_str_eq(log_quote(small, sizeof(small), "\x01"), "\"\\x01\"");
	ck_assert_str_eq(log_quote(small, sizeof(small), "abcdefg"), "abcdefg");
	ck_assert_str_eq(log_quote(small, sizeof(small), "abcdefgh"), "\"ab...\"");
}
END_TEST

/* Whatever the bytes: either a bare run of safe characters, or one quoted
 * string in which every '"' is escaped, with no control byte, no '=' and
 * only valid UTF-8. (Plain checks in the loop: each ck_assert costs a
 * write to the test runner.) */
static bool
well_formed(const char *v)
{
	size_t vlen = strlen(v);

	if (vlen >= LOG_QUOTE_MAX || !utf8_text_valid(v, vlen) || strchr(v, '=') != NULL)
		return false;
	if (v[0] != '"')
		return vlen > 0 && strpbrk(v, " \"\\") == NULL;
	if (vlen < 2 || v[vlen - 1] != '"')
		return false;
	for (size_t i = 1; i < vlen - 1; i++) {
		if (v[i] == '\\') {
			if (v[i + 1] != '\\' && v[i + 1] != '"' && v[i + 1] != 'x')
				return false;
			i++;
		} else if (v[i] == '"') {
			return false;
		}
	}
	return true;
}

START_TEST(random_bytes)
{
	static const char pick[] = "a =\"\\\n\x01\x7f\x80\xbf\xc3\xb6\xe2\x80\xae\xed\xf0\x9f\xff";
	char in[400];

	srand(7);
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand() % sizeof(in);
		const char *v;

		for (size_t i = 0; i < len; i++)
			in[i] = pick[(size_t)rand() % (sizeof(pick) - 1)];
		v = qn(in, len);
		if (!well_formed(v))
			ck_abort_msg("round %d: %s", round, v);
	}
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("quote");

	tcase_add_test(tc, plain_values_stay_bare);
	tcase_add_test(tc, escapes);
	tcase_add_test(tc, forged_fields);
	tcase_add_test(tc, long_values_are_cut);
	tcase_add_test(tc, random_bytes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(log_suite());
}
