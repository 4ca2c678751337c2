/*
 * Mailbox-level commands: SELECT, EXAMINE, CREATE, DELETE, RENAME,
 * SUBSCRIBE, UNSUBSCRIBE, STATUS (STATUS=SIZE), APPEND (MULTIAPPEND,
 * UIDPLUS), CHECK, CLOSE, UNSELECT, EXPUNGE / UID EXPUNGE. LIST and LSUB
 * are imap_list.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

/* ------------------------------------------------------------------ */
/* SELECT / EXAMINE                                                   */

static void
do_select(struct imap_cmd *cmd, bool readonly)
{
	struct imap_session *s = cmd->s;
	char *name;

	bool condstore = false, qresync = false;
	uint32_t q_uidvalidity = 0;
	uint64_t q_modseq = 0;
	struct seqset q_known = {0};
	bool have_known = false;
	if (cmd->p.n < 1 || cmd->p.n > 2 || (cmd->p.n == 2 && cmd->p.args[1].type != ARG_LIST)) {
		imap_bad(cmd, "Usage: %s mailbox [(CONDSTORE)]", cmd->p.name);
		return;
	}
	if (cmd->p.n == 2) {
		const struct imap_arg *l = &cmd->p.args[1];
		for (size_t i = 0; i < l->n; i++) {
			if (imap_arg_atom_eq(&l->list[i], "CONDSTORE")) {
				condstore = true;
				continue;
			}
			if (!imap_arg_atom_eq(&l->list[i], "QRESYNC") || i + 1 >= l->n ||
			    l->list[i + 1].type != ARG_LIST || qresync) {
				imap_bad(cmd, "Unknown %s parameter", cmd->p.name);
				return;
			}
			if (!s->qresync) {
				imap_bad(cmd, "QRESYNC is not enabled");
				return;
			}
			/* (uidvalidity modseq [known-uids [(seqs uids)]]) */
			const struct imap_arg *q = &l->list[++i];
			unsigned long long uv = 0, ms = 0;
			char *end = NULL;
			bool ok = q->n >= 2 && q->n <= 4 && q->list[0].type == ARG_ATOM &&
			          q->list[1].type == ARG_ATOM;
			if (ok) {
				uv = strtoull(q->list[0].str, &end, 10);
				ok = q->list[0].str[0] >= '1' && q->list[0].str[0] <= '9' &&
				     *end == '\0' && uv <= UINT32_MAX && q->list[0].len <= 10;
			}
			if (ok) {
				ms = strtoull(q->list[1].str, &end, 10);
				ok = q->list[1].str[0] >= '1' && q->list[1].str[0] <= '9' &&
				     *end == '\0' && q->list[1].len <= 19 &&
				     ms <= (unsigned long long)INT64_MAX;
			}
			if (ok && q->n >= 3) {
				ok = q->list[2].type == ARG_ATOM &&
				     seqset_parse(&cmd->arena, q->list[2].str, &q_known) == 0;
				have_known = ok;
				for (size_t k = 0; ok && k < q_known.n; k++)
					ok = q_known.r[k].lo != SEQ_STAR &&
					     q_known.r[k].hi != SEQ_STAR;
			}
			if (ok && q->n == 4) /* seq-match: a hint we do not need */
				ok = q->list[3].type == ARG_LIST && q->list[3].n == 2;
			if (!ok) {
				imap_bad(cmd, "Invalid QRESYNC parameter");
				return;
			}
			qresync = true;
			q_uidvalidity = (uint32_t)uv;
			q_modseq = ms;
		}
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0)
		return;
	if (s->state == IMAP_STATE_SELECTED) {
		view_close(s);
		imap_enter_state(s, IMAP_STATE_AUTH);
		imap_untagged(s, "OK [CLOSED] Previous mailbox closed");
	}
	if (condstore)
		s->condstore = true;
	int rc = view_open(s, name, readonly);
	if (rc < 0) {
		imap_reply_error(cmd, rc, "Mailbox does not exist");
		return;
	}
	struct imap_view *v = &s->view;
	size_t recent = 0;
	uint32_t first_unseen = 0;

	view_announce_flags(s);
	for (size_t i = 0; i < v->n; i++) {
		recent += v->msgs[i].recent;
		if (first_unseen == 0 && !(v->msgs[i].rec.flags & MSG_SEEN))
			first_unseen = (uint32_t)i + 1;
	}
	imap_untagged(s, "%zu EXISTS", v->n);
	if (s->rev2) {
		/* RFC 9051 6.3.2: no RECENT, no UNSEEN; the LIST line. */
		imap_rev2_select(s, v->name);
	} else {
		imap_untagged(s, "%zu RECENT", recent);
		if (first_unseen != 0)
			imap_untagged(s, "OK [UNSEEN %u] First unseen", first_unseen);
	}
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid", v->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID", v->uidnext);
	imap_untagged(s, "OK [URLMECH INTERNAL] URLAUTH mechanisms"); /* RFC 4467 4 */
	imap_untagged(s, "OK [MAILBOXID (%s)] Ok", v->mailboxid);
	if (s->condstore)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)v->modseq);
	if (qresync && q_uidvalidity == v->uidvalidity) {
		/* RFC 7162 3.2.5: what vanished and what changed since. */
		if (have_known)
			seqset_resolve(&q_known, v->uidnext);
		view_vanished_earlier(s, q_modseq, have_known ? &q_known : NULL);
		struct buf fb = BUF_INIT(0);
		for (size_t i = 0; i < v->n; i++) {
			const struct view_msg *m = &v->msgs[i];
			if (m->rec.modseq <= q_modseq || m->expunged)
				continue;
			if (have_known && !seqset_contains(&q_known, m->rec.uid))
				continue;
			buf_reset(&fb);
			view_format_flags(v, m, &fb);
			imap_untagged(s, "%zu FETCH (UID %u FLAGS %s MODSEQ (%llu))", i + 1,
			              m->rec.uid, buf_cstr(&fb), (unsigned long long)m->rec.modseq);
		}
		buf_free(&fb);
	}
	imap_enter_state(s, IMAP_STATE_SELECTED);
	imap_tagged(cmd, "OK", "[%s] %s completed", v->readonly ? "READ-ONLY" : "READ-WRITE",
	            cmd->p.name);
}

void
cmd_select(struct imap_cmd *cmd)
{
	do_select(cmd, false);
}

void
cmd_examine(struct imap_cmd *cmd)
{
	do_select(cmd, true);
}

/* ------------------------------------------------------------------ */
/* CREATE / DELETE / RENAME / SUBSCRIBE                               */

static bool
one_mailbox(struct imap_cmd *cmd, char **name_r)
{
	if (cmd->p.n != 1) {
		imap_bad(cmd, "Usage: %s mailbox", cmd->p.name);
		return false;
	}
	return imap_mailbox_arg(cmd, &cmd->p.args[0], name_r) == 0;
}

void
cmd_create(struct imap_cmd *cmd)
{
	char *name;
	unsigned special = 0;

	if (cmd->p.n == 2) { /* CREATE-SPECIAL-USE */
		if (imap_create_params(cmd, &cmd->p.args[1], &special) < 0)
			return;
		cmd->p.n = 1;
	}
	if (!one_mailbox(cmd, &name))
		return;
	size_t len = strlen(name);
	while (len > 1 && name[len - 1] == '/')
		name[--len] = '\0';
	if (strcmp(name, "INBOX") == 0) {
		imap_tagged(cmd, "NO", "[ALREADYEXISTS] INBOX always exists");
		return;
	}
	int rc = storage_create(cmd->s->sv->storage, cmd->s->user, name, special);
	if (rc < 0) {
		imap_reply_error(cmd, rc,
		                 rc == ROOST_EEXISTS ? "Mailbox already exists"
		                                     : "Invalid mailbox name");
		return;
	}
	imap_objectid_created(cmd, name);
}

void
cmd_delete(struct imap_cmd *cmd)
{
	char *name;
	struct imap_session *s = cmd->s;

	if (!one_mailbox(cmd, &name))
		return;
	if (strcmp(name, "INBOX") == 0) {
		imap_tagged(cmd, "NO", "[CANNOT] INBOX cannot be deleted");
		return;
	}
	if (s->state == IMAP_STATE_SELECTED && strcmp(s->view.name, name) == 0) {
		/* Deleting the selected mailbox: leave it first (Dovecot
		 * does the same) so the session never reads a dead one. */
		view_close(s);
		imap_enter_state(s, IMAP_STATE_AUTH);
		imap_untagged(s, "BYE Selected mailbox was deleted, have to disconnect");
		int rc = storage_delete(s->sv->storage, s->user, name);
		if (rc < 0)
			imap_reply_error(cmd, rc, NULL);
		else
			imap_tagged(cmd, "OK", "DELETE completed");
		conn_close(cmd->c);
		return;
	}
	int rc = storage_delete(s->sv->storage, s->user, name);
	if (rc < 0) {
		imap_reply_error(cmd, rc, "Mailbox does not exist");
		return;
	}
	imap_tagged(cmd, "OK", "DELETE completed");
}

void
cmd_rename(struct imap_cmd *cmd)
{
	char *from, *to;

	if (cmd->p.n != 2) {
		imap_bad(cmd, "Usage: RENAME from to");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &from) < 0 ||
	    imap_mailbox_arg(cmd, &cmd->p.args[1], &to) < 0)
		return;
	size_t len = strlen(to);
	while (len > 1 && to[len - 1] == '/')
		to[--len] = '\0';
	if (strcmp(to, "INBOX") == 0) {
		imap_tagged(cmd, "NO", "[ALREADYEXISTS] INBOX always exists");
		return;
	}
	int rc = storage_rename(cmd->s->sv->storage, cmd->s->user, from, to);
	if (rc < 0) {
		imap_reply_error(cmd, rc,
		                 rc == ROOST_EEXISTS ? "Target mailbox already exists"
		                                     : "Mailbox does not exist");
		return;
	}
	imap_tagged(cmd, "OK", "RENAME completed");
}

static void
do_subscribe(struct imap_cmd *cmd, bool on)
{
	char *name;

	if (!one_mailbox(cmd, &name))
		return;
	int rc = storage_subscribe(cmd->s->sv->storage, cmd->s->user, name, on);
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_tagged(cmd, "OK", "%s completed", cmd->p.name);
}

void
cmd_subscribe(struct imap_cmd *cmd)
{
	do_subscribe(cmd, true);
}

void
cmd_unsubscribe(struct imap_cmd *cmd)
{
	do_subscribe(cmd, false);
}

/* ------------------------------------------------------------------ */
/* STATUS                                                              */

enum {
	ST_MESSAGES = 1 << 0,
	ST_RECENT = 1 << 1,
	ST_UIDNEXT = 1 << 2,
	ST_UIDVALIDITY = 1 << 3,
	ST_UNSEEN = 1 << 4,
	ST_SIZE = 1 << 5,
	ST_HIGHESTMODSEQ = 1 << 6,
	ST_MAILBOXID = 1 << 7,
	ST_DELETED = 1 << 8,         /* RFC 9051 */
	ST_DELETED_STORAGE = 1 << 9, /* RFC 9208, with QUOTA=RES-STORAGE */
};

int
imap_status_parse_items(const struct imap_arg *l, unsigned *items_r)
{
	static const char *const names[] = {
	    "MESSAGES", "RECENT",        "UIDNEXT",   "UIDVALIDITY", "UNSEEN",
	    "SIZE",     "HIGHESTMODSEQ", "MAILBOXID", "DELETED",     "DELETED-STORAGE"};
	unsigned items = 0;

	if (l->type != ARG_LIST || l->n == 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < l->n; i++) {
		unsigned k;
		const unsigned n_names = sizeof(names) / sizeof(names[0]);
		for (k = 0; k < n_names; k++)
			if (imap_arg_atom_eq(&l->list[i], names[k]))
				break;
		if (k == n_names)
			return ROOST_EINVAL;
		items |= 1u << k;
	}
	*items_r = items;
	return 0;
}

int
imap_status_write(struct imap_session *s, const char *name, unsigned items)
{
	struct mailbox_status st;
	struct buf b = BUF_INIT(0);
	int rc = storage_status(s->sv->storage, s->user, name, &st);

	uint32_t deleted = 0;
	if (rc == 0 && (items & ST_DELETED))
		rc = imap_status_deleted(s, name, &deleted);
	if (rc < 0)
		return rc;
	if (items & ST_MESSAGES)
		buf_printf(&b, " MESSAGES %u", st.messages);
	if (items & ST_RECENT)
		buf_printf(&b, " RECENT %u", st.recent);
	if (items & ST_UIDNEXT)
		buf_printf(&b, " UIDNEXT %u", st.uidnext);
	if (items & ST_UIDVALIDITY)
		buf_printf(&b, " UIDVALIDITY %u", st.uidvalidity);
	if (items & ST_UNSEEN)
		buf_printf(&b, " UNSEEN %u", st.unseen);
	if (items & ST_SIZE)
		buf_printf(&b, " SIZE %llu", (unsigned long long)st.size);
	if (items & ST_HIGHESTMODSEQ) {
		buf_printf(&b, " HIGHESTMODSEQ %llu", (unsigned long long)st.highestmodseq);
		imap_condstore_enable(s); /* RFC 7162 3.1: an enabling command */
	}
	if (items & ST_MAILBOXID)
		buf_printf(&b, " MAILBOXID (%s)", st.mailboxid);
	if (items & ST_DELETED)
		buf_printf(&b, " DELETED %u", deleted);
	if (items & ST_DELETED_STORAGE) {
		uint64_t n = 0, bytes = 0;

		if ((rc = imap_quota_deleted(s, name, &n, &bytes)) < 0) {
			buf_free(&b);
			return rc;
		}
		buf_printf(&b, " DELETED-STORAGE %llu",
		           (unsigned long long)((bytes + 1023) / 1024));
	}
	conn_write_str(s->c, "* STATUS ");
	imap_write_mbox(s, name);
	conn_printf(s->c, " (%s)\r\n", b.len > 0 ? buf_cstr(&b) + 1 : "");
	buf_free(&b);
	return 0;
}

void
cmd_status(struct imap_cmd *cmd)
{
	char *name;
	unsigned items;

	if (cmd->p.n != 2 || imap_status_parse_items(&cmd->p.args[1], &items) < 0) {
		imap_bad(cmd, "Usage: STATUS mailbox (items)");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0)
		return;
	int rc = imap_status_write(cmd->s, name, items);
	if (rc < 0) {
		imap_reply_error(cmd, rc, "Mailbox does not exist");
		return;
	}
	imap_tagged(cmd, "OK", "STATUS completed");
}

/* ------------------------------------------------------------------ */
/* APPEND                                                              */

static void
append_rollback(struct imap_session *s, const char *name, const uint32_t *uids, size_t n)
{
	struct mailbox *mb;

	if (n == 0 || mailbox_open(s->sv->storage, s->user, name, 0, &mb) < 0)
		return;
	(void)mailbox_expunge(mb, uids, n);
	mailbox_close(&mb);
}

void
cmd_append(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n, i = 1;
	char *name;
	uint32_t *uids = NULL;
	size_t n_uids = 0;
	uint32_t uidvalidity = 0;

	if (n < 2) {
		imap_bad(cmd, "Usage: APPEND mailbox [(flags)] [date-time] literal");
		return;
	}
	if (imap_mailbox_arg(cmd, &a[0], &name) < 0)
		return;
	/* Check every message's syntax before storing any. */
	size_t n_msgs = 0;
	for (size_t k = 1; k < n;) {
		if (a[k].type == ARG_LIST)
			k++;
		if (k < n && a[k].type == ARG_QUOTED)
			k++;
		if (k < n && imap_arg_atom_eq(&a[k], "CATENATE")) {
			if (k + 1 >= n || !imap_catenate_syntax(&a[k + 1])) {
				imap_bad(cmd, "Usage: APPEND mailbox [(flags)] [date-time] "
				              "CATENATE (TEXT literal / URL url ...)");
				return;
			}
			k += 2;
			n_msgs++;
			continue;
		}
		const struct imap_arg *msg;
		int mrc = imap_append_message_arg(cmd, a, n, &k, &msg);
		if (mrc == ROOST_EPERM) {
			imap_bad(cmd, "UTF8 in APPEND needs ENABLE UTF8=ACCEPT");
			return;
		}
		if (mrc < 0) {
			imap_bad(cmd, "Usage: APPEND mailbox [(flags)] [date-time] literal");
			return;
		}
		n_msgs++;
	}
	for (size_t k = 1; k < n; k++) {
		uint32_t f;
		if (a[k].type == ARG_LIST && k > 0 && imap_arg_atom_eq(&a[k - 1], "UTF8"))
			continue; /* UTF8 (literal8), checked above */
		const char **kw;
		size_t nkw;
		int64_t t;
		if (imap_arg_atom_eq(&a[k], "CATENATE")) {
			k++; /* its part list is no flag list */
			continue;
		}
		if (a[k].type == ARG_LIST &&
		    imap_parse_flags(cmd, a[k].list, a[k].n, &f, &kw, &nkw) < 0) {
			imap_bad(cmd, "Invalid flags");
			return;
		}
		if (a[k].type == ARG_QUOTED && imap_parse_datetime(a[k].str, &t) < 0) {
			imap_bad(cmd, "Invalid date-time");
			return;
		}
	}
	uids = arena_alloc(&cmd->arena, n_msgs * sizeof(*uids));
	while (i < n) {
		struct msg_input in;
		memset(&in, 0, sizeof(in));
		in.fd = -1;
		if (a[i].type == ARG_LIST) {
			int rc = imap_parse_flags(cmd, a[i].list, a[i].n, &in.flags,
			                          (const char ***)&in.keywords, &in.n_keywords);
			if (rc < 0) {
				imap_bad(cmd, "Invalid flags");
				return;
			}
			i++;
		}
		if (a[i].type == ARG_QUOTED) {
			if (imap_parse_datetime(a[i].str, &in.internal_date) < 0) {
				imap_bad(cmd, "Invalid date-time");
				return;
			}
			in.has_internal_date = true;
			i++;
		}
		/* CATENATE (RFC 4469): the message built from its parts */
		struct imap_catenate cat = {.fd = -1};
		if (imap_arg_atom_eq(&a[i], "CATENATE")) {
			if (imap_catenate_build(cmd, &a[i + 1], &cat) < 0) {
				append_rollback(s, name, uids, n_uids);
				imap_tagged(cmd, "NO", "%s", buf_cstr(&cat.reply));
				imap_catenate_free(&cat);
				return;
			}
			imap_catenate_input(&cat, &in);
			i += 2;
		} else {
			const struct imap_arg *msg;
			(void)imap_append_message_arg(cmd, a, n, &i, &msg); /* checked above */
			in.data = msg->raw;
			in.fd = msg->fd;
			in.len = msg->len;
		}
		if (in.len == 0) {
			imap_catenate_free(&cat);
			append_rollback(s, name, uids, n_uids);
			imap_tagged(cmd, "NO", "Cannot append an empty message");
			return;
		}
		if (in.len > s->sv->cfg->imap_max_literal) {
			imap_catenate_free(&cat);
			append_rollback(s, name, uids, n_uids);
			imap_tagged(cmd, "NO", "[TOOBIG] Message too big");
			return;
		}
		uint32_t uv, uid;
		int rc = storage_append(s->sv->storage, s->user, name, &in, &uv, &uid);
		imap_catenate_free(&cat);
		if (rc < 0) {
			/* MULTIAPPEND is all or nothing (RFC 3502). */
			append_rollback(s, name, uids, n_uids);
			if (rc == ROOST_ENOTFOUND)
				imap_tagged(cmd, "NO", "[TRYCREATE] Mailbox does not exist");
			else
				imap_reply_error(cmd, rc, NULL);
			return;
		}
		if (n_uids > 0 && uv != uidvalidity)
			n_uids = 0; /* UIDVALIDITY changed midway: report the last */
		uidvalidity = uv;
		uids[n_uids++] = uid;
	}
	struct buf b = BUF_INIT(0);
	seqset_format(uids, n_uids, &b);
	imap_tagged(cmd, "OK", "[APPENDUID %u %s] APPEND completed", uidvalidity, buf_cstr(&b));
	buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* CHECK / CLOSE / UNSELECT / EXPUNGE                                 */

void
cmd_check(struct imap_cmd *cmd)
{
	cmd_noop(cmd);
}

static int
expunge_deleted(struct imap_session *s, const uint32_t *only_idx, size_t n_only)
{
	struct imap_view *v = &s->view;
	uint32_t *uids = xcalloc(v->n ? v->n : 1, sizeof(*uids));
	size_t n = 0;
	int rc = 0;

	if (only_idx != NULL) {
		for (size_t i = 0; i < n_only; i++) {
			const struct view_msg *m = &v->msgs[only_idx[i]];
			if ((m->rec.flags & MSG_DELETED) && !m->expunged)
				uids[n++] = m->rec.uid;
		}
	} else {
		for (size_t i = 0; i < v->n; i++)
			if ((v->msgs[i].rec.flags & MSG_DELETED) && !v->msgs[i].expunged)
				uids[n++] = v->msgs[i].rec.uid;
	}
	if (n > 0)
		rc = mailbox_expunge(v->mb, uids, n);
	free(uids);
	return rc;
}

void
cmd_close(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;

	if (!s->view.readonly) {
		/* Fresh flags first: another session may have set \Deleted. */
		struct msg_record *recs = NULL;
		size_t n = 0;
		uint64_t ms;
		if (mailbox_records(s->view.mb, &recs, &n, &ms) == 0) {
			uint32_t *uids = xcalloc(n ? n : 1, sizeof(*uids));
			size_t k = 0;
			for (size_t i = 0; i < n; i++)
				if (recs[i].flags & MSG_DELETED)
					uids[k++] = recs[i].uid;
			if (k > 0)
				(void)mailbox_expunge(s->view.mb, uids, k);
			free(uids);
			free(recs);
		}
	}
	view_close(s);
	imap_enter_state(s, IMAP_STATE_AUTH);
	imap_tagged(cmd, "OK", "CLOSE completed");
}

void
cmd_unselect(struct imap_cmd *cmd)
{
	view_close(cmd->s);
	imap_enter_state(cmd->s, IMAP_STATE_AUTH);
	imap_tagged(cmd, "OK", "UNSELECT completed");
}

void
cmd_expunge(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	uint32_t *idx = NULL;
	size_t n_idx = 0;
	int rc;

	if (cmd->uid ? cmd->p.n != 1 || cmd->p.args[0].type != ARG_ATOM : cmd->p.n != 0) {
		imap_bad(cmd,
		         cmd->uid ? "Usage: UID EXPUNGE uid-set" : "EXPUNGE takes no arguments");
		return;
	}
	if (s->view.readonly) {
		imap_tagged(cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	view_sync(s, true);
	if (cmd->uid) {
		rc = view_resolve_set(cmd, cmd->p.args[0].str, true, &idx, &n_idx);
		if (rc < 0) {
			imap_bad(cmd, "Invalid UID set");
			return;
		}
		rc = expunge_deleted(s, idx, n_idx);
	} else {
		rc = expunge_deleted(s, NULL, 0);
	}
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_tagged(cmd, "OK", "EXPUNGE completed");
}
