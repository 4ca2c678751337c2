/*
 * SMTP AUTH (RFC 4954) over the SASL exchange of core/sasl.c.
 */
#include <string.h>

#include "roost/auth.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/services.h"

#include "smtp_impl.h"

static void
auth_result(struct smtp_session *s, int err, struct buf *challenge)
{
	switch (err) {
	case ROOST_EAGAIN:
		if (sasl_verified(s->sasl))
			conn_delay(s->c, auth_success(s->sv->auth, conn_peer(s->c)));
		conn_printf(s->c, "334 %s\r\n", buf_cstr(challenge));
		return;
	case 0:
		s->authenticated = true;
		conn_set_user(s->c, sasl_user(s->sasl));
		conn_delay(s->c, auth_success(s->sv->auth, conn_peer(s->c)));
		conn_log(s->c, LOG_LEVEL_INFO, "event=login");
		smtp_reply(s, 235, "2.7.0", "Authentication successful");
		break;
	case ROOST_EAUTH: {
		unsigned ms = auth_failure(s->sv->auth, conn_peer(s->c));

		conn_delay(s->c, ms);
		conn_log_auth_failed(s->c, sasl_user_tried(s->sasl), sasl_mech_name(s->sasl), ms);
	}
		smtp_reply(s, 535, "5.7.8", "Authentication credentials invalid");
		break;
	case ROOST_ECANCELED:
		smtp_reply(s, 501, "5.0.0", "Authentication cancelled");
		break;
	case ROOST_ENOTSUP:
		smtp_reply(s, 504, "5.5.4", "Unrecognized authentication mechanism");
		break;
	case ROOST_EPERM:
		smtp_reply(s, 538, "5.7.11",
		           "Encryption required for requested authentication mechanism");
		break;
	default:
		smtp_reply(s, 501, "5.5.2", "Malformed authentication data");
		break;
	}
	sasl_free(&s->sasl);
}

void
smtp_cmd_auth(struct smtp_session *s, const char *args)
{
	struct buf challenge = BUF_INIT(4096);
	char mech[32];
	const char *initial = NULL;
	size_t n = strcspn(args, " ");
	int err;

	if (s->helo != HELO_EHLO) {
		smtp_reply(s, 503, "5.5.1", "Send EHLO first");
		return;
	}
	if (s->authenticated) {
		smtp_reply(s, 503, "5.5.1", "Already authenticated");
		return;
	}
	if (s->state != ST_READY) {
		smtp_reply(s, 503, "5.5.1", "AUTH not allowed during a mail transaction");
		return;
	}
	if (n == 0 || n >= sizeof(mech)) {
		smtp_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
		return;
	}
	memcpy(mech, args, n);
	mech[n] = '\0';
	if (args[n] == ' ')
		initial = args + n + 1;
	/* sasl refuses plaintext mechanisms off TLS/loopback (ROOST_EPERM). */
	err = sasl_start(s->sv->auth, mech, conn_is_secure(s->c), initial, &challenge, &s->sasl);
	auth_result(s, err, &challenge);
	buf_free(&challenge);
}

void
smtp_auth_continue(struct smtp_session *s, const char *line)
{
	struct buf challenge = BUF_INIT(4096);
	int err;

	if (strcmp(line, "*") == 0)
		err = ROOST_ECANCELED;
	else
		err = sasl_step(s->sasl, line, &challenge);
	auth_result(s, err, &challenge);
	buf_free(&challenge);
}
