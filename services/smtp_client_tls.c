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
	/* The chain and the name are always checked, never enforced by the
	 * handshake itself (the context says SSL_VERIFY_NONE): the result
	 * decides after it (smtpc_handshake), so a delivery can log
	 * tls=verified or tls=unverified, and a policy that demands a verified
	 * peer fails with the reason instead of a bare handshake error. */
	if (c->set.sni != NULL && c->set.sni[0] != '\0') {
		SSL_set_tlsext_host_name(c->ssl, c->set.sni);
		SSL_set1_host(c->ssl, c->set.sni);
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
		long vr = SSL_get_verify_result(c->ssl);
		X509 *peer = SSL_get1_peer_certificate(c->ssl);

		snprintf(c->tls_version, sizeof(c->tls_version), "%s", SSL_get_version(c->ssl));
		c->ssl_wants_write = false;
		c->verified =
		    peer != NULL && vr == X509_V_OK && c->set.sni != NULL && c->set.sni[0] != '\0';
		snprintf(c->verify_error, sizeof(c->verify_error), "%s",
		         peer == NULL      ? "no certificate"
		         : vr != X509_V_OK ? X509_verify_cert_error_string(vr)
		                           : "");
		X509_free(peer);
		if (c->set.tls_verify && !c->verified) {
			/* Not tls_failed: a policy that asks for a verified
			 * peer never falls back to plain text. */
			c->tls_policy_failed = true;
			smtpc_fail(c, 421, "4.7.5 Certificate of %s (%s) not verified: %s",
			           c->set.sni != NULL ? c->set.sni : "", c->peer, c->verify_error);
			return;
		}
		/* RFC 3207 4.2: forget what the server said before TLS. */
		c->esmtp = c->pipelining = c->starttls = c->bit8 = c->utf8 = c->dsn = c->chunking =
		    c->requiretls = c->binarymime = false;
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
		c->tls_failed = c->tls_policy_failed = true;
		smtpc_fail(c, 421, "4.7.5 TLS handshake with %s failed", c->peer);
	}
}
