/*
 * bench_smtp: durable SMTP delivery throughput and latency, per backend.
 *
 * For each storage backend it starts a real `roost serve` (ROOST_BIN, or
 * build/roost) on a free loopback port in a temporary directory, then for
 * 4 KB and 100 KB messages and 1, 10 and 50 concurrent sessions sends
 * messages (MAIL/RCPT/DATA pipelined as RFC 2920 allows, then the body) and
 * times each one from MAIL to the final 250, which Roost only sends once
 * the message is on stable storage. Prints one row per case:
 *
 *   backend size sessions messages msgs/s p50_ms p90_ms p99_ms max_ms errors
 *
 * BENCH_PROFILE=full sends more messages. Nothing here asserts timings.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/bench_util.h"
#include "roost/fdio.h"

#define USERS 10

static const char *roost_bin;
static int port;
static char *body;
static size_t body_len;
static long total;
static atomic_long started;
static atomic_long errors;
static double *lat; /* ms, one per message */
static atomic_long nlat;

struct client {
	int fd;
	char in[8192];
	size_t len;
};

/* Read one (possibly multi-line) reply; its code, or -1. */
static int
reply(struct client *c)
{
	for (;;) {
		char *nl;

		while ((nl = memchr(c->in, '\n', c->len)) != NULL) {
			size_t n = (size_t)(nl - c->in) + 1;
			bool last = n >= 4 && c->in[3] != '-';
			int code = atoi(c->in);

			memmove(c->in, c->in + n, c->len - n);
			c->len -= n;
			if (last)
				return code;
		}
		if (c->len == sizeof(c->in))
			return -1;
		ssize_t r = read(c->fd, c->in + c->len, sizeof(c->in) - c->len);

		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static void *
session(void *arg)
{
	struct client c = {.fd = bench_connect(port)};
	long id = (long)(intptr_t)arg;
	char cmd[256];

	if (c.fd < 0 || reply(&c) != 220 ||
	    fdio_write_all(c.fd, "EHLO bench.example\r\n", 20) < 0 || reply(&c) != 250) {
		atomic_fetch_add(&errors, 1);
		goto out;
	}
	while (atomic_fetch_add(&started, 1) < total) {
		int n = snprintf(cmd, sizeof(cmd),
		                 "MAIL FROM:<bench@remote.example>\r\n"
		                 "RCPT TO:<user%ld@example.org>\r\nDATA\r\n",
		                 id % USERS);
		double t0 = (bench_now() * 1e3);

		if (fdio_write_all(c.fd, cmd, (size_t)n) < 0 || reply(&c) != 250 ||
		    reply(&c) != 250 || reply(&c) != 354 ||
		    fdio_write_all(c.fd, body, body_len) < 0 || reply(&c) != 250) {
			atomic_fetch_add(&errors, 1);
			break;
		}
		lat[atomic_fetch_add(&nlat, 1)] = (bench_now() * 1e3) - t0;
	}
	fdio_write_all(c.fd, "QUIT\r\n", 6);
	reply(&c);
out:
	if (c.fd >= 0)
		close(c.fd);
	return NULL;
}

static void
make_body(size_t size)
{
	size_t n = 0;

	free(body);
	body = malloc(size + 64);
	n += (size_t)sprintf(body, "Subject: bench\r\n\r\n");
	while (n + 80 < size) {
		memset(body + n, 'a' + (int)(n % 26), 76);
		memcpy(body + n + 76, "\r\n", 2);
		n += 78;
	}
	memcpy(body + n, ".\r\n", 3);
	body_len = n + 3;
}

static void
run_case(const char *backend, size_t size, int sessions, long messages)
{
	pthread_t *th = calloc((size_t)sessions, sizeof(*th));
	double t0, secs;
	long n;

	make_body(size);
	total = messages;
	atomic_store(&started, 0);
	atomic_store(&errors, 0);
	atomic_store(&nlat, 0);
	lat = calloc((size_t)messages + (size_t)sessions, sizeof(*lat));
	t0 = (bench_now() * 1e3);
	for (int i = 0; i < sessions; i++)
		pthread_create(&th[i], NULL, session, (void *)(intptr_t)i);
	for (int i = 0; i < sessions; i++)
		pthread_join(th[i], NULL);
	secs = ((bench_now() * 1e3) - t0) / 1e3;
	n = atomic_load(&nlat);
	bench_sort(lat, (size_t)n);
#define PCT(p) (n > 0 ? lat[(size_t)((double)(n - 1) * (p))] : 0.0)
	printf("%-8s %6zuK %8d %8ld %9.1f %8.2f %8.2f %8.2f %8.2f %6ld\n", backend, size / 1024,
	       sessions, n, secs > 0 ? (double)n / secs : 0.0, PCT(0.50), PCT(0.90), PCT(0.99),
	       n > 0 ? lat[n - 1] : 0.0, atomic_load(&errors));
	fflush(stdout);
	free(lat);
	free(th);
}

static int
run(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void
bench_backend(const char *backend, bool full)
{
	char dir[] = "/tmp/roost-bench-smtp-XXXXXX", path[512], cmd[1024];
	FILE *f;
	pid_t pid;

	if (mkdtemp(dir) == NULL) {
		perror("bench_smtp: mkdtemp");
		return;
	}
	port = bench_free_port();
	snprintf(path, sizeof(path), "%s/roost.conf", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return;
	fprintf(f,
	        "[server]\ndata_dir = %s/var\nhostname = bench.test\nlog_level = warn\n"
	        "[storage]\nbackend = %s\n[listen]\nsmtp = 127.0.0.1:%d\nsubmission = off\n"
	        "smtps = off\nlmtp = off\nimap = off\nimaps = off\npop3 = off\npop3s = off\n"
	        "[smtp]\ndomains = example.org\n[limits]\nmax_connections_per_ip = 1000\n",
	        dir, backend, port);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/var", dir);
	run(cmd);
	for (int i = 0; i < USERS; i++) {
		snprintf(cmd, sizeof(cmd),
		         "echo pass%d | %s user add user%d@example.org --config %s "
		         ">/dev/null 2>&1",
		         i, roost_bin, i, path);
		if (run(cmd) != 0) {
			fprintf(stderr, "bench_smtp: %s: cannot add users\n", backend);
			goto out;
		}
	}
	pid = bench_start_server(roost_bin, path, dir, port);
	{
		static const size_t sizes[] = {4096, 102400};
		static const int conc[] = {1, 10, 50};

		for (size_t s = 0; s < 2; s++) {
			for (size_t k = 0; k < 3; k++) {
				long m =
				    sizes[s] == 4096 ? (full ? 5000 : 500) : (full ? 1000 : 150);

				if (conc[k] == 1)
					m /= 2;
				run_case(backend, sizes[s], conc[k], m);
			}
		}
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
out:
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	run(cmd);
}

int
main(int argc, char **argv)
{
	const char *profile = getenv("BENCH_PROFILE");
	bool full = profile != NULL && strcmp(profile, "full") == 0;

	roost_bin = getenv("ROOST_BIN") != NULL ? getenv("ROOST_BIN") : "build/roost";
	signal(SIGPIPE, SIG_IGN);
	printf("%-8s %7s %8s %8s %9s %8s %8s %8s %8s %6s\n", "backend", "size", "sessions",
	       "messages", "msgs/s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors");
	for (int i = 1; i < argc || i == 1; i++) {
		if (argc > 1) {
			bench_backend(argv[i], full);
		} else {
			bench_backend("lmdb", full);
			bench_backend("maildir", full);
			break;
		}
	}
	return 0;
}
