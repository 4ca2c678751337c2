/*
 * The per-command arena (imap_impl.h): chunks freed together when the
 * command ends.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/xalloc.h"

#include "imap_impl.h"

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, size;
	_Alignas(16) uint8_t data[];
};

#define ARENA_CHUNK 8192

void
arena_init(struct arena *a)
{
	a->head = NULL;
	a->used = 0;
	a->max = 0;
}

void *
arena_alloc(struct arena *a, size_t n)
{
	struct arena_chunk *ch = a->head;
	size_t need = (n + 15) & ~(size_t)15;

	if (need < n)
		abort();
	if (ch == NULL || ch->size - ch->used < need) {
		size_t size = need > ARENA_CHUNK ? need : ARENA_CHUNK;

		ch = xmalloc(sizeof(*ch) + size);
		ch->used = 0;
		ch->size = size;
		ch->next = a->head;
		a->head = ch;
	}
	void *p = ch->data + ch->used;
	ch->used += need;
	a->used += need;
	memset(p, 0, n);
	return p;
}

void *
arena_try_alloc(struct arena *a, size_t n)
{
	if (a->max != 0 && (n > a->max || a->used > a->max - n))
		return NULL;
	return arena_alloc(a, n);
}

char *
arena_strndup(struct arena *a, const void *p, size_t n)
{
	char *s = arena_alloc(a, n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

void
arena_free(struct arena *a)
{
	struct arena_chunk *ch = a->head;

	while (ch != NULL) {
		struct arena_chunk *next = ch->next;
		free(ch);
		ch = next;
	}
	a->head = NULL;
	a->used = 0;
}
