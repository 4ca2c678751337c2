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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/log.h"
#include "roost/relay.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/smtp.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "smtp_impl.h"

static const char *const state_names[] = {"init", "ready", "mail", "rcpt", "bdat"};

void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state != st)
		conn_log(s->c, LOG_LEVEL_DEBUG, "event=state from=%s to=%s", state_names[s->state],
		         state_names[st]);
	s->state = st;
}

static void too_many_errors(struct smtp_session *s);

void
smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
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
	unsigned max = conn_config(s->c)->smtp_max_errors;

	if (max == 0 || s->errors < max || conn_is_closing(s->c))
		return;
	conn_printf(s->c, "421 4.7.0 %s Too many errors, closing connection\r\n", s->cfg->hostname);
	conn_log(s->c, LOG_LEVEL_INFO, "event=too_many_errors errors=%u", s->errors);
	conn_close(s->c);
}

const char *
smtp_proto_name(const struct smtp_session *s)
{
	return s->d->proto;
}

const struct smtp_dialect smtp_dialect_smtp = {
    .proto = "smtp",
    .banner = "ESMTP",
    .send_hello = "Send EHLO/HELO first",
    .help = "EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH",
    .hide = CMD_LMTP_ONLY,
    .with_row = 0,
    .no_rcpt_code = 554,
    .may_relay = true,
    .checks_sender = true,
    .offers_tls_auth = true,
};

const struct smtp_dialect smtp_dialect_lmtp = {
    .proto = "lmtp",
    .banner = "LMTP",
    .send_hello = "Send LHLO first",
    .help = "LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY",
    .hide = CMD_SMTP_ONLY,
    .with_row = 1,
    .no_rcpt_code = 503,
    .reply_per_rcpt = true,
    .unknown_rcpt_free = true,
};

/* Where a row may run. DATA, BDAT and AUTH run everywhere and check the
 * state themselves: their answers depend on more than the state (DATA's
 * syntax first, BDAT's chunk is read whatever the answer). */
#define ANY                                                                                        \
	(PROTO_STATE(ST_INIT) | PROTO_STATE(ST_READY) | PROTO_STATE(ST_MAIL) |                     \
	 PROTO_STATE(ST_RCPT) | PROTO_STATE(ST_BDAT))

static const struct smtp_cmd_def commands[] = {
    {{"EHLO", ANY, CMD_SMTP_ONLY}, NULL, smtp_cmd_ehlo},
    {{"HELO", ANY, CMD_SMTP_ONLY}, NULL, smtp_cmd_helo_plain},
    {{"LHLO", ANY, CMD_LMTP_ONLY}, NULL, smtp_cmd_lhlo},
    {{"MAIL", PROTO_STATE(ST_READY), 0}, smtp_check_mail, smtp_cmd_mail},
    {{"RCPT", PROTO_STATE(ST_MAIL) | PROTO_STATE(ST_RCPT), 0}, NULL, smtp_cmd_rcpt},
    {{"DATA", ANY, 0}, NULL, smtp_cmd_data},
    {{"BDAT", ANY, 0}, NULL, smtp_cmd_bdat},
    {{"BURL", ANY, CMD_SMTP_ONLY}, NULL, smtp_cmd_burl},
    {{"RSET", ANY, 0}, NULL, smtp_cmd_rset},
    {{"NOOP", ANY, 0}, NULL, smtp_cmd_noop},
    {{"QUIT", ANY, 0}, NULL, smtp_cmd_quit},
    {{"HELP", ANY, 0}, NULL, smtp_cmd_help},
    {{"VRFY", ANY, 0}, NULL, smtp_cmd_vrfy},
    {{"EXPN", ANY, 0}, NULL, smtp_cmd_expn},
    {{"STARTTLS", ANY, CMD_SMTP_ONLY}, NULL, smtp_cmd_starttls},
    {{"AUTH", ANY, CMD_SMTP_ONLY}, NULL, smtp_cmd_auth},
};

enum proto_cmd_match
smtp_find_command(const struct smtp_session *s, const char *verb, const struct smtp_cmd_def **def_r)
{
	const void *row;
	enum proto_cmd_match m = PROTO_CMD_FIND(commands, verb, s->state, 0, s->d->hide, &row);

	*def_r = row;
	return m;
}

const char *
smtp_state_error(const struct smtp_session *s, const struct smtp_cmd_def *def)
{
	if (strcmp(def->cmd.name, "MAIL") == 0)
		return s->state == ST_INIT ? s->d->send_hello : "Nested MAIL command";
	if (strcmp(def->cmd.name, "RCPT") == 0)
		return s->state == ST_BDAT ? "RCPT not allowed after BDAT" : "Need MAIL first";
	return "Bad sequence of commands";
}

static void
run_line(struct smtp_session *s, const char *line)
{
	char verb[16];
	const char *args;
	const struct smtp_cmd_def *cmd;
	enum proto_cmd_match m;

	if (s->sasl != NULL) {
		smtp_auth_continue(s, line);
		return;
	}
	if (smtp_parse_verb(line, verb, sizeof(verb), &args) != 0) {
		smtp_reply(s, 500, "5.5.2", "Syntax error, command unrecognized");
		return;
	}
	m = smtp_find_command(s, verb, &cmd);
	if (m == PROTO_CMD_UNKNOWN) {
		smtp_reply(s, 500, "5.5.1", "Command unrecognized: %s", verb);
		return;
	}
	conn_log(s->c, LOG_LEVEL_DEBUG, "event=command command=%s", cmd->cmd.name);
	if (m == PROTO_CMD_NOT_NOW) {
		smtp_reply(s, 503, "5.5.1", "%s", smtp_state_error(s, cmd));
		return;
	}
	if (cmd->check != NULL && !cmd->check(s, args))
		return;
	cmd->run(s, args);
}

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
	s->d = s->role == ROLE_LMTP ? &smtp_dialect_lmtp : &smtp_dialect_smtp;
	s->trusted = relay_peer_trusted(s->cfg, conn_peer(c));
	smtp_framer_init(&s->fr);
	s->spool_fd = -1;
	buf_init(&s->line, 0);
	buf_init(&s->msg, 0);
	s->state = ST_INIT;
	conn_printf(c, "220 %s %s Roost ready\r\n", s->cfg->hostname, s->d->banner);
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
			conn_log(c, LOG_LEVEL_INFO, "event=early_pipelining");
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
		if (conn_config(c)->smtp_max_errors != 0 &&
		    s->errors >= conn_config(c)->smtp_max_errors) {
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
		smtp_data_piece(s, cmd, len);
		return;
	}
	if (s->fr.kind == SMTP_FRAME_BDAT) {
		smtp_bdat_piece(s, cmd, len);
		return;
	}
	while (len > 0 && (cmd[len - 1] == '\n' || cmd[len - 1] == '\r'))
		len--;
	if (memchr(cmd, '\0', len) != NULL) {
		smtp_reply(s, 500, "5.5.2", "NUL byte in command");
		return;
	}
	buf_reset(&s->line);
	buf_append(&s->line, cmd, len);
	s->bdat_taken = false;
	/* An LMTP RCPT on the loop: smtp_command_inline() saw the passwd
	 * file unchanged a moment ago. */
	if (conn_on_loop(c) && len >= 4 && strncasecmp((const char *)cmd, "RCPT", 4) == 0)
		auth_lookups_from_memory(true);
	run_line(s, buf_cstr(&s->line));
	auth_lookups_from_memory(false);
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
			smtp_bdat_chunk_done(s);
	}
}

/* [loop] MAIL, DATA (the 354: the body itself goes to a worker) and NOOP
 * work on the session's memory only: MAIL's checks read the configuration,
 * the alias table and the rate limiter, all in memory. Run them on the loop:
 * half of the thread hand-offs of a delivery. Not RSET (it may close a
 * spool file), nor anything during AUTH or a DATA/BDAT body.
 *
 * LMTP's RCPT too, where the store's reads never wait (storage_reads_nb():
 * LMDB) and the passwd file has not changed since it was read: it looks the
 * user up in memory (auth_lookups_from_memory(), so no re-read of the file
 * on the loop), expands aliases (memory) and reads the user's quota usage
 * from the map. A changed passwd file, Maildir's quota files and SMTP's
 * RCPT (relay policy, its own checks) stay on workers. */
static bool
smtp_command_inline(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	static const char *const verbs[] = {"MAIL", "DATA", "NOOP"};
	const struct smtp_session *s = session;

	(void)c;
	if (s == NULL || s->sasl != NULL || s->fr.kind != SMTP_FRAME_LINE || s->fr.line_bdat ||
	    len < 5)
		return false;
	if (cmd[4] != ' ' && cmd[4] != '\r' && cmd[4] != '\n')
		return false;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strncasecmp((const char *)cmd, verbs[i], 4) == 0)
			return true;
	}
	return strncasecmp((const char *)cmd, "RCPT", 4) == 0 && s->d == &smtp_dialect_lmtp &&
	       storage_reads_nb(s->sv->storage) && s->sv->auth != NULL &&
	       !auth_changed(s->sv->auth);
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

	conn_printf(c, "421 4.3.2 %s %s, closing connection\r\n", s->cfg->hostname,
	            conn_is_kicked(c) ? "Disconnected by the administrator"
	                              : "Service shutting down");
}

const struct proto_ops smtp_proto_ops = {
    .name = "smtp",
    .session_new = smtp_session_new,
    .session_new_inline = true,
    .session_free = smtp_session_free,
    .frame = smtp_frame_hook,
    .on_command = smtp_on_command,
    .command_inline = smtp_command_inline,
    .on_timeout = smtp_on_timeout,
    .on_shutdown = smtp_on_shutdown,
};
