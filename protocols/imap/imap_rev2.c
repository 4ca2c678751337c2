/*
 * IMAP4rev2 (RFC 9051) and UTF8=ACCEPT (RFC 6855): what changes in a
 * session once the client enabled them.
 *
 * An IMAP4rev1 session is untouched. After ENABLE IMAP4rev2 the session
 * drops \Recent (no RECENT response, no \Recent in FETCH FLAGS, no
 * UNSEEN code in SELECT), answers SEARCH with ESEARCH, sends the
 * mailbox's LIST line in SELECT, and, as after ENABLE UTF8=ACCEPT, takes
 * and gives mailbox names in UTF-8 instead of modified UTF-7 (RFC 9051
 * 5.1, RFC 6855 3). UTF8=ACCEPT also allows APPEND's UTF8 (literal8)
 * form (RFC 6855 4).
 */
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/utf8.h"

#include "imap_impl.h"

bool
imap_utf8_names(const struct imap_session *s)
{
	return s->rev2 || s->utf8_accept;
}

void
imap_rev2_enable(struct imap_session *s)
{
	s->rev2 = true;
	s->view.no_recent = true;
}

int
imap_name_decode(const struct imap_session *s, const char *in, size_t len, struct buf *out)
{
	if (!imap_utf8_names(s))
		return mutf7_decode(in, len, out);
	/* A name is text: no NUL or other control, valid UTF-8. */
	if (!utf8_text_valid(in, len))
		return ROOST_EINVAL;
	return buf_append(out, in, len);
}

void
imap_write_mbox(struct imap_session *s, const char *name)
{
	size_t len = strlen(name);

	if (!imap_utf8_names(s)) {
		imap_write_mailbox(s->c, name);
		return;
	}
	/* RFC 9051 4.3: a quoted string may carry UTF-8; the name is valid
	 * UTF-8 text (storage_name.c checks it), so quoting only needs the
	 * two escapes. */
	if (len <= 1024 && utf8_text_valid(name, len)) {
		struct buf b = BUF_INIT(0);

		buf_append_byte(&b, '"');
		for (size_t i = 0; i < len; i++) {
			if (name[i] == '"' || name[i] == '\\')
				buf_append_byte(&b, '\\');
			buf_append_byte(&b, (uint8_t)name[i]);
		}
		buf_append_byte(&b, '"');
		conn_write(s->c, b.data, b.len);
		buf_free(&b);
		return;
	}
	imap_write_string(s->c, name, len);
}

void
imap_rev2_select(struct imap_session *s, const char *name)
{
	/* RFC 9051 6.3.2: the mailbox's name as the server spells it. */
	conn_write_str(s->c, "* LIST () \"/\" ");
	imap_write_mbox(s, name);
	conn_write_str(s->c, "\r\n");
}

int
imap_status_deleted(struct imap_session *s, const char *name, uint32_t *n_r)
{
	struct mailbox *mb;
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t modseq;
	uint32_t deleted = 0;
	int rc = mailbox_open(s->sv->storage, s->user, name, MAILBOX_READONLY, &mb);

	if (rc < 0)
		return rc;
	rc = mailbox_records(mb, &recs, &n, &modseq);
	mailbox_close(&mb);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (recs[i].flags & MSG_DELETED)
			deleted++;
	free(recs);
	*n_r = deleted;
	return 0;
}

int
imap_append_message_arg(struct imap_cmd *cmd, const struct imap_arg *a, size_t n, size_t *k,
                        const struct imap_arg **msg_r)
{
	const struct imap_arg *u;

	if (*k >= n)
		return ROOST_EINVAL;
	if (a[*k].type == ARG_LITERAL) {
		*msg_r = &a[(*k)++];
		return 0;
	}
	/* RFC 6855 4: UTF8 (~{n}...), a message that may have UTF-8 in its
	 * header, once the client enabled UTF8=ACCEPT. */
	if (!imap_arg_atom_eq(&a[*k], "UTF8") || *k + 1 >= n)
		return ROOST_EINVAL;
	u = &a[*k + 1];
	if (u->type != ARG_LIST || u->n != 1 || u->list[0].type != ARG_LITERAL ||
	    !u->list[0].literal8)
		return ROOST_EINVAL;
	if (!cmd->s->utf8_accept)
		return ROOST_EPERM;
	*msg_r = &u->list[0];
	*k += 2;
	return 0;
}
