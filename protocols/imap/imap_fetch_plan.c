/*
 * FETCH: one message's response planned whole when FETCH reaches it (see
 * imap_fetch.h): the data items formatted as text, BODY[section]<partial>
 * found in the message, the literals of its own bytes kept as ranges of it;
 * the parse cache read first and filled on a miss.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/message.h"
#include "roost/message_cache.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_fetch.h"

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
size_t
fetch_crlf_walk(const uint8_t *raw, size_t len, size_t *pos, bool *half, uint8_t *out, size_t max)
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

void
fetch_seg_add(struct fetch_state *st, bool from_msg, uint64_t off, uint64_t len, bool half)
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
void
fetch_seg_add_decoded(struct fetch_state *st, uint64_t off, uint64_t in_len, enum cte_kind cte,
                      uint64_t skip, uint64_t len)
{
	fetch_seg_add(st, true, off, len, false);
	if (len > 0) {
		st->segs[st->n_segs - 1].cte = cte;
		st->segs[st->n_segs - 1].in_len = in_len;
		st->segs[st->n_segs - 1].skip = skip;
	}
}

/* A literal (not literal8) cannot carry NUL (RFC 3501 CHAR8): a message
 * stored with one (APPEND with literal8) shows it as 0x80 in BODY[], as
 * Dovecot does; the length stays, and BINARY[] gives the bytes. */
void
fetch_nul_out(uint8_t *p, size_t n)
{
	uint8_t *q = p, *end = p + n;

	while ((q = memchr(q, '\0', (size_t)(end - q))) != NULL)
		*q++ = 0x80;
}

/* The plan's text from *mark to its end becomes a segment. */
void
fetch_seg_text(struct fetch_state *st, size_t *mark)
{
	fetch_seg_add(st, false, *mark, st->text.len - *mark, false);
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
			fetch_crlf_walk(raw, raw_len, &pos, &half, NULL, conv);
		}
		fetch_seg_text(st, mark);
		fetch_seg_add(st, true, pos, n, half);
	} else if (n > 0) {
		buf_append(&st->text, p, n);
		fetch_nul_out(st->text.data + st->text.len - n, n);
	}
	buf_free(&tmp);
}

/*
 * Plan the response for view index idx: 0 with st->busy set, or
 * ROOST_ENOTFOUND when the message is gone, or another error (nothing to
 * send either way).
 */
int
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
			have_cache = fetch_cache_build(v->mb, m->rec.uid, msg, &pc);
			if (!have_cache) {
				rc = ROOST_EIO;
				goto out;
			}
		} else if (need_vsize) {
			/* Keep what the cache held, add the size. */
			if (pc.have_parts)
				fetch_cache_store(v->mb, m->rec.uid, &pc, pc.env, pc.env_len,
				                  pc.body, pc.body_len, pc.bs, pc.bs_len, pc.pv,
				                  pc.pv_len);
			else
				fetch_cache_store(v->mb, m->rec.uid, &pc, "", 0, "", 0, "", 0, "",
				                  0);
		}
	}

	/* BINARY[] sets \Seen only on a message it can answer (a failed
	 * request changes nothing): here, once the message is parsed. */
	if (req->binary_seen && !v->readonly && !(m->rec.flags & MSG_SEEN) && msg != NULL) {
		if (!fetch_binary_decodable(req, msg)) {
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
			rc = fetch_plan_binary(st, &mark, &bz, it, data, len, msg, mv.data, mv.len);
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
			fetch_cache_store_bin(v->mb, m->rec.uid, &pc, pc.env, pc.env_len, pc.body,
			                      pc.body_len, pc.bs, pc.bs_len, pc.pv, pc.pv_len,
			                      (const char *)bin.data, bin.len);
		else
			fetch_cache_store_bin(v->mb, m->rec.uid, &pc, "", 0, "", 0, "", 0, "", 0,
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
	fetch_seg_text(st, &mark);
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
