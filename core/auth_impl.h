#ifndef ROOST_AUTH_IMPL_H
#define ROOST_AUTH_IMPL_H

/*
 * Pieces of core/auth*.c shared between those files only: the parsed
 * passwd-file table (auth_userdb.c), the verified-credential cache
 * (auth_cache.c) and the failed-login throttle (auth_throttle.c). struct auth
 * (auth.c) ties them together and owns the locking of the table; the cache
 * and the throttle lock themselves.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Bounds of the passwd file. */
#define AUTH_MAX_LINE 4096     /* bytes of one line */
#define AUTH_MAX_PASSWORD 1024 /* longer passwords never verify */

/* ---- auth_userdb.c: the passwd-file table ---- */

struct userdb_entry {
	char *name; /* file's spelling */
	char *hash; /* "{SCHEME}..." or a bare crypt string */
	/* quota limits from the extra field (auth.h); AUTH_QUOTA_DEFAULT
	 * when the line sets none */
	int64_t quota_storage, quota_messages;
};

struct userdb {
	struct userdb_entry *v; /* sorted by strcasecmp(name) */
	size_t n;
};

/*
 * Parse a passwd file. 0 and a new table; ROOST_ENOTFOUND when the file
 * does not exist; ROOST_EINVAL for a malformed line or a duplicate user, and
 * ROOST_EIO when it cannot be read (both logged with the path and the line).
 */
int userdb_load(const char *path, struct userdb **db_r);
/* An empty table (no file yet). */
struct userdb *userdb_new_empty(void);
void userdb_free(struct userdb **db);
/* The entry for user (ASCII case-insensitive), or NULL. */
const struct userdb_entry *userdb_find(const struct userdb *db, const char *user);

/* ---- auth_cache.c: verified credentials ---- */

struct auth_cache;

/* slots: capacity (entries past it replace older ones). */
struct auth_cache *auth_cache_new(size_t slots);
void auth_cache_free(struct auth_cache **cache);
/*
 * Was (name, stored hash, password) verified less than the TTL ago? The
 * stored hash is part of the key, so a changed password never hits an old
 * entry. Thread-safe.
 */
bool auth_cache_check(struct auth_cache *cache, const char *name, const char *stored,
                      const char *password, size_t password_len, time_t now);
void auth_cache_put(struct auth_cache *cache, const char *name, const char *stored,
                    const char *password, size_t password_len, time_t expires);
/* Forget everything. */
void auth_cache_clear(struct auth_cache *cache);

/* ---- auth_throttle.c: failed logins per client IP ---- */

struct auth_throttle;

/* max_entries bounds the table (the least recently failed IP is evicted);
 * delays in seconds. */
struct auth_throttle *auth_throttle_new(size_t max_entries, unsigned initial_s, unsigned max_s);
void auth_throttle_free(struct auth_throttle **t);
/*
 * Record a failure at now_ms (monotonic): the attempt's turn is the address's
 * next turn (now when it has none pending), and the next turn moves one
 * delay past it. Returns how long to hold the answer, in ms: until that next
 * turn (at most an hour).
 */
unsigned auth_throttle_failure(struct auth_throttle *t, const char *ip, uint64_t now_ms);
/*
 * Record a success at now_ms. Returns how long to hold the answer: 0 when the
 * address has no turn pending (it is forgotten at once), else until its next
 * turn, when it is forgotten.
 */
unsigned auth_throttle_success(struct auth_throttle *t, const char *ip, uint64_t now_ms);
/* Entries held (tests). */
size_t auth_throttle_count(struct auth_throttle *t);

/* ---- auth_scheme.c ---- */

/* SCRAM-SHA-256 keys (RFC 5802 section 3), stored or derived. */
#define SCRAM_KEY_LEN 32
#define SCRAM_MIN_ITER 4096 /* RFC 7677's minimum */
#define SCRAM_MAX_ITER 10000000
#define SCRAM_DEFAULT_ITER 4096 /* Dovecot's default: same cost as its hashes */

struct auth_scram_cred {
	unsigned iter;
	uint8_t salt[64];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN]; /* H(HMAC(SaltedPassword, "Client Key")) */
	uint8_t server_key[SCRAM_KEY_LEN]; /* HMAC(SaltedPassword, "Server Key") */
};

/* Parse "iter,salt,StoredKey,ServerKey" (after "{SCRAM-SHA-256}"). ROOST_EINVAL. */
int auth_scram_parse(const char *value, struct auth_scram_cred *c);
/* Keys of a password for salt and iter (PBKDF2-HMAC-SHA256). */
int auth_scram_derive(const char *password, size_t password_len, const uint8_t *salt,
                      size_t salt_len, unsigned iter, struct auth_scram_cred *c);

/*
 * Does checking this stored "{SCHEME}hash" (or bare crypt string) cost
 * about what a hash of the default scheme does? True for key-stretching
 * schemes (SHA256/SHA512-CRYPT, bcrypt, yescrypt, SCRAM); false for
 * plaintext, the plain and salted digests, DES and MD5-crypt, and anything
 * unknown or malformed, whose check takes next to no time.
 */
bool auth_hash_is_slow(const char *stored);

/* Constant-time equality of two byte strings (time depends on the lengths only). */
bool auth_equal(const void *a, size_t alen, const void *b, size_t blen);

/* ---- auth.c: what sasl.c needs of struct auth ---- */

struct auth;

/*
 * SCRAM credentials of user: 0 with the stored keys (a {SCRAM-SHA-256}
 * hash, or keys derived from a {PLAIN} password) and the canonical name.
 * ROOST_EAUTH for an unknown user or a hash SCRAM cannot use; c is then
 * filled with plausible fake values (a salt that is stable per name), so the
 * exchange runs on and fails only at the proof, and does not tell
 * which users exist.
 */
int auth_scram_credentials(struct auth *auth, const char *user, char *name_r, size_t namelen,
                           struct auth_scram_cred *c);
/* Is SCRAM-SHA-256 advertised ([auth] password_scheme = SCRAM-SHA-256)? */
bool auth_scram_advertised(const struct auth *auth);
/* How many times auth_verify() checked the dummy hash so far (tests). */
unsigned long auth_dummy_checks(struct auth *auth);

#endif
