/*
 * The outbound SMTP client: one connection, one explicit state machine,
 * non-blocking I/O (plain or OpenSSL), driven by the owner's poll loop.
 * See roost/smtp_client.h for the contract.
 *
 * A transaction is a list of steps, MAIL, one RCPT per recipient, DATA.
 * With PIPELINING they are all written at once (RFC 2920); without it one
 * at a time. Replies are matched to steps in order either way, so the two
 * modes share one reply handler.
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

enum smtpc_state {
	S_CONNECT,
	S_GREET,
	S_EHLO,
	S_HELO,
	S_STARTTLS,
	S_HANDSHAKE,
	S_AUTH,
	S_READY,
	S_TRANS,
	S_BODY,
	S_DOT,
	S_RSET,
	S_LOCAL_DONE,
	S_QUIT,
	S_DONE,
};

static const char *const state_names[] = {
    "connect",     "greeting", "ehlo",        "helo", "starttls", "handshake", "auth", "ready",
    "transaction", "body",     "end-of-data", "rset", "local",    "quit",      "done",
};

#define BODY_CHUNK (64 * 1024)
#define OUT_HIGH (256 * 1024)

struct smtpc {
	int fd;
	SSL *ssl;
	enum smtpc_state st;
	struct smtpc_settings set;
	struct smtpc_events ev;
	void *arg;
	char peer[INET6_ADDRSTRLEN + 8];
	char tls_version[16];

	struct buf in, out;
	int64_t deadline;
	bool ssl_wants_write; /* an SSL call needs POLLOUT to go on */

	/* the reply being read */
	int rcode;
	unsigned rlines;
	char rtext[512];

	/* what the server offered in its EHLO reply */
	bool esmtp, pipelining, starttls, bit8, utf8, dsn;
	uint64_t max_size;
	bool authed, ready_seen;
	bool tls_failed;

	/* the message in flight */
	struct smtpc_msg *msg;
	bool *accepted;
	size_t n_steps, sent, answered, n_accepted;
	bool mail_ok, discard_dot, need_rset;
	uint64_t body_off;
	bool bol;
	uint8_t last[2];
};

int64_t
smtpc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
arm(struct smtpc *c, unsigned seconds)
{
	c->deadline = smtpc_now_ms() + (int64_t)seconds * 1000;
}

static void fail(struct smtpc *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Give every recipient still without a final result this one. */
static void
settle_rest(struct smtpc *c, int code, const char *text)
{
	if (c->msg == NULL)
		return;
	for (size_t i = 0; i < c->msg->n_rcpts; i++) {
		struct smtpc_rcpt *r = &c->msg->rcpts[i];

		if (r->code == 0 || c->accepted[i]) {
			r->code = code;
			snprintf(r->text, sizeof(r->text), "%s", text);
			c->accepted[i] = false;
		}
	}
}

static void
finish_msg(struct smtpc *c)
{
	struct smtpc_msg *m = c->msg;

	c->msg = NULL;
	free(c->accepted);
	c->accepted = NULL;
	if (m != NULL)
		c->ev.done(c->arg, m);
}

static void
fail(struct smtpc *c, int code, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	bool ready_seen = c->ready_seen;

	if (c->st == S_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_debug("event=smtp-client peer=%s state=%s status=failed code=%d text=\"%s\"", c->peer,
	          state_names[c->st], code, text);
	c->st = S_DONE;
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	settle_rest(c, code, text);
	finish_msg(c);
	c->ev.closed(c->arg, ready_seen, code, text);
}

/* ---- output ---- */

static void out_printf(struct smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
out_printf(struct smtpc *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
}

/* Write what we can; false when the connection failed (fail() ran). */
static bool
flush_out(struct smtpc *c)
{
	while (c->out.len > 0) {
		ssize_t w;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, c->out.data,
			                  (int)(c->out.len > 1 << 20 ? 1 << 20 : c->out.len));

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					c->ssl_wants_write = true;
					return true;
				}
				ERR_clear_error();
				fail(c, 421, "4.4.2 TLS write failed");
				return false;
			}
			w = r;
		} else {
			w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EINTR))
				return true;
			if (w < 0) {
				fail(c, 421, "4.4.2 Connection lost (%s)", strerror(errno));
				return false;
			}
		}
		buf_consume(&c->out, (size_t)w);
		c->ssl_wants_write = false;
		arm(c, c->set.command_timeout);
	}
	return true;
}

/* ---- the message body ---- */

/* Fill the output from the file, dot-stuffed; at the end ".". */
static bool
fill_body(struct smtpc *c)
{
	uint8_t tmp[BODY_CHUNK];

	while (c->st == S_BODY && c->out.len < OUT_HIGH) {
		ssize_t r = pread(c->msg->fd, tmp, sizeof(tmp), (off_t)c->body_off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fail(c, 451, "4.3.0 Cannot read the queued message (%s)", strerror(errno));
			return false;
		}
		if (r == 0) {
			if (!(c->last[0] == '\r' && c->last[1] == '\n') && c->body_off > 0)
				buf_append_str(&c->out, "\r\n");
			buf_append_str(&c->out, ".\r\n");
			c->st = S_DOT;
			break;
		}
		for (ssize_t i = 0; i < r; i++) {
			if (c->bol && tmp[i] == '.')
				buf_append_byte(&c->out, '.');
			buf_append_byte(&c->out, tmp[i]);
			c->bol = tmp[i] == '\n';
			c->last[0] = c->last[1];
			c->last[1] = tmp[i];
		}
		c->body_off += (uint64_t)r;
	}
	return true;
}

/* ---- transaction steps ---- */

static void
send_step(struct smtpc *c, size_t k)
{
	struct smtpc_msg *m = c->msg;

	if (k == 0) {
		out_printf(c, "MAIL FROM:<%s>", m->sender);
		if (c->max_size > 0 || c->esmtp)
			out_printf(c, " SIZE=%llu", (unsigned long long)m->size);
		if (m->body_8bit && c->bit8)
			out_printf(c, " BODY=8BITMIME");
		if (m->smtputf8 && c->utf8)
			out_printf(c, " SMTPUTF8");
		if (c->dsn && m->ret != NULL && m->ret[0] != '\0')
			out_printf(c, " RET=%s", m->ret);
		if (c->dsn && m->envid != NULL && m->envid[0] != '\0')
			out_printf(c, " ENVID=%s", m->envid);
		out_printf(c, "\r\n");
	} else if (k <= m->n_rcpts) {
		const struct smtpc_rcpt *r = &m->rcpts[k - 1];

		out_printf(c, "RCPT TO:<%s>", r->addr);
		if (c->dsn && r->notify != NULL && r->notify[0] != '\0')
			out_printf(c, " NOTIFY=%s", r->notify);
		if (c->dsn && r->orcpt != NULL && r->orcpt[0] != '\0')
			out_printf(c, " ORCPT=%s", r->orcpt);
		out_printf(c, "\r\n");
	} else {
		out_printf(c, "DATA\r\n");
	}
	c->sent = k + 1;
}

static void
go_ready(struct smtpc *c)
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
	finish_msg(c);
	if (c->st == S_DONE)
		return;
	out_printf(c, "RSET\r\n");
	c->st = S_RSET;
	arm(c, c->set.command_timeout);
}

static void
trans_reply(struct smtpc *c, int code, const char *text)
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
	} else {
		/* DATA */
		if (code == 354 && c->mail_ok && c->n_accepted > 0) {
			c->st = S_BODY;
			c->body_off = 0;
			c->bol = true;
			c->last[0] = c->last[1] = 0;
			fill_body(c);
			return;
		}
		if (code == 354) {
			/* Pipelined DATA accepted with no recipient: send nothing. */
			out_printf(c, ".\r\n");
			c->st = S_DOT;
			c->discard_dot = true;
			return;
		}
		settle_rest(c, code, text);
		abort_trans(c);
		return;
	}
	if (c->pipelining)
		return;
	/* One step at a time: decide the next. */
	if (k == 0 && !c->mail_ok) {
		abort_trans(c);
	} else if (k < m->n_rcpts) {
		send_step(c, k + 1);
	} else if (k == m->n_rcpts) {
		if (c->n_accepted == 0)
			abort_trans(c);
		else
			send_step(c, k + 1);
	}
}

/* ---- TLS ---- */

static void
start_tls(struct smtpc *c)
{
	c->ssl = SSL_new(c->set.tls);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		fail(c, 421, "4.7.0 TLS setup failed");
		return;
	}
	if (c->set.sni != NULL && c->set.sni[0] != '\0') {
		SSL_set_tlsext_host_name(c->ssl, c->set.sni);
		if (c->set.tls_verify) {
			SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
			SSL_set1_host(c->ssl, c->set.sni);
		}
	}
	SSL_set_connect_state(c->ssl);
	buf_reset(&c->in); /* nothing sent before TLS may be read after it */
	c->st = S_HANDSHAKE;
	arm(c, c->set.connect_timeout);
}

static void
handshake(struct smtpc *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		snprintf(c->tls_version, sizeof(c->tls_version), "%s", SSL_get_version(c->ssl));
		c->ssl_wants_write = false;
		/* RFC 3207 4.2: forget what the server said before TLS. */
		c->esmtp = c->pipelining = c->starttls = c->bit8 = c->utf8 = c->dsn = false;
		c->max_size = 0;
		out_printf(c, "EHLO %s\r\n", c->set.helo);
		c->st = S_EHLO;
		arm(c, c->set.command_timeout);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->ssl_wants_write = false;
		return;
	case SSL_ERROR_WANT_WRITE:
		c->ssl_wants_write = true;
		return;
	default:
		ERR_clear_error();
		c->tls_failed = true;
		fail(c, 421, "4.7.5 TLS handshake with %s failed", c->peer);
	}
}

/* ---- replies ---- */

static void
after_ehlo(struct smtpc *c)
{
	if (c->ssl == NULL && c->starttls && c->set.tls != NULL) {
		out_printf(c, "STARTTLS\r\n");
		c->st = S_STARTTLS;
		arm(c, c->set.command_timeout);
		return;
	}
	if (c->ssl == NULL && c->set.tls_required) {
		out_printf(c, "QUIT\r\n");
		flush_out(c);
		fail(c, 421, "4.7.5 TLS required but %s does not offer STARTTLS", c->peer);
		return;
	}
	if (c->set.auth_user != NULL && c->set.auth_user[0] != '\0' && !c->authed) {
		struct buf raw = BUF_INIT(0), b64 = BUF_INIT(0);

		buf_append_byte(&raw, 0);
		buf_append_str(&raw, c->set.auth_user);
		buf_append_byte(&raw, 0);
		buf_append_str(&raw, c->set.auth_password != NULL ? c->set.auth_password : "");
		base64_encode(raw.data, raw.len, &b64);
		out_printf(c, "AUTH PLAIN %s\r\n", buf_cstr(&b64));
		buf_free(&raw);
		buf_free(&b64);
		c->st = S_AUTH;
		arm(c, c->set.command_timeout);
		return;
	}
	go_ready(c);
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
			fail(c, code, "%s", text);
			return;
		}
		out_printf(c, "EHLO %s\r\n", c->set.helo);
		c->st = S_EHLO;
		arm(c, c->set.command_timeout);
		return;
	case S_EHLO:
		if (cls == 2) {
			c->esmtp = true;
			after_ehlo(c);
		} else {
			out_printf(c, "HELO %s\r\n", c->set.helo);
			c->st = S_HELO;
			arm(c, c->set.command_timeout);
		}
		return;
	case S_HELO:
		if (cls != 2)
			fail(c, code, "%s", text);
		else
			after_ehlo(c);
		return;
	case S_STARTTLS:
		if (code == 220) {
			start_tls(c);
			if (c->st == S_HANDSHAKE)
				handshake(c);
		} else if (c->set.tls_required) {
			fail(c, 421, "4.7.5 STARTTLS refused: %d %s", code, text);
		} else {
			c->starttls = false;
			after_ehlo(c);
		}
		return;
	case S_AUTH:
		if (code != 235) {
			fail(c, code / 100 == 5 ? 454 : code, "4.7.0 Authentication failed: %d %s",
			     code, text);
			return;
		}
		c->authed = true;
		go_ready(c);
		return;
	case S_TRANS:
		trans_reply(c, code, text);
		return;
	case S_DOT:
		if (!c->discard_dot)
			settle_rest(c, code, text);
		else
			settle_rest(c, 451, "4.3.0 No recipient accepted");
		c->discard_dot = false;
		finish_msg(c);
		if (c->st != S_DONE)
			go_ready(c);
		return;
	case S_RSET:
		if (cls != 2) {
			fail(c, code, "%s", text);
			return;
		}
		go_ready(c);
		return;
	case S_QUIT:
		fail(c, 221, "2.0.0 Bye");
		return;
	default:
		fail(c, 421, "4.5.0 Unexpected reply %d in state %s", code, state_names[c->st]);
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
				fail(c, 421, "4.5.0 Reply line from %s over %d bytes", c->peer,
				     SMTPC_MAX_LINE);
			return;
		}
		len = (size_t)(nl - c->in.data) + 1;
		if (len > SMTPC_MAX_LINE) {
			fail(c, 421, "4.5.0 Reply line from %s over %d bytes", c->peer,
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
			fail(c, 421, "4.5.0 Malformed reply from %s", c->peer);
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
			fail(c, 421, "4.5.0 Inconsistent multi-line reply from %s", c->peer);
			return;
		}
		if (c->st == S_EHLO && c->rlines > 0 && len > 4)
			ehlo_line(c, line + 4);
		if (++c->rlines > SMTPC_MAX_LINES) {
			fail(c, 421, "4.5.0 Reply from %s over %d lines", c->peer, SMTPC_MAX_LINES);
			return;
		}
		if (!last)
			continue;
		c->rlines = 0;
		if (c->st == S_HANDSHAKE) {
			fail(c, 421, "4.5.0 Reply during the TLS handshake");
			return;
		}
		arm(c, c->set.command_timeout);
		on_reply(c, code, c->rtext);
	}
}

static bool
read_in(struct smtpc *c)
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
				fail(c, 421, "4.4.2 Connection to %s lost in state %s", c->peer,
				     state_names[c->st]);
				return false;
			}
			r = n;
		} else {
			r = recv(c->fd, tmp, sizeof(tmp), 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return true;
			if (r <= 0) {
				fail(c, 421, "4.4.2 Connection to %s lost in state %s", c->peer,
				     state_names[c->st]);
				return false;
			}
		}
		buf_append(&c->in, tmp, (size_t)r);
		arm(c, c->st == S_GREET ? c->set.connect_timeout : c->set.command_timeout);
		parse_lines(c);
		if (c->st == S_DONE)
			return false;
	}
	return true;
}

/* ---- public ---- */

struct smtpc *
smtpc_connect(const struct sockaddr_storage *addr, socklen_t len, const struct smtpc_settings *set,
              const struct smtpc_events *ev, void *arg)
{
	struct smtpc *c = xcalloc(1, sizeof(*c));
	int one = 1;

	c->set = *set;
	c->ev = *ev;
	c->arg = arg;
	buf_init(&c->in, 0);
	buf_init(&c->out, 0);
	snprintf(c->tls_version, sizeof(c->tls_version), "none");
	if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)addr;

		inet_ntop(AF_INET6, &s6->sin6_addr, c->peer, sizeof(c->peer));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)addr;

		inet_ntop(AF_INET, &s4->sin_addr, c->peer, sizeof(c->peer));
	}
	c->st = S_CONNECT;
	arm(c, c->set.connect_timeout);
	c->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->deadline = 0; /* reported on the first tick */
		return c;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)addr, len) != 0 && errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		c->deadline = 0;
	}
	return c;
}

void
smtpc_free(struct smtpc **cp)
{
	struct smtpc *c = *cp;

	if (c == NULL)
		return;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->accepted);
	free(c);
	*cp = NULL;
}

void
smtpc_send(struct smtpc *c, struct smtpc_msg *m)
{
	c->msg = m;
	c->accepted = xcalloc(m->n_rcpts + 1, sizeof(*c->accepted));
	c->answered = c->sent = c->n_accepted = 0;
	c->n_steps = m->n_rcpts + 2;
	c->mail_ok = false;
	c->discard_dot = false;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		m->rcpts[i].code = 0;
		m->rcpts[i].text[0] = '\0';
	}
	if (m->smtputf8 && !c->utf8) {
		settle_rest(c, 553,
		            "5.6.7 The message needs SMTPUTF8, which the server does not offer");
		c->st = S_LOCAL_DONE;
		c->deadline = 0;
		return;
	}
	if (c->max_size > 0 && m->size > c->max_size) {
		settle_rest(c, 552, "5.3.4 Message larger than the server accepts");
		c->st = S_LOCAL_DONE;
		c->deadline = 0;
		return;
	}
	c->st = S_TRANS;
	if (c->pipelining) {
		for (size_t k = 0; k < c->n_steps; k++)
			send_step(c, k);
	} else {
		send_step(c, 0);
	}
	arm(c, c->set.command_timeout);
}

void
smtpc_quit(struct smtpc *c)
{
	out_printf(c, "QUIT\r\n");
	c->st = S_QUIT;
	arm(c, c->set.command_timeout);
}

void
smtpc_pollfd(const struct smtpc *c, struct pollfd *pfd)
{
	pfd->fd = c->fd;
	pfd->events = 0;
	pfd->revents = 0;
	if (c->fd < 0 || c->st == S_DONE || c->st == S_LOCAL_DONE) {
		pfd->fd = -1;
		return;
	}
	if (c->st == S_CONNECT) {
		pfd->events = POLLOUT;
		return;
	}
	pfd->events = POLLIN;
	if (c->out.len > 0 || c->ssl_wants_write)
		pfd->events |= POLLOUT;
}

int64_t
smtpc_deadline(const struct smtpc *c)
{
	return c->st == S_DONE ? INT64_MAX : c->deadline;
}

bool
smtpc_finished(const struct smtpc *c)
{
	return c->st == S_DONE;
}

bool
smtpc_tls_failed(const struct smtpc *c)
{
	return c->tls_failed;
}

const char *
smtpc_tls_version(const struct smtpc *c)
{
	return c->tls_version;
}

const char *
smtpc_peer(const struct smtpc *c)
{
	return c->peer;
}

void
smtpc_handle(struct smtpc *c, short revents, int64_t now)
{
	if (c->st == S_DONE)
		return;
	if (c->st == S_LOCAL_DONE) {
		finish_msg(c);
		if (c->st == S_LOCAL_DONE)
			go_ready(c);
		return;
	}
	if (c->fd < 0) {
		fail(c, 421, "4.4.1 Cannot connect to %s (%s)", c->peer, strerror(errno));
		return;
	}
	if (c->st == S_CONNECT) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (revents == 0) {
			if (now >= c->deadline)
				fail(c, 421, "4.4.1 Connection to %s timed out", c->peer);
			return;
		}
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			fail(c, 421, "4.4.1 Cannot connect to %s (%s)", c->peer, strerror(err));
			return;
		}
		c->st = S_GREET;
		arm(c, c->set.connect_timeout);
		return;
	}
	if (c->st == S_HANDSHAKE) {
		if (revents != 0)
			handshake(c);
		if (c->st == S_HANDSHAKE && smtpc_now_ms() >= c->deadline) {
			c->tls_failed = true;
			fail(c, 421, "4.7.5 TLS handshake with %s timed out", c->peer);
		}
		if (c->st != S_EHLO)
			return;
	}
	if ((revents & POLLOUT) || c->out.len > 0) {
		if (!flush_out(c))
			return;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (!read_in(c))
			return;
	}
	if (c->st == S_BODY) {
		if (!fill_body(c))
			return;
		if (!flush_out(c))
			return;
	}
	if (c->st != S_DONE && c->out.len > 0 && !flush_out(c))
		return;
	if (c->st != S_DONE && smtpc_now_ms() >= c->deadline && c->deadline != 0)
		fail(c, 421, "4.4.2 Timeout in state %s waiting for %s", state_names[c->st],
		     c->peer);
}
