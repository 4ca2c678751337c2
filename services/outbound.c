/*
 * The delivery engine: scheduler, sessions per destination domain, the
 * control socket. See roost/outbound.h for the behaviour.
 *
 * Ownership: everything here belongs to the engine thread, except what
 * outbound_start()/outbound_stop() touch before the thread starts and after
 * it ended. Workers reach the engine only through the queue (queue_commit()
 * + the eventfd).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "roost/config.h"
#include "roost/dns.h"
#include "roost/dsn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/outbound.h"
#include "roost/queue.h"
#include "roost/relay.h"
#include "roost/services.h"
#include "roost/smtp_client.h"
#include "roost/xalloc.h"

#define MAX_CTL 4
#define SCAN_MS 1000

struct session;

/* Some recipients of one entry, for one domain, in one session. */
struct work {
	struct queue_entry *e;
	size_t *idx; /* indexes into e->rcpts */
	struct smtpc_rcpt *rcpts;
	size_t n;
	struct smtpc_msg msg;
	int64_t started; /* when the attempt began (for delay=) */
	struct work *next;
};

enum session_state { SS_MX, SS_ADDR, SS_SMTP, SS_DONE };

struct session {
	struct outbound *ob;
	char domain[DNS_MAX_NAME];
	enum session_state st;
	struct dns_mx *mx;
	size_t n_mx, mx_i;
	struct sockaddr_storage *addrs;
	size_t n_addrs, addr_i;
	char host[DNS_MAX_NAME]; /* the host connected to */
	struct smtpc *c;
	bool c_closed, c_ready_seen, c_tls_failed;
	bool plain; /* retrying this address without STARTTLS */
	int c_code;
	char c_text[512];
	struct work *works, *cur; /* waiting; being sent */
	unsigned sent_msgs;       /* over the current connection */
	int last_code;
	char last_text[512];
	struct session *next;
};

struct ctl_client {
	int fd;
	int64_t deadline;
	char line[512];
	size_t len;
};

struct outbound {
	const struct roost_services *sv;
	const struct roost_config *cfg;
	struct queue *q;
	pthread_t thread;
	atomic_bool stop;
	int wake_fd;
	int ctl_fd;
	struct ctl_client ctl[MAX_CTL];
	struct dns *dns;
	SSL_CTX *tls;
	struct queue_entry *entries;
	struct session *sessions;
	unsigned n_sessions;
	bool smarthost;
	char sh_host[DNS_MAX_NAME];
	uint16_t sh_port;
	int64_t next_scan;
	bool scan_now;
	/* Finished entries whose files go at the end of this loop turn, with
	 * one directory fsync for all of them. */
	char (*doomed)[QUEUE_ID_LEN];
	size_t n_doomed, cap_doomed;
};

static int64_t
now_ms(void)
{
	return smtpc_now_ms();
}

static void
wake(void *arg)
{
	struct outbound *ob = arg;
	uint64_t one = 1;

	if (write(ob->wake_fd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the engine is awake anyway. */
	}
}

/* ---- results ---- */

static unsigned
backoff(const struct outbound *ob, unsigned attempts)
{
	uint64_t d = ob->cfg->relay_retry_min;

	for (unsigned i = 1; i < attempts && d < ob->cfg->relay_retry_max; i++)
		d *= 2;
	return d > ob->cfg->relay_retry_max ? ob->cfg->relay_retry_max : (unsigned)d;
}

static void
set_status(struct queue_rcpt *r, int code, const char *text, const char *remote)
{
	free(r->status);
	r->status = xstrdup(text);
	free(r->remote);
	r->remote = xstrdup(remote != NULL ? remote : "");
	r->code = code;
}

static struct queue_entry **
entry_link(struct outbound *ob, struct queue_entry *e)
{
	for (struct queue_entry **pp = &ob->entries; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == e)
			return pp;
	}
	return NULL;
}

/* e is idle: remove it when nothing is pending (or it was deleted). */
static void
entry_settle(struct outbound *ob, struct queue_entry *e)
{
	struct queue_entry **pp;

	if (e->busy > 0)
		return;
	if (!e->dead && queue_entry_pending(e) > 0)
		return;
	if (ob->n_doomed == ob->cap_doomed) {
		ob->cap_doomed = ob->cap_doomed == 0 ? 64 : ob->cap_doomed * 2;
		ob->doomed = xreallocarray(ob->doomed, ob->cap_doomed, sizeof(*ob->doomed));
	}
	memcpy(ob->doomed[ob->n_doomed++], e->id, QUEUE_ID_LEN);
	log_info("event=queue-done queue_id=%s status=%s", e->id, e->dead ? "deleted" : "removed");
	if ((pp = entry_link(ob, e)) != NULL)
		*pp = e->next;
	queue_entry_free(&e);
}

static int
open_msg(struct outbound *ob, const struct queue_entry *e)
{
	char path[PATH_MAX];

	queue_msg_path(ob->q, e->id, path, sizeof(path));
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Apply one attempt's results to the entry, log, bounce, save. */
static void
work_finish(struct session *s, struct work *w, const char *relay, const char *ip, const char *tls)
{
	struct outbound *ob = s->ob;
	struct queue_entry *e = w->e;
	time_t now = time(NULL);
	size_t *failed = xcalloc(w->n + 1, sizeof(*failed)), nf = 0;
	bool temp = false, expired = now - e->created >= (time_t)ob->cfg->relay_queue_lifetime;

	for (size_t k = 0; k < w->n; k++) {
		struct queue_rcpt *r = &e->rcpts[w->idx[k]];
		const struct smtpc_rcpt *res = &w->rcpts[k];
		int code = res->code != 0 ? res->code : 451;
		const char *text = res->text[0] != '\0' ? res->text : "4.4.0 Not attempted";
		const char *status;

		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		set_status(r, code, text, relay);
		if (code / 100 == 2) {
			r->state = QUEUE_RCPT_SENT;
			status = "sent";
		} else if (code / 100 == 5) {
			r->state = QUEUE_RCPT_FAILED;
			failed[nf++] = w->idx[k];
			status = "bounced";
		} else if (expired) {
			char why[600];

			snprintf(why, sizeof(why),
			         "4.4.7 Message expired after %us in the queue; "
			         "last error: %s",
			         ob->cfg->relay_queue_lifetime, text);
			set_status(r, code, why, relay);
			r->state = QUEUE_RCPT_FAILED;
			failed[nf++] = w->idx[k];
			status = "expired";
		} else {
			temp = true;
			status = "deferred";
		}
		log_info(
		    "event=deliver queue_id=%s from=<%s> to=<%s> relay=%s ip=%s tls=%s code=%d "
		    "status=%s text=\"%s\" attempt=%u delay=%llds",
		    e->id, e->sender, r->addr, relay != NULL && relay[0] != '\0' ? relay : "-",
		    ip != NULL && ip[0] != '\0' ? ip : "-", tls != NULL ? tls : "none", code,
		    status, text, e->attempts + 1, (long long)(now - e->created));
	}
	e->attempts++;
	if (temp) {
		int64_t next = now + backoff(ob, e->attempts);

		if (next > e->next_try)
			e->next_try = next;
	}
	if (nf > 0 || (temp && ob->cfg->relay_delay_warning > 0 && !e->warned &&
	               now - e->created >= (time_t)ob->cfg->relay_delay_warning)) {
		int fd = open_msg(ob, e);

		if (nf > 0)
			dsn_send(ob->sv, e, failed, nf, DSN_FAILED, fd);
		if (temp && ob->cfg->relay_delay_warning > 0 && !e->warned &&
		    now - e->created >= (time_t)ob->cfg->relay_delay_warning) {
			size_t *delayed = xcalloc(e->n_rcpts + 1, sizeof(*delayed)), nd = 0;

			for (size_t i = 0; i < e->n_rcpts; i++) {
				if (e->rcpts[i].state == QUEUE_RCPT_PENDING)
					delayed[nd++] = i;
			}
			dsn_send(ob->sv, e, delayed, nd, DSN_DELAYED, fd);
			e->warned = true;
			free(delayed);
		}
		if (fd >= 0)
			close(fd);
	}
	free(failed);
	if (e->busy > 0)
		e->busy--;
	if (queue_entry_pending(e) > 0 && !e->dead)
		queue_entry_save(ob->q, e);
	entry_settle(ob, e);
}

static void
work_free(struct work *w)
{
	if (w == NULL)
		return;
	if (w->msg.fd >= 0)
		close(w->msg.fd);
	free(w->idx);
	free(w->rcpts);
	free(w);
}

/* Every recipient of w gets (code, text) without an SMTP attempt. */
static void
work_fail(struct session *s, struct work *w, int code, const char *text)
{
	for (size_t k = 0; k < w->n; k++) {
		w->rcpts[k].code = code;
		snprintf(w->rcpts[k].text, sizeof(w->rcpts[k].text), "%s", text);
	}
	work_finish(s, w, s->host, NULL, NULL);
	work_free(w);
}

static void
session_fail_all(struct session *s, int code, const char *text)
{
	while (s->works != NULL) {
		struct work *w = s->works;

		s->works = w->next;
		work_fail(s, w, code, text);
	}
	s->st = SS_DONE;
}

/* ---- connecting ---- */

static void session_next_host(struct session *s);
static void smtp_ready(void *arg);
static void smtp_done(void *arg, struct smtpc_msg *msg);
static void smtp_closed(void *arg, bool ready_seen, int code, const char *text);

static const struct smtpc_events smtp_events = {
    .ready = smtp_ready,
    .done = smtp_done,
    .closed = smtp_closed,
};

static bool
tls_required(const struct outbound *ob, const char *domain)
{
	if (ob->smarthost)
		return true;
	for (char **p = ob->cfg->relay_tls_required; p != NULL && *p != NULL; p++) {
		if (strcasecmp(*p, domain) == 0)
			return true;
	}
	return false;
}

static void
session_connect_next(struct session *s)
{
	struct outbound *ob = s->ob;
	struct smtpc_settings set = {0};
	struct sockaddr_storage *a;
	socklen_t len;
	uint16_t port = ob->smarthost ? ob->sh_port : (uint16_t)ob->cfg->relay_mx_port;

	if (s->addr_i >= s->n_addrs) {
		s->mx_i++;
		session_next_host(s);
		return;
	}
	a = &s->addrs[s->addr_i++];
	if (a->ss_family == AF_INET6) {
		((struct sockaddr_in6 *)a)->sin6_port = htons(port);
		len = sizeof(struct sockaddr_in6);
	} else {
		((struct sockaddr_in *)a)->sin_port = htons(port);
		len = sizeof(struct sockaddr_in);
	}
	set.helo = ob->cfg->hostname;
	set.tls = s->plain ? NULL : ob->tls;
	set.tls_required = tls_required(ob, s->domain);
	set.tls_verify = ob->smarthost && ob->cfg->relay_smarthost_tls_verify;
	set.sni = s->host;
	if (ob->smarthost) {
		set.auth_user = ob->cfg->relay_smarthost_user;
		set.auth_password = ob->cfg->relay_smarthost_password;
	}
	set.connect_timeout = ob->cfg->relay_connect_timeout;
	set.command_timeout = ob->cfg->relay_command_timeout;
	s->st = SS_SMTP;
	s->sent_msgs = 0;
	s->c_closed = false;
	s->c = smtpc_connect(a, len, &set, &smtp_events, s);
}

static void
addr_found(void *arg, int status, const struct sockaddr_storage *addrs, size_t n)
{
	struct session *s = arg;

	free(s->addrs);
	s->addrs = NULL;
	s->n_addrs = s->addr_i = 0;
	if (status != 0 || n == 0) {
		s->last_code = 451;
		snprintf(s->last_text, sizeof(s->last_text), "4.4.3 No address for %s", s->host);
		s->mx_i++;
		session_next_host(s);
		return;
	}
	s->addrs = xcalloc(n, sizeof(*s->addrs));
	memcpy(s->addrs, addrs, n * sizeof(*addrs));
	s->n_addrs = n;
	session_connect_next(s);
}

/* Resolve the next MX host (or fail when there is none left). */
static void
session_next_host(struct session *s)
{
	struct sockaddr_storage ss;

	while (s->mx_i < s->n_mx && s->mx[s->mx_i].host[0] == '\0')
		s->mx_i++;
	if (s->mx_i >= s->n_mx) {
		session_fail_all(s, s->last_code != 0 ? s->last_code : 451,
		                 s->last_text[0] != '\0' ? s->last_text
		                                         : "4.4.1 No host reachable");
		return;
	}
	snprintf(s->host, sizeof(s->host), "%s", s->mx[s->mx_i].host);
	memset(&ss, 0, sizeof(ss));
	/* An address literal (a smarthost given by IP) needs no lookup. */
	if (inet_pton(AF_INET, s->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		addr_found(s, 0, &ss, 1);
		return;
	}
	if (inet_pton(AF_INET6, s->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		addr_found(s, 0, &ss, 1);
		return;
	}
	s->st = SS_ADDR;
	dns_lookup_addr(s->ob->dns, s->host, addr_found, s);
}

static void
mx_found(void *arg, int status, const struct dns_mx *mx, size_t n)
{
	struct session *s = arg;

	if (status == ROOST_ENOTFOUND) {
		session_fail_all(s, 550, "5.1.2 Domain not found");
		return;
	}
	if (status != 0) {
		session_fail_all(s, 451, "4.4.3 DNS lookup of the MX records failed");
		return;
	}
	if (n == 1 && mx[0].host[0] == '\0') {
		session_fail_all(s, 556, "5.1.10 The domain accepts no mail (null MX, RFC 7505)");
		return;
	}
	if (n == 0) {
		/* RFC 5321 5.1: no MX, the domain is its own mail host. */
		s->mx = xcalloc(1, sizeof(*s->mx));
		snprintf(s->mx[0].host, sizeof(s->mx[0].host), "%s", s->domain);
		s->n_mx = 1;
	} else {
		s->mx = xcalloc(n, sizeof(*s->mx));
		memcpy(s->mx, mx, n * sizeof(*mx));
		s->n_mx = n;
	}
	s->mx_i = 0;
	session_next_host(s);
}

static void
session_start(struct session *s)
{
	struct outbound *ob = s->ob;

	if (ob->smarthost) {
		s->mx = xcalloc(1, sizeof(*s->mx));
		snprintf(s->mx[0].host, sizeof(s->mx[0].host), "%s", ob->sh_host);
		s->n_mx = 1;
		session_next_host(s);
		return;
	}
	s->st = SS_MX;
	dns_lookup_mx(ob->dns, s->domain, mx_found, s);
}

/* ---- SMTP callbacks ---- */

static void
smtp_ready(void *arg)
{
	struct session *s = arg;
	struct work *w = s->works;

	if (w == NULL || s->sent_msgs >= s->ob->cfg->relay_max_per_connection) {
		smtpc_quit(s->c);
		return;
	}
	s->works = w->next;
	w->next = NULL;
	s->cur = w;
	s->sent_msgs++;
	w->started = now_ms();
	smtpc_send(s->c, &w->msg);
}

static void
smtp_done(void *arg, struct smtpc_msg *msg)
{
	struct session *s = arg;
	struct work *w = s->cur;

	if (w == NULL || &w->msg != msg)
		return;
	s->cur = NULL;
	work_finish(s, w, s->host, smtpc_peer(s->c), smtpc_tls_version(s->c));
	work_free(w);
}

static void
smtp_closed(void *arg, bool ready_seen, int code, const char *text)
{
	struct session *s = arg;

	/* Handled after smtpc_handle() returns (the client is still on the
	 * stack here): see session_after_io(). */
	s->c_closed = true;
	s->c_ready_seen = ready_seen;
	s->c_tls_failed = smtpc_tls_failed(s->c);
	s->c_code = code;
	snprintf(s->c_text, sizeof(s->c_text), "%s", text);
}

static void
session_after_io(struct session *s)
{
	if (!s->c_closed)
		return;
	s->c_closed = false;
	log_debug("event=relay-closed domain=%s host=%s ip=%s code=%d text=\"%s\"", s->domain,
	          s->host, smtpc_peer(s->c), s->c_code, s->c_text);
	smtpc_free(&s->c);
	if (!s->c_ready_seen && s->c_tls_failed && !s->plain && !tls_required(s->ob, s->domain)) {
		/* Opportunistic TLS that fails is no reason not to deliver:
		 * the same address once more, in plain text (as Postfix does). */
		log_info("event=relay-tls-fallback domain=%s host=%s reason=\"%s\"", s->domain,
		         s->host, s->c_text);
		s->plain = true;
		s->addr_i = s->addr_i > 0 ? s->addr_i - 1 : 0;
		session_connect_next(s);
		return;
	}
	s->plain = false;
	if (!s->c_ready_seen) {
		/* Never got to send: the next address or host. */
		s->last_code = s->c_code;
		snprintf(s->last_text, sizeof(s->last_text), "%s", s->c_text);
		if (s->c_code / 100 == 5 && s->c_code != 0) {
			/* A 5xx greeting is the host's final word for now; try
			 * the others, but remember it. */
		}
		session_connect_next(s);
		return;
	}
	if (s->works == NULL) {
		s->st = SS_DONE;
		return;
	}
	if (s->c_code == 221) {
		/* We quit after max_per_connection: reconnect for the rest. */
		s->addr_i = s->addr_i > 0 ? s->addr_i - 1 : 0;
		session_connect_next(s);
		return;
	}
	session_fail_all(s, s->c_code / 100 == 2 ? 451 : s->c_code, s->c_text);
}

/* ---- scheduling ---- */

/*
 * Where new work for domain goes: a session of that domain with nothing
 * waiting (it takes the work at once), else a new session while the limits
 * allow, else the least loaded session that has room. NULL with *can_start
 * telling whether a new session may be started.
 */
static struct session *
session_for(struct outbound *ob, const char *domain, bool *can_start)
{
	struct session *best = NULL;
	unsigned count = 0, best_queued = UINT_MAX;

	for (struct session *s = ob->sessions; s != NULL; s = s->next) {
		unsigned queued = 0;

		if (strcasecmp(s->domain, domain) != 0 || s->st == SS_DONE)
			continue;
		count++;
		for (struct work *w = s->works; w != NULL; w = w->next)
			queued++;
		if (queued + s->sent_msgs >= ob->cfg->relay_max_per_connection)
			continue;
		if (queued < best_queued) {
			best = s;
			best_queued = queued;
		}
	}
	*can_start = count < ob->cfg->relay_max_per_domain &&
	             ob->n_sessions < ob->cfg->relay_max_connections;
	if (best != NULL && (best_queued == 0 || !*can_start))
		return best;
	return NULL;
}

static void
schedule_entry(struct outbound *ob, struct queue_entry *e)
{
	bool *taken = xcalloc(e->n_rcpts + 1, sizeof(*taken));

	for (size_t i = 0; i < e->n_rcpts; i++) {
		const char *domain;
		struct session *s;
		struct work *w, **tail;
		bool can_start = false;
		int fd;

		if (taken[i] || e->rcpts[i].state != QUEUE_RCPT_PENDING)
			continue;
		domain = ob->smarthost ? "[smarthost]" : relay_domain(e->rcpts[i].addr);
		s = session_for(ob, domain, &can_start);
		if (s == NULL && !can_start)
			continue; /* at a limit: the next scan */
		if ((fd = open_msg(ob, e)) < 0) {
			log_error("event=queue-read queue_id=%s error=\"%s\"", e->id,
			          strerror(errno));
			break;
		}
		w = xcalloc(1, sizeof(*w));
		w->e = e;
		w->idx = xcalloc(e->n_rcpts, sizeof(*w->idx));
		w->rcpts = xcalloc(e->n_rcpts, sizeof(*w->rcpts));
		for (size_t j = i; j < e->n_rcpts; j++) {
			const char *d2 =
			    ob->smarthost ? "[smarthost]" : relay_domain(e->rcpts[j].addr);

			if (taken[j] || e->rcpts[j].state != QUEUE_RCPT_PENDING ||
			    strcasecmp(d2, domain) != 0)
				continue;
			taken[j] = true;
			w->idx[w->n] = j;
			w->rcpts[w->n].addr = e->rcpts[j].addr;
			w->rcpts[w->n].notify = e->rcpts[j].notify;
			w->rcpts[w->n].orcpt = e->rcpts[j].orcpt;
			w->n++;
		}
		w->msg.sender = e->sender;
		w->msg.envid = e->envid;
		w->msg.ret = e->ret;
		w->msg.smtputf8 = e->smtputf8;
		w->msg.body_8bit = e->body_8bit;
		w->msg.fd = fd;
		w->msg.size = e->size;
		w->msg.rcpts = w->rcpts;
		w->msg.n_rcpts = w->n;
		e->busy++;
		if (s == NULL) {
			s = xcalloc(1, sizeof(*s));
			s->ob = ob;
			snprintf(s->domain, sizeof(s->domain), "%s", domain);
			s->next = ob->sessions;
			ob->sessions = s;
			ob->n_sessions++;
			s->works = w;
			session_start(s);
		} else {
			for (tail = &s->works; *tail != NULL; tail = &(*tail)->next)
				;
			*tail = w;
		}
	}
	free(taken);
}

static void
schedule(struct outbound *ob)
{
	time_t now = time(NULL);
	struct queue_entry *next;

	for (struct queue_entry *e = ob->entries; e != NULL; e = next) {
		next = e->next;
		if (e->dead || e->held || e->busy > 0 || e->next_try > now)
			continue;
		schedule_entry(ob, e);
	}
}

/* ---- control socket ---- */

static struct queue_entry *
find_entry(struct outbound *ob, const char *id)
{
	for (struct queue_entry *e = ob->entries; e != NULL; e = e->next) {
		if (strcmp(e->id, id) == 0)
			return e;
	}
	return NULL;
}

static void
ctl_run(struct outbound *ob, char *line, char *reply, size_t len)
{
	char *arg = strchr(line, ' ');
	struct queue_entry *e = NULL;

	if (arg != NULL)
		*arg++ = '\0';
	if (arg != NULL && (e = find_entry(ob, arg)) == NULL) {
		snprintf(reply, len, "error no such queue entry\n");
		return;
	}
	if (strcmp(line, "flush") == 0) {
		for (struct queue_entry *x = ob->entries; x != NULL; x = x->next) {
			if (e == NULL || x == e) {
				x->next_try = 0;
				if (x->busy == 0)
					queue_entry_save(ob->q, x);
			}
		}
		ob->scan_now = true;
	} else if (e != NULL && strcmp(line, "hold") == 0) {
		e->held = true;
		queue_entry_save(ob->q, e);
	} else if (e != NULL && strcmp(line, "release") == 0) {
		e->held = false;
		e->next_try = 0;
		queue_entry_save(ob->q, e);
		ob->scan_now = true;
	} else if (e != NULL && strcmp(line, "delete") == 0) {
		e->dead = true;
		entry_settle(ob, e);
	} else {
		snprintf(reply, len, "error unknown command\n");
		return;
	}
	log_info("event=queue-control command=%s queue_id=%s", line, arg != NULL ? arg : "-");
	snprintf(reply, len, "ok\n");
}

static void
ctl_accept(struct outbound *ob)
{
	int fd = accept4(ob->ctl_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CTL; i++) {
		if (ob->ctl[i].fd < 0) {
			ob->ctl[i].fd = fd;
			ob->ctl[i].len = 0;
			ob->ctl[i].deadline = now_ms() + 5000;
			return;
		}
	}
	close(fd); /* busy: the client sees the close and retries */
}

static void
ctl_read(struct outbound *ob, struct ctl_client *cc)
{
	char reply[128];
	ssize_t r = read(cc->fd, cc->line + cc->len, sizeof(cc->line) - 1 - cc->len);
	char *nl;

	if (r < 0 && errno == EAGAIN)
		return;
	if (r <= 0) {
		close(cc->fd);
		cc->fd = -1;
		return;
	}
	cc->len += (size_t)r;
	cc->line[cc->len] = '\0';
	nl = strchr(cc->line, '\n');
	if (nl == NULL && cc->len < sizeof(cc->line) - 1)
		return;
	if (nl != NULL)
		*nl = '\0';
	ctl_run(ob, cc->line, reply, sizeof(reply));
	if (write(cc->fd, reply, strlen(reply)) < 0) {
		/* The client went away: nothing to tell it. */
	}
	close(cc->fd);
	cc->fd = -1;
}

static int
ctl_listen(struct outbound *ob)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", queue_dir(ob->q)) >=
	    sizeof(sa.sun_path)) {
		log_warn("event=queue-control status=disabled reason=\"socket path too long\"");
		return -1;
	}
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
		log_warn("event=queue-control status=disabled error=\"%s\"", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
outbound_control(const char *dir, const char *line, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char reply[256];
	size_t got = 0;
	int fd;

	snprintf(err, errlen, "%s", "");
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", dir) >=
	    sizeof(sa.sun_path))
		return ROOST_ENOTFOUND;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ROOST_EIO;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return ROOST_ENOTFOUND;
	}
	{
		struct timeval tv = {10, 0};

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return ROOST_EIO;
	}
	while (got < sizeof(reply) - 1) {
		ssize_t r = read(fd, reply + got, sizeof(reply) - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	if (strcmp(reply, "ok") == 0)
		return 0;
	snprintf(err, errlen, "%s",
	         strncmp(reply, "error ", 6) == 0 ? reply + 6 : "no answer from the server");
	return ROOST_EINVAL;
}

/* ---- the loop ---- */

static void
take_new(struct outbound *ob)
{
	struct queue_entry *e = queue_take_new(ob->q), *next;

	for (; e != NULL; e = next) {
		next = e->next;
		e->next = ob->entries;
		ob->entries = e;
		ob->scan_now = true;
	}
}

static void
reap_sessions(struct outbound *ob)
{
	struct session **pp = &ob->sessions;

	while (*pp != NULL) {
		struct session *s = *pp;

		if (s->st != SS_DONE || s->c != NULL || s->cur != NULL) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		ob->n_sessions--;
		session_fail_all(s, 451, "4.4.0 Session ended");
		free(s->mx);
		free(s->addrs);
		free(s);
		ob->scan_now = true; /* a slot is free */
	}
}

static void *
engine_main(void *arg)
{
	struct outbound *ob = arg;
	size_t cap = 64;
	struct pollfd *pfd = xcalloc(cap, sizeof(*pfd));
	struct session **who = xcalloc(cap, sizeof(*who));

	ob->next_scan = 0;
	while (!atomic_load(&ob->stop)) {
		int64_t now = now_ms(), deadline;
		size_t n = 0, dns_at, dns_n, ctl_at, sess_at;
		int timeout;

		take_new(ob);
		if (ob->scan_now || now >= ob->next_scan) {
			ob->scan_now = false;
			schedule(ob);
			ob->next_scan = now + SCAN_MS;
		}
		reap_sessions(ob);
		if (cap < 8 + MAX_CTL + 16 + ob->n_sessions) {
			cap = 8 + MAX_CTL + 16 + ob->n_sessions * 2;
			pfd = xreallocarray(pfd, cap, sizeof(*pfd));
			who = xreallocarray(who, cap, sizeof(*who));
		}
		pfd[n++] = (struct pollfd){.fd = ob->wake_fd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = ob->ctl_fd, .events = POLLIN};
		ctl_at = n;
		deadline = ob->scan_now ? now : ob->next_scan;
		for (int i = 0; i < MAX_CTL; i++) {
			pfd[n++] = (struct pollfd){.fd = ob->ctl[i].fd, .events = POLLIN};
			if (ob->ctl[i].fd >= 0 && ob->ctl[i].deadline < deadline)
				deadline = ob->ctl[i].deadline;
		}
		dns_at = n;
		dns_n = dns_pollfds(ob->dns, pfd + n, 16);
		n += dns_n;
		sess_at = n;
		for (struct session *s = ob->sessions; s != NULL; s = s->next) {
			if (s->c == NULL)
				continue;
			who[n] = s;
			smtpc_pollfd(s->c, &pfd[n]);
			if (smtpc_deadline(s->c) < deadline)
				deadline = smtpc_deadline(s->c);
			n++;
		}
		timeout = deadline <= now          ? 0
		          : deadline - now > 60000 ? 60000
		                                   : (int)(deadline - now);
		timeout = dns_timeout_ms(ob->dns, timeout);
		if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
			log_error("event=outbound-poll error=\"%s\"", strerror(errno));
			break;
		}
		now = now_ms();
		if (pfd[0].revents & POLLIN) {
			uint64_t v;

			if (read(ob->wake_fd, &v, sizeof(v)) < 0) {
				/* Nothing to read after all. */
			}
		}
		if (ob->ctl_fd >= 0 && (pfd[1].revents & POLLIN))
			ctl_accept(ob);
		for (int i = 0; i < MAX_CTL; i++) {
			struct ctl_client *cc = &ob->ctl[i];

			if (pfd[ctl_at + (size_t)i].fd < 0 || cc->fd != pfd[ctl_at + (size_t)i].fd)
				continue;
			if (pfd[ctl_at + (size_t)i].revents != 0)
				ctl_read(ob, cc);
			else if (now >= cc->deadline) {
				close(cc->fd);
				cc->fd = -1;
			}
		}
		dns_process(ob->dns, pfd + dns_at, dns_n);
		for (size_t i = sess_at; i < n; i++) {
			struct session *s = who[i];

			if (s->c == NULL)
				continue;
			if (pfd[i].revents != 0 || now >= smtpc_deadline(s->c))
				smtpc_handle(s->c, pfd[i].revents, now);
			session_after_io(s);
		}
		queue_remove_batch(ob->q, ob->doomed, ob->n_doomed);
		ob->n_doomed = 0;
	}
	queue_remove_batch(ob->q, ob->doomed, ob->n_doomed);
	ob->n_doomed = 0;
	free(pfd);
	free(who);
	return NULL;
}

/* ---- start, stop ---- */

static int
parse_smarthost(struct outbound *ob, const char *spec)
{
	const char *colon;
	char *end;
	unsigned long port = 25;
	size_t hl;

	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');

		if (rb == NULL)
			return ROOST_ECONFIG;
		hl = (size_t)(rb - spec - 1);
		if (hl == 0 || hl >= sizeof(ob->sh_host))
			return ROOST_ECONFIG;
		memcpy(ob->sh_host, spec + 1, hl);
		ob->sh_host[hl] = '\0';
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = strrchr(spec, ':');
		hl = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
		if (hl == 0 || hl >= sizeof(ob->sh_host))
			return ROOST_ECONFIG;
		memcpy(ob->sh_host, spec, hl);
		ob->sh_host[hl] = '\0';
	}
	if (colon != NULL) {
		port = strtoul(colon + 1, &end, 10);
		if (*end != '\0' || port == 0 || port > 65535)
			return ROOST_ECONFIG;
	}
	ob->sh_port = (uint16_t)port;
	return 0;
}

int
outbound_start(const struct roost_services *sv, struct outbound **ob_r)
{
	struct outbound *ob = xcalloc(1, sizeof(*ob));
	int err;

	ob->sv = sv;
	ob->cfg = sv->cfg;
	ob->q = sv->queue;
	ob->wake_fd = -1;
	ob->ctl_fd = -1;
	for (int i = 0; i < MAX_CTL; i++)
		ob->ctl[i].fd = -1;
	if (ob->cfg->relay_smarthost[0] != '\0') {
		if (parse_smarthost(ob, ob->cfg->relay_smarthost) != 0) {
			log_error(
			    "event=start status=failed stage=relay error=\"[relay] smarthost: "
			    "bad host:port %s\"",
			    ob->cfg->relay_smarthost);
			err = ROOST_ECONFIG;
			goto fail;
		}
		ob->smarthost = true;
	}
	if ((err = dns_create(ob->cfg, &ob->dns)) != 0)
		goto fail;
	ob->tls = SSL_CTX_new(TLS_client_method());
	if (ob->tls == NULL) {
		err = ROOST_EIO;
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ob->tls, TLS1_2_VERSION);
	SSL_CTX_set_default_verify_paths(ob->tls);
	SSL_CTX_set_verify(ob->tls, SSL_VERIFY_NONE, NULL);
	ob->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ob->wake_fd < 0) {
		err = ROOST_EIO;
		goto fail;
	}
	ob->ctl_fd = ctl_listen(ob);
	queue_set_notify(ob->q, wake, ob);
	if (pthread_create(&ob->thread, NULL, engine_main, ob) != 0) {
		queue_set_notify(ob->q, NULL, NULL);
		err = ROOST_EIO;
		goto fail;
	}
	log_info("event=outbound-start mode=%s%s%s", ob->smarthost ? "smarthost " : "mx",
	         ob->smarthost ? "host=" : "", ob->smarthost ? ob->cfg->relay_smarthost : "");
	*ob_r = ob;
	return 0;
fail:
	if (ob->ctl_fd >= 0)
		close(ob->ctl_fd);
	if (ob->wake_fd >= 0)
		close(ob->wake_fd);
	SSL_CTX_free(ob->tls);
	dns_free(&ob->dns);
	free(ob);
	return err;
}

void
outbound_stop(struct outbound **obp)
{
	struct outbound *ob = *obp;
	char path[PATH_MAX];

	if (ob == NULL)
		return;
	queue_set_notify(ob->q, NULL, NULL);
	atomic_store(&ob->stop, true);
	wake(ob);
	pthread_join(ob->thread, NULL);
	/* Connections in flight are dropped; their recipients stay pending
	 * on disk and go out after the next start. */
	dns_free(&ob->dns);
	while (ob->sessions != NULL) {
		struct session *s = ob->sessions;

		ob->sessions = s->next;
		smtpc_free(&s->c);
		work_free(s->cur);
		while (s->works != NULL) {
			struct work *w = s->works;

			s->works = w->next;
			work_free(w);
		}
		free(s->mx);
		free(s->addrs);
		free(s);
	}
	while (ob->entries != NULL) {
		struct queue_entry *e = ob->entries;

		ob->entries = e->next;
		queue_entry_free(&e);
	}
	for (int i = 0; i < MAX_CTL; i++) {
		if (ob->ctl[i].fd >= 0)
			close(ob->ctl[i].fd);
	}
	if (ob->ctl_fd >= 0) {
		close(ob->ctl_fd);
		snprintf(path, sizeof(path), "%s/ctl.sock", queue_dir(ob->q));
		unlink(path);
	}
	close(ob->wake_fd);
	SSL_CTX_free(ob->tls);
	free(ob->doomed);
	free(ob);
	*obp = NULL;
}
