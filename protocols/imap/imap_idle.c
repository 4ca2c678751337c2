/*
 * IDLE (RFC 2177). The IDLE command writes "+ idling" and returns: the
 * connection goes back to its event loop holding no worker. The framer then
 * delivers bare lines ("DONE") to imap_idle_line(). A storage watch on the
 * selected mailbox calls conn_wake(), whose wake-up runs here and sends
 * what changed: on the event loop when storage answers without blocking
 * (imap_idle_wake_nb()), else on a worker (imap_idle_wake()); a timer
 * sends "* OK Still here".
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "imap_impl.h"

static void
watch_cb(void *arg)
{
	conn_wake(arg);
}

/* Seconds between "* OK Still here". */
static unsigned
keepalive_s(const struct imap_session *s)
{
	unsigned sec = imap_cfg(s)->imap_idle_keepalive;

	return sec ? sec : 120;
}

/*
 * The timer also re-checks the mailbox at least every IDLE_POLL_S seconds:
 * storage notifies changes made through roost at once, but a message
 * another program drops into a Maildir is only seen by a sync (Dovecot's
 * mailbox_idle_check_interval does the same).
 */
#define IDLE_POLL_S 30u

static unsigned
tick_ms(const struct imap_session *s)
{
	unsigned k = keepalive_s(s);

	return (k < IDLE_POLL_S ? k : IDLE_POLL_S) * 1000u;
}

void
cmd_idle(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;

	/* With NOTIFY set, its watch wakes us and it decides what to send
	 * (RFC 5465 4); but its watch is on the user, and another user's
	 * shared mailbox changes under its owner's name. */
	if (s->state == IMAP_STATE_SELECTED && s->watch == NULL &&
	    (s->notify == NULL || storage_acl_name_foreign(s->sv->storage, s->view.name))) {
		/* Watch first, then catch up: a change in between wakes us. */
		int rc =
		    storage_watch(s->sv->storage, s->user, s->view.name, watch_cb, s->c, &s->watch);
		if (rc == 0)
			conn_ref(s->c);
		else
			conn_log(s->c, LOG_LEVEL_WARN, "event=watch_failed err=%s",
			         roost_strerror(rc));
		view_sync(s, true);
	}
	snprintf(s->idle_tag, sizeof(s->idle_tag), "%s", cmd->p.tag);
	s->idling = true;
	cmd->done = true;
	conn_write_str(s->c, "+ idling\r\n");
	s->idle_keepalive_at = clock_s() + keepalive_s(s);
	conn_set_timer(s->c, tick_ms(s));
}

void
imap_idle_stop(struct imap_session *s)
{
	if (s->watch != NULL) {
		storage_unwatch(&s->watch);
		conn_unref(s->c);
	}
	s->idling = false;
}

void
imap_idle_line(struct imap_session *s, const uint8_t *line, size_t len)
{
	struct imap_cmd cmd = {.s = s, .c = s->c};

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	conn_set_timer(s->c, 0);
	imap_idle_stop(s);
	cmd.p.tag = s->idle_tag;
	cmd.p.name = "IDLE";
	if (len == 4 && strncasecmp((const char *)line, "DONE", 4) == 0)
		imap_tagged(&cmd, "OK", "IDLE terminated");
	else
		imap_bad(&cmd, "Expected DONE");
}

/*
 * The wake-up of a session idling on its selected mailbox, without NOTIFY,
 * runs on the event loop when storage can answer from memory (LMDB): one
 * read snapshot and a few lines of output, where the worker's round trip
 * cost two thread switches and a place in the workers' queue behind
 * commands (issue 20: 1,000 sessions woken by one delivery).
 */
bool
imap_idle_wake_nb(struct imap_session *s)
{
	if (!s->idling || s->notify != NULL || s->state != IMAP_STATE_SELECTED)
		return false;
	return view_sync_nb(s, true);
}

void
imap_idle_wake(struct imap_session *s, bool timer)
{
	if (!s->idling)
		return;
	if (s->notify != NULL)
		imap_notify_wake(s);
	else if (s->state == IMAP_STATE_SELECTED)
		view_sync(s, true);
	if (timer) {
		double t = clock_s();
		if (t + 0.05 >= s->idle_keepalive_at) {
			conn_write_str(s->c, "* OK Still here\r\n");
			s->idle_keepalive_at = t + keepalive_s(s);
		}
		conn_set_timer(s->c, tick_ms(s));
	}
}
