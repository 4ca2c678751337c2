/*
 * Who has no vacation setting worth reading (include/roost/vacation.h).
 *
 * Every local delivery asks whether the recipient has a VacationResponse
 * on; almost nobody has. The answer "off" (no setting, or isEnabled
 * false) is kept here per user, so a delivery to such a user reads no
 * storage. "On" is not kept: a delivery to a user with it on reads the
 * setting anyway, for its text and dates.
 *
 * A direct-mapped table of VACATION_CACHE_SLOTS slots, each the user's
 * name and when "off" was read, under one mutex (held for a hash and a
 * string compare, never across storage). A user whose slot another user
 * took is read again: the table bounds memory, not correctness.
 *
 * Writes: vacation_set() forgets the user after its storage write, and
 * bumps the generation; an "off" read from storage is kept only when no
 * set ran since the read began (vacation_cache_begin()), so a set racing
 * a delivery's read cannot be overwritten by the older "off". A write
 * this process does not see (another Roost node on the same PostgreSQL
 * store, a restore) is seen once the entry is VACATION_CACHE_TTL seconds
 * old.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roost/hash.h"
#include "roost/loop.h"
#include "roost/vacation.h"
#include "roost/xalloc.h"

struct slot {
	char *user;      /* NULL: empty */
	int64_t read_at; /* monotonic seconds when "off" was read */
};

/* Lock rule: mu guards slots[] and gen; nothing else is done under it. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[VACATION_CACHE_SLOTS];
static uint64_t gen;

static struct slot *
slot_of(const char *user)
{
	return &slots[hash_str64(user) % VACATION_CACHE_SLOTS];
}

bool
vacation_cache_off(const char *user, uint64_t *gen_r)
{
	struct slot *s;
	bool off;

	pthread_mutex_lock(&mu);
	s = slot_of(user);
	off = s->user != NULL && strcmp(s->user, user) == 0 &&
	      (int64_t)(clock_ms() / 1000) - s->read_at < VACATION_CACHE_TTL;
	*gen_r = gen;
	pthread_mutex_unlock(&mu);
	return off;
}

void
vacation_cache_note_off(const char *user, uint64_t begun)
{
	struct slot *s;

	pthread_mutex_lock(&mu);
	if (begun == gen) {
		s = slot_of(user);
		if (s->user == NULL || strcmp(s->user, user) != 0) {
			free(s->user);
			s->user = xstrdup(user);
		}
		s->read_at = (int64_t)(clock_ms() / 1000);
	}
	pthread_mutex_unlock(&mu);
}

void
vacation_cache_forget(const char *user)
{
	struct slot *s;

	pthread_mutex_lock(&mu);
	gen++;
	s = slot_of(user);
	if (s->user != NULL && strcmp(s->user, user) == 0) {
		free(s->user);
		s->user = NULL;
	}
	pthread_mutex_unlock(&mu);
}

void
vacation_cache_clear(void)
{
	pthread_mutex_lock(&mu);
	gen++;
	for (size_t i = 0; i < VACATION_CACHE_SLOTS; i++) {
		free(slots[i].user);
		slots[i].user = NULL;
	}
	pthread_mutex_unlock(&mu);
}
