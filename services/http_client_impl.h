/*
 * Private to the outgoing HTTP client (http_client.c: URL, addresses,
 * connection, TLS and request writing; http_client_response.c: reading and
 * parsing the response): the connection and its per-phase deadline helpers.
 */
#ifndef ROOST_HTTP_CLIENT_IMPL_H
#define ROOST_HTTP_CLIENT_IMPL_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "roost/error.h"
#include "roost/http_client.h"
#include "roost/loop.h"

#define MAX_LINE 1024 /* a chunk-size or trailer line */

struct conn {
	int fd;
	SSL *ssl;
	int64_t deadline; /* of the current phase, CLOCK_MONOTONIC ms */
	const char *err;
	/* read buffer: [pos, len) not consumed yet */
	uint8_t *rb;
	size_t pos, len, cap;
	bool eof;
};

static inline int
fail(struct conn *c, int rc, const char *why)
{
	if (c->err == NULL)
		c->err = why;
	return rc;
}

/* Wait until fd is ready for events or the deadline passes. */
static inline int
wait_fd(struct conn *c, short events)
{
	for (;;) {
		int64_t left = c->deadline - (int64_t)clock_ms();
		struct pollfd p = {.fd = c->fd, .events = events};
		int n;

		if (left <= 0)
			return fail(c, ROOST_ETIMEOUT, "timeout");
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return fail(c, ROOST_ETEMP, "poll failed");
	}
}

/* The response to a request of method on c (http_client_response.c). */
int httpc_read_response(struct conn *c, const char *method, const struct httpc_opts *o,
                        struct httpc_response *resp);

#endif
