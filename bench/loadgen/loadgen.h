#ifndef ROOST_BENCH_LOADGEN_H
#define ROOST_BENCH_LOADGEN_H

/*
 * What the files of loadgen share. One thread runs everything: the globals
 * below belong to it, so none of them takes a lock.
 *
 *   loadgen_main.c    options, the command line, the scenario dispatch
 *   loadgen_stats.c   latency samples per command, percentiles, the table
 *   loadgen_conn.c    the connection table, output queue, connect/close
 *   loadgen_frame.c   where one response ends (SMTP, POP3, IMAP)
 *   loadgen_script.c  the scripted sessions: the next request per protocol
 *   loadgen_loop.c    the epoll loop: read, frame, time, write
 *   loadgen_idle.c    idle-latency and idle-memory
 *   loadgen_slow.c    slow-readers
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lg_scenario {
	SC_SMTP,
	SC_IMAP_MIX,
	SC_POP3,
	SC_IDLE_LATENCY,
	SC_IDLE_MEMORY,
	SC_SLOW_READERS
};

/* The command line, set once by main() before any connection opens. */
struct lg_options {
	enum lg_scenario sc;
	const char *host;
	int port, deliver_port;
	bool lmtp;
	int conc;
	long total;     /* smtp: messages in all */
	int iterations; /* imap/pop3: sessions per connection */
	int users;
	const char *domain;
	size_t size;      /* message size for smtp and append */
	int rounds;       /* idle-latency */
	const char *pids; /* idle-memory */
	int timeout;      /* seconds for the whole run */
	int slow;         /* slow-readers: how many */
	int slow_users;   /* slow-readers: users they log in as */
	int slow_rate;    /* slow-readers: bytes per second each */
};

extern struct lg_options lg_opt;

/* Monotonic seconds. */
double lg_now(void);
/* Print "loadgen: <message>" on stderr and exit 1. */
void lg_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* realloc() that dies when memory runs out. */
void *lg_xrealloc(void *p, size_t n);

/* ---- latency statistics per command (loadgen_stats.c) ---- */

#define LG_MAX_CMDS 24

struct lg_stat_row {
	const char *name;
	double *lat; /* seconds, one per successful exchange */
	size_t n, cap;
	long errors;
};

/* The rows seen so far, in the order the commands first ran. */
extern struct lg_stat_row lg_stats[LG_MAX_CMDS];
extern int lg_n_stats;

/* The row of command name (a string that outlives the run), made on first use. */
struct lg_stat_row *lg_stat_for(const char *name);
/* One exchange of command name: its latency when ok, else one more error. */
void lg_stat_add(const char *name, double seconds, bool ok);
/* The p-th fraction (0..1) of r's sorted samples, 0 when there are none. */
double lg_pct(const struct lg_stat_row *r, double p);
/* Sort every row and print the table: ops, ops/s over elapsed, p50/p90/p99, errors. */
void lg_print_stats(double elapsed);

/* ---- connections (loadgen_conn.c) ---- */

enum lg_proto { P_SMTP, P_IMAP, P_POP3 };

struct lg_conn {
	int fd;
	enum lg_proto proto;
	int id;
	int user;
	int step;            /* position in the scenario's script */
	int iter;            /* sessions done */
	unsigned generation; /* bumped for every new socket (fd numbers are reused) */
	long sent_msgs;
	bool busy; /* a request is outstanding */
	bool connecting;
	bool done;
	const char *cmd; /* name of the outstanding request, for stats */
	double t_sent;
	int tag;
	/* input */
	char *in;
	size_t in_len, in_cap;
	size_t lit_left; /* IMAP: literal bytes still to skip */
	size_t scan;     /* bytes of in already scanned */
	/* output */
	char *out;
	size_t out_len, out_off, out_cap;
	/* scenario state */
	unsigned exists;
	unsigned last_uid;
	bool idling;
	double idle_wait_start;
	bool resp_ok;
};

extern int lg_epfd;
/* lg_open_conns()'s table of opt.conc connections; lg_active_conns of them are not done. */
extern struct lg_conn *lg_conns;
extern int lg_active_conns;

/* Queue bytes for the next request. */
void lg_out_add(struct lg_conn *c, const char *data, size_t len);
void lg_out_printf(struct lg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* epoll_ctl() of c with events; dies on failure except for EPOLL_CTL_DEL. */
void lg_watch(struct lg_conn *c, uint32_t events, int op);
/* A non-blocking connect to opt.host:port under way; dies on failure. */
int lg_connect_to(int port);
/* Send the queued request and remember when, for its latency. */
void lg_request(struct lg_conn *c, const char *cmd);
/* Close c for good and count it out of lg_active_conns. */
void lg_conn_finish(struct lg_conn *c);
/* The session is over: start the next one on a new socket. */
void lg_next_session(struct lg_conn *c);
/* Open lg_conns: n connections of proto to port, users spread over them. */
void lg_open_conns(enum lg_proto proto, int port, int n);
/* The same in two steps: the table of n (no socket yet), then the
 * connections [from, to) of it. */
void lg_alloc_conns(enum lg_proto proto, int n);
void lg_connect_range(int port, int from, int to);

/* ---- response framing (loadgen_frame.c) ---- */

/* The length of the one complete response to c's outstanding command at the
 * start of c->in, or 0 while it is incomplete. */
size_t lg_response_len(struct lg_conn *c);
/* Whether the response at the start of c->in is a success. */
bool lg_response_ok(struct lg_conn *c);

/* ---- scripted sessions (loadgen_script.c) ---- */

extern char *lg_message_body; /* CRLF text of opt.size bytes, dot-safe */
extern long lg_msgs_started, lg_msgs_done;

/* Build lg_message_body from the options. */
void lg_make_message(void);
/* Write c's next request or finish the connection. */
void lg_next_request(struct lg_conn *c);

/* ---- the event loop (loadgen_loop.c) ---- */

/* Called for every untagged EXISTS a client in IDLE reads, when set. */
extern void (*lg_on_idle_exists)(struct lg_conn *c);
/* Called every 100 ms or so while lg_run_loop() runs, when set. */
extern void (*lg_on_tick)(void);
/* Run until no connection is active, deadline passes or stop() says so. */
void lg_run_loop(double deadline, bool (*stop)(void));

/* ---- scenarios of their own (loadgen_idle.c, loadgen_slow.c) ---- */

/* idle-latency and idle-memory, the run started at t0; print the result line. */
void lg_idle_latency(double t0);
void lg_idle_memory(double t0);
/* slow-readers: the IMAP mix alone, then with slow readers; print both. */
void lg_slow_readers(void);

#endif
