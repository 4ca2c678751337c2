/*
 * The SMTP/LMTP session: one state machine for the smtp, submission, smtps
 * and lmtp listeners (see include/roost/smtp.h for the roles).
 *
 * Threads: the frame hook runs on the loop thread and touches only the
 * framer (s->fr) and the error counter; everything else is the worker's.
 * The runtime never runs both at once for one connection, so no lock.
 *
 * Replies carry RFC 3463 enhanced codes everywhere except where RFC 2034
 * has none: the greeting, the EHLO keyword lines, 354 and 334.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/delivery.h"
#include "roost/dkim.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/queue.h"
#include "roost/relay.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/smtp.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

enum smtp_role { ROLE_MX, ROLE_SUBMISSION, ROLE_LMTP };

enum smtp_state {
	ST_INIT,  /* greeted; needs HELO/EHLO/LHLO */
	ST_READY, /* may start a transaction */
	ST_MAIL,  /* MAIL accepted, no recipient yet */
	ST_RCPT,  /* at least one recipient */
	ST_BDAT,  /* inside a BDAT transaction */
};

static const char *const state_names[] = {"init", "ready", "mail", "rcpt", "bdat"};

enum helo_kind { HELO_NONE, HELO_HELO, HELO_EHLO, HELO_LHLO };

struct smtp_rcpt {
	char addr[SMTP_MAX_PATH + 1];
	struct smtp_rcpt_params params;
	struct delivery_rcpt d;
	bool remote; /* another domain's: queued for relay */
};

struct smtp_session {
	struct conn *c;
	const struct roost_services *sv;
	const struct roost_config *cfg;
	enum smtp_role role;

	/* loop thread: framing */
	struct smtp_framer fr;

	/* connection */
	enum smtp_state state;
	enum helo_kind helo;
	char helo_name[256];
	unsigned errors;
	bool no_count; /* the next reply is no client error */
	bool authenticated;
	bool trusted;      /* peer in [smtp] trusted_networks */
	struct sasl *sasl; /* an AUTH exchange is in progress */
	struct buf line;   /* the current command line, NUL-terminated */

	/* transaction */
	char sender[SMTP_MAX_PATH + 1];
	struct smtp_mail_params mp;
	struct smtp_rcpt *rcpts;
	size_t n_rcpts, cap_rcpts;

	/* message body (DATA or BDAT) */
	bool in_data; /* DATA pieces are arriving */
	struct smtp_data_dec dec;
	struct buf msg; /* trace headers, then the body */
	size_t hdr_len;
	uint64_t body_len; /* BDAT: bytes received */
	uint64_t body_max; /* what max_message_size leaves after the headers */
	bool too_big;
	char id[DELIVERY_ID_LEN];
	/* Past SMTP_SPOOL_AT the message moves from s->msg to an unlinked
	 * file in data_dir, so a big message does not sit in memory. */
	int spool_fd;
	uint64_t spooled;
	bool spool_failed;

	/* BDAT chunk being received */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_taken;   /* cmd_bdat ran for the current line */
	bool bdat_discard; /* the chunk is read and dropped... */
	int bdat_code;     /* ...and then answered with this */
	const char *bdat_enh, *bdat_text;
};

/* ---- replies ---- */

static void
enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state != st)
		log_debug("conn=%llu proto=smtp state=%s->%s", (unsigned long long)conn_id(s->c),
		          state_names[s->state], state_names[st]);
	s->state = st;
}

static void too_many_errors(struct smtp_session *s);

#define SMTP_SPOOL_AT (1024 * 1024)

static int
spool_open(const char *dir)
{
	char path[4096];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* No O_TMPFILE on this file system: a named file, unlinked at once. */
	if ((size_t)snprintf(path, sizeof(path), "%s/.smtp-spool-XXXXXX", dir) >= sizeof(path))
		return -1;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* Move what s->msg holds to the spool file (when force, or when it has
 * grown past SMTP_SPOOL_AT). A failure is remembered and answered with 451
 * at the end of the data; the bytes are dropped meanwhile. */
static void
spill(struct smtp_session *s, bool force)
{
	const uint8_t *p = s->msg.data;
	size_t n = s->msg.len;

	if (n == 0 || (!force && n < SMTP_SPOOL_AT && s->spool_fd < 0))
		return;
	if (s->spool_fd < 0 && !s->spool_failed) {
		s->spool_fd = spool_open(s->cfg->data_dir);
		log_debug("conn=%llu proto=smtp event=spool id=%s fd=%d",
		          (unsigned long long)conn_id(s->c), s->id, s->spool_fd);
		if (s->spool_fd < 0) {
			log_error("conn=%llu proto=smtp event=spool-failed dir=%s error=\"%s\"",
			          (unsigned long long)conn_id(s->c), s->cfg->data_dir,
			          strerror(errno));
			s->spool_failed = true;
		}
	}
	while (n > 0 && !s->spool_failed) {
		ssize_t w = write(s->spool_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			log_error("conn=%llu proto=smtp event=spool-failed error=\"%s\"",
			          (unsigned long long)conn_id(s->c),
			          w < 0 ? strerror(errno) : "short write");
			s->spool_failed = true;
			break;
		}
		p += w;
		n -= (size_t)w;
		s->spooled += (uint64_t)w;
	}
	buf_reset(&s->msg);
}

/* One reply line "code enh text". Replies >= 500 count as client errors. */
static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (enh != NULL)
		conn_printf(s->c, "%d %s %s\r\n", code, enh, text);
	else
		conn_printf(s->c, "%d %s\r\n", code, text);
	if (code >= 500 && !s->no_count) {
		s->errors++;
		too_many_errors(s);
	}
}

static void
too_many_errors(struct smtp_session *s)
{
	unsigned max = s->cfg->smtp_max_errors;

	if (max == 0 || s->errors < max || conn_is_closing(s->c))
		return;
	conn_printf(s->c, "421 4.7.0 %s Too many errors, closing connection\r\n", s->cfg->hostname);
	log_info("conn=%llu proto=smtp event=too-many-errors errors=%u",
	         (unsigned long long)conn_id(s->c), s->errors);
	conn_close(s->c);
}

static const char *
proto_name(const struct smtp_session *s)
{
	return s->role == ROLE_LMTP ? "lmtp" : "smtp";
}

/* ---- transaction ---- */

static void
reset_transaction(struct smtp_session *s)
{
	s->sender[0] = '\0';
	memset(&s->mp, 0, sizeof(s->mp));
	s->n_rcpts = 0;
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
	enter_state(s, s->helo == HELO_NONE ? ST_INIT : ST_READY);
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
	bool lmtp = s->role == ROLE_LMTP;

	if (s->helo == HELO_HELO && !s->mp.smtputf8)
		return "SMTP";
	return names[s->mp.smtputf8][lmtp]
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

static void
storage_error_reply(struct smtp_session *s, int err, const char *addr)
{
	const char *pre = addr != NULL ? "<" : "", *post = addr != NULL ? ">: " : "";

	if (addr == NULL)
		addr = "";
	switch (err) {
	case ROOST_EOVERQUOTA:
		reply(s, 452, "4.2.2", "%s%s%sMailbox full, try again later", pre, addr, post);
		break;
	case ROOST_ETOOBIG:
		reply(s, 552, "5.3.4", "%s%s%sMessage too big for the mailbox", pre, addr, post);
		break;
	default:
		reply(s, 451, "4.3.0", "%s%s%sTemporary storage failure, try again later (id %s)",
		      pre, addr, post, s->id);
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
	size_t n = s->role == ROLE_LMTP && s->n_rcpts > 0 ? s->n_rcpts : 1;

	for (size_t i = 0; i < n; i++) {
		s->no_count = i > 0;
		reply(s, code, enh, "%s", text);
	}
	s->no_count = false;
	reset_transaction(s);
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
	err = relay_from_header_check(s->cfg, user != NULL ? user : "", head.data, head.len, bad,
	                              sizeof(bad));
	buf_free(&head);
	if (err == 0)
		return true;
	log_info(
	    "conn=%llu proto=smtp event=rejected id=%s reason=from-mismatch user=%s from=\"%s\"",
	    (unsigned long long)conn_id(s->c), s->id, user != NULL ? user : "", bad);
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
		log_debug("conn=%llu proto=smtp event=dkim-signed id=%s domain=%s",
		          (unsigned long long)conn_id(s->c), s->id, relay_domain(from));
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
		log_error("conn=%llu proto=smtp event=queue-failed id=%s error=\"%s\"",
		          (unsigned long long)conn_id(s->c), s->id, roost_strerror(err));
	free(rin);
	buf_free(&trace);
	buf_free(&dkim);
	return err;
}

/* The whole message is in s->msg: store it and answer. */
static void
finish_message(struct smtp_session *s, bool bare_eol)
{
	struct delivery_rcpt *dr;
	struct msg_input in = {.fd = -1};
	uint64_t body;
	bool lmtp = s->role == ROLE_LMTP;
	size_t n_remote = 0, n_local = 0, *map;
	char qid[QUEUE_ID_LEN];
	int err;

	if (s->too_big) {
		log_info("conn=%llu proto=%s event=rejected id=%s reason=too-big",
		         (unsigned long long)conn_id(s->c), proto_name(s), s->id);
		reject_message(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		return;
	}
	if (bare_eol) {
		log_info("conn=%llu proto=%s event=rejected id=%s reason=bare-cr-lf",
		         (unsigned long long)conn_id(s->c), proto_name(s), s->id);
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
	dr = xcalloc(s->n_rcpts, sizeof(*dr));
	map = xcalloc(s->n_rcpts, sizeof(*map));
	for (size_t i = 0; i < s->n_rcpts; i++) {
		if (!s->rcpts[i].remote) {
			map[n_local] = i;
			dr[n_local++] = s->rcpts[i].d;
		}
	}
	err = n_local > 0 ? delivery_store_input(s->sv->storage, &in, dr, n_local, !lmtp) : 0;
	if (n_remote > 0)
		queue_commit(s->sv->queue, qid, err == 0);
	for (size_t k = 0; k < n_local; k++) {
		const struct smtp_rcpt *r = &s->rcpts[map[k]];
		size_t i = k;

		if (dr[i].result == 0)
			log_info("conn=%llu proto=%s event=delivered id=%s from=%s to=%s "
			         "user=%s mailbox=%s uid=%u size=%llu notify=%s orcpt=%s",
			         (unsigned long long)conn_id(s->c), proto_name(s), s->id,
			         LOG_QUOTE(s->sender), LOG_QUOTE(r->addr), LOG_QUOTE(dr[i].user),
			         LOG_QUOTE(dr[i].mailbox), dr[i].uid, (unsigned long long)body,
			         r->params.notify[0] ? LOG_QUOTE(r->params.notify) : "-",
			         r->params.orcpt[0] ? LOG_QUOTE(r->params.orcpt) : "-");
		else
			log_warn("conn=%llu proto=%s event=deferred id=%s from=%s to=%s "
			         "user=%s error=\"%s\"",
			         (unsigned long long)conn_id(s->c), proto_name(s), s->id,
			         LOG_QUOTE(s->sender), LOG_QUOTE(r->addr), LOG_QUOTE(dr[i].user),
			         roost_strerror(dr[i].result));
	}
	for (size_t i = 0; i < s->n_rcpts && err == 0; i++) {
		if (s->rcpts[i].remote)
			log_info(
			    "conn=%llu proto=%s event=queued id=%s queue_id=%s from=<%s> to=<%s> "
			    "size=%llu",
			    (unsigned long long)conn_id(s->c), proto_name(s), s->id, qid, s->sender,
			    s->rcpts[i].addr, (unsigned long long)body);
	}
	if (lmtp) {
		for (size_t k = 0; k < n_local; k++) {
			if (dr[k].result == 0)
				reply(s, 250, "2.0.0", "<%s> Delivered, id=%s",
				      s->rcpts[map[k]].addr, s->id);
			else
				storage_error_reply(s, dr[k].result, s->rcpts[map[k]].addr);
		}
	} else if (err == 0) {
		if (n_remote > 0)
			reply(s, 250, "2.0.0", "Ok: queued as %s", qid);
		else
			reply(s, 250, "2.0.0", "Ok: delivered as %s", s->id);
	} else {
		storage_error_reply(s, err, NULL);
	}
	free(map);
	free(dr);
	reset_transaction(s);
}

/* ---- DATA and BDAT bodies ---- */

static void
data_piece(struct smtp_session *s, const uint8_t *in, size_t len)
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
		log_error("conn=%llu proto=smtp event=bug reason=\"framer and decoder disagree\"",
		          (unsigned long long)conn_id(s->c));
	s->in_data = false;
	finish_message(s, s->dec.bare_eol > 0 && !s->dec.normalize);
}

static void
bdat_chunk_done(struct smtp_session *s)
{
	if (s->bdat_discard) {
		reply(s, s->bdat_code, s->bdat_enh, "%s", s->bdat_text);
		s->bdat_discard = false;
		return;
	}
	if (s->too_big && !s->bdat_last) {
		reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		reset_transaction(s);
		return;
	}
	if (!s->bdat_last) {
		reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->body_len);
		return;
	}
	finish_message(s, false);
}

static void
bdat_piece(struct smtp_session *s, const uint8_t *in, size_t len)
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
		bdat_chunk_done(s);
}

static void
cmd_bdat(struct smtp_session *s, const char *args)
{
	uint64_t size = s->fr.bdat_size;
	bool last = s->fr.bdat_last;

	/* The framer decided whether a chunk follows; its word is final. */
	if (!s->fr.line_bdat) {
		/* Without a size the byte stream cannot be followed: what
		 * comes next could be message text taken for commands. */
		reply(s, 501, "5.5.4", "Syntax: BDAT <size> [LAST]; closing connection");
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
		enter_state(s, ST_BDAT);
		s->bdat_discard = false;
	} else if (s->state == ST_BDAT) {
		s->bdat_discard = false;
	} else if (s->state == ST_MAIL) {
		s->bdat_code = s->role == ROLE_LMTP ? 503 : 554; /* as DATA */
		s->bdat_text = "No valid recipients";
	} else {
		s->bdat_text =
		    s->helo == HELO_NONE ? "Send EHLO first" : "Need MAIL and RCPT first";
	}
	s->bdat_taken = true;
	if (size == 0)
		bdat_chunk_done(s);
}

static void
cmd_data(struct smtp_session *s, const char *args)
{
	if (args[0] != '\0') {
		reply(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (s->state == ST_BDAT) {
		reply(s, 503, "5.5.1", "DATA not allowed in a BDAT transaction");
		return;
	}
	if (s->state == ST_MAIL) {
		/* RFC 2033 4.2: over LMTP this MUST be 503; SMTP may say 554. */
		reply(s, s->role == ROLE_LMTP ? 503 : 554, "5.5.1", "No valid recipients");
		return;
	}
	if (s->state != ST_RCPT) {
		reply(s, 503, "5.5.1", "Need MAIL and RCPT first");
		return;
	}
	start_message(s);
	s->in_data = true;
	smtp_data_dec_init(&s->dec, s->cfg->smtp_bare_lf != NULL &&
	                                strcmp(s->cfg->smtp_bare_lf, "normalize") == 0);
	smtp_framer_start_data(&s->fr, s->dec.normalize);
	conn_write_str(s->c, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

/* ---- commands ---- */

static void
cmd_helo(struct smtp_session *s, const char *args, enum helo_kind kind)
{
	size_t n = strcspn(args, " ");

	if (n == 0 || n >= sizeof(s->helo_name)) {
		reply(s, 501, "5.5.4", "Syntax: %s hostname",
		      kind == HELO_HELO   ? "HELO"
		      : kind == HELO_EHLO ? "EHLO"
		                          : "LHLO");
		return;
	}
	memcpy(s->helo_name, args, n);
	s->helo_name[n] = '\0';
	s->helo = kind;
	reset_transaction(s);
	if (kind == HELO_HELO) {
		reply(s, 250, NULL, "%s", s->cfg->hostname);
		return;
	}
	conn_printf(s->c, "250-%s Hello %s [%s]\r\n", s->cfg->hostname, s->helo_name,
	            conn_peer(s->c));
	conn_write_str(s->c, "250-PIPELINING\r\n");
	conn_printf(s->c, "250-SIZE %llu\r\n", (unsigned long long)s->cfg->max_message_size);
	conn_write_str(s->c, "250-8BITMIME\r\n");
	conn_write_str(s->c, "250-ENHANCEDSTATUSCODES\r\n");
	if (s->role != ROLE_LMTP) {
		const char *mechs = sasl_mechanisms(s->sv->auth, conn_is_secure(s->c));

		if (!conn_is_tls(s->c))
			conn_write_str(s->c, "250-STARTTLS\r\n");
		if (!s->authenticated && mechs != NULL && mechs[0] != '\0')
			conn_printf(s->c, "250-AUTH %s\r\n", mechs);
	}
	conn_write_str(s->c, "250-CHUNKING\r\n");
	conn_write_str(s->c, "250-SMTPUTF8\r\n");
	conn_write_str(s->c, "250 DSN\r\n");
}

/* Who may use this envelope sender (roost/relay.h): an authenticated
 * client only its own address (553), an untrusted unauthenticated client
 * on port smtp no local domain (550). */
static bool
sender_ok(struct smtp_session *s)
{
	const char *user = conn_user(s->c);

	if (s->role == ROLE_LMTP)
		return true;
	if (s->authenticated) {
		if (relay_sender_allowed(s->cfg, user != NULL ? user : "", s->sender))
			return true;
		log_info("conn=%llu proto=smtp event=rejected reason=sender-mismatch user=%s "
		         "from=<%s>",
		         (unsigned long long)conn_id(s->c), user != NULL ? user : "", s->sender);
		reply(s, 553, "5.7.1", "<%s>: Sender address not owned by user %s", s->sender,
		      user != NULL ? user : "");
		s->sender[0] = '\0';
		return false;
	}
	if (s->role == ROLE_MX && !s->trusted && s->sender[0] != '\0' &&
	    delivery_domain_is_local(s->cfg, relay_domain(s->sender))) {
		log_info("conn=%llu proto=smtp event=rejected reason=local-sender-unauthenticated "
		         "from=<%s>",
		         (unsigned long long)conn_id(s->c), s->sender);
		reply(s, 550, "5.7.1", "<%s>: Local sender from outside needs authentication",
		      s->sender);
		s->sender[0] = '\0';
		return false;
	}
	return true;
}

static void
cmd_mail(struct smtp_session *s, const char *args)
{
	const char *params, *bad;
	int err;

	if (s->helo == HELO_NONE) {
		reply(s, 503, "5.5.1", "Send %s first",
		      s->role == ROLE_LMTP ? "LHLO" : "EHLO/HELO");
		return;
	}
	if (s->role == ROLE_SUBMISSION && !s->authenticated) {
		reply(s, 530, "5.7.0", "Authentication required");
		return;
	}
	if (s->state != ST_READY) {
		reply(s, 503, "5.5.1", "Nested MAIL command");
		return;
	}
	if (strncasecmp(args, "FROM:", 5) != 0) {
		reply(s, 501, "5.5.2", "Syntax: MAIL FROM:<address>");
		return;
	}
	if (smtp_parse_path(args + 5, true, s->sender, &params) != 0) {
		s->sender[0] = '\0';
		reply(s, 501, "5.1.7", "Bad sender address syntax");
		return;
	}
	if (params[0] != '\0' && s->helo == HELO_HELO) {
		reply(s, 555, "5.5.4", "MAIL parameters need EHLO");
		s->sender[0] = '\0';
		return;
	}
	err = smtp_parse_mail_params(params, s->cfg->max_message_size, &s->mp, &bad);
	if (err != 0) {
		s->sender[0] = '\0';
		if (err == ROOST_ETOOBIG)
			reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
		else if (err == ROOST_ENOTSUP)
			reply(s, 555, "5.5.4", "Unsupported MAIL parameter");
		else
			reply(s, 501, "5.5.4", "Invalid MAIL parameter");
		memset(&s->mp, 0, sizeof(s->mp));
		return;
	}
	if (smtp_addr_is_utf8(s->sender) && !s->mp.smtputf8) {
		s->sender[0] = '\0';
		reply(s, 553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8");
		return;
	}
	if (!sender_ok(s))
		return;
	enter_state(s, ST_MAIL);
	reply(s, 250, "2.1.0", "Ok");
}

static void
cmd_rcpt(struct smtp_session *s, const char *args)
{
	struct smtp_rcpt r;
	const char *params, *bad;
	int err;

	if (s->state != ST_MAIL && s->state != ST_RCPT) {
		reply(s, 503, "5.5.1",
		      s->state == ST_BDAT ? "RCPT not allowed after BDAT" : "Need MAIL first");
		return;
	}
	if (strncasecmp(args, "TO:", 3) != 0) {
		reply(s, 501, "5.5.2", "Syntax: RCPT TO:<address>");
		return;
	}
	memset(&r, 0, sizeof(r));
	if (smtp_parse_path(args + 3, false, r.addr, &params) != 0) {
		reply(s, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	if (params[0] != '\0' && s->helo == HELO_HELO) {
		reply(s, 555, "5.5.4", "RCPT parameters need EHLO");
		return;
	}
	err = smtp_parse_rcpt_params(params, &r.params, &bad);
	if (err != 0) {
		if (err == ROOST_ENOTSUP)
			reply(s, 555, "5.5.4", "Unsupported RCPT parameter");
		else
			reply(s, 501, "5.5.4", "Invalid RCPT parameter");
		return;
	}
	if (smtp_addr_is_utf8(r.addr) && !s->mp.smtputf8) {
		reply(s, 553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8");
		return;
	}
	if (s->n_rcpts >= s->cfg->max_recipients) {
		reply(s, 452, "4.5.3", "Too many recipients");
		return;
	}
	err = delivery_resolve(s->sv, r.addr, &r.d);
	if (err == ROOST_EPERM && s->sv->queue != NULL && s->role != ROLE_LMTP &&
	    (s->authenticated || s->trusted)) {
		r.remote = true;
		err = 0;
	} else if (err == ROOST_EPERM) {
		if (s->authenticated)
			reply(s, 451, "4.4.0",
			      "<%s>: Relaying to other domains is not available yet "
			      "(no outbound queue), try again later",
			      r.addr);
		else if (s->role == ROLE_LMTP)
			reply(s, 550, "5.1.2", "<%s>: Not a local domain", r.addr);
		else
			reply(s, 554, "5.7.1", "<%s>: Relay access denied", r.addr);
		return;
	}
	if (err != 0) {
		/* An MTA handing over a batch over LMTP is not probing for
		 * users: its unknown recipients do not count towards 421. */
		s->no_count = s->role == ROLE_LMTP;
		reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: User unknown", r.addr);
		s->no_count = false;
		return;
	}
	if (s->n_rcpts == s->cap_rcpts) {
		s->cap_rcpts = s->cap_rcpts == 0 ? 4 : s->cap_rcpts * 2;
		s->rcpts = xreallocarray(s->rcpts, s->cap_rcpts, sizeof(*s->rcpts));
	}
	s->rcpts[s->n_rcpts++] = r;
	enter_state(s, ST_RCPT);
	reply(s, 250, "2.1.5", "Ok");
}

static void
cmd_starttls(struct smtp_session *s, const char *args)
{
	int err;

	if (s->role == ROLE_LMTP) {
		reply(s, 502, "5.5.1", "STARTTLS not supported here");
		return;
	}
	if (args[0] != '\0') {
		reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	if (conn_is_tls(s->c)) {
		reply(s, 503, "5.5.1", "TLS already active");
		return;
	}
	err = conn_starttls(s->c);
	if (err != 0) {
		reply(s, 454, "4.7.0", "TLS not available");
		return;
	}
	conn_write_str(s->c, "220 2.0.0 Ready to start TLS\r\n");
	/* RFC 3207 4.2: forget everything learnt before TLS, a login included
	 * (AUTH before TLS is possible on loopback). */
	s->helo = HELO_NONE;
	s->helo_name[0] = '\0';
	if (s->authenticated) {
		s->authenticated = false;
		conn_set_user(s->c, NULL);
	}
	reset_transaction(s);
}

static void
auth_result(struct smtp_session *s, int err, struct buf *challenge)
{
	switch (err) {
	case ROOST_EAGAIN:
		if (sasl_verified(s->sasl))
			conn_delay(s->c, auth_success(s->sv->auth, conn_peer(s->c)));
		conn_printf(s->c, "334 %s\r\n", buf_cstr(challenge));
		return;
	case 0:
		s->authenticated = true;
		conn_set_user(s->c, sasl_user(s->sasl));
		conn_delay(s->c, auth_success(s->sv->auth, conn_peer(s->c)));
		log_info("conn=%llu proto=smtp event=login user=%s",
		         (unsigned long long)conn_id(s->c), LOG_QUOTE(sasl_user(s->sasl)));
		reply(s, 235, "2.7.0", "Authentication successful");
		break;
	case ROOST_EAUTH:
		conn_delay(s->c, auth_failure(s->sv->auth, conn_peer(s->c)));
		log_info("conn=%llu proto=smtp event=auth-failed peer=%s user=%s",
		         (unsigned long long)conn_id(s->c), conn_peer(s->c),
		         LOG_QUOTE(sasl_user_tried(s->sasl)));
		reply(s, 535, "5.7.8", "Authentication credentials invalid");
		break;
	case ROOST_ECANCELED:
		reply(s, 501, "5.0.0", "Authentication cancelled");
		break;
	case ROOST_ENOTSUP:
		reply(s, 504, "5.5.4", "Unrecognized authentication mechanism");
		break;
	case ROOST_EPERM:
		reply(s, 538, "5.7.11",
		      "Encryption required for requested authentication mechanism");
		break;
	default:
		reply(s, 501, "5.5.2", "Malformed authentication data");
		break;
	}
	sasl_free(&s->sasl);
}

static void
cmd_auth(struct smtp_session *s, const char *args)
{
	struct buf challenge = BUF_INIT(4096);
	char mech[32];
	const char *initial = NULL;
	size_t n = strcspn(args, " ");
	int err;

	if (s->role == ROLE_LMTP) {
		reply(s, 502, "5.5.1", "AUTH not supported here");
		return;
	}
	if (s->helo != HELO_EHLO) {
		reply(s, 503, "5.5.1", "Send EHLO first");
		return;
	}
	if (s->authenticated) {
		reply(s, 503, "5.5.1", "Already authenticated");
		return;
	}
	if (s->state != ST_READY) {
		reply(s, 503, "5.5.1", "AUTH not allowed during a mail transaction");
		return;
	}
	if (n == 0 || n >= sizeof(mech)) {
		reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
		return;
	}
	memcpy(mech, args, n);
	mech[n] = '\0';
	if (args[n] == ' ')
		initial = args + n + 1;
	/* sasl refuses plaintext mechanisms off TLS/loopback (ROOST_EPERM). */
	err = sasl_start(s->sv->auth, mech, conn_is_secure(s->c), initial, &challenge, &s->sasl);
	auth_result(s, err, &challenge);
	buf_free(&challenge);
}

static void
auth_continue(struct smtp_session *s, const char *line)
{
	struct buf challenge = BUF_INIT(4096);
	int err;

	if (strcmp(line, "*") == 0)
		err = ROOST_ECANCELED;
	else
		err = sasl_step(s->sasl, line, &challenge);
	auth_result(s, err, &challenge);
	buf_free(&challenge);
}

static void
cmd_rset(struct smtp_session *s, const char *args)
{
	reset_transaction(s);
	reply(s, 250, "2.0.0", "Ok");
}

static void
cmd_noop(struct smtp_session *s, const char *args)
{
	reply(s, 250, "2.0.0", "Ok");
}

static void
cmd_quit(struct smtp_session *s, const char *args)
{
	reply(s, 221, "2.0.0", "%s Bye", s->cfg->hostname);
	conn_close(s->c);
}

static void
cmd_help(struct smtp_session *s, const char *args)
{
	reply(s, 214, "2.0.0", "Commands: %s MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY%s",
	      s->role == ROLE_LMTP ? "LHLO" : "EHLO HELO",
	      s->role == ROLE_LMTP ? "" : " STARTTLS AUTH");
}

static void
cmd_vrfy(struct smtp_session *s, const char *args)
{
	if (args[0] == '\0') {
		reply(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void
cmd_expn(struct smtp_session *s, const char *args)
{
	reply(s, 502, "5.5.1", "EXPN not implemented");
}

static void
cmd_ehlo(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, HELO_EHLO);
}

static void
cmd_helo_plain(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, HELO_HELO);
}

static void
cmd_lhlo(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, HELO_LHLO);
}

enum {
	CMD_SMTP_ONLY = 1 << 0, /* not on the lmtp listener */
	CMD_LMTP_ONLY = 1 << 1,
};

struct smtp_command {
	const char *name;
	unsigned flags;
	void (*run)(struct smtp_session *s, const char *args);
};

static const struct smtp_command commands[] = {
    {"EHLO", CMD_SMTP_ONLY, cmd_ehlo},
    {"HELO", CMD_SMTP_ONLY, cmd_helo_plain},
    {"LHLO", CMD_LMTP_ONLY, cmd_lhlo},
    {"MAIL", 0, cmd_mail},
    {"RCPT", 0, cmd_rcpt},
    {"DATA", 0, cmd_data},
    {"BDAT", 0, cmd_bdat},
    {"RSET", 0, cmd_rset},
    {"NOOP", 0, cmd_noop},
    {"QUIT", 0, cmd_quit},
    {"HELP", 0, cmd_help},
    {"VRFY", 0, cmd_vrfy},
    {"EXPN", 0, cmd_expn},
    {"STARTTLS", CMD_SMTP_ONLY, cmd_starttls},
    {"AUTH", CMD_SMTP_ONLY, cmd_auth},
    {NULL, 0, NULL},
};

static void
run_line(struct smtp_session *s, const char *line)
{
	char verb[16];
	const char *args;
	const struct smtp_command *cmd;

	if (s->sasl != NULL) {
		auth_continue(s, line);
		return;
	}
	if (smtp_parse_verb(line, verb, sizeof(verb), &args) != 0) {
		reply(s, 500, "5.5.2", "Syntax error, command unrecognized");
		return;
	}
	for (cmd = commands; cmd->name != NULL; cmd++) {
		if (strcmp(cmd->name, verb) == 0)
			break;
	}
	if (cmd->name == NULL || ((cmd->flags & CMD_SMTP_ONLY) && s->role == ROLE_LMTP) ||
	    ((cmd->flags & CMD_LMTP_ONLY) && s->role != ROLE_LMTP)) {
		reply(s, 500, "5.5.1", "Command unrecognized: %s", verb);
		return;
	}
	log_debug("conn=%llu proto=%s command=%s", (unsigned long long)conn_id(s->c), proto_name(s),
	          cmd->name);
	cmd->run(s, args);
}

/* ---- proto_ops ---- */

static void *
smtp_session_new(struct conn *c)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	const char *listener = conn_listener(c);

	s->c = c;
	s->sv = conn_services(c);
	s->cfg = s->sv->cfg;
	if (strcmp(listener, "lmtp") == 0)
		s->role = ROLE_LMTP;
	else if (strcmp(listener, "submission") == 0 || strcmp(listener, "smtps") == 0)
		s->role = ROLE_SUBMISSION;
	else
		s->role = ROLE_MX;
	s->trusted = relay_peer_trusted(s->cfg, conn_peer(c));
	smtp_framer_init(&s->fr);
	s->spool_fd = -1;
	buf_init(&s->line, 0);
	buf_init(&s->msg, 0);
	s->state = ST_INIT;
	conn_printf(c, "220 %s %s Roost ready\r\n", s->cfg->hostname,
	            s->role == ROLE_LMTP ? "LMTP" : "ESMTP");
	return s;
}

static void
smtp_session_free(void *session)
{
	struct smtp_session *s = session;

	if (s == NULL)
		return;
	sasl_free(&s->sasl);
	if (s->spool_fd >= 0)
		close(s->spool_fd);
	buf_free(&s->line);
	buf_free(&s->msg);
	free(s->rcpts);
	free(s);
}

/*
 * A DATA body or BDAT chunk is handed to the worker in pieces of at least
 * SMTP_DATA_PIECE bytes (or what is left of it), so a large message costs
 * a few worker hand-offs, not one per read. The frame hook raises the
 * runtime's input bound to SMTP_DATA_WINDOW while a body is arriving (the
 * raise lasts one framed unit, so it is renewed on every call).
 */
#define SMTP_DATA_PIECE (256 * 1024)
#define SMTP_DATA_WINDOW (2 * SMTP_DATA_PIECE)

static size_t
data_chunk(struct conn *c, bool raised)
{
	size_t max = conn_max_line(c);

	if (raised)
		return SMTP_DATA_PIECE;
	return max / 2 > 512 ? max / 2 : 512;
}

static enum frame_result
smtp_frame_hook(struct conn *c, void *session, const uint8_t *in, size_t len, size_t *used_r)
{
	struct smtp_session *s = session;
	bool line_mode = s->fr.mode == SMTP_FRAME_LINE;
	bool body = s->fr.mode == SMTP_FRAME_DATA || s->fr.mode == SMTP_FRAME_BDAT;
	enum smtp_frame_result r;

	if (body)
		conn_set_input_max(c, SMTP_DATA_WINDOW);
	r = smtp_frame(&s->fr, in, len, conn_max_line(c), data_chunk(c, body), used_r);
	switch (r) {
	case SMTP_FR_COMMAND:
		/* RFC 2920: no pipelining before the EHLO reply announced it.
		 * A client that talks before the greeting (or stacks commands
		 * before its EHLO is answered) is a spam engine or an
		 * injection attempt: refuse it. */
		if (line_mode && s->helo == HELO_NONE && s->sasl == NULL && *used_r < len) {
			log_info("conn=%llu proto=%s event=early-pipelining",
			         (unsigned long long)conn_id(c), proto_name(s));
			conn_write_str(c, "554 5.5.0 Pipelining before the greeting or the EHLO "
			                  "reply is not allowed\r\n");
			return FRAME_CLOSE;
		}
		return FRAME_COMMAND;
	case SMTP_FR_AGAIN:
		return FRAME_AGAIN;
	case SMTP_FR_LONG_LINE:
		conn_write_str(c, "500 5.5.2 Line too long\r\n");
		s->errors++;
		if (s->cfg->smtp_max_errors != 0 && s->errors >= s->cfg->smtp_max_errors) {
			conn_printf(c, "421 4.7.0 %s Too many errors, closing connection\r\n",
			            s->cfg->hostname);
			return FRAME_CLOSE;
		}
		return FRAME_DISCARD;
	case SMTP_FR_SKIP:
		return FRAME_DISCARD;
	}
	return FRAME_AGAIN;
}

static void
smtp_on_command(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	struct smtp_session *s = session;

	if (s->fr.kind == SMTP_FRAME_DATA) {
		data_piece(s, cmd, len);
		return;
	}
	if (s->fr.kind == SMTP_FRAME_BDAT) {
		bdat_piece(s, cmd, len);
		return;
	}
	while (len > 0 && (cmd[len - 1] == '\n' || cmd[len - 1] == '\r'))
		len--;
	if (memchr(cmd, '\0', len) != NULL) {
		reply(s, 500, "5.5.2", "NUL byte in command");
		return;
	}
	buf_reset(&s->line);
	buf_append(&s->line, cmd, len);
	s->bdat_taken = false;
	run_line(s, buf_cstr(&s->line));
	if (s->fr.line_bdat && !s->bdat_taken) {
		/* The framer takes a chunk after every well-formed BDAT line,
		 * also one sent as an AUTH response: read it, drop it, answer. */
		s->bdat_left = s->fr.bdat_size;
		s->bdat_last = s->fr.bdat_last;
		s->bdat_discard = true;
		s->bdat_code = 503;
		s->bdat_enh = "5.5.1";
		s->bdat_text = "BDAT not allowed here";
		if (s->bdat_left == 0)
			bdat_chunk_done(s);
	}
}

static void
smtp_on_timeout(struct conn *c, void *session)
{
	struct smtp_session *s = session;

	conn_printf(c, "421 4.4.2 %s Timeout exceeded, closing connection\r\n", s->cfg->hostname);
}

static void
smtp_on_shutdown(struct conn *c, void *session)
{
	struct smtp_session *s = session;

	conn_printf(c, "421 4.3.2 %s Service shutting down, closing connection\r\n",
	            s->cfg->hostname);
}

const struct proto_ops smtp_proto_ops = {
    .name = "smtp",
    .session_new = smtp_session_new,
    .session_free = smtp_session_free,
    .frame = smtp_frame_hook,
    .on_command = smtp_on_command,
    .on_timeout = smtp_on_timeout,
    .on_shutdown = smtp_on_shutdown,
};
