/*
 * PushSubscription/get and PushSubscription/set (RFC 8620 7.2.1, 7.2.2).
 * Subscriptions belong to the credentials' user, not to an account: no
 * accountId, no state. The url (and keys) are never shown back. A new
 * subscription gets a PushVerification POSTed to its url and receives
 * StateChanges only once the client has set verificationCode to the code
 * that came with it. With keys, every push is encrypted for the client
 * (RFC 8291, jmap_push_crypt.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/http_client.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_push_impl.h"

#define MAX_DEVICE_ID 255
#define MAX_TYPES 16
#define MAX_TYPE_NAME 64

static const char *const get_props[] = {"id", "deviceClientId", "verificationCode", "expires",
                                        "types"};

static struct jmap_pushd *
pushd(struct jmap_req *r)
{
	return r->s != NULL ? r->s->svc->push : NULL;
}

void
jmap_push_sub_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids = NULL, *props = json_object_get(args, "properties");
	json_t *all, *list = json_array(), *not_found = json_array(), *seen = json_object(), *o, *v;
	json_t *nf_seen = json_object();
	size_t i;

	if (json_is_null(props))
		props = NULL;
	if (props != NULL && !json_is_array(props)) {
		jmap_error(r, "invalidArguments", "properties must be an array", tag);
		goto out;
	}
	json_array_foreach(props, i, v)
	{
		const char *p = json_string_value(v);
		bool known = false;

		if (p != NULL && (strcmp(p, "url") == 0 || strcmp(p, "keys") == 0)) {
			jmap_error(r, "forbidden", "url and keys are never returned", tag);
			goto out;
		}
		for (size_t n = 0; p != NULL && n < sizeof(get_props) / sizeof(get_props[0]); n++)
			known = known || strcmp(p, get_props[n]) == 0;
		if (!known) {
			jmap_error(r, "invalidArguments", "unknown property", tag);
			goto out;
		}
	}
	if (!jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_ALL, tag, &ids))
		goto out;
	all = pushd(r) != NULL ? jmap_push_list(pushd(r), r->user) : json_array();
	json_array_foreach(all, i, o)
	{
		const char *id = json_string_value(json_object_get(o, "id"));
		json_t *out, *pv;
		const char *pk;
		bool want = ids == NULL;
		size_t n;

		json_array_foreach(ids, n, v)
		{
			const char *w = jmap_resolve_id(r, json_string_value(v));

			want = want || (w != NULL && strcmp(w, id) == 0);
		}
		if (!want)
			continue;
		json_object_set_new(seen, id, json_true());
		out = json_object();
		json_object_foreach(o, pk, pv)
		{
			if (strcmp(pk, "id") == 0 || jmap_prop_wanted(props, get_props, 5, pk))
				json_object_set(out, pk, pv);
		}
		json_array_append_new(list, out);
	}
	json_decref(all);
	json_array_foreach(ids, i, v)
	{
		const char *w = jmap_resolve_id(r, json_string_value(v));

		if ((w == NULL || json_object_get(seen, w) == NULL) &&
		    !jmap_id_repeat(nf_seen, json_string_value(v)))
			json_array_append(not_found, v);
	}
	jmap_reply(
	    r, "PushSubscription/get",
	    json_pack("{sOsO}", "list", list, "notFound", ids == NULL ? json_null() : not_found),
	    tag);
out:
	json_decref(list);
	json_decref(not_found);
	json_decref(seen);
	json_decref(nf_seen);
}

/* ---- create ---- */

static bool
types_valid(json_t *t)
{
	size_t i;
	json_t *v;

	if (t == NULL || json_is_null(t))
		return true;
	if (!json_is_array(t) || json_array_size(t) > MAX_TYPES)
		return false;
	json_array_foreach(t, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) == 0 ||
		    json_string_length(v) > MAX_TYPE_NAME)
			return false;
	}
	return true;
}

/* expires as asked (null: the longest), bounded by the server; false when
 * malformed or in the past. */
static bool
bound_expires(const struct roost_config *cfg, json_t *v, int64_t *t_r, bool *changed_r)
{
	int64_t now = time(NULL), max = now + cfg->http_push_expiry, t;

	*changed_r = false;
	if (v == NULL || json_is_null(v)) {
		*t_r = max;
		*changed_r = true;
		return true;
	}
	if (!json_is_string(v) || jmap_parse_date(json_string_value(v), &t) != 0 || t <= now)
		return false;
	if (t > max) {
		t = max;
		*changed_r = true;
	}
	*t_r = t;
	return true;
}

static json_t *
invalid(const char *prop, const char *desc)
{
	json_t *e = jmap_set_error("invalidProperties", desc);

	json_object_set_new(e, "properties", json_pack("[s]", prop));
	return e;
}

/* The url's problem, or NULL when it may be used. */
static const char *
url_problem(const struct roost_config *cfg, const char *url)
{
	char host[256];
	unsigned port;
	const char *path;
	bool https;

	if (httpc_parse_url(url, &https, host, sizeof(host), &port, &path) != 0)
		return "url is not a valid http(s) URL";
	if (!https && !cfg->http_push_private_urls)
		return "url must be https";
	return NULL;
}

static json_t *
create_one(struct jmap_req *r, void *ctx, json_t *o, json_t **created_r)
{
	const struct roost_config *cfg = r->s->svc->cfg;
	struct jmap_pushd *d = pushd(r);
	const char *dev, *url, *k, *why;
	json_t *v, *types, *keys = NULL;
	struct push_sub *p;
	int64_t exp;
	bool exp_changed;
	char date[21];
	int rc;

	if (d == NULL)
		return jmap_set_error("forbidden", "push subscriptions are not enabled");
	if (!json_is_object(o))
		return jmap_set_error("invalidProperties", "not an object");
	json_object_foreach(o, k, v)
	{
		if (strcmp(k, "deviceClientId") != 0 && strcmp(k, "url") != 0 &&
		    strcmp(k, "keys") != 0 && strcmp(k, "expires") != 0 &&
		    strcmp(k, "types") != 0 && strcmp(k, "verificationCode") != 0)
			return invalid(k, "unknown or server-set property");
	}
	dev = json_string_value(json_object_get(o, "deviceClientId"));
	if (dev == NULL || dev[0] == '\0' || strlen(dev) > MAX_DEVICE_ID)
		return invalid("deviceClientId", "a string of 1 to 255 bytes is required");
	url = json_string_value(json_object_get(o, "url"));
	if (url == NULL)
		return invalid("url", "a string is required");
	if ((why = url_problem(cfg, url)) != NULL)
		return invalid("url", why);
	v = json_object_get(o, "keys");
	if (v != NULL && !json_is_null(v)) {
		uint8_t pub[JMAP_PUSH_P256DH_LEN], auth[JMAP_PUSH_AUTH_LEN];

		if (!json_is_object(v) || json_object_size(v) != 2 ||
		    jmap_push_keys_decode(json_string_value(json_object_get(v, "p256dh")),
		                          json_string_value(json_object_get(v, "auth")), pub,
		                          auth) != 0)
			return invalid("keys", "keys must be {p256dh, auth} in base64url: a P-256 "
			                       "point and 16 bytes (RFC 8291)");
		keys = v;
	}
	v = json_object_get(o, "verificationCode");
	if (v != NULL && !json_is_null(v))
		return invalid("verificationCode", "must be null on create");
	if (!bound_expires(cfg, json_object_get(o, "expires"), &exp, &exp_changed))
		return invalid("expires", "a UTCDate in the future is required");
	types = json_object_get(o, "types");
	if (!types_valid(types))
		return invalid("types", "null or an array of type names");
	if (jmap_push_count(d, r->user) >= cfg->http_push_subscriptions)
		return jmap_set_error("overQuota", "too many push subscriptions");

	p = xcalloc(1, sizeof(*p));
	jmap_push_new_id(p->id, p->code);
	snprintf(p->account, sizeof(p->account), "%s", r->account);
	p->user = xstrdup(r->user);
	p->device = xstrdup(dev);
	p->url = xstrdup(url);
	p->expires = exp;
	if (json_is_array(types))
		p->types_json = json_incref(types);
	p->types = jmap_push_types(types);
	if (keys != NULL) {
		p->p256dh = xstrdup(json_string_value(json_object_get(keys, "p256dh")));
		p->auth = xstrdup(json_string_value(json_object_get(keys, "auth")));
	}
	p->need_verify = true;
	if ((rc = jmap_push_store(r->store, p, false)) != 0) {
		json_decref(p->types_json);
		free(p->user);
		free(p->device);
		free(p->url);
		free(p->p256dh);
		free(p->auth);
		free(p);
		return jmap_storage_set_error(rc, NULL);
	}
	jmap_utc_date(exp, date);
	*created_r = json_pack("{ss}", "id", p->id);
	if (exp_changed)
		json_object_set_new(*created_r, "expires", json_string(date));
	log_info("event=push_subscribe subscription=%s user=%s device=%s", p->id,
	         LOG_QUOTE(r->user), LOG_QUOTE(dev));
	jmap_push_add(d, p);
	return NULL;
}

/* ---- update ---- */

struct patch {
	const struct roost_config *cfg;
	json_t *o;
	const char *state; /* the account's state now, for a verification */
	json_t *error;     /* the SetError when refused */
	json_t *updated;   /* what the server changed beyond the patch */
};

static int
apply(struct push_sub *p, void *arg)
{
	struct patch *pt = arg;
	const char *k;
	json_t *v;
	int64_t exp = p->expires;
	bool exp_changed = false, verify = false;

	json_object_foreach(pt->o, k, v)
	{
		if (strcmp(k, "verificationCode") == 0) {
			if (!json_is_string(v) || strcmp(json_string_value(v), p->code) != 0) {
				pt->error = invalid(k, "not the code sent to the url");
				return ROOST_EINVAL;
			}
			verify = true;
		} else if (strcmp(k, "expires") == 0) {
			if (!bound_expires(pt->cfg, v, &exp, &exp_changed)) {
				pt->error = invalid(k, "a UTCDate in the future is required");
				return ROOST_EINVAL;
			}
		} else if (strcmp(k, "types") == 0) {
			if (!types_valid(v)) {
				pt->error = invalid(k, "null or an array of type names");
				return ROOST_EINVAL;
			}
		} else if (strcmp(k, "id") == 0 || strcmp(k, "deviceClientId") == 0 ||
		           strcmp(k, "url") == 0) {
			const char *now = strcmp(k, "id") == 0               ? p->id
			                  : strcmp(k, "deviceClientId") == 0 ? p->device
			                                                     : p->url;

			if (!json_is_string(v) || strcmp(json_string_value(v), now) != 0) {
				pt->error = invalid(k, "immutable");
				return ROOST_EINVAL;
			}
		} else if (strcmp(k, "keys") == 0) {
			if (!json_is_null(v)) {
				pt->error = invalid(k, "immutable");
				return ROOST_EINVAL;
			}
		} else {
			pt->error = invalid(k, "unknown property");
			return ROOST_EINVAL;
		}
	}
	/* Every check passed: apply. */
	if (json_object_get(pt->o, "expires") != NULL) {
		p->expires = exp;
		if (exp_changed) {
			char date[21];

			jmap_utc_date(exp, date);
			pt->updated = json_pack("{ss}", "expires", date);
		}
	}
	if ((v = json_object_get(pt->o, "types")) != NULL) {
		json_decref(p->types_json);
		p->types_json = json_is_array(v) ? json_incref(v) : NULL;
		p->types = jmap_push_types(v);
	}
	if (verify && !p->verified) {
		p->verified = true;
		p->need_verify = false;
		/* Changes from now on are pushed; this state is the start. */
		free(p->pushed_state);
		p->pushed_state = pt->state != NULL ? xstrdup(pt->state) : NULL;
		p->dirty = false;
	}
	return 0;
}

static json_t *
update_one(struct jmap_req *r, void *ctx, const char *id, json_t *o, json_t **updated_r)
{
	struct jmap_pushd *d = pushd(r);
	struct patch pt = {.cfg = r->s->svc->cfg, .o = o};
	struct push_sub copy;
	struct buf st = BUF_INIT(0);
	int rc;

	if (d == NULL)
		return jmap_set_error("notFound", NULL);
	if (!json_is_object(o))
		return jmap_set_error("invalidPatch", NULL);
	if (json_object_get(o, "verificationCode") != NULL) {
		jmap_mailboxes_reset(r);
		jmap_state(r, &st);
		pt.state = (const char *)st.data;
	}
	rc = jmap_push_update(d, r->user, id, apply, &pt, &copy);
	buf_free(&st);
	if (rc == ROOST_ENOTFOUND)
		return jmap_set_error("notFound", NULL);
	if (rc != 0)
		return pt.error != NULL ? pt.error : jmap_set_error("invalidProperties", NULL);
	rc = jmap_push_store(r->store, &copy, false);
	jmap_push_copy_free(&copy);
	if (rc != 0) {
		json_decref(pt.updated);
		return jmap_storage_set_error(rc, NULL);
	}
	*updated_r = pt.updated != NULL ? pt.updated : json_null();
	return NULL;
}

static json_t *
destroy_one(struct jmap_req *r, void *ctx, const char *id)
{
	if (pushd(r) == NULL || jmap_push_destroy(pushd(r), r->user, id) != 0)
		return jmap_set_error("notFound", NULL);
	log_info("event=push_unsubscribe subscription=%s user=%s", id, LOG_QUOTE(r->user));
	return NULL;
}

/* No accountId and no state (RFC 8620 7.2.2). */
void
jmap_push_sub_set(struct jmap_req *r, json_t *args, const char *tag)
{
	static const struct jmap_set_ops ops = {
	    .name = "PushSubscription/set",
	    .create = create_one,
	    .update = update_one,
	    .destroy = destroy_one,
	};

	jmap_set_run(r, args, tag, &ops, NULL);
}
