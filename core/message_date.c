/*
 * RFC 5322 3.3 dates with the obsolete forms of 4.3: optional day name,
 * two- and three-digit years, missing seconds, alphabetic zones, comments
 * and folding anywhere between tokens.
 */
#include <string.h>
#include <strings.h>

#include "roost/date.h"
#include "roost/error.h"
#include "roost/message.h"

#include "message_impl.h"

struct dlex {
	const uint8_t *p, *end;
};

static void
dskip(struct dlex *d)
{
	struct lex lx = {d->p, d->end};

	message_lex_skip_cfws(&lx);
	d->p = lx.p;
}

/* Up to max_digits digits; -1 if none. */
static long
dnum(struct dlex *d, int max_digits, int *ndigits_r)
{
	long v = 0;
	int n = 0;

	while (d->p < d->end && *d->p >= '0' && *d->p <= '9' && n < max_digits) {
		v = v * 10 + (*d->p - '0');
		d->p++;
		n++;
	}
	if (ndigits_r != NULL)
		*ndigits_r = n;
	return n == 0 ? -1 : v;
}

static size_t
dword(struct dlex *d, char *w, size_t size)
{
	size_t n = 0;

	while (d->p < d->end &&
	       ((*d->p >= 'a' && *d->p <= 'z') || (*d->p >= 'A' && *d->p <= 'Z'))) {
		if (n + 1 < size)
			w[n++] = (char)*d->p;
		d->p++;
	}
	w[n] = '\0';
	return n;
}

static int
zone_offset(const char *z, long *min_r)
{
	static const struct {
		const char *name;
		int min;
	} zones[] = {
	    {"UT", 0},     {"UTC", 0},    {"GMT", 0},    {"Z", 0},
	    {"EST", -300}, {"EDT", -240}, {"CST", -360}, {"CDT", -300},
	    {"MST", -420}, {"MDT", -360}, {"PST", -480}, {"PDT", -420},
	};
	size_t i;

	for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (strcasecmp(z, zones[i].name) == 0) {
			*min_r = zones[i].min;
			return 0;
		}
	}
	/* military zones are too ambiguous to trust: RFC 5322 4.3 says 0 */
	*min_r = 0;
	return 0;
}

int
message_parse_date_zone(const char *text, size_t len, int64_t *time_r, int *zone_min_r)
{
	static const char *const months[12] = {
	    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
	};
	struct dlex d = {(const uint8_t *)text, (const uint8_t *)text + len};
	char w[16];
	long day, year, hour, min, sec = 0, zone = 0;
	unsigned mon = 0, i;
	int nd;

	dskip(&d);
	/* optional day name */
	if (d.p < d.end && ((*d.p >= 'a' && *d.p <= 'z') || (*d.p >= 'A' && *d.p <= 'Z'))) {
		dword(&d, w, sizeof(w));
		dskip(&d);
		if (d.p < d.end && *d.p == ',')
			d.p++;
		dskip(&d);
	}
	if ((day = dnum(&d, 2, NULL)) < 1 || day > 31)
		return ROOST_EINVAL;
	dskip(&d);
	if (d.p < d.end && *d.p == '-')
		d.p++;
	if (dword(&d, w, sizeof(w)) < 3)
		return ROOST_EINVAL;
	for (i = 0; i < 12; i++)
		if (strncasecmp(w, months[i], 3) == 0)
			mon = i + 1;
	if (mon == 0)
		return ROOST_EINVAL;
	dskip(&d);
	if (d.p < d.end && *d.p == '-')
		d.p++;
	if ((year = dnum(&d, 4, &nd)) < 0)
		return ROOST_EINVAL;
	if (nd == 2)
		year += year < 50 ? 2000 : 1900;
	else if (nd == 3)
		year += 1900;
	dskip(&d);
	if ((hour = dnum(&d, 2, NULL)) < 0 || hour > 23)
		return ROOST_EINVAL;
	dskip(&d);
	if (d.p >= d.end || *d.p != ':')
		return ROOST_EINVAL;
	d.p++;
	dskip(&d);
	if ((min = dnum(&d, 2, NULL)) < 0 || min > 59)
		return ROOST_EINVAL;
	dskip(&d);
	if (d.p < d.end && *d.p == ':') {
		d.p++;
		dskip(&d);
		if ((sec = dnum(&d, 2, NULL)) < 0 || sec > 60)
			return ROOST_EINVAL;
		dskip(&d);
	}
	if (d.p < d.end && (*d.p == '+' || *d.p == '-')) {
		int sign = *d.p == '-' ? -1 : 1;
		long z;

		d.p++;
		if ((z = dnum(&d, 4, &nd)) < 0 || nd != 4 || z % 100 > 59)
			return ROOST_EINVAL;
		zone = sign * ((z / 100) * 60 + z % 100);
	} else if (d.p < d.end && dword(&d, w, sizeof(w)) > 0) {
		zone_offset(w, &zone);
	}
	if (day > 31 || (mon == 2 && day > 29))
		return ROOST_EINVAL;
	*time_r = date_days_from_civil(year, mon, (unsigned)day) * 86400 + hour * 3600 + min * 60 +
	          sec - zone * 60;
	if (zone_min_r != NULL)
		*zone_min_r = (int)zone;
	return 0;
}

int
message_parse_date(const char *text, size_t len, int64_t *time_r)
{
	return message_parse_date_zone(text, len, time_r, NULL);
}
