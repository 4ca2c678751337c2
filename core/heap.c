/*
 * The intrusive min-heap of roost/heap.h: an array of node pointers in the
 * usual implicit binary-tree order (children of i at 2i+1 and 2i+2), each
 * node told its index whenever it moves.
 */
#include <stdlib.h>

#include "roost/heap.h"
#include "roost/xalloc.h"

static bool
less(const struct heap_node *a, const struct heap_node *b)
{
	return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static void
place(struct heap *h, size_t i, struct heap_node *x)
{
	h->v[i] = x;
	x->pos = i + 1;
}

static void
sift_up(struct heap *h, size_t i)
{
	struct heap_node *x = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!less(x, h->v[parent]))
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, x);
}

static void
sift_down(struct heap *h, size_t i)
{
	struct heap_node *x = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && less(h->v[c + 1], h->v[c]))
			c++;
		if (!less(h->v[c], x))
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, x);
}

void
heap_free(struct heap *h)
{
	for (size_t i = 0; i < h->n; i++)
		h->v[i]->pos = 0;
	free(h->v);
	*h = (struct heap)HEAP_INIT;
}

bool
heap_contains(const struct heap *h, const struct heap_node *x)
{
	return x->pos > 0 && x->pos <= h->n && h->v[x->pos - 1] == x;
}

void
heap_set(struct heap *h, struct heap_node *x, int64_t key)
{
	if (heap_contains(h, x)) {
		int64_t old = x->key;

		x->key = key;
		if (key < old)
			sift_up(h, x->pos - 1);
		else if (key > old)
			sift_down(h, x->pos - 1);
		return;
	}
	if (h->n == h->cap) {
		h->cap = h->cap == 0 ? 64 : h->cap * 2;
		h->v = xreallocarray(h->v, h->cap, sizeof(*h->v));
	}
	x->key = key;
	x->seq = h->seq++;
	h->v[h->n++] = x;
	sift_up(h, h->n - 1);
}

void
heap_remove(struct heap *h, struct heap_node *x)
{
	size_t i;
	struct heap_node *last;

	if (!heap_contains(h, x))
		return;
	i = x->pos - 1;
	x->pos = 0;
	last = h->v[--h->n];
	if (i == h->n)
		return;
	/* The last node fills the hole and moves whichever way it must. */
	place(h, i, last);
	if (i > 0 && less(last, h->v[(i - 1) / 2]))
		sift_up(h, i);
	else
		sift_down(h, i);
}

struct heap_node *
heap_peek(const struct heap *h)
{
	return h->n > 0 ? h->v[0] : NULL;
}

struct heap_node *
heap_pop(struct heap *h)
{
	struct heap_node *x = heap_peek(h);

	if (x != NULL)
		heap_remove(h, x);
	return x;
}
