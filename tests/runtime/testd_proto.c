#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/loop.h"
#include "roost/xalloc.h"
#include "testd.h"

/*
 * A tiny line protocol that exercises the runtime:
 *
 *   ECHO text        +OK text
 *   SLEEP ms         blocks the worker, then +OK slept
 *   BIG n            +OK n, then n bytes (streamed), then CRLF
 *   STARTTLS         +OK begin TLS, then the handshake
 *   LOGIN user       conn_set_user()
 *   IDLE s           conn_set_idle_timeout()
 *   TIMER ms         conn_set_timer(): "* timer" when it fires
 *   NOTIFY ms        another thread calls conn_wake() after ms: "* notify"
 *   DELAY ms         conn_delay(): the +OK comes after ms
 *   RAISE n          conn_set_input_max(n) for the next line
 *   INFO             +OK tls=<info> secure=<0|1> user=<u> peer=<ip>
 *   QUIT             +OK bye, close
 *
 * Greeting "+OK roost-testd ready"; an over-long line gets "-ERR line too
 * long" and the connection is closed; idle timeout "-ERR idle timeout";
 * shutdown "-ERR shutting down".
 */

struct tsession {
	unsigned commands;
};

/* ---- a notifier thread: conn_wake() from outside the runtime ---- */

struct note {
	struct note *next;
	struct conn *c;
	uint64_t due;
};

static pthread_mutex_t note_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t note_cv = PTHREAD_COND_INITIALIZER;
static struct note *notes;
static bool note_stop;
static pthread_t note_thread;
static bool note_started;

static void *
notifier_main(void *arg)
{
	pthread_mutex_lock(&note_mu);
	while (!note_stop) {
		uint64_t now = clock_ms(), next = 0;
		struct note **pp = &notes, *n;

		while ((n = *pp) != NULL) {
			if (n->due <= now) {
				*pp = n->next;
				pthread_mutex_unlock(&note_mu);
				conn_wake(n->c);
				conn_unref(n->c);
				free(n);
				pthread_mutex_lock(&note_mu);
				pp = &notes;
				continue;
			}
			if (next == 0 || n->due < next)
				next = n->due;
			pp = &n->next;
		}
		if (next == 0) {
			pthread_cond_wait(&note_cv, &note_mu);
		} else {
			struct timespec ts;
			uint64_t wait = next - now;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)(wait / 1000);
			ts.tv_nsec += (long)(wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&note_cv, &note_mu, &ts);
		}
	}
	pthread_mutex_unlock(&note_mu);
	return arg;
}

void
testd_notifier_start(void)
{
	if (pthread_create(&note_thread, NULL, notifier_main, NULL) == 0)
		note_started = true;
}

void
testd_notifier_stop(void)
{
	if (!note_started)
		return;
	pthread_mutex_lock(&note_mu);
	note_stop = true;
	pthread_cond_signal(&note_cv);
	pthread_mutex_unlock(&note_mu);
	pthread_join(note_thread, NULL);
	while (notes != NULL) {
		struct note *n = notes;

		notes = n->next;
		conn_unref(n->c);
		free(n);
	}
}

static void
notify_later(struct conn *c, unsigned ms)
{
	struct note *n = xcalloc(1, sizeof(*n));

	conn_ref(c);
	n->c = c;
	n->due = clock_ms() + ms;
	pthread_mutex_lock(&note_mu);
	n->next = notes;
	notes = n;
	pthread_cond_signal(&note_cv);
	pthread_mutex_unlock(&note_mu);
}

/* ---- hooks ---- */

static void *
t_session_new(struct conn *c)
{
	struct tsession *s = xcalloc(1, sizeof(*s));

	conn_write_str(c, "+OK roost-testd ready\r\n");
	return s;
}

static void
t_session_free(void *session)
{
	free(session);
}

static enum frame_result
t_frame(struct conn *c, void *session, const uint8_t *in, size_t len, size_t *used_r)
{
	const uint8_t *lf = memchr(in, '\n', len);
	size_t max = conn_input_limit(c);

	if (lf == NULL) {
		if (len > max) {
			conn_write_str(c, "-ERR line too long\r\n");
			*used_r = len;
			return FRAME_CLOSE;
		}
		return FRAME_AGAIN;
	}
	if ((size_t)(lf - in) > max) {
		conn_write_str(c, "-ERR line too long\r\n");
		*used_r = len;
		return FRAME_CLOSE;
	}
	*used_r = (size_t)(lf - in) + 1;
	return FRAME_COMMAND;
}

static unsigned long
arg_num(const char *arg)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno != 0 || end == arg)
		return 0;
	return v;
}

static void
big_reply(struct conn *c, unsigned long n)
{
	char chunk[8192];

	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)('a' + i % 26);
	conn_printf(c, "+OK %lu\r\n", n);
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);

		if (conn_write(c, chunk, k) != 0)
			return; /* the client left: stop producing */
		n -= k;
	}
	conn_write_str(c, "\r\n");
}

static void
t_on_command(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	struct tsession *s = session;
	char line[8192];
	const char *arg;
	size_t n = len;

	s->commands++;
	while (n > 0 && (cmd[n - 1] == '\n' || cmd[n - 1] == '\r'))
		n--;
	if (n >= sizeof(line)) {
		/* RAISEd lines: only their length matters. */
		conn_printf(c, "+OK long %zu\r\n", n);
		return;
	}
	memcpy(line, cmd, n);
	line[n] = '\0';
	arg = strchr(line, ' ');
	arg = arg != NULL ? arg + 1 : "";

	if (strncmp(line, "ECHO", 4) == 0) {
		conn_printf(c, "+OK %s\r\n", arg);
	} else if (strncmp(line, "SLEEP", 5) == 0) {
		unsigned long ms = arg_num(arg);
		struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		conn_write_str(c, "+OK slept\r\n");
	} else if (strncmp(line, "BIG", 3) == 0) {
		big_reply(c, arg_num(arg));
	} else if (strcmp(line, "STARTTLS") == 0 || strcmp(line, "STLS") == 0) {
		int err = conn_starttls(c);

		if (err == 0)
			conn_write_str(c, "+OK begin TLS\r\n");
		else
			conn_printf(c, "-ERR %s\r\n", roost_strerror(err));
	} else if (strncmp(line, "LOGIN", 5) == 0 && arg[0] != '\0') {
		conn_set_user(c, arg);
		conn_write_str(c, "+OK logged in\r\n");
	} else if (strncmp(line, "IDLE", 4) == 0) {
		conn_set_idle_timeout(c, (unsigned)arg_num(arg));
		conn_write_str(c, "+OK\r\n");
	} else if (strncmp(line, "TIMER", 5) == 0) {
		conn_set_timer(c, (unsigned)arg_num(arg));
		conn_write_str(c, "+OK timer\r\n");
	} else if (strncmp(line, "NOTIFY", 6) == 0) {
		notify_later(c, (unsigned)arg_num(arg));
		conn_write_str(c, "+OK notify\r\n");
	} else if (strncmp(line, "DELAY", 5) == 0) {
		conn_delay(c, (unsigned)arg_num(arg));
		conn_write_str(c, "+OK delayed\r\n");
	} else if (strncmp(line, "RAISE", 5) == 0) {
		conn_set_input_max(c, arg_num(arg));
		conn_write_str(c, "+OK raised\r\n");
	} else if (strcmp(line, "INFO") == 0) {
		conn_printf(c, "+OK tls=%s secure=%d user=%s peer=%s listener=%s\r\n",
		            conn_is_tls(c) ? conn_tls_info(c) : "none", conn_is_secure(c) ? 1 : 0,
		            conn_user(c) != NULL ? conn_user(c) : "-", conn_peer(c),
		            conn_listener(c));
	} else if (strcmp(line, "QUIT") == 0) {
		conn_write_str(c, "+OK bye\r\n");
		conn_close(c);
	} else {
		conn_write_str(c, "-ERR unknown command\r\n");
	}
}

static void
t_on_wake(struct conn *c, void *session, enum wake_reason why)
{
	conn_write_str(c, why == WAKE_TIMER ? "* timer\r\n" : "* notify\r\n");
}

static void
t_on_timeout(struct conn *c, void *session)
{
	conn_write_str(c, "-ERR idle timeout\r\n");
}

static void
t_on_shutdown(struct conn *c, void *session)
{
	conn_write_str(c, "-ERR shutting down\r\n");
}

const struct proto_ops testd_ops = {
    .name = "test",
    .session_new = t_session_new,
    .session_free = t_session_free,
    .frame = t_frame,
    .on_command = t_on_command,
    .on_wake = t_on_wake,
    .on_timeout = t_on_timeout,
    .on_shutdown = t_on_shutdown,
};
