/*
 * FETCH's item list: data items, macros, BODY[section]<partial> and
 * PEEK, BINARY[part]<partial>, BINARY.PEEK and BINARY.SIZE, parsed into a
 * fetch_req; and the mod-sequence values of CONDSTORE
 * modifiers.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"

#include "imap_impl.h"

static int
parse_fields(struct imap_cmd *cmd, const char *p, const char **end_r, struct fetch_item *it)
{
	/* p at '(' ; names separated by spaces up to ')' */
	const char **f = arena_alloc(&cmd->arena, 256 * sizeof(char *));
	size_t n = 0;

	if (*p != '(')
		return ROOST_EINVAL;
	p++;
	while (*p != ')') {
		const char *s = p;
		if (*p == '"') {
			s = ++p;
			while (*p && *p != '"')
				p++;
			if (*p != '"')
				return ROOST_EINVAL;
			f[n] = arena_strndup(&cmd->arena, s, (size_t)(p - s));
			p++;
		} else {
			while (*p && *p != ' ' && *p != ')' && *p != ']')
				p++;
			if (p == s)
				return ROOST_EINVAL;
			f[n] = arena_strndup(&cmd->arena, s, (size_t)(p - s));
		}
		if (f[n][0] == '\0' || ++n >= 256)
			return ROOST_EINVAL;
		if (*p == ' ')
			p++;
		else if (*p != ')')
			return ROOST_EINVAL;
	}
	if (n == 0)
		return ROOST_EINVAL;
	it->fields = f;
	it->n_fields = n;
	*end_r = p + 1;
	return 0;
}

/* "<offset.length>" at *pp, if there: it->partial and its numbers. */
static int
parse_partial(const char **pp, struct fetch_item *it)
{
	const char *q = *pp;
	uint64_t o = 0, l = 0;
	int nd = 0;

	if (*q != '<')
		return 0;
	q++;
	while (*q >= '0' && *q <= '9' && nd < 19) {
		o = o * 10 + (uint64_t)(*q++ - '0');
		nd++;
	}
	if (nd == 0 || *q++ != '.')
		return ROOST_EINVAL;
	nd = 0;
	while (*q >= '0' && *q <= '9' && nd < 19) {
		l = l * 10 + (uint64_t)(*q++ - '0');
		nd++;
	}
	if (nd == 0 || l == 0 || *q++ != '>')
		return ROOST_EINVAL;
	it->partial = true;
	it->p_off = o;
	it->p_len = l;
	*pp = q;
	return 0;
}

/* Part numbers "1.2.3" at *pp into it->path; *pp is left after the last
 * number, or after a '.' that no number follows ("1.MIME"). */
static int
parse_path(const char **pp, struct fetch_item *it)
{
	const char *p = *pp;

	while (*p >= '1' && *p <= '9') {
		uint64_t v = 0;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (uint64_t)(*p++ - '0');
			if (v > UINT32_MAX)
				return ROOST_EINVAL;
		}
		if (it->depth >= 32)
			return ROOST_EINVAL;
		it->path[it->depth++] = (uint32_t)v;
		if (*p == '.') {
			p++;
			if (!(*p >= '1' && *p <= '9'))
				break;
		} else if (*p != ']') {
			return ROOST_EINVAL;
		}
	}
	*pp = p;
	return 0;
}

static int
parse_section(struct imap_cmd *cmd, const char *p, struct fetch_item *it)
{
	const char *end;

	it->kind = F_SECTION;
	if (parse_path(&p, it) < 0)
		return ROOST_EINVAL;
	if (*p == ']') {
		it->sec = SEC_ALL;
		end = p + 1;
	} else if (strncasecmp(p, "HEADER.FIELDS.NOT ", 18) == 0) {
		it->sec = SEC_FIELDS_NOT;
		if (parse_fields(cmd, p + 18, &end, it) < 0 || *end != ']')
			return ROOST_EINVAL;
		end++;
	} else if (strncasecmp(p, "HEADER.FIELDS ", 14) == 0) {
		it->sec = SEC_FIELDS;
		if (parse_fields(cmd, p + 14, &end, it) < 0 || *end != ']')
			return ROOST_EINVAL;
		end++;
	} else if (strncasecmp(p, "HEADER]", 7) == 0) {
		it->sec = SEC_HEADER;
		end = p + 7;
	} else if (strncasecmp(p, "TEXT]", 5) == 0) {
		it->sec = SEC_TEXT;
		end = p + 5;
	} else if (strncasecmp(p, "MIME]", 5) == 0 && it->depth > 0) {
		it->sec = SEC_MIME;
		end = p + 5;
	} else {
		return ROOST_EINVAL;
	}
	if (parse_partial(&end, it) < 0)
		return ROOST_EINVAL;
	return *end == '\0' ? 0 : -1;
}

/*
 * BINARY[part]<partial>, BINARY.PEEK[...] and BINARY.SIZE[part] (RFC 3516
 * section-binary: part numbers only, none for the whole message; no
 * partial for SIZE).
 */
static int
parse_binary(struct imap_cmd *cmd, const char *s, struct fetch_item *it, struct fetch_req *req)
{
	bool size = strncasecmp(s, "BINARY.SIZE[", 12) == 0;
	bool peek = strncasecmp(s, "BINARY.PEEK[", 12) == 0;
	const char *sec = s + (size || peek ? 12 : 7), *p = sec;

	if (parse_path(&p, it) < 0 || *p != ']' || (p > sec && p[-1] == '.'))
		return ROOST_EINVAL;
	const char *close = p++;
	if (!size && parse_partial(&p, it) < 0)
		return ROOST_EINVAL;
	if (*p != '\0')
		return ROOST_EINVAL;
	it->kind = size ? F_BINARY_SIZE : F_BINARY;
	it->peek = peek || size;
	if (!it->peek)
		req->sets_seen = req->binary_seen = true;
	struct buf b = BUF_INIT(0);
	buf_append_str(&b, size ? "BINARY.SIZE[" : "BINARY[");
	buf_append(&b, sec, (size_t)(close - sec));
	buf_append_byte(&b, ']');
	if (it->partial)
		buf_printf(&b, "<%llu>", (unsigned long long)it->p_off);
	it->resp = arena_strndup(&cmd->arena, b.data, b.len);
	buf_free(&b);
	req->need_data = true;
	req->need_parse = true;
	req->need_binsize = true;
	return 0;
}

static int
parse_item(struct imap_cmd *cmd, const struct imap_arg *a, struct fetch_req *req)
{
	struct fetch_item *it = &req->items[req->n];
	const char *s;

	if (a->type != ARG_ATOM)
		return ROOST_EINVAL;
	s = a->str;
	memset(it, 0, sizeof(*it));
	if (strcasecmp(s, "FLAGS") == 0) {
		it->kind = F_FLAGS;
		req->has_flags = true;
	} else if (strcasecmp(s, "UID") == 0) {
		it->kind = F_UID;
		req->has_uid = true;
	} else if (strcasecmp(s, "INTERNALDATE") == 0) {
		it->kind = F_INTERNALDATE;
	} else if (strcasecmp(s, "MODSEQ") == 0) {
		it->kind = F_MODSEQ;
		req->has_modseq = true;
		imap_condstore_enable(cmd->s); /* RFC 7162 3.1 */
	} else if (strcasecmp(s, "EMAILID") == 0) {
		it->kind = F_EMAILID;
	} else if (strcasecmp(s, "SAVEDATE") == 0) {
		it->kind = F_SAVEDATE;
	} else if (strcasecmp(s, "THREADID") == 0) {
		it->kind = F_THREADID;
		req->need_data = true;
	} else if (strcasecmp(s, "PREVIEW") == 0) {
		it->kind = F_PREVIEW;
		req->need_cache = true;
		req->need_preview = true;
	} else if (strcasecmp(s, "RFC822.SIZE") == 0) {
		it->kind = F_SIZE;
		req->need_vsize = true;
	} else if (strcasecmp(s, "ENVELOPE") == 0) {
		it->kind = F_ENVELOPE;
		req->need_cache = true;
	} else if (strcasecmp(s, "BODY") == 0) {
		it->kind = F_BODY;
		req->need_cache = true;
	} else if (strcasecmp(s, "BODYSTRUCTURE") == 0) {
		it->kind = F_BODYSTRUCTURE;
		req->need_cache = true;
	} else if (strcasecmp(s, "RFC822") == 0) {
		it->kind = F_SECTION;
		it->sec = SEC_ALL;
		it->resp = "RFC822";
		req->sets_seen = true;
	} else if (strcasecmp(s, "RFC822.HEADER") == 0) {
		it->kind = F_SECTION;
		it->sec = SEC_HEADER;
		it->peek = true;
		it->resp = "RFC822.HEADER";
	} else if (strcasecmp(s, "RFC822.TEXT") == 0) {
		it->kind = F_SECTION;
		it->sec = SEC_TEXT;
		it->resp = "RFC822.TEXT";
		req->sets_seen = true;
	} else if (strncasecmp(s, "BODY[", 5) == 0 || strncasecmp(s, "BODY.PEEK[", 10) == 0) {
		bool peek = s[4] == '.';
		const char *sec = s + (peek ? 10 : 5);
		if (parse_section(cmd, sec, it) < 0)
			return ROOST_EINVAL;
		it->peek = peek;
		if (!peek)
			req->sets_seen = true;
		/* Echo: BODY[<section>] without the partial length. */
		struct buf b = BUF_INIT(0);
		buf_append_str(&b, "BODY[");
		const char *close = strchr(sec, ']');
		while (close != NULL && strchr(close + 1, ']') != NULL)
			close = strchr(close + 1, ']');
		for (const char *q = sec; q < close; q++)
			buf_append_byte(&b, (uint8_t)toupper((unsigned char)*q));
		buf_append_byte(&b, ']');
		if (it->partial)
			buf_printf(&b, "<%llu>", (unsigned long long)it->p_off);
		it->resp = arena_strndup(&cmd->arena, b.data, b.len);
		buf_free(&b);
	} else if (strncasecmp(s, "BINARY[", 7) == 0 || strncasecmp(s, "BINARY.PEEK[", 12) == 0 ||
	           strncasecmp(s, "BINARY.SIZE[", 12) == 0) {
		if (parse_binary(cmd, s, it, req) < 0)
			return ROOST_EINVAL;
	} else {
		return ROOST_EINVAL;
	}
	if (it->kind == F_SECTION) {
		req->need_data = true;
		if (it->depth > 0 || it->sec != SEC_ALL)
			req->need_parse = true;
	}
	req->n++;
	return 0;
}

static void
add_macro(struct fetch_req *req, const enum fetch_kind *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memset(&req->items[req->n], 0, sizeof(req->items[0]));
		req->items[req->n++].kind = k[i];
		if (k[i] == F_ENVELOPE || k[i] == F_BODY)
			req->need_cache = true;
		if (k[i] == F_SIZE)
			req->need_vsize = true;
		if (k[i] == F_FLAGS)
			req->has_flags = true;
	}
}

int
imap_fetch_parse_items(struct imap_cmd *cmd, const struct imap_arg *a, struct fetch_req *req)
{
	size_t max = (a->type == ARG_LIST ? a->n : 1) + 8;

	req->items = arena_alloc(&cmd->arena, max * sizeof(*req->items));
	if (a->type == ARG_ATOM && strcasecmp(a->str, "ALL") == 0) {
		static const enum fetch_kind k[] = {F_FLAGS, F_INTERNALDATE, F_SIZE, F_ENVELOPE};
		add_macro(req, k, 4);
	} else if (a->type == ARG_ATOM && strcasecmp(a->str, "FAST") == 0) {
		static const enum fetch_kind k[] = {F_FLAGS, F_INTERNALDATE, F_SIZE};
		add_macro(req, k, 3);
	} else if (a->type == ARG_ATOM && strcasecmp(a->str, "FULL") == 0) {
		static const enum fetch_kind k[] = {F_FLAGS, F_INTERNALDATE, F_SIZE, F_ENVELOPE,
		                                    F_BODY};
		add_macro(req, k, 5);
	} else if (a->type == ARG_LIST) {
		if (a->n == 0)
			return ROOST_EINVAL;
		for (size_t i = 0; i < a->n; i++) {
			if (parse_item(cmd, &a->list[i], req) < 0)
				return ROOST_EINVAL;
			/* RFC 8970 3: PREVIEW (LAZY): the preview is made at
			 * most once per message and kept, so it is never
			 * costly enough to answer NIL instead */
			if (req->items[req->n - 1].kind == F_PREVIEW && i + 1 < a->n &&
			    a->list[i + 1].type == ARG_LIST) {
				const struct imap_arg *mods = &a->list[++i];

				if (mods->n == 0)
					return ROOST_EINVAL;
				for (size_t k = 0; k < mods->n; k++) {
					if (!imap_arg_atom_eq(&mods->list[k], "LAZY"))
						return ROOST_EINVAL;
				}
			}
		}
	} else {
		if (parse_item(cmd, a, req) < 0)
			return ROOST_EINVAL;
	}
	if (cmd->uid && !req->has_uid) {
		memset(&req->items[req->n], 0, sizeof(req->items[0]));
		req->items[req->n++].kind = F_UID;
		req->has_uid = true;
	}
	/* UID first, as Dovecot, Cyrus and Gmail send it: RFC 3501 fixes no
	 * order, but much client code (imaplib scripts, for one) reads the
	 * UID from the text before the first literal. */
	for (size_t i = 1; i < req->n; i++) {
		if (req->items[i].kind == F_UID) {
			struct fetch_item uid = req->items[i];
			memmove(&req->items[1], &req->items[0], i * sizeof(req->items[0]));
			req->items[0] = uid;
			break;
		}
	}
	return 0;
}

/* RFC 7162 mod-sequence-value: 1..2^63-1 (valzer: 0 allowed). */
int
imap_parse_modseq(const struct imap_arg *a, bool zero_ok, uint64_t *v_r)
{
	uint64_t v = 0;

	if (a->type != ARG_ATOM || a->len == 0 || a->len > 19)
		return ROOST_EINVAL;
	for (const char *p = a->str; *p; p++) {
		if (*p < '0' || *p > '9')
			return ROOST_EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > (uint64_t)INT64_MAX || (v == 0 && !zero_ok))
		return ROOST_EINVAL;
	*v_r = v;
	return 0;
}
