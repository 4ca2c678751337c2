#ifndef ROOST_HASH_H
#define ROOST_HASH_H

#include <stddef.h>
#include <stdint.h>

/*
 * FNV-1a, the one non-cryptographic hash of the project: hash tables keyed
 * by strings, shard and watch selection, checksums of cache records. The
 * values are stored (the LMDB shard of a user, Maildir index checksums), so
 * they never change. Pure functions, thread-safe.
 */

#define HASH_FNV1A32_INIT 2166136261u
#define HASH_FNV1A64_INIT 0xcbf29ce484222325ull

/*
 * Continue the hash h (HASH_FNV1A*_INIT to start) over data[0..len), so
 * that pieces may be hashed one after another.
 */
uint32_t hash_fnv1a32(const void *data, size_t len, uint32_t h);
uint64_t hash_fnv1a64(const void *data, size_t len, uint64_t h);

/* The hash of the NUL-terminated string s. */
uint32_t hash_str(const char *s);
uint64_t hash_str64(const char *s);

#endif
