/* MTA-STS (RFC 8461) records and policy files parsed, MX names matched. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/mta_sts.h"

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

int
mta_sts_parse_txt(const char *txt, size_t len, char id_r[MTA_STS_ID_LEN])
{
	const char *p = txt, *end = txt + len;
	bool first = true, have_id = false;

	/* sts-text-record = sts-version 1*(*WSP ";" *WSP sts-field) [";"] */
	while (p < end) {
		const char *f = p, *eq, *fe;
		size_t kl, vl;

		while (f < end && is_blank(*f))
			f++;
		if (f >= end)
			break;
		fe = memchr(f, ';', (size_t)(end - f));
		if (fe == NULL)
			fe = end;
		p = fe < end ? fe + 1 : end;
		while (fe > f && is_blank(fe[-1]))
			fe--;
		if (fe == f) {
			if (first)
				return ROOST_EINVAL;
			continue;
		}
		eq = memchr(f, '=', (size_t)(fe - f));
		if (eq == NULL)
			return ROOST_EINVAL;
		kl = (size_t)(eq - f);
		vl = (size_t)(fe - eq - 1);
		if (first) {
			if (kl != 1 || f[0] != 'v' || vl != 5 || memcmp(eq + 1, "STSv1", 5) != 0)
				return ROOST_EINVAL;
			first = false;
			continue;
		}
		if (kl == 2 && memcmp(f, "id", 2) == 0) {
			if (vl == 0 || vl >= MTA_STS_ID_LEN || have_id)
				return ROOST_EINVAL;
			for (size_t i = 0; i < vl; i++) {
				if (!isalnum((unsigned char)eq[1 + i]))
					return ROOST_EINVAL;
			}
			memcpy(id_r, eq + 1, vl);
			id_r[vl] = '\0';
			have_id = true;
		}
	}
	return !first && have_id ? 0 : ROOST_EINVAL;
}

/* A pattern of an mx line: a host name, or "*." and one; letters, digits,
 * hyphens and dots, no empty label. */
static bool
mx_pattern_ok(const char *v, size_t n)
{
	size_t label = 0;

	if (n >= 2 && v[0] == '*' && v[1] == '.') {
		v += 2;
		n -= 2;
	}
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)v[i]) || v[i] == '-' || v[i] == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

int
mta_sts_parse_policy(const char *text, size_t len, struct mta_sts_policy *p)
{
	const char *at = text, *end = text + len;
	bool version = false, mode = false, age = false;

	memset(p, 0, sizeof(*p));
	while (at < end) {
		const char *nl = memchr(at, '\n', (size_t)(end - at));
		const char *le = nl != NULL ? nl : end, *colon, *v, *ve;
		size_t kl, vl;

		if (le > at && le[-1] == '\r')
			le--;
		colon = le > at ? memchr(at, ':', (size_t)(le - at)) : NULL;
		if (colon == NULL) {
			/* A line without a key: only blank lines are fine. */
			for (const char *c = at; c < le; c++) {
				if (!is_blank(*c))
					return ROOST_EINVAL;
			}
			at = nl != NULL ? nl + 1 : end;
			continue;
		}
		kl = (size_t)(colon - at);
		for (v = colon + 1; v < le && is_blank(*v); v++)
			;
		for (ve = le; ve > v && is_blank(ve[-1]); ve--)
			;
		vl = (size_t)(ve - v);
		if (kl == 7 && memcmp(at, "version", 7) == 0) {
			if (version || vl != 5 || memcmp(v, "STSv1", 5) != 0)
				return ROOST_EINVAL;
			version = true;
		} else if (kl == 4 && memcmp(at, "mode", 4) == 0) {
			if (mode)
				return ROOST_EINVAL;
			if (vl == 7 && memcmp(v, "enforce", 7) == 0)
				p->mode = MTA_STS_ENFORCE;
			else if (vl == 7 && memcmp(v, "testing", 7) == 0)
				p->mode = MTA_STS_TESTING;
			else if (vl == 4 && memcmp(v, "none", 4) == 0)
				p->mode = MTA_STS_NONE;
			else
				return ROOST_EINVAL;
			mode = true;
		} else if (kl == 7 && memcmp(at, "max_age", 7) == 0) {
			unsigned long long a = 0;

			if (age || vl == 0 || vl > 10)
				return ROOST_EINVAL;
			for (size_t i = 0; i < vl; i++) {
				if (!isdigit((unsigned char)v[i]))
					return ROOST_EINVAL;
				a = a * 10 + (unsigned)(v[i] - '0');
			}
			p->max_age = a > MTA_STS_MAX_AGE ? MTA_STS_MAX_AGE : (unsigned)a;
			age = true;
		} else if (kl == 2 && memcmp(at, "mx", 2) == 0) {
			if (!mx_pattern_ok(v, vl))
				return ROOST_EINVAL;
			if (p->n_mx < MTA_STS_MAX_MX) {
				memcpy(p->mx[p->n_mx], v, vl);
				p->mx[p->n_mx][vl] = '\0';
				p->n_mx++;
			}
		}
		at = nl != NULL ? nl + 1 : end;
	}
	if (!version || !mode || !age)
		return ROOST_EINVAL;
	if (p->mode != MTA_STS_NONE && p->n_mx == 0)
		return ROOST_EINVAL;
	return 0;
}

bool
mta_sts_mx_match(const struct mta_sts_policy *p, const char *host)
{
	size_t hl = strlen(host);

	if (hl > 0 && host[hl - 1] == '.')
		hl--;
	for (size_t i = 0; i < p->n_mx; i++) {
		const char *pat = p->mx[i];
		size_t pl = strlen(pat);

		if (pat[0] == '*' && pat[1] == '.') {
			const char *dot = memchr(host, '.', hl);

			/* "*.example.org": one label, then ".example.org". */
			if (dot != NULL && dot > host && (size_t)(host + hl - dot) == pl - 1 &&
			    strncasecmp(dot, pat + 1, pl - 1) == 0)
				return true;
		} else if (pl == hl && strncasecmp(host, pat, hl) == 0) {
			return true;
		}
	}
	return false;
}

const char *
mta_sts_mode_name(enum mta_sts_mode mode)
{
	return mode == MTA_STS_ENFORCE ? "enforce" : mode == MTA_STS_TESTING ? "testing" : "none";
}
