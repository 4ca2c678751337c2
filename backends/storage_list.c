/*
 * The mailbox list as every backend answers it (storage_ops.list): once a
 * backend has read its mailboxes and subscriptions, the hierarchy marks,
 * the subscription marks and the subscribed names no mailbox has are the
 * same on each.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

static int
info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mailbox_info *)a)->name,
	              ((const struct mailbox_info *)b)->name);
}

size_t
storage_list_finish(struct mailbox_info *list, size_t n, const char *const *subs, size_t n_subs)
{
	size_t real;

	if (n > 1)
		qsort(list, n, sizeof(*list), info_cmp);
	/* Children: names below "x/" sort after "x", maybe past "x-y". */
	for (size_t i = 0; i < n; i++) {
		size_t pl = strlen(list[i].name);
		bool kids = false;

		for (size_t j = i + 1; !kids && j < n; j++) {
			if (strncmp(list[j].name, list[i].name, pl) != 0)
				break;
			kids = storage_name_is_child(list[j].name, list[i].name);
		}
		list[i].attrs |= kids ? MBOX_HASCHILDREN : MBOX_HASNOCHILDREN;
	}
	/* Subscriptions, marking absent ones \NonExistent. */
	real = n;
	for (size_t s = 0; s < n_subs; s++) {
		struct mailbox_info key = {.name = (char *)subs[s]};
		struct mailbox_info *hit = bsearch(&key, list, real, sizeof(*list), info_cmp);

		if (hit != NULL) {
			hit->attrs |= MBOX_SUBSCRIBED;
			continue;
		}
		list[n].name = xstrdup(subs[s]);
		list[n].attrs = MBOX_SUBSCRIBED | MBOX_NONEXISTENT;
		n++;
	}
	if (n > real)
		qsort(list, n, sizeof(*list), info_cmp);
	return n;
}
