/*
 * INPROGRESS (RFC 9585): a command that works for a long time (SEARCH
 * over a large mailbox, its TEXT keys reading every message) says how far
 * it got, so a client can show progress rather than time out. The command
 * runs in steps of [imap] inprogress_interval (1 s by default); after each
 * step but the last it writes one untagged OK with the code and yields
 * (imap_yield()), so the line reaches the client at once and the worker
 * goes back to the pool between steps. A command done within one interval
 * sends nothing more than before.
 */
#include <time.h>

#include "roost/config.h"
#include "roost/loop.h"
#include "roost/services.h"

#include "imap_impl.h"

uint64_t
imap_progress_deadline(const struct imap_session *s)
{
	return clock_ms() + imap_cfg(s)->imap_inprogress_interval;
}

void
imap_progress_send(struct imap_cmd *cmd, uint64_t done, uint64_t total, const char *text)
{
	/* A tag holds no '"' nor '\\' (ASTRING-CHAR without them): quoted as
	 * it is, as ESEARCH's (TAG "...") */
	if (total == 0)
		imap_untagged(cmd->s, "OK [INPROGRESS (\"%s\" %llu NIL)] %s", cmd->p.tag,
		              (unsigned long long)done, text);
	else
		imap_untagged(cmd->s, "OK [INPROGRESS (\"%s\" %llu %llu)] %s", cmd->p.tag,
		              (unsigned long long)done, (unsigned long long)total, text);
}
