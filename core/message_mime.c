/*
 * RFC 2045 structured fields: the lexer (CFWS, tokens, quoted strings),
 * Content-Type and Content-Disposition with parameters, and RFC 2231
 * parameter continuations.
 *
 * Unquoted parameter values are read leniently (up to ';' or white space)
 * because real mail carries unquoted boundaries such as ----=_Part_1 whose
 * '=' is a tspecial; a strict reading would cut them short.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/message.h"
#include "roost/xalloc.h"

#include "message_impl.h"

#define MAX_COMMENT_DEPTH 64

void
lex_skip_cfws(struct lex *lx)
{
	while (lx->p < lx->end) {
		uint8_t c = *lx->p;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			lx->p++;
		} else if (c == '(') {
			unsigned depth = 0;

			while (lx->p < lx->end) {
				c = *lx->p++;
				if (c == '\\' && lx->p < lx->end) {
					lx->p++;
				} else if (c == '(') {
					depth++;
				} else if (c == ')') {
					if (--depth == 0)
						break;
				}
			}
		} else {
			break;
		}
	}
}

bool
lex_quoted(struct lex *lx, struct buf *out)
{
	const uint8_t *run;

	lx->p++;	/* the opening quote */
	run = lx->p;
	while (lx->p < lx->end && *lx->p != '"') {
		if (*lx->p == '\\' && lx->p + 1 < lx->end) {
			buf_append(out, run, (size_t)(lx->p - run));
			lx->p++;
			run = lx->p;
			lx->p++;
			continue;
		}
		if (*lx->p == '\r' || *lx->p == '\n') {
			/* folding inside a quoted string: unfold */
			buf_append(out, run, (size_t)(lx->p - run));
			lx->p++;
			run = lx->p;
			continue;
		}
		lx->p++;
	}
	buf_append(out, run, (size_t)(lx->p - run));
	if (lx->p >= lx->end)
		return false;
	lx->p++;	/* the closing quote */
	return true;
}

static bool
is_tspecial(uint8_t c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL && c != '\0';
}

static size_t
lex_token(struct lex *lx, const uint8_t **tok_r)
{
	const uint8_t *s = lx->p;

	while (lx->p < lx->end && *lx->p > ' ' && *lx->p != 0x7f && !is_tspecial(*lx->p))
		lx->p++;
	*tok_r = s;
	return (size_t)(lx->p - s);
}

bool
mime_token_eq(const uint8_t *t, size_t tlen, const char *s)
{
	return t != NULL && strlen(s) == tlen && strncasecmp((const char *)t, s, tlen) == 0;
}

void
mime_params_free(struct mime_params *ps)
{
	size_t i;

	for (i = 0; i < ps->n; i++) {
		free(ps->v[i].name);
		free(ps->v[i].value);
	}
	free(ps->v);
	memset(ps, 0, sizeof(*ps));
}

const struct mime_param *
mime_params_get(const struct mime_params *ps, const char *name)
{
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (strcasecmp(ps->v[i].name, name) == 0)
			return &ps->v[i];
	return NULL;
}

static void
params_add(struct mime_params *ps, char *name, char *value, size_t value_len)
{
	if (ps->n == ps->cap) {
		ps->cap = ps->cap == 0 ? 4 : ps->cap * 2;
		ps->v = xreallocarray(ps->v, ps->cap, sizeof(*ps->v));
	}
	ps->v[ps->n].name = name;
	ps->v[ps->n].value = value;
	ps->v[ps->n].value_len = value_len;
	ps->n++;
}

/* A raw parameter as read, before RFC 2231 merging. */
struct raw_param {
	const uint8_t *name;
	size_t name_len;
	size_t base_len;	/* name up to the '*' of a section, if any */
	long section;		/* -1: not a continuation */
	bool extended;		/* value is charset'lang'%XX */
	char *value;
	size_t value_len;
};

static void
parse_raw_params(struct lex *lx, struct raw_param **rawp, size_t *n_r)
{
	struct buf v = BUF_INIT(0);
	struct raw_param *raw = NULL;
	size_t n = 0, cap = 0;

	for (;;) {
		const uint8_t *name;
		size_t name_len;
		struct raw_param *r;

		lex_skip_cfws(lx);
		if (lx->p >= lx->end)
			break;
		if (*lx->p != ';') {
			/* garbage: skip to the next ';' */
			while (lx->p < lx->end && *lx->p != ';')
				lx->p++;
			continue;
		}
		lx->p++;
		lex_skip_cfws(lx);
		name_len = lex_token(lx, &name);
		if (name_len == 0)
			continue;
		lex_skip_cfws(lx);
		if (lx->p >= lx->end)
			break;
		if (*lx->p != '=') {
			/* a parameter without a value: like Dovecot, resync at the
			 * ';' after the next one (which drops that one too) */
			lx->p++;
			while (lx->p < lx->end && *lx->p != ';')
				lx->p++;
			continue;
		}
		lx->p++;
		lex_skip_cfws(lx);
		buf_reset(&v);
		if (lx->p < lx->end && *lx->p == '"') {
			lex_quoted(lx, &v);
		} else {
			const uint8_t *s = lx->p;
			while (lx->p < lx->end && *lx->p != ';' && *lx->p != ' ' && *lx->p != '\t' &&
			    *lx->p != '\r' && *lx->p != '\n' && *lx->p != '"' && *lx->p != '(')
				lx->p++;
			buf_append(&v, s, (size_t)(lx->p - s));
		}
		if (n == MIME_MAX_PARAMS)
			continue;
		if (n == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			raw = xreallocarray(raw, cap, sizeof(*raw));
		}
		r = &raw[n++];
		memset(r, 0, sizeof(*r));
		r->name = name;
		r->name_len = name_len;
		r->base_len = name_len;
		r->section = -1;
		r->value_len = v.len;
		r->value = xmemdup(v.len > 0 ? v.data : (const uint8_t *)"", v.len + 1);
		r->value[v.len] = '\0';
		/* name*, name*N, name*N* (RFC 2231 3 and 4) */
		{
			const uint8_t *star = memchr(name, '*', name_len);
			if (star != NULL) {
				size_t i = (size_t)(star - name) + 1;
				long sec = -1;

				r->base_len = (size_t)(star - name);
				if (i < name_len && name[i] >= '0' && name[i] <= '9') {
					sec = 0;
					while (i < name_len && name[i] >= '0' && name[i] <= '9') {
						if (sec < 100000)
							sec = sec * 10 + (name[i] - '0');
						i++;
					}
					r->section = sec;
					if (i < name_len && name[i] == '*') {
						r->extended = true;
						i++;
					}
				} else {
					r->extended = true;
				}
				if (i != name_len || r->base_len == 0) {
					/* not RFC 2231 after all: keep as is */
					r->base_len = name_len;
					r->section = -1;
					r->extended = false;
				}
			}
		}
	}
	buf_free(&v);
	*rawp = raw;
	*n_r = n;
}

static char *
name_dup(const uint8_t *s, size_t len, bool star)
{
	char *n = xmalloc(len + 2);

	/* the case the message wrote, as Dovecot shows it */
	memcpy(n, s, len);
	if (star)
		n[len++] = '*';
	n[len] = '\0';
	return n;
}

static bool
attr_char(uint8_t c)
{
	return c > ' ' && c < 0x7f && strchr("*'%()<>@,;:\\\"/[]?=", c) == NULL;
}

static int
raw_cmp(const void *a, const void *b)
{
	const struct raw_param *x = *(const struct raw_param *const *)a;
	const struct raw_param *y = *(const struct raw_param *const *)b;
	size_t n = x->base_len < y->base_len ? x->base_len : y->base_len;
	int c = strncasecmp((const char *)x->name, (const char *)y->name, n);

	if (c != 0)
		return c;
	if (x->base_len != y->base_len)
		return x->base_len < y->base_len ? -1 : 1;
	if (x->section != y->section)
		return x->section < y->section ? -1 : 1;
	return x < y ? -1 : x > y;
}

static bool
same_base(const struct raw_param *x, const struct raw_param *y)
{
	return x->base_len == y->base_len &&
	    strncasecmp((const char *)x->name, (const char *)y->name, x->base_len) == 0;
}

/*
 * Merge the sections of each continued parameter in section order (stopping
 * at a gap or a repeated section). When any section is extended the result
 * is named "name*" and stays in the charset'lang'%XX form, plain sections
 * %-encoded, as Dovecot presents it. Sorting keeps this O(n log n).
 */
static void
merge_params(struct raw_param *raw, size_t n, struct mime_params *out)
{
	struct raw_param **cont = xcalloc(n + 1, sizeof(*cont));
	size_t i, j, k, nc = 0;

	for (i = 0; i < n; i++) {
		if (raw[i].section < 0) {
			params_add(out, name_dup(raw[i].name, raw[i].name_len, false), raw[i].value,
			    raw[i].value_len);
			raw[i].value = NULL;
		} else {
			cont[nc++] = &raw[i];
		}
	}
	qsort(cont, nc, sizeof(*cont), raw_cmp);
	for (i = 0; i < nc; i = j) {
		struct buf v = BUF_INIT(0);
		bool extended = false;
		long want = 0;
		char *val;
		size_t vlen;

		for (j = i; j < nc && same_base(cont[i], cont[j]); j++)
			if (cont[j]->extended)
				extended = true;
		for (k = i; k < j && cont[k]->section == want; k++, want++) {
			struct raw_param *r = cont[k];
			size_t m;

			if (!extended || r->extended) {
				buf_append(&v, r->value, r->value_len);
				continue;
			}
			for (m = 0; m < r->value_len; m++) {
				uint8_t c = (uint8_t)r->value[m];
				if (attr_char(c))
					buf_append_byte(&v, c);
				else
					buf_printf(&v, "%%%02X", c);
			}
		}
		if (v.data == NULL)
			buf_reserve(&v, 1);
		val = (char *)buf_steal(&v, &vlen);
		params_add(out, name_dup(cont[i]->name, cont[i]->base_len, extended), val, vlen);
	}
	free(cont);
}

static void
parse_params(struct lex *lx, struct mime_params *out)
{
	struct raw_param *raw = NULL;
	size_t n, i;

	parse_raw_params(lx, &raw, &n);
	merge_params(raw, n, out);
	for (i = 0; i < n; i++)
		free(raw[i].value);
	free(raw);
}

bool
mime_parse_content_type(const uint8_t *v, size_t len, struct content_type *ct)
{
	struct lex lx = { v, v + len };

	memset(ct, 0, sizeof(*ct));
	lex_skip_cfws(&lx);
	ct->type_len = lex_token(&lx, &ct->type);
	if (ct->type_len == 0) {
		ct->type = NULL;
		return false;
	}
	lex_skip_cfws(&lx);
	if (lx.p < lx.end && *lx.p == '/') {
		lx.p++;
		lex_skip_cfws(&lx);
		ct->sub_len = lex_token(&lx, &ct->sub);
		if (ct->sub_len == 0)
			ct->sub = NULL;
	}
	parse_params(&lx, &ct->params);
	return true;
}

bool
mime_parse_disposition(const uint8_t *v, size_t len, struct content_type *ct)
{
	struct lex lx = { v, v + len };

	memset(ct, 0, sizeof(*ct));
	lex_skip_cfws(&lx);
	ct->type_len = lex_token(&lx, &ct->type);
	if (ct->type_len == 0) {
		ct->type = NULL;
		return false;
	}
	parse_params(&lx, &ct->params);
	return true;
}

void
content_type_free(struct content_type *ct)
{
	mime_params_free(&ct->params);
}
