/*
 * The delivery engine: its thread's loop, start and stop. The sessions per
 * destination domain and the scheduler are in outbound_session.c, the
 * results of an attempt in outbound_result.c, the control socket in
 * outbound_ctl.c. See roost/outbound.h for the behaviour.
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

#include <openssl/err.h>
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

static void
wake(void *arg)
{
	struct outbound *ob = arg;
	uint64_t one = 1;

	if (write(ob->wake_fd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the engine is awake anyway. */
	}
}

static void
take_new(struct outbound *ob)
{
	struct queue_entry *e = queue_take_new(ob->q), *next;

	for (; e != NULL; e = next) {
		next = e->next;
		e->prev = NULL;
		e->next = ob->entries;
		if (ob->entries != NULL)
			ob->entries->prev = e;
		ob->entries = e;
		outbound_index(ob, e);
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
		outbound_session_fail_all(s, 451, "4.4.0 Session ended");
		free(s->sts);
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

	while (!atomic_load(&ob->stop)) {
		int64_t now = outbound_now_ms(), deadline, due, now_s;
		size_t n = 0, dns_at, dns_n, ctl_at, sess_at;
		int timeout;

		take_new(ob);
		/* O(1) when nothing is due (the index's least key). */
		due = outbound_schedule(ob);
		reap_sessions(ob);
		/* Entries finished in the last turn (results, control commands)
		 * or just now (expired while held) go before the engine sleeps. */
		queue_remove_batch(ob->q, ob->doomed, ob->n_doomed);
		ob->n_doomed = 0;
		if (cap < 8 + MAX_CTL + 16 + ob->n_sessions) {
			cap = 8 + MAX_CTL + 16 + ob->n_sessions * 2;
			pfd = xreallocarray(pfd, cap, sizeof(*pfd));
			who = xreallocarray(who, cap, sizeof(*who));
		}
		pfd[n++] = (struct pollfd){.fd = ob->wake_fd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = ob->ctl_fd, .events = POLLIN};
		ctl_at = n;
		/* The index counts in seconds of the wall clock, the loop in
		 * monotonic milliseconds; waking late by under a second is
		 * fine, never early (time() rounds down). */
		now_s = time(NULL);
		deadline = ob->scan_now       ? now
		           : due <= now_s     ? now
		           : due - now_s > 60 ? now + 60000
		                              : now + (due - now_s) * 1000;
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
			log_error("event=outbound_poll error=\"%s\"", strerror(errno));
			break;
		}
		now = outbound_now_ms();
		if (pfd[0].revents & POLLIN) {
			uint64_t v;

			if (read(ob->wake_fd, &v, sizeof(v)) < 0) {
				/* Nothing to read after all. */
			}
		}
		outbound_sts_collect(ob);
		if (ob->ctl_fd >= 0 && (pfd[1].revents & POLLIN))
			outbound_ctl_accept(ob);
		for (int i = 0; i < MAX_CTL; i++) {
			struct ctl_client *cc = &ob->ctl[i];

			if (pfd[ctl_at + (size_t)i].fd < 0 || cc->fd != pfd[ctl_at + (size_t)i].fd)
				continue;
			if (pfd[ctl_at + (size_t)i].revents != 0)
				outbound_ctl_read(ob, cc);
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
			outbound_session_after_io(s);
		}
	}
	queue_remove_batch(ob->q, ob->doomed, ob->n_doomed);
	ob->n_doomed = 0;
	free(pfd);
	free(who);
	return NULL;
}

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
	if ((err = outbound_policy_init(ob)) != 0)
		goto fail;
	if ((err = dns_create(ob->cfg, &ob->dns)) != 0)
		goto fail;
	ob->tls = SSL_CTX_new(TLS_client_method());
	if (ob->tls == NULL) {
		err = ROOST_EIO;
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ob->tls, TLS1_2_VERSION);
	/* Certificates are checked on every connection and the result logged
	 * (tls=verified|unverified); the policy decides what a failure means
	 * (smtp_client_tls.c), so the handshake itself never refuses. */
	if (ob->cfg->relay_tls_ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ob->tls, ob->cfg->relay_tls_ca_file, NULL) != 1) {
			log_error("event=start status=failed stage=relay error=\"[relay] "
			          "tls_ca_file: cannot load %s\"",
			          ob->cfg->relay_tls_ca_file);
			ERR_clear_error();
			err = ROOST_ECONFIG;
			goto fail;
		}
	} else {
		SSL_CTX_set_default_verify_paths(ob->tls);
	}
	SSL_CTX_set_verify(ob->tls, SSL_VERIFY_NONE, NULL);
	ob->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ob->wake_fd < 0) {
		err = ROOST_EIO;
		goto fail;
	}
	if ((err = outbound_sts_start(ob)) != 0)
		goto fail;
	ob->ctl_fd = outbound_ctl_listen(ob);
	queue_set_notify(ob->q, wake, ob);
	if (pthread_create(&ob->thread, NULL, engine_main, ob) != 0) {
		queue_set_notify(ob->q, NULL, NULL);
		err = ROOST_EIO;
		goto fail;
	}
	log_info("event=outbound_start mode=%s%s%s", ob->smarthost ? "smarthost " : "mx",
	         ob->smarthost ? "host=" : "", ob->smarthost ? ob->cfg->relay_smarthost : "");
	*ob_r = ob;
	return 0;
fail:
	outbound_sts_stop(ob);
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
	outbound_sts_stop(ob);
	/* Connections in flight are dropped; their recipients stay pending
	 * on disk and go out after the next start. */
	dns_free(&ob->dns);
	while (ob->sessions != NULL) {
		struct session *s = ob->sessions;

		ob->sessions = s->next;
		smtpc_free(&s->c);
		outbound_work_free(s->cur);
		free(s->sts);
		while (s->works != NULL) {
			struct work *w = s->works;

			s->works = w->next;
			outbound_work_free(w);
		}
		free(s->mx);
		free(s->addrs);
		free(s);
	}
	heap_free(&ob->due);
	heap_free(&ob->blocked);
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
