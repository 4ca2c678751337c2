/*
 * The aliases file: a table of keys and target lists (roost/aliases.h).
 * A table is read-only once loaded; aliases_reload() builds a new one and
 * swaps it in, so a lookup sees the old table or the new, never a mix, and
 * a file that does not load leaves the old table in use. Lookups are a
 * linear walk, which is fine for the hand-written files this serves
 * (hundreds of entries, not millions: a site with that many wants a
 * database map).
 *
 * Lock rule: mu guards cur, the pointer to the table in use. A lookup holds
 * it for the walk and the copy of one target list; a reload only for the
 * swap (the file is read before, the old table freed after). The lock is
 * not part of the table's value, so const lookups take it too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "roost/aliases.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

struct alias {
	char *key; /* lower case: "postmaster" or "team@example.org" */
	char **targets;
	size_t n;
};

struct alias_table {
	struct alias *v;
	size_t n;
};

struct aliases {
	const struct roost_config *cfg;
	pthread_mutex_t mu;
	struct alias_table *cur; /* guarded by mu */
};

static void
table_free(struct alias_table **tp)
{
	struct alias_table *a = *tp;

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
	*tp = NULL;
}

static pthread_mutex_t *
lock_of(const struct aliases *a)
{
	return (pthread_mutex_t *)&a->mu;
}

size_t
aliases_count(const struct aliases *a)
{
	size_t n;

	if (a == NULL)
		return 0;
	pthread_mutex_lock(lock_of(a));
	n = a->cur->n;
	pthread_mutex_unlock(lock_of(a));
	return n;
}

void
aliases_free(struct aliases **ap)
{
	struct aliases *a = *ap;

	if (a == NULL)
		return;
	table_free(&a->cur);
	pthread_mutex_destroy(&a->mu);
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

/* One logical entry (continuations joined) into a->v. */
static int
add_entry(struct alias_table *a, const struct roost_config *cfg, char *text, const char *path,
          unsigned lineno, char *err, size_t errlen)
{
	char *colon = strchr(text, ':'), *key, *rest, *tok;
	struct alias al = {0};

	if (colon == NULL) {
		snprintf(err, errlen, "%s:%u: expected \"name: target, ...\"", path, lineno);
		return ROOST_ECONFIG;
	}
	*colon = '\0';
	key = config_trim(text);
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
	if (*config_trim(rest) == '\0') {
		snprintf(err, errlen, "%s:%u: alias %s has no target", path, lineno, key);
		return ROOST_ECONFIG;
	}
	while ((tok = strsep(&rest, ",")) != NULL) {
		char *t = config_trim(tok);

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

static int
table_load(const struct roost_config *cfg, struct alias_table **a_r, char *err, size_t errlen)
{
	struct alias_table *a = xcalloc(1, sizeof(*a));
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
		table_free(&a);
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
			s = config_trim(line);
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
		table_free(&a);
		return ret;
	}
	*a_r = a;
	return 0;
}

int
aliases_load(const struct roost_config *cfg, struct aliases **a_r, char *err, size_t errlen)
{
	struct alias_table *t;
	struct aliases *a;
	int ret;

	*a_r = NULL;
	if ((ret = table_load(cfg, &t, err, errlen)) != 0)
		return ret;
	a = xcalloc(1, sizeof(*a));
	a->cfg = cfg;
	pthread_mutex_init(&a->mu, NULL);
	a->cur = t;
	*a_r = a;
	return 0;
}

int
aliases_reload(struct aliases *a, char *err, size_t errlen)
{
	struct alias_table *t = NULL, *old;
	const char *path = a->cfg->smtp_aliases;
	int ret;

	if ((ret = table_load(a->cfg, &t, err, errlen)) != 0) {
		log_error("event=reload_failed file=aliases path=%s error=%s keeping=old",
		          LOG_QUOTE(path), LOG_QUOTE(err));
		return ret;
	}
	pthread_mutex_lock(&a->mu);
	old = a->cur;
	a->cur = t;
	pthread_mutex_unlock(&a->mu);
	log_info("event=reloaded file=aliases path=%s aliases=%zu",
	         LOG_QUOTE(path != NULL ? path : ""), t->n);
	table_free(&old);
	return 0;
}

static const struct alias *
find(const struct alias_table *a, const char *key, size_t len)
{
	for (size_t i = 0; i < a->n; i++) {
		if (strlen(a->v[i].key) == len && strncasecmp(a->v[i].key, key, len) == 0)
			return &a->v[i];
	}
	return NULL;
}

/* The targets of al in one allocation: the pointers, then the strings. */
static char **
copy_targets(const struct alias *al)
{
	size_t size = al->n * sizeof(char *);
	char **v, *p;

	for (size_t i = 0; i < al->n; i++)
		size += strlen(al->targets[i]) + 1;
	v = xmalloc(size);
	p = (char *)(v + al->n);
	for (size_t i = 0; i < al->n; i++) {
		size_t len = strlen(al->targets[i]) + 1;

		memcpy(p, al->targets[i], len);
		v[i] = p;
		p += len;
	}
	return v;
}

char **
aliases_lookup(const struct aliases *a, const struct roost_config *cfg, const char *address,
               size_t *n_r)
{
	const char *at = strrchr(address, '@');
	const struct alias *al = NULL;
	const struct alias_table *t;
	char **v = NULL;

	if (a == NULL)
		return NULL;
	if (at != NULL && !delivery_domain_is_local(cfg, at + 1))
		return NULL;
	pthread_mutex_lock(lock_of(a));
	t = a->cur;
	if (at != NULL) {
		al = find(t, address, strlen(address));
		if (al == NULL)
			al = find(t, address, (size_t)(at - address));
	} else {
		al = find(t, address, strlen(address));
	}
	if (al != NULL) {
		v = copy_targets(al);
		*n_r = al->n;
	}
	pthread_mutex_unlock(lock_of(a));
	return v;
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
	char **t;
	size_t n = 0;
	bool ok = false;

	if (user == NULL || user[0] == '\0' || strchr(address, '@') == NULL)
		return false;
	t = aliases_lookup(a, cfg, address, &n);
	for (size_t i = 0; t != NULL && i < n && !ok; i++)
		ok = names_user(cfg, t[i], user);
	free(t);
	return ok;
}

void
aliases_sender_addresses(const struct aliases *a, const struct roost_config *cfg, const char *user,
                         void (*fn)(const char *address, void *arg), void *arg)
{
	char addr[ALIASES_ADDRESS_MAX], **keys = NULL;
	size_t n = 0;

	if (a == NULL)
		return;
	/* the keys naming the user, copied under the lock (the checks below
	 * take it again, and a reload may swap the table meanwhile) */
	pthread_mutex_lock(lock_of(a));
	for (size_t i = 0; i < a->cur->n; i++) {
		const struct alias *al = &a->cur->v[i];
		bool mine = false;

		for (size_t k = 0; k < al->n && !mine; k++)
			mine = names_user(cfg, al->targets[k], user);
		if (mine) {
			keys = xreallocarray(keys, n + 1, sizeof(*keys));
			keys[n++] = xstrdup(al->key);
		}
	}
	pthread_mutex_unlock(lock_of(a));
	for (size_t i = 0; i < n; i++) {
		if (strchr(keys[i], '@') != NULL) {
			fn(keys[i], arg);
		} else {
			/* a local part applies in every local domain, unless a
			 * whole-address key of that domain says otherwise */
			for (char **d = cfg->smtp_domains; d != NULL && *d != NULL; d++) {
				if ((size_t)snprintf(addr, sizeof(addr), "%s@%s", keys[i], *d) >=
				    sizeof(addr))
					continue;
				if (aliases_sender_allowed(a, cfg, user, addr))
					fn(addr, arg);
			}
		}
		free(keys[i]);
	}
	free(keys);
}
