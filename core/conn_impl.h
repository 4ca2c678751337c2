#ifndef ROOST_CONN_IMPL_H
#define ROOST_CONN_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "roost/buf.h"
#include "roost/conn.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/worker.h"

/*
 * The connection runtime's private parts, shared by its files:
 *
 *   conn.c         accessors, settings, references and wake-ups, the state table
 *   conn_accept.c  accept, the hand-off of accepted sockets between loops,
 *                  a loop's shutdown of its connections
 *   conn_step.c    the step that drives the state machine
 *   conn_dispatch.c the hand-off between loop and workers: running a hook
 *                  on a worker (or on the loop) and taking the connection back
 *   conn_wake_inline.c wake-ups run on the loop, a bounded number per
 *                  iteration, and those left for later iterations
 *   conn_io.c      buffered output and input, flushing, closing and lingering,
 *                  the plaintext transport
 *   conn_tls.c     the TLS transport and its handshake
 *   conn_deflate.c the compressing transport, layered over either
 *   conn_timer.c   deadlines: idle, command, write, handshake, delay, linger,
 *                  the protocol's timer
 *
 * A connection lives in one loop for its whole life. Its socket, transport,
 * buffers and session belong to one owner at a time: the loop, or the one
 * worker running a hook for it (state CONN_WORKER). The state and the other
 * loop-only fields are read and written by the loop thread alone, also while
 * a worker owns the rest.
 */

struct conn_transport;
struct listener;
struct server;
struct srv_loop;

/* Output at or past this: a producer should yield (conn_output_full()) and
 * the loop frames no further command. */
#define OUT_HWM (64 * 1024)
/* Below this the loop runs the next step of a reply in steps, or frames
 * commands again after the output reached OUT_HWM. */
#define OUT_LWM (16 * 1024)
/* Backstop for a producer that never yields: past this much pending output
 * the connection is closed rather than the buffer grown further. */
#define OUT_MAX ((size_t)64 * 1024 * 1024)

/* How long a closing connection keeps reading (and discarding) the client's
 * input after its last reply, so the reply is not destroyed by a TCP reset
 * (closing a socket with unread input sends RST, and the peer's kernel then
 * drops what it had not yet delivered). */
#define LINGER_MS 2000

/*
 * The life of a connection. Allowed transitions (conn_enter() asserts them):
 *
 *   NEW        -> HANDSHAKE   implicit TLS: handshake before the greeting
 *              -> WORKER      session_new (the greeting)
 *   HANDSHAKE  -> NEW         implicit TLS is up: now the greeting
 *              -> READY       STARTTLS is up: commands again
 *   READY      -> WORKER      a framed command, a wake-up, a timeout, the shutdown goodbye
 *              -> THROTTLED   pending output reached OUT_HWM
 *              -> CLOSING     conn_close() in the frame hook, FRAME_CLOSE, end of input
 *   WORKER     -> READY       the hook returned
 *              -> CONTINUE    ... and left a continuation
 *              -> STARTTLS    ... after conn_starttls()
 *              -> DELAYED     ... after conn_delay()
 *              -> CLOSING     ... after conn_close(), or output failed
 *   DELAYED    -> READY, CONTINUE, STARTTLS, CLOSING   the delay is over, as after WORKER
 *   THROTTLED  -> READY       output drained below OUT_LWM
 *   CONTINUE   -> WORKER      output drained below OUT_LWM: the next step
 *   STARTTLS   -> HANDSHAKE   the go-ahead is flushed
 *   CLOSING    -> LINGER      flushed, but the client still sends: half-close
 *   any but WORKER and DEAD -> DEAD   closed (error, timeout, shutdown, done)
 *
 * The loop never closes a connection a worker owns: a forced shutdown makes
 * the worker's socket fail and closes the connection when it comes back.
 */
enum conn_state {
	CONN_NEW,       /* accepted, no session yet */
	CONN_HANDSHAKE, /* TLS handshake running */
	CONN_READY,     /* framing and reading commands, delivering wake-ups */
	CONN_WORKER,    /* a worker runs a hook (enum conn_job) */
	CONN_DELAYED,   /* conn_delay(): output and input held until delay_until */
	CONN_THROTTLED, /* client not reading: no command framed until OUT_LWM */
	CONN_CONTINUE,  /* a reply in steps: next step once below OUT_LWM */
	CONN_STARTTLS,  /* flushing the go-ahead, then the handshake */
	CONN_CLOSING,   /* flushing the last output, then close or linger */
	CONN_LINGER,    /* write side shut, discarding input for LINGER_MS */
	CONN_DEAD,      /* socket closed, session freed; struct kept until the last unref */
	CONN_STATE_COUNT
};

enum conn_job {
	JOB_NONE,
	JOB_SESSION_NEW,
	JOB_COMMAND,
	JOB_WAKE,
	JOB_TIMEOUT,
	JOB_SHUTDOWN,
	JOB_CONTINUE,
};

/* What a transport waits for after ROOST_EAGAIN. */
enum conn_want {
	WANT_READ,
	WANT_WRITE,
};

#define WAKE_BIT_NOTIFY 1u
#define WAKE_BIT_KICK 2u /* conn_kick(): say goodbye and close */
#define WAKE_BIT_IO                                                                                \
	4u /* a socket event came while a worker owned it (quiet_back(), conn_dispatch.c) */

struct conn {
	/* Fixed from accept to free. */
	struct server *srv;
	struct srv_loop *sl;
	const struct listener *lst;
	uint64_t id;
	int fd; /* -1 once closed */
	bool loopback;
	bool is_unix;
	uint64_t started;
	/* The live configuration when the connection was accepted: its
	 * protocol sees one configuration from start to end, however many
	 * reloads happen meanwhile (timers read the live one). */
	const struct roost_config *cfg;
	struct reg_slot *reg_slot; /* loop sets at accept, clears at close; NULL if unlisted */
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
	_Atomic bool gone; /* closed: conn_wake() does nothing */

	/* Loop thread only, even while a worker owns the connection. */
	enum conn_state state;
	struct conn *prev, *next; /* srv_loop list */
	bool ready_in;            /* the socket may have input */
	bool ready_out;           /* the socket may take output */
	bool out_blocked;         /* waiting for the socket to take output */
	bool eof;                 /* the client ended its input */
	bool goodbye_sent;        /* on_shutdown ran (or is not needed) */
	uint64_t linger_until;
	uint64_t idle_since;    /* last command finished */
	uint64_t partial_since; /* first byte of the partial command */
	uint64_t out_progress;  /* last successful write (or start of waiting) */
	uint64_t hs_deadline;
	uint64_t delay_until;
	enum conn_job job;
	struct conn *later_next; /* srv_loop's wake-ups left for the next iteration */
	bool later;              /* on that list (holding a reference) */
	size_t frame_seen;       /* in_len() the frame hook last said FRAME_AGAIN to */
	unsigned inline_left;    /* commands this step may still run on the loop */

	/* The owner: the loop, or the worker running a hook. */
	const struct conn_transport *tp;
	void *tp_ctx; /* the transport's state (TLS: its SSL) */
	void *session;
	struct buf in;
	size_t in_off;
	struct buf out;
	size_t out_off;
	size_t out_peak; /* largest pending output (logged at close) */
	char *user;
	char *tls_info; /* set once a TLS handshake finished */
	uint64_t timer_at;
	uint64_t done_at; /* clock_ms() when the last hook returned */
	bool timer_fired; /* WAKE_TIMER to deliver */
	bool on_loop;     /* an inline command runs on the loop (conn_on_loop()) */
	size_t input_max;
	unsigned input_max_seq, input_max_seq_cmd;
	size_t cmd_len;
	unsigned idle_override;
	enum wake_reason wake_why;
	conn_continue_fn *cont_fn; /* the next step of a long reply, or NULL */
	void *cont_arg;
	int io_err; /* ROOST_ECLOSED once output failed */
	const char *close_reason;

	/* Requests of the running hook, turned into a state when it returns
	 * (conn_settle()). */
	bool close_req;
	bool starttls_req;
	unsigned delay_ms;
};

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/*
 * A transport: how bytes reach the socket (plain, TLS). Chosen at accept and
 * replaced at STARTTLS. Called by whoever owns the connection, through the
 * tp_*() wrappers below.
 */
struct conn_transport {
	const char *name;
	/* Any readiness event may serve either direction (TLS reads on write
	 * and writes on read), so an event marks both ready. */
	bool cross_ready;
	/* Bytes written (> 0), or ROOST_EAGAIN with *want_r, or ROOST_ECLOSED. */
	ssize_t (*send)(struct conn *c, const uint8_t *p, size_t n, enum conn_want *want_r);
	/* Bytes read (> 0), 0 at the end of input, ROOST_EAGAIN or ROOST_ECLOSED. */
	ssize_t (*recv)(struct conn *c, uint8_t *p, size_t n);
	/* Input the transport holds that recv() would return without the socket. */
	bool (*pending)(const struct conn *c);
	/* Optional: one handshake step. 0 done, ROOST_EAGAIN with *want_r, or
	 * ROOST_ECLOSED (logged). */
	int (*handshake)(struct conn *c, enum conn_want *want_r);
	/* Optional: say goodbye (TLS close_notify) before the socket closes or
	 * its write side is shut. At most once; not after a failed write. */
	void (*shutdown)(struct conn *c);
	/* Optional: release tp_ctx. */
	void (*free)(struct conn *c);
};

extern const struct conn_transport conn_plain_transport;
extern const struct conn_transport conn_tls_transport;
/* conn_deflate.c: over a transport without and with cross_ready. */
extern const struct conn_transport conn_deflate_transport;
extern const struct conn_transport conn_deflate_cross_transport;

static inline ssize_t
tp_send(struct conn *c, const uint8_t *p, size_t n, enum conn_want *want_r)
{
	return c->tp->send(c, p, n, want_r);
}

static inline ssize_t
tp_recv(struct conn *c, uint8_t *p, size_t n)
{
	return c->tp->recv(c, p, n);
}

static inline bool
tp_pending(const struct conn *c)
{
	return c->tp->pending != NULL && c->tp->pending(c);
}

static inline int
tp_handshake(struct conn *c, enum conn_want *want_r)
{
	return c->tp->handshake != NULL ? c->tp->handshake(c, want_r) : 0;
}

static inline void
tp_shutdown(struct conn *c)
{
	if (c->tp->shutdown != NULL)
		c->tp->shutdown(c);
}

static inline void
tp_free(struct conn *c)
{
	if (c->tp->free != NULL)
		c->tp->free(c);
	c->tp_ctx = NULL;
	c->tp = &conn_plain_transport;
}

static inline size_t
in_len(const struct conn *c)
{
	return c->in.len - c->in_off;
}

static inline size_t
out_len(const struct conn *c)
{
	return c->out.len - c->out_off;
}

static inline uint64_t
secs_ms(unsigned s)
{
	return (uint64_t)s * 1000;
}

/* conn.c */
/* Loop: move to state to, asserting the transition is allowed. */
void conn_enter(struct conn *c, enum conn_state to);
/* Loop: where a connection goes once its hook returned (or its delay is
 * over): the hook's requests decide. */
enum conn_state conn_settle(const struct conn *c);
/* Set up the wake-up node. */
void conn_init_wake(struct conn *c);
/* Any thread, while the connection is registered (core/conn_registry.c):
 * the loop makes an idle session say goodbye (on_shutdown) and closes it;
 * one that is busy (a command, a long reply, a held reply) is closed when
 * it comes back or at once. */
void conn_kick(struct conn *c);

/* conn_accept.c */
/* Loop: end the loop once it stops and its last connection is gone. */
void conn_loop_maybe_quit(struct srv_loop *sl);

/* conn_step.c */
/* Loop: push the connection as far as it goes (see enum conn_state) and
 * re-arm its deadline. */
void conn_step(struct conn *c);
/* Loop: the socket's epoll event (the connection's io.fn). */
void conn_event(struct loop_io *io, uint32_t events);

/* conn_dispatch.c */
/* Loop: hand the connection to a worker for job. */
void conn_dispatch(struct conn *c, enum conn_job job);
/* Worker: run the hook of c->job and post the connection back (work.fn). */
void conn_work(struct work *w);
/* Loop: a worker handed the connection back (back.fn). */
void conn_back(struct loop_msg *m);
/* Loop: the hook of c->job returned (on a worker, or on the loop): consume
 * what it ran on and pick the next state from its requests. */
void conn_job_finish(struct conn *c);
/* Loop: run the framed command (c->cmd_len bytes) on the loop, as a worker
 * would (proto_ops.command_inline said it cannot block). */
void conn_run_inline(struct conn *c);

/* conn_wake_inline.c */
enum wake_where {
	WAKE_RAN,    /* ran on the loop */
	WAKE_LATER,  /* this iteration's allowance is spent: on the list */
	WAKE_WORKER, /* for a worker (the protocol could not run it here) */
};
/* Loop, in CONN_READY with WAKE_BIT_NOTIFY set: run the wake-up here when
 * the protocol can and this iteration's allowance is not spent. */
enum wake_where conn_run_wake_inline(struct conn *c);

/* conn_io.c */
void in_consume(struct conn *c, size_t n);
/* Loop: write what the socket takes. False when output failed (the
 * connection must close). */
bool conn_flush_nb(struct conn *c);
/* Loop: read once into the input buffer, at most room bytes. > 0 bytes,
 * 0 at the end of input, ROOST_EAGAIN or ROOST_ECLOSED. */
ssize_t conn_read_some(struct conn *c, size_t room);
/* Loop: free the buffers of a connection waiting for input. */
void conn_shrink(struct conn *c);
/* Any owner: output failed; drop it, the connection closes. */
void conn_out_failed(struct conn *c, int err);
/* Any owner: write what the socket takes now, without waiting. */
void conn_send_some(struct conn *c);
/* Loop: the output is flushed: close, or half-close and linger when the
 * client still sends. */
void conn_close_gracefully(struct conn *c);
/* Loop: discard input while lingering; closes at the end of input. */
void conn_linger_drain(struct conn *c);
/* Loop: close the socket, free the session, enter CONN_DEAD. */
void conn_close_now(struct conn *c, const char *reason);

/* conn_tls.c */
/* Loop: switch to the TLS transport and start its handshake (CONN_HANDSHAKE).
 * False when the connection was closed instead. */
bool conn_tls_start(struct conn *c);
/* Loop: run the handshake. True when it finished; false when it waits for
 * the socket or failed (then the connection is CONN_DEAD). */
bool conn_tls_handshake(struct conn *c);

/* conn_timer.c */
/* Loop: arm the connection's one timer for its nearest deadline. */
void conn_arm(struct conn *c);
/* Loop: the connection's timer fired. */
void conn_deadline(struct loop_timer *t);

#endif
