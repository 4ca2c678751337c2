/*
 * A transaction of the SMTP client: MAIL, one RCPT per recipient and DATA
 * sent as steps (all at once with PIPELINING), their replies matched to the
 * steps in order, RSET after a failed one; or, to a server with CHUNKING,
 * MAIL and RCPT as steps and the message in BDAT chunks once a recipient
 * is accepted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/smtp_client.h"
#include "roost/xalloc.h"

#include "smtp_client_impl.h"

void
smtpc_send_step(struct smtpc *c, size_t k)
{
	struct smtpc_msg *m = c->msg;

	if (k == 0) {
		smtpc_out_printf(c, "MAIL FROM:<%s>", m->sender);
		if (c->max_size > 0 || c->esmtp)
			smtpc_out_printf(c, " SIZE=%llu", (unsigned long long)m->size);
		if (m->binarymime)
			smtpc_out_printf(c, " BODY=BINARYMIME");
		else if (m->body_8bit && c->bit8)
			smtpc_out_printf(c, " BODY=8BITMIME");
		if (m->requiretls)
			smtpc_out_printf(c, " REQUIRETLS");
		if (m->smtputf8 && c->utf8)
			smtpc_out_printf(c, " SMTPUTF8");
		if (c->dsn && m->ret != NULL && m->ret[0] != '\0')
			smtpc_out_printf(c, " RET=%s", m->ret);
		if (c->dsn && m->envid != NULL && m->envid[0] != '\0')
			smtpc_out_printf(c, " ENVID=%s", m->envid);
		smtpc_out_printf(c, "\r\n");
	} else if (k <= m->n_rcpts) {
		const struct smtpc_rcpt *r = &m->rcpts[k - 1];

		smtpc_out_printf(c, "RCPT TO:<%s>", r->addr);
		if (c->dsn && r->notify != NULL && r->notify[0] != '\0')
			smtpc_out_printf(c, " NOTIFY=%s", r->notify);
		if (c->dsn && r->orcpt != NULL && r->orcpt[0] != '\0')
			smtpc_out_printf(c, " ORCPT=%s", r->orcpt);
		smtpc_out_printf(c, "\r\n");
	} else {
		smtpc_out_printf(c, "DATA\r\n");
	}
	c->sent = k + 1;
}

void
smtpc_go_ready(struct smtpc *c)
{
	c->st = S_READY;
	c->ready_seen = true;
	c->deadline = 0;
	c->ev.ready(c->arg);
	if (c->st == S_READY)
		smtpc_quit(c); /* the owner had nothing: do not sit idle */
}

/* The transaction ended before the data: report, RSET, then ready. */
static void
abort_trans(struct smtpc *c)
{
	smtpc_finish_msg(c);
	if (c->st == S_DONE)
		return;
	smtpc_out_printf(c, "RSET\r\n");
	c->st = S_RSET;
	smtpc_arm(c, c->set.command_timeout);
}

static void
start_bdat(struct smtpc *c)
{
	c->st = S_BDAT;
	c->body_off = 0;
	smtpc_arm(c, c->set.command_timeout);
	smtpc_fill_bdat(c);
}

void
smtpc_bdat_reply(struct smtpc *c, int code, const char *text)
{
	if (c->chunks_answered >= c->chunks_sent) {
		smtpc_fail(c, 421, "4.5.0 Reply %d from %s to no BDAT", code, c->peer);
		return;
	}
	c->chunks_answered++;
	if (code / 100 != 2 && c->bdat_code == 0) {
		/* The first refused chunk decides: later ones are refused
		 * because of it. */
		c->bdat_code = code;
		snprintf(c->bdat_text, sizeof(c->bdat_text), "%s", text);
	}
	if (c->st != S_DOT || c->chunks_answered < c->chunks_sent) {
		smtpc_arm(c, c->set.command_timeout);
		return;
	}
	if (c->bdat_code != 0) {
		/* RSET: the server may still hold the transaction open. */
		smtpc_settle_rest(c, c->bdat_code, c->bdat_text);
		abort_trans(c);
		return;
	}
	smtpc_settle_rest(c, code, text);
	smtpc_finish_msg(c);
	if (c->st != S_DONE)
		smtpc_go_ready(c);
}

void
smtpc_trans_reply(struct smtpc *c, int code, const char *text)
{
	struct smtpc_msg *m = c->msg;
	size_t k = c->answered++;

	if (k == 0) {
		c->mail_ok = code / 100 == 2;
		if (!c->mail_ok)
			for (size_t i = 0; i < m->n_rcpts; i++) {
				m->rcpts[i].code = code;
				snprintf(m->rcpts[i].text, sizeof(m->rcpts[i].text), "%s", text);
			}
	} else if (k <= m->n_rcpts) {
		struct smtpc_rcpt *r = &m->rcpts[k - 1];

		if (c->mail_ok && code / 100 == 2) {
			c->accepted[k - 1] = true;
			c->n_accepted++;
		} else if (c->mail_ok) {
			r->code = code;
			snprintf(r->text, sizeof(r->text), "%s", text);
		}
		if (c->bdat && k == m->n_rcpts) {
			/* Every RCPT answered: the chunks, or nothing to send. */
			if (c->mail_ok && c->n_accepted > 0)
				start_bdat(c);
			else
				abort_trans(c);
			return;
		}
	} else {
		/* DATA */
		if (code == 354 && c->mail_ok && c->n_accepted > 0) {
			c->st = S_BODY;
			c->body_off = 0;
			c->bol = true;
			c->last[0] = c->last[1] = 0;
			smtpc_fill_body(c);
			return;
		}
		if (code == 354) {
			/* Pipelined DATA accepted with no recipient: send nothing. */
			smtpc_out_printf(c, ".\r\n");
			c->st = S_DOT;
			c->discard_dot = true;
			return;
		}
		smtpc_settle_rest(c, code, text);
		abort_trans(c);
		return;
	}
	if (c->pipelining)
		return;
	/* One step at a time: decide the next. */
	if (k == 0 && !c->mail_ok) {
		abort_trans(c);
	} else if (k < m->n_rcpts) {
		smtpc_send_step(c, k + 1);
	} else if (k == m->n_rcpts) {
		if (c->n_accepted == 0)
			abort_trans(c);
		else
			smtpc_send_step(c, k + 1);
	}
}
