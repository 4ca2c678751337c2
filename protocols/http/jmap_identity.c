/*
 * Identity (RFC 8621 6): the addresses a user may send from. Every user
 * has one for its own address and one for each sender alias the aliases
 * file grants it (aliases_sender_addresses(), the same rule SMTP
 * submission applies); those exist while the address is the user's and
 * cannot be destroyed. Identity/set creates more (another name or
 * signature for one of those addresses) and changes any; what a client
 * set is kept in storage as metadata of the user's server part
 * (IDENT_PREFIX + the id's digits, a JSON object), so every backend keeps
 * it durably and every node sees it.
 *
 * Ids: "I" + 16 hex digits, the digest of the address for an alias, random
 * for a created one; the own address keeps the id it always had.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "roost/aliases.h"
#include "roost/auth.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/relay.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "jmap_impl.h"

#define IDENT_PREFIX "/private/vendor/vendor.roost/jmap-identity"
#define IDENT_MAX_TEXT 4096 /* bytes of a name or signature */

/* The properties a client may set, with their defaults. */
static const char *const text_props[] = {"name", "textSignature", "htmlSignature"};
static const char *const list_props[] = {"replyTo", "bcc"};

struct ident_list {
	json_t *list; /* Identity objects, in order */
};

static void
own_address(struct jmap_req *r, char *out, size_t size)
{
	if (strchr(r->user, '@') != NULL)
		snprintf(out, size, "%s", r->user);
	else
		snprintf(out, size, "%s@%s", r->user, r->s->svc->cfg->hostname);
}

static json_t *
ident_new(const char *id, const char *email, bool may_delete)
{
	return json_pack("{sssssssnsnsssssb}", "id", id, "name", "", "email", email, "replyTo",
	                 "bcc", "textSignature", "", "htmlSignature", "", "mayDelete", may_delete);
}

static void
add_alias(const char *address, void *arg)
{
	struct ident_list *l = arg;
	char id[JMAP_ID_LEN + 1], lower[ALIASES_ADDRESS_MAX];
	json_t *v;
	size_t i;

	snprintf(lower, sizeof(lower), "%s", address);
	for (char *p = lower; *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	snprintf(id, sizeof(id), "I%016" PRIx64, hash_str64(lower));
	json_array_foreach(l->list, i, v)
	{
		if (strcasecmp(json_string_value(json_object_get(v, "email")), lower) == 0)
			return; /* the own address, or a key twice */
	}
	json_array_append_new(l->list, ident_new(id, lower, false));
}

static json_t *
ident_find(json_t *list, const char *id)
{
	json_t *v;
	size_t i;

	json_array_foreach(list, i, v)
	{
		if (id != NULL && strcmp(json_string_value(json_object_get(v, "id")), id) == 0)
			return v;
	}
	return NULL;
}

/* Apply what the client set (a stored JSON object) to o. */
static void
ident_apply(json_t *o, json_t *set)
{
	for (size_t k = 0; k < sizeof(text_props) / sizeof(text_props[0]); k++) {
		json_t *v = json_object_get(set, text_props[k]);

		if (json_is_string(v))
			json_object_set(o, text_props[k], v);
	}
	for (size_t k = 0; k < sizeof(list_props) / sizeof(list_props[0]); k++) {
		json_t *v = json_object_get(set, list_props[k]);

		if (v != NULL)
			json_object_set(o, list_props[k], v);
	}
}

/* Every identity of the user into a new array; NULL on a storage error. */
static json_t *
ident_load(struct jmap_req *r)
{
	struct ident_list l = {json_array()};
	struct metadata_entry *e = NULL;
	char own[AUTH_MAX_NAME + 128], id[24];
	size_t n = 0;

	own_address(r, own, sizeof(own));
	snprintf(id, sizeof(id), "I%s", r->account + 1);
	json_array_append_new(l.list, ident_new(id, own, false));
	aliases_sender_addresses(r->s->svc->aliases, r->s->svc->cfg, r->user, add_alias, &l);
	if (storage_metadata_get(r->store, r->user, "", IDENT_PREFIX, 1, &e, &n) != 0) {
		json_decref(l.list);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *digits = strrchr(e[i].name, '/');
		json_t *set = json_loadb((const char *)e[i].value, e[i].len, 0, NULL), *o;
		const char *email = json_string_value(json_object_get(set, "email"));

		if (digits == NULL || set == NULL)
			goto next;
		snprintf(id, sizeof(id), "I%s", digits + 1);
		if ((o = ident_find(l.list, id)) == NULL && email != NULL &&
		    relay_sender_allowed(r->s->svc->cfg, r->s->svc->aliases, r->user, email)) {
			/* a created one, while its address is still the user's */
			o = ident_new(id, email, true);
			json_array_append_new(l.list, o);
		}
		if (o != NULL)
			ident_apply(o, set);
	next:
		json_decref(set);
	}
	storage_metadata_free(e, n);
	return l.list;
}

/* The state: a digest of every identity as it is now. */
static void
ident_state(json_t *list, char out[20])
{
	char *text = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS);

	snprintf(out, 20, "%016" PRIx64, hash_str64(text != NULL ? text : ""));
	free(text);
}

const char *
jmap_identity_email(struct jmap_req *r, const char *id, char *out, size_t size)
{
	json_t *list = ident_load(r), *o = ident_find(list, id);
	const char *email = json_string_value(json_object_get(o, "email"));

	if (email != NULL)
		snprintf(out, size, "%s", email);
	json_decref(list);
	return email != NULL ? out : NULL;
}

void
jmap_identity_get(struct jmap_req *r, json_t *args, const char *tag)
{
	json_t *ids, *list, *out, *nf, *v, *seen;
	char st[20];
	size_t i;

	if (!jmap_check_account(r, args, tag) ||
	    !jmap_check_id_list(r, args, "ids", JMAP_MAX_OBJECTS_GET, JMAP_IDS_NULL_ALL, tag, &ids))
		return;
	if ((list = ident_load(r)) == NULL) {
		jmap_error(r, "serverFail", NULL, tag);
		return;
	}
	ident_state(list, st);
	if (json_is_array(ids)) {
		out = json_array();
		nf = json_array();
		seen = json_object();
		json_array_foreach(ids, i, v)
		{
			json_t *o = ident_find(list, json_string_value(v));

			if (jmap_id_repeat(seen, json_string_value(v)))
				continue;
			json_array_append(o != NULL ? out : nf, o != NULL ? o : v);
		}
		json_decref(seen);
		json_decref(list);
	} else {
		out = list;
		nf = json_array();
	}
	jmap_get_reply(r, "Identity/get", st, out, nf, tag);
}

void
jmap_identity_changes(struct jmap_req *r, json_t *args, const char *tag)
{
	const char *since = json_string_value(json_object_get(args, "sinceState"));
	json_t *list;
	char st[20];

	if (!jmap_check_account(r, args, tag))
		return;
	if (since == NULL) {
		jmap_error(r, "invalidArguments", "sinceState", tag);
		return;
	}
	if ((list = ident_load(r)) == NULL) {
		jmap_error(r, "serverFail", NULL, tag);
		return;
	}
	ident_state(list, st);
	json_decref(list);
	/* The state is a digest, not a log: only "nothing changed" can be
	 * told; a client then gets its few identities again. */
	if (strcmp(since, st) != 0) {
		jmap_error(r, "cannotCalculateChanges", NULL, tag);
		return;
	}
	jmap_reply(r, "Identity/changes",
	           json_pack("{sssssssbs[]s[]s[]}", "accountId", r->account, "oldState", st,
	                     "newState", st, "hasMoreChanges", 0, "created", "updated",
	                     "destroyed"),
	           tag);
}

/* Check the settable properties of obj (a create or a patch): NULL, or the
 * name of the one in error. */
static const char *
props_invalid(json_t *obj, bool create)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v)
	{
		bool ok = false;

		for (size_t k = 0; k < sizeof(text_props) / sizeof(text_props[0]); k++) {
			if (strcmp(key, text_props[k]) == 0)
				ok = json_is_string(v) &&
				     strlen(json_string_value(v)) <= IDENT_MAX_TEXT;
		}
		for (size_t k = 0; k < sizeof(list_props) / sizeof(list_props[0]); k++) {
			if (strcmp(key, list_props[k]) == 0) {
				json_t *a;
				size_t i;

				ok = json_is_null(v) ||
				     (json_is_array(v) && json_array_size(v) <= 100);
				json_array_foreach(v, i, a)
				{
					const char *em =
					    json_string_value(json_object_get(a, "email"));
					json_t *nm = json_object_get(a, "name");

					if (em == NULL || strchr(em, '@') == NULL ||
					    strlen(em) > 320 ||
					    (nm != NULL && !json_is_null(nm) &&
					     !json_is_string(nm)))
						ok = false;
				}
			}
		}
		if (create && strcmp(key, "email") == 0)
			ok = json_is_string(v);
		if (!ok)
			return key;
	}
	return NULL;
}

/* Store what the client set for the identity with digits (after "I"). */
static int
ident_store(struct jmap_req *r, const char *digits, json_t *set)
{
	char name[STORAGE_METADATA_MAX_NAME + 1], *text;
	const uint8_t *val;
	size_t len;
	int rc;

	snprintf(name, sizeof(name), "%s/%s", IDENT_PREFIX, digits);
	text = set != NULL ? json_dumps(set, JSON_COMPACT) : NULL;
	val = (const uint8_t *)text;
	len = text != NULL ? strlen(text) : 0;
	{
		const char *names[1] = {name};
		const uint8_t *vals[1] = {val};
		size_t lens[1] = {len};

		rc = storage_metadata_set(r->store, r->user, "", names, vals, lens, 1);
	}
	free(text);
	return rc;
}

/* The stored settings of id (what the client set), a new object. */
static json_t *
ident_settings(struct jmap_req *r, const char *id)
{
	struct metadata_entry *e = NULL;
	char name[STORAGE_METADATA_MAX_NAME + 1];
	size_t n = 0;
	json_t *set = NULL;

	snprintf(name, sizeof(name), "%s/%s", IDENT_PREFIX, id + 1);
	if (storage_metadata_get(r->store, r->user, "", name, 0, &e, &n) == 0 && n == 1)
		set = json_loadb((const char *)e[0].value, e[0].len, 0, NULL);
	storage_metadata_free(e, n);
	return set != NULL ? set : json_object();
}

/* What one Identity/set reads once: the list after the creations. */
struct ident_set {
	json_t *list; /* NULL until the first update or destroy */
};

static bool
set_state(struct jmap_req *r, void *ctx, struct buf *out)
{
	json_t *list = ident_load(r);
	char st[20];

	if (list == NULL)
		return false;
	ident_state(list, st);
	json_decref(list);
	buf_append_str(out, st);
	return true;
}

static json_t *
set_list(struct jmap_req *r, struct ident_set *c)
{
	if (c->list == NULL && (c->list = ident_load(r)) == NULL)
		c->list = json_array();
	return c->list;
}

static json_t *
set_create(struct jmap_req *r, void *ctx, json_t *v, json_t **created_r)
{
	const char *email = json_string_value(json_object_get(v, "email")), *bad = NULL;
	uint8_t rnd[8];
	char digits[17], id[JMAP_ID_LEN + 1];
	json_t *set;
	int rc;

	if (!json_is_object(v) || (bad = props_invalid(v, true)) != NULL || email == NULL)
		return jmap_set_error("invalidProperties",
		                      json_is_object(v) && email != NULL ? bad : "email");
	if (!relay_sender_allowed(r->s->svc->cfg, r->s->svc->aliases, r->user, email))
		return jmap_set_error("forbiddenFrom", NULL);
	RAND_bytes(rnd, sizeof(rnd));
	for (size_t k = 0; k < 8; k++)
		snprintf(digits + 2 * k, 3, "%02x", rnd[k]);
	set = json_deep_copy(v);
	rc = ident_store(r, digits, set);
	json_decref(set);
	if (rc != 0)
		return jmap_storage_set_error(rc, NULL);
	snprintf(id, sizeof(id), "I%s", digits);
	*created_r = json_pack("{sssb}", "id", id, "mayDelete", 1);
	return NULL;
}

static json_t *
set_update(struct jmap_req *r, void *ctx, const char *id, json_t *v, json_t **updated_r)
{
	json_t *o = ident_find(set_list(r, ctx), id), *set;
	const char *bad = NULL;
	int rc;

	if (o == NULL)
		return jmap_set_error("notFound", NULL);
	if (!json_is_object(v) || (bad = props_invalid(v, false)) != NULL)
		return jmap_set_error("invalidProperties", json_is_object(v) ? bad : NULL);
	set = ident_settings(r, id);
	json_object_update(set, v);
	if (json_object_get(set, "email") == NULL)
		json_object_set(set, "email", json_object_get(o, "email"));
	rc = ident_store(r, id + 1, set);
	json_decref(set);
	return rc != 0 ? jmap_storage_set_error(rc, NULL) : NULL;
}

static json_t *
set_destroy(struct jmap_req *r, void *ctx, const char *id)
{
	json_t *o = ident_find(set_list(r, ctx), id);
	int rc;

	if (o == NULL)
		return jmap_set_error("notFound", NULL);
	if (!json_is_true(json_object_get(o, "mayDelete")))
		return jmap_set_error("forbidden", "the address is the user's");
	if ((rc = ident_store(r, id + 1, NULL)) != 0)
		return jmap_storage_set_error(rc, NULL);
	return NULL;
}

static void
set_done(struct jmap_req *r, void *ctx)
{
	struct ident_set *c = ctx;

	json_decref(c->list);
	c->list = NULL;
}

void
jmap_identity_set(struct jmap_req *r, json_t *args, const char *tag)
{
	static const struct jmap_set_ops ops = {
	    .name = "Identity/set",
	    .state = set_state,
	    .create = set_create,
	    .update = set_update,
	    .destroy = set_destroy,
	    .done = set_done,
	};
	struct ident_set c = {0};

	jmap_set_run(r, args, tag, &ops, &c);
}
