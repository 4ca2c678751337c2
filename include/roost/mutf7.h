#ifndef ROOST_MUTF7_H
#define ROOST_MUTF7_H

#include <stddef.h>

#include "roost/buf.h"

/*
 * Modified UTF-7 (RFC 3501 5.1.3) to and from UTF-8. Used by IMAP for
 * mailbox names on the wire and by the Maildir backend for folder names on
 * disk. Pure functions, thread-safe; results are appended to out.
 */

/* UTF-8 in[0..len) to modified UTF-7. ROOST_EINVAL for invalid UTF-8. */
int mutf7_encode(const char *in, size_t len, struct buf *out);

/* The length mutf7_encode() would give, without building it: *len_r is
 * set, or ROOST_EINVAL for invalid UTF-8. */
int mutf7_encoded_len(const char *in, size_t len, size_t *len_r);

/*
 * Modified UTF-7 in[0..len) to UTF-8. Raw UTF-8 sequences in the input are
 * passed through (clients that send UTF-8 names). ROOST_EINVAL for control
 * characters (C0 including NUL, DEL, C1) whether raw or base64-encoded,
 * invalid base64 runs, printable ASCII that was encoded, lone surrogates or
 * bad padding: the one canonical spelling only. The output therefore never
 * holds a NUL byte.
 */
int mutf7_decode(const char *in, size_t len, struct buf *out);

#endif
