/*
 * SMTP command-line parsing: the verb, reverse/forward paths (RFC 5321
 * 4.1.2) and the MAIL/RCPT parameters of SIZE (RFC 1870), 8BITMIME (RFC
 * 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461) and AUTH (RFC 4954).
 * Everything is bounded by the fixed-size outputs; nothing allocates.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/smtp.h"

int
smtp_parse_verb(const char *line, char *verb, size_t verblen, const char **args_r)
{
	size_t n = 0;

	while (isalpha((unsigned char)line[n])) {
		if (n + 1 >= verblen)
			return ROOST_EINVAL;
		verb[n] = (char)toupper((unsigned char)line[n]);
		n++;
	}
	verb[n] = '\0';
	if (n == 0)
		return ROOST_EINVAL;
	if (line[n] == '\0') {
		*args_r = line + n;
		return 0;
	}
	if (line[n] != ' ')
		return ROOST_EINVAL;
	*args_r = line + n + 1;
	return 0;
}

int
smtp_parse_u64(const char *p, size_t len, uint64_t *r)
{
	uint64_t n = 0;

	if (len == 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(p[i] - '0');

		if (!isdigit((unsigned char)p[i]) || n > (UINT64_MAX - d) / 10)
			return ROOST_EINVAL;
		n = n * 10 + d;
	}
	*r = n;
	return 0;
}

bool
smtp_addr_is_utf8(const char *addr)
{
	for (const unsigned char *p = (const unsigned char *)addr; *p != '\0'; p++) {
		if (*p >= 0x80)
			return true;
	}
	return false;
}

bool
smtp_xtext_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			if (i + 2 >= len)
				return false;
			if (!isxdigit((unsigned char)s[i + 1]) ||
			    !isxdigit((unsigned char)s[i + 2]))
				return false;
			if (islower((unsigned char)s[i + 1]) || islower((unsigned char)s[i + 2]))
				return false;
			i += 2;
			continue;
		}
		if (c < 33 || c > 126 || c == '=')
			return false;
	}
	return true;
}

static bool
is_atext(unsigned char c)
{
	if (isalnum(c) || c >= 0x80)
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

/* Local-part: dot-string or quoted-string. Returns the length or 0. */
static size_t
scan_local(const char *p)
{
	size_t i = 0;

	if (p[0] == '"') {
		i = 1;
		for (;;) {
			unsigned char c = (unsigned char)p[i];

			if (c == '"')
				return i + 1;
			if (c == '\\') {
				unsigned char e = (unsigned char)p[i + 1];

				if (e < 32 || e == 127)
					return 0;
				i += 2;
				continue;
			}
			if (c < 32 || c == 127)
				return 0;
			i++;
		}
	}
	for (;;) {
		size_t start = i;

		while (is_atext((unsigned char)p[i]))
			i++;
		if (i == start)
			return 0; /* empty atom */
		if (p[i] != '.')
			return i;
		i++;
	}
}

/* Domain (letters, digits, hyphens, U-labels) or [address literal]. */
static size_t
scan_domain(const char *p)
{
	size_t i = 0;

	if (p[0] == '[') {
		i = 1;
		while (p[i] != ']') {
			unsigned char c = (unsigned char)p[i];

			if (c < 33 || c > 126 || c == '[' || c == '\\')
				return 0;
			i++;
		}
		return i > 1 ? i + 1 : 0;
	}
	for (;;) {
		size_t start = i;

		while (isalnum((unsigned char)p[i]) || p[i] == '-' || (unsigned char)p[i] >= 0x80)
			i++;
		if (i == start || p[start] == '-' || p[i - 1] == '-')
			return 0;
		if (p[i] != '.')
			return i;
		i++;
	}
}

int
smtp_parse_path(const char *args, bool allow_null, char *addr, const char **params_r)
{
	const char *p = args;
	bool bracket;
	size_t lp, dl, n;

	while (*p == ' ')
		p++;
	bracket = *p == '<';
	if (bracket)
		p++;
	if (bracket && *p == '>') {
		if (!allow_null)
			return ROOST_EINVAL;
		addr[0] = '\0';
		p++;
		goto params;
	}
	if (bracket && *p == '@') {
		/* A source route, "@a,@b:"; obsolete, ignored (RFC 5321 C). */
		const char *colon = strchr(p, ':');
		const char *close = strchr(p, '>');

		if (colon == NULL || (close != NULL && close < colon))
			return ROOST_EINVAL;
		p = colon + 1;
	}
	lp = scan_local(p);
	if (lp == 0 || lp > SMTP_MAX_LOCAL)
		return ROOST_EINVAL;
	if (p[lp] != '@') {
		/* RCPT TO:<Postmaster> needs no domain (RFC 5321 4.1.1.3). */
		if (lp == 10 && strncasecmp(p, "postmaster", 10) == 0 &&
		    (bracket ? p[lp] == '>' : (p[lp] == ' ' || p[lp] == '\0'))) {
			strcpy(addr, "postmaster");
			p += lp + (bracket ? 1 : 0);
			goto params;
		}
		return ROOST_EINVAL;
	}
	dl = scan_domain(p + lp + 1);
	if (dl == 0 || dl > SMTP_MAX_DOMAIN)
		return ROOST_EINVAL;
	n = lp + 1 + dl;
	if (n > SMTP_MAX_PATH)
		return ROOST_EINVAL;
	if (bracket) {
		if (p[n] != '>')
			return ROOST_EINVAL;
	} else if (p[n] != ' ' && p[n] != '\0') {
		return ROOST_EINVAL;
	}
	memcpy(addr, p, n);
	addr[n] = '\0';
	p += n + (bracket ? 1 : 0);
params:
	if (*p != ' ' && *p != '\0')
		return ROOST_EINVAL;
	while (*p == ' ')
		p++;
	*params_r = p;
	return 0;
}

/* One "KEY[=VALUE]" token at p: key copied upper-cased, value as a span. */
struct param {
	const char *start;
	char key[32];
	const char *val;
	size_t val_len;
	bool has_val;
};

static const char *
next_param(const char *p, struct param *pr, int *err_r)
{
	size_t k = 0;

	*err_r = 0;
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return NULL;
	pr->start = p;
	while (*p != '\0' && *p != ' ' && *p != '=') {
		if (k + 1 >= sizeof(pr->key) || !(isalnum((unsigned char)*p) || *p == '-')) {
			*err_r = ROOST_ENOTSUP;
			k = 0;
			break;
		}
		pr->key[k++] = (char)toupper((unsigned char)*p);
		p++;
	}
	pr->key[k] = '\0';
	if (*err_r != 0 || k == 0) {
		*err_r = ROOST_ENOTSUP;
		return pr->start;
	}
	pr->has_val = *p == '=';
	if (pr->has_val)
		p++;
	pr->val = p;
	while (*p != '\0' && *p != ' ')
		p++;
	pr->val_len = (size_t)(p - pr->val);
	return p;
}

static bool
val_is(const struct param *pr, const char *s)
{
	return pr->val_len == strlen(s) && strncasecmp(pr->val, s, pr->val_len) == 0;
}

int
smtp_parse_mail_params(const char *params, uint64_t max_size, struct smtp_mail_params *mp,
                       const char **bad_r)
{
	struct param pr;
	const char *p = params;
	unsigned seen = 0;
	int err;

	memset(mp, 0, sizeof(*mp));
	*bad_r = NULL;
	while ((p = next_param(p, &pr, &err)) != NULL) {
		unsigned bit;

		if (err != 0) {
			*bad_r = pr.start;
			return err;
		}
		*bad_r = pr.start;
		if (strcmp(pr.key, "SIZE") == 0) {
			uint64_t n;

			bit = 1;
			if (!pr.has_val || pr.val_len > 20 ||
			    smtp_parse_u64(pr.val, pr.val_len, &n) != 0)
				return ROOST_EINVAL;
			if (seen & bit)
				return ROOST_EINVAL;
			mp->size = n;
			if (max_size != 0 && n > max_size)
				return ROOST_ETOOBIG;
		} else if (strcmp(pr.key, "BODY") == 0) {
			bit = 2;
			if (val_is(&pr, "8BITMIME"))
				mp->body_8bit = true;
			else if (val_is(&pr, "BINARYMIME"))
				mp->binarymime = true;
			else if (!val_is(&pr, "7BIT"))
				return ROOST_EINVAL;
		} else if (strcmp(pr.key, "SMTPUTF8") == 0) {
			bit = 4;
			if (pr.has_val)
				return ROOST_EINVAL;
			mp->smtputf8 = true;
		} else if (strcmp(pr.key, "REQUIRETLS") == 0) {
			bit = 64;
			if (pr.has_val)
				return ROOST_EINVAL;
			mp->requiretls = true;
		} else if (strcmp(pr.key, "RET") == 0) {
			bit = 8;
			if (val_is(&pr, "FULL"))
				strcpy(mp->ret, "FULL");
			else if (val_is(&pr, "HDRS"))
				strcpy(mp->ret, "HDRS");
			else
				return ROOST_EINVAL;
		} else if (strcmp(pr.key, "ENVID") == 0) {
			bit = 16;
			if (!pr.has_val || pr.val_len == 0 || pr.val_len >= sizeof(mp->envid) ||
			    !smtp_xtext_valid(pr.val, pr.val_len))
				return ROOST_EINVAL;
			memcpy(mp->envid, pr.val, pr.val_len);
			mp->envid[pr.val_len] = '\0';
		} else if (strcmp(pr.key, "AUTH") == 0) {
			/* RFC 4954 5: accepted, and ignored as we relay nothing. */
			bit = 32;
			if (!pr.has_val || pr.val_len == 0 || !smtp_xtext_valid(pr.val, pr.val_len))
				return ROOST_EINVAL;
		} else {
			return ROOST_ENOTSUP;
		}
		if (seen & bit)
			return ROOST_EINVAL;
		seen |= bit;
	}
	*bad_r = NULL;
	return 0;
}

static bool
notify_valid(const struct param *pr)
{
	const char *p = pr->val, *end = pr->val + pr->val_len;
	unsigned seen = 0;

	if (val_is(pr, "NEVER"))
		return true;
	if (pr->val_len == 0)
		return false;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t n = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
		unsigned bit;

		if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
			bit = 1;
		else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0)
			bit = 2;
		else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0)
			bit = 4;
		else
			return false;
		if (seen & bit)
			return false;
		seen |= bit;
		if (comma == NULL)
			break;
		p = comma + 1;
		if (p == end)
			return false;
	}
	return true;
}

int
smtp_parse_rcpt_params(const char *params, struct smtp_rcpt_params *rp, const char **bad_r)
{
	struct param pr;
	const char *p = params;
	int err;

	memset(rp, 0, sizeof(*rp));
	*bad_r = NULL;
	while ((p = next_param(p, &pr, &err)) != NULL) {
		*bad_r = pr.start;
		if (err != 0)
			return err;
		if (strcmp(pr.key, "NOTIFY") == 0) {
			if (rp->notify[0] != '\0' || !pr.has_val ||
			    pr.val_len >= sizeof(rp->notify) || !notify_valid(&pr))
				return ROOST_EINVAL;
			for (size_t i = 0; i < pr.val_len; i++)
				rp->notify[i] = (char)toupper((unsigned char)pr.val[i]);
			rp->notify[pr.val_len] = '\0';
		} else if (strcmp(pr.key, "ORCPT") == 0) {
			const char *semi = memchr(pr.val, ';', pr.val_len);

			if (rp->orcpt[0] != '\0' || !pr.has_val ||
			    pr.val_len >= sizeof(rp->orcpt) || semi == NULL || semi == pr.val ||
			    semi + 1 == pr.val + pr.val_len ||
			    !smtp_xtext_valid(semi + 1, (size_t)(pr.val + pr.val_len - semi - 1)))
				return ROOST_EINVAL;
			for (const char *q = pr.val; q < semi; q++) {
				if (!(isalnum((unsigned char)*q) || *q == '-'))
					return ROOST_EINVAL;
			}
			memcpy(rp->orcpt, pr.val, pr.val_len);
			rp->orcpt[pr.val_len] = '\0';
		} else {
			return ROOST_ENOTSUP;
		}
	}
	*bad_r = NULL;
	return 0;
}
