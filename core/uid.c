#include <stdlib.h>

#include "roost/uid.h"

int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void
uid_sort(uint32_t *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), uid_cmp);
}

bool
uid_find(const uint32_t *v, size_t n, uint32_t uid)
{
	return n > 0 && bsearch(&uid, v, n, sizeof(*v), uid_cmp) != NULL;
}
