#ifndef ROOST_RATELIMIT_H
#define ROOST_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Per-user sending rates (services/ratelimit.c): how many messages and how
 * many recipients an authenticated user may submit per hour, as [smtp]
 * user_messages_per_hour and user_recipients_per_hour set them.
 *
 * Each user has a bucket per kind holding up to one hour's allowance,
 * refilled continuously at that rate: a quiet user may send the whole
 * allowance at once, a busy one is held to the rate. The counters live in
 * memory only (a restart forgets them) in a table of at most max_users
 * users; a new user beyond that takes the place of the user idle longest.
 * Only authenticated users are counted, so the table is bounded by the
 * accounts, not by the clients.
 *
 * Thread-safe: one mutex, held for a table lookup and a few additions.
 */
struct ratelimit;

enum ratelimit_kind {
	RATELIMIT_MESSAGES,
	RATELIMIT_RECIPIENTS,
};

/* A limit of 0 per hour leaves that kind unlimited; max_users >= 1. */
struct ratelimit *ratelimit_create(unsigned messages_per_hour, unsigned recipients_per_hour,
                                   size_t max_users);
void ratelimit_free(struct ratelimit **rl);
/* New hourly rates (a reload), for the next ratelimit_take(); allowances
 * above the new hour's are cut to it. rl NULL: nothing. Thread-safe. */
void ratelimit_set_rates(struct ratelimit *rl, unsigned messages_per_hour,
                         unsigned recipients_per_hour);

/*
 * Take n of kind from user's allowance at now_ms (a monotonic clock). 0
 * when they were there (and are now used); ROOST_ETEMP when not (nothing is
 * used), with *wait_r the seconds until they will be. rl NULL allows all.
 */
int ratelimit_take(struct ratelimit *rl, const char *user, enum ratelimit_kind kind, unsigned n,
                   int64_t now_ms, unsigned *wait_r);

/* The monotonic clock ratelimit_take() expects, in milliseconds. */
int64_t ratelimit_now_ms(void);

/* Users in the table now (tests). */
size_t ratelimit_users(struct ratelimit *rl);

#endif
