#ifndef ROOST_SASL_H
#define ROOST_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "roost/buf.h"

/*
 * SASL server side shared by IMAP, POP3 and SMTP. Mechanisms: PLAIN, LOGIN
 * (room for SCRAM-SHA-256). The protocol handles its own framing ("+ ",
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
 */

struct auth;
struct sasl;

/* Space-separated mechanisms to advertise for this connection. */
const char *sasl_mechanisms(const struct auth *auth, bool secure);

/* initial may be NULL (no initial response) or "=" (empty one). */
int sasl_start(struct auth *auth, const char *mech, bool secure, const char *initial,
    struct buf *challenge_out, struct sasl **sasl_r);
int sasl_step(struct sasl *sasl, const char *line, struct buf *challenge_out);
const char *sasl_user(const struct sasl *sasl);
void sasl_free(struct sasl **sasl);

/* base64 (RFC 4648), used here and by protocols. decode: ROOST_EINVAL on
 * bad input; whitespace is not allowed. */
int base64_encode(const void *data, size_t len, struct buf *out);
int base64_decode(const char *text, size_t len, struct buf *out);

#endif
