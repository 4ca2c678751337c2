/*
 * include/roost/conn.h for fuzzers (see conn_fuzz.h): loopback, plaintext,
 * no timers, no TLS, wake-ups ignored. Output is checked against the
 * runtime's backstop and dropped. conn_write_str() and conn_printf() are
 * the runtime's own (core/conn_format.c), over conn_write() here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "conn_fuzz.h"

#define OUT_HWM (64 * 1024)
#define OUT_MAX (64u << 20)
#define MAX_STEPS 100000

struct conn {
	const struct roost_services *sv;
	struct buf out;
	char *user;
	bool closing;
	size_t input_max;
	conn_continue_fn *cont_fn;
	void *cont_arg;
};

struct conn *
conn_fuzz_new(const struct roost_services *sv)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->sv = sv;
	buf_init(&c->out, OUT_MAX);
	return c;
}

void
conn_fuzz_free(struct conn **cp)
{
	struct conn *c = *cp;

	if (c == NULL)
		return;
	buf_free(&c->out);
	free(c->user);
	free(c);
	*cp = NULL;
}

void
conn_fuzz_drain(struct conn *c)
{
	buf_reset(&c->out);
}

void
conn_fuzz_finish_command(struct conn *c, void *session)
{
	for (unsigned steps = 0; c->cont_fn != NULL; steps++) {
		conn_continue_fn *fn = c->cont_fn;

		if (steps == MAX_STEPS)
			abort(); /* a reply that never ends */
		c->cont_fn = NULL;
		conn_fuzz_drain(c);
		if (c->closing)
			break;
		fn(c, session, c->cont_arg);
	}
	conn_fuzz_drain(c);
	c->input_max = 0;
}

const struct roost_services *
conn_services(const struct conn *c)
{
	return c->sv;
}

const struct roost_config *
conn_config(const struct conn *c)
{
	return c->sv->cfg;
}

/* Formatted, so the format and its arguments are exercised, then dropped. */
void
conn_log(const struct conn *c, enum log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
}

void
conn_log_auth_failed(const struct conn *c, const char *user_tried, const char *what,
                     unsigned delay_ms)
{
}

void
conn_set_mailbox(struct conn *c, const char *mailbox)
{
}

bool
conn_is_kicked(const struct conn *c)
{
	return false;
}

const char *
conn_listener(const struct conn *c)
{
	return "imap";
}

uint64_t
conn_id(const struct conn *c)
{
	return 1;
}

const char *
conn_peer(const struct conn *c)
{
	return "127.0.0.1";
}

const char *
conn_local(const struct conn *c)
{
	return "127.0.0.1";
}

bool
conn_is_tls(const struct conn *c)
{
	return false;
}

bool
conn_is_loopback(const struct conn *c)
{
	return true;
}

bool
conn_is_secure(const struct conn *c)
{
	return true;
}

const char *
conn_tls_info(const struct conn *c)
{
	return "";
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
	if (buf_append(&c->out, data, len) != 0)
		abort(); /* past the runtime's output backstop */
	return 0;
}

int
conn_flush(struct conn *c)
{
	conn_fuzz_drain(c);
	return 0;
}

bool
conn_output_full(const struct conn *c)
{
	return c->out.len >= OUT_HWM;
}

size_t
conn_output_pending(const struct conn *c)
{
	return c->out.len;
}

void
conn_continue(struct conn *c, conn_continue_fn *fn, void *arg)
{
	c->cont_fn = fn;
	c->cont_arg = arg;
}

void
conn_close(struct conn *c)
{
	c->closing = true;
}

bool
conn_is_closing(const struct conn *c)
{
	return c->closing;
}

int
conn_starttls(struct conn *c)
{
	return ROOST_ENOTSUP;
}

void
conn_set_user(struct conn *c, const char *user)
{
	free(c->user);
	c->user = xstrdup(user);
}

const char *
conn_user(const struct conn *c)
{
	return c->user;
}

void
conn_set_idle_timeout(struct conn *c, unsigned seconds)
{
}

void
conn_delay(struct conn *c, unsigned ms)
{
}

void
conn_set_timer(struct conn *c, unsigned ms)
{
}

void
conn_wake(struct conn *c)
{
}

void
conn_ref(struct conn *c)
{
}

void
conn_unref(struct conn *c)
{
}

size_t
conn_max_line(const struct conn *c)
{
	const struct roost_config *cfg = c->sv->cfg;

	return c->user != NULL ? cfg->max_line : cfg->max_line_preauth;
}

void
conn_set_input_max(struct conn *c, size_t max)
{
	c->input_max = max;
}

size_t
conn_input_limit(const struct conn *c)
{
	size_t line = conn_max_line(c);

	return c->input_max > line ? c->input_max : line;
}
