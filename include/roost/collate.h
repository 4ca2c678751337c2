#ifndef ROOST_COLLATE_H
#define ROOST_COLLATE_H

/*
 * Collation of message text for sorting and threading, independent of any
 * protocol: the i;unicode-casemap collation of RFC 5051 as a sort key, and
 * the base subject of RFC 5256 section 2.1.
 *
 * Every function here is linear in its input, allocates only through the
 * buf it is given, and is thread-safe (the Unicode tables are read-only).
 */

#include <stdbool.h>
#include <stddef.h>

#include "roost/buf.h"

/*
 * Append the i;unicode-casemap key of the UTF-8 text s[0..len) to out:
 * each character is mapped to its titlecase, then to its full
 * compatibility decomposition (NFKD), and written as UTF-8. Two texts
 * compare under the collation as their keys compare with memcmp() (a
 * shorter key that is a prefix of the other sorts first), because UTF-8
 * byte order is code point order. A byte that is not valid UTF-8 is
 * mapped to U+FFFD, so any input gives a key and equal inputs equal keys.
 */
void collate_key(const char *s, size_t len, struct buf *out);

/* memcmp() order of two keys made by collate_key(): <0, 0, >0. */
int collate_cmp(const char *a, size_t alen, const char *b, size_t blen);

/*
 * The base subject of RFC 5256 section 2.1 of the subject s[0..len),
 * already decoded to UTF-8 (encoded words undone), appended to out: runs
 * of white space become one space; trailing "(fwd)" and white space,
 * leading "Re:", "Fw:", "Fwd:" with their "[blob]"s, and a "[Fwd: ...]"
 * wrapper are removed, repeatedly. The key for comparisons is
 * collate_key() of the result. *reply_r (may be NULL) is set when a
 * reply or forward marker was removed (RFC 5256 THREAD=REFERENCES uses
 * it).
 */
void collate_base_subject(const char *s, size_t len, struct buf *out, bool *reply_r);

#endif
