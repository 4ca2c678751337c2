#ifndef ROOST_SASL_H
#define ROOST_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "roost/buf.h"

/*
 * SASL server side shared by IMAP, POP3 and SMTP. Mechanisms: PLAIN, LOGIN,
 * and SCRAM-SHA-256 when [auth] password_scheme = SCRAM-SHA-256 (users need
 * SCRAM keys or {PLAIN} passwords for it; it is not a plaintext mechanism,
 * so it is offered without TLS too). SCRAM ends with a challenge carrying
 * the server signature ("v=..."); the client answers with an empty line and
 * only then does sasl_step() return 0. The protocol handles its own framing ("+ ",
 * "334 ") and passes the client's base64 lines in; sasl deals with base64.
 *
 *   sasl_start(mech, secure, initial_response or NULL)
 *   loop: ROOST_EAGAIN -> send challenge_out (base64) and feed the reply
 *         line to sasl_step()
 *   0              -> authenticated, sasl_user() is the canonical name
 *   ROOST_EAUTH    -> wrong credentials (apply auth_failure() delay)
 *   ROOST_ECANCELED-> client sent "*"
 *   ROOST_EINVAL   -> malformed (bad base64, missing fields)
 *   ROOST_ENOTSUP  -> unknown mechanism
 *   ROOST_EPERM    -> plaintext mechanism on an insecure connection
 *
 * One struct sasl per exchange, owned by the session; not shared.
 *
 * secure: TLS is active or the peer is on loopback (the caller decides; see
 * auth_plaintext_allowed()). challenge_out is replaced (reset, then the
 * base64 challenge; empty for an empty challenge) by sasl_start() and
 * sasl_step(). Lines are passed without CRLF (a trailing CRLF is ignored).
 * *sasl_r is set whenever the mechanism was accepted (any result other than
 * ROOST_ENOTSUP / ROOST_EPERM); always sasl_free() it. Once a call returned
 * something other than ROOST_EAGAIN the exchange is over and sasl_step()
 * returns ROOST_EINVAL. Client responses are bounded (8 KB decoded).
 */

struct auth;
struct sasl;

/* Space-separated mechanisms to advertise for this connection ("PLAIN LOGIN";
 * "" when plaintext mechanisms are not allowed and no other exists). Static. */
const char *sasl_mechanisms(const struct auth *auth, bool secure);

/* initial may be NULL (no initial response) or "=" (empty one). */
int sasl_start(struct auth *auth, const char *mech, bool secure, const char *initial,
               struct buf *challenge_out, struct sasl **sasl_r);
int sasl_step(struct sasl *sasl, const char *line, struct buf *challenge_out);
/*
 * Were the credentials checked and found right while the exchange goes on?
 * True from the challenge that carries SCRAM's server signature: that
 * challenge tells the client its password was right, so the protocol holds
 * it as it would a success reply (auth_success(), conn_delay()).
 */
bool sasl_verified(const struct sasl *sasl);
/* The user name the client gave (at most AUTH_MAX_NAME + 1 bytes of it; for
 * the log of a failure), NULL before it gave one. Valid until sasl_free(). */
const char *sasl_user_tried(const struct sasl *sasl);
/* The mechanism's name ("PLAIN", "SCRAM-SHA-256"); static. */
const char *sasl_mech_name(const struct sasl *sasl);
/* The canonical user name after a 0 result, NULL before. Valid until sasl_free(). */
const char *sasl_user(const struct sasl *sasl);
void sasl_free(struct sasl **sasl);

/* base64 (RFC 4648), used here and by protocols. decode: ROOST_EINVAL on
 * bad input; whitespace is not allowed. */
int base64_encode(const void *data, size_t len, struct buf *out);
int base64_decode(const char *text, size_t len, struct buf *out);

#endif
