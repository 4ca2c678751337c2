/*
 * IMAP responses: the tagged and untagged lines a command writes, the NO
 * each storage error maps to, and strings and mailbox names on the wire
 * (quoted or literal, mUTF-7 and back).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

static void
tagged_v(struct imap_cmd *cmd, const char *status, const char *fmt, va_list ap)
{
	struct imap_session *s = cmd->s;
	struct buf b = BUF_INIT(0);

	if (cmd->done)
		return;
	/* Catch up before the tagged reply: RFC 3501 7.4.1 lets EXPUNGE out
	 * except after commands that use sequence numbers. */
	if (strcmp(status, "BAD") != 0 && s->state == IMAP_STATE_SELECTED && s->view.mb != NULL) {
		bool allow = cmd->def == NULL || !(cmd->def->cmd.flags & CMD_USES_SEQS) || cmd->uid;
		view_sync(s, allow);
	}
	buf_printf(&b, "%s %s ", cmd->p.tag != NULL ? cmd->p.tag : "*", status);
	buf_vprintf(&b, fmt, ap);
	buf_append_str(&b, "\r\n");
	conn_write(cmd->c, b.data, b.len);
	buf_free(&b);
	cmd->done = true;
	if (strcmp(status, "BAD") == 0)
		imap_count_bad(s);
}

void
imap_tagged(struct imap_cmd *cmd, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tagged_v(cmd, status, fmt, ap);
	va_end(ap);
}

void
imap_bad(struct imap_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tagged_v(cmd, "BAD", fmt, ap);
	va_end(ap);
}

/* A line that fits the stack buffer (most: every wake-up's EXISTS and
 * RECENT) is formatted once, into it; through a buffer on the heap it was
 * an allocation and two formatting passes per line, a tenth of the user
 * time of 1,000 woken sessions (issue 20). */
#define UNTAGGED_STACK 512

void
imap_untagged(struct imap_session *s, const char *fmt, ...)
{
	char line[UNTAGGED_STACK];
	struct buf b = BUF_INIT(0);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line + 2, sizeof(line) - 4, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(line) - 4) {
		memcpy(line, "* ", 2);
		memcpy(line + 2 + n, "\r\n", 2);
		conn_write(s->c, line, (size_t)n + 4);
		return;
	}
	buf_append_str(&b, "* ");
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_append_str(&b, "\r\n");
	conn_write(s->c, b.data, b.len);
	buf_free(&b);
}

void
imap_reply_error(struct imap_cmd *cmd, int err, const char *what)
{
	switch (err) {
	case ROOST_ENOTFOUND:
		imap_tagged(cmd, "NO", "[NONEXISTENT] %s", what ? what : "No such mailbox");
		break;
	case ROOST_EEXISTS:
		imap_tagged(cmd, "NO", "[ALREADYEXISTS] %s",
		            what ? what : "Mailbox already exists");
		break;
	case ROOST_EINUSE:
		imap_tagged(cmd, "NO", "[INUSE] Mailbox is in use, try again");
		break;
	case ROOST_EOVERQUOTA:
	case ROOST_EQUOTATOOBIG:
		imap_tagged(cmd, "NO", "[OVERQUOTA] Quota exceeded");
		break;
	case ROOST_ETOOBIG:
		imap_tagged(cmd, "NO", "[TOOBIG] Too big");
		break;
	case ROOST_ETEMP:
		imap_tagged(cmd, "NO", "[UNAVAILABLE] Temporary failure, try again later");
		break;
	case ROOST_EPERM:
		imap_tagged(cmd, "NO", "[CANNOT] %s", what ? what : "Not permitted");
		break;
	case ROOST_ENOACCESS:
		imap_tagged(cmd, "NO", "[NOPERM] Access denied");
		break;
	case ROOST_EINVAL:
		imap_tagged(cmd, "NO", "[CANNOT] %s", what ? what : "Invalid name");
		break;
	default:
		conn_log(cmd->c, LOG_LEVEL_WARN, "event=error cmd=%s err=%s",
		         LOG_QUOTE(cmd->p.name), roost_strerror(err));
		imap_tagged(cmd, "NO", "[SERVERBUG] Internal error");
		break;
	}
}

static bool
quotable(const char *s, size_t len)
{
	if (len > 1024)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\0' || ch == '\r' || ch == '\n' || ch >= 0x80)
			return false;
	}
	return true;
}

void
imap_write_string(struct conn *c, const char *s, size_t len)
{
	if (quotable(s, len)) {
		struct buf b = BUF_INIT(0);

		buf_append_byte(&b, '"');
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '"' || s[i] == '\\')
				buf_append_byte(&b, '\\');
			buf_append_byte(&b, (uint8_t)s[i]);
		}
		buf_append_byte(&b, '"');
		conn_write(c, b.data, b.len);
		buf_free(&b);
	} else {
		conn_printf(c, "{%zu}\r\n", len);
		conn_write(c, s, len);
	}
}

void
imap_write_nstring(struct conn *c, const char *s, size_t len)
{
	if (s == NULL)
		conn_write_str(c, "NIL");
	else
		imap_write_string(c, s, len);
}

void
imap_write_mailbox(struct conn *c, const char *name)
{
	struct buf b = BUF_INIT(0);

	if (mutf7_encode(name, strlen(name), &b) < 0) {
		buf_reset(&b);
		buf_append_str(&b, name);
	}
	imap_write_string(c, (const char *)buf_cstr(&b), b.len);
	buf_free(&b);
}

int
imap_mailbox_arg(struct imap_cmd *cmd, const struct imap_arg *a, char **name_r)
{
	struct buf b = BUF_INIT(STORAGE_MAX_NAME * 4);

	if (!imap_arg_is_string(a)) {
		imap_bad(cmd, "Invalid mailbox name argument");
		return ROOST_EINVAL;
	}
	if (imap_name_decode(cmd->s, a->str, a->len, &b) < 0) {
		buf_free(&b);
		imap_tagged(cmd, "NO", "[CANNOT] Invalid mailbox name encoding");
		return ROOST_EINVAL;
	}
	if (strcasecmp(buf_cstr(&b), "INBOX") == 0) {
		*name_r = arena_strndup(&cmd->arena, "INBOX", 5);
	} else if (b.len > 6 && strncasecmp(buf_cstr(&b), "INBOX/", 6) == 0) {
		memcpy(b.data, "INBOX", 5);
		*name_r = arena_strndup(&cmd->arena, b.data, b.len);
	} else {
		*name_r = arena_strndup(&cmd->arena, b.data, b.len);
	}
	buf_free(&b);
	return 0;
}
