#include <stdlib.h>

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

void
pop3_enter_state(struct pop3_session *s, enum pop3_state st)
{
	conn_log(s->c, LOG_LEVEL_DEBUG, "event=state from=%s to=%s", state_name(s->state),
	         state_name(st));
	s->state = st;
	conn_set_mailbox(s->c, st == POP3_TRANSACTION ? "INBOX" : NULL);
}

void
pop3_reply(struct pop3_session *s, const char *text)
{
	conn_write_str(s->c, text);
	conn_write(s->c, "\r\n", 2);
}

const struct roost_config *
pop3_cfg(const struct pop3_session *s)
{
	return s->sv->cfg;
}

/* The end of a message reply, however it ended: a held view goes back to
 * its mailbox. */
void
pop3_xfer_end(struct pop3_session *s)
{
	if (s->xfer.view_held)
		msg_view_release(&s->xfer.view);
	s->xfer.view_held = false;
	s->xfer.kind = XFER_NONE;
}

void
pop3_maildrop_close(struct pop3_session *s)
{
	pop3_xfer_end(s);
	mailbox_close(&s->mb);
	free(s->msgs);
	s->msgs = NULL;
	s->n_msgs = 0;
	s->n_deleted = 0;
	storage_unlock_user(&s->st_lock);
	pop3_lock_release(&s->lock_fd);
}

void
pop3_reply_error(struct pop3_session *s, int err)
{
	if (err == ROOST_EINUSE)
		pop3_reply(s, "-ERR [IN-USE] Mailbox is in use by another session.");
	else if (err == ROOST_EPERM || err == ROOST_EINVAL)
		pop3_reply(s, "-ERR [SYS/PERM] Mailbox cannot be opened.");
	else
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary failure, try again later.");
}

#define AUTHZ PROTO_STATE(POP3_AUTHORIZATION)
#define TRANS PROTO_STATE(POP3_TRANSACTION)

/* clang-format off */
static const struct pop3_cmd_def commands[] = {
    {{"CAPA", AUTHZ | TRANS, 0}, NULL, pop3_cmd_capa},
    {{"USER", AUTHZ, 0}, NULL, pop3_cmd_user},
    {{"PASS", AUTHZ, 0}, NULL, pop3_cmd_pass},
    {{"AUTH", AUTHZ, 0}, NULL, pop3_cmd_auth},
    {{"STLS", AUTHZ, 0}, NULL, pop3_cmd_stls},
    {{"UTF8", AUTHZ, 0}, NULL, pop3_cmd_utf8},
    {{"STAT", TRANS, 0}, NULL, pop3_cmd_stat},
    {{"LIST", TRANS, 0}, NULL, pop3_cmd_list},
    {{"RETR", TRANS, 0}, NULL, pop3_cmd_retr},
    {{"DELE", TRANS, 0}, NULL, pop3_cmd_dele},
    {{"NOOP", TRANS, 0}, NULL, pop3_cmd_noop},
    {{"RSET", TRANS, 0}, NULL, pop3_cmd_rset},
    {{"TOP", TRANS, 0}, NULL, pop3_cmd_top},
    {{"UIDL", TRANS, 0}, NULL, pop3_cmd_uidl},
    {{"QUIT", AUTHZ | TRANS, 0}, NULL, pop3_cmd_quit},
};
/* clang-format on */

enum proto_cmd_match
pop3_find_command(const char *keyword, enum pop3_state st, const struct pop3_cmd_def **def_r)
{
	const void *row;
	enum proto_cmd_match m = PROTO_CMD_FIND(commands, keyword, st, 0, 0, &row);

	*def_r = row;
	return m;
}

const char *
pop3_state_error(enum pop3_state st)
{
	return st == POP3_AUTHORIZATION ? "-ERR Log in first."
	                                : "-ERR Command not valid in this state.";
}

/* Count a bad command; past the limit say why and end the session. */
static void
bad_command(struct pop3_session *s)
{
	if (++s->bad_commands >= s->max_bad) {
		conn_log(s->c, LOG_LEVEL_INFO, "event=too_many_errors");
		pop3_maildrop_close(s);
		pop3_reply(s, "-ERR Too many bad commands, closing the connection.");
		conn_close(s->c);
	}
}

static void *
pop3_session_new(struct conn *c)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));

	s->c = c;
	s->sv = conn_services(c);
	s->state = POP3_AUTHORIZATION;
	s->lock_fd = -1;
	s->max_bad = conn_config(s->c)->pop3_max_bad_commands;
	if (s->max_bad == 0)
		s->max_bad = POP3_DEFAULT_MAX_BAD;
	pop3_reply(s, "+OK Roost POP3 server ready.");
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
	pop3_maildrop_close(s);
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
		pop3_reply(s, "-ERR Authentication line too long.");
	} else {
		pop3_reply(s, "-ERR Line too long.");
	}
	if (++s->bad_commands >= s->max_bad) {
		pop3_reply(s, "-ERR Too many bad commands, closing the connection.");
		return FRAME_CLOSE;
	}
	return FRAME_DISCARD;
}

static void
pop3_on_command(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	struct pop3_session *s = session;
	const struct pop3_cmd_def *row;
	struct pop3_line line;

	if (conn_is_closing(c))
		return;
	pop3_strip_eol(cmd, &len);
	if (s->sasl != NULL) {
		if (pop3_auth_continue(s, cmd, len) == CMD_BAD)
			bad_command(s);
		return;
	}
	if (pop3_parse_line(cmd, len, &line) != 0) {
		pop3_reply(s, "-ERR Invalid command.");
		bad_command(s);
		return;
	}
	switch (pop3_find_command(line.keyword, s->state, &row)) {
	case PROTO_CMD_UNKNOWN:
		pop3_reply(s, "-ERR Unknown command.");
		bad_command(s);
		return;
	case PROTO_CMD_NOT_NOW:
		pop3_reply(s, pop3_state_error(s->state));
		bad_command(s);
		return;
	case PROTO_CMD_FOUND:
		break;
	}
	if (row->check != NULL && !row->check(s, &line))
		return;
	if (row->run(s, &line) == CMD_BAD)
		bad_command(s);
}

static void
pop3_on_timeout(struct conn *c, void *session)
{
	struct pop3_session *s = session;

	pop3_maildrop_close(s); /* nothing deleted; unlocked before the goodbye */
	pop3_reply(s, "-ERR Disconnected for inactivity.");
}

static void
pop3_on_shutdown(struct conn *c, void *session)
{
	struct pop3_session *s = session;

	pop3_maildrop_close(s);
	pop3_reply(s, conn_is_kicked(c) ? "-ERR Disconnected by the administrator."
	                                : "-ERR [SYS/TEMP] Server shutting down.");
}

const struct proto_ops pop3_proto_ops = {
    .name = "pop3",
    .session_new = pop3_session_new,
    .session_new_inline = true,
    .session_free = pop3_session_free,
    .frame = pop3_frame_hook,
    .on_command = pop3_on_command,
    .on_timeout = pop3_on_timeout,
    .on_shutdown = pop3_on_shutdown,
};
