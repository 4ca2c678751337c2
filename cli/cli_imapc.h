#ifndef ROOST_CLI_IMAPC_H
#define ROOST_CLI_IMAPC_H

/*
 * A blocking IMAP client for roost import (cli_imapc.c). One connection is
 * used by one thread; each call blocks up to the socket's timeout. Errors:
 * ROOST_ECLOSED (the server closed), ROOST_EIO (I/O or TLS), ROOST_EPROTO
 * (not IMAP, or a NO/BAD completion, printed on stderr), ROOST_ETOOBIG
 * (a literal over IMAPC_MAX_RESPONSE), ROOST_ENOTFOUND (no such host).
 */

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

#define IMAPC_MAX_LINE (64u << 10)
/* A response holds at most one message plus its line. */
#define IMAPC_MAX_RESPONSE ((size_t)1 << 30)

struct imapc {
	int fd; /* -1 before imapc_connect() */
	SSL_CTX *ctx;
	SSL *ssl;
	const char *host; /* borrowed: the name TLS checks the certificate for */
	bool insecure;    /* no certificate check (--insecure) */
	unsigned tag;
	uint8_t in[16384];
	size_t in_pos, in_len;
	/* The current response: lines and literals; give it a maximum of
	 * IMAPC_MAX_RESPONSE + IMAPC_MAX_LINE. */
	struct buf resp;
	bool starttls, utf8; /* from the last CAPABILITY */
};

/* Connect c->fd to host:port (timeouts set). */
int imapc_connect(struct imapc *c, const char *host, const char *port);
/* TLS on the connection, checking c->host's certificate unless c->insecure. */
int imapc_tls_start(struct imapc *c);
/* Send CAPABILITY and note STARTTLS and UTF8=ACCEPT. */
int imapc_capability(struct imapc *c);
/* Close the connection (TLS included) and free c->resp; c may be unconnected. */
void imapc_close(struct imapc *c);

/* One whole response (a line and the literals it announces) into c->resp. */
int imapc_read_response(struct imapc *c);
/* Send "<tag> <fmt...>\r\n" with a new tag, written into tag[0..taglen). */
int imapc_send(struct imapc *c, char *tag, size_t taglen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Called with each untagged response in c->resp; nonzero stops the wait. */
typedef int imapc_untagged_fn(struct imapc *c, void *arg);
/* Read until tag completes, handing each untagged response to fn (may be NULL). */
int imapc_wait(struct imapc *c, const char *tag, imapc_untagged_fn *fn, void *arg);

/* An IMAP quoted string for s appended to b; ROOST_EINVAL for CR or LF. */
int imapc_quote(struct buf *b, const char *s);

/* ---- tokens of a response ---- */

enum imapc_tok {
	IMAPC_END,
	IMAPC_ATOM,
	IMAPC_STRING,
	IMAPC_LPAREN,
	IMAPC_RPAREN,
	IMAPC_NIL,
	IMAPC_BAD
};

/* A lexer over [p, end), usually c->resp. */
struct imapc_lex {
	const char *p, *end;
};

/* Next token; strings (quoted or literal) unquoted into *s (borrowed from
 * the response or from sbuf), atoms ("BODY[]" and "\Seen" included) as
 * they stand. */
enum imapc_tok imapc_lex_next(struct imapc_lex *l, const char **s, size_t *n, struct buf *sbuf);
/* Whether s[0..n) is the word w, case-insensitively. */
bool imapc_is_word(const char *s, size_t n, const char *w);

#endif
