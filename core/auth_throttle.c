/*
 * Failed-login slow-down per client IP. Each failure from an address doubles
 * the delay (fail_delay_initial up to fail_delay_max seconds); a success or
 * FORGET_MS without failures resets it. The protocol holds its answer with
 * conn_delay(), so no worker sleeps.
 *
 * The delay is a queue per address, not a sleep per connection. Attempts
 * from an address take turns: each one is answered at its turn, and a
 * failure moves the next turn one delay further. An answer, right or wrong,
 * is never released before the turn of the attempt, so a client that failed
 * once learns nothing sooner by opening new connections: a right password
 * is answered at the same moment a wrong one would be, and parallel guesses
 * are answered one delay apart. Checking the password before the turn (and
 * holding the answer) tells the client no more than checking it at the turn
 * would, as long as nothing the client can see changes before the turn: a
 * success therefore takes effect (forgets the address) only at its turn.
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

#include "roost/hash.h"
#include "roost/xalloc.h"

#include "auth_impl.h"

#define NONE UINT32_MAX
#define IP_MAX 64                    /* longer keys are cut: textual IPv6 is at most 45 */
#define FORGET_MS (300u * 1000u)     /* failures older than this no longer count */
#define QUEUE_MAX_MS (3600u * 1000u) /* no answer is held longer than this */
#define MAX_POOL ((size_t)1 << 20)

struct throttle_entry {
	char ip[IP_MAX];
	unsigned failures;
	uint64_t next_ms;    /* the next attempt's turn: not answered before it */
	uint64_t reset_ms;   /* 0, or when a success forgets the address */
	uint32_t hnext;      /* next in the hash chain or the free list */
	uint32_t prev, next; /* LRU list: head = most recent failure */
};

struct auth_throttle {
	/* Immutable after creation. */
	unsigned initial_ms, max_ms;
	size_t nentries;
	uint32_t hmask;

	pthread_mutex_t lock; /* guards everything below */
	struct throttle_entry *e;
	uint32_t *heads; /* hash buckets */
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
	return hash_fnv1a32(ip, strnlen(ip, IP_MAX - 1), HASH_FNV1A32_INIT);
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

/* Has entry e nothing left to say at now (a success took effect, or its
 * failures are old)? */
static bool
expired(const struct throttle_entry *e, uint64_t now_ms)
{
	if (e->reset_ms != 0 && now_ms >= e->reset_ms)
		return true;
	return now_ms >= e->next_ms && now_ms - e->next_ms > FORGET_MS;
}

unsigned
auth_throttle_failure(struct auth_throttle *t, const char *ip, uint64_t now_ms)
{
	struct throttle_entry *e;
	uint32_t i, b;
	uint64_t turn;
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
		if (expired(e, now_ms)) {
			e->failures = 0;
			e->next_ms = 0;
			e->reset_ms = 0;
		} else if (e->reset_ms != 0) {
			/* A success whose turn is still to come: in turn
			 * order this failure follows it, so it is the first. */
			e->failures = 0;
			e->reset_ms = 0;
		}
	}
	lru_push_head(t, i);
	if (e->failures < 32)
		e->failures++;
	delay = t->initial_ms;
	for (unsigned n = 1; n < e->failures && delay < t->max_ms; n++)
		delay *= 2;
	if (delay > t->max_ms)
		delay = t->max_ms;
	turn = e->next_ms > now_ms ? e->next_ms : now_ms;
	if (turn - now_ms + delay > QUEUE_MAX_MS)
		e->next_ms = now_ms + QUEUE_MAX_MS;
	else
		e->next_ms = turn + delay;
	delay = (unsigned)(e->next_ms - now_ms);
	pthread_mutex_unlock(&t->lock);
	return delay;
}

unsigned
auth_throttle_success(struct auth_throttle *t, const char *ip, uint64_t now_ms)
{
	struct throttle_entry *e;
	uint32_t i, b;
	unsigned hold = 0;

	pthread_mutex_lock(&t->lock);
	i = find(t, ip, &b);
	if (i != NONE) {
		e = &t->e[i];
		if (expired(e, now_ms) || e->next_ms <= now_ms) {
			remove_entry(t, i);
		} else {
			/* Answer at the turn, and only then forget the address:
			 * a parallel attempt must not see the success earlier. */
			hold = (unsigned)(e->next_ms - now_ms);
			e->reset_ms = e->next_ms;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return hold;
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
