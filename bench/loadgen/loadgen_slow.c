/*
 * slow-readers: the IMAP mix alone, then while many clients each FETCH a
 * message through a small receive window and read it slowly. What slow
 * clients cost the others shows as the difference between the two runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"
#include "support/bench_util.h"

struct slow_reader {
	int fd;   /* -1 when it never got going or is done */
	long got; /* reply bytes read */
};

static struct slow_reader *slow;
static int slow_fetching;

/* Blocking: read until buf holds a line starting with tag (or, with tag
 * NULL, one line). False on end of input or after the socket's timeout. */
static bool
read_reply(int fd, const char *tag)
{
	char buf[8192];
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		char *line;

		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		if (tag == NULL && strchr(buf, '\n') != NULL)
			return true;
		for (line = buf; tag != NULL && line != NULL;) {
			if (strncmp(line, tag, strlen(tag)) == 0 && strchr(line, '\n') != NULL)
				return strncmp(line + strlen(tag), "OK", 2) == 0;
			line = strchr(line, '\n');
			if (line != NULL)
				line++;
		}
		if (len > sizeof(buf) / 2) {
			/* Keep the unfinished last line only. */
			char *last = strrchr(buf, '\n');

			if (last != NULL) {
				len = strlen(last + 1);
				memmove(buf, last + 1, len + 1);
			}
		}
	}
}

/*
 * Log every slow reader in and select its INBOX, then send all the FETCHes
 * and wait (up to 15 s) until each reply has begun, so the mix that follows
 * meets slow readers in their steady state, not their start. A server whose
 * workers wait on slow clients stalls from here on, and the mix shows it.
 * Returns how many replies began.
 */
static int
slow_start(void)
{
	struct timeval tv = {.tv_sec = 30};
	int window = 4096, started = 0;

	slow = calloc((size_t)lg_opt.slow, sizeof(*slow));
	if (slow == NULL)
		lg_die("out of memory");
	for (int i = 0; i < lg_opt.slow; i++) {
		int user = lg_opt.users + i % lg_opt.slow_users;
		struct sockaddr_in sa = {.sin_family = AF_INET,
		                         .sin_port = htons((uint16_t)lg_opt.port)};
		char cmd[256];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		slow[i].fd = -1;
		if (fd < 0)
			lg_die("socket: %s", strerror(errno));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, sizeof(window));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		inet_pton(AF_INET, lg_opt.host, &sa.sin_addr);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || !read_reply(fd, NULL))
			goto fail;
		snprintf(cmd, sizeof(cmd), "s1 LOGIN user%d@%s pass%d\r\n", user, lg_opt.domain,
		         user);
		if (write(fd, cmd, strlen(cmd)) < 0 || !read_reply(fd, "s1 "))
			goto fail;
		if (write(fd, "s2 SELECT INBOX\r\n", 17) != 17 || !read_reply(fd, "s2 "))
			goto fail;
		slow[i].fd = fd;
		continue;
	fail:
		fprintf(stderr, "loadgen: slow reader %d could not log in\n", i);
		close(fd);
	}
	for (int i = 0; i < lg_opt.slow; i++) {
		if (slow[i].fd < 0)
			continue;
		if (write(slow[i].fd, "s3 FETCH 1 BODY.PEEK[]\r\n", 24) != 24) {
			close(slow[i].fd);
			slow[i].fd = -1;
			continue;
		}
		fcntl(slow[i].fd, F_SETFL, fcntl(slow[i].fd, F_GETFL) | O_NONBLOCK);
		slow_fetching++;
	}
	for (double end = lg_now() + 15; started < slow_fetching && lg_now() < end;) {
		struct timespec pause = {0, 20 * 1000 * 1000};

		started = 0;
		for (int i = 0; i < lg_opt.slow; i++) {
			char b;

			if (slow[i].fd >= 0 && slow[i].got == 0 &&
			    recv(slow[i].fd, &b, 1, MSG_DONTWAIT) == 1)
				slow[i].got = 1;
			started += slow[i].got > 0;
		}
		nanosleep(&pause, NULL);
	}
	return started;
}

/* Each slow reader takes its share of the rate for this tick. */
static void
slow_tick(void)
{
	char buf[65536];
	size_t share = (size_t)lg_opt.slow_rate / 10;

	if (share > sizeof(buf))
		share = sizeof(buf);
	if (share == 0)
		share = 1;
	for (int i = 0; i < lg_opt.slow; i++) {
		ssize_t n;

		if (slow[i].fd < 0)
			continue;
		n = recv(slow[i].fd, buf, share, MSG_DONTWAIT);
		if (n > 0) {
			slow[i].got += n;
		} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			close(slow[i].fd);
			slow[i].fd = -1;
			slow_fetching--;
		}
	}
}

/* The mix's figures over every command: ops, ops/s, p50, p99, errors. */
struct mix_result {
	long ops, errors;
	double seconds, p50_ms, p99_ms;
};

static struct mix_result
run_mix(void)
{
	struct mix_result m = {0};
	struct lg_stat_row all = {.name = "all"};
	double t0 = lg_now();

	lg_n_stats = 0;
	memset(lg_stats, 0, sizeof(lg_stats));
	lg_active_conns = 0;
	lg_open_conns(P_IMAP, lg_opt.port, lg_opt.conc);
	lg_run_loop(t0 + lg_opt.timeout, NULL);
	m.seconds = lg_now() - t0;
	lg_print_stats(m.seconds);
	for (int i = 0; i < lg_n_stats; i++) {
		all.lat = lg_xrealloc(all.lat, (all.n + lg_stats[i].n + 1) * sizeof(double));
		memcpy(all.lat + all.n, lg_stats[i].lat, lg_stats[i].n * sizeof(double));
		all.n += lg_stats[i].n;
		m.errors += lg_stats[i].errors;
		free(lg_stats[i].lat);
	}
	bench_sort(all.lat, all.n);
	m.ops = (long)all.n;
	m.p50_ms = lg_pct(&all, 0.5) * 1e3;
	m.p99_ms = lg_pct(&all, 0.99) * 1e3;
	free(all.lat);
	for (int i = 0; i < lg_opt.conc; i++) {
		if (!lg_conns[i].done || lg_conns[i].iter < lg_opt.iterations) {
			m.errors++;
			lg_conn_finish(&lg_conns[i]);
		}
	}
	free(lg_conns);
	lg_conns = NULL;
	return m;
}

void
lg_slow_readers(void)
{
	struct mix_result base, loaded;
	int started;
	long kb = 0;

	/* A first round warms the server up (password hashes into the
	 * auth cache, pages into memory), so both measured rounds meet
	 * the same server. */
	printf("-- warm-up: the IMAP mix alone\n");
	(void)run_mix();
	printf("-- the IMAP mix alone\n");
	base = run_mix();
	started = slow_start();
	lg_on_tick = slow_tick;
	printf("-- the IMAP mix with %d slow readers (%d replies begun)\n", lg_opt.slow, started);
	loaded = run_mix();
	lg_on_tick = NULL;
	for (int i = 0; i < lg_opt.slow; i++) {
		kb += slow[i].got / 1024;
		if (slow[i].fd >= 0)
			close(slow[i].fd);
	}
	printf("result scenario=slow-readers slow=%d slow_begun=%d slow_still_reading=%d "
	       "slow_kb_read=%ld base_ops_per_s=%.1f base_p50_ms=%.2f base_p99_ms=%.2f "
	       "base_errors=%ld ops_per_s=%.1f p50_ms=%.2f p99_ms=%.2f errors=%ld "
	       "throughput_loss_pct=%.1f\n",
	       lg_opt.slow, started, slow_fetching, kb, (double)base.ops / base.seconds,
	       base.p50_ms, base.p99_ms, base.errors, (double)loaded.ops / loaded.seconds,
	       loaded.p50_ms, loaded.p99_ms, loaded.errors,
	       100.0 * (1.0 -
	                ((double)loaded.ops / loaded.seconds) / ((double)base.ops / base.seconds)));
}
