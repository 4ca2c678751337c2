/*
 * Object ids (RFC 8474) that every backend hands out alike: EMAILIDs are
 * 64 random bits (a store never counts its messages across users, and a
 * random id needs no shared counter between processes or nodes), or a
 * digest of what identifies a message that predates ids.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "roost/hash.h"
#include "roost/storage_impl.h"

uint64_t
storage_new_emailid(void)
{
	uint64_t v = 0;

	while (v == 0) {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
			struct timespec ts;

			/* getrandom() cannot fail on a Linux with a seeded
			 * pool; a clock read keeps the id unique enough in
			 * the unlikely case, never the same twice in a row */
			clock_gettime(CLOCK_REALTIME, &ts);
			v = hash_fnv1a64(&ts, sizeof(ts), HASH_FNV1A64_INIT ^ v);
		}
	}
	return v;
}

uint64_t
storage_derived_emailid(const void *data, size_t len)
{
	uint64_t v = hash_fnv1a64(data, len, HASH_FNV1A64_INIT);

	return v != 0 ? v : 1;
}

void
storage_mailboxid_set(char *mailboxid, const char *id)
{
	size_t n = 0;

	for (; *id != '\0' && n < STORAGE_MAILBOXID_MAX; id++) {
		char c = *id;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_')
			mailboxid[n++] = c;
	}
	if (n == 0)
		mailboxid[n++] = '0';
	mailboxid[n] = '\0';
}

void
storage_mailboxid_from_id(char *mailboxid, uint64_t id, uint32_t uidvalidity)
{
	char mid[STORAGE_MAILBOXID_MAX + 1];

	snprintf(mid, sizeof(mid), "%016" PRIx64 "%08" PRIx32, id, uidvalidity);
	storage_mailboxid_set(mailboxid, mid);
}
