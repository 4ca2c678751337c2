/*
 * The SMTP/LMTP mail transaction: the message assembled from DATA or BDAT
 * with our trace headers, spooled to a file past SMTP_SPOOL_AT, then
 * delivered to local mailboxes and queued for other domains, and answered
 * (once per recipient over LMTP).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/delivery.h"
#include "roost/dkim.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/queue.h"
#include "roost/relay.h"
#include "roost/services.h"
#include "roost/smtp.h"
#include "roost/storage.h"
#include "roost/urlauth.h"
#include "roost/xalloc.h"

#include "smtp_impl.h"

#define SMTP_SPOOL_AT (1024 * 1024)

/* Move what s->msg holds to the spool file (when force, or when it has
 * grown past SMTP_SPOOL_AT). A failure is remembered and answered with 451
 * at the end of the data; the bytes are dropped meanwhile. */
static void
spill(struct smtp_session *s, bool force)
{
	size_t n = s->msg.len;

	if (n == 0 || (!force && n < SMTP_SPOOL_AT && s->spool_fd < 0))
		return;
	if (s->spool_fd < 0 && !s->spool_failed) {
		s->spool_fd = fdio_open_spool(s->cfg->data_dir, ".smtp-spool-");
		conn_log(s->c, LOG_LEVEL_DEBUG, "event=spool id=%s fd=%d", s->id, s->spool_fd);
		if (s->spool_fd < 0) {
			conn_log(s->c, LOG_LEVEL_ERROR, "event=spool_failed dir=%s error=\"%s\"",
			         s->cfg->data_dir, strerror(errno));
			s->spool_failed = true;
		}
	}
	if (!s->spool_failed) {
		if (fdio_write_all(s->spool_fd, s->msg.data, n) < 0) {
			conn_log(s->c, LOG_LEVEL_ERROR, "event=spool_failed error=\"%s\"",
			         strerror(errno));
			s->spool_failed = true;
		} else {
			s->spooled += n;
		}
	}
	buf_reset(&s->msg);
}

void
smtp_reset_transaction(struct smtp_session *s)
{
	s->sender[0] = '\0';
	memset(&s->mp, 0, sizeof(s->mp));
	s->n_rcpts = 0;
	s->n_accepted = 0;
	s->in_data = false;
	buf_free(&s->msg);
	s->hdr_len = 0;
	s->body_len = 0;
	s->too_big = false;
	s->id[0] = '\0';
	if (s->spool_fd >= 0)
		close(s->spool_fd);
	s->spool_fd = -1;
	s->spooled = 0;
	s->spool_failed = false;
	smtp_enter_state(s, s->helo == HELO_NONE ? ST_INIT : ST_READY);
}

/* RFC 3848 / RFC 6531 "with" keyword. */
static const char *
with_protocol(const struct smtp_session *s)
{
	static const char *const names[2][2][4] = {
	    /* [utf8][lmtp][tls*2 + auth] */
	    {{"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA"}, {"LMTP", "LMTPA", "LMTPS", "LMTPSA"}},
	    {{"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA"},
	     {"UTF8LMTP", "UTF8LMTPA", "UTF8LMTPS", "UTF8LMTPSA"}},
	};
	if (s->helo == HELO_HELO && !s->mp.smtputf8)
		return "SMTP";
	return names[s->mp.smtputf8][s->d->with_row]
	            [(conn_is_tls(s->c) ? 2 : 0) + (s->authenticated ? 1 : 0)];
}

/* The DSN data kept with the message (X-Roost-DSN). Per-recipient NOTIFY
 * and ORCPT are kept only when there is one recipient: the stored copy is
 * shared by all recipients, and another's ORCPT would leak a Bcc. */
static void
dsn_text(const struct smtp_session *s, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	if (s->mp.envid[0] != '\0')
		n += (size_t)snprintf(out + n, len - n, "ENVID=%s; ", s->mp.envid);
	if (n < len && s->mp.ret[0] != '\0')
		n += (size_t)snprintf(out + n, len - n, "RET=%s; ", s->mp.ret);
	if (s->n_rcpts == 1) {
		const struct smtp_rcpt_params *rp = &s->rcpts[0].params;

		if (n < len && rp->notify[0] != '\0')
			n += (size_t)snprintf(out + n, len - n, "NOTIFY=%s; ", rp->notify);
		if (n < len && rp->orcpt[0] != '\0')
			n += (size_t)snprintf(out + n, len - n, "ORCPT=%s; ", rp->orcpt);
	}
	if (n >= 2 && n < len)
		out[n - 2] = '\0';
}

/* Begin the message: a new id and the trace header block. */
static void
start_message(struct smtp_session *s)
{
	struct delivery_trace t = {0};
	char dsn[1200];
	const char *tls = conn_tls_info(s->c);

	delivery_new_id(s->id);
	dsn_text(s, dsn, sizeof(dsn));
	t.sender = s->sender;
	t.helo = s->helo_name;
	t.peer = conn_peer(s->c);
	t.protocol = with_protocol(s);
	t.tls_info = tls;
	t.id = s->id;
	t.for_rcpt = s->n_rcpts == 1 ? s->rcpts[0].addr : NULL;
	t.dsn = dsn[0] != '\0' ? dsn : NULL;
	buf_init(&s->msg, 0);
	delivery_trace_headers(s->cfg, &t, &s->msg);
	s->hdr_len = s->msg.len;
	/* Storage bounds the stored message, trace headers included, by
	 * max_message_size: the body gets what the headers leave. One byte
	 * over is enough to tell "too big". */
	s->body_max =
	    s->cfg->max_message_size > s->hdr_len ? s->cfg->max_message_size - s->hdr_len : 0;
	s->body_len = 0;
	s->too_big = false;
}

void
smtp_reply_error(struct smtp_session *s, int err, const char *addr)
{
	const char *pre = addr != NULL ? "<" : "", *post = addr != NULL ? ">: " : "";

	if (addr == NULL)
		addr = "";
	switch (err) {
	case ROOST_EOVERQUOTA:
		smtp_reply(s, 452, "4.2.2", "%s%s%sMailbox full, try again later", pre, addr, post);
		break;
	case ROOST_EQUOTATOOBIG:
		smtp_reply(s, 552, "5.2.2", "%s%s%sMessage larger than the mailbox quota", pre,
		           addr, post);
		break;
	case ROOST_ETOOBIG:
		smtp_reply(s, 552, "5.3.4", "%s%s%sMessage too big for the mailbox", pre, addr,
		           post);
		break;
	default:
		smtp_reply(s, 451, "4.3.0",
		           "%s%s%sTemporary storage failure, try again later (id %s)", pre, addr,
		           post, s->id);
		break;
	}
}

/*
 * Refuse the message as a whole. LMTP answers the end of the data once per
 * accepted recipient (RFC 2033 4.2), refusals included, or the client waits
 * for the missing replies; the repeats are not more client errors.
 */
static void
reject_message(struct smtp_session *s, int code, const char *enh, const char *text)
{
	size_t n = s->d->reply_per_rcpt && s->n_accepted > 0 ? s->n_accepted : 1;

	for (size_t i = 0; i < n; i++) {
		s->no_count = i > 0;
		smtp_reply(s, code, enh, "%s", text);
	}
	s->no_count = false;
	smtp_reset_transaction(s);
}

/* The message's own header block (after our trace headers), at most
 * max_header_size bytes: a view into s->msg or a copy from the spool. */
static void
message_head(struct smtp_session *s, const struct msg_input *in, struct buf *out)
{
	uint64_t avail = in->len - s->hdr_len;
	size_t want = avail < s->cfg->max_header_size ? (size_t)avail : s->cfg->max_header_size;

	buf_init(out, 0);
	if (in->fd < 0) {
		buf_append(out, in->data + s->hdr_len, want);
		return;
	}
	if (buf_reserve(out, want) == 0) {
		ssize_t r = pread(in->fd, out->data, want, (off_t)s->hdr_len);

		out->len = r > 0 ? (size_t)r : 0;
	}
}

/* Submission: the From: field must name the authenticated user (553). */
static bool
from_header_ok(struct smtp_session *s, const struct msg_input *in)
{
	struct buf head;
	char bad[300], text[400];
	const char *user = conn_user(s->c);
	int err;

	message_head(s, in, &head);
	err = relay_from_header_check(s->cfg, s->sv->aliases, user != NULL ? user : "", head.data,
	                              head.len, bad, sizeof(bad));
	buf_free(&head);
	if (err == 0)
		return true;
	conn_log(s->c, LOG_LEVEL_INFO, "event=rejected id=%s reason=from_mismatch from=%s", s->id,
	         LOG_QUOTE(bad));
	snprintf(text, sizeof(text), "From: header must be your own address (%s)",
	         user != NULL ? user : "");
	reject_message(s, 553, "5.7.1", text);
	return false;
}

/* The DKIM-Signature for a message leaving for other domains, signed for
 * its From: domain when that has a key (roost/dkim.h), into out. */
static void
dkim_for_relay(struct smtp_session *s, const struct msg_input *in, struct buf *out)
{
	struct buf head;
	char from[SMTP_MAX_PATH + 1];
	const uint8_t *view = in->data + s->hdr_len;
	void *map = NULL;
	size_t len = in->len - s->hdr_len;

	message_head(s, in, &head);
	if (relay_from_address(head.data, head.len, from, sizeof(from)) != 0) {
		buf_free(&head);
		return;
	}
	buf_free(&head);
	if (in->fd >= 0) {
		map = mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, in->fd, 0);
		if (map == MAP_FAILED)
			return;
		view = (const uint8_t *)map + s->hdr_len;
	}
	if (dkim_sign(s->cfg, relay_domain(from), view, len, out) == 0)
		conn_log(s->c, LOG_LEVEL_DEBUG, "event=dkim_signed id=%s domain=%s", s->id,
		         relay_domain(from));
	if (map != NULL)
		munmap(map, in->len);
}

/* Queue the remote recipients' copy: our Received line (no Return-Path, no
 * X-Roost-DSN: those belong to final delivery) and the message. */
static int
queue_remote(struct smtp_session *s, const struct msg_input *in, char qid[QUEUE_ID_LEN])
{
	struct delivery_trace t = {0};
	struct buf trace = BUF_INIT(0);
	struct queue_submission sub = {0};
	struct queue_rcpt_in *rin = xcalloc(s->n_rcpts, sizeof(*rin));
	struct buf dkim = BUF_INIT(0);
	const char *received;
	size_t n = 0;
	int err;

	t.sender = s->sender;
	t.helo = s->helo_name;
	t.peer = conn_peer(s->c);
	t.protocol = with_protocol(s);
	t.tls_info = conn_tls_info(s->c);
	t.id = s->id;
	delivery_trace_headers(s->cfg, &t, &trace);
	received = strstr(buf_cstr(&trace), "Received:");
	dkim_for_relay(s, in, &dkim);
	if (received != NULL)
		buf_append_str(&dkim, received);
	for (size_t i = 0; i < s->n_rcpts; i++) {
		if (!s->rcpts[i].remote)
			continue;
		rin[n].addr = s->rcpts[i].addr;
		rin[n].notify = s->rcpts[i].params.notify;
		rin[n].orcpt = s->rcpts[i].params.orcpt;
		n++;
	}
	sub.id = s->id;
	sub.sender = s->sender;
	sub.user = s->authenticated ? conn_user(s->c) : NULL;
	sub.envid = s->mp.envid;
	sub.ret = s->mp.ret;
	sub.smtputf8 = s->mp.smtputf8;
	sub.body_8bit = s->mp.body_8bit;
	sub.binarymime = s->mp.binarymime;
	sub.requiretls = s->mp.requiretls;
	sub.rcpts = rin;
	sub.n_rcpts = n;
	sub.prefix = dkim.data;
	sub.prefix_len = dkim.len;
	sub.fd = in->fd;
	if (in->fd >= 0) {
		sub.offset = s->hdr_len;
	} else {
		sub.data = in->data + s->hdr_len;
	}
	sub.len = in->len - s->hdr_len;
	err = queue_submit(s->sv->queue, &sub, qid);
	if (err != 0)
		conn_log(s->c, LOG_LEVEL_ERROR, "event=queue_failed id=%s error=\"%s\"", s->id,
		         roost_strerror(err));
	free(rin);
	buf_free(&trace);
	buf_free(&dkim);
	return err;
}

/* The whole message is in s->msg: store it and answer. */
static void
finish_message(struct smtp_session *s, bool bare_eol)
{
	struct delivery_target *t;
	struct msg_input in = {.fd = -1};
	uint64_t body;
	bool lmtp = s->d->reply_per_rcpt;
	size_t n_remote = 0, n_local = 0;
	char qid[QUEUE_ID_LEN];
	int err;

	if (s->too_big) {
		conn_log(s->c, LOG_LEVEL_INFO, "event=rejected id=%s reason=too_big", s->id);
		reject_message(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}
	if (bare_eol) {
		conn_log(s->c, LOG_LEVEL_INFO, "event=rejected id=%s reason=bare_cr_lf", s->id);
		reject_message(s, 550, "5.6.0",
		               "Message contains a bare CR or LF; lines must end with CRLF");
		return;
	}

	if (s->spool_fd >= 0)
		spill(s, true);
	if (s->spool_failed) {
		char text[128];

		snprintf(text, sizeof(text), "Temporary local problem, try again later (id %s)",
		         s->id);
		reject_message(s, 451, "4.3.0", text);
		return;
	}
	if (s->spool_fd >= 0) {
		in.fd = s->spool_fd;
		in.len = s->spooled;
	} else {
		in.data = s->msg.data;
		in.len = s->msg.len;
	}
	body = in.len - s->hdr_len;
	if (s->authenticated && !from_header_ok(s, &in))
		return;
	for (size_t i = 0; i < s->n_rcpts; i++)
		n_remote += s->rcpts[i].remote;
	/* Remote recipients are queued first: when that fails, nothing is
	 * stored and the client's retry makes no duplicate. */
	if (n_remote > 0 && (err = queue_remote(s, &in, qid)) != 0) {
		char text[128];

		snprintf(text, sizeof(text), "Temporary queue failure, try again later (id %s)",
		         s->id);
		reject_message(s, 451, "4.3.0", text);
		return;
	}
	/* The local recipients' request, in RCPT order. */
	t = xcalloc(s->n_rcpts, sizeof(*t));
	for (size_t i = 0; i < s->n_rcpts; i++) {
		if (!s->rcpts[i].remote)
			t[n_local++] = (struct delivery_target){.user = s->rcpts[i].d.user,
			                                        .mailbox = s->rcpts[i].d.mailbox};
	}
	err = delivery_store(s->sv, s->sender, &in, t, n_local, !lmtp);
	/* LMTP answers each recipient: the queued copies stand whatever
	 * became of the local ones. */
	if (n_remote > 0)
		queue_commit(s->sv->queue, qid, err == 0 || lmtp);
	for (size_t i = 0, k = 0; i < s->n_rcpts; i++) {
		const struct smtp_rcpt *r = &s->rcpts[i];

		if (r->remote)
			continue;
		if (t[k].result == 0)
			conn_log(s->c, LOG_LEVEL_INFO,
			         "event=delivered id=%s from=%s to=%s to_user=%s mailbox=%s uid=%u "
			         "size=%llu notify=%s orcpt=%s",
			         s->id, LOG_QUOTE(s->sender), LOG_QUOTE(r->addr),
			         LOG_QUOTE(t[k].user), LOG_QUOTE(t[k].mailbox), t[k].uid,
			         (unsigned long long)body,
			         r->params.notify[0] ? LOG_QUOTE(r->params.notify) : "-",
			         r->params.orcpt[0] ? LOG_QUOTE(r->params.orcpt) : "-");
		else
			conn_log(s->c, LOG_LEVEL_WARN,
			         "event=deferred id=%s from=%s to=%s to_user=%s error=\"%s\"",
			         s->id, LOG_QUOTE(s->sender), LOG_QUOTE(r->addr),
			         LOG_QUOTE(t[k].user), roost_strerror(t[k].result));
		k++;
	}
	for (size_t i = 0; i < s->n_rcpts && err == 0; i++) {
		if (s->rcpts[i].remote)
			conn_log(s->c, LOG_LEVEL_INFO,
			         "event=queued id=%s queue_id=%s from=%s to=%s size=%llu", s->id,
			         qid, LOG_QUOTE(s->sender), LOG_QUOTE(s->rcpts[i].addr),
			         (unsigned long long)body);
	}
	if (lmtp) {
		/* One reply per RCPT (RFC 2033 4.2): an alias's copies succeed
		 * or fail together, its queued ones counting as delivered. */
		for (size_t i = 0, k = 0; i < s->n_rcpts;) {
			unsigned no = s->rcpts[i].rcpt_no;
			const char *addr = s->rcpts[i].addr;
			int res = 0;

			for (; i < s->n_rcpts && s->rcpts[i].rcpt_no == no; i++) {
				if (s->rcpts[i].remote)
					continue;
				if (res == 0)
					res = t[k].result;
				k++;
			}
			if (res == 0)
				smtp_reply(s, 250, "2.0.0", "<%s> Delivered, id=%s", addr, s->id);
			else
				smtp_reply_error(s, res, addr);
		}
	} else if (err == 0) {
		if (n_remote > 0)
			smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", qid);
		else
			smtp_reply(s, 250, "2.0.0", "Ok: delivered as %s", s->id);
	} else {
		smtp_reply_error(s, err, NULL);
	}
	free(t);
	smtp_reset_transaction(s);
}

void
smtp_data_piece(struct smtp_session *s, const uint8_t *in, size_t len)
{
	size_t used = smtp_data_decode(&s->dec, in, len, s->too_big ? NULL : &s->msg);

	if (s->dec.overflow || s->dec.out_len > s->body_max) {
		s->too_big = true;
		buf_reset(&s->msg);
	}
	if (!s->too_big)
		spill(s, false);
	if (s->dec.state != SMTP_DEC_DONE)
		return;
	if (used != len)
		conn_log(s->c, LOG_LEVEL_ERROR, "event=bug reason=\"framer and decoder disagree\"");
	s->in_data = false;
	finish_message(s, s->dec.bare_eol > 0 && !s->dec.normalize);
}

void
smtp_bdat_chunk_done(struct smtp_session *s)
{
	if (s->bdat_discard) {
		smtp_reply(s, s->bdat_code, s->bdat_enh, "%s", s->bdat_text);
		s->bdat_discard = false;
		return;
	}
	if (s->too_big && !s->bdat_last) {
		smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		smtp_reset_transaction(s);
		return;
	}
	if (!s->bdat_last) {
		smtp_reply(s, 250, "2.0.0", "%llu octets received",
		           (unsigned long long)s->body_len);
		return;
	}
	finish_message(s, false);
}

void
smtp_bdat_piece(struct smtp_session *s, const uint8_t *in, size_t len)
{
	if (len > s->bdat_left)
		len = (size_t)s->bdat_left; /* cannot happen: the framer counts too */
	s->bdat_left -= len;
	if (!s->bdat_discard && !s->too_big) {
		s->body_len += len;
		if (s->body_len > s->body_max || buf_append(&s->msg, in, len) != 0) {
			s->too_big = true;
			buf_reset(&s->msg);
		} else {
			spill(s, false);
		}
	}
	if (s->bdat_left == 0)
		smtp_bdat_chunk_done(s);
}

void
smtp_cmd_bdat(struct smtp_session *s, const char *args)
{
	uint64_t size = s->fr.bdat_size;
	bool last = s->fr.bdat_last;

	/* The framer decided whether a chunk follows; its word is final. */
	if (!s->fr.line_bdat) {
		/* Without a size the byte stream cannot be followed: what
		 * comes next could be message text taken for commands. */
		smtp_reply(s, 501, "5.5.4", "Syntax: BDAT <size> [LAST]; closing connection");
		conn_close(s->c);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_discard = true;
	s->bdat_code = 503;
	s->bdat_enh = "5.5.1";
	if (s->state == ST_RCPT) {
		start_message(s);
		smtp_enter_state(s, ST_BDAT);
		s->bdat_discard = false;
	} else if (s->state == ST_BDAT) {
		s->bdat_discard = false;
	} else if (s->state == ST_MAIL) {
		s->bdat_code = s->d->no_rcpt_code; /* as DATA */
		s->bdat_text = "No valid recipients";
	} else {
		s->bdat_text =
		    s->helo == HELO_NONE ? "Send EHLO first" : "Need MAIL and RCPT first";
	}
	s->bdat_taken = true;
	if (size == 0)
		smtp_bdat_chunk_done(s);
}

/*
 * BURL imap-url [LAST] (RFC 4468): the next piece of the message is what
 * the URL names in Roost's own store, read through URLAUTH exactly as
 * URLFETCH reads it (services/urlauth.c, as the submission server acting
 * for the authenticated user: a "submit+user" URL), with no connection to
 * the IMAP server. Pieces join BDAT chunks in one transaction; LAST ends
 * the message, which then goes the way of DATA's (sender checks, local
 * delivery, the outbound queue).
 */
void
smtp_cmd_burl(struct smtp_session *s, const char *args)
{
	const char *sp = strchr(args, ' ');
	size_t ulen = sp != NULL ? (size_t)(sp - args) : strlen(args);
	bool last = sp != NULL;
	struct buf data = BUF_INIT(0);
	int rc;

	if (s->role != ROLE_SUBMISSION) {
		smtp_reply(s, 502, "5.5.1", "BURL is offered on submission only");
		return;
	}
	if (ulen == 0 || (sp != NULL && strcasecmp(sp + 1, "LAST") != 0)) {
		smtp_reply(s, 501, "5.5.4", "Syntax: BURL imap-url [LAST]");
		return;
	}
	if (!s->authenticated) {
		smtp_reply(s, 530, "5.7.0", "Authentication required");
		return;
	}
	if (s->state == ST_MAIL) {
		smtp_reply(s, 554, "5.5.1", "No valid recipients");
		return;
	}
	if (s->state != ST_RCPT && s->state != ST_BDAT) {
		smtp_reply(s, 503, "5.5.1", "Need MAIL and RCPT first");
		return;
	}
	if (urlauth_url_is_foreign(s->cfg, args, ulen)) {
		smtp_reply(s, 554, "5.7.0", "URL is not of this server; BURL resolves no other");
		smtp_reset_transaction(s);
		return;
	}
	rc = urlauth_fetch(s->sv, conn_user(s->c), URLAUTH_VIA_SUBMIT, args, ulen, &data);
	if (rc < 0) {
		conn_log(s->c, LOG_LEVEL_INFO, "event=burl_failed url=%s error=\"%s\"",
		         LOG_QUOTE_N(args, ulen), roost_strerror(rc));
		buf_free(&data);
		if (rc == ROOST_EIO || rc == ROOST_ETEMP)
			smtp_reply(s, 451, "4.4.1", "IMAP URL resolution failed, try again later");
		else
			smtp_reply(s, 554, "5.6.6", "IMAP URL resolution failed");
		smtp_reset_transaction(s);
		return;
	}
	if (s->state == ST_RCPT) {
		start_message(s);
		smtp_enter_state(s, ST_BDAT);
	}
	if (!s->too_big) {
		s->body_len += data.len;
		if (s->body_len > s->body_max || buf_append(&s->msg, data.data, data.len) != 0) {
			s->too_big = true;
			buf_reset(&s->msg);
		} else {
			spill(s, false);
		}
	}
	buf_free(&data);
	if (s->too_big) {
		smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		smtp_reset_transaction(s);
		return;
	}
	if (!last) {
		smtp_reply(s, 250, "2.5.0", "%llu octets received",
		           (unsigned long long)s->body_len);
		return;
	}
	finish_message(s, false);
}

void
smtp_cmd_data(struct smtp_session *s, const char *args)
{
	if (args[0] != '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (s->state == ST_BDAT) {
		smtp_reply(s, 503, "5.5.1", "DATA not allowed in a BDAT transaction");
		return;
	}
	if (s->state == ST_MAIL) {
		/* RFC 2033 4.2: over LMTP this MUST be 503; SMTP may say 554. */
		smtp_reply(s, s->d->no_rcpt_code, "5.5.1", "No valid recipients");
		return;
	}
	if (s->state != ST_RCPT) {
		smtp_reply(s, 503, "5.5.1", "Need MAIL and RCPT first");
		return;
	}
	if (s->mp.binarymime) {
		/* RFC 3030 3: a binary body cannot be sent with DATA. */
		smtp_reply(s, 503, "5.5.1", "BODY=BINARYMIME needs BDAT, not DATA");
		return;
	}
	start_message(s);
	s->in_data = true;
	smtp_data_dec_init(&s->dec, s->cfg->smtp_bare_lf != NULL &&
	                                strcmp(s->cfg->smtp_bare_lf, "normalize") == 0);
	smtp_framer_start_data(&s->fr, s->dec.normalize);
	conn_write_str(s->c, "354 End data with <CR><LF>.<CR><LF>\r\n");
}
