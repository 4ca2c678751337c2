/* RFC 3464 delivery status notifications for the outbound queue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/dsn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/queue.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#define DSN_FULL_MAX (1024 * 1024) /* larger originals are returned as headers */

static bool
notify_has(const char *notify, const char *word)
{
	char copy[64], *save = NULL;

	snprintf(copy, sizeof(copy), "%s", notify);
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (strcasecmp(t, word) == 0)
			return true;
	}
	return false;
}

bool
dsn_wanted(const struct queue_entry *e, size_t i, enum dsn_kind kind)
{
	const char *notify = e->rcpts[i].notify;

	if (e->sender[0] == '\0')
		return false;
	if (notify == NULL || notify[0] == '\0')
		return true; /* RFC 3461 4.1: the default is FAILURE (and DELAY) */
	return notify_has(notify, kind == DSN_FAILED ? "FAILURE" : "DELAY");
}

static void
rfc822_date(time_t t, char *buf, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* The status code of a reply text "5.1.1 ..." or one made from the code. */
static void
status_of(const struct queue_rcpt *r, enum dsn_kind kind, char *out, size_t size)
{
	const char *t = r->status != NULL ? r->status : "";
	size_t n = strspn(t, "0123456789.");

	if (n >= 5 && n < 16 && (t[0] == '2' || t[0] == '4' || t[0] == '5') && t[1] == '.') {
		snprintf(out, size, "%.*s", (int)n, t);
		/* An expired message is reported as failed: 5.x.x, not 4.x.x. */
		if (kind == DSN_FAILED && out[0] == '4')
			out[0] = '5';
		return;
	}
	snprintf(out, size, "%s", kind == DSN_FAILED ? "5.0.0" : "4.0.0");
}

/* ORCPT "rfc822;a+40b" in its xtext form, decoded for the report. */
static void
orcpt_text(const char *orcpt, struct buf *out)
{
	for (const char *p = orcpt; *p != '\0'; p++) {
		if (p[0] == '+' && p[1] != '\0' && p[2] != '\0') {
			char hex[3] = {p[1], p[2], 0};

			buf_append_byte(out, (uint8_t)strtol(hex, NULL, 16));
			p += 2;
		} else if ((unsigned char)*p >= ' ' && *p != 0x7f) {
			buf_append_byte(out, (uint8_t)*p);
		}
	}
}

static void
append_original(struct buf *out, int fd, bool headers_only)
{
	uint8_t tmp[65536];
	off_t off = 0;
	ssize_t r;

	while ((r = pread(fd, tmp, sizeof(tmp), off)) > 0) {
		if (headers_only) {
			for (ssize_t i = 0; i < r; i++) {
				buf_append_byte(out, tmp[i]);
				if (out->len >= 4 &&
				    memcmp(out->data + out->len - 4, "\r\n\r\n", 4) == 0)
					return;
			}
		} else {
			buf_append(out, tmp, (size_t)r);
		}
		off += r;
	}
	if (out->len >= 2 && memcmp(out->data + out->len - 2, "\r\n", 2) != 0)
		buf_append_str(out, "\r\n");
}

void
dsn_build(const char *hostname, const struct queue_entry *e, const size_t *idx, size_t n,
          enum dsn_kind kind, int msg_fd, struct buf *out)
{
	char date[64], arrival[64], boundary[80], status[16];
	time_t now = time(NULL);
	struct stat sb;
	bool hdrs = strcasecmp(e->ret, "HDRS") == 0;

	rfc822_date(now, date, sizeof(date));
	rfc822_date((time_t)e->created, arrival, sizeof(arrival));
	snprintf(boundary, sizeof(boundary), "%s.%lld/%s", e->id, (long long)now, hostname);
	if (msg_fd >= 0 && fstat(msg_fd, &sb) == 0 && sb.st_size > DSN_FULL_MAX)
		hdrs = true;

	buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", hostname);
	buf_printf(out, "To: <%s>\r\n", e->sender);
	buf_printf(out, "Subject: %s\r\n",
	           kind == DSN_FAILED ? "Undelivered Mail Returned to Sender"
	                              : "Delayed Mail (still being retried)");
	buf_printf(out, "Date: %s\r\n", date);
	buf_printf(out, "Message-ID: <%s.%s.%lld@%s>\r\n", e->id,
	           kind == DSN_FAILED ? "failed" : "delayed", (long long)now, hostname);
	buf_append_str(out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	buf_printf(out,
	           "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	           "\tboundary=\"%s\"\r\n\r\n",
	           boundary);
	buf_append_str(out, "This is a MIME-encapsulated message.\r\n\r\n");

	/* the human part */
	buf_printf(out,
	           "--%s\r\nContent-Description: Notification\r\n"
	           "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
	           boundary);
	buf_printf(out, "This is the mail system at host %s.\r\n\r\n", hostname);
	if (kind == DSN_FAILED)
		buf_append_str(out, "Your message could not be delivered to one or more "
		                    "recipients. It is attached below.\r\n\r\n");
	else
		buf_append_str(
		    out,
		    "Your message could not be delivered yet to one or more "
		    "recipients. Delivery will be retried; you need not send it again.\r\n\r\n");
	for (size_t k = 0; k < n; k++) {
		const struct queue_rcpt *r = &e->rcpts[idx[k]];

		buf_printf(out, "<%s>: %s%s%s\r\n", r->addr, r->remote[0] != '\0' ? "host " : "",
		           r->remote, r->remote[0] != '\0' ? " said: " : "");
		buf_printf(out, "    %d %s\r\n", r->code, r->status);
	}
	buf_append_str(out, "\r\n");

	/* the machine part */
	buf_printf(out,
	           "--%s\r\nContent-Description: Delivery report\r\n"
	           "Content-Type: message/delivery-status\r\n\r\n",
	           boundary);
	buf_printf(out, "Reporting-MTA: dns; %s\r\n", hostname);
	buf_printf(out, "X-Roost-Queue-ID: %s\r\n", e->id);
	if (e->envid[0] != '\0')
		buf_printf(out, "Original-Envelope-Id: %s\r\n", e->envid);
	buf_printf(out, "Arrival-Date: %s\r\n", arrival);
	for (size_t k = 0; k < n; k++) {
		const struct queue_rcpt *r = &e->rcpts[idx[k]];

		buf_printf(out, "\r\nFinal-Recipient: rfc822; %s\r\n", r->addr);
		if (r->orcpt[0] != '\0') {
			const char *semi = strchr(r->orcpt, ';');

			buf_append_str(out, "Original-Recipient: ");
			if (semi != NULL) {
				buf_printf(out, "%.*s; ", (int)(semi - r->orcpt), r->orcpt);
				orcpt_text(semi + 1, out);
			} else {
				orcpt_text(r->orcpt, out);
			}
			buf_append_str(out, "\r\n");
		}
		status_of(r, kind, status, sizeof(status));
		buf_printf(out, "Action: %s\r\nStatus: %s\r\n",
		           kind == DSN_FAILED ? "failed" : "delayed", status);
		if (r->remote[0] != '\0')
			buf_printf(out, "Remote-MTA: dns; %s\r\n", r->remote);
		if (r->code != 0)
			buf_printf(out, "Diagnostic-Code: smtp; %d %s\r\n", r->code, r->status);
		buf_printf(out, "Last-Attempt-Date: %s\r\n", date);
	}
	buf_append_str(out, "\r\n");

	/* the original */
	if (msg_fd >= 0) {
		buf_printf(out, "--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n\r\n",
		           boundary, hdrs ? "Undelivered Message Headers" : "Undelivered Message",
		           hdrs ? "text/rfc822-headers" : "message/rfc822");
		append_original(out, msg_fd, hdrs);
	}
	buf_printf(out, "--%s--\r\n", boundary);
}

int
dsn_send(const struct roost_services *sv, const struct queue_entry *e, const size_t *idx, size_t n,
         enum dsn_kind kind, int msg_fd)
{
	size_t *want = xcalloc(n + 1, sizeof(*want)), k = 0;
	struct buf msg = BUF_INIT(0);
	struct delivery_rcpt dr;
	int err = 0;

	for (size_t i = 0; i < n; i++) {
		if (dsn_wanted(e, idx[i], kind))
			want[k++] = idx[i];
	}
	if (k == 0) {
		free(want);
		return 0;
	}
	memset(&dr, 0, sizeof(dr));
	if (delivery_resolve(sv, e->sender, &dr) == 0) {
		/* A local sender: straight into the INBOX, no queue, no SMTP. */
		struct delivery_trace t = {0};
		char id[DELIVERY_ID_LEN];

		delivery_new_id(id);
		t.sender = "";
		t.protocol = "local";
		t.id = id;
		t.for_rcpt = e->sender;
		delivery_trace_headers(sv->cfg, &t, &msg);
		dsn_build(sv->cfg->hostname, e, want, k, kind, msg_fd, &msg);
		struct delivery_target dt = {.user = dr.user, .mailbox = "INBOX"};
		struct msg_input in = {.data = msg.data, .len = msg.len, .fd = -1};

		err = delivery_store(sv, "", &in, &dt, 1, true);
		log_info("event=dsn queue_id=%s kind=%s to=<%s> via=local user=%s status=%s", e->id,
		         kind == DSN_FAILED ? "failed" : "delayed", e->sender, dr.user,
		         err == 0 ? "stored" : roost_strerror(err));
	} else if (sv->queue != NULL) {
		struct queue_rcpt_in rin = {.addr = e->sender, .notify = "", .orcpt = ""};
		struct queue_submission sub = {0};
		char qid[QUEUE_ID_LEN];

		dsn_build(sv->cfg->hostname, e, want, k, kind, msg_fd, &msg);
		sub.sender = "";
		/* RFC 8689 5: the report of a REQUIRETLS message goes back
		 * under the same demand (it may quote the message). */
		sub.requiretls = e->requiretls;
		sub.binarymime = e->binarymime;
		sub.rcpts = &rin;
		sub.n_rcpts = 1;
		sub.data = msg.data;
		sub.len = msg.len;
		sub.fd = -1;
		err = queue_submit(sv->queue, &sub, qid);
		if (err == 0)
			queue_commit(sv->queue, qid, true);
		log_info("event=dsn queue_id=%s kind=%s to=<%s> via=queue dsn_id=%s status=%s",
		         e->id, kind == DSN_FAILED ? "failed" : "delayed", e->sender,
		         err == 0 ? qid : "-", err == 0 ? "queued" : roost_strerror(err));
	}
	buf_free(&msg);
	free(want);
	return err;
}
