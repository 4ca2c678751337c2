/*
 * Who a request is from: HTTP Basic (RFC 7617) with the user database,
 * its cache and its failed-login slow-down shared with IMAP, accepted only
 * where plaintext passwords are (TLS or loopback, or as configured), and
 * bearer tokens made with `roost token add`.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/services.h"

#include "http_impl.h"

void
http_account_id(const char *user, char out[24])
{
	uint8_t md[32];
	unsigned mdlen = 0;

	EVP_Digest(user, strlen(user), md, &mdlen, EVP_sha256(), NULL);
	out[0] = 'a';
	for (int i = 0; i < 8; i++)
		snprintf(out + 1 + 2 * i, 3, "%02x", md[i]);
}

static void
challenge(struct http_session *s, int status, const char *text)
{
	/* Scripts of the web page say so: a Basic challenge would make the
	 * browser open its own password dialog over the page's. */
	bool basic = auth_plaintext_allowed(s->svc->auth, conn_is_secure(s->c)) &&
	             http_request_field(&s->req, "X-Requested-With") == NULL;

	http_respond_text(s, status, text,
	                  basic ? "WWW-Authenticate: Basic realm=\"Roost\", charset=\"UTF-8\"\r\n"
	                          "WWW-Authenticate: Bearer realm=\"Roost\"\r\n"
	                        : "WWW-Authenticate: Bearer realm=\"Roost\"\r\n");
}

static int
failed(struct http_session *s, const char *scheme, const char *user_tried)
{
	unsigned ms = auth_failure(s->svc->auth, conn_peer(s->c));

	conn_log_auth_failed(s->c, user_tried, scheme, ms);
	conn_delay(s->c, ms);
	challenge(s, 401, "Authentication failed.\n");
	return ROOST_EAUTH;
}

static int
accepted(struct http_session *s, const char *name)
{
	conn_delay(s->c, auth_success(s->svc->auth, conn_peer(s->c)));
	snprintf(s->user, sizeof(s->user), "%s", name);
	http_account_id(s->user, s->account);
	return 0;
}

static int
basic(struct http_session *s, const char *cred)
{
	struct buf dec = BUF_INIT(4096);
	char name[AUTH_MAX_NAME + 1];
	char *colon;
	int rc;

	if (!auth_plaintext_allowed(s->svc->auth, conn_is_secure(s->c))) {
		/* Said once the password already crossed the network: the
		 * answer at least stops the client from sending it again. */
		conn_log(s->c, LOG_LEVEL_INFO, "event=auth_refused reason=plaintext");
		http_respond_text(s, 403,
		                  "Passwords are refused on unencrypted connections; "
		                  "use https.\n",
		                  NULL);
		return ROOST_EAUTH;
	}
	if (base64_decode(cred, strlen(cred), &dec) != 0 || memchr(dec.data, '\0', dec.len) ||
	    (colon = strchr((char *)dec.data, ':')) == NULL) {
		buf_free(&dec);
		challenge(s, 401, "Malformed credentials.\n");
		return ROOST_EAUTH;
	}
	*colon = '\0';
	rc = auth_verify(s->svc->auth, (const char *)dec.data, colon + 1, strlen(colon + 1), name,
	                 sizeof(name));
	if (rc == ROOST_EAUTH || rc == ROOST_ENOTFOUND) {
		rc = failed(s, "basic", (const char *)dec.data);
	} else if (rc != 0) {
		http_respond_text(s, 503, "Authentication is unavailable, try again later.\n",
		                  "Retry-After: 10\r\n");
		rc = ROOST_EAUTH;
	} else {
		rc = accepted(s, name);
	}
	explicit_bzero(dec.data, dec.len);
	buf_free(&dec);
	return rc;
}

static int
bearer(struct http_session *s, const char *token)
{
	char name[AUTH_MAX_NAME + 1], canon[AUTH_MAX_NAME + 1];

	if (http_token_check(s->svc->cfg->data_dir, token, name, sizeof(name)) != 0 ||
	    auth_lookup(s->svc->auth, name, canon, sizeof(canon)) != 0)
		return failed(s, "bearer", "-");
	return accepted(s, canon);
}

int
http_authenticate(struct http_session *s)
{
	const char *a = http_request_field(&s->req, "Authorization");

	if (a == NULL) {
		challenge(s, 401, "Authentication required.\n");
		return ROOST_EAUTH;
	}
	if (strncasecmp(a, "Basic ", 6) == 0)
		return basic(s, a + 6 + strspn(a + 6, " "));
	if (strncasecmp(a, "Bearer ", 7) == 0)
		return bearer(s, a + 7 + strspn(a + 7, " "));
	challenge(s, 401, "Unsupported authentication scheme.\n");
	return ROOST_EAUTH;
}
