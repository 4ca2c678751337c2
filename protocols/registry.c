#include <stddef.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/http.h"
#include "roost/imap.h"
#include "roost/pop3.h"
#include "roost/protocols.h"
#include "roost/smtp.h"

/* Each protocol adds its listeners here. */
static const struct protocol_binding bindings[] = {
    {"smtp", &smtp_proto_ops, false},    {"submission", &smtp_proto_ops, false},
    {"smtps", &smtp_proto_ops, true},    {"lmtp", &smtp_proto_ops, false},
    {"imap", &imap_proto_ops, false},    {"imaps", &imap_proto_ops, true},
    {"pop3", &pop3_proto_ops, false},    {"pop3s", &pop3_proto_ops, true},
    {"http", &http_proto_ops, false},    {"https", &http_proto_ops, true},
    {"metrics", &http_proto_ops, false}, {NULL, NULL, false},
};

const struct protocol_binding *
protocol_for_listener(const char *listener)
{
	for (const struct protocol_binding *b = bindings; b->listener != NULL; b++) {
		if (strcmp(b->listener, listener) == 0)
			return b;
	}
	return NULL;
}
