/*
 * Message encryption for Web Push (RFC 8291) in the aes128gcm content
 * coding (RFC 8188), for PushSubscriptions created with keys: an
 * ephemeral P-256 key per message, ECDH with the client's p256dh key,
 * HKDF-SHA-256 keyed by the client's auth secret, one AES-128-GCM record.
 * The push service that relays the POST sees only ciphertext.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/xalloc.h"

#include "jmap_push_impl.h"

/* Strict base64url (RFC 4648 5), padding allowed but not required. */
static int
b64url_decode(const char *s, uint8_t *out, size_t max, size_t *len_r)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0, sl = strlen(s);

	while (sl > 0 && s[sl - 1] == '=')
		sl--;
	for (size_t i = 0; i < sl; i++) {
		char c = s[i];
		int v = c >= 'A' && c <= 'Z'   ? c - 'A'
		        : c >= 'a' && c <= 'z' ? c - 'a' + 26
		        : c >= '0' && c <= '9' ? c - '0' + 52
		        : c == '-'             ? 62
		        : c == '_'             ? 63
		                               : -1;

		if (v < 0)
			return ROOST_EINVAL;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= max)
				return ROOST_EINVAL;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	*len_r = n;
	return 0;
}

static EVP_PKEY *
peer_key(const uint8_t pub[JMAP_PUSH_P256DH_LEN])
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *key = NULL;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
	    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub,
	                                      JMAP_PUSH_P256DH_LEN),
	    OSSL_PARAM_construct_end(),
	};

	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		key = NULL;
	EVP_PKEY_CTX_free(ctx);
	return key;
}

int
jmap_push_keys_decode(const char *p256dh, const char *auth, uint8_t pub_r[JMAP_PUSH_P256DH_LEN],
                      uint8_t auth_r[JMAP_PUSH_AUTH_LEN])
{
	size_t n;
	EVP_PKEY *k;

	if (p256dh == NULL || auth == NULL)
		return ROOST_EINVAL;
	if (b64url_decode(p256dh, pub_r, JMAP_PUSH_P256DH_LEN, &n) != 0 ||
	    n != JMAP_PUSH_P256DH_LEN || pub_r[0] != 0x04)
		return ROOST_EINVAL;
	if (b64url_decode(auth, auth_r, JMAP_PUSH_AUTH_LEN, &n) != 0 || n != JMAP_PUSH_AUTH_LEN)
		return ROOST_EINVAL;
	/* A point off the curve is refused here, not at the first push. */
	if ((k = peer_key(pub_r)) == NULL)
		return ROOST_EINVAL;
	EVP_PKEY_free(k);
	return 0;
}

/* HMAC-SHA-256(key, a || b || c), the HKDF steps of RFC 8291 3.4. */
static void
hmac3(const uint8_t *key, size_t klen, const void *a, size_t alen, const void *b, size_t blen,
      const void *c, size_t clen, uint8_t out[32])
{
	uint8_t buf[256];
	unsigned olen = 32;

	memcpy(buf, a, alen);
	if (blen > 0)
		memcpy(buf + alen, b, blen);
	if (clen > 0)
		memcpy(buf + alen + blen, c, clen);
	HMAC(EVP_sha256(), key, (int)klen, buf, alen + blen + clen, out, &olen);
}

int
jmap_push_encrypt(const uint8_t ua_pub[JMAP_PUSH_P256DH_LEN],
                  const uint8_t auth[JMAP_PUSH_AUTH_LEN], const uint8_t *in, size_t len,
                  struct buf *out)
{
	EVP_PKEY *eph = NULL, *peer = NULL;
	EVP_PKEY_CTX *dctx = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	uint8_t as_pub[JMAP_PUSH_P256DH_LEN], secret[32], salt[16], prk_key[32], ikm[32], prk[32];
	uint8_t cek[32], nonce[32], tag[16], info[14 + 1 + 2 * JMAP_PUSH_P256DH_LEN], rs[4];
	uint8_t *ct = NULL, *pt = NULL;
	size_t plen = 0, slen = sizeof(secret);
	uint32_t rsv;
	int clen = 0, fl = 0, rc = ROOST_EIO;
	static const uint8_t one = 1;

	if (len > (1u << 20))
		return ROOST_ETOOBIG;
	if ((peer = peer_key(ua_pub)) == NULL)
		return ROOST_EINVAL;
	eph = EVP_EC_gen("P-256");
	if (eph == NULL ||
	    EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, as_pub,
	                                    sizeof(as_pub), &plen) != 1 ||
	    plen != sizeof(as_pub))
		goto fail;
	dctx = EVP_PKEY_CTX_new(eph, NULL);
	if (dctx == NULL || EVP_PKEY_derive_init(dctx) <= 0 ||
	    EVP_PKEY_derive_set_peer(dctx, peer) <= 0 ||
	    EVP_PKEY_derive(dctx, secret, &slen) <= 0 || slen != 32)
		goto fail;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		goto fail;

	/* RFC 8291 3.3, 3.4 */
	hmac3(auth, JMAP_PUSH_AUTH_LEN, secret, 32, NULL, 0, NULL, 0, prk_key);
	memcpy(info, "WebPush: info", 14); /* with its NUL */
	memcpy(info + 14, ua_pub, JMAP_PUSH_P256DH_LEN);
	memcpy(info + 14 + JMAP_PUSH_P256DH_LEN, as_pub, JMAP_PUSH_P256DH_LEN);
	hmac3(prk_key, 32, info, sizeof(info) - 1, &one, 1, NULL, 0, ikm);
	/* RFC 8188 2.2, 2.3 */
	hmac3(salt, sizeof(salt), ikm, 32, NULL, 0, NULL, 0, prk);
	hmac3(prk, 32, "Content-Encoding: aes128gcm", 28, &one, 1, NULL, 0, cek);
	hmac3(prk, 32, "Content-Encoding: nonce", 24, &one, 1, NULL, 0, nonce);

	/* One record: the payload, the last-record delimiter 2, no padding. */
	pt = xmalloc(len + 1);
	ct = xmalloc(len + 1);
	if (len > 0)
		memcpy(pt, in, len);
	pt[len] = 2;
	cctx = EVP_CIPHER_CTX_new();
	if (cctx == NULL || EVP_EncryptInit_ex(cctx, EVP_aes_128_gcm(), NULL, cek, nonce) != 1 ||
	    EVP_EncryptUpdate(cctx, ct, &clen, pt, (int)len + 1) != 1 ||
	    EVP_EncryptFinal_ex(cctx, ct + clen, &fl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		goto fail;
	clen += fl;
	rsv = (uint32_t)clen + 16;
	if (rsv < 4096)
		rsv = 4096;
	rs[0] = (uint8_t)(rsv >> 24);
	rs[1] = (uint8_t)(rsv >> 16);
	rs[2] = (uint8_t)(rsv >> 8);
	rs[3] = (uint8_t)rsv;
	buf_append(out, salt, sizeof(salt));
	buf_append(out, rs, sizeof(rs));
	buf_append_byte(out, JMAP_PUSH_P256DH_LEN);
	buf_append(out, as_pub, sizeof(as_pub));
	buf_append(out, ct, (size_t)clen);
	buf_append(out, tag, sizeof(tag));
	rc = 0;
fail:
	EVP_CIPHER_CTX_free(cctx);
	free(pt);
	free(ct);
	EVP_PKEY_CTX_free(dctx);
	EVP_PKEY_free(eph);
	EVP_PKEY_free(peer);
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(cek, sizeof(cek));
	return rc;
}
