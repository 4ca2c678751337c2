/*
 * The skeleton of every /set method (RFC 8620 5.3): the checks of the
 * arguments, ifInState, the create, update and destroy loops in that
 * order, creation ids for later "#id" references, and the reply with
 * created/updated/destroyed, their not* twins and the states. What one
 * object's create, update or destroy means is the type's, through struct
 * jmap_set_ops.
 */
#include <string.h>

#include "roost/buf.h"

#include "jmap_impl.h"

/* The start: the account, the argument types, at most
 * JMAP_MAX_OBJECTS_SET objects in create, update and destroy together, the
 * state before the call into old, ifInState compared. False once an error
 * response was written. */
static bool
set_begin(struct jmap_req *r, json_t *args, const char *tag, const struct jmap_set_ops *ops,
          void *ctx, struct buf *old)
{
	json_t *create = json_object_get(args, "create"), *update = json_object_get(args, "update");
	json_t *destroy = json_object_get(args, "destroy");
	const char *if_in = json_string_value(json_object_get(args, "ifInState"));

	if (ops->state != NULL && !jmap_check_account(r, args, tag))
		return false;
	if ((create != NULL && !json_is_null(create) && !json_is_object(create)) ||
	    (update != NULL && !json_is_null(update) && !json_is_object(update)) ||
	    (destroy != NULL && !json_is_null(destroy) && !json_is_array(destroy))) {
		jmap_error(r, "invalidArguments", NULL, tag);
		return false;
	}
	if (json_object_size(create) + json_object_size(update) + json_array_size(destroy) >
	    JMAP_MAX_OBJECTS_SET) {
		jmap_error(r, "requestTooLarge", NULL, tag);
		return false;
	}
	if (ops->state == NULL)
		return true;
	if (!ops->state(r, ctx, old)) {
		jmap_error(r, "serverFail", NULL, tag);
		return false;
	}
	if (if_in != NULL && strcmp(if_in, buf_cstr(old)) != 0) {
		jmap_error(r, "stateMismatch", NULL, tag);
		return false;
	}
	return true;
}

/* A map of the reply: as it is, or null when empty for a type without
 * state (PushSubscription/set answers so). */
static json_t *
set_map(const struct jmap_set_ops *ops, json_t *v, bool empty)
{
	return ops->state == NULL && empty ? json_null() : json_incref(v);
}

void
jmap_set_run(struct jmap_req *r, json_t *args, const char *tag, const struct jmap_set_ops *ops,
             void *ctx)
{
	json_t *create = json_object_get(args, "create"), *update = json_object_get(args, "update");
	json_t *destroy = json_object_get(args, "destroy");
	json_t *created = json_object(), *not_created = json_object(), *updated = json_object();
	json_t *not_updated = json_object(), *destroyed = json_array();
	json_t *not_destroyed = json_object(), *res, *v;
	bool done = false;
	struct buf old = BUF_INIT(0), st = BUF_INIT(0);
	const char *key;
	size_t i;

	if (!set_begin(r, args, tag, ops, ctx, &old))
		goto out;
	json_object_foreach(create, key, v)
	{
		json_t *o = NULL, *err = ops->create(r, ctx, v, &o);

		if (err != NULL) {
			json_object_set_new(not_created, key, err);
		} else {
			json_object_set_new(r->created_ids, key,
			                    json_incref(json_object_get(o, "id")));
			json_object_set_new(created, key, o);
		}
	}
	json_object_foreach(update, key, v)
	{
		const char *id = jmap_resolve_id(r, key);
		json_t *u = NULL, *err = id != NULL ? ops->update(r, ctx, id, v, &u)
		                                    : jmap_set_error("notFound", NULL);

		if (err != NULL)
			json_object_set_new(not_updated, key, err);
		else
			json_object_set_new(updated, id, u != NULL ? u : json_null());
	}
	json_array_foreach(destroy, i, v)
	{
		/* A non-string cannot be a key of notDestroyed: passed over. */
		const char *given = json_string_value(v), *id = jmap_resolve_id(r, given);
		json_t *err;

		if (given == NULL)
			continue;
		err = id != NULL ? ops->destroy(r, ctx, id) : jmap_set_error("notFound", NULL);
		if (err != NULL)
			json_object_set_new(not_destroyed, given, err);
		else
			json_array_append_new(destroyed, json_string(id));
	}
	if (ops->done != NULL)
		ops->done(r, ctx);
	done = true;
	res = json_object();
	if (ops->state != NULL) {
		if (!ops->state(r, ctx, &st)) {
			buf_reset(&st);
			buf_append_str(&st, buf_cstr(&old));
		}
		json_object_set_new(res, "accountId", json_string(r->account));
		json_object_set_new(res, "oldState", json_string(buf_cstr(&old)));
		json_object_set_new(res, "newState", json_string(buf_cstr(&st)));
	}
	json_object_set_new(res, "created", set_map(ops, created, json_object_size(created) == 0));
	json_object_set_new(res, "notCreated",
	                    set_map(ops, not_created, json_object_size(not_created) == 0));
	json_object_set_new(res, "updated", set_map(ops, updated, json_object_size(updated) == 0));
	json_object_set_new(res, "notUpdated",
	                    set_map(ops, not_updated, json_object_size(not_updated) == 0));
	json_object_set_new(res, "destroyed",
	                    set_map(ops, destroyed, json_array_size(destroyed) == 0));
	json_object_set_new(res, "notDestroyed",
	                    set_map(ops, not_destroyed, json_object_size(not_destroyed) == 0));
	jmap_reply(r, ops->name, res, tag);
out:
	if (ops->done != NULL && !done)
		ops->done(r, ctx);
	json_decref(created);
	json_decref(not_created);
	json_decref(updated);
	json_decref(not_updated);
	json_decref(destroyed);
	json_decref(not_destroyed);
	buf_free(&old);
	buf_free(&st);
}

bool
jmap_set_mail_state(struct jmap_req *r, void *ctx, struct buf *out)
{
	jmap_state(r, out);
	return true;
}
