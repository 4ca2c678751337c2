/*
 * The results of a delivery attempt applied to the queue: each
 * recipient's status and next retry (exponential backoff), the log line,
 * bounces (DSN), and entries removed once nothing is pending.
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

#include "outbound_impl.h"

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

void
outbound_index(struct outbound *ob, struct queue_entry *e)
{
	heap_remove(&ob->blocked, &e->due);
	if (e->busy > 0 || e->dead || queue_entry_pending(e) == 0) {
		heap_remove(&ob->due, &e->due);
		return;
	}
	/* A held entry waits for `roost queue release`, but not beyond its
	 * lifetime (as a deferred one does not). */
	heap_set(&ob->due, &e->due,
	         e->held ? e->created + (int64_t)ob->cfg->relay_queue_lifetime : e->next_try);
}

/* e is idle: remove it when nothing is pending (or it was deleted). */
void
outbound_entry_settle(struct outbound *ob, struct queue_entry *e)
{
	if (e->busy > 0)
		return;
	if (!e->dead && queue_entry_pending(e) > 0) {
		outbound_index(ob, e);
		return;
	}
	heap_remove(&ob->due, &e->due);
	heap_remove(&ob->blocked, &e->due);
	if (ob->n_doomed == ob->cap_doomed) {
		ob->cap_doomed = ob->cap_doomed == 0 ? 64 : ob->cap_doomed * 2;
		ob->doomed = xreallocarray(ob->doomed, ob->cap_doomed, sizeof(*ob->doomed));
	}
	memcpy(ob->doomed[ob->n_doomed++], e->id, QUEUE_ID_LEN);
	log_info("event=queue_done queue_id=%s status=%s", e->id, e->dead ? "deleted" : "removed");
	if (e->prev != NULL)
		e->prev->next = e->next;
	else if (ob->entries == e)
		ob->entries = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	queue_entry_free(&e);
}

int
outbound_open_msg(struct outbound *ob, const struct queue_entry *e)
{
	char path[PATH_MAX];

	queue_msg_path(ob->q, e->id, path, sizeof(path));
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Apply one attempt's results to the entry, log, bounce, save. */
void
outbound_work_finish(struct session *s, struct work *w, const char *relay, const char *ip,
                     const char *tls, const char *tls_version)
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
		log_info("event=deliver queue_id=%s from=<%s> to=<%s> relay=%s ip=%s tls=%s "
		         "tls_version=%s code=%d status=%s text=\"%s\" attempt=%u delay=%llds",
		         e->id, e->sender, r->addr, relay != NULL && relay[0] != '\0' ? relay : "-",
		         ip != NULL && ip[0] != '\0' ? ip : "-", tls != NULL ? tls : "none",
		         tls_version != NULL ? tls_version : "none", code, status, text,
		         e->attempts + 1, (long long)(now - e->created));
	}
	e->attempts++;
	if (temp) {
		int64_t next = now + backoff(ob, e->attempts);

		if (next > e->next_try)
			e->next_try = next;
	}
	if (nf > 0 || (temp && ob->cfg->relay_delay_warning > 0 && !e->warned &&
	               now - e->created >= (time_t)ob->cfg->relay_delay_warning)) {
		int fd = outbound_open_msg(ob, e);

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
	outbound_entry_settle(ob, e);
}

void
outbound_entry_expire(struct outbound *ob, struct queue_entry *e)
{
	time_t now = time(NULL);
	size_t *failed = xcalloc(e->n_rcpts + 1, sizeof(*failed)), nf = 0;
	char why[700];

	for (size_t i = 0; i < e->n_rcpts; i++) {
		struct queue_rcpt *r = &e->rcpts[i];

		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		/* The last error, if any, stays in the DSN's diagnostic. */
		if (r->code != 0 && r->status != NULL && r->status[0] != '\0')
			snprintf(why, sizeof(why),
			         "4.4.7 Message expired after %us in the queue (held); last error: "
			         "%.500s",
			         ob->cfg->relay_queue_lifetime, r->status);
		else
			snprintf(why, sizeof(why),
			         "4.4.7 Message expired after %us in the queue (held)",
			         ob->cfg->relay_queue_lifetime);
		{
			/* set_status() frees the old strings before copying. */
			char *remote = xstrdup(r->remote != NULL ? r->remote : "");

			set_status(r, r->code != 0 ? r->code : 451, why, remote);
			free(remote);
		}
		r->state = QUEUE_RCPT_FAILED;
		failed[nf++] = i;
		log_info(
		    "event=deliver queue_id=%s from=<%s> to=<%s> relay=- ip=- tls=none "
		    "tls_version=none code=%d status=expired text=\"%s\" attempt=%u delay=%llds",
		    e->id, e->sender, r->addr, r->code, why, e->attempts,
		    (long long)(now - e->created));
	}
	if (nf > 0) {
		int fd = outbound_open_msg(ob, e);

		dsn_send(ob->sv, e, failed, nf, DSN_FAILED, fd);
		if (fd >= 0)
			close(fd);
	}
	free(failed);
	outbound_entry_settle(ob, e);
}

void
outbound_work_free(struct work *w)
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
	outbound_work_finish(s, w, s->host, NULL, NULL, NULL);
	outbound_work_free(w);
}

void
outbound_session_fail_all(struct session *s, int code, const char *text)
{
	while (s->works != NULL) {
		struct work *w = s->works;

		s->works = w->next;
		work_fail(s, w, code, text);
	}
	s->st = SS_DONE;
}
