#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/relay.h"
#include "roost/xalloc.h"

#include "check_config_util.h"
#include "check_run.h"

START_TEST(cidr)
{
	ck_assert(relay_cidr_match("127.0.0.0/8", "127.1.2.3"));
	ck_assert(!relay_cidr_match("127.0.0.0/8", "128.0.0.1"));
	ck_assert(relay_cidr_match("192.0.2.0/25", "192.0.2.127"));
	ck_assert(!relay_cidr_match("192.0.2.0/25", "192.0.2.128"));
	ck_assert(relay_cidr_match("192.0.2.7", "192.0.2.7"));
	ck_assert(!relay_cidr_match("192.0.2.7", "192.0.2.8"));
	ck_assert(relay_cidr_match("::1/128", "::1"));
	ck_assert(relay_cidr_match("2001:db8::/32", "2001:db8:ffff::1"));
	ck_assert(!relay_cidr_match("2001:db8::/32", "2001:db9::1"));
	/* A v4-mapped peer of a dual-stack socket is the IPv4 address. */
	ck_assert(relay_cidr_match("10.0.0.0/8", "::ffff:10.1.2.3"));
	ck_assert(!relay_cidr_match("10.0.0.0/8", "::1"));
	ck_assert(relay_cidr_match("0.0.0.0/0", "203.0.113.9"));
	ck_assert(!relay_cidr_match("10.0.0.0/33", "10.0.0.1"));
	ck_assert(!relay_cidr_match("nonsense", "10.0.0.1"));
	ck_assert(!relay_cidr_match("10.0.0.0/8", "unix"));
}
END_TEST

START_TEST(trusted_defaults_and_config)
{
	struct roost_config *cfg = config_defaults();
	const char *bad = NULL;

	ck_assert(relay_peer_trusted(cfg, "127.0.0.1"));
	ck_assert(relay_peer_trusted(cfg, "::1"));
	ck_assert(relay_peer_trusted(cfg, "unix"));
	ck_assert(!relay_peer_trusted(cfg, "192.0.2.1"));
	ck_assert_int_eq(relay_check_config(cfg, &bad), 0);
	free(cfg->smtp_trusted_networks[1]);
	cfg->smtp_trusted_networks[1] = xstrdup("10.0.0.0/99");
	ck_assert_int_eq(relay_check_config(cfg, &bad), ROOST_ECONFIG);
	ck_assert_str_eq(bad, "10.0.0.0/99");
	config_free(&cfg);
}
END_TEST

START_TEST(sender_addresses)
{
	struct roost_config *cfg = config_two_domains();

	ck_assert(relay_sender_allowed(cfg, NULL, "alice@example.org", "alice@example.org"));
	ck_assert(relay_sender_allowed(cfg, NULL, "alice@example.org", "Alice@Example.ORG"));
	ck_assert(relay_sender_allowed(cfg, NULL, "alice@example.org", "alice+lists@example.org"));
	ck_assert(!relay_sender_allowed(cfg, NULL, "alice@example.org", "alicex@example.org"));
	ck_assert(!relay_sender_allowed(cfg, NULL, "alice@example.org", "bob@example.org"));
	ck_assert(!relay_sender_allowed(cfg, NULL, "alice@example.org", "alice@example.net"));
	ck_assert(!relay_sender_allowed(cfg, NULL, "alice@example.org", ""));
	ck_assert(!relay_sender_allowed(cfg, NULL, "alice@example.org", "alice"));
	/* A user without a domain owns its name in every local domain. */
	ck_assert(relay_sender_allowed(cfg, NULL, "carol", "carol@example.net"));
	ck_assert(!relay_sender_allowed(cfg, NULL, "carol", "carol@elsewhere.example"));
	config_free(&cfg);
}
END_TEST

static int
from_check(struct roost_config *cfg, const char *hdr, char *bad)
{
	return relay_from_header_check(cfg, NULL, "alice@example.org", (const uint8_t *)hdr,
	                               strlen(hdr), bad, 300);
}

START_TEST(from_header)
{
	struct roost_config *cfg = config_two_domains();
	char bad[300];

	ck_assert_int_eq(from_check(cfg, "From: alice@example.org\r\nTo: x@y\r\n\r\nbody", bad), 0);
	ck_assert_int_eq(from_check(cfg,
	                            "Subject: s\r\nFrom: \"Smith, Alice\" (work)\r\n"
	                            " <alice@example.org>\r\n\r\n",
	                            bad),
	                 0);
	ck_assert_int_eq(from_check(cfg, "FROM: Alice <alice+x@example.org>\r\n\r\n", bad), 0);
	ck_assert_int_eq(from_check(cfg, "From: Bob <bob@example.org>\r\n\r\n", bad), ROOST_EPERM);
	ck_assert_str_eq(bad, "bob@example.org");
	ck_assert_int_eq(from_check(cfg, "From: alice@example.org, bob@example.org\r\n\r\n", bad),
	                 ROOST_EPERM);
	ck_assert_str_eq(bad, "bob@example.org");
	/* "Bob <bob@..." in a display name's quotes is not an address. */
	ck_assert_int_eq(
	    from_check(cfg, "From: \"bob@example.org, x\" <alice@example.org>\r\n\r\n", bad), 0);
	/* No From:, two From: fields, an empty one: refused. */
	ck_assert_int_eq(from_check(cfg, "To: x@y\r\n\r\n", bad), ROOST_EPERM);
	ck_assert_int_eq(
	    from_check(cfg, "From: alice@example.org\r\nFrom: bob@example.org\r\n\r\n", bad),
	    ROOST_EPERM);
	ck_assert_int_eq(from_check(cfg, "From: \r\n\r\n", bad), ROOST_EPERM);
	/* A From: in the body is not the header's. */
	ck_assert_int_eq(from_check(cfg, "To: x@y\r\n\r\nFrom: alice@example.org\r\n", bad),
	                 ROOST_EPERM);
	config_free(&cfg);
}
END_TEST

static Suite *
relay_suite(void)
{
	Suite *s = suite_create("relay");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, cidr);
	tcase_add_test(tc, trusted_defaults_and_config);
	tcase_add_test(tc, sender_addresses);
	tcase_add_test(tc, from_header);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(relay_suite());
}
