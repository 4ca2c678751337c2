#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/error.h"

#include "../../protocols/imap/imap_impl.h"

/* ---- framer harness ---- */

struct fout {
	struct buf written;
	size_t raised;
};

static void
fw(void *arg, const char *text)
{
	struct fout *o = arg;
	buf_append_str(&o->written, text);
}

static void
fr_raise(void *arg, size_t max)
{
	struct fout *o = arg;
	o->raised = max;
}

/*
 * Run the framer over stream as a loop would: deliver it whole or a byte
 * at a time, consuming what each result says. Returns the commands found,
 * separated by "|", discards shown as "<d:N>".
 */
static void
frame_stream(const char *stream, size_t len, bool bytewise, size_t max_line, bool authed,
    struct buf *cmds, struct fout *o)
{
	struct imap_framer fr;
	struct buf in = BUF_INIT(0);
	size_t fed = 0;

	imap_framer_reset(&fr);
	buf_init(&o->written, 0);
	o->raised = 0;
	while (fed < len || in.len > 0) {
		if (fed < len) {
			size_t n = bytewise ? 1 : len - fed;
			buf_append(&in, stream + fed, n);
			fed += n;
		}
		for (;;) {
			struct imap_frame_env env = { .max_line = max_line, .max_literal = 1000,
				.authenticated = authed, .mode = FRAMER_COMMAND, .write = fw,
				.raise_input = fr_raise, .arg = o };
			size_t used = 0;
			enum imap_frame_res r = imap_framer_run(&fr, &env, in.data, in.len, &used);
			if (r == IMAP_FRAME_AGAIN)
				break;
			if (r == IMAP_FRAME_COMMAND) {
				buf_append(cmds, in.data, used);
				buf_append_str(cmds, "|");
			} else {
				buf_printf(cmds, "<d:%zu>", used);
			}
			ck_assert_uint_gt(used, 0);
			buf_consume(&in, used);
		}
		if (fed >= len)
			break;
	}
	buf_free(&in);
}

static void
check_both(const char *stream, size_t max_line, bool authed, const char *want_cmds,
    const char *want_written)
{
	for (int bw = 0; bw < 2; bw++) {
		struct buf cmds = BUF_INIT(0);
		struct fout o;
		frame_stream(stream, strlen(stream), bw, max_line, authed, &cmds, &o);
		if (want_cmds != NULL && bw == 0)
			ck_assert_str_eq(buf_cstr(&cmds), want_cmds);
		if (want_cmds != NULL && bw == 1) {
			/* byte by byte, discards come in pieces: compare
			 * commands only */
			struct buf a = BUF_INIT(0);
			for (const char *p = buf_cstr(&cmds); *p;) {
				if (*p == '<') {
					p = strchr(p, '>') + 1;
					continue;
				}
				buf_append_byte(&a, (uint8_t)*p++);
			}
			struct buf w = BUF_INIT(0);
			for (const char *p = want_cmds; *p;) {
				if (*p == '<') {
					p = strchr(p, '>') + 1;
					continue;
				}
				buf_append_byte(&w, (uint8_t)*p++);
			}
			ck_assert_str_eq(buf_cstr(&a), buf_cstr(&w));
			buf_free(&a);
			buf_free(&w);
		}
		if (want_written != NULL)
			ck_assert_str_eq(buf_cstr(&o.written), want_written);
		buf_free(&cmds);
		buf_free(&o.written);
	}
}

START_TEST(frame_simple_lines)
{
	check_both("a1 NOOP\r\nb2 CAPABILITY\r\n", 100, false, "a1 NOOP\r\n|b2 CAPABILITY\r\n|", "");
	check_both("a1 NOOP\n", 100, false, "a1 NOOP\n|", "");
}
END_TEST

START_TEST(frame_sync_literal)
{
	check_both("a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n", 100, false,
	    "a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n|",
	    "+ Ready for literal data\r\n+ Ready for literal data\r\n");
}
END_TEST

START_TEST(frame_nonsync_literal)
{
	check_both("a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\na2 NOOP\r\n", 100, false,
	    "a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n|a2 NOOP\r\n|", "");
}
END_TEST

START_TEST(frame_literal_with_crlf_inside)
{
	/* the literal holds CRLF and a fake literal marker */
	check_both("a APPEND x {12+}\r\nab {3}\r\ncd\r\n\r\nb NOOP\r\n", 100, true,
	    "a APPEND x {12+}\r\nab {3}\r\ncd\r\n\r\n|b NOOP\r\n|", "");
}
END_TEST

START_TEST(frame_line_too_long)
{
	char line[300];
	memset(line, 'x', sizeof(line));
	memcpy(line, "t1 ", 3);
	strcpy(line + 200, "\r\nt2 NOOP\r\n");
	check_both(line, 50, false, NULL, NULL);
	struct buf cmds = BUF_INIT(0);
	struct fout o;
	frame_stream(line, strlen(line), true, 50, false, &cmds, &o);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&cmds), "t2 NOOP\r\n|"));
	ck_assert_str_eq(buf_cstr(&o.written), "t1 BAD [TOOBIG] Command line too long\r\n");
	buf_free(&cmds);
	buf_free(&o.written);
}
END_TEST

START_TEST(frame_literal_too_big)
{
	/* synchronizing: refused with NO, no continuation; the client sends
	 * no literal, the next command follows */
	check_both("a1 LOGIN {500}\r\na2 NOOP\r\n", 100, false, "<d:16>a2 NOOP\r\n|",
	    "a1 NO [TOOBIG] Literal too big\r\n");
	/* non-synchronizing: BAD, the literal is still consumed */
	check_both("a1 LOGIN {150+}\r\n"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    " y\r\na2 NOOP\r\n", 100, false, NULL, "a1 BAD [TOOBIG] Literal too big\r\n");
	struct buf cmds = BUF_INIT(0);
	struct fout o;
	const char *s = "a1 X {20+}\r\n01234567890123456789 {5+}\r\nabcde\r\na2 NOOP\r\n";
	frame_stream(s, strlen(s), false, 16, false, &cmds, &o);
	ck_assert_str_eq(buf_cstr(&cmds), "<d:46>a2 NOOP\r\n|");
	buf_free(&cmds);
	buf_free(&o.written);
	/* APPEND after login may use bigger literals, and raises the bound */
	check_both("a1 APPEND INBOX {200+}\r\n"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "\r\n", 100, true, NULL, "");
	/* huge digit counts never overflow */
	check_both("a1 LOGIN {99999999999999999999999}\r\na2 NOOP\r\n", 100, false,
	    "<d:36>a2 NOOP\r\n|", "a1 NO [TOOBIG] Literal too big\r\n");
}
END_TEST

/* ---- arguments ---- */

static int
parse(struct arena *a, const char *s, struct imap_parsed *p, const char **err)
{
	return imap_parse_command(a, (const uint8_t *)s, strlen(s), p, err);
}

START_TEST(parse_basic)
{
	struct arena a;
	struct imap_parsed p;
	const char *err;

	arena_init(&a);
	ck_assert_int_eq(parse(&a, "A1 login alice \"se\\\"cret\"\r\n", &p, &err), 0);
	ck_assert_str_eq(p.tag, "A1");
	ck_assert_str_eq(p.name, "LOGIN");
	ck_assert_uint_eq(p.n, 2);
	ck_assert_str_eq(p.args[0].str, "alice");
	ck_assert_int_eq(p.args[1].type, ARG_QUOTED);
	ck_assert_str_eq(p.args[1].str, "se\"cret");

	ck_assert_int_eq(parse(&a, "x UID fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n",
	    &p, &err), 0);
	ck_assert(p.uid);
	ck_assert_str_eq(p.name, "FETCH");
	ck_assert_uint_eq(p.n, 2);
	ck_assert_int_eq(p.args[1].type, ARG_LIST);
	ck_assert_uint_eq(p.args[1].n, 2);
	ck_assert_str_eq(p.args[1].list[1].str, "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>");

	ck_assert_int_eq(parse(&a, "x APPEND INBOX (\\Seen) {3+}\r\na\0b\r\n", &p, &err),
	    ROOST_EINVAL); /* strlen stops at NUL: truncated literal */
	const char lit[] = "x APPEND INBOX (\\Seen) {3+}\r\na\0b\r\n";
	ck_assert_int_eq(imap_parse_command(&a, (const uint8_t *)lit, sizeof(lit) - 1, &p, &err), 0);
	ck_assert_int_eq(p.args[2].type, ARG_LITERAL);
	ck_assert_uint_eq(p.args[2].len, 3);
	ck_assert_ptr_null(p.args[2].str);	/* NUL inside: not a string */

	ck_assert_int_eq(parse(&a, "x LIST \"\" [Gmail]/%\r\n", &p, &err), 0);
	ck_assert_str_eq(p.args[1].str, "[Gmail]/%");
	ck_assert_int_eq(parse(&a, "x SELECT NIL\r\n", &p, &err), 0);
	ck_assert_int_eq(p.args[0].type, ARG_NIL);
	arena_free(&a);
}
END_TEST

START_TEST(parse_errors)
{
	struct arena a;
	struct imap_parsed p;
	const char *err;

	arena_init(&a);
	ck_assert_int_eq(parse(&a, "\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_ptr_null(p.tag);
	ck_assert_int_eq(parse(&a, "a1\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_str_eq(p.tag, "a1");
	ck_assert_int_eq(parse(&a, "a+1 NOOP\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 LOGIN \"abc\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 LOGIN \"a\\b\"\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 FETCH 1 (FLAGS\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 FETCH 1 (FLAGS))\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 NOOP \r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 X  y\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 X {5}\r\nab\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 X caf\xc3\xa9\r\n", &p, &err), ROOST_EINVAL);
	const char nul[] = "a1 LOGIN \"a\0b\" c\r\n";
	ck_assert_int_eq(imap_parse_command(&a, (const uint8_t *)nul, sizeof(nul) - 1, &p, &err),
	    ROOST_EINVAL);

	/* nesting bound */
	struct buf b = BUF_INIT(0);
	buf_append_str(&b, "a1 SEARCH ");
	for (int i = 0; i < 100; i++)
		buf_append_byte(&b, '(');
	buf_append_str(&b, "ALL");
	for (int i = 0; i < 100; i++)
		buf_append_byte(&b, ')');
	buf_append_str(&b, "\r\n");
	ck_assert_int_eq(parse(&a, buf_cstr(&b), &p, &err), ROOST_ETOOBIG);
	buf_free(&b);
	arena_free(&a);
}
END_TEST

/* Parse a command placed at the very end of a page followed by a guard
 * page, so any over-read faults. */
START_TEST(parse_guard_page)
{
	static const char *const cases[] = {
		"a1 LOGIN alice \"secret\"\r\n", "a1 FETCH 1:* (BODY[HEADER.FIELDS (A B)]<1.2>)\r\n",
		"a1 X {3}\r\nabc\r\n", "a1 X \"unterminated", "a1 X {99}\r\nab", "a1 X (((", "a1 X [",
		"a1 UID", "a",
	};
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *mem = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	ck_assert_ptr_ne(mem, MAP_FAILED);
	ck_assert_int_eq(mprotect(mem + pg, (size_t)pg, PROT_NONE), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i]);
		uint8_t *p = mem + pg - n;
		memcpy(p, cases[i], n);
		struct arena a;
		struct imap_parsed ip;
		const char *err;
		arena_init(&a);
		(void)imap_parse_command(&a, p, n, &ip, &err);
		arena_free(&a);
		/* and the framer */
		struct imap_framer fr;
		struct fout o = { .written = BUF_INIT(0) };
		struct imap_frame_env env = { .max_line = 1000, .max_literal = 1000, .mode =
			FRAMER_COMMAND, .write = fw, .raise_input = fr_raise, .arg = &o };
		size_t used;
		imap_framer_reset(&fr);
		(void)imap_framer_run(&fr, &env, p, n, &used);
		buf_free(&o.written);
	}
	munmap(mem, (size_t)pg * 2);
}
END_TEST

/* ---- sequence sets ---- */

START_TEST(seqsets)
{
	struct arena a;
	struct seqset s;
	struct buf b = BUF_INIT(0);

	arena_init(&a);
	ck_assert_int_eq(seqset_parse(&a, "1:3,7,*:5", &s), 0);
	ck_assert_uint_eq(s.n, 3);
	seqset_resolve(&s, 10);
	ck_assert_uint_eq(s.n, 2);	/* 1:3 and 5:10 */
	ck_assert(seqset_contains(&s, 1));
	ck_assert(seqset_contains(&s, 3));
	ck_assert(!seqset_contains(&s, 4));
	ck_assert(seqset_contains(&s, 7));
	ck_assert(seqset_contains(&s, 10));
	ck_assert(!seqset_contains(&s, 11));
	ck_assert_int_eq(seqset_parse(&a, "4:2", &s), 0);
	seqset_resolve(&s, 10);
	ck_assert(seqset_contains(&s, 3));
	ck_assert_int_eq(seqset_parse(&a, "0", &s), ROOST_EINVAL);
	ck_assert_int_eq(seqset_parse(&a, "1,", &s), ROOST_EINVAL);
	ck_assert_int_eq(seqset_parse(&a, "1::2", &s), ROOST_EINVAL);
	ck_assert_int_eq(seqset_parse(&a, "", &s), ROOST_EINVAL);
	ck_assert_int_eq(seqset_parse(&a, "99999999999", &s), ROOST_EINVAL);
	ck_assert_int_eq(seqset_parse(&a, "4294967295", &s), ROOST_EINVAL);
	uint32_t v[] = { 1, 2, 3, 5, 7, 8 };
	seqset_format(v, 6, &b);
	ck_assert_str_eq(buf_cstr(&b), "1:3,5,7:8");
	buf_free(&b);
	arena_free(&a);
}
END_TEST

START_TEST(dates)
{
	int64_t t;
	int y, m, d;
	char out[32];

	ck_assert_int_eq(imap_parse_datetime("17-Jul-1996 02:44:25 -0700", &t), 0);
	ck_assert_int_eq(t, 837596665);
	ck_assert_int_eq(imap_parse_datetime(" 7-Jul-1996 02:44:25 +0000", &t), 0);
	imap_format_datetime(t, out);
	ck_assert_str_eq(out, "07-Jul-1996 02:44:25 +0000");
	ck_assert_int_eq(imap_parse_datetime("17-Jux-1996 02:44:25 -0700", &t), ROOST_EINVAL);
	ck_assert_int_eq(imap_parse_datetime("17-Jul-1996 02:44:25", &t), ROOST_EINVAL);
	ck_assert_int_eq(imap_parse_date("1-Feb-1994", &y, &m, &d), 0);
	ck_assert_int_eq(y, 1994);
	ck_assert_int_eq(m, 2);
	ck_assert_int_eq(d, 1);
	ck_assert_int_eq(imap_parse_date("1-Feb-94", &y, &m, &d), ROOST_EINVAL);
}
END_TEST

/* Random streams built from IMAP-ish pieces: the framer always makes
 * progress and every framed command parses or fails cleanly. */
START_TEST(random_streams)
{
	static const char *const pieces[] = { "a1 ", "UID ", "FETCH ", "1:* ", "(", ")", "\"",
		"\\", "{3}\r\n", "{5+}\r\n", "{99999999999}\r\n", "\r\n", "\n", "BODY[",
		"]", "<0.5>", " ", "x", "\x80", "&Jjo-", "*", "%", "{", "}", "+", "NIL", "\0" };
	unsigned seed = 12345;

	for (int round = 0; round < 300; round++) {
		struct buf in = BUF_INIT(0);
		int n = 1 + rand_r(&seed) % 40;
		for (int i = 0; i < n; i++) {
			const char *p = pieces[rand_r(&seed) % (sizeof(pieces) / sizeof(pieces[0]))];
			buf_append(&in, p, strcmp(p, "\0") == 0 ? 1 : strlen(p));
		}
		for (int bw = 0; bw < 2; bw++) {
			struct imap_framer fr;
			struct fout o = { .written = BUF_INIT(0) };
			struct buf q = BUF_INIT(0);
			size_t fed = 0;
			imap_framer_reset(&fr);
			while (fed < in.len) {
				size_t k = bw ? 1 : in.len - fed;
				buf_append(&q, in.data + fed, k);
				fed += k;
				for (;;) {
					struct imap_frame_env env = { .max_line = 64, .max_literal = 100,
						.authenticated = true, .mode = FRAMER_COMMAND, .write = fw,
						.raise_input = fr_raise, .arg = &o };
					size_t used = 0;
					enum imap_frame_res r = imap_framer_run(&fr, &env, q.data, q.len,
					    &used);
					if (r == IMAP_FRAME_AGAIN)
						break;
					ck_assert_uint_gt(used, 0);
					ck_assert_uint_le(used, q.len);
					if (r == IMAP_FRAME_COMMAND) {
						struct arena a;
						struct imap_parsed ip;
						const char *err;
						arena_init(&a);
						(void)imap_parse_command(&a, q.data, used, &ip, &err);
						arena_free(&a);
					}
					buf_consume(&q, used);
				}
			}
			/* whatever is left is bounded by the line limit */
			ck_assert_uint_le(q.len, 64 + 200);
			buf_free(&q);
			buf_free(&o.written);
		}
		buf_free(&in);
	}
}
END_TEST

static Suite *
imap_suite(void)
{
	Suite *s = suite_create("imap");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, frame_simple_lines);
	tcase_add_test(tc, frame_sync_literal);
	tcase_add_test(tc, frame_nonsync_literal);
	tcase_add_test(tc, frame_literal_with_crlf_inside);
	tcase_add_test(tc, frame_line_too_long);
	tcase_add_test(tc, frame_literal_too_big);
	tcase_add_test(tc, parse_basic);
	tcase_add_test(tc, parse_errors);
	tcase_add_test(tc, parse_guard_page);
	tcase_add_test(tc, seqsets);
	tcase_add_test(tc, dates);
	tcase_add_test(tc, random_streams);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(imap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
