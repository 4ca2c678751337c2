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
	    "fwqE5y16JVM.\n", f);
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

	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, B64("\0alice@example.org\0alice-secret"),
	    &chal, &s), 0);
	ck_assert_str_eq(sasl_user(s), "Alice@Example.org");
	/* The exchange is over. */
	ck_assert_int_eq(sasl_step(s, "", &chal), ROOST_EINVAL);
	sasl_free(&s);
	ck_assert_ptr_null(s);

	/* authzid equal to authcid (any case) is fine. */
	ck_assert_int_eq(sasl_start(auth, "plain", true,
	    B64("ALICE@example.org\0alice@example.org\0alice-secret"), &chal, &s), 0);
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true,
	    B64("\0bob@example.org\0secret"), &chal, &s), 0);
	ck_assert_str_eq(sasl_user(s), "bob@example.org");
	sasl_free(&s);
	buf_free(&chal);
}
END_TEST

START_TEST(plain_failures)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, B64("\0alice@example.org\0wrong"),
	    &chal, &s), ROOST_EAUTH);
	ck_assert_ptr_null(sasl_user(s));
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, B64("\0nobody@example.org\0x"),
	    &chal, &s), ROOST_EAUTH);
	sasl_free(&s);
	/* Acting as someone else is refused even with the right password. */
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true,
	    B64("bob@example.org\0alice@example.org\0alice-secret"), &chal, &s), ROOST_EAUTH);
	ck_assert_ptr_null(sasl_user(s));
	sasl_free(&s);
	/* Malformed. */
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, B64("alice@example.org"), &chal, &s),
	    ROOST_EINVAL);
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, B64("\0\0pw"), &chal, &s),
	    ROOST_EINVAL);
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true,
	    B64("\0alice@example.org\0alice-secret\0"), &chal, &s), ROOST_EINVAL);
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, "not base64!", &chal, &s),
	    ROOST_EINVAL);
	sasl_free(&s);
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, "=", &chal, &s), ROOST_EINVAL);
	sasl_free(&s);
	buf_free(&chal);
}
END_TEST

START_TEST(plain_with_challenge)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	buf_append_str(&chal, "leftover");
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "");	/* empty challenge */
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
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, "*", &chal, &s), ROOST_ECANCELED);
	sasl_free(&s);
	buf_free(&chal);
}
END_TEST

START_TEST(login_exchange)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;

	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, NULL, &chal, &s), ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "VXNlcm5hbWU6");	/* "Username:" */
	ck_assert_int_eq(sasl_step(s, B64("alice@example.org"), &chal), ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "UGFzc3dvcmQ6");	/* "Password:" */
	ck_assert_int_eq(sasl_step(s, B64("alice-secret"), &chal), 0);
	ck_assert_str_eq(sasl_user(s), "Alice@Example.org");
	sasl_free(&s);

	/* Initial response carries the user name (SMTP "AUTH LOGIN <b64>"). */
	ck_assert_int_eq(sasl_start(auth, "LOGIN", true, B64("bob@example.org"), &chal, &s),
	    ROOST_EAGAIN);
	ck_assert_str_eq(buf_cstr(&chal), "UGFzc3dvcmQ6");
	ck_assert_int_eq(sasl_step(s, B64("wrong"), &chal), ROOST_EAUTH);
	ck_assert_ptr_null(sasl_user(s));
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

	ck_assert_int_eq(sasl_start(auth, "PLAIN", false, B64("\0alice@example.org\0alice-secret"),
	    &chal, &s), ROOST_EPERM);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(sasl_start(auth, "LOGIN", false, NULL, &chal, &s), ROOST_EPERM);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(sasl_start(auth, "CRAM-MD5", true, NULL, &chal, &s), ROOST_ENOTSUP);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(sasl_start(auth, "", true, NULL, &chal, &s), ROOST_ENOTSUP);
	cfg.plaintext_insecure = true;
	ck_assert_int_eq(sasl_start(auth, "PLAIN", false, B64("\0alice@example.org\0alice-secret"),
	    &chal, &s), 0);
	sasl_free(&s);
	cfg.plaintext_insecure = false;
	buf_free(&chal);
}
END_TEST

START_TEST(oversized_response)
{
	struct buf chal = BUF_INIT(0);
	struct sasl *s = NULL;
	char *big = malloc(20001);

	memset(big, 'A', 20000);
	big[20000] = '\0';
	ck_assert_int_eq(sasl_start(auth, "PLAIN", true, big, &chal, &s), ROOST_EINVAL);
	sasl_free(&s);
	free(big);
	buf_free(&chal);
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
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sasl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
