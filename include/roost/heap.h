#ifndef ROOST_HEAP_H
#define ROOST_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * An intrusive binary min-heap keyed by a 64-bit integer (core/heap.c):
 * the caller embeds a struct heap_node in its own struct and finds its way
 * back with container_of-style arithmetic. Each node remembers its place in
 * the heap, so removing or re-keying any node costs O(log n), not a search.
 * Nodes of equal key come out in the order they went in.
 *
 * The heap borrows its nodes: it never allocates or frees them, and a node
 * must be removed before its memory is freed. Not thread-safe: one owner.
 */
struct heap_node {
	int64_t key;
	uint64_t seq; /* insertion order, breaks ties */
	size_t pos;   /* index + 1 in the heap that holds it; 0 = in none */
};

struct heap {
	struct heap_node **v;
	size_t n, cap;
	uint64_t seq;
};

#define HEAP_INIT                                                                                  \
	{                                                                                          \
		NULL, 0, 0, 0                                                                      \
	}

/* Release the heap's array (not the nodes, which stay the caller's). */
void heap_free(struct heap *h);

/* Is x in h? O(1). */
bool heap_contains(const struct heap *h, const struct heap_node *x);

/* Put x in h with key, or give it the new key when it is there already.
 * x must not be in another heap. */
void heap_set(struct heap *h, struct heap_node *x, int64_t key);

/* Take x out of h; nothing when x is not in h. */
void heap_remove(struct heap *h, struct heap_node *x);

/* The node with the least key (left in h), or NULL when h is empty. */
struct heap_node *heap_peek(const struct heap *h);

/* Take the node with the least key out of h, or NULL when h is empty. */
struct heap_node *heap_pop(struct heap *h);

static inline size_t
heap_count(const struct heap *h)
{
	return h->n;
}

#endif
