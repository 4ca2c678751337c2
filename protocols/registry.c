#include <stddef.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/protocols.h"

/* Each protocol adds its listeners here. */
static const struct protocol_binding bindings[] = {
	{ NULL, NULL, false },
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
