/*
 * DKIM signatures. The body hash streams the relaxed body form straight
 * into SHA-256 (no copy of the message); the signed header fields are the
 * usual set of those present, each taken from the bottom as RFC 6376 5.4.2
 * has verifiers pick them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "roost/config.h"
#include "roost/dkim.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/xalloc.h"

static const char *const signed_fields[] = {
    "from",       "to",           "cc",           "subject",
    "date",       "message-id",   "reply-to",     "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding",
};
#define N_SIGNED (sizeof(signed_fields) / sizeof(signed_fields[0]))

static bool
wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

void
dkim_canon_header(const char *f, size_t len, struct buf *out)
{
	const char *colon = memchr(f, ':', len);
	size_t nlen, i;
	bool pending_sp = false, started = false;

	if (colon == NULL)
		return;
	nlen = (size_t)(colon - f);
	while (nlen > 0 && wsp((uint8_t)f[nlen - 1]))
		nlen--;
	for (i = 0; i < nlen; i++)
		buf_append_byte(out, (uint8_t)((f[i] >= 'A' && f[i] <= 'Z') ? f[i] + 32 : f[i]));
	buf_append_byte(out, ':');
	for (i = nlen; i < len && f[i] != ':'; i++)
		;
	for (i++; i < len; i++) {
		uint8_t c = (uint8_t)f[i];

		if (c == '\r' || c == '\n')
			continue; /* unfold */
		if (wsp(c)) {
			pending_sp = started;
			continue;
		}
		if (pending_sp)
			buf_append_byte(out, ' ');
		pending_sp = false;
		started = true;
		buf_append_byte(out, c);
	}
}

/* The relaxed body, fed to sink (a buf or a digest) line by line. */
struct body_sink {
	struct buf *out;
	EVP_MD_CTX *md;
};

static void
sink(struct body_sink *s, const void *p, size_t n)
{
	if (s->out != NULL)
		buf_append(s->out, p, n);
	if (s->md != NULL)
		EVP_DigestUpdate(s->md, p, n);
}

static void
canon_body(const uint8_t *b, size_t len, struct body_sink *s)
{
	struct buf line = BUF_INIT(0);
	size_t empty = 0, i = 0;

	while (i < len) {
		size_t start = i, end;
		bool pending_sp = false;

		while (i < len && b[i] != '\n')
			i++;
		end = i;
		if (end > start && b[end - 1] == '\r')
			end--;
		if (i < len)
			i++; /* the LF */
		buf_reset(&line);
		for (size_t k = start; k < end; k++) {
			if (wsp(b[k])) {
				pending_sp = true;
				continue;
			}
			if (pending_sp)
				buf_append_byte(&line, ' ');
			pending_sp = false;
			buf_append_byte(&line, b[k]);
		}
		/* Trailing white space is gone (pending_sp dropped). */
		if (line.len == 0) {
			empty++; /* kept back: trailing empty lines vanish */
			continue;
		}
		for (; empty > 0; empty--)
			sink(s, "\r\n", 2);
		sink(s, line.data, line.len);
		sink(s, "\r\n", 2);
	}
	buf_free(&line);
}

void
dkim_canon_body(const uint8_t *body, size_t len, struct buf *out)
{
	struct body_sink s = {out, NULL};

	canon_body(body, len, &s);
}

/* The header block's length (through the blank line) and the body. */
static size_t
header_end(const uint8_t *m, size_t len, size_t *body_r)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (m[i] == '\n' &&
		    (m[i + 1] == '\n' || (m[i + 1] == '\r' && i + 2 < len && m[i + 2] == '\n'))) {
			*body_r = m[i + 1] == '\n' ? i + 2 : i + 3;
			return i + 1;
		}
	}
	*body_r = len;
	return len;
}

struct field {
	const char *p;
	size_t len; /* without the final CRLF */
};

/* Split the header block into fields (folded lines joined). */
static size_t
split_fields(const uint8_t *h, size_t hlen, struct field **v_r)
{
	struct field *v = NULL;
	size_t n = 0, i = 0;

	while (i < hlen) {
		size_t start = i, end;

		for (;;) {
			while (i < hlen && h[i] != '\n')
				i++;
			if (i < hlen)
				i++;
			if (i >= hlen || !wsp(h[i]))
				break;
		}
		end = i;
		while (end > start && (h[end - 1] == '\n' || h[end - 1] == '\r'))
			end--;
		if (end > start) {
			v = xreallocarray(v, n + 1, sizeof(*v));
			v[n].p = (const char *)h + start;
			v[n].len = end - start;
			n++;
		}
	}
	*v_r = v;
	return n;
}

static bool
field_is(const struct field *f, const char *name)
{
	size_t n = strlen(name);

	if (f->len <= n || strncasecmp(f->p, name, n) != 0)
		return false;
	for (size_t i = n; i < f->len; i++) {
		if (f->p[i] == ':')
			return true;
		if (!wsp((uint8_t)f->p[i]))
			return false;
	}
	return false;
}

static EVP_PKEY *
load_key(const struct roost_config *cfg, const char *domain)
{
	char path[PATH_MAX];
	FILE *f;
	EVP_PKEY *k;

	if (strchr(domain, '/') != NULL || domain[0] == '.' || domain[0] == '\0')
		return NULL;
	snprintf(path, sizeof(path), "%s/%s.key", cfg->dkim_dir, domain);
	f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL)
		log_error("event=dkim domain=%s path=%s error=\"unreadable key\"", domain, path);
	return k;
}

int
dkim_sign(const struct roost_config *cfg, const char *domain, const uint8_t *msg, size_t len,
          struct buf *out)
{
	EVP_PKEY *key = load_key(cfg, domain);
	EVP_MD_CTX *md = NULL;
	struct field *fields = NULL;
	struct buf data = BUF_INIT(0), hdr = BUF_INIT(0), b64 = BUF_INIT(0), names = BUF_INIT(0);
	uint8_t bh[EVP_MAX_MD_SIZE], sig[1024], hash[32];
	unsigned bhlen = 0;
	size_t body_off, hlen = header_end(msg, len, &body_off), nf, siglen = sizeof(sig);
	bool ed25519;
	struct body_sink s = {NULL, NULL};
	int err = ROOST_EIO;

	if (key == NULL) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s.key", cfg->dkim_dir, domain);
		return access(path, F_OK) == 0 ? ROOST_EIO : ROOST_ENOTFOUND;
	}
	ed25519 = EVP_PKEY_get_id(key) == EVP_PKEY_ED25519;

	/* bh= */
	md = EVP_MD_CTX_new();
	s.md = md;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	canon_body(msg + body_off, len - body_off, &s);
	if (EVP_DigestFinal_ex(md, bh, &bhlen) != 1)
		goto out;
	base64_encode(bh, bhlen, &b64);

	/* The signed fields, bottom-most instance of each, in h= order. */
	nf = split_fields(msg, hlen, &fields);
	for (size_t k = 0; k < N_SIGNED; k++) {
		for (size_t i = nf; i-- > 0;) {
			if (field_is(&fields[i], signed_fields[k])) {
				dkim_canon_header(fields[i].p, fields[i].len, &data);
				buf_append_str(&data, "\r\n");
				buf_printf(&names, "%s%s", names.len > 0 ? ":" : "",
				           signed_fields[k]);
				break;
			}
		}
	}
	if (names.len == 0)
		buf_append_str(&names, "from"); /* no From: at all: sign its absence */
	buf_printf(&hdr,
	           "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n"
	           "\tt=%lld; h=%s;\r\n\tbh=%s;\r\n\tb=",
	           ed25519 ? "ed25519-sha256" : "rsa-sha256", domain, cfg->dkim_selector,
	           (long long)time(NULL), buf_cstr(&names), buf_cstr(&b64));
	dkim_canon_header((const char *)hdr.data, hdr.len, &data);

	/* b= */
	EVP_MD_CTX_reset(md);
	if (ed25519) {
		/* RFC 8463: Ed25519 over the SHA-256 of the data. */
		if (EVP_Digest(data.data, data.len, hash, NULL, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 ||
		    EVP_DigestSign(md, sig, &siglen, hash, sizeof(hash)) != 1)
			goto out;
	} else {
		if (EVP_PKEY_get_size(key) > (int)sizeof(sig) ||
		    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
		    EVP_DigestSignUpdate(md, data.data, data.len) != 1 ||
		    EVP_DigestSignFinal(md, sig, &siglen) != 1)
			goto out;
	}
	buf_reset(&b64);
	base64_encode(sig, siglen, &b64);
	buf_append(out, hdr.data, hdr.len);
	buf_append(out, b64.data, b64.len);
	buf_append_str(out, "\r\n");
	err = 0;
out:
	if (err != 0)
		log_error("event=dkim domain=%s error=\"signing failed\"", domain);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	free(fields);
	buf_free(&data);
	buf_free(&hdr);
	buf_free(&b64);
	buf_free(&names);
	return err;
}

int
dkim_keygen(const struct roost_config *cfg, const char *domain, bool ed25519, struct buf *txt)
{
	char path[PATH_MAX];
	EVP_PKEY *key;
	struct buf pub = BUF_INIT(0), rec = BUF_INIT(0);
	uint8_t raw[64], *der = NULL;
	size_t rawlen = sizeof(raw);
	int fd, derlen, err = ROOST_EIO;
	FILE *f;

	if (strchr(domain, '/') != NULL || domain[0] == '.' || domain[0] == '\0' ||
	    strlen(domain) > 253)
		return ROOST_EINVAL;
	if (mkdir(cfg->dkim_dir, 0700) != 0 && errno != EEXIST)
		return ROOST_EIO;
	snprintf(path, sizeof(path), "%s/%s.key", cfg->dkim_dir, domain);
	key = ed25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
	              : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (key == NULL)
		return ROOST_EIO;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		EVP_PKEY_free(key);
		return errno == EEXIST ? ROOST_EEXISTS : ROOST_EIO;
	}
	f = fdopen(fd, "w");
	if (f == NULL || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fflush(f) != 0 || fsync(fd) != 0) {
		if (f != NULL)
			fclose(f);
		else
			close(fd);
		unlink(path);
		goto out;
	}
	fclose(f);
	if (ed25519) {
		if (EVP_PKEY_get_raw_public_key(key, raw, &rawlen) != 1)
			goto out;
		base64_encode(raw, rawlen, &pub);
	} else {
		derlen = i2d_PUBKEY(key, &der);
		if (derlen <= 0)
			goto out;
		base64_encode(der, (size_t)derlen, &pub);
		OPENSSL_free(der);
	}
	buf_printf(&rec, "v=DKIM1; k=%s; p=%s", ed25519 ? "ed25519" : "rsa", buf_cstr(&pub));
	buf_printf(txt, "%s._domainkey.%s. IN TXT", cfg->dkim_selector, domain);
	for (size_t i = 0; i < rec.len; i += 255)
		buf_printf(txt, " \"%.*s\"", (int)(rec.len - i > 255 ? 255 : rec.len - i),
		           (const char *)rec.data + i);
	buf_append_str(txt, "\n");
	err = 0;
out:
	EVP_PKEY_free(key);
	buf_free(&pub);
	buf_free(&rec);
	return err;
}
