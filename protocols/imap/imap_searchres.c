/*
 * SEARCHRES (RFC 5182): the result a SEARCH or SORT saved with RETURN
 * (SAVE), named "$" in later sequence sets.
 *
 * It is kept as UIDs, ascending, in the view, so expunged messages simply
 * stop resolving and a new SELECT (which closes the view) empties it; a
 * sequence-number command maps each UID to its current number.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/error.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

void
searchres_save(struct imap_view *v, const uint32_t *uids, size_t n)
{
	free(v->searchres);
	v->searchres = xmalloc((n ? n : 1) * sizeof(*uids));
	memcpy(v->searchres, uids, n * sizeof(*uids));
	uid_sort(v->searchres, n);
	v->n_searchres = n;
}

void
searchres_clear(struct imap_view *v)
{
	free(v->searchres);
	v->searchres = NULL;
	v->n_searchres = 0;
}

bool
searchres_contains(const struct imap_view *v, uint32_t uid)
{
	return uid_find(v->searchres, v->n_searchres, uid);
}

int
searchres_resolve(struct imap_cmd *cmd, uint32_t **idx_r, size_t *n_r)
{
	struct imap_view *v = &cmd->s->view;
	uint32_t *idx =
	    arena_alloc(&cmd->arena, (v->n_searchres ? v->n_searchres : 1) * sizeof(*idx));
	size_t n = 0;

	/* Both ascend by UID: one merge. */
	for (size_t i = 0, j = 0; i < v->n && j < v->n_searchres;) {
		uint32_t u = v->msgs[i].rec.uid;
		if (u < v->searchres[j])
			i++;
		else if (u > v->searchres[j])
			j++;
		else {
			idx[n++] = (uint32_t)i;
			i++;
			j++;
		}
	}
	*idx_r = idx;
	*n_r = n;
	return 0;
}
