#ifndef ROOST_AUTH_H
#define ROOST_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * Users and authentication.
 *
 * The user database is a passwd-file in Dovecot's format, one user a line:
 *   alice@example.org:{SHA512-CRYPT}$6$...::::::quota_storage=1G quota_messages=50000
 * The eighth field holds space-separated extra fields; the quota limits
 * are read from it (auth_user_quota()), the rest is ignored.
 * User names are full addresses, compared case-insensitively and returned in
 * the file's spelling (the canonical name storage uses).
 *
 * Password schemes verified: {PLAIN}, {CLEAR}, {CRYPT}, {MD5-CRYPT},
 * {SHA256-CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}, {YESCRYPT} (via libcrypt),
 * Dovecot's {SSHA}, {SSHA256}, {SSHA512}, {SHA*} and {SCRAM-SHA-256}.
 * New passwords use the configured scheme.
 *
 * struct auth is thread-safe: any worker may call any function.
 */

struct auth;
struct roost_config;

#define AUTH_MAX_NAME 255 /* bytes of a user name */

int auth_open(const struct roost_config *cfg, struct auth **auth_r);
void auth_free(struct auth **auth);
/* The passwd file's path (the config's, or <data_dir>/passwd); valid
 * until auth_free(). */
const char *auth_file_path(const struct auth *auth);
/* Re-read the passwd file (SIGHUP); on error the old table stays. */
int auth_reload(struct auth *auth);

/* True when the passwd file changed since it was last read (one stat), or
 * a reload is running: the next lookup reads it again. Never waits on a
 * lock (an event loop may call it). Any thread. */
bool auth_changed(struct auth *auth);
/* [loop] While on, this thread's lookups answer from the table in memory
 * without looking at the file (no stat, no reload, no lock held across a
 * read): for an event loop running a command that checked auth_changed()
 * just before. Off again with false. */
void auth_lookups_from_memory(bool on);

/* Does this user exist? On success copies the canonical name into
 * name_r (size namelen). ROOST_ENOTFOUND otherwise. */
int auth_lookup(struct auth *auth, const char *user, char *name_r, size_t namelen);

/*
 * Check a password. 0 and the canonical name on success; ROOST_EAUTH for a
 * wrong password or unknown user (the same answer and similar time for both).
 * Successful checks are cached for auth_cache_ttl seconds, keyed by user and
 * a salted digest of the password; a password change invalidates the entry.
 */
int auth_verify(struct auth *auth, const char *user, const char *password, size_t password_len,
                char *name_r, size_t namelen);

/*
 * Failed-login slow-down per client IP. After a failure, the address's
 * attempts are answered in turns one delay apart (2 s, doubling up to 15 s
 * by default), whatever the outcome: the right password is not answered
 * sooner than a wrong one, on any connection. Call exactly one of these when
 * the outcome of a check is known, before writing anything that depends on
 * it, and hold the answer (and everything after it) for the returned time
 * with conn_delay(), never by sleeping.
 *
 * auth_failure: the delay in ms before the failure answer (> 0 unless the
 * delay is configured off). auth_success: 0 for an address in good standing;
 * while turns of earlier failures are pending, the time to the next turn.
 * IPv6 peers count per /64. The table is bounded (the address that failed
 * longest ago is forgotten first); failures older than 5 minutes are
 * forgotten. Thread-safe.
 */
unsigned auth_failure(struct auth *auth, const char *peer_ip);

unsigned auth_success(struct auth *auth, const char *peer_ip);

/*
 * May plaintext mechanisms (SASL PLAIN/LOGIN, IMAP LOGIN, POP3 USER/PASS) be
 * used on this connection? secure: TLS is active or the peer is on loopback
 * (the caller decides). True when secure or [auth] plaintext_insecure = yes.
 */
bool auth_plaintext_allowed(const struct auth *auth, bool secure);

/* Hash password with the configured scheme into out ("{SCHEME}..."). */
int auth_hash_password(const char *scheme, const char *password, struct buf *out);
/* Can new passwords be hashed with this scheme here (libcrypt support)? */
bool auth_scheme_supported(const char *scheme);
/* Verify password against a stored "{SCHEME}hash" (or bare crypt hash).
 * 0 match, ROOST_EAUTH mismatch, ROOST_ENOTSUP unknown scheme. */
int auth_check_hash(const char *stored, const char *password, size_t password_len);

/*
 * Quota limits of one user, from the passwd file's extra field:
 *   quota_storage=SIZE    octets, with an optional K, M, G or T suffix
 *                         (powers of 1024)
 *   quota_messages=N      messages
 *   userdb_quota_rule=*:storage=SIZE  Dovecot's rule for the whole
 *   userdb_quota_rule=*:messages=N    account (storage without a suffix
 *                         in kilobytes, as Dovecot reads it)
 * quota_* win over a Dovecot rule on the same line. 0 is "no limit". A
 * value that does not parse is logged and ignored (the user gets the
 * default, and logins keep working).
 */
#define AUTH_QUOTA_DEFAULT (-1) /* not set here: [quota] in the config applies */
#define AUTH_QUOTA_KEEP (-2)    /* auth_file_set_quota(): leave as it is */
struct auth_quota {
	int64_t storage;  /* octets, 0 = no limit, or AUTH_QUOTA_DEFAULT */
	int64_t messages; /* 0 = no limit, or AUTH_QUOTA_DEFAULT */
};
/* The limits set on user's line. ROOST_ENOTFOUND for an unknown user. */
int auth_user_quota(struct auth *auth, const char *user, struct auth_quota *q_r);
/* Parse "quota_storage"-style SIZE text ("100M", "0"); ROOST_EINVAL. */
int auth_quota_parse_size(const char *s, uint64_t *v_r);

/* passwd-file editing for `roost user`: atomic rewrite (temp file, fsync,
 * rename). ROOST_EEXISTS / ROOST_ENOTFOUND as appropriate. */
int auth_file_add(const char *path, const char *user, const char *hash);
int auth_file_set_password(const char *path, const char *user, const char *hash);
int auth_file_delete(const char *path, const char *user);
/* Write user's quota_storage= and quota_messages= extra fields (each a
 * value >= 0, AUTH_QUOTA_DEFAULT to remove it, AUTH_QUOTA_KEEP to leave
 * it), keeping every other field; same atomic rewrite. */
int auth_file_set_quota(const char *path, const char *user, int64_t storage, int64_t messages);
/* Call fn for every user of the file, in name order (a missing file has
 * none). ROOST_EINVAL / ROOST_EIO for a bad file (logged). */
typedef void auth_list_fn(const char *user, void *arg);
int auth_file_list(const char *path, auth_list_fn *fn, void *arg);
/*
 * Is this acceptable as a user name? "local@domain" (one '@', both sides
 * non-empty) or a plain local name; valid UTF-8, at most AUTH_MAX_NAME
 * bytes; no ':', '/', '\', blanks or control characters (C0, DEL, C1); not
 * starting with '#' or '.'. The one rule for user names: the passwd file,
 * `roost user` and storage (storage_user_valid()) all apply it, so every
 * user that can be added can have a store. NULL is not valid.
 */
bool auth_user_name_valid(const char *name);

#endif
