#include <string.h>

#include "roost/error.h"
#include "roost/pop3.h"

enum pop3_frame_res
pop3_frame(struct pop3_framer *f, const uint8_t *in, size_t len, size_t max, size_t *used_r)
{
	const uint8_t *lf = NULL;

	/* The buffer only grows between calls that returned AGAIN; anything
	 * else consumed bytes, so a stale offset must not be trusted. */
	if (f->scanned > len)
		f->scanned = 0;
	if (len > f->scanned)
		lf = memchr(in + f->scanned, '\n', len - f->scanned);
	if (lf != NULL) {
		*used_r = (size_t)(lf - in) + 1;
		f->scanned = 0;
		if (f->skipping) {
			f->skipping = false;
			return POP3_FRAME_TOOLONG;
		}
		if (*used_r > max) {
			/* A whole overlong line arrived in one read. */
			return POP3_FRAME_TOOLONG;
		}
		return POP3_FRAME_LINE;
	}
	if (f->skipping || len >= max) {
		/* Drop what we have and remember to drop the rest of the line,
		 * so the buffer never has to hold it. */
		f->skipping = true;
		f->scanned = 0;
		*used_r = len;
		return POP3_FRAME_DISCARD;
	}
	f->scanned = len;
	*used_r = 0;
	return POP3_FRAME_AGAIN;
}

void
pop3_strip_eol(const uint8_t *cmd, size_t *len)
{
	if (*len > 0 && cmd[*len - 1] == '\n')
		(*len)--;
	if (*len > 0 && cmd[*len - 1] == '\r')
		(*len)--;
}

static bool
is_keyword_char(uint8_t ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

int
pop3_parse_line(const uint8_t *line, size_t len, struct pop3_line *r)
{
	size_t i, k;

	memset(r, 0, sizeof(*r));
	if (len == 0 || memchr(line, '\0', len) != NULL)
		return ROOST_EINVAL;
	for (k = 0; k < len && line[k] != ' '; k++) {
		if (k >= 4 || !is_keyword_char(line[k]))
			return ROOST_EINVAL;
		r->keyword[k] = (char)(line[k] >= 'a' && line[k] <= 'z' ? line[k] - 32 : line[k]);
	}
	if (k == 0)
		return ROOST_EINVAL;
	r->keyword[k] = '\0';
	if (k == len)
		return 0;

	/* line[k] is the space after the keyword. */
	r->rest.p = line + k + 1;
	r->rest.len = len - k - 1;
	/* RFC 1939 says one space between arguments; runs of spaces and
	 * trailing spaces are tolerated, as real clients send them. */
	i = k;
	while (i < len) {
		size_t start;

		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && line[i] != ' ')
			i++;
		if (r->nargs == POP3_MAX_ARGS) {
			r->too_many = true;
			break;
		}
		r->args[r->nargs].p = line + start;
		r->args[r->nargs].len = i - start;
		r->nargs++;
	}
	return 0;
}

int
pop3_parse_number(const uint8_t *p, size_t len, uint32_t *r)
{
	uint32_t v = 0;

	if (len == 0 || len > 10)
		return ROOST_EINVAL;
	for (size_t i = 0; i < len; i++) {
		uint32_t d;

		if (p[i] < '0' || p[i] > '9')
			return ROOST_EINVAL;
		d = (uint32_t)(p[i] - '0');
		if (v > (UINT32_MAX - d) / 10)
			return ROOST_EINVAL;
		v = v * 10 + d;
	}
	*r = v;
	return 0;
}
