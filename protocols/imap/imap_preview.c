/*
 * PREVIEW (RFC 8970): the text is made by message_preview() when a FETCH
 * first parses the message and kept in the parse cache record with the
 * envelope (imap_fetch.c); here it is written as the nstring the
 * response carries.
 */
#include "imap_impl.h"

void
imap_preview_string(struct buf *out, const char *pv, size_t len)
{
	bool quoted = true;

	/* A preview of a message without text is the empty string (RFC 8970
	 * 3: NIL only when it is not available, which never happens here) */
	for (size_t i = 0; i < len && quoted; i++) {
		unsigned char c = (unsigned char)pv[i];

		quoted = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
	}
	if (quoted) {
		buf_append_byte(out, '"');
		buf_append(out, pv, len);
		buf_append_byte(out, '"');
	} else {
		/* UTF-8 (or a quote): a literal, which any client reads */
		buf_printf(out, "{%zu}\r\n", len);
		buf_append(out, pv, len);
	}
}
