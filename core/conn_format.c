#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/xalloc.h"

/*
 * Text output over conn_write(), apart from the runtime's buffers so that
 * tests/fuzz/conn_fuzz.c, which stands in for the runtime's connections,
 * formats with this same code.
 */

int
conn_write_str(struct conn *c, const char *s)
{
	return conn_write(c, s, strlen(s));
}

int
conn_printf(struct conn *c, const char *fmt, ...)
{
	char stack[1024];
	va_list ap;
	int n, err;

	va_start(ap, fmt);
	n = vsnprintf(stack, sizeof(stack), fmt, ap);
	va_end(ap);
	if (n < 0)
		return ROOST_EINVAL;
	if ((size_t)n < sizeof(stack))
		return conn_write(c, stack, (size_t)n);
	{
		char *big = xmalloc((size_t)n + 1);

		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		err = conn_write(c, big, (size_t)n);
		free(big);
	}
	return err;
}
