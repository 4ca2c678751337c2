/*
 * IMAP date formats: date-time ("17-Jul-1996 02:44:25 -0700") and date
 * ("1-Feb-1994"), parsed and formatted.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "roost/date.h"
#include "roost/error.h"

#include "imap_impl.h"

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int
parse_dmy(const char **pp, int *y_r, int *m_r, int *d_r)
{
	const char *p = *pp;
	int d = 0, y = 0, m = -1, nd = 0;

	while (*p >= '0' && *p <= '9' && nd < 2) {
		d = d * 10 + (*p++ - '0');
		nd++;
	}
	if (nd == 0 || *p++ != '-')
		return ROOST_EINVAL;
	for (int i = 0; i < 12; i++) {
		if (strncasecmp(p, months[i], 3) == 0) {
			m = i + 1;
			break;
		}
	}
	if (m < 0)
		return ROOST_EINVAL;
	p += 3;
	if (*p++ != '-')
		return ROOST_EINVAL;
	for (int i = 0; i < 4; i++) {
		if (*p < '0' || *p > '9')
			return ROOST_EINVAL;
		y = y * 10 + (*p++ - '0');
	}
	if (d < 1 || d > 31)
		return ROOST_EINVAL;
	*y_r = y;
	*m_r = m;
	*d_r = d;
	*pp = p;
	return 0;
}

int
imap_parse_date(const char *s, int *y_r, int *m_r, int *d_r)
{
	const char *p = s;

	if (parse_dmy(&p, y_r, m_r, d_r) < 0 || *p != '\0')
		return ROOST_EINVAL;
	return 0;
}

int
imap_parse_datetime(const char *s, int64_t *t_r)
{
	const char *p = s;
	int y, m, d, hh, mm, ss, zs, zh;

	if (*p == ' ')
		p++;
	if (parse_dmy(&p, &y, &m, &d) < 0 || *p++ != ' ')
		return ROOST_EINVAL;
	if (sscanf(p, "%2d:%2d:%2d", &hh, &mm, &ss) != 3 || strlen(p) != 14)
		return ROOST_EINVAL;
	if (p[2] != ':' || p[5] != ':' || p[8] != ' ' || (p[9] != '+' && p[9] != '-'))
		return ROOST_EINVAL;
	for (int i = 10; i < 14; i++)
		if (p[i] < '0' || p[i] > '9')
			return ROOST_EINVAL;
	if (hh > 23 || mm > 59 || ss > 60)
		return ROOST_EINVAL;
	zs = p[9] == '-' ? -1 : 1;
	zh = (p[10] - '0') * 10 + (p[11] - '0');
	int zm = (p[12] - '0') * 10 + (p[13] - '0');
	int64_t t =
	    date_days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + hh * 3600 + mm * 60 + ss;
	t -= zs * (zh * 3600 + zm * 60);
	*t_r = t;
	return 0;
}

void
imap_format_datetime(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	snprintf(out, 32, "%02d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday, months[tm.tm_mon],
	         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
