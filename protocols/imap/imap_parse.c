/*
 * IMAP argument parser (worker side, over a command the framer delivered
 * whole): tag, name, atoms, quoted strings, literals and lists.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

struct pstate {
	struct arena *a;
	const uint8_t *base, *p, *end;
	size_t count;
	const char *err;
	int rc;
	const struct imap_spool *sp; /* spooled literals, by offset from base */
	size_t next_lit;
	bool raw_literals; /* APPEND, REPLACE: message literals are not copied */
	size_t raw_from;   /* ... from this top-level argument on (after the mailbox) */
	size_t top_idx;    /* index of the top-level argument being parsed */
};

static const char empty_string[] = "";

/* Arena memory for what the client sized, within the command's budget. */
static void *
palloc(struct pstate *ps, size_t n)
{
	void *p = arena_try_alloc(ps->a, n);

	if (p == NULL && ps->err == NULL) {
		ps->rc = ROOST_ETOOBIG;
		ps->err = "[TOOBIG] Command too large to process";
	}
	return p;
}

static char *
pstrndup(struct pstate *ps, const void *src, size_t n)
{
	char *s;

	if (n == 0)
		return (char *)empty_string;
	if (n == SIZE_MAX || (s = palloc(ps, n + 1)) == NULL)
		return NULL;
	memcpy(s, src, n);
	s[n] = '\0';
	return s;
}

static bool
is_atom_char(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	switch (c) {
	case '(':
	case ')':
	case '{':
	case '"':
	case '\\':
	case '%':
	case '*':
	case ']':
		return false;
	default:
		return true;
	}
}

/* Atom as the command arguments use it: astring chars plus list wildcards
 * and ']' (resp-specials), with "[...]" sections (FETCH BODY[HEADER.FIELDS
 * (A B)]) kept whole. */
static bool
is_arg_atom_char(uint8_t c)
{
	return is_atom_char(c) || c == '%' || c == '*' || c == ']' || c == '\\';
}

static int
perr(struct pstate *ps, const char *why)
{
	if (ps->err == NULL) {
		ps->err = why;
		ps->rc = ROOST_EINVAL;
	}
	return ps->rc;
}

static bool
at_eol(const struct pstate *ps)
{
	return ps->p >= ps->end || *ps->p == '\r' || *ps->p == '\n';
}

static int parse_list_items(struct pstate *ps, struct imap_arg **items_r, size_t *n_r,
                            unsigned depth, bool top);

static int
parse_one(struct pstate *ps, struct imap_arg *arg, unsigned depth)
{
	const uint8_t *p = ps->p;

	arg->fd = -1;
	if (++ps->count > IMAP_MAX_ARGS) {
		ps->rc = ROOST_ETOOBIG;
		ps->err = "[TOOBIG] Too many arguments";
		return ps->rc;
	}
	if (*p == '(') {
		if (depth >= IMAP_MAX_DEPTH) {
			ps->rc = ROOST_ETOOBIG;
			ps->err = "[TOOBIG] Nesting too deep";
			return ps->rc;
		}
		ps->p++;
		arg->type = ARG_LIST;
		if (parse_list_items(ps, &arg->list, &arg->n, depth + 1, false) < 0)
			return ps->rc;
		if (ps->p >= ps->end || *ps->p != ')')
			return perr(ps, "Missing ')'");
		ps->p++;
		return 0;
	}
	if (*p == '"') {
		const uint8_t *q = p + 1;
		size_t n = 0;

		/* Measure first: the copy takes the string's own length. */
		for (;;) {
			if (q >= ps->end || *q == '\r' || *q == '\n')
				return perr(ps, "Unterminated quoted string");
			if (*q == '"')
				break;
			if (*q == '\\') {
				q++;
				if (q >= ps->end || (*q != '"' && *q != '\\'))
					return perr(ps, "Invalid escape in quoted string");
			}
			if (*q == '\0')
				return perr(ps, "NUL in quoted string");
			q++;
			n++;
		}
		char *out = n == 0 ? (char *)empty_string : palloc(ps, n + 1);
		if (out == NULL)
			return ps->rc;
		if (n > 0) {
			size_t o = 0;

			for (p++; *p != '"'; p++) {
				if (*p == '\\')
					p++;
				out[o++] = (char)*p;
			}
			out[o] = '\0';
		}
		ps->p = q + 1;
		arg->type = ARG_QUOTED;
		arg->str = out;
		arg->len = n;
		arg->raw = (const uint8_t *)out;
		return 0;
	}
	if (*p == '{' || (*p == '~' && p + 1 < ps->end && p[1] == '{')) {
		uint64_t n = 0;
		size_t digits = 0;
		bool lit8 = *p == '~';

		/* RFC 3516: literal8 carries an APPEND message (and what
		 * APPEND's extensions take); anywhere else it is not allowed. */
		if (lit8 && !ps->raw_literals)
			return perr(ps, "literal8 is allowed in APPEND only");
		if (lit8)
			p++;
		p++;
		while (p < ps->end && *p >= '0' && *p <= '9') {
			if (++digits > IMAP_MAX_LITERAL_DIGITS)
				return perr(ps, "Literal size too long");
			n = n * 10 + (uint64_t)(*p++ - '0');
		}
		if (digits == 0)
			return perr(ps, "Invalid literal");
		if (p < ps->end && *p == '+')
			p++;
		if (p >= ps->end || *p != '}')
			return perr(ps, "Invalid literal");
		p++;
		if (p < ps->end && *p == '\r')
			p++;
		if (p >= ps->end || *p != '\n')
			return perr(ps, "Literal must end the line");
		p++;
		arg->type = ARG_LITERAL;
		arg->literal8 = lit8;
		if (ps->sp != NULL && ps->next_lit < ps->sp->n_lits &&
		    ps->sp->lits[ps->next_lit].at == (size_t)(p - ps->base)) {
			/* its bytes are in a file, not in the text */
			const struct imap_spool_lit *l = &ps->sp->lits[ps->next_lit++];

			if (l->len != n)
				return perr(ps, "Literal truncated");
			if (l->nul && !lit8)
				return perr(ps, "NUL in a literal (literal8 may carry it)");
			arg->len = (size_t)n;
			arg->fd = l->fd;
			ps->p = p;
			return 0;
		}
		if ((uint64_t)(ps->end - p) < n)
			return perr(ps, "Literal truncated");
		arg->raw = p;
		arg->len = (size_t)n;
		bool nul = memchr(p, '\0', (size_t)n) != NULL;
		if (nul && !lit8)
			return perr(ps, "NUL in a literal (literal8 may carry it)");
		if (!(ps->raw_literals && ps->top_idx >= ps->raw_from) && !nul) {
			arg->str = pstrndup(ps, p, (size_t)n);
			if (arg->str == NULL)
				return ps->rc;
		}
		ps->p = p + n;
		return 0;
	}
	/* atom */
	const uint8_t *s = p;
	while (p < ps->end) {
		if (*p == '[') {
			const uint8_t *q = p + 1;
			/* printable ASCII only: a NUL here would cut the string
			 * short of its length (and a mailbox name with it) */
			while (q < ps->end && *q != ']' && *q >= 0x20 && *q < 0x7f)
				q++;
			if (q < ps->end && *q == ']') {
				p = q + 1;
				continue;
			}
			p++;
			continue;
		}
		if (!is_arg_atom_char(*p))
			break;
		p++;
	}
	if (p == s) {
		if (*p >= 0x80)
			return perr(ps, "8-bit characters need a quoted string or literal");
		return perr(ps, "Unexpected character");
	}
	arg->type = ARG_ATOM;
	arg->len = (size_t)(p - s);
	arg->str = pstrndup(ps, s, arg->len);
	if (arg->str == NULL)
		return ps->rc;
	arg->raw = (const uint8_t *)arg->str;
	/* A bare NIL stays an atom: it is a valid astring, list-mailbox and
	 * flag-keyword (RFC 3501 9), and NIL only where the command's grammar
	 * says nstring (imap_arg_is_nil()). */
	ps->p = p;
	return 0;
}

/* The items grow in a heap array of their own and are copied to the
 * arena once complete, so the arena holds each list once, at its size. */
static int
parse_list_items(struct pstate *ps, struct imap_arg **items_r, size_t *n_r, unsigned depth,
                 bool top)
{
	size_t n = 0, cap = 0;
	struct imap_arg *items = NULL;
	int rc = -1;

	for (;;) {
		if (top) {
			if (at_eol(ps))
				break;
		} else {
			if (ps->p >= ps->end || *ps->p == '\r' || *ps->p == '\n') {
				perr(ps, "Missing ')'");
				goto out;
			}
			if (*ps->p == ')')
				break;
		}
		if (n > 0) {
			if (*ps->p != ' ') {
				perr(ps, "Missing space between arguments");
				goto out;
			}
			ps->p++;
			if (!top && ps->p < ps->end && *ps->p == ')') {
				perr(ps, "Space before ')'");
				goto out;
			}
			if (at_eol(ps)) {
				perr(ps, "Trailing space");
				goto out;
			}
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;

			/* the growing array counts against the budget too */
			if (ps->a->max != 0 && (ps->a->used > ps->a->max ||
			                        ncap * sizeof(*items) > ps->a->max - ps->a->used)) {
				palloc(ps, ncap * sizeof(*items));
				goto out;
			}
			items = xreallocarray(items, ncap, sizeof(*items));
			cap = ncap;
		}
		memset(&items[n], 0, sizeof(items[n]));
		if (top)
			ps->top_idx = n;
		if (parse_one(ps, &items[n], depth) < 0)
			goto out;
		n++;
	}
	*items_r = NULL;
	if (n > 0) {
		*items_r = palloc(ps, n * sizeof(*items));
		if (*items_r == NULL)
			goto out;
		memcpy(*items_r, items, n * sizeof(*items));
	}
	*n_r = n;
	rc = 0;
out:
	free(items);
	return rc;
}

static bool
is_tag_char(uint8_t c)
{
	return is_atom_char(c) && c != '+';
}

static int
parse_text(struct arena *a, const uint8_t *data, size_t len, const struct imap_spool *sp,
           struct imap_parsed *p, const char **err_r)
{
	struct pstate ps = {.a = a, .base = data, .p = data, .end = data + len, .sp = sp};
	const uint8_t *q = data;

	memset(p, 0, sizeof(*p));
	*err_r = NULL;
	while (q < ps.end && is_tag_char(*q))
		q++;
	if (q == data || q - data > IMAP_MAX_TAG || q >= ps.end || *q != ' ') {
		*err_r = "Invalid tag";
		if (q > data && q - data <= IMAP_MAX_TAG &&
		    (q >= ps.end || *q == '\r' || *q == '\n'))
			p->tag = pstrndup(&ps, data, (size_t)(q - data));
		if (p->tag != NULL)
			*err_r = "Missing command";
		return ROOST_EINVAL;
	}
	p->tag = pstrndup(&ps, data, (size_t)(q - data));
	ps.p = ++q;
	while (q < ps.end && is_atom_char(*q))
		q++;
	if (q == ps.p) {
		*err_r = "Missing command";
		return ROOST_EINVAL;
	}
	char *name = pstrndup(&ps, ps.p, (size_t)(q - ps.p));
	if (p->tag == NULL || name == NULL) {
		*err_r = ps.err;
		return ps.rc;
	}
	for (char *c = name; *c; c++)
		*c = (char)toupper((unsigned char)*c);
	ps.p = q;
	if (strcmp(name, "UID") == 0) {
		if (ps.p >= ps.end || *ps.p != ' ') {
			*err_r = "Missing command after UID";
			return ROOST_EINVAL;
		}
		q = ++ps.p;
		while (q < ps.end && is_atom_char(*q))
			q++;
		if (q == ps.p) {
			*err_r = "Missing command after UID";
			return ROOST_EINVAL;
		}
		name = pstrndup(&ps, ps.p, (size_t)(q - ps.p));
		if (name == NULL) {
			*err_r = ps.err;
			return ps.rc;
		}
		for (char *c = name; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		ps.p = q;
		p->uid = true;
	}
	p->name = name;
	ps.raw_literals = strcmp(name, "APPEND") == 0 || strcmp(name, "REPLACE") == 0;
	ps.raw_from = strcmp(name, "REPLACE") == 0 ? 2 : 1;
	if (!at_eol(&ps)) {
		if (*ps.p != ' ') {
			*err_r = "Unexpected character after command";
			return ROOST_EINVAL;
		}
		ps.p++;
		if (at_eol(&ps)) {
			*err_r = "Trailing space";
			return ROOST_EINVAL;
		}
	}
	if (parse_list_items(&ps, &p->args, &p->n, 0, true) < 0) {
		*err_r = ps.err;
		return ps.rc;
	}
	/* the line end: CRLF (or a bare LF) and nothing after */
	if (ps.p < ps.end && *ps.p == '\r')
		ps.p++;
	if (ps.p < ps.end && *ps.p == '\n')
		ps.p++;
	if (ps.p != ps.end) {
		*err_r = "Garbage after command";
		return ROOST_EINVAL;
	}
	return 0;
}

int
imap_parse_command(struct arena *a, const uint8_t *data, size_t len, struct imap_parsed *p,
                   const char **err_r)
{
	return parse_text(a, data, len, NULL, p, err_r);
}

int
imap_parse_spooled(struct arena *a, const struct imap_spool *sp, struct imap_parsed *p,
                   const char **err_r)
{
	return parse_text(a, sp->text.data, sp->text.len, sp, p, err_r);
}

bool
imap_arg_is_string(const struct imap_arg *a)
{
	return (a->type == ARG_ATOM || a->type == ARG_QUOTED || a->type == ARG_LITERAL) &&
	       a->str != NULL && !a->literal8;
}

bool
imap_arg_is_astring(const struct imap_arg *a)
{
	return imap_arg_is_string(a);
}

bool
imap_arg_atom_eq(const struct imap_arg *a, const char *word)
{
	return a->type == ARG_ATOM && strcasecmp(a->str, word) == 0;
}

bool
imap_arg_is_nil(const struct imap_arg *a)
{
	return imap_arg_atom_eq(a, "NIL");
}
