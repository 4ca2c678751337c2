#ifndef ROOST_UTF8_H
#define ROOST_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * UTF-8 checks shared by the log (escaping client data) and the user-name
 * rules that auth and storage apply. Pure functions, thread-safe.
 */

/*
 * Decode the sequence at s[0..n), n > 0: its length (1 to 4) with the code
 * point in *cp_r, or 0 when it is not valid UTF-8 (a stray continuation
 * byte, a truncated or overlong sequence, a surrogate, above U+10FFFF).
 */
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp_r);

/* Is s[0..len) valid UTF-8 without C0 or C1 control characters or DEL? */
bool utf8_text_valid(const char *s, size_t len);

#endif
