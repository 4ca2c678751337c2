/*
 * LIST (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, CHILDREN) and LSUB.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

enum {
	SEL_SUBSCRIBED = 1 << 0,
	SEL_RECURSIVE = 1 << 1,
	SEL_SPECIAL = 1 << 2,
	RET_SUBSCRIBED = 1 << 3,
	RET_CHILDREN = 1 << 4,
	RET_SPECIAL = 1 << 5,
	RET_STATUS = 1 << 6,
	RET_MYRIGHTS = 1 << 7, /* RFC 8440 */
};

/* "(\Attr ...)" of a mailbox's MBOX_* attributes; \Noselect is left out
 * beside \NonExistent, which implies it (RFC 5258). */
void
imap_format_mbox_attrs(unsigned attrs, struct buf *b)
{
	static const struct {
		unsigned bit;
		const char *name;
	} map[] = {
	    {MBOX_NOSELECT, "\\Noselect"},
	    {MBOX_NONEXISTENT, "\\NonExistent"},
	    {MBOX_HASCHILDREN, "\\HasChildren"},
	    {MBOX_HASNOCHILDREN, "\\HasNoChildren"},
	    {MBOX_SUBSCRIBED, "\\Subscribed"},
	    {MBOX_DRAFTS, "\\Drafts"},
	    {MBOX_SENT, "\\Sent"},
	    {MBOX_TRASH, "\\Trash"},
	    {MBOX_JUNK, "\\Junk"},
	    {MBOX_ARCHIVE, "\\Archive"},
	};
	bool first = true;

	if (attrs & MBOX_NONEXISTENT)
		attrs &= ~(unsigned)MBOX_NOSELECT;
	buf_append_byte(b, '(');
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (!(attrs & map[i].bit))
			continue;
		if (!first)
			buf_append_byte(b, ' ');
		buf_append_str(b, map[i].name);
		first = false;
	}
	buf_append_byte(b, ')');
}

/* The attributes LIST or LSUB shows for a mailbox under opts. */
static void
attr_string(unsigned attrs, unsigned opts, bool lsub, struct buf *b)
{
	if (attrs & MBOX_NONEXISTENT)
		attrs |= MBOX_NOSELECT;
	if (!(opts & (SEL_SUBSCRIBED | RET_SUBSCRIBED)) || lsub)
		attrs &= ~MBOX_SUBSCRIBED;
	if (lsub)
		attrs &= ~(MBOX_NONEXISTENT | MBOX_SPECIAL_USE_MASK);
	imap_format_mbox_attrs(attrs, b);
}

/* LIST/LSUB between steps (in the command's arena). */
struct list_state {
	struct mailbox_info *list; /* NULL once freed */
	size_t n_list, next;       /* the next mailbox to look at */
	char **dpats;
	struct imap_match **mpats;
	size_t n_pats;
	unsigned opts, status_items;
	bool lsub;
};

static imap_step_fn list_step;

static int
info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mailbox_info *)a)->name,
	              ((const struct mailbox_info *)b)->name);
}

/* Other users' mailboxes the user may see (storage_acl.c), merged into the
 * user's own list: a subscription to one of them (kept in the user's list
 * as absent) takes the shared entry's attributes. */
void
imap_list_add_shared(struct imap_session *s, struct mailbox_info **list, size_t *n)
{
	struct mailbox_info *sh = NULL;
	size_t n_sh = 0, m = *n;

	if (storage_acl_shared_list(s->sv->storage, s->user, &sh, &n_sh) != 0 || n_sh == 0) {
		storage_list_free(sh, n_sh);
		return;
	}
	*list = xreallocarray(*list, *n + n_sh + 1, sizeof(**list));
	for (size_t i = 0; i < n_sh; i++) {
		struct mailbox_info key = {sh[i].name, 0};
		struct mailbox_info *own =
		    m > 0 ? bsearch(&key, *list, m, sizeof(**list), info_cmp) : NULL;

		if (own != NULL) {
			own->attrs = sh[i].attrs | (own->attrs & MBOX_SUBSCRIBED);
			free(sh[i].name);
			continue;
		}
		(*list)[(*n)++] = sh[i];
	}
	free(sh);
	if (*n > 1)
		qsort(*list, *n, sizeof(**list), info_cmp);
}

static void
list_state_free(struct imap_cmd *cmd)
{
	struct list_state *st = cmd->state;

	if (st != NULL && st->list != NULL)
		storage_list_free(st->list, st->n_list);
	cmd->state = NULL;
}

static void
do_list(struct imap_cmd *cmd, bool lsub)
{
	struct imap_session *s = cmd->s;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n, i = 0;
	unsigned opts = 0, status_items = 0;
	const char *ref;
	const struct imap_arg *pats;
	size_t n_pats;

	if (!lsub && i < n && a[i].type == ARG_LIST) {
		for (size_t k = 0; k < a[i].n; k++) {
			const struct imap_arg *o = &a[i].list[k];
			if (imap_arg_atom_eq(o, "SUBSCRIBED"))
				opts |= SEL_SUBSCRIBED;
			else if (imap_arg_atom_eq(o, "RECURSIVEMATCH"))
				opts |= SEL_RECURSIVE;
			else if (imap_arg_atom_eq(o, "SPECIAL-USE"))
				opts |= SEL_SPECIAL;
			else if (imap_arg_atom_eq(o, "REMOTE"))
				;
			else {
				imap_bad(cmd, "Unknown LIST selection option");
				return;
			}
		}
		if ((opts & SEL_RECURSIVE) && !(opts & (SEL_SUBSCRIBED))) {
			imap_bad(cmd, "RECURSIVEMATCH needs another selection option");
			return;
		}
		i++;
	}
	if (n - i < 2 || !imap_arg_is_string(&a[i])) {
		imap_bad(cmd, "Usage: %s reference pattern", cmd->p.name);
		return;
	}
	ref = a[i].str;
	if (a[i + 1].type == ARG_LIST && !lsub) {
		pats = a[i + 1].list;
		n_pats = a[i + 1].n;
		if (n_pats == 0) {
			imap_bad(cmd, "Empty pattern list");
			return;
		}
	} else {
		pats = &a[i + 1];
		n_pats = 1;
	}
	for (size_t k = 0; k < n_pats; k++) {
		if (!imap_arg_is_string(&pats[k])) {
			imap_bad(cmd, "Invalid pattern");
			return;
		}
	}
	i += 2;
	if (i < n) {
		if (lsub || n - i != 2 || !imap_arg_atom_eq(&a[i], "RETURN") ||
		    a[i + 1].type != ARG_LIST) {
			imap_bad(cmd, "Invalid LIST arguments");
			return;
		}
		const struct imap_arg *r = &a[i + 1];
		for (size_t k = 0; k < r->n; k++) {
			const struct imap_arg *o = &r->list[k];
			if (imap_arg_atom_eq(o, "SUBSCRIBED"))
				opts |= RET_SUBSCRIBED;
			else if (imap_arg_atom_eq(o, "CHILDREN"))
				opts |= RET_CHILDREN;
			else if (imap_arg_atom_eq(o, "SPECIAL-USE"))
				opts |= RET_SPECIAL;
			else if (imap_arg_atom_eq(o, "MYRIGHTS"))
				opts |= RET_MYRIGHTS;
			else if (imap_arg_atom_eq(o, "STATUS") && k + 1 < r->n &&
			         imap_status_parse_items(&r->list[k + 1], &status_items) == 0) {
				opts |= RET_STATUS;
				k++;
			} else {
				imap_bad(cmd, "Unknown LIST return option");
				return;
			}
		}
	}

	/* LIST "" "": the hierarchy delimiter. */
	if (n_pats == 1 && pats[0].len == 0 && !lsub) {
		imap_untagged(s, "LIST (\\Noselect) \"/\" \"\"");
		imap_tagged(cmd, "OK", "LIST completed");
		return;
	}

	/* Patterns are bounded (each and in all) so that matching every
	 * mailbox stays cheap: see imap_match.c. */
	char **dpats = arena_alloc(&cmd->arena, n_pats * sizeof(char *));
	struct imap_match **mpats = arena_alloc(&cmd->arena, n_pats * sizeof(*mpats));
	size_t pat_total = 0;
	for (size_t k = 0; k < n_pats; k++) {
		struct buf pb = BUF_INIT(0), db = BUF_INIT(0);
		buf_append_str(&pb, ref);
		if (pats[k].len > 0 && pats[k].str[0] == '/' && pb.len > 0 &&
		    pb.data[pb.len - 1] == '/')
			buf_truncate(&pb, pb.len - 1);
		buf_append(&pb, pats[k].str, pats[k].len);
		if (imap_name_decode(s, buf_cstr(&pb), pb.len, &db) < 0) {
			buf_reset(&db);
			buf_append(&db, pb.data, pb.len);
		}
		pat_total += db.len;
		int crc = pat_total > IMAP_MAX_PATTERNS_TOTAL
		              ? ROOST_ETOOBIG
		              : imap_match_compile(&cmd->arena, buf_cstr(&db), db.len, &mpats[k]);
		dpats[k] = crc < 0 ? NULL : arena_strndup(&cmd->arena, buf_cstr(&db), db.len);
		buf_free(&pb);
		buf_free(&db);
		if (crc < 0) {
			imap_tagged(cmd, "NO",
			            "[LIMIT] Pattern too long (at most %d bytes, "
			            "%d for all patterns)",
			            IMAP_MAX_PATTERN, IMAP_MAX_PATTERNS_TOTAL);
			return;
		}
	}

	struct mailbox_info *list = NULL;
	size_t n_list = 0;
	int rc = storage_list(s->sv->storage, s->user, &list, &n_list);
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_list_add_shared(s, &list, &n_list);

	struct list_state *st = arena_alloc(&cmd->arena, sizeof(*st));
	st->list = list;
	st->n_list = n_list;
	st->dpats = dpats;
	st->mpats = mpats;
	st->n_pats = n_pats;
	st->opts = opts;
	st->status_items = status_items;
	st->lsub = lsub;
	cmd->state = st;
	cmd->state_free = list_state_free;
	list_step(cmd);
}

/* Write the matching mailboxes from st->next on, yielding when the output
 * is full; the tagged reply after the last. */
static void
list_step(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct list_state *st = cmd->state;
	const struct mailbox_info *list = st->list;
	size_t n_list = st->n_list, n_pats = st->n_pats;
	char **dpats = st->dpats;
	struct imap_match **mpats = st->mpats;
	unsigned opts = st->opts, status_items = st->status_items;
	bool lsub = st->lsub;

	for (; st->next < n_list; st->next++) {
		const struct mailbox_info *mi = &list[st->next];
		unsigned attrs = mi->attrs;
		bool match = false, child_info = false;

		for (size_t k = 0; k < n_pats && !match; k++)
			match = imap_match(mpats[k], mi->name);
		bool subscribed_sel = lsub || (opts & SEL_SUBSCRIBED);
		if (subscribed_sel && !(attrs & MBOX_SUBSCRIBED)) {
			/* A parent of subscribed children: LSUB "%" lists it
			 * \Noselect; RECURSIVEMATCH gives CHILDINFO. */
			if (!match)
				continue;
			size_t nl = strlen(mi->name);
			bool has_sub_child = false;
			for (size_t q = 0; q < n_list; q++)
				if ((list[q].attrs & MBOX_SUBSCRIBED) &&
				    strncmp(list[q].name, mi->name, nl) == 0 &&
				    list[q].name[nl] == '/')
					has_sub_child = true;
			if (!has_sub_child)
				continue;
			if (lsub) {
				bool pct = false;
				for (size_t k = 0; k < n_pats; k++)
					pct |= strchr(dpats[k], '%') != NULL;
				if (!pct)
					continue;
				attrs |= MBOX_NOSELECT;
			} else if (opts & SEL_RECURSIVE) {
				child_info = true;
				attrs &= ~MBOX_SUBSCRIBED;
			} else {
				continue;
			}
		}
		if (!match)
			continue;
		if (!subscribed_sel && (attrs & MBOX_NONEXISTENT))
			continue;
		if ((opts & SEL_SPECIAL) && !(attrs & MBOX_SPECIAL_USE_MASK))
			continue;
		if (conn_output_full(s->c)) {
			/* Many mailboxes: go on once the client has read. */
			imap_yield(cmd, list_step);
			return;
		}
		struct buf b = BUF_INIT(0);
		attr_string(attrs, opts, lsub, &b);
		conn_printf(s->c, "* %s %s \"/\" ", lsub ? "LSUB" : "LIST", buf_cstr(&b));
		buf_free(&b);
		imap_write_mbox(s, mi->name);
		if (child_info)
			conn_write_str(s->c, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
		conn_write_str(s->c, "\r\n");
		if ((opts & RET_STATUS) && !(attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)))
			imap_status_write(s, mi->name, status_items);
		if ((opts & RET_MYRIGHTS) && !(attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)))
			imap_myrights_write(s, mi->name);
	}
	storage_list_free(st->list, st->n_list);
	st->list = NULL;
	imap_tagged(cmd, "OK", "%s completed", cmd->p.name);
}

void
cmd_list(struct imap_cmd *cmd)
{
	do_list(cmd, false);
}

void
cmd_lsub(struct imap_cmd *cmd)
{
	do_list(cmd, true);
}
