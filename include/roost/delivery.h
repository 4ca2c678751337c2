#ifndef ROOST_DELIVERY_H
#define ROOST_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * The local delivery service shared by SMTP, LMTP, DSNs and `roost
 * deliver`: resolve a recipient address to a user and folder, write the
 * trace header block (Return-Path, Received, X-Roost-DSN), and store one
 * message for many recipients at once (delivery_store(): the policy; the
 * storage wrapper owns the work: new users, retries, roll-back). All
 * functions are thread-safe (they only use the thread-safe services) and
 * may block on storage: call them from a worker.
 *
 * Recipient resolution: a recipient is local when auth knows the address,
 * or its domain is one of [smtp] domains. With a recipient delimiter ("+"),
 * "alice+lists@example.org" that is not itself a user resolves to
 * alice@example.org, delivered into her folder "lists" when that exists
 * (else INBOX). In a local domain, users named without a domain ("alice")
 * receive alice@<domain>. A bare name (no '@') is a user of that name, or
 * the name at the first local domain ("postmaster").
 *
 * A user's full address ("alice@example.org") is local only when its
 * domain is in [smtp] domains: elsewhere it is another host's mail.
 *
 * Aliases (roost/aliases.h) are expanded by delivery_expand(), which every
 * receiving path (SMTP, LMTP, roost deliver) uses; postmaster at a local
 * domain (any case, RFC 5321 4.5.1) is always deliverable: to its alias,
 * else the user postmaster, else kept for the user postmaster@<domain>
 * (in lower case; its store exists before the user does: `roost user add
 * postmaster@<domain> --keep-mail` gives it a reader).
 */
struct roost_services;
struct roost_config;
struct storage;

#define DELIVERY_MAX_USER 320
#define DELIVERY_MAX_FOLDER 520
#define DELIVERY_ID_LEN 24 /* buffer size for an id, NUL included */

/* A resolved recipient: where its copy goes. A struct delivery_target
 * (storage.h) pointing at user and mailbox is what delivery_store() takes. */
struct delivery_rcpt {
	char user[DELIVERY_MAX_USER];      /* canonical user name from auth */
	char mailbox[DELIVERY_MAX_FOLDER]; /* "INBOX" or the delimiter's folder */
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

/* One destination of a recipient after alias expansion. */
struct delivery_dest {
	bool remote;                  /* another domain's address: the outbound queue */
	char addr[DELIVERY_MAX_USER]; /* remote: that address; local: the one resolved */
	struct delivery_rcpt d;       /* local: where the copy goes */
};

/* Most destinations one recipient may expand to. */
#define DELIVERY_MAX_DESTS 1000

/*
 * Expand address through the aliases into destinations (*dests_r, n_r
 * entries, at least one, deduplicated; the caller frees the array).
 * Returns 0; ROOST_EPERM when address itself is not local (the caller's
 * relay policy decides); ROOST_ENOTFOUND when it is local but names no
 * user, alias or postmaster (an alias whose targets all fail counts as
 * unknown: its bad targets are logged); ROOST_EINVAL as delivery_resolve().
 */
int delivery_expand(const struct roost_services *sv, const char *address,
                    struct delivery_dest **dests_r, size_t *n_r);

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
 * Store the message (trace headers included) for targets[0..n), each
 * usually pointing at a struct delivery_rcpt's names. A folder that went
 * away since the recipient was resolved gets the copy in INBOX instead
 * (the target's mailbox then says "INBOX"). With all_or_nothing (SMTP),
 * when any target failed, the copies stored for the others are taken back
 * and every result is the first error, so the client's retry makes no
 * duplicate; without it (LMTP) each target has its own result. Returns 0
 * when every target succeeded, else the first error. A 0 result is on
 * stable storage.
 *
 * sender is the envelope sender ("" for the null path): each target
 * stored may answer it with its vacation reply (roost/vacation.h).
 */
struct msg_input;
struct delivery_target;
int delivery_store(const struct roost_services *sv, const char *sender, const struct msg_input *in,
                   struct delivery_target *targets, size_t n, bool all_or_nothing);

#endif
