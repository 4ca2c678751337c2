/*
 * IMAP URL parser (RFC 5092 imessagepart, RFC 4467 URLAUTH). One pass over
 * the bytes with a cursor; every field is decoded into a fixed array of
 * struct imapurl, so a URL costs no allocation and its size is bounded
 * before anything is read (IMAPURL_MAX).
 */
#include "roost/imapurl.h"

#include <string.h>
#include <strings.h>

#include "roost/date.h"
#include "roost/error.h"
#include "roost/hex.h"

/* Character classes of RFC 5092's grammar (RFC 3986 names). */
enum {
	C_UCHAR = 1 << 0, /* unreserved / sub-delims-sh */
	C_ACHAR = 1 << 1, /* uchar / "&" / "=" */
	C_BCHAR = 1 << 2, /* achar / ":" / "@" / "/" */
};

static unsigned
cclass(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return C_UCHAR | C_ACHAR | C_BCHAR;
	switch (c) {
	case '-':
	case '.':
	case '_':
	case '~':
	case '!':
	case '$':
	case '\'':
	case '(':
	case ')':
	case '*':
	case '+':
	case ',':
		return C_UCHAR | C_ACHAR | C_BCHAR;
	case '&':
	case '=':
		return C_ACHAR | C_BCHAR;
	case ':':
	case '@':
	case '/':
		return C_BCHAR;
	default:
		return 0;
	}
}

struct cur {
	const char *p, *end;
};

/* Does the input continue with word (ASCII, any case)? Consumes it if so. */
static bool
take(struct cur *c, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(c->end - c->p) < n || strncasecmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

/* The run of bytes before the first ';' (or the end). */
static size_t
run_to_semicolon(const struct cur *c)
{
	const char *q = c->p;
	while (q < c->end && *q != ';')
		q++;
	return (size_t)(q - c->p);
}

/*
 * Percent-decode s[0..n), every byte of class cls or an escape, into
 * out[0..size) NUL-terminated. EINVAL for a byte outside the class, a bad
 * escape, or a decoded control character or NUL; ETOOBIG when it does not
 * fit; EINVAL when empty.
 */
static int
decode(const char *s, size_t n, unsigned cls, char *out, size_t size)
{
	size_t o = 0;

	if (n == 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '%') {
			if (n - i < 3)
				return ROOST_EINVAL;
			int b = hex_byte(s + i + 1);
			if (b < 0)
				return ROOST_EINVAL;
			ch = (unsigned char)b;
			if (ch < 0x20 || ch == 0x7f)
				return ROOST_EINVAL;
			i += 2;
		} else if ((cclass(ch) & cls) == 0) {
			return ROOST_EINVAL;
		}
		if (o + 1 >= size)
			return ROOST_ETOOBIG;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return 0;
}

/* A decimal of s[0..n) no larger than max; nz: 0 refused. */
static int
number(const char *s, size_t n, uint64_t max, bool nz, uint64_t *v_r)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return ROOST_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return ROOST_EINVAL;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return ROOST_EINVAL;
		v = v * 10 + d;
	}
	if (nz && v == 0)
		return ROOST_EINVAL;
	*v_r = v;
	return 0;
}

/* The digits at the cursor as a number (consumed). */
static int
take_number(struct cur *c, uint64_t max, bool nz, uint64_t *v_r)
{
	const char *q = c->p;
	while (q < c->end && *q >= '0' && *q <= '9')
		q++;
	int rc = number(c->p, (size_t)(q - c->p), max, nz, v_r);
	if (rc == 0)
		c->p = q;
	return rc;
}

/* Two digits at s, at most max. */
static int
two(const char *s, unsigned max, unsigned *v_r)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return ROOST_EINVAL;
	unsigned v = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
	if (v > max)
		return ROOST_EINVAL;
	*v_r = v;
	return 0;
}

/* RFC 3339 date-time: 2006-05-20T12:00:00[.frac](Z|+hh:mm|-hh:mm). */
static int
parse_datetime(const char *s, size_t n, int64_t *t_r)
{
	unsigned y1, y2, mo, d, h, mi, sec, oh = 0, om = 0;
	size_t i = 19;
	int sign = 0;

	if (n < 20 || two(s, 99, &y1) < 0 || two(s + 2, 99, &y2) < 0 || s[4] != '-' ||
	    two(s + 5, 12, &mo) < 0 || mo == 0 || s[7] != '-' || two(s + 8, 31, &d) < 0 || d == 0 ||
	    (s[10] != 'T' && s[10] != 't') || two(s + 11, 23, &h) < 0 || s[13] != ':' ||
	    two(s + 14, 59, &mi) < 0 || s[16] != ':' || two(s + 17, 60, &sec) < 0)
		return ROOST_EINVAL;
	if (s[i] == '.') {
		i++;
		size_t f = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f)
			return ROOST_EINVAL;
	}
	if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < n && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		if (n - i < 6 || two(s + i + 1, 23, &oh) < 0 || s[i + 3] != ':' ||
		    two(s + i + 4, 59, &om) < 0)
			return ROOST_EINVAL;
		i += 6;
	} else {
		return ROOST_EINVAL;
	}
	if (i != n)
		return ROOST_EINVAL;
	int64_t days = date_days_from_civil((int64_t)(y1 * 100 + y2), mo, d);
	*t_r = days * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec -
	       sign * ((int64_t)oh * 3600 + (int64_t)om * 60);
	return 0;
}

/* "1.2.3", "HEADER", "1.TEXT", "2.MIME" (decoded). */
static int
parse_section(const char *s, struct imapurl *u)
{
	const char *p = s;

	u->sec = IMAPURL_SEC_ALL;
	while (*p >= '0' && *p <= '9') {
		const char *q = p;
		uint64_t v;
		while (*q >= '0' && *q <= '9')
			q++;
		if (number(p, (size_t)(q - p), UINT32_MAX, true, &v) < 0)
			return ROOST_EINVAL;
		if (u->depth == IMAPURL_MAX_DEPTH)
			return ROOST_ETOOBIG;
		u->path[u->depth++] = (uint32_t)v;
		p = q;
		if (*p == '\0')
			return 0;
		if (*p != '.')
			return ROOST_EINVAL;
		p++;
	}
	if (strcasecmp(p, "HEADER") == 0)
		u->sec = IMAPURL_SEC_HEADER;
	else if (strcasecmp(p, "TEXT") == 0)
		u->sec = IMAPURL_SEC_TEXT;
	else if (strcasecmp(p, "MIME") == 0 && u->depth > 0)
		u->sec = IMAPURL_SEC_MIME;
	else
		return ROOST_EINVAL;
	return 0;
}

/* [enc-user] [";AUTH=" ("*" / enc-auth-type)] "@" host [":" port] "/" */
static int
parse_server(struct cur *c, struct imapurl *u)
{
	const char *slash = memchr(c->p, '/', (size_t)(c->end - c->p));
	if (slash == NULL)
		return ROOST_EINVAL;
	const char *at = memchr(c->p, '@', (size_t)(slash - c->p));
	int rc;

	if (at != NULL) {
		const char *semi = memchr(c->p, ';', (size_t)(at - c->p));
		const char *ue = semi != NULL ? semi : at;
		if (ue > c->p &&
		    (rc = decode(c->p, (size_t)(ue - c->p), C_ACHAR, u->user, sizeof(u->user))) < 0)
			return rc;
		if (semi != NULL) {
			struct cur a = {semi, at};
			char mech[64];
			if (!take(&a, ";AUTH="))
				return ROOST_EINVAL;
			if (!(a.end - a.p == 1 && *a.p == '*') &&
			    (rc = decode(a.p, (size_t)(a.end - a.p), C_ACHAR, mech, sizeof(mech))) <
			        0)
				return rc;
		} else if (ue == c->p) {
			return ROOST_EINVAL; /* "@host" */
		}
		c->p = at + 1;
	}
	const char *h = c->p, *he;
	if (h < slash && *h == '[') {
		he = memchr(h, ']', (size_t)(slash - h));
		if (he == NULL || he == h + 1)
			return ROOST_EINVAL;
		for (const char *q = h + 1; q < he; q++)
			if (hex_digit((unsigned char)*q) < 0 && *q != ':' && *q != '.')
				return ROOST_EINVAL;
		he++;
	} else {
		he = h;
		while (he < slash && *he != ':') {
			unsigned char ch = (unsigned char)*he;
			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
			      ch == '~'))
				return ROOST_EINVAL;
			he++;
		}
		if (he == h)
			return ROOST_EINVAL;
	}
	if ((size_t)(he - h) >= sizeof(u->host))
		return ROOST_ETOOBIG;
	for (size_t i = 0; i < (size_t)(he - h); i++) {
		char ch = h[i];
		u->host[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	u->host[he - h] = '\0';
	if (he < slash) {
		uint64_t port;
		if (*he != ':' || number(he + 1, (size_t)(slash - he - 1), 65535, true, &port) < 0)
			return ROOST_EINVAL;
		u->port = (uint16_t)port;
	}
	c->p = slash + 1;
	return 0;
}

/* access = ("submit+" enc-user) / ("user+" enc-user) / "authuser" / "anonymous" */
static int
parse_access(const char *s, size_t n, struct imapurl *u)
{
	struct cur a = {s, s + n};

	if (take(&a, "submit+")) {
		u->access = IMAPURL_ACCESS_SUBMIT;
	} else if (take(&a, "user+")) {
		u->access = IMAPURL_ACCESS_USER;
	} else if (n == 8 && strncasecmp(s, "authuser", 8) == 0) {
		u->access = IMAPURL_ACCESS_AUTHUSER;
		return 0;
	} else if (n == 9 && strncasecmp(s, "anonymous", 9) == 0) {
		u->access = IMAPURL_ACCESS_ANONYMOUS;
		return 0;
	} else {
		return ROOST_EINVAL;
	}
	return decode(a.p, (size_t)(a.end - a.p), C_ACHAR, u->access_user, sizeof(u->access_user));
}

/* [";EXPIRE=" date-time] ";URLAUTH=" access [":" mechanism ":" token], to the end. */
static int
parse_urlauth(struct cur *c, const char *url, struct imapurl *u)
{
	int rc;

	if (take(c, ";EXPIRE=")) {
		size_t n = run_to_semicolon(c);
		if ((rc = parse_datetime(c->p, n, &u->expire)) < 0)
			return rc;
		u->has_expire = true;
		c->p += n;
	}
	if (!take(c, ";URLAUTH="))
		return ROOST_EINVAL;
	const char *colon = memchr(c->p, ':', (size_t)(c->end - c->p));
	const char *ae = colon != NULL ? colon : c->end;
	if ((rc = parse_access(c->p, (size_t)(ae - c->p), u)) < 0)
		return rc;
	u->rump_len = (size_t)(ae - url);
	c->p = ae;
	if (colon == NULL)
		return 0;
	c->p++;
	const char *me = memchr(c->p, ':', (size_t)(c->end - c->p));
	if (me == NULL || me == c->p || (size_t)(me - c->p) >= sizeof(u->mechanism))
		return ROOST_EINVAL;
	for (const char *q = c->p; q < me; q++) {
		unsigned char ch = (unsigned char)*q;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
			return ROOST_EINVAL;
	}
	memcpy(u->mechanism, c->p, (size_t)(me - c->p));
	u->mechanism[me - c->p] = '\0';
	size_t tn = (size_t)(c->end - me - 1);
	if (tn < 32 || tn >= sizeof(u->token))
		return ROOST_EINVAL;
	for (size_t i = 0; i < tn; i++)
		if (hex_digit((unsigned char)me[1 + i]) < 0)
			return ROOST_EINVAL;
	memcpy(u->token, me + 1, tn);
	u->token[tn] = '\0';
	c->p = c->end;
	return 0;
}

int
imapurl_parse(const char *url, size_t len, struct imapurl *u)
{
	struct cur c = {url, url + len};
	uint64_t v;
	int rc;

	memset(u, 0, sizeof(*u));
	if (len > IMAPURL_MAX)
		return ROOST_ETOOBIG;
	if (len == 0)
		return ROOST_EINVAL;
	if (take(&c, "imap://")) {
		u->absolute = true;
		if ((rc = parse_server(&c, u)) < 0)
			return rc;
	} else if (take(&c, "/")) {
		if (c.p < c.end && *c.p == '/')
			return ROOST_EINVAL; /* "//host" without the scheme */
	} else if (*c.p != ';') {
		return ROOST_EINVAL;
	}

	/* mailbox [";UIDVALIDITY=" n] "/" ";UID=" n, or just ";UID=" n */
	size_t n = run_to_semicolon(&c);
	if (n > 0) {
		const char *mb = c.p;
		size_t mn = n;
		c.p += n;
		if (take(&c, ";UIDVALIDITY=")) {
			if ((rc = take_number(&c, UINT32_MAX, true, &v)) < 0)
				return rc;
			u->uidvalidity = (uint32_t)v;
			if (!take(&c, "/"))
				return ROOST_EINVAL;
		} else {
			if (mb[mn - 1] != '/')
				return ROOST_EINVAL;
			mn--;
		}
		if ((rc = decode(mb, mn, C_BCHAR, u->mailbox, sizeof(u->mailbox))) < 0)
			return rc;
	} else if (u->absolute) {
		return ROOST_EINVAL;
	}
	if (!take(&c, ";UID=") || (rc = take_number(&c, UINT32_MAX, true, &v)) < 0)
		return ROOST_EINVAL;
	u->uid = (uint32_t)v;

	if (take(&c, "/;SECTION=")) {
		char sec[512];
		n = run_to_semicolon(&c);
		size_t sn = n;
		/* "/;PARTIAL=" follows: its '/' ends the section */
		if (c.p + n < c.end && n > 0 && c.p[n - 1] == '/')
			sn--;
		if ((rc = decode(c.p, sn, C_BCHAR, sec, sizeof(sec))) < 0 ||
		    (rc = parse_section(sec, u)) < 0)
			return rc;
		u->has_section = true;
		c.p += sn;
	}
	if (take(&c, "/;PARTIAL=")) {
		if ((rc = take_number(&c, UINT32_MAX, false, &u->p_off)) < 0)
			return rc;
		if (take(&c, ".") && (rc = take_number(&c, UINT32_MAX, true, &u->p_len)) < 0)
			return rc;
		u->partial = true;
	}
	if (c.p < c.end && (rc = parse_urlauth(&c, url, u)) < 0)
		return rc;
	return c.p == c.end ? 0 : ROOST_EINVAL;
}
