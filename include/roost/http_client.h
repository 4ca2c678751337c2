#ifndef ROOST_HTTP_CLIENT_H
#define ROOST_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * An outgoing HTTP/1.1 client (services/http_client.c): one request, one
 * response, one connection ("Connection: close"), for JMAP push (POST to a
 * client's URL) and MTA-STS policy fetch (GET, RFC 8461).
 *
 * It BLOCKS the calling thread until the response has arrived or the
 * deadline has passed: call it from a service thread of its own, never
 * from an event loop or a frontend worker. Every wait is bounded: name
 * resolution (c-ares, [dns] servers, within the connect timeout), connect
 * and TLS handshake (connect_timeout_ms), the whole exchange
 * (timeout_ms), the response head (HTTPC_MAX_HEAD bytes, max_headers
 * fields) and the body (max_body bytes, whether Content-Length, chunked
 * or read to close).
 *
 * https: TLS 1.2 or later, the certificate verified against the system's
 * trust store (plus ca_file when set) and the URL's host name (or IP
 * address). http: only when the host resolves to loopback addresses only,
 * or allow_http is set. Redirects are never followed: a 3xx is returned as
 * it is (RFC 8461 3.3 forbids following them; a push URL must not either).
 * Bodies are returned as they arrive: no Content-Encoding is asked for.
 *
 * Thread safety: any number of threads may run requests at once.
 */

#define HTTPC_MAX_HEAD (32 * 1024) /* status line plus header fields */
#define HTTPC_MAX_URL 2048

struct roost_config;

struct httpc_opts {
	/* [dns] servers and timeout; NULL: the built-in defaults */
	const struct roost_config *cfg;
	unsigned connect_timeout_ms; /* resolve + connect + TLS; 0: 10000 */
	unsigned timeout_ms;         /* the whole request; 0: 30000 */
	size_t max_body;             /* bytes; 0: 1 MiB */
	unsigned max_headers;        /* header fields; 0: 100 */
	bool allow_http;             /* plain http to any address (tests) */
	const char *ca_file;         /* extra trusted certificates (PEM); NULL: none */
	bool no_verify;              /* skip certificate checks (tests only) */
	/* refuse loopback, private, link-local and unspecified addresses
	 * (a URL given by a user must not reach the server's own network) */
	bool public_only;
};

struct httpc_header {
	char *name; /* as received, NUL-terminated */
	char *value;
};

struct httpc_response {
	int status; /* 100..599 */
	struct httpc_header *headers;
	size_t n_headers;
	uint8_t *body; /* NUL-terminated for convenience (not counted) */
	size_t body_len;
};

/*
 * Send method (GET, POST, PUT, DELETE, HEAD) to url with extra header lines
 * ("Name: value", no CR LF; NULL-terminated list or NULL) and a body
 * (content_type may be NULL; body NULL with len 0 sends no body on GET).
 *
 * Returns 0 when a complete response arrived (any status: the caller
 * judges it) and fills *resp_r, to be freed with httpc_response_free().
 * Errors (*resp_r is then zeroed and holds nothing):
 *   ROOST_EINVAL    the URL or an argument is malformed
 *   ROOST_EPERM     plain http to a non-loopback host without allow_http, or
 *                   public_only and the host's addresses are not public
 *   ROOST_ENOTFOUND the host name does not exist
 *   ROOST_ETEMP     resolution or connection failed (refused, reset)
 *   ROOST_ETIMEOUT  a deadline passed
 *   ROOST_EAUTH     the certificate failed verification
 *   ROOST_ETOOBIG   the head or the body went over its bound
 *   ROOST_EPROTO    the response is not valid HTTP/1.x
 * err_r (may be NULL) receives a short static reason for the log.
 */
int httpc_request(const char *method, const char *url, const char *const *headers,
                  const char *content_type, const void *body, size_t len,
                  const struct httpc_opts *opts, struct httpc_response *resp_r, const char **err_r);

/* GET url: httpc_request("GET", url, NULL, NULL, NULL, 0, ...). */
int httpc_get(const char *url, const struct httpc_opts *opts, struct httpc_response *resp_r,
              const char **err_r);
/* POST body of content_type to url. */
int httpc_post(const char *url, const char *content_type, const void *body, size_t len,
               const struct httpc_opts *opts, struct httpc_response *resp_r, const char **err_r);

/* The first header field named name (case-insensitive), or NULL; valid
 * while resp is. */
const char *httpc_header(const struct httpc_response *resp, const char *name);

/* Release what a response holds and zero it; NULL and a zeroed response
 * are fine. */
void httpc_response_free(struct httpc_response *resp);

/* Split an http(s) URL: scheme (true for https), host (brackets of an
 * IPv6 literal removed), port (default 80/443), path with query ("/"
 * when empty). ROOST_EINVAL for anything else: userinfo, a fragment,
 * control characters or spaces, a host over 255 bytes. Exposed for tests
 * and for callers that check a URL before storing it. */
int httpc_parse_url(const char *url, bool *https_r, char *host, size_t host_size, unsigned *port_r,
                    const char **path_r);

#endif
