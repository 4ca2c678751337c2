#ifndef ROOST_HTTP_IMPL_H
#define ROOST_HTTP_IMPL_H

/*
 * Shared between the files of the HTTP service (protocols/http): the
 * session, the response writer and the handlers each file provides.
 * Everything here runs on the worker that owns the connection.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/http.h"
#include "roost/storage.h"

struct conn;
struct roost_services;
struct jmap_push;

/* A body that is longer than one output budget, sent in steps. */
struct http_stream {
	bool active;
	/* from memory */
	uint8_t *data;
	size_t len, off;
	/* or a message (or a part of one) read again at each step */
	struct mailbox *mb;
	uint32_t uid;
	size_t msg_off, msg_end;
};

struct http_session {
	struct conn *c;
	const struct roost_services *svc;
	struct http_limits limits;

	/* the framer's (loop thread, between commands); framer_unit tells
	 * on_command what the unit it runs is */
	struct http_framer framer;
	struct http_unit framer_unit;

	/* the current request, from its head to its answer */
	struct http_request req;
	bool head_only;    /* HEAD: the answer has no body */
	bool discard;      /* the answer went out early: drop the body */
	bool upload;       /* the body goes to upload_fd */
	struct buf body;   /* the body of other requests, at most max_request */
	int upload_fd;     /* spool of a blob upload, -1 */
	char *upload_path; /* its file name */
	void *upload_hash; /* EVP_MD_CTX of the upload */
	uint64_t upload_len;
	bool upload_counted;          /* counted in the user's running uploads */
	char user[AUTH_MAX_NAME + 1]; /* who the request is authenticated as, "" */
	char account[24];             /* the JMAP accountId of user */

	struct http_stream stream;
	struct jmap_push *push; /* an EventSource stream, which ends the requests */
	unsigned requests;
};

/* ---- responses (http_server.c) ---- */

/*
 * Answer the current request: status line, Date, Server, Content-Length,
 * Connection, then extra header lines (each ending in CRLF, may be NULL),
 * then the body (not for HEAD). Compressible bodies go out gzipped when the
 * client accepts it. Bodies past the output budget are copied and sent in
 * steps. Closes the connection afterwards when the request or status says so.
 */
void http_respond(struct http_session *s, int status, const char *ctype, const void *body,
                  size_t len, const char *extra);
/* A short text/plain answer ("404 Not Found\n" when text is NULL). */
void http_respond_text(struct http_session *s, int status, const char *text, const char *extra);
/* A problem details answer (RFC 7807), as JMAP's request-level errors are. */
void http_respond_problem(struct http_session *s, int status, const char *type, const char *detail);
/* The status line and header of a body whose bytes follow by
 * http_stream_message (length known) or by chunks (len = -1: chunked). */
void http_respond_head(struct http_session *s, int status, const char *ctype, int64_t len,
                       const char *extra);
/* Send bytes [off, end) of message uid of mb as the body, in steps. */
void http_stream_message(struct http_session *s, struct mailbox *mb, uint32_t uid, size_t off,
                         size_t end);

/* ---- authentication (http_auth.c) ---- */

/* Check the request's Authorization (Basic over TLS or loopback, Bearer
 * tokens): 0 with s->user and s->account set, or ROOST_EAUTH after a 401
 * or 403 answer has been written (and the failure delay set). */
int http_authenticate(struct http_session *s);
/* The JMAP account id of a user: "a" and 16 hex digits of a digest. */
void http_account_id(const char *user, char out[24]);

/* ---- /metrics on the metrics listener (http_metrics.c) ---- */

void http_metrics(struct http_session *s);

/* ---- static files (http_static.c) ---- */

void http_static_serve(struct http_session *s);

/* ---- JMAP (jmap_*.c) ---- */

void jmap_session_resource(struct http_session *s);
void jmap_api(struct http_session *s);
/* The body of the request-level "limit" problem (RFC 8620 3.6.1) naming
 * limit with status, appended to out (jmap_limits.c). */
void jmap_limit_body(const char *limit, int status, struct buf *out);
/* Is path the JMAP API endpoint's? */
bool jmap_api_path(const char *path);
/* Blob upload: the head arrived (open the spool), a piece, the end. */
int jmap_upload_begin(struct http_session *s);
int jmap_upload_piece(struct http_session *s, const uint8_t *p, size_t len);
void jmap_upload_finish(struct http_session *s);
void jmap_upload_abort(struct http_session *s);
void jmap_download(struct http_session *s);
/* EventSource: start the stream; a storage wake-up; the ping timer; end. */
void jmap_push_start(struct http_session *s);
void jmap_push_wake(struct http_session *s, bool timer);
void jmap_push_free(struct jmap_push **p);

#endif
