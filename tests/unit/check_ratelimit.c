#include <check.h>
#include <stdio.h>

#include "roost/error.h"
#include "roost/ratelimit.h"

#include "check_run.h"

#define HOUR 3600000LL

START_TEST(burst_then_refused)
{
	struct ratelimit *rl = ratelimit_create(3, 10, 100);
	unsigned wait;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ratelimit_take(rl, "alice", RATELIMIT_MESSAGES, 1, 1000, &wait),
		                 0);
	ck_assert_int_eq(ratelimit_take(rl, "alice", RATELIMIT_MESSAGES, 1, 1000, &wait),
	                 ROOST_ETEMP);
	/* one message comes back every 20 minutes */
	ck_assert_uint_eq(wait, 1200);
	/* the kinds and the users are counted apart */
	ck_assert_int_eq(ratelimit_take(rl, "alice", RATELIMIT_RECIPIENTS, 10, 1000, &wait), 0);
	ck_assert_int_eq(ratelimit_take(rl, "bob", RATELIMIT_MESSAGES, 3, 1000, &wait), 0);
	ck_assert_uint_eq(ratelimit_users(rl), 2);
	ratelimit_free(&rl);
	ck_assert_ptr_null(rl);
}
END_TEST

START_TEST(refill_over_time)
{
	struct ratelimit *rl = ratelimit_create(3600, 0, 10);
	unsigned wait;
	int64_t t = 5000;

	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 3600, t, &wait), 0);
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t, &wait), ROOST_ETEMP);
	ck_assert_uint_eq(wait, 1);
	/* 3600 an hour: one a second, counted exactly over small steps */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t += 1000, &wait),
		                 0);
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t, &wait), ROOST_ETEMP);
	/* half a second twice makes one */
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t += 500, &wait),
	                 ROOST_ETEMP);
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t += 500, &wait), 0);
	/* an idle hour fills the bucket, and no more than full */
	t += 5 * HOUR;
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 3600, t, &wait), 0);
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t, &wait), ROOST_ETEMP);
	/* a clock that seems to step back refills nothing */
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t - 60000, &wait),
	                 ROOST_ETEMP);
	/* recipients are unlimited here */
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_RECIPIENTS, 1000000, t, &wait), 0);
	ratelimit_free(&rl);
}
END_TEST

START_TEST(slow_rate_exact)
{
	/* 1 an hour, brought up to date every second (by the recipients,
	 * 3600 an hour): the steps of 1/3600 must add up exactly. */
	struct ratelimit *rl = ratelimit_create(1, 3600, 10);
	unsigned wait;
	int64_t t = 0;

	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t, &wait), 0);
	for (int i = 0; i < 3599; i++) {
		/* another kind's take brings the buckets up to date */
		t += 1000;
		ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_RECIPIENTS, 1, t, &wait), 0);
	}
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t, &wait), ROOST_ETEMP);
	ck_assert_uint_eq(wait, 1);
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1, t + 1000, &wait), 0);
	ratelimit_free(&rl);
}
END_TEST

START_TEST(more_than_an_hour_never_fits)
{
	struct ratelimit *rl = ratelimit_create(5, 5, 10);
	unsigned wait;

	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_RECIPIENTS, 6, 0, &wait), ROOST_ETEMP);
	ck_assert_uint_eq(wait, 3600);
	/* nothing was used by the refusal */
	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_RECIPIENTS, 5, 0, &wait), 0);
	ratelimit_free(&rl);
}
END_TEST

/* The table holds at most max_users; the one idle longest makes room. */
START_TEST(bounded_table)
{
	struct ratelimit *rl = ratelimit_create(2, 2, 3);
	char name[32];
	unsigned wait;

	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d@example.org", i);
		ck_assert_int_eq(ratelimit_take(rl, name, RATELIMIT_MESSAGES, 1, 10, &wait), 0);
		ck_assert_uint_le(ratelimit_users(rl), 3);
	}
	ck_assert_uint_eq(ratelimit_users(rl), 3);
	/* a, b, c fill it; using a again makes b the oldest, d evicts b */
	ck_assert_int_eq(ratelimit_take(rl, "a", RATELIMIT_MESSAGES, 2, 10, &wait), 0);
	ck_assert_int_eq(ratelimit_take(rl, "b", RATELIMIT_MESSAGES, 2, 10, &wait), 0);
	ck_assert_int_eq(ratelimit_take(rl, "c", RATELIMIT_MESSAGES, 2, 10, &wait), 0);
	ck_assert_int_eq(ratelimit_take(rl, "a", RATELIMIT_MESSAGES, 1, 10, &wait), ROOST_ETEMP);
	ck_assert_int_eq(ratelimit_take(rl, "d", RATELIMIT_MESSAGES, 1, 10, &wait), 0);
	/* a and c are still counted, b starts afresh */
	ck_assert_int_eq(ratelimit_take(rl, "a", RATELIMIT_MESSAGES, 1, 10, &wait), ROOST_ETEMP);
	ck_assert_int_eq(ratelimit_take(rl, "c", RATELIMIT_MESSAGES, 1, 10, &wait), ROOST_ETEMP);
	ck_assert_int_eq(ratelimit_take(rl, "b", RATELIMIT_MESSAGES, 2, 10, &wait), 0);
	ck_assert_uint_eq(ratelimit_users(rl), 3);
	ratelimit_free(&rl);
}
END_TEST

START_TEST(unlimited_and_null)
{
	struct ratelimit *rl = ratelimit_create(0, 0, 1);
	unsigned wait = 7;

	ck_assert_int_eq(ratelimit_take(rl, "u", RATELIMIT_MESSAGES, 1000000, 0, &wait), 0);
	ck_assert_uint_eq(wait, 0);
	ck_assert_uint_eq(ratelimit_users(rl), 0); /* nothing to count: no entry */
	ratelimit_free(&rl);
	ck_assert_int_eq(ratelimit_take(NULL, "u", RATELIMIT_MESSAGES, 1, 0, &wait), 0);
	ratelimit_free(&rl); /* NULL is fine */
	ck_assert(ratelimit_now_ms() > 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, burst_then_refused);
	tcase_add_test(tc, refill_over_time);
	tcase_add_test(tc, slow_rate_exact);
	tcase_add_test(tc, more_than_an_hour_never_fits);
	tcase_add_test(tc, bounded_table);
	tcase_add_test(tc, unlimited_and_null);
	suite_add_tcase(s, tc);
	return check_run(s);
}
