#include <check.h>
#include <stdint.h>

#include "roost/uid.h"

#include "check_run.h"

START_TEST(compare)
{
	uint32_t a = 1, b = 2, big = UINT32_MAX;

	ck_assert_int_eq(uid_cmp(&a, &b), -1);
	ck_assert_int_eq(uid_cmp(&b, &a), 1);
	ck_assert_int_eq(uid_cmp(&a, &a), 0);
	/* no subtraction: the extremes do not wrap */
	ck_assert_int_eq(uid_cmp(&a, &big), -1);
	ck_assert_int_eq(uid_cmp(&big, &a), 1);
}
END_TEST

START_TEST(sort_and_find)
{
	uint32_t v[200];
	size_t n = sizeof(v) / sizeof(v[0]);

	/* every other odd number, in a scrambled order, and the extremes */
	for (size_t i = 0; i < n; i++)
		v[i] = (uint32_t)((i * 37) % n) * 2 + 1;
	v[0] = UINT32_MAX;
	v[1] = 0;
	uid_sort(v, n);
	for (size_t i = 1; i < n; i++)
		ck_assert_uint_lt(v[i - 1], v[i]);
	ck_assert(uid_find(v, n, 0));
	ck_assert(uid_find(v, n, UINT32_MAX));
	for (size_t i = 0; i < n; i++)
		ck_assert(uid_find(v, n, v[i]));
	ck_assert(!uid_find(v, n, 2));
	ck_assert(!uid_find(v, n, UINT32_MAX - 1));
	ck_assert(!uid_find(v, 0, v[0]));
	ck_assert(!uid_find(NULL, 0, 1));
	uid_sort(NULL, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("uid");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, compare);
	tcase_add_test(tc, sort_and_find);
	suite_add_tcase(s, tc);
	return check_run(s);
}
