/*
 * POP3 TRANSACTION state: STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET and
 * QUIT (which enters UPDATE and expunges what DELE marked).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/pop3.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "pop3_impl.h"

/*
 * The octets RETR would send for message i. Read lazily: computing every
 * size at login would read the whole maildrop before the first reply.
 * When the message vanished (expunged over IMAP meanwhile) the answer is 0.
 */
static uint64_t
msg_octets(struct pop3_session *s, uint32_t i)
{
	struct msg_view view;

	if (s->msgs[i].octets != OCTETS_UNKNOWN)
		return s->msgs[i].octets;
	if (mailbox_read(s->mb, s->msgs[i].uid, &view) != 0)
		return 0; /* not cached: a later read may succeed */
	s->msgs[i].octets = pop3_octets(view.data, view.len);
	msg_view_release(&view);
	return s->msgs[i].octets;
}

/*
 * Message-number argument: 1..n_msgs and not deleted. Replies on error;
 * returns CMD_BAD for a malformed number, CMD_OK for a well-formed one that
 * names no message, and sets *idx_r (0-based) on success.
 */
static bool
msg_arg(struct pop3_session *s, const struct pop3_arg *a, uint32_t *idx_r, enum cmd_result *res)
{
	uint32_t n;

	if (pop3_parse_number(a->p, a->len, &n) != 0) {
		pop3_reply(s, "-ERR Invalid message number.");
		*res = CMD_BAD;
		return false;
	}
	if (n == 0 || n > s->n_msgs) {
		pop3_reply(s, "-ERR No such message.");
		*res = CMD_OK;
		return false;
	}
	if (s->msgs[n - 1].deleted) {
		pop3_reply(s, "-ERR Message is deleted.");
		*res = CMD_OK;
		return false;
	}
	*idx_r = n - 1;
	return true;
}

enum cmd_result
pop3_cmd_stat(struct pop3_session *s, const struct pop3_line *line)
{
	uint64_t total = 0;

	if (line->nargs != 0) {
		pop3_reply(s, "-ERR STAT takes no arguments.");
		return CMD_BAD;
	}
	for (uint32_t i = 0; i < s->n_msgs; i++) {
		if (!s->msgs[i].deleted)
			total += msg_octets(s, i);
	}
	conn_printf(s->c, "+OK %u %llu\r\n", s->n_msgs - s->n_deleted, (unsigned long long)total);
	return CMD_OK;
}

/*
 * LIST and UIDL without an argument: one line per message, written in
 * batches until the output is full, then continued in the next step, so
 * a 20,000 message maildrop neither holds a worker while the client reads
 * nor needs the whole listing in memory.
 */
static void
listing_step(struct conn *c, void *session, void *arg)
{
	struct pop3_session *s = session;
	bool uidl = s->xfer.kind == XFER_UIDL;
	char batch[LIST_BATCH];
	size_t o = 0;
	uint32_t i;

	for (i = s->xfer.idx; i < s->n_msgs; i++) {
		char uid[POP3_UIDL_LEN + 1];
		int n;

		if (s->msgs[i].deleted)
			continue;
		if (o > sizeof(batch) - 64) {
			if (conn_write(c, batch, o) != 0)
				return;
			o = 0;
			if (conn_output_full(c))
				break;
		}
		if (uidl) {
			pop3_uidl(s->uidvalidity, s->msgs[i].uid, uid);
			n = snprintf(batch + o, sizeof(batch) - o, "%u %s\r\n", i + 1, uid);
		} else {
			n = snprintf(batch + o, sizeof(batch) - o, "%u %llu\r\n", i + 1,
			             (unsigned long long)msg_octets(s, i));
		}
		o += (size_t)n;
	}
	if (i < s->n_msgs) {
		s->xfer.idx = i;
		conn_continue(c, listing_step, NULL);
		return;
	}
	memcpy(batch + o, ".\r\n", 3);
	o += 3;
	conn_write(c, batch, o);
	s->xfer.kind = XFER_NONE;
}

static void
scan_listing(struct pop3_session *s, bool uidl)
{
	conn_write_str(s->c,
	               uidl ? "+OK Unique-ID listing follows\r\n" : "+OK Scan listing follows\r\n");
	memset(&s->xfer, 0, sizeof(s->xfer));
	s->xfer.kind = uidl ? XFER_UIDL : XFER_SCAN;
	listing_step(s->c, s, NULL);
}

enum cmd_result
pop3_cmd_list(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i;

	if (line->nargs > 1 || line->too_many) {
		pop3_reply(s, "-ERR LIST takes at most one argument.");
		return CMD_BAD;
	}
	if (line->nargs == 0) {
		scan_listing(s, false);
		return CMD_OK;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	conn_printf(s->c, "+OK %u %llu\r\n", i + 1, (unsigned long long)msg_octets(s, i));
	return CMD_OK;
}

enum cmd_result
pop3_cmd_uidl(struct pop3_session *s, const struct pop3_line *line)
{
	char uid[POP3_UIDL_LEN + 1];
	enum cmd_result res;
	uint32_t i;

	if (line->nargs > 1 || line->too_many) {
		pop3_reply(s, "-ERR UIDL takes at most one argument.");
		return CMD_BAD;
	}
	if (line->nargs == 0) {
		scan_listing(s, true);
		return CMD_OK;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	pop3_uidl(s->uidvalidity, s->msgs[i].uid, uid);
	conn_printf(s->c, "+OK %u %s\r\n", i + 1, uid);
	return CMD_OK;
}

/*
 * Encode the message in view from where the last step stopped until the
 * output is full. True when the reply is complete (or the peer is gone).
 */
static bool
message_feed(struct pop3_session *s, const struct msg_view *view)
{
	uint8_t out[2 * ENC_IN_CHUNK + POP3_ENC_FINISH_MAX];
	struct pop3_xfer *x = &s->xfer;

	while (x->off < view->len && !x->enc.done) {
		size_t chunk =
		    view->len - x->off < ENC_IN_CHUNK ? view->len - x->off : ENC_IN_CHUNK;
		size_t used, n;

		if (conn_output_full(s->c))
			return false;
		n = pop3_enc_feed(&x->enc, view->data + x->off, chunk, out, sizeof(out), &used);
		x->off += used;
		if (n > 0 && conn_write(s->c, out, n) != 0)
			return true; /* peer gone: stop reading */
	}
	conn_write(s->c, out, pop3_enc_finish(&x->enc, out));
	return true;
}

/* The next step of RETR or TOP: go on encoding the message, from the held
 * view or from a new read (no view that pins the store is kept while the
 * client reads). */
static void
message_step(struct conn *c, void *session, void *arg)
{
	struct pop3_session *s = session;
	struct pop3_xfer *x = &s->xfer;
	uint32_t uid = s->msgs[x->idx].uid;
	struct msg_view view;
	int r = 0;

	if (x->view_held) {
		if (message_feed(s, &x->view))
			pop3_xfer_end(s);
		else
			conn_continue(c, message_step, NULL);
		return;
	}
	r = mailbox_read(s->mb, uid, &view);
	if (r == 0 && view.len != x->len) {
		msg_view_release(&view);
		r = ROOST_EIO;
	}
	if (r != 0) {
		/* Part of the message is out: there is no way to answer -ERR
		 * now, and a terminated short message would be taken for the
		 * whole one. Closing makes the client retry later. */
		conn_log(c, LOG_LEVEL_ERROR, "event=read uid=%u offset=%zu error=\"%s\"", uid,
		         x->off, roost_strerror(r));
		pop3_xfer_end(s);
		conn_close(c);
		return;
	}
	if (message_feed(s, &view))
		pop3_xfer_end(s);
	else
		conn_continue(c, message_step, NULL);
	msg_view_release(&view);
}

/* RETR and TOP: stream message i through the encoder, in steps. */
static void
send_message(struct pop3_session *s, uint32_t i, uint64_t body_lines)
{
	struct pop3_xfer *x = &s->xfer;
	struct msg_view view;
	int r;

	r = mailbox_read(s->mb, s->msgs[i].uid, &view);
	if (r == ROOST_ENOTFOUND) {
		pop3_reply(s, "-ERR Message was removed by another session.");
		return;
	}
	if (r != 0) {
		conn_log(s->c, LOG_LEVEL_ERROR, "event=read uid=%u error=\"%s\"", s->msgs[i].uid,
		         roost_strerror(r));
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot read the message, try again later.");
		return;
	}
	s->msgs[i].octets = pop3_octets(view.data, view.len);
	if (body_lines == POP3_ALL_LINES)
		conn_printf(s->c, "+OK %llu octets\r\n", (unsigned long long)s->msgs[i].octets);
	else
		conn_write_str(s->c, "+OK\r\n");
	memset(x, 0, sizeof(*x));
	x->kind = XFER_MESSAGE;
	x->idx = i;
	x->len = view.len;
	pop3_enc_init(&x->enc, body_lines);
	if (message_feed(s, &view)) {
		x->kind = XFER_NONE;
	} else {
		conn_continue(s->c, message_step, NULL);
		if (view.holdable) {
			x->view = view;
			x->view_held = true;
			return;
		}
	}
	msg_view_release(&view);
}

enum cmd_result
pop3_cmd_retr(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i;

	if (line->nargs != 1 || line->too_many) {
		pop3_reply(s, "-ERR RETR takes one argument.");
		return CMD_BAD;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	send_message(s, i, POP3_ALL_LINES);
	return CMD_OK;
}

enum cmd_result
pop3_cmd_top(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i, lines;

	if (line->nargs != 2 || line->too_many) {
		pop3_reply(s, "-ERR TOP takes a message number and a line count.");
		return CMD_BAD;
	}
	if (pop3_parse_number(line->args[1].p, line->args[1].len, &lines) != 0) {
		pop3_reply(s, "-ERR Invalid line count.");
		return CMD_BAD;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	send_message(s, i, lines);
	return CMD_OK;
}

enum cmd_result
pop3_cmd_dele(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i;

	if (line->nargs != 1 || line->too_many) {
		pop3_reply(s, "-ERR DELE takes one argument.");
		return CMD_BAD;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	s->msgs[i].deleted = true;
	s->n_deleted++;
	conn_printf(s->c, "+OK Message %u deleted.\r\n", i + 1);
	return CMD_OK;
}

enum cmd_result
pop3_cmd_noop(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 0) {
		pop3_reply(s, "-ERR NOOP takes no arguments.");
		return CMD_BAD;
	}
	pop3_reply(s, "+OK");
	return CMD_OK;
}

enum cmd_result
pop3_cmd_rset(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 0) {
		pop3_reply(s, "-ERR RSET takes no arguments.");
		return CMD_BAD;
	}
	for (uint32_t i = 0; i < s->n_msgs; i++)
		s->msgs[i].deleted = false;
	s->n_deleted = 0;
	conn_printf(s->c, "+OK %u messages.\r\n", s->n_msgs);
	return CMD_OK;
}

enum cmd_result
pop3_cmd_quit(struct pop3_session *s, const struct pop3_line *line)
{
	uint32_t *uids;
	size_t n = 0;
	int r;

	if (s->state == POP3_AUTHORIZATION) {
		pop3_reply(s, "+OK Bye.");
		conn_close(s->c);
		return CMD_OK;
	}
	pop3_enter_state(s, POP3_UPDATE);
	if (s->n_deleted > 0) {
		uids = xcalloc(s->n_deleted, sizeof(*uids));
		for (uint32_t i = 0; i < s->n_msgs; i++) {
			if (s->msgs[i].deleted)
				uids[n++] = s->msgs[i].uid;
		}
		/* The snapshot is in ascending UID order, as mailbox_expunge()
		 * wants it, and the call returns once the removal is durable. */
		r = mailbox_expunge(s->mb, uids, n);
		free(uids);
		if (r != 0) {
			conn_log(s->c, LOG_LEVEL_ERROR, "event=expunge error=\"%s\"",
			         roost_strerror(r));
			pop3_maildrop_close(s);
			pop3_reply(
			    s, "-ERR [SYS/TEMP] Deleting messages failed; nothing was deleted.");
			conn_close(s->c);
			return CMD_OK;
		}
	}
	conn_log(s->c, LOG_LEVEL_INFO, "event=logout deleted=%zu", n);
	/* Unlock before the reply leaves: a client that reconnects as soon as
	 * it reads +OK must not find its maildrop still in use. */
	pop3_maildrop_close(s);
	conn_printf(s->c, "+OK Logging out, %zu messages deleted.\r\n", n);
	conn_close(s->c);
	return CMD_OK;
}
