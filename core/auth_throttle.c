/*
 * Failed-login slow-down per client IP. Each failure from an address doubles
 * the delay the protocol applies before answering (fail_delay_initial up to
 * fail_delay_max seconds); a success or FORGET_MS without failures resets it.
 * The protocol applies the delay with conn_delay(), so no worker sleeps.
 *
 * The table has a fixed number of entries (a flood of addresses cannot grow
 * memory): a hash over a preallocated pool, plus a list in order of the last
 * failure; when the pool is full the address that failed longest ago is
 * forgotten.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roost/xalloc.h"

#include "auth_impl.h"

#define NONE UINT32_MAX
#define IP_MAX 64		/* longer keys are cut: textual IPv6 is at most 45 */
#define FORGET_MS (300u * 1000u)	/* failures older than this no longer count */
#define MAX_POOL ((size_t)1 << 20)

struct throttle_entry {
	char ip[IP_MAX];
	unsigned failures;
	uint64_t last_ms;
	uint32_t hnext;		/* next in the hash chain or the free list */
	uint32_t prev, next;	/* LRU list: head = most recent failure */
};

struct auth_throttle {
	/* Immutable after creation. */
	unsigned initial_ms, max_ms;
	size_t nentries;
	uint32_t hmask;

	pthread_mutex_t lock;	/* guards everything below */
	struct throttle_entry *e;
	uint32_t *heads;	/* hash buckets */
	uint32_t free_head;
	uint32_t lru_head, lru_tail;
	size_t count;
};

struct auth_throttle *
auth_throttle_new(size_t max_entries, unsigned initial_s, unsigned max_s)
{
	struct auth_throttle *t = xcalloc(1, sizeof(*t));
	size_t nb = 1;

	if (max_entries == 0)
		max_entries = 1;
	if (max_entries > MAX_POOL)
		max_entries = MAX_POOL;
	while (nb < max_entries)
		nb <<= 1;
	t->initial_ms = initial_s > 3600 ? 3600000u : initial_s * 1000u;
	t->max_ms = max_s > 3600 ? 3600000u : max_s * 1000u;
	if (t->max_ms < t->initial_ms)
		t->max_ms = t->initial_ms;
	t->nentries = max_entries;
	t->hmask = (uint32_t)(nb - 1);
	t->e = xcalloc(max_entries, sizeof(t->e[0]));
	t->heads = xmalloc(nb * sizeof(t->heads[0]));
	for (size_t i = 0; i < nb; i++)
		t->heads[i] = NONE;
	for (size_t i = 0; i < max_entries; i++)
		t->e[i].hnext = i + 1 < max_entries ? (uint32_t)(i + 1) : NONE;
	t->free_head = 0;
	t->lru_head = t->lru_tail = NONE;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void
auth_throttle_free(struct auth_throttle **tp)
{
	struct auth_throttle *t = *tp;

	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->e);
	free(t->heads);
	free(t);
	*tp = NULL;
}

static uint32_t
ip_hash(const char *ip)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; ip[i] != '\0' && i < IP_MAX - 1; i++)
		h = (h ^ (uint8_t)ip[i]) * 16777619u;
	return h;
}

static bool
ip_equal(const struct throttle_entry *e, const char *ip)
{
	return strncmp(e->ip, ip, IP_MAX - 1) == 0;
}

static uint32_t
find(struct auth_throttle *t, const char *ip, uint32_t *bucket_r)
{
	uint32_t b = ip_hash(ip) & t->hmask;

	*bucket_r = b;
	for (uint32_t i = t->heads[b]; i != NONE; i = t->e[i].hnext) {
		if (ip_equal(&t->e[i], ip))
			return i;
	}
	return NONE;
}

static void
lru_unlink(struct auth_throttle *t, uint32_t i)
{
	struct throttle_entry *e = &t->e[i];

	if (e->prev != NONE)
		t->e[e->prev].next = e->next;
	else
		t->lru_head = e->next;
	if (e->next != NONE)
		t->e[e->next].prev = e->prev;
	else
		t->lru_tail = e->prev;
	e->prev = e->next = NONE;
}

static void
lru_push_head(struct auth_throttle *t, uint32_t i)
{
	struct throttle_entry *e = &t->e[i];

	e->prev = NONE;
	e->next = t->lru_head;
	if (t->lru_head != NONE)
		t->e[t->lru_head].prev = i;
	t->lru_head = i;
	if (t->lru_tail == NONE)
		t->lru_tail = i;
}

/* Take entry i out of its hash chain and the LRU list, onto the free list. */
static void
remove_entry(struct auth_throttle *t, uint32_t i)
{
	uint32_t b = ip_hash(t->e[i].ip) & t->hmask;
	uint32_t *pp = &t->heads[b];

	while (*pp != i)
		pp = &t->e[*pp].hnext;
	*pp = t->e[i].hnext;
	lru_unlink(t, i);
	t->e[i].hnext = t->free_head;
	t->free_head = i;
	t->count--;
}

unsigned
auth_throttle_failure(struct auth_throttle *t, const char *ip, uint64_t now_ms)
{
	struct throttle_entry *e;
	uint32_t i, b;
	unsigned delay;

	pthread_mutex_lock(&t->lock);
	i = find(t, ip, &b);
	if (i == NONE) {
		if (t->free_head == NONE) {
			/* Full: forget the address that failed longest ago. */
			remove_entry(t, t->lru_tail);
			b = ip_hash(ip) & t->hmask;
		}
		i = t->free_head;
		e = &t->e[i];
		t->free_head = e->hnext;
		memset(e, 0, sizeof(*e));
		strncpy(e->ip, ip, IP_MAX - 1);
		e->hnext = t->heads[b];
		t->heads[b] = i;
		e->prev = e->next = NONE;
		t->count++;
	} else {
		e = &t->e[i];
		lru_unlink(t, i);
		if (now_ms - e->last_ms > FORGET_MS)
			e->failures = 0;
	}
	lru_push_head(t, i);
	if (e->failures < 32)
		e->failures++;
	e->last_ms = now_ms;
	delay = t->initial_ms;
	for (unsigned n = 1; n < e->failures && delay < t->max_ms; n++)
		delay *= 2;
	if (delay > t->max_ms)
		delay = t->max_ms;
	pthread_mutex_unlock(&t->lock);
	return delay;
}

void
auth_throttle_success(struct auth_throttle *t, const char *ip)
{
	uint32_t i, b;

	pthread_mutex_lock(&t->lock);
	i = find(t, ip, &b);
	if (i != NONE)
		remove_entry(t, i);
	pthread_mutex_unlock(&t->lock);
}

size_t
auth_throttle_count(struct auth_throttle *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
