/*
 * The SMTP input framer and the DATA decoder (see include/roost/smtp.h).
 *
 * The framer runs on the loop thread and only decides where a command, a
 * piece of a DATA body or a piece of a BDAT chunk ends. The worker runs the
 * same decoder over exactly the same bytes to produce the message, so both
 * agree on where the data ends without sharing state.
 */
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/smtp.h"

/* ---- DATA decoder ---- */

void
smtp_data_dec_init(struct smtp_data_dec *d, bool normalize)
{
	memset(d, 0, sizeof(*d));
	d->state = SMTP_DEC_LINE_START;
	d->normalize = normalize;
}

static void
emit(struct smtp_data_dec *d, struct buf *out, const uint8_t *p, size_t n)
{
	d->out_len += n;
	if (out == NULL || d->overflow)
		return;
	if (buf_append(out, p, n) != 0)
		d->overflow = true;
}

/* A CR or LF that is not part of a CR LF pair. */
static void
emit_bare(struct smtp_data_dec *d, struct buf *out, uint8_t c)
{
	d->bare_eol++;
	if (d->normalize)
		emit(d, out, (const uint8_t *)"\r\n", 2);
	else
		emit(d, out, &c, 1);
}

size_t
smtp_data_decode(struct smtp_data_dec *d, const uint8_t *in, size_t len, struct buf *out)
{
	size_t i = 0;

	while (i < len && d->state != SMTP_DEC_DONE) {
		uint8_t c = in[i];

		switch (d->state) {
		case SMTP_DEC_LINE_START:
			if (c == '.') {
				d->state = SMTP_DEC_DOT;
				i++;
			} else {
				d->state = SMTP_DEC_MID;
			}
			break;
		case SMTP_DEC_DOT:
			if (c == '\r') {
				d->state = SMTP_DEC_DOT_CR;
				i++;
			} else {
				/* A dot followed by anything else was stuffing:
				 * drop it and go on with the line (also before a
				 * bare LF, so ".\n" never survives as a lone dot
				 * line). */
				d->state = SMTP_DEC_MID;
			}
			break;
		case SMTP_DEC_DOT_CR:
			if (c == '\n') {
				d->state = SMTP_DEC_DONE;
				i++;
			} else {
				/* ".\r" then not LF: the dot was stuffing, the CR
				 * is bare; c is handled as inside a line. */
				emit_bare(d, out, '\r');
				d->state = SMTP_DEC_MID;
			}
			break;
		case SMTP_DEC_MID: {
			size_t j = i;

			while (j < len && in[j] != '\r' && in[j] != '\n')
				j++;
			if (j > i)
				emit(d, out, in + i, j - i);
			i = j;
			if (i == len)
				break;
			if (in[i] == '\r') {
				d->state = SMTP_DEC_CR;
			} else {
				/* A bare LF is never a line start: a dot after it
				 * is content, so "\n.\n" and "\n.\r\n" cannot end
				 * the data. */
				emit_bare(d, out, '\n');
			}
			i++;
			break;
		}
		case SMTP_DEC_CR:
			if (c == '\n') {
				emit(d, out, (const uint8_t *)"\r\n", 2);
				d->state = SMTP_DEC_LINE_START;
				i++;
			} else {
				emit_bare(d, out, '\r');
				d->state = SMTP_DEC_MID;
			}
			break;
		case SMTP_DEC_DONE:
			break;
		}
	}
	return i;
}

/* ---- framer ---- */

void
smtp_framer_init(struct smtp_framer *f)
{
	memset(f, 0, sizeof(*f));
	f->mode = SMTP_FRAME_LINE;
}

void
smtp_framer_start_data(struct smtp_framer *f, bool normalize)
{
	f->mode = SMTP_FRAME_DATA;
	f->scanned = 0;
	smtp_data_dec_init(&f->dec, normalize);
}

int
smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r)
{
	size_t digits = strspn(args, "0123456789");
	const char *p = args + digits;
	uint64_t n;

	if (smtp_parse_u64(args, digits, &n) != 0)
		return ROOST_EINVAL;
	*last_r = false;
	if (*p == ' ') {
		p++;
		if (strncasecmp(p, "LAST", 4) != 0)
			return ROOST_EINVAL;
		p += 4;
		*last_r = true;
	}
	while (*p == ' ')
		p++;
	if (*p != '\0')
		return ROOST_EINVAL;
	*size_r = n;
	return 0;
}

/* If line[0..len) (terminator included) is a valid BDAT command with a
 * non-empty chunk, switch to chunk framing. The worker answers BDAT lines
 * the framer did not accept (and closes, as the stream is out of sync). */
static void
check_bdat(struct smtp_framer *f, const uint8_t *line, size_t len)
{
	char tmp[64];
	uint64_t size;
	bool last;

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len < 6 || len >= sizeof(tmp) || strncasecmp((const char *)line, "BDAT ", 5) != 0 ||
	    memchr(line, '\0', len) != NULL)
		return;
	memcpy(tmp, line + 5, len - 5);
	tmp[len - 5] = '\0';
	if (smtp_parse_bdat(tmp, &size, &last) != 0)
		return;
	f->line_bdat = true;
	f->bdat_size = size;
	f->bdat_last = last;
	if (size > 0) {
		f->mode = SMTP_FRAME_BDAT;
		f->bdat_left = size;
	}
}

enum smtp_frame_result
smtp_frame(struct smtp_framer *f, const uint8_t *in, size_t len, size_t max_line, size_t chunk,
           size_t *used_r)
{
	const uint8_t *nl;

	*used_r = 0;
	if (chunk == 0)
		chunk = 1;
	if (f->scanned > len)
		f->scanned = 0;
	switch (f->mode) {
	case SMTP_FRAME_LINE:
		nl = memchr(in + f->scanned, '\n', len - f->scanned);
		if (nl != NULL) {
			size_t n = (size_t)(nl - in) + 1;

			f->scanned = 0;
			*used_r = n;
			if (n > max_line)
				return SMTP_FR_LONG_LINE;
			f->kind = SMTP_FRAME_LINE;
			f->line_bdat = false;
			check_bdat(f, in, n);
			return SMTP_FR_COMMAND;
		}
		if (len >= max_line) {
			f->mode = SMTP_FRAME_SKIP;
			f->scanned = 0;
			*used_r = len;
			return SMTP_FR_SKIP;
		}
		f->scanned = len;
		return SMTP_FR_AGAIN;
	case SMTP_FRAME_SKIP:
		nl = memchr(in, '\n', len);
		if (nl != NULL) {
			f->mode = SMTP_FRAME_LINE;
			*used_r = (size_t)(nl - in) + 1;
			return SMTP_FR_LONG_LINE;
		}
		*used_r = len;
		return SMTP_FR_SKIP;
	case SMTP_FRAME_DATA: {
		size_t k = smtp_data_decode(&f->dec, in + f->scanned, len - f->scanned, NULL);

		f->kind = SMTP_FRAME_DATA;
		if (f->dec.state == SMTP_DEC_DONE) {
			*used_r = f->scanned + k;
			f->scanned = 0;
			f->mode = SMTP_FRAME_LINE;
			return SMTP_FR_COMMAND;
		}
		f->scanned = len;
		if (len >= chunk) {
			f->scanned = 0;
			*used_r = len;
			return SMTP_FR_COMMAND;
		}
		return SMTP_FR_AGAIN;
	}
	case SMTP_FRAME_BDAT:
		f->kind = SMTP_FRAME_BDAT;
		if (len >= f->bdat_left) {
			*used_r = (size_t)f->bdat_left;
			f->bdat_left = 0;
			f->mode = SMTP_FRAME_LINE;
			return SMTP_FR_COMMAND;
		}
		if (len >= chunk) {
			*used_r = len;
			f->bdat_left -= len;
			return SMTP_FR_COMMAND;
		}
		return SMTP_FR_AGAIN;
	}
	return SMTP_FR_AGAIN;
}
