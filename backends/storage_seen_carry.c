/*
 * Carrying readers' \Seen on COPY and MOVE (the model is written at the
 * head of storage_seen.c): when messages are copied or moved between the
 * owner's mailboxes, every other reader's \Seen of them goes along into
 * the destination's seen sets, where that reader may read the
 * destination, in one update of the destination's record.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"
#include "storage_seen_set.h"

int
storage_seen_readers(struct storage *st, const char *owner, const char *canon,
                     struct metadata_entry **list_r, size_t *n_r)
{
	return storage_meta_entries(st, owner, canon, SEEN_PREFIX, list_r, n_r);
}

struct pair {
	uint32_t src, dst;
};

static int
pair_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct pair *)a)->dst, y = ((const struct pair *)b)->dst;

	return x < y ? -1 : x > y;
}

void
storage_seen_carry(struct storage *st, const char *owner, const char *from, const char *to,
                   const struct metadata_entry *readers, size_t n_readers, const char *except,
                   uint32_t to_uidvalidity, const uint32_t *src, const uint32_t *dst, size_t n)
{
	struct mailbox_status ms = {0}, dest = {0};
	struct seen_set s = {0};
	struct pair *pairs;
	struct seen_change_arg *a;
	char **keys, **names;
	size_t m = 0;
	int rc;

	if (n_readers == 0 || n == 0 || st->ops->status(st, owner, from, &ms) != 0 ||
	    st->ops->status(st, owner, to, &dest) != 0)
		return;
	pairs = xcalloc(n, sizeof(*pairs));
	a = xcalloc(n_readers, sizeof(*a));
	keys = xcalloc(n_readers, sizeof(*keys));
	names = xcalloc(n_readers, sizeof(*names));
	for (size_t i = 0; i < n; i++) {
		pairs[i].src = src[i];
		pairs[i].dst = dst[i];
	}
	qsort(pairs, n, sizeof(*pairs), pair_cmp);
	for (size_t i = 0; i < n_readers; i++) {
		char name[STORAGE_MAX_NAME * 2 + 300], reader[256];
		char key[SEEN_KEY_MAX + sizeof(SEEN_PREFIX) + 1];
		unsigned rights = 0;
		uint32_t *uids;
		size_t off, k = 0;

		if (!seen_parse(readers[i].value, readers[i].len, ms.uidvalidity, &s, &off) ||
		    readers[i].len - off >= sizeof(reader))
			continue;
		memcpy(reader, readers[i].value + off, readers[i].len - off);
		reader[readers[i].len - off] = '\0';
		if ((except != NULL && strcmp(reader, except) == 0) || strcmp(reader, owner) == 0 ||
		    !storage_user_valid(reader))
			continue;
		uids = xcalloc(n, sizeof(*uids));
		for (size_t j = 0; j < n; j++) {
			if (seen_has(&s, pairs[j].src))
				uids[k++] = pairs[j].dst;
		}
		/* only where the reader may read it */
		if (k == 0 ||
		    (size_t)snprintf(name, sizeof(name), "%s/%s/%s", STORAGE_ACL_PREFIX, owner,
		                     to) >= sizeof(name) ||
		    storage_acl_myrights(st, reader, name, &rights) != 0 ||
		    (rights & ACL_READ) == 0) {
			free(uids);
			continue;
		}
		seen_key(reader, key, sizeof(key));
		keys[m] = xstrdup(key);
		names[m] = xstrdup(reader);
		a[m].reader = names[m];
		a[m].uidvalidity = to_uidvalidity;
		a[m].backend = dest.highestmodseq;
		a[m].uids = uids;
		a[m].n = k;
		a[m].seen = true;
		m++;
	}
	/* every reader's in one update of the destination's record: one
	 * commit whatever the number of readers */
	if (m > 0 &&
	    (rc = seen_change_many(st, owner, to, (const char *const *)keys, a, m, true)) != 0)
		log_warn("event=seen_error op=carry mailbox=%s readers=%zu err=%s", LOG_QUOTE(to),
		         m, roost_strerror(rc));
	for (size_t i = 0; i < m; i++) {
		if (a[i].failed)
			log_warn("event=seen_error op=carry user=%s mailbox=%s err=%s",
			         LOG_QUOTE(a[i].reader), LOG_QUOTE(to),
			         roost_strerror(ROOST_ETOOBIG));
		seen_clear(&a[i].result);
		free((uint32_t *)a[i].uids);
		free(keys[i]);
		free(names[i]);
	}
	seen_clear(&s);
	free(names);
	free(keys);
	free(a);
	free(pairs);
}
