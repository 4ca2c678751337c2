#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/pop3.h"

#include "check_guard.h"
#include "check_run.h"

/* ---- helpers ---- */

/* Copy data so that its last byte is the last byte before a PROT_NONE page:
 * any read past the end faults. */
/* Run the framer over a stream delivered in pieces of step bytes, the way
 * the runtime does: the buffer grows until a result other than AGAIN, then
 * the used bytes are removed. Results as text: "L<line>|" for a line, "T|"
 * for an overlong one (discards leave no trace). */
static void
frame_stream_exact(const char *stream, size_t step, size_t max, char *out, size_t outlen)
{
	struct pop3_framer f = {0, false};
	uint8_t buf[65536];
	size_t have = 0, fed = 0, total = strlen(stream), o = 0;

	out[0] = '\0';
	while (fed < total) {
		size_t n = total - fed < step ? total - fed : step;

		memcpy(buf + have, stream + fed, n);
		have += n;
		fed += n;
		while (have > 0) {
			size_t used = 0, len;
			enum pop3_frame_res r = pop3_frame(&f, buf, have, max, &used);

			if (r == POP3_FRAME_AGAIN)
				break;
			ck_assert_uint_gt(used, 0);
			ck_assert_uint_le(used, have);
			if (r == POP3_FRAME_LINE) {
				len = used;
				pop3_strip_eol(buf, &len);
				ck_assert_uint_lt(o + len + 3, outlen);
				out[o++] = 'L';
				memcpy(out + o, buf, len);
				o += len;
				out[o++] = '|';
			} else if (r == POP3_FRAME_TOOLONG) {
				ck_assert_uint_lt(o + 2, outlen);
				out[o++] = 'T';
				out[o++] = '|';
			}
			memmove(buf, buf + used, have - used);
			have -= used;
		}
		ck_assert_uint_lt(have, max + step + 1);
	}
	out[o] = '\0';
}

/* Encode data[0..len) with the given input step and output capacity. */
static uint8_t *
encode(const uint8_t *data, size_t len, uint64_t lines, size_t step, size_t cap, size_t *out_len)
{
	struct pop3_encoder e;
	size_t alloc = 2 * len + 16, o = 0, off = 0;
	uint8_t *out = malloc(alloc);
	uint8_t *tmp = malloc(cap);

	pop3_enc_init(&e, lines);
	while (off < len) {
		size_t chunk = len - off < step ? len - off : step;
		size_t used, n;

		n = pop3_enc_feed(&e, data + off, chunk, tmp, cap, &used);
		ck_assert(used > 0 || n > 0);
		ck_assert_uint_le(n, cap);
		ck_assert_uint_le(o + n, alloc);
		memcpy(out + o, tmp, n);
		o += n;
		off += used;
		if (e.done)
			break;
	}
	o += pop3_enc_finish(&e, out + o);
	free(tmp);
	*out_len = o;
	return out;
}

/* Undo dot-stuffing and remove the final ".\r\n" as a client does, and
 * check the output's framing: only CRLF line ends, no line starting with a
 * single '.' before the end. */
static size_t
client_unstuff(const uint8_t *p, size_t len, uint8_t *out)
{
	size_t i = 0, o = 0;
	bool line_start = true;

	ck_assert_uint_ge(len, 3);
	ck_assert_int_eq(memcmp(p + len - 3, ".\r\n", 3), 0);
	ck_assert(len == 3 || (p[len - 5] == '\r' && p[len - 4] == '\n'));
	len -= 3;
	while (i < len) {
		if (line_start && p[i] == '.') {
			ck_assert(i + 1 < len && p[i + 1] == '.');
			i++;
		}
		if (p[i] == '\n')
			ck_assert(i > 0 && p[i - 1] == '\r');
		line_start = p[i] == '\n';
		out[o++] = p[i++];
	}
	return o;
}

/* ---- framing ---- */

START_TEST(frame_lines_whole_and_bytewise)
{
	const char *in = "USER a\r\nPASS b c\nSTAT\r\n\r\nQUIT\r\n";
	const char *want = "LUSER a|LPASS b c|LSTAT|L|LQUIT|";
	char out[512];
	size_t steps[] = {1, 2, 3, 7, 100};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		frame_stream_exact(in, steps[i], 64, out, sizeof(out));
		ck_assert_str_eq(out, want);
	}
}
END_TEST

START_TEST(frame_overlong_lines)
{
	char in[2048];
	char out[512];
	size_t steps[] = {1, 5, 16, 17, 64, 1000};

	/* 100-byte line, limit 32 (including the terminator). */
	snprintf(in, sizeof(in), "NOOP\r\n%.*s\r\nSTAT\r\n", 100,
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		frame_stream_exact(in, steps[i], 32, out, sizeof(out));
		ck_assert_str_eq(out, "LNOOP|T|LSTAT|");
	}
	/* Exactly at the bound is fine; one more is too long. */
	frame_stream_exact("0123456789\r\n", 1, 12, out, sizeof(out));
	ck_assert_str_eq(out, "L0123456789|");
	frame_stream_exact("0123456789\r\n", 100, 12, out, sizeof(out));
	ck_assert_str_eq(out, "L0123456789|");
	frame_stream_exact("0123456789a\r\nNOOP\n", 1, 12, out, sizeof(out));
	ck_assert_str_eq(out, "T|LNOOP|");
	frame_stream_exact("0123456789a\r\nNOOP\n", 100, 12, out, sizeof(out));
	ck_assert_str_eq(out, "T|LNOOP|");
}
END_TEST

START_TEST(frame_guard_page)
{
	struct pop3_framer f = {0, false};
	struct guarded g;
	size_t used;

	guard_init(&g, "STAT", 4);
	ck_assert_int_eq(pop3_frame(&f, g.data, 4, 100, &used), POP3_FRAME_AGAIN);
	guard_free(&g);
	guard_init(&g, "STAT\n", 5);
	ck_assert_int_eq(pop3_frame(&f, g.data, 5, 100, &used), POP3_FRAME_LINE);
	ck_assert_uint_eq(used, 5);
	guard_free(&g);
}
END_TEST

/* ---- line parsing ---- */

static int
parse(const char *s, struct pop3_line *l)
{
	return pop3_parse_line((const uint8_t *)s, strlen(s), l);
}

static bool
arg_is(const struct pop3_arg *a, const char *s)
{
	return a->len == strlen(s) && memcmp(a->p, s, a->len) == 0;
}

START_TEST(parse_commands)
{
	struct pop3_line l;

	ck_assert_int_eq(parse("stat", &l), 0);
	ck_assert_str_eq(l.keyword, "STAT");
	ck_assert_uint_eq(l.nargs, 0);
	ck_assert_int_eq(parse("Top 1 10", &l), 0);
	ck_assert_str_eq(l.keyword, "TOP");
	ck_assert_uint_eq(l.nargs, 2);
	ck_assert(arg_is(&l.args[0], "1"));
	ck_assert(arg_is(&l.args[1], "10"));
	ck_assert_int_eq(parse("PASS  my secret pass ", &l), 0);
	ck_assert(arg_is(&l.rest, " my secret pass "));
	ck_assert_uint_eq(l.nargs, 3);
	ck_assert(!l.too_many);
	ck_assert_int_eq(parse("LIST 1 2 3 4", &l), 0);
	ck_assert(l.too_many);
	ck_assert_int_eq(parse("UTF8", &l), 0);
	ck_assert_str_eq(l.keyword, "UTF8");
	ck_assert_int_eq(parse("LIST ", &l), 0);
	ck_assert_uint_eq(l.nargs, 0);
	ck_assert_int_eq(parse("AUTH PLAIN =", &l), 0);
	ck_assert(arg_is(&l.args[1], "="));
}
END_TEST

START_TEST(parse_rejects)
{
	struct pop3_line l;
	const char *bad[] = {"", " STAT", "STATS", "ST-T", "\x80\x81", "RETR\t1", "LIST\x01"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(parse(bad[i], &l) == ROOST_EINVAL, "accepted '%s'", bad[i]);
	ck_assert_int_eq(pop3_parse_line((const uint8_t *)"RETR \0 1", 8, &l), ROOST_EINVAL);
	ck_assert_int_eq(pop3_parse_line((const uint8_t *)"\0", 1, &l), ROOST_EINVAL);
}
END_TEST

START_TEST(parse_guard_page)
{
	const char *lines[] = {"STAT", "TOP 1 2", "PASS x", "LIST ", "X", "ABCDE"};

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct pop3_line l;
		struct guarded g;

		guard_init(&g, lines[i], strlen(lines[i]));
		(void)pop3_parse_line(g.data, strlen(lines[i]), &l);
		guard_free(&g);
	}
}
END_TEST

START_TEST(parse_numbers)
{
	struct {
		const char *s;
		int r;
		uint32_t v;
	} cases[] = {
	    {"0", 0, 0},
	    {"1", 0, 1},
	    {"0001", 0, 1},
	    {"4294967295", 0, UINT32_MAX},
	    {"4294967296", ROOST_EINVAL, 0},
	    {"9999999999", ROOST_EINVAL, 0},
	    {"42949672950", ROOST_EINVAL, 0},
	    {"99999999999999999999999", ROOST_EINVAL, 0},
	    {"-1", ROOST_EINVAL, 0},
	    {"+1", ROOST_EINVAL, 0},
	    {"1a", ROOST_EINVAL, 0},
	    {"0x10", ROOST_EINVAL, 0},
	    {"", ROOST_EINVAL, 0},
	    {" 1", ROOST_EINVAL, 0},
	    {"1.5", ROOST_EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t v = 12345;
		struct guarded g;
		size_t len = strlen(cases[i].s);

		guard_init(&g, cases[i].s, len);
		ck_assert_msg(pop3_parse_number(g.data, len, &v) == cases[i].r, "'%s'", cases[i].s);
		if (cases[i].r == 0)
			ck_assert_uint_eq(v, cases[i].v);
		guard_free(&g);
	}
	ck_assert_int_eq(pop3_parse_number((const uint8_t *)"1\0", 2, &(uint32_t){0}),
	                 ROOST_EINVAL);
}
END_TEST

/* ---- encoder ---- */

static void
check_encode(const char *in, uint64_t lines, const char *want)
{
	size_t steps[] = {1, 2, 3, 1000};
	size_t caps[] = {2, 3, 5, 4096};
	size_t len = strlen(in);

	for (size_t i = 0; i < 4; i++) {
		for (size_t j = 0; j < 4; j++) {
			size_t n;
			uint8_t *out =
			    encode((const uint8_t *)in, len, lines, steps[i], caps[j], &n);

			ck_assert_msg(n == strlen(want) && memcmp(out, want, n) == 0,
			              "step %zu cap %zu: '%.*s' want '%s'", steps[i], caps[j],
			              (int)n, out, want);
			free(out);
		}
	}
	if (lines == POP3_ALL_LINES) {
		/* STAT/LIST octets = what the client gets after unstuffing. */
		size_t n;
		uint8_t *out = encode((const uint8_t *)in, len, lines, 1000, 4096, &n);
		uint8_t *plain = malloc(n + 1);

		ck_assert_uint_eq(pop3_octets((const uint8_t *)in, len),
		                  client_unstuff(out, n, plain));
		free(plain);
		free(out);
	}
}

START_TEST(encode_line_ends_and_dots)
{
	check_encode("", POP3_ALL_LINES, ".\r\n");
	check_encode("a\r\nb\r\n", POP3_ALL_LINES, "a\r\nb\r\n.\r\n");
	check_encode("a\nb\n", POP3_ALL_LINES, "a\r\nb\r\n.\r\n");
	check_encode("a\nb", POP3_ALL_LINES, "a\r\nb\r\n.\r\n");
	check_encode(".\r\n", POP3_ALL_LINES, "..\r\n.\r\n");
	check_encode("x\n.\n..\n.x\n", POP3_ALL_LINES, "x\r\n..\r\n...\r\n..x\r\n.\r\n");
	check_encode("a.b\r\n", POP3_ALL_LINES, "a.b\r\n.\r\n");
	check_encode("a\rb\r\n", POP3_ALL_LINES, "a\rb\r\n.\r\n");
	check_encode("a\r", POP3_ALL_LINES, "a\r\r\n.\r\n");
	check_encode("\r\r\n", POP3_ALL_LINES, "\r\r\n.\r\n");
	check_encode("\r.\n", POP3_ALL_LINES, "\r.\r\n.\r\n");
	check_encode("\n\n", POP3_ALL_LINES, "\r\n\r\n.\r\n");
	check_encode(".", POP3_ALL_LINES, "..\r\n.\r\n");
}
END_TEST

START_TEST(encode_top)
{
	const char *m = "Subject: x\r\nFrom: y\r\n\r\nl1\r\n.l2\r\nl3\r\n";

	check_encode(m, 0, "Subject: x\r\nFrom: y\r\n\r\n.\r\n");
	check_encode(m, 1, "Subject: x\r\nFrom: y\r\n\r\nl1\r\n.\r\n");
	check_encode(m, 2, "Subject: x\r\nFrom: y\r\n\r\nl1\r\n..l2\r\n.\r\n");
	check_encode(m, 3, "Subject: x\r\nFrom: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	check_encode(m, 100, "Subject: x\r\nFrom: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	check_encode(m, UINT32_MAX, "Subject: x\r\nFrom: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	/* LF-only storage, and a header without a body. */
	check_encode("A: b\n\nbody\nmore\n", 1, "A: b\r\n\r\nbody\r\n.\r\n");
	check_encode("A: b\nC: d", 0, "A: b\r\nC: d\r\n.\r\n");
	check_encode("A: b\n\nlast", 5, "A: b\r\n\r\nlast\r\n.\r\n");
}
END_TEST

START_TEST(encode_random_octets)
{
	const char alphabet[] = "ab.\r\n";
	unsigned seed = 12345;

	for (int round = 0; round < 3000; round++) {
		size_t len = (size_t)(rand_r(&seed) % 40);
		uint8_t in[64];
		size_t n1, n2;
		uint8_t *a, *b;
		uint8_t plain[200];

		for (size_t i = 0; i < len; i++)
			in[i] = (uint8_t)alphabet[rand_r(&seed) % 5];
		a = encode(in, len, POP3_ALL_LINES, 1000, 4096, &n1);
		b = encode(in, len, POP3_ALL_LINES, 1 + (size_t)(rand_r(&seed) % 4),
		           2 + (size_t)(rand_r(&seed) % 5), &n2);
		ck_assert_uint_eq(n1, n2);
		ck_assert_int_eq(memcmp(a, b, n1), 0);
		ck_assert_uint_eq(pop3_octets(in, len), client_unstuff(a, n1, plain));
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(encode_guard_page)
{
	const char *m = "Subject: x\n\n.body\nend";
	struct guarded g;
	size_t n;
	uint8_t *out;

	guard_init(&g, m, strlen(m));
	out = encode(g.data, strlen(m), POP3_ALL_LINES, 1, 2, &n);
	free(out);
	out = encode(g.data, strlen(m), 0, 3, 7, &n);
	free(out);
	ck_assert_uint_eq(pop3_octets(g.data, strlen(m)), strlen(m) + 3 + 2);
	guard_free(&g);
}
END_TEST

START_TEST(encode_large_streams_in_chunks)
{
	/* 1 MB of LF lines, some starting with '.', through a 16 KB window. */
	size_t len = 1 << 20, n;
	uint8_t *m = malloc(len);
	uint8_t *out, *plain;

	for (size_t i = 0; i < len; i++)
		m[i] = (i % 50 == 49) ? '\n' : (i % 50 == 0 && i % 100 == 0) ? '.' : 'x';
	out = encode(m, len, POP3_ALL_LINES, 16384, 32768, &n);
	plain = malloc(n);
	ck_assert_uint_eq(pop3_octets(m, len), client_unstuff(out, n, plain));
	ck_assert_uint_eq(pop3_octets(m, len), len + len / 50 + 2);
	free(plain);
	free(out);
	free(m);
}
END_TEST

/* ---- UIDL ---- */

START_TEST(uidl_format)
{
	char u[POP3_UIDL_LEN + 1];

	pop3_uidl(1700000000u, 1, u);
	ck_assert_str_eq(u, "000000016553F100");
	pop3_uidl(UINT32_MAX, UINT32_MAX, u);
	ck_assert_str_eq(u, "FFFFFFFFFFFFFFFF");
	ck_assert_uint_eq(strlen(u), POP3_UIDL_LEN);
}
END_TEST

/* ---- maildrop lock ---- */

START_TEST(lock_excludes_and_dies_with_fd)
{
	char dir[] = "/tmp/roost-pop3-lock-XXXXXX";
	int fd1 = -1, fd2 = -1, status;
	pid_t pid;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(pop3_lock_acquire(dir, "alice@example.org", &fd1), 0);
	ck_assert_int_ge(fd1, 0);
	/* Same process, second session. */
	ck_assert_int_eq(pop3_lock_acquire(dir, "alice@example.org", &fd2), ROOST_EINUSE);
	ck_assert_int_eq(fd2, -1);
	/* Another user is independent; odd names are escaped. */
	ck_assert_int_eq(pop3_lock_acquire(dir, "bob@example.org", &fd2), 0);
	pop3_lock_release(&fd2);
	ck_assert_int_eq(pop3_lock_acquire(dir, "../../etc/x/\x01", &fd2), 0);
	pop3_lock_release(&fd2);
	/* Another process. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = -1;

		close(fd1); /* the child's copy shares the description; drop it */
		_exit(pop3_lock_acquire(dir, "alice@example.org", &fd) == ROOST_EINUSE ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	pop3_lock_release(&fd1);
	ck_assert_int_eq(fd1, -1);
	pop3_lock_release(&fd1);
	ck_assert_int_eq(pop3_lock_acquire(dir, "alice@example.org", &fd2), 0);
	pop3_lock_release(&fd2);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

static Suite *
pop3_suite(void)
{
	Suite *s = suite_create("pop3");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, frame_lines_whole_and_bytewise);
	tcase_add_test(tc, frame_overlong_lines);
	tcase_add_test(tc, frame_guard_page);
	tcase_add_test(tc, parse_commands);
	tcase_add_test(tc, parse_rejects);
	tcase_add_test(tc, parse_guard_page);
	tcase_add_test(tc, parse_numbers);
	tcase_add_test(tc, encode_line_ends_and_dots);
	tcase_add_test(tc, encode_top);
	tcase_add_test(tc, encode_random_octets);
	tcase_add_test(tc, encode_guard_page);
	tcase_add_test(tc, encode_large_streams_in_chunks);
	tcase_add_test(tc, uidl_format);
	tcase_add_test(tc, lock_excludes_and_dies_with_fd);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(pop3_suite());
}
