#ifndef ROOST_SERVICES_H
#define ROOST_SERVICES_H

/*
 * What every protocol handler may use, created once by `roost serve` (or a
 * test server) and shared read-only by all threads. Each service documents
 * its own thread safety; all are safe to call from any worker.
 */
struct roost_config;
struct storage;
struct auth;
struct queue;
struct aliases;
struct ratelimit;
struct jmap_pushd;

struct roost_services {
	const struct roost_config *cfg;
	struct storage *storage;
	struct auth *auth;
	struct queue *queue;     /* outbound queue; NULL: relaying answers 451 */
	struct aliases *aliases; /* [smtp] aliases (reloadable); NULL: none */
	struct ratelimit *rate;  /* per-user submission rates; NULL: none */
	struct jmap_pushd *push; /* JMAP PushSubscription deliveries; NULL: none */
};

#endif
