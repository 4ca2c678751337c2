/*
 * OBJECTID (RFC 8474): FETCH EMAILID and THREADID, SEARCH EMAILID and
 * THREADID, CREATE's [MAILBOXID] code. MAILBOXID and EMAILID come from
 * storage (struct mailbox_status, struct msg_record); a THREADID is
 * derived from the message's own header, so it is the same wherever the
 * message and its replies are stored and needs nothing stored.
 *
 * Spelling: EMAILID "M" and THREADID "T" followed by 16 lower-case hex
 * digits of the 64-bit value; MAILBOXID as storage gives it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "roost/error.h"
#include "roost/message.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "imap_impl.h"

uint64_t
imap_threadid(const struct msg_record *rec, const uint8_t *data, size_t len)
{
	return message_thread_id(data, len, rec->emailid);
}

void
imap_objectid_fetch(enum fetch_kind kind, const struct msg_record *rec, const uint8_t *data,
                    size_t len, struct buf *out)
{
	if (kind == F_EMAILID)
		buf_printf(out, "EMAILID (M%016" PRIx64 ")", rec->emailid);
	else
		buf_printf(out, "THREADID (T%016" PRIx64 ")", imap_threadid(rec, data, len));
}

int
imap_objectid_parse(const char *s, char letter, uint64_t *v_r)
{
	size_t len = strlen(s);
	uint64_t v = 0;

	/* objectid = 1*255(ALPHA / DIGIT / "_" / "-") */
	if (len == 0 || len > 255)
		return ROOST_EINVAL;
	for (const char *p = s; *p != '\0'; p++) {
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return ROOST_EINVAL;
	}
	*v_r = 0; /* a well-formed id this server never gave: matches nothing */
	if (len != 17 || s[0] != letter)
		return 0;
	for (size_t i = 1; i < 17; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (d < 0)
			return 0;
		v = v << 4 | (uint64_t)d;
	}
	*v_r = v;
	return 0;
}

void
imap_objectid_created(struct imap_cmd *cmd, const char *name)
{
	struct mailbox_status st;

	/* RFC 8474 4.1: the new mailbox's id in the tagged OK */
	if (storage_status(cmd->s->sv->storage, cmd->s->user, name, &st) == 0)
		imap_tagged(cmd, "OK", "[MAILBOXID (%s)] CREATE completed", st.mailboxid);
	else
		imap_tagged(cmd, "OK", "CREATE completed");
}
