#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roost/aliases.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/relay.h"
#include "roost/xalloc.h"

#include "check_config_util.h"
#include "check_run.h"

static char path[64];

static struct roost_config *
config_with(const char *text)
{
	struct roost_config *cfg = config_two_domains();

	temp_file_write(path, sizeof(path), "/tmp/roost-aliases-XXXXXX", text);
	free(cfg->smtp_aliases);
	cfg->smtp_aliases = xstrdup(path);
	return cfg;
}

static void
collect(const char *address, void *arg)
{
	struct buf *b = arg;

	buf_printf(b, "%s;", address);
}

static int
load(const char *text, struct aliases **a_r, char *err, size_t errlen)
{
	struct roost_config *cfg = config_with(text);
	int ret = aliases_load(cfg, a_r, err, errlen);

	unlink(path);
	config_free(&cfg);
	return ret;
}

/* Is there an alias for address? */
static bool
has(const struct aliases *a, const struct roost_config *cfg, const char *address)
{
	size_t n = 0;
	char **t = aliases_lookup(a, cfg, address, &n);

	free(t);
	return t != NULL;
}

START_TEST(parse_and_lookup)
{
	struct roost_config *cfg = config_with("# c\n\nPostmaster: alice\n"
	                                       "team: alice,\n\tbob@example.org ,\n  carol@x.test\n"
	                                       "team@example.net: dave\n");
	struct aliases *a = NULL;
	char err[256] = "";
	char **t = NULL;
	size_t n = 0;

	ck_assert_int_eq(aliases_load(cfg, &a, err, sizeof(err)), 0);
	unlink(path);
	ck_assert_uint_eq(aliases_count(a), 3);
	free(t);
	t = aliases_lookup(a, cfg, "POSTMASTER@example.org", &n);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(t[0], "alice");
	free(t);
	t = aliases_lookup(a, cfg, "team@example.org", &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(t[1], "bob@example.org");
	ck_assert_str_eq(t[2], "carol@x.test");
	/* The whole-address key wins in its domain. */
	free(t);
	t = aliases_lookup(a, cfg, "team@example.net", &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(t[0], "dave");
	ck_assert(!has(a, cfg, "team@elsewhere.test"));
	ck_assert(has(a, cfg, "team"));
	ck_assert(!has(a, cfg, "nobody@example.org"));
	ck_assert(!has(NULL, cfg, "team@example.org"));

	/* Sender aliases: a direct target names the user. */
	ck_assert(aliases_sender_allowed(a, cfg, "alice@example.org", "team@example.org"));
	ck_assert(aliases_sender_allowed(a, cfg, "alice", "team@example.net") == false);
	ck_assert(aliases_sender_allowed(a, cfg, "dave", "team@example.net"));
	ck_assert(aliases_sender_allowed(a, cfg, "bob@example.org", "team@example.org"));
	ck_assert(!aliases_sender_allowed(a, cfg, "bob@example.org", "postmaster@example.org"));
	ck_assert(!aliases_sender_allowed(a, cfg, "carol@x.test", "team@x.test"));
	ck_assert(relay_sender_allowed(cfg, a, "alice@example.org", "postmaster@example.org"));
	ck_assert(!relay_sender_allowed(cfg, NULL, "alice@example.org", "postmaster@example.org"));
	free(t);

	/* The addresses a user may send as: a local-part key in each local
	 * domain, except where a whole-address key of that domain wins. */
	{
		struct buf b = BUF_INIT(0);

		aliases_sender_addresses(a, cfg, "alice@example.org", collect, &b);
		ck_assert_str_eq(buf_cstr(&b), "postmaster@example.org;postmaster@example.net;"
		                               "team@example.org;");
		buf_reset(&b);
		aliases_sender_addresses(a, cfg, "dave", collect, &b);
		ck_assert_str_eq(buf_cstr(&b), "team@example.net;");
		buf_reset(&b);
		/* a target in another domain is a user of that name too */
		aliases_sender_addresses(a, cfg, "carol@x.test", collect, &b);
		ck_assert_str_eq(buf_cstr(&b), "team@example.org;");
		ck_assert(aliases_sender_allowed(a, cfg, "carol@x.test", "team@example.org"));
		buf_reset(&b);
		aliases_sender_addresses(a, cfg, "nobody@example.org", collect, &b);
		aliases_sender_addresses(NULL, cfg, "alice@example.org", collect, &b);
		ck_assert_uint_eq(b.len, 0);
		buf_free(&b);
	}
	aliases_free(&a);
	ck_assert_ptr_null(a);
	aliases_free(&a);
	config_free(&cfg);
}
END_TEST

/* Write text over the file cfg names. */
static void
rewrite(const struct roost_config *cfg, const char *text)
{
	FILE *f = fopen(cfg->smtp_aliases, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(reload_swaps_or_keeps)
{
	struct roost_config *cfg = config_with("team: alice\n");
	struct aliases *a = NULL;
	char err[256] = "";
	size_t n = 0;
	char **held, **t;

	ck_assert_int_eq(aliases_load(cfg, &a, err, sizeof(err)), 0);
	held = aliases_lookup(a, cfg, "team@example.org", &n);
	ck_assert_ptr_nonnull(held);

	/* A good file replaces the table; what a lookup returned before stays
	 * valid (it is the caller's copy). */
	rewrite(cfg, "team: bob, carol\nabuse: dave\n");
	ck_assert_int_eq(aliases_reload(a, err, sizeof(err)), 0);
	ck_assert_uint_eq(aliases_count(a), 2);
	ck_assert_str_eq(held[0], "alice");
	t = aliases_lookup(a, cfg, "team@example.org", &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(t[0], "bob");
	free(t);

	/* A broken file, a missing one, a binary one: refused, the table kept. */
	rewrite(cfg, "team bob\n");
	ck_assert_int_eq(aliases_reload(a, err, sizeof(err)), ROOST_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, ":1: expected"));
	rewrite(cfg, "x: a\n\0\xff\n");
	ck_assert_int_eq(aliases_reload(a, err, sizeof(err)), 0); /* the NUL ends fputs */
	ck_assert_uint_eq(aliases_count(a), 1);
	rewrite(cfg, "team: bob, carol\nabuse: dave\n");
	ck_assert_int_eq(aliases_reload(a, err, sizeof(err)), 0);
	unlink(cfg->smtp_aliases);
	ck_assert_int_eq(aliases_reload(a, err, sizeof(err)), ROOST_ECONFIG);
	ck_assert_uint_eq(aliases_count(a), 2);
	ck_assert(has(a, cfg, "abuse"));
	free(held);
	aliases_free(&a);
	config_free(&cfg);
}
END_TEST

START_TEST(no_file_is_no_aliases)
{
	struct roost_config *cfg = config_defaults();
	struct aliases *a = NULL;
	char err[256] = "";

	ck_assert_str_eq(cfg->smtp_aliases, "");
	ck_assert_int_eq(aliases_load(cfg, &a, err, sizeof(err)), 0);
	ck_assert_uint_eq(aliases_count(a), 0);
	aliases_free(&a);
	free(cfg->smtp_aliases);
	cfg->smtp_aliases = xstrdup("/nonexistent/aliases");
	ck_assert_int_eq(aliases_load(cfg, &a, err, sizeof(err)), ROOST_ECONFIG);
	ck_assert(strstr(err, "/nonexistent/aliases") != NULL);
	config_free(&cfg);
}
END_TEST

static const struct bad_case bad_cases[] = {
    {"x alice\n", ":1: expected"},
    {"a: b\n\nA: c\n", ":3: alias a is defined twice"},
    {"x: |/usr/bin/prog\n", "programs"},
    {"x: /var/mail/x\n", "programs"},
    {"x: :include:/etc/list\n", "programs"},
    {"x:\n", "no target"},
    {"x: a,,b\n", "bad target"},
    {"x: <a@b>\n", "bad target"},
    {"x: a b\n", "bad target"},
    {"x: a@@b\n", "bad target"},
    {"x@elsewhere.test: a\n", "not in a local domain"},
    {"bad name: a\n", "bad alias name"},
    {"x: a\r\ny: b\x01\n", ":2: alias y: bad target"},
};

START_TEST(bad_files_are_refused)
{
	const struct bad_case *c = &bad_cases[_i];
	struct aliases *a = NULL;
	char err[256] = "";
	int ret = load(c->text, &a, err, sizeof(err));

	check_refused(ret, a, err, c, _i);
}
END_TEST

START_TEST(long_and_binary_lines)
{
	struct aliases *a = NULL;
	char err[256] = "";
	size_t len = 20000;
	char *big = xmalloc(len + 8);

	memcpy(big, "x: ", 3);
	memset(big + 3, 'a', len);
	memcpy(big + 3 + len, "\n", 2);
	ck_assert_int_eq(load(big, &a, err, sizeof(err)), ROOST_ECONFIG);
	ck_assert(strstr(err, "too long") != NULL);
	free(big);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("aliases");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, parse_and_lookup);
	tcase_add_test(tc, no_file_is_no_aliases);
	tcase_add_test(tc, reload_swaps_or_keeps);
	tcase_add_loop_test(tc, bad_files_are_refused, 0,
	                    (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, long_and_binary_lines);
	suite_add_tcase(s, tc);
	return check_run(s);
}
