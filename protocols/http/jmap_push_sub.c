/*
 * JMAP PushSubscription (RFC 8620 7.2): the subscriptions of every user and
 * the threads that POST to their URLs. The methods (jmap_push_set.c) change
 * subscriptions here; a few delivery threads send PushVerification objects
 * and StateChange objects with services/http_client.c, which blocks them,
 * never a worker.
 *
 * Changes are heard through one storage_watch_user() per user with a
 * subscription, the notification IMAP NOTIFY and EventSource rely on. A
 * wake-up only marks the user's verified subscriptions dirty; the state is
 * read when a thread takes the subscription, so any number of changes
 * while a POST is in flight become one StateChange after it (coalescing),
 * and a change that leaves the state as last pushed sends nothing. A
 * subscription has at most one POST in flight. A failure (no connection,
 * a timeout, a status other than 2xx, an answer over 64 KiB) is retried
 * after push_retry seconds, doubling up to an hour; push_max_failures in a
 * row drop the subscription. Expired ones are dropped too.
 *
 * Persistence: each subscription is a metadata entry of its user's server
 * part, under STORAGE_METADATA_INTERNAL "jmap-push/<id>" (no protocol shows
 * those), so every backend keeps it; the service reads them all at start
 * from the users of the passwd file. What was last pushed is not kept: after
 * a restart the first change is pushed.
 *
 * Lock order: a storage watch's own lock, then d->mu (the watch callback
 * takes d->mu). So d->mu is never held while creating or removing a watch,
 * nor during storage or network I/O.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/http.h"
#include "roost/http_client.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_push_impl.h"

#define PUSH_THREADS 4
#define PUSH_MAX_ANSWER (64 * 1024)
#define PUSH_MAX_BACKOFF_S 3600

struct push_user {
	struct push_user *next;
	char *user;
	struct storage_watch *w;
	struct jmap_pushd *d;
};

struct jmap_pushd {
	const struct roost_services *sv;
	pthread_t th[PUSH_THREADS];
	size_t n_threads;

	/* d->mu guards everything below (see the lock order above) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct push_sub *subs;
	struct push_user *users;
	bool loaded; /* the stored subscriptions were read */
	bool stop;
};

static void
sub_free(struct push_sub *p)
{
	if (p == NULL)
		return;
	free(p->user);
	free(p->device);
	free(p->url);
	free(p->pushed_state);
	free(p->p256dh);
	free(p->auth);
	json_decref(p->types_json);
	free(p);
}

/* ---- watches ---- */

static void
watch_cb(void *arg, const struct storage_change *ch)
{
	struct push_user *u = arg;
	struct jmap_pushd *d = u->d;
	bool any = false;

	/* Metadata changes include our own writes of subscriptions; no JMAP
	 * state covers them. */
	if (ch != NULL && ch->n_entries > 0)
		return;
	pthread_mutex_lock(&d->mu);
	for (struct push_sub *p = d->subs; p != NULL; p = p->next) {
		if (p->verified && strcasecmp(p->user, u->user) == 0) {
			p->dirty = true;
			any = true;
		}
	}
	if (any)
		pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static struct push_user *
user_find(struct jmap_pushd *d, const char *user)
{
	for (struct push_user *u = d->users; u != NULL; u = u->next)
		if (strcasecmp(u->user, user) == 0)
			return u;
	return NULL;
}

/* Make sure user is watched (d->mu not held). */
static void
watch_user(struct jmap_pushd *d, const char *user)
{
	struct push_user *u;
	bool have;

	pthread_mutex_lock(&d->mu);
	have = user_find(d, user) != NULL;
	pthread_mutex_unlock(&d->mu);
	if (have)
		return;
	u = xcalloc(1, sizeof(*u));
	u->user = xstrdup(user);
	u->d = d;
	if (storage_watch_user(d->sv->storage, user, watch_cb, u, &u->w) != 0) {
		log_warn("event=push_watch status=failed user=%s", LOG_QUOTE(user));
		u->w = NULL;
	}
	pthread_mutex_lock(&d->mu);
	if (user_find(d, user) == NULL) {
		u->next = d->users;
		d->users = u;
		u = NULL;
	}
	pthread_mutex_unlock(&d->mu);
	if (u != NULL) { /* another thread was first */
		storage_unwatch(&u->w);
		free(u->user);
		free(u);
	}
}

/* Stop watching users without subscriptions (d->mu not held). */
static void
unwatch_idle(struct jmap_pushd *d)
{
	struct push_user *gone = NULL, **pp;

	pthread_mutex_lock(&d->mu);
	for (pp = &d->users; *pp != NULL;) {
		struct push_user *u = *pp;
		bool used = false;

		for (struct push_sub *p = d->subs; p != NULL && !used; p = p->next)
			used = strcasecmp(p->user, u->user) == 0;
		if (used) {
			pp = &u->next;
			continue;
		}
		*pp = u->next;
		u->next = gone;
		gone = u;
	}
	pthread_mutex_unlock(&d->mu);
	while (gone != NULL) {
		struct push_user *u = gone;

		gone = u->next;
		storage_unwatch(&u->w);
		free(u->user);
		free(u);
	}
}

/* ---- the subscriptions ---- */

void
jmap_push_new_id(char id[18], char code[33])
{
	uint8_t r[24];
	static const char hex[] = "0123456789abcdef";

	if (RAND_bytes(r, sizeof(r)) != 1)
		fatal("event=rand_failed error=\"RAND_bytes failed\"");
	id[0] = 'S';
	for (int i = 0; i < 8; i++) {
		id[1 + 2 * i] = hex[r[i] >> 4];
		id[2 + 2 * i] = hex[r[i] & 15];
	}
	id[17] = '\0';
	for (int i = 0; i < 16; i++) {
		code[2 * i] = hex[r[8 + i] >> 4];
		code[2 * i + 1] = hex[r[8 + i] & 15];
	}
	code[32] = '\0';
}

void
jmap_push_add(struct jmap_pushd *d, struct push_sub *p)
{
	watch_user(d, p->user);
	pthread_mutex_lock(&d->mu);
	p->next = d->subs;
	d->subs = p;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

size_t
jmap_push_count(struct jmap_pushd *d, const char *user)
{
	size_t n = 0;

	pthread_mutex_lock(&d->mu);
	for (struct push_sub *p = d->subs; p != NULL; p = p->next)
		n += !p->removed && strcasecmp(p->user, user) == 0;
	pthread_mutex_unlock(&d->mu);
	return n;
}

json_t *
jmap_push_list(struct jmap_pushd *d, const char *user)
{
	json_t *a = json_array();

	pthread_mutex_lock(&d->mu);
	for (struct push_sub *p = d->subs; p != NULL; p = p->next)
		if (!p->removed && strcasecmp(p->user, user) == 0)
			json_array_append_new(a, jmap_push_sub_json(p, false));
	pthread_mutex_unlock(&d->mu);
	return a;
}

int
jmap_push_update(struct jmap_pushd *d, const char *user, const char *id, jmap_push_update_fn *fn,
                 void *arg, struct push_sub *copy_r)
{
	struct push_sub *p;
	int rc = ROOST_ENOTFOUND;

	pthread_mutex_lock(&d->mu);
	for (p = d->subs; p != NULL; p = p->next)
		if (!p->removed && strcmp(p->id, id) == 0 && strcasecmp(p->user, user) == 0)
			break;
	if (p != NULL) {
		rc = fn(p, arg);
		if (rc == 0 && copy_r != NULL) {
			*copy_r = *p;
			copy_r->next = NULL;
			copy_r->user = xstrdup(p->user);
			copy_r->device = xstrdup(p->device);
			copy_r->url = xstrdup(p->url);
			copy_r->pushed_state = NULL;
			copy_r->types_json = json_incref(p->types_json);
			copy_r->p256dh = p->p256dh != NULL ? xstrdup(p->p256dh) : NULL;
			copy_r->auth = p->auth != NULL ? xstrdup(p->auth) : NULL;
		}
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

void
jmap_push_copy_free(struct push_sub *copy)
{
	free(copy->user);
	free(copy->device);
	free(copy->url);
	free(copy->pushed_state);
	free(copy->p256dh);
	free(copy->auth);
	json_decref(copy->types_json);
	memset(copy, 0, sizeof(*copy));
}

/* Unlink p (d->mu held); freed now, or by its thread when in flight. */
static void
unlink_sub(struct jmap_pushd *d, struct push_sub *p)
{
	for (struct push_sub **pp = &d->subs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (p->in_flight)
		p->removed = true;
	else
		sub_free(p);
}

int
jmap_push_destroy(struct jmap_pushd *d, const char *user, const char *id)
{
	struct push_sub *p, key = {0};

	pthread_mutex_lock(&d->mu);
	for (p = d->subs; p != NULL; p = p->next)
		if (!p->removed && strcmp(p->id, id) == 0 && strcasecmp(p->user, user) == 0)
			break;
	if (p == NULL) {
		pthread_mutex_unlock(&d->mu);
		return ROOST_ENOTFOUND;
	}
	snprintf(key.id, sizeof(key.id), "%s", p->id);
	key.user = xstrdup(p->user);
	unlink_sub(d, p);
	pthread_mutex_unlock(&d->mu);
	(void)jmap_push_store(d->sv->storage, &key, true);
	free(key.user);
	unwatch_idle(d);
	return 0;
}

/* ---- loading at start ---- */

struct load_ctx {
	struct jmap_pushd *d;
	size_t n;
};

static void
load_user(const char *user, void *arg)
{
	struct load_ctx *l = arg;
	struct metadata_entry *e = NULL;
	size_t n = 0;
	int64_t now = time(NULL);

	if (storage_metadata_get(l->d->sv->storage, user, "", PUSH_PREFIX, 1, &e, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct push_sub *p = jmap_push_sub_from_json(user, e[i].value, e[i].len);

		if (p == NULL)
			continue;
		if (p->expires <= now) {
			(void)jmap_push_store(l->d->sv->storage, p, true);
			sub_free(p);
			continue;
		}
		jmap_push_add(l->d, p);
		l->n++;
	}
	storage_metadata_free(e, n);
}

static void
load_all(struct jmap_pushd *d)
{
	struct load_ctx l = {.d = d};

	if (auth_file_list(d->sv->cfg->passwd_file, load_user, &l) != 0)
		log_warn("event=push_load status=failed passwd_file=%s", d->sv->cfg->passwd_file);
	if (l.n > 0)
		log_info("event=push_load subscriptions=%zu", l.n);
	pthread_mutex_lock(&d->mu);
	d->loaded = true;
	pthread_mutex_unlock(&d->mu);
}

/* ---- delivery ---- */

struct job {
	char id[18];
	char account[24];
	char code[33];
	char *user;
	char *url;
	unsigned types;
	bool verify;
	char *pushed_state;
	char *p256dh, *auth; /* NULL: not encrypted */
};

static void
current_state(struct jmap_pushd *d, const struct job *j, struct buf *out)
{
	struct jmap_req r;

	memset(&r, 0, sizeof(r));
	r.store = d->sv->storage;
	r.user = j->user;
	r.account = j->account;
	jmap_state(&r, out);
	jmap_mailboxes_reset(&r);
}

static char *
state_change_body(const struct job *j, const char *state)
{
	json_t *ev;
	char *text;

	ev = json_pack("{sss{so}}", "@type", "StateChange", "changed", j->account,
	               jmap_push_changed(j->types, state));
	text = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	return text;
}

/* POST the job's object: true when the receiver took it (2xx). */
static bool
post(struct jmap_pushd *d, const struct job *j, const char *body, const char *kind)
{
	const struct roost_config *cfg = d->sv->cfg;
	struct httpc_opts o = {
	    .cfg = cfg,
	    .timeout_ms = cfg->http_push_timeout * 1000u,
	    .max_body = PUSH_MAX_ANSWER,
	    .max_headers = 100,
	    .public_only = !cfg->http_push_private_urls,
	    .ca_file = cfg->http_push_ca_file != NULL && cfg->http_push_ca_file[0] != '\0'
	                   ? cfg->http_push_ca_file
	                   : NULL,
	};
	struct httpc_response resp;
	const char *err = NULL;
	const char *hdr[] = {"TTL: 86400", "Urgency: normal", NULL, NULL};
	struct buf enc = BUF_INIT(0);
	const void *data = body;
	size_t len = strlen(body);
	const char *ctype = "application/json";
	int rc;

	if (j->p256dh != NULL) {
		uint8_t pub[JMAP_PUSH_P256DH_LEN], auth[JMAP_PUSH_AUTH_LEN];

		if (jmap_push_keys_decode(j->p256dh, j->auth, pub, auth) != 0 ||
		    jmap_push_encrypt(pub, auth, (const uint8_t *)body, len, &enc) != 0) {
			log_warn("event=push_failed kind=%s subscription=%s user=%s "
			         "error=\"encryption failed\"",
			         kind, j->id, LOG_QUOTE(j->user));
			buf_free(&enc);
			return false;
		}
		data = enc.data;
		len = enc.len;
		ctype = "application/octet-stream";
		hdr[2] = "Content-Encoding: aes128gcm";
	}
	rc = httpc_request("POST", j->url, hdr, ctype, data, len, &o, &resp, &err);
	buf_free(&enc);
	if (rc == 0 && resp.status >= 200 && resp.status <= 299) {
		log_info("event=push_sent kind=%s subscription=%s user=%s status=%d", kind, j->id,
		         LOG_QUOTE(j->user), resp.status);
		httpc_response_free(&resp);
		return true;
	}
	if (rc == 0)
		log_info("event=push_failed kind=%s subscription=%s user=%s status=%d", kind, j->id,
		         LOG_QUOTE(j->user), resp.status);
	else
		log_info("event=push_failed kind=%s subscription=%s user=%s error=%s", kind, j->id,
		         LOG_QUOTE(j->user), LOG_QUOTE(err != NULL ? err : roost_strerror(rc)));
	httpc_response_free(&resp);
	return false;
}

/* The next subscription with work that is due, or NULL with *wait_ms_r
 * until the earliest one (d->mu held). Expired ones go to *expired_r. */
static struct push_sub *
pick(struct jmap_pushd *d, int64_t *wait_ms_r, struct push_sub **expired_r)
{
	int64_t now = (int64_t)clock_ms(), wall = time(NULL), wait = 60000;

	for (struct push_sub *p = d->subs, *next; p != NULL; p = next) {
		next = p->next;
		if (p->in_flight)
			continue;
		if (p->expires <= wall) {
			for (struct push_sub **pp = &d->subs; *pp != NULL; pp = &(*pp)->next) {
				if (*pp == p) {
					*pp = p->next;
					break;
				}
			}
			p->next = *expired_r;
			*expired_r = p;
			continue;
		}
		if (!p->need_verify && !(p->verified && p->dirty))
			continue;
		if (p->next_try <= now)
			return p;
		if (p->next_try - now < wait)
			wait = p->next_try - now;
	}
	*wait_ms_r = wait;
	return NULL;
}

/* Record the outcome of p's job (d->mu held). True when p was dropped
 * after too many failures (and freed): its stored entry is to go. */
static bool
job_done(struct jmap_pushd *d, struct push_sub *p, const struct job *j, bool ok, char *new_state)
{
	const struct roost_config *cfg = d->sv->cfg;
	uint64_t delay;

	p->in_flight = false;
	if (p->removed) { /* destroyed meanwhile */
		free(new_state);
		sub_free(p);
		return false;
	}
	if (ok) {
		p->failures = 0;
		p->next_try = 0;
		if (j->verify) {
			p->need_verify = false;
		} else if (new_state != NULL) {
			free(p->pushed_state);
			p->pushed_state = new_state;
			new_state = NULL;
		}
		free(new_state);
		return false;
	}
	free(new_state);
	if (!j->verify)
		p->dirty = true; /* the change is still to be told */
	p->failures++;
	if (p->failures >= cfg->http_push_max_failures) {
		log_warn("event=push_dropped subscription=%s user=%s failures=%u", p->id,
		         LOG_QUOTE(p->user), p->failures);
		unlink_sub(d, p);
		return true;
	}
	delay = (uint64_t)cfg->http_push_retry << (p->failures > 12 ? 12 : p->failures - 1);
	if (delay > PUSH_MAX_BACKOFF_S)
		delay = PUSH_MAX_BACKOFF_S;
	p->next_try = (int64_t)clock_ms() + (int64_t)delay * 1000;
	return false;
}

static void
drop_stored(struct jmap_pushd *d, const char *user, const char *id)
{
	struct push_sub key = {0};

	snprintf(key.id, sizeof(key.id), "%s", id);
	key.user = (char *)user;
	(void)jmap_push_store(d->sv->storage, &key, true);
}

static void *
deliver_thread(void *arg)
{
	struct jmap_pushd *d = arg;
	bool first;

	pthread_mutex_lock(&d->mu);
	first = !d->loaded && d->th[0] == pthread_self();
	pthread_mutex_unlock(&d->mu);
	if (first)
		load_all(d);
	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		struct push_sub *expired = NULL, *p;
		int64_t wait = 0;
		struct job j;
		char *body = NULL, *new_state = NULL;
		bool ok = true, dropped;

		p = pick(d, &wait, &expired);
		if (expired != NULL) {
			pthread_mutex_unlock(&d->mu);
			while (expired != NULL) {
				struct push_sub *e = expired;

				expired = e->next;
				log_info("event=push_expired subscription=%s user=%s", e->id,
				         LOG_QUOTE(e->user));
				drop_stored(d, e->user, e->id);
				sub_free(e);
			}
			unwatch_idle(d);
			pthread_mutex_lock(&d->mu);
			continue;
		}
		if (p == NULL) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (long)(wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&d->cv, &d->mu, &ts);
			continue;
		}
		memset(&j, 0, sizeof(j));
		memcpy(j.id, p->id, sizeof(j.id));
		memcpy(j.account, p->account, sizeof(j.account));
		memcpy(j.code, p->code, sizeof(j.code));
		j.user = xstrdup(p->user);
		j.url = xstrdup(p->url);
		j.types = p->types;
		j.verify = p->need_verify;
		j.pushed_state = p->pushed_state != NULL ? xstrdup(p->pushed_state) : NULL;
		j.p256dh = p->p256dh != NULL ? xstrdup(p->p256dh) : NULL;
		j.auth = p->auth != NULL ? xstrdup(p->auth) : NULL;
		if (!j.verify)
			p->dirty = false;
		p->in_flight = true;
		pthread_mutex_unlock(&d->mu);

		if (j.verify) {
			json_t *v =
			    json_pack("{ssssss}", "@type", "PushVerification", "pushSubscriptionId",
			              j.id, "verificationCode", j.code);

			body = json_dumps(v, JSON_COMPACT);
			json_decref(v);
			ok = post(d, &j, body, "verification");
		} else {
			struct buf st = BUF_INIT(0);

			current_state(d, &j, &st);
			if (j.types != 0 && (j.pushed_state == NULL ||
			                     strcmp(j.pushed_state, (const char *)st.data) != 0)) {
				body = state_change_body(&j, (const char *)st.data);
				ok = post(d, &j, body, "state");
				new_state = xstrdup((const char *)st.data);
			}
			buf_free(&st);
		}
		free(body);

		pthread_mutex_lock(&d->mu);
		dropped = job_done(d, p, &j, ok, new_state);
		if (dropped) {
			pthread_mutex_unlock(&d->mu);
			drop_stored(d, j.user, j.id);
			unwatch_idle(d);
			pthread_mutex_lock(&d->mu);
		}
		free(j.user);
		free(j.url);
		free(j.pushed_state);
		free(j.p256dh);
		free(j.auth);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* ---- the service ---- */

int
jmap_pushd_start(const struct roost_services *sv, struct jmap_pushd **d_r)
{
	struct jmap_pushd *d;

	*d_r = NULL;
	if (sv->cfg->http_push_subscriptions == 0)
		return 0;
	d = xcalloc(1, sizeof(*d));
	d->sv = sv;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	pthread_mutex_lock(&d->mu); /* th[0] is known before it looks */
	for (size_t i = 0; i < PUSH_THREADS; i++) {
		if (pthread_create(&d->th[i], NULL, deliver_thread, d) != 0)
			break;
		d->n_threads++;
	}
	pthread_mutex_unlock(&d->mu);
	if (d->n_threads == 0) {
		log_error("event=start status=failed stage=push error=\"no threads\"");
		pthread_mutex_destroy(&d->mu);
		pthread_cond_destroy(&d->cv);
		free(d);
		return ROOST_EIO;
	}
	*d_r = d;
	return 0;
}

void
jmap_pushd_stop(struct jmap_pushd **dp)
{
	struct jmap_pushd *d = *dp;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	/* A thread in a POST ends within push_timeout. */
	for (size_t i = 0; i < d->n_threads; i++)
		pthread_join(d->th[i], NULL);
	while (d->subs != NULL) {
		struct push_sub *p = d->subs;

		d->subs = p->next;
		sub_free(p);
	}
	while (d->users != NULL) {
		struct push_user *u = d->users;

		d->users = u->next;
		storage_unwatch(&u->w);
		free(u->user);
		free(u);
	}
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
	*dp = NULL;
}
