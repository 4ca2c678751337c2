/*
 * The outgoing HTTP/1.1 client: one request per connection, blocking the
 * calling thread with poll() and one deadline per phase, so the worst case
 * of any request is timeout_ms whatever the peer does (a silent server, a
 * byte a minute, an endless body). See http_client.h for the contract.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "roost/buf.h"
#include "roost/config.h"
#include "roost/dns.h"
#include "roost/error.h"
#include "roost/http_client.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#define MAX_ADDRS 8
#define MAX_LINE 1024 /* a chunk-size or trailer line */

struct conn {
	int fd;
	SSL *ssl;
	int64_t deadline; /* of the current phase, CLOCK_MONOTONIC ms */
	const char *err;
	/* read buffer: [pos, len) not consumed yet */
	uint8_t *rb;
	size_t pos, len, cap;
	bool eof;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
fail(struct conn *c, int rc, const char *why)
{
	if (c->err == NULL)
		c->err = why;
	return rc;
}

/* Wait until fd is ready for events or the deadline passes. */
static int
wait_fd(struct conn *c, short events)
{
	for (;;) {
		int64_t left = c->deadline - now_ms();
		struct pollfd p = {.fd = c->fd, .events = events};
		int n;

		if (left <= 0)
			return fail(c, ROOST_ETIMEOUT, "timeout");
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return fail(c, ROOST_ETEMP, "poll failed");
	}
}

/* ---- URL and addresses ---- */

int
httpc_parse_url(const char *url, bool *https_r, char *host, size_t host_size, unsigned *port_r,
                const char **path_r)
{
	const char *p, *h, *he, *ps;
	size_t hl;
	unsigned long port;

	if (url == NULL || strlen(url) > HTTPC_MAX_URL)
		return ROOST_EINVAL;
	for (p = url; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '#')
			return ROOST_EINVAL;
	if (strncasecmp(url, "https://", 8) == 0) {
		*https_r = true;
		h = url + 8;
		port = 443;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		*https_r = false;
		h = url + 7;
		port = 80;
	} else {
		return ROOST_EINVAL;
	}
	ps = h + strcspn(h, "/?");
	if (memchr(h, '@', (size_t)(ps - h)) != NULL)
		return ROOST_EINVAL;
	if (*h == '[') {
		he = memchr(h, ']', (size_t)(ps - h));
		if (he == NULL)
			return ROOST_EINVAL;
		h++;
		p = he + 1;
	} else {
		he = memchr(h, ':', (size_t)(ps - h));
		if (he == NULL)
			he = ps;
		p = he;
	}
	hl = (size_t)(he - h);
	if (hl == 0 || hl > 255 || hl >= host_size)
		return ROOST_EINVAL;
	if (p < ps) {
		char *end;

		if (*p != ':' || !isdigit((unsigned char)p[1]))
			return ROOST_EINVAL;
		errno = 0;
		port = strtoul(p + 1, &end, 10);
		if (end != ps || port == 0 || port > 65535 || errno != 0)
			return ROOST_EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	for (size_t i = 0; i < hl; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (!isalnum(ch) && ch != '-' && ch != '.' && ch != ':' && ch != '_')
			return ROOST_EINVAL;
	}
	*port_r = (unsigned)port;
	*path_r = *ps == '\0' ? "/" : ps;
	return 0;
}

static bool
addr_loopback(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET) {
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;

		return b[0] == 127;
	}
	if (a->ss_family == AF_INET6) {
		const struct in6_addr *v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(v6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127;
	}
	return false;
}

/* Loopback, private (RFC 1918, 6598, 4193), link-local, unspecified,
 * multicast and reserved ranges: not reachable on the public Internet. */
static bool
addr_public(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET6) {
		const struct in6_addr *v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
		const uint8_t *b = v6->s6_addr;

		if (IN6_IS_ADDR_V4MAPPED(v6)) {
			struct sockaddr_storage v4 = {0};
			struct sockaddr_in *s4 = (struct sockaddr_in *)&v4;

			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, b + 12, 4);
			return addr_public(&v4);
		}
		if (IN6_IS_ADDR_UNSPECIFIED(v6) || IN6_IS_ADDR_LOOPBACK(v6) ||
		    IN6_IS_ADDR_LINKLOCAL(v6) || IN6_IS_ADDR_SITELOCAL(v6) ||
		    IN6_IS_ADDR_MULTICAST(v6) || (b[0] & 0xfe) == 0xfc ||
		    IN6_IS_ADDR_V4COMPAT(v6) ||
		    (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d &&
		     b[3] == 0xb8)) /* 2001:db8::/32 */
			return false;
		return true;
	}
	if (a->ss_family == AF_INET) {
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;

		if (b[0] == 0 || b[0] == 10 || b[0] == 127 || b[0] >= 224 ||
		    (b[0] == 100 && (b[1] & 0xc0) == 64) || (b[0] == 169 && b[1] == 254) ||
		    (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
		    (b[0] == 192 && b[1] == 0 && b[2] == 2) || (b[0] == 198 && (b[1] & 0xfe) == 18))
			return false;
		return true;
	}
	return false;
}

struct resolve {
	bool done;
	int status;
	struct sockaddr_storage addrs[MAX_ADDRS];
	size_t n;
};

static void
resolved(void *arg, int status, const struct sockaddr_storage *addrs, size_t n)
{
	struct resolve *r = arg;

	r->done = true;
	r->status = status;
	for (size_t i = 0; status == 0 && i < n && r->n < MAX_ADDRS; i++)
		r->addrs[r->n++] = addrs[i];
	if (status == 0 && r->n == 0)
		r->status = ROOST_ENOTFOUND;
}

static int
resolve(struct conn *c, const struct roost_config *cfg, const char *host, unsigned port,
        struct resolve *r)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&r->addrs[0];
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->addrs[0];
	struct roost_config *own = NULL;
	struct dns *dns = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		r->n = 1;
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		r->n = 1;
	} else {
		if (cfg == NULL)
			cfg = own = config_defaults();
		rc = dns_create(cfg, &dns);
		config_free(&own);
		if (rc != 0)
			return fail(c, ROOST_ETEMP, "resolver failed");
		dns_lookup_addr(dns, host, resolved, r);
		while (!r->done) {
			struct pollfd pfd[16];
			size_t n = dns_pollfds(dns, pfd, 16);
			int64_t left = c->deadline - now_ms();
			int t;

			if (left <= 0)
				break;
			t = dns_timeout_ms(dns, (int)(left > 1000 ? 1000 : left));
			if (poll(pfd, n, t) < 0 && errno != EINTR)
				break;
			dns_process(dns, pfd, n);
		}
		dns_free(&dns);
		if (!r->done)
			return fail(c, ROOST_ETIMEOUT, "resolver timeout");
		if (r->status != 0)
			return fail(c, r->status == ROOST_ENOTFOUND ? ROOST_ENOTFOUND : ROOST_ETEMP,
			            "host not found");
	}
	for (size_t i = 0; i < r->n; i++) {
		if (r->addrs[i].ss_family == AF_INET)
			((struct sockaddr_in *)&r->addrs[i])->sin_port = htons((uint16_t)port);
		else
			((struct sockaddr_in6 *)&r->addrs[i])->sin6_port = htons((uint16_t)port);
	}
	return 0;
}

static int
connect_one(struct conn *c, const struct sockaddr_storage *a)
{
	socklen_t len =
	    a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int err = 0;
	socklen_t el = sizeof(err);
	int rc;

	c->fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return fail(c, ROOST_ETEMP, "socket failed");
	if (connect(c->fd, (const struct sockaddr *)a, len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return fail(c, ROOST_ETEMP, "connect failed");
	if ((rc = wait_fd(c, POLLOUT)) != 0)
		return rc;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
		return fail(c, ROOST_ETEMP, "connect failed");
	return 0;
}

/* ---- TLS ---- */

static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static SSL_CTX *default_ctx;

static SSL_CTX *
ctx_new(const char *ca_file)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_default_verify_paths(ctx);
	if (ca_file != NULL && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		log_warn("event=http_client_ca file=%s error=\"cannot load\"", ca_file);
		ERR_clear_error();
	}
	/* A server that ends a read-to-close body without close_notify is common;
	 * bodies with a length or chunks are checked for completeness anyway. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

static void
default_ctx_init(void)
{
	default_ctx = ctx_new(NULL);
}

static int
tls_start(struct conn *c, const char *host, const struct httpc_opts *o)
{
	SSL_CTX *ctx;
	struct in6_addr ip;
	bool is_ip = inet_pton(AF_INET, host, &ip) == 1 || inet_pton(AF_INET6, host, &ip) == 1;

	if (o->ca_file != NULL) {
		ctx = ctx_new(o->ca_file);
	} else {
		pthread_once(&ctx_once, default_ctx_init);
		ctx = default_ctx;
		if (ctx != NULL)
			SSL_CTX_up_ref(ctx);
	}
	if (ctx == NULL)
		return fail(c, ROOST_ETEMP, "TLS context failed");
	c->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	if (c->ssl == NULL)
		return fail(c, ROOST_ETEMP, "TLS failed");
	SSL_set_fd(c->ssl, c->fd);
	if (o->no_verify) {
		SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
	} else if (is_ip) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host);
	} else {
		SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(c->ssl, host);
	}
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, host);
	for (;;) {
		int r = SSL_connect(c->ssl), e, rc;

		if (r == 1)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if ((rc = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) != 0)
				return rc;
			continue;
		}
		if (SSL_get_verify_result(c->ssl) != X509_V_OK) {
			c->err = X509_verify_cert_error_string(SSL_get_verify_result(c->ssl));
			ERR_clear_error();
			return ROOST_EAUTH;
		}
		ERR_clear_error();
		return fail(c, ROOST_ETEMP, "TLS handshake failed");
	}
}

/* ---- I/O ---- */

static int
write_all(struct conn *c, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w;
		int rc;

		if (c->ssl != NULL) {
			size_t done = 0;
			int r = SSL_write_ex(c->ssl, p, n, &done), e;

			if (r == 1) {
				p += done;
				n -= done;
				continue;
			}
			e = SSL_get_error(c->ssl, r);
			ERR_clear_error();
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return fail(c, ROOST_ETEMP, "write failed");
			if ((rc = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) != 0)
				return rc;
			continue;
		}
		w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if ((rc = wait_fd(c, POLLOUT)) != 0)
				return rc;
		} else {
			return fail(c, ROOST_ETEMP, "write failed");
		}
	}
	return 0;
}

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

static int
read_response(struct conn *c, const char *method, const struct httpc_opts *o,
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

/* ---- the request ---- */

static bool
valid_header_line(const char *h)
{
	const char *colon = strchr(h, ':');

	if (colon == NULL || colon == h)
		return false;
	for (const char *p = h; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n' || *p == '\0')
			return false;
	return true;
}

int
httpc_request(const char *method, const char *url, const char *const *headers,
              const char *content_type, const void *body, size_t len, const struct httpc_opts *opts,
              struct httpc_response *resp_r, const char **err_r)
{
	struct httpc_opts o = {0};
	struct conn c = {.fd = -1};
	struct resolve r;
	struct buf req = BUF_INIT(64 * 1024 + len);
	char host[256];
	const char *path;
	unsigned port;
	bool https;
	int64_t start = now_ms(), end;
	int rc;

	memset(resp_r, 0, sizeof(*resp_r));
	if (opts != NULL)
		o = *opts;
	if (o.connect_timeout_ms == 0)
		o.connect_timeout_ms = 10000;
	if (o.timeout_ms == 0)
		o.timeout_ms = 30000;
	if (o.connect_timeout_ms > o.timeout_ms)
		o.connect_timeout_ms = o.timeout_ms;
	if (o.max_body == 0)
		o.max_body = 1024 * 1024;
	if (o.max_headers == 0)
		o.max_headers = 100;
	end = start + o.timeout_ms;

	if (method == NULL || method[0] == '\0' || strpbrk(method, " \r\n") != NULL ||
	    httpc_parse_url(url, &https, host, sizeof(host), &port, &path) != 0 ||
	    (content_type != NULL && strpbrk(content_type, "\r\n") != NULL)) {
		rc = fail(&c, ROOST_EINVAL, "bad request");
		goto out;
	}
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
		if (!valid_header_line(headers[i])) {
			rc = fail(&c, ROOST_EINVAL, "bad header line");
			goto out;
		}
	}

	c.deadline = start + o.connect_timeout_ms;
	if ((rc = resolve(&c, o.cfg, host, port, &r)) != 0)
		goto out;
	for (size_t i = 0; i < r.n; i++) {
		if (o.public_only && !addr_public(&r.addrs[i])) {
			rc = fail(&c, ROOST_EPERM, "address not public");
			goto out;
		}
		if (!https && !o.allow_http && !addr_loopback(&r.addrs[i])) {
			rc = fail(&c, ROOST_EPERM, "plain http to a remote host");
			goto out;
		}
	}
	rc = ROOST_ETEMP;
	for (size_t i = 0; i < r.n; i++) {
		if (c.fd >= 0)
			close(c.fd);
		c.fd = -1;
		c.err = NULL;
		if ((rc = connect_one(&c, &r.addrs[i])) == 0 || rc == ROOST_ETIMEOUT)
			break;
	}
	if (rc != 0)
		goto out;
	if (https && (rc = tls_start(&c, host, &o)) != 0)
		goto out;

	c.deadline = end;
	buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s%s%s", method, path,
	           strchr(host, ':') != NULL ? "[" : "", host,
	           strchr(host, ':') != NULL ? "]" : "");
	if (port != (https ? 443u : 80u))
		buf_printf(&req, ":%u", port);
	buf_printf(&req, "\r\nUser-Agent: Roost\r\nConnection: close\r\n"
	                 "Accept-Encoding: identity\r\n");
	if (content_type != NULL)
		buf_printf(&req, "Content-Type: %s\r\n", content_type);
	if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		buf_printf(&req, "Content-Length: %zu\r\n", len);
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		buf_printf(&req, "%s\r\n", headers[i]);
	buf_append(&req, "\r\n", 2);
	if ((rc = write_all(&c, req.data, req.len)) != 0)
		goto out;
	if (len > 0 && (rc = write_all(&c, body, len)) != 0)
		goto out;
	rc = read_response(&c, method, &o, resp_r);

out:
	if (rc != 0)
		httpc_response_free(resp_r);
	if (err_r != NULL)
		*err_r = rc == 0 ? NULL : c.err != NULL ? c.err : roost_strerror(rc);
	if (c.ssl != NULL) {
		if (rc == 0)
			SSL_shutdown(c.ssl); /* one try, never waited for */
		SSL_free(c.ssl);
	}
	if (c.fd >= 0)
		close(c.fd);
	free(c.rb);
	buf_free(&req);
	ERR_clear_error();
	return rc;
}

int
httpc_get(const char *url, const struct httpc_opts *opts, struct httpc_response *resp_r,
          const char **err_r)
{
	return httpc_request("GET", url, NULL, NULL, NULL, 0, opts, resp_r, err_r);
}

int
httpc_post(const char *url, const char *content_type, const void *body, size_t len,
           const struct httpc_opts *opts, struct httpc_response *resp_r, const char **err_r)
{
	return httpc_request("POST", url, NULL, content_type, body, len, opts, resp_r, err_r);
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
