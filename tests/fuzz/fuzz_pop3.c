/*
 * libFuzzer target for the POP3 machinery that sees client and stored
 * bytes: the framer (fed in pieces), the line and number parsers, and the
 * message encoder, whose output must unstuff to exactly pop3_octets() bytes
 * with nothing but CRLF line ends. The first input byte picks the piece
 * size, the TOP line count and the output window.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/pop3.h"

#include "fuzz_target.h"

static void
check_lines(const uint8_t *data, size_t len, size_t step, size_t max)
{
	struct pop3_framer f = {0, false};
	size_t have = 0, fed = 0;

	while (fed < len || have > 0) {
		enum pop3_frame_res r;
		size_t used = 0;

		if (fed < len) {
			size_t n = len - fed < step ? len - fed : step;

			have += n;
			fed += n;
		}
		/* The buffer is data[fed - have .. fed). */
		r = pop3_frame(&f, data + fed - have, have, max, &used);
		if (r == POP3_FRAME_AGAIN) {
			if (fed == len)
				break;
			continue;
		}
		if (used == 0 || used > have)
			abort();
		if (r == POP3_FRAME_LINE) {
			const uint8_t *line = data + fed - have;
			size_t l = used;
			struct pop3_line pl;

			if (used > max)
				abort();
			pop3_strip_eol(line, &l);
			if (pop3_parse_line(line, l, &pl) == 0) {
				uint32_t v;

				for (size_t i = 0; i < pl.nargs; i++) {
					if (pl.args[i].p < line ||
					    pl.args[i].p + pl.args[i].len > line + l)
						abort();
					(void)pop3_parse_number(pl.args[i].p, pl.args[i].len, &v);
				}
			}
		}
		have -= used;
	}
}

static void
check_encoder(const uint8_t *data, size_t len, uint64_t lines, size_t step, size_t cap)
{
	struct pop3_encoder e;
	uint8_t *out = malloc(2 * len + POP3_ENC_FINISH_MAX + 8);
	uint8_t *win = malloc(cap);
	size_t o = 0, off = 0, i, plain = 0;
	bool line_start = true;

	pop3_enc_init(&e, lines);
	while (off < len && !e.done) {
		size_t chunk = len - off < step ? len - off : step, used, n;

		n = pop3_enc_feed(&e, data + off, chunk, win, cap, &used);
		if ((used == 0 && n == 0) || n > cap || used > chunk)
			abort();
		memcpy(out + o, win, n);
		o += n;
		off += used;
	}
	o += pop3_enc_finish(&e, out + o);
	/* Client side: CRLF only, terminator last, unstuff and count. */
	if (o < 3 || memcmp(out + o - 3, ".\r\n", 3) != 0)
		abort();
	for (i = 0; i < o - 3; i++) {
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			abort();
		if (line_start && out[i] == '.') {
			if (i + 1 >= o - 3 || out[i + 1] != '.')
				abort();
			i++;
		}
		line_start = out[i] == '\n';
		plain++;
	}
	if (o > 3 && !line_start)
		abort();
	if (lines == POP3_ALL_LINES && plain != pop3_octets(data, len))
		abort();
	free(win);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t step, cap;
	uint64_t lines;

	if (size < 1)
		return 0;
	step = 1 + (data[0] & 0x0f);
	cap = 2 + ((data[0] >> 4) & 0x07);
	lines = (data[0] & 0x80) ? (uint64_t)(data[0] & 0x07) : POP3_ALL_LINES;
	data++;
	size--;
	check_lines(data, size, step, 16 + (size_t)(step * 3));
	check_encoder(data, size, lines, step, cap);
	check_encoder(data, size, POP3_ALL_LINES, 4096, 8192);
	return 0;
}
