/*
 * IMAP URLs resolved against the store, and URLAUTH keys and tokens (see
 * include/roost/urlauth.h).
 */
#include "roost/urlauth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/hex.h"
#include "roost/imapurl.h"
#include "roost/log.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#define KEY_LEN 32

/* Where the keys live: metadata entries (storage.h) of the user's server
 * part and of each mailbox, so every backend keeps them, every pgsql node
 * sees them, and a mailbox's key goes when the mailbox is deleted. */
#define ENTRY_MASTER STORAGE_METADATA_INTERNAL "urlauth/master"
#define ENTRY_MAILBOX STORAGE_METADATA_INTERNAL "urlauth/key"

/* Serialises the making of a key in this process, so that two sessions of
 * one user signing their first URLs at once make one key, not two. Held
 * across one metadata read and write; never taken inside storage. */
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;

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

static int
random_key(uint8_t key[KEY_LEN])
{
	if (RAND_bytes(key, KEY_LEN) != 1) {
		log_error("event=urlauth_random_failed");
		return ROOST_EIO;
	}
	return 0;
}

/* Entry name of (user, mailbox ("": the server part)) into key: 0, or
 * ROOST_ENOTFOUND when it is absent (or not a key). */
static int
key_get(struct storage *st, const char *user, const char *mailbox, const char *name,
        uint8_t key[KEY_LEN])
{
	struct metadata_entry *e = NULL;
	size_t n = 0;
	int rc = storage_metadata_get(st, user, mailbox, name, 0, &e, &n);

	if (rc == 0 && (n != 1 || e[0].len != KEY_LEN))
		rc = ROOST_ENOTFOUND;
	if (rc == 0)
		memcpy(key, e[0].value, KEY_LEN);
	if (n > 0)
		OPENSSL_cleanse(e[0].value, e[0].len);
	storage_metadata_free(e, n);
	return rc;
}

static int
key_set(struct storage *st, const char *user, const char *mailbox, const char *name,
        const uint8_t key[KEY_LEN])
{
	const char *names[1] = {name};
	const uint8_t *values[1] = {key};
	size_t lens[1] = {KEY_LEN};

	return storage_metadata_set(st, user, mailbox, names, values, lens, 1);
}

/* The key of entry name, made (random) when absent and create is true. */
static int
key_get_or_make(struct storage *st, const char *user, const char *mailbox, const char *name,
                bool create, uint8_t key[KEY_LEN])
{
	int rc = key_get(st, user, mailbox, name, key);

	if (rc != ROOST_ENOTFOUND || !create)
		return rc;
	pthread_mutex_lock(&keys_lock);
	rc = key_get(st, user, mailbox, name, key);
	if (rc == ROOST_ENOTFOUND && (rc = random_key(key)) == 0)
		rc = key_set(st, user, mailbox, name, key);
	pthread_mutex_unlock(&keys_lock);
	return rc;
}

/*
 * The access key of (user, mailbox) as the mailbox is now into key:
 * HMAC(master, mailbox's own key || "uidvalidity" n). create: make the
 * user's master secret and the mailbox's key when absent (GENURLAUTH);
 * otherwise ROOST_ENOTFOUND (no URL to it can be valid). The mailbox's
 * own key goes with the mailbox, and its UIDVALIDITY is mixed in, so a
 * mailbox deleted and made again under its name, whose UIDs start over,
 * does not honour the URLs of the old one (a URL need not carry
 * ";UIDVALIDITY=").
 */
static int
mailbox_key(struct storage *st, const char *user, const char *mailbox, uint32_t uidvalidity,
            bool create, uint8_t key[KEY_LEN])
{
	uint8_t master[KEY_LEN], own[KEY_LEN];
	uint8_t in[KEY_LEN + 24];
	unsigned len = KEY_LEN;
	int n, rc;

	if ((rc = key_get_or_make(st, user, "", ENTRY_MASTER, create, master)) < 0)
		return rc;
	if ((rc = key_get_or_make(st, user, mailbox, ENTRY_MAILBOX, create, own)) < 0)
		goto done;
	memcpy(in, own, KEY_LEN);
	n = snprintf((char *)in + KEY_LEN, sizeof(in) - KEY_LEN, "uidvalidity%u", uidvalidity);
	if (HMAC(EVP_sha256(), master, KEY_LEN, in, KEY_LEN + (size_t)n, key, &len) == NULL)
		rc = ROOST_EIO;
done:
	OPENSSL_cleanse(master, sizeof(master));
	OPENSSL_cleanse(own, sizeof(own));
	OPENSSL_cleanse(in, sizeof(in));
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
	if ((rc = mailbox_key(sv->storage, user, u.mailbox, st.uidvalidity, true, key)) < 0 ||
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
	uint8_t key[KEY_LEN];
	int rc;

	/* A new mailbox key ends that mailbox's URLs; a new master every URL
	 * of the user (the mailbox keys are mixed with it). */
	if ((rc = random_key(key)) == 0)
		rc = key_set(sv->storage, user, mailbox != NULL ? mailbox : "",
		             mailbox != NULL ? ENTRY_MAILBOX : ENTRY_MASTER, key);
	OPENSSL_cleanse(key, sizeof(key));
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
	rc = mailbox_key(sv->storage, u->user, u->mailbox, st.uidvalidity, false, key);
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
