#ifndef ROOST_RELAY_H
#define ROOST_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Who may send mail through this host, and as whom (services/relay_policy.c).
 * Pure functions over the configuration: thread-safe, no I/O.
 *
 *   relaying      allowed for an authenticated client, or a client whose
 *                 address is in [smtp] trusted_networks (default loopback,
 *                 as Postfix's mynetworks_style = host)
 *   sender        an authenticated client may use only its own address as
 *                 envelope sender and in From: ("alice@example.org"; with a
 *                 recipient delimiter also "alice+tag@example.org"; a user
 *                 without a domain may use any local domain), and an alias
 *                 that names the user among its own targets (roost/aliases.h)
 *   spoofing      an unauthenticated client from outside the trusted
 *                 networks may not use a local domain as envelope sender
 */
struct roost_config;
struct aliases;

/* Is every [smtp] trusted_networks entry a valid CIDR (or address)?
 * 0, or ROOST_ECONFIG with the bad entry in *bad_r. */
int relay_check_config(const struct roost_config *cfg, const char **bad_r);

/* Is the peer address text ("127.0.0.1", "::1", "unix") in a trusted
 * network? A unix-socket peer is trusted (it is local). */
bool relay_peer_trusted(const struct roost_config *cfg, const char *peer);

/* Does addr (CIDR "a.b.c.d/n", "x::/n" or a plain address) contain peer? */
bool relay_cidr_match(const char *cidr, const char *peer);

/* May user (an auth canonical name) send as address? Case-insensitive.
 * al: the aliases granting sender addresses, or NULL. */
bool relay_sender_allowed(const struct roost_config *cfg, const struct aliases *al,
                          const char *user, const char *address);

/*
 * Check the addresses of the From: field in the header block hdr[0..len)
 * (several fields, or none, fail). 0 when every address is allowed for
 * user; ROOST_EPERM otherwise, with the first offending address (or "")
 * copied into bad (size badlen).
 */
int relay_from_header_check(const struct roost_config *cfg, const struct aliases *al,
                            const char *user, const uint8_t *hdr, size_t len, char *bad,
                            size_t badlen);

/* The first address of the (one) From: field of hdr[0..len) into addr;
 * ROOST_ENOTFOUND when there is none. */
int relay_from_address(const uint8_t *hdr, size_t len, char *addr, size_t addrlen);

/* The domain part of an address ("" when it has none). */
const char *relay_domain(const char *address);

#endif
