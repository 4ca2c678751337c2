/*
 * The outgoing HTTP client's response side: buffered reads under the phase
 * deadline, the status line and header fields, Content-Length, chunked and
 * read-to-EOF bodies, each bounded by httpc_opts (see http_client.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/http_client.h"
#include "roost/xalloc.h"

#include "http_client_impl.h"

/* Read more bytes into the buffer, keeping at most limit unconsumed bytes.
 * 0 with c->eof set at the end of the stream. */
static int
fill(struct conn *c, size_t limit)
{
	if (c->eof)
		return 0;
	if (c->pos > 0 && c->pos == c->len)
		c->pos = c->len = 0;
	if (c->len - c->pos >= limit)
		return fail(c, ROOST_ETOOBIG, "response too large");
	if (c->cap - c->len < 4096) {
		if (c->pos > 0) {
			memmove(c->rb, c->rb + c->pos, c->len - c->pos);
			c->len -= c->pos;
			c->pos = 0;
		}
		if (c->cap - c->len < 4096) {
			c->cap = c->cap == 0 ? 16384 : c->cap * 2;
			c->rb = xrealloc(c->rb, c->cap);
		}
	}
	for (;;) {
		size_t want = c->cap - c->len, got = 0;
		int rc;

		if (want > limit - (c->len - c->pos))
			want = limit - (c->len - c->pos);
		if (c->ssl != NULL) {
			int r = SSL_read_ex(c->ssl, c->rb + c->len, want, &got), e;

			if (r == 1) {
				c->len += got;
				return 0;
			}
			e = SSL_get_error(c->ssl, r);
			ERR_clear_error();
			if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
				c->eof = true;
				return 0;
			}
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return fail(c, ROOST_ETEMP, "read failed");
			if ((rc = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) != 0)
				return rc;
			continue;
		}
		ssize_t r = recv(c->fd, c->rb + c->len, want, 0);

		if (r > 0) {
			c->len += (size_t)r;
			return 0;
		}
		if (r == 0) {
			c->eof = true;
			return 0;
		}
		if (errno != EAGAIN && errno != EINTR)
			return fail(c, ROOST_ETEMP, "read failed");
		if ((rc = wait_fd(c, POLLIN)) != 0)
			return rc;
	}
}

/* The next line (CR LF or LF ended) of at most max bytes, terminator
 * removed and the line NUL-terminated in place. */
static int
read_line(struct conn *c, size_t max, char **line_r)
{
	size_t scanned = 0;

	for (;;) {
		uint8_t *s = c->rb + c->pos, *nl;
		size_t have = c->len - c->pos;
		int rc;

		nl = have > scanned ? memchr(s + scanned, '\n', have - scanned) : NULL;
		if (nl != NULL) {
			size_t n = (size_t)(nl - s);

			if (n > 0 && s[n - 1] == '\r')
				n--;
			s[n] = '\0';
			c->pos += (size_t)(nl - s) + 1;
			*line_r = (char *)s;
			return 0;
		}
		scanned = have;
		if (have >= max)
			return fail(c, ROOST_ETOOBIG, "line too long");
		if ((rc = fill(c, max)) != 0)
			return rc;
		if (c->eof && c->len - c->pos == have)
			return fail(c, ROOST_EPROTO, "connection closed early");
	}
}

/* ---- the response ---- */

static int
parse_head(struct conn *c, const struct httpc_opts *o, struct httpc_response *resp,
           size_t *head_bytes)
{
	char *line;
	int rc;

	/* The status line: "HTTP/1.x NNN reason". */
	if ((rc = read_line(c, HTTPC_MAX_HEAD - *head_bytes, &line)) != 0)
		return rc;
	*head_bytes += strlen(line) + 2;
	if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
	    line[8] != ' ' || !isdigit((unsigned char)line[9]) ||
	    !isdigit((unsigned char)line[10]) || !isdigit((unsigned char)line[11]) ||
	    (line[12] != ' ' && line[12] != '\0'))
		return fail(c, ROOST_EPROTO, "bad status line");
	resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (resp->status < 100 || resp->status > 599)
		return fail(c, ROOST_EPROTO, "bad status code");
	for (;;) {
		char *colon, *v, *end;

		if ((rc = read_line(c, HTTPC_MAX_HEAD - *head_bytes, &line)) != 0)
			return rc;
		*head_bytes += strlen(line) + 2;
		if (line[0] == '\0')
			return 0;
		if (resp->n_headers >= o->max_headers)
			return fail(c, ROOST_ETOOBIG, "too many header fields");
		colon = strchr(line, ':');
		/* obs-fold and "Name :" are refused (RFC 9112 5.1, 5.2). */
		if (colon == NULL || colon == line || line[0] == ' ' || line[0] == '\t' ||
		    colon[-1] == ' ' || colon[-1] == '\t')
			return fail(c, ROOST_EPROTO, "bad header field");
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (end = v + strlen(v); end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		resp->headers =
		    xreallocarray(resp->headers, resp->n_headers + 1, sizeof(*resp->headers));
		resp->headers[resp->n_headers].name = xstrdup(line);
		resp->headers[resp->n_headers].value = xstrdup(v);
		resp->n_headers++;
	}
}

static void
body_append(struct httpc_response *resp, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	resp->body = xrealloc(resp->body, resp->body_len + n + 1);
	memcpy(resp->body + resp->body_len, p, n);
	resp->body_len += n;
	resp->body[resp->body_len] = '\0';
}

/* Take up to n bytes (0: all the stream has) into the body. */
static int
read_bytes(struct conn *c, struct httpc_response *resp, uint64_t n, bool to_eof, size_t max)
{
	while (to_eof || n > 0) {
		size_t have = c->len - c->pos, take;
		int rc;

		if (have == 0) {
			if ((rc = fill(c, 65536)) != 0)
				return rc;
			if (c->eof && c->len - c->pos == 0)
				return to_eof ? 0 : fail(c, ROOST_EPROTO, "body cut short");
			continue;
		}
		take = to_eof || have < n ? have : (size_t)n;
		if (resp->body_len + take > max)
			return fail(c, ROOST_ETOOBIG, "body too large");
		body_append(resp, c->rb + c->pos, take);
		c->pos += take;
		if (!to_eof)
			n -= take;
	}
	return 0;
}

static int
read_chunked(struct conn *c, struct httpc_response *resp, size_t max)
{
	char *line;
	int rc;

	for (;;) {
		uint64_t size = 0;
		const char *p;

		if ((rc = read_line(c, MAX_LINE, &line)) != 0)
			return rc;
		if (!isxdigit((unsigned char)line[0]))
			return fail(c, ROOST_EPROTO, "bad chunk size");
		for (p = line; isxdigit((unsigned char)*p); p++) {
			unsigned d = isdigit((unsigned char)*p)
			                 ? (unsigned)(*p - '0')
			                 : (unsigned)(tolower(*p) - 'a' + 10);

			if (size > (UINT64_MAX >> 4))
				return fail(c, ROOST_ETOOBIG, "body too large");
			size = size << 4 | d;
		}
		if (*p != '\0' && *p != ';' && *p != ' ' && *p != '\t')
			return fail(c, ROOST_EPROTO, "bad chunk size");
		if (size == 0)
			break;
		if (size > max || resp->body_len + size > max)
			return fail(c, ROOST_ETOOBIG, "body too large");
		if ((rc = read_bytes(c, resp, size, false, max)) != 0)
			return rc;
		if ((rc = read_line(c, MAX_LINE, &line)) != 0)
			return rc;
		if (line[0] != '\0')
			return fail(c, ROOST_EPROTO, "bad chunk end");
	}
	/* Trailer fields, ignored, bounded like the head. */
	for (int i = 0; i < 100; i++) {
		if ((rc = read_line(c, MAX_LINE, &line)) != 0)
			return rc;
		if (line[0] == '\0')
			return 0;
	}
	return fail(c, ROOST_ETOOBIG, "too many trailer fields");
}

int
httpc_read_response(struct conn *c, const char *method, const struct httpc_opts *o,
                    struct httpc_response *resp)
{
	const char *te, *cl;
	size_t head_bytes = 0;
	int rc;

	/* Interim 1xx responses are skipped; together they share the head's bound. */
	for (;;) {
		if ((rc = parse_head(c, o, resp, &head_bytes)) != 0)
			return rc;
		if (resp->status >= 200 || resp->status == 101)
			break;
		httpc_response_free(resp);
	}
	if (resp->status == 101)
		return fail(c, ROOST_EPROTO, "unexpected protocol switch");
	if (strcmp(method, "HEAD") == 0 || resp->status == 204 || resp->status == 304)
		return 0;
	te = httpc_header(resp, "Transfer-Encoding");
	cl = httpc_header(resp, "Content-Length");
	if (te != NULL) {
		/* Only "chunked" alone; with Content-Length too, chunked wins
		 * (RFC 9112 6.3) but we take that as a sign of a broken peer. */
		if (strcasecmp(te, "chunked") != 0 || cl != NULL)
			return fail(c, ROOST_EPROTO, "unsupported transfer coding");
		return read_chunked(c, resp, o->max_body);
	}
	if (cl != NULL) {
		uint64_t n = 0;

		for (size_t i = 0; i < resp->n_headers; i++)
			if (strcasecmp(resp->headers[i].name, "Content-Length") == 0 &&
			    strcmp(resp->headers[i].value, cl) != 0)
				return fail(c, ROOST_EPROTO, "conflicting Content-Length");
		if (*cl == '\0')
			return fail(c, ROOST_EPROTO, "bad Content-Length");
		for (const char *p = cl; *p != '\0'; p++) {
			if (!isdigit((unsigned char)*p))
				return fail(c, ROOST_EPROTO, "bad Content-Length");
			if (n > (UINT64_MAX - 9) / 10)
				return fail(c, ROOST_ETOOBIG, "body too large");
			n = n * 10 + (uint64_t)(*p - '0');
		}
		if (n > o->max_body)
			return fail(c, ROOST_ETOOBIG, "body too large");
		return read_bytes(c, resp, n, false, o->max_body);
	}
	return read_bytes(c, resp, 0, true, o->max_body);
}

const char *
httpc_header(const struct httpc_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->n_headers; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	return NULL;
}

void
httpc_response_free(struct httpc_response *resp)
{
	if (resp == NULL)
		return;
	for (size_t i = 0; i < resp->n_headers; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}
