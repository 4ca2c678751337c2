/*
 * STORE and UID STORE: flags and keywords, with CONDSTORE's
 * UNCHANGEDSINCE.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/storage.h"
#include "roost/uid.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

/* STORE between steps (in the command's arena). */
struct store_state {
	uint32_t *idx;  /* view indexes of the set, ascending */
	size_t n, next; /* how many, the next to report */
	uint32_t *mod;  /* UIDs UNCHANGEDSINCE refused (heap), ascending */
	size_t n_mod;
	struct mailbox_changes ch; /* the new MODSEQs (have_ch) */
	bool have_ch;
	enum store_mode mode;
	uint32_t flags;
	uint64_t kwbits;
	bool silent, gone, conditional;
	uint32_t *mod_ids; /* what [MODIFIED] lists */
	size_t n_mod_ids;
};

static void
store_state_free(struct imap_cmd *cmd)
{
	struct store_state *st = cmd->state;

	if (st == NULL)
		return;
	if (st->have_ch)
		mailbox_changes_free(&st->ch);
	free(st->mod);
	cmd->state = NULL;
}

/* The record of uid in recs[0..n) (ascending UIDs), or NULL. */
static const struct msg_record *
find_record(const struct msg_record *recs, size_t n, uint32_t uid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (recs[mid].uid == uid)
			return &recs[mid];
		if (recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static imap_step_fn store_step;

void
cmd_store(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct imap_arg *a = cmd->p.args;
	struct store_req sr = {0};
	const char **kw;
	size_t n_kw;
	uint32_t flags;
	uint32_t *idx;
	size_t n;
	bool silent = false;
	int rc;

	bool conditional = false;
	const char *set_text = cmd->p.n > 0 && a[0].type == ARG_ATOM ? a[0].str : NULL;
	size_t nargs = cmd->p.n;
	if (nargs >= 4 && a[1].type == ARG_LIST) {
		/* RFC 7162 3.1.3: STORE set (UNCHANGEDSINCE modseq) ... */
		if (a[1].n != 2 || !imap_arg_atom_eq(&a[1].list[0], "UNCHANGEDSINCE") ||
		    imap_parse_modseq(&a[1].list[1], true, &sr.unchanged_since) < 0) {
			imap_bad(cmd, "Invalid STORE modifier");
			return;
		}
		conditional = true;
		imap_condstore_enable(s); /* RFC 7162 3.1 */
		a++;
		nargs--;
	}
	if (nargs < 3 || set_text == NULL || a[1].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: STORE sequence-set [+-]FLAGS[.SILENT] (flags)");
		return;
	}
	const char *op = a[1].str;
	if (*op == '+') {
		sr.mode = STORE_ADD;
		op++;
	} else if (*op == '-') {
		sr.mode = STORE_REMOVE;
		op++;
	} else {
		sr.mode = STORE_REPLACE;
	}
	if (strcasecmp(op, "FLAGS.SILENT") == 0)
		silent = true;
	else if (strcasecmp(op, "FLAGS") != 0) {
		imap_bad(cmd, "Invalid STORE item");
		return;
	}
	if (nargs == 3 && a[2].type == ARG_LIST)
		rc = imap_parse_flags(cmd, a[2].list, a[2].n, &flags, &kw, &n_kw);
	else
		rc = imap_parse_flags(cmd, &a[2], nargs - 2, &flags, &kw, &n_kw);
	if (rc == ROOST_EPERM) {
		imap_bad(cmd, "\\Recent cannot be stored");
		return;
	}
	if (rc < 0) {
		imap_bad(cmd, "Invalid flags");
		return;
	}
	rc = view_resolve_set(cmd, set_text, cmd->uid, &idx, &n);
	if (rc < 0) {
		imap_bad(cmd, "Invalid message sequence set");
		return;
	}
	if (v->readonly) {
		imap_tagged(cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	uint32_t *uids = arena_alloc(&cmd->arena, (n ? n : 1) * sizeof(*uids));
	size_t k = 0;
	bool gone = false;
	for (size_t i = 0; i < n; i++) {
		if (v->msgs[idx[i]].expunged)
			gone = true;
		else
			uids[k++] = v->msgs[idx[i]].rec.uid;
	}
	/* another's mailbox: storage leaves out what the rights do not allow
	 * (RFC 4314 4), and so must the view (a replace needs every right) */
	unsigned rights = mailbox_rights(v->mb);
	if (sr.mode != STORE_REPLACE && rights != ACL_RIGHTS_ALL) {
		uint32_t allowed =
		    ((rights & ACL_SEEN) != 0 ? MSG_SEEN : 0) |
		    ((rights & ACL_DELETED) != 0 ? MSG_DELETED : 0) |
		    ((rights & ACL_WRITE) != 0 ? MSG_ANSWERED | MSG_FLAGGED | MSG_DRAFT : 0);
		if ((flags & allowed) != 0 || ((rights & ACL_WRITE) != 0 && n_kw > 0)) {
			flags &= allowed;
			if ((rights & ACL_WRITE) == 0)
				n_kw = 0;
		}
	}
	sr.flags = flags;
	sr.keywords = kw;
	sr.n_keywords = n_kw;
	uint32_t *mod = NULL;
	size_t n_mod = 0;
	uint64_t before = v->modseq;
	if (k > 0 && conditional && sr.unchanged_since == 0) {
		/* Every message has a MODSEQ above 0: all fail (RFC 7162). */
		mod = xcalloc(k, sizeof(*mod));
		memcpy(mod, uids, k * sizeof(*mod));
		n_mod = k;
	} else if (k > 0) {
		rc = mailbox_store(v->mb, uids, k, &sr, &mod, &n_mod);
		if (rc == ROOST_ETOOBIG) {
			/* the mailbox's keyword table is full, or a reader's
			 * \Seen of a shared mailbox passed its bound
			 * (storage_seen.c): either way nothing was stored
			 * (RFC 5530 LIMIT: a limit of this server) */
			free(mod);
			imap_tagged(cmd, "NO",
			            "[LIMIT] Too many keywords, or too many separate runs of "
			            "\\Seen messages of this user in a shared mailbox; nothing "
			            "stored");
			return;
		}
		if (rc < 0) {
			free(mod);
			imap_reply_error(cmd, rc, NULL);
			return;
		}
	}
	/* New MODSEQs of what we changed (CONDSTORE). */
	struct mailbox_changes ch = {0};
	bool have_ch = s->condstore && k > n_mod && mailbox_changes_since(v->mb, before, &ch) == 0;
	/* Apply the change to the view the way storage did, so the sync
	 * that follows reports only what others changed. */
	view_refresh_keywords(s, true);
	uint64_t kwbits = 0;
	for (size_t i = 0; i < n_kw; i++)
		for (size_t j = 0; j < v->n_keywords && j < 64; j++)
			if (strcasecmp(v->keywords[j], kw[i]) == 0)
				kwbits |= (uint64_t)1 << j;
	struct store_state *st = arena_alloc(&cmd->arena, sizeof(*st));
	st->idx = idx;
	st->n = n;
	st->mod = mod;
	st->n_mod = n_mod;
	st->ch = ch;
	st->have_ch = have_ch;
	st->mode = sr.mode;
	st->flags = flags;
	st->kwbits = kwbits;
	st->silent = silent;
	st->gone = gone;
	st->conditional = conditional;
	st->mod_ids = arena_alloc(&cmd->arena, (n_mod ? n_mod : 1) * sizeof(*st->mod_ids));
	cmd->state = st;
	cmd->state_free = store_state_free;
	store_step(cmd);
}

/* The untagged FETCH of each stored message, yielding when the output is
 * full (STORE 1:* on a large mailbox); the tagged reply after the last. */
static void
store_step(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	struct store_state *st = cmd->state;
	const uint32_t *idx = st->idx;
	struct buf b = BUF_INIT(0);
	struct buf modified = BUF_INIT(0);

	for (; st->next < st->n; st->next++) {
		size_t i = st->next;
		struct view_msg *m = &v->msgs[idx[i]];
		if (m->expunged)
			continue;
		if (st->n_mod > 0 && uid_find(st->mod, st->n_mod, m->rec.uid)) {
			st->mod_ids[st->n_mod_ids++] = cmd->uid ? m->rec.uid : idx[i] + 1;
			continue;
		}
		if (conn_output_full(cmd->c)) {
			buf_free(&b);
			imap_yield(cmd, store_step);
			return;
		}
		if (st->have_ch) {
			const struct msg_record *r =
			    find_record(st->ch.changed, st->ch.n_changed, m->rec.uid);
			if (r != NULL)
				m->rec.modseq = r->modseq;
		}
		switch (st->mode) {
		case STORE_ADD:
			m->rec.flags |= st->flags;
			m->rec.keywords |= st->kwbits;
			break;
		case STORE_REMOVE:
			m->rec.flags &= ~st->flags;
			m->rec.keywords &= ~st->kwbits;
			break;
		case STORE_REPLACE:
			m->rec.flags = st->flags;
			m->rec.keywords = st->kwbits;
			break;
		}
		if (s->condstore) {
			buf_reset(&b);
			if (!st->silent) {
				buf_append_str(&b, " FLAGS ");
				view_format_flags(v, m, &b);
			}
			if (cmd->uid)
				imap_untagged(s, "%u FETCH (UID %u%s MODSEQ (%llu))", idx[i] + 1,
				              m->rec.uid, buf_cstr(&b),
				              (unsigned long long)m->rec.modseq);
			else
				imap_untagged(s, "%u FETCH (%s%sMODSEQ (%llu))", idx[i] + 1,
				              b.len > 0 ? buf_cstr(&b) + 1 : "",
				              b.len > 0 ? " " : "",
				              (unsigned long long)m->rec.modseq);
		} else if (!st->silent) {
			buf_reset(&b);
			view_format_flags(v, m, &b);
			if (cmd->uid)
				imap_untagged(s, "%u FETCH (UID %u FLAGS %s)", idx[i] + 1,
				              m->rec.uid, buf_cstr(&b));
			else
				imap_untagged(s, "%u FETCH (FLAGS %s)", idx[i] + 1, buf_cstr(&b));
		}
	}
	buf_free(&b);
	if (st->n_mod_ids > 0) {
		uid_sort(st->mod_ids, st->n_mod_ids);
		seqset_format(st->mod_ids, st->n_mod_ids, &modified);
	}
	if (st->gone)
		imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Some messages were expunged");
	else if (modified.len > 0)
		imap_tagged(cmd, "OK", "[MODIFIED %s] Conditional STORE failed for some",
		            buf_cstr(&modified));
	else
		imap_tagged(cmd, "OK", "%sSTORE completed", st->conditional ? "Conditional " : "");
	buf_free(&modified);
}
