#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/sasl.h"

#include "check_run.h"

/* RFC 4648 section 10 vectors. */
static const char *const vectors[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

START_TEST(rfc4648_vectors)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct buf b = BUF_INIT(0);

		ck_assert_int_eq(base64_encode(vectors[i][0], strlen(vectors[i][0]), &b), 0);
		ck_assert_str_eq(buf_cstr(&b), vectors[i][1]);
		buf_reset(&b);
		ck_assert_int_eq(base64_decode(vectors[i][1], strlen(vectors[i][1]), &b), 0);
		ck_assert_uint_eq(b.len, strlen(vectors[i][0]));
		ck_assert_str_eq(buf_cstr(&b), vectors[i][0]);
		buf_free(&b);
	}
}
END_TEST

START_TEST(binary_round_trip)
{
	uint8_t all[256];
	struct buf enc = BUF_INIT(0), dec = BUF_INIT(0);

	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	for (size_t n = 0; n <= sizeof(all); n++) {
		buf_reset(&enc);
		buf_reset(&dec);
		ck_assert_int_eq(base64_encode(all, n, &enc), 0);
		ck_assert_uint_eq(enc.len, (n + 2) / 3 * 4);
		ck_assert_int_eq(base64_decode((const char *)enc.data, enc.len, &dec), 0);
		ck_assert_uint_eq(dec.len, n);
		if (n > 0)
			ck_assert_int_eq(memcmp(dec.data, all, n), 0);
	}
	buf_free(&enc);
	buf_free(&dec);
}
END_TEST

START_TEST(appends_to_existing)
{
	struct buf b = BUF_INIT(0);

	buf_append_str(&b, "x:");
	ck_assert_int_eq(base64_encode("hi", 2, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "x:aGk=");
	ck_assert_int_eq(base64_decode("aGk=", 4, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "x:aGk=hi");
	buf_free(&b);
}
END_TEST

START_TEST(rejects_malformed)
{
	static const char *const bad[] = {
	    "Zg",   "Zg=",      "Zm9",      "Z===",
	    "====", "Zg==Zg==", "Zm9v\n",   " Zm9v",
	    "Zm 9", "Zm9v!A==", "Zh==", /* nonzero unused bits */
	    "Zm9=", "Zm=v",     "Zm9vYg=A", "\x80\x80\x80\x80",
	};
	struct buf b = BUF_INIT(0);

	buf_append_str(&b, "keep");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(base64_decode(bad[i], strlen(bad[i]), &b) == ROOST_EINVAL,
		              "accepted \"%s\"", bad[i]);
		/* A failed decode leaves the buffer as it was. */
		ck_assert_str_eq(buf_cstr(&b), "keep");
	}
	buf_free(&b);
}
END_TEST

START_TEST(respects_buffer_max)
{
	struct buf b = BUF_INIT(5);

	ck_assert_int_eq(base64_encode("abcd", 4, &b), ROOST_ETOOBIG);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(base64_decode("Zm9vYmFy", 8, &b), ROOST_ETOOBIG);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(base64_decode("Zm9vYg==", 8, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "foob");
	buf_free(&b);
}
END_TEST

static Suite *
base64_suite(void)
{
	Suite *s = suite_create("base64");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, rfc4648_vectors);
	tcase_add_test(tc, binary_round_trip);
	tcase_add_test(tc, appends_to_existing);
	tcase_add_test(tc, rejects_malformed);
	tcase_add_test(tc, respects_buffer_max);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(base64_suite());
}
