#include <stdio.h>
#include <string.h>

#include "roost/pop3.h"

void
pop3_enc_init(struct pop3_encoder *e, uint64_t body_lines)
{
	memset(e, 0, sizeof(*e));
	e->body_lines = body_lines;
	e->line_start = true;
}

/*
 * End the line: write its CRLF at out[*o] (room checked by the caller). The
 * first empty line ends the header; after it, every line counts against
 * the TOP limit.
 */
static void
end_line(struct pop3_encoder *e, uint8_t *out, size_t *o)
{
	bool was_empty = e->line_start;

	out[(*o)++] = '\r';
	out[(*o)++] = '\n';
	if (e->in_body) {
		if (e->body_lines != POP3_ALL_LINES && --e->body_lines == 0)
			e->done = true;
	} else if (was_empty) {
		e->in_body = true;
		if (e->body_lines == 0)
			e->done = true;
	}
	e->line_start = true;
}

size_t
pop3_enc_feed(struct pop3_encoder *e, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
              size_t *used_r)
{
	size_t i = 0, o = 0;

	if (e->done) {
		*used_r = len;
		return 0;
	}
	while (i < len && cap - o >= 2) {
		uint8_t ch = in[i];

		if (e->cr) {
			/* The CR before this byte: part of CRLF (the LF ends the
			 * line below), or lone data. */
			e->cr = false;
			if (ch != '\n') {
				out[o++] = '\r';
				e->line_start = false;
				continue; /* ch is looked at again, with room checked */
			}
		} else if (ch == '\r') {
			e->cr = true;
			i++;
			continue;
		}
		if (ch == '\n') {
			end_line(e, out, &o);
			i++;
			if (e->done)
				break;
			continue;
		}
		if (ch == '.' && e->line_start)
			out[o++] = '.';
		out[o++] = ch;
		e->line_start = false;
		i++;
		/* Fast path: copy plain bytes up to the next CR or LF. */
		while (i < len && o < cap) {
			ch = in[i];
			if (ch == '\r' || ch == '\n')
				break;
			out[o++] = ch;
			i++;
		}
	}
	if (e->done)
		i = len;
	*used_r = i;
	return o;
}

size_t
pop3_enc_finish(struct pop3_encoder *e, uint8_t *out)
{
	size_t o = 0;

	if (!e->done) {
		if (e->cr) {
			out[o++] = '\r';
			e->cr = false;
			e->line_start = false;
		}
		if (!e->line_start) {
			out[o++] = '\r';
			out[o++] = '\n';
		}
	}
	out[o++] = '.';
	out[o++] = '\r';
	out[o++] = '\n';
	e->done = true;
	return o;
}

uint64_t
pop3_octets(const uint8_t *data, size_t len)
{
	uint64_t n = len;
	const uint8_t *p = data, *end = data + len, *lf;

	if (len == 0)
		return 0;
	while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf == data || lf[-1] != '\r')
			n++;
		p = lf + 1;
	}
	/* The encoder ends an unterminated last line with CRLF (a trailing
	 * lone CR stays data, so it gets the CRLF too). */
	if (data[len - 1] != '\n')
		n += 2;
	return n;
}

void
pop3_uidl(uint32_t uidvalidity, uint32_t uid, char out[POP3_UIDL_LEN + 1])
{
	snprintf(out, POP3_UIDL_LEN + 1, "%08X%08X", uid, uidvalidity);
}
