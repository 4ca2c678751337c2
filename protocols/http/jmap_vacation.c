/*
 * VacationResponse (RFC 8621 8): the one object "singleton" of the
 * account, kept by the vacation service (services/vacation.c), which also
 * sends the replies at delivery. Its state is a digest of the object as
 * /get shows it, so any change, from any session, changes the state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/vacation.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

static const char *const props_all[] = {"id",      "isEnabled", "fromDate", "toDate",
                                        "subject", "textBody",  "htmlBody"};
#define N_PROPS (sizeof(props_all) / sizeof(props_all[0]))

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static json_t *
date_or_null(bool has, int64_t t)
{
	char d[21];

	if (!has)
		return json_null();
	jmap_utc_date(t, d);
	return json_string(d);
}

/* The object with every property. */
static json_t *
vacation_object(const struct vacation *v)
{
	json_t *o = json_pack("{sssb}", "id", "singleton", "isEnabled", v->enabled);

	json_object_set_new(o, "fromDate", date_or_null(v->has_from, v->from_date));
	json_object_set_new(o, "toDate", date_or_null(v->has_to, v->to_date));
	json_object_set_new(o, "subject", str_or_null(v->subject));
	json_object_set_new(o, "textBody", str_or_null(v->text_body));
	json_object_set_new(o, "htmlBody", str_or_null(v->html_body));
	return o;
}

static void
state_of(const struct vacation *v, char out[20])
{
	json_t *o = vacation_object(v);
	char *dump = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

	snprintf(out, 20, "v%016llx", (unsigned long long)hash_str64(dump));
	free(dump);
	json_decref(o);
}

/* The setting and its state; false once a serverFail was answered. */
static bool
load(struct jmap_req *r, const char *tag, struct vacation *v, char state[20])
{
	if (vacation_get(r->store, r->user, v) != 0) {
		jmap_error(r, "serverFail", "the vacation response cannot be read", tag);
		return false;
	}
	state_of(v, state);
	return true;
}

void
jmap_vacation_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *props;
	json_t *list, *not_found, *v;
	struct vacation vac;
	char state[20];
	size_t i;

	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_ALL, tag,
	                        &ids) ||
	    !jmap_check_properties(r, args, tag, &props))
		return;
	json_array_foreach(props, i, v)
	{
		if (!json_is_string(v) ||
		    !jmap_prop_wanted(NULL, props_all, N_PROPS, json_string_value(v))) {
			jmap_error(r, "invalidArguments", "unknown property", tag);
			return;
		}
	}
	if (!load(r, tag, &vac, state))
		return;
	list = json_array();
	not_found = json_array();
	{
		json_t *seen = json_object();
		bool want = ids == NULL;

		json_array_foreach(ids, i, v)
		{
			const char *id = json_string_value(v);

			if (jmap_id_repeat(seen, id))
				continue;
			if (strcmp(id, "singleton") == 0)
				want = true;
			else
				json_array_append(not_found, v);
		}
		json_decref(seen);
		if (want) {
			json_t *full = vacation_object(&vac), *o = json_object();
			const char *k;

			json_object_foreach(full, k, v)
			{
				if (strcmp(k, "id") == 0 ||
				    jmap_prop_wanted(props, props_all, N_PROPS, k))
					json_object_set(o, k, v);
			}
			json_decref(full);
			json_array_append_new(list, o);
		}
	}
	jmap_get_reply(r, "VacationResponse/get", state, list, not_found, tag);
	vacation_free(&vac);
}

static bool
set_text(json_t *val, char **field)
{
	if (json_is_null(val)) {
		free(*field);
		*field = NULL;
		return true;
	}
	if (!json_is_string(val))
		return false;
	free(*field);
	*field = xstrdup(json_string_value(val));
	return true;
}

static bool
set_date(json_t *val, bool *has, int64_t *t)
{
	if (json_is_null(val)) {
		*has = false;
		return true;
	}
	/* UTCDate (RFC 8620 1.4): "Z", no offset; bounded before parsing */
	if (!json_is_string(val) || json_string_length(val) > 40 ||
	    json_string_value(val)[json_string_length(val) - 1] != 'Z' ||
	    jmap_parse_date(json_string_value(val), t) != 0)
		return false;
	*has = true;
	return true;
}

/* Apply the patch to v; NULL or the SetError. */
static json_t *
apply(struct vacation *v, json_t *patch)
{
	json_t *bad = json_array(), *val;
	const char *k;

	json_object_foreach(patch, k, val)
	{
		bool ok;

		if (strcmp(k, "id") == 0)
			ok =
			    json_is_string(val) && strcmp(json_string_value(val), "singleton") == 0;
		else if (strcmp(k, "isEnabled") == 0)
			ok = json_is_boolean(val) && ((v->enabled = json_is_true(val)), true);
		else if (strcmp(k, "fromDate") == 0)
			ok = set_date(val, &v->has_from, &v->from_date);
		else if (strcmp(k, "toDate") == 0)
			ok = set_date(val, &v->has_to, &v->to_date);
		else if (strcmp(k, "subject") == 0)
			ok = set_text(val, &v->subject);
		else if (strcmp(k, "textBody") == 0)
			ok = set_text(val, &v->text_body);
		else if (strcmp(k, "htmlBody") == 0)
			ok = set_text(val, &v->html_body);
		else
			ok = false;
		if (!ok)
			json_array_append_new(bad, json_string(k));
	}
	if (json_array_size(bad) > 0) {
		json_t *e = jmap_set_error("invalidProperties", NULL);

		json_object_set_new(e, "properties", bad);
		return e;
	}
	json_decref(bad);
	return NULL;
}

void
jmap_vacation_set(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *if_in = json_string_value(json_object_get(args, "ifInState"));
	json_t *create = json_object_get(args, "create"), *update = json_object_get(args, "update");
	json_t *destroy = json_object_get(args, "destroy");
	json_t *updated = json_object(), *not_updated = json_object();
	json_t *not_created = json_object(), *not_destroyed = json_object(), *patch, *a, *v;
	struct vacation vac;
	char old[20], now[20];
	const char *k;
	size_t i;

	if (!jmap_check_account(r, args, tag))
		goto fail;
	if ((create != NULL && !json_is_null(create) && !json_is_object(create)) ||
	    (update != NULL && !json_is_null(update) && !json_is_object(update)) ||
	    (destroy != NULL && !json_is_null(destroy) && !json_is_array(destroy))) {
		jmap_error(r, "invalidArguments", "create, update or destroy", tag);
		goto fail;
	}
	if (!load(r, tag, &vac, old))
		goto fail;
	if (if_in != NULL && strcmp(if_in, old) != 0) {
		jmap_error(r, "stateMismatch", NULL, tag);
		vacation_free(&vac);
		goto fail;
	}
	/* There is one object, always: none is made or destroyed. */
	json_object_foreach(create, k, v)
	{
		json_object_set_new(not_created, k,
		                    jmap_set_error("singleton", "there is only the one"));
	}
	json_array_foreach(destroy, i, v)
	{
		if (json_is_string(v))
			json_object_set_new(not_destroyed, json_string_value(v),
			                    jmap_set_error("singleton", "it cannot be destroyed"));
	}
	json_object_foreach(update, k, patch)
	{
		json_t *err = NULL;
		int rc;

		if (strcmp(k, "singleton") != 0) {
			json_object_set_new(not_updated, k, jmap_set_error("notFound", NULL));
			continue;
		}
		if (!json_is_object(patch)) {
			json_object_set_new(not_updated, k,
			                    jmap_set_error("invalidPatch", "not an object"));
			continue;
		}
		err = apply(&vac, patch);
		if (err == NULL && (rc = vacation_set(r->store, r->user, &vac)) != 0)
			err = rc == ROOST_ETOOBIG
			          ? jmap_set_error("tooLarge", "the texts are too long")
			          : jmap_storage_set_error(rc, NULL);
		if (err != NULL) {
			json_object_set_new(not_updated, k, err);
			vacation_free(&vac); /* what is stored stands */
			if (vacation_get(r->store, r->user, &vac) != 0)
				memset(&vac, 0, sizeof(vac));
		} else {
			json_object_set_new(updated, k, json_null());
		}
	}
	state_of(&vac, now);
	vacation_free(&vac);
	a = json_pack("{ssssss}", "accountId", r->account, "oldState", old, "newState", now);
	json_object_set_new(a, "created", json_null());
	json_object_set_new(a, "destroyed", json_null());
	json_object_set(a, "updated", json_object_size(updated) > 0 ? updated : json_null());
	json_object_set(a, "notCreated",
	                json_object_size(not_created) > 0 ? not_created : json_null());
	json_object_set(a, "notUpdated",
	                json_object_size(not_updated) > 0 ? not_updated : json_null());
	json_object_set(a, "notDestroyed",
	                json_object_size(not_destroyed) > 0 ? not_destroyed : json_null());
	jmap_reply(r, "VacationResponse/set", a, tag);
fail:
	json_decref(updated);
	json_decref(not_updated);
	json_decref(not_created);
	json_decref(not_destroyed);
}
