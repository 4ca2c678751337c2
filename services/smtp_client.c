/*
 * The outbound SMTP client: one connection, one explicit state machine,
 * non-blocking I/O (plain or OpenSSL), driven by the owner's poll loop.
 * See roost/smtp_client.h for the contract.
 *
 * A transaction is a list of steps, MAIL, one RCPT per recipient, DATA.
 * With PIPELINING they are all written at once (RFC 2920); without it one
 * at a time. Replies are matched to steps in order either way, so the two
 * modes share one reply handler. A server offering CHUNKING gets no DATA
 * step: after the last RCPT's reply, if any recipient was accepted, the
 * message goes as BDAT chunks (RFC 3030), raw, with no dot-stuffing.
 *
 * Here are the connection, its output and the public calls; the steps of a
 * transaction are in smtp_client_trans.c, STARTTLS in smtp_client_tls.c,
 * reading and acting on replies in smtp_client_reply.c.
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
#include "roost/loop.h"
#include "roost/sasl.h"
#include "roost/smtp_client.h"
#include "roost/xalloc.h"

#include "smtp_client_impl.h"

const char *const smtpc_state_names[] = {
    "connect",     "greeting", "ehlo", "helo",        "starttls", "handshake", "auth", "ready",
    "transaction", "body",     "bdat", "end-of-data", "rset",     "local",     "quit", "done",
};

int64_t
smtpc_now_ms(void)
{
	return (int64_t)clock_ms();
}

void
smtpc_arm(struct smtpc *c, unsigned seconds)
{
	c->deadline = smtpc_now_ms() + (int64_t)seconds * 1000;
}

/* Give every recipient still without a final result this one. */
void
smtpc_settle_rest(struct smtpc *c, int code, const char *text)
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

void
smtpc_finish_msg(struct smtpc *c)
{
	struct smtpc_msg *m = c->msg;

	c->msg = NULL;
	free(c->accepted);
	c->accepted = NULL;
	if (m != NULL)
		c->ev.done(c->arg, m);
}

void
smtpc_fail(struct smtpc *c, int code, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	bool ready_seen = c->ready_seen;

	if (c->st == S_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_debug("event=smtp_client peer=%s state=%s status=failed code=%d text=\"%s\"", c->peer,
	          smtpc_state_names[c->st], code, text);
	c->st = S_DONE;
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	smtpc_settle_rest(c, code, text);
	smtpc_finish_msg(c);
	c->ev.closed(c->arg, ready_seen, code, text);
}

void
smtpc_out_printf(struct smtpc *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
}

/* Write what we can; false when the connection failed (smtpc_fail() ran). */
bool
smtpc_flush_out(struct smtpc *c)
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
				smtpc_fail(c, 421, "4.4.2 TLS write failed");
				return false;
			}
			w = r;
		} else {
			w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EINTR))
				return true;
			if (w < 0) {
				smtpc_fail(c, 421, "4.4.2 Connection lost (%s)", strerror(errno));
				return false;
			}
		}
		buf_consume(&c->out, (size_t)w);
		c->ssl_wants_write = false;
		smtpc_arm(c, c->set.command_timeout);
	}
	return true;
}

/* Fill the output from the file, dot-stuffed; at the end ".". */
bool
smtpc_fill_body(struct smtpc *c)
{
	uint8_t tmp[BODY_CHUNK];

	while (c->st == S_BODY && c->out.len < OUT_HIGH) {
		ssize_t r = pread(c->msg->fd, tmp, sizeof(tmp), (off_t)c->body_off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			smtpc_fail(c, 451, "4.3.0 Cannot read the queued message (%s)",
			           strerror(errno));
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

bool
smtpc_fill_bdat(struct smtpc *c)
{
	const struct smtpc_msg *m = c->msg;

	while (c->st == S_BDAT && c->out.len < OUT_HIGH) {
		uint8_t *dst;
		ssize_t r;
		size_t want;

		if (c->chunk_left == 0) {
			uint64_t rest = m->size - c->body_off;
			uint64_t n = !c->pipelining ? rest : rest < BDAT_CHUNK ? rest : BDAT_CHUNK;

			if (c->chunks_sent > 0 && rest == 0) {
				c->st = S_DOT;
				break;
			}
			smtpc_out_printf(c, "BDAT %llu%s\r\n", (unsigned long long)n,
			                 n == rest ? " LAST" : "");
			c->chunk_left = n;
			c->chunks_sent++;
			if (n == 0) {
				c->st = S_DOT; /* an empty message: "BDAT 0 LAST" */
				break;
			}
			continue;
		}
		want = c->chunk_left < BODY_CHUNK ? (size_t)c->chunk_left : BODY_CHUNK;
		buf_reserve(&c->out, want);
		dst = c->out.data + c->out.len;
		r = pread(m->fd, dst, want, (off_t)c->body_off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			/* The size was announced: a short file cannot be sent. */
			smtpc_fail(c, 451, "4.3.0 Cannot read the queued message (%s)",
			           r < 0 ? strerror(errno) : "shorter than its size");
			return false;
		}
		c->out.len += (size_t)r;
		c->body_off += (uint64_t)r;
		c->chunk_left -= (uint64_t)r;
	}
	return true;
}

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
	smtpc_arm(c, c->set.connect_timeout);
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
	/* With CHUNKING no DATA step: BDAT follows the RCPT replies. */
	c->bdat = c->chunking;
	c->n_steps = m->n_rcpts + (c->bdat ? 1 : 2);
	c->chunk_left = 0;
	c->chunks_sent = c->chunks_answered = 0;
	c->bdat_code = 0;
	c->bdat_text[0] = '\0';
	c->mail_ok = false;
	c->discard_dot = false;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		m->rcpts[i].code = 0;
		m->rcpts[i].text[0] = '\0';
	}
	if (m->requiretls && (!c->verified || !c->requiretls)) {
		/* RFC 8689 4.2.1: never relayed without a verified TLS
		 * session to a server that promises to keep the demand. */
		smtpc_settle_rest(c, 550,
		                  c->verified
		                      ? "5.7.30 REQUIRETLS support required: the server does "
		                        "not offer REQUIRETLS"
		                      : "5.7.30 REQUIRETLS support required: no verified TLS "
		                        "session");
		c->st = S_LOCAL_DONE;
		c->deadline = 0;
		return;
	}
	if (m->binarymime && !(c->binarymime && c->chunking)) {
		/* RFC 3030 3: the message goes on as it is or not at all (we
		 * do not convert it to a 7bit encoding). */
		smtpc_settle_rest(c, 554,
		                  "5.6.3 The message is binary (BODY=BINARYMIME), which the server "
		                  "does not accept");
		c->st = S_LOCAL_DONE;
		c->deadline = 0;
		return;
	}
	if (m->smtputf8 && !c->utf8) {
		smtpc_settle_rest(
		    c, 553, "5.6.7 The message needs SMTPUTF8, which the server does not offer");
		c->st = S_LOCAL_DONE;
		c->deadline = 0;
		return;
	}
	if (c->max_size > 0 && m->size > c->max_size) {
		smtpc_settle_rest(c, 552, "5.3.4 Message larger than the server accepts");
		c->st = S_LOCAL_DONE;
		c->deadline = 0;
		return;
	}
	c->st = S_TRANS;
	if (c->pipelining) {
		for (size_t k = 0; k < c->n_steps; k++)
			smtpc_send_step(c, k);
	} else {
		smtpc_send_step(c, 0);
	}
	smtpc_arm(c, c->set.command_timeout);
}

void
smtpc_quit(struct smtpc *c)
{
	smtpc_out_printf(c, "QUIT\r\n");
	c->st = S_QUIT;
	smtpc_arm(c, c->set.command_timeout);
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
	if (c->out.len > 0 || c->ssl_wants_write || c->st == S_BODY || c->st == S_BDAT)
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

bool
smtpc_tls_policy_failed(const struct smtpc *c)
{
	return c->tls_policy_failed;
}

const char *
smtpc_tls_status(const struct smtpc *c)
{
	return c->ssl == NULL ? "none" : c->verified ? "verified" : "unverified";
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
		smtpc_finish_msg(c);
		if (c->st == S_LOCAL_DONE)
			smtpc_go_ready(c);
		return;
	}
	if (c->fd < 0) {
		smtpc_fail(c, 421, "4.4.1 Cannot connect to %s (%s)", c->peer, strerror(errno));
		return;
	}
	if (c->st == S_CONNECT) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (revents == 0) {
			if (now >= c->deadline)
				smtpc_fail(c, 421, "4.4.1 Connection to %s timed out", c->peer);
			return;
		}
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			smtpc_fail(c, 421, "4.4.1 Cannot connect to %s (%s)", c->peer,
			           strerror(err));
			return;
		}
		c->st = S_GREET;
		smtpc_arm(c, c->set.connect_timeout);
		return;
	}
	if (c->st == S_HANDSHAKE) {
		if (revents != 0)
			smtpc_handshake(c);
		if (c->st == S_HANDSHAKE && smtpc_now_ms() >= c->deadline) {
			c->tls_failed = true;
			smtpc_fail(c, 421, "4.7.5 TLS handshake with %s timed out", c->peer);
		}
		if (c->st != S_EHLO)
			return;
	}
	if ((revents & POLLOUT) || c->out.len > 0) {
		if (!smtpc_flush_out(c))
			return;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (!smtpc_read_in(c))
			return;
	}
	/* Generate and write the message until the socket is full (POLLOUT
	 * brings us back) or it is all out. Stopping with an empty buffer
	 * would wait for POLLIN that never comes: the server is waiting for
	 * the rest of the message (a stall until the command timeout, once a
	 * message outgrew OUT_HIGH). */
	while (c->st == S_BODY || c->st == S_BDAT) {
		if (!(c->st == S_BODY ? smtpc_fill_body(c) : smtpc_fill_bdat(c)))
			return;
		if (!smtpc_flush_out(c))
			return;
		if (c->out.len > 0 || c->ssl_wants_write)
			break;
	}
	if (c->st != S_DONE && c->out.len > 0 && !smtpc_flush_out(c))
		return;
	if (c->st != S_DONE && smtpc_now_ms() >= c->deadline && c->deadline != 0)
		smtpc_fail(c, 421, "4.4.2 Timeout in state %s waiting for %s",
		           smtpc_state_names[c->st], c->peer);
}
