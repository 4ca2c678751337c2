/*
 * EmailSubmission (RFC 8621 7); identities are in jmap_identity.c. A submission goes the way an
 * authenticated SMTP submission goes, with the same checks (envelope sender and From: owned by the
 * user, the recipient limit): local recipients are delivered at once, the others through the
 * outbound queue (DKIM-signed when the sender's domain has a key). Submissions are final when
 * created (no delayed sending) and are not kept afterwards, which RFC 8621 7 allows: /get finds
 * none and /query lists none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/delivery.h"
#include "roost/dkim.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/queue.h"
#include "roost/ratelimit.h"
#include "roost/relay.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

#define ADDR_MAX 320

/* Kept submissions never change: no changes since "1". */
static void
no_changes(struct jmap_req *r, json_t *args, const char *tag, const char *name)
{
	const char *since = json_string_value(json_object_get(args, "sinceState"));

	if (!jmap_check_account(r, args, tag))
		return;
	if (since == NULL || strcmp(since, "1") != 0) {
		jmap_error(r, "cannotCalculateChanges", NULL, tag);
		return;
	}
	jmap_reply(r, name,
	           json_pack("{sssssssbs[]s[]s[]}", "accountId", r->account, "oldState", "1",
	                     "newState", "1", "hasMoreChanges", 0, "created", "updated",
	                     "destroyed"),
	           tag);
}

void
jmap_submission_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	no_changes(r, args, tag, "EmailSubmission/changes");
}

void
jmap_submission_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids;

	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_ALL, tag, &ids))
		return;
	jmap_reply(r, "EmailSubmission/get",
	           json_pack("{sssss[]so}", "accountId", r->account, "state", "1", "list",
	                     "notFound", json_is_array(ids) ? json_incref(ids) : json_array()),
	           tag);
}

void
jmap_submission_query(struct jmap_req *r, json_t *args, const char *tag)
{
	if (!jmap_check_account(r, args, tag))
		return;
	jmap_reply(r, "EmailSubmission/query",
	           json_pack("{sssssbs[]sisi}", "accountId", r->account, "queryState", "1",
	                     "canCalculateChanges", 0, "ids", "position", 0, "total", 0),
	           tag);
}

static bool
addr_ok(const char *a)
{
	const char *at = a != NULL ? strrchr(a, '@') : NULL;

	return at != NULL && at != a && at[1] != '\0' && strlen(a) < ADDR_MAX &&
	       strpbrk(a, " \t\r\n<>,\"()") == NULL;
}

struct rcpts {
	char **v;
	size_t n;
};

static void
rcpt_add(struct rcpts *l, const char *a)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcasecmp(l->v[i], a) == 0)
			return;
	}
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(a);
}

static void
rcpts_free(struct rcpts *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static void
addresses_of(json_t *email, const char *prop, struct rcpts *l)
{
	json_t *a;
	size_t i;

	json_array_foreach(json_object_get(email, prop), i, a)
	{
		const char *e = json_string_value(json_object_get(a, "email"));

		if (e != NULL)
			rcpt_add(l, e);
	}
}

/* The message without its Bcc fields: trace and Bcc never leave. */
static void
without_bcc(const uint8_t *msg, size_t len, size_t hdr_len, struct buf *out)
{
	size_t i = 0;
	bool skip = false;

	while (i < hdr_len) {
		const uint8_t *lf = memchr(msg + i, '\n', hdr_len - i);
		size_t end = lf != NULL ? (size_t)(lf - msg) + 1 : hdr_len;

		if (msg[i] != ' ' && msg[i] != '\t')
			skip = end - i >= 4 && strncasecmp((const char *)msg + i, "Bcc:", 4) == 0;
		if (!skip)
			buf_append(out, msg + i, end - i);
		i = end;
	}
	buf_append(out, msg + hdr_len, len - hdr_len);
}

/*
 * The user's hourly sending allowance, the one SMTP submission draws on
 * (roost/ratelimit.h): one message and its recipients. Past it the
 * submission gets rateLimit (RFC 8620 5.3: "may work if tried again
 * later") with the wait in its description; NULL when it may go.
 */
static json_t *
rate_limited(struct jmap_req *r, const struct roost_services *sv, const char *user,
             unsigned n_rcpts)
{
	const char *kind = "recipients";
	int64_t now = ratelimit_now_ms();
	unsigned wait = 0;
	char why[200];

	if (ratelimit_take(sv->rate, user, RATELIMIT_MESSAGES, 1, now, &wait) == 0) {
		if (ratelimit_take(sv->rate, user, RATELIMIT_RECIPIENTS, n_rcpts, now, &wait) == 0)
			return NULL;
		snprintf(why, sizeof(why),
		         "too many recipients an hour (at most %u), try again in %u s",
		         sv->cfg->smtp_user_recipients_per_hour, wait);
	} else {
		kind = "messages";
		snprintf(why, sizeof(why),
		         "too many messages an hour (at most %u), try again in %u s",
		         sv->cfg->smtp_user_messages_per_hour, wait);
	}
	conn_log(r->s->c, LOG_LEVEL_INFO, "event=rate_limited kind=%s user=%s retry_after=%u", kind,
	         LOG_QUOTE(user), wait);
	return jmap_set_error("rateLimit", why);
}

static json_t *
submit(struct jmap_req *r, const uint8_t *msg, size_t len, const struct message_part *root,
       const char *from, const struct rcpts *to)
{
	const struct roost_services *sv = r->s->svc;
	struct delivery_rcpt *local = xcalloc(to->n + 1, sizeof(*local));
	struct queue_rcpt_in *remote = xcalloc(to->n + 1, sizeof(*remote));
	struct buf clean = BUF_INIT(0), trace = BUF_INIT(0), full = BUF_INIT(0), pre = BUF_INIT(0);
	struct delivery_trace t = {0};
	char id[DELIVERY_ID_LEN], qid[QUEUE_ID_LEN], bad[ADDR_MAX];
	size_t n_local = 0, n_remote = 0;
	json_t *err = NULL;
	int rc;

	if (!relay_sender_allowed(sv->cfg, sv->aliases, r->user, from)) {
		err = jmap_set_error("forbiddenMailFrom", NULL);
		goto out;
	}
	if (relay_from_header_check(sv->cfg, sv->aliases, r->user, msg + root->header_off,
	                            root->header_len, bad, sizeof(bad)) != 0) {
		err = jmap_set_error("forbiddenFrom", NULL);
		goto out;
	}
	if (to->n == 0) {
		err = jmap_set_error("noRecipients", NULL);
		goto out;
	}
	if (to->n > conn_config(r->s->c)->max_recipients) {
		err = jmap_set_error("tooManyRecipients", NULL);
		goto out;
	}
	if ((err = rate_limited(r, sv, r->user, (unsigned)to->n)) != NULL)
		goto out;
	for (size_t i = 0; i < to->n; i++) {
		struct delivery_rcpt d;

		if (!addr_ok(to->v[i])) {
			err = json_pack("{sss[s]}", "type", "invalidRecipients",
			                "invalidRecipients", to->v[i]);
			goto out;
		}
		rc = delivery_resolve(sv, to->v[i], &d);
		if (rc == 0) {
			local[n_local++] = d;
		} else if (rc == ROOST_EPERM && sv->queue != NULL) {
			remote[n_remote++].addr = to->v[i];
		} else {
			err = json_pack("{sss[s]}", "type", "invalidRecipients",
			                "invalidRecipients", to->v[i]);
			goto out;
		}
	}
	without_bcc(msg, len, root->header_len, &clean);
	delivery_new_id(id);
	t.sender = from;
	t.peer = conn_peer(r->s->c);
	t.protocol = conn_is_tls(r->s->c) ? "HTTPSA" : "HTTPA";
	t.tls_info = conn_tls_info(r->s->c);
	t.id = id;
	delivery_trace_headers(sv->cfg, &t, &trace);
	if (n_remote > 0) {
		struct queue_submission sub = {0};
		const char *received = strstr(buf_cstr(&trace), "Received:");
		const char *dom = strrchr(from, '@');

		if (dom != NULL)
			(void)dkim_sign(sv->cfg, dom + 1, clean.data, clean.len, &pre);
		if (received != NULL)
			buf_append_str(&pre, received);
		sub.id = id;
		sub.sender = from;
		sub.user = r->user;
		sub.rcpts = remote;
		sub.n_rcpts = n_remote;
		sub.prefix = pre.data;
		sub.prefix_len = pre.len;
		sub.data = clean.data;
		sub.len = clean.len;
		sub.fd = -1;
		if (queue_submit(sv->queue, &sub, qid) != 0) {
			err = jmap_set_error("serverFail", "the queue is not available");
			goto out;
		}
	}
	buf_append(&full, trace.data, trace.len);
	buf_append(&full, clean.data, clean.len);
	if (n_local > 0) {
		struct delivery_target *dt = xcalloc(n_local, sizeof(*dt));
		struct msg_input in = {.data = full.data, .len = full.len, .fd = -1};

		for (size_t i = 0; i < n_local; i++)
			dt[i] = (struct delivery_target){.user = local[i].user,
			                                 .mailbox = local[i].mailbox};
		rc = delivery_store(sv, from, &in, dt, n_local, true);
		free(dt);
	} else {
		rc = 0;
	}
	if (n_remote > 0)
		queue_commit(sv->queue, qid, rc == 0);
	if (rc != 0) {
		err = jmap_set_error("serverFail", roost_strerror(rc));
		goto out;
	}
	conn_log(r->s->c, LOG_LEVEL_INFO,
	         "event=submitted id=%s from=%s user=%s local=%zu remote=%zu size=%zu", id,
	         LOG_QUOTE(from), LOG_QUOTE(r->user), n_local, n_remote, clean.len);
out:
	free(local);
	free(remote);
	buf_free(&clean);
	buf_free(&trace);
	buf_free(&full);
	buf_free(&pre);
	return err;
}

static json_t *
create_one(struct jmap_req *r, json_t *sub, char sid[40])
{
	const char *ident = json_string_value(json_object_get(sub, "identityId"));
	const char *eid = jmap_resolve_id(r, json_string_value(json_object_get(sub, "emailId")));
	json_t *env = json_object_get(sub, "envelope"), *err = NULL, *email, *props;
	const struct jmap_mbox *m;
	struct jmap_mbc_set set = {0};
	struct jmap_mbc *c;
	struct msg_view v = {0};
	struct message *msg = NULL;
	struct rcpts to = {0};
	char me[ADDR_MAX], from[ADDR_MAX];
	uint8_t rnd[8];
	uint32_t uid;

	if (ident == NULL || jmap_identity_email(r, ident, me, sizeof(me)) == NULL)
		return jmap_set_error("invalidProperties", "identityId");
	if (!jmap_email_parse(r, 'E', eid, &m, &uid) || (c = jmap_mbc_get(r, &set, m)) == NULL ||
	    jmap_read_message(c, uid, &v, &msg) != 0) {
		jmap_mbc_free(&set);
		return jmap_set_error("invalidProperties", "emailId");
	}
	props = json_pack("[sssss]", "from", "sender", "to", "cc", "bcc");
	email = jmap_msg_email(msg, props, NULL, NULL, "0");
	json_decref(props);
	if (env != NULL && !json_is_null(env)) {
		json_t *a;
		size_t i;

		snprintf(
		    from, sizeof(from), "%s",
		    json_string_value(json_object_get(json_object_get(env, "mailFrom"), "email"))
		        ?: "");
		json_array_foreach(json_object_get(env, "rcptTo"), i, a)
		{
			const char *e = json_string_value(json_object_get(a, "email"));

			if (e != NULL)
				rcpt_add(&to, e);
		}
	} else {
		json_t *who = json_object_get(email, "sender");

		if (json_array_size(who) == 0)
			who = json_object_get(email, "from");
		snprintf(from, sizeof(from), "%s",
		         json_string_value(json_object_get(json_array_get(who, 0), "email")) ?: "");
		addresses_of(email, "to", &to);
		addresses_of(email, "cc", &to);
		addresses_of(email, "bcc", &to);
	}
	if (!addr_ok(from))
		err = jmap_set_error("invalidProperties", "envelope/mailFrom");
	else
		err = submit(r, v.data, v.len, message_root(msg), from, &to);
	if (err == NULL) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			memset(rnd, 0, sizeof(rnd));
		sid[0] = 'S';
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(sid + 1 + 2 * i, 3, "%02x", rnd[i]);
	}
	json_decref(email);
	rcpts_free(&to);
	message_free(&msg);
	msg_view_release(&v);
	jmap_mbc_free(&set);
	return err;
}

/* EmailSubmission/set's context: the email each submission created in
 * this call sent, by the submission's id, for onSuccessUpdateEmail and
 * onSuccessDestroyEmail. */
struct sub_set {
	json_t *sent; /* submission id -> email id */
};

/* Kept submissions never change: the state is always "1". */
static bool
sub_state(struct jmap_req *r, void *ctx, struct buf *out)
{
	buf_append_str(out, "1");
	return true;
}

static json_t *
sub_create(struct jmap_req *r, void *ctx, json_t *obj, json_t **created_r)
{
	struct sub_set *s = ctx;
	const char *eid = jmap_resolve_id(r, json_string_value(json_object_get(obj, "emailId")));
	char sid[40], date[21];
	json_t *err = create_one(r, obj, sid);

	if (err != NULL)
		return err;
	jmap_utc_date((int64_t)time(NULL), date);
	*created_r = json_pack("{sssssssn}", "id", sid, "undoStatus", "final", "sendAt", date,
	                       "deliveryStatus");
	if (eid != NULL)
		json_object_set_new(s->sent, sid, json_string(eid));
	return NULL;
}

/* Submissions are final at once and not kept: none to change or destroy. */
static json_t *
sub_update(struct jmap_req *r, void *ctx, const char *id, json_t *patch, json_t **updated_r)
{
	return jmap_set_error("notFound", NULL);
}

static json_t *
sub_destroy(struct jmap_req *r, void *ctx, const char *id)
{
	return jmap_set_error("notFound", NULL);
}

/* RFC 8621 7.5: the implicit Email/set of onSuccessUpdateEmail and
 * onSuccessDestroyEmail, for the submissions this call created (in sent),
 * answers under the same call id; none when nothing applies. */
static void
on_success_email_set(struct jmap_req *r, json_t *args, json_t *sent, const char *tag)
{
	json_t *on_update = json_object_get(args, "onSuccessUpdateEmail");
	json_t *on_destroy = json_object_get(args, "onSuccessDestroyEmail");
	json_t *upd = json_object(), *dst = json_array(), *v;
	const char *key;

	json_object_foreach(json_object_get(args, "create"), key, v)
	{
		const char *sid = json_string_value(json_object_get(r->created_ids, key));
		const char *eid = json_string_value(json_object_get(sent, sid != NULL ? sid : ""));
		char ref[300];
		json_t *p;
		size_t i;

		if (eid == NULL)
			continue;
		snprintf(ref, sizeof(ref), "#%s", key);
		if ((p = json_object_get(on_update, ref)) != NULL)
			json_object_set(upd, eid, p);
		json_array_foreach(on_destroy, i, p)
		{
			if (json_is_string(p) && strcmp(json_string_value(p), ref) == 0)
				json_array_append_new(dst, json_string(eid));
		}
	}
	if (json_object_size(upd) > 0 || json_array_size(dst) > 0) {
		json_t *a =
		    json_pack("{sssOsO}", "accountId", r->account, "update", upd, "destroy", dst);

		jmap_email_set(r, a, tag);
		json_decref(a);
	}
	json_decref(upd);
	json_decref(dst);
}

void
jmap_submission_set(struct jmap_req *r, json_t *args, const char *tag)
{
	static const struct jmap_set_ops ops = {
	    .name = "EmailSubmission/set",
	    .state = sub_state,
	    .create = sub_create,
	    .update = sub_update,
	    .destroy = sub_destroy,
	};
	struct sub_set s = {.sent = json_object()};

	jmap_set_run(r, args, tag, &ops, &s);
	on_success_email_set(r, args, s.sent, tag);
	json_decref(s.sent);
}
