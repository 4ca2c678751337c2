/*
 * The outbound sessions, one per destination domain: MX lookup, address
 * resolution, connecting (TLS as the policy demands), the SMTP client's
 * callbacks, and the scheduling of due entries into sessions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
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

#include "outbound_impl.h"

static void session_next_host(struct session *s);
static void smtp_ready(void *arg);
static void smtp_done(void *arg, struct smtpc_msg *msg);
static void smtp_closed(void *arg, bool ready_seen, int code, const char *text);

static const struct smtpc_events smtp_events = {
    .ready = smtp_ready,
    .done = smtp_done,
    .closed = smtp_closed,
};

static const char *const policy_names[] = {"none", "may", "encrypt", "verify"};

int
outbound_policy_parse(const char *word, enum tls_policy *p_r)
{
	for (size_t i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++) {
		if (strcasecmp(word, policy_names[i]) == 0) {
			*p_r = (enum tls_policy)i;
			return 0;
		}
	}
	return ROOST_EINVAL;
}

/* An entry of [relay] tls_policies, "domain:policy", split: false when it
 * has no colon, an empty domain or an unknown policy. */
static bool
policy_entry(const char *entry, const char **domain_r, size_t *dlen_r, enum tls_policy *p_r)
{
	const char *colon = strrchr(entry, ':');

	if (colon == NULL || colon == entry)
		return false;
	*domain_r = entry;
	*dlen_r = (size_t)(colon - entry);
	return outbound_policy_parse(colon + 1, p_r) == 0;
}

int
outbound_policy_init(struct outbound *ob)
{
	const char *d;
	size_t dl;
	enum tls_policy p;

	if (outbound_policy_parse(ob->cfg->relay_tls_policy, &ob->policy) != 0) {
		log_error("event=start status=failed stage=relay error=\"[relay] tls_policy: %s is "
		          "not none, may, encrypt or verify\"",
		          ob->cfg->relay_tls_policy);
		return ROOST_ECONFIG;
	}
	for (char **e = ob->cfg->relay_tls_policies; e != NULL && *e != NULL; e++) {
		if (!policy_entry(*e, &d, &dl, &p)) {
			log_error("event=start status=failed stage=relay error=\"[relay] "
			          "tls_policies: %s is not domain:none|may|encrypt|verify\"",
			          *e);
			return ROOST_ECONFIG;
		}
	}
	return 0;
}

/*
 * The TLS a session to domain demands: [relay] tls_policies for the domain
 * (an entry ".example.org" also covers its subdomains), else tls_policy;
 * at least encrypt for the domains of tls_required and for a smarthost
 * (verify with smarthost_tls_verify). A REQUIRETLS message demands verify;
 * "TLS-Required: No" lowers any policy but the smarthost's to may.
 */
static enum tls_policy
session_policy(const struct outbound *ob, const char *domain, unsigned flags)
{
	enum tls_policy pol = ob->policy;
	size_t n = strlen(domain);

	if (ob->smarthost) {
		pol = ob->cfg->relay_smarthost_tls_verify ? TLSP_VERIFY : TLSP_ENCRYPT;
		return (flags & SF_REQUIRETLS) ? TLSP_VERIFY : pol;
	}
	for (char **e = ob->cfg->relay_tls_policies; e != NULL && *e != NULL; e++) {
		const char *d;
		size_t dl;
		enum tls_policy p;

		if (!policy_entry(*e, &d, &dl, &p))
			continue;
		if ((dl == n && strncasecmp(d, domain, n) == 0) ||
		    (d[0] == '.' && dl < n && strncasecmp(d, domain + n - dl, dl) == 0)) {
			pol = p;
			break;
		}
	}
	for (char **p = ob->cfg->relay_tls_required; p != NULL && *p != NULL; p++) {
		if (strcasecmp(*p, domain) == 0 && pol < TLSP_ENCRYPT)
			pol = TLSP_ENCRYPT;
	}
	if ((flags & SF_TLS_OPTIONAL) && pol > TLSP_MAY)
		pol = TLSP_MAY;
	if (flags & SF_REQUIRETLS)
		pol = TLSP_VERIFY;
	return pol;
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
	set.tls = s->plain || s->policy == TLSP_NONE ? NULL : ob->tls;
	set.tls_required = s->policy >= TLSP_ENCRYPT;
	set.tls_verify = s->policy >= TLSP_VERIFY;
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

	for (; s->mx_i < s->n_mx; s->mx_i++) {
		const char *h = s->mx[s->mx_i].host;

		if (h[0] == '\0')
			continue;
		if (s->sts == NULL || mta_sts_mx_match(s->sts, h))
			break;
		/* RFC 8461 4.1: a host the policy does not name is skipped
		 * (enforce) or reported (testing). */
		log_info("event=mta_sts_report domain=%s mode=%s host=%s problem=mx-mismatch",
		         s->domain, mta_sts_mode_name(s->sts->mode), h);
		if (s->sts->mode != MTA_STS_ENFORCE)
			break;
		s->sts_skipped = true;
	}
	if (s->mx_i >= s->n_mx) {
		if (s->sts_skipped && s->last_code == 0) {
			outbound_session_fail_all(s, 451,
			                          "4.7.5 MTA-STS: no MX host matches the domain's "
			                          "policy");
			return;
		}
		if ((s->flags & SF_REQUIRETLS) && s->tls_trouble) {
			/* RFC 8689 4.2.1: no host could take it safely. */
			outbound_session_fail_all(s, 550,
			                          "5.7.30 REQUIRETLS support required: no MX host "
			                          "with verified TLS");
			return;
		}
		outbound_session_fail_all(s, s->last_code != 0 ? s->last_code : 451,
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
		outbound_session_fail_all(s, 550, "5.1.2 Domain not found");
		return;
	}
	if (status != 0) {
		outbound_session_fail_all(s, 451, "4.4.3 DNS lookup of the MX records failed");
		return;
	}
	if (n == 1 && mx[0].host[0] == '\0') {
		outbound_session_fail_all(s, 556,
		                          "5.1.10 The domain accepts no mail (null MX, RFC 7505)");
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
	outbound_sts_begin(s);
}

void
outbound_session_mx(struct session *s)
{
	s->st = SS_MX;
	dns_lookup_mx(s->ob->dns, s->domain, mx_found, s);
}

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
	if (s->sent_msgs == 0 && s->sts != NULL && s->sts->mode == MTA_STS_TESTING &&
	    strcmp(smtpc_tls_status(s->c), "verified") != 0)
		log_info("event=mta_sts_report domain=%s mode=testing host=%s problem=tls-%s",
		         s->domain, s->host, smtpc_tls_status(s->c));
	s->sent_msgs++;
	w->started = outbound_now_ms();
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
	outbound_work_finish(s, w, s->host, smtpc_peer(s->c), smtpc_tls_status(s->c),
	                     smtpc_tls_version(s->c));
	outbound_work_free(w);
}

static void
smtp_closed(void *arg, bool ready_seen, int code, const char *text)
{
	struct session *s = arg;

	/* Handled after smtpc_handle() returns (the client is still on the
	 * stack here): see outbound_session_after_io(). */
	s->c_closed = true;
	s->c_ready_seen = ready_seen;
	s->c_tls_failed = smtpc_tls_failed(s->c);
	if (!ready_seen && smtpc_tls_policy_failed(s->c))
		s->tls_trouble = true;
	s->c_code = code;
	snprintf(s->c_text, sizeof(s->c_text), "%s", text);
}

void
outbound_session_after_io(struct session *s)
{
	if (!s->c_closed)
		return;
	s->c_closed = false;
	log_debug("event=relay_closed domain=%s host=%s ip=%s code=%d text=\"%s\"", s->domain,
	          s->host, smtpc_peer(s->c), s->c_code, s->c_text);
	smtpc_free(&s->c);
	if (!s->c_ready_seen && s->c_tls_failed && !s->plain && s->policy < TLSP_ENCRYPT) {
		/* Opportunistic TLS that fails is no reason not to deliver:
		 * the same address once more, in plain text (as Postfix does). */
		log_info("event=relay_tls_fallback domain=%s host=%s reason=\"%s\"", s->domain,
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
	outbound_session_fail_all(s, s->c_code / 100 == 2 ? 451 : s->c_code, s->c_text);
}

/*
 * Where new work for domain goes: a session of that domain with nothing
 * waiting (it takes the work at once), else a new session while the limits
 * allow, else the least loaded session that has room. NULL with *can_start
 * telling whether a new session may be started.
 */
static struct session *
session_for(struct outbound *ob, const char *domain, unsigned flags, bool *can_start)
{
	struct session *best = NULL;
	unsigned count = 0, best_queued = UINT_MAX;

	for (struct session *s = ob->sessions; s != NULL; s = s->next) {
		unsigned queued = 0;

		if (strcasecmp(s->domain, domain) != 0)
			continue;
		if (s->st != SS_DONE)
			count++;
		if (s->st == SS_DONE || s->flags != flags)
			continue;
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

/*
 * Hand e's pending recipients to sessions, one work per domain. 0 when some
 * (maybe not all) went, 1 when a connection limit kept all of them back,
 * -1 when the message cannot be read.
 */
static int
schedule_entry(struct outbound *ob, struct queue_entry *e)
{
	int ret = 1;
	bool *taken = xcalloc(e->n_rcpts + 1, sizeof(*taken));
	unsigned flags =
	    (e->requiretls ? SF_REQUIRETLS : 0) | (e->tls_optional ? SF_TLS_OPTIONAL : 0);

	for (size_t i = 0; i < e->n_rcpts; i++) {
		const char *domain;
		struct session *s;
		struct work *w, **tail;
		bool can_start = false;
		int fd;

		if (taken[i] || e->rcpts[i].state != QUEUE_RCPT_PENDING)
			continue;
		domain = ob->smarthost ? "[smarthost]" : relay_domain(e->rcpts[i].addr);
		s = session_for(ob, domain, flags, &can_start);
		if (s == NULL && !can_start)
			continue; /* at a limit: the next scan */
		if ((fd = outbound_open_msg(ob, e)) < 0) {
			log_error("event=queue_read queue_id=%s error=\"%s\"", e->id,
			          strerror(errno));
			ret = e->busy > 0 ? 0 : -1;
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
		w->msg.binarymime = e->binarymime;
		w->msg.requiretls = e->requiretls;
		w->msg.fd = fd;
		w->msg.size = e->size;
		w->msg.rcpts = w->rcpts;
		w->msg.n_rcpts = w->n;
		e->busy++;
		ret = 0;
		if (s == NULL) {
			s = xcalloc(1, sizeof(*s));
			s->ob = ob;
			snprintf(s->domain, sizeof(s->domain), "%s", domain);
			s->flags = flags;
			s->policy = session_policy(ob, domain, flags);
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
	return ret;
}

int64_t
outbound_schedule(struct outbound *ob)
{
	int64_t now = time(NULL);
	struct heap_node *x;

	if (ob->scan_now) {
		/* A session ended: what a limit held back may go now. */
		ob->scan_now = false;
		while ((x = heap_pop(&ob->blocked)) != NULL)
			heap_set(&ob->due, x, x->key);
	}
	while ((x = heap_peek(&ob->due)) != NULL && x->key <= now) {
		struct queue_entry *e =
		    (struct queue_entry *)((char *)x - offsetof(struct queue_entry, due));

		heap_remove(&ob->due, x);
		if (e->held) {
			outbound_entry_expire(ob, e);
			continue;
		}
		switch (schedule_entry(ob, e)) {
		case 0:
			break; /* busy now: back in the index when its works end */
		case 1:
			heap_set(&ob->blocked, &e->due, e->due.key);
			break;
		default:
			/* The message file is unreadable (logged): look again
			 * in a minute rather than at every turn of the loop. */
			heap_set(&ob->due, &e->due, now + 60);
			break;
		}
	}
	x = heap_peek(&ob->due);
	return x != NULL ? x->key : INT64_MAX;
}
