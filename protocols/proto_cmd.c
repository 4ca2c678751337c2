/*
 * The command-table lookup the three protocols share (roost/proto_cmd.h).
 */
#include <string.h>

#include "roost/proto_cmd.h"

enum proto_cmd_match
proto_cmd_find(const void *rows, size_t n, size_t size, const char *name, unsigned state,
               unsigned need, unsigned hide, const void **row_r)
{
	const unsigned char *p = rows;

	*row_r = NULL;
	for (size_t i = 0; i < n; i++, p += size) {
		/* Each row begins with its struct proto_cmd (PROTO_CMD_ROW). */
		const struct proto_cmd *c = (const struct proto_cmd *)(const void *)p;

		if (strcmp(c->name, name) != 0)
			continue;
		if ((c->flags & need) != need || (c->flags & hide) != 0)
			return PROTO_CMD_UNKNOWN;
		*row_r = c;
		return (c->states & PROTO_STATE(state)) != 0 ? PROTO_CMD_FOUND : PROTO_CMD_NOT_NOW;
	}
	return PROTO_CMD_UNKNOWN;
}
