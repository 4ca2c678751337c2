/*
 * Per-user token buckets (roost/ratelimit.h) in a chained hash table with
 * an LRU list through it, so finding a user and making room are both O(1).
 *
 * A token (one message, one recipient) is counted as HOUR_MS units, so a
 * rate of r an hour refills exactly r units a millisecond: integer
 * arithmetic without rounding, however slow the rate or short the step.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/error.h"
#include "roost/hash.h"
#include "roost/loop.h"
#include "roost/ratelimit.h"
#include "roost/xalloc.h"

#define HOUR_MS 3600000LL

struct rl_user {
	struct rl_user *chain;         /* next in the hash bucket */
	struct rl_user *newer, *older; /* LRU list, most recent at the head */
	int64_t tokens[2];             /* units (HOUR_MS a token) per kind */
	int64_t at_ms;                 /* when tokens were last brought up to date */
	uint32_t hash;
	char name[];
};

struct ratelimit {
	int64_t rate[2]; /* tokens an hour = units a millisecond; 0 = unlimited (mu) */
	int64_t cap[2];  /* units: one hour's allowance (mu) */
	size_t max_users, n_users;
	size_t mask;
	struct rl_user **table;

	/* Lock rule: mu guards table, the LRU list and every rl_user; held for
	 * one lookup and update, never across I/O. */
	pthread_mutex_t mu;
	struct rl_user *newest, *oldest;
};

struct ratelimit *
ratelimit_create(unsigned messages_per_hour, unsigned recipients_per_hour, size_t max_users)
{
	struct ratelimit *rl = xcalloc(1, sizeof(*rl));
	size_t size = 64;

	rl->rate[RATELIMIT_MESSAGES] = messages_per_hour;
	rl->rate[RATELIMIT_RECIPIENTS] = recipients_per_hour;
	for (int k = 0; k < 2; k++)
		rl->cap[k] = rl->rate[k] * HOUR_MS;
	rl->max_users = max_users > 0 ? max_users : 1;
	while (size < rl->max_users && size < ((size_t)1 << 24))
		size *= 2;
	rl->mask = size - 1;
	rl->table = xcalloc(size, sizeof(*rl->table));
	pthread_mutex_init(&rl->mu, NULL);
	return rl;
}

void
ratelimit_free(struct ratelimit **rlp)
{
	struct ratelimit *rl = *rlp;

	if (rl == NULL)
		return;
	while (rl->newest != NULL) {
		struct rl_user *u = rl->newest;

		rl->newest = u->older;
		free(u);
	}
	pthread_mutex_destroy(&rl->mu);
	free(rl->table);
	free(rl);
	*rlp = NULL;
}

static void
lru_unlink(struct ratelimit *rl, struct rl_user *u)
{
	if (u->newer != NULL)
		u->newer->older = u->older;
	else
		rl->newest = u->older;
	if (u->older != NULL)
		u->older->newer = u->newer;
	else
		rl->oldest = u->newer;
	u->newer = u->older = NULL;
}

static void
lru_push(struct ratelimit *rl, struct rl_user *u)
{
	u->older = rl->newest;
	u->newer = NULL;
	if (rl->newest != NULL)
		rl->newest->newer = u;
	rl->newest = u;
	if (rl->oldest == NULL)
		rl->oldest = u;
}

static void
evict_oldest(struct ratelimit *rl)
{
	struct rl_user *u = rl->oldest, **pp;

	lru_unlink(rl, u);
	for (pp = &rl->table[u->hash & rl->mask]; *pp != u; pp = &(*pp)->chain)
		;
	*pp = u->chain;
	rl->n_users--;
	free(u);
}

/* user's record (made with full buckets when new), now the most recent. */
static struct rl_user *
lookup(struct ratelimit *rl, const char *user, int64_t now_ms)
{
	uint32_t h = hash_str(user);
	struct rl_user *u;
	size_t len;

	for (u = rl->table[h & rl->mask]; u != NULL; u = u->chain) {
		if (u->hash == h && strcmp(u->name, user) == 0) {
			lru_unlink(rl, u);
			lru_push(rl, u);
			return u;
		}
	}
	if (rl->n_users >= rl->max_users)
		evict_oldest(rl);
	len = strlen(user);
	u = xcalloc(1, sizeof(*u) + len + 1);
	memcpy(u->name, user, len + 1);
	u->hash = h;
	u->tokens[0] = rl->cap[0];
	u->tokens[1] = rl->cap[1];
	u->at_ms = now_ms;
	u->chain = rl->table[h & rl->mask];
	rl->table[h & rl->mask] = u;
	rl->n_users++;
	lru_push(rl, u);
	return u;
}

void
ratelimit_set_rates(struct ratelimit *rl, unsigned messages_per_hour, unsigned recipients_per_hour)
{
	if (rl == NULL)
		return;
	pthread_mutex_lock(&rl->mu);
	rl->rate[RATELIMIT_MESSAGES] = messages_per_hour;
	rl->rate[RATELIMIT_RECIPIENTS] = recipients_per_hour;
	for (int k = 0; k < 2; k++)
		rl->cap[k] = rl->rate[k] * HOUR_MS;
	/* A lower allowance holds at once: nobody keeps more than it. */
	for (struct rl_user *u = rl->newest; u != NULL; u = u->older)
		for (int k = 0; k < 2; k++)
			if (u->tokens[k] > rl->cap[k])
				u->tokens[k] = rl->cap[k];
	pthread_mutex_unlock(&rl->mu);
}

int
ratelimit_take(struct ratelimit *rl, const char *user, enum ratelimit_kind kind, unsigned n,
               int64_t now_ms, unsigned *wait_r)
{
	struct rl_user *u;
	int64_t need = (int64_t)n * HOUR_MS, elapsed;
	int ret = 0;

	*wait_r = 0;
	if (rl == NULL || n == 0)
		return 0;
	pthread_mutex_lock(&rl->mu);
	if (rl->rate[kind] == 0) { /* under mu: a reload may change it */
		pthread_mutex_unlock(&rl->mu);
		return 0;
	}
	u = lookup(rl, user, now_ms);
	elapsed = now_ms > u->at_ms ? now_ms - u->at_ms : 0;
	if (elapsed > 0) {
		for (int k = 0; k < 2; k++) {
			/* An hour or more refills everything (and keeps the
			 * product small). */
			if (elapsed >= HOUR_MS)
				u->tokens[k] = rl->cap[k];
			else
				u->tokens[k] += rl->rate[k] * elapsed;
			if (u->tokens[k] > rl->cap[k])
				u->tokens[k] = rl->cap[k];
		}
		u->at_ms = now_ms;
	}
	if (u->tokens[kind] >= need) {
		u->tokens[kind] -= need;
	} else {
		/* More than an hour's allowance at once never fits: say an
		 * hour, the client tries fewer. */
		double ms = need > rl->cap[kind]
		                ? (double)HOUR_MS
		                : (double)(need - u->tokens[kind]) / (double)rl->rate[kind];

		*wait_r = (unsigned)((ms + 999.0) / 1000.0);
		if (*wait_r == 0)
			*wait_r = 1;
		ret = ROOST_ETEMP;
	}
	pthread_mutex_unlock(&rl->mu);
	return ret;
}

int64_t
ratelimit_now_ms(void)
{
	return (int64_t)clock_ms();
}

size_t
ratelimit_users(struct ratelimit *rl)
{
	size_t n;

	if (rl == NULL)
		return 0;
	pthread_mutex_lock(&rl->mu);
	n = rl->n_users;
	pthread_mutex_unlock(&rl->mu);
	return n;
}
