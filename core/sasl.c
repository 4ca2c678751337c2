/*
 * SASL server side (RFC 4422) shared by IMAP, POP3 and SMTP.
 *
 * Each mechanism is one row of `mechs`: a name, whether it sends the password
 * in the clear (and so is refused on insecure connections), and two hooks
 * working on decoded bytes: begin() makes the first challenge when the client
 * gave no initial response, step() consumes one client response. The
 * exchange-level rules (base64, "*" cancels, "=" is an empty initial
 * response, the insecure-connection refusal, one outcome per exchange) live
 * here once. SCRAM-SHA-256 becomes another row with its state behind
 * `mech_state`.
 */
#include <pthread.h>
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
#include "roost/sasl.h"
#include "roost/xalloc.h"

#include "auth_impl.h"

#define SASL_MAX_RESPONSE 8192 /* decoded bytes of one client response */

struct sasl;

struct sasl_mech {
	const char *name;
	bool plaintext;
	/* Offered on this server? NULL: always. */
	bool (*offered)(const struct auth *auth);
	/* First challenge (raw bytes into chal) when there was no initial
	 * response; ROOST_EAGAIN normally. */
	int (*begin)(struct sasl *s, struct buf *chal);
	/* One client response; ROOST_EAGAIN with the next challenge in chal,
	 * 0 when authenticated (s->user set), or an error. */
	int (*step)(struct sasl *s, const uint8_t *resp, size_t len, struct buf *chal);
	void (*free_state)(struct sasl *s);
};

struct sasl {
	struct auth *auth;
	const struct sasl_mech *mech;
	bool finished; /* an outcome was returned; no more steps */
	bool authenticated;
	bool verified;                /* the credentials proved right */
	unsigned step_no;             /* responses consumed so far */
	char user[AUTH_MAX_NAME + 1]; /* canonical name once authenticated */
	char *tried;                  /* the name the client gave, for the log */
	char *login_user;             /* LOGIN: the name given at the first step */
	void *mech_state;             /* for mechanisms with more state (SCRAM) */
};

static void
set_tried(struct sasl *s, const char *name)
{
	free(s->tried);
	s->tried = xstrndup(name, strnlen(name, AUTH_MAX_NAME + 1));
}

/* ---- PLAIN (RFC 4616) ---- */

static int
plain_begin(struct sasl *s, struct buf *chal)
{
	return ROOST_EAGAIN; /* empty challenge: "+ " / "334 " */
}

static int
plain_step(struct sasl *s, const uint8_t *resp, size_t len, struct buf *chal)
{
	const uint8_t *nul1, *nul2;
	char *authzid, *authcid;
	const char *pass;
	size_t pass_len;
	int ret;

	/* authzid NUL authcid NUL passwd, no other NUL */
	nul1 = memchr(resp, '\0', len);
	if (nul1 == NULL)
		return ROOST_EINVAL;
	nul2 = memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - resp));
	if (nul2 == NULL || nul2 == nul1 + 1)
		return ROOST_EINVAL;
	pass = (const char *)nul2 + 1;
	pass_len = len - (size_t)(nul2 + 1 - resp);
	if (memchr(pass, '\0', pass_len) != NULL)
		return ROOST_EINVAL;
	authzid = xstrndup((const char *)resp, (size_t)(nul1 - resp));
	authcid = xstrndup((const char *)nul1 + 1, (size_t)(nul2 - nul1 - 1));
	set_tried(s, authcid);
	/* Acting as another user is not offered: authzid empty or the same. */
	ret = auth_verify(s->auth, authcid, pass, pass_len, s->user, sizeof(s->user));
	if (ret == 0 && authzid[0] != '\0' && strcasecmp(authzid, authcid) != 0)
		ret = ROOST_EAUTH;
	free(authzid);
	free(authcid);
	return ret == 0 ? 0 : ROOST_EAUTH;
}

/* ---- LOGIN (draft-murchison-sasl-login) ---- */

static int
login_begin(struct sasl *s, struct buf *chal)
{
	return buf_append_str(chal, "Username:") < 0 ? ROOST_EINVAL : ROOST_EAGAIN;
}

static int
login_step(struct sasl *s, const uint8_t *resp, size_t len, struct buf *chal)
{
	int ret;

	if (memchr(resp, '\0', len) != NULL)
		return ROOST_EINVAL;
	if (s->login_user == NULL) {
		s->login_user = xstrndup((const char *)resp, len);
		set_tried(s, s->login_user);
		return buf_append_str(chal, "Password:") < 0 ? ROOST_EINVAL : ROOST_EAGAIN;
	}
	ret =
	    auth_verify(s->auth, s->login_user, (const char *)resp, len, s->user, sizeof(s->user));
	return ret == 0 ? 0 : ROOST_EAUTH;
}

static void
login_free(struct sasl *s)
{
	free(s->login_user);
	s->login_user = NULL;
}

/* ---- SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding ---- */

#define SCRAM_NONCE_MAX 256

struct scram_state {
	unsigned stage;               /* 0 client-first, 1 client-final, 2 final ack */
	bool user_ok;                 /* credentials are real (else the proof fails) */
	char name[AUTH_MAX_NAME + 1]; /* canonical name */
	struct auth_scram_cred cred;
	struct buf gs2_header; /* "n,," or "y,,a=..." as sent */
	struct buf client_first_bare;
	struct buf server_first;
	struct buf nonce;        /* client nonce + server nonce */
	struct buf server_final; /* "v=..." */
};

static bool
scram_offered(const struct auth *auth)
{
	return auth_scram_advertised(auth);
}

static int
scram_begin(struct sasl *s, struct buf *chal)
{
	return ROOST_EAGAIN; /* the client speaks first */
}

/* saslname: "=2C" is ',', "=3D" is '=', any other '=' is malformed. */
static int
scram_decode_name(const char *p, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (c == '=') {
			if (len - i < 3)
				return ROOST_EINVAL;
			if (p[i + 1] == '2' && p[i + 2] == 'C')
				c = ',';
			else if (p[i + 1] == '3' && p[i + 2] == 'D')
				c = '=';
			else
				return ROOST_EINVAL;
			i += 2;
		} else if (c == ',' || c == '\0') {
			return ROOST_EINVAL;
		}
		if (o + 1 >= outlen)
			return ROOST_EINVAL;
		out[o++] = c;
	}
	out[o] = '\0';
	return o == 0 ? ROOST_EINVAL : 0;
}

/* Printable ASCII except ',' (RFC 5802 "printable"). */
static bool
scram_nonce_ok(const char *p, size_t len)
{
	if (len == 0 || len > SCRAM_NONCE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
			return false;
	}
	return true;
}

static int
scram_client_first(struct sasl *s, struct scram_state *st, const char *msg, size_t len,
                   struct buf *chal)
{
	char user[AUTH_MAX_NAME + 1], authzid[AUTH_MAX_NAME + 1] = "";
	const char *p = msg, *end = msg + len, *comma, *bare, *nonce;
	uint8_t rnd[18];
	size_t nonce_len;

	/* gs2-cbind-flag: we offer no channel binding, so "p=" is refused. */
	if (len < 3 || (p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		return ROOST_EINVAL;
	p += 2;
	if (p < end && p[0] == 'a' && p + 1 < end && p[1] == '=') {
		comma = memchr(p, ',', (size_t)(end - p));
		if (comma == NULL ||
		    scram_decode_name(p + 2, (size_t)(comma - p - 2), authzid, sizeof(authzid)) < 0)
			return ROOST_EINVAL;
		p = comma;
	}
	if (p >= end || *p != ',')
		return ROOST_EINVAL;
	p++;
	bare = p;
	buf_append(&st->gs2_header, msg, (size_t)(bare - msg));
	/* client-first-message-bare: n=user,r=nonce[,extensions] ("m=" is a
	 * mandatory extension we do not know: refuse). */
	if (end - p < 2 || p[0] != 'n' || p[1] != '=')
		return ROOST_EINVAL;
	comma = memchr(p, ',', (size_t)(end - p));
	if (comma == NULL ||
	    scram_decode_name(p + 2, (size_t)(comma - p - 2), user, sizeof(user)) < 0)
		return ROOST_EINVAL;
	p = comma + 1;
	if (end - p < 2 || p[0] != 'r' || p[1] != '=')
		return ROOST_EINVAL;
	nonce = p + 2;
	comma = memchr(nonce, ',', (size_t)(end - nonce));
	nonce_len = comma != NULL ? (size_t)(comma - nonce) : (size_t)(end - nonce);
	if (!scram_nonce_ok(nonce, nonce_len) || memchr(bare, '\0', (size_t)(end - bare)) != NULL)
		return ROOST_EINVAL;
	if (buf_append(&st->client_first_bare, bare, (size_t)(end - bare)) < 0)
		return ROOST_EINVAL;

	set_tried(s, user);
	st->user_ok =
	    auth_scram_credentials(s->auth, user, st->name, sizeof(st->name), &st->cred) == 0;
	/* Acting as another user is not offered. */
	if (authzid[0] != '\0' && strcasecmp(authzid, user) != 0)
		st->user_ok = false;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return ROOST_ETEMP;
	buf_append(&st->nonce, nonce, nonce_len);
	base64_encode(rnd, sizeof(rnd), &st->nonce);
	if (buf_printf(&st->server_first, "r=%s,s=", buf_cstr(&st->nonce)) < 0 ||
	    base64_encode(st->cred.salt, st->cred.salt_len, &st->server_first) < 0 ||
	    buf_printf(&st->server_first, ",i=%u", st->cred.iter) < 0 ||
	    buf_append(chal, st->server_first.data, st->server_first.len) < 0)
		return ROOST_EINVAL;
	st->stage = 1;
	return ROOST_EAGAIN;
}

static int
scram_client_final(struct sasl *s, struct scram_state *st, const char *msg, size_t len,
                   struct buf *chal)
{
	struct buf cb = BUF_INIT(256), proof = BUF_INIT(64), authmsg = BUF_INIT(0);
	const char *end = msg + len, *p, *proof_at;
	uint8_t client_sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], check[SCRAM_KEY_LEN];
	uint8_t server_sig[SCRAM_KEY_LEN];
	unsigned mlen = 0;
	size_t nlen;
	int ret = ROOST_EINVAL;

	/* c=<base64 gs2-header>,r=<nonce>[,ext...],p=<proof>; the proof last. */
	proof_at = NULL;
	for (p = msg; p + 3 <= end; p++) {
		if (p[0] == ',' && p[1] == 'p' && p[2] == '=')
			proof_at = p;
	}
	if (proof_at == NULL || len < 2 || msg[0] != 'c' || msg[1] != '=' ||
	    memchr(msg, '\0', len) != NULL)
		goto out;
	p = memchr(msg, ',', len);
	if (base64_decode(msg + 2, (size_t)(p - msg - 2), &cb) < 0 ||
	    cb.len != st->gs2_header.len || memcmp(cb.data, st->gs2_header.data, cb.len) != 0)
		goto out;
	p++;
	nlen = st->nonce.len;
	if (end - p <= (ptrdiff_t)(nlen + 2) || p[0] != 'r' || p[1] != '=' ||
	    memcmp(p + 2, st->nonce.data, nlen) != 0 ||
	    (p + 2 + nlen != proof_at && p[2 + nlen] != ','))
		goto out;
	if (base64_decode(proof_at + 3, (size_t)(end - proof_at - 3), &proof) < 0 ||
	    proof.len != SCRAM_KEY_LEN)
		goto out;

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	buf_append(&authmsg, st->client_first_bare.data, st->client_first_bare.len);
	buf_append_byte(&authmsg, ',');
	buf_append(&authmsg, st->server_first.data, st->server_first.len);
	buf_append_byte(&authmsg, ',');
	buf_append(&authmsg, msg, (size_t)(proof_at - msg));

	ret = ROOST_EAUTH;
	if (HMAC(EVP_sha256(), st->cred.stored_key, SCRAM_KEY_LEN, authmsg.data, authmsg.len,
	         client_sig, &mlen) == NULL)
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof.data[i] ^ client_sig[i];
	if (EVP_Digest(client_key, SCRAM_KEY_LEN, check, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	if (CRYPTO_memcmp(check, st->cred.stored_key, SCRAM_KEY_LEN) != 0 || !st->user_ok)
		goto out;
	if (HMAC(EVP_sha256(), st->cred.server_key, SCRAM_KEY_LEN, authmsg.data, authmsg.len,
	         server_sig, &mlen) == NULL)
		goto out;
	buf_append_str(&st->server_final, "v=");
	base64_encode(server_sig, SCRAM_KEY_LEN, &st->server_final);
	if (buf_append(chal, st->server_final.data, st->server_final.len) < 0)
		goto out;
	/* The client checks v= and answers with an empty response (IMAP and
	 * SMTP cannot carry data in their success reply). */
	st->stage = 2;
	s->verified = true;
	ret = ROOST_EAGAIN;
out:
	explicit_bzero(client_key, sizeof(client_key));
	buf_free(&cb);
	buf_free(&proof);
	buf_free(&authmsg);
	return ret;
}

static int
scram_step(struct sasl *s, const uint8_t *resp, size_t len, struct buf *chal)
{
	struct scram_state *st = s->mech_state;

	if (st == NULL) {
		st = s->mech_state = xcalloc(1, sizeof(*st));
		buf_init(&st->gs2_header, 1024);
		buf_init(&st->client_first_bare, 2048);
		buf_init(&st->server_first, 1024);
		buf_init(&st->nonce, SCRAM_NONCE_MAX + 64);
		buf_init(&st->server_final, 128);
	}
	switch (st->stage) {
	case 0:
		return scram_client_first(s, st, (const char *)resp, len, chal);
	case 1:
		return scram_client_final(s, st, (const char *)resp, len, chal);
	default:
		if (len != 0)
			return ROOST_EINVAL;
		memcpy(s->user, st->name, sizeof(s->user));
		return 0;
	}
}

static void
scram_free(struct sasl *s)
{
	struct scram_state *st = s->mech_state;

	if (st == NULL)
		return;
	buf_free(&st->gs2_header);
	buf_free(&st->client_first_bare);
	buf_free(&st->server_first);
	buf_free(&st->nonce);
	buf_free(&st->server_final);
	explicit_bzero(st, sizeof(*st));
	free(st);
	s->mech_state = NULL;
}

/* Listed in order of preference: advertised in this order. */
static const struct sasl_mech mechs[] = {
    {.name = "SCRAM-SHA-256",
     .plaintext = false,
     .offered = scram_offered,
     .begin = scram_begin,
     .step = scram_step,
     .free_state = scram_free},
    {.name = "PLAIN", .plaintext = true, .begin = plain_begin, .step = plain_step},
    {.name = "LOGIN",
     .plaintext = true,
     .begin = login_begin,
     .step = login_step,
     .free_state = login_free},
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))
_Static_assert(sizeof(mechs) / sizeof(mechs[0]) <= 6, "mechanism list table size");

/* ---- the exchange ---- */

/*
 * The advertised list depends on which rows are offered here and whether
 * plaintext is allowed on the connection: one string per combination (a
 * bitmask over the rows), built once.
 */
#define MASKS (1u << NMECHS)
static char mech_lists[MASKS][128];
static pthread_once_t mech_list_once = PTHREAD_ONCE_INIT;

static void
mech_list_init(void)
{
	for (unsigned mask = 0; mask < MASKS; mask++) {
		char *l = mech_lists[mask];

		for (size_t i = 0; i < NMECHS; i++) {
			if ((mask & (1u << i)) == 0)
				continue;
			if (l[0] != '\0')
				strncat(l, " ", sizeof(mech_lists[0]) - strlen(l) - 1);
			strncat(l, mechs[i].name, sizeof(mech_lists[0]) - strlen(l) - 1);
		}
	}
}

static bool
mech_usable(const struct sasl_mech *m, const struct auth *auth, bool secure)
{
	if (m->offered != NULL && !m->offered(auth))
		return false;
	return !m->plaintext || auth_plaintext_allowed(auth, secure);
}

const char *
sasl_mechanisms(const struct auth *auth, bool secure)
{
	unsigned mask = 0;

	pthread_once(&mech_list_once, mech_list_init);
	for (size_t i = 0; i < NMECHS; i++) {
		if (mech_usable(&mechs[i], auth, secure))
			mask |= 1u << i;
	}
	return mech_lists[mask];
}

/* Strip a trailing CRLF or LF the protocol may have left on the line. */
static size_t
line_len(const char *line)
{
	size_t len = strlen(line);

	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

/* Decode one response (empty_ok: "=" and "" mean no bytes) and run a step. */
static int
run_step(struct sasl *s, const char *text, size_t len, struct buf *challenge_out)
{
	struct buf raw = BUF_INIT(SASL_MAX_RESPONSE), chal = BUF_INIT(SASL_MAX_RESPONSE);
	int ret;

	if (len == 1 && text[0] == '=')
		len = 0;
	if (len > (SASL_MAX_RESPONSE / 3 + 1) * 4)
		ret = ROOST_EINVAL;
	else
		ret = base64_decode(text, len, &raw);
	if (ret == 0) {
		/* base64_decode leaves data NULL for an empty response. */
		static const uint8_t empty[1];

		ret = s->mech->step(s, raw.data != NULL ? raw.data : empty, raw.len, &chal);
		s->step_no++;
	} else {
		ret = ROOST_EINVAL;
	}
	if (ret == ROOST_EAGAIN &&
	    base64_encode(chal.data != NULL ? chal.data : (const uint8_t *)"", chal.len,
	                  challenge_out) < 0)
		ret = ROOST_EINVAL;
	if (raw.data != NULL)
		explicit_bzero(raw.data, raw.cap);
	buf_free(&raw);
	buf_free(&chal);
	return ret;
}

static int
finish(struct sasl *s, int ret)
{
	if (ret != ROOST_EAGAIN) {
		s->finished = true;
		s->authenticated = ret == 0;
		s->verified = s->verified && ret == 0;
		if (s->mech->free_state != NULL)
			s->mech->free_state(s);
	}
	return ret;
}

int
sasl_start(struct auth *auth, const char *mech, bool secure, const char *initial,
           struct buf *challenge_out, struct sasl **sasl_r)
{
	const struct sasl_mech *m = NULL;
	struct sasl *s;
	int ret;

	*sasl_r = NULL;
	buf_reset(challenge_out);
	for (size_t i = 0; i < NMECHS; i++) {
		if (strcasecmp(mechs[i].name, mech) == 0)
			m = &mechs[i];
	}
	if (m == NULL || (m->offered != NULL && !m->offered(auth)))
		return ROOST_ENOTSUP;
	if (m->plaintext && !auth_plaintext_allowed(auth, secure))
		return ROOST_EPERM;
	s = xcalloc(1, sizeof(*s));
	s->auth = auth;
	s->mech = m;
	*sasl_r = s;
	if (initial == NULL) {
		struct buf chal = BUF_INIT(SASL_MAX_RESPONSE);

		ret = m->begin(s, &chal);
		if (ret == ROOST_EAGAIN &&
		    base64_encode(chal.data != NULL ? chal.data : (const uint8_t *)"", chal.len,
		                  challenge_out) < 0)
			ret = ROOST_EINVAL;
		buf_free(&chal);
		return finish(s, ret);
	}
	if (strcmp(initial, "*") == 0)
		return finish(s, ROOST_ECANCELED);
	return finish(s, run_step(s, initial, line_len(initial), challenge_out));
}

int
sasl_step(struct sasl *s, const char *line, struct buf *challenge_out)
{
	size_t len = line_len(line);

	buf_reset(challenge_out);
	if (s->finished)
		return ROOST_EINVAL;
	if (len == 1 && line[0] == '*')
		return finish(s, ROOST_ECANCELED);
	return finish(s, run_step(s, line, len, challenge_out));
}

const char *
sasl_user_tried(const struct sasl *s)
{
	return s != NULL ? s->tried : NULL;
}

bool
sasl_verified(const struct sasl *s)
{
	return s != NULL && s->verified;
}

const char *
sasl_user(const struct sasl *s)
{
	return s != NULL && s->authenticated ? s->user : NULL;
}

void
sasl_free(struct sasl **sp)
{
	struct sasl *s = *sp;

	if (s == NULL)
		return;
	if (s->mech->free_state != NULL)
		s->mech->free_state(s);
	free(s->tried);
	free(s);
	*sp = NULL;
}

const char *
sasl_mech_name(const struct sasl *sasl)
{
	return sasl->mech->name;
}
