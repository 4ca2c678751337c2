#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"
#include "roost/config.h"
#include "roost/log.h"
#include "roost/xalloc.h"

/*
 * A key's value as text, as the file would hold it (`roost config`), and
 * what a reload does with the keys whose text changed: the walks over the
 * key table that read a configuration rather than build it.
 */

#define keys config_keys
#define N_KEYS config_n_keys

/*
 * The keys `roost reload` (SIGHUP) applies to a running server. Each is read
 * through the server's live configuration (server_config(), conn_config()),
 * or applied by the reload itself (log level, TLS context, rate limits), so
 * a new value takes effect for the next connection (limits a session reads
 * through conn_config()), the next timer (timeouts) or the next check. Every
 * other key needs a restart: config_reload_merge() keeps its old value in
 * the configuration it publishes.
 */
static const char *const live_keys[] = {
    "server.log_level",
    "server.log_syslog",
    "tls.cert",
    "tls.key",
    "tls.min_protocol",
    "tls.ciphers",
    "tls.ciphersuites",
    "limits.max_connections_per_ip",
    "limits.preauth_idle_timeout",
    "limits.idle_timeout",
    "limits.command_timeout",
    "limits.tls_handshake_timeout",
    "limits.max_recipients",
    "smtp.max_errors",
    "smtp.user_messages_per_hour",
    "smtp.user_recipients_per_hour",
    "imap.max_bad_commands",
    "imap.idle_keepalive",
    "pop3.max_bad_commands",
};

static void
print_value(const struct roost_config *cfg, const struct key_def *k, FILE *out)
{
	const void *field = (const char *)cfg + k->offset;
	char *const *list;

	switch (k->type) {
	case T_STRING: {
		const char *v = *(char *const *)field != NULL ? *(char *const *)field : "";
		size_t len = strlen(v);

		/* Quoted when reading it back plain would change it. */
		if (strchr(v, '#') != NULL || v[0] == '"' || v[0] == '\'' || v[0] == ' ' ||
		    v[0] == '\t' || (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))) {
			fputc('"', out);
			for (; *v != '\0'; v++) {
				if (*v == '"' || *v == '\\')
					fputc('\\', out);
				fputc(*v, out);
			}
			fputc('"', out);
		} else {
			fputs(v, out);
		}
		break;
	}
	case T_BOOL:
		fputs(*(const bool *)field ? "yes" : "no", out);
		break;
	case T_COUNT:
		fprintf(out, "%u", *(const unsigned *)field);
		break;
	case T_MODE:
		fprintf(out, "%04o", *(const unsigned *)field);
		break;
	case T_DURATION:
		if (k->offset == F(expunge_log_retention))
			fprintf(out, "%llus", (unsigned long long)*(const uint64_t *)field);
		else
			fprintf(out, "%us", *(const unsigned *)field);
		break;
	case T_SIZE:
		fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)field);
		break;
	case T_LISTEN:
	case T_STRLIST:
		list = k->type == T_LISTEN ? ((const struct config_listen *)field)->addrs
		                           : *(char **const *)field;
		if (list == NULL || list[0] == NULL) {
			fputs(k->type == T_LISTEN ? "off" : "", out);
			break;
		}
		for (size_t i = 0; list[i] != NULL; i++)
			fprintf(out, "%s%s", i > 0 ? ", " : "", list[i]);
		break;
	}
}

void
config_print(const struct roost_config *cfg, FILE *out)
{
	const char *section = NULL;

	fprintf(out, "# effective configuration%s%s\n", cfg->path ? " from " : " (defaults only)",
	        cfg->path ? cfg->path : "");
	for (size_t i = 0; i < N_KEYS; i++) {
		if (section == NULL || strcmp(section, keys[i].section) != 0) {
			section = keys[i].section;
			fprintf(out, "%s[%s]\n", i > 0 ? "\n" : "", section);
		}
		fprintf(out, "%s = ", keys[i].key);
		print_value(cfg, &keys[i], out);
		fputc('\n', out);
	}
}

static bool
key_is_live(const struct key_def *k)
{
	char name[64];

	snprintf(name, sizeof(name), "%s.%s", k->section, k->key);
	for (size_t i = 0; i < sizeof(live_keys) / sizeof(live_keys[0]); i++)
		if (strcmp(live_keys[i], name) == 0)
			return true;
	return false;
}

/* k's value in cfg as `roost config` prints it; the caller frees it. */
static char *
value_string(const struct roost_config *cfg, const struct key_def *k)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		fatal("event=config_error error=\"open_memstream: %s\"", strerror(errno));
	print_value(cfg, k, f);
	fclose(f);
	return text;
}

static char **
strv_dup(char *const *v)
{
	size_t n = 0;
	char **d;

	if (v == NULL)
		return NULL;
	while (v[n] != NULL)
		n++;
	d = xcalloc(n + 1, sizeof(*d));
	for (size_t i = 0; i < n; i++)
		d[i] = xstrdup(v[i]);
	return d;
}

/* dst's field of k becomes a copy of src's. */
static void
copy_value(struct roost_config *dst, const struct roost_config *src, const struct key_def *k)
{
	void *to = (char *)dst + k->offset;
	const void *from = (const char *)src + k->offset;

	switch (k->type) {
	case T_STRING:
		free(*(char **)to);
		*(char **)to = *(char *const *)from != NULL ? xstrdup(*(char *const *)from) : NULL;
		break;
	case T_BOOL:
		*(bool *)to = *(const bool *)from;
		break;
	case T_SIZE:
		*(uint64_t *)to = *(const uint64_t *)from;
		break;
	case T_DURATION:
		if (k->offset == F(expunge_log_retention))
			*(uint64_t *)to = *(const uint64_t *)from;
		else
			*(unsigned *)to = *(const unsigned *)from;
		break;
	case T_COUNT:
	case T_MODE:
		*(unsigned *)to = *(const unsigned *)from;
		break;
	case T_LISTEN:
		config_strv_free(((struct config_listen *)to)->addrs);
		((struct config_listen *)to)->addrs =
		    strv_dup(((const struct config_listen *)from)->addrs);
		break;
	case T_STRLIST:
		config_strv_free(*(char ***)to);
		*(char ***)to = strv_dup(*(char **const *)from);
		break;
	}
}

void
config_reload_merge(const struct roost_config *old, struct roost_config *next, config_change_fn *fn,
                    void *arg)
{
	/* The default certificate and key live under data_dir: when data_dir
	 * moves (a restart), they follow it then, not now. */
	bool moved = strcmp(old->data_dir, next->data_dir) != 0;

	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key_def *k = &keys[i];
		char *was = value_string(old, k), *now = value_string(next, k);
		char name[64];

		if (strcmp(was, now) != 0) {
			bool live = key_is_live(k) && !(moved && strcmp(k->section, "tls") == 0);

			snprintf(name, sizeof(name), "%s.%s", k->section, k->key);
			if (!live)
				copy_value(next, old, k);
			fn(arg, name, live);
		}
		free(was);
		free(now);
	}
}
