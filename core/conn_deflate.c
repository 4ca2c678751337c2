#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "conn_impl.h"
#include "roost/error.h"
#include "roost/xalloc.h"

/*
 * The compressing transport (raw DEFLATE, RFC 1951, as IMAP COMPRESS=DEFLATE
 * (RFC 4978) uses it): a layer over the transport that was in place (plain
 * or TLS), which it calls with its own context swapped into c->tp_ctx.
 *
 * Output. The loop hands send() the pending output from its start; the
 * transport deflates a chunk of it into zout and reports the chunk consumed
 * only once its compressed bytes are all on the wire. Until then it answers
 * "again" and the bytes stay in the connection's output buffer, so
 * out_len() still counts them: flow control (OUT_HWM, CONN_THROTTLED,
 * CONN_CONTINUE) and the write deadline work exactly as without
 * compression, and the loop never thinks output is flushed while some of it
 * sits here. The last chunk of what is pending ends with Z_SYNC_FLUSH, so
 * whenever the output buffer is empty the client has every byte it can
 * decompress: a reply is never held back waiting for more. Between calls
 * the buffer may be compacted or grown (out_append()), so no pointer into
 * it is kept: `fed` counts the bytes at its start already given to zlib.
 *
 * Input. recv() reads compressed bytes from the inner transport into zin
 * and inflates at most the room the loop offers, so the loop's input bound
 * applies to decompressed bytes and a small packet that inflates to much
 * (a "zip bomb") only fills the bounded input buffer, which then refuses
 * the command as usual. Corrupt data fails the connection.
 *
 * Memory, per compressed connection, measured with the counting allocator
 * below and logged (event=compress_end zlib_bytes= conn_bytes=): deflate
 * with windowBits 12 and memLevel 6 takes 62,264 bytes from the start
 * (4 * 2^12 + 2^(6+9) of window and tables, the rest its state); inflate
 * must accept any window the client chose (up to 2^15), so it adds its
 * 32 KiB window once input arrives: 95,032 bytes of zlib in all. With this
 * context (zout, 8 KiB) and zin (8 KiB) a compressed connection costs
 * about 111 KiB more than a plain one. The smaller deflate window costs
 * some ratio (0.26 instead of 0.23 of the plaintext on the test messages
 * at level 5) for a quarter of the 256 KiB that zlib's defaults take.
 */

#define Z_LEVEL 5     /* RFC 4978 section 4 suggests 1-5 for mail */
#define Z_WBITS 12    /* 4 KiB window for what we send */
#define Z_MEMLEVEL 6  /* 2^(6+9) bytes of hash and literal buffers */
#define Z_IN_WBITS 15 /* accept the largest window from the client */
#define ZOUT (8 * 1024)
#define ZIN (8 * 1024)
/* Plaintext deflated at a time: the unit whose compressed bytes must reach
 * the socket before it counts as sent. */
#define ZCHUNK (16 * 1024)

struct deflate_ctx {
	const struct conn_transport *inner;
	void *inner_ctx;

	z_stream dz; /* deflate: our output */
	z_stream iz; /* inflate: the client's input */
	size_t zmem; /* bytes zlib holds now (both streams) */

	/* Output: bytes written before compression started, sent as they are. */
	size_t raw_left;
	size_t chunk; /* plaintext bytes of the chunk being deflated */
	size_t fed;   /* ... of which zlib has taken this many */
	bool sync;    /* the chunk ends with Z_SYNC_FLUSH */
	bool flushed; /* deflate has produced all of the chunk's output */
	uint8_t zout[ZOUT];
	size_t zout_off, zout_len;

	/* Input: compressed bytes read and not yet inflated. */
	uint8_t *zin; /* ZIN bytes, more for a pipelined tail (conn_compress()) */
	size_t zin_cap, zin_off, zin_len;
	bool in_more;  /* the last inflate filled its output: it may hold more */
	bool in_ended; /* the client ended its deflate stream */

	uint64_t plain_out, wire_out, wire_in, plain_in;
};

/* zlib's allocations, counted, so the cost per connection is a measured
 * figure rather than an estimate. */
struct zhdr {
	size_t n;
	max_align_t align;
};

static voidpf
z_alloc(voidpf opaque, uInt items, uInt size)
{
	struct deflate_ctx *z = opaque;
	size_t n = (size_t)items * size;
	struct zhdr *h = xmalloc(offsetof(struct zhdr, align) + n);

	h->n = n;
	z->zmem += n;
	return &h->align;
}

static void
z_free(voidpf opaque, voidpf p)
{
	struct deflate_ctx *z = opaque;
	struct zhdr *h;

	if (p == NULL)
		return;
	h = (struct zhdr *)(void *)((char *)p - offsetof(struct zhdr, align));
	z->zmem -= h->n;
	free(h);
}

/* ---- the inner transport, with its own context in place ---- */

static ssize_t
inner_send(struct conn *c, const uint8_t *p, size_t n, enum conn_want *want_r)
{
	struct deflate_ctx *z = c->tp_ctx;
	ssize_t r;

	c->tp_ctx = z->inner_ctx;
	r = z->inner->send(c, p, n, want_r);
	c->tp_ctx = z;
	return r;
}

static ssize_t
inner_recv(struct conn *c, uint8_t *p, size_t n)
{
	struct deflate_ctx *z = c->tp_ctx;
	ssize_t r;

	c->tp_ctx = z->inner_ctx;
	r = z->inner->recv(c, p, n);
	c->tp_ctx = z;
	return r;
}

static bool
inner_pending(const struct conn *c)
{
	const struct deflate_ctx *z = c->tp_ctx;
	struct conn *mc = (struct conn *)(uintptr_t)c;
	bool r;

	if (z->inner->pending == NULL)
		return false;
	mc->tp_ctx = z->inner_ctx;
	r = z->inner->pending(mc);
	mc->tp_ctx = (void *)(uintptr_t)z;
	return r;
}

/* ---- output ---- */

/* Send what zout holds. 0 once empty, else ROOST_EAGAIN or ROOST_ECLOSED. */
static int
zout_drain(struct conn *c, struct deflate_ctx *z, enum conn_want *want_r)
{
	while (z->zout_off < z->zout_len) {
		ssize_t r = inner_send(c, z->zout + z->zout_off, z->zout_len - z->zout_off, want_r);

		if (r <= 0)
			return r == ROOST_EAGAIN ? ROOST_EAGAIN : ROOST_ECLOSED;
		z->zout_off += (size_t)r;
		z->wire_out += (uint64_t)r;
	}
	z->zout_off = z->zout_len = 0;
	return 0;
}

static ssize_t
zsend(struct conn *c, const uint8_t *p, size_t n, enum conn_want *want_r)
{
	struct deflate_ctx *z = c->tp_ctx;

	*want_r = WANT_WRITE;
	if (z->raw_left > 0) {
		/* The reply to COMPRESS itself, and anything before it. */
		ssize_t r = inner_send(c, p, n < z->raw_left ? n : z->raw_left, want_r);

		if (r > 0)
			z->raw_left -= (size_t)r;
		return r;
	}
	for (;;) {
		int rc = zout_drain(c, z, want_r);

		if (rc != 0)
			return rc;
		if (z->chunk > 0 && z->flushed) {
			size_t done = z->chunk;

			z->chunk = z->fed = 0;
			z->plain_out += done;
			return (ssize_t)done;
		}
		if (z->chunk == 0) {
			if (n == 0)
				return 0;
			z->chunk = n < ZCHUNK ? n : ZCHUNK;
			z->fed = 0;
			/* More pending after this chunk: the loop calls again
			 * for it, and the flush waits for the last one. */
			z->sync = z->chunk == n;
			z->flushed = false;
		}
		z->dz.next_in = (Bytef *)(uintptr_t)(p + z->fed);
		z->dz.avail_in = (uInt)(z->chunk - z->fed);
		z->dz.next_out = z->zout;
		z->dz.avail_out = ZOUT;
		rc = deflate(&z->dz, z->sync ? Z_SYNC_FLUSH : Z_NO_FLUSH);
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			conn_log(c, LOG_LEVEL_WARN, "event=deflate_error code=%d", rc);
			return ROOST_ECLOSED;
		}
		z->fed = z->chunk - z->dz.avail_in;
		z->zout_len = ZOUT - z->dz.avail_out;
		/* A flush is complete when deflate stopped with output room
		 * to spare; without one, when it took the whole chunk. */
		z->flushed = z->dz.avail_in == 0 && (!z->sync || z->dz.avail_out != 0);
	}
}

/* ---- input ---- */

static ssize_t
zrecv(struct conn *c, uint8_t *p, size_t n)
{
	struct deflate_ctx *z = c->tp_ctx;
	uInt room = (uInt)(n > UINT32_MAX ? UINT32_MAX : n);

	for (;;) {
		if (z->in_ended)
			return 0;
		if (z->zin_off < z->zin_len || z->in_more) {
			int rc;
			size_t got;

			z->iz.next_in = z->zin + z->zin_off;
			z->iz.avail_in = (uInt)(z->zin_len - z->zin_off);
			z->iz.next_out = p;
			z->iz.avail_out = room;
			rc = inflate(&z->iz, Z_SYNC_FLUSH);
			z->zin_off = z->zin_len - z->iz.avail_in;
			got = room - z->iz.avail_out;
			z->in_more = z->iz.avail_out == 0;
			if (rc == Z_STREAM_END) {
				/* A final block: the client ended compression,
				 * which RFC 4978 gives no way back from. */
				z->in_ended = true;
				z->in_more = false;
			} else if (rc != Z_OK && rc != Z_BUF_ERROR) {
				conn_log(c, LOG_LEVEL_INFO, "event=inflate_error code=%d", rc);
				return ROOST_ECLOSED;
			}
			if (z->zin_off == z->zin_len)
				z->zin_off = z->zin_len = 0;
			if (got > 0) {
				z->plain_in += got;
				return (ssize_t)got;
			}
			if (z->in_ended)
				return 0;
			/* No output although there was room: zlib took all
			 * the input and waits for more. */
			z->in_more = false;
			if (z->zin_off < z->zin_len)
				return ROOST_ECLOSED; /* not progressing: never loop */
		}
		ssize_t r = inner_recv(c, z->zin + z->zin_len, z->zin_cap - z->zin_len);

		if (r <= 0)
			return r;
		z->zin_len += (size_t)r;
		z->wire_in += (uint64_t)r;
	}
}

static bool
zpending(const struct conn *c)
{
	const struct deflate_ctx *z = c->tp_ctx;

	return z->zin_off < z->zin_len || z->in_more || inner_pending(c);
}

static void
zshutdown(struct conn *c)
{
	struct deflate_ctx *z = c->tp_ctx;

	if (z->inner->shutdown == NULL)
		return;
	c->tp_ctx = z->inner_ctx;
	z->inner->shutdown(c);
	c->tp_ctx = z;
}

static void
zfree(struct conn *c)
{
	struct deflate_ctx *z = c->tp_ctx;

	conn_log(c, LOG_LEVEL_DEBUG,
	         "event=compress_end zlib_bytes=%zu conn_bytes=%zu plain_out=%" PRIu64
	         " wire_out=%" PRIu64 " wire_in=%" PRIu64 " plain_in=%" PRIu64,
	         z->zmem, z->zmem + sizeof(*z) + z->zin_cap, z->plain_out, z->wire_out, z->wire_in,
	         z->plain_in);
	deflateEnd(&z->dz);
	inflateEnd(&z->iz);
	if (z->inner->free != NULL) {
		c->tp_ctx = z->inner_ctx;
		z->inner->free(c);
	}
	free(z->zin);
	free(z);
}

/* Two instances, so cross_ready stays the inner transport's. */
const struct conn_transport conn_deflate_transport = {
    .name = "deflate",
    .send = zsend,
    .recv = zrecv,
    .pending = zpending,
    .shutdown = zshutdown,
    .free = zfree,
};

const struct conn_transport conn_deflate_cross_transport = {
    .name = "deflate",
    .cross_ready = true,
    .send = zsend,
    .recv = zrecv,
    .pending = zpending,
    .shutdown = zshutdown,
    .free = zfree,
};

bool
conn_is_compressed(const struct conn *c)
{
	return c->tp == &conn_deflate_transport || c->tp == &conn_deflate_cross_transport;
}

int
conn_compress(struct conn *c)
{
	struct deflate_ctx *z;
	size_t cmd_end, tail;

	if (conn_is_compressed(c) || c->starttls_req)
		return ROOST_EINVAL;
	z = xcalloc(1, sizeof(*z));
	z->dz.zalloc = z->iz.zalloc = z_alloc;
	z->dz.zfree = z->iz.zfree = z_free;
	z->dz.opaque = z->iz.opaque = z;
	if (deflateInit2(&z->dz, Z_LEVEL, Z_DEFLATED, -Z_WBITS, Z_MEMLEVEL, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		fatal("event=deflate_init error=\"zlib refused its parameters\"");
	if (inflateInit2(&z->iz, -Z_IN_WBITS) != Z_OK)
		fatal("event=inflate_init error=\"zlib refused its parameters\"");
	z->inner = c->tp;
	z->inner_ctx = c->tp_ctx;
	/* What is written so far (the OK to COMPRESS) goes out as it is. */
	z->raw_left = out_len(c);
	/* Input after the current command was sent compressed: move it from
	 * the input buffer to the inflater. */
	cmd_end = c->job == JOB_COMMAND ? c->cmd_len : 0;
	tail = in_len(c) > cmd_end ? in_len(c) - cmd_end : 0;
	/* A client must wait for the OK (RFC 4978 section 3), but one that
	 * did not still gets its bytes read as compressed; the input bound
	 * already limited how many there can be. */
	z->zin_cap = tail > ZIN ? tail : ZIN;
	z->zin = xmalloc(z->zin_cap);
	memcpy(z->zin, c->in.data + c->in_off + cmd_end, tail);
	z->zin_len = tail;
	buf_truncate(&c->in, c->in.len - tail);
	z->wire_in = tail;
	c->tp = c->tp->cross_ready ? &conn_deflate_cross_transport : &conn_deflate_transport;
	c->tp_ctx = z;
	conn_log(c, LOG_LEVEL_DEBUG, "event=compress zlib_bytes=%zu", z->zmem);
	return 0;
}
