/*
 * FETCH and UID FETCH: the command (items, CHANGEDSINCE/VANISHED/PARTIAL
 * modifiers, \Seen set first), the step loop that plans message after
 * message (imap_fetch_plan.c) and yields when the output is full, and the
 * sending of a planned response a chunk at a time, literals copied out of
 * the message (CRLF-converted, NUL-masked or decoded) as the client reads.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/cte.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"

#include "imap_fetch.h"

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
						fetch_nul_out(chunk, want);
						p = chunk;
					}
					rc = conn_write(c, p, want);
					st->raw_pos += want;
				} else {
					if (fetch_crlf_walk(st->mv.data, st->mv.len, &st->raw_pos,
					                    &st->half, chunk, want) != want)
						return ROOST_EIO;
					fetch_nul_out(chunk, want);
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
					conn_log(cmd->c, LOG_LEVEL_INFO,
					         "event=fetch_aborted uid=%u literal_sent=%llu "
					         "literal_size=%llu err=\"%s\"",
					         st->uid, (unsigned long long)st->seg_sent,
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
			conn_log(cmd->c, LOG_LEVEL_WARN, "event=fetch_failed uid=%u err=%s",
			         v->msgs[st->idx[i]].rec.uid, roost_strerror(rc));
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
