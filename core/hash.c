#include <string.h>

#include "roost/hash.h"

uint32_t
hash_fnv1a32(const void *data, size_t len, uint32_t h)
{
	const uint8_t *p = data;

	while (len-- > 0)
		h = (h ^ *p++) * 16777619u;
	return h;
}

uint64_t
hash_fnv1a64(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;

	while (len-- > 0)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

uint32_t
hash_str(const char *s)
{
	return hash_fnv1a32(s, strlen(s), HASH_FNV1A32_INIT);
}

uint64_t
hash_str64(const char *s)
{
	return hash_fnv1a64(s, strlen(s), HASH_FNV1A64_INIT);
}
