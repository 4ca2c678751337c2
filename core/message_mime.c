/*
 * RFC 2045 structured fields: the lexer (CFWS, tokens, quoted strings),
 * Content-Type and Content-Disposition with parameters, and RFC 2231
 * parameter continuations.
 *
 * The syntax errors are handled the way Dovecot handles them (its answers
 * are our test oracle, and clients see the same structure from both): a
 * Content-Type that is not "type/subtype" followed by ';' or the end is
 * reported as "" "", a broken parameter is skipped by moving one byte on
 * and resynchronising at the next ';', an unquoted value is a MIME token
 * (so boundary=----=_x is "----"), and RFC 2231 sections that are not
 * exactly 0..n-1 are left unmerged.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/message.h"
#include "roost/xalloc.h"

#include "message_impl.h"

bool
message_lex_skip_cfws(struct lex *lx)
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
			if (depth > 0)
				return false; /* unterminated comment */
		} else {
			break;
		}
	}
	return true;
}

bool
message_lex_quoted(struct lex *lx, struct buf *out)
{
	const uint8_t *run;

	lx->p++; /* the opening quote */
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
	lx->p++; /* the closing quote */
	return true;
}

static bool
is_tspecial(uint8_t c)
{
	switch (c) {
	case '(':
	case ')':
	case '<':
	case '>':
	case '@':
	case ',':
	case ';':
	case ':':
	case '\\':
	case '"':
	case '/':
	case '[':
	case ']':
	case '?':
	case '=':
		return true;
	default:
		return false;
	}
}

static size_t
lex_token(struct lex *lx, const uint8_t **tok_r)
{
	const uint8_t *s = lx->p;

	while (lx->p<lx->end && * lx->p> ' ' && *lx->p != 0x7f && !is_tspecial(*lx->p))
		lx->p++;
	*tok_r = s;
	return (size_t)(lx->p - s);
}

bool
message_token_eq(const uint8_t *t, size_t tlen, const char *s)
{
	return t != NULL && strlen(s) == tlen && strncasecmp((const char *)t, s, tlen) == 0;
}

void
message_params_free(struct message_params *ps)
{
	size_t i;

	for (i = 0; i < ps->n; i++) {
		free(ps->v[i].name);
		free(ps->v[i].value);
	}
	free(ps->v);
	memset(ps, 0, sizeof(*ps));
}

const struct message_param *
message_params_get(const struct message_params *ps, const char *name)
{
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (strcasecmp(ps->v[i].name, name) == 0)
			return &ps->v[i];
	return NULL;
}

static void
params_add(struct message_params *ps, char *name, char *value, size_t value_len)
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
	size_t base_len; /* name up to the '*' of a section, if any */
	long section;    /* -1: not a continuation */
	bool extended;   /* value is charset'lang'%XX */
	char *value;
	size_t value_len;
};

/* CFWS; false at the end of the input or an unterminated comment
 * (Dovecot's "<= 0"). */
static bool
skip_more(struct lex *lx)
{
	return message_lex_skip_cfws(lx) && lx->p < lx->end;
}

/*
 * One ";" attribute "=" value at lx->p. Returns 1 with name/value set, 0
 * at the end of the input, -1 on a syntax error (lx->p where it stopped).
 */
static int
parse_one_param(struct lex *lx, const uint8_t **name_r, size_t *name_len_r, struct buf *v)
{
	if (lx->p >= lx->end)
		return 0;
	if (*lx->p != ';')
		return -1;
	lx->p++;
	if (!skip_more(lx))
		return -1;
	*name_len_r = lex_token(lx, name_r);
	if (*name_len_r == 0 || !skip_more(lx))
		return -1;
	if (*lx->p != '=')
		return -1;
	lx->p++;
	buf_reset(v);
	if (!skip_more(lx))
		return 1; /* no value: "" */
	if (*lx->p == '"') {
		if (!message_lex_quoted(lx, v))
			return -1;
	} else if (*lx->p == '=') {
		/* broken but common: name==?utf-8?b?...?= */
		const uint8_t *s = lx->p;
		while (lx->p < lx->end && *lx->p != ';' && *lx->p != ' ' && *lx->p != '\t' &&
		       *lx->p != '\r' && *lx->p != '\n')
			lx->p++;
		buf_append(v, s, (size_t)(lx->p - s));
	} else {
		const uint8_t *t;
		size_t n = lex_token(lx, &t);
		buf_append(v, t, n);
	}
	return message_lex_skip_cfws(lx) ? 1 : -1;
}

static void
parse_raw_params(struct lex *lx, struct raw_param **rawp, size_t *n_r)
{
	struct buf v = BUF_INIT(0);
	struct raw_param *raw = NULL;
	size_t n = 0, cap = 0;

	for (;;) {
		const uint8_t *name = NULL;
		size_t name_len = 0, i;
		struct raw_param *r;
		int ret = parse_one_param(lx, &name, &name_len, &v);

		if (ret == 0)
			break;
		if (ret < 0) {
			/* try to go on: one byte further, then the next ';' */
			if (lx->p >= lx->end)
				break;
			lx->p++;
			continue;
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
		r->value = xmalloc(v.len + 1);
		if (v.len > 0)
			memcpy(r->value, v.data, v.len);
		r->value[v.len] = '\0';
		/* name*, name*N, name*N* (RFC 2231 3 and 4) */
		for (i = 0; i < name_len && name[i] != '*'; i++)
			;
		if (i < name_len && i > 0) {
			size_t j = i + 1;
			long sec = -1;

			if (j < name_len && name[j] >= '0' && name[j] <= '9') {
				sec = 0;
				while (j < name_len && name[j] >= '0' && name[j] <= '9') {
					if (sec < 100000)
						sec = sec * 10 + (name[j] - '0');
					j++;
				}
				if (j < name_len && name[j] == '*') {
					r->extended = true;
					j++;
				}
			} else {
				r->extended = true;
			}
			if (j == name_len) {
				r->base_len = i;
				r->section = sec;
			} else {
				r->extended = false;
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
 * Parameters in order, RFC 2231 continuations (and name*= values) after
 * them. Sections 0..n-1, each once, are merged into "name" (or "name*",
 * still in charset'lang'%XX form, when a section is extended: plain
 * sections then have their '%' escaped (nothing else, as in
 * Dovecot), and "''" is put in front when section 0 is
 * plain). Anything else is passed on unmerged, sorted by section. Sorting
 * keeps this O(n log n).
 */
static void
merge_params(struct raw_param *raw, size_t n, struct message_params *out)
{
	struct raw_param **cont = xcalloc(n + 1, sizeof(*cont));
	size_t i, j, k, nc = 0;

	for (i = 0; i < n; i++) {
		if (raw[i].section < 0 && !raw[i].extended) {
			params_add(out, name_dup(raw[i].name, raw[i].name_len, false), raw[i].value,
			           raw[i].value_len);
			raw[i].value = NULL;
		} else {
			cont[nc++] = &raw[i];
		}
	}
	if (nc > 1)
		qsort(cont, nc, sizeof(*cont), raw_cmp);
	for (i = 0; i < nc; i = j) {
		struct buf v = BUF_INIT(0);
		bool extended = false, good = true;
		char *val;
		size_t vlen;

		for (j = i; j < nc && same_base(cont[i], cont[j]); j++) {
			if (cont[j]->extended)
				extended = true;
			if (cont[j]->section != (long)(j - i))
				good = false;
		}
		if (!good || cont[i]->section < 0) {
			/* name*= alone, or broken sections: as they are */
			for (k = i; k < j; k++) {
				params_add(out, name_dup(cont[k]->name, cont[k]->name_len, false),
				           cont[k]->value, cont[k]->value_len);
				cont[k]->value = NULL;
			}
			continue;
		}
		if (extended && !cont[i]->extended)
			buf_append_str(&v, "''");
		for (k = i; k < j; k++) {
			struct raw_param *r = cont[k];
			size_t m;

			if (!extended || r->extended) {
				buf_append(&v, r->value, r->value_len);
				continue;
			}
			for (m = 0; m < r->value_len; m++) {
				uint8_t c = (uint8_t)r->value[m];
				if (c == '%')
					buf_printf(&v, "%%%02X", c);
				else
					buf_append_byte(&v, c);
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
parse_params(struct lex *lx, struct message_params *out)
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
message_parse_content_type(const uint8_t *v, size_t len, struct content_type *ct)
{
	struct lex lx = {v, v + len};

	memset(ct, 0, sizeof(*ct));
	message_lex_skip_cfws(&lx);
	ct->type_len = lex_token(&lx, &ct->type);
	if (message_lex_skip_cfws(&lx) && ct->type_len > 0 && lx.p >= lx.end) {
		/* a lone "type": kept, with an empty subtype, as Dovecot does */
		ct->sub = (const uint8_t *)"";
		ct->sub_len = 0;
		ct->broken = true;
		return true;
	}
	if (ct->type_len == 0 || lx.p >= lx.end || *lx.p != '/')
		goto broken;
	lx.p++;
	message_lex_skip_cfws(&lx);
	ct->sub_len = lex_token(&lx, &ct->sub);
	if (!message_lex_skip_cfws(&lx) || ct->sub_len == 0 || (lx.p < lx.end && *lx.p != ';'))
		goto broken;
	parse_params(&lx, &ct->params);
	return true;
broken:
	/* present but not "type/subtype": Dovecot shows it as "" "" */
	ct->type = ct->sub = (const uint8_t *)"";
	ct->type_len = ct->sub_len = 0;
	ct->broken = true;
	return true;
}

bool
message_parse_disposition(const uint8_t *v, size_t len, struct content_type *ct)
{
	struct lex lx = {v, v + len};

	memset(ct, 0, sizeof(*ct));
	message_lex_skip_cfws(&lx);
	ct->type_len = lex_token(&lx, &ct->type);
	message_lex_skip_cfws(&lx);
	parse_params(&lx, &ct->params);
	return true;
}

bool
message_parse_cte(const uint8_t *v, size_t len, const uint8_t **tok_r, size_t *len_r)
{
	struct lex lx = {v, v + len};

	message_lex_skip_cfws(&lx);
	*len_r = lex_token(&lx, tok_r);
	message_lex_skip_cfws(&lx);
	return *len_r > 0 && lx.p == lx.end;
}

void
message_content_type_free(struct content_type *ct)
{
	message_params_free(&ct->params);
}
