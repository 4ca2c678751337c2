#ifndef ROOST_JMAP_PUSH_IMPL_H
#define ROOST_JMAP_PUSH_IMPL_H
/*
 * PushSubscription (RFC 8620 7.2) between its methods (jmap_push_set.c)
 * and the service that keeps and delivers them (jmap_push_sub.c; the
 * objects as JSON and in storage: jmap_push_store.c). Every
 * function is thread-safe; a struct push_sub in the service's list is
 * touched only under its lock (through jmap_push_update's callback).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct storage;
struct jmap_pushd;
struct buf;

#define JMAP_PUSH_P256DH_LEN 65 /* an uncompressed P-256 point */
#define JMAP_PUSH_AUTH_LEN 16
/* The metadata entries of a user's subscriptions: PUSH_PREFIX "/" id. */
#define PUSH_PREFIX STORAGE_METADATA_INTERNAL "jmap-push"

enum jmap_push_type {
	JMAP_PT_MAILBOX = 1 << 0,
	JMAP_PT_EMAIL = 1 << 1,
	JMAP_PT_THREAD = 1 << 2,
	JMAP_PT_DELIVERY = 1 << 3,
	JMAP_PT_ALL = 0xf,
};

struct push_sub {
	struct push_sub *next;
	/* what the client set (and the server bounded) */
	char id[18];   /* "S" + 16 hex */
	char code[33]; /* the verificationCode sent to the URL */
	char account[24];
	char *user;
	char *device;
	char *url;
	int64_t expires;     /* Unix seconds */
	json_t *types_json;  /* the types array, NULL for null (all) */
	unsigned types;      /* JMAP_PT_* */
	char *p256dh, *auth; /* keys (RFC 8291) as given, base64url; NULL: none */
	bool verified;
	/* delivery, the service's own */
	bool need_verify; /* a PushVerification is to be sent */
	bool dirty;       /* a change may be untold */
	bool in_flight;   /* a thread is POSTing for it */
	bool removed;     /* destroyed while in flight: the thread frees it */
	unsigned failures;
	int64_t next_try; /* CLOCK_MONOTONIC ms */
	char *pushed_state;
};

/* The JMAP_PT_* bit of the type named name[0..len) ("Email", "Mailbox",
 * "Thread", "EmailDelivery"); 0 for any other name. */
unsigned jmap_push_type_bit(const char *name, size_t len);
/* The JMAP_PT_* mask of a types value (null or not an array: all). */
unsigned jmap_push_types(json_t *types);
/* One account's "changed" object of a StateChange: state for each type
 * in types (a JMAP_PT_* mask). New reference. */
json_t *jmap_push_changed(unsigned types, const char *state);
/* A new random id and verification code. */
void jmap_push_new_id(char id[18], char code[33]);
/* The object as /get shows it (stored = false: no url, verificationCode
 * only once verified) or as it is stored (true); new reference. */
json_t *jmap_push_sub_json(const struct push_sub *p, bool stored);
/* Write (remove: delete) p's metadata entry under p->user. */
int jmap_push_store(struct storage *st, const struct push_sub *p, bool remove);
/* A subscription of user from its stored entry v[0..len) (jmap_push_store.c);
 * NULL when it is not one. */
struct push_sub *jmap_push_sub_from_json(const char *user, const uint8_t *v, size_t len);

/* Hand a new subscription (allocated, stored already) to the service,
 * which owns it from now on and sends its PushVerification. */
void jmap_push_add(struct jmap_pushd *d, struct push_sub *p);
/* How many subscriptions user has. */
size_t jmap_push_count(struct jmap_pushd *d, const char *user);
/* The user's subscriptions as /get shows them (a new array). */
json_t *jmap_push_list(struct jmap_pushd *d, const char *user);
/* Run fn on user's subscription id under the lock; fn returns 0 to keep
 * its changes, or an error that is returned. On 0 and copy_r non-NULL, a
 * copy of the result (free with jmap_push_copy_free) to store.
 * ROOST_ENOTFOUND when the user has no such subscription. */
typedef int jmap_push_update_fn(struct push_sub *p, void *arg);
int jmap_push_update(struct jmap_pushd *d, const char *user, const char *id,
                     jmap_push_update_fn *fn, void *arg, struct push_sub *copy_r);
void jmap_push_copy_free(struct push_sub *copy);
/* Remove (and unstore) user's subscription id; ROOST_ENOTFOUND. */
int jmap_push_destroy(struct jmap_pushd *d, const char *user, const char *id);

/* ---- jmap_push_crypt.c: RFC 8291 ---- */

/* Decode and check keys.p256dh and keys.auth (base64url): ROOST_EINVAL
 * unless a point on P-256 and 16 bytes. */
int jmap_push_keys_decode(const char *p256dh, const char *auth, uint8_t pub_r[JMAP_PUSH_P256DH_LEN],
                          uint8_t auth_r[JMAP_PUSH_AUTH_LEN]);
/* Encrypt in[0..len) for the client's keys into out as one aes128gcm
 * record (RFC 8188 header included). 0, ROOST_EINVAL, ROOST_EIO. */
int jmap_push_encrypt(const uint8_t ua_pub[JMAP_PUSH_P256DH_LEN],
                      const uint8_t auth[JMAP_PUSH_AUTH_LEN], const uint8_t *in, size_t len,
                      struct buf *out);

#endif
