#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/pop3.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

/*
 * The POP3 session: a command table plus one state enum (STYLE.md 11).
 *
 * AUTHORIZATION -> TRANSACTION at login (lock taken, INBOX snapshot read),
 * TRANSACTION -> UPDATE at QUIT, where the messages marked with DELE are
 * expunged; the +OK goes out only after mailbox_expunge() returned, and
 * mailbox_expunge() returns only once the change is durable. A connection
 * that ends any other way (drop, timeout, shutdown, too many errors) never
 * reaches UPDATE and deletes nothing.
 */

#define POP3_MAX_USER 512 /* bytes of a USER argument */
#define POP3_DEFAULT_MAX_BAD 20
#define OCTETS_UNKNOWN UINT64_MAX
#define ENC_IN_CHUNK 16384
#define LIST_BATCH 8192

enum pop3_state {
	POP3_AUTHORIZATION = 1 << 0,
	POP3_TRANSACTION = 1 << 1,
	POP3_UPDATE = 1 << 2,
};

/* A multi-line reply produced in steps (conn_continue): each step writes
 * until the connection's output is full. A message view is kept between
 * steps only when the backend says it pins nothing shared (holdable, see
 * storage.h); otherwise the message is read again at each step. */
enum pop3_xfer_kind {
	XFER_NONE,
	XFER_MESSAGE, /* RETR, TOP */
	XFER_SCAN,    /* LIST */
	XFER_UIDL,    /* UIDL */
};

struct pop3_xfer {
	enum pop3_xfer_kind kind;
	uint32_t idx; /* the message; for a listing the next entry */
	size_t off;   /* message bytes already encoded */
	size_t len;   /* message length at the first read */
	struct pop3_encoder enc;
	struct msg_view view; /* kept between steps when holdable */
	bool view_held;
};

/* One message of the maildrop snapshot taken at login. */
struct pop3_msg {
	uint32_t uid;
	bool deleted;
	uint64_t octets; /* as RETR sends it; OCTETS_UNKNOWN until read */
};

struct pop3_session {
	struct conn *c;
	const struct roost_services *svc;
	enum pop3_state state;
	unsigned bad_commands;
	unsigned max_bad;
	struct pop3_framer framer; /* used by the frame hook (loop thread) */

	/* AUTHORIZATION */
	char *user_arg;    /* from USER, until PASS */
	struct sasl *sasl; /* AUTH exchange in progress */
	bool utf8;

	/* TRANSACTION: the maildrop */
	char user[POP3_MAX_USER]; /* canonical name */
	int lock_fd;
	struct mailbox *mb;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	uint32_t n_msgs;
	uint32_t n_deleted;
	struct pop3_xfer xfer; /* a reply in steps, between steps */
};

/* What a command's run function reports back to the dispatcher. */
enum cmd_result {
	CMD_OK,  /* a reply was sent (+OK or a plain -ERR) */
	CMD_BAD, /* a reply was sent and it counts as a bad command */
};

struct pop3_command {
	const char *name;
	unsigned states; /* enum pop3_state bits where it is allowed */
	enum cmd_result (*run)(struct pop3_session *s, const struct pop3_line *line);
};

static const char *
state_name(enum pop3_state st)
{
	switch (st) {
	case POP3_AUTHORIZATION:
		return "AUTHORIZATION";
	case POP3_TRANSACTION:
		return "TRANSACTION";
	case POP3_UPDATE:
		return "UPDATE";
	}
	return "?";
}

static void
pop3_enter_state(struct pop3_session *s, enum pop3_state st)
{
	log_debug("conn=%llu proto=pop3 state %s -> %s", (unsigned long long)conn_id(s->c),
	          state_name(s->state), state_name(st));
	s->state = st;
}

static void
reply(struct pop3_session *s, const char *text)
{
	conn_write_str(s->c, text);
	conn_write(s->c, "\r\n", 2);
}

static const struct roost_config *
cfg_of(const struct pop3_session *s)
{
	return s->svc->cfg;
}

/* Plaintext passwords are fine over TLS, on loopback, or when configured. */
static bool
plaintext_ok(const struct pop3_session *s)
{
	return auth_plaintext_allowed(s->svc->auth, conn_is_secure(s->c));
}

/* ================================================================
 * The maildrop: login, snapshot, sizes
 * ================================================================ */

/* The end of a message reply, however it ended: a held view goes back to
 * its mailbox. */
static void
xfer_end(struct pop3_session *s)
{
	if (s->xfer.view_held)
		msg_view_release(&s->xfer.view);
	s->xfer.view_held = false;
	s->xfer.kind = XFER_NONE;
}

static void
maildrop_close(struct pop3_session *s)
{
	xfer_end(s);
	mailbox_close(&s->mb);
	free(s->msgs);
	s->msgs = NULL;
	s->n_msgs = 0;
	s->n_deleted = 0;
	pop3_lock_release(&s->lock_fd);
}

static void
reply_storage_error(struct pop3_session *s, int err)
{
	if (err == ROOST_EINUSE)
		reply(s, "-ERR [IN-USE] Mailbox is in use by another session.");
	else if (err == ROOST_EPERM || err == ROOST_EINVAL)
		reply(s, "-ERR [SYS/PERM] Mailbox cannot be opened.");
	else
		reply(s, "-ERR [SYS/TEMP] Temporary failure, try again later.");
}

/* Lock the maildrop and take the snapshot; replies either way. */
static enum cmd_result
login(struct pop3_session *s, const char *canonical)
{
	struct storage *st = s->svc->storage;
	struct mailbox_status status;
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t modseq;
	int r;

	conn_delay(s->c, auth_success(s->svc->auth, conn_peer(s->c)));
	if (strlen(canonical) >= sizeof(s->user)) {
		reply(s, "-ERR [SYS/PERM] User name too long.");
		return CMD_OK;
	}
	snprintf(s->user, sizeof(s->user), "%s", canonical);
	r = pop3_lock_acquire(cfg_of(s)->data_dir, s->user, &s->lock_fd);
	if (r != 0) {
		log_info("conn=%llu proto=pop3 event=login-refused user=%s reason=%s",
		         (unsigned long long)conn_id(s->c), LOG_QUOTE(s->user),
		         r == ROOST_EINUSE ? "in-use" : "lock-error");
		reply_storage_error(s, r);
		return CMD_OK;
	}
	r = storage_user_init(st, s->user);
	if (r == 0)
		r = mailbox_open(st, s->user, "INBOX", 0, &s->mb);
	if (r == 0)
		r = mailbox_status(s->mb, &status);
	if (r == 0)
		r = mailbox_records(s->mb, &recs, &n, &modseq);
	if (r == 0 && n > UINT32_MAX) {
		free(recs);
		r = ROOST_ETOOBIG;
	}
	if (r != 0) {
		log_error("conn=%llu proto=pop3 event=login-failed user=%s error=\"%s\"",
		          (unsigned long long)conn_id(s->c), LOG_QUOTE(s->user), roost_strerror(r));
		maildrop_close(s);
		reply_storage_error(s, r);
		return CMD_OK;
	}
	s->uidvalidity = status.uidvalidity;
	s->msgs = xcalloc(n == 0 ? 1 : n, sizeof(*s->msgs));
	for (size_t i = 0; i < n; i++) {
		s->msgs[i].uid = recs[i].uid;
		s->msgs[i].octets = OCTETS_UNKNOWN;
	}
	s->n_msgs = (uint32_t)n;
	free(recs);

	conn_set_user(s->c, s->user);
	log_info("conn=%llu proto=pop3 event=login user=%s messages=%u",
	         (unsigned long long)conn_id(s->c), LOG_QUOTE(s->user), s->n_msgs);
	pop3_enter_state(s, POP3_TRANSACTION);
	reply(s, "+OK Logged in.");
	return CMD_OK;
}

static void
auth_failed(struct pop3_session *s, const char *user_tried)
{
	unsigned ms = auth_failure(s->svc->auth, conn_peer(s->c));

	log_info("conn=%llu proto=pop3 event=auth-failed peer=%s user=%s delay_ms=%u",
	         (unsigned long long)conn_id(s->c), conn_peer(s->c), LOG_QUOTE(user_tried), ms);
	conn_delay(s->c, ms);
	reply(s, "-ERR [AUTH] Authentication failed.");
}

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
		reply(s, "-ERR Invalid message number.");
		*res = CMD_BAD;
		return false;
	}
	if (n == 0 || n > s->n_msgs) {
		reply(s, "-ERR No such message.");
		*res = CMD_OK;
		return false;
	}
	if (s->msgs[n - 1].deleted) {
		reply(s, "-ERR Message is deleted.");
		*res = CMD_OK;
		return false;
	}
	*idx_r = n - 1;
	return true;
}

/* ================================================================
 * AUTHORIZATION commands
 * ================================================================ */

static enum cmd_result
cmd_capa(struct pop3_session *s, const struct pop3_line *line)
{
	struct buf b = BUF_INIT(0);

	if (line->nargs != 0) {
		reply(s, "-ERR CAPA takes no arguments.");
		return CMD_BAD;
	}
	buf_append_str(&b, "+OK Capability list follows\r\n"
	                   "TOP\r\n"
	                   "UIDL\r\n"
	                   "RESP-CODES\r\n"
	                   "PIPELINING\r\n"
	                   "AUTH-RESP-CODE\r\n"
	                   "EXPIRE NEVER\r\n"
	                   "LOGIN-DELAY 0\r\n");
	if (s->state == POP3_AUTHORIZATION) {
		const char *mechs = sasl_mechanisms(s->svc->auth, conn_is_secure(s->c));

		if (plaintext_ok(s))
			buf_append_str(&b, "USER\r\n");
		if (mechs != NULL && mechs[0] != '\0')
			buf_printf(&b, "SASL %s\r\n", mechs);
		if (!conn_is_tls(s->c))
			buf_append_str(&b, "STLS\r\n");
		buf_append_str(&b, "UTF8 USER\r\n");
	}
	buf_append_str(&b, "IMPLEMENTATION Roost\r\n.\r\n");
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
	return CMD_OK;
}

static enum cmd_result
cmd_stls(struct pop3_session *s, const struct pop3_line *line)
{
	int r;

	if (line->nargs != 0) {
		reply(s, "-ERR STLS takes no arguments.");
		return CMD_BAD;
	}
	if (conn_is_tls(s->c)) {
		reply(s, "-ERR TLS is already active.");
		return CMD_BAD;
	}
	/* conn_starttls() only arms the switch: it happens after this hook
	 * returns and the +OK below is flushed; input pipelined after STLS
	 * is discarded by the runtime then. */
	r = conn_starttls(s->c);
	if (r != 0) {
		reply(s, "-ERR [SYS/TEMP] TLS is not available.");
		return CMD_OK;
	}
	reply(s, "+OK Begin TLS negotiation now.");
	/* RFC 2595: forget what the client said before TLS. */
	free(s->user_arg);
	s->user_arg = NULL;
	s->utf8 = false;
	return CMD_OK;
}

static enum cmd_result
cmd_utf8(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 0) {
		reply(s, "-ERR UTF8 takes no arguments.");
		return CMD_BAD;
	}
	s->utf8 = true;
	reply(s, "+OK UTF8 enabled.");
	return CMD_OK;
}

static enum cmd_result
cmd_user(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 1 || line->too_many) {
		reply(s, "-ERR USER takes one argument.");
		return CMD_BAD;
	}
	if (!plaintext_ok(s)) {
		reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
		         "connections; use STLS first.");
		return CMD_OK;
	}
	if (line->args[0].len >= POP3_MAX_USER) {
		reply(s, "-ERR User name too long.");
		return CMD_BAD;
	}
	free(s->user_arg);
	s->user_arg = xstrndup((const char *)line->args[0].p, line->args[0].len);
	reply(s, "+OK");
	return CMD_OK;
}

static enum cmd_result
cmd_pass(struct pop3_session *s, const struct pop3_line *line)
{
	char name[POP3_MAX_USER];
	char *user;
	int r;

	if (!plaintext_ok(s)) {
		reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
		         "connections; use STLS first.");
		return CMD_OK;
	}
	if (s->user_arg == NULL) {
		reply(s, "-ERR No user name given; send USER first.");
		return CMD_BAD;
	}
	if (line->rest.len == 0) {
		reply(s, "-ERR PASS takes one argument.");
		return CMD_BAD;
	}
	/* The whole rest of the line is the password: RFC 1939 allows
	 * spaces in it. USER must be given again after PASS, right or wrong. */
	user = s->user_arg;
	s->user_arg = NULL;
	r = auth_verify(s->svc->auth, user, (const char *)line->rest.p, line->rest.len, name,
	                sizeof(name));
	if (r == ROOST_EAUTH || r == ROOST_ENOTFOUND)
		auth_failed(s, user);
	free(user);
	if (r == ROOST_EAUTH || r == ROOST_ENOTFOUND)
		return CMD_OK;
	if (r != 0) {
		reply(s, "-ERR [SYS/TEMP] Authentication is unavailable, try again later.");
		return CMD_OK;
	}
	return login(s, name);
}

/* Continue or finish an AUTH exchange after sasl_start/sasl_step said r. */
static enum cmd_result
auth_result(struct pop3_session *s, int r, struct buf *challenge)
{
	char name[POP3_MAX_USER];

	switch (r) {
	case ROOST_EAGAIN:
		if (sasl_verified(s->sasl))
			conn_delay(s->c, auth_success(s->svc->auth, conn_peer(s->c)));
		conn_write(s->c, "+ ", 2);
		conn_write(s->c, challenge->data, challenge->len);
		conn_write(s->c, "\r\n", 2);
		return CMD_OK;
	case 0:
		snprintf(name, sizeof(name), "%s", sasl_user(s->sasl));
		sasl_free(&s->sasl);
		return login(s, name);
	case ROOST_EAUTH:
		auth_failed(s, sasl_user_tried(s->sasl));
		sasl_free(&s->sasl);
		return CMD_OK;
	default:
		break;
	}
	sasl_free(&s->sasl);
	switch (r) {
	case ROOST_ECANCELED:
		reply(s, "-ERR Authentication cancelled.");
		return CMD_OK;
	case ROOST_ENOTSUP:
		reply(s, "-ERR Unsupported authentication mechanism.");
		return CMD_BAD;
	case ROOST_EPERM:
		reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
		         "connections; use STLS first.");
		return CMD_OK;
	case ROOST_EINVAL:
		reply(s, "-ERR Invalid authentication data.");
		return CMD_BAD;
	default:
		reply(s, "-ERR [SYS/TEMP] Authentication is unavailable, try again later.");
		return CMD_OK;
	}
}

static enum cmd_result
cmd_auth(struct pop3_session *s, const struct pop3_line *line)
{
	struct buf challenge = BUF_INIT(0);
	char mech[64];
	char *initial = NULL;
	enum cmd_result res;
	int r;

	if (line->nargs == 0) {
		/* The pre-RFC 5034 listing Outlook and others still ask for. */
		const char *mechs = sasl_mechanisms(s->svc->auth, conn_is_secure(s->c));

		conn_write_str(s->c, "+OK\r\n");
		for (const char *p = mechs; p != NULL && *p != '\0';) {
			size_t n = strcspn(p, " ");

			conn_write(s->c, p, n);
			conn_write(s->c, "\r\n", 2);
			p += n;
			p += strspn(p, " ");
		}
		conn_write_str(s->c, ".\r\n");
		return CMD_OK;
	}
	if (line->nargs > 2 || line->too_many) {
		reply(s, "-ERR AUTH takes a mechanism and an optional initial response.");
		return CMD_BAD;
	}
	if (line->args[0].len >= sizeof(mech)) {
		reply(s, "-ERR Unsupported authentication mechanism.");
		return CMD_BAD;
	}
	memcpy(mech, line->args[0].p, line->args[0].len);
	mech[line->args[0].len] = '\0';
	if (line->nargs == 2)
		initial = xstrndup((const char *)line->args[1].p, line->args[1].len);
	r = sasl_start(s->svc->auth, mech, conn_is_secure(s->c), initial, &challenge, &s->sasl);
	if (initial != NULL) {
		explicit_bzero(initial, line->args[1].len);
		free(initial);
	}
	res = auth_result(s, r, &challenge);
	buf_free(&challenge);
	return res;
}

/* A client line while an AUTH exchange is running. */
static enum cmd_result
auth_continue(struct pop3_session *s, const uint8_t *line, size_t len)
{
	struct buf challenge = BUF_INIT(0);
	enum cmd_result res;
	char *text;
	int r;

	if (memchr(line, '\0', len) != NULL) {
		sasl_free(&s->sasl);
		reply(s, "-ERR Invalid authentication data.");
		return CMD_BAD;
	}
	text = xstrndup((const char *)line, len);
	r = sasl_step(s->sasl, text, &challenge);
	explicit_bzero(text, len);
	free(text);
	res = auth_result(s, r, &challenge);
	buf_free(&challenge);
	return res;
}

/* ================================================================
 * TRANSACTION commands
 * ================================================================ */

static enum cmd_result
cmd_stat(struct pop3_session *s, const struct pop3_line *line)
{
	uint64_t total = 0;

	if (line->nargs != 0) {
		reply(s, "-ERR STAT takes no arguments.");
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

static enum cmd_result
cmd_list(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i;

	if (line->nargs > 1 || line->too_many) {
		reply(s, "-ERR LIST takes at most one argument.");
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

static enum cmd_result
cmd_uidl(struct pop3_session *s, const struct pop3_line *line)
{
	char uid[POP3_UIDL_LEN + 1];
	enum cmd_result res;
	uint32_t i;

	if (line->nargs > 1 || line->too_many) {
		reply(s, "-ERR UIDL takes at most one argument.");
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
			xfer_end(s);
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
		log_error("conn=%llu proto=pop3 event=read uid=%u offset=%zu error=\"%s\"",
		          (unsigned long long)conn_id(c), uid, x->off, roost_strerror(r));
		xfer_end(s);
		conn_close(c);
		return;
	}
	if (message_feed(s, &view))
		xfer_end(s);
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
		reply(s, "-ERR Message was removed by another session.");
		return;
	}
	if (r != 0) {
		log_error("conn=%llu proto=pop3 event=read uid=%u error=\"%s\"",
		          (unsigned long long)conn_id(s->c), s->msgs[i].uid, roost_strerror(r));
		reply(s, "-ERR [SYS/TEMP] Cannot read the message, try again later.");
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

static enum cmd_result
cmd_retr(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i;

	if (line->nargs != 1 || line->too_many) {
		reply(s, "-ERR RETR takes one argument.");
		return CMD_BAD;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	send_message(s, i, POP3_ALL_LINES);
	return CMD_OK;
}

static enum cmd_result
cmd_top(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i, lines;

	if (line->nargs != 2 || line->too_many) {
		reply(s, "-ERR TOP takes a message number and a line count.");
		return CMD_BAD;
	}
	if (pop3_parse_number(line->args[1].p, line->args[1].len, &lines) != 0) {
		reply(s, "-ERR Invalid line count.");
		return CMD_BAD;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	send_message(s, i, lines);
	return CMD_OK;
}

static enum cmd_result
cmd_dele(struct pop3_session *s, const struct pop3_line *line)
{
	enum cmd_result res;
	uint32_t i;

	if (line->nargs != 1 || line->too_many) {
		reply(s, "-ERR DELE takes one argument.");
		return CMD_BAD;
	}
	if (!msg_arg(s, &line->args[0], &i, &res))
		return res;
	s->msgs[i].deleted = true;
	s->n_deleted++;
	conn_printf(s->c, "+OK Message %u deleted.\r\n", i + 1);
	return CMD_OK;
}

static enum cmd_result
cmd_noop(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 0) {
		reply(s, "-ERR NOOP takes no arguments.");
		return CMD_BAD;
	}
	reply(s, "+OK");
	return CMD_OK;
}

static enum cmd_result
cmd_rset(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 0) {
		reply(s, "-ERR RSET takes no arguments.");
		return CMD_BAD;
	}
	for (uint32_t i = 0; i < s->n_msgs; i++)
		s->msgs[i].deleted = false;
	s->n_deleted = 0;
	conn_printf(s->c, "+OK %u messages.\r\n", s->n_msgs);
	return CMD_OK;
}

static enum cmd_result
cmd_quit(struct pop3_session *s, const struct pop3_line *line)
{
	uint32_t *uids;
	size_t n = 0;
	int r;

	if (s->state == POP3_AUTHORIZATION) {
		reply(s, "+OK Bye.");
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
			log_error("conn=%llu proto=pop3 event=expunge user=%s error=\"%s\"",
			          (unsigned long long)conn_id(s->c), LOG_QUOTE(s->user),
			          roost_strerror(r));
			maildrop_close(s);
			reply(s, "-ERR [SYS/TEMP] Deleting messages failed; nothing was deleted.");
			conn_close(s->c);
			return CMD_OK;
		}
	}
	log_info("conn=%llu proto=pop3 event=logout user=%s deleted=%zu",
	         (unsigned long long)conn_id(s->c), LOG_QUOTE(s->user), n);
	/* Unlock before the reply leaves: a client that reconnects as soon as
	 * it reads +OK must not find its maildrop still in use. */
	maildrop_close(s);
	conn_printf(s->c, "+OK Logging out, %zu messages deleted.\r\n", n);
	conn_close(s->c);
	return CMD_OK;
}

/* ================================================================
 * Dispatch and the proto_ops hooks
 * ================================================================ */

static const struct pop3_command commands[] = {
    {"CAPA", POP3_AUTHORIZATION | POP3_TRANSACTION, cmd_capa},
    {"USER", POP3_AUTHORIZATION, cmd_user},
    {"PASS", POP3_AUTHORIZATION, cmd_pass},
    {"AUTH", POP3_AUTHORIZATION, cmd_auth},
    {"STLS", POP3_AUTHORIZATION, cmd_stls},
    {"UTF8", POP3_AUTHORIZATION, cmd_utf8},
    {"STAT", POP3_TRANSACTION, cmd_stat},
    {"LIST", POP3_TRANSACTION, cmd_list},
    {"RETR", POP3_TRANSACTION, cmd_retr},
    {"DELE", POP3_TRANSACTION, cmd_dele},
    {"NOOP", POP3_TRANSACTION, cmd_noop},
    {"RSET", POP3_TRANSACTION, cmd_rset},
    {"TOP", POP3_TRANSACTION, cmd_top},
    {"UIDL", POP3_TRANSACTION, cmd_uidl},
    {"QUIT", POP3_AUTHORIZATION | POP3_TRANSACTION, cmd_quit},
};

/* Count a bad command; past the limit say why and end the session. */
static void
bad_command(struct pop3_session *s)
{
	if (++s->bad_commands >= s->max_bad) {
		log_info("conn=%llu proto=pop3 event=too-many-errors",
		         (unsigned long long)conn_id(s->c));
		maildrop_close(s);
		reply(s, "-ERR Too many bad commands, closing the connection.");
		conn_close(s->c);
	}
}

static void *
pop3_session_new(struct conn *c)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));

	s->c = c;
	s->svc = conn_services(c);
	s->state = POP3_AUTHORIZATION;
	s->lock_fd = -1;
	s->max_bad = s->svc->cfg->pop3_max_bad_commands;
	if (s->max_bad == 0)
		s->max_bad = POP3_DEFAULT_MAX_BAD;
	reply(s, "+OK Roost POP3 server ready.");
	return s;
}

static void
pop3_session_free(void *session)
{
	struct pop3_session *s = session;

	if (s == NULL)
		return;
	sasl_free(&s->sasl);
	free(s->user_arg);
	/* Not at QUIT: the marks are dropped, nothing is deleted. */
	maildrop_close(s);
	free(s);
}

static enum frame_result
pop3_frame_hook(struct conn *c, void *session, const uint8_t *in, size_t len, size_t *used_r)
{
	struct pop3_session *s = session;

	switch (pop3_frame(&s->framer, in, len, conn_max_line(c), used_r)) {
	case POP3_FRAME_LINE:
		return FRAME_COMMAND;
	case POP3_FRAME_AGAIN:
		return FRAME_AGAIN;
	case POP3_FRAME_DISCARD:
		return FRAME_DISCARD;
	case POP3_FRAME_TOOLONG:
		break;
	}
	/* The session is the loop's while no command runs, so the AUTH
	 * exchange and the error count may be touched here. */
	if (s->sasl != NULL) {
		sasl_free(&s->sasl);
		reply(s, "-ERR Authentication line too long.");
	} else {
		reply(s, "-ERR Line too long.");
	}
	if (++s->bad_commands >= s->max_bad) {
		reply(s, "-ERR Too many bad commands, closing the connection.");
		return FRAME_CLOSE;
	}
	return FRAME_DISCARD;
}

static void
pop3_on_command(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	struct pop3_session *s = session;
	const struct pop3_command *row = NULL;
	struct pop3_line line;

	if (conn_is_closing(c))
		return;
	pop3_strip_eol(cmd, &len);
	if (s->sasl != NULL) {
		if (auth_continue(s, cmd, len) == CMD_BAD)
			bad_command(s);
		return;
	}
	if (pop3_parse_line(cmd, len, &line) != 0) {
		reply(s, "-ERR Invalid command.");
		bad_command(s);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, line.keyword) == 0) {
			row = &commands[i];
			break;
		}
	}
	if (row == NULL) {
		reply(s, "-ERR Unknown command.");
		bad_command(s);
		return;
	}
	if ((row->states & s->state) == 0) {
		reply(s, s->state == POP3_AUTHORIZATION ? "-ERR Log in first."
		                                        : "-ERR Command not valid in this state.");
		bad_command(s);
		return;
	}
	if (row->run(s, &line) == CMD_BAD)
		bad_command(s);
}

static void
pop3_on_timeout(struct conn *c, void *session)
{
	struct pop3_session *s = session;

	maildrop_close(s); /* nothing deleted; unlocked before the goodbye */
	reply(s, "-ERR Disconnected for inactivity.");
}

static void
pop3_on_shutdown(struct conn *c, void *session)
{
	struct pop3_session *s = session;

	maildrop_close(s);
	reply(s, "-ERR [SYS/TEMP] Server shutting down.");
}

const struct proto_ops pop3_proto_ops = {
    .name = "pop3",
    .session_new = pop3_session_new,
    .session_free = pop3_session_free,
    .frame = pop3_frame_hook,
    .on_command = pop3_on_command,
    .on_timeout = pop3_on_timeout,
    .on_shutdown = pop3_on_shutdown,
};
