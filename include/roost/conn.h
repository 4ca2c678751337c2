#ifndef ROOST_CONN_H
#define ROOST_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/log.h"

/*
 * Connections and the protocol interface of the runtime (half-sync/half-async,
 * shared/DESIGN.md).
 *
 * A connection is owned by exactly one thread at a time: its event loop while
 * it waits for input or flushes output, or the one worker running a hook for
 * it. Hooks marked [loop] run on the event loop thread and must not block;
 * hooks marked [worker] run on a worker thread and may block on storage. All
 * conn_* functions below may be called only by the current owner, except
 * conn_wake(), conn_ref() and conn_unref(), which any thread may call.
 *
 * Input path: the loop reads bytes into the connection's input buffer, then
 * calls the protocol's frame hook with everything buffered. The hook says
 * how many bytes form one complete command (line, line plus literals, DATA
 * body...). The loop then hands the connection to a worker, which runs
 * on_command with a pointer into the input buffer (or, for a command the
 * protocol's command_inline hook says cannot block, runs it itself); after
 * on_command returns those bytes are consumed and the loop frames the next
 * command.
 *
 * Output path: a worker never blocks on a socket. conn_write() only appends
 * to the output buffer; when the hook returns, the loop flushes it as the
 * client reads. A command whose reply may be long (FETCH, SEARCH, RETR,
 * LIST...) produces it in resumable steps: it writes until
 * conn_output_full(), leaves a continuation with conn_continue() and
 * returns; the loop runs the next step on a worker once the client has read
 * most of the output. Pipelined commands are not framed while the pending
 * output is at or past the high-water mark (64 KiB), and again once it is
 * below the low-water mark (16 KiB). A client that reads nothing for the
 * command timeout is closed (event=write_timeout); a producer that never
 * yields is stopped by a 64 MiB backstop (event=output_overflow).
 */

struct conn;
struct roost_services;

enum frame_result {
	FRAME_COMMAND, /* *used_r bytes are one command: run on_command on a worker */
	FRAME_AGAIN,   /* need more input (the hook checked its bounds) */
	FRAME_DISCARD, /* drop *used_r bytes, run nothing (e.g. a refused literal) */
	FRAME_CLOSE,   /* flush what was written and close */
};

enum wake_reason {
	WAKE_NOTIFY, /* conn_wake() was called (e.g. the selected mailbox changed) */
	WAKE_TIMER,  /* the timer set by conn_set_timer() fired */
};

struct proto_ops {
	const char *name; /* "imap", "smtp", ... for logs */

	/* [worker, or loop: see session_new_inline] Create the session and
	 * write the greeting. Return NULL to
	 * refuse (after writing a reason); the connection is then closed. */
	void *(*session_new)(struct conn *c);
	/* True when session_new never blocks (it only allocates and writes
	 * the greeting): the loop runs it itself, as for command_inline. */
	bool session_new_inline;
	/* [worker or loop] Release the session. Called exactly once, when the
	 * connection is gone; the socket may already be closed. */
	void (*session_free)(void *session);

	/* [loop] Find one complete command at the start of in[0..len). May
	 * write directly (continuation requests, errors for refused input)
	 * with conn_write(); the loop flushes it. Must enforce its own size
	 * bounds and never block. After FRAME_AGAIN it is called again only
	 * when more input arrived or another hook ran, so a continuation
	 * request written here is not repeated for the same bytes. len is at
	 * most conn_input_limit() + 1: len > the bound with no complete
	 * command means the bound was passed (past that the runtime closes). */
	enum frame_result (*frame)(struct conn *c, void *session, const uint8_t *in, size_t len,
	                           size_t *used_r);

	/* [worker, or loop: see command_inline] Run one command. cmd is
	 * valid only during the call. */
	void (*on_command)(struct conn *c, void *session, const uint8_t *cmd, size_t len);

	/* [loop] Optional: true when on_command for this framed command (the
	 * bytes frame just returned FRAME_COMMAND for) never blocks: it
	 * touches only memory (no storage, file, name service or lock held
	 * across I/O) and its work is small and bounded. The loop then runs
	 * on_command itself, as the owner, instead of handing the connection
	 * to a worker and back (two thread switches per command); everything
	 * else about the command (its output, conn_close(), conn_delay(),
	 * conn_starttls()) is as on a worker. When unsure, return false. A
	 * connection runs at most a few commands in a row this way before the
	 * next one goes to a worker, so a pipelining client cannot hold the
	 * loop. */
	bool (*command_inline)(struct conn *c, void *session, const uint8_t *cmd, size_t len);

	/* [worker] Optional: a wake-up (see enum wake_reason) while the
	 * connection had no command running. */
	void (*on_wake)(struct conn *c, void *session, enum wake_reason why);

	/* [loop] Optional: handle a WAKE_NOTIFY here, as on_wake would,
	 * when that never blocks and is small (the rule of command_inline):
	 * true when it did; false when it did nothing (wrote nothing, changed
	 * nothing), and on_wake then runs on a worker. The loop runs a
	 * bounded number of these per iteration (conn_wake_inline.c); past that,
	 * on_wake runs on a worker. */
	bool (*wake_inline)(struct conn *c, void *session);

	/* [worker] Optional: the idle timeout passed; write the protocol's
	 * goodbye. The connection is closed afterwards. */
	void (*on_timeout)(struct conn *c, void *session);

	/* [worker] Optional: the server is shutting down; write the goodbye
	 * ("* BYE", "421"). The connection is closed afterwards. */
	void (*on_shutdown)(struct conn *c, void *session);
};

/*
 * Any owner: one log line (roost/log.h) in the one shape of every line:
 * fmt's event=name first, then the connection's fields, conn=, peer=, proto=
 * (the listener) and user= once logged in (quoted), then the rest of fmt:
 *     conn_log(c, LOG_LEVEL_INFO, "event=rejected reason=%s", why);
 * gives "event=rejected conn=7 peer=192.0.2.7 proto=imap reason=...".
 * fmt must start with event=name (snake_case); it must not spell conn=,
 * peer=, proto= or the session's user= itself (tests/integration/
 * test_log_dialect.py checks the sources). Values in fmt that came from the
 * client go through LOG_QUOTE().
 */
void conn_log(const struct conn *c, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The one log line of a failed login, in a form that stays stable for
 * fail2ban (etc/fail2ban/filter.d/roost.conf matches it):
 *
 *   event=auth_failed conn=12 peer=192.0.2.7 proto=imap user=alice@example.org
 *       mechanism=LOGIN delay_ms=2000
 *
 * peer comes before any value a client chose, unquoted (an address text);
 * user is the name tried, quoted when needed (NULL: "-"); what: the
 * mechanism or command (LOGIN, PLAIN, USER, basic...); delay_ms: the
 * answer's delay.
 */
void conn_log_auth_failed(const struct conn *c, const char *user_tried, const char *what,
                          unsigned delay_ms);

/* The configuration this connection started with: the live one
 * (server_config()) when it was accepted. The values `roost reload` may
 * change (limits, error counts, rates) are read here, not from
 * conn_services()->cfg, which stays the one the server started with; a
 * reload reaches the next connection, so no session sees a mix of two
 * configurations. Timeouts are the exception: the connection's timers read
 * the live configuration. Valid until the server is freed. */
const struct roost_config *conn_config(const struct conn *c);

/* Shared services (config, storage, auth) given to the server at start. */
const struct roost_services *conn_services(const struct conn *c);

/* The listener's name: "smtp", "submission", "smtps", "lmtp", "imap", ... */
const char *conn_listener(const struct conn *c);
/* Unique id for logs, also usable as a queue id seed. */
uint64_t conn_id(const struct conn *c);
/* Peer address as text ("192.0.2.1", "::1", "unix"). */
const char *conn_peer(const struct conn *c);
/* Local address as text. */
const char *conn_local(const struct conn *c);
bool conn_is_tls(const struct conn *c);
/* Peer is on a loopback address or a unix socket. */
bool conn_is_loopback(const struct conn *c);
/* TLS or loopback: plaintext passwords are acceptable. */
bool conn_is_secure(const struct conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" without TLS (for Received:). */
const char *conn_tls_info(const struct conn *c);

/* [worker or loop (frame)] Append to the output buffer; never blocks. Returns
 * 0, or ROOST_ECLOSED once the peer is gone or the output passed its 64 MiB
 * backstop (later writes are dropped; the hook should return soon). */
int conn_write(struct conn *c, const void *data, size_t len);
int conn_write_str(struct conn *c, const char *s);
int conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* [worker] Start writing what is pending (e.g. before a slow operation)
 * without waiting: what the socket does not take now the loop flushes
 * later. Returns 0 or ROOST_ECLOSED. */
int conn_flush(struct conn *c);

/* [worker] True when the pending output is at or past the high-water mark
 * (64 KiB): a command producing a long reply should stop at the next unit
 * boundary and continue later with conn_continue(). */
bool conn_output_full(const struct conn *c);

/* [worker] Bytes of output written and not yet taken by the socket. */
size_t conn_output_pending(const struct conn *c);

typedef void conn_continue_fn(struct conn *c, void *session, void *arg);

/* [worker] From on_command or from a continuation step: when the hook
 * returns, the loop flushes the output and, once it has drained below the
 * low-water mark, runs fn(c, session, arg) on a worker. Until a step
 * returns without calling conn_continue() again, the connection frames no
 * further command and delivers no wake-up or timer (they wait; they are not
 * lost). If the connection closes meanwhile, fn never runs: whatever state
 * the continuation needs is owned by the session, so session_free releases it.
 * The command's input bytes (the cmd pointer given to on_command) are
 * consumed when on_command returns: a continuation copies what it needs.
 * A later call in the same hook replaces an earlier one. */
void conn_continue(struct conn *c, conn_continue_fn *fn, void *arg);

/* [worker or loop (frame)] Close after the output is flushed. No more
 * commands are framed and a pending continuation is dropped. */
void conn_close(struct conn *c);
bool conn_is_closing(const struct conn *c);

/* [worker] Start TLS once the current output (the "go ahead" reply) is
 * flushed. Input already buffered is discarded (CVE-2011-0411), so a
 * command pipelined after STARTTLS is never run. ROOST_ENOTSUP without a
 * TLS context, ROOST_EINVAL if TLS is already on. */
int conn_starttls(struct conn *c);

/* [worker] Compress the connection both ways with raw DEFLATE (RFC 1951,
 * as IMAP COMPRESS=DEFLATE, RFC 4978, uses it), over plaintext or TLS.
 * Output written before the call (the OK that grants it) is sent as it is,
 * everything after compressed; the client's input after the command being
 * run is inflated. Each burst of output ends with a sync flush, so the
 * client never waits for bytes held in the compressor. Costs about 110 KiB
 * per connection (core/conn_deflate.c). ROOST_EINVAL when compression is on
 * already or STARTTLS is pending (nothing changes then). */
int conn_compress(struct conn *c);
bool conn_is_compressed(const struct conn *c);

/* [worker] Mark the session as authenticated: switches to the post-login idle
 * timeout and line bounds, and adds user= to the connection's log lines.
 * user is copied. */
void conn_set_user(struct conn *c, const char *user);
const char *conn_user(const struct conn *c); /* NULL before login */
/* [worker] The mailbox the session works in (IMAP's selected mailbox,
 * POP3's maildrop), shown by `roost who`; NULL when none. Copied. */
void conn_set_mailbox(struct conn *c, const char *mailbox);
/* [worker] on_shutdown runs because an administrator closed the session
 * (`roost kick`), not because the server stops. */
bool conn_is_kicked(const struct conn *c);
/* True while on_command runs on the event loop (command_inline said so):
 * what it calls must not block. */
bool conn_on_loop(const struct conn *c);
/* [worker] Override the idle timeout in seconds (0 = the configured default). */
void conn_set_idle_timeout(struct conn *c, unsigned seconds);
/* [worker] Hold output and input for ms milliseconds after the current hook returns,
 * without holding a worker (failed-login delay). */
void conn_delay(struct conn *c, unsigned ms);
/* [worker] Arm (ms > 0) or disarm (ms == 0) a one-shot timer delivering
 * WAKE_TIMER (held back while a reply in steps runs). */
void conn_set_timer(struct conn *c, unsigned ms);

/* Any thread: ask for on_wake(WAKE_NOTIFY) to run once the connection is
 * idle (no command running). Several calls before it runs coalesce. Safe to
 * call until the last reference is dropped. */
void conn_wake(struct conn *c);
/* Any thread: keep the struct alive (not the connection) while a
 * notification source holds the pointer. */
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

/* Bounds: the protocol's frame hook reads them; the runtime enforces the
 * input buffer maximum as a backstop (closing the connection). */
size_t conn_max_line(const struct conn *c); /* pre- or post-login value */
/* Raise the input buffer backstop for a large framed unit (APPEND literal,
 * DATA body); reset to the line bound after the command. */
void conn_set_input_max(struct conn *c, size_t max);
/* The input buffer backstop in force: max(conn_max_line(), the raised
 * bound). The buffer holds at most this + 1 bytes. */
size_t conn_input_limit(const struct conn *c);

#endif
