/*
 * JMAP core (RFC 8620): the API endpoint (method calls in order, result
 * references, the request-level and method-level errors), Core/echo, and
 * the ids, states and mailbox list the method files share. The Session
 * resource is jmap_session.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static void core_echo(struct jmap_req *r, json_t *args, const char *tag);

static const struct jmap_method methods[] = {
    {"Core/echo", JMAP_CAP_CORE, core_echo},
    {"Blob/copy", JMAP_CAP_CORE, jmap_blob_copy},
    {"PushSubscription/get", JMAP_CAP_CORE, jmap_push_sub_get},
    {"PushSubscription/set", JMAP_CAP_CORE, jmap_push_sub_set},
    {"Blob/get", JMAP_CAP_BLOB, jmap_blob_get},
    {"Mailbox/get", JMAP_CAP_MAIL, jmap_mailbox_get},
    {"Mailbox/changes", JMAP_CAP_MAIL, jmap_mailbox_changes},
    {"Mailbox/query", JMAP_CAP_MAIL, jmap_mailbox_query},
    {"Mailbox/queryChanges", JMAP_CAP_MAIL, jmap_mailbox_query_changes},
    {"Mailbox/set", JMAP_CAP_MAIL, jmap_mailbox_set},
    {"Thread/get", JMAP_CAP_MAIL, jmap_thread_get},
    {"Thread/changes", JMAP_CAP_MAIL, jmap_thread_changes},
    {"Email/get", JMAP_CAP_MAIL, jmap_email_get},
    {"Email/changes", JMAP_CAP_MAIL, jmap_email_changes},
    {"Email/query", JMAP_CAP_MAIL, jmap_email_query},
    {"Email/queryChanges", JMAP_CAP_MAIL, jmap_email_query_changes},
    {"Email/set", JMAP_CAP_MAIL, jmap_email_set},
    {"Email/import", JMAP_CAP_MAIL, jmap_email_import},
    {"Email/parse", JMAP_CAP_MAIL, jmap_email_parse_method},
    {"Email/copy", JMAP_CAP_MAIL, jmap_email_copy},
    {"SearchSnippet/get", JMAP_CAP_MAIL, jmap_snippet_get},
    {"Identity/get", JMAP_CAP_SUBMISSION, jmap_identity_get},
    {"Identity/changes", JMAP_CAP_SUBMISSION, jmap_identity_changes},
    {"Identity/set", JMAP_CAP_SUBMISSION, jmap_identity_set},
    {"EmailSubmission/get", JMAP_CAP_SUBMISSION, jmap_submission_get},
    {"EmailSubmission/changes", JMAP_CAP_SUBMISSION, jmap_submission_changes},
    {"EmailSubmission/query", JMAP_CAP_SUBMISSION, jmap_submission_query},
    {"EmailSubmission/set", JMAP_CAP_SUBMISSION, jmap_submission_set},
    {"VacationResponse/get", JMAP_CAP_VACATION, jmap_vacation_get},
    {"VacationResponse/set", JMAP_CAP_VACATION, jmap_vacation_set},
};

/* ---- ids, dates, states ---- */

uint64_t
jmap_name_digest(const char *name)
{
	return hash_str64(name);
}

static bool
parse_hex(const char *p, size_t n, uint64_t *r)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*r = v;
	return true;
}

void
jmap_utc_date(int64_t t, char out[21])
{
	time_t tt = (time_t)t;
	struct tm tm;
	char tmp[80];

	gmtime_r(&tt, &tm);
	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02dZ", (tm.tm_year + 1900) % 10000,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(out, tmp, 20);
	out[20] = '\0';
}

int
jmap_parse_date(const char *s, int64_t *t_r)
{
	struct tm tm;
	int n = 0, oh = 0, om = 0;
	char sign = 0;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return ROOST_EINVAL;
	s += n;
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s;
		if (sscanf(s + 1, "%2d:%2d", &oh, &om) != 2)
			return ROOST_EINVAL;
		s += 6;
	} else {
		return ROOST_EINVAL;
	}
	if (*s != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12)
		return ROOST_EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*t_r = (int64_t)timegm(&tm) - (sign == '+'   ? 1
	                               : sign == '-' ? -1
	                                             : 0) *
	                                  (oh * 3600 + om * 60);
	return 0;
}

uint32_t
jmap_keyword_flag(const char *kw)
{
	if (strcasecmp(kw, "$seen") == 0)
		return MSG_SEEN;
	if (strcasecmp(kw, "$answered") == 0)
		return MSG_ANSWERED;
	if (strcasecmp(kw, "$flagged") == 0)
		return MSG_FLAGGED;
	if (strcasecmp(kw, "$draft") == 0)
		return MSG_DRAFT;
	return 0;
}

void
jmap_mailboxes_reset(struct jmap_req *r)
{
	for (size_t i = 0; i < r->n_mboxes; i++)
		free(r->mboxes[i].name);
	free(r->mboxes);
	r->mboxes = NULL;
	r->n_mboxes = 0;
	r->loaded = false;
	jmap_elocs_reset(r);
	jmap_threads_reset(r);
}

/* Mark the shared mailboxes the user subscribed to: subscriptions are
 * kept in the user's own list, as names that do not exist there. */
static void
mark_subscribed(struct jmap_req *r)
{
	struct mailbox_info *own = NULL;
	size_t n = 0;

	if (storage_list(r->store, r->user, &own, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if ((own[i].attrs & MBOX_SUBSCRIBED) == 0)
			continue;
		for (size_t k = 0; k < r->n_mboxes; k++) {
			if (strcmp(r->mboxes[k].name, own[i].name) == 0)
				r->mboxes[k].attrs |= MBOX_SUBSCRIBED;
		}
	}
	storage_list_free(own, n);
}

int
jmap_mailboxes(struct jmap_req *r)
{
	struct mailbox_info *list = NULL;
	size_t n = 0, plen = r->prefix != NULL ? strlen(r->prefix) : 0;
	int rc;

	if (r->loaded)
		return 0;
	/* the personal account is the user's own list; a shared one the
	 * names under its prefix of what others share (as LIST shows them) */
	if (r->prefix == NULL)
		rc = storage_list(r->store, r->user, &list, &n);
	else
		rc = storage_acl_shared_list(r->store, r->user, &list, &n);
	if (rc != 0)
		return rc;
	r->mboxes = xcalloc(n + 1, sizeof(*r->mboxes));
	for (size_t i = 0; i < n; i++) {
		struct jmap_mbox *m = &r->mboxes[r->n_mboxes];

		if (list[i].attrs & (MBOX_NONEXISTENT | MBOX_NOSELECT))
			continue;
		if (r->prefix == NULL ? storage_acl_name_foreign(r->store, list[i].name)
		                      : strncmp(list[i].name, r->prefix, plen) != 0)
			continue;
		if (storage_status(r->store, r->user, list[i].name, &m->st) != 0)
			continue; /* gone meanwhile, or no right to read it */
		m->rights = ACL_RIGHTS_ALL;
		if (r->prefix != NULL &&
		    storage_acl_myrights(r->store, r->user, list[i].name, &m->rights) != 0)
			continue;
		m->name = xstrdup(list[i].name);
		m->local = m->name + plen;
		m->attrs = list[i].attrs;
		/* the MAILBOXID's digest: a rename keeps it */
		m->digest = jmap_name_digest(m->st.mailboxid);
		snprintf(m->id, sizeof(m->id), "M%016llx", (unsigned long long)m->digest);
		r->n_mboxes++;
	}
	storage_list_free(list, n);
	if (r->prefix != NULL)
		mark_subscribed(r);
	r->loaded = true;
	return 0;
}

uint32_t
jmap_mbox_name_hash(const struct jmap_mbox *m)
{
	return (uint32_t)jmap_name_digest(m->name);
}

const struct jmap_mbox *
jmap_mbox_by_digest(struct jmap_req *r, uint64_t digest)
{
	if (jmap_mailboxes(r) != 0)
		return NULL;
	for (size_t i = 0; i < r->n_mboxes; i++) {
		if (r->mboxes[i].digest == digest)
			return &r->mboxes[i];
	}
	return NULL;
}

const struct jmap_mbox *
jmap_mbox_by_id(struct jmap_req *r, const char *id)
{
	uint64_t d;

	id = jmap_resolve_id(r, id);
	if (id == NULL || strlen(id) != 17 || id[0] != 'M' || !parse_hex(id + 1, 16, &d))
		return NULL;
	return jmap_mbox_by_digest(r, d);
}

const struct jmap_mbox *
jmap_mbox_by_name(struct jmap_req *r, const char *name)
{
	if (jmap_mailboxes(r) != 0)
		return NULL;
	for (size_t i = 0; i < r->n_mboxes; i++) {
		if (strcmp(r->mboxes[i].name, name) == 0)
			return &r->mboxes[i];
	}
	return NULL;
}

void
jmap_state(struct jmap_req *r, struct buf *out)
{
	buf_append_str(out, "s");
	if (jmap_mailboxes(r) != 0)
		return;
	for (size_t i = 0; i < r->n_mboxes; i++) {
		const struct jmap_mbox *m = &r->mboxes[i];

		buf_printf(out, "%s%016llx.%x.%llx.%x.%x", i > 0 ? "_" : "",
		           (unsigned long long)m->digest, m->st.uidvalidity,
		           (unsigned long long)m->st.highestmodseq, m->st.uidnext,
		           jmap_mbox_name_hash(m));
	}
}

void
jmap_blob_dir(struct jmap_req *r, char *out, size_t size)
{
	/* uploads are the user's, whichever account they were sent to */
	snprintf(out, size, "%s/blobs/%s", r->s->svc->cfg->data_dir, jmap_account_own(r));
}

/* ---- responses ---- */

void
jmap_reply(struct jmap_req *r, const char *name, json_t *args, const char *tag)
{
	json_array_append_new(r->responses, json_pack("[sos]", name, args, tag));
}

void
jmap_error(struct jmap_req *r, const char *type, const char *desc, const char *tag)
{
	json_t *a = json_pack("{ss}", "type", type);

	if (desc != NULL)
		json_object_set_new(a, "description", json_string(desc));
	jmap_reply(r, "error", a, tag);
}

json_t *
jmap_set_error(const char *type, const char *desc)
{
	json_t *e = json_pack("{ss}", "type", type);

	if (desc != NULL)
		json_object_set_new(e, "description", json_string(desc));
	return e;
}

json_t *
jmap_storage_set_error(int rc, const char *invalid_desc)
{
	switch (rc) {
	case ROOST_EEXISTS:
		return jmap_set_error("alreadyExists", NULL);
	case ROOST_EINVAL:
		return jmap_set_error("invalidProperties", invalid_desc);
	case ROOST_ENOTFOUND:
		return jmap_set_error("notFound", NULL);
	case ROOST_EPERM:
	case ROOST_ENOACCESS:
		return jmap_set_error("forbidden", NULL);
	case ROOST_EOVERQUOTA:
	case ROOST_EQUOTATOOBIG:
		return jmap_set_error("overQuota", NULL);
	case ROOST_ETOOBIG:
		return jmap_set_error("tooLarge", NULL);
	default:
		return jmap_set_error("serverFail", NULL);
	}
}

bool
jmap_prop_wanted(json_t *props, const char *const *defaults, size_t n, const char *name)
{
	json_t *p;
	size_t i;

	if (props == NULL) {
		for (size_t k = 0; k < n; k++) {
			if (strcmp(defaults[k], name) == 0)
				return true;
		}
		return false;
	}
	json_array_foreach(props, i, p)
	{
		if (json_is_string(p) && strcmp(json_string_value(p), name) == 0)
			return true;
	}
	return false;
}

bool
jmap_check_account(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *acc = json_string_value(json_object_get(args, "accountId"));

	if (acc == NULL || !jmap_account_select(r, acc)) {
		jmap_error(r, "accountNotFound", NULL, tag);
		return false;
	}
	return true;
}

bool
jmap_check_id_list(struct jmap_req *r, json_t *args, const char *name, size_t max,
                   enum jmap_ids_null null_is, const char *tag, json_t **ids_r)
{
	json_t *ids = json_object_get(args, name), *v;
	size_t i;

	*ids_r = NULL;
	if (ids == NULL || json_is_null(ids)) {
		if (null_is == JMAP_IDS_NULL_ALL)
			return true;
		jmap_error(
		    r, null_is == JMAP_IDS_NULL_TOO_LARGE ? "requestTooLarge" : "invalidArguments",
		    name, tag);
		return false;
	}
	if (!json_is_array(ids)) {
		jmap_error(r, "invalidArguments", name, tag);
		return false;
	}
	if (json_array_size(ids) > max) {
		jmap_error(r, "requestTooLarge", NULL, tag);
		return false;
	}
	json_array_foreach(ids, i, v)
	{
		if (!json_is_string(v)) {
			jmap_error(r, "invalidArguments", "ids are strings", tag);
			return false;
		}
	}
	*ids_r = ids;
	return true;
}

bool
jmap_check_properties(struct jmap_req *r, json_t *args, const char *tag, json_t **props_r)
{
	json_t *props = json_object_get(args, "properties");

	if (props != NULL && !json_is_null(props) && !json_is_array(props)) {
		jmap_error(r, "invalidArguments", "properties", tag);
		return false;
	}
	*props_r = json_is_null(props) ? NULL : props;
	return true;
}

bool
jmap_id_repeat(json_t *seen, const char *id)
{
	if (json_object_get(seen, id) != NULL)
		return true;
	json_object_set_new(seen, id, json_true());
	return false;
}

void
jmap_get_reply(struct jmap_req *r, const char *method, const char *state, json_t *list,
               json_t *not_found, const char *tag)
{
	struct buf st = BUF_INIT(0);

	if (state == NULL) {
		jmap_state(r, &st);
		state = buf_cstr(&st);
	}
	jmap_reply(r, method,
	           json_pack("{sssssoso}", "accountId", r->account, "state", state, "list", list,
	                     "notFound", not_found),
	           tag);
	buf_free(&st);
}

const char *
jmap_resolve_id(struct jmap_req *r, const char *id)
{
	if (id == NULL)
		return NULL;
	if (id[0] == '#')
		return json_string_value(json_object_get(r->created_ids, id + 1));
	return id;
}

static void
core_echo(struct jmap_req *r, json_t *args, const char *tag)
{
	jmap_reply(r, "Core/echo", json_incref(args), tag);
}

/* ---- result references (RFC 8620 3.7) ---- */

/* Evaluate a JSON Pointer with the "*" extension; a new reference or NULL. */
static json_t *
pointer_eval(json_t *v, const char *path)
{
	char tok[256];
	size_t n = 0;
	const char *p;

	if (*path == '\0')
		return json_incref(v);
	if (*path != '/')
		return NULL;
	p = path + 1;
	while (*p != '\0' && *p != '/') {
		char c = *p++;

		if (c == '~') {
			if (*p == '0')
				c = '~';
			else if (*p == '1')
				c = '/';
			else
				return NULL;
			p++;
		}
		if (n + 1 >= sizeof(tok))
			return NULL;
		tok[n++] = c;
	}
	tok[n] = '\0';
	if (json_is_array(v)) {
		if (strcmp(tok, "*") == 0) {
			json_t *out = json_array(), *e;
			size_t i;

			json_array_foreach(v, i, e)
			{
				json_t *sub = pointer_eval(e, p);

				if (sub == NULL) {
					json_decref(out);
					return NULL;
				}
				if (json_is_array(sub))
					json_array_extend(out, sub);
				else
					json_array_append(out, sub);
				json_decref(sub);
			}
			return out;
		}
		{
			char *end;
			unsigned long idx = strtoul(tok, &end, 10);

			if (*tok == '\0' || *end != '\0' || idx >= json_array_size(v))
				return NULL;
			return pointer_eval(json_array_get(v, idx), p);
		}
	}
	if (json_is_object(v)) {
		json_t *e = json_object_get(v, tok);

		return e != NULL ? pointer_eval(e, p) : NULL;
	}
	return NULL;
}

/* Replace "#name" arguments by what they refer to; false after an error
 * response was written. */
static bool
resolve_refs(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *key;
	json_t *val, *tmp;
	json_t *resolved = json_object();

	json_object_foreach_safe(args, tmp, key, val)
	{
		const char *of, *name, *path;
		json_t *found = NULL, *resp;
		size_t i;

		if (key[0] != '#')
			continue;
		if (json_object_get(args, key + 1) != NULL) {
			json_decref(resolved);
			jmap_error(r, "invalidArguments", "both a value and a reference", tag);
			return false;
		}
		of = json_string_value(json_object_get(val, "resultOf"));
		name = json_string_value(json_object_get(val, "name"));
		path = json_string_value(json_object_get(val, "path"));
		if (of == NULL || name == NULL || path == NULL) {
			json_decref(resolved);
			jmap_error(r, "invalidResultReference", "malformed reference", tag);
			return false;
		}
		json_array_foreach(r->responses, i, resp)
		{
			if (strcmp(json_string_value(json_array_get(resp, 2)), of) == 0 &&
			    strcmp(json_string_value(json_array_get(resp, 0)), name) == 0) {
				found = pointer_eval(json_array_get(resp, 1), path);
				break;
			}
		}
		if (found == NULL) {
			json_decref(resolved);
			jmap_error(r, "invalidResultReference", NULL, tag);
			return false;
		}
		json_object_set_new(resolved, key + 1, found);
		json_object_del(args, key);
	}
	json_object_update(args, resolved);
	json_decref(resolved);
	return true;
}

/* ---- the API endpoint ---- */

static void
problem(struct http_session *s, const char *type, const char *detail)
{
	http_respond_problem(s, 400, type, detail);
}

static unsigned
using_caps(json_t *using, const char **unknown_r)
{
	unsigned caps = 0;
	json_t *v;
	size_t i;

	*unknown_r = NULL;
	json_array_foreach(using, i, v)
	{
		const char *c = json_string_value(v);

		if (c == NULL)
			*unknown_r = "";
		else if (strcmp(c, JMAP_CORE) == 0)
			caps |= JMAP_CAP_CORE;
		else if (strcmp(c, JMAP_MAIL) == 0)
			caps |= JMAP_CAP_MAIL;
		else if (strcmp(c, JMAP_SUBMISSION) == 0)
			caps |= JMAP_CAP_SUBMISSION;
		else if (strcmp(c, JMAP_VACATION) == 0)
			caps |= JMAP_CAP_VACATION;
		else if (strcmp(c, JMAP_BLOB) == 0)
			caps |= JMAP_CAP_BLOB;
		else
			*unknown_r = c;
	}
	return caps;
}

/* Submission, vacation and identities are the user's own (and so is a
 * push subscription, which names no account): in a shared account they
 * answer accountNotSupportedByMethod (RFC 8620 3.6.2). False once that
 * error was written. */
static bool
personal_only(struct jmap_req *r, const struct jmap_method *m, json_t *args, const char *tag)
{
	const char *acc = json_string_value(json_object_get(args, "accountId"));

	if ((m->cap & (JMAP_CAP_SUBMISSION | JMAP_CAP_VACATION)) == 0 || acc == NULL ||
	    strcmp(acc, jmap_account_own(r)) == 0)
		return true;
	if (!jmap_account_select(r, acc)) {
		jmap_error(r, "accountNotFound", NULL, tag);
		return false;
	}
	jmap_error(r, "accountNotSupportedByMethod", NULL, tag);
	return false;
}

static void
run_call(struct jmap_req *r, json_t *call)
{
	const char *name = json_string_value(json_array_get(call, 0));
	json_t *args = json_array_get(call, 1);
	const char *tag = json_string_value(json_array_get(call, 2));
	const struct jmap_method *m = NULL;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strcmp(methods[i].name, name) == 0) {
			m = &methods[i];
			break;
		}
	}
	if (m == NULL || (m->cap & r->using) == 0) {
		jmap_error(r, "unknownMethod", NULL, tag);
		return;
	}
	args = json_deep_copy(args);
	if (resolve_refs(r, args, tag) && personal_only(r, m, args, tag))
		m->run(r, args, tag);
	json_decref(args);
}

static void
api_run(struct http_session *s)
{
	const char *ctype = http_request_field(&s->req, "Content-Type");
	struct jmap_req r;
	json_t *req, *calls, *call, *out;
	const char *unknown;
	json_error_t err;
	size_t i;
	char *text, st[20];

	if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0) {
		problem(s, "urn:ietf:params:jmap:error:notJSON",
		        "The content type must be application/json.");
		return;
	}
	req = json_loadb((const char *)s->body.data, s->body.len, JSON_REJECT_DUPLICATES, &err);
	if (req == NULL) {
		problem(s, "urn:ietf:params:jmap:error:notJSON", "The body is not I-JSON.");
		return;
	}
	calls = json_object_get(req, "methodCalls");
	if (!json_is_object(req) || !json_is_array(json_object_get(req, "using")) ||
	    !json_is_array(calls)) {
		json_decref(req);
		problem(s, "urn:ietf:params:jmap:error:notRequest",
		        "A request needs using and methodCalls.");
		return;
	}
	json_array_foreach(calls, i, call)
	{
		if (!json_is_array(call) || json_array_size(call) != 3 ||
		    !json_is_string(json_array_get(call, 0)) ||
		    !json_is_object(json_array_get(call, 1)) ||
		    !json_is_string(json_array_get(call, 2))) {
			json_decref(req);
			problem(s, "urn:ietf:params:jmap:error:notRequest",
			        "Each method call is [name, arguments, id].");
			return;
		}
	}
	memset(&r, 0, sizeof(r));
	r.using = using_caps(json_object_get(req, "using"), &unknown);
	if (unknown != NULL) {
		json_decref(req);
		problem(s, "urn:ietf:params:jmap:error:unknownCapability",
		        "The request uses a capability this server does not have.");
		return;
	}
	if (json_array_size(calls) > JMAP_MAX_CALLS) {
		json_decref(req);
		jmap_limit_problem(s, "maxCallsInRequest");
		return;
	}
	r.s = s;
	r.store = s->svc->storage;
	r.user = s->user;
	r.account = s->account;
	r.responses = json_array();
	r.created_ids = json_object();
	if (json_is_object(json_object_get(req, "createdIds")))
		json_object_update(r.created_ids, json_object_get(req, "createdIds"));
	(void)storage_user_init(r.store, r.user);
	json_array_foreach(calls, i, call)
	{
		run_call(&r, call);
	}
	if (!r.accts_loaded &&
	    jmap_accounts_shared(r.store, r.user, false, &r.accts, &r.n_accts) == 0)
		r.accts_loaded = true;
	jmap_session_state(s, r.accts, r.n_accts, st);
	out = json_pack("{sOss}", "methodResponses", r.responses, "sessionState", st);
	if (json_object_get(req, "createdIds") != NULL)
		json_object_set(out, "createdIds", r.created_ids);
	text = json_dumps(out, JSON_COMPACT);
	http_respond(s, 200, "application/json", text, strlen(text), "Cache-Control: no-store\r\n");
	free(text);
	json_decref(out);
	json_decref(r.responses);
	json_decref(r.created_ids);
	jmap_mailboxes_reset(&r);
	jmap_accounts_reset(&r);
	json_decref(req);
}

bool
jmap_api_path(const char *path)
{
	return path != NULL && (strcmp(path, "/jmap/api") == 0 || strcmp(path, "/jmap/api/") == 0);
}

void
jmap_api(struct http_session *s)
{
	if (!jmap_limit_enter(s->user, JMAP_LIMIT_REQUESTS)) {
		jmap_limit_problem(s, "maxConcurrentRequests");
		return;
	}
	api_run(s);
	jmap_limit_leave(s->user, JMAP_LIMIT_REQUESTS);
}
