#ifndef ROOST_XALLOC_H
#define ROOST_XALLOC_H

#include <stddef.h>

/*
 * Allocation that cannot fail: on exhaustion the process logs and aborts
 * (STYLE.md 7), so callers never test for NULL. Sizes that come from a
 * client are bounded by the caller before they get here.
 */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* realloc of an array of n elements, with the multiplication checked. */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

#endif
