#ifndef ROOST_DELIVERY_H
#define ROOST_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * The local delivery path shared by SMTP, LMTP and `roost deliver`:
 * resolve a recipient address to a user and folder, write the trace header
 * block (Return-Path, Received, X-Roost-DSN), and store one message body for
 * many recipients at once through storage_deliver(), with per-recipient
 * results. All functions are thread-safe (they only use the thread-safe
 * services) and may block on storage: call them from a worker.
 *
 * Recipient resolution: a recipient is local when auth knows the address,
 * or its domain is one of [smtp] domains. With a recipient delimiter ("+"),
 * "alice+lists@example.org" that is not itself a user resolves to
 * alice@example.org, delivered into her folder "lists" when that exists
 * (else INBOX). In a local domain, users named without a domain ("alice")
 * receive alice@<domain>. A bare name (no '@') is a user of that name, or
 * the name at the first local domain ("postmaster").
 */
struct roost_services;
struct roost_config;
struct storage;

#define DELIVERY_MAX_USER 320
#define DELIVERY_MAX_FOLDER 520
#define DELIVERY_ID_LEN 24 /* buffer size for an id, NUL included */

struct delivery_rcpt {
	char user[DELIVERY_MAX_USER];      /* canonical user name from auth */
	char mailbox[DELIVERY_MAX_FOLDER]; /* "INBOX" or the delimiter's folder */
	/* results of delivery_store() */
	int result;
	uint32_t uidvalidity;
	uint32_t uid;
};

/*
 * Resolve address (an SMTP path without brackets) into r->user and
 * r->mailbox. Returns 0 for a local user; ROOST_ENOTFOUND when the domain
 * is local but no such user exists; ROOST_EPERM when the address is not
 * local at all (relaying); ROOST_EINVAL for an address too long or with a
 * control byte (CR, LF, ...) in it; ROOST_ETEMP when storage could not say whether
 * the detail folder exists (treated as INBOX, never fatal: never returned
 * today, reserved).
 */
int delivery_resolve(const struct roost_services *sv, const char *address, struct delivery_rcpt *r);

/* Is domain (no '@') one of the configured local domains? Case-insensitive. */
bool delivery_domain_is_local(const struct roost_config *cfg, const char *domain);

/* A new delivery id, unique in this host's logs: 16 hex digits of time
 * and a counter, plus the pid. Thread-safe. */
void delivery_new_id(char id[DELIVERY_ID_LEN]);

/* What the Received header says. */
struct delivery_trace {
	const char *sender;   /* envelope sender, "" for the null path */
	const char *helo;     /* client's HELO/EHLO/LHLO name, NULL for local */
	const char *peer;     /* client address, NULL for local */
	const char *protocol; /* "ESMTPSA", "LMTP", ... (RFC 3848), or "local" */
	const char *tls_info; /* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" / NULL */
	const char *id;       /* delivery_new_id() */
	const char *for_rcpt; /* the one recipient (only given when there is one) */
	const char *dsn;      /* "ENVID=..; RET=..; ..." for X-Roost-DSN, or NULL */
	int64_t time;         /* when the message arrived; 0 = now */
};

/*
 * Append the trace header block to out: Return-Path, Received, and
 * X-Roost-DSN when t->dsn is set. Client-supplied text (HELO name, DSN
 * values) is sanitised so it cannot break the header. ROOST_ETOOBIG when
 * out's maximum is reached.
 */
int delivery_trace_headers(const struct roost_config *cfg, const struct delivery_trace *t,
                           struct buf *out);

/*
 * Store msg[0..len) (trace headers included) into every recipient's
 * mailbox, the body once where the backend can. Each rcpts[i].result gets
 * 0 or the storage error. With all_or_nothing (SMTP), when any recipient
 * failed, the copies stored for the others are expunged again, so a retry
 * by the client makes no duplicates; their result then becomes the first
 * error too. Returns 0 when every recipient succeeded, else the first error.
 */
int delivery_store(struct storage *st, const uint8_t *msg, size_t len, struct delivery_rcpt *rcpts,
                   size_t n, bool all_or_nothing);
/* The same for a message in memory or spooled in a file (in->fd). */
struct msg_input;
int delivery_store_input(struct storage *st, const struct msg_input *in,
                         struct delivery_rcpt *rcpts, size_t n, bool all_or_nothing);

/*
 * `roost deliver -f sender -a rcpt [-a rcpt...] [-m folder] < message`:
 * read the message from stdin (LF line ends become CR LF), deliver it
 * through the same path, exit with a sysexits.h code (EX_OK, EX_USAGE,
 * EX_NOUSER for an unknown recipient, EX_TEMPFAIL for storage trouble,
 * EX_DATAERR for a message over max_message_size, EX_CONFIG).
 * argv[0] is "deliver".
 */
int delivery_command(const struct roost_services *sv, int argc, char **argv);

#endif
