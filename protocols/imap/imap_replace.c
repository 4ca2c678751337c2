/*
 * REPLACE and UID REPLACE (RFC 8508): APPEND a new version of a message to
 * a mailbox and expunge the old one from the selected mailbox, as one
 * command (a draft saved again).
 *
 * Atomicity: the storage has no transaction across two mailboxes (or two
 * backend calls), so the order gives the safe failure: the new message is
 * appended first (on stable storage once storage_append() returns), and
 * only then is the old one expunged. If the expunge fails, the new message
 * is expunged again and the command answers NO, leaving the mailbox as it
 * was. A crash between the two steps leaves both versions, never neither.
 */
#include <stdlib.h>
#include <string.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "imap_impl.h"

static void
undo_append(struct imap_session *s, const char *name, uint32_t uid)
{
	struct mailbox *mb;

	if (mailbox_open(s->sv->storage, s->user, name, 0, &mb) < 0)
		return;
	(void)mailbox_expunge(mb, &uid, 1);
	mailbox_close(&mb);
}

void
cmd_replace(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	const struct imap_arg *a = cmd->p.args;
	size_t n = cmd->p.n, k = 2;
	const struct imap_arg *lit;
	struct msg_input in;
	uint32_t *idx, uv, uid, old_uid;
	size_t n_idx;
	char *name;
	int rc;

	memset(&in, 0, sizeof(in));
	in.fd = -1;
	/* seq-number, not a set: one message is replaced */
	if (n < 3 || a[0].type != ARG_ATOM || strpbrk(a[0].str, ",:") != NULL) {
		imap_bad(cmd, "Usage: REPLACE number mailbox [(flags)] [date-time] literal");
		return;
	}
	if (imap_mailbox_arg(cmd, &a[1], &name) < 0)
		return;
	if (k < n && a[k].type == ARG_LIST) {
		if (imap_parse_flags(cmd, a[k].list, a[k].n, &in.flags,
		                     (const char ***)&in.keywords, &in.n_keywords) < 0) {
			imap_bad(cmd, "Invalid flags");
			return;
		}
		k++;
	}
	if (k < n && a[k].type == ARG_QUOTED) {
		if (imap_parse_datetime(a[k].str, &in.internal_date) < 0) {
			imap_bad(cmd, "Invalid date-time");
			return;
		}
		in.has_internal_date = true;
		k++;
	}
	rc = imap_append_message_arg(cmd, a, n, &k, &lit);
	if (rc == ROOST_EPERM) {
		imap_bad(cmd, "UTF8 needs ENABLE UTF8=ACCEPT");
		return;
	}
	if (rc < 0 || k != n) {
		imap_bad(cmd, "Usage: REPLACE number mailbox [(flags)] [date-time] literal");
		return;
	}
	in.data = lit->raw;
	in.fd = lit->fd;
	in.len = lit->len;
	if (view_resolve_set(cmd, a[0].str, cmd->uid, &idx, &n_idx) < 0) {
		imap_bad(cmd, "Invalid message number");
		return;
	}
	if (n_idx != 1) {
		/* RFC 8508 3.3: a UID that is not there is NO; a sequence
		 * number past the end was BAD above. */
		imap_tagged(cmd, "NO", "[NONEXISTENT] No such message");
		return;
	}
	if (v->msgs[idx[0]].expunged) {
		imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Message was expunged");
		return;
	}
	if (v->readonly) {
		imap_tagged(cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	if (in.len == 0) {
		imap_tagged(cmd, "NO", "Cannot append an empty message");
		return;
	}
	if (in.len > s->sv->cfg->imap_max_literal) {
		imap_tagged(cmd, "NO", "[TOOBIG] Message too big");
		return;
	}
	old_uid = v->msgs[idx[0]].rec.uid;
	rc = storage_append(s->sv->storage, s->user, name, &in, &uv, &uid);
	if (rc == ROOST_ENOTFOUND) {
		imap_tagged(cmd, "NO", "[TRYCREATE] Mailbox does not exist");
		return;
	}
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	rc = mailbox_expunge(v->mb, &old_uid, 1);
	if (rc < 0) {
		undo_append(s, name, uid);
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_untagged(s, "OK [APPENDUID %u %u] Replacement message", uv, uid);
	/* The EXPUNGE goes now, also for REPLACE by sequence number (RFC
	 * 8508 3.4, as MOVE). */
	if (!v->msgs[idx[0]].expunged) {
		v->msgs[idx[0]].expunged = true;
		v->n_pending_expunge++;
	}
	view_sync(s, true);
	imap_tagged(cmd, "OK", "REPLACE completed");
}
