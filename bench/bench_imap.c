/*
 * IMAP benchmarks against a real `roost serve` (one backend at a time):
 *
 *  1. client mix: C concurrent clients loop for D seconds over
 *     LOGIN, SELECT, FETCH 1:20 ENVELOPE, FETCH n BODY.PEEK[], STORE,
 *     SEARCH, APPEND, EXPUNGE, LOGOUT; ops/s and mean latency per command;
 *  2. IDLE wake-up latency: I clients IDLE on one INBOX, another connection
 *     APPENDs R times; percentiles of APPEND-sent -> "* n EXISTS" read;
 *  3. memory per idle authenticated connection: server VmRSS before and
 *     after opening N logged-in connections (N = 1000, and 10000 with FULL),
 *     measured first, on the fresh server;
 *  4. SELECT and FETCH 1:* FLAGS on a mailbox of M messages (100,000 with
 *     FULL=1, 20,000 by default).
 *
 * Mailboxes are filled through the storage API before the server starts.
 *
 *   build/bench/bench_imap [-b lmdb,maildir] [-c clients] [-d seconds]
 *                          [-i idlers] [-R rounds] [-n conns] [-M bigbox] [-r roost]
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support/bench_run.h"
#include "support/bench_util.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/log.h"
#include "roost/storage.h"

#define MIX_USERS 32
#define MIX_MSGS 200

struct bench {
	struct bench_run run;
	unsigned clients, seconds, idlers, rounds, bigbox;
	unsigned conns[2];
};

static void
write_config(struct bench *b, bool fsync)
{
	bench_write_config(&b->run, fsync, "imap",
	                   "[limits]\nmax_connections_per_ip = 100000\nmax_connections = 100000\n"
	                   "[imap]\nmax_connections_per_user_ip = 100000\n");
}

static size_t
make_msg(char *buf, size_t size, const char *user, unsigned m)
{
	int n =
	    snprintf(buf, size,
	             "From: Sender %u <sender%u@example.org>\r\nTo: %s\r\nSubject: message %u\r\n"
	             "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%u@bench.test>\r\n\r\n",
	             m % 17, m % 17, user, m, m);
	size_t len = (size_t)n;

	static const char line[] =
	    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusm\r\n";

	/* sizeof - 1: the body must not carry the terminating NUL, which IMAP refuses in a
	 * literal (every APPEND of the mix and the IDLE rounds failed on it). */
	while (len + sizeof(line) < size && len < 2000) {
		memcpy(buf + len, line, sizeof(line) - 1);
		len += sizeof(line) - 1;
	}
	return len;
}

/* Users: user0..user{MIX_USERS-1} with MIX_MSGS messages, "idle@bench.test"
 * with an empty INBOX, "big@bench.test" with bigbox messages. */
static void
prepare(struct bench *b)
{
	struct roost_config *cfg;
	struct storage *st;
	char user[64], msg[4096];
	FILE *pw = bench_passwd_open(&b->run);
	int r = 0;

	for (unsigned u = 0; u < MIX_USERS; u++) {
		bench_user_name(u, user, sizeof(user));
		fprintf(pw, "%s:{PLAIN}pw::::::\n", user);
	}
	fprintf(pw, "idle@bench.test:{PLAIN}pw::::::\nbig@bench.test:{PLAIN}pw::::::\n");
	fclose(pw);

	write_config(b, false);
	st = bench_storage_open(&b->run, &cfg);
	for (unsigned u = 0; u < MIX_USERS + 2 && r == 0; u++) {
		unsigned n = MIX_MSGS;
		if (u == MIX_USERS) {
			snprintf(user, sizeof(user), "idle@bench.test");
			n = 0;
		} else if (u == MIX_USERS + 1) {
			snprintf(user, sizeof(user), "big@bench.test");
			n = b->bigbox;
		} else {
			bench_user_name(u, user, sizeof(user));
		}
		r = storage_user_init(st, user);
		for (unsigned m = 0; r == 0 && m < n; m++) {
			struct msg_input in = {.fd = -1};
			uint32_t uidv, uid;

			in.data = (const uint8_t *)msg;
			in.len = make_msg(msg, sizeof(msg), user, m);
			in.flags = m % 3 == 0 ? MSG_SEEN : 0;
			r = storage_append(st, user, "INBOX", &in, &uidv, &uid);
		}
	}
	if (r != 0) {
		fprintf(stderr, "bench_imap: fill: %s\n", roost_strerror(r));
		exit(1);
	}
	bench_storage_close(&st, &cfg);
	write_config(b, true);
}

/* ---- a minimal IMAP client ---- */

struct client {
	int fd;
	unsigned tag;
	char buf[65536];
	size_t have, off;
};

static int
fill(struct client *c)
{
	if (c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->have - c->off);
		c->have -= c->off;
		c->off = 0;
	}
	return bench_fill(c->fd, c->buf, sizeof(c->buf), &c->have);
}

/* Next line (NUL-terminated, CRLF stripped) in *line_r; literals skipped. */
static int
read_line(struct client *c, char **line_r)
{
	for (;;) {
		char *s = c->buf + c->off;
		char *e = memchr(s, '\n', c->have - c->off);

		if (e == NULL) {
			if (fill(c) < 0)
				return -1;
			continue;
		}
		*e = '\0';
		if (e > s && e[-1] == '\r')
			e[-1] = '\0';
		c->off = (size_t)(e - c->buf) + 1;
		*line_r = s;
		size_t l = strlen(s);
		if (l > 2 && s[l - 1] == '}') {
			char *o = strrchr(s, '{');
			unsigned long n = o != NULL ? strtoul(o + 1, NULL, 10) : 0;
			while (n > 0) {
				size_t avail = c->have - c->off;
				size_t take = avail < n ? avail : n;
				c->off += take;
				n -= take;
				if (n > 0) {
					c->off = c->have = 0;
					if (fill(c) < 0)
						return -1;
				}
			}
			/* the rest of the response line after the literal is
			 * read by the next call */
		}
		return 0;
	}
}

/* Send "tag <text>" (text may hold a literal+), wait for the tagged reply.
 * 0 on OK; count_r (may be NULL) counts untagged lines containing what. */
static int
command(struct client *c, const char *text, size_t len, const char *what, unsigned *count_r)
{
	char tag[16], *line;
	int tl = snprintf(tag, sizeof(tag), "a%u ", ++c->tag);

	if (fdio_write_all(c->fd, tag, (size_t)tl) < 0 || fdio_write_all(c->fd, text, len) < 0 ||
	    fdio_write_all(c->fd, "\r\n", 2) < 0)
		return -1;
	for (;;) {
		if (read_line(c, &line) < 0)
			return -1;
		if (strncmp(line, tag, (size_t)tl) == 0)
			return strncmp(line + tl, "OK", 2) == 0 ? 0 : -1;
		if (count_r != NULL && what != NULL && strstr(line, what) != NULL)
			(*count_r)++;
	}
}

static int
cmd_str(struct client *c, const char *text)
{
	return command(c, text, strlen(text), NULL, NULL);
}

static int
client_open(struct client *c, int port, const char *user)
{
	char *line, login[128];

	memset(c, 0, sizeof(*c));
	c->fd = bench_connect(port);
	if (c->fd < 0 || read_line(c, &line) < 0)
		return -1;
	snprintf(login, sizeof(login), "LOGIN %s pw", user);
	return cmd_str(c, login);
}

static void
client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* ---- 1. client mix ---- */

enum {
	OP_LOGIN,
	OP_SELECT,
	OP_FETCH_ENV,
	OP_FETCH_BODY,
	OP_STORE,
	OP_SEARCH,
	OP_APPEND,
	OP_EXPUNGE,
	OP_LOGOUT,
	OP_N
};
static const char *const op_names[OP_N] = {"LOGIN",
                                           "SELECT",
                                           "FETCH 1:20 ENVELOPE",
                                           "FETCH BODY.PEEK[]",
                                           "STORE +FLAGS",
                                           "SEARCH",
                                           "APPEND",
                                           "EXPUNGE",
                                           "LOGOUT"};

struct mix {
	struct bench *b;
	double end;
	atomic_ulong count[OP_N];
	atomic_ulong usec[OP_N];
	atomic_uint failures;
	atomic_uint next;
};

static void
account(struct mix *m, int op, double t0)
{
	atomic_fetch_add(&m->count[op], 1);
	atomic_fetch_add(&m->usec[op], (unsigned long)((bench_now() - t0) * 1e6));
}

static void *
mix_thread(void *arg)
{
	struct mix *m = arg;
	unsigned id = atomic_fetch_add(&m->next, 1);
	char user[64], text[4200], body[4096];
	unsigned seed = id * 7919 + 1;

	bench_user_name(id % MIX_USERS, user, sizeof(user));
	while (bench_now() < m->end) {
		struct client c;
		double t0 = bench_now();
		int ok = 0;

		if (client_open(&c, m->b->run.port, user) < 0) {
			atomic_fetch_add(&m->failures, 1);
			client_close(&c);
			usleep(10000);
			continue;
		}
		account(m, OP_LOGIN, t0);
		t0 = bench_now();
		ok |= cmd_str(&c, "SELECT INBOX");
		account(m, OP_SELECT, t0);
		for (int round = 0; round < 5 && ok == 0; round++) {
			unsigned n = 1 + rand_r(&seed) % 150;
			t0 = bench_now();
			ok |= cmd_str(&c, "FETCH 1:20 (UID FLAGS ENVELOPE)");
			account(m, OP_FETCH_ENV, t0);
			snprintf(text, sizeof(text), "FETCH %u BODY.PEEK[]", n);
			t0 = bench_now();
			ok |= cmd_str(&c, text);
			account(m, OP_FETCH_BODY, t0);
			snprintf(text, sizeof(text), "STORE %u +FLAGS (\\Seen)", n);
			t0 = bench_now();
			ok |= cmd_str(&c, text);
			account(m, OP_STORE, t0);
			t0 = bench_now();
			ok |= cmd_str(&c, round % 2 ? "SEARCH UNSEEN" : "SEARCH FROM \"sender3\"");
			account(m, OP_SEARCH, t0);
		}
		size_t bl = make_msg(body, sizeof(body), user, 999);
		int hl = snprintf(text, sizeof(text), "APPEND INBOX (\\Deleted) {%zu+}\r\n", bl);
		memcpy(text + hl, body, bl);
		t0 = bench_now();
		ok |= command(&c, text, (size_t)hl + bl, NULL, NULL);
		account(m, OP_APPEND, t0);
		t0 = bench_now();
		ok |= cmd_str(&c, "EXPUNGE");
		account(m, OP_EXPUNGE, t0);
		t0 = bench_now();
		ok |= cmd_str(&c, "LOGOUT");
		account(m, OP_LOGOUT, t0);
		client_close(&c);
		if (ok != 0)
			atomic_fetch_add(&m->failures, 1);
	}
	return NULL;
}

static void
run_mix(struct bench *b)
{
	struct mix m = {.b = b};
	pthread_t *th = calloc(b->clients, sizeof(*th));
	double t0 = bench_now();

	m.end = t0 + b->seconds;
	for (unsigned i = 0; i < b->clients; i++)
		pthread_create(&th[i], NULL, mix_thread, &m);
	for (unsigned i = 0; i < b->clients; i++)
		pthread_join(th[i], NULL);
	double el = bench_now() - t0;
	free(th);
	printf("  client mix: %u clients, %.1f s, %u failed sessions\n", b->clients, el,
	       atomic_load(&m.failures));
	printf("    %-22s %10s %10s %12s\n", "command", "ops", "ops/s", "mean ms");
	unsigned long total = 0;
	for (int i = 0; i < OP_N; i++) {
		unsigned long n = atomic_load(&m.count[i]);
		total += n;
		printf("    %-22s %10lu %10.0f %12.3f\n", op_names[i], n, (double)n / el,
		       n ? (double)atomic_load(&m.usec[i]) / (double)n / 1000.0 : 0.0);
	}
	printf("    %-22s %10lu %10.0f\n", "all", total, (double)total / el);
}

/* ---- 2. IDLE wake-up latency ---- */

static void
run_idle(struct bench *b)
{
	struct client *cl = calloc(b->idlers, sizeof(*cl));
	struct pollfd *pf = calloc(b->idlers, sizeof(*pf));
	double *lat = calloc((size_t)b->idlers * b->rounds, sizeof(double));
	size_t nlat = 0;
	unsigned ready = 0, missed = 0;
	char *line;

	for (unsigned i = 0; i < b->idlers; i++) {
		if (client_open(&cl[i], b->run.port, "idle@bench.test") < 0 ||
		    cmd_str(&cl[i], "SELECT INBOX") < 0 ||
		    fdio_write_all(cl[i].fd, "i IDLE\r\n", 8) < 0 || read_line(&cl[i], &line) < 0 ||
		    line[0] != '+') {
			client_close(&cl[i]);
			continue;
		}
		ready++;
	}
	struct client w;
	if (client_open(&w, b->run.port, "idle@bench.test") < 0) {
		printf("  idle: writer could not log in\n");
		goto out;
	}
	char text[4200], body[4096];
	size_t bl = make_msg(body, sizeof(body), "idle@bench.test", 1);
	int hl = snprintf(text, sizeof(text), "APPEND INBOX {%zu+}\r\n", bl);
	memcpy(text + hl, body, bl);
	for (unsigned r = 0; r < b->rounds; r++) {
		char want[32];
		snprintf(want, sizeof(want), "* %u EXISTS", r + 1);
		double t0 = bench_now();
		if (command(&w, text, (size_t)hl + bl, NULL, NULL) < 0) {
			printf("  idle: APPEND failed\n");
			break;
		}
		unsigned pending = 0;
		bool *got = calloc(b->idlers, sizeof(bool));
		for (unsigned i = 0; i < b->idlers; i++)
			if (cl[i].fd >= 0)
				pending++;
		while (pending > 0) {
			unsigned np = 0;
			for (unsigned i = 0; i < b->idlers; i++) {
				if (cl[i].fd >= 0 && !got[i]) {
					pf[np].fd = cl[i].fd;
					pf[np].events = POLLIN;
					np++;
				}
			}
			if (poll(pf, np, 5000) <= 0) {
				missed += pending;
				break;
			}
			for (unsigned k = 0; k < np; k++) {
				if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				for (unsigned i = 0; i < b->idlers; i++) {
					if (cl[i].fd != pf[k].fd)
						continue;
					/* consume complete lines now buffered */
					if (fill(&cl[i]) < 0) {
						client_close(&cl[i]);
						pending--;
						break;
					}
					char *s;
					while ((s = memchr(cl[i].buf + cl[i].off, '\n',
					                   cl[i].have - cl[i].off)) != NULL) {
						*s = '\0';
						if (strstr(cl[i].buf + cl[i].off, want) != NULL &&
						    !got[i]) {
							got[i] = true;
							lat[nlat++] = bench_now() - t0;
							pending--;
						}
						cl[i].off = (size_t)(s - cl[i].buf) + 1;
					}
					break;
				}
			}
		}
		free(got);
	}
	bench_sort(lat, nlat);
	if (nlat > 0)
		printf("  IDLE wake-up: %u idlers, %u appends, %zu samples, %u missed: "
		       "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		       ready, b->rounds, nlat, missed, lat[nlat / 2] * 1e3,
		       lat[nlat * 9 / 10] * 1e3, lat[nlat * 99 / 100] * 1e3, lat[nlat - 1] * 1e3);
	else
		printf("  IDLE wake-up: no samples (%u idlers ready)\n", ready);
	client_close(&w);
out:
	for (unsigned i = 0; i < b->idlers; i++)
		client_close(&cl[i]);
	free(cl);
	free(pf);
	free(lat);
}

/* ---- 3. memory per idle authenticated connection ---- */

static long
server_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void
run_memory(struct bench *b, unsigned n)
{
	struct client *cl = calloc(n, sizeof(*cl));
	unsigned ok = 0;

	sleep(1);
	long before = server_rss_kb(b->run.pid);
	for (unsigned i = 0; i < n; i++) {
		char user[64];
		bench_user_name(i % MIX_USERS, user, sizeof(user));
		if (client_open(&cl[i], b->run.port, user) == 0)
			ok++;
		else
			client_close(&cl[i]);
	}
	sleep(1);
	long after = server_rss_kb(b->run.pid);
	printf("  memory: %u authenticated idle connections: RSS %ld -> %ld kB, %.1f kB per "
	       "connection\n",
	       ok, before, after, ok ? (double)(after - before) / ok : 0.0);
	for (unsigned i = 0; i < n; i++)
		client_close(&cl[i]);
	free(cl);
	sleep(1);
}

/* ---- 4. the big mailbox ---- */

static void
run_bigbox(struct bench *b)
{
	struct client c;
	unsigned exists = 0, fetched = 0;

	if (client_open(&c, b->run.port, "big@bench.test") < 0) {
		printf("  big mailbox: login failed\n");
		client_close(&c);
		return;
	}
	for (int pass = 0; pass < 2; pass++) {
		double t0 = bench_now();
		int r1 = command(&c, "SELECT INBOX", 12, "EXISTS", &exists);
		double t1 = bench_now();
		int r2 = command(&c, "FETCH 1:* (FLAGS)", 17, "FETCH", &fetched);
		double t2 = bench_now();
		printf("  big mailbox (%u msgs)%s: SELECT %.1f ms%s, FETCH 1:* FLAGS %.1f ms "
		       "(%u responses)%s\n",
		       b->bigbox, pass ? ", again" : "", (t1 - t0) * 1e3, r1 ? " FAILED" : "",
		       (t2 - t1) * 1e3, fetched, r2 ? " FAILED" : "");
		fetched = 0;
	}
	cmd_str(&c, "LOGOUT");
	client_close(&c);
}

static unsigned
run_backend(void *arg, const char *backend)
{
	struct bench *b = arg;
	double t0;

	bench_run_begin(&b->run, backend);
	t0 = bench_now();
	prepare(b);
	printf("%s: filled %u x %u + %u messages in %.1f s\n", backend, MIX_USERS, MIX_MSGS,
	       b->bigbox, bench_now() - t0);
	fflush(stdout);
	bench_run_serve(&b->run);
	/* Memory first, on a fresh server: later phases leave freed heap
	 * that new connections would reuse, hiding their cost. */
	for (int i = 0; i < 2; i++)
		if (b->conns[i] > 0)
			run_memory(b, b->conns[i]);
	fflush(stdout);
	run_bigbox(b);
	fflush(stdout);
	run_mix(b);
	fflush(stdout);
	run_idle(b);
	fflush(stdout);
	bench_run_end(&b->run);
	return 0;
}

int
main(int argc, char **argv)
{
	bool full = bench_full();
	struct bench b = {.run = {.prog = "bench_imap"},
	                  .clients = 16,
	                  .seconds = full ? 20 : 5,
	                  .idlers = full ? 1000 : 200,
	                  .rounds = full ? 20 : 10,
	                  .bigbox = full ? 100000 : 20000,
	                  .conns = {1000, full ? 10000 : 0}};
	unsigned conns = UINT_MAX; /* -n: that many, and no second count */
	const struct bench_uopt opts[] = {{'c', &b.clients}, {'d', &b.seconds}, {'i', &b.idlers},
	                                  {'R', &b.rounds},  {'n', &conns},     {'M', &b.bigbox}};
	char backends[128] = "lmdb,maildir";
	struct rlimit rl;

	bench_args(argc, argv, &b.run, backends, sizeof(backends), opts,
	           sizeof(opts) / sizeof(opts[0]),
	           "[-b lmdb,maildir] [-c clients] [-d seconds] [-i idlers] [-R rounds] [-n conns] "
	           "[-M bigbox] [-r roost]");
	if (conns != UINT_MAX) {
		b.conns[0] = conns;
		b.conns[1] = 0;
	}
	if (b.clients == 0 || b.rounds == 0) {
		fprintf(stderr, "bench_imap: clients and rounds must be > 0\n");
		return 2;
	}
	/* Room for the connections on both ends (the server inherits it). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	log_setup(LOG_LEVEL_WARN, true, false);
	printf("IMAP benchmarks (%s profile; fsync on while serving)\n", full ? "full" : "short");
	bench_each_backend(backends, run_backend, &b);
	return 0;
}
