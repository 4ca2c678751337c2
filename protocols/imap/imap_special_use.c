/*
 * CREATE-SPECIAL-USE (RFC 6154 3): CREATE name (USE (\Drafts ...)) gives the
 * new mailbox its special-use attributes; the storage keeps them with the
 * mailbox (storage_create()) and LIST shows them.
 */
#include "roost/error.h"
#include "roost/storage.h"

#include "imap_impl.h"

int
imap_create_params(struct imap_cmd *cmd, const struct imap_arg *l, unsigned *special_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} uses[] = {
	    {"\\Drafts", MBOX_DRAFTS}, {"\\Sent", MBOX_SENT},       {"\\Trash", MBOX_TRASH},
	    {"\\Junk", MBOX_JUNK},     {"\\Archive", MBOX_ARCHIVE},
	};
	unsigned special = 0;

	/* create-param: name [SP value], in a list; USE is the one we know
	 * (RFC 4466 says an unknown one is an error). */
	if (l->type != ARG_LIST || l->n != 2 || !imap_arg_atom_eq(&l->list[0], "USE") ||
	    l->list[1].type != ARG_LIST) {
		imap_bad(cmd, "Usage: CREATE mailbox [(USE (attributes))]");
		return ROOST_EINVAL;
	}
	for (size_t i = 0; i < l->list[1].n; i++) {
		const struct imap_arg *a = &l->list[1].list[i];
		size_t k;

		if (a->type != ARG_ATOM) {
			imap_bad(cmd, "Invalid special-use attribute");
			return ROOST_EINVAL;
		}
		for (k = 0; k < sizeof(uses) / sizeof(uses[0]); k++)
			if (imap_arg_atom_eq(a, uses[k].name))
				break;
		if (k == sizeof(uses) / sizeof(uses[0])) {
			/* \All and \Flagged are virtual mailboxes, which the
			 * storage has not; anything else is unknown. */
			imap_tagged(cmd, "NO", "[USEATTR] Unsupported special-use attribute");
			return ROOST_ENOTSUP;
		}
		special |= uses[k].bit;
	}
	*special_r = special;
	return 0;
}
