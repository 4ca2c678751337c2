/*
 * base64 (RFC 4648 section 4, with padding), the encoding SASL exchanges use
 * in IMAP, POP3 and SMTP. Decoding is strict: the length must be a multiple
 * of four, padding only at the end, no whitespace, and the unused low bits of
 * the last symbol must be zero, so every byte string has exactly one accepted
 * encoding.
 */
#include <stdint.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/sasl.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0-63 for alphabet symbols, 64 for '=', 255 for everything else. */
static int8_t
symbol_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (int8_t)(c - 'A');
	if (c >= 'a' && c <= 'z')
		return (int8_t)(c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (int8_t)(c - '0' + 52);
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	if (c == '=')
		return 64;
	return -1;
}

int
base64_encode(const void *data, size_t len, struct buf *out)
{
	const uint8_t *p = data;
	size_t groups = len / 3 + (len % 3 != 0);
	uint8_t *dst;
	size_t i;
	int ret;

	if (groups > (SIZE_MAX - 1) / 4)
		return ROOST_ETOOBIG;
	if ((ret = buf_reserve(out, groups * 4)) < 0)
		return ret;
	dst = out->data + out->len;
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*dst++ = (uint8_t)alphabet[v >> 18];
		*dst++ = (uint8_t)alphabet[(v >> 12) & 63];
		*dst++ = (uint8_t)alphabet[(v >> 6) & 63];
		*dst++ = (uint8_t)alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*dst++ = (uint8_t)alphabet[v >> 18];
		*dst++ = (uint8_t)alphabet[(v >> 12) & 63];
		*dst++ = '=';
		*dst++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*dst++ = (uint8_t)alphabet[v >> 18];
		*dst++ = (uint8_t)alphabet[(v >> 12) & 63];
		*dst++ = (uint8_t)alphabet[(v >> 6) & 63];
		*dst++ = '=';
	}
	out->len += groups * 4;
	out->data[out->len] = '\0';
	return 0;
}

int
base64_decode(const char *text, size_t len, struct buf *out)
{
	size_t start = out->len;
	uint8_t bytes[3];
	int ret;

	if (len % 4 != 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		int8_t v[4];
		size_t n;

		for (size_t j = 0; j < 4; j++) {
			v[j] = symbol_value((unsigned char)text[i + j]);
			if (v[j] < 0)
				goto invalid;
		}
		/* '=' only in the last group, only in the last one or two places. */
		if (v[0] == 64 || v[1] == 64)
			goto invalid;
		if (v[2] == 64 && v[3] != 64)
			goto invalid;
		if ((v[2] == 64 || v[3] == 64) && i + 4 != len)
			goto invalid;
		if (v[2] == 64) {
			if ((v[1] & 15) != 0)
				goto invalid;
			n = 1;
		} else if (v[3] == 64) {
			if ((v[2] & 3) != 0)
				goto invalid;
			n = 2;
		} else {
			n = 3;
		}
		bytes[0] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		bytes[1] = (uint8_t)((v[1] & 15) << 4 | (n > 1 ? v[2] >> 2 : 0));
		bytes[2] = (uint8_t)((n > 2 ? (v[2] & 3) << 6 : 0) | (n > 2 ? v[3] : 0));
		if ((ret = buf_append(out, bytes, n)) < 0) {
			buf_truncate(out, start);
			return ret;
		}
	}
	return 0;
invalid:
	buf_truncate(out, start);
	return ROOST_EINVAL;
}
