#ifndef ROOST_DKIM_H
#define ROOST_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * DKIM signing (RFC 6376, relaxed/relaxed) with OpenSSL (services/dkim.c):
 * rsa-sha256 and ed25519-sha256 (RFC 8463). One key per signing domain,
 * <[relay] dkim_dir>/<domain>.key (PEM, PKCS#8), its type telling the
 * algorithm; the selector is [relay] dkim_selector. Thread-safe.
 */
struct roost_config;

/*
 * Sign msg[0..len) (header block, blank line, body; CRLF) for domain:
 * append the whole DKIM-Signature field (CRLF-terminated) to out.
 * ROOST_ENOTFOUND when domain has no key (nothing appended), ROOST_EIO when
 * the key cannot be read or used (logged).
 */
int dkim_sign(const struct roost_config *cfg, const char *domain, const uint8_t *msg, size_t len,
              struct buf *out);

/*
 * Generate a key for domain (2048-bit RSA, or Ed25519) into cfg's dkim_dir
 * (mode 0600; an existing key is kept: ROOST_EEXISTS), and append the DNS
 * record to publish to txt_r: `<selector>._domainkey.<domain>. IN TXT
 * "v=DKIM1; k=...; p=..."`, split into strings of at most 255 bytes.
 */
int dkim_keygen(const struct roost_config *cfg, const char *domain, bool ed25519,
                struct buf *txt_r);

/* The relaxed canonical forms (RFC 6376 3.4.2, 3.4.4), exported for tests:
 * one header field (name and value, folded lines and all, without its final
 * CRLF) and a whole body (appended to out). */
void dkim_canon_header(const char *field, size_t len, struct buf *out);
void dkim_canon_body(const uint8_t *body, size_t len, struct buf *out);

#endif
