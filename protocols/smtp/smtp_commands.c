/*
 * SMTP/LMTP commands other than the message's own (DATA and BDAT live in
 * smtp_message.c) and AUTH (smtp_auth.c): the greetings, the envelope,
 * STARTTLS and the small ones.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/ratelimit.h"
#include "roost/relay.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/smtp.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "smtp_impl.h"

static void
cmd_helo(struct smtp_session *s, const char *args, enum helo_kind kind)
{
	size_t n = strcspn(args, " ");

	if (n == 0 || n >= sizeof(s->helo_name)) {
		smtp_reply(s, 501, "5.5.4", "Syntax: %s hostname",
		           kind == HELO_HELO   ? "HELO"
		           : kind == HELO_EHLO ? "EHLO"
		                               : "LHLO");
		return;
	}
	memcpy(s->helo_name, args, n);
	s->helo_name[n] = '\0';
	s->helo = kind;
	smtp_reset_transaction(s);
	if (kind == HELO_HELO) {
		smtp_reply(s, 250, NULL, "%s", s->cfg->hostname);
		return;
	}
	conn_printf(s->c, "250-%s Hello %s [%s]\r\n", s->cfg->hostname, s->helo_name,
	            conn_peer(s->c));
	conn_write_str(s->c, "250-PIPELINING\r\n");
	conn_printf(s->c, "250-SIZE %llu\r\n", (unsigned long long)s->cfg->max_message_size);
	conn_write_str(s->c, "250-8BITMIME\r\n");
	conn_write_str(s->c, "250-ENHANCEDSTATUSCODES\r\n");
	if (s->d->offers_tls_auth) {
		const char *mechs = sasl_mechanisms(s->sv->auth, conn_is_secure(s->c));

		if (!conn_is_tls(s->c))
			conn_write_str(s->c, "250-STARTTLS\r\n");
		if (!s->authenticated && mechs != NULL && mechs[0] != '\0')
			conn_printf(s->c, "250-AUTH %s\r\n", mechs);
	}
	conn_write_str(s->c, "250-CHUNKING\r\n");
	conn_write_str(s->c, "250-BINARYMIME\r\n"); /* RFC 3030: with BDAT only */
	if (conn_is_tls(s->c))
		conn_write_str(s->c, "250-REQUIRETLS\r\n"); /* RFC 8689 3: over TLS only */
	if (s->role == ROLE_SUBMISSION)
		conn_write_str(s->c, "250-BURL imap\r\n"); /* RFC 4468 */
	conn_write_str(s->c, "250-SMTPUTF8\r\n");
	conn_write_str(s->c, "250 DSN\r\n");
}

/* Who may use this envelope sender (roost/relay.h): an authenticated
 * client only its own address (553), an untrusted unauthenticated client
 * on port smtp no local domain (550). */
static bool
sender_ok(struct smtp_session *s)
{
	const char *user = conn_user(s->c);

	if (!s->d->checks_sender)
		return true;
	if (s->authenticated) {
		if (relay_sender_allowed(s->cfg, s->sv->aliases, user != NULL ? user : "",
		                         s->sender))
			return true;
		conn_log(s->c, LOG_LEVEL_INFO, "event=rejected reason=sender_mismatch from=%s",
		         LOG_QUOTE(s->sender));
		smtp_reply(s, 553, "5.7.1", "<%s>: Sender address not owned by user %s", s->sender,
		           user != NULL ? user : "");
		s->sender[0] = '\0';
		return false;
	}
	if (s->role == ROLE_MX && !s->trusted && s->sender[0] != '\0' &&
	    delivery_domain_is_local(s->cfg, relay_domain(s->sender))) {
		conn_log(s->c, LOG_LEVEL_INFO,
		         "event=rejected reason=local_sender_unauthenticated from=%s",
		         LOG_QUOTE(s->sender));
		smtp_reply(s, 550, "5.7.1", "<%s>: Local sender from outside needs authentication",
		           s->sender);
		s->sender[0] = '\0';
		return false;
	}
	return true;
}

/* The authenticated user's hourly allowance of kind (roost/ratelimit.h):
 * true when n more fit (and are counted), else the reply is sent. Clients
 * that did not log in are not counted. */
static bool
rate_ok(struct smtp_session *s, enum ratelimit_kind kind, unsigned n, const char *addr)
{
	const char *user = conn_user(s->c);
	unsigned wait;

	if (!s->authenticated || user == NULL || s->sv->rate == NULL)
		return true;
	if (ratelimit_take(s->sv->rate, user, kind, n, ratelimit_now_ms(), &wait) == 0)
		return true;
	conn_log(s->c, LOG_LEVEL_INFO, "event=rate_limited kind=%s retry_after=%u",
	         kind == RATELIMIT_MESSAGES ? "messages" : "recipients", wait);
	if (kind == RATELIMIT_MESSAGES)
		smtp_reply(s, 451, "4.7.1",
		           "Too many messages from %s (at most %u an hour), try again in %u s",
		           user, s->cfg->smtp_user_messages_per_hour, wait);
	else
		smtp_reply(s, 452, "4.5.3",
		           "<%s>: Too many recipients from %s (at most %u an hour), try again in "
		           "%u s",
		           addr, user, s->cfg->smtp_user_recipients_per_hour, wait);
	return false;
}

/* MAIL's state (a greeting, no transaction) is the table's. */
bool
smtp_check_mail(struct smtp_session *s, const char *args)
{
	if (s->role == ROLE_SUBMISSION && !s->authenticated) {
		smtp_reply(s, 530, "5.7.0", "Authentication required");
		return false;
	}
	return true;
}

void
smtp_cmd_mail(struct smtp_session *s, const char *args)
{
	const char *params, *bad;
	int err;

	if (strncasecmp(args, "FROM:", 5) != 0) {
		smtp_reply(s, 501, "5.5.2", "Syntax: MAIL FROM:<address>");
		return;
	}
	if (smtp_parse_path(args + 5, true, s->sender, &params) != 0) {
		s->sender[0] = '\0';
		smtp_reply(s, 501, "5.1.7", "Bad sender address syntax");
		return;
	}
	if (params[0] != '\0' && s->helo == HELO_HELO) {
		smtp_reply(s, 555, "5.5.4", "MAIL parameters need EHLO");
		s->sender[0] = '\0';
		return;
	}
	err = smtp_parse_mail_params(params, s->cfg->max_message_size, &s->mp, &bad);
	if (err != 0) {
		s->sender[0] = '\0';
		if (err == ROOST_ETOOBIG)
			smtp_reply(s, 552, "5.3.4",
			           "Message size exceeds fixed maximum message size");
		else if (err == ROOST_ENOTSUP)
			smtp_reply(s, 555, "5.5.4", "Unsupported MAIL parameter");
		else
			smtp_reply(s, 501, "5.5.4", "Invalid MAIL parameter");
		memset(&s->mp, 0, sizeof(s->mp));
		return;
	}
	if (s->mp.requiretls && !conn_is_tls(s->c)) {
		/* RFC 8689 3: offered, and so taken, over TLS only. */
		s->sender[0] = '\0';
		memset(&s->mp, 0, sizeof(s->mp));
		smtp_reply(s, 530, "5.7.10", "REQUIRETLS needs a TLS session (STARTTLS first)");
		return;
	}
	if (smtp_addr_is_utf8(s->sender) && !s->mp.smtputf8) {
		s->sender[0] = '\0';
		smtp_reply(s, 553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8");
		return;
	}
	if (!sender_ok(s))
		return;
	if (!rate_ok(s, RATELIMIT_MESSAGES, 1, NULL)) {
		s->sender[0] = '\0';
		memset(&s->mp, 0, sizeof(s->mp));
		return;
	}
	smtp_enter_state(s, ST_MAIL);
	smtp_reply(s, 250, "2.1.0", "Ok");
}

static void
push_rcpt(struct smtp_session *s, const struct smtp_rcpt *r)
{
	if (s->n_rcpts == s->cap_rcpts) {
		s->cap_rcpts = s->cap_rcpts == 0 ? 4 : s->cap_rcpts * 2;
		s->rcpts = xreallocarray(s->rcpts, s->cap_rcpts, sizeof(*s->rcpts));
	}
	s->rcpts[s->n_rcpts++] = *r;
}

/* Accept a local recipient with its destinations (an alias may name
 * several, some in other domains: those go to the queue whoever the client
 * is, as the alias is ours). */
static void
add_expanded(struct smtp_session *s, const struct smtp_rcpt *r, const struct delivery_dest *dests,
             size_t n)
{
	size_t n_remote = 0;

	for (size_t i = 0; i < n; i++)
		n_remote += dests[i].remote;
	if (n_remote > 0 && s->sv->queue == NULL) {
		smtp_reply(s, 451, "4.4.0", "<%s>: Forwarding is not available (no outbound queue)",
		           r->addr);
		return;
	}
	/* A local user whose quota has no room for the message (its SIZE=,
	 * or one more message when the client gave none) is refused now, so
	 * the others' delivery goes on; the store checks again after DATA.
	 * An alias to several is left to the store, member by member. */
	if (n == 1 && n_remote == 0) {
		int err = storage_quota_check(s->sv->storage, dests[0].d.user, s->mp.size, 1);

		if (err == ROOST_EOVERQUOTA || err == ROOST_EQUOTATOOBIG) {
			conn_log(s->c, LOG_LEVEL_INFO,
			         "event=rcpt_rejected reason=over_quota to=%s to_user=%s",
			         LOG_QUOTE(r->addr), LOG_QUOTE(dests[0].d.user));
			smtp_reply_error(s, err, r->addr);
			return;
		}
	}
	if (!rate_ok(s, RATELIMIT_RECIPIENTS, 1, r->addr))
		return;
	if (n > 1 || n_remote > 0)
		conn_log(s->c, LOG_LEVEL_INFO,
		         "event=alias_expanded to=%s destinations=%zu remote=%zu",
		         LOG_QUOTE(r->addr), n, n_remote);
	for (size_t i = 0; i < n; i++) {
		struct smtp_rcpt one = *r;

		one.rcpt_no = s->n_accepted;
		one.remote = dests[i].remote;
		one.d = dests[i].d;
		if (one.remote)
			snprintf(one.addr, sizeof(one.addr), "%s", dests[i].addr);
		push_rcpt(s, &one);
	}
	s->n_accepted++;
	smtp_enter_state(s, ST_RCPT);
	smtp_reply(s, 250, "2.1.5", "Ok");
}

void
smtp_cmd_rcpt(struct smtp_session *s, const char *args)
{
	struct smtp_rcpt r;
	struct delivery_dest *dests = NULL;
	size_t n_dests = 0;
	const char *params, *bad;
	int err;

	if (strncasecmp(args, "TO:", 3) != 0) {
		smtp_reply(s, 501, "5.5.2", "Syntax: RCPT TO:<address>");
		return;
	}
	memset(&r, 0, sizeof(r));
	if (smtp_parse_path(args + 3, false, r.addr, &params) != 0) {
		smtp_reply(s, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	if (params[0] != '\0' && s->helo == HELO_HELO) {
		smtp_reply(s, 555, "5.5.4", "RCPT parameters need EHLO");
		return;
	}
	err = smtp_parse_rcpt_params(params, &r.params, &bad);
	if (err != 0) {
		if (err == ROOST_ENOTSUP)
			smtp_reply(s, 555, "5.5.4", "Unsupported RCPT parameter");
		else
			smtp_reply(s, 501, "5.5.4", "Invalid RCPT parameter");
		return;
	}
	if (smtp_addr_is_utf8(r.addr) && !s->mp.smtputf8) {
		smtp_reply(s, 553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8");
		return;
	}
	if (s->n_accepted >= conn_config(s->c)->max_recipients) {
		smtp_reply(s, 452, "4.5.3", "Too many recipients");
		return;
	}
	err = delivery_expand(s->sv, r.addr, &dests, &n_dests);
	if (err == 0) {
		add_expanded(s, &r, dests, n_dests);
		free(dests);
		return;
	}
	if (err == ROOST_EPERM && s->sv->queue != NULL && s->d->may_relay &&
	    (s->authenticated || s->trusted)) {
		r.remote = true;
		err = 0;
	} else if (err == ROOST_EPERM) {
		conn_log(s->c, LOG_LEVEL_INFO,
		         "event=rcpt_rejected reason=relay_denied from=%s to=%s authenticated=%s",
		         LOG_QUOTE(s->sender), LOG_QUOTE(r.addr), s->authenticated ? "yes" : "no");
		if (s->authenticated)
			smtp_reply(s, 451, "4.4.0",
			           "<%s>: Relaying to other domains is not available yet "
			           "(no outbound queue), try again later",
			           r.addr);
		else if (!s->d->may_relay)
			smtp_reply(s, 550, "5.1.2", "<%s>: Not a local domain", r.addr);
		else
			smtp_reply(s, 554, "5.7.1", "<%s>: Relay access denied", r.addr);
		return;
	}
	if (err != 0) {
		/* An MTA handing over a batch over LMTP is not probing for
		 * users: its unknown recipients do not count towards 421. */
		conn_log(s->c, LOG_LEVEL_INFO, "event=rcpt_rejected reason=%s from=%s to=%s",
		         err == ROOST_ENOTFOUND ? "unknown_user" : "bad_address",
		         LOG_QUOTE(s->sender), LOG_QUOTE(r.addr));
		s->no_count = s->d->unknown_rcpt_free;
		smtp_reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: User unknown",
		           r.addr);
		s->no_count = false;
		return;
	}
	if (!rate_ok(s, RATELIMIT_RECIPIENTS, 1, r.addr))
		return;
	r.rcpt_no = s->n_accepted++;
	push_rcpt(s, &r);
	smtp_enter_state(s, ST_RCPT);
	smtp_reply(s, 250, "2.1.5", "Ok");
}

void
smtp_cmd_starttls(struct smtp_session *s, const char *args)
{
	int err;

	if (args[0] != '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	if (conn_is_tls(s->c)) {
		smtp_reply(s, 503, "5.5.1", "TLS already active");
		return;
	}
	err = conn_starttls(s->c);
	if (err != 0) {
		smtp_reply(s, 454, "4.7.0", "TLS not available");
		return;
	}
	conn_write_str(s->c, "220 2.0.0 Ready to start TLS\r\n");
	/* RFC 3207 4.2: forget everything learnt before TLS, a login included
	 * (AUTH before TLS is possible on loopback). */
	s->helo = HELO_NONE;
	s->helo_name[0] = '\0';
	if (s->authenticated) {
		s->authenticated = false;
		conn_set_user(s->c, NULL);
	}
	smtp_reset_transaction(s);
}

void
smtp_cmd_rset(struct smtp_session *s, const char *args)
{
	smtp_reset_transaction(s);
	smtp_reply(s, 250, "2.0.0", "Ok");
}

void
smtp_cmd_noop(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 250, "2.0.0", "Ok");
}

void
smtp_cmd_quit(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 221, "2.0.0", "%s Bye", s->cfg->hostname);
	conn_close(s->c);
}

void
smtp_cmd_help(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 214, "2.0.0", "Commands: %s", s->d->help);
}

void
smtp_cmd_vrfy(struct smtp_session *s, const char *args)
{
	if (args[0] == '\0') {
		smtp_reply(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	smtp_reply(s, 252, "2.5.0",
	           "Cannot VRFY user, but will accept message and attempt delivery");
}

void
smtp_cmd_expn(struct smtp_session *s, const char *args)
{
	smtp_reply(s, 502, "5.5.1", "EXPN not implemented");
}

void
smtp_cmd_ehlo(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, HELO_EHLO);
}

void
smtp_cmd_helo_plain(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, HELO_HELO);
}

void
smtp_cmd_lhlo(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, HELO_LHLO);
}
