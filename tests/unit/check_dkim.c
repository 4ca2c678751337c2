#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/dkim.h"

#include "check_run.h"

static void
header_is(const char *field, const char *want)
{
	struct buf b = BUF_INIT(0);

	dkim_canon_header(field, strlen(field), &b);
	ck_assert_str_eq(buf_cstr(&b), want);
	buf_free(&b);
}

static void
body_is(const char *body, const char *want)
{
	struct buf b = BUF_INIT(0);

	dkim_canon_body((const uint8_t *)body, strlen(body), &b);
	ck_assert_str_eq(buf_cstr(&b), want);
	buf_free(&b);
}

/* RFC 6376 3.4.5's example, relaxed/relaxed. */
START_TEST(rfc6376_example)
{
	header_is("A: X", "a:X");
	header_is("B : Y\t\r\n\tZ  ", "b:Y Z");
	body_is(" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
}
END_TEST

START_TEST(relaxed_edges)
{
	header_is("Subject:", "subject:");
	header_is("SUBJECT:   \t  ", "subject:");
	header_is("X-Long: a\r\n b\r\n\tc", "x-long:a b c");
	body_is("", "");
	body_is("\r\n\r\n", "");
	body_is("no final line end", "no final line end\r\n");
	body_is("a  \t b\r\n\r\nc\r\n", "a b\r\n\r\nc\r\n");
	/* Bare LF lines are lines too. */
	body_is("x\ny\n", "x\r\ny\r\n");
}
END_TEST

static Suite *
dkim_suite(void)
{
	Suite *s = suite_create("dkim");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, rfc6376_example);
	tcase_add_test(tc, relaxed_edges);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(dkim_suite());
}
