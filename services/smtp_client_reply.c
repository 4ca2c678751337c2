/*
 * The server's replies: multi-line replies read and parsed, the EHLO
 * keywords taken, and each complete reply handed to what the state is
 * waiting for.
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

static void
after_ehlo(struct smtpc *c)
{
	if (c->ssl == NULL && c->starttls && c->set.tls != NULL) {
		smtpc_out_printf(c, "STARTTLS\r\n");
		c->st = S_STARTTLS;
		smtpc_arm(c, c->set.command_timeout);
		return;
	}
	if (c->ssl == NULL && c->set.tls_required) {
		smtpc_out_printf(c, "QUIT\r\n");
		smtpc_flush_out(c);
		c->tls_policy_failed = true;
		smtpc_fail(c, 421, "4.7.5 TLS required but %s does not offer STARTTLS", c->peer);
		return;
	}
	if (c->set.auth_user != NULL && c->set.auth_user[0] != '\0' && !c->authed) {
		struct buf raw = BUF_INIT(0), b64 = BUF_INIT(0);

		buf_append_byte(&raw, 0);
		buf_append_str(&raw, c->set.auth_user);
		buf_append_byte(&raw, 0);
		buf_append_str(&raw, c->set.auth_password != NULL ? c->set.auth_password : "");
		base64_encode(raw.data, raw.len, &b64);
		smtpc_out_printf(c, "AUTH PLAIN %s\r\n", buf_cstr(&b64));
		buf_free(&raw);
		buf_free(&b64);
		c->st = S_AUTH;
		smtpc_arm(c, c->set.command_timeout);
		return;
	}
	smtpc_go_ready(c);
}

static void
ehlo_line(struct smtpc *c, const char *kw)
{
	if (strncasecmp(kw, "PIPELINING", 10) == 0 && (kw[10] == '\0' || kw[10] == ' '))
		c->pipelining = true;
	else if (strncasecmp(kw, "STARTTLS", 8) == 0)
		c->starttls = true;
	else if (strncasecmp(kw, "8BITMIME", 8) == 0)
		c->bit8 = true;
	else if (strncasecmp(kw, "SMTPUTF8", 8) == 0)
		c->utf8 = true;
	else if (strncasecmp(kw, "DSN", 3) == 0 && (kw[3] == '\0' || kw[3] == ' '))
		c->dsn = true;
	else if (strncasecmp(kw, "CHUNKING", 8) == 0 && (kw[8] == '\0' || kw[8] == ' '))
		c->chunking = true;
	else if (strncasecmp(kw, "REQUIRETLS", 10) == 0 && (kw[10] == '\0' || kw[10] == ' '))
		c->requiretls = true;
	else if (strncasecmp(kw, "BINARYMIME", 10) == 0 && (kw[10] == '\0' || kw[10] == ' '))
		c->binarymime = true;
	else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == '\0' || kw[4] == ' '))
		c->max_size = kw[4] == ' ' ? strtoull(kw + 5, NULL, 10) : 0;
}

static void
on_reply(struct smtpc *c, int code, const char *text)
{
	int cls = code / 100;

	switch (c->st) {
	case S_GREET:
		if (cls != 2) {
			smtpc_fail(c, code, "%s", text);
			return;
		}
		smtpc_out_printf(c, "EHLO %s\r\n", c->set.helo);
		c->st = S_EHLO;
		smtpc_arm(c, c->set.command_timeout);
		return;
	case S_EHLO:
		if (cls == 2) {
			c->esmtp = true;
			after_ehlo(c);
		} else {
			smtpc_out_printf(c, "HELO %s\r\n", c->set.helo);
			c->st = S_HELO;
			smtpc_arm(c, c->set.command_timeout);
		}
		return;
	case S_HELO:
		if (cls != 2)
			smtpc_fail(c, code, "%s", text);
		else
			after_ehlo(c);
		return;
	case S_STARTTLS:
		if (code == 220) {
			smtpc_start_tls(c);
			if (c->st == S_HANDSHAKE)
				smtpc_handshake(c);
		} else if (c->set.tls_required) {
			c->tls_policy_failed = true;
			smtpc_fail(c, 421, "4.7.5 STARTTLS refused: %d %s", code, text);
		} else {
			c->starttls = false;
			after_ehlo(c);
		}
		return;
	case S_AUTH:
		if (code != 235) {
			smtpc_fail(c, code / 100 == 5 ? 454 : code,
			           "4.7.0 Authentication failed: %d %s", code, text);
			return;
		}
		c->authed = true;
		smtpc_go_ready(c);
		return;
	case S_TRANS:
		smtpc_trans_reply(c, code, text);
		return;
	case S_BDAT:
		smtpc_bdat_reply(c, code, text);
		return;
	case S_DOT:
		if (c->bdat) {
			smtpc_bdat_reply(c, code, text);
			return;
		}
		if (!c->discard_dot)
			smtpc_settle_rest(c, code, text);
		else
			smtpc_settle_rest(c, 451, "4.3.0 No recipient accepted");
		c->discard_dot = false;
		smtpc_finish_msg(c);
		if (c->st != S_DONE)
			smtpc_go_ready(c);
		return;
	case S_RSET:
		if (cls != 2) {
			smtpc_fail(c, code, "%s", text);
			return;
		}
		smtpc_go_ready(c);
		return;
	case S_QUIT:
		smtpc_fail(c, 221, "2.0.0 Bye");
		return;
	default:
		smtpc_fail(c, 421, "4.5.0 Unexpected reply %d in state %s", code,
		           smtpc_state_names[c->st]);
		return;
	}
}

/* Parse the complete lines in c->in. */
static void
parse_lines(struct smtpc *c)
{
	while (c->st != S_DONE && c->st != S_BODY) {
		uint8_t *nl = memchr(c->in.data, '\n', c->in.len);
		size_t len;
		char line[SMTPC_MAX_LINE + 1];
		bool last;
		int code;

		if (nl == NULL) {
			if (c->in.len > SMTPC_MAX_LINE)
				smtpc_fail(c, 421, "4.5.0 Reply line from %s over %d bytes",
				           c->peer, SMTPC_MAX_LINE);
			return;
		}
		len = (size_t)(nl - c->in.data) + 1;
		if (len > SMTPC_MAX_LINE) {
			smtpc_fail(c, 421, "4.5.0 Reply line from %s over %d bytes", c->peer,
			           SMTPC_MAX_LINE);
			return;
		}
		memcpy(line, c->in.data, len);
		line[len] = '\0';
		buf_consume(&c->in, len);
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' ||
		    (len > 3 && line[3] != ' ' && line[3] != '-')) {
			smtpc_fail(c, 421, "4.5.0 Malformed reply from %s", c->peer);
			return;
		}
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		last = len == 3 || line[3] == ' ';
		if (c->rlines == 0) {
			c->rcode = code;
			size_t tl = len > 4 ? len - 4 : 0;

			if (tl >= sizeof(c->rtext))
				tl = sizeof(c->rtext) - 1;
			memcpy(c->rtext, line + 4, tl);
			c->rtext[tl] = '\0';
		} else if (code != c->rcode) {
			smtpc_fail(c, 421, "4.5.0 Inconsistent multi-line reply from %s", c->peer);
			return;
		}
		if (c->st == S_EHLO && c->rlines > 0 && len > 4)
			ehlo_line(c, line + 4);
		if (++c->rlines > SMTPC_MAX_LINES) {
			smtpc_fail(c, 421, "4.5.0 Reply from %s over %d lines", c->peer,
			           SMTPC_MAX_LINES);
			return;
		}
		if (!last)
			continue;
		c->rlines = 0;
		if (c->st == S_HANDSHAKE) {
			smtpc_fail(c, 421, "4.5.0 Reply during the TLS handshake");
			return;
		}
		smtpc_arm(c, c->set.command_timeout);
		on_reply(c, code, c->rtext);
	}
}

bool
smtpc_read_in(struct smtpc *c)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		uint8_t tmp[4096];
		ssize_t r;

		if (c->in.len > SMTPC_MAX_LINE * 2)
			return true; /* parse_lines decides first */
		if (c->ssl != NULL) {
			int n = SSL_read(c->ssl, tmp, sizeof(tmp));

			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);

				if (e == SSL_ERROR_WANT_READ)
					return true;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->ssl_wants_write = true;
					return true;
				}
				ERR_clear_error();
				smtpc_fail(c, 421, "4.4.2 Connection to %s lost in state %s",
				           c->peer, smtpc_state_names[c->st]);
				return false;
			}
			r = n;
		} else {
			r = recv(c->fd, tmp, sizeof(tmp), 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return true;
			if (r <= 0) {
				smtpc_fail(c, 421, "4.4.2 Connection to %s lost in state %s",
				           c->peer, smtpc_state_names[c->st]);
				return false;
			}
		}
		buf_append(&c->in, tmp, (size_t)r);
		smtpc_arm(c, c->st == S_GREET ? c->set.connect_timeout : c->set.command_timeout);
		parse_lines(c);
		if (c->st == S_DONE)
			return false;
	}
	return true;
}
