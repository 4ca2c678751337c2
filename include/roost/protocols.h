#ifndef ROOST_PROTOCOLS_H
#define ROOST_PROTOCOLS_H

#include <stdbool.h>

/*
 * Which protocol serves which listener. `roost serve` opens each listener
 * enabled in [listen] with the handler found here.
 */
struct proto_ops;

struct protocol_binding {
	const char *listener; /* "imap", "imaps", "smtp", ... */
	const struct proto_ops *ops;
	bool implicit_tls; /* TLS from the first byte (imaps, pop3s, smtps) */
};

/* The binding for a listener name, or NULL when this build has none. */
const struct protocol_binding *protocol_for_listener(const char *listener);

#endif
