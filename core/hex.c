#include "roost/error.h"
#include "roost/hex.h"

int
hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
hex_byte(const char *s)
{
	int h = hex_digit((unsigned char)s[0]), l;

	if (h < 0 || (l = hex_digit((unsigned char)s[1])) < 0)
		return -1;
	return h << 4 | l;
}

int
hex_decode(const char *s, size_t len, struct buf *out)
{
	if (len % 2 != 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < len; i += 2) {
		int b = hex_byte(s + i);

		if (b < 0)
			return ROOST_EINVAL;
		if (buf_append_byte(out, (uint8_t)b) < 0)
			return ROOST_ETOOBIG;
	}
	return 0;
}

void
hex_encode(const void *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
}
