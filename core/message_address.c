/*
 * Address lists (RFC 5322 3.4 with the obsolete forms of 4.4) rendered as
 * IMAP address structures: ("name" "adl" "mailbox" "host"), groups as
 * (NIL NIL "group" NIL) ... (NIL NIL NIL NIL).
 *
 * Broken input degrades the way Dovecot degrades it, so clients see the
 * same thing from both: a missing local part becomes "MISSING_MAILBOX", a
 * missing domain "MISSING_DOMAIN", an angle address without its '>' gets
 * the host "SYNTAX_ERROR", and whatever follows an address other than a
 * separator ends the list. Every step consumes input, so the parse is
 * linear.
 */
#include <string.h>

#include "roost/error.h"
#include "roost/message.h"

#include "message_impl.h"

struct addr {
	struct buf name, route, mailbox, host;
	bool has_name, has_mailbox, has_host;
};

static void
addr_reset(struct addr *a)
{
	buf_reset(&a->name);
	buf_reset(&a->route);
	buf_reset(&a->mailbox);
	buf_reset(&a->host);
	a->has_name = a->has_mailbox = a->has_host = false;
}

static void
addr_free(struct addr *a)
{
	buf_free(&a->name);
	buf_free(&a->route);
	buf_free(&a->mailbox);
	buf_free(&a->host);
}

static bool
atext(uint8_t c)
{
	switch (c) {
	case '(':
	case ')':
	case '<':
	case '>':
	case '[':
	case ']':
	case ':':
	case ';':
	case '@':
	case '\\':
	case ',':
	case '.':
	case '"':
		return false;
	default:
		return c > ' ' && c != 0x7f;
	}
}

static void
skip_ws(struct lex *lx)
{
	while (lx->p < lx->end &&
	       (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' || *lx->p == '\n'))
		lx->p++;
}

/* A comment at lx->p ('('): append its text (unescaped) to out if not NULL. */
static void
read_comment(struct lex *lx, struct buf *out)
{
	unsigned depth = 0;
	const uint8_t *run;

	run = lx->p + 1;
	while (lx->p < lx->end) {
		uint8_t c = *lx->p++;

		if (c == '\\' && lx->p < lx->end) {
			if (out != NULL && depth == 1) {
				buf_append(out, run, (size_t)(lx->p - 1 - run));
				run = lx->p;
			}
			lx->p++;
		} else if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (--depth == 0) {
				if (out != NULL)
					buf_append(out, run, (size_t)(lx->p - 1 - run));
				return;
			}
		} else if ((c == '\r' || c == '\n') && out != NULL && depth == 1) {
			buf_append(out, run, (size_t)(lx->p - 1 - run));
			run = lx->p;
		}
	}
	if (out != NULL && depth == 1)
		buf_append(out, run, (size_t)(lx->p - run));
}

/* Whitespace and comments; the last comment's text goes to last if set. */
static void
skip_cfws_keep(struct lex *lx, struct buf *last, bool *got)
{
	for (;;) {
		skip_ws(lx);
		if (lx->p >= lx->end || *lx->p != '(')
			return;
		if (last != NULL) {
			buf_reset(last);
			*got = true;
		}
		read_comment(lx, last);
	}
}

/*
 * Words: atoms (with dots, as obs-phrase allows) and quoted strings.
 * phrase gets them as written, each run of white space or comments between
 * two tokens one space ("Joe Q. Public" stays so; "John.Smith" too), local
 * the way a local part writes them (no white space). *spaced_r tells
 * whether two words followed each other without a dot (a phrase, not a
 * local part). Returns the number of words, -1 on an unterminated quoted
 * string.
 */
static int
read_words(struct lex *lx, struct buf *phrase, struct buf *local, bool *quoted_r, bool *spaced_r)
{
	int n = 0;
	bool after_word = false;

	*quoted_r = false;
	*spaced_r = false;
	for (;;) {
		const uint8_t *s = lx->p;
		bool gap;

		skip_cfws_keep(lx, NULL, NULL);
		gap = lx->p != s;
		if (lx->p >= lx->end)
			break;
		if (*lx->p == '"') {
			size_t before;

			/* two words always stand apart, even "a""b" */
			if (phrase->len > 0 && (gap || after_word))
				buf_append_byte(phrase, ' ');
			before = phrase->len;
			if (!message_lex_quoted(lx, phrase))
				return -1;
			buf_append(local, phrase->data + before, phrase->len - before);
			*quoted_r = true;
			if (after_word)
				*spaced_r = true;
			after_word = true;
			n++;
			continue;
		}
		if (*lx->p == '.') {
			/* a dot between words of a local part or an obs-phrase */
			if (phrase->len > 0 && gap)
				buf_append_byte(phrase, ' ');
			buf_append_byte(local, '.');
			buf_append_byte(phrase, '.');
			lx->p++;
			after_word = false;
			continue;
		}
		if (!atext(*lx->p))
			break;
		s = lx->p;
		while (lx->p < lx->end && atext(*lx->p))
			lx->p++;
		if (phrase->len > 0 && (gap || after_word))
			buf_append_byte(phrase, ' ');
		buf_append(phrase, s, (size_t)(lx->p - s));
		buf_append(local, s, (size_t)(lx->p - s));
		if (after_word)
			*spaced_r = true;
		after_word = true;
		n++;
	}
	return n;
}

/*
 * The domain after '@': a dot-atom or a domain literal. false when it is
 * not one (empty, a dot too many, an unterminated literal): the host is
 * then missing, as Dovecot reports it.
 */
static bool
read_domain(struct lex *lx, struct buf *host)
{
	bool want_label = true, any = false;

	for (;;) {
		const uint8_t *s;

		skip_cfws_keep(lx, NULL, NULL);
		if (lx->p >= lx->end)
			break;
		if (*lx->p == '[' && !any) {
			s = lx->p;
			while (lx->p < lx->end && *lx->p != ']')
				lx->p++;
			if (lx->p >= lx->end)
				return false;
			lx->p++;
			buf_append(host, s, (size_t)(lx->p - s));
			return true;
		}
		if (*lx->p == '.') {
			if (want_label)
				return false;
			buf_append_byte(host, '.');
			lx->p++;
			want_label = true;
			continue;
		}
		if (!atext(*lx->p) || !want_label)
			break;
		s = lx->p;
		while (lx->p < lx->end && atext(*lx->p))
			lx->p++;
		buf_append(host, s, (size_t)(lx->p - s));
		want_label = false;
		any = true;
		/* go on only for a dot: a comment after the domain is the name */
		s = lx->p;
		skip_cfws_keep(lx, NULL, NULL);
		if (lx->p >= lx->end || *lx->p != '.') {
			lx->p = s;
			return true;
		}
	}
	return any && !want_label;
}

/*
 * A local part: words (atoms or quoted strings) joined by dots only, as
 * in an addr-spec. Returns false when there is none.
 */
static bool
read_local(struct lex *lx, struct buf *local)
{
	bool any = false;

	for (;;) {
		const uint8_t *s;

		skip_cfws_keep(lx, NULL, NULL);
		if (lx->p >= lx->end)
			break;
		if (*lx->p == '"') {
			if (!message_lex_quoted(lx, local))
				return any;
		} else if (atext(*lx->p)) {
			s = lx->p;
			while (lx->p < lx->end && atext(*lx->p))
				lx->p++;
			buf_append(local, s, (size_t)(lx->p - s));
		} else {
			break;
		}
		any = true;
		s = lx->p;
		skip_cfws_keep(lx, NULL, NULL);
		if (lx->p >= lx->end || *lx->p != '.') {
			lx->p = s;
			break;
		}
		buf_append_byte(local, '.');
		lx->p++;
	}
	return any;
}

/*
 * "<" [route ":"] addr-spec ">" with lx->p after the '<'. A route that
 * does not end in ':' is "INVALID_ROUTE", a missing '>' makes the host
 * "SYNTAX_ERROR" (Dovecot's words).
 */
static void
read_angle(struct lex *lx, struct addr *a)
{
	skip_cfws_keep(lx, NULL, NULL);
	/* obs-route: @a,@b: */
	if (lx->p < lx->end && *lx->p == '@') {
		struct buf route = BUF_INIT(0);

		while (lx->p < lx->end && (*lx->p == '@' || *lx->p == ',')) {
			if (*lx->p == ',') {
				lx->p++;
				skip_cfws_keep(lx, NULL, NULL);
				continue;
			}
			lx->p++;
			if (route.len > 0)
				buf_append_byte(&route, ',');
			buf_append_byte(&route, '@');
			(void)read_domain(lx, &route);
			skip_cfws_keep(lx, NULL, NULL);
		}
		if (lx->p < lx->end && *lx->p == ':') {
			lx->p++;
			buf_append(&a->route, route.data, route.len);
		} else {
			buf_append_str(&a->route, "INVALID_ROUTE");
		}
		buf_free(&route);
	}
	if (read_local(lx, &a->mailbox))
		a->has_mailbox = true;
	skip_cfws_keep(lx, NULL, NULL);
	if (lx->p < lx->end && *lx->p == '@') {
		lx->p++;
		if (read_domain(lx, &a->host))
			a->has_host = true;
		else
			buf_reset(&a->host);
		skip_cfws_keep(lx, NULL, NULL);
	}
	if (lx->p < lx->end && *lx->p == '>') {
		lx->p++;
	} else {
		buf_reset(&a->host);
		buf_append_str(&a->host, "SYNTAX_ERROR");
		a->has_host = true;
	}
}

static void
emit(struct buf *out, const struct addr *a)
{
	buf_append_byte(out, '(');
	if (a->has_name)
		message_imap_human(out, a->name.data, a->name.len);
	else
		buf_append_str(out, "NIL");
	buf_append_byte(out, ' ');
	message_imap_nstring(out, a->route.data, a->route.len, a->route.len == 0);
	buf_append_byte(out, ' ');
	if (a->has_mailbox)
		message_imap_nstring(out, a->mailbox.data, a->mailbox.len, false);
	else
		buf_append_str(out, "\"MISSING_MAILBOX\"");
	buf_append_byte(out, ' ');
	if (a->has_host)
		message_imap_nstring(out, a->host.data, a->host.len, false);
	else
		buf_append_str(out, "\"MISSING_DOMAIN\"");
	buf_append_byte(out, ')');
}

/*
 * The address as a reader writes it, "name <route:mailbox@host>", from the
 * parts ENVELOPE shows (comments gone, quoting undone), encoded words in
 * the name decoded: what SEARCH FROM and its kin look in.
 */
static void
emit_text(struct buf *out, const struct addr *a)
{
	if (a->has_name && a->name.len > 0) {
		message_decode_words((const char *)a->name.data, a->name.len, out);
		buf_append_byte(out, ' ');
	}
	buf_append_byte(out, '<');
	if (a->route.len > 0) {
		buf_append(out, a->route.data, a->route.len);
		buf_append_byte(out, ':');
	}
	if (a->has_mailbox)
		buf_append(out, a->mailbox.data, a->mailbox.len);
	if (a->has_host) {
		buf_append_byte(out, '@');
		buf_append(out, a->host.data, a->host.len);
	}
	buf_append_byte(out, '>');
}

/*
 * One mailbox (or the start of a group) at lx->p. Returns 1 for a mailbox
 * in a, 2 for a group start (its name in a->name), 0 for nothing.
 */
static int
read_mailbox(struct lex *lx, struct addr *a, bool in_group)
{
	struct buf phrase = BUF_INIT(0), local = BUF_INIT(0), comment = BUF_INIT(0);
	bool quoted, spaced, got_comment = false;
	int n, ret = 1;

	n = read_words(lx, &phrase, &local, &quoted, &spaced);
	if (n < 0) {
		/* unterminated quoted string: nothing usable */
		buf_free(&phrase);
		buf_free(&local);
		return 1;
	}
	skip_cfws_keep(lx, NULL, NULL);
	if (lx->p < lx->end && *lx->p == '<') {
		lx->p++;
		if (n > 0) {
			/* a quoted "" is an empty name, not none */
			buf_append(&a->name, phrase.data, phrase.len);
			a->has_name = true;
		}
		read_angle(lx, a);
	} else if (lx->p < lx->end && *lx->p == ':' && !in_group) {
		lx->p++;
		buf_append(&a->name, phrase.data, phrase.len);
		ret = 2;
	} else if (lx->p < lx->end && *lx->p == '@' && !spaced) {
		lx->p++;
		if (local.len > 0 || quoted) {
			buf_append(&a->mailbox, local.data, local.len);
			a->has_mailbox = true;
		}
		if (read_domain(lx, &a->host))
			a->has_host = true;
		else
			buf_reset(&a->host);
		/* a comment after the address is the name */
		skip_cfws_keep(lx, &comment, &got_comment);
		if (got_comment && comment.len > 0) {
			buf_append(&a->name, comment.data, comment.len);
			a->has_name = true;
		}
	} else if (n > 0 && !quoted && !spaced) {
		/* a local part without its domain ("alice", "first.last") */
		buf_append(&a->mailbox, local.data, local.len);
		a->has_mailbox = true;
	} else if (n > 0) {
		buf_append(&a->name, phrase.data, phrase.len);
		a->has_name = true;
	}
	buf_free(&phrase);
	buf_free(&local);
	buf_free(&comment);
	return ret;
}

/* The list as IMAP address structures, or (text) as emit_text() writes
 * each, separated by ", ", a group as "name: ...;". */
static size_t
address_list(const uint8_t *v, size_t len, struct buf *out, bool text)
{
	struct lex lx = {v, v + len};
	struct addr a;
	bool in_group = false;
	size_t n = 0;

	memset(&a, 0, sizeof(a));
	skip_cfws_keep(&lx, NULL, NULL);
	if (lx.p >= lx.end)
		return 0;
	for (;;) {
		int r;

		addr_reset(&a);
		skip_cfws_keep(&lx, NULL, NULL);
		if (in_group && lx.p < lx.end && *lx.p == ';') {
			lx.p++;
			buf_append_str(out, text ? ";" : "(NIL NIL NIL NIL)");
			n++;
			in_group = false;
			skip_cfws_keep(&lx, NULL, NULL);
			if (lx.p < lx.end && *lx.p == ',')
				lx.p++;
			skip_cfws_keep(&lx, NULL, NULL);
			if (lx.p >= lx.end)
				break;
			continue;
		}
		r = read_mailbox(&lx, &a, in_group);
		if (text && n > 0)
			buf_append_str(out, ", ");
		if (r == 2 && !in_group) {
			if (text) {
				message_decode_words((const char *)a.name.data, a.name.len, out);
				buf_append_byte(out, ':');
			} else {
				buf_append_str(out, "(NIL NIL ");
				message_imap_nstring(out, a.name.data, a.name.len, false);
				buf_append_str(out, " NIL)");
			}
			n++;
			in_group = true;
			continue;
		}
		if (text)
			emit_text(out, &a);
		else
			emit(out, &a);
		n++;
		skip_cfws_keep(&lx, NULL, NULL);
		/* anything but a separator ends the list (the rest is not
		 * guessed at, as in Dovecot) */
		if (lx.p >= lx.end || (*lx.p != ',' && !(*lx.p == ';' && in_group)))
			break;
		if (*lx.p == ';' && in_group)
			continue;
		lx.p++; /* ',' (or a stray ';') */
		skip_cfws_keep(&lx, NULL, NULL);
		if (lx.p >= lx.end)
			break;
	}
	if (in_group) {
		buf_append_str(out, text ? ";" : "(NIL NIL NIL NIL)");
		n++;
	}
	addr_free(&a);
	return n;
}

int
message_address_first(const char *v, size_t len, struct buf *name, struct buf *mailbox,
                      struct buf *host)
{
	struct lex lx = {(const uint8_t *)v, (const uint8_t *)v + len};
	struct addr a;
	bool in_group = false;
	int ret = ROOST_ENOTFOUND;

	memset(&a, 0, sizeof(a));
	/* Each round consumes input or stops, as in the list above. */
	for (;;) {
		const uint8_t *at;
		addr_reset(&a);
		skip_cfws_keep(&lx, NULL, NULL);
		if (lx.p >= lx.end)
			break;
		at = lx.p;
		int r = read_mailbox(&lx, &a, in_group);
		if (r == 2) {
			in_group = true;
			continue;
		}
		if (a.has_mailbox || a.has_name) {
			buf_append(name, a.name.data, a.name.len);
			buf_append(mailbox, a.mailbox.data, a.mailbox.len);
			buf_append(host, a.host.data, a.host.len);
			ret = 0;
			break;
		}
		skip_cfws_keep(&lx, NULL, NULL);
		if (lx.p < lx.end && (*lx.p == ',' || *lx.p == ';'))
			lx.p++;
		else if (lx.p == at)
			break;
	}
	addr_free(&a);
	return ret;
}

/* Text of b (NUL-terminated), or NULL when the field is absent. */
static const char *
part_or_null(struct buf *b, bool has)
{
	if (!has)
		return NULL;
	if (b->data == NULL)
		buf_append(b, "", 0);
	return (const char *)b->data;
}

void
message_address_walk(const uint8_t *v, size_t len, message_address_fn *fn, void *arg)
{
	struct lex lx = {v, v + len};
	struct message_address m;
	struct addr a;
	bool in_group = false;

	memset(&a, 0, sizeof(a));
	skip_cfws_keep(&lx, NULL, NULL);
	while (lx.p < lx.end) {
		const uint8_t *before = lx.p;
		int r;

		addr_reset(&a);
		memset(&m, 0, sizeof(m));
		if (in_group && *lx.p == ';') {
			lx.p++;
			m.kind = MESSAGE_ADDR_GROUP_END;
			fn(&m, arg);
			in_group = false;
		} else {
			r = read_mailbox(&lx, &a, in_group);
			if (r == 2) {
				m.kind = MESSAGE_ADDR_GROUP;
				m.name = part_or_null(&a.name, true);
				fn(&m, arg);
				in_group = true;
				continue;
			}
			if (a.has_mailbox || a.has_host || a.has_name) {
				m.kind = MESSAGE_ADDR_MAILBOX;
				m.name = part_or_null(&a.name, a.has_name);
				m.mailbox = part_or_null(&a.mailbox, a.has_mailbox);
				m.host = part_or_null(&a.host, a.has_host);
				fn(&m, arg);
			}
		}
		skip_cfws_keep(&lx, NULL, NULL);
		if (lx.p < lx.end && (*lx.p == ',' || (*lx.p == ';' && !in_group)))
			lx.p++;
		else if (lx.p < lx.end && !(*lx.p == ';' && in_group))
			break; /* what follows is not guessed at */
		skip_cfws_keep(&lx, NULL, NULL);
		if (lx.p == before)
			break;
	}
	if (in_group) {
		memset(&m, 0, sizeof(m));
		m.kind = MESSAGE_ADDR_GROUP_END;
		fn(&m, arg);
	}
	addr_free(&a);
}

size_t
message_address_list_entries(const uint8_t *v, size_t len, struct buf *out)
{
	return address_list(v, len, out, false);
}

size_t
message_address_list_text(const uint8_t *v, size_t len, struct buf *out)
{
	return address_list(v, len, out, true);
}
