/*
 * The aliases file: a table of keys and target lists (roost/aliases.h).
 * Loaded once, then read-only; lookups are a linear walk, which is fine
 * for the hand-written files this serves (hundreds of entries, not
 * millions: a site with that many wants a database map).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "roost/aliases.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/xalloc.h"

struct alias {
	char *key; /* lower case: "postmaster" or "team@example.org" */
	char **targets;
	size_t n;
};

struct aliases {
	struct alias *v;
	size_t n;
};

size_t
aliases_count(const struct aliases *a)
{
	return a != NULL ? a->n : 0;
}

void
aliases_free(struct aliases **ap)
{
	struct aliases *a = *ap;

	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++) {
		for (size_t j = 0; j < a->v[i].n; j++)
			free(a->v[i].targets[j]);
		free(a->v[i].targets);
		free(a->v[i].key);
	}
	free(a->v);
	free(a);
	*ap = NULL;
}

/* An address as a key or target may spell it: printable ASCII or UTF-8,
 * no blank, no quote or angle bracket, at most one '@' with text on both
 * sides (a target may have no domain: a local user). */
static bool
address_ok(const char *s)
{
	const char *at = strchr(s, '@');
	size_t len = strlen(s);

	if (len == 0 || len >= DELIVERY_MAX_USER)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '<' || *p == '>' || *p == '(' ||
		    *p == ')' || *p == ',' || *p == ':' || *p == ';' || *p == '\\')
			return false;
	}
	if (at != NULL && (at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL))
		return false;
	return true;
}

static void
lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

/* One logical entry (continuations joined) into a->v. */
static int
add_entry(struct aliases *a, const struct roost_config *cfg, char *text, const char *path,
          unsigned lineno, char *err, size_t errlen)
{
	char *colon = strchr(text, ':'), *key, *rest, *tok;
	struct alias al = {0};

	if (colon == NULL) {
		snprintf(err, errlen, "%s:%u: expected \"name: target, ...\"", path, lineno);
		return ROOST_ECONFIG;
	}
	*colon = '\0';
	key = trim(text);
	if (!address_ok(key)) {
		snprintf(err, errlen, "%s:%u: bad alias name \"%s\"", path, lineno, key);
		return ROOST_ECONFIG;
	}
	if (strchr(key, '@') != NULL && !delivery_domain_is_local(cfg, strchr(key, '@') + 1)) {
		snprintf(err, errlen, "%s:%u: alias %s is not in a local domain ([smtp] domains)",
		         path, lineno, key);
		return ROOST_ECONFIG;
	}
	lower(key);
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->v[i].key, key) == 0) {
			snprintf(err, errlen, "%s:%u: alias %s is defined twice", path, lineno,
			         key);
			return ROOST_ECONFIG;
		}
	}
	rest = colon + 1;
	if (*trim(rest) == '\0') {
		snprintf(err, errlen, "%s:%u: alias %s has no target", path, lineno, key);
		return ROOST_ECONFIG;
	}
	while ((tok = strsep(&rest, ",")) != NULL) {
		char *t = trim(tok);

		if (*t == '|' || *t == '/' || strncasecmp(t, ":include:", 9) == 0) {
			snprintf(err, errlen,
			         "%s:%u: alias %s: programs, files and :include: are not supported "
			         "(\"%s\")",
			         path, lineno, key, t);
			goto fail;
		}
		if (!address_ok(t)) {
			snprintf(err, errlen, "%s:%u: alias %s: bad target \"%s\"", path, lineno,
			         key, t);
			goto fail;
		}
		if (al.n == ALIASES_MAX_TARGETS) {
			snprintf(err, errlen, "%s:%u: alias %s: more than %d targets", path, lineno,
			         key, ALIASES_MAX_TARGETS);
			goto fail;
		}
		al.targets = xreallocarray(al.targets, al.n + 1, sizeof(*al.targets));
		al.targets[al.n++] = xstrdup(t);
	}
	if (al.n == 0) {
		snprintf(err, errlen, "%s:%u: alias %s has no target", path, lineno, key);
		goto fail;
	}
	al.key = xstrdup(key);
	a->v = xreallocarray(a->v, a->n + 1, sizeof(*a->v));
	a->v[a->n++] = al;
	return 0;
fail:
	for (size_t i = 0; i < al.n; i++)
		free(al.targets[i]);
	free(al.targets);
	return ROOST_ECONFIG;
}

int
aliases_load(const struct roost_config *cfg, struct aliases **a_r, char *err, size_t errlen)
{
	struct aliases *a = xcalloc(1, sizeof(*a));
	const char *path = cfg->smtp_aliases;
	char *line = NULL;
	size_t cap = 0;
	char *entry = NULL;
	size_t entry_len = 0;
	unsigned lineno = 0, entry_line = 0;
	FILE *f;
	int ret = 0;

	*a_r = NULL;
	if (path == NULL || path[0] == '\0') {
		*a_r = a;
		return 0;
	}
	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "%s: [smtp] aliases: cannot open: %s", path, strerror(errno));
		aliases_free(&a);
		return ROOST_ECONFIG;
	}
	for (;;) {
		ssize_t got = getline(&line, &cap, f);
		bool more = got >= 0;
		char *s = NULL;

		if (more) {
			lineno++;
			if (got > 8192) {
				snprintf(err, errlen, "%s:%u: line too long", path, lineno);
				ret = ROOST_ECONFIG;
				break;
			}
			if (memchr(line, '\0', (size_t)got) != NULL) {
				snprintf(err, errlen, "%s:%u: NUL byte", path, lineno);
				ret = ROOST_ECONFIG;
				break;
			}
			s = trim(line);
			if (*s == '#' || *s == '\0')
				continue;
			/* A line starting with a blank continues the entry. */
			if ((line[0] == ' ' || line[0] == '\t') && entry != NULL) {
				if (entry_len + strlen(s) + 2 > 1 << 20) {
					snprintf(err, errlen, "%s:%u: entry too long", path,
					         lineno);
					ret = ROOST_ECONFIG;
					break;
				}
				entry = xrealloc(entry, entry_len + strlen(s) + 2);
				entry[entry_len++] = ' ';
				memcpy(entry + entry_len, s, strlen(s) + 1);
				entry_len += strlen(s);
				continue;
			}
		}
		if (entry != NULL) {
			ret = add_entry(a, cfg, entry, path, entry_line, err, errlen);
			free(entry);
			entry = NULL;
			if (ret != 0)
				break;
		}
		if (!more)
			break;
		entry = xstrdup(s);
		entry_len = strlen(s);
		entry_line = lineno;
	}
	free(entry);
	free(line);
	if (ret == 0 && ferror(f)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		ret = ROOST_ECONFIG;
	}
	fclose(f);
	if (ret != 0) {
		aliases_free(&a);
		return ret;
	}
	*a_r = a;
	return 0;
}

static const struct alias *
find(const struct aliases *a, const char *key, size_t len)
{
	for (size_t i = 0; i < a->n; i++) {
		if (strlen(a->v[i].key) == len && strncasecmp(a->v[i].key, key, len) == 0)
			return &a->v[i];
	}
	return NULL;
}

char *const *
aliases_lookup(const struct aliases *a, const struct roost_config *cfg, const char *address,
               size_t *n_r)
{
	const char *at = strrchr(address, '@');
	const struct alias *al = NULL;

	if (a == NULL || a->n == 0)
		return NULL;
	if (at != NULL) {
		if (!delivery_domain_is_local(cfg, at + 1))
			return NULL;
		al = find(a, address, strlen(address));
		if (al == NULL)
			al = find(a, address, (size_t)(at - address));
	} else {
		al = find(a, address, strlen(address));
	}
	if (al == NULL)
		return NULL;
	*n_r = al->n;
	return al->targets;
}

/* Does target (an alias's entry) name user? "alice" names alice and
 * alice@<a local domain>; "alice@example.org" names alice@example.org and,
 * in a local domain, the domain-less user alice. */
static bool
names_user(const struct roost_config *cfg, const char *target, const char *user)
{
	const char *tat = strchr(target, '@'), *uat = strchr(user, '@');

	if (strcasecmp(target, user) == 0)
		return true;
	if (tat == NULL && uat != NULL)
		return (size_t)(uat - user) == strlen(target) &&
		       strncasecmp(user, target, strlen(target)) == 0 &&
		       delivery_domain_is_local(cfg, uat + 1);
	if (tat != NULL && uat == NULL)
		return (size_t)(tat - target) == strlen(user) &&
		       strncasecmp(user, target, strlen(user)) == 0 &&
		       delivery_domain_is_local(cfg, tat + 1);
	return false;
}

bool
aliases_sender_allowed(const struct aliases *a, const struct roost_config *cfg, const char *user,
                       const char *address)
{
	char *const *t;
	size_t n = 0;

	if (user == NULL || user[0] == '\0' || strchr(address, '@') == NULL)
		return false;
	t = aliases_lookup(a, cfg, address, &n);
	for (size_t i = 0; t != NULL && i < n; i++) {
		if (names_user(cfg, t[i], user))
			return true;
	}
	return false;
}
