/*
 * Password schemes: verifying a stored "{SCHEME}hash" the way Dovecot writes
 * it, and hashing new passwords.
 *
 * The crypt family ({CRYPT}, {MD5-CRYPT}, {SHA256-CRYPT}, {SHA512-CRYPT},
 * {BLF-CRYPT}, {YESCRYPT}) all go through libcrypt: the stored string carries
 * its own algorithm ($1$, $5$, $6$, $2y$, $y$...) and salt, so the scheme name
 * only says "this is a crypt string". Dovecot's salted digests ({SSHA},
 * {SSHA256}, {SSHA512} and the unsalted ones) are verified with OpenSSL so
 * LDAP-era users migrate too. Every comparison is constant-time.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/hex.h"
#include "roost/sasl.h"
#include "roost/xalloc.h"

#include "auth_impl.h"

enum scheme_kind {
	KIND_PLAIN,  /* the password itself */
	KIND_CRYPT,  /* a crypt(3) string */
	KIND_DIGEST, /* base64 (or hex) of H(password || salt) || salt */
	KIND_SCRAM,  /* RFC 5802 keys: iterations,salt,StoredKey,ServerKey (base64) */
};

struct scheme {
	const char *name;
	enum scheme_kind kind;
	const char *gensalt_prefix; /* crypt prefix for new hashes; NULL: verify only */
	const char *digest;         /* OpenSSL digest name for KIND_DIGEST */
	bool salted;
};

static const struct scheme schemes[] = {
    {"PLAIN", KIND_PLAIN, NULL, NULL, false},
    {"CLEAR", KIND_PLAIN, NULL, NULL, false},
    {"CLEARTEXT", KIND_PLAIN, NULL, NULL, false},
    {"CRYPT", KIND_CRYPT, NULL, NULL, false},
    {"DES-CRYPT", KIND_CRYPT, NULL, NULL, false},
    {"MD5-CRYPT", KIND_CRYPT, "$1$", NULL, false},
    {"SHA256-CRYPT", KIND_CRYPT, "$5$", NULL, false},
    {"SHA512-CRYPT", KIND_CRYPT, "$6$", NULL, false},
    {"BLF-CRYPT", KIND_CRYPT, "$2y$", NULL, false},
    {"YESCRYPT", KIND_CRYPT, "$y$", NULL, false},
    {"SHA", KIND_DIGEST, NULL, "SHA1", false},
    {"SHA1", KIND_DIGEST, NULL, "SHA1", false},
    {"SSHA", KIND_DIGEST, NULL, "SHA1", true},
    {"SHA256", KIND_DIGEST, NULL, "SHA256", false},
    {"SSHA256", KIND_DIGEST, NULL, "SHA256", true},
    {"SHA512", KIND_DIGEST, NULL, "SHA512", false},
    {"SSHA512", KIND_DIGEST, NULL, "SHA512", true},
    {"SCRAM-SHA-256", KIND_SCRAM, NULL, NULL, false},
};

enum encoding { ENC_DEFAULT, ENC_BASE64, ENC_HEX };

bool
auth_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen) {
		/* Spend the same time as a comparison would; lengths are not secret. */
		(void)CRYPTO_memcmp(a, a, alen);
		return false;
	}
	return CRYPTO_memcmp(a, b, alen) == 0;
}

/* Find the scheme of "NAME" or "NAME.ENCODING" (namelen bytes). */
static const struct scheme *
scheme_find(const char *name, size_t namelen, enum encoding *enc_r)
{
	const char *dot = memchr(name, '.', namelen);
	size_t baselen = dot != NULL ? (size_t)(dot - name) : namelen;

	*enc_r = ENC_DEFAULT;
	if (dot != NULL) {
		const char *enc = dot + 1;
		size_t enclen = namelen - baselen - 1;

		if ((enclen == 3 && strncasecmp(enc, "B64", 3) == 0) ||
		    (enclen == 6 && strncasecmp(enc, "BASE64", 6) == 0))
			*enc_r = ENC_BASE64;
		else if (enclen == 3 && strncasecmp(enc, "HEX", 3) == 0)
			*enc_r = ENC_HEX;
		else
			return NULL;
	}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (strlen(schemes[i].name) == baselen &&
		    strncasecmp(schemes[i].name, name, baselen) == 0)
			return &schemes[i];
	}
	return NULL;
}

static int
check_crypt(const char *stored, const char *password, size_t password_len)
{
	struct crypt_data *cd;
	const char *out;
	int ret;

	/* crypt() takes C strings: a password with a NUL in it cannot match. */
	if (memchr(password, '\0', password_len) != NULL || stored[0] == '\0')
		return ROOST_EAUTH;
	/* Large (tens of KB): on the heap, not on a worker's stack. */
	cd = xcalloc(1, sizeof(*cd));
	{
		char *pw = xstrndup(password, password_len);

		out = crypt_rn(pw, stored, cd, (int)sizeof(*cd));
		explicit_bzero(pw, password_len);
		free(pw);
	}
	/* libcrypt fails with NULL or a string starting with '*'. */
	if (out == NULL || out[0] == '*')
		ret = ROOST_EAUTH;
	else
		ret = auth_equal(out, strlen(out), stored, strlen(stored)) ? 0 : ROOST_EAUTH;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ret;
}

static int
check_digest(const struct scheme *sc, enum encoding enc, const char *value, const char *password,
             size_t password_len)
{
	struct buf raw = BUF_INIT(4096);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	const EVP_MD *type;
	EVP_MD_CTX *ctx = NULL;
	size_t dlen;
	int ret = ROOST_EAUTH;

	type = EVP_get_digestbyname(sc->digest);
	if (type == NULL)
		return ROOST_ENOTSUP;
	dlen = (size_t)EVP_MD_get_size(type);
	if (enc == ENC_HEX)
		ret = hex_decode(value, strlen(value), &raw);
	else
		ret = base64_decode(value, strlen(value), &raw);
	if (ret < 0) {
		ret = ROOST_EAUTH;
		goto out;
	}
	ret = ROOST_EAUTH;
	if (sc->salted ? raw.len <= dlen : raw.len != dlen)
		goto out;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, type, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, password, password_len) != 1 ||
	    EVP_DigestUpdate(ctx, raw.data + dlen, raw.len - dlen) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		goto out;
	if (auth_equal(md, mdlen, raw.data, dlen))
		ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	buf_free(&raw);
	return ret;
}

/* ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) keys, stored as Dovecot does:
 * {SCRAM-SHA-256}<iterations>,<salt>,<StoredKey>,<ServerKey> ---- */

int
auth_scram_derive(const char *password, size_t password_len, const uint8_t *salt, size_t salt_len,
                  unsigned iter, struct auth_scram_cred *c)
{
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	unsigned len = 0;
	int ret = ROOST_EINVAL;

	if (salt_len > sizeof(c->salt) || iter < SCRAM_MIN_ITER || iter > SCRAM_MAX_ITER ||
	    password_len > INT32_MAX)
		return ROOST_EINVAL;
	memmove(c->salt, salt, salt_len); /* salt may be c->salt */
	c->salt_len = salt_len;
	c->iter = iter;
	if (PKCS5_PBKDF2_HMAC(password, (int)password_len, c->salt, (int)salt_len, (int)iter,
	                      EVP_sha256(), sizeof(salted), salted) != 1)
		goto out;
	if (HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Client Key", 10,
	         client_key, &len) == NULL ||
	    len != SCRAM_KEY_LEN)
		goto out;
	if (EVP_Digest(client_key, sizeof(client_key), c->stored_key, NULL, EVP_sha256(), NULL) !=
	    1)
		goto out;
	if (HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Server Key", 10,
	         c->server_key, &len) == NULL ||
	    len != SCRAM_KEY_LEN)
		goto out;
	ret = 0;
out:
	explicit_bzero(salted, sizeof(salted));
	explicit_bzero(client_key, sizeof(client_key));
	return ret;
}

/* Decode one base64 field of exactly want bytes (0: 1..max) into out. */
static int
decode_field(const char *s, size_t len, uint8_t *out, size_t want, size_t max, size_t *len_r)
{
	struct buf b = BUF_INIT(256);
	int ret = ROOST_EINVAL;

	if (base64_decode(s, len, &b) == 0 &&
	    (want != 0 ? b.len == want : b.len > 0 && b.len <= max)) {
		memcpy(out, b.data, b.len);
		if (len_r != NULL)
			*len_r = b.len;
		ret = 0;
	}
	buf_free(&b);
	return ret;
}

int
auth_scram_parse(const char *value, struct auth_scram_cred *c)
{
	const char *f[4];
	size_t flen[4];
	const char *p = value;
	unsigned long iter;
	char *end;

	for (int i = 0; i < 4; i++) {
		const char *comma = strchr(p, ',');

		f[i] = p;
		flen[i] = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if ((comma == NULL) != (i == 3))
			return ROOST_EINVAL;
		p = comma != NULL ? comma + 1 : p + flen[i];
	}
	if (flen[0] == 0 || flen[0] > 8 || f[0][0] < '1' || f[0][0] > '9')
		return ROOST_EINVAL;
	iter = strtoul(f[0], &end, 10);
	if (end != f[0] + flen[0] || iter < SCRAM_MIN_ITER || iter > SCRAM_MAX_ITER)
		return ROOST_EINVAL;
	c->iter = (unsigned)iter;
	if (decode_field(f[1], flen[1], c->salt, 0, sizeof(c->salt), &c->salt_len) < 0 ||
	    decode_field(f[2], flen[2], c->stored_key, SCRAM_KEY_LEN, 0, NULL) < 0 ||
	    decode_field(f[3], flen[3], c->server_key, SCRAM_KEY_LEN, 0, NULL) < 0)
		return ROOST_EINVAL;
	return 0;
}

static int
check_scram(const char *value, const char *password, size_t password_len)
{
	struct auth_scram_cred stored, mine;
	int ret;

	if (auth_scram_parse(value, &stored) < 0)
		return ROOST_EAUTH;
	ret = auth_scram_derive(password, password_len, stored.salt, stored.salt_len, stored.iter,
	                        &mine);
	if (ret == 0)
		ret = auth_equal(mine.stored_key, SCRAM_KEY_LEN, stored.stored_key, SCRAM_KEY_LEN)
		          ? 0
		          : ROOST_EAUTH;
	else
		ret = ROOST_EAUTH;
	explicit_bzero(&mine, sizeof(mine));
	return ret;
}

static int
hash_scram(const char *password, struct buf *out)
{
	struct auth_scram_cred c;
	uint8_t salt[16];
	int ret;

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return ROOST_EIO;
	if ((ret = auth_scram_derive(password, strlen(password), salt, sizeof(salt),
	                             SCRAM_DEFAULT_ITER, &c)) < 0)
		return ret;
	if ((ret = buf_printf(out, "{SCRAM-SHA-256}%u,", c.iter)) == 0 &&
	    (ret = base64_encode(c.salt, c.salt_len, out)) == 0 &&
	    (ret = buf_append_byte(out, ',')) == 0 &&
	    (ret = base64_encode(c.stored_key, SCRAM_KEY_LEN, out)) == 0 &&
	    (ret = buf_append_byte(out, ',')) == 0)
		ret = base64_encode(c.server_key, SCRAM_KEY_LEN, out);
	explicit_bzero(&c, sizeof(c));
	return ret;
}

int
auth_check_hash(const char *stored, const char *password, size_t password_len)
{
	const struct scheme *sc;
	enum encoding enc;
	const char *value;

	if (stored[0] != '{')
		return check_crypt(stored, password, password_len); /* bare crypt string */
	value = strchr(stored, '}');
	if (value == NULL)
		return ROOST_ENOTSUP;
	sc = scheme_find(stored + 1, (size_t)(value - stored - 1), &enc);
	value++;
	if (sc == NULL)
		return ROOST_ENOTSUP;
	switch (sc->kind) {
	case KIND_PLAIN:
		if (enc == ENC_BASE64 || enc == ENC_HEX) {
			struct buf raw = BUF_INIT(4096);
			int ret = enc == ENC_HEX ? hex_decode(value, strlen(value), &raw)
			                         : base64_decode(value, strlen(value), &raw);

			if (ret == 0)
				ret = auth_equal(password, password_len, raw.data, raw.len)
				          ? 0
				          : ROOST_EAUTH;
			else
				ret = ROOST_EAUTH;
			if (raw.data != NULL)
				explicit_bzero(raw.data, raw.cap);
			buf_free(&raw);
			return ret;
		}
		return auth_equal(password, password_len, value, strlen(value)) ? 0 : ROOST_EAUTH;
	case KIND_CRYPT:
		if (enc != ENC_DEFAULT)
			return ROOST_ENOTSUP;
		return check_crypt(value, password, password_len);
	case KIND_DIGEST:
		return check_digest(sc, enc, value, password, password_len);
	case KIND_SCRAM:
		if (enc != ENC_DEFAULT)
			return ROOST_ENOTSUP;
		return check_scram(value, password, password_len);
	}
	return ROOST_ENOTSUP;
}

/* crypt(3) prefixes of key-stretching algorithms (thousands of rounds or a
 * cost parameter): what a default hash costs. DES and MD5-crypt are not. */
static const char *const slow_crypt[] = {"$5$",  "$6$", "$2a$", "$2b$", "$2x$",
                                         "$2y$", "$y$", "$gy$", "$7$"};

bool
auth_hash_is_slow(const char *stored)
{
	const struct scheme *sc = NULL;
	const char *value = stored;
	enum encoding enc;

	if (stored[0] == '{') {
		value = strchr(stored, '}');
		if (value == NULL)
			return false;
		sc = scheme_find(stored + 1, (size_t)(value - stored - 1), &enc);
		if (sc == NULL || enc != ENC_DEFAULT)
			return false;
		value++;
		if (sc->kind == KIND_SCRAM)
			return true;
		if (sc->kind != KIND_CRYPT)
			return false;
	}
	for (size_t i = 0; i < sizeof(slow_crypt) / sizeof(slow_crypt[0]); i++) {
		if (strncmp(value, slow_crypt[i], strlen(slow_crypt[i])) == 0)
			return true;
	}
	return false;
}

bool
auth_scheme_supported(const char *scheme)
{
	enum encoding enc;
	const struct scheme *sc = scheme_find(scheme, strlen(scheme), &enc);
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];

	if (sc == NULL || enc != ENC_DEFAULT)
		return false;
	if (sc->kind == KIND_PLAIN || sc->kind == KIND_SCRAM)
		return true;
	if (sc->gensalt_prefix == NULL)
		return false;
	return crypt_gensalt_rn(sc->gensalt_prefix, 0, NULL, 0, salt, sizeof(salt)) != NULL;
}

int
auth_hash_password(const char *scheme, const char *password, struct buf *out)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const struct scheme *sc;
	enum encoding enc;
	const char *hash;
	int ret;

	sc = scheme_find(scheme, strlen(scheme), &enc);
	if (sc == NULL || enc != ENC_DEFAULT)
		return ROOST_ENOTSUP;
	/* Whatever goes into the passwd file must keep it one line of fields. */
	if (strlen(password) > AUTH_MAX_PASSWORD)
		return ROOST_ETOOBIG;
	if (sc->kind == KIND_PLAIN) {
		for (const char *p = password; *p != '\0'; p++) {
			if (*p == ':' || *p == '\n' || *p == '\r')
				return ROOST_EINVAL;
		}
		return buf_printf(out, "{%s}%s", sc->name, password);
	}
	if (sc->kind == KIND_SCRAM)
		return hash_scram(password, out);
	if (sc->kind != KIND_CRYPT || sc->gensalt_prefix == NULL)
		return ROOST_ENOTSUP;
	/* NULL random bytes: libcrypt takes them from the kernel. */
	if (crypt_gensalt_rn(sc->gensalt_prefix, 0, NULL, 0, salt, sizeof(salt)) == NULL)
		return ROOST_ENOTSUP;
	cd = xcalloc(1, sizeof(*cd));
	hash = crypt_rn(password, salt, cd, (int)sizeof(*cd));
	if (hash == NULL || hash[0] == '*')
		ret = ROOST_ENOTSUP;
	else
		ret = buf_printf(out, "{%s}%s", sc->name, hash);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ret;
}
