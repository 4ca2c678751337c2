#ifndef ROOST_UID_H
#define ROOST_UID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Arrays of message UIDs (32-bit, RFC 3501 2.3.1.1): the one comparator, and
 * sorting and lookup built on it, for the protocol and storage code that
 * collects UIDs and asks whether one is among them. Pure functions,
 * thread-safe.
 */

/* qsort()/bsearch() comparator over uint32_t: -1, 0 or 1. */
int uid_cmp(const void *a, const void *b);

/* Sort v[0..n) in ascending order. */
void uid_sort(uint32_t *v, size_t n);

/* Is uid in v[0..n), which is sorted in ascending order? */
bool uid_find(const uint32_t *v, size_t n, uint32_t uid);

#endif
