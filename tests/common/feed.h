#ifndef ROOST_TESTS_FEED_H
#define ROOST_TESTS_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * Input handed to a framer in pieces, as the event loop reads it: appends
 * to q the next piece of data[*fed..len), at most step bytes and no more
 * than brings q to cap bytes (the loop's input buffer, which a framer must
 * empty before it fills). Moves *fed past what it took; returns how many
 * bytes that was. For the IMAP framer's unit tests and fuzzers.
 */
static inline size_t
feed_piece(struct buf *q, const uint8_t *data, size_t len, size_t *fed, size_t step, size_t cap)
{
	size_t n = len - *fed;

	if (n > step)
		n = step;
	if (n > cap - q->len)
		n = cap - q->len;
	buf_append(q, data + *fed, n);
	*fed += n;
	return n;
}

#endif
