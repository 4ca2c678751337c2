#include <check.h>
#include <stdio.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/hex.h"

#include "check_run.h"

START_TEST(digits)
{
	for (int c = 0; c < 256; c++) {
		int want = c >= '0' && c <= '9'   ? c - '0'
		           : c >= 'a' && c <= 'f' ? c - 'a' + 10
		           : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                                  : -1;

		ck_assert_int_eq(hex_digit((unsigned char)c), want);
	}
	/* a signed char above 0x7f is no digit either */
	ck_assert_int_eq(hex_digit((unsigned char)(char)-16), -1);
}
END_TEST

START_TEST(bytes)
{
	char s[3];

	for (int b = 0; b < 256; b++) {
		snprintf(s, sizeof(s), "%02x", b);
		ck_assert_int_eq(hex_byte(s), b);
		snprintf(s, sizeof(s), "%02X", b);
		ck_assert_int_eq(hex_byte(s), b);
	}
	ck_assert_int_eq(hex_byte("g0"), -1);
	ck_assert_int_eq(hex_byte("0g"), -1);
	/* the second character is not read after a bad first one */
	ck_assert_int_eq(hex_byte("x"), -1);
}
END_TEST

START_TEST(encode_decode)
{
	static const uint8_t data[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
	char text[sizeof(data) * 2 + 1];
	struct buf b = BUF_INIT(0), small = BUF_INIT(2);

	hex_encode(data, sizeof(data), text);
	ck_assert_str_eq(text, "00017f80abff");
	hex_encode(data, 0, text);
	ck_assert_str_eq(text, "");
	ck_assert_int_eq(hex_decode("00017F80ABff", 12, &b), 0);
	ck_assert_uint_eq(b.len, sizeof(data));
	ck_assert(memcmp(b.data, data, sizeof(data)) == 0);
	buf_reset(&b);
	ck_assert_int_eq(hex_decode("abc", 3, &b), ROOST_EINVAL);
	ck_assert_int_eq(hex_decode("zz", 2, &b), ROOST_EINVAL);
	ck_assert_int_eq(hex_decode("", 0, &b), 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(hex_decode("010203", 6, &small), ROOST_ETOOBIG);
	buf_free(&b);
	buf_free(&small);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("hex");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, digits);
	tcase_add_test(tc, bytes);
	tcase_add_test(tc, encode_decode);
	suite_add_tcase(s, tc);
	return check_run(s);
}
