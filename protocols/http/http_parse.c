/*
 * The HTTP/1.1 request framer and head parser (RFC 9112). Strict where
 * leniency lets two parsers disagree about where a request ends: bare CR or
 * LF, obsolete line folding, whitespace before the colon, a repeated
 * Content-Length and Content-Length with Transfer-Encoding are refused with
 * 400, and the connection is closed afterwards (request smuggling needs a
 * front end and a back end that read the same bytes differently).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/hex.h"
#include "roost/http.h"
#include "roost/xalloc.h"

#define CHUNK_LINE_MAX 1024 /* a chunk-size line with its extensions */
#define TRAILER_MAX 8192
#define LEADING_EMPTY_MAX 4

void
http_request_clear(struct http_request *req)
{
	free(req->raw);
	free(req->split);
	free(req->fields);
	memset(req, 0, sizeof(*req));
}

const char *
http_request_field(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_fields; i++) {
		if (strcasecmp(req->fields[i].name, name) == 0)
			return req->fields[i].value;
	}
	return NULL;
}

static bool
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field value byte: VCHAR, SP, HTAB or obs-text. */
static bool
is_vbyte(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Does the comma-separated list value hold token (case-insensitive)? */
static bool
list_has(const char *value, const char *token)
{
	size_t tl = strlen(token);
	const char *p = value;

	while (*p != '\0') {
		const char *e;
		size_t n;

		p += strspn(p, " \t,");
		e = p + strcspn(p, ",");
		n = (size_t)(e - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(p, token, tl) == 0)
			return true;
		p = e;
	}
	return false;
}

static int
parse_length(const char *v, uint64_t *r)
{
	uint64_t n = 0;

	if (*v == '\0')
		return ROOST_EINVAL;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return ROOST_EINVAL;
		if (n > (UINT64_MAX - 9) / 10)
			return ROOST_EINVAL;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	*r = n;
	return 0;
}

/* The request line "METHOD SP target SP HTTP/1.x" in line (NUL-terminated). */
static int
parse_request_line(char *line, const struct http_limits *lim, struct http_request *req)
{
	char *sp1, *sp2, *target, *q;

	sp1 = strchr(line, ' ');
	if (sp1 == NULL || sp1 == line)
		return 400;
	*sp1 = '\0';
	for (char *p = line; *p != '\0'; p++) {
		if (!is_tchar((unsigned char)*p))
			return 400;
	}
	target = sp1 + 1;
	sp2 = strrchr(target, ' ');
	if (sp2 == NULL || sp2 == target)
		return 400;
	*sp2 = '\0';
	if ((size_t)(sp2 - target) > lim->max_target)
		return 414;
	for (char *p = target; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return 400;
	}
	if (strncmp(sp2 + 1, "HTTP/", 5) != 0)
		return 400;
	{
		const char *v = sp2 + 6;

		if (v[0] < '0' || v[0] > '9' || v[1] != '.' || v[2] < '0' || v[2] > '9' ||
		    v[3] != '\0')
			return 400;
		if (v[0] != '1' || (v[2] != '0' && v[2] != '1'))
			return 505;
		req->minor = v[2] - '0';
	}
	/* absolute-form: keep the path, the Host field decides nothing here. */
	if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
		char *slash = strchr(strstr(target, "//") + 2, '/');

		if (slash == NULL)
			return 400;
		target = slash;
	}
	if (target[0] != '/' && strcmp(target, "*") != 0)
		return 400;
	req->method = line;
	req->target = target;
	q = strchr(target, '?');
	if (q != NULL) {
		/* path and query share the raw copy: a second copy keeps
		 * target whole for logs. */
		size_t plen = (size_t)(q - target);
		size_t tlen = strlen(target);
		char *copy = xmalloc(tlen + 2);

		memcpy(copy, target, plen);
		copy[plen] = '\0';
		memcpy(copy + plen + 1, q + 1, tlen - plen);
		req->split = copy;
		req->path = copy;
		req->query = copy + plen + 1;
	} else {
		req->path = target;
		req->query = "";
	}
	return 0;
}

static int
check_fields(struct http_request *req)
{
	unsigned hosts = 0, lengths = 0;
	const char *te = NULL;

	req->keep_alive = req->minor >= 1;
	for (size_t i = 0; i < req->n_fields; i++) {
		const char *n = req->fields[i].name, *v = req->fields[i].value;

		if (strcasecmp(n, "Host") == 0) {
			hosts++;
		} else if (strcasecmp(n, "Content-Length") == 0) {
			if (++lengths > 1 || parse_length(v, &req->content_length) != 0)
				return 400;
			req->has_length = true;
		} else if (strcasecmp(n, "Transfer-Encoding") == 0) {
			if (te != NULL)
				return 400;
			te = v;
		} else if (strcasecmp(n, "Connection") == 0) {
			if (list_has(v, "close"))
				req->keep_alive = false;
			else if (list_has(v, "keep-alive") && req->minor == 0)
				req->keep_alive = true;
		} else if (strcasecmp(n, "Expect") == 0) {
			if (strcasecmp(v, "100-continue") != 0)
				return 417;
			req->expect_continue = req->minor >= 1;
		}
	}
	if (req->minor >= 1 && hosts != 1)
		return 400;
	if (hosts > 1)
		return 400;
	if (te != NULL) {
		if (req->has_length || req->minor == 0)
			return 400;
		if (strcasecmp(te, "chunked") != 0)
			return 501;
		req->chunked = true;
	}
	return 0;
}

int
http_parse_head(const uint8_t *head, size_t len, const struct http_limits *lim,
                struct http_request *req)
{
	size_t cap = 16, i = 0;
	char *p, *end;
	int st;

	http_request_clear(req);
	if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)
		return 400;
	if (memchr(head, '\0', len) != NULL)
		return 400;
	req->raw = xmalloc(len + 1);
	memcpy(req->raw, head, len);
	req->raw[len] = '\0';
	end = req->raw + len - 2; /* the final CRLF */
	req->fields = xcalloc(cap, sizeof(*req->fields));

	/* Every CR must start a CRLF and every LF end one. */
	for (size_t k = 0; k < len; k++) {
		if (head[k] == '\r' && (k + 1 == len || head[k + 1] != '\n'))
			return 400;
		if (head[k] == '\n' && (k == 0 || head[k - 1] != '\r'))
			return 400;
	}
	p = strstr(req->raw, "\r\n");
	*p = '\0';
	st = parse_request_line(req->raw, lim, req);
	if (st != 0)
		return st;
	p += 2;
	while (p < end) {
		char *eol = strstr(p, "\r\n"), *colon, *v, *ve;

		*eol = '\0';
		if (*p == ' ' || *p == '\t')
			return 400; /* obs-fold */
		colon = strchr(p, ':');
		if (colon == NULL || colon == p)
			return 400;
		for (char *q = p; q < colon; q++) {
			if (!is_tchar((unsigned char)*q))
				return 400; /* includes whitespace before the colon */
		}
		*colon = '\0';
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		*ve = '\0';
		for (char *q = v; q < ve; q++) {
			if (!is_vbyte((unsigned char)*q))
				return 400;
		}
		if (i == lim->max_fields || i == HTTP_MAX_FIELDS_CAP)
			return 431;
		if (i == cap) {
			cap *= 2;
			req->fields = xreallocarray(req->fields, cap, sizeof(*req->fields));
		}
		req->fields[i].name = p;
		req->fields[i].value = v;
		req->n_fields = ++i;
		p = eol + 2;
	}
	return check_fields(req);
}

static void
unit(struct http_unit *u, enum http_unit_kind kind, size_t used)
{
	memset(u, 0, sizeof(*u));
	u->kind = kind;
	u->used = used;
}

static void
error(struct http_framer *f, struct http_unit *u, int status)
{
	unit(u, HTTP_UNIT_ERROR, 0);
	u->status = status;
	f->state = HTTP_FS_HEAD;
	f->scanned = 0;
}

/* The end of a CRLF-terminated line in in[0..len), searching from
 * f->scanned; its length with the CRLF, or 0 when not complete yet. */
static size_t
line_end(struct http_framer *f, const uint8_t *in, size_t len)
{
	const uint8_t *lf;

	if (f->scanned > len)
		f->scanned = 0;
	lf = memchr(in + f->scanned, '\n', len - f->scanned);
	if (lf == NULL) {
		f->scanned = len;
		return 0;
	}
	f->scanned = 0;
	return (size_t)(lf - in) + 1;
}

static void
frame_head(struct http_framer *f, const struct http_limits *lim, const uint8_t *in, size_t len,
           struct http_request *req, struct http_unit *u)
{
	size_t from, n = 0;
	int st;

	/* RFC 9112 2.2: empty lines before a request line are ignored. */
	if (len >= 2 && in[0] == '\r' && in[1] == '\n') {
		if (++f->skipped > LEADING_EMPTY_MAX)
			return error(f, u, 400);
		f->scanned = 0;
		return unit(u, HTTP_UNIT_SKIP, 2);
	}
	if (len == 1 && in[0] == '\r')
		return unit(u, HTTP_UNIT_AGAIN, 0);
	if (f->scanned > len)
		f->scanned = 0;
	from = f->scanned > 3 ? f->scanned - 3 : 0;
	for (size_t k = from; k + 4 <= len; k++) {
		if (in[k + 3] == '\n' && memcmp(in + k, "\r\n\r\n", 4) == 0) {
			n = k + 4;
			break;
		}
	}
	/* A bare LF would never be followed by the CRLF CRLF looked for:
	 * answer at once rather than when the bound or the timeout hits. */
	for (size_t k = f->scanned > 0 ? f->scanned : 1; n == 0 && k < len; k++) {
		if (in[k] == '\n' && in[k - 1] != '\r')
			return error(f, u, 400);
	}
	if (len > 0 && in[0] == '\n')
		return error(f, u, 400);
	if (n == 0) {
		if (len > lim->max_head) {
			/* Before the first line ends it is the target that is long. */
			return error(f, u, memchr(in, '\n', len) == NULL ? 414 : 431);
		}
		f->scanned = len;
		return unit(u, HTTP_UNIT_AGAIN, 0);
	}
	f->scanned = 0;
	f->skipped = 0;
	if (n > lim->max_head)
		return error(f, u, 431);
	st = http_parse_head(in, n, lim, req);
	if (st != 0)
		return error(f, u, st);
	f->max_body = lim->max_body;
	if (lim->upload_prefix != NULL &&
	    strncmp(req->path, lim->upload_prefix, strlen(lim->upload_prefix)) == 0)
		f->max_body = lim->max_upload;
	f->total = 0;
	unit(u, HTTP_UNIT_HEAD, n);
	if (req->chunked) {
		f->state = HTTP_FS_CHUNK_SIZE;
		f->trailer = 0;
	} else if (req->content_length > 0) {
		if (req->content_length > f->max_body)
			return error(f, u, 413);
		f->state = HTTP_FS_BODY;
		f->remaining = req->content_length;
	} else {
		u->last = true;
	}
}

static void
frame_chunk_size(struct http_framer *f, const uint8_t *in, size_t len, struct http_unit *u)
{
	size_t n = line_end(f, in, len), k = 0;
	uint64_t size = 0;

	if (n == 0) {
		if (len > CHUNK_LINE_MAX)
			return error(f, u, 400);
		return unit(u, HTTP_UNIT_AGAIN, 0);
	}
	if (n > CHUNK_LINE_MAX || n < 3 || in[n - 2] != '\r')
		return error(f, u, 400);
	for (; k < n - 2 && hex_digit(in[k]) >= 0; k++) {
		if (size > (UINT64_MAX >> 4))
			return error(f, u, 400);
		size = size << 4 | (uint64_t)hex_digit(in[k]);
	}
	if (k == 0 || k > 16)
		return error(f, u, 400);
	/* chunk-ext: BWS ";" ... ; anything else after the digits is not one. */
	while (k < n - 2 && (in[k] == ' ' || in[k] == '\t'))
		k++;
	if (k < n - 2 && in[k] != ';')
		return error(f, u, 400);
	for (; k < n - 2; k++) {
		if (!is_vbyte(in[k]))
			return error(f, u, 400);
	}
	if (size > f->max_body - f->total)
		return error(f, u, 413);
	unit(u, HTTP_UNIT_SKIP, n);
	if (size == 0) {
		f->state = HTTP_FS_TRAILER;
	} else {
		f->state = HTTP_FS_CHUNK_DATA;
		f->remaining = size;
	}
}

static void
frame_data(struct http_framer *f, const uint8_t *in, size_t len, struct http_unit *u)
{
	uint64_t n = f->remaining;

	if (n > HTTP_PIECE_MAX)
		n = HTTP_PIECE_MAX;
	/* Small pieces cost a worker hand-off each: wait for a full one
	 * unless the body ends sooner. */
	if (len < n) {
		if (len < 16384)
			return unit(u, HTTP_UNIT_AGAIN, 0);
		n = len;
	}
	unit(u, HTTP_UNIT_DATA, (size_t)n);
	u->data_off = 0;
	u->data_len = (size_t)n;
	f->remaining -= n;
	f->total += n;
	if (f->remaining == 0) {
		if (f->state == HTTP_FS_BODY) {
			f->state = HTTP_FS_HEAD;
			u->last = true;
		} else {
			f->state = HTTP_FS_CHUNK_END;
		}
	}
}

static void
frame_trailer(struct http_framer *f, const uint8_t *in, size_t len, struct http_unit *u)
{
	size_t n = line_end(f, in, len);

	if (n == 0) {
		if (f->trailer + len > TRAILER_MAX)
			return error(f, u, 431);
		return unit(u, HTTP_UNIT_AGAIN, 0);
	}
	if (n < 2 || in[n - 2] != '\r')
		return error(f, u, 400);
	f->trailer += n;
	if (f->trailer > TRAILER_MAX)
		return error(f, u, 431);
	if (n == 2) {
		/* The empty line ends the request: a DATA unit of no bytes. */
		unit(u, HTTP_UNIT_DATA, 2);
		u->data_off = 0;
		u->data_len = 0;
		u->last = true;
		f->state = HTTP_FS_HEAD;
		return;
	}
	if (in[0] == ' ' || in[0] == '\t' || memchr(in, ':', n) == NULL)
		return error(f, u, 400);
	unit(u, HTTP_UNIT_SKIP, n); /* trailer fields are not used */
}

void
http_frame(struct http_framer *f, const struct http_limits *lim, const uint8_t *in, size_t len,
           struct http_request *req, struct http_unit *u)
{
	if (len == 0)
		return unit(u, HTTP_UNIT_AGAIN, 0);
	switch (f->state) {
	case HTTP_FS_HEAD:
		return frame_head(f, lim, in, len, req, u);
	case HTTP_FS_BODY:
	case HTTP_FS_CHUNK_DATA:
		return frame_data(f, in, len, u);
	case HTTP_FS_CHUNK_SIZE:
		return frame_chunk_size(f, in, len, u);
	case HTTP_FS_CHUNK_END:
		if (len < 2)
			return unit(u, HTTP_UNIT_AGAIN, 0);
		if (in[0] != '\r' || in[1] != '\n')
			return error(f, u, 400);
		f->state = HTTP_FS_CHUNK_SIZE;
		return unit(u, HTTP_UNIT_SKIP, 2);
	case HTTP_FS_TRAILER:
		return frame_trailer(f, in, len, u);
	}
	error(f, u, 400);
}
