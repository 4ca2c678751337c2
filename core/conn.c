#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/server_impl.h"
#include "roost/xalloc.h"

/*
 * What a protocol sees of its connection (accessors and settings), the
 * references and wake-ups any thread may use, and the state table. The
 * machine itself runs in conn_step.c (see enum conn_state).
 */

#define BIT(s) (1u << (s))

/* allowed[from]: the states a connection may enter from `from`. Every
 * state but WORKER may be closed (DEAD). */
static const unsigned allowed[CONN_STATE_COUNT] = {
    [CONN_NEW] = BIT(CONN_HANDSHAKE) | BIT(CONN_WORKER) | BIT(CONN_DEAD),
    [CONN_HANDSHAKE] = BIT(CONN_NEW) | BIT(CONN_READY) | BIT(CONN_DEAD),
    [CONN_READY] = BIT(CONN_WORKER) | BIT(CONN_THROTTLED) | BIT(CONN_CLOSING) | BIT(CONN_DEAD),
    [CONN_WORKER] = BIT(CONN_READY) | BIT(CONN_CONTINUE) | BIT(CONN_STARTTLS) | BIT(CONN_DELAYED) |
                    BIT(CONN_CLOSING),
    [CONN_DELAYED] = BIT(CONN_READY) | BIT(CONN_CONTINUE) | BIT(CONN_STARTTLS) | BIT(CONN_CLOSING) |
                     BIT(CONN_DEAD),
    [CONN_THROTTLED] = BIT(CONN_READY) | BIT(CONN_DEAD),
    [CONN_CONTINUE] = BIT(CONN_WORKER) | BIT(CONN_DEAD),
    [CONN_STARTTLS] = BIT(CONN_HANDSHAKE) | BIT(CONN_DEAD),
    [CONN_CLOSING] = BIT(CONN_LINGER) | BIT(CONN_DEAD),
    [CONN_LINGER] = BIT(CONN_DEAD),
    [CONN_DEAD] = 0,
};

static const char *const state_names[CONN_STATE_COUNT] = {
    [CONN_NEW] = "new",           [CONN_HANDSHAKE] = "handshake", [CONN_READY] = "ready",
    [CONN_WORKER] = "worker",     [CONN_DELAYED] = "delayed",     [CONN_THROTTLED] = "throttled",
    [CONN_CONTINUE] = "continue", [CONN_STARTTLS] = "starttls",   [CONN_CLOSING] = "closing",
    [CONN_LINGER] = "linger",     [CONN_DEAD] = "dead",
};

void
conn_enter(struct conn *c, enum conn_state to)
{
	if ((allowed[c->state] & BIT(to)) == 0)
		fatal("event=conn_state_error conn=%" PRIu64 " from=%s to=%s", c->id,
		      state_names[c->state], state_names[to]);
	c->state = to;
}

enum conn_state
conn_settle(const struct conn *c)
{
	if (c->io_err != 0 || c->close_req)
		return CONN_CLOSING;
	if (c->starttls_req)
		return CONN_STARTTLS;
	if (c->cont_fn != NULL)
		return CONN_CONTINUE;
	return CONN_READY;
}

/* The one place a line gets the connection's fields: event=name (the
 * start of text, up to its first blank) first, then conn=, peer=, proto=
 * and user= (the logged-in user, or for a failed login the name tried),
 * then the rest of text. */
static void
log_with_prefix(const struct conn *c, enum log_level level, const char *user, const char *text)
{
	const char *rest = text;
	int ev = 0;

	if (strncmp(text, "event=", 6) == 0) {
		ev = (int)strcspn(text, " ");
		rest = text[ev] == ' ' ? text + ev + 1 : text + ev;
	}
	log_msg(level, "%.*s%sconn=%" PRIu64 " peer=%s proto=%s%s%s%s%s", ev, text,
	        ev > 0 ? " " : "", c->id, c->peer, c->lst->name, user != NULL ? " user=" : "",
	        user != NULL ? LOG_QUOTE(user) : "", *rest != '\0' ? " " : "", rest);
}

void
conn_log(const struct conn *c, enum log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_with_prefix(c, level, c->user, text);
}

void
conn_log_auth_failed(const struct conn *c, const char *user_tried, const char *what,
                     unsigned delay_ms)
{
	char text[128];

	snprintf(text, sizeof(text), "event=auth_failed mechanism=%s delay_ms=%u",
	         LOG_QUOTE(what != NULL ? what : "-"), delay_ms);
	/* A name tried is shown as "-" when there was none, so that user=
	 * always stands where fail2ban's filter and readers expect it. */
	log_with_prefix(c, LOG_LEVEL_INFO, user_tried != NULL ? user_tried : "-", text);
}

const struct roost_config *
conn_config(const struct conn *c)
{
	return c->cfg;
}

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
	return c->tls_info != NULL;
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
	registry_set_user(c, user);
}

void
conn_set_mailbox(struct conn *c, const char *mailbox)
{
	registry_set_mailbox(c, mailbox);
}

bool
conn_on_loop(const struct conn *c)
{
	return c->on_loop;
}

bool
conn_is_kicked(const struct conn *c)
{
	return (atomic_load(&((struct conn *)c)->wake_bits) & WAKE_BIT_KICK) != 0;
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
	const struct roost_config *cfg = c->cfg;

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
	c->close_req = true;
	if (c->close_reason == NULL)
		c->close_reason = "closed";
}

bool
conn_is_closing(const struct conn *c)
{
	return c->close_req || c->io_err != 0;
}

int
conn_starttls(struct conn *c)
{
	if (c->srv->tls == NULL)
		return ROOST_ENOTSUP;
	if (c->tp != &conn_plain_transport || c->starttls_req)
		return ROOST_EINVAL;
	c->starttls_req = true;
	return 0;
}

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
	if (c->state != CONN_DEAD && c->state != CONN_WORKER)
		conn_step(c);
	conn_unref(c);
}

static void
wake_post(struct conn *c, unsigned bit)
{
	atomic_fetch_or(&c->wake_bits, bit);
	if (atomic_load(&c->gone))
		return;
	if (!atomic_exchange(&c->wake_queued, true)) {
		conn_ref(c);
		loop_post(c->sl->loop, &c->wake_msg);
	}
}

void
conn_wake(struct conn *c)
{
	wake_post(c, WAKE_BIT_NOTIFY);
}

void
conn_kick(struct conn *c)
{
	wake_post(c, WAKE_BIT_KICK);
}

void
conn_init_wake(struct conn *c)
{
	c->wake_msg.fn = wake_arrived;
}
