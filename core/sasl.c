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

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/error.h"
#include "roost/sasl.h"
#include "roost/xalloc.h"

#define SASL_MAX_RESPONSE 8192	/* decoded bytes of one client response */

struct sasl;

struct sasl_mech {
	const char *name;
	bool plaintext;
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
	bool finished;			/* an outcome was returned; no more steps */
	bool authenticated;
	unsigned step_no;		/* responses consumed so far */
	char user[AUTH_MAX_NAME + 1];	/* canonical name once authenticated */
	char *login_user;		/* LOGIN: the name given at the first step */
	void *mech_state;		/* for mechanisms with more state (SCRAM) */
};

/* ---- PLAIN (RFC 4616) ---- */

static int
plain_begin(struct sasl *s, struct buf *chal)
{
	return ROOST_EAGAIN;	/* empty challenge: "+ " / "334 " */
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
		return buf_append_str(chal, "Password:") < 0 ? ROOST_EINVAL : ROOST_EAGAIN;
	}
	ret = auth_verify(s->auth, s->login_user, (const char *)resp, len, s->user,
	    sizeof(s->user));
	return ret == 0 ? 0 : ROOST_EAUTH;
}

static void
login_free(struct sasl *s)
{
	free(s->login_user);
	s->login_user = NULL;
}

static const struct sasl_mech mechs[] = {
	{ .name = "PLAIN", .plaintext = true, .begin = plain_begin, .step = plain_step },
	{ .name = "LOGIN", .plaintext = true, .begin = login_begin, .step = login_step,
	  .free_state = login_free },
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

/* ---- the exchange ---- */

static char mech_list_all[256], mech_list_secure_only[256];
static pthread_once_t mech_list_once = PTHREAD_ONCE_INIT;

static void
mech_list_init(void)
{
	for (size_t i = 0; i < NMECHS; i++) {
		char *lists[2] = { mech_list_all, mech_list_secure_only };

		for (int l = 0; l < 2; l++) {
			if (l == 1 && mechs[i].plaintext)
				continue;
			if (lists[l][0] != '\0')
				strncat(lists[l], " ", sizeof(mech_list_all) - strlen(lists[l]) - 1);
			strncat(lists[l], mechs[i].name, sizeof(mech_list_all) - strlen(lists[l]) - 1);
		}
	}
}

const char *
sasl_mechanisms(const struct auth *auth, bool secure)
{
	pthread_once(&mech_list_once, mech_list_init);
	return auth_plaintext_allowed(auth, secure) ? mech_list_all : mech_list_secure_only;
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
	if (ret == ROOST_EAGAIN && base64_encode(chal.data != NULL ? chal.data : (const uint8_t *)"",
	    chal.len, challenge_out) < 0)
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
	if (m == NULL)
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
		if (ret == ROOST_EAGAIN && base64_encode(chal.data != NULL ? chal.data :
		    (const uint8_t *)"", chal.len, challenge_out) < 0)
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
	free(s);
	*sp = NULL;
}
