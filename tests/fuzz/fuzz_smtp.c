/*
 * libFuzzer target for the SMTP machinery that sees client bytes: the
 * framer (fed in pieces, switched to DATA after a DATA line as the session
 * does after 354, and to BDAT chunks by itself), the DATA decoder run on the
 * framed pieces as the worker runs it, and the command parsers (verb, path,
 * MAIL/RCPT parameters, BDAT). The first input byte picks the piece size,
 * the line bound, the DATA piece size and the bare CR/LF policy.
 *
 * What must hold: the framer never hands out more than it was given nor an
 * empty command; a line is never longer than the bound; the worker's decoder
 * ends a DATA body exactly where the framer did; the decoded message keeps
 * to its output bound and, when normalizing, has only CR LF line ends; and
 * the parsers keep their results inside their buffers.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/smtp.h"

#include "fuzz_target.h"

#define MSG_MAX 2048

static void
check_decoded(const struct smtp_data_dec *d, const struct buf *msg)
{
	if (msg->len > MSG_MAX)
		abort();
	if (!d->overflow && msg->len != d->out_len)
		abort();
	if (!d->normalize)
		return;
	for (size_t i = 0; i < msg->len; i++) {
		if (msg->data[i] == '\n' && (i == 0 || msg->data[i - 1] != '\r'))
			abort();
		if (msg->data[i] == '\r' && i + 1 < msg->len && msg->data[i + 1] != '\n')
			abort();
	}
}

static void
check_line(struct smtp_framer *f, struct smtp_data_dec *dec, struct buf *msg, const uint8_t *in,
           size_t len, bool normalize)
{
	char line[1024], verb[16], addr[SMTP_MAX_PATH + 1];
	const char *args, *params, *bad;

	while (len > 0 && (in[len - 1] == '\n' || in[len - 1] == '\r'))
		len--;
	if (len >= sizeof(line) || memchr(in, '\0', len) != NULL)
		return;
	memcpy(line, in, len);
	line[len] = '\0';
	if (smtp_parse_verb(line, verb, sizeof(verb), &args) != 0)
		return;
	if (strlen(verb) >= sizeof(verb) || args < line || args > line + len)
		abort();
	if (strcmp(verb, "DATA") == 0 && !f->line_bdat) {
		smtp_framer_start_data(f, normalize);
		smtp_data_dec_init(dec, normalize);
		buf_reset(msg);
	} else if (strcmp(verb, "MAIL") == 0 || strcmp(verb, "RCPT") == 0) {
		bool mail = verb[0] == 'M';
		const char *colon = strchr(args, ':');

		if (colon == NULL)
			return;
		if (smtp_parse_path(colon + 1, mail, addr, &params) != 0)
			return;
		if (strlen(addr) > SMTP_MAX_PATH || params < line || params > line + len)
			abort();
		(void)smtp_addr_is_utf8(addr);
		if (mail) {
			struct smtp_mail_params mp;

			memset(&mp, 0, sizeof(mp));
			bad = NULL;
			if (smtp_parse_mail_params(params, 1000000, &mp, &bad) != 0 &&
			    (bad == NULL || bad < line || bad > line + len))
				abort();
			if (strlen(mp.envid) >= sizeof(mp.envid) ||
			    strlen(mp.ret) >= sizeof(mp.ret))
				abort();
		} else {
			struct smtp_rcpt_params rp;

			memset(&rp, 0, sizeof(rp));
			bad = NULL;
			if (smtp_parse_rcpt_params(params, &rp, &bad) != 0 &&
			    (bad == NULL || bad < line || bad > line + len))
				abort();
			if (strlen(rp.notify) >= sizeof(rp.notify) ||
			    strlen(rp.orcpt) >= sizeof(rp.orcpt))
				abort();
		}
	} else if (strcmp(verb, "BDAT") == 0) {
		uint64_t size;
		bool last;

		/* The framer and the worker must agree on what a BDAT is. */
		if ((smtp_parse_bdat(args, &size, &last) == 0) != f->line_bdat)
			abort();
		if (f->line_bdat && (size != f->bdat_size || last != f->bdat_last))
			abort();
	}
}

static void
run(const uint8_t *data, size_t len, size_t step, size_t max_line, size_t chunk, bool normalize)
{
	struct smtp_framer f;
	struct smtp_data_dec dec;
	struct buf msg;
	size_t have = 0, fed = 0;

	smtp_framer_init(&f);
	smtp_data_dec_init(&dec, normalize);
	buf_init(&msg, MSG_MAX);
	while (fed < len || have > 0) {
		enum smtp_frame_result r;
		const uint8_t *p;
		size_t used = 0;

		if (fed < len) {
			size_t n = len - fed < step ? len - fed : step;

			have += n;
			fed += n;
		}
		/* The buffer is data[fed - have .. fed). */
		p = data + fed - have;
		r = smtp_frame(&f, p, have, max_line, chunk, &used);
		if (r == SMTP_FR_AGAIN) {
			if (used != 0)
				abort();
			if (fed == len)
				break;
			continue;
		}
		if (used == 0 || used > have)
			abort();
		if (r == SMTP_FR_COMMAND && f.kind == SMTP_FRAME_LINE) {
			if (used > max_line || p[used - 1] != '\n')
				abort();
			check_line(&f, &dec, &msg, p, used, normalize);
		} else if (r == SMTP_FR_COMMAND && f.kind == SMTP_FRAME_DATA) {
			size_t k = smtp_data_decode(&dec, p, used, &msg);

			if (k != used)
				abort();
			if ((dec.state == SMTP_DEC_DONE) != (f.mode == SMTP_FRAME_LINE))
				abort();
			check_decoded(&dec, &msg);
		}
		have -= used;
	}
	buf_free(&msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t step, max_line, chunk;
	bool normalize;

	if (size < 1)
		return 0;
	step = 1 + (data[0] & 0x0f);
	max_line = 8 + 24 * ((data[0] >> 4) & 0x03);
	chunk = 1 + (data[0] & 0x3f);
	normalize = (data[0] & 0x40) != 0;
	data++;
	size--;
	run(data, size, step, max_line, chunk, normalize);
	/* Whole, with the server's bounds. */
	run(data, size, size + 1, 512, 4096, normalize);
	return 0;
}
