/*
 * The MIME part tree: one pass over the message, line by line.
 *
 * The parser keeps the deepest open part ("cur") and walks the lines of the
 * message once. Every line that starts with "--" is compared with the
 * boundaries of the open multiparts on cur's ancestor chain (at most
 * max_depth of them), so the work per line is bounded by the nesting limit
 * and the whole parse is linear in the message size. As Dovecot does (and
 * RFC 2046 allows), the boundary only has to be a prefix of the line, and
 * when several open boundaries match, the longest wins. The line end before
 * a boundary line belongs to the boundary, not to the part it closes.
 *
 * Past the limits (depth, part count, header size and field count) the
 * parser stops building structure and treats the bytes as part content.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/xalloc.h"

#include "message_impl.h"

#define CHUNK_PARTS 64

struct part_chunk {
	struct part_chunk *next;
	unsigned used;
	struct mpart parts[CHUNK_PARTS];
};

struct parser {
	struct message *msg;
	const uint8_t *d;
	size_t len;
	size_t pos;   /* start of the next line */
	uint64_t nl;  /* LFs in d[0..pos) */
	uint64_t blf; /* bare LFs (no CR before) in d[0..pos) */
	struct mpart *cur;
	bool in_header; /* next: cur's header (else cur's body) */
};

static struct mpart *
part_new(struct message *msg, struct mpart *parent)
{
	struct part_chunk *c = msg->chunks;
	struct mpart *p;

	if (c == NULL || c->used == CHUNK_PARTS) {
		c = xcalloc(1, sizeof(*c));
		c->next = msg->chunks;
		msg->chunks = c;
	}
	p = &c->parts[c->used++];
	msg->nparts++;
	if (parent != NULL) {
		p->pub.parent = &parent->pub;
		p->depth = parent->depth + 1;
		if (parent->last_child == NULL)
			parent->pub.children = &p->pub;
		else
			parent->last_child->pub.next = &p->pub;
		parent->last_child = p;
	}
	return p;
}

static inline bool
can_add_part(const struct parser *ps, const struct mpart *parent)
{
	return ps->msg->nparts < ps->msg->limits.max_parts &&
	       parent->depth + 1 <= ps->msg->limits.max_depth;
}

/* Length of the line at off without its line end; *next_r = the next line. */
static inline size_t
line_at(const struct parser *ps, size_t off, size_t *next_r, bool *lf_r)
{
	const uint8_t *e = memchr(ps->d + off, '\n', ps->len - off);
	size_t l;

	if (e == NULL) {
		*next_r = ps->len;
		*lf_r = false;
		return ps->len - off;
	}
	l = (size_t)(e - (ps->d + off));
	*next_r = off + l + 1;
	*lf_r = true;
	if (l > 0 && ps->d[off + l - 1] == '\r')
		l--;
	return l;
}

/*
 * The open multipart whose boundary the line d[s..s+l) is, or NULL. Sets
 * *close_r for a close delimiter ("--boundary--").
 */
static struct mpart *
boundary_match(const struct parser *ps, size_t s, size_t l, bool *close_r)
{
	const uint8_t *line = ps->d + s;
	struct mpart *best = NULL, *p;

	if (l < 2 || line[0] != '-' || line[1] != '-')
		return NULL;
	for (p = ps->cur; p != NULL; p = (struct mpart *)p->pub.parent) {
		if (p->boundary == NULL || p->closed)
			continue;
		if (p->boundary_len <= l && memcmp(p->boundary, line, p->boundary_len) == 0 &&
		    (best == NULL || best->boundary_len < p->boundary_len))
			best = p;
	}
	if (best != NULL)
		*close_r = l >= best->boundary_len + 2 && line[best->boundary_len] == '-' &&
		           line[best->boundary_len + 1] == '-';
	return best;
}

static void
part_end(struct parser *ps, struct mpart *p, size_t end, uint64_t nl_end, uint64_t blf_end)
{
	size_t off = p->pub.body_off;

	if (end <= off) {
		p->pub.body_len = 0;
		p->pub.body_lines = 0;
		p->pub.body_vsize = 0;
		return;
	}
	p->pub.body_len = end - off;
	/* body_lines holds the LF count at body start until the part ends */
	p->pub.body_lines = nl_end - p->pub.body_lines;
	p->pub.body_vsize = p->pub.body_len + (blf_end - p->blf_body);
}

/* Close every part from cur up to (not including) stop, at offset end. */
static void
close_up_to(struct parser *ps, struct mpart *stop, size_t end, uint64_t nl_end, uint64_t blf_end)
{
	struct mpart *p = ps->cur;

	while (p != NULL && p != stop) {
		part_end(ps, p, end, nl_end, blf_end);
		p = (struct mpart *)p->pub.parent;
	}
	ps->cur = stop;
}

static bool
ci_prefix(const uint8_t *p, size_t l, const char *s, size_t *n_r)
{
	size_t n = strlen(s), i;

	if (l < n)
		return false;
	for (i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c >= 'A' && c <= 'Z')
			c += 32;
		if (c != (uint8_t)s[i])
			return false;
	}
	*n_r = n;
	return true;
}

/*
 * After the header of cur: decide from its Content-Type whether it is a
 * multipart (remember "--boundary") or a message/rfc822 (start the embedded
 * message's part, whose header comes next). children = false when a
 * boundary cut the header short: the part then has an empty body.
 */
static void
header_done(struct parser *ps, const uint8_t *ct, size_t ct_len, bool have_ct, bool children)
{
	struct mpart *p = ps->cur, *parent = (struct mpart *)p->pub.parent;
	const struct message_limits *lim = &ps->msg->limits;
	struct content_type t;
	bool rfc822 = false;

	p->pub.body_off = ps->pos;
	p->pub.body_lines = ps->nl;
	p->blf_body = ps->blf;
	p->pub.header_vsize = p->pub.header_len + (ps->blf - p->blf_hdr);
	ps->in_header = false;
	if (have_ct && message_parse_content_type(ct, ct_len, &t) && !t.broken) {
		if (message_token_eq(t.type, t.type_len, "multipart")) {
			const struct message_param *b = message_params_get(&t.params, "boundary");
			p->pub.is_multipart = true;
			/* an empty boundary is a boundary ("--"), as in Dovecot */
			if (b != NULL && p->depth + 1 <= lim->max_depth) {
				p->boundary = xmalloc(b->value_len + 2);
				p->boundary[0] = '-';
				p->boundary[1] = '-';
				memcpy(p->boundary + 2, b->value, b->value_len);
				p->boundary_len = b->value_len + 2;
			}
			p->digest = message_token_eq(t.sub, t.sub_len, "digest");
		} else if (message_token_eq(t.type, t.type_len, "message") &&
		           message_token_eq(t.sub, t.sub_len, "rfc822")) {
			rfc822 = true;
		}
		message_content_type_free(&t);
	} else if (have_ct) {
		message_content_type_free(&t);
	} else if (parent != NULL && parent->digest) {
		rfc822 = true;
	}
	if (rfc822) {
		p->pub.is_message_rfc822 = true;
		if (children && can_add_part(ps, p)) {
			struct mpart *c = part_new(ps->msg, p);
			c->pub.header_off = ps->pos;
			c->blf_hdr = ps->blf;
			ps->cur = c;
			ps->in_header = true;
		}
	}
}

/*
 * A boundary line of m at s (next line at e, LF count before it nl_s):
 * close the parts inside m; start m's next part or its epilogue.
 */
static void
on_boundary(struct parser *ps, struct mpart *m, bool is_close, size_t s, size_t e, uint64_t nl_s,
            uint64_t blf_s, bool in_body)
{
	size_t end = s;
	uint64_t nl_end = nl_s, blf_end = blf_s;

	/* the line end before a boundary belongs to the boundary, except
	 * when it ends a header line (which keeps it, as Dovecot counts) */
	if (in_body && end > 0 && ps->d[end - 1] == '\n') {
		end--;
		nl_end--;
		if (end > 0 && ps->d[end - 1] == '\r')
			end--;
		else
			blf_end--;
	}
	/* but never into the header of the part it ends: when the body is
	 * empty, the blank line stays with the header (and with the sizes of
	 * the enclosing parts), as Dovecot counts it */
	if (end < ps->cur->pub.body_off && ps->cur->pub.body_off <= s) {
		end = ps->cur->pub.body_off;
		nl_end = ps->cur->pub.body_lines;
		blf_end = ps->cur->blf_body;
	}
	close_up_to(ps, m, end, nl_end, blf_end);
	ps->pos = e;
	ps->in_header = false;
	if (is_close) {
		m->closed = true;
	} else if (e == ps->len && (e == s || ps->d[e - 1] != '\n')) {
		/* "--boundary" as the unterminated last line ends the part but
		 * starts none: nothing follows it */
	} else {
		struct mpart *c = part_new(ps->msg, m);
		c->pub.header_off = e;
		c->blf_hdr = ps->blf;
		ps->cur = c;
		ps->in_header = true;
	}
}

/* Usable boundary line at s? (A new part only while under the part cap.) */
static struct mpart *
boundary_usable(struct parser *ps, size_t s, size_t l, bool *close_r)
{
	struct mpart *m = boundary_match(ps, s, l, close_r);

	if (m != NULL && !*close_r && ps->msg->nparts >= ps->msg->limits.max_parts)
		return NULL;
	return m;
}

/* Count the LF that ends the line at s (its offset is e - 1). */
static inline void
count_lf(struct parser *ps, size_t s, size_t e)
{
	ps->nl++;
	if (e - 1 == s || ps->d[e - 2] != '\r')
		ps->blf++;
}

/* The header block of cur, from ps->pos. */
static void
parse_header(struct parser *ps)
{
	struct mpart *p = ps->cur;
	const struct message_limits *lim = &ps->msg->limits;
	size_t start = ps->pos, ct_off = 0, ct_end = 0;
	unsigned fields = 0;
	bool in_ct = false, have_ct = false;

	p->pub.header_off = start;
	while (ps->pos < ps->len) {
		size_t s = ps->pos, e, l, n;
		bool lf, is_close;
		struct mpart *m;

		l = line_at(ps, s, &e, &lf);
		if (l == 0 && lf) {
			ps->pos = e;
			count_lf(ps, s, e);
			break;
		}
		if (l >= 2 && ps->d[s] == '-' && ps->d[s + 1] == '-' &&
		    (m = boundary_usable(ps, s, l, &is_close)) != NULL) {
			uint64_t nl_s = ps->nl, blf_s = ps->blf;
			p->pub.header_len = s - start;
			header_done(ps, ps->d + ct_off, ct_end - ct_off, have_ct, false);
			if (lf)
				count_lf(ps, s, e);
			on_boundary(ps, m, is_close, s, e, nl_s, blf_s, false);
			return;
		}
		if (e - start > lim->max_header_size)
			break;
		if (ps->d[s] == ' ' || ps->d[s] == '\t') {
			if (in_ct)
				ct_end = s + l;
		} else {
			if (++fields > lim->max_header_fields)
				break;
			in_ct = false;
			if (!have_ct && ci_prefix(ps->d + s, l, "content-type", &n)) {
				while (n < l && (ps->d[s + n] == ' ' || ps->d[s + n] == '\t'))
					n++;
				if (n < l && ps->d[s + n] == ':') {
					in_ct = have_ct = true;
					ct_off = s + n + 1;
					ct_end = s + l;
				}
			}
		}
		ps->pos = e;
		if (lf)
			count_lf(ps, s, e);
	}
	p->pub.header_len = ps->pos - start;
	header_done(ps, ps->d + ct_off, ct_end - ct_off, have_ct, true);
}

/* Body lines of cur until a usable boundary line or the end. */
static void
parse_body(struct parser *ps)
{
	while (ps->pos < ps->len) {
		size_t s = ps->pos, e, l;
		bool lf, is_close;
		struct mpart *m;
		const uint8_t *q;

		/* fast path: a line not starting with "--" is only counted */
		if (ps->d[s] != '-' || s + 1 >= ps->len || ps->d[s + 1] != '-') {
			q = memchr(ps->d + s, '\n', ps->len - s);
			if (q == NULL) {
				ps->pos = ps->len;
				break;
			}
			ps->pos = (size_t)(q - ps->d) + 1;
			count_lf(ps, s, ps->pos);
			continue;
		}
		l = line_at(ps, s, &e, &lf);
		m = boundary_usable(ps, s, l, &is_close);
		if (m != NULL) {
			uint64_t nl_s = ps->nl, blf_s = ps->blf;
			if (lf)
				count_lf(ps, s, e);
			on_boundary(ps, m, is_close, s, e, nl_s, blf_s, true);
			if (ps->in_header)
				return;
			continue;
		}
		ps->pos = e;
		if (lf)
			count_lf(ps, s, e);
	}
}

int
message_parse(const uint8_t *data, size_t len, const struct message_limits *limits,
              struct message **msg_r)
{
	static const struct message_limits defaults = MESSAGE_LIMITS_DEFAULT;
	struct message *msg;
	struct parser ps;

	*msg_r = NULL;
	if (len > SIZE_MAX / 2)
		return ROOST_ETOOBIG;
	msg = xcalloc(1, sizeof(*msg));
	msg->data = data;
	msg->len = len;
	msg->limits = limits != NULL ? *limits : defaults;
	if (msg->limits.max_parts == 0)
		msg->limits.max_parts = 1;

	memset(&ps, 0, sizeof(ps));
	ps.msg = msg;
	ps.d = data != NULL ? data : (const uint8_t *)"";
	ps.len = len;
	msg->root = part_new(msg, NULL);
	ps.cur = msg->root;
	/* headers and bodies alternate; each step moves pos forward or, at the
	 * end, finishes a header (which adds at most one part) */
	ps.in_header = true;
	for (;;) {
		if (ps.in_header)
			parse_header(&ps);
		else if (ps.pos < len)
			parse_body(&ps);
		else
			break;
	}
	close_up_to(&ps, NULL, len, ps.nl, ps.blf);
	*msg_r = msg;
	return 0;
}

void
message_free(struct message **msgp)
{
	struct message *msg = *msgp;
	struct part_chunk *c, *next;
	unsigned i;

	if (msg == NULL)
		return;
	for (c = msg->chunks; c != NULL; c = next) {
		next = c->next;
		for (i = 0; i < c->used; i++)
			free(c->parts[i].boundary);
		free(c);
	}
	free(msg);
	*msgp = NULL;
}

const struct message_part *
message_root(const struct message *msg)
{
	return &msg->root->pub;
}

const uint8_t *
message_data(const struct message *msg, size_t *len_r)
{
	*len_r = msg->len;
	return msg->data;
}

static const struct message_part *
nth_child(const struct message_part *p, uint32_t n)
{
	const struct message_part *c = p->children;

	if (n == 0)
		return NULL;
	while (c != NULL && --n > 0)
		c = c->next;
	return c;
}

int
message_find_part(const struct message *msg, const uint32_t *path, size_t depth,
                  const struct message_part **part_r)
{
	const struct message_part *cur = &msg->root->pub;
	bool message_ctx = true; /* cur is a message: its parts are numbered */
	size_t i;

	*part_r = NULL;
	for (i = 0; i < depth; i++) {
		uint32_t n = path[i];

		if (!message_ctx && cur->is_message_rfc822) {
			if (cur->children == NULL)
				return ROOST_ENOTFOUND;
			cur = cur->children;
			message_ctx = true;
		}
		if (cur->is_multipart) {
			cur = nth_child(cur, n);
			if (cur == NULL)
				return ROOST_ENOTFOUND;
		} else if (n != 1) {
			/* a non-multipart message (or part) has only part 1 */
			return ROOST_ENOTFOUND;
		}
		message_ctx = false;
	}
	*part_r = cur;
	return 0;
}
