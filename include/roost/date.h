#ifndef ROOST_DATE_H
#define ROOST_DATE_H

#include <stdint.h>

/*
 * Calendar arithmetic shared by the date parsers (RFC 5322 headers, IMAP
 * date-time and SEARCH dates). Pure functions, thread-safe, no time zone or
 * locale involved.
 */

/*
 * Days from 1970-01-01 to the proleptic Gregorian date y-m-d (month 1 to
 * 12, day 1 to 31, not checked against the month's length: day 31 of a
 * 30-day month is the first of the next). Negative before 1970.
 */
int64_t date_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
