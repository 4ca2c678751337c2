/*
 * STARTTLS on the client's connection: the command, then the handshake
 * run in steps from the poll loop, the peer checked as the settings ask.
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
smtpc_start_tls(struct smtpc *c)
{
	c->ssl = SSL_new(c->set.tls);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		smtpc_fail(c, 421, "4.7.0 TLS setup failed");
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
	smtpc_arm(c, c->set.connect_timeout);
}

void
smtpc_handshake(struct smtpc *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		snprintf(c->tls_version, sizeof(c->tls_version), "%s", SSL_get_version(c->ssl));
		c->ssl_wants_write = false;
		/* RFC 3207 4.2: forget what the server said before TLS. */
		c->esmtp = c->pipelining = c->starttls = c->bit8 = c->utf8 = c->dsn = c->chunking =
		    false;
		c->max_size = 0;
		smtpc_out_printf(c, "EHLO %s\r\n", c->set.helo);
		c->st = S_EHLO;
		smtpc_arm(c, c->set.command_timeout);
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
		smtpc_fail(c, 421, "4.7.5 TLS handshake with %s failed", c->peer);
	}
}
