/*
 * loadgen: a mail-protocol load generator. One process, one epoll loop, many
 * connections; each connection runs a scripted session and every exchange
 * (request -> complete response) is timed. Used by bench/compare against
 * Roost and Dovecot alike, so it speaks only standard SMTP/LMTP, IMAP and
 * POP3 and never assumes anything about the server.
 *
 *   loadgen smtp-deliver --port P [--lmtp] -c 10 -n 1000 --size 4096
 *   loadgen imap-mix     --port P -c 20 --iterations 5
 *   loadgen pop3-cycle   --port P -c 10 --iterations 3
 *   loadgen idle-latency --port IMAP --deliver-port SMTP [--lmtp] -c 1000 --rounds 5
 *   loadgen idle-memory  --port IMAP -c 1000 --pids "123 456"
 *   loadgen slow-readers --port IMAP -c 20 --iterations 5 --slow 200 --slow-users 25
 *
 * slow-readers runs the IMAP mix (after a warm-up round) alone, then while --slow clients
 * (users user<U>.. user<U+slow-users-1>, U = --users) each FETCH message 1
 * of their INBOX (BODY.PEEK[]) through a 4 KiB receive window and read it at
 * --slow-rate bytes per second. It prints the mix's throughput and p50/p99
 * latency (over every command) both ways: what slow clients cost the others.
 *
 * Users are user%d@DOMAIN with password pass%d, %d in [0, --users).
 * Output: a header line, one row per command, and a final line of
 * key=value figures (what bench/compare parses).
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"

struct lg_options lg_opt = {
    .host = "127.0.0.1",
    .conc = 10,
    .total = 1000,
    .iterations = 3,
    .users = 10,
    .domain = "example.org",
    .size = 4096,
    .rounds = 5,
    .timeout = 600,
    .slow = 200,
    .slow_users = 25,
    .slow_rate = 4096,
};

double
lg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void __attribute__((noreturn, format(printf, 1, 2))) lg_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

void *
lg_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL)
		lg_die("out of memory");
	return q;
}

static void
usage(void)
{
	fprintf(
	    stderr,
	    "usage: loadgen "
	    "smtp-deliver|imap-mix|pop3-cycle|idle-latency|idle-memory|slow-readers\n"
	    "  --host H --port P [--deliver-port P] [--lmtp] [-c conns] [-n messages]\n"
	    "  [--iterations N] [--users N] [--domain D] [--size BYTES] [--rounds N]\n"
	    "  [--pids \"PID ...\"] [--timeout S] [--slow N] [--slow-users N] [--slow-rate B/s]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"host", 1, 0, 'H'},       {"port", 1, 0, 'p'},   {"deliver-port", 1, 0, 'd'},
	    {"lmtp", 0, 0, 'l'},       {"conns", 1, 0, 'c'},  {"messages", 1, 0, 'n'},
	    {"iterations", 1, 0, 'i'}, {"users", 1, 0, 'u'},  {"domain", 1, 0, 'D'},
	    {"size", 1, 0, 's'},       {"rounds", 1, 0, 'r'}, {"pids", 1, 0, 'P'},
	    {"timeout", 1, 0, 't'},    {"slow", 1, 0, 'S'},   {"slow-users", 1, 0, 'U'},
	    {"slow-rate", 1, 0, 'R'},  {0, 0, 0, 0},
	};
	struct rlimit rl;
	double t0, elapsed;
	int ch;

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "smtp-deliver") == 0)
		lg_opt.sc = SC_SMTP;
	else if (strcmp(argv[1], "imap-mix") == 0)
		lg_opt.sc = SC_IMAP_MIX;
	else if (strcmp(argv[1], "pop3-cycle") == 0)
		lg_opt.sc = SC_POP3;
	else if (strcmp(argv[1], "idle-latency") == 0)
		lg_opt.sc = SC_IDLE_LATENCY;
	else if (strcmp(argv[1], "idle-memory") == 0)
		lg_opt.sc = SC_IDLE_MEMORY;
	else if (strcmp(argv[1], "slow-readers") == 0)
		lg_opt.sc = SC_SLOW_READERS;
	else
		usage();
	optind = 2;
	while ((ch = getopt_long(argc, argv, "c:n:i:u:s:r:p:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			lg_opt.host = optarg;
			break;
		case 'p':
			lg_opt.port = atoi(optarg);
			break;
		case 'd':
			lg_opt.deliver_port = atoi(optarg);
			break;
		case 'l':
			lg_opt.lmtp = true;
			break;
		case 'c':
			lg_opt.conc = atoi(optarg);
			break;
		case 'n':
			lg_opt.total = atol(optarg);
			break;
		case 'i':
			lg_opt.iterations = atoi(optarg);
			break;
		case 'u':
			lg_opt.users = atoi(optarg);
			break;
		case 'D':
			lg_opt.domain = optarg;
			break;
		case 's':
			lg_opt.size = (size_t)atol(optarg);
			break;
		case 'r':
			lg_opt.rounds = atoi(optarg);
			break;
		case 'P':
			lg_opt.pids = optarg;
			break;
		case 't':
			lg_opt.timeout = atoi(optarg);
			break;
		case 'S':
			lg_opt.slow = atoi(optarg);
			break;
		case 'U':
			lg_opt.slow_users = atoi(optarg);
			break;
		case 'R':
			lg_opt.slow_rate = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (lg_opt.port <= 0 || lg_opt.conc <= 0 || lg_opt.users <= 0 || lg_opt.size < 256 ||
	    lg_opt.slow < 0 || lg_opt.slow_users <= 0 || lg_opt.slow_rate <= 0)
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)lg_opt.conc + (rlim_t)lg_opt.slow + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	srand(42);
	lg_make_message();
	lg_epfd = epoll_create1(EPOLL_CLOEXEC);
	t0 = lg_now();

	switch (lg_opt.sc) {
	case SC_SMTP:
		lg_open_conns(P_SMTP, lg_opt.port, lg_opt.conc);
		lg_run_loop(t0 + lg_opt.timeout, NULL);
		elapsed = lg_now() - t0;
		lg_print_stats(elapsed);
		printf("result scenario=smtp-deliver messages=%ld seconds=%.3f msgs_per_s=%.1f "
		       "p50_ms=%.2f p99_ms=%.2f errors=%ld\n",
		       lg_msgs_done, elapsed, (double)lg_msgs_done / elapsed,
		       lg_pct(lg_stat_for("deliver"), 0.5) * 1e3,
		       lg_pct(lg_stat_for("deliver"), 0.99) * 1e3, lg_stat_for("deliver")->errors);
		break;
	case SC_IMAP_MIX:
	case SC_POP3: {
		long ops = 0, errors = 0;

		lg_open_conns(lg_opt.sc == SC_POP3 ? P_POP3 : P_IMAP, lg_opt.port, lg_opt.conc);
		lg_run_loop(t0 + lg_opt.timeout, NULL);
		elapsed = lg_now() - t0;
		lg_print_stats(elapsed);
		for (int i = 0; i < lg_n_stats; i++) {
			ops += (long)lg_stats[i].n;
			errors += lg_stats[i].errors;
		}
		for (int i = 0; i < lg_opt.conc; i++) {
			if (!lg_conns[i].done || lg_conns[i].iter < lg_opt.iterations) {
				fprintf(stderr,
				        "loadgen: connection %d stopped at step %d of session %d\n",
				        i, lg_conns[i].step, lg_conns[i].iter + 1);
				errors++;
			}
		}
		printf("result scenario=%s ops=%ld seconds=%.3f ops_per_s=%.1f errors=%ld\n",
		       argv[1], ops, elapsed, (double)ops / elapsed, errors);
		break;
	}
	case SC_IDLE_LATENCY:
		if (lg_opt.deliver_port <= 0)
			usage();
		lg_idle_latency(t0);
		break;
	case SC_SLOW_READERS:
		lg_slow_readers();
		break;
	case SC_IDLE_MEMORY:
		if (lg_opt.pids == NULL)
			usage();
		lg_idle_memory(t0);
		break;
	}
	return 0;
}
