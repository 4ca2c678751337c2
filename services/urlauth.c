/*
 * IMAP URLs resolved against the store, and URLAUTH keys and tokens (see
 * include/roost/urlauth.h).
 */
#include "roost/urlauth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/hex.h"
#include "roost/imapurl.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#define KEY_LEN 32
#define KEYFILE_MAX (1024 * 1024)
#define KEYFILE_MAX_BOXES 512 /* of 512-byte names: the file stays under KEYFILE_MAX */

/* A user's key file in memory. */
struct box_key {
	char *name;
	uint8_t key[KEY_LEN];
};

struct keys {
	uint8_t master[KEY_LEN];
	struct box_key *boxes;
	size_t n;
};

/* Serialises every read-modify-write of a key file in this process (the
 * only writer: `roost deliver` and the CLI never touch these files). Held
 * for one file read or write, never across a call into storage. */
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;

static void
keys_free(struct keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->boxes[i].name);
	free(k->boxes);
	OPENSSL_cleanse(k, sizeof(*k));
}

static char *
keys_dir(const struct roost_config *cfg)
{
	size_t n = strlen(cfg->data_dir) + sizeof("/urlauth");
	char *p = xmalloc(n);
	snprintf(p, n, "%s/urlauth", cfg->data_dir);
	return p;
}

/* <data_dir>/urlauth/<sha256(user) in hex>: no user name reaches a path. */
static char *
keys_path(const struct roost_config *cfg, const char *user)
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];
	char *dir = keys_dir(cfg);

	SHA256((const uint8_t *)user, strlen(user), md);
	hex_encode(md, sizeof(md), hex);
	size_t n = strlen(dir) + 1 + sizeof(hex);
	char *p = xmalloc(n);
	snprintf(p, n, "%s/%s", dir, hex);
	free(dir);
	return p;
}

static int
parse_key(const char *hex, size_t n, uint8_t key[KEY_LEN])
{
	if (n != 2 * KEY_LEN)
		return ROOST_EINVAL;
	for (size_t i = 0; i < KEY_LEN; i++) {
		int b = hex_byte(hex + 2 * i);
		if (b < 0)
			return ROOST_EINVAL;
		key[i] = (uint8_t)b;
	}
	return 0;
}

/*
 * Lines: "roost-urlauth 1", "master <hex>", then "box <hex of the name>
 * <hex key>" for each mailbox RESETKEY gave its own key. ENOTFOUND when the
 * user has no file yet; EIO for a damaged one (logged).
 */
static int
keys_load(const struct roost_config *cfg, const char *user, struct keys *k)
{
	char *path = keys_path(cfg, user);
	struct buf b;
	bool master = false;
	int rc;

	memset(k, 0, sizeof(*k));
	rc = fdio_read_file(path, KEYFILE_MAX, &b);
	if (rc < 0) {
		if (rc != ROOST_ENOTFOUND)
			log_error("event=urlauth_key_read path=%s error=%s", LOG_QUOTE(path),
			          strerror(errno));
		free(path);
		return rc;
	}
	const char *p = buf_cstr(&b), *end = p + b.len;
	rc = 0;
	if (strncmp(p, "roost-urlauth 1\n", 16) != 0)
		rc = ROOST_EIO;
	else
		p += 16;
	while (rc == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			rc = ROOST_EIO;
			break;
		}
		if (strncmp(p, "master ", 7) == 0) {
			if (parse_key(p + 7, (size_t)(nl - p - 7), k->master) < 0)
				rc = ROOST_EIO;
			master = true;
		} else if (strncmp(p, "box ", 4) == 0 && k->n < KEYFILE_MAX_BOXES) {
			const char *sp = memchr(p + 4, ' ', (size_t)(nl - p - 4));
			struct buf name = BUF_INIT(0);
			if (sp == NULL || hex_decode(p + 4, (size_t)(sp - p - 4), &name) < 0) {
				buf_free(&name);
				rc = ROOST_EIO;
				break;
			}
			k->boxes = xreallocarray(k->boxes, k->n + 1, sizeof(*k->boxes));
			struct box_key *bk = &k->boxes[k->n++];
			bk->name =
			    xstrndup(name.data != NULL ? (const char *)name.data : "", name.len);
			buf_free(&name);
			if (parse_key(sp + 1, (size_t)(nl - sp - 1), bk->key) < 0)
				rc = ROOST_EIO;
		} else {
			rc = ROOST_EIO;
		}
		p = nl + 1;
	}
	if (rc == 0 && !master)
		rc = ROOST_EIO;
	if (rc < 0) {
		log_error("event=urlauth_key_damaged path=%s", LOG_QUOTE(path));
		keys_free(k);
	}
	OPENSSL_cleanse(b.data, b.len);
	buf_free(&b);
	free(path);
	return rc;
}

/* Write k as the user's key file: a temporary file, fsync, rename, fsync
 * of the directory. */
static int
keys_save(const struct roost_config *cfg, const char *user, const struct keys *k)
{
	char *dir = keys_dir(cfg), *path = keys_path(cfg, user), *tmp = NULL;
	char hex[2 * KEY_LEN + 1];
	struct buf b = BUF_INIT(0);
	int fd = -1, rc = ROOST_EIO;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_error("event=urlauth_key_write path=%s error=%s", LOG_QUOTE(dir),
		          strerror(errno));
		goto fail;
	}
	buf_append_str(&b, "roost-urlauth 1\nmaster ");
	hex_encode(k->master, KEY_LEN, hex);
	buf_append_str(&b, hex);
	buf_append_byte(&b, '\n');
	for (size_t i = 0; i < k->n; i++) {
		size_t nl = strlen(k->boxes[i].name);
		char *nh = xmalloc(2 * nl + 1);
		hex_encode(k->boxes[i].name, nl, nh);
		hex_encode(k->boxes[i].key, KEY_LEN, hex);
		buf_printf(&b, "box %s %s\n", nh, hex);
		free(nh);
	}
	size_t tn = strlen(path) + 8;
	tmp = xmalloc(tn);
	snprintf(tmp, tn, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || fdio_write_all(fd, b.data, b.len) < 0 ||
	    (cfg->storage_fsync && fsync(fd) < 0)) {
		log_error("event=urlauth_key_write path=%s error=%s", LOG_QUOTE(tmp),
		          strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) < 0) {
		log_error("event=urlauth_key_write path=%s error=%s", LOG_QUOTE(path),
		          strerror(errno));
		goto fail;
	}
	if (cfg->storage_fsync && fdio_fsync_dir(dir) < 0)
		goto fail;
	rc = 0;
fail:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	OPENSSL_cleanse(hex, sizeof(hex));
	if (b.data != NULL)
		OPENSSL_cleanse(b.data, b.len);
	buf_free(&b);
	free(tmp);
	free(path);
	free(dir);
	return rc;
}

static int
random_key(uint8_t key[KEY_LEN])
{
	if (RAND_bytes(key, KEY_LEN) != 1) {
		log_error("event=urlauth_random_failed");
		return ROOST_EIO;
	}
	return 0;
}

/*
 * The access key of (user, mailbox) as the mailbox is now (its
 * UIDVALIDITY) into key. create: make the user's master secret when there
 * is none yet; otherwise a user without a key file gets ROOST_ENOTFOUND
 * (no URL of theirs can be valid). The UIDVALIDITY is mixed in so that a
 * mailbox deleted and made again under its name, whose UIDs start over,
 * does not honour the URLs of the old one (RFC 4467 leaves that to the
 * server; a URL need not carry ";UIDVALIDITY=").
 */
static int
mailbox_key(const struct roost_config *cfg, const char *user, const char *mailbox,
            uint32_t uidvalidity, bool create, uint8_t key[KEY_LEN])
{
	uint8_t base[KEY_LEN];
	char uv[16];
	unsigned len = KEY_LEN;
	struct keys k;
	int rc;

	pthread_mutex_lock(&keys_lock);
	rc = keys_load(cfg, user, &k);
	if (rc == ROOST_ENOTFOUND && create) {
		memset(&k, 0, sizeof(k));
		rc = random_key(k.master);
		if (rc == 0)
			rc = keys_save(cfg, user, &k);
		if (rc < 0)
			keys_free(&k);
	}
	pthread_mutex_unlock(&keys_lock);
	if (rc < 0)
		return rc;
	bool own = false;
	for (size_t i = 0; i < k.n && !own; i++) {
		if (strcmp(k.boxes[i].name, mailbox) == 0) {
			memcpy(base, k.boxes[i].key, KEY_LEN);
			own = true;
		}
	}
	if (!own) {
		/* Derived: HMAC(master, "mailbox\0" name). */
		struct buf in = BUF_INIT(0);
		buf_append(&in, "mailbox", 8);
		buf_append_str(&in, mailbox);
		if (HMAC(EVP_sha256(), k.master, KEY_LEN, in.data, in.len, base, &len) == NULL)
			rc = ROOST_EIO;
		buf_free(&in);
	}
	keys_free(&k);
	/* key = HMAC(base, "uidvalidity\0" n) */
	int n = snprintf(uv, sizeof(uv), "%u", uidvalidity);
	struct buf in = BUF_INIT(0);
	buf_append(&in, "uidvalidity", 12);
	buf_append(&in, uv, (size_t)n);
	len = KEY_LEN;
	if (rc == 0 && HMAC(EVP_sha256(), base, KEY_LEN, in.data, in.len, key, &len) == NULL)
		rc = ROOST_EIO;
	buf_free(&in);
	OPENSSL_cleanse(base, sizeof(base));
	return rc;
}

/* The token of url[0..rump_len) under key, 64 hex digits and NUL. */
static int
sign(const uint8_t key[KEY_LEN], const char *url, size_t rump_len, uint8_t md[KEY_LEN])
{
	unsigned len = KEY_LEN;
	if (HMAC(EVP_sha256(), key, KEY_LEN, (const uint8_t *)url, rump_len, md, &len) == NULL ||
	    len != KEY_LEN)
		return ROOST_EIO;
	return 0;
}

/* Is host this server? */
static bool
host_is_ours(const struct roost_config *cfg, const char *host)
{
	if (strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
	    strcmp(host, "[::1]") == 0)
		return true;
	if (cfg->hostname != NULL && strcasecmp(cfg->hostname, host) == 0)
		return true;
	if (cfg->smtp_domains != NULL)
		for (char **d = cfg->smtp_domains; *d != NULL; d++)
			if (strcasecmp(*d, host) == 0)
				return true;
	return false;
}

bool
urlauth_url_is_foreign(const struct roost_config *cfg, const char *url, size_t len)
{
	struct imapurl u;
	return imapurl_parse(url, len, &u) == 0 && u.absolute && !host_is_ours(cfg, u.host);
}

/* "inbox/x" -> "INBOX/x": the spelling storage uses, so one mailbox has one
 * key however a URL spells it. */
static void
canonical_mailbox(char *name)
{
	if (strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/'))
		memcpy(name, "INBOX", 5);
}

/* Bytes of data in CRLF form (bare LFs made CRLF) appended to out. */
static void
crlf_append(const uint8_t *p, size_t n, struct buf *out)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
			buf_append(out, p + start, i - start);
			buf_append(out, "\r\n", 2);
			start = i + 1;
		}
	}
	buf_append(out, p + start, n - start);
}

/*
 * The section u names of message uid in (owner, mailbox): its octets (or,
 * binary, its decoded content) into data, its body structure into bs.
 * EPERM for a message, part or UIDVALIDITY that does not match.
 */
static int
read_section(const struct roost_services *sv, const char *owner, const char *mailbox,
             const struct imapurl *u, bool binary, struct buf *data, struct buf *bs)
{
	struct mailbox *mb = NULL;
	struct msg_view view = {0};
	struct message *msg = NULL;
	struct buf crlf = BUF_INIT(0), dec = BUF_INIT(0);
	const struct message_part *part = NULL;
	const uint8_t *p = NULL;
	size_t n = 0;
	int rc;

	if (!storage_user_valid(owner) || !storage_name_valid(mailbox))
		return ROOST_EPERM;
	rc = mailbox_open(sv->storage, owner, mailbox, MAILBOX_READONLY, &mb);
	if (rc < 0)
		return rc == ROOST_ENOTFOUND || rc == ROOST_EINVAL ? ROOST_EPERM : rc;
	if (u->uidvalidity != 0) {
		struct mailbox_status stt;
		if ((rc = mailbox_status(mb, &stt)) < 0)
			goto fail;
		if (stt.uidvalidity != u->uidvalidity) {
			rc = ROOST_EPERM;
			goto fail;
		}
	}
	rc = mailbox_read(mb, u->uid, &view);
	if (rc < 0) {
		if (rc == ROOST_ENOTFOUND)
			rc = ROOST_EPERM;
		goto fail;
	}
	if (view.len > URLAUTH_MAX_DATA) {
		rc = ROOST_ETOOBIG;
		goto fail;
	}
	crlf_append(view.data, view.len, &crlf);
	msg_view_release(&view);
	rc = message_parse(crlf.data, crlf.len, NULL, &msg);
	if (rc < 0)
		goto fail;
	const struct message_part *root = message_root(msg);
	rc = ROOST_EPERM;
	if (u->depth == 0) {
		part = root;
		switch (u->sec) {
		case IMAPURL_SEC_ALL:
			p = crlf.data;
			n = crlf.len;
			break;
		case IMAPURL_SEC_HEADER:
			p = crlf.data + root->header_off;
			n = root->header_len;
			part = NULL;
			break;
		case IMAPURL_SEC_TEXT:
			p = crlf.data + root->body_off;
			n = root->body_len;
			part = NULL;
			break;
		case IMAPURL_SEC_MIME:
			goto fail;
		}
	} else {
		if (message_find_part(msg, u->path, u->depth, &part) < 0)
			goto fail;
		const struct message_part *inner = part->is_message_rfc822 ? part->children : NULL;
		switch (u->sec) {
		case IMAPURL_SEC_ALL:
			p = crlf.data + part->body_off;
			n = part->body_len;
			break;
		case IMAPURL_SEC_MIME:
			p = crlf.data + part->header_off;
			n = part->header_len;
			part = NULL;
			break;
		case IMAPURL_SEC_HEADER:
		case IMAPURL_SEC_TEXT:
			if (inner == NULL)
				goto fail;
			p = crlf.data +
			    (u->sec == IMAPURL_SEC_HEADER ? inner->header_off : inner->body_off);
			n = u->sec == IMAPURL_SEC_HEADER ? inner->header_len : inner->body_len;
			part = NULL;
			break;
		}
	}
	/* BINARY and BODYPARTSTRUCTURE name a body part, not a header. */
	if ((binary || bs != NULL) && part == NULL)
		goto fail;
	if (binary && u->depth > 0) {
		if ((rc = message_part_decode(msg, part, &dec)) < 0)
			goto fail;
		p = dec.data;
		n = dec.len;
	}
	if (bs != NULL && (rc = message_bodystructure(msg, part, true, bs)) < 0)
		goto fail;
	if (u->partial) {
		if (u->p_off >= n) {
			n = 0;
		} else {
			p += u->p_off;
			n -= (size_t)u->p_off;
			if (u->p_len != 0 && u->p_len < n)
				n = (size_t)u->p_len;
		}
	}
	if (data != NULL && n > 0)
		buf_append(data, p, n);
	rc = 0;
fail:
	message_free(&msg);
	msg_view_release(&view);
	mailbox_close(&mb);
	buf_free(&dec);
	buf_free(&crlf);
	return rc;
}

int
urlauth_generate(const struct roost_services *sv, const char *user, const char *url, size_t len,
                 const char *mechanism, struct buf *out)
{
	struct imapurl u;
	struct mailbox_status st;
	uint8_t key[KEY_LEN], md[KEY_LEN];
	char hex[2 * KEY_LEN + 1];
	int rc;

	if (strcasecmp(mechanism, "INTERNAL") != 0)
		return ROOST_ENOTSUP;
	if (imapurl_parse(url, len, &u) < 0 || !u.absolute || u.access == IMAPURL_ACCESS_NONE ||
	    u.mechanism[0] != '\0' || strcmp(u.user, user) != 0 || !host_is_ours(sv->cfg, u.host))
		return ROOST_EINVAL;
	canonical_mailbox(u.mailbox);
	if (!storage_name_valid(u.mailbox))
		return ROOST_EINVAL;
	rc = storage_status(sv->storage, user, u.mailbox, &st);
	if (rc < 0)
		return rc;
	if (u.uidvalidity != 0 && u.uidvalidity != st.uidvalidity)
		return ROOST_EINVAL;
	if ((rc = mailbox_key(sv->cfg, user, u.mailbox, st.uidvalidity, true, key)) < 0 ||
	    (rc = sign(key, url, u.rump_len, md)) < 0)
		goto done;
	hex_encode(md, KEY_LEN, hex);
	buf_append(out, url, u.rump_len);
	buf_append_str(out, ":internal:");
	buf_append_str(out, hex);
done:
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

int
urlauth_reset(const struct roost_services *sv, const char *user, const char *mailbox)
{
	struct keys k;
	int rc;

	if (mailbox != NULL) {
		struct mailbox_status st;
		if ((rc = storage_status(sv->storage, user, mailbox, &st)) < 0)
			return rc;
	}
	pthread_mutex_lock(&keys_lock);
	rc = keys_load(sv->cfg, user, &k);
	if (rc == ROOST_ENOTFOUND) {
		/* No key yet: no URL to revoke; a fresh master does no harm. */
		memset(&k, 0, sizeof(k));
		rc = random_key(k.master);
	} else if (rc == 0 && mailbox == NULL) {
		for (size_t i = 0; i < k.n; i++)
			free(k.boxes[i].name);
		k.n = 0;
		rc = random_key(k.master);
	}
	if (rc == 0 && mailbox != NULL) {
		struct box_key *bk = NULL;
		for (size_t i = 0; i < k.n && bk == NULL; i++)
			if (strcmp(k.boxes[i].name, mailbox) == 0)
				bk = &k.boxes[i];
		if (bk == NULL && k.n >= KEYFILE_MAX_BOXES) {
			/* Too many mailboxes of their own key: start over. */
			for (size_t i = 0; i < k.n; i++)
				free(k.boxes[i].name);
			k.n = 0;
			rc = random_key(k.master);
		}
		if (rc == 0 && bk == NULL) {
			k.boxes = xreallocarray(k.boxes, k.n + 1, sizeof(*k.boxes));
			bk = &k.boxes[k.n++];
			bk->name = xstrdup(mailbox);
		}
		if (rc == 0)
			rc = random_key(bk->key);
	}
	if (rc == 0)
		rc = keys_save(sv->cfg, user, &k);
	pthread_mutex_unlock(&keys_lock);
	keys_free(&k);
	return rc;
}

/* May user, reading via via, use a URL of access u->access? */
static bool
access_allows(const struct imapurl *u, const char *user, enum urlauth_via via)
{
	switch (u->access) {
	case IMAPURL_ACCESS_ANONYMOUS:
		return true;
	case IMAPURL_ACCESS_AUTHUSER:
		return user != NULL;
	case IMAPURL_ACCESS_USER:
		return via == URLAUTH_VIA_IMAP && user != NULL && strcmp(u->access_user, user) == 0;
	case IMAPURL_ACCESS_SUBMIT:
		return via == URLAUTH_VIA_SUBMIT && user != NULL &&
		       strcmp(u->access_user, user) == 0;
	case IMAPURL_ACCESS_NONE:
		break;
	}
	return false;
}

/* Check everything about a URLAUTH URL u (url[0..len) as parsed) short of
 * reading the message: EPERM when it may not be used. */
static int
check_urlauth(const struct roost_services *sv, const char *user, enum urlauth_via via,
              const char *url, struct imapurl *u)
{
	uint8_t key[KEY_LEN], md[KEY_LEN], given[KEY_LEN];
	int rc;

	if (!u->absolute || u->user[0] == '\0' || !host_is_ours(sv->cfg, u->host) ||
	    strcasecmp(u->mechanism, "INTERNAL") != 0 || !access_allows(u, user, via))
		return ROOST_EPERM;
	if (u->has_expire && (int64_t)time(NULL) >= u->expire)
		return ROOST_EPERM;
	if (parse_key(u->token, strlen(u->token), given) < 0)
		return ROOST_EPERM;
	canonical_mailbox(u->mailbox);
	if (!storage_user_valid(u->user) || !storage_name_valid(u->mailbox))
		return ROOST_EPERM;
	struct mailbox_status st;
	if (storage_status(sv->storage, u->user, u->mailbox, &st) < 0)
		return ROOST_EPERM; /* no such user or mailbox (or no reading it now) */
	rc = mailbox_key(sv->cfg, u->user, u->mailbox, st.uidvalidity, false, key);
	if (rc == 0)
		rc = sign(key, url, u->rump_len, md);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc == ROOST_ENOTFOUND)
		return ROOST_EPERM;
	if (rc < 0)
		return rc;
	return CRYPTO_memcmp(md, given, KEY_LEN) == 0 ? 0 : ROOST_EPERM;
}

int
urlauth_fetch_part(const struct roost_services *sv, const char *user, enum urlauth_via via,
                   const char *url, size_t len, bool binary, struct buf *data, struct buf *bs)
{
	struct imapurl u;
	int rc;

	if (imapurl_parse(url, len, &u) < 0)
		return ROOST_EPERM;
	if ((rc = check_urlauth(sv, user, via, url, &u)) < 0)
		return rc;
	return read_section(sv, u.user, u.mailbox, &u, binary, data, bs);
}

int
urlauth_fetch(const struct roost_services *sv, const char *user, enum urlauth_via via,
              const char *url, size_t len, struct buf *out)
{
	return urlauth_fetch_part(sv, user, via, url, len, false, out, NULL);
}

int
urlauth_read(const struct roost_services *sv, const char *user, const char *selected,
             const char *url, size_t len, struct buf *out)
{
	struct imapurl u;
	int rc;

	if (imapurl_parse(url, len, &u) < 0)
		return ROOST_EPERM;
	if (u.mechanism[0] != '\0') {
		if ((rc = check_urlauth(sv, user, URLAUTH_VIA_IMAP, url, &u)) < 0)
			return rc;
		return read_section(sv, u.user, u.mailbox, &u, false, out, NULL);
	}
	if (u.access != IMAPURL_ACCESS_NONE)
		return ROOST_EPERM; /* a rump: not usable until signed */
	if (u.absolute && (strcmp(u.user, user) != 0 || !host_is_ours(sv->cfg, u.host)))
		return ROOST_EPERM;
	if (u.mailbox[0] == '\0') {
		if (selected == NULL || strlen(selected) >= sizeof(u.mailbox))
			return ROOST_EPERM;
		strcpy(u.mailbox, selected);
	}
	canonical_mailbox(u.mailbox);
	return read_section(sv, user, u.mailbox, &u, false, out, NULL);
}
