/*
 * POP3 AUTHORIZATION state: CAPA, STLS, UTF8, USER/PASS and AUTH (RFC 5034),
 * and the login that locks the maildrop and takes its snapshot.
 */
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

#include "pop3_impl.h"

/* Plaintext passwords are fine over TLS, on loopback, or when configured. */
static bool
plaintext_ok(const struct pop3_session *s)
{
	return auth_plaintext_allowed(s->sv->auth, conn_is_secure(s->c));
}

/* Lock the maildrop and take the snapshot; replies either way. */
static enum cmd_result
login(struct pop3_session *s, const char *canonical)
{
	struct storage *st = s->sv->storage;
	struct mailbox_status status;
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t modseq;
	int r;

	conn_delay(s->c, auth_success(s->sv->auth, conn_peer(s->c)));
	if (strlen(canonical) >= sizeof(s->user)) {
		pop3_reply(s, "-ERR [SYS/PERM] User name too long.");
		return CMD_OK;
	}
	snprintf(s->user, sizeof(s->user), "%s", canonical);
	r = pop3_lock_acquire(pop3_cfg(s)->data_dir, s->user, &s->lock_fd);
	if (r == 0 && (r = storage_lock_user(st, s->user, &s->st_lock)) != 0)
		pop3_lock_release(&s->lock_fd);
	if (r != 0) {
		conn_log(s->c, LOG_LEVEL_INFO, "event=login_refused user=%s reason=%s",
		         LOG_QUOTE(s->user), r == ROOST_EINUSE ? "in_use" : "lock_error");
		pop3_reply_error(s, r);
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
		conn_log(s->c, LOG_LEVEL_ERROR, "event=login_failed user=%s error=\"%s\"",
		         LOG_QUOTE(s->user), roost_strerror(r));
		pop3_maildrop_close(s);
		pop3_reply_error(s, r);
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
	conn_log(s->c, LOG_LEVEL_INFO, "event=login messages=%u", s->n_msgs);
	pop3_enter_state(s, POP3_TRANSACTION);
	pop3_reply(s, "+OK Logged in.");
	return CMD_OK;
}

static void
auth_failed(struct pop3_session *s, const char *user_tried)
{
	unsigned ms = auth_failure(s->sv->auth, conn_peer(s->c));

	conn_log_auth_failed(s->c, user_tried, s->sasl != NULL ? sasl_mech_name(s->sasl) : "USER",
	                     ms);
	conn_delay(s->c, ms);
	pop3_reply(s, "-ERR [AUTH] Authentication failed.");
}

enum cmd_result
pop3_cmd_capa(struct pop3_session *s, const struct pop3_line *line)
{
	struct buf b = BUF_INIT(0);

	if (line->nargs != 0) {
		pop3_reply(s, "-ERR CAPA takes no arguments.");
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
		const char *mechs = sasl_mechanisms(s->sv->auth, conn_is_secure(s->c));

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

enum cmd_result
pop3_cmd_stls(struct pop3_session *s, const struct pop3_line *line)
{
	int r;

	if (line->nargs != 0) {
		pop3_reply(s, "-ERR STLS takes no arguments.");
		return CMD_BAD;
	}
	if (conn_is_tls(s->c)) {
		pop3_reply(s, "-ERR TLS is already active.");
		return CMD_BAD;
	}
	/* conn_starttls() only arms the switch: it happens after this hook
	 * returns and the +OK below is flushed; input pipelined after STLS
	 * is discarded by the runtime then. */
	r = conn_starttls(s->c);
	if (r != 0) {
		pop3_reply(s, "-ERR [SYS/TEMP] TLS is not available.");
		return CMD_OK;
	}
	pop3_reply(s, "+OK Begin TLS negotiation now.");
	/* RFC 2595: forget what the client said before TLS. */
	free(s->user_arg);
	s->user_arg = NULL;
	s->utf8 = false;
	return CMD_OK;
}

enum cmd_result
pop3_cmd_utf8(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 0) {
		pop3_reply(s, "-ERR UTF8 takes no arguments.");
		return CMD_BAD;
	}
	s->utf8 = true;
	pop3_reply(s, "+OK UTF8 enabled.");
	return CMD_OK;
}

enum cmd_result
pop3_cmd_user(struct pop3_session *s, const struct pop3_line *line)
{
	if (line->nargs != 1 || line->too_many) {
		pop3_reply(s, "-ERR USER takes one argument.");
		return CMD_BAD;
	}
	if (!plaintext_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
		              "connections; use STLS first.");
		return CMD_OK;
	}
	if (line->args[0].len >= POP3_MAX_USER) {
		pop3_reply(s, "-ERR User name too long.");
		return CMD_BAD;
	}
	free(s->user_arg);
	s->user_arg = xstrndup((const char *)line->args[0].p, line->args[0].len);
	pop3_reply(s, "+OK");
	return CMD_OK;
}

enum cmd_result
pop3_cmd_pass(struct pop3_session *s, const struct pop3_line *line)
{
	char name[POP3_MAX_USER];
	char *user;
	int r;

	if (!plaintext_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
		              "connections; use STLS first.");
		return CMD_OK;
	}
	if (s->user_arg == NULL) {
		pop3_reply(s, "-ERR No user name given; send USER first.");
		return CMD_BAD;
	}
	if (line->rest.len == 0) {
		pop3_reply(s, "-ERR PASS takes one argument.");
		return CMD_BAD;
	}
	/* The whole rest of the line is the password: RFC 1939 allows
	 * spaces in it. USER must be given again after PASS, right or wrong. */
	user = s->user_arg;
	s->user_arg = NULL;
	r = auth_verify(s->sv->auth, user, (const char *)line->rest.p, line->rest.len, name,
	                sizeof(name));
	if (r == ROOST_EAUTH || r == ROOST_ENOTFOUND)
		auth_failed(s, user);
	free(user);
	if (r == ROOST_EAUTH || r == ROOST_ENOTFOUND)
		return CMD_OK;
	if (r != 0) {
		pop3_reply(s, "-ERR [SYS/TEMP] Authentication is unavailable, try again later.");
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
			conn_delay(s->c, auth_success(s->sv->auth, conn_peer(s->c)));
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
		pop3_reply(s, "-ERR Authentication cancelled.");
		return CMD_OK;
	case ROOST_ENOTSUP:
		pop3_reply(s, "-ERR Unsupported authentication mechanism.");
		return CMD_BAD;
	case ROOST_EPERM:
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
		              "connections; use STLS first.");
		return CMD_OK;
	case ROOST_EINVAL:
		pop3_reply(s, "-ERR Invalid authentication data.");
		return CMD_BAD;
	default:
		pop3_reply(s, "-ERR [SYS/TEMP] Authentication is unavailable, try again later.");
		return CMD_OK;
	}
}

enum cmd_result
pop3_cmd_auth(struct pop3_session *s, const struct pop3_line *line)
{
	struct buf challenge = BUF_INIT(0);
	char mech[64];
	char *initial = NULL;
	enum cmd_result res;
	int r;

	if (line->nargs == 0) {
		/* The pre-RFC 5034 listing Outlook and others still ask for. */
		const char *mechs = sasl_mechanisms(s->sv->auth, conn_is_secure(s->c));

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
		pop3_reply(s, "-ERR AUTH takes a mechanism and an optional initial response.");
		return CMD_BAD;
	}
	if (line->args[0].len >= sizeof(mech)) {
		pop3_reply(s, "-ERR Unsupported authentication mechanism.");
		return CMD_BAD;
	}
	memcpy(mech, line->args[0].p, line->args[0].len);
	mech[line->args[0].len] = '\0';
	if (line->nargs == 2)
		initial = xstrndup((const char *)line->args[1].p, line->args[1].len);
	r = sasl_start(s->sv->auth, mech, conn_is_secure(s->c), initial, &challenge, &s->sasl);
	if (initial != NULL) {
		explicit_bzero(initial, line->args[1].len);
		free(initial);
	}
	res = auth_result(s, r, &challenge);
	buf_free(&challenge);
	return res;
}

/* A client line while an AUTH exchange is running. */
enum cmd_result
pop3_auth_continue(struct pop3_session *s, const uint8_t *line, size_t len)
{
	struct buf challenge = BUF_INIT(0);
	enum cmd_result res;
	char *text;
	int r;

	if (memchr(line, '\0', len) != NULL) {
		sasl_free(&s->sasl);
		pop3_reply(s, "-ERR Invalid authentication data.");
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
