/*
 * MTA-STS (RFC 8461) in the delivery engine: discovery through the
 * _mta-sts TXT record (the engine's own resolver), the policy file fetched
 * over HTTPS by a thread of its own (the HTTP client blocks: the engine's
 * loop must never wait on a peer), and a cache of policies per domain
 * kept for their max_age.
 *
 * A session to a domain asks here before its MX lookup. A fresh cached
 * policy (or the cached knowledge that the domain has none) answers at
 * once. Otherwise the TXT record is looked up: no valid STSv1 record means
 * no policy; a record means a fetch, unless the cache holds a policy of
 * that id. Every session of the domain waits for the one fetch in flight
 * and goes on when outbound_sts_collect() hands out its result. A failed
 * fetch or an invalid policy file counts as no policy (logged), remembered
 * for NEG_TTL seconds so a broken policy server costs one request per
 * period, not one per message.
 *
 * Threads: the cache and the sessions are the engine thread's; the fetch
 * thread sees only the jobs, passed under mu in both directions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/dns.h"
#include "roost/error.h"
#include "roost/http_client.h"
#include "roost/log.h"
#include "roost/mta_sts.h"
#include "roost/xalloc.h"

#include "outbound_impl.h"

#define NEG_TTL 300         /* seconds "no policy" is remembered */
#define MAX_CACHE 10000     /* domains in the cache */
#define FETCH_TIMEOUT 20000 /* ms for the whole HTTPS request */

struct sts_entry {
	char domain[DNS_MAX_NAME];
	char id[MTA_STS_ID_LEN];
	bool have;     /* a policy (else the domain has none, for now) */
	bool fetching; /* a job is out for it: sessions wait */
	int64_t expires;
	struct mta_sts_policy pol;
	struct sts_entry *next;
};

struct sts_job {
	char domain[DNS_MAX_NAME];
	char id[MTA_STS_ID_LEN];
	/* results */
	int rc;
	char why[160];
	struct mta_sts_policy pol;
	struct sts_job *next;
};

struct outbound_sts {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;                   /* under mu */
	struct sts_job *todo, *done; /* under mu */
	struct sts_entry *cache;     /* engine thread */
	size_t n_cache;
};

static struct sts_entry *
cache_find(struct outbound_sts *st, const char *domain)
{
	for (struct sts_entry *e = st->cache; e != NULL; e = e->next) {
		if (strcasecmp(e->domain, domain) == 0)
			return e;
	}
	return NULL;
}

static struct sts_entry *
cache_add(struct outbound_sts *st, const char *domain)
{
	struct sts_entry *e;

	if (st->n_cache >= MAX_CACHE) {
		/* Make room: the entry that expires first, not being fetched. */
		struct sts_entry **victim = NULL;

		for (struct sts_entry **pp = &st->cache; *pp != NULL; pp = &(*pp)->next) {
			if (!(*pp)->fetching &&
			    (victim == NULL || (*pp)->expires < (*victim)->expires))
				victim = pp;
		}
		if (victim != NULL) {
			e = *victim;
			*victim = e->next;
			free(e);
			st->n_cache--;
		}
	}
	e = xcalloc(1, sizeof(*e));
	snprintf(e->domain, sizeof(e->domain), "%s", domain);
	e->next = st->cache;
	st->cache = e;
	st->n_cache++;
	return e;
}

/* The fetch thread: one job at a time, each bounded by FETCH_TIMEOUT. */
static void
fetch(struct outbound *ob, struct sts_job *j)
{
	struct httpc_opts opts = {0};
	struct httpc_response resp = {0};
	const char *err = NULL, *ctype;
	char url[HTTPC_MAX_URL];
	unsigned port = ob->cfg->relay_mta_sts_port;

	/* RFC 8461 3.3: https://mta-sts.<domain>/.well-known/mta-sts.txt,
	 * the certificate valid for that name, no redirects. */
	if (port == 443)
		snprintf(url, sizeof(url), "https://mta-sts.%s/.well-known/mta-sts.txt", j->domain);
	else
		snprintf(url, sizeof(url), "https://mta-sts.%s:%u/.well-known/mta-sts.txt",
		         j->domain, port);
	opts.cfg = ob->cfg;
	opts.connect_timeout_ms = 10000;
	opts.timeout_ms = FETCH_TIMEOUT;
	opts.max_body = MTA_STS_MAX_POLICY;
	opts.max_headers = 100;
	opts.ca_file = ob->cfg->relay_tls_ca_file[0] != '\0' ? ob->cfg->relay_tls_ca_file : NULL;
	j->rc = httpc_get(url, &opts, &resp, &err);
	if (j->rc != 0) {
		snprintf(j->why, sizeof(j->why), "fetch failed: %s (%s)", roost_strerror(j->rc),
		         err != NULL ? err : "-");
		return;
	}
	ctype = httpc_header(&resp, "Content-Type");
	if (resp.status != 200) {
		j->rc = ROOST_EPROTO;
		snprintf(j->why, sizeof(j->why), "HTTP status %d", resp.status);
	} else if (ctype == NULL || strncasecmp(ctype, "text/plain", 10) != 0) {
		/* RFC 8461 3.2: the policy is served as text/plain. */
		j->rc = ROOST_EPROTO;
		snprintf(j->why, sizeof(j->why), "Content-Type is not text/plain");
	} else if (mta_sts_parse_policy((const char *)resp.body, resp.body_len, &j->pol) != 0) {
		j->rc = ROOST_EINVAL;
		snprintf(j->why, sizeof(j->why), "invalid policy file");
	}
	httpc_response_free(&resp);
}

static void *
fetch_main(void *arg)
{
	struct outbound *ob = arg;
	struct outbound_sts *st = ob->sts;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		struct sts_job *j;
		uint64_t one = 1;

		while (!st->stop && st->todo == NULL)
			pthread_cond_wait(&st->cv, &st->mu);
		if (st->stop)
			break;
		j = st->todo;
		st->todo = j->next;
		pthread_mutex_unlock(&st->mu);
		fetch(ob, j);
		pthread_mutex_lock(&st->mu);
		j->next = st->done;
		st->done = j;
		if (write(ob->wake_fd, &one, sizeof(one)) < 0) {
			/* The counter is saturated: the engine is awake anyway. */
		}
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

int
outbound_sts_start(struct outbound *ob)
{
	struct outbound_sts *st = xcalloc(1, sizeof(*st));

	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	ob->sts = st;
	if (!ob->cfg->relay_mta_sts || ob->smarthost)
		return 0;
	if (pthread_create(&st->thread, NULL, fetch_main, ob) != 0)
		return ROOST_EIO;
	st->started = true;
	return 0;
}

static void
free_jobs(struct sts_job *j)
{
	while (j != NULL) {
		struct sts_job *next = j->next;

		free(j);
		j = next;
	}
}

void
outbound_sts_stop(struct outbound *ob)
{
	struct outbound_sts *st = ob->sts;

	if (st == NULL)
		return;
	if (st->started) {
		/* A fetch in flight ends within FETCH_TIMEOUT. */
		pthread_mutex_lock(&st->mu);
		st->stop = true;
		pthread_cond_signal(&st->cv);
		pthread_mutex_unlock(&st->mu);
		pthread_join(st->thread, NULL);
	}
	free_jobs(st->todo);
	free_jobs(st->done);
	while (st->cache != NULL) {
		struct sts_entry *e = st->cache;

		st->cache = e->next;
		free(e);
	}
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	free(st);
	ob->sts = NULL;
}

/* s goes on to its MX lookup under e's policy (or none). */
static void
apply(struct session *s, const struct sts_entry *e)
{
	s->sts_wait = false;
	if (e != NULL && e->have && e->pol.mode != MTA_STS_NONE) {
		s->sts = xmalloc(sizeof(*s->sts));
		memcpy(s->sts, &e->pol, sizeof(*s->sts));
		/* enforce: only over TLS that verifies for the MX name. */
		if (e->pol.mode == MTA_STS_ENFORCE && s->policy < TLSP_VERIFY)
			s->policy = TLSP_VERIFY;
		log_debug("event=mta_sts domain=%s mode=%s id=%s", s->domain,
		          mta_sts_mode_name(e->pol.mode), e->id);
	}
	outbound_session_mx(s);
}

static void
start_fetch(struct outbound *ob, struct sts_entry *e, const char *id)
{
	struct outbound_sts *st = ob->sts;
	struct sts_job *j = xcalloc(1, sizeof(*j));

	snprintf(j->domain, sizeof(j->domain), "%s", e->domain);
	snprintf(j->id, sizeof(j->id), "%s", id);
	e->fetching = true;
	pthread_mutex_lock(&st->mu);
	j->next = st->todo;
	st->todo = j;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

static void
txt_found(void *arg, int status, char *const *txt, size_t n)
{
	struct session *s = arg;
	struct outbound *ob = s->ob;
	struct outbound_sts *st = ob->sts;
	struct sts_entry *e = cache_find(st, s->domain);
	char id[MTA_STS_ID_LEN] = "", tmp[MTA_STS_ID_LEN];
	size_t found = 0;

	for (size_t i = 0; i < n; i++) {
		if (mta_sts_parse_txt(txt[i], strlen(txt[i]), tmp) == 0) {
			found++;
			memcpy(id, tmp, sizeof(id));
		}
	}
	if (e != NULL && e->fetching) {
		/* Another session started the fetch meanwhile. */
		s->sts_wait = true;
		return;
	}
	if (found != 1) {
		/* RFC 8461 3.1: none, or several records: no policy. A lookup
		 * that failed keeps an unexpired policy (there is none here:
		 * a fresh one answers before the lookup). */
		if (e == NULL)
			e = cache_add(st, s->domain);
		e->have = false;
		e->expires = time(NULL) + NEG_TTL;
		if (found > 1 || status == ROOST_ETEMP)
			log_info("event=mta_sts domain=%s status=none reason=\"%s\"", s->domain,
			         found > 1 ? "several STSv1 records" : "TXT lookup failed");
		apply(s, e);
		return;
	}
	if (e == NULL)
		e = cache_add(st, s->domain);
	s->sts_wait = true;
	start_fetch(ob, e, id);
}

void
outbound_sts_begin(struct session *s)
{
	struct outbound *ob = s->ob;
	struct outbound_sts *st = ob->sts;
	struct sts_entry *e;
	char name[DNS_MAX_NAME + 16];

	if (st == NULL || !st->started || (s->flags & SF_TLS_OPTIONAL)) {
		/* RFC 8689 4.2.2: TLS-Required: No ignores MTA-STS. */
		outbound_session_mx(s);
		return;
	}
	e = cache_find(st, s->domain);
	if (e != NULL && !e->fetching && time(NULL) < e->expires) {
		apply(s, e);
		return;
	}
	s->st = SS_STS;
	if (e != NULL && e->fetching) {
		s->sts_wait = true;
		return;
	}
	snprintf(name, sizeof(name), "_mta-sts.%s", s->domain);
	dns_lookup_txt(ob->dns, name, txt_found, s);
}

void
outbound_sts_collect(struct outbound *ob)
{
	struct outbound_sts *st = ob->sts;
	struct sts_job *done;

	if (st == NULL || !st->started)
		return;
	pthread_mutex_lock(&st->mu);
	done = st->done;
	st->done = NULL;
	pthread_mutex_unlock(&st->mu);
	while (done != NULL) {
		struct sts_job *j = done;
		struct sts_entry *e = cache_find(st, j->domain);

		done = j->next;
		if (e == NULL)
			e = cache_add(st, j->domain);
		e->fetching = false;
		if (j->rc == 0) {
			e->have = true;
			memcpy(&e->pol, &j->pol, sizeof(e->pol));
			snprintf(e->id, sizeof(e->id), "%s", j->id);
			e->expires = time(NULL) + (int64_t)j->pol.max_age;
			log_info("event=mta_sts domain=%s status=fetched mode=%s id=%s max_age=%u "
			         "mx=%zu",
			         e->domain, mta_sts_mode_name(j->pol.mode), j->id, j->pol.max_age,
			         j->pol.n_mx);
		} else {
			e->have = false;
			e->expires = time(NULL) + NEG_TTL;
			log_info("event=mta_sts domain=%s status=none id=%s reason=\"%s\"",
			         e->domain, j->id, j->why);
		}
		free(j);
		for (struct session *s = ob->sessions; s != NULL; s = s->next) {
			if (s->st == SS_STS && s->sts_wait && strcasecmp(s->domain, e->domain) == 0)
				apply(s, e);
		}
	}
}
