/*
 * The HTTP/1.1 session: framing hook, request dispatch and responses.
 *
 * The framer (http_parse.c) hands each request to a worker as units: the
 * head, then the body in pieces of at most 64 KiB (de-chunked). A request
 * runs when its last unit arrives; its answer is written whole, or, past
 * the output budget, in steps (conn_continue), during which no further
 * request is framed, so pipelined requests are answered in order. Errors
 * found while framing are answered by the hook itself and end the
 * connection: after a malformed request nobody knows where the next starts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "http_impl.h"

#define TARGET_MAX 8192
#define GZIP_MIN 256
#define STREAM_PIECE 16384

enum method_bit {
	M_GET = 1 << 0,
	M_HEAD = 1 << 1,
	M_POST = 1 << 2,
};

struct route {
	const char *path;
	bool prefix;
	unsigned methods;
	bool auth;
	void (*run)(struct http_session *s);
};

static void redirect_session(struct http_session *s);

static const struct route routes[] = {
    {"/.well-known/jmap", false, M_GET | M_HEAD, false, redirect_session},
    {"/jmap/session", false, M_GET | M_HEAD, true, jmap_session_resource},
    {"/jmap/api", false, M_POST, true, jmap_api},
    {"/jmap/api/", false, M_POST, true, jmap_api},
    {"/jmap/upload/", true, M_POST, false, jmap_upload_finish}, /* checked at the head */
    {"/jmap/download/", true, M_GET | M_HEAD, true, jmap_download},
    {"/jmap/eventsource", false, M_GET, true, jmap_push_start},
    {"/", true, M_GET | M_HEAD, false, http_static_serve},
};

static unsigned
method_bit(const char *m)
{
	if (strcmp(m, "GET") == 0)
		return M_GET;
	if (strcmp(m, "HEAD") == 0)
		return M_HEAD;
	if (strcmp(m, "POST") == 0)
		return M_POST;
	return 0;
}

/* Methods of RFC 9110 this server knows and may refuse with 405; any other
 * is answered 501. */
static bool
method_known(const char *m)
{
	static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
	                                    "OPTIONS", "CONNECT", "TRACE", "PATCH"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(known[i], m) == 0)
			return true;
	}
	return false;
}

static bool
compressible(const char *ctype)
{
	return ctype != NULL &&
	       (strncmp(ctype, "text/", 5) == 0 || strncmp(ctype, "application/json", 16) == 0 ||
	        strncmp(ctype, "application/javascript", 22) == 0 ||
	        strncmp(ctype, "application/problem+json", 24) == 0 ||
	        strncmp(ctype, "image/svg", 9) == 0);
}

/* Status codes after which the connection cannot go on safely. */
static bool
closes(int status)
{
	return status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
	       status == 501 || status == 505;
}

static void
log_request(struct http_session *s, int status, size_t len)
{
	conn_log(s->c, LOG_LEVEL_INFO,
	         "event=request method=%s path=%s status=%d bytes=%zu user=%s",
	         LOG_QUOTE(s->req.method), LOG_QUOTE(s->req.path), status, len,
	         LOG_QUOTE(s->user[0] ? s->user : NULL));
}

static void
head_lines(struct http_session *s, struct buf *h, int status, const char *ctype)
{
	char date[HTTP_DATE_LEN + 1];

	http_date((int64_t)time(NULL), date);
	buf_printf(h, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Roost\r\n", status,
	           http_reason(status), date);
	if (ctype != NULL)
		buf_printf(h, "Content-Type: %s\r\n", ctype);
	if (!s->req.keep_alive || closes(status) || s->discard)
		buf_append_str(h, "Connection: close\r\n");
	else if (s->req.minor == 0)
		buf_append_str(h, "Connection: keep-alive\r\n");
}

/* After the answer: close when asked to (once a streamed body is out). */
static void
answer_done(struct http_session *s, int status)
{
	if (!s->req.keep_alive || closes(status) || s->discard)
		conn_close(s->c);
}

static void
stream_free(struct http_stream *st)
{
	free(st->data);
	mailbox_close(&st->mb);
	memset(st, 0, sizeof(*st));
}

static bool stream_close_after;

static void
stream_step(struct conn *c, void *session, void *arg)
{
	struct http_session *s = session;
	struct http_stream *st = &s->stream;
	bool close_after = arg != NULL;

	if (st->mb != NULL) {
		struct msg_view v;
		int rc = mailbox_read(st->mb, st->uid, &v);

		if (rc != 0 || v.len < st->msg_end) {
			/* The length was promised: a short body would be taken
			 * for the whole one. */
			msg_view_release(&v);
			stream_free(st);
			conn_close(c);
			return;
		}
		while (st->msg_off < st->msg_end && !conn_output_full(c)) {
			size_t n = st->msg_end - st->msg_off;

			if (n > STREAM_PIECE)
				n = STREAM_PIECE;
			if (conn_write(c, v.data + st->msg_off, n) != 0)
				break;
			st->msg_off += n;
		}
		msg_view_release(&v);
		if (st->msg_off < st->msg_end && !conn_is_closing(c)) {
			conn_continue(c, stream_step, arg);
			return;
		}
	} else {
		while (st->off < st->len && !conn_output_full(c)) {
			size_t n = st->len - st->off;

			if (n > STREAM_PIECE)
				n = STREAM_PIECE;
			if (conn_write(c, st->data + st->off, n) != 0)
				break;
			st->off += n;
		}
		if (st->off < st->len && !conn_is_closing(c)) {
			conn_continue(c, stream_step, arg);
			return;
		}
	}
	stream_free(st);
	if (close_after)
		conn_close(c);
}

void
http_respond(struct http_session *s, int status, const char *ctype, const void *body, size_t len,
             const char *extra)
{
	struct buf h = BUF_INIT(0), gz = BUF_INIT(0);
	bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);

	head_lines(s, &h, status, ctype);
	if (!no_body && len >= GZIP_MIN && compressible(ctype) &&
	    http_accepts_gzip(http_request_field(&s->req, "Accept-Encoding")) &&
	    http_gzip(body, len, &gz) == 0) {
		body = gz.data;
		len = gz.len;
		buf_append_str(&h, "Content-Encoding: gzip\r\n");
	}
	if (compressible(ctype))
		buf_append_str(&h, "Vary: Accept-Encoding\r\n");
	if (!no_body)
		buf_printf(&h, "Content-Length: %zu\r\n", len);
	if (extra != NULL)
		buf_append_str(&h, extra);
	buf_append_str(&h, "\r\n");
	conn_write(s->c, h.data, h.len);
	log_request(s, status, len);
	if (!no_body && !s->head_only && len > 0) {
		if (len <= STREAM_PIECE * 4) {
			conn_write(s->c, body, len);
		} else {
			bool close_after = !s->req.keep_alive || closes(status) || s->discard;

			stream_free(&s->stream);
			s->stream.active = true;
			s->stream.data = xmalloc(len);
			memcpy(s->stream.data, body, len);
			s->stream.len = len;
			buf_free(&h);
			buf_free(&gz);
			stream_step(s->c, s, close_after ? &stream_close_after : NULL);
			return;
		}
	}
	buf_free(&h);
	buf_free(&gz);
	answer_done(s, status);
}

void
http_respond_text(struct http_session *s, int status, const char *text, const char *extra)
{
	char dflt[128];

	if (text == NULL) {
		snprintf(dflt, sizeof(dflt), "%d %s\n", status, http_reason(status));
		text = dflt;
	}
	http_respond(s, status, "text/plain; charset=utf-8", text, strlen(text), extra);
}

void
http_respond_problem(struct http_session *s, int status, const char *type, const char *detail)
{
	struct buf b = BUF_INIT(0);

	/* type and detail are fixed strings of this server: no escaping needed. */
	buf_printf(&b, "{\"type\":\"%s\",\"status\":%d,\"detail\":\"%s\"}", type, status, detail);
	http_respond(s, status, "application/problem+json", b.data, b.len, NULL);
	buf_free(&b);
}

void
http_respond_head(struct http_session *s, int status, const char *ctype, int64_t len,
                  const char *extra)
{
	struct buf h = BUF_INIT(0);

	head_lines(s, &h, status, ctype);
	if (len >= 0)
		buf_printf(&h, "Content-Length: %lld\r\n", (long long)len);
	if (extra != NULL)
		buf_append_str(&h, extra);
	buf_append_str(&h, "\r\n");
	conn_write(s->c, h.data, h.len);
	log_request(s, status, len >= 0 ? (size_t)len : 0);
	buf_free(&h);
}

void
http_stream_message(struct http_session *s, struct mailbox *mb, uint32_t uid, size_t off,
                    size_t end)
{
	bool close_after = !s->req.keep_alive || s->discard;

	if (s->head_only || off >= end) {
		mailbox_close(&mb);
		if (close_after)
			conn_close(s->c);
		return;
	}
	stream_free(&s->stream);
	s->stream.active = true;
	s->stream.mb = mb;
	s->stream.uid = uid;
	s->stream.msg_off = off;
	s->stream.msg_end = end;
	stream_step(s->c, s, close_after ? &stream_close_after : NULL);
}

static void
redirect_session(struct http_session *s)
{
	http_respond_text(s, 302, "See /jmap/session\n", "Location: /jmap/session\r\n");
}

static void
dispatch(struct http_session *s)
{
	unsigned m = method_bit(s->req.method);
	const struct route *r = NULL;

	/* The metrics listener serves /metrics and nothing else; the others
	 * never serve it. */
	if (strcmp(conn_listener(s->c), "metrics") == 0) {
		if (strcmp(s->req.path, "/metrics") != 0)
			http_respond_text(s, 404, NULL, NULL);
		else if ((m & (M_GET | M_HEAD)) == 0)
			http_respond_text(s, 405, NULL, "Allow: GET, HEAD\r\n");
		else
			http_metrics(s);
		return;
	}

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *t = &routes[i];

		if (t->prefix ? strncmp(s->req.path, t->path, strlen(t->path)) == 0
		              : strcmp(s->req.path, t->path) == 0) {
			r = t;
			break;
		}
	}
	if (!method_known(s->req.method)) {
		http_respond_text(s, 501, NULL, NULL);
		return;
	}
	if (r == NULL) {
		http_respond_text(s, 404, NULL, NULL);
		return;
	}
	if ((r->methods & m) == 0) {
		char allow[64];

		snprintf(allow, sizeof(allow), "Allow: %s%s%s\r\n",
		         r->methods & M_GET ? "GET, HEAD" : "",
		         (r->methods & M_GET) && (r->methods & M_POST) ? ", " : "",
		         r->methods & M_POST ? "POST" : "");
		http_respond_text(s, 405, NULL, allow);
		return;
	}
	if (r->auth && http_authenticate(s) != 0)
		return;
	r->run(s);
}

static void
request_end(struct http_session *s)
{
	buf_free(&s->body);
	if (s->upload)
		jmap_upload_abort(s);
	s->upload = false;
	s->discard = false;
	http_request_clear(&s->req);
}

/* The head of a request arrived; its body (if any) follows in pieces. */
static void
request_begin(struct http_session *s, bool last)
{
	s->requests++;
	s->head_only = strcmp(s->req.method, "HEAD") == 0;
	s->discard = false;
	s->upload = false;
	s->user[0] = '\0';
	buf_init(&s->body, (size_t)s->limits.max_body);
	if (strcmp(s->req.method, "POST") == 0 && strncmp(s->req.path, "/jmap/upload/", 13) == 0) {
		if (http_authenticate(s) != 0 || jmap_upload_begin(s) != 0) {
			/* Answered already; the body is not read. */
			s->discard = true;
			if (!last)
				conn_close(s->c);
			return;
		}
		s->upload = true;
	}
	if (s->req.expect_continue && !last)
		conn_write_str(s->c, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* The runtime resets a raised input bound after each command: a head of
 * max_head bytes or a body piece must always fit. */
static void
keep_input_bound(struct http_session *s)
{
	size_t in_max =
	    s->limits.max_head > 2 * HTTP_PIECE_MAX ? s->limits.max_head : 2 * HTTP_PIECE_MAX;

	conn_set_input_max(s->c, in_max);
}

static void
http_on_command(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	struct http_session *s = session;
	const struct http_unit *u = &s->framer_unit;

	(void)len;
	if (conn_is_closing(c))
		return;
	if (u->kind == HTTP_UNIT_HEAD) {
		request_begin(s, u->last);
	} else if (!s->discard) {
		const uint8_t *p = cmd + u->data_off;

		if (s->upload) {
			if (jmap_upload_piece(s, p, u->data_len) != 0) {
				s->discard = true;
				http_respond_problem(s, 500, "about:blank", "The upload failed.");
				conn_close(c);
			}
		} else if (buf_append(&s->body, p, u->data_len) != 0) {
			s->discard = true;
			if (jmap_api_path(s->req.path)) {
				struct buf b = BUF_INIT(0);

				jmap_limit_body("maxSizeRequest", 413, &b);
				http_respond(s, 413, "application/problem+json", b.data, b.len,
				             NULL);
				buf_free(&b);
			} else {
				http_respond_text(s, 413, NULL, NULL);
			}
		}
	}
	if (u->last && !conn_is_closing(c)) {
		if (!s->discard)
			dispatch(s);
		request_end(s);
	}
	keep_input_bound(s);
}

static enum frame_result
http_frame_hook(struct conn *c, void *session, const uint8_t *in, size_t len, size_t *used_r)
{
	struct http_session *s = session;
	struct http_unit *u = &s->framer_unit;
	char date[HTTP_DATE_LEN + 1];

	if (s->push != NULL) {
		/* An event stream only sends; what the client says is dropped. */
		*used_r = len;
		return FRAME_DISCARD;
	}
	http_frame(&s->framer, &s->limits, in, len, &s->req, u);
	*used_r = u->used;
	switch (u->kind) {
	case HTTP_UNIT_AGAIN:
		return FRAME_AGAIN;
	case HTTP_UNIT_SKIP:
		return FRAME_DISCARD;
	case HTTP_UNIT_HEAD:
	case HTTP_UNIT_DATA:
		return FRAME_COMMAND;
	case HTTP_UNIT_ERROR:
		break;
	}
	http_date((int64_t)time(NULL), date);
	if (u->status == 413 && jmap_api_path(s->req.path)) {
		/* JMAP's clients read the limit named in a problem (RFC 8620
		 * 3.6.1); the request is not read on, so the connection ends. */
		struct buf b = BUF_INIT(0);

		jmap_limit_body("maxSizeRequest", 413, &b);
		conn_printf(c,
		            "HTTP/1.1 413 %s\r\nDate: %s\r\nServer: Roost\r\nContent-Type: "
		            "application/problem+json\r\nContent-Length: %zu\r\nConnection: "
		            "close\r\n\r\n",
		            http_reason(413), date, b.len);
		conn_write(c, b.data, b.len);
		buf_free(&b);
		conn_log(c, LOG_LEVEL_INFO, "event=bad_request status=413 limit=maxSizeRequest");
		http_request_clear(&s->req);
		return FRAME_CLOSE;
	}
	conn_printf(c,
	            "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Roost\r\nContent-Type: text/plain\r\n"
	            "Content-Length: %zu\r\nConnection: close\r\n\r\n%d %s\n",
	            u->status, http_reason(u->status), date, strlen(http_reason(u->status)) + 5,
	            u->status, http_reason(u->status));
	conn_log(c, LOG_LEVEL_INFO, "event=bad_request status=%d", u->status);
	http_request_clear(&s->req);
	return FRAME_CLOSE;
}

static void *
http_session_new(struct conn *c)
{
	struct http_session *s = xcalloc(1, sizeof(*s));
	const struct roost_config *cfg;

	s->c = c;
	s->svc = conn_services(c);
	cfg = s->svc->cfg;
	s->upload_fd = -1;
	s->limits.max_head = (size_t)cfg->http_max_head;
	s->limits.max_target = TARGET_MAX < s->limits.max_head ? TARGET_MAX : s->limits.max_head;
	s->limits.max_fields = cfg->http_max_fields;
	s->limits.max_body = cfg->http_max_request;
	s->limits.max_upload = cfg->max_message_size;
	s->limits.upload_prefix = "/jmap/upload/";
	keep_input_bound(s);
	return s;
}

static void
http_session_free(void *session)
{
	struct http_session *s = session;

	if (s == NULL)
		return;
	request_end(s);
	stream_free(&s->stream);
	jmap_push_free(&s->push);
	free(s);
}

static void
http_on_wake(struct conn *c, void *session, enum wake_reason why)
{
	struct http_session *s = session;

	if (s->push != NULL)
		jmap_push_wake(s, why == WAKE_TIMER);
}

const struct proto_ops http_proto_ops = {
    .name = "http",
    .session_new = http_session_new,
    .session_free = http_session_free,
    .frame = http_frame_hook,
    .on_command = http_on_command,
    .on_wake = http_on_wake,
};
