#ifndef ROOST_VACATION_H
#define ROOST_VACATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The vacation auto-reply of a user (JMAP VacationResponse, RFC 8621 8),
 * kept in the user's server metadata (never shown to IMAP clients), and
 * the reply itself, sent at local delivery under the rules of RFC 3834
 * and RFC 5230 (see services/vacation.c's head comment for the list).
 *
 * Thread safety: every function may run on any worker at once; the
 * per-sender record of replies is read and rewritten under one lock.
 */
struct roost_services;
struct storage;
struct msg_input;

/* How long a sender gets no second reply (RFC 5230 4.1: 7 days). */
#define VACATION_PERIOD_DAYS 7
/* Senders remembered per user; past it the oldest reply is forgotten. */
#define VACATION_MAX_SENDERS 1000

struct vacation {
	bool enabled;
	bool has_from, has_to;
	int64_t from_date, to_date; /* seconds since the epoch, when has_* */
	char *subject;              /* NULL when null; UTF-8 */
	char *text_body;            /* NULL when null */
	char *html_body;            /* NULL when null */
};

/*
 * The user's setting into *v (the defaults, disabled and all null, when
 * none was stored). Free with vacation_free(). 0 or a storage error.
 */
int vacation_get(struct storage *st, const char *user, struct vacation *v);

/*
 * Store v as the user's setting and forget whom the earlier one replied
 * to (a new text may go to the same people). ROOST_ETOOBIG when the texts
 * together pass the metadata bound (STORAGE_METADATA_MAX_VALUE),
 * ROOST_EINVAL for text that is not UTF-8 or holds a NUL; else 0 or a
 * storage error.
 */
int vacation_set(struct storage *st, const char *user, const struct vacation *v);

/* Release what v holds (v itself is the caller's); accepts a zeroed v. */
void vacation_free(struct vacation *v);

/*
 * The cache of users whose setting is off (services/vacation_cache.c), so
 * that a delivery to them reads no storage. Thread-safe (one mutex);
 * bounded by VACATION_CACHE_SLOTS names. vacation_set() keeps it right
 * for writes of this process; a write by another process (another node
 * on a shared store) is seen after at most VACATION_CACHE_TTL seconds.
 */
#define VACATION_CACHE_SLOTS 16384
#define VACATION_CACHE_TTL 60

/* Is user's setting known to be off? When not, *gen_r is what to pass to
 * vacation_cache_note_off() after reading the setting. */
bool vacation_cache_off(const char *user, uint64_t *gen_r);
/* The setting read for user was off; kept unless a vacation_cache_forget()
 * ran since the vacation_cache_off() that gave begun. */
void vacation_cache_note_off(const char *user, uint64_t begun);
/* user's setting changed: the next delivery reads it. */
void vacation_cache_forget(const char *user);
/* Forget everyone (tests, and the end of the process for leak checkers). */
void vacation_cache_clear(void);

/*
 * A message from envelope sender (the SMTP path, "" for the null sender)
 * was stored for user: send the auto-reply when the user's setting and
 * the rules ask for it, through the outbound queue (or stored directly
 * when the sender is a local user). Best effort: what it does and why it
 * does not reply is logged (event=vacation), nothing is returned. Blocks
 * on storage and the queue's fsync: a worker only.
 */
void vacation_on_delivery(const struct roost_services *sv, const char *sender,
                          const struct msg_input *in, const char *user);

#endif
