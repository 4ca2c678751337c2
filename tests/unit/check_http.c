#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/http.h"

#include "check_guard.h"
#include "check_run.h"

/* ---- helpers ---- */

/* Copy data so that its last byte is the last byte before a PROT_NONE page:
 * any read past the end faults. */
static const struct http_limits limits = {
    .max_head = 4096,
    .max_target = 1024,
    .max_fields = 20,
    .max_body = 1000,
    .max_upload = 100000,
    .upload_prefix = "/up/",
};

/* What framing a stream produced: heads (method path), body bytes, the
 * end of each request ("|"), or the error status ("!431"). */
struct result {
	struct buf log;
};

/*
 * Frame in[0..len) the way the runtime does: the buffer holds what has
 * arrived and not been consumed; with step > 0 the bytes arrive step at a
 * time. Each call sees the unconsumed bytes placed against a guard page.
 */
static void
run(const char *in, size_t len, size_t step, struct buf *log)
{
	struct http_framer f;
	struct http_request req;
	size_t have = 0, off = 0;

	memset(&f, 0, sizeof(f));
	memset(&req, 0, sizeof(req));
	buf_reset(log);
	buf_append(log, "", 0);
	if (step == 0)
		step = len;
	for (;;) {
		struct http_unit u;
		struct guarded g;

		if (have == off) {
			if (have == len)
				break;
			have = have + step > len ? len : have + step;
		}
		guard_init(&g, in + off, have - off);
		http_frame(&f, &limits, g.data, have - off, &req, &u);
		switch (u.kind) {
		case HTTP_UNIT_AGAIN:
			guard_free(&g);
			if (have == len) {
				buf_append_str(log, "~");
				goto out;
			}
			have = have + step > len ? len : have + step;
			continue;
		case HTTP_UNIT_HEAD:
			buf_printf(log, "[%s %s%s%s]", req.method, req.path,
			           req.query[0] ? "?" : "", req.query);
			break;
		case HTTP_UNIT_DATA:
			buf_append(log, g.data + u.data_off, u.data_len);
			break;
		case HTTP_UNIT_SKIP:
			break;
		case HTTP_UNIT_ERROR:
			buf_printf(log, "!%d", u.status);
			guard_free(&g);
			goto out;
		}
		if (u.last)
			buf_append_str(log, "|");
		off += u.used;
		guard_free(&g);
	}
out:
	http_request_clear(&req);
}

/* The same stream whole, in 7-byte pieces and byte by byte gives expect. */
static void
expect_frames(const char *in, const char *expect)
{
	static const size_t steps[] = {0, 7, 1};
	struct buf log = BUF_INIT(0);

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		run(in, strlen(in), steps[i], &log);
		ck_assert_msg(strcmp((const char *)log.data, expect) == 0,
		              "step %zu: got \"%s\", want \"%s\" for %s", steps[i],
		              (const char *)log.data, expect, in);
	}
	buf_free(&log);
}

START_TEST(frame_simple_and_pipelined)
{
	expect_frames("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "[GET /]|");
	expect_frames("GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /z HTTP/1.0\r\n\r\n",
	              "[GET /x?y=1]|[HEAD /z]|");
	expect_frames("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "[GET /]|");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b "
	              "HTTP/1.1\r\nHost: a\r\n\r\n",
	              "[POST /a]hello|[GET /b]|");
	expect_frames("GET http://example.org/p?q HTTP/1.1\r\nHost: a\r\n\r\n", "[GET /p?q]|");
	expect_frames("GET / HTTP/1.1\r\nHost: a", "~");
}
END_TEST

START_TEST(frame_chunked)
{
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
	              "GET /n HTTP/1.1\r\nHost: a\r\n\r\n",
	              "[POST /a]hello world|[GET /n]|");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
	              "[POST /a]|");
	/* invalid sizes */
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	              "[POST /a]!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
	              "[POST /a]!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
	              "[POST /a]!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "fffffffffffffffffffff\r\n",
	              "[POST /a]!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "5\r\nhelloXX0\r\n\r\n",
	              "[POST /a]hello!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello",
	              "[POST /a]!400");
	/* past the body bound, counted over chunks */
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "3e9\r\n",
	              "[POST /a]!413");
}
END_TEST

START_TEST(frame_rejects)
{
	/* smuggling: both lengths, repeated or bad lengths */
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
	              "chunked\r\n\r\n0\r\n\r\n",
	              "!400");
	expect_frames(
	    "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
	    "!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", "!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", "!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	              "!501");
	expect_frames("POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "!400");
	/* syntax */
	expect_frames("GET / HTTP/1.1\r\nHost : a\r\n\r\n", "!400");
	expect_frames("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "!400");
	expect_frames("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", "!400");
	expect_frames("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "!400");
	expect_frames("GET / HTTP/1.1\r\n\r\n", "!400");
	expect_frames("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "!400");
	expect_frames("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "!505");
	expect_frames("GET / FOO/1.1\r\nHost: a\r\n\r\n", "!400");
	expect_frames("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "!400");
	expect_frames("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "!400");
	expect_frames("GET nopath HTTP/1.1\r\nHost: a\r\n\r\n", "!400");
	expect_frames("GET / HTTP/1.1\r\nHost: a\r\nX: a\001b\r\n\r\n", "!400");
	expect_frames("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", "!413");
	expect_frames("POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
	              "[POST /up/x]");
}
END_TEST

START_TEST(frame_limits)
{
	struct buf in = BUF_INIT(0), log = BUF_INIT(0);

	/* a long target, a long header block, too many fields */
	buf_append_str(&in, "GET /");
	for (int i = 0; i < 1100; i++)
		buf_append_byte(&in, 'a');
	buf_append_str(&in, " HTTP/1.1\r\nHost: a\r\n\r\n");
	run((const char *)in.data, in.len, 0, &log);
	ck_assert_str_eq((const char *)log.data, "!414");

	buf_reset(&in);
	buf_append_str(&in, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	for (int i = 0; i < 5000; i++)
		buf_append_byte(&in, 'b');
	run((const char *)in.data, in.len, 0, &log);
	ck_assert_str_eq((const char *)log.data, "!431");
	run((const char *)in.data, in.len, 100, &log);
	ck_assert_str_eq((const char *)log.data, "!431");

	buf_reset(&in);
	buf_append_str(&in, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < 25; i++)
		buf_printf(&in, "X-%d: v\r\n", i);
	buf_append_str(&in, "\r\n");
	run((const char *)in.data, in.len, 0, &log);
	ck_assert_str_eq((const char *)log.data, "!431");
	buf_free(&in);
	buf_free(&log);
}
END_TEST

START_TEST(frame_large_body_in_pieces)
{
	struct http_limits lim = limits;
	struct http_framer f;
	struct http_request req;
	struct http_unit u;
	struct buf in = BUF_INIT(0);
	size_t off = 0, body = 0, pieces = 0;

	lim.max_upload = 300000;
	buf_append_str(&in, "POST /up/b HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n");
	for (int i = 0; i < 200000; i++)
		buf_append_byte(&in, (uint8_t)i);
	memset(&f, 0, sizeof(f));
	memset(&req, 0, sizeof(req));
	for (;;) {
		http_frame(&f, &lim, in.data + off, in.len - off, &req, &u);
		ck_assert_int_ne(u.kind, HTTP_UNIT_ERROR);
		ck_assert_int_ne(u.kind, HTTP_UNIT_AGAIN);
		if (u.kind == HTTP_UNIT_DATA) {
			ck_assert_uint_le(u.data_len, HTTP_PIECE_MAX);
			ck_assert_int_eq(memcmp(in.data + off + u.data_off,
			                        in.data + in.len - 200000 + body, u.data_len),
			                 0);
			body += u.data_len;
			pieces++;
		}
		off += u.used;
		if (u.last)
			break;
	}
	ck_assert_uint_eq(body, 200000);
	ck_assert_uint_ge(pieces, 4);
	ck_assert_uint_eq(off, in.len);
	http_request_clear(&req);
	buf_free(&in);
}
END_TEST

START_TEST(parse_fields)
{
	const char *h = "POST /p?a=1 HTTP/1.1\r\nHost: example.org\r\nConnection: keep-alive, "
	                "Close\r\nExpect: 100-continue\r\nContent-Length: 12\r\nX-Empty:\r\n\r\n";
	struct http_request req;

	memset(&req, 0, sizeof(req));
	ck_assert_int_eq(http_parse_head((const uint8_t *)h, strlen(h), &limits, &req), 0);
	ck_assert_str_eq(req.method, "POST");
	ck_assert_str_eq(req.path, "/p");
	ck_assert_str_eq(req.query, "a=1");
	ck_assert_int_eq(req.minor, 1);
	ck_assert(!req.keep_alive);
	ck_assert(req.expect_continue);
	ck_assert_uint_eq(req.content_length, 12);
	ck_assert_str_eq(http_request_field(&req, "host"), "example.org");
	ck_assert_str_eq(http_request_field(&req, "x-empty"), "");
	ck_assert_ptr_null(http_request_field(&req, "nope"));
	http_request_clear(&req);

	h = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
	ck_assert_int_eq(http_parse_head((const uint8_t *)h, strlen(h), &limits, &req), 0);
	ck_assert(req.keep_alive);
	http_request_clear(&req);
	h = "GET / HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(http_parse_head((const uint8_t *)h, strlen(h), &limits, &req), 0);
	ck_assert(!req.keep_alive);
	http_request_clear(&req);
	h = "GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n";
	ck_assert_int_eq(http_parse_head((const uint8_t *)h, strlen(h), &limits, &req), 417);
	http_request_clear(&req);
}
END_TEST

START_TEST(helpers)
{
	char date[HTTP_DATE_LEN + 1];
	struct buf b = BUF_INIT(0), z = BUF_INIT(0);
	uint8_t out[64];
	uLongf outlen = sizeof(out);
	z_stream zs;

	http_date(784111777, date);
	ck_assert_str_eq(date, "Sun, 06 Nov 1994 08:49:37 GMT");
	ck_assert_int_eq(http_url_decode("a%20b+c%2F", 10, &b), 0);
	ck_assert_str_eq((const char *)b.data, "a b c/");
	buf_reset(&b);
	ck_assert_int_eq(http_url_decode("a%2", 3, &b), ROOST_EINVAL);
	buf_reset(&b);
	ck_assert_int_eq(http_url_decode("%00", 3, &b), ROOST_EINVAL);
	buf_reset(&b);
	ck_assert_int_eq(http_query_param("types=*&closeafter=no&ping=30", "ping", &b), 0);
	ck_assert_str_eq((const char *)b.data, "30");
	buf_reset(&b);
	ck_assert_int_eq(http_query_param("types=*", "type", &b), ROOST_ENOTFOUND);
	ck_assert(http_accepts_gzip("gzip, deflate, br"));
	ck_assert(http_accepts_gzip("deflate, GZIP;q=0.5"));
	ck_assert(!http_accepts_gzip("gzip;q=0, deflate"));
	ck_assert(!http_accepts_gzip("identity"));
	ck_assert(!http_accepts_gzip(NULL));
	ck_assert(http_accepts_gzip("*"));
	ck_assert_str_eq(http_reason(431), "Request Header Fields Too Large");

	ck_assert_int_eq(http_gzip((const uint8_t *)"hello hello hello", 17, &z), 0);
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(inflateInit2(&zs, 31), Z_OK);
	zs.next_in = z.data;
	zs.avail_in = (uInt)z.len;
	zs.next_out = out;
	zs.avail_out = (uInt)outlen;
	ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
	ck_assert_uint_eq(zs.total_out, 17);
	ck_assert_int_eq(memcmp(out, "hello hello hello", 17), 0);
	inflateEnd(&zs);
	buf_free(&b);
	buf_free(&z);
}
END_TEST

START_TEST(tokens)
{
	char dir[] = "/tmp/check_http_XXXXXX", tok[HTTP_TOKEN_LEN + 1], tok2[HTTP_TOKEN_LEN + 1];
	char name[256], path[64];
	unsigned n = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(http_token_check(dir, "x", name, sizeof(name)), ROOST_EAUTH);
	ck_assert_int_eq(http_token_add(dir, "alice@example.org", tok), 0);
	ck_assert_uint_eq(strlen(tok), HTTP_TOKEN_LEN);
	ck_assert_int_eq(http_token_add(dir, "bob@example.org", tok2), 0);
	ck_assert_str_ne(tok, tok2);
	ck_assert_int_eq(http_token_check(dir, tok, name, sizeof(name)), 0);
	ck_assert_str_eq(name, "alice@example.org");
	ck_assert_int_eq(http_token_check(dir, tok2, name, sizeof(name)), 0);
	ck_assert_str_eq(name, "bob@example.org");
	tok2[0] = tok2[0] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(http_token_check(dir, tok2, name, sizeof(name)), ROOST_EAUTH);
	ck_assert_int_eq(http_token_revoke(dir, "alice@example.org", &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(http_token_check(dir, tok, name, sizeof(name)), ROOST_EAUTH);
	snprintf(path, sizeof(path), "%s/tokens", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/tokens.lock", dir);
	unlink(path);
	rmdir(dir);
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, frame_simple_and_pipelined);
	tcase_add_test(tc, frame_chunked);
	tcase_add_test(tc, frame_rejects);
	tcase_add_test(tc, frame_limits);
	tcase_add_test(tc, frame_large_body_in_pieces);
	tcase_add_test(tc, parse_fields);
	tcase_add_test(tc, helpers);
	tcase_add_test(tc, tokens);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(http_suite());
}
