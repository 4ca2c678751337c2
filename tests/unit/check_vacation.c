/*
 * The cache of users whose vacation setting is off
 * (services/vacation_cache.c): what it keeps, what a set makes it forget,
 * a set racing a delivery's read, its bound, and threads at once.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>

#include "roost/vacation.h"

#include "check_run.h"

START_TEST(off_kept_until_forgotten)
{
	uint64_t g;

	vacation_cache_clear();
	ck_assert(!vacation_cache_off("alice@example.org", &g)); /* never read */
	vacation_cache_note_off("alice@example.org", g);         /* a delivery read "off" */
	ck_assert(vacation_cache_off("alice@example.org", &g));
	ck_assert(!vacation_cache_off("bob@example.org", &g)); /* someone else */
	vacation_cache_forget("alice@example.org");            /* VacationResponse/set */
	ck_assert(!vacation_cache_off("alice@example.org", &g));
	vacation_cache_note_off("alice@example.org", g); /* read again: still off */
	ck_assert(vacation_cache_off("alice@example.org", &g));
}
END_TEST

/* A delivery read "off", then a set turned it on before the delivery
 * noted its answer: the older "off" is not kept. */
START_TEST(set_during_read)
{
	uint64_t g, g2;

	vacation_cache_clear();
	ck_assert(!vacation_cache_off("alice@example.org", &g));
	vacation_cache_forget("alice@example.org");
	vacation_cache_note_off("alice@example.org", g);
	ck_assert(!vacation_cache_off("alice@example.org", &g2));
	ck_assert_uint_ne(g, g2);
}
END_TEST

/* More users than slots: memory stays at the slots, the last one noted is
 * known, a user pushed out is merely read again. */
START_TEST(bounded)
{
	char user[64];
	uint64_t g;
	size_t known = 0;

	vacation_cache_clear();
	for (size_t i = 0; i < 3 * VACATION_CACHE_SLOTS; i++) {
		snprintf(user, sizeof(user), "user%zu@example.org", i);
		ck_assert(!vacation_cache_off(user, &g));
		vacation_cache_note_off(user, g);
		ck_assert(vacation_cache_off(user, &g));
	}
	for (size_t i = 0; i < 3 * VACATION_CACHE_SLOTS; i++) {
		snprintf(user, sizeof(user), "user%zu@example.org", i);
		known += vacation_cache_off(user, &g);
	}
	ck_assert_uint_le(known, VACATION_CACHE_SLOTS);
	ck_assert_uint_gt(known, 0);
	vacation_cache_clear();
}
END_TEST

static void *
worker(void *arg)
{
	size_t id = (size_t)arg;
	char user[64];
	uint64_t g;

	for (size_t i = 0; i < 20000; i++) {
		snprintf(user, sizeof(user), "u%zu@example.org", (i * 7 + id) % 97);
		if (i % 5 == id % 5)
			vacation_cache_forget(user);
		else if (!vacation_cache_off(user, &g))
			vacation_cache_note_off(user, g);
	}
	return NULL;
}

START_TEST(threads)
{
	pthread_t t[4];
	uint64_t g;

	vacation_cache_clear();
	for (size_t i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker, (void *)i), 0);
	for (size_t i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	/* every user ends forgotten or known off; a forget still wins */
	vacation_cache_forget("u1@example.org");
	ck_assert(!vacation_cache_off("u1@example.org", &g));
	vacation_cache_clear();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("vacation");
	TCase *tc = tcase_create("cache");

	tcase_add_test(tc, off_kept_until_forgotten);
	tcase_add_test(tc, set_during_read);
	tcase_add_test(tc, bounded);
	tcase_add_test(tc, threads);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return check_run(s);
}
