#ifndef ROOST_SERVER_H
#define ROOST_SERVER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The server runtime: listeners, event loops, the worker pool and TLS.
 * Used by `roost serve` and by tests/runtime's test server.
 *
 *   server_create()        threads not started yet; blocks SIGTERM, SIGINT
 *                          and SIGHUP in the calling thread, so call it
 *                          before starting other threads (they inherit it)
 *   server_listen() x N    bind every listener (fails without side effects
 *                          on the ones already bound: the caller gives up)
 *   server_run()           start threads, serve until SIGTERM/SIGINT, then
 *                          shut down gracefully; SIGHUP calls the reload hook
 *   server_free()
 *
 * While it runs, the server answers on its control socket <data_dir>/ctl.sock
 * (mode 0600; only root and the server's own uid are served), one request
 * line and its reply per connection:
 *
 *   who              one "session id=N proto=P user=U peer=A since=EPOCH
 *                    mailbox=M bytes_in=N bytes_out=N" line per live
 *                    session (text values quoted as in the log, - for
 *                    none), then "ok sessions=N unlisted=N"
 *   kick USER [PROTO]  close USER's sessions (of listener or protocol
 *                    PROTO): idle ones get the protocol's goodbye first;
 *                    "ok kicked=N"
 *   reload           as SIGHUP; "ok" or "error <what failed>"
 *
 * Anything else gets "error <reason>". Used by `roost who|kick|reload`.
 */

struct server;
struct proto_ops;
struct roost_config;
struct roost_services;

/* Called on SIGHUP or a `reload` request, from a non-loop thread, one call
 * at a time, after the configuration file was re-read: reload users,
 * aliases, apply cfg (the live configuration, see server_config()) to
 * services... 0, or an error with a message in err (the tables that failed
 * to load are kept as they were). */
typedef int server_reload_fn(void *arg, const struct roost_config *cfg, char *err, size_t errlen);

int server_create(const struct roost_config *cfg, const struct roost_services *services,
                  struct server **server_r);
/*
 * Bind the addresses of one listener. name is the listener name ("imaps"),
 * addrs the NULL-terminated address list from the config, implicit_tls
 * whether TLS starts at accept. ROOST_EIO (logged with the address and
 * errno) when an address cannot be bound.
 */
int server_listen(struct server *s, const char *name, char *const *addrs,
                  const struct proto_ops *ops, bool implicit_tls);
void server_set_reload(struct server *s, server_reload_fn *fn, void *arg);
/*
 * As SIGHUP does, from any thread but a loop's: re-read the configuration
 * file (when the server started from one), publish the values that may
 * change at run time (config_reload_merge() says which) and log the others
 * as needing a restart; reload the TLS certificate and key; call the reload
 * hook. A file that does not load changes nothing: it is logged
 * (event=reload_failed file=config ... keeping=old) and the rest still
 * reloads. summary: "applied=a.b,c.d restart=e.f" (either part left out
 * when empty; "unchanged" when nothing differs). 0, or an error with a
 * message in err.
 */
int server_reload(struct server *s, char *summary, size_t summarylen, char *err, size_t errlen);
/*
 * The live configuration: the one the server started with until a reload
 * publishes another. Any thread. What it returns stays valid until
 * server_free(), but a later call may return a newer one: read it once per
 * step (a command, a timer) for values that belong together.
 */
const struct roost_config *server_config(const struct server *s);
/* Serve until a shutdown signal; 0 after a clean shutdown. */
int server_run(struct server *s);
/* Ask server_run() to return (as SIGTERM does); any thread. */
void server_stop(struct server *s);
void server_free(struct server **s);

#endif
