/*
 * Logging in: STARTTLS, LOGIN and AUTHENTICATE (the SASL exchange), and the
 * per-user-and-IP connection count taken at login.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

/*
 * A small process-wide table of (user, ip) -> sessions. The lock guards
 * the table only; it is taken at login and at session end, never while
 * holding anything else.
 */
struct ucount {
	struct ucount *next;
	char *key;
	unsigned n;
};
static pthread_mutex_t ucount_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ucount *ucounts[256];

static unsigned
key_hash(const char *k)
{
	return hash_str(k) & 255;
}

bool
imap_ucount_take(const char *user, const char *ip, unsigned max)
{
	char key[600];
	bool ok = true;

	snprintf(key, sizeof(key), "%s\n%s", user, ip);
	pthread_mutex_lock(&ucount_lock);
	unsigned h = key_hash(key);
	struct ucount *u = ucounts[h];
	while (u != NULL && strcmp(u->key, key) != 0)
		u = u->next;
	if (u == NULL) {
		u = xcalloc(1, sizeof(*u));
		u->key = xstrdup(key);
		u->next = ucounts[h];
		ucounts[h] = u;
	}
	if (max > 0 && u->n >= max)
		ok = false;
	else
		u->n++;
	pthread_mutex_unlock(&ucount_lock);
	return ok;
}

void
imap_ucount_release(const char *user, const char *ip)
{
	char key[600];

	snprintf(key, sizeof(key), "%s\n%s", user, ip);
	pthread_mutex_lock(&ucount_lock);
	unsigned h = key_hash(key);
	struct ucount **pp = &ucounts[h];
	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	if (*pp != NULL && --(*pp)->n == 0) {
		struct ucount *u = *pp;
		*pp = u->next;
		free(u->key);
		free(u);
	}
	pthread_mutex_unlock(&ucount_lock);
}
void
cmd_starttls(struct imap_cmd *cmd)
{
	if (conn_is_tls(cmd->c)) {
		imap_bad(cmd, "TLS is already active");
		return;
	}
	int rc = conn_starttls(cmd->c);
	if (rc < 0) {
		imap_tagged(cmd, "NO", "TLS not available");
		return;
	}
	imap_tagged(cmd, "OK", "Begin TLS negotiation now");
	/* The framer starts afresh: pipelined plaintext is discarded. */
	imap_framer_reset(&cmd->s->fr);
}

static void
login_done(struct imap_cmd *cmd, const char *tag, const char *user)
{
	struct imap_session *s = cmd != NULL ? cmd->s : NULL;
	struct conn *c = s->c;
	const struct roost_config *cfg = imap_cfg(s);
	int rc;

	conn_delay(c, auth_success(s->sv->auth, s->peer));
	if (!imap_ucount_take(user, s->peer, cfg->imap_max_connections_per_user_ip)) {
		conn_log(c, LOG_LEVEL_INFO, "event=login_refused reason=per_user_ip_limit user=%s",
		         LOG_QUOTE(user));
		conn_printf(
		    c, "%s NO [LIMIT] Too many connections for this user from this address\r\n",
		    tag);
		return;
	}
	s->counted = true;
	s->user = xstrdup(user);
	rc = storage_user_init(s->sv->storage, user);
	if (rc < 0)
		conn_log(c, LOG_LEVEL_WARN, "event=user_init user=%s err=%s", LOG_QUOTE(user),
		         roost_strerror(rc));
	conn_set_user(c, user);
	imap_enter_state(s, IMAP_STATE_AUTH);
	conn_log(c, LOG_LEVEL_INFO, "event=login");

	struct buf b = BUF_INIT(0);
	imap_capability_string(s, &b);
	conn_printf(c, "%s OK [CAPABILITY %s] Logged in\r\n", tag, buf_cstr(&b));
	buf_free(&b);
}

static void
login_failed(struct imap_session *s, const char *tag, const char *user_tried)
{
	unsigned delay = auth_failure(s->sv->auth, s->peer);

	conn_log_auth_failed(s->c, user_tried, s->sasl != NULL ? sasl_mech_name(s->sasl) : "LOGIN",
	                     delay);
	conn_printf(s->c, "%s NO [AUTHENTICATIONFAILED] Authentication failed\r\n", tag);
	if (delay > 0)
		conn_delay(s->c, delay);
}

void
cmd_login(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	char name[512];

	if (cmd->p.n != 2 || !imap_arg_is_string(&cmd->p.args[0]) ||
	    !imap_arg_is_string(&cmd->p.args[1])) {
		imap_bad(cmd, "Usage: LOGIN user password");
		return;
	}
	if (!auth_plaintext_allowed(s->sv->auth, conn_is_secure(cmd->c))) {
		imap_tagged(cmd, "NO", "[PRIVACYREQUIRED] Plaintext LOGIN is disabled without TLS");
		return;
	}
	const struct imap_arg *pw = &cmd->p.args[1];
	int rc = auth_verify(s->sv->auth, cmd->p.args[0].str, pw->str, pw->len, name, sizeof(name));
	cmd->done = true;
	if (rc < 0) {
		login_failed(s, cmd->p.tag, cmd->p.args[0].str);
		return;
	}
	login_done(cmd, cmd->p.tag, name);
}

static void
sasl_result(struct imap_cmd *cmd, struct imap_session *s, const char *tag, int rc,
            struct buf *challenge)
{
	switch (rc) {
	case ROOST_EAGAIN:
		if (sasl_verified(s->sasl))
			conn_delay(s->c, auth_success(s->sv->auth, s->peer));
		conn_printf(s->c, "+ %s\r\n", buf_cstr(challenge));
		return;
	case 0: {
		char user[512];
		snprintf(user, sizeof(user), "%s", sasl_user(s->sasl));
		sasl_free(&s->sasl);
		login_done(cmd, tag, user);
		return;
	}
	case ROOST_EAUTH:
		login_failed(s, tag, sasl_user_tried(s->sasl));
		sasl_free(&s->sasl);
		return;
	case ROOST_ECANCELED:
		sasl_free(&s->sasl);
		conn_printf(s->c, "%s BAD Authentication cancelled\r\n", tag);
		imap_count_bad(s);
		return;
	case ROOST_ENOTSUP:
		sasl_free(&s->sasl);
		conn_printf(s->c, "%s NO Unsupported authentication mechanism\r\n", tag);
		return;
	case ROOST_EPERM:
		sasl_free(&s->sasl);
		conn_printf(s->c, "%s NO [PRIVACYREQUIRED] Plaintext authentication needs TLS\r\n",
		            tag);
		return;
	default:
		sasl_free(&s->sasl);
		conn_printf(s->c, "%s BAD Invalid SASL response\r\n", tag);
		imap_count_bad(s);
		return;
	}
}

void
cmd_authenticate(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct buf ch = BUF_INIT(0);
	const char *initial = NULL;
	bool secure = conn_is_secure(cmd->c);

	if (cmd->p.n < 1 || cmd->p.n > 2 || cmd->p.args[0].type != ARG_ATOM ||
	    (cmd->p.n == 2 && cmd->p.args[1].type != ARG_ATOM)) {
		imap_bad(cmd, "Usage: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (cmd->p.n == 2)
		initial = cmd->p.args[1].str;
	cmd->done = true;
	int rc = sasl_start(s->sv->auth, cmd->p.args[0].str, secure, initial, &ch, &s->sasl);
	snprintf(s->sasl_tag, sizeof(s->sasl_tag), "%s", cmd->p.tag);
	sasl_result(cmd, s, s->sasl_tag, rc, &ch);
	buf_free(&ch);
}

void
imap_sasl_continue(struct imap_session *s, const uint8_t *line, size_t len)
{
	struct buf ch = BUF_INIT(0);
	struct imap_cmd cmd = {.s = s, .c = s->c};

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	char *text = xstrndup((const char *)line, len);
	int rc;
	if (len == 1 && text[0] == '*')
		rc = ROOST_ECANCELED;
	else if (memchr(line, '\0', len) != NULL)
		rc = ROOST_EINVAL;
	else
		rc = sasl_step(s->sasl, text, &ch);
	explicit_bzero(text, len);
	free(text);
	cmd.p.tag = s->sasl_tag;
	sasl_result(&cmd, s, s->sasl_tag, rc, &ch);
	buf_free(&ch);
}
