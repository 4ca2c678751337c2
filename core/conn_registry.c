#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conn_impl.h"
#include "roost/server_impl.h"
#include "roost/xalloc.h"

/*
 * The session registry behind `roost who` and `roost kick`: one slot per
 * live connection in a table sized at start-up, so it never grows. The
 * loop takes a slot at accept and gives it back at close; the owner of the
 * connection copies the user name and the selected mailbox into it as they
 * change; the byte counters are atomics the owner adds to without the lock.
 *
 * Lock rule: mu guards every slot's conn pointer and text fields and the
 * free list. It is held for one insert, one remove, one text copy, or one
 * chunk of REG_CHUNK slots read by a listing, never across I/O or a call
 * into a protocol. A slot whose conn is set belongs to a connection that is
 * not yet closed: conn_close_now() gives the slot back before it marks the
 * connection gone, so a kick found under mu may still post to it.
 */

#define REG_CHUNK 64

struct reg_slot {
	struct conn *c; /* NULL: free */
	uint64_t id;
	int64_t since;   /* wall clock, seconds */
	char proto[16];  /* the listener: "imaps" */
	char family[16]; /* its protocol: "imap" */
	char peer[64];
	char user[REG_TEXT_MAX];
	char mailbox[REG_TEXT_MAX];
	_Atomic uint64_t bytes_in, bytes_out;
};

struct conn_registry {
	pthread_mutex_t mu;
	struct reg_slot *slots;
	unsigned n;
	unsigned *free; /* stack of free slot indexes */
	unsigned nfree;
	_Atomic uint64_t unlisted; /* connections that found the table full */
};

void
registry_create(struct server *s, unsigned n)
{
	struct conn_registry *r = xcalloc(1, sizeof(*r));

	pthread_mutex_init(&r->mu, NULL);
	r->n = n;
	r->slots = xcalloc(n, sizeof(*r->slots));
	r->free = xcalloc(n, sizeof(*r->free));
	for (unsigned i = 0; i < n; i++)
		r->free[i] = n - 1 - i;
	r->nfree = n;
	s->reg = r;
}

void
registry_free(struct server *s)
{
	struct conn_registry *r = s->reg;

	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->slots);
	free(r->free);
	free(r);
	s->reg = NULL;
}

void
registry_add(struct conn *c)
{
	struct conn_registry *r = c->srv->reg;
	struct reg_slot *slot;

	c->reg_slot = NULL;
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	if (r->nfree == 0) {
		pthread_mutex_unlock(&r->mu);
		atomic_fetch_add(&r->unlisted, 1);
		return;
	}
	slot = &r->slots[r->free[--r->nfree]];
	slot->c = c;
	slot->id = c->id;
	slot->since = (int64_t)time(NULL);
	snprintf(slot->proto, sizeof(slot->proto), "%s", c->lst->name);
	snprintf(slot->family, sizeof(slot->family), "%s", c->lst->ops->name);
	snprintf(slot->peer, sizeof(slot->peer), "%s", c->peer);
	slot->user[0] = '\0';
	slot->mailbox[0] = '\0';
	atomic_store_explicit(&slot->bytes_in, 0, memory_order_relaxed);
	atomic_store_explicit(&slot->bytes_out, 0, memory_order_relaxed);
	pthread_mutex_unlock(&r->mu);
	c->reg_slot = slot;
}

void
registry_remove(struct conn *c)
{
	struct conn_registry *r = c->srv->reg;
	struct reg_slot *slot = c->reg_slot;

	if (slot == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	slot->c = NULL;
	r->free[r->nfree++] = (unsigned)(slot - r->slots);
	pthread_mutex_unlock(&r->mu);
	c->reg_slot = NULL;
}

/* Copy text (NULL = none) into a slot's field; cut at the field's size
 * (REG_TEXT_MAX - 1 bytes; the ctl reply quotes it, so a cut UTF-8
 * sequence shows as \xNN rather than breaking the line). */
static void
set_text(struct conn *c, size_t off, const char *text)
{
	struct reg_slot *slot = c->reg_slot;
	struct conn_registry *r = c->srv->reg;

	if (slot == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	snprintf((char *)slot + off, REG_TEXT_MAX, "%s", text != NULL ? text : "");
	pthread_mutex_unlock(&r->mu);
}

void
registry_set_user(struct conn *c, const char *user)
{
	set_text(c, offsetof(struct reg_slot, user), user);
}

void
registry_set_mailbox(struct conn *c, const char *mailbox)
{
	set_text(c, offsetof(struct reg_slot, mailbox), mailbox);
}

void
registry_count_in(struct conn *c, size_t n)
{
	if (c->reg_slot != NULL)
		atomic_fetch_add_explicit(&c->reg_slot->bytes_in, n, memory_order_relaxed);
}

void
registry_count_out(struct conn *c, size_t n)
{
	if (c->reg_slot != NULL)
		atomic_fetch_add_explicit(&c->reg_slot->bytes_out, n, memory_order_relaxed);
}

unsigned
registry_size(const struct server *s)
{
	return s->reg != NULL ? s->reg->n : 0;
}

uint64_t
registry_unlisted(const struct server *s)
{
	return s->reg != NULL ? atomic_load(&s->reg->unlisted) : 0;
}

unsigned
registry_list(struct server *s, unsigned start, struct conn_info *out, unsigned max,
              unsigned *next_r)
{
	struct conn_registry *r = s->reg;
	unsigned got = 0, i = start;

	if (r == NULL || max == 0) {
		*next_r = r != NULL ? r->n : 0;
		return 0;
	}
	if (max > REG_CHUNK)
		max = REG_CHUNK;
	pthread_mutex_lock(&r->mu);
	for (; i < r->n && got < max; i++) {
		const struct reg_slot *slot = &r->slots[i];
		struct conn_info *ci;

		if (slot->c == NULL)
			continue;
		ci = &out[got++];
		ci->id = slot->id;
		ci->since = slot->since;
		memcpy(ci->proto, slot->proto, sizeof(ci->proto));
		memcpy(ci->peer, slot->peer, sizeof(ci->peer));
		memcpy(ci->user, slot->user, sizeof(ci->user));
		memcpy(ci->mailbox, slot->mailbox, sizeof(ci->mailbox));
		ci->bytes_in = atomic_load_explicit(&slot->bytes_in, memory_order_relaxed);
		ci->bytes_out = atomic_load_explicit(&slot->bytes_out, memory_order_relaxed);
	}
	pthread_mutex_unlock(&r->mu);
	*next_r = i;
	return got;
}

unsigned
registry_kick(struct server *s, const char *user, const char *proto)
{
	struct conn_registry *r = s->reg;
	unsigned kicked = 0;

	if (r == NULL)
		return 0;
	/* conn_kick() only sets a bit and posts to the connection's loop, so
	 * holding mu over it keeps to the lock rule; the loop does the rest. */
	for (unsigned start = 0; start < r->n; start += REG_CHUNK) {
		pthread_mutex_lock(&r->mu);
		for (unsigned i = start; i < r->n && i < start + REG_CHUNK; i++) {
			struct reg_slot *slot = &r->slots[i];

			if (slot->c == NULL || slot->user[0] == '\0' ||
			    strcasecmp(slot->user, user) != 0)
				continue;
			/* --proto imap takes imap and imaps; --proto imaps only that. */
			if (proto != NULL && strcasecmp(slot->proto, proto) != 0 &&
			    strcasecmp(slot->family, proto) != 0)
				continue;
			conn_kick(slot->c);
			kicked++;
		}
		pthread_mutex_unlock(&r->mu);
	}
	return kicked;
}
