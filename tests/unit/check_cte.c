/* Content-Transfer-Encoding decoders (core/cte.c): each case decoded whole,
 * in steps of 7 and of 1 octet, with a prefix skipped, the input placed
 * against a guard page; the measure agrees with the decoding. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/cte.h"
#include "roost/sasl.h"

#include "check_guard.h"
#include "check_run.h"

/* Decode in[0..len) in steps of step octets after skipping skip. */
static void
decode(enum cte_kind kind, const uint8_t *in, size_t len, size_t step, size_t skip, struct buf *out)
{
	struct guarded g;
	struct cte_decoder d;
	uint8_t *chunk = malloc(step);
	size_t n;

	guard_init(&g, in, len);
	cte_decoder_init(&d, kind);
	/* the skip too may come in pieces */
	while (skip > 0 && (n = cte_decode(&d, g.data, len, NULL, skip < 3 ? skip : 3)) > 0)
		skip -= n;
	while ((n = cte_decode(&d, g.data, len, chunk, step)) > 0) {
		ck_assert_uint_le(n, step);
		buf_append(out, chunk, n);
	}
	ck_assert_uint_eq(cte_decode(&d, g.data, len, chunk, step), 0);
	free(chunk);
	guard_free(&g);
}

/* in decodes to want (wlen octets) whole, in steps, and with any prefix
 * skipped; the measure says wlen and whether want holds NUL. */
static void
check_dec(enum cte_kind kind, const void *in, size_t len, const void *want, size_t wlen)
{
	static const size_t steps[] = {1 << 20, 7, 2, 1};
	struct buf out = BUF_INIT(0);
	uint64_t size;
	bool nul;

	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		buf_reset(&out);
		decode(kind, in, len, steps[k], 0, &out);
		if (out.len != wlen || (wlen > 0 && memcmp(out.data, want, wlen) != 0))
			ck_abort_msg("kind %d step %zu: got %zu octets \"%.*s\", want %zu",
			             (int)kind, steps[k], out.len, (int)out.len,
			             (const char *)out.data, wlen);
	}
	for (size_t skip = 0; skip <= wlen + 1; skip += (wlen > 64 ? wlen / 16 : 1)) {
		buf_reset(&out);
		decode(kind, in, len, 5, skip, &out);
		size_t rest = skip < wlen ? wlen - skip : 0;
		ck_assert_uint_eq(out.len, rest);
		ck_assert(rest == 0 || memcmp(out.data, (const uint8_t *)want + skip, rest) == 0);
	}
	struct guarded g;
	guard_init(&g, in, len);
	cte_measure(kind, g.data, len, &size, &nul);
	guard_free(&g);
	ck_assert_uint_eq(size, wlen);
	ck_assert(nul == (memchr(want, '\0', wlen) != NULL));
	buf_free(&out);
}

#define CHECK(kind, in, want) check_dec(kind, in, sizeof(in) - 1, want, sizeof(want) - 1)

START_TEST(kinds)
{
	ck_assert_int_eq(cte_kind_from_name(NULL), CTE_TEXT);
	ck_assert_int_eq(cte_kind_from_name(""), CTE_TEXT);
	ck_assert_int_eq(cte_kind_from_name("7BIT"), CTE_TEXT);
	ck_assert_int_eq(cte_kind_from_name("8bit"), CTE_TEXT);
	ck_assert_int_eq(cte_kind_from_name("Binary"), CTE_BINARY);
	ck_assert_int_eq(cte_kind_from_name("BASE64"), CTE_BASE64);
	ck_assert_int_eq(cte_kind_from_name("Quoted-Printable"), CTE_QP);
	ck_assert_int_eq(cte_kind_from_name("x-uuencode"), CTE_UNKNOWN);
	ck_assert_int_eq(cte_kind_from_name("base-64"), CTE_UNKNOWN);
	ck_assert_int_eq(cte_kind_from_name("quoted-printable2"), CTE_UNKNOWN);
}
END_TEST

START_TEST(base64)
{
	CHECK(CTE_BASE64, "aGVsbG8=", "hello");
	CHECK(CTE_BASE64, "aGVsbG8gd29ybGQ=\r\n", "hello world");
	/* line breaks, spaces and garbage between symbols are ignored */
	CHECK(CTE_BASE64,
	      "aG\r\nVs\n bG*8g\td2!9y\x01"
	      "bGQ=",
	      "hello world");
	/* the first '=' ends the data; what follows is not decoded */
	CHECK(CTE_BASE64, "aGk=aGVsbG8=", "hi");
	CHECK(CTE_BASE64, "aGk==", "hi");
	/* left-over bits short of a byte are dropped; no padding is fine */
	CHECK(CTE_BASE64, "aGk", "hi");
	CHECK(CTE_BASE64, "aGkx2", "hi1");
	CHECK(CTE_BASE64, "a", "");
	CHECK(CTE_BASE64, "", "");
	CHECK(CTE_BASE64, "====", "");
	CHECK(CTE_BASE64, "AAAA", "\0\0\0");
	/* every byte value, encoded in 76-column lines */
	uint8_t all[768];
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (uint8_t)i;
	struct buf e = BUF_INIT(0), lines = BUF_INIT(0);
	ck_assert_int_eq(base64_encode(all, sizeof(all), &e), 0);
	for (size_t i = 0; i < e.len; i += 76) {
		buf_append(&lines, e.data + i, e.len - i < 76 ? e.len - i : 76);
		buf_append_str(&lines, "\r\n");
	}
	check_dec(CTE_BASE64, lines.data, lines.len, all, sizeof(all));
	buf_free(&e);
	buf_free(&lines);
}
END_TEST

START_TEST(quoted_printable)
{
	CHECK(CTE_QP, "caf=C3=A9", "caf\xc3\xa9");
	CHECK(CTE_QP, "caf=c3=a9", "caf\xc3\xa9"); /* lower case read too */
	/* soft breaks, with transport padding, CRLF or bare LF */
	CHECK(CTE_QP, "long=\r\nline= \t\r\nend=\nx", "longlineendx");
	/* hard breaks are CRLF, bare LF included */
	CHECK(CTE_QP, "a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n");
	/* white space before a line end is padding; inside, content */
	CHECK(CTE_QP, "a b \t\r\nc\t \nd  ", "a b\r\nc\r\nd");
	CHECK(CTE_QP, "   x", "   x");
	/* an '=' that escapes nothing is kept (RFC 2045 6.7 note 2) */
	CHECK(CTE_QP, "1=2 =G0 =4", "1=2 =G0 =4");
	CHECK(CTE_QP, "a=", "a");      /* soft break at the end */
	CHECK(CTE_QP, "a=  ", "a");    /* with padding */
	CHECK(CTE_QP, "a=\r", "a=\r"); /* a CR alone is no line end */
	CHECK(CTE_QP, "=00=0D=0A", "\0\r\n");
	CHECK(CTE_QP, "a\rb", "a\rb");
	CHECK(CTE_QP, "", "");
	/* a very long run of spaces: linear, kept or dropped whole */
	size_t n = 200000;
	char *sp = malloc(n + 3);
	memset(sp, ' ', n);
	memcpy(sp + n, "x\n", 2);
	char *want = malloc(n + 3);
	memset(want, ' ', n);
	memcpy(want + n, "x\r\n", 3);
	check_dec(CTE_QP, sp, n + 2, want, n + 3);
	check_dec(CTE_QP, sp, n, "", 0);
	free(sp);
	free(want);
}
END_TEST

START_TEST(identity)
{
	CHECK(CTE_TEXT, "a\r\nb\nc\n\nd", "a\r\nb\r\nc\r\n\r\nd");
	CHECK(CTE_TEXT, "\nx", "\r\nx");
	CHECK(CTE_TEXT, "\0\r\n\0", "\0\r\n\0");
	CHECK(CTE_BINARY, "a\nb\0\r\rc", "a\nb\0\r\rc");
	CHECK(CTE_BINARY, "", "");
	/* unknown: nothing is decoded */
	struct cte_decoder d;
	uint8_t o[4];
	cte_decoder_init(&d, CTE_UNKNOWN);
	ck_assert_uint_eq(cte_decode(&d, (const uint8_t *)"abc", 3, o, sizeof(o)), 0);
}
END_TEST

/* Random bytes: never a fault, never more out than the bound per step,
 * and the measure agrees with the decoding. */
START_TEST(garbage)
{
	static const enum cte_kind all_kinds[] = {CTE_TEXT, CTE_BINARY, CTE_BASE64, CTE_QP};
	uint8_t in[3000];
	unsigned seed = 1;

	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < sizeof(in); i++) {
			seed = seed * 1103515245 + 12345;
			/* many of the bytes the decoders care about */
			static const char hot[] = "=\r\n \tA0+/";
			uint8_t r = (uint8_t)(seed >> 16);
			in[i] = r < 128 ? (uint8_t)hot[r % (sizeof(hot) - 1)] : r;
		}
		for (size_t k = 0; k < 4; k++) {
			struct buf whole = BUF_INIT(0), bytes = BUF_INIT(0);
			uint64_t size;
			bool nul;

			decode(all_kinds[k], in, sizeof(in), 1 << 16, 0, &whole);
			decode(all_kinds[k], in, sizeof(in), 1, 0, &bytes);
			ck_assert_uint_eq(whole.len, bytes.len);
			ck_assert(whole.len == 0 || memcmp(whole.data, bytes.data, whole.len) == 0);
			cte_measure(all_kinds[k], in, sizeof(in), &size, &nul);
			ck_assert_uint_eq(size, whole.len);
			ck_assert(whole.len <= 2 * sizeof(in));
			buf_free(&whole);
			buf_free(&bytes);
		}
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("cte");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, kinds);
	tcase_add_test(tc, base64);
	tcase_add_test(tc, quoted_printable);
	tcase_add_test(tc, identity);
	tcase_add_test(tc, garbage);
	suite_add_tcase(s, tc);
	return check_run(s);
}
