/*
 * COPY and MOVE, with their UID forms (UIDPLUS COPYUID).
 */
#include <stdlib.h>

#include "roost/error.h"
#include "roost/storage.h"

#include "imap_impl.h"

static void
do_copy(struct imap_cmd *cmd, bool move)
{
	struct imap_session *s = cmd->s;
	struct imap_view *v = &s->view;
	char *dest;
	uint32_t *idx, *src = NULL, *dst = NULL;
	size_t n, n_copied = 0;
	uint32_t uv = 0;
	int rc;

	if (cmd->p.n != 2 || cmd->p.args[0].type != ARG_ATOM) {
		imap_bad(cmd, "Usage: %s sequence-set mailbox", cmd->p.name);
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[1], &dest) < 0)
		return;
	rc = view_resolve_set(cmd, cmd->p.args[0].str, cmd->uid, &idx, &n);
	if (rc < 0) {
		imap_bad(cmd, "Invalid message sequence set");
		return;
	}
	if (move && v->readonly) {
		imap_tagged(cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	uint32_t *uids = arena_alloc(&cmd->arena, (n ? n : 1) * sizeof(*uids));
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!v->msgs[idx[i]].expunged)
			uids[k++] = v->msgs[idx[i]].rec.uid;
	if (k == 0) {
		if (n > 0)
			imap_tagged(cmd, "NO", "[EXPUNGEISSUED] Messages were expunged");
		else
			imap_tagged(cmd, "OK", "No messages");
		return;
	}
	rc = mailbox_copy(v->mb, uids, k, dest, move, &uv, &src, &dst, &n_copied);
	if (rc == ROOST_ENOTFOUND) {
		imap_tagged(cmd, "NO", "[TRYCREATE] Mailbox does not exist");
		goto out;
	}
	if (rc < 0) {
		imap_reply_error(cmd, rc, NULL);
		goto out;
	}
	struct buf sb = BUF_INIT(0), db = BUF_INIT(0);
	seqset_format(src, n_copied, &sb);
	seqset_format(dst, n_copied, &db);
	if (move) {
		if (n_copied > 0)
			imap_untagged(s, "OK [COPYUID %u %s %s] Moved", uv, buf_cstr(&sb),
			              buf_cstr(&db));
		/* The moved messages go now (RFC 6851 allows the EXPUNGEs
		 * even for MOVE by sequence number). */
		for (size_t i = 0; i < n_copied; i++) {
			uint32_t seq = view_seq_of_uid(v, src[i]);
			if (seq > 0 && !v->msgs[seq - 1].expunged) {
				v->msgs[seq - 1].expunged = true;
				v->n_pending_expunge++;
			}
		}
		view_sync(s, true);
		imap_tagged(cmd, "OK", "MOVE completed");
	} else if (n_copied > 0) {
		imap_tagged(cmd, "OK", "[COPYUID %u %s %s] COPY completed", uv, buf_cstr(&sb),
		            buf_cstr(&db));
	} else {
		imap_tagged(cmd, "OK", "COPY completed");
	}
	buf_free(&sb);
	buf_free(&db);
out:
	free(src);
	free(dst);
}

void
cmd_copy(struct imap_cmd *cmd)
{
	do_copy(cmd, false);
}

void
cmd_move(struct imap_cmd *cmd)
{
	do_copy(cmd, true);
}
