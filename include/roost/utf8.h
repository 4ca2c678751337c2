#ifndef ROOST_UTF8_H
#define ROOST_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * UTF-8 decoding, encoding and validation: the one implementation that the
 * log (escaping client data), user and mailbox names, modified UTF-7 and
 * the message parser's charset handling share. Pure functions, thread-safe.
 */

/* The longest sequence utf8_encode() writes. */
#define UTF8_SEQ_MAX 4

/*
 * Decode the sequence at s[0..n), n > 0: its length (1 to 4) with the code
 * point in *cp_r, or 0 when it is not valid UTF-8 (a stray continuation
 * byte, a truncated or overlong sequence, a surrogate, above U+10FFFF).
 */
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp_r);

/*
 * Write the UTF-8 spelling of cp (at most U+10FFFF, not a surrogate: the
 * caller has checked) to out: its length, 1 to UTF8_SEQ_MAX.
 */
size_t utf8_encode(uint32_t cp, uint8_t out[UTF8_SEQ_MAX]);

/* Is cp a C0 or C1 control character or DEL? */
bool utf8_is_control(uint32_t cp);

/* Is s[0..len) valid UTF-8 (control characters allowed)? */
bool utf8_valid(const uint8_t *s, size_t len);

/* Is s[0..len) valid UTF-8 without C0 or C1 control characters or DEL? */
bool utf8_text_valid(const char *s, size_t len);

#endif
