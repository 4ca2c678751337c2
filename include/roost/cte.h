#ifndef ROOST_CTE_H
#define ROOST_CTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Content-Transfer-Encoding decoding (RFC 2045) in resumable steps, for
 * IMAP BINARY (RFC 3516): a part's content is decoded a chunk at a time as
 * the client reads, never whole in memory. The encoded input is the part's
 * body as stored, handed again at every step (its bytes may move between
 * steps: a storage view is read anew); the decoder keeps only its
 * position and a few bits. Pure functions over caller memory, thread-safe.
 *
 * Decoding is lenient where RFC 2045 says a decoder should be:
 * - base64: characters outside the alphabet (line breaks, spaces, garbage)
 *   are ignored, the first '=' ends the data, left-over bits short of a
 *   byte are dropped. Any input decodes.
 * - quoted-printable: "=XY" (either case) is the byte; "=" before the line
 *   end (transport padding allowed) is a soft break; any other "=" stays
 *   as it is; white space before a line end is dropped; a line break, CRLF
 *   or a bare LF, is CRLF. Any input decodes.
 * - 7bit, 8bit (and none): the bytes, each bare LF sent as CRLF (what IMAP
 *   shows of a text part); binary: the bytes exactly.
 */

enum cte_kind {
	CTE_BINARY, /* "binary": the bytes as they are */
	CTE_TEXT,   /* "7bit", "8bit" or none: the bytes, bare LF as CRLF */
	CTE_BASE64,
	CTE_QP,
	CTE_UNKNOWN /* anything else ("x-uuencode", a typo): cannot decode */
};

/* The kind named by a Content-Transfer-Encoding token (any case; "" or
 * NULL for a part that has none). */
enum cte_kind cte_kind_from_name(const char *name);

struct cte_decoder {
	enum cte_kind kind;
	size_t pos;        /* next input byte */
	uint32_t acc;      /* base64: bits not yet a byte */
	unsigned bits;     /* how many */
	bool done;         /* base64: '=' seen */
	int pend;          /* a byte owed from the last step (the LF of a CRLF), or -1 */
	size_t keep_until; /* QP: white space before pos < keep_until is content */
};

/* Start decoding kind (not CTE_UNKNOWN) from the first input byte. */
void cte_decoder_init(struct cte_decoder *d, enum cte_kind kind);

/*
 * Decode on from d's position in in[0..len) (the same input every step):
 * at most max octets to out, or skipped when out is NULL (partial fetch).
 * Returns how many were made; fewer than max only when the input is used
 * up (then 0 at every later call).
 */
size_t cte_decode(struct cte_decoder *d, const uint8_t *in, size_t len, uint8_t *out, size_t max);

/* The decoded size of in[0..len) and whether it holds a NUL: one pass
 * that keeps nothing (a 16 KiB scratch on the stack). */
void cte_measure(enum cte_kind kind, const uint8_t *in, size_t len, uint64_t *size_r,
                 bool *has_nul_r);

#endif
