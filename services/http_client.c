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

#include "http_client_impl.h"

#define MAX_ADDRS 8

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
			int64_t left = c->deadline - (int64_t)clock_ms();
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
	int64_t start = (int64_t)clock_ms(), end;
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
	rc = httpc_read_response(&c, method, &o, resp_r);

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
