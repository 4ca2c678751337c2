/*
 * Push over EventSource (RFC 8620 7.3). The stream takes over the
 * connection: after the response head it only sends events, without a
 * length, and ends with the connection. Every mailbox of the user is
 * watched through storage_watch(), the notification IMAP IDLE uses, so a
 * change made over IMAP, SMTP or another JMAP client wakes the stream; the
 * state is then compared with the last one sent. The ping timer also
 * re-reads the state, which catches what a watch cannot see (a Maildir
 * changed by another program). The accounts shared with the user are
 * followed the same way (their mailboxes watched under the names the user
 * opens them by, so the owner's and everyone's changes wake the stream),
 * each with a state of its own, and an event names each account whose
 * state changed; the list of accounts is read again at every wake-up, so
 * an account shared meanwhile is followed from then on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_push_impl.h"

struct push_watch {
	char *name;
	struct storage_watch *w;
};

struct push_state {
	char id[24]; /* the account */
	char *state; /* last state sent (or the starting one) */
};

struct jmap_push {
	struct http_session *s;
	unsigned types;
	bool close_after_state;
	unsigned ping_s;
	struct push_state *states; /* one per account followed */
	size_t n_states;
	struct push_watch *watches;
	size_t n_watches;
};

static void
watch_cb(void *arg)
{
	conn_wake(arg);
}

static void
req_init(struct jmap_req *r, struct http_session *s)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->store = s->svc->storage;
	r->user = s->user;
	r->account = s->account;
}

/* Watch every mailbox not watched yet (new ones appear over time). */
static void
watch_all(struct jmap_push *p, struct jmap_req *r)
{
	if (jmap_mailboxes(r) != 0)
		return;
	for (size_t i = 0; i < r->n_mboxes; i++) {
		bool have = false;

		for (size_t k = 0; k < p->n_watches && !have; k++)
			have = strcmp(p->watches[k].name, r->mboxes[i].name) == 0;
		if (have)
			continue;
		p->watches = xreallocarray(p->watches, p->n_watches + 1, sizeof(*p->watches));
		if (storage_watch(r->store, r->user, r->mboxes[i].name, watch_cb, p->s->c,
		                  &p->watches[p->n_watches].w) != 0)
			continue;
		conn_ref(p->s->c);
		p->watches[p->n_watches].name = xstrdup(r->mboxes[i].name);
		p->n_watches++;
	}
}

/* One StateChange event (RFC 8620 7.1) for the accounts in changed (an
 * object of account id -> state), stolen. */
static void
send_state(struct jmap_push *p, json_t *changed)
{
	json_t *all = json_object(), *ev, *v;
	const char *acc;
	char *text;

	json_object_foreach(changed, acc, v)
	{
		json_object_set_new(all, acc, jmap_push_changed(p->types, json_string_value(v)));
	}
	json_decref(changed);
	ev = json_pack("{ssso}", "@type", "StateChange", "changed", all);
	text = json_dumps(ev, JSON_COMPACT);
	conn_printf(p->s->c, "event: state\ndata: %s\n\n", text);
	free(text);
	json_decref(ev);
	if (p->close_after_state)
		conn_close(p->s->c);
}

/* The last state of account id (NULL for one not followed yet). */
static struct push_state *
state_of(struct jmap_push *p, const char *id)
{
	for (size_t i = 0; i < p->n_states; i++) {
		if (strcmp(p->states[i].id, id) == 0)
			return &p->states[i];
	}
	return NULL;
}

/* Watch every mailbox of every account of the user (new ones too), then
 * read each account's state: those that differ from the last are changed
 * (their id -> state added to changed). An account no longer shared is
 * forgotten (its watches stay until the stream ends: they only wake it). */
static void
push_scan(struct jmap_push *p, json_t *changed)
{
	struct http_session *s = p->s;
	struct push_state *kept = NULL;
	struct buf st = BUF_INIT(0);
	size_t n_kept = 0;
	struct jmap_req r;

	req_init(&r, s);
	if (jmap_accounts_shared(r.store, r.user, false, &r.accts, &r.n_accts) == 0)
		r.accts_loaded = true;
	kept = xcalloc(r.n_accts + 1, sizeof(*kept));
	for (size_t k = 0; k <= r.n_accts; k++) {
		const char *id = k == 0 ? s->account : r.accts[k - 1].id;
		struct push_state *old;

		if (!jmap_account_select(&r, id))
			continue;
		/* Watch first, then read the state: a change in between wakes us. */
		watch_all(p, &r);
		jmap_mailboxes_reset(&r);
		buf_reset(&st);
		jmap_state(&r, &st);
		jmap_mailboxes_reset(&r);
		old = state_of(p, id);
		snprintf(kept[n_kept].id, sizeof(kept[n_kept].id), "%s", id);
		if (old != NULL && strcmp(old->state, (const char *)st.data) == 0) {
			kept[n_kept++].state = old->state;
			old->state = NULL;
			continue;
		}
		kept[n_kept++].state = xstrdup((const char *)st.data);
		json_object_set_new(changed, id, json_string((const char *)st.data));
	}
	for (size_t i = 0; i < p->n_states; i++)
		free(p->states[i].state);
	free(p->states);
	p->states = kept;
	p->n_states = n_kept;
	jmap_accounts_reset(&r);
	buf_free(&st);
}

static unsigned
parse_types(const char *t)
{
	unsigned m = 0;

	if (strcmp(t, "*") == 0 || t[0] == '\0')
		return JMAP_PT_ALL;
	while (*t != '\0') {
		size_t n = strcspn(t, ",");

		m |= jmap_push_type_bit(t, n);
		t += n;
		if (*t == ',')
			t++;
	}
	return m;
}

void
jmap_push_start(struct http_session *s)
{
	struct buf types = BUF_INIT(256), close = BUF_INIT(32), ping = BUF_INIT(32);
	struct jmap_push *p = xcalloc(1, sizeof(*p));
	unsigned max_ping = s->svc->cfg->http_push_ping;
	json_t *changed;

	p->s = s;
	p->types = JMAP_PT_ALL;
	if (http_query_param(s->req.query, "types", &types) == 0)
		p->types = parse_types((const char *)types.data ?: "");
	if (http_query_param(s->req.query, "closeafter", &close) == 0)
		p->close_after_state =
		    close.data != NULL && strcmp((char *)close.data, "state") == 0;
	if (http_query_param(s->req.query, "ping", &ping) == 0 && ping.data != NULL)
		p->ping_s = (unsigned)strtoul((char *)ping.data, NULL, 10);
	if (p->ping_s > max_ping)
		p->ping_s = max_ping;
	buf_free(&types);
	buf_free(&close);
	buf_free(&ping);

	/* The stream ends with the connection: no length, no keep-alive. */
	s->req.keep_alive = false;
	http_respond_head(s, 200, "text/event-stream", -1,
	                  "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
	s->push = p;
	conn_set_idle_timeout(s->c, 7 * 24 * 3600);
	changed = json_object();
	push_scan(p, changed);
	if (p->ping_s > 0)
		conn_printf(s->c, "event: ping\ndata: {\"interval\":%u}\n\n", p->ping_s);
	if (!p->close_after_state)
		send_state(p, changed);
	else
		json_decref(changed);
	conn_set_timer(s->c, (p->ping_s > 0 ? p->ping_s : max_ping) * 1000u);
	conn_log(s->c, LOG_LEVEL_INFO, "event=push_start user=%s accounts=%zu mailboxes=%zu",
	         LOG_QUOTE(s->user), p->n_states, p->n_watches);
}

void
jmap_push_wake(struct http_session *s, bool timer)
{
	struct jmap_push *p = s->push;
	json_t *changed = json_object();

	push_scan(p, changed);
	if (json_object_size(changed) > 0)
		send_state(p, changed);
	else
		json_decref(changed);
	if (timer) {
		if (p->ping_s > 0)
			conn_printf(s->c, "event: ping\ndata: {\"interval\":%u}\n\n", p->ping_s);
		conn_set_timer(s->c,
		               (p->ping_s > 0 ? p->ping_s : s->svc->cfg->http_push_ping) * 1000u);
	}
}

void
jmap_push_free(struct jmap_push **pp)
{
	struct jmap_push *p = *pp;

	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_watches; i++) {
		storage_unwatch(&p->watches[i].w);
		conn_unref(p->s->c);
		free(p->watches[i].name);
	}
	free(p->watches);
	for (size_t i = 0; i < p->n_states; i++)
		free(p->states[i].state);
	free(p->states);
	free(p);
	*pp = NULL;
}
