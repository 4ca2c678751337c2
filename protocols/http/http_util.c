/*
 * Small pure helpers of the HTTP service: dates, reason phrases, URL
 * decoding, query parameters and gzip.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "roost/error.h"
#include "roost/hex.h"
#include "roost/http.h"

void
http_date(int64_t t, char out[HTTP_DATE_LEN + 1])
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	/* By hand rather than strftime: %a and %b follow the locale. */
	snprintf(out, HTTP_DATE_LEN + 1, "%s, %02d %s %04d %02d:%02d:%02d GMT",
	         days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	         (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *
http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	}
	return "";
}

int
http_url_decode(const char *s, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)s[i];

		if (c == '%') {
			int b;

			if (i + 2 >= len || (b = hex_byte(s + i + 1)) < 0)
				return ROOST_EINVAL;
			c = (uint8_t)b;
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (c == '\0')
			return ROOST_EINVAL;
		if (buf_append_byte(out, c) != 0)
			return ROOST_ETOOBIG;
	}
	return 0;
}

int
http_query_param(const char *query, const char *name, struct buf *out)
{
	size_t nl = strlen(name);
	const char *p = query;

	while (p != NULL && *p != '\0') {
		const char *amp = strchr(p, '&');
		size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);

		if (plen >= nl && strncmp(p, name, nl) == 0 && (plen == nl || p[nl] == '=')) {
			if (plen == nl)
				return 0;
			return http_url_decode(p + nl + 1, plen - nl - 1, out);
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
	return ROOST_ENOTFOUND;
}

bool
http_accepts_gzip(const char *ae)
{
	const char *p = ae;

	while (p != NULL && *p != '\0') {
		const char *e, *semi;
		size_t n;

		p += strspn(p, " \t,");
		e = p + strcspn(p, ",");
		semi = memchr(p, ';', (size_t)(e - p));
		n = (size_t)((semi != NULL ? semi : e) - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) || (n == 1 && p[0] == '*')) {
			/* "gzip;q=0" refuses it; any other q accepts. */
			if (semi != NULL) {
				const char *q = semi + 1;

				q += strspn(q, " \t");
				if ((q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
					double v = 0;

					if (sscanf(q + 2, "%lf", &v) == 1 && v <= 0)
						return false;
				}
			}
			return true;
		}
		p = e;
	}
	return false;
}

int
http_gzip(const uint8_t *in, size_t len, struct buf *out)
{
	z_stream z;
	int rc;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return ROOST_EIO;
	if (buf_reserve(out, deflateBound(&z, len)) != 0) {
		deflateEnd(&z);
		return ROOST_ETOOBIG;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = out->data + out->len;
	z.avail_out = (uInt)(out->cap - out->len - 1);
	rc = deflate(&z, Z_FINISH);
	if (rc == Z_STREAM_END) {
		out->len += z.total_out;
		out->data[out->len] = '\0';
	}
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : ROOST_EIO;
}
