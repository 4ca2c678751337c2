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
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support/bench_util.h"

/* ---- options ---- */

enum scenario { SC_SMTP, SC_IMAP_MIX, SC_POP3, SC_IDLE_LATENCY, SC_IDLE_MEMORY, SC_SLOW_READERS };

static struct {
	enum scenario sc;
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
} opt = {
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

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void *
xrealloc_or_die(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL)
		die("out of memory");
	return q;
}

/* ---- latency statistics per command ---- */

#define MAX_CMDS 24

struct stat_row {
	const char *name;
	double *lat;
	size_t n, cap;
	long errors;
};

static struct stat_row stats[MAX_CMDS];
static int n_stats;

static struct stat_row *
stat_for(const char *name)
{
	for (int i = 0; i < n_stats; i++) {
		if (strcmp(stats[i].name, name) == 0)
			return &stats[i];
	}
	if (n_stats == MAX_CMDS)
		die("too many command kinds");
	stats[n_stats].name = name;
	return &stats[n_stats++];
}

static void
stat_add(const char *name, double seconds, bool ok)
{
	struct stat_row *r = stat_for(name);

	if (!ok) {
		r->errors++;
		return;
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->lat = xrealloc_or_die(r->lat, r->cap * sizeof(double));
	}
	r->lat[r->n++] = seconds;
}

static double
pct(const struct stat_row *r, double p)
{
	size_t i;

	if (r->n == 0)
		return 0;
	i = (size_t)(p * (double)(r->n - 1) + 0.5);
	return r->lat[i];
}

static void
print_stats(double elapsed)
{
	printf("%-14s %9s %9s %9s %9s %9s %7s\n", "command", "ops", "ops/s", "p50 ms", "p90 ms",
	       "p99 ms", "errors");
	for (int i = 0; i < n_stats; i++) {
		struct stat_row *r = &stats[i];

		bench_sort(r->lat, r->n);
		printf("%-14s %9zu %9.1f %9.2f %9.2f %9.2f %7ld\n", r->name, r->n,
		       (double)r->n / elapsed, pct(r, 0.5) * 1e3, pct(r, 0.9) * 1e3,
		       pct(r, 0.99) * 1e3, r->errors);
	}
}

/* ---- connections ---- */

enum proto { P_SMTP, P_IMAP, P_POP3 };

struct lconn {
	int fd;
	enum proto proto;
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

static int epfd;
static struct lconn *conns;
static int active_conns;
static char *message_body; /* CRLF text of opt.size bytes, dot-safe */
static long msgs_started, msgs_done;

static void
make_message(void)
{
	size_t n = 0, cap = opt.size + 512;
	const char *line = "The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n";
	size_t ll = strlen(line);

	message_body = xrealloc_or_die(NULL, cap);
	n = (size_t)snprintf(
	    message_body, cap,
	    "From: Load Generator <loadgen@%s>\r\nTo: user@%s\r\nSubject: loadgen message\r\n"
	    "Date: Mon, 30 Nov 2026 01:00:00 +0000\r\nMessage-ID: <lg@loadgen>\r\n\r\n",
	    opt.domain, opt.domain);
	while (n + ll < opt.size && n + ll < cap) {
		memcpy(message_body + n, line, ll);
		n += ll;
	}
	message_body[n] = '\0';
}

static void
out_add(struct lconn *c, const char *data, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		c->out_cap = (c->out_len + len) * 2;
		c->out = xrealloc_or_die(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

static void __attribute__((format(printf, 2, 3))) out_printf(struct lconn *c, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	out_add(c, tmp, (size_t)n);
}

static void
watch(struct lconn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (epoll_ctl(epfd, op, c->fd, &ev) != 0 && op != EPOLL_CTL_DEL)
		die("epoll_ctl: %s", strerror(errno));
}

static int
connect_to(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, one = 1;

	if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1)
		die("bad host %s", opt.host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
		die("connect %s:%d: %s", opt.host, port, strerror(errno));
	return fd;
}

/* Send the queued request and remember when, for its latency. */
static void
request(struct lconn *c, const char *cmd)
{
	c->cmd = cmd;
	c->busy = true;
	c->resp_ok = true;
	c->t_sent = now_s();
	watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

static void
conn_finish(struct lconn *c)
{
	if (c->fd >= 0) {
		watch(c, 0, EPOLL_CTL_DEL);
		close(c->fd);
		c->fd = -1;
	}
	if (!c->done) {
		c->done = true;
		active_conns--;
	}
}

/* ---- response framing ---- */

/* Returns the length of one complete response at the start of c->in, or 0. */
static size_t
smtp_response_len(struct lconn *c)
{
	size_t i = 0;

	while (i < c->in_len) {
		char *nl = memchr(c->in + i, '\n', c->in_len - i);

		if (nl == NULL)
			return 0;
		if ((size_t)(nl - (c->in + i)) >= 4 && c->in[i + 3] == ' ')
			return (size_t)(nl - c->in) + 1;
		if ((size_t)(nl - (c->in + i)) < 4)
			return (size_t)(nl - c->in) + 1; /* malformed: stop here */
		i = (size_t)(nl - c->in) + 1;
	}
	return 0;
}

static bool pop3_multiline;

static size_t
pop3_response_len(struct lconn *c)
{
	char *nl = memchr(c->in, '\n', c->in_len);

	if (nl == NULL)
		return 0;
	if (!pop3_multiline || c->in[0] != '+')
		return (size_t)(nl - c->in) + 1;
	/* multi-line: ends with CRLF . CRLF */
	for (size_t i = c->scan > 4 ? c->scan - 4 : 0; i + 5 <= c->in_len; i++) {
		if (memcmp(c->in + i, "\r\n.\r\n", 5) == 0)
			return i + 5;
	}
	c->scan = c->in_len;
	return 0;
}

/*
 * IMAP: untagged data and literals until "<tag> OK|NO|BAD". Untagged EXISTS
 * and APPENDUID/UID values are noted for the scenario. Returns the length
 * up to and including the tagged line, or 0.
 */
static size_t
imap_response_len(struct lconn *c, bool until_untagged_exists)
{
	char tagbuf[24];
	size_t i = c->scan;

	snprintf(tagbuf, sizeof(tagbuf), "a%d ", c->tag);
	while (i < c->in_len) {
		char *nl;
		size_t line_len;
		const char *line = c->in + i;

		if (c->lit_left > 0) {
			size_t take = c->in_len - i < c->lit_left ? c->in_len - i : c->lit_left;

			c->lit_left -= take;
			i += take;
			continue;
		}
		nl = memchr(c->in + i, '\n', c->in_len - i);
		if (nl == NULL)
			break;
		line_len = (size_t)(nl - line) + 1;
		if (line_len >= 3 && line[line_len - 2] == '\r' && line[line_len - 3] == '}') {
			const char *brace = line + line_len - 3;

			while (brace > line && *brace != '{')
				brace--;
			c->lit_left = strtoul(brace + 1, NULL, 10);
		}
		if (line[0] == '*') {
			unsigned n;
			char word[16];

			if (sscanf(line, "* %u %15s", &n, word) == 2 &&
			    strcmp(word, "EXISTS") == 0) {
				c->exists = n;
				if (until_untagged_exists) {
					c->scan = 0;
					return (size_t)(nl - c->in) + 1;
				}
			}
		} else if (strncmp(line, tagbuf, strlen(tagbuf)) == 0) {
			const char *p;

			c->resp_ok = strncmp(line + strlen(tagbuf), "OK", 2) == 0;
			if ((p = strstr(line, "[APPENDUID ")) != NULL &&
			    (size_t)(p - line) < line_len) {
				unsigned v, u;

				if (sscanf(p, "[APPENDUID %u %u]", &v, &u) == 2)
					c->last_uid = u;
			}
			c->scan = 0;
			return (size_t)(nl - c->in) + 1;
		} else if (line[0] == '+' && c->cmd != NULL && strcmp(c->cmd, "idle") == 0) {
			c->scan = 0;
			return (size_t)(nl - c->in) + 1;
		}
		i += line_len;
	}
	c->scan = i;
	return 0;
}

/* The session is over: start the next one on a new socket. */
static void
next_session(struct lconn *c)
{
	watch(c, 0, EPOLL_CTL_DEL);
	close(c->fd);
	c->fd = connect_to(opt.port);
	c->generation++;
	c->step = 0;
	c->in_len = c->scan = c->lit_left = 0;
	c->connecting = true;
	watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* ---- scenarios: each writes the next request or finishes the connection ---- */

static void smtp_next(struct lconn *c);
static void imap_next(struct lconn *c);
static void pop3_next(struct lconn *c);

static void
imap_cmd(struct lconn *c, const char *name, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	c->tag++;
	out_printf(c, "a%d %s\r\n", c->tag, tmp);
	request(c, name);
}

/* SMTP/LMTP: greeting, EHLO/LHLO, then MAIL/RCPT/DATA per message, QUIT. */
static void
smtp_next(struct lconn *c)
{
	switch (c->step++) {
	case 0:
		request(c, "greeting");
		c->out_len = 0;
		break;
	case 1:
		out_printf(c, "%s loadgen.example\r\n", opt.lmtp ? "LHLO" : "EHLO");
		request(c, opt.lmtp ? "lhlo" : "ehlo");
		break;
	case 2:
		if (msgs_started >= opt.total) {
			out_printf(c, "QUIT\r\n");
			request(c, "quit");
			c->step = 100;
			break;
		}
		/* Spread messages over all users, whatever the connection count. */
		c->user = (int)(msgs_started++ % opt.users);
		out_printf(c, "MAIL FROM:<loadgen@%s>\r\n", opt.domain);
		request(c, "mail");
		break;
	case 3:
		out_printf(c, "RCPT TO:<user%d@%s>\r\n", c->user, opt.domain);
		request(c, "rcpt");
		break;
	case 4:
		out_printf(c, "DATA\r\n");
		request(c, "data");
		break;
	case 5:
		out_add(c, message_body, strlen(message_body));
		out_printf(c, ".\r\n");
		request(c, "deliver");
		c->step = 2;
		break;
	default:
		conn_finish(c);
	}
}

/*
 * The IMAP mix, per session: LOGIN, SELECT, FETCH flags of all, ENVELOPE of
 * the newest 10, one body, STORE \Seen, SEARCH UNSEEN, APPEND, STORE
 * \Deleted on it, EXPUNGE, LOGOUT. Close to what a desktop client does when
 * it checks and reads new mail.
 */
static void
imap_next(struct lconn *c)
{
	unsigned lo;

	switch (c->step++) {
	case 0:
		request(c, "greeting");
		break;
	case 1:
		imap_cmd(c, "login", "LOGIN user%d@%s pass%d", c->user, opt.domain, c->user);
		break;
	case 2:
		imap_cmd(c, "select", "SELECT INBOX");
		break;
	case 3:
		if (opt.sc == SC_IDLE_LATENCY || opt.sc == SC_IDLE_MEMORY) {
			c->idling = true;
			imap_cmd(c, "idle", "IDLE");
			c->step = 50;
			break;
		}
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP"); /* "1:*" of nothing is an error to some */
		else
			imap_cmd(c, "fetch-flags", "FETCH 1:* (UID FLAGS)");
		break;
	case 4:
		lo = c->exists > 10 ? c->exists - 9 : 1;
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP");
		else
			imap_cmd(c, "fetch-env", "FETCH %u:* (UID FLAGS ENVELOPE)", lo);
		break;
	case 5:
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP");
		else
			imap_cmd(c, "fetch-body", "FETCH %u BODY.PEEK[]",
			         1 + (unsigned)(rand() % (int)c->exists));
		break;
	case 6:
		if (c->exists == 0)
			imap_cmd(c, "noop", "NOOP");
		else
			imap_cmd(c, "store-seen", "STORE %u +FLAGS (\\Seen)",
			         1 + (unsigned)(rand() % (int)c->exists));
		break;
	case 7:
		imap_cmd(c, "search", "SEARCH UNSEEN");
		break;
	case 8:
		c->tag++;
		out_printf(c, "a%d APPEND INBOX (\\Seen) {%zu+}\r\n", c->tag, strlen(message_body));
		out_add(c, message_body, strlen(message_body));
		out_printf(c, "\r\n");
		c->last_uid = 0;
		request(c, "append");
		break;
	case 9:
		if (c->last_uid != 0)
			imap_cmd(c, "store-del", "UID STORE %u +FLAGS.SILENT (\\Deleted)",
			         c->last_uid);
		else
			imap_cmd(c, "store-del", "STORE %u +FLAGS.SILENT (\\Deleted)", c->exists);
		break;
	case 10:
		imap_cmd(c, "expunge", "EXPUNGE");
		break;
	case 11:
		imap_cmd(c, "logout", "LOGOUT");
		break;
	case 12:
		/* The session is over; start the next one on a new socket. */
		if (++c->iter >= opt.iterations) {
			conn_finish(c);
			break;
		}
		next_session(c);
		break;
	case 50:
		/* In IDLE: wait for EXISTS pushed by the server. */
		c->busy = true;
		c->cmd = "idle-wait";
		watch(c, EPOLLIN, EPOLL_CTL_MOD);
		c->step = 50;
		break;
	default:
		conn_finish(c);
	}
}

/* POP3: USER, PASS, STAT, LIST, then RETR and DELE each message, QUIT. */
static void
pop3_next(struct lconn *c)
{
	switch (c->step) {
	case 0:
		request(c, "greeting");
		c->step = 1;
		break;
	case 1:
		out_printf(c, "USER user%d@%s\r\n", c->user, opt.domain);
		request(c, "user");
		c->step = 2;
		break;
	case 2:
		out_printf(c, "PASS pass%d\r\n", c->user);
		request(c, "pass");
		c->step = 3;
		break;
	case 3:
		out_printf(c, "STAT\r\n");
		request(c, "stat");
		c->step = 4;
		break;
	case 4:
		out_printf(c, "LIST\r\n");
		request(c, "list");
		c->last_uid = 0; /* messages retrieved so far */
		c->step = 5;
		break;
	case 5:
		if (c->last_uid < c->exists) {
			out_printf(c, "RETR %u\r\n", ++c->last_uid);
			request(c, "retr");
			c->step = 6;
		} else {
			out_printf(c, "QUIT\r\n");
			request(c, "quit");
			c->step = 7;
		}
		break;
	case 6:
		out_printf(c, "DELE %u\r\n", c->last_uid);
		request(c, "dele");
		c->step = 5;
		break;
	default:
		if (++c->iter >= opt.iterations) {
			conn_finish(c);
			break;
		}
		next_session(c);
	}
}

static void
next_request(struct lconn *c)
{
	switch (c->proto) {
	case P_SMTP:
		smtp_next(c);
		break;
	case P_IMAP:
		imap_next(c);
		break;
	case P_POP3:
		pop3_next(c);
		break;
	}
}

/* ---- the event loop ---- */

static size_t
response_len(struct lconn *c)
{
	switch (c->proto) {
	case P_SMTP:
		return smtp_response_len(c);
	case P_POP3:
		/* LIST/RETR are multi-line; the flag is per outstanding command. */
		pop3_multiline =
		    c->cmd != NULL && (strcmp(c->cmd, "list") == 0 || strcmp(c->cmd, "retr") == 0);
		return pop3_response_len(c);
	case P_IMAP:
		if (c->cmd != NULL && strcmp(c->cmd, "greeting") == 0) {
			char *nl = memchr(c->in, '\n', c->in_len);

			return nl == NULL ? 0 : (size_t)(nl - c->in) + 1;
		}
		return imap_response_len(c, c->cmd != NULL && strcmp(c->cmd, "idle-wait") == 0);
	}
	return 0;
}

static bool
response_ok(struct lconn *c)
{
	switch (c->proto) {
	case P_SMTP:
		return c->in[0] == '2' || c->in[0] == '3';
	case P_POP3:
		return c->in[0] == '+';
	case P_IMAP:
		return c->resp_ok;
	}
	return false;
}

static void (*on_idle_exists)(struct lconn *c);

static void
handle_input(struct lconn *c)
{
	unsigned generation = c->generation;
	bool eof = false;

	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < 65536) {
			c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
			c->in = xrealloc_or_die(c->in, c->in_cap);
		}
		n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			eof = true;
			break;
		}
		if (n < 0)
			break;
		c->in_len += (size_t)n;
	}
	while (c->busy && !c->done) {
		size_t len = response_len(c);
		double t;

		if (len == 0)
			break;
		t = now_s();
		if (strcmp(c->cmd, "idle-wait") == 0) {
			memmove(c->in, c->in + len, c->in_len - len);
			c->in_len -= len;
			if (on_idle_exists != NULL)
				on_idle_exists(c);
			continue;
		}
		stat_add(c->cmd, t - c->t_sent, response_ok(c));
		if (c->proto == P_SMTP && strcmp(c->cmd, "deliver") == 0 && response_ok(c))
			msgs_done++;
		if (c->proto == P_POP3 && strcmp(c->cmd, "stat") == 0)
			sscanf(c->in, "+OK %u", &c->exists);
		memmove(c->in, c->in + len, c->in_len - len);
		c->in_len -= len;
		c->scan = 0;
		c->busy = false;
		c->out_len = c->out_off = 0;
		next_request(c);
	}
	/* The peer closed: fine after a goodbye (the session moved on to a new
	 * socket or finished), an error in the middle of an exchange. */
	if (eof && !c->done && c->generation == generation) {
		if (c->busy)
			stat_add(c->cmd, 0, false);
		conn_finish(c);
	}
}

static void
handle_output(struct lconn *c)
{
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			stat_add("connect", 0, false);
			conn_finish(c);
			return;
		}
		c->connecting = false;
		c->out_len = c->out_off = 0;
		next_request(c); /* waits for the greeting */
		return;
	}
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0) {
			if (errno == EAGAIN)
				return;
			conn_finish(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

static void (*on_tick)(void); /* every 100 ms or so while run_loop() runs */

static void
run_loop(double deadline, bool (*stop)(void))
{
	struct epoll_event evs[256];
	double last_tick = now_s();

	while (active_conns > 0 && now_s() < deadline && (stop == NULL || !stop())) {
		int n = epoll_wait(epfd, evs, 256, 100);

		if (on_tick != NULL && now_s() - last_tick >= 0.1) {
			last_tick = now_s();
			on_tick();
		}

		for (int i = 0; i < n; i++) {
			struct lconn *c = evs[i].data.ptr;

			if (c->done)
				continue;
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				handle_output(c);
			if (!c->done && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				handle_input(c);
		}
	}
}

static void
open_conns(enum proto proto, int port, int n)
{
	conns = calloc((size_t)n, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	for (int i = 0; i < n; i++) {
		struct lconn *c = &conns[i];

		c->id = i;
		c->proto = proto;
		c->user = i % opt.users;
		c->fd = connect_to(port);
		c->connecting = true;
		active_conns++;
		watch(c, EPOLLOUT, EPOLL_CTL_ADD);
	}
}

/* ---- idle scenarios ---- */

static int idle_ready;
static double round_start;
static int round_seen;

/* A client is idling once the server answered its IDLE with "+": before
 * that, a delivery may still be picked up by the IDLE command's own catch-up
 * and reported ahead of the "+", where it is not counted as a wake-up. */
static bool
all_idling(void)
{
	idle_ready = 0;
	for (int i = 0; i < opt.conc; i++) {
		if (conns[i].idling && conns[i].step == 50 && conns[i].busy &&
		    conns[i].cmd != NULL && strcmp(conns[i].cmd, "idle-wait") == 0)
			idle_ready++;
	}
	return idle_ready == opt.conc;
}

static bool
round_complete(void)
{
	return round_seen >= opt.conc;
}

static void
note_exists(struct lconn *c)
{
	if (round_start > 0) {
		stat_add("idle-wakeup", now_s() - round_start, true);
		round_seen++;
	}
}

/* Deliver one message to every user with a blocking SMTP/LMTP session. */
static int
deliver_to_all(void)
{
	int fd = connect_to(opt.deliver_port);
	char buf[8192], cmd[512];
	int flags = fcntl(fd, F_GETFL);
	fd_set w;

	fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	FD_ZERO(&w);
	FD_SET(fd, &w);
	select(fd + 1, NULL, &w, NULL, NULL);
#define READ_REPLY()                                                                               \
	do {                                                                                       \
		if (read(fd, buf, sizeof(buf)) <= 0)                                               \
			die("deliver: server closed");                                             \
	} while (0)
	READ_REPLY();
	snprintf(cmd, sizeof(cmd), "%s loadgen\r\n", opt.lmtp ? "LHLO" : "EHLO");
	if (write(fd, cmd, strlen(cmd)) < 0)
		die("deliver: write");
	READ_REPLY();
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<loadgen@%s>\r\n", opt.domain);
	if (write(fd, cmd, strlen(cmd)) < 0)
		die("deliver: write");
	READ_REPLY();
	for (int u = 0; u < opt.users; u++) {
		snprintf(cmd, sizeof(cmd), "RCPT TO:<user%d@%s>\r\n", u, opt.domain);
		if (write(fd, cmd, strlen(cmd)) < 0)
			die("deliver: write");
		READ_REPLY();
	}
	if (write(fd, "DATA\r\n", 6) < 0)
		die("deliver: write");
	READ_REPLY();
	round_start = now_s();
	if (write(fd, message_body, strlen(message_body)) < 0 || write(fd, ".\r\n", 3) < 0)
		die("deliver: write");
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

/* ---- slow readers ---- */

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

	slow = calloc((size_t)opt.slow, sizeof(*slow));
	if (slow == NULL)
		die("out of memory");
	for (int i = 0; i < opt.slow; i++) {
		int user = opt.users + i % opt.slow_users;
		struct sockaddr_in sa = {.sin_family = AF_INET,
		                         .sin_port = htons((uint16_t)opt.port)};
		char cmd[256];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		slow[i].fd = -1;
		if (fd < 0)
			die("socket: %s", strerror(errno));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, sizeof(window));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		inet_pton(AF_INET, opt.host, &sa.sin_addr);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || !read_reply(fd, NULL))
			goto fail;
		snprintf(cmd, sizeof(cmd), "s1 LOGIN user%d@%s pass%d\r\n", user, opt.domain, user);
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
	for (int i = 0; i < opt.slow; i++) {
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
	for (double end = now_s() + 15; started < slow_fetching && now_s() < end;) {
		struct timespec pause = {0, 20 * 1000 * 1000};

		started = 0;
		for (int i = 0; i < opt.slow; i++) {
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
	size_t share = (size_t)opt.slow_rate / 10;

	if (share > sizeof(buf))
		share = sizeof(buf);
	if (share == 0)
		share = 1;
	for (int i = 0; i < opt.slow; i++) {
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
	struct stat_row all = {.name = "all"};
	double t0 = now_s();

	n_stats = 0;
	memset(stats, 0, sizeof(stats));
	active_conns = 0;
	open_conns(P_IMAP, opt.port, opt.conc);
	run_loop(t0 + opt.timeout, NULL);
	m.seconds = now_s() - t0;
	print_stats(m.seconds);
	for (int i = 0; i < n_stats; i++) {
		all.lat = xrealloc_or_die(all.lat, (all.n + stats[i].n + 1) * sizeof(double));
		memcpy(all.lat + all.n, stats[i].lat, stats[i].n * sizeof(double));
		all.n += stats[i].n;
		m.errors += stats[i].errors;
		free(stats[i].lat);
	}
	bench_sort(all.lat, all.n);
	m.ops = (long)all.n;
	m.p50_ms = pct(&all, 0.5) * 1e3;
	m.p99_ms = pct(&all, 0.99) * 1e3;
	free(all.lat);
	for (int i = 0; i < opt.conc; i++) {
		if (!conns[i].done || conns[i].iter < opt.iterations) {
			m.errors++;
			conn_finish(&conns[i]);
		}
	}
	free(conns);
	conns = NULL;
	return m;
}

/* ---- main ---- */

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
		opt.sc = SC_SMTP;
	else if (strcmp(argv[1], "imap-mix") == 0)
		opt.sc = SC_IMAP_MIX;
	else if (strcmp(argv[1], "pop3-cycle") == 0)
		opt.sc = SC_POP3;
	else if (strcmp(argv[1], "idle-latency") == 0)
		opt.sc = SC_IDLE_LATENCY;
	else if (strcmp(argv[1], "idle-memory") == 0)
		opt.sc = SC_IDLE_MEMORY;
	else if (strcmp(argv[1], "slow-readers") == 0)
		opt.sc = SC_SLOW_READERS;
	else
		usage();
	optind = 2;
	while ((ch = getopt_long(argc, argv, "c:n:i:u:s:r:p:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = atoi(optarg);
			break;
		case 'd':
			opt.deliver_port = atoi(optarg);
			break;
		case 'l':
			opt.lmtp = true;
			break;
		case 'c':
			opt.conc = atoi(optarg);
			break;
		case 'n':
			opt.total = atol(optarg);
			break;
		case 'i':
			opt.iterations = atoi(optarg);
			break;
		case 'u':
			opt.users = atoi(optarg);
			break;
		case 'D':
			opt.domain = optarg;
			break;
		case 's':
			opt.size = (size_t)atol(optarg);
			break;
		case 'r':
			opt.rounds = atoi(optarg);
			break;
		case 'P':
			opt.pids = optarg;
			break;
		case 't':
			opt.timeout = atoi(optarg);
			break;
		case 'S':
			opt.slow = atoi(optarg);
			break;
		case 'U':
			opt.slow_users = atoi(optarg);
			break;
		case 'R':
			opt.slow_rate = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (opt.port <= 0 || opt.conc <= 0 || opt.users <= 0 || opt.size < 256 || opt.slow < 0 ||
	    opt.slow_users <= 0 || opt.slow_rate <= 0)
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)opt.conc + (rlim_t)opt.slow + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	srand(42);
	make_message();
	epfd = epoll_create1(EPOLL_CLOEXEC);
	t0 = now_s();

	switch (opt.sc) {
	case SC_SMTP:
		open_conns(P_SMTP, opt.port, opt.conc);
		run_loop(t0 + opt.timeout, NULL);
		elapsed = now_s() - t0;
		print_stats(elapsed);
		printf("result scenario=smtp-deliver messages=%ld seconds=%.3f msgs_per_s=%.1f "
		       "p50_ms=%.2f p99_ms=%.2f errors=%ld\n",
		       msgs_done, elapsed, (double)msgs_done / elapsed,
		       pct(stat_for("deliver"), 0.5) * 1e3, pct(stat_for("deliver"), 0.99) * 1e3,
		       stat_for("deliver")->errors);
		break;
	case SC_IMAP_MIX:
	case SC_POP3: {
		long ops = 0, errors = 0;

		open_conns(opt.sc == SC_POP3 ? P_POP3 : P_IMAP, opt.port, opt.conc);
		run_loop(t0 + opt.timeout, NULL);
		elapsed = now_s() - t0;
		print_stats(elapsed);
		for (int i = 0; i < n_stats; i++) {
			ops += (long)stats[i].n;
			errors += stats[i].errors;
		}
		for (int i = 0; i < opt.conc; i++) {
			if (!conns[i].done || conns[i].iter < opt.iterations) {
				fprintf(stderr,
				        "loadgen: connection %d stopped at step %d of session %d\n",
				        i, conns[i].step, conns[i].iter + 1);
				errors++;
			}
		}
		printf("result scenario=%s ops=%ld seconds=%.3f ops_per_s=%.1f errors=%ld\n",
		       argv[1], ops, elapsed, (double)ops / elapsed, errors);
		break;
	}
	case SC_IDLE_LATENCY:
		if (opt.deliver_port <= 0)
			usage();
		open_conns(P_IMAP, opt.port, opt.conc);
		on_idle_exists = note_exists;
		run_loop(t0 + opt.timeout, all_idling);
		if (idle_ready < opt.conc)
			die("only %d of %d clients reached IDLE", idle_ready, opt.conc);
		for (int r = 0; r < opt.rounds; r++) {
			char reply[4096];
			int dfd;

			round_seen = 0;
			dfd = deliver_to_all();
			run_loop(now_s() + 30, round_complete);
			if (read(dfd, reply, sizeof(reply)) <= 0 || (reply[0] != '2'))
				fprintf(stderr, "loadgen: round %d: delivery not acknowledged\n",
				        r);
			close(dfd);
			if (round_seen < opt.conc)
				fprintf(stderr, "loadgen: round %d: %d of %d clients woke\n", r,
				        round_seen, opt.conc);
			round_start = 0;
		}
		elapsed = now_s() - t0;
		bench_sort(stat_for("idle-wakeup")->lat, stat_for("idle-wakeup")->n);
		printf(
		    "result scenario=idle-latency clients=%d wakeups=%zu p50_ms=%.2f p90_ms=%.2f "
		    "p99_ms=%.2f max_ms=%.2f\n",
		    opt.conc, stat_for("idle-wakeup")->n, pct(stat_for("idle-wakeup"), 0.5) * 1e3,
		    pct(stat_for("idle-wakeup"), 0.9) * 1e3,
		    pct(stat_for("idle-wakeup"), 0.99) * 1e3,
		    pct(stat_for("idle-wakeup"), 1.0) * 1e3);
		break;
	case SC_SLOW_READERS: {
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
		on_tick = slow_tick;
		printf("-- the IMAP mix with %d slow readers (%d replies begun)\n", opt.slow,
		       started);
		loaded = run_mix();
		on_tick = NULL;
		for (int i = 0; i < opt.slow; i++) {
			kb += slow[i].got / 1024;
			if (slow[i].fd >= 0)
				close(slow[i].fd);
		}
		printf("result scenario=slow-readers slow=%d slow_begun=%d slow_still_reading=%d "
		       "slow_kb_read=%ld base_ops_per_s=%.1f base_p50_ms=%.2f base_p99_ms=%.2f "
		       "base_errors=%ld ops_per_s=%.1f p50_ms=%.2f p99_ms=%.2f errors=%ld "
		       "throughput_loss_pct=%.1f\n",
		       opt.slow, started, slow_fetching, kb, (double)base.ops / base.seconds,
		       base.p50_ms, base.p99_ms, base.errors, (double)loaded.ops / loaded.seconds,
		       loaded.p50_ms, loaded.p99_ms, loaded.errors,
		       100.0 * (1.0 - ((double)loaded.ops / loaded.seconds) /
		                          ((double)base.ops / base.seconds)));
		break;
	}
	case SC_IDLE_MEMORY: {
		long rss0, pss0, rss1, pss1;

		if (opt.pids == NULL)
			usage();
		memory_of(opt.pids, &rss0, &pss0);
		open_conns(P_IMAP, opt.port, opt.conc);
		run_loop(t0 + opt.timeout, all_idling);
		if (idle_ready < opt.conc)
			die("only %d of %d clients reached IDLE", idle_ready, opt.conc);
		sleep(1);
		memory_of(opt.pids, &rss1, &pss1);
		printf("result scenario=idle-memory clients=%d rss_kb_before=%ld rss_kb_after=%ld "
		       "rss_kb_per_conn=%.1f pss_kb_per_conn=%.1f\n",
		       opt.conc, rss0, rss1, (double)(rss1 - rss0) / opt.conc,
		       (double)(pss1 - pss0) / opt.conc);
		break;
	}
	}
	return 0;
}
