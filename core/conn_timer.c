#include "conn_impl.h"
#include "roost/config.h"
#include "roost/server_impl.h"

/*
 * Deadlines. A connection has one loop timer, armed for the nearest of
 * what its state waits for:
 *
 *   HANDSHAKE            tls_handshake_timeout
 *   DELAYED              the end of conn_delay()
 *   LINGER               LINGER_MS after the half-close
 *   READY                the idle timeout (idle_timeout, or the pre-login
 *                        one, or conn_set_idle_timeout()), or the command
 *                        timeout for a partial command
 *   READY, THROTTLED,    the protocol's timer (conn_set_timer()); when it
 *   CONTINUE             fires outside READY, WAKE_TIMER waits for READY
 *   any with output      command_timeout without a byte taken by the
 *   pending              client: event=write_timeout
 *
 * A client reading a long reply slowly is not idle: the idle and command
 * timeouts run only in READY, when the server waits for the client.
 */

static const struct roost_config *
cfg_of(const struct conn *c)
{
	return server_config(c->srv);
}

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

/* A partial command must complete within the command timeout; an idle
 * connection gets the idle timeout. */
static uint64_t
input_deadline(const struct conn *c)
{
	uint64_t cmd = secs_ms(cfg_of(c)->command_timeout);
	uint64_t idle = idle_timeout_ms(c);

	if (in_len(c) > 0 && cmd != 0)
		return c->partial_since + cmd;
	return idle != 0 ? c->idle_since + idle : 0;
}

static bool
protocol_timer_runs(const struct conn *c)
{
	return c->timer_at != 0 &&
	       (c->state == CONN_READY || c->state == CONN_THROTTLED || c->state == CONN_CONTINUE);
}

static uint64_t
write_deadline(const struct conn *c)
{
	uint64_t cmd = secs_ms(cfg_of(c)->command_timeout);

	return out_len(c) > 0 && cmd != 0 ? c->out_progress + cmd : 0;
}

void
conn_arm(struct conn *c)
{
	uint64_t at = 0;

	switch (c->state) {
	case CONN_WORKER:
	case CONN_DEAD:
		return;
	case CONN_LINGER:
		at = c->linger_until;
		break;
	case CONN_HANDSHAKE:
		at = c->hs_deadline;
		break;
	case CONN_DELAYED:
		at = c->delay_until;
		break;
	default:
		at = write_deadline(c);
		if (c->state == CONN_READY)
			at = min_deadline(at, input_deadline(c));
		if (protocol_timer_runs(c))
			at = min_deadline(at, c->timer_at);
		break;
	}
	loop_timer_set(c->sl->loop, &c->timer, at);
}

/* The client was silent for too long: the protocol says goodbye (on a
 * worker) or the connection just closes. */
static void
input_timeout(struct conn *c)
{
	const char *what = in_len(c) > 0 ? "command_timeout" : "idle_timeout";

	conn_log(c, LOG_LEVEL_INFO, "event=%s", what);
	c->close_reason = what;
	if (c->session != NULL && c->lst->ops->on_timeout != NULL) {
		conn_dispatch(c, JOB_TIMEOUT);
		return;
	}
	conn_close_now(c, what);
}

void
conn_deadline(struct loop_timer *t)
{
	struct conn *c = container_of(t, struct conn, timer);
	uint64_t now = loop_now(c->sl->loop), at;

	switch (c->state) {
	case CONN_WORKER:
	case CONN_DEAD:
		return;
	case CONN_LINGER:
		if (now >= c->linger_until) {
			conn_close_now(c, c->close_reason != NULL ? c->close_reason : "closed");
			return;
		}
		break;
	case CONN_HANDSHAKE:
		if (c->hs_deadline != 0 && now >= c->hs_deadline) {
			conn_log(c, LOG_LEVEL_INFO, "event=tls_handshake_timeout");
			conn_close_now(c, "tls_handshake_timeout");
			return;
		}
		break;
	case CONN_DELAYED:
		break; /* conn_step() sees the delay is over */
	default:
		if (protocol_timer_runs(c) && now >= c->timer_at) {
			c->timer_at = 0;
			c->timer_fired = true;
		}
		at = write_deadline(c);
		if (at != 0 && now >= at) {
			conn_log(c, LOG_LEVEL_INFO, "event=write_timeout pending=%zu", out_len(c));
			conn_close_now(c, "write_timeout");
			return;
		}
		if (c->state == CONN_READY) {
			at = input_deadline(c);
			if (at != 0 && now >= at) {
				input_timeout(c);
				return;
			}
		}
		break;
	}
	conn_step(c);
}
