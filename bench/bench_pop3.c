/*
 * POP3 session throughput: how many complete "download and delete" sessions
 * per second `roost serve` completes, per storage backend.
 *
 * For each backend: a fresh data directory with U users, each with a
 * 100-message maildrop (filled directly through the storage API before the
 * server starts), then `roost serve` with only the pop3 listener, then C
 * client threads each taking the next user and running
 *   USER/PASS, STAT, RETR 1..100, DELE 1..100, QUIT
 * one command at a time (as fetchmail and most clients do), checking every
 * reply. Only the sessions are timed. The server keeps [storage] fsync on,
 * so QUIT pays for a durable expunge.
 *
 *   build/bench/bench_pop3 [-b lmdb,maildir] [-u users] [-c clients] [-m msgs]
 *                          [-s msg_size] [-r roost_binary]
 *
 * Defaults: 200 sessions, 8 clients, 100 messages of 4 KiB; with
 * BENCH_PROFILE=full (make bench FULL=1) 1000 sessions and 32 clients.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support/bench_run.h"
#include "support/bench_util.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/storage.h"

struct bench {
	struct bench_run run;
	unsigned users, clients, msgs;
	size_t msg_size;
	atomic_uint next_user;
	atomic_uint failures;
	atomic_ulong bytes;
};

static void
write_config(struct bench *b, bool fsync)
{
	bench_write_config(&b->run, fsync, "pop3", "[limits]\nmax_connections_per_ip = 10000\n");
}

/* Users with {PLAIN} passwords (cheap to verify: the bench measures POP3
 * and storage, not password hashing), and their maildrops. */
static void
prepare(struct bench *b)
{
	struct roost_config *cfg;
	struct storage *st;
	char user[64];
	uint8_t *msg = malloc(b->msg_size);
	FILE *pw = bench_passwd_open(&b->run);
	int r;

	for (unsigned u = 0; u < b->users; u++) {
		bench_user_name(u, user, sizeof(user));
		fprintf(pw, "%s:{PLAIN}pw%u::::::\n", user, u);
	}
	fclose(pw);

	write_config(b, false);
	st = bench_storage_open(&b->run, &cfg);
	for (unsigned u = 0; u < b->users; u++) {
		bench_user_name(u, user, sizeof(user));
		r = storage_user_init(st, user);
		for (unsigned m = 0; r == 0 && m < b->msgs; m++) {
			struct msg_input in = {.fd = -1};
			uint32_t uidv, uid;
			int n =
			    snprintf((char *)msg, b->msg_size,
			             "From: sender@example.org\r\nTo: %s\r\nSubject: message %u\r\n"
			             "Message-ID: <%u.%u@bench.test>\r\n\r\n",
			             user, m, u, m);

			for (size_t i = (size_t)n; i < b->msg_size; i++)
				msg[i] = (i % 72 == 70)   ? '\r'
				         : (i % 72 == 71) ? '\n'
				         : (i % 720 == 0) ? '.'
				                          : (uint8_t)('a' + i % 26);
			in.data = msg;
			in.len = b->msg_size;
			r = storage_append(st, user, "INBOX", &in, &uidv, &uid);
		}
		if (r != 0) {
			fprintf(stderr, "bench_pop3: fill %s: %s\n", user, roost_strerror(r));
			exit(1);
		}
	}
	bench_storage_close(&st, &cfg);
	free(msg);
	write_config(b, true);
}

/* ---- a minimal POP3 client ---- */

struct client {
	int fd;
	char buf[65536];
	size_t have;
};

static int
fill(struct client *c)
{
	return bench_fill(c->fd, c->buf, sizeof(c->buf), &c->have);
}

/* One reply line; returns 0 for +OK. */
static int
status_line(struct client *c)
{
	for (;;) {
		char *lf = memchr(c->buf, '\n', c->have);

		if (lf != NULL) {
			size_t len = (size_t)(lf - c->buf) + 1;
			int ok = c->have >= 3 && memcmp(c->buf, "+OK", 3) == 0;

			memmove(c->buf, c->buf + len, c->have - len);
			c->have -= len;
			return ok ? 0 : -1;
		}
		if (fill(c) < 0)
			return -1;
	}
}

/* Skip a multi-line body up to "\r\n.\r\n" (the status line is read);
 * returns the bytes skipped. */
static long
skip_body(struct client *c)
{
	long total = 0;

	for (;;) {
		size_t i = 0;

		while (i < c->have) {
			char *lf = memchr(c->buf + i, '\n', c->have - i);
			size_t len;

			if (lf == NULL)
				break;
			len = (size_t)(lf - (c->buf + i)) + 1;
			if (len == 3 && memcmp(c->buf + i, ".\r\n", 3) == 0) {
				i += len;
				memmove(c->buf, c->buf + i, c->have - i);
				c->have -= i;
				return total;
			}
			total += (long)len;
			i += len;
		}
		/* Keep a partial line, drop the complete ones. */
		memmove(c->buf, c->buf + i, c->have - i);
		c->have -= i;
		if (fill(c) < 0)
			return -1;
	}
}

static int
send_line(struct client *c, const char *line)
{
	return fdio_write_all(c->fd, line, strlen(line));
}

static int
session(struct bench *b, unsigned u)
{
	struct client *c = malloc(sizeof(*c));
	char line[256], user[64];
	long bytes = 0;
	int ok = -1;

	c->have = 0;
	c->fd = bench_connect(b->run.port);
	if (c->fd < 0)
		goto out;
	bench_user_name(u, user, sizeof(user));
	if (status_line(c) != 0)
		goto out;
	snprintf(line, sizeof(line), "USER %s\r\n", user);
	if (send_line(c, line) != 0 || status_line(c) != 0)
		goto out;
	snprintf(line, sizeof(line), "PASS pw%u\r\n", u);
	if (send_line(c, line) != 0 || status_line(c) != 0)
		goto out;
	if (send_line(c, "STAT\r\n") != 0 || status_line(c) != 0)
		goto out;
	for (unsigned m = 1; m <= b->msgs; m++) {
		long n;

		snprintf(line, sizeof(line), "RETR %u\r\n", m);
		if (send_line(c, line) != 0 || status_line(c) != 0)
			goto out;
		n = skip_body(c);
		if (n < 0)
			goto out;
		bytes += n;
	}
	for (unsigned m = 1; m <= b->msgs; m++) {
		snprintf(line, sizeof(line), "DELE %u\r\n", m);
		if (send_line(c, line) != 0 || status_line(c) != 0)
			goto out;
	}
	if (send_line(c, "QUIT\r\n") != 0 || status_line(c) != 0)
		goto out;
	atomic_fetch_add(&b->bytes, (unsigned long)bytes);
	ok = 0;
out:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return ok;
}

static void *
client_thread(void *arg)
{
	struct bench *b = arg;

	for (;;) {
		unsigned u = atomic_fetch_add(&b->next_user, 1);

		if (u >= b->users)
			break;
		if (session(b, u) != 0)
			atomic_fetch_add(&b->failures, 1);
	}
	return NULL;
}

/* Returns the number of failed sessions. */
static unsigned
run_backend(void *arg, const char *backend)
{
	struct bench *b = arg;
	pthread_t *threads;
	double t0, t1, fill0;

	bench_run_begin(&b->run, backend);
	atomic_store(&b->next_user, 0);
	atomic_store(&b->failures, 0);
	atomic_store(&b->bytes, 0);

	fill0 = bench_now();
	prepare(b);
	fprintf(stderr, "bench_pop3: %s: filled %u maildrops x %u messages in %.1f s\n", backend,
	        b->users, b->msgs, bench_now() - fill0);
	bench_run_serve(&b->run);

	threads = calloc(b->clients, sizeof(*threads));
	t0 = bench_now();
	for (unsigned i = 0; i < b->clients; i++)
		pthread_create(&threads[i], NULL, client_thread, b);
	for (unsigned i = 0; i < b->clients; i++)
		pthread_join(threads[i], NULL);
	t1 = bench_now();
	free(threads);

	bench_run_end(&b->run);
	printf(
	    "%-8s %8u %8u %8u %9.2f %11.1f %11.0f %9.1f %8u\n", backend, b->users, b->clients,
	    b->msgs, t1 - t0, (double)b->users / (t1 - t0), (double)b->users * b->msgs / (t1 - t0),
	    (double)atomic_load(&b->bytes) / (t1 - t0) / (1024 * 1024), atomic_load(&b->failures));
	fflush(stdout);
	return atomic_load(&b->failures);
}

int
main(int argc, char **argv)
{
	/* make bench FULL=1: more sessions, more concurrency. */
	struct bench b = {.run = {.prog = "bench_pop3"},
	                  .users = bench_full() ? 1000 : 200,
	                  .clients = bench_full() ? 32 : 8,
	                  .msgs = 100};
	unsigned msg_size = 4096;
	const struct bench_uopt opts[] = {
	    {'u', &b.users}, {'c', &b.clients}, {'m', &b.msgs}, {'s', &msg_size}};
	char backends[128] = "lmdb,maildir";
	unsigned failed;

	bench_args(argc, argv, &b.run, backends, sizeof(backends), opts,
	           sizeof(opts) / sizeof(opts[0]),
	           "[-b lmdb,maildir] [-u users] [-c clients] [-m msgs] [-s msg_size] [-r roost]");
	b.msg_size = msg_size;
	if (b.users == 0 || b.clients == 0 || b.msgs == 0 || b.msg_size < 256) {
		fprintf(stderr, "bench_pop3: users, clients, msgs > 0 and msg_size >= 256\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	log_setup(LOG_LEVEL_WARN, true, false);
	printf("POP3 sessions: login, STAT, RETR x%u, DELE x%u, QUIT; %zu-byte messages; "
	       "fsync on\n",
	       b.msgs, b.msgs, b.msg_size);
	printf("%-8s %8s %8s %8s %9s %11s %11s %9s %8s\n", "backend", "sessions", "clients", "msgs",
	       "seconds", "sessions/s", "msgs/s", "MB/s", "failed");
	failed = bench_each_backend(backends, run_backend, &b);
	return failed == 0 ? 0 : 1;
}
