/* The scripted sessions: each call writes a connection's next request or
 * finishes it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "loadgen.h"

char *lg_message_body;
long lg_msgs_started, lg_msgs_done;

void
lg_make_message(void)
{
	size_t n = 0, cap = lg_opt.size + 512;
	const char *line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n";
	size_t ll = strlen(line);

	lg_message_body = lg_xrealloc(NULL, cap);
	n = (size_t)snprintf(
	    lg_message_body, cap,
	    "From: Load Generator <loadgen@%s>\r\nTo: user@%s\r\nSubject: loadgen message\r\n"
	    "Date: Mon, 30 Nov 2026 01:00:00 +0000\r\nMessage-ID: <lg@loadgen>\r\n\r\n",
	    lg_opt.domain, lg_opt.domain);
	while (n + ll < lg_opt.size && n + ll < cap) {
		memcpy(lg_message_body + n, line, ll);
		n += ll;
	}
	lg_message_body[n] = '\0';
}

static void smtp_next(struct lg_conn *c);
static void imap_next(struct lg_conn *c);
static void pop3_next(struct lg_conn *c);

static void
imap_cmd(struct lg_conn *c, const char *name, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	c->tag++;
	lg_out_printf(c, "a%d %s\r\n", c->tag, tmp);
	lg_request(c, name);
}

/* SMTP/LMTP: greeting, EHLO/LHLO, then MAIL/RCPT/DATA per message, QUIT. */
static void
smtp_next(struct lg_conn *c)
{
	switch (c->step++) {
	case 0:
		lg_request(c, "greeting");
		c->out_len = 0;
		break;
	case 1:
		lg_out_printf(c, "%s loadgen.example\r\n", lg_opt.lmtp ? "LHLO" : "EHLO");
		lg_request(c, lg_opt.lmtp ? "lhlo" : "ehlo");
		break;
	case 2:
		if (lg_msgs_started >= lg_opt.total) {
			lg_out_printf(c, "QUIT\r\n");
			lg_request(c, "quit");
			c->step = 100;
			break;
		}
		/* Spread messages over all users, whatever the connection count. */
		c->user = (int)(lg_msgs_started++ % lg_opt.users);
		lg_out_printf(c, "MAIL FROM:<loadgen@%s>\r\n", lg_opt.domain);
		lg_request(c, "mail");
		break;
	case 3:
		lg_out_printf(c, "RCPT TO:<user%d@%s>\r\n", c->user, lg_opt.domain);
		lg_request(c, "rcpt");
		break;
	case 4:
		lg_out_printf(c, "DATA\r\n");
		lg_request(c, "data");
		break;
	case 5:
		lg_out_add(c, lg_message_body, strlen(lg_message_body));
		lg_out_printf(c, ".\r\n");
		lg_request(c, "deliver");
		c->step = 2;
		break;
	default:
		lg_conn_finish(c);
	}
}

/*
 * The IMAP mix, per session: LOGIN, LIST, STATUS, SELECT, FETCH flags of
 * all, ENVELOPE of the newest 10, one body, STORE \Seen, SEARCH UNSEEN,
 * APPEND, STORE \Deleted on it, EXPUNGE, LOGOUT. Close to what a desktop client does when
 * it checks and reads new mail.
 */
static void
imap_next(struct lg_conn *c)
{
	unsigned lo;

	switch (c->step++) {
	case 0:
		lg_request(c, "greeting");
		break;
	case 1:
		imap_cmd(c, "login", "LOGIN user%d@%s pass%d", c->user, lg_opt.domain, c->user);
		/* Idlers go straight to SELECT: their cost is not the point. */
		if (lg_opt.sc == SC_IDLE_LATENCY || lg_opt.sc == SC_IDLE_MEMORY)
			c->step = 4;
		break;
	case 2:
		imap_cmd(c, "list", "LIST \"\" \"*\"");
		break;
	case 3:
		imap_cmd(c, "status", "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)");
		break;
	case 4:
		imap_cmd(c, "select", "SELECT INBOX");
		break;
	case 5:
		if (lg_opt.sc == SC_IDLE_LATENCY || lg_opt.sc == SC_IDLE_MEMORY) {
			c->idling = true;
			imap_cmd(c, "idle", "IDLE");
			c->step = 50;
			break;
		}
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP"); /* "1:*" of nothing is an error to some */
		else
			imap_cmd(c, "fetch-flags", "FETCH 1:* (UID FLAGS)");
		break;
	case 6:
		lo = c->exists > 10 ? c->exists - 9 : 1;
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP");
		else
			imap_cmd(c, "fetch-env", "FETCH %u:* (UID FLAGS ENVELOPE)", lo);
		break;
	case 7:
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP");
		else
			imap_cmd(c, "fetch-body", "FETCH %u BODY.PEEK[]",
			         1 + (unsigned)(rand() % (int)c->exists));
		break;
	case 8:
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP");
		else
			imap_cmd(c, "store-seen", "STORE %u +FLAGS (\\Seen)",
			         1 + (unsigned)(rand() % (int)c->exists));
		break;
	case 9:
		imap_cmd(c, "search", "SEARCH UNSEEN");
		break;
	case 10:
		c->tag++;
		lg_out_printf(c, "a%d APPEND INBOX (\\Seen) {%zu+}\r\n", c->tag,
		              strlen(lg_message_body));
		lg_out_add(c, lg_message_body, strlen(lg_message_body));
		lg_out_printf(c, "\r\n");
		c->last_uid = 0;
		lg_request(c, "append");
		break;
	case 11:
		if (c->last_uid != 0)
			imap_cmd(c, "store-del", "UID STORE %u +FLAGS.SILENT (\\Deleted)",
			         c->last_uid);
		else
			imap_cmd(c, "store-del", "STORE %u +FLAGS.SILENT (\\Deleted)", c->exists);
		break;
	case 12:
		imap_cmd(c, "expunge", "EXPUNGE");
		break;
	case 13:
		imap_cmd(c, "logout", "LOGOUT");
		break;
	case 14:
		/* The session is over; start the next one on a new socket. */
		if (++c->iter >= lg_opt.iterations) {
			lg_conn_finish(c);
			break;
		}
		lg_next_session(c);
		break;
	case 50:
		/* In IDLE: wait for EXISTS pushed by the server. */
		c->busy = true;
		c->cmd = "idle-wait";
		lg_watch(c, EPOLLIN, EPOLL_CTL_MOD);
		c->step = 50;
		break;
	default:
		lg_conn_finish(c);
	}
}

/* POP3: USER, PASS, STAT, LIST, then RETR and DELE each message, QUIT. */
void
pop3_next(struct lg_conn *c)
{
	switch (c->step) {
	case 0:
		lg_request(c, "greeting");
		c->step = 1;
		break;
	case 1:
		lg_out_printf(c, "USER user%d@%s\r\n", c->user, lg_opt.domain);
		lg_request(c, "user");
		c->step = 2;
		break;
	case 2:
		lg_out_printf(c, "PASS pass%d\r\n", c->user);
		lg_request(c, "pass");
		c->step = 3;
		break;
	case 3:
		lg_out_printf(c, "STAT\r\n");
		lg_request(c, "stat");
		c->step = 4;
		break;
	case 4:
		lg_out_printf(c, "LIST\r\n");
		lg_request(c, "list");
		c->last_uid = 0; /* messages retrieved so far */
		c->step = 5;
		break;
	case 5:
		if (c->last_uid < c->exists) {
			lg_out_printf(c, "RETR %u\r\n", ++c->last_uid);
			lg_request(c, "retr");
			c->step = 6;
		} else {
			lg_out_printf(c, "QUIT\r\n");
			lg_request(c, "quit");
			c->step = 7;
		}
		break;
	case 6:
		lg_out_printf(c, "DELE %u\r\n", c->last_uid);
		lg_request(c, "dele");
		c->step = 5;
		break;
	default:
		if (++c->iter >= lg_opt.iterations) {
			lg_conn_finish(c);
			break;
		}
		lg_next_session(c);
	}
}

void
lg_next_request(struct lg_conn *c)
{
	switch (c->proto) {
	case P_SMTP:
		smtp_next(c);
		break;
	case P_IMAP:
		imap_next(c);
		break;
	case P_POP3:
		pop3_next(c);
		break;
	}
}
