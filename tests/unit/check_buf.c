#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"

#include "check_run.h"

START_TEST(append_and_consume)
{
	struct buf b = BUF_INIT(0);

	ck_assert_int_eq(buf_append_str(&b, "hello "), 0);
	ck_assert_int_eq(buf_printf(&b, "%s %d", "world", 42), 0);
	ck_assert_str_eq(buf_cstr(&b), "hello world 42");
	buf_consume(&b, 6);
	ck_assert_str_eq(buf_cstr(&b), "world 42");
	ck_assert_uint_eq(b.len, 8);
	buf_consume(&b, 100);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(buf_cstr(&b), "");
	buf_free(&b);
}
END_TEST

START_TEST(maximum_is_hard)
{
	struct buf b = BUF_INIT(10);

	ck_assert_int_eq(buf_append(&b, "0123456789", 10), 0);
	ck_assert_int_eq(buf_append(&b, "x", 1), ROOST_ETOOBIG);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_int_eq(buf_printf(&b, "%d", 1), ROOST_ETOOBIG);
	ck_assert_int_eq(memcmp(b.data, "0123456789", 10), 0);
	ck_assert_int_eq(buf_reserve(&b, (size_t)-1), ROOST_ETOOBIG);
	buf_free(&b);
}
END_TEST

START_TEST(steal_leaves_empty)
{
	struct buf b = BUF_INIT(0);
	size_t len;
	uint8_t *p;

	p = buf_steal(&b, &len);
	ck_assert_uint_eq(len, 0);
	free(p);
	buf_append(&b, "abc", 3);
	p = buf_steal(&b, &len);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(p, "abc", 3), 0);
	ck_assert_ptr_null(b.data);
	free(p);
}
END_TEST

START_TEST(decimal)
{
	struct buf b = BUF_INIT(0), small = BUF_INIT(3);
	char want[32];
	static const uint64_t v[] = {0, 9, 10, 4294967295u, 4294967296u, UINT64_MAX};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		buf_reset(&b);
		ck_assert_int_eq(buf_append_uint(&b, v[i]), 0);
		snprintf(want, sizeof(want), "%llu", (unsigned long long)v[i]);
		ck_assert_str_eq(buf_cstr(&b), want);
	}
	ck_assert_int_eq(buf_append_uint(&small, 1234), ROOST_ETOOBIG);
	ck_assert_uint_eq(small.len, 0);
	buf_free(&b);
	buf_free(&small);
}
END_TEST

static Suite *
buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, append_and_consume);
	tcase_add_test(tc, maximum_is_hard);
	tcase_add_test(tc, steal_leaves_empty);
	tcase_add_test(tc, decimal);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(buf_suite());
}
