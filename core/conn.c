#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/server_impl.h"
#include "roost/services.h"
#include "roost/tls.h"
#include "roost/worker.h"
#include "roost/xalloc.h"

/*
 * The connection state machine. A connection lives in one loop for its whole
 * life. conn_step() runs on the loop thread whenever something happened
 * (readable, writable, a worker handed it back, a wake-up, a deadline) and
 * pushes the connection as far as it can: flush output, start TLS, frame the
 * next command from buffered input, read more. When there is work for the
 * protocol it sets c->job and hands the connection to the worker pool; the
 * worker runs the hook and posts it back to the loop (c->back). While a
 * worker owns the connection the loop touches only the loop-only fields.
 *
 * A worker never writes to a blocking socket: conn_write() only appends, and
 * the loop flushes as the client reads. A long reply is produced in steps
 * (conn_continue()), each run once the output has drained below OUT_LWM.
 */

/* At or past this much pending output a producer should yield
 * (conn_output_full()) and the loop frames no further command. */
#define OUT_HWM (64 * 1024)
/* Below this the loop runs the next step of a long reply, or frames
 * pipelined commands again after the output reached OUT_HWM. */
#define OUT_LWM (16 * 1024)
/* Backstop for a producer that never yields: past this much pending output
 * the connection is closed rather than the buffer grown further. */
#define OUT_MAX ((size_t)64 * 1024 * 1024)

/* How long a closing connection keeps reading (and discarding) the
 * client's input after its last reply, so the reply is not destroyed by a
 * TCP reset (closing a socket with unread input sends RST, and the peer's
 * kernel then drops what it had not yet delivered). */
#define LINGER_MS 2000

enum conn_job {
	JOB_NONE,
	JOB_SESSION_NEW,
	JOB_COMMAND,
	JOB_WAKE,
	JOB_TIMEOUT,
	JOB_SHUTDOWN,
	JOB_CONTINUE,
};

#define WAKE_BIT_NOTIFY 1u

struct conn {
	/* Fixed from accept to free. */
	struct server *srv;
	struct srv_loop *sl;
	const struct listener *lst;
	uint64_t id;
	int fd;
	bool loopback;
	bool is_unix;
	uint64_t started;
	char peer[64];
	char local[64];

	/* Hand-off nodes: the epoll registration, the deadline, the worker
	 * queue, the way back to the loop, a wake-up, the final unref. */
	struct loop_io io;
	struct loop_timer timer;
	struct work work;
	struct loop_msg back;
	struct loop_msg wake_msg;
	struct loop_msg reap;

	/* Any thread. */
	_Atomic unsigned refs;
	_Atomic unsigned wake_bits;
	_Atomic bool wake_queued;
	_Atomic bool gone;		/* closed: conn_wake() does nothing */

	/* Loop thread only, even while a worker owns the connection. */
	struct conn *prev, *next;	/* srv_loop list */
	bool in_worker;
	bool dead;
	bool ready_in;			/* the socket may have input */
	bool ready_out;			/* the socket may take output */
	bool out_blocked;		/* waiting for the socket to take output */
	bool lingering;			/* closed for writing, discarding input */
	uint64_t linger_until;
	uint64_t idle_since;		/* last command finished */
	uint64_t partial_since;		/* first byte of the partial command */
	uint64_t out_progress;		/* last successful write (or start of waiting) */
	uint64_t hs_deadline;
	uint64_t delay_until;
	bool throttled;			/* output reached OUT_HWM: frame nothing until OUT_LWM */
	size_t out_peak;		/* largest pending output seen (logged at close) */

	/* The owner: the loop, or the worker running a hook. */
	void *session;
	SSL *ssl;
	struct buf in;
	size_t in_off;
	struct buf out;
	size_t out_off;
	char *user;
	char *tls_info;
	uint64_t timer_at;
	size_t input_max;
	unsigned input_max_seq, input_max_seq_cmd;
	size_t cmd_len;
	size_t frame_seen;		/* in_len() the frame hook last said FRAME_AGAIN to */
	unsigned idle_override;
	unsigned delay_ms;
	enum conn_job job;
	conn_continue_fn *cont_fn;	/* the next step of a long reply, or NULL */
	void *cont_arg;
	enum wake_reason wake_why;
	int io_err;			/* ROOST_ECLOSED / ROOST_ETIMEOUT once output failed */
	bool timer_fired;
	bool closing;
	bool starttls;
	bool handshaking;
	bool eof;
	bool session_started;
	bool shutdown_done;
	bool ssl_closed;		/* close_notify already sent */
	const char *close_reason;
};

static void conn_step(struct conn *c);
static void close_now(struct conn *c, const char *reason);

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static const struct roost_config *
cfg_of(const struct conn *c)
{
	return c->srv->cfg;
}

static size_t
in_len(const struct conn *c)
{
	return c->in.len - c->in_off;
}

static size_t
out_len(const struct conn *c)
{
	return c->out.len - c->out_off;
}

static void
in_consume(struct conn *c, size_t n)
{
	c->in_off += n;
	if (c->in_off >= c->in.len) {
		c->in_off = 0;
		buf_reset(&c->in);
	}
}

static uint64_t
secs_ms(unsigned s)
{
	return (uint64_t)s * 1000;
}

/* The user= field for log lines: "" or " user=alice@example.org". */
static void
user_field(const struct conn *c, char *buf, size_t size)
{
	if (c->user != NULL)
		snprintf(buf, size, " user=%s", LOG_QUOTE(c->user));
	else
		buf[0] = '\0';
}

#define CONN_FMT "conn=%" PRIu64 " peer=%s proto=%s%s"
#define CONN_ARGS(c, uf) (c)->id, (c)->peer, (c)->lst->name, (uf)

/* ---- public accessors ---- */

const struct roost_services *
conn_services(const struct conn *c)
{
	return c->srv->services;
}

const char *
conn_listener(const struct conn *c)
{
	return c->lst->name;
}

uint64_t
conn_id(const struct conn *c)
{
	return c->id;
}

const char *
conn_peer(const struct conn *c)
{
	return c->peer;
}

const char *
conn_local(const struct conn *c)
{
	return c->local;
}

bool
conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL && !c->handshaking;
}

bool
conn_is_loopback(const struct conn *c)
{
	return c->loopback;
}

bool
conn_is_secure(const struct conn *c)
{
	return conn_is_tls(c) || c->loopback;
}

const char *
conn_tls_info(const struct conn *c)
{
	return c->tls_info != NULL ? c->tls_info : "";
}

void
conn_set_user(struct conn *c, const char *user)
{
	free(c->user);
	c->user = user != NULL ? xstrdup(user) : NULL;
}

const char *
conn_user(const struct conn *c)
{
	return c->user;
}

void
conn_set_idle_timeout(struct conn *c, unsigned seconds)
{
	c->idle_override = seconds;
}

void
conn_delay(struct conn *c, unsigned ms)
{
	c->delay_ms = ms;
}

void
conn_set_timer(struct conn *c, unsigned ms)
{
	c->timer_at = ms > 0 ? clock_ms() + ms : 0;
	if (ms == 0)
		c->timer_fired = false;
}

size_t
conn_max_line(const struct conn *c)
{
	const struct roost_config *cfg = cfg_of(c);

	return (size_t)(c->user != NULL ? cfg->max_line : cfg->max_line_preauth);
}

void
conn_set_input_max(struct conn *c, size_t max)
{
	c->input_max = max;
	c->input_max_seq++;
}

size_t
conn_input_limit(const struct conn *c)
{
	size_t line = conn_max_line(c);

	return c->input_max > line ? c->input_max : line;
}

void
conn_close(struct conn *c)
{
	c->closing = true;
	if (c->close_reason == NULL)
		c->close_reason = "closed";
}

bool
conn_is_closing(const struct conn *c)
{
	return c->closing;
}

int
conn_starttls(struct conn *c)
{
	if (c->srv->tls == NULL)
		return ROOST_ENOTSUP;
	if (c->ssl != NULL || c->starttls)
		return ROOST_EINVAL;
	c->starttls = true;
	return 0;
}

/* ---- references and wake-ups ---- */

void
conn_ref(struct conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void
conn_unref(struct conn *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		free(c);
}

static void
wake_arrived(struct loop_msg *m)
{
	struct conn *c = container_of(m, struct conn, wake_msg);

	/* Clear before looking at the bits: a conn_wake() racing with us
	 * queues the message again instead of being lost. */
	atomic_store(&c->wake_queued, false);
	if (!c->dead && !c->in_worker)
		conn_step(c);
	conn_unref(c);
}

void
conn_wake(struct conn *c)
{
	atomic_fetch_or(&c->wake_bits, WAKE_BIT_NOTIFY);
	if (atomic_load(&c->gone))
		return;
	if (!atomic_exchange(&c->wake_queued, true)) {
		conn_ref(c);
		loop_post(c->sl->loop, &c->wake_msg);
	}
}

/* ---- socket I/O (whoever owns the connection) ---- */

/* Bytes written, or ROOST_EAGAIN with *events_r the poll events to wait
 * for, or ROOST_ECLOSED. */
static ssize_t
sock_send(struct conn *c, const uint8_t *p, size_t n, short *events_r)
{
	*events_r = POLLOUT;
	if (c->ssl != NULL) {
		int r, e;

		ERR_clear_error();
		r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
		if (r > 0)
			return r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE)
			return ROOST_EAGAIN;
		if (e == SSL_ERROR_WANT_READ) {
			*events_r = POLLIN;
			return ROOST_EAGAIN;
		}
		ERR_clear_error();
		return ROOST_ECLOSED;
	}
	for (;;) {
		ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return ROOST_EAGAIN;
		return ROOST_ECLOSED;
	}
}

/* Bytes read, 0 at end of input, ROOST_EAGAIN or ROOST_ECLOSED. */
static ssize_t
sock_recv(struct conn *c, uint8_t *p, size_t n)
{
	if (c->ssl != NULL) {
		int r, e;

		ERR_clear_error();
		r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
		if (r > 0)
			return r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return ROOST_EAGAIN;
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		ERR_clear_error();
		return ROOST_ECLOSED;
	}
	for (;;) {
		ssize_t r = recv(c->fd, p, n, MSG_DONTWAIT);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return ROOST_EAGAIN;
		return ROOST_ECLOSED;
	}
}

static void
out_failed(struct conn *c, int err)
{
	c->io_err = err;
	c->closing = true;
	if (c->close_reason == NULL)
		c->close_reason = err == ROOST_ETIMEOUT ? "write_timeout" : "write_error";
	buf_free(&c->out);
	c->out_off = 0;
}

static void
out_consumed(struct conn *c, size_t n)
{
	c->out_off += n;
	if (c->out_off >= c->out.len) {
		c->out_off = 0;
		buf_reset(&c->out);
	}
}

/* Write what the socket takes now, without waiting. Whoever owns the
 * connection may call it; the loop's flush_nb() also tracks readiness. */
static void
send_some(struct conn *c)
{
	while (c->io_err == 0 && out_len(c) > 0) {
		short events;
		ssize_t r = sock_send(c, c->out.data + c->out_off, out_len(c), &events);

		if (r > 0) {
			out_consumed(c, (size_t)r);
			continue;
		}
		if (r != ROOST_EAGAIN)
			out_failed(c, ROOST_ECLOSED);
		break;
	}
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
		char uf[300];

		user_field(c, uf, sizeof(uf));
		log_warn(CONN_FMT " event=output_overflow pending=%zu adding=%zu", CONN_ARGS(c, uf),
		    out_len(c), len);
		if (c->close_reason == NULL)
			c->close_reason = "output_overflow";
		out_failed(c, ROOST_ECLOSED);
		return c->io_err;
	}
	out_append(c, data, len);
	if (out_len(c) > c->out_peak)
		c->out_peak = out_len(c);
	return 0;
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

int
conn_write_str(struct conn *c, const char *s)
{
	return conn_write(c, s, strlen(s));
}

int
conn_printf(struct conn *c, const char *fmt, ...)
{
	char stack[1024];
	va_list ap;
	int n, err;

	va_start(ap, fmt);
	n = vsnprintf(stack, sizeof(stack), fmt, ap);
	va_end(ap);
	if (n < 0)
		return ROOST_EINVAL;
	if ((size_t)n < sizeof(stack))
		return conn_write(c, stack, (size_t)n);
	{
		char *big = xmalloc((size_t)n + 1);

		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		err = conn_write(c, big, (size_t)n);
		free(big);
	}
	return err;
}

int
conn_flush(struct conn *c)
{
	send_some(c);
	return c->io_err;
}

/* ---- the worker side ---- */

static void
conn_work(struct work *w)
{
	struct conn *c = container_of(w, struct conn, work);
	const struct proto_ops *ops = c->lst->ops;

	switch (c->job) {
	case JOB_SESSION_NEW:
		c->session = ops->session_new(c);
		break;
	case JOB_COMMAND:
		ops->on_command(c, c->session, c->in.data + c->in_off, c->cmd_len);
		break;
	case JOB_WAKE:
		if (ops->on_wake != NULL)
			ops->on_wake(c, c->session, c->wake_why);
		break;
	case JOB_TIMEOUT:
		if (ops->on_timeout != NULL)
			ops->on_timeout(c, c->session);
		break;
	case JOB_SHUTDOWN:
		if (ops->on_shutdown != NULL)
			ops->on_shutdown(c, c->session);
		break;
	case JOB_CONTINUE: {
		conn_continue_fn *fn = c->cont_fn;
		void *arg = c->cont_arg;

		/* The step calls conn_continue() again if it is not done. */
		c->cont_fn = NULL;
		c->cont_arg = NULL;
		fn(c, c->session, arg);
		break;
	}
	case JOB_NONE:
		break;
	}
	/* Push what the hook wrote while we still own the socket; the loop
	 * only has to wait for what the kernel would not take. */
	if (c->delay_ms == 0)
		send_some(c);
	loop_post(c->sl->loop, &c->back);
}

static void
dispatch(struct conn *c, enum conn_job job)
{
	c->job = job;
	c->in_worker = true;
	if (job == JOB_COMMAND)
		c->input_max_seq_cmd = c->input_max_seq;
	loop_timer_set(c->sl->loop, &c->timer, 0);
	worker_pool_push(c->srv->pool, &c->work);
}

static void
conn_back(struct loop_msg *m)
{
	struct conn *c = container_of(m, struct conn, back);
	uint64_t now = loop_now(c->sl->loop);

	c->in_worker = false;
	switch (c->job) {
	case JOB_COMMAND:
		in_consume(c, c->cmd_len);
		c->cmd_len = 0;
		/* A raised input bound lasts for the one framed unit it was
		 * raised for, unless the command raised it again. */
		if (c->input_max_seq == c->input_max_seq_cmd)
			c->input_max = 0;
		if (in_len(c) > 0)
			c->partial_since = now;
		break;
	case JOB_SESSION_NEW:
		c->session_started = true;
		if (c->session == NULL) {
			c->closing = true;
			if (c->close_reason == NULL)
				c->close_reason = "refused";
		}
		break;
	case JOB_TIMEOUT:
		c->closing = true;
		break;
	case JOB_SHUTDOWN:
		c->closing = true;
		if (c->close_reason == NULL)
			c->close_reason = "shutdown";
		break;
	default:
		break;
	}
	/* The idle clock measures the client's silence: a command restarts
	 * it, a wake-up or a keepalive timer does not. */
	if (c->job == JOB_COMMAND || c->job == JOB_SESSION_NEW || c->job == JOB_CONTINUE)
		c->idle_since = now;
	c->job = JOB_NONE;
	c->frame_seen = 0;
	c->out_progress = now;
	c->out_blocked = false;
	c->ready_out = true;
	if (c->ssl != NULL && SSL_has_pending(c->ssl))
		c->ready_in = true;
	conn_step(c);
}

/* ---- the loop side ---- */

static uint64_t
idle_timeout_ms(const struct conn *c)
{
	const struct roost_config *cfg = cfg_of(c);

	if (c->idle_override != 0)
		return secs_ms(c->idle_override);
	return secs_ms(c->user != NULL ? cfg->idle_timeout : cfg->preauth_idle_timeout);
}

static uint64_t
min_deadline(uint64_t a, uint64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

/* The input deadline: a partial command must complete within the command
 * timeout; an idle connection gets the idle timeout. */
static uint64_t
input_deadline(const struct conn *c)
{
	uint64_t cmd = secs_ms(cfg_of(c)->command_timeout);
	uint64_t idle = idle_timeout_ms(c);

	if (in_len(c) > 0 && cmd != 0)
		return c->partial_since + cmd;
	return idle != 0 ? c->idle_since + idle : 0;
}

/* The connection waits for the client's input (so the idle and command
 * timeouts run), rather than for its own output or a long reply. */
static bool
input_wanted(const struct conn *c)
{
	return !c->closing && !c->starttls && !c->throttled && c->cont_fn == NULL;
}

static void
conn_arm(struct conn *c)
{
	uint64_t at = 0, cmd = secs_ms(cfg_of(c)->command_timeout);

	if (c->in_worker || c->dead)
		return;
	if (c->lingering) {
		at = c->linger_until;
	} else if (c->handshaking) {
		at = c->hs_deadline;
	} else if (c->delay_until != 0) {
		at = c->delay_until;
	} else {
		if (out_len(c) > 0 && cmd != 0)
			at = c->out_progress + cmd;
		if (input_wanted(c))
			at = min_deadline(at, input_deadline(c));
		if (c->timer_at != 0 && c->session_started && !c->closing)
			at = min_deadline(at, c->timer_at);
	}
	loop_timer_set(c->sl->loop, &c->timer, at);
}

static void
log_timeout(struct conn *c, const char *what)
{
	char uf[300];

	user_field(c, uf, sizeof(uf));
	log_info(CONN_FMT " event=%s", CONN_ARGS(c, uf), what);
}

static void
conn_deadline(struct loop_timer *t)
{
	struct conn *c = container_of(t, struct conn, timer);
	uint64_t now = loop_now(c->sl->loop), cmd = secs_ms(cfg_of(c)->command_timeout);

	if (c->in_worker || c->dead)
		return;
	if (c->lingering) {
		if (now >= c->linger_until) {
			close_now(c, c->close_reason != NULL ? c->close_reason : "closed");
			return;
		}
	} else if (c->handshaking) {
		if (now >= c->hs_deadline) {
			log_timeout(c, "tls_handshake_timeout");
			close_now(c, "tls_handshake_timeout");
			return;
		}
	} else if (c->delay_until != 0) {
		if (now >= c->delay_until)
			c->delay_until = 0;
	} else {
		if (c->timer_at != 0 && now >= c->timer_at) {
			c->timer_at = 0;
			c->timer_fired = true;
		}
		if (out_len(c) > 0 && cmd != 0 && now >= c->out_progress + cmd) {
			log_timeout(c, "write_timeout");
			close_now(c, "write_timeout");
			return;
		}
		if (input_wanted(c)) {
			uint64_t at = input_deadline(c);

			if (at != 0 && now >= at) {
				const char *what = in_len(c) > 0 ? "command_timeout" : "idle_timeout";

				log_timeout(c, what);
				c->close_reason = what;
				if (c->session != NULL && c->lst->ops->on_timeout != NULL) {
					dispatch(c, JOB_TIMEOUT);
					return;
				}
				close_now(c, what);
				return;
			}
		}
	}
	conn_step(c);
}

static void
conn_reap(struct loop_msg *m)
{
	conn_unref(container_of(m, struct conn, reap));
}

static void
loop_maybe_quit(struct srv_loop *sl)
{
	if (sl->stopping && sl->nconns == 0 && !sl->quit_sent) {
		sl->quit_sent = true;
		loop_quit(sl->loop);
	}
}

static void
close_now(struct conn *c, const char *reason)
{
	struct srv_loop *sl = c->sl;
	char uf[300];

	if (c->dead)
		return;
	c->dead = true;
	loop_timer_set(sl->loop, &c->timer, 0);
	user_field(c, uf, sizeof(uf));
	log_info(CONN_FMT " event=disconnect reason=%s duration_ms=%" PRIu64 " out_peak=%zu",
	    CONN_ARGS(c, uf), reason, loop_now(sl->loop) - c->started, c->out_peak);
	if (c->ssl != NULL) {
		if (c->io_err == 0 && !c->handshaking && !c->ssl_closed) {
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
		}
		ERR_clear_error();
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
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
	limits_release(c->srv, c->peer, c->is_unix);
	/* Another event of this batch may still name this connection. */
	loop_defer(sl->loop, &c->reap);
	loop_maybe_quit(sl);
}

/* Returns true when the handshake finished (or failed and the connection
 * is closed: then c->dead). */
static bool
handshake_step(struct conn *c)
{
	int r, e;
	char fields[128];

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		char info[128];

		c->handshaking = false;
		tls_describe(c->ssl, info, sizeof(info));
		c->tls_info = xstrdup(info);
		c->ready_in = true;
		c->ready_out = true;
		log_debug("conn=%" PRIu64 " peer=%s proto=%s event=tls tls=\"%s\"", c->id, c->peer,
		    c->lst->name, info);
		return true;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		c->ready_in = false;
		return false;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		c->ready_out = false;
		return false;
	}
	snprintf(fields, sizeof(fields), "conn=%" PRIu64 " peer=%s proto=%s", c->id, c->peer,
	    c->lst->name);
	if (e == SSL_ERROR_SSL)
		tls_log_errors(LOG_LEVEL_INFO, fields, "handshake");
	else
		log_info("%s event=tls_error reason=handshake detail=%s", fields,
		    e == SSL_ERROR_SYSCALL ? "peer_closed" : "other");
	ERR_clear_error();
	c->io_err = ROOST_ECLOSED;
	close_now(c, "tls_handshake_failed");
	return true;
}

static bool
start_tls(struct conn *c)
{
	c->ssl = tls_ssl_new(c->srv->tls, c->fd);
	if (c->ssl == NULL) {
		close_now(c, "tls_error");
		return false;
	}
	c->handshaking = true;
	c->hs_deadline = loop_now(c->sl->loop) + secs_ms(cfg_of(c)->tls_handshake_timeout);
	if (cfg_of(c)->tls_handshake_timeout == 0)
		c->hs_deadline = 0;
	c->ready_in = true;
	return true;
}

/* Loop: write without blocking. Returns false when the connection failed. */
static bool
flush_nb(struct conn *c)
{
	while (out_len(c) > 0) {
		short events;
		ssize_t r = sock_send(c, c->out.data + c->out_off, out_len(c), &events);

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
			if (events == POLLIN)
				c->ready_in = false;
			else
				c->ready_out = false;
			return true;
		}
		out_failed(c, ROOST_ECLOSED);
		return false;
	}
	return true;
}

/* Loop: read once into the input buffer. >0 bytes, 0 end of input,
 * ROOST_EAGAIN, ROOST_ECLOSED. */
static ssize_t
read_some(struct conn *c, size_t room)
{
	struct srv_loop *sl = c->sl;
	ssize_t r;

	if (room > SRV_SCRATCH)
		room = SRV_SCRATCH;
	r = sock_recv(c, sl->scratch, room);
	if (r <= 0)
		return r;
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

/* Free buffers of a connection waiting for input: an idle connection
 * should cost its struct and its socket, nothing more. */
static void
conn_shrink(struct conn *c)
{
	if (in_len(c) == 0 && c->in.cap > 0) {
		buf_free(&c->in);
		c->in_off = 0;
	}
	if (out_len(c) == 0 && c->out.cap > 0) {
		buf_free(&c->out);
		c->out_off = 0;
	}
}

/* Discard input of a lingering connection. Returns false once it is
 * closed (end of input or an error). */
static bool
linger_drain(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->sl->scratch, SRV_SCRATCH, MSG_DONTWAIT);

		if (r > 0)
			continue;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->ready_in = false;
			return true;
		}
		close_now(c, c->close_reason != NULL ? c->close_reason : "closed");
		return false;
	}
}

/* The output is flushed and the connection should close. If the client
 * has sent input we did not read, half-close and linger instead of
 * resetting the connection under the reply. */
static void
close_gracefully(struct conn *c)
{
	const char *reason = c->close_reason != NULL ? c->close_reason : "closed";
	bool unread = in_len(c) > 0 || (c->ssl != NULL && SSL_has_pending(c->ssl));

	if (c->io_err != 0 || c->eof || c->handshaking || c->sl->forced) {
		close_now(c, reason);
		return;
	}
	if (!unread) {
		ssize_t r = recv(c->fd, c->sl->scratch, SRV_SCRATCH, MSG_DONTWAIT);

		unread = r > 0;
		if (r == 0) {
			close_now(c, reason);
			return;
		}
	}
	if (!unread) {
		close_now(c, reason);
		return;
	}
	if (c->ssl != NULL) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
		c->ssl_closed = true;
	}
	(void)shutdown(c->fd, SHUT_WR);
	c->close_reason = reason;
	c->lingering = true;
	c->linger_until = loop_now(c->sl->loop) + LINGER_MS;
	c->ready_in = true;
	in_consume(c, in_len(c));
	conn_shrink(c);
	(void)linger_drain(c);
}

static void
step_inner(struct conn *c)
{
	struct srv_loop *sl = c->sl;
	const struct proto_ops *ops = c->lst->ops;

	for (;;) {
		if (c->in_worker || c->dead)
			return;
		if (c->delay_ms != 0) {
			c->delay_until = loop_now(sl->loop) + c->delay_ms;
			c->delay_ms = 0;
		}
		if (sl->stopping)
			c->delay_until = 0;
		if (c->delay_until != 0) {
			if (loop_now(sl->loop) < c->delay_until)
				return;
			c->delay_until = 0;
		}
		if (c->handshaking) {
			if (!handshake_step(c) || c->dead)
				return;
			continue;
		}
		if (sl->forced) {
			close_now(c, "shutdown");
			return;
		}
		if (c->lingering) {
			if (c->ready_in)
				(void)linger_drain(c);
			return;
		}
		if (out_len(c) > 0 && c->ready_out && !flush_nb(c)) {
			close_now(c, "write_error");
			return;
		}
		if (c->io_err != 0) {
			close_now(c, c->close_reason != NULL ? c->close_reason : "write_error");
			return;
		}
		if (out_len(c) > 0 && (c->closing || c->starttls))
			return;	/* wait until writable */
		if (c->closing) {
			close_gracefully(c);
			return;
		}
		/* A long reply in progress: its next step runs once the client
		 * has read most of the last one. Nothing else (no command, no
		 * wake-up, no timer) runs in between. */
		if (c->cont_fn != NULL) {
			if (out_len(c) >= OUT_LWM)
				return;	/* wait until writable */
			dispatch(c, JOB_CONTINUE);
			return;
		}
		/* Backpressure: a client that does not read its replies gets no
		 * further command run until it has read most of them. */
		if (out_len(c) >= OUT_HWM) {
			c->throttled = true;
			return;
		}
		if (c->throttled) {
			if (out_len(c) >= OUT_LWM)
				return;
			c->throttled = false;
			c->idle_since = loop_now(sl->loop);
			if (in_len(c) > 0)
				c->partial_since = c->idle_since;
		}
		if (c->starttls) {
			/* CVE-2011-0411: whatever the client sent after
			 * STARTTLS in plaintext is dropped, never framed. */
			c->starttls = false;
			in_consume(c, in_len(c));
			c->frame_seen = 0;
			if (!start_tls(c))
				return;
			continue;
		}
		if (!c->session_started) {
			if (sl->stopping) {
				close_now(c, "shutdown");
				return;
			}
			dispatch(c, JOB_SESSION_NEW);
			return;
		}
		if (sl->stopping && !c->shutdown_done) {
			c->shutdown_done = true;
			if (ops->on_shutdown != NULL) {
				dispatch(c, JOB_SHUTDOWN);
				return;
			}
			c->closing = true;
			c->close_reason = "shutdown";
			continue;
		}
		if (in_len(c) > 0 && in_len(c) != c->frame_seen) {
			size_t avail = in_len(c), used = 0;
			enum frame_result fr = ops->frame(c, c->session, c->in.data + c->in_off,
			    avail, &used);

			if (used > avail)
				used = avail;
			if (fr == FRAME_COMMAND && used == 0)
				fr = FRAME_AGAIN;
			switch (fr) {
			case FRAME_COMMAND:
				c->cmd_len = used;
				dispatch(c, JOB_COMMAND);
				return;
			case FRAME_DISCARD:
				in_consume(c, used);
				c->frame_seen = 0;
				if (in_len(c) > 0)
					c->partial_since = loop_now(sl->loop);
				continue;
			case FRAME_CLOSE:
				c->closing = true;
				if (c->close_reason == NULL)
					c->close_reason = "protocol";
				continue;
			case FRAME_AGAIN:
				c->frame_seen = avail;
				break;
			}
		}
		if (c->timer_fired || atomic_load(&c->wake_bits) != 0) {
			if (ops->on_wake == NULL || c->session == NULL) {
				c->timer_fired = false;
				atomic_store(&c->wake_bits, 0);
			} else {
				if (c->timer_fired) {
					c->timer_fired = false;
					c->wake_why = WAKE_TIMER;
				} else {
					atomic_fetch_and(&c->wake_bits, ~WAKE_BIT_NOTIFY);
					c->wake_why = WAKE_NOTIFY;
				}
				dispatch(c, JOB_WAKE);
				return;
			}
		}
		if (c->eof) {
			c->closing = true;
			if (c->close_reason == NULL)
				c->close_reason = "eof";
			continue;
		}
		if (c->ready_in) {
			size_t cap = conn_input_limit(c) + 1;
			ssize_t r;

			if (in_len(c) >= cap) {
				char uf[300];

				user_field(c, uf, sizeof(uf));
				log_info(CONN_FMT " event=input_overflow bytes=%zu", CONN_ARGS(c, uf),
				    in_len(c));
				close_now(c, "input_overflow");
				return;
			}
			r = read_some(c, cap - in_len(c));
			if (r > 0)
				continue;
			if (r == 0) {
				c->eof = true;
				continue;
			}
			if (r == ROOST_EAGAIN) {
				c->ready_in = false;
			} else {
				c->io_err = ROOST_ECLOSED;
				close_now(c, "read_error");
				return;
			}
		}
		if (out_len(c) > 0 && c->ready_out)
			continue;
		conn_shrink(c);
		return;
	}
}

static void
conn_step(struct conn *c)
{
	step_inner(c);
	conn_arm(c);
}

static void
conn_event(struct loop_io *io, uint32_t events)
{
	struct conn *c = container_of(io, struct conn, io);

	if (c->dead)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
		c->ready_in = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->ready_out = true;
	if (c->ssl != NULL)
		c->ready_in = c->ready_out = true;
	if (c->in_worker)
		return;
	if ((events & EPOLLOUT) && out_len(c) > 0)
		c->out_progress = loop_now(c->sl->loop);
	conn_step(c);
}

void
conn_accept(struct srv_loop *sl, struct listener *lst, int fd, const char *peer,
    const char *local, bool loopback, bool is_unix)
{
	struct server *s = sl->srv;
	struct conn *c = xcalloc(1, sizeof(*c));
	uint64_t now = loop_now(sl->loop);

	c->srv = s;
	c->sl = sl;
	c->lst = lst;
	c->id = atomic_fetch_add(&s->next_id, 1) + 1;
	c->fd = fd;
	c->loopback = loopback;
	c->is_unix = is_unix;
	c->started = now;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	snprintf(c->local, sizeof(c->local), "%s", local);
	c->io.fn = conn_event;
	c->timer.fn = conn_deadline;
	c->work.fn = conn_work;
	c->back.fn = conn_back;
	c->wake_msg.fn = wake_arrived;
	c->reap.fn = conn_reap;
	atomic_init(&c->refs, 1);
	buf_init(&c->in, 0);
	buf_init(&c->out, 0);
	c->idle_since = now;
	c->out_progress = now;
	c->ready_out = true;

	c->next = sl->conns;
	if (sl->conns != NULL)
		sl->conns->prev = c;
	sl->conns = c;
	sl->nconns++;

	log_info("conn=%" PRIu64 " peer=%s proto=%s event=connect local=%s", c->id, c->peer,
	    lst->name, c->local);
	if (loop_add(sl->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->io) != 0) {
		close_now(c, "epoll_error");
		return;
	}
	if (lst->implicit_tls) {
		if (s->tls == NULL) {
			close_now(c, "no_tls");
			return;
		}
		if (!start_tls(c))
			return;
	}
	conn_step(c);
}

/* ---- shutdown ---- */

void
conn_loop_stop(struct srv_loop *sl)
{
	struct conn *c, *next;

	sl->stopping = true;
	for (c = sl->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->in_worker)
			conn_step(c);
	}
	loop_maybe_quit(sl);
}

void
conn_loop_force(struct srv_loop *sl)
{
	struct conn *c, *next;

	sl->forced = true;
	for (c = sl->conns; c != NULL; c = next) {
		next = c->next;
		if (c->in_worker) {
			/* A worker still runs a hook: make its I/O fail so it
			 * returns soon; the loop closes it when it comes back. */
			(void)shutdown(c->fd, SHUT_RDWR);
		} else {
			close_now(c, "shutdown");
		}
	}
	loop_maybe_quit(sl);
}
