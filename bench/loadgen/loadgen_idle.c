/* idle-latency (how long after a delivery every client in IDLE hears of it)
 * and idle-memory (what an idle IMAP connection costs the server). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"
#include "support/bench_util.h"

static int idle_ready;
static double round_start;
static int round_seen;
/* The delivery session of the round, and when its first reply (the LMTP
 * 250 of the first recipient, or SMTP's one 250) arrived: the wake-ups are
 * also timed from there, so the delivery's own time (the commit, fsync)
 * and the fan-out after it show apart. */
static int round_dfd = -1;
static double round_acked;
static double round_last_exists;

/* A client is idling once the server answered its IDLE with "+": before
 * that, a delivery may still be picked up by the IDLE command's own catch-up
 * and reported ahead of the "+", where it is not counted as a wake-up. */
static bool
all_idling(void)
{
	static double last;

	/* A look at every session after each batch of events was quadratic
	 * in the sessions while they log in (10,000 of them kept loadgen
	 * busy for minutes): look at most every 20 ms. */
	if (lg_now() - last < 0.02)
		return false;
	last = lg_now();
	idle_ready = 0;
	for (int i = 0; i < lg_opt.conc; i++) {
		if (lg_conns[i].idling && lg_conns[i].step == 50 && lg_conns[i].busy &&
		    lg_conns[i].cmd != NULL && strcmp(lg_conns[i].cmd, "idle-wait") == 0)
			idle_ready++;
	}
	return idle_ready == lg_opt.conc;
}

/* Called by the loop after each batch of events (and every 100 ms without
 * any): look, without reading, whether the delivery was acknowledged. */
static void
check_acked(void)
{
	char c;

	if (round_acked == 0 && round_dfd >= 0 &&
	    recv(round_dfd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
		round_acked = lg_now();
}

/*
 * The sessions connect in waves of WAVE, the next once every one of the
 * last has its greeting. 10,000 connects at once overflowed the server's
 * listen backlog (1,024): the kernel dropped the last ACK of some
 * handshakes, whose client side stayed established while the server never
 * had them to accept, and the run waited for their greetings until its
 * timeout.
 */
#define WAVE 500

static int wave_from, wave_to;

static bool
wave_greeted(void)
{
	for (int i = wave_from; i < wave_to; i++) {
		if (!lg_conns[i].done && lg_conns[i].step < 2)
			return false;
	}
	return true;
}

static void
open_in_waves(double t0)
{
	lg_alloc_conns(P_IMAP, lg_opt.conc);
	for (wave_from = 0; wave_from < lg_opt.conc; wave_from = wave_to) {
		wave_to = wave_from + WAVE < lg_opt.conc ? wave_from + WAVE : lg_opt.conc;
		lg_connect_range(lg_opt.port, wave_from, wave_to);
		lg_run_loop(t0 + lg_opt.timeout, wave_greeted);
	}
}

static bool
round_complete(void)
{
	check_acked();
	return round_seen >= lg_opt.conc;
}

static void
note_exists(struct lg_conn *c)
{
	if (round_start > 0) {
		double t = lg_now();

		lg_stat_add("idle-wakeup", t - round_start, true);
		check_acked();
		/* An EXISTS before the ack was seen counts as 0 after it. */
		lg_stat_add("idle-after-ack", round_acked > 0 ? t - round_acked : 0, true);
		round_last_exists = t;
		round_seen++;
	}
}

/* Deliver one message to every user with a blocking SMTP/LMTP session. */
static int
deliver_to_all(void)
{
	int fd = lg_connect_to(lg_opt.deliver_port);
	char buf[8192], cmd[512];
	int flags = fcntl(fd, F_GETFL);
	/* poll, not select: with 10,000 sessions open the fd is past
	 * FD_SETSIZE (glibc aborts on FD_SET then) */
	struct pollfd w = {.fd = fd, .events = POLLOUT};

	fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	poll(&w, 1, -1);
#define READ_REPLY()                                                                               \
	do {                                                                                       \
		if (read(fd, buf, sizeof(buf)) <= 0)                                               \
			lg_die("deliver: server closed");                                          \
	} while (0)
	READ_REPLY();
	snprintf(cmd, sizeof(cmd), "%s loadgen\r\n", lg_opt.lmtp ? "LHLO" : "EHLO");
	if (write(fd, cmd, strlen(cmd)) < 0)
		lg_die("deliver: write");
	READ_REPLY();
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<loadgen@%s>\r\n", lg_opt.domain);
	if (write(fd, cmd, strlen(cmd)) < 0)
		lg_die("deliver: write");
	READ_REPLY();
	for (int u = 0; u < lg_opt.users; u++) {
		snprintf(cmd, sizeof(cmd), "RCPT TO:<user%d@%s>\r\n", u, lg_opt.domain);
		if (write(fd, cmd, strlen(cmd)) < 0)
			lg_die("deliver: write");
		READ_REPLY();
	}
	if (write(fd, "DATA\r\n", 6) < 0)
		lg_die("deliver: write");
	READ_REPLY();
	round_start = lg_now();
	if (write(fd, lg_message_body, strlen(lg_message_body)) < 0 || write(fd, ".\r\n", 3) < 0)
		lg_die("deliver: write");
	return fd; /* replies are read after the round: the clock is on the IDLE side */
#undef READ_REPLY
}

static long
proc_kb(const char *pid, const char *file, const char *field)
{
	char path[128], line[256];
	long kb = 0, v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/%s", pid, file);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, strlen(field)) == 0 &&
		    sscanf(line + strlen(field), " %ld", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb;
}

/* "tree:PID" -> PID and all its descendants, as a space-separated list. */
static void
expand_tree(const char *spec, char *out, size_t outlen)
{
	long root = atol(spec + 5), pids[8192], ppids[8192];
	bool in[8192] = {false};
	size_t n = 0, len = 0;
	char path[64], line[512];
	FILE *f;
	bool grew = true;

	for (long pid = 1; pid < 4194304 && n < 8192; pid++) {
		long ppid;
		char *p;

		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(line, sizeof(line), f) != NULL && (p = strrchr(line, ')')) != NULL &&
		    sscanf(p + 2, "%*c %ld", &ppid) == 1) {
			pids[n] = pid;
			ppids[n++] = ppid;
		}
		fclose(f);
	}
	for (size_t i = 0; i < n; i++)
		in[i] = pids[i] == root;
	while (grew) {
		grew = false;
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; !in[i] && j < n; j++) {
				if (in[j] && ppids[i] == pids[j]) {
					in[i] = true;
					grew = true;
				}
			}
		}
	}
	out[0] = '\0';
	for (size_t i = 0; i < n && len + 16 < outlen; i++) {
		if (in[i])
			len += (size_t)snprintf(out + len, outlen - len, "%ld ", pids[i]);
	}
}

/* RSS and PSS (shared pages split between processes) summed over pids. */
static void
memory_of(const char *pids, long *rss_r, long *pss_r)
{
	char copy[65536], *save = NULL;

	if (strncmp(pids, "tree:", 5) == 0)
		expand_tree(pids, copy, sizeof(copy));
	else
		snprintf(copy, sizeof(copy), "%s", pids);
	*rss_r = *pss_r = 0;
	for (char *p = strtok_r(copy, " ,", &save); p != NULL; p = strtok_r(NULL, " ,", &save)) {
		*rss_r += proc_kb(p, "status", "VmRSS:");
		*pss_r += proc_kb(p, "smaps_rollup", "Pss:");
	}
}

void
lg_idle_latency(double t0)
{
	open_in_waves(t0);
	lg_on_idle_exists = note_exists;
	lg_run_loop(t0 + lg_opt.timeout, all_idling);
	if (idle_ready < lg_opt.conc)
		lg_die("only %d of %d clients reached IDLE", idle_ready, lg_opt.conc);
	for (int r = 0; r < lg_opt.rounds; r++) {
		char reply[4096];
		int dfd;

		round_seen = 0;
		round_acked = 0;
		dfd = deliver_to_all();
		round_dfd = dfd;
		lg_run_loop(lg_now() + 30, round_complete);
		check_acked();
		if (round_acked > 0)
			lg_stat_add("idle-ack", round_acked - round_start, true);
		lg_stat_add("idle-round", round_last_exists - round_start, true);
		round_dfd = -1;
		if (read(dfd, reply, sizeof(reply)) <= 0 || (reply[0] != '2'))
			fprintf(stderr, "loadgen: round %d: delivery not acknowledged\n", r);
		close(dfd);
		if (round_seen < lg_opt.conc)
			fprintf(stderr, "loadgen: round %d: %d of %d clients woke\n", r, round_seen,
			        lg_opt.conc);
		round_start = 0;
	}
	bench_sort(lg_stat_for("idle-wakeup")->lat, lg_stat_for("idle-wakeup")->n);
	bench_sort(lg_stat_for("idle-after-ack")->lat, lg_stat_for("idle-after-ack")->n);
	bench_sort(lg_stat_for("idle-ack")->lat, lg_stat_for("idle-ack")->n);
	bench_sort(lg_stat_for("idle-round")->lat, lg_stat_for("idle-round")->n);
	/* ack_*: from the end of DATA to the delivery's first reply (median
	 * and worst round); after_ack_*: each wake-up from that reply; last_*:
	 * from the end of DATA to a round's last wake-up. */
	printf("result scenario=idle-latency clients=%d wakeups=%zu p50_ms=%.2f p90_ms=%.2f "
	       "p99_ms=%.2f max_ms=%.2f ack_p50_ms=%.2f ack_max_ms=%.2f after_ack_p50_ms=%.2f "
	       "after_ack_p99_ms=%.2f last_p50_ms=%.2f last_max_ms=%.2f\n",
	       lg_opt.conc, lg_stat_for("idle-wakeup")->n,
	       lg_pct(lg_stat_for("idle-wakeup"), 0.5) * 1e3,
	       lg_pct(lg_stat_for("idle-wakeup"), 0.9) * 1e3,
	       lg_pct(lg_stat_for("idle-wakeup"), 0.99) * 1e3,
	       lg_pct(lg_stat_for("idle-wakeup"), 1.0) * 1e3,
	       lg_pct(lg_stat_for("idle-ack"), 0.5) * 1e3,
	       lg_pct(lg_stat_for("idle-ack"), 1.0) * 1e3,
	       lg_pct(lg_stat_for("idle-after-ack"), 0.5) * 1e3,
	       lg_pct(lg_stat_for("idle-after-ack"), 0.99) * 1e3,
	       lg_pct(lg_stat_for("idle-round"), 0.5) * 1e3,
	       lg_pct(lg_stat_for("idle-round"), 1.0) * 1e3);
}

void
lg_idle_memory(double t0)
{
	long rss0, pss0, rss1, pss1;

	memory_of(lg_opt.pids, &rss0, &pss0);
	open_in_waves(t0);
	lg_run_loop(t0 + lg_opt.timeout, all_idling);
	if (idle_ready < lg_opt.conc)
		lg_die("only %d of %d clients reached IDLE", idle_ready, lg_opt.conc);
	sleep(1);
	memory_of(lg_opt.pids, &rss1, &pss1);
	printf("result scenario=idle-memory clients=%d rss_kb_before=%ld rss_kb_after=%ld "
	       "rss_kb_per_conn=%.1f pss_kb_per_conn=%.1f\n",
	       lg_opt.conc, rss0, rss1, (double)(rss1 - rss0) / lg_opt.conc,
	       (double)(pss1 - pss0) / lg_opt.conc);
}
