#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_impl.h"
#include "roost/error.h"
#include "roost/server_impl.h"
#include "roost/xalloc.h"
#include "roost/metrics.h"

/*
 * Buffered output and input, flushing, closing and the lingering close,
 * and the plaintext transport.
 *
 * A worker never writes to a blocking socket: conn_write() only appends, and
 * the loop flushes as the client reads. A long reply is produced in steps
 * (conn_continue()), each run once the output has drained below OUT_LWM.
 */

/* ---- the plaintext transport ---- */

/* What errno means to the transport after a send() or recv() failed. */
static ssize_t
plain_error(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK ? ROOST_EAGAIN : ROOST_ECLOSED;
}

static ssize_t
plain_send(struct conn *c, const uint8_t *p, size_t n, enum conn_want *want_r)
{
	ssize_t r;

	*want_r = WANT_WRITE;
	do
		r = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	return r >= 0 ? r : plain_error();
}

static ssize_t
plain_recv(struct conn *c, uint8_t *p, size_t n)
{
	ssize_t r;

	do
		r = recv(c->fd, p, n, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	return r >= 0 ? r : plain_error();
}

const struct conn_transport conn_plain_transport = {
    .name = "plain",
    .send = plain_send,
    .recv = plain_recv,
};

/* ---- output ---- */

/* Both buffers are read from *off onwards; once everything up to the end
 * has been consumed the buffer starts over, so steady traffic reuses the
 * same memory. */
static void
window_consume(struct buf *b, size_t *off, size_t n)
{
	*off += n;
	if (*off >= b->len) {
		*off = 0;
		buf_reset(b);
	}
}

static void
out_consumed(struct conn *c, size_t n)
{
	window_consume(&c->out, &c->out_off, n);
	registry_count_out(c, n);
}

void
conn_out_failed(struct conn *c, int err)
{
	c->io_err = err;
	if (c->close_reason == NULL)
		c->close_reason = "write_error";
	buf_free(&c->out);
	c->out_off = 0;
}

void
conn_send_some(struct conn *c)
{
	while (c->io_err == 0 && out_len(c) > 0) {
		enum conn_want want;
		ssize_t r = tp_send(c, c->out.data + c->out_off, out_len(c), &want);

		if (r > 0) {
			out_consumed(c, (size_t)r);
			continue;
		}
		if (r != ROOST_EAGAIN)
			conn_out_failed(c, ROOST_ECLOSED);
		break;
	}
}

bool
conn_flush_nb(struct conn *c)
{
	while (out_len(c) > 0) {
		enum conn_want want;
		ssize_t r = tp_send(c, c->out.data + c->out_off, out_len(c), &want);

		if (r > 0) {
			out_consumed(c, (size_t)r);
			c->out_progress = loop_now(c->sl->loop);
			c->out_blocked = false;
			continue;
		}
		if (r == ROOST_EAGAIN) {
			/* The write deadline runs from the start of waiting,
			 * not from some old write. */
			if (!c->out_blocked)
				c->out_progress = loop_now(c->sl->loop);
			c->out_blocked = true;
			if (want == WANT_READ)
				c->ready_in = false;
			else
				c->ready_out = false;
			return true;
		}
		conn_out_failed(c, ROOST_ECLOSED);
		return false;
	}
	return true;
}

static void
out_append(struct conn *c, const void *p, size_t n)
{
	/* Compact once the sent part dominates, so a streaming reply reuses
	 * the same memory instead of growing. */
	if (c->out_off > 0 && c->out_off >= out_len(c)) {
		buf_consume(&c->out, c->out_off);
		c->out_off = 0;
	}
	if (buf_append(&c->out, p, n) != 0)
		fatal("event=conn_out_append error=\"unbounded output buffer overflow\"");
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->io_err != 0)
		return c->io_err;
	if (len > OUT_MAX - out_len(c)) {
		conn_log(c, LOG_LEVEL_WARN, "event=output_overflow pending=%zu adding=%zu",
		         out_len(c), len);
		if (c->close_reason == NULL)
			c->close_reason = "output_overflow";
		conn_out_failed(c, ROOST_ECLOSED);
		return c->io_err;
	}
	out_append(c, data, len);
	if (out_len(c) > c->out_peak)
		c->out_peak = out_len(c);
	return 0;
}

int
conn_flush(struct conn *c)
{
	conn_send_some(c);
	return c->io_err;
}

bool
conn_output_full(const struct conn *c)
{
	return out_len(c) >= OUT_HWM;
}

size_t
conn_output_pending(const struct conn *c)
{
	return out_len(c);
}

void
conn_continue(struct conn *c, conn_continue_fn *fn, void *arg)
{
	c->cont_fn = fn;
	c->cont_arg = arg;
}

/* ---- input ---- */

void
in_consume(struct conn *c, size_t n)
{
	window_consume(&c->in, &c->in_off, n);
}

ssize_t
conn_read_some(struct conn *c, size_t room)
{
	struct srv_loop *sl = c->sl;
	ssize_t r;

	if (room > SRV_SCRATCH)
		room = SRV_SCRATCH;
	r = tp_recv(c, sl->scratch, room);
	if (r <= 0)
		return r;
	registry_count_in(c, (size_t)r);
	if (in_len(c) == 0) {
		c->partial_since = loop_now(sl->loop);
		buf_reset(&c->in);
		c->in_off = 0;
	} else if (in_len(c) > conn_max_line(c)) {
		/* A large unit (literal, DATA body) in progress: progress
		 * keeps it alive, the bound caps its size. */
		c->partial_since = loop_now(sl->loop);
	}
	if (c->in_off > 0) {
		buf_consume(&c->in, c->in_off);
		c->in_off = 0;
	}
	if (buf_append(&c->in, sl->scratch, (size_t)r) != 0)
		fatal("event=conn_in_append error=\"input past its bound\"");
	return r;
}

void
conn_shrink(struct conn *c)
{
	/* An idle connection should cost its struct and its socket. */
	if (in_len(c) == 0 && c->in.cap > 0) {
		buf_free(&c->in);
		c->in_off = 0;
	}
	if (out_len(c) == 0 && c->out.cap > 0) {
		buf_free(&c->out);
		c->out_off = 0;
	}
}

/* ---- closing ---- */

void
conn_linger_drain(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->sl->scratch, SRV_SCRATCH, MSG_DONTWAIT);

		if (r > 0)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->ready_in = false;
			return;
		}
		conn_close_now(c, c->close_reason != NULL ? c->close_reason : "closed");
		return;
	}
}

void
conn_close_gracefully(struct conn *c)
{
	const char *reason = c->close_reason != NULL ? c->close_reason : "closed";
	bool unread = in_len(c) > 0 || tp_pending(c);

	if (c->io_err != 0 || c->eof || c->sl->forced) {
		conn_close_now(c, reason);
		return;
	}
	if (!unread) {
		ssize_t r = recv(c->fd, c->sl->scratch, SRV_SCRATCH, MSG_DONTWAIT);

		unread = r > 0;
		if (r == 0) {
			conn_close_now(c, reason);
			return;
		}
	}
	if (!unread) {
		conn_close_now(c, reason);
		return;
	}
	/* The client sent input we will not read: half-close and keep
	 * discarding its input for a while instead of resetting the
	 * connection under the reply. */
	tp_shutdown(c);
	(void)shutdown(c->fd, SHUT_WR);
	c->close_reason = reason;
	conn_enter(c, CONN_LINGER);
	c->linger_until = loop_now(c->sl->loop) + LINGER_MS;
	c->ready_in = true;
	in_consume(c, in_len(c));
	conn_shrink(c);
	conn_linger_drain(c);
}

static void
conn_reap(struct loop_msg *m)
{
	conn_unref(container_of(m, struct conn, reap));
}

void
conn_close_now(struct conn *c, const char *reason)
{
	struct srv_loop *sl = c->sl;

	if (c->state == CONN_DEAD)
		return;
	/* Out of the registry before it is gone: a kick found there may post. */
	registry_remove(c);
	conn_log(c, LOG_LEVEL_INFO,
	         "event=disconnect reason=%s duration_ms=%" PRIu64 " out_peak=%zu", reason,
	         loop_now(sl->loop) - c->started, c->out_peak);
	metrics_conn_close(conn_listener(c));
	/* A failed handshake or write leaves nothing to say goodbye on. */
	if (c->io_err == 0 && c->state != CONN_HANDSHAKE)
		tp_shutdown(c);
	conn_enter(c, CONN_DEAD);
	loop_timer_set(sl->loop, &c->timer, 0);
	tp_free(c);
	close(c->fd);
	c->fd = -1;
	atomic_store(&c->gone, true);
	if (c->session != NULL && c->lst->ops->session_free != NULL)
		c->lst->ops->session_free(c->session);
	c->session = NULL;
	c->cont_fn = NULL;
	c->cont_arg = NULL;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->user);
	c->user = NULL;
	free(c->tls_info);
	c->tls_info = NULL;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		sl->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	sl->nconns--;
	atomic_fetch_sub(&sl->held, 1);
	limits_release(c->srv, c->peer, c->is_unix);
	/* Another event of this batch may still name this connection. */
	c->reap.fn = conn_reap;
	loop_defer(sl->loop, &c->reap);
	conn_loop_maybe_quit(sl);
}
