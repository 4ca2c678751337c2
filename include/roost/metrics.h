#ifndef ROOST_METRICS_H
#define ROOST_METRICS_H

#include <stdint.h>

#include "roost/buf.h"

/*
 * Process-wide counters for monitoring, rendered in the OpenMetrics text
 * format (protocols/http serves them at /metrics on the metrics listener).
 * Every function is thread-safe and lock-free on the hot path (relaxed
 * atomics); a listener name is given a slot the first time it is seen.
 */

/* A connection of listener proto ("imap", "smtp", ...) opened / closed. */
void metrics_conn_open(const char *proto);
void metrics_conn_close(const char *proto);
/* One framed command (an IMAP command, an SMTP line, an HTTP request
 * piece) handed to a worker. */
void metrics_command(const char *proto);
/* A failed authentication (any protocol). */
void metrics_auth_failure(void);
/* Messages stored by local delivery (one per recipient). */
void metrics_deliveries(unsigned n);
/* Worker pool: size at start, a job queued, a job started, a job done. */
void metrics_workers(unsigned n);
void metrics_job_queued(void);
void metrics_job_started(void);
void metrics_job_done(void);

/* Append every metric (without the final "# EOF") to out. */
void metrics_render(struct buf *out);

#endif
