#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/sasl.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../core/auth_impl.h"

#include "check_run.h"

static char tmpdir[256];
static struct roost_config cfg;
static struct auth *auth;

static void
setup(void)
{
	char path[300];
	FILE *f;

	strcpy(tmpdir, "/tmp/roost-check-sasl-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = tmpdir;
	cfg.password_scheme = "SHA256-CRYPT";
	cfg.fail_delay_initial = 2;
	cfg.fail_delay_max = 15;
	cfg.auth_cache_ttl = 300;
	log_setup(LOG_LEVEL_ERROR, false, false);
	snprintf(path, sizeof(path), "%s/passwd", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("Alice@Example.org:{PLAIN}alice-secret\n"
	      "bob@example.org:{SHA256-CRYPT}$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms."
	      "fwqE5y16JVM.\n"
	      "Carol,C=x@example.org:{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
	      "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
	      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
	      f);
	fclose(f);
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
}

static void
teardown(void)
{
	char cmd[300];

	auth_free(&auth);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* base64 of raw bytes (which may hold NULs), in a static buffer. */
static const char *
b64(const char *raw, size_t len)
{
	static char out[1024];
	struct buf b = BUF_INIT(0);

	ck_assert_int_eq(base64_encode(raw, len, &b), 0);
	ck_assert_uint_lt(b.len, sizeof(out));
	memcpy(out, buf_cstr(&b), b.len + 1);
	buf_free(&b);
	return out;
}

#define B64(lit) b64(lit, sizeof(lit) - 1)

/* sasl_start() for a case decided by the first message: what it returned
 * (the exchange it made, if any, is freed). */
static int
start_once(struct auth *a, const char *mech, bool tls, const char *resp)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;
	int ret = sasl_start(a, mech, tls, resp, &chal, &s);

	sasl_free(&s);
	buf_free(&chal);
	return ret;
}

START_TEST(mechanism_list)
{
	ck_assert_str_eq(sasl_mechanisms(auth, true), "PLAIN LOGIN");
	ck_assert_str_eq(sasl_mechanisms(auth, false), "");
	cfg.plaintext_insecure = true;
	ck_assert_str_eq(sasl_mechanisms(auth, false), "PLAIN LOGIN");
	ck_assert(auth_plaintext_allowed(auth, false));
	cfg.plaintext_insecure = false;
	ck_assert(!auth_plaintext_allowed(auth, false));
	ck_assert(auth_plaintext_allowed(auth, true));
}
END_TEST

START_TEST(plain_initial_response)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(
	    sasl_start(auth, "PLAIN", true, B64("\0alice@example.org\0alice-secret"), &chal, &s),
	    0);
	ck_assert_str_eq(sasl_user(s), "Alice@Example.org");
	/* The exchange is over. */
	ck_assert_int_eq(sasl_step(s, "", &chal), ROOST_EINVAL);
	sasl_free(&s);
	ck_assert_ptr_null(s);

	/* authzid equal to authcid (any case) is fine. */
	ck_assert_int_eq(start_once(auth, "plain", true,
	                            B64("ALICE@example.org\0alice@example.org\0alice-secret")),
	                 0);
	ck_assert_int_eq(
	    sasl_start(auth, "PLAIN", true, B64("\0bob@example.org\0secret"), &chal, &s), 0);
	ck_assert_str_eq(sasl_user(s), "bob@example.org");
	sasl_free(&s);
	buf_free(&chal);
}
END_TEST

START_TEST(plain_failures)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(
	    sasl_start(auth, "PLAIN", true, B64("\0alice@example.org\0wrong"), &chal, &s),
	    ROOST_EAUTH);
	ck_assert_ptr_null(sasl_user(s));
	/* The name tried, for the log of the failure. */
	ck_assert_str_eq(sasl_user_tried(s), "alice@example.org");
	ck_assert(!sasl_verified(s));
	sasl_free(&s);
	ck_assert_int_eq(start_once(auth, "PLAIN", true, B64("\0nobody@example.org\0x")),
	                 ROOST_EAUTH);
	/* Acting as someone else is refused even with the right password. */
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true,
	                            B64("bob@example.org\0alice@example.org\0alice-secret"), &chal,
	                            &s),
	                 ROOST_EAUTH);
	ck_assert_ptr_null(sasl_user(s));
	sasl_free(&s);
	/* Malformed. */
	ck_assert_int_eq(start_once(auth, "PLAIN", true, B64("alice@example.org")), ROOST_EINVAL);
	ck_assert_int_eq(start_once(auth, "PLAIN", true, B64("\0\0pw")), ROOST_EINVAL);
	ck_assert_int_eq(
	    start_once(auth, "PLAIN", true, B64("\0alice@example.org\0alice-secret\0")),
	    ROOST_EINVAL);
	ck_assert_int_eq(start_once(auth, "PLAIN", true, "not base64!"), ROOST_EINVAL);
	ck_assert_int_eq(start_once(auth, "PLAIN", true, "="), ROOST_EINVAL);
	buf_free(&chal);
}
END_TEST

START_TEST(plain_with_challenge)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	buf_append_str(&chal, "leftover");
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), ""); /* empty challenge */
	ck_assert_ptr_null(sasl_user(s));
	ck_assert_int_eq(sasl_step(s, B64("\0alice@example.org\0alice-secret"), &chal), 0);
	ck_assert_str_eq(sasl_user(s), "Alice@Example.org");
	sasl_free(&s);

	/* A trailing CRLF on the line is ignored. */
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	{
		char line[200];

		snprintf(line, sizeof(line), "%s\r\n", B64("\0alice@example.org\0alice-secret"));
		ck_assert_int_eq(sasl_step(s, line, &chal), 0);
	}
	sasl_free(&s);
	buf_free(&chal);
}
END_TEST

START_TEST(cancel)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_int_eq(sasl_step(s, "*", &chal), ROOST_ECANCELED);
	ck_assert_int_eq(sasl_step(s, B64("\0alice@example.org\0alice-secret"), &chal),
	                 ROOST_EINVAL);
	ck_assert_ptr_null(sasl_user(s));
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_int_eq(sasl_step(s, B64("alice@example.org"), &chal), ROOST_EAGAIN);
	ck_assert_int_eq(sasl_step(s, "*\r\n", &chal), ROOST_ECANCELED);
	sasl_free(&s);
	ck_assert_int_eq(start_once(auth, "PLAIN", true, "*"), ROOST_ECANCELED);
	buf_free(&chal);
}
END_TEST

START_TEST(login_exchange)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "VXNlcm5hbWU6"); /* "Username:" */
	ck_assert_ptr_null(sasl_user_tried(s));
	ck_assert_int_eq(sasl_step(s, B64("alice@example.org"), &chal), ROOST_EAGAIN);
	ck_assert_str_eq(sasl_user_tried(s), "alice@example.org");
	ck_assert_str_eq(buf_cstr(&chal), "UGFzc3dvcmQ6"); /* "Password:" */
	ck_assert_int_eq(sasl_step(s, B64("alice-secret"), &chal), 0);
	ck_assert_str_eq(sasl_user(s), "Alice@Example.org");
	sasl_free(&s);

	/* Initial response carries the user name (SMTP "AUTH LOGIN <b64>"). */
	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, B64("bob@example.org"), &chal, &s),
	                 ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "UGFzc3dvcmQ6");
	ck_assert_int_eq(sasl_step(s, B64("wrong"), &chal), ROOST_EAUTH);
	ck_assert_ptr_null(sasl_user(s));
	ck_assert_str_eq(sasl_user_tried(s), "bob@example.org");
	sasl_free(&s);

	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_int_eq(sasl_step(s, "@@@", &chal), ROOST_EINVAL);
	sasl_free(&s);
	/* An empty password ("=" or "") fails like a wrong one. */
	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_int_eq(sasl_step(s, B64("bob@example.org"), &chal), ROOST_EAGAIN);
	ck_assert_int_eq(sasl_step(s, "", &chal), ROOST_EAUTH);
	sasl_free(&s);
	buf_free(&chal);
}
END_TEST

START_TEST(insecure_and_unknown)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(
	    sasl_start(auth, "PLAIN", false, B64("\0alice@example.org\0alice-secret"), &chal, &s),
	    ROOST_EPERM);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(sasl_start(auth, "LOGIN", false, NULL, &chal, &s), ROOST_EPERM);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(sasl_start(auth, "CRAM-MD5", true, NULL, &chal, &s), ROOST_ENOTSUP);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(sasl_start(auth, "", true, NULL, &chal, &s), ROOST_ENOTSUP);
	cfg.plaintext_insecure = true;
	ck_assert_int_eq(start_once(auth, "PLAIN", false, B64("\0alice@example.org\0alice-secret")),
	                 0);
	cfg.plaintext_insecure = false;
	buf_free(&chal);
}
END_TEST

START_TEST(oversized_response)
{
	char *big = malloc(20001);

	memset(big, 'A', 20000);
	big[20000] = '\0';
	ck_assert_int_eq(start_once(auth, "PLAIN", true, big), ROOST_EINVAL);
	free(big);
}
END_TEST

/* ---- SCRAM-SHA-256: a client written here against RFC 5802 ---- */

enum scram_fault { FAULT_NONE, FAULT_NONCE, FAULT_CBIND, FAULT_PROOF_SHORT, FAULT_ACK };

static struct auth *
open_scram_auth(struct roost_config *c)
{
	struct auth *a = NULL;

	*c = cfg;
	c->password_scheme = "SCRAM-SHA-256";
	ck_assert_int_eq(auth_open(c, &a), 0);
	return a;
}

/* Run one exchange as user/password; the result of the last call. */
static int
scram_login(struct auth *a, const char *saslname, const char *password, enum scram_fault fault,
            const char **user_r, struct sasl **s_r)
{
	struct buf chal = BUF_INIT(0), raw = BUF_INIT(0), msg = BUF_INIT(0), am = BUF_INIT(0);
	struct auth_scram_cred keys;
	const char *cnonce = "fyko+d2lbbFgONRv9qkxdawL";
	char first_bare[512], final_wo_proof[1024], nonce[512], salt_b64[256];
	uint8_t client_key[32], client_sig[32], proof[32], server_sig[32], salted[32];
	unsigned len, iter;
	int ret;

	snprintf(first_bare, sizeof(first_bare), "n=%s,r=%s", saslname, cnonce);
	buf_printf(&msg, "%s%s", fault == FAULT_CBIND ? "p=tls-unique,," : "n,,", first_bare);
	ret =
	    sasl_start(a, "SCRAM-SHA-256", false, b64((const char *)msg.data, msg.len), &chal, s_r);
	if (ret != ROOST_EAGAIN)
		goto out;
	/* server-first: r=<nonce>,s=<salt>,i=<iter> */
	ck_assert_int_eq(base64_decode((const char *)chal.data, chal.len, &raw), 0);
	ck_assert_int_eq(
	    sscanf((const char *)raw.data, "r=%511[^,],s=%255[^,],i=%u", nonce, salt_b64, &iter),
	    3);
	ck_assert_int_eq(strncmp(nonce, cnonce, strlen(cnonce)), 0);
	ck_assert_uint_gt(strlen(nonce), strlen(cnonce));
	ck_assert(!sasl_verified(*s_r));
	buf_reset(&msg);
	ck_assert_int_eq(base64_decode(salt_b64, strlen(salt_b64), &msg), 0);
	ck_assert_int_eq(
	    auth_scram_derive(password, strlen(password), msg.data, msg.len, iter, &keys), 0);
	ck_assert_int_eq(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), msg.data, (int)msg.len,
	                                   (int)iter, EVP_sha256(), 32, salted),
	                 1);
	HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, client_key, &len);

	snprintf(final_wo_proof, sizeof(final_wo_proof), "c=biws,r=%s%s", nonce,
	         fault == FAULT_NONCE ? "x" : "");
	buf_printf(&am, "%s,%s,%s", first_bare, (const char *)raw.data, final_wo_proof);
	HMAC(EVP_sha256(), keys.stored_key, 32, am.data, am.len, client_sig, &len);
	for (int i = 0; i < 32; i++)
		proof[i] = client_key[i] ^ client_sig[i];
	buf_reset(&msg);
	buf_printf(&msg, "%s,p=", final_wo_proof);
	base64_encode(proof, fault == FAULT_PROOF_SHORT ? 31 : 32, &msg);
	ret = sasl_step(*s_r, b64((const char *)msg.data, msg.len), &chal);
	if (ret != ROOST_EAGAIN)
		goto out;
	/* server-final: v=<ServerSignature>, checked like a client would. */
	buf_reset(&raw);
	ck_assert_int_eq(base64_decode((const char *)chal.data, chal.len, &raw), 0);
	HMAC(EVP_sha256(), keys.server_key, 32, am.data, am.len, server_sig, &len);
	buf_reset(&msg);
	buf_append_str(&msg, "v=");
	base64_encode(server_sig, 32, &msg);
	ck_assert_str_eq(buf_cstr(&raw), buf_cstr(&msg));
	ck_assert_ptr_null(sasl_user(*s_r));
	/* The signature tells the client its password was right: the
	 * protocol holds it as it would the success reply. */
	ck_assert(sasl_verified(*s_r));
	ret = sasl_step(*s_r, fault == FAULT_ACK ? B64("x") : "", &chal);
out:
	*user_r = sasl_user(*s_r);
	buf_free(&chal);
	buf_free(&raw);
	buf_free(&msg);
	buf_free(&am);
	return ret;
}

START_TEST(scram_offered_only_when_configured)
{
	struct roost_config c;
	struct auth *a;
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(sasl_start(auth, "SCRAM-SHA-256", true, NULL, &chal, &s), ROOST_ENOTSUP);
	a = open_scram_auth(&c);
	ck_assert_str_eq(sasl_mechanisms(a, true), "SCRAM-SHA-256 PLAIN LOGIN");
	/* Not a plaintext mechanism: offered without TLS too. */
	ck_assert_str_eq(sasl_mechanisms(a, false), "SCRAM-SHA-256");
	ck_assert_int_eq(sasl_start(a, "scram-sha-256", false, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "");
	sasl_free(&s);
	auth_free(&a);
	buf_free(&chal);
}
END_TEST

START_TEST(scram_exchange)
{
	struct roost_config c;
	struct auth *a = open_scram_auth(&c);
	struct sasl *s = NULL;
	const char *user;

	/* Stored SCRAM keys; the name has a ',' and a '=' to escape. */
	ck_assert_int_eq(
	    scram_login(a, "carol=2CC=3Dx@example.org", "pencil", FAULT_NONE, &user, &s), 0);
	ck_assert_str_eq(user, "Carol,C=x@example.org");
	sasl_free(&s);
	/* Keys derived from a {PLAIN} password. */
	ck_assert_int_eq(scram_login(a, "alice@example.org", "alice-secret", FAULT_NONE, &user, &s),
	                 0);
	ck_assert_str_eq(user, "Alice@Example.org");
	sasl_free(&s);
	auth_free(&a);
}
END_TEST

START_TEST(scram_failures)
{
	struct roost_config c;
	struct auth *a = open_scram_auth(&c);
	struct sasl *s = NULL;
	const char *user;

	ck_assert_int_eq(
	    scram_login(a, "carol=2CC=3Dx@example.org", "pencil!", FAULT_NONE, &user, &s),
	    ROOST_EAUTH);
	ck_assert_ptr_null(user);
	ck_assert(!sasl_verified(s));
	ck_assert_str_eq(sasl_user_tried(s), "carol,C=x@example.org");
	sasl_free(&s);
	/* Unknown users and crypt hashes get a salt and fail only at the proof. */
	ck_assert_int_eq(scram_login(a, "nobody@example.org", "x", FAULT_NONE, &user, &s),
	                 ROOST_EAUTH);
	sasl_free(&s);
	ck_assert_int_eq(scram_login(a, "bob@example.org", "secret", FAULT_NONE, &user, &s),
	                 ROOST_EAUTH);
	sasl_free(&s);
	/* A protocol fault at each step, with the right password. */
	{
		static const enum scram_fault faults[] = {FAULT_NONCE, FAULT_CBIND,
		                                          FAULT_PROOF_SHORT, FAULT_ACK};

		for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
			ck_assert_int_eq(scram_login(a, "carol=2CC=3Dx@example.org", "pencil",
			                             faults[i], &user, &s),
			                 ROOST_EINVAL);
			ck_assert_ptr_null(user);
			sasl_free(&s);
		}
	}
	/* Malformed client-first messages. */
	{
		static const char *const bad[] = {
		    "n,,r=abc",     "n,,n=,r=abc",        "n,,n=a=2Xb,r=abc",
		    "x,,n=a,r=abc", "n,,n=a,r=",          "n,,n=a,r=a b",
		    "n,n=a,r=abc",  "n,,m=ext,n=a,r=abc", "",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			ck_assert_msg(start_once(a, "SCRAM-SHA-256", true,
			                         bad[i][0] != '\0' ? b64(bad[i], strlen(bad[i]))
			                                           : "=") == ROOST_EINVAL,
			              "accepted %s", bad[i]);
		}
	}
	/* Acting as someone else is refused. */
	ck_assert_int_eq(start_once(a, "SCRAM-SHA-256", true,
	                            B64("n,a=bob@example.org,n=alice@example.org,r=abcdef")),
	                 ROOST_EAGAIN);
	auth_free(&a);
}
END_TEST

static Suite *
sasl_suite(void)
{
	Suite *s = suite_create("sasl");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mechanism_list);
	tcase_add_test(tc, plain_initial_response);
	tcase_add_test(tc, plain_failures);
	tcase_add_test(tc, plain_with_challenge);
	tcase_add_test(tc, cancel);
	tcase_add_test(tc, login_exchange);
	tcase_add_test(tc, insecure_and_unknown);
	tcase_add_test(tc, oversized_response);
	tcase_add_test(tc, scram_offered_only_when_configured);
	tcase_add_test(tc, scram_exchange);
	tcase_add_test(tc, scram_failures);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(sasl_suite());
}
