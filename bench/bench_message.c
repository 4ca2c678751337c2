/*
 * Message parser speed. Not part of `make test`.
 *
 *   build/bench/bench_message [corpus-dir] [seconds-per-figure]
 *
 * Prints MB/s for parse alone, parse + BODYSTRUCTURE + ENVELOPE, and the
 * parse cache record storage_deliver() makes for every delivered message
 * (those and the PREVIEW) over the test corpus (default tests/data/messages), then the time for
 * generated messages with 1,000 / 10,000 / 100,000 header fields and parts: the ns-per-byte column
 * staying flat as they grow is what linear means (past 10,000 fields or parts the limits make the
 * rest opaque, so the 100,000 rows are cheaper). "deep-ish" is the per-line worst case:
 * boundary-like lines inside 100 nested multiparts.
 *
 * Then transfer decoding as FETCH BINARY does it (core/cte.c) over an 8 MiB
 * payload: the counting pass (BINARY.SIZE, and the literal's size before
 * BINARY sends) and the decoding in 16 KiB chunks, base64 and
 * quoted-printable, in MB/s of encoded input.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/buf.h"
#include "roost/cte.h"
#include "roost/message.h"
#include "roost/message_cache.h"
#include "roost/sasl.h"

#include "support/bench_util.h"

struct blob {
	uint8_t *data;
	size_t len;
};

static size_t
load_corpus(const char *dir, struct blob **out)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct blob *v = NULL;
	size_t n = 0;

	if (d == NULL) {
		perror(dir);
		exit(1);
	}
	while ((de = readdir(d)) != NULL) {
		char path[4096];
		FILE *f;
		long len;

		if (strstr(de->d_name, ".eml") == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		fseek(f, 0, SEEK_SET);
		v = realloc(v, (n + 1) * sizeof(*v));
		v[n].data = malloc((size_t)len + 1);
		v[n].len = fread(v[n].data, 1, (size_t)len, f);
		fclose(f);
		n++;
	}
	closedir(d);
	*out = v;
	return n;
}

/* Run parse (and render if asked: 1 BODYSTRUCTURE and ENVELOPE, 2 the
 * whole parse cache record delivery makes, preview included) over the
 * blobs for at least secs. */
static double
rate(const struct blob *v, size_t n, int render, double secs, double *ns_per_msg)
{
	struct buf out = BUF_INIT(0);
	double start = bench_now(), el;
	unsigned long long bytes = 0, msgs = 0;

	do {
		size_t i;

		for (i = 0; i < n; i++) {
			struct message *msg;

			if (message_parse(v[i].data, v[i].len, NULL, &msg) != 0)
				abort();
			if (render == 1) {
				buf_reset(&out);
				message_bodystructure(msg, NULL, true, &out);
				message_envelope(msg, NULL, &out);
			} else if (render == 2) {
				buf_reset(&out);
				(void)message_cache_make(msg, v[i].len, &out);
			}
			message_free(&msg);
			bytes += v[i].len;
			msgs++;
		}
		el = bench_now() - start;
	} while (el < secs);
	buf_free(&out);
	if (ns_per_msg != NULL)
		*ns_per_msg = el * 1e9 / (double)msgs;
	return (double)bytes / el / 1e6;
}

static void
gen_headers(struct buf *b, unsigned n)
{
	unsigned i;

	buf_reset(b);
	for (i = 0; i < n; i++)
		buf_printf(b, "X-Header-%u: value number %u\r\n folded part\r\n", i, i);
	buf_append_str(b, "Subject: many headers\r\n\r\nbody\r\n");
}

static void
gen_parts(struct buf *b, unsigned n)
{
	unsigned i;

	buf_reset(b);
	buf_append_str(
	    b, "Subject: many parts\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
	for (i = 0; i < n; i++)
		buf_printf(b, "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart %u\r\n",
		           i);
	buf_append_str(b, "--b--\r\n");
}

/* The parser's worst case per line: 100 open multiparts (the depth cap)
 * and n lines that look like boundaries but are none, each compared with
 * every open boundary. */
static void
gen_deep(struct buf *b, unsigned n)
{
	unsigned i;

	buf_reset(b);
	buf_append_str(b,
	               "Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
	for (i = 0; i < 100; i++)
		buf_printf(b, "--b%u\r\nContent-Type: multipart/mixed; boundary=\"b%u\"\r\n\r\n", i,
		           i + 1);
	buf_append_str(b, "--b100\r\n\r\n");
	for (i = 0; i < n; i++)
		buf_append_str(b, "--not-a-boundary-line\r\n");
}

static void
scaling(const char *what, void (*gen)(struct buf *, unsigned), double secs)
{
	static const unsigned sizes[] = {1000, 10000, 100000};
	struct buf b = BUF_INIT(0);
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct blob one;
		double mbs, ns;

		gen(&b, sizes[i]);
		one.data = b.data;
		one.len = b.len;
		mbs = rate(&one, 1, true, secs, &ns);
		printf("  %-8s %7u: %9zu bytes  %9.3f ms  %6.2f ns/byte  %7.1f MB/s\n", what,
		       sizes[i], b.len, ns / 1e6, ns / (double)b.len, mbs);
	}
	buf_free(&b);
}

static void
cte_figures(double secs)
{
	size_t n = 8 << 20;
	uint8_t *payload = malloc(n), chunk[16384];
	struct buf e = BUF_INIT(0), b64 = BUF_INIT(0), qp = BUF_INIT(0);
	static const char hexd[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++)
		payload[i] = (uint8_t)((i * 7) ^ (i >> 9));
	base64_encode(payload, n, &e);
	for (size_t i = 0; i < e.len; i += 76) {
		buf_append(&b64, e.data + i, e.len - i < 76 ? e.len - i : 76);
		buf_append_str(&b64, "\r\n");
	}
	/* quoted-printable of text with a high byte now and then */
	for (size_t i = 0, col = 0; qp.len < n; i++) {
		uint8_t c = (uint8_t)("the quick brown fox jumps over the lazy dog "[i % 44]);
		if (i % 37 == 0)
			c = (uint8_t)(0xc0 + i % 32);
		if (c >= 0x80 || c == '=') {
			uint8_t esc[3] = {'=', (uint8_t)hexd[c >> 4], (uint8_t)hexd[c & 15]};
			buf_append(&qp, esc, 3);
			col += 3;
		} else {
			buf_append_byte(&qp, c);
			col++;
		}
		if (col >= 72) {
			buf_append_str(&qp, "=\r\n");
			col = 0;
		}
	}
	const struct {
		const char *name;
		enum cte_kind kind;
		struct buf *in;
	} cases[] = {{"base64", CTE_BASE64, &b64}, {"quoted-printable", CTE_QP, &qp}};
	printf("transfer decoding (FETCH BINARY), %zu-byte encoded inputs:\n", b64.len);
	for (size_t k = 0; k < 2; k++) {
		double t0 = bench_now(), t;
		unsigned rounds = 0;
		uint64_t size;
		bool nul;

		do {
			cte_measure(cases[k].kind, cases[k].in->data, cases[k].in->len, &size,
			            &nul);
			rounds++;
		} while ((t = bench_now() - t0) < secs / 4);
		double measure = cases[k].in->len * (double)rounds / t / 1e6;
		rounds = 0;
		t0 = bench_now();
		do {
			struct cte_decoder d;

			cte_decoder_init(&d, cases[k].kind);
			while (cte_decode(&d, cases[k].in->data, cases[k].in->len, chunk,
			                  sizeof(chunk)) > 0)
				;
			rounds++;
		} while ((t = bench_now() - t0) < secs / 4);
		double decode = cases[k].in->len * (double)rounds / t / 1e6;
		printf("  %-16s count pass %7.1f MB/s   decode in 16 KiB chunks %7.1f MB/s   "
		       "(%llu decoded octets)\n",
		       cases[k].name, measure, decode, (unsigned long long)size);
	}
	free(payload);
	buf_free(&e);
	buf_free(&b64);
	buf_free(&qp);
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "tests/data/messages";
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	struct blob *v;
	size_t n = load_corpus(dir, &v), i, total = 0;
	double ns;

	for (i = 0; i < n; i++)
		total += v[i].len;
	printf("bench_message: %zu messages, %zu bytes (%s)\n", n, total, dir);
	double r = rate(v, n, 0, secs, &ns);
	printf("  parse only:                         %8.1f MB/s  (%.1f us/message)\n", r,
	       ns / 1e3);
	r = rate(v, n, 1, secs, &ns);
	printf("  parse + BODYSTRUCTURE + ENVELOPE:    %8.1f MB/s  (%.1f us/message)\n", r,
	       ns / 1e3);
	r = rate(v, n, 2, secs, &ns);
	printf("  delivery's cache record (+ PREVIEW): %8.1f MB/s  (%.1f us/message)\n", r,
	       ns / 1e3);
	printf("linear time (parse + BODYSTRUCTURE + ENVELOPE):\n");
	scaling("headers", gen_headers, secs / 2);
	scaling("parts", gen_parts, secs / 2);
	scaling("deep-ish", gen_deep, secs / 2);
	cte_figures(secs);
	for (i = 0; i < n; i++)
		free(v[i].data);
	free(v);
	return 0;
}
