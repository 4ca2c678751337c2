#ifndef ROOST_URLAUTH_H
#define ROOST_URLAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * IMAP URLs resolved against Roost's own store (RFC 5092), and their
 * URLAUTH authorisation (RFC 4467, mechanism INTERNAL): what GENURLAUTH,
 * RESETKEY and URLFETCH do, what CATENATE's URL parts read, and what BURL
 * on submission reads (RFC 4468) without a network loop to the server
 * itself.
 *
 * Keys. A mailbox's access key is HMAC-SHA256, under the user's 256-bit
 * master secret, of the mailbox's own random key and its UIDVALIDITY. Both
 * secrets are metadata entries in storage (storage_metadata_*(): the
 * server part's /private/vendor/vendor.roost/urlauth/master and each
 * mailbox's .../urlauth/key), so every backend keeps them durably, the
 * nodes of one pgsql store share them, and a mailbox's key goes with the
 * mailbox: one deleted and made again does not honour its namesake's URLs.
 * They are made on first use (GENURLAUTH). RESETKEY with a mailbox
 * replaces that mailbox's key, without one the master, so every URL the
 * user issued stops working.
 *
 * Tokens. A URL's token is HMAC-SHA256 under the mailbox's access key of
 * the URL's text through its access identifier (the "rump"), 64 hex
 * digits; it is checked in constant time.
 *
 * Access, as RFC 4467 section 3 gives it: "user+X" lets user X fetch over
 * IMAP; "submit+X" lets the submission server fetch for X (BURL from a
 * session authenticated as X); "authuser" any authenticated user;
 * "anonymous" anyone. A URL must name this server (its hostname, a local
 * domain, localhost or a loopback address) and an owner; the owner's
 * mailbox names are storage names, checked by the storage wrapper, so a
 * URL cannot leave the owner's store. An expired URL (";EXPIRE=") fails.
 *
 * Threads: every function is safe from any thread; the making of a key
 * is serialised inside this module (see keys_lock).
 */

struct roost_config;
struct roost_services;
struct imapurl;

/* Who reads a URL. */
enum urlauth_via {
	URLAUTH_VIA_IMAP,   /* URLFETCH or CATENATE in a session of user */
	URLAUTH_VIA_SUBMIT, /* BURL in a submission session of user */
};

/* Bytes of data a URL may yield at most (also CATENATE's bound per part). */
#define URLAUTH_MAX_DATA (64u * 1024 * 1024)

/*
 * GENURLAUTH: sign the rump url[0..len) for user with mechanism (only
 * "INTERNAL", any case). The URL must be absolute, name this server,
 * have user as its owner, carry ";URLAUTH=" and no verifier, and name a
 * mailbox that exists. The full URL (rump ":internal:" token) is appended
 * to out. 0; ROOST_ENOTSUP for another mechanism; ROOST_EINVAL for a URL
 * that breaks a rule above; ROOST_ENOTFOUND for a missing mailbox;
 * ROOST_EIO when the key file cannot be read or written.
 */
int urlauth_generate(const struct roost_services *sv, const char *user, const char *url, size_t len,
                     const char *mechanism, struct buf *out);

/* RESETKEY: new access key for user's mailbox, or for every mailbox of the
 * user (mailbox NULL). 0; ROOST_ENOTFOUND for a mailbox that does not
 * exist; ROOST_EIO. */
int urlauth_reset(const struct roost_services *sv, const char *user, const char *mailbox);

/*
 * URLFETCH and BURL: the octets the URLAUTH-authorised url[0..len) names,
 * for user reading through via (user NULL: not authenticated), appended to
 * out, CRLF line ends throughout. 0, or ROOST_EPERM for anything that makes
 * the URL unusable (not ours, not authorised for this reader, expired,
 * wrong token, no such message or part): callers answer NIL or 554 alike
 * and do not say which. ROOST_ETOOBIG past URLAUTH_MAX_DATA; ROOST_EIO
 * when the store failed.
 */
int urlauth_fetch(const struct roost_services *sv, const char *user, enum urlauth_via via,
                  const char *url, size_t len, struct buf *out);

/* Is url[0..len) an absolute IMAP URL naming another server? (BURL answers
 * those apart from URLs that fail: RFC 4468 6.) */
bool urlauth_url_is_foreign(const struct roost_config *cfg, const char *url, size_t len);

/*
 * The same for an URL that a session's own user may read without URLAUTH
 * (CATENATE): absolute URLs of this server owned by user, path-absolute
 * ones ("/Drafts;UIDVALIDITY=1/;UID=3"), and relative ones (";UID=3")
 * naming the mailbox selected (NULL when none). A URL that carries a
 * URLAUTH verifier is checked as urlauth_fetch() does instead, so it may
 * name another user's message. Same results as urlauth_fetch().
 */
int urlauth_read(const struct roost_services *sv, const char *user, const char *selected,
                 const char *url, size_t len, struct buf *out);

/*
 * The message (or message/rfc822 part) data[0..len) of a URL's section is
 * in: BODYPARTSTRUCTURE (RFC 5524) needs the part the URL names, parsed.
 * urlauth_fetch_part() is urlauth_fetch() that also returns the section's
 * body structure (RFC 3501 BODYSTRUCTURE syntax, appended to bs) and,
 * when binary, its content with the transfer encoding undone instead of
 * the octets as stored (ROOST_EINVAL: an encoding that cannot be undone,
 * UNKNOWN-CTE). bs or data may be NULL when not wanted.
 */
int urlauth_fetch_part(const struct roost_services *sv, const char *user, enum urlauth_via via,
                       const char *url, size_t len, bool binary, struct buf *data, struct buf *bs);

#endif
