/*
 * SMTP framer, DATA decoder and command parsers, driven directly: every
 * stream is fed whole, one byte at a time and in odd-sized pieces, and the
 * decoder also runs on input placed against a guard page.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/smtp.h"

#include "check_guard.h"
#include "check_run.h"

/* ---- helpers ---- */

/* Decode stream in pieces of step bytes; returns consumed total. */
static size_t
decode_steps(const char *in, size_t len, size_t step, bool normalize, struct buf *out,
             struct smtp_data_dec *d)
{
	size_t off = 0;

	smtp_data_dec_init(d, normalize);
	while (off < len && d->state != SMTP_DEC_DONE) {
		size_t n = len - off < step ? len - off : step;
		struct guarded g;
		size_t k;

		guard_init(&g, in + off, n);
		k = smtp_data_decode(d, g.data, n, out);
		guard_free(&g);
		off += k;
		if (k < n)
			break;
	}
	return off;
}

static const size_t steps[] = {100000, 1, 2, 3, 7, 64};

/*
 * Run a client byte stream through the framer as the runtime would, with
 * the worker's part acted out: a "DATA" line starts DATA framing. The
 * events are written to log as [L:line] [D:decoded message] [B:chunk] [E]
 * (long line) so runs with different feeding can be compared.
 */
static void
simulate(const char *stream, size_t len, size_t step, size_t max_line, size_t chunk, bool normalize,
         struct buf *log)
{
	struct smtp_framer f;
	struct smtp_data_dec dec;
	struct buf in = BUF_INIT(0), msg = BUF_INIT(0), bdat = BUF_INIT(0);
	size_t fed = 0;

	smtp_framer_init(&f);
	buf_reset(log);
	while (fed < len || in.len > 0) {
		enum smtp_frame_result r;
		size_t used = 0;

		if (fed < len) {
			size_t n = len - fed < step ? len - fed : step;

			buf_append(&in, stream + fed, n);
			fed += n;
		}
		for (;;) {
			struct guarded g;

			if (in.len == 0)
				break;
			guard_init(&g, in.data, in.len);
			r = smtp_frame(&f, g.data, in.len, max_line, chunk, &used);
			guard_free(&g);
			if (r == SMTP_FR_AGAIN)
				break;
			ck_assert_uint_le(used, in.len);
			if (r == SMTP_FR_LONG_LINE) {
				buf_append_str(log, "[E]");
			} else if (r == SMTP_FR_COMMAND) {
				ck_assert_uint_gt(used, 0);
				if (f.kind == SMTP_FRAME_LINE) {
					buf_append_str(log, "[L:");
					buf_append(log, in.data, used);
					buf_append_str(log, "]");
					if (used == 6 && memcmp(in.data, "DATA\r\n", 6) == 0) {
						smtp_framer_start_data(&f, normalize);
						smtp_data_dec_init(&dec, normalize);
						buf_reset(&msg);
					}
				} else if (f.kind == SMTP_FRAME_DATA) {
					size_t k = smtp_data_decode(&dec, in.data, used, &msg);

					ck_assert_uint_eq(k, used);
					if (dec.state == SMTP_DEC_DONE) {
						ck_assert_int_eq(f.mode, SMTP_FRAME_LINE);
						buf_append_str(log, "[D:");
						buf_append(log, msg.data, msg.len);
						buf_append_str(log, "]");
					}
				} else {
					buf_append(&bdat, in.data, used);
					if (f.mode == SMTP_FRAME_LINE) {
						buf_append_str(log, "[B:");
						buf_append(log, bdat.data, bdat.len);
						buf_append_str(log, "]");
						buf_reset(&bdat);
					}
				}
			}
			buf_consume(&in, used);
		}
		if (fed == len && in.len > 0) {
			/* Nothing more will come: what is left is incomplete. */
			buf_append_str(log, "[...]");
			break;
		}
	}
	buf_free(&in);
	buf_free(&msg);
	buf_free(&bdat);
}

static void
check_stream(const char *stream, size_t max_line, size_t chunk, bool normalize, const char *expect)
{
	struct buf log = BUF_INIT(0);

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		simulate(stream, strlen(stream), steps[i], max_line, chunk, normalize, &log);
		ck_assert_msg(strcmp(buf_cstr(&log), expect) == 0, "step %zu:\n got  %s\n want %s",
		              steps[i], buf_cstr(&log), expect);
	}
	buf_free(&log);
}

/* ---- DATA decoder ---- */

START_TEST(decode_unstuffs_dots)
{
	const char *in = "a\r\n..b\r\n.c\r\n...\r\n\r\n.\r\nNEXT";
	const char *want = "a\r\n.b\r\nc\r\n..\r\n\r\n";

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct buf out = BUF_INIT(0);
		struct smtp_data_dec d;
		size_t used = decode_steps(in, strlen(in), steps[i], false, &out, &d);

		ck_assert_int_eq(d.state, SMTP_DEC_DONE);
		ck_assert_uint_eq(used, strlen(in) - 4);
		ck_assert_str_eq(buf_cstr(&out), want);
		ck_assert_uint_eq(d.out_len, strlen(want));
		ck_assert_uint_eq(d.bare_eol, 0);
		buf_free(&out);
	}
}
END_TEST

START_TEST(decode_empty_message)
{
	struct buf out = BUF_INIT(0);
	struct smtp_data_dec d;

	ck_assert_uint_eq(decode_steps(".\r\nQUIT\r\n", 9, 1, false, &out, &d), 3);
	ck_assert_int_eq(d.state, SMTP_DEC_DONE);
	ck_assert_uint_eq(out.len, 0);
	buf_free(&out);
}
END_TEST

/* Each sequence is one an outbound server may not read as end-of-data
 * while a lenient inbound would: none of them may end the data here. */
static const char *const smuggling[] = {
    "\n.\n",       "\n.\r\n",     "\r.\r", "\r\n.\r",     "\r.\r\n",      "\r\n.\n",
    "\r\n.\r\r\n", "\r\n.\n\r\n", "\n.\r", "\r\n\r.\r\n", "\r\n.\r.\r\n",
};

START_TEST(decode_smuggling_never_ends)
{
	for (size_t s = 0; s < sizeof(smuggling) / sizeof(smuggling[0]); s++) {
		struct buf in = BUF_INIT(0);

		buf_printf(&in,
		           "Subject: hi\r\n\r\nbody%sMAIL FROM:<evil@x>\r\nRCPT TO:<a@b>\r\n"
		           "DATA\r\nsmuggled\r\n.\r\n",
		           smuggling[s]);
		for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
			for (int norm = 0; norm < 2; norm++) {
				struct buf out = BUF_INIT(0);
				struct smtp_data_dec d;
				size_t used = decode_steps((const char *)in.data, in.len, steps[i],
				                           norm, &out, &d);

				ck_assert_msg(used == in.len && d.state == SMTP_DEC_DONE,
				              "sequence %zu ended early at %zu of %zu", s, used,
				              in.len);
				ck_assert_msg(d.bare_eol > 0, "sequence %zu: bare CR/LF not seen",
				              s);
				if (norm) {
					/* Normalised output has only CR LF pairs. */
					for (size_t k = 0; k < out.len; k++) {
						if (out.data[k] == '\n')
							ck_assert(k > 0 && out.data[k - 1] == '\r');
						if (out.data[k] == '\r')
							ck_assert(k + 1 < out.len &&
							          out.data[k + 1] == '\n');
					}
				}
				buf_free(&out);
			}
		}
		buf_free(&in);
	}
}
END_TEST

START_TEST(decode_normalize)
{
	struct buf out = BUF_INIT(0);
	struct smtp_data_dec d;
	const char *in = "a\nb\rc\r\r\nd\r\n.\r\n";

	decode_steps(in, strlen(in), 1, true, &out, &d);
	ck_assert_int_eq(d.state, SMTP_DEC_DONE);
	ck_assert_str_eq(buf_cstr(&out), "a\r\nb\r\nc\r\n\r\nd\r\n");
	ck_assert_uint_eq(d.bare_eol, 3);
	buf_free(&out);

	buf_init(&out, 0);
	decode_steps(in, strlen(in), 1, false, &out, &d);
	ck_assert_str_eq(buf_cstr(&out), "a\nb\rc\r\r\nd\r\n");
	buf_free(&out);
}
END_TEST

START_TEST(decode_overflow_keeps_counting)
{
	struct buf out = BUF_INIT(8);
	struct smtp_data_dec d;
	const char *in = "0123456789\r\nabcdef\r\n.\r\n";

	ck_assert_uint_eq(decode_steps(in, strlen(in), 3, false, &out, &d), strlen(in));
	ck_assert_int_eq(d.state, SMTP_DEC_DONE);
	ck_assert(d.overflow);
	ck_assert_uint_eq(d.out_len, 20);
	ck_assert_uint_le(out.len, 8);
	buf_free(&out);
}
END_TEST

/* ---- framer ---- */

START_TEST(frame_lines)
{
	check_stream("EHLO x\r\nMAIL FROM:<a@b>\r\nNOOP\n", 512, 64, false,
	             "[L:EHLO x\r\n][L:MAIL FROM:<a@b>\r\n][L:NOOP\n]");
	check_stream("NOOP\r\nQUI", 512, 64, false, "[L:NOOP\r\n][...]");
}
END_TEST

START_TEST(frame_long_line)
{
	check_stream("NOOP 0123456789012345678901234567890123456789\r\nNOOP\r\n", 16, 8, false,
	             "[E][L:NOOP\r\n]");
	/* Exactly at the bound is fine, one over is not. */
	check_stream("NOOP 123456789\r\nNOOP 1234567890\r\nQUIT\r\n", 16, 8, false,
	             "[L:NOOP 123456789\r\n][E][L:QUIT\r\n]");
}
END_TEST

START_TEST(frame_data)
{
	check_stream("MAIL FROM:<a@b>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n",
	             512, 4, false,
	             "[L:MAIL FROM:<a@b>\r\n][L:DATA\r\n][D:Subject: x\r\n\r\n.dot\r\nbody\r\n]"
	             "[L:QUIT\r\n]");
	/* Pipelined transactions after the data stay separate. */
	check_stream("DATA\r\none\r\n.\r\nRSET\r\nDATA\r\ntwo\r\n.\r\n", 512, 3, false,
	             "[L:DATA\r\n][D:one\r\n][L:RSET\r\n][L:DATA\r\n][D:two\r\n]");
}
END_TEST

START_TEST(frame_data_smuggling)
{
	for (size_t s = 0; s < sizeof(smuggling) / sizeof(smuggling[0]); s++) {
		struct buf stream = BUF_INIT(0), want = BUF_INIT(0);

		buf_printf(&stream,
		           "DATA\r\nbody%sMAIL FROM:<e@x>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n",
		           smuggling[s]);
		/* With reject (no normalisation) the decoded text is the
		 * input as it came: one message, the smuggled part inside. */
		buf_printf(&want, "[L:DATA\r\n][D:body%s", smuggling[s]);
		/* A dot right after a real CRLF is stuffing and goes. */
		{
			char *p = strstr((char *)want.data + 10, "\r\n.");

			if (p != NULL && strstr(smuggling[s], "\r\n.") != NULL)
				memmove(p + 2, p + 3, strlen(p + 3) + 1), want.len--;
		}
		buf_append_str(&want, "MAIL FROM:<e@x>\r\nDATA\r\nevil\r\n][L:QUIT\r\n]");
		check_stream((const char *)stream.data, 512, 5, false, buf_cstr(&want));
		buf_free(&stream);
		buf_free(&want);
	}
}
END_TEST

START_TEST(frame_bdat)
{
	check_stream(
	    "BDAT 5\r\nhelloBDAT 13 LAST\r\n\r\n.\r\nMAIL x\r\nQUIT\r\n", 512, 4, false,
	    "[L:BDAT 5\r\n][B:hello][L:BDAT 13 LAST\r\n][B:\r\n.\r\nMAIL x\r\n][L:QUIT\r\n]");
	/* BDAT 0 LAST has no chunk; a bad size frames no chunk either. */
	check_stream("bdat 0 last\r\nBDAT x\r\nNOOP\r\n", 512, 4, false,
	             "[L:bdat 0 last\r\n][L:BDAT x\r\n][L:NOOP\r\n]");
	/* A NUL in the line makes it no BDAT for the framer (and the worker). */
	{
		static const char nul[] = "BDAT 3\0\r\nabc\r\n";
		static const char want[] = "[L:BDAT 3\0\r\n][L:abc\r\n]";
		struct buf log = BUF_INIT(0);

		simulate(nul, sizeof(nul) - 1, 1, 512, 4, false, &log);
		ck_assert_uint_eq(log.len, sizeof(want) - 1);
		ck_assert(memcmp(log.data, want, log.len) == 0);
		buf_free(&log);
	}
}
END_TEST

START_TEST(frame_bdat_parse)
{
	uint64_t n;
	bool last;

	ck_assert_int_eq(smtp_parse_bdat("100", &n, &last), 0);
	ck_assert_uint_eq(n, 100);
	ck_assert(!last);
	ck_assert_int_eq(smtp_parse_bdat("0 LAST", &n, &last), 0);
	ck_assert(last);
	ck_assert_int_eq(smtp_parse_bdat("18446744073709551615", &n, &last), 0);
	ck_assert_int_eq(smtp_parse_bdat("18446744073709551616", &n, &last), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_bdat("", &n, &last), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_bdat("-1", &n, &last), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_bdat("1 LASTX", &n, &last), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_bdat("1 FIRST", &n, &last), ROOST_EINVAL);
}
END_TEST

/* ---- parsers ---- */

START_TEST(parse_u64)
{
	uint64_t n = 7;

	ck_assert_int_eq(smtp_parse_u64("0", 1, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(smtp_parse_u64("123x", 3, &n), 0);
	ck_assert_uint_eq(n, 123);
	ck_assert_int_eq(smtp_parse_u64("18446744073709551615", 20, &n), 0);
	ck_assert(n == UINT64_MAX);
	ck_assert_int_eq(smtp_parse_u64("18446744073709551616", 20, &n), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_u64("", 0, &n), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_u64("1 2", 3, &n), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_u64("+1", 2, &n), ROOST_EINVAL);
}
END_TEST

START_TEST(parse_verb)
{
	char verb[16];
	const char *args;

	ck_assert_int_eq(smtp_parse_verb("ehlo client.example", verb, sizeof(verb), &args), 0);
	ck_assert_str_eq(verb, "EHLO");
	ck_assert_str_eq(args, "client.example");
	ck_assert_int_eq(smtp_parse_verb("QUIT", verb, sizeof(verb), &args), 0);
	ck_assert_str_eq(args, "");
	ck_assert_int_eq(smtp_parse_verb("", verb, sizeof(verb), &args), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_verb("MAIL:FROM", verb, sizeof(verb), &args), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_verb("ABCDEFGHIJKLMNOPQRSTUVWXYZ", verb, sizeof(verb), &args),
	                 ROOST_EINVAL);
}
END_TEST

START_TEST(parse_path)
{
	char addr[SMTP_MAX_PATH + 1];
	const char *params;

	ck_assert_int_eq(smtp_parse_path("<alice@example.org> SIZE=10", false, addr, &params), 0);
	ck_assert_str_eq(addr, "alice@example.org");
	ck_assert_str_eq(params, "SIZE=10");
	ck_assert_int_eq(smtp_parse_path(" <a.b+c@[192.0.2.1]>", false, addr, &params), 0);
	ck_assert_str_eq(addr, "a.b+c@[192.0.2.1]");
	ck_assert_int_eq(smtp_parse_path("<>", true, addr, &params), 0);
	ck_assert_str_eq(addr, "");
	ck_assert_int_eq(smtp_parse_path("<>", false, addr, &params), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_path("<@relay.example:bob@example.org>", false, addr, &params),
	                 0);
	ck_assert_str_eq(addr, "bob@example.org");
	ck_assert_int_eq(smtp_parse_path("<\"john doe\"@example.org>", false, addr, &params), 0);
	ck_assert_str_eq(addr, "\"john doe\"@example.org");
	ck_assert_int_eq(smtp_parse_path("<Postmaster>", false, addr, &params), 0);
	ck_assert_str_eq(addr, "postmaster");
	ck_assert_int_eq(smtp_parse_path("bob@example.org", false, addr, &params), 0);
	ck_assert_str_eq(addr, "bob@example.org");
	ck_assert_int_eq(smtp_parse_path("<j\xc3\xb6rg@example.org>", false, addr, &params), 0);
	ck_assert(smtp_addr_is_utf8(addr));

	static const char *const bad[] = {
	    "<alice@example.org",
	    "<alice>",
	    "<@example.org>",
	    "<a..b@example.org>",
	    "<.a@example.org>",
	    "<a@-example.org>",
	    "<a@example..org>",
	    "<a b@example.org>",
	    "<a@example.org>x",
	    "<a@[]>",
	    "<\"a\r\"@example.org>",
	    "<a@b@c>",
	    "",
	    "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(smtp_parse_path(bad[i], false, addr, &params) == ROOST_EINVAL,
		              "accepted %s", bad[i]);
}
END_TEST

START_TEST(parse_mail_params)
{
	struct smtp_mail_params p;
	const char *bad;

	ck_assert_int_eq(smtp_parse_mail_params("SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS "
	                                        "ENVID=QQ314159 AUTH=<>",
	                                        5000, &p, &bad),
	                 0);
	ck_assert_uint_eq(p.size, 1000);
	ck_assert(p.body_8bit);
	ck_assert(p.smtputf8);
	ck_assert_str_eq(p.ret, "HDRS");
	ck_assert_str_eq(p.envid, "QQ314159");
	ck_assert_int_eq(smtp_parse_mail_params("", 5000, &p, &bad), 0);
	ck_assert_int_eq(smtp_parse_mail_params("size=5001", 5000, &p, &bad), ROOST_ETOOBIG);
	ck_assert_int_eq(smtp_parse_mail_params("SIZE=99999999999999999999999", 5000, &p, &bad),
	                 ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("SIZE=1 SIZE=2", 5000, &p, &bad), ROOST_EINVAL);
	ck_assert_str_eq(bad, "SIZE=2");
	ck_assert_int_eq(smtp_parse_mail_params("BODY=BINARYMIME REQUIRETLS", 5000, &p, &bad), 0);
	ck_assert(p.binarymime && p.requiretls && !p.body_8bit);
	ck_assert_int_eq(smtp_parse_mail_params("REQUIRETLS=yes", 5000, &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("REQUIRETLS REQUIRETLS", 5000, &p, &bad),
	                 ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("BODY=BINARYMIME BODY=7BIT", 5000, &p, &bad),
	                 ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("BODY=9BIT", 5000, &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("XFOO=1", 5000, &p, &bad), ROOST_ENOTSUP);
	ck_assert_int_eq(smtp_parse_mail_params("RET=ALL", 5000, &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("ENVID=a=b", 5000, &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("ENVID=a+2", 5000, &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_mail_params("ENVID=a+2B", 5000, &p, &bad), 0);
	ck_assert_int_eq(smtp_parse_mail_params("SMTPUTF8=yes", 5000, &p, &bad), ROOST_EINVAL);
}
END_TEST

START_TEST(parse_rcpt_params)
{
	struct smtp_rcpt_params p;
	const char *bad;

	ck_assert_int_eq(
	    smtp_parse_rcpt_params("NOTIFY=success,Failure ORCPT=rfc822;bob+40x.org", &p, &bad), 0);
	ck_assert_str_eq(p.notify, "SUCCESS,FAILURE");
	ck_assert_str_eq(p.orcpt, "rfc822;bob+40x.org");
	ck_assert_int_eq(smtp_parse_rcpt_params("NOTIFY=NEVER", &p, &bad), 0);
	ck_assert_int_eq(smtp_parse_rcpt_params("NOTIFY=NEVER,SUCCESS", &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_rcpt_params("NOTIFY=DELAY,DELAY", &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_rcpt_params("NOTIFY=", &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_rcpt_params("ORCPT=rfc822", &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_rcpt_params("ORCPT=;x", &p, &bad), ROOST_EINVAL);
	ck_assert_int_eq(smtp_parse_rcpt_params("FOO", &p, &bad), ROOST_ENOTSUP);
	ck_assert_str_eq(bad, "FOO");
}
END_TEST

static Suite *
smtp_suite(void)
{
	Suite *s = suite_create("smtp");
	TCase *dec = tcase_create("decoder");
	TCase *fr = tcase_create("framer");
	TCase *parse = tcase_create("parse");

	tcase_add_test(dec, decode_unstuffs_dots);
	tcase_add_test(dec, decode_empty_message);
	tcase_add_test(dec, decode_smuggling_never_ends);
	tcase_add_test(dec, decode_normalize);
	tcase_add_test(dec, decode_overflow_keeps_counting);
	tcase_add_test(fr, frame_lines);
	tcase_add_test(fr, frame_long_line);
	tcase_add_test(fr, frame_data);
	tcase_add_test(fr, frame_data_smuggling);
	tcase_add_test(fr, frame_bdat);
	tcase_add_test(fr, frame_bdat_parse);
	tcase_add_test(parse, parse_u64);
	tcase_add_test(parse, parse_verb);
	tcase_add_test(parse, parse_path);
	tcase_add_test(parse, parse_mail_params);
	tcase_add_test(parse, parse_rcpt_params);
	suite_add_tcase(s, dec);
	suite_add_tcase(s, fr);
	suite_add_tcase(s, parse);
	return s;
}

int
main(void)
{
	return check_run(smtp_suite());
}
