#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/storage.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../core/auth_impl.h"

#include "check_run.h"

/*
 * Known vectors, generated once with independent tools and committed:
 * `openssl passwd -1/-5/-6 -salt ...`, python's crypt (libcrypt) for bcrypt
 * and yescrypt (the $2a$ one is the crypt_blowfish reference vector), and
 * python's hashlib for the salted digests.
 */
static const struct {
	const char *stored, *password;
} vectors[] = {
    {"{PLAIN}secret", "secret"},
    {"{CLEAR}secret", "secret"},
    {"{PLAIN.b64}c2VjcmV0", "secret"},
    {"{CRYPT}abNANd1rDfiNc", "secret"},
    {"{MD5-CRYPT}$1$saltsalt$ERNpRN/8OUFOCXVDM0pqE0", "p\xc3\xa4ssword1"},
    {"{SHA256-CRYPT}$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM.", "secret"},
    {"{SHA512-CRYPT}$6$0123456789abcdef$lDHzA5IdO41viXIs6llkDKq4Uh2VG9JXIYJ.taq2zlNFqBnKQ0"
     "/fOUW0Zoz49ZnOpe2ACY.PoF6wosL.jL3Af0",
     "correct horse"},
    {"$6$0123456789abcdef$lDHzA5IdO41viXIs6llkDKq4Uh2VG9JXIYJ.taq2zlNFqBnKQ0"
     "/fOUW0Zoz49ZnOpe2ACY.PoF6wosL.jL3Af0",
     "correct horse"}, /* bare crypt */
    {"{BLF-CRYPT}$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
    {"{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a", "secret"},
    {"{YESCRYPT}$y$j9T$abcdefghijklmnopqrstu.$fj.94QZtvyLn4Ge.McFyNwqmgzqMgq2hKLhz12GCphB",
     "yes please"},
    {"{SSHA}uJDd0BIdJ9Z7yDCZNWdgYeb33+cBAgME", "secret"},
    {"{SSHA256}93hQOe1g+XhLWV/CjlHmD3ffCK71caCmR16WhsxTVvpzYWx0c2FsdHNhbHQ=", "secret"},
    {"{SSHA512}3aiBbchfIZo+1WYrkPzJjQxZ79F/NmwLQ+wF073kTd+6ANhaic8G/jWF/X4sqSFUKpLNdm1FZjBc"
     "k6HQ8knM3HNhbHRzYWx0c2FsdA==",
     "secret"},
    {"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"},
    {"{SHA256.HEX}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", "secret"},
    /* RFC 7677's example user: password "pencil", keys computed with hashlib */
    {"{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
     "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
     "pencil"},
    {"{sha512-crypt}$6$0123456789abcdef$lDHzA5IdO41viXIs6llkDKq4Uh2VG9JXIYJ.taq2zlNFqBnKQ0"
     "/fOUW0Zoz49ZnOpe2ACY.PoF6wosL.jL3Af0",
     "correct horse"}, /* case of the name */
};

static char tmpdir[256];
static struct roost_config cfg;

static void
setup(void)
{
	strcpy(tmpdir, "/tmp/roost-check-auth-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = tmpdir;
	cfg.password_scheme = "SHA512-CRYPT";
	cfg.fail_delay_initial = 2;
	cfg.fail_delay_max = 15;
	cfg.auth_cache_ttl = 300;
	log_setup(LOG_LEVEL_ERROR, false, false); /* expected errors stay quiet */
}

static void
teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static char *
passwd_path(void)
{
	static char p[300];

	snprintf(p, sizeof(p), "%s/passwd", tmpdir);
	return p;
}

static void
write_file(const char *path, const char *text)
{
	char tmp[320];
	FILE *f;

	/* Replace atomically, as an editor or `roost user` would. */
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(rename(tmp, path), 0);
}

static char *
read_file(const char *path)
{
	static char text[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* ---- schemes ---- */

START_TEST(scheme_vectors)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const char *pw = vectors[i].password;

		ck_assert_msg(auth_check_hash(vectors[i].stored, pw, strlen(pw)) == 0,
		              "vector %zu (%s) does not verify", i, vectors[i].stored);
		ck_assert_msg(auth_check_hash(vectors[i].stored, "wrong", 5) == ROOST_EAUTH,
		              "vector %zu accepts a wrong password", i);
		/* A prefix or an extension of the password is wrong too. */
		ck_assert_int_eq(auth_check_hash(vectors[i].stored, pw, strlen(pw) - 1),
		                 ROOST_EAUTH);
	}
}
END_TEST

START_TEST(scheme_errors)
{
	ck_assert_int_eq(auth_check_hash("{NOPE}abc", "abc", 3), ROOST_ENOTSUP);
	ck_assert_int_eq(auth_check_hash("{PLAIN.rot13}abc", "abc", 3), ROOST_ENOTSUP);
	ck_assert_int_eq(auth_check_hash("{PLAIN", "abc", 3), ROOST_ENOTSUP);
	ck_assert_int_eq(auth_check_hash("{SHA512-CRYPT}", "", 0), ROOST_EAUTH);
	ck_assert_int_eq(auth_check_hash("{SHA512-CRYPT}garbage", "garbage", 7), ROOST_EAUTH);
	ck_assert_int_eq(auth_check_hash("{SSHA}!!!!", "x", 1), ROOST_EAUTH);
	ck_assert_int_eq(auth_check_hash("{SHA}c2VjcmV0", "secret", 6), ROOST_EAUTH);
	ck_assert_int_eq(auth_check_hash("", "", 0), ROOST_EAUTH);
	/* A NUL inside the password never matches a crypt hash of its prefix. */
	ck_assert_int_eq(auth_check_hash(vectors[5].stored, "secret\0x", 8), ROOST_EAUTH);
	ck_assert_int_eq(auth_check_hash("{PLAIN}secret", "secret\0", 7), ROOST_EAUTH);
}
END_TEST

START_TEST(hash_new_passwords)
{
	static const char *const schemes[] = {
	    "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT",     "YESCRYPT",
	    "MD5-CRYPT",    "PLAIN",        "SCRAM-SHA-256",
	};
	static const char *const prefixes[] = {
	    "{SHA512-CRYPT}$6$", "{SHA256-CRYPT}$5$", "{BLF-CRYPT}$2y$",      "{YESCRYPT}$y$",
	    "{MD5-CRYPT}$1$",    "{PLAIN}",           "{SCRAM-SHA-256}4096,",
	};

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		struct buf a = BUF_INIT(0), b = BUF_INIT(0);

		if (!auth_scheme_supported(schemes[i])) {
			/* Only these two may be missing from a libcrypt build. */
			ck_assert(strcmp(schemes[i], "YESCRYPT") == 0 ||
			          strcmp(schemes[i], "BLF-CRYPT") == 0);
			continue;
		}
		ck_assert_int_eq(auth_hash_password(schemes[i], "n3w pässword", &a), 0);
		ck_assert_msg(strncmp(buf_cstr(&a), prefixes[i], strlen(prefixes[i])) == 0,
		              "%s gave %s", schemes[i], buf_cstr(&a));
		ck_assert_ptr_null(strchr(buf_cstr(&a), ':'));
		ck_assert_int_eq(
		    auth_check_hash(buf_cstr(&a), "n3w pässword", strlen("n3w pässword")), 0);
		ck_assert_int_eq(auth_check_hash(buf_cstr(&a), "n3w passwort", 12), ROOST_EAUTH);
		if (strcmp(schemes[i], "PLAIN") != 0) {
			/* Fresh salt each time. */
			ck_assert_int_eq(auth_hash_password(schemes[i], "n3w pässword", &b), 0);
			ck_assert_str_ne(buf_cstr(&a), buf_cstr(&b));
		}
		buf_free(&a);
		buf_free(&b);
	}
	{
		struct buf a = BUF_INIT(0);

		ck_assert_int_eq(auth_hash_password("NOPE", "x", &a), ROOST_ENOTSUP);
		ck_assert_int_eq(auth_hash_password("SSHA", "x", &a), ROOST_ENOTSUP);
		ck_assert_int_eq(auth_hash_password("PLAIN", "a:b", &a), ROOST_EINVAL);
		ck_assert_uint_eq(a.len, 0);
		buf_free(&a);
	}
	ck_assert(auth_scheme_supported("sha512-crypt"));
	ck_assert(!auth_scheme_supported("CRYPT"));
}
END_TEST

START_TEST(scram_rfc7677)
{
	static const char authmsg[] =
	    "n=user,r=rOprNGfwEbeRWgbNEkqO,"
	    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
	    "i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
	struct auth_scram_cred stored, derived;
	struct buf b = BUF_INIT(0);
	uint8_t sig[32];
	unsigned len = 0;

	ck_assert_int_eq(auth_scram_parse("4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
	                                  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
	                                  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	                                  &stored),
	                 0);
	ck_assert_uint_eq(stored.iter, 4096);
	ck_assert_uint_eq(stored.salt_len, 16);
	ck_assert_int_eq(
	    auth_scram_derive("pencil", 6, stored.salt, stored.salt_len, 4096, &derived), 0);
	ck_assert_int_eq(memcmp(derived.stored_key, stored.stored_key, 32), 0);
	ck_assert_int_eq(memcmp(derived.server_key, stored.server_key, 32), 0);
	/* The server signature of RFC 7677's exchange. */
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), derived.server_key, 32, (const uint8_t *)authmsg,
	                           strlen(authmsg), sig, &len));
	ck_assert_int_eq(base64_encode(sig, 32, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
	buf_free(&b);
	/* Malformed stored values. */
	ck_assert_int_eq(auth_scram_parse("4096,W22ZaJ0SNY7soEsUEjb6gQ==,AAAA,AAAA", &stored),
	                 ROOST_EINVAL);
	ck_assert_int_eq(auth_scram_parse("100,W22ZaJ0SNY7soEsUEjb6gQ==,"
	                                  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
	                                  "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	                                  &stored),
	                 ROOST_EINVAL);
	ck_assert_int_eq(auth_scram_parse("4096,W22ZaJ0SNY7soEsUEjb6gQ==", &stored), ROOST_EINVAL);
	ck_assert_int_eq(auth_scram_parse("", &stored), ROOST_EINVAL);
}
END_TEST

START_TEST(user_names)
{
	static const char *const good[] = {
	    "alice@example.org", "alice", "a.b+c@x.example", "ALICE@Example.ORG", "j\xc3\xb6rg@x",
	};
	static const char *const bad[] = {
	    "",
	    "a:b@x",
	    "@example.org",
	    "alice@",
	    "a@b@c",
	    "al ice@x",
	    "alice@x\n",
	    "#alice",
	    ".alice",
	    "alice.",
	    "a/b@x",
	    "a\\b",
	    "alice@.x",
	    "a\tb",
	    "a\x7f",
	    /* not UTF-8 (a lone byte, truncated, overlong, a surrogate), C1 */
	    "\xff\xfe",
	    "j\xf6rg@x",
	    "j\xc3",
	    "\xc0\xae\xc0\xae",
	    "\xed\xa0\x80@x",
	    "a\xc2\x85"
	    "b",
	};
	char longname[300];

	/* Storage applies the same rule: whatever `roost user add` takes has a
	 * store, whatever it refuses has none. */
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(auth_user_name_valid(good[i]), "refused %s", good[i]);
		ck_assert_msg(storage_user_valid(good[i]), "storage refused %s", good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!auth_user_name_valid(bad[i]), "accepted %s", bad[i]);
		ck_assert_msg(!storage_user_valid(bad[i]), "storage accepted %s", bad[i]);
	}
	ck_assert(!auth_user_name_valid(NULL));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert(!auth_user_name_valid(longname));
	longname[AUTH_MAX_NAME] = '\0';
	ck_assert(auth_user_name_valid(longname));
}
END_TEST

/* ---- the user table ---- */

static const char sample_file[] =
    "# users\n"
    "\n"
    "Alice@Example.org:{SHA512-CRYPT}$6$0123456789abcdef$lDHzA5IdO41viXIs6llkDKq4Uh2VG9JXIYJ."
    "taq2zlNFqBnKQ0/fOUW0Zoz49ZnOpe2ACY.PoF6wosL.jL3Af0:1000:1000::/home/alice::\n"
    "  # indented comment\n"
    "bob@example.org:{PLAIN}bob-secret\n"
    "carol@example.org:{MD5-CRYPT}$1$saltsalt$ERNpRN/8OUFOCXVDM0pqE0::::::userdb_quota=1G\r\n"
    "dave@example.org:{NOPE}xyz\n"
    "erin@example.org:\n";

START_TEST(lookup_and_verify)
{
	struct auth *auth = NULL;
	char name[AUTH_MAX_NAME + 1];

	write_file(passwd_path(), sample_file);
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);

	ck_assert_int_eq(auth_lookup(auth, "alice@example.org", name, sizeof(name)), 0);
	ck_assert_str_eq(name, "Alice@Example.org");
	ck_assert_int_eq(auth_lookup(auth, "ALICE@EXAMPLE.ORG", name, sizeof(name)), 0);
	ck_assert_str_eq(name, "Alice@Example.org");
	ck_assert_int_eq(auth_lookup(auth, "nobody@example.org", name, sizeof(name)),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(auth_lookup(auth, "alice", name, sizeof(name)), ROOST_ENOTFOUND);
	ck_assert_int_eq(auth_lookup(auth, "alice@example.org", name, 5), ROOST_ETOOBIG);

	memset(name, 0, sizeof(name));
	ck_assert_int_eq(
	    auth_verify(auth, "alice@EXAMPLE.org", "correct horse", 13, name, sizeof(name)), 0);
	ck_assert_str_eq(name, "Alice@Example.org");
	/* Second time from the cache: same answer. */
	ck_assert_int_eq(
	    auth_verify(auth, "alice@example.org", "correct horse", 13, name, sizeof(name)), 0);
	ck_assert_int_eq(
	    auth_verify(auth, "alice@example.org", "correct horsE", 13, name, sizeof(name)),
	    ROOST_EAUTH);
	ck_assert_int_eq(auth_verify(auth, "bob@example.org", "bob-secret", 10, name, sizeof(name)),
	                 0);
	ck_assert_str_eq(name, "bob@example.org");
	ck_assert_int_eq(
	    auth_verify(auth, "carol@example.org", "p\xc3\xa4ssword1", 10, name, sizeof(name)), 0);
	/* Unknown user, unknown scheme, empty hash, empty password: all EAUTH. */
	ck_assert_int_eq(auth_verify(auth, "nobody@example.org", "x", 1, name, sizeof(name)),
	                 ROOST_EAUTH);
	ck_assert_int_eq(auth_verify(auth, "dave@example.org", "xyz", 3, name, sizeof(name)),
	                 ROOST_EAUTH);
	ck_assert_int_eq(auth_verify(auth, "erin@example.org", "", 0, name, sizeof(name)),
	                 ROOST_EAUTH);
	ck_assert_int_eq(auth_verify(auth, "bob@example.org", "", 0, name, sizeof(name)),
	                 ROOST_EAUTH);
	auth_free(&auth);
	ck_assert_ptr_null(auth);
	auth_free(&auth);
}
END_TEST

/*
 * Failed checks cost one slow hash whatever the user: the dummy hash is
 * checked for an unknown user and for a user whose stored password is cheap
 * to check, never for a user with a slow hash of their own.
 */
START_TEST(cheap_hashes_pay_the_dummy)
{
	struct auth *auth = NULL;
	char name[AUTH_MAX_NAME + 1];
	static const struct {
		const char *user, *password;
		int ret;
		unsigned long dummies;
	} cases[] = {
	    {"nobody@example.org", "x", ROOST_EAUTH, 1},    /* unknown */
	    {"alice@example.org", "wrong", ROOST_EAUTH, 0}, /* SHA512-CRYPT */
	    {"alice@example.org", "correct horse", 0, 0},
	    {"bob@example.org", "wrong", ROOST_EAUTH, 1}, /* {PLAIN} */
	    {"bob@example.org", "bob-secret", 0, 1},
	    {"carol@example.org", "wrong", ROOST_EAUTH, 1}, /* MD5-CRYPT */
	    {"dave@example.org", "xyz", ROOST_EAUTH, 1},    /* unknown scheme */
	    {"erin@example.org", "x", ROOST_EAUTH, 1},      /* empty hash */
	    {"bob@example.org", "", ROOST_EAUTH, 1},        /* empty password */
	    {"frank@example.org", "wrong", ROOST_EAUTH, 1}, /* {SSHA} */
	    {"gina@example.org", "wrong", ROOST_EAUTH, 0},  /* bare $6$ */
	    {"hank@example.org", "wrong", ROOST_EAUTH, 1},  /* bare DES */
	};
	char file[4096];

	cfg.auth_cache_ttl = 0;
	snprintf(file, sizeof(file),
	         "%s"
	         "frank@example.org:{SSHA}uJDd0BIdJ9Z7yDCZNWdgYeb33+cBAgME\n"
	         "gina@example.org:$6$0123456789abcdef$lDHzA5IdO41viXIs6llkDKq4Uh2VG9JXIYJ."
	         "taq2zlNFqBnKQ0/fOUW0Zoz49ZnOpe2ACY.PoF6wosL.jL3Af0\n"
	         "hank@example.org:abNANd1rDfiNc\n",
	         sample_file);
	write_file(passwd_path(), file);
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned long before = auth_dummy_checks(auth);

		ck_assert_int_eq(auth_verify(auth, cases[i].user, cases[i].password,
		                             strlen(cases[i].password), name, sizeof(name)),
		                 cases[i].ret);
		ck_assert_msg(auth_dummy_checks(auth) - before == cases[i].dummies,
		              "%s/%s: %lu dummy checks", cases[i].user, cases[i].password,
		              auth_dummy_checks(auth) - before);
	}
	auth_free(&auth);
}
END_TEST

START_TEST(hash_cost_classes)
{
	static const char *const slow[] = {
	    "{SHA512-CRYPT}$6$salt$x",
	    "{SHA256-CRYPT}$5$salt$x",
	    "{BLF-CRYPT}$2y$05$x",
	    "{YESCRYPT}$y$j9T$x",
	    "$6$salt$x",
	    "$2b$10$x",
	    "{CRYPT}$6$salt$x",
	    "{SCRAM-SHA-256}4096,c2FsdA==,a,b",
	    "{sha512-crypt}$6$x",
	};
	static const char *const fast[] = {
	    "{PLAIN}x",
	    "{CLEAR}x",
	    "{PLAIN.b64}eA==",
	    "{SSHA}x",
	    "{SHA256.HEX}00",
	    "{MD5-CRYPT}$1$salt$x",
	    "{CRYPT}abNANd1rDfiNc",
	    "abNANd1rDfiNc",
	    "$1$salt$x",
	    "{NOPE}x",
	    "{SHA512-CRYPT",
	    "",
	    "{SHA512-CRYPT.HEX}$6$x",
	    "{SHA512-CRYPT}x",
	};

	for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++)
		ck_assert_msg(auth_hash_is_slow(slow[i]), "%s", slow[i]);
	for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++)
		ck_assert_msg(!auth_hash_is_slow(fast[i]), "%s", fast[i]);
}
END_TEST

START_TEST(missing_file_is_empty)
{
	struct auth *auth = NULL;
	char name[64];

	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	ck_assert_int_eq(auth_lookup(auth, "alice@example.org", name, sizeof(name)),
	                 ROOST_ENOTFOUND);
	/* Created later (roost user add on a running server): picked up. */
	write_file(passwd_path(), "alice@example.org:{PLAIN}pw\n");
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "pw", 2, name, sizeof(name)), 0);
	auth_free(&auth);
}
END_TEST

START_TEST(bad_files_refused)
{
	static const char *const bad[] = {
	    "alice@example.org {PLAIN}x\n",                             /* no ':' */
	    "alice@example.org:{PLAIN}x\nALICE@example.org:{PLAIN}y\n", /* duplicate */
	    "al ice@example.org:{PLAIN}x\n",                            /* invalid name */
	    ":{PLAIN}x\n",
	    "\xff\xfe@example.org:{PLAIN}x\n", /* not UTF-8 */
	};
	struct auth *auth = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(passwd_path(), bad[i]);
		ck_assert_msg(auth_open(&cfg, &auth) == ROOST_EINVAL, "accepted file %zu", i);
		ck_assert_ptr_null(auth);
	}
	cfg.password_scheme = "NOPE";
	write_file(passwd_path(), "alice@example.org:{PLAIN}x\n");
	ck_assert_int_eq(auth_open(&cfg, &auth), ROOST_ECONFIG);
}
END_TEST

START_TEST(reload_keeps_old_on_error)
{
	struct auth *auth = NULL;
	char name[64];

	write_file(passwd_path(), "alice@example.org:{PLAIN}one\n");
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	write_file(passwd_path(), "alice@example.org {PLAIN}two\n");
	ck_assert_int_eq(auth_reload(auth), ROOST_EINVAL);
	/* Also on the implicit reload of a lookup. */
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "one", 3, name, sizeof(name)), 0);
	write_file(passwd_path(), "alice@example.org:{PLAIN}two\nbob@example.org:{PLAIN}b\n");
	ck_assert_int_eq(auth_reload(auth), 0);
	ck_assert_int_eq(auth_lookup(auth, "bob@example.org", name, sizeof(name)), 0);
	auth_free(&auth);
}
END_TEST

/* auth_changed() notices an edit (roost user add replaces the file) and
 * auth_lookups_from_memory() answers from the table read before it,
 * without reading the file; the next lookup outside reads it. A directory
 * replaced under the server is seen at the next auth_reload(). */
START_TEST(change_check_and_lookups_from_memory)
{
	struct auth *auth = NULL;
	char name[64], old[300], cmd[600];

	ck_assert_int_eq(auth_file_add(passwd_path(), "alice@example.org", "{PLAIN}a"), 0);
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	ck_assert(!auth_changed(auth));
	ck_assert_int_eq(auth_file_add(passwd_path(), "bob@example.org", "{PLAIN}b"), 0);
	ck_assert(auth_changed(auth));
	auth_lookups_from_memory(true);
	ck_assert_int_eq(auth_lookup(auth, "bob@example.org", name, sizeof(name)), ROOST_ENOTFOUND);
	ck_assert_int_eq(auth_lookup(auth, "alice@example.org", name, sizeof(name)), 0);
	ck_assert(auth_changed(auth));
	auth_lookups_from_memory(false);
	ck_assert_int_eq(auth_lookup(auth, "bob@example.org", name, sizeof(name)), 0);
	ck_assert(!auth_changed(auth));

	/* The directory moved aside and a new one with a new file. */
	snprintf(old, sizeof(old), "%s.old", tmpdir);
	ck_assert_int_eq(rename(tmpdir, old), 0);
	ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
	ck_assert_int_eq(auth_file_add(passwd_path(), "carol@example.org", "{PLAIN}c"), 0);
	ck_assert_int_eq(auth_reload(auth), 0);
	ck_assert_int_eq(auth_lookup(auth, "carol@example.org", name, sizeof(name)), 0);
	ck_assert_int_eq(auth_lookup(auth, "bob@example.org", name, sizeof(name)), ROOST_ENOTFOUND);
	ck_assert(!auth_changed(auth));
	auth_free(&auth);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(rename(old, tmpdir), 0);
}
END_TEST

START_TEST(password_change_invalidates_cache)
{
	struct auth *auth = NULL;
	struct buf h = BUF_INIT(0);
	char name[64];

	ck_assert_int_eq(auth_hash_password("SHA256-CRYPT", "old-pw", &h), 0);
	ck_assert_int_eq(auth_file_add(passwd_path(), "alice@example.org", buf_cstr(&h)), 0);
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "old-pw", 6, name, sizeof(name)),
	                 0);
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "old-pw", 6, name, sizeof(name)),
	                 0); /* cached now */
	buf_reset(&h);
	ck_assert_int_eq(auth_hash_password("SHA256-CRYPT", "new-pw", &h), 0);
	ck_assert_int_eq(auth_file_set_password(passwd_path(), "alice@example.org", buf_cstr(&h)),
	                 0);
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "old-pw", 6, name, sizeof(name)),
	                 ROOST_EAUTH);
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "new-pw", 6, name, sizeof(name)),
	                 0);
	/* Deleted users are gone at once, cache or not. */
	ck_assert_int_eq(auth_file_delete(passwd_path(), "alice@example.org"), 0);
	ck_assert_int_eq(auth_verify(auth, "alice@example.org", "new-pw", 6, name, sizeof(name)),
	                 ROOST_EAUTH);
	buf_free(&h);
	auth_free(&auth);
}
END_TEST

START_TEST(cache_entries)
{
	struct auth_cache *c = auth_cache_new(4);

	ck_assert(!auth_cache_check(c, "a@x", "{PLAIN}p", "p", 1, 100));
	auth_cache_put(c, "a@x", "{PLAIN}p", "p", 1, 200);
	ck_assert(auth_cache_check(c, "a@x", "{PLAIN}p", "p", 1, 100));
	ck_assert(auth_cache_check(c, "A@X", "{PLAIN}p", "p", 1, 199));
	ck_assert(!auth_cache_check(c, "a@x", "{PLAIN}p", "p", 1, 200)); /* expired */
	ck_assert(!auth_cache_check(c, "a@x", "{PLAIN}p", "q", 1, 100));
	ck_assert(!auth_cache_check(c, "a@x", "{PLAIN}q", "p", 1, 100));
	ck_assert(!auth_cache_check(c, "b@x", "{PLAIN}p", "p", 1, 100));
	auth_cache_clear(c);
	ck_assert(!auth_cache_check(c, "a@x", "{PLAIN}p", "p", 1, 100));
	auth_cache_free(&c);
	ck_assert_ptr_null(c);
}
END_TEST

/* ---- file editing ---- */

START_TEST(file_edits)
{
	const char *p = passwd_path();
	char *text;
	struct stat st;

	write_file(p, "# keep me\nbob@example.org:{PLAIN}b:1:2:gecos:/home/bob::x=y\n");
	ck_assert_int_eq(auth_file_add(p, "alice@example.org", "{PLAIN}a"), 0);
	ck_assert_int_eq(auth_file_add(p, "ALICE@example.org", "{PLAIN}a"), ROOST_EEXISTS);
	ck_assert_int_eq(auth_file_add(p, "bad name", "{PLAIN}a"), ROOST_EINVAL);
	ck_assert_int_eq(auth_file_add(p, "carol@example.org", "{PLAIN}a:b"), ROOST_EINVAL);
	text = read_file(p);
	ck_assert_str_eq(text, "# keep me\nbob@example.org:{PLAIN}b:1:2:gecos:/home/bob::x=y\n"
	                       "alice@example.org:{PLAIN}a::::::\n");
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);

	ck_assert_int_eq(auth_file_set_password(p, "BOB@example.org", "{PLAIN}new"), 0);
	text = read_file(p);
	ck_assert_str_eq(text, "# keep me\nbob@example.org:{PLAIN}new:1:2:gecos:/home/bob::x=y\n"
	                       "alice@example.org:{PLAIN}a::::::\n");
	ck_assert_int_eq(auth_file_set_password(p, "nobody@example.org", "{PLAIN}x"),
	                 ROOST_ENOTFOUND);
	ck_assert_int_eq(auth_file_delete(p, "bob@example.org"), 0);
	ck_assert_int_eq(auth_file_delete(p, "bob@example.org"), ROOST_ENOTFOUND);
	text = read_file(p);
	ck_assert_str_eq(text, "# keep me\nalice@example.org:{PLAIN}a::::::\n");
}
END_TEST

/* Quota limits from the extra field: Roost's keys, Dovecot's rule, bad
 * values ignored (the line still logs in); edits keep the other fields. */
START_TEST(quota_fields)
{
	const char *p = passwd_path();
	struct auth *auth = NULL;
	struct auth_quota q;
	uint64_t v;
	char *text;

	write_file(p, "a@x.org:{PLAIN}a::::::quota_storage=100M quota_messages=50\n"
	              "b@x.org:{PLAIN}b::::::userdb_quota_rule=*:storage=2048 "
	              "userdb_quota_rule=*:messages=7 quota_messages=9\n"
	              "c@x.org:{PLAIN}c:1:2\n"
	              "d@x.org:{PLAIN}d::::::quota_storage=12Q quota_messages=-1 other=1\n"
	              "e@x.org:{PLAIN}e::::::userdb_quota_rule=*:storage=10b "
	              "quota_storage=99999999999999999999\n");
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	ck_assert_int_eq(auth_user_quota(auth, "A@x.org", &q), 0);
	ck_assert_int_eq(q.storage, 100 << 20);
	ck_assert_int_eq(q.messages, 50);
	ck_assert_int_eq(auth_user_quota(auth, "b@x.org", &q), 0);
	ck_assert_int_eq(q.storage, 2048 * 1024); /* Dovecot: kilobytes */
	ck_assert_int_eq(q.messages, 9);          /* quota_* win */
	ck_assert_int_eq(auth_user_quota(auth, "c@x.org", &q), 0);
	ck_assert_int_eq(q.storage, AUTH_QUOTA_DEFAULT);
	ck_assert_int_eq(q.messages, AUTH_QUOTA_DEFAULT);
	ck_assert_int_eq(auth_user_quota(auth, "d@x.org", &q), 0);
	ck_assert_int_eq(q.storage, AUTH_QUOTA_DEFAULT);
	ck_assert_int_eq(q.messages, AUTH_QUOTA_DEFAULT);
	ck_assert_int_eq(auth_user_quota(auth, "e@x.org", &q), 0);
	ck_assert_int_eq(q.storage, 10);
	ck_assert_int_eq(auth_user_quota(auth, "nobody@x.org", &q), ROOST_ENOTFOUND);

	/* set: replace, remove, keep; the line keeps its other fields */
	ck_assert_int_eq(auth_file_set_quota(p, "c@x.org", 5 << 20, AUTH_QUOTA_KEEP), 0);
	ck_assert_int_eq(auth_file_set_quota(p, "d@x.org", AUTH_QUOTA_DEFAULT, 0), 0);
	ck_assert_int_eq(auth_file_set_quota(p, "a@x.org", AUTH_QUOTA_KEEP, AUTH_QUOTA_DEFAULT), 0);
	ck_assert_int_eq(auth_file_set_quota(p, "nobody@x.org", 1, 1), ROOST_ENOTFOUND);
	ck_assert_int_eq(auth_file_set_quota(p, "a@x.org", -3, 1), ROOST_EINVAL);
	text = read_file(p);
	ck_assert_str_eq(text, "a@x.org:{PLAIN}a::::::quota_storage=100M\n"
	                       "b@x.org:{PLAIN}b::::::userdb_quota_rule=*:storage=2048 "
	                       "userdb_quota_rule=*:messages=7 quota_messages=9\n"
	                       "c@x.org:{PLAIN}c:1:2::::quota_storage=5242880\n"
	                       "d@x.org:{PLAIN}d::::::other=1 quota_messages=0\n"
	                       "e@x.org:{PLAIN}e::::::userdb_quota_rule=*:storage=10b "
	                       "quota_storage=99999999999999999999\n");
	/* the running table follows the file */
	ck_assert_int_eq(auth_user_quota(auth, "c@x.org", &q), 0);
	ck_assert_int_eq(q.storage, 5 << 20);
	ck_assert_int_eq(q.messages, AUTH_QUOTA_DEFAULT);
	ck_assert_int_eq(auth_user_quota(auth, "d@x.org", &q), 0);
	ck_assert_int_eq(q.messages, 0);
	auth_free(&auth);

	ck_assert_int_eq(auth_quota_parse_size("1T", &v), 0);
	ck_assert_uint_eq(v, 1ull << 40);
	ck_assert_int_eq(auth_quota_parse_size("0", &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(auth_quota_parse_size("", &v), ROOST_EINVAL);
	ck_assert_int_eq(auth_quota_parse_size("1MB", &v), ROOST_EINVAL);
	ck_assert_int_eq(auth_quota_parse_size("-1", &v), ROOST_EINVAL);
	ck_assert_int_eq(auth_quota_parse_size("9000000000000000000000", &v), ROOST_EINVAL);
	ck_assert_int_eq(auth_quota_parse_size("9000000T", &v), ROOST_EINVAL);
}
END_TEST

START_TEST(file_add_creates_dirs_and_no_trailing_newline)
{
	char p[400];
	char *text;

	snprintf(p, sizeof(p), "%s/a/b/passwd", tmpdir);
	ck_assert_int_eq(auth_file_delete(p, "x@y"), ROOST_ENOTFOUND);
	ck_assert_int_eq(auth_file_add(p, "x@y", "{PLAIN}1"), 0);
	ck_assert_str_eq(read_file(p), "x@y:{PLAIN}1::::::\n");
	write_file(p, "x@y:{PLAIN}1");
	ck_assert_int_eq(auth_file_add(p, "z@y", "{PLAIN}2"), 0);
	text = read_file(p);
	ck_assert_str_eq(text, "x@y:{PLAIN}1\nz@y:{PLAIN}2::::::\n");
}
END_TEST

START_TEST(file_edit_through_symlink)
{
	char target[400], link[400];
	struct stat st;

	snprintf(target, sizeof(target), "%s/real-passwd", tmpdir);
	snprintf(link, sizeof(link), "%s/passwd", tmpdir);
	write_file(target, "a@b:{PLAIN}1\n");
	ck_assert_int_eq(symlink("real-passwd", link), 0);
	ck_assert_int_eq(auth_file_add(link, "c@d", "{PLAIN}2"), 0);
	ck_assert_int_eq(lstat(link, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	ck_assert_str_eq(read_file(target), "a@b:{PLAIN}1\nc@d:{PLAIN}2::::::\n");
}
END_TEST

static void
collect(const char *user, void *arg)
{
	struct buf *b = arg;

	buf_printf(b, "%s,", user);
}

START_TEST(file_list)
{
	struct buf b = BUF_INIT(0);

	ck_assert_int_eq(auth_file_list(passwd_path(), collect, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "");
	write_file(passwd_path(), sample_file);
	ck_assert_int_eq(auth_file_list(passwd_path(), collect, &b), 0);
	ck_assert_str_eq(buf_cstr(&b), "Alice@Example.org,bob@example.org,carol@example.org,"
	                               "dave@example.org,erin@example.org,");
	write_file(passwd_path(), "oops\n");
	ck_assert_int_eq(auth_file_list(passwd_path(), collect, &b), ROOST_EINVAL);
	buf_free(&b);
}
END_TEST

/* ---- throttle ---- */

START_TEST(throttle_doubles_and_resets)
{
	struct auth_throttle *t = auth_throttle_new(16, 2, 15);
	uint64_t now = 1000000;
	unsigned ms;

	/* Each failure arriving at its turn: the delay doubles up to the cap. */
	static const unsigned expect[] = {2000, 4000, 8000, 15000, 15000};
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		ms = auth_throttle_failure(t, "192.0.2.1", now);
		ck_assert_uint_eq(ms, expect[i]);
		now += ms;
	}
	/* A success at the turn forgets the address at once. */
	ck_assert_uint_eq(auth_throttle_success(t, "192.0.2.1", now), 0);
	ck_assert_uint_eq(auth_throttle_count(t), 0);
	ck_assert_uint_eq(auth_throttle_failure(t, "192.0.2.1", now), 2000);
	/* Unknown address: nothing happens. */
	ck_assert_uint_eq(auth_throttle_success(t, "198.51.100.7", now), 0);
	ck_assert_uint_eq(auth_throttle_count(t), 1);
	/* Old failures are forgotten. */
	ck_assert_uint_eq(auth_throttle_failure(t, "192.0.2.1", now + 3600 * 1000), 2000);
	auth_throttle_free(&t);
	ck_assert_ptr_null(t);
}
END_TEST

/*
 * Attempts that arrive before their turn: every answer, right or wrong, is
 * held until the attempt's turn, and parallel failures queue one delay apart.
 */
START_TEST(throttle_turns)
{
	struct auth_throttle *t = auth_throttle_new(16, 2, 15);
	uint64_t now = 1000000;

	ck_assert_uint_eq(auth_throttle_failure(t, "a", now), 2000); /* turn at +2000 */
	/* The right password 10 ms later waits for the turn, as a wrong one would. */
	ck_assert_uint_eq(auth_throttle_success(t, "a", now + 10), 1990);
	/* The success does not show before its turn: a parallel failure is
	 * queued behind it, as the first failure after a success. */
	ck_assert_uint_eq(auth_throttle_failure(t, "a", now + 20), 1980 + 2000);
	ck_assert_uint_eq(auth_throttle_count(t), 1);
	/* Parallel guesses: one delay apart, the delay still doubling. */
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now), 2000);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now), 2000 + 4000);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now), 6000 + 8000);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now), 14000 + 15000);
	ck_assert_uint_eq(auth_throttle_success(t, "b", now + 1), 28999);
	ck_assert_uint_eq(auth_throttle_success(t, "b", now + 2), 28998);
	/* At its turn the success takes effect: the address is forgotten. */
	ck_assert_uint_eq(auth_throttle_success(t, "b", now + 29000), 0);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now + 29000), 2000);
	/* A success whose turn passed counts even without another call. */
	ck_assert_uint_eq(auth_throttle_success(t, "b", now + 29500), 1500);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now + 32000), 2000);
	/* The queue is bounded: no answer is held longer than an hour. */
	for (int i = 0; i < 1000; i++)
		ck_assert_uint_le(auth_throttle_failure(t, "c", now), 3600 * 1000);
	ck_assert_uint_eq(auth_throttle_failure(t, "c", now), 3600 * 1000);
	ck_assert_uint_eq(auth_throttle_success(t, "c", now), 3600 * 1000);
	auth_throttle_free(&t);
}
END_TEST

START_TEST(throttle_keys)
{
	struct auth *auth = NULL;

	/* A first failure is answered after the initial delay; another from
	 * the same key is queued behind it (more), from another key not. */
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	ck_assert_uint_eq(auth_failure(auth, "192.0.2.1"), 2000);
	ck_assert_uint_gt(auth_failure(auth, "192.0.2.1"), 2000);
	ck_assert_uint_eq(auth_failure(auth, "2001:db8::1"), 2000);
	ck_assert_uint_gt(auth_success(auth, "192.0.2.1"), 0);
	ck_assert_uint_eq(auth_success(auth, "198.51.100.7"), 0); /* unknown */
	/* IPv6 addresses count per /64; v4-mapped ones as their IPv4 address. */
	ck_assert_uint_eq(auth_failure(auth, "2001:db8:1:2::10"), 2000);
	ck_assert_uint_gt(auth_failure(auth, "2001:db8:1:2:ffff::99"), 2000);
	ck_assert_uint_eq(auth_failure(auth, "2001:db8:1:3::10"), 2000);
	ck_assert_uint_gt(auth_failure(auth, "::ffff:192.0.2.1"), 2000);
	ck_assert_uint_eq(auth_failure(auth, "not an address"), 2000);
	ck_assert_uint_gt(auth_failure(auth, NULL), 0);
	auth_free(&auth);
}
END_TEST

START_TEST(throttle_bounded)
{
	struct auth_throttle *t = auth_throttle_new(3, 1, 8);
	uint64_t now = 1000000;

	/* Failures 10 s apart: each at its turn. */
	ck_assert_uint_eq(auth_throttle_failure(t, "a", now += 10000), 1000);
	ck_assert_uint_eq(auth_throttle_failure(t, "a", now += 10000), 2000);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now += 10000), 1000);
	ck_assert_uint_eq(auth_throttle_failure(t, "c", now += 10000), 1000);
	ck_assert_uint_eq(auth_throttle_count(t), 3);
	/* Full: "a" failed longest ago and is evicted for "d". */
	ck_assert_uint_eq(auth_throttle_failure(t, "d", now += 10000), 1000);
	ck_assert_uint_eq(auth_throttle_count(t), 3);
	ck_assert_uint_eq(auth_throttle_failure(t, "b", now += 10000), 2000);
	ck_assert_uint_eq(auth_throttle_failure(t, "a", now += 10000), 1000); /* evicts "c" */
	ck_assert_uint_eq(auth_throttle_failure(t, "d", now += 10000), 2000);
	ck_assert_uint_eq(auth_throttle_failure(t, "c", now += 10000), 1000);
	ck_assert_uint_eq(auth_throttle_count(t), 3);
	ck_assert_uint_eq(auth_throttle_success(t, "c", now += 10000), 0);
	ck_assert_uint_eq(auth_throttle_count(t), 2);
	for (int i = 0; i < 40; i++)
		now += auth_throttle_failure(t, "d", now);
	ck_assert_uint_eq(auth_throttle_failure(t, "d", now), 8000);
	auth_throttle_free(&t);
	ck_assert_ptr_null(t);
}
END_TEST

START_TEST(throttle_many_addresses)
{
	struct auth_throttle *t = auth_throttle_new(100, 2, 15);
	char ip[64];

	for (unsigned i = 0; i < 5000; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		ck_assert_uint_eq(auth_throttle_failure(t, ip, 1000 + i), 2000);
		if (i % 3 == 0)
			ck_assert_uint_eq(auth_throttle_success(t, ip, 1000 + i), 2000);
	}
	ck_assert_uint_le(auth_throttle_count(t), 100);
	auth_throttle_free(&t);
}
END_TEST

/* ---- threads ---- */

struct race {
	struct auth *auth;
	int ok;
};

static void *
verifier(void *arg)
{
	struct race *r = arg;
	char name[64];

	for (int i = 0; i < 200; i++) {
		if (auth_verify(r->auth, "bob@example.org", "bob-secret", 10, name, sizeof(name)) ==
		    0)
			r->ok++;
		auth_failure(r->auth, "192.0.2.9");
	}
	return NULL;
}

START_TEST(concurrent_verify_and_reload)
{
	struct race r[4];
	pthread_t th[4];
	struct auth *auth = NULL;

	write_file(passwd_path(), sample_file);
	ck_assert_int_eq(auth_open(&cfg, &auth), 0);
	for (int i = 0; i < 4; i++) {
		r[i].auth = auth;
		r[i].ok = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, verifier, &r[i]), 0);
	}
	for (int i = 0; i < 20; i++) {
		write_file(passwd_path(), sample_file);
		ck_assert_int_eq(auth_reload(auth), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(r[i].ok, 200);
	}
	auth_free(&auth);
}
END_TEST

static Suite *
auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("schemes");
	TCase *db = tcase_create("userdb");
	TCase *th = tcase_create("throttle");

	tcase_add_test(tc, scheme_vectors);
	tcase_add_test(tc, scheme_errors);
	tcase_add_test(tc, hash_new_passwords);
	tcase_add_test(tc, scram_rfc7677);
	tcase_add_test(tc, user_names);
	tcase_add_test(tc, cache_entries);
	tcase_add_test(tc, hash_cost_classes);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(db, setup, teardown);
	tcase_set_timeout(db, 60);
	tcase_add_test(db, lookup_and_verify);
	tcase_add_test(db, missing_file_is_empty);
	tcase_add_test(db, cheap_hashes_pay_the_dummy);
	tcase_add_test(db, bad_files_refused);
	tcase_add_test(db, reload_keeps_old_on_error);
	tcase_add_test(db, change_check_and_lookups_from_memory);
	tcase_add_test(db, password_change_invalidates_cache);
	tcase_add_test(db, file_edits);
	tcase_add_test(db, quota_fields);
	tcase_add_test(db, file_add_creates_dirs_and_no_trailing_newline);
	tcase_add_test(db, file_list);
	tcase_add_test(db, file_edit_through_symlink);
	tcase_add_test(db, concurrent_verify_and_reload);
	suite_add_tcase(s, db);

	tcase_add_checked_fixture(th, setup, teardown);
	tcase_add_test(th, throttle_doubles_and_resets);
	tcase_add_test(th, throttle_turns);
	tcase_add_test(th, throttle_keys);
	tcase_add_test(th, throttle_bounded);
	tcase_add_test(th, throttle_many_addresses);
	suite_add_tcase(s, th);
	return s;
}

int
main(void)
{
	return check_run(auth_suite());
}
