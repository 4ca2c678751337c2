/*
 * UNAUTHENTICATE (RFC 8437): back to the not-authenticated state on the
 * same connection, so a client can log in as someone else without a new
 * TCP and TLS handshake. The selected mailbox is closed without expunging,
 * everything the user's login set up is released (the per-user slot, the
 * user on the connection and its post-login bounds), and what ENABLE
 * turned on is off again (RFC 8437 3). TLS and COMPRESS stay: they belong
 * to the connection, not to the login.
 */
#include <stdlib.h>

#include "roost/conn.h"
#include "roost/log.h"

#include "imap_impl.h"

void
cmd_unauthenticate(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;

	if (s->state == IMAP_STATE_SELECTED)
		view_close(s); /* no expunge, as UNSELECT */
	imap_idle_stop(s);
	imap_notify_stop(s);
	conn_log(s->c, LOG_LEVEL_INFO, "event=unauthenticate");
	if (s->counted)
		imap_ucount_release(s->user, s->peer);
	s->counted = false;
	free(s->user);
	s->user = NULL;
	s->condstore = false;
	s->qresync = false;
	s->rev2 = false;
	s->utf8_accept = false;
	s->view.no_recent = false;
	conn_set_user(s->c, NULL);
	imap_enter_state(s, IMAP_STATE_NOT_AUTH);
	/* The view is closed, so the tagged reply owes no untagged update. */
	imap_tagged(cmd, "OK", "Authenticated state ended");
}
