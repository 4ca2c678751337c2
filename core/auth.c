/*
 * struct auth: the user table from the passwd file, password verification
 * with the credential cache, and the failed-login throttle. Shared by every
 * worker.
 *
 * Locking: `lock` (rwlock) guards `db`; lookups hold it shared just long
 * enough to copy a name and a hash, never across a slow hash computation.
 * `reload_lock` serialises reloads and guards `seen`. The cache and the
 * throttle lock themselves. Lock order: reload_lock, then lock.
 *
 * The file is re-read on SIGHUP (auth_reload) and also when a lookup notices
 * that it changed (a stat per lookup, as Dovecot's passwd-file does), so
 * `roost user add` takes effect on a running server without a signal. The
 * stat looks the file's name up in its directory, held open (dirfd), not
 * the whole path: a delivery looks its user up three times, and the path's
 * walk was 3% of the server's CPU per delivery (issue 20). A directory
 * replaced under a running server is therefore seen at the next SIGHUP. A
 * file that fails to parse is logged once per change and the old table
 * stays.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/hex.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/xalloc.h"
#include "roost/metrics.h"

#include "auth_impl.h"

#define CACHE_SLOTS 16384
#define THROTTLE_ENTRIES 65536
#define DEFAULT_SCHEME "SHA512-CRYPT"

/* Identity of the file as last read (or attempted), to notice changes. */
struct file_id {
	bool present;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
};

struct auth {
	/* Immutable after auth_open(). */
	const struct roost_config *cfg;
	char *path;
	char *dummy_hash;     /* checked so that every failure costs one slow hash */
	uint8_t fake_key[32]; /* makes SCRAM salts for users without SCRAM keys */
	bool scram;           /* advertise SCRAM-SHA-256 */

	pthread_mutex_t reload_lock;
	struct file_id seen; /* guarded by reload_lock */
	/* The file's directory (O_PATH) and its name in it; -1 when the
	 * directory could not be opened: then the path is walked. The fd is
	 * replaced by auth_reload() under reload_lock (atomic: lookups read
	 * it without the lock; the one replaced, old_dirfd, is closed at
	 * the next reload or at auth_free()). */
	_Atomic int dirfd;
	int old_dirfd; /* reload_lock */
	const char *base;

	pthread_rwlock_t lock;
	struct userdb *db; /* guarded by lock */

	struct auth_cache *cache;       /* self-locking */
	struct auth_throttle *throttle; /* self-locking */
	atomic_ulong dummy_checks;      /* statistics for tests */
};

/* The directory of path, opened O_PATH, or -1. */
static int
open_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (slash == NULL)
		return open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	dir = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
	fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	return fd;
}

static void
file_id_get(const struct auth *auth, struct file_id *id)
{
	int dirfd = atomic_load(&((struct auth *)auth)->dirfd);
	struct stat st;

	memset(id, 0, sizeof(*id));
	if ((dirfd >= 0 ? fstatat(dirfd, auth->base, &st, 0) : stat(auth->path, &st)) < 0)
		return;
	id->present = true;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
	id->ctime = st.st_ctim;
}

static bool
file_id_equal(const struct file_id *a, const struct file_id *b)
{
	if (a->present != b->present)
		return false;
	if (!a->present)
		return true;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Read the file into a new table; a missing file is an empty table. */
static int
load_table(const char *path, struct userdb **db_r)
{
	int ret = userdb_load(path, db_r);

	if (ret == ROOST_ENOTFOUND) {
		*db_r = userdb_new_empty();
		return ROOST_ENOTFOUND;
	}
	return ret;
}

/* Caller holds reload_lock. */
static int
reload_locked(struct auth *auth, const struct file_id *id)
{
	struct userdb *db = NULL, *old;
	int ret;

	auth->seen = *id;
	ret = load_table(auth->path, &db);
	if (ret < 0 && ret != ROOST_ENOTFOUND) {
		log_error("event=reload_failed file=passwd path=%s error=\"%s\" keeping=old",
		          auth->path, roost_strerror(ret));
		return ret;
	}
	pthread_rwlock_wrlock(&auth->lock);
	old = auth->db;
	auth->db = db;
	pthread_rwlock_unlock(&auth->lock);
	log_info("event=reloaded file=passwd path=%s users=%zu%s", auth->path, db->n,
	         ret == ROOST_ENOTFOUND ? " note=\"file absent\"" : "");
	userdb_free(&old);
	return 0;
}

const char *
auth_file_path(const struct auth *auth)
{
	return auth->path;
}

int
auth_reload(struct auth *auth)
{
	struct file_id id;
	int ret;

	pthread_mutex_lock(&auth->reload_lock);
	/* A directory replaced since is looked up again. A lookup may be
	 * using the last descriptor right now: it is closed at the next
	 * reload (a lookup racing with two reloads at worst reads a wrong
	 * identity, which only makes it read the file again). */
	{
		int fd = open_dir(auth->path);

		if (fd >= 0) {
			int prev = atomic_exchange(&auth->dirfd, fd);

			if (auth->old_dirfd >= 0)
				close(auth->old_dirfd);
			auth->old_dirfd = prev;
		}
	}
	file_id_get(auth, &id);
	ret = reload_locked(auth, &id);
	pthread_mutex_unlock(&auth->reload_lock);
	return ret;
}

/* auth_lookups_from_memory() */
static _Thread_local bool from_memory;

void
auth_lookups_from_memory(bool on)
{
	from_memory = on;
}

bool
auth_changed(struct auth *auth)
{
	struct file_id id;
	bool changed;

	file_id_get(auth, &id);
	/* Held across the file's read by a reload: then it is changing. */
	if (pthread_mutex_trylock(&auth->reload_lock) != 0)
		return true;
	changed = !file_id_equal(&id, &auth->seen);
	pthread_mutex_unlock(&auth->reload_lock);
	return changed;
}

/* Re-read the file if it changed since it was last read (or tried). */
static void
maybe_reload(struct auth *auth)
{
	struct file_id id;

	if (from_memory)
		return;
	file_id_get(auth, &id);
	pthread_mutex_lock(&auth->reload_lock);
	if (!file_id_equal(&id, &auth->seen))
		(void)reload_locked(auth, &id);
	pthread_mutex_unlock(&auth->reload_lock);
}

int
auth_open(const struct roost_config *cfg, struct auth **auth_r)
{
	const char *scheme = cfg->password_scheme != NULL ? cfg->password_scheme : DEFAULT_SCHEME;
	struct buf dummy = BUF_INIT(0);
	struct auth *auth;
	uint8_t rnd[18];
	char pw[sizeof(rnd) * 2 + 1];
	int ret;

	if (!auth_scheme_supported(scheme)) {
		log_error("event=auth_open password_scheme=%s error=\"scheme not supported by "
		          "this libcrypt\"",
		          scheme);
		return ROOST_ECONFIG;
	}
	auth = xcalloc(1, sizeof(*auth));
	auth->cfg = cfg;
	if (cfg->passwd_file != NULL && cfg->passwd_file[0] != '\0') {
		auth->path = xstrdup(cfg->passwd_file);
	} else {
		const char *dir = cfg->data_dir != NULL ? cfg->data_dir : "./var";
		size_t n = strlen(dir) + sizeof("/passwd");

		auth->path = xmalloc(n);
		snprintf(auth->path, n, "%s/passwd", dir);
	}
	pthread_mutex_init(&auth->reload_lock, NULL);
	pthread_rwlock_init(&auth->lock, NULL);
	{
		const char *slash = strrchr(auth->path, '/');

		auth->base = slash != NULL ? slash + 1 : auth->path;
	}
	atomic_init(&auth->dirfd, open_dir(auth->path));
	auth->old_dirfd = -1;

	/* A hash of a random password nobody knows, in the configured scheme. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		fatal("event=auth_error error=\"no random bytes\"");
	hex_encode(rnd, sizeof(rnd), pw);
	ret = auth_hash_password(scheme, pw, &dummy);
	explicit_bzero(pw, sizeof(pw));
	if (ret < 0) {
		log_error("event=auth_open password_scheme=%s error=\"%s\"", scheme,
		          roost_strerror(ret));
		buf_free(&dummy);
		ret = ROOST_ECONFIG;
		goto fail;
	}
	auth->dummy_hash = (char *)buf_steal(&dummy, NULL);
	if (RAND_bytes(auth->fake_key, sizeof(auth->fake_key)) != 1)
		fatal("event=auth_error error=\"no random bytes\"");
	auth->scram = strcasecmp(scheme, "SCRAM-SHA-256") == 0;

	file_id_get(auth, &auth->seen);
	ret = load_table(auth->path, &auth->db);
	if (ret == ROOST_ENOTFOUND) {
		log_info("event=userdb_load path=%s users=0 note=\"file absent; add users with "
		         "roost user add\"",
		         auth->path);
	} else if (ret < 0) {
		goto fail;
	} else {
		log_info("event=userdb_load path=%s users=%zu", auth->path, auth->db->n);
	}
	auth->cache = auth_cache_new(CACHE_SLOTS);
	auth->throttle =
	    auth_throttle_new(THROTTLE_ENTRIES, cfg->fail_delay_initial, cfg->fail_delay_max);
	*auth_r = auth;
	return 0;
fail:
	auth_free(&auth);
	return ret;
}

void
auth_free(struct auth **authp)
{
	struct auth *auth = *authp;

	if (auth == NULL)
		return;
	auth_throttle_free(&auth->throttle);
	auth_cache_free(&auth->cache);
	userdb_free(&auth->db);
	pthread_rwlock_destroy(&auth->lock);
	pthread_mutex_destroy(&auth->reload_lock);
	if (atomic_load(&auth->dirfd) >= 0)
		close(atomic_load(&auth->dirfd));
	if (auth->old_dirfd >= 0)
		close(auth->old_dirfd);
	free(auth->dummy_hash);
	explicit_bzero(auth->fake_key, sizeof(auth->fake_key));
	free(auth->path);
	free(auth);
	*authp = NULL;
}

/*
 * Look user up under the read lock and copy what the caller asks for: the
 * canonical name when name_r is not NULL, a copy of the stored hash when
 * hash_r is not NULL, the quota when quota_r is not NULL. ROOST_ENOTFOUND, or
 * ROOST_ETOOBIG when namelen is short.
 */
static int
find_user(struct auth *auth, const char *user, char *name_r, size_t namelen, char **hash_r,
          struct auth_quota *quota_r)
{
	const struct userdb_entry *e;
	int ret = 0;

	if (user == NULL || strlen(user) > AUTH_MAX_NAME)
		return ROOST_ENOTFOUND;
	maybe_reload(auth);
	pthread_rwlock_rdlock(&auth->lock);
	e = userdb_find(auth->db, user);
	if (e == NULL) {
		ret = ROOST_ENOTFOUND;
	} else if (name_r != NULL && strlen(e->name) >= namelen) {
		ret = ROOST_ETOOBIG;
	} else {
		if (name_r != NULL)
			memcpy(name_r, e->name, strlen(e->name) + 1);
		if (hash_r != NULL)
			*hash_r = xstrdup(e->hash);
		if (quota_r != NULL) {
			quota_r->storage = e->quota_storage;
			quota_r->messages = e->quota_messages;
		}
	}
	pthread_rwlock_unlock(&auth->lock);
	return ret;
}

int
auth_lookup(struct auth *auth, const char *user, char *name_r, size_t namelen)
{
	return find_user(auth, user, name_r, namelen, NULL, NULL);
}

int
auth_user_quota(struct auth *auth, const char *user, struct auth_quota *q_r)
{
	q_r->storage = q_r->messages = AUTH_QUOTA_DEFAULT;
	return find_user(auth, user, NULL, 0, NULL, q_r);
}

/* The check of a hash nobody knows the password of: it takes the time of a
 * real check with the configured scheme. */
static void
check_dummy(struct auth *auth, const char *password, size_t password_len)
{
	if (password_len > AUTH_MAX_PASSWORD)
		password_len = AUTH_MAX_PASSWORD;
	(void)auth_check_hash(auth->dummy_hash, password, password_len);
	atomic_fetch_add(&auth->dummy_checks, 1);
}

unsigned long
auth_dummy_checks(struct auth *auth)
{
	return atomic_load(&auth->dummy_checks);
}

/*
 * Every check that does not hit the cache costs at least one slow hash: an
 * unknown user, an unusable password, and a user whose stored password is
 * cheap to check ({PLAIN}, digests, MD5-crypt: accounts migrated from older
 * systems) all pay for the dummy hash too. Otherwise the time of a failed
 * login would tell which users exist and which have a weak stored password.
 */
int
auth_verify(struct auth *auth, const char *user, const char *password, size_t password_len,
            char *name_r, size_t namelen)
{
	char name[AUTH_MAX_NAME + 1];
	char *stored = NULL;
	int ret;

	ret = find_user(auth, user, name, sizeof(name), &stored, NULL);
	if (ret < 0 || password_len == 0 || password_len > AUTH_MAX_PASSWORD) {
		/* The same answer as a wrong password. */
		check_dummy(auth, password, password_len);
		ret = ROOST_EAUTH;
		goto out;
	}
	if (strlen(name) >= namelen) {
		ret = ROOST_ETOOBIG;
		goto out;
	}
	if (auth->cfg->auth_cache_ttl > 0 &&
	    auth_cache_check(auth->cache, name, stored, password, password_len,
	                     (time_t)(clock_ms() / 1000))) {
		log_debug("event=auth_verify user=%s cache=hit", LOG_QUOTE(name));
		ret = 0;
	} else {
		ret = auth_check_hash(stored, password, password_len);
		if (!auth_hash_is_slow(stored))
			check_dummy(auth, password, password_len);
		if (ret == ROOST_ENOTSUP) {
			log_warn("event=auth_verify user=%s error=\"unknown password scheme\"",
			         LOG_QUOTE(name));
			ret = ROOST_EAUTH;
		} else if (ret != 0) {
			ret = ROOST_EAUTH;
		} else if (auth->cfg->auth_cache_ttl > 0) {
			auth_cache_put(auth->cache, name, stored, password, password_len,
			               (time_t)(clock_ms() / 1000) +
			                   (time_t)auth->cfg->auth_cache_ttl);
		}
	}
	if (ret == 0)
		memcpy(name_r, name, strlen(name) + 1);
out:
	if (stored != NULL) {
		explicit_bzero(stored, strlen(stored));
		free(stored);
	}
	return ret;
}

/*
 * The throttle key of a peer: an IPv4 address as is (also when written as
 * ::ffff:a.b.c.d), an IPv6 address by its /64, since one host or customer
 * usually holds a whole /64 and could otherwise walk through it.
 */
static const char *
throttle_key(const char *ip, char *out, size_t outlen)
{
	struct in6_addr a6;
	size_t n;

	if (ip == NULL)
		return "";
	if (strchr(ip, ':') == NULL || inet_pton(AF_INET6, ip, &a6) != 1)
		return ip;
	if (IN6_IS_ADDR_V4MAPPED(&a6))
		return inet_ntop(AF_INET, &a6.s6_addr[12], out, (socklen_t)outlen) != NULL ? out
		                                                                           : ip;
	memset(&a6.s6_addr[8], 0, 8);
	if (inet_ntop(AF_INET6, &a6, out, (socklen_t)outlen) == NULL)
		return ip;
	n = strlen(out);
	snprintf(out + n, outlen - n, "/64");
	return out;
}

unsigned
auth_failure(struct auth *auth, const char *peer_ip)
{
	char key[INET6_ADDRSTRLEN + 4];

	metrics_auth_failure();
	return auth_throttle_failure(auth->throttle, throttle_key(peer_ip, key, sizeof(key)),
	                             clock_ms());
}

unsigned
auth_success(struct auth *auth, const char *peer_ip)
{
	char key[INET6_ADDRSTRLEN + 4];

	return auth_throttle_success(auth->throttle, throttle_key(peer_ip, key, sizeof(key)),
	                             clock_ms());
}

bool
auth_plaintext_allowed(const struct auth *auth, bool secure)
{
	return secure || auth->cfg->plaintext_insecure;
}

bool
auth_scram_advertised(const struct auth *auth)
{
	return auth->scram;
}

/* Salt and keys nobody can match, stable for a name within this process. */
static void
fake_scram(const struct auth *auth, const char *user, struct auth_scram_cred *c)
{
	uint8_t mac[32];
	unsigned len = 0;

	(void)HMAC(EVP_sha256(), auth->fake_key, sizeof(auth->fake_key), (const uint8_t *)user,
	           strlen(user), mac, &len);
	c->iter = SCRAM_DEFAULT_ITER;
	memcpy(c->salt, mac, 16);
	c->salt_len = 16;
	if (RAND_bytes(c->stored_key, SCRAM_KEY_LEN) != 1 ||
	    RAND_bytes(c->server_key, SCRAM_KEY_LEN) != 1)
		memset(c->stored_key, 0xa5, SCRAM_KEY_LEN); /* still matches nothing */
}

int
auth_scram_credentials(struct auth *auth, const char *user, char *name_r, size_t namelen,
                       struct auth_scram_cred *c)
{
	char name[AUTH_MAX_NAME + 1];
	char *stored = NULL;
	int ret;

	ret = find_user(auth, user, name, sizeof(name), &stored, NULL);
	if (ret == 0 && strlen(name) >= namelen)
		ret = ROOST_ETOOBIG;
	if (ret == 0) {
		static const char scram[] = "{SCRAM-SHA-256}";
		static const char *const plain[] = {"{PLAIN}", "{CLEAR}", "{CLEARTEXT}"};

		ret = ROOST_EAUTH;
		if (strncasecmp(stored, scram, sizeof(scram) - 1) == 0) {
			if (auth_scram_parse(stored + sizeof(scram) - 1, c) == 0)
				ret = 0;
		} else {
			for (size_t i = 0; i < 3; i++) {
				size_t n = strlen(plain[i]);
				char lower[AUTH_MAX_NAME + 1];

				if (strncasecmp(stored, plain[i], n) != 0)
					continue;
				/* Keys derived on the fly, with a salt stable per name. */
				for (size_t j = 0; j <= strlen(name); j++)
					lower[j] =
					    (char)(name[j] >= 'A' && name[j] <= 'Z' ? name[j] + 32
					                                            : name[j]);
				fake_scram(auth, lower, c);
				if (auth_scram_derive(stored + n, strlen(stored + n), c->salt,
				                      c->salt_len, c->iter, c) == 0)
					ret = 0;
				break;
			}
		}
		if (ret == 0)
			memcpy(name_r, name, strlen(name) + 1);
		else
			log_debug("event=auth_scram user=%s error=\"no SCRAM keys for this "
			          "user's password scheme\"",
			          LOG_QUOTE(name));
	}
	if (ret != 0) {
		char lower[AUTH_MAX_NAME + 1];
		size_t n = user != NULL ? strnlen(user, AUTH_MAX_NAME) : 0;

		for (size_t j = 0; j < n; j++)
			lower[j] =
			    (char)(user[j] >= 'A' && user[j] <= 'Z' ? user[j] + 32 : user[j]);
		lower[n] = '\0';
		fake_scram(auth, lower, c);
		ret = ROOST_EAUTH;
	}
	if (stored != NULL) {
		explicit_bzero(stored, strlen(stored));
		free(stored);
	}
	return ret;
}
