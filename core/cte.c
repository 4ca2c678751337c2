/*
 * Content-Transfer-Encoding decoders in resumable steps (see cte.h): the
 * input is whole and handed again every step, so lookahead is free and the
 * state is a position plus a few bits. A step owes at most one byte to the
 * next (the LF of a CRLF made from one input byte), held in pend.
 */
#include <string.h>
#include <strings.h>

#include "roost/cte.h"
#include "roost/hex.h"

enum cte_kind
cte_kind_from_name(const char *name)
{
	if (name == NULL || name[0] == '\0' || strcasecmp(name, "7bit") == 0 ||
	    strcasecmp(name, "8bit") == 0)
		return CTE_TEXT;
	if (strcasecmp(name, "binary") == 0)
		return CTE_BINARY;
	if (strcasecmp(name, "base64") == 0)
		return CTE_BASE64;
	if (strcasecmp(name, "quoted-printable") == 0)
		return CTE_QP;
	return CTE_UNKNOWN;
}

void
cte_decoder_init(struct cte_decoder *d, enum cte_kind kind)
{
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->pend = -1;
}

/* The output cursor of one step: out may be NULL (skipping). */
struct sink {
	uint8_t *out;
	size_t n, max;
};

static void
emit(struct sink *k, uint8_t c)
{
	if (k->out != NULL)
		k->out[k->n] = c;
	k->n++;
}

/* A line break: CR now, the LF now or owed to the next step. */
static void
emit_crlf(struct cte_decoder *d, struct sink *k)
{
	emit(k, '\r');
	if (k->n < k->max)
		emit(k, '\n');
	else
		d->pend = '\n';
}

static void
copy_run(struct sink *k, const uint8_t *p, size_t n)
{
	if (k->out != NULL)
		memcpy(k->out + k->n, p, n);
	k->n += n;
}

static void
dec_binary(struct cte_decoder *d, const uint8_t *in, size_t len, struct sink *k)
{
	size_t n = len - d->pos;

	if (n > k->max - k->n)
		n = k->max - k->n;
	copy_run(k, in + d->pos, n);
	d->pos += n;
}

static void
dec_text(struct cte_decoder *d, const uint8_t *in, size_t len, struct sink *k)
{
	while (k->n < k->max && d->pos < len) {
		const uint8_t *lf = memchr(in + d->pos, '\n', len - d->pos);
		size_t run = lf != NULL ? (size_t)(lf - (in + d->pos)) : len - d->pos;

		if (run > 0) {
			if (run > k->max - k->n)
				run = k->max - k->n;
			copy_run(k, in + d->pos, run);
			d->pos += run;
			continue;
		}
		/* at an LF: a bare one (no CR before it in the input) is CRLF */
		bool bare = d->pos == 0 || in[d->pos - 1] != '\r';
		d->pos++;
		if (bare)
			emit_crlf(d, k);
		else
			emit(k, '\n');
	}
}

static const int8_t b64_values[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
}; /* value + 1; 0 for characters outside the alphabet */

static void
dec_base64(struct cte_decoder *d, const uint8_t *in, size_t len, struct sink *k)
{
	/* Each symbol makes at most one byte: nothing is ever owed. */
	while (k->n < k->max && d->pos < len && !d->done) {
		uint8_t c = in[d->pos++];
		int v = b64_values[c];

		if (c == '=') {
			d->done = true;
			break;
		}
		if (v == 0)
			continue;
		d->acc = (d->acc << 6) | (uint32_t)(v - 1);
		d->bits += 6;
		if (d->bits >= 8) {
			d->bits -= 8;
			emit(k, (uint8_t)(d->acc >> d->bits));
			d->acc &= (1u << d->bits) - 1;
		}
	}
}

static bool
is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* Does a line end (CRLF, a bare LF, or the end of the input) start at j? */
static bool
line_end_at(const uint8_t *in, size_t len, size_t j)
{
	return j == len || in[j] == '\n' || (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n');
}

static void
dec_qp(struct cte_decoder *d, const uint8_t *in, size_t len, struct sink *k)
{
	while (k->n < k->max && d->pos < len) {
		uint8_t c = in[d->pos];
		size_t j;

		if (d->pos < d->keep_until) {
			emit(k, c);
			d->pos++;
			continue;
		}
		if (c == '=') {
			int hi, lo;

			if (len - d->pos >= 3 && (hi = hex_digit(in[d->pos + 1])) >= 0 &&
			    (lo = hex_digit(in[d->pos + 2])) >= 0) {
				emit(k, (uint8_t)(hi << 4 | lo));
				d->pos += 3;
				continue;
			}
			for (j = d->pos + 1; j < len && is_wsp(in[j]); j++)
				;
			if (line_end_at(in, len, j)) {
				/* soft line break (at the very end: nothing) */
				d->pos = j == len ? len : j + (in[j] == '\r' ? 2 : 1);
				continue;
			}
			emit(k, c); /* not an escape: RFC 2045 6.7 (2), kept */
			d->pos++;
			continue;
		}
		if (is_wsp(c)) {
			for (j = d->pos; j < len && is_wsp(in[j]); j++)
				;
			if (line_end_at(in, len, j))
				d->pos = j; /* transport padding: dropped */
			else
				d->keep_until = j; /* content: sent as it is */
			continue;
		}
		if (c == '\n' || (c == '\r' && d->pos + 1 < len && in[d->pos + 1] == '\n')) {
			d->pos += c == '\r' ? 2 : 1;
			emit_crlf(d, k);
			continue;
		}
		emit(k, c);
		d->pos++;
	}
}

size_t
cte_decode(struct cte_decoder *d, const uint8_t *in, size_t len, uint8_t *out, size_t max)
{
	struct sink k = {out, 0, max};

	if (d->pend >= 0 && max > 0) {
		emit(&k, (uint8_t)d->pend);
		d->pend = -1;
	}
	if (d->pos > len)
		d->pos = len;
	switch (d->kind) {
	case CTE_BINARY:
		dec_binary(d, in, len, &k);
		break;
	case CTE_TEXT:
		dec_text(d, in, len, &k);
		break;
	case CTE_BASE64:
		dec_base64(d, in, len, &k);
		break;
	case CTE_QP:
		dec_qp(d, in, len, &k);
		break;
	case CTE_UNKNOWN:
		break;
	}
	return k.n;
}

void
cte_measure(enum cte_kind kind, const uint8_t *in, size_t len, uint64_t *size_r, bool *has_nul_r)
{
	struct cte_decoder d;
	uint8_t scratch[16384];
	uint64_t size = 0;
	bool nul = false;
	size_t n;

	if (kind == CTE_BINARY) {
		*size_r = len;
		*has_nul_r = memchr(in, '\0', len) != NULL;
		return;
	}
	cte_decoder_init(&d, kind);
	while ((n = cte_decode(&d, in, len, scratch, sizeof(scratch))) > 0) {
		size += n;
		if (!nul && memchr(scratch, '\0', n) != NULL)
			nul = true;
	}
	*size_r = size;
	*has_nul_r = nul;
}
