#ifndef ROOST_SERVER_H
#define ROOST_SERVER_H

#include <stdbool.h>

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
 */

struct server;
struct proto_ops;
struct roost_config;
struct roost_services;

/* Called on SIGHUP from a non-loop thread: reload users and TLS certificates. */
typedef void server_reload_fn(void *arg);

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
/* Serve until a shutdown signal; 0 after a clean shutdown. */
int server_run(struct server *s);
/* Ask server_run() to return (as SIGTERM does); any thread. */
void server_stop(struct server *s);
void server_free(struct server **s);

#endif
