#ifndef ROOST_HTTP_H
#define ROOST_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * HTTP/1.1 (RFC 9110, 9112) serving the http and https listeners: JMAP
 * (RFC 8620, 8621), the web page and its static files. The service itself
 * is http_proto_ops; the rest of this header is the pure, thread-safe
 * machinery it is built from (the request framer and head parser, dates,
 * tokens), exported so the unit tests can drive it directly.
 */

struct proto_ops;

/* The protocol handler registered for "http" and "https". */
extern const struct proto_ops http_proto_ops;

/* ---- the request head ---- */

#define HTTP_MAX_FIELDS_CAP 256 /* hard cap on header fields, whatever the config */

struct http_field {
	const char *name; /* NUL-terminated, into http_request.raw */
	const char *value;
};

struct http_request {
	char *raw;   /* owned: a copy of the head, split in place */
	char *split; /* owned: path and query when there is a query */
	const char *method;
	const char *target; /* as sent (origin-form after absolute-form was reduced) */
	const char *path;   /* target without the query, still %-encoded */
	const char *query;  /* after '?', or "" */
	int minor;          /* HTTP/1.<minor> */
	struct http_field *fields;
	size_t n_fields;
	uint64_t content_length;
	bool has_length;
	bool chunked;
	bool keep_alive;
	bool expect_continue;
};

/* Release what a parsed request holds; accepts a zeroed request. */
void http_request_clear(struct http_request *req);
/* The value of the first field named name (case-insensitive), or NULL. */
const char *http_request_field(const struct http_request *req, const char *name);

/* The bounds a framer enforces (each has a config key under [http]). */
struct http_limits {
	size_t max_head;           /* request line plus header fields, bytes (431) */
	size_t max_target;         /* request target, bytes (414) */
	unsigned max_fields;       /* header fields (431) */
	uint64_t max_body;         /* body of an API request (413) */
	uint64_t max_upload;       /* body of a blob upload (413) */
	const char *upload_prefix; /* path prefix for which max_upload applies */
};

/*
 * Parse head[0..len), which ends in the empty line (CRLF CRLF), into req
 * (cleared first; it copies what it keeps). 0, or the HTTP status to answer
 * with: 400 (malformed, bare CR or LF, obsolete line folding, a missing or
 * repeated Host in HTTP/1.1, Content-Length repeated or not a number, both
 * Content-Length and Transfer-Encoding), 414, 431, 501 (a transfer coding
 * other than chunked), 505 (HTTP other than 1.0 and 1.1).
 */
int http_parse_head(const uint8_t *head, size_t len, const struct http_limits *lim,
                    struct http_request *req);

/* ---- framing: a head, then its body in pieces ---- */

enum http_frame_state {
	HTTP_FS_HEAD,
	HTTP_FS_BODY,       /* Content-Length bytes still to come */
	HTTP_FS_CHUNK_SIZE, /* a chunk-size line */
	HTTP_FS_CHUNK_DATA,
	HTTP_FS_CHUNK_END, /* the CRLF after a chunk's data */
	HTTP_FS_TRAILER,   /* trailer fields up to the empty line */
};

struct http_framer {
	enum http_frame_state state;
	size_t scanned;     /* bytes already searched for the end of the head/line */
	uint64_t remaining; /* of the body or of the current chunk */
	uint64_t total;     /* body bytes framed so far */
	uint64_t max_body;  /* bound of the current request's body */
	size_t trailer;     /* trailer bytes so far */
	unsigned skipped;   /* empty lines before a request line */
};

enum http_unit_kind {
	HTTP_UNIT_AGAIN, /* need more input */
	HTTP_UNIT_HEAD,  /* a request head, parsed into req */
	HTTP_UNIT_DATA,  /* body bytes in[data_off..data_off + data_len) */
	HTTP_UNIT_SKIP,  /* framing bytes (chunk sizes, CRLFs, trailers): drop */
	HTTP_UNIT_ERROR, /* answer status and close */
};

struct http_unit {
	enum http_unit_kind kind;
	size_t used; /* input bytes this unit takes */
	size_t data_off, data_len;
	bool last;  /* the request is complete after this unit */
	int status; /* HTTP_UNIT_ERROR */
};

/* Bytes of body handed out per piece at most. */
#define HTTP_PIECE_MAX 65536

/*
 * Frame one unit at the start of in[0..len). Incremental: after
 * HTTP_UNIT_AGAIN it is called again with the same bytes and more, and
 * searches only the new ones. A head is parsed into req (see
 * http_parse_head), then the body follows as DATA pieces of at most
 * HTTP_PIECE_MAX bytes; the unit that completes a request has last set
 * (the head itself when there is no body). Bodies of chunked requests are
 * delivered de-chunked. Every bound is checked before bytes are kept.
 */
void http_frame(struct http_framer *f, const struct http_limits *lim, const uint8_t *in, size_t len,
                struct http_request *req, struct http_unit *u);

/* ---- small helpers ---- */

#define HTTP_DATE_LEN 29
/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of t into out (30 bytes). */
void http_date(int64_t t, char out[HTTP_DATE_LEN + 1]);
/* The reason phrase of a status ("Not Found"), "" for an unknown one. */
const char *http_reason(int status);
/* %-decode s[0..len) into out; ROOST_EINVAL for a bad escape or a NUL. */
int http_url_decode(const char *s, size_t len, struct buf *out);
/* The value of query parameter name (decoded) into out; ROOST_ENOTFOUND. */
int http_query_param(const char *query, const char *name, struct buf *out);
/* Does the Accept-Encoding value allow gzip (q > 0)? NULL = no. */
bool http_accepts_gzip(const char *accept_encoding);
/* gzip in[0..len) into out. 0 or ROOST_EIO. */
int http_gzip(const uint8_t *in, size_t len, struct buf *out);

/* ---- JMAP PushSubscription deliveries (RFC 8620 7.2) ---- */

struct roost_services;
struct jmap_pushd;

/*
 * The service that keeps every user's PushSubscriptions and POSTs their
 * PushVerification and StateChange objects from threads of its own
 * (protocols/http/jmap_push_sub.c). Start it before the listeners accept
 * and put it in sv->push; sv must outlive it. With [http]
 * push_subscriptions = 0 it starts nothing (*d_r = NULL, 0). Stop waits
 * for a POST in flight (at most push_timeout).
 */
int jmap_pushd_start(const struct roost_services *sv, struct jmap_pushd **d_r);
void jmap_pushd_stop(struct jmap_pushd **d);

/* ---- bearer tokens (`roost token`) ---- */

#define HTTP_TOKEN_LEN 43 /* base64url of 32 random bytes */

/*
 * Tokens live in <data_dir>/tokens, one "sha256-hex user" a line: the file
 * never holds a usable token. http_token_add makes a new random token for
 * user, appends its digest (atomic rewrite) and returns the token text in
 * token_r. http_token_check finds the user of a presented token (name_r of
 * namelen bytes); ROOST_EAUTH when none. http_token_revoke removes every
 * token of user. Thread-safe (the file is read on each check; it is small).
 */
int http_token_add(const char *data_dir, const char *user, char token_r[HTTP_TOKEN_LEN + 1]);
int http_token_check(const char *data_dir, const char *token, char *name_r, size_t namelen);
int http_token_revoke(const char *data_dir, const char *user, unsigned *n_r);

#endif
