#ifndef ROOST_ALIASES_H
#define ROOST_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The aliases file ([smtp] aliases), in the shape of /etc/aliases:
 *
 *     # comment
 *     postmaster: alice
 *     abuse:      alice, bob@example.org
 *     team@example.org: alice, bob,
 *         carol@elsewhere.example          (a line starting blank continues)
 *
 * A key is a local part, which applies in every local domain ([smtp]
 * domains), or a whole address in one local domain; keys are
 * case-insensitive and a whole-address key wins over a local-part key.
 * Targets are local users, other aliases (expanded, at most
 * ALIASES_MAX_DEPTH deep; an alias naming itself means the user of that
 * name, as in `alice: alice, archive`) or addresses in other domains, which
 * go to the outbound queue. Programs (`|cmd`), files (`/path`) and
 * `:include:` are refused: delivery never runs anything. Expansion lives in
 * delivery_expand() (roost/delivery.h).
 *
 * Sender aliases: an authenticated user may use an alias as envelope
 * sender and in From: when one of the alias's own targets names that user
 * (aliases_sender_allowed()); nested aliases grant nothing.
 *
 * Any thread may look up. aliases_reload() (SIGHUP, `roost reload`) reads
 * the file again and swaps the new table in atomically; a file that does
 * not load is logged (event=reload_failed) and the old table stays.
 */
struct roost_config;
struct aliases;

#define ALIASES_MAX_DEPTH 8
#define ALIASES_MAX_TARGETS 1000

/*
 * Read cfg->smtp_aliases ("" = no aliases: an empty table). 0 with *a_r
 * set; ROOST_ECONFIG with a message naming the file and line in err (a
 * missing file, a bad key or target, a repeated key).
 */
int aliases_load(const struct roost_config *cfg, struct aliases **a_r, char *err, size_t errlen);
/*
 * Read the file again (cfg is the one given to aliases_load()): 0 once the
 * new table is in use; ROOST_ECONFIG with the message in err (and logged)
 * when it does not load, the old table kept. Any thread; lookups running
 * meanwhile see the old table or the new.
 */
int aliases_reload(struct aliases *a, char *err, size_t errlen);
void aliases_free(struct aliases **a);
size_t aliases_count(const struct aliases *a);

/*
 * The targets of the alias for address ("local@domain", domain local, or a
 * bare local part): NULL when there is none. The array (n_r entries, the
 * strings in the same block) is the caller's: free() it. A reload does not
 * touch it. a may be NULL.
 */
char **aliases_lookup(const struct aliases *a, const struct roost_config *cfg, const char *address,
                      size_t *n_r);

/* May user (an auth canonical name) use address, an alias, as sender? */
bool aliases_sender_allowed(const struct aliases *a, const struct roost_config *cfg,
                            const char *user, const char *address);

/* Every address user may send as through an alias (those
 * aliases_sender_allowed() grants: a whole-address key, or a local-part
 * key in each local domain), fn(address, arg) for each, in the table's
 * order; address is valid for the call. a may be NULL. */
#define ALIASES_ADDRESS_MAX 512
void aliases_sender_addresses(const struct aliases *a, const struct roost_config *cfg,
                              const char *user, void (*fn)(const char *address, void *arg),
                              void *arg);

#endif
