/* MTA-STS records, policy files and MX patterns (services/mta_sts.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check_run.h"
#include "roost/error.h"
#include "roost/mta_sts.h"

static int
txt(const char *s, char id[MTA_STS_ID_LEN])
{
	return mta_sts_parse_txt(s, strlen(s), id);
}

START_TEST(txt_records)
{
	char id[MTA_STS_ID_LEN];

	ck_assert_int_eq(txt("v=STSv1; id=20160831085700Z;", id), 0);
	ck_assert_str_eq(id, "20160831085700Z");
	ck_assert_int_eq(txt("v=STSv1;id=abc", id), 0);
	ck_assert_str_eq(id, "abc");
	ck_assert_int_eq(txt("v=STSv1; ext=1; id=x2 ", id), 0);
	ck_assert_str_eq(id, "x2");
	ck_assert_int_eq(txt("v=STSv2; id=1", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("v=spf1 -all", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("v=STSv1;", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("v=STSv1; id=", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("v=STSv1; id=a-b", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("v=STSv1; id=1; id=2", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("v=STSv1; id=123456789012345678901234567890123", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("id=1; v=STSv1", id), ROOST_EINVAL);
	ck_assert_int_eq(txt("", id), ROOST_EINVAL);
}
END_TEST

static int
policy(const char *s, struct mta_sts_policy *p)
{
	return mta_sts_parse_policy(s, strlen(s), p);
}

START_TEST(policy_files)
{
	struct mta_sts_policy *p = malloc(sizeof(*p));

	ck_assert_int_eq(policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
	                        "mx: *.example.net\r\nmx: backupmx.example.com\r\n"
	                        "max_age: 604800\r\n",
	                        p),
	                 0);
	ck_assert_int_eq(p->mode, MTA_STS_ENFORCE);
	ck_assert_uint_eq(p->max_age, 604800);
	ck_assert_uint_eq(p->n_mx, 3);
	ck_assert(mta_sts_mx_match(p, "mail.example.com"));
	ck_assert(mta_sts_mx_match(p, "MAIL.Example.COM."));
	ck_assert(mta_sts_mx_match(p, "mx1.example.net"));
	ck_assert(!mta_sts_mx_match(p, "example.net"));
	ck_assert(!mta_sts_mx_match(p, "a.b.example.net"));
	ck_assert(!mta_sts_mx_match(p, "xmail.example.com"));
	ck_assert(!mta_sts_mx_match(p, "mail.example.com.evil"));
	/* LF line ends, blanks, unknown keys, an oversized max_age */
	ck_assert_int_eq(policy("version:STSv1\nmode:  testing \nfoo: bar\nmx: a.b\n"
	                        "max_age: 9999999999\n",
	                        p),
	                 0);
	ck_assert_int_eq(p->mode, MTA_STS_TESTING);
	ck_assert_uint_eq(p->max_age, MTA_STS_MAX_AGE);
	ck_assert_int_eq(policy("version: STSv1\nmode: none\nmax_age: 1\n", p), 0);
	ck_assert_int_eq(p->mode, MTA_STS_NONE);
	/* bad ones */
	ck_assert_int_eq(policy("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", p),
	                 ROOST_EINVAL);
	ck_assert_int_eq(policy("mode: enforce\nmx: a.b\nmax_age: 1\n", p), ROOST_EINVAL);
	ck_assert_int_eq(policy("version: STSv1\nmode: always\nmx: a.b\nmax_age: 1\n", p),
	                 ROOST_EINVAL);
	ck_assert_int_eq(policy("version: STSv1\nmode: enforce\nmax_age: 1\n", p), ROOST_EINVAL);
	ck_assert_int_eq(policy("version: STSv1\nmode: enforce\nmx: a.b\n", p), ROOST_EINVAL);
	ck_assert_int_eq(policy("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", p),
	                 ROOST_EINVAL);
	ck_assert_int_eq(policy("version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n", p),
	                 ROOST_EINVAL);
	ck_assert_int_eq(policy("version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", p),
	                 ROOST_EINVAL);
	ck_assert_int_eq(
	    policy("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 99999999999\n", p),
	    ROOST_EINVAL);
	ck_assert_int_eq(policy("<html>not a policy</html>", p), ROOST_EINVAL);
	ck_assert_int_eq(policy("", p), ROOST_EINVAL);
	free(p);
}
END_TEST

START_TEST(many_mx_lines_are_bounded)
{
	struct mta_sts_policy *p = malloc(sizeof(*p));
	size_t cap = 200 * 20 + 100, n = 0;
	char *s = malloc(cap);

	n += (size_t)snprintf(s + n, cap - n, "version: STSv1\nmode: enforce\nmax_age: 5\n");
	for (int i = 0; i < 200; i++)
		n += (size_t)snprintf(s + n, cap - n, "mx: m%d.example\n", i);
	ck_assert_int_eq(mta_sts_parse_policy(s, n, p), 0);
	ck_assert_uint_eq(p->n_mx, MTA_STS_MAX_MX);
	free(s);
	free(p);
}
END_TEST

/* The parsers never read past the bytes given: input at a page's end. */
START_TEST(guard_page)
{
	const char *pol = "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 9";
	const char *rec = "v=STSv1; id=1";
	long pg = sysconf(_SC_PAGESIZE);
	char *m =
	    mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct mta_sts_policy *p = malloc(sizeof(*p));
	char id[MTA_STS_ID_LEN];

	ck_assert(m != MAP_FAILED);
	mprotect(m + pg, (size_t)pg, PROT_NONE);
	memcpy(m + pg - strlen(pol), pol, strlen(pol));
	ck_assert_int_eq(mta_sts_parse_policy(m + pg - strlen(pol), strlen(pol), p), 0);
	ck_assert_uint_eq(p->max_age, 9);
	memcpy(m + pg - strlen(rec), rec, strlen(rec));
	ck_assert_int_eq(mta_sts_parse_txt(m + pg - strlen(rec), strlen(rec), id), 0);
	for (size_t k = 0; k <= strlen(pol); k++)
		(void)mta_sts_parse_policy(m + pg - k, k, p);
	munmap(m, (size_t)pg * 2);
	free(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("mta_sts");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, txt_records);
	tcase_add_test(tc, policy_files);
	tcase_add_test(tc, many_mx_lines_are_bounded);
	tcase_add_test(tc, guard_page);
	suite_add_tcase(s, tc);
	return check_run(s);
}
