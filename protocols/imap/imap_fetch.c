/*
 * FETCH (every data item, BODY[section]<partial>, PEEK), STORE, COPY and
 * MOVE, with their UID forms (UIDPLUS COPYUID).
 *
 * ENVELOPE, BODY and BODYSTRUCTURE come from the storage cache when it
 * holds them (filled here on the first miss), so a client listing a
 * mailbox does not make us re-parse every message.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

enum fetch_kind {
	F_FLAGS,
	F_UID,
	F_INTERNALDATE,
	F_SIZE,
	F_ENVELOPE,
	F_BODY,
	F_BODYSTRUCTURE,
	F_MODSEQ,
	F_SECTION, /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
};

enum sec_kind { SEC_ALL, SEC_HEADER, SEC_FIELDS, SEC_FIELDS_NOT, SEC_TEXT, SEC_MIME };

struct fetch_item {
	enum fetch_kind kind;
	/* F_SECTION */
	enum sec_kind sec;
	uint32_t path[32];
	size_t depth;
	const char **fields;
	size_t n_fields;
	bool partial;
	uint64_t p_off, p_len;
	bool peek;
	const char *resp; /* name echoed in the response, e.g. "BODY[HEADER]" */
};

struct fetch_req {
	struct fetch_item *items;
	size_t n;
	bool need_cache; /* envelope/body/bodystructure */
	bool need_vsize; /* RFC822.SIZE: octets BODY[] sends */
	bool need_data;  /* message bytes */
	bool need_parse; /* parsed sections */
	bool sets_seen;
	bool has_flags, has_uid, has_modseq;
	uint64_t changedsince; /* CHANGEDSINCE (0 = none) */
};

/* ------------------------------------------------------------------ */
/* Parsing the item list                                               */

static int
parse_fields(struct imap_cmd *cmd, const char *p, const char **end_r, struct fetch_item *it)
{
	/* p at '(' ; names separated by spaces up to ')' */
	const char **f = arena_alloc(&cmd->arena, 256 * sizeof(char *));
	size_t n = 0;

	if (*p != '(')
		return -1;
	p++;
	while (*p != ')') {
		const char *s = p;
		if (*p == '"') {
			s = ++p;
			while (*p && *p != '"')
				p++;
			if (*p != '"')
				return -1;
			f[n] = arena_strndup(&cmd->arena, s, (size_t)(p - s));
			p++;
		} else {
			while (*p && *p != ' ' && *p != ')' && *p != ']')
				p++;
			if (p == s)
				return -1;
			f[n] = arena_strndup(&cmd->arena, s, (size_t)(p - s));
		}
		if (f[n][0] == '\0' || ++n >= 256)
			return -1;
		if (*p == ' ')
			p++;
		else if (*p != ')')
			return -1;
	}
	if (n == 0)
		return -1;
	it->fields = f;
	it->n_fields = n;
	*end_r = p + 1;
	return 0;
}

static int
parse_section(struct imap_cmd *cmd, const char *p, struct fetch_item *it)
{
	const char *end;

	it->kind = F_SECTION;
	/* part numbers */
	while (*p >= '1' && *p <= '9') {
		uint64_t v = 0;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (uint64_t)(*p++ - '0');
			if (v > UINT32_MAX)
				return -1;
		}
		if (it->depth >= 32)
			return -1;
		it->path[it->depth++] = (uint32_t)v;
		if (*p == '.') {
			p++;
			if (!(*p >= '1' && *p <= '9'))
				break;
		} else if (*p != ']') {
			return -1;
		}
	}
	if (*p == ']') {
		it->sec = SEC_ALL;
		end = p + 1;
	} else if (strncasecmp(p, "HEADER.FIELDS.NOT ", 18) == 0) {
		it->sec = SEC_FIELDS_NOT;
		if (parse_fields(cmd, p + 18, &end, it) < 0 || *end != ']')
			return -1;
		end++;
	} else if (strncasecmp(p, "HEADER.FIELDS ", 14) == 0) {
		it->sec = SEC_FIELDS;
		if (parse_fields(cmd, p + 14, &end, it) < 0 || *end != ']')
			return -1;
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
		return -1;
	}
	if (*end == '<') {
		uint64_t o = 0, l = 0;
		const char *q = end + 1;
		int nd = 0;
		while (*q >= '0' && *q <= '9' && nd < 19) {
			o = o * 10 + (uint64_t)(*q++ - '0');
			nd++;
		}
		if (nd == 0 || *q++ != '.')
			return -1;
		nd = 0;
		while (*q >= '0' && *q <= '9' && nd < 19) {
			l = l * 10 + (uint64_t)(*q++ - '0');
			nd++;
		}
		if (nd == 0 || l == 0 || *q++ != '>')
			return -1;
		it->partial = true;
		it->p_off = o;
		it->p_len = l;
		end = q;
	}
	return *end == '\0' ? 0 : -1;
}

static int
parse_item(struct imap_cmd *cmd, const struct imap_arg *a, struct fetch_req *req)
{
	struct fetch_item *it = &req->items[req->n];
	const char *s;

	if (a->type != ARG_ATOM)
		return -1;
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
		cmd->s->condstore = true; /* RFC 7162 3.1 */
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
			return -1;
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
	} else {
		return -1;
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

static int
parse_fetch_items(struct imap_cmd *cmd, const struct imap_arg *a, struct fetch_req *req)
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
			return -1;
		for (size_t i = 0; i < a->n; i++)
			if (parse_item(cmd, &a->list[i], req) < 0)
				return -1;
	} else {
		if (parse_item(cmd, a, req) < 0)
			return -1;
	}
	if (cmd->uid && !req->has_uid) {
		memset(&req->items[req->n], 0, sizeof(req->items[0]));
		req->items[req->n++].kind = F_UID;
		req->has_uid = true;
	}
	return 0;
}

/* RFC 7162 mod-sequence-value: 1..2^63-1 (valzer: 0 allowed). */
static int
parse_modseq(const struct imap_arg *a, bool zero_ok, uint64_t *v_r)
{
	uint64_t v = 0;

	if (a->type != ARG_ATOM || a->len == 0 || a->len > 19)
		return -1;
	for (const char *p = a->str; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > (uint64_t)INT64_MAX || (v == 0 && !zero_ok))
		return -1;
	*v_r = v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The parse cache                                                     */

/*
 * Our cache record: "R2 <vsize> <env> <body> <bs>\n" and the three texts.
 * vsize is RFC822.SIZE: the octets BODY[] sends (a bare LF counts as CRLF).
 * A record with env = 0 holds the size only (nothing parsed yet: an
 * envelope is never empty). "R1 <env> <body> <bs>\n" (no size) is still
 * read.
 */
struct parsed_cache {
	struct buf raw;
	const char *env, *body, *bs;
	size_t env_len, body_len, bs_len;
	uint64_t vsize;
	bool have_vsize, have_parts;
};

static bool
cache_decode(struct parsed_cache *pc)
{
	unsigned long long v = 0, e, b, s;
	int off = 0;
	const char *t = buf_cstr(&pc->raw);

	pc->have_vsize = pc->have_parts = false;
	if (strncmp(t, "R2 ", 3) == 0) {
		if (sscanf(t, "R2 %llu %llu %llu %llu\n%n", &v, &e, &b, &s, &off) != 4 || off <= 0)
			return false;
	} else if (sscanf(t, "R1 %llu %llu %llu\n%n", &e, &b, &s, &off) != 3 || off <= 0) {
		return false;
	}
	if (e > pc->raw.len || b > pc->raw.len || s > pc->raw.len ||
	    e + b + s + (size_t)off != pc->raw.len)
		return false;
	pc->env = t + off;
	pc->env_len = e;
	pc->body = pc->env + e;
	pc->body_len = b;
	pc->bs = pc->body + b;
	pc->bs_len = s;
	pc->have_vsize = t[1] == '2';
	pc->vsize = v;
	pc->have_parts = e > 0;
	return true;
}

/* Store pc's parts (when have_parts) and vsize (when have_vsize). */
static void
cache_store(struct mailbox *mb, uint32_t uid, struct parsed_cache *pc, const char *env,
            size_t env_len, const char *body, size_t body_len, const char *bs, size_t bs_len)
{
	struct buf r = BUF_INIT(0);

	buf_printf(&r, "R2 %llu %zu %zu %zu\n", (unsigned long long)pc->vsize, env_len, body_len,
	           bs_len);
	buf_append(&r, env, env_len);
	buf_append(&r, body, body_len);
	buf_append(&r, bs, bs_len);
	(void)mailbox_cache_set(mb, uid, r.data, r.len);
	buf_free(&pc->raw);
	pc->raw = r;
	if (!cache_decode(pc))
		pc->have_parts = false;
}

static bool
cache_build(struct mailbox *mb, uint32_t uid, const struct message *msg, struct parsed_cache *pc)
{
	struct buf e = BUF_INIT(0), b = BUF_INIT(0), s = BUF_INIT(0);
	bool ok = message_envelope(msg, NULL, &e) == 0 &&
	          message_bodystructure(msg, message_root(msg), false, &b) == 0 &&
	          message_bodystructure(msg, message_root(msg), true, &s) == 0 && e.len > 0;

	if (ok) {
		cache_store(mb, uid, pc, (const char *)e.data, e.len, (const char *)b.data, b.len,
		            (const char *)s.data, s.len);
		ok = pc->have_parts;
	}
	buf_free(&e);
	buf_free(&b);
	buf_free(&s);
	return ok;
}

/* ------------------------------------------------------------------ */
/* One message                                                         */

/*
 * A message's response is planned whole when FETCH reaches it: every item
 * is formatted into the plan's text as it will be sent, except literals
 * of the message's own bytes, which stay ranges of the message and are
 * copied out a chunk at a time as the client reads. So a 50 MB BODY[]
 * never sits in memory or in the output buffer, and FETCH yields (between
 * chunks, between messages) whenever the output is full.
 */
#define FETCH_CHUNK 16384

struct fetch_seg {
	bool from_msg; /* a range of the message, else of the plan's text */
	uint64_t off;  /* text: offset in it; message: raw offset of the first byte */
	uint64_t len;  /* octets to send (after CRLF conversion) */
	bool half;     /* message: the first raw byte is a bare LF whose CR was sent */
};

/* FETCH between steps; in the command's arena, freed by fetch_state_free. */
struct fetch_state {
	/* The whole command. */
	struct fetch_req req;
	uint32_t *idx;  /* view indexes to answer, ascending */
	size_t n, next; /* how many, the next one to plan */
	bool *seen_now; /* per idx: \Seen set by this FETCH (NULL: none) */
	bool gone;      /* a message had disappeared: tagged NO */

	/* The message being sent. */
	bool busy;
	uint32_t uid;
	struct msg_view mv; /* kept across steps only when mv.holdable */
	bool have_mv;
	size_t raw_len; /* mv.len when the plan was made */
	bool crlf;      /* bare LFs in it go out as CRLF */
	struct buf text;
	struct fetch_seg *segs;
	size_t n_segs, cap_segs;
	size_t seg;        /* the segment being sent */
	uint64_t seg_sent; /* octets of it written */
	size_t raw_pos;    /* message segment: the next raw byte */
	bool half;         /* message segment: raw_pos is a bare LF, CR written */
};

static bool
has_bare_lf(const uint8_t *p, size_t len)
{
	const uint8_t *q = p, *end = p + len;

	while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		if (q == p || q[-1] != '\r')
			return true;
		q++;
	}
	return false;
}

static void
crlf_copy(const uint8_t *p, size_t len, struct buf *out)
{
	buf_reserve(out, len + len / 16 + 16);
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			buf_append_byte(out, '\r');
		buf_append_byte(out, p[i]);
	}
}

/*
 * Walk the CRLF form of raw[0..len) (what crlf_copy makes) from (*pos,
 * *half) for at most max octets, copying them to out unless it is NULL.
 * Returns how many octets were walked (fewer at the end of raw).
 */
static size_t
crlf_walk(const uint8_t *raw, size_t len, size_t *pos, bool *half, uint8_t *out, size_t max)
{
	size_t n = 0, p = *pos;
	bool h = *half;

	while (n < max && p < len) {
		uint8_t ch = raw[p];

		if (ch == '\n' && !h && (p == 0 || raw[p - 1] != '\r')) {
			if (out != NULL)
				out[n] = '\r';
			n++;
			h = true;
			continue;
		}
		if (out != NULL)
			out[n] = ch;
		n++;
		p++;
		h = false;
	}
	*pos = p;
	*half = h;
	return n;
}

static void
seg_add(struct fetch_state *st, bool from_msg, uint64_t off, uint64_t len, bool half)
{
	if (len == 0)
		return;
	if (st->n_segs == st->cap_segs) {
		st->cap_segs = st->cap_segs ? st->cap_segs * 2 : 8;
		st->segs = xrealloc(st->segs, st->cap_segs * sizeof(*st->segs));
	}
	st->segs[st->n_segs++] = (struct fetch_seg){from_msg, off, len, half};
}

/* The plan's text from *mark to its end becomes a segment. */
static void
seg_text(struct fetch_state *st, size_t *mark)
{
	seg_add(st, false, *mark, st->text.len - *mark, false);
	*mark = st->text.len;
}

/* The octets of a section in data[0..len) (CRLF form): *p_r, *n_r; in
 * tmp when they are not a range of data (HEADER.FIELDS). */
static void
section_bytes(const struct fetch_item *it, const uint8_t *data, size_t len,
              const struct message *msg, struct buf *tmp, const uint8_t **p_r, size_t *n_r)
{
	const uint8_t *p = NULL;
	size_t n = 0;
	const struct message_part *part = NULL;

	if (it->depth == 0 && it->sec == SEC_ALL) {
		p = data;
		n = len;
	} else if (msg == NULL) {
		/* not parsed: cannot happen, need_parse covers it */
	} else if (it->depth == 0) {
		const struct message_part *root = message_root(msg);
		switch (it->sec) {
		case SEC_ALL:
			break;
		case SEC_HEADER:
			p = data + root->header_off;
			n = root->header_len;
			break;
		case SEC_TEXT:
			p = data + root->body_off;
			n = root->body_len;
			break;
		case SEC_FIELDS:
		case SEC_FIELDS_NOT:
			message_header_fields(data + root->header_off, root->header_len, it->fields,
			                      it->n_fields, it->sec == SEC_FIELDS_NOT, tmp);
			p = tmp->data;
			n = tmp->len;
			break;
		case SEC_MIME:
			break;
		}
	} else if (message_find_part(msg, it->path, it->depth, &part) == 0) {
		const struct message_part *inner = part->is_message_rfc822 ? part->children : NULL;
		switch (it->sec) {
		case SEC_ALL:
			p = data + part->body_off;
			n = part->body_len;
			break;
		case SEC_MIME:
			p = data + part->header_off;
			n = part->header_len;
			break;
		case SEC_HEADER:
			if (inner != NULL) {
				p = data + inner->header_off;
				n = inner->header_len;
			}
			break;
		case SEC_TEXT:
			if (inner != NULL) {
				p = data + inner->body_off;
				n = inner->body_len;
			}
			break;
		case SEC_FIELDS:
		case SEC_FIELDS_NOT:
			if (inner != NULL) {
				message_header_fields(data + inner->header_off, inner->header_len,
				                      it->fields, it->n_fields,
				                      it->sec == SEC_FIELDS_NOT, tmp);
				p = tmp->data;
				n = tmp->len;
			}
			break;
		}
	}
	if (it->partial) {
		if (it->p_off >= n) {
			n = 0;
		} else {
			p += it->p_off;
			n -= (size_t)it->p_off;
			if (it->p_len < n)
				n = (size_t)it->p_len;
		}
	}
	if (p == NULL)
		n = 0;
	*p_r = p;
	*n_r = n;
}

/* "BODY[...] {n}\r\n" and its octets: copied into the plan's text, or a
 * message segment when they are part of data (raw: the stored message,
 * data its CRLF form when st->crlf). */
static void
plan_section(struct fetch_state *st, size_t *mark, const struct fetch_item *it, const uint8_t *data,
             size_t len, const struct message *msg, const uint8_t *raw, size_t raw_len)
{
	struct buf tmp = BUF_INIT(0);
	const uint8_t *p;
	size_t n;

	section_bytes(it, data, len, msg, &tmp, &p, &n);
	buf_printf(&st->text, "%s {%zu}\r\n", it->resp, n);
	if (n > 0 && p >= data && p < data + len) {
		size_t pos = (size_t)(p - data);
		bool half = false;

		if (st->crlf) {
			/* Sections are found in the CRLF form; the literal is
			 * read from the stored bytes, converted as it goes. */
			size_t conv = pos;
			pos = 0;
			crlf_walk(raw, raw_len, &pos, &half, NULL, conv);
		}
		seg_text(st, mark);
		seg_add(st, true, pos, n, half);
	} else if (n > 0) {
		buf_append(&st->text, p, n);
	}
	buf_free(&tmp);
}

/*
 * Plan the response for view index idx: 0 with st->busy set, or
 * ROOST_ENOTFOUND when the message is gone, or another error (nothing to
 * send either way).
 */
static int
fetch_plan(struct imap_cmd *cmd, struct fetch_state *st, size_t idx, bool add_flags)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct fetch_req *req = &st->req;
	struct view_msg *m = &v->msgs[idx];
	struct msg_view mv = {0};
	struct message *msg = NULL;
	struct parsed_cache pc = {.raw = BUF_INIT(0)};
	struct buf conv = BUF_INIT(0);
	const uint8_t *data = NULL;
	size_t len = 0;
	bool have_view = false, have_cache = false;
	int rc = 0;

	st->crlf = false;
	if (req->need_cache || req->need_vsize) {
		if (mailbox_cache_get(v->mb, m->rec.uid, &pc.raw) == 0 && cache_decode(&pc))
			have_cache = pc.have_parts;
		else
			pc.have_vsize = pc.have_parts = false;
	}
	bool need_vsize = req->need_vsize && !pc.have_vsize;
	if (req->need_data || (req->need_cache && !have_cache) || need_vsize) {
		rc = mailbox_read(v->mb, m->rec.uid, &mv);
		if (rc < 0)
			goto out;
		have_view = true;
		data = mv.data;
		len = mv.len;
		if (has_bare_lf(data, len)) {
			/* IMAP speaks CRLF; a file written by another Maildir
			 * tool may hold bare LFs. */
			crlf_copy(data, len, &conv);
			data = conv.data;
			len = conv.len;
			st->crlf = true;
		}
		if (req->need_parse || (req->need_cache && !have_cache)) {
			const struct roost_config *cfg = s->sv->cfg;
			struct message_limits lim = {cfg->mime_max_depth, cfg->mime_max_parts,
			                             cfg->max_header_size, cfg->max_header_fields};
			rc = message_parse(data, len, &lim, &msg);
			if (rc < 0)
				goto out;
		}
		if (need_vsize || (req->need_cache && !have_cache)) {
			/* What BODY[] sends: the converted length. */
			pc.vsize = len;
			pc.have_vsize = true;
		}
		if (req->need_cache && !have_cache) {
			have_cache = cache_build(v->mb, m->rec.uid, msg, &pc);
			if (!have_cache) {
				rc = ROOST_EIO;
				goto out;
			}
		} else if (need_vsize) {
			/* Keep what the cache held, add the size. */
			if (pc.have_parts)
				cache_store(v->mb, m->rec.uid, &pc, pc.env, pc.env_len, pc.body,
				            pc.body_len, pc.bs, pc.bs_len);
			else
				cache_store(v->mb, m->rec.uid, &pc, "", 0, "", 0, "", 0);
		}
	}

	struct buf *t = &st->text;
	struct buf b = BUF_INIT(0);
	size_t mark = 0;
	buf_reset(t);
	st->n_segs = 0;
	buf_printf(t, "* %zu FETCH (", idx + 1);
	bool first = true;
	for (size_t i = 0; i < req->n; i++) {
		const struct fetch_item *it = &req->items[i];
		if (!first)
			buf_append_str(t, " ");
		first = false;
		switch (it->kind) {
		case F_FLAGS:
			buf_reset(&b);
			view_format_flags(v, m, &b);
			buf_printf(t, "FLAGS %s", buf_cstr(&b));
			break;
		case F_UID:
			buf_printf(t, "UID %u", m->rec.uid);
			break;
		case F_MODSEQ:
			buf_printf(t, "MODSEQ (%llu)", (unsigned long long)m->rec.modseq);
			break;
		case F_INTERNALDATE: {
			char d[32];
			imap_format_datetime(m->rec.internal_date, d);
			buf_printf(t, "INTERNALDATE \"%s\"", d);
			break;
		}
		case F_SIZE:
			buf_printf(t, "RFC822.SIZE %llu", (unsigned long long)pc.vsize);
			break;
		case F_ENVELOPE:
			buf_append_str(t, "ENVELOPE ");
			buf_append(t, pc.env, pc.env_len);
			break;
		case F_BODY:
			buf_append_str(t, "BODY ");
			buf_append(t, pc.body, pc.body_len);
			break;
		case F_BODYSTRUCTURE:
			buf_append_str(t, "BODYSTRUCTURE ");
			buf_append(t, pc.bs, pc.bs_len);
			break;
		case F_SECTION:
			plan_section(st, &mark, it, data, len, msg, mv.data, mv.len);
			break;
		}
	}
	if (add_flags && !req->has_flags) {
		buf_reset(&b);
		view_format_flags(v, m, &b);
		buf_printf(t, " FLAGS %s", buf_cstr(&b));
	}
	buf_append_str(t, ")\r\n");
	buf_free(&b);
	seg_text(st, &mark);
	st->busy = true;
	st->uid = m->rec.uid;
	st->seg = 0;
	st->seg_sent = 0;
	for (size_t i = 0; i < st->n_segs && have_view; i++) {
		if (st->segs[i].from_msg) {
			/* The literals read from it: keep it for now. */
			st->mv = mv;
			st->have_mv = true;
			st->raw_len = mv.len;
			have_view = false;
		}
	}
out:
	message_free(&msg);
	if (have_view)
		msg_view_release(&mv);
	buf_free(&pc.raw);
	buf_free(&conv);
	return rc;
}

/* Read the current message again in a later step (its view pinned a
 * snapshot and was released when the last step ended). */
static int
fetch_reread(struct imap_cmd *cmd, struct fetch_state *st)
{
	int rc = mailbox_read(cmd->s->view.mb, st->uid, &st->mv);

	if (rc == 0 && st->mv.len != st->raw_len) {
		msg_view_release(&st->mv);
		rc = ROOST_EIO;
	}
	if (rc < 0)
		return rc;
	st->have_mv = true;
	return 0;
}

/*
 * Write the planned response of the current message, a chunk at a time.
 * 0 once all of it is written; ROOST_EAGAIN when the output is full (the
 * caller yields); ROOST_ECLOSED when the peer is gone; another error when
 * the message cannot be read any more to complete a literal whose size
 * went out already.
 */
static int
fetch_send(struct imap_cmd *cmd, struct fetch_state *st)
{
	struct conn *c = cmd->c;
	uint8_t chunk[FETCH_CHUNK];
	int rc;

	while (st->seg < st->n_segs) {
		const struct fetch_seg *sg = &st->segs[st->seg];

		if (st->seg_sent == 0 && sg->from_msg) {
			st->raw_pos = (size_t)sg->off;
			st->half = sg->half;
		}
		while (st->seg_sent < sg->len) {
			size_t want = sg->len - st->seg_sent > FETCH_CHUNK
			                  ? FETCH_CHUNK
			                  : (size_t)(sg->len - st->seg_sent);

			if (conn_is_closing(c))
				return ROOST_ECLOSED;
			if (conn_output_full(c))
				return ROOST_EAGAIN;
			if (!sg->from_msg) {
				rc = conn_write(c, st->text.data + sg->off + st->seg_sent, want);
			} else {
				if (!st->have_mv && (rc = fetch_reread(cmd, st)) < 0)
					return rc;
				if (!st->crlf) {
					if (st->raw_pos + want > st->mv.len)
						return ROOST_EIO;
					rc = conn_write(c, st->mv.data + st->raw_pos, want);
					st->raw_pos += want;
				} else {
					if (crlf_walk(st->mv.data, st->mv.len, &st->raw_pos,
					              &st->half, chunk, want) != want)
						return ROOST_EIO;
					rc = conn_write(c, chunk, want);
				}
			}
			if (rc < 0)
				return ROOST_ECLOSED;
			st->seg_sent += want;
		}
		st->seg++;
		st->seg_sent = 0;
	}
	return 0;
}

/* The step is over: a view that pins a snapshot goes (storage.h). */
static void
fetch_pause(struct fetch_state *st)
{
	if (st->have_mv && !st->mv.holdable) {
		msg_view_release(&st->mv);
		st->have_mv = false;
	}
}

static void
fetch_msg_done(struct fetch_state *st)
{
	if (st->have_mv)
		msg_view_release(&st->mv);
	st->have_mv = false;
	st->busy = false;
}

static void
fetch_state_free(struct imap_cmd *cmd)
{
	struct fetch_state *st = cmd->state;

	if (st == NULL)
		return;
	fetch_msg_done(st);
	buf_free(&st->text);
	free(st->segs);
	cmd->state = NULL;
}

/* One step of FETCH: messages (and chunks of their literals) until the
 * output is full, then yield; the tagged reply after the last one. */
static void
fetch_step(struct imap_cmd *cmd)
{
	struct fetch_state *st = cmd->state;
	struct imap_view *v = &cmd->s->view;
	int rc;

	for (;;) {
		if (st->busy) {
			rc = fetch_send(cmd, st);
			if (rc == ROOST_EAGAIN) {
				fetch_pause(st);
				imap_yield(cmd, fetch_step);
				return;
			}
			if (rc < 0) {
				/* The literal's size is out and its octets cannot
				 * follow: only closing keeps the stream sound. The
				 * client sees the message expunged when it is back. */
				if (rc != ROOST_ECLOSED)
					log_info("conn=%llu proto=imap event=fetch-aborted uid=%u "
					         "literal_sent=%llu literal_size=%llu err=\"%s\"",
					         (unsigned long long)conn_id(cmd->c), st->uid,
					         (unsigned long long)st->seg_sent,
					         (unsigned long long)st->segs[st->seg].len,
					         roost_strerror(rc));
				fetch_msg_done(st);
				cmd->done = true;
				conn_close(cmd->c);
				return;
			}
			fetch_msg_done(st);
		}
		if (st->next >= st->n || conn_is_closing(cmd->c))
			break;
		if (conn_output_full(cmd->c)) {
			imap_yield(cmd, fetch_step);
			return;
		}
		size_t i = st->next++;
		bool seen = st->seen_now != NULL && st->seen_now[i];
		if (st->req.changedsince != 0 &&
		    v->msgs[st->idx[i]].rec.modseq <= st->req.changedsince && !seen)
			continue;
		rc = fetch_plan(cmd, st, st->idx[i], seen);
		if (rc == ROOST_ENOTFOUND)
			st->gone = true;
		else if (rc < 0)
			log_warn("conn=%llu proto=imap event=fetch-failed uid=%u err=%s",
			         (unsigned long long)conn_id(cmd->c), v->msgs[st->idx[i]].rec.uid,
			         roost_strerror(rc));
	}
	if (st->gone)
		imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Some messages were expunged");
	else
		imap_tagged(cmd, "OK", "FETCH completed");
}

void
cmd_fetch(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	struct fetch_state *st = arena_alloc(&cmd->arena, sizeof(*st));
	struct fetch_req *req = &st->req;
	bool vanished = false;
	uint32_t *idx;
	size_t n;
	int rc;

	cmd->state = st;
	cmd->state_free = fetch_state_free;
	if (cmd->p.n < 2 || cmd->p.n > 3 || cmd->p.args[0].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: FETCH sequence-set items [(CHANGEDSINCE modseq)]");
		return;
	}
	if (parse_fetch_items(cmd, &cmd->p.args[1], req) < 0) {
		imap_bad(cmd, "Invalid FETCH items");
		return;
	}
	if (cmd->p.n == 3) {
		const struct imap_arg *l = &cmd->p.args[2];
		if (l->type != ARG_LIST || l->n < 2 || l->n > 3 ||
		    !imap_arg_atom_eq(&l->list[0], "CHANGEDSINCE") ||
		    parse_modseq(&l->list[1], false, &req->changedsince) < 0 ||
		    (l->n == 3 && !imap_arg_atom_eq(&l->list[2], "VANISHED"))) {
			imap_bad(cmd, "Invalid FETCH modifier");
			return;
		}
		if (l->n == 3 && (!cmd->uid || !s->qresync)) {
			imap_bad(cmd, "VANISHED needs UID FETCH and QRESYNC enabled");
			return;
		}
		vanished = l->n == 3;
		s->condstore = true; /* RFC 7162 3.1 */
		if (!req->has_modseq) {
			memset(&req->items[req->n], 0, sizeof(req->items[0]));
			req->items[req->n++].kind = F_MODSEQ;
			req->has_modseq = true;
		}
	}
	rc = view_resolve_set(cmd, cmd->p.args[0].str, cmd->uid, &idx, &n);
	if (rc < 0) {
		imap_bad(cmd, "Invalid message sequence set");
		return;
	}
	if (vanished) {
		/* RFC 7162 3.2.6: UIDs of the set expunged since CHANGEDSINCE. */
		struct seqset set;
		if (seqset_parse(&cmd->arena, cmd->p.args[0].str, &set) == 0) {
			seqset_resolve(&set, v->uidnext > 1 ? v->uidnext - 1 : 1);
			view_vanished_earlier(s, req->changedsince, &set);
		}
	}
	/* \Seen first, so the responses carry the new flags. */
	bool *seen_now = NULL;
	if (req->sets_seen && !v->readonly && n > 0) {
		uint32_t *uids = arena_alloc(&cmd->arena, n * sizeof(*uids));
		size_t k = 0;
		seen_now = arena_alloc(&cmd->arena, n * sizeof(bool));
		for (size_t i = 0; i < n; i++) {
			struct view_msg *m = &v->msgs[idx[i]];
			if (!(m->rec.flags & MSG_SEEN) && !m->expunged) {
				uids[k++] = m->rec.uid;
				seen_now[i] = true;
			}
		}
		if (k > 0) {
			struct store_req sr = {.mode = STORE_ADD, .flags = MSG_SEEN};
			uint32_t *mod = NULL;
			size_t n_mod = 0;
			int src = mailbox_store(v->mb, uids, k, &sr, &mod, &n_mod);
			free(mod);
			if (src == 0) {
				for (size_t i = 0; i < n; i++)
					if (seen_now[i])
						v->msgs[idx[i]].rec.flags |= MSG_SEEN;
			} else {
				memset(seen_now, 0, n * sizeof(bool));
			}
		}
	}
	st->idx = idx;
	st->n = n;
	st->seen_now = seen_now;
	fetch_step(cmd);
}

/* ------------------------------------------------------------------ */
/* STORE                                                               */

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static bool
bsearch_u32(const uint32_t *v, size_t n, uint32_t key)
{
	return bsearch(&key, v, n, sizeof(*v), u32_cmp) != NULL;
}

/* STORE between steps (in the command's arena). */
struct store_state {
	uint32_t *idx;  /* view indexes of the set, ascending */
	size_t n, next; /* how many, the next to report */
	uint32_t *mod;  /* UIDs UNCHANGEDSINCE refused (heap), ascending */
	size_t n_mod;
	struct mailbox_changes ch; /* the new MODSEQs (have_ch) */
	bool have_ch;
	enum store_mode mode;
	uint32_t flags;
	uint64_t kwbits;
	bool silent, gone, conditional;
	uint32_t *mod_ids; /* what [MODIFIED] lists */
	size_t n_mod_ids;
};

static void
store_state_free(struct imap_cmd *cmd)
{
	struct store_state *st = cmd->state;

	if (st == NULL)
		return;
	if (st->have_ch)
		mailbox_changes_free(&st->ch);
	free(st->mod);
	cmd->state = NULL;
}

/* The record of uid in recs[0..n) (ascending UIDs), or NULL. */
static const struct msg_record *
find_record(const struct msg_record *recs, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (recs[mid].uid == uid)
			return &recs[mid];
		if (recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static imap_step_fn store_step;

void
cmd_store(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct imap_arg *a = cmd->p.args;
	struct store_req sr = {0};
	const char **kw;
	size_t n_kw;
	uint32_t flags;
	uint32_t *idx;
	size_t n;
	bool silent = false;
	int rc;

	bool conditional = false;
	const char *set_text = cmd->p.n > 0 && a[0].type == ARG_ATOM ? a[0].str : NULL;
	size_t nargs = cmd->p.n;
	if (nargs >= 4 && a[1].type == ARG_LIST) {
		/* RFC 7162 3.1.3: STORE set (UNCHANGEDSINCE modseq) ... */
		if (a[1].n != 2 || !imap_arg_atom_eq(&a[1].list[0], "UNCHANGEDSINCE") ||
		    parse_modseq(&a[1].list[1], true, &sr.unchanged_since) < 0) {
			imap_bad(cmd, "Invalid STORE modifier");
			return;
		}
		conditional = true;
		s->condstore = true;
		a++;
		nargs--;
	}
	if (nargs < 3 || set_text == NULL || a[1].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: STORE sequence-set [+-]FLAGS[.SILENT] (flags)");
		return;
	}
	const char *op = a[1].str;
	if (*op == '+') {
		sr.mode = STORE_ADD;
		op++;
	} else if (*op == '-') {
		sr.mode = STORE_REMOVE;
		op++;
	} else {
		sr.mode = STORE_REPLACE;
	}
	if (strcasecmp(op, "FLAGS.SILENT") == 0)
		silent = true;
	else if (strcasecmp(op, "FLAGS") != 0) {
		imap_bad(cmd, "Invalid STORE item");
		return;
	}
	if (nargs == 3 && a[2].type == ARG_LIST)
		rc = imap_parse_flags(cmd, a[2].list, a[2].n, &flags, &kw, &n_kw);
	else
		rc = imap_parse_flags(cmd, &a[2], nargs - 2, &flags, &kw, &n_kw);
	if (rc == ROOST_EPERM) {
		imap_bad(cmd, "\\Recent cannot be stored");
		return;
	}
	if (rc < 0) {
		imap_bad(cmd, "Invalid flags");
		return;
	}
	rc = view_resolve_set(cmd, set_text, cmd->uid, &idx, &n);
	if (rc < 0) {
		imap_bad(cmd, "Invalid message sequence set");
		return;
	}
	if (v->readonly) {
		imap_tagged(cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	uint32_t *uids = arena_alloc(&cmd->arena, (n ? n : 1) * sizeof(*uids));
	size_t k = 0;
	bool gone = false;
	for (size_t i = 0; i < n; i++) {
		if (v->msgs[idx[i]].expunged)
			gone = true;
		else
			uids[k++] = v->msgs[idx[i]].rec.uid;
	}
	sr.flags = flags;
	sr.keywords = kw;
	sr.n_keywords = n_kw;
	uint32_t *mod = NULL;
	size_t n_mod = 0;
	uint64_t before = v->modseq;
	if (k > 0 && conditional && sr.unchanged_since == 0) {
		/* Every message has a MODSEQ above 0: all fail (RFC 7162). */
		mod = xcalloc(k, sizeof(*mod));
		memcpy(mod, uids, k * sizeof(*mod));
		n_mod = k;
	} else if (k > 0) {
		rc = mailbox_store(v->mb, uids, k, &sr, &mod, &n_mod);
		if (rc < 0) {
			free(mod);
			imap_reply_error(cmd, rc, NULL);
			return;
		}
	}
	/* New MODSEQs of what we changed (CONDSTORE). */
	struct mailbox_changes ch = {0};
	bool have_ch = s->condstore && k > n_mod && mailbox_changes_since(v->mb, before, &ch) == 0;
	/* Apply the change to the view the way storage did, so the sync
	 * that follows reports only what others changed. */
	view_refresh_keywords(s, true);
	uint64_t kwbits = 0;
	for (size_t i = 0; i < n_kw; i++)
		for (size_t j = 0; j < v->n_keywords && j < 64; j++)
			if (strcasecmp(v->keywords[j], kw[i]) == 0)
				kwbits |= (uint64_t)1 << j;
	struct store_state *st = arena_alloc(&cmd->arena, sizeof(*st));
	st->idx = idx;
	st->n = n;
	st->mod = mod;
	st->n_mod = n_mod;
	st->ch = ch;
	st->have_ch = have_ch;
	st->mode = sr.mode;
	st->flags = flags;
	st->kwbits = kwbits;
	st->silent = silent;
	st->gone = gone;
	st->conditional = conditional;
	st->mod_ids = arena_alloc(&cmd->arena, (n_mod ? n_mod : 1) * sizeof(*st->mod_ids));
	cmd->state = st;
	cmd->state_free = store_state_free;
	store_step(cmd);
}

/* The untagged FETCH of each stored message, yielding when the output is
 * full (STORE 1:* on a large mailbox); the tagged reply after the last. */
static void
store_step(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	struct store_state *st = cmd->state;
	const uint32_t *idx = st->idx;
	struct buf b = BUF_INIT(0);
	struct buf modified = BUF_INIT(0);

	for (; st->next < st->n; st->next++) {
		size_t i = st->next;
		struct view_msg *m = &v->msgs[idx[i]];
		if (m->expunged)
			continue;
		if (st->n_mod > 0 && bsearch_u32(st->mod, st->n_mod, m->rec.uid)) {
			st->mod_ids[st->n_mod_ids++] = cmd->uid ? m->rec.uid : idx[i] + 1;
			continue;
		}
		if (conn_output_full(cmd->c)) {
			buf_free(&b);
			imap_yield(cmd, store_step);
			return;
		}
		if (st->have_ch) {
			const struct msg_record *r =
			    find_record(st->ch.changed, st->ch.n_changed, m->rec.uid);
			if (r != NULL)
				m->rec.modseq = r->modseq;
		}
		switch (st->mode) {
		case STORE_ADD:
			m->rec.flags |= st->flags;
			m->rec.keywords |= st->kwbits;
			break;
		case STORE_REMOVE:
			m->rec.flags &= ~st->flags;
			m->rec.keywords &= ~st->kwbits;
			break;
		case STORE_REPLACE:
			m->rec.flags = st->flags;
			m->rec.keywords = st->kwbits;
			break;
		}
		if (s->condstore) {
			buf_reset(&b);
			if (!st->silent) {
				buf_append_str(&b, " FLAGS ");
				view_format_flags(v, m, &b);
			}
			if (cmd->uid)
				imap_untagged(s, "%u FETCH (UID %u%s MODSEQ (%llu))", idx[i] + 1,
				              m->rec.uid, buf_cstr(&b),
				              (unsigned long long)m->rec.modseq);
			else
				imap_untagged(s, "%u FETCH (%s%sMODSEQ (%llu))", idx[i] + 1,
				              b.len > 0 ? buf_cstr(&b) + 1 : "",
				              b.len > 0 ? " " : "",
				              (unsigned long long)m->rec.modseq);
		} else if (!st->silent) {
			buf_reset(&b);
			view_format_flags(v, m, &b);
			if (cmd->uid)
				imap_untagged(s, "%u FETCH (UID %u FLAGS %s)", idx[i] + 1,
				              m->rec.uid, buf_cstr(&b));
			else
				imap_untagged(s, "%u FETCH (FLAGS %s)", idx[i] + 1, buf_cstr(&b));
		}
	}
	buf_free(&b);
	if (st->n_mod_ids > 0) {
		qsort(st->mod_ids, st->n_mod_ids, sizeof(*st->mod_ids), u32_cmp);
		seqset_format(st->mod_ids, st->n_mod_ids, &modified);
	}
	if (st->gone)
		imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Some messages were expunged");
	else if (modified.len > 0)
		imap_tagged(cmd, "OK", "[MODIFIED %s] Conditional STORE failed for some",
		            buf_cstr(&modified));
	else
		imap_tagged(cmd, "OK", "%sSTORE completed", st->conditional ? "Conditional " : "");
	buf_free(&modified);
}

/* ------------------------------------------------------------------ */
/* COPY / MOVE                                                         */

static void
do_copy(struct imap_cmd *cmd, bool move)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	char *dest;
	uint32_t *idx, *src = NULL, *dst = NULL;
	size_t n, n_copied = 0;
	uint32_t uv = 0;
	int rc;

	if (cmd->p.n != 2 || cmd->p.args[0].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: %s sequence-set mailbox", cmd->p.name);
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[1], &dest) < 0)
		return;
	rc = view_resolve_set(cmd, cmd->p.args[0].str, cmd->uid, &idx, &n);
	if (rc < 0) {
		imap_bad(cmd, "Invalid message sequence set");
		return;
	}
	if (move && v->readonly) {
		imap_tagged(cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	uint32_t *uids = arena_alloc(&cmd->arena, (n ? n : 1) * sizeof(*uids));
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!v->msgs[idx[i]].expunged)
			uids[k++] = v->msgs[idx[i]].rec.uid;
	if (k == 0) {
		if (n > 0)
			imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Messages were expunged");
		else
			imap_tagged(cmd, "OK", "No messages");
		return;
	}
	rc = mailbox_copy(v->mb, uids, k, dest, move, &uv, &src, &dst, &n_copied);
	if (rc == ROOST_ENOTFOUND) {
		imap_tagged(cmd, "NO", "[TRYCREATE] Mailbox does not exist");
		goto out;
	}
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		goto out;
	}
	struct buf sb = BUF_INIT(0), db = BUF_INIT(0);
	seqset_format(src, n_copied, &sb);
	seqset_format(dst, n_copied, &db);
	if (move) {
		if (n_copied > 0)
			imap_untagged(s, "OK [COPYUID %u %s %s] Moved", uv, buf_cstr(&sb),
			              buf_cstr(&db));
		/* The moved messages go now (RFC 6851 allows the EXPUNGEs
		 * even for MOVE by sequence number). */
		for (size_t i = 0; i < n_copied; i++) {
			uint32_t seq = view_seq_of_uid(v, src[i]);
			if (seq > 0 && !v->msgs[seq - 1].expunged) {
				v->msgs[seq - 1].expunged = true;
				v->n_pending_expunge++;
			}
		}
		view_sync(s, true);
		imap_tagged(cmd, "OK", "MOVE completed");
	} else if (n_copied > 0) {
		imap_tagged(cmd, "OK", "[COPYUID %u %s %s] COPY completed", uv, buf_cstr(&sb),
		            buf_cstr(&db));
	} else {
		imap_tagged(cmd, "OK", "COPY completed");
	}
	buf_free(&sb);
	buf_free(&db);
out:
	free(src);
	free(dst);
}

void
cmd_copy(struct imap_cmd *cmd)
{
	do_copy(cmd, false);
}

void
cmd_move(struct imap_cmd *cmd)
{
	do_copy(cmd, true);
}
