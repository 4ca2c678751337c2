#ifndef ROOST_TLS_H
#define ROOST_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "roost/log.h"

/*
 * The server's TLS context (OpenSSL 3). Built from [tls] in the config:
 * certificate chain and key (PEM), minimum protocol, TLS 1.2 cipher list and
 * TLS 1.3 suites. When neither the certificate nor the key file exists, a
 * self-signed certificate (EC P-256, CN = hostname, SAN hostname, localhost,
 * 127.0.0.1, ::1) is generated into those paths first (key mode 0600).
 *
 * Thread safety: tls_ssl_new() and tls_reload() may run concurrently from any
 * threads; a reload swaps the context for new connections while connections
 * already running keep the context they were created with.
 */

struct roost_config;
struct tls;

/* ROOST_ECONFIG (logged with the path and OpenSSL's reason) when the
 * certificate or key cannot be loaded or generated. */
int tls_create(const struct roost_config *cfg, struct tls **tls_r);
/* Build a new context from cfg's [tls] (certificate, key, protocols,
 * ciphers: a reload may name other files); on failure the old context
 * stays (logged). cfg must outlive tls or the next reload. One reload at a
 * time (the server's reload lock). */
int tls_reload(struct tls *tls, const struct roost_config *cfg);
void tls_free(struct tls **tls);

/* A server-side SSL object on fd, in accept state. NULL on failure (logged). */
SSL *tls_ssl_new(struct tls *tls, int fd);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for a finished handshake into buf. */
void tls_describe(SSL *ssl, char *buf, size_t size);

/* Log OpenSSL's error queue (and clear it), one event=tls_error line per
 * error: reason (a short word for what failed), then fields (key=value
 * text, "" for none), then ssl=. A connection's handshake errors are logged
 * by conn_tls.c through conn_log() instead, at info level, so a scanner
 * cannot flood the warnings. */
void tls_log_errors(enum log_level level, const char *fields, const char *reason);

#endif
