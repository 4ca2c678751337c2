/*
 * FETCH (every data item, BODY[section]<partial>, PEEK, BINARY[part] and
 * BINARY.SIZE) and its UID form.
 *
 * ENVELOPE, BODY and BODYSTRUCTURE come from the storage cache when it
 * holds them (filled here on the first miss), so a client listing a
 * mailbox does not make us re-parse every message.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/cte.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/message_cache.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

/* The parse cache record (roost/message_cache.h): made here when a FETCH
 * first parses a message that was not delivered (APPEND, COPY of an old
 * one, a file dropped into a Maildir); delivery makes it beforehand. */
#define BINSIZE_MAX MESSAGE_CACHE_BINSIZE_MAX

/* Store pc's parts (when have_parts), vsize (when have_vsize) and the
 * BINARY sizes bin[0..bin_len) (each text may point into pc->raw). */
static void
cache_store_bin(struct mailbox *mb, uint32_t uid, struct message_cache *pc, const char *env,
                size_t env_len, const char *body, size_t body_len, const char *bs, size_t bs_len,
                const char *pv, size_t pv_len, const char *bin, size_t bin_len)
{
	struct buf r = BUF_INIT(0);

	message_cache_encode(&r, pc->vsize, env, env_len, body, body_len, bs, bs_len, pv, pv_len,
	                     bin, bin_len);
	(void)mailbox_cache_set(mb, uid, r.data, r.len);
	buf_free(&pc->raw);
	pc->raw = r;
	if (!message_cache_decode(pc))
		pc->have_parts = false;
}

/* The same, keeping the BINARY sizes the record held. */
static void
cache_store(struct mailbox *mb, uint32_t uid, struct message_cache *pc, const char *env,
            size_t env_len, const char *body, size_t body_len, const char *bs, size_t bs_len,
            const char *pv, size_t pv_len)
{
	cache_store_bin(mb, uid, pc, env, env_len, body, body_len, bs, bs_len, pv, pv_len, pc->bin,
	                pc->bin_len);
}

static bool
cache_build(struct mailbox *mb, uint32_t uid, const struct message *msg, struct message_cache *pc)
{
	struct buf r = BUF_INIT(0);

	if (message_cache_make(msg, pc->vsize, &r) < 0) {
		buf_free(&r);
		return false;
	}
	(void)mailbox_cache_set(mb, uid, r.data, r.len);
	buf_free(&pc->raw);
	pc->raw = r;
	return message_cache_decode(pc) && pc->have_parts;
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
	uint64_t len;  /* octets to send (after CRLF conversion, or decoded) */
	bool half;     /* message: the first raw byte is a bare LF whose CR was sent */
	/* BINARY: the raw bytes [off, off + in_len) decoded as cte, the first
	 * skip decoded octets left out (partial); else cte is CTE_UNKNOWN */
	enum cte_kind cte;
	uint64_t in_len, skip;
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
	size_t seg;             /* the segment being sent */
	uint64_t seg_sent;      /* octets of it written */
	size_t raw_pos;         /* message segment: the next raw byte */
	bool half;              /* message segment: raw_pos is a bare LF, CR written */
	struct cte_decoder dec; /* decoded segment: where the decoding is */

	bool unknown_cte; /* a BINARY part could not be decoded: tagged NO */
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
	st->segs[st->n_segs++] = (struct fetch_seg){from_msg, off, len, half, CTE_UNKNOWN, 0, 0};
}

/* len decoded octets of raw [off, off + in_len), the first skip left out. */
static void
seg_add_decoded(struct fetch_state *st, uint64_t off, uint64_t in_len, enum cte_kind cte,
                uint64_t skip, uint64_t len)
{
	seg_add(st, true, off, len, false);
	if (len > 0) {
		st->segs[st->n_segs - 1].cte = cte;
		st->segs[st->n_segs - 1].in_len = in_len;
		st->segs[st->n_segs - 1].skip = skip;
	}
}

/* A literal (not literal8) cannot carry NUL (RFC 3501 CHAR8): a message
 * stored with one (APPEND with literal8) shows it as 0x80 in BODY[], as
 * Dovecot does; the length stays, and BINARY[] gives the bytes. */
static void
nul_out(uint8_t *p, size_t n)
{
	uint8_t *q = p, *end = p + n;

	while ((q = memchr(q, '\0', (size_t)(end - q))) != NULL)
		*q++ = 0x80;
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
		nul_out(st->text.data + st->text.len - n, n);
	}
	buf_free(&tmp);
}

/* The offset in raw of the octet at conv_off of its CRLF form. */
static size_t
raw_offset(const uint8_t *raw, size_t raw_len, size_t conv_off)
{
	size_t pos = 0;
	bool half = false;

	crlf_walk(raw, raw_len, &pos, &half, NULL, conv_off);
	return pos;
}

/* The BINARY sizes of the message being planned: those its cache record
 * holds, and those measured now (added when the plan is made). */
struct binsizes {
	const struct message_cache *pc;
	struct buf added;
};

/* "<part> <octets> <nul>\n" of one section in bin[0..len): true with the
 * numbers, false when absent. */
static bool
binsize_find(const char *bin, size_t len, const char *key, uint64_t *size_r, bool *nul_r)
{
	size_t kl = strlen(key);

	for (const char *p = bin, *end = bin + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		unsigned long long v;
		int nul;

		if (nl == NULL)
			break;
		if ((size_t)(nl - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == ' ' &&
		    sscanf(p + kl, " %llu %d", &v, &nul) == 2) {
			*size_r = v;
			*nul_r = nul != 0;
			return true;
		}
		p = nl + 1;
	}
	return false;
}

/* The decoded size of a BINARY section: from the cache record, else
 * measured (one decoding pass that keeps nothing) and added to it. */
static void
binary_measure(struct binsizes *bz, const struct fetch_item *it, enum cte_kind cte,
               const uint8_t *in, size_t len, uint64_t *size_r, bool *nul_r)
{
	char key[32 * 11 + 2];
	size_t k = 0;

	key[k++] = '0';
	if (it->depth > 0) {
		k = 0;
		for (size_t i = 0; i < it->depth; i++)
			k += (size_t)snprintf(key + k, sizeof(key) - k, "%s%u", i ? "." : "",
			                      it->path[i]);
	}
	key[k] = '\0';
	if ((bz->pc->bin_len > 0 &&
	     binsize_find(bz->pc->bin, bz->pc->bin_len, key, size_r, nul_r)) ||
	    binsize_find((const char *)bz->added.data, bz->added.len, key, size_r, nul_r))
		return;
	cte_measure(cte, in, len, size_r, nul_r);
	if (bz->pc->bin_len + bz->added.len + k + 24 <= BINSIZE_MAX)
		buf_printf(&bz->added, "%s %llu %d\n", key, (unsigned long long)*size_r,
		           *nul_r ? 1 : 0);
}

/* The part a BINARY item names (NULL when there is none) and its
 * encoding; ROOST_ENOTSUP when that cannot be undone. */
static int
binary_part(const struct message *msg, const struct fetch_item *it,
            const struct message_part **part_r, enum cte_kind *cte_r)
{
	const struct message_part *part = message_root(msg);
	struct message_part_info info;

	*part_r = NULL;
	*cte_r = CTE_BINARY;
	if (it->depth > 0 && message_find_part(msg, it->path, it->depth, &part) < 0)
		return 0;
	message_part_info(msg, part, &info);
	*cte_r = cte_kind_from_name(info.cte);
	message_part_info_free(&info);
	bool composite = part->is_multipart || part->is_message_rfc822;
	if (*cte_r == CTE_UNKNOWN || (composite && (*cte_r == CTE_BASE64 || *cte_r == CTE_QP)))
		return ROOST_ENOTSUP;
	*part_r = part;
	return 0;
}

/* Can every BINARY item of req be answered for msg? */
static bool
binary_decodable(const struct fetch_req *req, const struct message *msg)
{
	for (size_t i = 0; i < req->n; i++) {
		const struct message_part *part;
		enum cte_kind cte;

		if ((req->items[i].kind == F_BINARY || req->items[i].kind == F_BINARY_SIZE) &&
		    binary_part(msg, &req->items[i], &part, &cte) < 0)
			return false;
	}
	return true;
}

/*
 * BINARY[part]<partial> or BINARY.SIZE[part] (RFC 3516) into the plan: the
 * part's content with its transfer encoding undone, as a literal8 when it
 * holds NUL. The decoding itself happens as the literal is sent, a chunk
 * at a time (fetch_send). data/len: the message as parsed (CRLF form),
 * raw/raw_len: as stored. ROOST_ENOTSUP when the encoding cannot be undone
 * (nothing planned: the caller answers [UNKNOWN-CTE]).
 *
 * A multipart or message/rfc822 part may only be 7bit, 8bit or binary
 * (RFC 2045 6.4): its content is its body as it is, the parts inside keep
 * their own encodings. The whole message (BINARY[]) is the message as it
 * is, unless its one body is encoded: then its header, with
 * Content-Transfer-Encoding made "binary", and the body decoded.
 */
static int
plan_binary(struct fetch_state *st, size_t *mark, struct binsizes *bz, const struct fetch_item *it,
            const uint8_t *data, size_t len, const struct message *msg, const uint8_t *raw,
            size_t raw_len)
{
	const struct message_part *part;
	struct buf prefix = BUF_INIT(0);
	size_t b_off = 0, b_len = 0;
	enum cte_kind cte;

	if (binary_part(msg, it, &part, &cte) < 0)
		return ROOST_ENOTSUP;
	if (part != NULL) {
		if (it->depth > 0) {
			b_off = part->body_off;
			b_len = part->body_len;
		} else if (cte == CTE_BASE64 || cte == CTE_QP) {
			static const char *const names[] = {"Content-Transfer-Encoding"};

			message_header_fields(data + part->header_off, part->header_len, names, 1,
			                      true, &prefix);
			/* the new field goes before the blank line */
			if (prefix.len >= 2 && prefix.data[prefix.len - 1] == '\n' &&
			    (prefix.len == 2 || prefix.data[prefix.len - 3] == '\n'))
				buf_truncate(&prefix, prefix.len - 2);
			buf_append_str(&prefix, "Content-Transfer-Encoding: binary\r\n\r\n");
			b_off = part->body_off;
			b_len = part->body_len;
		} else {
			b_len = len;
		}
	}
	/* the stored bytes are decoded, not their CRLF form: binary content
	 * comes back exactly */
	size_t rs = b_off, re = b_off + b_len;
	if (st->crlf) {
		rs = raw_offset(raw, raw_len, b_off);
		re = raw_offset(raw, raw_len, b_off + b_len);
	}
	uint64_t dsize = 0;
	bool nul = false;
	if (re > rs)
		binary_measure(bz, it, cte, raw + rs, re - rs, &dsize, &nul);
	nul = nul || (prefix.len > 0 && memchr(prefix.data, '\0', prefix.len) != NULL);
	uint64_t total = prefix.len + dsize;
	if (it->kind == F_BINARY_SIZE) {
		buf_printf(&st->text, "%s %llu", it->resp, (unsigned long long)total);
		buf_free(&prefix);
		return 0;
	}
	uint64_t o = it->partial ? it->p_off : 0, n = total;
	if (it->partial)
		n = o >= total ? 0 : (it->p_len < total - o ? it->p_len : total - o);
	buf_printf(&st->text, "%s %s{%llu}\r\n", it->resp, nul ? "~" : "", (unsigned long long)n);
	uint64_t skip = 0;
	if (o < prefix.len) {
		uint64_t take = prefix.len - o < n ? prefix.len - o : n;

		buf_append(&st->text, prefix.data + o, (size_t)take);
		n -= take;
	} else {
		skip = o - prefix.len;
	}
	if (n > 0) {
		seg_text(st, mark);
		seg_add_decoded(st, rs, re - rs, cte, skip, n);
	}
	buf_free(&prefix);
	return 0;
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
	struct message_cache pc = {.raw = BUF_INIT(0)};
	struct buf conv = BUF_INIT(0);
	const uint8_t *data = NULL;
	size_t len = 0;
	bool have_view = false, have_cache = false;
	int rc = 0;

	st->crlf = false;
	if (req->need_cache || req->need_vsize || req->need_binsize) {
		if (mailbox_cache_get(v->mb, m->rec.uid, &pc.raw) == 0 && message_cache_decode(&pc))
			have_cache = pc.have_parts && (pc.have_preview || !req->need_preview);
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
				            pc.body_len, pc.bs, pc.bs_len, pc.pv, pc.pv_len);
			else
				cache_store(v->mb, m->rec.uid, &pc, "", 0, "", 0, "", 0, "", 0);
		}
	}

	/* BINARY[] sets \Seen only on a message it can answer (a failed
	 * request changes nothing): here, once the message is parsed. */
	if (req->binary_seen && !v->readonly && !(m->rec.flags & MSG_SEEN) && msg != NULL) {
		if (!binary_decodable(req, msg)) {
			rc = ROOST_ENOTSUP;
			goto out;
		}
		struct store_req sr = {.mode = STORE_ADD, .flags = MSG_SEEN};
		uint32_t *mod = NULL;
		size_t n_mod = 0;
		if (mailbox_store(v->mb, &m->rec.uid, 1, &sr, &mod, &n_mod) == 0) {
			m->rec.flags |= MSG_SEEN;
			add_flags = true;
		}
		free(mod);
	}

	struct buf *t = &st->text;
	struct buf b = BUF_INIT(0);
	struct binsizes bz = {&pc, BUF_INIT(0)};
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
		case F_PREVIEW:
			buf_append_str(t, "PREVIEW ");
			imap_preview_string(t, pc.pv, pc.pv_len);
			break;
		case F_EMAILID:
		case F_THREADID:
			imap_objectid_fetch(it->kind, &m->rec, data, len, t);
			break;
		case F_INTERNALDATE: {
			char d[32];
			imap_format_datetime(m->rec.internal_date, d);
			buf_printf(t, "INTERNALDATE \"%s\"", d);
			break;
		}
		case F_SAVEDATE: {
			/* RFC 8514: NIL where the store does not know it
			 * (records written before save dates were kept) */
			char d[32];
			if (m->rec.save_date == 0) {
				buf_append_str(t, "SAVEDATE NIL");
				break;
			}
			imap_format_datetime(m->rec.save_date, d);
			buf_printf(t, "SAVEDATE \"%s\"", d);
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
		case F_BINARY:
		case F_BINARY_SIZE:
			rc = plan_binary(st, &mark, &bz, it, data, len, msg, mv.data, mv.len);
			break;
		}
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		buf_free(&b);
		buf_free(&bz.added);
		st->n_segs = 0;
		goto out;
	}
	if (bz.added.len > 0) {
		/* Sizes measured now: kept for the next BINARY.SIZE (one cache
		 * write per message, the record's other texts as they were; an
		 * R3 record's, lacking the preview, are left to be made again). */
		struct buf bin = BUF_INIT(0);

		buf_append(&bin, pc.bin, pc.bin_len);
		buf_append(&bin, bz.added.data, bz.added.len);
		pc.vsize = len;
		pc.have_vsize = true;
		if (pc.have_parts && pc.have_preview)
			cache_store_bin(v->mb, m->rec.uid, &pc, pc.env, pc.env_len, pc.body,
			                pc.body_len, pc.bs, pc.bs_len, pc.pv, pc.pv_len,
			                (const char *)bin.data, bin.len);
		else
			cache_store_bin(v->mb, m->rec.uid, &pc, "", 0, "", 0, "", 0, "", 0,
			                (const char *)bin.data, bin.len);
		buf_free(&bin);
	}
	buf_free(&bz.added);
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

/* A decoded segment begins: the decoder at its start, the octets before
 * a partial's offset decoded and dropped. */
static int
decode_start(struct imap_cmd *cmd, struct fetch_state *st, const struct fetch_seg *sg)
{
	int rc;

	if (!st->have_mv && (rc = fetch_reread(cmd, st)) < 0)
		return rc;
	if (sg->off + sg->in_len > st->mv.len)
		return ROOST_EIO;
	cte_decoder_init(&st->dec, sg->cte);
	for (uint64_t left = sg->skip; left > 0;) {
		size_t n = cte_decode(&st->dec, st->mv.data + sg->off, (size_t)sg->in_len, NULL,
		                      left > SIZE_MAX ? SIZE_MAX : (size_t)left);
		if (n == 0)
			return ROOST_EIO;
		left -= n;
	}
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
			if (sg->cte != CTE_UNKNOWN && (rc = decode_start(cmd, st, sg)) < 0)
				return rc;
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
				if (sg->cte != CTE_UNKNOWN) {
					if (cte_decode(&st->dec, st->mv.data + sg->off,
					               (size_t)sg->in_len, chunk, want) != want)
						return ROOST_EIO;
					rc = conn_write(c, chunk, want);
				} else if (!st->crlf) {
					const uint8_t *p = st->mv.data + st->raw_pos;

					if (st->raw_pos + want > st->mv.len)
						return ROOST_EIO;
					if (memchr(p, '\0', want) != NULL) {
						memcpy(chunk, p, want);
						nul_out(chunk, want);
						p = chunk;
					}
					rc = conn_write(c, p, want);
					st->raw_pos += want;
				} else {
					if (crlf_walk(st->mv.data, st->mv.len, &st->raw_pos,
					              &st->half, chunk, want) != want)
						return ROOST_EIO;
					nul_out(chunk, want);
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
		else if (rc == ROOST_ENOTSUP)
			st->unknown_cte = true;
		else if (rc < 0)
			log_warn("conn=%llu proto=imap event=fetch-failed uid=%u err=%s",
			         (unsigned long long)conn_id(cmd->c), v->msgs[st->idx[i]].rec.uid,
			         roost_strerror(rc));
	}
	if (st->unknown_cte)
		imap_tagged(cmd, "NO",
		            "[UNKNOWN-CTE] Cannot undo a part's Content-Transfer-Encoding");
	else if (st->gone)
		imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Some messages were expunged");
	else
		imap_tagged(cmd, "OK", "FETCH completed");
}

/*
 * FETCH's modifier list: CHANGEDSINCE modseq [VANISHED] (RFC 7162) and
 * PARTIAL range (RFC 9394, UID FETCH only), each at most once, in any
 * order. < 0 with BAD sent.
 */
static int
fetch_modifiers(struct imap_cmd *cmd, const struct imap_arg *l, bool *vanished_r,
                struct imap_partial *partial_r)
{
	struct fetch_state *st = cmd->state;
	struct fetch_req *req = &st->req;
	bool changedsince = false;

	if (l->type != ARG_LIST || l->n == 0)
		goto bad;
	for (size_t i = 0; i < l->n; i++) {
		const struct imap_arg *m = &l->list[i];

		if (imap_arg_atom_eq(m, "CHANGEDSINCE") && !changedsince && i + 1 < l->n &&
		    imap_parse_modseq(&l->list[i + 1], false, &req->changedsince) == 0) {
			changedsince = true;
			i++;
		} else if (imap_arg_atom_eq(m, "VANISHED") && !*vanished_r) {
			*vanished_r = true;
		} else if (imap_arg_atom_eq(m, "PARTIAL") && partial_r->a == 0 && i + 1 < l->n &&
		           l->list[i + 1].type == ARG_ATOM &&
		           imap_partial_parse(l->list[i + 1].str, partial_r) == 0) {
			i++;
		} else {
			goto bad;
		}
	}
	if (*vanished_r && (!changedsince || !cmd->uid || !cmd->s->qresync)) {
		imap_bad(cmd, "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled");
		return ROOST_EINVAL;
	}
	if (partial_r->a != 0 && !cmd->uid) {
		imap_bad(cmd, "PARTIAL needs UID FETCH");
		return ROOST_EINVAL;
	}
	return 0;
bad:
	imap_bad(cmd, "Invalid FETCH modifier");
	return ROOST_EINVAL;
}

void
cmd_fetch(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	struct fetch_state *st = arena_alloc(&cmd->arena, sizeof(*st));
	struct fetch_req *req = &st->req;
	bool vanished = false;
	struct imap_partial partial = {0, 0, false};
	uint32_t *idx;
	size_t n;
	int rc;

	cmd->state = st;
	cmd->state_free = fetch_state_free;
	if (cmd->p.n < 2 || cmd->p.n > 3 || cmd->p.args[0].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: FETCH sequence-set items [(CHANGEDSINCE modseq)]");
		return;
	}
	if (imap_fetch_parse_items(cmd, &cmd->p.args[1], req) < 0) {
		imap_bad(cmd, "Invalid FETCH items");
		return;
	}
	if (cmd->p.n == 3 && fetch_modifiers(cmd, &cmd->p.args[2], &vanished, &partial) < 0)
		return;
	if (req->changedsince != 0) {
		imap_condstore_enable(s); /* RFC 7162 3.1 */
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
	if (partial.a != 0) {
		/* RFC 9394 3.3: the window is on what the FETCH would
		 * return, so after CHANGEDSINCE has left out the unchanged */
		size_t k = 0, from, to;

		for (size_t i = 0; i < n; i++)
			if (v->msgs[idx[i]].rec.modseq > req->changedsince)
				idx[k++] = idx[i];
		imap_partial_slice(&partial, k, &from, &to);
		memmove(idx, idx + from, (to - from) * sizeof(*idx));
		n = to - from;
	}
	if (vanished) {
		/* RFC 7162 3.2.6: UIDs of the set expunged since CHANGEDSINCE. */
		struct seqset set;
		if (seqset_parse(&cmd->arena, cmd->p.args[0].str, &set) == 0) {
			seqset_resolve(&set, v->uidnext > 1 ? v->uidnext - 1 : 1);
			view_vanished_earlier(s, req->changedsince, &set);
		}
	}
	/* \Seen first, so the responses carry the new flags (with BINARY[],
	 * message by message as fetch_plan() finds it decodable). */
	bool *seen_now = NULL;
	if (req->sets_seen && !req->binary_seen && !v->readonly && n > 0) {
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
