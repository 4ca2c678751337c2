/*
 * The connection runtime's output path, against a real server in this
 * process (one loop, one worker) and real sockets: a worker never waits on
 * a client, long replies run in steps (conn_continue), pipelined commands
 * wait while the output is full (backpressure), wake-ups and timers wait for
 * a reply in steps, a client that reads nothing is closed after the command
 * timeout, and a producer that never yields meets the output backstop.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/server.h"
#include "roost/server_impl.h"
#include "roost/services.h"
#include "roost/xalloc.h"
#include "../../core/conn_impl.h"

#include "check_run.h"

#define HWM (64 * 1024)
#define CHUNK 4096
#define REPLY_LEN 1000

/* ---- the protocol under test ----
 *
 *   STREAM n   "+OK n\r\n", n pattern bytes in steps, "\r\n"
 *   BLAST n    the same without yielding
 *   SW n       conn_wake() on itself, then STREAM n
 *   ST n       a 1 ms timer, then STREAM n
 *   P...       one REPLY_LEN-byte reply "+OK <seq>...\r\n"
 *   ECHO x     "+OK x\r\n"
 *   I<cmd>     <cmd>, run on the loop (proto_ops.command_inline)
 *   IQUIT      "+OK bye\r\n", then close (on the loop)
 *   GATE       waits on the worker until the test opens the gate, then
 *              "+OK gate" (a plain reply, handed back quietly)
 *   WI, WD     "+OK w"; the connection goes into wconns[] (referenced)
 *              and its wake-ups then run on the loop ("* iwake", WI) or
 *              are declined there and run on the worker ("* wake", WD)
 */

static _Atomic unsigned steps_run;
static _Atomic unsigned sessions_freed;
static _Atomic unsigned commands_run;
static _Atomic size_t pending_at_command; /* largest pending output when a command began */
static _Atomic size_t pending_after_step; /* largest pending output when a step ended */
static _Atomic int write_errors;
static _Atomic unsigned inline_runs;  /* on_command calls on the loop thread */
static _Atomic pthread_t loop_thread; /* set by t_inline, which runs on the loop */
static _Atomic int gate_state;        /* GATE: 1 while a worker waits, 2 = open */
static unsigned quiet_bound_ms;       /* tserver_start(): the loops' quiet bound, 0 default */
#define N_WCONNS 300
static struct conn *_Atomic wconns[N_WCONNS]; /* WI, WD */
static _Atomic unsigned n_wconns;
static _Atomic unsigned inline_wakes; /* t_wake_inline runs on the loop thread */
static unsigned idle_timeout_s;       /* tserver_start(): the idle timeout, 0 default */
static unsigned n_loops;              /* tserver_start(): the loops, 0 for 1 */

struct tsession {
	size_t left; /* stream bytes still to produce */
	size_t off;  /* position in the pattern */
	unsigned seq;
	char wake_mode; /* 0, or 'I' / 'D' after WI / WD */
};

static char
pattern_at(size_t i)
{
	return (char)('a' + i % 23);
}

static void
note_max(_Atomic size_t *m, size_t v)
{
	size_t cur = atomic_load(m);

	while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
		;
}

static void
stream_step(struct conn *c, void *session, void *arg)
{
	struct tsession *s = session;
	char chunk[CHUNK];

	atomic_fetch_add(&steps_run, 1);
	while (s->left > 0 && !conn_output_full(c)) {
		size_t k = s->left < sizeof(chunk) ? s->left : sizeof(chunk);

		for (size_t i = 0; i < k; i++)
			chunk[i] = pattern_at(s->off + i);
		if (conn_write(c, chunk, k) != 0)
			return;
		s->off += k;
		s->left -= k;
	}
	note_max(&pending_after_step, conn_output_pending(c));
	if (s->left > 0) {
		conn_continue(c, stream_step, NULL);
		return;
	}
	conn_write_str(c, "\r\n");
}

static void *
t_session_new(struct conn *c)
{
	conn_write_str(c, "+OK ready\r\n");
	return xcalloc(1, sizeof(struct tsession));
}

static void
t_session_free(void *session)
{
	free(session);
	atomic_fetch_add(&sessions_freed, 1);
}

static enum frame_result
t_frame(struct conn *c, void *session, const uint8_t *in, size_t len, size_t *used_r)
{
	const uint8_t *lf = memchr(in, '\n', len);

	if (lf == NULL)
		return len > conn_input_limit(c) ? FRAME_CLOSE : FRAME_AGAIN;
	*used_r = (size_t)(lf - in) + 1;
	return FRAME_COMMAND;
}

static void
t_on_command(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	struct tsession *s = session;
	char line[64];
	size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
	unsigned long arg;

	atomic_fetch_add(&commands_run, 1);
	note_max(&pending_at_command, conn_output_pending(c));
	if (len > 0 && cmd[0] == 'I') {
		/* Past the per-step allowance an I command runs on the worker. */
		if (pthread_equal(pthread_self(), atomic_load(&loop_thread)))
			atomic_fetch_add(&inline_runs, 1);
		if (len >= 5 && memcmp(cmd, "IQUIT", 5) == 0) {
			conn_write_str(c, "+OK bye\r\n");
			conn_close(c);
			return;
		}
		cmd++;
		len--;
		n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
	}
	memcpy(line, cmd, n);
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	arg = strtoul(strchr(line, ' ') != NULL ? strchr(line, ' ') + 1 : "0", NULL, 10);
	if (line[0] == 'P') {
		char reply[REPLY_LEN];
		int k = snprintf(reply, sizeof(reply), "+OK %u ", s->seq++);

		memset(reply + k, 'p', sizeof(reply) - (size_t)k - 2);
		memcpy(reply + sizeof(reply) - 2, "\r\n", 2);
		conn_write(c, reply, sizeof(reply));
	} else if (strcmp(line, "GATE") == 0) {
		struct pollfd none = {.fd = -1};

		atomic_store(&gate_state, 1);
		while (atomic_load(&gate_state) != 2)
			poll(&none, 1, 1);
		atomic_store(&gate_state, 0);
		conn_write_str(c, "+OK gate\r\n");
	} else if (strcmp(line, "WI") == 0 || strcmp(line, "WD") == 0) {
		unsigned i = atomic_fetch_add(&n_wconns, 1);

		ck_assert_uint_lt(i, N_WCONNS);
		s->wake_mode = line[1];
		conn_ref(c);
		atomic_store(&wconns[i], c);
		conn_write_str(c, "+OK w\r\n");
	} else if (strncmp(line, "ECHO ", 5) == 0) {
		conn_printf(c, "+OK %s\r\n", line + 5);
	} else if (strncmp(line, "BLAST ", 6) == 0) {
		char chunk[CHUNK];

		conn_printf(c, "+OK %lu\r\n", arg);
		for (size_t off = 0; off < arg; off += sizeof(chunk)) {
			size_t k = arg - off < sizeof(chunk) ? arg - off : sizeof(chunk);

			for (size_t i = 0; i < k; i++)
				chunk[i] = pattern_at(off + i);
			if (conn_write(c, chunk, k) != 0) {
				atomic_fetch_add(&write_errors, 1);
				return;
			}
		}
		conn_write_str(c, "\r\n");
	} else if (line[0] == 'S') {
		if (strncmp(line, "SW ", 3) == 0)
			conn_wake(c);
		else if (strncmp(line, "ST ", 3) == 0)
			conn_set_timer(c, 1);
		conn_printf(c, "+OK %lu\r\n", arg);
		s->left = arg;
		s->off = 0;
		stream_step(c, s, NULL);
	} else {
		conn_write_str(c, "-ERR\r\n");
	}
}

static void
t_on_wake(struct conn *c, void *session, enum wake_reason why)
{
	conn_write_str(c, why == WAKE_TIMER ? "* timer\r\n" : "* wake\r\n");
}

static bool
t_inline(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	atomic_store(&loop_thread, pthread_self());
	return len > 0 && cmd[0] == 'I';
}

static bool
t_wake_inline(struct conn *c, void *session)
{
	struct tsession *s = session;

	if (s->wake_mode != 'I')
		return false;
	if (pthread_equal(pthread_self(), atomic_load(&loop_thread)))
		atomic_fetch_add(&inline_wakes, 1);
	conn_write_str(c, "* iwake\r\n");
	return true;
}

static const struct proto_ops t_ops = {
    .name = "t",
    .session_new = t_session_new,
    .session_free = t_session_free,
    .frame = t_frame,
    .on_command = t_on_command,
    .command_inline = t_inline,
    .on_wake = t_on_wake,
    .wake_inline = t_wake_inline,
};

/* ---- the server in a thread ---- */

struct tserver {
	struct roost_config *cfg;
	struct roost_services services;
	struct server *srv;
	pthread_t thread;
	char dir[64];
	int port;
};

static void *
server_thread(void *arg)
{
	struct tserver *t = arg;

	ck_assert_int_eq(server_run(t->srv), 0);
	return NULL;
}

/* A port nothing listens on now (another process may still take it before
 * the server binds it: tserver_start() then tries another). */
static int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void
tserver_start(struct tserver *t, unsigned command_timeout)
{
	char addr[32], path[128];
	char *addrs[] = {addr, NULL};
	int tries = 0;

	atomic_store(&steps_run, 0);
	atomic_store(&sessions_freed, 0);
	atomic_store(&commands_run, 0);
	atomic_store(&pending_at_command, 0);
	atomic_store(&pending_after_step, 0);
	atomic_store(&write_errors, 0);
	atomic_store(&inline_runs, 0);
	atomic_store(&n_wconns, 0);
	atomic_store(&inline_wakes, 0);
	log_setup(LOG_LEVEL_WARN, true, false);
	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/check_conn.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(t->dir));
	t->cfg = config_defaults();
	t->cfg->workers = 1;
	t->cfg->loops = n_loops != 0 ? n_loops : 1;
	t->cfg->command_timeout = command_timeout;
	t->cfg->shutdown_grace = 1;
	t->cfg->max_connections_per_ip = 2 * N_WCONNS;
	if (idle_timeout_s != 0)
		t->cfg->preauth_idle_timeout = idle_timeout_s;
	snprintf(path, sizeof(path), "%s/cert.pem", t->dir);
	free(t->cfg->tls_cert);
	t->cfg->tls_cert = xstrdup(path);
	snprintf(path, sizeof(path), "%s/key.pem", t->dir);
	free(t->cfg->tls_key);
	t->cfg->tls_key = xstrdup(path);
	t->services.cfg = t->cfg;
	ck_assert_int_eq(server_create(t->cfg, &t->services, &t->srv), 0);
	do {
		ck_assert_int_lt(tries++, 20);
		t->port = free_port();
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
	} while (server_listen(t->srv, "t", addrs, &t_ops, false) != 0);
	for (unsigned i = 0; quiet_bound_ms != 0 && i < t->srv->nloops; i++)
		loop_set_quiet_bound(t->srv->loops[i].loop, quiet_bound_ms);
	ck_assert_int_eq(pthread_create(&t->thread, NULL, server_thread, t), 0);
}

static void
tserver_stop(struct tserver *t)
{
	char path[128];

	server_stop(t->srv);
	pthread_join(t->thread, NULL);
	server_free(&t->srv);
	config_free(&t->cfg);
	snprintf(path, sizeof(path), "%s/cert.pem", t->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/key.pem", t->dir);
	unlink(path);
	rmdir(t->dir);
}

/* ---- a client ---- */

struct client {
	int fd;
	char buf[65536];
	size_t off, len; /* buffered: buf[off..off+len) */
};

/* rcvbuf > 0 shrinks the receive buffer (a slow reader's small window). */
static void
client_open(struct client *cl, int port, int rcvbuf)
{
	struct sockaddr_in sin;

	memset(cl, 0, sizeof(*cl));
	cl->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(cl->fd, 0);
	if (rcvbuf > 0)
		setsockopt(cl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
}

/* Up to want bytes into buf, waiting at most ms for the first. */
static ssize_t
client_recv(struct client *cl, void *buf, size_t want, int ms)
{
	struct pollfd p = {.fd = cl->fd, .events = POLLIN};

	if (poll(&p, 1, ms) != 1)
		return -2;
	return recv(cl->fd, buf, want, 0);
}

/* Exactly n bytes (from what is buffered, then the socket), within 20 s. */
static void
client_exact(struct client *cl, char *out, size_t n)
{
	size_t got = 0;
	uint64_t deadline = clock_ms() + 20000;

	while (got < n) {
		ssize_t r;

		if (cl->len > 0) {
			size_t k = cl->len < n - got ? cl->len : n - got;

			memcpy(out + got, cl->buf + cl->off, k);
			cl->off += k;
			cl->len -= k;
			got += k;
			continue;
		}
		ck_assert_msg(clock_ms() < deadline, "no reply within 20 s (%zu of %zu bytes)", got,
		              n);
		r = client_recv(cl, cl->buf, sizeof(cl->buf), 20000);
		ck_assert_msg(r > 0, "connection closed or silent after %zu of %zu bytes", got, n);
		cl->off = 0;
		cl->len = (size_t)r;
	}
}

/* One line (without CRLF) into out. The loop asserts only per refill:
 * every Check assertion costs a message to the parent process. */
static void
client_line(struct client *cl, char *out, size_t size)
{
	size_t n = 0;

	for (;;) {
		char *lf = memchr(cl->buf + cl->off, '\n', cl->len);
		size_t k = lf != NULL ? (size_t)(lf - (cl->buf + cl->off)) + 1 : cl->len;
		char ch;

		if (n + k >= size)
			ck_abort_msg("line longer than %zu", size);
		memcpy(out + n, cl->buf + cl->off, k);
		n += k;
		cl->off += k;
		cl->len -= k;
		if (lf != NULL)
			break;
		client_exact(cl, &ch, 1);
		out[n++] = ch;
		if (ch == '\n')
			break;
	}
	n--;
	if (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
}

static void
client_send(struct client *cl, const char *s)
{
	size_t len = strlen(s);

	ck_assert_int_eq(send(cl->fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
expect_line(struct client *cl, const char *want)
{
	char line[256];

	client_line(cl, line, sizeof(line));
	ck_assert_str_eq(line, want);
}

/* n clients whose connections went into wconns[] with WI (woken on the
 * loop while its allowance lasts). */
static void
open_wake_clients(struct client *cl, unsigned n, int port)
{
	for (unsigned i = 0; i < n; i++) {
		client_open(&cl[i], port, 0);
		expect_line(&cl[i], "+OK ready");
		client_send(&cl[i], "WI\r\n");
		expect_line(&cl[i], "+OK w");
	}
}

/* Read the "+OK <n>" line a streaming command answers with, then its n
 * pattern bytes plus CRLF, and check every byte. */
static void
expect_stream(struct client *cl, size_t n)
{
	char head[32];
	char *got;

	snprintf(head, sizeof(head), "+OK %zu", n);
	expect_line(cl, head);
	got = xmalloc(n + 2);
	client_exact(cl, got, n + 2);
	for (size_t i = 0; i < n; i++)
		if (got[i] != pattern_at(i))
			ck_abort_msg("stream byte %zu differs", i);
	ck_assert(got[n] == '\r' && got[n + 1] == '\n');
	free(got);
}

/* The connection is closed by the server within 20 s (reads and discards
 * what is still in flight). */
static void
expect_closed(struct client *cl)
{
	uint64_t deadline = clock_ms() + 20000;
	char sink[65536];

	for (;;) {
		ssize_t r = client_recv(cl, sink, sizeof(sink), 20000);

		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return;
		ck_assert_msg(r > 0, "not closed within 20 s");
		ck_assert(clock_ms() < deadline);
	}
}

static void
wait_until_freed(unsigned n)
{
	uint64_t deadline = clock_ms() + 20000;
	struct pollfd none = {.fd = -1};

	while (atomic_load(&sessions_freed) < n) {
		ck_assert_msg(clock_ms() < deadline, "session not released within 20 s");
		poll(&none, 1, 10);
	}
}

/* ---- tests ---- */

START_TEST(long_reply_runs_in_steps)
{
	struct tserver t;
	struct client a;
	size_t n = 3 * 1024 * 1024 + 17;
	char cmd[64];

	tserver_start(&t, 20);
	client_open(&a, t.port, 16384);
	expect_line(&a, "+OK ready");
	snprintf(cmd, sizeof(cmd), "STREAM %zu\r\nECHO after\r\n", n);
	client_send(&a, cmd);
	expect_stream(&a, n);
	expect_line(&a, "+OK after");
	ck_assert_uint_gt(atomic_load(&steps_run), 2);
	/* Each step stops at the high-water mark, give or take one chunk. */
	ck_assert_uint_lt(atomic_load(&pending_after_step), HWM + CHUNK);
	close(a.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(worker_is_not_held_by_a_client_that_does_not_read)
{
	/* One worker; two clients ask for long replies and read nothing (one
	 * in steps, one all at once). A third is greeted and served. */
	struct tserver t;
	struct client a, b, c;

	tserver_start(&t, 60);
	client_open(&a, t.port, 4096);
	client_open(&b, t.port, 4096);
	expect_line(&a, "+OK ready");
	expect_line(&b, "+OK ready");
	client_send(&a, "STREAM 40000000\r\n");
	client_send(&b, "BLAST 20000000\r\n");
	client_open(&c, t.port, 0);
	expect_line(&c, "+OK ready");
	client_send(&c, "ECHO served\r\n");
	expect_line(&c, "+OK served");
	close(a.fd);
	close(b.fd);
	close(c.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(inline_commands_keep_their_order)
{
	/* Commands run on the loop and on the worker, pipelined in one send,
	 * answer in order; one on the loop closes the connection. */
	struct tserver t;
	struct client a;
	char cmd[2048] = "", want[32];
	size_t off = 0;

	tserver_start(&t, 20);
	client_open(&a, t.port, 0);
	expect_line(&a, "+OK ready");
	for (unsigned i = 0; i < 40; i++)
		off += (size_t)snprintf(cmd + off, sizeof(cmd) - off, "%sECHO %u\r\n",
		                        i % 7 == 3 ? "" : "I", i);
	snprintf(cmd + off, sizeof(cmd) - off, "IQUIT\r\nECHO never\r\n");
	client_send(&a, cmd);
	for (unsigned i = 0; i < 40; i++) {
		snprintf(want, sizeof(want), "+OK %u", i);
		expect_line(&a, want);
	}
	expect_line(&a, "+OK bye");
	expect_closed(&a);
	ck_assert_uint_ge(atomic_load(&inline_runs), 1);
	close(a.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(pipelined_commands_wait_while_output_is_full)
{
	/* The client pipelines commands and reads nothing: the server stops
	 * running them (and reading them) once the output is full, and the
	 * one worker stays free for others. Then the client reads every reply,
	 * in order. */
	struct tserver t;
	struct client a, b;
	char cmd[REPLY_LEN], line[REPLY_LEN + 8];
	unsigned sent = 0;
	int small = 16384;

	tserver_start(&t, 60);
	client_open(&a, t.port, small);
	setsockopt(a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	expect_line(&a, "+OK ready");
	memset(cmd, 'x', sizeof(cmd));
	/* _i == 1: the same, with commands that run on the loop */
	if (_i == 1)
		memcpy(cmd, "IP", 2);
	else
		cmd[0] = 'P';
	cmd[sizeof(cmd) - 1] = '\n';
	for (;;) {
		struct pollfd p = {.fd = a.fd, .events = POLLOUT};

		/* The server stopped reading when no byte goes out for 2 s. */
		if (poll(&p, 1, 2000) == 0)
			break;
		ck_assert_int_eq(send(a.fd, cmd, sizeof(cmd), MSG_NOSIGNAL | MSG_DONTWAIT),
		                 (ssize_t)sizeof(cmd));
		sent++;
		ck_assert_msg(sent < 200000, "the server keeps reading commands it cannot answer");
	}
	client_open(&b, t.port, 0);
	expect_line(&b, "+OK ready");
	client_send(&b, "ECHO free\r\n");
	expect_line(&b, "+OK free");
	ck_assert_uint_lt(atomic_load(&commands_run), sent + 3);
	ck_assert_uint_lt(atomic_load(&pending_at_command), HWM);
	for (unsigned i = 0; i < sent; i++) {
		char want[32];

		client_line(&a, line, sizeof(line));
		snprintf(want, sizeof(want), "+OK %u ", i);
		if (strncmp(line, want, strlen(want)) != 0 || strlen(line) != REPLY_LEN - 2)
			ck_abort_msg("reply %u: %.20s (%zu bytes)", i, line, strlen(line));
	}
	close(a.fd);
	close(b.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(wakeups_wait_for_the_last_step)
{
	struct tserver t;
	struct client a;
	size_t n = 2 * 1024 * 1024;
	char cmd[64];

	tserver_start(&t, 20);
	client_open(&a, t.port, 16384);
	expect_line(&a, "+OK ready");
	snprintf(cmd, sizeof(cmd), "SW %zu\r\n", n);
	client_send(&a, cmd);
	expect_stream(&a, n);
	expect_line(&a, "* wake");
	snprintf(cmd, sizeof(cmd), "ST %zu\r\n", n);
	client_send(&a, cmd);
	expect_stream(&a, n);
	expect_line(&a, "* timer");
	close(a.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(close_during_a_reply_in_steps)
{
	struct tserver t;
	struct client a, b;
	char part[100000];

	tserver_start(&t, 20);
	client_open(&a, t.port, 16384);
	expect_line(&a, "+OK ready");
	client_send(&a, "STREAM 50000000\r\n");
	expect_line(&a, "+OK 50000000");
	client_exact(&a, part, sizeof(part));
	close(a.fd);
	wait_until_freed(1);
	client_open(&b, t.port, 0);
	expect_line(&b, "+OK ready");
	client_send(&b, "ECHO still\r\n");
	expect_line(&b, "+OK still");
	close(b.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(client_that_never_reads_is_closed_after_command_timeout)
{
	struct tserver t;
	struct client a;
	uint64_t start;

	tserver_start(&t, 1);
	client_open(&a, t.port, 4096);
	expect_line(&a, "+OK ready");
	start = clock_ms();
	client_send(&a, "STREAM 50000000\r\n");
	wait_until_freed(1);
	ck_assert_uint_ge(clock_ms() - start, 900);
	expect_closed(&a);
	close(a.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(output_backstop_closes_a_producer_that_never_yields)
{
	struct tserver t;
	struct client a;

	tserver_start(&t, 60);
	client_open(&a, t.port, 4096);
	expect_line(&a, "+OK ready");
	client_send(&a, "BLAST 80000000\r\n");
	wait_until_freed(1);
	ck_assert_int_eq(atomic_load(&write_errors), 1);
	expect_closed(&a);
	close(a.fd);
	tserver_stop(&t);
}
END_TEST

/* A GATE command is running on the worker: wait until it waits. */
static void
wait_gate_closed(void)
{
	uint64_t deadline = clock_ms() + 60000;
	struct pollfd none = {.fd = -1};

	while (atomic_load(&gate_state) != 1) {
		ck_assert_msg(clock_ms() < deadline, "GATE did not start within 60 s");
		poll(&none, 1, 1);
	}
}

/* Let the GATE go once the loop has had time to see what the client sent
 * meanwhile while the worker still owned the connection (the race the
 * test is about; it passes whichever way the race goes). */
static void
open_gate(void)
{
	struct pollfd none = {.fd = -1};

	poll(&none, 1, 20);
	atomic_store(&gate_state, 2);
}

START_TEST(quiet_hand_backs_lose_no_wakeup)
{
	/* Plain replies go back to the loop without waking it. With the
	 * loop's quiet bound at 60 s (each read below gives up after 20 s),
	 * every answer here shows that something else woke the loop in time:
	 * the client's next command, a command or the end of input that
	 * arrived while the worker still ran, or a wake-up posted meanwhile. */
	struct tserver t;
	struct client a, b;
	char cmd[64], want[64];

	quiet_bound_ms = 60000;
	tserver_start(&t, 20);
	quiet_bound_ms = 0;
	client_open(&a, t.port, 0);
	expect_line(&a, "+OK ready");
	/* One command at a time: the next one wakes the loop. */
	for (unsigned i = 0; i < 300; i++) {
		snprintf(cmd, sizeof(cmd), "ECHO %u\r\n", i);
		snprintf(want, sizeof(want), "+OK %u", i);
		client_send(&a, cmd);
		expect_line(&a, want);
	}
	/* The next command arrives while the worker runs the last one. */
	for (unsigned i = 0; i < 5; i++) {
		client_send(&a, "GATE\r\n");
		wait_gate_closed();
		client_send(&a, "ECHO next\r\n");
		open_gate();
		expect_line(&a, "+OK gate");
		expect_line(&a, "+OK next");
	}
	/* A wake-up posted while the worker runs (the loop skips it then). */
	for (unsigned i = 0; i < 5; i++) {
		client_send(&a, "SW 0\r\n");
		expect_line(&a, "+OK 0");
		expect_line(&a, "");
		expect_line(&a, "* wake");
	}
	/* The end of input arrives while the worker runs. */
	client_send(&a, "GATE\r\n");
	wait_gate_closed();
	ck_assert_int_eq(shutdown(a.fd, SHUT_WR), 0);
	open_gate();
	expect_line(&a, "+OK gate");
	expect_closed(&a);
	wait_until_freed(1);
	close(a.fd);
	/* A server stop while a quiet hand-back waits: the goodbye and the
	 * close come without the client sending anything. */
	client_open(&b, t.port, 0);
	expect_line(&b, "+OK ready");
	client_send(&b, "ECHO last\r\n");
	expect_line(&b, "+OK last");
	server_stop(t.srv);
	expect_closed(&b);
	close(b.fd);
	tserver_stop(&t);
}
END_TEST

START_TEST(inline_wakeups_past_the_budget_lose_none)
{
	/* Wake-ups the protocol runs on the loop (wake_inline), posted at
	 * once for more sessions than the loop runs in one iteration (set to
	 * 100 here) while the loop is held by a command: the rest wait for
	 * the next iterations, still on the loop. Every session hears each
	 * round's wake-up exactly once: on the loop, or on the worker where
	 * the protocol declined it (WD). */
	struct tserver t;
	struct client *cl = xcalloc(N_WCONNS, sizeof(*cl));
	struct client h;
	char line[64];

	tserver_start(&t, 20);
	t.srv->loops[0].wake_inline_max = 100;
	for (unsigned i = 0; i < N_WCONNS; i++) {
		client_open(&cl[i], t.port, 0);
		expect_line(&cl[i], "+OK ready");
		client_send(&cl[i], i % 10 == 9 ? "WD\r\n" : "WI\r\n");
		expect_line(&cl[i], "+OK w");
	}
	ck_assert_uint_eq(atomic_load(&n_wconns), N_WCONNS);
	client_open(&h, t.port, 0);
	expect_line(&h, "+OK ready");
	for (unsigned round = 0; round < 3; round++) {
		/* Round 0 holds the loop (IGATE runs on it) while all are
		 * posted; the others race with the loop. */
		if (round == 0) {
			client_send(&h, "IGATE\r\n");
			wait_gate_closed();
		}
		for (unsigned i = 0; i < N_WCONNS; i++)
			conn_wake(atomic_load(&wconns[i]));
		if (round == 0) {
			open_gate();
			expect_line(&h, "+OK gate");
		}
		/* Each line is the client's next one (read in the order of
		 * the connections, whatever order the loop took them in). */
		for (unsigned i = 0; i < N_WCONNS; i++) {
			client_line(&cl[i], line, sizeof(line));
			ck_assert_str_eq(line, i % 10 == 9 ? "* wake" : "* iwake");
		}
	}
	/* No wake-up came twice: the next line answers ECHO. */
	for (unsigned i = 0; i < N_WCONNS; i++) {
		client_send(&cl[i], "ECHO end\r\n");
		expect_line(&cl[i], "+OK end");
	}
	/* 270 sessions, 3 rounds, each wake-up once and on the loop. */
	ck_assert_uint_eq(atomic_load(&inline_wakes), 3 * (N_WCONNS - N_WCONNS / 10));
	for (unsigned i = 0; i < N_WCONNS; i++) {
		struct conn *c = atomic_load(&wconns[i]);

		conn_unref(c);
		close(cl[i].fd);
	}
	close(h.fd);
	free(cl);
	tserver_stop(&t);
}
END_TEST

START_TEST(stop_with_wakeups_waiting)
{
	/* A server stopped while its loop has wake-ups left for its next
	 * iterations (one per iteration here) closes every session and
	 * ends: what is still on the list when the loop is freed is let go. */
	enum { N = 100 };
	struct tserver t;
	struct client *cl = xcalloc(N, sizeof(*cl));
	struct client h;

	tserver_start(&t, 20);
	t.srv->loops[0].wake_inline_max = 1;
	open_wake_clients(cl, N, t.port);
	client_open(&h, t.port, 0);
	expect_line(&h, "+OK ready");
	client_send(&h, "IGATE\r\n");
	wait_gate_closed();
	for (unsigned i = 0; i < N; i++)
		conn_wake(atomic_load(&wconns[i]));
	open_gate();
	expect_line(&h, "+OK gate");
	tserver_stop(&t);
	for (unsigned i = 0; i < N; i++) {
		conn_unref(atomic_load(&wconns[i]));
		close(cl[i].fd);
	}
	close(h.fd);
	free(cl);
}
END_TEST

/* The stop of shutdown_with_wakeups_left_for_later, posted by the test: the
 * loop's own stop_msg is posted again by the server's stop (tserver_stop()),
 * and a message may be queued once at a time (posted twice it was linked
 * to itself; and ThreadSanitizer saw the second post's write race with
 * the ended loop's drain of the first). */
static struct loop_msg test_stop_msg;
static struct srv_loop *test_stop_loop;

static void
test_stop_arrived(struct loop_msg *m)
{
	conn_loop_stop(test_stop_loop);
}

START_TEST(shutdown_with_wakeups_left_for_later)
{
	/* The loop stops in the iteration that spent its wake-up allowance
	 * and left wake-ups for later (wake_later()): its connections close,
	 * the loop ends with the message that would step them still queued,
	 * and loop_free() runs it. The connections on that list are closed
	 * by then, so it lets them go whatever the allowance; waiting for
	 * an iteration that never comes (posting itself again, which
	 * loop_free() does not run) kept their references: every
	 * connection woken past the allowance when the server stopped
	 * (SIGTERM while IDLE sessions are woken) was never freed. */
	enum { N = 3 };
	struct tserver t;
	struct client cl[N], h;
	struct conn *c[N];

	tserver_start(&t, 20);
	t.srv->loops[0].wake_inline_max = 1;
	open_wake_clients(cl, N, t.port);
	for (unsigned i = 0; i < N; i++)
		c[i] = atomic_load(&wconns[i]);
	client_open(&h, t.port, 0);
	expect_line(&h, "+OK ready");
	/* While IGATE holds the loop: N wake-ups, then the stop, so the
	 * loop drains them together (one runs, the others wait for later,
	 * then the stop closes every connection and the loop ends). */
	client_send(&h, "IGATE\r\n");
	wait_gate_closed();
	for (unsigned i = 0; i < N; i++)
		conn_wake(c[i]);
	test_stop_loop = &t.srv->loops[0];
	test_stop_msg.fn = test_stop_arrived;
	loop_post(t.srv->loops[0].loop, &test_stop_msg);
	open_gate();
	tserver_stop(&t);
	for (unsigned i = 0; i < N; i++) {
		unsigned refs = atomic_load(&c[i]->refs);

		ck_assert_uint_eq(refs, 1); /* only the reference WI took */
		conn_unref(c[i]);
		close(cl[i].fd);
	}
	close(h.fd);
}
END_TEST

START_TEST(connections_spread_over_the_loops)
{
	/* Whichever loop accepts, a connection goes to the loop that holds
	 * the fewest, so clients that arrive one after the other are shared
	 * out evenly, and each is served where it went. */
	enum { N = 40 };
	struct tserver t;
	struct client *cl = xcalloc(N, sizeof(*cl));
	unsigned h0, h1;

	n_loops = 2;
	tserver_start(&t, 20);
	n_loops = 0;
	for (unsigned i = 0; i < N; i++) {
		client_open(&cl[i], t.port, 0);
		expect_line(&cl[i], "+OK ready");
	}
	for (unsigned i = 0; i < N; i++) {
		client_send(&cl[i], "ECHO x\r\n");
		expect_line(&cl[i], "+OK x");
	}
	h0 = atomic_load(&t.srv->loops[0].held);
	h1 = atomic_load(&t.srv->loops[1].held);
	ck_assert_uint_eq(h0 + h1, N);
	ck_assert_uint_le(h0 > h1 ? h0 - h1 : h1 - h0, 1);
	for (unsigned i = 0; i < N; i++)
		close(cl[i].fd);
	wait_until_freed(N);
	free(cl);
	tserver_stop(&t);
}
END_TEST

/* A client of requests_sent_on_connect_are_answered: opens n connections
 * one after the other, each sending its command at once (before the server
 * accepted it, let alone greeted it), and reads the greeting and the
 * answer. No Check assertion here (a thread); the first failure is kept. */
struct burst {
	pthread_t th;
	int port;
	unsigned id, n;
	unsigned answered;
	char failure[160];
};

/* Read into buf until it ends with want (the whole expected text), within
 * 20 s. */
static bool
burst_expect(int fd, const char *want, char *got, size_t size)
{
	size_t len = strlen(want), have = 0;
	uint64_t deadline = clock_ms() + 20000;

	while (have < len && have + 1 < size) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = clock_ms();
		ssize_t r;

		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) != 1)
			break;
		r = recv(fd, got + have, size - 1 - have, 0);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	got[have] = '\0';
	return have == len && memcmp(got, want, len) == 0;
}

static void *
burst_thread(void *arg)
{
	struct burst *b = arg;

	for (unsigned i = 0; i < b->n; i++) {
		struct sockaddr_in sin;
		char cmd[64], want[96], got[128];
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		bool ok;

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)b->port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
			snprintf(b->failure, sizeof(b->failure), "connect: %s", strerror(errno));
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		/* Every other one runs on the loop (I), the rest on the worker. */
		snprintf(cmd, sizeof(cmd), "%sECHO %u.%u\r\n", i % 2 ? "I" : "", b->id, i);
		snprintf(want, sizeof(want), "+OK ready\r\n+OK %u.%u\r\n", b->id, i);
		ok = send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) == (ssize_t)strlen(cmd) &&
		     burst_expect(fd, want, got, sizeof(got));
		close(fd);
		if (!ok) {
			snprintf(b->failure, sizeof(b->failure),
			         "connection %u.%u: sent at connect, got \"%.60s\" within 20 s",
			         b->id, i, got);
			return NULL;
		}
		b->answered++;
	}
	return NULL;
}

/* Run threads burst clients of per connections each; every one answered. */
static void
run_bursts(int port, unsigned threads, unsigned per)
{
	struct burst b[4];

	ck_assert_uint_le(threads, 4);
	for (unsigned i = 0; i < threads; i++) {
		memset(&b[i], 0, sizeof(b[i]));
		b[i].port = port;
		b[i].id = i;
		b[i].n = per;
		ck_assert_int_eq(pthread_create(&b[i].th, NULL, burst_thread, &b[i]), 0);
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_join(b[i].th, NULL);
	for (unsigned i = 0; i < threads; i++) {
		ck_assert_msg(b[i].failure[0] == '\0', "%s", b[i].failure);
		ck_assert_uint_eq(b[i].answered, per);
	}
}

START_TEST(requests_sent_on_connect_are_answered)
{
	/* Clients that send their command the moment they connect, against
	 * two loops: whichever loop accepts, the connection goes to the one
	 * holding fewer (a hand-off between the loops while the command is
	 * already in the socket), its greeting runs on a worker, and the
	 * command must be read and answered. The loops' quiet bound is 60 s
	 * (each client gives up after 20 s), so every answer shows that the
	 * loop was woken, not that it happened to look. First one client at
	 * a time (nothing else wakes a loop that missed a wake-up), then four
	 * at once (hand-offs both ways while both loops are busy). */
	struct tserver t;

	n_loops = 2;
	quiet_bound_ms = 60000;
	tserver_start(&t, 20);
	n_loops = 0;
	quiet_bound_ms = 0;
	run_bursts(t.port, 1, 200);
	run_bursts(t.port, 4, 200);
	wait_until_freed(200 + 4 * 200);
	tserver_stop(&t);
}
END_TEST

START_TEST(idle_timeout_after_a_quiet_hand_back)
{
	/* A client silent after a plain reply meets its idle timeout: the
	 * loop, asleep with a hand-back queued, looks again within its quiet
	 * bound. */
	struct tserver t;
	struct client a;

	idle_timeout_s = 1;
	tserver_start(&t, 20);
	idle_timeout_s = 0;
	client_open(&a, t.port, 0);
	expect_line(&a, "+OK ready");
	client_send(&a, "ECHO idle\r\n");
	expect_line(&a, "+OK idle");
	expect_closed(&a);
	close(a.fd);
	tserver_stop(&t);
}
END_TEST

/* ---- the state table (conn_enter() exits on a transition it forbids) ---- */

static void
walk(const enum conn_state *path, size_t n)
{
	struct conn c;

	memset(&c, 0, sizeof(c));
	c.state = path[0];
	for (size_t i = 1; i < n; i++) {
		conn_enter(&c, path[i]);
		ck_assert_int_eq(c.state, path[i]);
	}
}

START_TEST(allowed_transitions)
{
	/* Implicit TLS, the greeting, commands, a reply in steps,
	 * backpressure, STARTTLS, a delay, a close, lingering. */
	static const enum conn_state life[] = {
	    CONN_NEW,       CONN_HANDSHAKE, CONN_NEW,    CONN_WORKER,   CONN_READY,
	    CONN_WORKER,    CONN_CONTINUE,  CONN_WORKER, CONN_CONTINUE, CONN_WORKER,
	    CONN_READY,     CONN_THROTTLED, CONN_READY,  CONN_WORKER,   CONN_STARTTLS,
	    CONN_HANDSHAKE, CONN_READY,     CONN_WORKER, CONN_DELAYED,  CONN_CLOSING,
	    CONN_LINGER,    CONN_DEAD,
	};

	walk(life, sizeof(life) / sizeof(life[0]));
}
END_TEST

/* Each of these must stop the process (a broken invariant). */
static const enum conn_state forbidden[][2] = {
    {CONN_WORKER, CONN_DEAD},      /* the loop never closes what a worker owns */
    {CONN_CONTINUE, CONN_READY},   /* no command between the steps of a reply */
    {CONN_THROTTLED, CONN_WORKER}, /* nothing runs while the output is full */
    {CONN_DEAD, CONN_READY},       {CONN_LINGER, CONN_READY},
    {CONN_NEW, CONN_READY}, /* no command before the greeting */
};

START_TEST(forbidden_transitions_stop)
{
	log_setup(LOG_LEVEL_ERROR, false, false);
	walk(forbidden[_i], 2);
}
END_TEST

static Suite *
conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("output");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, long_reply_runs_in_steps);
	tcase_add_test(tc, worker_is_not_held_by_a_client_that_does_not_read);
	tcase_add_loop_test(tc, pipelined_commands_wait_while_output_is_full, 0, 2);
	tcase_add_test(tc, inline_commands_keep_their_order);
	tcase_add_test(tc, wakeups_wait_for_the_last_step);
	tcase_add_test(tc, close_during_a_reply_in_steps);
	tcase_add_test(tc, client_that_never_reads_is_closed_after_command_timeout);
	tcase_add_test(tc, output_backstop_closes_a_producer_that_never_yields);
	tcase_add_test(tc, quiet_hand_backs_lose_no_wakeup);
	tcase_add_test(tc, inline_wakeups_past_the_budget_lose_none);
	tcase_add_test(tc, idle_timeout_after_a_quiet_hand_back);
	tcase_add_test(tc, connections_spread_over_the_loops);
	tcase_add_test(tc, requests_sent_on_connect_are_answered);
	tcase_add_test(tc, stop_with_wakeups_waiting);
	tcase_add_test(tc, shutdown_with_wakeups_left_for_later);
	suite_add_tcase(s, tc);
	tc = tcase_create("states");
	tcase_add_test(tc, allowed_transitions);
	tcase_add_loop_exit_test(tc, forbidden_transitions_stop, 1, 0,
	                         (int)(sizeof(forbidden) / sizeof(forbidden[0])));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(conn_suite());
}
