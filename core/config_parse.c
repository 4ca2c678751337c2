/*
 * Parsing of configuration values: trimming, numbers with their scale
 * suffixes (sizes, durations), booleans, lists, addresses and [listen]
 * specs, and config_set_value(), which stores one key's text into its
 * field of struct roost_config by the key table's type. Split from
 * config.c, which holds the key table, defaults, validation and file
 * reading.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_impl.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

/* ---- value parsing ---- */

char *
config_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

static int
parse_u64(const char *s, uint64_t *v_r, const char **rest_r)
{
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return ROOST_EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return ROOST_EINVAL;
		v = v * 10 + d;
	}
	*v_r = v;
	*rest_r = s;
	return 0;
}

static int
parse_scaled(const char *s, enum key_type type, uint64_t *v_r)
{
	const char *rest;
	uint64_t v, mult = 1;

	if (parse_u64(s, &v, &rest) != 0)
		return ROOST_EINVAL;
	if (type == T_SIZE) {
		switch (*rest) {
		case '\0':
			break;
		case 'k':
		case 'K':
			mult = 1024;
			rest++;
			break;
		case 'm':
		case 'M':
			mult = 1024 * 1024;
			rest++;
			break;
		case 'g':
		case 'G':
			mult = 1024 * 1024 * 1024;
			rest++;
			break;
		default:
			return ROOST_EINVAL;
		}
		if (*rest == 'B' || *rest == 'b')
			rest++;
	} else if (type == T_DURATION) {
		switch (*rest) {
		case '\0':
			break;
		case 's':
			rest++;
			break;
		case 'm':
			mult = 60;
			rest++;
			break;
		case 'h':
			mult = 3600;
			rest++;
			break;
		case 'd':
			mult = 86400;
			rest++;
			break;
		default:
			return ROOST_EINVAL;
		}
	}
	if (*rest != '\0')
		return ROOST_EINVAL;
	if (mult != 1 && v > UINT64_MAX / mult)
		return ROOST_EINVAL;
	*v_r = v * mult;
	return 0;
}

static int
parse_bool(const char *s, bool *v_r)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*v_r = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*v_r = false;
			return 0;
		}
	}
	return ROOST_EINVAL;
}

void
config_strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

/* Split a comma-separated list; empty items are an error. */
static int
parse_list(const char *s, char ***v_r)
{
	char *copy = xstrdup(s), *save = NULL, *tok;
	char **v = xcalloc(1, sizeof(*v));
	size_t n = 0;

	if (*config_trim(copy) == '\0') {
		free(copy);
		*v_r = v;
		return 0;
	}
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *item = config_trim(tok);

		if (*item == '\0' || strchr(item, ' ') != NULL) {
			free(copy);
			config_strv_free(v);
			return ROOST_EINVAL;
		}
		v = xreallocarray(v, n + 2, sizeof(*v));
		v[n++] = xstrdup(item);
		v[n] = NULL;
	}
	/* "a,,b" and "a," leave empty tokens strtok_r skips: catch them. */
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == ',') {
			const char *q = p + 1;

			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == ',' || *q == '\0') {
				free(copy);
				config_strv_free(v);
				return ROOST_EINVAL;
			}
		}
	}
	free(copy);
	*v_r = v;
	return 0;
}

int
config_parse_addr(const char *spec, struct config_addr *addr_r)
{
	const char *colon, *host_start, *host_end;
	uint64_t port;
	const char *rest;

	memset(addr_r, 0, sizeof(*addr_r));
	if (strncmp(spec, "unix:", 5) == 0) {
		size_t len = strlen(spec + 5);

		if (len == 0 || len >= sizeof(addr_r->path) || spec[5] != '/')
			return ROOST_EINVAL;
		addr_r->is_unix = true;
		memcpy(addr_r->path, spec + 5, len + 1);
		return 0;
	}
	if (spec[0] == '[') {
		host_start = spec + 1;
		host_end = strchr(spec, ']');
		if (host_end == NULL || host_end[1] != ':')
			return ROOST_EINVAL;
		colon = host_end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return ROOST_EINVAL;
		host_start = spec;
		host_end = colon;
		if (memchr(spec, ':', (size_t)(colon - spec)) != NULL)
			return ROOST_EINVAL; /* bare IPv6 needs brackets */
	}
	if ((size_t)(host_end - host_start) >= sizeof(addr_r->host))
		return ROOST_EINVAL;
	if (parse_u64(colon + 1, &port, &rest) != 0 || *rest != '\0' || port == 0 || port > 65535)
		return ROOST_EINVAL;
	memcpy(addr_r->host, host_start, (size_t)(host_end - host_start));
	if (strcmp(addr_r->host, "*") == 0)
		addr_r->host[0] = '\0';
	addr_r->port = (uint16_t)port;
	return 0;
}

/* Why spec is not a listen address, for the error message. */
static void
addr_problem(const char *spec, char *why, size_t whylen)
{
	const char *colon = strrchr(spec, ':'), *rest;
	uint64_t port;

	if (strncmp(spec, "unix:", 5) == 0) {
		snprintf(why, whylen, "a unix socket needs an absolute path under %zu bytes",
		         sizeof(((struct config_addr *)0)->path));
		return;
	}
	if (colon == NULL || colon[1] == '\0') {
		snprintf(why, whylen, "%s has no port (host:port, [v6]:port, *:port, unix:/path)",
		         spec);
		return;
	}
	if (parse_u64(colon + 1, &port, &rest) == 0 && *rest == '\0' &&
	    (port == 0 || port > 65535)) {
		snprintf(why, whylen, "port %s is out of range (1-65535)", colon + 1);
		return;
	}
	if (parse_u64(colon + 1, &port, &rest) != 0 || *rest != '\0') {
		snprintf(why, whylen, "port \"%s\" is not a number", colon + 1);
		return;
	}
	snprintf(why, whylen, "%s is not host:port ([v6]:port for IPv6)", spec);
}

static int
parse_listen(const char *s, struct config_listen *l, char *why, size_t whylen)
{
	char **v = NULL;
	struct config_addr addr;

	if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0) {
		config_strv_free(l->addrs);
		l->addrs = xcalloc(1, sizeof(char *));
		return 0;
	}
	if (parse_list(s, &v) != 0 || v[0] == NULL) {
		if (v != NULL)
			config_strv_free(v);
		return ROOST_EINVAL;
	}
	for (char **p = v; *p != NULL; p++) {
		if (config_parse_addr(*p, &addr) != 0) {
			addr_problem(*p, why, whylen);
			config_strv_free(v);
			return ROOST_EINVAL;
		}
	}
	config_strv_free(l->addrs);
	l->addrs = v;
	return 0;
}

/* Set one key from text; ROOST_EINVAL when the value is bad, with the
 * reason in why when there is more to say than "bad value". */
int
config_set_value(struct roost_config *cfg, const struct key_def *k, const char *value, char *why,
                 size_t whylen)
{
	void *field = (char *)cfg + k->offset;
	uint64_t v;
	bool b;
	char **list;

	switch (k->type) {
	case T_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case T_BOOL:
		if (parse_bool(value, &b) != 0)
			return ROOST_EINVAL;
		*(bool *)field = b;
		return 0;
	case T_COUNT:
	case T_SIZE:
	case T_DURATION:
		if (parse_scaled(value, k->type == T_COUNT ? T_COUNT : k->type, &v) != 0)
			return ROOST_EINVAL;
		if (v < k->min || v > k->max) {
			snprintf(why, whylen, "out of range (%llu to %llu%s)",
			         (unsigned long long)k->min, (unsigned long long)k->max,
			         k->type == T_SIZE       ? " bytes"
			         : k->type == T_DURATION ? " seconds"
			                                 : "");
			return ROOST_EINVAL;
		}
		/* Counts and durations live in unsigned fields, sizes in uint64_t;
		 * expunge_log_retention is the one 64-bit duration. */
		if (k->type == T_SIZE || k->offset == F(expunge_log_retention))
			*(uint64_t *)field = v;
		else
			*(unsigned *)field = (unsigned)v;
		return 0;
	case T_MODE:
		/* File permission bits, octal as chmod takes them. */
		v = 0;
		if (*value == '\0')
			return ROOST_EINVAL;
		for (const char *p = value; *p != '\0'; p++) {
			if (*p < '0' || *p > '7' || v > k->max)
				return ROOST_EINVAL;
			v = v * 8 + (uint64_t)(*p - '0');
		}
		if (v > k->max)
			return ROOST_EINVAL;
		*(unsigned *)field = (unsigned)v;
		return 0;
	case T_LISTEN:
		return parse_listen(value, (struct config_listen *)field, why, whylen);
	case T_STRLIST:
		if (parse_list(value, &list) != 0)
			return ROOST_EINVAL;
		config_strv_free(*(char ***)field);
		*(char ***)field = list;
		return 0;
	}
	return ROOST_EINVAL;
}
