#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/server_impl.h"
#include "roost/tls.h"
#include "roost/xalloc.h"

/*
 * The TLS transport: OpenSSL on the connection's non-blocking socket, from
 * accept (implicit TLS) or from STARTTLS on. The context (certificate,
 * protocols) is core/tls.c's; this file moves bytes and runs the handshake.
 * SSL_MODE_ENABLE_PARTIAL_WRITE and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER are
 * set on the context, so a write retried after WANT_* may start elsewhere
 * in the (compacted) output buffer.
 */

struct tls_ctx {
	SSL *ssl;
	bool notify_sent; /* close_notify is out (or must never be) */
};

static SSL *
ssl_of(const struct conn *c)
{
	return ((const struct tls_ctx *)c->tp_ctx)->ssl;
}

static int
clamp_int(size_t n)
{
	return n > INT_MAX ? INT_MAX : (int)n;
}

static ssize_t
tlstp_send(struct conn *c, const uint8_t *p, size_t n, enum conn_want *want_r)
{
	SSL *ssl = ssl_of(c);
	int r, e;

	*want_r = WANT_WRITE;
	ERR_clear_error();
	r = SSL_write(ssl, p, clamp_int(n));
	if (r > 0)
		return r;
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_WRITE)
		return ROOST_EAGAIN;
	if (e == SSL_ERROR_WANT_READ) {
		*want_r = WANT_READ;
		return ROOST_EAGAIN;
	}
	ERR_clear_error();
	((struct tls_ctx *)c->tp_ctx)->notify_sent = true; /* the session is broken */
	return ROOST_ECLOSED;
}

static ssize_t
tlstp_recv(struct conn *c, uint8_t *p, size_t n)
{
	SSL *ssl = ssl_of(c);
	int r, e;

	ERR_clear_error();
	r = SSL_read(ssl, p, clamp_int(n));
	if (r > 0)
		return r;
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return ROOST_EAGAIN;
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	ERR_clear_error();
	return ROOST_ECLOSED;
}

static bool
tlstp_pending(const struct conn *c)
{
	return SSL_has_pending(ssl_of(c)) == 1;
}

static int
tlstp_handshake(struct conn *c, enum conn_want *want_r)
{
	struct tls_ctx *t = c->tp_ctx;
	char ssl_err[256];
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1)
		return 0;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want_r = e == SSL_ERROR_WANT_READ ? WANT_READ : WANT_WRITE;
		return ROOST_EAGAIN;
	}
	if (e == SSL_ERROR_SSL) {
		unsigned long err;
		bool any = false;

		while ((err = ERR_get_error()) != 0) {
			ERR_error_string_n(err, ssl_err, sizeof(ssl_err));
			conn_log(c, LOG_LEVEL_INFO, "event=tls_error reason=handshake ssl=%s",
			         LOG_QUOTE(ssl_err));
			any = true;
		}
		if (!any)
			conn_log(c, LOG_LEVEL_INFO, "event=tls_error reason=handshake");
	} else {
		conn_log(c, LOG_LEVEL_INFO, "event=tls_error reason=handshake detail=%s",
		         e == SSL_ERROR_SYSCALL ? "peer_closed" : "other");
	}
	ERR_clear_error();
	t->notify_sent = true;
	return ROOST_ECLOSED;
}

static void
tlstp_shutdown(struct conn *c)
{
	struct tls_ctx *t = c->tp_ctx;

	if (t->notify_sent)
		return;
	t->notify_sent = true;
	ERR_clear_error();
	(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
}

static void
tlstp_free(struct conn *c)
{
	struct tls_ctx *t = c->tp_ctx;

	ERR_clear_error();
	SSL_free(t->ssl);
	free(t);
}

const struct conn_transport conn_tls_transport = {
    .name = "tls",
    .cross_ready = true,
    .send = tlstp_send,
    .recv = tlstp_recv,
    .pending = tlstp_pending,
    .handshake = tlstp_handshake,
    .shutdown = tlstp_shutdown,
    .free = tlstp_free,
};

bool
conn_tls_start(struct conn *c)
{
	unsigned tmo = server_config(c->srv)->tls_handshake_timeout;
	SSL *ssl = tls_ssl_new(c->srv->tls, c->fd);
	struct tls_ctx *t;

	if (ssl == NULL) {
		conn_close_now(c, "tls_error");
		return false;
	}
	t = xcalloc(1, sizeof(*t));
	t->ssl = ssl;
	c->tp = &conn_tls_transport;
	c->tp_ctx = t;
	conn_enter(c, CONN_HANDSHAKE);
	c->hs_deadline = tmo != 0 ? loop_now(c->sl->loop) + secs_ms(tmo) : 0;
	c->ready_in = true;
	return true;
}

bool
conn_tls_handshake(struct conn *c)
{
	enum conn_want want;
	char info[128];
	int r = tp_handshake(c, &want);

	if (r == ROOST_EAGAIN) {
		if (want == WANT_READ)
			c->ready_in = false;
		else
			c->ready_out = false;
		return false;
	}
	if (r != 0) {
		c->io_err = ROOST_ECLOSED;
		conn_close_now(c, "tls_handshake_failed");
		return false;
	}
	tls_describe(ssl_of(c), info, sizeof(info));
	c->tls_info = xstrdup(info);
	c->ready_in = true;
	c->ready_out = true;
	conn_log(c, LOG_LEVEL_DEBUG, "event=tls tls=%s", LOG_QUOTE(info));
	return true;
}
