#ifndef ROOST_CONFIG_IMPL_H
#define ROOST_CONFIG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "roost/config.h"

/*
 * The key table shared by core/config.c (defaults, loading, freeing),
 * core/config_parse.c (parsing of values) and core/config_values.c
 * (printing, reload merge). Nothing outside core/config*.c includes this.
 */

enum key_type { T_STRING, T_BOOL, T_COUNT, T_SIZE, T_DURATION, T_LISTEN, T_STRLIST, T_MODE };

struct key_def {
	const char *section;
	const char *key;
	enum key_type type;
	const char *def; /* default in file syntax; NULL = computed */
	size_t offset;
	uint64_t min, max; /* for counts, sizes and durations */
};

#define F(field) offsetof(struct roost_config, field)
extern const struct key_def config_keys[];
extern const size_t config_n_keys;

/* Free a NULL-terminated string vector (NULL is fine). */
void config_strv_free(char **v);

/* config_parse.c: set one key from text; ROOST_EINVAL when the value is
 * bad, with the reason in why when there is more to say than "bad value". */
int config_set_value(struct roost_config *cfg, const struct key_def *k, const char *value,
                     char *why, size_t whylen);

#endif
