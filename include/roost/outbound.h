#ifndef ROOST_OUTBOUND_H
#define ROOST_OUTBOUND_H

/*
 * The delivery engine (services/outbound.c): one thread that owns the
 * queue's committed entries and sends them on. It runs its own poll loop
 * over the resolver's sockets (c-ares), the outbound SMTP connections (each
 * a non-blocking state machine, roost/smtp_client.h), a wake-up eventfd
 * (new entries) and the control socket <queue>/ctl.sock that `roost queue`
 * talks to. Nothing here ever runs on a worker, and nothing blocks on a
 * peer: disk I/O (queue files, bounces into storage) is the only wait.
 *
 * Scheduling: an entry is due at next_try unless held. Its pending
 * recipients are grouped by domain (everything goes to one group with a
 * smarthost); each group joins a session for that domain that still takes
 * work, or starts one within [relay] max_per_domain and max_connections.
 * A session resolves MX (preference order; no MX: the domain's A/AAAA; a
 * null MX: permanent failure), connects to the addresses in turn, and sends
 * its messages one after another over one connection. 2xx marks a recipient
 * sent, 5xx failed (bounced), 4xx or a connection failure retries after
 * retry_min doubling up to retry_max, until queue_lifetime (then bounced).
 * Each attempt logs one event=deliver line per recipient.
 */
struct roost_services;
struct outbound;

/* Start the engine thread over sv->queue. ROOST_ECONFIG for a bad
 * [relay]/[dns] setting, ROOST_EIO otherwise (logged). */
int outbound_start(const struct roost_services *sv, struct outbound **ob_r);
/* Stop the thread (connections in flight are dropped: their recipients
 * stay pending on disk) and free everything. */
void outbound_stop(struct outbound **ob);

/* The control protocol, one line each way over <queue>/ctl.sock:
 * "flush", "flush ID", "hold ID", "release ID", "delete ID" answered by
 * "ok" or "error TEXT". Returns 0, ROOST_ENOTFOUND when no server listens
 * (the caller then edits the files itself), or ROOST_EINVAL with the
 * server's error text in err. */
int outbound_control(const char *queue_dir, const char *line, char *err, size_t errlen);

#endif
