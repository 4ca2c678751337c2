#ifndef ROOST_CHECK_GUARD_H
#define ROOST_CHECK_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <check.h>

/*
 * Input placed against a guard page (STYLE 15): a parser test copies its
 * bytes to the very end of a mapping whose next page is PROT_NONE, so a
 * read one byte past them faults. guard_init() copies data[0..len) to
 * g->data; guard_seal() makes it read-only; guard_free() unmaps it.
 */
struct guarded {
	uint8_t *map;
	size_t maplen;
	uint8_t *data;
};

static inline void
guard_init(struct guarded *g, const void *data, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (len + page - 1) / page + 1;

	g->maplen = pages * page;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(g->map, MAP_FAILED);
	ck_assert_int_eq(mprotect(g->map + (pages - 1) * page, page, PROT_NONE), 0);
	g->data = g->map + (pages - 1) * page - len;
	if (len > 0)
		memcpy(g->data, data, len);
}

/* Make the copy read-only too, for a parser that must never write. */
static inline void
guard_seal(struct guarded *g)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	ck_assert_int_eq(mprotect(g->map, g->maplen - page, PROT_READ), 0);
}

static inline void
guard_free(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

#endif
