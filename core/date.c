#include "roost/date.h"

/*
 * Howard Hinnant's days_from_civil: the year is shifted to begin in March,
 * so the leap day is the last day of its year, and counted in 400-year
 * eras of 146097 days. 719468 is the day number of 1970-01-01 in that
 * count.
 */
int64_t
date_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}
