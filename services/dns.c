/* c-ares behind roost/dns.h: MX, address and TXT lookups on the engine's poll loop. */
#include <arpa/inet.h>
#include <ares.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/dns.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

struct dns {
	ares_channel ch;
	bool destroying;
};

struct query {
	struct dns *dns;
	dns_mx_fn *mx_fn;
	dns_addr_fn *addr_fn;
	dns_txt_fn *txt_fn;
	void *arg;
	char name[DNS_MAX_NAME];
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status;

static void
library_init(void)
{
	init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static int
status_of(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
		return 0;
	case ARES_ENOTFOUND:
		return ROOST_ENOTFOUND;
	default:
		return ROOST_ETEMP;
	}
}

/* "a.b.c.d[:port]" or "[v6][:port]" into c-ares's csv form. */
static int
servers_csv(char *const *servers, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (char *const *p = servers; p != NULL && *p != NULL; p++) {
		int n = snprintf(out + o, len - o, "%s%s", o > 0 ? "," : "", *p);

		if (n < 0 || (size_t)n >= len - o)
			return ROOST_ECONFIG;
		o += (size_t)n;
	}
	return 0;
}

int
dns_create(const struct roost_config *cfg, struct dns **dns_r)
{
	struct dns *d = xcalloc(1, sizeof(*d));
	struct ares_options opts;
	char csv[2048];
	int rc;

	pthread_once(&init_once, library_init);
	if (init_status != ARES_SUCCESS) {
		free(d);
		return ROOST_EIO;
	}
	memset(&opts, 0, sizeof(opts));
	opts.timeout = (int)(cfg->dns_timeout * 1000 / 3);
	if (opts.timeout < 500)
		opts.timeout = 500;
	opts.tries = 3;
	rc = ares_init_options(&d->ch, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS) {
		log_error("event=dns_init error=\"%s\"", ares_strerror(rc));
		free(d);
		return ROOST_EIO;
	}
	if (cfg->dns_servers != NULL && cfg->dns_servers[0] != NULL) {
		if (servers_csv(cfg->dns_servers, csv, sizeof(csv)) != 0 ||
		    (rc = ares_set_servers_ports_csv(d->ch, csv)) != ARES_SUCCESS) {
			log_error("event=dns_init servers=\"%s\" error=\"bad [dns] servers\"", csv);
			ares_destroy(d->ch);
			free(d);
			return ROOST_ECONFIG;
		}
	}
	*dns_r = d;
	return 0;
}

void
dns_free(struct dns **dp)
{
	struct dns *d = *dp;

	if (d == NULL)
		return;
	d->destroying = true;
	ares_destroy(d->ch); /* pending callbacks run with ARES_EDESTRUCTION */
	free(d);
	*dp = NULL;
}

static int
cmp_mx(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

static void
mx_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct query *q = arg;
	struct ares_mx_reply *reply = NULL;
	struct dns_mx *mx = NULL;
	size_t n = 0;

	(void)timeouts;
	if (q->dns->destroying || status == ARES_EDESTRUCTION) {
		free(q);
		return;
	}
	if (status == ARES_SUCCESS)
		status = ares_parse_mx_reply(abuf, alen, &reply);
	if (status == ARES_ENODATA) {
		/* The name exists without MX: implicit MX. */
		q->mx_fn(q->arg, 0, NULL, 0);
		free(q);
		return;
	}
	if (status != ARES_SUCCESS) {
		log_debug("event=dns type=MX name=%s error=\"%s\"", q->name, ares_strerror(status));
		q->mx_fn(q->arg, status_of(status), NULL, 0);
		free(q);
		return;
	}
	for (struct ares_mx_reply *r = reply; r != NULL; r = r->next)
		n++;
	mx = xcalloc(n + 1, sizeof(*mx));
	n = 0;
	for (struct ares_mx_reply *r = reply; r != NULL; r = r->next, n++) {
		const char *h = r->host != NULL ? r->host : "";

		mx[n].pref = r->priority;
		snprintf(mx[n].host, sizeof(mx[n].host), "%s", strcmp(h, ".") == 0 ? "" : h);
	}
	ares_free_data(reply);
	if (n > 1)
		qsort(mx, n, sizeof(*mx), cmp_mx);
	q->mx_fn(q->arg, 0, mx, n);
	free(mx);
	free(q);
}

void
dns_lookup_mx(struct dns *d, const char *domain, dns_mx_fn *fn, void *arg)
{
	struct query *q = xcalloc(1, sizeof(*q));

	q->dns = d;
	q->mx_fn = fn;
	q->arg = arg;
	snprintf(q->name, sizeof(q->name), "%s", domain);
	ares_query(d->ch, domain, 1 /* C_IN */, 15 /* T_MX */, mx_done, q);
}

static void
addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct query *q = arg;
	struct sockaddr_storage *v = NULL;
	size_t n = 0, k = 0;

	(void)timeouts;
	if (q->dns->destroying || status == ARES_EDESTRUCTION) {
		if (res != NULL)
			ares_freeaddrinfo(res);
		free(q);
		return;
	}
	if (status != ARES_SUCCESS || res == NULL) {
		log_debug("event=dns type=A/AAAA name=%s error=\"%s\"", q->name,
		          ares_strerror(status));
		q->addr_fn(q->arg, status == ARES_ENODATA ? ROOST_ENOTFOUND : status_of(status),
		           NULL, 0);
		if (res != NULL)
			ares_freeaddrinfo(res);
		free(q);
		return;
	}
	for (struct ares_addrinfo_node *nd = res->nodes; nd != NULL; nd = nd->ai_next)
		n++;
	v = xcalloc(n + 1, sizeof(*v));
	/* IPv6 first, then IPv4 (RFC 6724's preference for a dual-stack host). */
	for (int pass = 0; pass < 2; pass++) {
		for (struct ares_addrinfo_node *nd = res->nodes; nd != NULL; nd = nd->ai_next) {
			int want = pass == 0 ? AF_INET6 : AF_INET;

			if (nd->ai_family != want || nd->ai_addrlen > sizeof(v[k]))
				continue;
			memcpy(&v[k], nd->ai_addr, nd->ai_addrlen);
			k++;
		}
	}
	ares_freeaddrinfo(res);
	q->addr_fn(q->arg, k > 0 ? 0 : ROOST_ENOTFOUND, v, k);
	free(v);
	free(q);
}

void
dns_lookup_addr(struct dns *d, const char *host, dns_addr_fn *fn, void *arg)
{
	struct query *q = xcalloc(1, sizeof(*q));
	struct ares_addrinfo_hints hints;

	q->dns = d;
	q->addr_fn = fn;
	q->arg = arg;
	snprintf(q->name, sizeof(q->name), "%s", host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(d->ch, host, NULL, &hints, addr_done, q);
}

static void
txt_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct query *q = arg;
	struct ares_txt_ext *reply = NULL;
	char *v[DNS_MAX_TXT];
	size_t n = 0, len = 0;

	(void)timeouts;
	if (q->dns->destroying || status == ARES_EDESTRUCTION) {
		free(q);
		return;
	}
	if (status == ARES_SUCCESS)
		status = ares_parse_txt_reply_ext(abuf, alen, &reply);
	if (status == ARES_ENODATA || status == ARES_ENOTFOUND) {
		q->txt_fn(q->arg, status == ARES_ENODATA ? 0 : ROOST_ENOTFOUND, NULL, 0);
		free(q);
		return;
	}
	if (status != ARES_SUCCESS) {
		log_debug("event=dns type=TXT name=%s error=\"%s\"", q->name,
		          ares_strerror(status));
		q->txt_fn(q->arg, status_of(status), NULL, 0);
		free(q);
		return;
	}
	/* A record may come in several strings (255 bytes each at most):
	 * record_start marks the first of each. */
	for (struct ares_txt_ext *r = reply; r != NULL; r = r->next) {
		size_t take;

		if (r->record_start || n == 0) {
			if (n == DNS_MAX_TXT)
				break;
			v[n++] = xcalloc(1, DNS_MAX_TXT_LEN + 1);
			len = 0;
		}
		take = r->length < DNS_MAX_TXT_LEN - len ? r->length : DNS_MAX_TXT_LEN - len;
		if (take > 0)
			memcpy(v[n - 1] + len, r->txt, take);
		len += take;
	}
	ares_free_data(reply);
	q->txt_fn(q->arg, 0, v, n);
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(q);
}

void
dns_lookup_txt(struct dns *d, const char *name, dns_txt_fn *fn, void *arg)
{
	struct query *q = xcalloc(1, sizeof(*q));

	q->dns = d;
	q->txt_fn = fn;
	q->arg = arg;
	snprintf(q->name, sizeof(q->name), "%s", name);
	ares_query(d->ch, name, 1 /* C_IN */, 16 /* T_TXT */, txt_done, q);
}

size_t
dns_pollfds(struct dns *d, struct pollfd *pfd, size_t max)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	/* c-ares's ARES_GETSOCK_* macros shift a signed 1 into the sign bit
	 * for the last socket: test the bits unsigned. */
	unsigned bits = (unsigned)ares_getsock(d->ch, socks, ARES_GETSOCK_MAXNUM);
	size_t n = 0;

	for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
		short ev = 0;

		if (bits & (1u << i))
			ev |= POLLIN;
		if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
			ev |= POLLOUT;
		if (ev == 0)
			continue;
		pfd[n].fd = socks[i];
		pfd[n].events = ev;
		pfd[n].revents = 0;
		n++;
	}
	return n;
}

void
dns_process(struct dns *d, const struct pollfd *pfd, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (pfd[i].revents == 0)
			continue;
		ares_process_fd(d->ch,
		                (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd
		                                                                : ARES_SOCKET_BAD,
		                (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD);
	}
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
}

int
dns_timeout_ms(struct dns *d, int max_ms)
{
	struct timeval maxtv = {max_ms / 1000, (max_ms % 1000) * 1000}, tv, *t;
	long ms;

	t = ares_timeout(d->ch, &maxtv, &tv);
	if (t == NULL)
		return max_ms;
	ms = t->tv_sec * 1000 + (t->tv_usec + 999) / 1000;
	return ms > max_ms ? max_ms : (int)ms;
}
