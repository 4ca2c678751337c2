/*
 * The verified-credential cache, so a busy server does not pay the slow
 * password hash on every login (Dovecot's auth cache does the same).
 *
 * An entry is HMAC-SHA256, under a key drawn at random when the cache is
 * created, of (user, stored hash, password). Nothing in memory can be turned
 * back into a password without the key, the key never leaves the process,
 * and because the stored hash is part of the input a changed password (a
 * reloaded file with a new hash) can never hit an entry made for the old one.
 *
 * The table is direct-mapped: a fixed number of slots, the digest picks the
 * slot, a newer entry replaces whatever was there. Bounded memory, O(1), and a
 * collision only costs one slow verification.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "roost/log.h"
#include "roost/xalloc.h"

#include "auth_impl.h"

#define DIGEST_LEN 32

struct cache_slot {
	uint8_t digest[DIGEST_LEN];
	time_t expires; /* 0: empty */
};

struct auth_cache {
	uint8_t key[32];      /* immutable after creation */
	size_t mask;          /* slots - 1 */
	pthread_mutex_t lock; /* guards slots; held only to copy one slot */
	struct cache_slot *slots;
};

struct auth_cache *
auth_cache_new(size_t slots)
{
	struct auth_cache *c = xcalloc(1, sizeof(*c));
	size_t n = 1;

	while (n < slots && n < ((size_t)1 << 24))
		n <<= 1;
	if (RAND_bytes(c->key, sizeof(c->key)) != 1)
		fatal("event=auth_error error=\"no random bytes for the cache key\"");
	c->mask = n - 1;
	c->slots = xcalloc(n, sizeof(c->slots[0]));
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void
auth_cache_free(struct auth_cache **cache)
{
	struct auth_cache *c = *cache;

	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->lock);
	explicit_bzero(c->key, sizeof(c->key));
	free(c->slots);
	free(c);
	*cache = NULL;
}

/* The lowercase name, so "Alice" and "alice" share an entry. */
static bool
cache_digest(const struct auth_cache *c, const char *name, const char *stored, const char *password,
             size_t password_len, uint8_t out[DIGEST_LEN])
{
	size_t nlen = strlen(name), slen = strlen(stored);
	size_t total = nlen + 1 + slen + 1 + password_len;
	uint8_t *msg = xmalloc(total), *p = msg;
	unsigned outlen = 0;
	bool ok;

	for (size_t i = 0; i < nlen; i++)
		*p++ = (uint8_t)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	*p++ = '\0';
	memcpy(p, stored, slen);
	p += slen;
	*p++ = '\0';
	memcpy(p, password, password_len);
	ok = HMAC(EVP_sha256(), c->key, sizeof(c->key), msg, total, out, &outlen) != NULL &&
	     outlen == DIGEST_LEN;
	explicit_bzero(msg, total);
	free(msg);
	return ok;
}

static size_t
slot_of(const struct auth_cache *c, const uint8_t digest[DIGEST_LEN])
{
	uint64_t v;

	memcpy(&v, digest, sizeof(v));
	return (size_t)v & c->mask;
}

bool
auth_cache_check(struct auth_cache *c, const char *name, const char *stored, const char *password,
                 size_t password_len, time_t now)
{
	uint8_t digest[DIGEST_LEN];
	struct cache_slot slot;

	if (!cache_digest(c, name, stored, password, password_len, digest))
		return false;
	pthread_mutex_lock(&c->lock);
	slot = c->slots[slot_of(c, digest)];
	pthread_mutex_unlock(&c->lock);
	return slot.expires > now && CRYPTO_memcmp(slot.digest, digest, DIGEST_LEN) == 0;
}

void
auth_cache_put(struct auth_cache *c, const char *name, const char *stored, const char *password,
               size_t password_len, time_t expires)
{
	uint8_t digest[DIGEST_LEN];
	struct cache_slot *slot;

	if (!cache_digest(c, name, stored, password, password_len, digest))
		return;
	pthread_mutex_lock(&c->lock);
	slot = &c->slots[slot_of(c, digest)];
	memcpy(slot->digest, digest, DIGEST_LEN);
	slot->expires = expires;
	pthread_mutex_unlock(&c->lock);
}

void
auth_cache_clear(struct auth_cache *c)
{
	pthread_mutex_lock(&c->lock);
	memset(c->slots, 0, (c->mask + 1) * sizeof(c->slots[0]));
	pthread_mutex_unlock(&c->lock);
}
