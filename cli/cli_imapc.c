/*
 * A small blocking IMAP client (RFC 3501/9051 client side) for roost
 * import: a connection with its own socket, optional TLS, one whole
 * response at a time (a line and the literals it announces) and a lexer
 * over it. Every read and write has a timeout; this is a command, not the
 * server, and nothing else waits for it.
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "roost/error.h"

#include "cli_imapc.h"

#define IMAPC_TIMEOUT_SECS 120

static int
io_fill(struct imapc *c)
{
	ssize_t n;

	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, c->in, sizeof(c->in));

		n = r > 0 ? r : -1;
	} else {
		do
			n = read(c->fd, c->in, sizeof(c->in));
		while (n < 0 && errno == EINTR);
	}
	if (n <= 0)
		return n == 0 ? ROOST_ECLOSED : ROOST_EIO;
	c->in_pos = 0;
	c->in_len = (size_t)n;
	return 0;
}

static int
io_write(struct imapc *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, p, (int)(len > 65536 ? 65536 : len));

			n = r > 0 ? r : -1;
		} else {
			n = write(c->fd, p, len);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return ROOST_EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Append one line (with its CRLF) to c->resp. */
static int
read_line(struct imapc *c)
{
	size_t start = c->resp.len;
	int rc;

	for (;;) {
		uint8_t *nl;
		size_t n;

		if (c->in_pos == c->in_len && (rc = io_fill(c)) != 0)
			return rc;
		nl = memchr(c->in + c->in_pos, '\n', c->in_len - c->in_pos);
		n = nl == NULL ? c->in_len - c->in_pos : (size_t)(nl - (c->in + c->in_pos)) + 1;
		if (c->resp.len - start + n > IMAPC_MAX_LINE)
			return ROOST_EPROTO;
		if ((rc = buf_append(&c->resp, c->in + c->in_pos, n)) != 0)
			return rc;
		c->in_pos += n;
		if (nl != NULL)
			return 0;
	}
}

static int
read_bytes(struct imapc *c, size_t len)
{
	int rc;

	if ((rc = buf_reserve(&c->resp, len)) != 0)
		return rc;
	while (len > 0) {
		size_t n;

		if (c->in_pos == c->in_len && (rc = io_fill(c)) != 0)
			return rc;
		n = c->in_len - c->in_pos < len ? c->in_len - c->in_pos : len;
		buf_append(&c->resp, c->in + c->in_pos, n);
		c->in_pos += n;
		len -= n;
	}
	return 0;
}

/* One whole response (a line and the literals it announces) into c->resp. */
int
imapc_read_response(struct imapc *c)
{
	int rc;

	buf_reset(&c->resp);
	for (;;) {
		size_t end, open;
		unsigned long long n = 0;

		if ((rc = read_line(c)) != 0)
			return rc;
		end = c->resp.len;
		if (end < 2 || c->resp.data[end - 2] != '\r')
			return ROOST_EPROTO;
		end -= 2;
		if (end == 0 || c->resp.data[end - 1] != '}')
			return 0;
		open = end - 1;
		while (open > 0 && c->resp.data[open - 1] != '{')
			open--;
		if (open == 0)
			return 0;
		for (size_t i = open; i < end - 1; i++) {
			if (c->resp.data[i] < '0' || c->resp.data[i] > '9')
				return ROOST_EPROTO;
			n = n * 10 + (c->resp.data[i] - '0');
			if (n > IMAPC_MAX_RESPONSE)
				return ROOST_ETOOBIG;
		}
		if ((rc = read_bytes(c, (size_t)n)) != 0)
			return rc;
	}
}

/* Next token; strings (quoted or literal) unquoted into *s (borrowed from
 * the response or from sbuf). */
enum imapc_tok
imapc_lex_next(struct imapc_lex *l, const char **s, size_t *n, struct buf *sbuf)
{
	while (l->p < l->end && *l->p == ' ')
		l->p++;
	if (l->p >= l->end || *l->p == '\r')
		return IMAPC_END;
	if (*l->p == '(') {
		l->p++;
		return IMAPC_LPAREN;
	}
	if (*l->p == ')') {
		l->p++;
		return IMAPC_RPAREN;
	}
	if (*l->p == '"') {
		buf_reset(sbuf);
		for (l->p++; l->p < l->end && *l->p != '"'; l->p++) {
			if (*l->p == '\\' && l->p + 1 < l->end)
				l->p++;
			if (*l->p == '\r' || *l->p == '\n')
				return IMAPC_BAD;
			buf_append_byte(sbuf, (uint8_t)*l->p);
		}
		if (l->p >= l->end)
			return IMAPC_BAD;
		l->p++;
		*s = sbuf->data != NULL ? (const char *)sbuf->data : "";
		*n = sbuf->len;
		return IMAPC_STRING;
	}
	if (*l->p == '{') {
		char *close;
		unsigned long long len = strtoull(l->p + 1, &close, 10);

		if (close >= l->end || *close != '}' || (size_t)(l->end - close) < 3 ||
		    len > (unsigned long long)(l->end - close - 3))
			return IMAPC_BAD;
		*s = close + 3;
		*n = (size_t)len;
		l->p = close + 3 + len;
		return IMAPC_STRING;
	}
	*s = l->p;
	/* an atom; "BODY[]" and "\Seen" included */
	while (l->p < l->end && *l->p != ' ' && *l->p != '(' && *l->p != ')' && *l->p != '\r') {
		if (*l->p == '[') {
			while (l->p < l->end && *l->p != ']')
				l->p++;
		}
		if (l->p < l->end)
			l->p++;
	}
	*n = (size_t)(l->p - *s);
	if (*n == 3 && strncasecmp(*s, "NIL", 3) == 0)
		return IMAPC_NIL;
	return IMAPC_ATOM;
}

bool
imapc_is_word(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

int
imapc_send(struct imapc *c, char *tag, size_t taglen, const char *fmt, ...)
{
	struct buf b = BUF_INIT(0);
	va_list ap;
	int rc;

	snprintf(tag, taglen, "r%u", ++c->tag);
	buf_printf(&b, "%s ", tag);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_append_str(&b, "\r\n");
	rc = io_write(c, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* Is c->resp the tagged completion of tag? Then *ok_r says whether OK. */
static bool
tagged(struct imapc *c, const char *tag, bool *ok_r)
{
	size_t tl = strlen(tag);

	if (c->resp.len <= tl || memcmp(c->resp.data, tag, tl) != 0 || c->resp.data[tl] != ' ')
		return false;
	*ok_r = c->resp.len >= tl + 3 && strncasecmp((char *)c->resp.data + tl + 1, "OK", 2) == 0;
	return true;
}

/* Read until tag completes, handing each untagged response to fn. */
int
imapc_wait(struct imapc *c, const char *tag, imapc_untagged_fn *fn, void *arg)
{
	bool ok;
	int rc;

	for (;;) {
		if ((rc = imapc_read_response(c)) != 0)
			return rc;
		if (tagged(c, tag, &ok)) {
			if (!ok) {
				fprintf(stderr, "roost import: server: %.*s", (int)c->resp.len,
				        (const char *)c->resp.data);
				return ROOST_EPROTO;
			}
			return 0;
		}
		if (c->resp.len > 2 && c->resp.data[0] == '*' && fn != NULL &&
		    (rc = fn(c, arg)) != 0)
			return rc;
	}
}

static int
on_capability(struct imapc *c, void *arg)
{
	const char *s = (const char *)c->resp.data;
	size_t n = c->resp.len;

	(void)arg;
	if (n > 13 && strncasecmp(s, "* CAPABILITY ", 13) == 0) {
		c->starttls = memmem(s, n, " STARTTLS", 9) != NULL;
		c->utf8 = memmem(s, n, " UTF8=ACCEPT", 12) != NULL;
	}
	return 0;
}

int
imapc_capability(struct imapc *c)
{
	char tag[16];
	int rc;

	if ((rc = imapc_send(c, tag, sizeof(tag), "CAPABILITY")) != 0)
		return rc;
	return imapc_wait(c, tag, on_capability, NULL);
}

int
imapc_tls_start(struct imapc *c)
{
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return ROOST_EIO;
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (!c->insecure) {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_default_verify_paths(c->ctx);
	}
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, c->host);
	if (!c->insecure)
		SSL_set1_host(c->ssl, c->host);
	if (SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();

		fprintf(stderr, "roost import: TLS with %s failed: %s%s\n", c->host,
		        e != 0 ? ERR_reason_error_string(e) : "handshake",
		        c->insecure ? "" : " (--insecure skips the certificate check)");
		return ROOST_EIO;
	}
	return 0;
}

int
imapc_connect(struct imapc *c, const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	struct timeval tv = {.tv_sec = IMAPC_TIMEOUT_SECS};
	int err = getaddrinfo(host, port, &hints, &res);

	if (err != 0) {
		fprintf(stderr, "roost import: %s: %s\n", host, gai_strerror(err));
		return ROOST_ENOTFOUND;
	}
	c->fd = -1;
	for (ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0)
			continue;
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(c->fd);
			c->fd = -1;
		}
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		fprintf(stderr, "roost import: cannot connect to %s port %s: %s\n", host, port,
		        strerror(errno));
		return ROOST_EIO;
	}
	return 0;
}

/* An IMAP quoted string for s (no CR, LF or NUL). */
int
imapc_quote(struct buf *b, const char *s)
{
	buf_append_byte(b, '"');
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			return ROOST_EINVAL;
		if (*s == '"' || *s == '\\')
			buf_append_byte(b, '\\');
		buf_append_byte(b, (uint8_t)*s);
	}
	return buf_append_byte(b, '"');
}

void
imapc_close(struct imapc *c)
{
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->resp);
}
