#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/error.h"

#include "../../protocols/imap/imap_impl.h"

#include "../common/feed.h"
#include "../common/imap_match_ref.h"

#include "check_run.h"

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

/* The env's nonsync_max for frame_stream (LITERAL- tests set it). */
static uint64_t harness_nonsync_max;
static uint64_t harness_max_literal = 1000;

static void spool_stream(const uint8_t *stream, size_t len, size_t step, size_t max_line,
                         uint64_t spool_at, const char *dir, struct buf *out, struct fout *o);

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

	imap_framer_init(&fr);
	buf_init(&o->written, 0);
	o->raised = 0;
	while (fed < len || in.len > 0) {
		if (fed < len)
			feed_piece(&in, (const uint8_t *)stream, len, &fed, bytewise ? 1 : SIZE_MAX,
			           SIZE_MAX);
		for (;;) {
			struct imap_frame_env env = {.max_line = max_line,
			                             .max_literal = harness_max_literal,
			                             .authenticated = authed,
			                             .nonsync_max = harness_nonsync_max,
			                             .mode = FRAMER_COMMAND,
			                             .write = fw,
			                             .raise_input = fr_raise,
			                             .arg = o};
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
	check_both("a1 NOOP\r\nb2 CAPABILITY\r\n", 100, false, "a1 NOOP\r\n|b2 CAPABILITY\r\n|",
	           "");
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

/* A refused line read in pieces: its literal marker may be cut between two
 * reads, and must still be seen, or the literal is run as a command. */
START_TEST(frame_refused_line_split_marker)
{
	char line[400];

	memset(line, 'x', sizeof(line));
	memcpy(line, "t1 NOOP ", 8);
	strcpy(line + 200, " {11+}\r\nt3 LOGOUT\r\n\r\nt2 NOOP\r\n");
	for (size_t step = 1; step < 40; step++) {
		struct buf out = BUF_INIT(0);
		struct fout o;
		spool_stream((const uint8_t *)line, strlen(line), step, 50, 0, NULL, &out, &o);
		ck_assert_str_eq(buf_cstr(&out), "t2 NOOP|");
		ck_assert_str_eq(buf_cstr(&o.written), "t1 BAD [TOOBIG] Command line too long\r\n");
		buf_free(&out);
		buf_free(&o.written);
	}
}
END_TEST

/* A command whose literal fits but whose total does not: refused before the
 * input passes its bound (the loop would drop the connection). */
START_TEST(frame_total_past_line_bound)
{
	static const char *const streams[] = {
	    "a1 LOGIN {5}\r\nalice xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxx\r\na2 NOOP\r\n",
	    "a1 APPEND x {50+}\r\n01234567890123456789012345678901234567890123456789 "
	    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
	    "yyyyyyy\r\na2 NOOP\r\n",
	};

	for (size_t k = 0; k < 2; k++) {
		for (size_t step = 1; step < 200; step += 37) {
			struct buf out = BUF_INIT(0);
			struct fout o;
			spool_stream((const uint8_t *)streams[k], strlen(streams[k]), step, 64, 0,
			             NULL, &out, &o);
			ck_assert_str_eq(buf_cstr(&out), "a2 NOOP|");
			ck_assert_str_eq(buf_cstr(&o.written),
			                 k == 0 ? "+ Ready for literal data\r\na1 BAD [TOOBIG] "
			                          "Command line too long\r\n"
			                        : "a1 BAD [TOOBIG] Command line too long\r\n");
			buf_free(&out);
			buf_free(&o.written);
		}
	}
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
	           " y\r\na2 NOOP\r\n",
	           100, false, NULL, "a1 BAD [TOOBIG] Literal too big\r\n");
	struct buf cmds = BUF_INIT(0);
	struct fout o;
	const char *s = "a1 X {20+}\r\n01234567890123456789 {5+}\r\nabcde\r\na2 NOOP\r\n";
	frame_stream(s, strlen(s), false, 16, false, &cmds, &o);
	ck_assert_str_eq(buf_cstr(&cmds), "<d:46>a2 NOOP\r\n|");
	buf_free(&cmds);
	buf_free(&o.written);
	/* APPEND after login may use bigger literals, and raises the bound */
	check_both("a1 APPEND INBOX {200+}\r\n"
	           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	           "xxxxxxxxxxxxxxxxxxx"
	           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	           "xxxxxxxxxxxxxxxxxxx"
	           "\r\n",
	           100, true, NULL, "");
	/* huge digit counts never overflow */
	check_both("a1 LOGIN {99999999999999999999999}\r\na2 NOOP\r\n", 100, false,
	           "<d:36>a2 NOOP\r\n|", "a1 NO [TOOBIG] Literal too big\r\n");
}
END_TEST

START_TEST(frame_literal_minus)
{
	/* LITERAL- (RFC 7888 section 5): {n+} up to 4096 bytes as before,
	 * past it BAD [TOOBIG] whatever the command, the literal read and
	 * dropped so the next command is framed; a synchronizing literal of
	 * the same size still gets its continuation */
	static const char refused[] =
	    "a1 BAD [TOOBIG] Non-synchronizing literal over 4096 bytes (LITERAL-)\r\n";
	struct buf big = BUF_INIT(0);
	struct buf in = BUF_INIT(0);
	struct buf want = BUF_INIT(0);

	harness_nonsync_max = IMAP_LITERAL_MINUS_MAX;
	harness_max_literal = 100000;
	for (int i = 0; i < 4096; i++)
		buf_append_byte(&big, 'x');
	buf_printf(&in, "a1 APPEND INBOX {4096+}\r\n%s\r\na2 NOOP\r\n", buf_cstr(&big));
	buf_printf(&want, "a1 APPEND INBOX {4096+}\r\n%s\r\n|a2 NOOP\r\n|", buf_cstr(&big));
	check_both(buf_cstr(&in), 100, true, buf_cstr(&want), "");
	buf_reset(&in);
	buf_printf(&in, "a1 APPEND INBOX {4097+}\r\n%sx\r\na2 NOOP\r\n", buf_cstr(&big));
	check_both(buf_cstr(&in), 100, true, "<d:4124>a2 NOOP\r\n|", refused);
	/* the same before login, and a second literal of the command over
	 * the bound, not the first */
	check_both(buf_cstr(&in), 100, false, "<d:4124>a2 NOOP\r\n|", refused);
	check_both("a1 LOGIN {5+}\r\nalice {5000+}\r\nab\r\na2 NOOP\r\n", 6000, false, NULL,
	           refused);
	/* synchronizing: a continuation, as ever (APPEND after login) */
	check_both("a1 APPEND INBOX {5000}\r\n", 100, true, "", "+ Ready for literal data\r\n");
	/* 2^32 and more: refused, no overflow; the literal's bytes dropped */
	check_both("a1 APPEND INBOX {4294967296+}\r\nabc", 100, true, NULL, refused);
	harness_nonsync_max = 0;
	harness_max_literal = 1000;
	buf_free(&want);
	buf_free(&in);
	buf_free(&big);
}
END_TEST

/* ---- PARTIAL ranges (RFC 9394) ---- */

static const char *
partial_of(const char *range, const uint32_t *nums, size_t n)
{
	static char out[256];
	struct imap_partial p;
	struct buf b = BUF_INIT(0);

	if (imap_partial_parse(range, &p) < 0)
		return "invalid";
	imap_partial_format(&b, &p, nums, n);
	snprintf(out, sizeof(out), "%s", buf_cstr(&b));
	buf_free(&b);
	return out;
}

START_TEST(partial_ranges)
{
	static const uint32_t nums[] = {2, 3, 4, 7, 9, 10, 11, 20};
	size_t n = sizeof(nums) / sizeof(nums[0]);
	struct imap_partial p;

	ck_assert_str_eq(partial_of("1:3", nums, n), " PARTIAL (1:3 2:4)");
	ck_assert_str_eq(partial_of("3:1", nums, n), " PARTIAL (3:1 2:4)");
	ck_assert_str_eq(partial_of("4:6", nums, n), " PARTIAL (4:6 7,9:10)");
	ck_assert_str_eq(partial_of("-1:-1", nums, n), " PARTIAL (-1:-1 20)");
	ck_assert_str_eq(partial_of("-1:-3", nums, n), " PARTIAL (-1:-3 10:11,20)");
	ck_assert_str_eq(partial_of("-3:-1", nums, n), " PARTIAL (-3:-1 10:11,20)");
	/* past either end: what is there, or NIL */
	ck_assert_str_eq(partial_of("7:100", nums, n), " PARTIAL (7:100 11,20)");
	ck_assert_str_eq(partial_of("-7:-100", nums, n), " PARTIAL (-7:-100 2:3)");
	ck_assert_str_eq(partial_of("9:10", nums, n), " PARTIAL (9:10 NIL)");
	ck_assert_str_eq(partial_of("-9:-4294967295", nums, n), " PARTIAL (-9:-4294967295 NIL)");
	ck_assert_str_eq(partial_of("1:4294967295", nums, n),
	                 " PARTIAL (1:4294967295 2:4,7,9:11,20)");
	ck_assert_str_eq(partial_of("1:5", nums, 0), " PARTIAL (1:5 NIL)");
	ck_assert_str_eq(partial_of("-1:-5", nums, 0), " PARTIAL (-1:-5 NIL)");
	/* hostile and malformed */
	static const char *const bad[] = {"0:5",
	                                  "5:0",
	                                  "-0:-5",
	                                  "1:*",
	                                  "*:1",
	                                  "-1:5",
	                                  "1:-5",
	                                  "--1:-2",
	                                  "4294967296:1",
	                                  "1:4294967296",
	                                  "99999999999999999999:1",
	                                  "01:5",
	                                  "1:05",
	                                  "1",
	                                  "-1",
	                                  "1:",
	                                  ":1",
	                                  "1:2:3",
	                                  "1:2 ",
	                                  " 1:2",
	                                  "1,2",
	                                  "",
	                                  "a:b",
	                                  "1:2x",
	                                  "+1:2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(imap_partial_parse(bad[i], &p) < 0, "%s", bad[i]);
	ck_assert_int_lt(imap_partial_parse(NULL, &p), 0);
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

	ck_assert_int_eq(
	    parse(&a, "x UID fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n", &p,
	          &err),
	    0);
	ck_assert(p.uid);
	ck_assert_str_eq(p.name, "FETCH");
	ck_assert_uint_eq(p.n, 2);
	ck_assert_int_eq(p.args[1].type, ARG_LIST);
	ck_assert_uint_eq(p.args[1].n, 2);
	ck_assert_str_eq(p.args[1].list[1].str, "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>");

	ck_assert_int_eq(parse(&a, "x APPEND INBOX (\\Seen) ~{3+}\r\na\0b\r\n", &p, &err),
	                 ROOST_EINVAL); /* strlen stops at NUL: truncated literal */
	/* RFC 3516: a literal8 may carry NUL (APPEND's message) */
	const char lit[] = "x APPEND INBOX (\\Seen) ~{3+}\r\na\0b\r\n";
	ck_assert_int_eq(imap_parse_command(&a, (const uint8_t *)lit, sizeof(lit) - 1, &p, &err),
	                 0);
	ck_assert_int_eq(p.args[2].type, ARG_LITERAL);
	ck_assert(p.args[2].literal8);
	ck_assert_uint_eq(p.args[2].len, 3);
	ck_assert_ptr_null(p.args[2].str); /* NUL inside: not a string */
	ck_assert_int_eq(memcmp(p.args[2].raw, "a\0b", 3), 0);
	/* a plain literal may not (CHAR8 excludes NUL), even in APPEND */
	const char nul_lit[] = "x APPEND INBOX {3+}\r\na\0b\r\n";
	ck_assert_int_eq(
	    imap_parse_command(&a, (const uint8_t *)nul_lit, sizeof(nul_lit) - 1, &p, &err),
	    ROOST_EINVAL);
	ck_assert_str_eq(err, "NUL in a literal (literal8 may carry it)");
	ck_assert_int_eq(parse(&a, "x APPEND INBOX ~{3}\r\nabc\r\n", &p, &err), 0);
	ck_assert(p.args[1].literal8);
	/* literal8 is no string: not a mailbox name, not outside APPEND */
	ck_assert_int_eq(parse(&a, "x APPEND ~{5}\r\nINBOX {3}\r\nabc\r\n", &p, &err), 0);
	ck_assert(!imap_arg_is_astring(&p.args[0]));
	ck_assert_int_eq(parse(&a, "x LOGIN ~{1}\r\na b\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_str_eq(err, "literal8 is allowed in APPEND only");
	ck_assert_int_eq(parse(&a, "x SEARCH TEXT ~{1+}\r\na\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "x APPEND INBOX {3}\r\nabc\r\n", &p, &err), 0);
	ck_assert(!p.args[1].literal8);

	ck_assert_int_eq(parse(&a, "x LIST \"\" [Gmail]/%\r\n", &p, &err), 0);
	ck_assert_str_eq(p.args[1].str, "[Gmail]/%");
	/* NIL is an atom (an astring): NIL only where a command takes nstring */
	ck_assert_int_eq(parse(&a, "x SELECT NIL\r\n", &p, &err), 0);
	ck_assert_int_eq(p.args[0].type, ARG_ATOM);
	ck_assert_str_eq(p.args[0].str, "NIL");
	ck_assert(imap_arg_is_astring(&p.args[0]));
	ck_assert(imap_arg_is_nil(&p.args[0]));
	ck_assert_int_eq(parse(&a, "x SELECT \"NIL\"\r\n", &p, &err), 0);
	ck_assert(!imap_arg_is_nil(&p.args[0]));
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

	/* a "[...]" section holds printable ASCII only: with a NUL the
	 * string would be shorter than its length */
	const char sect[] = "a1 FETCH 1 BODY[HEADER.FIELDS (A\0B)]\r\n";
	ck_assert_int_eq(imap_parse_command(&a, (const uint8_t *)sect, sizeof(sect) - 1, &p, &err),
	                 ROOST_EINVAL);
	const char name[] = "a1 CREATE abc[\0def]\r\n";
	ck_assert_int_eq(imap_parse_command(&a, (const uint8_t *)name, sizeof(name) - 1, &p, &err),
	                 ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 CREATE abc[\x01]\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 CREATE abc[\xc3\xa9]\r\n", &p, &err), ROOST_EINVAL);
	ck_assert_int_eq(parse(&a, "a1 CREATE abc[def]\r\n", &p, &err), 0);
	ck_assert_str_eq(p.args[0].str, "abc[def]");

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
	    "a1 LOGIN alice \"secret\"\r\n",
	    "a1 FETCH 1:* (BODY[HEADER.FIELDS (A B)]<1.2>)\r\n",
	    "a1 X {3}\r\nabc\r\n",
	    "a1 X \"unterminated",
	    "a1 X {99}\r\nab",
	    "a1 X (((",
	    "a1 X [",
	    "a1 UID",
	    "a",
	};
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *mem =
	    mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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
		struct fout o = {.written = BUF_INIT(0)};
		struct imap_frame_env env = {.max_line = 1000,
		                             .max_literal = 1000,
		                             .mode = FRAMER_COMMAND,
		                             .write = fw,
		                             .raise_input = fr_raise,
		                             .arg = &o};
		size_t used;
		imap_framer_init(&fr);
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
	ck_assert_uint_eq(s.n, 2); /* 1:3 and 5:10 */
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
	ck_assert_int_eq(seqset_parse(&a, "4294967296", &s), ROOST_EINVAL);
	/* nz-number is 32-bit: 4294967295 is a number, not '*' */
	ck_assert_int_eq(seqset_parse(&a, "1:4294967295", &s), 0);
	seqset_resolve(&s, 10);
	ck_assert(seqset_contains(&s, 4294967295u));
	ck_assert(seqset_contains(&s, 11));
	ck_assert_int_eq(seqset_parse(&a, "4294967295:*", &s), 0);
	seqset_resolve(&s, 10);
	ck_assert(seqset_contains(&s, 10));
	ck_assert(seqset_contains(&s, 4294967295u));
	ck_assert(!seqset_contains(&s, 9));
	ck_assert_int_eq(seqset_parse(&a, "4294967295", &s), 0);
	seqset_resolve(&s, 10);
	ck_assert(!seqset_contains(&s, 10));
	uint32_t v[] = {1, 2, 3, 5, 7, 8};
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
	static const char *const pieces[] = {"a1 ",
	                                     "UID ",
	                                     "FETCH ",
	                                     "1:* ",
	                                     "(",
	                                     ")",
	                                     "\"",
	                                     "\\",
	                                     "{3}\r\n",
	                                     "{5+}\r\n",
	                                     "{99999999999}\r\n",
	                                     "\r\n",
	                                     "\n",
	                                     "BODY[",
	                                     "]",
	                                     "<0.5>",
	                                     " ",
	                                     "x",
	                                     "\x80",
	                                     "&Jjo-",
	                                     "*",
	                                     "%",
	                                     "{",
	                                     "}",
	                                     "+",
	                                     "NIL",
	                                     "\0"};
	unsigned seed = 12345;

	for (int round = 0; round < 300; round++) {
		struct buf in = BUF_INIT(0);
		int n = 1 + rand_r(&seed) % 40;
		for (int i = 0; i < n; i++) {
			const char *p =
			    pieces[rand_r(&seed) % (sizeof(pieces) / sizeof(pieces[0]))];
			buf_append(&in, p, strcmp(p, "\0") == 0 ? 1 : strlen(p));
		}
		for (int bw = 0; bw < 2; bw++) {
			struct imap_framer fr;
			struct fout o = {.written = BUF_INIT(0)};
			struct buf q = BUF_INIT(0);
			size_t fed = 0;
			imap_framer_init(&fr);
			while (fed < in.len) {
				size_t k = bw ? 1 : in.len - fed;
				buf_append(&q, in.data + fed, k);
				fed += k;
				for (;;) {
					struct imap_frame_env env = {.max_line = 64,
					                             .max_literal = 100,
					                             .authenticated = true,
					                             .mode = FRAMER_COMMAND,
					                             .write = fw,
					                             .raise_input = fr_raise,
					                             .arg = &o};
					size_t used = 0;
					enum imap_frame_res r =
					    imap_framer_run(&fr, &env, q.data, q.len, &used);
					if (r == IMAP_FRAME_AGAIN)
						break;
					ck_assert_uint_gt(used, 0);
					ck_assert_uint_le(used, q.len);
					if (r == IMAP_FRAME_COMMAND) {
						struct arena a;
						struct imap_parsed ip;
						const char *err;
						arena_init(&a);
						(void)imap_parse_command(&a, q.data, used, &ip,
						                         &err);
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

/* ---- LIST patterns ---- */

static bool
match1(const char *pat, const char *name)
{
	struct arena a;
	struct imap_match *m;

	arena_init(&a);
	ck_assert_int_eq(imap_match_compile(&a, pat, strlen(pat), &m), 0);
	bool r = imap_match(m, name);
	arena_free(&a);
	return r;
}

START_TEST(match_semantics)
{
	ck_assert(match1("*", "a/b/c"));
	ck_assert(match1("%", "abc"));
	ck_assert(!match1("%", "a/b"));
	ck_assert(match1("a/%", "a/b"));
	ck_assert(!match1("a/%", "a/b/c"));
	ck_assert(match1("a/*", "a/b/c"));
	ck_assert(match1("a%c", "abbc"));
	ck_assert(!match1("a%c", "ab/c"));
	ck_assert(match1("a*c", "ab/c"));
	ck_assert(match1("%/%", "x/y"));
	ck_assert(!match1("%/%", "x/y/z"));
	ck_assert(match1("*%", "x/y")); /* a run with '*' is '*' */
	ck_assert(match1("%*", "x/y"));
	ck_assert(!match1("%%", "x/y"));
	ck_assert(match1("", ""));
	ck_assert(!match1("", "a"));
	ck_assert(!match1("abc", "ab"));
	ck_assert(!match1("ab", "abc"));
	ck_assert(match1("Sent", "Sent"));
	ck_assert(!match1("sent", "Sent")); /* only INBOX folds case */
	/* INBOX, and the INBOX of its children, in any case */
	ck_assert(match1("inbox", "INBOX"));
	ck_assert(match1("InBoX", "INBOX"));
	ck_assert(match1("inb*", "INBOX"));
	ck_assert(match1("inbox/%", "INBOX/Sub"));
	ck_assert(!match1("inbox/sub", "INBOX/Sub"));
	ck_assert(match1("%", "INBOX"));
	ck_assert(!match1("inbox*", "INBOXES"));
	ck_assert(match1("INBOX*", "INBOXES"));
	/* 8-bit names are bytes */
	ck_assert(match1("caf\xc3\xa9/%", "caf\xc3\xa9/x"));
	ck_assert(!match1("caf\xc3\xa9", "caf\xc3\xa8"));
}
END_TEST

START_TEST(match_against_definition)
{
	static const char palpha[] = "ab/*%";
	static const char nalpha[] = "ab/";
	unsigned seed = 4242;

	for (int round = 0; round < 20000; round++) {
		char pat[10], name[12];
		size_t pl = (size_t)(rand_r(&seed) % 9), nl = (size_t)(rand_r(&seed) % 12);

		for (size_t i = 0; i < pl; i++)
			pat[i] = palpha[rand_r(&seed) % 5];
		pat[pl] = '\0';
		for (size_t i = 0; i < nl; i++)
			name[i] = nalpha[rand_r(&seed) % 3];
		name[nl] = '\0';
		if (match1(pat, name) != imap_match_ref(pat, name))
			ck_abort_msg("pattern \"%s\" name \"%s\": want %d", pat, name,
			             imap_match_ref(pat, name));
	}
}
END_TEST

START_TEST(match_pathological_and_bounds)
{
	struct arena a;
	struct imap_match *m;
	char name[513], pat[IMAP_MAX_PATTERN + 2];

	memset(name, 'a', 512);
	name[512] = '\0';
	/* backtracking takes exponential time on these */
	ck_assert(!match1("*a*a*a*a*a*a*a*a*a*a*a*a*b", name));
	ck_assert(!match1("%a%a%a%a%a%a%a%a%a%a%a%a%b", name));
	ck_assert(match1("*a*a*a*a*a*a*a*a*a*a*a*a*", name));
	/* a long pattern: state sets wider than the stack ones */
	for (size_t i = 0; i < 1000; i += 2) {
		pat[i] = '*';
		pat[i + 1] = 'a';
	}
	pat[1000] = 'b';
	pat[1001] = '\0';
	ck_assert(!match1(pat, name));
	pat[1000] = '\0';
	ck_assert(match1(pat, name)); /* 500 a's wanted, 512 there... */
	name[400] = '\0';
	ck_assert(!match1(pat, name)); /* ...but not 400 */
	name[400] = 'a';
	pat[1000] = '*';
	pat[1001] = '\0';
	ck_assert(match1(pat, name));
	/* the bound */
	arena_init(&a);
	memset(pat, '*', sizeof(pat));
	ck_assert_int_eq(imap_match_compile(&a, pat, IMAP_MAX_PATTERN + 1, &m), ROOST_ETOOBIG);
	ck_assert_int_eq(imap_match_compile(&a, pat, IMAP_MAX_PATTERN, &m), 0);
	ck_assert(imap_match(m, name));
	arena_free(&a);
}
END_TEST

/* ---- spooled APPEND literals ---- */

/*
 * Run the framer as the loop does, reading at most up to the input bound
 * (the line bound, or what raise_input asked for), with spooling to /tmp
 * past spool_at. Each framed command is parsed; the output lists them as
 * "tag NAME arg...", a literal as m[bytes] (in memory) or f[bytes] (from
 * its file), refused input as <d:N>. The input buffer never passes its
 * bound (the loop would close the connection).
 */
static void
spool_stream(const uint8_t *stream, size_t len, size_t step, size_t max_line, uint64_t spool_at,
             const char *dir, struct buf *out, struct fout *o)
{
	struct imap_framer fr;
	struct buf q = BUF_INIT(0);
	size_t fed = 0;

	imap_framer_init(&fr);
	buf_init(&o->written, 0);
	o->raised = 0;
	while (fed < len) {
		size_t cap = (o->raised > max_line ? o->raised : max_line) + 1;

		ck_assert_uint_lt(q.len, cap);
		feed_piece(&q, stream, len, &fed, step, cap);
		for (;;) {
			struct imap_frame_env env = {.max_line = max_line,
			                             .max_literal = 1 << 20,
			                             .authenticated = true,
			                             .mode = FRAMER_COMMAND,
			                             .spool_dir = dir,
			                             .spool_at = spool_at,
			                             .write = fw,
			                             .raise_input = fr_raise,
			                             .arg = o};
			size_t used = 0;
			enum imap_frame_res r = imap_framer_run(&fr, &env, q.data, q.len, &used);

			if (r == IMAP_FRAME_AGAIN)
				break;
			ck_assert_uint_gt(used, 0);
			ck_assert_uint_le(used, q.len);
			if (r == IMAP_FRAME_DISCARD) {
				buf_consume(&q, used);
				continue;
			}
			struct imap_spool *sp = imap_framer_take_spool(&fr);
			struct arena a;
			struct imap_parsed ip;
			const char *err;
			arena_init(&a);
			int rc = sp != NULL ? imap_parse_spooled(&a, sp, &ip, &err)
			                    : imap_parse_command(&a, q.data, used, &ip, &err);
			if (rc < 0) {
				buf_printf(out, "ERR(%s)|", err);
			} else {
				buf_printf(out, "%s %s", ip.tag, ip.name);
				for (size_t i = 0; i < ip.n; i++) {
					const struct imap_arg *g = &ip.args[i];
					if (g->type == ARG_LITERAL && g->fd >= 0) {
						uint8_t *b = malloc(g->len + 1);
						ck_assert_int_eq(pread(g->fd, b, g->len, 0),
						                 (ssize_t)g->len);
						buf_append_str(out, " f[");
						buf_append(out, b, g->len);
						buf_append_str(out, "]");
						free(b);
					} else if (g->type == ARG_LITERAL) {
						buf_append_str(out, " m[");
						buf_append(out, g->raw, g->len);
						buf_append_str(out, "]");
					} else if (g->type == ARG_LIST) {
						buf_printf(out, " (%zu)", g->n);
					} else {
						buf_printf(out, " %s", g->str);
					}
				}
				buf_append_str(out, "|");
			}
			arena_free(&a);
			imap_spool_free(&sp);
			buf_consume(&q, used);
		}
	}
	imap_framer_reset(&fr);
	buf_free(&q);
}

/* The same stream whole, in pieces of 7 and byte by byte gives the same
 * commands and replies. */
static void
check_spool(const char *stream, size_t max_line, uint64_t spool_at, const char *dir,
            const char *want, const char *want_written)
{
	static const size_t steps[] = {SIZE_MAX, 7, 1};

	for (size_t k = 0; k < 3; k++) {
		struct buf out = BUF_INIT(0);
		struct fout o;

		spool_stream((const uint8_t *)stream, strlen(stream), steps[k], max_line, spool_at,
		             dir, &out, &o);
		if (strcmp(buf_cstr(&out), want) != 0)
			ck_abort_msg("step %zu: got \"%s\" want \"%s\"", steps[k], buf_cstr(&out),
			             want);
		ck_assert_str_eq(buf_cstr(&o.written), want_written);
		buf_free(&out);
		buf_free(&o.written);
	}
}

START_TEST(spool_append)
{
	/* under the threshold: in memory, as before */
	check_spool("a APPEND x {5+}\r\nhello\r\n", 64, 64, "/tmp", "a APPEND x m[hello]|", "");
	/* past it: a file, and the input never holds more than a line */
	check_spool("a APPEND x (\\Seen) {40+}\r\n0123456789012345678901234567890123456789\r\n"
	            "b NOOP\r\n",
	            32, 16, "/tmp",
	            "a APPEND x (1) f[0123456789012345678901234567890123456789]|b NOOP|", "");
	/* synchronizing: one continuation */
	check_spool("a APPEND x {40}\r\n0123456789012345678901234567890123456789\r\n", 32, 16,
	            "/tmp", "a APPEND x f[0123456789012345678901234567890123456789]|",
	            "+ Ready for literal data\r\n");
	/* MULTIAPPEND: small ones stay in the text, before and after the
	 * first spooled one; a literal holding CRLF and a fake marker */
	check_spool("a APPEND x {3+}\r\nabc {32+}\r\n{5}\r\n\r\n{3+}\r\nxyz0123456789012345 "
	            "{2+}\r\nde (\\Flagged) {20+}\r\nABCDEFGHIJKLMNOPQRST {0+}\r\n\r\n",
	            40, 40, "/tmp",
	            "a APPEND x m[abc] f[{5}\r\n\r\n{3+}\r\nxyz0123456789012345] m[de] (1) "
	            "f[ABCDEFGHIJKLMNOPQRST] m[]|",
	            "");
}
END_TEST

/* A spooled literal's NUL is seen as its bytes go to the file: a literal8
 * keeps it, a plain literal is refused. */
START_TEST(spool_literal8_nul)
{
	static const uint8_t stream[] = "a APPEND x ~{40+}\r\n0123456789\0"
	                                "12345678901234567890123456789\r\n"
	                                "b APPEND x {40+}\r\n0123456789\0"
	                                "12345678901234567890123456789\r\n"
	                                "c NOOP\r\n";
	static const uint8_t want[] = "a APPEND x f[0123456789\0"
	                              "12345678901234567890123456789]|"
	                              "ERR(NUL in a literal (literal8 may carry it))|c NOOP|";
	static const size_t steps[] = {SIZE_MAX, 7, 1};

	for (size_t k = 0; k < 3; k++) {
		struct buf out = BUF_INIT(0);
		struct fout o;

		spool_stream(stream, sizeof(stream) - 1, steps[k], 32, 16, "/tmp", &out, &o);
		ck_assert_uint_eq(out.len, sizeof(want) - 1);
		ck_assert_int_eq(memcmp(out.data, want, out.len), 0);
		buf_free(&out);
		buf_free(&o.written);
	}
}
END_TEST

START_TEST(spool_refusals)
{
	char big[4096];

	/* the spool directory is gone: NO, and the stream stays in sync */
	check_spool("a APPEND x {40+}\r\n0123456789012345678901234567890123456789\r\nb NOOP\r\n",
	            32, 16, "/nonexistent/dir", "b NOOP|",
	            "a NO [UNAVAILABLE] Cannot take the message now, try again later\r\n");
	check_spool("a APPEND x {40}\r\nb NOOP\r\n", 32, 16, "/nonexistent/dir", "b NOOP|",
	            "a NO [UNAVAILABLE] Cannot take the message now, try again later\r\n");
	/* a later literal past the bound while spooling */
	check_spool("a APPEND x {20+}\r\n01234567890123456789 {2000000+}\r\nb NOOP\r\n", 32, 16,
	            "/tmp", "", "a BAD [TOOBIG] Literal too big\r\n");
	check_spool("a APPEND x {20+}\r\n01234567890123456789 {2000000}\r\nb NOOP\r\n", 32, 16,
	            "/tmp", "b NOOP|", "a NO [TOOBIG] Literal too big\r\n");
	/* a line after the literal past the line bound */
	snprintf(big, sizeof(big), "a APPEND x {20+}\r\n01234567890123456789 %s\r\nb NOOP\r\n",
	         "(\\Seen \\Seen \\Seen \\Seen \\Seen \\Seen \\Seen \\Seen \\Seen \\Seen)");
	check_spool(big, 32, 16, "/tmp", "b NOOP|", "a BAD [TOOBIG] Command line too long\r\n");
	/* too many spooled literals in one command */
	struct buf b = BUF_INIT(0);
	buf_append_str(&b, "a APPEND x");
	for (int i = 0; i <= IMAP_MAX_SPOOL_FILES; i++)
		buf_append_str(&b, " {20+}\r\n01234567890123456789");
	buf_append_str(&b, "\r\nb NOOP\r\n");
	check_spool(buf_cstr(&b), 512, 16, "/tmp", "b NOOP|",
	            "a NO [LIMIT] Too many large messages in one APPEND\r\n");
	buf_free(&b);
}
END_TEST

/* Quoted strings cost their own length, and the parse stays within the
 * arena's budget. */
START_TEST(parse_budget)
{
	struct arena a;
	struct imap_parsed p;
	const char *err;
	struct buf b = BUF_INIT(0);

	buf_append_str(&b, "a NOOP");
	for (int i = 0; i < 21000; i++)
		buf_append_str(&b, " \"\"");
	buf_append_str(&b, " \"x\\\"y\"\r\n");
	arena_init(&a);
	ck_assert_int_eq(parse(&a, buf_cstr(&b), &p, &err), 0);
	ck_assert_uint_eq(p.n, 21001);
	ck_assert_str_eq(p.args[21000].str, "x\"y");
	ck_assert_uint_eq(p.args[21000].len, 3);
	/* the arguments, once, and nothing for the empty strings */
	ck_assert_uint_le(a.used, 21001 * sizeof(struct imap_arg) + 4096);
	arena_free(&a);

	/* a budget: refused with [TOOBIG], and nothing past it is taken */
	arena_init(&a);
	a.max = 64 * 1024;
	ck_assert_int_eq(parse(&a, buf_cstr(&b), &p, &err), ROOST_ETOOBIG);
	ck_assert_ptr_nonnull(strstr(err, "[TOOBIG]"));
	ck_assert_uint_le(a.used, a.max);
	ck_assert_str_eq(p.tag, "a");
	arena_free(&a);
	buf_reset(&b);
	buf_append_str(&b, "a LOGIN");
	for (int i = 0; i < 2000; i++)
		buf_append_str(&b, " \"0123456789012345678901234567890123456789\"");
	buf_append_str(&b, "\r\n");
	arena_init(&a);
	a.max = 64 * 1024;
	ck_assert_int_eq(parse(&a, buf_cstr(&b), &p, &err), ROOST_ETOOBIG);
	ck_assert_uint_le(a.used, a.max);
	arena_free(&a);
	buf_free(&b);

	/* APPEND's message literal is not copied; its mailbox name is */
	const char app[] = "x APPEND {5}\r\nINBOX {3}\r\nabc\r\n";
	arena_init(&a);
	ck_assert_int_eq(imap_parse_command(&a, (const uint8_t *)app, sizeof(app) - 1, &p, &err),
	                 0);
	ck_assert_str_eq(p.args[0].str, "INBOX");
	ck_assert_ptr_null(p.args[1].str);
	ck_assert_int_eq(memcmp(p.args[1].raw, "abc", 3), 0);
	ck_assert_int_eq(p.args[1].fd, -1);
	arena_free(&a);
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
	tcase_add_test(tc, frame_literal_minus);
	tcase_add_test(tc, partial_ranges);
	tcase_add_test(tc, frame_refused_line_split_marker);
	tcase_add_test(tc, frame_total_past_line_bound);
	tcase_add_test(tc, parse_basic);
	tcase_add_test(tc, parse_errors);
	tcase_add_test(tc, parse_guard_page);
	tcase_add_test(tc, seqsets);
	tcase_add_test(tc, dates);
	tcase_add_test(tc, random_streams);
	tcase_add_test(tc, spool_append);
	tcase_add_test(tc, spool_literal8_nul);
	tcase_add_test(tc, spool_refusals);
	tcase_add_test(tc, parse_budget);
	tcase_add_test(tc, match_semantics);
	tcase_add_test(tc, match_against_definition);
	tcase_add_test(tc, match_pathological_and_bounds);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(imap_suite());
}
