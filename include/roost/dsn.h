#ifndef ROOST_DSN_H
#define ROOST_DSN_H

#include <stdbool.h>
#include <stddef.h>

#include "roost/buf.h"

/*
 * Delivery status notifications (RFC 3464, multipart/report; RFC 3461
 * NOTIFY/RET/ENVID/ORCPT) for the outbound queue (services/dsn.c).
 * Thread-safe; dsn_send() may block on disk (the queue, storage).
 */
struct roost_services;
struct queue_entry;

enum dsn_kind { DSN_FAILED, DSN_DELAYED };

/* Does recipient i of e want a DSN of this kind (its NOTIFY)? Never for
 * the null sender. */
bool dsn_wanted(const struct queue_entry *e, size_t i, enum dsn_kind kind);

/*
 * Build the report about recipients idx[0..n) of e into out: a text part,
 * the message/delivery-status part, and the original (message/rfc822, or
 * text/rfc822-headers for RET=HDRS or a message over 1 MB) read from
 * msg_fd (-1: none).
 */
void dsn_build(const char *hostname, const struct queue_entry *e, const size_t *idx, size_t n,
               enum dsn_kind kind, int msg_fd, struct buf *out);

/*
 * Build and send the report to e's sender: into the INBOX through storage
 * when the sender is a local user, else through the queue (null sender).
 * Recipients not wanting it are left out; nothing is sent when none is
 * left. 0, or the storage/queue error (logged).
 */
int dsn_send(const struct roost_services *sv, const struct queue_entry *e, const size_t *idx,
             size_t n, enum dsn_kind kind, int msg_fd);

#endif
