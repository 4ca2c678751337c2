/*
 * PushSubscription objects as JSON and in storage: the types mask, the
 * object /get shows or the metadata entry stores (one per subscription
 * under the user's PUSH_PREFIX), and reading a stored entry back. The
 * service that keeps and delivers them is jmap_push_sub.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/storage.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"
#include "jmap_push_impl.h"

/* The types a push names, in the order a StateChange lists them. */
static const struct {
	const char *name;
	unsigned bit;
} push_types[] = {
    {"Email", JMAP_PT_EMAIL},
    {"Mailbox", JMAP_PT_MAILBOX},
    {"Thread", JMAP_PT_THREAD},
    {"EmailDelivery", JMAP_PT_DELIVERY},
};

unsigned
jmap_push_type_bit(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(push_types) / sizeof(push_types[0]); i++) {
		if (strlen(push_types[i].name) == len && memcmp(push_types[i].name, name, len) == 0)
			return push_types[i].bit;
	}
	return 0;
}

json_t *
jmap_push_changed(unsigned types, const char *state)
{
	json_t *ch = json_object();

	for (size_t i = 0; i < sizeof(push_types) / sizeof(push_types[0]); i++) {
		if ((types & push_types[i].bit) != 0)
			json_object_set_new(ch, push_types[i].name, json_string(state));
	}
	return ch;
}

unsigned
jmap_push_types(json_t *types)
{
	unsigned m = 0;
	size_t i;
	json_t *t;

	if (!json_is_array(types))
		return JMAP_PT_ALL;
	json_array_foreach(types, i, t)
	{
		const char *n = json_string_value(t);

		if (n != NULL)
			m |= jmap_push_type_bit(n, strlen(n));
	}
	return m;
}

/* ---- persistence ---- */

static void
entry_name(const char *id, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", PUSH_PREFIX, id);
}

json_t *
jmap_push_sub_json(const struct push_sub *p, bool stored)
{
	char exp[21];
	json_t *o;

	jmap_utc_date(p->expires, exp);
	o = json_pack("{sssssssO}", "id", p->id, "deviceClientId", p->device, "expires", exp,
	              "types", p->types_json != NULL ? p->types_json : json_null());
	if (stored) {
		json_object_set_new(o, "url", json_string(p->url));
		json_object_set_new(o, "code", json_string(p->code));
		json_object_set_new(o, "verified", json_boolean(p->verified));
		if (p->p256dh != NULL)
			json_object_set_new(
			    o, "keys", json_pack("{ssss}", "p256dh", p->p256dh, "auth", p->auth));
	} else {
		json_object_set_new(o, "verificationCode",
		                    p->verified ? json_string(p->code) : json_null());
	}
	return o;
}

int
jmap_push_store(struct storage *st, const struct push_sub *p, bool remove)
{
	char name[STORAGE_METADATA_MAX_NAME + 1];
	const char *names[1] = {name};
	const uint8_t *vals[1] = {NULL};
	size_t lens[1] = {0};
	char *text = NULL;
	int rc;

	entry_name(p->id, name, sizeof(name));
	if (!remove) {
		json_t *o = jmap_push_sub_json(p, true);

		text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		vals[0] = (const uint8_t *)text;
		lens[0] = strlen(text);
	}
	rc = storage_metadata_set(st, p->user, "", names, vals, lens, 1);
	free(text);
	return rc;
}

struct push_sub *
jmap_push_sub_from_json(const char *user, const uint8_t *v, size_t len)
{
	json_t *o = json_loadb((const char *)v, len, 0, NULL), *types;
	const char *id, *dev, *url, *code, *exp;
	struct push_sub *p = NULL;
	int64_t t;

	if (o == NULL)
		return NULL;
	id = json_string_value(json_object_get(o, "id"));
	dev = json_string_value(json_object_get(o, "deviceClientId"));
	url = json_string_value(json_object_get(o, "url"));
	code = json_string_value(json_object_get(o, "code"));
	exp = json_string_value(json_object_get(o, "expires"));
	types = json_object_get(o, "types");
	if (id == NULL || strlen(id) >= sizeof(p->id) || dev == NULL || url == NULL ||
	    code == NULL || strlen(code) >= sizeof(p->code) || exp == NULL ||
	    jmap_parse_date(exp, &t) != 0)
		goto out;
	p = xcalloc(1, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	snprintf(p->code, sizeof(p->code), "%s", code);
	p->user = xstrdup(user);
	http_account_id(user, p->account);
	p->device = xstrdup(dev);
	p->url = xstrdup(url);
	p->expires = t;
	p->verified = json_is_true(json_object_get(o, "verified"));
	p->need_verify = !p->verified;
	if (json_is_array(types))
		p->types_json = json_incref(types);
	p->types = jmap_push_types(types);
	if (json_is_object(json_object_get(o, "keys"))) {
		const char *pk =
		    json_string_value(json_object_get(json_object_get(o, "keys"), "p256dh"));
		const char *au =
		    json_string_value(json_object_get(json_object_get(o, "keys"), "auth"));

		if (pk != NULL && au != NULL) {
			p->p256dh = xstrdup(pk);
			p->auth = xstrdup(au);
		}
	}
out:
	json_decref(o);
	return p;
}
